//! End-to-end: the SparkApplication CRD on a real kube-apiserver, driven by the real kubectl.

mod common;

use common::{cluster, install_crd, kubectl, kubectl_ok, namespace};
use serde_json::Value;

const PI: &str = include_str!("fixtures/sparkapplication-pi.yaml");
const FULL: &str = include_str!("fixtures/sparkapplication-full.yaml");

/// The fixture with its metadata pointed at `ns` (fixtures carry no status for apply).
fn manifest(yaml: &str, ns: &str, name: &str) -> String {
    let mut v: Value = yaml_serde::from_str(yaml).expect("fixture YAML");
    v["metadata"] = serde_json::json!({"name": name, "namespace": ns});
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    serde_json::to_string(&v).expect("json")
}

fn get_json(args: &[&str]) -> Value {
    serde_json::from_str(&kubectl_ok(args, None)).expect("kubectl -o json output")
}

#[tokio::test]
async fn crd_installs_with_plain_kubectl_apply_and_is_served() {
    cluster();
    install_crd();
    // Idempotent: applying again succeeds and changes nothing.
    let crd = common::repo_root().join("manifests/crd/sparkoperator.k8s.io_sparkapplications.yaml");
    let out = kubectl_ok(&["apply", "-f", crd.to_str().unwrap()], None);
    assert!(
        out.contains("unchanged"),
        "second apply should be a no-op: {out}"
    );
    let got = get_json(&[
        "get",
        "crd",
        "sparkapplications.sparkoperator.k8s.io",
        "-o",
        "json",
    ]);
    assert_eq!(
        got["spec"]["names"]["shortNames"],
        serde_json::json!(["sparkapp", "sparkapps"])
    );
    let established = got["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established, "CRD not established: {got}");
    let api_resources = kubectl_ok(&["api-resources", "--api-group=sparkoperator.k8s.io"], None);
    assert!(api_resources.contains("sparkapp"), "{api_resources}");
}

#[tokio::test]
async fn realistic_apps_apply_and_read_back_unchanged() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "crd-roundtrip").await;
    for (yaml, name) in [(PI, "spark-pi"), (FULL, "full")] {
        let sent: Value = serde_json::from_str(&manifest(yaml, &ns, name)).unwrap();
        kubectl_ok(&["apply", "-f", "-"], Some(&sent.to_string()));
        let stored = get_json(&["get", "sparkapplication", name, "-n", &ns, "-o", "json"]);
        // Nothing pruned, nothing added by the schema: the spec reads back exactly as sent.
        assert_eq!(
            stored["spec"], sent["spec"],
            "{name}: spec changed in the apiserver"
        );
    }
    // The typed client reads them too.
    let api: kube::Api<spark_webhook::crd::SparkApplication> = kube::Api::namespaced(client, &ns);
    let full = api.get("full").await.expect("typed GET of the full app");
    assert_eq!(
        full.spec.deps.archives,
        vec!["https://example.com/deps.zip#deps".to_string()]
    );
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "crd-columns").await;
    kubectl_ok(&["apply", "-f", "-"], Some(&manifest(PI, &ns, "spark-pi")));
    // Write a status through the status subresource, as the reconciler will.
    let api: kube::Api<spark_webhook::crd::SparkApplication> = kube::Api::namespaced(client, &ns);
    let status = serde_json::json!({"status": {
        "applicationState": {"state": "COMPLETED"},
        "executionAttempts": 2,
        "lastSubmissionAttemptTime": "2026-11-23T10:00:00Z",
        "terminationTime": "2026-11-23T10:05:00Z",
        "driverInfo": {}
    }});
    api.patch_status(
        "spark-pi",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .expect("status subresource");
    let table = kubectl_ok(&["get", "sparkapp", "-n", &ns], None);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SUSPEND", "STATUS", "ATTEMPTS", "START", "FINISH", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        [
            "spark-pi",
            "COMPLETED",
            "2",
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:05:00Z"
        ],
        "{table}"
    );
}

#[tokio::test]
async fn invalid_apps_are_refused_with_a_readable_message() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "crd-invalid").await;
    let mut wrong_type: Value = serde_json::from_str(&manifest(PI, &ns, "wrong-type")).unwrap();
    wrong_type["spec"]["executor"]["instances"] = "two".into();
    let out = common::kubectl_stdin(&["apply", "-f", "-"], Some(&wrong_type.to_string()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an app with instances: \"two\" must be refused"
    );
    assert!(
        err.contains("spec.executor.instances") && err.contains("integer"),
        "unreadable refusal: {err}"
    );

    let mut bad_enum: Value = serde_json::from_str(&manifest(PI, &ns, "bad-enum")).unwrap();
    bad_enum["spec"]["type"] = "Go".into();
    let out = common::kubectl_stdin(&["apply", "-f", "-"], Some(&bad_enum.to_string()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an app with type: Go must be refused"
    );
    assert!(
        err.contains("spec.type") && err.contains("Unsupported value") && err.contains("Python"),
        "{err}"
    );
}

#[tokio::test]
async fn kubectl_explain_documents_the_fields() {
    cluster();
    install_crd();
    // `explain` reads the published OpenAPI, which the apiserver refreshes shortly after a CRD
    // change: poll briefly.
    let mut last = String::new();
    for _ in 0..100 {
        let out = kubectl(&["explain", "sparkapplication.spec.deps.archives"]);
        last = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && last.contains("DESCRIPTION") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        last.contains("spark.archives"),
        "explain says nothing useful:\n{last}"
    );
    assert!(
        last.contains("#") && last.contains("directory name"),
        "explain should say what a #alias suffix does:\n{last}"
    );
}

/// Empty strings are valid values (label values, arguments); an apiserver built with a newer Go
/// than 1.20 shipped with refuses them unless provision.sh patches its OpenAPI null check.
#[tokio::test]
async fn empty_strings_are_accepted_in_apps() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "crd-empty").await;
    let mut v: Value = serde_json::from_str(&manifest(PI, &ns, "empty")).unwrap();
    v["spec"]["arguments"] = serde_json::json!(["", "10"]);
    v["spec"]["driver"]["labels"] = serde_json::json!({"tier": ""});
    kubectl_ok(&["apply", "-f", "-"], Some(&v.to_string()));
    let stored = get_json(&["get", "sparkapplication", "empty", "-n", &ns, "-o", "json"]);
    assert_eq!(stored["spec"]["arguments"], serde_json::json!(["", "10"]));
}
