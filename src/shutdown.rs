//! Ending `serve`: the first SIGTERM/SIGINT starts a graceful handover (a second one exits at
//! once), and a shutdown that overruns its time ends the process anyway, naming the part that
//! hung, so a stuck replica is replaced rather than left half-alive.
//!
//! The handover has two steps. `draining` first: `/readyz` fails and the reconciler lets go
//! of its Lease, but the webhook keeps accepting and answering for the drain period, because
//! the apiserver goes on calling a Service endpoint until the endpoints update reaches it and
//! does not retry a refused connection (the pod create would fail). Then `shutdown`: the
//! listener closes, in-flight reviews finish within the shutdown timeout, the process exits.
//! In-process rather than a preStop hook: the image has no shell or `sleep`, and a preStop
//! `sleep` action needs Kubernetes 1.30.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Time allowed after the drain timeout for the rest of shutdown (releasing the lease, ending
/// watches) before the process gives up and exits non-zero, naming what still ran.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(10);

/// The top-level parts of `serve` still running, so a stuck shutdown says which one it is.
#[derive(Default)]
struct Parts(std::sync::Mutex<std::collections::BTreeSet<&'static str>>);

impl Parts {
    async fn track<T>(&self, name: &'static str, part: impl Future<Output = T>) -> T {
        self.set(|running| running.insert(name));
        let out = part.await;
        self.set(|running| running.remove(name));
        out
    }

    fn set(&self, change: impl FnOnce(&mut std::collections::BTreeSet<&'static str>) -> bool) {
        change(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn pending(&self) -> String {
        let running = self.0.lock().unwrap_or_else(|e| e.into_inner());
        running.iter().copied().collect::<Vec<_>>().join(", ")
    }
}

/// First SIGTERM/SIGINT: start draining. A second one: exit at once. Whatever cancels
/// `draining` (a signal, or a part that failed) cancels `shutdown` `drain_period` later.
pub fn spawn_signal_handler(
    draining: CancellationToken,
    shutdown: CancellationToken,
    drain_period: Duration,
) {
    let drained = draining.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = drained.cancelled() => {}
        }
        tracing::info!(
            ?drain_period,
            "draining: unready, still answering reviews until the endpoints drop this replica"
        );
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(drain_period) => {}
        }
        tracing::info!("drain period over: closing the listener, finishing in-flight reviews");
        shutdown.cancel();
    });
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            if n == 0 {
                tracing::info!("SIGTERM: shutting down");
                draining.cancel();
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
}

/// Runs the three top-level parts of `serve` to their end. Once `shutdown` fires they have
/// `drain` (the in-flight reviews' allowance) plus `SHUTDOWN_SLACK` to finish; past that the
/// error names those still running.
pub async fn run_parts<A, B, C>(
    shutdown: &CancellationToken,
    drain: Duration,
    (a_name, a): (&'static str, A),
    (b_name, b): (&'static str, B),
    (c_name, c): (&'static str, C),
) -> Result<(A::Output, B::Output, C::Output), String>
where
    A: Future,
    B: Future,
    C: Future,
{
    let parts = Parts::default();
    tokio::select! {
        done = async {
            tokio::join!(
                parts.track(a_name, a),
                parts.track(b_name, b),
                parts.track(c_name, c),
            )
        } => Ok(done),
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(drain + SHUTDOWN_SLACK).await;
        } => {
            let pending = parts.pending();
            tracing::error!(pending = %pending, "shutdown did not finish in time");
            Err(pending)
        }
    }
}
