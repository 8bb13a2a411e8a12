//! Starts the controllers (one per job namespace, or one for all) — directly, or only while
//! this replica holds the leader Lease. A term's controllers subscribe to the process's
//! SparkApplication watches and drop their subscriptions when the term ends; the watches (and
//! the webhook reading them) carry on. Without the webhook there is no process-wide watch:
//! each term starts its own and stops it with the term, so a standby replica caches no apps.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::Api;
use kube_lease_manager::LeaseManagerBuilder;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::context::ContextParts;
use super::controller;
use super::state::Settings;
use crate::cache::{AppCache, SparkPod};
use crate::events::Recorder;
use crate::metrics::AppMetrics;
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
    pub leader_election: Option<LeaderElection>,
    /// Shared with the webhook: one bounded series cache per process.
    pub recorder: Recorder,
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
        run_controllers(&client, &cfg, shutdown).await;
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
        let controllers = run_controllers(&client, &cfg, term.clone());
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

async fn run_controllers(client: &Client, cfg: &ReconcilerConfig, shutdown: CancellationToken) {
    let apps = match &cfg.apps {
        Some(shared) => shared.clone(),
        None => AppCache::start(client, &cfg.namespaces, shutdown.clone()),
    };
    let mut set = JoinSet::new();
    for apps in apps.scopes() {
        let pods: Api<SparkPod> = match apps.namespace() {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let parts = ContextParts {
            client: client.clone(),
            settings: cfg.settings.clone(),
            submit: cfg.submit.clone(),
            submitter: cfg.submitter.clone(),
            recorder: cfg.recorder.clone(),
            metrics: cfg.metrics.clone(),
        };
        set.spawn(controller::run(apps.clone(), pods, parts, shutdown.clone()));
    }
    while set.join_next().await.is_some() {}
}
