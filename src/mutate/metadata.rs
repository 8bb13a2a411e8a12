//! Pod labels and annotations. Kubeflow passes these to spark-submit
//! (`spark.kubernetes.{driver,executor}.{label,annotation}.*`) and Spark sets them when it
//! creates the pod; here they are applied to the pod directly, with the same precedence.

use super::edit::PodEdit;
use super::{Ctx, MutateError};
use crate::labels::{
    APP_NAME_LABEL, EXECUTOR_ID_LABEL, LAUNCHED_BY_LABEL, RESOURCE_PROFILE_ID_LABEL,
    SPARK_APP_SELECTOR_LABEL, SPARK_ROLE_LABEL, SUBMISSION_ID_LABEL,
};

/// Labels Spark reserves for its own bookkeeping, plus the one that makes the pod ours. Spark
/// refuses user labels with the first ones; changing the last would make the pod belong to
/// another app on the next run.
const RESERVED_LABELS: &[&str] = &[
    SPARK_ROLE_LABEL,
    SPARK_APP_SELECTOR_LABEL,
    EXECUTOR_ID_LABEL,
    RESOURCE_PROFILE_ID_LABEL,
    APP_NAME_LABEL,
    // Identify the submission: the reconciler recognises its own driver, and the webhook its
    // pods, by these; an app label must never overwrite them.
    SUBMISSION_ID_LABEL,
    LAUNCHED_BY_LABEL,
];

/// `metadata.labels`: the SparkApplication's own labels (except `kueue.x-k8s.io/*`), then the
/// role's `labels`. Precedence: role labels win over app labels (later `--conf` in kubeflow),
/// and both win over the pod's (Spark applies them over its pod template); reserved labels
/// (see `RESERVED_LABELS`) are never changed.
pub(crate) fn labels(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let wanted: Vec<_> = ctx
        .app
        .pod_labels(&ctx.spec.pod.labels)
        .filter(|(key, _)| !RESERVED_LABELS.contains(&key.as_str()))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut labels = pod.labels();
    for (key, value) in wanted {
        labels.insert(key.clone(), value.clone());
    }
    Ok(())
}

/// `metadata.annotations`: the role's `annotations`; they win over the pod's.
pub(crate) fn annotations(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let wanted = &ctx.spec.pod.annotations;
    if wanted.is_empty() {
        return Ok(());
    }
    let mut annotations = pod.annotations();
    for (key, value) in wanted {
        annotations.insert(key.clone(), value.clone());
    }
    Ok(())
}
