//! `spark-webhook serve`: composes the webhook, its caches, the reconciler, the admin endpoints
//! and registration from their configs (see `config`), and hands their end to `shutdown`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::cache::AppCache;
use crate::cache::namespaces::{InvalidSelector, check_selector, watch_selected};
use crate::certs::manager::CertManager;
use crate::certs::secret::CertManagerError;
use crate::certs::tls::{self, ReloadingCertResolver};
use crate::config::{self, CertSource, ServeConfig};
use crate::events::{Recorder, Reporter};
use crate::health::ApiHealth;
use crate::metrics::{AppMetrics, Metrics};

use crate::connect::controller::{self as connect, ConnectConfig};
use crate::reconciler::runner::{self, LeaderTask, ReconcilerConfig};
use crate::registration::Registration;
use crate::schedules::controller::{self as schedules, ScheduleConfig};
use crate::server;
use crate::shutdown;
use crate::webhook::{self, ReviewLimits, WebhookState};

/// How often ca.crt is checked for a CA rotation that must reach the caBundle.
const CA_CHECK_INTERVAL: Duration = Duration::from_secs(10);

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
    Register(#[from] crate::registration::RegistrationError),
    #[error("server failed: {0}")]
    Server(#[source] std::io::Error),
    #[error("shutdown did not finish in time; still running: {0}")]
    ShutdownStuck(String),
    #[error(transparent)]
    Reconciler(#[from] runner::RunError),
    #[error(transparent)]
    NamespaceSelector(#[from] InvalidSelector),
    #[error("self-managed certificate: {0}")]
    CertManager(#[from] Box<CertManagerError>),
}

/// Runs until SIGTERM/SIGINT, then drains in-flight reviews and returns.
pub async fn run(cfg: ServeConfig) -> Result<(), ServeError> {
    let shutdown = CancellationToken::new();
    // SIGTERM cancels `draining` first, `shutdown` a drain period later (see `shutdown`); with
    // no webhook there is nothing to drain.
    let draining = shutdown.child_token();
    let drain_period = match cfg.webhook {
        Some(_) => cfg.drain_period,
        None => Duration::ZERO,
    };
    shutdown::spawn_signal_handler(draining.clone(), shutdown.clone(), drain_period);
    let metrics = Metrics::new();
    let client = Client::try_default()
        .await
        .map_err(ServeError::KubeConfig)?;
    let namespaces = cfg.namespaces.clone();
    check_selector(&client, &namespaces).await?;
    watch_selected(&client, &namespaces, shutdown.clone());
    // One recorder (one bounded series cache) for the webhook and every controller.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "spark-webhook".into(),
            instance: Some(config::identity()),
        },
    );
    let mutation = cfg.mutation;
    let admin_listener = bind(cfg.admin_addr).await?;

    // With the webhook, one SparkApplication watch per job namespace (or one for all) for the
    // whole process: the webhook looks apps up in it, the reconciler's controllers subscribe to
    // it while we lead. Without, the reconciler watches only while it leads (runner.rs).
    let apps = cfg
        .webhook
        .as_ref()
        .map(|_| AppCache::start(&client, &namespaces, shutdown.clone()));
    let mut webhook_part = None;
    if let (Some(webhook_cfg), Some(apps)) = (&cfg.webhook, apps.clone()) {
        let registration = webhook_cfg.registration.clone();
        let dir = match &webhook_cfg.certs {
            CertSource::Dir { dir, .. } => dir.display().to_string(),
            CertSource::Secret(s) => format!("Secret {}/{}", s.namespace, s.name),
        };
        let cert_err = |source| ServeError::Certificate {
            dir: dir.clone(),
            source: Box::new(source),
        };
        let resolver = match &webhook_cfg.certs {
            // Self-managed: no certificate until the Secret is read (readiness says so); the
            // manager registers the caBundle from the Secret.
            CertSource::Secret(cert_cfg) => {
                let cfg = cert_cfg.clone();
                let resolver = Arc::new(ReloadingCertResolver::in_memory(&format!(
                    "Secret {}/{}",
                    cfg.namespace, cfg.name
                )));
                tracing::info!(secret = %format!("{}/{}", cfg.namespace, cfg.name), required_names = ?cfg.required_names(), "self-managed certificate");
                if registration.is_none() {
                    tracing::warn!(
                        "--register-webhook is off: the caBundle of the webhook configurations must be set from the Secret's ca.crt by other means"
                    );
                }
                CertManager::new(client.clone(), cfg, resolver.clone(), registration.clone())
                    .map_err(Box::new)?
                    .spawn(shutdown.clone());
                resolver
            }
            CertSource::Dir {
                dir,
                reload_interval,
            } => {
                let resolver =
                    ReloadingCertResolver::load(dir.join("tls.crt"), dir.join("tls.key"))
                        .map(Arc::new)
                        .map_err(cert_err)?;
                resolver
                    .clone()
                    .spawn_reloader(*reload_interval, shutdown.clone());
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
            limits: ReviewLimits::new(
                webhook_cfg.body_timeout,
                webhook_cfg.max_in_flight,
                webhook_cfg.live_reads_per_second,
            ),
            batch: cfg.batch.clone(),
            enforce_quota: webhook_cfg.enforce_quota,
        };
        let listener = bind(webhook_cfg.addr).await?;
        if let (Some(registration), CertSource::Dir { dir, .. }) =
            (registration, &webhook_cfg.certs)
        {
            keep_registered(registration, dir, client.clone(), shutdown.clone()).await?;
        }
        webhook_part = Some((listener, tls_config, state, resolver, apps));
    }

    let app_metrics = cfg.reconciler.as_ref().map(|r| {
        AppMetrics::with_names(
            &r.metrics.prefix,
            r.metrics.labels.clone(),
            &r.metrics.start_latency_buckets,
            r.metrics.names,
        )
    });
    let reconciler = match (&cfg.reconciler, app_metrics.clone()) {
        (Some(setup), Some(app_metrics)) => {
            let cfg = ReconcilerConfig {
                apps,
                namespaces: namespaces.clone(),
                settings: setup.settings.clone(),
                submit: setup.submit.clone(),
                submitter: setup.submitter.clone(),
                metrics: app_metrics,
                process_metrics: metrics.clone(),
                leader_election: setup.leader_election.clone(),
                recorder: recorder.clone(),
                leader_tasks: vec![
                    schedules_task(ScheduleConfig {
                        namespaces: namespaces.clone(),
                        recorder: recorder.clone(),
                        metrics: metrics.clone(),
                    }),
                    connect_task(ConnectConfig {
                        namespaces: namespaces.clone(),
                        submit: setup.submit.clone(),
                    }),
                ],
            };
            let client = client.clone();
            // The reconciler needs no endpoint: it lets go of its Lease as soon as draining
            // starts, so the next leader takes over while this replica still answers reviews.
            let token = draining.clone();
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
        _ => None,
    };

    let admin = admin::admin_router(AdminState {
        api: ApiHealth::start(client.clone(), cfg.api_outage_grace, shutdown.clone()),
        draining: draining.clone(),
        apps: webhook_part.as_ref().map(|w| w.4.clone()),
        resolver: webhook_part.as_ref().map(|w| w.3.clone()),
        metrics,
        app_metrics,
    });
    tracing::info!(webhook = cfg.webhook.is_some(), controller = cfg.reconciler.is_some(), admin = %cfg.admin_addr, "spark-webhook serving");
    let webhook = async {
        match webhook_part {
            Some((listener, tls_config, state, _, _)) => {
                server::serve_tls(
                    listener,
                    tls_config,
                    webhook::router(state),
                    shutdown.clone(),
                    cfg.shutdown_timeout,
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
        cfg.shutdown_timeout,
    );
    let (w, a, r) = shutdown::run_parts(
        &shutdown,
        cfg.shutdown_timeout,
        ("webhook server", webhook),
        ("admin server", admin),
        ("reconciler", reconcile),
    )
    .await
    .map_err(ServeError::ShutdownStuck)?;
    w.and(a).map_err(ServeError::Server)?;
    r?;
    tracing::info!("spark-webhook stopped");
    Ok(())
}

/// The ScheduledSparkApplication controllers, leader-only like the reconciler's.
fn schedules_task(cfg: ScheduleConfig) -> LeaderTask {
    std::sync::Arc::new(move |client, term| Box::pin(schedules::run(client, cfg.clone(), term)))
}

/// The SparkConnect controllers, leader-only like the reconciler's.
fn connect_task(cfg: ConnectConfig) -> LeaderTask {
    std::sync::Arc::new(move |client, term| Box::pin(connect::run(client, cfg.clone(), term)))
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
    reg: Registration,
    cert_dir: &std::path::Path,
    client: Client,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let mut applied = read_ca_bundle(cert_dir)?;
    Registration {
        ca_bundle: applied.clone(),
        ..reg.clone()
    }
    .apply(&client)
    .await?;
    let cert_dir = cert_dir.to_path_buf();
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
