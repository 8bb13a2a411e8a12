//! Lifecycle hooks of the Spark container.

use k8s_openapi::api::core::v1::{ExecAction, Lifecycle, LifecycleHandler};

use super::edit::PodEdit;
use super::util::spark_container;
use super::{Ctx, MutateError};
use crate::labels::SparkRole;

/// Spark's decommission script (`spark.decommission.script` default), shipped in Spark's images:
/// it signals the executor to migrate its blocks and waits for it to exit.
pub(crate) const DECOMMISSION_SCRIPT: &str = "/opt/decom.sh";

/// Role `lifecycle`: replaces the Spark container's as a whole (kubeflow), for drivers and
/// executors alike (the executor container is `spark-kubernetes-executor` on Spark 3).
///
/// Not in kubeflow: when the role configures no lifecycle, the pod is an executor whose Spark
/// container has no preStop hook, and `executor_prestop_decommission` is on, a preStop hook runs
/// `/opt/decom.sh` so executors drain gracefully when their pod is deleted (the hook Spark
/// itself adds when `spark.decommission.enabled` is set). A postStart hook is kept.
pub(crate) fn lifecycle(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    if let Some(lifecycle) = ctx.spec.lifecycle {
        *spark_container(ctx, pod)?.lifecycle() = Some(lifecycle.clone());
        return Ok(());
    }
    if ctx.role != SparkRole::Executor || !ctx.opts.executor_prestop_decommission {
        return Ok(());
    }
    let mut container = spark_container(ctx, pod)?;
    let current = container.lifecycle().get_or_insert_with(Lifecycle::default);
    if current.pre_stop.is_none() {
        current.pre_stop = Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![DECOMMISSION_SCRIPT.to_string()]),
            }),
            ..LifecycleHandler::default()
        });
    }
    Ok(())
}
