//! The loop around [`super::state`]: runs one controller per scope over the cached
//! SparkApplications and their Spark pods, reconciles each app in one of two lanes (submissions,
//! status), carries out the decided actions and writes the status through the status
//! subresource. The I/O it delegates: [`super::submit`], [`super::cleanup`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::Value;
use tokio::sync::{SemaphorePermit, TryAcquireError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::cleanup::{delete_attempt, release_driver, sweep_orphans};
use super::context::{Context, ContextParts, ReconcileError};
use super::state::{self, Action, Decision, EventType, Observed};
use super::submit::{Stages, SubmitError, submit};
use crate::cache::{AppScope, CompactApp, GuardedApp, SparkPod};
use crate::crd::{ApplicationStateType as S, SparkApplication, SparkApplicationStatus, patch};
use crate::events::{self, Event, EventType as KubeEventType};
use crate::failpoint::{self, FailPoint};
use crate::health::{NoBackoff, WatchBackoff};
use crate::labels::{APP_NAME_LABEL, LAUNCHED_BY_LABEL, SPARK_ROLE_LABEL, SUBMISSION_ID_LABEL};

/// Submissions in flight at once per controller: a constant, measured (`make bench`, 1000 apps,
/// 2 cores). In a burst 8 already hold the apiserver at its own limit: the last app was
/// SUBMITTED at 1.00x the full floor's time (quiet machine; 1.18-1.28x with the machine loaded
/// to 5-7 by builds), the floor writing 16 apps at a time, because the apiserver serialises the
/// Services' cluster-IP allocation (a Service create takes it 55-180 ms in its own metric). More
/// slots only queue there, at ~0.4 MiB each in flight (16: 55.4 apps/s and 41.5 MiB peak RSS
/// against 52.7 and 37.7 with 8; 32: 56.5, 47.1 MiB). What the bound costs is latency at a
/// steady arrival rate while the apiserver stalls: a slot is held for the whole submission (the
/// pod, its Services and ConfigMap, the status write), so a stall of the Service creates fills
/// all 8 and new apps wait (20 apps/s on a machine loaded to ~5: p99 1.4-2.9 s waiting for a
/// slot, p50 0.7 ms; a writer without the bound reached the driver in 190-240 ms p99). A limit
/// adapted to the apiserver's latency (AIMD) would shrink exactly then, so it is not one.
const SUBMIT_CONCURRENCY: usize = 8;
/// Status reconciles (reads, one status write) in flight at once per controller. A lane of
/// their own: behind a queue of a thousand submissions a finished driver would otherwise wait
/// minutes to show COMPLETED (the Go operator's status lagged ~30 min in its benchmark). Sized
/// like the submission lane, for the same reason.
const STATUS_CONCURRENCY: usize = 8;

/// Runs one controller over the apps of `apps` (one namespace or all) and the Spark pods of
/// `pods_api` until `shutdown`. The apps' watch is the process's, shared with the webhook and
/// outliving this controller (see [`crate::cache::apps`]); the pods' watch is this controller's.
pub async fn run(
    apps: AppScope,
    pods_api: Api<SparkPod>,
    ctx_parts: ContextParts,
    shutdown: CancellationToken,
) {
    let (pod_reader, pod_writer) = reflector::store();
    let pod_stream = watcher(
        pods_api,
        watcher::Config::default().labels(&format!("{LAUNCHED_BY_LABEL}=true")),
    )
    .backoff(WatchBackoff::default())
    .reflect(pod_writer)
    .touched_objects();
    // Every cached app once, then each one the watch applies, as a watch of our own would
    // trigger them; dropped (unsubscribed) when this controller stops.
    let app_stream = apps.subscribe(shutdown.clone());
    // No limit in the controller itself: the two lanes in `reconcile` bound the work, so a
    // queue of submissions never holds a status reconcile back.
    // Each watch backs off on its own (kept short, so watches resume within seconds of an
    // apiserver outage); a second, shared backoff on top would hold both back for either.
    let controller = Controller::for_shared_stream(app_stream, apps.store())
        .with_config(kube::runtime::controller::Config::default().concurrency(0))
        .trigger_backoff(NoBackoff);
    // Counted in the running gauges while this controller runs (dropped when it returns).
    let _source = ctx_parts.metrics.add_source(
        controller.store(),
        pod_reader.clone(),
        ctx_parts.namespaces.clone(),
    );
    let ctx = Arc::new(Context {
        client: ctx_parts.client,
        apps: controller.store(),
        submit_slots: tokio::sync::Semaphore::new(SUBMIT_CONCURRENCY),
        status_slots: tokio::sync::Semaphore::new(STATUS_CONCURRENCY),
        pods: pod_reader,
        namespaces: ctx_parts.namespaces,
        settings: ctx_parts.settings,
        submit: ctx_parts.submit,
        submitter: ctx_parts.submitter,
        recorder: ctx_parts.recorder,
        metrics: ctx_parts.metrics,
        shutdown: shutdown.clone(),
        written: Default::default(),
        api_backoff: Default::default(),
    });
    tokio::spawn(sweep_orphans(
        controller.store(),
        ctx.clone(),
        shutdown.clone(),
    ));
    let token = shutdown.clone();
    controller
        .watches_stream(pod_stream, |pod: SparkPod| {
            let name = pod.labels().get(APP_NAME_LABEL)?.clone();
            Some(ObjectRef::new(&name).within(pod.namespace()?.as_str()))
        })
        .graceful_shutdown_on(async move { token.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            use kube::runtime::controller::Error as E;
            if let Err(e) = result {
                // Expected: a status write raced another, or an app went away before its turn.
                // Anything else (forbidden, an unreachable apiserver, a failing watch) is shown.
                if matches!(
                    &e,
                    E::ReconcilerFailed(ReconcileError::Conflict(_), _) | E::ObjectNotFound(_)
                ) {
                    tracing::debug!(error = %e, "reconcile failed");
                } else {
                    tracing::warn!(error = %e, "reconcile failed");
                }
            }
        })
        .await;
}

/// A conflict is retried at once on fresh data; an API error after a delay growing with the
/// app's consecutive failures (see [`crate::health::api_retry_delay`]), so a broken app or an
/// unwell apiserver is not hammered every few seconds.
fn error_policy(obj: Arc<GuardedApp>, error: &ReconcileError, ctx: Arc<Context>) -> Requeue {
    match error {
        ReconcileError::Conflict(_) => Requeue::requeue(Duration::from_millis(100)),
        ReconcileError::Api(_) | ReconcileError::AdmissionUnavailable(_) => {
            let delay = ctx
                .api_backoff
                .failed(&obj.namespace().unwrap_or_default(), &obj.name_any());
            tracing::debug!(namespace = %obj.namespace().unwrap_or_default(), app = %obj.name_any(), ?delay, "retrying after an API error");
            Requeue::requeue(delay)
        }
    }
}

async fn reconcile(obj: Arc<GuardedApp>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    failpoint::hit(FailPoint::ControllerPanic);
    let result = reconcile_in_lanes(&obj, &ctx).await;
    if result.is_ok() {
        ctx.api_backoff
            .succeeded(&obj.namespace().unwrap_or_default(), &obj.name_any());
    }
    result
}

/// The slot a pass of a reconcile holds.
enum Lane<'a> {
    Status(SemaphorePermit<'a>),
    Submit(SemaphorePermit<'a>),
}

/// How a pass ended.
enum Pass {
    Done(Requeue),
    /// The app is to be submitted and every submission slot is taken: wait for one, then
    /// decide again (the app may have changed meanwhile).
    Submit,
}

/// Runs the reconcile in the status lane, and once more in the submission lane if it submits
/// and no submission slot was free. A burst queues a reconcile per app (hundreds, each a task):
/// while it waits for a slot it holds only this small future, and the pass itself (the app
/// read back from the cache, its decision, spans, requests) is allocated once it runs.
async fn reconcile_in_lanes(obj: &GuardedApp, ctx: &Context) -> Result<Requeue, ReconcileError> {
    let started = Instant::now();
    // Closed only at shutdown; then there is nothing left to do.
    let Ok(permit) = ctx.status_slots.acquire().await else {
        return Ok(Requeue::await_change());
    };
    let mut lane = Lane::Status(permit);
    loop {
        match Box::pin(reconcile_guarded(obj, ctx, lane, started)).await? {
            Pass::Done(requeue) => return Ok(requeue),
            Pass::Submit => {
                let Ok(permit) = ctx.submit_slots.acquire().await else {
                    return Ok(Requeue::await_change());
                };
                lane = Lane::Submit(permit);
            }
        }
    }
}

async fn reconcile_guarded(
    obj: &GuardedApp,
    ctx: &Context,
    lane: Lane<'_>,
    started: Instant,
) -> Result<Pass, ReconcileError> {
    let fresher = match &obj.0 {
        Ok(app) => ctx.newer_than_cache(app),
        Err(_) => None,
    };
    let cached = match (&fresher, &obj.0) {
        (Some(written), _) => written.as_ref(),
        (None, Ok(app)) => app,
        (None, Err(invalid)) => {
            tracing::warn!(
                app = %invalid.metadata.name.clone().unwrap_or_default(),
                error = %invalid.error,
                "SparkApplication cannot be read; waiting for a change"
            );
            return Ok(Pass::Done(Requeue::await_change()));
        }
    };
    if cached.metadata.deletion_timestamp.is_some() {
        return Ok(Pass::Done(Requeue::await_change()));
    }
    // Triggered through a cluster-wide watch (`--namespace-selector`) for a namespace that is
    // not served: left alone, as kubeflow does; the namespace's apps are announced again when
    // it is selected (cache::apps).
    if !ctx
        .namespaces
        .contains(&cached.namespace().unwrap_or_default())
    {
        return Ok(Pass::Done(Requeue::await_change()));
    }
    let span = tracing::info_span!("reconcile", namespace = %cached.namespace().unwrap_or_default(), app = %cached.name_any());
    // Instrumented, not entered: a guard held across an await stays entered while other
    // reconciles run on the thread, so their spans nested under it, thousands deep under a
    // burst, until closing that chain overflowed a worker's stack (5000 apps at once).
    reconcile_app(cached, ctx, lane, started)
        .instrument(span)
        .await
}

/// The reconcile of a readable app that is not being deleted.
async fn reconcile_app(
    cached: &CompactApp,
    ctx: &Context,
    lane: Lane<'_>,
    started: Instant,
) -> Result<Pass, ReconcileError> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    // Waited for a submission slot: the app may have changed or gone meanwhile; then decide on
    // the newer version (the change has queued another reconcile).
    if matches!(lane, Lane::Submit(_)) && ctx.changed_since(cached) {
        return Ok(Pass::Done(Requeue::requeue(Duration::from_millis(50))));
    }
    // The cache keeps the spec as text; only a reconcile holding a slot reads it back (boxed),
    // so a queue of apps waiting for one holds no full copies.
    let Some(expanded) = expand(cached) else {
        return Ok(Pass::Done(Requeue::await_change()));
    };
    let app = &*expanded;
    let status = app.status.clone().unwrap_or_default();
    let spec_hash = super::spec_hash(app);
    let mut driver = (!status.driver_info.pod_name.is_empty())
        .then(|| {
            ctx.pods
                .get(&ObjectRef::new(&status.driver_info.pod_name).within(&ns))
        })
        .flatten();
    let executors = ctx.pods.state_filter(|p| {
        p.namespace().as_deref() == Some(ns.as_str())
            && p.labels().get(APP_NAME_LABEL) == Some(&name)
            && p.labels().get(SPARK_ROLE_LABEL).map(String::as_str) == Some("executor")
    });
    let now = Timestamp::now();
    let mut decision = state::decide(
        app,
        &observe(now, driver.as_deref(), &executors, &spec_hash),
        &ctx.settings,
    );
    let acts = |d: &Decision| !d.actions.is_empty() || d.status != status;
    if driver.is_none() && !status.driver_info.pod_name.is_empty() && acts(&decision) {
        // The pod cache can lag far behind under load: never act on a driver missing from it
        // without asking the apiserver. Waiting out the driver's creation grace is no act, so
        // the reconciles of a fresh submission, which the pod's watch event follows anyway,
        // do not pay for a read.
        let pods: Api<SparkPod> = Api::namespaced(ctx.client.clone(), &ns);
        driver = Box::pin(pods.get_opt(&status.driver_info.pod_name))
            .await?
            .map(Arc::new);
        decision = state::decide(
            app,
            &observe(now, driver.as_deref(), &executors, &spec_hash),
            &ctx.settings,
        );
    }
    let observed = observe(now, driver.as_deref(), &executors, &spec_hash);
    // A driver that just ended settles the app in the same status write (SUCCEEDING on to
    // COMPLETED, FAILING on to FAILED or a rerun) instead of a write per step, each of which
    // would wait its turn at a busy apiserver.
    let ended = decision.status.application_state.state;
    if decision.actions.is_empty()
        && matches!(ended, S::Succeeding | S::Failing)
        && ended != status.application_state.state
    {
        let ending = SparkApplication {
            status: Some(decision.status.clone()),
            ..app.clone()
        };
        let next = state::decide(&ending, &observed, &ctx.settings);
        decision.status = next.status;
        decision.actions = next.actions;
        decision.events.extend(next.events);
        decision.requeue_after = next.requeue_after;
    }
    let submits = decision
        .actions
        .iter()
        .any(|a| matches!(a, Action::Submit { .. }));
    // Submissions take the other lane: status work never queues behind them. A free slot is
    // taken at once, going on with what was just decided; with none free, the pass ends and the
    // reconcile waits for one holding nothing (see `reconcile_in_lanes`).
    let _permit = match lane {
        Lane::Submit(permit) => permit,
        Lane::Status(permit) if !submits => permit,
        Lane::Status(status_permit) => match ctx.submit_slots.try_acquire() {
            Ok(permit) => {
                drop(status_permit);
                permit
            }
            Err(TryAcquireError::NoPermits) => return Ok(Pass::Submit),
            Err(TryAcquireError::Closed) => return Ok(Pass::Done(Requeue::await_change())),
        },
    };
    let in_lane = Instant::now();

    // Set when a webhook could not be called: the status says so, then the reconcile ends as
    // an error so the retry backs off (error_policy) instead of starting over at 1 s.
    let mut admission_unavailable = None;
    for action in std::mem::take(&mut decision.actions) {
        match action {
            Action::Submit { attempt } => {
                let outcome = match Box::pin(submit(
                    ctx,
                    app,
                    attempt,
                    &spec_hash,
                    Stages { started, in_lane },
                ))
                .await
                {
                    Ok(info) => Ok(info),
                    Err(SubmitError::Failed(msg)) => {
                        tracing::warn!(attempt, error = %msg, "submission failed");
                        Err(msg)
                    }
                    // Not the app's fault: keep the status, try again shortly.
                    Err(SubmitError::Transient(e)) => return Err(ReconcileError::Api(e)),
                    Err(SubmitError::AdmissionUnavailable(msg)) => {
                        let base = SparkApplication {
                            status: Some(decision.status.clone()),
                            ..app.clone()
                        };
                        let after = state::admission_unavailable(&base, &msg);
                        decision.events.extend(after.events);
                        decision.status = after.status;
                        admission_unavailable = Some(msg);
                        break;
                    }
                };
                let base = SparkApplication {
                    status: Some(decision.status.clone()),
                    ..app.clone()
                };
                if outcome.is_ok() {
                    failpoint::hit(FailPoint::BeforeStatus);
                }
                let after = state::submitted(&base, attempt, outcome, Timestamp::now());
                decision.events.extend(after.events);
                decision.status = after.status;
                decision.requeue_after = after.requeue_after.or(decision.requeue_after);
            }
            Action::DeleteDriver { pod_name } => {
                let id = driver
                    .as_deref()
                    .and_then(|d| d.labels().get(SUBMISSION_ID_LABEL))
                    .map(String::as_str);
                Box::pin(delete_attempt(ctx, &ns, &pod_name, id)).await?
            }
            Action::DeleteAttempt {
                pod_name,
                submission_id,
            } => Box::pin(delete_attempt(ctx, &ns, &pod_name, Some(&submission_id))).await?,
            Action::DeleteApp => {
                let apps: Api<SparkApplication> = Api::namespaced(ctx.client.clone(), &ns);
                match Box::pin(apps.delete(&name, &DeleteParams::background())).await {
                    Ok(_) => tracing::info!("time to live passed: SparkApplication deleted"),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(Pass::Done(Requeue::await_change()));
            }
        }
    }

    let old_state = status.application_state.state;
    let new_state = decision.status.application_state.state;
    if matches!(new_state, S::Completed | S::Failed) && new_state != old_state {
        Box::pin(release_driver(ctx, &ns, driver.as_deref())).await?;
    }
    if decision.status != status {
        Box::pin(write_status(ctx, app, &decision.status)).await?;
        ctx.metrics.transition(app, old_state, &decision.status);
    }
    for note in &decision.events {
        ctx.metrics.executor_event(app, note.reason);
    }
    publish(ctx, app, &decision);
    if let Some(msg) = admission_unavailable {
        return Err(ReconcileError::AdmissionUnavailable(msg));
    }
    Ok(Pass::Done(match decision.requeue_after {
        Some(d) => Requeue::requeue(d.max(Duration::from_millis(50))),
        None => Requeue::await_change(),
    }))
}

/// What a reconcile saw, for the state machine.
fn observe<'a>(
    now: Timestamp,
    driver: Option<&'a SparkPod>,
    executors: &'a [Arc<SparkPod>],
    spec_hash: &'a str,
) -> Observed<'a> {
    Observed {
        now,
        driver,
        executors: executors.iter().map(AsRef::as_ref).collect(),
        spec_hash,
    }
}

/// The whole app of a cached one; None (logged) if its spec cannot be read back, which cannot
/// happen to text our own serialisation wrote.
fn expand(cached: &CompactApp) -> Option<Box<SparkApplication>> {
    match cached.expand() {
        Ok(app) => Some(Box::new(app)),
        Err(e) => {
            tracing::warn!(error = %e, "cached SparkApplication cannot be read; waiting for a change");
            None
        }
    }
}

/// Writes the status and remembers what the apiserver answered (see [`Context::remember`]).
async fn write_status(
    ctx: &Context,
    app: &SparkApplication,
    status: &SparkApplicationStatus,
) -> Result<(), ReconcileError> {
    let api: Api<SparkApplication> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let written = patch_status(&api, app, status).await?;
    ctx.remember(written);
    Ok(())
}

/// Writes `status` over `app`'s as a merge patch held to the resourceVersion `app` was read at
/// (see [`crate::crd::patch`]): a conflict re-runs the reconcile on fresh data.
pub async fn patch_status(
    api: &Api<SparkApplication>,
    app: &SparkApplication,
    status: &SparkApplicationStatus,
) -> Result<SparkApplication, ReconcileError> {
    let name = app.name_any();
    // No version to hold the write to (never so for an app read from the apiserver): an
    // unconditional write could overwrite a newer status, so read again instead.
    let Some(body) = status_patch(app, status) else {
        return Err(ReconcileError::Conflict(name));
    };
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(written) => Ok(written),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(ReconcileError::Conflict(name)),
        Err(e) => Err(e.into()),
    }
}

/// The merge patch that turns `app`'s status into `status`, with `app`'s resourceVersion as
/// its precondition; None without a resourceVersion.
pub fn status_patch(app: &SparkApplication, status: &SparkApplicationStatus) -> Option<Value> {
    patch::status_patch(
        app.metadata.resource_version.as_deref(),
        &app.status,
        status,
    )
}

/// Events go out in the background: a slow events API never delays a reconcile.
fn publish(ctx: &Context, app: &SparkApplication, decision: &Decision) {
    if decision.events.is_empty() {
        return;
    }
    let recorder = ctx.recorder.clone();
    let reference = app.object_ref(&());
    let events: Vec<Event> = decision
        .events
        .iter()
        .map(|n| Event {
            type_: match n.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: n.reason.into(),
            note: Some(events::note(&n.message)),
            action: "Reconcile".into(),
            secondary: None,
        })
        .collect();
    tokio::spawn(async move {
        for ev in events {
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %e, reason = %ev.reason, "could not publish event");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app_with(status: Value) -> SparkApplication {
        serde_json::from_value(json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "pi", "namespace": "ns", "resourceVersion": "42"},
            "spec": {"type": "Scala", "sparkVersion": "3.5.3", "mainApplicationFile": "local:///x.jar",
                     "driver": {}, "executor": {}},
            "status": status
        }))
        .unwrap()
    }

    /// Applied as the apiserver applies a merge patch, the patch gives exactly the new status:
    /// changed members set, members the new status omits (a cleared errorMessage or
    /// terminationTime, a gone executor) removed, not left stale; and it is held to the
    /// resourceVersion the old status was read at.
    #[test]
    fn the_status_patch_turns_the_read_status_into_the_new_one_at_the_read_version() {
        let mut app = app_with(json!({
            "applicationState": {"state": "FAILING", "errorMessage": "driver pod not found"},
            "terminationTime": "2026-12-07T10:00:00Z",
            "driverInfo": {"podName": "pi-driver", "webUIServiceName": "pi-ui-svc"},
            "executorState": {"pi-exec-1": "RUNNING", "pi-exec-2": "RUNNING"},
            "submissionAttempts": 1, "executionAttempts": 1
        }));
        let new: SparkApplicationStatus = serde_json::from_value(json!({
            "applicationState": {"state": "RUNNING"},
            "driverInfo": {"podName": "pi-driver", "webUIServiceName": "pi-ui-svc"},
            "executorState": {"pi-exec-1": "COMPLETED"},
            "submissionAttempts": 1, "executionAttempts": 1
        }))
        .unwrap();
        let patch = status_patch(&app, &new).unwrap();
        assert_eq!(patch["metadata"], json!({"resourceVersion": "42"}));
        // Only what changed goes over the wire.
        assert_eq!(
            patch["status"],
            json!({
                "applicationState": {"state": "RUNNING", "errorMessage": null},
                "terminationTime": null,
                "executorState": {"pi-exec-1": "COMPLETED", "pi-exec-2": null}
            })
        );
        let mut doc = serde_json::to_value(&app).unwrap();
        json_patch::merge(&mut doc, &patch);
        let patched: SparkApplication = serde_json::from_value(doc).unwrap();
        assert_eq!(patched.status.as_ref(), Some(&new));
        assert_eq!(patched.spec, app.spec);

        // A new app's first status is written whole.
        app.status = None;
        let patch = status_patch(&app, &new).unwrap();
        assert_eq!(patch["status"], serde_json::to_value(&new).unwrap());
        // Nothing to hold the write to: no patch (the caller reads again).
        app.metadata.resource_version = None;
        assert_eq!(status_patch(&app, &new), None);
    }

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: Fn(Arc<GuardedApp>, Arc<Context>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every app waiting for a lane slot holds one reconcile future (a burst of a thousand apps
    /// queues hundreds): it holds the pass that runs in a slot only boxed, so what waits is a
    /// few hundred bytes; the pass (~3 KiB) exists only while it runs. And a pass boxes its
    /// submission and API calls, or each would hold ~14 KiB while it runs.
    #[test]
    fn a_queued_reconcile_stays_small() {
        let size = future_size(reconcile);
        eprintln!("reconcile future: {size} bytes");
        assert!(size < 512, "reconcile future is {size} bytes");
    }
}
