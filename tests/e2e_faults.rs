//! End-to-end under faults, on the real control plane: the operator crashed at every step of a
//! submission and killed at random moments, the apiserver stopped mid-run, the leader killed, a
//! namespace's controller panicked; then the bounds (3000 executors, a driver that never starts) and whether status work keeps up
//! behind a queue of submissions. What is checked is what a user would see: every app in its
//! right state, one driver per attempt, nothing failed for "already exists", honest /readyz and
//! /metrics.
//!
//! Counts are reduced for `make test`; `make chaos` runs the full ones (FAULTS_APPS=200,
//! FAULTS_QUEUE=1000, FAULTS_OUTAGE_SECS=30).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Served, certs, eventually, install_crd, namespace, state_of, wait_state};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use spark_webhook::crd::SparkApplication;
use spark_webhook::failpoint::{self, FailPoint};

const WAIT: Duration = Duration::from_secs(60);
const APP_NAME_LABEL: &str = "sparkoperator.k8s.io/app-name";
const SUBMISSION_ID_LABEL: &str = "sparkoperator.k8s.io/submission-id";

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pi(ns: &str, name: &str, restart: Value) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": "Scala", "mode": "cluster", "sparkVersion": "3.3.4", "image": "spark:3.3.4",
            "mainClass": "org.apache.spark.examples.SparkPi",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "arguments": ["10"],
            "restartPolicy": restart,
            "driver": {"cores": 1, "memory": "512m", "serviceAccount": "spark"},
            "executor": {"instances": 2, "cores": 1, "memory": "512m"}
        }
    })
}

/// Creates SparkApplications as sent (no typed round trip), 16 at a time.
async fn create_apps(client: &Client, ns: &str, names: &[String], restart: Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<SparkApplication>(&()),
    );
    futures::stream::iter(names)
        .for_each_concurrent(16, |name| {
            let api = api.clone();
            let obj: DynamicObject =
                serde_json::from_value(pi(ns, name, restart.clone())).expect("app object");
            async move {
                api.create(&Default::default(), &obj)
                    .await
                    .unwrap_or_else(|e| panic!("creating {name}: {e}"));
            }
        })
        .await;
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// All apps of the namespace by name.
async fn apps_by_name(apps: &Api<SparkApplication>) -> BTreeMap<String, SparkApplication> {
    apps.list(&ListParams::default())
        .await
        .map(|l| l.items.into_iter().map(|a| (a.name_any(), a)).collect())
        .unwrap_or_default()
}

/// Waits until every app named is in one of `states`.
async fn wait_all(
    apps: &Api<SparkApplication>,
    want: &[String],
    states: &[&str],
    timeout: Duration,
) {
    eventually(
        &format!("{} apps in {states:?}", want.len()),
        timeout,
        || async {
            let all = apps_by_name(apps).await;
            want.iter()
                .all(|n| {
                    all.get(n)
                        .is_some_and(|a| states.contains(&state_of(a).as_str()))
                })
                .then_some(())
        },
    )
    .await;
}

/// Reconciler-only operator flags for namespace tests.
const RECONCILER_ONLY: [&str; 2] = ["--webhook=false", "--leader-election=false"];

/// What every fault test checks at the end: each app was submitted exactly once (attempt 1,
/// driver `<app>-driver`, nothing named `-driver-2`), its driver, Service and ConfigMap exist
/// once and carry the submission id its status names, and no app failed.
async fn assert_submitted_once(client: &Client, ns: &str, want: &[String]) {
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
    let all = apps_by_name(&apps).await;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("pods");
    let services = Api::<Service>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("services");
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(APP_NAME_LABEL))
        .await
        .expect("config maps");
    let by_app = |labels: Vec<&BTreeMap<String, String>>| {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in labels {
            if let Some(app) = l.get(APP_NAME_LABEL) {
                m.entry(app.clone())
                    .or_default()
                    .push(l.get(SUBMISSION_ID_LABEL).cloned().unwrap_or_default());
            }
        }
        m
    };
    let drivers = by_app(pods.items.iter().map(|p| p.labels()).collect());
    // The driver's headless Service and the Spark UI Service, each exactly once.
    let (ui_services, driver_services): (Vec<_>, Vec<_>) = services
        .items
        .iter()
        .partition(|s| s.name_any().ends_with("-ui-svc"));
    let svcs = by_app(driver_services.iter().map(|s| s.labels()).collect());
    let ui_svcs = by_app(ui_services.iter().map(|s| s.labels()).collect());
    let cms = by_app(config_maps.items.iter().map(|c| c.labels()).collect());
    let driver_names: Vec<String> = pods.items.iter().map(|p| p.name_any()).collect();
    assert_eq!(
        pods.items.len(),
        want.len(),
        "one driver per app: {driver_names:?}"
    );
    for name in want {
        let app = all.get(name).unwrap_or_else(|| panic!("{name} is gone"));
        let st = app.status.clone().unwrap_or_default();
        assert_eq!(
            (st.submission_attempts, st.execution_attempts),
            (1, 1),
            "{name} submitted more than once: {st:?}"
        );
        assert!(
            !st.application_state
                .error_message
                .contains("already exists"),
            "{name}: {}",
            st.application_state.error_message
        );
        assert_eq!(st.driver_info.pod_name, format!("{name}-driver"));
        for (what, objs) in [
            ("driver", &drivers),
            ("Service", &svcs),
            ("UI Service", &ui_svcs),
            ("ConfigMap", &cms),
        ] {
            assert_eq!(
                objs.get(name),
                Some(&vec![st.submission_id.clone()]),
                "{name}: exactly one {what}, of the submission its status names"
            );
        }
    }
}

/// Drives every app's driver to an end (even: succeeded, odd: failed) and waits for the app to
/// show it (COMPLETED / FAILED, restart policy Never).
async fn finish_all(client: &Client, ns: &str, want: &[String]) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(want.iter().enumerate())
        .for_each_concurrent(16, |(i, name)| {
            let pods = pods.clone();
            async move {
                let driver = format!("{name}-driver");
                if i % 2 == 0 {
                    common::set_driver_phase(&pods, &driver, "Succeeded", Some(0)).await;
                } else {
                    common::set_driver_phase(&pods, &driver, "Failed", Some(1)).await;
                }
            }
        })
        .await;
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
    eventually("every app in its final state", WAIT, || async {
        let all = apps_by_name(&apps).await;
        want.iter()
            .enumerate()
            .all(|(i, n)| {
                let expected = if i % 2 == 0 { "COMPLETED" } else { "FAILED" };
                all.get(n).is_some_and(|a| state_of(a) == expected)
            })
            .then_some(())
    })
    .await;
}

/// SIGTERM, and the operator must be gone within 20 s (else: its log, SIGKILL, and fail).
fn stop_gracefully(served: &mut Served) {
    let _ = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status();
    if served.wait_exit(Duration::from_secs(20)).is_none() {
        sigkill(served);
        panic!("the operator did not stop on SIGTERM:\n{}", served.logs());
    }
}

fn sigkill(served: &mut Served) {
    let _ = served.child.kill();
    let _ = served.child.wait();
}

#[tokio::test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the fail points: --features failpoints (tests/run.sh)"
)]
async fn crashes_at_every_step_of_submission_and_random_kills_lose_and_duplicate_nothing() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ft-crash").await;
    let certs = certs();
    let total = env_count("FAULTS_APPS", 42);
    let kills = 3;
    let phases = FailPoint::ALL.len() + kills;
    let batch = total.div_ceil(phases);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let mut created: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut aborted = Vec::new();
    // Each phase brings new apps, so every crash lands while apps are being submitted.
    for (phase, point) in FailPoint::ALL.iter().enumerate() {
        let batch_names = names("crash", created.len()..(created.len() + batch).min(total));
        create_apps(&client, &ns, &batch_names, json!({"type": "Never"})).await;
        created.extend(batch_names);
        // The third hit: other submissions are in flight when the process aborts.
        let spec = format!("{}:{}", point.name(), 1 + phase % 3);
        let mut served = Served::spawn_as(
            &common::cluster().kubeconfig,
            &[(failpoint::ENV, &spec)],
            &ns,
            certs.path(),
            &RECONCILER_ONLY,
        );
        let status = served.wait_exit(WAIT);
        assert!(
            status.is_some_and(|s| !s.success()),
            "the operator did not abort at {spec}: {status:?}\n{}",
            served.logs()
        );
        assert!(
            served.logs().contains("fail point reached"),
            "{}",
            served.logs()
        );
        aborted.push(spec);
    }
    for kill in 0..kills {
        let batch_names = names("crash", created.len()..(created.len() + batch).min(total));
        create_apps(&client, &ns, &batch_names, json!({"type": "Never"})).await;
        let mut served = Served::start(&ns, certs.path(), &RECONCILER_ONLY);
        // Kill once this batch is under way: some of it submitted, the rest in flight.
        eventually("a submission of the batch", WAIT, || async {
            let all = apps_by_name(&apps).await;
            batch_names
                .iter()
                .any(|n| all.get(n).is_some_and(|a| state_of(a) == "SUBMITTED"))
                .then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(37 * (kill as u64 + 1))).await;
        sigkill(&mut served);
        created.extend(batch_names);
    }
    // The last incarnation finishes the job.
    let _served = Served::start(&ns, certs.path(), &RECONCILER_ONLY);
    wait_all(&apps, &created, &["SUBMITTED"], WAIT).await;
    assert_submitted_once(&client, &ns, &created).await;
    finish_all(&client, &ns, &created).await;
    eprintln!(
        "crash test: {} apps, aborted at {aborted:?} and {kills} SIGKILLs, all submitted once and finished in {:.1}s",
        created.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A control plane of this test alone (stopping the shared one would break the other tests),
/// torn down when dropped.
struct PrivateCluster {
    dir: PathBuf,
}

impl PrivateCluster {
    fn up() -> PrivateCluster {
        let dir = common::repo_root().join(format!("target/faults-cluster-{}", std::process::id()));
        let out = cluster_sh("up", &dir);
        assert!(
            out.status.success(),
            "cluster up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PrivateCluster { dir }
    }
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = cluster_sh("down", &self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cluster_sh(cmd: &str, dir: &Path) -> std::process::Output {
    Command::new(common::repo_root().join("tests/cluster/cluster.sh"))
        .args([cmd, dir.to_str().expect("utf-8 path")])
        .env("WATCH_PID", std::process::id().to_string())
        .output()
        .expect("running cluster.sh")
}

async fn install_crd_with(client: &Client) {
    let yaml = std::fs::read_to_string(
        common::repo_root().join("manifests/crd/sparkoperator.k8s.io_sparkapplications.yaml"),
    )
    .expect("CRD manifest");
    let crd: CustomResourceDefinition = yaml_serde::from_str(&yaml).expect("CRD");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&Default::default(), &crd)
        .await
        .expect("creating the CRD");
    eventually("CRD established", WAIT, || async {
        let c = api.get(&crd.name_any()).await.ok()?;
        c.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

fn readyz(served: &Served) -> Option<u16> {
    served.admin_get("/readyz").map(|(code, _)| code)
}

#[tokio::test]
async fn an_apiserver_outage_makes_the_operator_unready_and_loses_or_repeats_nothing() {
    let outage = Duration::from_secs(env_count("FAULTS_OUTAGE_SECS", 10) as u64);
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("outage test: {what} at {:.1}s", t0.elapsed().as_secs_f64());
    let cluster = PrivateCluster::up();
    step("cluster up");
    let client = common::client_for(&cluster.kubeconfig()).await;
    install_crd_with(&client).await;
    let ns = namespace(&client, "ft-outage").await;
    let certs = certs();
    // An outage longer than the grace: readiness must say so (a shorter one it rides out, see
    // the next test).
    let mut flags = RECONCILER_ONLY.to_vec();
    flags.push("--api-outage-grace=2s");
    let mut served = Served::start_as(&cluster.kubeconfig(), &[], &ns, certs.path(), &flags);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let before = names("before", 0..10);
    create_apps(&client, &ns, &before, json!({"type": "Never"})).await;
    wait_all(&apps, &before, &["SUBMITTED"], WAIT).await;
    common::set_driver_phase(&pods, "before-0-driver", "Running", None).await;
    wait_state(&apps, "before-0", "RUNNING", WAIT).await;

    step("running app");
    let out = cluster_sh("stop", &cluster.dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let down = Instant::now();
    eventually("/readyz 503 while the apiserver is down", WAIT, || async {
        (readyz(&served) == Some(503)).then_some(())
    })
    .await;
    let unready_after = down.elapsed();
    step("unready");
    // The outage lasts its full length: the operator must ride it out, not exit.
    tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
    assert_eq!(
        served.child.try_wait().ok().flatten(),
        None,
        "the operator exited:\n{}",
        served.logs()
    );
    assert_eq!(
        readyz(&served),
        Some(503),
        "still unready at the end of the outage"
    );

    let out = cluster_sh("start", &cluster.dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = Instant::now();
    step("apiserver back");
    eventually("/readyz 200 once the apiserver is back", WAIT, || async {
        (readyz(&served) == Some(200)).then_some(())
    })
    .await;
    let ready_after = back.elapsed();
    step("ready");

    // The watches resumed: a driver's change and new apps are both seen.
    common::set_driver_phase(&pods, "before-0-driver", "Succeeded", Some(0)).await;
    let after = names("after", 0..10);
    create_apps(&client, &ns, &after, json!({"type": "Never"})).await;
    wait_state(&apps, "before-0", "COMPLETED", WAIT).await;
    step("completed seen");
    wait_all(&apps, &after, &["SUBMITTED"], WAIT).await;
    step("new apps submitted");
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_submitted_once(&client, &ns, &all).await;
    eprintln!(
        "apiserver outage of {:.1}s: unready after {:.1}s, ready {:.1}s after the apiserver was started again",
        down.elapsed().as_secs_f64() - back.elapsed().as_secs_f64(),
        unready_after.as_secs_f64(),
        ready_after.as_secs_f64()
    );
    served.terminate();
}

/// `/readyz` of the replica on `port`, sampled every 100 ms until `stop`: (ms since start, code
/// or 0 for no answer).
fn sample_readyz(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(u128, u16)>> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let t0 = Instant::now();
        let mut samples = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            let code = (|| {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                out.split_whitespace().nth(1)?.parse::<u16>().ok()
            })()
            .unwrap_or(0);
            samples.push((t0.elapsed().as_millis(), code));
            // The sampling period the issue asks for, not a synchronisation.
            std::thread::sleep(Duration::from_millis(100));
        }
        samples
    })
}

/// An apiserver blip of seconds: the replica's caches are warm, so it stays ready throughout
/// (sampled every 100 ms), and a Spark pod created right after the apiserver is back is mutated.
#[tokio::test]
async fn an_apiserver_blip_of_three_seconds_leaves_the_webhook_ready_and_mutating() {
    let cluster = PrivateCluster::up();
    let client = common::client_for(&cluster.kubeconfig()).await;
    install_crd_with(&client).await;
    let ns = namespace(&client, "ft-blip").await;
    let certs = certs();
    let served = Served::start_as(
        &cluster.kubeconfig(),
        &[],
        &ns,
        certs.path(),
        &["--controller=false"],
    );
    let mut app = pi(&ns, "blip", json!({"type": "Never"}));
    app["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    app["spec"]["driver"]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    let dynamic: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<SparkApplication>(&()),
    );
    dynamic
        .create(
            &Default::default(),
            &serde_json::from_value(app).expect("app"),
        )
        .await
        .expect("creating the app");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mutated = |pod: &Pod| {
        pod.spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|v| v.iter().any(|v| v.name == "data"))
    };
    let before = pods
        .create(&Default::default(), &blip_driver(&ns, "blip-driver-before"))
        .await
        .expect("driver pod before the blip");
    assert!(mutated(&before), "mutated before the blip");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_readyz(served.admin_port, stop.clone());
    let out = cluster_sh("stop", &cluster.dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = cluster_sh("start", &cluster.dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outage = down.elapsed();
    let after = pods
        .create(&Default::default(), &blip_driver(&ns, "blip-driver-after"))
        .await
        .expect("driver pod right after the blip");
    assert!(mutated(&after), "mutated right after the blip");
    stop.store(true, std::sync::atomic::Ordering::Release);
    let samples = sampler.join().expect("sampler");
    let unready: Vec<_> = samples.iter().filter(|(_, code)| *code != 200).collect();
    eprintln!(
        "blip: apiserver unreachable {:.1}s (3 s stopped, then its start), {} /readyz samples, {} not 200",
        outage.as_secs_f64(),
        samples.len(),
        unready.len()
    );
    assert!(
        samples.len() as u128 >= outage.as_millis() / 100 / 2,
        "too few samples: {}",
        samples.len()
    );
    assert!(
        unready.is_empty(),
        "/readyz not 200 at (ms, code) {unready:?}:\n{}",
        served.logs()
    );
}

/// A review whose cache miss meets a stalled apiserver (SIGSTOPped: connections accepted, never
/// answered) is answered 504 with the reason before the review's `?timeout=`, as the apiserver
/// would send it; and the webhook answers again once the apiserver does.
#[tokio::test]
async fn a_review_whose_lookup_meets_a_stalled_apiserver_is_answered_504_in_time() {
    let cluster = PrivateCluster::up();
    let client = common::client_for(&cluster.kubeconfig()).await;
    install_crd_with(&client).await;
    let ns = namespace(&client, "ft-stall").await;
    let certs = certs();
    let served = Served::start_as(
        &cluster.kubeconfig(),
        &[],
        &ns,
        certs.path(),
        &["--controller=false"],
    );
    // A driver we launched, of an app the cache has not seen: the webhook must GET it live.
    let mut pod = serde_json::to_value(blip_driver(&ns, "stalled-driver")).expect("pod");
    pod["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = "not-seen-yet".into();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "stall-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns, "operation": "CREATE", "userInfo": {"username": "x"},
            "object": pod
        }
    });
    let body = certs.path().join("review.json");
    std::fs::write(&body, review.to_string()).expect("review file");
    let post = || {
        let started = Instant::now();
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", body.display()))
            .arg(format!(
                "https://127.0.0.1:{}/mutate-v1-pod?timeout=3s",
                served.webhook_port
            ))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (answer, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_string(), answer.to_string(), started.elapsed())
    };
    let pid = std::fs::read_to_string(cluster.dir.join("apiserver.pid"))
        .expect("apiserver pid")
        .trim()
        .to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let (code, answer, took) = post();
    signal("-CONT");
    assert_eq!(code, "504", "{answer}\n{}", served.logs());
    assert!(answer.contains("timeout"), "{answer}");
    assert!(
        took < Duration::from_secs(3),
        "answered after the review's timeout: {took:?}"
    );
    // The apiserver answers again: so does the lookup (the app does not exist: refused, 200).
    let (code, answer) = eventually("an answer once the apiserver runs again", WAIT, || async {
        let (code, answer, _) = post();
        (code == "200").then_some((code, answer))
    })
    .await;
    assert!(answer.contains("does not exist"), "{code}: {answer}");
}

/// A driver pod as spark-submit creates it, for app `blip` in `ns`.
fn blip_driver(ns: &str, name: &str) -> Pod {
    let mut v: Value =
        serde_json::from_str(include_str!("fixtures/spark-submit-3.3.4/driver-pod.json"))
            .expect("fixture");
    let meta = v["metadata"].as_object_mut().expect("metadata");
    meta.remove("uid");
    meta.remove("creationTimestamp");
    meta.insert("name".into(), name.into());
    meta.insert("namespace".into(), ns.into());
    v["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = "blip".into();
    v.as_object_mut().expect("pod").remove("status");
    serde_json::from_value(v).expect("pod")
}

async fn lease_holder(client: &Client, ns: &str) -> Option<(String, i32)> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("spark-webhook-lock")
        .await
        .ok()??;
    let spec = lease.spec?;
    Some((spec.holder_identity?, spec.lease_duration_seconds?))
}

#[tokio::test]
async fn killing_the_leader_hands_over_within_the_lease_and_submits_each_app_once() {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("leader test: {what} at {:.1}s", t0.elapsed().as_secs_f64());
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ft-leader").await;
    let lease_secs = 3;
    let flags = [
        "--webhook=false",
        "--leader-election=true",
        "--leader-election-lock-namespace",
        &ns,
        "--leader-election-lease-duration",
        "3s",
        "--leader-election-renew-grace",
        "1s",
    ];
    let kubeconfig = &common::cluster().kubeconfig;
    let (c1, c2) = (certs(), certs());
    // One replica named by its pod, one by hostname + pid (no POD_NAME): both unique.
    let mut a = Served::start_as(
        kubeconfig,
        &[("POD_NAME", "replica-a")],
        &ns,
        c1.path(),
        &flags,
    );
    let mut b = Served::start_as(kubeconfig, &[("POD_NAME", "")], &ns, c2.path(), &flags);
    let b_identity_suffix = format!("-{}", b.child.id());
    let (holder, duration) = eventually("a leader", WAIT, || lease_holder(&client, &ns)).await;
    assert_eq!(
        duration, lease_secs,
        "--leader-election-lease-duration is honoured"
    );
    let a_leads = holder == "replica-a";
    assert!(
        a_leads || holder.ends_with(&b_identity_suffix),
        "holder {holder:?} is neither replica's identity"
    );

    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let all = names("lead", 0..env_count("FAULTS_LEADER_APPS", 30));
    create_apps(&client, &ns, &all, json!({"type": "Never"})).await;
    eventually("the leader under way", WAIT, || async {
        let by = apps_by_name(&apps).await;
        by.values()
            .any(|a| state_of(a) == "SUBMITTED")
            .then_some(())
    })
    .await;
    let (leader, follower) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    sigkill(leader);
    let killed = Instant::now();
    let new_holder = eventually("the other replica takes the lease", WAIT, || async {
        let (h, _) = lease_holder(&client, &ns).await?;
        (h != holder).then_some(h)
    })
    .await;
    let failover = killed.elapsed();
    step("taken over");
    assert!(
        if a_leads {
            new_holder.ends_with(&b_identity_suffix)
        } else {
            new_holder == "replica-a"
        },
        "new holder {new_holder:?}"
    );
    // The lease duration, not some default (kubeflow #2640: flags without effect): the default
    // of 15 s would show here.
    assert!(
        failover < Duration::from_secs(15),
        "takeover took {failover:?} with a {lease_secs}s lease"
    );
    wait_all(&apps, &all, &["SUBMITTED"], WAIT).await;
    step("all submitted");
    assert_submitted_once(&client, &ns, &all).await;
    step("checked");
    assert!(follower.logs().contains("became leader"));
    stop_gracefully(follower);
    eprintln!(
        "leader failover: {:.2}s from SIGKILL to the new holder ({lease_secs}s lease)",
        failover.as_secs_f64()
    );
}

#[tokio::test]
async fn three_thousand_executors_keep_the_app_object_small() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ft-bounds").await;
    let certs = certs();
    let _served = Served::start(&ns, certs.path(), &RECONCILER_ONLY);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    create_apps(
        &client,
        &ns,
        &["wide".to_string()],
        json!({"type": "Never"}),
    )
    .await;
    let app = wait_state(&apps, "wide", "SUBMITTED", WAIT).await;
    let status = app.status.clone().unwrap_or_default();
    let driver = pods.get("wide-driver").await.expect("driver");
    common::set_driver_phase(&pods, "wide-driver", "Running", None).await;
    wait_state(&apps, "wide", "RUNNING", WAIT).await;

    let executors = env_count("FAULTS_EXECUTORS", 3000);
    let started = Instant::now();
    // Executors as Spark's driver creates them: its labels, owned by the driver pod.
    futures::stream::iter(1..=executors)
        .for_each_concurrent(32, |id| {
            let pods = pods.clone();
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("wide-exec-{id}"),
                    "labels": {
                        "spark-role": "executor", "spark-exec-id": id.to_string(),
                        "spark-app-selector": status.spark_application_id,
                        APP_NAME_LABEL: "wide",
                        "sparkoperator.k8s.io/launched-by-spark-operator": "true",
                        SUBMISSION_ID_LABEL: status.submission_id,
                    },
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "wide-driver",
                        "uid": driver.metadata.uid, "controller": true}]
                },
                "spec": {"containers": [{"name": "spark-kubernetes-executor", "image": "spark:3.3.4"}]}
            }))
            .expect("executor pod");
            async move {
                pods.create(&Default::default(), &pod).await.expect("executor created");
                let running = json!({"status": {"phase": "Running"}});
                pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&running))
                    .await
                    .expect("executor running");
            }
        })
        .await;
    let created_in = started.elapsed();
    let cap = 1000;
    let app = eventually("executorState capped and all Running", WAIT, || async {
        let app = apps.get("wide").await.ok()?;
        let st = app.status.as_ref()?;
        (st.executor_state.len() == cap.min(executors)
            && st
                .executor_state
                .values()
                .all(|s| s.to_string() == "RUNNING"))
        .then_some(app)
    })
    .await;
    // The size etcd stores: the object as the apiserver returns it.
    let request = axum::http::Request::get(format!(
        "/apis/sparkoperator.k8s.io/v1beta2/namespaces/{ns}/sparkapplications/wide"
    ))
    .body(Vec::new())
    .expect("request");
    let raw = client.request_text(request).await.expect("raw app");
    assert!(
        raw.len() < 1536 * 1024 / 4,
        "{} bytes with {executors} executors: too close to etcd's 1.5 MiB limit",
        raw.len()
    );
    assert_eq!(app.status.unwrap_or_default().execution_attempts, 1);
    eprintln!(
        "bounds: {executors} executors created and Running in {:.1}s; the SparkApplication is {} bytes ({} KiB) with {cap} tracked",
        created_in.as_secs_f64(),
        raw.len(),
        raw.len() / 1024
    );
}

#[tokio::test]
async fn a_driver_pending_past_the_start_timeout_fails_the_attempt_and_is_retried() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ft-pending").await;
    let certs = certs();
    let _served = Served::start(
        &ns,
        certs.path(),
        &[
            RECONCILER_ONLY[0],
            RECONCILER_ONLY[1],
            "--driver-start-timeout",
            "2s",
        ],
    );
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    create_apps(
        &client,
        &ns,
        &["stuck".to_string()],
        json!({"type": "OnFailure", "onFailureRetries": 1, "onFailureRetryInterval": 1}),
    )
    .await;
    // No kubelet here: drivers stay Pending. The first attempt times out and is replaced.
    eventually("the second attempt's driver", WAIT, || async {
        pods.get_opt("stuck-driver-2").await.ok()?
    })
    .await;
    let failed = wait_state(&apps, "stuck", "FAILED", WAIT).await;
    let st = failed.status.unwrap_or_default();
    assert!(
        st.application_state.error_message.contains("still Pending")
            && st
                .application_state
                .error_message
                .contains("--driver-start-timeout"),
        "{}",
        st.application_state.error_message
    );
    assert_eq!(st.execution_attempts, 2);
    eventually("timed-out drivers deleted", WAIT, || async {
        let left = pods.list(&ListParams::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_finished_driver_shows_completed_ahead_of_a_queue_of_submissions() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ft-queue").await;
    let certs = certs();
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut served = Served::start(&ns, certs.path(), &RECONCILER_ONLY);
    create_apps(
        &client,
        &ns,
        &["busy".to_string()],
        json!({"type": "Never"}),
    )
    .await;
    wait_state(&apps, "busy", "SUBMITTED", WAIT).await;
    common::set_driver_phase(&pods, "busy-driver", "Running", None).await;
    wait_state(&apps, "busy", "RUNNING", WAIT).await;
    served.terminate();

    // A queue of apps waiting for submission when the operator comes back.
    let queue = names("queued", 0..env_count("FAULTS_QUEUE", 300));
    create_apps(&client, &ns, &queue, json!({"type": "Never"})).await;
    let _served = Served::start(&ns, certs.path(), &RECONCILER_ONLY);
    // The queue is being worked on: its first drivers appear.
    let others = ListParams::default()
        .labels(&format!("{APP_NAME_LABEL}!=busy"))
        .limit(1);
    eventually("submissions under way", WAIT, || async {
        (!pods.list(&others).await.ok()?.items.is_empty()).then_some(())
    })
    .await;
    common::set_driver_phase(&pods, "busy-driver", "Succeeded", Some(0)).await;
    let finished = Instant::now();
    // Polls the one app (listing hundreds every 50 ms would load the apiserver itself).
    let latency = eventually("busy COMPLETED", WAIT, || async {
        let app = apps.get_opt("busy").await.ok()??;
        (state_of(&app) == "COMPLETED").then(|| finished.elapsed())
    })
    .await;
    let all = apps_by_name(&apps).await;
    let submitted = queue
        .iter()
        .filter(|n| all.get(*n).is_some_and(|a| state_of(a) == "SUBMITTED"))
        .count();
    assert!(
        submitted < queue.len(),
        "COMPLETED only showed after the whole queue was submitted"
    );
    let all_submitted = Duration::from_secs(120.max(queue.len() as u64 / 5));
    wait_all(&apps, &queue, &["SUBMITTED"], all_submitted).await;
    eprintln!(
        "status under a queue: COMPLETED {:.0} ms after the driver succeeded, with {} of {} queued apps still unsubmitted",
        latency.as_secs_f64() * 1000.0,
        queue.len() - submitted,
        queue.len()
    );
}

fn promtool_check(metrics: &str) -> std::process::Output {
    use std::io::Write;
    let out = Command::new(common::repo_root().join("tests/cluster/promtool.sh"))
        .output()
        .expect("running promtool.sh");
    assert!(
        out.status.success(),
        "promtool.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let promtool = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning promtool");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(metrics.as_bytes())
        .expect("writing to promtool");
    child.wait_with_output().expect("promtool output")
}

#[tokio::test]
async fn metrics_start_at_zero_pass_promtool_and_forget_a_deleted_running_app() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ft-metrics").await;
    let certs = certs();
    let served = Served::start(&ns, certs.path(), &RECONCILER_ONLY);
    let metrics = || served.admin_get("/metrics").expect("/metrics").1;
    let fresh = metrics();
    for counter in [
        "spark_application_total",
        "spark_application_submit_total",
        "spark_application_failed_submission_total",
        "spark_application_success_total",
        "spark_application_failure_total",
        "spark_application_suspend_total",
        "spark_application_resume_total",
        "spark_executor_success_total",
        "spark_executor_failure_total",
        "spark_application_running",
        "spark_executor_running",
    ] {
        assert_eq!(
            common::sample(&fresh, counter),
            Some(0.0),
            "{counter} at 0 from the start:\n{fresh}"
        );
    }
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    create_apps(
        &client,
        &ns,
        &["counted".to_string()],
        json!({"type": "Never"}),
    )
    .await;
    wait_state(&apps, "counted", "SUBMITTED", WAIT).await;
    common::set_driver_phase(&pods, "counted-driver", "Running", None).await;
    wait_state(&apps, "counted", "RUNNING", WAIT).await;
    // The gauge is computed at scrape time from the watch cache, which may trail the status
    // write that the wait above already saw.
    let running = eventually("running gauge at 1", WAIT, || async {
        let text = metrics();
        (common::sample(&text, "spark_application_running") == Some(1.0)).then_some(text)
    })
    .await;
    let checked = promtool_check(&running);
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}\n{running}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // Deleted while running: the gauge drops (kubeflow #1354).
    apps.delete("counted", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("running gauge back to 0", WAIT, || async {
        (common::sample(&metrics(), "spark_application_running") == Some(0.0)).then_some(())
    })
    .await;
    let text = metrics();
    assert_eq!(
        common::sample(&text, "spark_application_submit_total"),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains(r#"spark_application_start_latency_seconds_bucket{le="3600.0"} 1"#),
        "the start-latency buckets reach an hour:\n{text}"
    );
}

/// The status line and Content-Type of `GET /metrics` asked for OpenMetrics, as Prometheus asks.
fn metrics_content_type_for_openmetrics(served: &Served) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", served.admin_port)).expect("admin port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// `--metrics-names=kubeflow`: kubeflow's exact names and types on the real apiserver, for the
/// dashboards written against it; promtool parses them and objects only to kubeflow's naming.
#[tokio::test]
async fn kubeflow_metric_names_count_a_running_app_under_kubeflows_names() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ft-kf-metrics").await;
    let certs = certs();
    let mut args = RECONCILER_ONLY.to_vec();
    args.push("--metrics-names=kubeflow");
    let served = Served::start(&ns, certs.path(), &args);
    let metrics = || served.admin_get("/metrics").expect("/metrics").1;
    let fresh = metrics();
    for series in [
        "spark_application_count",
        "spark_application_submit_count",
        "spark_application_running_count",
        "spark_executor_running_count",
    ] {
        assert_eq!(
            common::sample(&fresh, series),
            Some(0.0),
            "{series}:\n{fresh}"
        );
    }
    // Kubeflow serves the classic text format; so does this mode, whatever the scraper asks.
    assert!(
        metrics_content_type_for_openmetrics(&served).starts_with("text/plain"),
        "kubeflow mode answers OpenMetrics requests in the classic text format"
    );
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    create_apps(&client, &ns, &["kf".to_string()], json!({"type": "Never"})).await;
    wait_state(&apps, "kf", "SUBMITTED", WAIT).await;
    common::set_driver_phase(&pods, "kf-driver", "Running", None).await;
    wait_state(&apps, "kf", "RUNNING", WAIT).await;
    let running = eventually("kubeflow's running gauge at 1", WAIT, || async {
        let text = metrics();
        (common::sample(&text, "spark_application_running_count") == Some(1.0)).then_some(text)
    })
    .await;
    for (series, want) in [
        ("spark_application_count", 1.0),
        ("spark_application_submit_count", 1.0),
        ("spark_application_submit_latency_seconds_count", 1.0),
        (
            "spark_application_submit_latency_seconds_histogram_count",
            1.0,
        ),
        ("spark_application_start_latency_seconds_count", 1.0),
        (
            "spark_application_start_latency_seconds_histogram_count",
            1.0,
        ),
    ] {
        assert_eq!(
            common::sample(&running, series),
            Some(want),
            "{series}:\n{running}"
        );
    }
    for (family, kind) in [
        ("spark_application_count", "counter"),
        ("spark_application_running_count", "gauge"),
        ("spark_application_start_latency_seconds", "summary"),
        (
            "spark_application_start_latency_seconds_histogram",
            "histogram",
        ),
        (
            "spark_application_success_execution_time_seconds",
            "summary",
        ),
    ] {
        assert!(
            running.contains(&format!("\n# TYPE {family} {kind}\n")),
            "{family} is a {kind}:\n{running}"
        );
    }
    assert!(
        !running.contains("spark_application_total") && !running.contains("_count_total"),
        "none of our names in kubeflow mode:\n{running}"
    );
    let checked = promtool_check(&running);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    for complaint in said.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            complaint.starts_with("spark_application_") || complaint.starts_with("spark_executor_"),
            "promtool objects to more than kubeflow's names: {complaint}\n{said}\n{running}"
        );
        assert!(
            complaint.contains("\"_total\" suffix")
                || complaint.contains("\"_count\" suffix")
                || complaint.contains("should not include type 'histogram'"),
            "promtool objects to more than kubeflow's naming: {complaint}\n{said}"
        );
    }
}

/// The restart counter's samples (`{namespace="…",reason="…"} n`) in a Prometheus text.
fn restarts(metrics: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("spark_webhook_controller_restarts_total{")?;
            let (labels, value) = rest.split_once("} ")?;
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the fail points: --features failpoints (tests/run.sh)"
)]
async fn a_panicking_controller_is_logged_counted_and_restarted_while_the_others_run_on() {
    let client = common::client().await;
    install_crd();
    let first = namespace(&client, "ft-panic").await;
    let second = namespace(&client, "ft-panic").await;
    let certs = certs();
    let names = ["before".to_string()];
    create_apps(&client, &first, &names, json!({"type": "Never"})).await;
    create_apps(&client, &second, &names, json!({"type": "Never"})).await;
    // The first reconcile of either namespace's controller panics, once.
    let served = Served::start_as(
        &common::cluster().kubeconfig,
        &[(failpoint::ENV, FailPoint::ControllerPanic.name())],
        &first,
        certs.path(),
        &[RECONCILER_ONLY.as_slice(), &["--namespaces", &second]].concat(),
    );
    let (panicked, text) = eventually("a controller restart in /metrics", WAIT, || async {
        let (_, body) = served.admin_get("/metrics")?;
        let r = restarts(&body);
        (!r.is_empty()).then_some((r, body))
    })
    .await;
    let checked = promtool_check(&text);
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(panicked.len(), 1, "one controller restarted: {panicked:?}");
    let (labels, count) = &panicked[0];
    assert_eq!(*count, 1.0, "{panicked:?}");
    let ns = [&first, &second]
        .into_iter()
        .find(|ns| labels.contains(&format!("namespace=\"{ns}\"")))
        .unwrap_or_else(|| panic!("the panicked namespace in {labels}"));
    assert!(labels.contains("reason=\"panic\""), "{labels}");
    let logs = served.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("controller panicked"))
        .unwrap_or_else(|| panic!("no log of the panic:\n{logs}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(ns.as_str()), "{line}");
    assert!(
        line.contains("fail point controller-panic reached"),
        "{line}"
    );

    // Both namespaces are reconciled: the restarted controller picks its app up again, and
    // an app created after the restart is submitted too.
    for ns in [&first, &second] {
        let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
        wait_state(&apps, "before", "SUBMITTED", WAIT).await;
        let after = ["after".to_string()];
        create_apps(&client, ns, &after, json!({"type": "Never"})).await;
        wait_state(&apps, "after", "SUBMITTED", WAIT).await;
        assert_submitted_once(&client, ns, &["before".to_string(), "after".to_string()]).await;
    }
    assert_eq!(
        restarts(&served.admin_get("/metrics").expect("/metrics").1),
        panicked,
        "no further restarts"
    );
}
