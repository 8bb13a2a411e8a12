//! The I/O shell around [`super::state`]: one controller per job namespace (or one for all)
//! watches the ScheduledSparkApplications and, by their label, their runs; a reconcile decides
//! on the cached view and, when a slot is due, decides again on a fresh GET and LIST before it
//! creates or deletes anything, so a lagging cache can never start a run twice. The order of
//! the writes keeps a crash at any point harmless: Replace's deletions, the run's create (an
//! AlreadyExists means it was started), the status (a merge patch held to the resourceVersion
//! read, [`crate::crd::patch`]: a stale view conflicts instead of overwriting), and only then
//! the pruning of old runs. A failed API call (a run the apiserver refuses) is retried after a
//! delay growing with the schedule's run of failures ([`ApiBackoff`]), so a broken template is
//! not reported every few seconds.
//!
//! Schedules are watched and handled as JSON ([`DynamicObject`]), never as the typed
//! SparkApplicationSpec of their template, which the controller only copies into each run:
//! typed, that deeply nested type deserialised inside the watch's stream overflowed a tokio
//! worker's stack in debug builds. The decision reads the few fields it needs ([`head`]).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Deserialize;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::state::{self, Decision, NewRun, Observed, RunState, RunView, SlotOutcome};
use crate::crd::{
    ConcurrencyPolicy, ScheduledSparkApplication, ScheduledSparkApplicationSpec,
    ScheduledSparkApplicationStatus, SparkApplication, patch,
};
use crate::events::{self, Event, EventType, Recorder};
use crate::failpoint::{self, FailPoint};
use crate::health::{ApiBackoff, WatchBackoff};
use crate::labels::SCHEDULED_APP_NAME_LABEL;
use crate::metrics::{Metrics, ScheduledRunLabels, ScheduledRunOutcome};
use crate::namespaces::{self, JobNamespaces};

/// What the schedule controllers need.
#[derive(Clone)]
pub struct ScheduleConfig {
    pub namespaces: JobNamespaces,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug, Error)]
pub enum ScheduleError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("status of {0} changed meanwhile; retrying")]
    Conflict(String),
}

struct Context {
    client: Client,
    runs: Store<DynamicObject>,
    runs_resource: ApiResource,
    schedules_resource: ApiResource,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// The served namespaces: under `--namespace-selector` the watch sees every namespace.
    namespaces: JobNamespaces,
    /// Each schedule's run of failed API calls, which spaces its retries out.
    api_backoff: ApiBackoff,
}

/// Runs the controllers of every job namespace until `shutdown`.
pub async fn run(client: Client, cfg: ScheduleConfig, shutdown: CancellationToken) {
    namespaces::run_per_scope(&cfg.namespaces, |ns| {
        run_scope(client.clone(), ns, cfg.clone(), shutdown.clone())
    })
    .await;
}

async fn run_scope(
    client: Client,
    namespace: Option<String>,
    cfg: ScheduleConfig,
    shutdown: CancellationToken,
) {
    let ar = ApiResource::erase::<SparkApplication>(&());
    let sr = ApiResource::erase::<ScheduledSparkApplication>(&());
    let (schedules, runs_api): (Api<DynamicObject>, Api<DynamicObject>) = match &namespace {
        Some(ns) => (
            Api::namespaced_with(client.clone(), ns, &sr),
            Api::namespaced_with(client.clone(), ns, &ar),
        ),
        None => (
            Api::all_with(client.clone(), &sr),
            Api::all_with(client.clone(), &ar),
        ),
    };
    let writer = reflector::store::Writer::new(ar.clone());
    let runs = writer.as_reader();
    let run_stream = watcher(
        runs_api,
        watcher::Config::default().labels(SCHEDULED_APP_NAME_LABEL),
    )
    .backoff(WatchBackoff::default())
    .reflect(writer)
    .touched_objects();
    let ctx = Arc::new(Context {
        client,
        runs,
        runs_resource: ar.clone(),
        schedules_resource: sr.clone(),
        recorder: cfg.recorder,
        metrics: cfg.metrics,
        namespaces: cfg.namespaces.clone(),
        api_backoff: ApiBackoff::default(),
    });
    // A namespace that starts to match `--namespace-selector`: its schedules are due a look.
    let selected = cfg.namespaces.added().map(|_| ());
    let token = shutdown.clone();
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("(all)"),
        "ScheduledSparkApplication controller started"
    );
    let owner = sr.clone();
    Controller::new_with(schedules, watcher::Config::default(), sr)
        .watches_stream_with(
            run_stream,
            move |run: DynamicObject| {
                let schedule = run.labels().get(SCHEDULED_APP_NAME_LABEL)?.clone();
                Some(
                    ObjectRef::new_with(&schedule, owner.clone()).within(run.namespace()?.as_str()),
                )
            },
            ar,
        )
        .reconcile_all_on(selected)
        .graceful_shutdown_on(async move { token.cancelled().await })
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            use kube::runtime::controller::Error as E;
            match result {
                // Reconciled, or gone: its next failure starts from the first delay again.
                Ok((schedule, _)) => ctx.api_backoff.succeeded(
                    schedule.namespace.as_deref().unwrap_or_default(),
                    &schedule.name,
                ),
                Err(E::ObjectNotFound(schedule)) => {
                    ctx.api_backoff.succeeded(
                        schedule.namespace.as_deref().unwrap_or_default(),
                        &schedule.name,
                    );
                    tracing::debug!(%schedule, "schedule reconcile failed: gone")
                }
                Err(e @ E::ReconcilerFailed(ScheduleError::Conflict(_), _)) => {
                    tracing::debug!(error = %e, "schedule reconcile failed")
                }
                Err(e) => tracing::warn!(error = %e, "schedule reconcile failed"),
            }
            futures::future::ready(())
        })
        .await;
}

/// A conflict is retried at once on fresh data; an API error after a delay doubling with the
/// schedule's consecutive failures (see [`crate::health::api_retry_delay`]).
fn error_policy(obj: Arc<DynamicObject>, error: &ScheduleError, ctx: Arc<Context>) -> Requeue {
    match error {
        ScheduleError::Conflict(_) => Requeue::requeue(Duration::from_millis(100)),
        ScheduleError::Api(_) => Requeue::requeue(
            ctx.api_backoff
                .failed(&obj.namespace().unwrap_or_default(), &obj.name_any()),
        ),
    }
}

/// A run as the schedule sees it.
fn view(run: &DynamicObject) -> RunView {
    let state = run
        .data
        .pointer("/status/applicationState/state")
        .and_then(|s| s.as_str());
    RunView {
        name: run.name_any(),
        created: run
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        state: match state {
            Some("COMPLETED") => RunState::Completed,
            Some("FAILED") => RunState::Failed,
            _ => RunState::Active,
        },
        deleting: run.metadata.deletion_timestamp.is_some(),
    }
}

fn owned_by<'a>(run: &'a DynamicObject, ns: &str, schedule: &str) -> Option<&'a DynamicObject> {
    (run.metadata.namespace.as_deref() == Some(ns)
        && run
            .labels()
            .get(SCHEDULED_APP_NAME_LABEL)
            .map(String::as_str)
            == Some(schedule))
    .then_some(run)
}

/// What the decision reads of a schedule's spec: all but the template.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    schedule: String,
    time_zone: Option<String>,
    suspend: Option<bool>,
    concurrency_policy: Option<ConcurrencyPolicy>,
    successful_run_history_limit: Option<i32>,
    failed_run_history_limit: Option<i32>,
}

/// The schedule as [`state::decide`] reads it: its template left empty.
fn head(obj: &DynamicObject) -> Result<ScheduledSparkApplication, serde_json::Error> {
    let h = Head::deserialize(obj.data.get("spec").unwrap_or(&serde_json::Value::Null))?;
    let status = match obj.data.get("status") {
        Some(s) if !s.is_null() => Some(ScheduledSparkApplicationStatus::deserialize(s)?),
        _ => None,
    };
    Ok(ScheduledSparkApplication {
        metadata: obj.metadata.clone(),
        spec: ScheduledSparkApplicationSpec {
            schedule: h.schedule,
            time_zone: h.time_zone,
            suspend: h.suspend,
            concurrency_policy: h.concurrency_policy,
            successful_run_history_limit: h.successful_run_history_limit,
            failed_run_history_limit: h.failed_run_history_limit,
            template: Default::default(),
        },
        status,
    })
}

fn read(obj: &DynamicObject) -> Option<ScheduledSparkApplication> {
    match head(obj) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(namespace = %obj.namespace().unwrap_or_default(), schedule = %obj.name_any(), error = %e, "ScheduledSparkApplication cannot be read; waiting for a change");
            None
        }
    }
}

async fn reconcile(
    cached: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Requeue, ScheduleError> {
    if cached.metadata.deletion_timestamp.is_some() {
        return Ok(Requeue::await_change());
    }
    let ns = cached.namespace().unwrap_or_default();
    // Under `--namespace-selector`, a namespace that is not (or no longer) served.
    if !ctx.namespaces.contains(&ns) {
        return Ok(Requeue::await_change());
    }
    let name = cached.name_any();
    let Some(schedule) = read(&cached) else {
        return Ok(Requeue::await_change());
    };
    let runs: Vec<RunView> = ctx
        .runs
        .state()
        .iter()
        .filter_map(|r| owned_by(r, &ns, &name).map(view))
        .collect();
    let mut decision = state::decide(
        &schedule,
        &Observed {
            now: Timestamp::now(),
            runs: &runs,
        },
    );
    let mut object = cached;
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &ctx.schedules_resource);
    if decision.create.is_some() || !decision.replace.is_empty() || decision.outcome.is_some() {
        // About to act on a slot: decide again on what the apiserver holds now.
        // Both at once: a due slot waits for one round trip, not two.
        let runs_api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &ctx.runs_resource);
        let selector = format!("{SCHEDULED_APP_NAME_LABEL}={name}");
        let list_params = ListParams::default().labels(&selector);
        let (fresh, listed) = Box::pin(futures::future::try_join(
            api.get_opt(&name),
            runs_api.list(&list_params),
        ))
        .await?;
        let Some(fresh) = fresh else {
            return Ok(Requeue::await_change());
        };
        let Some(schedule) = read(&fresh) else {
            return Ok(Requeue::await_change());
        };
        let runs: Vec<RunView> = listed.items.iter().map(view).collect();
        object = Arc::new(fresh);
        decision = state::decide(
            &schedule,
            &Observed {
                now: Timestamp::now(),
                runs: &runs,
            },
        );
    }
    Box::pin(act(&ctx, &object, decision)).await
}

async fn act(
    ctx: &Context,
    schedule: &DynamicObject,
    decision: Decision,
) -> Result<Requeue, ScheduleError> {
    let ns = schedule.namespace().unwrap_or_default();
    let apps: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &ctx.runs_resource);
    for old in &decision.replace {
        delete(&apps, old).await?;
    }
    let mut outcome = decision.outcome.clone();
    if let Some(run) = &decision.create {
        match apps
            .create(
                &PostParams::default(),
                &run_object(schedule, run, &ctx.runs_resource),
            )
            .await
        {
            Ok(_) => failpoint::hit(FailPoint::ScheduledRunCreated),
            // Started already: by us before a crash, or by the leader before us.
            Err(kube::Error::Api(e)) if e.code == 409 => outcome = None,
            Err(kube::Error::Api(e)) if (400..500).contains(&e.code) && e.code != 429 => {
                // Refused (an invalid template, a quota): say so on the schedule and retry.
                publish(
                    ctx,
                    schedule,
                    EventType::Warning,
                    "ScheduledRunFailed",
                    format!("creating {} was refused: {}", run.name, e.message),
                );
                return Err(kube::Error::Api(e).into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let old = read(schedule).and_then(|s| s.status).unwrap_or_default();
    if decision.status != old {
        write_status(ctx, schedule, &decision).await?;
    }
    if let Some((what, message)) = outcome {
        let label = match what {
            SlotOutcome::Started => ScheduledRunOutcome::started,
            SlotOutcome::Skipped => ScheduledRunOutcome::skipped,
            SlotOutcome::Replaced => ScheduledRunOutcome::replaced,
        };
        ctx.metrics
            .scheduled_runs
            .get_or_create(&ScheduledRunLabels { outcome: label })
            .inc();
        tracing::info!(namespace = %ns, schedule = %schedule.name_any(), "{message}");
        publish(ctx, schedule, EventType::Normal, what.reason(), message);
    }
    for old in &decision.prune {
        delete(&apps, old).await?;
    }
    Ok(match decision.wake_at {
        Some(t) => {
            Requeue::requeue(state::until(Timestamp::now(), t).max(Duration::from_millis(50)))
        }
        None => Requeue::await_change(),
    })
}

/// A run of the schedule: its template, its labels and one naming it, owned by it.
fn run_object(schedule: &DynamicObject, run: &NewRun, ar: &ApiResource) -> DynamicObject {
    let mut app = DynamicObject::new(&run.name, ar).data(serde_json::json!({
        "spec": schedule.data.get("spec").and_then(|s| s.get("template")).cloned().unwrap_or_default(),
    }));
    app.metadata.namespace = schedule.namespace();
    let mut labels = schedule.labels().clone();
    labels.insert(SCHEDULED_APP_NAME_LABEL.into(), schedule.name_any());
    app.metadata.labels = Some(labels);
    app.metadata.owner_references = Some(vec![OwnerReference {
        api_version: ApiResource::erase::<ScheduledSparkApplication>(&()).api_version,
        kind: "ScheduledSparkApplication".into(),
        name: schedule.name_any(),
        uid: schedule.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    app
}

async fn delete(apps: &Api<DynamicObject>, name: &str) -> Result<(), ScheduleError> {
    match Box::pin(apps.delete(name, &DeleteParams::background())).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(
    ctx: &Context,
    schedule: &DynamicObject,
    decision: &Decision,
) -> Result<(), ScheduleError> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &schedule.namespace().unwrap_or_default(),
        &ctx.schedules_resource,
    );
    let name = schedule.name_any();
    // The difference to the status as read (fields we do not know included: a PUT of ours
    // dropped them too), held to the version read. Without a version, read again.
    let read = schedule
        .data
        .get("status")
        .unwrap_or(&serde_json::Value::Null);
    let Some(body) = patch::status_patch(
        schedule.metadata.resource_version.as_deref(),
        read,
        &decision.status,
    ) else {
        return Err(ScheduleError::Conflict(name));
    };
    match Box::pin(api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(ScheduleError::Conflict(name)),
        Err(e) => Err(e.into()),
    }
}

/// Events go out in the background: a slow events API never delays a slot.
fn publish(
    ctx: &Context,
    schedule: &DynamicObject,
    type_: EventType,
    reason: &str,
    message: String,
) {
    let recorder = ctx.recorder.clone();
    let reference = schedule.object_ref(&ctx.schedules_resource);
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(events::note(&message)),
        action: "Schedule".into(),
        secondary: None,
    };
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = %event.reason, "could not publish event");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_carries_the_template_the_labels_and_its_controlling_owner() {
        let s: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
            "metadata": {"name": "nightly", "namespace": "jobs", "uid": "u1", "labels": {"team": "a"}},
            "spec": {"schedule": "@hourly", "suspend": false, "template": {
                "type": "Python", "sparkVersion": "3.5.3", "mainApplicationFile": "local:///x.py",
                "driver": {}, "executor": {}}},
            "status": {"scheduleState": "Scheduled", "lastRun": null}
        }))
        .unwrap();
        let head = head(&s).unwrap();
        assert_eq!(head.spec.schedule, "@hourly");
        assert_eq!(head.spec.suspend, Some(false));
        assert_eq!(
            head.status.unwrap().schedule_state,
            crate::crd::ScheduleState::Scheduled
        );
        let slot: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let run = NewRun {
            name: state::run_name("nightly", slot),
            slot,
        };
        let ar = ApiResource::erase::<SparkApplication>(&());
        let app = run_object(&s, &run, &ar);
        assert_eq!(app.metadata.name.as_deref(), Some("nightly-1767229200"));
        assert_eq!(app.metadata.namespace.as_deref(), Some("jobs"));
        let typed: SparkApplication =
            serde_json::from_value(serde_json::to_value(&app).unwrap()).unwrap();
        assert_eq!(
            typed.spec.main_application_file.as_deref(),
            Some("local:///x.py")
        );
        let app = typed;
        let labels = app.metadata.labels.unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[SCHEDULED_APP_NAME_LABEL], "nightly");
        let owner = &app.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "ScheduledSparkApplication");
        assert_eq!(owner.uid, "u1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
}
