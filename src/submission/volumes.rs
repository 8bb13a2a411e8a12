//! The driver pod's volumes as Spark's feature steps derive them from the configuration:
//! `MountSecretsFeatureStep`, `EnvSecretsFeatureStep`, `MountVolumesFeatureStep` and
//! `LocalDirsFeatureStep`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource, NFSVolumeSource,
    PersistentVolumeClaimVolumeSource, PodSpec, SecretKeySelector, SecretVolumeSource, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::conf::{Conf, invalid};
use super::ctx::Ctx;
use super::error::SubmissionError;
use super::keys::*;

const LOCAL_DIR_VOLUME_PREFIX: &str = "spark-local-dir-";

/// `spark.kubernetes.driver.secrets.<secret>=<path>`: Secret `<secret>` mounted at `<path>` as
/// volume `<secret>-volume`.
pub(crate) fn secrets(conf: &Conf, spec: &mut PodSpec, container: &mut Container) {
    for (secret, path) in conf.prefixed(DRIVER_SECRETS_PREFIX) {
        let name = format!("{secret}-volume");
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_string()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts(container).push(VolumeMount {
            name,
            mount_path: path.to_string(),
            ..VolumeMount::default()
        });
    }
}

/// `spark.kubernetes.driver.secretKeyRef.<VAR>=<secret>:<key>`: environment variables read from
/// Secret keys.
pub(crate) fn env_secrets(
    ctx: &Ctx<'_>,
    conf: &Conf,
    container: &mut Container,
) -> Result<(), SubmissionError> {
    for (var, reference) in conf.prefixed(DRIVER_SECRET_KEY_REF_PREFIX) {
        let Some((secret, key)) = reference.split_once(':') else {
            return Err(invalid(
                ctx,
                &format!("{DRIVER_SECRET_KEY_REF_PREFIX}{var}"),
                reference,
                "must be <secret name>:<key>",
            ));
        };
        container.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: var.to_string(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.to_string(),
                    key: key.to_string(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    Ok(())
}

/// `spark.kubernetes.driver.volumes.<type>.<name>.{mount.path,mount.subPath,mount.readOnly,
/// options.*}`: hostPath, emptyDir, nfs and persistentVolumeClaim volumes. kubeflow uses these
/// for `spark-local-dir-*` volumes; users may set others in sparkConf directly.
pub(crate) fn mount_volumes(
    ctx: &Ctx<'_>,
    conf: &Conf,
    spec: &mut PodSpec,
    container: &mut Container,
) -> Result<(), SubmissionError> {
    // (type, name) -> setting -> value
    let mut parsed: BTreeMap<(&str, &str), BTreeMap<&str, &str>> = BTreeMap::new();
    for (rest, value) in conf.prefixed(DRIVER_VOLUMES_PREFIX) {
        let bad = || {
            invalid(
                ctx,
                &format!("{DRIVER_VOLUMES_PREFIX}{rest}"),
                value,
                "is not spark.kubernetes.driver.volumes.<type>.<name>.<mount.*|options.*>",
            )
        };
        let (kind, rest) = rest.split_once('.').ok_or_else(bad)?;
        let (name, setting) = rest.split_once('.').ok_or_else(bad)?;
        parsed
            .entry((kind, name))
            .or_default()
            .insert(setting, value);
    }
    let mut paths = BTreeSet::new();
    for ((kind, name), settings) in parsed {
        let key = |setting: &str| format!("{DRIVER_VOLUMES_PREFIX}{kind}.{name}.{setting}");
        let required = |setting: &str| {
            settings
                .get(setting)
                .map(|s| s.to_string())
                .ok_or_else(|| invalid(ctx, &key(setting), "", "is required for this volume"))
        };
        let read_only = settings.get("mount.readOnly").is_some_and(|v| *v == "true");
        let mount_path = required("mount.path")?;
        if !paths.insert(mount_path.clone()) {
            return Err(invalid(
                ctx,
                &key("mount.path"),
                &mount_path,
                "is used by another spark.kubernetes.driver.volumes entry",
            ));
        }
        let mut volume = Volume {
            name: name.to_string(),
            ..Volume::default()
        };
        match kind {
            "hostPath" => {
                volume.host_path = Some(HostPathVolumeSource {
                    path: required("options.path")?,
                    type_: settings.get("options.type").map(|s| s.to_string()),
                });
            }
            "emptyDir" => {
                volume.empty_dir = Some(EmptyDirVolumeSource {
                    medium: settings.get("options.medium").map(|s| s.to_string()),
                    size_limit: settings
                        .get("options.sizeLimit")
                        .map(|s| Quantity(s.to_string())),
                });
            }
            "nfs" => {
                volume.nfs = Some(NFSVolumeSource {
                    path: required("options.path")?,
                    server: required("options.server")?,
                    read_only: None,
                });
            }
            "persistentVolumeClaim" => {
                let claim = required("options.claimName")?;
                if claim.contains("OnDemand")
                    || (settings.contains_key("options.storageClass")
                        && settings.contains_key("options.sizeLimit"))
                {
                    return Err(invalid(
                        ctx,
                        &key("options.claimName"),
                        &claim,
                        "native submission does not create PersistentVolumeClaims for the \
                         driver: name an existing claim",
                    ));
                }
                volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim,
                    read_only: read_only.then_some(true),
                });
            }
            other => {
                return Err(invalid(
                    ctx,
                    &key("mount.path"),
                    other,
                    "is not a supported volume type (hostPath, emptyDir, nfs, persistentVolumeClaim)",
                ));
            }
        }
        spec.volumes.get_or_insert_with(Vec::new).push(volume);
        mounts(container).push(VolumeMount {
            name: name.to_string(),
            mount_path,
            read_only: read_only.then_some(true),
            sub_path: settings
                .get("mount.subPath")
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string()),
            ..VolumeMount::default()
        });
    }
    Ok(())
}

/// Scratch space: the container's `spark-local-dir-*` mounts if it has any (from a template or
/// the volume settings), else one emptyDir `spark-local-dir-<i>` per `spark.local.dir` entry, or
/// a single one at `default_dir`. `SPARK_LOCAL_DIRS` lists them.
pub(crate) fn local_dirs(
    conf: &Conf,
    default_dir: &str,
    spec: &mut PodSpec,
    container: &mut Container,
) {
    let mut dirs: Vec<String> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name.starts_with(LOCAL_DIR_VOLUME_PREFIX))
        .map(|m| m.mount_path.clone())
        .collect();
    if dirs.is_empty() {
        dirs = match conf.get(LOCAL_DIR).filter(|d| !d.is_empty()) {
            Some(list) => list.split(',').map(str::to_string).collect(),
            None => vec![default_dir.to_string()],
        };
        let tmpfs = conf.get(LOCAL_DIRS_TMPFS).is_some_and(|v| v == "true");
        for (i, dir) in dirs.iter().enumerate() {
            let name = format!("{LOCAL_DIR_VOLUME_PREFIX}{}", i + 1);
            spec.volumes.get_or_insert_with(Vec::new).push(Volume {
                name: name.clone(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: tmpfs.then(|| "Memory".to_string()),
                    size_limit: None,
                }),
                ..Volume::default()
            });
            mounts(container).push(VolumeMount {
                name,
                mount_path: dir.clone(),
                ..VolumeMount::default()
            });
        }
    }
    container.env.get_or_insert_with(Vec::new).push(EnvVar {
        name: "SPARK_LOCAL_DIRS".into(),
        value: Some(dirs.join(",")),
        value_from: None,
    });
}

fn mounts(container: &mut Container) -> &mut Vec<VolumeMount> {
    container.volume_mounts.get_or_insert_with(Vec::new)
}
