//! Starts the controllers (one per job namespace, or one for all) — directly, or only while
//! this replica holds the leader Lease. A term's controllers subscribe to the process's
//! SparkApplication watches and drop their subscriptions when the term ends; the watches (and
//! the webhook reading them) carry on. Without the webhook there is no process-wide watch:
//! each term starts its own and stops it with the term, so a standby replica caches no apps.
//! A controller that panics is logged, counted and restarted after a capped backoff, while the
//! others run on. Other leader-only work (the ScheduledSparkApplication controllers) is handed
//! in as [`LeaderTask`]s and runs for exactly the same terms.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::Api;
use kube_lease_manager::LeaseManagerBuilder;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::context::ContextParts;
use super::controller;
use super::state::Settings;
use crate::cache::{AppCache, AppScope, SparkPod};
use crate::events::Recorder;
use crate::metrics::{AppMetrics, Metrics, RestartLabels, RestartReason};
use crate::namespaces::JobNamespaces;
use crate::submission::{SubmitOptions, Submitter};

/// Leader election settings; None runs the controllers unconditionally.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub grace: Duration,
}

/// Leader-only work besides the SparkApplication controllers: started with each term, given the
/// term's token, which is cancelled when the term ends.
pub type LeaderTask =
    Arc<dyn Fn(Client, CancellationToken) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Everything the controllers need.
#[derive(Clone)]
pub struct ReconcilerConfig {
    /// The process's SparkApplication watches (one per job namespace, or one for all), shared
    /// with the webhook, which the controllers subscribe to while we lead; they run on when we
    /// do not. None (no webhook): each term watches `namespaces` for itself.
    pub apps: Option<AppCache>,
    pub namespaces: JobNamespaces,
    pub settings: Settings,
    pub submit: SubmitOptions,
    pub submitter: Submitter,
    pub metrics: Arc<AppMetrics>,
    /// The process's metrics: counts controller restarts.
    pub process_metrics: Arc<Metrics>,
    pub leader_election: Option<LeaderElection>,
    /// Shared with the webhook: one bounded series cache per process.
    pub recorder: Recorder,
    /// Run while we lead, beside the controllers.
    pub leader_tasks: Vec<LeaderTask>,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("leader election stopped unexpectedly")]
    LeaseLost,
}

/// Runs until `shutdown`. With leader election, controllers run only while we lead, and stop
/// (finishing in-flight reconciles) the moment the lease is lost.
pub async fn run(
    client: Client,
    cfg: ReconcilerConfig,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let Some(le) = cfg.leader_election.clone() else {
        run_term(&client, &cfg, shutdown).await;
        return Ok(());
    };
    let lease_err = |source| RunError::Lease {
        namespace: le.namespace.clone(),
        name: le.lease_name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client.clone(), &le.lease_name)
        .with_namespace(&le.namespace)
        .with_identity(&le.identity)
        .with_duration(le.duration.as_secs().max(1))
        .with_grace(le.grace.as_secs().max(1))
        .build()
        .await
        .map_err(lease_err)?;
    let (mut leading, lease_task) = manager.watch().await;
    tracing::info!(lease = %le.lease_name, identity = %le.identity, "waiting for leadership");
    loop {
        // Wait until we lead (or shut down).
        while !*leading.borrow_and_update() {
            tokio::select! {
                _ = shutdown.cancelled() => return release(leading, lease_task).await,
                changed = leading.changed() => if changed.is_err() { return Err(RunError::LeaseLost) },
            }
        }
        tracing::info!(identity = %le.identity, "became leader: starting the reconciler");
        let term = shutdown.child_token();
        let controllers = run_term(&client, &cfg, term.clone());
        tokio::pin!(controllers);
        let lost = loop {
            tokio::select! {
                _ = &mut controllers => break false,
                changed = leading.changed() => {
                    if changed.is_err() || !*leading.borrow_and_update() { break true; }
                }
            }
        };
        term.cancel();
        if lost {
            tracing::warn!("lost leadership: stopping the reconciler");
            controllers.await;
        }
        if shutdown.is_cancelled() {
            return release(leading, lease_task).await;
        }
    }
}

/// Drops the watch channel, which makes the lease manager release the Lease and exit.
async fn release(
    leading: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) -> Result<(), RunError> {
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => tracing::info!("leader lease released"),
        other => tracing::warn!(?other, "could not release the leader lease cleanly"),
    }
    Ok(())
}

/// The first restart of a panicked controller waits this long, each further one twice as long
/// as the one before, up to [`RESTART_CAP`].
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_CAP: Duration = Duration::from_secs(60);
/// A controller that ran this long before it panicked starts over at [`RESTART_FIRST`].
const RESTART_RESET_AFTER: Duration = Duration::from_secs(10 * 60);

/// The wait before restarting a controller that panicked `panics` times in a row (1, 2, ...).
fn restart_delay(panics: u32) -> Duration {
    RESTART_FIRST
        .saturating_mul(1 << panics.saturating_sub(1).min(31))
        .min(RESTART_CAP)
}

/// One controller of the term: its scope, and its run of panics.
struct Running {
    scope: AppScope,
    panics: u32,
    started: Instant,
}

/// One term: the controllers and the leader tasks, until `term` is cancelled.
async fn run_term(client: &Client, cfg: &ReconcilerConfig, term: CancellationToken) {
    let tasks = cfg
        .leader_tasks
        .iter()
        .map(|task| tokio::spawn(task(client.clone(), term.clone())));
    let tasks = futures::future::join_all(tasks);
    futures::future::join(run_controllers(client, cfg, term), tasks).await;
}

async fn run_controllers(client: &Client, cfg: &ReconcilerConfig, shutdown: CancellationToken) {
    let apps = match &cfg.apps {
        Some(shared) => shared.clone(),
        None => AppCache::start(client, &cfg.namespaces, shutdown.clone()),
    };
    let mut set = JoinSet::new();
    let mut running = HashMap::new();
    for scope in apps.scopes() {
        let task = set.spawn(controller_of(client, cfg, scope, shutdown.clone()));
        running.insert(
            task.id(),
            Running {
                scope: scope.clone(),
                panics: 0,
                started: Instant::now(),
            },
        );
    }
    // A controller ends cleanly only when the term does (shutdown, lost leadership); one that
    // panicked would otherwise leave its namespace unreconciled, silently, until the process
    // restarts.
    while let Some(ended) = set.join_next_with_id().await {
        let (id, panic) = match ended {
            Ok((id, ())) => (id, None),
            Err(e) if e.is_panic() => (e.id(), Some(panic_message(e.into_panic()))),
            Err(e) => (e.id(), None),
        };
        let Some(mut run) = running.remove(&id) else {
            continue;
        };
        let Some(message) = panic else { continue };
        let namespace = run.scope.namespace().unwrap_or_default().to_owned();
        if run.started.elapsed() >= RESTART_RESET_AFTER {
            run.panics = 0;
        }
        run.panics += 1;
        let delay = restart_delay(run.panics);
        tracing::error!(
            %namespace,
            panic = %message,
            panics_in_a_row = run.panics,
            restart_in = ?delay,
            "the SparkApplication controller panicked: restarting it"
        );
        cfg.process_metrics
            .controller_restarts
            .get_or_create(&RestartLabels {
                namespace,
                reason: RestartReason::panic,
            })
            .inc();
        let controller = controller_of(client, cfg, &run.scope, shutdown.clone());
        let token = shutdown.clone();
        let task = set.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = tokio::time::sleep(delay) => controller.await,
            }
        });
        run.started = Instant::now() + delay;
        running.insert(task.id(), run);
    }
}

/// The controller of one scope, to be spawned.
fn controller_of(
    client: &Client,
    cfg: &ReconcilerConfig,
    scope: &AppScope,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let pods: Api<SparkPod> = match scope.namespace() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let parts = ContextParts {
        client: client.clone(),
        namespaces: cfg.namespaces.clone(),
        settings: cfg.settings.clone(),
        submit: cfg.submit.clone(),
        submitter: cfg.submitter.clone(),
        recorder: cfg.recorder.clone(),
        metrics: cfg.metrics.clone(),
    };
    controller::run(scope.clone(), pods, parts, shutdown)
}

/// What a panic said (a `panic!` with a message gives a `&str` or a `String`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "(not a string)".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_wait_doubling_from_one_second_to_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(restart_delay(u32::MAX), RESTART_CAP);
    }

    #[test]
    fn a_panic_message_is_read_from_either_string_kind() {
        let s = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(s), "static");
        let n = 7;
        let s = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(s), "formatted 7");
    }
}
