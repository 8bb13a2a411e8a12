//! TLS load run of the pod webhook against the parse-only floor, printed as tables.
//!
//! HTTPS servers run in a child process (this binary re-executed with
//! `SPARK_WEBHOOK_BENCH_SERVER=<dir>`, so servers and load generator never share a tokio
//! runtime), all through `server::serve_tls` with the same rustls config and certificates
//! generated into a temporary directory. For each of two reviews:
//!
//! - **no-op**: a router answering every POST with a fixed, pre-serialised AdmissionReview (the
//!   webhook's own answer to the review, so all three send the same bytes back) without reading
//!   the body. What TLS, HTTP and our accept loop cost on their own: a reference line;
//! - **parse-only**: the no-op plus reading the review into a `serde_json::Value` (and finding
//!   its uid) before sending the same fixed answer: the least any webhook that reads the review
//!   does, and the floor the targets are measured against;
//! - **webhook**: the real `webhook::router` with both SparkApplications in its cache.
//!
//! The reviews: the heavy one (an ~8 KiB driver-pod AdmissionReview against the bench app with
//! nearly every setting) and a plain one (a Spark 3.5.3 driver pod of kubeflow's spark-pi
//! example, `common::plain_driver_review`). The load generator (this process) sends each over C
//! HTTP/1.1 keep-alive connections (C = 1, 16, 64), each sending requests back to back for
//! `BENCH_SECONDS` (default 5) after a 1 s warm-up, and records every request's latency and the
//! CPU time it and the server process used (printed per review under each table). Every
//! answer must be a 200 carrying a JSON patch; any failure is reported and makes the run exit
//! non-zero. The targets (webhook throughput >= 0.8x parse-only, p99 <= 1.3x parse-only) are
//! figures for the team: a MISS is printed, not fatal. The generator's share of the CPU both
//! used says whether it was the bottleneck: client and servers share the machine's cores, so
//! when the generator takes half of them the throughputs measure it as much as the servers (the
//! ratios still compare like with like).
//!
//! `BENCH_SLOW_CLIENTS=N` adds a run after the tables: the webhook's p99 at 16 connections
//! unloaded, then while N clients send a review body a byte a second (the issue's hostile
//! client), how soon those are cut off (the body timeout), and the server process's RSS.
//!
//! Only 127.0.0.1 is used; the run stops by itself (the server exits when its stdin closes,
//! and after 15 minutes in any case). Absolute numbers depend on the machine and its load; the
//! ratios are what this is for.

mod common;

/// The allocator the `spark-webhook` binary ships with, for floor and webhook alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use spark_webhook::certs::files;
use spark_webhook::certs::issue::CertOptions;
use spark_webhook::certs::tls::{ReloadingCertResolver, server_config};
use spark_webhook::server::serve_tls;
use spark_webhook::webhook::{self, MAX_BODY_BYTES, MUTATE_POD_PATH};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Set (to the certificate directory) in the re-executed server process.
const SERVER_ENV: &str = "SPARK_WEBHOOK_BENCH_SERVER";
/// Measured seconds per (server, concurrency) run.
const SECONDS_ENV: &str = "BENCH_SECONDS";
/// Clients trickling a review body a byte a second after the table (none unless set).
const SLOW_ENV: &str = "BENCH_SLOW_CLIENTS";
const DEFAULT_SECONDS: u64 = 5;
const WARM_UP: Duration = Duration::from_secs(1);
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// The name the apiserver calls the webhook by (in the generated certificate's SANs).
const DNS_NAME: &str = "spark-webhook.spark-operator.svc";
/// The reviews, by the name of their file in the certificate directory.
const REVIEW_FILES: [&str; 2] = ["review-heavy.json", "review-plain.json"];
/// Targets: webhook throughput at least this fraction of parse-only's...
const THROUGHPUT_TARGET: f64 = 0.8;
/// ...and webhook p99 at most this multiple of parse-only's.
const P99_TARGET: f64 = 1.3;
/// The server process exits after this long even if nobody tells it to.
const SERVER_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How long the server may take to start and report its ports.
const SERVER_START: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    if let Some(dir) = std::env::var_os(SERVER_ENV) {
        return server::main(PathBuf::from(dir));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // A test harness (`cargo test --all-targets`, nextest) lists and runs every target: this
    // one holds no tests, and the load run only happens under `cargo bench`.
    if args.iter().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("webhook_load: a load run, not a test; run it with `make bench`");
        return ExitCode::SUCCESS;
    }
    let seconds = match std::env::var(SECONDS_ENV) {
        Err(_) => DEFAULT_SECONDS,
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(n) if (1..=600).contains(&n) => n,
            _ => {
                eprintln!(
                    "webhook_load: {SECONDS_ENV}={s:?} is not a whole number of seconds in 1..=600"
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(client::run(Duration::from_secs(seconds))) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!();
            eprintln!("webhook_load: FAILED: {failures} request(s) failed (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("webhook_load: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `answer` is an allowed AdmissionReview carrying a JSON patch (a byte search, so the
/// check costs the load generator next to nothing).
fn has_patch(answer: &[u8]) -> bool {
    let contains = |needle: &[u8]| answer.windows(needle.len()).any(|w| w == needle);
    contains(br#""allowed":true"#) && contains(br#""patchType":"JSONPatch""#)
}

mod server {
    use super::*;

    /// The child process: serve floor and webhook until stdin closes.
    pub fn main(dir: PathBuf) -> ExitCode {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        match rt.block_on(serve(&dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("webhook_load server: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn serve(dir: &Path) -> Result<(), BoxError> {
        let resolver = ReloadingCertResolver::load(dir.join("tls.crt"), dir.join("tls.key"))?;
        let tls = server_config(Arc::new(resolver))?;
        let state = common::webhook_state();
        // Per review, a no-op and a parse-only server; then the webhook, for both.
        let mut routers = Vec::new();
        for file in REVIEW_FILES {
            let review = Bytes::from(std::fs::read(dir.join(file))?);
            let answer = webhook_answer(&state, review).await?;
            routers.push(no_op(answer.clone()));
            routers.push(parse_only(answer));
        }
        routers.push(webhook::router(state));

        let shutdown = CancellationToken::new();
        let drain = Duration::from_secs(1);
        let mut ports = Vec::new();
        let mut servers = Vec::new();
        for router in routers {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            ports.push(listener.local_addr()?.port().to_string());
            servers.push(tokio::spawn(serve_tls(
                listener,
                Arc::clone(&tls),
                router,
                shutdown.clone(),
                drain,
            )));
        }

        // Stop when the load generator closes our stdin (or dies).
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = closed_tx.send(());
        });
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "READY {}", ports.join(" "))?;
            out.flush()?;
        }
        tokio::select! {
            _ = closed_rx => {}
            _ = tokio::time::sleep(SERVER_LIFETIME) => {
                eprintln!("webhook_load server: no word from the load generator in {SERVER_LIFETIME:?}; stopping");
            }
        }
        shutdown.cancel();
        for server in servers {
            let _ = tokio::time::timeout(drain * 2, server).await;
        }
        Ok(())
    }
}

/// The webhook's answer to `review`, which must carry a patch.
async fn webhook_answer(state: &webhook::WebhookState, review: Bytes) -> Result<Bytes, BoxError> {
    let resp = webhook::router(state.clone())
        .oneshot(
            Request::post(common::REVIEW_URI)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(review))?,
        )
        .await?;
    let status = resp.status();
    let answer = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
    if status != StatusCode::OK || !has_patch(&answer) {
        return Err(format!(
            "the webhook does not patch the bench review ({status}): {}",
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    Ok(answer)
}

/// Answers every POST with `answer`, without reading the body.
fn no_op(answer: Bytes) -> Router {
    Router::new()
        .route(
            MUTATE_POD_PATH,
            post(move |_body: Bytes| {
                let answer = answer.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], answer) }
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Reads the review into a `serde_json::Value` and checks it has a uid, then answers `answer`.
fn parse_only(answer: Bytes) -> Router {
    Router::new()
        .route(
            MUTATE_POD_PATH,
            post(move |body: Bytes| {
                let answer = answer.clone();
                async move {
                    let review = serde_json::from_slice::<serde_json::Value>(&body);
                    match review.ok().filter(|r| r["request"]["uid"].is_string()) {
                        Some(_) => (
                            StatusCode::OK,
                            [(header::CONTENT_TYPE, "application/json")],
                            answer,
                        ),
                        None => (
                            StatusCode::BAD_REQUEST,
                            [(header::CONTENT_TYPE, "text/plain")],
                            Bytes::from_static(b"not an AdmissionReview"),
                        ),
                    }
                }
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

mod client {
    use super::*;

    /// One (server, concurrency) run.
    struct Run {
        /// Requests sent after the warm-up and answered correctly.
        ok: u64,
        /// From the end of the warm-up to the last connection's last answer.
        elapsed: Duration,
        /// Latencies of the `ok` requests, sorted, in microseconds.
        latencies_us: Vec<u64>,
        failures: u64,
        first_failure: Option<String>,
        /// CPU seconds this process (the load generator) and the server used, warm-up included.
        client_cpu: f64,
        server_cpu: f64,
        /// Wall time of the whole run, warm-up included.
        wall: Duration,
    }

    impl Run {
        /// The load generator's share of the CPU the run used.
        /// Generator + server used (nearly) all cores.
        fn conns_saturated(&self, cores: f64) -> bool {
            self.cores_busy() >= 0.9 * cores
        }

        fn generator_share(&self) -> f64 {
            self.client_cpu / (self.client_cpu + self.server_cpu)
        }

        /// Cores kept busy by generator and server together.
        fn cores_busy(&self) -> f64 {
            (self.client_cpu + self.server_cpu) / self.wall.as_secs_f64()
        }

        fn per_second(&self) -> f64 {
            self.ok as f64 / self.elapsed.as_secs_f64()
        }

        /// The server's CPU per review, in microseconds: its CPU over the run, in the share of
        /// the run's wall time that was measured, over the reviews answered then.
        fn server_us_per_review(&self) -> f64 {
            let measured = self.elapsed.as_secs_f64() / self.wall.as_secs_f64();
            self.server_cpu * measured / self.ok as f64 * 1e6
        }

        /// Nearest-rank percentile, in milliseconds.
        fn percentile_ms(&self, q: f64) -> f64 {
            let n = self.latencies_us.len();
            if n == 0 {
                return f64::NAN;
            }
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            self.latencies_us[rank - 1] as f64 / 1000.0
        }
    }

    #[derive(Default)]
    struct ConnResult {
        latencies_us: Vec<u64>,
        failures: u64,
        first_failure: Option<String>,
        finished: Option<Instant>,
    }

    impl ConnResult {
        fn fail(&mut self, what: String) {
            self.failures += 1;
            self.first_failure.get_or_insert(what);
        }
    }

    /// One review and the servers that answer it.
    struct Case {
        title: String,
        review: Bytes,
        no_op: SocketAddr,
        parse_only: SocketAddr,
    }

    /// One concurrency of one case: no-op, parse-only and webhook.
    struct Row {
        conns: usize,
        no_op: Run,
        parse_only: Run,
        webhook: Run,
    }

    /// Runs the whole comparison; returns the number of failed requests.
    pub async fn run(measure: Duration) -> Result<u64, BoxError> {
        let dir = tempfile::tempdir()?;
        let report = files::generate(&CertOptions::new(dir.path()))?;
        let (heavy, filler_vars) = common::driver_review_8k();
        let reviews = [
            Bytes::from(heavy),
            Bytes::from(common::plain_driver_review()),
        ];
        for (file, review) in REVIEW_FILES.iter().zip(&reviews) {
            std::fs::write(dir.path().join(file), review)?;
        }

        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .env(SERVER_ENV, dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let server_pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout from the server")?;
        let mut line = String::new();
        tokio::time::timeout(SERVER_START, BufReader::new(stdout).read_line(&mut line))
            .await
            .map_err(|_| "the server process did not start in time")??;
        let ports: Vec<u16> = line
            .strip_prefix("READY ")
            .ok_or_else(|| format!("unexpected line from the server process: {line:?}"))?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let [heavy_no_op, heavy_parse, plain_no_op, plain_parse, webhook] = ports[..] else {
            return Err(format!("unexpected line from the server process: {line:?}").into());
        };
        let webhook = addr(webhook);
        let tls = connector(&report.ca_cert_path)?;

        let [heavy, plain] = reviews;
        let mut cases = Vec::new();
        let mut negotiated = String::new();
        for (review, no_op, parse_only, what) in [
            (
                heavy,
                heavy_no_op,
                heavy_parse,
                format!(
                    "heavy: ~8 KiB driver pod, bench app with nearly every setting, {filler_vars} filler env vars"
                ),
            ),
            (
                plain,
                plain_no_op,
                plain_parse,
                "plain: Spark 3.5.3 driver pod of kubeflow's spark-pi example".to_string(),
            ),
        ] {
            // One checked request each, for the header.
            let (answer, tls_used) = probe(webhook, &tls, &review).await?;
            probe(addr(no_op), &tls, &review).await?;
            probe(addr(parse_only), &tls, &review).await?;
            negotiated = tls_used;
            cases.push(Case {
                title: format!(
                    "{what}: review {} bytes, answer {} bytes ({} patch operations)",
                    review.len(),
                    answer.len(),
                    patch_ops(&answer).map_or("?".to_string(), |n| n.to_string()),
                ),
                review,
                no_op: addr(no_op),
                parse_only: addr(parse_only),
            });
        }
        println!();
        println!("webhook_load: POST {} over TLS", common::REVIEW_URI);
        println!("  {negotiated}, HTTP/1.1 keep-alive, 127.0.0.1, server in a separate process");
        println!(
            "  per run: {} s warm-up + {} s measured, connections send back to back; {} client / {} server worker threads",
            WARM_UP.as_secs(),
            measure.as_secs(),
            tokio::runtime::Handle::current().metrics().num_workers(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        println!("  machine load before: {}", load_average());

        let mut tables = Vec::new();
        let mut failures = 0;
        for case in &cases {
            let mut rows = Vec::new();
            for conns in CONCURRENCY {
                let no_op =
                    load_measured(case.no_op, &tls, &case.review, conns, measure, server_pid).await;
                let parse_only = load_measured(
                    case.parse_only,
                    &tls,
                    &case.review,
                    conns,
                    measure,
                    server_pid,
                )
                .await;
                let webhook =
                    load_measured(webhook, &tls, &case.review, conns, measure, server_pid).await;
                for (name, run) in [
                    ("no-op", &no_op),
                    ("parse-only", &parse_only),
                    ("webhook", &webhook),
                ] {
                    if run.failures > 0 {
                        eprintln!(
                            "webhook_load: FAILURES: {name}, {conns} connection(s): {} failed request(s); first: {}",
                            run.failures,
                            run.first_failure.as_deref().unwrap_or("?")
                        );
                    }
                    failures += run.failures;
                }
                rows.push(Row {
                    conns,
                    no_op,
                    parse_only,
                    webhook,
                });
            }
            tables.push(rows);
        }
        for (case, rows) in cases.iter().zip(&tables) {
            print_table(&case.title, rows);
        }
        print_generator(&tables);
        println!("  machine load after: {}", load_average());
        if let Some(slow) = slow_clients_wanted()? {
            let review = &cases[0].review;
            failures += slow_phase(webhook, &tls, review, slow, measure, server_pid).await?;
        }
        drop(child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            eprintln!("webhook_load: the server process did not stop; killing it");
            child.kill().await?;
        }
        Ok(failures)
    }

    /// The number of operations of the JSON patch in an AdmissionReview answer.
    fn patch_ops(answer: &[u8]) -> Option<usize> {
        use base64::Engine as _;
        let v: serde_json::Value = serde_json::from_slice(answer).ok()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["response"]["patch"].as_str()?)
            .ok()?;
        let patch: Vec<serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
        Some(patch.len())
    }

    /// `/proc/loadavg`'s three load averages.
    fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into())
    }

    /// CPU seconds (user + system) a process has used so far (`self` for this one).
    fn cpu_seconds(pid: &str) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return f64::NAN;
        };
        // The fields after the command name (which is in parentheses and may hold spaces).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return f64::NAN;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        match (ticks(11), ticks(12)) {
            (Some(u), Some(s)) => (u + s) / CLOCK_TICKS,
            _ => f64::NAN,
        }
    }

    /// USER_HZ: Linux reports process times in hundredths of a second on every architecture.
    const CLOCK_TICKS: f64 = 100.0;

    /// [`load`], with the CPU this process and the server used meanwhile.
    async fn load_measured(
        addr: SocketAddr,
        tls: &TlsConnector,
        review: &Bytes,
        conns: usize,
        measure: Duration,
        server_pid: Option<u32>,
    ) -> Run {
        let server = server_pid.map_or("0".to_string(), |p| p.to_string());
        let (client0, server0, wall0) = (cpu_seconds("self"), cpu_seconds(&server), Instant::now());
        let mut run = load(addr, tls, review, conns, measure).await;
        run.client_cpu = cpu_seconds("self") - client0;
        run.server_cpu = cpu_seconds(&server) - server0;
        run.wall = wall0.elapsed();
        run
    }

    /// `BENCH_SLOW_CLIENTS=N`: after the table, N clients trickle a review body a byte a
    /// second into the webhook while 16 connections send real reviews.
    fn slow_clients_wanted() -> Result<Option<usize>, BoxError> {
        match std::env::var(SLOW_ENV) {
            Err(_) => Ok(None),
            Ok(s) => match s.trim().parse::<usize>() {
                Ok(n) if (1..=5000).contains(&n) => Ok(Some(n)),
                _ => Err(format!("{SLOW_ENV}={s:?} is not a number in 1..=5000").into()),
            },
        }
    }

    /// The server process's resident and peak resident memory, in MiB (Linux).
    fn rss_mib(pid: Option<u32>) -> (f64, f64) {
        let Some(status) =
            pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        else {
            return (f64::NAN, f64::NAN);
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// One client sending its review head, then a byte a second: how long until the server hung
    /// up, counted from the head, and whether it said 408 first.
    async fn trickle(
        addr: SocketAddr,
        tls: TlsConnector,
        len: usize,
    ) -> Result<(Duration, bool), String> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(DNS_NAME).map_err(|e| e.to_string())?;
        let mut stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {DNS_NAME}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{",
            common::REVIEW_URI
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let sent = Instant::now();
        let (mut rd, mut wr) = tokio::io::split(stream);
        let writer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                    return;
                }
            }
        });
        let mut answer = Vec::new();
        let _ = rd.read_to_end(&mut answer).await;
        let took = sent.elapsed();
        writer.abort();
        Ok((took, answer.starts_with(b"HTTP/1.1 408")))
    }

    /// The slow-client run: unloaded webhook p99 at 16 connections, then the same while
    /// `slow` clients trickle bodies; how soon they were cut off, and the server's memory.
    async fn slow_phase(
        webhook: SocketAddr,
        tls: &TlsConnector,
        review: &Bytes,
        slow: usize,
        measure: Duration,
        server_pid: Option<u32>,
    ) -> Result<u64, BoxError> {
        let conns = 16;
        let unloaded = load(webhook, tls, review, conns, measure).await;
        let (rss_before, _) = rss_mib(server_pid);
        let mut clients = Vec::with_capacity(slow);
        for _ in 0..slow {
            clients.push(tokio::spawn(trickle(webhook, tls.clone(), review.len())));
        }
        // Real reviews while the slow bodies are open (they all are for the body timeout, 10 s;
        // handshakes done within the load's 1 s warm-up).
        let sampler = tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let (rss, _) = rss_mib(server_pid);
                if rss.is_finite() {
                    peak = peak.max(rss);
                }
            }
            peak
        });
        let loaded = load(
            webhook,
            tls,
            review,
            conns,
            measure.min(Duration::from_secs(8)),
        )
        .await;
        let mut cut = Vec::with_capacity(slow);
        let mut said_408 = 0;
        let mut errors = 0u64;
        for c in clients {
            match c.await {
                Ok(Ok((took, r408))) => {
                    cut.push(took);
                    said_408 += usize::from(r408);
                }
                Ok(Err(e)) => {
                    errors += 1;
                    if errors == 1 {
                        eprintln!("webhook_load: a slow client failed to start: {e}");
                    }
                }
                Err(e) => eprintln!("webhook_load: slow client task: {e}"),
            }
        }
        cut.sort();
        let peak = sampler.await.unwrap_or(f64::NAN);
        let (_, hwm) = rss_mib(server_pid);
        println!();
        println!(
            "slow clients: {slow} sending a review body a byte a second (body timeout {:?}), {conns} connections of real reviews",
            spark_webhook::webhook::DEFAULT_BODY_TIMEOUT
        );
        println!(
            "  cut off: {} of {slow} (408 first: {said_408}), after {:.1} s median, {:.1} s max; {errors} could not connect",
            cut.len(),
            cut.get(cut.len() / 2)
                .map_or(f64::NAN, Duration::as_secs_f64),
            cut.last().map_or(f64::NAN, Duration::as_secs_f64),
        );
        println!(
            "  real reviews: unloaded p99 {:.3} ms ({:.0}/s), with the slow clients p99 {:.3} ms ({:.0}/s)",
            unloaded.percentile_ms(0.99),
            unloaded.per_second(),
            loaded.percentile_ms(0.99),
            loaded.per_second(),
        );
        println!(
            "  server RSS: {rss_before:.1} MiB before, {peak:.1} MiB peak while they were open (process peak {hwm:.1} MiB)"
        );
        Ok(unloaded.failures + loaded.failures + errors)
    }

    fn print_table(title: &str, rows: &[Row]) {
        println!();
        println!("{title}");
        println!(
            "{:>5} | {:>17} | {:>17} | {:>17} | {:>21} | {:>15} | {:>16} |",
            "",
            "no-op",
            "parse-only",
            "webhook",
            "webhook / parse-only",
            "no-op / parse",
            "load generator",
        );
        println!(
            "{:>5} | {:>9} {:>7} | {:>9} {:>7} | {:>9} {:>7} | {:>10} {:>10} | {:>7} {:>7} | {:>7} {:>8} | verdict",
            "conns",
            "reviews/s",
            "p99 ms",
            "reviews/s",
            "p99 ms",
            "reviews/s",
            "p99 ms",
            "thr",
            "p99",
            "thr",
            "p99",
            "CPU %",
            "cores",
        );
        println!("{}", "-".repeat(139));
        for r in rows {
            let (n, p, w) = (&r.no_op, &r.parse_only, &r.webhook);
            let thr = w.per_second() / p.per_second();
            let p99 = w.percentile_ms(0.99) / p.percentile_ms(0.99);
            let mut missed = Vec::new();
            if thr.is_nan() || thr < THROUGHPUT_TARGET {
                missed.push("throughput");
            }
            if p99.is_nan() || p99 > P99_TARGET {
                missed.push("p99");
            }
            let verdict = if missed.is_empty() {
                "PASS".to_string()
            } else {
                format!("MISS ({})", missed.join(", "))
            };
            println!(
                "{:>5} | {:>9.0} {:>7.3} | {:>9.0} {:>7.3} | {:>9.0} {:>7.3} | {:>9.2}x {:>9.2}x | {:>6.2}x {:>6.2}x | {:>6.0}% {:>8.2} | {}",
                r.conns,
                n.per_second(),
                n.percentile_ms(0.99),
                p.per_second(),
                p.percentile_ms(0.99),
                w.per_second(),
                w.percentile_ms(0.99),
                thr,
                p99,
                n.per_second() / p.per_second(),
                n.percentile_ms(0.99) / p.percentile_ms(0.99),
                w.generator_share() * 100.0,
                w.cores_busy(),
                verdict,
            );
        }
        // What each server spent per review, whoever was the bottleneck: the webhook's cost
        // beyond the parse-only floor's, as the machine saw it (TLS, HTTP and caches included).
        let per_review = rows
            .iter()
            .map(|r| {
                format!(
                    "{} conn(s) {:.0} / {:.0} / {:.0}",
                    r.conns,
                    r.no_op.server_us_per_review(),
                    r.parse_only.server_us_per_review(),
                    r.webhook.server_us_per_review(),
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        println!("server CPU per review, µs (no-op / parse-only / webhook): {per_review}");
    }

    /// Whether the load generator was the bottleneck: its share of the CPU in the webhook runs.
    fn print_generator(tables: &[Vec<Row>]) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let runs = || {
            tables
                .iter()
                .flatten()
                .flat_map(|r| [&r.no_op, &r.parse_only, &r.webhook])
        };
        let share = |f: &dyn Fn(f64, f64) -> f64, init| {
            runs()
                .map(Run::generator_share)
                .filter(|s| s.is_finite())
                .fold(init, f)
        };
        let (low, high) = (share(&f64::min, f64::INFINITY), share(&f64::max, 0.0));
        // Every core busy, and the generator holding a third or more of them: the server could
        // have answered more had the generator not competed for the cores.
        let saturated = runs()
            .filter(|r| r.conns_saturated(cores) && r.generator_share() >= 1.0 / 3.0)
            .count();
        let total = runs().count();
        println!();
        println!(
            "targets: webhook throughput >= {THROUGHPUT_TARGET:.2}x parse-only and p99 <= {P99_TARGET:.2}x parse-only \
             (figures for the team, not a test); the no-op line is a reference"
        );
        println!(
            "load generator: {:.0}-{:.0}% of the CPU each run used (column \"CPU %\": the webhook run's); \
             \"cores\": CPU seconds of generator + server per second, of {cores:.0}",
            low * 100.0,
            high * 100.0,
        );
        println!(
            "  {}",
            if saturated == 0 {
                "the cores were never all busy with generator + server while the generator held a third of them: \
                 it was not the bottleneck".to_string()
            } else {
                format!(
                    "in {saturated} of {total} runs generator + server kept every core busy with the generator \
                     holding a third or more: there it was a bottleneck (other processes on the machine compete \
                     too); the ratios compare the servers under the same generator"
                )
            }
        );
    }

    fn connector(ca: &Path) -> Result<TlsConnector, BoxError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConnector::from(Arc::new(config)))
    }

    type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

    /// A verified TLS connection speaking HTTP/1.1, and what TLS it negotiated.
    async fn connect(addr: SocketAddr, tls: &TlsConnector) -> Result<(Sender, String), BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = tls.connect(ServerName::try_from(DNS_NAME)?, tcp).await?;
        let (_, session) = stream.get_ref();
        let negotiated = format!(
            "{:?} {:?}",
            session.protocol_version().ok_or("no TLS version")?,
            session
                .negotiated_cipher_suite()
                .ok_or("no cipher suite")?
                .suite()
        );
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok((sender, negotiated))
    }

    /// One review; the answer's status and body.
    async fn send(sender: &mut Sender, review: &Bytes) -> Result<(StatusCode, Bytes), BoxError> {
        sender.ready().await?;
        let req = Request::post(common::REVIEW_URI)
            .header(header::HOST, DNS_NAME)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, */*")
            .body(Full::new(review.clone()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    fn check(status: StatusCode, answer: &[u8]) -> Result<(), String> {
        if status != StatusCode::OK {
            return Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            ));
        }
        if !has_patch(answer) {
            return Err(format!(
                "200 without a patch: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            ));
        }
        Ok(())
    }

    async fn probe(
        addr: SocketAddr,
        tls: &TlsConnector,
        review: &Bytes,
    ) -> Result<(Bytes, String), BoxError> {
        let (mut sender, negotiated) = connect(addr, tls).await?;
        let (status, answer) = send(&mut sender, review).await?;
        check(status, &answer).map_err(|e| format!("{addr}: {e}"))?;
        Ok((answer, negotiated))
    }

    /// `conns` connections sending back to back: warm-up, then `measure`.
    async fn load(
        addr: SocketAddr,
        tls: &TlsConnector,
        review: &Bytes,
        conns: usize,
        measure: Duration,
    ) -> Run {
        // Handshakes are not part of the measurement: connect everyone first.
        let mut senders = Vec::with_capacity(conns);
        let mut failures = 0;
        let mut first_failure = None;
        for _ in 0..conns {
            match connect(addr, tls).await {
                Ok((sender, _)) => senders.push(Some(sender)),
                Err(e) => {
                    failures += 1;
                    first_failure.get_or_insert(format!("connect: {e}"));
                    senders.push(None);
                }
            }
        }
        let start = Instant::now() + WARM_UP;
        let end = start + measure;
        let tasks: Vec<_> = senders
            .into_iter()
            .map(|sender| {
                let tls = tls.clone();
                let review = review.clone();
                tokio::spawn(connection(addr, tls, sender, review, start, end))
            })
            .collect();
        let mut latencies_us = Vec::new();
        let mut last = start;
        for task in tasks {
            match task.await {
                Ok(r) => {
                    latencies_us.extend(r.latencies_us);
                    failures += r.failures;
                    if first_failure.is_none() {
                        first_failure = r.first_failure;
                    }
                    last = last.max(r.finished.unwrap_or(start));
                }
                Err(e) => {
                    failures += 1;
                    first_failure.get_or_insert(format!("connection task: {e}"));
                }
            }
        }
        latencies_us.sort_unstable();
        Run {
            ok: latencies_us.len() as u64,
            elapsed: last
                .saturating_duration_since(start)
                .max(Duration::from_millis(1)),
            latencies_us,
            failures,
            first_failure,
            client_cpu: f64::NAN,
            server_cpu: f64::NAN,
            wall: Duration::ZERO,
        }
    }

    /// One connection's loop until `end`; latencies of requests sent from `start` on count.
    async fn connection(
        addr: SocketAddr,
        tls: TlsConnector,
        mut sender: Option<Sender>,
        review: Bytes,
        start: Instant,
        end: Instant,
    ) -> ConnResult {
        let mut result = ConnResult::default();
        while Instant::now() < end {
            let Some(s) = sender.as_mut() else {
                match connect(addr, &tls).await {
                    Ok((s, _)) => sender = Some(s),
                    Err(e) => {
                        result.fail(format!("connect: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                continue;
            };
            let sent = Instant::now();
            let answered = send(s, &review).await;
            let latency = sent.elapsed();
            match answered {
                Ok((status, answer)) => match check(status, &answer) {
                    Ok(()) => {
                        if sent >= start {
                            result.latencies_us.push(latency.as_micros() as u64);
                        }
                    }
                    Err(e) => result.fail(e),
                },
                Err(e) => {
                    result.fail(format!("request: {e}"));
                    sender = None;
                }
            }
        }
        result.finished = Some(Instant::now());
        result
    }
}
