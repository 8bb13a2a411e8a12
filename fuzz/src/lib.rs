//! Shared by the fuzz targets: the property checks (the same file tests/properties.rs uses),
//! generators of pods and apps from `arbitrary` bytes, and reviews through the real router.

#[path = "../../tests/properties/check.rs"]
pub mod check;
#[path = "../../tests/properties/pools.rs"]
pub mod pools;

pub mod generate;

use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use spark_webhook::cache::AppCache;
use spark_webhook::crd::SparkApplication;
use spark_webhook::metrics::Metrics;
use spark_webhook::mutate::MutationOptions;
use spark_webhook::namespaces::JobNamespaces;
use spark_webhook::webhook::{self, WebhookState};
use tower::ServiceExt as _;

/// The app of the benchmarks (`default/spark-pi`), as in tests/bench.
pub const BENCH_APP_YAML: &str = include_str!("../../tests/bench/sparkapplication.yaml");
/// The fixture app, driver pod (recorded from spark-submit 3.3.4) and executor pod.
pub const FIXTURE_APP_YAML: &str = include_str!("../../tests/fixtures/sparkapplication.yaml");
pub const DRIVER_POD: &str =
    include_str!("../../tests/fixtures/spark-submit-3.3.4/driver-pod.json");
pub const EXECUTOR_POD: &str = include_str!("../../tests/fixtures/executor-pod.json");

/// One current-thread runtime for every review of the process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// The webhook's state with `apps` in its cache and no API client.
pub fn state(apps: Vec<SparkApplication>, options: MutationOptions) -> WebhookState {
    WebhookState {
        apps: AppCache::with_apps(apps),
        namespaces: JobNamespaces::all(),
        options,
        metrics: Metrics::new(),
        client: None,
        recorder: None,
        limits: Default::default(),
        batch: Default::default(),
        enforce_quota: false,
    }
}

/// The router over the bench app, built once.
pub fn bench_router() -> axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER
        .get_or_init(|| {
            let app = yaml_serde::from_str(BENCH_APP_YAML).expect("bench app parses");
            webhook::router(state(vec![app], MutationOptions::default()))
        })
        .clone()
}

/// POSTs `body` to `path` (with `?timeout=<timeout>` when given, already URL-encoded) and
/// returns the status and body of the answer.
pub fn send(
    router: axum::Router,
    path: &str,
    timeout: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    let uri = match timeout {
        Some(t) => format!("{path}?timeout={t}"),
        None => path.to_string(),
    };
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    runtime().block_on(async move {
        let resp = router
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("response body");
        (status, bytes)
    })
}

/// An AdmissionReview v1 for the CREATE of `object` of `kind` in namespace `default`, shaped
/// like the kube-apiserver's (as tests/bench/common.rs builds them).
pub fn review(object: &Value, kind: (&str, &str, &str), resource: &str, uid: &str) -> Vec<u8> {
    let (group, version, kind) = kind;
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    serde_json::to_vec(&json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": object["metadata"]["name"], "namespace": "default", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:spark-operator:spark-operator-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": object, "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))
    .expect("review serialises")
}

/// A pod review body.
pub fn pod_review(pod: &Value, uid: &str) -> Vec<u8> {
    review(pod, ("", "v1", "Pod"), "pods", uid)
}

/// A SparkApplication review body.
pub fn app_review(app: &Value, uid: &str) -> Vec<u8> {
    review(
        app,
        ("sparkoperator.k8s.io", "v1beta2", "SparkApplication"),
        "sparkapplications",
        uid,
    )
}
