//! The Spark configuration keys submission reads and writes, named once. The lowest submission
//! module: it names strings and imports nothing.

pub(crate) const MASTER: &str = "spark.master";
pub(crate) const DEPLOY_MODE: &str = "spark.submit.deployMode";
pub(crate) const APP_NAME: &str = "spark.app.name";
pub(crate) const APP_ID: &str = "spark.app.id";
pub(crate) const NAMESPACE: &str = "spark.kubernetes.namespace";
pub(crate) const DRIVER_POD_NAME: &str = "spark.kubernetes.driver.pod.name";
pub(crate) const SUBMIT_IN_DRIVER: &str = "spark.kubernetes.submitInDriver";
pub(crate) const WAIT_APP_COMPLETION: &str = "spark.kubernetes.submission.waitAppCompletion";
pub(crate) const RESOURCE_TYPE: &str = "spark.kubernetes.resource.type";
pub(crate) const CONTAINER_IMAGE: &str = "spark.kubernetes.container.image";
pub(crate) const DRIVER_IMAGE: &str = "spark.kubernetes.driver.container.image";
pub(crate) const EXECUTOR_IMAGE: &str = "spark.kubernetes.executor.container.image";
pub(crate) const PULL_POLICY: &str = "spark.kubernetes.container.image.pullPolicy";
pub(crate) const PULL_SECRETS: &str = "spark.kubernetes.container.image.pullSecrets";
pub(crate) const MEMORY_OVERHEAD_FACTOR: &str = "spark.kubernetes.memoryOverheadFactor";
pub(crate) const DRIVER_MEMORY_OVERHEAD_FACTOR: &str = "spark.driver.memoryOverheadFactor";
pub(crate) const PYTHON_VERSION: &str = "spark.kubernetes.pyspark.pythonVersion";
pub(crate) const PYSPARK_PYTHON: &str = "spark.pyspark.python";
pub(crate) const PYSPARK_DRIVER_PYTHON: &str = "spark.pyspark.driver.python";
pub(crate) const DRIVER_HOST: &str = "spark.driver.host";
pub(crate) const DRIVER_BIND_ADDRESS: &str = "spark.driver.bindAddress";
pub(crate) const DRIVER_PORT: &str = "spark.driver.port";
pub(crate) const DRIVER_BLOCK_MANAGER_PORT: &str = "spark.driver.blockManager.port";
pub(crate) const BLOCK_MANAGER_PORT: &str = "spark.blockManager.port";
pub(crate) const UI_PORT: &str = "spark.ui.port";
pub(crate) const CONNECT_PORT: &str = "spark.connect.grpc.binding.port";
pub(crate) const ALLOW_PRIVILEGE_ESCALATION: &str =
    "spark.kubernetes.securityContext.allowPrivilegeEscalation";
pub(crate) const DRIVER_ALLOW_PRIVILEGE_ESCALATION: &str =
    "spark.kubernetes.driver.securityContext.allowPrivilegeEscalation";
pub(crate) const DRIVER_CORES: &str = "spark.driver.cores";
pub(crate) const DRIVER_REQUEST_CORES: &str = "spark.kubernetes.driver.request.cores";
pub(crate) const DRIVER_LIMIT_CORES: &str = "spark.kubernetes.driver.limit.cores";
pub(crate) const DRIVER_MEMORY: &str = "spark.driver.memory";
pub(crate) const DRIVER_MEMORY_OVERHEAD: &str = "spark.driver.memoryOverhead";
pub(crate) const DRIVER_SERVICE_ACCOUNT: &str =
    "spark.kubernetes.authenticate.driver.serviceAccountName";
pub(crate) const DRIVER_TEMPLATE_CONTAINER: &str =
    "spark.kubernetes.driver.podTemplateContainerName";
pub(crate) const SCHEDULER_NAME: &str = "spark.kubernetes.scheduler.name";
pub(crate) const DRIVER_SCHEDULER_NAME: &str = "spark.kubernetes.driver.scheduler.name";
pub(crate) const JARS: &str = "spark.jars";
pub(crate) const FILES: &str = "spark.files";
pub(crate) const PY_FILES: &str = "spark.submit.pyFiles";
pub(crate) const ARCHIVES: &str = "spark.archives";
pub(crate) const PACKAGES: &str = "spark.jars.packages";
pub(crate) const EXCLUDES: &str = "spark.jars.excludes";
pub(crate) const REPOSITORIES: &str = "spark.jars.repositories";
pub(crate) const LOCAL_DIR: &str = "spark.local.dir";
pub(crate) const LOCAL_DIRS_TMPFS: &str = "spark.kubernetes.local.dirs.tmpfs";
pub(crate) const NODE_SELECTOR_PREFIX: &str = "spark.kubernetes.node.selector.";
pub(crate) const DRIVER_NODE_SELECTOR_PREFIX: &str = "spark.kubernetes.driver.node.selector.";
pub(crate) const DRIVER_LABEL_PREFIX: &str = "spark.kubernetes.driver.label.";
pub(crate) const EXECUTOR_LABEL_PREFIX: &str = "spark.kubernetes.executor.label.";
pub(crate) const DRIVER_ANNOTATION_PREFIX: &str = "spark.kubernetes.driver.annotation.";
pub(crate) const DRIVER_SERVICE_LABEL_PREFIX: &str = "spark.kubernetes.driver.service.label.";
pub(crate) const DRIVER_SERVICE_ANNOTATION_PREFIX: &str =
    "spark.kubernetes.driver.service.annotation.";
pub(crate) const DRIVER_ENV_PREFIX: &str = "spark.kubernetes.driverEnv.";
pub(crate) const DRIVER_SECRETS_PREFIX: &str = "spark.kubernetes.driver.secrets.";
pub(crate) const DRIVER_SECRET_KEY_REF_PREFIX: &str = "spark.kubernetes.driver.secretKeyRef.";
pub(crate) const DRIVER_VOLUMES_PREFIX: &str = "spark.kubernetes.driver.volumes.";
pub(crate) const DRIVER_RESOURCE_PREFIX: &str = "spark.driver.resource.";
