//! Helpers shared by the rules: idempotent "ensure" operations on pod lists, and the subset
//! comparison that lets an object the API server has already defaulted count as "the same".

use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, Volume, VolumeMount};
use serde::Serialize;
use serde_json::Value;

use super::edit::{PodEdit, SparkContainer};
use super::{Ctx, MutateError};

/// The Spark container (index from [`super::spark_container_index`]), to write. Errors instead
/// of panicking should a rule ever have removed it.
pub(crate) fn spark_container<'e>(
    ctx: &Ctx<'_>,
    pod: &'e mut PodEdit<'_>,
) -> Result<SparkContainer<'e>, MutateError> {
    pod.spark_container()
        .ok_or_else(|| MutateError::NoSparkContainer {
            app: ctx.app_ref.clone(),
            role: ctx.role,
            reason: format!("spec.containers[{}] is gone", ctx.container),
        })
}

/// True when every field set in `wanted` has the same value in `have`. Extra fields in `have`
/// (API-server defaults such as a volume's `defaultMode: 420`) do not matter; lists must match
/// element by element.
pub(crate) fn is_subset(wanted: &Value, have: &Value) -> bool {
    match (wanted, have) {
        (Value::Null, _) => true,
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(key, value)| match h.get(key) {
            Some(existing) => is_subset(value, existing),
            None => value.is_null(),
        }),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| is_subset(a, b))
        }
        _ => wanted == have,
    }
}

/// [`is_subset`] on typed objects; equal ones (the common case: the same volume submitted
/// twice) are known the same without building either as JSON.
pub(crate) fn same_object<T: Serialize + PartialEq>(wanted: &T, have: &T) -> bool {
    if wanted == have {
        return true;
    }
    match (serde_json::to_value(wanted), serde_json::to_value(have)) {
        (Ok(w), Ok(h)) => is_subset(&w, &h),
        _ => false,
    }
}

/// The app field a volume or mount comes from, for the error message: formatted only when
/// there is an error, not on every review.
pub(crate) type FieldName<'a> = &'a dyn Fn() -> String;

/// Adds `volume` to the pod unless a volume of that name is already there. The pod's volume
/// wins when it is the same one (possibly server-defaulted); a different volume of the same
/// name is an error, since the API server would reject the duplicate name anyway.
pub(crate) fn ensure_volume(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
    volume: Volume,
    field: FieldName<'_>,
) -> Result<(), MutateError> {
    let mut volumes = pod.volumes();
    match volumes.iter().find(|v| v.name == volume.name) {
        None => {
            volumes.push(volume);
            Ok(())
        }
        Some(existing) if same_object(&volume, existing) => Ok(()),
        Some(_) => Err(MutateError::VolumeConflict {
            app: ctx.app_ref.clone(),
            role: ctx.role,
            field: field(),
            name: volume.name,
        }),
    }
}

/// Mounts `mount` into the Spark container unless that exact mount is there. Another mount at
/// the same path is an error: two mounts cannot share a mountPath.
pub(crate) fn ensure_mount(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
    mount: VolumeMount,
    field: FieldName<'_>,
) -> Result<(), MutateError> {
    let mut container = spark_container(ctx, pod)?;
    let mut mounts = container.volume_mounts();
    let path = normalize_path(&mount.mount_path);
    match mounts
        .iter()
        .find(|m| normalize_path(&m.mount_path) == path)
    {
        None => {
            mounts.push(mount);
            Ok(())
        }
        Some(existing) if same_object(&mount, existing) => Ok(()),
        Some(existing) => Err(MutateError::DuplicateMountPath {
            app: ctx.app_ref.clone(),
            role: ctx.role,
            field: field(),
            volume: mount.name,
            path: mount.mount_path,
            existing: existing.name.clone(),
        }),
    }
}

/// `/a/b/` and `/a/b` are the same mount point.
fn normalize_path(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" if path.starts_with('/') => "/",
        trimmed => trimmed,
    }
}

/// A plain `name=value` environment variable.
pub(crate) fn env_var(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// Opens `port` on the Spark container unless it is open already. A port of the same name
/// must have the same number and protocol (else error); a port with the same number and
/// protocol under another name counts as open (the pod's name wins).
pub(crate) fn ensure_port(
    ctx: &Ctx<'_>,
    pod: &mut PodEdit<'_>,
    port: ContainerPort,
    field: &str,
) -> Result<(), MutateError> {
    let mut container = spark_container(ctx, pod)?;
    let mut ports = container.ports();
    let wanted = describe_port(&port);
    let name = port.name.as_deref().filter(|n| !n.is_empty());
    if let Some(existing) = name.and_then(|n| ports.iter().find(|p| p.name.as_deref() == Some(n))) {
        let existing = describe_port(existing);
        if existing == wanted {
            return Ok(());
        }
        return Err(MutateError::PortConflict {
            app: ctx.app_ref.clone(),
            role: ctx.role,
            field: field.to_string(),
            name: name.unwrap_or_default().to_string(),
            wanted,
            existing,
        });
    }
    if !ports.iter().any(|p| describe_port(p) == wanted) {
        ports.push(port);
    }
    Ok(())
}

/// `8090/TCP`: number and protocol (empty means TCP, the API default).
pub(crate) fn describe_port(port: &ContainerPort) -> String {
    let protocol = port
        .protocol
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or("TCP");
    format!("{}/{protocol}", port.container_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_defaults() {
        let wanted = json!({"name": "v", "configMap": {"name": "cm"}});
        let have = json!({"name": "v", "configMap": {"name": "cm", "defaultMode": 420}});
        assert!(is_subset(&wanted, &have));
        assert!(!is_subset(&have, &wanted));
        assert!(!is_subset(&json!({"a": [1, 2]}), &json!({"a": [1]})));
    }

    #[test]
    fn paths_normalise() {
        assert_eq!(normalize_path("/a/b/"), "/a/b");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("rel"), "rel");
    }
}
