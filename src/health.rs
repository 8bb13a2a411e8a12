//! Whether the Kubernetes API answers, for `/readyz`. Reflector caches keep serving their last
//! state while the apiserver is down, so "synced once" says nothing about now: a probe of the
//! apiserver's own `/readyz` does (readable by every client through the default
//! `system:public-info-viewer` role).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Client;
use tokio_util::sync::CancellationToken;

/// How often the apiserver is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe slower than this counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The last probe's verdict.
#[derive(Debug, Default)]
pub struct ApiHealth {
    reachable: AtomicBool,
}

impl ApiHealth {
    /// Probes every [`PROBE_INTERVAL`] until `shutdown`; unreachable until the first success.
    pub fn start(client: Client, shutdown: CancellationToken) -> Arc<Self> {
        let health = Arc::new(ApiHealth::default());
        let h = health.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let ok = probe(&client).await;
                let was = h.reachable.swap(ok, Ordering::AcqRel);
                match (was, ok) {
                    (true, false) => tracing::warn!("Kubernetes API unreachable: not ready"),
                    (false, true) => tracing::info!("Kubernetes API reachable"),
                    _ => {}
                }
            }
        });
        health
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }
}

async fn probe(client: &Client) -> bool {
    let Ok(request) = axum::http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, client.request_text(request)).await,
        Ok(Ok(_))
    )
}
