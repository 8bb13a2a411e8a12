//! `/mutate-v1-pod`: patch Spark driver and executor pods from their SparkApplication.

use crate::events::{self, Event, EventType};
use kube::Resource;
use kube::api::Api;
use kube::core::admission::Operation;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::WebhookState;
use super::live_reads::OverBudget;
use super::review::{self, ObjectHead, ReviewError, ReviewResponse};
use crate::cache::GuardedApp;
use crate::crd::SparkApplication;
use crate::labels::{LAUNCHED_BY_LABEL, SparkRole, classify_labels};
use crate::metrics::Outcome;
use crate::mutate::{self, PodParts};
use crate::scheduling;
use k8s_openapi::api::core::v1::Pod;

/// Answers one pod review. Only a body that is not an AdmissionReview is an error; anything
/// about the pod itself becomes an allowed or denied answer.
///
/// The common case, an app in the cache, runs through without an await: this future then
/// holds no pod and no API request, so the few times it is moved on its way to the executor
/// cost little. Only a cache miss suspends, on a boxed live read.
pub async fn review(
    state: &WebhookState,
    body: &[u8],
) -> Result<(ReviewResponse, Outcome), ReviewError> {
    match from_cache(state, body)? {
        Step::Answered(answer) => Ok(answer),
        Step::NotCached(review) => {
            let found = Box::pin(read_live(state, &review.namespace, &review.app)).await?;
            Ok(review.finish(state, found))
        }
    }
}

/// A review that got as far as its app: answered, or waiting for the app to be read live.
enum Step<'a> {
    Answered((ReviewResponse, Outcome)),
    NotCached(Box<SparkPodReview<'a>>),
}

/// A Spark pod of a job namespace, read from its review, and whose app it names.
struct SparkPodReview<'a> {
    uid: Cow<'a, str>,
    dry_run: bool,
    role: SparkRole,
    namespace: String,
    app: String,
    pod: Pod,
}

/// The review as far as the app cache takes it: answered when the pod is not a Spark pod of a
/// job namespace, or when its app is cached.
fn from_cache<'a>(state: &WebhookState, body: &'a [u8]) -> Result<Step<'a>, ReviewError> {
    // The common case in one pass: the parts of the pod the rules read, typed straight from
    // the review's bytes. A review whose object does not read so takes the slower path that
    // says why.
    let Ok(req) = review::parse::<PodParts>(body) else {
        return untyped(state, body).map(Step::Answered);
    };
    let dry_run = req.is_dry_run();
    let review::Request {
        uid,
        kind,
        operation,
        namespace: request_namespace,
        object,
        ..
    } = req;
    let skip = || {
        Ok(Step::Answered((
            ReviewResponse::allow(&uid),
            Outcome::Skipped,
        )))
    };
    // Mutate on CREATE only: patching again on UPDATE broke pods in the Go operator (#470).
    if kind.kind != "Pod" || operation != Operation::Create {
        return skip();
    }
    let Some(pod) = object else {
        return skip();
    };
    let pod = pod.into_pod();
    let Some((role, app, namespace)) = ours(
        state,
        request_namespace.as_deref(),
        pod.metadata.namespace.as_deref(),
        pod.metadata.labels.as_ref(),
    ) else {
        return skip();
    };
    let cached = state.apps.get(namespace, app);
    let review = SparkPodReview {
        uid,
        dry_run,
        role,
        namespace: namespace.to_string(),
        app: app.to_string(),
        pod,
    };
    Ok(match cached {
        Some(app) => Step::Answered(review.finish(state, Ok(Some(app)))),
        None => Step::NotCached(Box::new(review)),
    })
}

impl SparkPodReview<'_> {
    /// The answer, given what finding the app gave: inner `Ok(None)`, it does not exist;
    /// `Err`, it cannot be known.
    fn finish(
        self,
        state: &WebhookState,
        found: Result<Option<Arc<GuardedApp>>, kube::Error>,
    ) -> (ReviewResponse, Outcome) {
        let SparkPodReview {
            uid,
            dry_run,
            role,
            namespace,
            app: app_name,
            mut pod,
        } = self;
        let uid: &str = &uid;
        let pod_name = pod
            .metadata
            .name
            .as_deref()
            .or(pod.metadata.generate_name.as_deref())
            .unwrap_or("");
        let span = tracing::info_span!("pod_review", uid, namespace, pod = pod_name, app = %app_name, role = ?role);
        let _enter = span.enter();

        let launched_by_us = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LAUNCHED_BY_LABEL))
            .is_some_and(|v| v == "true");
        let guarded = match found {
            Ok(Some(app)) => app,
            // A pod we launched must never run without its app's settings (kubeflow #2448): the
            // app was deleted, or it cannot be read right now; either way, refuse.
            found if launched_by_us => {
                let why = match found {
                    Err(e) => format!("could not be read ({e})"),
                    _ => "does not exist".to_string(),
                };
                let message = format!(
                    "SparkApplication {namespace}/{app_name} {why}, so its {role} pod {pod_name} cannot be built",
                    role = role.as_str()
                );
                tracing::warn!(error = %message, "pod refused");
                return (ReviewResponse::deny(uid, 403, message), Outcome::Denied);
            }
            // Someone else's Spark pod naming an app: let it through as it is, and say so.
            _ => {
                tracing::warn!("no SparkApplication {namespace}/{app_name}: pod allowed unmutated");
                let resp = ReviewResponse::allow(uid).with_warning(format!(
                    "spark-webhook: SparkApplication {namespace}/{app_name} not found; pod {pod_name} was not mutated"
                ));
                return (resp, Outcome::Skipped);
            }
        };

        let decoded = match &guarded.0 {
            Ok(app) => state.apps.decode(app).map_err(|e| e.to_string()),
            Err(invalid) => Err(invalid.error.clone()),
        };
        let app = match decoded {
            Ok(app) => app,
            Err(error) => {
                let message = format!(
                    "SparkApplication {namespace}/{app_name} cannot be read, so its {role} pod cannot be built: {error}",
                    role = role.as_str()
                );
                tracing::warn!(error = %message, "pod refused");
                return (ReviewResponse::deny(uid, 422, message), Outcome::Denied);
            }
        };
        // The pod's batch-scheduling marks, as submission gave them to the driver and the
        // executor template (executors built from a user's own template get them here).
        let prepared = match state.batch.choose(app.as_ref()) {
            Ok(Some(batch)) => scheduling::prepare(app.as_ref(), &batch).ok(),
            _ => None,
        };
        let app = prepared.as_ref().unwrap_or(app.as_ref());
        match mutate::patch_pod(app, role, &mut pod, &state.options) {
            Ok(patch) => {
                let outcome = if patch.is_empty() {
                    Outcome::Unchanged
                } else {
                    Outcome::Patched
                };
                tracing::debug!(ops = patch.len(), "pod mutated");
                (ReviewResponse::patched(uid, patch.into_json()), outcome)
            }
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(error = %message, "pod refused");
                if !dry_run {
                    publish_refusal(state, app, role, &message);
                }
                (ReviewResponse::deny(uid, 422, message), Outcome::Denied)
            }
        }
    }
}

/// Role, app and namespace of a Spark pod in a job namespace; `None` for every other pod. The
/// request's namespace wins over the object's (a pod being created may not carry one yet).
fn ours<'a>(
    state: &WebhookState,
    request_namespace: Option<&'a str>,
    object_namespace: Option<&'a str>,
    labels: Option<&'a BTreeMap<String, String>>,
) -> Option<(SparkRole, &'a str, &'a str)> {
    let (role, app) = labels.and_then(classify_labels)?;
    let namespace = request_namespace.or(object_namespace).unwrap_or("default");
    state
        .namespaces
        .contains(namespace)
        .then_some((role, app, namespace))
}

/// A review whose object does not read as a Pod: refused when it is labelled as a Spark pod of
/// a job namespace (its app's settings cannot be applied to it, and it must not run without
/// them), allowed otherwise. Only a body that is not an AdmissionReview at all is an error.
fn untyped(state: &WebhookState, body: &[u8]) -> Result<(ReviewResponse, Outcome), ReviewError> {
    let req = review::parse::<&RawValue>(body)?;
    let uid: &str = &req.uid;
    let skip = || Ok((ReviewResponse::allow(uid), Outcome::Skipped));
    let (Some(object), "Pod", Operation::Create) = (req.object, &*req.kind.kind, &req.operation)
    else {
        return skip();
    };
    let head = ObjectHead::read(object)?;
    let Some((role, app_name, namespace)) = ours(
        state,
        req.namespace.as_deref(),
        head.meta().namespace.as_deref(),
        head.meta().labels.as_ref(),
    ) else {
        return skip();
    };
    let Err(e) = serde_json::from_str::<PodParts>(object.get()) else {
        return skip();
    };
    let message = format!(
        "SparkApplication {namespace}/{app_name}: the {role} pod {pod} cannot be read: {e}",
        role = role.as_str(),
        pod = head.name()
    );
    tracing::warn!(uid, error = %message, "pod refused");
    Ok((ReviewResponse::deny(uid, 422, message), Outcome::Denied))
}

/// An app the reflector cache does not hold (created a moment ago, and the watch has not
/// delivered it yet), read with one live GET within the live-read budget (offline, in tests
/// and benches, it does not exist). Inner `Ok(None)`: it does not exist; inner `Err`: it cannot
/// be known; outer `Err`: the budget is spent (answered 503).
async fn read_live(
    state: &WebhookState,
    namespace: &str,
    name: &str,
) -> Result<Result<Option<Arc<GuardedApp>>, kube::Error>, OverBudget> {
    let Some(client) = state.client.clone() else {
        return Ok(Ok(None));
    };
    state.limits.live_reads.acquire().await?;
    // The watch may have delivered it while this read waited its turn.
    if let Some(app) = state.apps.get(namespace, name) {
        return Ok(Ok(Some(app)));
    }
    Ok(Api::<GuardedApp>::namespaced(client, namespace)
        .get_opt(name)
        .await
        .map(|app| app.map(Arc::new))
        .inspect_err(|e| tracing::warn!(error = %e, "live GET of SparkApplication {namespace}/{name} failed")))
}

/// A Warning Event on the app, so `kubectl describe sparkapp` says why its pod was refused.
/// Sent in the background: the review never waits on it.
fn publish_refusal(state: &WebhookState, app: &SparkApplication, role: SparkRole, message: &str) {
    let Some(recorder) = state.recorder.clone() else {
        return;
    };
    let reference = app.object_ref(&());
    let role = role.as_str();
    let event = Event {
        type_: EventType::Warning,
        reason: "SparkPodRejected".into(),
        note: Some(events::note(&format!(
            "{role} pod refused by spark-webhook: {message}"
        ))),
        action: "MutatePod".into(),
        secondary: None,
    };
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "could not publish the SparkPodRejected event");
        }
    });
}
