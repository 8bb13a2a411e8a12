//! What this process keeps of the cluster: the SparkApplications (for the webhook and the
//! reconciler alike) and the compact stand-ins they and the Spark pods are cached as.
//!
//! One watch per scope. Every SparkApplication in a job namespace sits in memory for its whole
//! life, and the webhook (to complete the pods of an app) and the reconciler (to drive the app)
//! both need all of them: [`apps::AppCache`] runs one watch per job namespace (or one for all)
//! for the whole process, the webhook reads its stores, and each controller the reconciler runs
//! while it leads subscribes to the same watch instead of listing and caching every app again.
//! (Without the webhook, the reconciler starts an `AppCache` per leader term and stops it with
//! the term: a standby replica then caches no apps.) With `--namespace-selector`, the names of
//! the matching namespaces are watched too ([`namespaces`]).
//!
//! Compact, because of that lifetime: k8s-openapi's types keep every optional field inline, so a
//! typed SparkApplication spec takes about ten times its JSON text and a typed Pod several KiB
//! however little is set. [`compact::CompactApp`] keeps the spec as packed text,
//! [`pod::SparkPod`] only what the reconciler and the metrics read of a pod; both stand in for
//! their API type through [`resource_as!`].

pub mod apps;
pub mod compact;
pub mod namespaces;
pub mod pod;

use std::time::Duration;

use kube::runtime::reflector::{Lookup, Store};
use tokio_util::sync::CancellationToken;

pub use apps::{AppCache, AppScope};
pub use compact::{CompactApp, GuardedApp};
pub use pod::SparkPod;

/// Waits until `store` has completed its first list (false on shutdown). Polls: kube-runtime's
/// readiness future wakes only one waiter, and a Controller may already wait on the store.
pub async fn synced<K>(store: &Store<K>, shutdown: &CancellationToken) -> bool
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if shutdown.is_cancelled() {
            return false;
        }
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(Ok(())) => return true,
            Ok(Err(_)) => return false,
            Err(_) => {}
        }
    }
}

/// Implements `kube::Resource` for `$ty` as the API type `$api` (same kind, group, version,
/// plural and scope) with `$ty`'s own `metadata` field: the compact stand-ins are watched,
/// fetched and cached as the type they stand for, holding only what we read of it.
macro_rules! resource_as {
    ($ty:ty, $api:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = <$api as kube::Resource>::Scope;

            fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::kind(dt)
            }

            fn group(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::group(dt)
            }

            fn version(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::version(dt)
            }

            fn api_version(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::api_version(dt)
            }

            fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::plural(dt)
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use resource_as;
