//! End-to-end TLS behaviour of the webhook port on real 127.0.0.1 sockets: certificates from
//! `certs::files::generate`, hot rotation (regeneration and kubelet-style `..data` symlink swaps),
//! refusal of mismatched pairs, and graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use spark_webhook::certs::files;
use spark_webhook::certs::issue::{CaOutcome, CertOptions};
use spark_webhook::certs::tls::{ReloadingCertResolver, server_config};
use spark_webhook::server::serve_tls;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

const DNS_NAME: &str = "spark-webhook.spark-operator.svc";
const RELOAD: Duration = Duration::from_millis(50);
const DEADLINE: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Server {
    addr: SocketAddr,
    resolver: Arc<ReloadingCertResolver>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(cert: &Path, key: &Path, router: Router, drain: Duration) -> Self {
        let resolver = Arc::new(ReloadingCertResolver::load(cert, key).expect("load pair"));
        let shutdown = CancellationToken::new();
        Arc::clone(&resolver).spawn_reloader(RELOAD, shutdown.clone());
        let config = server_config(Arc::clone(&resolver)).expect("server config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(serve_tls(listener, config, router, shutdown.clone(), drain));
        Server {
            addr,
            resolver,
            shutdown,
            task,
        }
    }
}

fn hello_router() -> Router {
    Router::new().route("/hello", get(|| async { "hello" }))
}

/// A client trusting only `ca_pem`, offering the given ALPN protocols.
fn client(ca_pem: &Path, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("open CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn connect(
    addr: SocketAddr,
    tls: &TlsConnector,
    name: &str,
) -> Result<TlsStream<TcpStream>, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned())?;
    Ok(tls.connect(name, tcp).await?)
}

/// Completes a verified handshake and returns the leaf certificate the server presented.
async fn served_leaf(addr: SocketAddr, tls: &TlsConnector) -> Result<Vec<u8>, BoxError> {
    let stream = connect(addr, tls, DNS_NAME).await?;
    let (_, conn) = stream.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no peer certificate")?;
    Ok(leaf.to_vec())
}

/// `GET path` over HTTP/1.1 (or HTTP/2 when `h2`), returning status and body.
async fn get_path(
    addr: SocketAddr,
    tls: &TlsConnector,
    name: &str,
    path: &str,
    h2: bool,
) -> Result<(u16, String), BoxError> {
    let io = TokioIo::new(connect(addr, tls, name).await?);
    let req = hyper::Request::get(format!("https://{name}{path}"))
        .header(hyper::header::HOST, name)
        .body(Empty::<Bytes>::new())?;
    let resp = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Polls `check` until it returns true, failing the test after [`DEADLINE`].
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leaf_of(cert_path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(cert_path)
        .expect("leaf PEM")
        .to_vec()
}

#[tokio::test]
async fn serves_https_by_service_name_and_ip_over_http1_and_h2() {
    let dir = tempfile::tempdir().unwrap();
    let report = files::generate(&CertOptions::new(dir.path())).unwrap();
    let server = Server::start(
        &report.cert_path,
        &report.key_path,
        hello_router(),
        Duration::from_secs(5),
    )
    .await;

    let http11 = client(&report.ca_cert_path, &[b"http/1.1"]);
    for name in [DNS_NAME, "127.0.0.1", "localhost"] {
        let (status, body) = get_path(server.addr, &http11, name, "/hello", false)
            .await
            .unwrap_or_else(|e| panic!("GET via {name}: {e}"));
        assert_eq!((status, body.as_str()), (200, "hello"), "via {name}");
    }

    // ALPN negotiates h2 and the server speaks it.
    let h2 = client(&report.ca_cert_path, &[b"h2", b"http/1.1"]);
    let stream = connect(server.addr, &h2, DNS_NAME).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(stream);
    let (status, body) = get_path(server.addr, &h2, DNS_NAME, "/hello", true)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "hello"));

    // A name outside the SANs, or a client trusting another CA, is rejected.
    assert!(
        connect(server.addr, &http11, "evil.example.com")
            .await
            .is_err()
    );
    let other = tempfile::tempdir().unwrap();
    let other_report = files::generate(&CertOptions::new(other.path())).unwrap();
    let stranger = client(&other_report.ca_cert_path, &[]);
    assert!(served_leaf(server.addr, &stranger).await.is_err());

    // A failed handshake does not take the server down.
    let (status, _) = get_path(server.addr, &http11, DNS_NAME, "/hello", false)
        .await
        .unwrap();
    assert_eq!(status, 200);

    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn regenerating_rotates_the_served_leaf_under_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CertOptions::new(dir.path());
    let report = files::generate(&opts).unwrap();
    let server = Server::start(
        &report.cert_path,
        &report.key_path,
        hello_router(),
        Duration::from_secs(5),
    )
    .await;
    // The client trusts a copy of the original CA, as the API server's caBundle would.
    let ca_copy = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(&report.ca_cert_path, ca_copy.path()).unwrap();
    let tls = client(ca_copy.path(), &[]);

    let before = served_leaf(server.addr, &tls).await.unwrap();
    assert_eq!(before, leaf_of(&report.cert_path));

    let rotated = files::generate(&opts).unwrap();
    assert_eq!(rotated.ca, CaOutcome::Reused);
    let expected = leaf_of(&rotated.cert_path);
    assert_ne!(expected, before);

    wait_until("the rotated leaf to be served", || async {
        served_leaf(server.addr, &tls).await.unwrap() == expected
    })
    .await;
    assert_eq!(
        server.resolver.not_after_unix(),
        rotated.not_after.unix_timestamp()
    );
    let (status, _) = get_path(server.addr, &tls, DNS_NAME, "/hello", false)
        .await
        .unwrap();
    assert_eq!(status, 200);

    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

/// Copies the serving pair of `report` into `dir/name/`.
fn stage_pair(dir: &Path, name: &str, report: &files::CertReport) -> PathBuf {
    let target = dir.join(name);
    std::fs::create_dir(&target).unwrap();
    std::fs::copy(&report.cert_path, target.join("tls.crt")).unwrap();
    std::fs::copy(&report.key_path, target.join("tls.key")).unwrap();
    target
}

#[cfg(unix)]
#[tokio::test]
async fn kubelet_symlink_swap_rotates_without_failed_handshakes() {
    use std::os::unix::fs::symlink;

    // Pairs generated elsewhere (same CA), then projected like a Secret volume.
    let gen_dir = tempfile::tempdir().unwrap();
    let opts = CertOptions::new(gen_dir.path());
    let first = files::generate(&opts).unwrap();
    let vol = tempfile::tempdir().unwrap();
    let v = vol.path();
    stage_pair(v, "..2026_a", &first);
    symlink("..2026_a", v.join("..data")).unwrap();
    symlink("..data/tls.crt", v.join("tls.crt")).unwrap();
    symlink("..data/tls.key", v.join("tls.key")).unwrap();

    let server = Server::start(
        &v.join("tls.crt"),
        &v.join("tls.key"),
        hello_router(),
        Duration::from_secs(5),
    )
    .await;
    let tls = client(&first.ca_cert_path, &[]);
    let old_leaf = leaf_of(&first.cert_path);
    assert_eq!(served_leaf(server.addr, &tls).await.unwrap(), old_leaf);

    // Handshake continuously while the volume is swapped.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let prober = {
        let (stop, ok, failures, tls, addr) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failures),
            tls.clone(),
            server.addr,
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match served_leaf(addr, &tls).await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        })
    };
    wait_until("the prober to start", || async {
        ok.load(Ordering::Relaxed) > 5
    })
    .await;

    let second = files::generate(&opts).unwrap();
    assert_eq!(second.ca, CaOutcome::Reused);
    let new_leaf = leaf_of(&second.cert_path);
    stage_pair(v, "..2026_b", &second);
    symlink("..2026_b", v.join("..data_tmp")).unwrap();
    std::fs::rename(v.join("..data_tmp"), v.join("..data")).unwrap();
    std::fs::remove_dir_all(v.join("..2026_a")).unwrap();

    wait_until("the swapped leaf to be served", || async {
        served_leaf(server.addr, &tls).await.unwrap() == new_leaf
    })
    .await;
    // Keep probing a little past the switch, then stop.
    let switched_at = ok.load(Ordering::Relaxed);
    wait_until("more handshakes after the swap", || async {
        ok.load(Ordering::Relaxed) > switched_at + 5
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    prober.await.unwrap();

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "handshakes failed during the swap: {failures:?}"
    );
    assert!(ok.load(Ordering::Relaxed) > 10);
    assert_eq!(server.resolver.last_error(), None);

    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn mismatched_pair_is_refused_and_old_cert_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CertOptions::new(dir.path());
    let report = files::generate(&opts).unwrap();
    let server = Server::start(
        &report.cert_path,
        &report.key_path,
        hello_router(),
        Duration::from_secs(5),
    )
    .await;
    let tls = client(&report.ca_cert_path, &[]);
    let original = served_leaf(server.addr, &tls).await.unwrap();

    // A new certificate lands, but its key never does: the pair does not match.
    let other = tempfile::tempdir().unwrap();
    let other_opts = CertOptions::new(other.path());
    std::fs::copy(dir.path().join("ca.crt"), other.path().join("ca.crt")).unwrap();
    std::fs::copy(dir.path().join("ca.key"), other.path().join("ca.key")).unwrap();
    let new_pair = files::generate(&other_opts).unwrap();
    assert_eq!(new_pair.ca, CaOutcome::Reused);
    std::fs::copy(&new_pair.cert_path, &report.cert_path).unwrap();

    wait_until("the reloader to report the mismatch", || async {
        server
            .resolver
            .last_error()
            .is_some_and(|e| e.contains("does not match"))
    })
    .await;
    // Several more reload intervals: the original leaf is still served, and requests work.
    for _ in 0..5 {
        assert_eq!(served_leaf(server.addr, &tls).await.unwrap(), original);
        tokio::time::sleep(RELOAD).await;
    }
    let (status, _) = get_path(server.addr, &tls, DNS_NAME, "/hello", false)
        .await
        .unwrap();
    assert_eq!(status, 200);

    // Once the matching key arrives the new pair is picked up.
    std::fs::copy(&new_pair.key_path, &report.key_path).unwrap();
    let expected = leaf_of(&new_pair.cert_path);
    wait_until("the completed pair to be served", || async {
        served_leaf(server.addr, &tls).await.unwrap() == expected
    })
    .await;
    wait_until("the reload error to clear", || async {
        server.resolver.last_error().is_none()
    })
    .await;

    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

fn slow_router(started: Arc<tokio::sync::Notify>, delay: Duration) -> Router {
    Router::new().route(
        "/slow",
        get(move || {
            let started = Arc::clone(&started);
            async move {
                started.notify_one();
                tokio::time::sleep(delay).await;
                "done"
            }
        }),
    )
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let report = files::generate(&CertOptions::new(dir.path())).unwrap();
    let started = Arc::new(tokio::sync::Notify::new());
    let server = Server::start(
        &report.cert_path,
        &report.key_path,
        slow_router(Arc::clone(&started), Duration::from_millis(300)),
        Duration::from_secs(5),
    )
    .await;
    let tls = client(&report.ca_cert_path, &[]);

    let addr = server.addr;
    let request = {
        let tls = tls.clone();
        tokio::spawn(async move { get_path(addr, &tls, DNS_NAME, "/slow", false).await })
    };
    tokio::time::timeout(DEADLINE, started.notified())
        .await
        .expect("handler started");
    let cancelled_at = Instant::now();
    server.shutdown.cancel();

    // The listener closes at once, while the in-flight request is still being served.
    wait_until("new connections to be refused", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        !request.is_finished(),
        "new connections should be refused during the drain, not only after it"
    );

    let (status, body) = request.await.unwrap().expect("in-flight request completes");
    assert_eq!((status, body.as_str()), (200, "done"));
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .expect("server returns after draining")
        .unwrap()
        .unwrap();
    assert!(cancelled_at.elapsed() < Duration::from_secs(5));

    let refused = TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "new connections must be refused after shutdown"
    );
}

#[tokio::test]
async fn drain_timeout_force_closes_stuck_requests() {
    let dir = tempfile::tempdir().unwrap();
    let report = files::generate(&CertOptions::new(dir.path())).unwrap();
    let started = Arc::new(tokio::sync::Notify::new());
    let server = Server::start(
        &report.cert_path,
        &report.key_path,
        slow_router(Arc::clone(&started), Duration::from_secs(60)),
        Duration::from_millis(200),
    )
    .await;
    let tls = client(&report.ca_cert_path, &[]);
    let addr = server.addr;
    let request = tokio::spawn(async move { get_path(addr, &tls, DNS_NAME, "/slow", false).await });
    tokio::time::timeout(DEADLINE, started.notified())
        .await
        .expect("handler started");

    let cancelled_at = Instant::now();
    server.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(3), server.task)
        .await
        .expect("server gives up draining after drain_timeout")
        .unwrap()
        .unwrap();
    assert!(cancelled_at.elapsed() >= Duration::from_millis(200));
    let result = tokio::time::timeout(Duration::from_secs(3), request)
        .await
        .expect("client sees the connection close")
        .unwrap();
    assert!(
        result.is_err(),
        "stuck request must be cut off, got {result:?}"
    );
}

/// The webhook's own router over TLS with a body-read timeout of `body_timeout`.
fn webhook_router(body_timeout: Duration) -> Router {
    use spark_webhook::webhook::{ReviewLimits, WebhookState, router};
    router(WebhookState {
        apps: spark_webhook::cache::AppCache::with_apps([]),
        namespaces: spark_webhook::namespaces::JobNamespaces::all(),
        options: Default::default(),
        metrics: spark_webhook::metrics::Metrics::new(),
        client: None,
        recorder: None,
        limits: ReviewLimits::new(body_timeout, 16, 20),
        batch: Default::default(),
        enforce_quota: false,
    })
}

/// A client sending its review body a byte at a time is answered 408 and cut off once the
/// body-read timeout has passed, while a real review on another connection is answered.
#[tokio::test]
async fn a_body_trickling_in_is_cut_off_at_the_body_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let report = files::generate(&CertOptions::new(dir.path())).unwrap();
    let body_timeout = Duration::from_secs(1);
    let server = Server::start(
        &report.cert_path,
        &report.key_path,
        webhook_router(body_timeout),
        Duration::from_secs(5),
    )
    .await;
    let tls = client(&report.ca_cert_path, &[b"http/1.1"]);
    let mut slow = connect(server.addr, &tls, DNS_NAME).await.unwrap();
    let started = Instant::now();
    slow.write_all(
        b"POST /mutate-v1-pod?timeout=10s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    slow.flush().await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(slow);
    // A byte every 200 ms (the limit is what counts, not the rate) until the server hangs up.
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
    });
    // Meanwhile a real (foreign, so quickly allowed) review on another connection is answered.
    let ok = {
        let io = TokioIo::new(connect(server.addr, &tls, DNS_NAME).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let review = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","userInfo":{},"object":{"metadata":{"name":"p"}}}}"#;
        let req = hyper::Request::post(format!("https://{DNS_NAME}/mutate-v1-pod?timeout=10s"))
            .header(hyper::header::HOST, DNS_NAME)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(Bytes::from_static(
                review.as_bytes(),
            )))
            .unwrap();
        sender.send_request(req).await.unwrap().status().as_u16()
    };
    assert_eq!(ok, 200);

    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, rd.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "connection still open {DEADLINE:?} after the body timeout"
    );
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "answer to a trickling body: {answer}"
    );
    assert!(
        took >= body_timeout && took < body_timeout + Duration::from_secs(2),
        "cut off after {took:?}, body timeout {body_timeout:?}"
    );
    trickle.abort();
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}
