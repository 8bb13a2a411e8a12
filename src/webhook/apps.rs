//! `/validate-sparkoperator-k8s-io-v1beta2-sparkapplication`: refuse SparkApplications that
//! cannot run, naming the field, before they reach the reconciler.

use kube::core::admission::Operation;
use serde_json::value::RawValue;

use super::review::{self, ObjectHead, ReviewError, ReviewResponse};
use crate::crd::SparkApplication;
use crate::metrics::Outcome;
use crate::validation;

pub fn review(body: &[u8]) -> Result<(ReviewResponse, Outcome), ReviewError> {
    let req = review::parse::<&RawValue>(body)?;
    let uid = req.uid.as_str();
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
    let mut app: SparkApplication = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(app) => app,
        Err(e) => {
            let message = format!(
                "SparkApplication {namespace}/{name}: {}: {}",
                e.path(),
                e.inner()
            );
            return Ok((ReviewResponse::deny(uid, 422, message), Outcome::Denied));
        }
    };
    app.metadata
        .namespace
        .get_or_insert_with(|| namespace.to_string());
    let findings = validation::validate(&app);
    let mut resp = match findings.error_message() {
        None => ReviewResponse::allow(uid),
        Some(errors) => ReviewResponse::deny(
            uid,
            422,
            format!("SparkApplication {namespace}/{name} is invalid: {errors}"),
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
