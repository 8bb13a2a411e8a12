//! Values the generators pick from most of the time (the rest is free-form), so generated pods
//! and apps collide the way real ones do: Spark's default container and volume names, the
//! names and paths the mutation itself adds, label keys that need JSON-pointer escaping, and
//! quantities both valid and not. Shared by `tests/properties.rs` and the fuzz targets.
#![allow(dead_code)]

pub const CONTAINER_NAMES: &[&str] = &[
    "spark-kubernetes-driver",
    "spark-kubernetes-executor",
    "executor",
    "log-shipper",
    "fetch-deps",
    "istio-proxy",
    "main",
];

/// Names of the app's sidecars and init containers. Spark's default container names
/// (`spark-kubernetes-driver`, `spark-kubernetes-executor`, `executor`) are left out until the
/// known bug is fixed: a sidecar so named becomes the Spark container on a second mutation
/// (see `sidecar_named_like_spark_container_is_idempotent` in tests/properties.rs).
pub const SIDECAR_NAMES: &[&str] = &["log-shipper", "fetch-deps", "istio-proxy", "main"];

pub const IMAGES: &[&str] = &["spark:3.3.4", "busybox:1.36", "fluent/fluent-bit:3.0"];

/// Volumes an app declares in `spec.volumes` and its roles' `volumeMounts` name.
pub const APP_VOLUME_NAMES: &[&str] = &["data", "scratch", "extra-vol", "spark-local-dir-1"];

/// Volumes a pod may already have (Spark's, the ones the mutation adds, the app's).
pub const VOLUME_NAMES: &[&str] = &[
    "data",
    "scratch",
    "spark-local-dir-1",
    "spark-conf-volume-driver",
    "gcp-sa-volume",
    "db-volume",
    "spark-configmap-volume",
    "hadoop-configmap-volume",
    "extra-vol",
    "prometheus-vol",
    "kube-api-access-7xk2q",
];

/// Mount paths in pods: Spark's own, and a few the app or the mutation also use.
pub const POD_MOUNT_PATHS: &[&str] = &[
    "/var/data/spark-1",
    "/opt/spark/conf",
    "/var/run/secrets/kubernetes.io/serviceaccount",
    "/etc/spark/conf",
    "/data/",
    "/",
    "relative",
];

/// Mount paths of an app's `volumeMounts`.
pub const MOUNT_PATHS: &[&str] = &["/data", "/tmp/scratch", "/opt/data", "/data/", "/srv"];

/// Mount paths of an app's `secrets`.
pub const SECRET_PATHS: &[&str] = &[
    "/mnt/secrets/gcp",
    "/mnt/secrets/db",
    "/mnt/secrets/hadoop/",
    "/mnt/secrets/s3",
];

/// Mount paths of an app's `configMaps`.
pub const CONFIG_MAP_PATHS: &[&str] = &[
    "/etc/spark-pi",
    "/etc/job",
    "/etc/extra",
    "/etc/hadoop/conf",
];

pub const ENV_NAMES: &[&str] = &[
    "SPARK_CONF_DIR",
    "HADOOP_CONF_DIR",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "HADOOP_TOKEN_FILE_LOCATION",
    "SPARK_USER",
    "LOG_LEVEL",
    "A",
];

/// Label and annotation keys: Spark's and ours, and keys with `/` and `~` (JSON pointer).
pub const LABEL_KEYS: &[&str] = &[
    "spark-role",
    "sparkoperator.k8s.io/app-name",
    "sparkoperator.k8s.io/launched-by-spark-operator",
    "sparkoperator.k8s.io/submission-id",
    "spark-app-selector",
    "version",
    "a/b~c",
    "~",
    "/",
    "~1",
    "~0/~1",
    "example.com/owner",
    "prometheus.io/scrape",
];

pub const LABEL_VALUES: &[&str] = &["driver", "executor", "spark-pi", "true", "", "3.3.4"];

pub const QUANTITIES: &[&str] = &[
    "1Gi",
    "512m",
    "2g",
    "1024",
    "0",
    "-1",
    "1e3",
    "bogus",
    "",
    "1.5Gi",
    "99999999Ei",
    "0.1m",
    "1k",
    "3.3.4",
];

pub const CONFIG_MAPS: &[&str] = &[
    "spark-pi-conf",
    "spark.application.conf",
    "extra",
    "generated-config-name-generated-config-name-generated-config-name",
];

pub const PORT_NAMES: &[&str] = &[
    "jdwp",
    "driver-rpc-port",
    "blockmanager",
    "jmx-exporter",
    "",
];

pub const PORT_NUMBERS: &[i32] = &[5005, 7078, 7079, 8090, 4040, 0, -1];

pub const PROTOCOLS: &[&str] = &["TCP", "UDP", ""];

pub const SECRET_TYPES: &[&str] = &["Generic", "GCPServiceAccount", "HadoopDelegationToken"];

pub const SECCOMP_TYPES: &[&str] = &["RuntimeDefault", "Unconfined", "Localhost"];

/// The app the generated pods belong to (namespace `default`).
pub const APP_NAME: &str = "spark-pi";
