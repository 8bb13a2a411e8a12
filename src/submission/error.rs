//! Why an application cannot be submitted. Every message names the app (`namespace/name`) and
//! the field to fix, because it ends up verbatim in the SparkApplication's status.

use crate::mutate::MutateError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmissionError {
    #[error("SparkApplication {app}: {field} is not set: {why}")]
    Missing {
        app: String,
        field: &'static str,
        why: &'static str,
    },

    #[error(
        "SparkApplication {app}: no image: set spec.image, spec.driver.image, or start the \
         operator with --default-spark-image"
    )]
    NoImage { app: String },

    #[error(
        "SparkApplication {app}: no executor image: set spec.image, spec.executor.image, or start \
         the operator with --default-spark-image"
    )]
    NoExecutorImage { app: String },

    #[error(
        "SparkApplication {app}: spec.mode is {mode}: native submission only runs the driver in a \
         pod of its own (mode cluster)"
    )]
    UnsupportedMode { app: String, mode: String },

    #[error("SparkApplication {app}: {field} is {value:?}: {reason}")]
    Invalid {
        app: String,
        field: String,
        value: String,
        reason: String,
    },

    /// The pod mutation rules refused the driver (the message names app and field). Boxed:
    /// it is by far the largest variant.
    #[error(transparent)]
    Mutate(Box<MutateError>),
}

impl From<MutateError> for SubmissionError {
    fn from(e: MutateError) -> Self {
        Self::Mutate(Box::new(e))
    }
}
