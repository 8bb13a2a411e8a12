//! Where and how the pod is scheduled: host network and aliases, DNS, priority, scheduler,
//! node selector, affinity and tolerations.

use k8s_openapi::api::core::v1::{HostAlias, Toleration};

use super::edit::PodEdit;
use super::{Ctx, MutateError};

/// `util::is_subset` for a host alias, field by field: the same entry, possibly written with
/// fewer fields. Typed, since these are compared on every review with a toleration or alias
/// (building both as JSON cost more than the rest of the rule).
fn alias_within(wanted: &HostAlias, have: &HostAlias) -> bool {
    let HostAlias { ip, hostnames } = wanted;
    *ip == have.ip && within(hostnames, &have.hostnames)
}

/// `util::is_subset` for a toleration, field by field (all of them scalars).
fn toleration_within(wanted: &Toleration, have: &Toleration) -> bool {
    let Toleration {
        effect,
        key,
        operator,
        toleration_seconds,
        value,
    } = wanted;
    within(effect, &have.effect)
        && within(key, &have.key)
        && within(operator, &have.operator)
        && within(toleration_seconds, &have.toleration_seconds)
        && within(value, &have.value)
}

/// A field of the wanted object is met when it is unset or equal.
fn within<T: PartialEq>(wanted: &Option<T>, have: &Option<T>) -> bool {
    wanted.is_none() || wanted == have
}

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
    let mut aliases = pod.host_aliases();
    for alias in wanted {
        if !aliases.iter().any(|have| alias_within(alias, have)) {
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
    let mut tolerations = pod.tolerations();
    for toleration in wanted {
        if !tolerations
            .iter()
            .any(|have| toleration_within(toleration, have))
        {
            tolerations.push(toleration.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::util::is_subset;

    fn json_within<T: serde::Serialize>(wanted: &T, have: &T) -> bool {
        is_subset(
            &serde_json::to_value(wanted).unwrap(),
            &serde_json::to_value(have).unwrap(),
        )
    }

    #[test]
    fn typed_comparisons_agree_with_the_json_subset_rule() {
        let t = |key: Option<&str>, op: Option<&str>, value: Option<&str>, secs: Option<i64>| {
            Toleration {
                key: key.map(Into::into),
                operator: op.map(Into::into),
                value: value.map(Into::into),
                effect: Some("NoSchedule".into()),
                toleration_seconds: secs,
            }
        };
        let tolerations = [
            t(Some("dedicated"), Some("Equal"), Some("spark"), None),
            t(Some("dedicated"), Some("Equal"), Some("spark"), Some(300)),
            t(Some("dedicated"), Some("Equal"), Some("other"), None),
            t(Some("dedicated"), None, Some("spark"), None),
            t(Some("spot"), Some("Exists"), None, None),
            t(None, Some("Exists"), None, None),
        ];
        for w in &tolerations {
            for h in &tolerations {
                assert_eq!(toleration_within(w, h), json_within(w, h), "{w:?} in {h:?}");
            }
        }
        // The server's extra field does not make the app's toleration new; another value does.
        assert!(toleration_within(&tolerations[0], &tolerations[1]));
        assert!(!toleration_within(&tolerations[1], &tolerations[0]));
        assert!(!toleration_within(&tolerations[0], &tolerations[2]));

        let a = |ip: &str, names: Option<&[&str]>| HostAlias {
            ip: ip.into(),
            hostnames: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
        };
        let aliases = [
            a("10.0.0.1", Some(&["metastore.internal"])),
            a("10.0.0.1", Some(&["metastore.internal", "hive"])),
            a("10.0.0.1", None),
            a("10.0.0.2", Some(&["metastore.internal"])),
        ];
        for w in &aliases {
            for h in &aliases {
                assert_eq!(alias_within(w, h), json_within(w, h), "{w:?} in {h:?}");
            }
        }
    }
}
