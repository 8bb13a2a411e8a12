//! Whether this replica can answer reviews as far as the Kubernetes API goes, for `/readyz`.
//!
//! Reflector caches keep serving their last state while the apiserver is down, so "synced once"
//! says nothing about now: a probe of the apiserver's own `/readyz` every second does (readable
//! by every client through the default `system:public-info-viewer` role). One failed probe does
//! not make the replica unready, though: reviews are answered from those warm caches, and an
//! etcd blip or a slow control plane reaches every replica at once, so failing readiness on it
//! would empty the Service and, with failurePolicy Fail, refuse every Spark pod. The replica turns
//! unready only once the API has not answered for the outage grace (`--api-outage-grace`).
//!
//! Also how long the controllers wait before retrying a failed API call ([`ApiBackoff`]), and
//! how their watches back off ([`WatchBackoff`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use tokio_util::sync::CancellationToken;

/// How often the apiserver is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe slower than this counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The probes' verdicts.
#[derive(Debug)]
pub struct ApiHealth {
    reachable: AtomicBool,
    /// When a probe last succeeded; None: never yet.
    last_ok: std::sync::Mutex<Option<Instant>>,
    grace: Duration,
}

impl ApiHealth {
    /// Probes every [`PROBE_INTERVAL`] until `shutdown`; unready until the first success, and
    /// once no probe has succeeded for `grace`.
    pub fn start(client: Client, grace: Duration, shutdown: CancellationToken) -> Arc<Self> {
        let health = Arc::new(ApiHealth {
            reachable: AtomicBool::new(false),
            last_ok: std::sync::Mutex::new(None),
            grace,
        });
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
                if ok {
                    *h.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                }
                let was = h.reachable.swap(ok, Ordering::AcqRel);
                match (was, ok) {
                    (true, false) => tracing::warn!(
                        grace = ?h.grace,
                        "Kubernetes API unreachable: reviews are answered from the caches; unready if this lasts the grace"
                    ),
                    (false, true) => {
                        RECOVERIES.fetch_add(1, Ordering::AcqRel);
                        tracing::info!("Kubernetes API reachable");
                    }
                    _ => {}
                }
            }
        });
        health
    }

    /// Why `/readyz` must fail as far as the API goes; None: ready.
    pub fn unready_reason(&self) -> Option<String> {
        let last_ok = *self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
        verdict(
            self.reachable.load(Ordering::Acquire),
            last_ok.map(|t| t.elapsed()),
            self.grace,
        )
    }
}

/// The readiness rule, pure: unready before the first answer, and once the last answer is
/// `grace` old while the latest probe failed.
fn verdict(reachable: bool, since_ok: Option<Duration>, grace: Duration) -> Option<String> {
    match since_ok {
        None => Some("Kubernetes API not reached yet".into()),
        Some(_) if reachable => None,
        Some(age) if age < grace => None,
        Some(age) => Some(format!(
            "Kubernetes API unreachable for {}s (grace {grace:?})",
            age.as_secs()
        )),
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

/// Times the probe saw the apiserver come back: watch backoffs start over then.
static RECOVERIES: AtomicU64 = AtomicU64::new(0);

/// Retry delays of one watch after an error: 250 ms doubling to 2 s, with up to a quarter of
/// jitter, reset by the watch's next success and whenever the probe sees the apiserver come
/// back. kube's default grows to 30 s and is reset only by an event, so after an apiserver
/// outage the watches stayed blind for up to another half minute (a restarted apiserver first
/// answers a resumed watch with 410 Expired, itself an error that waited a full backoff).
/// Two seconds between tries of a handful of watches is no load for a recovering apiserver.
#[derive(Debug)]
pub struct WatchBackoff {
    next: Duration,
    recoveries: u64,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(2);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: Self::FIRST,
            recoveries: RECOVERIES.load(Ordering::Acquire),
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let recoveries = RECOVERIES.load(Ordering::Acquire);
        if recoveries != self.recoveries {
            self.recoveries = recoveries;
            self.next = Self::FIRST;
        }
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let quarter = u32::try_from((delay / 4).as_millis()).unwrap_or(1).max(1);
        Some(delay + Duration::from_millis(u64::from(nanos % quarter)))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// No delay: for the controller's trigger stream, whose watches back off on their own.
#[derive(Debug, Default)]
pub struct NoBackoff;

impl Iterator for NoBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoBackoff {
    fn reset(&mut self) {}
}

// --- API retries ---------------------------------------------------------------------------
// A reconcile whose API call failed (an apiserver refusing or unwell) is retried after a delay
// that grows with the object's run of failures: the controllers share one schedule.

/// The first retry after an API error.
pub const API_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest retry delay, however long an app's API calls keep failing.
pub const API_RETRY_CAP: Duration = Duration::from_secs(5 * 60);
/// Each delay is spread by up to this share either way, so apps failing together (an apiserver
/// outage) do not all retry at the same instant.
pub const API_RETRY_JITTER: f64 = 0.2;

/// The delay before retrying an app whose API call failed for the `failures`-th time in a row
/// (1, 2, ...): [`API_RETRY_FIRST`] doubling to [`API_RETRY_CAP`], times `1 + jitter *
/// API_RETRY_JITTER` for a `jitter` in [-1, 1] (clamped).
pub fn api_retry_delay(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let base = API_RETRY_FIRST
        .saturating_mul(1 << doublings)
        .min(API_RETRY_CAP);
    base.mul_f64(1.0 + jitter.clamp(-1.0, 1.0) * API_RETRY_JITTER)
}

/// Each app's run of consecutive API failures (by namespace and name): grows with every
/// failure, forgotten on the app's next successful reconcile.
#[derive(Default)]
pub struct ApiBackoff {
    failures: Mutex<HashMap<(String, String), u32>>,
}

impl ApiBackoff {
    /// Counts a failure of the app's reconcile; the delay before its retry.
    pub fn failed(&self, namespace: &str, name: &str) -> Duration {
        let failures = match self.failures.lock() {
            Ok(mut f) => {
                let n = f
                    .entry((namespace.to_owned(), name.to_owned()))
                    .or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        api_retry_delay(failures, jitter())
    }

    /// The app reconciled: its next failure starts from the first delay again.
    pub fn succeeded(&self, namespace: &str, name: &str) {
        if let Ok(mut f) = self.failures.lock() {
            // No allocation on the common path: most apps have no entry.
            if !f.is_empty() {
                f.remove(&(namespace.to_owned(), name.to_owned()));
            }
        }
    }

    /// Forgets the apps `keep` says no to (deleted before their next reconcile).
    pub fn retain(&self, mut keep: impl FnMut(&str, &str) -> bool) {
        if let Ok(mut f) = self.failures.lock() {
            f.retain(|(ns, name), _| keep(ns, name));
        }
    }

    /// Apps with a run of failures (a gauge of trouble, and what the tests read).
    pub fn failing(&self) -> usize {
        self.failures.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// A number in [-1, 1], different each call: std's per-map random hash keys, hashed.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_retries_double_from_one_second_to_a_five_minute_cap() {
        let delays: Vec<u64> = (1..=11)
            .map(|n| api_retry_delay(n, 0.0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        // However long the run: capped, no overflow.
        assert_eq!(api_retry_delay(u32::MAX, 0.0), API_RETRY_CAP);
        assert_eq!(api_retry_delay(0, 0.0), API_RETRY_FIRST);
    }

    #[test]
    fn api_retries_jitter_within_twenty_percent() {
        assert_eq!(api_retry_delay(1, -1.0), Duration::from_millis(800));
        assert_eq!(api_retry_delay(1, 1.0), Duration::from_millis(1200));
        assert_eq!(api_retry_delay(40, 1.0), Duration::from_secs(360));
        assert_eq!(api_retry_delay(40, 7.0), Duration::from_secs(360));
        let draws: Vec<f64> = (0..1000).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (-1.0..=1.0).contains(j)));
        // Spread, not constant: both halves of the range are used.
        assert!(draws.iter().any(|j| *j < -0.5) && draws.iter().any(|j| *j > 0.5));
    }

    #[test]
    fn an_apps_failures_grow_its_delay_until_it_succeeds_and_not_another_apps() {
        let b = ApiBackoff::default();
        let within = |d: Duration, secs: f64| {
            let s = d.as_secs_f64();
            assert!(
                s >= secs * 0.8 - 1e-9 && s <= secs * 1.2 + 1e-9,
                "{d:?} vs {secs}s"
            );
        };
        within(b.failed("ns", "a"), 1.0);
        within(b.failed("ns", "a"), 2.0);
        within(b.failed("ns", "a"), 4.0);
        // Another app (or the same name elsewhere) has its own run.
        within(b.failed("ns", "b"), 1.0);
        within(b.failed("other", "a"), 1.0);
        assert_eq!(b.failing(), 3);
        b.succeeded("ns", "a");
        within(b.failed("ns", "a"), 1.0);
        within(b.failed("ns", "b"), 2.0);
        b.succeeded("ns", "a");
        b.succeeded("ns", "b");
        assert_eq!(b.failing(), 1);
        // A deleted app's run is forgotten by the sweep.
        b.retain(|ns, _| ns != "other");
        assert_eq!(b.failing(), 0);
    }

    #[test]
    fn readiness_rides_out_an_api_blip_shorter_than_the_grace() {
        let grace = Duration::from_secs(30);
        let s = Duration::from_secs;
        assert!(verdict(false, None, grace).is_some(), "never reached");
        assert_eq!(verdict(true, Some(s(1)), grace), None);
        assert_eq!(verdict(false, Some(s(5)), grace), None, "a blip");
        let r = verdict(false, Some(s(31)), grace).expect("past the grace");
        assert!(r.contains("unreachable for 31s"), "{r}");
        assert!(
            verdict(false, Some(s(1)), Duration::ZERO).is_some(),
            "no grace"
        );
    }

    #[test]
    fn watch_backoff_grows_to_its_cap_and_starts_over_when_the_api_is_back() {
        let mut b = WatchBackoff::default();
        let delays: Vec<Duration> = (&mut b).take(6).collect();
        assert!(delays[0] >= WatchBackoff::FIRST && delays[0] < WatchBackoff::FIRST * 2);
        assert!(delays[5] >= WatchBackoff::MAX && delays[5] <= WatchBackoff::MAX * 5 / 4);
        RECOVERIES.fetch_add(1, Ordering::AcqRel);
        assert!(b.next().is_some_and(|d| d < WatchBackoff::FIRST * 2));
    }
}
