//! Native submission: the objects `spark-submit --deploy-mode cluster` would create for a
//! SparkApplication (driver pod, headless driver Service, `spark.properties` ConfigMap), built
//! in-process instead of by a `spark-submit` JVM per application.
//!
//! The Spark configuration reproduces the `--conf`s kubeflow's Go operator passes and what
//! spark-submit and Spark's Kubernetes feature steps (3.3) add ([`assemble`] documents the order).
//! The driver pod then goes through [`mutate::mutate_pod`], so it is complete without the
//! webhook (which finds nothing left to change).
//!
//! Everything is deterministic: names and ids derive from the app's uid and the attempt number
//! ([`names`]), so rebuilding after a crash gives the same objects and a second create fails
//! with AlreadyExists rather than starting a second driver.
//!
//! Not done here, by the caller: creating the objects (ConfigMap and Service after the driver
//! pod, then [`owned_by_driver`] with the pod's uid, as Spark does), the Prometheus ConfigMap
//! `<app>-prom-conf`, the web UI Service/Ingress. Executor pod templates are not supported yet.

mod assemble;
pub(crate) mod conf;
mod conf_dir;
mod ctx;
mod driver;
mod error;
mod executor_template;
mod keys;
mod kubeflow;
mod names;
mod objects;
mod options;
mod props;
pub mod spark_submit;
mod submitter;
mod volumes;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Serialize;

use crate::crd::SparkApplication;
use crate::labels::SparkRole;
use crate::mutate;

use ctx::Ctx;

pub use conf::Conf;
pub(crate) use conf::DEFAULT_UI_PORT;
pub use error::SubmissionError;
pub use names::driver_pod_name;
pub use options::{DEFAULT_MASTER_URL, SubmitOptions};
pub use props::render as render_properties;
pub use submitter::Submitter;

/// The objects of one submission attempt, ready to create (in the app's namespace).
#[derive(Clone, Debug, PartialEq)]
pub struct Submission {
    /// Value of label `sparkoperator.k8s.io/submission-id` on all three objects (and on the
    /// executors): how a retried create recognises its own driver.
    pub submission_id: String,
    /// `spark.app.id`, label `spark-app-selector`, `SPARK_APPLICATION_ID`.
    pub app_id: String,
    pub driver_pod: Pod,
    /// Headless driver Service; no ownerReferences until [`owned_by_driver`].
    pub service: Service,
    /// `spark.properties`; no ownerReferences until [`owned_by_driver`].
    pub config_map: ConfigMap,
}

/// Builds submission attempt `attempt` (1-based; 0 counts as 1) of `app`.
pub fn build(
    app: &SparkApplication,
    attempt: u32,
    opts: &SubmitOptions,
) -> Result<Submission, SubmissionError> {
    // Kubeflow submits the defaulted app: its defaults are in what spark-submit is given.
    let app = &app.with_defaults();
    let ctx = Ctx::new(app, attempt, opts)?;
    let main = assemble::MainApp::of(&ctx)?;
    let mut conf = assemble::build(&ctx, &main)?;
    let executor_template = executor_template::attach(&ctx, &mut conf)?;
    let selector = driver::spark_labels(&ctx, &conf);
    let mut driver_pod = driver::pod(&ctx, &conf, &main)?;
    mutate::mutate_pod(app, SparkRole::Driver, &mut driver_pod, &opts.mutation)?;
    let service = objects::service(&ctx, &conf, selector)?;
    let config_map = objects::config_map(&ctx, &conf, executor_template);
    Ok(Submission {
        submission_id: ctx.names.submission_id.clone(),
        app_id: ctx.names.app_id.clone(),
        driver_pod,
        service,
        config_map,
    })
}

/// The Spark configuration of this attempt, sorted by key, as the spark-submit submitter passes
/// it: native submission's `spark.properties` minus the executor pod template, whose file only
/// exists in the ConfigMap native submission creates. Same errors as [`build`] (minus the
/// driver pod's).
pub fn properties(
    app: &SparkApplication,
    attempt: u32,
    opts: &SubmitOptions,
) -> Result<BTreeMap<String, String>, SubmissionError> {
    let app = &app.with_defaults();
    let ctx = Ctx::new(app, attempt, opts)?;
    let main = assemble::MainApp::of(&ctx)?;
    assemble::build(&ctx, &main).map(Conf::into_map)
}

/// Makes the Service and ConfigMap children of the created driver pod (controller reference,
/// as Spark sets it), so they are deleted with it.
pub fn owned_by_driver(sub: &mut Submission, driver_uid: &str) {
    let reference = OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: sub.driver_pod.metadata.name.clone().unwrap_or_default(),
        uid: driver_uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    sub.service.metadata.owner_references = Some(vec![reference.clone()]);
    sub.config_map.metadata.owner_references = Some(vec![reference]);
}

/// The three objects as one multi-document YAML stream, in the order ConfigMap, Service, Pod
/// (for a `render` subcommand). Deterministic: the same app and attempt render the same text.
pub fn render_yaml(sub: &Submission) -> String {
    [
        to_yaml(&sub.config_map),
        to_yaml(&sub.service),
        to_yaml(&sub.driver_pod),
    ]
    .concat()
}

fn to_yaml<T: Serialize>(object: &T) -> String {
    // These core objects only have string keys and no floats: serialising cannot fail, but a
    // failure would still show up in the output rather than as a panic.
    match yaml_serde::to_string(object) {
        Ok(yaml) => format!("---\n{yaml}"),
        Err(e) => format!("---\n# cannot render this object: {e}\n"),
    }
}
