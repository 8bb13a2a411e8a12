//! Prometheus metrics of the webhook, served on the admin port's `/metrics`.
//!
//! Every series a dashboard divides by exists at 0 from the start (no NaN ratios), so the label
//! sets are enumerated up front.
//!
//! The SparkApplication metrics follow Prometheus' naming rules by default, so `promtool check
//! metrics` passes. Dashboards and alerts written against kubeflow's operator query its names,
//! though, and would go silent after a migration: `--metrics-names=kubeflow` exposes the same
//! observations under kubeflow's exact names and types instead, from one table ([`NAME_MAP`]).

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;

use crate::cache::{GuardedApp, SparkPod};
use crate::namespaces::JobNamespaces;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What the review was about.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ReviewKind {
    Pod,
    SparkApplication,
    ScheduledSparkApplication,
}

/// How a review ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    /// A Spark pod that got a patch.
    Patched,
    /// A Spark pod, or a valid SparkApplication, that needed no change.
    Unchanged,
    /// Not ours (not a Spark pod, not a job namespace): allowed untouched.
    Skipped,
    /// Refused, with a message to the user.
    Denied,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub kind: ReviewKind,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: ReviewKind,
}

/// Why a controller was restarted.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RestartReason {
    /// It panicked.
    panic,
}

/// Why a review got no answer from its rules: the server's bounds (`webhook::ReviewLimits`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum UnansweredReason {
    /// The body did not arrive within the body-read timeout (408).
    body_timeout,
    /// Too many reviews in flight already (503).
    in_flight_limit,
    /// The review's `?timeout=` would have passed first (504).
    deadline,
    /// A cache miss found the live-read budget spent (503).
    live_read_budget,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnansweredLabels {
    pub reason: UnansweredReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestartLabels {
    /// The controller's job namespace ("" for one controller over all namespaces).
    pub namespace: String,
    pub reason: RestartReason,
}

/// What became of a ScheduledSparkApplication's due slot.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ScheduledRunOutcome {
    /// A run was started.
    started,
    /// concurrencyPolicy Forbid: a run was still active, the slot was skipped.
    skipped,
    /// concurrencyPolicy Replace: the active run was deleted and a new one started.
    replaced,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduledRunLabels {
    pub outcome: ScheduledRunOutcome,
}

/// The process's metric families: the webhook's, and the reconciler's own health.
pub struct Metrics {
    pub registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub review_seconds: Family<KindLabels, Histogram>,
    pub cert_not_after: Gauge<i64, AtomicI64>,
    pub ca_not_after: Gauge<i64, AtomicI64>,
    pub controller_restarts: Family<RestartLabels, Counter>,
    pub reviews_unanswered: Family<UnansweredLabels, Counter>,
    /// Due slots of ScheduledSparkApplications, by what became of them.
    pub scheduled_runs: Family<ScheduledRunLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("spark_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        let review_seconds = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            // 50 µs .. ~3 s: pure mutations take microseconds, the apiserver's timeout is seconds.
            Histogram::new([
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5,
            ])
        });
        let cert_not_after = Gauge::<i64, AtomicI64>::default();
        let ca_not_after = Gauge::<i64, AtomicI64>::default();
        let controller_restarts = Family::<RestartLabels, Counter>::default();
        let reviews_unanswered = Family::<UnansweredLabels, Counter>::default();
        let scheduled_runs = Family::<ScheduledRunLabels, Counter>::default();
        registry.register(
            "scheduled_runs",
            "Due slots of ScheduledSparkApplications, by outcome: a run started, skipped (concurrencyPolicy Forbid, a run still active) or replaced (Replace)",
            scheduled_runs.clone(),
        );
        for outcome in [
            ScheduledRunOutcome::started,
            ScheduledRunOutcome::skipped,
            ScheduledRunOutcome::replaced,
        ] {
            let _ = scheduled_runs.get_or_create(&ScheduledRunLabels { outcome });
        }
        registry.register(
            "admission_reviews",
            "Admission reviews answered, by kind and outcome",
            reviews.clone(),
        );
        registry.register(
            "admission_review_duration_seconds",
            "Time to answer one admission review, from body parsed to answer built",
            review_seconds.clone(),
        );
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "Expiry (unix time) of the serving certificate currently in use",
            cert_not_after.clone(),
        );
        registry.register(
            "certificate_ca_not_after_timestamp_seconds",
            "Expiry (unix time) of the CA that signed the serving certificate (0: unknown); a self-managed CA is replaced in stages from --ca-renew-before ahead",
            ca_not_after.clone(),
        );
        registry.register(
            "controller_restarts",
            "Per-namespace SparkApplication controllers restarted, by namespace and reason (a panic)",
            controller_restarts.clone(),
        );
        registry.register(
            "admission_reviews_unanswered",
            "Review requests answered with an HTTP error by the server's bounds: a body slower than the body-read timeout (408), over the in-flight cap (503), past the review's timeout (504)",
            reviews_unanswered.clone(),
        );
        for reason in [
            UnansweredReason::body_timeout,
            UnansweredReason::in_flight_limit,
            UnansweredReason::deadline,
            UnansweredReason::live_read_budget,
        ] {
            let _ = reviews_unanswered.get_or_create(&UnansweredLabels { reason });
        }
        for kind in [
            ReviewKind::Pod,
            ReviewKind::SparkApplication,
            ReviewKind::ScheduledSparkApplication,
        ] {
            for outcome in [
                Outcome::Patched,
                Outcome::Unchanged,
                Outcome::Skipped,
                Outcome::Denied,
            ] {
                let _ = reviews.get_or_create(&ReviewLabels { kind, outcome });
            }
            let _ = review_seconds.get_or_create(&KindLabels { kind });
        }
        Arc::new(Metrics {
            registry,
            reviews,
            review_seconds,
            cert_not_after,
            ca_not_after,
            controller_restarts,
            reviews_unanswered,
            scheduled_runs,
        })
    }

    pub fn unanswered(&self, reason: UnansweredReason) {
        self.reviews_unanswered
            .get_or_create(&UnansweredLabels { reason })
            .inc();
    }

    pub fn observe(&self, kind: ReviewKind, outcome: Outcome, seconds: f64) {
        self.reviews
            .get_or_create(&ReviewLabels { kind, outcome })
            .inc();
        self.review_seconds
            .get_or_create(&KindLabels { kind })
            .observe(seconds);
    }

    /// OpenMetrics text exposition, with the SparkApplication metrics when the reconciler runs.
    pub fn encode(&self, apps: Option<&AppMetrics>) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        if let Some(apps) = apps {
            apps.refresh_running();
            let _ = encode_registry(&mut out, &apps.registry);
        }
        let _ = encode_eof(&mut out);
        out
    }
}

impl Metrics {
    /// Whether `/metrics` may answer in OpenMetrics: not in kubeflow mode, whose counters keep
    /// kubeflow's names on their samples (OpenMetrics would add `_total`).
    pub fn openmetrics_allowed(apps: Option<&AppMetrics>) -> bool {
        apps.is_none_or(|a| a.names() == MetricNames::Native)
    }

    /// The classic text exposition: [`Metrics::encode`] through [`to_prometheus_text`], or in
    /// kubeflow mode the webhook's families so and the SparkApplication ones under kubeflow's
    /// names.
    pub fn encode_text(&self, apps: Option<&AppMetrics>) -> String {
        match apps {
            Some(a) if a.names() == MetricNames::Kubeflow => {
                let mut out = to_prometheus_text(&self.encode(None));
                out.push_str(&a.encode_kubeflow_text());
                out
            }
            _ => to_prometheus_text(&self.encode(apps)),
        }
    }
}

/// Content type of [`to_prometheus_text`]'s output.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of [`Metrics::encode`]'s output.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics exposition in Prometheus' classic text format, for scrapers (and
/// `promtool check metrics`) that do not ask for OpenMetrics: a counter family is named as its
/// samples are (`…_total`), and the OpenMetrics-only `# UNIT` and `# EOF` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_text_names_counter_families_as_their_samples() {
        let m = Metrics::new();
        let apps = AppMetrics::new("", Vec::new(), DEFAULT_START_LATENCY_BUCKETS);
        let text = to_prometheus_text(&m.encode(Some(&apps)));
        assert!(
            text.contains("# TYPE spark_webhook_admission_reviews_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE spark_application_submit_total counter\n"));
        assert!(
            text.contains("\nspark_application_submit_total{} 0\n"),
            "{text}"
        );
        assert!(text.contains("\nspark_application_running{} 0\n"), "{text}");
        assert!(!text.contains("# EOF"));
        // The start-latency buckets reach an hour (kubeflow's top bucket was 300 s).
        assert!(text.contains(r#"spark_application_start_latency_seconds_bucket{le="3600.0"} 0"#));
    }

    /// A store holding one RUNNING app, as the shared app cache holds it in every leader term.
    fn running_app_store() -> Store<GuardedApp> {
        use kube::runtime::watcher::Event;
        let app: crate::crd::SparkApplication = serde_json::from_value(serde_json::json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "pi", "namespace": "jobs"},
            "spec": {"type": "Python", "sparkVersion": "3.5.3", "mode": "cluster",
                     "mainApplicationFile": "local:///pi.py", "driver": {}, "executor": {}},
            "status": {"applicationState": {"state": "RUNNING"}}
        }))
        .expect("a running app");
        let app = crate::cache::CompactApp::try_from(app).expect("compact");
        let mut writer = kube::runtime::reflector::store::Writer::<GuardedApp>::default();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(kube::core::DeserializeGuard(Ok(app))));
        writer.apply_watcher_event(&Event::InitDone);
        writer.as_reader()
    }

    #[test]
    fn a_running_app_counts_once_across_leader_terms() {
        let m = Metrics::new();
        let apps = Arc::new(AppMetrics::new(
            "",
            Vec::new(),
            DEFAULT_START_LATENCY_BUCKETS,
        ));
        let store = running_app_store();
        let pods = || kube::runtime::reflector::store::Writer::<SparkPod>::default().as_reader();
        let running = |n: u32| format!("\nspark_application_running{{}} {n}\n");
        let first_term = apps.add_source(store.clone(), pods(), JobNamespaces::all());
        assert!(m.encode(Some(&apps)).contains(&running(1)));
        // The term ends (its controller returns) and the next one starts on the same store.
        drop(first_term);
        let second_term = apps.add_source(store, pods(), JobNamespaces::all());
        let text = m.encode(Some(&apps));
        assert!(text.contains(&running(1)), "{text}");
        drop(second_term);
        let text = m.encode(Some(&apps));
        assert!(
            text.contains(&running(0)),
            "no controller, no running apps: {text}"
        );
    }

    /// An app in `ns` labelled `team=data`, created a minute ago.
    fn app(name: &str, ns: &str) -> crate::crd::SparkApplication {
        let created =
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": name, "namespace": ns, "labels": {"team": "data"},
                         "creationTimestamp": created.to_string()},
            "spec": {"type": "Python", "sparkVersion": "3.5.3", "mode": "cluster",
                     "mainApplicationFile": "local:///pi.py", "driver": {}, "executor": {}}
        }))
        .expect("an app")
    }

    fn status(state: &str, attempts: u32) -> crate::crd::SparkApplicationStatus {
        serde_json::from_value(serde_json::json!({
            "applicationState": {"state": state},
            "submissionAttempts": attempts, "executionAttempts": attempts,
            "lastSubmissionAttemptTime": "2026-01-01T00:00:00Z",
            "terminationTime": "2026-01-01T00:02:00Z"
        }))
        .expect("a status")
    }

    /// A submission, a running app, a success, a failed submission, a failure, and an executor
    /// of each outcome.
    fn some_events(apps: &AppMetrics) {
        use crate::crd::ApplicationStateType as St;
        let (a, b, c) = (app("a", "jobs"), app("b", "jobs"), app("c", "jobs"));
        apps.transition(&a, St::New, &status("SUBMITTED", 1));
        apps.transition(&a, St::Submitted, &status("RUNNING", 1));
        apps.transition(&a, St::Running, &status("COMPLETED", 1));
        apps.transition(&b, St::New, &status("SUBMISSION_FAILED", 1));
        apps.transition(&b, St::SubmissionFailed, &status("FAILED", 1));
        apps.transition(&c, St::New, &status("SUBMITTED", 1));
        apps.transition(&c, St::Submitted, &status("RUNNING", 1));
        apps.executor_event(&a, "SparkExecutorCompleted");
        apps.executor_event(&b, "SparkExecutorFailed");
        // c is suspended while running, and resumed.
        apps.transition(&c, St::Running, &status("SUSPENDED", 1));
        apps.transition(&c, St::Suspended, &status("RESUMING", 1));
    }

    /// `promtool check metrics` on `text`: success, and what it said.
    fn promtool(text: &str) -> (bool, String) {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/promtool.sh");
        let found = Command::new(script).output().expect("running promtool.sh");
        assert!(
            found.status.success(),
            "{}",
            String::from_utf8_lossy(&found.stderr)
        );
        let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
        let mut child = Command::new(path)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning promtool");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("writing to promtool");
        let out = child.wait_with_output().expect("promtool output");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    }

    /// `# TYPE` lines of the SparkApplication families (name, type).
    fn app_types(text: &str) -> std::collections::BTreeSet<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .filter(|(n, _)| !n.starts_with("spark_webhook_"))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    /// Kubeflow v2.5's families (internal/metrics, pkg/common/metrics.go), written out here
    /// rather than taken from [`NAME_MAP`], so that the table is checked against them.
    const KUBEFLOW_FAMILIES: &[(&str, &str)] = &[
        ("spark_application_count", "counter"),
        ("spark_application_submit_count", "counter"),
        ("spark_application_failed_submission_count", "counter"),
        ("spark_application_running_count", "gauge"),
        ("spark_application_success_count", "counter"),
        ("spark_application_failure_count", "counter"),
        (
            "spark_application_success_execution_time_seconds",
            "summary",
        ),
        (
            "spark_application_failure_execution_time_seconds",
            "summary",
        ),
        ("spark_application_submit_latency_seconds", "summary"),
        (
            "spark_application_submit_latency_seconds_histogram",
            "histogram",
        ),
        ("spark_application_start_latency_seconds", "summary"),
        (
            "spark_application_start_latency_seconds_histogram",
            "histogram",
        ),
        ("spark_executor_running_count", "gauge"),
        ("spark_executor_success_count", "counter"),
        ("spark_executor_failure_count", "counter"),
    ];

    #[test]
    fn both_modes_pass_promtool_after_events_native_cleanly() {
        let m = Metrics::new();
        let native = AppMetrics::new("", Vec::new(), DEFAULT_START_LATENCY_BUCKETS);
        some_events(&native);
        let text = m.encode_text(Some(&native));
        let (ok, said) = promtool(&text);
        assert!(ok && said.trim().is_empty(), "native:\n{said}\n{text}");
        // The suspension and the resumption of `some_events` are counted.
        for sample in [
            "spark_application_suspend_total{} 1",
            "spark_application_resume_total{} 1",
        ] {
            assert!(text.contains(&format!("\n{sample}\n")), "{sample}:\n{text}");
        }
        // Kubeflow's names break Prometheus' naming rules on purpose: promtool parses the
        // exposition and complains only about those names, each for a rule kubeflow breaks.
        let kubeflow = AppMetrics::with_names(
            "",
            Vec::new(),
            DEFAULT_START_LATENCY_BUCKETS,
            MetricNames::Kubeflow,
        );
        some_events(&kubeflow);
        let text = m.encode_text(Some(&kubeflow));
        let (_, said) = promtool(&text);
        let complaints: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
        for c in &complaints {
            let name = c.split(' ').next().unwrap_or_default();
            assert!(
                KUBEFLOW_FAMILIES.iter().any(|(n, _)| *n == name),
                "a complaint about other than kubeflow's names: {c}\n{said}\n{text}"
            );
            assert!(
                c.contains("should have \"_total\" suffix")
                    || c.contains("should not have \"_count\" suffix")
                    || c.contains("should not include type"),
                "a complaint beyond kubeflow's naming: {c}\n{said}"
            );
        }
        // It did parse and lint them: every counter lacks `_total`, for one.
        assert!(
            complaints
                .iter()
                .any(|c| c.starts_with("spark_application_count counter metrics should have")),
            "{said}"
        );
    }

    #[test]
    fn kubeflow_mode_names_exactly_kubeflows_families_types_and_labels() {
        let m = Metrics::new();
        let kubeflow = AppMetrics::with_names(
            "",
            vec!["team".into(), "namespace".into(), "queue".into()],
            DEFAULT_START_LATENCY_BUCKETS,
            MetricNames::Kubeflow,
        );
        some_events(&kubeflow);
        let store = running_app_store();
        // One running executor of the running app.
        let executor: SparkPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pi-exec-1", "namespace": "jobs", "labels": {
                crate::labels::SPARK_ROLE_LABEL: "executor", crate::labels::APP_NAME_LABEL: "pi"}},
            "status": {"phase": "Running"}
        }))
        .expect("a pod");
        let mut pods = kube::runtime::reflector::store::Writer::<SparkPod>::default();
        pods.apply_watcher_event(&kube::runtime::watcher::Event::Apply(executor));
        let _term = kubeflow.add_source(store, pods.as_reader(), JobNamespaces::all());
        let text = m.encode_text(Some(&kubeflow));
        let want: std::collections::BTreeSet<(String, String)> = KUBEFLOW_FAMILIES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(app_types(&text), want, "{text}");
        // Counters' samples carry kubeflow's names (no `_total`); summaries are a sum and a count.
        let labels = r#"{team="data",namespace="jobs",queue="Unknown"}"#;
        for sample in [
            format!("spark_application_count{labels} 3"),
            format!("spark_application_submit_count{labels} 2"),
            format!("spark_application_failed_submission_count{labels} 1"),
            format!("spark_application_success_count{labels} 1"),
            format!("spark_application_failure_count{labels} 1"),
            format!("spark_application_success_execution_time_seconds_sum{labels} 120.0"),
            format!("spark_application_success_execution_time_seconds_count{labels} 1"),
            format!("spark_application_failure_execution_time_seconds_count{labels} 1"),
            format!("spark_application_submit_latency_seconds_count{labels} 2"),
            format!("spark_application_submit_latency_seconds_histogram_count{labels} 2"),
            format!("spark_application_start_latency_seconds_count{labels} 2"),
            format!("spark_application_start_latency_seconds_histogram_count{labels} 2"),
            format!("spark_executor_success_count{labels} 1"),
            format!("spark_executor_failure_count{labels} 1"),
        ] {
            assert!(text.contains(&format!("\n{sample}\n")), "{sample}:\n{text}");
        }
        // The running app of the cache has no labels: kubeflow's values for absent ones.
        for gauge in [
            "spark_application_running_count",
            "spark_executor_running_count",
        ] {
            assert!(
                text.contains(&format!(
                    "\n{gauge}{{team=\"Unknown\",namespace=\"jobs\",queue=\"Unknown\"}} 1\n"
                )),
                "{gauge}: {text}"
            );
        }
        // Kubeflow's default submit-latency buckets on its `_histogram`.
        assert!(
            text.contains(
                "spark_application_submit_latency_seconds_histogram_bucket{le=\"256.0\",team=\"data\",namespace=\"jobs\",queue=\"Unknown\"} 2"
            ),
            "{text}"
        );
        // Every sample of the SparkApplication families has exactly the configured labels.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if line.starts_with("spark_webhook_") {
                continue;
            }
            let inner = line
                .split_once('{')
                .and_then(|(_, r)| r.split_once('}'))
                .map(|(l, _)| l)
                .unwrap_or_default();
            let keys: Vec<&str> = inner
                .split(',')
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
                .filter(|k| *k != "le")
                .collect();
            assert_eq!(keys, ["team", "namespace", "queue"], "{line}");
        }
        // The table says the same as kubeflow's source.
        let table: std::collections::BTreeSet<(String, String)> = NAME_MAP
            .iter()
            .flat_map(|r| r.kubeflow.iter())
            .map(|(n, k, _)| (n.to_string(), k.as_str().to_string()))
            .collect();
        assert_eq!(table, want);
        assert!(!Metrics::openmetrics_allowed(Some(&kubeflow)));
    }

    #[test]
    fn kubeflow_mode_follows_the_prefix_with_kubeflows_dash_rule() {
        let kubeflow = AppMetrics::with_names(
            "my-op_",
            Vec::new(),
            DEFAULT_START_LATENCY_BUCKETS,
            MetricNames::Kubeflow,
        );
        let text = kubeflow.encode_kubeflow_text();
        assert!(
            text.contains("\n# TYPE my_op_spark_application_count counter\n"),
            "{text}"
        );
        assert!(
            text.contains("\nmy_op_spark_application_count{} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\n# TYPE my_op_spark_application_start_latency_seconds summary\n"),
            "{text}"
        );
    }

    #[test]
    fn native_mode_is_unchanged_by_the_table() {
        let native = AppMetrics::new("", Vec::new(), DEFAULT_START_LATENCY_BUCKETS);
        let text = Metrics::new().encode_text(Some(&native));
        let types = app_types(&text);
        let want: std::collections::BTreeSet<(String, String)> = [
            ("spark_application_total", "counter"),
            ("spark_application_submit_total", "counter"),
            ("spark_application_failed_submission_total", "counter"),
            ("spark_application_running", "gauge"),
            ("spark_application_success_total", "counter"),
            ("spark_application_failure_total", "counter"),
            ("spark_application_suspend_total", "counter"),
            ("spark_application_resume_total", "counter"),
            (
                "spark_application_success_execution_time_seconds",
                "histogram",
            ),
            (
                "spark_application_failure_execution_time_seconds",
                "histogram",
            ),
            ("spark_application_submit_latency_seconds", "histogram"),
            ("spark_application_start_latency_seconds", "histogram"),
            ("spark_executor_running", "gauge"),
            ("spark_executor_success_total", "counter"),
            ("spark_executor_failure_total", "counter"),
        ]
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
        assert_eq!(types, want, "{text}");
        assert!(Metrics::openmetrics_allowed(Some(&native)));
    }

    #[test]
    fn the_start_latency_flag_default_is_the_bucket_list() {
        let parsed: Vec<f64> = DEFAULT_START_LATENCY_BUCKETS_FLAG
            .split(',')
            .map(|b| b.parse().expect("a number"))
            .collect();
        assert_eq!(parsed, DEFAULT_START_LATENCY_BUCKETS);
    }

    #[test]
    fn counters_exist_at_zero_and_count() {
        let m = Metrics::new();
        let text = m.encode(None);
        for gauge in [
            "spark_webhook_certificate_not_after_timestamp_seconds 0",
            "spark_webhook_certificate_ca_not_after_timestamp_seconds 0",
        ] {
            assert!(text.contains(gauge), "{text}");
        }
        assert!(
            text.contains(
                r#"spark_webhook_admission_reviews_total{kind="Pod",outcome="Denied"} 0"#
            ),
            "{text}"
        );
        m.observe(ReviewKind::Pod, Outcome::Patched, 0.0001);
        let text = m.encode(None);
        assert!(
            text.contains(
                r#"spark_webhook_admission_reviews_total{kind="Pod",outcome="Patched"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("spark_webhook_admission_review_duration_seconds_count{kind=\"Pod\"} 1"),
            "{text}"
        );
    }
}

/// Which names the SparkApplication metrics go by on `/metrics` (`--metrics-names`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricNames {
    /// Kubeflow's set under Prometheus' naming rules: `promtool check metrics` passes.
    #[default]
    Native,
    /// Kubeflow's exact names and types, for dashboards and alerts written against it; served
    /// in the classic text format only, as kubeflow serves it.
    Kubeflow,
}

/// The type of a metric family, as the exposition's `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    /// `_sum` and `_count`, no quantiles: kubeflow's summaries are client_golang's default
    /// (no objectives), so that is all they expose.
    Summary,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// One SparkApplication measurement under our name and under kubeflow's (v2.5).
#[derive(Debug)]
pub struct NameMapping {
    /// Our family name (before `--metrics-prefix`); a counter's samples add `_total`.
    pub native: &'static str,
    pub native_kind: MetricKind,
    pub native_help: &'static str,
    /// Kubeflow's families for the same measurement: name, type, help. Its latencies are a
    /// summary plus a `…_histogram`; its execution times have no help text (ours is used).
    /// None: kubeflow has no such measurement, and kubeflow mode leaves it out.
    pub kubeflow: &'static [(&'static str, MetricKind, &'static str)],
}

use MetricKind::{Counter as C, Gauge as G, Histogram as H, Summary as S};

/// The mapping, in one place: README's table says the same. Labels are the same in both modes
/// (`--metrics-labels`, on every family).
pub const NAME_MAP: &[NameMapping] = &[
    NameMapping {
        native: "spark_application",
        native_kind: C,
        native_help: "SparkApplications seen",
        kubeflow: &[(
            "spark_application_count",
            C,
            "Total number of SparkApplication",
        )],
    },
    NameMapping {
        native: "spark_application_submit",
        native_kind: C,
        native_help: "Successful submissions",
        kubeflow: &[(
            "spark_application_submit_count",
            C,
            "Total number of submitted SparkApplication",
        )],
    },
    NameMapping {
        native: "spark_application_failed_submission",
        native_kind: C,
        native_help: "Failed submissions",
        kubeflow: &[(
            "spark_application_failed_submission_count",
            C,
            "Total number of failed SparkApplication submission",
        )],
    },
    NameMapping {
        native: "spark_application_running",
        native_kind: G,
        native_help: "SparkApplications running now",
        kubeflow: &[(
            "spark_application_running_count",
            G,
            "Total number of running SparkApplication",
        )],
    },
    NameMapping {
        native: "spark_application_success",
        native_kind: C,
        native_help: "SparkApplications completed",
        kubeflow: &[(
            "spark_application_success_count",
            C,
            "Total number of successful SparkApplication",
        )],
    },
    NameMapping {
        native: "spark_application_failure",
        native_kind: C,
        native_help: "SparkApplications failed",
        kubeflow: &[(
            "spark_application_failure_count",
            C,
            "Total number of failed SparkApplication",
        )],
    },
    NameMapping {
        native: "spark_application_success_execution_time_seconds",
        native_kind: H,
        native_help: "Submission to completion of successful apps",
        kubeflow: &[(
            "spark_application_success_execution_time_seconds",
            S,
            "Submission to completion of successful apps",
        )],
    },
    NameMapping {
        native: "spark_application_failure_execution_time_seconds",
        native_kind: H,
        native_help: "Submission to failure of failed apps",
        kubeflow: &[(
            "spark_application_failure_execution_time_seconds",
            S,
            "Submission to failure of failed apps",
        )],
    },
    NameMapping {
        native: "spark_application_submit_latency_seconds",
        native_kind: H,
        native_help: "Creation to SUBMITTED: the operator's own share of start latency",
        kubeflow: &[
            (
                "spark_application_submit_latency_seconds",
                S,
                "Spark App Submit Latency from creation to submitted state",
            ),
            (
                "spark_application_submit_latency_seconds_histogram",
                H,
                "Spark App Submit Latency counts in buckets from creation to submitted state",
            ),
        ],
    },
    NameMapping {
        native: "spark_application_start_latency_seconds",
        native_kind: H,
        native_help: "Creation to RUNNING",
        kubeflow: &[
            (
                "spark_application_start_latency_seconds",
                S,
                "Spark App Start Latency via the Operator",
            ),
            (
                "spark_application_start_latency_seconds_histogram",
                H,
                "Spark App Start Latency counts in buckets via the Operator",
            ),
        ],
    },
    NameMapping {
        native: "spark_application_suspend",
        native_kind: C,
        native_help: "Suspensions completed (SUSPENDED: the attempt's pods gone)",
        // Kubeflow counts no suspensions: kubeflow mode has exactly kubeflow's families.
        kubeflow: &[],
    },
    NameMapping {
        native: "spark_application_resume",
        native_kind: C,
        native_help: "Resumptions (SUSPENDED to RESUMING)",
        kubeflow: &[],
    },
    NameMapping {
        native: "spark_executor_running",
        native_kind: G,
        native_help: "Executors running now",
        kubeflow: &[(
            "spark_executor_running_count",
            G,
            "Total number of running Spark executors",
        )],
    },
    NameMapping {
        native: "spark_executor_success",
        native_kind: C,
        native_help: "Executors that completed",
        kubeflow: &[(
            "spark_executor_success_count",
            C,
            "Total number of successful Spark executors",
        )],
    },
    NameMapping {
        native: "spark_executor_failure",
        native_kind: C,
        native_help: "Executors that failed",
        kubeflow: &[(
            "spark_executor_failure_count",
            C,
            "Total number of failed Spark executors",
        )],
    },
];

/// Kubeflow's default `--metrics-job-submit-latency-buckets`, for the `…_histogram` of submit
/// latency in kubeflow mode (there is no flag for them here).
pub const KUBEFLOW_SUBMIT_LATENCY_BUCKETS: &[f64] =
    &[0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// SparkApplication metrics, prefixed by `--metrics-prefix`, under the names of
/// `--metrics-names` ([`NAME_MAP`]). By default kubeflow's set under Prometheus' naming rules:
/// kubeflow's `spark_application_submit_count` is the counter `spark_application_submit_total`
/// here, its `…_running_count` gauges are `…_running` (`promtool check metrics` refuses `_count`
/// on anything but histograms and summaries, and a counter's samples end in `_total`), and each
/// measurement is one family (kubeflow's latency summary plus `…_histogram` is one histogram).
/// Migrated dashboards and alerts query kubeflow's names, though, and go silent on ours:
/// `--metrics-names=kubeflow` exposes kubeflow's exact names and types instead, from the same
/// observations.
pub struct AppMetrics {
    pub registry: Registry,
    names: MetricNames,
    /// The families registered, prefixed, with their type on `/metrics`.
    families: Vec<(String, MetricKind)>,
    label_keys: Vec<String>,
    count: Family<Labels, Counter>,
    submit: Family<Labels, Counter>,
    failed_submission: Family<Labels, Counter>,
    running: Family<Labels, Gauge>,
    success: Family<Labels, Counter>,
    failure: Family<Labels, Counter>,
    /// Native mode only (kubeflow has no equivalent).
    suspend: Option<Family<Labels, Counter>>,
    resume: Option<Family<Labels, Counter>>,
    success_time: Timing,
    failure_time: Timing,
    submit_latency: Timing,
    start_latency: Timing,
    executor_running: Family<Labels, Gauge>,
    executor_success: Family<Labels, Counter>,
    executor_failure: Family<Labels, Counter>,
    /// The caches of the controllers running now, by a number of their own.
    sources: Mutex<Vec<(u64, Source)>>,
    next_source: std::sync::atomic::AtomicU64,
}

/// Keeps a controller's caches among the sources of the running gauges; dropping it removes them.
pub struct SourceGuard {
    metrics: Arc<AppMetrics>,
    id: u64,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.metrics.sources.lock() {
            s.retain(|(id, _)| *id != self.id);
        }
    }
}

/// The caches of one controller: its apps and its Spark pods.
/// A controller's caches and the namespaces it serves (its app watch may hold others).
type Source = (Store<GuardedApp>, Store<SparkPod>, JobNamespaces);

/// States the default start-latency buckets once, as the values and as the text of the flag's
/// default (clap takes a string), so the two cannot drift apart.
macro_rules! start_latency_buckets {
    ($first:literal $(, $rest:literal)* $(,)?) => {
        /// Default start-latency buckets: 30 s steps to 5 min, then on to an hour (the Go
        /// operator's 300 s top bucket hid every slow start).
        pub const DEFAULT_START_LATENCY_BUCKETS: &[f64] = &[$first as f64 $(, $rest as f64)*];
        /// [`DEFAULT_START_LATENCY_BUCKETS`] as the comma-separated default of
        /// `--metrics-job-start-latency-buckets`.
        pub const DEFAULT_START_LATENCY_BUCKETS_FLAG: &str =
            concat!(stringify!($first) $(, ",", stringify!($rest))*);
    };
}
start_latency_buckets!(
    30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 600, 900, 1800, 3600
);

type Labels = Vec<(String, String)>;
type HistFamily = Family<Labels, Histogram, Buckets>;

/// Builds each histogram of a family with configured buckets.
#[derive(Clone, Debug)]
pub struct Buckets(Vec<f64>);

impl prometheus_client::metrics::family::MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Kubeflow's summary as client_golang exposes it by default: a sum and a count, no quantiles.
/// prometheus-client has no summary type; this encodes as a histogram without buckets (the
/// same two samples), and kubeflow mode's exposition names its type `summary`.
#[derive(Clone, Debug, Default)]
pub struct Summary(Arc<Mutex<(f64, u64)>>);

impl Summary {
    pub fn observe(&self, v: f64) {
        if let Ok(mut s) = self.0.lock() {
            s.0 += v;
            s.1 += 1;
        }
    }
}

impl prometheus_client::metrics::TypedMetric for Summary {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for Summary {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let (sum, count) = self.0.lock().map(|s| *s).unwrap_or_default();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &[], None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        <Self as prometheus_client::metrics::TypedMetric>::TYPE
    }
}

/// One timing measurement: a histogram (ours; kubeflow's `…_histogram`), a summary
/// (kubeflow's), or both (kubeflow's latencies).
struct Timing {
    histogram: Option<HistFamily>,
    summary: Option<Family<Labels, Summary>>,
}

impl Timing {
    fn observe(&self, l: &Labels, v: f64) {
        if let Some(h) = &self.histogram {
            h.get_or_create(l).observe(v);
        }
        if let Some(s) = &self.summary {
            s.get_or_create(l).observe(v);
        }
    }

    fn touch(&self, l: &Labels) {
        if let Some(h) = &self.histogram {
            let _ = h.get_or_create(l);
        }
        if let Some(s) = &self.summary {
            let _ = s.get_or_create(l);
        }
    }
}

/// Registers families under the names `--metrics-names` picks from [`NAME_MAP`].
struct Registrar {
    registry: Registry,
    prefix: String,
    names: MetricNames,
    families: Vec<(String, MetricKind)>,
}

impl Registrar {
    fn row(native: &str) -> &'static NameMapping {
        NAME_MAP
            .iter()
            .find(|r| r.native == native)
            .expect("every family is in NAME_MAP")
    }

    fn name(&self, n: &str) -> String {
        match self.names {
            MetricNames::Native => format!("{}{n}", self.prefix),
            // Kubeflow's rule for a metric name: prefix and name, `-` made `_`.
            MetricNames::Kubeflow => format!("{}{n}", self.prefix).replace('-', "_"),
        }
    }

    /// The one family of a counter or gauge row, in the chosen names.
    fn single<M>(&mut self, native: &str, metric: M) -> M
    where
        M: prometheus_client::registry::Metric + Clone,
    {
        let row = Self::row(native);
        let (n, kind, help) = match self.names {
            MetricNames::Native => (row.native, row.native_kind, row.native_help),
            MetricNames::Kubeflow => row.kubeflow[0],
        };
        let name = self.name(n);
        self.registry.register(name.clone(), help, metric.clone());
        self.families.push((name, kind));
        metric
    }

    fn counter(&mut self, native: &str) -> Family<Labels, Counter> {
        self.single(native, Family::default())
    }
    /// A counter row kubeflow has no family for: registered in native mode only.
    fn native_counter(&mut self, native: &str) -> Option<Family<Labels, Counter>> {
        (self.names == MetricNames::Native).then(|| self.counter(native))
    }

    fn gauge(&mut self, native: &str) -> Family<Labels, Gauge> {
        self.single(native, Family::default())
    }

    /// A timing row: our histogram with `native_buckets`, or kubeflow's summary and/or
    /// histogram (with `kubeflow_buckets`).
    fn timing(&mut self, native: &str, native_buckets: &[f64], kubeflow_buckets: &[f64]) -> Timing {
        let row = Self::row(native);
        let mut t = Timing {
            histogram: None,
            summary: None,
        };
        let families: Vec<(&str, MetricKind, &str, &[f64])> = match self.names {
            MetricNames::Native => {
                vec![(row.native, row.native_kind, row.native_help, native_buckets)]
            }
            MetricNames::Kubeflow => row
                .kubeflow
                .iter()
                .map(|&(n, k, h)| (n, k, h, kubeflow_buckets))
                .collect(),
        };
        for (n, kind, help, buckets) in families {
            let name = self.name(n);
            match kind {
                MetricKind::Histogram => {
                    let f = HistFamily::new_with_constructor(Buckets(buckets.to_vec()));
                    self.registry.register(name.clone(), help, f.clone());
                    t.histogram = Some(f);
                }
                MetricKind::Summary => {
                    let f = Family::<Labels, Summary>::default();
                    self.registry.register(name.clone(), help, f.clone());
                    t.summary = Some(f);
                }
                MetricKind::Counter | MetricKind::Gauge => {
                    unreachable!("NAME_MAP's timing rows are histograms and summaries")
                }
            }
            self.families.push((name, kind));
        }
        t
    }
}

impl AppMetrics {
    /// `prefix` is prepended to every name (kubeflow's `--metrics-prefix`); `label_keys` are
    /// SparkApplication labels copied onto every series (kubeflow's `--metrics-labels`).
    pub fn new(prefix: &str, label_keys: Vec<String>, start_buckets: &[f64]) -> Arc<Self> {
        Self::with_names(prefix, label_keys, start_buckets, MetricNames::Native)
    }

    /// [`AppMetrics::new`] under the names `names` picks.
    pub fn with_names(
        prefix: &str,
        label_keys: Vec<String>,
        start_buckets: &[f64],
        names: MetricNames,
    ) -> Arc<Self> {
        let mut r = Registrar {
            registry: Registry::default(),
            prefix: prefix.to_string(),
            names,
            families: Vec::new(),
        };
        let exec_time = [
            60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
        ];
        let submit_buckets = [
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        let count = r.counter("spark_application");
        let submit = r.counter("spark_application_submit");
        let failed_submission = r.counter("spark_application_failed_submission");
        let running = r.gauge("spark_application_running");
        let success = r.counter("spark_application_success");
        let failure = r.counter("spark_application_failure");
        let suspend = r.native_counter("spark_application_suspend");
        let resume = r.native_counter("spark_application_resume");
        let success_time = r.timing(
            "spark_application_success_execution_time_seconds",
            &exec_time,
            &[],
        );
        let failure_time = r.timing(
            "spark_application_failure_execution_time_seconds",
            &exec_time,
            &[],
        );
        let submit_latency = r.timing(
            "spark_application_submit_latency_seconds",
            &submit_buckets,
            KUBEFLOW_SUBMIT_LATENCY_BUCKETS,
        );
        let start_latency = r.timing(
            "spark_application_start_latency_seconds",
            start_buckets,
            start_buckets,
        );
        let executor_running = r.gauge("spark_executor_running");
        let executor_success = r.counter("spark_executor_success");
        let executor_failure = r.counter("spark_executor_failure");
        let m = AppMetrics {
            registry: r.registry,
            names,
            families: r.families,
            label_keys,
            count,
            submit,
            failed_submission,
            running,
            success,
            failure,
            suspend,
            resume,
            success_time,
            failure_time,
            submit_latency,
            start_latency,
            executor_running,
            executor_success,
            executor_failure,
            sources: Mutex::new(Vec::new()),
            next_source: Default::default(),
        };
        // Every series exists at 0 from the start when no per-app labels split them.
        if m.label_keys.is_empty() {
            let l = Labels::new();
            for f in [
                &m.count,
                &m.submit,
                &m.failed_submission,
                &m.success,
                &m.failure,
                &m.executor_success,
                &m.executor_failure,
            ] {
                let _ = f.get_or_create(&l);
            }
            for f in [&m.suspend, &m.resume].into_iter().flatten() {
                let _ = f.get_or_create(&l);
            }
            for f in [&m.running, &m.executor_running] {
                let _ = f.get_or_create(&l);
            }
            for t in [
                &m.success_time,
                &m.failure_time,
                &m.submit_latency,
                &m.start_latency,
            ] {
                t.touch(&l);
            }
        }
        Arc::new(m)
    }

    /// The names the metrics go by.
    pub fn names(&self) -> MetricNames {
        self.names
    }

    /// The families on `/metrics`, prefixed, with their type there.
    pub fn families(&self) -> &[(String, MetricKind)] {
        &self.families
    }

    /// Kubeflow mode's exposition, in the classic text format as kubeflow serves it: a counter's
    /// samples carry its name as is (`spark_application_count`, no `_total`) and a summary is
    /// typed `summary`. (OpenMetrics would need `_total` on every counter sample.)
    pub fn encode_kubeflow_text(&self) -> String {
        use prometheus_client::encoding::text::encode_registry;
        self.refresh_running();
        let mut om = String::new();
        let _ = encode_registry(&mut om, &self.registry);
        let of_kind = |k: MetricKind| -> std::collections::HashSet<&str> {
            self.families
                .iter()
                .filter(|(_, kind)| *kind == k)
                .map(|(n, _)| n.as_str())
                .collect()
        };
        let (counters, summaries) = (of_kind(MetricKind::Counter), of_kind(MetricKind::Summary));
        let mut out = String::with_capacity(om.len());
        for line in om.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                match rest.split_once(' ') {
                    Some((name, "histogram")) if summaries.contains(name) => {
                        out.push_str(&format!("# TYPE {name} summary"));
                    }
                    _ => out.push_str(line),
                }
            } else if line.starts_with('#') {
                out.push_str(line);
            } else {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                let (name, tail) = line.split_at(end);
                match name.strip_suffix("_total") {
                    Some(base) if counters.contains(base) => {
                        out.push_str(base);
                        out.push_str(tail);
                    }
                    _ => out.push_str(line),
                }
            }
            out.push('\n');
        }
        out
    }

    fn labels(&self, app: &ObjectMeta) -> Labels {
        let app_labels = app.labels.clone().unwrap_or_default();
        self.label_keys
            .iter()
            .map(|k| {
                let key = sanitize(k);
                let value = match (app_labels.get(k), self.names) {
                    (Some(v), _) => v.clone(),
                    (None, MetricNames::Native) => String::new(),
                    // Kubeflow's values for a label the app lacks.
                    (None, MetricNames::Kubeflow) if key == "namespace" => {
                        app.namespace.clone().unwrap_or_default()
                    }
                    (None, MetricNames::Kubeflow) => "Unknown".to_string(),
                };
                (key, value)
            })
            .collect()
    }

    /// Counts one status transition of `app` (from `old` to `new.applicationState.state`).
    pub fn transition(
        &self,
        app: &crate::crd::SparkApplication,
        old: crate::crd::ApplicationStateType,
        new: &crate::crd::SparkApplicationStatus,
    ) {
        use crate::crd::ApplicationStateType as S;
        let l = self.labels(&app.metadata);
        let state = new.application_state.state;
        let since_creation = || {
            app.metadata.creation_timestamp.as_ref().map(|t| {
                k8s_openapi::jiff::Timestamp::now()
                    .duration_since(t.0)
                    .as_secs_f64()
                    .max(0.0)
            })
        };
        if old == S::New {
            self.count.get_or_create(&l).inc();
        }
        if state == old {
            return;
        }
        match state {
            S::Submitted
                if matches!(
                    old,
                    S::New | S::PendingRerun | S::SubmissionFailed | S::Resuming
                ) =>
            {
                self.submit.get_or_create(&l).inc();
                if new.submission_attempts <= 1
                    && let Some(s) = since_creation()
                {
                    self.submit_latency.observe(&l, s);
                }
            }
            S::SubmissionFailed => {
                self.failed_submission.get_or_create(&l).inc();
            }
            S::Suspended => {
                if let Some(f) = &self.suspend {
                    f.get_or_create(&l).inc();
                }
            }
            S::Resuming => {
                if let Some(f) = &self.resume {
                    f.get_or_create(&l).inc();
                }
            }
            S::Running if new.execution_attempts <= 1 => {
                if let Some(s) = since_creation() {
                    self.start_latency.observe(&l, s);
                }
            }
            S::Completed | S::Failed => {
                let run = match (&new.last_submission_attempt_time, &new.termination_time) {
                    (Some(a), Some(b)) => Some(b.0.duration_since(a.0).as_secs_f64().max(0.0)),
                    _ => None,
                };
                let (count, time) = if state == S::Completed {
                    (&self.success, &self.success_time)
                } else {
                    (&self.failure, &self.failure_time)
                };
                count.get_or_create(&l).inc();
                if let Some(run) = run {
                    time.observe(&l, run);
                }
            }
            _ => {}
        }
    }

    /// Counts executor outcomes reported by one decision's Events.
    pub fn executor_event(&self, app: &crate::crd::SparkApplication, reason: &str) {
        let l = self.labels(&app.metadata);
        match reason {
            "SparkExecutorCompleted" => {
                self.executor_success.get_or_create(&l).inc();
            }
            "SparkExecutorFailed" => {
                self.executor_failure.get_or_create(&l).inc();
            }
            _ => {}
        }
    }

    /// Registers the caches the running gauges are computed from, until the returned guard is
    /// dropped: a controller's caches count only while it runs, so an app is never counted
    /// once per leader term (the app cache outlives the terms and is the same store in each).
    pub fn add_source(
        self: &Arc<Self>,
        apps: Store<GuardedApp>,
        pods: Store<SparkPod>,
        namespaces: JobNamespaces,
    ) -> SourceGuard {
        let id = self
            .next_source
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut s) = self.sources.lock() {
            s.push((id, (apps, pods, namespaces)));
        }
        SourceGuard {
            metrics: self.clone(),
            id,
        }
    }

    /// Sets the running gauges from the caches at scrape time, so they can never drift: an app
    /// deleted while running leaves the count at once (kubeflow #1354).
    pub fn refresh_running(&self) {
        use crate::crd::ApplicationStateType as S;
        let Ok(sources) = self.sources.lock() else {
            return;
        };
        let mut apps: HashMap<Labels, i64> = HashMap::new();
        let mut execs: HashMap<Labels, i64> = HashMap::new();
        for (_, (app_store, pod_store, namespaces)) in sources.iter() {
            let mut by_name: HashMap<(String, String), Labels> = HashMap::new();
            for guard in app_store.state() {
                let Ok(app) = &guard.0 else { continue };
                if !namespaces.contains(app.metadata.namespace.as_deref().unwrap_or_default()) {
                    continue;
                }
                let labels = self.labels(&app.metadata);
                let key = (
                    app.metadata.namespace.clone().unwrap_or_default(),
                    app.metadata.name.clone().unwrap_or_default(),
                );
                if app.status.as_ref().map(|s| s.application_state.state) == Some(S::Running) {
                    *apps.entry(labels.clone()).or_default() += 1;
                }
                by_name.insert(key, labels);
            }
            for pod in pod_store.state() {
                let l = pod.metadata.labels.as_ref();
                let is_running_executor = l
                    .and_then(|l| l.get(crate::labels::SPARK_ROLE_LABEL))
                    .map(String::as_str)
                    == Some("executor")
                    && pod.status.phase.as_deref() == Some("Running");
                if !is_running_executor {
                    continue;
                }
                let key = (
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    l.and_then(|l| l.get(crate::labels::APP_NAME_LABEL))
                        .cloned()
                        .unwrap_or_default(),
                );
                if let Some(labels) = by_name.get(&key) {
                    *execs.entry(labels.clone()).or_default() += 1;
                }
            }
        }
        self.running.clear();
        self.executor_running.clear();
        if self.label_keys.is_empty() {
            let _ = self.running.get_or_create(&Labels::new());
            let _ = self.executor_running.get_or_create(&Labels::new());
        }
        for (l, n) in apps {
            self.running.get_or_create(&l).set(n);
        }
        for (l, n) in execs {
            self.executor_running.get_or_create(&l).set(n);
        }
    }
}

/// A label key as a Prometheus label name.
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
