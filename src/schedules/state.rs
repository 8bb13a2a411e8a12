//! The pure decision of one ScheduledSparkApplication reconcile: given the schedule, its runs and
//! the time, which run to start (at most one), which runs to delete, the status to write, the
//! Events to tell and when to look again. No I/O.
//!
//! Exactly one run per slot: a run is named from its slot's time ([`run_name`]), so whoever
//! decides a slot (after a crash, a restart, a leader failover) decides the same name, and the
//! apiserver refuses a second object of that name. A run of the due slot already among the runs
//! means it was started (by us before a crash, or by the previous leader): it is recorded, not
//! started again.
//!
//! Missed slots (the operator was down, or the schedule suspended): one catch-up run, for the
//! latest missed slot, never one per missed slot. kubeflow does the same in effect (it starts one
//! run at the time it notices, then waits for the next slot), but names that run from the clock.
//!
//! Differences from kubeflow's controller, on purpose: an unset concurrencyPolicy is Allow
//! (kubeflow then never starts a second run); Replace and Forbid look at every unfinished run,
//! not only the newest; a skipped slot advances `nextRun` (kubeflow leaves it in the past); the
//! history is kept at every reconcile (a run finishing triggers one), not only when a run starts;
//! a schedule fixed after FailedValidation is scheduled again (kubeflow stays failed).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{
    ConcurrencyPolicy, DEFAULT_RUN_HISTORY_LIMIT, ScheduleState, ScheduledSparkApplication,
    ScheduledSparkApplicationStatus,
};
use crate::cron::Schedule;

/// How a run stands, for the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Not COMPLETED or FAILED yet.
    Active,
    Completed,
    Failed,
}

/// One run of the schedule (a SparkApplication with its label), as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunView {
    pub name: String,
    pub created: Timestamp,
    pub state: RunState,
    /// Being deleted: counts neither as active nor in the history.
    pub deleting: bool,
}

/// What was observed besides the schedule itself.
pub struct Observed<'a> {
    pub now: Timestamp,
    pub runs: &'a [RunView],
}

/// What happened to a due slot, for Events and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotOutcome {
    /// A run was started.
    Started,
    /// Forbid: a run was still active, the slot was skipped.
    Skipped,
    /// Replace: the active runs were deleted and a run was started.
    Replaced,
}

impl SlotOutcome {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Started => "ScheduledRunStarted",
            Self::Skipped => "ScheduledRunSkipped",
            Self::Replaced => "ScheduledRunReplaced",
        }
    }
}

/// The run to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRun {
    pub name: String,
    pub slot: Timestamp,
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub status: ScheduledSparkApplicationStatus,
    /// Active runs to delete before `create` (Replace).
    pub replace: Vec<String>,
    /// The run of the due slot.
    pub create: Option<NewRun>,
    /// Finished runs beyond the history limits, deleted after the status is written.
    pub prune: Vec<String>,
    /// What was done with a due slot, and the Event's message.
    pub outcome: Option<(SlotOutcome, String)>,
    /// When to look again (the next slot), if ever: a time, not a delay, so the time the
    /// reconcile's own API calls take is not added to the wait for the next slot.
    pub wake_at: Option<Timestamp>,
}

/// The run of `slot`: `<schedule>-<slot in Unix seconds>` (kubeflow's name form with its
/// `seconds` timestamp precision, but from the slot, not the clock).
pub fn run_name(schedule: &str, slot: Timestamp) -> String {
    format!("{schedule}-{}", slot.as_second())
}

/// The parsed schedule of `s` (`@every` counts from its creation).
pub fn schedule_of(s: &ScheduledSparkApplication) -> Result<Schedule, crate::cron::ScheduleError> {
    let anchor = s
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    Schedule::parse(&s.spec.schedule, s.spec.time_zone.as_deref(), anchor)
}

pub fn decide(s: &ScheduledSparkApplication, observed: &Observed) -> Decision {
    let now = observed.now;
    let mut d = Decision {
        status: s.status.clone().unwrap_or_default(),
        ..Decision::default()
    };
    let schedule = match schedule_of(s) {
        Ok(schedule) => schedule,
        Err(e) => {
            d.status.schedule_state = ScheduleState::FailedValidation;
            d.status.reason = e.to_string();
            return d;
        }
    };
    keep_history(s, observed.runs, &mut d);
    if s.spec.is_suspended() {
        return d;
    }
    let name = s.metadata.name.as_deref().unwrap_or_default();
    let Some(upcoming) = schedule.next_after(now) else {
        d.status.schedule_state = ScheduleState::FailedValidation;
        d.status.reason = "the schedule has no further slots".into();
        d.status.next_run = None;
        return d;
    };
    d.status.schedule_state = ScheduleState::Scheduled;
    d.status.reason.clear();
    // A nextRun that is not a slot of the schedule (it changed) or lies beyond the next slot
    // (the schedule became more frequent) is recomputed, without a catch-up run.
    let next = d
        .status
        .next_run
        .as_ref()
        .map(|t| t.0)
        .filter(|t| schedule.is_slot(*t) && *t <= upcoming);
    let Some(next) = next.filter(|t| *t <= now) else {
        let next = next.unwrap_or(upcoming);
        d.status.next_run = Some(Time(next));
        d.wake_at = Some(next);
        return d;
    };
    // Due: the latest slot not after now (the catch-up run when several were missed).
    let slot = schedule.latest_at_or_before(now).unwrap_or(next).max(next);
    let run = run_name(name, slot);
    d.status.next_run = Some(Time(upcoming));
    d.wake_at = Some(upcoming);
    if let Some(existing) = observed.runs.iter().find(|r| r.name == run) {
        // Started already (we crashed before recording it, or another leader did).
        d.status.last_run_name = run;
        d.status.last_run = Some(Time(existing.created));
        return d;
    }
    let active: Vec<&RunView> = observed
        .runs
        .iter()
        .filter(|r| r.state == RunState::Active && !r.deleting)
        .collect();
    let names = || {
        active
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let at = slot.strftime("%Y-%m-%dT%H:%M:%SZ");
    let caught_up = if slot > next {
        format!(
            " (catching up: the slots from {} were missed)",
            next.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    } else {
        String::new()
    };
    let outcome = match (s.spec.policy(), active.is_empty()) {
        (ConcurrencyPolicy::Forbid, false) => {
            d.outcome = Some((
                SlotOutcome::Skipped,
                format!(
                    "run of {at} skipped: {} still running (concurrencyPolicy Forbid)",
                    names()
                ),
            ));
            return d;
        }
        (ConcurrencyPolicy::Replace, false) => {
            d.replace = active.iter().map(|r| r.name.clone()).collect();
            (
                SlotOutcome::Replaced,
                format!("started {run} for {at}{caught_up}, replacing {}", names()),
            )
        }
        _ => (
            SlotOutcome::Started,
            format!("started {run} for {at}{caught_up}"),
        ),
    };
    d.outcome = Some(outcome);
    d.status.last_run = Some(Time(now));
    d.status.last_run_name = run.clone();
    d.create = Some(NewRun { name: run, slot });
    d
}

/// Past runs: the newest completed and failed ones within their limits are named in the status,
/// older ones are to be deleted.
fn keep_history(s: &ScheduledSparkApplication, runs: &[RunView], d: &mut Decision) {
    let mut finished: Vec<&RunView> = runs.iter().filter(|r| !r.deleting).collect();
    // Newest first; the name (its slot) orders runs created within one second.
    finished.sort_by(|a, b| (b.created, &b.name).cmp(&(a.created, &a.name)));
    for (state, limit, names) in [
        (
            RunState::Completed,
            s.spec.successful_run_history_limit,
            &mut d.status.past_successful_run_names,
        ),
        (
            RunState::Failed,
            s.spec.failed_run_history_limit,
            &mut d.status.past_failed_run_names,
        ),
    ] {
        let limit = usize::try_from(limit.unwrap_or(DEFAULT_RUN_HISTORY_LIMIT)).unwrap_or(0);
        let of_state = finished.iter().filter(|r| r.state == state);
        *names = of_state
            .clone()
            .take(limit)
            .map(|r| r.name.clone())
            .collect();
        d.prune.extend(of_state.skip(limit).map(|r| r.name.clone()));
    }
}

/// The wait from `now` until `then` (zero if past).
pub fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ScheduledSparkApplicationSpec;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// `@every 10s` created at 00:00:00: slots at :10, :20, ...
    fn every10(policy: ConcurrencyPolicy) -> ScheduledSparkApplication {
        let mut s = ScheduledSparkApplication::new(
            "nightly",
            ScheduledSparkApplicationSpec {
                schedule: "@every 10s".into(),
                concurrency_policy: Some(policy),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("jobs".into());
        s.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:00:00Z")));
        s
    }

    fn with_next(mut s: ScheduledSparkApplication, next: &str) -> ScheduledSparkApplication {
        s.status = Some(ScheduledSparkApplicationStatus {
            next_run: Some(Time(ts(next))),
            schedule_state: ScheduleState::Scheduled,
            ..Default::default()
        });
        s
    }

    fn run(name: &str, created: &str, state: RunState) -> RunView {
        RunView {
            name: name.into(),
            created: ts(created),
            state,
            deleting: false,
        }
    }

    fn at(s: &ScheduledSparkApplication, now: &str, runs: &[RunView]) -> Decision {
        decide(s, &Observed { now: ts(now), runs })
    }

    #[test]
    fn a_new_schedule_is_scheduled_for_its_first_slot_without_a_run() {
        let d = at(
            &every10(ConcurrencyPolicy::Allow),
            "2026-01-01T00:00:01Z",
            &[],
        );
        assert_eq!(d.status.schedule_state, ScheduleState::Scheduled);
        assert_eq!(d.status.next_run, Some(Time(ts("2026-01-01T00:00:10Z"))));
        assert_eq!(d.create, None);
        assert_eq!(d.wake_at, Some(ts("2026-01-01T00:00:10Z")));
        assert_eq!(
            until(ts("2026-01-01T00:00:01Z"), d.wake_at.unwrap()),
            Duration::from_secs(9)
        );
    }

    #[test]
    fn a_due_slot_starts_one_run_named_from_the_slot() {
        let s = with_next(every10(ConcurrencyPolicy::Allow), "2026-01-01T00:00:10Z");
        let d = at(&s, "2026-01-01T00:00:10.3Z", &[]);
        let slot = ts("2026-01-01T00:00:10Z");
        let name = format!("nightly-{}", slot.as_second());
        assert_eq!(
            d.create,
            Some(NewRun {
                name: name.clone(),
                slot
            })
        );
        assert_eq!(d.status.last_run_name, name);
        assert_eq!(d.status.last_run, Some(Time(ts("2026-01-01T00:00:10.3Z"))));
        assert_eq!(d.status.next_run, Some(Time(ts("2026-01-01T00:00:20Z"))));
        assert_eq!(d.outcome.map(|o| o.0), Some(SlotOutcome::Started));
        // Allow: an active run does not hold the next one back.
        let active = [run(
            "nightly-1767225600",
            "2026-01-01T00:00:00Z",
            RunState::Active,
        )];
        let d = at(&s, "2026-01-01T00:00:10.3Z", &active);
        assert!(d.create.is_some());
    }

    #[test]
    fn the_run_of_a_slot_is_never_started_twice() {
        // The run exists, the status was not written (a crash, or another leader's run).
        let s = with_next(every10(ConcurrencyPolicy::Allow), "2026-01-01T00:00:10Z");
        let name = run_name("nightly", ts("2026-01-01T00:00:10Z"));
        let runs = [run(&name, "2026-01-01T00:00:10Z", RunState::Completed)];
        let d = at(&s, "2026-01-01T00:00:15Z", &runs);
        assert_eq!(d.create, None);
        assert_eq!(d.outcome, None);
        assert_eq!(d.status.last_run_name, name);
        assert_eq!(d.status.next_run, Some(Time(ts("2026-01-01T00:00:20Z"))));
        // Even with a history limit of 0 the newest run is not pruned and started again in one
        // decision: it is pruned, the status moves past its slot.
        let mut s0 = s.clone();
        s0.spec.successful_run_history_limit = Some(0);
        let d = at(&s0, "2026-01-01T00:00:15Z", &runs);
        assert_eq!(d.create, None);
        assert_eq!(d.prune, vec![name]);
    }

    #[test]
    fn after_downtime_one_catch_up_run_for_the_latest_missed_slot() {
        let s = with_next(every10(ConcurrencyPolicy::Allow), "2026-01-01T00:00:10Z");
        // Down from :05 to :47: slots :10, :20, :30, :40 were missed.
        let d = at(&s, "2026-01-01T00:00:47Z", &[]);
        let slot = ts("2026-01-01T00:00:40Z");
        assert_eq!(d.create.as_ref().map(|r| r.slot), Some(slot));
        assert!(d.outcome.unwrap().1.contains("catching up"));
        assert_eq!(d.status.next_run, Some(Time(ts("2026-01-01T00:00:50Z"))));
        // Recorded, the next reconcile starts nothing more before :50.
        let mut again = s.clone();
        again.status = Some(d.status.clone());
        let runs = [run(
            &run_name("nightly", slot),
            "2026-01-01T00:00:47Z",
            RunState::Active,
        )];
        let d = at(&again, "2026-01-01T00:00:48Z", &runs);
        assert_eq!(d.create, None);
        assert_eq!(d.wake_at, Some(ts("2026-01-01T00:00:50Z")));
    }

    #[test]
    fn forbid_skips_while_a_run_is_active_and_replace_replaces_it() {
        let active = [
            run(
                "nightly-1767225610",
                "2026-01-01T00:00:10Z",
                RunState::Active,
            ),
            run("nightly-old", "2026-01-01T00:00:00Z", RunState::Completed),
        ];
        let s = with_next(every10(ConcurrencyPolicy::Forbid), "2026-01-01T00:00:20Z");
        let d = at(&s, "2026-01-01T00:00:20Z", &active);
        assert_eq!(d.create, None);
        let (outcome, message) = d.outcome.unwrap();
        assert_eq!(outcome, SlotOutcome::Skipped);
        assert!(
            message.contains("nightly-1767225610 still running"),
            "{message}"
        );
        assert_eq!(d.status.next_run, Some(Time(ts("2026-01-01T00:00:30Z"))));
        // Once it finished, Forbid runs again.
        let done = [run(
            "nightly-1767225610",
            "2026-01-01T00:00:10Z",
            RunState::Failed,
        )];
        assert!(at(&s, "2026-01-01T00:00:20Z", &done).create.is_some());

        let s = with_next(every10(ConcurrencyPolicy::Replace), "2026-01-01T00:00:20Z");
        let d = at(&s, "2026-01-01T00:00:20Z", &active);
        assert_eq!(d.replace, vec!["nightly-1767225610".to_string()]);
        assert!(d.create.is_some());
        assert_eq!(d.outcome.unwrap().0, SlotOutcome::Replaced);
    }

    #[test]
    fn history_keeps_the_newest_within_the_limits() {
        let mut s = with_next(every10(ConcurrencyPolicy::Allow), "2026-01-01T00:01:00Z");
        s.spec.successful_run_history_limit = Some(2);
        let runs = [
            run("a", "2026-01-01T00:00:10Z", RunState::Completed),
            run("b", "2026-01-01T00:00:20Z", RunState::Completed),
            run("c", "2026-01-01T00:00:30Z", RunState::Completed),
            run("f1", "2026-01-01T00:00:15Z", RunState::Failed),
            run("f2", "2026-01-01T00:00:25Z", RunState::Failed),
            run("x", "2026-01-01T00:00:40Z", RunState::Active),
            RunView {
                deleting: true,
                ..run("gone", "2026-01-01T00:00:45Z", RunState::Completed)
            },
        ];
        let d = at(&s, "2026-01-01T00:00:50Z", &runs);
        assert_eq!(d.status.past_successful_run_names, ["c", "b"]);
        assert_eq!(d.status.past_failed_run_names, ["f2"]);
        assert_eq!(d.prune, ["a", "f1"]);
    }

    #[test]
    fn suspended_starts_nothing_and_keeps_history() {
        let mut s = with_next(every10(ConcurrencyPolicy::Allow), "2026-01-01T00:00:10Z");
        s.spec.suspend = Some(true);
        let runs = [
            run("a", "2026-01-01T00:00:10Z", RunState::Completed),
            run("b", "2026-01-01T00:00:20Z", RunState::Completed),
        ];
        let d = at(&s, "2026-01-01T00:01:00Z", &runs);
        assert_eq!(d.create, None);
        assert_eq!(d.wake_at, None);
        assert_eq!(d.prune, ["a"]);
        // Resumed: one catch-up run, not one per suspended slot.
        s.spec.suspend = Some(false);
        let d = at(&s, "2026-01-01T00:01:00Z", &runs);
        assert_eq!(d.create.map(|r| r.slot), Some(ts("2026-01-01T00:01:00Z")));
    }

    #[test]
    fn a_changed_schedule_moves_next_run_without_a_run() {
        // nextRun from an old schedule ("@every 10s"), now hourly: not a slot, recomputed.
        let mut s = with_next(every10(ConcurrencyPolicy::Allow), "2026-01-01T00:00:10Z");
        s.spec.schedule = "@hourly".into();
        let d = at(&s, "2026-01-01T00:00:30Z", &[]);
        assert_eq!(d.create, None);
        assert_eq!(d.status.next_run, Some(Time(ts("2026-01-01T01:00:00Z"))));
    }

    #[test]
    fn a_bad_schedule_fails_validation_with_the_reason_and_recovers_when_fixed() {
        let mut s = every10(ConcurrencyPolicy::Allow);
        s.spec.time_zone = Some("Nowhere/Land".into());
        let d = at(&s, "2026-01-01T00:00:01Z", &[]);
        assert_eq!(d.status.schedule_state, ScheduleState::FailedValidation);
        assert!(
            d.status
                .reason
                .starts_with("spec.timeZone: unknown time zone")
        );
        assert_eq!(d.wake_at, None);
        s.status = Some(d.status);
        s.spec.time_zone = None;
        let d = at(&s, "2026-01-01T00:00:01Z", &[]);
        assert_eq!(d.status.schedule_state, ScheduleState::Scheduled);
        assert_eq!(d.status.reason, "");
    }
}
