//! The parts of a pod the rules read and write, read from a review without the rest.
//!
//! A pod reaching the webhook carries `metadata.managedFields` (a second outline of the whole
//! pod, which k8s-openapi reads into `serde_json::Value`s) and a status: neither is read by any
//! rule nor written by the patch, so reading them typed is wasted work on every review. Unread
//! members are skipped by the JSON parser without being built.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Deserialize;

/// A pod's metadata identity, labels, annotations and owners, and its spec.
#[derive(Debug, Default, Deserialize)]
pub struct PodParts {
    #[serde(default)]
    pub metadata: Option<MetaParts>,
    #[serde(default)]
    pub spec: Option<PodSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaParts {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub generate_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub owner_references: Option<Vec<OwnerReference>>,
}

impl PodParts {
    /// The typed pod the rules work on (every other field empty).
    pub fn into_pod(self) -> Pod {
        let m = self.metadata.unwrap_or_default();
        Pod {
            metadata: ObjectMeta {
                name: m.name,
                generate_name: m.generate_name,
                namespace: m.namespace,
                labels: m.labels,
                annotations: m.annotations,
                owner_references: m.owner_references,
                ..ObjectMeta::default()
            },
            spec: self.spec,
            status: None,
        }
    }
}
