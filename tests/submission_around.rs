//! The objects kubeflow's controller creates around the driver, as native submission builds
//! them: the Prometheus ConfigMap `<app>-prom-conf`, the Spark UI Service and Ingress, the
//! `driverIngressOptions` Services and Ingresses, the driver's PodDisruptionBudget, and the
//! Spark settings that go with them. Offline; the e2e tests create them on an apiserver.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use spark_webhook::crd::SparkApplication;
use spark_webhook::render::{RenderOptions, render};
use spark_webhook::submission::{
    self, Submission, SubmitOptions, UiOptions, build, owned_by_driver,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubeflow");

fn example(file: &str) -> SparkApplication {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).expect("fixture");
    let mut app: SparkApplication = yaml_serde::from_str(&text).expect("example parses");
    app.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    app.metadata.uid = Some("u-1".into());
    app
}

/// A Python app with `extra` merged into its spec (YAML, as under `spec:`).
fn app(extra: &str) -> SparkApplication {
    let mut doc: serde_json::Value = serde_json::json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": "spark-pi", "namespace": "default", "uid": "u-1"},
        "spec": {"type": "Python", "sparkVersion": "3.5.3", "image": "spark:3.5.3",
                 "mainApplicationFile": "local:///pi.py", "driver": {}, "executor": {}}
    });
    if !extra.trim().is_empty() {
        let extra: serde_json::Value = yaml_serde::from_str(extra).expect("extra spec");
        for (k, v) in extra.as_object().expect("a mapping") {
            doc["spec"][k] = v.clone();
        }
    }
    serde_json::from_value(doc).expect("app parses")
}

fn with_ui(ui: UiOptions) -> SubmitOptions {
    SubmitOptions {
        ui,
        ..SubmitOptions::default()
    }
}

fn ingress_at(format: &str) -> SubmitOptions {
    with_ui(UiOptions {
        ingress_url_format: Some(format.into()),
        ..UiOptions::default()
    })
}

fn props(app: &SparkApplication, opts: &SubmitOptions) -> BTreeMap<String, String> {
    submission::properties(app, 1, opts).expect("properties")
}

fn port(svc: &Service) -> (String, i32, String) {
    let p = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        format!("{:?}", p.target_port.as_ref().unwrap()),
    )
}

fn ui_service(sub: &Submission) -> &Service {
    sub.web_ui.service.as_ref().expect("UI Service")
}

fn rule(ing: &Ingress) -> (String, String, String, i32) {
    let spec = ing.spec.as_ref().unwrap();
    let rule = &spec.rules.as_ref().unwrap()[0];
    let path = &rule.http.as_ref().unwrap().paths[0];
    let backend = path.backend.service.as_ref().unwrap();
    (
        rule.host.clone().unwrap_or_default(),
        path.path.clone().unwrap_or_default(),
        backend.name.clone(),
        backend.port.as_ref().unwrap().number.unwrap(),
    )
}

fn volumes_of(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let cm = v.config_map.as_ref()?;
            Some((v.name.clone(), cm.name.clone()))
        })
        .collect()
}

#[test]
fn kubeflows_prometheus_example_gets_its_config_map_agent_and_mounts() {
    let app = example("spark-pi-prometheus.yaml");
    let sub = build(&app, 1, &SubmitOptions::default()).expect("builds");
    let cm = sub.prometheus_config_map.as_ref().expect("<app>-prom-conf");
    assert_eq!(cm.metadata.name.as_deref(), Some("spark-pi-prom-conf"));
    let data = cm.data.as_ref().unwrap();
    assert_eq!(
        data["metrics.properties"],
        "\n*.sink.jmx.class=org.apache.spark.metrics.sink.JmxSink\n\
         driver.source.jvm.class=org.apache.spark.metrics.source.JvmSource\n\
         executor.source.jvm.class=org.apache.spark.metrics.source.JvmSource"
    );
    let exporter = &data["prometheus.yaml"];
    assert!(exporter.starts_with("\nlowercaseOutputName: true\nattrNameSnakeCase: true\nrules:\n"));
    assert_eq!(exporter.matches("- pattern:").count(), 13, "{exporter}");
    // Owned by the app (it exists before the driver) and labelled with the attempt.
    let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("SparkApplication", "u-1")
    );
    let labels = cm.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels["sparkoperator.k8s.io/submission-id"],
        sub.submission_id
    );
    assert_eq!(
        labels["sparkoperator.k8s.io/created-by-spark-operator"],
        "true"
    );

    let conf = props(&app, &SubmitOptions::default());
    assert_eq!(
        conf["spark.metrics.conf"],
        "/etc/metrics/conf/metrics.properties"
    );
    assert_eq!(conf["spark.metrics.namespace"], "default.spark-pi");
    let agent = "-javaagent:/prometheus/jmx_prometheus_javaagent-0.11.0.jar=8090:/etc/metrics/conf/prometheus.yaml";
    assert_eq!(conf["spark.driver.extraJavaOptions"], agent);
    assert_eq!(conf["spark.executor.extraJavaOptions"], agent);

    // The driver mounts it, and so does every executor through the pod template (webhook or not).
    let wanted = (
        "spark-pi-prom-conf-vol".to_string(),
        "spark-pi-prom-conf".to_string(),
    );
    assert!(volumes_of(&sub.driver_pod).contains(&wanted));
    let template = &sub.config_map.data.as_ref().unwrap()["executor-pod-template.yaml"];
    let template: Pod = yaml_serde::from_str(template).expect("template parses");
    assert!(volumes_of(&template).contains(&wanted), "{template:?}");
    let mounts = template.spec.as_ref().unwrap().containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == wanted.0 && m.mount_path == "/etc/metrics/conf")
    );
}

#[test]
fn the_apps_own_metrics_files_replace_kubeflows_defaults() {
    let own = app(r#"
monitoring:
  exposeDriverMetrics: true
  exposeExecutorMetrics: false
  metricsProperties: "*.sink.console.class=org.apache.spark.metrics.sink.ConsoleSink"
  prometheus: {jmxExporterJar: /j.jar, configuration: "rules: []"}
"#);
    let sub = build(&own, 1, &SubmitOptions::default()).unwrap();
    let data = sub.prometheus_config_map.unwrap().data.unwrap();
    assert_eq!(
        data["metrics.properties"],
        "*.sink.console.class=org.apache.spark.metrics.sink.ConsoleSink"
    );
    assert_eq!(data["prometheus.yaml"], "rules: []");

    // A file in the image replaces its key; both in the image: no ConfigMap, no mount.
    let one = app(r#"
monitoring:
  exposeDriverMetrics: true
  exposeExecutorMetrics: false
  metricsPropertiesFile: /opt/metrics.properties
  prometheus: {jmxExporterJar: /j.jar}
"#);
    let sub = build(&one, 1, &SubmitOptions::default()).unwrap();
    let keys: Vec<String> = sub
        .prometheus_config_map
        .unwrap()
        .data
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(keys, ["prometheus.yaml"]);
    assert_eq!(
        props(&one, &SubmitOptions::default())["spark.metrics.conf"],
        "/opt/metrics.properties"
    );
    let both = app(r#"
monitoring:
  exposeDriverMetrics: true
  exposeExecutorMetrics: false
  metricsPropertiesFile: /opt/metrics.properties
  prometheus: {jmxExporterJar: /j.jar, configFile: /opt/prometheus.yaml, port: 9100}
"#);
    let sub = build(&both, 1, &SubmitOptions::default()).unwrap();
    assert!(sub.prometheus_config_map.is_none());
    assert!(
        volumes_of(&sub.driver_pod)
            .iter()
            .all(|(_, cm)| cm != "spark-pi-prom-conf")
    );
    assert_eq!(
        props(&both, &SubmitOptions::default())["spark.driver.extraJavaOptions"],
        "-javaagent:/j.jar=9100:/opt/prometheus.yaml"
    );
    // No monitoring: nothing.
    assert!(
        build(&app(""), 1, &SubmitOptions::default())
            .unwrap()
            .prometheus_config_map
            .is_none()
    );
}

#[test]
fn the_ui_service_is_kubeflows_and_targets_the_real_ui_port() {
    // kubeflow's servlet example: on by default, ClusterIP, port = target = 4040.
    let servlet = example("spark-pi-prometheus-servlet.yaml");
    let sub = build(&servlet, 1, &SubmitOptions::default()).unwrap();
    assert!(sub.prometheus_config_map.is_none(), "no spec.monitoring");
    let svc = ui_service(&sub);
    assert_eq!(svc.metadata.name.as_deref(), Some("spark-pi-python-ui-svc"));
    assert_eq!(
        port(svc),
        ("spark-driver-ui-port".into(), 4040, "Int(4040)".into())
    );
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(
        spec.selector.clone().unwrap(),
        BTreeMap::from([
            ("spark-role".to_string(), "driver".to_string()),
            (
                "sparkoperator.k8s.io/app-name".to_string(),
                "spark-pi-python".to_string()
            ),
        ])
    );
    // The selector matches the driver pod.
    let driver_labels = sub.driver_pod.metadata.labels.clone().unwrap();
    for (k, v) in spec.selector.as_ref().unwrap() {
        assert_eq!(driver_labels.get(k), Some(v), "{k}");
    }
    assert_eq!(
        svc.metadata.labels.as_ref().unwrap()["sparkoperator.k8s.io/submission-id"],
        sub.submission_id
    );

    // spark.ui.port moves both ports when sparkUIOptions is absent.
    let moved = app("sparkConf: {spark.ui.port: '4045'}");
    let sub = build(&moved, 1, &SubmitOptions::default()).unwrap();
    assert_eq!(
        port(ui_service(&sub)),
        ("spark-driver-ui-port".into(), 4045, "Int(4045)".into())
    );
    // With sparkUIOptions: its port (kubeflow: 4040 when unset), type, name, annotations, labels.
    let options = app(r#"
sparkConf: {spark.ui.port: '4045'}
sparkUIOptions:
  servicePortName: http-ui
  serviceType: NodePort
  serviceAnnotations: {a.example.com/x: "1"}
  serviceLabels: {team: data}
"#);
    let sub = build(&options, 1, &SubmitOptions::default()).unwrap();
    let svc = ui_service(&sub);
    assert_eq!(port(svc), ("http-ui".into(), 4040, "Int(4045)".into()));
    assert_eq!(
        svc.spec.as_ref().unwrap().type_.as_deref(),
        Some("NodePort")
    );
    assert_eq!(
        svc.metadata.annotations.as_ref().unwrap()["a.example.com/x"],
        "1"
    );
    let labels = svc.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "data");
    assert_eq!(labels["sparkoperator.k8s.io/app-name"], "spark-pi");
    let mut options = options;
    options.spec.spark_ui_options.as_mut().unwrap().service_port = Some(80);
    let sub = build(&options, 1, &SubmitOptions::default()).unwrap();
    assert_eq!(port(ui_service(&sub)).1, 80);

    // --enable-ui-service=false: no UI Service and no Ingress, whatever the URL format.
    let off = with_ui(UiOptions {
        enable_ui_service: false,
        ingress_url_format: Some("{{$appName}}.example.com".into()),
        ..UiOptions::default()
    });
    let sub = build(&app(""), 1, &off).unwrap();
    assert_eq!(sub.ui_services().count() + sub.ingresses().count(), 0);
}

#[test]
fn the_ui_ingress_follows_the_url_format_in_host_and_path_forms() {
    // Host form: no path, no rewrite, no proxyBase.
    let opts = ingress_at("{{$appName}}.ingress.example.com");
    let plain = app("");
    let sub = build(&plain, 1, &opts).unwrap();
    let ing = sub.web_ui.ingress.as_ref().expect("UI Ingress");
    assert_eq!(ing.metadata.name.as_deref(), Some("spark-pi-ui-ingress"));
    assert_eq!(
        rule(ing),
        (
            "spark-pi.ingress.example.com".into(),
            String::new(),
            "spark-pi-ui-svc".into(),
            4040
        )
    );
    assert!(ing.metadata.annotations.is_none());
    assert_eq!(
        sub.web_ui.ingress_address,
        "http://spark-pi.ingress.example.com"
    );
    assert!(!props(&plain, &opts).contains_key("spark.ui.proxyBase"));

    // Path form (placeholders with spaces, as kubeflow's regexps allow): capture groups, nginx
    // rewrite, and the UI told its base path.
    let opts = ingress_at("https://ingress.example.com/{{ $appNamespace }}/{{$appName}}");
    let sub = build(&plain, 1, &opts).unwrap();
    let ing = sub.web_ui.ingress.as_ref().unwrap();
    assert_eq!(
        rule(ing),
        (
            "ingress.example.com".into(),
            "/default/spark-pi(/|$)(.*)".into(),
            "spark-pi-ui-svc".into(),
            4040
        )
    );
    let path = &ing.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
        .http
        .as_ref()
        .unwrap()
        .paths[0];
    assert_eq!(path.path_type, "ImplementationSpecific");
    assert_eq!(
        ing.metadata.annotations.as_ref().unwrap()["nginx.ingress.kubernetes.io/rewrite-target"],
        "/$2"
    );
    assert_eq!(
        sub.web_ui.ingress_address,
        "https://ingress.example.com/default/spark-pi"
    );
    let conf = props(&plain, &opts);
    assert_eq!(conf["spark.ui.proxyBase"], "/default/spark-pi");
    assert_eq!(conf["spark.ui.proxyRedirectUri"], "/");
    // The app's own proxyBase wins.
    let own = app("sparkConf: {spark.ui.proxyBase: /mine}");
    assert_eq!(props(&own, &opts)["spark.ui.proxyBase"], "/mine");

    // Class name, TLS and annotations: the flags' unless the app has its own.
    let tls: Vec<k8s_openapi::api::networking::v1::IngressTLS> =
        serde_json::from_str(r#"[{"hosts":["*.example.com"],"secretName":"flag-tls"}]"#).unwrap();
    let flags = with_ui(UiOptions {
        ingress_url_format: Some("{{$appName}}.example.com".into()),
        ingress_class_name: Some("nginx".into()),
        ingress_tls: tls.clone(),
        ingress_annotations: BTreeMap::from([("flag/a".to_string(), "1".to_string())]),
        ..UiOptions::default()
    });
    let sub = build(&plain, 1, &flags).unwrap();
    let ing = sub.web_ui.ingress.as_ref().unwrap();
    let spec = ing.spec.as_ref().unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    assert_eq!(spec.tls.as_ref().unwrap(), &tls);
    assert_eq!(ing.metadata.annotations.as_ref().unwrap()["flag/a"], "1");
    let own = app(r#"
sparkUIOptions:
  ingressAnnotations: {app/a: "2"}
  ingressTLS: [{hosts: [spark-pi.example.com], secretName: app-tls}]
"#);
    let sub = build(&own, 1, &flags).unwrap();
    let ing = sub.web_ui.ingress.as_ref().unwrap();
    let annotations = ing.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations,
        BTreeMap::from([("app/a".to_string(), "2".to_string())])
    );
    let tls = ing.spec.as_ref().unwrap().tls.clone().unwrap();
    assert_eq!(tls[0].secret_name.as_deref(), Some("app-tls"));
}

#[test]
fn driver_ingress_options_get_a_service_and_an_ingress_per_port() {
    let a = app(r#"
driverIngressOptions:
- servicePort: 8888
  servicePortName: jupyter
  serviceType: NodePort
  serviceLabels: {svc: jupyter}
  ingressURLFormat: "{{$appName}}-jupyter.example.com"
- servicePort: 7070
  servicePortName: ""
"#);
    let opts = with_ui(UiOptions {
        ingress_class_name: Some("nginx".into()),
        ..UiOptions::default()
    });
    let sub = build(&a, 1, &opts).unwrap();
    let extra: Vec<(&str, (String, i32, String))> = sub
        .web_ui
        .extra_services
        .iter()
        .map(|s| (s.metadata.name.as_deref().unwrap(), port(s)))
        .collect();
    assert_eq!(
        extra,
        [
            (
                "spark-pi-driver-8888",
                ("jupyter".into(), 8888, "Int(8888)".into())
            ),
            (
                "spark-pi-driver-7070",
                ("driver-ing-7070".into(), 7070, "Int(7070)".into())
            ),
        ]
    );
    assert_eq!(
        sub.web_ui.extra_services[0]
            .spec
            .as_ref()
            .unwrap()
            .type_
            .as_deref(),
        Some("NodePort")
    );
    assert_eq!(sub.web_ui.extra_ingresses.len(), 1);
    let ing = &sub.web_ui.extra_ingresses[0];
    assert_eq!(ing.metadata.name.as_deref(), Some("spark-pi-ing-8888"));
    assert_eq!(
        rule(ing),
        (
            "spark-pi-jupyter.example.com".into(),
            String::new(),
            "spark-pi-driver-8888".into(),
            8888
        )
    );
    assert_eq!(
        ing.spec.as_ref().unwrap().ingress_class_name.as_deref(),
        Some("nginx")
    );
    // The UI Service is there too, and no UI Ingress without --ingress-url-format.
    assert!(sub.web_ui.service.is_some() && sub.web_ui.ingress.is_none());
}

#[test]
fn the_driver_pdb_needs_the_flag_and_the_field() {
    let asks = app("driverPodDisruptionBudget: true");
    let on = SubmitOptions {
        enable_driver_pdb: true,
        ..SubmitOptions::default()
    };
    assert!(
        build(&asks, 1, &SubmitOptions::default())
            .unwrap()
            .driver_pdb
            .is_none()
    );
    assert!(build(&app(""), 1, &on).unwrap().driver_pdb.is_none());
    assert!(
        build(&app("driverPodDisruptionBudget: false"), 1, &on)
            .unwrap()
            .driver_pdb
            .is_none()
    );
    let mut sub = build(&asks, 2, &on).unwrap();
    let pdb = sub.driver_pdb.clone().expect("PDB");
    assert_eq!(pdb.metadata.name.as_deref(), Some("spark-pi-driver-2"));
    assert_eq!(pdb.metadata.name, sub.driver_pod.metadata.name);
    let spec = pdb.spec.unwrap();
    assert_eq!(
        spec.min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let selector = spec.selector.unwrap().match_labels.unwrap();
    let driver_labels = sub.driver_pod.metadata.labels.clone().unwrap();
    assert_eq!(selector.len(), 2);
    for (k, v) in &selector {
        assert_eq!(driver_labels.get(k), Some(v), "{k}");
    }
    let labels = pdb.metadata.labels.unwrap();
    assert_eq!(
        labels["sparkoperator.k8s.io/launched-by-spark-operator"],
        "true"
    );
    assert_eq!(
        labels["sparkoperator.k8s.io/submission-id"],
        sub.submission_id
    );

    // Created after the driver: owned by it, with the UI objects.
    owned_by_driver(&mut sub, "driver-uid");
    let owners = |refs: &Option<
        Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    >| { refs.as_ref().map(|r| (r[0].kind.clone(), r[0].uid.clone())) };
    let driver = Some(("Pod".to_string(), "driver-uid".to_string()));
    assert_eq!(
        owners(&sub.driver_pdb.as_ref().unwrap().metadata.owner_references),
        driver
    );
    assert_eq!(owners(&ui_service(&sub).metadata.owner_references), driver);
}

#[test]
fn render_prints_the_objects_around_the_driver() {
    let opts = |file: &str| RenderOptions {
        file: format!("{FIXTURES}/{file}").into(),
        namespace: "default".into(),
        attempt: 1,
        default_spark_image: None,
        ingress_url_format: Some("{{$appName}}.example.com".into()),
        enable_driver_pdb: true,
        batch: Default::default(),
    };
    let out = render(&opts("spark-pi-prometheus.yaml")).expect("renders");
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("  name: "))
        .collect();
    for want in [
        "spark-pi-prom-conf",
        "spark-pi-ui-svc",
        "spark-pi-ui-ingress",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(out.contains("kind: Ingress") && out.contains("kind: ConfigMap"));
}

/// `render --enable-batch-scheduler` prints the PodGroup first, as `serve` creates it before the
/// driver; without the flag an app naming Volcano is refused with the reason, as by `serve`.
#[test]
fn render_prints_the_pod_group_with_batch_scheduling_enabled() {
    let text = std::fs::read_to_string(format!("{FIXTURES}/spark-pi-prometheus.yaml")).unwrap();
    let mut app: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    app["spec"]["batchScheduler"] = "volcano".into();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.json");
    std::fs::write(&file, app.to_string()).unwrap();
    let opts = |enabled: bool| RenderOptions {
        file: file.clone(),
        namespace: "default".into(),
        attempt: 1,
        default_spark_image: None,
        ingress_url_format: None,
        enable_driver_pdb: false,
        batch: spark_webhook::scheduling::BatchOptions {
            enabled,
            ..Default::default()
        },
    };
    let out = render(&opts(true)).expect("renders");
    let first = out
        .split("---\n")
        .find(|d| !d.trim().is_empty() && !d.starts_with('#'));
    assert!(
        first.is_some_and(
            |d| d.starts_with("apiVersion: scheduling.volcano.sh/v1beta1\nkind: PodGroup\n")
        ),
        "{out}"
    );
    let err = render(&opts(false)).expect_err("batch scheduling is off");
    assert!(err.contains("--enable-batch-scheduler"), "{err}");
}
