//! Native submission: the objects `spark-submit --deploy-mode cluster` would create for a
//! SparkApplication (driver pod, headless driver Service, `spark.properties` ConfigMap), built
//! in-process instead of by a `spark-submit` JVM per application, and those kubeflow's
//! controller adds around it: the Prometheus ConfigMap ([`prometheus`]), the Spark UI Service
//! and Ingresses ([`ui`]) and the driver's PodDisruptionBudget ([`pdb`]).
//!
//! The Spark configuration reproduces the `--conf`s kubeflow's Go operator passes and what
//! spark-submit and Spark's Kubernetes feature steps (3.3) add ([`assemble`] documents the order),
//! and the driver pod and Service take the shape of the app's Spark version's ([`version`]).
//! The driver pod then goes through [`mutate::mutate_pod`], so it is complete without the
//! webhook (which finds nothing left to change).
//!
//! Everything is deterministic: names and ids derive from the app's uid and the attempt number
//! ([`names`]), so rebuilding after a crash gives the same objects and a second create fails
//! with AlreadyExists rather than starting a second driver.
//!
//! A SparkConnect's server is such a driver too, running Spark's Connect server ([`connect`]).
//!
//! With a batch scheduler, the app is first given its pods' scheduling marks and a PodGroup is
//! built ([`crate::scheduling`]), as kubeflow's controller does before it submits.
//!
//! Not done here, by the caller: creating the objects (the Prometheus ConfigMap and the
//! PodGroup before the driver pod, the rest after it, once [`owned_by_driver`] gave them the pod's uid, as Spark
//! does).

mod assemble;
pub(crate) mod conf;
mod conf_dir;
pub mod connect;
mod ctx;
mod driver;
mod error;
mod executor_template;
mod keys;
mod kubeflow;
mod names;
mod objects;
mod options;
mod pdb;
mod prometheus;
mod props;
pub mod spark_submit;
mod submitter;
mod ui;
mod version;
mod volumes;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::DynamicObject;
use serde::Serialize;

use crate::crd::SparkApplication;
use crate::labels::SparkRole;
use crate::mutate;
use crate::scheduling::{self, Batch};

use ctx::Ctx;

pub use conf::Conf;
pub use error::SubmissionError;
pub use names::driver_pod_name;
pub use options::{DEFAULT_MASTER_URL, SubmitOptions, UiOptions};
pub use props::render as render_properties;
pub use submitter::Submitter;
pub use ui::WebUi;

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
    /// `<app>-prom-conf`, owned by the app: created before the driver, which mounts it.
    pub prometheus_config_map: Option<ConfigMap>,
    /// The Spark UI Service and Ingresses; no ownerReferences until [`owned_by_driver`].
    pub web_ui: WebUi,
    /// The driver's PodDisruptionBudget; no ownerReferences until [`owned_by_driver`].
    pub driver_pdb: Option<PodDisruptionBudget>,
    /// The batch scheduler's PodGroup, owned by the app: created before the driver.
    pub pod_group: Option<DynamicObject>,
}

/// The app as it is submitted: kubeflow's defaults, then its batch scheduler's marks.
fn effective(
    app: &SparkApplication,
    opts: &SubmitOptions,
) -> Result<(SparkApplication, Option<Batch>), SubmissionError> {
    let app = app.with_defaults();
    let invalid = |field: &str, reason: String| SubmissionError::Invalid {
        app: format!(
            "{}/{}",
            app.metadata.namespace.as_deref().unwrap_or_default(),
            app.metadata.name.as_deref().unwrap_or_default()
        ),
        field: field.into(),
        value: app.spec.batch_scheduler.clone().unwrap_or_default(),
        reason,
    };
    let batch = opts
        .batch
        .choose(&app)
        .map_err(|reason| invalid("spec.batchScheduler", reason))?;
    match batch {
        None => Ok((app, None)),
        Some(b) => {
            let prepared =
                scheduling::prepare(&app, &b).map_err(|e| invalid("spec.batchScheduler", e))?;
            Ok((prepared, Some(b)))
        }
    }
}

/// The PodGroup of `batch` for submission `submission_id`.
fn pod_group(
    app: &SparkApplication,
    batch: Option<&Batch>,
    submission_id: &str,
) -> Result<Option<DynamicObject>, SubmissionError> {
    let Some(b) = batch else { return Ok(None) };
    scheduling::group(app, b, submission_id).map_err(|reason| SubmissionError::Invalid {
        app: format!(
            "{}/{}",
            app.metadata.namespace.as_deref().unwrap_or_default(),
            app.metadata.name.as_deref().unwrap_or_default()
        ),
        field: "spec".into(),
        value: String::new(),
        reason: format!("its PodGroup cannot be built: {reason}"),
    })
}

/// Builds submission attempt `attempt` (1-based; 0 counts as 1) of `app`.
pub fn build(
    app: &SparkApplication,
    attempt: u32,
    opts: &SubmitOptions,
) -> Result<Submission, SubmissionError> {
    // Kubeflow submits the defaulted app: its defaults are in what spark-submit is given.
    let (app, batch) = effective(app, opts)?;
    let app = &app;
    let ctx = Ctx::new(app, attempt, opts)?;
    let main = assemble::MainApp::of(&ctx)?;
    let mut conf = assemble::build(&ctx, &main)?;
    let executor_template = executor_template::attach(&ctx, &mut conf)?;
    let version = version::SparkVersion::of(&ctx, &conf);
    let selector = driver::spark_labels(&ctx, &conf);
    let mut driver_pod = driver::pod(&ctx, &conf, &main, version)?;
    mutate::mutate_pod(app, SparkRole::Driver, &mut driver_pod, &opts.mutation)?;
    let service = objects::service(&ctx, &conf, selector, version)?;
    let config_map = objects::config_map(&ctx, &conf, executor_template);
    let web_ui = ui::build(&ctx, &conf)?;
    Ok(Submission {
        submission_id: ctx.names.submission_id.clone(),
        app_id: ctx.names.app_id.clone(),
        driver_pod,
        service,
        config_map,
        prometheus_config_map: prometheus::config_map(&ctx),
        web_ui,
        driver_pdb: pdb::build(&ctx),
        pod_group: pod_group(app, batch.as_ref(), &ctx.names.submission_id)?,
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
    let (app, _) = effective(app, opts)?;
    let ctx = Ctx::new(&app, attempt, opts)?;
    let main = assemble::MainApp::of(&ctx)?;
    assemble::build(&ctx, &main).map(Conf::into_map)
}

/// kubeflow's objects around the driver of attempt `attempt` (Prometheus ConfigMap, UI
/// Services and Ingresses, driver PodDisruptionBudget) without the driver's own: what the
/// spark-submit submitter creates beside Spark's. Same errors as [`properties`].
pub fn around_driver(
    app: &SparkApplication,
    attempt: u32,
    opts: &SubmitOptions,
) -> Result<AroundDriver, SubmissionError> {
    let (app, batch) = effective(app, opts)?;
    let ctx = Ctx::new(&app, attempt, opts)?;
    let main = assemble::MainApp::of(&ctx)?;
    let conf = assemble::build(&ctx, &main)?;
    Ok(AroundDriver {
        prometheus_config_map: prometheus::config_map(&ctx),
        web_ui: ui::build(&ctx, &conf)?,
        driver_pdb: pdb::build(&ctx),
        pod_group: pod_group(&app, batch.as_ref(), &ctx.names.submission_id)?,
    })
}

/// What [`around_driver`] builds.
#[derive(Clone, Debug, PartialEq)]
pub struct AroundDriver {
    pub prometheus_config_map: Option<ConfigMap>,
    pub web_ui: WebUi,
    pub driver_pdb: Option<PodDisruptionBudget>,
    pub pod_group: Option<DynamicObject>,
}

impl AroundDriver {
    /// Makes the UI objects and the PDB children of the created driver pod.
    pub fn owned_by_driver(&mut self, driver: &Pod) {
        let reference = driver_reference(
            driver.metadata.name.clone().unwrap_or_default(),
            driver.metadata.uid.as_deref().unwrap_or_default(),
        );
        own(&mut self.web_ui, &mut self.driver_pdb, &reference);
    }
}

fn driver_reference(name: String, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name,
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

fn own(ui: &mut WebUi, pdb: &mut Option<PodDisruptionBudget>, reference: &OwnerReference) {
    let owned = || Some(vec![reference.clone()]);
    for service in ui.service.iter_mut().chain(&mut ui.extra_services) {
        service.metadata.owner_references = owned();
    }
    for ingress in ui.ingress.iter_mut().chain(&mut ui.extra_ingresses) {
        ingress.metadata.owner_references = owned();
    }
    if let Some(pdb) = pdb {
        pdb.metadata.owner_references = owned();
    }
}

/// Makes the objects created after the driver pod its children (controller reference, as Spark
/// sets it on its Service and ConfigMap), so they are deleted with it.
pub fn owned_by_driver(sub: &mut Submission, driver_uid: &str) {
    let reference = driver_reference(
        sub.driver_pod.metadata.name.clone().unwrap_or_default(),
        driver_uid,
    );
    sub.service.metadata.owner_references = Some(vec![reference.clone()]);
    sub.config_map.metadata.owner_references = Some(vec![reference.clone()]);
    own(&mut sub.web_ui, &mut sub.driver_pdb, &reference);
}

impl Submission {
    /// The Services of the UI and of `driverIngressOptions`.
    pub fn ui_services(&self) -> impl Iterator<Item = &Service> {
        self.web_ui
            .service
            .iter()
            .chain(&self.web_ui.extra_services)
    }

    /// The Ingresses of the UI and of `driverIngressOptions`.
    pub fn ingresses(&self) -> impl Iterator<Item = &Ingress> {
        self.web_ui
            .ingress
            .iter()
            .chain(&self.web_ui.extra_ingresses)
    }
}

/// The objects as one multi-document YAML stream: the PodGroup and the Prometheus ConfigMap, then as before the
/// driver's ConfigMap, Service and pod, then the UI Services, Ingresses and the
/// PodDisruptionBudget (for a `render` subcommand). Deterministic: the same app and attempt
/// render the same text.
pub fn render_yaml(sub: &Submission) -> String {
    let mut out: Vec<String> = sub.pod_group.iter().map(to_yaml).collect();
    out.extend(sub.prometheus_config_map.iter().map(to_yaml));
    out.push(to_yaml(&sub.config_map));
    out.push(to_yaml(&sub.service));
    out.push(to_yaml(&sub.driver_pod));
    out.extend(sub.ui_services().map(to_yaml));
    out.extend(sub.ingresses().map(to_yaml));
    out.extend(sub.driver_pdb.iter().map(to_yaml));
    out.concat()
}

fn to_yaml<T: Serialize>(object: &T) -> String {
    // These core objects only have string keys and no floats: serialising cannot fail, but a
    // failure would still show up in the output rather than as a panic.
    match yaml_serde::to_string(object) {
        Ok(yaml) => format!("---\n{yaml}"),
        Err(e) => format!("---\n# cannot render this object: {e}\n"),
    }
}
