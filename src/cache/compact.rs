//! How SparkApplications are cached: metadata and status as types, the spec as
//! compact JSON text, read back into its type for each reconcile.
//!
//! Every app sits in the cache for its whole life, and a typed `SparkApplicationSpec` is large
//! however little it holds: k8s-openapi's volume, affinity, security context, ... types keep
//! every optional field inline, so the bench's 4 KiB spec takes ~35 KiB of memory as a type and
//! 4 KiB as text. The spec is still read as its type when it arrives, so an app our types cannot
//! read is an error of the watch (`DeserializeGuard`) exactly as before, and reading the text
//! back, which our own serialisation wrote, cannot fail on it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DeserializeGuard;
use serde::{Deserialize, Deserializer};

use crate::crd::{SparkApplication, SparkApplicationSpec, SparkApplicationStatus};

/// A cached app, or the error that made it unreadable (with its metadata).
pub type GuardedApp = DeserializeGuard<CompactApp>;

/// A SparkApplication with its spec kept as JSON text.
#[derive(Clone, Debug, Deserialize)]
pub struct CompactApp {
    pub metadata: ObjectMeta,
    #[serde(deserialize_with = "spec_text")]
    spec: Box<str>,
    #[serde(default)]
    pub status: Option<SparkApplicationStatus>,
}

/// Reads the spec as its type (refusing what the type refuses), keeps it as compact JSON.
fn spec_text<'de, D: Deserializer<'de>>(d: D) -> Result<Box<str>, D::Error> {
    let spec = SparkApplicationSpec::deserialize(d)?;
    serde_json::to_string(&spec)
        .map(String::into_boxed_str)
        .map_err(serde::de::Error::custom)
}

impl CompactApp {
    /// The app as it was read, spec included.
    pub fn expand(&self) -> Result<SparkApplication, serde_json::Error> {
        Ok(SparkApplication {
            metadata: self.metadata.clone(),
            spec: serde_json::from_str(&self.spec)?,
            status: self.status.clone(),
        })
    }
}

impl TryFrom<SparkApplication> for CompactApp {
    type Error = serde_json::Error;

    fn try_from(app: SparkApplication) -> Result<Self, Self::Error> {
        Ok(CompactApp {
            spec: serde_json::to_string(&app.spec)?.into_boxed_str(),
            metadata: app.metadata,
            status: app.status,
        })
    }
}

/// Drops `metadata.managedFields`, which no reader uses and which is often larger than the spec.
pub fn slim(app: &mut GuardedApp) {
    match &mut app.0 {
        Ok(app) => app.metadata.managed_fields = None,
        Err(invalid) => invalid.metadata.managed_fields = None,
    }
}

// The SparkApplication resource, as the watches and stores need it.
super::resource_as!(CompactApp, SparkApplication);

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = include_str!("../../tests/bench/sparkapplication.yaml");

    #[test]
    fn expands_to_the_app_it_was_read_from() {
        let app: SparkApplication = yaml_serde::from_str(APP).unwrap();
        let json = serde_json::to_vec(&app).unwrap();
        let compact: GuardedApp = serde_json::from_slice(&json).unwrap();
        let compact = compact.0.expect("readable");
        assert_eq!(compact.expand().unwrap(), app);
        let again = CompactApp::try_from(app.clone()).unwrap();
        assert_eq!(again.expand().unwrap(), app);
    }

    #[test]
    fn an_unreadable_spec_is_an_error_of_the_guard() {
        let json = serde_json::json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2",
            "kind": "SparkApplication",
            "metadata": {"name": "bad", "namespace": "ns"},
            "spec": {"type": 42},
        });
        let guarded: GuardedApp = serde_json::from_value(json).unwrap();
        let invalid = guarded.0.expect_err("unreadable spec");
        assert_eq!(invalid.metadata.name.as_deref(), Some("bad"));
    }
}
