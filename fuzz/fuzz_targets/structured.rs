//! Generated pods and SparkApplications (see `generate.rs`): every property of
//! tests/properties/check.rs, then the same pod through the real router with the generated app
//! in the cache, whose answer must agree with `mutate::pod_patch`.
#![no_main]

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use libfuzzer_sys::fuzz_target;
use spark_webhook::labels;
use spark_webhook::mutate::pod_patch;
use spark_webhook::webhook::{self, MUTATE_POD_PATH};
use spark_webhook_fuzz::check::{Checked, check};
use spark_webhook_fuzz::{generate, pod_review, send, state};

fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(Some(case)) = generate::case(&mut u) else {
        return;
    };
    let generate::Case {
        app,
        role,
        pod,
        opts,
    } = case;
    let checked = check(&app, role, &pod, &opts).unwrap_or_else(|violation| {
        panic!(
            "{violation}\nrole: {role}, opts: {opts:?}\napp: {}\npod: {pod}",
            serde_json::to_string(&app).unwrap_or_default()
        )
    });

    // The webhook's answer for the same pod.
    let router = webhook::router(state(vec![app.clone()], opts));
    let (status, answer) = send(
        router,
        MUTATE_POD_PATH,
        Some("10s"),
        pod_review(&pod, "u-1"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON answer");
    let response = &answer["response"];
    let ours = serde_json::from_value::<Pod>(pod.clone())
        .ok()
        .and_then(|p| labels::classify(&p))
        .is_some_and(|(r, name)| {
            r == role && name == app.metadata.name.clone().unwrap_or_default()
        });
    if !ours || pod.get("metadata").is_none() {
        return;
    }
    match checked {
        Checked::Refused(e) => {
            assert_eq!(response["allowed"], false, "refused with {e} but {answer}");
        }
        Checked::Mutated { ops } => {
            assert_eq!(response["allowed"], true, "{answer}");
            let expected = pod_patch(&app, role, &pod, &opts).expect("mutated");
            assert_eq!(ops, expected.0.len());
            match response["patch"].as_str() {
                None => assert!(expected.0.is_empty(), "no patch in {answer}"),
                Some(b64) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .expect("base64 patch");
                    let sent: serde_json::Value =
                        serde_json::from_slice(&bytes).expect("JSON patch");
                    assert_eq!(
                        sent,
                        serde_json::to_value(&expected).expect("patch"),
                        "{answer}"
                    );
                }
            }
        }
    }
});
