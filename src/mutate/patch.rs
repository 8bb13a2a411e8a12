//! The JSON Patch of a mutation, from the fields the rules wrote ([`super::edit`]) alone.
//!
//! A review must cost microseconds: diffing two whole pods (cloning one, comparing both,
//! serialising what differs to `serde_json::Value`) cost more than the rules themselves. Here
//! only the fields a rule wrote are compared with their originals, lists element by element
//! (a mutation that appends three env variables yields three operations), and values are
//! serialised once, straight to the JSON text the answer carries.
//!
//! Both sides are typed, so fields unknown to k8s-openapi are never touched: a patch never
//! removes what a newer apiserver sent. Objects that changed inside (a security context, the
//! resources) are diffed member by member for the same reason.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use k8s_openapi::api::core::v1::{EnvVar, Pod};

use super::edit::{FieldVisitor, Saved, SavedEnv, SavedLen, SavedStrings};

/// A JSON Patch (RFC 6902) of add, remove and replace operations, kept as the JSON text the
/// answer carries: every operation is written there as it is found, values serialised once.
#[derive(Clone, Debug, Default)]
pub struct PodPatch {
    /// The JSON array; empty (not `[]`) when there is no operation.
    json: Vec<u8>,
    ops: usize,
}

#[derive(Clone, Copy, Debug)]
enum OpKind {
    Add,
    Remove,
    Replace,
}

impl PodPatch {
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    pub fn len(&self) -> usize {
        self.ops
    }

    /// The patch as a JSON array (`[]` when empty).
    pub fn json(&self) -> &[u8] {
        if self.json.is_empty() {
            b"[]"
        } else {
            &self.json
        }
    }

    /// The patch as a JSON array (`[]` when empty), without a copy.
    pub fn into_json(self) -> Vec<u8> {
        if self.json.is_empty() {
            b"[]".to_vec()
        } else {
            self.json
        }
    }

    /// The same operations as a [`json_patch::Patch`] (to apply it, or inspect its operations).
    pub fn to_json_patch(&self) -> Result<json_patch::Patch, serde_json::Error> {
        serde_json::from_slice(self.json())
    }
}

/// The patch from the originals of the fields written (`saved`) to `pod` as it now is;
/// `container` is the Spark container's index.
pub(crate) fn from_saved(
    saved: &Saved,
    pod: &Pod,
    container: usize,
) -> Result<PodPatch, serde_json::Error> {
    let mut ops = Ops::default();
    if let Some(s) = &saved.spec {
        let spec = pod.spec.as_ref();
        if s.absent {
            ops.add("/spec", &spec)?;
        } else if let Some(spec) = spec {
            if let Some(c) = spec.containers.get(container) {
                let at = indexed("/spec/containers", container);
                let saved = &s.spark;
                ops.env(&at, saved.env.as_ref(), &c.env)?;
                ops.appended(&at, "envFrom", saved.env_from, &c.env_from)?;
                ops.appended(&at, "volumeMounts", saved.volume_mounts, &c.volume_mounts)?;
                ops.appended(&at, "ports", saved.ports, &c.ports)?;
                ops.member(&at, "lifecycle", &saved.lifecycle, &c.lifecycle)?;
                ops.member(&at, "resources", &saved.resources, &c.resources)?;
                let sc = &saved.security_context;
                ops.member(&at, "securityContext", sc, &c.security_context)?;
            }
            ops.elements_after("/spec/containers", s.containers, &spec.containers)?;
            let init = s.init_containers;
            ops.appended("/spec", "initContainers", init, &spec.init_containers)?;
            ops.appended("/spec", "volumes", s.volumes, &spec.volumes)?;
            ops.appended("/spec", "hostAliases", s.host_aliases, &spec.host_aliases)?;
            ops.appended("/spec", "tolerations", s.tolerations, &spec.tolerations)?;
            s.each_field(spec, &mut SpecFields(&mut ops))?;
        }
    }
    let meta = &pod.metadata;
    ops.strings("labels", saved.labels.as_ref(), &meta.labels)?;
    ops.strings("annotations", saved.annotations.as_ref(), &meta.annotations)?;
    let refs = &saved.owner_references;
    ops.list("/metadata", "ownerReferences", refs, &meta.owner_references)?;
    Ok(ops.finish())
}

/// The spec's plain fields, each diffed as a member of `/spec`.
struct SpecFields<'a>(&'a mut Ops);

impl FieldVisitor for SpecFields<'_> {
    fn field<T: Serialize + PartialEq>(
        &mut self,
        json_name: &str,
        old: &Option<T>,
        new: &Option<T>,
    ) -> Result<(), serde_json::Error> {
        self.0.member("/spec", json_name, &Some(old), new)
    }
}

/// The operations written so far, as the JSON array's text without its closing bracket.
#[derive(Default)]
struct Ops {
    json: Vec<u8>,
    count: usize,
}

impl Ops {
    fn push(
        &mut self,
        kind: OpKind,
        path: &str,
        value: Option<&impl Serialize>,
    ) -> Result<(), serde_json::Error> {
        if self.json.is_empty() {
            // A heavy driver's patch is ~6 KiB: grown from 4 KiB once at most, not four times.
            self.json.reserve(4096);
        }
        self.json.push(if self.count == 0 { b'[' } else { b',' });
        self.json.extend_from_slice(match kind {
            OpKind::Add => br#"{"op":"add","path":"#,
            OpKind::Remove => br#"{"op":"remove","path":"#,
            OpKind::Replace => br#"{"op":"replace","path":"#,
        });
        serde_json::to_writer(&mut self.json, path)?;
        if let Some(value) = value {
            self.json.extend_from_slice(br#","value":"#);
            serde_json::to_writer(&mut self.json, value)?;
        }
        self.json.push(b'}');
        self.count += 1;
        Ok(())
    }

    fn add(&mut self, path: &str, value: &impl Serialize) -> Result<(), serde_json::Error> {
        self.push(OpKind::Add, path, Some(value))
    }

    fn remove(&mut self, path: &str) -> Result<(), serde_json::Error> {
        self.push(OpKind::Remove, path, None::<&()>)
    }

    fn finish(mut self) -> PodPatch {
        if self.count > 0 {
            self.json.push(b']');
        }
        PodPatch {
            json: self.json,
            ops: self.count,
        }
    }

    /// Member `name` of the object at `at`, written when `saved` is `Some` (holding the
    /// original): added, removed, or diffed member by member.
    fn member<T: Serialize + PartialEq, O: std::borrow::Borrow<Option<T>>>(
        &mut self,
        at: &str,
        name: &str,
        saved: &Option<O>,
        new: &Option<T>,
    ) -> Result<(), serde_json::Error> {
        let Some(old) = saved else { return Ok(()) };
        match (old.borrow(), new) {
            (None, None) => Ok(()),
            (Some(_), None) => self.remove(&child(at, name)),
            (None, Some(n)) => self.add(&child(at, name), n),
            (Some(o), Some(n)) => self.whole(&child(at, name), o, n),
        }
    }

    /// List `name` of the object at `at`, written when `saved` is `Some`: element by element
    /// when both sides have one (changed elements diffed, old extra ones removed from the end,
    /// new ones appended).
    fn list<T: Serialize + PartialEq, O: std::borrow::Borrow<Option<Vec<T>>>>(
        &mut self,
        at: &str,
        name: &str,
        saved: &Option<O>,
        new: &Option<Vec<T>>,
    ) -> Result<(), serde_json::Error> {
        let Some(old) = saved else { return Ok(()) };
        let (Some(o), Some(n)) = (old.borrow(), new) else {
            return self.member(at, name, saved, new);
        };
        if o == n {
            return Ok(());
        }
        let at = child(at, name);
        let common = o.len().min(n.len());
        for (i, (o, n)) in o.iter().zip(n).enumerate() {
            if o != n {
                self.whole(&indexed(&at, i), o, n)?;
            }
        }
        for i in (common..o.len()).rev() {
            self.remove(&indexed(&at, i))?;
        }
        self.elements_after(&at, common, n)
    }

    /// The env of the container at `at`: the elements replaced, diffed, then those appended.
    fn env(
        &mut self,
        at: &str,
        saved: Option<&SavedEnv>,
        new: &Option<Vec<EnvVar>>,
    ) -> Result<(), serde_json::Error> {
        match saved {
            None => Ok(()),
            Some(SavedEnv::Whole(original)) => self.list(at, "env", &Some(original), new),
            Some(SavedEnv::Edited { len, replaced }) => {
                // The editor leaves a list whenever it was handed out.
                let Some(new) = new else { return Ok(()) };
                let Some(len) = len else {
                    return self.add(&child(at, "env"), new);
                };
                let at = child(at, "env");
                for (&i, old) in replaced {
                    self.whole(&indexed(&at, i), old, &new[i])?;
                }
                self.elements_after(&at, *len, new)
            }
        }
    }

    /// List `name` of the object at `at`, which was only appended to (`saved`: its original
    /// length, `Some(None)` when absent): added whole, or its new elements one by one.
    fn appended<T: Serialize>(
        &mut self,
        at: &str,
        name: &str,
        saved: SavedLen,
        new: &Option<Vec<T>>,
    ) -> Result<(), serde_json::Error> {
        let (Some(original), Some(new)) = (saved, new) else {
            return Ok(());
        };
        match original {
            None => self.add(&child(at, name), new),
            Some(kept) if new.len() > kept => self.elements_after(&child(at, name), kept, new),
            Some(_) => Ok(()),
        }
    }

    /// The elements of the list at `at` from index `from` on, each added at its index.
    fn elements_after<T: Serialize>(
        &mut self,
        at: &str,
        from: usize,
        list: &[T],
    ) -> Result<(), serde_json::Error> {
        for (i, value) in list.iter().enumerate().skip(from) {
            self.add(&indexed(at, i), value)?;
        }
        Ok(())
    }

    /// A string map of the metadata (labels, annotations): added whole when the pod had none,
    /// else the keys set, each added or replaced unless it kept its value.
    fn strings(
        &mut self,
        name: &str,
        saved: Option<&SavedStrings>,
        new: &Option<BTreeMap<String, String>>,
    ) -> Result<(), serde_json::Error> {
        // The editor leaves a map whenever it was handed out.
        let (Some(saved), Some(new)) = (saved, new) else {
            return Ok(());
        };
        let at = child("/metadata", name);
        if saved.absent {
            return self.add(&at, new);
        }
        for (key, old) in &saved.set {
            let (kind, value) = match (old, new.get(key)) {
                (Some(old), Some(value)) if old == value => continue,
                (Some(_), Some(value)) => (OpKind::Replace, Some(value)),
                (None, Some(value)) => (OpKind::Add, Some(value)),
                (Some(_), None) => (OpKind::Remove, None),
                (None, None) => continue,
            };
            self.push(kind, &child(&at, key), value)?;
        }
        Ok(())
    }

    /// Two values of one place, member by member when they differ.
    fn whole<T: Serialize + PartialEq>(
        &mut self,
        at: &str,
        old: &T,
        new: &T,
    ) -> Result<(), serde_json::Error> {
        if old == new {
            return Ok(());
        }
        let (old, new) = (serde_json::to_value(old)?, serde_json::to_value(new)?);
        self.values(&mut at.to_string(), &old, &new)
    }

    /// The operations that turn `old` into `new` at `at`, written straight into the patch:
    /// objects member by member, lists element by element (changed ones diffed, extra old
    /// ones removed from the end, new ones appended), anything else replaced. `at` is
    /// extended in place for each member and restored before returning.
    fn values(
        &mut self,
        at: &mut String,
        old: &Value,
        new: &Value,
    ) -> Result<(), serde_json::Error> {
        let len = at.len();
        match (old, new) {
            (Value::Object(o), Value::Object(n)) => {
                for (key, value) in n {
                    push_token(at, key);
                    match o.get(key) {
                        Some(old) => self.values(at, old, value)?,
                        None => self.add(at, value)?,
                    }
                    at.truncate(len);
                }
                for key in o.keys().filter(|k| !n.contains_key(*k)) {
                    push_token(at, key);
                    self.remove(at)?;
                    at.truncate(len);
                }
            }
            (Value::Array(o), Value::Array(n)) => {
                for (i, (o, n)) in o.iter().zip(n).enumerate() {
                    push_index(at, i);
                    self.values(at, o, n)?;
                    at.truncate(len);
                }
                for i in (n.len()..o.len()).rev() {
                    push_index(at, i);
                    self.remove(at)?;
                    at.truncate(len);
                }
                self.elements_after(at, o.len(), n)?;
            }
            _ if old != new => self.push(OpKind::Replace, at, Some(new))?,
            _ => {}
        }
        Ok(())
    }
}

/// `at` extended by a list index.
fn indexed(at: &str, index: usize) -> String {
    let mut path = String::with_capacity(at.len() + 4);
    path.push_str(at);
    push_index(&mut path, index);
    path
}

/// `at` extended by one member name (see [`push_token`]).
fn child(at: &str, name: &str) -> String {
    let mut path = String::with_capacity(at.len() + name.len() + 1);
    path.push_str(at);
    push_token(&mut path, name);
    path
}

/// Appends `/index` to a JSON Pointer.
fn push_index(path: &mut String, index: usize) {
    path.push('/');
    path.push_str(itoa::Buffer::new().format(index));
}

/// Appends one member name to a JSON Pointer, escaped as it requires (`~` and `/`).
fn push_token(path: &mut String, name: &str) {
    path.push('/');
    if !name.contains(['~', '/']) {
        path.push_str(name);
        return;
    }
    for c in name.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(
            child("/metadata/labels", "a/b~c"),
            "/metadata/labels/a~1b~0c"
        );
        assert_eq!(child("", "spec"), "/spec");
    }

    #[test]
    fn changed_values_are_diffed_member_by_member_and_element_by_element() {
        let old = serde_json::json!({
            "keep": 1, "gone": true, "a/b": {"x": "1", "y": "2"},
            "list": [{"n": 1}, {"n": 2}, {"n": 3}], "short": [1], "kind": {"k": 1}
        });
        let new = serde_json::json!({
            "keep": 1, "new": null, "a/b": {"x": "1", "y": "3"},
            "list": [{"n": 1}, {"n": 9}], "short": [1, 2], "kind": [1]
        });
        let mut ops = Ops::default();
        ops.whole("/spec/x", &old, &new).unwrap();
        let patch = ops.finish();
        let text = std::str::from_utf8(patch.json()).unwrap();
        for op in [
            r#"{"op":"replace","path":"/spec/x/a~1b/y","value":"3"}"#,
            r#"{"op":"replace","path":"/spec/x/list/1/n","value":9}"#,
            r#"{"op":"remove","path":"/spec/x/list/2"}"#,
            r#"{"op":"add","path":"/spec/x/short/1","value":2}"#,
            r#"{"op":"replace","path":"/spec/x/kind","value":[1]}"#,
            r#"{"op":"remove","path":"/spec/x/gone"}"#,
        ] {
            assert!(text.contains(op), "{op} missing from {text}");
        }
        assert_eq!(patch.len(), 7, "{text}");
        let mut doc = serde_json::json!({"spec": {"x": old}});
        json_patch::patch(&mut doc, &patch.to_json_patch().unwrap()).unwrap();
        assert_eq!(doc["spec"]["x"], new);
    }

    #[test]
    fn operations_serialise_as_rfc_6902() {
        let mut ops = Ops::default();
        ops.add("/a", &serde_json::json!({"x": 1})).unwrap();
        ops.remove("/b\"c").unwrap();
        let patch = ops.finish();
        assert_eq!(patch.len(), 2);
        assert_eq!(
            std::str::from_utf8(patch.json()).unwrap(),
            r#"[{"op":"add","path":"/a","value":{"x":1}},{"op":"remove","path":"/b\"c"}]"#
        );
        assert_eq!(Ops::default().finish().json(), b"[]");
    }
}
