//! What every builder of a submission reads: the app, its names and the settings. Its own module,
//! below the builders, so they need not import the top of `submission` for it.

use crate::crd::SparkApplication;

use super::error::SubmissionError;
use super::names;
use super::options::SubmitOptions;

/// What every part of the build needs.
pub(crate) struct Ctx<'a> {
    pub app: &'a SparkApplication,
    /// `namespace/name`, for error messages.
    pub app_ref: String,
    pub name: &'a str,
    pub namespace: &'a str,
    pub names: names::Names,
    pub opts: &'a SubmitOptions,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        app: &'a SparkApplication,
        attempt: u32,
        opts: &'a SubmitOptions,
    ) -> Result<Self, SubmissionError> {
        let meta = &app.metadata;
        let name = meta.name.as_deref().unwrap_or_default();
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let app_ref = if namespace.is_empty() {
            name.to_string()
        } else {
            format!("{namespace}/{name}")
        };
        let missing = |field, why| SubmissionError::Missing {
            app: app_ref.clone(),
            field,
            why,
        };
        if name.is_empty() {
            return Err(missing("metadata.name", "objects are named after the app"));
        }
        if namespace.is_empty() {
            return Err(missing(
                "metadata.namespace",
                "the driver runs in the app's namespace",
            ));
        }
        let uid = meta.uid.as_deref().unwrap_or_default();
        if uid.is_empty() {
            return Err(missing(
                "metadata.uid",
                "submission ids and names are derived from it",
            ));
        }
        Ok(Self {
            app,
            names: names::Names::new(app, uid, attempt),
            app_ref,
            name,
            namespace,
            opts,
        })
    }
}
