//! End-to-end on the real kube-apiserver: the objects kubeflow's controller creates around the
//! driver, for kubeflow's own examples (tests/fixtures/kubeflow/): the Prometheus ConfigMap, the
//! Spark UI Service and Ingress, `driverIngressOptions`, the driver PodDisruptionBudget; the
//! status fields naming them; their removal with the attempt; and nothing of it with the flags
//! off. (That the UI and its Prometheus servlet answer through the Service is e2e_realnode's.)

mod common;

use std::time::Duration;

use common::{Served, eventually, install_crd, namespace};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use spark_webhook::certs::{files::generate, issue::CertOptions};
use spark_webhook::crd::SparkApplication;

const WAIT: Duration = Duration::from_secs(30);

/// kubeflow's example FILE, moved into namespace `ns`.
fn example(file: &str, ns: &str) -> Value {
    let path = common::repo_root()
        .join("tests/fixtures/kubeflow")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("fixture");
    let mut app: Value = yaml_serde::from_str(&text).expect("example parses");
    app["metadata"]["namespace"] = json!(ns);
    app
}

fn start(ns: &str, extra: &[&str]) -> (Served, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let mut args = vec![
        "--driver-start-timeout",
        "0s",
        "--leader-election=false",
        "--webhook=false",
        "--orphan-sweep-interval",
        "500ms",
    ];
    args.extend_from_slice(extra);
    (Served::start(ns, tmp.path(), &args), tmp)
}

async fn submitted(apps: &Api<SparkApplication>, name: &str) -> SparkApplication {
    eventually(&format!("{name} SUBMITTED"), WAIT, || async {
        let app = apps.get_opt(name).await.ok()??;
        let state = app.status.as_ref()?.application_state.state.to_string();
        (state == "SUBMITTED").then_some(app)
    })
    .await
}

fn labelled(id: &str) -> ListParams {
    ListParams::default().labels(&format!("sparkoperator.k8s.io/submission-id={id}"))
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut n: Vec<String> = items.iter().filter_map(|o| o.meta().name.clone()).collect();
    n.sort();
    n
}

#[tokio::test]
async fn kubeflows_prometheus_example_gets_its_config_map_ui_service_and_ingress_until_it_goes() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ui-prom").await;
    let (_served, _certs) = start(
        &ns,
        &[
            "--ingress-url-format",
            "{{$appName}}.ingress.example.com",
            "--ingress-class-name",
            "nginx",
        ],
    );
    // A stale prom-conf, as kubeflow (or an earlier run) left it: made this app's own.
    common::kubectl_apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "spark-pi-prom-conf", "namespace": ns},
        "data": {"metrics.properties": "stale"}}));
    common::kubectl_apply(&example("spark-pi-prometheus.yaml", &ns));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let app = submitted(&apps, "spark-pi").await;
    let status = app.status.unwrap();
    let id = status.submission_id.clone();

    // The Prometheus ConfigMap, with kubeflow's default files, mounted by the driver.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let prom = config_maps
        .get("spark-pi-prom-conf")
        .await
        .expect("prom-conf");
    let data = prom.data.unwrap();
    assert!(
        data["metrics.properties"]
            .contains("*.sink.jmx.class=org.apache.spark.metrics.sink.JmxSink")
    );
    assert!(data["prometheus.yaml"].contains("lowercaseOutputName: true"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let driver = pods.get("spark-pi-driver").await.unwrap();
    let spec = driver.spec.unwrap();
    assert!(spec.volumes.unwrap().iter().any(|v| {
        v.config_map
            .as_ref()
            .is_some_and(|c| c.name == "spark-pi-prom-conf")
    }));
    assert!(!spec.containers.is_empty());
    let conf = config_maps
        .list(&labelled(&id))
        .await
        .unwrap()
        .items
        .into_iter()
        .find_map(|c| c.data?.get("spark.properties").cloned())
        .expect("the driver's spark.properties");
    // spark.properties escapes ':' and '='.
    assert!(
        conf.contains(r"spark.driver.extraJavaOptions=-javaagent\:/prometheus/jmx_prometheus_javaagent-0.11.0.jar\=8090\:/etc/metrics/conf/prometheus.yaml"),
        "{conf}"
    );

    // The UI Service: kubeflow's name, port and selector; the status names it and its ClusterIP.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let ui = services.get("spark-pi-ui-svc").await.expect("UI Service");
    let ui_spec = ui.spec.unwrap();
    let port = &ui_spec.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("spark-driver-ui-port"), 4040)
    );
    assert_eq!(ui_spec.type_.as_deref(), Some("ClusterIP"));
    let ip = ui_spec.cluster_ip.clone().expect("a ClusterIP");
    let info = &status.driver_info;
    assert_eq!(info.web_ui_service_name, "spark-pi-ui-svc");
    assert_eq!(info.web_ui_port, 4040);
    assert_eq!(info.web_ui_address, format!("{ip}:4040"));
    // The Ingress of --ingress-url-format, and the status naming it.
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let ingress = ingresses
        .get("spark-pi-ui-ingress")
        .await
        .expect("UI Ingress");
    let ispec = ingress.spec.unwrap();
    assert_eq!(ispec.ingress_class_name.as_deref(), Some("nginx"));
    let rule = &ispec.rules.unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("spark-pi.ingress.example.com"));
    let backend = rule.http.as_ref().unwrap().paths[0]
        .backend
        .service
        .clone()
        .unwrap();
    assert_eq!(backend.name, "spark-pi-ui-svc");
    assert_eq!(info.web_ui_ingress_name, "spark-pi-ui-ingress");
    assert_eq!(
        info.web_ui_ingress_address,
        "http://spark-pi.ingress.example.com"
    );

    // Deleting the app removes every object of its attempt (no garbage collector here).
    apps.delete("spark-pi", &Default::default()).await.unwrap();
    eventually("the attempt's objects deleted", WAIT, || async {
        let by_id = labelled(&id);
        let left = pods.list(&by_id).await.ok()?.items.len()
            + services.list(&by_id).await.ok()?.items.len()
            + config_maps.list(&by_id).await.ok()?.items.len()
            + ingresses.list(&by_id).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
}

/// The Prometheus ConfigMap is written beside the driver's create: when it cannot be (here an
/// immutable ConfigMap of that name is in the way), the submission fails naming it, and the
/// driver, which could never start, does not stay behind.
#[tokio::test]
async fn a_prometheus_config_map_that_cannot_be_written_fails_the_submission_and_leaves_no_driver()
{
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ui-prom-refused").await;
    let (_served, _certs) = start(&ns, &[]);
    common::kubectl_apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "spark-pi-prom-conf", "namespace": ns},
        "immutable": true,
        "data": {"metrics.properties": "someone else's"}}));
    common::kubectl_apply(&example("spark-pi-prometheus.yaml", &ns));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let failed = common::wait_state(&apps, "spark-pi", "FAILED", WAIT).await;
    let message = failed.status.unwrap().application_state.error_message;
    assert!(
        message.contains("Prometheus ConfigMap"),
        "the error names what failed: {message}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("no driver left", WAIT, || async {
        pods.list(&Default::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let kept = config_maps.get("spark-pi-prom-conf").await.unwrap();
    assert_eq!(
        kept.data.unwrap()["metrics.properties"],
        "someone else's",
        "the ConfigMap in the way is not changed"
    );
}

#[tokio::test]
async fn ui_options_a_moved_ui_port_and_driver_ingress_options_on_the_servlet_example() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ui-servlet").await;
    let (_served, _certs) = start(
        &ns,
        &[
            "--ingress-url-format",
            "ingress.example.com/{{$appNamespace}}/{{$appName}}",
            "--ingress-annotations",
            r#"{"cert-manager.io/cluster-issuer":"letsencrypt"}"#,
        ],
    );
    let mut app = example("spark-pi-prometheus-servlet.yaml", &ns);
    app["spec"]["sparkConf"]["spark.ui.port"] = json!("4045");
    app["spec"]["sparkUIOptions"] = json!({
        "servicePort": 80, "servicePortName": "http-ui", "serviceType": "NodePort",
        "serviceAnnotations": {"example.com/owner": "data"}, "serviceLabels": {"team": "data"}
    });
    app["spec"]["driverIngressOptions"] = json!([{
        "servicePort": 8888, "servicePortName": "jupyter",
        "ingressURLFormat": "{{$appName}}-jupyter.example.com"
    }]);
    common::kubectl_apply(&app);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let name = "spark-pi-python";
    let status = submitted(&apps, name).await.status.unwrap();

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let ui = services.get(&format!("{name}-ui-svc")).await.unwrap();
    let spec = ui.spec.unwrap();
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http-ui"), 80));
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(4045)),
        "the Service reaches the UI where spark.ui.port puts it"
    );
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(ui.metadata.labels.unwrap()["team"], "data");
    assert_eq!(
        ui.metadata.annotations.unwrap()["example.com/owner"],
        "data"
    );
    assert_eq!(status.driver_info.web_ui_port, 80);
    assert_eq!(
        status.driver_info.web_ui_address,
        format!("{}:80", spec.cluster_ip.unwrap())
    );
    // The path form: the UI told its base path, nginx's rewrite, the flag's annotations.
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let ingress = ingresses.get(&format!("{name}-ui-ingress")).await.unwrap();
    let annotations = ingress.metadata.annotations.unwrap();
    assert_eq!(annotations["cert-manager.io/cluster-issuer"], "letsencrypt");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/rewrite-target"],
        "/$2"
    );
    let rule = &ingress.spec.unwrap().rules.unwrap()[0];
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!(
        path.path.as_deref(),
        Some(format!("/{ns}/{name}(/|$)(.*)").as_str())
    );
    assert_eq!(
        status.driver_info.web_ui_ingress_address,
        format!("http://ingress.example.com/{ns}/{name}")
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let props = config_maps
        .list(&labelled(&status.submission_id))
        .await
        .unwrap()
        .items
        .into_iter()
        .find_map(|c| c.data?.get("spark.properties").cloned())
        .unwrap();
    assert!(
        props.contains(&format!("spark.ui.proxyBase=/{ns}/{name}")),
        "{props}"
    );
    // driverIngressOptions: a Service and an Ingress per port.
    let extra = services.get(&format!("{name}-driver-8888")).await.unwrap();
    assert_eq!(extra.spec.unwrap().ports.unwrap()[0].port, 8888);
    let extra = ingresses.get(&format!("{name}-ing-8888")).await.unwrap();
    let rule = &extra.spec.unwrap().rules.unwrap()[0];
    assert_eq!(
        rule.host.as_deref(),
        Some("spark-pi-python-jupyter.example.com")
    );
    // No spec.monitoring: no Prometheus ConfigMap.
    assert!(
        config_maps
            .get_opt(&format!("{name}-prom-conf"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn with_the_flags_off_there_is_no_ui_service_ingress_or_pdb() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ui-off").await;
    let (_served, _certs) = start(
        &ns,
        &[
            "--enable-ui-service=false",
            "--ingress-url-format",
            "{{$appName}}.ingress.example.com",
        ],
    );
    let mut app = example("spark-pi-prometheus-servlet.yaml", &ns);
    app["spec"]["driverPodDisruptionBudget"] = json!(true);
    common::kubectl_apply(&app);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let status = submitted(&apps, "spark-pi-python").await.status.unwrap();
    let by_id = labelled(&status.submission_id);
    let services: Vec<Service> = Api::namespaced(client.clone(), &ns)
        .list(&by_id)
        .await
        .unwrap()
        .items;
    assert_eq!(
        names(&services).len(),
        1,
        "only the driver's headless Service: {:?}",
        names(&services)
    );
    assert!(names(&services)[0].ends_with("-driver-svc"));
    let ingresses: Vec<Ingress> = Api::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(ingresses.is_empty(), "{:?}", names(&ingresses));
    // Whatever policy version this apiserver serves, no PodDisruptionBudget exists.
    let pdbs = common::kubectl(&["get", "poddisruptionbudgets", "-n", &ns, "-o", "name"]);
    assert!(pdbs.status.success());
    assert_eq!(String::from_utf8_lossy(&pdbs.stdout).trim(), "");
    assert_eq!(status.driver_info.web_ui_service_name, "");
    assert_eq!(status.driver_info.web_ui_address, "");
}

/// `--enable-driver-pdb` with `driverPodDisruptionBudget: true`: kubeflow master's policy/v1
/// PDB. An apiserver older than 1.21 (this harness runs 1.20) does not serve policy/v1: then the
/// submission fails saying so, rather than running the driver unprotected.
#[tokio::test]
async fn the_driver_pdb_is_created_where_policy_v1_is_served_and_refused_loudly_where_not() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ui-pdb").await;
    let (_served, _certs) = start(&ns, &["--enable-driver-pdb"]);
    let mut app = example("spark-pi-prometheus-servlet.yaml", &ns);
    app["spec"]["driverPodDisruptionBudget"] = json!(true);
    common::kubectl_apply(&app);
    let name = "spark-pi-python";
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let served = common::kubectl(&["api-versions"]);
    let policy_v1 = String::from_utf8_lossy(&served.stdout)
        .lines()
        .any(|l| l.trim() == "policy/v1");
    if policy_v1 {
        submitted(&apps, name).await;
        let pdb = common::kubectl_ok(
            &[
                "get",
                "poddisruptionbudgets.v1.policy",
                "-n",
                &ns,
                &format!("{name}-driver"),
                "-o",
                "json",
            ],
            None,
        );
        let pdb: Value = serde_json::from_str(&pdb).unwrap();
        assert_eq!(pdb["spec"]["minAvailable"], 1);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            json!({"spark-role": "driver", "sparkoperator.k8s.io/app-name": name})
        );
    } else {
        let failed = eventually("FAILED with the reason", WAIT, || async {
            let app = apps.get_opt(name).await.ok()??;
            let st = app.status?.application_state;
            (st.state.to_string() == "FAILED").then_some(st.error_message)
        })
        .await;
        assert!(
            failed.contains("policy/v1") && failed.contains("1.21"),
            "{failed}"
        );
        // The driver of the failed submission does not linger.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        common::wait_pod_gone(&pods, &format!("{name}-driver"), "no driver", WAIT).await;
    }
}
