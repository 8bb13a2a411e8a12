//! The driver pod is owned by its SparkApplication, so deleting the app garbage-collects the
//! driver (and, through the driver's own ownerReferences, its executors, services and config
//! maps). Executors are owned by the driver already (Spark sets that); they are left alone.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::edit::PodEdit;
use super::{Ctx, MutateError};
use crate::labels::SparkRole;

const API_VERSION: &str = "sparkoperator.k8s.io/v1beta2";
const KIND: &str = "SparkApplication";

/// Driver only: `metadata.ownerReferences` gets the app (controller, blockOwnerDeletion).
///
/// Precedence: kubeflow appends unless an identical reference exists. We also replace a
/// reference to the same app (same uid) that differs, instead of adding a second one, and
/// refuse a pod that already has another controller (the API server would reject two).
pub(crate) fn owner_reference(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    if ctx.role != SparkRole::Driver {
        return Ok(());
    }
    let ours = app_owner_reference(ctx)?;
    let refs = pod.owner_references();
    if let Some(other) = refs
        .iter()
        .find(|r| r.uid != ours.uid && r.controller == Some(true))
    {
        return Err(MutateError::OwnerConflict {
            app: ctx.app_ref.clone(),
            role: ctx.role,
            owner: format!("{} {} ({})", other.kind, other.name, other.uid),
        });
    }
    match refs.iter_mut().find(|r| r.uid == ours.uid) {
        Some(existing) => *existing = ours,
        None => refs.push(ours),
    }
    Ok(())
}

fn app_owner_reference(ctx: &Ctx<'_>) -> Result<OwnerReference, MutateError> {
    let meta = &ctx.app.metadata;
    let uid = meta
        .uid
        .clone()
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| MutateError::MissingUid {
            app: ctx.app_ref.clone(),
            role: ctx.role,
        })?;
    Ok(OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}
