//! End-to-end: Apache Spark 3.3.4's real spark-submit (PyPI `pyspark==3.3.4`, provisioned by
//! `tests/cluster/pyspark.sh`) runs the argument list of `submission::spark_submit::arguments`
//! against the local kube-apiserver, and creates the driver under native submission's
//! deterministic name and labels. Loopback only: the master is the local apiserver, and the
//! images are never pulled (there are no nodes).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use serde_json::json;
use spark_webhook::crd::SparkApplication;
use spark_webhook::submission::spark_submit::{
    SparkSubmitError, SparkSubmitter, SubmitAuth, arguments,
};
use spark_webhook::submission::{SubmitOptions, driver_pod_name};
use tokio_util::sync::CancellationToken;

/// spark-submit of one app: JVM start plus three API calls; generous for a loaded 2-core CI.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(150);
/// First run downloads pyspark (~280 MB) from PyPI.
const PROVISION_TIMEOUT: Duration = Duration::from_secs(900);
const SUBMISSION_ID_LABEL: &str = "sparkoperator.k8s.io/submission-id";

/// SPARK_HOME from `tests/cluster/pyspark.sh`; its stderr is the failure message.
async fn spark_home() -> PathBuf {
    let script = common::repo_root().join("tests/cluster/pyspark.sh");
    let run = tokio::process::Command::new(&script)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PROVISION_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} did not finish in {PROVISION_TIMEOUT:?}",
                script.display()
            )
        })
        .expect("running tests/cluster/pyspark.sh");
    assert!(
        out.status.success(),
        "tests/cluster/pyspark.sh failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let home = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        home.join("bin/spark-submit").is_file(),
        "no bin/spark-submit in {}",
        home.display()
    );
    home
}

/// `k8s://` + the local apiserver's URL (`APISERVER_URL` in the cluster's env file).
fn master() -> String {
    let env = std::fs::read_to_string(common::cluster().dir.join("env")).expect("cluster env");
    let url = env
        .lines()
        .find_map(|l| l.strip_prefix("export APISERVER_URL="))
        .expect("APISERVER_URL in the cluster env file");
    assert!(url.starts_with("https://127.0.0.1:"), "not loopback: {url}");
    format!("k8s://{url}")
}

/// A submitter authenticated as the cluster admin through a token file (never argv).
fn submitter(home: PathBuf, token: &str, dir: &tempfile::TempDir) -> SparkSubmitter {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).expect("token file");
    SparkSubmitter {
        spark_home: home,
        timeout: SUBMIT_TIMEOUT,
        kubeconfig_auth: SubmitAuth {
            token_file,
            ca_cert_file: Some(common::cluster().dir.join("pki/apiserver.crt")),
        },
    }
}

fn admin_token() -> String {
    std::fs::read_to_string(common::cluster().dir.join("admin.token")).expect("admin.token")
}

/// A SparkApplication that needs not exist in the cluster: only metadata and spec are read.
fn app(ns: &str, name: &str, spec: serde_json::Value) -> SparkApplication {
    let mut spec = spec;
    let defaults = json!({
        "mode": "cluster", "sparkVersion": "3.3.4", "image": "spark:3.3.4",
        "driver": {"cores": 1, "coreLimit": "1200m", "memory": "512m"},
        "executor": {"instances": 2, "cores": 1, "memory": "512m"}
    });
    for (k, v) in defaults.as_object().into_iter().flatten() {
        spec.as_object_mut()
            .expect("spec object")
            .entry(k)
            .or_insert(v.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": ns, "uid": format!("{}-{}", name, common::unique_suffix())},
        "spec": spec
    }))
    .expect("SparkApplication")
}

fn spark_pi(ns: &str, name: &str) -> SparkApplication {
    app(
        ns,
        name,
        json!({
            "type": "Scala",
            "mainClass": "org.apache.spark.examples.SparkPi",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "arguments": ["10"],
        }),
    )
}

/// The driver's `spark.properties` (from the ConfigMap Spark mounts), unescaped enough for
/// URIs (`\:` `\#` `\=` `\!` `\\`).
async fn driver_properties(client: &kube::Client, ns: &str, pod: &Pod) -> BTreeMap<String, String> {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .find(|v| v.name == "spark-conf-volume-driver")
        .and_then(|v| v.config_map.as_ref())
        .map(|c| c.name.clone())
        .expect("driver pod mounts its spark.properties ConfigMap");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(&name)
        .await
        .expect("driver ConfigMap");
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("spark.properties"))
        .expect("spark.properties in the ConfigMap");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let l = l
                .replace(r"\\", "\u{0}")
                .replace(r"\:", ":")
                .replace(r"\#", "#")
                .replace(r"\!", "!")
                .replace(r"\=", "\u{1}")
                .replace('\u{0}', r"\");
            let (k, v) = l.split_once('=')?;
            Some((k.replace('\u{1}', "="), v.replace('\u{1}', "=")))
        })
        .collect()
}

#[tokio::test]
async fn spark_submit_creates_the_driver_under_our_name_and_labels() {
    let home = spark_home().await;
    let client = common::client().await;
    let ns = common::namespace(&client, "ss-pi").await;
    let app = spark_pi(&ns, "spark-pi");
    let opts = SubmitOptions::default();
    let master = master();
    let args = arguments(&app, 1, &opts, &master).expect("arguments");
    println!("spark-submit arguments: {args:?}");
    let submission = spark_webhook::submission::build(&app, 1, &opts).expect("native build");

    let tmp = tempfile::tempdir().expect("tempdir");
    let submitter = submitter(home, &admin_token(), &tmp);
    let started = Instant::now();
    let result = submitter.run(&args, CancellationToken::new()).await;
    let wall = started.elapsed();
    println!("spark-submit wall time: {wall:?}");
    if let Err(e) = result {
        panic!("spark-submit failed: {e}");
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = driver_pod_name(&app, 1);
    assert_eq!(name, "spark-pi-driver");
    let pod = pods
        .get(&name)
        .await
        .expect("the driver pod, under our name");
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(SUBMISSION_ID_LABEL),
        Some(&submission.submission_id),
        "{labels:?}"
    );
    assert_eq!(labels.get("spark-role").map(String::as_str), Some("driver"));
    assert_eq!(
        labels
            .get("sparkoperator.k8s.io/launched-by-spark-operator")
            .map(String::as_str),
        Some("true")
    );
    let container = &pod.spec.as_ref().expect("pod spec").containers[0];
    assert_eq!(
        container.args.clone().unwrap_or_default(),
        [
            "driver",
            "--properties-file",
            "/opt/spark/conf/spark.properties",
            "--class",
            "org.apache.spark.examples.SparkPi",
            "local:///opt/spark/examples/jars/spark-examples.jar",
            "10"
        ]
    );

    let props = driver_properties(&client, &ns, &pod).await;
    let native = spark_webhook::submission::properties(&app, 1, &opts).expect("native conf");
    // The main jar once: spark-submit appends it to what we pass.
    assert_eq!(props["spark.jars"], native["spark.jars"]);
    assert_eq!(props["spark.kubernetes.driver.pod.name"], name);
    assert_eq!(
        props["spark.kubernetes.submission.waitAppCompletion"],
        "false"
    );
    assert_eq!(props["spark.master"], master);
    // Everything native submission writes, spark-submit writes alike, except what it draws at
    // random (app id, driver Service name) and where it connects.
    let random = ["spark.app.id", "spark.driver.host", "spark.master"];
    for (key, value) in &native {
        if !random.contains(&key.as_str()) {
            assert_eq!(props.get(key), Some(value), "{key}");
        }
    }
    let extra: Vec<&String> = props.keys().filter(|k| !native.contains_key(*k)).collect();
    println!("spark.properties keys only spark-submit writes: {extra:?}");
}

#[tokio::test]
async fn spark_submit_keeps_archive_aliases_of_a_python_app() {
    let home = spark_home().await;
    let client = common::client().await;
    let ns = common::namespace(&client, "ss-py").await;
    let archives = [
        "local:///opt/spark/work-dir/pyenv.tar.gz#environment",
        "local:///opt/data.tgz",
    ];
    let app = app(
        &ns,
        "py-pi",
        json!({
            "type": "Python", "pythonVersion": "3",
            "mainApplicationFile": "local:///opt/spark/examples/src/main/python/pi.py",
            "arguments": ["5"],
            "deps": {"archives": archives},
        }),
    );
    let opts = SubmitOptions::default();
    let args = arguments(&app, 2, &opts, &master()).expect("arguments");
    let tmp = tempfile::tempdir().expect("tempdir");
    let submitter = submitter(home, &admin_token(), &tmp);
    if let Err(e) = submitter.run(&args, CancellationToken::new()).await {
        panic!("spark-submit failed: {e}");
    }

    let name = driver_pod_name(&app, 2);
    assert_eq!(name, "py-pi-driver-2");
    let pod = Api::<Pod>::namespaced(client.clone(), &ns)
        .get(&name)
        .await
        .expect("the driver pod, under our name");
    let props = driver_properties(&client, &ns, &pod).await;
    assert_eq!(props["spark.archives"], archives.join(","));
    assert_eq!(props["spark.kubernetes.resource.type"], "python");
    let native = spark_webhook::submission::properties(&app, 2, &opts).expect("native conf");
    assert_eq!(props["spark.archives"], native["spark.archives"]);
    assert_eq!(
        props["spark.kubernetes.driver.label.sparkoperator.k8s.io/submission-id"],
        native["spark.kubernetes.driver.label.sparkoperator.k8s.io/submission-id"]
    );
}

#[tokio::test]
async fn a_failed_spark_submit_reports_the_end_of_its_output() {
    let home = spark_home().await;
    let client = common::client().await;
    let ns = common::namespace(&client, "ss-fail").await;
    let app = spark_pi(&ns, "spark-pi");
    let args = arguments(&app, 1, &SubmitOptions::default(), &master()).expect("arguments");
    let tmp = tempfile::tempdir().expect("tempdir");

    // A token the apiserver does not know: spark-submit's pod create is refused.
    let wrong = submitter(home.clone(), "not-a-valid-token", &tmp);
    let err = wrong
        .run(&args, CancellationToken::new())
        .await
        .expect_err("an unknown token is refused");
    println!("{err}");
    let SparkSubmitError::Failed { tail, status, .. } = &err else {
        panic!("expected a failed run, got: {err}")
    };
    assert!(!status.success());
    assert!(
        tail.contains("Unauthorized") || tail.contains("401"),
        "the tail names the refusal:\n{tail}"
    );
    assert!(tail.lines().count() <= 20, "{tail}");
    assert!(
        !tail.contains("\tat "),
        "stack frames are left out:\n{tail}"
    );
    assert!(
        !err.to_string().contains("not-a-valid-token"),
        "the token leaked"
    );
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    assert!(
        pods.get_opt("spark-pi-driver")
            .await
            .expect("get")
            .is_none()
    );

    // A timeout kills it, however far it got.
    let hasty = SparkSubmitter {
        timeout: Duration::from_millis(1),
        ..submitter(home, &admin_token(), &tmp)
    };
    let started = Instant::now();
    let err = hasty
        .run(&args, CancellationToken::new())
        .await
        .expect_err("1 ms is too short");
    assert!(matches!(err, SparkSubmitError::TimedOut { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The reconciler with `--submitter=spark-submit`: `kubectl apply` leads to a driver created by
/// the real spark-submit, under the same deterministic name, tracked like a native one.
#[tokio::test]
async fn the_reconciler_submits_through_spark_submit_when_asked() {
    let home = spark_home().await;
    let client = common::client().await;
    common::install_crd();
    let ns = common::namespace(&client, "ss-reconcile").await;
    let certs = tempfile::tempdir().unwrap();
    spark_webhook::certs::files::generate(&spark_webhook::certs::issue::CertOptions::new(
        certs.path(),
    ))
    .unwrap();
    let token_file = certs.path().join("token");
    std::fs::write(&token_file, admin_token()).unwrap();
    let ca = common::cluster().dir.join("pki/apiserver.crt");
    let master = master();
    let _served = common::Served::start(
        &ns,
        certs.path(),
        &[
            "--webhook=false",
            "--leader-election=false",
            "--submitter",
            "spark-submit",
            "--spark-home",
            home.to_str().unwrap(),
            "--spark-submit-token-file",
            token_file.to_str().unwrap(),
            "--spark-submit-ca-file",
            ca.to_str().unwrap(),
            "--spark-master",
            &master,
            "--enable-driver-pdb",
        ],
    );
    let mut app = serde_json::to_value(spark_pi(&ns, "via-submit")).unwrap();
    app["metadata"] = serde_json::json!({"name": "via-submit", "namespace": ns});
    let out = common::kubectl_stdin(&["apply", "-f", "-"], Some(&app.to_string()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let apps: kube::Api<SparkApplication> = kube::Api::namespaced(client.clone(), &ns);
    let status = common::eventually("SUBMITTED through spark-submit", SUBMIT_TIMEOUT, || async {
        let st = apps.get("via-submit").await.ok()?.status?;
        (st.application_state.state.as_str() == "SUBMITTED").then_some(st)
    })
    .await;
    assert_eq!(status.driver_info.pod_name, "via-submit-driver");
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
    let driver = pods.get("via-submit-driver").await.unwrap();
    assert_eq!(
        driver
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get(SUBMISSION_ID_LABEL),
        Some(&status.submission_id),
        "spark-submit's driver carries our submission id"
    );
    let annotations = driver.metadata.annotations.unwrap_or_default();
    assert!(
        annotations.contains_key("sparkoperator.k8s.io/spec-hash"),
        "{annotations:?}"
    );

    // An object around Spark's driver that cannot be created (the driver's PDB where
    // policy/v1 is not served) fails the submission, and the driver spark-submit made, which
    // the next attempt would not use, does not stay behind (as in native submission).
    let served = common::kubectl(&["api-versions"]);
    let policy_v1 = String::from_utf8_lossy(&served.stdout)
        .lines()
        .any(|l| l.trim() == "policy/v1");
    let mut app = serde_json::to_value(spark_pi(&ns, "pdb")).unwrap();
    app["metadata"] = serde_json::json!({"name": "pdb", "namespace": ns});
    app["spec"]["driverPodDisruptionBudget"] = json!(true);
    let out = common::kubectl_stdin(&["apply", "-f", "-"], Some(&app.to_string()));
    assert!(out.status.success());
    let want = if policy_v1 { "SUBMITTED" } else { "FAILED" };
    let st = common::eventually(&format!("pdb {want}"), SUBMIT_TIMEOUT, || async {
        let st = apps.get("pdb").await.ok()?.status?.application_state;
        (st.state.as_str() == want).then_some(st)
    })
    .await;
    if !policy_v1 {
        assert!(
            st.error_message.contains("policy/v1"),
            "{}",
            st.error_message
        );
        common::wait_pod_gone(&pods, "pdb-driver", "no driver left", SUBMIT_TIMEOUT).await;
    }
}
