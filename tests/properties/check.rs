//! The properties every pod mutation must have, checked on any (app, role, pod) triple.
//!
//! Shared by the property tests (`tests/properties.rs`, proptest generators) and the fuzz
//! targets (`fuzz/`, `arbitrary` generators), which include this file by path.
#![allow(dead_code)]

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;
use spark_webhook::crd::SparkApplication;
use spark_webhook::labels::SparkRole;
use spark_webhook::mutate::{MutateError, MutationOptions, mutate_pod, pod_patch};

/// What the mutation did with a pod whose properties all hold.
#[derive(Debug)]
pub enum Checked {
    /// Mutated; the patch has this many operations.
    Mutated { ops: usize },
    /// Refused (the webhook denies the pod with this error).
    Refused(MutateError),
}

/// Runs [`pod_patch`] and [`mutate_pod`] on `pod_json` and checks:
///
/// 1. both agree (same error, or both succeed);
/// 2. the patch applies to `pod_json` and yields exactly the serialised mutated pod (exactly as
///    JSON when `pod_json` is a serialised `Pod`; as a typed `Pod` when it has fields unknown to
///    k8s-openapi, which the patch must leave alone);
/// 3. mutating twice equals mutating once, and the mutated pod's patch is empty;
/// 4. no duplicate is introduced: volume names, container names (containers and init
///    containers), and per container that was already there, mount paths and env names;
/// 5. every patch path under `/metadata/labels` or `/metadata/annotations` names, once
///    unescaped (RFC 6901: `~1` is `/`, `~0` is `~`), a key of the mutated (or, for a remove,
///    the original) map.
///
/// Returns a description of the first property that fails.
pub fn check(
    app: &SparkApplication,
    role: SparkRole,
    pod_json: &Value,
    opts: &MutationOptions,
) -> Result<Checked, String> {
    let result = pod_patch(app, role, pod_json, opts);
    let Ok(original) = serde_json::from_value::<Pod>(pod_json.clone()) else {
        return match result {
            Err(e @ MutateError::InvalidPod { .. }) => Ok(Checked::Refused(e)),
            other => Err(format!("a pod that is not a Pod gave {other:?}")),
        };
    };
    let mut mutated = original.clone();
    let direct = mutate_pod(app, role, &mut mutated, opts);
    let has_metadata = pod_json.get("metadata").is_some_and(Value::is_object);
    let patch = match (result, direct) {
        (Err(e), _) if !has_metadata => return Ok(Checked::Refused(e)),
        (Err(e), Err(d)) if e == d => return Ok(Checked::Refused(e)),
        (Ok(patch), Ok(())) => patch,
        (r, d) => return Err(format!("pod_patch gave {r:?} but mutate_pod gave {d:?}")),
    };

    // 2. The patch turns the input into the mutated pod.
    let expected = serde_json::to_value(&mutated).map_err(|e| e.to_string())?;
    let mut patched = pod_json.clone();
    json_patch::patch(&mut patched, &patch)
        .map_err(|e| format!("the patch does not apply: {e}\npatch: {patch:?}"))?;
    let canonical = serde_json::to_value(&original).map_err(|e| e.to_string())? == *pod_json;
    if canonical {
        if patched != expected {
            return Err(format!(
                "patched input != mutated pod\npatch: {}\npatched: {patched}\nexpected: {expected}",
                serde_json::to_string(&patch).unwrap_or_default()
            ));
        }
    } else {
        let typed: Pod = serde_json::from_value(patched.clone())
            .map_err(|e| format!("the patched pod is no longer a Pod: {e}"))?;
        if typed != mutated {
            return Err(format!(
                "patched input (typed) != mutated pod\npatch: {}\npatched: {patched}\nexpected: {expected}",
                serde_json::to_string(&patch).unwrap_or_default()
            ));
        }
    }

    // 3. Idempotence.
    let mut twice = mutated.clone();
    mutate_pod(app, role, &mut twice, opts)
        .map_err(|e| format!("mutating the mutated pod fails: {e}"))?;
    if twice != mutated {
        return Err(format!(
            "mutating twice != mutating once\nonce: {expected}\ntwice: {}",
            serde_json::to_value(&twice).unwrap_or_default()
        ));
    }
    let again = pod_patch(app, role, &expected, opts)
        .map_err(|e| format!("the mutated pod is refused: {e}"))?;
    if !again.0.is_empty() {
        return Err(format!("the mutated pod still gets a patch: {again:?}"));
    }

    // 4. No duplicates introduced.
    no_new_duplicates(&original, &mutated)?;

    // 5. Label and annotation keys are escaped in the patch's paths.
    for op in &patch.0 {
        let path = op.path();
        let tokens: Vec<String> = path.tokens().map(|t| t.decoded().into_owned()).collect();
        let [meta, map, key] = tokens.as_slice() else {
            continue;
        };
        if meta != "metadata" || !matches!(map.as_str(), "labels" | "annotations") {
            continue;
        }
        let keys = |p: &Pod| -> BTreeSet<String> {
            let m = if map == "labels" {
                &p.metadata.labels
            } else {
                &p.metadata.annotations
            };
            m.iter().flatten().map(|(k, _)| k.clone()).collect()
        };
        let side = match op {
            json_patch::PatchOperation::Remove(_) => keys(&original),
            _ => keys(&mutated),
        };
        if !side.contains(key) {
            return Err(format!(
                "patch path {path} decodes to {map} key {key:?}, which is not a key of the pod"
            ));
        }
    }
    Ok(Checked::Mutated { ops: patch.0.len() })
}

/// Property 4: what was free of duplicates stays so.
pub fn no_new_duplicates(original: &Pod, mutated: &Pod) -> Result<(), String> {
    let (Some(before), Some(after)) = (&original.spec, &mutated.spec) else {
        return Ok(());
    };
    let volumes = |s: &k8s_openapi::api::core::v1::PodSpec| -> Vec<String> {
        s.volumes.iter().flatten().map(|v| v.name.clone()).collect()
    };
    introduced("volume name", &volumes(before), &volumes(after))?;
    let names = |s: &k8s_openapi::api::core::v1::PodSpec| -> Vec<String> {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .map(|c| c.name.clone())
            .collect()
    };
    introduced("container name", &names(before), &names(after))?;
    for (i, (b, a)) in before.containers.iter().zip(&after.containers).enumerate() {
        let mounts = |c: &Container| -> Vec<String> {
            c.volume_mounts
                .iter()
                .flatten()
                .map(|m| normalize_path(&m.mount_path).to_string())
                .collect()
        };
        introduced(
            &format!("mount path in containers[{i}]"),
            &mounts(b),
            &mounts(a),
        )?;
        let env = |c: &Container| -> Vec<String> {
            c.env.iter().flatten().map(|e| e.name.clone()).collect()
        };
        introduced(&format!("env name in containers[{i}]"), &env(b), &env(a))?;
    }
    Ok(())
}

fn introduced(what: &str, before: &[String], after: &[String]) -> Result<(), String> {
    if duplicate(before).is_some() {
        return Ok(());
    }
    match duplicate(after) {
        Some(dup) => Err(format!("duplicate {what} {dup:?} introduced: {after:?}")),
        None => Ok(()),
    }
}

fn duplicate(items: &[String]) -> Option<&String> {
    let mut seen = BTreeSet::new();
    items.iter().find(|i| !seen.insert(i.as_str()))
}

/// `/a/b/` and `/a/b` are one mount point (as the mutation treats them).
fn normalize_path(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" if path.starts_with('/') => "/",
        trimmed => trimmed,
    }
}

/// RFC 6901 escaping of one reference token.
pub fn escape_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// While the known bugs stand, generators steer around them so that the properties test
/// everything else:
///
/// 1. A sidecar named like the Spark container (Spark's default name for the role, or the
///    role's sparkConf `podTemplateContainerName`) becomes the Spark container on a second
///    mutation, so mutating is not idempotent. Reproduced by the ignored tests
///    `sidecar_named_like_*` in tests/properties.rs.
/// 2. Two ports the app declares for a role (its `ports`, and the Prometheus port when the
///    role exposes metrics) under one name with different numbers or protocols, on a pod that
///    already has the first one's number under another name: the first mutation lets the
///    pod's port stand for the first and adds the second under that name; the second mutation
///    refuses the pod (PortConflict). Reproduced by the ignored tests `port_name_declared_*`.
///
/// Set to false once both are fixed.
pub const SIDESTEP_KNOWN_BUGS: bool = false;

/// Changes what [`SIDESTEP_KNOWN_BUGS`] is about in a generated app (as JSON): renames the
/// sidecars and role ports concerned.
pub fn sidestep_known_bugs(app: &mut Value) {
    if !SIDESTEP_KNOWN_BUGS {
        return;
    }
    let conf = app["spec"]["sparkConf"].clone();
    let prometheus = &app["spec"]["monitoring"]["prometheus"];
    let prometheus_port = prometheus["portName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("jmx-exporter")
        .to_string();
    for role in ["driver", "executor"] {
        if let Some(ports) = app["spec"][role]["ports"].as_array_mut() {
            let mut names = BTreeSet::from([prometheus_port.clone()]);
            for (i, port) in ports.iter_mut().enumerate() {
                let name = port["name"].as_str().unwrap_or("").to_string();
                if !name.is_empty() && !names.insert(name.clone()) {
                    port["name"] = Value::String(format!("{name}-{i}"));
                }
            }
        }
        let template = conf[format!("spark.kubernetes.{role}.podTemplateContainerName")]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Some(sidecars) = app["spec"][role]["sidecars"].as_array_mut() else {
            continue;
        };
        for sidecar in sidecars {
            let name = sidecar["name"].as_str().unwrap_or("");
            let clash = name == template
                || matches!(
                    name,
                    "spark-kubernetes-driver" | "spark-kubernetes-executor" | "executor"
                );
            if clash {
                sidecar["name"] = Value::String(format!("{name}-sidecar"));
            }
        }
    }
}
