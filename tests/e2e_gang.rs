//! Gang scheduling and ResourceQuota enforcement on the real kube-apiserver, with the batch
//! schedulers' own published PodGroup CRDs installed (tests/fixtures/batch-schedulers/). The
//! schedulers themselves do not run here: these tests prove the objects and marks kubeflow
//! would create, their ownership and cleanup, and the webhook's refusals.
//!
//! Only `the_coscheduling_*` test installs the scheduler-plugins CRD, after checking the refusal
//! without it (tests run in parallel on one apiserver, and CRDs are cluster-wide: no other test
//! may install it). The Volcano CRD is also installed by tests/e2e_rbac.rs.

mod common;

use std::time::Duration;

use common::{Served, eventually, install_crd, namespace, wait_pod, wait_state};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use spark_webhook::certs::{files::generate, issue::CertOptions};
use spark_webhook::crd::SparkApplication;

const WAIT: Duration = Duration::from_secs(30);
const EXECUTOR: &str = include_str!("fixtures/executor-pod.json");

fn app(ns: &str, name: &str, extra: Value) -> Value {
    let mut app = json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": "Scala", "mode": "cluster", "sparkVersion": "3.3.4", "image": "spark:3.3.4",
            "mainClass": "org.apache.spark.examples.SparkPi",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "restartPolicy": {"type": "Never"},
            "driver": {"cores": 1, "memory": "1g", "serviceAccount": "spark"},
            "executor": {"instances": 2, "cores": 1, "memory": "1g"}
        }
    });
    for (k, v) in extra.as_object().expect("object") {
        app["spec"][k] = v.clone();
    }
    app
}

fn start(ns: &str, extra: &[&str]) -> (Served, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let mut args = vec!["--driver-start-timeout", "0s", "--leader-election=false"];
    args.extend_from_slice(extra);
    (Served::start(ns, tmp.path(), &args), tmp)
}

/// `kubectl apply` of `obj`: Ok, or the refusal's text.
fn apply(obj: &Value) -> Result<(), String> {
    let out = common::kubectl_stdin(&["apply", "-f", "-"], Some(&obj.to_string()));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn pod_groups(client: &kube::Client, ns: &str, group: &str, version: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, "PodGroup"),
        "podgroups",
    );
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// The executor pod template native submission shipped for the driver.
async fn executor_template(client: &kube::Client, ns: &str, submission_id: &str) -> Pod {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let lp = kube::api::ListParams::default().labels(&format!(
        "sparkoperator.k8s.io/submission-id={submission_id}"
    ));
    let map = maps
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .find_map(|m| m.data?.get("executor-pod-template.yaml").cloned())
        .expect("the executor pod template");
    yaml_serde::from_str(&map).expect("template YAML")
}

/// An executor pod as Spark's driver would create it from a template of its own (no marks):
/// the webhook gives it the app's batch-scheduling marks.
async fn webhook_executor(pods: &Api<Pod>, ns: &str, app_name: &str) -> Pod {
    let mut v: Value = serde_json::from_str(EXECUTOR).unwrap();
    let meta = v["metadata"].as_object_mut().unwrap();
    meta.remove("uid");
    meta.remove("creationTimestamp");
    meta.insert("name".into(), format!("{app_name}-exec-1").into());
    meta.insert("namespace".into(), ns.into());
    v["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = app_name.into();
    v.as_object_mut().unwrap().remove("status");
    pods.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
        .await
        .expect("executor created")
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.annotations().get(key).map(String::as_str)
}

/// Volcano: the PodGroup kubeflow creates (`spark-<app>-pg`, one member, the driver and
/// executors' resources, queue and priority class), owned by the app, labelled with the
/// attempt, replacing a stale one of the same name; the driver, the executor template and a webhook-mutated
/// executor carry the group annotation and Volcano as scheduler; suspending removes the group.
#[tokio::test]
async fn the_volcano_pod_group_is_created_with_the_attempt_and_removed_with_it() {
    let client = common::client().await;
    install_crd();
    common::install_crd_file(
        "tests/fixtures/batch-schedulers/volcano-podgroups.yaml",
        "crd/podgroups.scheduling.volcano.sh",
    );
    let ns = namespace(&client, "gang-volcano").await;
    let (_served, _certs) = start(&ns, &["--enable-batch-scheduler"]);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let groups = pod_groups(&client, &ns, "scheduling.volcano.sh", "v1beta1");

    // One left by an earlier attempt (or by kubeflow before the upgrade): taken over.
    let stale: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
        "metadata": {"name": "spark-vc-pg",
                     "labels": {"sparkoperator.k8s.io/submission-id": "stale"}},
        "spec": {"minMember": 5, "queue": "old"},
    }))
    .unwrap();
    groups
        .create(&PostParams::default(), &stale)
        .await
        .expect("a stale PodGroup");
    apply(&app(
        &ns,
        "vc",
        json!({"batchScheduler": "volcano",
               "batchSchedulerOptions": {"queue": "spark", "priorityClassName": "batch-high"}}),
    ))
    .expect("accepted");
    let driver = wait_pod(&pods, "vc-driver", WAIT).await;
    let app = wait_state(&apps, "vc", "SUBMITTED", WAIT).await;
    let submission_id = app.status.unwrap().submission_id;
    let group = groups.get("spark-vc-pg").await.expect("the PodGroup");
    // Driver 1 core, 1g + 384Mi; two executors alike.
    assert_eq!(
        group.data["spec"],
        json!({"minMember": 1, "minResources": {"cpu": "3", "memory": "4224Mi"},
               "queue": "spark", "priorityClassName": "batch-high"})
    );
    let owner = &group.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("SparkApplication", "vc", Some(true))
    );
    assert_eq!(Some(&owner.uid), app.metadata.uid.as_ref());
    assert_eq!(
        group.labels().get("sparkoperator.k8s.io/submission-id"),
        Some(&submission_id)
    );
    assert_eq!(
        annotation(&driver, "scheduling.k8s.io/group-name"),
        Some("spark-vc-pg")
    );
    assert_eq!(
        driver.spec.as_ref().unwrap().scheduler_name.as_deref(),
        Some("volcano")
    );
    let template = executor_template(&client, &ns, &submission_id).await;
    assert_eq!(
        annotation(&template, "scheduling.k8s.io/group-name"),
        Some("spark-vc-pg")
    );
    let executor = webhook_executor(&pods, &ns, "vc").await;
    assert_eq!(
        annotation(&executor, "scheduling.k8s.io/group-name"),
        Some("spark-vc-pg")
    );
    assert_eq!(
        executor.spec.as_ref().unwrap().scheduler_name.as_deref(),
        Some("volcano")
    );

    // Suspended: the attempt goes, its PodGroup with it.
    apps.patch(
        "vc",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    eventually("the PodGroup deleted with its attempt", WAIT, || async {
        groups
            .get_opt("spark-vc-pg")
            .await
            .ok()
            .and_then(|g| g.is_none().then_some(()))
    })
    .await;
}

/// scheduler-plugins coscheduling (`--kube-scheduler-names`): refused with the reason while its
/// CRD is not installed; then `<app>-pg` with one member and the resources, the pod-group label
/// on the pods, and the group deleted when the app ends.
#[tokio::test]
async fn the_coscheduling_pod_group_needs_its_crd_and_ends_with_the_app() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "gang-cosched").await;
    let (_served, _certs) = start(
        &ns,
        &[
            "--enable-batch-scheduler",
            "--kube-scheduler-names=scheduler-plugins-scheduler",
        ],
    );
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let cs = app(
        &ns,
        "cs",
        json!({"batchScheduler": "scheduler-plugins-scheduler"}),
    );
    let refused = apply(&cs).expect_err("refused without the CRD");
    assert!(
        refused.contains(
            "spec.batchScheduler: \"scheduler-plugins-scheduler\" needs the PodGroup CRD (podgroups/scheduling.x-k8s.io/v1alpha1), which this cluster does not serve"
        ),
        "{refused}"
    );

    common::install_crd_file(
        "tests/fixtures/batch-schedulers/scheduler-plugins-podgroups.yaml",
        "crd/podgroups.scheduling.x-k8s.io",
    );
    // Discovery may lag the Established condition by a moment.
    eventually("the app accepted once the CRD is served", WAIT, || async {
        apply(&cs).ok()
    })
    .await;
    let driver = wait_pod(&pods, "cs-driver", WAIT).await;
    let groups = pod_groups(&client, &ns, "scheduling.x-k8s.io", "v1alpha1");
    let group = groups.get("cs-pg").await.expect("the PodGroup");
    assert_eq!(
        group.data["spec"],
        json!({"minMember": 1, "minResources": {"cpu": "3", "memory": "4224Mi"}})
    );
    assert_eq!(group.owner_references()[0].name, "cs");
    assert_eq!(
        driver
            .labels()
            .get("scheduling.x-k8s.io/pod-group")
            .map(String::as_str),
        Some("cs-pg")
    );
    assert_eq!(
        driver.spec.as_ref().unwrap().scheduler_name.as_deref(),
        Some("scheduler-plugins-scheduler")
    );
    let executor = webhook_executor(&pods, &ns, "cs").await;
    assert_eq!(
        executor
            .labels()
            .get("scheduling.x-k8s.io/pod-group")
            .map(String::as_str),
        Some("cs-pg")
    );

    common::set_driver_phase(&pods, "cs-driver", "Succeeded", Some(0)).await;
    wait_state(&apps, "cs", "COMPLETED", WAIT).await;
    eventually("the PodGroup deleted when the app ended", WAIT, || async {
        groups
            .get_opt("cs-pg")
            .await
            .ok()
            .and_then(|g| g.is_none().then_some(()))
    })
    .await;
}

/// YuniKorn, as the default batch scheduler: the task-group annotations (driver and executor
/// groups with their resources, on the driver), each pod's task-group name, the queue label and
/// YuniKorn as scheduler; no object. A name that is not an enabled scheduler is refused.
#[tokio::test]
async fn yunikorn_task_groups_are_on_the_pods_and_unknown_schedulers_are_refused() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "gang-yunikorn").await;
    let (_served, _certs) = start(
        &ns,
        &[
            "--enable-batch-scheduler",
            "--default-batch-scheduler=yunikorn",
        ],
    );
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    apply(&app(
        &ns,
        "yk",
        json!({"batchSchedulerOptions": {"queue": "root.spark"}}),
    ))
    .expect("accepted");
    let driver = wait_pod(&pods, "yk-driver", WAIT).await;
    let groups: Value = serde_json::from_str(
        annotation(&driver, "yunikorn.apache.org/task-groups").expect("task groups"),
    )
    .unwrap();
    assert_eq!(
        groups,
        json!([
            {"name": "spark-driver", "minMember": 1, "minResource": {"cpu": "1", "memory": "1408Mi"}},
            {"name": "spark-executor", "minMember": 2, "minResource": {"cpu": "1", "memory": "1408Mi"}},
        ])
    );
    assert_eq!(
        annotation(&driver, "yunikorn.apache.org/task-group-name"),
        Some("spark-driver")
    );
    assert_eq!(
        driver.labels().get("queue").map(String::as_str),
        Some("root.spark")
    );
    assert_eq!(
        driver.spec.as_ref().unwrap().scheduler_name.as_deref(),
        Some("yunikorn")
    );
    let id = wait_state(&apps, "yk", "SUBMITTED", WAIT)
        .await
        .status
        .unwrap()
        .submission_id;
    let template = executor_template(&client, &ns, &id).await;
    assert_eq!(
        annotation(&template, "yunikorn.apache.org/task-group-name"),
        Some("spark-executor")
    );
    assert_eq!(
        template.labels().get("queue").map(String::as_str),
        Some("root.spark")
    );
    let executor = webhook_executor(&pods, &ns, "yk").await;
    assert_eq!(
        annotation(&executor, "yunikorn.apache.org/task-group-name"),
        Some("spark-executor")
    );

    let refused = apply(&app(&ns, "kq", json!({"batchScheduler": "kueue"})))
        .expect_err("an unknown batch scheduler");
    assert!(
        refused.contains(
            "spec.batchScheduler: \"kueue\" is not an enabled batch scheduler (enabled: volcano, yunikorn"
        ),
        "{refused}"
    );
}

/// Without --enable-batch-scheduler an app naming Volcano is refused, saying so; with
/// --enable-resource-quota-enforcement an app that does not fit what is left of the
/// namespace's ResourceQuota is refused naming the quota, the resource and the amounts, and one
/// that fits is accepted.
#[tokio::test]
async fn disabled_batch_scheduling_and_quotas_refuse_with_the_reason() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "gang-quota").await;
    let (_served, _certs) = start(&ns, &["--enable-resource-quota-enforcement"]);
    let refused = apply(&app(&ns, "vc", json!({"batchScheduler": "volcano"})))
        .expect_err("batch scheduling is off");
    assert!(
        refused.contains("\"volcano\" needs batch scheduling, which is not enabled in this operator (--enable-batch-scheduler)"),
        "{refused}"
    );

    // A quota with 1500m of 4 cores used: the quota controller may or may not run here, so
    // its status is written as it would.
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "cpu"},
        "spec": {"hard": {"requests.cpu": "4", "requests.memory": "64Gi"}},
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    let status = json!({"status": {
        "hard": {"requests.cpu": "4", "requests.memory": "64Gi"},
        "used": {"requests.cpu": "1500m", "requests.memory": "0"},
    }});
    quotas
        .patch_status("cpu", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    let refused = apply(&app(&ns, "big", json!({}))).expect_err("over the quota");
    assert!(
        refused.contains(&format!(
            "the driver and 2 executors need requests.cpu 3, but ResourceQuota {ns}/cpu has 2500m left (1500m of 4 used)"
        )),
        "{refused}"
    );
    apply(&app(
        &ns,
        "small",
        json!({"executor": {"instances": 1, "cores": 1, "memory": "1g"}}),
    ))
    .expect("2 cores fit in what is left");

    // The quota is now full. An update that leaves the spec alone is not checked again (the
    // app's own pods count in the quota's usage); a spec change is.
    let full = json!({"status": {"used": {"requests.cpu": "4"}}});
    quotas
        .patch_status("cpu", &PatchParams::default(), &Patch::Merge(full))
        .await
        .unwrap();
    common::kubectl_ok(&["label", "sparkapp", "small", "-n", &ns, "team=a"], None);
    let refused = apply(&app(
        &ns,
        "small",
        json!({"executor": {"instances": 1, "cores": 1, "memory": "2g"}}),
    ))
    .expect_err("a spec change is checked against the quota");
    assert!(refused.contains("has 0 left (4 of 4 used)"), "{refused}");
}
