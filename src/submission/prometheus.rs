//! The Prometheus ConfigMap `<app>-prom-conf` kubeflow's controller creates before it submits an
//! app with `spec.monitoring.prometheus` (`monitoring_config.go`): `metrics.properties` for
//! Spark's metrics system and `prometheus.yaml` for the JMX exporter agent. The pod mutation
//! rules mount it on the driver and in the executor pod template; the `-javaagent` option and
//! `spark.metrics.*` come from [`super::kubeflow`].
//!
//! Owned by the SparkApplication as in kubeflow (it exists before the driver), and labelled
//! with the attempt's submission id so the attempt's cleanup deletes it with the rest.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels::CREATED_BY_LABEL;

use super::ctx::Ctx;
use super::objects::{app_owner, operator_labels};

/// kubeflow's `<app>-prom-conf` (not shortened: the pod rules mount this very name).
pub(crate) fn config_map_name(app_name: &str) -> String {
    format!("{app_name}-prom-conf")
}

pub(crate) const METRICS_PROPERTIES_KEY: &str = "metrics.properties";
pub(crate) const PROMETHEUS_CONFIG_KEY: &str = "prometheus.yaml";

/// kubeflow's default `metrics.properties` (`pkg/common/prometheus.go`), byte for byte.
pub(crate) const DEFAULT_METRICS_PROPERTIES: &str = "
*.sink.jmx.class=org.apache.spark.metrics.sink.JmxSink
driver.source.jvm.class=org.apache.spark.metrics.source.JvmSource
executor.source.jvm.class=org.apache.spark.metrics.source.JvmSource";

/// kubeflow's default JMX exporter configuration, byte for byte.
pub(crate) const DEFAULT_PROMETHEUS_CONFIGURATION: &str = include_str!("prometheus.yaml");

/// The ConfigMap, or `None` when Prometheus is not configured or both files come from the
/// image (`metricsPropertiesFile` and `prometheus.configFile`).
pub(crate) fn config_map(ctx: &Ctx<'_>) -> Option<ConfigMap> {
    let monitoring = ctx.app.spec.monitoring.as_ref()?;
    let prometheus = monitoring.prometheus.as_ref()?;
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    let (props_in_image, config_in_image) = (
        set(&monitoring.metrics_properties_file),
        set(&prometheus.config_file),
    );
    if props_in_image && config_in_image {
        return None;
    }
    let mut data = BTreeMap::new();
    if !props_in_image {
        let props = monitoring
            .metrics_properties
            .clone()
            .unwrap_or_else(|| DEFAULT_METRICS_PROPERTIES.to_string());
        data.insert(METRICS_PROPERTIES_KEY.to_string(), props);
    }
    if !config_in_image {
        let config = prometheus
            .configuration
            .clone()
            .unwrap_or_else(|| DEFAULT_PROMETHEUS_CONFIGURATION.to_string());
        data.insert(PROMETHEUS_CONFIG_KEY.to_string(), config);
    }
    let mut labels = operator_labels(ctx);
    labels.insert(CREATED_BY_LABEL.to_string(), "true".to_string());
    Some(ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(ctx.name)),
            namespace: Some(ctx.namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![app_owner(ctx)]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    })
}
