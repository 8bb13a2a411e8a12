//! The flags of `serve` (and the registration flags `webhooks` shares), exactly as clap parses
//! them: what they mean is in `config`, which turns them into the typed configs `serve` runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};

use crate::registration::FailurePolicy;
use crate::webhook::parse_go_duration;

/// Options of `spark-webhook serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS admission webhook (TLS only; no plaintext admission port).
    #[arg(
        long,
        env = "SPARK_WEBHOOK_WEBHOOK_ADDR",
        default_value = "0.0.0.0:9443"
    )]
    pub webhook_addr: SocketAddr,

    /// Address of the plain-HTTP admin endpoints: /healthz, /readyz and /metrics.
    #[arg(long, env = "SPARK_WEBHOOK_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,

    /// Folder holding tls.crt and tls.key (and ca.crt, the caBundle used for registration);
    /// `spark-webhook certs` writes it, a mounted Secret works too. Changes are picked up live.
    #[arg(long, env = "SPARK_WEBHOOK_CERT_DIR", default_value = "certs")]
    pub cert_dir: PathBuf,

    /// How often the certificate files are checked for changes (Go duration, e.g. 1s).
    #[arg(long, env = "SPARK_WEBHOOK_CERT_RELOAD_INTERVAL", default_value = "1s", value_parser = duration)]
    pub cert_reload_interval: Duration,

    /// Self-managed certificate: keep the serving certificate (and its CA, with ca.key) in this
    /// Secret, create and renew it, set the caBundle from it, and serve its current content on
    /// every replica (watched through the API); --cert-dir is then not used. Unset: serve the
    /// files in --cert-dir (a mounted Secret, cert-manager, `spark-webhook certs`).
    #[arg(long, env = "SPARK_WEBHOOK_CERT_SECRET")]
    pub cert_secret: Option<String>,

    /// Namespace of --cert-secret (default: POD_NAMESPACE, else --service-namespace).
    #[arg(long, env = "SPARK_WEBHOOK_CERT_SECRET_NAMESPACE")]
    pub cert_secret_namespace: Option<String>,

    /// How often the self-managed certificate is checked, besides at start and whenever its
    /// Secret changes (Go duration).
    #[arg(long, env = "SPARK_WEBHOOK_CERT_CHECK_INTERVAL", default_value = "1h", value_parser = duration)]
    pub cert_check_interval: Duration,

    /// Renew the self-managed certificate when it expires within this (Go duration; 720h = 30
    /// days).
    #[arg(long, env = "SPARK_WEBHOOK_CERT_RENEW_BEFORE", default_value = "720h", value_parser = duration)]
    pub cert_renew_before: Duration,

    /// Validity of a self-managed serving certificate, in days.
    #[arg(long, env = "SPARK_WEBHOOK_CERT_VALIDITY_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub cert_validity_days: u32,

    /// Validity of a self-managed CA, in days.
    #[arg(long, env = "SPARK_WEBHOOK_CA_VALIDITY_DAYS", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub ca_validity_days: u32,

    /// Replace the self-managed CA, in stages, when it expires within this (Go duration; 1440h =
    /// 60 days; must be longer than --cert-renew-before, since a certificate never outlives its
    /// CA).
    #[arg(long, env = "SPARK_WEBHOOK_CA_RENEW_BEFORE", default_value = "1440h", value_parser = duration)]
    pub ca_renew_before: Duration,

    /// Each stage of a self-managed CA replacement lasts at least this: a new CA is in the
    /// caBundle this long before it signs the served certificate, and the old one stays this
    /// long after (Go duration).
    #[arg(long, env = "SPARK_WEBHOOK_CA_OVERLAP", default_value = "5m", value_parser = duration)]
    pub ca_overlap: Duration,

    /// Spark job namespaces (comma-separated). Empty (and no --namespace-selector): every
    /// namespace.
    #[arg(long, env = "SPARK_WEBHOOK_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Also serve the namespaces whose labels match this selector (kubectl's `-l` syntax, e.g.
    /// `spark-operator=enabled,env in (prod,staging)`), as they are labelled and unlabelled,
    /// without a restart. Watches SparkApplications in every namespace and needs list/watch on
    /// namespaces.
    #[arg(long, env = "SPARK_WEBHOOK_JOB_NAMESPACE_SELECTOR")]
    pub namespace_selector: Option<String>,

    /// Seccomp profile given to Spark pods that set none themselves.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_DEFAULT_SECCOMP_PROFILE",
        value_enum,
        default_value = "runtime-default"
    )]
    pub default_seccomp_profile: SeccompDefault,

    /// Give executors without a lifecycle a preStop hook that runs Spark's decommission script
    /// (/opt/decom.sh), so they hand off shuffle and cached blocks before they stop.
    #[arg(long, env = "SPARK_WEBHOOK_EXECUTOR_PRESTOP_DECOMMISSION", default_value_t = true, action = ArgAction::Set)]
    pub executor_prestop_decommission: bool,

    /// Enable batch schedulers (kubeflow's flag): apps naming `volcano`, `yunikorn` or a
    /// --kube-scheduler-names scheduler get its PodGroup or task groups; off, apps naming Volcano
    /// or YuniKorn are refused.
    #[arg(long, env = "SPARK_WEBHOOK_ENABLE_BATCH_SCHEDULER", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_batch_scheduler: bool,

    /// Batch scheduler of apps that name none in spec.batchScheduler (with
    /// --enable-batch-scheduler).
    #[arg(long, env = "SPARK_WEBHOOK_DEFAULT_BATCH_SCHEDULER")]
    pub default_batch_scheduler: Option<String>,

    /// Names of kube-schedulers running scheduler-plugins' coscheduling (comma-separated): apps
    /// naming one get a scheduling.x-k8s.io PodGroup (with --enable-batch-scheduler).
    #[arg(
        long,
        env = "SPARK_WEBHOOK_KUBE_SCHEDULER_NAMES",
        value_delimiter = ','
    )]
    pub kube_scheduler_names: Vec<String>,

    /// Refuse SparkApplications whose driver and initial executors do not fit what is left of
    /// their namespace's ResourceQuotas (needs list on resourcequotas).
    #[arg(long, env = "SPARK_WEBHOOK_ENABLE_RESOURCE_QUOTA_ENFORCEMENT", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_resource_quota_enforcement: bool,

    /// Create or update the webhook configurations at start (default: on in a cluster, off outside).
    #[arg(long, env = "SPARK_WEBHOOK_REGISTER_WEBHOOK", action = ArgAction::Set)]
    pub register_webhook: Option<bool>,

    #[command(flatten)]
    pub registration: RegistrationArgs,

    /// Serve the admission webhook. Off: the reconciler alone.
    #[arg(long, env = "SPARK_WEBHOOK_WEBHOOK", default_value_t = true, action = ArgAction::Set)]
    pub webhook: bool,

    /// Run the SparkApplication reconciler. Off: the webhook alone.
    #[arg(long, env = "SPARK_WEBHOOK_CONTROLLER", default_value_t = true, action = ArgAction::Set)]
    pub controller: bool,

    #[command(flatten)]
    pub reconciler: ReconcilerArgs,

    /// How long in-flight reviews may take to finish at shutdown, after the drain period (Go
    /// duration).
    #[arg(long, env = "SPARK_WEBHOOK_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// After SIGTERM, how long /readyz fails while the webhook still accepts and answers
    /// reviews, so the Service's endpoints drop this replica before its listener closes (Go
    /// duration; 0s closes at once). terminationGracePeriodSeconds must cover it plus
    /// --shutdown-timeout plus 10 s.
    #[arg(long, env = "SPARK_WEBHOOK_DRAIN_PERIOD", default_value = "10s", value_parser = duration)]
    pub drain_period: Duration,

    /// How long the Kubernetes API may stay unreachable before /readyz fails: the caches are
    /// warm, so a blip of the control plane must not take every replica out of the Service at
    /// once (Go duration).
    #[arg(long, env = "SPARK_WEBHOOK_API_OUTAGE_GRACE", default_value = "30s", value_parser = duration)]
    pub api_outage_grace: Duration,

    /// A review body must arrive within this, else 408 and the connection is closed (Go
    /// duration).
    #[arg(long, env = "SPARK_WEBHOOK_BODY_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub webhook_body_timeout: Duration,

    /// Reviews answered at once; one more is refused at once with 503 and Retry-After rather
    /// than queued (a slow body does not count until it has arrived).
    #[arg(long, env = "SPARK_WEBHOOK_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub webhook_max_in_flight: u32,

    /// Live reads of the Kubernetes API a second for reviews whose app is not cached yet (a
    /// second's worth may go at once). Real misses are rare; the budget keeps forged reviews
    /// naming apps that do not exist from becoming a flood of apiserver reads. A miss that
    /// cannot get a read within 1 s is answered 503.
    #[arg(long, env = "SPARK_WEBHOOK_LIVE_READS_PER_SECOND", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub webhook_live_reads_per_second: u32,
}

/// How the webhook configurations are written (shared by `serve` and `webhooks`).
#[derive(Debug, Args)]
pub struct RegistrationArgs {
    /// Name of the Mutating/ValidatingWebhookConfiguration objects.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_CONFIG_NAME",
        default_value = "spark-webhook"
    )]
    pub webhook_config_name: String,

    /// Register a URL clientConfig with this base (e.g. https://127.0.0.1:9443) instead of the
    /// Service: for running outside the cluster.
    #[arg(long, env = "SPARK_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// The webhook's Service, for the service clientConfig.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_SERVICE_NAME",
        default_value = "spark-webhook"
    )]
    pub service_name: String,

    /// Namespace of the webhook's Service.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_SERVICE_NAMESPACE",
        default_value = "spark-operator"
    )]
    pub service_namespace: String,

    /// Port of the webhook's Service.
    #[arg(long, env = "SPARK_WEBHOOK_SERVICE_PORT", default_value_t = 443)]
    pub service_port: i32,

    /// failurePolicy of the pod webhook. Fail (default): with the webhook down, Spark pods we
    /// launched are refused rather than created without their volumes, env or security
    /// settings; the objectSelector keeps every other pod of the cluster out of its reach.
    /// Ignore: such pods are created unmutated.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_FAILURE_POLICY",
        value_enum,
        default_value = "fail"
    )]
    pub webhook_failure_policy: FailurePolicy,

    /// failurePolicy of the SparkApplication validator.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_VALIDATION_FAILURE_POLICY",
        value_enum,
        default_value = "ignore"
    )]
    pub validation_failure_policy: FailurePolicy,

    /// timeoutSeconds of both webhooks (1-30). Small: a slow webhook slows every Spark pod.
    #[arg(long, env = "SPARK_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
    pub webhook_timeout_seconds: i32,

    /// Only call the webhooks for namespaces with these labels (key=value, comma-separated),
    /// e.g. `spark-webhook/job-namespace=true`. The webhook checks --namespaces itself either way.
    #[arg(long, env = "SPARK_WEBHOOK_NAMESPACE_SELECTOR", value_delimiter = ',', value_parser = label)]
    pub webhook_namespace_selector: Vec<(String, String)>,
}

/// Options of the reconciler.
#[derive(Debug, Args)]
pub struct ReconcilerArgs {
    /// Image for apps that name none (spec.image, driver/executor image, sparkConf).
    #[arg(long, env = "SPARK_WEBHOOK_DEFAULT_SPARK_IMAGE")]
    pub default_spark_image: Option<String>,

    /// spark.master the drivers use to reach the API server.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_SPARK_MASTER",
        default_value = crate::submission::DEFAULT_MASTER_URL
    )]
    pub spark_master: String,

    /// How apps are submitted: natively (no JVM per app), or by running Spark's spark-submit.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_SUBMITTER",
        value_enum,
        default_value = "native"
    )]
    pub submitter: SubmitterKind,

    /// Spark distribution for --submitter=spark-submit (has bin/spark-submit).
    #[arg(long, env = "SPARK_HOME")]
    pub spark_home: Option<PathBuf>,

    /// Longest a spark-submit run may take before it is killed and the submission fails.
    #[arg(long, env = "SPARK_WEBHOOK_SPARK_SUBMIT_TIMEOUT", default_value = "2m", value_parser = duration)]
    pub spark_submit_timeout: Duration,

    /// Token file spark-submit authenticates with (default: the pod's service account).
    #[arg(long, env = "SPARK_WEBHOOK_SPARK_SUBMIT_TOKEN_FILE")]
    pub spark_submit_token_file: Option<PathBuf>,

    /// CA bundle spark-submit trusts for the API server (default: the service account's).
    #[arg(long, env = "SPARK_WEBHOOK_SPARK_SUBMIT_CA_FILE")]
    pub spark_submit_ca_file: Option<PathBuf>,

    /// Create the Spark UI Service `<app>-ui-svc` of every app (kubeflow's default: true).
    #[arg(long, env = "SPARK_WEBHOOK_ENABLE_UI_SERVICE", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_ui_service: bool,

    /// Host and path of a Spark UI Ingress per app, e.g. `{{$appName}}.spark.example.com` or
    /// `spark.example.com/{{$appNamespace}}/{{$appName}}` (no Ingress when unset).
    #[arg(long, env = "SPARK_WEBHOOK_INGRESS_URL_FORMAT")]
    pub ingress_url_format: Option<String>,

    /// spec.ingressClassName of the Ingresses created.
    #[arg(long, env = "SPARK_WEBHOOK_INGRESS_CLASS_NAME")]
    pub ingress_class_name: Option<String>,

    /// Default TLS of the UI Ingresses, as JSON: `[{"hosts":["*.example.com"],"secretName":"s"}]`
    /// (an app's sparkUIOptions.ingressTLS wins).
    #[arg(long, env = "SPARK_WEBHOOK_INGRESS_TLS")]
    pub ingress_tls: Option<String>,

    /// Default annotations of the UI Ingresses, as a JSON object (an app's
    /// sparkUIOptions.ingressAnnotations win).
    #[arg(long, env = "SPARK_WEBHOOK_INGRESS_ANNOTATIONS")]
    pub ingress_annotations: Option<String>,

    /// Create a PodDisruptionBudget for the driver of apps with
    /// spec.driverPodDisruptionBudget: true (policy/v1, Kubernetes 1.21+).
    #[arg(long, env = "SPARK_WEBHOOK_ENABLE_DRIVER_PDB", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_driver_pdb: bool,

    /// A driver still Pending this long after submission fails the attempt (0s: never).
    #[arg(long, env = "SPARK_WEBHOOK_DRIVER_START_TIMEOUT", default_value = "15m", value_parser = duration)]
    pub driver_start_timeout: Duration,

    /// Executors tracked per app in status.executorState (bounds the object's size).
    #[arg(
        long,
        env = "SPARK_WEBHOOK_MAX_TRACKED_EXECUTOR_PER_APP",
        default_value_t = 1000
    )]
    pub max_tracked_executor_per_app: usize,

    /// How often drivers whose SparkApplication was deleted are deleted (for clusters without
    /// garbage collection; ownerReferences cover the rest).
    #[arg(long, env = "SPARK_WEBHOOK_ORPHAN_SWEEP_INTERVAL", default_value = "30s", value_parser = duration)]
    pub orphan_sweep_interval: Duration,

    /// Reconcile only while holding a Lease (default: on in a cluster, off outside).
    #[arg(long, env = "SPARK_WEBHOOK_LEADER_ELECTION", action = ArgAction::Set)]
    pub leader_election: Option<bool>,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_LEADER_ELECTION_LOCK_NAME",
        default_value = "spark-webhook-lock"
    )]
    pub leader_election_lock_name: String,

    /// Namespace of the leader Lease (default: POD_NAMESPACE, else default).
    #[arg(long, env = "SPARK_WEBHOOK_LEADER_ELECTION_LOCK_NAMESPACE")]
    pub leader_election_lock_namespace: Option<String>,

    /// How long a leader's Lease lasts without renewal.
    #[arg(long, env = "SPARK_WEBHOOK_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub leader_election_lease_duration: Duration,

    /// Renew this long before the Lease would expire.
    #[arg(long, env = "SPARK_WEBHOOK_LEADER_ELECTION_RENEW_GRACE", default_value = "5s", value_parser = duration)]
    pub leader_election_renew_grace: Duration,

    /// Prefix for the SparkApplication metric names.
    #[arg(long, env = "SPARK_WEBHOOK_METRICS_PREFIX", default_value = "")]
    pub metrics_prefix: String,

    /// SparkApplication label keys copied onto the metrics as labels (comma-separated).
    #[arg(long, env = "SPARK_WEBHOOK_METRICS_LABELS", value_delimiter = ',')]
    pub metrics_labels: Vec<String>,

    /// Buckets (seconds) of the start-latency histogram.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_METRICS_JOB_START_LATENCY_BUCKETS",
        value_delimiter = ',',
        default_value = crate::metrics::DEFAULT_START_LATENCY_BUCKETS_FLAG
    )]
    pub metrics_job_start_latency_buckets: Vec<f64>,

    /// Names of the SparkApplication metrics: `native` (Prometheus' naming rules) or `kubeflow`
    /// (kubeflow's exact names and types, for existing dashboards; classic text format only).
    #[arg(
        long,
        env = "SPARK_WEBHOOK_METRICS_NAMES",
        value_enum,
        default_value = "native"
    )]
    pub metrics_names: MetricNamesArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricNamesArg {
    Native,
    Kubeflow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SubmitterKind {
    Native,
    SparkSubmit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SeccompDefault {
    /// seccompProfile RuntimeDefault on Spark pods that set no profile.
    RuntimeDefault,
    /// Leave seccomp alone.
    None,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s).ok_or_else(|| format!("{s:?} is not a duration (examples: 500ms, 1s, 2m)"))
}

fn label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not a key=value label")),
    }
}
