//! The headless driver Service (`DriverServiceFeatureStep`) and the `spark.properties`
//! ConfigMap (`KubernetesClientUtils.buildConfigMap`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels::{APP_NAME_LABEL, SPARK_APP_SELECTOR_LABEL, SUBMISSION_ID_LABEL};

use super::conf::Conf;
use super::conf_dir::SPARK_PROPERTIES;
use super::ctx::Ctx;
use super::error::SubmissionError;
use super::keys::*;
use super::version::SparkVersion;
use super::{executor_template, props};

/// The headless Service executors reach the driver through (`spark.driver.host`). It selects
/// the driver by Spark's driver labels, as Spark does; from Spark 4.1 it also has the driver's
/// `spark-connect` port ([`SparkVersion`]). Labels: Spark's `spark-app-selector`,
/// `spec.driver.serviceLabels`, then the operator's app-name and submission-id labels.
pub(crate) fn service(
    ctx: &Ctx<'_>,
    conf: &Conf,
    selector: BTreeMap<String, String>,
    version: SparkVersion,
) -> Result<Service, SubmissionError> {
    let mut labels = BTreeMap::from([(
        SPARK_APP_SELECTOR_LABEL.to_string(),
        ctx.names.app_id.clone(),
    )]);
    labels.extend(owned(conf.prefixed(DRIVER_SERVICE_LABEL_PREFIX)));
    labels.extend(operator_labels(ctx));
    let annotations = owned(conf.prefixed(DRIVER_SERVICE_ANNOTATION_PREFIX));
    let mut ports: Vec<ServicePort> = [
        ("driver-rpc-port", conf.driver_port(ctx)?),
        ("blockmanager", conf.block_manager_port(ctx)?),
        ("spark-ui", conf.ui_port(ctx)?),
    ]
    .into_iter()
    .map(|(name, port)| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    })
    .collect();
    if let Some(port) = version.connect_port(ctx, conf)? {
        ports.push(ServicePort {
            name: Some("spark-connect".into()),
            port,
            target_port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            app_protocol: version.connect_app_protocol().map(str::to_string),
            ..ServicePort::default()
        });
    }
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(ctx.names.service.clone()),
            namespace: Some(ctx.namespace.to_string()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The immutable ConfigMap holding `spark.properties` (and, like Spark's, the namespace).
pub(crate) fn config_map(
    ctx: &Ctx<'_>,
    conf: &Conf,
    executor_template: Option<String>,
) -> ConfigMap {
    let mut data = BTreeMap::from([
        (
            SPARK_PROPERTIES.to_string(),
            props::render(conf.as_map(), &ctx.names.config_map),
        ),
        (NAMESPACE.to_string(), ctx.namespace.to_string()),
    ]);
    if let Some(template) = executor_template {
        data.insert(executor_template::TEMPLATE_KEY.to_string(), template);
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(ctx.names.config_map.clone()),
            namespace: Some(ctx.namespace.to_string()),
            labels: Some(operator_labels(ctx)),
            ..ObjectMeta::default()
        },
        immutable: Some(true),
        data: Some(data),
        binary_data: None,
    }
}

/// kubeflow's labels on the objects it creates: app name and submission id.
pub(crate) fn operator_labels(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_NAME_LABEL.to_string(), ctx.name.to_string()),
        (
            SUBMISSION_ID_LABEL.to_string(),
            ctx.names.submission_id.clone(),
        ),
    ])
}

/// The SparkApplication as controller owner (kubeflow's `GetOwnerReference`), for the objects
/// created before the driver exists.
pub(crate) fn app_owner(ctx: &Ctx<'_>) -> OwnerReference {
    OwnerReference {
        api_version: "sparkoperator.k8s.io/v1beta2".into(),
        kind: "SparkApplication".into(),
        name: ctx.name.to_string(),
        uid: ctx.app.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub(crate) fn owned(map: BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    map.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
