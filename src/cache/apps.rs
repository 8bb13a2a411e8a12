//! The SparkApplications of the job namespaces, watched once for the whole process: reflector
//! stores, one per job namespace (or one for all), that the webhook reads so a review never
//! waits on a GET, and that the reconciler's controllers subscribe to instead of watching and
//! caching every app a second time.
//!
//! Objects are read through `DeserializeGuard`: one SparkApplication our types cannot read
//! (the CRD preserves unknown fields in some subtrees) must not stall the watch for every other
//! app; its pods are refused with the reason, and the reconciler leaves it until it changes.
//!
//! Apps are cached compact (the spec as packed JSON text, see `cache::compact`): every app sits
//! here for its whole life, and as a type a spec takes about ten times its text. A review reads
//! the spec back into its type; the few apps decoded last are kept, because an app's pods arrive
//! together (its driver, then a batch of executors).
//!
//! The watch lives as long as the process (or, without the webhook, a leader term); controllers
//! come and go with the leader Lease. So a controller does not take over the watch's stream: it
//! subscribes to the changes the watch has applied ([`AppScope::subscribe`]), first reconciling
//! every cached app (as a fresh watch's first list did), and unsubscribes by dropping the
//! stream. The changes go out on a broadcast channel that never makes the watch wait:
//! kube-runtime's shared reflector (`store_shared`) holds the watch back while any subscriber's
//! buffer is full, which would leave the webhook's lookups stale behind a busy reconciler, and
//! once its stream runs it takes new subscribers only through a handle kept for the purpose,
//! which, unread between leader terms, would fill up and hold the watch back itself. A
//! subscriber that falls behind by more than [`CHANGES_BUFFER`] changes reconciles every cached
//! app instead of the ones it missed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::Client;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Lookup, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use super::compact::{CompactApp, GuardedApp};
use crate::crd::SparkApplication;
use crate::namespaces::JobNamespaces;

/// How many decoded apps `AppCache::decode` keeps.
const DECODED_APPS: usize = 16;

/// Changes a subscriber may fall behind the watch before it misses some (and reconciles every
/// app instead). A slot is an `Arc` (the app itself is the store's), ~50 bytes with its
/// bookkeeping, so 1024 take ~50 KiB per scope, allocated once. Bursts come from a (re)list,
/// which hands over every app at once; 1024 covers two of the apiserver's 500-item list pages,
/// and past that a full resync costs the subscriber one pass over the store, no more than the
/// burst itself.
pub const CHANGES_BUFFER: usize = 1024;

/// The SparkApplication watches, by namespace.
#[derive(Clone)]
pub struct AppCache {
    scopes: Arc<Vec<AppScope>>,
    ready: Arc<AtomicBool>,
    decoded: Arc<Mutex<VecDeque<Arc<SparkApplication>>>>,
}

/// One watch: a job namespace (or all), its store, and the changes it applies.
#[derive(Clone)]
pub struct AppScope {
    namespace: Option<String>,
    store: Store<GuardedApp>,
    changes: broadcast::Sender<Arc<GuardedApp>>,
}

impl AppScope {
    fn new(namespace: Option<String>, store: Store<GuardedApp>) -> Self {
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        AppScope {
            namespace,
            store,
            changes,
        }
    }

    /// The namespace watched; None for all.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub fn store(&self) -> Store<GuardedApp> {
        self.store.clone()
    }

    /// The apps a controller must reconcile: once the store holds its first list, every app in
    /// it, then each app the watch applies (created or changed, and all of them again after a
    /// re-list), as a controller's own watch would yield them. Ends at `shutdown`.
    pub fn subscribe(
        &self,
        shutdown: CancellationToken,
    ) -> impl Stream<Item = Arc<GuardedApp>> + Send + 'static {
        let sub = Subscriber {
            source: self.changes.clone(),
            changes: None,
            store: self.store.clone(),
            pending: Vec::new(),
            shutdown,
        };
        futures::stream::unfold(sub, |mut sub| async move {
            let next = sub.next().await?;
            Some((next, sub))
        })
    }

    /// Applies one event of the watch to the store and hands what it applied to the
    /// subscribers, never waiting for them.
    fn apply(
        &self,
        writer: &mut reflector::store::Writer<GuardedApp>,
        event: watcher::Event<GuardedApp>,
    ) {
        writer.apply_watcher_event(&event);
        if self.changes.receiver_count() == 0 {
            return;
        }
        match event {
            watcher::Event::Apply(app) => {
                if let Some(app) = self.store.get(&app.to_object_ref(())) {
                    let _ = self.changes.send(app);
                }
            }
            // A (re)list is in the store only once complete: then all of it.
            watcher::Event::InitDone => {
                for app in self.store.state() {
                    let _ = self.changes.send(app);
                }
            }
            watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }
}

/// The state of one [`AppScope::subscribe`] stream.
struct Subscriber {
    source: broadcast::Sender<Arc<GuardedApp>>,
    /// The changes since the store was last handed out whole; None before the first time.
    changes: Option<broadcast::Receiver<Arc<GuardedApp>>>,
    store: Store<GuardedApp>,
    /// Apps to hand out before the next change: the first list, or a resync.
    pending: Vec<Arc<GuardedApp>>,
    shutdown: CancellationToken,
}

impl Subscriber {
    async fn next(&mut self) -> Option<Arc<GuardedApp>> {
        loop {
            if let Some(app) = self.pending.pop() {
                return Some(app);
            }
            let Some(changes) = self.changes.as_mut() else {
                if !super::synced(&self.store, &self.shutdown).await {
                    return None;
                }
                self.resync();
                continue;
            };
            let change = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                change = changes.recv() => change,
            };
            match change {
                Ok(app) => return Some(app),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        "fell behind the SparkApplication watch: reconciling every app"
                    );
                    self.resync();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Every app in the store, then only the changes after it: subscribed before the store is
    /// read, so nothing applied in between is lost (at worst an app comes twice).
    fn resync(&mut self) {
        self.changes = Some(self.source.subscribe());
        self.pending = self.store.state();
    }
}

/// Hands the apps of each namespace that starts to match `--namespace-selector` to the
/// subscribers, as if the watch had just applied them: the controllers skip the apps of
/// namespaces that are not served, so a namespace labelled after start has its waiting apps
/// reconciled at once, not at their next change.
async fn announce_selected(
    scope: AppScope,
    namespaces: JobNamespaces,
    shutdown: CancellationToken,
) {
    let mut added = std::pin::pin!(namespaces.added());
    loop {
        // `None`: some were missed, so announce every app of a served namespace.
        let name = tokio::select! {
            _ = shutdown.cancelled() => return,
            name = added.next() => match name {
                Some(name) => name,
                None => return,
            },
        };
        for app in scope.store.state() {
            let Some(ns) = app.namespace() else { continue };
            let wanted = match &name {
                Some(name) => ns == *name,
                None => namespaces.contains(&ns),
            };
            if wanted {
                let _ = scope.changes.send(app);
            }
        }
    }
}

impl AppCache {
    /// Starts one watch per job namespace (or one cluster-wide) until `shutdown`.
    /// Watches retry with backoff forever: an unreachable apiserver makes us unready, not dead.
    pub fn start(client: &Client, namespaces: &JobNamespaces, shutdown: CancellationToken) -> Self {
        let mut scopes = Vec::new();
        for ns in namespaces.scopes() {
            let api: Api<GuardedApp> = match &ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let (reader, mut writer) = reflector::store();
            let scope = AppScope::new(ns, reader);
            let stream = watcher(api, watcher::Config::default())
                .backoff(crate::health::WatchBackoff::default())
                .modify(super::compact::slim);
            let token = shutdown.clone();
            let watch = scope.clone();
            tokio::spawn(async move {
                let name = watch.namespace().unwrap_or("*").to_string();
                let mut stream = std::pin::pin!(stream);
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        next = stream.next() => match next {
                            Some(Ok(event)) => watch.apply(&mut writer, event),
                            Some(Err(e)) => tracing::warn!(namespace = %name, error = %e, "SparkApplication watch failed; retrying"),
                            None => break,
                        }
                    }
                }
            });
            scopes.push(scope);
        }
        let cache = AppCache {
            scopes: Arc::new(scopes),
            ready: Arc::new(AtomicBool::new(false)),
            decoded: Arc::default(),
        };
        if namespaces.selector().is_some() {
            tokio::spawn(announce_selected(
                cache.scopes[0].clone(),
                namespaces.clone(),
                shutdown.clone(),
            ));
        }
        let waiter = cache.clone();
        let selection = namespaces.clone();
        tokio::spawn(async move {
            // Polled, not awaited: a store's readiness wakes one waiter only, and controllers
            // wait on the same stores.
            for scope in waiter.scopes.iter() {
                if !super::synced(&scope.store, &shutdown).await {
                    return;
                }
            }
            // Selected namespaces too: until they are known, every pod would look like one of
            // no job namespace.
            while !selection.is_synced() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
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
            scopes: Arc::new(
                stores
                    .into_iter()
                    .map(|(ns, store)| AppScope::new(ns, store))
                    .collect(),
            ),
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

    /// The watches, one per job namespace (or one for all).
    pub fn scopes(&self) -> &[AppScope] {
        &self.scopes
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<GuardedApp>> {
        let key = ObjectRef::new(name).within(namespace);
        self.scopes
            .iter()
            .find(|s| s.namespace().is_none_or(|n| n == namespace))
            .and_then(|s| s.store.get(&key))
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
        let mut app: SparkApplication = yaml_serde::from_str(APP).unwrap();
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

    fn guarded(name: &str) -> GuardedApp {
        let mut app: SparkApplication = yaml_serde::from_str(APP).unwrap();
        app.metadata.name = Some(name.into());
        app.metadata.namespace = Some("ns".into());
        DeserializeGuard(Ok(compact(&app)))
    }

    fn names(apps: &[Arc<GuardedApp>]) -> Vec<String> {
        let mut names: Vec<String> = apps
            .iter()
            .map(|a| a.0.as_ref().unwrap().metadata.name.clone().unwrap())
            .collect();
        names.sort();
        names
    }

    async fn take(
        stream: &mut (impl Stream<Item = Arc<GuardedApp>> + Unpin),
        n: usize,
    ) -> Vec<Arc<GuardedApp>> {
        let mut out = Vec::new();
        for _ in 0..n {
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next());
            out.push(next.await.expect("in time").expect("not ended"));
        }
        out
    }

    /// A controller started before the first list, or long after it (a later leader term),
    /// reconciles every app once, then each app the watch applies.
    #[tokio::test]
    async fn a_subscriber_gets_every_cached_app_then_each_change() {
        let mut writer = reflector::store::Writer::<GuardedApp>::default();
        let scope = AppScope::new(None, writer.as_reader());
        let token = CancellationToken::new();
        let early = scope.subscribe(token.clone());
        let mut early = std::pin::pin!(early);
        // Nothing subscribed waits: the watch goes on at its own pace.
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(guarded("a")),
            watcher::Event::InitApply(guarded("b")),
            watcher::Event::InitDone,
        ] {
            scope.apply(&mut writer, event);
        }
        let first = take(&mut early, 2).await;
        assert_eq!(names(&first), ["a", "b"]);

        let late = scope.subscribe(token.clone());
        let mut late = std::pin::pin!(late);
        assert_eq!(names(&take(&mut late, 2).await), ["a", "b"]);

        scope.apply(&mut writer, watcher::Event::Apply(guarded("c")));
        scope.apply(&mut writer, watcher::Event::Delete(guarded("a")));
        for stream in [&mut early, &mut late] {
            // An app may come twice (applied while the store was read): that only requeues it.
            let mut seen = Vec::new();
            while !names(&seen).contains(&"c".to_string()) {
                seen.extend(take(stream, 1).await);
            }
        }
        token.cancel();
        assert!(early.next().await.is_none(), "ends at shutdown");
    }

    /// A subscriber that falls further behind than the buffer is not dropped and does not hold
    /// the watch back: it reconciles every app in the store instead of the changes it missed.
    #[tokio::test]
    async fn a_subscriber_that_falls_behind_reconciles_every_app() {
        let mut writer = reflector::store::Writer::<GuardedApp>::default();
        let scope = AppScope::new(None, writer.as_reader());
        scope.apply(&mut writer, watcher::Event::Init);
        scope.apply(&mut writer, watcher::Event::InitApply(guarded("app0")));
        scope.apply(&mut writer, watcher::Event::InitDone);
        let stream = scope.subscribe(CancellationToken::new());
        let mut stream = std::pin::pin!(stream);
        assert_eq!(names(&take(&mut stream, 1).await), ["app0"]);
        let apps = [guarded("app0"), guarded("app1"), guarded("app2")];
        for i in 0..CHANGES_BUFFER + 10 {
            scope.apply(&mut writer, watcher::Event::Apply(apps[i % 3].clone()));
        }
        assert_eq!(scope.store.state().len(), 3);
        // The oldest changes were overwritten: every app once, and not the changes kept since.
        assert_eq!(names(&take(&mut stream, 3).await), ["app0", "app1", "app2"]);
        let more = tokio::time::timeout(std::time::Duration::from_millis(100), stream.next());
        assert!(more.await.is_err(), "nothing more until the next change");
    }
}
