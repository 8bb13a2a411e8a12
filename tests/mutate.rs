//! Pod mutation rules (`spark_webhook::mutate`) on realistic pods, offline.
//!
//! Fixtures:
//! - `spark-submit-3.3.4/driver-pod.json`: a driver pod recorded from Spark 3.3.4's own
//!   spark-submit (see the README beside it).
//! - `executor-pod.json`: an executor pod as Spark 3.3.4's driver creates it, written from
//!   Spark's `BasicExecutorFeatureStep` and `LocalDirsFeatureStep` for the same submission
//!   (container `spark-kubernetes-executor`, Spark's labels plus the
//!   `spark.kubernetes.executor.label.*` ones kubeflow sets, its env, port 7079, the
//!   `spark-local-dir-1` emptyDir, the executor conf volume, an ownerReference to the driver).
//! - `sparkapplication.yaml`: the SparkApplication both belong to, setting every field a rule
//!   reads.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, Lifecycle, LifecycleHandler, Pod, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use serde_json::{Value, json};
use spark_webhook::crd::{GPUSpec, SparkApplication};
use spark_webhook::labels::{self, SparkRole, classify};
use spark_webhook::mutate::{
    MutateError, MutationOptions, mutate_pod, pod_patch, spark_container_index,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{path}")).expect("fixture is readable")
}

fn app() -> SparkApplication {
    yaml_serde::from_str(&read("sparkapplication.yaml")).expect("fixture app parses")
}

fn raw(role: SparkRole) -> Value {
    let path = match role {
        SparkRole::Driver => "spark-submit-3.3.4/driver-pod.json",
        SparkRole::Executor => "executor-pod.json",
    };
    serde_json::from_str(&read(path)).expect("fixture pod parses")
}

fn pod(role: SparkRole) -> Pod {
    serde_json::from_value(raw(role)).expect("fixture pod is a Pod")
}

fn mutated_with(app: &SparkApplication, role: SparkRole, opts: &MutationOptions) -> Pod {
    let mut p = pod(role);
    mutate_pod(app, role, &mut p, opts).expect("mutation succeeds");
    p
}

fn mutated(role: SparkRole) -> Pod {
    mutated_with(&app(), role, &MutationOptions::default())
}

fn spark(p: &Pod) -> &Container {
    let spec = p.spec.as_ref().expect("spec");
    spec.containers
        .iter()
        .find(|c| c.name.starts_with("spark-kubernetes-") || c.name == "executor")
        .expect("spark container")
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.iter().flatten().find(|e| e.name == name)
}

fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    env(c, name).and_then(|e| e.value.as_deref())
}

fn volume<'a>(p: &'a Pod, name: &str) -> Option<&'a Volume> {
    p.spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
}

fn mount<'a>(c: &'a Container, path: &str) -> Option<&'a VolumeMount> {
    c.volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == path)
}

fn labels(p: &Pod) -> &std::collections::BTreeMap<String, String> {
    p.metadata.labels.as_ref().expect("labels")
}

fn both() -> [SparkRole; 2] {
    [SparkRole::Driver, SparkRole::Executor]
}

// ---------------------------------------------------------------------------------------------
// classify and spark_container_index

#[test]
fn classify_spark_pods_only() {
    assert_eq!(
        classify(&pod(SparkRole::Driver)),
        Some((SparkRole::Driver, "spark-pi".to_string()))
    );
    assert_eq!(
        classify(&pod(SparkRole::Executor)),
        Some((SparkRole::Executor, "spark-pi".to_string()))
    );
    let with_labels = |labels: Value| -> Pod {
        serde_json::from_value(json!({"metadata": {"labels": labels}})).expect("pod")
    };
    assert_eq!(classify(&Pod::default()), None);
    assert_eq!(
        classify(&with_labels(json!({"spark-role": "driver"}))),
        None
    );
    assert_eq!(
        classify(&with_labels(
            json!({"spark-role": "driver", "sparkoperator.k8s.io/app-name": ""})
        )),
        None
    );
    assert_eq!(
        classify(&with_labels(
            json!({"spark-role": "connect-server", "sparkoperator.k8s.io/app-name": "a"})
        )),
        None
    );
    assert_eq!(
        classify(&with_labels(json!({"sparkoperator.k8s.io/app-name": "a"}))),
        None
    );
}

fn pod_with_containers(names: &[&str]) -> Pod {
    let containers: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "image": "img"}))
        .collect();
    serde_json::from_value(json!({"spec": {"containers": containers}})).expect("pod")
}

#[test]
fn spark_container_by_default_names() {
    let app = app();
    let p = pod_with_containers(&["istio-proxy", "spark-kubernetes-driver"]);
    assert_eq!(spark_container_index(&p, &app, SparkRole::Driver), Ok(1));
    let p = pod_with_containers(&["istio-proxy", "executor"]);
    assert_eq!(spark_container_index(&p, &app, SparkRole::Executor), Ok(1));
    let p = pod_with_containers(&["istio-proxy", "spark-kubernetes-executor"]);
    assert_eq!(spark_container_index(&p, &app, SparkRole::Executor), Ok(1));
    // The executor names do not count for drivers.
    let p = pod_with_containers(&["log-shipper", "executor"]);
    assert_eq!(spark_container_index(&p, &app, SparkRole::Driver), Ok(1));
}

#[test]
fn spark_container_by_pod_template_container_name() {
    let mut app = app();
    app.spec.spark_conf.insert(
        "spark.kubernetes.executor.podTemplateContainerName".into(),
        "main".into(),
    );
    let p = pod_with_containers(&["spark-kubernetes-executor", "main"]);
    assert_eq!(spark_container_index(&p, &app, SparkRole::Executor), Ok(1));
    // Only for the role it names.
    let p = pod_with_containers(&["spark-kubernetes-driver", "main"]);
    assert_eq!(spark_container_index(&p, &app, SparkRole::Driver), Ok(0));
    // Named but absent: fall back to the default names.
    let p = pod_with_containers(&["sidecar", "spark-kubernetes-executor"]);
    assert_eq!(spark_container_index(&p, &app, SparkRole::Executor), Ok(1));
}

#[test]
fn spark_container_is_first_non_sidecar_else_error() {
    let app = app();
    // log-shipper is a declared driver sidecar.
    let p = pod_with_containers(&["log-shipper", "main", "other"]);
    assert_eq!(spark_container_index(&p, &app, SparkRole::Driver), Ok(1));
    // Executors declare no sidecars: the first container is it.
    assert_eq!(spark_container_index(&p, &app, SparkRole::Executor), Ok(0));

    let p = pod_with_containers(&["log-shipper"]);
    let err = spark_container_index(&p, &app, SparkRole::Driver).expect_err("no spark container");
    assert!(matches!(err, MutateError::NoSparkContainer { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with("SparkApplication default/spark-pi: the driver pod"),
        "{text}"
    );
    assert!(text.contains("driver.sidecars"), "{text}");

    let err = spark_container_index(&Pod::default(), &app, SparkRole::Executor)
        .expect_err("no containers");
    assert!(
        err.to_string().contains("spec.containers is empty"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// One test per rule, on the realistic pods

#[test]
fn owner_reference_on_driver_only() {
    let driver = mutated(SparkRole::Driver);
    let refs = driver.metadata.owner_references.expect("owner refs");
    assert_eq!(refs.len(), 1);
    let r = &refs[0];
    assert_eq!(r.api_version, "sparkoperator.k8s.io/v1beta2");
    assert_eq!(r.kind, "SparkApplication");
    assert_eq!(r.name, "spark-pi");
    assert_eq!(r.uid, "3f1c2b4a-9d8e-4f7a-b6c5-0a1b2c3d4e5f");
    assert_eq!(r.controller, Some(true));
    assert_eq!(r.block_owner_deletion, Some(true));

    // Executors keep exactly the driver-pod reference Spark set.
    let executor = mutated(SparkRole::Executor);
    assert_eq!(
        executor.metadata.owner_references,
        pod(SparkRole::Executor).metadata.owner_references
    );
}

#[test]
fn owner_reference_errors() {
    let mut app = app();
    app.metadata.uid = None;
    let mut p = pod(SparkRole::Driver);
    let err = mutate_pod(&app, SparkRole::Driver, &mut p, &MutationOptions::default())
        .expect_err("no uid");
    assert!(err.to_string().contains("metadata.uid is not set"), "{err}");

    let app = self::app();
    let mut p = pod(SparkRole::Driver);
    p.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job", "name": "other", "uid": "u-1",
            "controller": true
        }))
        .expect("ref"),
    ]);
    let err = mutate_pod(&app, SparkRole::Driver, &mut p, &MutationOptions::default())
        .expect_err("second controller");
    assert!(matches!(err, MutateError::OwnerConflict { .. }));
    assert!(err.to_string().contains("Job other (u-1)"), "{err}");
}

#[test]
fn labels_and_annotations() {
    for role in both() {
        let p = mutated(role);
        let l = labels(&p);
        assert_eq!(l.get("team").map(String::as_str), Some("data"), "{role}");
        assert_eq!(
            l.get("version").map(String::as_str),
            Some("3.3.4"),
            "{role}"
        );
        assert!(!l.contains_key("kueue.x-k8s.io/queue-name"), "{role}");
        // Spark's own labels are untouched.
        assert_eq!(l.get("spark-role").map(String::as_str), Some(role.as_str()));
        assert_eq!(
            l.get("spark-app-selector").map(String::as_str),
            Some("spark-8fd7365a36b5484dad5c083e293075a5")
        );
    }
    let driver = mutated(SparkRole::Driver);
    let ann = driver.metadata.annotations.expect("annotations");
    assert_eq!(
        ann.get("example.com/owner").map(String::as_str),
        Some("data-team")
    );
}

#[test]
fn reserved_labels_are_never_changed() {
    let mut app = app();
    for key in [
        "spark-role",
        "spark-app-selector",
        "sparkoperator.k8s.io/app-name",
        "sparkoperator.k8s.io/submission-id",
        "sparkoperator.k8s.io/launched-by-spark-operator",
    ] {
        app.spec
            .executor
            .pod
            .labels
            .insert(key.into(), "hijack".into());
    }
    let p = mutated_with(&app, SparkRole::Executor, &MutationOptions::default());
    assert_eq!(
        classify(&p),
        Some((SparkRole::Executor, "spark-pi".to_string()))
    );
    for key in [
        "spark-app-selector",
        "sparkoperator.k8s.io/submission-id",
        "sparkoperator.k8s.io/launched-by-spark-operator",
    ] {
        assert_ne!(
            labels(&p).get(key).map(String::as_str),
            Some("hijack"),
            "{key}"
        );
    }
}

#[test]
fn env_rules_driver() {
    let p = mutated(SparkRole::Driver);
    let c = spark(&p);
    assert_eq!(env_value(c, "LOG_LEVEL"), Some("DEBUG"));
    assert_eq!(env_value(c, "APP_MODE"), Some("batch"));
    // `env` replaces Spark's SPARK_USER in place: still first, no duplicate.
    let first = c.env.as_ref().and_then(|e| e.first()).expect("env");
    assert_eq!(
        (first.name.as_str(), first.value.as_deref()),
        ("SPARK_USER", Some("spark"))
    );
    let secret_ref = env(c, "DB_PASSWORD")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secretKeyRef");
    assert_eq!(
        (secret_ref.name.as_str(), secret_ref.key.as_str()),
        ("db", "password")
    );
    assert_eq!(
        env_value(c, "GOOGLE_APPLICATION_CREDENTIALS"),
        Some("/mnt/secrets/gcp/key.json")
    );
    let env_from = c.env_from.as_ref().expect("envFrom");
    assert_eq!(env_from.len(), 1);
    assert_eq!(
        env_from[0].config_map_ref.as_ref().map(|r| r.name.as_str()),
        Some("spark-pi-env")
    );
    // Spark's variables are kept.
    assert!(env(c, "SPARK_DRIVER_BIND_ADDRESS").is_some());
}

#[test]
fn env_rules_executor() {
    let p = mutated(SparkRole::Executor);
    let c = spark(&p);
    assert_eq!(env_value(c, "LOG_LEVEL"), Some("INFO"));
    assert_eq!(env_value(c, "APP_MODE"), Some("batch"));
    assert_eq!(
        env_value(c, "HADOOP_TOKEN_FILE_LOCATION"),
        Some("/mnt/secrets/hadoop/hadoop.token")
    );
    assert!(env(c, "GOOGLE_APPLICATION_CREDENTIALS").is_none());
    assert!(env(c, "SPARK_EXECUTOR_POD_IP").is_some());
}

#[test]
fn role_env_wins_over_secret_convention_and_env_vars() {
    let mut app = app();
    let pod_spec = &mut app.spec.driver.pod;
    pod_spec.env_vars.insert("LOG_LEVEL".into(), "WARN".into());
    pod_spec.env.push(EnvVar {
        name: "GOOGLE_APPLICATION_CREDENTIALS".into(),
        value: Some("/custom/key.json".into()),
        value_from: None,
    });
    let p = mutated_with(&app, SparkRole::Driver, &MutationOptions::default());
    let c = spark(&p);
    assert_eq!(env_value(c, "LOG_LEVEL"), Some("DEBUG"));
    assert_eq!(
        env_value(c, "GOOGLE_APPLICATION_CREDENTIALS"),
        Some("/custom/key.json")
    );
}

#[test]
fn secrets_are_mounted_like_spark_does() {
    let p = mutated(SparkRole::Driver);
    let v = volume(&p, "gcp-sa-volume").expect("secret volume");
    assert_eq!(
        v.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some("gcp-sa")
    );
    let m = mount(spark(&p), "/mnt/secrets/gcp").expect("secret mount");
    assert_eq!(m.name, "gcp-sa-volume");

    let p = mutated(SparkRole::Executor);
    assert!(volume(&p, "hadoop-token-volume").is_some());
    assert!(mount(spark(&p), "/mnt/secrets/hadoop/").is_some());
}

#[test]
fn spark_and_hadoop_config_maps() {
    for role in both() {
        let p = mutated(role);
        let c = spark(&p);
        let v = volume(&p, "spark-configmap-volume").expect("spark conf volume");
        assert_eq!(
            v.config_map.as_ref().map(|c| c.name.as_str()),
            Some("spark-pi-conf")
        );
        let v = volume(&p, "hadoop-configmap-volume").expect("hadoop conf volume");
        assert_eq!(
            v.config_map.as_ref().map(|c| c.name.as_str()),
            Some("spark-pi-hadoop")
        );
        let m = mount(c, "/etc/spark/conf").expect("spark conf mount");
        assert_eq!(
            (m.name.as_str(), m.read_only),
            ("spark-configmap-volume", Some(true))
        );
        let m = mount(c, "/etc/hadoop/conf").expect("hadoop conf mount");
        assert_eq!(
            (m.name.as_str(), m.read_only),
            ("hadoop-configmap-volume", Some(true))
        );
        // SPARK_CONF_DIR: Spark's /opt/spark/conf is replaced, not duplicated.
        let conf_dirs: Vec<_> = c
            .env
            .iter()
            .flatten()
            .filter(|e| e.name == "SPARK_CONF_DIR")
            .collect();
        assert_eq!(conf_dirs.len(), 1, "{role}");
        assert_eq!(conf_dirs[0].value.as_deref(), Some("/etc/spark/conf"));
        assert_eq!(env_value(c, "HADOOP_CONF_DIR"), Some("/etc/hadoop/conf"));
        // Spark's own conf volume stays mounted where Spark put it.
        assert!(mount(c, "/opt/spark/conf").is_some());
    }
}

#[test]
fn role_config_maps() {
    let p = mutated(SparkRole::Driver);
    // A dotted ConfigMap name gets kubeflow's sanitised, hashed volume name.
    let v = volume(&p, "spark-application-conf-faf58873-vol").expect("volume");
    assert_eq!(
        v.config_map.as_ref().map(|c| c.name.as_str()),
        Some("spark.application.conf")
    );
    let m = mount(spark(&p), "/etc/app").expect("mount");
    assert_eq!(
        (m.name.as_str(), m.read_only),
        ("spark-application-conf-faf58873-vol", Some(true))
    );

    let p = mutated(SparkRole::Executor);
    assert!(volume(&p, "executor-extra-vol").is_some());
    assert!(mount(spark(&p), "/etc/extra").is_some());
}

#[test]
fn app_volumes_named_by_volume_mounts() {
    let app = app();
    let p = mutated(SparkRole::Driver);
    assert_eq!(volume(&p, "data"), app.spec.volumes.first());
    assert_eq!(
        mount(spark(&p), "/data").map(|m| m.name.as_str()),
        Some("data")
    );
    // Local dirs are Spark's business; scratch is not mounted in the driver.
    assert!(volume(&p, "spark-local-dir-ssd").is_none());
    assert!(mount(spark(&p), "/tmp/spark-local").is_none());
    assert!(volume(&p, "scratch").is_none());

    let p = mutated(SparkRole::Executor);
    assert_eq!(
        mount(spark(&p), "/data").and_then(|m| m.read_only),
        Some(true)
    );
    assert!(
        volume(&p, "scratch")
            .and_then(|v| v.empty_dir.as_ref())
            .is_some()
    );
    assert!(mount(spark(&p), "/scratch").is_some());
    // Spark's scratch volume is untouched.
    assert!(volume(&p, "spark-local-dir-1").is_some());
}

#[test]
fn ports() {
    let p = mutated(SparkRole::Driver);
    let ports = spark(&p).ports.as_ref().expect("ports");
    let find = |name: &str| ports.iter().find(|p| p.name.as_deref() == Some(name));
    let debug = find("debug").expect("debug port");
    assert_eq!(
        (debug.container_port, debug.protocol.as_deref()),
        (5005, Some("TCP"))
    );
    assert_eq!(find("jmx-exporter").map(|p| p.container_port), Some(8090));
    // Spark's ports are kept.
    for name in ["driver-rpc-port", "blockmanager", "spark-ui"] {
        assert!(find(name).is_some(), "{name}");
    }
}

#[test]
fn host_network_and_aliases() {
    let p = mutated(SparkRole::Driver);
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(spec.host_network, None);
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    let aliases = spec.host_aliases.as_ref().expect("aliases");
    assert_eq!(aliases.len(), 1);
    assert_eq!(aliases[0].ip, "10.0.0.1");

    let p = mutated(SparkRole::Executor);
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
}

#[test]
fn init_containers_and_sidecars() {
    let p = mutated(SparkRole::Driver);
    let spec = p.spec.as_ref().expect("spec");
    let names: Vec<_> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["spark-kubernetes-driver", "log-shipper"]);
    let init = spec.init_containers.as_ref().expect("init containers");
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].name, "fetch-deps");
    assert_eq!(init[0].image.as_deref(), Some("busybox:1.36"));

    let p = mutated(SparkRole::Executor);
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(spec.containers.len(), 1);
    assert!(spec.init_containers.is_none());
}

#[test]
fn container_name_clash_with_another_image_is_an_error() {
    let mut app = app();
    app.spec.driver.pod.sidecars[0].name = "spark-kubernetes-driver".into();
    // Keep the Spark container findable by its default name.
    let mut p = pod(SparkRole::Driver);
    let err = mutate_pod(&app, SparkRole::Driver, &mut p, &MutationOptions::default())
        .expect_err("clash");
    assert!(matches!(err, MutateError::ContainerConflict { .. }));
    let text = err.to_string();
    assert!(text.contains("driver.sidecars[0]"), "{text}");
    assert!(text.contains("spark:3.3.4"), "{text}");
}

#[test]
fn scheduling_driver() {
    let p = mutated(SparkRole::Driver);
    let spec = p.spec.as_ref().expect("spec");
    let dns = spec.dns_config.as_ref().expect("dns config");
    assert_eq!(
        dns.nameservers.as_deref(),
        Some(&["10.0.0.10".to_string()][..])
    );
    assert_eq!(spec.priority_class_name.as_deref(), Some("spark-high"));
    // The priority resolved from the old (default) class is cleared.
    assert_eq!(spec.priority, None);
    assert_eq!(spec.preemption_policy, None);
    assert_eq!(spec.scheduler_name.as_deref(), Some("spark-scheduler"));
    let selector = spec.node_selector.as_ref().expect("node selector");
    assert_eq!(
        selector.get("disk").map(String::as_str),
        Some("ssd"),
        "role wins"
    );
    assert_eq!(
        selector
            .get("topology.kubernetes.io/zone")
            .map(String::as_str),
        Some("eu-west-1a")
    );
    let affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref());
    assert!(affinity.is_some());
    let tolerations = spec.tolerations.as_ref().expect("tolerations");
    assert_eq!(tolerations.len(), 3);
    assert_eq!(tolerations[2].key.as_deref(), Some("dedicated"));
}

#[test]
fn scheduling_executor_and_batch_scheduler() {
    let mut app = app();
    app.spec.batch_scheduler = Some("volcano".into());
    let p = mutated_with(&app, SparkRole::Executor, &MutationOptions::default());
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(spec.scheduler_name.as_deref(), Some("volcano"));
    assert_eq!(spec.priority_class_name.as_deref(), Some("spark-low"));
    let selector = spec.node_selector.as_ref().expect("node selector");
    assert_eq!(
        selector.get("disk").map(String::as_str),
        Some("hdd"),
        "app level"
    );
    assert_eq!(
        selector.get("node-pool").map(String::as_str),
        Some("executors")
    );
    assert!(spec.affinity.is_none());
}

#[test]
fn unchanged_priority_class_keeps_resolved_priority() {
    let mut p = pod(SparkRole::Driver);
    if let Some(spec) = p.spec.as_mut() {
        spec.priority_class_name = Some("spark-high".into());
        spec.priority = Some(1000);
    }
    mutate_pod(
        &app(),
        SparkRole::Driver,
        &mut p,
        &MutationOptions::default(),
    )
    .expect("mutate");
    assert_eq!(p.spec.as_ref().and_then(|s| s.priority), Some(1000));
}

#[test]
fn memory_limit_and_gpu() {
    let p = mutated(SparkRole::Driver);
    let limits = spark(&p)
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits.get("memory").map(|q| q.0.as_str()), Some("1Gi"));
    assert_eq!(limits.get("cpu").map(|q| q.0.as_str()), Some("1200m"));
    assert_eq!(
        limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some("1")
    );
    let requests = spark(&p)
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    assert_eq!(
        requests.and_then(|r| r.get("memory")).map(|q| q.0.as_str()),
        Some("896Mi"),
        "requests untouched"
    );

    let p = mutated(SparkRole::Executor);
    let limits = spark(&p)
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(
        limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some("2")
    );
    assert_eq!(
        limits.get("memory").map(|q| q.0.as_str()),
        Some("896Mi"),
        "no memoryLimit"
    );
}

#[test]
fn gpu_zero_or_unnamed_is_skipped_negative_is_an_error() {
    let mut app = app();
    app.spec.executor.pod.gpu = Some(GPUSpec {
        name: "nvidia.com/gpu".into(),
        quantity: 0,
    });
    let p = mutated_with(&app, SparkRole::Executor, &MutationOptions::default());
    let limits = spark(&p).resources.as_ref().and_then(|r| r.limits.as_ref());
    assert!(limits.is_some_and(|l| !l.contains_key("nvidia.com/gpu")));

    app.spec.executor.pod.gpu = Some(GPUSpec {
        name: String::new(),
        quantity: 3,
    });
    let p = mutated_with(&app, SparkRole::Executor, &MutationOptions::default());
    let limits = spark(&p).resources.as_ref().and_then(|r| r.limits.as_ref());
    assert_eq!(limits.map(|l| l.len()), Some(1));

    app.spec.executor.pod.gpu = Some(GPUSpec {
        name: "nvidia.com/gpu".into(),
        quantity: -1,
    });
    let mut p = pod(SparkRole::Executor);
    let err = mutate_pod(
        &app,
        SparkRole::Executor,
        &mut p,
        &MutationOptions::default(),
    )
    .expect_err("negative gpu");
    assert_eq!(
        err.to_string(),
        "SparkApplication default/spark-pi: executor.gpu.quantity is -1; a GPU quantity cannot be negative"
    );
}

#[test]
fn invalid_memory_limit_is_an_error() {
    for bad in ["lots", "-1g", "1.2.3Gi"] {
        let mut app = app();
        app.spec.driver.pod.memory_limit = Some(bad.into());
        let mut p = pod(SparkRole::Driver);
        let err = mutate_pod(&app, SparkRole::Driver, &mut p, &MutationOptions::default())
            .expect_err(bad);
        assert!(matches!(err, MutateError::InvalidQuantity { .. }), "{bad}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "SparkApplication default/spark-pi: driver.memoryLimit of the driver is \"{bad}\""
            )),
            "{text}"
        );
    }
}

#[test]
fn prometheus_monitoring() {
    for role in both() {
        let p = mutated(role);
        let v = volume(&p, "spark-pi-prom-conf-vol").expect("prometheus volume");
        assert_eq!(
            v.config_map.as_ref().map(|c| c.name.as_str()),
            Some("spark-pi-prom-conf")
        );
        let m = mount(spark(&p), "/etc/metrics/conf").expect("prometheus mount");
        assert_eq!(m.read_only, Some(true));
        let port = spark(&p)
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("jmx-exporter"))
            .expect("port");
        assert_eq!(port.container_port, 8090);
        let ann = p.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(
            ann.get("prometheus.io/scrape").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            ann.get("prometheus.io/port").map(String::as_str),
            Some("8090")
        );
        assert_eq!(
            ann.get("prometheus.io/path").map(String::as_str),
            Some("/metrics")
        );
    }
}

#[test]
fn prometheus_config_in_image_or_not_exposed() {
    let mut app = app();
    if let Some(m) = app.spec.monitoring.as_mut() {
        m.metrics_properties_file = Some("/opt/metrics.properties".into());
        m.expose_executor_metrics = false;
        if let Some(p) = m.prometheus.as_mut() {
            p.config_file = Some("/opt/prometheus.yaml".into());
            p.port = Some(9100);
            p.port_name = Some("metrics".into());
        }
    }
    let p = mutated_with(&app, SparkRole::Driver, &MutationOptions::default());
    assert!(volume(&p, "spark-pi-prom-conf-vol").is_none());
    let port = spark(&p)
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .map(|p| p.container_port);
    assert_eq!(port, Some(9100));

    let p = mutated_with(&app, SparkRole::Executor, &MutationOptions::default());
    assert!(volume(&p, "spark-pi-prom-conf-vol").is_none());
    let ann = p.metadata.annotations.unwrap_or_default();
    assert!(!ann.contains_key("prometheus.io/scrape"));
}

#[test]
fn security_contexts() {
    let p = mutated(SparkRole::Driver);
    let sc = spark(&p).security_context.as_ref().expect("container sc");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let psc = p
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .expect("pod sc");
    assert_eq!(
        (psc.run_as_user, psc.fs_group, psc.run_as_non_root),
        (Some(185), Some(185), Some(true))
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
}

fn pod_seccomp(p: &Pod) -> Option<&SeccompProfile> {
    p.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .seccomp_profile
        .as_ref()
}

#[test]
fn seccomp_default_added_unless_chosen_or_disabled() {
    let localhost = SeccompProfile {
        type_: "Localhost".into(),
        localhost_profile: Some("profiles/spark.json".into()),
    };

    // Added to both roles by default, also when the pod had no securityContext at all.
    let mut app = app();
    app.spec.executor.pod.pod_security_context = None;
    let mut bare = pod(SparkRole::Executor);
    if let Some(spec) = bare.spec.as_mut() {
        spec.security_context = None;
    }
    mutate_pod(
        &app,
        SparkRole::Executor,
        &mut bare,
        &MutationOptions::default(),
    )
    .expect("mutate");
    assert_eq!(
        pod_seccomp(&bare).map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );

    // Not when disabled.
    let off = MutationOptions {
        default_seccomp_profile: false,
        ..MutationOptions::default()
    };
    assert!(pod_seccomp(&mutated_with(&app, SparkRole::Executor, &off)).is_none());

    // Not when the app's podSecurityContext chooses one.
    let mut with_app_profile = self::app();
    if let Some(psc) = with_app_profile
        .spec
        .driver
        .pod
        .pod_security_context
        .as_mut()
    {
        psc.seccomp_profile = Some(localhost.clone());
    }
    let p = mutated_with(
        &with_app_profile,
        SparkRole::Driver,
        &MutationOptions::default(),
    );
    assert_eq!(pod_seccomp(&p), Some(&localhost));

    // Not when the app's container securityContext chooses one.
    let mut with_container_profile = self::app();
    if let Some(sc) = with_container_profile
        .spec
        .driver
        .pod
        .security_context
        .as_mut()
    {
        sc.seccomp_profile = Some(localhost.clone());
    }
    let p = mutated_with(
        &with_container_profile,
        SparkRole::Driver,
        &MutationOptions::default(),
    );
    assert!(pod_seccomp(&p).is_none());

    // Not when the pod already has one, at pod level (app sets no podSecurityContext)...
    let mut p = pod(SparkRole::Executor);
    if let Some(spec) = p.spec.as_mut() {
        spec.security_context = Some(Default::default());
        if let Some(sc) = spec.security_context.as_mut() {
            sc.seccomp_profile = Some(localhost.clone());
        }
    }
    mutate_pod(
        &app,
        SparkRole::Executor,
        &mut p,
        &MutationOptions::default(),
    )
    .expect("mutate");
    assert_eq!(pod_seccomp(&p), Some(&localhost));

    // ...or on the Spark container.
    let mut p = pod(SparkRole::Executor);
    if let Some(c) = p.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.security_context = Some(SecurityContext {
            seccomp_profile: Some(localhost.clone()),
            ..SecurityContext::default()
        });
    }
    mutate_pod(
        &app,
        SparkRole::Executor,
        &mut p,
        &MutationOptions::default(),
    )
    .expect("mutate");
    assert!(pod_seccomp(&p).is_none());
}

#[test]
fn grace_period_and_share_process_namespace() {
    let p = mutated(SparkRole::Driver);
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(spec.termination_grace_period_seconds, Some(60));
    assert_eq!(spec.share_process_namespace, Some(true));

    let p = mutated(SparkRole::Executor);
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(spec.termination_grace_period_seconds, Some(120));
    assert_eq!(spec.share_process_namespace, None);
}

fn pre_stop_command(c: &Container) -> Option<Vec<String>> {
    c.lifecycle
        .as_ref()?
        .pre_stop
        .as_ref()?
        .exec
        .as_ref()?
        .command
        .clone()
}

#[test]
fn lifecycle_from_app_and_executor_decommission_hook() {
    // Driver: the app's lifecycle.
    let p = mutated(SparkRole::Driver);
    assert_eq!(
        pre_stop_command(spark(&p)),
        Some(vec!["/bin/sh".into(), "-c".into(), "sleep 5".into()])
    );
    // Executor with nothing configured: Spark's decommission script.
    let p = mutated(SparkRole::Executor);
    assert_eq!(
        pre_stop_command(spark(&p)),
        Some(vec!["/opt/decom.sh".to_string()])
    );

    // Disabled: nothing.
    let off = MutationOptions {
        executor_prestop_decommission: false,
        ..MutationOptions::default()
    };
    let p = mutated_with(&app(), SparkRole::Executor, &off);
    assert!(spark(&p).lifecycle.is_none());

    // The app's executor lifecycle wins (also on the Spark 3 container name).
    let mut app = app();
    let post_start_only = Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(k8s_openapi::api::core::v1::ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    };
    app.spec.executor.lifecycle = Some(post_start_only.clone());
    let p = mutated_with(&app, SparkRole::Executor, &MutationOptions::default());
    assert_eq!(spark(&p).name, "spark-kubernetes-executor");
    assert_eq!(spark(&p).lifecycle.as_ref(), Some(&post_start_only));

    // The pod's own preStop hook is kept.
    let mut p = pod(SparkRole::Executor);
    let own = Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(k8s_openapi::api::core::v1::ExecAction {
                command: Some(vec!["/drain.sh".into()]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    };
    if let Some(c) = p.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.lifecycle = Some(own.clone());
    }
    mutate_pod(
        &self::app(),
        SparkRole::Executor,
        &mut p,
        &MutationOptions::default(),
    )
    .expect("mutate");
    assert_eq!(spark(&p).lifecycle.as_ref(), Some(&own));
}

// ---------------------------------------------------------------------------------------------
// Validation errors

#[test]
fn unknown_volume_is_an_error_naming_app_and_field() {
    let mut app = app();
    app.spec.driver.pod.volume_mounts.push(VolumeMount {
        name: "nope".into(),
        mount_path: "/nope".into(),
        ..VolumeMount::default()
    });
    let mut p = pod(SparkRole::Driver);
    let err = mutate_pod(&app, SparkRole::Driver, &mut p, &MutationOptions::default())
        .expect_err("unknown volume");
    assert_eq!(
        err.to_string(),
        "SparkApplication default/spark-pi: driver.volumeMounts[2] names volume \"nope\" that is not in spec.volumes"
    );
}

#[test]
fn duplicate_mount_path_is_an_error() {
    let mut app = app();
    app.spec.executor.pod.volume_mounts.push(VolumeMount {
        name: "scratch".into(),
        mount_path: "/data/".into(),
        ..VolumeMount::default()
    });
    let mut p = pod(SparkRole::Executor);
    let err = mutate_pod(
        &app,
        SparkRole::Executor,
        &mut p,
        &MutationOptions::default(),
    )
    .expect_err("duplicate mount path");
    assert!(matches!(err, MutateError::DuplicateMountPath { .. }));
    let text = err.to_string();
    assert!(text.contains("executor.volumeMounts[2]"), "{text}");
    assert!(text.contains("volume \"data\""), "{text}");

    // A config map mounted over Spark's own conf dir.
    let mut app = self::app();
    app.spec.driver.pod.config_maps[0].path = "/opt/spark/conf".into();
    let mut p = pod(SparkRole::Driver);
    let err = mutate_pod(&app, SparkRole::Driver, &mut p, &MutationOptions::default())
        .expect_err("over spark conf");
    assert!(err.to_string().contains("driver.configMaps[0]"), "{err}");
    assert!(
        err.to_string().contains("spark-conf-volume-driver"),
        "{err}"
    );
}

#[test]
fn volume_name_clash_is_an_error() {
    let mut app = app();
    app.spec.volumes.push(Volume {
        name: "spark-conf-volume-exec".into(),
        empty_dir: Some(Default::default()),
        ..Volume::default()
    });
    app.spec.executor.pod.volume_mounts.push(VolumeMount {
        name: "spark-conf-volume-exec".into(),
        mount_path: "/elsewhere".into(),
        ..VolumeMount::default()
    });
    let mut p = pod(SparkRole::Executor);
    let err = mutate_pod(
        &app,
        SparkRole::Executor,
        &mut p,
        &MutationOptions::default(),
    )
    .expect_err("volume clash");
    assert!(matches!(err, MutateError::VolumeConflict { .. }));
    assert!(err.to_string().contains("spec.volumes[3]"), "{err}");
}

#[test]
fn port_name_clash_is_an_error() {
    let mut app = app();
    app.spec.driver.ports[0].name = "spark-ui".into();
    let mut p = pod(SparkRole::Driver);
    let err = mutate_pod(&app, SparkRole::Driver, &mut p, &MutationOptions::default())
        .expect_err("port clash");
    assert_eq!(
        err.to_string(),
        "SparkApplication default/spark-pi: driver.ports[0] declares port \"spark-ui\" as 5005/TCP, but the driver container already has port \"spark-ui\" as 4040/TCP"
    );
}

#[test]
fn invalid_pod_json_is_an_error_not_a_panic() {
    let err = pod_patch(
        &app(),
        SparkRole::Driver,
        &json!({"spec": {"containers": "not a list"}}),
        &MutationOptions::default(),
    )
    .expect_err("invalid pod");
    assert!(matches!(err, MutateError::InvalidPod { .. }));
    assert!(
        err.to_string()
            .starts_with("SparkApplication default/spark-pi: the driver pod")
    );

    // The typed pod has an (empty) metadata the raw one lacks: the labels patch would not
    // apply, so the pod is refused instead.
    let no_metadata = json!({"spec": {"containers": [{"name": "spark-kubernetes-executor"}]}});
    let err = pod_patch(
        &app(),
        SparkRole::Executor,
        &no_metadata,
        &MutationOptions::default(),
    )
    .expect_err("patch would not apply");
    assert!(
        err.to_string().contains("the patch does not apply"),
        "{err}"
    );

    for input in [json!(null), json!({}), json!({"spec": {}}), json!([1, 2])] {
        // Never panics; a pod without containers is refused.
        assert!(
            pod_patch(
                &app(),
                SparkRole::Executor,
                &input,
                &MutationOptions::default()
            )
            .is_err()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Patch, idempotency, duplicates

#[test]
fn patch_applied_to_raw_pod_gives_the_mutated_pod() {
    for role in both() {
        let app = app();
        let input = raw(role);
        let patch = pod_patch(&app, role, &input, &MutationOptions::default()).expect("patch");
        assert!(!patch.0.is_empty());
        let mut patched = input.clone();
        json_patch::patch(&mut patched, &patch).expect("patch applies to the raw pod");
        let expected = serde_json::to_value(mutated(role)).expect("serialise");
        assert_eq!(patched["metadata"], expected["metadata"], "{role}");
        assert_eq!(patched["spec"], expected["spec"], "{role}");
        assert_eq!(
            patched, expected,
            "{role}: the fixtures hold only known fields"
        );
    }
}

#[test]
fn unknown_fields_survive_and_are_never_removed() {
    for role in both() {
        let mut input = raw(role);
        input["spec"]["futurePodField"] = json!({"x": 1});
        input["spec"]["containers"][0]["futureContainerField"] = json!(true);
        input["spec"]["securityContext"]["futureSecurityField"] = json!("keep");
        let patch = pod_patch(&app(), role, &input, &MutationOptions::default()).expect("patch");
        assert!(
            patch
                .0
                .iter()
                .all(|op| !matches!(op, json_patch::PatchOperation::Remove(_))
                    || op.path().to_string().starts_with("/spec/p")),
            "{role}: only priority/preemptionPolicy may be removed: {patch:?}"
        );
        let mut patched = input.clone();
        json_patch::patch(&mut patched, &patch).expect("applies");
        assert_eq!(patched["spec"]["futurePodField"], json!({"x": 1}));
        assert_eq!(
            patched["spec"]["containers"][0]["futureContainerField"],
            json!(true)
        );
        assert_eq!(
            patched["spec"]["securityContext"]["futureSecurityField"],
            json!("keep")
        );
    }
}

#[test]
fn mutating_twice_equals_once() {
    for role in both() {
        let app = app();
        let once = mutated(role);
        let mut twice = once.clone();
        mutate_pod(&app, role, &mut twice, &MutationOptions::default()).expect("second pass");
        assert_eq!(once, twice, "{role}");
        // And the webhook sees nothing to do on an already-mutated pod.
        let json = serde_json::to_value(&once).expect("serialise");
        let patch = pod_patch(&app, role, &json, &MutationOptions::default()).expect("patch");
        assert!(patch.0.is_empty(), "{role}: {patch:?}");
    }
}

#[test]
fn no_duplicate_names_or_paths() {
    fn assert_unique<'a>(what: &str, items: impl Iterator<Item = &'a str>) {
        let mut seen = BTreeSet::new();
        for item in items {
            assert!(seen.insert(item), "duplicate {what}: {item}");
        }
    }
    for role in both() {
        let p = mutated(role);
        let spec = p.spec.as_ref().expect("spec");
        assert_unique(
            "volume",
            spec.volumes.iter().flatten().map(|v| v.name.as_str()),
        );
        assert_unique(
            "container",
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .map(|c| c.name.as_str()),
        );
        for c in &spec.containers {
            assert_unique(
                "mount path",
                c.volume_mounts
                    .iter()
                    .flatten()
                    .map(|m| m.mount_path.as_str()),
            );
            assert_unique("env", c.env.iter().flatten().map(|e| e.name.as_str()));
            assert_unique(
                "port",
                c.ports.iter().flatten().filter_map(|p| p.name.as_deref()),
            );
        }
        let tolerations: Vec<_> = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| serde_json::to_string(t).expect("json"))
            .collect();
        assert_unique("toleration", tolerations.iter().map(String::as_str));
    }
}

#[test]
fn json_pointer_escaping_in_label_and_annotation_keys() {
    let mut app = app();
    app.spec
        .executor
        .pod
        .labels
        .insert("example.com/a~b".into(), "new".into());
    app.spec
        .executor
        .pod
        .annotations
        .insert("example.com/c~d/e".into(), "v".into());
    let mut input = raw(SparkRole::Executor);
    input["metadata"]["labels"]["example.com/x~y"] = json!("kept");
    input["metadata"]["annotations"] = json!({"example.com/c~d/e": "old"});

    let patch = pod_patch(
        &app,
        SparkRole::Executor,
        &input,
        &MutationOptions::default(),
    )
    .expect("patch");
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert!(
        paths.contains(&"/metadata/labels/example.com~1a~0b".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/metadata/annotations/example.com~1c~0d~1e".to_string()),
        "{paths:?}"
    );

    let mut patched = input.clone();
    json_patch::patch(&mut patched, &patch).expect("applies");
    assert_eq!(
        patched["metadata"]["labels"]["example.com/a~b"],
        json!("new")
    );
    assert_eq!(
        patched["metadata"]["labels"]["example.com/x~y"],
        json!("kept")
    );
    assert_eq!(
        patched["metadata"]["annotations"]["example.com/c~d/e"],
        json!("v")
    );
}

#[test]
fn nothing_to_do_gives_an_empty_patch() {
    let app: SparkApplication = yaml_serde::from_str(
        "apiVersion: sparkoperator.k8s.io/v1beta2\nkind: SparkApplication\n\
         metadata: {name: spark-pi, namespace: default, uid: u-1}\n\
         spec: {type: Scala, sparkVersion: 3.3.4, driver: {}, executor: {}}\n",
    )
    .expect("app");
    let opts = MutationOptions {
        default_seccomp_profile: false,
        executor_prestop_decommission: false,
    };
    let mut input = raw(SparkRole::Executor);
    input["spec"]["enableServiceLinks"] = json!(false);
    let patch = pod_patch(&app, SparkRole::Executor, &input, &opts).expect("patch");
    assert!(patch.0.is_empty(), "{patch:?}");
    assert_eq!(labels::SPARK_ROLE_LABEL, "spark-role");
}

#[test]
fn service_links_are_off_unless_the_role_template_turns_them_on() {
    // The apiserver defaults enableServiceLinks to true before webhooks run.
    let mut input = raw(SparkRole::Executor);
    input["spec"]["enableServiceLinks"] = json!(true);
    let mut app = app();
    let patch = pod_patch(
        &app,
        SparkRole::Executor,
        &input,
        &MutationOptions::default(),
    )
    .expect("patch");
    let mut patched = input.clone();
    json_patch::patch(&mut patched, &patch).expect("applies");
    assert_eq!(patched["spec"]["enableServiceLinks"], json!(false));

    app.spec.executor.pod.template = Some(
        serde_json::from_value(json!({"spec": {"enableServiceLinks": true, "containers": []}}))
            .unwrap(),
    );
    let patch = pod_patch(
        &app,
        SparkRole::Executor,
        &input,
        &MutationOptions::default(),
    )
    .expect("patch");
    let mut patched = input.clone();
    json_patch::patch(&mut patched, &patch).expect("applies");
    assert_eq!(patched["spec"]["enableServiceLinks"], json!(true));
}
