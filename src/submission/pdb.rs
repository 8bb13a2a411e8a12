//! The driver's PodDisruptionBudget (kubeflow master, `driver_pdb.go`): with
//! `--enable-driver-pdb` and `spec.driverPodDisruptionBudget: true`, a policy/v1 PDB named
//! after the driver pod, `minAvailable: 1`, selecting the app's driver, so a voluntary eviction
//! (`kubectl drain`) waits instead of killing the running job. Created with the attempt and
//! deleted with it, and when the app ends (it then protects nothing).

use std::collections::BTreeMap;

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels::{APP_NAME_LABEL, LAUNCHED_BY_LABEL, SPARK_ROLE_LABEL, SparkRole};

use super::ctx::Ctx;
use super::objects::operator_labels;

/// The PDB, when the operator and the app both ask for it.
pub(crate) fn build(ctx: &Ctx<'_>) -> Option<PodDisruptionBudget> {
    if !ctx.opts.enable_driver_pdb || ctx.app.spec.driver_pod_disruption_budget != Some(true) {
        return None;
    }
    let mut labels = operator_labels(ctx);
    labels.insert(LAUNCHED_BY_LABEL.to_string(), "true".to_string());
    Some(PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(ctx.names.driver_pod.clone()),
            namespace: Some(ctx.namespace.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (APP_NAME_LABEL.to_string(), ctx.name.to_string()),
                    (
                        SPARK_ROLE_LABEL.to_string(),
                        SparkRole::Driver.as_str().to_string(),
                    ),
                ])),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
