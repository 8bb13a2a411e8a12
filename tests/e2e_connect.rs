//! End-to-end: SparkConnects on a real kube-apiserver with the operator (webhook on). kubeflow's
//! example (tests/fixtures/spark-connect.yaml) gets its server pod, its Service, the pod's
//! ConfigMap and headless Service, each owned so that deleting the SparkConnect removes them;
//! the status follows the pod as kubeflow's does; a spec change restarts the server.
//!
//! There is no kubelet or garbage collector here: the test writes the pods' status as the
//! kubelet would, and checks the ownerReferences the collector follows (tests/e2e_realnode.rs
//! watches the real deletion).

mod common;

use std::time::Duration;

use common::{Served, eventually, install_crd, namespace};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use spark_webhook::certs::{files::generate, issue::CertOptions};
use spark_webhook::crd::{SparkConnect, SparkConnectState};
use spark_webhook::labels::{CONNECT_NAME_LABEL, SUBMISSION_ID_LABEL};

const WAIT: Duration = Duration::from_secs(30);

/// kubeflow's example, in namespace `ns`, with a local image and the test's ServiceAccount.
fn example(ns: &str) -> SparkConnect {
    let text =
        std::fs::read_to_string(common::repo_root().join("tests/fixtures/spark-connect.yaml"))
            .expect("fixture")
            .replace("docker.io/apache/spark:4.0.4", "spark:4.0.4")
            .replace("spark-operator-spark", "spark");
    let mut conn: SparkConnect = yaml_serde::from_str(&text).expect("kubeflow's example");
    conn.metadata.namespace = Some(ns.into());
    conn
}

async fn status_of(api: &Api<SparkConnect>, name: &str) -> spark_webhook::crd::SparkConnectStatus {
    api.get(name)
        .await
        .expect("the SparkConnect")
        .status
        .unwrap_or_default()
}

/// Writes a pod's status as the kubelet would: `phase`, Ready or not, an IP.
async fn set_pod(pods: &Api<Pod>, name: &str, phase: &str, ready: bool) {
    let status = json!({"status": {"phase": phase, "podIP": "10.1.2.3",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("status of pod {name}: {e}"));
}

fn controlled_by(meta: &kube::api::ObjectMeta, kind: &str, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == kind && r.uid == uid && r.controller == Some(true))
}

#[tokio::test]
async fn a_spark_connect_gets_its_server_and_service_follows_the_pod_and_restarts_on_a_spec_change()
{
    let client: Client = common::client().await;
    install_crd();
    let ns = namespace(&client, "connect").await;
    let tmp = tempfile::tempdir().expect("temp dir");
    generate(&CertOptions::new(tmp.path())).expect("certificates");
    let _served = Served::start(&ns, tmp.path(), &["--leader-election=false"]);

    let conns: Api<SparkConnect> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let conn = conns
        .create(&PostParams::default(), &example(&ns))
        .await
        .expect("kubeflow's example is accepted");
    let uid = conn.uid().expect("uid");
    let name = conn.name_any();
    let server = format!("{name}-server");

    // The server pod, through the webhook (which leaves it alone: it is no SparkApplication's).
    let pod = eventually("the server pod", WAIT, || async {
        pods.get_opt(&server).await.ok()?
    })
    .await;
    assert!(
        controlled_by(&pod.metadata, "SparkConnect", &uid),
        "{:?}",
        pod.metadata.owner_references
    );
    let labels = pod.labels();
    assert_eq!(labels["spark-role"], "connect-server");
    assert_eq!(labels[CONNECT_NAME_LABEL], name);
    assert_eq!(labels["key1"], "value1", "the template's labels");
    let container = &pod.spec.as_ref().expect("spec").containers[0];
    let args = container.args.clone().unwrap_or_default().join(" ");
    assert!(
        args.contains("--class org.apache.spark.sql.connect.service.SparkConnectServer"),
        "{args}"
    );
    let seccomp = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.seccomp_profile.as_ref());
    assert_eq!(seccomp.map(|s| s.type_.as_str()), Some("RuntimeDefault"));

    // The Service clients connect through, and the pod's own ConfigMap and headless Service.
    let svc = eventually("the Service", WAIT, || async {
        services.get_opt(&server).await.ok()?
    })
    .await;
    assert!(controlled_by(&svc.metadata, "SparkConnect", &uid));
    let ports: Vec<i32> = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [7078, 7079, 4040, 15002]);
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    assert!(
        selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "{selector:?} selects the pod"
    );
    let pod_uid = pod.uid().expect("pod uid");
    let by_name = ListParams::default().labels(&format!("{CONNECT_NAME_LABEL}={name}"));
    let cm = eventually("the server's ConfigMap", WAIT, || async {
        config_maps
            .list(&by_name)
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    assert!(
        controlled_by(&cm.metadata, "Pod", &pod_uid),
        "{:?}",
        cm.metadata.owner_references
    );
    let props = cm.data.as_ref().expect("data")["spark.properties"].clone();
    assert!(props.contains("spark.executor.instances=2"), "{props}");
    let headless = eventually("the headless driver Service", WAIT, || async {
        services
            .list(&by_name)
            .await
            .ok()?
            .items
            .into_iter()
            .find(|s| s.name_any() != server)
    })
    .await;
    assert!(controlled_by(&headless.metadata, "Pod", &pod_uid));

    // Status as kubeflow fills it: NotReady while the pod is not ready, then Ready.
    let s = eventually("status NotReady", WAIT, || async {
        let s = status_of(&conns, &name).await;
        (s.state == SparkConnectState::NotReady).then_some(s)
    })
    .await;
    assert_eq!(s.conditions[0].type_, "ServerPodReady");
    assert_eq!(s.conditions[0].status, "False");
    assert_eq!(s.server.pod_name, server);
    assert_eq!(s.server.service_name, server);
    assert!(s.start_time.is_some() && s.last_update_time.is_some());
    set_pod(&pods, &server, "Running", true).await;
    // An executor the server's driver would have started.
    let executor: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-exec-1"), "labels": {CONNECT_NAME_LABEL: name, "spark-role": "executor"}},
        "spec": {"containers": [{"name": "spark-kubernetes-executor", "image": "spark:4.0.4"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &executor)
        .await
        .expect("executor");
    set_pod(&pods, &format!("{name}-exec-1"), "Running", true).await;
    let s = eventually("status Ready with one running executor", WAIT, || async {
        let s = status_of(&conns, &name).await;
        (s.state == SparkConnectState::Ready && s.executors.get("running") == Some(&1)).then_some(s)
    })
    .await;
    assert_eq!(s.conditions[0].status, "True");
    assert_eq!(s.conditions[0].reason, "ServerPodReady");
    assert_eq!(s.server.pod_ip, "10.1.2.3");

    // A spec change restarts the server with the new spec.
    let old_id = labels[SUBMISSION_ID_LABEL].clone();
    conns
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"executor": {"instances": 3}}})),
        )
        .await
        .expect("spec change");
    let pod = eventually("a new server pod", WAIT, || async {
        let pod = pods.get_opt(&server).await.ok()??;
        (pod.labels().get(SUBMISSION_ID_LABEL) != Some(&old_id)).then_some(pod)
    })
    .await;
    assert_ne!(pod.uid().expect("uid"), pod_uid);
    let new_uid = pod.uid().expect("uid");
    let cm = eventually("the new server's ConfigMap", WAIT, || async {
        config_maps
            .list(&by_name)
            .await
            .ok()?
            .items
            .into_iter()
            .find(|c| controlled_by(&c.metadata, "Pod", &new_uid))
    })
    .await;
    let props = cm.data.as_ref().expect("data")["spark.properties"].clone();
    assert!(props.contains("spark.executor.instances=3"), "{props}");
    eventually("status NotReady for the new server", WAIT, || async {
        let s = status_of(&conns, &name).await;
        (s.state == SparkConnectState::NotReady && s.server.pod_ip.is_empty()).then_some(())
    })
    .await;
}

/// A SparkConnect whose server cannot be built (no image anywhere) or whose Service the
/// apiserver refuses fails, with the reason in its condition, and no pod is created.
#[tokio::test]
async fn a_spark_connect_that_cannot_start_fails_with_the_reason() {
    let client: Client = common::client().await;
    install_crd();
    let ns = namespace(&client, "connect-bad").await;
    let tmp = tempfile::tempdir().expect("temp dir");
    generate(&CertOptions::new(tmp.path())).expect("certificates");
    let _served = Served::start(&ns, tmp.path(), &["--leader-election=false"]);
    let conns: Api<SparkConnect> = Api::namespaced(client.clone(), &ns);
    let mut conn = example(&ns);
    conn.spec.server.pod.template = None;
    conn.spec.executor.pod.template = None;
    conns
        .create(&PostParams::default(), &conn)
        .await
        .expect("created");
    let s = eventually("status Failed", WAIT, || async {
        let s = status_of(&conns, "spark-connect").await;
        (s.state == SparkConnectState::Failed).then_some(s)
    })
    .await;
    assert!(
        s.conditions[0].message.contains("image"),
        "{:?}",
        s.conditions
    );
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    assert!(
        pods.get_opt("spark-connect-server")
            .await
            .expect("get")
            .is_none()
    );
}
