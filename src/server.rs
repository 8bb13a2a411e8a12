//! HTTPS and plain-HTTP serving of an axum [`Router`] with graceful shutdown.
//!
//! The webhook port is served by a hand-written accept loop rather than `axum::serve` because
//! it needs TLS with a reloadable certificate, a bounded handshake, HTTP/1.1 and HTTP/2 on one
//! port (ALPN), and a drain that is bounded in time: the API server retries admission calls, so
//! on shutdown in-flight reviews should finish but a stuck connection must not block the exit.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Upper bound for a client to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for a client to send a complete HTTP/1 request head (slowloris protection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error such as EMFILE, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` over TLS on `listener` until `shutdown` is cancelled.
///
/// On cancellation the listener is closed at once (new connections are refused), in-flight
/// requests are allowed to finish, and connections still open after `drain_timeout` are
/// closed forcibly. Handshake and connection errors are logged at debug and never end the
/// loop. Returns once every connection is gone.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tracing::info!(%local, "serving HTTPS");

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    tracing::warn!(error = %e, "connection task panicked");
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        if !is_connection_error(&e) {
                            tracing::warn!(error = %e, "accept failed; backing off");
                            tokio::select! {
                                _ = shutdown.cancelled() => break,
                                _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                            }
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // Subscribe before spawning: a shutdown signalled during the handshake still
                // reaches this connection once it is watched.
                let watcher = graceful.watcher();
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let tls_stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection error");
                    }
                });
            }
        }
    }

    // Stop accepting immediately: closing the socket makes new connections fail fast.
    drop(listener);
    let open = graceful.count();
    tracing::info!(%local, open, "HTTPS shutting down; draining connections");
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            %local,
            remaining = connections.len(),
            ?drain_timeout,
            "drain timeout elapsed; closing remaining connections"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
    tracing::info!(%local, "HTTPS server stopped");
    Ok(())
}

/// Serves `router` over plain HTTP (health and metrics) until `shutdown` is cancelled, then
/// lets in-flight requests finish for at most `drain_timeout`: a scraper that keeps a request
/// open must not hold the process past its grace period.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(%local, "serving HTTP");
    let serve = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => result?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain_timeout).await } => {
            tracing::warn!(%local, ?drain_timeout, "drain timeout elapsed; closing HTTP connections");
        }
    }
    tracing::info!(%local, "HTTP server stopped");
    Ok(())
}

/// Errors that concern one connection (already gone) rather than the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
