//! Environment of the Spark container.
//!
//! Runtime precedence (the last definition of a name wins in the kubelet) is kept, without the
//! duplicates kubeflow leaves behind: `envVars` < `envSecretKeyRefs` < secret-type variables
//! (volumes) < `env` < SPARK_CONF_DIR / HADOOP_CONF_DIR of the config maps (volumes). In
//! kubeflow the first three reach the pod through spark-submit and `env` is appended by the
//! webhook after Spark's own variables, so the same values win there too.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

use super::edit::PodEdit;
use super::util::{env_var, same_object, spark_container};
use super::{Ctx, MutateError};

/// Deprecated `envVars` (name → value): set on the Spark container, replacing the pod's value.
pub(crate) fn env_vars(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let vars = &ctx.spec.pod.env_vars;
    if vars.is_empty() {
        return Ok(());
    }
    let mut container = spark_container(ctx, pod)?;
    let mut env = container.env();
    for (name, value) in vars {
        env.upsert(env_var(name, value.as_str()));
    }
    Ok(())
}

/// Deprecated `envSecretKeyRefs` (name → secret/key): variables read from Secret keys,
/// replacing the pod's value.
pub(crate) fn env_secret_key_refs(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let refs = &ctx.spec.pod.env_secret_key_refs;
    if refs.is_empty() {
        return Ok(());
    }
    let mut container = spark_container(ctx, pod)?;
    let mut env = container.env();
    for (name, secret) in refs {
        let var = EnvVar {
            name: name.clone(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        };
        env.upsert(var);
    }
    Ok(())
}

/// `env` (core/v1 EnvVar list): each replaces the pod's variable of the same name, in place
/// (kubeflow appends, and its later duplicate wins at runtime).
pub(crate) fn env(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let vars = &ctx.spec.pod.env;
    if vars.is_empty() {
        return Ok(());
    }
    let mut container = spark_container(ctx, pod)?;
    let mut env = container.env();
    for var in vars {
        env.upsert(var.clone());
    }
    Ok(())
}

/// `envFrom`: appended (as kubeflow does) unless the container already has that source.
pub(crate) fn env_from(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let sources = &ctx.spec.pod.env_from;
    if sources.is_empty() {
        return Ok(());
    }
    let mut container = spark_container(ctx, pod)?;
    let mut list = container.env_from();
    for source in sources {
        if !list.iter().any(|have| same_object(source, have)) {
            list.push(source.clone());
        }
    }
    Ok(())
}
