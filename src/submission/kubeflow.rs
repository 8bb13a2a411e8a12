//! The `--conf` settings kubeflow's Go operator hands to spark-submit
//! (`internal/controller/sparkapplication/submission.go` and `monitoring_config.go`), as
//! configuration entries. Map iteration in Go is random; here every map is a `BTreeMap`, so the
//! result is deterministic.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Volume;

use crate::crd::SparkPodSpec;
use crate::labels::{
    APP_NAME_LABEL, EXECUTOR_ID_LABEL, LAUNCHED_BY_LABEL, MUTATED_BY_LABEL,
    PROMETHEUS_PATH_ANNOTATION, PROMETHEUS_PORT_ANNOTATION, PROMETHEUS_SCRAPE_ANNOTATION,
    RESOURCE_PROFILE_ID_LABEL, SPARK_APP_NAME_LABEL, SPARK_APP_SELECTOR_LABEL, SPARK_ROLE_LABEL,
    SPARK_VERSION_LABEL, SUBMISSION_ID_LABEL,
};

use super::conf::Conf;
use super::ctx::Ctx;
use super::error::SubmissionError;
use super::keys::*;

/// Labels never copied from the SparkApplication's or the role's labels.
const PROTECTED_LABELS: &[&str] = &[
    APP_NAME_LABEL,
    LAUNCHED_BY_LABEL,
    SUBMISSION_ID_LABEL,
    SPARK_VERSION_LABEL,
    SPARK_APP_SELECTOR_LABEL,
    SPARK_APP_NAME_LABEL,
    SPARK_ROLE_LABEL,
    EXECUTOR_ID_LABEL,
    RESOURCE_PROFILE_ID_LABEL,
];
const LOCAL_DIR_VOLUME_PREFIX: &str = "spark-local-dir-";
/// Where the Prometheus ConfigMap (`<app>-prom-conf`) is mounted, and its keys.
const PROMETHEUS_MOUNT_PATH: &str = "/etc/metrics/conf";
const DEFAULT_PROMETHEUS_PORT: i32 = 8090;

/// The keys one role's settings go to.
struct Role {
    name: &'static str,
    label: &'static str,
    annotation: &'static str,
    env: &'static str,
    secrets: &'static str,
    secret_key_ref: &'static str,
    volumes: &'static str,
    image: &'static str,
    cores: &'static str,
    request_cores: &'static str,
    limit_cores: &'static str,
    memory: &'static str,
    memory_overhead: &'static str,
    service_account: &'static str,
    java_options: &'static str,
}

const DRIVER: Role = Role {
    name: "driver",
    label: DRIVER_LABEL_PREFIX,
    annotation: DRIVER_ANNOTATION_PREFIX,
    env: DRIVER_ENV_PREFIX,
    secrets: DRIVER_SECRETS_PREFIX,
    secret_key_ref: DRIVER_SECRET_KEY_REF_PREFIX,
    volumes: DRIVER_VOLUMES_PREFIX,
    image: DRIVER_IMAGE,
    cores: DRIVER_CORES,
    request_cores: DRIVER_REQUEST_CORES,
    limit_cores: DRIVER_LIMIT_CORES,
    memory: DRIVER_MEMORY,
    memory_overhead: DRIVER_MEMORY_OVERHEAD,
    service_account: DRIVER_SERVICE_ACCOUNT,
    java_options: "spark.driver.extraJavaOptions",
};

const EXECUTOR: Role = Role {
    name: "executor",
    label: EXECUTOR_LABEL_PREFIX,
    annotation: "spark.kubernetes.executor.annotation.",
    env: "spark.executorEnv.",
    secrets: "spark.kubernetes.executor.secrets.",
    secret_key_ref: "spark.kubernetes.executor.secretKeyRef.",
    volumes: "spark.kubernetes.executor.volumes.",
    image: EXECUTOR_IMAGE,
    cores: "spark.executor.cores",
    request_cores: "spark.kubernetes.executor.request.cores",
    limit_cores: "spark.kubernetes.executor.limit.cores",
    memory: "spark.executor.memory",
    memory_overhead: "spark.executor.memoryOverhead",
    service_account: "spark.kubernetes.authenticate.executor.serviceAccountName",
    java_options: "spark.executor.extraJavaOptions",
};

/// The settings kubeflow passes before `sparkConf`, which `sparkConf` can therefore override.
pub(crate) fn before_spark_conf(ctx: &Ctx<'_>, conf: &mut Conf) {
    let spec = &ctx.app.spec;
    conf.insert(NAMESPACE.into(), ctx.namespace.to_string());
    let mut set = |key: &str, value: Option<&String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            conf.insert(key.to_string(), v.clone());
        }
    };
    set(CONTAINER_IMAGE, spec.image.as_ref());
    set(PULL_POLICY, spec.image_pull_policy.as_ref());
    set(PULL_SECRETS, Some(&spec.image_pull_secrets.join(",")));
    set(PYTHON_VERSION, spec.python_version.as_ref());
    set(MEMORY_OVERHEAD_FACTOR, spec.memory_overhead_factor.as_ref());
    // The operator never waits for the application (there is no spark-submit process to wait).
    conf.insert(WAIT_APP_COMPLETION.into(), "false".into());
}

/// Prometheus monitoring: kubeflow writes these into `sparkConf` itself, so they override the
/// user's values of the same keys.
pub(crate) fn monitoring_spark_conf(ctx: &Ctx<'_>, conf: &mut Conf) {
    let Some(monitoring) = &ctx.app.spec.monitoring else {
        return;
    };
    if monitoring.prometheus.is_none() {
        return;
    }
    conf.insert(
        "spark.metrics.namespace".into(),
        format!("{}.{}", ctx.namespace, ctx.name),
    );
    let metrics_conf = monitoring
        .metrics_properties_file
        .clone()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| format!("{PROMETHEUS_MOUNT_PATH}/metrics.properties"));
    conf.insert("spark.metrics.conf".into(), metrics_conf);
}

/// The settings kubeflow passes after `sparkConf`, which win over it.
pub(crate) fn after_spark_conf(ctx: &Ctx<'_>, conf: &mut Conf) -> Result<(), SubmissionError> {
    let spec = &ctx.app.spec;
    conf.insert(DRIVER_POD_NAME.into(), ctx.names.driver_pod.clone());
    role(ctx, conf, &DRIVER, &spec.driver.pod)?;
    let driver = &spec.driver;
    let mut set = |key: &str, value: Option<&String>| {
        if let Some(v) = value {
            conf.insert(key.to_string(), v.clone());
        }
    };
    set(DRIVER.request_cores, driver.core_request.as_ref());
    set(
        "spark.kubernetes.driver.master",
        driver.kubernetes_master.as_ref(),
    );
    for (key, value) in &driver.service_labels {
        conf.insert(format!("{DRIVER_SERVICE_LABEL_PREFIX}{key}"), value.clone());
    }
    for (key, value) in &driver.service_annotations {
        conf.insert(
            format!("{DRIVER_SERVICE_ANNOTATION_PREFIX}{key}"),
            value.clone(),
        );
    }
    insert_java_options(ctx, conf, &DRIVER, driver.java_options.as_deref());

    let executor = &spec.executor;
    role(ctx, conf, &EXECUTOR, &executor.pod)?;
    // Executors are not mutated before they reach the webhook (the driver is: see driver.rs),
    // so they keep kubeflow's marker.
    conf.insert(
        format!("{}{MUTATED_BY_LABEL}", EXECUTOR.label),
        "true".into(),
    );
    if let Some(n) = executor.instances {
        conf.insert("spark.executor.instances".into(), n.to_string());
    }
    if let Some(v) = &executor.core_request {
        conf.insert(EXECUTOR.request_cores.into(), v.clone());
    }
    if let Some(v) = executor.delete_on_termination {
        conf.insert(
            "spark.kubernetes.executor.deleteOnTermination".into(),
            v.to_string(),
        );
    }
    insert_java_options(ctx, conf, &EXECUTOR, executor.java_options.as_deref());

    for (key, value) in &spec.node_selector {
        conf.insert(format!("{NODE_SELECTOR_PREFIX}{key}"), value.clone());
    }
    dynamic_allocation(ctx, conf);
    Ok(())
}

/// Everything kubeflow passes the same way for driver and executor.
fn role(
    ctx: &Ctx<'_>,
    conf: &mut Conf,
    role: &Role,
    pod: &SparkPodSpec,
) -> Result<(), SubmissionError> {
    let spec = &ctx.app.spec;
    let label = |key: &str| format!("{}{key}", role.label);
    conf.insert(label(APP_NAME_LABEL), ctx.name.to_string());
    conf.insert(label(LAUNCHED_BY_LABEL), "true".into());
    conf.insert(label(SUBMISSION_ID_LABEL), ctx.names.submission_id.clone());
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    if let Some(image) = non_empty(&pod.image).or_else(|| non_empty(&spec.image)) {
        conf.insert(role.image.into(), image);
    }
    if let Some(cores) = pod.cores {
        conf.insert(role.cores.into(), cores.to_string());
    }
    for (key, value) in [
        (role.limit_cores, &pod.core_limit),
        (role.memory, &pod.memory),
        (role.memory_overhead, &pod.memory_overhead),
        (role.service_account, &pod.service_account),
    ] {
        if let Some(v) = value {
            conf.insert(key.into(), v.clone());
        }
    }
    // Labels Spark or the operator own are never taken from the user (the pod mutation rules
    // skip them too): the submission-id label is how a retried create recognises its driver.
    for (key, value) in ctx.app.pod_labels(&pod.labels) {
        if !PROTECTED_LABELS.contains(&key.as_str()) {
            conf.insert(label(key), value.clone());
        }
    }
    for (key, value) in role_annotations(ctx, role, pod) {
        conf.insert(format!("{}{key}", role.annotation), value);
    }
    for (name, secret) in &pod.env_secret_key_refs {
        conf.insert(
            format!("{}{name}", role.secret_key_ref),
            format!("{}:{}", secret.name, secret.key),
        );
    }
    for (name, value) in &pod.env_vars {
        conf.insert(format!("{}{name}", role.env), value.clone());
    }
    for secret in &pod.secrets {
        conf.insert(
            format!("{}{}", role.secrets, secret.name),
            secret.path.clone(),
        );
        if let Some((name, file)) = secret.secret_type.env_var() {
            conf.insert(format!("{}{name}", role.env), join_path(&secret.path, file));
        }
    }
    local_dir_volumes(ctx, conf, role, pod)
}

/// The role's annotations plus, when its metrics are exposed through Prometheus, the scrape
/// annotations (which win, as in kubeflow).
fn role_annotations(ctx: &Ctx<'_>, role: &Role, pod: &SparkPodSpec) -> BTreeMap<String, String> {
    let mut annotations = pod.annotations.clone();
    if let Some(port) = prometheus_port(ctx, role) {
        annotations.insert(PROMETHEUS_SCRAPE_ANNOTATION.into(), "true".into());
        annotations.insert(PROMETHEUS_PORT_ANNOTATION.into(), port.to_string());
        annotations.insert(PROMETHEUS_PATH_ANNOTATION.into(), "/metrics".into());
    }
    annotations
}

/// The exporter port when Prometheus is configured and this role's metrics are exposed.
fn prometheus_port(ctx: &Ctx<'_>, role: &Role) -> Option<i32> {
    let monitoring = ctx.app.spec.monitoring.as_ref()?;
    let prometheus = monitoring.prometheus.as_ref()?;
    let exposed = if role.name == "driver" {
        monitoring.expose_driver_metrics
    } else {
        monitoring.expose_executor_metrics
    };
    exposed.then(|| prometheus.port.unwrap_or(DEFAULT_PROMETHEUS_PORT))
}

/// `javaOptions`, with the Prometheus JMX exporter agent appended when the role's metrics are
/// exposed.
fn insert_java_options(ctx: &Ctx<'_>, conf: &mut Conf, role: &Role, options: Option<&str>) {
    let agent = prometheus_port(ctx, role).and_then(|port| {
        let prometheus = ctx.app.spec.monitoring.as_ref()?.prometheus.as_ref()?;
        let config = prometheus
            .config_file
            .clone()
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| format!("{PROMETHEUS_MOUNT_PATH}/prometheus.yaml"));
        Some(format!(
            "-javaagent:{}={port}:{config}",
            prometheus.jmx_exporter_jar
        ))
    });
    let value = match (options, agent) {
        (Some(o), Some(a)) => Some(format!("{o} {a}")),
        (Some(o), None) => Some(o.to_string()),
        (None, a) => a,
    };
    if let Some(v) = value {
        conf.insert(role.java_options.into(), v);
    }
}

/// `spark-local-dir-*` volumes named by the role's `volumeMounts` become Spark volume settings
/// (`spark.kubernetes.<role>.volumes.<type>.<name>.*`), so Spark uses them as scratch space
/// instead of its default emptyDir. Other volumes are mounted by the pod mutation rules.
fn local_dir_volumes(
    ctx: &Ctx<'_>,
    conf: &mut Conf,
    role: &Role,
    pod: &SparkPodSpec,
) -> Result<(), SubmissionError> {
    for (i, mount) in pod.volume_mounts.iter().enumerate() {
        if !mount.name.starts_with(LOCAL_DIR_VOLUME_PREFIX) {
            continue;
        }
        let field = format!("spec.{}.volumeMounts[{i}].name", role.name);
        let volume = ctx
            .app
            .spec
            .volumes
            .iter()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| SubmissionError::Invalid {
                app: ctx.app_ref.clone(),
                field: field.clone(),
                value: mount.name.clone(),
                reason: "names a volume that is not in spec.volumes".into(),
            })?;
        let options = volume_options(volume).ok_or_else(|| SubmissionError::Invalid {
            app: ctx.app_ref.clone(),
            field,
            value: mount.name.clone(),
            reason: "a spark-local-dir volume must be an emptyDir, hostPath, nfs or \
                     persistentVolumeClaim"
                .into(),
        })?;
        let key = |kind: &str, rest: &str| format!("{}{kind}.{}.{rest}", role.volumes, volume.name);
        let kind = options.kind;
        if !mount.mount_path.is_empty() {
            conf.insert(key(kind, "mount.path"), mount.mount_path.clone());
        }
        if let Some(sub) = mount.sub_path.as_ref().filter(|s| !s.is_empty()) {
            conf.insert(key(kind, "mount.subPath"), sub.clone());
        }
        if mount.read_only == Some(true) {
            conf.insert(key(kind, "mount.readOnly"), "true".into());
        }
        for (name, value) in options.values {
            conf.insert(key(kind, &format!("options.{name}")), value);
        }
    }
    Ok(())
}

struct VolumeOptions {
    kind: &'static str,
    values: Vec<(&'static str, String)>,
}

fn volume_options(volume: &Volume) -> Option<VolumeOptions> {
    let mut values = Vec::new();
    let kind = if let Some(e) = &volume.empty_dir {
        if let Some(size) = &e.size_limit {
            values.push(("sizeLimit", size.0.clone()));
        }
        if let Some(medium) = e.medium.as_ref().filter(|m| !m.is_empty()) {
            values.push(("medium", medium.clone()));
        }
        "emptyDir"
    } else if let Some(h) = &volume.host_path {
        values.push(("path", h.path.clone()));
        if let Some(t) = &h.type_ {
            values.push(("type", t.clone()));
        }
        "hostPath"
    } else if let Some(n) = &volume.nfs {
        values.push(("path", n.path.clone()));
        values.push(("server", n.server.clone()));
        if n.read_only == Some(true) {
            values.push(("readOnly", "true".into()));
        }
        "nfs"
    } else if let Some(p) = &volume.persistent_volume_claim {
        values.push(("claimName", p.claim_name.clone()));
        if p.read_only == Some(true) {
            values.push(("readOnly", "true".into()));
        }
        "persistentVolumeClaim"
    } else {
        return None;
    };
    Some(VolumeOptions { kind, values })
}

fn dynamic_allocation(ctx: &Ctx<'_>, conf: &mut Conf) {
    let Some(da) = ctx
        .app
        .spec
        .dynamic_allocation
        .as_ref()
        .filter(|d| d.is_enabled())
    else {
        return;
    };
    let mut set = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            conf.insert(format!("spark.dynamicAllocation.{key}"), v);
        }
    };
    set("enabled", Some("true".into()));
    set(
        "initialExecutors",
        da.initial_executors.map(|n| n.to_string()),
    );
    set("minExecutors", da.min_executors.map(|n| n.to_string()));
    set("maxExecutors", da.max_executors.map(|n| n.to_string()));
    // Shuffle tracking replaces the external shuffle service Kubernetes does not have.
    set(
        "shuffleTracking.enabled",
        Some(da.shuffle_tracking_enabled.unwrap_or(true).to_string()),
    );
    set(
        "shuffleTracking.timeout",
        da.shuffle_tracking_timeout.map(|n| n.to_string()),
    );
}

/// `dir/file`, like Go's `filepath.Join` for the paths users write.
fn join_path(dir: &str, file: &str) -> String {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() && !dir.starts_with('/') {
        file.to_string()
    } else {
        format!("{trimmed}/{file}")
    }
}
