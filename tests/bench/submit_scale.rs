//! Submission at scale: N SparkApplications through the real reconciler against the apiserver's
//! own write floor, printed as one table.
//!
//! The run starts its own control planes (`tests/cluster/cluster.sh up` in a temporary folder,
//! tied to this process by `WATCH_PID`), installs the CRD and two PriorityClasses the app names,
//! and for each N in `BENCH_APPS` (default `1000`; e.g. `1000,5000`):
//!
//! 1. **objects floor**: in a fresh namespace, with no operator involved, creates for each app
//!    the objects a submission creates with the default flags — driver pod, then its Service,
//!    ConfigMap and Spark UI Service (`--enable-ui-service`, on by default) owned by it, built
//!    by `submission::build` exactly as the reconciler builds them — at `BENCH_CONCURRENCY`
//!    (default 16) apps in flight. Then the **full floor**: the least an operator must write
//!    per app, with the cheapest correct verbs and without any logic or watch: the user's
//!    create of the SparkApplication, the objects above, its SUBMITTED status as a JSON merge
//!    patch on the status subresource carrying the app's `metadata.resourceVersion` (the
//!    precondition that keeps a stale writer from overwriting a newer status), and one
//!    `events.k8s.io` Event created directly. The operator run pays for all of these on the
//!    same apiserver: its ratio to the full floor is what the operator itself adds.
//! 2. **operator**: in another fresh namespace, starts the release `spark-webhook serve
//!    --webhook=false --leader-election=false --namespaces NS` as a child, sends one warm-up app
//!    through it (so its watches are live), then creates N apps at the same concurrency and
//!    waits (at most `BENCH_TIMEOUT_SECS`, default 600) until every app has a driver pod and
//!    shows status SUBMITTED (or has failed).
//! 3. **operator, paced**: the same as 2 with a fresh operator and namespace, but the N apps
//!    arrive at a fixed rate, `BENCH_RATE` apps/s (default 20; 0 skips this run), still at
//!    most `BENCH_CONCURRENCY` creates in flight. A burst measures throughput, and its
//!    latencies are mostly time spent queued behind the apps created before; a steady arrival
//!    rate below what the whole pipeline can take measures the latency of one submission. The
//!    default is well below the burst's own rate on a quiet 2-core machine (about 48 apps/s:
//!    per app the apiserver also validates the SparkApplication create and its status write,
//!    which cost it several times the pod, Service and ConfigMap); `BENCH_RATE=50` paces at
//!    the rate target. Both runs are printed; the ratio to the floor only for the burst (a
//!    paced run lasts as long as its arrivals). Beside it, the **paced floor** at the same
//!    rate: a client with no logic watches the apps and, the moment its watch delivers one,
//!    writes the full floor's objects for it (Prometheus ConfigMap and driver pod first, as the
//!    operator), so the latency the apiserver itself gives at that rate is measured the same
//!    way. The two paced runs go first, each on a fresh control plane of its own (so neither
//!    meets an etcd already holding thousands of apps, which slows its p99 several times);
//!    the shared control plane of 1, 2 and 4 is started after them. Printed beside the
//!    operator's: the time to the driver per stage (the operator's from
//!    its debug line per driver created: reconcile start, submission slot, the pod's POST), and
//!    the apiserver's and etcd's own p99 per request kind from their histograms.
//! 4. **operator + webhook**: the burst of 2 once more, with `serve`'s webhook on as a Deployment
//!    runs it (`BENCH_WEBHOOK=0` skips this run): certificates from `spark-webhook certs`, both
//!    webhook configurations registered with a URL clientConfig on loopback, so the apiserver
//!    calls the webhook for every driver pod and validates every SparkApplication through it.
//!    Its peak RSS is the operator's whole memory: the webhook's caches beside the
//!    reconciler's. The configurations are deleted afterwards.
//!
//! Besides the targets, the table shows what each phase cost the control plane (requests the
//! apiserver served by verb, resource and code, from its `apiserver_request_total`; the time it
//! spent on each kind, from `apiserver_request_duration_seconds`, whose sum over a phase's wall
//! time is the mean number of requests it had in flight; CPU of kube-apiserver + etcd), the most
//! sockets the operator had open, its peak RssAnon and RssFile (sampled), the machine's load
//! average over each phase, failed reconciles from its log (run at
//! `info,spark_webhook::reconciler=debug`), and how the apps and events ended up.
//!
//! Clocks: every time is this process's monotonic clock. An app is "created" when the apiserver
//! answered its create; a driver pod / a SUBMITTED status is "seen" when this process's watch
//! delivers it. (The apiserver's creationTimestamps have one-second resolution, too coarse for
//! millisecond latencies.) The operator's CPU time is utime+stime from `/proc/PID/stat` between
//! just before the first create and the moment it is idle again afterwards; its peak RSS is
//! `VmHWM` from `/proc/PID/status`.
//!
//! A target missed is printed as MISS and does not fail the run; an error does: an app never
//! submitted, an app that reached FAILED or SUBMISSION_FAILED (the table is printed first), a
//! failed create, a missing or duplicate driver. Only the loopback apiserver is contacted; every
//! wait is bounded; the operator and the control plane are stopped on every exit path (guards),
//! and the operator's JSON log and the apiserver's log are kept in `target/tmp/submit_scale/`.
//! Under a test harness (no `--bench` argument) it prints one line and exits 0.
//!
//! `BENCH_OPERATOR_WRAP` runs every operator under a command, split at whitespace, e.g. a heap
//! profiler: `BENCH_OPERATOR_WRAP="heaptrack -o target/tmp/op"` with the operator built with
//! `--features system-allocator` (heaptrack sees only malloc); `heaptrack_print -f FILE -p`
//! then names the peak's consumers. The operator's figures (CPU, RSS, sockets) are still its
//! own process's, found under the wrapper by its executable, though slowed by the wrapper.
//!
//! `BENCH_POD_CREATES=N` (e.g. 2000) runs something else instead: the latency of a pod create
//! through the apiserver with the pod webhook against without it. In a fresh namespace holding
//! the plain SparkApplication (`sparkapplication-plain.yaml`), N Spark 3.5.3 driver pods
//! (`common::plain_driver_pod`, renamed) are created at `BENCH_CONCURRENCY` (default 16) in
//! flight, once with no webhook registered and once, in another namespace, with `serve
//! --controller=false` registered as the pod webhook (every create then waits on its review);
//! each create's latency is the time to the apiserver's answer. Printed: p50, p99, mean and
//! creates/s of both, and their ratios; every pod created with the webhook must carry the
//! patch (its owner reference).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Service};
use k8s_openapi::api::events::v1 as events_v1;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Config, Resource as _, ResourceExt as _};
use spark_webhook::crd::{ApplicationStateType, SparkApplication};
use spark_webhook::labels::{APP_NAME_LABEL, SPARK_ROLE_LABEL, SPEC_HASH_ANNOTATION};
use spark_webhook::reconciler::state::{self, SubmittedInfo};
use spark_webhook::submission::{self, Submission, SubmitOptions};
use tokio::sync::mpsc;

mod common;

use common::{BoxError, Cluster, clock_ticks, cpu_ticks, percentile, wait_bounded};

/// The app every submission is a copy of: SparkPi with volumes, env, secrets, tolerations, ...
const APP_YAML: &str = include_str!("sparkapplication.yaml");
/// Every CRD the operator serves: without the ScheduledSparkApplication and SparkConnect ones
/// their controllers' lists fail and are retried all through the run, which is not the
/// operator an installation runs.
const CRD_YAMLS: [&str; 3] = [
    include_str!("../../manifests/crd/sparkoperator.k8s.io_sparkapplications.yaml"),
    include_str!("../../manifests/crd/sparkoperator.k8s.io_scheduledsparkapplications.yaml"),
    include_str!("../../manifests/crd/sparkoperator.k8s.io_sparkconnects.yaml"),
];
/// PriorityClasses the app's driver and executors name (the Priority admission plugin refuses
/// pods naming a missing one).
const PRIORITY_CLASSES: [(&str, i32); 2] = [("spark-high", 1000), ("spark-low", 100)];

const APPS_ENV: &str = "BENCH_APPS";
const CONCURRENCY_ENV: &str = "BENCH_CONCURRENCY";
const TIMEOUT_ENV: &str = "BENCH_TIMEOUT_SECS";
const RATE_ENV: &str = "BENCH_RATE";
const WEBHOOK_ENV: &str = "BENCH_WEBHOOK";
const POD_CREATES_ENV: &str = "BENCH_POD_CREATES";
/// A command the operator runs under (a heap profiler), split at whitespace.
const OPERATOR_WRAP_ENV: &str = "BENCH_OPERATOR_WRAP";
/// Pods created before the measured ones in each pod-create run (connections, caches).
const POD_WARM_UP: usize = 50;
/// Arrivals per second of the paced run: below what the pipeline takes (see the doc comment).
const DEFAULT_RATE: f64 = 20.0;
const DEFAULT_APPS: usize = 1000;
const DEFAULT_CONCURRENCY: usize = 16;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Targets (figures for the team: a MISS is printed, not fatal).
const P50_TARGET_MS: f64 = 30.0;
/// 1000 apps in 20 s.
const RATE_TARGET: f64 = 1000.0 / 20.0;
/// The burst's last SUBMITTED against the full floor: what the operator may add to the writes
/// it cannot avoid.
const FULL_FLOOR_RATIO_TARGET: f64 = 1.2;
/// Paced run: app created -> driver pod seen, p99.
const P99_TARGET_MS: f64 = 30.0;
/// Peak RSS targets: (up to this many apps, MiB).
const RSS_TARGETS: [(usize, f64); 2] = [(1000, 40.0), (5000, 100.0)];

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the operator may take to become idle after the last app is SUBMITTED.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // A test harness (`cargo test --all-targets`, nextest) lists and runs every target: this
    // one holds no tests, and the run only happens under `cargo bench` (which passes --bench).
    if args.iter().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "submit_scale: a scale run against a local control plane, not a test; run it with `make bench`"
        );
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("submit_scale: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Some(n) = settings.pod_creates {
        let cluster = match Cluster::up("submit_scale") {
            Ok(c) => c,
            Err(e) => {
                eprintln!("submit_scale: FAILED: starting the control plane: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = rt.block_on(pod_creates(&cluster, n, settings.concurrency));
        drop(rt);
        drop(cluster);
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("submit_scale: FAILED: pod creates: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (results, error) = rt.block_on(run(&settings));
    if !results.is_empty() {
        print_table(&results, &settings);
    }
    drop(rt);
    match error {
        None => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!();
            eprintln!("submit_scale: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    sizes: Vec<usize>,
    concurrency: usize,
    timeout: Duration,
    /// Arrivals per second of the paced run; None: no paced run.
    rate: Option<f64>,
    /// Whether the burst runs once more with the webhook on.
    webhook: bool,
    /// `BENCH_POD_CREATES`: only the pod-create latency runs, with this many pods.
    pod_creates: Option<usize>,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let sizes = match std::env::var(APPS_ENV) {
            Err(_) => vec![DEFAULT_APPS],
            Ok(s) => s
                .split(',')
                .map(|n| match n.trim().parse::<usize>() {
                    Ok(n) if (1..=50_000).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "{APPS_ENV}={s:?}: expected comma-separated app counts in 1..=50000"
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        let concurrency = match std::env::var(CONCURRENCY_ENV) {
            Err(_) => DEFAULT_CONCURRENCY,
            Ok(s) => match s.trim().parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => return Err(format!("{CONCURRENCY_ENV}={s:?}: expected 1..=256")),
            },
        };
        let timeout = match std::env::var(TIMEOUT_ENV) {
            Err(_) => DEFAULT_TIMEOUT,
            Ok(s) => match s.trim().parse::<u64>() {
                Ok(n) if (10..=3600).contains(&n) => Duration::from_secs(n),
                _ => {
                    return Err(format!(
                        "{TIMEOUT_ENV}={s:?}: expected seconds in 10..=3600"
                    ));
                }
            },
        };
        let rate = match std::env::var(RATE_ENV) {
            Err(_) => Some(DEFAULT_RATE),
            Ok(s) => match s.trim().parse::<f64>() {
                Ok(0.0) => None,
                Ok(r) if (0.1..=10_000.0).contains(&r) => Some(r),
                _ => {
                    return Err(format!(
                        "{RATE_ENV}={s:?}: expected apps/s in 0.1..=10000, or 0"
                    ));
                }
            },
        };
        let webhook = match std::env::var(WEBHOOK_ENV).as_deref() {
            Err(_) | Ok("1") => true,
            Ok("0") => false,
            Ok(s) => return Err(format!("{WEBHOOK_ENV}={s:?}: expected 0 or 1")),
        };
        let pod_creates = match std::env::var(POD_CREATES_ENV) {
            Err(_) => None,
            Ok(s) => match s.trim().parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => Some(n),
                _ => return Err(format!("{POD_CREATES_ENV}={s:?}: expected 1..=100000")),
            },
        };
        Ok(Settings {
            sizes,
            concurrency,
            timeout,
            rate,
            webhook,
            pod_creates,
        })
    }
}

/// The figures of one operator run, beside the floor of its N.
struct Results {
    n: usize,
    /// Arrivals per second of a paced run; None: a burst.
    rate: Option<f64>,
    /// The operator ran with its webhook on.
    webhook: bool,
    floor: Floor,
    /// The floor with the app's create, its status write and its Event.
    full_floor: Floor,
    /// A paced run's floor at the same rate (see [`PacedFloor`]).
    paced_floor: Option<PacedFloor>,
    op: OperatorRun,
}

impl Results {
    /// "1000", "1000@50/s" for a paced run, "1000+wh" for a run with the webhook on.
    fn label(&self) -> String {
        let wh = if self.webhook { "+wh" } else { "" };
        match self.rate {
            None => format!("{}{wh}", self.n),
            Some(r) => format!("{}@{r:.0}/s{wh}", self.n),
        }
    }
}

#[derive(Clone)]
struct Floor {
    objects: usize,
    total: Duration,
    load: ApiLoad,
}

/// What a phase cost the control plane.
#[derive(Clone, Default)]
struct ApiLoad {
    /// CPU seconds of kube-apiserver + etcd.
    cpu_seconds: f64,
    /// Requests the apiserver served (apiserver_request_total), by "VERB resource code",
    /// most first.
    requests: Vec<(String, u64)>,
    /// Time the apiserver spent on requests (apiserver_request_duration_seconds) by "VERB
    /// resource", watches excluded: (key, requests, seconds), most seconds first.
    durations: Vec<(String, u64, f64)>,
    /// By "VERB resource" (apiserver_request_duration_seconds) and "etcd operation type"
    /// (etcd_request_duration_seconds): (requests, p99 ms, requests over the first bucket,
    /// first bucket ms), see [`histogram_p99`].
    p99: HashMap<String, (u64, f64, u64, f64)>,
    /// The machine's 1-minute load average at the start and at the end of the phase.
    load_average: (f64, f64),
}

impl ApiLoad {
    fn total(&self) -> u64 {
        self.requests.iter().map(|(_, c)| c).sum()
    }

    /// Seconds the apiserver spent on requests, summed over all kinds: divided by the phase's
    /// wall time, how many requests it had in flight on average.
    fn busy_seconds(&self) -> f64 {
        self.durations.iter().map(|(_, _, s)| s).sum()
    }

    fn with_code(&self, code: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.ends_with(&format!(" {code}")))
            .map(|(_, c)| c)
            .sum()
    }
}

struct OperatorRun {
    /// First create sent -> last driver pod seen.
    to_last_driver: Duration,
    /// First create sent -> last SUBMITTED seen.
    to_last_submitted: Duration,
    /// First create sent -> last create answered.
    creates: Duration,
    /// App created -> its driver pod seen, sorted (ms).
    driver_ms: Vec<f64>,
    /// App created -> SUBMITTED seen, sorted (ms).
    status_ms: Vec<f64>,
    cpu_seconds: f64,
    /// Whether the operator became idle within SETTLE_TIMEOUT after the last SUBMITTED.
    settled: bool,
    peak_rss_kib: u64,
    /// Peak RssAnon and RssFile (kiB), sampled every 100 ms.
    rss_split: (usize, usize),
    /// Where the time from each app's create to its driver went.
    stages: StageTimes,
    /// Most sockets the operator had open at once (its connections to the apiserver: the
    /// client speaks HTTP/1.1, one request per connection at a time).
    peak_sockets: usize,
    load: ApiLoad,
    log: LogSummary,
    log_path: PathBuf,
    watch_errors: usize,
    watch_restarts: usize,
    /// Pods, Services, ConfigMaps labelled with an app name at the end (warm-up included).
    counts: [usize; 3],
    /// "state attempts=N" -> apps, at the end (warm-up included).
    end_states: BTreeMap<String, usize>,
    /// Event reason -> count, in the operator's namespace.
    event_reasons: BTreeMap<String, usize>,
    /// Apps that reached FAILED or SUBMISSION_FAILED: (app, state, error message).
    failures: Vec<(String, String, String)>,
}

/// Runs every N; returns the figures gathered so far and the error that stopped the run, if any.
async fn run(s: &Settings) -> (Vec<Results>, Option<BoxError>) {
    let mut results = Vec::new();
    let template: SparkApplication = match yaml_serde::from_str(APP_YAML) {
        Ok(a) => a,
        Err(e) => return (results, Some(format!("sparkapplication.yaml: {e}").into())),
    };
    // The paced runs first, the operator's and the floor's each on a control plane of its own:
    // a p99 of milliseconds follows etcd, and etcd slows as it stores more. On one shared
    // control plane whichever paced phase ran later met an etcd 2-4x slower at p99 (its own
    // histograms, the same writes; session 11: floor first, operator p99 77-95 ms against the
    // floor's 23-25; operator first, 39 against 122).
    let mut paced = Vec::new();
    if let Some(r) = s.rate {
        for &n in &s.sizes {
            match paced_runs(&template, n, r, s).await {
                Ok(p) => paced.push((n, p)),
                Err(e) => return (results, Some(e)),
            }
        }
    }
    let cluster = match Cluster::up("submit_scale") {
        Ok(c) => c,
        Err(e) => {
            return (
                results,
                Some(format!("starting the control plane: {e}").into()),
            );
        }
    };
    let cluster = &cluster;
    let client = match prepare(cluster).await {
        Ok(c) => c,
        Err(e) => return (results, Some(e)),
    };
    for &n in &s.sizes {
        eprintln!(
            "submit_scale: N={n}: apiserver floor ({} objects, {} apps in flight)",
            OBJECTS_PER_APP * n,
            s.concurrency
        );
        let floor = match floor_run(&client, cluster, &template, n, s.concurrency).await {
            Ok(f) => f,
            Err(e) => return (results, Some(format!("N={n}: floor: {e}").into())),
        };
        eprintln!(
            "submit_scale: N={n}: floor done in {:.2} s; full floor (app, objects, status, Event)",
            floor.total.as_secs_f64()
        );
        let full_floor = match full_floor_run(&client, cluster, &template, n, s.concurrency).await {
            Ok(f) => f,
            Err(e) => return (results, Some(format!("N={n}: full floor: {e}").into())),
        };
        eprintln!(
            "submit_scale: N={n}: full floor done in {:.2} s; operator run",
            full_floor.total.as_secs_f64()
        );
        let result = |rate, webhook, paced_floor, op| Results {
            n,
            rate,
            webhook,
            floor: floor.clone(),
            full_floor: full_floor.clone(),
            paced_floor,
            op,
        };
        // The burst, then the burst with the webhook on (last: its configurations are
        // registered for the run's duration only); the paced run, measured above, between them.
        let mut runs: Vec<Results> = Vec::new();
        for webhook in std::iter::once(false).chain(s.webhook.then_some(true)) {
            if webhook {
                eprintln!("submit_scale: N={n}: operator run with the webhook on");
            }
            let op = match operator_run(&client, cluster, &template, n, None, webhook, s).await {
                Ok(op) => op,
                Err(e) => return (results, Some(format!("N={n}: operator: {e}").into())),
            };
            runs.push(result(None, webhook, None, op));
            if !webhook && let Some(i) = paced.iter().position(|(m, _)| *m == n) {
                let (_, (op, paced_floor)) = paced.remove(i);
                runs.push(result(s.rate, false, Some(paced_floor), op));
            }
        }
        for r in runs {
            let failures = r.op.failures.clone();
            let label = r.label();
            results.push(r);
            if !failures.is_empty() {
                let error = format!(
                    "N={label}: {} app(s) failed, e.g. {:?}",
                    failures.len(),
                    &failures[..failures.len().min(5)]
                );
                return (results, Some(error.into()));
            }
        }
    }
    (results, None)
}

/// The operator's paced run and the paced floor at the same rate, each on a fresh control
/// plane (started and stopped here).
async fn paced_runs(
    template: &SparkApplication,
    n: usize,
    rate: f64,
    s: &Settings,
) -> Result<(OperatorRun, PacedFloor), BoxError> {
    eprintln!("submit_scale: N={n}: operator run, paced at {rate} apps/s");
    let cluster = Cluster::up("submit_scale-paced-operator")
        .map_err(|e| format!("starting the paced operator's control plane: {e}"))?;
    let client = prepare(&cluster).await?;
    let op = operator_run(&client, &cluster, template, n, Some(rate), false, s)
        .await
        .map_err(|e| format!("N={n}: operator, paced: {e}"))?;
    drop(client);
    drop(cluster);
    eprintln!("submit_scale: N={n}: paced floor at {rate} apps/s");
    let cluster = Cluster::up("submit_scale-paced-floor")
        .map_err(|e| format!("starting the paced floor's control plane: {e}"))?;
    let client = prepare(&cluster).await?;
    let floor = paced_floor_run(&client, &cluster, template, n, rate, s)
        .await
        .map_err(|e| format!("N={n}: paced floor: {e}"))?;
    Ok((op, floor))
}

/// Client, CRDs (established), PriorityClasses.
async fn prepare(cluster: &Cluster) -> Result<Client, BoxError> {
    let kc = Kubeconfig::read_from(&cluster.kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for yaml in CRD_YAMLS {
        let crd: CustomResourceDefinition = yaml_serde::from_str(yaml)?;
        ignore_conflict(crds.create(&PostParams::default(), &crd).await)?;
    }
    for yaml in CRD_YAMLS {
        let name = yaml_serde::from_str::<CustomResourceDefinition>(yaml)?.name_any();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let established = crds.get(&name).await?.status.is_some_and(|s| {
                s.conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("CRD {name} not Established after 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let classes: Api<PriorityClass> = Api::all(client.clone());
    for (name, value) in PRIORITY_CLASSES {
        let pc: PriorityClass = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "value": value
        }))?;
        ignore_conflict(classes.create(&PostParams::default(), &pc).await)?;
    }
    Ok(client)
}

fn ignore_conflict<T>(r: kube::Result<T>) -> kube::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn create_namespace(client: &Client, prefix: &str) -> Result<String, BoxError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("{prefix}-{:x}", nanos % 0xfffff);
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(name)
}

/// Copy number `i` of the template, named for the run, in `ns`, without uid.
fn app_copy(template: &SparkApplication, ns: &str, i: usize) -> SparkApplication {
    let mut app = template.clone();
    // The template (shared with the webhook benches) sets both spec.nodeSelector and the
    // per-role ones, which the reconciler's validation refuses: keep the per-role ones.
    app.spec.node_selector.clear();
    app.metadata.name = Some(app_name(i));
    app.metadata.namespace = Some(ns.to_string());
    app.metadata.uid = None;
    app.metadata.resource_version = None;
    app.status = None;
    app
}

fn app_name(i: usize) -> String {
    format!("spark-pi-{i:05}")
}

// ---------------------------------------------------------------------------------------------
// The floor: the same objects, written directly.

async fn floor_run(
    client: &Client,
    cluster: &Cluster,
    template: &SparkApplication,
    n: usize,
    concurrency: usize,
) -> Result<Floor, BoxError> {
    let ns = create_namespace(client, "submit-scale-floor").await?;
    let subs = (0..n)
        .map(|i| {
            let mut app = app_copy(template, &ns, i);
            app.metadata.uid = Some(format!("5ca1ab1e-0000-4000-8000-{i:012x}"));
            let mut sub = submission::build(&app, 1, &SubmitOptions::default())?;
            let objects = 3
                + usize::from(sub.prometheus_config_map.is_some())
                + sub.ui_services().count()
                + sub.ingresses().count();
            if objects != OBJECTS_PER_APP || sub.driver_pdb.is_some() {
                return Err(format!(
                    "a submission of the bench's app creates {objects} objects, \
                     not {OBJECTS_PER_APP}: update the floor"
                )
                .into());
            }
            // What the reconciler adds to the driver pod.
            sub.driver_pod.annotations_mut().insert(
                SPEC_HASH_ANNOTATION.into(),
                spark_webhook::reconciler::spec_hash(&app),
            );
            Ok(sub)
        })
        .collect::<Result<Vec<Submission>, BoxError>>()?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let load_before = LoadMark::take(client, cluster).await?;
    let start = Instant::now();
    // As the reconciler does it: the pod, then Service and ConfigMap owned by it.
    let done: Vec<Instant> = stream::iter(subs)
        .map(|mut sub| {
            let (pods, services, config_maps, pp) = (&pods, &services, &config_maps, &pp);
            async move {
                create_objects(pods, services, config_maps, pp, &mut sub).await?;
                Ok::<_, BoxError>(Instant::now())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let last = done.into_iter().max().unwrap_or(start);
    let load = load_before.since(client, cluster).await?;
    Ok(Floor {
        objects: OBJECTS_PER_APP * n,
        total: last.duration_since(start),
        load,
    })
}

/// Objects a submission of the bench's app creates with the operator's default flags: the
/// Prometheus ConfigMap (`<app>-prom-conf`, the app asks for metrics), the driver pod, its
/// Service and ConfigMap, and the Spark UI Service (`<app>-ui-svc`, `--enable-ui-service`, on
/// by default as in kubeflow).
const OBJECTS_PER_APP: usize = 5;

/// As the reconciler creates them: the pod and beside it the Prometheus ConfigMap the driver
/// mounts, then the Service, the ConfigMap and the UI Service owned by the pod, one after the
/// other.
async fn create_objects(
    pods: &Api<Pod>,
    services: &Api<Service>,
    config_maps: &Api<ConfigMap>,
    pp: &PostParams,
    sub: &mut Submission,
) -> Result<(), BoxError> {
    let pod = create_with_prometheus(pods, config_maps, pp, sub).await?;
    let uid = pod.metadata.uid.unwrap_or_default();
    submission::owned_by_driver(sub, &uid);
    services.create(pp, &sub.service).await?;
    config_maps.create(pp, &sub.config_map).await?;
    if let Some(ui) = &sub.web_ui.service {
        services.create(pp, ui).await?;
    }
    Ok(())
}

/// Per app, the least an operator must write, with the cheapest correct verbs and no logic:
/// the SparkApplication (as the user creates it), its driver pod, Service, ConfigMap and UI
/// Service, the SUBMITTED status as a merge patch on the status subresource carrying the
/// app's resourceVersion as its precondition (what keeps a stale writer from overwriting a
/// newer status), and one events.k8s.io Event created directly.
async fn full_floor_run(
    client: &Client,
    cluster: &Cluster,
    template: &SparkApplication,
    n: usize,
    concurrency: usize,
) -> Result<Floor, BoxError> {
    let ns = create_namespace(client, "submit-scale-full").await?;
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let events: Api<events_v1::Event> = Api::namespaced(client.clone(), &ns);
    let objects: Vec<SparkApplication> = (0..n).map(|i| app_copy(template, &ns, i)).collect();
    let pp = PostParams::default();
    let load_before = LoadMark::take(client, cluster).await?;
    let start = Instant::now();
    let done: Vec<Instant> = stream::iter(objects)
        .map(|app| {
            let (apps, pods, services, config_maps, events, pp) =
                (&apps, &pods, &services, &config_maps, &events, &pp);
            async move {
                let app = apps.create(pp, &app).await?;
                let mut sub = submission::build(&app, 1, &SubmitOptions::default())?;
                sub.driver_pod.annotations_mut().insert(
                    SPEC_HASH_ANNOTATION.into(),
                    spark_webhook::reconciler::spec_hash(&app),
                );
                create_objects(pods, services, config_maps, pp, &mut sub).await?;
                write_submitted(apps, events, pp, &app, &sub).await?;
                Ok::<_, BoxError>(Instant::now())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let last = done.into_iter().max().unwrap_or(start);
    let load = load_before.since(client, cluster).await?;
    Ok(Floor {
        objects: (OBJECTS_PER_APP + 3) * n,
        total: last.duration_since(start),
        load,
    })
}

/// What an operator writes once an app's objects exist: the SUBMITTED status as a merge patch
/// preconditioned on the app's resourceVersion, and one events.k8s.io Event.
async fn write_submitted(
    apps: &Api<SparkApplication>,
    events: &Api<events_v1::Event>,
    pp: &PostParams,
    app: &SparkApplication,
    sub: &Submission,
) -> Result<(), BoxError> {
    let info = SubmittedInfo {
        submission_id: sub.submission_id.clone(),
        driver_pod_name: sub.driver_pod.name_any(),
        app_id: sub.app_id.clone(),
        ui_service_name: sub
            .web_ui
            .service
            .as_ref()
            .map(|s| s.name_any())
            .unwrap_or_default(),
        ui_port: 4040,
        ui_address: String::new(),
        ui_ingress_name: String::new(),
        ui_ingress_address: String::new(),
    };
    let decision = state::submitted(app, 1, Ok(info), Timestamp::now());
    // A new app has no status: the patch is the whole status, preconditioned.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": app.resource_version()},
        "status": decision.status,
    });
    let app = apps
        .patch_status(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    for note in &decision.events {
        let now = Timestamp::now();
        let event = events_v1::Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", app.name_any(), now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some("spark-webhook".into()),
            reporting_instance: Some("spark-webhook".into()),
            regarding: Some(app.object_ref(&())),
            note: Some(note.message.clone()),
            type_: Some("Normal".into()),
            action: Some("Reconcile".into()),
            reason: Some(note.reason.into()),
            ..events_v1::Event::default()
        };
        events.create(pp, &event).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The paced floor.

/// The paced floor: what a writer with no logic needs from an app's create to its driver pod
/// on this apiserver at the paced rate. A client watches the namespace's SparkApplications and,
/// the moment its watch delivers a new one, writes what the full floor writes for it (the
/// Prometheus ConfigMap and the driver pod first, as the operator, then the driver's Service,
/// ConfigMap, UI Service, the SUBMITTED merge patch and the Event); the apps arrive as in the
/// paced operator run and the latency is measured the same way, by this process's watches.
struct PacedFloor {
    driver_ms: Vec<f64>,
    status_ms: Vec<f64>,
    stages: StageTimes,
    load: ApiLoad,
}

/// One app the floor's writer wrote: when its watch had the app, sent the pod's POST and had
/// the answer.
struct Written {
    app: String,
    seen: Instant,
    sent: Instant,
    answered: Instant,
}

async fn paced_floor_run(
    client: &Client,
    cluster: &Cluster,
    template: &SparkApplication,
    n: usize,
    rate: f64,
    s: &Settings,
) -> Result<PacedFloor, BoxError> {
    let ns = create_namespace(client, "submit-scale-pfloor").await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _watches = Watches(spawn_watches(client, &ns, tx).into());
    let mut observed = Observed::default();
    let synced = wait_for(&mut rx, &mut observed, Instant::now() + SYNC_TIMEOUT, |o| {
        o.synced.len() == 2
    })
    .await;
    if !synced {
        return Err(format!("the bench's watches did not sync in {SYNC_TIMEOUT:?}").into());
    }
    let (wtx, mut written_rx) = mpsc::unbounded_channel();
    let _writer = Watches(vec![tokio::spawn(floor_writer(
        client.clone(),
        ns.clone(),
        wtx,
    ))]);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    // Warm-up, as in the operator run: connections open, the writer's watch live.
    let mut warm_up = app_copy(template, &ns, 0);
    warm_up.metadata.name = Some("warm-up".into());
    apps.create(&PostParams::default(), &warm_up).await?;
    let warm = wait_for(
        &mut rx,
        &mut observed,
        Instant::now() + WARM_UP_TIMEOUT,
        |o| o.submitted.contains_key("warm-up") && o.driver.contains_key("warm-up"),
    )
    .await;
    if !warm {
        return Err(
            format!("the floor's warm-up app was not written in {WARM_UP_TIMEOUT:?}").into(),
        );
    }
    let objects: Vec<SparkApplication> = (0..n).map(|i| app_copy(template, &ns, i)).collect();
    let names: Vec<String> = (0..n).map(app_name).collect();
    let load_before = LoadMark::take(client, cluster).await?;
    let start = Instant::now();
    let creating = spawn_creates(apps, objects, Some(rate), s.concurrency, start);
    let deadline = start + s.timeout;
    let created = tokio::select! {
        created = creating => created.map_err(|e| format!("create task: {e}"))??,
        _ = wait_for(&mut rx, &mut observed, deadline, |_| false) => {
            return Err(format!("the apps were not all created in {:?}", s.timeout).into());
        }
    };
    let all = |o: &Observed| {
        names
            .iter()
            .all(|a| o.driver.contains_key(a) && o.submitted.contains_key(a))
    };
    if !wait_for(&mut rx, &mut observed, deadline, all).await {
        return Err(format!("the floor did not write every app in {:?}", s.timeout).into());
    }
    let load = load_before.since(client, cluster).await?;
    let mut written = HashMap::with_capacity(n);
    while let Ok(w) = written_rx.try_recv() {
        let w: Written = w?;
        written.insert(w.app.clone(), w);
    }
    let created_at: HashMap<String, Instant> = created
        .into_iter()
        .map(|(name, _sent, ack)| (name, ack))
        .collect();
    let millis = |seen: &HashMap<String, Instant>| {
        let mut v: Vec<f64> = names
            .iter()
            .filter_map(|a| Some(signed_ms(*created_at.get(a)?, *seen.get(a)?)))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let mut stages = StageTimes::default();
    for app in &names {
        let (Some(ack), Some(w), Some(seen)) = (
            created_at.get(app),
            written.get(app),
            observed.driver.get(app),
        ) else {
            continue;
        };
        stages.add([
            signed_ms(*ack, w.seen),
            0.0,
            signed_ms(w.seen, w.sent),
            signed_ms(w.sent, w.answered),
            signed_ms(w.answered, *seen),
        ]);
    }
    stages.sort();
    Ok(PacedFloor {
        driver_ms: millis(&observed.driver),
        status_ms: millis(&observed.submitted),
        stages,
        load,
    })
}

/// The floor's writer: every new app its watch delivers is written at once, in a task of its
/// own; what each write took goes to `out` (an error ends the run).
async fn floor_writer(
    client: Client,
    ns: String,
    out: mpsc::UnboundedSender<Result<Written, String>>,
) {
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let mut events = std::pin::pin!(
        watcher(apps, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    let mut handled = HashSet::new();
    while let Some(event) = events.next().await {
        let seen = Instant::now();
        // A failed watch call is retried by the backoff; the wait for every app bounds the run.
        let Ok(app) = event else { continue };
        if app.status.is_some() || !handled.insert(app.name_any()) {
            continue;
        }
        let (client, ns, out) = (client.clone(), ns.clone(), out.clone());
        tokio::spawn(async move {
            let name = app.name_any();
            let result = floor_write(&client, &ns, app, seen)
                .await
                .map_err(|e| format!("the floor writing {name}: {e}"));
            let _ = out.send(result);
        });
    }
}

async fn floor_write(
    client: &Client,
    ns: &str,
    app: SparkApplication,
    seen: Instant,
) -> Result<Written, BoxError> {
    let pp = PostParams::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut sub = submission::build(&app, 1, &SubmitOptions::default())?;
    sub.driver_pod.annotations_mut().insert(
        SPEC_HASH_ANNOTATION.into(),
        spark_webhook::reconciler::spec_hash(&app),
    );
    let sent = Instant::now();
    let pod = create_with_prometheus(&pods, &config_maps, &pp, &sub).await?;
    let answered = Instant::now();
    submission::owned_by_driver(&mut sub, &pod.metadata.uid.unwrap_or_default());
    services.create(&pp, &sub.service).await?;
    config_maps.create(&pp, &sub.config_map).await?;
    if let Some(ui) = &sub.web_ui.service {
        services.create(&pp, ui).await?;
    }
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
    let events: Api<events_v1::Event> = Api::namespaced(client.clone(), ns);
    write_submitted(&apps, &events, &pp, &app, &sub).await?;
    Ok(Written {
        app: app.name_any(),
        seen,
        sent,
        answered,
    })
}

/// The driver pod, and at the same time the Prometheus ConfigMap it mounts (if any), as the
/// reconciler writes them.
async fn create_with_prometheus(
    pods: &Api<Pod>,
    config_maps: &Api<ConfigMap>,
    pp: &PostParams,
    sub: &Submission,
) -> Result<Pod, BoxError> {
    let prometheus = async {
        match &sub.prometheus_config_map {
            Some(config) => config_maps.create(pp, config).await.map(Some),
            None => Ok(None),
        }
    };
    let (pod, prometheus) =
        futures::future::join(pods.create(pp, &sub.driver_pod), prometheus).await;
    prometheus?;
    Ok(pod?)
}

// ---------------------------------------------------------------------------------------------
// The operator run.

/// What the watches of this process saw.
enum Seen {
    Synced(&'static str),
    Driver {
        app: String,
        pod: String,
    },
    Submitted {
        app: String,
    },
    Failed {
        app: String,
        state: String,
        error: String,
    },
    WatchError(String),
    /// A watch started over (the first start included): the apiserver closed it or it failed.
    Restarted(&'static str),
}

#[derive(Default)]
struct Observed {
    synced: HashSet<&'static str>,
    driver: HashMap<String, Instant>,
    driver_pods: HashMap<String, HashSet<String>>,
    submitted: HashMap<String, Instant>,
    /// App -> (state, error message), the first failure seen.
    failed: BTreeMap<String, (String, String)>,
    watch_errors: Vec<String>,
    /// Starts per watch.
    starts: HashMap<&'static str, usize>,
}

impl Observed {
    fn absorb(&mut self, (seen, at): (Seen, Instant)) {
        match seen {
            Seen::Synced(what) => {
                self.synced.insert(what);
            }
            Seen::Driver { app, pod } => {
                self.driver.entry(app.clone()).or_insert(at);
                self.driver_pods.entry(app).or_default().insert(pod);
            }
            Seen::Submitted { app } => {
                self.submitted.entry(app).or_insert(at);
            }
            Seen::Failed { app, state, error } => {
                self.failed.entry(app).or_insert((state, error));
            }
            Seen::WatchError(e) => self.watch_errors.push(e),
            Seen::Restarted(what) => *self.starts.entry(what).or_default() += 1,
        }
    }
}

/// Waits until `done(observed)` or `deadline`; whether `done` held.
async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<(Seen, Instant)>,
    observed: &mut Observed,
    deadline: Instant,
    done: impl Fn(&Observed) -> bool,
) -> bool {
    loop {
        if done(observed) {
            return true;
        }
        tokio::select! {
            seen = rx.recv() => match seen {
                Some(seen) => observed.absorb(seen),
                None => return false,
            },
            _ = tokio::time::sleep_until(deadline.into()) => return done(observed),
        }
    }
}

fn spawn_watches(
    client: &Client,
    ns: &str,
    tx: mpsc::UnboundedSender<(Seen, Instant)>,
) -> [tokio::task::JoinHandle<()>; 2] {
    // Metadata-only: the labels are all this needs.
    let pods: Api<PartialObjectMeta<Pod>> = Api::namespaced(client.clone(), ns);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
    let pods_tx = tx.clone();
    let pod_watch = tokio::spawn(async move {
        let config = watcher::Config::default().labels(&format!("{SPARK_ROLE_LABEL}=driver"));
        let mut events = std::pin::pin!(watcher(pods, config).default_backoff());
        while let Some(event) = events.next().await {
            let at = Instant::now();
            let seen = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    match pod.labels().get(APP_NAME_LABEL) {
                        Some(app) => Seen::Driver {
                            app: app.clone(),
                            pod: pod.name_any(),
                        },
                        None => continue,
                    }
                }
                Ok(watcher::Event::InitDone) => Seen::Synced("pods"),
                Ok(watcher::Event::Init) => Seen::Restarted("pods"),
                Ok(_) => continue,
                Err(e) => Seen::WatchError(format!("pods: {e}")),
            };
            if pods_tx.send((seen, at)).is_err() {
                return;
            }
        }
    });
    let app_watch = tokio::spawn(async move {
        let mut events =
            std::pin::pin!(watcher(apps, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            let at = Instant::now();
            let seen = match event {
                Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app)) => {
                    let Some(status) = &app.status else { continue };
                    let state = status.application_state.state;
                    match state {
                        ApplicationStateType::Submitted => Seen::Submitted {
                            app: app.name_any(),
                        },
                        ApplicationStateType::SubmissionFailed | ApplicationStateType::Failed => {
                            Seen::Failed {
                                app: app.name_any(),
                                state: format!("{state:?}"),
                                error: status.application_state.error_message.clone(),
                            }
                        }
                        _ => continue,
                    }
                }
                Ok(watcher::Event::InitDone) => Seen::Synced("apps"),
                Ok(watcher::Event::Init) => Seen::Restarted("apps"),
                Ok(_) => continue,
                Err(e) => Seen::WatchError(format!("sparkapplications: {e}")),
            };
            if tx.send((seen, at)).is_err() {
                return;
            }
        }
    });
    [pod_watch, app_watch]
}

/// Aborts the watch tasks (and the paced floor's writer) when dropped (on every exit path of
/// the run).
struct Watches(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Per app, where the time from its create (the apiserver's answer) to its driver pod seen by
/// this process's watch went, in ms, each sorted; 5 stages, see [`STAGES`].
#[derive(Default)]
struct StageTimes([Vec<f64>; 5]);

/// The stages of [`StageTimes`]. The operator's come from its debug line per driver created
/// ("driver pod created": the microseconds from its reconcile's start to a submission slot, to
/// the pod's POST, and of the POST; the line's wall-clock timestamp is the POST's answer); the
/// paced floor's from its own clock. The pod's POST is timed until the Prometheus ConfigMap's
/// create beside it is answered too.
const STAGES: [&str; 5] = [
    "created -> writer has it (watch, queue)",
    "-> decided, submission slot held",
    "-> pod POST sent (build)",
    "pod POST, prom ConfigMap beside",
    "POST answered -> bench watch sees pod",
];

impl StageTimes {
    fn add(&mut self, ms: [f64; 5]) {
        for (v, x) in self.0.iter_mut().zip(ms) {
            v.push(x);
        }
    }

    fn sort(&mut self) {
        for v in &mut self.0 {
            v.sort_by(f64::total_cmp);
        }
    }
}

async fn operator_run(
    client: &Client,
    cluster: &Cluster,
    template: &SparkApplication,
    n: usize,
    rate: Option<f64>,
    webhook: bool,
    s: &Settings,
) -> Result<OperatorRun, BoxError> {
    let ns = create_namespace(client, "submit-scale-op").await?;
    let log_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("submit_scale");
    std::fs::create_dir_all(&log_dir)?;
    let log_path = log_dir.join(format!("serve-{n}-{ns}.log"));
    let registered = match webhook {
        true => Some(Registered::certs(
            client,
            &log_dir.join(format!("certs-{ns}")),
            &ns,
        )?),
        false => None,
    };
    let mut operator = Operator::start(
        &cluster.kubeconfig,
        &ns,
        &log_path,
        registered.as_ref(),
        true,
    )?;
    let fail = |operator: &Operator, what: String| -> BoxError {
        format!(
            "{what}\n--- last lines of the operator log ({}) ---\n{}",
            operator.log.display(),
            operator.log_tail(20)
        )
        .into()
    };
    operator.wait_ready(READY_TIMEOUT)?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let _watches = Watches(spawn_watches(client, &ns, tx).into());
    let mut observed = Observed::default();
    let synced = wait_for(&mut rx, &mut observed, Instant::now() + SYNC_TIMEOUT, |o| {
        o.synced.len() == 2
    })
    .await;
    if !synced {
        return Err(format!(
            "the bench's watches did not sync in {SYNC_TIMEOUT:?}: {:?}",
            observed.watch_errors
        )
        .into());
    }

    // Warm-up: one app through the whole path, so the operator's watches are live (and the
    // CRD is served) before the clock starts.
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let mut warm_up = app_copy(template, &ns, 0);
    warm_up.metadata.name = Some("warm-up".into());
    let deadline = Instant::now() + WARM_UP_TIMEOUT;
    loop {
        match apps.create(&PostParams::default(), &warm_up).await {
            Ok(_) => break,
            // The CRD may be Established a moment before its resource is served.
            Err(kube::Error::Api(e)) if e.code == 404 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("creating the warm-up app: {e}").into()),
        }
    }
    let warm = wait_for(&mut rx, &mut observed, deadline, |o| {
        o.failed.contains_key("warm-up")
            || (o.submitted.contains_key("warm-up") && o.driver.contains_key("warm-up"))
    })
    .await;
    if !warm || !observed.failed.is_empty() {
        return Err(fail(
            &operator,
            format!(
                "the warm-up app was not SUBMITTED with a driver within {WARM_UP_TIMEOUT:?} \
                 (failures: {:?})",
                observed.failed
            ),
        ));
    }

    let objects: Vec<SparkApplication> = (0..n).map(|i| app_copy(template, &ns, i)).collect();
    let names: Vec<String> = (0..n).map(app_name).collect();
    let sockets = SocketSampler::start(operator.pid());
    let load_before = LoadMark::take(client, cluster).await?;
    let cpu_before = operator.cpu_ticks()?;
    let start = Instant::now();
    // This clock against the wall clock of the operator's log lines.
    let wall_start = Timestamp::now();
    let creating = spawn_creates(apps, objects, rate, s.concurrency, start);
    let deadline = start + s.timeout;
    // Every app either has its driver and SUBMITTED, or has failed (a failure is an error of
    // the run, reported after the figures of the others).
    let resolved = |o: &Observed, a: &String| {
        o.failed.contains_key(a) || (o.driver.contains_key(a) && o.submitted.contains_key(a))
    };
    let all = |o: &Observed| names.iter().all(|a| resolved(o, a));
    let created = tokio::select! {
        created = creating => created.map_err(|e| format!("create task: {e}"))??,
        _ = wait_for(&mut rx, &mut observed, deadline, |_| false) => {
            return Err(fail(&operator, format!("the apps were not all created in {:?}", s.timeout)));
        }
    };
    let all_done = loop {
        let step = (Instant::now() + Duration::from_secs(1)).min(deadline);
        if wait_for(&mut rx, &mut observed, step, &all).await {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        if let Ok(Some(status)) = operator.child.try_wait() {
            return Err(fail(
                &operator,
                format!("the operator exited with {status} during the run"),
            ));
        }
    };
    let finished = Instant::now();
    if !all_done {
        let missing: Vec<&String> = names.iter().filter(|a| !resolved(&observed, a)).collect();
        let no_driver = names
            .iter()
            .filter(|a| !observed.driver.contains_key(*a))
            .count();
        let not_submitted = names
            .iter()
            .filter(|a| !observed.submitted.contains_key(*a))
            .count();
        return Err(fail(
            &operator,
            format!(
                "after {:.1} s: {} of {n} apps incomplete ({no_driver} without a driver pod, \
                 {not_submitted} not SUBMITTED; first: {:?}); failures: {:?}",
                finished.duration_since(start).as_secs_f64(),
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                observed.failed.iter().take(5).collect::<Vec<_>>(),
            ),
        ));
    }
    let failures: Vec<(String, String, String)> = observed
        .failed
        .iter()
        .filter(|(a, _)| names.contains(a))
        .map(|(a, (state, error))| (a.clone(), state.clone(), error.clone()))
        .collect();
    let (cpu_after, settled) = operator.settle(SETTLE_TIMEOUT).await?;
    let peak_rss_kib = operator.peak_rss_kib()?;
    let peak_sockets = sockets.peak();
    let rss_split = sockets.peak_rss_split();
    let load = load_before.since(client, cluster).await?;

    // Exactly one driver pod (and one Service, one ConfigMap) per app, the warm-up included.
    let duplicates: Vec<(&String, &HashSet<String>)> = observed
        .driver_pods
        .iter()
        .filter(|(_, pods)| pods.len() > 1)
        .collect();
    if !duplicates.is_empty() {
        return Err(format!(
            "apps with more than one driver pod: {:?}",
            &duplicates[..duplicates.len().min(5)]
        )
        .into());
    }
    let lp = ListParams::default().labels(APP_NAME_LABEL);
    let count_pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list_metadata(&lp)
        .await?
        .items
        .len();
    let count_services = Api::<Service>::namespaced(client.clone(), &ns)
        .list_metadata(&lp)
        .await?
        .items
        .len();
    let count_config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .list_metadata(&lp)
        .await?
        .items
        .len();
    let counts = [count_pods, count_services, count_config_maps];
    // How the apps ended up, and what the operator told about them.
    let mut end_states: BTreeMap<String, usize> = BTreeMap::new();
    for app in Api::<SparkApplication>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?
    {
        let status = app.status.unwrap_or_default();
        let key = format!(
            "{:?} attempts={}",
            status.application_state.state, status.submission_attempts
        );
        *end_states.entry(key).or_default() += 1;
    }
    let mut event_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for event in Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?
    {
        let reason = event.reason.unwrap_or_default();
        *event_reasons.entry(reason).or_default() += event.count.unwrap_or(1).max(1) as usize;
    }
    // A failed attempt's driver may be gone: only a clean run must have all of each. Services:
    // the driver's and the UI's (`--enable-ui-service`, on by default); ConfigMaps: the
    // driver's and the Prometheus one.
    let expected = [n + 1, 2 * (n + 1), 2 * (n + 1)];
    if failures.is_empty() && counts != expected {
        return Err(format!(
            "expected {expected:?} pods, Services and ConfigMaps (N + warm-up), found {counts:?}"
        )
        .into());
    }

    let status = operator.stop();
    if let Some(registered) = registered {
        registered.delete().await?;
    }
    let log = LogSummary::read(&log_path, &ns);
    if let Some(status) = status.filter(|s| !s.success()) {
        eprintln!("submit_scale: note: the operator exited with {status} on SIGTERM");
    }

    let mut created_at = HashMap::with_capacity(n);
    let mut last_ack = start;
    for (name, _sent, ack) in created {
        last_ack = last_ack.max(ack);
        created_at.insert(name, ack);
    }
    // Where each app's time to its driver went, from the operator's line per driver created.
    let wall_us = |at: Instant| wall_start.as_microsecond() + (signed_ms(start, at) * 1e3) as i64;
    let mut stages = StageTimes::default();
    for app in &names {
        let (Some(ack), Some(seen), Some(pods)) = (
            created_at.get(app),
            observed.driver.get(app),
            observed.driver_pods.get(app),
        ) else {
            continue;
        };
        let Some(line) = pods.iter().find_map(|p| log.drivers.get(p)) else {
            continue;
        };
        let began = line.at_us - line.create_us - line.build_us - line.lane_us;
        stages.add([
            (began - wall_us(*ack)) as f64 / 1e3,
            line.lane_us as f64 / 1e3,
            line.build_us as f64 / 1e3,
            line.create_us as f64 / 1e3,
            (wall_us(*seen) - line.at_us) as f64 / 1e3,
        ]);
    }
    stages.sort();
    // Over the apps that got there (all of them unless some failed).
    let millis = |seen: &HashMap<String, Instant>| {
        let mut v: Vec<f64> = names
            .iter()
            .filter_map(|a| Some(signed_ms(*created_at.get(a)?, *seen.get(a)?)))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let last = |seen: &HashMap<String, Instant>| {
        names
            .iter()
            .filter_map(|a| seen.get(a))
            .max()
            .copied()
            .unwrap_or(start)
            .duration_since(start)
    };
    Ok(OperatorRun {
        to_last_driver: last(&observed.driver),
        to_last_submitted: last(&observed.submitted),
        creates: last_ack.duration_since(start),
        driver_ms: millis(&observed.driver),
        status_ms: millis(&observed.submitted),
        cpu_seconds: cpu_after.saturating_sub(cpu_before) as f64 / clock_ticks(),
        settled,
        peak_rss_kib,
        rss_split,
        peak_sockets,
        stages,
        load,
        log,
        log_path,
        watch_errors: observed.watch_errors.len(),
        watch_restarts: observed.starts.values().map(|n| n.saturating_sub(1)).sum(),
        counts,
        end_states,
        event_reasons,
        failures,
    })
}

/// Creates `objects` at most `concurrency` at a time (paced: app i is due i/rate seconds after
/// `start`): the name, send and answer time of each.
#[allow(clippy::type_complexity)]
fn spawn_creates(
    apps: Api<SparkApplication>,
    objects: Vec<SparkApplication>,
    rate: Option<f64>,
    concurrency: usize,
    start: Instant,
) -> tokio::task::JoinHandle<Result<Vec<(String, Instant, Instant)>, String>> {
    tokio::spawn(async move {
        let pp = PostParams::default();
        stream::iter(objects.into_iter().enumerate())
            .map(|(i, app)| {
                let (apps, pp) = (&apps, &pp);
                async move {
                    if let Some(r) = rate {
                        let due = start + Duration::from_secs_f64(i as f64 / r);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let name = app.name_any();
                    let sent = Instant::now();
                    match apps.create(pp, &app).await {
                        Ok(_) => Ok((name, sent, Instant::now())),
                        Err(e) => Err(format!("creating {name}: {e}")),
                    }
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<_>>()
            .await
    })
}

/// `to - from` in milliseconds, negative if `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(from.duration_since(to).as_secs_f64() * 1e3),
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's log.

#[derive(Default)]
struct LogSummary {
    lines: usize,
    by_level: BTreeMap<String, usize>,
    /// "reconcile failed" lines: status conflicts, and everything else.
    conflicts: usize,
    other_failures: usize,
    /// Warnings, errors and failed reconciles, grouped after replacing names and numbers.
    groups: Vec<(usize, String)>,
    unparsed: Vec<String>,
    /// The operator's "driver pod created" lines, by pod name.
    drivers: HashMap<String, DriverLine>,
}

/// One "driver pod created" line: its wall-clock time (µs since the epoch) and its stages (µs).
struct DriverLine {
    at_us: i64,
    lane_us: i64,
    build_us: i64,
    create_us: i64,
}

impl LogSummary {
    fn read(path: &Path, ns: &str) -> LogSummary {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut summary = LogSummary::default();
        let mut groups: HashMap<String, usize> = HashMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            summary.lines += 1;
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                if summary.unparsed.len() < 3 {
                    summary.unparsed.push(line.chars().take(200).collect());
                }
                continue;
            };
            let level = v["level"].as_str().unwrap_or("?").to_string();
            let message = v["message"].as_str().unwrap_or("");
            let error = v["error"].as_str().unwrap_or("");
            *summary.by_level.entry(level.clone()).or_default() += 1;
            if message == "driver pod created" {
                let at = v["timestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<Timestamp>().ok());
                let us = |k: &str| v[k].as_i64();
                if let (Some(at), Some(pod), Some(lane_us), Some(build_us), Some(create_us)) = (
                    at,
                    v["pod"].as_str(),
                    us("lane_us"),
                    us("build_us"),
                    us("create_us"),
                ) {
                    summary.drivers.insert(
                        pod.to_string(),
                        DriverLine {
                            at_us: at.as_microsecond(),
                            lane_us,
                            build_us,
                            create_us,
                        },
                    );
                }
            }
            let failed = message == "reconcile failed";
            if failed {
                if error.contains("changed meanwhile") {
                    summary.conflicts += 1;
                } else {
                    summary.other_failures += 1;
                }
            }
            if failed || level == "WARN" || level == "ERROR" {
                let key = normalise(&format!("{level} {message}: {error}"), ns);
                *groups.entry(key).or_default() += 1;
            }
        }
        summary.groups = groups.into_iter().map(|(k, c)| (c, k)).collect();
        summary.groups.sort_by(|a, b| b.cmp(a));
        summary
    }
}

/// Replaces the namespace and digit runs, so messages about different apps group together.
fn normalise(s: &str, ns: &str) -> String {
    let s = s.replace(ns, "<ns>");
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out.chars().take(240).collect()
}

// ---------------------------------------------------------------------------------------------
// The table.

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn rss_target(n: usize) -> Option<f64> {
    RSS_TARGETS
        .iter()
        .find(|(max, _)| n <= *max)
        .map(|(_, mib)| *mib)
}

fn print_table(results: &[Results], s: &Settings) {
    println!();
    println!(
        "submit_scale: SparkApplications through `spark-webhook serve --webhook=false` (default flags: \
         the UI Service on) on a local \
         kube-apiserver 1.20.2 (at most {} creates in flight; N@R/s: paced at R arrivals/s, \
         else a burst; N+wh: the burst with the webhook on and registered; times on this \
         process's clock)",
        s.concurrency
    );
    println!();
    println!(
        "{:>9} | {:<46} | {:>24} | {:>24} | verdict",
        "N", "figure", "value", "target"
    );
    println!("{}", "-".repeat(9 + 3 + 46 + 3 + 24 + 3 + 24 + 3 + 7));
    for r in results {
        let n = r.n;
        let op = &r.op;
        let label = r.label();
        let row = |figure: &str, value: String, target: &str, verdict: &str| {
            println!("{label:>9} | {figure:<46} | {value:>24} | {target:>24} | {verdict}");
        };
        let rate = n as f64 / op.to_last_driver.as_secs_f64();
        let (target, v) = match r.rate {
            None => (
                format!(">= {RATE_TARGET:.0}/s (1000 in 20 s)"),
                verdict(rate >= RATE_TARGET),
            ),
            Some(arrivals) => (format!("n/a: arrivals {arrivals:.0}/s"), "n/a"),
        };
        row(
            "apps/s (first create -> last driver pod)",
            format!("{rate:.1}/s ({:.2} s)", op.to_last_driver.as_secs_f64()),
            &target,
            v,
        );
        row(
            "  creates answered (first -> last)",
            format!("{:.2} s", op.creates.as_secs_f64()),
            "",
            "",
        );
        row(
            "  first create -> last SUBMITTED",
            format!("{:.2} s", op.to_last_submitted.as_secs_f64()),
            "",
            "",
        );
        let p50 = percentile(&op.driver_ms, 0.5);
        row(
            "app created -> driver pod, p50",
            format!("{p50:.1} ms"),
            &format!("< {P50_TARGET_MS:.0} ms"),
            verdict(p50 < P50_TARGET_MS),
        );
        let p99 = percentile(&op.driver_ms, 0.99);
        let (target, v) = match r.rate {
            Some(_) => (
                format!("p99 < {P99_TARGET_MS:.0} ms"),
                verdict(p99 < P99_TARGET_MS),
            ),
            None => (String::new(), ""),
        };
        row(
            "app created -> driver pod, p99 / max",
            format!("{p99:.1} / {:.1} ms", percentile(&op.driver_ms, 1.0)),
            &target,
            v,
        );
        if let Some(pf) = &r.paced_floor {
            let floor_p99 = percentile(&pf.driver_ms, 0.99);
            row(
                "paced floor: created -> driver pod, p50 / p99",
                format!("{:.1} / {floor_p99:.1} ms", percentile(&pf.driver_ms, 0.5)),
                "",
                "",
            );
            row(
                "  operator p99 - paced floor p99",
                format!("{:+.1} ms", p99 - floor_p99),
                "",
                "",
            );
            row(
                "  paced floor status lag, p50 / p99",
                format!(
                    "{:.1} / {:.1} ms",
                    percentile(&pf.status_ms, 0.5),
                    percentile(&pf.status_ms, 0.99)
                ),
                "",
                "",
            );
        }
        row(
            "status lag (created -> SUBMITTED), p50 / p99",
            format!(
                "{:.1} / {:.1} ms",
                percentile(&op.status_ms, 0.5),
                percentile(&op.status_ms, 0.99)
            ),
            "",
            "",
        );
        row(
            "operator CPU: total / per app",
            format!(
                "{:.2} s / {:.2} ms{}",
                op.cpu_seconds,
                op.cpu_seconds * 1e3 / n as f64,
                if op.settled { "" } else { " (busy)" }
            ),
            "",
            "",
        );
        let rss_mib = op.peak_rss_kib as f64 / 1024.0;
        let (target, v) = match rss_target(n) {
            Some(t) => (format!("< {t:.0} MiB"), verdict(rss_mib < t)),
            None => ("-".to_string(), "n/a"),
        };
        row(
            "operator peak RSS (VmHWM)",
            format!("{rss_mib:.1} MiB"),
            &target,
            v,
        );
        row(
            "  peak RssAnon / RssFile (sampled every 100 ms)",
            format!(
                "{:.1} / {:.1} MiB",
                op.rss_split.0 as f64 / 1024.0,
                op.rss_split.1 as f64 / 1024.0
            ),
            "",
            "",
        );
        let (l0, l1) = op.load.load_average;
        row(
            "machine load (1-min avg), run start / end",
            format!("{l0:.2} / {l1:.2}"),
            "",
            "",
        );
        let floor_s = r.floor.total.as_secs_f64();
        row(
            "objects floor: pod, Service, ConfigMap, UI svc",
            format!(
                "{:.0} obj/s ({floor_s:.2} s)",
                r.floor.objects as f64 / floor_s
            ),
            "",
            "",
        );
        let full_s = r.full_floor.total.as_secs_f64();
        row(
            "full floor: + app, status merge patch, Event",
            format!("{:.1} apps/s ({full_s:.2} s)", n as f64 / full_s),
            "",
            "",
        );
        row(
            "  machine load: floor / full floor (start-end)",
            format!(
                "{:.2}-{:.2} / {:.2}-{:.2}",
                r.floor.load.load_average.0,
                r.floor.load.load_average.1,
                r.full_floor.load.load_average.0,
                r.full_floor.load.load_average.1
            ),
            "",
            "",
        );
        let submitted_s = op.to_last_submitted.as_secs_f64();
        if r.rate.is_none() {
            let ratio = submitted_s / full_s;
            row(
                "last SUBMITTED / full floor",
                format!("{ratio:.2}x"),
                &format!("<= {FULL_FLOOR_RATIO_TARGET:.1}x"),
                verdict(ratio <= FULL_FLOOR_RATIO_TARGET),
            );
            row(
                "  last SUBMITTED / objects floor",
                format!("{:.2}x", submitted_s / floor_s),
                "",
                "",
            );
            row(
                "  last driver pod / objects floor",
                format!("{:.2}x", op.to_last_driver.as_secs_f64() / floor_s),
                "",
                "",
            );
        } else {
            row(
                "last SUBMITTED / full floor",
                "n/a (paced)".into(),
                "burst only",
                "n/a",
            );
        }
        row(
            "operator peak open sockets",
            format!("{}", op.peak_sockets),
            "",
            "",
        );
        row(
            "apiserver requests: floor / full / operator",
            format!(
                "{} / {} / {}",
                r.floor.load.total(),
                r.full_floor.load.total(),
                op.load.total()
            ),
            "",
            "",
        );
        row(
            "  answered 409 Conflict: floor / operator run",
            format!(
                "{} / {}",
                r.floor.load.with_code("409"),
                op.load.with_code("409")
            ),
            "",
            "",
        );
        row(
            "apiserver+etcd CPU: floor / full / operator",
            format!(
                "{:.1} s / {:.1} s / {:.1} s",
                r.floor.load.cpu_seconds, r.full_floor.load.cpu_seconds, op.load.cpu_seconds
            ),
            "",
            "",
        );
        row(
            "  operator / full floor apiserver+etcd CPU",
            format!(
                "{:.2}x",
                op.load.cpu_seconds / r.full_floor.load.cpu_seconds
            ),
            "",
            "",
        );
        // Seconds of requests served per second of wall time: how many requests the apiserver
        // had in flight on average (the operator's, the bench's creates and scrapes).
        row(
            "apiserver requests in flight: full / operator",
            format!(
                "{:.1} / {:.1}",
                r.full_floor.load.busy_seconds() / full_s,
                op.load.busy_seconds() / submitted_s
            ),
            "",
            "",
        );
        row(
            "apps FAILED / SUBMISSION_FAILED (must be 0)",
            format!("{}", op.failures.len()),
            "0",
            verdict(op.failures.is_empty()),
        );
        row(
            "failed reconciles logged: conflict / other",
            format!("{} / {}", op.log.conflicts, op.log.other_failures),
            "",
            "",
        );
    }
    println!();
    println!(
        "Latency: from the apiserver's answer to the app's create to this process's watch seeing \
         the driver pod (or the SUBMITTED status). Objects floor: the same pod, Service, ConfigMap \
         and UI Service created directly in another namespace, no operator running there; full \
         floor: also the app's create, its status merge patch and one Event."
    );
    for r in results {
        let log = &r.op.log;
        println!();
        println!(
            "N={}: operator log {} ({} lines; by level: {:?}); bench watches: {} errors, {} restarts; \
             pods/Services/ConfigMaps at the end: {:?}",
            r.label(),
            r.op.log_path.display(),
            log.lines,
            log.by_level,
            r.op.watch_errors,
            r.op.watch_restarts,
            r.op.counts,
        );
        for (count, line) in log.groups.iter().take(8) {
            println!("  {count:>6} x {line}");
        }
        let top = |load: &ApiLoad| {
            load.requests
                .iter()
                .take(14)
                .map(|(k, c)| format!("{k}: {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "N={}: apiserver requests (verb resource code: count), operator run: {}",
            r.label(),
            top(&r.op.load)
        );
        println!("N={}: ... floor: {}", r.label(), top(&r.floor.load));
        println!(
            "N={}: ... full floor: {}",
            r.label(),
            top(&r.full_floor.load)
        );
        let times = |load: &ApiLoad| {
            load.durations
                .iter()
                .take(12)
                .map(|(k, c, secs)| {
                    format!("{k}: {c} x {:.1} ms = {secs:.1} s", secs * 1e3 / *c as f64)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "N={}: apiserver time per request kind (VERB resource: count x mean = total), \
             operator run: {}",
            r.label(),
            times(&r.op.load)
        );
        println!(
            "N={}: ... full floor: {}",
            r.label(),
            times(&r.full_floor.load)
        );
        print_stages(r);
        println!(
            "  apps at the end: {:?}; events by reason: {:?}",
            r.op.end_states, r.op.event_reasons
        );
        for (app, state, error) in r.op.failures.iter().take(5) {
            println!("  failed: {app}: {state}: {error}");
        }
        for line in &log.unparsed {
            println!("  unparsed: {line}");
        }
    }
}

/// Where the time to the driver pod went, per stage, and what the apiserver and etcd took per
/// request kind (their own histograms), the operator beside the paced floor when there is one.
fn print_stages(r: &Results) {
    let op = &r.op;
    let pf = r.paced_floor.as_ref();
    let cell = |v: &[f64]| match v.is_empty() {
        true => "-".to_string(),
        false => format!("{:.1} / {:.1}", percentile(v, 0.5), percentile(v, 0.99)),
    };
    println!(
        "N={}: created -> driver pod seen, by stage (ms p50 / p99 over {} apps){}:",
        r.label(),
        op.stages.0[0].len(),
        if pf.is_some() {
            "; operator | paced floor"
        } else {
            ""
        }
    );
    for (i, stage) in STAGES.iter().enumerate() {
        let floor = pf.map(|f| format!(" | {:>15}", cell(&f.stages.0[i])));
        println!(
            "  {stage:<42} {:>15}{}",
            cell(&op.stages.0[i]),
            floor.unwrap_or_default()
        );
    }
    let Some(pf) = pf else { return };
    let p99 = |load: &ApiLoad, key: &str| match load.p99.get(key) {
        Some((count, p99, over, first)) => {
            format!("{count} x p99 {p99:.1} ms ({over} over {first:.0} ms)")
        }
        None => "-".to_string(),
    };
    println!(
        "N={}: the apiserver's and etcd's own histograms (apiserver_request_duration_seconds, \
         first bucket 50 ms; etcd_request_duration_seconds, first 5 ms; p99 interpolated as \
         histogram_quantile does), operator | paced floor:",
        r.label()
    );
    let mut keys: Vec<&String> = op
        .load
        .durations
        .iter()
        .filter(|(_, n, _)| *n >= 100)
        .map(|(k, _, _)| k)
        .collect();
    let mut etcd: Vec<(&String, u64)> = op
        .load
        .p99
        .iter()
        .filter(|(k, (n, ..))| k.starts_with("etcd ") && *n >= 100)
        .map(|(k, (n, ..))| (k, *n))
        .collect();
    etcd.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    keys.extend(etcd.into_iter().map(|(k, _)| k).take(10));
    let mean = |load: &ApiLoad, key: &str| {
        load.durations
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, n, secs)| format!("mean {:.1} ms, ", secs * 1e3 / *n as f64))
            .unwrap_or_default()
    };
    for key in keys {
        println!(
            "  {key:<40} {}{} | {}{}",
            mean(&op.load, key),
            p99(&op.load, key),
            mean(&pf.load, key),
            p99(&pf.load, key)
        );
    }
    println!(
        "  apiserver+etcd CPU: operator {:.1} s | paced floor {:.1} s; machine load (1-min) \
         {:.2}-{:.2} | {:.2}-{:.2}",
        op.load.cpu_seconds,
        pf.load.cpu_seconds,
        op.load.load_average.0,
        op.load.load_average.1,
        pf.load.load_average.0,
        pf.load.load_average.1
    );
}

// ---------------------------------------------------------------------------------------------
// BENCH_POD_CREATES: pod create latency with and without the webhook.

/// One pod-create run: every measured create's latency (ms, sorted) and the whole time.
struct Creates {
    latencies_ms: Vec<f64>,
    total: Duration,
}

impl Creates {
    fn per_second(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.total.as_secs_f64()
    }

    fn mean_ms(&self) -> f64 {
        self.latencies_ms.iter().sum::<f64>() / self.latencies_ms.len() as f64
    }
}

async fn pod_creates(cluster: &Cluster, n: usize, concurrency: usize) -> Result<(), BoxError> {
    let client = prepare(cluster).await?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("submit_scale: pod creates: {n} pods, {concurrency} in flight, without the webhook");
    let without = pod_create_run(&client, cluster, n, concurrency, false).await?;
    eprintln!("submit_scale: pod creates: with the webhook");
    let with = pod_create_run(&client, cluster, n, concurrency, true).await?;
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "pod create latency through kube-apiserver: {n} Spark 3.5.3 driver pods, {concurrency} creates in flight \
         (+{POD_WARM_UP} warm-up creates each, not counted); load average before {}, after {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_after
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    println!(
        "{:>16} | {:>8} {:>8} {:>8} | {:>9}",
        "", "p50 ms", "p99 ms", "mean ms", "creates/s"
    );
    println!("{}", "-".repeat(58));
    for (name, r) in [("without webhook", &without), ("with webhook", &with)] {
        println!(
            "{:>16} | {:>8.2} {:>8.2} {:>8.2} | {:>9.0}",
            name,
            percentile(&r.latencies_ms, 0.5),
            percentile(&r.latencies_ms, 0.99),
            r.mean_ms(),
            r.per_second(),
        );
    }
    println!(
        "{:>16} | {:>7.2}x {:>7.2}x {:>7.2}x | {:>8.2}x",
        "with / without",
        percentile(&with.latencies_ms, 0.5) / percentile(&without.latencies_ms, 0.5),
        percentile(&with.latencies_ms, 0.99) / percentile(&without.latencies_ms, 0.99),
        with.mean_ms() / without.mean_ms(),
        with.per_second() / without.per_second(),
    );
    Ok(())
}

/// Creates the plain app and `POD_WARM_UP + n` of its driver pods in a fresh namespace, with or
/// without `serve`'s webhook registered for it.
async fn pod_create_run(
    client: &Client,
    cluster: &Cluster,
    n: usize,
    concurrency: usize,
    webhook: bool,
) -> Result<Creates, BoxError> {
    let ns = create_namespace(
        client,
        if webhook {
            "pod-create-wh"
        } else {
            "pod-create"
        },
    )
    .await?;
    let mut app = common::plain_app();
    app.metadata.namespace = Some(ns.clone());
    app.metadata.uid = None;
    let pp = PostParams::default();
    let app = Api::<SparkApplication>::namespaced(client.clone(), &ns)
        .create(&pp, &app)
        .await?;
    let app_uid = app.metadata.uid.clone().unwrap_or_default();
    let template: Pod = serde_json::from_value(common::plain_driver_pod())?;
    let pod = |i: usize| {
        let mut pod = template.clone();
        pod.metadata.name = Some(format!("spark-pi-{i:05}-driver"));
        pod.metadata.namespace = Some(ns.clone());
        pod.metadata.uid = None;
        pod.metadata.creation_timestamp = None;
        pod.status = None;
        pod
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let patched = |p: &Pod| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == app_uid)
    };

    let log_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("submit_scale");
    std::fs::create_dir_all(&log_dir)?;
    let mut guard = None;
    if webhook {
        let registered = Registered::certs(client, &log_dir.join(format!("certs-{ns}")), &ns)?;
        let log = log_dir.join(format!("serve-pod-creates-{ns}.log"));
        let mut operator =
            Operator::start(&cluster.kubeconfig, &ns, &log, Some(&registered), false)?;
        operator.wait_ready(READY_TIMEOUT)?;
        // The configuration is live once a pod comes back patched.
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut i = 0;
        loop {
            let created = pods.create(&pp, &pod(n + POD_WARM_UP + i)).await?;
            if patched(&created) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pods not patched {READY_TIMEOUT:?} after the webhook was ready:\n{}",
                    operator.log_tail(20)
                )
                .into());
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        guard = Some((operator, registered));
    }
    let create_all = |range: std::ops::Range<usize>| {
        let (pods, pp, pod, patched) = (&pods, &pp, &pod, &patched);
        stream::iter(range)
            .map(move |i| async move {
                let sent = Instant::now();
                let created = pods.create(pp, &pod(i)).await?;
                let ms = sent.elapsed().as_secs_f64() * 1000.0;
                if webhook && !patched(&created) {
                    return Err::<f64, BoxError>(
                        format!(
                            "pod {} was created without the webhook's patch",
                            created.name_any()
                        )
                        .into(),
                    );
                }
                Ok(ms)
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<f64>>()
    };
    create_all(n..n + POD_WARM_UP).await?;
    let start = Instant::now();
    let mut latencies_ms = create_all(0..n).await?;
    let total = start.elapsed();
    latencies_ms.sort_by(f64::total_cmp);
    if let Some((mut operator, registered)) = guard {
        registered.delete().await?;
        operator.stop();
    }
    Ok(Creates {
        latencies_ms,
        total,
    })
}

// ---------------------------------------------------------------------------------------------
// Processes: the operator, stopped when its guard is dropped (the control plane: common::Cluster).

/// The webhook's certificates and the name of its configurations, for a run with it on.
struct Registered {
    client: Client,
    cert_dir: PathBuf,
    config_name: String,
}

impl Registered {
    /// Certificates from `spark-webhook certs` (127.0.0.1 is always among their addresses).
    fn certs(client: &Client, cert_dir: &Path, ns: &str) -> Result<Registered, BoxError> {
        let out = Command::new(env!("CARGO_BIN_EXE_spark-webhook"))
            .arg("certs")
            .arg("--dir")
            .arg(cert_dir)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "spark-webhook certs: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(Registered {
            client: client.clone(),
            cert_dir: cert_dir.to_path_buf(),
            config_name: format!("submit-scale-{ns}"),
        })
    }

    /// Deletes the configurations `serve` registered, so no later run's pods are sent to a
    /// webhook that is gone.
    async fn delete(self) -> Result<(), BoxError> {
        use k8s_openapi::api::admissionregistration::v1::{
            MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
        };
        let dp = kube::api::DeleteParams::default();
        let name = &self.config_name;
        gone(
            Api::<MutatingWebhookConfiguration>::all(self.client.clone())
                .delete(name, &dp)
                .await
                .map(|_| ()),
        )?;
        gone(
            Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
                .delete(name, &dp)
                .await
                .map(|_| ()),
        )
    }
}

/// A delete's result, with "already gone" as success.
fn gone(r: kube::Result<()>) -> Result<(), BoxError> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        r => Ok(r?),
    }
}

/// `spark-webhook serve` as a child: the reconciler, and the webhook for a [`Registered`] run.
struct Operator {
    child: Child,
    /// The operator's own process: the child, or under `BENCH_OPERATOR_WRAP` the wrapper's
    /// descendant running the binary (found once it is ready).
    pid: u32,
    /// Sends SIGTERM to the operator should this process die without dropping the guard.
    watchdog: Option<Child>,
    admin_port: u16,
    log: PathBuf,
    stopped: bool,
}

impl Operator {
    fn start(
        kubeconfig: &Path,
        ns: &str,
        log: &Path,
        webhook: Option<&Registered>,
        controller: bool,
    ) -> Result<Operator, BoxError> {
        let free_port = || -> std::io::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let admin_port = free_port()?;
        let mut serve: Vec<String> = vec![
            "serve".into(),
            "--leader-election=false".into(),
            format!("--controller={controller}"),
        ];
        match webhook {
            None => serve.push("--webhook=false".into()),
            Some(r) => {
                let port = free_port()?;
                serve.extend([
                    "--cert-dir".into(),
                    r.cert_dir.display().to_string(),
                    "--webhook-addr".into(),
                    format!("127.0.0.1:{port}"),
                    "--register-webhook=true".into(),
                    "--webhook-url".into(),
                    format!("https://127.0.0.1:{port}"),
                    "--webhook-config-name".into(),
                    r.config_name.clone(),
                ]);
            }
        }
        let wrap: Vec<String> = std::env::var(OPERATOR_WRAP_ENV)
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        let binary = env!("CARGO_BIN_EXE_spark-webhook");
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .env("KUBECONFIG", kubeconfig)
            // As manifests/operator/deployment.yaml runs it (freed memory returned at once, no
            // transparent huge pages).
            .env("MIMALLOC_PURGE_DELAY", "0")
            .env("MIMALLOC_ALLOW_THP", "0")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("SPARK_WEBHOOK_LOG")
            .args([
                "--log",
                "info,spark_webhook::reconciler=debug",
                "--log-format",
                "json",
            ])
            .args(&serve)
            .args(["--namespaces", ns])
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let pid = child.id();
        let mut operator = Operator {
            child,
            pid,
            watchdog: None,
            admin_port,
            log: log.to_path_buf(),
            stopped: false,
        };
        operator.watchdog = Command::new("sh")
            .args([
                "-c",
                r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -TERM "$2" 2>/dev/null"#,
                "sh",
                &std::process::id().to_string(),
                &pid.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Ok(operator)
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    /// Under a wrapper, the descendant of the child whose executable is the operator's binary.
    fn find_wrapped(&self) -> Option<u32> {
        let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_spark-webhook")).ok()?;
        let mut parents = vec![self.child.id()];
        while let Some(parent) = parents.pop() {
            for entry in std::fs::read_dir("/proc").ok()?.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid != Some(parent) {
                    continue;
                }
                if std::fs::read_link(entry.path().join("exe")).ok().as_ref() == Some(&binary) {
                    return Some(pid);
                }
                parents.push(pid);
            }
        }
        None
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), BoxError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "spark-webhook serve exited with {status}:\n{}",
                    self.log_tail(20)
                )
                .into());
            }
            if self.admin_get("/readyz") == Some(200) {
                if self.pid == self.child.id()
                    && std::env::var_os(OPERATOR_WRAP_ENV).is_some_and(|w| !w.is_empty())
                {
                    self.pid = self
                        .find_wrapped()
                        .ok_or("the operator's process under the wrapper not found")?;
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(
                    format!("serve not ready in {timeout:?}:\n{}", self.log_tail(20)).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Status code of a GET on the admin port.
    fn admin_get(&self, path: &str) -> Option<u16> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split_whitespace().nth(1)?.parse().ok()
    }

    fn cpu_ticks(&self) -> Result<u64, BoxError> {
        cpu_ticks(self.pid())
    }

    /// Waits until the operator used no CPU for a second (at most `timeout`); the CPU ticks
    /// then, and whether it did become idle.
    async fn settle(&self, timeout: Duration) -> Result<(u64, bool), BoxError> {
        settle(self.pid(), timeout).await
    }

    fn peak_rss_kib(&self) -> Result<u64, BoxError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .ok_or("no VmHWM in /proc/PID/status")?;
        Ok(line.trim().trim_end_matches("kB").trim().parse()?)
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT; the exit status.
    fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if self.stopped {
            return None;
        }
        self.stopped = true;
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        wait_bounded(&mut self.child, STOP_TIMEOUT)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `pid` used no CPU for a second (at most `timeout`); its CPU ticks then, and
/// whether it did become idle.
async fn settle(pid: u32, timeout: Duration) -> Result<(u64, bool), BoxError> {
    let deadline = Instant::now() + timeout;
    let mut last = cpu_ticks(pid)?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_ticks(pid)?;
        // One tick of slack: timers and the admin server.
        if now <= last + 1 {
            return Ok((now, true));
        }
        if Instant::now() > deadline {
            return Ok((now, false));
        }
        last = now;
    }
}

impl Cluster {
    /// The pids of kube-apiserver and etcd.
    fn pids(&self) -> Vec<u32> {
        ["apiserver.pid", "etcd.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }

    fn cpu_ticks(&self) -> Result<u64, BoxError> {
        self.pids().into_iter().map(cpu_ticks).sum()
    }
}

/// The control plane's counters at the start of a phase.
struct LoadMark {
    ticks: u64,
    scrape: Scrape,
    load_average: f64,
}

impl LoadMark {
    async fn take(client: &Client, cluster: &Cluster) -> Result<LoadMark, BoxError> {
        let scrape = apiserver_requests(client).await?;
        Ok(LoadMark {
            ticks: cluster.cpu_ticks()?,
            scrape,
            load_average: load_average(),
        })
    }

    /// What the control plane did since the mark (the scrape itself included).
    async fn since(self, client: &Client, cluster: &Cluster) -> Result<ApiLoad, BoxError> {
        let ticks = cluster.cpu_ticks()?;
        let after = apiserver_requests(client).await?;
        let before = self.scrape;
        let mut durations: Vec<(String, u64, f64)> = after
            .durations
            .into_iter()
            .map(|(k, (sum, count))| {
                let (sum0, count0) = before.durations.get(&k).copied().unwrap_or((0.0, 0.0));
                let n = (count - count0).round().max(0.0) as u64;
                (k, n, (sum - sum0).max(0.0))
            })
            .filter(|(_, n, _)| *n > 0)
            .collect();
        durations.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        let mut requests: Vec<(String, u64)> = after
            .totals
            .into_iter()
            .map(|(k, v)| {
                let d = v - before.totals.get(&k).copied().unwrap_or(0.0);
                (k, d.round().max(0.0) as u64)
            })
            .filter(|(_, d)| *d > 0)
            .collect();
        requests.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let p99 = after
            .buckets
            .into_iter()
            .filter_map(|(k, buckets)| {
                let old = before.buckets.get(&k);
                let delta: BTreeMap<u64, f64> = buckets
                    .into_iter()
                    .map(|(le, c)| {
                        let c0 = old.and_then(|o| o.get(&le)).copied().unwrap_or(0.0);
                        (le, (c - c0).max(0.0))
                    })
                    .collect();
                Some((k, histogram_p99(&delta)?))
            })
            .collect();
        Ok(ApiLoad {
            cpu_seconds: ticks.saturating_sub(self.ticks) as f64 / clock_ticks(),
            requests,
            durations,
            p99,
            load_average: (self.load_average, load_average()),
        })
    }
}

/// The machine's 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// What one scrape of the apiserver's /metrics gave.
#[derive(Default)]
struct Scrape {
    /// `apiserver_request_total` summed by "VERB resource code".
    totals: HashMap<String, f64>,
    /// `apiserver_request_duration_seconds` (sum, count) by "VERB resource".
    durations: HashMap<String, (f64, f64)>,
    /// Cumulative histogram buckets (upper bound in µs, u64::MAX for +Inf -> count): of
    /// `apiserver_request_duration_seconds` by "VERB resource", and of
    /// `etcd_request_duration_seconds` by "etcd operation type".
    buckets: HashMap<String, BTreeMap<u64, f64>>,
}

/// From the apiserver's /metrics: `apiserver_request_total` summed by "VERB resource code", and
/// `apiserver_request_duration_seconds` (sum, count, buckets) by "VERB resource", watches and
/// proxied connections excluded (they last as long as they are open), and the buckets of
/// `etcd_request_duration_seconds`. Resources carry their subresource, e.g.
/// `sparkapplications/status`.
async fn apiserver_requests(client: &Client) -> Result<Scrape, BoxError> {
    let request = axum::http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut scrape = Scrape::default();
    for line in text.lines() {
        let (metric, rest) = match line.split_once('{') {
            Some((
                m @ ("apiserver_request_total"
                | "apiserver_request_duration_seconds_sum"
                | "apiserver_request_duration_seconds_count"
                | "apiserver_request_duration_seconds_bucket"
                | "etcd_request_duration_seconds_bucket"),
                rest,
            )) => (m, rest),
            _ => continue,
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let labels: HashMap<&str, &str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let get = |k: &str| labels.get(k).copied().unwrap_or("");
        let le = || match get("le") {
            "+Inf" => Some(u64::MAX),
            le => le.parse::<f64>().ok().map(|s| (s * 1e6).round() as u64),
        };
        if metric == "etcd_request_duration_seconds_bucket" {
            if let Some(le) = le() {
                let key = format!("etcd {} {}", get("operation"), get("type"));
                *scrape
                    .buckets
                    .entry(key)
                    .or_default()
                    .entry(le)
                    .or_default() += value;
            }
            continue;
        }
        let resource = match get("subresource") {
            "" => get("resource").to_string(),
            sub => format!("{}/{sub}", get("resource")),
        };
        let verb = get("verb");
        match metric {
            "apiserver_request_total" => {
                *scrape
                    .totals
                    .entry(format!("{verb} {resource} {}", get("code")))
                    .or_insert(0.0) += value;
            }
            _ if matches!(verb, "WATCH" | "WATCHLIST" | "CONNECT") => {}
            "apiserver_request_duration_seconds_bucket" => {
                if let Some(le) = le() {
                    let key = format!("{verb} {resource}");
                    *scrape
                        .buckets
                        .entry(key)
                        .or_default()
                        .entry(le)
                        .or_default() += value;
                }
            }
            m => {
                let entry = scrape
                    .durations
                    .entry(format!("{verb} {resource}"))
                    .or_default();
                if m.ends_with("_sum") {
                    entry.0 += value;
                } else {
                    entry.1 += value;
                }
            }
        }
    }
    Ok(scrape)
}

/// The p99 of a cumulative histogram (bound in µs -> count) as Prometheus'
/// `histogram_quantile` estimates it: linear within the bucket holding it (from 0 in the
/// first); in the +Inf bucket, the largest finite bound. With the requests counted and how
/// many took longer than the first bound: (count, p99 ms, over the first bound, first bound ms).
fn histogram_p99(buckets: &BTreeMap<u64, f64>) -> Option<(u64, f64, u64, f64)> {
    let count = *buckets.get(&u64::MAX)?;
    if count < 1.0 {
        return None;
    }
    let (&first, &in_first) = buckets.iter().next()?;
    let rank = 0.99 * count;
    let mut lower = (0u64, 0.0f64);
    for (&bound, &cumulative) in buckets {
        if cumulative >= rank {
            let p99_us = if bound == u64::MAX {
                lower.0 as f64
            } else {
                let share = (rank - lower.1) / (cumulative - lower.1).max(1e-9);
                lower.0 as f64 + (bound - lower.0) as f64 * share
            };
            return Some((
                count.round() as u64,
                p99_us / 1e3,
                (count - in_first).round().max(0.0) as u64,
                first as f64 / 1e3,
            ));
        }
        lower = (bound, cumulative);
    }
    None
}

/// Samples, every 100 ms until dropped, how many sockets a process has open and its resident
/// memory split as the kernel counts it (`RssAnon`: its heap and stacks; `RssFile`: the pages
/// of its binary and libraries mapped in), keeping the peak of each.
struct SocketSampler {
    /// Peak sockets, RssAnon kiB, RssFile kiB.
    peaks: std::sync::Arc<[std::sync::atomic::AtomicUsize; 3]>,
    task: tokio::task::JoinHandle<()>,
}

impl SocketSampler {
    fn start(pid: u32) -> SocketSampler {
        let peaks: std::sync::Arc<[std::sync::atomic::AtomicUsize; 3]> = Default::default();
        let max = peaks.clone();
        let task = tokio::spawn(async move {
            let dir = PathBuf::from(format!("/proc/{pid}/fd"));
            let status = PathBuf::from(format!("/proc/{pid}/status"));
            loop {
                let sockets = std::fs::read_dir(&dir)
                    .map(|entries| {
                        entries
                            .filter_map(Result::ok)
                            .filter_map(|e| std::fs::read_link(e.path()).ok())
                            .filter(|target| target.to_string_lossy().starts_with("socket:"))
                            .count()
                    })
                    .unwrap_or(0);
                let text = std::fs::read_to_string(&status).unwrap_or_default();
                let kib = |field: &str| -> usize {
                    text.lines()
                        .find_map(|l| l.strip_prefix(field))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        .unwrap_or(0)
                };
                let now = [sockets, kib("RssAnon:"), kib("RssFile:")];
                for (peak, value) in max.iter().zip(now) {
                    peak.fetch_max(value, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        SocketSampler { peaks, task }
    }

    fn peak(&self) -> usize {
        self.peaks[0].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Peak RssAnon and RssFile (kiB) sampled.
    fn peak_rss_split(&self) -> (usize, usize) {
        let get = |i: usize| self.peaks[i].load(std::sync::atomic::Ordering::Relaxed);
        (get(1), get(2))
    }
}

impl Drop for SocketSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
