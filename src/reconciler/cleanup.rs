//! Removing what a submission left: an attempt's driver and everything labelled with its
//! submission id (explicitly, for clusters without garbage collection: Services, ConfigMaps,
//! Ingresses, the driver's PodDisruptionBudget, the batch scheduler's PodGroup), and the drivers
//! whose app is gone, found by a periodic sweep.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::DynamicObject;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio_util::sync::CancellationToken;

use super::context::{Context, ReconcileError};
use crate::cache::{GuardedApp, SparkPod, synced};
use crate::labels::SUBMISSION_ID_LABEL;
use crate::scheduling::Kind;

/// Deletes an attempt's driver and, explicitly, everything labelled with its submission id
/// (a cluster without garbage collection would otherwise keep them). The id comes from the
/// driver's label, or from the status when the driver is already gone (a suspension must still
/// remove the attempt's Service and ConfigMaps then).
pub(super) async fn delete_attempt(
    ctx: &Context,
    ns: &str,
    pod_name: &str,
    submission_id: Option<&str>,
) -> Result<(), ReconcileError> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    // An empty name would address the whole collection.
    if !pod_name.is_empty() {
        match pods.delete(pod_name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(id) = submission_id.filter(|id| !id.is_empty()) {
        let lp = ListParams::default().labels(&format!("{SUBMISSION_ID_LABEL}={id}"));
        delete_labelled(&pods, &lp).await?;
        delete_labelled(&namespaced::<ConfigMap>(ctx, ns), &lp).await?;
        // Services have no deletecollection verb: one by one.
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
        for svc in services.list(&lp).await?.items {
            match services
                .delete(&svc.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        delete_labelled(&namespaced::<Ingress>(ctx, ns), &lp).await?;
        if ctx.submit.enable_driver_pdb {
            delete_labelled(&namespaced::<PodDisruptionBudget>(ctx, ns), &lp).await?;
        }
        delete_pod_groups(ctx, ns, &lp).await?;
    }
    Ok(())
}

/// Deletes the PodGroups matching `lp`, of every scheduler kind enabled (kubeflow deletes the
/// group when the app ends; ours go with their attempt too). Nothing without batch scheduling,
/// so no right on PodGroups is needed then; a CRD not installed has none to delete.
async fn delete_pod_groups(ctx: &Context, ns: &str, lp: &ListParams) -> Result<(), ReconcileError> {
    let batch = &ctx.submit.batch;
    if !batch.enabled {
        return Ok(());
    }
    let mut kinds = vec![Kind::Volcano];
    if !batch.kube_scheduler_names.is_empty() {
        kinds.push(Kind::Coscheduling);
    }
    for resource in kinds.into_iter().filter_map(Kind::group_api) {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
        delete_labelled(&api, lp).await?;
    }
    Ok(())
}

/// The app ended: its driver's PodDisruptionBudget protects nothing any more and its PodGroup
/// holds no gang (kubeflow deletes both on termination too). Each gated like its creation.
pub(super) async fn release_driver(
    ctx: &Context,
    ns: &str,
    driver: Option<&SparkPod>,
) -> Result<(), ReconcileError> {
    let Some(id) = driver.and_then(|d| d.labels().get(SUBMISSION_ID_LABEL)) else {
        return Ok(());
    };
    let lp = ListParams::default().labels(&format!("{SUBMISSION_ID_LABEL}={id}"));
    delete_pod_groups(ctx, ns, &lp).await?;
    if !ctx.submit.enable_driver_pdb {
        return Ok(());
    }
    delete_labelled(&namespaced::<PodDisruptionBudget>(ctx, ns), &lp).await
}

fn namespaced<K>(ctx: &Context, ns: &str) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(ctx.client.clone(), ns)
}

/// Deletes the objects of `api` matching `lp` in one call; a kind this cluster does not serve
/// (policy/v1 before Kubernetes 1.21, a PodGroup CRD not installed) has none to delete.
async fn delete_labelled<K>(api: &Api<K>, lp: &ListParams) -> Result<(), ReconcileError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete_collection(&DeleteParams::background(), lp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deleting a SparkApplication stops its driver: the driver's ownerReference lets the garbage
/// collector do it, but a cluster may run without one, so drivers whose app (by uid) is gone
/// are also deleted here, with everything of their submission.
pub(super) async fn sweep_orphans(
    apps: Store<GuardedApp>,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    // Until both caches hold a full list, every driver would look orphaned.
    if !synced(&apps, &shutdown).await || !synced(&ctx.pods, &shutdown).await {
        return;
    }
    let mut tick = tokio::time::interval(ctx.settings.orphan_sweep_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // An app deleted before its next reconcile would keep its entry forever.
        if let Ok(mut w) = ctx.written.lock() {
            w.retain(|(ns, name), _| apps.get(&ObjectRef::new(name).within(ns)).is_some());
        }
        ctx.api_backoff
            .retain(|ns, name| apps.get(&ObjectRef::new(name).within(ns)).is_some());
        for pod in ctx.pods.state() {
            let Some(owner) = pod.owner_references().iter().find(|o| {
                o.kind == "SparkApplication" && o.api_version.starts_with("sparkoperator.k8s.io/")
            }) else {
                continue;
            };
            let ns = pod.namespace().unwrap_or_default();
            // Another operator's namespace (a cluster-wide pod watch under a selector).
            if !ctx.namespaces.contains(&ns) {
                continue;
            }
            let alive = apps
                .get(&ObjectRef::new(&owner.name).within(&ns))
                .is_some_and(|a| {
                    a.0.as_ref().ok().and_then(|a| a.metadata.uid.as_deref())
                        == Some(owner.uid.as_str())
                });
            if alive || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            tracing::info!(namespace = %ns, pod = %pod.name_any(), app = %owner.name, "SparkApplication is gone: deleting its driver");
            let id = pod.labels().get(SUBMISSION_ID_LABEL).map(String::as_str);
            if let Err(e) = delete_attempt(&ctx, &ns, &pod.name_any(), id).await {
                tracing::warn!(error = %e, pod = %pod.name_any(), "could not delete an orphaned driver");
            }
        }
    }
}
