//! The embedded reconciler: turns SparkApplications into driver submissions and keeps their
//! status true. [`state`] decides (pure); [`controller`] observes and acts, sharing a
//! [`context`] per controller, through [`submit`] and [`cleanup`]; [`runner`] starts the
//! controllers while this replica leads. How the apps and the Spark pods are cached is
//! [`crate::cache`]'s business.

mod cleanup;
pub mod context;
pub mod controller;
pub mod runner;
pub mod state;
mod submit;

use crate::crd::SparkApplication;

/// A stable hash of what a submission is built from: the spec without the fields that may
/// change under a running app (suspend, timeToLiveSeconds), as kubeflow ignores them too.
pub fn spec_hash(app: &SparkApplication) -> String {
    let mut spec = app.spec.clone();
    spec.suspend = None;
    spec.time_to_live_seconds = None;
    let bytes = serde_json::to_vec(&spec).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    digest
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::state::{self, Observed, Settings};
    use crate::cache::pod::tests::failed_driver;
    use crate::cache::{CompactApp, GuardedApp, SparkPod};
    use crate::crd::{ApplicationStateType as S, SparkApplication};

    const APP: &str = include_str!("../../tests/bench/sparkapplication.yaml");

    /// The hash of an app read back from the cache is the hash of the app as it was written.
    #[test]
    fn the_spec_hash_survives_the_compact_cache() {
        let app: SparkApplication = yaml_serde::from_str(APP).unwrap();
        let json = serde_json::to_vec(&app).unwrap();
        let compact: GuardedApp = serde_json::from_slice(&json).unwrap();
        let compact: CompactApp = compact.0.expect("readable");
        assert_eq!(
            super::spec_hash(&compact.expand().unwrap()),
            super::spec_hash(&app)
        );
    }

    /// The state machine decides on the compact pod: the Spark container's exit code fails the
    /// attempt although a sidecar keeps the pod Running.
    #[test]
    fn the_state_machine_reads_the_compact_driver() {
        let mut driver = failed_driver();
        driver["metadata"]["annotations"] = json!({crate::labels::SPEC_HASH_ANNOTATION: "h1"});
        let pod: SparkPod = serde_json::from_value(driver).unwrap();
        let app: SparkApplication = serde_json::from_value(json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "spark-pi", "namespace": "default", "uid": "u1"},
            "spec": {"type": "Scala", "sparkVersion": "3.3.4", "mainApplicationFile": "local:///x.jar",
                     "driver": {"sidecars": [{"name": "sidecar"}]}, "executor": {}},
            "status": {"applicationState": {"state": "RUNNING"}, "submissionAttempts": 1,
                       "executionAttempts": 1, "lastSubmissionAttemptTime": "2026-11-22T15:20:40Z",
                       "driverInfo": {"podName": "spark-pi-driver3"}}
        }))
        .unwrap();
        let observed = Observed {
            now: "2026-11-22T15:22:00Z".parse().unwrap(),
            driver: Some(&pod),
            executors: vec![],
            spec_hash: "h1",
        };
        let d = state::decide(&app, &observed, &Settings::default());
        assert_eq!(d.status.application_state.state, S::Failing);
        assert_eq!(
            d.status.application_state.error_message,
            "driver container failed with ExitCode: 137, Reason: OOMKilled"
        );
        assert_eq!(
            d.status.spark_application_id,
            "spark-8fd7365a36b5484dad5c083e293075a5"
        );
    }
}
