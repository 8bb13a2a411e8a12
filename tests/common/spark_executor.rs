//! An executor pod built from a pod template the way Spark 3.3's driver builds it
//! (`KubernetesExecutorBuilder` with `spark.kubernetes.executor.podTemplateFile`): the
//! template's Spark container and pod, then `BasicExecutorFeatureStep` (name, labels, image, env,
//! port, resources, restart policy, node selector) and `LocalDirsFeatureStep` (an emptyDir local
//! dir). Only what those steps add or override is modelled: it is what decides whether the
//! template's mutations survive.
#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector, Pod,
    ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Builds executor `exec_id` from `template` and the driver's `spark.properties` (`conf`).
pub fn from_template(template: &Pod, conf: &BTreeMap<String, String>, exec_id: u32) -> Pod {
    let mut pod = template.clone();
    let app_id = conf.get("spark.app.id").cloned().unwrap_or_default();
    let wanted = conf
        .get("spark.kubernetes.executor.podTemplateContainerName")
        .cloned()
        .unwrap_or_default();

    // Metadata: Spark's labels over the template's, plus spark.kubernetes.executor.label.*.
    pod.metadata.name = Some(format!("spark-pi-exec-{exec_id}"));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (key, value) in conf {
        if let Some(label) = key.strip_prefix("spark.kubernetes.executor.label.") {
            labels.insert(label.to_string(), value.clone());
        }
    }
    labels.insert("spark-app-selector".into(), app_id.clone());
    labels.insert("spark-exec-id".into(), exec_id.to_string());
    labels.insert("spark-role".into(), "executor".into());
    labels.insert("spark-exec-resourceprofile-id".into(), "0".into());

    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(format!("spark-pi-exec-{exec_id}"));
    spec.restart_policy = Some("Never".into());
    let selector = spec.node_selector.get_or_insert_with(BTreeMap::new);
    for (key, value) in conf {
        if let Some(k) = key.strip_prefix("spark.kubernetes.node.selector.") {
            selector.insert(k.to_string(), value.clone());
        }
        if let Some(k) = key.strip_prefix("spark.kubernetes.executor.node.selector.") {
            selector.insert(k.to_string(), value.clone());
        }
    }
    let local_dir = "/var/data/spark-local-dir-exec";
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: "spark-local-dir-1".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    });

    // The Spark container: the named one, else the first.
    let index = spec
        .containers
        .iter()
        .position(|c| c.name == wanted)
        .unwrap_or(0);
    let c = &mut spec.containers[index];
    if c.name.is_empty() {
        c.name = "spark-kubernetes-executor".into();
    }
    c.image = conf.get("spark.kubernetes.container.image").cloned();
    c.image_pull_policy = Some("IfNotPresent".into());
    c.args = Some(vec!["executor".into()]);
    let env = c.env.get_or_insert_with(Vec::new);
    for (name, value) in [
        ("SPARK_USER", "root".to_string()),
        (
            "SPARK_DRIVER_URL",
            "spark://CoarseGrainedScheduler@driver-svc:7078".to_string(),
        ),
        ("SPARK_EXECUTOR_CORES", "1".to_string()),
        ("SPARK_EXECUTOR_MEMORY", "512m".to_string()),
        ("SPARK_APPLICATION_ID", app_id),
        ("SPARK_CONF_DIR", "/opt/spark/conf".to_string()),
        ("SPARK_EXECUTOR_ID", exec_id.to_string()),
        ("SPARK_RESOURCE_PROFILE_ID", "0".to_string()),
        ("SPARK_LOCAL_DIRS", local_dir.to_string()),
    ] {
        env.push(EnvVar {
            name: name.into(),
            value: Some(value),
            value_from: None,
        });
    }
    env.push(EnvVar {
        name: "SPARK_EXECUTOR_POD_IP".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: "status.podIP".into(),
            }),
            ..EnvVarSource::default()
        }),
    });
    c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
        name: Some("blockmanager".into()),
        container_port: 7079,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    });
    // addToRequests / addToLimits: Spark's memory and cpu win over the template's.
    let resources = c
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    let memory = Quantity("896Mi".into());
    resources
        .requests
        .get_or_insert_with(BTreeMap::new)
        .extend([
            ("memory".into(), memory.clone()),
            ("cpu".into(), Quantity("1".into())),
        ]);
    resources
        .limits
        .get_or_insert_with(BTreeMap::new)
        .insert("memory".into(), memory);
    c.volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: "spark-local-dir-1".into(),
            mount_path: local_dir.into(),
            ..VolumeMount::default()
        });
    pod
}

/// `spark.properties` lines as `key=value`, enough for the keys [`from_template`] reads (no
/// escapes in them); comments skipped.
pub fn plain_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
