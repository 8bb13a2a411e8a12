//! The webhook's HTTP routes in-process (no TLS, no cluster): what the apiserver gets back for
//! good, bad and foreign input.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};
use spark_webhook::cache::AppCache;
use spark_webhook::crd::SparkApplication;
use spark_webhook::metrics::Metrics;
use spark_webhook::mutate::MutationOptions;
use spark_webhook::namespaces::JobNamespaces;
use spark_webhook::webhook::{MUTATE_POD_PATH, VALIDATE_APP_PATH, WebhookState, router};
use tower::ServiceExt;

const DRIVER: &str = include_str!("fixtures/spark-submit-3.3.4/driver-pod.json");
const PI: &str = include_str!("fixtures/sparkapplication-pi.yaml");

fn app() -> SparkApplication {
    let mut app: SparkApplication = yaml_serde::from_str(PI).unwrap();
    app.metadata.namespace = Some("default".into());
    app.metadata.uid = Some("app-uid-1".into());
    app.spec.volumes =
        vec![serde_json::from_value(json!({"name": "data", "emptyDir": {}})).unwrap()];
    app.spec.driver.pod.volume_mounts =
        vec![serde_json::from_value(json!({"name": "data", "mountPath": "/data"})).unwrap()];
    app
}

fn state(namespaces: JobNamespaces) -> WebhookState {
    WebhookState {
        apps: AppCache::with_apps([app()]),
        namespaces,
        options: MutationOptions::default(),
        metrics: Metrics::new(),
        client: None,
        recorder: None,
        limits: Default::default(),
        batch: Default::default(),
        enforce_quota: false,
    }
}

fn review(object: Value, operation: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "operation": operation, "userInfo": {"username": "spark"},
            "object": object, "dryRun": false
        }
    })
}

fn driver_pod() -> Value {
    let mut pod: Value = serde_json::from_str(DRIVER).unwrap();
    pod["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = "spark-pi".into();
    pod
}

async fn post(state: WebhookState, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = router(state).oneshot(req).await.unwrap();
    let status = resp.status();
    (
        status,
        to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
}

fn decode_patch(resp: &Value) -> Vec<Value> {
    let b64 = resp["response"]["patch"].as_str().expect("a base64 patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn spark_driver_gets_a_patch_that_applies_to_the_pod() {
    let pod = driver_pod();
    let (status, body) = post(
        state(JobNamespaces::all()),
        MUTATE_POD_PATH,
        review(pod.clone(), "CREATE").to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let resp: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(resp["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(
        resp["response"]["uid"],
        "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
    );
    assert_eq!(resp["response"]["allowed"], true);
    assert_eq!(resp["response"]["patchType"], "JSONPatch");
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(decode_patch(&resp))).unwrap();
    let mut patched = pod;
    json_patch::patch(&mut patched, &patch).expect("the patch applies to the pod it was made for");
    assert_eq!(
        patched["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        patched["metadata"]["ownerReferences"][0]["kind"],
        "SparkApplication"
    );
    let mounts = &patched["spec"]["containers"][0]["volumeMounts"];
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/data"),
        "{mounts}"
    );
}

#[tokio::test]
async fn foreign_pods_updates_and_other_namespaces_pass_untouched() {
    let mut plain = driver_pod();
    plain["metadata"]["labels"] = json!({"app": "web"});
    let only_jobs = JobNamespaces::from_list(["jobs"]);
    for (st, body) in [
        (state(JobNamespaces::all()), review(plain, "CREATE")),
        (state(JobNamespaces::all()), review(driver_pod(), "UPDATE")),
        (state(only_jobs), review(driver_pod(), "CREATE")),
    ] {
        let (status, out) = post(st, MUTATE_POD_PATH, body.to_string().into_bytes()).await;
        assert_eq!(status, StatusCode::OK);
        let resp: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(resp["response"]["allowed"], true);
        assert!(
            resp["response"].get("patch").is_none(),
            "unexpected patch: {resp}"
        );
    }
}

#[tokio::test]
async fn malformed_and_foreign_bodies_get_400_with_a_reason() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not a JSON AdmissionReview"),
        (b"".to_vec(), "not a JSON AdmissionReview"),
        (b"\xff\xfe".to_vec(), "not a JSON AdmissionReview"),
        (json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": review(driver_pod(), "CREATE")["request"]}).to_string().into_bytes(), "only admission.k8s.io/v1"),
        (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string().into_bytes(), "no request"),
        (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}).to_string().into_bytes(), "not a JSON AdmissionReview"),
    ];
    for (body, needle) in cases {
        let (status, out) = post(state(JobNamespaces::all()), MUTATE_POD_PATH, body).await;
        let text = String::from_utf8_lossy(&out);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
}

#[tokio::test]
async fn bodies_over_the_apiserver_limit_get_413() {
    let mut pod = driver_pod();
    pod["metadata"]["annotations"] = json!({"big": "x".repeat(3 * 1024 * 1024 + 1)});
    let (status, _) = post(
        state(JobNamespaces::all()),
        MUTATE_POD_PATH,
        review(pod, "CREATE").to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_pod_of_an_app_that_cannot_be_applied_is_denied() {
    let st = state(JobNamespaces::all());
    let mut broken = app();
    broken.spec.driver.pod.volume_mounts =
        vec![serde_json::from_value(json!({"name": "undeclared", "mountPath": "/u"})).unwrap()];
    let st = WebhookState {
        apps: AppCache::with_apps([broken]),
        ..st
    };
    let (status, out) = post(
        st,
        MUTATE_POD_PATH,
        review(driver_pod(), "CREATE").to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let resp: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(resp["response"]["allowed"], false);
    let msg = resp["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("default/spark-pi") && msg.contains("undeclared"),
        "{msg}"
    );
}

#[tokio::test]
async fn validation_names_fields_and_passes_kubeflow_examples() {
    let ok: Value = serde_json::to_value(app()).unwrap();
    let mut r = review(ok, "CREATE");
    r["request"]["kind"] =
        json!({"group": "sparkoperator.k8s.io", "version": "v1beta2", "kind": "SparkApplication"});
    let (status, out) = post(
        state(JobNamespaces::all()),
        VALIDATE_APP_PATH,
        r.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let resp: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(resp["response"]["allowed"], true, "{resp}");

    let mut bad = serde_json::to_value(app()).unwrap();
    bad["spec"]["executor"]["instances"] = "many".into();
    r["request"]["object"] = bad;
    let (_, out) = post(
        state(JobNamespaces::all()),
        VALIDATE_APP_PATH,
        r.to_string().into_bytes(),
    )
    .await;
    let resp: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(resp["response"]["allowed"], false);
    let msg = resp["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("spec.executor.instances"), "{msg}");
}

#[tokio::test]
async fn a_spark_pod_that_is_not_a_valid_pod_is_denied_other_pods_pass() {
    let mut broken = driver_pod();
    broken["spec"]["containers"] = json!("not a list");
    let (status, out) = post(
        state(JobNamespaces::all()),
        MUTATE_POD_PATH,
        review(broken.clone(), "CREATE").to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let resp: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(resp["response"]["allowed"], false, "{resp}");
    let msg = resp["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("default/spark-pi") && msg.contains("cannot be read"),
        "{msg}"
    );

    broken["metadata"]["labels"] = json!({"app": "not-spark"});
    let (status, out) = post(
        state(JobNamespaces::all()),
        MUTATE_POD_PATH,
        review(broken, "CREATE").to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let resp: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    assert!(resp["response"].get("patch").is_none(), "{resp}");
}

/// A kube client whose apiserver accepts connections and never answers (a stalled apiserver),
/// with the listener kept alive by the returned handle.
async fn stalled_apiserver_client() -> (kube::Client, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (kube::Client::try_from(config).unwrap(), hold)
}

/// A driver pod we launched, of an app not in the cache: the review must GET it live.
fn cache_miss_review() -> Vec<u8> {
    let mut pod = driver_pod();
    pod["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = "not-cached-yet".into();
    pod["metadata"]["labels"]["sparkoperator.k8s.io/launched-by-spark-operator"] = "true".into();
    review(pod, "CREATE").to_string().into_bytes()
}

async fn post_timed(
    state: WebhookState,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let (status, out) = post(state, path, body).await;
    (
        status,
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// A review whose cache miss hits a stalled apiserver is answered 504, with the reason, before
/// the apiserver's `?timeout=` (which it appends to every call) runs out.
#[tokio::test]
async fn a_cache_miss_on_a_stalled_apiserver_is_answered_504_within_the_review_timeout() {
    let (client, _hold) = stalled_apiserver_client().await;
    let st = WebhookState {
        client: Some(client),
        ..state(JobNamespaces::all())
    };
    let path = format!("{MUTATE_POD_PATH}?timeout=2s");
    let (status, body, took) = post_timed(st, &path, cache_miss_review()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("timeout"), "{body}");
    assert!(
        took < std::time::Duration::from_secs(2),
        "answered after the review's timeout: {took:?}"
    );
}

/// Over the in-flight cap a review is refused at once with 503 and Retry-After, not queued;
/// the stuck ones still end in 504 within their timeout and free their slots.
#[tokio::test]
async fn reviews_over_the_in_flight_cap_are_refused_at_once() {
    use spark_webhook::webhook::ReviewLimits;
    let (client, _hold) = stalled_apiserver_client().await;
    let st = WebhookState {
        client: Some(client),
        limits: ReviewLimits::new(std::time::Duration::from_secs(10), 2, 20),
        ..state(JobNamespaces::all())
    };
    let path = format!("{MUTATE_POD_PATH}?timeout=3s");
    let stuck: Vec<_> = (0..2)
        .map(|_| {
            let (st, path) = (st.clone(), path.clone());
            tokio::spawn(async move { post_timed(st, &path, cache_miss_review()).await })
        })
        .collect();
    // Poll with SparkApplication reviews (answered in microseconds when a slot is free: 400
    // for this body) until the two stuck reviews hold both slots.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let (body, took) = loop {
        let req = Request::post(VALIDATE_APP_PATH)
            .body(Body::from("{}"))
            .unwrap();
        let started = std::time::Instant::now();
        let resp = router(st.clone()).oneshot(req).await.unwrap();
        let took = started.elapsed();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(
                resp.headers().get("retry-after").map(|v| v.as_bytes()),
                Some(&b"1"[..])
            );
            let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            break (String::from_utf8_lossy(&body).into_owned(), took);
        }
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(
            std::time::Instant::now() < deadline,
            "no review was refused while two were stuck"
        );
        tokio::task::yield_now().await;
    };
    assert!(body.contains("2 reviews already"), "{body}");
    assert!(
        took < std::time::Duration::from_millis(500),
        "not at once: {took:?}"
    );
    // A pod review too.
    let (status, _, took) = post_timed(st.clone(), &path, cache_miss_review()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < std::time::Duration::from_millis(500), "{took:?}");
    for s in stuck {
        let (status, body, took) = s.await.unwrap();
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
        assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    }
    // The slots are free again.
    let (status, _) = post(st, VALIDATE_APP_PATH, b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// An apiserver that knows no SparkApplication: every GET is a 404 Status, counted.
async fn counting_apiserver_client() -> (
    kube::Client,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let gets = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = gets.clone();
    let app = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::NOT_FOUND,
                [("content-type", "application/json")],
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (kube::Client::try_from(config).unwrap(), gets, serve)
}

/// Forged reviews naming apps that do not exist cannot force more live reads than the budget:
/// of 40 at once with a budget of 5 a second, the first 5 read at once, the next few wait their
/// turn (at most a second), and the rest are answered 503 at once, naming the flag. A pod we did
/// not launch whose app really does not exist is still allowed unmutated, as before.
#[tokio::test]
async fn forged_reviews_cannot_force_more_live_reads_than_the_budget() {
    use spark_webhook::webhook::ReviewLimits;
    use std::sync::atomic::Ordering;
    let (client, gets, _serve) = counting_apiserver_client().await;
    let st = WebhookState {
        client: Some(client),
        limits: ReviewLimits::new(std::time::Duration::from_secs(10), 256, 5),
        ..state(JobNamespaces::all())
    };
    let forged = |i: usize| {
        let mut pod = driver_pod();
        let labels = pod["metadata"]["labels"].as_object_mut().unwrap();
        labels.insert(
            "sparkoperator.k8s.io/app-name".into(),
            format!("forged-{i}").into(),
        );
        labels.remove("sparkoperator.k8s.io/launched-by-spark-operator");
        review(pod, "CREATE").to_string().into_bytes()
    };
    let started = std::time::Instant::now();
    let answers: Vec<_> = (0..40)
        .map(|i| {
            let (st, body) = (st.clone(), forged(i));
            tokio::spawn(async move { post_timed(st, MUTATE_POD_PATH, body).await })
        })
        .collect();
    let (mut allowed, mut refused) = (0, 0);
    for a in answers {
        let (status, body, took) = a.await.unwrap();
        match status {
            StatusCode::OK => {
                let resp: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(resp["response"]["allowed"], true, "{body}");
                assert!(resp["response"].get("patch").is_none(), "{body}");
                allowed += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(body.contains("--webhook-live-reads-per-second"), "{body}");
                assert!(
                    took < std::time::Duration::from_millis(500),
                    "not at once: {took:?}"
                );
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let reads = gets.load(Ordering::SeqCst);
    assert_eq!(reads, allowed, "one live read per allowed review");
    // A second's worth at once, plus what the budget refills while the rest wait (at most 1 s
    // each), plus what it refilled while this test ran.
    let most = 5.0 + 5.0 * (1.0 + elapsed);
    assert!(
        reads >= 5 && (reads as f64) <= most,
        "{reads} live reads in {elapsed:.2}s, budget 5/s"
    );
    assert_eq!(allowed + refused, 40);
    assert!(
        refused >= 40 - most as usize,
        "{refused} refused, {allowed} allowed"
    );
}
