//! The Spark configuration of a submission ([`Conf`]): what ends up in `spark.properties`, and
//! the typed reads of it every builder needs (ports, prefixed entries). Below every other
//! submission module, which all read or write it (the assembly, `assemble`, fills it in).

use std::collections::BTreeMap;
use std::collections::btree_map;

use super::{Ctx, SubmissionError};

/// A Spark configuration, sorted by key (the order `spark.properties` is written in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conf(BTreeMap<String, String>);

impl Conf {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0.get(key)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Sets `key`, returning the value it replaces.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        self.0.insert(key, value)
    }

    /// Unsets `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> btree_map::Iter<'_, String, String> {
        self.0.iter()
    }

    /// The entries as a map, sorted by key.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The entries as a map, sorted by key.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }

    /// Entries under `prefix`, keyed by the rest of the key (empty rests are skipped), as Spark's
    /// `parsePrefixedKeyValuePairs`.
    pub fn prefixed(&self, prefix: &str) -> BTreeMap<&str, &str> {
        self.0
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(prefix)?;
                (!rest.is_empty()).then_some((rest, v.as_str()))
            })
            .collect()
    }

    /// The driver's RPC port (`spark.driver.port`, default 7078).
    pub(crate) fn driver_port(&self, ctx: &Ctx<'_>) -> Result<i32, SubmissionError> {
        self.port(ctx, DRIVER_PORT, DEFAULT_DRIVER_PORT)
    }

    /// The driver's block manager port (`spark.driver.blockManager.port`, else
    /// `spark.blockManager.port`, default 7079).
    pub(crate) fn block_manager_port(&self, ctx: &Ctx<'_>) -> Result<i32, SubmissionError> {
        if self.contains_key(DRIVER_BLOCK_MANAGER_PORT) {
            self.port(ctx, DRIVER_BLOCK_MANAGER_PORT, DEFAULT_BLOCK_MANAGER_PORT)
        } else {
            self.port(ctx, BLOCK_MANAGER_PORT, DEFAULT_BLOCK_MANAGER_PORT)
        }
    }

    /// The Spark UI port (`spark.ui.port`, default 4040).
    pub(crate) fn ui_port(&self, ctx: &Ctx<'_>) -> Result<i32, SubmissionError> {
        self.port(ctx, UI_PORT, DEFAULT_UI_PORT)
    }

    fn port(&self, ctx: &Ctx<'_>, key: &str, default: i32) -> Result<i32, SubmissionError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|p| (1..=65535).contains(p))
                .ok_or_else(|| invalid(ctx, key, v, "is not a port number (1-65535)")),
        }
    }
}

impl<'c> IntoIterator for &'c Conf {
    type Item = (&'c String, &'c String);
    type IntoIter = btree_map::Iter<'c, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

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
