//! Native submission (`spark_webhook::submission`), offline.
//!
//! The central tests rebuild the SparkPi submission recorded from the own spark-submit of Spark
//! 3.3.4, 4.0.5, 4.1.4, 4.2.1 and 4.3.0 (`tests/fixtures/spark-submit-VERSION`, see their
//! READMEs), each for the app naming that version, and compare the driver pod, Service and
//! ConfigMap with the recorded objects field by field, every version alike. What is excluded
//! from the comparison, and why, is listed next to each comparison.

#[path = "common/spark_executor.rs"]
mod spark_executor;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use serde::Deserialize;
use serde_json::{Value, json};
use spark_webhook::crd::SparkApplication;
use spark_webhook::labels::SparkRole;
use spark_webhook::mutate::pod_patch;
use spark_webhook::submission::{
    self, Submission, SubmissionError, SubmitOptions, build, driver_pod_name, owned_by_driver,
    render_yaml,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The SparkApplication equivalent to the fixture's spark-submit command line (README).
const SPARK_PI: &str = r#"
apiVersion: sparkoperator.k8s.io/v1beta2
kind: SparkApplication
metadata:
  name: spark-pi
  namespace: default
  uid: 7d0c3a52-5f4b-4c1e-9a57-2b6f0e9c1d11
spec:
  type: Scala
  mode: cluster
  image: spark:3.3.4
  mainClass: org.apache.spark.examples.SparkPi
  mainApplicationFile: local:///opt/spark/examples/jars/spark-examples.jar
  arguments: ["10"]
  sparkVersion: 3.3.4
  driver:
    podName: spark-pi-driver3
    cores: 1
    coreLimit: 1200m
    memory: 512m
  executor:
    instances: 2
    cores: 1
    memory: 512m
"#;

/// The spark-submit versions whose SparkPi objects are recorded (tests/fixtures/spark-submit-*):
/// the 3.x line and Spark 4 (the newest 4.0.x, kubeflow's examples' line, the newest 4.1.x and
/// 4.2.x, where the objects change, and the newest 4.x).
const RECORDED: &[&str] = &["3.3.4", "4.0.5", "4.1.4", "4.2.1", "4.3.0"];
/// The submission id the recording command line set as a label.
const FIXTURE_SUBMISSION_ID: &str = "abc-123";

/// One recorded submission: spark-submit VERSION's driver pod, Service and ConfigMap.
struct Recorded {
    version: &'static str,
    pod: Value,
    service: Value,
    config_map: Value,
}

impl Recorded {
    fn load(version: &'static str) -> Self {
        let json = |file: &str| -> Value {
            serde_json::from_str(&read(&format!("spark-submit-{version}/{file}")))
                .expect("fixture is JSON")
        };
        Recorded {
            version,
            pod: json("driver-pod.json"),
            service: json("driver-service.json"),
            config_map: json("driver-configmap.json"),
        }
    }

    /// The SparkApplication equivalent to the recording's command line, for this version.
    fn app(&self) -> SparkApplication {
        app(&SPARK_PI.replace("3.3.4", self.version))
    }

    /// The recording's master URL, so `spark.master` compares exactly.
    fn opts(&self) -> SubmitOptions {
        let props = parse_properties(
            self.config_map["data"]["spark.properties"]
                .as_str()
                .expect("spark.properties"),
        );
        SubmitOptions {
            master_url: props["spark.master"].clone(),
            ..SubmitOptions::default()
        }
    }

    fn driver_uid(&self) -> String {
        self.pod["metadata"]["uid"].as_str().expect("uid").into()
    }

    /// `file` of the recording as JSON, with spark-submit's generated values (app id,
    /// submission id, Service and ConfigMap names, local dir) replaced by ours.
    fn expected(&self, file: &str, sub: &Submission) -> Value {
        let text = |v: &Value| v.as_str().expect("a string").to_string();
        let local_dir = self.pod["spec"]["containers"][0]["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == "SPARK_LOCAL_DIRS"))
            .map(|e| text(&e["value"]))
            .expect("SPARK_LOCAL_DIRS");
        let ours = env(&sub.driver_pod, "SPARK_LOCAL_DIRS").expect("SPARK_LOCAL_DIRS");
        let replaced = read(&format!("spark-submit-{}/{file}", self.version))
            .replace(
                &text(&self.pod["metadata"]["labels"]["spark-app-selector"]),
                &sub.app_id,
            )
            .replace(FIXTURE_SUBMISSION_ID, &sub.submission_id)
            .replace(
                &text(&self.service["metadata"]["name"]),
                sub.service.metadata.name.as_deref().unwrap_or(""),
            )
            .replace(
                &text(&self.config_map["metadata"]["name"]),
                sub.config_map.metadata.name.as_deref().unwrap_or(""),
            )
            .replace(&local_dir, &ours);
        serde_json::from_str(&replaced).expect("fixture is JSON")
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{path}")).expect("fixture is readable")
}

fn app(yaml: &str) -> SparkApplication {
    yaml_serde::from_str(yaml).expect("test app parses")
}

fn spark_pi() -> SparkApplication {
    app(SPARK_PI)
}

fn built(app: &SparkApplication) -> Submission {
    build(app, 1, &SubmitOptions::default()).expect("app builds")
}

fn props(app: &SparkApplication) -> BTreeMap<String, String> {
    submission::properties(app, 1, &SubmitOptions::default()).expect("properties build")
}

fn container(pod: &Pod) -> &k8s_openapi::api::core::v1::Container {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.containers
                .iter()
                .find(|c| c.name == "spark-kubernetes-driver")
        })
        .expect("driver container")
}

fn env(pod: &Pod, name: &str) -> Option<String> {
    container(pod)
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn memory(pod: &Pod) -> (String, String) {
    let r = container(pod).resources.as_ref().expect("resources");
    let get =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.as_ref()
                .and_then(|m| m.get("memory"))
                .map(|q| q.0.clone())
                .unwrap_or_default()
        };
    (get(&r.requests), get(&r.limits))
}

/// Removes the member at JSON pointer `path` and returns it (Null when absent).
fn take(value: &mut Value, path: &str) -> Value {
    let (parent, last) = path.rsplit_once('/').expect("pointer has a /");
    let last = last.replace("~1", "/").replace("~0", "~");
    let last = last.as_str();
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(last).unwrap_or(Value::Null),
        Some(Value::Array(list)) => match last.parse::<usize>() {
            Ok(i) if i < list.len() => list.remove(i),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| is_hex(p, n))
}

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A `java.util.Properties.load` for the subset of the format `store` writes: comment lines,
/// `key=value` with `\`-escapes (`\t \n \r \f \uXXXX`, anything else literal), the key ending at
/// the first unescaped `=`, `:` or whitespace, leading whitespace of the value skipped.
fn parse_properties(text: &str) -> BTreeMap<String, String> {
    fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut Vec<u16>) {
        match chars.next() {
            Some('t') => out.push('\t' as u16),
            Some('n') => out.push('\n' as u16),
            Some('r') => out.push('\r' as u16),
            Some('f') => out.push(0x0c),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                out.push(u16::from_str_radix(&hex, 16).expect("\\u escape"));
            }
            Some(c) => {
                let mut buf = [0u16; 2];
                out.extend_from_slice(c.encode_utf16(&mut buf));
            }
            None => {}
        }
    }
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        let mut chars = trimmed.chars().peekable();
        let mut key = Vec::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => unescape(&mut chars, &mut key),
                '=' | ':' => break,
                c if c.is_whitespace() => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                    if matches!(chars.peek(), Some('=' | ':')) {
                        chars.next();
                    }
                    break;
                }
                c => {
                    let mut buf = [0u16; 2];
                    key.extend_from_slice(c.encode_utf16(&mut buf));
                }
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = Vec::new();
        while let Some(c) = chars.next() {
            if c == '\\' {
                unescape(&mut chars, &mut value);
            } else {
                let mut buf = [0u16; 2];
                value.extend_from_slice(c.encode_utf16(&mut buf));
            }
        }
        map.insert(
            String::from_utf16(&key).expect("UTF-16 key"),
            String::from_utf16(&value).expect("UTF-16 value"),
        );
    }
    map
}

fn properties_of(sub: &Submission) -> BTreeMap<String, String> {
    let text = sub
        .config_map
        .data
        .as_ref()
        .and_then(|d| d.get("spark.properties"))
        .expect("spark.properties");
    parse_properties(text)
}

#[test]
fn spark_pi_driver_pod_matches_spark_submit() {
    for version in RECORDED {
        let rec = Recorded::load(version);
        let sub = build(&rec.app(), 1, &rec.opts()).expect("spark-pi builds");
        assert!(sub.app_id.starts_with("spark-") && is_hex(&sub.app_id[6..], 32));
        assert!(is_uuid(&sub.submission_id));
        let local_dir = env(&sub.driver_pod, "SPARK_LOCAL_DIRS").expect("SPARK_LOCAL_DIRS");
        assert!(is_uuid(
            local_dir
                .strip_prefix("/var/data/spark-")
                .expect("Spark's local dir")
        ));

        let mut expected = rec.expected("driver-pod.json", &sub);
        let mut actual = serde_json::to_value(&sub.driver_pod).expect("pod serialises");

        // Set by the API server, not by spark-submit: identity, timestamps, status, and defaults.
        for path in [
            "/metadata/uid",
            "/metadata/creationTimestamp",
            "/status",
            "/spec/terminationGracePeriodSeconds",
            "/spec/dnsPolicy",
            "/spec/schedulerName",
            "/spec/tolerations",
            "/spec/priority",
            "/spec/enableServiceLinks",
            "/spec/preemptionPolicy",
            "/spec/containers/0/terminationMessagePath",
            "/spec/containers/0/terminationMessagePolicy",
        ] {
            take(&mut expected, path);
        }
        // SPARK_USER=root is the OS user that ran spark-submit; the operator has none and leaves
        // it out (spec.proxyUser sets it).
        let spark_user = take(&mut expected, "/spec/containers/0/env/0");
        assert_eq!(spark_user["name"], "SPARK_USER");
        // The pod security context is empty in the fixture (`{}`, server default); ours has the
        // mutation rules' default seccomp profile.
        assert_eq!(
            take(&mut expected, "/spec/securityContext"),
            serde_json::json!({})
        );
        assert_eq!(
            take(&mut actual, "/spec/securityContext"),
            serde_json::json!({"seccompProfile": {"type": "RuntimeDefault"}})
        );
        // The mutation rules make the SparkApplication the driver's controller (kubeflow's webhook
        // does the same to spark-submit's pod).
        assert_eq!(
            take(&mut actual, "/metadata/ownerReferences"),
            serde_json::json!([{
                "apiVersion": "sparkoperator.k8s.io/v1beta2",
                "kind": "SparkApplication",
                "name": "spark-pi",
                "uid": "7d0c3a52-5f4b-4c1e-9a57-2b6f0e9c1d11",
                "controller": true,
                "blockOwnerDeletion": true,
            }])
        );
        // Service links off (thousands of driver Services per namespace), and the executor pod
        // template beside spark.properties in the conf volume.
        assert_eq!(
            take(&mut actual, "/spec/enableServiceLinks"),
            serde_json::json!(false)
        );
        assert_eq!(
            take(&mut actual, "/spec/volumes/1/configMap/items/1"),
            serde_json::json!({"key": "executor-pod-template.yaml", "mode": 420, "path": "executor-pod-template.yaml"})
        );
        assert_eq!(actual, expected, "spark-submit {version}");
    }
}

#[test]
fn spark_pi_service_matches_spark_submit() {
    for version in RECORDED {
        let rec = Recorded::load(version);
        let mut sub = build(&rec.app(), 1, &rec.opts()).expect("spark-pi builds");
        let name = sub.service.metadata.name.clone().unwrap_or_default();
        let id = name
            .strip_prefix("spark-pi-")
            .and_then(|s| s.strip_suffix("-driver-svc"))
            .expect("Spark's <app>-<id>-driver-svc");
        assert!(is_hex(id, 16), "{name}");
        assert!(sub.service.metadata.owner_references.is_none());
        owned_by_driver(&mut sub, &rec.driver_uid());

        let mut expected = rec.expected("driver-service.json", &sub);
        let mut actual = serde_json::to_value(&sub.service).expect("service serialises");
        // API server: identity, timestamps, status, allocated clusterIPs, defaulted type and
        // session affinity.
        for path in [
            "/metadata/uid",
            "/metadata/creationTimestamp",
            "/status",
            "/spec/clusterIPs",
            "/spec/type",
            "/spec/sessionAffinity",
        ] {
            take(&mut expected, path);
        }
        // The operator's own labels on what it creates (kubeflow's resource labels).
        assert_eq!(
            take(
                &mut actual,
                "/metadata/labels/sparkoperator.k8s.io~1app-name"
            ),
            "spark-pi"
        );
        assert_eq!(
            take(
                &mut actual,
                "/metadata/labels/sparkoperator.k8s.io~1submission-id"
            ),
            Value::from(sub.submission_id.clone())
        );
        assert_eq!(actual, expected, "spark-submit {version}");
    }
}

#[test]
fn spark_pi_config_map_matches_spark_submit() {
    for version in RECORDED {
        let rec = Recorded::load(version);
        let mut sub = build(&rec.app(), 1, &rec.opts()).expect("spark-pi builds");
        let name = sub.config_map.metadata.name.clone().unwrap_or_default();
        let id = name
            .strip_prefix("spark-drv-")
            .and_then(|s| s.strip_suffix("-conf-map"))
            .expect("Spark's spark-drv-<id>-conf-map");
        assert!(is_hex(id, 16), "{name}");
        owned_by_driver(&mut sub, &rec.driver_uid());

        let mut expected = rec.expected("driver-configmap.json", &sub);
        let mut actual = serde_json::to_value(&sub.config_map).expect("config map serialises");
        for path in ["/metadata/uid", "/metadata/creationTimestamp"] {
            take(&mut expected, path);
        }
        assert_eq!(
            take(&mut actual, "/metadata/labels"),
            serde_json::json!({
                "sparkoperator.k8s.io/app-name": "spark-pi",
                "sparkoperator.k8s.io/submission-id": sub.submission_id,
            })
        );
        // spark.properties is compared key by key below; its text differs in order and comments.
        let theirs = take(&mut expected, "/data/spark.properties");
        let ours = take(&mut actual, "/data/spark.properties");
        // Beyond spark-submit: the executor pod template (see executor_template_carries_every_mutation).
        let template = take(&mut actual, "/data/executor-pod-template.yaml");
        assert!(
            template.as_str().is_some_and(|t| t.contains("kind: Pod")),
            "{template}"
        );
        assert_eq!(actual, expected, "spark-submit {version}");

        let ours = ours.as_str().expect("text");
        assert_eq!(
            ours.lines().next(),
            Some(
                format!("#Java properties built from Kubernetes config map with name: {name}")
                    .as_str()
            ),
            "one comment line and no timestamp"
        );
        let mut theirs = parse_properties(theirs.as_str().expect("text"));
        let mut ours = parse_properties(ours);
        // The submission time is a timestamp: left out so renders are reproducible.
        assert!(theirs.remove("spark.app.submitTime").is_some());
        // kubeflow's executor labels; the fixture's hand-typed command line only set app-name.
        let prefix = "spark.kubernetes.executor.label.sparkoperator.k8s.io";
        for (key, value) in [
            (
                format!("{prefix}/launched-by-spark-operator"),
                "true".to_string(),
            ),
            (
                format!("{prefix}/mutated-by-spark-operator"),
                "true".to_string(),
            ),
            (format!("{prefix}/submission-id"), sub.submission_id.clone()),
            (
                "spark.kubernetes.executor.podTemplateFile".to_string(),
                "/opt/spark/conf/executor-pod-template.yaml".to_string(),
            ),
            (
                "spark.kubernetes.executor.podTemplateContainerName".to_string(),
                "spark-kubernetes-executor".to_string(),
            ),
        ] {
            assert_eq!(ours.remove(&key), Some(value), "{key}");
        }
        assert_eq!(ours, theirs, "spark-submit {version}");
    }
}

#[test]
fn driver_is_already_mutated() {
    // The richest app of the mutation tests: the webhook must find nothing to change.
    let app = app(&read("sparkapplication.yaml"));
    let opts = SubmitOptions::default();
    let sub = build(&app, 1, &opts).expect("full app builds");
    let json = serde_json::to_value(&sub.driver_pod).expect("pod serialises");
    let patch = pod_patch(&app, SparkRole::Driver, &json, &opts.mutation).expect("patch");
    assert!(patch.0.is_empty(), "webhook would still change: {patch:?}");

    // Its spark-local-dir volume replaces Spark's default emptyDir, through kubeflow's conf.
    let conf = properties_of(&sub);
    assert_eq!(
        conf.get("spark.kubernetes.driver.volumes.hostPath.spark-local-dir-ssd.mount.path")
            .map(String::as_str),
        Some("/tmp/spark-local")
    );
    assert_eq!(
        env(&sub.driver_pod, "SPARK_LOCAL_DIRS").as_deref(),
        Some("/tmp/spark-local")
    );
    let volumes = sub
        .driver_pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let local: Vec<&str> = volumes
        .iter()
        .filter(|v| v.name.starts_with("spark-local-dir-"))
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(local, ["spark-local-dir-ssd"]);

    // The Service selects the driver by labels the driver has.
    let labels = sub.driver_pod.metadata.labels.clone().unwrap_or_default();
    let selector = sub
        .service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    assert!(selector.len() >= 4);
    for (key, value) in &selector {
        assert_eq!(labels.get(key), Some(value), "selector {key}");
    }
    // Prometheus: kubeflow's javaagent and metrics settings.
    assert_eq!(
        conf.get("spark.driver.extraJavaOptions")
            .map(String::as_str),
        Some(
            "-javaagent:/prometheus/jmx_prometheus_javaagent-0.17.2.jar=8090:/etc/metrics/conf/prometheus.yaml"
        )
    );
    assert_eq!(
        conf.get("spark.metrics.namespace").map(String::as_str),
        Some("default.spark-pi")
    );
    // Kueue labels stay off, other app labels go to both roles.
    assert_eq!(
        conf.get("spark.kubernetes.driver.label.team")
            .map(String::as_str),
        Some("data")
    );
    assert!(!conf.keys().any(|k| k.contains("kueue")));
}

#[test]
fn memory_overhead() {
    let case = |kind: &str, file: &str, driver: &str, top: &str| {
        let yaml = format!(
            "metadata: {{name: m, namespace: ns, uid: u1}}\n\
             spec:\n  type: {kind}\n  sparkVersion: 3.5.3\n  image: spark:3.5.3\n  \
             mainClass: Main\n  mainApplicationFile: {file}\n{top}  \
             driver: {{{driver}}}\n  executor: {{}}\n"
        );
        memory(&built(&app(&yaml)).driver_pod)
    };
    let jar = "local:///app.jar";
    let py = "local:///app.py";
    let mi = |n: u64| (format!("{n}Mi"), format!("{n}Mi"));
    // JVM: 10%, at least 384 MiB; default memory 1g.
    assert_eq!(case("Scala", jar, "memory: 512m", ""), mi(512 + 384));
    assert_eq!(case("Java", jar, "memory: 8g", ""), mi(8192 + 819));
    assert_eq!(case("Scala", jar, "", ""), mi(1024 + 384));
    // Python and R: 40%.
    assert_eq!(case("Python", py, "memory: 1g", ""), mi(1024 + 409));
    assert_eq!(case("Python", py, "memory: 512m", ""), mi(512 + 384));
    assert_eq!(case("R", "local:///a.R", "memory: 2g", ""), mi(2048 + 819));
    // An explicit overhead wins; spec.memoryOverheadFactor overrides the default factor.
    assert_eq!(
        case("Python", py, "memory: 2g, memoryOverhead: 1g", ""),
        mi(3072)
    );
    assert_eq!(
        case("Scala", jar, "memory: 300m, memoryOverhead: \"100\"", ""),
        mi(400)
    );
    assert_eq!(
        case(
            "Scala",
            jar,
            "memory: 4g",
            "  memoryOverheadFactor: \"0.2\"\n"
        ),
        mi(4096 + 819)
    );
    assert_eq!(
        case(
            "Python",
            py,
            "memory: 4g",
            "  memoryOverheadFactor: \"0.1\"\n"
        ),
        mi(4096 + 409)
    );

    // The factor Spark propagates to executors.
    let factor = |kind: &str, file: &str| {
        let a = app(&format!(
            "metadata: {{name: m, namespace: ns, uid: u1}}\nspec: {{type: {kind}, sparkVersion: '3', image: i, mainClass: M, mainApplicationFile: '{file}', driver: {{}}, executor: {{}}}}"
        ));
        props(&a)["spark.kubernetes.memoryOverheadFactor"].clone()
    };
    assert_eq!(factor("Scala", jar), "0.1");
    assert_eq!(factor("Python", py), "0.4");
}

/// A small Scala app; `extra` is YAML for more `spec` fields (replacing the base's).
fn minimal(extra: &str) -> SparkApplication {
    let mut doc: yaml_serde::Value = yaml_serde::from_str(
        "metadata: {name: spark-pi, namespace: default, uid: u-1}\n\
         spec: {type: Scala, sparkVersion: 3.5.3, mainClass: Main, \
         mainApplicationFile: 'local:///app.jar', driver: {}, executor: {}}",
    )
    .expect("base app");
    let extra: yaml_serde::Mapping = if extra.trim().is_empty() {
        yaml_serde::Mapping::new()
    } else {
        yaml_serde::from_str(&unindent(extra)).expect("extra spec fields")
    };
    let spec = doc["spec"].as_mapping_mut().expect("spec mapping");
    for (key, value) in extra {
        spec.insert(key, value);
    }
    yaml_serde::from_value(doc).expect("test app parses")
}

/// The extra fields are written indented by two spaces, as under `spec:`.
fn unindent(yaml: &str) -> String {
    yaml.lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn image_precedence() {
    let image = |app: &SparkApplication, opts: &SubmitOptions| {
        let sub = build(app, 1, opts).expect("builds");
        container(&sub.driver_pod).image.clone().unwrap_or_default()
    };
    let with_default = SubmitOptions {
        default_image: Some("default:1".into()),
        ..SubmitOptions::default()
    };
    let none = SubmitOptions::default();

    let a = minimal("  image: app:1\n");
    assert_eq!(image(&a, &with_default), "app:1");
    assert_eq!(
        props(&a)
            .get("spark.kubernetes.container.image")
            .map(String::as_str),
        Some("app:1")
    );
    assert!(!props(&a).contains_key("spark.kubernetes.driver.container.image"));

    let a = app(&SPARK_PI.replace("podName: spark-pi-driver3", "image: driver:2"));
    assert_eq!(image(&a, &with_default), "driver:2");
    let p = props(&a);
    assert_eq!(
        p.get("spark.kubernetes.driver.container.image")
            .map(String::as_str),
        Some("driver:2")
    );
    assert_eq!(
        p.get("spark.kubernetes.container.image")
            .map(String::as_str),
        Some("spark:3.3.4")
    );
    assert!(!p.contains_key("spark.kubernetes.executor.container.image"));

    let a = minimal("");
    assert_eq!(image(&a, &with_default), "default:1");
    let p = submission::properties(&a, 1, &with_default).expect("properties");
    assert_eq!(
        p.get("spark.kubernetes.container.image")
            .map(String::as_str),
        Some("default:1")
    );

    // An explicit sparkConf image beats the operator's default.
    let a = minimal("  sparkConf: {spark.kubernetes.container.image: conf:3}\n");
    assert_eq!(image(&a, &with_default), "conf:3");

    let err = build(&minimal(""), 1, &none).expect_err("no image anywhere");
    assert_eq!(
        err.to_string(),
        "SparkApplication default/spark-pi: no image: set spec.image, spec.driver.image, or start \
         the operator with --default-spark-image"
    );
    assert!(matches!(
        build(&minimal("  executor: {image: e:1}\n").clone(), 1, &none),
        Err(SubmissionError::NoImage { .. })
    ));
    let driver_only = app(&SPARK_PI
        .replace("image: spark:3.3.4", "sparkConf: {}")
        .replace("podName: spark-pi-driver3", "image: d:1"));
    assert!(matches!(
        build(&driver_only, 1, &none),
        Err(SubmissionError::NoExecutorImage { .. })
    ));
}

fn args(pod: &Pod) -> Vec<String> {
    container(pod).args.clone().unwrap_or_default()
}

#[test]
fn python_and_r_commands() {
    let python = app(r#"
metadata: {name: pyspark-pi, namespace: default, uid: u-2}
spec:
  type: Python
  sparkVersion: 3.5.3
  image: spark:3.5.3
  mainApplicationFile: local:///opt/spark/examples/src/main/python/pi.py
  arguments: ["10", "x y"]
  sparkConf: {spark.pyspark.python: python3}
  deps: {pyFiles: ["local:///opt/a.py", "s3a://b/c.zip"]}
  driver: {}
  executor: {}
"#);
    let sub = built(&python);
    assert_eq!(
        args(&sub.driver_pod),
        [
            "driver",
            "--properties-file",
            "/opt/spark/conf/spark.properties",
            "--class",
            "org.apache.spark.deploy.PythonRunner",
            "local:///opt/spark/examples/src/main/python/pi.py",
            "10",
            "x y",
        ]
    );
    assert_eq!(
        env(&sub.driver_pod, "PYSPARK_PYTHON").as_deref(),
        Some("python3")
    );
    assert_eq!(
        env(&sub.driver_pod, "PYSPARK_DRIVER_PYTHON").as_deref(),
        Some("python3")
    );
    let conf = properties_of(&sub);
    assert_eq!(conf["spark.kubernetes.resource.type"], "python");
    assert_eq!(
        conf["spark.submit.pyFiles"],
        "local:///opt/a.py,s3a://b/c.zip"
    );
    assert!(!conf.contains_key("spark.jars"), "a .py file is not a jar");

    let r = app(r#"
metadata: {name: sparkr, namespace: default, uid: u-3}
spec:
  type: R
  sparkVersion: 3.5.3
  image: spark-r:3.5.3
  proxyUser: alice
  mainApplicationFile: local:///opt/spark/examples/src/main/r/dataframe.R
  driver: {}
  executor: {}
"#);
    let sub = built(&r);
    assert_eq!(
        args(&sub.driver_pod),
        [
            "driver",
            "--proxy-user",
            "alice",
            "--properties-file",
            "/opt/spark/conf/spark.properties",
            "--class",
            "org.apache.spark.deploy.RRunner",
            "local:///opt/spark/examples/src/main/r/dataframe.R",
        ]
    );
    assert_eq!(env(&sub.driver_pod, "SPARK_USER").as_deref(), Some("alice"));
    assert_eq!(properties_of(&sub)["spark.kubernetes.resource.type"], "r");

    // Java needs a main class: native submission cannot read the jar manifest.
    let no_class = app(&SPARK_PI.replace("mainClass: org.apache.spark.examples.SparkPi", ""));
    let err = build(&no_class, 1, &SubmitOptions::default()).expect_err("no main class");
    assert!(err.to_string().contains("spec.mainClass"), "{err}");
}

#[test]
fn archives_keep_their_alias() {
    let archives = [
        "s3a://bucket/envs/pyenv.tar.gz#environment",
        "https://example.com/deps.zip?v=1#deps",
        "local:///opt/data.tgz",
    ];
    let a = minimal(&format!(
        "  image: i\n  deps:\n    archives: {}\n    jars: [\"local:///extra.jar\"]\n",
        serde_json::to_string(&archives).expect("json")
    ));
    let sub = built(&a);
    let conf = properties_of(&sub);
    assert_eq!(conf["spark.archives"], archives.join(","));
    assert_eq!(conf["spark.jars"], "local:///extra.jar,local:///app.jar");
    let text = &sub.config_map.data.as_ref().expect("data")["spark.properties"];
    assert!(
        text.contains(r"spark.archives=s3a\://bucket/envs/pyenv.tar.gz\#environment,https\://example.com/deps.zip?v\=1\#deps,local\:///opt/data.tgz"),
        "{text}"
    );

    let bad = minimal(
        "  image: i\n  deps: {archives: [\"local:///ok.zip#ok\", \"s3a://b/x.zip#a/b\"]}\n",
    );
    let err = build(&bad, 1, &SubmitOptions::default()).expect_err("alias with a slash");
    assert!(
        matches!(&err, SubmissionError::Invalid { field, .. } if field == "spec.deps.archives[1]")
    );
    assert!(err.to_string().contains("s3a://b/x.zip#a/b"), "{err}");
}

#[test]
fn names_are_deterministic_per_attempt() {
    let a = minimal("  image: i\n");
    let opts = SubmitOptions::default();
    let first = build(&a, 1, &opts).expect("builds");
    assert_eq!(first, build(&a, 1, &opts).expect("builds"));
    assert_eq!(
        first.driver_pod.metadata.name.as_deref(),
        Some("spark-pi-driver")
    );
    assert_eq!(driver_pod_name(&a, 1), "spark-pi-driver");
    assert_eq!(
        render_yaml(&first),
        render_yaml(&build(&a, 1, &opts).expect("builds"))
    );

    let second = build(&a, 2, &opts).expect("builds");
    assert_eq!(
        second.driver_pod.metadata.name.as_deref(),
        Some("spark-pi-driver-2")
    );
    assert_eq!(driver_pod_name(&a, 2), "spark-pi-driver-2");
    let local_dir = |s: &Submission| env(&s.driver_pod, "SPARK_LOCAL_DIRS");
    assert_ne!(first.submission_id, second.submission_id);
    assert_ne!(first.app_id, second.app_id);
    assert_ne!(first.service.metadata.name, second.service.metadata.name);
    assert_ne!(
        first.config_map.metadata.name,
        second.config_map.metadata.name
    );
    assert_ne!(local_dir(&first), local_dir(&second));

    // Another app (uid) with the same name gets other ids.
    let mut other = a.clone();
    other.metadata.uid = Some("u-2".into());
    let other = build(&other, 1, &opts).expect("builds");
    assert_ne!(first.submission_id, other.submission_id);
    assert_ne!(first.app_id, other.app_id);

    // A fixed driver pod name is kept on every attempt.
    assert_eq!(driver_pod_name(&spark_pi(), 3), "spark-pi-driver3");
}

#[test]
fn long_names_fit() {
    let long = format!("a{}", "-b".repeat(31));
    assert_eq!(long.len(), 63);
    let a = app(&format!(
        "metadata: {{name: {long}, namespace: default, uid: u-9}}\nspec: {{type: Java, sparkVersion: '3.5.3', image: i, mainClass: M, mainApplicationFile: 'local:///a.jar', driver: {{}}, executor: {{}}}}"
    ));
    for attempt in [1, 12, 4_000_000_000] {
        let sub = build(&a, attempt, &SubmitOptions::default()).expect("builds");
        let names = [
            sub.driver_pod.metadata.name.clone().unwrap_or_default(),
            sub.service.metadata.name.clone().unwrap_or_default(),
            sub.config_map.metadata.name.clone().unwrap_or_default(),
            sub.driver_pod.metadata.labels.as_ref().expect("labels")["spark-app-name"].clone(),
        ];
        for name in &names {
            assert!(
                is_dns_label(name),
                "{name:?} is not a DNS label of at most 63 characters"
            );
        }
        let suffix = if attempt == 1 {
            "-driver".to_string()
        } else {
            format!("-driver-{attempt}")
        };
        assert!(names[0].ends_with(&suffix), "{}", names[0]);
        assert!(names[1].starts_with("spark-") && names[1].ends_with("-driver-svc"));
        let host = properties_of(&sub)["spark.driver.host"].clone();
        assert_eq!(host, format!("{}.default.svc", names[1]));
    }
}

#[test]
fn properties_escaping_round_trips() {
    let tricky: BTreeMap<&str, &str> = BTreeMap::from([
        ("spark.test.spaces", "  leading and inner spaces "),
        ("spark.test.separators", "a=b:c#d!e"),
        ("spark.test.backslash", r"C:\path\to\file"),
        (
            "spark.test.controls",
            "tab\tnewline\nreturn\rfeed\u{c}bell\u{7}",
        ),
        ("spark.test.unicode", "Grüße, 東京, 🚀"),
        ("spark.test.empty", ""),
        ("spark.test.key with spaces=and:colons", "v"),
        ("spark.test.ключ", "значение"),
    ]);
    let yaml_conf = serde_json::to_string(&tricky).expect("json");
    let a = minimal(&format!("  image: i\n  sparkConf: {yaml_conf}\n"));
    let sub = built(&a);
    let text = &sub.config_map.data.as_ref().expect("data")["spark.properties"];
    assert!(text.is_ascii(), "non-ASCII is \\u-escaped");
    let mut read_back = parse_properties(text);
    for shipped_template_key in [
        "spark.kubernetes.executor.podTemplateFile",
        "spark.kubernetes.executor.podTemplateContainerName",
    ] {
        assert!(read_back.remove(shipped_template_key).is_some());
    }
    assert_eq!(read_back, props(&a), "the driver reads back what was built");
    for (key, value) in tricky {
        assert_eq!(props(&a).get(key).map(String::as_str), Some(value), "{key}");
    }
    assert!(text.contains(r"spark.test.spaces=\  leading and inner spaces "));
    assert!(text.contains(r"spark.test.key\ with\ spaces\=and\:colons=v"));
    assert!(text.contains(r"spark.test.unicode=Gr\u00FC\u00DFe, \u6771\u4EAC, \uD83D\uDE80"));
}

#[test]
fn render_yaml_parses_back() {
    let mut sub = built(&app(&read("sparkapplication.yaml")));
    owned_by_driver(&mut sub, "uid-1");
    let yaml = render_yaml(&sub);
    let docs: Vec<yaml_serde::Value> = yaml_serde::Deserializer::from_str(&yaml)
        .map(|doc| yaml_serde::Value::deserialize(doc).expect("YAML document"))
        .collect();
    // This app has spec.monitoring.prometheus: its ConfigMap first; the UI Service last.
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "ConfigMap", "Service", "Pod", "Service"]
    );
    let prometheus: ConfigMap = yaml_serde::from_value(docs[0].clone()).expect("ConfigMap");
    let config_map: ConfigMap = yaml_serde::from_value(docs[1].clone()).expect("ConfigMap");
    let service: Service = yaml_serde::from_value(docs[2].clone()).expect("Service");
    let pod: Pod = yaml_serde::from_value(docs[3].clone()).expect("Pod");
    let ui: Service = yaml_serde::from_value(docs[4].clone()).expect("Service");
    assert_eq!(Some(prometheus), sub.prometheus_config_map);
    assert_eq!(config_map, sub.config_map);
    assert_eq!(service, sub.service);
    assert_eq!(pod, sub.driver_pod);
    assert_eq!(Some(ui), sub.web_ui.service);
}

#[test]
fn kubeflow_precedence() {
    let a = minimal(
        r#"  image: i
  imagePullPolicy: Always
  sparkConf:
    spark.driver.memory: 4g
    spark.kubernetes.container.image.pullPolicy: Never
    spark.driver.host: elsewhere
    spark.jars: local:///conf.jar
    spark.kubernetes.namespace: other
    spark.app.name: other
  hadoopConf: {fs.s3a.endpoint: "http://minio:9000"}
  nodeSelector: {disk: ssd}
  deps: {packages: ["org.apache.hadoop:hadoop-aws:3.3.4"]}
  dynamicAllocation: {enabled: true, minExecutors: 1, maxExecutors: 5}
  driver: {memory: 1g, serviceAccount: spark, javaOptions: "-Dx=1", labels: {team: a, spark-role: x}}
  executor: {instances: 3, deleteOnTermination: false, envVars: {A: b}}
"#,
    );
    let p = props(&a);
    let get = |k: &str| p.get(k).map(String::as_str);
    assert_eq!(
        get("spark.driver.memory"),
        Some("1g"),
        "spec wins over sparkConf"
    );
    assert_eq!(
        get("spark.kubernetes.container.image.pullPolicy"),
        Some("Never"),
        "sparkConf wins"
    );
    assert_eq!(
        get("spark.jars"),
        Some("local:///conf.jar,local:///app.jar")
    );
    assert_eq!(get("spark.kubernetes.namespace"), Some("default"));
    assert_eq!(get("spark.app.name"), Some("spark-pi"));
    assert_eq!(
        get("spark.driver.host").map(|h| h.ends_with(".default.svc")),
        Some(true)
    );
    assert_eq!(
        get("spark.hadoop.fs.s3a.endpoint"),
        Some("http://minio:9000")
    );
    assert_eq!(get("spark.kubernetes.node.selector.disk"), Some("ssd"));
    assert_eq!(
        get("spark.jars.packages"),
        Some("org.apache.hadoop:hadoop-aws:3.3.4")
    );
    assert_eq!(get("spark.dynamicAllocation.enabled"), Some("true"));
    assert_eq!(get("spark.dynamicAllocation.maxExecutors"), Some("5"));
    assert_eq!(
        get("spark.dynamicAllocation.shuffleTracking.enabled"),
        Some("true")
    );
    assert_eq!(
        get("spark.kubernetes.authenticate.driver.serviceAccountName"),
        Some("spark")
    );
    assert_eq!(get("spark.driver.extraJavaOptions"), Some("-Dx=1"));
    assert_eq!(get("spark.kubernetes.driver.label.team"), Some("a"));
    assert_eq!(
        get("spark.kubernetes.driver.label.spark-role"),
        None,
        "reserved labels are skipped"
    );
    assert_eq!(get("spark.executor.instances"), Some("3"));
    assert_eq!(
        get("spark.kubernetes.executor.deleteOnTermination"),
        Some("false")
    );
    assert_eq!(get("spark.executorEnv.A"), Some("b"));
    assert_eq!(
        get("spark.kubernetes.submission.waitAppCompletion"),
        Some("false")
    );

    let sub = built(&a);
    let pod = &sub.driver_pod;
    assert_eq!(container(pod).image_pull_policy.as_deref(), Some("Never"));
    assert_eq!(memory(pod), ("1408Mi".to_string(), "1408Mi".to_string()));
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("spark"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        spec.node_selector
            .as_ref()
            .and_then(|n| n.get("disk"))
            .map(String::as_str),
        Some("ssd")
    );
}

/// The driver's Spark 4 shape follows the app's Spark version, else its image's tag (the
/// recorded differences: a `spark-connect` port from 4.1, its `appProtocol` from 4.2, the
/// driver's `allowPrivilegeEscalation` from 4.3), and the settings Spark reads for them.
#[test]
fn spark_4_shape_follows_the_version_or_the_image_tag() {
    let shape = |app: &SparkApplication| {
        let sub = build(app, 1, &SubmitOptions::default()).expect("builds");
        let pod = serde_json::to_value(&sub.driver_pod).expect("pod");
        let service = serde_json::to_value(&sub.service).expect("service");
        let connect = |ports: &Value, key: &str| {
            ports
                .as_array()
                .and_then(|p| p.iter().find(|p| p["name"] == "spark-connect"))
                .map(|p| p[key].clone())
        };
        (
            connect(&pod["spec"]["containers"][0]["ports"], "containerPort"),
            connect(&service["spec"]["ports"], "appProtocol"),
            pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"].clone(),
        )
    };
    let versioned = |version: &str, image: &str, conf: &str| {
        app(&SPARK_PI
            .replace("sparkVersion: 3.3.4", version)
            .replace("image: spark:3.3.4", image)
            .replace(
                "  executor:\n",
                &format!("  sparkConf: {{{conf}}}\n  executor:\n"),
            ))
    };
    let none = (None, None, Value::Null);
    assert_eq!(
        shape(&versioned("sparkVersion: 4.0.5", "image: spark:4.3.0", "")),
        none
    );
    assert_eq!(
        shape(&versioned("sparkVersion: 4.1.4", "image: i", "")),
        (Some(json!(15002)), Some(Value::Null), Value::Null)
    );
    // No version in sparkVersion: the image's tag says which Spark the app runs.
    let newest = (Some(json!(15002)), Some(json!("grpc")), json!(false));
    let image = "image: apache/spark:4.3.0-scala2.13";
    assert_eq!(shape(&versioned("sparkVersion: ''", image, "")), newest);
    assert_eq!(shape(&versioned("sparkVersion: x", image, "")), newest);
    // Neither: kubeflow's own spark-submit (4.0.4).
    assert_eq!(
        shape(&versioned("sparkVersion: ''", "image: spark:latest", "")),
        none
    );
    assert_eq!(
        shape(&versioned(
            "sparkVersion: 4.3.0",
            "image: i",
            "spark.connect.grpc.binding.port: '15003', \
             spark.kubernetes.securityContext.allowPrivilegeEscalation: 'true'"
        )),
        (Some(json!(15003)), Some(json!("grpc")), json!(true))
    );
    assert_eq!(
        shape(&versioned(
            "sparkVersion: 4.3.0",
            "image: i",
            "spark.kubernetes.securityContext.allowPrivilegeEscalation: 'true', \
             spark.kubernetes.driver.securityContext.allowPrivilegeEscalation: 'False'"
        ))
        .2,
        json!(false)
    );
    let refused = build(
        &versioned(
            "sparkVersion: 4.3.0",
            "image: i",
            "spark.kubernetes.securityContext.allowPrivilegeEscalation: maybe",
        ),
        1,
        &SubmitOptions::default(),
    )
    .expect_err("not a boolean")
    .to_string();
    assert!(refused.contains("allowPrivilegeEscalation"), "{refused}");
}

#[test]
fn refusals() {
    let opts = SubmitOptions::default();
    let err = |extra: &str| {
        build(&minimal(extra), 1, &opts)
            .expect_err("refused")
            .to_string()
    };
    assert!(err("  image: i\n  mode: client\n").contains("spec.mode is client"));
    assert!(
        err("  image: i\n  sparkConf: {spark.driver.bindAddress: 0.0.0.0}\n")
            .contains("spark.driver.bindAddress")
    );
    assert!(
        err("  image: i\n  sparkConf: {spark.kubernetes.driver.label.spark-role: x}\n")
            .contains("reserved")
    );
    assert!(err("  image: i\n  driver: {memory: 1.5g}\n").contains("spec.driver.memory"));
    assert!(
        err("  image: i\n  memoryOverheadFactor: lots\n").contains("spec.memoryOverheadFactor")
    );
    let mut no_uid = minimal("  image: i\n");
    no_uid.metadata.uid = None;
    let e = build(&no_uid, 1, &opts).expect_err("no uid").to_string();
    assert!(e.contains("metadata.uid"), "{e}");
}

#[test]
fn driver_template_is_the_base() {
    let a = minimal(
        r#"  image: i
  driver:
    cores: 2
    template:
      metadata:
        labels: {from-template: "yes"}
        annotations: {note: kept}
      spec:
        priorityClassName: batch
        containers:
          - name: log-agent
            image: agent:1
          - name: spark-kubernetes-driver
            env: [{name: FROM_TEMPLATE, value: "1"}]
            resources: {requests: {ephemeral-storage: 1Gi}}
"#,
    );
    let sub = built(&a);
    let pod = &sub.driver_pod;
    let spec = pod.spec.as_ref().expect("spec");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["log-agent", "spark-kubernetes-driver"],
        "Spark appends its container"
    );
    assert_eq!(spec.priority_class_name.as_deref(), Some("batch"));
    let labels = pod.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels.get("from-template").map(String::as_str), Some("yes"));
    assert_eq!(labels.get("spark-role").map(String::as_str), Some("driver"));
    let annotations = pod.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(annotations.get("note").map(String::as_str), Some("kept"));
    let driver = container(pod);
    assert_eq!(driver.image.as_deref(), Some("i"));
    assert_eq!(
        driver
            .env
            .as_ref()
            .and_then(|e| e.first())
            .map(|e| e.name.as_str()),
        Some("FROM_TEMPLATE")
    );
    let requests = driver
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    assert_eq!(
        requests.get("ephemeral-storage").map(|q| q.0.as_str()),
        Some("1Gi")
    );
    assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("2"));
}

#[test]
fn spark_conf_driven_driver_settings() {
    let a = minimal(
        r#"  image: i
  imagePullSecrets: [regcred, other]
  sparkConf:
    spark.kubernetes.driver.volumes.persistentVolumeClaim.data.mount.path: /data
    spark.kubernetes.driver.volumes.persistentVolumeClaim.data.mount.readOnly: "true"
    spark.kubernetes.driver.volumes.persistentVolumeClaim.data.options.claimName: claim
    spark.local.dir: /a,/b
    spark.kubernetes.local.dirs.tmpfs: "true"
    spark.driver.resource.gpu.amount: "1"
    spark.driver.resource.gpu.vendor: nvidia.com
    spark.ui.port: "4041"
    spark.kubernetes.driverEnv.FOO: bar
    spark.kubernetes.driver.annotation.app-id: "{{APP_ID}}"
"#,
    );
    let sub = built(&a);
    let pod = &sub.driver_pod;
    let spec = pod.spec.as_ref().expect("spec");
    let volume = |name: &str| {
        let v = spec.volumes.iter().flatten().find(|v| v.name == name);
        serde_json::to_value(v.expect(name)).expect("json")
    };
    assert_eq!(
        volume("data"),
        serde_json::json!({"name": "data", "persistentVolumeClaim": {"claimName": "claim", "readOnly": true}})
    );
    assert_eq!(
        volume("spark-local-dir-2"),
        serde_json::json!({"name": "spark-local-dir-2", "emptyDir": {"medium": "Memory"}})
    );
    assert_eq!(env(pod, "SPARK_LOCAL_DIRS").as_deref(), Some("/a,/b"));
    assert_eq!(env(pod, "FOO").as_deref(), Some("bar"));
    let limits = container(pod)
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    assert_eq!(
        limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some("1")
    );
    let ui: Vec<i32> = container(pod)
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ui, [7078, 7079, 4041]);
    let service_ports: Vec<i32> = sub
        .service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(service_ports, [7078, 7079, 4041]);
    let secrets: Vec<String> = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(secrets, ["regcred", "other"]);
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("app-id"), Some(&sub.app_id));

    let on_demand = minimal(
        r#"  image: i
  sparkConf:
    spark.kubernetes.driver.volumes.persistentVolumeClaim.data.mount.path: /data
    spark.kubernetes.driver.volumes.persistentVolumeClaim.data.options.claimName: OnDemand
"#,
    );
    let err = build(&on_demand, 1, &SubmitOptions::default()).expect_err("OnDemand PVC");
    assert!(err.to_string().contains("PersistentVolumeClaims"), "{err}");
}

#[test]
fn executor_template_carries_every_mutation() {
    // The richest app of the mutation tests; its executors get volumes, secrets, config maps,
    // env, tolerations, GPU, host network, security context, grace period and priority class.
    let app = app(&read("sparkapplication.yaml"));
    let sub = built(&app);
    let data = sub.config_map.data.as_ref().expect("data");
    let template: Pod =
        yaml_serde::from_str(&data["executor-pod-template.yaml"]).expect("the template is a Pod");
    let conf = parse_properties(&data["spark.properties"]);
    assert_eq!(
        conf["spark.kubernetes.executor.podTemplateFile"],
        "/opt/spark/conf/executor-pod-template.yaml"
    );
    let executor = spark_executor::from_template(&template, &conf, 1);
    let json = serde_json::to_value(&executor).expect("pod serialises");
    let patch = pod_patch(
        &app,
        SparkRole::Executor,
        &json,
        &SubmitOptions::default().mutation,
    )
    .expect("patch");
    // The webhook finds nothing left to do on an executor Spark builds from the template, but
    // for one thing: Spark's executor builder appends SPARK_CONF_DIR=/opt/spark/conf after the
    // template's env, so sparkConfigMap's SPARK_CONF_DIR on executors still takes the webhook
    // (the rule drops Spark's duplicate). Every operation of the patch is about that entry.
    let env = &executor.spec.as_ref().unwrap().containers[0]
        .env
        .as_ref()
        .unwrap();
    let conf_dirs: Vec<_> = env.iter().filter(|e| e.name == "SPARK_CONF_DIR").collect();
    assert_eq!(conf_dirs.len(), 2, "template's and Spark's");
    assert!(
        patch
            .0
            .iter()
            .all(|op| op.path().to_string().starts_with("/spec/containers/0/env/")),
        "{patch:?}"
    );
    let mut without_conf_map = app.clone();
    without_conf_map.spec.spark_config_map = None;
    let sub = built(&without_conf_map);
    let data = sub.config_map.data.as_ref().expect("data");
    let template: Pod = yaml_serde::from_str(&data["executor-pod-template.yaml"]).expect("Pod");
    let executor =
        spark_executor::from_template(&template, &parse_properties(&data["spark.properties"]), 1);
    let json = serde_json::to_value(&executor).expect("pod serialises");
    let patch = pod_patch(
        &without_conf_map,
        SparkRole::Executor,
        &json,
        &SubmitOptions::default().mutation,
    )
    .expect("patch");
    assert!(patch.0.is_empty(), "{patch:?}");
    let spec = executor.spec.as_ref().expect("spec");
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.enable_service_links, Some(false));
    assert_eq!(
        spec.security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let container = &spec.containers[0];
    assert_eq!(container.name, "spark-kubernetes-executor");
    assert!(
        container
            .lifecycle
            .as_ref()
            .is_some_and(|l| l.pre_stop.is_some())
    );

    // A custom executor container name (sparkConf podTemplateContainerName) is kept and named
    // in the conf, so Spark picks that container.
    let mut custom = without_conf_map.clone();
    custom.spec.spark_conf.insert(
        "spark.kubernetes.executor.podTemplateContainerName".into(),
        "worker".into(),
    );
    let sub = built(&custom);
    let data = sub.config_map.data.as_ref().expect("data");
    let template: Pod = yaml_serde::from_str(&data["executor-pod-template.yaml"]).expect("Pod");
    assert_eq!(template.spec.as_ref().unwrap().containers[0].name, "worker");
    let conf = parse_properties(&data["spark.properties"]);
    assert_eq!(
        conf["spark.kubernetes.executor.podTemplateContainerName"],
        "worker"
    );
    let executor = spark_executor::from_template(&template, &conf, 2);
    let json = serde_json::to_value(&executor).expect("pod serialises");
    let patch = pod_patch(
        &custom,
        SparkRole::Executor,
        &json,
        &SubmitOptions::default().mutation,
    )
    .expect("patch");
    assert!(patch.0.is_empty(), "{patch:?}");

    // An app that names its own template file keeps it: nothing is shipped.
    let mut own = app.clone();
    own.spec.spark_conf.insert(
        "spark.kubernetes.executor.podTemplateFile".into(),
        "/opt/templates/exec.yaml".into(),
    );
    let sub = built(&own);
    assert!(
        !sub.config_map
            .data
            .as_ref()
            .unwrap()
            .contains_key("executor-pod-template.yaml")
    );
}

/// Gang scheduling in the submitted objects: with Volcano enabled the PodGroup is built with the
/// attempt's submission id and the driver, the executor template and the spark-submit conf carry
/// the group annotation; Volcano named while batch scheduling is off fails the submission with
/// the reason (the webhook refuses it first when it runs).
#[test]
fn volcano_marks_reach_every_path_and_a_disabled_scheduler_fails_the_submission() {
    let mut app = spark_pi();
    app.spec.batch_scheduler = Some("volcano".into());
    let err = build(&app, 1, &SubmitOptions::default()).expect_err("batch scheduling is off");
    assert!(
        err.to_string().contains(
            "spec.batchScheduler is \"volcano\": \"volcano\" needs batch scheduling, which is not enabled"
        ),
        "{err}"
    );
    let opts = SubmitOptions {
        batch: spark_webhook::scheduling::BatchOptions {
            enabled: true,
            ..Default::default()
        },
        ..SubmitOptions::default()
    };
    let sub = build(&app, 1, &opts).expect("app builds");
    let group = sub.pod_group.as_ref().expect("a PodGroup");
    let name = format!("spark-{}-pg", app.metadata.name.as_deref().unwrap());
    assert_eq!(group.metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(
        group.metadata.labels.as_ref().unwrap()["sparkoperator.k8s.io/submission-id"],
        sub.submission_id
    );
    let annotations = sub.driver_pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["scheduling.k8s.io/group-name"], name);
    let template = sub.config_map.data.as_ref().unwrap()["executor-pod-template.yaml"].clone();
    assert!(
        template.contains(&format!("scheduling.k8s.io/group-name: {name}")),
        "{template}"
    );
    let conf = submission::properties(&app, 1, &opts).expect("properties");
    assert_eq!(
        conf.get("spark.kubernetes.executor.annotation.scheduling.k8s.io/group-name"),
        Some(&name)
    );
    assert!(
        render_yaml(&sub)
            .starts_with("---\napiVersion: scheduling.volcano.sh/v1beta1\nkind: PodGroup\n")
    );
}
