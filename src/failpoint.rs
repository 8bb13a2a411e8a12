//! Crash points for the fault tests: `SPARK_WEBHOOK_FAIL_POINT=<point>[:<n>]` makes the process
//! abort (no unwinding, no cleanup: as abrupt as SIGKILL) the n-th time (default: the first) any
//! reconcile reaches `<point>`. Always compiled in, inert without the variable: the variable is
//! read once, and an unarmed [`hit`] is one load of a `OnceLock`.
//!
//! The points sit between the writes of one submission, where a crash leaves the most awkward
//! state for the next incarnation to adopt (kubeflow #2788).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a point.
pub const ENV: &str = "SPARK_WEBHOOK_FAIL_POINT";

/// Where a submission can be cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailPoint {
    /// The driver pod was created; its Service and ConfigMap were not.
    AfterDriver,
    /// The driver pod and Service exist; the ConfigMap does not.
    AfterService,
    /// All three objects exist; the status does not say SUBMITTED yet.
    AfterConfigMap,
    /// The status saying SUBMITTED is about to be written.
    BeforeStatus,
}

impl FailPoint {
    pub const ALL: [FailPoint; 4] = [
        FailPoint::AfterDriver,
        FailPoint::AfterService,
        FailPoint::AfterConfigMap,
        FailPoint::BeforeStatus,
    ];

    /// The name used in [`ENV`].
    pub fn name(self) -> &'static str {
        match self {
            FailPoint::AfterDriver => "after-driver",
            FailPoint::AfterService => "after-service",
            FailPoint::AfterConfigMap => "after-configmap",
            FailPoint::BeforeStatus => "before-status",
        }
    }
}

struct Armed {
    point: FailPoint,
    /// Hits left before the abort.
    left: AtomicU64,
}

/// Parses `<point>[:<n>]` (n >= 1).
fn parse(spec: &str) -> Option<(FailPoint, u64)> {
    let (name, n) = match spec.split_once(':') {
        Some((name, n)) => (name, n.trim().parse().ok().filter(|n| *n >= 1)?),
        None => (spec, 1),
    };
    let point = FailPoint::ALL
        .into_iter()
        .find(|p| p.name() == name.trim())?;
    Some((point, n))
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty())?;
            match parse(&spec) {
                Some((point, n)) => {
                    tracing::warn!(point = point.name(), hit = n, "fail point armed: this process will abort there");
                    Some(Armed {
                        point,
                        left: AtomicU64::new(n),
                    })
                }
                None => {
                    let names: Vec<&str> = FailPoint::ALL.iter().map(|p| p.name()).collect();
                    tracing::error!(value = %spec, expected = ?names, "{ENV} not understood (<point>[:<n>]): no fail point armed");
                    None
                }
            }
        })
        .as_ref()
}

/// Aborts the process if `point` is armed and this is its n-th hit.
pub fn hit(point: FailPoint) {
    let Some(armed) = armed() else { return };
    if armed.point == point && armed.left.fetch_sub(1, Ordering::SeqCst) == 1 {
        tracing::error!(point = point.name(), "fail point reached: aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_a_point_and_an_optional_hit_count() {
        assert_eq!(parse("after-driver"), Some((FailPoint::AfterDriver, 1)));
        assert_eq!(parse("before-status:7"), Some((FailPoint::BeforeStatus, 7)));
        assert_eq!(parse("after-configmap:0"), None);
        assert_eq!(parse("after-everything"), None);
        for p in FailPoint::ALL {
            assert_eq!(parse(p.name()), Some((p, 1)));
        }
    }

    #[test]
    fn unarmed_points_do_nothing() {
        // The test process has no SPARK_WEBHOOK_FAIL_POINT: every point passes.
        for p in FailPoint::ALL {
            hit(p);
        }
    }
}
