//! Arbitrary bytes into both review handlers, through the real axum router, with the bench
//! app in the cache. Input: an optional `?timeout=` value, a newline, then the body (a line
//! longer than 40 bytes, or no newline, means the whole input is the body and the timeout is
//! 10s). Any answer is fine except a panic or a 5xx other than the deadline's 504; a 200 must
//! be an AdmissionReview answering the request's uid.
#![no_main]

use axum::http::StatusCode;
use libfuzzer_sys::fuzz_target;
use spark_webhook::webhook::{MUTATE_POD_PATH, VALIDATE_APP_PATH};
use spark_webhook_fuzz::{bench_router, send};

fuzz_target!(|data: &[u8]| {
    let (timeout, body) = match data.iter().take(41).position(|&b| b == b'\n') {
        Some(i) => (url_encode(&data[..i]), &data[i + 1..]),
        None => ("10s".to_string(), data),
    };
    for path in [MUTATE_POD_PATH, VALIDATE_APP_PATH] {
        let (status, answer) = send(bench_router(), path, Some(&timeout), body.to_vec());
        assert!(
            !status.is_server_error() || status == StatusCode::GATEWAY_TIMEOUT,
            "{path}?timeout={timeout}: {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        if status == StatusCode::OK {
            let v: serde_json::Value = serde_json::from_slice(&answer).expect("a JSON answer");
            assert_eq!(v["kind"], "AdmissionReview", "{v}");
            assert!(v["response"]["uid"].is_string(), "{v}");
            assert!(v["response"]["allowed"].is_boolean(), "{v}");
        }
    }
});

fn url_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
