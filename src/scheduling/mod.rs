//! Gang scheduling: which batch scheduler an app uses, the group object created before its
//! driver (a Volcano or scheduler-plugins PodGroup), the marks its pods carry (group
//! annotation or label, YuniKorn's task groups and queue), and whether an app fits its
//! namespace's ResourceQuotas ([`quota`]). Pure: the reconciler creates and deletes the group,
//! the webhook looks up CRDs and quotas.
//!
//! As kubeflow's controller does (`internal/scheduler/*`), the marks are applied to the app
//! itself ([`prepare`]): the driver pod, the executor pod template and the webhook's executor
//! mutation all read the role's annotations, labels and scheduler from it, so the three agree.

pub mod quota;
pub mod resources;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde::Serialize;

use crate::crd::SparkApplication;
use crate::labels::{
    APP_NAME_LABEL, COSCHEDULING_POD_GROUP_LABEL, SUBMISSION_ID_LABEL, SparkRole,
    VOLCANO_GROUP_NAME_ANNOTATION, YUNIKORN_QUEUE_LABEL, YUNIKORN_TASK_GROUP_NAME_ANNOTATION,
    YUNIKORN_TASK_GROUPS_ANNOTATION,
};

pub const VOLCANO: &str = "volcano";
pub const YUNIKORN: &str = "yunikorn";

/// `--enable-batch-scheduler`, `--default-batch-scheduler`, `--kube-scheduler-names`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOptions {
    pub enabled: bool,
    /// For apps that name no `spec.batchScheduler`.
    pub default_scheduler: Option<String>,
    /// scheduler-plugins schedulers (coscheduling PodGroups).
    pub kube_scheduler_names: Vec<String>,
}

/// The integration a batch scheduler gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Volcano,
    YuniKorn,
    /// A kube-scheduler with scheduler-plugins' coscheduling (`--kube-scheduler-names`).
    Coscheduling,
}

/// The batch scheduler of one app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub name: String,
    pub kind: Kind,
}

impl Kind {
    /// The group object's API; YuniKorn has none (its groups are pod annotations).
    pub fn group_api(self) -> Option<ApiResource> {
        let (group, version) = match self {
            Kind::Volcano => ("scheduling.volcano.sh", "v1beta1"),
            Kind::Coscheduling => ("scheduling.x-k8s.io", "v1alpha1"),
            Kind::YuniKorn => return None,
        };
        Some(ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, "PodGroup"),
            "podgroups",
        ))
    }
}

impl BatchOptions {
    /// The batch scheduler `app` uses: `spec.batchScheduler`, else the default. `None`: plain
    /// scheduling (`spec.batchScheduler` then only names the pods' scheduler, as before).
    /// Refused, with the reason about `spec.batchScheduler`: Volcano or YuniKorn named while
    /// batch scheduling is off (the pods would wait for a group nobody creates), or a name that
    /// is not an enabled batch scheduler (kubeflow fails the submission then).
    pub fn choose(&self, app: &SparkApplication) -> Result<Option<Batch>, String> {
        let named = app
            .spec
            .batch_scheduler
            .as_deref()
            .filter(|s| !s.is_empty());
        if !self.enabled {
            return match named {
                Some(name @ (VOLCANO | YUNIKORN)) => Err(format!(
                    "{name:?} needs batch scheduling, which is not enabled in this operator (--enable-batch-scheduler): no {} would be created for the app's pods; remove the field or enable batch scheduling",
                    if name == VOLCANO {
                        "PodGroup"
                    } else {
                        "task groups"
                    }
                )),
                _ => Ok(None),
            };
        }
        let Some(name) = named.or(self.default_scheduler.as_deref().filter(|s| !s.is_empty()))
        else {
            return Ok(None);
        };
        let kind = match name {
            VOLCANO => Kind::Volcano,
            YUNIKORN => Kind::YuniKorn,
            n if self.kube_scheduler_names.iter().any(|k| k == n) => Kind::Coscheduling,
            _ => {
                let mut enabled = vec![VOLCANO.to_string(), YUNIKORN.to_string()];
                enabled.extend(self.kube_scheduler_names.iter().cloned());
                return Err(format!(
                    "{name:?} is not an enabled batch scheduler (enabled: {}; --kube-scheduler-names adds scheduler-plugins schedulers)",
                    enabled.join(", ")
                ));
            }
        };
        Ok(Some(Batch {
            name: name.to_string(),
            kind,
        }))
    }
}

/// The PodGroup name: kubeflow's, per scheduler (`spark-<app>-pg` for Volcano, `<app>-pg`
/// for scheduler-plugins). The same for every attempt: one attempt's group is deleted with it
/// before the next is created.
pub fn group_name(app: &SparkApplication, kind: Kind) -> String {
    let name = app.metadata.name.as_deref().unwrap_or_default();
    match kind {
        Kind::Volcano => format!("spark-{name}-pg"),
        _ => format!("{name}-pg"),
    }
}

/// `app` with its pods' batch-scheduling marks, as kubeflow's `Schedule` sets them before it
/// submits: the scheduler name on both roles; for Volcano the group annotation on both; for
/// scheduler-plugins the pod-group label on the app (so on both pods); for YuniKorn the
/// task-group annotations and the `queue` label (the task groups' sizes are those of the
/// defaulted app).
pub fn prepare(app: &SparkApplication, batch: &Batch) -> Result<SparkApplication, String> {
    let mut app = app.clone();
    app.spec.batch_scheduler = Some(batch.name.clone());
    match batch.kind {
        Kind::Volcano => {
            let group = group_name(&app, Kind::Volcano);
            for pod in [&mut app.spec.driver.pod, &mut app.spec.executor.pod] {
                pod.annotations
                    .insert(VOLCANO_GROUP_NAME_ANNOTATION.into(), group.clone());
            }
        }
        Kind::Coscheduling => {
            let group = group_name(&app, Kind::Coscheduling);
            app.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(COSCHEDULING_POD_GROUP_LABEL.into(), group);
        }
        Kind::YuniKorn => yunikorn(&mut app)?,
    }
    Ok(app)
}

/// One YuniKorn task group (the shim's JSON: kubeflow's field order and omissions).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskGroup<'a> {
    name: &'static str,
    min_member: u32,
    min_resource: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_selector: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "<[Toleration]>::is_empty")]
    tolerations: &'a [Toleration],
    #[serde(skip_serializing_if = "Option::is_none")]
    affinity: Option<&'a Affinity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
}

const DRIVER_TASK_GROUP: &str = "spark-driver";
const EXECUTOR_TASK_GROUP: &str = "spark-executor";

fn yunikorn(app: &mut SparkApplication) -> Result<(), String> {
    let queue = app
        .spec
        .batch_scheduler_options
        .as_ref()
        .and_then(|o| o.queue.clone());
    // Sizes as submission sees them: with kubeflow's defaults.
    let defaulted = app.with_defaults();
    let executors = resources::initial_executors(&defaulted);
    let mut groups = Vec::new();
    for role in [SparkRole::Driver, SparkRole::Executor] {
        // A minMember of 0 is not a valid task group: no executor group without executors.
        if role == SparkRole::Executor && executors == 0 {
            continue;
        }
        let request = resources::pod_request(&defaulted, role)?;
        let pod = match role {
            SparkRole::Driver => &app.spec.driver.pod,
            SparkRole::Executor => &app.spec.executor.pod,
        };
        let mut node_selector = app.spec.node_selector.clone();
        node_selector.extend(pod.node_selector.clone());
        // kubeflow's task group shares the role's label map, to which it then adds the queue
        // label: present when the role had labels, absent otherwise.
        let labels = (!pod.labels.is_empty()).then(|| {
            let mut labels = pod.labels.clone();
            if let Some(q) = &queue {
                labels.insert(YUNIKORN_QUEUE_LABEL.into(), q.clone());
            }
            labels
        });
        groups.push(TaskGroup {
            name: match role {
                SparkRole::Driver => DRIVER_TASK_GROUP,
                SparkRole::Executor => EXECUTOR_TASK_GROUP,
            },
            min_member: if role == SparkRole::Driver {
                1
            } else {
                executors
            },
            min_resource: BTreeMap::from([
                ("cpu", request.cpu),
                ("memory", format!("{}Mi", request.memory_mib)),
            ]),
            node_selector: (!node_selector.is_empty()).then_some(node_selector),
            tolerations: &pod.tolerations,
            affinity: pod.affinity.as_ref(),
            labels,
        });
    }
    let groups = serde_json::to_string(&groups).map_err(|e| e.to_string())?;
    for (role, pod) in [
        (DRIVER_TASK_GROUP, &mut app.spec.driver.pod),
        (EXECUTOR_TASK_GROUP, &mut app.spec.executor.pod),
    ] {
        pod.scheduler_name = Some(YUNIKORN.into());
        pod.annotations
            .insert(YUNIKORN_TASK_GROUP_NAME_ANNOTATION.into(), role.into());
        if let Some(q) = &queue {
            pod.labels.insert(YUNIKORN_QUEUE_LABEL.into(), q.clone());
        }
    }
    // The definition is read from the originating pod only: the driver.
    app.spec
        .driver
        .pod
        .annotations
        .insert(YUNIKORN_TASK_GROUPS_ANNOTATION.into(), groups);
    Ok(())
}

/// The PodGroup of one attempt (Volcano or scheduler-plugins; `None` for YuniKorn), owned by
/// the app and labelled with the attempt's submission id, as kubeflow creates it: one member
/// (the driver), the resources of the driver and its initial executors (for Volcano
/// `batchSchedulerOptions.resources` instead when set, plus its queue and priority class).
pub fn group(
    app: &SparkApplication,
    batch: &Batch,
    submission_id: &str,
) -> Result<Option<DynamicObject>, String> {
    let Some(api) = batch.kind.group_api() else {
        return Ok(None);
    };
    let options = app.spec.batch_scheduler_options.as_ref();
    let reserved = options
        .map(|o| &o.resources)
        .filter(|r| !r.is_empty() && batch.kind == Kind::Volcano);
    let min_resources = match reserved {
        Some(r) => serde_json::to_value(r).map_err(|e| e.to_string())?,
        None => {
            let total = resources::total(&app.with_defaults())?;
            serde_json::json!({
                "cpu": resources::cpu_quantity(total.cpu_milli),
                "memory": format!("{}Mi", total.memory_mib),
            })
        }
    };
    let mut spec = serde_json::json!({"minMember": 1, "minResources": min_resources});
    if batch.kind == Kind::Volcano {
        if let Some(q) = options.and_then(|o| o.queue.as_ref()) {
            spec["queue"] = q.as_str().into();
        }
        if let Some(p) = options.and_then(|o| o.priority_class_name.as_ref()) {
            spec["priorityClassName"] = p.as_str().into();
        }
    }
    let name = app.metadata.name.clone().unwrap_or_default();
    let mut object = DynamicObject::new(&group_name(app, batch.kind), &api).data(
        if batch.kind == Kind::Volcano {
            serde_json::json!({"spec": spec, "status": {"phase": "Pending"}})
        } else {
            serde_json::json!({ "spec": spec })
        },
    );
    object.metadata.namespace = app.metadata.namespace.clone();
    object.metadata.labels = Some(BTreeMap::from([
        (APP_NAME_LABEL.to_string(), name.clone()),
        (SUBMISSION_ID_LABEL.to_string(), submission_id.to_string()),
    ]));
    object.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "sparkoperator.k8s.io/v1beta2".into(),
        kind: "SparkApplication".into(),
        name,
        uid: app.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    Ok(Some(object))
}

/// Admission warnings for `batchSchedulerOptions` fields the chosen scheduler does not read
/// (kubeflow ignores them the same way): said, not silently dropped.
pub fn unused_options(app: &SparkApplication, batch: Option<&Batch>) -> Vec<String> {
    let Some(options) = &app.spec.batch_scheduler_options else {
        return Vec::new();
    };
    let set = [
        ("queue", options.queue.is_some()),
        ("priorityClassName", options.priority_class_name.is_some()),
        ("resources", !options.resources.is_empty()),
    ];
    let used: &[&str] = match batch.map(|b| b.kind) {
        None => &[],
        Some(Kind::Volcano) => &["queue", "priorityClassName", "resources"],
        Some(Kind::YuniKorn) => &["queue"],
        Some(Kind::Coscheduling) => &[],
    };
    let who = batch.map_or("no batch scheduler".to_string(), |b| {
        format!("batch scheduler {:?}", b.name)
    });
    set.iter()
        .filter(|(field, is_set)| *is_set && !used.contains(field))
        .map(|(field, _)| {
            format!("spec.batchSchedulerOptions.{field} is not used with {who} and is ignored")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(extra: serde_json::Value) -> SparkApplication {
        let mut base = serde_json::json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "pi", "namespace": "ns", "uid": "u-1"},
            "spec": {"type": "Scala", "sparkVersion": "3.5.3", "mainApplicationFile": "local:///x.jar",
                     "driver": {"cores": 1, "memory": "1g"},
                     "executor": {"cores": 1, "memory": "1g", "instances": 2}}
        });
        for (k, v) in extra.as_object().unwrap() {
            base["spec"][k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn enabled() -> BatchOptions {
        BatchOptions {
            enabled: true,
            default_scheduler: None,
            kube_scheduler_names: vec!["scheduler-plugins-scheduler".into()],
        }
    }

    #[test]
    fn the_scheduler_is_named_or_defaulted_and_unknown_or_disabled_ones_are_refused() {
        let named = |n: &str| app(serde_json::json!({"batchScheduler": n}));
        let kind = |o: &BatchOptions, a: &SparkApplication| o.choose(a).map(|b| b.map(|b| b.kind));
        assert_eq!(kind(&enabled(), &named("volcano")), Ok(Some(Kind::Volcano)));
        assert_eq!(
            kind(&enabled(), &named("scheduler-plugins-scheduler")),
            Ok(Some(Kind::Coscheduling))
        );
        let err = enabled().choose(&named("kueue")).unwrap_err();
        assert!(err.contains("\"kueue\" is not an enabled batch scheduler (enabled: volcano, yunikorn, scheduler-plugins-scheduler"), "{err}");
        assert_eq!(kind(&enabled(), &app(serde_json::json!({}))), Ok(None));
        let defaulted = BatchOptions {
            default_scheduler: Some("yunikorn".into()),
            ..enabled()
        };
        assert_eq!(
            kind(&defaulted, &app(serde_json::json!({}))),
            Ok(Some(Kind::YuniKorn))
        );
        // Off: Volcano and YuniKorn refused, any other name is a plain scheduler name.
        let off = BatchOptions::default();
        let err = off.choose(&named("volcano")).unwrap_err();
        assert!(err.contains("--enable-batch-scheduler"), "{err}");
        assert_eq!(kind(&off, &named("my-scheduler")), Ok(None));
    }

    #[test]
    fn volcano_pod_group_has_kubeflows_fields() {
        let a = app(serde_json::json!({
            "batchScheduler": "volcano",
            "batchSchedulerOptions": {"queue": "q1", "priorityClassName": "high"},
        }));
        let b = enabled().choose(&a).unwrap().unwrap();
        let pg = group(&a, &b, "sub-1").unwrap().unwrap();
        assert_eq!(pg.metadata.name.as_deref(), Some("spark-pi-pg"));
        assert_eq!(
            pg.types.as_ref().unwrap().api_version,
            "scheduling.volcano.sh/v1beta1"
        );
        // 1 core + 1g driver, two 1 core + 1g executors (384Mi minimum overhead each).
        assert_eq!(
            pg.data["spec"],
            serde_json::json!({"minMember": 1, "minResources": {"cpu": "3", "memory": "4224Mi"},
                               "queue": "q1", "priorityClassName": "high"})
        );
        let owner = &pg.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u-1", Some(true)));
        assert_eq!(pg.metadata.labels.unwrap()[SUBMISSION_ID_LABEL], "sub-1");
        let reserved = app(serde_json::json!({
            "batchScheduler": "volcano",
            "batchSchedulerOptions": {"resources": {"cpu": "10", "memory": "32Gi"}},
        }));
        let pg = group(&reserved, &b, "s").unwrap().unwrap();
        assert_eq!(
            pg.data["spec"]["minResources"],
            serde_json::json!({"cpu": "10", "memory": "32Gi"})
        );
        let prepared = prepare(&a, &b).unwrap();
        for pod in [&prepared.spec.driver.pod, &prepared.spec.executor.pod] {
            assert_eq!(
                pod.annotations[VOLCANO_GROUP_NAME_ANNOTATION],
                "spark-pi-pg"
            );
        }
    }

    #[test]
    fn coscheduling_pod_group_and_label() {
        let a = app(
            serde_json::json!({"batchScheduler": "scheduler-plugins-scheduler",
            "batchSchedulerOptions": {"queue": "q"}}),
        );
        let b = enabled().choose(&a).unwrap().unwrap();
        let pg = group(&a, &b, "s").unwrap().unwrap();
        assert_eq!(pg.metadata.name.as_deref(), Some("pi-pg"));
        assert_eq!(
            pg.types.as_ref().unwrap().api_version,
            "scheduling.x-k8s.io/v1alpha1"
        );
        assert_eq!(
            pg.data,
            serde_json::json!({"spec": {"minMember": 1, "minResources": {"cpu": "3", "memory": "4224Mi"}}})
        );
        let prepared = prepare(&a, &b).unwrap();
        assert_eq!(
            prepared.metadata.labels.unwrap()[COSCHEDULING_POD_GROUP_LABEL],
            "pi-pg"
        );
        assert_eq!(
            unused_options(&a, Some(&b)),
            vec![
                "spec.batchSchedulerOptions.queue is not used with batch scheduler \"scheduler-plugins-scheduler\" and is ignored"
            ]
        );
    }

    #[test]
    fn yunikorn_task_groups_as_kubeflow_writes_them() {
        let a = app(serde_json::json!({
            "batchScheduler": "yunikorn",
            "batchSchedulerOptions": {"queue": "root.spark"},
            "driver": {"cores": 1, "memory": "1g", "labels": {"team": "a"}},
            "executor": {"coreRequest": "500m", "memory": "2g", "instances": 3,
                         "nodeSelector": {"disk": "ssd"}},
        }));
        let b = enabled().choose(&a).unwrap().unwrap();
        assert!(group(&a, &b, "s").unwrap().is_none());
        let p = prepare(&a, &b).unwrap();
        let (d, e) = (&p.spec.driver.pod, &p.spec.executor.pod);
        assert_eq!(
            d.annotations[YUNIKORN_TASK_GROUPS_ANNOTATION],
            r#"[{"name":"spark-driver","minMember":1,"minResource":{"cpu":"1","memory":"1408Mi"},"labels":{"queue":"root.spark","team":"a"}},{"name":"spark-executor","minMember":3,"minResource":{"cpu":"500m","memory":"2432Mi"},"nodeSelector":{"disk":"ssd"}}]"#
        );
        assert_eq!(
            d.annotations[YUNIKORN_TASK_GROUP_NAME_ANNOTATION],
            "spark-driver"
        );
        assert_eq!(
            e.annotations[YUNIKORN_TASK_GROUP_NAME_ANNOTATION],
            "spark-executor"
        );
        assert!(!e.annotations.contains_key(YUNIKORN_TASK_GROUPS_ANNOTATION));
        for pod in [d, e] {
            assert_eq!(pod.labels[YUNIKORN_QUEUE_LABEL], "root.spark");
            assert_eq!(pod.scheduler_name.as_deref(), Some("yunikorn"));
        }
        // No executors at start: no executor task group.
        let none =
            app(serde_json::json!({"batchScheduler": "yunikorn", "executor": {"instances": 0}}));
        let p = prepare(&none, &b).unwrap();
        assert!(
            !p.spec.driver.pod.annotations[YUNIKORN_TASK_GROUPS_ANNOTATION]
                .contains("spark-executor")
        );
    }
}
