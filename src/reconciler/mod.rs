//! The embedded reconciler: turns SparkApplications into driver submissions and keeps their
//! status true. [`state`] decides (pure); [`controller`] observes and acts; [`pod`] is how
//! the Spark pods are cached.

pub mod controller;
pub mod pod;
pub mod runner;
pub mod state;

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
