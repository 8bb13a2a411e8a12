//! Where and how the pod is scheduled: host network and aliases, DNS, priority, scheduler,
//! node selector, affinity and tolerations.

use super::edit::PodEdit;
use super::util::same_object;
use super::{Ctx, MutateError};

/// Role `hostNetwork: true`: host networking, with DNS policy ClusterFirstWithHostNet so the
/// pod still resolves cluster names. `false` is ignored, as in kubeflow.
pub(crate) fn host_network(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    if ctx.spec.pod.host_network == Some(true) {
        *pod.host_network() = Some(true);
        *pod.dns_policy() = Some("ClusterFirstWithHostNet".to_string());
    }
    Ok(())
}

/// Role `hostAliases`: appended unless the pod has the same entry already.
pub(crate) fn host_aliases(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let wanted = &ctx.spec.pod.host_aliases;
    if wanted.is_empty() {
        return Ok(());
    }
    let aliases = pod.host_aliases().get_or_insert_with(Vec::new);
    for alias in wanted {
        if !aliases.iter().any(|have| same_object(alias, have)) {
            aliases.push(alias.clone());
        }
    }
    Ok(())
}

/// Role `dnsConfig`: replaces the pod's.
pub(crate) fn dns_config(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    if let Some(dns) = &ctx.spec.pod.dns_config {
        *pod.dns_config() = Some(dns.clone());
    }
    Ok(())
}

/// Role `priorityClassName` (non-empty): replaces the pod's. When it changes, the `priority`
/// and `preemptionPolicy` resolved from the old class are cleared so the API server resolves
/// them again (kubeflow clears them even when the class is unchanged, which would drop a
/// correctly resolved priority on a second pass).
pub(crate) fn priority_class_name(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let Some(class) = ctx.spec.priority_class_name.filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    let current = pod.pod().spec.as_ref();
    if current.and_then(|s| s.priority_class_name.as_deref()) != Some(class) {
        *pod.priority_class_name() = Some(class.to_string());
        *pod.priority() = None;
        *pod.preemption_policy() = None;
    }
    Ok(())
}

/// `spec.batchScheduler` if non-empty, else the role's `schedulerName` if non-empty: replaces
/// the pod's scheduler.
pub(crate) fn scheduler_name(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let Some(name) = non_empty(&ctx.app.spec.batch_scheduler)
        .or_else(|| non_empty(&ctx.spec.pod.scheduler_name))
    else {
        return Ok(());
    };
    *pod.scheduler_name() = Some(name);
    Ok(())
}

/// `spec.nodeSelector`, then the role's `nodeSelector`: merged into the pod's. Role entries
/// win over app entries (Spark's order for `spark.kubernetes.node.selector.*` and
/// `spark.kubernetes.{role}.node.selector.*`), and both win over the pod's.
pub(crate) fn node_selector(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let app = &ctx.app.spec.node_selector;
    let role = &ctx.spec.pod.node_selector;
    if app.is_empty() && role.is_empty() {
        return Ok(());
    }
    let selector = pod.node_selector().get_or_insert_with(Default::default);
    for (key, value) in app.iter().chain(role) {
        selector.insert(key.clone(), value.clone());
    }
    Ok(())
}

/// Role `affinity`: replaces the pod's as a whole.
pub(crate) fn affinity(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    if let Some(affinity) = &ctx.spec.pod.affinity {
        *pod.affinity() = Some(affinity.clone());
    }
    Ok(())
}

/// Role `tolerations`: appended unless the pod has the same toleration already.
pub(crate) fn tolerations(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let wanted = &ctx.spec.pod.tolerations;
    if wanted.is_empty() {
        return Ok(());
    }
    let tolerations = pod.tolerations().get_or_insert_with(Vec::new);
    for toleration in wanted {
        if !tolerations.iter().any(|have| same_object(toleration, have)) {
            tolerations.push(toleration.clone());
        }
    }
    Ok(())
}
