//! The plain-HTTP admin endpoints: /healthz, /readyz and /metrics. Apart from the webhook's
//! TLS port, so probes and scrapers need no certificate and keep answering while it rotates.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use tokio_util::sync::CancellationToken;

use crate::cache::AppCache;
use crate::certs::tls::ReloadingCertResolver;
use crate::health::ApiHealth;
use crate::metrics::{AppMetrics, Metrics, OPENMETRICS_TEXT, PROMETHEUS_TEXT};

/// What the admin endpoints report on.
#[derive(Clone)]
pub struct AdminState {
    /// Whether the apiserver answers (within its outage grace).
    pub api: Arc<ApiHealth>,
    /// Cancelled at SIGTERM: unready from then on, so endpoints drop us while we still serve.
    pub draining: CancellationToken,
    /// The webhook's cache and certificate; None when the webhook is off.
    pub apps: Option<AppCache>,
    pub resolver: Option<Arc<ReloadingCertResolver>>,
    pub metrics: Arc<Metrics>,
    pub app_metrics: Option<Arc<AppMetrics>>,
}

/// `/healthz` (the process answers), `/readyz` and `/metrics`.
pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

/// Ready while not shutting down, the apiserver answers (or has not for less than the outage
/// grace: see `health`), the certificate is valid and the SparkApplication cache has synced.
async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let mut missing = Vec::new();
    if s.draining.is_cancelled() {
        missing.push("shutting down".to_string());
    }
    if let Some(why) = s.api.unready_reason() {
        missing.push(why);
    }
    if let Some(r) = s.resolver.as_ref().filter(|r| !r.is_valid_now()) {
        missing.push(if r.is_loaded() {
            "serving certificate expired".to_string()
        } else {
            match r.last_error() {
                Some(e) => format!("no serving certificate yet ({e})"),
                None => "no serving certificate yet".to_string(),
            }
        });
    }
    if s.apps.as_ref().is_some_and(|a| !a.is_ready()) {
        missing.push("SparkApplication cache not synced".to_string());
    }
    if missing.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join(", ")),
        )
    }
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the classic text format
/// otherwise (curl, promtool) and always under `--metrics-names=kubeflow`, as kubeflow serves it.
async fn metrics_handler(
    State(s): State<AdminState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    if let Some(r) = &s.resolver {
        s.metrics.cert_not_after.set(r.not_after_unix());
        s.metrics.ca_not_after.set(r.ca_not_after_unix());
    }
    let apps = s.app_metrics.as_deref();
    let openmetrics = Metrics::openmetrics_allowed(apps)
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(header::CONTENT_TYPE, OPENMETRICS_TEXT)],
            s.metrics.encode(apps),
        )
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            s.metrics.encode_text(apps),
        )
    }
}
