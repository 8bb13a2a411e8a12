//! Test harness for the end-to-end tests: a real kube-apiserver + etcd on loopback.
//!
//! `make test` starts one control plane for the whole run and exports its folder in
//! `SPARK_WEBHOOK_CLUSTER_DIR`; nextest then runs every test in its own process, each of which
//! reuses that control plane and works in a fresh namespace. Without the variable (a plain
//! `cargo nextest run`), the first test brings up a shared control plane under
//! `target/e2e-cluster` (kept running for the next run; `make cluster-down` stops it).
#![allow(dead_code)]

pub mod spark_executor;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A running control plane: where its kubeconfig is and how to reach it.
pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// Folder holding (links to) kubectl, etcd and kube-apiserver.
    pub bin: PathBuf,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The control plane of this test run, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let dir = match std::env::var_os("SPARK_WEBHOOK_CLUSTER_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                let dir = repo_root().join("target/e2e-cluster");
                let out = Command::new(repo_root().join("tests/cluster/cluster.sh"))
                    .arg("up")
                    .arg(&dir)
                    .output()
                    .expect("running tests/cluster/cluster.sh");
                assert!(
                    out.status.success(),
                    "could not start the local control plane:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                dir
            }
        };
        Cluster::load(dir)
    })
}

/// The real one-node cluster of `tests/cluster/realnode.sh up DIR` (kubelet, containerd, the
/// spark:3.5.3 image), named by `SPARK_WEBHOOK_REALNODE_DIR=DIR`, as the cluster of this test
/// process (call it before anything else uses [`cluster`]). None when the variable is unset.
pub fn real_node() -> Option<&'static Cluster> {
    let dir = PathBuf::from(std::env::var_os("SPARK_WEBHOOK_REALNODE_DIR")?);
    let c = CLUSTER.get_or_init(|| Cluster::load(dir.clone()));
    assert_eq!(
        c.dir, dir,
        "real_node() called after cluster() chose another cluster"
    );
    let ready = Command::new(repo_root().join("tests/cluster/realnode.sh"))
        .arg("status")
        .arg(&dir)
        .status()
        .expect("running tests/cluster/realnode.sh status");
    assert!(
        ready.success(),
        "SPARK_WEBHOOK_REALNODE_DIR={} but its node is not Ready (tests/cluster/realnode.sh up {0})",
        dir.display()
    );
    Some(c)
}

impl Cluster {
    fn load(dir: PathBuf) -> Cluster {
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap_or_else(|e| panic!("{}/env: {e} (is the control plane up?)", dir.display()));
        let bin = env
            .lines()
            .find_map(|l| l.strip_prefix("export PATH="))
            .and_then(|p| p.split(':').next())
            .map(PathBuf::from)
            .expect("PATH line in the cluster env file");
        Cluster {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            bin,
        }
    }
}

/// A client for the control plane, authenticated as its admin.
pub async fn client() -> Client {
    client_for(&cluster().kubeconfig).await
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("reading kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// A fresh namespace for one test, labelled as a Spark job namespace.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", unique_suffix());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"spark-webhook.e2e/test": prefix, NS_LABEL: name}}
    }))
    .expect("namespace object");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating namespace");
    name
}

/// Short random-enough suffix for names: pid + clock.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos % 0xfffff)
}

/// Runs the real kubectl against the control plane.
pub fn kubectl(args: &[&str]) -> Output {
    kubectl_stdin(args, None)
}

/// Runs kubectl with `input` on its standard input (for `apply -f -`).
/// `kubectl apply -f -` of one object; panics with kubectl's message if it is refused.
pub fn kubectl_apply(obj: &serde_json::Value) {
    let out = kubectl_stdin(&["apply", "-f", "-"], Some(&obj.to_string()));
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn kubectl_stdin(args: &[&str], input: Option<&str>) -> Output {
    use std::io::Write;
    let c = cluster();
    let mut cmd = Command::new(c.bin.join("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(args)
        .stdin(if input.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawning kubectl");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("kubectl stdin")
            .write_all(input.as_bytes())
            .expect("writing kubectl stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

/// kubectl that must succeed; returns its stdout.
pub fn kubectl_ok(args: &[&str], input: Option<&str>) -> String {
    let out = kubectl_stdin(args, input);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs the committed CRDs, SparkApplication, ScheduledSparkApplication and SparkConnect
/// (idempotent), and waits until all are served: the operator's schedule and SparkConnect
/// controllers watch the last two.
pub fn install_crd() {
    apply_retried(&repo_root().join("manifests/crd"));
    for crd in [
        "crd/sparkapplications.sparkoperator.k8s.io",
        "crd/scheduledsparkapplications.sparkoperator.k8s.io",
        "crd/sparkconnects.sparkoperator.k8s.io",
    ] {
        wait_established(crd);
    }
}

/// Installs the CRD in the repo file `path` (idempotent, retried as [`install_crd`] is) and
/// waits until `crd` (`crd/<plural>.<group>`) is served.
pub fn install_crd_file(path: &str, crd: &str) {
    apply_retried(&repo_root().join(path));
    wait_established(crd);
}

/// `kubectl apply -f path`, retried: parallel tests race to create the same CRDs on a fresh
/// apiserver, and the loser retries as an update.
fn apply_retried(path: &Path) {
    let file = path.to_str().expect("utf-8 path");
    let mut last = None;
    for _ in 0..5 {
        let out = kubectl(&["apply", "-f", file]);
        if out.status.success() {
            return;
        }
        last = Some(String::from_utf8_lossy(&out.stderr).into_owned());
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "kubectl apply of {} failed:\n{}",
        path.display(),
        last.unwrap_or_default()
    );
}

fn wait_established(crd: &str) {
    // Polled rather than `kubectl wait --for=condition=Established`: that kubectl fails at
    // once ("accessor error: <nil>") on a CRD whose status has no conditions yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let established = r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
    loop {
        let out = kubectl(&["get", crd, "-o", established]);
        if out.status.success() && out.stdout.as_slice() == b"True" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{crd} is not Established after 60 s: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released), chosen below the kernel's ephemeral
/// range: a port from that range (what binding port 0 gives) can be taken as the source port of
/// any outgoing connection between its release and the server's bind, which failed a real-node
/// test once with "Address already in use".
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.max(10_001));
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0u32..10_000 {
        let mut h = seed.build_hasher();
        h.write_u32(attempt);
        let port = low + (h.finish() % u64::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// Label that `namespace()` puts on each test namespace with its own name, so a test's webhook
/// registration can select exactly its namespace (tests run in parallel on one apiserver).
pub const NS_LABEL: &str = "spark-webhook.e2e/ns";

/// A `spark-webhook serve` process of the test, stopped with SIGTERM when dropped.
pub struct Served {
    pub child: std::process::Child,
    pub webhook_port: u16,
    pub admin_port: u16,
    pub config_name: String,
    pub log: PathBuf,
}

impl Served {
    /// Starts `serve` for namespace `ns` with certificates in `cert_dir`, registered through a
    /// url clientConfig, plus `extra` flags; waits until /readyz answers 200.
    pub fn start(ns: &str, cert_dir: &Path, extra: &[&str]) -> Served {
        Self::start_as(&cluster().kubeconfig, &[], ns, cert_dir, extra)
    }

    /// [`Served::start`] authenticated by `kubeconfig` (e.g. a ServiceAccount token), with
    /// extra environment variables.
    pub fn start_as(
        kubeconfig: &Path,
        env: &[(&str, &str)],
        ns: &str,
        cert_dir: &Path,
        extra: &[&str],
    ) -> Served {
        Self::wait_ready(Self::spawn_as(kubeconfig, env, ns, cert_dir, extra))
    }

    /// [`Served::start_as`] without waiting for readiness (for a serve that is expected to stop).
    pub fn spawn_as(
        kubeconfig: &Path,
        env: &[(&str, &str)],
        ns: &str,
        cert_dir: &Path,
        extra: &[&str],
    ) -> Served {
        Self::spawn_replica(kubeconfig, env, ns, cert_dir, "", extra)
    }

    /// Another replica beside [`Served::start`]'s in the same namespace and certificate
    /// directory: its own webhook configuration (`e2e-<ns><suffix>`, so the apiserver calls
    /// both) and its own log file.
    pub fn start_replica(ns: &str, cert_dir: &Path, suffix: &str, extra: &[&str]) -> Served {
        Self::wait_ready(Self::spawn_replica(
            &cluster().kubeconfig,
            &[],
            ns,
            cert_dir,
            suffix,
            extra,
        ))
    }

    pub fn spawn_replica(
        kubeconfig: &Path,
        env: &[(&str, &str)],
        ns: &str,
        cert_dir: &Path,
        suffix: &str,
        extra: &[&str],
    ) -> Served {
        let config_name = format!("e2e-{ns}{suffix}");
        Self::spawn_named(kubeconfig, env, ns, cert_dir, suffix, &config_name, extra)
    }

    /// [`Served::spawn_replica`] registering the configurations `config_name` (replicas sharing
    /// one name register over each other, as in a cluster).
    pub fn spawn_named(
        kubeconfig: &Path,
        env: &[(&str, &str)],
        ns: &str,
        cert_dir: &Path,
        suffix: &str,
        config_name: &str,
        extra: &[&str],
    ) -> Served {
        let webhook_port = free_port();
        let admin_port = free_port();
        let config_name = config_name.to_string();
        let log = cert_dir.join(format!("serve{suffix}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spark-webhook"));
        cmd.env("KUBECONFIG", kubeconfig)
            .envs(env.iter().copied())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .args(["serve", "--log", "info,spark_webhook=debug"])
            .arg("--cert-dir")
            .arg(cert_dir)
            .args(["--webhook-addr", &format!("127.0.0.1:{webhook_port}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .args([
                "--register-webhook=true",
                "--webhook-url",
                &format!("https://127.0.0.1:{webhook_port}"),
            ])
            .args(["--webhook-config-name", &config_name])
            .args(["--namespaces", ns])
            .args(["--webhook-namespace-selector", &format!("{NS_LABEL}={ns}")])
            .args(extra)
            // No endpoints to drain from here: tests stop serve at once unless they test that.
            .args(
                (!extra.iter().any(|a| a.starts_with("--drain-period")))
                    .then_some("--drain-period=0s"),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("serve log file"));
        let child = cmd.spawn().expect("spawning spark-webhook serve");
        Served {
            child,
            webhook_port,
            admin_port,
            config_name,
            log,
        }
    }

    /// The exit status once serve stops by itself within `timeout` (None: still running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_ready(mut served: Served) -> Served {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!(
                    "spark-webhook serve exited with {status}:\n{}",
                    served.logs()
                );
            }
            if served
                .admin_get("/readyz")
                .is_some_and(|(code, _)| code == 200)
            {
                return served;
            }
            assert!(
                Instant::now() < deadline,
                "serve not ready in 30 s:\n{}",
                served.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the admin port: (status code, body).
    pub fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("waiting for serve")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// Writes a driver pod's phase as a kubelet would (there is none on the loopback control plane),
/// with the Spark container's state: running, or terminated with `exit`.
pub async fn set_driver_phase(
    pods: &Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    phase: &str,
    exit: Option<i32>,
) {
    let state = match exit {
        Some(code) => serde_json::json!({"terminated": {
            "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }
        }}),
        None => serde_json::json!({"running": {}}),
    };
    let status = serde_json::json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "spark-kubernetes-driver", "ready": exit.is_none(), "restartCount": 0,
        "image": "spark:3.3.4", "imageID": "", "state": state
    }]}});
    pods.patch_status(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .unwrap_or_else(|e| panic!("status of pod {name}: {e}"));
}

/// An app's state as `kubectl get sparkapp` shows it; empty before its first status.
pub fn state_of(app: &spark_webhook::crd::SparkApplication) -> String {
    app.status
        .as_ref()
        .map(|s| s.application_state.state.to_string())
        .unwrap_or_default()
}

/// Waits up to `timeout` for the app `name` to be in state `want`; the app then.
pub async fn wait_state(
    api: &Api<spark_webhook::crd::SparkApplication>,
    name: &str,
    want: &str,
    timeout: Duration,
) -> spark_webhook::crd::SparkApplication {
    eventually(&format!("{name} in state {want}"), timeout, || async {
        let app = api.get_opt(name).await.ok()??;
        (state_of(&app) == want).then_some(app)
    })
    .await
}

/// Waits up to `timeout` for the pod `name` to exist.
pub async fn wait_pod(
    pods: &Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    timeout: Duration,
) -> k8s_openapi::api::core::v1::Pod {
    eventually(&format!("pod {name}"), timeout, || async {
        pods.get_opt(name).await.ok()?
    })
    .await
}

/// Waits up to `timeout` until the pod `name` no longer exists; `what` names it in a timeout.
pub async fn wait_pod_gone(
    pods: &Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    what: &str,
    timeout: Duration,
) {
    eventually(what, timeout, || async {
        pods.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await
}

/// Serving certificates in a fresh temporary folder (gone with it).
pub fn certs() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    spark_webhook::certs::files::generate(&spark_webhook::certs::issue::CertOptions::new(
        tmp.path(),
    ))
    .expect("certificates");
    tmp
}

/// The value of an unlabelled series in a Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest.strip_prefix("{}").unwrap_or(rest);
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}
