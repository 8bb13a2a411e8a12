//! Criterion micro-benchmarks of the pod review, in-process (no network, no TLS):
//!
//! - `pod_patch/*`: the pure mutation (`mutate::pod_patch`) of the recorded Spark 3.3.4 driver
//!   pod and of an executor pod, from `tests/bench/sparkapplication.yaml`;
//! - `review/*`: a whole review through the webhook's axum router (`tower::ServiceExt::oneshot`),
//!   from the AdmissionReview body bytes to the response body bytes: parsing, the app cache
//!   lookup, the mutation, the base64 patch and the JSON answer. `driver-8KiB` is the heavy
//!   review of the load run (the "in-process driver review" its target is about),
//!   `driver-plain` a Spark 3.5.3 driver pod of kubeflow's spark-pi example.
//!
//! Run with `make bench` (or `cargo bench --bench mutation -- --noplot`). Settings are kept
//! short (1 s warm-up, 3 s measurement, 30 samples) so the run takes well under a minute.

mod common;

/// The allocator the `spark-webhook` binary ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spark_webhook::labels::SparkRole;
use spark_webhook::mutate::{MutationOptions, pod_patch};
use spark_webhook::webhook;
use tower::ServiceExt as _;

fn bench_pod_patch(c: &mut Criterion) {
    let app = common::app();
    let opts = MutationOptions::default();
    let mut group = c.benchmark_group("pod_patch");
    for (name, role, pod) in [
        ("driver", SparkRole::Driver, common::driver_pod()),
        ("executor", SparkRole::Executor, common::executor_pod()),
    ] {
        let patch = pod_patch(&app, role, &pod, &opts).expect("the fixture pod is mutated");
        assert!(!patch.0.is_empty(), "{name}: the app must yield a patch");
        group.bench_function(name, |b| {
            b.iter(|| pod_patch(black_box(&app), role, black_box(&pod), &opts).expect("mutated"))
        });
    }
    group.finish();
}

fn review_request(body: Bytes) -> Request<Body> {
    Request::post(common::REVIEW_URI)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request")
}

/// One review through the router: body bytes in, response body bytes out.
async fn handle(router: axum::Router, body: Bytes) -> (StatusCode, Bytes) {
    let resp = router
        .oneshot(review_request(body))
        .await
        .expect("the router is infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("response body");
    (status, bytes)
}

fn bench_review(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let router = webhook::router(common::webhook_state());
    let mut group = c.benchmark_group("review");
    for (name, body) in [
        ("driver-8KiB", common::driver_review_8k().0),
        ("driver-plain", common::plain_driver_review()),
        (
            "executor",
            common::review(
                &common::executor_pod(),
                "9a1b7c3d-2e4f-4a6b-8c0d-e1f2a3b4c5d6",
            ),
        ),
    ] {
        let body = Bytes::from(body);
        let (status, answer) = rt.block_on(handle(router.clone(), body.clone()));
        assert_eq!(status, StatusCode::OK, "{name}: {answer:?}");
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON answer");
        assert_eq!(answer["response"]["allowed"], true, "{name}: {answer}");
        assert_eq!(
            answer["response"]["patchType"], "JSONPatch",
            "{name}: {answer}"
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| handle(router.clone(), black_box(body.clone())))
        });
    }
    group.finish();
}

/// What merely reading the 8 KiB driver review costs, without acting on it: a JSON validity
/// scan (`IgnoredAny`) and a parse into `serde_json::Value` (what the load run's parse-only
/// server does). These bound from below what any
/// review handler can cost, and so how close the TLS load run can come to its no-op floor.
fn bench_json_floor(c: &mut Criterion) {
    let body = common::driver_review_8k().0;
    let mut group = c.benchmark_group("json-floor");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("scan-8KiB", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).expect("JSON"))
    });
    group.bench_function("value-8KiB", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).expect("JSON"))
    });
    group.finish();
}

/// The heavy driver review's cost by stage: reading the pod typed out of the review, the rules
/// with their patch (on a fresh copy of the read pod, whose clone is measured alone), and the
/// answer (base64 of the patch inside the AdmissionReview JSON).
fn bench_review_stages(c: &mut Criterion) {
    use spark_webhook::mutate::{PodParts, patch_pod};
    use spark_webhook::webhook::review::{self, ReviewResponse};
    let app = common::app();
    let opts = MutationOptions::default();
    let body = common::driver_review_8k().0;
    let mut group = c.benchmark_group("review-stages");
    group.bench_function("parse-typed-8KiB", |b| {
        b.iter(|| review::parse::<PodParts>(black_box(&body)).expect("review"))
    });
    let pod = review::parse::<PodParts>(&body)
        .expect("review")
        .object
        .expect("object")
        .into_pod();
    group.bench_function("clone-pod", |b| b.iter(|| black_box(&pod).clone()));
    group.bench_function("rules-and-patch+clone", |b| {
        b.iter(|| {
            let mut p = black_box(&pod).clone();
            patch_pod(&app, SparkRole::Driver, &mut p, &opts).expect("mutated")
        })
    });
    let patch = patch_pod(&app, SparkRole::Driver, &mut pod.clone(), &opts).expect("mutated");
    group.bench_function("answer", |b| {
        // The patch's bytes are handed over, as the webhook hands them: copied outside the timing.
        b.iter_batched(
            || patch.json().to_vec(),
            |json| {
                ReviewResponse::patched("9a1b7c3d-2e4f", black_box(json))
                    .to_body()
                    .expect("JSON")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench_pod_patch, bench_review, bench_json_floor, bench_review_stages
}
criterion_main!(benches);
