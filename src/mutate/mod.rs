//! Mutation of Spark driver and executor pods from their SparkApplication.
//!
//! Native submission applies [`mutate_pod`] to the pods it builds; the webhook applies
//! [`patch_pod`] to the pods it is given, which runs the same rules on the pod and answers with
//! the JSON patch of the fields they wrote ([`edit`] keeps each one's original on its first
//! write, [`patch`] compares only those). The rules, in this fixed order (one module per
//! concern, one place per rule):
//!
//! 1. Owner reference: the driver is owned by its SparkApplication ([`owner`]).
//! 2. Labels, then annotations ([`metadata`]).
//! 3. `envVars`, then `envSecretKeyRefs` ([`env`]).
//! 4. Secrets: volumes, mounts, GOOGLE_APPLICATION_CREDENTIALS / HADOOP_TOKEN_FILE_LOCATION
//!    ([`volumes`]).
//! 5. `env`, then `envFrom` ([`env`]).
//! 6. `hadoopConfigMap`, `sparkConfigMap`, role `configMaps`, then the `spec.volumes` named by
//!    the role's `volumeMounts` ([`volumes`]).
//! 7. Ports ([`containers`]).
//! 8. hostNetwork, hostAliases ([`scheduling`]).
//! 9. initContainers, sidecars ([`containers`]).
//! 10. dnsConfig, priorityClassName, schedulerName, nodeSelector, affinity, tolerations
//!     ([`scheduling`]).
//! 11. memoryLimit, GPU ([`containers`]).
//! 12. Prometheus JMX exporter: ConfigMap volume, port, scrape annotations ([`monitoring`]).
//! 13. Container securityContext, pod securityContext, default seccomp profile ([`security`]).
//! 14. terminationGracePeriodSeconds ([`containers`]).
//! 15. Role lifecycle, or the executor decommission preStop hook ([`lifecycle`]).
//! 16. shareProcessNamespace ([`containers`]).
//! 17. enableServiceLinks: the role template's choice, else `false` ([`containers`]).
//!
//! This is kubeflow's order (its webhook defaulter), with the settings kubeflow hands to
//! spark-submit as `--conf` (labels, annotations, envVars, envSecretKeyRefs, secrets, the
//! app-level nodeSelector) placed where Spark would have put them: before everything kubeflow's
//! webhook appends, so the same values win. Every rule is idempotent: running the rules on
//! their own output changes nothing.
//!
//! Deliberate deviations from kubeflow are listed in `DEVIATIONS.md` beside this file.

mod containers;
mod edit;
mod env;
mod error;
mod lifecycle;
mod metadata;
mod monitoring;
mod owner;
mod parts;
mod patch;
mod scheduling;
mod security;
mod util;
mod volumes;

use k8s_openapi::api::core::v1::{Container, Lifecycle, Pod};

use crate::crd::{Port, SparkApplication, SparkPodSpec};
use crate::labels::SparkRole;

pub use error::MutateError;
pub use parts::PodParts;
pub use patch::PodPatch;

/// Knobs of the rules that go beyond kubeflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MutationOptions {
    /// Give pods a `RuntimeDefault` seccomp profile unless the app or the pod chose one.
    pub default_seccomp_profile: bool,
    /// Give executors without any lifecycle a preStop hook running Spark's `/opt/decom.sh`.
    pub executor_prestop_decommission: bool,
}

impl Default for MutationOptions {
    fn default() -> Self {
        Self {
            default_seccomp_profile: true,
            executor_prestop_decommission: true,
        }
    }
}

/// Index of the Spark container in `pod.spec.containers`:
/// 1. the container named by sparkConf `spark.kubernetes.{role}.podTemplateContainerName`, if
///    the pod has it;
/// 2. else `spark-kubernetes-driver` (drivers) or `spark-kubernetes-executor` / `executor`
///    (executors, Spark 3 and 2 names), the first container in pod order with such a name;
/// 3. else the first container that is not one of the app's sidecars for the role.
///
/// In 1 and 2 a container named like one of the role's sidecars only counts when no other
/// container qualifies: after a first pass appended that sidecar, a second pass must still find
/// the same Spark container (mutation is idempotent). Kubeflow falls back to container 0 even
/// when it is a declared sidecar; we skip sidecars for the same reason.
pub fn spark_container_index(
    pod: &Pod,
    app: &SparkApplication,
    role: SparkRole,
) -> Result<usize, MutateError> {
    let containers: &[Container] = pod.spec.as_ref().map_or(&[], |s| &s.containers);
    spark_container_position(containers.iter().map(|c| c.name.as_str()), app, role)
}

/// [`spark_container_index`] from the names of `spec.containers` alone, in pod order: the
/// reconciler's cached pods keep no more of their containers.
pub fn spark_container_position<'a, I>(
    names: I,
    app: &SparkApplication,
    role: SparkRole,
) -> Result<usize, MutateError>
where
    I: Iterator<Item = &'a str> + Clone,
{
    let sidecars = &role_spec(app, role).pod.sidecars;
    let is_sidecar = |c: &str| sidecars.iter().any(|s| s.name == c);
    let template_key = format!("spark.kubernetes.{role}.podTemplateContainerName");
    let template_name = app
        .spec
        .spark_conf
        .get(&template_key)
        .filter(|name| !name.is_empty());
    let defaults: &[&str] = match role {
        SparkRole::Driver => &["spark-kubernetes-driver"],
        SparkRole::Executor => &["spark-kubernetes-executor", "executor"],
    };
    // By name: the template's, else Spark's defaults. A container that carries the name of one
    // of the app's sidecars only counts when nothing else can be the Spark container: it is
    // (most likely) the sidecar, appended by an earlier pass, and taking it would make a second
    // pass mutate another container than the first.
    let by_template = |c: &str| template_name.is_some_and(|name| name == c);
    let by_default = |c: &str| defaults.contains(&c);
    let first = |pick: &dyn Fn(&str) -> bool| names.clone().position(pick);
    first(&|c| by_template(c) && !is_sidecar(c))
        .or_else(|| first(&|c| by_default(c) && !is_sidecar(c)))
        .or_else(|| first(&|c| !is_sidecar(c)))
        .or_else(|| first(&by_template))
        .or_else(|| first(&by_default))
        .ok_or_else(|| MutateError::NoSparkContainer {
            app: app_ref(app),
            role,
            reason: if names.clone().next().is_none() {
                "spec.containers is empty".to_string()
            } else {
                format!(
                    "every container in spec.containers is one of {role}.sidecars and none is named \
                     {} or by sparkConf {template_key}",
                    defaults.join(" / ")
                )
            },
        })
}

/// Applies every rule (see the module doc for the order) to `pod`. On error `pod` may be
/// partly mutated; callers deny the pod.
pub fn mutate_pod(
    app: &SparkApplication,
    role: SparkRole,
    pod: &mut Pod,
    opts: &MutationOptions,
) -> Result<(), MutateError> {
    run_rules(app, role, pod, opts).map(drop)
}

/// The rules on `pod`: the originals of the fields they wrote, and the Spark container's index.
fn run_rules(
    app: &SparkApplication,
    role: SparkRole,
    pod: &mut Pod,
    opts: &MutationOptions,
) -> Result<(edit::Saved, usize), MutateError> {
    let ctx = Ctx {
        app,
        app_ref: app_ref(app),
        role,
        spec: role_spec(app, role),
        opts,
        container: spark_container_index(pod, app, role)?,
    };
    let mut edit = edit::PodEdit::new(pod, ctx.container, volumes::most_added(&ctx));
    RULES.iter().try_for_each(|rule| rule(&ctx, &mut edit))?;
    let (saved, _, container) = edit.finish();
    Ok((saved, container))
}

/// The JSON Patch that turns `pod_json` into the mutated pod (see [`patch_pod`]).
///
/// A pod without `metadata` is refused: the patch's metadata operations could not apply to it.
pub fn pod_patch(
    app: &SparkApplication,
    role: SparkRole,
    pod_json: &serde_json::Value,
    opts: &MutationOptions,
) -> Result<json_patch::Patch, MutateError> {
    let invalid = |reason: String| MutateError::InvalidPod {
        app: app_ref(app),
        role,
        reason,
    };
    let mut pod =
        <Pod as serde::Deserialize>::deserialize(pod_json).map_err(|e| invalid(e.to_string()))?;
    if !pod_json
        .get("metadata")
        .is_some_and(serde_json::Value::is_object)
    {
        return Err(invalid(
            "it has no metadata, so the patch does not apply to it".to_string(),
        ));
    }
    patch_pod(app, role, &mut pod, opts)?
        .to_json_patch()
        .map_err(|e| serialize_error(app, role, e))
}

/// Mutates `pod` and returns the JSON Patch that turns the pod as it was into the pod as it
/// is now; empty when nothing changed.
///
/// The patch holds the fields the rules wrote and nothing else, so fields unknown to
/// k8s-openapi never show up in it, and every operation applies to the raw pod the typed one
/// was read from (the typed pod is a projection of it, and may hold no more than the parts
/// the rules read: see [`PodParts`]).
pub fn patch_pod(
    app: &SparkApplication,
    role: SparkRole,
    pod: &mut Pod,
    opts: &MutationOptions,
) -> Result<PodPatch, MutateError> {
    let (saved, container) = run_rules(app, role, pod, opts)?;
    patch::from_saved(&saved, pod, container).map_err(|e| serialize_error(app, role, e))
}

fn serialize_error(app: &SparkApplication, role: SparkRole, e: serde_json::Error) -> MutateError {
    MutateError::Serialize {
        app: app_ref(app),
        role,
        reason: e.to_string(),
    }
}

/// One rule: reads the app through `Ctx`, changes the pod.
type Rule = fn(&Ctx<'_>, &mut edit::PodEdit<'_>) -> Result<(), MutateError>;

/// Every rule, in application order (documented in the module doc).
const RULES: &[Rule] = &[
    owner::owner_reference,
    metadata::labels,
    metadata::annotations,
    env::env_vars,
    env::env_secret_key_refs,
    volumes::secrets,
    env::env,
    env::env_from,
    volumes::hadoop_config_map,
    volumes::spark_config_map,
    volumes::role_config_maps,
    volumes::app_volumes,
    containers::ports,
    scheduling::host_network,
    scheduling::host_aliases,
    containers::init_containers,
    containers::sidecars,
    scheduling::dns_config,
    scheduling::priority_class_name,
    scheduling::scheduler_name,
    scheduling::node_selector,
    scheduling::affinity,
    scheduling::tolerations,
    containers::memory_limit,
    containers::gpu,
    monitoring::prometheus,
    security::container_security_context,
    security::pod_security_context,
    security::default_seccomp_profile,
    containers::termination_grace_period,
    lifecycle::lifecycle,
    containers::share_process_namespace,
    containers::enable_service_links,
];

/// What every rule needs: the app, the role's part of it, and where the Spark container is.
pub(crate) struct Ctx<'a> {
    pub app: &'a SparkApplication,
    /// `namespace/name`, for error messages.
    pub app_ref: String,
    pub role: SparkRole,
    pub spec: RoleSpec<'a>,
    pub opts: &'a MutationOptions,
    /// Index of the Spark container (see [`spark_container_index`]); sidecars are appended
    /// after it, so it stays valid.
    pub container: usize,
}

/// The driver's or executor's settings, seen through one shape.
pub(crate) struct RoleSpec<'a> {
    pub pod: &'a SparkPodSpec,
    pub lifecycle: Option<&'a Lifecycle>,
    pub ports: &'a [Port],
    pub priority_class_name: Option<&'a str>,
}

fn role_spec(app: &SparkApplication, role: SparkRole) -> RoleSpec<'_> {
    match role {
        SparkRole::Driver => {
            let d = &app.spec.driver;
            RoleSpec {
                pod: &d.pod,
                lifecycle: d.lifecycle.as_ref(),
                ports: &d.ports,
                priority_class_name: d.priority_class_name.as_deref(),
            }
        }
        SparkRole::Executor => {
            let e = &app.spec.executor;
            RoleSpec {
                pod: &e.pod,
                lifecycle: e.lifecycle.as_ref(),
                ports: &e.ports,
                priority_class_name: e.priority_class_name.as_deref(),
            }
        }
    }
}

/// `namespace/name` of the app (just `name` when it has no namespace).
fn app_ref(app: &SparkApplication) -> String {
    let name = app.metadata.name.as_deref().unwrap_or("");
    match app.metadata.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}
