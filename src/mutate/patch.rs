//! The JSON Patch between a pod and its mutated form, computed on the typed pods.
//!
//! A review must cost microseconds, and serialising two whole pods to `serde_json::Value` to diff
//! them is most of the cost of a naive diff. Here unchanged parts are skipped by a typed `==`;
//! only what changed is serialised and diffed. The big lists (containers, volumes, a container's
//! env and mounts) are compared element by element, so a mutation that appends three env
//! variables serialises those three variables, not the pod.
//!
//! Both sides are typed, so fields unknown to k8s-openapi are never touched: a patch never
//! removes what a newer apiserver sent.

use json_patch::jsonptr::{Pointer, PointerBuf};
use std::collections::BTreeMap;

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde::Serialize;

/// The patch that turns `old` into `new` (both typed; taken by value to split them cheaply).
pub fn diff_pod(mut old: Pod, mut new: Pod) -> Result<Patch, serde_json::Error> {
    let mut ops = Ops::default();
    let root = PointerBuf::new();
    match (old.spec.take(), new.spec.take()) {
        (Some(o), Some(n)) => ops.spec(&child(&root, "spec"), o, n)?,
        (o, n) => ops.option(&child(&root, "spec"), o, n)?,
    }
    let meta = child(&root, "metadata");
    let (om, nm) = (&mut old.metadata, &mut new.metadata);
    ops.strings(&child(&meta, "labels"), om.labels.take(), nm.labels.take())?;
    ops.strings(
        &child(&meta, "annotations"),
        om.annotations.take(),
        nm.annotations.take(),
    )?;
    ops.list(
        &child(&meta, "ownerReferences"),
        om.owner_references.take(),
        nm.owner_references.take(),
    )?;
    ops.whole(&root, &old, &new)?;
    Ok(Patch(ops.0))
}

/// `at` extended by one member name (escaped as JSON Pointer requires).
fn child(at: &Pointer, name: &str) -> PointerBuf {
    let mut p = at.to_buf();
    p.push_back(name);
    p
}

#[derive(Default)]
struct Ops(Vec<PatchOperation>);

impl Ops {
    fn spec(
        &mut self,
        at: &Pointer,
        mut o: PodSpec,
        mut n: PodSpec,
    ) -> Result<(), serde_json::Error> {
        let containers = (
            std::mem::take(&mut o.containers),
            std::mem::take(&mut n.containers),
        );
        self.containers(&child(at, "containers"), containers.0, containers.1)?;
        match (o.init_containers.take(), n.init_containers.take()) {
            (Some(oc), Some(nc)) => self.containers(&child(at, "initContainers"), oc, nc)?,
            (oc, nc) => self.option(&child(at, "initContainers"), oc, nc)?,
        }
        self.list(&child(at, "volumes"), o.volumes.take(), n.volumes.take())?;
        self.whole(at, &o, &n)
    }

    fn containers(
        &mut self,
        at: &Pointer,
        old: Vec<Container>,
        new: Vec<Container>,
    ) -> Result<(), serde_json::Error> {
        let common = old.len().min(new.len());
        let mut old = old.into_iter();
        let mut new = new.into_iter();
        for i in 0..common {
            let (o, n) = (old.next(), new.next());
            if let (Some(o), Some(n)) = (o, n)
                && o != n
            {
                self.container(&index(at, i), o, n)?;
            }
        }
        self.tail(at, common, old.count(), new.collect::<Vec<_>>())
    }

    fn container(
        &mut self,
        at: &Pointer,
        mut o: Container,
        mut n: Container,
    ) -> Result<(), serde_json::Error> {
        self.list(&child(at, "env"), o.env.take(), n.env.take())?;
        self.list(&child(at, "envFrom"), o.env_from.take(), n.env_from.take())?;
        self.list(
            &child(at, "volumeMounts"),
            o.volume_mounts.take(),
            n.volume_mounts.take(),
        )?;
        self.list(&child(at, "ports"), o.ports.take(), n.ports.take())?;
        self.whole(at, &o, &n)
    }

    /// A string map (labels, annotations), key by key.
    fn strings(
        &mut self,
        at: &Pointer,
        old: Option<BTreeMap<String, String>>,
        new: Option<BTreeMap<String, String>>,
    ) -> Result<(), serde_json::Error> {
        let (Some(o), Some(n)) = (&old, &new) else {
            return self.option(at, old, new);
        };
        for (key, value) in n {
            let op = match o.get(key) {
                Some(v) if v == value => continue,
                Some(_) => PatchOperation::Replace(ReplaceOperation {
                    path: child(at, key),
                    value: value.clone().into(),
                }),
                None => PatchOperation::Add(AddOperation {
                    path: child(at, key),
                    value: value.clone().into(),
                }),
            };
            self.0.push(op);
        }
        for key in o.keys().filter(|k| !n.contains_key(*k)) {
            self.0.push(PatchOperation::Remove(RemoveOperation {
                path: child(at, key),
            }));
        }
        Ok(())
    }

    /// An optional list, element by element when both sides have one.
    fn list<T: Serialize + PartialEq>(
        &mut self,
        at: &Pointer,
        old: Option<Vec<T>>,
        new: Option<Vec<T>>,
    ) -> Result<(), serde_json::Error> {
        match (old, new) {
            (Some(o), Some(n)) => {
                let common = o.len().min(n.len());
                for i in 0..common {
                    self.whole(&index(at, i), &o[i], &n[i])?;
                }
                let removed = o.len() - common;
                self.tail(at, common, removed, n.into_iter().skip(common).collect())
            }
            (o, n) => self.option(at, o, n),
        }
    }

    /// After `common` equal-position elements: removes the old extra ones (from the end, so
    /// indices stay valid), then appends the new ones.
    fn tail<T: Serialize>(
        &mut self,
        at: &Pointer,
        common: usize,
        removed: usize,
        added: Vec<T>,
    ) -> Result<(), serde_json::Error> {
        for i in (common..common + removed).rev() {
            self.0.push(PatchOperation::Remove(RemoveOperation {
                path: index(at, i),
            }));
        }
        for (i, value) in added.iter().enumerate() {
            self.0.push(PatchOperation::Add(AddOperation {
                path: index(at, common + i),
                value: serde_json::to_value(value)?,
            }));
        }
        Ok(())
    }

    /// An optional member: added, removed, or diffed.
    fn option<T: Serialize + PartialEq>(
        &mut self,
        at: &Pointer,
        old: Option<T>,
        new: Option<T>,
    ) -> Result<(), serde_json::Error> {
        match (old, new) {
            (None, None) => Ok(()),
            (Some(_), None) => {
                self.0.push(PatchOperation::Remove(RemoveOperation {
                    path: at.to_buf(),
                }));
                Ok(())
            }
            (None, Some(n)) => {
                self.0.push(PatchOperation::Add(AddOperation {
                    path: at.to_buf(),
                    value: serde_json::to_value(&n)?,
                }));
                Ok(())
            }
            (Some(o), Some(n)) => self.whole(at, &o, &n),
        }
    }

    /// Serialises and diffs both values, only if they differ.
    fn whole<T: Serialize + PartialEq>(
        &mut self,
        at: &Pointer,
        old: &T,
        new: &T,
    ) -> Result<(), serde_json::Error> {
        if old == new {
            return Ok(());
        }
        let diff = json_patch::diff(&serde_json::to_value(old)?, &serde_json::to_value(new)?);
        self.0.extend(diff.0.into_iter().map(|op| prefixed(at, op)));
        Ok(())
    }
}

fn index(at: &Pointer, i: usize) -> PointerBuf {
    let mut p = at.to_buf();
    p.push_back(i);
    p
}

fn prefixed(at: &Pointer, mut op: PatchOperation) -> PatchOperation {
    let path = match &mut op {
        PatchOperation::Add(o) => &mut o.path,
        PatchOperation::Remove(o) => &mut o.path,
        PatchOperation::Replace(o) => &mut o.path,
        PatchOperation::Move(o) => &mut o.path,
        PatchOperation::Copy(o) => &mut o.path,
        PatchOperation::Test(o) => &mut o.path,
    };
    *path = at.concat(path);
    op
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Applies `diff_pod(old, new)` to `old` as JSON and checks it gives `new`.
    fn round_trip(old: serde_json::Value, new: serde_json::Value) -> Patch {
        let typed = |v: &serde_json::Value| -> Pod { serde_json::from_value(v.clone()).unwrap() };
        let patch = diff_pod(typed(&old), typed(&new)).unwrap();
        let mut patched = serde_json::to_value(typed(&old)).unwrap();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert_eq!(
            patched,
            serde_json::to_value(typed(&new)).unwrap(),
            "{patch:?}"
        );
        patch
    }

    fn pod(containers: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": "p", "labels": {"a/b~c": "1", "gone": "x"}},
               "spec": {"containers": containers}})
    }

    #[test]
    fn equal_pods_give_an_empty_patch() {
        let p = pod(json!([{"name": "c", "env": [{"name": "A", "value": "1"}]}]));
        assert!(round_trip(p.clone(), p).0.is_empty());
    }

    #[test]
    fn lists_grow_shrink_and_change_in_place() {
        let old = pod(json!([
            {"name": "c", "env": [{"name": "A", "value": "1"}, {"name": "B"}, {"name": "C"}]},
            {"name": "side"}
        ]));
        let mut new = pod(json!([
            {"name": "c", "env": [{"name": "A", "value": "2"}],
             "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
            {"name": "side"}, {"name": "added", "image": "i"}
        ]));
        new["metadata"]["labels"] = json!({"a/b~c": "2", "new": "y"});
        new["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
        new["spec"]["initContainers"] = json!([{"name": "init"}]);
        new["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "K", "name": "n", "uid": "u"}]);
        let patch = round_trip(old, new);
        let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
        assert!(
            paths.contains(&"/metadata/labels/a~1b~0c".to_string()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"/spec/containers/2".to_string()),
            "{paths:?}"
        );
    }

    #[test]
    fn members_removed_and_pod_level_fields() {
        let mut old = pod(json!([{"name": "c", "ports": [{"containerPort": 1}]}]));
        old["spec"]["priority"] = json!(5);
        old["spec"]["volumes"] =
            json!([{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}]);
        let mut new = pod(json!([{"name": "c"}]));
        new["metadata"]["labels"] = json!(null);
        new["spec"]["priorityClassName"] = json!("high");
        new["spec"]["volumes"] = json!([{"name": "a", "emptyDir": {"medium": "Memory"}}]);
        new["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
        round_trip(old, new);
    }
}
