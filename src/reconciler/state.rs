//! The SparkApplication state machine, as a pure function: from the app, its pods and the time
//! to the new status, the actions to take and the Events to publish. No I/O here, so every
//! transition is unit-tested without a cluster; `reconciler::controller` carries it out.
//!
//! States and transitions follow kubeflow's v1beta2 operator:
//!
//! ```text
//! "" ──submit──▶ SUBMITTED ──driver running──▶ RUNNING ──driver succeeded──▶ SUCCEEDING ──▶ COMPLETED
//!  │                 │                          │                            (Always: PENDING_RERUN)
//!  │                 └──────────driver failed / gone / start timeout──▶ FAILING ──▶ FAILED
//!  └─submit failed─▶ SUBMISSION_FAILED ──retry due──▶ (submit again)   (retry due: PENDING_RERUN)
//! any active state ──spec changed──▶ INVALIDATING ──▶ PENDING_RERUN ──old driver gone──▶ submit
//!
//! any state but COMPLETED, FAILED, SUSPENDED ──spec.suspend=true──▶ SUSPENDING
//! SUSPENDING ──attempt's pods gone──▶ SUSPENDED ──spec.suspend=false──▶ RESUMING ──▶ submit
//! ```
//!
//! Suspension is kubeflow v2.5's (and what Kueue's SparkApplication integration drives): in
//! SUSPENDING the attempt's driver, executors, Services and ConfigMaps are deleted (everything
//! labelled with its submission id); the app stays SUSPENDING until its pods are gone, so
//! SUSPENDED means nothing of it runs. Nothing is submitted while `spec.suspend` is true, a new
//! app included (NEW goes to SUSPENDING, then SUSPENDED at once, without an attempt). Resuming is
//! a fresh attempt with the spec as it is then; the attempt counts carry on, as in kubeflow, so
//! the new attempt has new names and a new submission id, and retries already spent stay spent.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::cache::pod::{SparkPod, Terminated};
use crate::crd::{
    ApplicationState, ApplicationStateType as S, DriverInfo, ExecutorState, RestartPolicyType,
    SparkApplication, SparkApplicationStatus,
};
use crate::labels::{EXECUTOR_ID_LABEL, SPEC_HASH_ANNOTATION, SUBMISSION_ID_LABEL};

/// Operator settings the state machine depends on.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a SUBMITTED app may lack its driver pod (cache lag) before the attempt fails.
    pub driver_creation_grace: Duration,
    /// A driver still Pending this long after submission fails the attempt (None: wait forever).
    pub driver_start_timeout: Option<Duration>,
    /// At most this many executors are tracked in `status.executorState`.
    pub max_tracked_executors: usize,
    /// How often drivers of deleted SparkApplications are looked for and deleted.
    pub orphan_sweep_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            driver_creation_grace: Duration::from_secs(10),
            driver_start_timeout: Some(Duration::from_secs(15 * 60)),
            max_tracked_executors: 1000,
            orphan_sweep_interval: Duration::from_secs(30),
        }
    }
}

/// What the controller observed for one app.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub now: Timestamp,
    /// The driver pod named in `status.driverInfo.podName`, if it exists.
    pub driver: Option<&'a SparkPod>,
    /// The app's executor pods.
    pub executors: Vec<&'a SparkPod>,
    /// Hash of the app's current spec ([`crate::reconciler::spec_hash`]).
    pub spec_hash: &'a str,
}

/// Something the controller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the objects of submission attempt `attempt` (1-based), then call [`submitted`].
    Submit { attempt: u32 },
    /// Delete the driver pod of the current attempt (its Service, ConfigMap and executors go
    /// with it).
    DeleteDriver { pod_name: String },
    /// Delete what attempt `submission_id` left (its driver `pod_name`, if named, and
    /// everything labelled with the id), whether or not the driver still exists.
    DeleteAttempt {
        pod_name: String,
        submission_id: String,
    },
    /// Delete the SparkApplication: its time to live has passed.
    DeleteApp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// A Kubernetes Event to publish on the app (reasons as kubeflow names them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: SparkApplicationStatus,
    pub actions: Vec<Action>,
    pub events: Vec<Note>,
    pub requeue_after: Option<Duration>,
}

/// What a successful submission created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmittedInfo {
    pub submission_id: String,
    pub driver_pod_name: String,
    pub app_id: String,
    pub ui_service_name: String,
    pub ui_port: i32,
    /// `ClusterIP:port` of the UI Service.
    pub ui_address: String,
    pub ui_ingress_name: String,
    pub ui_ingress_address: String,
}

struct Ctx<'a> {
    app: &'a SparkApplication,
    name: String,
    status: SparkApplicationStatus,
    actions: Vec<Action>,
    events: Vec<Note>,
    requeue: Option<Duration>,
}

impl Ctx<'_> {
    fn note(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.events.push(Note {
            type_,
            reason,
            message,
        });
    }
    fn set_state(&mut self, state: S, error: impl Into<String>) {
        self.status.application_state = ApplicationState {
            state,
            error_message: error.into(),
        };
    }
    fn requeue(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }
    fn finish(self) -> Decision {
        Decision {
            status: self.status,
            actions: self.actions,
            events: self.events,
            requeue_after: self.requeue,
        }
    }
}

/// Decides the next step for `app`.
pub fn decide(app: &SparkApplication, obs: &Observed, settings: &Settings) -> Decision {
    let status = app.status.clone().unwrap_or_default();
    let mut cx = Ctx {
        app,
        name: app.metadata.name.clone().unwrap_or_default(),
        status,
        actions: Vec::new(),
        events: Vec::new(),
        requeue: None,
    };
    let state = cx.status.application_state.state;

    // Suspension comes first: nothing is submitted, resubmitted or retried while it is asked for.
    if app.spec.suspend == Some(true)
        && !matches!(
            state,
            S::Completed | S::Failed | S::Suspended | S::Suspending
        )
    {
        cx.set_state(S::Suspending, "");
        cx.note(
            EventType::Normal,
            "SparkApplicationSuspending",
            format!("SparkApplication {} is suspending", cx.name),
        );
        suspend(&mut cx, obs);
        return cx.finish();
    }

    // A spec change under a live attempt: tear down and start over (kubeflow's INVALIDATING).
    if is_active(state) && state != S::Invalidating && spec_changed(obs) {
        cx.set_state(S::Invalidating, "");
        cx.note(
            EventType::Normal,
            "SparkApplicationSpecUpdated",
            format!("SparkApplication {} spec changed: resubmitting", cx.name),
        );
        return cx.finish();
    }

    match state {
        S::New => cx.actions.push(Action::Submit {
            attempt: next_attempt(&cx.status),
        }),
        S::Submitted | S::Running | S::Unknown => track_driver(&mut cx, obs, settings),
        S::Succeeding => {
            if restart_type(app) == RestartPolicyType::Always {
                rerun(&mut cx, obs);
            } else {
                cx.set_state(S::Completed, "");
                cx.note(
                    EventType::Normal,
                    "SparkApplicationCompleted",
                    format!("SparkApplication {} completed", cx.name),
                );
                expire_later(&mut cx, obs);
            }
        }
        S::Failing => match retry_due_in(app, &cx.status, obs.now) {
            None => {
                let msg = cx.status.application_state.error_message.clone();
                cx.set_state(S::Failed, msg.clone());
                cx.note(
                    EventType::Warning,
                    "SparkApplicationFailed",
                    format!("SparkApplication {} failed: {msg}", cx.name),
                );
                expire_later(&mut cx, obs);
            }
            Some(wait) if !wait.is_zero() => cx.requeue(wait),
            Some(_) => rerun(&mut cx, obs),
        },
        S::SubmissionFailed => match retry_due_in(app, &cx.status, obs.now) {
            None => {
                let msg = cx.status.application_state.error_message.clone();
                cx.set_state(S::Failed, msg.clone());
                cx.status.termination_time = Some(Time(obs.now));
                cx.note(
                    EventType::Warning,
                    "SparkApplicationFailed",
                    format!("SparkApplication {} failed: {msg}", cx.name),
                );
                expire_later(&mut cx, obs);
            }
            Some(wait) if !wait.is_zero() => cx.requeue(wait),
            Some(_) => cx.actions.push(Action::Submit {
                attempt: next_attempt(&cx.status),
            }),
        },
        S::Invalidating => {
            if let Some(driver) = obs.driver {
                cx.actions.push(Action::DeleteDriver {
                    pod_name: pod_name(driver),
                });
            }
            reset_for_rerun(&mut cx.status, true);
            cx.set_state(S::PendingRerun, "");
            cx.note(
                EventType::Normal,
                "SparkApplicationPendingRerun",
                format!("SparkApplication {} is pending rerun", cx.name),
            );
        }
        S::PendingRerun => match obs.driver {
            // The previous attempt's driver is still terminating: wait for it.
            Some(driver) => {
                cx.actions.push(Action::DeleteDriver {
                    pod_name: pod_name(driver),
                });
                cx.requeue(Duration::from_secs(1));
            }
            None => cx.actions.push(Action::Submit {
                attempt: next_attempt(&cx.status),
            }),
        },
        S::Completed | S::Failed => {
            track_executors(&mut cx, obs, settings);
            expire_later(&mut cx, obs);
        }
        S::Suspending => suspend(&mut cx, obs),
        S::Suspended => {
            if app.spec.suspend != Some(true) {
                cx.set_state(S::Resuming, "");
                cx.note(
                    EventType::Normal,
                    "SparkApplicationResuming",
                    format!("SparkApplication {} is resuming", cx.name),
                );
                cx.requeue(Duration::ZERO);
            }
        }
        S::Resuming => cx.actions.push(Action::Submit {
            attempt: next_attempt(&cx.status),
        }),
    }
    cx.finish()
}

/// The status after an [`Action::Submit`] of `attempt` succeeded or failed.
pub fn submitted(
    app: &SparkApplication,
    attempt: u32,
    outcome: Result<SubmittedInfo, String>,
    now: Timestamp,
) -> Decision {
    let name = app.metadata.name.clone().unwrap_or_default();
    let mut status = app.status.clone().unwrap_or_default();
    status.submission_attempts = i32::try_from(attempt).unwrap_or(i32::MAX);
    status.last_submission_attempt_time = Some(Time(now));
    let mut events = Vec::new();
    match outcome {
        Ok(info) => {
            status.submission_id = info.submission_id;
            status.spark_application_id = info.app_id;
            status.driver_info = DriverInfo {
                pod_name: info.driver_pod_name,
                web_ui_service_name: info.ui_service_name,
                web_ui_port: info.ui_port,
                web_ui_address: info.ui_address,
                web_ui_ingress_name: info.ui_ingress_name,
                web_ui_ingress_address: info.ui_ingress_address,
            };
            status.execution_attempts = status.execution_attempts.saturating_add(1);
            status.termination_time = None;
            status.executor_state.clear();
            status.application_state = ApplicationState {
                state: S::Submitted,
                error_message: String::new(),
            };
            events.push(Note {
                type_: EventType::Normal,
                reason: "SparkApplicationSubmitted",
                message: format!("SparkApplication {name} was submitted successfully"),
            });
        }
        Err(error) => {
            status.application_state = ApplicationState {
                state: S::SubmissionFailed,
                error_message: error.clone(),
            };
            events.push(Note {
                type_: EventType::Warning,
                reason: "SparkApplicationSubmissionFailed",
                message: format!("failed to submit SparkApplication {name}: {error}"),
            });
        }
    }
    let requeue_after =
        (status.application_state.state == S::SubmissionFailed).then_some(Duration::ZERO);
    Decision {
        status,
        actions: Vec::new(),
        events,
        requeue_after,
    }
}

/// Prefix of the status message of a submission waiting for an admission webhook.
pub const ADMISSION_UNAVAILABLE: &str = "driver pod not created: an admission webhook could not be called; retrying, not counted against onSubmissionFailureRetries";

/// The status after an [`Action::Submit`] whose driver pod the apiserver refused because an
/// admission webhook could not be called (ours mid-rollout, say): not the app's fault, so no
/// attempt is used and the state stays as it was (the same attempt is submitted again, after a
/// backoff the caller chooses); the message says what happened. The Event is sent once per
/// new message, not on every retry.
pub fn admission_unavailable(app: &SparkApplication, error: &str) -> Decision {
    let name = app.metadata.name.clone().unwrap_or_default();
    let mut status = app.status.clone().unwrap_or_default();
    let message = format!("{ADMISSION_UNAVAILABLE}: {error}");
    let mut events = Vec::new();
    if status.application_state.error_message != message {
        events.push(Note {
            type_: EventType::Warning,
            reason: "SparkApplicationSubmissionRetrying",
            message: format!("SparkApplication {name}: {message}"),
        });
        status.application_state.error_message = message;
    }
    Decision {
        status,
        actions: Vec::new(),
        events,
        requeue_after: None,
    }
}

/// States in which a driver of the current attempt may exist.
fn is_active(state: S) -> bool {
    matches!(
        state,
        S::Submitted | S::Running | S::Unknown | S::Succeeding | S::Failing | S::Invalidating
    )
}

fn spec_changed(obs: &Observed) -> bool {
    obs.driver
        .and_then(|d| d.metadata.annotations.as_ref())
        .and_then(|a| a.get(SPEC_HASH_ANNOTATION))
        .is_some_and(|h| h != obs.spec_hash)
}

fn next_attempt(status: &SparkApplicationStatus) -> u32 {
    u32::try_from(status.submission_attempts)
        .unwrap_or(0)
        .saturating_add(1)
}

fn restart_type(app: &SparkApplication) -> RestartPolicyType {
    app.spec.restart_policy.effective_type()
}

fn pod_name(pod: &SparkPod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// None: no retry. Some(wait): retry after `wait` (zero: now). Kubeflow's rule: Always retries
/// forever; OnFailure while the attempts so far are within the configured retries; the wait is
/// interval × attempts since the last submission (linear backoff), the interval 5 s unless set
/// (kubeflow's default, [`crate::crd::defaults`]).
fn retry_due_in(
    app: &SparkApplication,
    status: &SparkApplicationStatus,
    now: Timestamp,
) -> Option<Duration> {
    let rp = &app.spec.restart_policy;
    let state = status.application_state.state;
    let (retries, interval, attempts) = match state {
        S::Failing => (
            rp.on_failure_retries,
            rp.effective_on_failure_retry_interval(),
            status.execution_attempts,
        ),
        S::SubmissionFailed => (
            rp.on_submission_failure_retries,
            rp.effective_on_submission_failure_retry_interval(),
            status.submission_attempts,
        ),
        _ => return None,
    };
    let allowed = match restart_type(app) {
        RestartPolicyType::Always => true,
        RestartPolicyType::OnFailure => retries.is_some_and(|r| attempts <= r),
        RestartPolicyType::Never => false,
    };
    if !allowed {
        return None;
    }
    let interval_secs = interval.unwrap_or(0).max(0);
    let backoff =
        SignedDuration::from_secs(interval_secs.saturating_mul(i64::from(attempts.max(1))));
    let since = status
        .last_submission_attempt_time
        .as_ref()
        .map_or(SignedDuration::MAX, |t| now.duration_since(t.0));
    let wait = backoff.checked_sub(since).unwrap_or(SignedDuration::ZERO);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// SUCCEEDING (Always) or FAILING (retry due): drop the attempt and go to PENDING_RERUN.
fn rerun(cx: &mut Ctx, obs: &Observed) {
    if let Some(driver) = obs.driver {
        cx.actions.push(Action::DeleteDriver {
            pod_name: pod_name(driver),
        });
    }
    reset_for_rerun(&mut cx.status, false);
    cx.set_state(S::PendingRerun, "");
    let name = cx.name.clone();
    cx.note(
        EventType::Normal,
        "SparkApplicationPendingRerun",
        format!("SparkApplication {name} is pending rerun"),
    );
}

/// SUSPENDING: delete the current attempt's objects (again, idempotently, each time: a Service
/// or ConfigMap left by a driver that was already gone goes too), and once its driver and
/// executors are gone, SUSPENDED, with the attempt's traces cleared from the status as kubeflow
/// clears them (the attempt counts and the submission id stay).
fn suspend(cx: &mut Ctx, obs: &Observed) {
    let pod_name = cx.status.driver_info.pod_name.clone();
    let submission_id = cx.status.submission_id.clone();
    if !pod_name.is_empty() || !submission_id.is_empty() {
        cx.actions.push(Action::DeleteAttempt {
            pod_name,
            submission_id: submission_id.clone(),
        });
    }
    let executors_left = obs.executors.iter().any(|p| {
        !submission_id.is_empty()
            && p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SUBMISSION_ID_LABEL))
                == Some(&submission_id)
    });
    if obs.driver.is_some() || executors_left {
        cx.requeue(Duration::from_secs(1));
        return;
    }
    cx.status.spark_application_id.clear();
    cx.status.driver_info = DriverInfo::default();
    cx.status.executor_state.clear();
    cx.set_state(S::Suspended, "");
    let name = cx.name.clone();
    cx.note(
        EventType::Normal,
        "SparkApplicationSuspended",
        format!("SparkApplication {name} is suspended"),
    );
}

/// What a new attempt must not inherit; an invalidated spec also restarts the counts.
fn reset_for_rerun(status: &mut SparkApplicationStatus, invalidated: bool) {
    status.spark_application_id.clear();
    status.termination_time = None;
    status.application_state.error_message.clear();
    // Keep the old pod name until the rerun submits, so PENDING_RERUN can wait for it to go.
    let old_driver = std::mem::take(&mut status.driver_info.pod_name);
    status.driver_info = DriverInfo {
        pod_name: old_driver,
        ..DriverInfo::default()
    };
    status.executor_state.clear();
    if invalidated {
        status.submission_attempts = 0;
        status.execution_attempts = 0;
        status.last_submission_attempt_time = None;
    }
}

/// SUBMITTED / RUNNING / UNKNOWN: follow the driver pod.
fn track_driver(cx: &mut Ctx, obs: &Observed, settings: &Settings) {
    let state = cx.status.application_state.state;
    let submitted_at = cx.status.last_submission_attempt_time.as_ref().map(|t| t.0);
    let age = submitted_at
        .map(|t| obs.now.duration_since(t))
        .unwrap_or(SignedDuration::MAX);
    let Some(driver) = obs.driver else {
        let grace =
            SignedDuration::try_from(settings.driver_creation_grace).unwrap_or(SignedDuration::MAX);
        if state == S::Submitted && age < grace {
            // Our own cache may not show the pod we just created yet.
            cx.requeue(Duration::try_from(grace - age).unwrap_or(Duration::from_secs(1)));
            return;
        }
        let pod = cx.status.driver_info.pod_name.clone();
        cx.set_state(S::Failing, "driver pod not found");
        cx.status.termination_time = Some(Time(obs.now));
        cx.note(
            EventType::Warning,
            "SparkDriverNotFound",
            format!("driver pod {pod} not found"),
        );
        cx.requeue(Duration::ZERO);
        return;
    };
    let container = spark_container_name(cx.app, driver);
    let (driver_state, failure) = driver_state(driver, &container);
    let mut new_state = match driver_state {
        DriverPhase::Pending => S::Submitted,
        DriverPhase::Running => S::Running,
        DriverPhase::Completed => S::Succeeding,
        DriverPhase::Failed => S::Failing,
        DriverPhase::Unknown => S::Unknown,
    };
    let mut error = failure.unwrap_or_default();
    if let (DriverPhase::Pending, Some(timeout)) = (driver_state, settings.driver_start_timeout) {
        let timeout_s = SignedDuration::try_from(timeout).unwrap_or(SignedDuration::MAX);
        if age >= timeout_s {
            new_state = S::Failing;
            error = format!(
                "driver pod {} still Pending after {}s (--driver-start-timeout)",
                pod_name(driver),
                timeout.as_secs()
            );
            cx.actions.push(Action::DeleteDriver {
                pod_name: pod_name(driver),
            });
        } else {
            cx.requeue(Duration::try_from(timeout_s - age).unwrap_or(Duration::from_secs(1)));
        }
    }
    if let Some(id) = driver
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::labels::SPARK_APP_SELECTOR_LABEL))
    {
        cx.status.spark_application_id = id.clone();
    }
    if matches!(new_state, S::Succeeding | S::Failing) && cx.status.termination_time.is_none() {
        cx.status.termination_time = Some(Time(obs.now));
    }
    if new_state != state {
        let (type_, reason) = match driver_state {
            DriverPhase::Pending => (EventType::Normal, "SparkDriverPending"),
            DriverPhase::Running => (EventType::Normal, "SparkDriverRunning"),
            DriverPhase::Completed => (EventType::Normal, "SparkDriverCompleted"),
            DriverPhase::Failed => (EventType::Warning, "SparkDriverFailed"),
            DriverPhase::Unknown => (EventType::Warning, "SparkDriverUnknown"),
        };
        let mut message = format!(
            "driver pod {} is {}",
            pod_name(driver),
            new_state_word(driver_state)
        );
        if !error.is_empty() {
            message = format!("{message}: {error}");
        }
        cx.note(type_, reason, message);
        cx.set_state(new_state, error);
    }
    track_executors(cx, obs, settings);
    if matches!(new_state, S::Succeeding | S::Failing) {
        cx.requeue(Duration::ZERO);
    }
}

fn new_state_word(p: DriverPhase) -> &'static str {
    match p {
        DriverPhase::Pending => "pending",
        DriverPhase::Running => "running",
        DriverPhase::Completed => "completed",
        DriverPhase::Failed => "failed",
        DriverPhase::Unknown => "in an unknown state",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DriverPhase {
    Pending,
    Running,
    Completed,
    Failed,
    Unknown,
}

/// Kubeflow's reading of a driver pod: the Spark container's exit code decides when it has
/// terminated, whatever the pod phase says (sidecars may keep a pod Running).
fn driver_state(pod: &SparkPod, container: &str) -> (DriverPhase, Option<String>) {
    let status = &pod.status;
    let terminated = status
        .container_statuses
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.state.terminated.as_ref());
    let failure = |t: Option<&Terminated>| {
        Some(match t {
            Some(t) => format!(
                "driver container failed with ExitCode: {}, Reason: {}",
                t.exit_code,
                t.reason.as_deref().unwrap_or("")
            ),
            None => status
                .message
                .clone()
                .or_else(|| status.reason.clone())
                .unwrap_or_else(|| "driver pod failed".into()),
        })
    };
    match status.phase.as_deref() {
        Some("Pending") | None => (DriverPhase::Pending, None),
        Some("Running") => match terminated {
            Some(t) if t.exit_code == 0 => (DriverPhase::Completed, None),
            Some(t) => (DriverPhase::Failed, failure(Some(t))),
            None => (DriverPhase::Running, None),
        },
        Some("Succeeded") => (DriverPhase::Completed, None),
        Some("Failed") => match terminated {
            Some(t) if t.exit_code == 0 => (DriverPhase::Completed, None),
            t => (DriverPhase::Failed, failure(t)),
        },
        Some(_) => (DriverPhase::Unknown, None),
    }
}

fn spark_container_name(app: &SparkApplication, pod: &SparkPod) -> String {
    let containers = &pod.spec.containers;
    let names = containers.iter().map(|c| c.name.as_str());
    crate::mutate::spark_container_position(names, app, crate::labels::SparkRole::Driver)
        .ok()
        .and_then(|i| containers.get(i))
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "spark-kubernetes-driver".into())
}

/// `status.executorState` from the executor pods, capped; executors that vanished keep a final
/// state like kubeflow records it.
fn track_executors(cx: &mut Ctx, obs: &Observed, settings: &Settings) {
    let mut seen: BTreeMap<String, ExecutorState> = BTreeMap::new();
    for pod in &obs.executors {
        let id: Option<usize> = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(EXECUTOR_ID_LABEL))
            .and_then(|v| v.parse().ok());
        if id.is_some_and(|id| id > settings.max_tracked_executors) {
            continue;
        }
        let state = match pod.status.phase.as_deref() {
            Some("Pending") | None => ExecutorState::Pending,
            Some("Running") => ExecutorState::Running,
            Some("Succeeded") => ExecutorState::Completed,
            Some("Failed") => ExecutorState::Failed,
            Some(_) => ExecutorState::Unknown,
        };
        seen.insert(pod_name(pod), state);
    }
    let app_state = cx.status.application_state.state;
    let driver_running = matches!(app_state, S::Running | S::Submitted);
    let mut notes = Vec::new();
    for (name, state) in &seen {
        if cx.status.executor_state.get(name) != Some(state) {
            let (type_, reason) = match state {
                ExecutorState::Pending => (EventType::Normal, "SparkExecutorPending"),
                ExecutorState::Running => (EventType::Normal, "SparkExecutorRunning"),
                ExecutorState::Completed => (EventType::Normal, "SparkExecutorCompleted"),
                ExecutorState::Failed => (EventType::Warning, "SparkExecutorFailed"),
                ExecutorState::Unknown => (EventType::Warning, "SparkExecutorUnknown"),
            };
            notes.push(Note {
                type_,
                reason,
                message: format!("executor pod {name} is {state}"),
            });
        }
    }
    for (name, old) in cx.status.executor_state.iter_mut() {
        if !seen.contains_key(name)
            && matches!(old, ExecutorState::Pending | ExecutorState::Running)
        {
            *old = if driver_running {
                ExecutorState::Unknown
            } else if app_state == S::Completed || app_state == S::Succeeding {
                ExecutorState::Completed
            } else {
                ExecutorState::Failed
            };
        }
    }
    cx.status.executor_state.extend(seen);
    // Never grow without bound: keep the first (lowest-named) entries.
    while cx.status.executor_state.len() > settings.max_tracked_executors {
        cx.status.executor_state.pop_last();
    }
    cx.events.extend(notes);
}

/// COMPLETED / FAILED with a time to live: delete the app when it has passed.
fn expire_later(cx: &mut Ctx, obs: &Observed) {
    let Some(ttl) = cx.app.spec.time_to_live_seconds else {
        return;
    };
    let ended = cx.status.termination_time.as_ref().map_or(obs.now, |t| t.0);
    let left = SignedDuration::from_secs(ttl.max(0)) - obs.now.duration_since(ended);
    if left <= SignedDuration::ZERO {
        cx.actions.push(Action::DeleteApp);
    } else {
        cx.requeue(Duration::try_from(left).unwrap_or(Duration::from_secs(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HASH: &str = "h1";

    fn app(restart: serde_json::Value, status: serde_json::Value) -> SparkApplication {
        serde_json::from_value(json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "pi", "namespace": "ns", "uid": "u1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "Python", "sparkVersion": "3.5.3", "mainApplicationFile": "local:///pi.py",
                     "driver": {}, "executor": {}, "restartPolicy": restart},
            "status": status
        }))
        .unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(name: &str, phase: &str, exit: Option<i32>, hash: &str) -> SparkPod {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"spark-role": "driver", "spark-app-selector": "spark-abc"},
                         "annotations": {SPEC_HASH_ANNOTATION: hash}},
            "spec": {"containers": [{"name": "spark-kubernetes-driver"}]},
            "status": {"phase": phase}
        });
        if let Some(code) = exit {
            v["status"]["containerStatuses"] = json!([{"name": "spark-kubernetes-driver", "ready": false, "restartCount": 0,
                "image": "", "imageID": "", "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"}}}}]);
        }
        serde_json::from_value(v).unwrap()
    }

    fn executor(name: &str, id: u32, phase: &str) -> SparkPod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"spark-role": "executor", "spark-exec-id": id.to_string()}},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn obs<'a>(
        now: &str,
        driver: Option<&'a SparkPod>,
        executors: Vec<&'a SparkPod>,
    ) -> Observed<'a> {
        Observed {
            now: t(now),
            driver,
            executors,
            spec_hash: HASH,
        }
    }

    fn running(state: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut s = json!({"applicationState": {"state": state}, "submissionAttempts": 1, "executionAttempts": 1,
            "lastSubmissionAttemptTime": "2026-01-01T00:00:10Z", "driverInfo": {"podName": "pi-driver"}, "submissionID": "s1"});
        if let (Some(o), Some(e)) = (s.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        s
    }

    fn reasons(d: &Decision) -> Vec<&str> {
        d.events.iter().map(|e| e.reason).collect()
    }

    fn suspended(mut a: SparkApplication, on: bool) -> SparkApplication {
        a.spec.suspend = Some(on);
        a
    }

    fn executor_of(name: &str, submission_id: &str) -> SparkPod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"spark-role": "executor", "spark-exec-id": "1",
                                                  SUBMISSION_ID_LABEL: submission_id}},
            "status": {"phase": "Running"}
        }))
        .unwrap()
    }

    #[test]
    fn an_app_created_suspended_is_never_submitted() {
        let a = suspended(app(json!({}), json!({})), true);
        let d = decide(
            &a,
            &obs("2026-01-01T00:00:01Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Suspended);
        assert!(d.actions.is_empty(), "nothing to submit or delete");
        assert_eq!(
            reasons(&d),
            ["SparkApplicationSuspending", "SparkApplicationSuspended"]
        );
        assert_eq!(d.status.submission_attempts, 0);
        // Staying suspended: nothing happens, however often it is reconciled.
        let a = SparkApplication {
            status: Some(d.status),
            ..a
        };
        let d = decide(
            &a,
            &obs("2026-01-01T01:00:00Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Suspended);
        assert!(d.actions.is_empty() && d.events.is_empty());
        assert_eq!(d.requeue_after, None);
    }

    #[test]
    fn every_state_but_the_terminal_ones_suspends() {
        let p = pod("pi-driver", "Running", None, HASH);
        for state in [
            "",
            "SUBMITTED",
            "RUNNING",
            "UNKNOWN",
            "SUCCEEDING",
            "FAILING",
            "SUBMISSION_FAILED",
            "PENDING_RERUN",
            "INVALIDATING",
            "RESUMING",
        ] {
            let a = suspended(
                app(json!({"type": "Always"}), running(state, json!({}))),
                true,
            );
            let d = decide(
                &a,
                &obs("2026-01-01T00:01:00Z", Some(&p), vec![]),
                &Settings::default(),
            );
            assert_eq!(d.status.application_state.state, S::Suspending, "{state}");
            assert_eq!(
                d.actions,
                vec![Action::DeleteAttempt {
                    pod_name: "pi-driver".into(),
                    submission_id: "s1".into()
                }],
                "{state}"
            );
            assert_eq!(reasons(&d), ["SparkApplicationSuspending"], "{state}");
        }
        for state in ["COMPLETED", "FAILED"] {
            let a = suspended(app(json!({}), running(state, json!({}))), true);
            let d = decide(
                &a,
                &obs("2026-01-01T00:01:00Z", None, vec![]),
                &Settings::default(),
            );
            assert_eq!(d.status.application_state.state.as_str(), state);
            assert!(d.actions.is_empty(), "{state}");
        }
    }

    #[test]
    fn suspending_waits_for_the_attempts_pods_then_suspends() {
        let a = suspended(app(json!({}), running("SUSPENDING", json!({}))), true);
        let p = pod("pi-driver", "Running", None, HASH);
        let delete = Action::DeleteAttempt {
            pod_name: "pi-driver".into(),
            submission_id: "s1".into(),
        };
        // The driver still terminating: delete again, wait.
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Suspending);
        assert_eq!(d.actions, vec![delete.clone()]);
        assert_eq!(d.requeue_after, Some(Duration::from_secs(1)));
        assert!(d.events.is_empty());
        // The driver gone, an executor of the attempt not yet.
        let e = executor_of("pi-exec-1", "s1");
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:01Z", None, vec![&e]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Suspending);
        // An executor of another submission does not hold it back; the Service and ConfigMaps
        // are deleted once more in the same step (their driver may have been gone already).
        let old = executor_of("pi-exec-old", "s0");
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:02Z", None, vec![&old]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Suspended);
        assert_eq!(d.actions, vec![delete]);
        assert_eq!(reasons(&d), ["SparkApplicationSuspended"]);
        let st = &d.status;
        assert!(st.driver_info.pod_name.is_empty() && st.spark_application_id.is_empty());
        assert_eq!((st.submission_attempts, st.execution_attempts), (1, 1));
    }

    #[test]
    fn flipping_suspend_back_while_suspending_finishes_the_suspension_first() {
        let a = suspended(app(json!({}), running("SUSPENDING", json!({}))), false);
        let p = pod("pi-driver", "Running", None, HASH);
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Suspending);
        assert!(!d.actions.iter().any(|a| matches!(a, Action::Submit { .. })));
    }

    #[test]
    fn resuming_submits_a_new_attempt_with_the_counts_carried_on() {
        let st = json!({"applicationState": {"state": "SUSPENDED"}, "submissionAttempts": 2,
                        "executionAttempts": 2, "submissionID": "s2"});
        let a = suspended(app(json!({}), st.clone()), true);
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Suspended);
        let a = suspended(app(json!({}), st), false);
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Resuming);
        assert_eq!(reasons(&d), ["SparkApplicationResuming"]);
        assert!(d.actions.is_empty());
        assert_eq!(d.requeue_after, Some(Duration::ZERO));
        let a = SparkApplication {
            status: Some(d.status),
            ..a
        };
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:01Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.actions, vec![Action::Submit { attempt: 3 }]);
    }

    /// `spec.suspend` is left out of the spec hash: flipping it never invalidates a running
    /// attempt, and a resumed app is not taken for a changed one.
    #[test]
    fn flipping_suspend_does_not_change_the_spec_hash() {
        let a = app(json!({}), json!({}));
        let h = crate::reconciler::spec_hash(&a);
        assert_eq!(crate::reconciler::spec_hash(&suspended(a.clone(), true)), h);
        assert_eq!(crate::reconciler::spec_hash(&suspended(a, false)), h);
    }

    #[test]
    fn new_app_is_submitted_as_attempt_one() {
        let a = app(json!({}), json!({}));
        let d = decide(
            &a,
            &obs("2026-01-01T00:00:01Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.actions, vec![Action::Submit { attempt: 1 }]);
        let info = SubmittedInfo {
            submission_id: "s1".into(),
            driver_pod_name: "pi-driver".into(),
            app_id: "spark-abc".into(),
            ui_service_name: "pi-ui-svc".into(),
            ui_port: 4040,
            ui_address: "10.96.0.7:4040".into(),
            ui_ingress_name: "pi-ui-ingress".into(),
            ui_ingress_address: "http://pi.example.com".into(),
        };
        let after = submitted(&a, 1, Ok(info), t("2026-01-01T00:00:01Z"));
        let st = &after.status;
        assert_eq!(st.application_state.state, S::Submitted);
        assert_eq!((st.submission_attempts, st.execution_attempts), (1, 1));
        assert_eq!(st.driver_info.pod_name, "pi-driver");
        let ui = &st.driver_info;
        assert_eq!(
            (
                ui.web_ui_service_name.as_str(),
                ui.web_ui_port,
                ui.web_ui_address.as_str()
            ),
            ("pi-ui-svc", 4040, "10.96.0.7:4040")
        );
        assert_eq!(
            (
                ui.web_ui_ingress_name.as_str(),
                ui.web_ui_ingress_address.as_str()
            ),
            ("pi-ui-ingress", "http://pi.example.com")
        );
        assert_eq!(st.submission_id, "s1");
        assert!(st.last_submission_attempt_time.is_some());
        assert_eq!(reasons(&after), ["SparkApplicationSubmitted"]);
    }

    #[test]
    fn failed_submission_without_retries_ends_failed() {
        let a = app(json!({"type": "Never"}), json!({}));
        let after = submitted(&a, 1, Err("no image".into()), t("2026-01-01T00:00:01Z"));
        assert_eq!(after.status.application_state.state, S::SubmissionFailed);
        assert_eq!(after.status.application_state.error_message, "no image");
        assert_eq!(reasons(&after), ["SparkApplicationSubmissionFailed"]);
        let a = SparkApplication {
            status: Some(after.status),
            ..a
        };
        let d = decide(
            &a,
            &obs("2026-01-01T00:00:02Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Failed);
        assert_eq!(d.status.application_state.error_message, "no image");
        assert!(d.status.termination_time.is_some());
        assert!(d.actions.is_empty());
    }

    #[test]
    fn an_unreachable_webhook_keeps_the_attempt_and_the_state_and_says_so() {
        let a = app(json!({"type": "Never"}), json!({}));
        let d = decide(
            &a,
            &obs("2026-01-01T00:00:00Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.actions, vec![Action::Submit { attempt: 1 }]);
        let why = "Internal error occurred: failed calling webhook \"x\": connection refused";
        let d = admission_unavailable(&a, why);
        assert_eq!(d.status.application_state.state, S::New);
        assert_eq!(d.status.submission_attempts, 0, "no attempt used");
        assert!(
            d.status
                .application_state
                .error_message
                .contains("retrying")
        );
        assert!(
            d.status
                .application_state
                .error_message
                .contains("connection refused")
        );
        assert_eq!(reasons(&d), ["SparkApplicationSubmissionRetrying"]);
        // Retried as the same attempt; a repeat of the same failure sends no second Event.
        let again = SparkApplication {
            status: Some(d.status.clone()),
            ..a.clone()
        };
        let next = decide(
            &again,
            &obs("2026-01-01T00:00:05Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(next.actions, vec![Action::Submit { attempt: 1 }]);
        let repeat = admission_unavailable(&again, why);
        assert_eq!(repeat.status, d.status);
        assert!(repeat.events.is_empty());

        // After a real submission failure with retries left, the wait for the webhook does not
        // count either: the attempt number and the retry budget stay where they were.
        let failed = app(
            json!({"type": "OnFailure", "onSubmissionFailureRetries": 1, "onSubmissionFailureRetryInterval": 1}),
            json!({"applicationState": {"state": "SUBMISSION_FAILED", "errorMessage": "x"},
                   "submissionAttempts": 1, "lastSubmissionAttemptTime": "2026-01-01T00:00:00Z"}),
        );
        let d = admission_unavailable(&failed, why);
        assert_eq!(d.status.application_state.state, S::SubmissionFailed);
        assert_eq!(d.status.submission_attempts, 1);
        let again = SparkApplication {
            status: Some(d.status),
            ..failed
        };
        let next = decide(
            &again,
            &obs("2026-01-01T00:00:05Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(next.actions, vec![Action::Submit { attempt: 2 }]);
    }

    #[test]
    fn failed_submission_retries_after_its_interval() {
        let rp = json!({"type": "OnFailure", "onSubmissionFailureRetries": 2, "onSubmissionFailureRetryInterval": 10});
        let st = json!({"applicationState": {"state": "SUBMISSION_FAILED", "errorMessage": "x"}, "submissionAttempts": 1,
                        "lastSubmissionAttemptTime": "2026-01-01T00:00:00Z"});
        let a = app(rp.clone(), st);
        let early = decide(
            &a,
            &obs("2026-01-01T00:00:04Z", None, vec![]),
            &Settings::default(),
        );
        assert!(early.actions.is_empty());
        assert_eq!(early.requeue_after, Some(Duration::from_secs(6)));
        let due = decide(
            &a,
            &obs("2026-01-01T00:00:11Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(due.actions, vec![Action::Submit { attempt: 2 }]);
        // Three attempts made, two retries allowed: give up.
        let st = json!({"applicationState": {"state": "SUBMISSION_FAILED"}, "submissionAttempts": 3,
                        "lastSubmissionAttemptTime": "2026-01-01T00:00:00Z"});
        let d = decide(
            &app(rp, st),
            &obs("2026-01-01T01:00:00Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Failed);
    }

    #[test]
    fn driver_phases_drive_the_app_to_completed() {
        let a = app(json!({}), running("SUBMITTED", json!({})));
        let p = pod("pi-driver", "Running", None, HASH);
        let d = decide(
            &a,
            &obs("2026-01-01T00:00:20Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Running);
        assert_eq!(reasons(&d), ["SparkDriverRunning"]);
        assert_eq!(d.status.spark_application_id, "spark-abc");

        let a = app(json!({}), running("RUNNING", json!({})));
        let p = pod("pi-driver", "Succeeded", Some(0), HASH);
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Succeeding);
        assert!(d.status.termination_time.is_some());
        let a = SparkApplication {
            status: Some(d.status),
            ..a
        };
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:01Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Completed);
        assert_eq!(reasons(&d), ["SparkApplicationCompleted"]);
    }

    #[test]
    fn a_finished_spark_container_decides_even_if_a_sidecar_keeps_the_pod_running() {
        let a = app(json!({}), running("RUNNING", json!({})));
        let ok = pod("pi-driver", "Running", Some(0), HASH);
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", Some(&ok), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Succeeding);
        let bad = pod("pi-driver", "Running", Some(137), HASH);
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", Some(&bad), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Failing);
        assert!(
            d.status
                .application_state
                .error_message
                .contains("ExitCode: 137"),
            "{:?}",
            d.status
        );
    }

    /// Kubeflow's defaulter gives OnFailure and Always 5 s between attempts when the app names
    /// no interval: a failed run is not re-run at once.
    #[test]
    fn an_unset_retry_interval_waits_kubeflows_five_seconds() {
        let p = pod("pi-driver", "Failed", Some(1), HASH);
        for rp in [
            json!({"type": "OnFailure", "onFailureRetries": 3}),
            json!({"type": "Always"}),
        ] {
            // Failing since the driver failed; the attempt was submitted at 00:00:10.
            let a = app(rp.clone(), running("FAILING", json!({})));
            let early = decide(
                &a,
                &obs("2026-01-01T00:00:12Z", Some(&p), vec![]),
                &Settings::default(),
            );
            assert_eq!(early.status.application_state.state, S::Failing, "{rp}");
            assert!(early.actions.is_empty(), "{rp}");
            assert_eq!(early.requeue_after, Some(Duration::from_secs(3)), "{rp}");
            let due = decide(
                &a,
                &obs("2026-01-01T00:00:15Z", Some(&p), vec![]),
                &Settings::default(),
            );
            assert_eq!(due.status.application_state.state, S::PendingRerun, "{rp}");
        }
        // Never keeps failing at once: no interval applies.
        let a = app(json!({}), running("FAILING", json!({})));
        let d = decide(
            &a,
            &obs("2026-01-01T00:00:11Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Failed);
    }

    #[test]
    fn on_failure_retries_rerun_then_give_up() {
        let rp = json!({"type": "OnFailure", "onFailureRetries": 1, "onFailureRetryInterval": 0});
        let a = app(rp.clone(), running("RUNNING", json!({})));
        let p = pod("pi-driver", "Failed", Some(1), HASH);
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Failing);
        assert_eq!(reasons(&d), ["SparkDriverFailed"]);
        let a = SparkApplication {
            status: Some(d.status),
            ..a
        };
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:01Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::PendingRerun);
        assert_eq!(
            d.actions,
            vec![Action::DeleteDriver {
                pod_name: "pi-driver".into()
            }]
        );
        assert_eq!(
            d.status.execution_attempts, 1,
            "attempt counts survive a rerun"
        );
        // The old driver is still terminating: keep deleting, wait.
        let a = SparkApplication {
            status: Some(d.status),
            ..a
        };
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:02Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert!(matches!(d.actions[..], [Action::DeleteDriver { .. }]));
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:03Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.actions, vec![Action::Submit { attempt: 2 }]);

        // Second execution failed too: one retry was allowed, so FAILED.
        let a = app(
            rp,
            running(
                "FAILING",
                json!({"executionAttempts": 2, "submissionAttempts": 2}),
            ),
        );
        let d = decide(
            &a,
            &obs("2026-01-01T00:05:00Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Failed);
        assert_eq!(reasons(&d), ["SparkApplicationFailed"]);
    }

    #[test]
    fn always_reruns_even_after_success() {
        let a = app(json!({"type": "Always"}), running("SUCCEEDING", json!({})));
        let p = pod("pi-driver", "Succeeded", Some(0), HASH);
        let d = decide(
            &a,
            &obs("2026-01-01T00:05:00Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::PendingRerun);
    }

    #[test]
    fn a_missing_driver_fails_the_attempt_after_the_grace_period() {
        let a = app(json!({}), running("SUBMITTED", json!({})));
        let d = decide(
            &a,
            &obs("2026-01-01T00:00:12Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Submitted);
        assert_eq!(d.requeue_after, Some(Duration::from_secs(8)));
        let d = decide(
            &a,
            &obs("2026-01-01T00:00:30Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Failing);
        assert_eq!(
            d.status.application_state.error_message,
            "driver pod not found"
        );
        assert_eq!(reasons(&d), ["SparkDriverNotFound"]);
        // A running app whose driver vanished fails at once.
        let a = app(json!({}), running("RUNNING", json!({})));
        let d = decide(
            &a,
            &obs("2026-01-01T00:00:12Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Failing);
    }

    #[test]
    fn a_driver_pending_past_the_start_timeout_fails_the_attempt() {
        let s = Settings {
            driver_start_timeout: Some(Duration::from_secs(60)),
            ..Settings::default()
        };
        let a = app(json!({}), running("SUBMITTED", json!({})));
        let p = pod("pi-driver", "Pending", None, HASH);
        let d = decide(&a, &obs("2026-01-01T00:00:40Z", Some(&p), vec![]), &s);
        assert_eq!(d.status.application_state.state, S::Submitted);
        assert_eq!(d.requeue_after, Some(Duration::from_secs(30)));
        let d = decide(&a, &obs("2026-01-01T00:01:20Z", Some(&p), vec![]), &s);
        assert_eq!(d.status.application_state.state, S::Failing);
        assert!(
            d.status
                .application_state
                .error_message
                .contains("still Pending")
        );
        assert_eq!(
            d.actions,
            vec![Action::DeleteDriver {
                pod_name: "pi-driver".into()
            }]
        );
    }

    #[test]
    fn a_spec_change_invalidates_and_resubmits_from_scratch() {
        let a = app(json!({}), running("RUNNING", json!({})));
        let p = pod("pi-driver", "Running", None, "old-hash");
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::Invalidating);
        let a = SparkApplication {
            status: Some(d.status),
            ..a
        };
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:01Z", Some(&p), vec![]),
            &Settings::default(),
        );
        assert_eq!(d.status.application_state.state, S::PendingRerun);
        assert_eq!(
            d.actions,
            vec![Action::DeleteDriver {
                pod_name: "pi-driver".into()
            }]
        );
        assert_eq!(
            (d.status.submission_attempts, d.status.execution_attempts),
            (0, 0)
        );
        let a = SparkApplication {
            status: Some(d.status),
            ..a
        };
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:05Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.actions, vec![Action::Submit { attempt: 1 }]);
    }

    #[test]
    fn time_to_live_deletes_the_app_after_it_ends() {
        let mut a = app(
            json!({}),
            running(
                "COMPLETED",
                json!({"terminationTime": "2026-01-01T00:10:00Z"}),
            ),
        );
        a.spec.time_to_live_seconds = Some(60);
        let d = decide(
            &a,
            &obs("2026-01-01T00:10:30Z", None, vec![]),
            &Settings::default(),
        );
        assert!(d.actions.is_empty());
        assert_eq!(d.requeue_after, Some(Duration::from_secs(30)));
        let d = decide(
            &a,
            &obs("2026-01-01T00:11:01Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(d.actions, vec![Action::DeleteApp]);
    }

    #[test]
    fn executor_state_is_tracked_and_capped() {
        let a = app(json!({}), running("RUNNING", json!({})));
        let p = pod("pi-driver", "Running", None, HASH);
        let execs: Vec<SparkPod> = (1..=5)
            .map(|i| executor(&format!("pi-exec-{i}"), i, "Running"))
            .collect();
        let s = Settings {
            max_tracked_executors: 3,
            ..Settings::default()
        };
        let d = decide(
            &a,
            &obs("2026-01-01T00:01:00Z", Some(&p), execs.iter().collect()),
            &s,
        );
        assert_eq!(d.status.executor_state.len(), 3);
        assert!(
            d.status
                .executor_state
                .values()
                .all(|s| *s == ExecutorState::Running)
        );
        assert_eq!(
            reasons(&d)
                .iter()
                .filter(|r| **r == "SparkExecutorRunning")
                .count(),
            3
        );
        // Executors gone after the app completed are recorded as completed.
        let a = app(
            json!({}),
            running(
                "COMPLETED",
                json!({"executorState": {"pi-exec-1": "RUNNING"}}),
            ),
        );
        let d = decide(
            &a,
            &obs("2026-01-01T00:02:00Z", None, vec![]),
            &Settings::default(),
        );
        assert_eq!(
            d.status.executor_state.get("pi-exec-1"),
            Some(&ExecutorState::Completed)
        );
    }
}
