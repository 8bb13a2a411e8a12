//! The webhook's view of SparkApplications: watch-backed reflector stores, one per job
//! namespace (or one for all), so a review never waits on a GET.
//!
//! Objects are read through `DeserializeGuard`: one SparkApplication our types cannot read
//! (the CRD preserves unknown fields in some subtrees) must not stall the watch for every other
//! app; its pods are refused with the reason instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::crd::SparkApplication;
use crate::namespaces::JobNamespaces;

pub type GuardedApp = DeserializeGuard<SparkApplication>;

/// Drops what no reader of a cached SparkApplication uses: `metadata.managedFields`. As parsed
/// JSON it is often larger than the spec itself (one entry per writer, each listing every field
/// it set), and every app sits in a cache for its whole life.
pub fn slim_app(app: &mut GuardedApp) {
    match &mut app.0 {
        Ok(app) => app.metadata.managed_fields = None,
        Err(invalid) => invalid.metadata.managed_fields = None,
    }
}

/// Reflector stores of SparkApplications, by namespace.
#[derive(Clone)]
pub struct AppCache {
    stores: Arc<Vec<(Option<String>, Store<GuardedApp>)>>,
    ready: Arc<AtomicBool>,
}

impl AppCache {
    /// Starts one watch per job namespace (or one cluster-wide) until `shutdown`.
    /// Watches retry with backoff forever: an unreachable apiserver makes us unready, not dead.
    pub fn start(client: &Client, namespaces: &JobNamespaces, shutdown: CancellationToken) -> Self {
        let scopes: Vec<Option<String>> = match namespaces.list() {
            None => vec![None],
            Some(list) => list.iter().cloned().map(Some).collect(),
        };
        let mut stores = Vec::new();
        for ns in scopes {
            let api: Api<GuardedApp> = match &ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let (reader, writer) = reflector::store();
            let stream = watcher(api, watcher::Config::default())
                .backoff(crate::health::WatchBackoff::default())
                .modify(slim_app)
                .reflect(writer)
                .touched_objects();
            let scope = ns.clone().unwrap_or_else(|| "*".into());
            let token = shutdown.clone();
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        next = stream.next() => match next {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => tracing::warn!(namespace = %scope, error = %e, "SparkApplication watch failed; retrying"),
                            None => break,
                        }
                    }
                }
            });
            stores.push((ns, reader));
        }
        let cache = AppCache {
            stores: Arc::new(stores),
            ready: Arc::new(AtomicBool::new(false)),
        };
        let waiter = cache.clone();
        tokio::spawn(async move {
            for (_, store) in waiter.stores.iter() {
                if store.wait_until_ready().await.is_err() {
                    return;
                }
            }
            waiter.ready.store(true, Ordering::Release);
            tracing::info!("SparkApplication cache synced");
        });
        cache
    }

    /// A cache over fixed stores (tests, benchmarks), ready at once.
    pub fn from_stores(stores: Vec<(Option<String>, Store<GuardedApp>)>) -> Self {
        AppCache {
            stores: Arc::new(stores),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A ready cache holding exactly `apps` (tests, benchmarks).
    pub fn with_apps(apps: impl IntoIterator<Item = SparkApplication>) -> Self {
        let mut writer = reflector::store::Writer::<GuardedApp>::default();
        writer.apply_watcher_event(&watcher::Event::Init);
        for app in apps {
            writer.apply_watcher_event(&watcher::Event::InitApply(DeserializeGuard(Ok(app))));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        // The reader shares the writer's map: dropping the writer keeps the contents.
        Self::from_stores(vec![(None, writer.as_reader())])
    }

    /// True once every watch has completed its first list.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<GuardedApp>> {
        let key = ObjectRef::new(name).within(namespace);
        self.stores
            .iter()
            .find(|(ns, _)| ns.as_deref().is_none_or(|n| n == namespace))
            .and_then(|(_, store)| store.get(&key))
    }
}
