//! Assembling the Spark configuration of a submission ([`Conf`]), in the order the Go operator
//! and spark-submit apply it, so the same value wins:
//!
//! 1. kubeflow's `--conf` that precede `sparkConf` (namespace, image, pull policy and secrets,
//!    pythonVersion, memoryOverheadFactor, waitAppCompletion): `sparkConf` overrides them;
//! 2. `sparkConf` (with the Prometheus `spark.metrics.*` and, for a UI Ingress on a sub-path,
//!    the `spark.ui.proxyBase` kubeflow writes into it) and `hadoopConf` as `spark.hadoop.*`;
//! 3. kubeflow's `--conf` that follow (driver/executor fields, labels, annotations, env, secrets,
//!    local-dir volumes, nodeSelector, dynamic allocation): they override `sparkConf`;
//! 4. spark-submit's own flags (`--master`, `--deploy-mode`, `--name`, `--jars`, ...), which win
//!    over any `--conf`, plus the main jar appended to `spark.jars` and `spark.submit.pyFiles`;
//! 5. the properties Spark's driver feature steps add (pod name, app id, driver host and ports,
//!    resource type, memoryOverheadFactor), which win over everything.

use crate::crd::{DeployMode, SparkApplicationType};
use crate::validation::archive_uri;

use super::conf::{Conf, invalid, parse_factor};
use super::ctx::Ctx;
use super::error::SubmissionError;
use super::keys::*;
use super::{kubeflow, ui};
use crate::labels::{
    EXECUTOR_ID_LABEL, RESOURCE_PROFILE_ID_LABEL, SPARK_APP_NAME_LABEL, SPARK_APP_SELECTOR_LABEL,
    SPARK_ROLE_LABEL, SPARK_VERSION_LABEL,
};

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
    ui::proxy_conf(ctx, &mut conf);
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
    let (driver_port, block_manager_port) = (conf.driver_port(ctx)?, conf.block_manager_port(ctx)?);
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
        for label in conf.prefixed(prefix).into_keys() {
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

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}
