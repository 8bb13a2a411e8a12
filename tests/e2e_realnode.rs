//! End-to-end on a real node: Spark really runs. Needs the one-node cluster of
//! `tests/cluster/realnode.sh up DIR` (kubelet, containerd, the local spark:3.5.3 image) named by
//! `SPARK_WEBHOOK_REALNODE_DIR=DIR`; without it every test here fails and says how to get one.
//!
//! `spark-webhook serve` runs on the host (webhook registered by url on 127.0.0.1, reconciler
//! submitting natively); the driver pod reaches the apiserver through the `kubernetes` Service,
//! creates its executor pods (mutated by the webhook), and they find the driver through the
//! cluster DNS name of its headless Service.

mod common;

use std::time::{Duration, Instant};

use common::{Served, install_crd, kubectl, kubectl_ok, kubectl_stdin, namespace};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use spark_webhook::certs::{CertOptions, generate};
use spark_webhook::crd::SparkApplication;

/// A pi run takes about a minute on an idle 2-core machine, several on a busy one.
const RUN: Duration = Duration::from_secs(420);

/// The real node these tests run on. nextest's default filter leaves this binary out of the
/// control-plane part of `make test`; `tests/run-realnode.sh` (the real-node part of `make
/// test`, and `make test-realnode`) brings a node up and runs them. Run by hand without a node,
/// they fail and say how to get one.
fn node() -> &'static common::Cluster {
    common::real_node().expect(
        "no real node: run `make test-realnode`, or `tests/cluster/realnode.sh up DIR` then \
         SPARK_WEBHOOK_REALNODE_DIR=DIR cargo nextest run --ignore-default-filter --test e2e_realnode",
    )
}

/// The driver's identity in `ns`, as the shipped manifests/rbac/job-namespace.yaml gives it in
/// spark-jobs; waits until its token exists (pods are refused before).
fn driver_rbac(ns: &str) {
    let manifest =
        std::fs::read_to_string(common::repo_root().join("manifests/rbac/job-namespace.yaml"))
            .expect("manifests/rbac/job-namespace.yaml")
            .replace("namespace: spark-jobs", &format!("namespace: {ns}"));
    kubectl_ok(&["apply", "-f", "-"], Some(&manifest));
    let deadline = Instant::now() + Duration::from_secs(30);
    while kubectl_ok(
        &[
            "get",
            "serviceaccount",
            "spark",
            "-n",
            ns,
            "-o",
            "jsonpath={.secrets[0].name}",
        ],
        None,
    )
    .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "no token for ServiceAccount spark in {ns} after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start(ns: &str) -> (Served, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let served = Served::start(ns, tmp.path(), &["--leader-election=false"]);
    (served, tmp)
}

fn pyspark_pi(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": "Python", "pythonVersion": "3", "mode": "cluster",
            "image": "spark:3.5.3", "imagePullPolicy": "IfNotPresent", "sparkVersion": "3.5.3",
            "mainApplicationFile": "local:///opt/spark/examples/src/main/python/pi.py",
            "arguments": ["4"],
            "restartPolicy": {"type": "Never"},
            // Two pods on a 2-CPU node: request less than a core each.
            "driver": {"cores": 1, "coreRequest": "500m", "memory": "512m", "serviceAccount": "spark"},
            "executor": {"instances": 1, "cores": 1, "coreRequest": "500m", "memory": "512m"}
        }
    })
}

/// A shipped example (manifests/examples/FILE) moved from `spark-jobs` into namespace `ns`.
fn example(file: &str, ns: &str) -> String {
    let path = common::repo_root().join("manifests/examples").join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("spark-jobs", ns)
}

/// What to show when a run goes wrong: the app, the pods, the driver log, serve's log.
fn diagnostics(ns: &str, driver: &str, served: &Served) -> String {
    let out = |args: &[&str]| {
        let o = kubectl(args);
        format!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let serve_log = served.logs();
    let tail: Vec<&str> = serve_log.lines().rev().take(40).collect();
    format!(
        "{}\n{}\n{}\n{}\n--- serve log (tail) ---\n{}",
        out(&["get", "sparkapp", "-n", ns, "-o", "yaml"]),
        out(&["get", "pods", "-n", ns, "-o", "wide"]),
        out(&["get", "events", "-n", ns]),
        out(&["logs", "-n", ns, driver, "--tail", "60"]),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// A finished run: how long from apply to COMPLETED, and the executor pods seen meanwhile (Spark
/// deletes them when the app ends).
struct Run {
    took: Duration,
    executors: Vec<Pod>,
}

/// Waits until the app reaches COMPLETED; panics with diagnostics on FAILED or after `RUN`.
async fn wait_completed(client: &kube::Client, ns: &str, name: &str, served: &Served) -> Run {
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    let driver = format!("{name}-driver");
    let mut last = String::new();
    let mut executors: Vec<Pod> = Vec::new();
    loop {
        let selector = format!("spark-role=executor,sparkoperator.k8s.io/app-name={name}");
        if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
            for p in list.items {
                if !executors.iter().any(|e| e.metadata.name == p.metadata.name) {
                    executors.push(p);
                }
            }
        }
        let state = apps
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|a| a.status)
            .map(|s| s.application_state.state.to_string())
            .unwrap_or_default();
        if state != last {
            eprintln!("{:>6.1}s {name}: {state}", started.elapsed().as_secs_f64());
            last = state.clone();
        }
        match state.as_str() {
            "COMPLETED" => {
                return Run {
                    took: started.elapsed(),
                    executors,
                };
            }
            "FAILED" | "SUBMISSION_FAILED" | "FAILING" => {
                panic!("{name} {state}:\n{}", diagnostics(ns, &driver, served))
            }
            _ => {}
        }
        assert!(
            started.elapsed() < RUN,
            "{name} not COMPLETED after {RUN:?} (state {state:?}):\n{}",
            diagnostics(ns, &driver, served)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The custom-container example: PySpark's pi, its executors' Spark container named `worker`.
#[tokio::test]
async fn the_pi_example_with_a_custom_executor_container_runs_to_completed_and_prints_pi() {
    node();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-pi").await;
    driver_rbac(&ns);
    let (served, _certs) = start(&ns);
    let name = "spark-pi-custom-container";
    let out = kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&example("spark-pi-custom-container.yaml", &ns)),
    );
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = wait_completed(&client, &ns, name, &served).await;
    eprintln!(
        "pi: kubectl apply -> COMPLETED in {:.1}s",
        run.took.as_secs_f64()
    );

    let log = kubectl_ok(&["logs", "-n", &ns, &format!("{name}-driver")], None);
    assert!(
        log.contains("Pi is roughly 3.1"),
        "the driver log has no 'Pi is roughly 3.1':\n{log}"
    );
    // The driver created its executor, and the webhook completed it on the way in.
    assert_eq!(run.executors.len(), 1, "executor pods seen during the run");
    let spec = run.executors[0].spec.as_ref().expect("executor spec");
    let seccomp = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    assert_eq!(seccomp, Some("RuntimeDefault"), "executor seccomp");
    // Spark named the container after the template, and every executor setting is in it.
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["worker"], "executor containers");
    let worker = &spec.containers[0];
    let pre_stop = worker
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.clone());
    assert_eq!(
        pre_stop,
        Some(vec!["/opt/decom.sh".to_string()]),
        "executor preStop"
    );
    let env = worker.env.as_deref().unwrap_or_default();
    assert!(
        env.iter().any(|e| e.name == "EXAMPLE_EXECUTOR_SETTING"
            && e.value.as_deref() == Some("in-the-worker-container")),
        "executor env: {env:?}"
    );
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The volumes-and-archives example: its job checks, on the driver and on every executor, the
/// ConfigMap volume, `Seccomp: 2` (our RuntimeDefault default, really enforced by runc) and the
/// remote archive unpacked under its `#deps` alias; it FAILS unless all hold.
#[tokio::test]
async fn an_app_checks_its_configmap_volume_seccomp_and_remote_archive_on_driver_and_executors() {
    node();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-deps").await;
    driver_rbac(&ns);
    let (served, _certs) = start(&ns);
    let name = "spark-checks";
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&example("spark-checks-volumes-archives.yaml", &ns)),
    );
    let run = wait_completed(&client, &ns, name, &served).await;
    eprintln!(
        "checks: kubectl apply -> COMPLETED in {:.1}s",
        run.took.as_secs_f64()
    );
    let log = kubectl_ok(&["logs", "-n", &ns, &format!("{name}-driver")], None);
    assert!(
        log.contains("CHECKS OK on the driver and 2 executors"),
        "driver log:\n{log}"
    );
    assert_eq!(run.executors.len(), 2, "executor pods seen during the run");
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test]
async fn deleting_a_running_executor_runs_its_prestop_decommission_and_the_app_still_completes() {
    node();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-decom").await;
    driver_rbac(&ns);
    let (served, _certs) = start(&ns);
    let mut app = pyspark_pi(&ns, "decom");
    // Long enough to delete an executor mid-run; decommissioning on SIGPWR is what the
    // webhook's preStop (/opt/decom.sh) asks for.
    app["spec"]["arguments"] = json!(["120"]);
    app["spec"]["executor"]["instances"] = json!(2);
    app["spec"]["executor"]["coreRequest"] = json!("400m");
    app["spec"]["driver"]["coreRequest"] = json!("400m");
    app["spec"]["sparkConf"] = json!({"spark.decommission.enabled": "true"});
    kubectl_ok(&["apply", "-f", "-"], Some(&app.to_string()));

    // Once a registered executor runs tasks, delete its pod the way a user or the cluster would.
    let deadline = Instant::now() + RUN;
    let victim = loop {
        assert!(
            Instant::now() < deadline,
            "no executor running tasks:\n{}",
            diagnostics(&ns, "decom-driver", &served)
        );
        let log = kubectl(&["logs", "-n", &ns, "decom-driver"]);
        let log = String::from_utf8_lossy(&log.stdout);
        // "Starting task 3.0 in stage 0.0 (TID 3) (10.88.0.12, executor 2, partition 3, ..."
        let busy = log.lines().find_map(|l| {
            let rest = l.split_once("Starting task")?.1;
            let id = rest.split_once(", executor ")?.1.split(',').next()?;
            Some(id.trim().to_string())
        });
        if let Some(id) = busy {
            let pods = kubectl_ok(
                &[
                    "get",
                    "pods",
                    "-n",
                    &ns,
                    "-l",
                    &format!("spark-role=executor,spark-exec-id={id}"),
                    "-o",
                    "jsonpath={.items[*].metadata.name}",
                ],
                None,
            );
            if let Some(p) = pods.split_whitespace().next() {
                break p.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("deleting executor pod {victim}");
    kubectl_ok(&["delete", "pod", "-n", &ns, &victim, "--wait=false"], None);

    let run = wait_completed(&client, &ns, "decom", &served).await;
    eprintln!(
        "decom: kubectl apply -> COMPLETED in {:.1}s",
        run.took.as_secs_f64()
    );
    let log = kubectl_ok(&["logs", "-n", &ns, "decom-driver"], None);
    assert!(log.contains("Pi is roughly 3.1"), "driver log:\n{log}");
    // The hook ran: decom.sh's SIGPWR made the executor decommission itself and tell the driver
    // ("Received executor N decommissioned message"); a failed hook would leave a
    // FailedPreStopHook event. (With spark.decommission.enabled Spark puts the same preStop on
    // its executor pods itself; without, the webhook adds it, as e2e_webhook checks.)
    let decom: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("decommissioned message") || l.contains("Decommission executors"))
        .collect();
    assert!(
        !decom.is_empty(),
        "the driver never heard of a decommissioning executor:\n{log}"
    );
    eprintln!("driver saw:\n{}", decom.join("\n"));
    // decom.sh waits for its JVM to exit, and is killed with the container then (exit 137): that
    // is success. Any other failure of the victim's hook is not.
    let events = kubectl_ok(&["get", "events", "-n", &ns], None);
    let bad: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("FailedPreStopHook") && l.contains(&victim))
        .filter(|l| !l.contains("exited with 137"))
        .collect();
    assert!(
        bad.is_empty(),
        "the victim's preStop hook failed:\n{}",
        bad.join("\n")
    );
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The same pi app through `--submitter=spark-submit` (Spark 3.3.4's client from
/// tests/cluster/pyspark.sh: 3.4+ cannot create its driver Service on a 1.20 apiserver), for
/// the wall time of a JVM submission beside the native one.
#[tokio::test]
async fn a_pyspark_pi_app_submitted_by_spark_submit_runs_to_completed() {
    node();
    let out = std::process::Command::new(common::repo_root().join("tests/cluster/pyspark.sh"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running tests/cluster/pyspark.sh");
    assert!(
        out.status.success(),
        "pyspark.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let home = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-submit").await;
    driver_rbac(&ns);
    let dir = &common::cluster().dir;
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .trim()
            .to_string()
    };
    // The apiserver's own address: the submitting JVM on the host and the driver in its pod
    // both reach it there, and its certificate names it.
    let master = format!(
        "k8s://https://{}:{}",
        read("apiserver.host"),
        read("apiserver.port")
    );
    let certs = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(certs.path())).unwrap();
    let token_file = certs.path().join("token");
    std::fs::write(&token_file, read("admin.token")).unwrap();
    let ca = dir.join("pki/apiserver.crt");
    let served = Served::start(
        &ns,
        certs.path(),
        &[
            "--leader-election=false",
            "--submitter",
            "spark-submit",
            "--spark-home",
            &home,
            "--spark-submit-token-file",
            token_file.to_str().unwrap(),
            "--spark-submit-ca-file",
            ca.to_str().unwrap(),
            "--spark-master",
            &master,
        ],
    );
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&pyspark_pi(&ns, "pi-submit").to_string()),
    );
    let run = wait_completed(&client, &ns, "pi-submit", &served).await;
    eprintln!(
        "pi-submit (spark-submit): kubectl apply -> COMPLETED in {:.1}s",
        run.took.as_secs_f64()
    );
    let log = kubectl_ok(&["logs", "-n", &ns, "pi-submit-driver"], None);
    assert!(log.contains("Pi is roughly 3.1"), "driver log:\n{log}");
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
