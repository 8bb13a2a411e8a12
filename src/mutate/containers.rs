//! Containers and their resources: extra ports, init containers, sidecars, memory limit, GPUs,
//! and the pod-level process settings (grace period, shared process namespace).

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::parse_kubernetes;

use super::edit::PodEdit;
use super::util::{describe_port, ensure_port, spark_container};
use super::{Ctx, MutateError, monitoring};

/// Role `ports`: opened on the Spark container (empty protocol means TCP). See
/// [`ensure_port`] for how ports the pod already has win.
pub(crate) fn ports(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let declared: Vec<(ContainerPort, String)> = ctx
        .spec
        .ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let protocol = Some(port.protocol.as_str())
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            let wanted = ContainerPort {
                name: Some(port.name.clone()).filter(|n| !n.is_empty()),
                container_port: port.container_port,
                protocol: Some(protocol.to_string()),
                ..ContainerPort::default()
            };
            (wanted, format!("{}.ports[{i}]", ctx.role))
        })
        .collect();
    // One name, two ports in the app itself: refused whatever the pod holds, so that a pod
    // mutated once is never refused the second time (the pod's own ports can hide the clash).
    let exporter = monitoring::exporter_port(ctx).map(|(p, f)| (p, f.to_string()));
    for (i, (a, field_a)) in declared.iter().chain(exporter.iter()).enumerate() {
        let clash = declared
            .iter()
            .chain(exporter.iter())
            .skip(i + 1)
            .find(|(b, _)| {
                a.name.is_some() && a.name == b.name && describe_port(a) != describe_port(b)
            });
        if let Some((b, field_b)) = clash {
            return Err(MutateError::PortDeclaredTwice {
                app: ctx.app_ref.clone(),
                role: ctx.role,
                name: b.name.clone().unwrap_or_default(),
                declarations: format!(
                    "{field_a} {}, {field_b} {}",
                    describe_port(a),
                    describe_port(b)
                ),
            });
        }
    }
    for (wanted, field) in declared {
        ensure_port(ctx, pod, wanted, &field)?;
    }
    Ok(())
}

/// Role `initContainers`, appended in order. Precedence (kubeflow's): a container of the same
/// name and image already in the pod wins; the same name with another image is an error
/// (names must be unique across containers and init containers).
pub(crate) fn init_containers(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    for (i, container) in ctx.spec.pod.init_containers.iter().enumerate() {
        let field = format!("{}.initContainers[{i}]", ctx.role);
        if !already_there(ctx, pod.pod(), container, &field)? {
            pod.init_containers().push(container.clone());
        }
    }
    Ok(())
}

/// Role `sidecars`, appended after the existing containers (so the Spark container keeps its
/// index). Same precedence as [`init_containers`].
pub(crate) fn sidecars(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    for (i, container) in ctx.spec.pod.sidecars.iter().enumerate() {
        let field = format!("{}.sidecars[{i}]", ctx.role);
        if !already_there(ctx, pod.pod(), container, &field)? {
            pod.push_container(container.clone());
        }
    }
    Ok(())
}

/// Whether a container named like `wanted` exists (in either list) with the same image.
fn already_there(
    ctx: &Ctx<'_>,
    pod: &Pod,
    wanted: &Container,
    field: &str,
) -> Result<bool, MutateError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(false);
    };
    let existing = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == wanted.name);
    match existing {
        None => Ok(false),
        Some(c) if c.image == wanted.image => Ok(true),
        Some(c) => Err(MutateError::ContainerConflict {
            app: ctx.app_ref.clone(),
            role: ctx.role,
            field: field.to_string(),
            name: wanted.name.clone(),
            image: wanted.image.clone().unwrap_or_else(|| "(none)".into()),
            existing: c.image.clone().unwrap_or_else(|| "(none)".into()),
        }),
    }
}

/// Role `memoryLimit`: the Spark container's memory limit, replacing the one Spark derives
/// from memory + overhead. JVM-style sizes (`512m`, `4g`) are converted to Kubernetes binary
/// units (`512Mi`, `4Gi`) as kubeflow does; anything else must be a valid, non-negative
/// Kubernetes quantity.
pub(crate) fn memory_limit(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let Some(raw) = ctx.spec.pod.memory_limit.as_deref() else {
        return Ok(());
    };
    let converted = java_memory_to_kubernetes(raw);
    let invalid = |reason: String| MutateError::InvalidQuantity {
        app: ctx.app_ref.clone(),
        role: ctx.role,
        field: format!("{}.memoryLimit", ctx.role),
        value: raw.to_string(),
        reason,
    };
    match parse_kubernetes(&converted) {
        Err(e) => return Err(invalid(e.to_string())),
        Ok(bytes) if bytes < 0.0 => {
            return Err(invalid("a memory limit cannot be negative".into()));
        }
        Ok(_) => {}
    }
    set_limit(spark_container(ctx, pod)?.resources(), "memory", converted);
    Ok(())
}

/// Role `gpu`: `limits[<gpu.name>] = <gpu.quantity>` on the Spark container (extended
/// resources default their request to the limit). Skipped, as in kubeflow, when the name is
/// empty or the quantity is 0; a negative quantity is an error (kubeflow only logs it).
pub(crate) fn gpu(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let Some(gpu) = ctx.spec.pod.gpu.as_ref() else {
        return Ok(());
    };
    if gpu.quantity < 0 {
        return Err(MutateError::NegativeGpu {
            app: ctx.app_ref.clone(),
            role: ctx.role,
            field: format!("{}.gpu.quantity", ctx.role),
            quantity: gpu.quantity,
        });
    }
    if gpu.name.is_empty() || gpu.quantity == 0 {
        return Ok(());
    }
    set_limit(
        spark_container(ctx, pod)?.resources(),
        &gpu.name,
        gpu.quantity.to_string(),
    );
    Ok(())
}

fn set_limit(resources: &mut Option<ResourceRequirements>, resource: &str, quantity: String) {
    resources
        .get_or_insert_with(Default::default)
        .limits
        .get_or_insert_with(Default::default)
        .insert(resource.to_string(), Quantity(quantity));
}

/// Kubeflow's `ConvertJavaMemoryStringToK8sMemoryString`: a trailing JVM unit (k, kb, m, mb, g,
/// gb, t, tb, p, pb; any case) becomes the binary Kubernetes unit; anything else is returned
/// trimmed, unchanged.
fn java_memory_to_kubernetes(memory: &str) -> String {
    const UNITS: &[(&str, &str)] = &[
        ("kb", "Ki"),
        ("mb", "Mi"),
        ("gb", "Gi"),
        ("tb", "Ti"),
        ("pb", "Pi"),
        ("k", "Ki"),
        ("m", "Mi"),
        ("g", "Gi"),
        ("t", "Ti"),
        ("p", "Pi"),
    ];
    let trimmed = memory.trim();
    let lower = trimmed.to_ascii_lowercase();
    UNITS
        .iter()
        .find_map(|(java, k8s)| lower.strip_suffix(java).map(|n| format!("{n}{k8s}")))
        .unwrap_or_else(|| trimmed.to_string())
}

/// Role `terminationGracePeriodSeconds`: replaces the pod's.
pub(crate) fn termination_grace_period(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
) -> Result<(), MutateError> {
    if let Some(seconds) = ctx.spec.pod.termination_grace_period_seconds {
        *pod.termination_grace_period_seconds() = Some(seconds);
    }
    Ok(())
}

/// Role `shareProcessNamespace`: only `true` is applied (kubeflow ignores `false`).
pub(crate) fn share_process_namespace(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
) -> Result<(), MutateError> {
    if ctx.spec.pod.share_process_namespace == Some(true) {
        *pod.share_process_namespace() = Some(true);
    }
    Ok(())
}

/// `enableServiceLinks`: what the role's pod template says, else `false`. With service links on,
/// every Service of the namespace becomes env vars in every container: thousands of driver
/// Services in one job namespace overflow the exec argument list (the Go operator broke at 6000
/// apps with `argument list too long`). The apiserver defaults the field to `true` before any
/// webhook runs, so the pod cannot tell whether a user chose it; the app's template can.
pub(crate) fn enable_service_links(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
) -> Result<(), MutateError> {
    let chosen = ctx
        .spec
        .pod
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.enable_service_links);
    *pod.enable_service_links() = Some(chosen.unwrap_or(false));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_memory_units() {
        assert_eq!(java_memory_to_kubernetes("512m"), "512Mi");
        assert_eq!(java_memory_to_kubernetes("4G"), "4Gi");
        assert_eq!(java_memory_to_kubernetes("1gb"), "1Gi");
        assert_eq!(java_memory_to_kubernetes(" 2k "), "2Ki");
        assert_eq!(java_memory_to_kubernetes("10Gi"), "10Gi");
        assert_eq!(java_memory_to_kubernetes("1024"), "1024");
    }
}
