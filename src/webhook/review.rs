//! AdmissionReview v1 on the wire.
//!
//! Requests are read into our own borrowed struct: the object stays raw JSON until a handler
//! needs it typed, and most pods (not Spark's) are never typed at all, only their metadata is
//! read. Responses use our own struct too: kube-core serialises `patch` as a JSON array of numbers
//! (kube-rs #1781), which the apiserver tolerates but which is not the documented contract and is
//! 3-4x larger than the base64 string the AdmissionReview v1 API specifies.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kube::core::admission::Operation;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Why a body is not an AdmissionReview we can answer (HTTP 400).
#[derive(Debug, Error)]
pub enum ReviewError {
    #[error("the body is not a JSON AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "unsupported AdmissionReview apiVersion {0:?}: only admission.k8s.io/v1 is served (set admissionReviewVersions: [v1])"
    )]
    Version(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    /// Not about the body: its app is not cached and the live-read budget is spent (503).
    #[error(transparent)]
    OverBudget(#[from] super::live_reads::OverBudget),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, O> {
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    request: Option<Request<'a, O>>,
}

/// The fields of an AdmissionReview v1 request that the handlers read, strings borrowed from
/// the body where JSON lets them be; the object as `O` (raw JSON, or a type the handler reads
/// it as in the same pass). Everything else in the request is skipped unread.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a, O> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Kind<'a>,
    pub operation: Operation,
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// The object as sent; `None` for DELETE.
    #[serde(default = "none")]
    pub object: Option<O>,
    /// The object before an UPDATE (or DELETE); `None` for CREATE.
    #[serde(default = "none")]
    pub old_object: Option<O>,
}

/// The request's `kind` (group/version/kind of the object).
#[derive(Debug, Deserialize)]
pub struct Kind<'a> {
    #[serde(default, borrow)]
    pub group: Cow<'a, str>,
    #[serde(default, borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

fn none<O>() -> Option<O> {
    None
}

impl<O> Request<'_, O> {
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }
}

/// An object's identity and labels, read without typing the rest of it.
#[derive(Debug, Default, Deserialize)]
pub struct ObjectHead {
    #[serde(default)]
    pub metadata: Option<HeadMeta>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadMeta {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

impl ObjectHead {
    /// Reads the head of a raw object; a non-object is a malformed review.
    pub fn read(object: &RawValue) -> Result<Self, ReviewError> {
        Ok(serde_json::from_str(object.get())?)
    }

    pub fn meta(&self) -> &HeadMeta {
        static EMPTY: HeadMeta = HeadMeta {
            name: None,
            generate_name: None,
            namespace: None,
            labels: None,
        };
        self.metadata.as_ref().unwrap_or(&EMPTY)
    }

    /// `metadata.name`, else `metadata.generateName`, else empty.
    pub fn name(&self) -> &str {
        let m = self.meta();
        m.name
            .as_deref()
            .or(m.generate_name.as_deref())
            .unwrap_or("")
    }
}

/// Parses and checks a review body, reading its object as `O`.
pub fn parse<'a, O: Deserialize<'a>>(body: &'a [u8]) -> Result<Request<'a, O>, ReviewError> {
    let review: Envelope<'a, O> = serde_json::from_slice(body)?;
    if review.api_version != API_VERSION || review.kind != "AdmissionReview" {
        return Err(ReviewError::Version(format!(
            "{} {}",
            review.api_version, review.kind
        )));
    }
    review.request.ok_or(ReviewError::NoRequest)
}

/// An AdmissionReview v1 response; [`ReviewResponse::to_body`] writes it.
#[derive(Debug)]
pub struct ReviewResponse {
    response: Response,
}

#[derive(Debug)]
struct Response {
    uid: String,
    allowed: bool,
    status: Option<Status>,
    /// The JSON patch array, sent base64-encoded as the v1 API specifies (with `patchType`).
    patch: Option<Vec<u8>>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Status {
    code: u16,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl ReviewResponse {
    fn new(uid: &str, allowed: bool) -> Self {
        ReviewResponse {
            response: Response {
                uid: uid.to_string(),
                allowed,
                status: None,
                patch: None,
                warnings: Vec::new(),
            },
        }
    }

    /// Allowed, unchanged.
    pub fn allow(uid: &str) -> Self {
        Self::new(uid, true)
    }

    /// Allowed with a JSON patch (the array's JSON text); an empty patch sends none.
    pub fn patched(uid: &str, patch_json: Vec<u8>) -> Self {
        let mut r = Self::new(uid, true);
        if patch_json != b"[]" {
            r.response.patch = Some(patch_json);
        }
        r
    }

    /// Refused with a message the user sees in `kubectl` (HTTP-like `code`, e.g. 403 or 422).
    pub fn deny(uid: &str, code: u16, message: impl Into<String>) -> Self {
        let mut r = Self::new(uid, false);
        r.response.status = Some(Status {
            code,
            message: message.into(),
            reason: match code {
                403 => Some("Forbidden"),
                422 => Some("Invalid"),
                504 => Some("Timeout"),
                _ => None,
            },
        });
        r
    }

    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.response.warnings.push(warning.into());
        self
    }

    pub fn allowed(&self) -> bool {
        self.response.allowed
    }

    pub fn has_patch(&self) -> bool {
        self.response.patch.is_some()
    }

    /// The answer's JSON body, written once into a buffer sized for it. The patch's base64 is
    /// encoded straight into the body: a heavy pod's patch is ~10 KiB of base64, which a
    /// serialiser would copy and scan for characters to escape that base64 never has.
    pub fn to_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        let r = &self.response;
        let patch = r.patch.as_deref().unwrap_or_default();
        let mut body = Vec::with_capacity(256 + patch.len().div_ceil(3) * 4);
        body.extend_from_slice(br#"{"apiVersion":"#);
        serde_json::to_writer(&mut body, API_VERSION)?;
        body.extend_from_slice(br#","kind":"AdmissionReview","response":{"uid":"#);
        serde_json::to_writer(&mut body, &r.uid)?;
        body.extend_from_slice(if r.allowed {
            br#","allowed":true"#
        } else {
            br#","allowed":false"#
        });
        if let Some(status) = &r.status {
            body.extend_from_slice(br#","status":"#);
            serde_json::to_writer(&mut body, status)?;
        }
        if r.patch.is_some() {
            body.extend_from_slice(br#","patch":""#);
            base64_simd::STANDARD.encode_append(patch, &mut body);
            body.extend_from_slice(br#"","patchType":"JSONPatch""#);
        }
        if !r.warnings.is_empty() {
            body.extend_from_slice(br#","warnings":"#);
            serde_json::to_writer(&mut body, &r.warnings)?;
        }
        body.extend_from_slice(b"}}");
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn review(api_version: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": api_version, "kind": "AdmissionReview",
            "request": {
                "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "ns", "operation": "CREATE", "userInfo": {},
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn parses_v1_and_refuses_v1beta1() {
        type Raw<'a> = &'a RawValue;
        let body = review("admission.k8s.io/v1");
        let req = parse::<Raw>(&body).unwrap();
        assert_eq!(req.uid, "u-1");
        assert!(req.object.unwrap().get().contains("\"Pod\""));
        let err = parse::<Raw>(&review("admission.k8s.io/v1beta1")).unwrap_err();
        assert!(
            err.to_string().contains("only admission.k8s.io/v1"),
            "{err}"
        );
        assert!(matches!(
            parse::<Raw>(b"{not json"),
            Err(ReviewError::Json(_))
        ));
        assert!(matches!(parse::<Raw>(b"[]"), Err(ReviewError::Json(_))));
    }

    #[test]
    fn patch_is_base64_of_the_json_patch_and_absent_when_empty() {
        let patch = br#"[{"op":"add","path":"/metadata/labels","value":{}}]"#;
        let v: serde_json::Value = serde_json::from_slice(
            &ReviewResponse::patched("u", patch.to_vec())
                .to_body()
                .unwrap(),
        )
        .unwrap();
        let b64 = v["response"]["patch"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&decoded).unwrap()[0]["op"],
            "add"
        );
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        assert_eq!(v["response"]["uid"], "u");

        let empty: serde_json::Value = serde_json::from_slice(
            &ReviewResponse::patched("u", b"[]".to_vec())
                .to_body()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(empty["apiVersion"], API_VERSION);
        assert_eq!(empty["kind"], "AdmissionReview");
        assert_eq!(empty["response"]["allowed"], true);
        assert!(empty["response"].get("patch").is_none());
        assert!(empty["response"].get("patchType").is_none());
    }

    #[test]
    fn deny_carries_code_and_message() {
        let resp = ReviewResponse::deny("u", 422, "bad \"quoted\"").with_warning("w\n1");
        let v: serde_json::Value = serde_json::from_slice(&resp.to_body().unwrap()).unwrap();
        assert_eq!(v["response"]["warnings"], json!(["w\n1"]));
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 422);
        assert_eq!(v["response"]["status"]["message"], "bad \"quoted\"");
        assert_eq!(v["response"]["status"]["reason"], "Invalid");
        assert!(v["response"].get("patch").is_none());
    }
}
