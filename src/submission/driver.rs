//! The driver pod, as spark-submit builds it from the configuration (Spark 3.3's
//! `KubernetesDriverBuilder`: basic step, credentials, secrets, volumes, command, local dirs,
//! then the conf volume `Client` adds), before the pod mutation rules run on it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, KeyToPath,
    LocalObjectReference, ObjectFieldSelector, Pod, PodSpec, ResourceRequirements, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::labels::{
    SPARK_APP_NAME_LABEL, SPARK_APP_SELECTOR_LABEL, SPARK_ROLE_LABEL, SPARK_VERSION_LABEL,
};
use crate::quantity::parse_spark_mib;

use super::assemble::{MainApp, Resource};
use super::conf::{Conf, invalid, parse_factor};
use super::conf_dir::{SPARK_CONF_DIR, SPARK_PROPERTIES};
use super::ctx::Ctx;
use super::error::SubmissionError;
use super::keys::*;
use super::names::app_name_label;
use super::version::SparkVersion;
use super::{executor_template, volumes};

pub(crate) const DRIVER_CONTAINER: &str = "spark-kubernetes-driver";
const CONF_VOLUME: &str = "spark-conf-volume-driver";
/// Spark's minimum memory overhead, MiB.
const MIN_OVERHEAD_MIB: u64 = 384;
/// 0644: how Spark mounts its configuration files.
const CONF_FILE_MODE: i32 = 420;

/// The labels Spark puts on the driver (and selects it by in the driver Service): the
/// `spark.kubernetes.driver.label.*` ones, then Spark's own.
pub(crate) fn spark_labels(ctx: &Ctx<'_>, conf: &Conf) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = conf
        .prefixed(DRIVER_LABEL_PREFIX)
        .into_iter()
        .map(|(k, v)| (k.to_string(), substitute_app_id(v, &ctx.names.app_id)))
        .collect();
    labels.insert(
        SPARK_VERSION_LABEL.into(),
        ctx.app.spec.spark_version.clone(),
    );
    labels.insert(SPARK_APP_SELECTOR_LABEL.into(), ctx.names.app_id.clone());
    labels.insert(SPARK_APP_NAME_LABEL.into(), app_name_label(ctx.name));
    labels.insert(SPARK_ROLE_LABEL.into(), "driver".into());
    labels
}

/// The driver pod before mutation.
pub(crate) fn pod(
    ctx: &Ctx<'_>,
    conf: &Conf,
    main: &MainApp,
    version: SparkVersion,
) -> Result<Pod, SubmissionError> {
    let (mut pod, mut container) = from_template(ctx, conf);
    let mut spec = pod.spec.take().unwrap_or_default();
    basic(ctx, conf, version, &mut pod, &mut spec, &mut container)?;
    if spec.service_account_name.is_none() {
        spec.service_account_name = conf.get(DRIVER_SERVICE_ACCOUNT).cloned();
    }
    volumes::secrets(conf, &mut spec, &mut container);
    volumes::env_secrets(ctx, conf, &mut container)?;
    volumes::mount_volumes(ctx, conf, &mut spec, &mut container)?;
    command(ctx, conf, main, &mut container);
    volumes::local_dirs(conf, &ctx.names.local_dir, &mut spec, &mut container);
    conf_volume(ctx, conf, &mut spec, &mut container);
    spec.containers.push(container);
    pod.spec = Some(spec);
    Ok(pod)
}

/// `spec.driver.template` as the base of the pod, as Spark's `podTemplateFile`: the Spark
/// container is the one named by `spark.kubernetes.driver.podTemplateContainerName` (default
/// `spark-kubernetes-driver`), else the first; it is taken out and appended again at the end,
/// after the template's other containers, as spark-submit does.
fn from_template(ctx: &Ctx<'_>, conf: &Conf) -> (Pod, Container) {
    let Some(template) = &ctx.app.spec.driver.pod.template else {
        return (Pod::default(), Container::default());
    };
    let mut pod = Pod {
        metadata: template.metadata.clone().unwrap_or_default(),
        spec: template.spec.clone(),
        status: None,
    };
    let wanted = conf
        .get(DRIVER_TEMPLATE_CONTAINER)
        .filter(|n| !n.is_empty())
        .map_or(DRIVER_CONTAINER, String::as_str);
    let container = pod.spec.as_mut().and_then(|spec| {
        let named: Vec<usize> = spec
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name == wanted)
            .map(|(i, _)| i)
            .collect();
        let index = match named.as_slice() {
            [only] => *only,
            _ => 0,
        };
        (index < spec.containers.len()).then(|| spec.containers.remove(index))
    });
    (pod, container.unwrap_or_default())
}

/// `BasicDriverFeatureStep`: name, image, ports, environment, resources, labels, annotations,
/// node selector, pull secrets, scheduler; from Spark 4.1 a `spark-connect` port, from 4.3
/// `allowPrivilegeEscalation` ([`SparkVersion`]).
fn basic(
    ctx: &Ctx<'_>,
    conf: &Conf,
    version: SparkVersion,
    pod: &mut Pod,
    spec: &mut PodSpec,
    container: &mut Container,
) -> Result<(), SubmissionError> {
    if container.name.is_empty() {
        container.name = DRIVER_CONTAINER.into();
    }
    container.image = conf
        .get(DRIVER_IMAGE)
        .or_else(|| conf.get(CONTAINER_IMAGE))
        .cloned();
    container.image_pull_policy = Some(
        conf.get(PULL_POLICY)
            .filter(|p| !p.is_empty())
            .cloned()
            .unwrap_or_else(|| "IfNotPresent".into()),
    );
    let connect = version.connect_port(ctx, conf)?;
    let ports = container.ports.get_or_insert_with(Vec::new);
    for (name, port) in [
        ("driver-rpc-port", Some(conf.driver_port(ctx)?)),
        ("blockmanager", Some(conf.block_manager_port(ctx)?)),
        ("spark-ui", Some(conf.ui_port(ctx)?)),
        ("spark-connect", connect),
    ]
    .into_iter()
    .filter_map(|(name, port)| Some((name, port?)))
    {
        ports.push(ContainerPort {
            name: Some(name.into()),
            container_port: port,
            // Spark 3.4+ leaves it out; kube-apiserver 1.20 then rejects server-side apply.
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        });
    }
    let env = container.env.get_or_insert_with(Vec::new);
    // spark-submit records the submitting OS user; the operator has none to offer, so only a
    // proxy user is passed (the driver otherwise reports its container's user).
    if let Some(user) = ctx.app.spec.proxy_user.as_ref().filter(|u| !u.is_empty()) {
        env.push(value_env("SPARK_USER", user));
    }
    env.push(value_env("SPARK_APPLICATION_ID", &ctx.names.app_id));
    for (name, value) in conf.prefixed(DRIVER_ENV_PREFIX) {
        env.push(value_env(name, value));
    }
    env.push(EnvVar {
        name: "SPARK_DRIVER_BIND_ADDRESS".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: "status.podIP".into(),
            }),
            ..EnvVarSource::default()
        }),
    });
    resources(ctx, conf, container)?;
    if let Some(allow) = version.allow_privilege_escalation(ctx, conf)? {
        container
            .security_context
            .get_or_insert_with(SecurityContext::default)
            .allow_privilege_escalation = Some(allow);
    }

    let meta = &mut pod.metadata;
    meta.name = Some(ctx.names.driver_pod.clone());
    meta.namespace = Some(ctx.namespace.to_string());
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(spark_labels(ctx, conf));
    let annotations: BTreeMap<String, String> = conf
        .prefixed(DRIVER_ANNOTATION_PREFIX)
        .into_iter()
        .map(|(k, v)| (k.to_string(), substitute_app_id(v, &ctx.names.app_id)))
        .collect();
    if !annotations.is_empty() {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .extend(annotations);
    }

    spec.restart_policy = Some("Never".into());
    let selector: BTreeMap<String, String> = conf
        .prefixed(NODE_SELECTOR_PREFIX)
        .into_iter()
        .chain(conf.prefixed(DRIVER_NODE_SELECTOR_PREFIX))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !selector.is_empty() {
        spec.node_selector
            .get_or_insert_with(BTreeMap::new)
            .extend(selector);
    }
    let secrets: Vec<LocalObjectReference> = conf
        .get(PULL_SECRETS)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|name| LocalObjectReference {
                    name: name.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if !secrets.is_empty() {
        spec.image_pull_secrets
            .get_or_insert_with(Vec::new)
            .extend(secrets);
    }
    if let Some(scheduler) = conf
        .get(DRIVER_SCHEDULER_NAME)
        .or_else(|| conf.get(SCHEDULER_NAME))
        .filter(|s| !s.is_empty())
    {
        spec.scheduler_name = Some(scheduler.clone());
    }
    Ok(())
}

/// CPU: request `spark.kubernetes.driver.request.cores`, else `spark.driver.cores` (default 1);
/// limit `spark.kubernetes.driver.limit.cores` if set. Memory: request = limit =
/// `spark.driver.memory` (default 1g) + overhead, in MiB, where the overhead is
/// `spark.driver.memoryOverhead`, else max(384, factor × memory) with factor
/// `spark.driver.memoryOverheadFactor`, else `spark.kubernetes.memoryOverheadFactor` (0.1 for JVM
/// apps, 0.4 for Python and R unless set). Plus `spark.driver.resource.<name>.{amount,vendor}`
/// as `<vendor>/<name>` limits.
fn resources(ctx: &Ctx<'_>, conf: &Conf, container: &mut Container) -> Result<(), SubmissionError> {
    let cores = conf.get(DRIVER_CORES).map_or("1", String::as_str).trim();
    if cores.parse::<u32>().map_or(true, |c| c == 0) {
        return Err(invalid(
            ctx,
            DRIVER_CORES,
            cores,
            "is not a positive whole number",
        ));
    }
    let cpu_request = conf
        .get(DRIVER_REQUEST_CORES)
        .cloned()
        .unwrap_or_else(|| cores.to_string());
    let memory_mib = mib(ctx, conf, DRIVER_MEMORY, "1g")?;
    let overhead_mib = match conf.get(DRIVER_MEMORY_OVERHEAD) {
        Some(_) => mib(ctx, conf, DRIVER_MEMORY_OVERHEAD, "0")?,
        None => {
            let (key, value) = match conf.get(DRIVER_MEMORY_OVERHEAD_FACTOR) {
                Some(v) => (DRIVER_MEMORY_OVERHEAD_FACTOR, v.as_str()),
                None => (
                    MEMORY_OVERHEAD_FACTOR,
                    conf.get(MEMORY_OVERHEAD_FACTOR)
                        .map_or("0.1", String::as_str),
                ),
            };
            let factor = parse_factor(ctx, key, value)?;
            // Spark truncates (Scala's Double.toInt).
            let scaled = (factor * memory_mib as f64) as u64;
            scaled.max(MIN_OVERHEAD_MIB)
        }
    };
    let memory = Quantity(format!("{}Mi", memory_mib.saturating_add(overhead_mib)));
    let resources = container
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    requests.insert("cpu".into(), Quantity(cpu_request));
    requests.insert("memory".into(), memory.clone());
    let limits = resources.limits.get_or_insert_with(BTreeMap::new);
    if let Some(limit) = conf.get(DRIVER_LIMIT_CORES) {
        limits.insert("cpu".into(), Quantity(limit.clone()));
    }
    limits.insert("memory".into(), memory);
    let custom = conf.prefixed(DRIVER_RESOURCE_PREFIX);
    for (name, amount) in custom
        .iter()
        .filter_map(|(k, v)| k.strip_suffix(".amount").map(|name| (name, *v)))
    {
        let vendor = custom
            .get(format!("{name}.vendor").as_str())
            .ok_or_else(|| {
                invalid(
                    ctx,
                    &format!("{DRIVER_RESOURCE_PREFIX}{name}.amount"),
                    amount,
                    &format!(
                        "needs {DRIVER_RESOURCE_PREFIX}{name}.vendor (e.g. nvidia.com) to name \
                         the Kubernetes resource"
                    ),
                )
            })?;
        limits.insert(format!("{vendor}/{name}"), Quantity(amount.to_string()));
    }
    Ok(())
}

fn mib(ctx: &Ctx<'_>, conf: &Conf, key: &str, default: &str) -> Result<u64, SubmissionError> {
    let value = conf.get(key).map_or(default, String::as_str);
    parse_spark_mib(value).map_err(|e| invalid(ctx, key, value, &e.to_string()))
}

/// `DriverCommandFeatureStep`: `driver [--proxy-user <user>] --properties-file <file> --class
/// <main class> <main file> <arguments...>`; for Python, PYSPARK_PYTHON and
/// PYSPARK_DRIVER_PYTHON from `spark.pyspark.python` / `spark.pyspark.driver.python`.
fn command(ctx: &Ctx<'_>, conf: &Conf, main: &MainApp, container: &mut Container) {
    let mut args = vec!["driver".to_string()];
    if let Some(user) = ctx.app.spec.proxy_user.as_ref().filter(|u| !u.is_empty()) {
        args.extend(["--proxy-user".to_string(), user.clone()]);
    }
    args.extend([
        "--properties-file".to_string(),
        format!("{SPARK_CONF_DIR}/{SPARK_PROPERTIES}"),
        "--class".to_string(),
        main.main_class.clone(),
        main.main_file.clone(),
    ]);
    args.extend(ctx.app.spec.arguments.iter().cloned());
    container.args.get_or_insert_with(Vec::new).extend(args);
    if main.resource == Resource::Python {
        let python = conf.get(PYSPARK_PYTHON);
        let driver_python = conf.get(PYSPARK_DRIVER_PYTHON).or(python);
        let env = container.env.get_or_insert_with(Vec::new);
        for (name, value) in [
            ("PYSPARK_PYTHON", python),
            ("PYSPARK_DRIVER_PYTHON", driver_python),
        ] {
            if let Some(v) = value {
                env.push(value_env(name, v));
            }
        }
    }
}

/// The `spark.properties` ConfigMap at /opt/spark/conf, and SPARK_CONF_DIR pointing there.
fn conf_volume(ctx: &Ctx<'_>, conf: &Conf, spec: &mut PodSpec, container: &mut Container) {
    let mut items = vec![KeyToPath {
        key: SPARK_PROPERTIES.into(),
        path: SPARK_PROPERTIES.into(),
        mode: Some(CONF_FILE_MODE),
    }];
    // The executor template we ship (not a podTemplateFile the app named itself).
    if conf.get(executor_template::TEMPLATE_FILE_CONF) == Some(&executor_template::template_path())
    {
        items.push(KeyToPath {
            key: executor_template::TEMPLATE_KEY.into(),
            path: executor_template::TEMPLATE_KEY.into(),
            mode: Some(CONF_FILE_MODE),
        });
    }
    container
        .env
        .get_or_insert_with(Vec::new)
        .push(value_env("SPARK_CONF_DIR", SPARK_CONF_DIR));
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: CONF_VOLUME.into(),
            mount_path: SPARK_CONF_DIR.into(),
            ..VolumeMount::default()
        });
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: CONF_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: ctx.names.config_map.clone(),
            items: Some(items),
            default_mode: Some(CONF_FILE_MODE),
            optional: None,
        }),
        ..Volume::default()
    });
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// Spark's `Utils.substituteAppNExecIds` for the driver: `{{APP_ID}}` becomes the app id and
/// `{{EXECUTOR_ID}}` is dropped.
fn substitute_app_id(value: &str, app_id: &str) -> String {
    value
        .replace("{{APP_ID}}", app_id)
        .replace("{{EXECUTOR_ID}}", "")
}
