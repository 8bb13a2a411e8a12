//! The executor pod template: every executor mutation applied ahead of time.
//!
//! Spark's driver builds each executor from `spark.kubernetes.executor.podTemplateFile`,
//! keeping the template's volumes, env, security settings, sidecars and scheduling, and adding
//! its own parts (name, image, Spark's env, resources, ports). Shipping a template that already
//! carries what the webhook would add makes executors right even when the webhook is off or
//! down (kubeflow #1176, #2141), and the webhook then has nothing left to patch on them.
//!
//! The template rides in the attempt's `spark.properties` ConfigMap, mounted on the driver at
//! `SPARK_CONF_DIR`, as spark-submit itself ships a template through a ConfigMap.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::conf::Conf;
use super::conf_dir::SPARK_CONF_DIR;
use super::ctx::Ctx;
use super::error::SubmissionError;
use crate::crd::SparkApplication;
use crate::labels::SparkRole;
use crate::mutate::{self, MutationOptions};

/// ConfigMap key (and file name under `SPARK_CONF_DIR`) of the template.
pub(crate) const TEMPLATE_KEY: &str = "executor-pod-template.yaml";
pub(crate) const TEMPLATE_FILE_CONF: &str = "spark.kubernetes.executor.podTemplateFile";
pub(crate) const TEMPLATE_CONTAINER_CONF: &str =
    "spark.kubernetes.executor.podTemplateContainerName";
/// Spark 3's executor container name.
pub(crate) const EXECUTOR_CONTAINER: &str = "spark-kubernetes-executor";

/// Where the driver reads the template.
pub(crate) fn template_path() -> String {
    format!("{SPARK_CONF_DIR}/{TEMPLATE_KEY}")
}

/// Builds the template and points `conf` at it; returns its YAML. `None` when the app names
/// its own `spark.kubernetes.executor.podTemplateFile`: that file is the user's, and the
/// webhook still mutates the executors built from it.
pub(crate) fn attach(ctx: &Ctx<'_>, conf: &mut Conf) -> Result<Option<String>, SubmissionError> {
    if conf.get(TEMPLATE_FILE_CONF).is_some_and(|f| !f.is_empty()) {
        return Ok(None);
    }
    let pod = template(ctx.app, conf, &ctx.opts.mutation)?;
    let index = mutate::spark_container_index(&pod, ctx.app, SparkRole::Executor)?;
    let container = pod
        .spec
        .as_ref()
        .map(|s| s.containers[index].name.clone())
        .unwrap_or_default();
    let yaml = yaml_serde::to_string(&pod).map_err(|e| SubmissionError::Invalid {
        app: ctx.app_ref.clone(),
        field: "spec.executor".into(),
        value: String::new(),
        reason: format!("the executor pod template cannot be written: {e}"),
    })?;
    conf.insert(TEMPLATE_FILE_CONF.into(), template_path());
    conf.insert(TEMPLATE_CONTAINER_CONF.into(), container);
    Ok(Some(yaml))
}

/// `spec.executor.template` (or an empty pod with Spark's executor container), mutated by every
/// executor rule.
pub(crate) fn template(
    app: &SparkApplication,
    conf: &Conf,
    opts: &MutationOptions,
) -> Result<Pod, SubmissionError> {
    let mut pod = match &app.spec.executor.pod.template {
        Some(t) => Pod {
            metadata: t.metadata.clone().unwrap_or_default(),
            spec: t.spec.clone(),
            status: None,
        },
        None => Pod::default(),
    };
    let wanted = conf
        .get(TEMPLATE_CONTAINER_CONF)
        .filter(|n| !n.is_empty())
        .map_or(EXECUTOR_CONTAINER, String::as_str)
        .to_string();
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    if spec.containers.is_empty() {
        spec.containers.push(Container {
            name: wanted,
            ..Container::default()
        });
    }
    mutate::mutate_pod(app, SparkRole::Executor, &mut pod, opts)?;
    Ok(pod)
}
