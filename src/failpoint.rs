//! Crash points for the fault tests: `SPARK_WEBHOOK_FAIL_POINT=<point>[:<n>]` makes the process
//! abort (no unwinding, no cleanup: as abrupt as SIGKILL) the n-th time (default: the first) any
//! reconcile reaches `<point>`.
//!
//! Only in a build with the cargo feature `failpoints` (the test suite's: `tests/run.sh`); a
//! default (release) build has no fail points at all: [`hit`] is an empty function, and the
//! variable is never read. With the feature, an unarmed [`hit`] is one load of a `OnceLock`.
//!
//! The submission points sit between the writes of one submission, where a crash leaves the
//! most awkward state for the next incarnation to adopt (kubeflow #2788).

#[cfg(feature = "failpoints")]
use std::sync::OnceLock;
#[cfg(feature = "failpoints")]
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a point.
pub const ENV: &str = "SPARK_WEBHOOK_FAIL_POINT";

/// Where a submission can be cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailPoint {
    /// The driver pod was created; its Service and ConfigMap were not.
    AfterDriver,
    /// The driver pod and Service exist; the ConfigMap does not (the UI objects, created
    /// alongside, may).
    AfterService,
    /// The driver pod, Service and ConfigMap exist (the UI objects may not yet); the status
    /// does not say SUBMITTED yet.
    AfterConfigMap,
    /// The status saying SUBMITTED is about to be written.
    BeforeStatus,
    /// A reconcile starts: panics (not aborts), taking its namespace's controller down.
    ControllerPanic,
    /// A ScheduledSparkApplication's run was created; the schedule's status does not say so.
    ScheduledRunCreated,
}

impl FailPoint {
    /// The points of a submission, each aborting the process.
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
            FailPoint::ControllerPanic => "controller-panic",
            FailPoint::ScheduledRunCreated => "scheduled-run-created",
        }
    }

    /// Every point, by name.
    #[cfg(feature = "failpoints")]
    const EVERY: [FailPoint; 6] = [
        FailPoint::AfterDriver,
        FailPoint::AfterService,
        FailPoint::AfterConfigMap,
        FailPoint::BeforeStatus,
        FailPoint::ControllerPanic,
        FailPoint::ScheduledRunCreated,
    ];
}

#[cfg(feature = "failpoints")]
struct Armed {
    point: FailPoint,
    /// Hits left before the abort.
    left: AtomicU64,
}

/// Parses `<point>[:<n>]` (n >= 1).
#[cfg(feature = "failpoints")]
fn parse(spec: &str) -> Option<(FailPoint, u64)> {
    let (name, n) = match spec.split_once(':') {
        Some((name, n)) => (name, n.trim().parse().ok().filter(|n| *n >= 1)?),
        None => (spec, 1),
    };
    let point = FailPoint::EVERY
        .into_iter()
        .find(|p| p.name() == name.trim())?;
    Some((point, n))
}

#[cfg(feature = "failpoints")]
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
                    let names: Vec<&str> = FailPoint::EVERY.iter().map(|p| p.name()).collect();
                    tracing::error!(value = %spec, expected = ?names, "{ENV} not understood (<point>[:<n>]): no fail point armed");
                    None
                }
            }
        })
        .as_ref()
}

/// Aborts the process (panics, at [`FailPoint::ControllerPanic`]) if `point` is armed and this
/// is its n-th hit.
#[cfg(feature = "failpoints")]
pub fn hit(point: FailPoint) {
    let Some(armed) = armed() else { return };
    if armed.point != point {
        return;
    }
    // Counts down to 0 and stays there: only the n-th hit fires.
    let before = armed
        .left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if before != Ok(1) {
        return;
    }
    if point == FailPoint::ControllerPanic {
        panic!("fail point {} reached", point.name());
    }
    tracing::error!(point = point.name(), "fail point reached: aborting");
    std::process::abort();
}

/// Without the `failpoints` feature: nothing, whatever the environment says.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_point: FailPoint) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "failpoints")]
    #[test]
    fn specs_name_a_point_and_an_optional_hit_count() {
        assert_eq!(parse("after-driver"), Some((FailPoint::AfterDriver, 1)));
        assert_eq!(parse("before-status:7"), Some((FailPoint::BeforeStatus, 7)));
        assert_eq!(parse("after-configmap:0"), None);
        assert_eq!(parse("after-everything"), None);
        for p in FailPoint::EVERY {
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

    /// Run only by [`the_variable_aborts_only_a_build_with_the_failpoints_feature`], in a child
    /// process with the variable set.
    #[test]
    #[ignore = "run as a child process with SPARK_WEBHOOK_FAIL_POINT set"]
    fn child_reaches_every_point() {
        for p in FailPoint::ALL {
            hit(p);
        }
        println!("every point passed");
    }

    /// The build check: `make test` runs this test twice, with the feature (the suite) and
    /// without (`tests/run.sh`'s default-build step), so a default build that could still be
    /// made to abort by the variable fails the suite.
    #[test]
    fn the_variable_aborts_only_a_build_with_the_failpoints_feature() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "failpoint::tests::child_reaches_every_point",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, "after-driver")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if cfg!(feature = "failpoints") {
            use std::os::unix::process::ExitStatusExt as _;
            assert_eq!(out.status.signal(), Some(6), "not aborted: {out:?}");
            assert!(!stdout.contains("every point passed"), "{stdout}");
        } else {
            assert!(out.status.success(), "{out:?}");
            assert!(stdout.contains("every point passed"), "{stdout}");
            assert!(stdout.contains("1 passed"), "{stdout}");
        }
    }
}
