//! The driver's `SPARK_CONF_DIR`: where the attempt's ConfigMap is mounted, so the driver finds
//! `spark.properties` and the executor pod template there. Its own module because the driver
//! pod mounts it and the executor template points into it, and neither owns the other.

/// Where the `spark.properties` ConfigMap is mounted (Spark's `SPARK_CONF_DIR_INTERNAL`).
pub(crate) const SPARK_CONF_DIR: &str = "/opt/spark/conf";
/// ConfigMap key (and file name under `SPARK_CONF_DIR`) of the Spark configuration.
pub(crate) const SPARK_PROPERTIES: &str = "spark.properties";
