//! What every reconcile of one controller shares: the client, the caches, the lanes, the
//! options, and the read-your-writes memory of our own status writes. The status a reconcile
//! just wrote reaches the cache only through the watch, later; until then a reconcile must act
//! on what we wrote, not on the cache's older copy, or it would submit the app again. And each
//! app's run of failed API calls, which spaces its retries out ([`ApiBackoff`]).

use std::sync::Arc;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::state::Settings;
use crate::cache::{CompactApp, GuardedApp, SparkPod};
use crate::crd::SparkApplication;
use crate::events::Recorder;
use crate::health::ApiBackoff;
use crate::metrics::AppMetrics;
use crate::namespaces::JobNamespaces;
use crate::submission::{SubmitOptions, Submitter};

/// Shared by every reconcile of one controller.
pub struct Context {
    pub client: Client,
    pub apps: Store<GuardedApp>,
    pub pods: Store<SparkPod>,
    /// The served namespaces: with `--namespace-selector` the scope's watch holds apps of
    /// namespaces that are not (or no longer) served, which are left alone.
    pub namespaces: JobNamespaces,
    /// The submission lane.
    pub submit_slots: tokio::sync::Semaphore,
    /// The status lane.
    pub status_slots: tokio::sync::Semaphore,
    pub settings: Settings,
    pub submit: SubmitOptions,
    pub submitter: Submitter,
    pub recorder: Recorder,
    pub metrics: Arc<AppMetrics>,
    /// Cancels in-flight spark-submit children at shutdown.
    pub shutdown: CancellationToken,
    /// The objects our last status writes returned, until the cache shows them: a reconcile
    /// triggered (by a pod event) before the app's watch caught up must not act on the stale
    /// status, or it would resubmit and conflict over and over under load.
    pub written: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<CompactApp>>>,
    /// Consecutive API failures per app, for its retry delay.
    pub api_backoff: ApiBackoff,
}

impl Context {
    pub(super) fn remember(&self, mut app: SparkApplication) {
        app.metadata.managed_fields = None;
        let key = (app.namespace().unwrap_or_default(), app.name_any());
        let Ok(app) = CompactApp::try_from(app) else {
            return;
        };
        if let Ok(mut w) = self.written.lock() {
            w.insert(key, Arc::new(app));
        }
    }

    /// Whether the cache holds a newer version of `app` than the one being reconciled (or
    /// none: deleted).
    pub(super) fn changed_since(&self, app: &CompactApp) -> bool {
        let key = ObjectRef::new(&app.name_any()).within(&app.namespace().unwrap_or_default());
        let Some(cached) = self.apps.get(&key) else {
            return true;
        };
        let Ok(cached) = &cached.0 else { return true };
        cached.metadata.uid != app.metadata.uid
            || matches!((revision(&cached.metadata), revision(&app.metadata)), (Some(c), Some(a)) if c > a)
    }

    /// Our own newer write of `app`, if the cache has not caught up with it yet.
    pub(super) fn newer_than_cache(&self, app: &CompactApp) -> Option<Arc<CompactApp>> {
        let key = (app.namespace().unwrap_or_default(), app.name_any());
        let mut w = self.written.lock().ok()?;
        let written = w.get(&key)?.clone();
        // resourceVersions are etcd revisions here; if either is not a number, trust the cache.
        match (revision(&written.metadata), revision(&app.metadata)) {
            (Some(ours), Some(cached))
                if ours > cached && written.metadata.uid == app.metadata.uid =>
            {
                Some(written)
            }
            _ => {
                w.remove(&key);
                None
            }
        }
    }
}

/// An object's resourceVersion as a number (an etcd revision), if it is one.
fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

/// What `run` needs besides the watches.
pub struct ContextParts {
    pub client: Client,
    pub namespaces: JobNamespaces,
    pub settings: Settings,
    pub submit: SubmitOptions,
    pub submitter: Submitter,
    pub recorder: Recorder,
    pub metrics: Arc<AppMetrics>,
}

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("status of {0} changed meanwhile; retrying")]
    Conflict(String),
    /// Submission waits for an admission webhook that could not be called (status written).
    #[error("{0}")]
    AdmissionUnavailable(String),
}
