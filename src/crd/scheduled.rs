//! `ScheduledSparkApplication`: a SparkApplication spec (`spec.template`) run on a cron schedule,
//! field for field kubeflow's v1beta2 type (same JSON names, same status), so every kubeflow
//! example applies unchanged and objects kubeflow wrote stay readable.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::SparkApplicationSpec;

/// Desired state of a ScheduledSparkApplication: a SparkApplication template and when to run it.
// The derive generates the `ScheduledSparkApplication` resource (re-exported from `crate::crd`).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sparkoperator.k8s.io",
    version = "v1beta2",
    kind = "ScheduledSparkApplication",
    plural = "scheduledsparkapplications",
    singular = "scheduledsparkapplication",
    namespaced,
    status = "ScheduledSparkApplicationStatus",
    shortname = "scheduledsparkapp",
    derive = "PartialEq",
    derive = "Default",
    doc = "A SparkApplication run on a cron schedule (kubeflow spark-operator compatible).",
    annotation(
        "api-approved.kubernetes.io",
        "https://github.com/kubeflow/spark-operator/pull/1298"
    ),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "TimeZone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Suspend", type_ = "string", json_path = ".spec.suspend"),
    printcolumn(name = "Last Run", type_ = "date", json_path = ".status.lastRun"),
    printcolumn(name = "Next Run", type_ = "date", json_path = ".status.nextRun"),
    printcolumn(
        name = "Last Run Name",
        type_ = "string",
        json_path = ".status.lastRunName"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledSparkApplicationSpec {
    /// A cron schedule on which the application runs: 5 fields (minute hour day-of-month month
    /// day-of-week), a macro (@hourly, @daily, ...) or "@every <duration>" (e.g. "@every 10m").
    pub schedule: String,

    /// The IANA time zone the schedule is read in (e.g. "America/New_York"); empty, "Local" and
    /// "UTC" mean UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,

    /// The SparkApplication spec each run is created from.
    pub template: SparkApplicationSpec,

    /// True: no new runs are started (running ones go on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// What to do when a run is due while the previous one still runs: Allow (start it too, the
    /// default), Forbid (skip the due run) or Replace (delete the running one, start the new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,

    /// How many completed runs to keep (default 1); older ones are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_run_history_limit: Option<i32>,

    /// How many failed runs to keep (default 1); older ones are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_run_history_limit: Option<i32>,
}

/// kubeflow's default for both history limits.
pub const DEFAULT_RUN_HISTORY_LIMIT: i32 = 1;

impl ScheduledSparkApplicationSpec {
    pub fn is_suspended(&self) -> bool {
        self.suspend == Some(true)
    }

    /// The policy, Allow when unset.
    pub fn policy(&self) -> ConcurrencyPolicy {
        self.concurrency_policy.unwrap_or_default()
    }
}

/// The policy governing concurrent runs. A string in kubeflow's schema; here the apiserver
/// refuses other values, which kubeflow's controller would silently never run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    #[default]
    Allow,
    /// A due run is skipped while another is unfinished.
    Forbid,
    /// Unfinished runs are deleted when the next one is due.
    Replace,
}

impl ConcurrencyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Forbid => "Forbid",
            Self::Replace => "Replace",
        }
    }
}

/// The scheduling state, as kubeflow names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ScheduleState {
    /// Not yet looked at (kubeflow's empty string).
    #[default]
    #[serde(rename = "")]
    New,
    /// Being checked (kubeflow's; not written here).
    Validating,
    /// Valid: runs start at `nextRun`.
    Scheduled,
    /// Invalid schedule or time zone: `reason` says why.
    FailedValidation,
}

impl ScheduleState {
    fn is_new(&self) -> bool {
        *self == Self::New
    }
}

/// Observed state of a ScheduledSparkApplication, as kubeflow fills it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledSparkApplicationStatus {
    /// When the last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Time>,

    /// When the next run is due (a slot of the schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Time>,

    /// The SparkApplication of the most recent run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_run_name: String,

    /// The SparkApplications of the past completed runs kept, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past_successful_run_names: Vec<String>,

    /// The SparkApplications of the past failed runs kept, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past_failed_run_names: Vec<String>,

    /// Scheduled, or FailedValidation (then `reason` says why).
    #[serde(default, skip_serializing_if = "ScheduleState::is_new")]
    pub schedule_state: ScheduleState,

    /// Why the schedule is in its state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}
