//! `/validate-sparkoperator-k8s-io-v1beta2-sparkapplication`: refuse SparkApplications that
//! cannot run, naming the field, before they reach the reconciler; and
//! `/validate-sparkoperator-k8s-io-v1beta2-scheduledsparkapplication`: the same for
//! ScheduledSparkApplications (a bad schedule or time zone, or a template no run could use).
//!
//! A SparkApplication is also checked against the cluster, once its fields are valid: its
//! batch scheduler must be enabled and, for one with a PodGroup, that CRD served (asked
//! through discovery, which every authenticated client may read); with
//! `--enable-resource-quota-enforcement` its driver and initial executors must fit what is
//! left of the namespace's ResourceQuotas.

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, ListParams};
use kube::core::admission::Operation;
use serde_json::value::RawValue;

use super::WebhookState;
use super::review::{self, ObjectHead, ReviewError, ReviewResponse};
use crate::crd::{ScheduledSparkApplication, SparkApplication};
use crate::metrics::Outcome;
use crate::scheduling::{self, quota};
use crate::validation;

pub async fn review(
    state: &WebhookState,
    body: &[u8],
) -> Result<(ReviewResponse, Outcome), ReviewError> {
    let (uid, namespace, name, app, spec_unchanged) =
        match parse_as::<SparkApplication>(body, "SparkApplication")? {
            Parsed::Done(answer) => return Ok(answer),
            Parsed::Object {
                uid,
                namespace,
                name,
                object,
                spec_unchanged,
            } => (uid, namespace, name, object, spec_unchanged),
        };
    let mut findings = validation::validate(&app);
    // An update that leaves the spec alone (labels, finalizers) is not checked against the
    // cluster again, as in kubeflow: a running app's own pods count in its quota's usage.
    if findings.errors.is_empty() && !spec_unchanged {
        let (errors, warnings) = cluster_checks(state, &app).await;
        findings.warnings.extend(warnings);
        for (field, message) in errors {
            findings
                .errors
                .push(validation::FieldError { field, message });
        }
    }
    Ok(answer(
        &uid,
        "SparkApplication",
        &namespace,
        &name,
        findings,
    ))
}

/// Batch scheduler and ResourceQuota: errors (field, message) and warnings.
async fn cluster_checks(
    state: &WebhookState,
    app: &SparkApplication,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut errors = Vec::new();
    let batch = match state.batch.choose(app) {
        Ok(b) => b,
        Err(why) => {
            errors.push(("spec.batchScheduler".to_string(), why));
            None
        }
    };
    let warnings = scheduling::unused_options(app, batch.as_ref());
    if let (Some(b), Some(client)) = (&batch, &state.client)
        && let Some(api) = b.kind.group_api()
    {
        let served = client
            .list_api_group_resources(&api.api_version)
            .await
            .map(|list| list.resources.iter().any(|r| r.name == api.plural));
        match served {
            Ok(true) => {}
            Ok(false) | Err(kube::Error::Api(_)) => errors.push((
                "spec.batchScheduler".into(),
                format!(
                    "{:?} needs the PodGroup CRD ({}/{}), which this cluster does not serve: install the scheduler's CRDs",
                    b.name, api.plural, api.api_version
                ),
            )),
            Err(e) => errors.push((
                "spec.batchScheduler".into(),
                format!("whether the PodGroup CRD {} is served could not be checked: {e}", api.api_version),
            )),
        }
    }
    if state.enforce_quota
        && errors.is_empty()
        && let Some(problem) = quota_problem(state, app).await
    {
        errors.push(("spec".into(), problem));
    }
    (errors, warnings)
}

/// Why `app` does not fit its namespace's ResourceQuotas; `None` when it fits.
async fn quota_problem(state: &WebhookState, app: &SparkApplication) -> Option<String> {
    let usage = match quota::usage(&app.with_defaults()) {
        Ok(u) => u,
        Err(e) => {
            return Some(format!(
                "its resources cannot be counted against the ResourceQuotas: {e}"
            ));
        }
    };
    let client = state.client.as_ref()?;
    let ns = app.metadata.namespace.as_deref().unwrap_or("default");
    match Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => quota::exceeded(&usage, &list.items),
        Err(e) => Some(format!(
            "the ResourceQuotas of namespace {ns} could not be read (--enable-resource-quota-enforcement): {e}"
        )),
    }
}

pub fn review_scheduled(body: &[u8]) -> Result<(ReviewResponse, Outcome), ReviewError> {
    let kind = "ScheduledSparkApplication";
    match parse_as::<ScheduledSparkApplication>(body, kind)? {
        Parsed::Done(answer) => Ok(answer),
        Parsed::Object {
            uid,
            namespace,
            name,
            object,
            ..
        } => Ok(answer(
            &uid,
            kind,
            &namespace,
            &name,
            validation::validate_scheduled(&object),
        )),
    }
}

/// A review read: answered already (not a create or update, or a field that does not read), or
/// the object to validate.
enum Parsed<K> {
    Done((ReviewResponse, Outcome)),
    Object {
        uid: String,
        namespace: String,
        name: String,
        object: K,
        /// An UPDATE whose `spec` is the old object's.
        spec_unchanged: bool,
    },
}

/// Reads one validation review of a namespaced `K`; a field that does not read is refused with
/// its path.
fn parse_as<K>(body: &[u8], kind: &str) -> Result<Parsed<K>, ReviewError>
where
    K: serde::de::DeserializeOwned + kube::Resource,
{
    let req = review::parse::<&RawValue>(body)?;
    let uid: &str = &req.uid;
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Ok(Parsed::Done((ReviewResponse::allow(uid), Outcome::Skipped)));
    }
    let Some(object) = req.object else {
        return Ok(Parsed::Done((ReviewResponse::allow(uid), Outcome::Skipped)));
    };
    let head = ObjectHead::read(object)?;
    let namespace = req
        .namespace
        .as_deref()
        .or(head.meta().namespace.as_deref())
        .unwrap_or("default");
    let name = head.name();
    let mut deserializer = serde_json::Deserializer::from_str(object.get());
    let mut app: K = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(app) => app,
        Err(e) => {
            let message = format!("{kind} {namespace}/{name}: {}: {}", e.path(), e.inner());
            return Ok(Parsed::Done((
                ReviewResponse::deny(uid, 422, message),
                Outcome::Denied,
            )));
        }
    };
    app.meta_mut()
        .namespace
        .get_or_insert_with(|| namespace.to_string());
    let spec = |raw: &RawValue| {
        serde_json::from_str::<serde_json::Value>(raw.get())
            .ok()
            .map(|mut v| v["spec"].take())
    };
    let spec_unchanged = req.operation == Operation::Update
        && req
            .old_object
            .is_some_and(|old| spec(old).is_some() && spec(old) == spec(object));
    Ok(Parsed::Object {
        uid: uid.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        object: app,
        spec_unchanged,
    })
}

/// The answer to `findings`.
fn answer(
    uid: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    findings: validation::Findings,
) -> (ReviewResponse, Outcome) {
    let mut resp = match findings.error_message() {
        None => ReviewResponse::allow(uid),
        Some(errors) => ReviewResponse::deny(
            uid,
            422,
            format!("{kind} {namespace}/{name} is invalid: {errors}"),
        ),
    };
    for w in findings.warnings {
        resp = resp.with_warning(w);
    }
    let outcome = if resp.allowed() {
        Outcome::Unchanged
    } else {
        Outcome::Denied
    };
    (resp, outcome)
}
