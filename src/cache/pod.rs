//! The Spark pods the reconciler watches, caches and reads, as small as what it reads of them.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// A Spark pod as the reconciler keeps it: exactly what the state machine, the orphan sweep and
/// the metrics read (metadata without managedFields, container names, phase, reason, message and
/// the terminated state of each container), read straight from the apiserver's Pod JSON, whose
/// other fields are skipped as they are parsed.
///
/// It exists for the memory per cached pod: every Spark pod of every app sits in the pod cache
/// until it is deleted, and k8s-openapi's `Pod` (its `PodSpec`, `Container`, `PodStatus`,
/// `ContainerStatus`) keeps every optional field inline however few are set: a `Pod` slimmed
/// to these fields still took ~9 KiB for a running driver (2176 bytes inline, 2120 per
/// container, 752 per container status), this type takes ~2.8 KiB (480 inline), most of it
/// the metadata's labels. Code that needs more of a pod must GET the full `Pod`.
///
/// Absent and null fields read as empty, as k8s-openapi reads them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SparkPod {
    /// Without managedFields, which nothing reads and which are often most of a pod's metadata.
    #[serde(default, deserialize_with = "metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "or_default")]
    pub spec: Spec,
    #[serde(default, deserialize_with = "or_default")]
    pub status: Status,
}

/// Of `spec`: the containers, for the Spark container's name.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Spec {
    #[serde(default, deserialize_with = "or_default")]
    pub containers: Vec<Container>,
}

/// Of a container in `spec.containers`: its name.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Container {
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
}

/// Of `status`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "or_default")]
    pub container_statuses: Vec<ContainerStatus>,
}

/// Of an entry of `status.containerStatuses`: the container's name and whether it terminated.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    #[serde(default, deserialize_with = "or_default")]
    pub state: ContainerState,
}

/// Of `state`: only `terminated` (running and waiting are not read).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ContainerState {
    #[serde(default)]
    pub terminated: Option<Terminated>,
}

/// Of `state.terminated`: the exit code and reason that decide the driver's outcome.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    #[serde(default, deserialize_with = "or_default")]
    pub exit_code: i32,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Null reads as the default, as an absent field does (`#[serde(default)]`).
fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The metadata without managedFields.
fn metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let mut meta: ObjectMeta = or_default(d)?;
    meta.managed_fields = None;
    Ok(meta)
}

// The Pod resource (core/v1, namespaced), as the pod watch, the pod cache and the driver's GET
// need it.
super::resource_as!(SparkPod, Pod);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kube::{Resource, ResourceExt};
    use serde_json::json;

    const DRIVER: &str = include_str!("../../tests/fixtures/spark-submit-3.3.4/driver-pod.json");

    /// spark-submit's driver pod as the apiserver returns it once the driver has failed: with
    /// managedFields, an owner, a status with a terminated Spark container and a running sidecar.
    pub(crate) fn failed_driver() -> serde_json::Value {
        let mut pod: serde_json::Value = serde_json::from_str(DRIVER).unwrap();
        pod["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Update",
            "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]);
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "sparkoperator.k8s.io/v1beta2",
            "kind": "SparkApplication", "name": "spark-pi", "uid": "u1", "controller": true}]);
        pod["status"] = json!({
            "phase": "Running", "qosClass": "Burstable", "hostIP": "10.0.0.1", "podIP": null,
            "conditions": [{"type": "Ready", "status": "False"}],
            "startTime": "2026-11-22T15:20:41Z",
            "containerStatuses": [
                {"name": "sidecar", "ready": true, "restartCount": 0, "image": "busybox",
                 "imageID": "", "started": true,
                 "state": {"running": {"startedAt": "2026-11-22T15:20:45Z"}}},
                {"name": "spark-kubernetes-driver", "ready": false, "restartCount": 0,
                 "image": "spark:3.3.4", "imageID": "docker://sha256:0", "containerID": "docker://1",
                 "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                     "startedAt": "2026-11-22T15:20:45Z", "finishedAt": "2026-11-22T15:21:45Z",
                     "containerID": "docker://1"}},
                 "lastState": {}},
            ],
        });
        pod
    }

    #[test]
    fn reads_a_real_driver_pod_and_keeps_what_the_reconciler_reads() {
        let json = failed_driver();
        let pod: SparkPod = serde_json::from_value(json.clone()).unwrap();
        let full: Pod = serde_json::from_value(json).unwrap();

        let mut meta = full.metadata.clone();
        assert!(meta.managed_fields.is_some());
        meta.managed_fields = None;
        assert_eq!(pod.metadata, meta, "the metadata but managedFields");
        let names: Vec<&str> = pod
            .spec
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["spark-kubernetes-driver"]);
        assert_eq!(pod.status.phase.as_deref(), Some("Running"));
        assert_eq!(
            (pod.status.reason.as_ref(), pod.status.message.as_ref()),
            (None, None)
        );
        let spark = &pod.status.container_statuses[1];
        assert_eq!(spark.name, "spark-kubernetes-driver");
        let terminated = spark.state.terminated.as_ref().expect("terminated");
        assert_eq!(
            (terminated.exit_code, terminated.reason.as_deref()),
            (137, Some("OOMKilled"))
        );
        assert_eq!(pod.status.container_statuses[0].state.terminated, None);
        // What the watch, the cache and the orphan sweep key on.
        assert_eq!(pod.namespace().as_deref(), Some("default"));
        assert_eq!(pod.name_any(), "spark-pi-driver3");
        assert_eq!(pod.owner_references()[0].uid, "u1");
        assert_eq!(
            pod.labels()
                .get(crate::labels::APP_NAME_LABEL)
                .map(String::as_str),
            Some("spark-pi")
        );
        assert_eq!(SparkPod::api_version(&()), "v1");
        assert_eq!(SparkPod::plural(&()), "pods");
        assert_eq!(SparkPod::kind(&()), "Pod");
    }

    #[test]
    fn null_and_absent_fields_read_as_empty() {
        let pod: SparkPod = serde_json::from_value(json!({
            "metadata": {"name": "p", "managedFields": null},
            "spec": {"containers": null},
            "status": {"phase": null, "containerStatuses": [{"name": "c", "state": null}]}
        }))
        .unwrap();
        assert_eq!(pod.name_any(), "p");
        assert!(pod.spec.containers.is_empty());
        assert_eq!(pod.status.phase, None);
        assert_eq!(pod.status.container_statuses[0].state.terminated, None);
        let empty: SparkPod =
            serde_json::from_value(json!({"spec": null, "status": null})).unwrap();
        assert_eq!(empty, SparkPod::default());
    }

    /// Every Spark pod stays cached while it exists: keep the type small (k8s-openapi's `Pod`,
    /// even slimmed, is several KiB).
    #[test]
    fn a_cached_pod_stays_small() {
        let size = std::mem::size_of::<SparkPod>();
        assert!(size <= 512, "SparkPod is {size} bytes");
    }
}
