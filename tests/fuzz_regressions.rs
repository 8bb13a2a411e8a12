//! Inputs that made the webhook panic, kept as regular tests (fuzz/ has the targets).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use spark_webhook::webhook::{self, MUTATE_POD_PATH, parse_go_duration};
use tower::ServiceExt as _;

/// `?timeout=3000000000000000h3000000000000000h`: each term fits in a Duration, their sum does
/// not, and `Duration += Duration` panics ("overflow when adding durations") in
/// `webhook::parse_go_duration`, so the handler panics and the connection is dropped. Any
/// client that reaches the port can send it (the apiserver itself sends 1s-30s). Fix: add with
/// `total.checked_add(..)?` (an unusable timeout then falls back to the default).
#[test]
fn huge_timeout_query_is_not_a_panic() {
    assert_eq!(
        parse_go_duration("3000000000000000h3000000000000000h"),
        None
    );
    assert_eq!(
        parse_go_duration("3000000000000000h"),
        Some(Duration::from_secs(3000000000000000 * 3600))
    );
}

/// The same input through the router: a 400 (the body is not a review), not a panic.
#[tokio::test]
async fn huge_timeout_query_through_the_router() {
    let state = webhook::WebhookState {
        apps: spark_webhook::cache::AppCache::with_apps(Vec::new()),
        namespaces: spark_webhook::namespaces::JobNamespaces::all(),
        options: Default::default(),
        metrics: spark_webhook::metrics::Metrics::new(),
        client: None,
        recorder: None,
        limits: Default::default(),
        batch: Default::default(),
        enforce_quota: false,
    };
    let request = Request::post(format!(
        "{MUTATE_POD_PATH}?timeout=3000000000000000h3000000000000000h"
    ))
    .body(Body::from("{}"))
    .expect("request");
    let resp = webhook::router(state)
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
