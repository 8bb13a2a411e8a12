//! How SparkApplications are cached: metadata and status as types, the spec as compact JSON
//! text compressed as an LZ4 block, read back into its type for each reconcile.
//!
//! Every app sits in the cache for its whole life, and a typed `SparkApplicationSpec` is large
//! however little it holds: k8s-openapi's volume, affinity, security context, ... types keep
//! every optional field inline, so the bench's 4 KiB spec takes ~35 KiB of memory as a type,
//! 4.1 KiB as text and 2.3 KiB as an LZ4 block of that text (JSON repeats its keys; LZ4 packs
//! or unpacks 4 KiB in a few microseconds, against the ~100 µs of reading the text into its
//! type). Each spec is packed alone: the saving does not rely on apps sharing anything. The
//! spec is still read as its type when it arrives, so an app our types cannot read is an error
//! of the watch (`DeserializeGuard`) exactly as before, and reading the block back, which our
//! own serialisation wrote, cannot fail on it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DeserializeGuard;
use serde::{Deserialize, Deserializer};

use crate::crd::{SparkApplication, SparkApplicationSpec, SparkApplicationStatus};

/// A cached app, or the error that made it unreadable (with its metadata).
pub type GuardedApp = DeserializeGuard<CompactApp>;

/// A SparkApplication with its spec kept as an LZ4 block of its JSON text.
#[derive(Clone, Debug, Deserialize)]
pub struct CompactApp {
    pub metadata: ObjectMeta,
    #[serde(deserialize_with = "spec_packed")]
    spec: Box<[u8]>,
    #[serde(default)]
    pub status: Option<SparkApplicationStatus>,
}

/// Reads the spec as its type (refusing what the type refuses), keeps it packed.
fn spec_packed<'de, D: Deserializer<'de>>(d: D) -> Result<Box<[u8]>, D::Error> {
    pack(&SparkApplicationSpec::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// The spec's compact JSON as an LZ4 block, its length first.
fn pack(spec: &SparkApplicationSpec) -> Result<Box<[u8]>, serde_json::Error> {
    let json = serde_json::to_vec(spec)?;
    Ok(lz4_flex::compress_prepend_size(&json).into_boxed_slice())
}

impl CompactApp {
    /// The app as it was read, spec included.
    pub fn expand(&self) -> Result<SparkApplication, serde_json::Error> {
        let json = lz4_flex::decompress_size_prepended(&self.spec)
            .map_err(<serde_json::Error as serde::de::Error>::custom)?;
        Ok(SparkApplication {
            metadata: self.metadata.clone(),
            spec: serde_json::from_slice(&json)?,
            status: self.status.clone(),
        })
    }
}

impl TryFrom<SparkApplication> for CompactApp {
    type Error = serde_json::Error;

    fn try_from(app: SparkApplication) -> Result<Self, Self::Error> {
        Ok(CompactApp {
            spec: pack(&app.spec)?,
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
        // What each cached app costs: the packed spec, well under its JSON text.
        let text = serde_json::to_vec(&app.spec).unwrap().len();
        assert!(
            compact.spec.len() * 3 < text * 2,
            "packed spec {} bytes, its text {text}",
            compact.spec.len()
        );
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
