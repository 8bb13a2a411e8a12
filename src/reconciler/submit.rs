//! Submitting an attempt: the driver pod, its Service and ConfigMap created by us (or by
//! spark-submit), idempotently, with kubeflow's Prometheus ConfigMap and the batch scheduler's
//! PodGroup before the driver and its UI Service, Ingresses and driver PodDisruptionBudget after
//! it (beside the driver's Service and ConfigMap, concurrently). Every name derives from the
//! app and the attempt, so a repeat after a crash finds its own objects instead of starting a
//! second driver, and an API error is sorted into the app's fault (a failed submission) or the
//! cluster's (retry, no attempt used).

use std::time::Instant;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::state::SubmittedInfo;
use crate::crd::SparkApplication;
use crate::failpoint::{self, FailPoint};
use crate::labels::SUBMISSION_ID_LABEL;
use crate::submission::spark_submit::{self, SparkSubmitter};
use crate::submission::{self, Submitter, WebUi};
use crate::validation;

pub(super) enum SubmitError {
    /// The app cannot be submitted as it is: SUBMISSION_FAILED with this message.
    Failed(String),
    /// The API was unreachable or overloaded: retry without counting an attempt.
    Transient(kube::Error),
    /// The apiserver refused the object because an admission webhook with failurePolicy Fail
    /// could not be called (ours mid-rollout, its port closed, a timeout): not the app's
    /// fault. Retried with backoff without counting an attempt; the status says so.
    AdmissionUnavailable(String),
}

/// Sorts an API error into the app's fault or the cluster's.
pub(super) fn classify_api(what: &str, e: kube::Error) -> SubmitError {
    match &e {
        // "failed calling webhook" is the apiserver's wording for every failure to get an
        // answer from a webhook (connection refused, timeout, TLS, a non-200 such as our 503
        // or 504); a webhook that answered and denied says "denied the request" (4xx) instead.
        kube::Error::Api(s) if s.message.contains("failed calling webhook") => {
            SubmitError::AdmissionUnavailable(format!("{what}: {}", s.message))
        }
        kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 409 && s.code != 429 => {
            SubmitError::Failed(format!("{what}: {}", s.message))
        }
        _ => SubmitError::Transient(e),
    }
}

/// When the reconcile that submits began and when it held a submission slot: with the driver
/// pod's create, logged (at debug) per submission, so the time from an app's arrival to its
/// driver shows per stage.
pub(super) struct Stages {
    pub started: Instant,
    pub in_lane: Instant,
}

/// Creates the driver pod, then its Service and ConfigMap owned by it, as spark-submit does.
/// Every name is deterministic per attempt, so a repeat after a crash finds its own objects
/// (AlreadyExists with our submission id is success) and never starts a second driver.
pub(super) async fn submit(
    ctx: &Context,
    app: &SparkApplication,
    attempt: u32,
    spec_hash: &str,
    stages: Stages,
) -> Result<SubmittedInfo, SubmitError> {
    if let Some(errors) = validation::validate(app).error_message() {
        return Err(SubmitError::Failed(format!(
            "invalid SparkApplication: {errors}"
        )));
    }
    if let Submitter::SparkSubmit { runner, master } = &ctx.submitter {
        return submit_with_spark_submit(ctx, app, attempt, spec_hash, runner, master).await;
    }
    let mut sub = submission::build(app, attempt, &ctx.submit)
        .map_err(|e| SubmitError::Failed(e.to_string()))?;
    sub.driver_pod
        .annotations_mut()
        .insert(crate::labels::SPEC_HASH_ANNOTATION.into(), spec_hash.into());
    let ns = app.namespace().unwrap_or_default();
    // The gang exists before its first member.
    if let Some(group) = &sub.pod_group {
        put_pod_group(ctx, &ns, group).await?;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_name = sub.driver_pod.name_any();
    // The Prometheus ConfigMap the driver mounts is written beside the pod's create, not before
    // it (kubeflow's order): the pod is scheduled meanwhile, and its kubelet mounts the volume
    // only after that, so the driver starts no later, while its create no longer waits a round
    // trip (p99 ~20 ms on a busy apiserver). Should the kubelet be first, it retries the mount.
    let prometheus = async {
        match &sub.prometheus_config_map {
            Some(config) => put_prometheus_config(ctx, &ns, config).await,
            None => Ok(()),
        }
    };
    let sent = Instant::now();
    let (created, prometheus) = futures::future::join(
        pods.create(&PostParams::default(), &sub.driver_pod),
        prometheus,
    )
    .await;
    let pod = match created {
        Ok(pod) => {
            let micros = |from: Instant, to: Instant| to.duration_since(from).as_micros() as u64;
            tracing::debug!(
                pod = %pod_name,
                lane_us = micros(stages.started, stages.in_lane),
                build_us = micros(stages.in_lane, sent),
                create_us = micros(sent, Instant::now()),
                "driver pod created"
            );
            pod
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = pods.get(&pod_name).await.map_err(SubmitError::Transient)?;
            if existing.labels().get(SUBMISSION_ID_LABEL) != Some(&sub.submission_id) {
                return Err(SubmitError::Failed(format!(
                    "a pod named {pod_name} already exists and does not belong to this submission"
                )));
            }
            existing
        }
        Err(e) => return Err(classify_api("creating the driver pod", e)),
    };
    without_driver_if_failed(prometheus, &pods, &pod_name).await?;
    failpoint::hit(FailPoint::AfterDriver);
    submission::owned_by_driver(&mut sub, pod.metadata.uid.as_deref().unwrap_or_default());
    // The driver's Service and ConfigMap, and beside them the objects around the driver (the
    // UI Service's create is the slowest: the apiserver allocates its cluster IP): each is
    // owned by the pod and needs nothing of the others, so an app waits for the longer of the
    // two chains instead of all of them in a row.
    let driver_objects = async {
        create_if_absent(
            &Api::<Service>::namespaced(ctx.client.clone(), &ns),
            &sub.service,
            "the driver Service",
            &sub.submission_id,
        )
        .await?;
        failpoint::hit(FailPoint::AfterService);
        create_if_absent(
            &Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns),
            &sub.config_map,
            "the driver ConfigMap",
            &sub.submission_id,
        )
        .await?;
        failpoint::hit(FailPoint::AfterConfigMap);
        Ok(())
    };
    let around = create_around_driver(
        ctx,
        &ns,
        &sub.web_ui,
        sub.driver_pdb.as_ref(),
        &sub.submission_id,
    );
    let children = futures::future::try_join(driver_objects, around)
        .await
        .map(|((), ui)| ui);
    let ui = without_driver_if_failed(children, &pods, &pod_name).await?;
    Ok(SubmittedInfo {
        submission_id: sub.submission_id.clone(),
        driver_pod_name: pod_name,
        app_id: sub.app_id.clone(),
        ui_service_name: ui.service_name,
        ui_port: ui.port,
        ui_address: ui.address,
        ui_ingress_name: ui.ingress_name,
        ui_ingress_address: sub.web_ui.ingress_address.clone(),
    })
}

/// `result` of writing what the driver needs, with the driver deleted first when it is the
/// submission's failure: as spark-submit does, a driver without those objects never starts, and
/// the next attempt has other names, so this one is not left behind. Any other error keeps it:
/// the retry of the same attempt adopts it.
async fn without_driver_if_failed<T>(
    result: Result<T, SubmitError>,
    pods: &Api<Pod>,
    pod_name: &str,
) -> Result<T, SubmitError> {
    if let Err(SubmitError::Failed(_)) = &result
        && let Err(e) = pods.delete(pod_name, &DeleteParams::background()).await
    {
        tracing::warn!(error = %e, pod = %pod_name, "driver of a failed submission not deleted");
    }
    result
}

/// What the status reports of the UI objects created.
#[derive(Default)]
struct UiStatus {
    service_name: String,
    port: i32,
    address: String,
    ingress_name: String,
}

/// kubeflow's objects around the driver: the UI Service and Ingress, the Services and Ingresses
/// of `driverIngressOptions`, the driver's PodDisruptionBudget.
async fn create_around_driver(
    ctx: &Context,
    ns: &str,
    web_ui: &WebUi,
    driver_pdb: Option<&PodDisruptionBudget>,
    submission_id: &str,
) -> Result<UiStatus, SubmitError> {
    let services = Api::<Service>::namespaced(ctx.client.clone(), ns);
    let mut ui = UiStatus::default();
    if let Some(service) = &web_ui.service {
        let created =
            create_if_absent(&services, service, "the Spark UI Service", submission_id).await?;
        let port = created
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .map_or(0, |p| p.port);
        let ip = created
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.clone())
            .unwrap_or_default();
        ui = UiStatus {
            service_name: created.name_any(),
            port,
            address: format!("{ip}:{port}"),
            ingress_name: String::new(),
        };
    }
    for service in &web_ui.extra_services {
        create_if_absent(
            &services,
            service,
            "a driverIngressOptions Service",
            submission_id,
        )
        .await?;
    }
    let ingresses = Api::<Ingress>::namespaced(ctx.client.clone(), ns);
    for ingress in web_ui.ingress.iter().chain(&web_ui.extra_ingresses) {
        create_if_absent(&ingresses, ingress, "the Ingress", submission_id).await?;
    }
    if let Some(ingress) = &web_ui.ingress {
        ui.ingress_name = ingress.name_any();
    }
    if let Some(pdb) = driver_pdb {
        let pdbs = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), ns);
        // An apiserver before 1.21 answers 404: the message says what is missing.
        let what = "the driver PodDisruptionBudget (--enable-driver-pdb: policy/v1, Kubernetes 1.21 or later)";
        create_if_absent(&pdbs, pdb, what, submission_id).await?;
    }
    Ok(ui)
}

/// Creates `<app>-prom-conf`, or makes an existing one ours (an earlier attempt's, or one made
/// before the upgrade): kubeflow updates it in place too. An unconditional replace, since the
/// content is this attempt's and nothing else writes it.
async fn put_prometheus_config(
    ctx: &Context,
    ns: &str,
    config: &ConfigMap,
) -> Result<(), SubmitError> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), ns);
    let what = "creating the Prometheus ConfigMap";
    match api.create(&PostParams::default(), config).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => api
            .replace(&config.name_any(), &PostParams::default(), config)
            .await
            .map(|_| ())
            .map_err(|e| classify_api(what, e)),
        Err(e) => Err(classify_api(what, e)),
    }
}

/// Creates this attempt's PodGroup, or makes one left by an earlier attempt (or by kubeflow
/// before the upgrade) this attempt's: the name is the same for every attempt, as kubeflow's.
/// A cluster without the scheduler's CRD answers 404: the app cannot run here as it is.
async fn put_pod_group(ctx: &Context, ns: &str, group: &DynamicObject) -> Result<(), SubmitError> {
    let Some(resource) = group
        .types
        .as_ref()
        .and_then(|t| {
            t.api_version
                .split_once('/')
                .map(|(g, v)| (g, v, t.kind.as_str()))
        })
        .map(|(g, v, k)| {
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), "podgroups")
        })
    else {
        return Ok(());
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
    let what = format!("creating the PodGroup ({})", resource.api_version);
    let name = group.name_any();
    match api.create(&PostParams::default(), group).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(SubmitError::Failed(format!(
            "{what}: this cluster does not serve {}: install the batch scheduler's CRDs",
            resource.api_version
        ))),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&name).await.map_err(SubmitError::Transient)?;
            let mut replacement = group.clone();
            replacement.metadata.resource_version = existing.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &replacement)
                .await
                .map(|_| ())
                .map_err(|e| classify_api(&what, e))
        }
        Err(e) => Err(classify_api(&what, e)),
    }
}

/// The opt-in path: Spark's own spark-submit creates the objects. Its driver pod name and
/// submission-id label come from the same deterministic conf, so a repeat after a crash finds
/// the driver instead of starting a second one.
async fn submit_with_spark_submit(
    ctx: &Context,
    app: &SparkApplication,
    attempt: u32,
    spec_hash: &str,
    runner: &SparkSubmitter,
    master: &str,
) -> Result<SubmittedInfo, SubmitError> {
    let failed = |e: &dyn std::fmt::Display| SubmitError::Failed(e.to_string());
    let conf = submission::properties(app, attempt, &ctx.submit).map_err(|e| failed(&e))?;
    let submission_id = conf
        .get(&format!(
            "spark.kubernetes.driver.label.{SUBMISSION_ID_LABEL}"
        ))
        .cloned()
        .unwrap_or_default();
    let pod_name = submission::driver_pod_name(app, attempt);
    let ns = app.namespace().unwrap_or_default();
    // kubeflow's objects around Spark's: the same as native submission creates.
    let mut around =
        submission::around_driver(app, attempt, &ctx.submit).map_err(|e| failed(&e))?;
    if let Some(config) = &around.prometheus_config_map {
        put_prometheus_config(ctx, &ns, config).await?;
    }
    if let Some(group) = &around.pod_group {
        put_pod_group(ctx, &ns, group).await?;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = pods
        .get_opt(&pod_name)
        .await
        .map_err(SubmitError::Transient)?;
    let pod = match existing {
        Some(p) if p.labels().get(SUBMISSION_ID_LABEL) == Some(&submission_id) => p,
        Some(_) => {
            return Err(SubmitError::Failed(format!(
                "a pod named {pod_name} already exists and does not belong to this submission"
            )));
        }
        None => {
            let mut args = vec![
                "--conf".to_string(),
                format!(
                    "spark.kubernetes.driver.annotation.{}={spec_hash}",
                    crate::labels::SPEC_HASH_ANNOTATION
                ),
            ];
            args.extend(
                spark_submit::arguments(app, attempt, &ctx.submit, master)
                    .map_err(|e| failed(&e))?,
            );
            runner
                .run(&args, ctx.shutdown.clone())
                .await
                .map_err(|e| failed(&format!("spark-submit: {e}")))?;
            pods.get(&pod_name).await.map_err(SubmitError::Transient)?
        }
    };
    around.owned_by_driver(&pod);
    let around_driver = create_around_driver(
        ctx,
        &ns,
        &around.web_ui,
        around.driver_pdb.as_ref(),
        &submission_id,
    )
    .await;
    let ui = without_driver_if_failed(around_driver, &pods, &pod_name).await?;
    Ok(SubmittedInfo {
        submission_id,
        driver_pod_name: pod_name,
        app_id: pod
            .labels()
            .get("spark-app-selector")
            .cloned()
            .unwrap_or_default(),
        ui_service_name: ui.service_name,
        ui_port: ui.port,
        ui_address: ui.address,
        ui_ingress_name: ui.ingress_name,
        ui_ingress_address: around.web_ui.ingress_address.clone(),
    })
}

/// Creates `obj`; one that already exists is adopted when it carries this submission's id (a
/// previous incarnation created it and crashed before the status said so, kubeflow #2788), and
/// is a submission failure naming the culprit otherwise.
async fn create_if_absent<K>(
    api: &Api<K>,
    obj: &K,
    what: &str,
    submission_id: &str,
) -> Result<K, SubmitError>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let name = obj.meta().name.clone().unwrap_or_default();
            let existing = api.get(&name).await.map_err(SubmitError::Transient)?;
            if existing
                .labels()
                .get(SUBMISSION_ID_LABEL)
                .map(String::as_str)
                == Some(submission_id)
            {
                tracing::debug!(object = %name, "adopting {what} of an interrupted submission");
                Ok(existing)
            } else {
                Err(SubmitError::Failed(format!(
                    "{what} {name} already exists and does not belong to this submission"
                )))
            }
        }
        Err(e) => Err(classify_api(&format!("creating {what}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "InternalError")
                .with_code(code)
                .boxed(),
        )
    }

    fn kind(e: SubmitError) -> &'static str {
        match e {
            SubmitError::Failed(_) => "failed",
            SubmitError::Transient(_) => "transient",
            SubmitError::AdmissionUnavailable(_) => "admission-unavailable",
        }
    }

    #[test]
    fn an_unreachable_webhook_is_not_the_apps_fault() {
        // As a 1.20 apiserver words them: the port closed mid-rollout, a call timing out, and
        // our own 504 answer.
        for message in [
            r#"Internal error occurred: failed calling webhook "mutate-pods.spark-webhook.io": Post "https://spark-webhook.spark-operator.svc:443/mutate-v1-pod?timeout=5s": dial tcp 10.96.0.12:443: connect: connection refused"#,
            r#"Internal error occurred: failed calling webhook "mutate-pods.spark-webhook.io": Post "https://127.0.0.1:9443/mutate-v1-pod?timeout=5s": context deadline exceeded"#,
            r#"Internal error occurred: failed calling webhook "mutate-pods.spark-webhook.io": an error on the server ("review did not finish within the apiserver's timeout") has prevented the request from succeeding"#,
        ] {
            let e = classify_api("creating the driver pod", api(500, message));
            let SubmitError::AdmissionUnavailable(msg) = e else {
                panic!("{message}: {}", kind(e));
            };
            assert!(
                msg.starts_with("creating the driver pod: ")
                    && msg.contains("failed calling webhook")
            );
        }
        // A webhook that answered and denied is the app's fault; other errors as before.
        let denied = r#"admission webhook "mutate-pods.spark-webhook.io" denied the request: SparkApplication ns/pi does not exist"#;
        assert_eq!(kind(classify_api("x", api(403, denied))), "failed");
        assert_eq!(kind(classify_api("x", api(422, "invalid"))), "failed");
        assert_eq!(
            kind(classify_api("x", api(500, "etcdserver: request timed out"))),
            "transient"
        );
        assert_eq!(
            kind(classify_api("x", api(429, "too many requests"))),
            "transient"
        );
    }
}
