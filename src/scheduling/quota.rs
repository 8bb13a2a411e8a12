//! `--enable-resource-quota-enforcement`: whether an app's driver and initial executors fit what
//! is left of its namespace's ResourceQuotas, as kubeflow's validating webhook decides
//! (`internal/webhook/resourcequota.go`): for each quota without scopes and each of `cpu`,
//! `requests.cpu`, `limits.cpu`, `memory`, `requests.memory`, `limits.memory` it enforces
//! (`status.hard`), the app's amount plus `status.used` must not exceed `spec.hard`. Unlike
//! kubeflow's bare "failed to validate resource quota", the refusal names the quota, the
//! resource and the amounts.

use k8s_openapi::api::core::v1::ResourceQuota;

use super::resources::{self, cpu_quantity};
use crate::crd::SparkApplication;
use crate::labels::SparkRole;
use crate::quantity::parse_kubernetes;

/// What the app counts against a quota, per quota resource name, in base units (cores, bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    pub executors: u32,
    pub cpu_requests: f64,
    pub cpu_limits: f64,
    pub memory: f64,
}

/// The app's usage: requests as its pods get them ([`resources::pod_request`]), the CPU limit
/// of a pod being its `coreLimit`, else its CPU request; memory requests and limits are equal
/// for Spark pods.
pub fn usage(app: &SparkApplication) -> Result<Usage, String> {
    let n = resources::initial_executors(app);
    let mut usage = Usage {
        executors: n,
        cpu_requests: 0.0,
        cpu_limits: 0.0,
        memory: 0.0,
    };
    for (role, count) in [
        (SparkRole::Driver, 1.0),
        (SparkRole::Executor, f64::from(n)),
    ] {
        let request = resources::pod_request(app, role)?;
        let pod = match role {
            SparkRole::Driver => &app.spec.driver.pod,
            SparkRole::Executor => &app.spec.executor.pod,
        };
        let cpu = request.cpu_milli as f64 / 1000.0;
        let limit = match &pod.core_limit {
            Some(l) => {
                parse_kubernetes(l).map_err(|e| format!("spec.{}.coreLimit: {e}", role.as_str()))?
            }
            None => cpu,
        };
        usage.cpu_requests += cpu * count;
        usage.cpu_limits += limit * count;
        usage.memory += (request.memory_mib as f64) * 1024.0 * 1024.0 * count;
    }
    Ok(usage)
}

/// The first quota `usage` does not fit, as a readable reason; `None` when it fits them all.
pub fn exceeded(usage: &Usage, quotas: &[ResourceQuota]) -> Option<String> {
    for quota in quotas {
        let spec = quota.spec.as_ref();
        if spec.is_some_and(|s| {
            s.scope_selector.is_some() || s.scopes.as_ref().is_some_and(|s| !s.is_empty())
        }) {
            // Scoped quotas are not evaluated (as in kubeflow).
            continue;
        }
        let enforced = quota.status.as_ref().and_then(|s| s.hard.as_ref());
        let used = quota.status.as_ref().and_then(|s| s.used.as_ref());
        let hard = spec.and_then(|s| s.hard.as_ref());
        for (resource, need, is_cpu) in [
            ("cpu", usage.cpu_requests, true),
            ("requests.cpu", usage.cpu_requests, true),
            ("limits.cpu", usage.cpu_limits, true),
            ("memory", usage.memory, false),
            ("requests.memory", usage.memory, false),
            ("limits.memory", usage.memory, false),
        ] {
            if !enforced.is_some_and(|h| h.contains_key(resource)) {
                continue;
            }
            let Some(limit) = hard.and_then(|h| h.get(resource)) else {
                continue;
            };
            let Ok(limit_value) = parse_kubernetes(&limit.0) else {
                continue;
            };
            let used_q = used.and_then(|u| u.get(resource));
            let used_value = used_q
                .and_then(|q| parse_kubernetes(&q.0).ok())
                .unwrap_or(0.0);
            // A small tolerance for the float sums of whole millicores and bytes.
            if need + used_value > limit_value * (1.0 + 1e-12) + 1e-9 {
                let shown = if is_cpu {
                    cpu_quantity((need * 1000.0).round() as u64)
                } else {
                    format!("{}Mi", (need / 1048576.0).round() as u64)
                };
                let left = (limit_value - used_value).max(0.0);
                let left = if is_cpu {
                    cpu_quantity((left * 1000.0).floor() as u64)
                } else {
                    format!("{}Mi", (left / 1048576.0).floor() as u64)
                };
                return Some(format!(
                    "the driver and {} executors need {resource} {shown}, but ResourceQuota {}/{} has {left} left ({} of {} used)",
                    usage.executors,
                    quota.metadata.namespace.as_deref().unwrap_or_default(),
                    quota.metadata.name.as_deref().unwrap_or_default(),
                    used_q.map_or("0", |q| q.0.as_str()),
                    limit.0,
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(executor: serde_json::Value) -> SparkApplication {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "pi", "namespace": "ns"},
            "spec": {"type": "Scala", "sparkVersion": "3.5.3", "mainApplicationFile": "local:///x.jar",
                     "driver": {"cores": 1, "memory": "1g", "coreLimit": "2"}, "executor": executor}
        }))
        .unwrap()
    }

    fn quota(hard: serde_json::Value, used: serde_json::Value) -> ResourceQuota {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "q", "namespace": "ns"},
            "spec": {"hard": hard}, "status": {"hard": hard, "used": used},
        }))
        .unwrap()
    }

    #[test]
    fn usage_counts_the_driver_and_initial_executors() {
        let u = usage(&app(
            serde_json::json!({"cores": 2, "memory": "2g", "instances": 3}),
        ))
        .unwrap();
        assert_eq!(u.executors, 3);
        assert_eq!(u.cpu_requests, 7.0);
        assert_eq!(u.cpu_limits, 2.0 + 6.0);
        assert_eq!(
            u.memory,
            ((1024 + 384) + 3 * (2048 + 384)) as f64 * 1048576.0
        );
    }

    #[test]
    fn a_quota_too_small_is_named_with_the_amounts() {
        let u = usage(&app(
            serde_json::json!({"cores": 1, "memory": "1g", "instances": 2}),
        ))
        .unwrap();
        // 3 cores, 4224Mi needed.
        let fits = quota(
            serde_json::json!({"requests.cpu": "4", "requests.memory": "8Gi"}),
            serde_json::json!({"requests.cpu": "1", "requests.memory": "1Gi"}),
        );
        assert_eq!(exceeded(&u, &[fits]), None);
        let full = quota(
            serde_json::json!({"requests.cpu": "4", "limits.memory": "8Gi"}),
            serde_json::json!({"requests.cpu": "1500m", "limits.memory": "0"}),
        );
        assert_eq!(
            exceeded(&u, &[full]).as_deref(),
            Some(
                "the driver and 2 executors need requests.cpu 3, but ResourceQuota ns/q has 2500m left (1500m of 4 used)"
            )
        );
        let memory = quota(serde_json::json!({"memory": "4Gi"}), serde_json::json!({}));
        assert_eq!(
            exceeded(&u, &[memory]).as_deref(),
            Some(
                "the driver and 2 executors need memory 4224Mi, but ResourceQuota ns/q has 4096Mi left (0 of 4Gi used)"
            )
        );
        // A quota not yet counted by the quota controller (no status.hard) is skipped, as are
        // scoped quotas and resources the app does not use.
        let mut fresh = quota(serde_json::json!({"cpu": "1"}), serde_json::json!({}));
        fresh.status = None;
        let mut scoped = quota(serde_json::json!({"cpu": "1"}), serde_json::json!({}));
        scoped.spec.as_mut().unwrap().scopes = Some(vec!["BestEffort".into()]);
        let pods = quota(
            serde_json::json!({"pods": "1"}),
            serde_json::json!({"pods": "1"}),
        );
        assert_eq!(exceeded(&u, &[fresh, scoped, pods]), None);
    }
}
