//! The Spark configuration of a submission: what ends up in `spark.properties`.
//!
//! Built in the order the Go operator and spark-submit apply it, so the same value wins:
//!
//! 1. kubeflow's `--conf` that precede `sparkConf` (namespace, image, pull policy and secrets,
//!    pythonVersion, memoryOverheadFactor, waitAppCompletion): `sparkConf` overrides them;
//! 2. `sparkConf` (with the Prometheus `spark.metrics.*` kubeflow writes into it) and
//!    `hadoopConf` as `spark.hadoop.*`;
//! 3. kubeflow's `--conf` that follow (driver/executor fields, labels, annotations, env, secrets,
//!    local-dir volumes, nodeSelector, dynamic allocation): they override `sparkConf`;
//! 4. spark-submit's own flags (`--master`, `--deploy-mode`, `--name`, `--jars`, ...), which win
//!    over any `--conf`, plus the main jar appended to `spark.jars` and `spark.submit.pyFiles`;
//! 5. the properties Spark's driver feature steps add (pod name, app id, driver host and ports,
//!    resource type, memoryOverheadFactor), which win over everything.

use std::collections::BTreeMap;

use crate::crd::{DeployMode, SparkApplicationType};
use crate::labels::{
    EXECUTOR_ID_LABEL, RESOURCE_PROFILE_ID_LABEL, SPARK_APP_NAME_LABEL, SPARK_APP_SELECTOR_LABEL,
    SPARK_ROLE_LABEL, SPARK_VERSION_LABEL,
};
use crate::validation::archive_uri;

use super::{Ctx, SubmissionError, kubeflow};

/// A Spark configuration, sorted by key (the order `spark.properties` is written in).
pub type Conf = BTreeMap<String, String>;

/// Spark configuration keys used here.
pub(crate) mod keys {
    pub const MASTER: &str = "spark.master";
    pub const DEPLOY_MODE: &str = "spark.submit.deployMode";
    pub const APP_NAME: &str = "spark.app.name";
    pub const APP_ID: &str = "spark.app.id";
    pub const NAMESPACE: &str = "spark.kubernetes.namespace";
    pub const DRIVER_POD_NAME: &str = "spark.kubernetes.driver.pod.name";
    pub const SUBMIT_IN_DRIVER: &str = "spark.kubernetes.submitInDriver";
    pub const WAIT_APP_COMPLETION: &str = "spark.kubernetes.submission.waitAppCompletion";
    pub const RESOURCE_TYPE: &str = "spark.kubernetes.resource.type";
    pub const CONTAINER_IMAGE: &str = "spark.kubernetes.container.image";
    pub const DRIVER_IMAGE: &str = "spark.kubernetes.driver.container.image";
    pub const EXECUTOR_IMAGE: &str = "spark.kubernetes.executor.container.image";
    pub const PULL_POLICY: &str = "spark.kubernetes.container.image.pullPolicy";
    pub const PULL_SECRETS: &str = "spark.kubernetes.container.image.pullSecrets";
    pub const MEMORY_OVERHEAD_FACTOR: &str = "spark.kubernetes.memoryOverheadFactor";
    pub const DRIVER_MEMORY_OVERHEAD_FACTOR: &str = "spark.driver.memoryOverheadFactor";
    pub const PYTHON_VERSION: &str = "spark.kubernetes.pyspark.pythonVersion";
    pub const PYSPARK_PYTHON: &str = "spark.pyspark.python";
    pub const PYSPARK_DRIVER_PYTHON: &str = "spark.pyspark.driver.python";
    pub const DRIVER_HOST: &str = "spark.driver.host";
    pub const DRIVER_BIND_ADDRESS: &str = "spark.driver.bindAddress";
    pub const DRIVER_PORT: &str = "spark.driver.port";
    pub const DRIVER_BLOCK_MANAGER_PORT: &str = "spark.driver.blockManager.port";
    pub const BLOCK_MANAGER_PORT: &str = "spark.blockManager.port";
    pub const UI_PORT: &str = "spark.ui.port";
    pub const DRIVER_CORES: &str = "spark.driver.cores";
    pub const DRIVER_REQUEST_CORES: &str = "spark.kubernetes.driver.request.cores";
    pub const DRIVER_LIMIT_CORES: &str = "spark.kubernetes.driver.limit.cores";
    pub const DRIVER_MEMORY: &str = "spark.driver.memory";
    pub const DRIVER_MEMORY_OVERHEAD: &str = "spark.driver.memoryOverhead";
    pub const DRIVER_SERVICE_ACCOUNT: &str =
        "spark.kubernetes.authenticate.driver.serviceAccountName";
    pub const DRIVER_TEMPLATE_CONTAINER: &str = "spark.kubernetes.driver.podTemplateContainerName";
    pub const SCHEDULER_NAME: &str = "spark.kubernetes.scheduler.name";
    pub const DRIVER_SCHEDULER_NAME: &str = "spark.kubernetes.driver.scheduler.name";
    pub const JARS: &str = "spark.jars";
    pub const FILES: &str = "spark.files";
    pub const PY_FILES: &str = "spark.submit.pyFiles";
    pub const ARCHIVES: &str = "spark.archives";
    pub const PACKAGES: &str = "spark.jars.packages";
    pub const EXCLUDES: &str = "spark.jars.excludes";
    pub const REPOSITORIES: &str = "spark.jars.repositories";
    pub const LOCAL_DIR: &str = "spark.local.dir";
    pub const LOCAL_DIRS_TMPFS: &str = "spark.kubernetes.local.dirs.tmpfs";
    pub const NODE_SELECTOR_PREFIX: &str = "spark.kubernetes.node.selector.";
    pub const DRIVER_NODE_SELECTOR_PREFIX: &str = "spark.kubernetes.driver.node.selector.";
    pub const DRIVER_LABEL_PREFIX: &str = "spark.kubernetes.driver.label.";
    pub const EXECUTOR_LABEL_PREFIX: &str = "spark.kubernetes.executor.label.";
    pub const DRIVER_ANNOTATION_PREFIX: &str = "spark.kubernetes.driver.annotation.";
    pub const DRIVER_SERVICE_LABEL_PREFIX: &str = "spark.kubernetes.driver.service.label.";
    pub const DRIVER_SERVICE_ANNOTATION_PREFIX: &str =
        "spark.kubernetes.driver.service.annotation.";
    pub const DRIVER_ENV_PREFIX: &str = "spark.kubernetes.driverEnv.";
    pub const DRIVER_SECRETS_PREFIX: &str = "spark.kubernetes.driver.secrets.";
    pub const DRIVER_SECRET_KEY_REF_PREFIX: &str = "spark.kubernetes.driver.secretKeyRef.";
    pub const DRIVER_VOLUMES_PREFIX: &str = "spark.kubernetes.driver.volumes.";
    pub const DRIVER_RESOURCE_PREFIX: &str = "spark.driver.resource.";
}

use keys::*;

/// Spark's defaults for what the pod is built from.
pub(crate) const DEFAULT_DRIVER_PORT: i32 = 7078;
pub(crate) const DEFAULT_BLOCK_MANAGER_PORT: i32 = 7079;
pub(crate) const DEFAULT_UI_PORT: i32 = 4040;
const JVM_OVERHEAD_FACTOR: &str = "0.1";
const NON_JVM_OVERHEAD_FACTOR: &str = "0.4";

/// Labels Spark sets on the driver itself and refuses in `spark.kubernetes.driver.label.*`.
pub(crate) const SPARK_DRIVER_LABELS: &[&str] = &[
    SPARK_VERSION_LABEL,
    SPARK_APP_SELECTOR_LABEL,
    SPARK_APP_NAME_LABEL,
    SPARK_ROLE_LABEL,
];
/// Same for executors (Spark's driver refuses them when it creates executors).
const SPARK_EXECUTOR_LABELS: &[&str] = &[
    SPARK_VERSION_LABEL,
    EXECUTOR_ID_LABEL,
    SPARK_APP_SELECTOR_LABEL,
    SPARK_APP_NAME_LABEL,
    SPARK_ROLE_LABEL,
    RESOURCE_PROFILE_ID_LABEL,
];

/// How Spark runs the main application file (`spark.kubernetes.resource.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    /// Java and Scala: the main jar joins `spark.jars`, `--class` is `spec.mainClass`.
    Java,
    /// PySpark: `--class org.apache.spark.deploy.PythonRunner <file.py>`.
    Python,
    /// SparkR: `--class org.apache.spark.deploy.RRunner <file.R>`.
    R,
}

impl Resource {
    pub(crate) fn of(kind: SparkApplicationType) -> Self {
        match kind {
            SparkApplicationType::Java | SparkApplicationType::Scala => Self::Java,
            SparkApplicationType::Python => Self::Python,
            SparkApplicationType::R => Self::R,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Java => "java",
            Self::Python => "python",
            Self::R => "r",
        }
    }

    /// Spark's default memory overhead factor: non-JVM drivers need room for the interpreter.
    fn default_overhead_factor(self) -> &'static str {
        match self {
            Self::Java => JVM_OVERHEAD_FACTOR,
            Self::Python | Self::R => NON_JVM_OVERHEAD_FACTOR,
        }
    }
}

/// What the driver command runs: `--class <main_class> <main_file>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MainApp {
    pub resource: Resource,
    pub main_class: String,
    pub main_file: String,
}

impl MainApp {
    pub(crate) fn of(ctx: &Ctx<'_>) -> Result<Self, SubmissionError> {
        let spec = &ctx.app.spec;
        if let Some(mode) = spec.mode.filter(|m| *m != DeployMode::Cluster) {
            return Err(SubmissionError::UnsupportedMode {
                app: ctx.app_ref.clone(),
                mode: mode.to_string(),
            });
        }
        let main_file = non_empty(spec.main_application_file.as_deref()).ok_or_else(|| {
            SubmissionError::Missing {
                app: ctx.app_ref.clone(),
                field: "spec.mainApplicationFile",
                why: "the jar, Python or R file to run",
            }
        })?;
        let resource = Resource::of(spec.type_);
        let main_class = match resource {
            Resource::Java => non_empty(spec.main_class.as_deref()).ok_or_else(|| {
                SubmissionError::Missing {
                    app: ctx.app_ref.clone(),
                    field: "spec.mainClass",
                    why: "Java and Scala apps need it (native submission cannot read the jar's manifest)",
                }
            })?,
            Resource::Python => "org.apache.spark.deploy.PythonRunner".to_string(),
            Resource::R => "org.apache.spark.deploy.RRunner".to_string(),
        };
        Ok(Self {
            resource,
            main_class,
            main_file,
        })
    }
}

/// The full Spark configuration of the submission (see the module doc for the order).
pub(crate) fn build(ctx: &Ctx<'_>, main: &MainApp) -> Result<Conf, SubmissionError> {
    let spec = &ctx.app.spec;
    let mut conf = Conf::new();
    kubeflow::before_spark_conf(ctx, &mut conf);
    for (key, value) in &spec.spark_conf {
        // kubeflow resolves the driver pod name itself (driver_pod_name honours this key).
        if key != DRIVER_POD_NAME {
            conf.insert(key.clone(), value.clone());
        }
    }
    kubeflow::monitoring_spark_conf(ctx, &mut conf);
    for (key, value) in &spec.hadoop_conf {
        conf.insert(format!("spark.hadoop.{key}"), value.clone());
    }
    kubeflow::after_spark_conf(ctx, &mut conf)?;
    submit_flags(ctx, main, &mut conf)?;
    driver_steps(ctx, main, &mut conf)?;
    check(ctx, &conf)?;
    Ok(conf)
}

/// Step 4: what spark-submit's own flags and `prepareSubmitEnvironment` set.
fn submit_flags(ctx: &Ctx<'_>, main: &MainApp, conf: &mut Conf) -> Result<(), SubmissionError> {
    let deps = &ctx.app.spec.deps;
    for (i, archive) in deps.archives.iter().enumerate() {
        archive_uri(archive).map_err(|reason| SubmissionError::Invalid {
            app: ctx.app_ref.clone(),
            field: format!("spec.deps.archives[{i}]"),
            value: archive.clone(),
            reason,
        })?;
    }
    conf.insert(MASTER.into(), ctx.opts.master_url.clone());
    conf.insert(DEPLOY_MODE.into(), "cluster".into());
    conf.insert(APP_NAME.into(), ctx.name.to_string());
    // A non-empty list replaces the sparkConf value (spark-submit's flag beats --conf). Entries
    // are copied byte for byte: archives keep their `#alias`.
    for (list, key) in [
        (&deps.jars, JARS),
        (&deps.files, FILES),
        (&deps.py_files, PY_FILES),
        (&deps.archives, ARCHIVES),
        (&deps.packages, PACKAGES),
        (&deps.exclude_packages, EXCLUDES),
        (&deps.repositories, REPOSITORIES),
    ] {
        if !list.is_empty() {
            conf.insert(key.into(), list.join(","));
        }
    }
    // The main jar joins spark.jars so executors get it; Python and R files do not.
    if main.resource == Resource::Java {
        let mut jars = split_list(conf.get(JARS));
        jars.push(main.main_file.clone());
        conf.insert(JARS.into(), jars.join(","));
    }
    // spark-submit always writes spark.submit.pyFiles, empty when there are none.
    let py_files = split_list(conf.get(PY_FILES)).join(",");
    conf.insert(PY_FILES.into(), py_files);
    // Cluster mode ignores a user's spark.driver.host: the driver Service provides it.
    conf.remove(DRIVER_HOST);
    Ok(())
}

/// Step 5: the system properties of Spark's driver feature steps, and the resolved images.
fn driver_steps(ctx: &Ctx<'_>, main: &MainApp, conf: &mut Conf) -> Result<(), SubmissionError> {
    // The objects are created in the app's namespace, whatever sparkConf says.
    conf.insert(NAMESPACE.into(), ctx.namespace.to_string());
    conf.insert(DRIVER_POD_NAME.into(), ctx.names.driver_pod.clone());
    conf.insert(APP_ID.into(), ctx.names.app_id.clone());
    conf.insert(SUBMIT_IN_DRIVER.into(), "true".into());
    let factor = match conf.get(MEMORY_OVERHEAD_FACTOR) {
        Some(f) => {
            parse_factor(ctx, MEMORY_OVERHEAD_FACTOR, f)?;
            f.clone()
        }
        None => main.resource.default_overhead_factor().to_string(),
    };
    conf.insert(MEMORY_OVERHEAD_FACTOR.into(), factor);
    let (driver_port, block_manager_port) =
        (driver_port(ctx, conf)?, block_manager_port(ctx, conf)?);
    conf.insert(
        DRIVER_HOST.into(),
        format!("{}.{}.svc", ctx.names.service, ctx.namespace),
    );
    conf.insert(DRIVER_PORT.into(), driver_port.to_string());
    conf.insert(
        DRIVER_BLOCK_MANAGER_PORT.into(),
        block_manager_port.to_string(),
    );
    conf.insert(RESOURCE_TYPE.into(), main.resource.as_str().into());
    resolve_images(ctx, conf)
}

/// Image precedence, per role: `spec.<role>.image`, `spec.image`, sparkConf
/// `spark.kubernetes.<role>.container.image`, sparkConf `spark.kubernetes.container.image`,
/// then the operator's `--default-spark-image`. Role keys are only written when they differ from
/// `spark.kubernetes.container.image`, as spark-submit would have them.
fn resolve_images(ctx: &Ctx<'_>, conf: &mut Conf) -> Result<(), SubmissionError> {
    let get = |conf: &Conf, key: &str| conf.get(key).filter(|v| !v.is_empty()).cloned();
    let base = get(conf, CONTAINER_IMAGE).or_else(|| {
        ctx.opts
            .default_image
            .clone()
            .filter(|image| !image.is_empty())
    });
    let driver = get(conf, DRIVER_IMAGE)
        .or_else(|| base.clone())
        .ok_or_else(|| SubmissionError::NoImage {
            app: ctx.app_ref.clone(),
        })?;
    let executor = get(conf, EXECUTOR_IMAGE)
        .or_else(|| base.clone())
        .ok_or_else(|| SubmissionError::NoExecutorImage {
            app: ctx.app_ref.clone(),
        })?;
    match &base {
        Some(image) => conf.insert(CONTAINER_IMAGE.into(), image.clone()),
        None => conf.remove(CONTAINER_IMAGE),
    };
    for (key, image) in [(DRIVER_IMAGE, driver), (EXECUTOR_IMAGE, executor)] {
        if base.as_ref() == Some(&image) {
            conf.remove(key);
        } else {
            conf.insert(key.into(), image);
        }
    }
    Ok(())
}

/// What Spark refuses at submission (or when it creates executors), refused here first.
fn check(ctx: &Ctx<'_>, conf: &Conf) -> Result<(), SubmissionError> {
    if let Some(value) = conf.get(DRIVER_BIND_ADDRESS) {
        return Err(invalid(
            ctx,
            DRIVER_BIND_ADDRESS,
            value,
            "is not supported on Kubernetes: the driver binds to its pod IP",
        ));
    }
    for (prefix, reserved) in [
        (DRIVER_LABEL_PREFIX, SPARK_DRIVER_LABELS),
        (EXECUTOR_LABEL_PREFIX, SPARK_EXECUTOR_LABELS),
    ] {
        for label in prefixed(conf, prefix).into_keys() {
            if reserved.contains(&label) {
                return Err(SubmissionError::Invalid {
                    app: ctx.app_ref.clone(),
                    field: format!("spec.sparkConf[\"{prefix}{label}\"]"),
                    value: label.to_string(),
                    reason: "this label is reserved for Spark's bookkeeping".into(),
                });
            }
        }
    }
    Ok(())
}

/// The driver's RPC port (`spark.driver.port`, default 7078).
pub(crate) fn driver_port(ctx: &Ctx<'_>, conf: &Conf) -> Result<i32, SubmissionError> {
    port(ctx, conf, DRIVER_PORT, DEFAULT_DRIVER_PORT)
}

/// The driver's block manager port (`spark.driver.blockManager.port`, else
/// `spark.blockManager.port`, default 7079).
pub(crate) fn block_manager_port(ctx: &Ctx<'_>, conf: &Conf) -> Result<i32, SubmissionError> {
    if conf.contains_key(DRIVER_BLOCK_MANAGER_PORT) {
        port(
            ctx,
            conf,
            DRIVER_BLOCK_MANAGER_PORT,
            DEFAULT_BLOCK_MANAGER_PORT,
        )
    } else {
        port(ctx, conf, BLOCK_MANAGER_PORT, DEFAULT_BLOCK_MANAGER_PORT)
    }
}

/// The Spark UI port (`spark.ui.port`, default 4040).
pub(crate) fn ui_port(ctx: &Ctx<'_>, conf: &Conf) -> Result<i32, SubmissionError> {
    port(ctx, conf, UI_PORT, DEFAULT_UI_PORT)
}

fn port(ctx: &Ctx<'_>, conf: &Conf, key: &str, default: i32) -> Result<i32, SubmissionError> {
    match conf.get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| invalid(ctx, key, v, "is not a port number (1-65535)")),
    }
}

/// A memory overhead factor: a non-negative number.
pub(crate) fn parse_factor(ctx: &Ctx<'_>, key: &str, value: &str) -> Result<f64, SubmissionError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| invalid(ctx, key, value, "is not a non-negative number (e.g. 0.1)"))
}

/// An `Invalid` error for configuration key `key`, naming the SparkApplication field it comes
/// from when there is one.
pub(crate) fn invalid(ctx: &Ctx<'_>, key: &str, value: &str, reason: &str) -> SubmissionError {
    let field = match key {
        DRIVER_MEMORY => "spec.driver.memory".to_string(),
        DRIVER_MEMORY_OVERHEAD => "spec.driver.memoryOverhead".to_string(),
        DRIVER_CORES => "spec.driver.cores".to_string(),
        MEMORY_OVERHEAD_FACTOR => "spec.memoryOverheadFactor".to_string(),
        _ => format!("spec.sparkConf[{key:?}]"),
    };
    SubmissionError::Invalid {
        app: ctx.app_ref.clone(),
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Entries under `prefix`, keyed by the rest of the key (empty rests are skipped), as Spark's
/// `parsePrefixedKeyValuePairs`.
pub(crate) fn prefixed<'c>(conf: &'c Conf, prefix: &str) -> BTreeMap<&'c str, &'c str> {
    conf.range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(prefix)?;
            (!rest.is_empty()).then_some((rest, v.as_str()))
        })
        .collect()
}

/// A comma-separated list as Spark reads it: entries trimmed, empty ones dropped.
fn split_list(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}
