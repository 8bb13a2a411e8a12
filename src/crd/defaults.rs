//! Kubeflow's defaulter (`api/v1beta2/defaults.go`, v2.5): the values an unset field takes, so
//! the same YAML runs the same here. Applied to a copy wherever the app is used (submission,
//! the state machine, `render`), never written back: the stored object keeps what the user
//! wrote, as kubeflow's own controller applied its defaults to a copy too (see the README's
//! "Defaults").

use super::{DeployMode, RestartPolicy, RestartPolicyType, SparkApplication, SparkApplicationSpec};

/// Seconds between retries of an OnFailure or Always app when its interval is unset.
pub const DEFAULT_RETRY_INTERVAL_SECS: i64 = 5;
/// Driver and executor cores when neither the field nor `sparkConf` sets them.
pub const DEFAULT_CORES: i32 = 1;
/// Driver and executor memory when neither the field nor `sparkConf` sets it.
pub const DEFAULT_MEMORY: &str = "1g";
/// Executors of an app without dynamic allocation when neither the field nor `sparkConf` sets
/// them (Spark alone would start 2).
pub const DEFAULT_EXECUTOR_INSTANCES: i32 = 1;

/// One default filled in: the field (as written in YAML, under `spec`) and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaulted {
    pub field: &'static str,
    pub value: String,
}

impl RestartPolicy {
    /// `onFailureRetryInterval`, or 5 s when the policy is OnFailure or Always.
    pub fn effective_on_failure_retry_interval(&self) -> Option<i64> {
        self.on_failure_retry_interval.or(self.default_interval())
    }

    /// `onSubmissionFailureRetryInterval`, or 5 s when the policy is OnFailure or Always.
    pub fn effective_on_submission_failure_retry_interval(&self) -> Option<i64> {
        self.on_submission_failure_retry_interval
            .or(self.default_interval())
    }

    fn default_interval(&self) -> Option<i64> {
        (self.effective_type() != RestartPolicyType::Never).then_some(DEFAULT_RETRY_INTERVAL_SECS)
    }
}

impl SparkApplicationSpec {
    /// Whether dynamic allocation is on: `dynamicAllocation.enabled`, or `sparkConf`'s
    /// `spark.dynamicAllocation.enabled` (Spark's key; kubeflow reads only its lower-case
    /// spelling, which is accepted too).
    pub fn dynamic_allocation_enabled(&self) -> bool {
        let by_field = self
            .dynamic_allocation
            .as_ref()
            .is_some_and(|d| d.is_enabled());
        let by_conf = [
            "spark.dynamicAllocation.enabled",
            "spark.dynamicallocation.enabled",
        ]
        .iter()
        .filter_map(|key| self.spark_conf.get(*key))
        .any(|v| parses_true(v));
        by_field || by_conf
    }
}

/// Go's `strconv.ParseBool` true values, which kubeflow uses, and Spark's case-insensitive
/// "true".
fn parses_true(value: &str) -> bool {
    matches!(value.trim(), "1" | "t" | "T" | "TRUE" | "True")
        || value.trim().eq_ignore_ascii_case("true")
}

/// Fills in every unset field kubeflow's defaulter fills, and says which.
pub fn apply_defaults(spec: &mut SparkApplicationSpec) -> Vec<Defaulted> {
    let mut filled = Vec::new();
    let mut note = |field: &'static str, value: String| filled.push(Defaulted { field, value });
    if spec.mode.is_none() {
        spec.mode = Some(DeployMode::Cluster);
        note("mode", DeployMode::Cluster.to_string());
    }
    let rp = &mut spec.restart_policy;
    if rp.type_.is_none() {
        rp.type_ = Some(RestartPolicyType::Never);
        note("restartPolicy.type", RestartPolicyType::Never.to_string());
    }
    if rp.on_failure_retry_interval.is_none() {
        rp.on_failure_retry_interval = rp.effective_on_failure_retry_interval();
        if let Some(v) = rp.on_failure_retry_interval {
            note("restartPolicy.onFailureRetryInterval", v.to_string());
        }
    }
    if rp.on_submission_failure_retry_interval.is_none() {
        rp.on_submission_failure_retry_interval =
            rp.effective_on_submission_failure_retry_interval();
        if let Some(v) = rp.on_submission_failure_retry_interval {
            note(
                "restartPolicy.onSubmissionFailureRetryInterval",
                v.to_string(),
            );
        }
    }
    let dynamic = spec.dynamic_allocation_enabled();
    let conf = &spec.spark_conf;
    let roles = [
        (&mut spec.driver.pod, "driver", "spark.driver"),
        (&mut spec.executor.pod, "executor", "spark.executor"),
    ];
    for (pod, role, prefix) in roles {
        if pod.cores.is_none() && !conf.contains_key(&format!("{prefix}.cores")) {
            pod.cores = Some(DEFAULT_CORES);
            note(
                if role == "driver" {
                    "driver.cores"
                } else {
                    "executor.cores"
                },
                DEFAULT_CORES.to_string(),
            );
        }
        if pod.memory.is_none() && !conf.contains_key(&format!("{prefix}.memory")) {
            pod.memory = Some(DEFAULT_MEMORY.into());
            note(
                if role == "driver" {
                    "driver.memory"
                } else {
                    "executor.memory"
                },
                DEFAULT_MEMORY.into(),
            );
        }
    }
    let conf_instances = conf
        .get("spark.executor.instances")
        .is_some_and(|v| !v.is_empty());
    if spec.executor.instances.is_none() && !conf_instances && !dynamic {
        spec.executor.instances = Some(DEFAULT_EXECUTOR_INSTANCES);
        note("executor.instances", DEFAULT_EXECUTOR_INSTANCES.to_string());
    }
    filled
}

impl SparkApplication {
    /// A copy with kubeflow's defaults filled in (see [`apply_defaults`]).
    pub fn with_defaults(&self) -> SparkApplication {
        let mut app = self.clone();
        apply_defaults(&mut app.spec);
        app
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(extra: serde_json::Value) -> SparkApplicationSpec {
        let mut base = json!({
            "type": "Scala", "sparkVersion": "3.5.3",
            "mainApplicationFile": "local:///app.jar",
            "driver": {}, "executor": {},
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn fields(filled: &[Defaulted]) -> Vec<(&str, &str)> {
        filled.iter().map(|d| (d.field, d.value.as_str())).collect()
    }

    #[test]
    fn a_bare_app_gets_every_kubeflow_default_but_the_retry_intervals() {
        let mut s = spec(json!({}));
        let filled = apply_defaults(&mut s);
        assert_eq!(
            fields(&filled),
            [
                ("mode", "cluster"),
                ("restartPolicy.type", "Never"),
                ("driver.cores", "1"),
                ("driver.memory", "1g"),
                ("executor.cores", "1"),
                ("executor.memory", "1g"),
                ("executor.instances", "1"),
            ]
        );
        assert_eq!(s.executor.instances, Some(1));
        assert_eq!(s.restart_policy.on_failure_retry_interval, None);
        assert_eq!(s.restart_policy.on_submission_failure_retry_interval, None);
    }

    #[test]
    fn on_failure_and_always_retry_after_five_seconds_unless_told_otherwise() {
        for policy in ["OnFailure", "Always"] {
            let mut s = spec(json!({"restartPolicy": {"type": policy}}));
            apply_defaults(&mut s);
            assert_eq!(
                s.restart_policy.on_failure_retry_interval,
                Some(5),
                "{policy}"
            );
            assert_eq!(
                s.restart_policy.on_submission_failure_retry_interval,
                Some(5),
                "{policy}"
            );
        }
        let mut s = spec(json!({"restartPolicy": {"type": "OnFailure",
            "onFailureRetryInterval": 30, "onSubmissionFailureRetryInterval": 7}}));
        apply_defaults(&mut s);
        assert_eq!(s.restart_policy.on_failure_retry_interval, Some(30));
        assert_eq!(
            s.restart_policy.on_submission_failure_retry_interval,
            Some(7)
        );
    }

    #[test]
    fn dynamic_allocation_leaves_the_executor_count_to_spark() {
        let by_field = json!({"dynamicAllocation": {"enabled": true, "maxExecutors": 4}});
        let by_conf = json!({"sparkConf": {"spark.dynamicAllocation.enabled": "true"}});
        let by_kubeflows_key = json!({"sparkConf": {"spark.dynamicallocation.enabled": "True"}});
        for extra in [by_field, by_conf, by_kubeflows_key] {
            let mut s = spec(extra.clone());
            apply_defaults(&mut s);
            assert_eq!(s.executor.instances, None, "{extra}");
            // Nothing else about dynamic allocation is defaulted.
            assert_eq!(
                s.dynamic_allocation.as_ref().and_then(|d| d.min_executors),
                None
            );
        }
        let off = json!({"dynamicAllocation": {"enabled": false}});
        let mut s = spec(off);
        apply_defaults(&mut s);
        assert_eq!(s.executor.instances, Some(1));
    }

    #[test]
    fn what_the_user_or_spark_conf_sets_is_kept() {
        let mut s = spec(json!({
            "mode": "cluster",
            "driver": {"cores": 3, "memory": "4g"},
            "executor": {"instances": 5},
            "sparkConf": {"spark.executor.cores": "2", "spark.executor.memory": "2g"},
        }));
        let filled = apply_defaults(&mut s);
        assert_eq!(fields(&filled), [("restartPolicy.type", "Never")]);
        assert_eq!(s.driver.pod.cores, Some(3));
        assert_eq!(s.driver.pod.memory.as_deref(), Some("4g"));
        assert_eq!(s.executor.pod.cores, None);
        assert_eq!(s.executor.pod.memory, None);
        assert_eq!(s.executor.instances, Some(5));

        let mut s = spec(json!({"sparkConf": {"spark.executor.instances": "3"}}));
        apply_defaults(&mut s);
        assert_eq!(s.executor.instances, None, "sparkConf's count stands");
    }

    #[test]
    fn defaulting_twice_changes_nothing_more() {
        let mut s = spec(json!({"restartPolicy": {"type": "Always"}}));
        apply_defaults(&mut s);
        let once = s.clone();
        assert!(apply_defaults(&mut s).is_empty());
        assert_eq!(s, once);
    }
}
