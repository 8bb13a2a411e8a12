//! Prometheus JMX exporter: the exporter's ConfigMap, its port and the scrape annotations.
//!
//! The controller creates ConfigMap `<app>-prom-conf` (metrics.properties, prometheus.yaml)
//! and adds the `-javaagent` option; this rule makes the pods match it.

use k8s_openapi::api::core::v1::ContainerPort;

use crate::crd::{MonitoringSpec, PrometheusSpec};

use super::edit::PodEdit;
use super::util::{ensure_mount, ensure_port, ensure_volume};
use super::volumes::{config_map_volume, mount};
use super::{Ctx, MutateError};
use crate::labels::{
    PROMETHEUS_PATH_ANNOTATION, PROMETHEUS_PORT_ANNOTATION, PROMETHEUS_SCRAPE_ANNOTATION, SparkRole,
};

/// Where the exporter ConfigMap is mounted; the `-javaagent` option points here.
pub(crate) const PROMETHEUS_CONFIG_MOUNT_PATH: &str = "/etc/metrics/conf";
const DEFAULT_PORT: i32 = 8090;
const DEFAULT_PORT_NAME: &str = "jmx-exporter";

/// The exporter's port on the role's Spark container, and the field declaring it; `None` when
/// the role's metrics are not exposed.
pub(crate) fn exporter_port(ctx: &Ctx<'_>) -> Option<(ContainerPort, &'static str)> {
    let monitoring = ctx.app.spec.monitoring.as_ref()?;
    let prometheus = monitoring.prometheus.as_ref()?;
    let exposed = match ctx.role {
        SparkRole::Driver => monitoring.expose_driver_metrics,
        SparkRole::Executor => monitoring.expose_executor_metrics,
    };
    exposed.then(|| {
        let name = prometheus
            .port_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_PORT_NAME.to_string());
        let port = ContainerPort {
            name: Some(name),
            container_port: prometheus.port.unwrap_or(DEFAULT_PORT),
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        };
        (port, "spec.monitoring.prometheus")
    })
}

/// When `spec.monitoring.prometheus` is set and the role's metrics are exposed
/// (`exposeDriverMetrics` / `exposeExecutorMetrics`):
/// - annotations `prometheus.io/scrape=true`, `prometheus.io/port=<port>`,
///   `prometheus.io/path=/metrics` (kubeflow's controller adds them to the role's annotations
///   and they override the user's);
/// - the exporter port (`prometheus.port`, default 8090, named `prometheus.portName`, default
///   jmx-exporter, TCP) on the Spark container;
/// - unless both `metricsPropertiesFile` and `prometheus.configFile` point into the image (then
///   no ConfigMap exists): volume `<app>-prom-conf-vol` of ConfigMap `<app>-prom-conf`, mounted
///   read-only at /etc/metrics/conf.
pub(crate) fn prometheus(ctx: &Ctx<'_>, pod: &mut PodEdit<'_>) -> Result<(), MutateError> {
    let (Some(monitoring), Some((container_port, field))) =
        (ctx.app.spec.monitoring.as_ref(), exporter_port(ctx))
    else {
        return Ok(());
    };
    let Some(prometheus) = monitoring.prometheus.as_ref() else {
        return Ok(());
    };
    annotate(pod, container_port.container_port);
    ensure_port(ctx, pod, container_port, field)?;
    if config_in_image(monitoring, prometheus) {
        return Ok(());
    }
    let config_map = format!(
        "{}-prom-conf",
        ctx.app.metadata.name.as_deref().unwrap_or("")
    );
    let volume_name = format!("{config_map}-vol");
    ensure_volume(
        ctx,
        pod,
        config_map_volume(&config_map, &volume_name),
        &|| field.to_string(),
    )?;
    ensure_mount(
        ctx,
        pod,
        mount(&volume_name, PROMETHEUS_CONFIG_MOUNT_PATH, true),
        &|| field.to_string(),
    )
}

/// Both configuration files come from the image, so the controller creates no ConfigMap.
fn config_in_image(monitoring: &MonitoringSpec, prometheus: &PrometheusSpec) -> bool {
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    set(&monitoring.metrics_properties_file) && set(&prometheus.config_file)
}

fn annotate(pod: &mut PodEdit<'_>, port: i32) {
    let mut annotations = pod.annotations();
    for (key, value) in [
        (PROMETHEUS_SCRAPE_ANNOTATION, "true".to_string()),
        (PROMETHEUS_PORT_ANNOTATION, port.to_string()),
        (PROMETHEUS_PATH_ANNOTATION, "/metrics".to_string()),
    ] {
        annotations.insert(key.to_string(), value);
    }
}
