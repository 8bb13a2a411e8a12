//! Security contexts, and a `RuntimeDefault` seccomp profile for pods that choose none.

use k8s_openapi::api::core::v1::SeccompProfile;

use super::edit::PodEdit;
use super::util::spark_container;
use super::{Ctx, MutateError};

/// Role `securityContext`: replaces the Spark container's as a whole (kubeflow).
pub(crate) fn container_security_context(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
) -> Result<(), MutateError> {
    if let Some(sc) = &ctx.spec.pod.security_context {
        *spark_container(ctx, pod)?.security_context() = Some(sc.clone());
    }
    Ok(())
}

/// Role `podSecurityContext`: replaces the pod's as a whole (kubeflow).
pub(crate) fn pod_security_context(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
) -> Result<(), MutateError> {
    if let Some(sc) = &ctx.spec.pod.pod_security_context {
        *pod.security_context() = Some(sc.clone());
    }
    Ok(())
}

/// Not in kubeflow: `securityContext.seccompProfile: {type: RuntimeDefault}` on the pod, so
/// Spark pods pass the "restricted" Pod Security Standard and run with the container runtime's
/// syscall filter. Skipped when the option is off, or when a profile is already chosen: at pod
/// level or on the Spark container, by the app (applied by the two rules above) or by the pod.
pub(crate) fn default_seccomp_profile(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
) -> Result<(), MutateError> {
    if !ctx.opts.default_seccomp_profile {
        return Ok(());
    }
    let on_container = spark_container(ctx, pod)?
        .get()
        .security_context
        .as_ref()
        .is_some_and(|sc| sc.seccomp_profile.is_some());
    let on_pod = pod
        .pod()
        .spec
        .as_ref()
        .and_then(|spec| spec.security_context.as_ref())
        .is_some_and(|sc| sc.seccomp_profile.is_some());
    if on_container || on_pod {
        return Ok(());
    }
    let pod_sc = pod.security_context().get_or_insert_with(Default::default);
    pod_sc.seccomp_profile = Some(SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    });
    Ok(())
}
