//! `SparkApplicationSpec` and everything below it, field for field compatible with kubeflow
//! spark-operator's `sparkoperator.k8s.io/v1beta2` API (JSON names follow the Go json tags).
//!
//! Conventions used throughout:
//! - Go pointers and `omitempty` scalars are `Option<_>`, so an explicit `false`/`0`/`""` in the
//!   input survives a round trip.
//! - Go slices and maps are `Vec`/`BTreeMap`, defaulted and skipped when empty (an empty list and
//!   an absent one mean the same thing to the Go operator). `BTreeMap` keeps output deterministic.
//! - Quantity-like strings (`memory`, `coreLimit`, ...) stay `String`, exactly as Go has them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvFromSource, EnvVar, HostAlias, Lifecycle, PodDNSConfig,
    PodSecurityContext, PodTemplateSpec, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::IngressTLS;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{preserve_unknown_list, preserve_unknown_object};
use super::status::SparkApplicationStatus;

/// Desired state of a SparkApplication: everything a `spark-submit` invocation needs, plus how
/// the operator should build the driver and executor pods around it.
// The derive generates the `SparkApplication` resource (re-exported from `crate::crd`). Keep the
// `///` text above Kubernetes-facing: it is the schema description `kubectl explain` shows.
// Clippy mistakes the repeated `type_ = "string"` of the printer columns for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sparkoperator.k8s.io",
    version = "v1beta2",
    kind = "SparkApplication",
    plural = "sparkapplications",
    singular = "sparkapplication",
    namespaced,
    status = "SparkApplicationStatus",
    shortname = "sparkapp",
    shortname = "sparkapps",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Spark application run by the Spark operator (kubeflow spark-operator compatible).",
    annotation(
        "api-approved.kubernetes.io",
        "https://github.com/kubeflow/spark-operator/pull/1298"
    ),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.applicationState.state"
    ),
    printcolumn(
        name = "Attempts",
        type_ = "string",
        json_path = ".status.executionAttempts"
    ),
    printcolumn(
        name = "Start",
        type_ = "string",
        json_path = ".status.lastSubmissionAttemptTime"
    ),
    printcolumn(
        name = "Finish",
        type_ = "string",
        json_path = ".status.terminationTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SparkApplicationSpec {
    /// Suspends the application. While true nothing is submitted; flipping it from false to true
    /// on a running application deletes its active driver and executor pods (and the attempt's
    /// Services and ConfigMaps; the application is kept), so the job must tolerate being
    /// stopped. Setting it back to false resubmits the application as a new attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// Language of the application: Java, Scala, Python or R. Decides how the main
    /// application file is handed to spark-submit.
    #[serde(rename = "type")]
    pub type_: SparkApplicationType,

    /// Spark version the application is built for (for example "3.5.3"); informational for
    /// the operator, it does not select the image.
    pub spark_version: String,

    /// Deploy mode passed to spark-submit: cluster (driver runs in its own pod, the default),
    /// client, or in-cluster-client (driver runs in a pod the user created, see driver.podName).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DeployMode>,

    /// User to impersonate when submitting (spark-submit --proxy-user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_user: Option<String>,

    /// Default container image for the driver and executors; driver.image / executor.image
    /// override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Image pull policy (Always, IfNotPresent, Never) for the driver and executor containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,

    /// Names of Secrets in the application's namespace used to pull the images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,

    /// Fully qualified main class (Java and Scala applications only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_class: Option<String>,

    /// Path or URL of the application's main JAR, Python or R file (for example
    /// local:///opt/spark/examples/jars/spark-examples.jar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_application_file: Option<String>,

    /// Arguments passed to the application's main method or script.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,

    /// Spark configuration properties, each passed as `--conf key=value` to spark-submit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spark_conf: BTreeMap<String, String>,

    /// Hadoop configuration properties; the operator prefixes each key with "spark.hadoop."
    /// and passes it as a Spark --conf.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hadoop_conf: BTreeMap<String, String>,

    /// Name of a ConfigMap with Spark configuration files (spark-defaults.conf,
    /// log4j2.properties, ...). It is mounted into the driver and executors and SPARK_CONF_DIR
    /// points at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_config_map: Option<String>,

    /// Name of a ConfigMap with Hadoop configuration files (core-site.xml, ...). It is mounted
    /// into the driver and executors and HADOOP_CONF_DIR points at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hadoop_config_map: Option<String>,

    /// Kubernetes volumes (core/v1 Volume) available to the driver and executors; each pod
    /// mounts the ones named in its volumeMounts. Not validated by the CRD schema beyond being
    /// a list of objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserve_unknown_list")]
    pub volumes: Vec<Volume>,

    /// Driver pod settings.
    pub driver: DriverSpec,

    /// Executor pod settings.
    pub executor: ExecutorSpec,

    /// Extra dependencies (jars, files, Python files, Maven packages, archives) to ship with
    /// the application.
    #[serde(default, skip_serializing_if = "Dependencies::is_empty")]
    pub deps: Dependencies,

    /// When and how often the operator restarts a failed or finished application.
    #[serde(default, skip_serializing_if = "RestartPolicy::is_empty")]
    pub restart_policy: RestartPolicy,

    /// Node selector applied to both driver and executor pods. Deprecated in favour of
    /// driver.nodeSelector / executor.nodeSelector; do not set both levels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Not used (nor by kubeflow v2.5; a warning says so): retries follow restartPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_retries: Option<i32>,

    /// Not used (nor by kubeflow v2.5; a warning says so): retry intervals follow
    /// restartPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<i64>,

    /// Major Python version ("2" or "3") of the image, for Python applications
    /// (spark.kubernetes.pyspark.pythonVersion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["2", "3"]))]
    pub python_version: Option<String>,

    /// Fraction of memory added as non-JVM overhead (spark.kubernetes.memoryOverheadFactor),
    /// for example "0.1". Spark defaults to 0.10 for JVM and 0.40 for non-JVM jobs;
    /// driver.memoryOverhead / executor.memoryOverhead take precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_overhead_factor: Option<String>,

    /// Metrics exposure (Prometheus JMX exporter, metrics.properties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,

    /// Batch scheduler that places the pods (for example "volcano" or "yunikorn"); empty means
    /// the default Kubernetes scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_scheduler: Option<String>,

    /// Seconds after the application terminates before the SparkApplication object itself is
    /// deleted. Unset keeps it forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_live_seconds: Option<i64>,

    /// Options for the batch scheduler (queue, priority class, minimum resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_scheduler_options: Option<BatchSchedulerConfiguration>,

    /// Service and Ingress that expose the Spark web UI of the driver.
    #[serde(
        rename = "sparkUIOptions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spark_ui_options: Option<SparkUIConfiguration>,

    /// Additional Services and Ingresses exposing other ports of the driver pod, one entry per
    /// port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub driver_ingress_options: Vec<DriverIngressConfiguration>,

    /// Spark dynamic executor allocation (Spark 3.0+, uses shuffle tracking on Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_allocation: Option<DynamicAllocation>,

    /// Create a PodDisruptionBudget protecting the running driver pod from voluntary evictions
    /// (kubectl drain). Only honoured when the operator runs with driver PDBs enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_pod_disruption_budget: Option<bool>,
}

/// Language of a Spark application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SparkApplicationType {
    /// A JVM application written in Java.
    Java,
    /// A JVM application written in Scala (the Go operator's default).
    #[default]
    Scala,
    /// A PySpark application.
    Python,
    /// A SparkR application.
    R,
}

impl SparkApplicationType {
    /// The wire value, as written in `spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Java => "Java",
            Self::Scala => "Scala",
            Self::Python => "Python",
            Self::R => "R",
        }
    }
}

/// spark-submit deploy mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeployMode {
    /// The driver runs in a pod created by spark-submit (the default).
    #[default]
    #[serde(rename = "cluster")]
    Cluster,
    /// The driver runs inside the spark-submit process.
    #[serde(rename = "client")]
    Client,
    /// The driver runs in a pod the user created (named by driver.podName).
    #[serde(rename = "in-cluster-client")]
    InClusterClient,
}

impl DeployMode {
    /// The wire value, as written in `spec.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cluster => "cluster",
            Self::Client => "client",
            Self::InClusterClient => "in-cluster-client",
        }
    }
}

/// Whether and how a terminated application is re-run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartPolicy {
    /// Never (the default), OnFailure (re-run after failed runs or submissions), or Always
    /// (re-run after every termination).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<RestartPolicyType>,

    /// Submission attempts to retry before giving up; best effort, used with OnFailure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub on_submission_failure_retries: Option<i32>,

    /// Failed runs to retry before giving up; used with OnFailure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub on_failure_retries: Option<i32>,

    /// Seconds to wait before retrying a failed submission (the operator defaults it to 5 when
    /// the policy is not Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub on_submission_failure_retry_interval: Option<i64>,

    /// Seconds to wait before re-running a failed application (the operator defaults it to 5
    /// when the policy is not Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub on_failure_retry_interval: Option<i64>,
}

impl RestartPolicy {
    /// True when nothing is set, i.e. the object can be omitted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The effective policy type: unset means Never, as in the Go operator.
    pub fn effective_type(&self) -> RestartPolicyType {
        self.type_.unwrap_or_default()
    }
}

/// Restart policy kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicyType {
    /// Never restart (the default).
    #[default]
    Never,
    /// Restart after a failed run or a failed submission, within the retry limits.
    OnFailure,
    /// Restart after every termination, successful or not.
    Always,
}

impl RestartPolicyType {
    /// The wire value, as written in `spec.restartPolicy.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "Never",
            Self::OnFailure => "OnFailure",
            Self::Always => "Always",
        }
    }
}

/// Dependencies shipped with the application; each list maps to a spark-submit option.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependencies {
    /// JARs added to the driver and executor classpaths (spark-submit --jars / spark.jars).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jars: Vec<String>,

    /// Files placed in the working directory of the driver and each executor
    /// (spark-submit --files / spark.files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,

    /// .py, .zip or .egg files added to the PYTHONPATH (spark-submit --py-files /
    /// spark.submit.pyFiles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub py_files: Vec<String>,

    /// Maven coordinates "groupId:artifactId:version" resolved and added to the driver and
    /// executor classpaths (spark-submit --packages / spark.jars.packages). Resolution searches
    /// the local repository, Maven Central, then `repositories`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,

    /// "groupId:artifactId" entries excluded while resolving `packages`, to avoid dependency
    /// conflicts (spark-submit --exclude-packages / spark.jars.excludes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_packages: Vec<String>,

    /// Additional remote Maven repositories searched for `packages` (spark-submit
    /// --repositories / spark.jars.repositories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,

    /// Archives (.zip, .tar.gz, .tgz, .tar, .jar) unpacked into the working directory of the
    /// driver and each executor (spark-submit --archives / spark.archives). A "#name" suffix
    /// sets the directory name, e.g. "https://example.com/deps.zip#deps" unpacks into ./deps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives: Vec<String>,
}

impl Dependencies {
    /// True when no dependency of any kind is listed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Settings shared by the driver and executor pods. Flattened into [`DriverSpec`] and
/// [`ExecutorSpec`], so on the wire these keys sit directly under `driver` / `executor`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SparkPodSpec {
    /// Pod template (core/v1 PodTemplateSpec) for everything the other fields cannot express;
    /// Spark (3.0+) uses it as the base of the pod (spark.kubernetes.*.podTemplateFile) and the
    /// other fields win on conflicts. Not validated by the CRD schema beyond being an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub template: Option<PodTemplateSpec>,

    /// CPU cores (spark.driver.cores / spark.executor.cores); also the pod CPU request unless
    /// coreRequest is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub cores: Option<i32>,

    /// Hard CPU limit of the Spark container as a quantity, e.g. "1200m"
    /// (spark.kubernetes.{driver,executor}.limit.cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_limit: Option<String>,

    /// JVM heap size, e.g. "512m" or "4g" (spark.driver.memory / spark.executor.memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,

    /// Memory limit of the Spark container as a quantity, overriding the limit Spark derives
    /// from memory plus overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,

    /// Off-heap memory added to the container on top of `memory`, MiB unless suffixed
    /// (spark.driver.memoryOverhead / spark.executor.memoryOverhead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_overhead: Option<String>,

    /// GPU resource to request for the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GPUSpec>,

    /// Container image for this pod; overrides spec.image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// ConfigMaps (in the application's namespace) mounted into the Spark container, each at
    /// its path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_maps: Vec<NamePath>,

    /// Secrets mounted into the Spark container, each at its path; secretType adds the
    /// matching environment variable (see SecretInfo).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretInfo>,

    /// Environment variables (core/v1 EnvVar) for the Spark container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Plain name-to-value environment variables. Deprecated: use env.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,

    /// Sources (ConfigMaps, Secrets) whose keys all become environment variables of the
    /// Spark container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,

    /// Environment variables taken from Secret keys, by variable name. Deprecated: use env with
    /// valueFrom.secretKeyRef.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_secret_key_refs: BTreeMap<String, NameKey>,

    /// Labels added to the pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to the pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Mounts (core/v1 VolumeMount) of volumes from spec.volumes into the Spark container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,

    /// Pod affinity and anti-affinity rules (core/v1 Affinity). Not validated by the CRD schema
    /// beyond being an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub affinity: Option<Affinity>,

    /// Tolerations (core/v1 Toleration) of the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Pod-level security context (core/v1 PodSecurityContext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,

    /// Security context (core/v1 SecurityContext) of the Spark container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,

    /// Scheduler that places the pod (pod.spec.schedulerName).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,

    /// Extra containers (core/v1 Container) running next to the Spark container. Not validated
    /// by the CRD schema beyond being a list of objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserve_unknown_list")]
    pub sidecars: Vec<Container>,

    /// Init containers (core/v1 Container) that run to completion before the Spark container
    /// starts. Not validated by the CRD schema beyond being a list of objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserve_unknown_list")]
    pub init_containers: Vec<Container>,

    /// Run the pod in the host's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,

    /// Node selector of the pod. Do not combine with the deprecated spec.nodeSelector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// DNS settings (core/v1 PodDNSConfig) of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<PodDNSConfig>,

    /// Grace period in seconds between SIGTERM and SIGKILL when the pod is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,

    /// Service account the pod runs as. The driver's needs RBAC to create and watch executor
    /// pods, services and config maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,

    /// Extra /etc/hosts entries (core/v1 HostAlias) of the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_aliases: Vec<HostAlias>,

    /// Share one process namespace between all containers of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_process_namespace: Option<bool>,
}

/// Driver pod settings: the shared [`SparkPodSpec`] knobs plus driver-only ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriverSpec {
    /// Settings shared with the executors.
    #[serde(flatten)]
    pub pod: SparkPodSpec,

    /// Name of the driver pod. In in-cluster-client mode it names the pod, created by the user,
    /// in which the driver runs; setting it in other modes is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    ))]
    pub pod_name: Option<String>,

    /// CPU request of the driver pod as a quantity, e.g. "500m"
    /// (spark.kubernetes.driver.request.cores, Spark 3.0+); defaults to `cores`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_request: Option<String>,

    /// Extra JVM options for the driver, e.g. GC or logging flags
    /// (spark.driver.extraJavaOptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub java_options: Option<String>,

    /// postStart / preStop hooks (core/v1 Lifecycle) of the driver container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,

    /// URL of the Kubernetes API the driver uses to manage executors
    /// (default https://kubernetes.default.svc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_master: Option<String>,

    /// Annotations added to the headless driver Service executors connect through.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,

    /// Labels added to the headless driver Service executors connect through.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_labels: BTreeMap<String, String>,

    /// Extra container ports opened on the driver container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,

    /// PriorityClass of the driver pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Executor pod settings: the shared [`SparkPodSpec`] knobs plus executor-only ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorSpec {
    /// Settings shared with the driver.
    #[serde(flatten)]
    pub pod: SparkPodSpec,

    /// Number of executors (spark.executor.instances). With dynamic allocation this is the
    /// initial count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub instances: Option<i32>,

    /// CPU request of each executor pod as a quantity, e.g. "500m"
    /// (spark.kubernetes.executor.request.cores); defaults to `cores`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_request: Option<String>,

    /// Extra JVM options for the executors, e.g. GC or logging flags
    /// (spark.executor.extraJavaOptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub java_options: Option<String>,

    /// postStart / preStop hooks (core/v1 Lifecycle) of the executor container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,

    /// Delete executor pods when they terminate, successfully or not
    /// (spark.kubernetes.executor.deleteOnTermination, Spark 3.0+). Set false to keep failed
    /// executors around for debugging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,

    /// Extra container ports opened on each executor container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,

    /// PriorityClass of the executor pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// A named object (ConfigMap) and the path it is mounted at.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NamePath {
    /// Name of the ConfigMap.
    pub name: String,
    /// Mount path inside the container.
    pub path: String,
}

/// A Secret mounted into the Spark container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretInfo {
    /// Name of the Secret.
    pub name: String,
    /// Mount path inside the container.
    pub path: String,
    /// How the secret is used: GCPServiceAccount sets GOOGLE_APPLICATION_CREDENTIALS to the
    /// key file, HadoopDelegationToken sets HADOOP_TOKEN_FILE_LOCATION to the token file,
    /// Generic only mounts it.
    #[serde(rename = "secretType")]
    pub secret_type: SecretType,
}

/// Kind of a mounted secret, deciding which environment variable points at it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SecretType {
    /// A GCP service account JSON key; sets GOOGLE_APPLICATION_CREDENTIALS.
    GCPServiceAccount,
    /// A Hadoop delegation token; sets HADOOP_TOKEN_FILE_LOCATION.
    HadoopDelegationToken,
    /// Mounted only, no environment variable.
    #[default]
    Generic,
}

impl SecretType {
    /// The wire value, as written in `secretType`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GCPServiceAccount => "GCPServiceAccount",
            Self::HadoopDelegationToken => "HadoopDelegationToken",
            Self::Generic => "Generic",
        }
    }

    /// The environment variable that points at the mounted secret, and the file it names in
    /// the secret's folder (kubeflow sets these on the Spark container).
    pub fn env_var(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::GCPServiceAccount => Some(("GOOGLE_APPLICATION_CREDENTIALS", "key.json")),
            Self::HadoopDelegationToken => Some(("HADOOP_TOKEN_FILE_LOCATION", "hadoop.token")),
            Self::Generic => None,
        }
    }
}

/// A key of a Secret, used as the value of an environment variable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NameKey {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// An extra container port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Port name (an IANA_SVC_NAME, unique within the pod).
    pub name: String,
    /// Protocol: TCP, UDP or SCTP.
    pub protocol: String,
    /// Port number on the container.
    pub container_port: i32,
}

/// GPU request of a pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GPUSpec {
    /// Extended resource name of the GPU, e.g. nvidia.com/gpu or amd.com/gpu.
    pub name: String,
    /// Number of GPUs requested (and limited) for the pod.
    pub quantity: i64,
}

/// Metrics exposure of the application.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Expose driver metrics (via the Prometheus JMX exporter when prometheus is set).
    pub expose_driver_metrics: bool,

    /// Expose executor metrics (via the Prometheus JMX exporter when prometheus is set).
    pub expose_executor_metrics: bool,

    /// Content of a metrics.properties file configuring Spark's metric system; defaults to the
    /// one shipped in the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_properties: Option<String>,

    /// Path of metrics.properties inside the container (default
    /// /etc/metrics/conf/metrics.properties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_properties_file: Option<String>,

    /// Prometheus JMX exporter settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
}

/// Prometheus JMX exporter run as a Java agent in the driver and executors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Path of the JMX exporter agent jar inside the image.
    pub jmx_exporter_jar: String,

    /// Port of the exporter's HTTP endpoint (default 8090).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 49151))]
    pub port: Option<i32>,

    /// Name of the exporter's container port (default jmx-exporter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,

    /// Path of an exporter configuration file inside the image; wins over configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,

    /// Inline exporter configuration (YAML); ignored when configFile is set, defaults to the
    /// operator's prometheus.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<String>,
}

/// Batch scheduler options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSchedulerConfiguration {
    /// Queue the application is submitted to (Volcano, YuniKorn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,

    /// PriorityClass used by the batch scheduler for the whole application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Resources reserved for the application as a whole (a lower bound); when set the batch
    /// scheduler uses them instead of summing the pods' requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Quantity>,
}

/// Service and Ingress exposing the driver's Spark web UI.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SparkUIConfiguration {
    /// Service port for the UI; the target port is spark.ui.port (default 4040).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<i32>,

    /// Name of the Service port (default spark-driver-ui-port); some meshes (Istio) need an
    /// http- prefix to treat it as HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port_name: Option<String>,

    /// Service type (ClusterIP, NodePort, LoadBalancer); default ClusterIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,

    /// Annotations added to the UI Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,

    /// Labels added to the UI Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_labels: BTreeMap<String, String>,

    /// Annotations added to the UI Ingress, e.g. the ingress class.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingress_annotations: BTreeMap<String, String>,

    /// TLS settings (networking/v1 IngressTLS) of the UI Ingress.
    #[serde(rename = "ingressTLS", default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_tls: Vec<IngressTLS>,
}

/// Service and Ingress exposing one more port of the driver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriverIngressConfiguration {
    /// Service port; the target port is the driver container port of the same number.
    pub service_port: i32,

    /// Name of the Service port.
    pub service_port_name: String,

    /// Service type (ClusterIP, NodePort, LoadBalancer); default ClusterIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,

    /// Annotations added to the Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,

    /// Labels added to the Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_labels: BTreeMap<String, String>,

    /// Host and path of the Ingress as a template, e.g. "{{$appName}}.example.com/{{$appNamespace}}"
    /// ($appName, $appNamespace and $appId are substituted).
    #[serde(
        rename = "ingressURLFormat",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ingress_url_format: Option<String>,

    /// Annotations added to the Ingress, e.g. the ingress class.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingress_annotations: BTreeMap<String, String>,

    /// TLS settings (networking/v1 IngressTLS) of the Ingress.
    #[serde(rename = "ingressTLS", default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_tls: Vec<IngressTLS>,
}

/// Spark dynamic allocation (spark.dynamicAllocation.*).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DynamicAllocation {
    /// Turn dynamic allocation on (spark.dynamicAllocation.enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,

    /// Executors requested at start; the larger of this and executor.instances wins
    /// (spark.dynamicAllocation.initialExecutors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_executors: Option<i32>,

    /// Lower bound on the executor count (spark.dynamicAllocation.minExecutors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_executors: Option<i32>,

    /// Upper bound on the executor count (spark.dynamicAllocation.maxExecutors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_executors: Option<i32>,

    /// Keep executors holding shuffle data of active jobs alive, so no external shuffle
    /// service is needed (spark.dynamicAllocation.shuffleTracking.enabled). Defaults to true
    /// when dynamic allocation is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_tracking_enabled: Option<bool>,

    /// Milliseconds after which executors holding shuffle data may be released
    /// (spark.dynamicAllocation.shuffleTracking.timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_tracking_timeout: Option<i64>,
}

impl DynamicAllocation {
    /// Whether dynamic allocation is on (unset means off, as in Go).
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy_defaults_to_never() {
        let policy = RestartPolicy::default();
        assert!(policy.is_empty());
        assert_eq!(policy.effective_type(), RestartPolicyType::Never);
    }

    #[test]
    fn enum_wire_names() {
        assert_eq!(DeployMode::InClusterClient.as_str(), "in-cluster-client");
        assert_eq!(DeployMode::InClusterClient.to_string(), "in-cluster-client");
        assert_eq!(SparkApplicationType::Python.to_string(), "Python");
        assert_eq!(RestartPolicyType::OnFailure.to_string(), "OnFailure");
        assert_eq!(
            SecretType::HadoopDelegationToken.to_string(),
            "HadoopDelegationToken"
        );
        for mode in [
            DeployMode::Cluster,
            DeployMode::Client,
            DeployMode::InClusterClient,
        ] {
            let json = serde_json::to_value(mode).expect("serialise");
            assert_eq!(json, serde_json::Value::from(mode.as_str()));
        }
    }

    #[test]
    fn empty_deps_and_policy_are_omitted() {
        let spec = SparkApplicationSpec::default();
        let json = serde_json::to_value(&spec).expect("serialise");
        assert!(json.get("deps").is_none());
        assert!(json.get("restartPolicy").is_none());
        assert_eq!(json["type"], "Scala");
    }

    #[test]
    fn dynamic_allocation_enabled_defaults_off() {
        assert!(!DynamicAllocation::default().is_enabled());
    }
}
