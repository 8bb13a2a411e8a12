//! The admission webhook: HTTP routes, request handling and the answer's bounds.
//!
//! Each review is bounded three ways ([`ReviewLimits`]), so a hostile or broken client cannot
//! hold the port and a stalled apiserver cannot make us answer late:
//! - the body must arrive within the body-read timeout (408 and the connection closed
//!   otherwise): TLS handshake and headers are bounded in `server`, this bounds the rest;
//! - at most `max_in_flight` reviews run at once, counted from the body read to the answer (a
//!   slow body holds no slot, so slow clients cannot crowd out real reviews); over the cap the
//!   answer is an immediate 503 with `Retry-After`, never a queue: the apiserver's failurePolicy
//!   decides at once, and the reconciler retries a driver refused that way;
//! - the whole answer, body read included, comes within the review's `?timeout=` (less a
//!   margin), else 504 with the reason: only a live GET on a cache miss can take that long.
//!
//! Live GETs themselves are budgeted ([`live_reads`]): forged reviews naming apps that do not
//! exist cannot turn into a flood of apiserver reads.

pub mod apps;
pub mod live_reads;
pub mod pods;
pub mod review;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::cache::AppCache;
use crate::events::Recorder;
use crate::metrics::{Metrics, Outcome, ReviewKind, UnansweredReason};
use crate::mutate::MutationOptions;
use crate::namespaces::JobNamespaces;
use crate::scheduling::BatchOptions;
use live_reads::LiveReads;
use review::ReviewResponse;

pub use crate::cron::parse_go_duration;
pub use crate::registration::{MUTATE_POD_PATH, VALIDATE_APP_PATH, VALIDATE_SCHEDULED_PATH};

/// Largest review body accepted: the apiserver's own request limit is 3 MiB, so nothing larger
/// can be a real review.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Answer this long before the apiserver's `?timeout=`, so the answer is on the wire in time.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);
/// The apiserver's own default when it sends no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of `--webhook-body-timeout`: the apiserver sends a review in one write, so a body
/// still arriving after this is a slow or hostile client.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--webhook-max-in-flight`: reviews take microseconds, so this many at once means
/// they are stuck on live GETs of a stalled apiserver; more would only pile up.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The server-side bounds of a review (see the module doc); cheap to clone, the in-flight
/// count is shared by every clone.
#[derive(Clone, Debug)]
pub struct ReviewLimits {
    pub body_timeout: Duration,
    pub max_in_flight: usize,
    in_flight: Arc<Semaphore>,
    /// Live GETs of cache misses, shared by every review.
    pub live_reads: Arc<LiveReads>,
}

impl ReviewLimits {
    pub fn new(body_timeout: Duration, max_in_flight: usize, live_reads_per_second: u32) -> Self {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        ReviewLimits {
            body_timeout,
            max_in_flight,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            live_reads: Arc::new(LiveReads::new(live_reads_per_second)),
        }
    }
}

impl Default for ReviewLimits {
    fn default() -> Self {
        ReviewLimits::new(
            DEFAULT_BODY_TIMEOUT,
            DEFAULT_MAX_IN_FLIGHT,
            live_reads::DEFAULT_PER_SECOND,
        )
    }
}

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
    pub limits: ReviewLimits,
    /// Batch schedulers enabled (apps naming another are refused; executors get their marks).
    pub batch: BatchOptions,
    /// `--enable-resource-quota-enforcement`: refuse apps that do not fit the namespace's quotas.
    pub enforce_quota: bool,
}

/// The HTTPS routes (served by `server::serve_tls`). The state is shared, not cloned per
/// review: it holds the `--namespaces` set and other owned lists.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(MUTATE_POD_PATH, post(mutate_pod))
        .route(VALIDATE_APP_PATH, post(validate_app))
        .route(VALIDATE_SCHEDULED_PATH, post(validate_scheduled))
        .with_state(Arc::new(state))
}

#[derive(Debug, Deserialize)]
struct ReviewQuery {
    timeout: Option<String>,
}

async fn mutate_pod(
    State(state): State<Arc<WebhookState>>,
    Query(q): Query<ReviewQuery>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let budget = budget(&q);
    let body = match read_body(&state, body, budget).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    answer(
        ReviewKind::Pod,
        started,
        budget,
        pods::review(&state, &body),
        &state,
    )
    .await
}

async fn validate_app(
    State(state): State<Arc<WebhookState>>,
    Query(q): Query<ReviewQuery>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let budget = budget(&q);
    let body = match read_body(&state, body, budget).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    answer(
        ReviewKind::SparkApplication,
        started,
        budget,
        apps::review(&state, &body),
        &state,
    )
    .await
}

async fn validate_scheduled(
    State(state): State<Arc<WebhookState>>,
    Query(q): Query<ReviewQuery>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let budget = budget(&q);
    let body = match read_body(&state, body, budget).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    answer(
        ReviewKind::ScheduledSparkApplication,
        started,
        budget,
        async { apps::review_scheduled(&body) },
        &state,
    )
    .await
}

/// The time this review may take: the apiserver's `?timeout=` (its default without one) less
/// [`DEADLINE_MARGIN`].
fn budget(q: &ReviewQuery) -> Duration {
    q.timeout
        .as_deref()
        .and_then(parse_go_duration)
        .unwrap_or(DEFAULT_TIMEOUT)
        .saturating_sub(DEADLINE_MARGIN)
}

/// Reads the whole body within the body-read timeout (and the review's budget), at most
/// [`MAX_BODY_BYTES`].
async fn read_body(state: &WebhookState, body: Body, budget: Duration) -> Result<Bytes, Response> {
    let limit = state.limits.body_timeout.min(budget);
    match tokio::time::timeout(limit, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            // Too large (the only error of a body that arrived), or the client went away.
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("review body larger than {MAX_BODY_BYTES} bytes\n"),
                )
            } else {
                text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the review body: {e}\n"),
                )
            })
        }
        Err(_) => {
            state.metrics.unanswered(UnansweredReason::body_timeout);
            tracing::debug!(
                ?limit,
                "review body not received in time; closing the connection"
            );
            let mut resp = text(
                StatusCode::REQUEST_TIMEOUT,
                format!("review body not received within {limit:?}\n"),
            );
            // The rest of the body will not be read: the connection cannot be reused.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(resp)
        }
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Runs one review, holding an in-flight slot, within what is left of `budget`, and turns the
/// result into HTTP.
async fn answer<F>(
    kind: ReviewKind,
    started: Instant,
    budget: Duration,
    work: F,
    state: &WebhookState,
) -> Response
where
    F: Future<Output = Result<(ReviewResponse, Outcome), review::ReviewError>>,
{
    let metrics = &state.metrics;
    let Ok(_slot) = state.limits.in_flight.clone().try_acquire_owned() else {
        metrics.unanswered(UnansweredReason::in_flight_limit);
        tracing::warn!(
            limit = state.limits.max_in_flight,
            "review refused: too many reviews in flight"
        );
        let mut resp = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "spark-webhook is answering {} reviews already (--webhook-max-in-flight); retry\n",
                state.limits.max_in_flight
            ),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    // Reviews are CPU work measured in microseconds, except a live GET on a cache miss: that one
    // must never make us answer after the apiserver stopped listening.
    let left = budget.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, work).await {
        Ok(Ok((resp, outcome))) => match resp.to_body() {
            Ok(body) => {
                metrics.observe(kind, outcome, started.elapsed().as_secs_f64());
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "answer not serialised");
                text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
            }
        },
        Ok(Err(review::ReviewError::OverBudget(e))) => {
            metrics.unanswered(UnansweredReason::live_read_budget);
            tracing::warn!(error = %e, "review refused: live read budget spent");
            let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry\n"));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "malformed admission review");
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
        Err(_) => {
            metrics.unanswered(UnansweredReason::deadline);
            tracing::warn!(
                ?budget,
                "review not finished within the apiserver's timeout (a live GET of the Kubernetes API did not answer)"
            );
            text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "review did not finish within the apiserver's timeout ({budget:?} allowed): the Kubernetes API did not answer the webhook's lookup in time\n"
                ),
            )
        }
    }
}
