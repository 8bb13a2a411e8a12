//! End-to-end on a real node: Spark really runs. Needs the one-node cluster of
//! `tests/cluster/realnode.sh up DIR` (kubelet, containerd, the local spark:3.5.3, 4.0.5 and
//! 4.3.0 images) named by `SPARK_WEBHOOK_REALNODE_DIR=DIR`; without it every test here fails and
//! says how to get one.
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
use spark_webhook::certs::{files::generate, issue::CertOptions};
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
    driver_token(ns);
}

/// Waits until the token controller has given ServiceAccount `spark` in `ns` its token.
fn driver_token(ns: &str) {
    service_account_token(ns, "spark");
}

/// Waits until the token controller has given ServiceAccount `sa` in `ns` its token.
fn service_account_token(ns: &str, sa: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while kubectl_ok(
        &[
            "get",
            "serviceaccount",
            sa,
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
            "no token for ServiceAccount {sa} in {ns} after 30 s"
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

/// Where the operator of a test runs, for its log when a run goes wrong: a local `serve`
/// process, or the Deployment of the shipped manifests.
trait Operator {
    fn logs(&self) -> String;
}

impl Operator for Served {
    fn logs(&self) -> String {
        Served::logs(self)
    }
}

/// `kubectl ARGS` and everything it printed, for failure messages.
fn kubectl_shown(args: &[&str]) -> String {
    let o = kubectl(args);
    format!(
        "$ kubectl {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What to show when a run goes wrong: the app, the pods, the driver log, the operator's log.
fn diagnostics(ns: &str, driver: &str, served: &dyn Operator) -> String {
    let out = kubectl_shown;
    let serve_log = served.logs();
    let tail: Vec<&str> = serve_log.lines().rev().take(40).collect();
    format!(
        "{}\n{}\n{}\n{}\n--- operator log (tail) ---\n{}",
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
async fn wait_completed(client: &kube::Client, ns: &str, name: &str, served: &dyn Operator) -> Run {
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

/// kubeflow v2.5.2's own `examples/spark-pi-python.yaml` (tests/fixtures/kubeflow/),
/// unchanged but for its image (this node's local `spark:4.0.5` for `apache/spark:4.0.4`) and
/// namespace: its driver ServiceAccount `spark-operator-spark` comes from our job-namespace
/// manifest, and its non-root securityContexts and one executor (1 core each: the node's two
/// CPUs exactly) run to COMPLETED.
#[tokio::test]
async fn kubeflows_own_python_example_runs_unchanged_but_for_the_image() {
    node();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-kf").await;
    driver_rbac(&ns);
    service_account_token(&ns, "spark-operator-spark");
    let (served, _certs) = start(&ns);
    let path = common::repo_root().join("tests/fixtures/kubeflow/spark-pi-python.yaml");
    let original = std::fs::read_to_string(&path).expect("the kubeflow example fixture");
    let yaml = original
        .replace(
            "docker.io/apache/spark:4.0.4",
            &format!("spark:{SPARK_4_0}"),
        )
        .replace("namespace: default", &format!("namespace: {ns}"));
    assert_eq!(
        yaml.lines()
            .zip(original.lines())
            .filter(|(a, b)| a != b)
            .count(),
        2,
        "only the image and the namespace differ"
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&yaml));
    let name = "spark-pi-python";
    let run = wait_completed(&client, &ns, name, &served).await;
    eprintln!(
        "kubeflow's spark-pi-python: kubectl apply -> COMPLETED in {:.1}s",
        run.took.as_secs_f64()
    );
    let log = kubectl_ok(&["logs", "-n", &ns, &format!("{name}-driver")], None);
    assert!(
        log.contains("Pi is roughly 3.1"),
        "the driver log has no 'Pi is roughly 3.1':\n{log}"
    );
    assert_eq!(run.executors.len(), 1, "executor pods seen during the run");
    for pod in [
        kubectl_ok(
            &[
                "get",
                "pod",
                "-n",
                &ns,
                &format!("{name}-driver"),
                "-o",
                "json",
            ],
            None,
        ),
        serde_json::to_string(&run.executors[0]).unwrap(),
    ] {
        let pod: Value = serde_json::from_str(&pod).unwrap();
        let sc = &pod["spec"]["containers"][0]["securityContext"];
        assert_eq!(sc["runAsUser"], 185, "{sc}");
        assert_eq!(sc["runAsNonRoot"], true, "{sc}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{sc}");
    }
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Issue 23, on real Spark: an app created suspended (as Kueue creates it) starts no pod for 30 s,
/// then, resumed, runs to COMPLETED; and, written without `executor.instances`, it runs exactly
/// one executor over its whole life (kubeflow's default; Spark alone would start two). Cost: the
/// 30 s of watching plus one pi run (about a minute on an idle 2-core machine).
#[tokio::test]
async fn a_suspended_app_starts_nothing_then_completes_after_resume_with_one_default_executor() {
    node();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-suspend").await;
    driver_rbac(&ns);
    let (served, _certs) = start(&ns);
    let name = "pi-held";
    let mut app = pyspark_pi(&ns, name);
    app["spec"]["suspend"] = json!(true);
    app["spec"]["executor"] = json!({"cores": 1, "coreRequest": "500m", "memory": "512m"});
    kubectl_ok(&["apply", "-f", "-"], Some(&app.to_string()));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let state = |apps: Api<SparkApplication>| async move {
        apps.get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|a| a.status)
            .map(|s| s.application_state.state.to_string())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(apps.clone()).await.as_deref() != Some("SUSPENDED") {
        assert!(
            Instant::now() < deadline,
            "{name} not SUSPENDED:\n{}",
            diagnostics(&ns, &format!("{name}-driver"), &served)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The requirement itself: 30 s in which no pod of the app exists and it stays SUSPENDED.
    let of_app = ListParams::default().labels(&format!("sparkoperator.k8s.io/app-name={name}"));
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(30) {
        let listed = pods.list(&of_app).await.expect("pods").items;
        assert!(
            listed.is_empty(),
            "a pod of a suspended app after {:?}: {:?}",
            watched.elapsed(),
            listed.iter().map(|p| &p.metadata.name).collect::<Vec<_>>()
        );
        assert_eq!(state(apps.clone()).await.as_deref(), Some("SUSPENDED"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    apps.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .expect("resume");
    let run = wait_completed(&client, &ns, name, &served).await;
    eprintln!(
        "{name}: resume -> COMPLETED in {:.1}s",
        run.took.as_secs_f64()
    );
    let log = kubectl_ok(&["logs", "-n", &ns, &format!("{name}-driver")], None);
    assert!(log.contains("Pi is roughly 3.1"), "driver log:\n{log}");
    // One executor over the job's life: one pod seen, and one registered with the driver.
    let seen: Vec<_> = run.executors.iter().map(|p| &p.metadata.name).collect();
    assert_eq!(seen.len(), 1, "executor pods seen during the run: {seen:?}");
    let registered = log.matches("Registered executor").count();
    assert_eq!(
        registered, 1,
        "executors registered with the driver:\n{log}"
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
    checks_run(&client, &ns, &served, "3.5.3").await;
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The volumes-and-archives example on `spark:VERSION` (image and sparkVersion swapped): runs it
/// to COMPLETED, checks its driver log says CHECKS OK for 2 executors, and returns the run.
async fn checks_run(client: &kube::Client, ns: &str, served: &dyn Operator, version: &str) -> Run {
    let name = "spark-checks";
    let yaml = example("spark-checks-volumes-archives.yaml", ns)
        .replace("spark:3.5.3", &format!("spark:{version}"))
        .replace("sparkVersion: 3.5.3", &format!("sparkVersion: {version}"));
    kubectl_ok(&["apply", "-f", "-"], Some(&yaml));
    let run = wait_completed(client, ns, name, served).await;
    eprintln!(
        "checks on spark:{version}: kubectl apply -> COMPLETED in {:.1}s",
        run.took.as_secs_f64()
    );
    let log = kubectl_ok(&["logs", "-n", ns, &format!("{name}-driver")], None);
    assert!(
        log.contains("CHECKS OK on the driver and 2 executors"),
        "driver log:\n{log}"
    );
    assert!(
        log.contains(&format!("Running Spark version {version}")),
        "the driver did not run Spark {version}:\n{log}"
    );
    assert_eq!(run.executors.len(), 2, "executor pods seen during the run");
    run
}

#[tokio::test]
async fn deleting_a_running_executor_runs_its_prestop_decommission_and_the_app_still_completes() {
    node();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-decom").await;
    driver_rbac(&ns);
    let (served, _certs) = start(&ns);
    decommission_run(&client, &ns, &served, "3.5.3").await;
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A long pi on `spark:VERSION` with 2 executors: once one runs tasks its pod is deleted; its
/// preStop (/opt/decom.sh) must make it decommission (the driver hears of it) and the app still
/// completes. Returns the run.
async fn decommission_run(
    client: &kube::Client,
    ns: &str,
    served: &dyn Operator,
    version: &str,
) -> Run {
    let mut app = pyspark_pi(ns, "decom");
    // Long enough to delete an executor mid-run; decommissioning on SIGPWR is what the
    // webhook's preStop (/opt/decom.sh) asks for.
    app["spec"]["arguments"] = json!(["120"]);
    app["spec"]["executor"]["instances"] = json!(2);
    app["spec"]["executor"]["coreRequest"] = json!("400m");
    app["spec"]["driver"]["coreRequest"] = json!("400m");
    app["spec"]["sparkConf"] = json!({"spark.decommission.enabled": "true"});
    app["spec"]["image"] = json!(format!("spark:{version}"));
    app["spec"]["sparkVersion"] = json!(version);
    kubectl_ok(&["apply", "-f", "-"], Some(&app.to_string()));

    // Once a registered executor runs tasks, delete its pod the way a user or the cluster would.
    let deadline = Instant::now() + RUN;
    let victim = loop {
        assert!(
            Instant::now() < deadline,
            "no executor running tasks:\n{}",
            diagnostics(ns, "decom-driver", served)
        );
        let log = kubectl(&["logs", "-n", ns, "decom-driver"]);
        let log = String::from_utf8_lossy(&log.stdout);
        // "Starting task 3.0 in stage 0.0 (TID 3) (10.88.0.12, executor 2, partition 3, ..."
        // (Spark 4: "(10.88.0.12,executor 2, partition 3, ...")
        let busy = log.lines().find_map(|l| {
            let rest = l.split_once("Starting task")?.1;
            let id = rest
                .split_once(",executor ")
                .or_else(|| rest.split_once(", executor "))?;
            let id = id.1.split(',').next()?;
            Some(id.trim().to_string())
        });
        if let Some(id) = busy {
            let pods = kubectl_ok(
                &[
                    "get",
                    "pods",
                    "-n",
                    ns,
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
    kubectl_ok(&["delete", "pod", "-n", ns, &victim, "--wait=false"], None);

    let run = wait_completed(client, ns, "decom", served).await;
    eprintln!(
        "decom on spark:{version}: kubectl apply -> COMPLETED in {:.1}s",
        run.took.as_secs_f64()
    );
    let log = kubectl_ok(&["logs", "-n", ns, "decom-driver"], None);
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
    let events = kubectl_ok(&["get", "events", "-n", ns], None);
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
    run
}

/// The Spark 4 images of the node (tests/cluster/realnode.sh SPARK_VERSIONS): the newest 4.0.x,
/// the line kubeflow's examples use, and the newest 4.x on PyPI.
const SPARK_4_0: &str = "4.0.5";
const SPARK_4_NEWEST: &str = "4.3.0";

/// Issue 18 on `spark:4.0.x`, with the webhook: the checks app. Cost: one run of a driver and
/// two executors (about a minute on an idle 2-core machine, 4 at load 20).
#[tokio::test]
async fn spark_4_0_runs_the_checks_app_with_mutated_executors() {
    let (client, ns, served, _certs) = spark_4(SPARK_4_0, true).await;
    spark_4_checks(&client, &ns, &served, SPARK_4_0).await;
}

/// Issue 18 on `spark:4.0.x`, with the webhook: a deleted executor decommissions. Cost: one
/// long pi run (about 2 minutes on an idle 2-core machine).
#[tokio::test]
async fn spark_4_0_decommissions_a_deleted_executor() {
    let (client, ns, served, _certs) = spark_4(SPARK_4_0, true).await;
    decommission_run(&client, &ns, &served, SPARK_4_0).await;
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Issue 18 on the newest Spark 4 with `serve --webhook=false`: the executors Spark 4's driver
/// builds get the mutations from the executor pod template alone. Cost: as on 4.0.
#[tokio::test]
async fn spark_4_newest_without_the_webhook_runs_the_checks_app_with_mutated_executors() {
    let (client, ns, served, _certs) = spark_4(SPARK_4_NEWEST, false).await;
    spark_4_checks(&client, &ns, &served, SPARK_4_NEWEST).await;
}

/// Issue 18 on the newest Spark 4 with `serve --webhook=false`: the template's preStop makes a
/// deleted executor decommission. Cost: as on 4.0.
#[tokio::test]
async fn spark_4_newest_without_the_webhook_decommissions_a_deleted_executor() {
    let (client, ns, served, _certs) = spark_4(SPARK_4_NEWEST, false).await;
    decommission_run(&client, &ns, &served, SPARK_4_NEWEST).await;
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A namespace for a Spark `version` test with the driver's RBAC, and `serve` for it, with or
/// without the webhook (the certificates' folder lives as long as serve).
async fn spark_4(
    version: &str,
    webhook: bool,
) -> (kube::Client, String, Served, tempfile::TempDir) {
    node();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, &format!("rn-spark{}", version.replace('.', ""))).await;
    driver_rbac(&ns);
    let certs = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(certs.path())).unwrap();
    let flags: &[&str] = if webhook {
        &["--leader-election=false"]
    } else {
        &["--leader-election=false", "--webhook=false"]
    };
    let served = Served::start(&ns, certs.path(), flags);
    (client, ns, served, certs)
}

/// The checks app (ConfigMap volume, `Seccomp: 2`, the `#deps` archive, on the driver and 2
/// executors) on `spark:VERSION`; its executors, created by Spark `version`'s own driver (their
/// `spark-version` label is the driver's), carry the mutations: RuntimeDefault seccomp, the
/// decommission preStop, the operator's label.
async fn spark_4_checks(client: &kube::Client, ns: &str, served: &Served, version: &str) {
    let run = checks_run(client, ns, served, version).await;
    for pod in &run.executors {
        let pod = serde_json::to_value(pod).expect("executor json");
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["spark-version"], version, "{labels}");
        assert_eq!(
            labels["sparkoperator.k8s.io/mutated-by-spark-operator"], "true",
            "{labels}"
        );
        assert_eq!(
            pod.pointer("/spec/securityContext/seccompProfile/type"),
            Some(&json!("RuntimeDefault")),
            "executor seccomp"
        );
        assert_eq!(
            pod.pointer("/spec/containers/0/lifecycle/preStop/exec/command"),
            Some(&json!(["/opt/decom.sh"])),
            "executor preStop"
        );
    }
    let _ = kubectl(&["delete", "namespace", ns, "--wait=false"]);
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

// --- The operator deployed in-cluster -----------------------------------------------------------

/// The shipped install for the node's Kubernetes 1.20 (the base, with PodDisruptionBudget
/// policy/v1beta1).
const INSTALL: &str = "manifests/k8s-1.20";
const OPERATOR_NS: &str = "spark-operator";
const OPERATOR_LABEL: &str = "app.kubernetes.io/name=spark-webhook";
/// The job namespace the shipped manifests serve (`--namespaces`, labelled for the webhooks).
const JOBS_NS: &str = "spark-jobs";

/// The operator as `kubectl apply -k manifests/k8s-1.20` installs it. Dropping it deletes
/// everything that applied, and waits until it is gone: the CRD (other tests install it again
/// and must not find it terminating), both webhook configurations, the ClusterRole and its
/// binding, and the namespaces spark-operator and spark-jobs.
struct InCluster {
    removed: bool,
}

impl InCluster {
    fn kustomization() -> String {
        common::repo_root()
            .join(INSTALL)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }

    /// `kubectl apply -k`, after removing what a previous, interrupted run may have left.
    fn apply() -> InCluster {
        Self::remove().unwrap_or_else(|e| panic!("removing a previous install: {e}"));
        kubectl_ok(&["apply", "-k", &Self::kustomization()], None);
        InCluster { removed: false }
    }

    /// The operator's image (built and cached by tests/cluster/operator-image.sh) imported into
    /// the node, then the install as a user runs it, until both replicas are Ready.
    async fn install() -> (InCluster, kube::Client) {
        let node = node();
        let t = Instant::now();
        let out =
            std::process::Command::new(common::repo_root().join("tests/cluster/operator-image.sh"))
                .arg("import")
                .arg(&node.dir)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("running tests/cluster/operator-image.sh");
        assert!(
            out.status.success(),
            "operator-image.sh import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "operator image built (cached) and imported in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        let client = common::client().await;
        let t = Instant::now();
        let operator = InCluster::apply();
        operator.rolled_out();
        let ready = InCluster::pods(&client).await;
        assert!(
            ready.len() == 2 && ready.iter().all(|(_, r)| *r),
            "operator pods: {ready:?}"
        );
        eprintln!(
            "operator: kubectl apply -k -> 2/2 Ready in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        (operator, client)
    }

    /// `kubectl rollout status` of the Deployment: returns once every replica runs the current
    /// template and is available; panics with the state after 240 s.
    fn rolled_out(&self) {
        let rollout = kubectl(&[
            "rollout",
            "status",
            "deployment/spark-webhook",
            "-n",
            OPERATOR_NS,
            "--timeout=240s",
        ]);
        assert!(
            rollout.status.success(),
            "the operator Deployment did not become available:\n{}\n{}",
            String::from_utf8_lossy(&rollout.stderr),
            self.state()
        );
    }

    fn remove() -> Result<(), String> {
        let out = kubectl(&[
            "delete",
            "-k",
            &Self::kustomization(),
            "--ignore-not-found",
            "--wait=true",
            "--timeout=180s",
        ]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Removes the install now; panics if that fails.
    fn uninstall(mut self) {
        self.removed = true;
        Self::remove().unwrap_or_else(|e| panic!("kubectl delete -k {INSTALL}: {e}"));
    }

    /// The operator pods not being deleted: (name, ready).
    async fn pods(client: &kube::Client) -> Vec<(String, bool)> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
        let list = pods
            .list(&ListParams::default().labels(OPERATOR_LABEL))
            .await
            .expect("listing the operator pods");
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                (p.metadata.name.unwrap_or_default(), ready)
            })
            .collect()
    }

    /// Exactly two operator pods, none of them terminating.
    async fn settled(client: &kube::Client) -> bool {
        let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
        let list = pods
            .list(&ListParams::default().labels(OPERATOR_LABEL))
            .await
            .expect("listing the operator pods");
        list.items.len() == 2
            && list
                .items
                .iter()
                .all(|p| p.metadata.deletion_timestamp.is_none())
    }

    /// The holder of the reconciler's Lease (empty while nobody holds it).
    fn leader() -> String {
        let out = kubectl(&[
            "get",
            "lease",
            "-n",
            OPERATOR_NS,
            "spark-webhook-lock",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Pods, events and the Deployment's state in spark-operator, for failure messages.
    fn state(&self) -> String {
        let out = kubectl_shown;
        format!(
            "{}\n{}\n{}\n--- operator logs (tail) ---\n{}",
            out(&[
                "get",
                "deployment,pods,endpoints",
                "-n",
                OPERATOR_NS,
                "-o",
                "wide"
            ]),
            out(&["get", "events", "-n", OPERATOR_NS]),
            out(&["get", "lease", "-n", OPERATOR_NS, "-o", "yaml"]),
            self.logs()
        )
    }
}

impl Operator for InCluster {
    /// Each operator pod's log (the last lines).
    fn logs(&self) -> String {
        let names = kubectl_ok(
            &[
                "get",
                "pods",
                "-n",
                OPERATOR_NS,
                "-l",
                OPERATOR_LABEL,
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
            None,
        );
        names
            .split_whitespace()
            .map(|pod| {
                let o = kubectl(&["logs", "-n", OPERATOR_NS, pod, "--tail", "30"]);
                format!(
                    "--- pod {pod} ---\n{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for InCluster {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = Self::remove()
        {
            eprintln!("cleanup: kubectl delete -k {INSTALL} failed: {e}");
        }
    }
}

/// An executor pod as Spark's driver sends it (tests/fixtures/executor-pod.json), for app `app`
/// in `ns` with its Spark container named `container`, created as a server-side dry run: the
/// apiserver runs the admission webhooks and answers with the pod as they left it, storing
/// nothing. Nothing but the webhook can have changed it.
fn dry_run_executor(ns: &str, app: &str, container: &str) -> (Value, Value) {
    let path = common::repo_root().join("tests/fixtures/executor-pod.json");
    let mut pod: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("executor-pod.json"))
            .expect("executor-pod.json");
    let meta = pod["metadata"].as_object_mut().expect("metadata");
    for k in ["uid", "creationTimestamp", "ownerReferences"] {
        meta.remove(k);
    }
    meta.insert("name".into(), format!("{app}-webhook-probe-exec-1").into());
    meta.insert("namespace".into(), ns.into());
    pod["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = app.into();
    pod["spec"]["containers"][0]["name"] = container.into();
    pod["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("priority");
    pod.as_object_mut().expect("pod").remove("status");
    let out = kubectl_ok(
        &["create", "--dry-run=server", "-f", "-", "-o", "json"],
        Some(&pod.to_string()),
    );
    (
        pod,
        serde_json::from_str(&out).expect("kubectl create -o json"),
    )
}

/// What the custom-container example's executor settings put on a pod: its env variable, the
/// decommission preStop hook, the RuntimeDefault seccomp profile.
fn executor_settings(pod: &Value) -> (Option<&str>, Option<&Value>, Option<&str>) {
    let worker = pod["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "worker"));
    let env = worker.and_then(|w| {
        w["env"].as_array()?.iter().find_map(|e| {
            (e["name"] == "EXAMPLE_EXECUTOR_SETTING").then(|| e["value"].as_str().unwrap_or(""))
        })
    });
    let pre_stop = worker.and_then(|w| w.pointer("/lifecycle/preStop/exec/command"));
    let seccomp = pod
        .pointer("/spec/securityContext/seccompProfile/type")
        .and_then(Value::as_str);
    (env, pre_stop, seccomp)
}

/// Issue 8's in-cluster install: the operator's image (tests/cluster/operator-image.sh, the
/// Dockerfile's local twin) imported into the node, `kubectl apply -k manifests/k8s-1.20`, the
/// apiserver calling the webhook through its Service, the shipped example run in spark-jobs, and
/// the reconciler's leader pod deleted while the driver runs: another pod takes the Lease, the
/// Deployment replaces the deleted one, and the app still completes.
#[tokio::test]
async fn the_operator_from_kubectl_apply_k_completes_an_app_after_its_leader_pod_is_deleted() {
    // 1. The install as a user runs it, until both replicas are Ready.
    let (operator, client) = InCluster::install().await;

    // 2. Both webhook configurations point at the Service (never a url), with the CA of the
    //    certificate the operator made for itself in its Secret as their caBundle.
    let ca = kubectl_ok(
        &[
            "get",
            "secret",
            "spark-webhook-certs",
            "-n",
            OPERATOR_NS,
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
        None,
    );
    assert!(!ca.is_empty(), "no ca.crt in Secret spark-webhook-certs");
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client_config = loop {
            let v: Value = serde_json::from_str(&kubectl_ok(
                &["get", kind, "spark-webhook", "-o", "json"],
                None,
            ))
            .expect("webhook configuration json");
            let cc = v["webhooks"][0]["clientConfig"].clone();
            if cc["caBundle"].as_str() == Some(ca.as_str()) || Instant::now() > deadline {
                break cc;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(
            client_config["service"]["name"], "spark-webhook",
            "{kind}: {client_config}"
        );
        assert_eq!(
            client_config["service"]["namespace"], OPERATOR_NS,
            "{kind}: {client_config}"
        );
        assert!(
            client_config.get("url").is_none(),
            "{kind}: {client_config}"
        );
        assert_eq!(
            client_config["caBundle"].as_str(),
            Some(ca.as_str()),
            "{kind}'s caBundle is not the operator's CA"
        );
    }

    // 3. The shipped example, unchanged, in the shipped job namespace.
    driver_token(JOBS_NS);
    let name = "spark-pi-custom-container";
    let example = common::repo_root().join("manifests/examples/spark-pi-custom-container.yaml");
    let applied = Instant::now();
    kubectl_ok(&["apply", "-f", example.to_str().unwrap()], None);

    // The apiserver reaches the webhook through the Service: a pod only the webhook sees (a
    // dry run) comes back with the app's executor settings.
    let (sent, mutated) = dry_run_executor(JOBS_NS, name, "worker");
    assert_eq!(
        executor_settings(&sent),
        (None, None, None),
        "the probe pod as sent"
    );
    let (env, pre_stop, seccomp) = executor_settings(&mutated);
    assert_eq!(env, Some("in-the-worker-container"), "env from the webhook");
    assert_eq!(
        pre_stop,
        Some(&json!(["/opt/decom.sh"])),
        "preStop from the webhook"
    );
    assert_eq!(seccomp, Some("RuntimeDefault"), "seccomp from the webhook");

    // 4. Once the driver runs, delete the pod holding the reconciler's Lease.
    let pods: Api<Pod> = Api::namespaced(client.clone(), JOBS_NS);
    let driver = format!("{name}-driver");
    let deadline = Instant::now() + RUN;
    loop {
        let phase = pods
            .get_opt(&driver)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.status?.phase);
        if phase.as_deref() == Some("Running") {
            break;
        }
        assert!(
            phase.as_deref() != Some("Failed") && Instant::now() < deadline,
            "driver {driver} not Running (phase {phase:?}):\n{}",
            diagnostics(JOBS_NS, &driver, &operator)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "driver Running {:.1}s after kubectl apply",
        applied.elapsed().as_secs_f64()
    );
    let leader = InCluster::leader();
    let before: Vec<String> = InCluster::pods(&client)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        before.contains(&leader),
        "Lease holder {leader:?} is none of the operator pods {before:?}"
    );
    let state = kubectl_ok(
        &[
            "get",
            "sparkapp",
            "-n",
            JOBS_NS,
            name,
            "-o",
            "jsonpath={.status.applicationState.state}",
        ],
        None,
    );
    assert_ne!(state, "COMPLETED", "the app finished before the handover");
    let deleted = Instant::now();
    kubectl_ok(
        &["delete", "pod", "-n", OPERATOR_NS, &leader, "--wait=false"],
        None,
    );
    eprintln!("deleted the leader pod {leader} (app {state})");

    // Another pod takes the Lease.
    let deadline = Instant::now() + Duration::from_secs(90);
    let new_leader = loop {
        let holder = InCluster::leader();
        if !holder.is_empty() && holder != leader {
            break holder;
        }
        assert!(
            Instant::now() < deadline,
            "nobody took the Lease from {leader} in 90 s:\n{}",
            operator.state()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "handover: {new_leader} holds the Lease {:.1}s after the delete",
        deleted.elapsed().as_secs_f64()
    );
    // The Deployment replaces the deleted pod: two Ready replicas again, one of them new.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = InCluster::pods(&client).await;
        if now.len() == 2
            && now.iter().all(|(_, r)| *r)
            && now.iter().any(|(n, _)| !before.contains(n))
            && now.iter().all(|(n, _)| *n != leader)
        {
            eprintln!(
                "replacement: 2/2 Ready {:.1}s after the delete: {now:?}",
                deleted.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Deployment did not replace {leader} in 120 s: {now:?}\n{}",
            operator.state()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 5. The app completes under the new leader.
    let run = wait_completed(&client, JOBS_NS, name, &operator).await;
    eprintln!(
        "in-cluster pi: kubectl apply -> COMPLETED in {:.1}s ({:.1}s after the leader was deleted)",
        applied.elapsed().as_secs_f64(),
        deleted.elapsed().as_secs_f64()
    );
    let log = kubectl_ok(&["logs", "-n", JOBS_NS, &driver], None);
    assert!(
        log.contains("Pi is roughly 3.1"),
        "the driver log has no 'Pi is roughly 3.1':\n{log}"
    );
    assert_eq!(run.executors.len(), 1, "executor pods seen during the run");
    let executor = serde_json::to_value(&run.executors[0]).expect("executor json");
    let (env, pre_stop, seccomp) = executor_settings(&executor);
    assert_eq!(
        (env, pre_stop, seccomp),
        (
            Some("in-the-worker-container"),
            Some(&json!(["/opt/decom.sh"])),
            Some("RuntimeDefault")
        ),
        "the executor's settings"
    );
    let t = Instant::now();
    operator.uninstall();
    eprintln!(
        "kubectl delete -k: everything gone in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

/// Issue 21's rollout proof: the in-cluster install (two replicas) gets 100 `restartPolicy:
/// Never` apps while `kubectl rollout restart` replaces both replicas, twice. The node has 2
/// CPUs, so 97 drivers ask for a node label no node has and stay Pending (what counts is that
/// each driver was created, with its app's settings); three are real PySpark jobs. Meanwhile a
/// dry-run executor pod is created every 100 ms: the apiserver calls the webhook through the
/// Service (failurePolicy Fail) for each, so one failed call is one pod a user would have lost.
/// Every app gets its driver, none ends SUBMISSION_FAILED, every probe comes back mutated, and
/// the three jobs complete.
#[tokio::test]
async fn two_rollout_restarts_during_100_submissions_fail_no_app_and_no_pod() {
    const APPS: usize = 100;
    const REAL: [usize; 3] = [20, 55, 90];
    const MARK: &str = "ROLLOUT_SETTING";
    let (operator, client) = InCluster::install().await;
    driver_token(JOBS_NS);
    let originals: Vec<String> = InCluster::pods(&client)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();

    let resource = kube::api::ApiResource::erase::<SparkApplication>(&());
    let apps: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), JOBS_NS, &resource);
    let name = |i: usize| format!("roll-{i:03}");
    let create = |i: usize| {
        let apps = apps.clone();
        async move {
            let mut app = pyspark_pi(JOBS_NS, &name(i));
            for role in ["driver", "executor"] {
                app["spec"][role]["env"] = json!([{"name": MARK, "value": format!("{role}-{i}")}]);
            }
            if REAL.contains(&i) {
                // All three at once on 2 CPUs: a driver and an executor each, at 200m apiece
                // (at 500m, three drivers take the node and no executor ever fits).
                for role in ["driver", "executor"] {
                    app["spec"][role]["coreRequest"] = "200m".into();
                }
            } else {
                app["spec"]["driver"]["nodeSelector"] =
                    json!({"spark-webhook.test/no-such-node": "true"});
            }
            let app = serde_json::from_value(app).expect("app json");
            if let Err(e) = apps.create(&Default::default(), &app).await {
                panic!("creating app {} during the rollout: {e}", name(i));
            }
        }
    };
    let env_of = |pod: &Pod, container: &str| -> Option<String> {
        pod.spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == container)?
            .env
            .as_ref()?
            .iter()
            .find(|e| e.name == MARK)?
            .value
            .clone()
    };

    // The probe's app exists before the rollouts start, and both replicas know it.
    create(0).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), JOBS_NS);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pods
        .get_opt(&format!("{}-driver", name(0)))
        .await
        .ok()
        .flatten()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no driver for {} in 60 s:\n{}",
            name(0),
            operator.state()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let probe = {
        let path = common::repo_root().join("tests/fixtures/executor-pod.json");
        let mut pod: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("executor-pod.json"))
                .expect("executor-pod.json");
        let meta = pod["metadata"].as_object_mut().expect("metadata");
        for k in ["uid", "creationTimestamp", "ownerReferences"] {
            meta.remove(k);
        }
        meta.insert("name".into(), "rollout-probe-exec-1".into());
        meta.insert("namespace".into(), JOBS_NS.into());
        pod["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = name(0).into();
        pod["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("priority");
        pod.as_object_mut().expect("pod").remove("status");
        serde_json::from_value::<Pod>(pod).expect("probe pod")
    };
    let stop = tokio_util::sync::CancellationToken::new();
    // Every executor pod seen from now until the jobs complete: a job may finish, and Spark
    // delete its executors, while the rollouts still run.
    let finished = tokio_util::sync::CancellationToken::new();
    let collector = tokio::spawn({
        let (pods, finished) = (pods.clone(), finished.clone());
        async move {
            let mut seen: std::collections::BTreeMap<String, Pod> = Default::default();
            let executors = ListParams::default().labels("spark-role=executor");
            while !finished.is_cancelled() {
                if let Ok(list) = pods.list(&executors).await {
                    for p in list.items {
                        seen.insert(p.metadata.name.clone().unwrap_or_default(), p);
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            seen.into_values().collect::<Vec<Pod>>()
        }
    });
    let prober = tokio::spawn({
        let (pods, stop, probe) = (pods.clone(), stop.clone(), probe.clone());
        async move {
            let dry = kube::api::PostParams {
                dry_run: true,
                ..Default::default()
            };
            let (mut ok, mut failures) = (0usize, Vec::new());
            while !stop.is_cancelled() {
                let at = Instant::now();
                match pods.create(&dry, &probe).await {
                    Ok(pod)
                        if env_of(&pod, "spark-kubernetes-executor").as_deref()
                            == Some("executor-0") =>
                    {
                        ok += 1
                    }
                    Ok(_) => failures
                        .push("a probe pod came back without its app's executor env".to_string()),
                    Err(e) => failures.push(format!("{e}")),
                }
                // One probe every 100 ms: pacing, not synchronisation.
                tokio::time::sleep(Duration::from_millis(100).saturating_sub(at.elapsed())).await;
            }
            (ok, failures)
        }
    });

    // Two rollouts; 49 + 50 apps created, one every 300 ms, while each one runs.
    let started = Instant::now();
    let mut next = 1;
    for (round, end) in [(1, APPS / 2), (2, APPS)] {
        let restart = kubectl(&[
            "rollout",
            "restart",
            "deployment/spark-webhook",
            "-n",
            OPERATOR_NS,
        ]);
        assert!(
            restart.status.success(),
            "kubectl rollout restart: {}",
            String::from_utf8_lossy(&restart.stderr)
        );
        let t = Instant::now();
        let cluster = common::cluster();
        let mut status = tokio::process::Command::new(cluster.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args([
                "rollout",
                "status",
                "deployment/spark-webhook",
                "-n",
                OPERATOR_NS,
                "--timeout=300s",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl rollout status");
        // Until the new replicas are available AND the old ones have drained and exited: the
        // drain is when a rollout can lose a review.
        let mut exited = None;
        let done = loop {
            if exited.is_none() {
                exited = status.try_wait().expect("kubectl rollout status");
            }
            if let Some(done) = exited
                && (!done.success() || InCluster::settled(&client).await)
            {
                break done;
            }
            if next < end {
                create(next).await;
                next += 1;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert!(
            done.success(),
            "rollout {round} did not complete:\n{}",
            operator.state()
        );
        eprintln!(
            "rollout {round}: new replicas available and old ones gone in {:.1}s, {next} apps created so far",
            t.elapsed().as_secs_f64()
        );
        while next < end {
            create(next).await;
            next += 1;
        }
    }
    stop.cancel();
    let (probes_ok, probe_failures) = prober.await.expect("the prober");
    eprintln!(
        "{probes_ok} probe pods mutated, {} failed, over {:.1}s of rollouts",
        probe_failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        probe_failures.is_empty(),
        "{} of {} webhook calls through the Service failed during the rollouts: {:?}",
        probe_failures.len(),
        probes_ok + probe_failures.len(),
        probe_failures
    );
    assert!(
        probes_ok >= 100,
        "only {probes_ok} probes ran during the rollouts"
    );
    let now = InCluster::pods(&client).await;
    assert!(
        now.len() == 2 && now.iter().all(|(n, r)| *r && !originals.contains(n)),
        "after two rollouts: {now:?} (before: {originals:?})"
    );

    // Every app gets its driver, with its settings; none ends SUBMISSION_FAILED.
    let deadline = Instant::now() + Duration::from_secs(180);
    let drivers = loop {
        let list = pods
            .list(&ListParams::default().labels("spark-role=driver"))
            .await
            .expect("listing drivers");
        if list.items.len() >= APPS || Instant::now() > deadline {
            break list.items;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut missing: Vec<String> = (0..APPS).map(name).collect();
    for pod in &drivers {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let Some(i) = missing
            .iter()
            .position(|n| pod_name == format!("{n}-driver"))
        else {
            continue;
        };
        let app = missing.remove(i);
        let index: usize = app["roll-".len()..].parse().expect("app index");
        assert_eq!(
            env_of(pod, "spark-kubernetes-driver").as_deref(),
            Some(format!("driver-{index}").as_str()),
            "driver {pod_name} lacks its app's settings"
        );
    }
    assert!(
        missing.is_empty(),
        "{} apps have no driver after the rollouts: {missing:?}\n{}",
        missing.len(),
        operator.state()
    );
    let list = apps
        .list(&ListParams::default())
        .await
        .expect("listing apps");
    let failed: Vec<String> = list
        .items
        .iter()
        .filter_map(|a| {
            let state = a.data.pointer("/status/applicationState/state")?.as_str()?;
            matches!(state, "SUBMISSION_FAILED" | "FAILED" | "FAILING")
                .then(|| format!("{}: {state}", a.metadata.name.as_deref().unwrap_or("")))
        })
        .collect();
    assert!(failed.is_empty(), "apps failed by the rollouts: {failed:?}");

    // The three real jobs complete, their executors built with their apps' settings.
    for i in REAL {
        let run = wait_completed(&client, JOBS_NS, &name(i), &operator).await;
        eprintln!(
            "{}: COMPLETED ({:.1}s of waiting)",
            name(i),
            run.took.as_secs_f64()
        );
    }
    finished.cancel();
    let executors = collector.await.expect("the executor collector");
    for i in REAL {
        let app = name(i);
        let own: Vec<&Pod> = executors
            .iter()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("sparkoperator.k8s.io/app-name"))
                    == Some(&app)
            })
            .collect();
        assert!(!own.is_empty(), "{app}: no executor seen");
        for executor in own {
            assert_eq!(
                env_of(executor, "spark-kubernetes-executor").as_deref(),
                Some(format!("executor-{i}").as_str()),
                "an executor of {app} lacks its app's settings"
            );
        }
    }
    operator.uninstall();
}

/// The job of the UI test: a little work (so the metrics have something to count), then it
/// waits, with its UI up, until the test creates ConfigMap `ui-release` (read through the API
/// with the driver's own token), so the test reads the UI while the job runs, however slow the
/// machine, and no longer.
const UI_WAIT_PY: &str = r#"
import ssl, sys, time, urllib.request
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("ui-wait").getOrCreate()
total = spark.sparkContext.parallelize(range(1000), 2).map(lambda x: x * x).sum()
print(f"SUM {total}", flush=True)
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read().strip()
ns = open(f"{sa}/namespace").read().strip()
tls = ssl.create_default_context(cafile=f"{sa}/ca.crt")
url = f"https://kubernetes.default.svc/api/v1/namespaces/{ns}/configmaps/ui-release"
request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
deadline = time.time() + 300
while True:
    try:
        urllib.request.urlopen(request, context=tls, timeout=5)
        break
    except Exception as e:
        if time.time() > deadline:
            sys.exit(f"never released: {e}")
        time.sleep(1)
print("RELEASED", flush=True)
spark.stop()
"#;

/// `GET path` from the host to `addr` (a Service's ClusterIP:port, served by kube-proxy on
/// the node): the status code and the body.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// kubeflow's PrometheusServlet example settings (examples/spark-pi-prometheus-servlet.yaml) on
/// a PySpark job: while it runs, its Spark UI and the servlet's metrics answer through the UI
/// Service `<app>-ui-svc` (status.driverInfo.webUIAddress, from the host via kube-proxy); then
/// the app completes. Cost: one driver and one executor, about a minute and a half.
#[tokio::test]
async fn a_running_apps_ui_and_prometheus_servlet_answer_through_its_ui_service() {
    node();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-ui").await;
    driver_rbac(&ns);
    let (served, _certs) = start(&ns);
    let script = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ui-wait", "namespace": ns}, "data": {"wait.py": UI_WAIT_PY}});
    kubectl_ok(&["apply", "-f", "-"], Some(&script.to_string()));
    let name = "ui";
    let mut app = pyspark_pi(&ns, name);
    app["spec"]["mainApplicationFile"] = json!("local:///opt/ui-wait/wait.py");
    app["spec"]["arguments"] = json!([]);
    app["spec"]["volumes"] = json!([{"name": "ui-wait", "configMap": {"name": "ui-wait"}}]);
    app["spec"]["driver"]["volumeMounts"] =
        json!([{"name": "ui-wait", "mountPath": "/opt/ui-wait"}]);
    // The example's sparkConf, as kubeflow ships it.
    let servlet: Value = yaml_serde::from_str(
        &std::fs::read_to_string(
            common::repo_root().join("tests/fixtures/kubeflow/spark-pi-prometheus-servlet.yaml"),
        )
        .expect("fixture"),
    )
    .expect("example parses");
    app["spec"]["sparkConf"] = servlet["spec"]["sparkConf"].clone();
    kubectl_ok(&["apply", "-f", "-"], Some(&app.to_string()));

    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let driver = format!("{name}-driver");
    let started = Instant::now();
    let address = loop {
        let status = apps.get(name).await.ok().and_then(|a| a.status);
        if let Some(s) = status.filter(|s| !s.driver_info.web_ui_address.is_empty()) {
            break s.driver_info.web_ui_address;
        }
        assert!(
            started.elapsed() < RUN,
            "no webUIAddress:\n{}",
            diagnostics(&ns, &driver, &served)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(address.ends_with(":4040"), "{address}");
    // The servlet's driver metrics: once the driver's UI is up.
    let metrics = loop {
        if let Some((200, body)) = http_get(&address, "/metrics/driver/prometheus/")
            && body.contains("_driver_BlockManager_memory_")
        {
            break body;
        }
        let state = apps
            .get(name)
            .await
            .ok()
            .and_then(|a| a.status)
            .map(|s| s.application_state.state.to_string())
            .unwrap_or_default();
        assert!(
            started.elapsed() < RUN && !matches!(state.as_str(), "COMPLETED" | "FAILED"),
            "the driver's Prometheus servlet never answered through {address} ({state}):\n{}",
            diagnostics(&ns, &driver, &served)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!(
        "{:.1}s: {address}/metrics/driver/prometheus/ answered, {} lines",
        started.elapsed().as_secs_f64(),
        metrics.lines().count()
    );
    assert!(metrics.contains("type=\"gauges\""), "{metrics}");
    // spark.ui.prometheus.enabled: the executors' metrics, and the UI's own pages.
    let (code, executors) =
        http_get(&address, "/metrics/executors/prometheus/").expect("executor metrics");
    assert_eq!(code, 200, "{executors}");
    assert!(executors.contains("metrics_executor_"), "{executors}");
    let (code, jobs) = http_get(&address, "/jobs/").expect("the UI's jobs page");
    assert_eq!(code, 200, "{jobs}");
    assert!(jobs.contains("Spark Jobs"), "{jobs}");

    let release = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ui-release", "namespace": ns}});
    kubectl_ok(&["apply", "-f", "-"], Some(&release.to_string()));
    let run = wait_completed(&client, &ns, name, &served).await;
    eprintln!(
        "ui: kubectl apply -> COMPLETED in {:.1}s",
        run.took.as_secs_f64()
    );
    let log = kubectl_ok(&["logs", "-n", &ns, &driver], None);
    assert!(
        log.contains("SUM 332833500") && log.contains("RELEASED"),
        "driver log:\n{log}"
    );
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A ScheduledSparkApplication's run is a real PySpark job: it completes, and the schedule's
/// status names it as its last run and its past successful run. The schedule is suspended as
/// soon as its first run exists, so the node runs one job (~1-2 min on 2 busy cores).
#[tokio::test]
async fn a_scheduled_pyspark_run_completes_and_the_schedule_shows_it() {
    node();
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-sched").await;
    driver_rbac(&ns);
    let (served, _tmp) = start(&ns);
    let template = pyspark_pi(&ns, "unused")["spec"].clone();
    let schedule = json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
        "metadata": {"name": "pi-every", "namespace": ns},
        "spec": {"schedule": "@every 10s", "concurrencyPolicy": "Forbid", "template": template}
    });
    kubectl_ok(&["apply", "-f", "-"], Some(&schedule.to_string()));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let listed = apps
            .list(&ListParams::default().labels("sparkoperator.k8s.io/scheduled-app-name=pi-every"))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        if let Some(first) = listed.first() {
            break first.metadata.name.clone().unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "no run in 60 s:\n{}",
            served.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    kubectl_ok(
        &[
            "patch",
            "scheduledsparkapp",
            "pi-every",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
        None,
    );
    let done = wait_completed(&client, &ns, &run, &served).await;
    let scheds: Api<spark_webhook::crd::ScheduledSparkApplication> =
        Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = scheds
            .get("pi-every")
            .await
            .ok()
            .and_then(|s| s.status)
            .unwrap_or_default();
        if status.last_run_name == run && status.past_successful_run_names == [run.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule's status does not show {run} completed: {status:?}\n{}",
            served.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "scheduled run {run}: COMPLETED {:.1}s after it was seen",
        done.took.as_secs_f64()
    );
}

/// The Spark Connect client on the host (tests/cluster/pyspark-connect.sh: PyPI's
/// `pyspark[connect]`, cached), run against `sc://ADDR`: prints `spark.range(1000).count()`.
const CONNECT_CLIENT_PY: &str = r#"
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
print("COUNT", spark.range(1000).count())
spark.stop()
"#;

/// A SparkConnect on spark:4.0.5 (the image's pyspark wheel carries
/// `jars/spark-connect_2.13-4.0.5.jar`): the server becomes Ready with its executor running, a
/// PySpark Connect client on the host counts `spark.range(1000)` through the Service's
/// ClusterIP (kube-proxy), and deleting the SparkConnect leaves no pod, Service or ConfigMap.
/// Cost: one server and one executor pod, about a minute on an idle 2-core machine.
#[tokio::test]
async fn a_spark_connect_server_answers_a_pyspark_client_through_its_service_and_goes_with_its_object()
 {
    use spark_webhook::crd::{SparkConnect, SparkConnectState};
    node();
    // The client's venv (a download only the first time), before the clock starts.
    let client_python = {
        let out = std::process::Command::new(
            common::repo_root().join("tests/cluster/pyspark-connect.sh"),
        )
        .arg("4.0.5")
        .output()
        .expect("tests/cluster/pyspark-connect.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "rn-connect").await;
    driver_rbac(&ns);
    let (served, _certs) = start(&ns);
    let name = "connect";
    // kubeflow's example's shape, sized for a 2-CPU node (half a core requested per pod).
    let conn = json!({
        "apiVersion": "sparkoperator.k8s.io/v1alpha1", "kind": "SparkConnect",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "sparkVersion": "4.0.5", "image": "spark:4.0.5",
            "sparkConf": {
                "spark.kubernetes.driver.request.cores": "500m",
                "spark.kubernetes.executor.request.cores": "500m"
            },
            "server": {"cores": 1, "memory": "512m", "template": {"spec": {
                "serviceAccountName": "spark",
                "containers": [{"name": "spark-kubernetes-driver", "imagePullPolicy": "IfNotPresent"}]
            }}},
            "executor": {"instances": 1, "cores": 1, "memory": "512m", "template": {"spec": {
                "containers": [{"name": "spark-kubernetes-executor", "imagePullPolicy": "IfNotPresent"}]
            }}}
        }
    });
    let started = Instant::now();
    kubectl_ok(&["apply", "-f", "-"], Some(&conn.to_string()));
    let conns: Api<SparkConnect> = Api::namespaced(client.clone(), &ns);
    let server = format!("{name}-server");
    let show = |what: &str| {
        format!(
            "{what}:\n{}\n{}\n{}\n{}",
            kubectl_shown(&["get", "sparkconnect", "-n", &ns, "-o", "yaml"]),
            diagnostics(&ns, &server, &served),
            kubectl_shown(&["get", "svc,cm", "-n", &ns]),
            kubectl_shown(&[
                "logs",
                "-n",
                &ns,
                "-l",
                "spark-role=executor",
                "--tail",
                "30"
            ]),
        )
    };
    loop {
        let status = conns
            .get(name)
            .await
            .ok()
            .and_then(|c| c.status)
            .unwrap_or_default();
        if status.state == SparkConnectState::Ready && status.executors.get("running") == Some(&1) {
            break;
        }
        assert!(
            started.elapsed() < RUN && status.state != SparkConnectState::Failed,
            "{}",
            show(&format!(
                "not Ready with a running executor ({:?})",
                status.state
            ))
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ready = started.elapsed();
    let cluster_ip = kubectl_ok(
        &[
            "get",
            "svc",
            &server,
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    );
    let remote = format!("sc://{cluster_ip}:15002");
    let t = Instant::now();
    let out = std::process::Command::new(&client_python)
        .args(["-c", CONNECT_CLIENT_PY, &remote])
        .output()
        .expect("the Connect client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "COUNT 1000"),
        "{}\n{stdout}\n{}",
        show(&format!("the client through {remote} failed")),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "connect: apply -> Ready with 1 executor {:.1}s; client through {remote}: count 1000 in {:.1}s",
        ready.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );

    // Deleting the object: the collector removes the server and Service (owned by it), then the
    // server's ConfigMap, headless Service and executors (owned by the server).
    let t = Instant::now();
    kubectl_ok(
        &["delete", "sparkconnect", name, "-n", &ns, "--wait=false"],
        None,
    );
    loop {
        let left = kubectl_ok(&["get", "pods,svc,cm", "-n", &ns, "-o", "name"], None);
        // The namespace's own CA bundle ConfigMap is not the SparkConnect's.
        let left: Vec<&str> = left
            .lines()
            .filter(|l| *l != "configmap/kube-root-ca.crt")
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "left after deleting the SparkConnect: {left:?}\n{}",
            show("deleted")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "connect: deleted -> no pod, Service or ConfigMap left in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
