//! Inputs shared by the benchmarks: the SparkApplication, real Spark pods, AdmissionReview
//! bodies as the kube-apiserver sends them, and an offline webhook state; for the scale runs,
//! their control plane and process figures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use spark_webhook::cache::AppCache;
use spark_webhook::crd::SparkApplication;
use spark_webhook::metrics::Metrics;
use spark_webhook::mutate::MutationOptions;
use spark_webhook::namespaces::JobNamespaces;
use spark_webhook::webhook::WebhookState;

/// The app both pods belong to (`default/spark-pi`), with enough settings to yield a real patch.
const APP_YAML: &str = include_str!("sparkapplication.yaml");
/// A plain app (kubeflow's spark-pi example on Spark 3.5.3) in namespace `spark-jobs`.
const PLAIN_APP_YAML: &str = include_str!("sparkapplication-plain.yaml");
/// A driver pod recorded from Spark 3.3.4's spark-submit (see the README beside it).
const DRIVER_POD: &str = include_str!("../fixtures/spark-submit-3.3.4/driver-pod.json");
/// An executor pod as Spark 3.3.4's driver creates it.
const EXECUTOR_POD: &str = include_str!("../fixtures/executor-pod.json");

/// Size the load run's driver review is brought to (a typical driver pod review is 6-10 KiB).
pub const DRIVER_REVIEW_TARGET_BYTES: usize = 8 * 1024;

/// The path and query the kube-apiserver calls (it always sends its timeout).
pub const REVIEW_URI: &str = "/mutate-v1-pod?timeout=10s";

pub fn app() -> SparkApplication {
    yaml_serde::from_str(APP_YAML).expect("tests/bench/sparkapplication.yaml parses")
}

pub fn plain_app() -> SparkApplication {
    yaml_serde::from_str(PLAIN_APP_YAML).expect("tests/bench/sparkapplication-plain.yaml parses")
}

pub fn driver_pod() -> Value {
    serde_json::from_str(DRIVER_POD).expect("driver pod fixture parses")
}

pub fn executor_pod() -> Value {
    serde_json::from_str(EXECUTOR_POD).expect("executor pod fixture parses")
}

/// The webhook's state as in production, minus the API client (the app is in the cache, so
/// no review needs one).
pub fn webhook_state() -> WebhookState {
    WebhookState {
        apps: AppCache::with_apps(vec![app(), plain_app()]),
        namespaces: JobNamespaces::all(),
        options: MutationOptions::default(),
        metrics: Metrics::new(),
        client: None,
        recorder: None,
        limits: Default::default(),
        batch: Default::default(),
        enforce_quota: false,
    }
}

/// An AdmissionReview v1 for the CREATE of `pod`, shaped like the kube-apiserver's (compact
/// JSON, requestKind/requestResource, the creating user, CreateOptions).
pub fn review(pod: &Value, uid: &str) -> Vec<u8> {
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    let review = json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": pod["metadata"]["name"],
            "namespace": pod["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:spark-operator:spark-operator-controller",
                "uid": "5b3f2e1d-8c7a-4d6e-9f0a-1b2c3d4e5f6a",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:spark-operator",
                    "system:authenticated"
                ],
                "extra": {
                    "authentication.kubernetes.io/credential-id": ["JTI=3c1d5e7f-9a2b-4c6d-8e0f-1a3b5c7d9e2f"],
                    "authentication.kubernetes.io/node-name": ["worker-3"],
                    "authentication.kubernetes.io/pod-name": ["spark-operator-controller-6c9f7d8b5-x2k4p"],
                    "authentication.kubernetes.io/pod-uid": ["9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"]
                }
            },
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    });
    serde_json::to_vec(&review).expect("review serialises")
}

/// The load run's driver review: the recorded driver pod as it reaches a mutating webhook in a
/// production cluster, about [`DRIVER_REVIEW_TARGET_BYTES`] long.
///
/// On top of the recording (taken with the ServiceAccount plugin off and managedFields
/// stripped) it carries what the apiserver adds before mutating webhooks (the ServiceAccount
/// token volume and mount, a managedFields entry for the creating client) and what a
/// production submission sets (driver env and annotations from `spark.kubernetes.driverEnv.*`
/// and `spark.kubernetes.driver.annotation.*`, the driver's service account). If that is still
/// short of the target, more driver env vars of the same kind fill the gap; their number is
/// returned with the body.
pub fn driver_review_8k() -> (Vec<u8>, usize) {
    let mut pod = driver_pod();
    pod["spec"]["serviceAccountName"] = json!("spark-driver");
    pod["spec"]["serviceAccount"] = json!("spark-driver");
    let annotations = json!({
        "example.com/owner": "data-platform@example.com",
        "example.com/cost-center": "analytics-batch",
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
        "sidecar.istio.io/inject": "false"
    });
    pod["metadata"]["annotations"] = annotations;
    let env = spark_container(&mut pod)["env"]
        .as_array_mut()
        .expect("driver container env");
    for (name, value) in [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/spark-pi-driver",
        ),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        ),
        ("HADOOP_CONF_DIR", "/opt/hadoop/conf"),
        ("SPARK_EXTRA_CLASSPATH", "/opt/spark/extra-jars/*"),
        ("TZ", "UTC"),
    ] {
        env.push(json!({"name": name, "value": value}));
    }
    let uid = "3e5c1f0a-7b2d-4c9e-8a6f-d4b2e0c8a1f7";
    let mut body = review(&admitted(&pod), uid);
    let mut n = 0;
    while body.len() + 48 < DRIVER_REVIEW_TARGET_BYTES {
        let var = json!({
            "name": format!("SPARK_PI_OPT_{n}"),
            "value": format!("spark.sql.extension.{n}=enabled"),
        });
        spark_container(&mut pod)["env"]
            .as_array_mut()
            .expect("env")
            .push(var);
        n += 1;
        body = review(&admitted(&pod), uid);
    }
    (body, n)
}

/// The review of a plain Spark 3.5.3 driver pod for [`plain_app`], as it reaches the webhook.
///
/// Built from the recorded Spark 3.3.4 driver pod with what Spark 3.5.3's spark-submit writes
/// differently for kubeflow's spark-pi example (image, version label, the example jar, the
/// driver's service account, memory 512m + 384m overhead), in namespace `spark-jobs`; then, as
/// for [`driver_review_8k`], the managedFields entry and token volume the apiserver adds.
pub fn plain_driver_review() -> Vec<u8> {
    let pod = plain_driver_pod();
    review(&admitted(&pod), "c4f1e2d3-9b8a-4c7d-8e6f-5a4b3c2d1e0f")
}

/// The plain Spark 3.5.3 driver pod of [`plain_driver_review`] as spark-submit sends it.
pub fn plain_driver_pod() -> Value {
    let mut pod = driver_pod();
    let ns = "spark-jobs";
    pod["metadata"]["name"] = json!("spark-pi-driver");
    pod["metadata"]["namespace"] = json!(ns);
    pod["metadata"]["labels"]["spark-version"] = json!("3.5.3");
    pod["metadata"]["labels"]["sparkoperator.k8s.io/submission-id"] =
        json!("5f2c9a41-7d3e-4b8a-9c6f-1e2d3a4b5c6d");
    pod["spec"]["serviceAccountName"] = json!("spark-operator-spark");
    pod["spec"]["serviceAccount"] = json!("spark-operator-spark");
    let driver = spark_container(&mut pod);
    driver["image"] = json!("spark:3.5.3");
    driver["args"] = json!([
        "driver",
        "--properties-file",
        "/opt/spark/conf/spark.properties",
        "--class",
        "org.apache.spark.examples.SparkPi",
        "local:///opt/spark/examples/jars/spark-examples_2.12-3.5.3.jar",
        "5000"
    ]);
    driver["resources"] = json!({
        "limits": {"memory": "896Mi"},
        "requests": {"cpu": "1", "memory": "896Mi"}
    });
    pod
}

/// `pod` as sent by its client, as it reaches mutating webhooks: with the managedFields entry
/// the apiserver records for the client, and the ServiceAccount plugin's token volume.
fn admitted(sent: &Value) -> Value {
    let mut pod = sent.clone();
    let managed = json!([{
        "manager": "fabric8-kubernetes-client",
        "operation": "Update",
        "apiVersion": "v1",
        "time": pod["metadata"]["creationTimestamp"],
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(sent, true),
    }]);
    pod["metadata"]["managedFields"] = managed;
    pod["spec"]["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(json!({
            "name": "kube-api-access-7xk2q",
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]
            }
        }));
    spark_container(&mut pod)["volumeMounts"]
        .as_array_mut()
        .expect("volumeMounts")
        .push(json!({
            "name": "kube-api-access-7xk2q",
            "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"
        }));
    pod
}

fn spark_container(pod: &mut Value) -> &mut Value {
    pod["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .iter_mut()
        .find(|c| c["name"] == "spark-kubernetes-driver")
        .expect("the spark-kubernetes-driver container")
}

/// The server-side-apply field set (`FieldsV1`) of `v`, as the apiserver records it: `f:` for
/// members, `k:` keys for the associative lists of a pod, atomic lists as leaves.
fn fields_v1(v: &Value, top: bool) -> Value {
    let Value::Object(members) = v else {
        return json!({});
    };
    let mut out = Map::new();
    if !top {
        out.insert(".".into(), json!({}));
    }
    for (k, x) in members {
        if top && matches!(k.as_str(), "kind" | "apiVersion" | "status") {
            continue;
        }
        if matches!(
            k.as_str(),
            "uid" | "creationTimestamp" | "name" | "namespace" | "managedFields"
        ) && x.is_string()
        {
            continue;
        }
        let field = match x {
            Value::Object(_) => {
                let mut inner = fields_v1(x, false);
                if top || k == "metadata" || k == "spec" {
                    inner.as_object_mut().map(|m| m.remove("."));
                }
                inner
            }
            Value::Array(items) => match list_key(k) {
                Some(keys) => {
                    let mut list = Map::new();
                    for item in items {
                        let key: Map<String, Value> = keys
                            .iter()
                            .filter_map(|&key| Some((key.to_string(), item.get(key)?.clone())))
                            .collect();
                        list.insert(format!("k:{}", Value::Object(key)), fields_v1(item, false));
                    }
                    Value::Object(list)
                }
                None => json!({}),
            },
            _ => json!({}),
        };
        out.insert(format!("f:{k}"), field);
    }
    Value::Object(out)
}

fn list_key(field: &str) -> Option<&'static [&'static str]> {
    match field {
        "containers" | "initContainers" | "volumes" | "env" => Some(&["name"]),
        "ports" => Some(&["containerPort", "protocol"]),
        "volumeMounts" => Some(&["mountPath"]),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The scale runs (submit_scale, schedule_scale): their control plane and process figures.

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CLUSTER_UP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const CLUSTER_DOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// A control plane of its own (tests/cluster/cluster.sh in a temporary folder), stopped when
/// dropped.
pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    script: PathBuf,
    /// The bench's name, for messages and where the apiserver's log is kept.
    bench: &'static str,
    /// Removed (with the apiserver's logs and certificates) after `down`.
    _tmp: tempfile::TempDir,
}

impl Cluster {
    pub fn up(bench: &'static str) -> Result<Cluster, BoxError> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{bench}-"))
            .tempdir()?;
        let dir = tmp.path().join("cluster");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh");
        let stderr_path = tmp.path().join("cluster-up.log");
        // The guard exists before the start, so a half-started cluster is stopped too.
        let cluster = Cluster {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            script,
            bench,
            _tmp: tmp,
        };
        eprintln!(
            "{bench}: starting etcd + kube-apiserver in {}",
            cluster.dir.display()
        );
        let mut child = Command::new(&cluster.script)
            .arg("up")
            .arg(&cluster.dir)
            .env("WATCH_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()?;
        let status = wait_bounded(&mut child, CLUSTER_UP_TIMEOUT);
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(cluster),
            Some(s) => Err(format!("cluster.sh up exited with {s}:\n{log}").into()),
            None => Err(
                format!("cluster.sh up did not finish in {CLUSTER_UP_TIMEOUT:?}:\n{log}").into(),
            ),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Keep the apiserver's log (its state folder is removed below).
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(self.bench)
            .join("apiserver.log");
        if std::fs::create_dir_all(kept.parent().unwrap_or(Path::new("."))).is_ok()
            && std::fs::copy(self.dir.join("apiserver.log"), &kept).is_ok()
        {
            eprintln!(
                "{}: kube-apiserver log kept in {}",
                self.bench,
                kept.display()
            );
        }
        let child = Command::new(&self.script)
            .arg("down")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = child
            && wait_bounded(&mut child, CLUSTER_DOWN_TIMEOUT).is_none()
        {
            eprintln!(
                "{}: cluster.sh down did not finish; the watchdog will stop it",
                self.bench
            );
        }
    }
}

/// Waits for `child` at most `timeout`; kills it (by its own pid) if it is still running then.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The kernel's clock ticks per second (what /proc/PID/stat counts in).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unexpected /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, BoxError> {
        Ok(fields
            .get(n - 3)
            .ok_or("short /proc/PID/stat")?
            .parse::<u64>()?)
    };
    Ok(field(14)? + field(15)?)
}
