//! `SparkApplicationStatus`: what the operator observed, compatible with the Go operator's
//! status block so objects it wrote stay readable.
//!
//! Scalars mirror Go's `omitempty`: empty strings and zero counters are omitted on output and
//! default on input. `driverInfo` and `applicationState` are plain structs (not `Option`) for
//! convenient access; they are omitted while empty/New.
//!
//! Because cleared values are omitted rather than written as empty, a JSON merge patch of the
//! new status alone would leave a stale `errorMessage` or `terminationTime` behind: the
//! reconciler sends the difference to the status it read, cleared members as `null`
//! ([`super::patch::status_patch`]).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a SparkApplication, maintained by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SparkApplicationStatus {
    /// Spark application ID (spark.app.id) set on the driver and executor pods.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spark_application_id: String,

    /// Unique ID of the current submission; changes on every (re)submission.
    #[serde(
        rename = "submissionID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub submission_id: String,

    /// When the application was last submitted (or a submission was attempted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_submission_attempt_time: Option<Time>,

    /// When the application terminated, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_time: Option<Time>,

    /// Driver pod, UI Service and UI Ingress of the current run.
    #[serde(default, skip_serializing_if = "DriverInfo::is_empty")]
    pub driver_info: DriverInfo,

    /// Overall state of the application and the last error.
    #[serde(default, skip_serializing_if = "ApplicationState::is_empty")]
    pub application_state: ApplicationState,

    /// State of each executor, by executor pod name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub executor_state: BTreeMap<String, ExecutorState>,

    /// Runs attempted for the current submission; incremented per run, reset on invalidation.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub execution_attempts: i32,

    /// Submissions attempted; incremented per attempt, reset on invalidation and rerun.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub submission_attempts: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Where the driver runs and how its UI is reachable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DriverInfo {
    /// Name of the Service exposing the Spark UI.
    #[serde(
        rename = "webUIServiceName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub web_ui_service_name: String,

    /// In-cluster address (ClusterIP:port) of the Spark UI Service.
    #[serde(
        rename = "webUIAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub web_ui_address: String,

    /// Port of the Spark UI Service.
    #[serde(rename = "webUIPort", default, skip_serializing_if = "is_zero")]
    pub web_ui_port: i32,

    /// Name of the Ingress exposing the Spark UI, if one was created.
    #[serde(
        rename = "webUIIngressName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub web_ui_ingress_name: String,

    /// Address of the Spark UI Ingress, if one was created.
    #[serde(
        rename = "webUIIngressAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub web_ui_ingress_address: String,

    /// Name of the driver pod.
    #[serde(rename = "podName", default, skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
}

impl DriverInfo {
    /// True when nothing is known about the driver yet.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Application state plus the error that led to it, if any.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationState {
    /// Current state; "" means New (not yet handled by the operator).
    pub state: ApplicationStateType,

    /// Error message of the last failure.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_message: String,
}

impl ApplicationState {
    /// True for a New state without an error message, i.e. nothing to report.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Lifecycle state of a SparkApplication, as the Go operator names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ApplicationStateType {
    /// Created, not yet handled (wire value "").
    #[default]
    #[serde(rename = "")]
    New,
    /// spark-submit succeeded; the driver is starting.
    #[serde(rename = "SUBMITTED")]
    Submitted,
    /// The driver is running.
    #[serde(rename = "RUNNING")]
    Running,
    /// The driver finished successfully.
    #[serde(rename = "COMPLETED")]
    Completed,
    /// The driver failed.
    #[serde(rename = "FAILED")]
    Failed,
    /// spark-submit failed.
    #[serde(rename = "SUBMISSION_FAILED")]
    SubmissionFailed,
    /// Waiting for the previous run's resources to go away before re-running.
    #[serde(rename = "PENDING_RERUN")]
    PendingRerun,
    /// The spec changed; the current run is being torn down.
    #[serde(rename = "INVALIDATING")]
    Invalidating,
    /// The driver succeeded; executors are being cleaned up.
    #[serde(rename = "SUCCEEDING")]
    Succeeding,
    /// The driver failed; deciding whether to retry.
    #[serde(rename = "FAILING")]
    Failing,
    /// spec.suspend became true; the attempt's pods, Services and ConfigMaps are being deleted.
    #[serde(rename = "SUSPENDING")]
    Suspending,
    /// Suspended; nothing runs.
    #[serde(rename = "SUSPENDED")]
    Suspended,
    /// spec.suspend became false; the application is being resubmitted.
    #[serde(rename = "RESUMING")]
    Resuming,
    /// The driver's state cannot be determined.
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

impl ApplicationStateType {
    /// Every state, in declaration order.
    pub const ALL: [Self; 14] = [
        Self::New,
        Self::Submitted,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::SubmissionFailed,
        Self::PendingRerun,
        Self::Invalidating,
        Self::Succeeding,
        Self::Failing,
        Self::Suspending,
        Self::Suspended,
        Self::Resuming,
        Self::Unknown,
    ];

    /// The wire value, as written in `status.applicationState.state` ("" for New).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "",
            Self::Submitted => "SUBMITTED",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::SubmissionFailed => "SUBMISSION_FAILED",
            Self::PendingRerun => "PENDING_RERUN",
            Self::Invalidating => "INVALIDATING",
            Self::Succeeding => "SUCCEEDING",
            Self::Failing => "FAILING",
            Self::Suspending => "SUSPENDING",
            Self::Suspended => "SUSPENDED",
            Self::Resuming => "RESUMING",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// State of the driver pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum DriverState {
    /// Scheduled or starting.
    Pending,
    /// Running.
    Running,
    /// Exited successfully.
    Completed,
    /// Exited with an error or was killed.
    Failed,
    /// Cannot be determined.
    #[default]
    Unknown,
}

impl DriverState {
    /// The wire value (PENDING, RUNNING, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// State of an executor pod, as recorded in `status.executorState`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExecutorState {
    /// Scheduled or starting.
    Pending,
    /// Running.
    Running,
    /// Exited successfully.
    Completed,
    /// Exited with an error or was killed.
    Failed,
    /// Cannot be determined.
    #[default]
    Unknown,
}

impl ExecutorState {
    /// The wire value (PENDING, RUNNING, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Unknown => "UNKNOWN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_wire_names_match_serde() {
        for state in ApplicationStateType::ALL {
            let json = serde_json::to_value(state).expect("serialise");
            assert_eq!(json, serde_json::Value::from(state.as_str()));
            let back: ApplicationStateType = serde_json::from_value(json).expect("deserialise");
            assert_eq!(back, state);
            assert_eq!(state.to_string(), state.as_str());
        }
        assert_eq!(ApplicationStateType::default(), ApplicationStateType::New);
    }

    #[test]
    fn pod_state_wire_names() {
        for s in [
            ExecutorState::Pending,
            ExecutorState::Running,
            ExecutorState::Completed,
            ExecutorState::Failed,
            ExecutorState::Unknown,
        ] {
            assert_eq!(
                serde_json::to_value(s).expect("serialise"),
                serde_json::Value::from(s.as_str())
            );
        }
        assert_eq!(DriverState::Completed.to_string(), "COMPLETED");
    }

    #[test]
    fn empty_status_serialises_to_empty_object() {
        let json = serde_json::to_value(SparkApplicationStatus::default()).expect("serialise");
        assert_eq!(json, serde_json::json!({}));
    }

    #[test]
    fn go_style_status_with_nulls_and_empty_state_parses() {
        // What the Go operator writes before the first submission.
        let status: SparkApplicationStatus = serde_json::from_value(serde_json::json!({
            "lastSubmissionAttemptTime": null,
            "terminationTime": null,
            "driverInfo": {},
            "applicationState": {"state": ""},
        }))
        .expect("deserialise");
        assert_eq!(status, SparkApplicationStatus::default());
    }
}
