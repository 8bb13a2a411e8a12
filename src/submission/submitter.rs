//! How the reconciler submits an app: the objects built here, created directly, or Spark's own
//! spark-submit. An operator-wide option like [`super::SubmitOptions`], so it sits beside it.

use super::spark_submit::SparkSubmitter;

/// How apps are submitted.
#[derive(Clone, Debug)]
pub enum Submitter {
    /// Create the driver pod, Service and ConfigMap directly (the default: no JVM per app).
    Native,
    /// Run Spark's own spark-submit (opt-in), against `master`.
    SparkSubmit {
        runner: SparkSubmitter,
        master: String,
    },
}
