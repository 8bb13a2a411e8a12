//! The I/O shell around [`super::state`]: one controller per job namespace (or one for all)
//! watches the SparkConnects and, by their `connect-name` label, their pods. A reconcile reads
//! the server pod, the executors and the Service, decides, and carries the decision out:
//! creates the Service if missing, creates the server pod and then its ConfigMap and headless
//! Service (owned by the pod, as Spark's are), or deletes a server built from an older spec,
//! and writes the status (PUT with the resourceVersion read: a stale view conflicts instead of
//! overwriting). Every write is idempotent, so a crash anywhere is repaired by the next pass.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::state::{self, Observed, ServerAction, ServerPod};
use crate::crd::SparkConnect;
use crate::health::WatchBackoff;
use crate::labels::{CONNECT_NAME_LABEL, SPARK_ROLE_LABEL, SparkRole};
use crate::namespaces::{self, JobNamespaces};
use crate::submission::SubmitOptions;
use crate::submission::connect::{
    self as build, ConnectServer, connect_server, pod_submission_id, server_pod_name,
};

/// What the SparkConnect controllers need.
#[derive(Clone)]
pub struct ConnectConfig {
    pub namespaces: JobNamespaces,
    /// How servers are built: the SparkApplications' native submission options.
    pub submit: SubmitOptions,
}

/// A failed API call is retried after this long.
const API_RETRY: Duration = Duration::from_secs(5);
/// A periodic look, in case a watch event was missed (pods are watched; the Service is not).
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("status of {0} changed meanwhile; retrying")]
    Conflict(String),
    /// The apiserver refused an object for good (4xx but conflicts and throttling).
    #[error("{0}")]
    Refused(String),
}

struct Context {
    client: Client,
    submit: SubmitOptions,
    namespaces: JobNamespaces,
}

/// Runs the controllers of every job namespace until `shutdown`.
pub async fn run(client: Client, cfg: ConnectConfig, shutdown: CancellationToken) {
    namespaces::run_per_scope(&cfg.namespaces, |ns| {
        run_scope(client.clone(), ns, cfg.clone(), shutdown.clone())
    })
    .await;
}

async fn run_scope(
    client: Client,
    namespace: Option<String>,
    cfg: ConnectConfig,
    shutdown: CancellationToken,
) {
    let (conns, pods): (Api<SparkConnect>, Api<Pod>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let pod_stream = watcher(pods, watcher::Config::default().labels(CONNECT_NAME_LABEL))
        .backoff(WatchBackoff::default())
        .touched_objects();
    let ctx = Arc::new(Context {
        client,
        submit: cfg.submit,
        namespaces: cfg.namespaces.clone(),
    });
    let selected = cfg.namespaces.added().map(|_| ());
    let token = shutdown.clone();
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("(all)"),
        "SparkConnect controller started"
    );
    Controller::new(conns, watcher::Config::default())
        .watches_stream(pod_stream, |pod: Pod| {
            let name = pod.labels().get(CONNECT_NAME_LABEL)?.clone();
            Some(ObjectRef::new(&name).within(pod.namespace()?.as_str()))
        })
        .reconcile_all_on(selected)
        .graceful_shutdown_on(async move { token.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            use kube::runtime::controller::Error as E;
            match result {
                Err(
                    e @ (E::ReconcilerFailed(ConnectError::Conflict(_), _) | E::ObjectNotFound(_)),
                ) => tracing::debug!(error = %e, "SparkConnect reconcile failed"),
                Err(e) => tracing::warn!(error = %e, "SparkConnect reconcile failed"),
                Ok(_) => {}
            }
        })
        .await;
}

fn error_policy(_: Arc<SparkConnect>, error: &ConnectError, _: Arc<Context>) -> Requeue {
    match error {
        ConnectError::Conflict(_) => Requeue::requeue(Duration::from_millis(100)),
        ConnectError::Api(_) | ConnectError::Refused(_) => Requeue::requeue(API_RETRY),
    }
}

async fn reconcile(conn: Arc<SparkConnect>, ctx: Arc<Context>) -> Result<Requeue, ConnectError> {
    // Deleting: the garbage collector removes the owned objects.
    if conn.metadata.deletion_timestamp.is_some() {
        return Ok(Requeue::await_change());
    }
    let ns = conn.namespace().unwrap_or_default();
    if !ctx.namespaces.contains(&ns) {
        return Ok(Requeue::await_change());
    }
    let name = conn.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_name = server_pod_name(&name);
    let service_name = build::server_service_name(&conn);
    let executors = ListParams::default().labels(&format!(
        "{CONNECT_NAME_LABEL}={name},{SPARK_ROLE_LABEL}={}",
        SparkRole::Executor
    ));
    let (pod, service, executors) = Box::pin(futures::future::try_join3(
        pods.get_opt(&pod_name),
        services.get_opt(&service_name),
        pods.list(&executors),
    ))
    .await?;
    let built = connect_server(&conn, &ctx.submit);
    let uid = conn.metadata.uid.clone().unwrap_or_default();
    let status = conn.status.clone().unwrap_or_default();
    let executor_phases: Vec<String> = executors
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.phase.clone())
        .collect();
    let decide = |wanted: Result<&str, String>| {
        state::decide(&Observed {
            now: Timestamp::now(),
            generation: conn.metadata.generation.unwrap_or(1),
            status: &status,
            pod_name: &pod_name,
            service_name: &service_name,
            wanted,
            server: pod.as_ref().map(|p| server_view(p, &uid)),
            executor_phases: executor_phases.clone(),
        })
    };
    let mut decision = decide(
        built
            .as_ref()
            .map(|s| s.submission_id.as_str())
            .map_err(ToString::to_string),
    );
    let acted = act(
        &ctx,
        &conn,
        &decision,
        built,
        pod.as_ref(),
        service.is_none(),
    )
    .await;
    match acted {
        Ok(()) => {}
        // Refused for good (a name too long for a Service, a quota): the status says why.
        Err(ConnectError::Refused(why)) => {
            tracing::warn!(namespace = %ns, connect = %name, error = %why, "SparkConnect object refused");
            decision = decide(Err(why));
        }
        Err(e) => return Err(e),
    }
    if let Some(new) = decision.status {
        write_status(&ctx, &conn, new).await?;
    }
    Ok(Requeue::requeue(RESYNC))
}

/// Carries the decision out on the Service and the server pod.
async fn act(
    ctx: &Context,
    conn: &SparkConnect,
    decision: &state::Decision,
    built: Result<ConnectServer, crate::submission::SubmissionError>,
    pod: Option<&Pod>,
    service_missing: bool,
) -> Result<(), ConnectError> {
    let ns = conn.namespace().unwrap_or_default();
    let name = conn.name_any();
    if service_missing {
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
        create(&services, &build::server_service(conn)).await?;
    }
    match (decision.server, built) {
        (ServerAction::Create, Ok(server)) => start(ctx, &ns, server).await?,
        (ServerAction::Keep, Ok(server)) => {
            // A crash between the pod and its ConfigMap would leave it waiting for a volume.
            if let Some(pod) = pod.filter(|p| starting(p, &server)) {
                finish_start(ctx, &ns, server, pod).await?;
            }
        }
        (ServerAction::Restart, _) => {
            if let Some(old) = pod {
                let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: old.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::background()
                };
                match pods.delete(&old.name_any(), &params).await {
                    Ok(_) => {
                        tracing::info!(namespace = %ns, connect = %name, "spec changed: stopping the server to restart it")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        (_, Err(e)) => {
            tracing::warn!(namespace = %ns, connect = %name, error = %e, "SparkConnect server cannot be built")
        }
    }
    Ok(())
}

/// The server pod as the decision sees it.
fn server_view(pod: &Pod, connect_uid: &str) -> ServerPod {
    let status = pod.status.as_ref();
    ServerPod {
        ours: pod
            .owner_references()
            .iter()
            .any(|r| r.uid == connect_uid && r.controller == Some(true)),
        submission_id: pod_submission_id(pod).map(str::to_string),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        ip: status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        message: status.and_then(|s| s.message.clone()).unwrap_or_default(),
    }
}

/// A pod of the current generation that has not started yet.
fn starting(pod: &Pod, server: &ConnectServer) -> bool {
    pod_submission_id(pod) == Some(server.submission_id.as_str())
        && pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
}

/// Creates the server pod, then (owned by it) its ConfigMap and headless Service.
async fn start(ctx: &Context, ns: &str, server: ConnectServer) -> Result<(), ConnectError> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pod = match pods.create(&PostParams::default(), &server.pod).await {
        Ok(pod) => pod,
        // Created by an earlier pass whose view lagged: the next pass sees it.
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
        Err(e) => return Err(refusal("the server pod", e)),
    };
    tracing::info!(namespace = %ns, pod = %pod.name_any(), "SparkConnect server created");
    finish_start(ctx, ns, server, &pod).await
}

async fn finish_start(
    ctx: &Context,
    ns: &str,
    mut server: ConnectServer,
    pod: &Pod,
) -> Result<(), ConnectError> {
    server.owned_by_pod(pod.metadata.uid.as_deref().unwrap_or_default());
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    create(&config_maps, &server.config_map).await?;
    create(&services, &server.driver_service).await
}

/// Creates `object`; one that exists already is fine.
async fn create<K>(api: &Api<K>, object: &K) -> Result<(), ConnectError>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(refusal(
            &format!(
                "{} {}",
                K::kind(&Default::default()),
                object.meta().name.as_deref().unwrap_or_default()
            ),
            e,
        )),
    }
}

/// A 4xx that retrying cannot fix (not a conflict or throttling) as [`ConnectError::Refused`].
fn refusal(what: &str, e: kube::Error) -> ConnectError {
    match e {
        kube::Error::Api(e) if (400..500).contains(&e.code) && e.code != 409 && e.code != 429 => {
            ConnectError::Refused(format!("the apiserver refused {what}: {}", e.message))
        }
        e => e.into(),
    }
}

async fn write_status(
    ctx: &Context,
    conn: &SparkConnect,
    status: crate::crd::SparkConnectStatus,
) -> Result<(), ConnectError> {
    let ns = conn.namespace().unwrap_or_default();
    let api: Api<SparkConnect> = Api::namespaced(ctx.client.clone(), &ns);
    let mut obj = conn.clone();
    obj.metadata.managed_fields = None;
    obj.status = Some(status);
    match api
        .replace_status(&conn.name_any(), &PostParams::default(), &obj)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(ConnectError::Conflict(conn.name_any())),
        // Deleted meanwhile.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
