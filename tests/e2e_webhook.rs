//! End-to-end: a real kube-apiserver calls `spark-webhook serve` over TLS (url clientConfig on
//! 127.0.0.1) and applies its JSON patches; the tests read the *stored* pods.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Served, install_crd, kubectl_stdin, namespace};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use spark_webhook::certs::{files::generate, issue::CertOptions};

const DRIVER: &str = include_str!("fixtures/spark-submit-3.3.4/driver-pod.json");
const EXECUTOR: &str = include_str!("fixtures/executor-pod.json");

fn app(ns: &str) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "spark-pi", "namespace": ns},
        "spec": {
            "type": "Scala", "mode": "cluster", "sparkVersion": "3.5.3", "image": "spark:3.5.3",
            "mainClass": "org.apache.spark.examples.SparkPi",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "my-conf"}}],
            "nodeSelector": {"disktype": "ssd"},
            "driver": {
                "cores": 1, "memory": "512m", "serviceAccount": "spark",
                "env": [{"name": "DRIVER_ENV", "value": "d"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "tolerations": [{"key": "spark", "operator": "Exists", "effect": "NoSchedule"}]
            },
            "executor": {
                "instances": 1, "cores": 1, "memory": "512m",
                "env": [{"name": "EXEC_ENV", "value": "e"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "conf", "mountPath": "/etc/conf"}]
            }
        }
    })
}

/// A pod as Spark would send it, renamed into `ns` for app `app_name`.
fn spark_pod(fixture: &str, ns: &str, name: &str, app_name: &str) -> Pod {
    let mut v: Value = serde_json::from_str(fixture).expect("fixture");
    let meta = v["metadata"].as_object_mut().expect("metadata");
    meta.remove("uid");
    meta.remove("creationTimestamp");
    meta.insert("name".into(), name.into());
    meta.insert("namespace".into(), ns.into());
    v["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = app_name.into();
    v.as_object_mut().expect("pod").remove("status");
    serde_json::from_value(v).expect("pod")
}

fn certs(dir: &Path) {
    generate(&CertOptions::new(dir)).expect("certificates");
}

fn env_names(pod: &Pod, container: &str) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .unwrap();
    c.env.iter().flatten().map(|e| e.name.clone()).collect()
}

fn mounts(pod: &Pod, container: &str) -> Vec<(String, String)> {
    let spec = pod.spec.as_ref().unwrap();
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .unwrap();
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect()
}

fn seccomp(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .seccomp_profile
        .as_ref()
        .map(|p| p.type_.clone())
}

#[tokio::test]
async fn stored_spark_pods_carry_the_mutations_and_other_pods_are_untouched() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-mutate").await;
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    common::kubectl_apply(&app(&ns));
    let _served = Served::start(&ns, tmp.path(), &["--controller=false"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    let driver = pods
        .create(
            &PostParams::default(),
            &spark_pod(DRIVER, &ns, "spark-pi-driver", "spark-pi"),
        )
        .await
        .expect("driver pod created");
    assert_eq!(
        seccomp(&driver).as_deref(),
        Some("RuntimeDefault"),
        "seccomp default on the driver"
    );
    assert!(env_names(&driver, "spark-kubernetes-driver").contains(&"DRIVER_ENV".to_string()));
    assert!(mounts(&driver, "spark-kubernetes-driver").contains(&("data".into(), "/data".into())));
    let spec = driver.spec.as_ref().unwrap();
    assert!(
        spec.volumes.iter().flatten().any(|v| v.name == "data"),
        "volume data added"
    );
    assert!(
        spec.tolerations
            .iter()
            .flatten()
            .any(|t| t.key.as_deref() == Some("spark"))
    );
    assert_eq!(
        spec.node_selector
            .as_ref()
            .and_then(|n| n.get("disktype"))
            .map(String::as_str),
        Some("ssd")
    );
    let owner = &driver
        .metadata
        .owner_references
        .as_ref()
        .expect("owner reference")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("SparkApplication", "spark-pi")
    );

    let executor = pods
        .create(
            &PostParams::default(),
            &spark_pod(EXECUTOR, &ns, "spark-pi-exec-1", "spark-pi"),
        )
        .await
        .expect("executor pod created");
    assert_eq!(seccomp(&executor).as_deref(), Some("RuntimeDefault"));
    let exec_mounts = mounts(&executor, "spark-kubernetes-executor");
    assert!(
        exec_mounts.contains(&("conf".into(), "/etc/conf".into())),
        "{exec_mounts:?}"
    );
    assert!(env_names(&executor, "spark-kubernetes-executor").contains(&"EXEC_ENV".to_string()));
    let container = &executor.spec.as_ref().unwrap().containers[0];
    let pre_stop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .expect("executor preStop");
    let command = pre_stop
        .exec
        .as_ref()
        .and_then(|e| e.command.clone())
        .unwrap_or_default();
    assert!(
        command.iter().any(|c| c.contains("/opt/decom.sh")),
        "{command:?}"
    );

    // A pod that is not a Spark pod is not touched, even in a job namespace.
    let plain: Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}
    }))
    .unwrap();
    let plain = pods
        .create(&PostParams::default(), &plain)
        .await
        .expect("plain pod");
    assert_eq!(seccomp(&plain), None, "non-Spark pod must not be mutated");
    assert!(plain.metadata.owner_references.is_none());

    // A pod launched by us whose app does not exist is refused, naming app and namespace
    // (never created without its settings, kubeflow #2448).
    let err = pods
        .create(
            &PostParams::default(),
            &spark_pod(DRIVER, &ns, "orphan-driver", "no-such-app"),
        )
        .await
        .expect_err("orphan pod refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!("SparkApplication {ns}/no-such-app does not exist")),
        "{text}"
    );
    // A Spark pod someone else launched (no launched-by label) never reaches the webhook.
    let mut foreign = spark_pod(DRIVER, &ns, "foreign-driver", "no-such-app");
    foreign
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove("sparkoperator.k8s.io/launched-by-spark-operator");
    let foreign = pods
        .create(&PostParams::default(), &foreign)
        .await
        .expect("foreign Spark pod allowed");
    assert_eq!(seccomp(&foreign), None);
}

#[tokio::test]
async fn webhook_down_refuses_spark_pods_only() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-down").await;
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    common::kubectl_apply(&app(&ns));
    let mut served = Served::start(&ns, tmp.path(), &["--controller=false"]);
    served.terminate();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // failurePolicy Fail: with the webhook down, our Spark pod is refused...
    let err = pods
        .create(
            &PostParams::default(),
            &spark_pod(DRIVER, &ns, "driver-down", "spark-pi"),
        )
        .await
        .expect_err("Spark pod refused while the webhook is down");
    assert!(err.to_string().contains("failed calling webhook"), "{err}");
    // ...and every other pod of the namespace still creates.
    let plain: Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &plain)
        .await
        .expect("a non-Spark pod is never blocked");
}

#[tokio::test]
async fn registration_is_idempotent_and_metrics_count_reviews() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-register").await;
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    common::kubectl_apply(&app(&ns));
    let mut first = Served::start(&ns, tmp.path(), &["--controller=false"]);
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let before = configs.get(&first.config_name).await.expect("registered");
    let hook = &before.webhooks.as_ref().unwrap()[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(
        hook.rules.as_ref().unwrap()[0].operations.as_ref().unwrap(),
        &vec!["CREATE".to_string()]
    );
    assert!(
        hook.client_config
            .url
            .as_deref()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert_eq!(
        first.terminate().code(),
        Some(0),
        "SIGTERM ends serve with exit 0"
    );
    // Shutdown never deletes the configuration.
    assert!(configs.get_opt(&first.config_name).await.unwrap().is_some());

    // Applying the same registration again is a no-op: no write, no caBundle flapping.
    let same = spark_webhook::registration::Registration {
        name: first.config_name.clone(),
        endpoint: spark_webhook::registration::Endpoint::Url(format!(
            "https://127.0.0.1:{}",
            first.webhook_port
        )),
        ca_bundle: std::fs::read(tmp.path().join("ca.crt")).unwrap(),
        pod_failure_policy: spark_webhook::registration::FailurePolicy::Fail,
        app_failure_policy: spark_webhook::registration::FailurePolicy::Ignore,
        timeout_seconds: 5,
        namespace_selector: [(common::NS_LABEL.to_string(), ns.clone())].into(),
    };
    same.apply(&client).await.expect("re-apply");
    let unchanged = configs.get(&first.config_name).await.unwrap();
    assert_eq!(
        before.metadata.resource_version, unchanged.metadata.resource_version,
        "identical registration rewrote the object"
    );

    // A new instance on another port converges the object to its URL.
    let second = Served::start(&ns, tmp.path(), &["--controller=false"]);
    let after = configs.get(&second.config_name).await.unwrap();
    assert_ne!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
    let url = after.webhooks.as_ref().unwrap()[0]
        .client_config
        .url
        .clone()
        .unwrap();
    assert!(url.contains(&second.webhook_port.to_string()), "{url}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &spark_pod(DRIVER, &ns, "d1", "spark-pi"),
    )
    .await
    .unwrap();
    let (code, metrics) = second.admin_get("/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains(r#"spark_webhook_admission_reviews_total{kind="Pod",outcome="Patched"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("spark_webhook_certificate_not_after_timestamp_seconds"),
        "{metrics}"
    );
    // The CA's expiry, from ca.crt beside the served files.
    assert!(
        common::sample(
            &metrics,
            "spark_webhook_certificate_ca_not_after_timestamp_seconds"
        )
        .is_some_and(|t| t > 0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn invalid_apps_are_refused_by_the_validating_webhook_with_the_field() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-validate").await;
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    let _served = Served::start(&ns, tmp.path(), &["--controller=false"]);
    let mut bad = app(&ns);
    bad["spec"]["driver"]["volumeMounts"] = json!([{"name": "nope", "mountPath": "/x"}]);
    bad["spec"]["executor"]["memory"] = "lots".into();
    bad["spec"]["dynamicAllocation"] =
        json!({"enabled": true, "minExecutors": 5, "maxExecutors": 2});
    let out = kubectl_stdin(&["apply", "-f", "-"], Some(&bad.to_string()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "invalid app accepted");
    for needle in [
        "spec.driver.volumeMounts[0].name",
        "spec.executor.memory",
        "spec.dynamicAllocation.minExecutors",
    ] {
        assert!(err.contains(needle), "refusal should name {needle}: {err}");
    }
    common::kubectl_apply(&app(&ns)); // the valid one passes
}

#[tokio::test]
async fn a_pod_whose_app_cannot_be_applied_is_denied_naming_app_and_field() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-deny").await;
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    // Stored before any validating webhook watches this namespace.
    let mut bad = app(&ns);
    bad["spec"]["driver"]["volumeMounts"] = json!([{"name": "missing", "mountPath": "/m"}]);
    common::kubectl_apply(&bad);
    let _served = Served::start(&ns, tmp.path(), &["--controller=false"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let err = pods
        .create(
            &PostParams::default(),
            &spark_pod(DRIVER, &ns, "d", "spark-pi"),
        )
        .await
        .expect_err("driver of a broken app must be denied");
    let msg = err.to_string();
    assert!(msg.contains("spark-pi") && msg.contains("missing"), "{msg}");
    // And the app gets a Warning Event saying why.
    common::eventually(
        "SparkPodRejected event",
        Duration::from_secs(10),
        || async {
            let out = common::kubectl(&["get", "events", "-n", &ns, "-o", "json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            v["items"]
                .as_array()?
                .iter()
                .any(|e| {
                    e["reason"] == "SparkPodRejected" && e["involvedObject"]["name"] == "spark-pi"
                })
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn certificate_rotation_during_pod_creation_loses_nothing() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-rotate").await;
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    common::kubectl_apply(&app(&ns));
    // Fail, so a failed call would surface as an error instead of an unmutated pod.
    let served = Served::start(
        &ns,
        tmp.path(),
        &[
            "--controller=false",
            "--webhook-failure-policy",
            "fail",
            "--cert-reload-interval",
            "100ms",
        ],
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let creator = {
        let pods = pods.clone();
        let ns = ns.clone();
        tokio::spawn(async move {
            for i in 0..120 {
                let pod = spark_pod(DRIVER, &ns, &format!("rot-{i}"), "spark-pi");
                let created = pods
                    .create(&PostParams::default(), &pod)
                    .await
                    .expect("pod creation during rotation");
                assert_eq!(
                    seccomp(&created).as_deref(),
                    Some("RuntimeDefault"),
                    "pod rot-{i} unmutated"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let before = std::fs::read(tmp.path().join("tls.crt")).unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        certs(tmp.path());
    }
    creator.await.expect("creator task");
    assert_ne!(before, std::fs::read(tmp.path().join("tls.crt")).unwrap());
    assert!(
        served.logs().contains("reload"),
        "the server should log its reloads:\n{}",
        served.logs()
    );
}

/// Updates `dir` the way the kubelet updates a mounted Secret: the new files go into a fresh
/// directory, then one atomic rename swaps the `..data` symlink; the visible names are symlinks
/// through `..data`. The CA is carried over, so only the serving certificate changes.
fn kubelet_secret_update(dir: &Path, generation: u32) {
    use std::os::unix::fs::symlink;
    let staged_name = format!("..gen_{generation}");
    let staged = dir.join(&staged_name);
    std::fs::create_dir(&staged).unwrap();
    for ca in ["ca.crt", "ca.key"] {
        if dir.join("..data").join(ca).exists() {
            std::fs::copy(dir.join("..data").join(ca), staged.join(ca)).unwrap();
        }
    }
    certs(&staged);
    let next = dir.join("..data_tmp");
    symlink(&staged_name, &next).unwrap();
    std::fs::rename(&next, dir.join("..data")).unwrap();
    for file in ["ca.crt", "tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(file)).is_err() {
            symlink(format!("..data/{file}"), dir.join(file)).unwrap();
        }
    }
}

/// The leaf certificate a server presents on `port`, as PEM (via `openssl s_client`).
fn served_certificate(port: u16) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509"
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Creates `total` copies of the driver pod in `ns`, `concurrency` at a time; every one must
/// be created and mutated.
async fn create_spark_pods(
    pods: &Api<Pod>,
    ns: &str,
    prefix: &str,
    total: usize,
    concurrency: usize,
) {
    use futures::StreamExt as _;
    let results: Vec<Result<Pod, String>> = futures::stream::iter(0..total)
        .map(|i| {
            let pods = pods.clone();
            let pod = spark_pod(DRIVER, ns, &format!("{prefix}-{i}"), "spark-pi");
            async move {
                pods.create(&PostParams::default(), &pod)
                    .await
                    .map_err(|e| format!("{prefix}-{i}: {e}"))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    let unmutated = results
        .iter()
        .flatten()
        .filter(|p| seccomp(p).as_deref() != Some("RuntimeDefault"))
        .count();
    assert_eq!(unmutated, 0, "pods created without the webhook's mutations");
}

/// p50 and p99 (bucket upper bounds, seconds) of the pod review histogram on /metrics.
fn review_quantiles(metrics: &str) -> (f64, f64) {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("spark_webhook_admission_review_duration_seconds_bucket{")
                && l.contains("kind=\"Pod\"")
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                },
                count,
            ))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map_or(f64::NAN, |b| b.0)
    };
    (quantile(0.5), quantile(0.99))
}

#[tokio::test]
async fn two_replicas_share_a_kubelet_style_secret_and_rotate_it_without_a_failure() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-replicas").await;
    let tmp = tempfile::tempdir().unwrap();
    kubelet_secret_update(tmp.path(), 0);
    common::kubectl_apply(&app(&ns));
    let flags = ["--controller=false", "--cert-reload-interval", "200ms"];
    // Two webhook configurations, so the apiserver calls both replicas for every pod.
    let a = Served::start(&ns, tmp.path(), &flags);
    let b = Served::start_replica(&ns, tmp.path(), "-b", &flags);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let creator = {
        let (pods, ns) = (pods.clone(), ns.clone());
        tokio::spawn(async move { create_spark_pods(&pods, &ns, "rep", 500, 16).await })
    };
    for generation in 1..=2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        kubelet_secret_update(tmp.path(), generation);
    }
    creator
        .await
        .expect("500 Spark pods created and mutated during two rotations");
    let current = std::fs::read_to_string(tmp.path().join("tls.crt")).unwrap();
    let current = current.trim();
    for served in [&a, &b] {
        common::eventually(
            "the rotated certificate served",
            Duration::from_secs(5),
            || async { (served_certificate(served.webhook_port) == current).then_some(()) },
        )
        .await;
    }
}

#[tokio::test]
async fn two_thousand_spark_pods_sixteen_at_a_time_are_all_mutated() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-load").await;
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    common::kubectl_apply(&app(&ns));
    let served = Served::start(&ns, tmp.path(), &["--controller=false"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let started = std::time::Instant::now();
    create_spark_pods(&pods, &ns, "load", 2000, 16).await;
    let elapsed = started.elapsed();
    let (_, metrics) = served.admin_get("/metrics").expect("metrics");
    assert!(
        metrics
            .contains("spark_webhook_admission_review_duration_seconds_count{kind=\"Pod\"} 2000"),
        "every creation was reviewed once"
    );
    let (p50, p99) = review_quantiles(&metrics);
    // Figures for the team (not a timing assertion): the webhook's own view of its latency.
    eprintln!(
        "2000 Spark pods through the apiserver in {:.1} s ({:.0}/s); webhook review p50 <= {} ms, p99 <= {} ms",
        elapsed.as_secs_f64(),
        2000.0 / elapsed.as_secs_f64(),
        p50 * 1e3,
        p99 * 1e3
    );
    assert!(p99.is_finite(), "{metrics}");
}

/// A scraper or probe that opened a request and never finished it must not keep the operator
/// alive after SIGTERM: Kubernetes would SIGKILL it at the end of the grace period, mid-drain.
#[tokio::test]
async fn sigterm_ends_serve_although_a_client_holds_a_half_sent_request() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-stuck-client").await;
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    let mut served = Served::start(&ns, tmp.path(), &["--shutdown-timeout=2s"]);
    // Half a request on the plain HTTP port, and a TCP connection that never starts TLS on the
    // webhook port.
    let mut admin = std::net::TcpStream::connect(("127.0.0.1", served.admin_port)).unwrap();
    std::io::Write::write_all(&mut admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let _webhook = std::net::TcpStream::connect(("127.0.0.1", served.webhook_port)).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = served.child.kill();
            panic!("serve still running 30 s after SIGTERM:\n{}", served.logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0), "{}", served.logs());
    drop(admin);
}

/// A rolling update's handover: on SIGTERM the replica turns unready at once but keeps
/// answering reviews for the drain period (the apiserver still calls it until the endpoints
/// update reaches it), then exits cleanly.
#[tokio::test]
async fn after_sigterm_reviews_are_answered_through_the_drain_period_then_serve_exits() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "wh-drain").await;
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    common::kubectl_apply(&app(&ns));
    let drain = Duration::from_secs(4);
    let mut served = Served::start(
        &ns,
        tmp.path(),
        &["--controller=false", "--drain-period=4s"],
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status();
    let sigterm = std::time::Instant::now();
    let body = common::eventually(
        "/readyz to fail after SIGTERM",
        Duration::from_secs(5),
        || async {
            served
                .admin_get("/readyz")
                .filter(|(code, _)| *code == 503)
                .map(|(_, body)| body)
        },
    )
    .await;
    assert!(body.contains("shutting down"), "{body}");
    // Unready, and still reviewing: a driver pod created now is mutated by this replica.
    let driver = pods
        .create(
            &PostParams::default(),
            &spark_pod(DRIVER, &ns, "spark-pi-driver", "spark-pi"),
        )
        .await
        .expect("driver pod created during the drain");
    let answered_at = sigterm.elapsed();
    assert!(
        mounts(&driver, "spark-kubernetes-driver").contains(&("data".into(), "/data".into())),
        "the pod created during the drain was not mutated"
    );
    assert!(answered_at < drain, "answered only after {answered_at:?}");
    assert_eq!(
        served.child.try_wait().ok().flatten(),
        None,
        "exited mid-drain"
    );
    let status = served
        .wait_exit(drain + Duration::from_secs(15))
        .unwrap_or_else(|| panic!("serve still running after the drain:\n{}", served.logs()));
    assert_eq!(status.code(), Some(0), "{}", served.logs());
    assert!(
        sigterm.elapsed() >= drain,
        "exited after {:?}, before the drain period",
        sigterm.elapsed()
    );
}
