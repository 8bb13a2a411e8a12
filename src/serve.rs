//! `spark-webhook serve`: wires the webhook, its caches, the admin endpoints and registration
//! together, and shuts them down in order on SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::{ArgAction, Args, ValueEnum};
use kube::Client;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cache::AppCache;
use crate::certmanager::{CertManager, CertManagerError, SecretCertConfig};
use crate::events::{Recorder, Reporter};
use crate::health::ApiHealth;
use crate::metrics::{AppMetrics, Metrics, OPENMETRICS_TEXT, PROMETHEUS_TEXT, to_prometheus_text};
use crate::mutate::MutationOptions;
use crate::namespaces::JobNamespaces;
use crate::reconciler::runner::{self, LeaderElection, ReconcilerConfig};
use crate::reconciler::state::Settings;
use crate::submission::spark_submit::{SparkSubmitter, SubmitAuth};
use crate::submission::{SubmitOptions, Submitter};
use crate::tls::{self, ReloadingCertResolver};
use crate::webhook::registration::{Endpoint, FailurePolicy, Registration};
use crate::webhook::{self, WebhookState};
use crate::{server, webhook::parse_go_duration};

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

    /// Spark job namespaces (comma-separated). Empty: every namespace.
    #[arg(long, env = "SPARK_WEBHOOK_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

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

    /// How long in-flight reviews may take to finish at shutdown (Go duration).
    #[arg(long, env = "SPARK_WEBHOOK_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,
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

impl RegistrationArgs {
    /// The registration these flags describe, with `ca_bundle` as its caBundle.
    pub fn registration(&self, ca_bundle: Vec<u8>) -> Registration {
        let endpoint = match &self.webhook_url {
            Some(url) => Endpoint::Url(url.clone()),
            None => Endpoint::Service {
                namespace: self.service_namespace.clone(),
                name: self.service_name.clone(),
                port: self.service_port,
            },
        };
        Registration {
            name: self.webhook_config_name.clone(),
            endpoint,
            ca_bundle,
            pod_failure_policy: self.webhook_failure_policy,
            app_failure_policy: self.validation_failure_policy,
            timeout_seconds: self.webhook_timeout_seconds,
            namespace_selector: self
                .webhook_namespace_selector
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>(),
        }
    }
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
        default_value = "k8s://https://kubernetes.default.svc:443"
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
        default_value = "30,60,90,120,150,180,210,240,270,300,600,900,1800,3600"
    )]
    pub metrics_job_start_latency_buckets: Vec<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SubmitterKind {
    Native,
    SparkSubmit,
}

impl ReconcilerArgs {
    fn submitter(&self) -> Result<Submitter, ServeError> {
        if self.submitter == SubmitterKind::Native {
            return Ok(Submitter::Native);
        }
        let spark_home = self.spark_home.clone().ok_or(ServeError::NoSparkHome)?;
        if !spark_home.join("bin/spark-submit").exists() {
            return Err(ServeError::NoSparkSubmit(spark_home.display().to_string()));
        }
        let sa = SubmitAuth::service_account();
        let auth = SubmitAuth {
            token_file: self
                .spark_submit_token_file
                .clone()
                .unwrap_or(sa.token_file),
            ca_cert_file: self.spark_submit_ca_file.clone().or(sa.ca_cert_file),
        };
        Ok(Submitter::SparkSubmit {
            runner: SparkSubmitter {
                spark_home,
                timeout: self.spark_submit_timeout,
                kubeconfig_auth: auth,
            },
            master: self.spark_master.clone(),
        })
    }

    fn config(
        &self,
        apps: Option<AppCache>,
        namespaces: JobNamespaces,
        mutation: MutationOptions,
        metrics: Arc<AppMetrics>,
        recorder: Recorder,
    ) -> Result<ReconcilerConfig, ServeError> {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let leader_election = self
            .leader_election
            .unwrap_or(in_cluster)
            .then(|| LeaderElection {
                lease_name: self.leader_election_lock_name.clone(),
                namespace: self
                    .leader_election_lock_namespace
                    .clone()
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| "default".into()),
                identity: identity(),
                duration: self.leader_election_lease_duration,
                grace: self.leader_election_renew_grace,
            });
        Ok(ReconcilerConfig {
            submitter: self.submitter()?,
            apps,
            namespaces,
            settings: Settings {
                driver_start_timeout: (!self.driver_start_timeout.is_zero())
                    .then_some(self.driver_start_timeout),
                max_tracked_executors: self.max_tracked_executor_per_app,
                orphan_sweep_interval: self.orphan_sweep_interval.max(Duration::from_millis(100)),
                ..Settings::default()
            },
            submit: SubmitOptions {
                default_image: self.default_spark_image.clone(),
                master_url: self.spark_master.clone(),
                mutation,
            },
            metrics,
            leader_election,
            recorder,
        })
    }
}

impl ServeArgs {
    /// The self-managed mode's settings for Secret `name`.
    fn secret_cert_config(&self, name: &str) -> SecretCertConfig {
        let reg = &self.registration;
        let (mut extra_dns, mut extra_ips) = (Vec::new(), Vec::new());
        // A url clientConfig is called by its host: the certificate must cover it too.
        if let Some(host) = reg.webhook_url.as_deref().and_then(url_host) {
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => extra_ips.push(ip),
                Err(_) => extra_dns.push(host),
            }
        }
        SecretCertConfig {
            namespace: self
                .cert_secret_namespace
                .clone()
                .or_else(|| {
                    std::env::var("POD_NAMESPACE")
                        .ok()
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| reg.service_namespace.clone()),
            name: name.to_string(),
            service_name: reg.service_name.clone(),
            service_namespace: reg.service_namespace.clone(),
            extra_dns,
            extra_ips,
            renew_before: self.cert_renew_before,
            check_interval: self.cert_check_interval,
            validity_days: self.cert_validity_days,
            ca_validity_days: self.ca_validity_days,
            ca_renew_before: self.ca_renew_before,
            ca_overlap: self.ca_overlap,
            identity: identity(),
        }
    }
}

/// The host of `https://host[:port]/path` (brackets of an IPv6 literal removed).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SeccompDefault {
    /// seccompProfile RuntimeDefault on Spark pods that set no profile.
    RuntimeDefault,
    /// Leave seccomp alone.
    None,
}

/// How often ca.crt is checked for a CA rotation that must reach the caBundle.
const CA_CHECK_INTERVAL: Duration = Duration::from_secs(10);

pub fn duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s).ok_or_else(|| format!("{s:?} is not a duration (examples: 500ms, 1s, 2m)"))
}

fn label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not a key=value label")),
    }
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(
        "no usable serving certificate in {dir}: {source} (create one with `spark-webhook certs --dir {dir}`)"
    )]
    Certificate {
        dir: String,
        source: Box<tls::TlsError>,
    },
    #[error("no Kubernetes API configuration (in-cluster or KUBECONFIG): {0}")]
    KubeConfig(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading the caBundle {path} for registration: {source}")]
    CaBundle {
        path: String,
        source: std::io::Error,
    },
    #[error("registering the webhook configurations: {0}")]
    Register(#[from] webhook::registration::RegistrationError),
    #[error("server failed: {0}")]
    Server(#[source] std::io::Error),
    #[error("shutdown did not finish in time; still running: {0}")]
    ShutdownStuck(String),
    #[error("--webhook=false and --controller=false leave nothing to run")]
    NothingToRun,
    #[error("--submitter=spark-submit needs --spark-home (or SPARK_HOME)")]
    NoSparkHome,
    #[error("no bin/spark-submit under --spark-home {0}")]
    NoSparkSubmit(String),
    #[error(transparent)]
    Reconciler(#[from] runner::RunError),
    #[error("self-managed certificate: {0}")]
    CertManager(#[from] Box<CertManagerError>),
}

/// Runs until SIGTERM/SIGINT, then drains in-flight reviews and returns.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    if !args.webhook && !args.controller {
        return Err(ServeError::NothingToRun);
    }
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let metrics = Metrics::new();
    let client = Client::try_default()
        .await
        .map_err(ServeError::KubeConfig)?;
    let namespaces = JobNamespaces::from_list(&args.namespaces);
    // One recorder (one bounded series cache) for the webhook and every controller.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "spark-webhook".into(),
            instance: Some(identity()),
        },
    );
    let mutation = MutationOptions {
        default_seccomp_profile: args.default_seccomp_profile == SeccompDefault::RuntimeDefault,
        executor_prestop_decommission: args.executor_prestop_decommission,
    };
    let admin_listener = bind(args.admin_addr).await?;

    // With the webhook, one SparkApplication watch per job namespace (or one for all) for the
    // whole process: the webhook looks apps up in it, the reconciler's controllers subscribe to
    // it while we lead. Without, the reconciler watches only while it leads (runner.rs).
    let apps = args
        .webhook
        .then(|| AppCache::start(&client, &namespaces, shutdown.clone()));
    let mut webhook_part = None;
    if let Some(apps) = apps.clone() {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let register = args.register_webhook.unwrap_or(in_cluster);
        let dir = args.cert_dir.display().to_string();
        let cert_err = |source| ServeError::Certificate {
            dir: dir.clone(),
            source: Box::new(source),
        };
        let resolver = match &args.cert_secret {
            // Self-managed: no certificate until the Secret is read (readiness says so); the
            // manager registers the caBundle from the Secret.
            Some(name) => {
                let cfg = args.secret_cert_config(name);
                let resolver = Arc::new(ReloadingCertResolver::in_memory(&format!(
                    "Secret {}/{}",
                    cfg.namespace, cfg.name
                )));
                tracing::info!(secret = %format!("{}/{}", cfg.namespace, cfg.name), required_names = ?cfg.required_names(), "self-managed certificate");
                if !register {
                    tracing::warn!(
                        "--register-webhook is off: the caBundle of the webhook configurations must be set from the Secret's ca.crt by other means"
                    );
                }
                let registration = register.then(|| args.registration.registration(Vec::new()));
                CertManager::new(client.clone(), cfg, resolver.clone(), registration)
                    .map_err(Box::new)?
                    .spawn(shutdown.clone());
                resolver
            }
            None => {
                let resolver = ReloadingCertResolver::load(
                    args.cert_dir.join("tls.crt"),
                    args.cert_dir.join("tls.key"),
                )
                .map(Arc::new)
                .map_err(cert_err)?;
                resolver
                    .clone()
                    .spawn_reloader(args.cert_reload_interval, shutdown.clone());
                resolver
            }
        };
        let tls_config = tls::server_config(resolver.clone()).map_err(cert_err)?;
        let state = WebhookState {
            apps: apps.clone(),
            namespaces: namespaces.clone(),
            options: mutation,
            metrics: metrics.clone(),
            client: Some(client.clone()),
            recorder: Some(recorder.clone()),
        };
        let listener = bind(args.webhook_addr).await?;
        if register && args.cert_secret.is_none() {
            keep_registered(&args, client.clone(), shutdown.clone()).await?;
        }
        webhook_part = Some((listener, tls_config, state, resolver, apps));
    }

    let app_metrics = args.controller.then(|| {
        AppMetrics::new(
            &args.reconciler.metrics_prefix,
            args.reconciler.metrics_labels.clone(),
            &args.reconciler.metrics_job_start_latency_buckets,
        )
    });
    let reconciler = match app_metrics.clone() {
        None => None,
        Some(m) => {
            let cfg =
                args.reconciler
                    .config(apps, namespaces.clone(), mutation, m, recorder.clone())?;
            let client = client.clone();
            let token = shutdown.clone();
            Some(async move {
                let result = runner::run(client, cfg, token.clone()).await;
                if let Err(e) = &result {
                    // The process must not live on without its reconciler: stop and let the
                    // Deployment restart us, loudly.
                    tracing::error!(error = %e, "reconciler stopped");
                    token.cancel();
                }
                result
            })
        }
    };

    let admin = admin_router(AdminState {
        api: ApiHealth::start(client.clone(), shutdown.clone()),
        apps: webhook_part.as_ref().map(|w| w.4.clone()),
        resolver: webhook_part.as_ref().map(|w| w.3.clone()),
        metrics,
        app_metrics,
    });
    tracing::info!(webhook = args.webhook, controller = args.controller, admin = %args.admin_addr, "spark-webhook serving");
    let webhook = async {
        match webhook_part {
            Some((listener, tls_config, state, _, _)) => {
                server::serve_tls(
                    listener,
                    tls_config,
                    webhook::router(state),
                    shutdown.clone(),
                    args.shutdown_timeout,
                )
                .await
            }
            None => Ok(()),
        }
    };
    let reconcile = async {
        match reconciler {
            Some(r) => r.await,
            None => Ok(()),
        }
    };
    let admin = server::serve_plain(
        admin_listener,
        admin,
        shutdown.clone(),
        args.shutdown_timeout,
    );
    let parts = Parts::default();
    let (w, a, r) = tokio::select! {
        done = async {
            tokio::join!(
                parts.track("webhook server", webhook),
                parts.track("admin server", admin),
                parts.track("reconciler", reconcile),
            )
        } => done,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(args.shutdown_timeout + SHUTDOWN_SLACK).await;
        } => {
            let pending = parts.pending();
            tracing::error!(pending = %pending, "shutdown did not finish in time");
            return Err(ServeError::ShutdownStuck(pending));
        }
    };
    w.and(a).map_err(ServeError::Server)?;
    r?;
    tracing::info!("spark-webhook stopped");
    Ok(())
}

/// Time allowed after the drain timeout for the rest of shutdown (releasing the lease, ending
/// watches) before the process gives up and exits non-zero, naming what still ran.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(10);

/// The top-level parts of `serve` still running, so a stuck shutdown says which one it is.
#[derive(Default)]
struct Parts(std::sync::Mutex<std::collections::BTreeSet<&'static str>>);

impl Parts {
    async fn track<T>(&self, name: &'static str, part: impl Future<Output = T>) -> T {
        self.set(|running| running.insert(name));
        let out = part.await;
        self.set(|running| running.remove(name));
        out
    }

    fn set(&self, change: impl FnOnce(&mut std::collections::BTreeSet<&'static str>) -> bool) {
        change(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn pending(&self) -> String {
        let running = self.0.lock().unwrap_or_else(|e| e.into_inner());
        running.iter().copied().collect::<Vec<_>>().join(", ")
    }
}

/// This replica's name for leases and Events: the pod name, else hostname and pid (two
/// processes on one host must never share an identity, kubeflow #2063).
fn identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()) {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "spark-webhook".into());
    format!("{host}-{}", std::process::id())
}

/// Reads the caBundle (ca.crt) that registration publishes.
fn read_ca_bundle(cert_dir: &std::path::Path) -> Result<Vec<u8>, ServeError> {
    let path = cert_dir.join("ca.crt");
    std::fs::read(&path).map_err(|source| ServeError::CaBundle {
        path: path.display().to_string(),
        source,
    })
}

/// Registers now, then again whenever ca.crt changes (a CA rotation), until shutdown.
/// Failures after the first are logged and retried: the webhook keeps serving meanwhile.
async fn keep_registered(
    args: &ServeArgs,
    client: Client,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let mut applied = read_ca_bundle(&args.cert_dir)?;
    args.registration
        .registration(applied.clone())
        .apply(&client)
        .await?;
    let cert_dir = args.cert_dir.clone();
    let reg = args.registration.registration(Vec::new());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CA_CHECK_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok(current) = read_ca_bundle(&cert_dir) else {
                continue;
            };
            if current == applied {
                continue;
            }
            let r = Registration {
                ca_bundle: current.clone(),
                ..reg.clone()
            };
            match r.apply(&client).await {
                Ok(()) => {
                    tracing::info!(
                        "CA changed: webhook configurations updated with the new caBundle"
                    );
                    applied = current;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CA changed but updating the webhook configurations failed; retrying")
                }
            }
        }
    });
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })
}

/// First SIGTERM/SIGINT: graceful shutdown. A second one: exit at once.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            if n == 0 {
                tracing::info!("shutting down: finishing in-flight reviews");
                shutdown.cancel();
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
}

#[derive(Clone)]
struct AdminState {
    /// Whether the apiserver answers now.
    api: Arc<ApiHealth>,
    /// The webhook's cache and certificate; None when the webhook is off.
    apps: Option<AppCache>,
    resolver: Option<Arc<ReloadingCertResolver>>,
    metrics: Arc<Metrics>,
    app_metrics: Option<Arc<AppMetrics>>,
}

fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

/// Ready while the apiserver answers, the certificate is valid and the SparkApplication cache
/// has synced. Caches outlive an apiserver outage, so they alone would say ready throughout.
async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let mut missing = Vec::new();
    if !s.api.is_reachable() {
        missing.push("Kubernetes API unreachable".to_string());
    }
    if let Some(r) = s.resolver.as_ref().filter(|r| !r.is_valid_now()) {
        missing.push(if r.is_loaded() {
            "serving certificate expired".to_string()
        } else {
            match r.last_error() {
                Some(e) => format!("no serving certificate yet ({e})"),
                None => "no serving certificate yet".to_string(),
            }
        });
    }
    if s.apps.as_ref().is_some_and(|a| !a.is_ready()) {
        missing.push("SparkApplication cache not synced".to_string());
    }
    if missing.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join(", ")),
        )
    }
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the classic text format
/// otherwise (curl, promtool).
async fn metrics_handler(
    State(s): State<AdminState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    if let Some(r) = &s.resolver {
        s.metrics.cert_not_after.set(r.not_after_unix());
        s.metrics.ca_not_after.set(r.ca_not_after_unix());
    }
    let text = s.metrics.encode(s.app_metrics.as_deref());
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS_TEXT)], text)
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            to_prometheus_text(&text),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        for (url, host) in [
            ("https://127.0.0.1:9443", Some("127.0.0.1")),
            ("https://webhook.example.com/x", Some("webhook.example.com")),
            ("https://[::1]:9443/", Some("::1")),
            ("webhook:443", Some("webhook")),
            ("https://", None),
        ] {
            assert_eq!(url_host(url).as_deref(), host, "{url}");
        }
    }
}
