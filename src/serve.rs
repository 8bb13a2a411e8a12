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
use kube::runtime::events::{Recorder, Reporter};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::appcache::AppCache;
use crate::metrics::Metrics;
use crate::mutate::MutationOptions;
use crate::namespaces::JobNamespaces;
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

    /// failurePolicy of the pod webhook. Ignore: if the webhook is down, pods are created
    /// unmutated rather than refused.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_FAILURE_POLICY",
        value_enum,
        default_value = "ignore"
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
}

/// Runs until SIGTERM/SIGINT, then drains in-flight reviews and returns.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());

    let metrics = Metrics::new();
    let dir = args.cert_dir.display().to_string();
    let resolver =
        ReloadingCertResolver::load(args.cert_dir.join("tls.crt"), args.cert_dir.join("tls.key"))
            .map(Arc::new)
            .map_err(|source| ServeError::Certificate {
                dir: dir.clone(),
                source: Box::new(source),
            })?;
    let tls_config =
        tls::server_config(resolver.clone()).map_err(|source| ServeError::Certificate {
            dir,
            source: Box::new(source),
        })?;
    resolver
        .clone()
        .spawn_reloader(args.cert_reload_interval, shutdown.clone());

    let client = Client::try_default()
        .await
        .map_err(ServeError::KubeConfig)?;
    let namespaces = JobNamespaces::from_list(&args.namespaces);
    let apps = AppCache::start(&client, &namespaces, shutdown.clone());
    let reporter = Reporter {
        controller: "spark-webhook".into(),
        instance: std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok()),
    };
    let state = WebhookState {
        apps: apps.clone(),
        namespaces,
        options: MutationOptions {
            default_seccomp_profile: args.default_seccomp_profile == SeccompDefault::RuntimeDefault,
            executor_prestop_decommission: args.executor_prestop_decommission,
        },
        metrics: metrics.clone(),
        client: Some(client.clone()),
        recorder: Some(Recorder::new(client.clone(), reporter)),
    };

    let webhook_listener = bind(args.webhook_addr).await?;
    let admin_listener = bind(args.admin_addr).await?;
    let admin = admin_router(AdminState {
        apps,
        resolver: resolver.clone(),
        metrics,
    });

    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if args.register_webhook.unwrap_or(in_cluster) {
        keep_registered(&args, client.clone(), shutdown.clone()).await?;
    }

    tracing::info!(webhook = %args.webhook_addr, admin = %args.admin_addr, "spark-webhook serving");
    let webhook = server::serve_tls(
        webhook_listener,
        tls_config,
        webhook::router(state),
        shutdown.clone(),
        args.shutdown_timeout,
    );
    let admin = server::serve_plain(admin_listener, admin, shutdown.clone());
    let (w, a) = tokio::join!(webhook, admin);
    w.and(a).map_err(ServeError::Server)?;
    tracing::info!("spark-webhook stopped");
    Ok(())
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
    apps: AppCache,
    resolver: Arc<ReloadingCertResolver>,
    metrics: Arc<Metrics>,
}

fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

/// Ready once the certificate is loaded and valid and the SparkApplication cache has synced.
async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let mut missing = Vec::new();
    if !s.resolver.is_valid_now() {
        missing.push("serving certificate expired");
    }
    if !s.apps.is_ready() {
        missing.push("SparkApplication cache not synced");
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

async fn metrics_handler(State(s): State<AdminState>) -> impl IntoResponse {
    s.metrics.cert_not_after.set(s.resolver.not_after_unix());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}
