//! The admission webhook: HTTP routes, request handling and the answer's deadline.

pub mod apps;
pub mod pods;
pub mod review;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::cache::AppCache;
use crate::events::Recorder;
use crate::metrics::{Metrics, Outcome, ReviewKind};
use crate::mutate::MutationOptions;
use crate::namespaces::JobNamespaces;
use review::ReviewResponse;

/// The Go duration parser of `?timeout=` (its home is [`crate::cron`]).
pub use crate::cron::parse_go_duration;
pub use crate::registration::{MUTATE_POD_PATH, VALIDATE_APP_PATH, VALIDATE_SCHEDULED_PATH};

/// Largest review body accepted: the apiserver's own request limit is 3 MiB, so nothing larger
/// can be a real review.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Answer this long before the apiserver's `?timeout=`, so the answer is on the wire in time.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);
/// The apiserver's own default when it sends no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a review needs; cheap to clone.
#[derive(Clone)]
pub struct WebhookState {
    /// SparkApplications, from a watch-backed reflector (never a GET per review).
    pub apps: AppCache,
    pub namespaces: JobNamespaces,
    pub options: MutationOptions,
    pub metrics: Arc<Metrics>,
    /// For the one live GET on a cache miss and for Events; None in offline tests.
    pub client: Option<kube::Client>,
    /// Publishes Events on SparkApplications whose pods are refused; None in offline tests.
    pub recorder: Option<Recorder>,
}

/// The HTTPS routes (served by `server::serve_tls`).
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(MUTATE_POD_PATH, post(mutate_pod))
        .route(VALIDATE_APP_PATH, post(validate_app))
        .route(VALIDATE_SCHEDULED_PATH, post(validate_scheduled))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct ReviewQuery {
    timeout: Option<String>,
}

async fn mutate_pod(
    State(state): State<WebhookState>,
    Query(q): Query<ReviewQuery>,
    body: Bytes,
) -> Response {
    answer(
        ReviewKind::Pod,
        &q,
        pods::review(&state, &body),
        &state.metrics,
    )
    .await
}

async fn validate_app(
    State(state): State<WebhookState>,
    Query(q): Query<ReviewQuery>,
    body: Bytes,
) -> Response {
    answer(
        ReviewKind::SparkApplication,
        &q,
        async { apps::review(&body) },
        &state.metrics,
    )
    .await
}

async fn validate_scheduled(
    State(state): State<WebhookState>,
    Query(q): Query<ReviewQuery>,
    body: Bytes,
) -> Response {
    answer(
        ReviewKind::ScheduledSparkApplication,
        &q,
        async { apps::review_scheduled(&body) },
        &state.metrics,
    )
    .await
}

/// Runs one review under the apiserver's deadline and turns the result into HTTP.
async fn answer<F>(kind: ReviewKind, q: &ReviewQuery, work: F, metrics: &Metrics) -> Response
where
    F: Future<Output = Result<(ReviewResponse, Outcome), review::ReviewError>>,
{
    let started = Instant::now();
    let budget = q
        .timeout
        .as_deref()
        .and_then(parse_go_duration)
        .unwrap_or(DEFAULT_TIMEOUT)
        .saturating_sub(DEADLINE_MARGIN);
    // Reviews are CPU work measured in microseconds, except a live GET on a cache miss: that one
    // must never make us answer after the apiserver stopped listening.
    let result = tokio::time::timeout(budget, work).await;
    match result {
        Ok(Ok((resp, outcome))) => {
            metrics.observe(kind, outcome, started.elapsed().as_secs_f64());
            (StatusCode::OK, axum::Json(resp)).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "malformed admission review");
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{e}\n"),
            )
                .into_response()
        }
        Err(_) => {
            metrics.observe(kind, Outcome::Denied, started.elapsed().as_secs_f64());
            (
                StatusCode::GATEWAY_TIMEOUT,
                "review did not finish within the apiserver's timeout\n",
            )
                .into_response()
        }
    }
}
