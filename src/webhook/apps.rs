//! `/validate-sparkoperator-k8s-io-v1beta2-sparkapplication`: refuse SparkApplications that
//! cannot run, naming the field, before they reach the reconciler; and
//! `/validate-sparkoperator-k8s-io-v1beta2-scheduledsparkapplication`: the same for
//! ScheduledSparkApplications (a bad schedule or time zone, or a template no run could use).

use kube::core::admission::Operation;
use serde_json::value::RawValue;

use super::review::{self, ObjectHead, ReviewError, ReviewResponse};
use crate::crd::{ScheduledSparkApplication, SparkApplication};
use crate::metrics::Outcome;
use crate::validation;

pub fn review(body: &[u8]) -> Result<(ReviewResponse, Outcome), ReviewError> {
    review_as::<SparkApplication>(body, "SparkApplication", validation::validate)
}

pub fn review_scheduled(body: &[u8]) -> Result<(ReviewResponse, Outcome), ReviewError> {
    review_as::<ScheduledSparkApplication>(
        body,
        "ScheduledSparkApplication",
        validation::validate_scheduled,
    )
}

/// One validation review of a namespaced `K`, typed with the path of a field that does not read.
fn review_as<K>(
    body: &[u8],
    kind: &str,
    validate: impl Fn(&K) -> validation::Findings,
) -> Result<(ReviewResponse, Outcome), ReviewError>
where
    K: serde::de::DeserializeOwned + kube::Resource,
{
    let req = review::parse::<&RawValue>(body)?;
    let uid: &str = &req.uid;
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Ok((ReviewResponse::allow(uid), Outcome::Skipped));
    }
    let Some(object) = req.object else {
        return Ok((ReviewResponse::allow(uid), Outcome::Skipped));
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
            return Ok((ReviewResponse::deny(uid, 422, message), Outcome::Denied));
        }
    };
    app.meta_mut()
        .namespace
        .get_or_insert_with(|| namespace.to_string());
    let findings = validate(&app);
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
    Ok((resp, outcome))
}
