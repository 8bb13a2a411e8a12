//! The webhook's view of SparkApplications: watch-backed reflector stores, one per job
//! namespace (or one for all), so a review never waits on a GET.
//!
//! Objects are read through `DeserializeGuard`: one SparkApplication our types cannot read
//! (the CRD preserves unknown fields in some subtrees) must not stall the watch for every other
//! app; its pods are refused with the reason instead.
//!
//! Apps are cached compact (the spec as JSON text, see `cache::compact`): every app sits here for
//! its whole life, and as a type a spec takes about ten times its text. A review reads the spec
//! back into its type; the few apps decoded last are kept, because an app's pods arrive together
//! (its driver, then a batch of executors).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

pub use super::compact::{CompactApp, GuardedApp};
use crate::crd::SparkApplication;
use crate::namespaces::JobNamespaces;

/// How many decoded apps `AppCache::decode` keeps.
const DECODED_APPS: usize = 16;

/// Reflector stores of SparkApplications, by namespace.
#[derive(Clone)]
pub struct AppCache {
    stores: Arc<Vec<(Option<String>, Store<GuardedApp>)>>,
    ready: Arc<AtomicBool>,
    decoded: Arc<Mutex<VecDeque<Arc<SparkApplication>>>>,
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
                .modify(super::compact::slim)
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
            decoded: Arc::default(),
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
            decoded: Arc::default(),
        }
    }

    /// A ready cache holding exactly `apps` (tests, benchmarks).
    pub fn with_apps(apps: impl IntoIterator<Item = SparkApplication>) -> Self {
        let mut writer = reflector::store::Writer::<GuardedApp>::default();
        writer.apply_watcher_event(&watcher::Event::Init);
        for app in apps {
            let app = CompactApp::try_from(app).expect("a typed app serialises");
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

    /// `app` with its spec as a type. The same object (uid and resourceVersion) decoded a
    /// moment ago is shared, not decoded again.
    pub fn decode(&self, app: &CompactApp) -> Result<Arc<SparkApplication>, serde_json::Error> {
        // Name and namespace too: objects built by tests carry no uid or resourceVersion.
        let same = |d: &&Arc<SparkApplication>| {
            let (a, b) = (&d.metadata, &app.metadata);
            a.uid == b.uid
                && a.resource_version == b.resource_version
                && a.name == b.name
                && a.namespace == b.namespace
        };
        let hit = self
            .decoded
            .lock()
            .ok()
            .and_then(|d| d.iter().find(same).cloned());
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let typed = Arc::new(app.expand()?);
        if let Ok(mut decoded) = self.decoded.lock() {
            if decoded.len() == DECODED_APPS {
                decoded.pop_back();
            }
            decoded.push_front(typed.clone());
        }
        Ok(typed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = include_str!("../../tests/bench/sparkapplication.yaml");

    fn compact(app: &SparkApplication) -> CompactApp {
        CompactApp::try_from(app.clone()).unwrap()
    }

    #[test]
    fn an_updated_app_is_decoded_again_and_other_apps_never_mix() {
        let cache = AppCache::with_apps([]);
        let mut app: SparkApplication = serde_yaml::from_str(APP).unwrap();
        app.metadata.resource_version = Some("10".into());
        let first = cache.decode(&compact(&app)).unwrap();
        assert_eq!(*first, app);
        assert!(Arc::ptr_eq(&first, &cache.decode(&compact(&app)).unwrap()));

        // `kubectl apply` of a new spec: the next pod must see it.
        app.spec.image = Some("spark:3.5.3".into());
        app.metadata.resource_version = Some("11".into());
        assert_eq!(
            cache.decode(&compact(&app)).unwrap().spec.image,
            app.spec.image
        );

        let mut other = app.clone();
        other.metadata.name = Some("other".into());
        other.spec.image = Some("other:1".into());
        assert_eq!(
            cache.decode(&compact(&other)).unwrap().spec.image,
            other.spec.image
        );
        assert_eq!(
            cache.decode(&compact(&app)).unwrap().spec.image,
            app.spec.image
        );
    }
}
