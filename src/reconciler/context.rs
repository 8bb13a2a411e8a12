//! What every reconcile of one controller shares: the client, the caches, the lanes, the
//! options, and the read-your-writes memory of our own status writes. The status a reconcile
//! just wrote reaches the cache only through the watch, later; until then a reconcile must act
//! on what we wrote, not on the cache's older copy, or it would submit the app again. And each
//! app's run of failed API calls, which spaces its retries out ([`ApiBackoff`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::state::Settings;
use crate::cache::{CompactApp, GuardedApp, SparkPod};
use crate::crd::SparkApplication;
use crate::events::Recorder;
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

/// The first retry after an API error.
pub const API_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest retry delay, however long an app's API calls keep failing.
pub const API_RETRY_CAP: Duration = Duration::from_secs(5 * 60);
/// Each delay is spread by up to this share either way, so apps failing together (an apiserver
/// outage) do not all retry at the same instant.
pub const API_RETRY_JITTER: f64 = 0.2;

/// The delay before retrying an app whose API call failed for the `failures`-th time in a row
/// (1, 2, ...): [`API_RETRY_FIRST`] doubling to [`API_RETRY_CAP`], times `1 + jitter *
/// API_RETRY_JITTER` for a `jitter` in [-1, 1] (clamped).
pub fn api_retry_delay(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let base = API_RETRY_FIRST
        .saturating_mul(1 << doublings)
        .min(API_RETRY_CAP);
    base.mul_f64(1.0 + jitter.clamp(-1.0, 1.0) * API_RETRY_JITTER)
}

/// Each app's run of consecutive API failures (by namespace and name): grows with every
/// failure, forgotten on the app's next successful reconcile.
#[derive(Default)]
pub struct ApiBackoff {
    failures: Mutex<HashMap<(String, String), u32>>,
}

impl ApiBackoff {
    /// Counts a failure of the app's reconcile; the delay before its retry.
    pub fn failed(&self, namespace: &str, name: &str) -> Duration {
        let failures = match self.failures.lock() {
            Ok(mut f) => {
                let n = f
                    .entry((namespace.to_owned(), name.to_owned()))
                    .or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        api_retry_delay(failures, jitter())
    }

    /// The app reconciled: its next failure starts from the first delay again.
    pub fn succeeded(&self, namespace: &str, name: &str) {
        if let Ok(mut f) = self.failures.lock() {
            // No allocation on the common path: most apps have no entry.
            if !f.is_empty() {
                f.remove(&(namespace.to_owned(), name.to_owned()));
            }
        }
    }

    /// Forgets the apps `keep` says no to (deleted before their next reconcile).
    pub fn retain(&self, mut keep: impl FnMut(&str, &str) -> bool) {
        if let Ok(mut f) = self.failures.lock() {
            f.retain(|(ns, name), _| keep(ns, name));
        }
    }

    /// Apps with a run of failures (a gauge of trouble, and what the tests read).
    pub fn failing(&self) -> usize {
        self.failures.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// A number in [-1, 1], different each call: std's per-map random hash keys, hashed.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_retries_double_from_one_second_to_a_five_minute_cap() {
        let delays: Vec<u64> = (1..=11)
            .map(|n| api_retry_delay(n, 0.0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        // However long the run: capped, no overflow.
        assert_eq!(api_retry_delay(u32::MAX, 0.0), API_RETRY_CAP);
        assert_eq!(api_retry_delay(0, 0.0), API_RETRY_FIRST);
    }

    #[test]
    fn api_retries_jitter_within_twenty_percent() {
        assert_eq!(api_retry_delay(1, -1.0), Duration::from_millis(800));
        assert_eq!(api_retry_delay(1, 1.0), Duration::from_millis(1200));
        assert_eq!(api_retry_delay(40, 1.0), Duration::from_secs(360));
        assert_eq!(api_retry_delay(40, 7.0), Duration::from_secs(360));
        let draws: Vec<f64> = (0..1000).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (-1.0..=1.0).contains(j)));
        // Spread, not constant: both halves of the range are used.
        assert!(draws.iter().any(|j| *j < -0.5) && draws.iter().any(|j| *j > 0.5));
    }

    #[test]
    fn an_apps_failures_grow_its_delay_until_it_succeeds_and_not_another_apps() {
        let b = ApiBackoff::default();
        let within = |d: Duration, secs: f64| {
            let s = d.as_secs_f64();
            assert!(
                s >= secs * 0.8 - 1e-9 && s <= secs * 1.2 + 1e-9,
                "{d:?} vs {secs}s"
            );
        };
        within(b.failed("ns", "a"), 1.0);
        within(b.failed("ns", "a"), 2.0);
        within(b.failed("ns", "a"), 4.0);
        // Another app (or the same name elsewhere) has its own run.
        within(b.failed("ns", "b"), 1.0);
        within(b.failed("other", "a"), 1.0);
        assert_eq!(b.failing(), 3);
        b.succeeded("ns", "a");
        within(b.failed("ns", "a"), 1.0);
        within(b.failed("ns", "b"), 2.0);
        b.succeeded("ns", "a");
        b.succeeded("ns", "b");
        assert_eq!(b.failing(), 1);
        // A deleted app's run is forgotten by the sweep.
        b.retain(|ns, _| ns != "other");
        assert_eq!(b.failing(), 0);
    }
}
