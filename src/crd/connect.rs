//! `SparkConnect` (`sparkoperator.k8s.io/v1alpha1`): a long-running Spark Connect server (a
//! Spark driver running `SparkConnectServer`) with its executors and a Service, field for field
//! kubeflow v2.5's type (same JSON names, same status), so kubeflow's example and the Kubeflow
//! SDK's objects apply unchanged and objects kubeflow wrote stay readable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::preserve_unknown_object;
use super::spec::DynamicAllocation;

/// Desired state of a SparkConnect: the server (driver) and its executors.
// The derive generates the `SparkConnect` resource (re-exported from `crate::crd`).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sparkoperator.k8s.io",
    version = "v1alpha1",
    kind = "SparkConnect",
    plural = "sparkconnects",
    singular = "sparkconnect",
    namespaced,
    status = "SparkConnectStatus",
    shortname = "sparkconn",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Spark Connect server with its executors (kubeflow spark-operator compatible).",
    annotation(
        "api-approved.kubernetes.io",
        "https://github.com/kubeflow/spark-operator/pull/1298"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "PodName",
        type_ = "string",
        json_path = ".status.server.podName"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SparkConnectSpec {
    /// The Spark version of the image (label `spark-version` on the pods).
    pub spark_version: String,

    /// The image of the server and the executors, unless their templates name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Hadoop properties, passed as `spark.hadoop.<key>` (the prefix is added when missing).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hadoop_conf: BTreeMap<String, String>,

    /// Spark properties, as `--conf` to spark-submit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spark_conf: BTreeMap<String, String>,

    /// The Spark Connect server (the driver).
    pub server: ServerSpec,

    /// The executors.
    pub executor: ConnectExecutorSpec,

    /// Dynamic allocation of executors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_allocation: Option<DynamicAllocation>,
}

/// The server pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    #[serde(flatten)]
    pub pod: ConnectPodSpec,

    /// The Service exposing the server: its name (default `<name>-server`), labels,
    /// annotations and type are taken; ports and selector are the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub service: Option<Service>,
}

/// The executors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectExecutorSpec {
    #[serde(flatten)]
    pub pod: ConnectPodSpec,

    /// How many executors the server starts (`spark.executor.instances`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub instances: Option<i32>,
}

/// What the server and the executors share.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectPodSpec {
    /// `spark.driver.cores` / `spark.executor.cores`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub cores: Option<i32>,

    /// `spark.driver.memory` / `spark.executor.memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,

    /// A core/v1 PodTemplateSpec the pod is built from (Spark's pod template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub template: Option<PodTemplateSpec>,
}

/// The state of a SparkConnect, as kubeflow names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SparkConnectState {
    /// Not yet looked at (kubeflow's empty string).
    #[default]
    #[serde(rename = "")]
    New,
    /// kubeflow's; not written by either operator.
    Provisioning,
    /// The server pod is ready.
    Ready,
    /// The server pod exists but is not ready (starting, restarting).
    NotReady,
    /// The server pod ended or cannot be built; a spec change starts it again.
    Failed,
}

impl SparkConnectState {
    fn is_new(&self) -> bool {
        *self == Self::New
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "",
            Self::Provisioning => "Provisioning",
            Self::Ready => "Ready",
            Self::NotReady => "NotReady",
            Self::Failed => "Failed",
        }
    }
}

/// Where the server runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SparkConnectServerStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
    /// The server pod's IP (kubeflow's spelling: `podIp`).
    #[serde(default, rename = "podIp", skip_serializing_if = "String::is_empty")]
    pub pod_ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_name: String,
}

/// Observed state of a SparkConnect, as kubeflow fills it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SparkConnectStatus {
    /// `ServerPodReady`, True or False.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    #[serde(default, skip_serializing_if = "SparkConnectState::is_new")]
    pub state: SparkConnectState,

    #[serde(default)]
    pub server: SparkConnectServerStatus,

    /// Executor pods by phase, lower case (`running: 2`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub executors: BTreeMap<String, i64>,

    /// When the controller first handled the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the controller last changed this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
}
