//! Operator-wide settings of submission, apart from the builders so every one of them can read
//! the settings without importing the module that assembles them.

use crate::mutate::MutationOptions;

/// What `spark.master` says when the operator is not told otherwise: the in-cluster API.
pub const DEFAULT_MASTER_URL: &str = "k8s://https://kubernetes.default.svc:443";

/// Operator-wide settings of native submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Image for apps that name none (`--default-spark-image`).
    pub default_image: Option<String>,
    /// `spark.master`. The driver talks to the API through `spark.kubernetes.driver.master`
    /// (default `https://kubernetes.default.svc`), so this is mostly informational.
    pub master_url: String,
    /// The pod mutation rules' options, applied to the driver.
    pub mutation: MutationOptions,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        Self {
            default_image: None,
            master_url: DEFAULT_MASTER_URL.to_string(),
            mutation: MutationOptions::default(),
        }
    }
}
