//! Prometheus metrics of the webhook, served on the admin port's `/metrics`.
//!
//! Every series a dashboard divides by exists at 0 from the start (no NaN ratios), so the label
//! sets are enumerated up front.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;

use crate::cache::{GuardedApp, SparkPod};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestartLabels {
    /// The controller's job namespace ("" for one controller over all namespaces).
    pub namespace: String,
    pub reason: RestartReason,
}

/// The process's metric families: the webhook's, and the reconciler's own health.
pub struct Metrics {
    pub registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub review_seconds: Family<KindLabels, Histogram>,
    pub cert_not_after: Gauge<i64, AtomicI64>,
    pub ca_not_after: Gauge<i64, AtomicI64>,
    pub controller_restarts: Family<RestartLabels, Counter>,
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
        for kind in [ReviewKind::Pod, ReviewKind::SparkApplication] {
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
        })
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
        let first_term = apps.add_source(store.clone(), pods());
        assert!(m.encode(Some(&apps)).contains(&running(1)));
        // The term ends (its controller returns) and the next one starts on the same store.
        drop(first_term);
        let second_term = apps.add_source(store, pods());
        let text = m.encode(Some(&apps));
        assert!(text.contains(&running(1)), "{text}");
        drop(second_term);
        let text = m.encode(Some(&apps));
        assert!(
            text.contains(&running(0)),
            "no controller, no running apps: {text}"
        );
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

/// SparkApplication metrics, kubeflow's set under Prometheus' naming rules, prefixed by
/// `--metrics-prefix`: kubeflow's `spark_application_submit_count` is the counter
/// `spark_application_submit_total` here, its `…_running_count` gauges are `…_running`
/// (`promtool check metrics` refuses `_count` on anything but histograms and summaries, and a
/// counter's samples end in `_total`). Kubeflow's summaries are histograms (prometheus-client
/// has no summary type).
pub struct AppMetrics {
    pub registry: Registry,
    label_keys: Vec<String>,
    count: Family<Labels, Counter>,
    submit: Family<Labels, Counter>,
    failed_submission: Family<Labels, Counter>,
    running: Family<Labels, Gauge>,
    success: Family<Labels, Counter>,
    failure: Family<Labels, Counter>,
    success_time: HistFamily,
    failure_time: HistFamily,
    submit_latency: HistFamily,
    start_latency: HistFamily,
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
type Source = (Store<GuardedApp>, Store<SparkPod>);

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

impl AppMetrics {
    /// `prefix` is prepended to every name (kubeflow's `--metrics-prefix`); `label_keys` are
    /// SparkApplication labels copied onto every series (kubeflow's `--metrics-labels`).
    pub fn new(prefix: &str, label_keys: Vec<String>, start_buckets: &[f64]) -> Arc<Self> {
        let mut registry = Registry::default();
        let name = |n: &str| format!("{prefix}{n}");
        let gauge = |registry: &mut Registry, n: &str, help: &str| {
            let f = Family::<Labels, Gauge>::default();
            registry.register(name(n), help, f.clone());
            f
        };
        let counter = |registry: &mut Registry, n: &str, help: &str| {
            let f = Family::<Labels, Counter>::default();
            registry.register(name(n), help, f.clone());
            f
        };
        let exec_time = [
            60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
        ];
        let hist = |registry: &mut Registry, n: &str, help: &str, buckets: Vec<f64>| {
            let f = HistFamily::new_with_constructor(Buckets(buckets));
            registry.register(name(n), help, f.clone());
            f
        };
        let submit_buckets = vec![
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        let m = AppMetrics {
            count: counter(&mut registry, "spark_application", "SparkApplications seen"),
            submit: counter(
                &mut registry,
                "spark_application_submit",
                "Successful submissions",
            ),
            failed_submission: counter(
                &mut registry,
                "spark_application_failed_submission",
                "Failed submissions",
            ),
            running: gauge(
                &mut registry,
                "spark_application_running",
                "SparkApplications running now",
            ),
            success: counter(
                &mut registry,
                "spark_application_success",
                "SparkApplications completed",
            ),
            failure: counter(
                &mut registry,
                "spark_application_failure",
                "SparkApplications failed",
            ),
            success_time: hist(
                &mut registry,
                "spark_application_success_execution_time_seconds",
                "Submission to completion of successful apps",
                exec_time.to_vec(),
            ),
            failure_time: hist(
                &mut registry,
                "spark_application_failure_execution_time_seconds",
                "Submission to failure of failed apps",
                exec_time.to_vec(),
            ),
            submit_latency: hist(
                &mut registry,
                "spark_application_submit_latency_seconds",
                "Creation to SUBMITTED: the operator's own share of start latency",
                submit_buckets,
            ),
            start_latency: hist(
                &mut registry,
                "spark_application_start_latency_seconds",
                "Creation to RUNNING",
                start_buckets.to_vec(),
            ),
            executor_running: gauge(
                &mut registry,
                "spark_executor_running",
                "Executors running now",
            ),
            executor_success: counter(
                &mut registry,
                "spark_executor_success",
                "Executors that completed",
            ),
            executor_failure: counter(
                &mut registry,
                "spark_executor_failure",
                "Executors that failed",
            ),
            label_keys,
            registry,
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
            for f in [&m.running, &m.executor_running] {
                let _ = f.get_or_create(&l);
            }
            for h in [
                &m.success_time,
                &m.failure_time,
                &m.submit_latency,
                &m.start_latency,
            ] {
                let _ = h.get_or_create(&l);
            }
        }
        Arc::new(m)
    }

    fn labels(&self, app: &ObjectMeta) -> Labels {
        let app_labels = app.labels.clone().unwrap_or_default();
        self.label_keys
            .iter()
            .map(|k| (sanitize(k), app_labels.get(k).cloned().unwrap_or_default()))
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
            S::Submitted if matches!(old, S::New | S::PendingRerun | S::SubmissionFailed) => {
                self.submit.get_or_create(&l).inc();
                if new.submission_attempts <= 1
                    && let Some(s) = since_creation()
                {
                    self.submit_latency.get_or_create(&l).observe(s);
                }
            }
            S::SubmissionFailed => {
                self.failed_submission.get_or_create(&l).inc();
            }
            S::Running if new.execution_attempts <= 1 => {
                if let Some(s) = since_creation() {
                    self.start_latency.get_or_create(&l).observe(s);
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
                    time.get_or_create(&l).observe(run);
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
    ) -> SourceGuard {
        let id = self
            .next_source
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut s) = self.sources.lock() {
            s.push((id, (apps, pods)));
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
        for (_, (app_store, pod_store)) in sources.iter() {
            let mut by_name: HashMap<(String, String), Labels> = HashMap::new();
            for guard in app_store.state() {
                let Ok(app) = &guard.0 else { continue };
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
