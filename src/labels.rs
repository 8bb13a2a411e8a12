//! Every label and annotation key the operator reads or writes, and the pod role they classify.
//!
//! One home, as kubeflow keeps them in one file: the webhook's objectSelector, the submission
//! that sets these keys and the reconciler that selects by them must spell them alike, and a
//! reviewer sees in one place which keys are Spark's, kubeflow's and ours. Bottom layer: it
//! imports nothing of this crate.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;

// Spark's own labels: Spark sets them on its pods and refuses user labels with these keys.

/// The pod's role, `driver` or `executor` (see [`SparkRole`]).
pub const SPARK_ROLE_LABEL: &str = "spark-role";
/// The Spark application id (`spark-<hex>`) on the driver, its Service and the executors.
pub const SPARK_APP_SELECTOR_LABEL: &str = "spark-app-selector";
/// The application's name, shortened to a label value.
pub const SPARK_APP_NAME_LABEL: &str = "spark-app-name";
/// The Spark version of the app (`spec.sparkVersion`).
pub const SPARK_VERSION_LABEL: &str = "spark-version";
/// An executor's numeric id.
pub const EXECUTOR_ID_LABEL: &str = "spark-exec-id";
/// An executor's resource profile id.
pub const RESOURCE_PROFILE_ID_LABEL: &str = "spark-exec-resourceprofile-id";

// kubeflow's labels and annotations, for compatibility with its tooling and selectors.

/// The SparkApplication a pod or object belongs to.
pub const APP_NAME_LABEL: &str = "sparkoperator.k8s.io/app-name";
/// On each run of a ScheduledSparkApplication: the schedule's name.
pub const SCHEDULED_APP_NAME_LABEL: &str = "sparkoperator.k8s.io/scheduled-app-name";
/// The SparkConnect a pod or object belongs to (kubeflow's `LabelSparkConnectName`).
pub const CONNECT_NAME_LABEL: &str = "sparkoperator.k8s.io/connect-name";
/// `spark-role` of a SparkConnect's server pod (kubeflow's `SparkRoleConnectServer`): neither a
/// driver nor an executor of a SparkApplication, so the webhook and the SparkApplication
/// controllers leave it alone.
pub const CONNECT_SERVER_ROLE: &str = "connect-server";
/// `true` on Spark pods launched by a SparkApplication; the webhook's objectSelector needs it.
pub const LAUNCHED_BY_LABEL: &str = "sparkoperator.k8s.io/launched-by-spark-operator";
/// The submission id, on every object of one submission attempt.
pub const SUBMISSION_ID_LABEL: &str = "sparkoperator.k8s.io/submission-id";
/// `true` on the ConfigMaps kubeflow's controller creates itself (`<app>-prom-conf`).
pub const CREATED_BY_LABEL: &str = "sparkoperator.k8s.io/created-by-spark-operator";
/// kubeflow's marker on executors that its webhook is to mutate.
pub const MUTATED_BY_LABEL: &str = "sparkoperator.k8s.io/mutated-by-spark-operator";
/// On the driver pod: the hash of the spec it was submitted from.
pub const SPEC_HASH_ANNOTATION: &str = "sparkoperator.k8s.io/spec-hash";
/// SparkApplication labels with this prefix stay off the pods (kubeflow's workaround for Kueue,
/// which would otherwise manage the driver pod as a workload of its own).
pub const KUEUE_LABEL_PREFIX: &str = "kueue.x-k8s.io/";

// Batch schedulers' keys, set on Spark pods as kubeflow's scheduler integrations set them.

/// Volcano: the PodGroup a pod belongs to.
pub const VOLCANO_GROUP_NAME_ANNOTATION: &str = "scheduling.k8s.io/group-name";
/// scheduler-plugins coscheduling: the PodGroup a pod belongs to.
pub const COSCHEDULING_POD_GROUP_LABEL: &str = "scheduling.x-k8s.io/pod-group";
/// YuniKorn: the task group a pod belongs to.
pub const YUNIKORN_TASK_GROUP_NAME_ANNOTATION: &str = "yunikorn.apache.org/task-group-name";
/// YuniKorn: the task groups' definition (JSON), on the driver.
pub const YUNIKORN_TASK_GROUPS_ANNOTATION: &str = "yunikorn.apache.org/task-groups";
/// YuniKorn: the queue an application is submitted to.
pub const YUNIKORN_QUEUE_LABEL: &str = "queue";

// Prometheus scrape annotations, on pods whose metrics are exposed.

/// `true`: scrape this pod.
pub const PROMETHEUS_SCRAPE_ANNOTATION: &str = "prometheus.io/scrape";
/// The port to scrape.
pub const PROMETHEUS_PORT_ANNOTATION: &str = "prometheus.io/port";
/// The path to scrape.
pub const PROMETHEUS_PATH_ANNOTATION: &str = "prometheus.io/path";

// Our own, on the objects the operator manages for itself.

/// `spark-webhook` on the webhook configurations and the self-managed certificate Secret.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// On both webhook configurations: the version of the binary that wrote their spec.
pub const VERSION_ANNOTATION: &str = "spark-webhook.sparkoperator.k8s.io/registered-by-version";
/// On the certificate Secret: the replica that wrote the current certificate.
pub const ISSUED_BY_ANNOTATION: &str = "spark-webhook.sparkoperator.k8s.io/issued-by";
/// On the certificate Secret: when the next CA was staged (RFC 3339).
pub const NEXT_STAGED_AT_ANNOTATION: &str = "spark-webhook.sparkoperator.k8s.io/ca-next-staged-at";
/// On the certificate Secret: when the previous CA stopped signing (RFC 3339).
pub const PREVIOUS_RETIRED_AT_ANNOTATION: &str =
    "spark-webhook.sparkoperator.k8s.io/ca-previous-retired-at";

/// The role of a Spark pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SparkRole {
    Driver,
    Executor,
}

impl SparkRole {
    /// The `spark-role` label value, also the SparkApplication field (`driver` / `executor`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Driver => "driver",
            Self::Executor => "executor",
        }
    }
}

impl fmt::Display for SparkRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `pod` is a Spark pod we mutate, and for which SparkApplication: label `spark-role`
/// is `driver` or `executor` and label `sparkoperator.k8s.io/app-name` is non-empty.
pub fn classify(pod: &Pod) -> Option<(SparkRole, String)> {
    let (role, app) = classify_labels(pod.metadata.labels.as_ref()?)?;
    Some((role, app.to_string()))
}

/// [`classify`] on a pod's labels alone (the webhook reads them without typing the pod).
pub fn classify_labels(labels: &BTreeMap<String, String>) -> Option<(SparkRole, &str)> {
    let role = match labels.get(SPARK_ROLE_LABEL)?.as_str() {
        "driver" => SparkRole::Driver,
        "executor" => SparkRole::Executor,
        _ => return None,
    };
    let app = labels.get(APP_NAME_LABEL).filter(|name| !name.is_empty())?;
    Some((role, app.as_str()))
}
