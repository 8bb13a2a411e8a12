//! End-to-end: `kubectl apply` of a SparkApplication leads to the objects spark-submit would
//! create, and the status follows the driver pod (whose phases the test writes, as a kubelet
//! would) through retries, spec changes and time to live.

mod common;

use std::time::Duration;

use common::{Served, eventually, install_crd, namespace, wait_pod, wait_state};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use spark_webhook::certs::{files::generate, issue::CertOptions};
use spark_webhook::crd::SparkApplication;

const WAIT: Duration = Duration::from_secs(30);

fn pi(ns: &str, name: &str, restart: Value) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": "Scala", "mode": "cluster", "sparkVersion": "3.3.4", "image": "spark:3.3.4",
            "mainClass": "org.apache.spark.examples.SparkPi",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "arguments": ["10"],
            "restartPolicy": restart,
            "driver": {"cores": 1, "coreLimit": "1200m", "memory": "512m", "serviceAccount": "spark"},
            "executor": {"instances": 2, "cores": 1, "memory": "512m"}
        }
    })
}

fn start(ns: &str, extra: &[&str]) -> (Served, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let mut args = vec!["--driver-start-timeout", "0s"];
    if !extra.iter().any(|a| a.starts_with("--leader-election=")) {
        args.push("--leader-election=false");
    }
    args.extend_from_slice(extra);
    (Served::start(ns, tmp.path(), &args), tmp)
}

async fn app_state(api: &Api<SparkApplication>, name: &str) -> Option<(String, SparkApplication)> {
    let app = api.get_opt(name).await.ok()??;
    let state = app.status.as_ref()?.application_state.state.to_string();
    Some((state, app))
}

fn event_reasons(ns: &str) -> Vec<String> {
    let out = common::kubectl(&["get", "events", "-n", ns, "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn an_applied_app_is_submitted_natively_and_follows_its_driver_to_completed() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-flow").await;
    let (served, _certs) = start(&ns, &[]);
    common::kubectl_apply(&pi(&ns, "spark-pi", json!({"type": "Never"})));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    let app = wait_state(&apps, "spark-pi", "SUBMITTED", WAIT).await;
    let status = app.status.unwrap();
    assert_eq!(status.driver_info.pod_name, "spark-pi-driver");
    assert_eq!(
        (status.submission_attempts, status.execution_attempts),
        (1, 1)
    );
    assert!(!status.submission_id.is_empty());

    // What spark-submit would have created, owned and labelled the same way.
    let driver = wait_pod(&pods, "spark-pi-driver", WAIT).await;
    let spec = driver.spec.as_ref().unwrap();
    let c = &spec.containers[0];
    assert_eq!(c.name, "spark-kubernetes-driver");
    assert_eq!(
        c.args.as_ref().unwrap()[..5],
        [
            "driver",
            "--properties-file",
            "/opt/spark/conf/spark.properties",
            "--class",
            "org.apache.spark.examples.SparkPi"
        ]
    );
    let ports: Vec<(i32, Option<String>)> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.container_port, p.protocol.clone()))
        .collect();
    for port in [7078, 7079, 4040] {
        assert!(ports.contains(&(port, Some("TCP".into()))), "{ports:?}");
    }
    let mem = c
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap()
        .get("memory")
        .unwrap();
    assert_eq!(
        mem.0, "896Mi",
        "512m + 384Mi overhead, as spark-submit computes"
    );
    assert_eq!(
        spec.security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let labels = driver.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["sparkoperator.k8s.io/app-name"], "spark-pi");
    assert_eq!(
        labels["sparkoperator.k8s.io/launched-by-spark-operator"],
        "true"
    );
    assert_eq!(
        labels["sparkoperator.k8s.io/submission-id"],
        status.submission_id
    );
    assert_eq!(
        driver.metadata.owner_references.as_ref().unwrap()[0].kind,
        "SparkApplication"
    );

    let svcs: Vec<Service> = Api::<Service>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let svc = svcs
        .iter()
        .find(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with("-driver-svc"))
        })
        .expect("driver Service");
    assert_eq!(
        svc.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );
    assert_eq!(
        svc.metadata.owner_references.as_ref().unwrap()[0].name,
        "spark-pi-driver"
    );
    let cms: Vec<ConfigMap> = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let cm = cms
        .iter()
        .find(|c| {
            c.data
                .as_ref()
                .is_some_and(|d| d.contains_key("spark.properties"))
        })
        .expect("driver ConfigMap");
    let props = &cm.data.as_ref().unwrap()["spark.properties"];
    for key in [
        "spark.kubernetes.submitInDriver=true",
        "spark.app.id=",
        "spark.driver.host=",
        "spark.executor.instances=2",
    ] {
        assert!(
            props.contains(key),
            "{key} missing from spark.properties:\n{props}"
        );
    }
    assert_eq!(
        cm.metadata.owner_references.as_ref().unwrap()[0].name,
        "spark-pi-driver"
    );

    common::set_driver_phase(&pods, "spark-pi-driver", "Running", None).await;
    wait_state(&apps, "spark-pi", "RUNNING", WAIT).await;
    common::set_driver_phase(&pods, "spark-pi-driver", "Succeeded", Some(0)).await;
    let done = wait_state(&apps, "spark-pi", "COMPLETED", WAIT).await;
    assert!(done.status.unwrap().termination_time.is_some());

    let reasons = eventually("transition events", WAIT, || async {
        let r = event_reasons(&ns);
        [
            "SparkApplicationSubmitted",
            "SparkDriverRunning",
            "SparkDriverCompleted",
            "SparkApplicationCompleted",
        ]
        .iter()
        .all(|want| r.iter().any(|x| x == want))
        .then_some(r)
    })
    .await;
    assert!(!reasons.iter().any(|r| r == "SparkApplicationFailed"));

    // The native driver is already mutated: the webhook had nothing left to patch.
    let (_, metrics) = served.admin_get("/metrics").unwrap();
    let pod_reviews = |outcome: &str| {
        let line =
            format!(r#"spark_webhook_admission_reviews_total{{kind="Pod",outcome="{outcome}"}} "#);
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str())?.trim().parse::<f64>().ok())
    };
    assert_eq!(pod_reviews("Patched"), Some(0.0), "{metrics}");
    assert!(
        pod_reviews("Unchanged").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    for series in [
        "spark_application_submit_total",
        "spark_application_success_total",
        "spark_application_total",
    ] {
        assert_eq!(
            common::sample(&metrics, series),
            Some(1.0),
            "{series}:\n{metrics}"
        );
    }
    assert_eq!(
        common::sample(&metrics, "spark_application_failure_total"),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_failed_driver_is_retried_per_policy_then_the_app_fails() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-retry").await;
    let (_served, _certs) = start(&ns, &["--webhook=false"]);
    common::kubectl_apply(&pi(
        &ns,
        "flaky",
        json!({"type": "OnFailure", "onFailureRetries": 1, "onFailureRetryInterval": 1}),
    ));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    wait_pod(&pods, "flaky-driver", WAIT).await;
    common::set_driver_phase(&pods, "flaky-driver", "Failed", Some(1)).await;
    // A new attempt gets a new, deterministic driver name.
    let second = wait_pod(&pods, "flaky-driver-2", WAIT).await;
    assert!(second.metadata.deletion_timestamp.is_none());
    let app = wait_state(&apps, "flaky", "SUBMITTED", WAIT).await;
    let status = app.status.unwrap();
    assert_eq!(
        (status.submission_attempts, status.execution_attempts),
        (2, 2)
    );
    assert_eq!(status.driver_info.pod_name, "flaky-driver-2");

    common::set_driver_phase(&pods, "flaky-driver-2", "Failed", Some(3)).await;
    let failed = wait_state(&apps, "flaky", "FAILED", WAIT).await;
    let msg = failed.status.unwrap().application_state.error_message;
    assert!(msg.contains("ExitCode: 3"), "{msg}");
    assert!(
        pods.get_opt("flaky-driver-3").await.unwrap().is_none(),
        "no third attempt"
    );
}

#[tokio::test]
async fn a_spec_change_tears_down_and_resubmits() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-invalidate").await;
    let (_served, _certs) = start(&ns, &["--webhook=false"]);
    common::kubectl_apply(&pi(&ns, "changing", json!({"type": "Never"})));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let first = wait_pod(&pods, "changing-driver", WAIT).await;
    common::set_driver_phase(&pods, "changing-driver", "Running", None).await;
    wait_state(&apps, "changing", "RUNNING", WAIT).await;

    let mut changed = pi(&ns, "changing", json!({"type": "Never"}));
    changed["spec"]["arguments"] = json!(["20"]);
    common::kubectl_apply(&changed);
    let new_driver = eventually("resubmitted driver", WAIT, || async {
        let p = pods.get_opt("changing-driver").await.ok()??;
        (p.metadata.uid != first.metadata.uid).then_some(p)
    })
    .await;
    let args = new_driver.spec.unwrap().containers[0].args.clone().unwrap();
    assert_eq!(
        args.last().map(String::as_str),
        Some("20"),
        "the new driver runs the new spec"
    );
    let app = wait_state(&apps, "changing", "SUBMITTED", WAIT).await;
    assert_eq!(
        app.status.unwrap().submission_attempts,
        1,
        "an invalidated app starts counting afresh"
    );
}

#[tokio::test]
async fn time_to_live_deletes_a_finished_app_and_unrunnable_apps_say_why() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-ttl").await;
    let (_served, _certs) = start(&ns, &["--webhook=false"]);
    let mut app = pi(&ns, "short", json!({"type": "Never"}));
    app["spec"]["timeToLiveSeconds"] = json!(1);
    common::kubectl_apply(&app);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_pod(&pods, "short-driver", WAIT).await;
    common::set_driver_phase(&pods, "short-driver", "Succeeded", Some(0)).await;
    eventually("app deleted after its TTL", WAIT, || async {
        apps.get_opt("short").await.ok()?.is_none().then_some(())
    })
    .await;

    // No image anywhere: the submission fails with the reason in status, no driver appears.
    let mut no_image = pi(&ns, "no-image", json!({"type": "Never"}));
    no_image["spec"].as_object_mut().unwrap().remove("image");
    common::kubectl_apply(&no_image);
    let failed = wait_state(&apps, "no-image", "FAILED", WAIT).await;
    let msg = failed.status.unwrap().application_state.error_message;
    assert!(msg.contains("image"), "{msg}");
    assert!(pods.get_opt("no-image-driver").await.unwrap().is_none());
}

#[tokio::test]
async fn two_replicas_with_leader_election_submit_each_app_once() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-leader").await;
    let lease = [
        "--leader-election=true",
        "--leader-election-lock-namespace",
        &ns,
        "--webhook=false",
    ];
    let (first, _c1) = start(&ns, &lease);
    let (second, _c2) = start(&ns, &lease);
    for i in 0..5 {
        common::kubectl_apply(&pi(&ns, &format!("app-{i}"), json!({"type": "Never"})));
    }
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    for i in 0..5 {
        wait_state(&apps, &format!("app-{i}"), "SUBMITTED", WAIT).await;
    }
    let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        pods.len(),
        5,
        "exactly one driver per app: {:?}",
        pods.iter()
            .map(|p| p.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    let holder = common::kubectl_ok(
        &[
            "get",
            "lease",
            "spark-webhook-lock",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    assert!(!holder.is_empty(), "someone holds the lease");
    let leaders = [first.logs(), second.logs()]
        .iter()
        .filter(|l| l.contains("became leader"))
        .count();
    assert_eq!(leaders, 1, "exactly one replica leads");
}

#[tokio::test]
async fn deleting_an_app_stops_its_driver_even_without_garbage_collection() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-delete").await;
    let (_served, _certs) = start(
        &ns,
        &["--webhook=false", "--orphan-sweep-interval", "500ms"],
    );
    common::kubectl_apply(&pi(&ns, "doomed", json!({"type": "Never"})));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let driver = wait_pod(&pods, "doomed-driver", WAIT).await;
    let id = driver.metadata.labels.as_ref().unwrap()["sparkoperator.k8s.io/submission-id"].clone();
    apps.delete("doomed", &Default::default()).await.unwrap();
    // This apiserver runs no garbage collector: only the operator can clean up.
    let by_id = ListParams::default().labels(&format!("sparkoperator.k8s.io/submission-id={id}"));
    eventually("driver, Service and ConfigMap deleted", WAIT, || async {
        let p = pods.list(&by_id).await.ok()?.items.len();
        let s = Api::<Service>::namespaced(client.clone(), &ns)
            .list(&by_id)
            .await
            .ok()?
            .items
            .len();
        let c = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .list(&by_id)
            .await
            .ok()?
            .items
            .len();
        (p + s + c == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn without_the_webhook_driver_and_executors_still_carry_every_mutation() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-nowebhook").await;
    // The reconciler alone: no webhook served, none registered.
    let (_served, _certs) = start(&ns, &["--webhook=false"]);
    let mut app = pi(&ns, "spark-pi", json!({"type": "Never"}));
    app["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    app["spec"]["executor"] = json!({
        "instances": 1, "cores": 1, "memory": "512m",
        "env": [{"name": "EXEC_ENV", "value": "e"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        "podSecurityContext": {"runAsNonRoot": true, "runAsUser": 185}
    });
    common::kubectl_apply(&app);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let app = wait_state(&apps, "spark-pi", "SUBMITTED", WAIT).await;
    let opts = spark_webhook::mutate::MutationOptions::default();
    let nothing_left = |role, pod: &Pod| {
        let json = serde_json::to_value(pod).unwrap();
        spark_webhook::mutate::pod_patch(&app, role, &json, &opts).expect("patch")
    };

    // The stored driver: the webhook would have nothing to add.
    let driver = wait_pod(&pods, "spark-pi-driver", WAIT).await;
    let patch = nothing_left(spark_webhook::labels::SparkRole::Driver, &driver);
    assert!(patch.0.is_empty(), "driver: {patch:?}");

    // An executor built from the shipped template as Spark's driver builds it, created
    // through the apiserver (no webhook on the way), carries every executor mutation.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = config_maps
        .list(&ListParams::default().labels("sparkoperator.k8s.io/app-name=spark-pi"))
        .await
        .unwrap()
        .items
        .pop()
        .expect("the driver's ConfigMap");
    let data = cm.data.unwrap();
    let template: Pod =
        yaml_serde::from_str(&data["executor-pod-template.yaml"]).expect("template is a Pod");
    let conf = common::spark_executor::plain_properties(&data["spark.properties"]);
    let executor = common::spark_executor::from_template(&template, &conf, 1);
    let stored = pods
        .create(&Default::default(), &executor)
        .await
        .expect("executor created");
    let patch = nothing_left(spark_webhook::labels::SparkRole::Executor, &stored);
    assert!(patch.0.is_empty(), "executor: {patch:?}");
    let spec = stored.spec.unwrap();
    assert_eq!(spec.enable_service_links, Some(false));
    assert_eq!(
        spec.security_context
            .and_then(|s| s.seccomp_profile)
            .map(|p| p.type_),
        Some("RuntimeDefault".to_string())
    );
    let names: Vec<_> = spec.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    assert!(names.contains(&"/data".to_string()), "{names:?}");
}

/// The `spark.properties` of `driver`'s ConfigMap (the one the driver pod owns).
async fn driver_properties(
    client: &kube::Client,
    ns: &str,
    driver: &str,
) -> std::collections::BTreeMap<String, String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = eventually(&format!("the ConfigMap of {driver}"), WAIT, || async {
        let list = cms.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|c| {
            c.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.name == driver)
        })
    })
    .await;
    common::spark_executor::plain_properties(&cm.data.unwrap()["spark.properties"])
}

/// A kubeflow app that names no executor count runs one executor, as under kubeflow (Spark
/// alone would start two); with dynamic allocation on, the count is left to Spark.
#[tokio::test]
async fn an_app_without_an_executor_count_gets_kubeflows_one_executor() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-defaults").await;
    let (_served, _certs) = start(&ns, &["--webhook=false"]);
    let mut plain = pi(&ns, "plain", json!({"type": "Never"}));
    plain["spec"]["executor"] = json!({"cores": 1, "memory": "512m"});
    common::kubectl_apply(&plain);
    let mut dynamic = pi(&ns, "dynamic", json!({"type": "Never"}));
    dynamic["spec"]["executor"] = json!({"cores": 1, "memory": "512m"});
    dynamic["spec"]["dynamicAllocation"] = json!({"enabled": true, "maxExecutors": 3});
    common::kubectl_apply(&dynamic);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);

    wait_state(&apps, "plain", "SUBMITTED", WAIT).await;
    let props = driver_properties(&client, &ns, "plain-driver").await;
    assert_eq!(
        props.get("spark.executor.instances").map(String::as_str),
        Some("1"),
        "{props:?}"
    );
    // The stored app keeps what the user wrote: the default is applied where it is used.
    let stored = apps.get("plain").await.unwrap();
    assert_eq!(stored.spec.executor.instances, None);

    wait_state(&apps, "dynamic", "SUBMITTED", WAIT).await;
    let props = driver_properties(&client, &ns, "dynamic-driver").await;
    assert_eq!(props.get("spark.executor.instances"), None, "{props:?}");
    assert_eq!(
        props
            .get("spark.dynamicAllocation.maxExecutors")
            .map(String::as_str),
        Some("3")
    );
}

/// An OnFailure app that names no retry interval waits kubeflow's 5 s (since the failed
/// attempt's submission) before its next attempt, instead of retrying at once.
#[tokio::test]
async fn a_failed_driver_without_a_retry_interval_waits_five_seconds() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-interval").await;
    let (_served, _certs) = start(&ns, &["--webhook=false"]);
    common::kubectl_apply(&pi(
        &ns,
        "flaky",
        json!({"type": "OnFailure", "onFailureRetries": 1}),
    ));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    let first = wait_state(&apps, "flaky", "SUBMITTED", WAIT).await;
    let first_at = first
        .status
        .unwrap()
        .last_submission_attempt_time
        .expect("first attempt time")
        .0;
    wait_pod(&pods, "flaky-driver", WAIT).await;
    common::set_driver_phase(&pods, "flaky-driver", "Failed", Some(1)).await;
    let failed_at = std::time::Instant::now();
    let second = wait_pod(&pods, "flaky-driver-2", WAIT).await;
    let waited = failed_at.elapsed();
    let second_at = second.metadata.creation_timestamp.expect("creation time").0;
    let gap = second_at.duration_since(first_at).as_secs_f64();
    // Timestamps are whole seconds: a 5 s wait shows as at least 5 between them.
    assert!(
        (5.0..15.0).contains(&gap),
        "second attempt {gap} s after the first (waited {waited:?} after the failure)"
    );
    let app = wait_state(&apps, "flaky", "SUBMITTED", WAIT).await;
    let status = app.status.unwrap();
    assert_eq!(status.execution_attempts, 2);
    let second_attempt_at = status.last_submission_attempt_time.unwrap().0;
    assert!(second_attempt_at.duration_since(first_at).as_secs() >= 5);
}

/// `--namespace-selector` (kubeflow v2.5): a namespace labelled after start is served without
/// a restart, its waiting app submitted at once; one unlabelled stops being served; the listed
/// namespace stays served either way; a selector the apiserver cannot parse stops the start.
#[tokio::test]
async fn namespaces_selected_by_label_are_served_from_when_they_are_labelled() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-sel").await;
    let tenant = namespace(&client, "rc-tenant").await;
    let key = format!("e2e-tenant-{}", common::unique_suffix());
    let selector = format!("{key}=spark");
    let (_served, _certs) = start(&ns, &["--namespace-selector", &selector]);
    let listed: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let tenants: Api<SparkApplication> = Api::namespaced(client.clone(), &tenant);
    let tenant_pods: Api<Pod> = Api::namespaced(client.clone(), &tenant);

    // Not labelled yet: its app waits while an app of the listed namespace, applied after it,
    // is submitted by the same cluster-wide controller.
    common::kubectl_apply(&pi(&tenant, "waiting", json!({"type": "Never"})));
    common::kubectl_apply(&pi(&ns, "marker", json!({"type": "Never"})));
    wait_state(&listed, "marker", "SUBMITTED", WAIT).await;
    assert!(app_state(&tenants, "waiting").await.is_none());
    assert!(
        tenant_pods
            .get_opt("waiting-driver")
            .await
            .unwrap()
            .is_none()
    );

    common::kubectl_ok(
        &["label", "namespace", &tenant, &format!("{key}=spark")],
        None,
    );
    wait_state(&tenants, "waiting", "SUBMITTED", WAIT).await;
    wait_pod(&tenant_pods, "waiting-driver", WAIT).await;

    common::kubectl_ok(&["label", "namespace", &tenant, &format!("{key}-")], None);
    common::kubectl_apply(&pi(&tenant, "late", json!({"type": "Never"})));
    // The watch has seen the label go once a namespace labelled after it is served.
    let other = namespace(&client, "rc-tenant2").await;
    common::kubectl_ok(
        &["label", "namespace", &other, &format!("{key}=spark")],
        None,
    );
    common::kubectl_apply(&pi(&other, "marker2", json!({"type": "Never"})));
    wait_state(
        &Api::namespaced(client.clone(), &other),
        "marker2",
        "SUBMITTED",
        WAIT,
    )
    .await;
    assert!(app_state(&tenants, "late").await.is_none());
    assert!(tenant_pods.get_opt("late-driver").await.unwrap().is_none());

    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let mut bad = Served::spawn_as(
        &common::cluster().kubeconfig,
        &[],
        &ns,
        tmp.path(),
        &[
            "--leader-election=false",
            "--namespace-selector",
            "env in (prod",
        ],
    );
    let status = bad.wait_exit(WAIT);
    let logs = bad.logs();
    assert!(
        status.is_some_and(|s| !s.success()),
        "a bad selector must stop the start: {status:?}\n{logs}"
    );
    assert!(logs.contains("--namespace-selector"), "{logs}");
}

/// A rollout's worst moment: the webhook registration points at a closed port while a
/// `restartPolicy: Never` app is submitted. The apiserver refuses the driver pod ("failed
/// calling webhook"); that is not the app's fault, so the status says it is retrying, no
/// attempt is used, and once the webhook answers again the app gets its driver. It never shows
/// SUBMISSION_FAILED.
#[tokio::test]
async fn a_driver_refused_while_the_webhook_is_unreachable_is_retried_without_using_an_attempt() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-webhook-gone").await;
    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    // Register the webhook (failurePolicy Fail), then stop it: the registration stays,
    // pointing at a port nobody listens on.
    let mut webhook = Served::start(&ns, tmp.path(), &["--controller=false"]);
    webhook.terminate();
    let _reconciler = Served::start_replica(
        &ns,
        tmp.path(),
        "-reconciler",
        &["--webhook=false", "--leader-election=false"],
    );
    common::kubectl_apply(&pi(&ns, "gone", json!({"type": "Never"})));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let never_failed = |state: &str, app: &SparkApplication| {
        assert!(
            state != "SUBMISSION_FAILED" && state != "FAILED",
            "the app failed for the webhook's absence: {:?}",
            app.status
        );
    };
    let waiting = eventually(
        "the status to say the submission is retrying",
        WAIT,
        || async {
            let app = apps.get_opt("gone").await.ok()??;
            let status = app.status.clone()?;
            let state = status.application_state.state.to_string();
            never_failed(&state, &app);
            status
                .application_state
                .error_message
                .contains("not counted against onSubmissionFailureRetries")
                .then_some(status)
        },
    )
    .await;
    assert!(
        waiting
            .application_state
            .error_message
            .contains("failed calling webhook"),
        "{:?}",
        waiting.application_state
    );
    assert_eq!(waiting.submission_attempts, 0, "no attempt used");
    eventually(
        "a SparkApplicationSubmissionRetrying Event",
        WAIT,
        || async {
            event_reasons(&ns)
                .iter()
                .any(|r| r == "SparkApplicationSubmissionRetrying")
                .then_some(())
        },
    )
    .await;

    // The webhook is back (a new process, a new port, registered over the old one).
    let _webhook = Served::start(&ns, tmp.path(), &["--controller=false"]);
    let submitted = eventually(
        "the app submitted once the webhook answers",
        Duration::from_secs(90),
        || async {
            let app = apps.get_opt("gone").await.ok()??;
            let state = app.status.as_ref()?.application_state.state.to_string();
            never_failed(&state, &app);
            (state == "SUBMITTED").then_some(app)
        },
    )
    .await;
    let status = submitted.status.expect("status");
    assert_eq!(status.submission_attempts, 1);
    assert_eq!(status.application_state.error_message, "");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_pod(&pods, &status.driver_info.pod_name, WAIT).await;
}

/// The pods, Services and ConfigMaps labelled with `submission_id`, by name.
async fn attempt_objects(client: &kube::Client, ns: &str, submission_id: &str) -> Vec<String> {
    let by_id = ListParams::default().labels(&format!(
        "sparkoperator.k8s.io/submission-id={submission_id}"
    ));
    let names = |items: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
        items.into_iter().filter_map(|m| m.name).collect::<Vec<_>>()
    };
    let mut out = names(
        Api::<Pod>::namespaced(client.clone(), ns)
            .list(&by_id)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| o.metadata)
            .collect(),
    );
    out.extend(names(
        Api::<Service>::namespaced(client.clone(), ns)
            .list(&by_id)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| o.metadata)
            .collect(),
    ));
    out.extend(names(
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .list(&by_id)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| o.metadata)
            .collect(),
    ));
    out
}

async fn set_suspend(apps: &Api<SparkApplication>, name: &str, on: bool) {
    apps.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"suspend": on}})),
    )
    .await
    .unwrap_or_else(|e| panic!("suspend={on} on {name}: {e}"));
}

/// kubeflow v2.5's suspension, as Kueue drives it: an app created suspended is never submitted;
/// resumed, it is; suspended while running, its attempt (driver, Service, ConfigMap) is deleted
/// and the app kept, SUSPENDED only once the driver is really gone; resumed again, a new attempt
/// with a new submission id. Events, metrics and the printer columns say so.
#[tokio::test]
async fn a_suspended_app_runs_nothing_until_resumed_and_suspending_deletes_its_attempt() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rc-suspend").await;
    let (served, _certs) = start(&ns, &["--webhook=false"]);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut held = pi(&ns, "held", json!({"type": "Never"}));
    held["spec"]["suspend"] = json!(true);
    common::kubectl_apply(&held);

    let app = wait_state(&apps, "held", "SUSPENDED", WAIT).await;
    assert_eq!(app.status.unwrap().submission_attempts, 0);
    // Watched for a while: no pod appears, the app stays SUSPENDED.
    let of_app = ListParams::default().labels("sparkoperator.k8s.io/app-name=held");
    let watched = std::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        let listed = pods.list(&of_app).await.unwrap().items;
        assert!(listed.is_empty(), "a pod of a suspended app: {listed:?}");
        let (state, _) = app_state(&apps, "held").await.expect("the app");
        assert_eq!(state, "SUSPENDED");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let table = common::kubectl_ok(&["get", "sparkapp", "held", "-n", &ns], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(header[..3], ["NAME", "SUSPEND", "STATUS"], "{table}");
    assert_eq!(row[..3], ["held", "true", "SUSPENDED"], "{table}");

    // Resumed: submitted as its first attempt.
    set_suspend(&apps, "held", false).await;
    wait_pod(&pods, "held-driver", WAIT).await;
    let app = wait_state(&apps, "held", "SUBMITTED", WAIT).await;
    let first_id = app.status.unwrap().submission_id;
    common::set_driver_phase(&pods, "held-driver", "Running", None).await;
    wait_state(&apps, "held", "RUNNING", WAIT).await;
    // The driver pod, its Service and ConfigMap, and the Spark UI Service.
    assert_eq!(
        attempt_objects(&client, &ns, &first_id).await.len(),
        4,
        "{:?}",
        attempt_objects(&client, &ns, &first_id).await
    );

    // Suspended while running. A finalizer keeps the driver terminating, as a kubelet would
    // while Spark shuts down: the app must stay SUSPENDING until the pod is really gone.
    pods.patch(
        "held-driver",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": ["e2e.test/hold"]}})),
    )
    .await
    .unwrap();
    set_suspend(&apps, "held", true).await;
    wait_state(&apps, "held", "SUSPENDING", WAIT).await;
    eventually(
        "the attempt's Service and ConfigMap deleted",
        WAIT,
        || async {
            let left = attempt_objects(&client, &ns, &first_id).await;
            (left == ["held-driver"]).then_some(())
        },
    )
    .await;
    let terminating = pods.get("held-driver").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    let (state, _) = app_state(&apps, "held").await.expect("the app");
    assert_eq!(
        state, "SUSPENDING",
        "SUSPENDED while its driver still exists"
    );
    pods.patch(
        "held-driver",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let app = wait_state(&apps, "held", "SUSPENDED", WAIT).await;
    let status = app.status.unwrap();
    assert!(status.driver_info.pod_name.is_empty(), "{status:?}");
    assert_eq!(
        attempt_objects(&client, &ns, &first_id).await,
        Vec::<String>::new()
    );

    // Resumed again: a new attempt, new names, a new submission id.
    set_suspend(&apps, "held", false).await;
    wait_pod(&pods, "held-driver-2", WAIT).await;
    let app = wait_state(&apps, "held", "SUBMITTED", WAIT).await;
    let status = app.status.unwrap();
    assert_ne!(status.submission_id, first_id);
    assert_eq!(status.driver_info.pod_name, "held-driver-2");
    assert_eq!(
        (status.submission_attempts, status.execution_attempts),
        (2, 2),
        "the counts carry on across a suspension, as in kubeflow"
    );

    let reasons = eventually("suspension Events", WAIT, || async {
        let r = event_reasons(&ns);
        [
            "SparkApplicationSuspending",
            "SparkApplicationSuspended",
            "SparkApplicationResuming",
        ]
        .iter()
        .all(|want| r.iter().any(|x| x == want))
        .then_some(r)
    })
    .await;
    assert!(reasons.iter().any(|r| r == "SparkApplicationSubmitted"));
    let metrics = served.admin_get("/metrics").expect("/metrics").1;
    assert_eq!(
        common::sample(&metrics, "spark_application_suspend_total"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        common::sample(&metrics, "spark_application_resume_total"),
        Some(2.0),
        "{metrics}"
    );
}

/// The reconciler's status write (a merge patch held to the resourceVersion it read) against
/// the real apiserver, with no operator running: a write from a stale view is refused and
/// leaves the newer status exactly as it was; one from the current view yields exactly the
/// status written, members it no longer has (an error message, a termination time, a gone
/// executor) removed rather than left stale.
#[tokio::test]
async fn a_status_write_from_a_stale_view_never_overwrites_a_newer_status() {
    use spark_webhook::crd::SparkApplicationStatus;
    use spark_webhook::reconciler::context::ReconcileError;
    use spark_webhook::reconciler::controller::patch_status;

    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "stale-status").await;
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let app: SparkApplication = serde_json::from_value(pi(&ns, "pi", json!({"type": "Never"})))
        .expect("a SparkApplication");
    let created = apps
        .create(&kube::api::PostParams::default(), &app)
        .await
        .expect("created");
    let status = |v: Value| -> SparkApplicationStatus { serde_json::from_value(v).unwrap() };
    let failing = status(json!({
        "applicationState": {"state": "FAILING", "errorMessage": "driver pod not found"},
        "terminationTime": "2026-12-07T10:00:00Z",
        "driverInfo": {"podName": "pi-driver", "webUIServiceName": "pi-ui-svc"},
        "executorState": {"pi-exec-1": "RUNNING", "pi-exec-2": "RUNNING"},
        "submissionAttempts": 1, "executionAttempts": 1
    }));
    let v1 = patch_status(&apps, &created, &failing)
        .await
        .expect("first status written");
    assert_eq!(v1.status.as_ref(), Some(&failing));

    // Another writer (a new leader, say) moves the status on from v1.
    let running = status(json!({
        "applicationState": {"state": "RUNNING"},
        "driverInfo": {"podName": "pi-driver", "webUIServiceName": "pi-ui-svc"},
        "executorState": {"pi-exec-1": "COMPLETED"},
        "submissionAttempts": 1, "executionAttempts": 1
    }));
    let v2 = patch_status(&apps, &v1, &running)
        .await
        .expect("newer status written");
    assert_eq!(v2.status.as_ref(), Some(&running), "stale members removed");

    // A reconcile still holding v1 decides something else: refused, nothing changed.
    let stale = status(json!({
        "applicationState": {"state": "FAILED", "errorMessage": "from a stale view"},
        "submissionAttempts": 1, "executionAttempts": 1
    }));
    match patch_status(&apps, &v1, &stale).await {
        Err(ReconcileError::Conflict(name)) => assert_eq!(name, "pi"),
        other => panic!("a stale write must conflict, got {other:?}"),
    }
    let now = apps.get("pi").await.expect("app");
    assert_eq!(now.status.as_ref(), Some(&running));
    assert_eq!(now.metadata.resource_version, v2.metadata.resource_version);
}
