//! The `sparkoperator.k8s.io/v1beta2` SparkApplication API, wire compatible with kubeflow's Go
//! Spark Operator, and the CustomResourceDefinition generated from it.
//!
//! - [`SparkApplication`] is the resource (derived from [`SparkApplicationSpec`] in [`spec`]).
//! - [`ScheduledSparkApplication`] runs a SparkApplicationSpec on a schedule ([`scheduled`]).
//! - [`SparkConnect`] (v1alpha1) is a Spark Connect server with its executors ([`connect`]).
//! - [`defaults`] fills in what kubeflow's defaulter fills in, on a copy.
//! - [`patch`] is the controllers' status write: a merge patch held to the version read.
//! - [`crd()`] / [`crd_yaml()`] (and the `scheduled_` and `connect_` pairs) give the CRDs,
//!   post-processed so they install on
//!   kube-apiserver 1.20+ and stays small enough for client-side `kubectl apply`.

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

pub mod connect;
pub mod defaults;
pub mod patch;
pub mod scheduled;
pub mod spec;
pub mod status;

pub use connect::*;
pub use scheduled::*;
pub use spec::*;
pub use status::*;

/// Schema overrides used by `#[schemars(schema_with = ...)]` in [`spec`].
mod schema {
    use schemars::{Schema, SchemaGenerator, json_schema};

    /// An object whose content the API server neither validates nor prunes. Used for large
    /// embedded core types (PodTemplateSpec, Affinity) whose full schema would push the CRD
    /// past what client-side `kubectl apply` can store.
    pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }

    /// A list of such objects (Container, Volume lists).
    pub fn preserve_unknown_list(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "array",
            "items": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
            },
        })
    }
}

impl SparkApplication {
    /// The labels a role's pods take from the app: the app's own (but Kueue's, which belong to
    /// the app alone), then the role's `labels`, which win where both set a key.
    pub fn pod_labels<'a>(
        &'a self,
        role: &'a std::collections::BTreeMap<String, String>,
    ) -> impl Iterator<Item = (&'a String, &'a String)> {
        let own = self.metadata.labels.iter().flatten();
        own.filter(|(key, _)| !key.starts_with(crate::labels::KUEUE_LABEL_PREFIX))
            .chain(role)
    }
}

/// `Display` writes the wire value (`as_str()`), e.g. `SUBMISSION_FAILED`, `in-cluster-client`.
macro_rules! display_as_str {
    ($($ty:ty),* $(,)?) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(
    SparkApplicationType,
    DeployMode,
    RestartPolicyType,
    SecretType,
    ApplicationStateType,
    DriverState,
    ExecutorState,
);

/// The SparkApplication CRD as installed in clusters.
///
/// Starts from kube's derived CRD and rewrites the schema into a structural one that
/// kube-apiserver 1.20 accepts: no `$ref`/`definitions`, no `anyOf`/`oneOf`/`allOf`/`not`, no
/// `default`s (the Go CRD has none, and the API server would write them into stored objects),
/// no CEL rules, and a `type` on every node that is not int-or-string or preserve-unknown.
pub fn crd() -> CustomResourceDefinition {
    structural(SparkApplication::crd())
}

/// The ScheduledSparkApplication CRD as installed in clusters, made structural as [`crd()`].
pub fn scheduled_crd() -> CustomResourceDefinition {
    structural(ScheduledSparkApplication::crd())
}

/// [`scheduled_crd()`] as YAML, what is committed under `manifests/crd/`.
pub fn scheduled_crd_yaml() -> String {
    yaml_serde::to_string(&scheduled_crd())
        .expect("a CustomResourceDefinition always serialises to YAML")
}

/// The SparkConnect CRD as installed in clusters, made structural as [`crd()`].
pub fn connect_crd() -> CustomResourceDefinition {
    structural(SparkConnect::crd())
}

/// [`connect_crd()`] as YAML, what is committed under `manifests/crd/`.
pub fn connect_crd_yaml() -> String {
    yaml_serde::to_string(&connect_crd())
        .expect("a CustomResourceDefinition always serialises to YAML")
}

/// All CRDs as one YAML stream: what `spark-webhook crds` prints.
pub fn crds_yaml() -> String {
    format!(
        "{}---\n{}---\n{}",
        crd_yaml(),
        scheduled_crd_yaml(),
        connect_crd_yaml()
    )
}

fn structural(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(root) = version
            .schema
            .as_mut()
            .and_then(|v| v.open_api_v3_schema.as_mut())
        {
            make_structural(root);
        }
    }
    crd
}

/// [`crd()`] as YAML, exactly what `spark-webhook crds` prints and what is committed under
/// `manifests/crd/`. Deterministic: every map in the CRD is ordered.
pub fn crd_yaml() -> String {
    // Serialising a CRD cannot fail: all map keys are strings and there are no non-finite floats.
    yaml_serde::to_string(&crd()).expect("a CustomResourceDefinition always serialises to YAML")
}

/// Recursively rewrites one schema node (see [`crd()`]).
fn make_structural(node: &mut JSONSchemaProps) {
    // Keywords a 1.20 structural schema must not carry (or that Go's CRD does not use).
    node.ref_path = None;
    node.schema = None;
    node.definitions = None;
    node.default = None;
    node.x_kubernetes_validations = None;
    node.unique_items = None;
    node.title = None;
    node.example = None;
    node.id = None;

    // Value-dependent structure is not allowed; Option<T> leftovers are the only expected
    // source. Keep the single non-null alternative's content, drop the rest.
    for alternatives in [node.any_of.take(), node.one_of.take(), node.all_of.take()]
        .into_iter()
        .flatten()
    {
        for mut alt in alternatives {
            let is_null_only = alt.type_.as_deref() == Some("null")
                || alt
                    .enum_
                    .as_ref()
                    .is_some_and(|e| e.iter().all(|v| v.0.is_null()));
            if is_null_only {
                node.nullable = Some(true);
                continue;
            }
            make_structural(&mut alt);
            merge_into(node, alt);
        }
    }
    node.not = None;

    if node.x_kubernetes_int_or_string == Some(true) {
        // Structural int-or-string: no type (or an integer/string anyOf, which we do not need).
        node.type_ = None;
    } else if node.type_.is_none() {
        if node.properties.is_some() || node.additional_properties.is_some() {
            node.type_ = Some("object".into());
        } else if node.items.is_some() {
            node.type_ = Some("array".into());
        }
    }

    if let Some(props) = node.properties.as_mut() {
        props.values_mut().for_each(make_structural);
    }
    match node.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => make_structural(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(make_structural),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = node.additional_properties.as_mut() {
        make_structural(extra);
    }
}

/// Copies the validation-relevant parts of `from` into `into` where `into` has none.
fn merge_into(into: &mut JSONSchemaProps, from: JSONSchemaProps) {
    macro_rules! fill {
        ($($field:ident),*) => {$(
            if into.$field.is_none() {
                into.$field = from.$field;
            }
        )*};
    }
    fill!(
        type_,
        format,
        description,
        enum_,
        properties,
        required,
        items,
        additional_properties,
        minimum,
        maximum,
        pattern,
        nullable,
        x_kubernetes_int_or_string,
        x_kubernetes_preserve_unknown_fields,
        x_kubernetes_list_type,
        x_kubernetes_list_map_keys,
        x_kubernetes_map_type,
        x_kubernetes_embedded_resource
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(json: serde_json::Value) -> JSONSchemaProps {
        serde_json::from_value(json).expect("valid JSONSchemaProps")
    }

    #[test]
    fn option_any_of_collapses_to_nullable_typed_node() {
        let mut node = props(serde_json::json!({
            "description": "an optional thing",
            "default": null,
            "anyOf": [
                {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}},
                {"enum": [null]},
            ],
        }));
        make_structural(&mut node);
        assert_eq!(node.any_of, None);
        assert_eq!(node.default, None);
        assert_eq!(node.type_.as_deref(), Some("object"));
        assert_eq!(node.nullable, Some(true));
        assert_eq!(node.description.as_deref(), Some("an optional thing"));
        let a = &node.properties.as_ref().expect("properties")["a"];
        assert_eq!(a.default, None);
        assert_eq!(a.type_.as_deref(), Some("string"));
    }

    #[test]
    fn banned_keywords_are_removed_and_types_inferred() {
        let mut node = props(serde_json::json!({
            "$ref": "#/definitions/X",
            "title": "X",
            "x-kubernetes-validations": [{"rule": "self.a == 1"}],
            "properties": {
                "list": {"items": {"type": "integer"}, "uniqueItems": true},
                "q": {"type": "string", "x-kubernetes-int-or-string": true},
            },
        }));
        make_structural(&mut node);
        assert_eq!(node.ref_path, None);
        assert_eq!(node.title, None);
        assert_eq!(node.x_kubernetes_validations, None);
        assert_eq!(node.type_.as_deref(), Some("object"));
        let p = node.properties.as_ref().expect("properties");
        assert_eq!(p["list"].type_.as_deref(), Some("array"));
        assert_eq!(p["list"].unique_items, None);
        assert_eq!(p["q"].type_, None);
    }

    #[test]
    fn crd_yaml_is_stable() {
        assert_eq!(crd_yaml(), crd_yaml());
    }
}
