//! Schedules at scale: `BENCH_SCHEDULES` ScheduledSparkApplications (default 100) at `@every
//! BENCH_EVERY_SECS` (default 10) with history limits of 1, for `BENCH_SCHEDULE_SECS` (default
//! 300), through the release operator on a local control plane; printed as one table.
//!
//! The run starts its own etcd + kube-apiserver (`tests/cluster/cluster.sh up` in a temporary
//! folder, tied to this process by `WATCH_PID`), installs both CRDs, starts `spark-webhook serve
//! --webhook=false --leader-election=false` for one namespace, creates the schedules and watches
//! their runs. Each run is marked COMPLETED as soon as this process sees it (there is no kubelet;
//! its driver pod stays Pending), so the history limit of 1 prunes the one before.
//!
//! Lateness of a run: the moment this process's watch delivers the run's creation minus its
//! slot (read from its name, `<schedule>-<slot in Unix seconds>`), on the wall clock; so it
//! includes the watch's own delivery. The operator's CPU is utime+stime from `/proc/PID/stat`
//! over the measured window, its peak RSS `VmHWM`. Also: runs expected (slots that fell in the
//! window, per schedule from its first run) against runs seen, slots skipped, and runs left at
//! the end. `BENCH_OPERATOR=<path>` runs that `spark-webhook` binary instead of this build's
//! (e.g. the static release build of `tests/cluster/operator-image.sh`). Under a test harness (no
//! `--bench` argument) it prints one line and exits 0.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Config, ResourceExt as _};
use serde_json::json;
use spark_webhook::crd::{ScheduledSparkApplication, SparkApplication, crd, scheduled_crd};
use spark_webhook::labels::SCHEDULED_APP_NAME_LABEL;

mod common;

use common::{BoxError, Cluster, clock_ticks, cpu_ticks, percentile, wait_bounded};

struct Settings {
    schedules: usize,
    every: u64,
    window: Duration,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let num = |key: &str, default: u64| -> Result<u64, String> {
            match std::env::var(key) {
                Ok(v) => v
                    .parse()
                    .map_err(|_| format!("{key}={v:?} is not a whole number")),
                Err(_) => Ok(default),
            }
        };
        Ok(Settings {
            schedules: usize::try_from(num("BENCH_SCHEDULES", 100)?).unwrap_or(100),
            every: num("BENCH_EVERY_SECS", 10)?.max(1),
            window: Duration::from_secs(num("BENCH_SCHEDULE_SECS", 300)?),
        })
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "schedule_scale: a scale run against a local control plane, not a test; run it with `make bench`"
        );
        return ExitCode::SUCCESS;
    }
    let s = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("schedule_scale: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cluster = match Cluster::up("schedule_scale") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("schedule_scale: FAILED: starting the control plane: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(&cluster, &s));
    drop(rt);
    drop(cluster);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("schedule_scale: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn client(kubeconfig: &Path) -> Result<Client, BoxError> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

async fn install_crds(client: &Client) -> Result<(), BoxError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for c in [crd(), scheduled_crd()] {
        let name = c.name_any();
        crds.create(&PostParams::default(), &c).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let established = crds.get(&name).await?.status.and_then(|s| {
                s.conditions?
                    .into_iter()
                    .find(|c| c.type_ == "Established")
                    .map(|c| c.status == "True")
            });
            if established == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{name} not Established in 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn schedule(ns: &str, i: usize, every: u64) -> Result<ScheduledSparkApplication, BoxError> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
        "metadata": {"name": format!("s{i:04}"), "namespace": ns},
        "spec": {
            "schedule": format!("@every {every}s"),
            "successfulRunHistoryLimit": 1, "failedRunHistoryLimit": 1,
            "template": {
                "type": "Scala", "mode": "cluster", "sparkVersion": "3.5.3", "image": "spark:3.5.3",
                "mainClass": "org.apache.spark.examples.SparkPi",
                "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
                "restartPolicy": {"type": "Never"},
                "driver": {"cores": 1, "memory": "512m", "serviceAccount": "spark"},
                "executor": {"instances": 1, "cores": 1, "memory": "512m"}
            }
        }
    }))?)
}

/// Runs seen: name -> lateness (ms) against the slot.
type Seen = Arc<Mutex<BTreeMap<String, f64>>>;

async fn run(cluster: &Cluster, s: &Settings) -> Result<(), BoxError> {
    let client = client(&cluster.kubeconfig).await?;
    install_crds(&client).await?;
    let ns = format!("sched-scale-{}", std::process::id());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let log_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schedule_scale");
    std::fs::create_dir_all(&log_dir)?;
    let log = log_dir.join("serve.log");
    let mut operator = Operator::start(&cluster.kubeconfig, &ns, &log)?;
    operator.wait_ready(Duration::from_secs(30))?;

    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let seen: Seen = Arc::default();
    let watch = {
        let seen = seen.clone();
        let apps = apps.clone();
        tokio::spawn(async move {
            let cfg = watcher::Config::default().labels(SCHEDULED_APP_NAME_LABEL);
            let mut events = watcher(apps.clone(), cfg).applied_objects().boxed();
            while let Some(Ok(app)) = events.next().await {
                let name = app.name_any();
                let now = Timestamp::now().as_millisecond() as f64;
                let Some(slot) = name.rsplit('-').next().and_then(|s| s.parse::<f64>().ok()) else {
                    continue;
                };
                let new = match seen.lock() {
                    Ok(mut m) if !m.contains_key(&name) => {
                        m.insert(name.clone(), now - slot * 1000.0);
                        true
                    }
                    _ => false,
                };
                if new {
                    // Its driver would finish it: the history limit then prunes the one before.
                    let apps = apps.clone();
                    tokio::spawn(async move {
                        let done = json!({"status": {"applicationState": {"state": "COMPLETED"}}});
                        let _ = apps
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&done))
                            .await;
                    });
                }
            }
        })
    };

    let schedules: Api<ScheduledSparkApplication> = Api::namespaced(client.clone(), &ns);
    eprintln!(
        "schedule_scale: {} schedules at @every {}s for {:?}",
        s.schedules, s.every, s.window
    );
    for i in 0..s.schedules {
        schedules
            .create(&PostParams::default(), &schedule(&ns, i, s.every)?)
            .await?;
    }
    // The window starts when every schedule exists; runs before it are not counted.
    let start_wall = Timestamp::now().as_second();
    let ticks_before = cpu_ticks(operator.pid())?;
    let started = Instant::now();
    let mut peak_rss_sampled = 0;
    while started.elapsed() < s.window {
        peak_rss_sampled = peak_rss_sampled.max(rss_kib(operator.pid(), "VmRSS:").unwrap_or(0));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let elapsed = started.elapsed();
    let ticks = cpu_ticks(operator.pid())? - ticks_before;
    let end_wall = start_wall + elapsed.as_secs() as i64;
    let peak_rss = rss_kib(operator.pid(), "VmHWM:")?;
    let left = apps.list(&ListParams::default()).await?.items.len();
    watch.abort();
    operator.stop();

    // Runs of slots inside the window.
    let seen = seen.lock().map(|m| m.clone()).unwrap_or_default();
    let mut lateness: Vec<f64> = Vec::new();
    let mut by_schedule: HashMap<String, Vec<i64>> = HashMap::new();
    for (name, late) in &seen {
        let Some((sched, slot)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(slot) = slot.parse::<i64>() else {
            continue;
        };
        if slot < start_wall || slot > end_wall {
            continue;
        }
        lateness.push(*late);
        by_schedule.entry(sched.to_owned()).or_default().push(slot);
    }
    lateness.sort_by(|a, b| a.total_cmp(b));
    let every = s.every as i64;
    let (mut expected, mut skipped) = (0i64, 0i64);
    for slots in by_schedule.values_mut() {
        slots.sort_unstable();
        let (first, last) = (slots[0], slots[slots.len() - 1]);
        let n = (last - first) / every + 1;
        expected += n;
        skipped += n - slots.len() as i64;
    }
    let cpu = ticks as f64 / clock_ticks() / elapsed.as_secs_f64();
    let p = |q: f64| percentile(&lateness, q);
    println!();
    println!(
        "schedule_scale: {} schedules @every {}s, history limits 1, {:.0} s window",
        s.schedules,
        s.every,
        elapsed.as_secs_f64()
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| runs seen in the window | {} (slots from each schedule's first run: {expected}, skipped: {skipped}) |",
        lateness.len()
    );
    println!(
        "| lateness, watch-seen minus slot | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
        p(0.50),
        p(0.99),
        lateness.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| operator CPU | {cpu:.3} cores on average ({:.1} s) |",
        ticks as f64 / clock_ticks()
    );
    println!(
        "| operator RSS | peak {:.1} MiB (VmHWM), sampled peak {:.1} MiB |",
        peak_rss as f64 / 1024.0,
        peak_rss_sampled as f64 / 1024.0
    );
    println!("| runs left at the end | {left} (history 1 + the newest, per schedule) |");
    println!("| operator log | {} |", log.display());
    if skipped > 0 {
        eprintln!("schedule_scale: {skipped} slots had no run (late by more than a period)");
    }
    Ok(())
}

fn rss_kib(pid: u32, key: &str) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .ok_or("no such line in /proc/PID/status")?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// The release operator, stopped (SIGTERM, then SIGKILL) when dropped.
struct Operator {
    child: Child,
    admin_port: u16,
    log: PathBuf,
}

impl Operator {
    fn start(kubeconfig: &Path, ns: &str, log: &Path) -> Result<Operator, BoxError> {
        let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let bin = std::env::var_os("BENCH_OPERATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_spark-webhook")));
        eprintln!("schedule_scale: operator {}", bin.display());
        let child = Command::new(bin)
            .env("KUBECONFIG", kubeconfig)
            .env("MIMALLOC_PURGE_DELAY", "0")
            .env("MIMALLOC_ALLOW_THP", "0")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("SPARK_WEBHOOK_LOG")
            .args(["--log", "info", "--log-format", "json", "serve"])
            .args(["--webhook=false", "--leader-election=false"])
            .args(["--driver-start-timeout", "0s", "--namespaces", ns])
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        Ok(Operator {
            child,
            admin_port,
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), BoxError> {
        use std::io::{Read as _, Write as _};
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("serve exited with {status}:\n{log}").into());
            }
            let ready = std::net::TcpStream::connect(("127.0.0.1", self.admin_port))
                .ok()
                .and_then(|mut s| {
                    write!(
                        s,
                        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    )
                    .ok()?;
                    let mut out = String::new();
                    s.read_to_string(&mut out).ok()?;
                    Some(out.starts_with("HTTP/1.1 200"))
                });
            if ready == Some(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("serve not ready in time".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        if wait_bounded(&mut self.child, Duration::from_secs(15)).is_none() {
            eprintln!("schedule_scale: the operator did not stop on SIGTERM; killed");
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}
