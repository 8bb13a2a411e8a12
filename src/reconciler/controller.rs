//! The I/O shell around [`super::state`]: watches SparkApplications and their pods, carries out
//! the decided actions and writes the status through the status subresource.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::state::{self, Action, Decision, EventType, Observed, Settings, SubmittedInfo};
use crate::cache::CompactApp;
pub use crate::cache::GuardedApp;
use crate::cache::SparkPod;
use crate::crd::{ApplicationStateType as S, SparkApplication, SparkApplicationStatus};
use crate::events::{Event, EventType as KubeEventType, Recorder};
use crate::failpoint::{self, FailPoint};
use crate::health::{NoBackoff, WatchBackoff};
use crate::metrics::AppMetrics;
use crate::mutate::{APP_NAME_LABEL, SPARK_ROLE_LABEL};
use crate::submission::spark_submit::{self, SparkSubmitter};
use crate::submission::{self, SubmitOptions};
use crate::validation;
use crate::webhook::registration::LAUNCHED_BY_LABEL;

/// Submissions in flight at once per controller. Each in-flight reconcile costs ~0.4 MiB
/// (its connection's buffers, the typed objects sent and read back), and 8 already keep a
/// 2-core apiserver at its own limit: 1000 apps in one burst (`make bench`) went at 52.7 apps/s
/// against the apiserver's 54.2 with no logic at all, peak RSS 37.7 MiB; 16 lanes: 55.4 apps/s,
/// 41.5 MiB; 32: 56.5 apps/s, 47.1 MiB.
const SUBMIT_CONCURRENCY: usize = 8;
/// Status reconciles (reads, one status write) in flight at once per controller. A lane of
/// their own: behind a queue of a thousand submissions a finished driver would otherwise wait
/// minutes to show COMPLETED (the Go operator's status lagged ~30 min in its benchmark). Sized
/// like the submission lane, for the same reason.
const STATUS_CONCURRENCY: usize = 8;

/// Label carrying the submission id on every object of one attempt.
pub const SUBMISSION_ID_LABEL: &str = "sparkoperator.k8s.io/submission-id";

/// Shared by every reconcile of one controller.
pub struct Context {
    pub client: Client,
    pub apps: Store<GuardedApp>,
    pub pods: Store<SparkPod>,
    /// The submission lane.
    pub submit_slots: tokio::sync::Semaphore,
    /// The status lane.
    pub status_slots: tokio::sync::Semaphore,
    pub settings: Settings,
    pub submit: SubmitOptions,
    pub submitter: Submitter,
    pub recorder: Recorder,
    pub metrics: Arc<AppMetrics>,
    /// Cancels in-flight spark-submit children at shutdown.
    pub shutdown: CancellationToken,
    /// The objects our last status writes returned, until the cache shows them: a reconcile
    /// triggered (by a pod event) before the app's watch caught up must not act on the stale
    /// status, or it would resubmit and conflict over and over under load.
    pub written: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<CompactApp>>>,
}

impl Context {
    fn remember(&self, mut app: SparkApplication) {
        app.metadata.managed_fields = None;
        let key = (app.namespace().unwrap_or_default(), app.name_any());
        let Ok(app) = CompactApp::try_from(app) else {
            return;
        };
        if let Ok(mut w) = self.written.lock() {
            w.insert(key, Arc::new(app));
        }
    }

    /// Whether the cache holds a newer version of `app` than the one being reconciled (or
    /// none: deleted).
    fn changed_since(&self, app: &CompactApp) -> bool {
        let key = ObjectRef::new(&app.name_any()).within(&app.namespace().unwrap_or_default());
        let Some(cached) = self.apps.get(&key) else {
            return true;
        };
        let Ok(cached) = &cached.0 else { return true };
        cached.metadata.uid != app.metadata.uid
            || matches!((revision(&cached.metadata), revision(&app.metadata)), (Some(c), Some(a)) if c > a)
    }

    /// Our own newer write of `app`, if the cache has not caught up with it yet.
    fn newer_than_cache(&self, app: &CompactApp) -> Option<Arc<CompactApp>> {
        let key = (app.namespace().unwrap_or_default(), app.name_any());
        let mut w = self.written.lock().ok()?;
        let written = w.get(&key)?.clone();
        // resourceVersions are etcd revisions here; if either is not a number, trust the cache.
        match (revision(&written.metadata), revision(&app.metadata)) {
            (Some(ours), Some(cached))
                if ours > cached && written.metadata.uid == app.metadata.uid =>
            {
                Some(written)
            }
            _ => {
                w.remove(&key);
                None
            }
        }
    }
}

/// An object's resourceVersion as a number (an etcd revision), if it is one.
fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

/// How apps are submitted.
#[derive(Clone, Debug)]
pub enum Submitter {
    /// Create the driver pod, Service and ConfigMap directly (the default: no JVM per app).
    Native,
    /// Run Spark's own spark-submit (opt-in), against `master`.
    SparkSubmit {
        runner: SparkSubmitter,
        master: String,
    },
}

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("status of {0} changed meanwhile; retrying")]
    Conflict(String),
}

/// Runs one controller over `api` (one namespace or all) until `shutdown`.
pub async fn run(
    apps: Api<GuardedApp>,
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
    // As `Controller::new` builds it, but the cached apps lose their managedFields first.
    let (app_reader, app_writer) = reflector::store();
    let app_stream = watcher(apps, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(crate::cache::compact::slim)
        .reflect(app_writer)
        .applied_objects();
    // No limit in the controller itself: the two lanes in `reconcile` bound the work, so a
    // queue of submissions never holds a status reconcile back.
    // Each watch backs off on its own (kept short, so watches resume within seconds of an
    // apiserver outage); a second, shared backoff on top would hold both back for either.
    let controller = Controller::for_stream(app_stream, app_reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(0))
        .trigger_backoff(NoBackoff);
    ctx_parts
        .metrics
        .add_source(controller.store(), pod_reader.clone());
    let ctx = Arc::new(Context {
        client: ctx_parts.client,
        apps: controller.store(),
        submit_slots: tokio::sync::Semaphore::new(SUBMIT_CONCURRENCY),
        status_slots: tokio::sync::Semaphore::new(STATUS_CONCURRENCY),
        pods: pod_reader,
        settings: ctx_parts.settings,
        submit: ctx_parts.submit,
        submitter: ctx_parts.submitter,
        recorder: ctx_parts.recorder,
        metrics: ctx_parts.metrics,
        shutdown: shutdown.clone(),
        written: Default::default(),
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

/// Deleting a SparkApplication stops its driver: the driver's ownerReference lets the garbage
/// collector do it, but a cluster may run without one, so drivers whose app (by uid) is gone
/// are also deleted here, with everything of their submission.
async fn sweep_orphans(apps: Store<GuardedApp>, ctx: Arc<Context>, shutdown: CancellationToken) {
    // Until both caches hold a full list, every driver would look orphaned.
    if !synced(&apps, &shutdown).await || !synced(&ctx.pods, &shutdown).await {
        return;
    }
    let mut tick = tokio::time::interval(ctx.settings.orphan_sweep_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // An app deleted before its next reconcile would keep its entry forever.
        if let Ok(mut w) = ctx.written.lock() {
            w.retain(|(ns, name), _| apps.get(&ObjectRef::new(name).within(ns)).is_some());
        }
        for pod in ctx.pods.state() {
            let Some(owner) = pod.owner_references().iter().find(|o| {
                o.kind == "SparkApplication" && o.api_version.starts_with("sparkoperator.k8s.io/")
            }) else {
                continue;
            };
            let ns = pod.namespace().unwrap_or_default();
            let alive = apps
                .get(&ObjectRef::new(&owner.name).within(&ns))
                .is_some_and(|a| {
                    a.0.as_ref().ok().and_then(|a| a.metadata.uid.as_deref())
                        == Some(owner.uid.as_str())
                });
            if alive || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            tracing::info!(namespace = %ns, pod = %pod.name_any(), app = %owner.name, "SparkApplication is gone: deleting its driver");
            if let Err(e) = delete_attempt(&ctx, &ns, &pod.name_any(), Some(&pod)).await {
                tracing::warn!(error = %e, pod = %pod.name_any(), "could not delete an orphaned driver");
            }
        }
    }
}

/// Waits until `store` has completed its first list (false on shutdown). Polls: kube-runtime's
/// readiness future wakes only one waiter, and the Controller already waits on its store.
async fn synced<K>(store: &Store<K>, shutdown: &CancellationToken) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if shutdown.is_cancelled() {
            return false;
        }
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(Ok(())) => return true,
            Ok(Err(_)) => return false,
            Err(_) => {}
        }
    }
}

/// What `run` needs besides the watches.
pub struct ContextParts {
    pub client: Client,
    pub settings: Settings,
    pub submit: SubmitOptions,
    pub submitter: Submitter,
    pub recorder: Recorder,
    pub metrics: Arc<AppMetrics>,
}

fn error_policy(_: Arc<GuardedApp>, error: &ReconcileError, _: Arc<Context>) -> Requeue {
    match error {
        ReconcileError::Conflict(_) => Requeue::requeue(Duration::from_millis(100)),
        ReconcileError::Api(_) => Requeue::requeue(Duration::from_secs(5)),
    }
}

async fn reconcile(obj: Arc<GuardedApp>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
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
            return Ok(Requeue::await_change());
        }
    };
    if cached.metadata.deletion_timestamp.is_some() {
        return Ok(Requeue::await_change());
    }
    let span = tracing::info_span!("reconcile", namespace = %cached.namespace().unwrap_or_default(), app = %cached.name_any());
    // Instrumented, not entered: a guard held across an await stays entered while other
    // reconciles run on the thread, so their spans nested under it, thousands deep under a
    // burst, until closing that chain overflowed a worker's stack (5000 apps at once).
    reconcile_app(cached, &ctx).instrument(span).await
}

/// The reconcile of a readable app that is not being deleted.
async fn reconcile_app(cached: &CompactApp, ctx: &Context) -> Result<Requeue, ReconcileError> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    // Closed only at shutdown; then there is nothing left to do.
    let Ok(status_permit) = ctx.status_slots.acquire().await else {
        return Ok(Requeue::await_change());
    };
    // The cache keeps the spec as text; only a reconcile holding a slot reads it back (boxed),
    // so a queue of apps waiting for one holds no full copies.
    let Some(mut expanded) = expand(cached) else {
        return Ok(Requeue::await_change());
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
    if driver.is_none() && !status.driver_info.pod_name.is_empty() {
        // The pod cache can lag far behind under load: never declare a driver missing
        // without asking the apiserver.
        let pods: Api<SparkPod> = Api::namespaced(ctx.client.clone(), &ns);
        driver = Box::pin(pods.get_opt(&status.driver_info.pod_name))
            .await?
            .map(Arc::new);
    }
    let executors = ctx.pods.state_filter(|p| {
        p.namespace().as_deref() == Some(ns.as_str())
            && p.labels().get(APP_NAME_LABEL) == Some(&name)
            && p.labels().get(SPARK_ROLE_LABEL).map(String::as_str) == Some("executor")
    });
    let now = Timestamp::now();
    let observed = Observed {
        now,
        driver: driver.as_deref(),
        executors: executors.iter().map(AsRef::as_ref).collect(),
        spec_hash: &spec_hash,
    };
    let mut decision = state::decide(app, &observed, &ctx.settings);
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
    // Submissions take the other lane: status work never queues behind them.
    let _permit = if submits {
        drop(status_permit);
        drop(expanded);
        let Ok(permit) = ctx.submit_slots.acquire().await else {
            return Ok(Requeue::await_change());
        };
        // While this app waited for a slot it may have changed or gone: decide again then
        // (the change has queued another reconcile).
        if ctx.changed_since(cached) {
            return Ok(Requeue::requeue(Duration::from_millis(50)));
        }
        let Some(again) = expand(cached) else {
            return Ok(Requeue::await_change());
        };
        expanded = again;
        permit
    } else {
        status_permit
    };
    let app = &*expanded;

    for action in std::mem::take(&mut decision.actions) {
        match action {
            Action::Submit { attempt } => {
                let outcome = match Box::pin(submit(ctx, app, attempt, &spec_hash)).await {
                    Ok(info) => Ok(info),
                    Err(SubmitError::Failed(msg)) => {
                        tracing::warn!(attempt, error = %msg, "submission failed");
                        Err(msg)
                    }
                    // Not the app's fault: keep the status, try again shortly.
                    Err(SubmitError::Transient(e)) => return Err(ReconcileError::Api(e)),
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
                Box::pin(delete_attempt(ctx, &ns, &pod_name, driver.as_deref())).await?
            }
            Action::DeleteApp => {
                let apps: Api<SparkApplication> = Api::namespaced(ctx.client.clone(), &ns);
                match Box::pin(apps.delete(&name, &DeleteParams::background())).await {
                    Ok(_) => tracing::info!("time to live passed: SparkApplication deleted"),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(Requeue::await_change());
            }
        }
    }

    let old_state = status.application_state.state;
    if decision.status != status {
        Box::pin(write_status(ctx, app, &decision.status)).await?;
        ctx.metrics.transition(app, old_state, &decision.status);
    }
    for note in &decision.events {
        ctx.metrics.executor_event(app, note.reason);
    }
    publish(ctx, app, &decision);
    Ok(match decision.requeue_after {
        Some(d) => Requeue::requeue(d.max(Duration::from_millis(50))),
        None => Requeue::await_change(),
    })
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

enum SubmitError {
    /// The app cannot be submitted as it is: SUBMISSION_FAILED with this message.
    Failed(String),
    /// The API was unreachable or overloaded: retry without counting an attempt.
    Transient(kube::Error),
}

fn classify_api(what: &str, e: kube::Error) -> SubmitError {
    match &e {
        kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 409 && s.code != 429 => {
            SubmitError::Failed(format!("{what}: {}", s.message))
        }
        // A webhook with failurePolicy Fail that could not be called (ours down, say): the pod
        // was refused. A submission failure with the reason, retried per the app's policy.
        kube::Error::Api(s) if s.code == 500 && s.message.contains("failed calling webhook") => {
            SubmitError::Failed(format!("{what}: refused by admission: {}", s.message))
        }
        _ => SubmitError::Transient(e),
    }
}

/// Creates the driver pod, then its Service and ConfigMap owned by it, as spark-submit does.
/// Every name is deterministic per attempt, so a repeat after a crash finds its own objects
/// (AlreadyExists with our submission id is success) and never starts a second driver.
async fn submit(
    ctx: &Context,
    app: &SparkApplication,
    attempt: u32,
    spec_hash: &str,
) -> Result<SubmittedInfo, SubmitError> {
    let findings = validation::validate(app);
    if !findings.errors.is_empty() {
        let list: Vec<String> = findings.errors.iter().map(ToString::to_string).collect();
        return Err(SubmitError::Failed(format!(
            "invalid SparkApplication: {}",
            list.join("; ")
        )));
    }
    if let Submitter::SparkSubmit { runner, master } = &ctx.submitter {
        return submit_with_spark_submit(ctx, app, attempt, spec_hash, runner, master).await;
    }
    let mut sub = submission::build(app, attempt, &ctx.submit)
        .map_err(|e| SubmitError::Failed(e.to_string()))?;
    sub.driver_pod
        .annotations_mut()
        .insert(state::SPEC_HASH_ANNOTATION.into(), spec_hash.into());
    let ns = app.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_name = sub.driver_pod.name_any();
    let pod = match pods.create(&PostParams::default(), &sub.driver_pod).await {
        Ok(pod) => pod,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = pods.get(&pod_name).await.map_err(SubmitError::Transient)?;
            if existing.labels().get(SUBMISSION_ID_LABEL) != Some(&sub.submission_id) {
                return Err(SubmitError::Failed(format!(
                    "a pod named {pod_name} already exists and does not belong to this submission"
                )));
            }
            existing
        }
        Err(e) => return Err(classify_api("creating the driver pod", e)),
    };
    failpoint::hit(FailPoint::AfterDriver);
    submission::owned_by_driver(&mut sub, pod.metadata.uid.as_deref().unwrap_or_default());
    let children = async {
        create_if_absent(
            &Api::<Service>::namespaced(ctx.client.clone(), &ns),
            &sub.service,
            "the driver Service",
            &sub.submission_id,
        )
        .await?;
        failpoint::hit(FailPoint::AfterService);
        create_if_absent(
            &Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns),
            &sub.config_map,
            "the driver ConfigMap",
            &sub.submission_id,
        )
        .await?;
        failpoint::hit(FailPoint::AfterConfigMap);
        Ok(())
    }
    .await;
    if let Err(SubmitError::Failed(_)) = &children {
        // As spark-submit does: a driver without its Service or ConfigMap never starts, and the
        // next attempt has other names, so do not leave this one behind.
        if let Err(e) = pods.delete(&pod_name, &DeleteParams::background()).await {
            tracing::warn!(error = %e, pod = %pod_name, "driver of a failed submission not deleted");
        }
    }
    children?;
    let ui_port = 4040;
    Ok(SubmittedInfo {
        submission_id: sub.submission_id.clone(),
        driver_pod_name: pod_name,
        app_id: sub.app_id.clone(),
        ui_service_name: sub.service.name_any(),
        ui_port,
    })
}

/// The opt-in path: Spark's own spark-submit creates the objects. Its driver pod name and
/// submission-id label come from the same deterministic conf, so a repeat after a crash finds
/// the driver instead of starting a second one.
async fn submit_with_spark_submit(
    ctx: &Context,
    app: &SparkApplication,
    attempt: u32,
    spec_hash: &str,
    runner: &SparkSubmitter,
    master: &str,
) -> Result<SubmittedInfo, SubmitError> {
    let failed = |e: &dyn std::fmt::Display| SubmitError::Failed(e.to_string());
    let conf = submission::properties(app, attempt, &ctx.submit).map_err(|e| failed(&e))?;
    let submission_id = conf
        .get(&format!(
            "spark.kubernetes.driver.label.{SUBMISSION_ID_LABEL}"
        ))
        .cloned()
        .unwrap_or_default();
    let pod_name = submission::driver_pod_name(app, attempt);
    let ns = app.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = pods
        .get_opt(&pod_name)
        .await
        .map_err(SubmitError::Transient)?;
    let pod = match existing {
        Some(p) if p.labels().get(SUBMISSION_ID_LABEL) == Some(&submission_id) => p,
        Some(_) => {
            return Err(SubmitError::Failed(format!(
                "a pod named {pod_name} already exists and does not belong to this submission"
            )));
        }
        None => {
            let mut args = vec![
                "--conf".to_string(),
                format!(
                    "spark.kubernetes.driver.annotation.{}={spec_hash}",
                    state::SPEC_HASH_ANNOTATION
                ),
            ];
            args.extend(
                spark_submit::arguments(app, attempt, &ctx.submit, master)
                    .map_err(|e| failed(&e))?,
            );
            runner
                .run(&args, ctx.shutdown.clone())
                .await
                .map_err(|e| failed(&format!("spark-submit: {e}")))?;
            pods.get(&pod_name).await.map_err(SubmitError::Transient)?
        }
    };
    Ok(SubmittedInfo {
        submission_id,
        driver_pod_name: pod_name,
        app_id: pod
            .labels()
            .get("spark-app-selector")
            .cloned()
            .unwrap_or_default(),
        ui_service_name: String::new(),
        ui_port: 4040,
    })
}

/// Creates `obj`; one that already exists is adopted when it carries this submission's id (a
/// previous incarnation created it and crashed before the status said so, kubeflow #2788), and
/// is a submission failure naming the culprit otherwise.
async fn create_if_absent<K>(
    api: &Api<K>,
    obj: &K,
    what: &str,
    submission_id: &str,
) -> Result<(), SubmitError>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let name = obj.meta().name.clone().unwrap_or_default();
            let existing = api.get(&name).await.map_err(SubmitError::Transient)?;
            if existing
                .labels()
                .get(SUBMISSION_ID_LABEL)
                .map(String::as_str)
                == Some(submission_id)
            {
                tracing::debug!(object = %name, "adopting {what} of an interrupted submission");
                Ok(())
            } else {
                Err(SubmitError::Failed(format!(
                    "{what} {name} already exists and does not belong to this submission"
                )))
            }
        }
        Err(e) => Err(classify_api(&format!("creating {what}"), e)),
    }
}

/// Deletes an attempt's driver and, explicitly, everything labelled with its submission id
/// (a cluster without garbage collection would otherwise keep them).
async fn delete_attempt(
    ctx: &Context,
    ns: &str,
    pod_name: &str,
    driver: Option<&SparkPod>,
) -> Result<(), ReconcileError> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match pods.delete(pod_name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(id) = driver.and_then(|d| d.labels().get(SUBMISSION_ID_LABEL)) {
        let lp = ListParams::default().labels(&format!("{SUBMISSION_ID_LABEL}={id}"));
        let dp = DeleteParams::background();
        pods.delete_collection(&dp, &lp).await?;
        Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
            .delete_collection(&dp, &lp)
            .await?;
        // Services have no deletecollection verb: one by one.
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
        for svc in services.list(&lp).await?.items {
            match services.delete(&svc.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Replaces the status (PUT /status with the resourceVersion we read), so a stale view can
/// never overwrite a newer status: a conflict re-runs the reconcile on fresh data.
async fn write_status(
    ctx: &Context,
    app: &SparkApplication,
    status: &SparkApplicationStatus,
) -> Result<(), ReconcileError> {
    let ns = app.namespace().unwrap_or_default();
    let api: Api<SparkApplication> = Api::namespaced(ctx.client.clone(), &ns);
    let mut obj = app.clone();
    obj.status = Some(status.clone());
    obj.metadata.managed_fields = None;
    match api
        .replace_status(&app.name_any(), &PostParams::default(), &obj)
        .await
    {
        Ok(written) => {
            ctx.remember(written);
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Err(ReconcileError::Conflict(app.name_any())),
        Err(e) => Err(e.into()),
    }
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
            note: Some(n.message.chars().take(1000).collect()),
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

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: Fn(Arc<GuardedApp>, Arc<Context>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every app waiting for a lane slot holds one reconcile future: its submission and API
    /// calls are boxed, or each would hold ~14 KiB (5000 queued apps: ~70 MiB).
    #[test]
    fn a_queued_reconcile_stays_small() {
        let size = future_size(reconcile);
        assert!(size < 4096, "reconcile future is {size} bytes");
    }
}
