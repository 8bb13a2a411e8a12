//! The pod as the rules change it: every field a rule may write is reached through an accessor
//! that keeps the field's original value the first time it is written, so the JSON patch is
//! the difference of those fields alone ([`super::patch`]), never of two whole pods.
//!
//! Lists the rules only append to (containers, volumes, mounts, ports, tolerations, ...) record
//! their original length instead of a copy, and are handed out as an [`Appender`], which can
//! read and append but not change what was there; the Spark container's env, which the rules
//! only set variables on, records its length and the elements replaced ([`EnvEditor`]); labels
//! and annotations, which they only set keys on, record those keys' old values
//! ([`StringsEditor`]).
//! Reading goes through [`PodEdit::pod`], which records nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EnvFromSource, EnvVar, HostAlias, Lifecycle, Pod,
    PodDNSConfig, PodSecurityContext, PodSpec, ResourceRequirements, SecurityContext, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Serialize;

/// Keeps `field`'s current value in `slot` unless it was kept already; returns `field`.
fn keep<'a, T: Clone>(slot: &mut Option<T>, field: &'a mut T) -> &'a mut T {
    if slot.is_none() {
        *slot = Some(field.clone());
    }
    field
}

/// Records `list`'s original length in `slot` (`Some(None)`: it was absent) unless recorded
/// already; returns it, created empty when absent, to append to.
fn keep_len<'a, T>(slot: &mut SavedLen, list: &'a mut Option<Vec<T>>) -> Appender<'a, T> {
    if slot.is_none() {
        *slot = Some(list.as_ref().map(Vec::len));
    }
    Appender(list.get_or_insert_with(Vec::new))
}

/// A list the rules may read and append to, never change in place: its patch is the
/// elements after its original length.
pub(crate) struct Appender<'a, T>(&'a mut Vec<T>);

impl<T> Appender<'_, T> {
    pub fn push(&mut self, value: T) {
        self.0.push(value);
    }

    /// Room for `additional` more, so large elements are moved once.
    pub fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }
}

impl<T> std::ops::Deref for Appender<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.0
    }
}

/// The original length of an appended list: `None` untouched, `Some(None)` absent.
pub(crate) type SavedLen = Option<Option<usize>>;

/// The pod being mutated, and the original values of what the rules have written so far.
pub(crate) struct PodEdit<'p> {
    pod: &'p mut Pod,
    /// Index of the Spark container in `spec.containers`.
    container: usize,
    saved: Saved,
    /// Room to reserve in `spec.volumes` when the rules first take it.
    volume_room: usize,
}

/// Original values of the fields written (`Some` once written; the inner value is the
/// original, itself optional when the field is).
#[derive(Default)]
pub(crate) struct Saved {
    pub labels: Option<SavedStrings>,
    pub annotations: Option<SavedStrings>,
    pub owner_references: Option<Option<Vec<OwnerReference>>>,
    /// Set once anything in the spec is written.
    pub spec: Option<SavedSpec>,
}

/// Generates the spec's plain fields: their saved originals and their accessors.
macro_rules! spec_fields {
    ($($field:ident: $ty:ty => $json:literal),* $(,)?) => {
        /// Original values of the spec's fields written so far.
        #[derive(Default)]
        pub(crate) struct SavedSpec {
            /// The pod had no spec: it is added whole.
            pub absent: bool,
            /// `spec.containers` held this many containers (later ones were appended).
            pub containers: usize,
            pub spark: SavedContainer,
            pub init_containers: SavedLen,
            pub volumes: SavedLen,
            pub host_aliases: SavedLen,
            pub tolerations: SavedLen,
            $(pub $field: Option<Option<$ty>>,)*
        }

        impl SavedSpec {
            /// Hands every plain field written to `visitor`: its JSON name, original and current value.
            pub fn each_field(
                &self,
                spec: &PodSpec,
                visitor: &mut impl FieldVisitor,
            ) -> Result<(), serde_json::Error> {
                $(if let Some(old) = &self.$field {
                    visitor.field($json, old, &spec.$field)?;
                })*
                Ok(())
            }
        }

        impl PodEdit<'_> {
            $(
                pub fn $field(&mut self) -> &mut Option<$ty> {
                    let (spec, saved) = self.spec();
                    keep(&mut saved.$field, &mut spec.$field)
                }
            )*
        }
    };
}

// In JSON name order: the patch lists them in this order.
spec_fields! {
    affinity: Affinity => "affinity",
    dns_config: PodDNSConfig => "dnsConfig",
    dns_policy: String => "dnsPolicy",
    enable_service_links: bool => "enableServiceLinks",
    host_network: bool => "hostNetwork",
    node_selector: BTreeMap<String, String> => "nodeSelector",
    preemption_policy: String => "preemptionPolicy",
    priority: i32 => "priority",
    priority_class_name: String => "priorityClassName",
    scheduler_name: String => "schedulerName",
    security_context: PodSecurityContext => "securityContext",
    share_process_namespace: bool => "shareProcessNamespace",
    termination_grace_period_seconds: i64 => "terminationGracePeriodSeconds",
}

/// What [`SavedSpec::each_field`] hands every plain spec field written to.
pub(crate) trait FieldVisitor {
    fn field<T: Serialize + PartialEq>(
        &mut self,
        json_name: &str,
        old: &Option<T>,
        new: &Option<T>,
    ) -> Result<(), serde_json::Error>;
}

/// The original of the Spark container's env. The rules only set variables (replacing one in
/// place, or appending), so the original is its length and the few elements replaced, not a
/// copy of a list that can hold a hundred variables; a copy is taken only when a rule drops
/// an original element (a duplicate that would shadow the one it sets).
pub(crate) enum SavedEnv {
    /// Only replaced in place and appended to: the original length (`None`: absent) and the
    /// originals of the elements replaced, by index.
    Edited {
        len: Option<usize>,
        replaced: BTreeMap<usize, EnvVar>,
    },
    /// An original element was dropped: the whole original list.
    Whole(Option<Vec<EnvVar>>),
}

impl SavedEnv {
    /// The original list, rebuilt from `current` (for [`SavedEnv::Edited`]).
    fn original(&self, current: &[EnvVar]) -> Option<Vec<EnvVar>> {
        match self {
            SavedEnv::Whole(original) => original.clone(),
            SavedEnv::Edited { len, replaced } => len.map(|len| {
                let mut original = current[..len].to_vec();
                for (&i, old) in replaced {
                    original[i] = old.clone();
                }
                original
            }),
        }
    }
}

/// The Spark container's env, to set variables on.
pub(crate) struct EnvEditor<'a> {
    list: &'a mut Vec<EnvVar>,
    saved: &'a mut SavedEnv,
}

impl EnvEditor<'_> {
    /// Sets `var`, replacing a variable of the same name in place (the app wins, as it does
    /// at runtime in kubeflow, whose appended duplicate shadows the earlier one). Later
    /// duplicates of that name, which would shadow it, are dropped.
    pub fn upsert(&mut self, var: EnvVar) {
        let env = &mut *self.list;
        let Some(first) = env.iter().position(|e| e.name == var.name) else {
            env.push(var);
            return;
        };
        if env[first + 1..].iter().any(|e| e.name == var.name) {
            if let SavedEnv::Edited { .. } = self.saved {
                *self.saved = SavedEnv::Whole(self.saved.original(env));
            }
            let mut index = 0;
            env.retain(|e| {
                let keep = index <= first || e.name != var.name;
                index += 1;
                keep
            });
        }
        if let SavedEnv::Edited {
            len: Some(len),
            replaced,
        } = self.saved
            && first < *len
        {
            replaced.entry(first).or_insert_with(|| env[first].clone());
        }
        env[first] = var;
    }
}

/// The original of a metadata string map (labels, annotations). The rules only set keys, so
/// the original is the value each key set had before (`None`: it had none), not a copy of a
/// map that can hold dozens of entries.
pub(crate) struct SavedStrings {
    /// The pod had no such map: it is added whole.
    pub absent: bool,
    pub set: BTreeMap<String, Option<String>>,
}

/// A metadata string map, to set keys on.
pub(crate) struct StringsEditor<'a> {
    map: &'a mut BTreeMap<String, String>,
    saved: &'a mut SavedStrings,
}

impl StringsEditor<'_> {
    /// Sets `key` to `value`; the pod's value, if any, is replaced.
    pub fn insert(&mut self, key: String, value: String) {
        let old = self.map.insert(key.clone(), value);
        self.saved.set.entry(key).or_insert(old);
    }
}

/// Keeps whether `map` was absent in `slot` unless kept already; returns its editor, the map
/// created empty when absent.
fn strings<'a>(
    slot: &'a mut Option<SavedStrings>,
    map: &'a mut Option<BTreeMap<String, String>>,
) -> StringsEditor<'a> {
    let saved = slot.get_or_insert_with(|| SavedStrings {
        absent: map.is_none(),
        set: BTreeMap::new(),
    });
    StringsEditor {
        map: map.get_or_insert_with(BTreeMap::new),
        saved,
    }
}

/// Original values of the Spark container's fields written so far.
#[derive(Default)]
pub(crate) struct SavedContainer {
    pub env: Option<SavedEnv>,
    pub env_from: SavedLen,
    pub volume_mounts: SavedLen,
    pub ports: SavedLen,
    pub lifecycle: Option<Option<Lifecycle>>,
    pub resources: Option<Option<ResourceRequirements>>,
    pub security_context: Option<Option<SecurityContext>>,
}

impl<'p> PodEdit<'p> {
    /// `container`: the Spark container's index in `spec.containers`; `volume_room`: the most
    /// volumes the rules may add (the list grows once, when first taken).
    pub fn new(pod: &'p mut Pod, container: usize, volume_room: usize) -> Self {
        PodEdit {
            pod,
            container,
            saved: Saved::default(),
            volume_room,
        }
    }

    /// The pod as it stands (reading records nothing).
    pub fn pod(&self) -> &Pod {
        self.pod
    }

    /// The original values of everything written, and the pod as it now is.
    pub fn finish(self) -> (Saved, &'p Pod, usize) {
        (self.saved, self.pod, self.container)
    }

    pub fn labels(&mut self) -> StringsEditor<'_> {
        strings(&mut self.saved.labels, &mut self.pod.metadata.labels)
    }

    pub fn annotations(&mut self) -> StringsEditor<'_> {
        strings(
            &mut self.saved.annotations,
            &mut self.pod.metadata.annotations,
        )
    }

    pub fn owner_references(&mut self) -> &mut Vec<OwnerReference> {
        keep(
            &mut self.saved.owner_references,
            &mut self.pod.metadata.owner_references,
        )
        .get_or_insert_with(Vec::new)
    }

    /// The spec (created empty when missing) and its saved originals.
    fn spec(&mut self) -> (&mut PodSpec, &mut SavedSpec) {
        let absent = self.pod.spec.is_none();
        let saved = self.saved.spec.get_or_insert_with(|| SavedSpec {
            absent,
            containers: self.pod.spec.as_ref().map_or(0, |s| s.containers.len()),
            ..SavedSpec::default()
        });
        (self.pod.spec.get_or_insert_with(PodSpec::default), saved)
    }

    pub fn volumes(&mut self) -> Appender<'_, Volume> {
        let room = std::mem::take(&mut self.volume_room);
        let (spec, saved) = self.spec();
        let mut volumes = keep_len(&mut saved.volumes, &mut spec.volumes);
        volumes.reserve(room);
        volumes
    }

    pub fn init_containers(&mut self) -> Appender<'_, Container> {
        let (spec, saved) = self.spec();
        keep_len(&mut saved.init_containers, &mut spec.init_containers)
    }

    pub fn host_aliases(&mut self) -> Appender<'_, HostAlias> {
        let (spec, saved) = self.spec();
        keep_len(&mut saved.host_aliases, &mut spec.host_aliases)
    }

    pub fn tolerations(&mut self) -> Appender<'_, Toleration> {
        let (spec, saved) = self.spec();
        keep_len(&mut saved.tolerations, &mut spec.tolerations)
    }

    /// Appends a container after the existing ones (the Spark container keeps its index).
    pub fn push_container(&mut self, container: Container) {
        self.spec().0.containers.push(container);
    }

    /// The Spark container, to write; `None` should it be gone.
    pub fn spark_container(&mut self) -> Option<SparkContainer<'_>> {
        let index = self.container;
        let (spec, saved) = self.spec();
        Some(SparkContainer {
            container: spec.containers.get_mut(index)?,
            saved: &mut saved.spark,
        })
    }
}

/// The Spark container, written through accessors that keep the originals.
pub(crate) struct SparkContainer<'a> {
    container: &'a mut Container,
    saved: &'a mut SavedContainer,
}

impl SparkContainer<'_> {
    pub fn get(&self) -> &Container {
        self.container
    }

    pub fn env(&mut self) -> EnvEditor<'_> {
        let list = &mut self.container.env;
        let saved = self.saved.env.get_or_insert_with(|| SavedEnv::Edited {
            len: list.as_ref().map(Vec::len),
            replaced: BTreeMap::new(),
        });
        EnvEditor {
            list: list.get_or_insert_with(Vec::new),
            saved,
        }
    }

    pub fn env_from(&mut self) -> Appender<'_, EnvFromSource> {
        keep_len(&mut self.saved.env_from, &mut self.container.env_from)
    }

    pub fn volume_mounts(&mut self) -> Appender<'_, VolumeMount> {
        keep_len(
            &mut self.saved.volume_mounts,
            &mut self.container.volume_mounts,
        )
    }

    pub fn ports(&mut self) -> Appender<'_, ContainerPort> {
        keep_len(&mut self.saved.ports, &mut self.container.ports)
    }

    pub fn lifecycle(&mut self) -> &mut Option<Lifecycle> {
        keep(&mut self.saved.lifecycle, &mut self.container.lifecycle)
    }

    pub fn resources(&mut self) -> &mut Option<ResourceRequirements> {
        keep(&mut self.saved.resources, &mut self.container.resources)
    }

    pub fn security_context(&mut self) -> &mut Option<SecurityContext> {
        keep(
            &mut self.saved.security_context,
            &mut self.container.security_context,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn pairs(env: &[EnvVar]) -> Vec<(&str, &str)> {
        env.iter()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn env_upserts_replace_in_place_drop_shadows_and_keep_the_original() {
        let original = vec![var("A", "1"), var("B", "2"), var("A", "3"), var("C", "4")];
        let mut list = original.clone();
        let mut saved = SavedEnv::Edited {
            len: Some(original.len()),
            replaced: BTreeMap::new(),
        };
        let mut env = EnvEditor {
            list: &mut list,
            saved: &mut saved,
        };
        env.upsert(var("B", "9"));
        env.upsert(var("D", "5"));
        env.upsert(var("D", "6"));
        assert!(matches!(env.saved, SavedEnv::Edited { .. }));
        assert_eq!(env.saved.original(env.list), Some(original.clone()));
        // A=3 would shadow the A set here: dropped, and the original is then kept whole.
        env.upsert(var("A", "7"));
        assert_eq!(
            pairs(&list),
            [("A", "7"), ("B", "9"), ("C", "4"), ("D", "6")]
        );
        assert!(matches!(saved, SavedEnv::Whole(_)));
        assert_eq!(saved.original(&list), Some(original));
    }

    #[test]
    fn string_maps_keep_the_first_original_of_each_key_set() {
        let mut labels = Some(BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]));
        let mut slot = None;
        let mut editor = strings(&mut slot, &mut labels);
        editor.insert("a".into(), "9".into());
        editor.insert("a".into(), "8".into());
        editor.insert("c".into(), "3".into());
        let saved = slot.expect("kept on the first set");
        assert!(!saved.absent);
        assert_eq!(
            saved.set,
            BTreeMap::from([
                ("a".to_string(), Some("1".to_string())),
                ("c".to_string(), None)
            ])
        );
        let mut absent = None;
        let mut slot = None;
        strings(&mut slot, &mut absent).insert("x".into(), "1".into());
        assert!(slot.is_some_and(|s| s.absent));
        assert_eq!(absent.map(|m| m.len()), Some(1));
    }
}
