//! Volumes and mounts of the Spark container: secrets, the Spark and Hadoop configuration
//! ConfigMaps, the role's ConfigMaps, and `spec.volumes` named by the role's `volumeMounts`.
//!
//! Precedence for all of them: a volume or mount the pod already has wins when it is the same
//! (API-server defaults aside); a different volume under the same name, or a second mount at
//! the same path, is an error (kubeflow appends blindly and the API server then rejects the
//! pod with a less helpful message).

use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, SecretVolumeSource, Volume, VolumeMount};

use super::edit::PodEdit;
use super::util::{ensure_mount, ensure_volume, env_var, spark_container};
use super::{Ctx, MutateError};

/// Where `sparkConfigMap` is mounted, and what SPARK_CONF_DIR then points at.
pub(crate) const SPARK_CONF_DIR: &str = "/etc/spark/conf";
/// Where `hadoopConfigMap` is mounted, and what HADOOP_CONF_DIR then points at.
pub(crate) const HADOOP_CONF_DIR: &str = "/etc/hadoop/conf";
const SPARK_CONFIG_MAP_VOLUME: &str = "spark-configmap-volume";
const HADOOP_CONFIG_MAP_VOLUME: &str = "hadoop-configmap-volume";
/// Volumes with this prefix are Spark's scratch space: spark-submit turns them into
/// `spark.kubernetes.*.volumes.*` settings and Spark mounts them itself, so they are not added here.
const SPARK_LOCAL_DIR_PREFIX: &str = "spark-local-dir-";
/// Volume names are DNS labels.
const MAX_NAME_LENGTH: usize = 63;

/// Role `secrets`: each Secret is mounted at its path as volume `<secret>-volume` (Spark's
/// naming, so a pod built by spark-submit already matches). GCPServiceAccount secrets set
/// GOOGLE_APPLICATION_CREDENTIALS=`<path>/key.json`, HadoopDelegationToken secrets set
/// HADOOP_TOKEN_FILE_LOCATION=`<path>/hadoop.token`; those replace the pod's value but lose to
/// the role's `env` (applied later).
pub(crate) fn secrets(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    for (i, secret) in ctx.spec.pod.secrets.iter().enumerate() {
        let field = || format!("{}.secrets[{i}]", ctx.role);
        let volume_name = format!("{}-volume", secret.name);
        let volume = Volume {
            name: volume_name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        };
        ensure_volume(ctx, pod, volume, &field)?;
        ensure_mount(ctx, pod, mount(&volume_name, &secret.path, false), &field)?;
        if let Some((name, file)) = secret.secret_type.env_var() {
            let mut container = spark_container(ctx, pod)?;
            container
                .env()
                .upsert(env_var(name, join_path(&secret.path, file)));
        }
    }
    Ok(())
}

/// `spec.hadoopConfigMap`: mounted read-only at /etc/hadoop/conf; HADOOP_CONF_DIR points there
/// and wins over any other value (kubeflow appends it last).
pub(crate) fn hadoop_config_map(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let Some(name) = ctx.app.spec.hadoop_config_map.as_deref() else {
        return Ok(());
    };
    config_dir(
        ctx,
        pod,
        name,
        HADOOP_CONFIG_MAP_VOLUME,
        HADOOP_CONF_DIR,
        "HADOOP_CONF_DIR",
        "spec.hadoopConfigMap",
    )
}

/// `spec.sparkConfigMap`: mounted read-only at /etc/spark/conf; SPARK_CONF_DIR points there,
/// replacing the /opt/spark/conf Spark sets (kubeflow's appended duplicate wins at runtime).
/// Spark still reads its generated spark.properties through `--properties-file`.
pub(crate) fn spark_config_map(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let Some(name) = ctx.app.spec.spark_config_map.as_deref() else {
        return Ok(());
    };
    config_dir(
        ctx,
        pod,
        name,
        SPARK_CONFIG_MAP_VOLUME,
        SPARK_CONF_DIR,
        "SPARK_CONF_DIR",
        "spec.sparkConfigMap",
    )
}

fn config_dir(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
    config_map: &str,
    volume_name: &str,
    dir: &str,
    env_name: &str,
    field: &str,
) -> Result<(), MutateError> {
    let field = || field.to_string();
    ensure_volume(ctx, pod, config_map_volume(config_map, volume_name), &field)?;
    ensure_mount(ctx, pod, mount(volume_name, dir, true), &field)?;
    spark_container(ctx, pod)?
        .env()
        .upsert(env_var(env_name, dir));
    Ok(())
}

/// Role `configMaps`: each mounted read-only at its path, as volume `<name>-vol` (sanitised and
/// hashed when the ConfigMap name is not a valid volume name, see [`config_map_volume_name`]).
pub(crate) fn role_config_maps(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    for (i, entry) in ctx.spec.pod.config_maps.iter().enumerate() {
        let field = || format!("{}.configMaps[{i}]", ctx.role);
        let volume_name = config_map_volume_name(&entry.name);
        ensure_volume(
            ctx,
            pod,
            config_map_volume(&entry.name, &volume_name),
            &field,
        )?;
        ensure_mount(ctx, pod, mount(&volume_name, &entry.path, true), &field)?;
    }
    Ok(())
}

/// The role's `volumeMounts`: each must name a volume in `spec.volumes` (an error otherwise;
/// kubeflow silently drops it); that volume is added once and the mount is added as written.
/// `spark-local-dir-*` mounts are validated but left to Spark, as in kubeflow.
pub(crate) fn app_volumes(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let volumes = &ctx.app.spec.volumes;
    let mounts = &ctx.spec.pod.volume_mounts;
    for (i, m) in mounts.iter().enumerate() {
        let field = || format!("{}.volumeMounts[{i}]", ctx.role);
        let Some((j, volume)) = volumes.iter().enumerate().find(|(_, v)| v.name == m.name) else {
            return Err(MutateError::UnknownVolume {
                app: ctx.app_ref.clone(),
                role: ctx.role,
                field: field(),
                volume: m.name.clone(),
            });
        };
        if m.name.starts_with(SPARK_LOCAL_DIR_PREFIX) {
            continue;
        }
        ensure_volume(ctx, pod, volume.clone(), &|| format!("spec.volumes[{j}]"))?;
        ensure_mount(ctx, pod, m.clone(), &field)?;
    }
    Ok(())
}

/// The most volumes the rules can add to a pod of `ctx`'s role: secrets, config maps, the
/// role's `volumeMounts`, the Prometheus configuration. Volumes are large structs (every
/// volume source inline), moved whole each time their list grows: it grows once, by this.
pub(crate) fn most_added(ctx: &Ctx<'_>) -> usize {
    let pod = ctx.spec.pod;
    let spec = &ctx.app.spec;
    pod.secrets.len()
        + pod.config_maps.len()
        + pod.volume_mounts.len()
        + usize::from(spec.hadoop_config_map.is_some())
        + usize::from(spec.spark_config_map.is_some())
        + usize::from(spec.monitoring.is_some())
}

/// A ConfigMap volume.
pub(crate) fn config_map_volume(config_map: &str, volume_name: &str) -> Volume {
    Volume {
        name: volume_name.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_string(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A mount of `volume` at `path`.
pub(crate) fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// Volume name of a role ConfigMap: `<name>-vol` when that is a valid volume name (no dots, at
/// most 63 characters); otherwise dots become dashes and an 8-hex-digit SHA-256 of the
/// ConfigMap name is added, truncating to fit, so distinct ConfigMaps keep distinct volumes
/// (same names as kubeflow).
pub(crate) fn config_map_volume_name(config_map: &str) -> String {
    const SUFFIX: &str = "-vol";
    let preferred = format!("{config_map}{SUFFIX}");
    if preferred.len() <= MAX_NAME_LENGTH && !preferred.contains('.') {
        return preferred;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, config_map.as_bytes());
    let hash: String = digest
        .as_ref()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let hashed_suffix = format!("-{hash}{SUFFIX}");
    let max_prefix = MAX_NAME_LENGTH - hashed_suffix.len();
    let sanitized: String = config_map
        .chars()
        .map(|c| if c == '.' { '-' } else { c })
        .take(max_prefix)
        .collect();
    format!("{}{hashed_suffix}", sanitized.trim_end_matches('-'))
}

/// `dir/file`, like Go's `filepath.Join` for the paths users write (trailing slashes dropped).
fn join_path(dir: &str, file: &str) -> String {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() && !dir.starts_with('/') {
        file.to_string()
    } else {
        format!("{trimmed}/{file}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_volume_names_match_kubeflow() {
        assert_eq!(config_map_volume_name("configmap1"), "configmap1-vol");
        assert_eq!(
            config_map_volume_name("spark.application.conf"),
            "spark-application-conf-faf58873-vol"
        );
        assert_eq!(
            config_map_volume_name(
                "generated-config-name-generated-config-name-generated-config-name"
            ),
            "generated-config-name-generated-config-name-genera-d0f2ef0c-vol"
        );
        assert_ne!(config_map_volume_name("a.b"), config_map_volume_name("a-b"));
    }

    #[test]
    fn join_path_like_go() {
        assert_eq!(
            join_path("/mnt/secrets", "key.json"),
            "/mnt/secrets/key.json"
        );
        assert_eq!(
            join_path("/mnt/secrets/", "key.json"),
            "/mnt/secrets/key.json"
        );
        assert_eq!(join_path("/", "key.json"), "/key.json");
        assert_eq!(join_path("", "key.json"), "key.json");
    }
}
