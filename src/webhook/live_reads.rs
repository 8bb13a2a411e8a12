//! The budget of live GETs that cache misses may make.
//!
//! A pod review whose app is not in the cache (created a moment ago, its watch event not here
//! yet) reads the app from the apiserver. Anyone who can reach the webhook port can send reviews
//! naming apps that do not exist, and each one would be a quorum read of etcd: without a budget
//! the webhook turns a flood of forged reviews into a flood of apiserver reads. Real misses are
//! rare (one per app created, at most, and only while the watch lags), so a token bucket of a
//! few reads per second costs real reviews nothing.
//!
//! A miss takes a token; when none is left it waits for the next one, unless that would be
//! more than [`MAX_WAIT`] away: then the review is answered 503 at once (the apiserver reports a
//! failed webhook call, which the reconciler retries without using an attempt), so forged
//! reviews cannot push real ones past their deadline either.
//!
//! Hand-written (a mutex over two numbers) rather than `governor`: one call site, and governor
//! brings a dozen crates into the image for it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a cache miss waits for its read.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// Default of `--webhook-live-reads-per-second`.
pub const DEFAULT_PER_SECOND: u32 = 20;

/// A token bucket: `per_second` tokens a second, at most `per_second` saved up.
#[derive(Debug)]
pub struct LiveReads {
    per_second: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Negative: reads already promised to waiters.
    tokens: f64,
    at: Instant,
}

/// No read within [`MAX_WAIT`]: the review is answered 503.
#[derive(Debug, thiserror::Error)]
#[error(
    "more than {0} cache misses a second need live reads of the Kubernetes API (--webhook-live-reads-per-second)"
)]
pub struct OverBudget(pub u32);

impl LiveReads {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        LiveReads {
            per_second,
            bucket: Mutex::new(Bucket {
                tokens: per_second,
                at: Instant::now(),
            }),
        }
    }

    /// How long until this read may go (zero: at once), having taken its token; `None`: not
    /// within [`MAX_WAIT`], and nothing was taken.
    pub fn reserve(&self, now: Instant) -> Option<Duration> {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.per_second);
        b.at = b.at.max(now);
        let wait = Duration::from_secs_f64((1.0 - b.tokens).max(0.0) / self.per_second);
        if wait > MAX_WAIT {
            return None;
        }
        b.tokens -= 1.0;
        Some(wait)
    }

    /// Waits for this read's turn, or says it will not come in time.
    pub async fn acquire(&self) -> Result<(), OverBudget> {
        match self.reserve(Instant::now()) {
            Some(wait) if wait.is_zero() => Ok(()),
            Some(wait) => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
            None => Err(OverBudget(self.per_second as u32)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_seconds_worth_goes_at_once_then_reads_are_paced() {
        let reads = LiveReads::new(10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(reads.reserve(t0), Some(Duration::ZERO));
        }
        // The next ten wait 0.1 s more each, up to MAX_WAIT; the one after is refused.
        for i in 1..=10u32 {
            let wait = reads.reserve(t0).expect("within a second");
            assert!(
                (wait.as_secs_f64() - f64::from(i) / 10.0).abs() < 1e-6,
                "{i}: {wait:?}"
            );
        }
        assert_eq!(reads.reserve(t0), None);
        // A refusal takes nothing: two seconds later the debt is paid and one token saved.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(reads.reserve(later), Some(Duration::ZERO));
    }

    #[test]
    fn idle_time_saves_at_most_one_seconds_worth() {
        let reads = LiveReads::new(5);
        let t0 = Instant::now() + Duration::from_secs(60);
        let taken = (0..20)
            .take_while(|_| reads.reserve(t0) == Some(Duration::ZERO))
            .count();
        assert_eq!(taken, 5);
    }
}
