//! `spark-webhook render`: the offline view of a submission, for debugging an app before (or
//! without) a cluster — what sparkctl users lost. A ScheduledSparkApplication renders as its
//! next slots and the SparkApplication of the first, rendered like any other.

use std::io::Read;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::json;

use crate::crd::defaults::apply_defaults;
use crate::crd::{ScheduledSparkApplication, SparkApplication};
use crate::labels::{
    APP_NAME_LABEL, EXECUTOR_ID_LABEL, LAUNCHED_BY_LABEL, SPARK_APP_SELECTOR_LABEL,
    SPARK_ROLE_LABEL, SUBMISSION_ID_LABEL, SparkRole,
};
use crate::mutate::{self, MutationOptions};
use crate::schedules::state::{run_name, schedule_of};
use crate::scheduling::BatchOptions;
use crate::submission::{self, SubmitOptions, UiOptions};
use crate::validation;

/// What to render (`spark-webhook render`'s flags).
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// SparkApplication manifest (YAML or JSON); `-` reads standard input.
    pub file: PathBuf,
    /// Namespace for a manifest that names none.
    pub namespace: String,
    /// Submission attempt to render.
    pub attempt: u32,
    /// Image for apps that name none.
    pub default_spark_image: Option<String>,
    /// `serve --ingress-url-format`: render the UI Ingress.
    pub ingress_url_format: Option<String>,
    /// `serve --enable-driver-pdb`: render the driver's PodDisruptionBudget.
    pub enable_driver_pdb: bool,
    /// `serve --enable-batch-scheduler` and `--kube-scheduler-names`: render the PodGroup.
    pub batch: BatchOptions,
}

/// The rendered YAML stream, or one error line.
pub fn render(args: &RenderOptions) -> Result<String, String> {
    let text = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading standard input: {e}"))?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| format!("reading {}: {e}", args.file.display()))?
    };
    // A file may bundle what an app needs (a ConfigMap with its code, a Service): render each
    // SparkApplication in it and name what was left out.
    let mut out = String::new();
    let mut apps = 0;
    for (n, doc) in yaml_serde::Deserializer::from_str(&text).enumerate() {
        let at = format!("{} (document {})", args.file.display(), n + 1);
        let value = yaml_serde::Value::deserialize(doc).map_err(|e| format!("{at}: {e}"))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind == "ScheduledSparkApplication" {
            let scheduled: ScheduledSparkApplication = serde_path_to_error::deserialize(value)
                .map_err(|e| format!("{at}: {}: {}", e.path(), e.inner()))?;
            if apps > 0 {
                out.push_str("---\n");
            }
            out.push_str(&render_scheduled(scheduled, args)?);
            apps += 1;
            continue;
        }
        if !kind.is_empty() && kind != "SparkApplication" {
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or("");
            out.push_str(&format!("# not rendered: {kind} {name}\n"));
            continue;
        }
        let app: SparkApplication = serde_path_to_error::deserialize(value)
            .map_err(|e| format!("{at}: {}: {}", e.path(), e.inner()))?;
        if apps > 0 {
            out.push_str("---\n");
        }
        out.push_str(&render_app(app, args)?);
        apps += 1;
    }
    if apps == 0 {
        return Err(format!(
            "{}: no SparkApplication in it",
            args.file.display()
        ));
    }
    Ok(out)
}

/// How many upcoming slots a schedule's render lists.
const SLOTS_SHOWN: usize = 3;

/// A schedule: its next slots (offline, as if created now), then its first run rendered.
fn render_scheduled(
    mut s: ScheduledSparkApplication,
    args: &RenderOptions,
) -> Result<String, String> {
    s.metadata
        .namespace
        .get_or_insert_with(|| args.namespace.clone());
    let name = s.metadata.name.clone().unwrap_or_default();
    let findings = validation::validate_scheduled(&s);
    if let Some(errors) = findings.error_message() {
        return Err(format!(
            "ScheduledSparkApplication {name} is invalid: {errors}"
        ));
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    s.metadata
        .creation_timestamp
        .get_or_insert(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    let schedule = schedule_of(&s).map_err(|e| e.to_string())?;
    let mut slots = Vec::new();
    let mut at = now;
    while slots.len() < SLOTS_SHOWN {
        let Some(next) = schedule.next_after(at) else {
            break;
        };
        slots.push(next);
        at = next;
    }
    let Some(first) = slots.first().copied() else {
        return Err(format!(
            "ScheduledSparkApplication {name}: the schedule has no further slots"
        ));
    };
    let spec = &s.spec;
    let mut out = format!(
        "# ScheduledSparkApplication {name}: schedule {:?} in {}, concurrencyPolicy {}, suspend {}, keeps {} completed and {} failed runs\n",
        spec.schedule,
        spec.time_zone
            .as_deref()
            .filter(|z| !z.is_empty())
            .unwrap_or("UTC"),
        spec.policy().as_str(),
        spec.is_suspended(),
        spec.successful_run_history_limit
            .unwrap_or(crate::crd::DEFAULT_RUN_HISTORY_LIMIT),
        spec.failed_run_history_limit
            .unwrap_or(crate::crd::DEFAULT_RUN_HISTORY_LIMIT),
    );
    out.push_str("# next runs (an @every schedule counts from its creation; offline: now):\n");
    for slot in &slots {
        out.push_str(&format!("#   {} at {slot}\n", run_name(&name, *slot)));
    }
    out.push_str("# the first of them, as the SparkApplication the schedule creates:\n");
    let mut labels = s.metadata.labels.clone().unwrap_or_default();
    labels.insert(crate::labels::SCHEDULED_APP_NAME_LABEL.into(), name.clone());
    let mut run = SparkApplication::new(&run_name(&name, first), s.spec.template);
    run.metadata.namespace = s.metadata.namespace;
    run.metadata.labels = Some(labels);
    out.push_str(&render_app(run, args)?);
    Ok(out)
}

/// The objects a submission of `app` creates, and the webhook's patch for its executors.
fn render_app(mut app: SparkApplication, args: &RenderOptions) -> Result<String, String> {
    app.metadata
        .namespace
        .get_or_insert_with(|| args.namespace.clone());
    // Names and ids derive from the uid the apiserver assigns; offline, a fixed stand-in.
    let offline_uid = app.metadata.uid.is_none();
    app.metadata
        .uid
        .get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
    let name = app.metadata.name.clone().unwrap_or_default();
    let findings = validation::validate(&app);
    if let Some(errors) = findings.error_message() {
        return Err(format!("SparkApplication {name} is invalid: {errors}"));
    }
    let opts = SubmitOptions {
        default_image: args.default_spark_image.clone(),
        ui: UiOptions {
            ingress_url_format: args.ingress_url_format.clone(),
            ..UiOptions::default()
        },
        enable_driver_pdb: args.enable_driver_pdb,
        batch: args.batch.clone(),
        ..SubmitOptions::default()
    };
    let sub = submission::build(&app, args.attempt, &opts).map_err(|e| e.to_string())?;
    let mut out = String::new();
    if offline_uid {
        out.push_str("# metadata.uid unset: names and ids below use a stand-in uid and differ in a cluster\n");
    }
    for w in &findings.warnings {
        out.push_str(&format!("# warning: {w}\n"));
    }
    // What the app leaves unset and kubeflow's defaulter fills in, as submission uses it.
    for d in apply_defaults(&mut app.spec.clone()) {
        out.push_str(&format!("# default: spec.{}: {}\n", d.field, d.value));
    }
    out.push_str(&submission::render_yaml(&sub));

    // An executor pod as Spark's driver would create it, and what the webhook adds to it.
    let image = sub
        .driver_pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone());
    let executor = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-exec-1"), "namespace": app.metadata.namespace, "labels": {
            SPARK_ROLE_LABEL: SparkRole::Executor.as_str(), EXECUTOR_ID_LABEL: "1", SPARK_APP_SELECTOR_LABEL: sub.app_id,
            APP_NAME_LABEL: name, LAUNCHED_BY_LABEL: "true", SUBMISSION_ID_LABEL: sub.submission_id}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "spark-kubernetes-executor", "image": image, "args": ["executor"]}]}
    });
    let patch = mutate::pod_patch(
        &app,
        SparkRole::Executor,
        &executor,
        &MutationOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let patch_yaml = yaml_serde::to_string(&patch).map_err(|e| e.to_string())?;
    out.push_str("---\n# The webhook's JSON patch for each executor pod of this app:\n");
    for line in patch_yaml.lines() {
        out.push_str(&format!("# {line}\n"));
    }
    Ok(out)
}
