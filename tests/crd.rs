//! SparkApplication types and CRD: kubeflow YAML compatibility, lossless round trips, and the
//! committed CRD manifest (drift, size, 1.20-structural shape).
//!
//! Regenerate the manifest with `make manifests` (`UPDATE_MANIFESTS=1 cargo test --test crd`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use spark_webhook::crd::{
    ApplicationStateType, ConcurrencyPolicy, DeployMode, ExecutorState, RestartPolicyType,
    ScheduleState, ScheduledSparkApplication, SecretType, SparkApplication, SparkApplicationType,
    SparkConnect, SparkConnectState, SparkConnectStatus, connect_crd, connect_crd_yaml, crd,
    crd_yaml, scheduled_crd, scheduled_crd_yaml,
};

const MANIFEST: &str = "manifests/crd/sparkoperator.k8s.io_sparkapplications.yaml";
const SCHEDULED_MANIFEST: &str =
    "manifests/crd/sparkoperator.k8s.io_scheduledsparkapplications.yaml";
const CONNECT_MANIFEST: &str = "manifests/crd/sparkoperator.k8s.io_sparkconnects.yaml";
/// Client-side `kubectl apply` copies the object into an annotation capped at 256 KiB; stay well
/// below it.
const SIZE_BUDGET: usize = 200 * 1024;

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    let path = repo_path(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Parses a fixture; yaml_serde errors carry the field path (e.g. `spec.executor.instances`).
fn parse(rel: &str) -> SparkApplication {
    yaml_serde::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} does not deserialise: {e}"))
}

/// Paths where two JSON values differ, for a readable round-trip failure.
fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => diff(&format!("{path}.{k}"), wv, gv, out),
                    None => out.push(format!("{path}.{k}: dropped (was {wv})")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{path}.{k}: added ({})", g[k]));
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                diff(&format!("{path}[{i}]"), wv, gv, out);
            }
        }
        _ if want != got => out.push(format!("{path}: {want} became {got}")),
        _ => {}
    }
}

fn assert_round_trip(rel: &str) -> SparkApplication {
    let input: Value = yaml_serde::from_str(&read(rel)).expect("fixture is valid YAML");
    let app = parse(rel);
    let output = serde_json::to_value(&app).expect("serialise");
    let mut diffs = Vec::new();
    diff("", &input, &output, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{rel} does not round-trip losslessly:\n  {}",
        diffs.join("\n  ")
    );
    // And the typed value survives a second pass unchanged.
    let again: SparkApplication = serde_json::from_value(output).expect("re-deserialise");
    assert_eq!(again, app);
    app
}

#[test]
fn full_fixture_round_trips_losslessly() {
    let app = assert_round_trip("tests/fixtures/sparkapplication-full.yaml");
    let spec = &app.spec;
    assert_eq!(spec.type_, SparkApplicationType::Python);
    assert_eq!(spec.mode, Some(DeployMode::Cluster));
    assert_eq!(spec.suspend, Some(false));
    assert_eq!(spec.deps.archives, ["https://example.com/deps.zip#deps"]);
    assert_eq!(
        spec.restart_policy.effective_type(),
        RestartPolicyType::OnFailure
    );
    assert_eq!(spec.executor.instances, Some(4));
    assert_eq!(spec.executor.pod.cores, Some(2));
    assert_eq!(spec.driver.pod.memory.as_deref(), Some("2g"));
    let secret_types: Vec<_> = spec
        .driver
        .pod
        .secrets
        .iter()
        .map(|s| s.secret_type)
        .collect();
    assert_eq!(
        secret_types,
        [
            SecretType::GCPServiceAccount,
            SecretType::HadoopDelegationToken,
            SecretType::Generic
        ]
    );
    assert!(spec.driver.pod.template.is_some());
    assert_eq!(spec.driver.pod.sidecars[0].name, "log-shipper");
    assert!(
        spec.dynamic_allocation
            .as_ref()
            .is_some_and(|d| d.is_enabled())
    );

    let status = app.status.as_ref().expect("fixture has a status");
    assert_eq!(status.application_state.state, ApplicationStateType::Failed);
    assert_eq!(status.execution_attempts, 2);
    assert_eq!(
        status.executor_state.get("etl-nightly-exec-2"),
        Some(&ExecutorState::Failed)
    );
    assert_eq!(status.driver_info.web_ui_port, 4040);
    assert!(status.last_submission_attempt_time.is_some());
}

#[test]
fn pi_fixture_round_trips_losslessly() {
    let app = assert_round_trip("tests/fixtures/sparkapplication-pi.yaml");
    assert_eq!(app.spec.type_, SparkApplicationType::Scala);
    assert_eq!(
        app.spec.main_application_file.as_deref(),
        Some("local:///opt/spark/examples/jars/spark-examples.jar")
    );
    assert_eq!(app.spec.image.as_deref(), Some("spark:3.5.3"));
    assert_eq!(app.spec.driver.pod.cores, Some(1));
    assert_eq!(app.spec.driver.pod.memory.as_deref(), Some("512m"));
    assert_eq!(
        app.spec.driver.pod.service_account.as_deref(),
        Some("spark")
    );
    assert_eq!(app.spec.executor.instances, Some(1));
    assert!(app.status.is_none());
}

#[test]
fn unknown_application_type_is_rejected_naming_the_field() {
    let yaml = read("tests/fixtures/sparkapplication-pi.yaml").replace("type: Scala", "type: Go");
    let err = yaml_serde::from_str::<SparkApplication>(&yaml)
        .expect_err("type: Go must not deserialise")
        .to_string();
    assert!(
        err.contains("spec.type"),
        "error does not name the field: {err}"
    );
    assert!(err.contains("Go"), "error does not name the value: {err}");
}

#[test]
fn wrong_json_type_is_rejected_naming_the_field() {
    let yaml = read("tests/fixtures/sparkapplication-pi.yaml")
        .replace("instances: 1", "instances: \"two\"");
    let err = yaml_serde::from_str::<SparkApplication>(&yaml)
        .expect_err("instances: \"two\" must not deserialise")
        .to_string();
    assert!(
        err.contains("spec.executor.instances"),
        "error does not name the field: {err}"
    );
}

#[test]
fn missing_required_field_is_rejected() {
    let yaml =
        read("tests/fixtures/sparkapplication-pi.yaml").replace("  sparkVersion: 3.5.3\n", "");
    let err = yaml_serde::from_str::<SparkApplication>(&yaml)
        .expect_err("sparkVersion is required")
        .to_string();
    assert!(err.contains("sparkVersion"), "{err}");
}

#[test]
fn committed_manifest_matches_generated_crd() {
    let generated = crd_yaml();
    assert_eq!(generated, crd_yaml(), "crd_yaml() is not deterministic");
    let path = repo_path(MANIFEST);
    if std::env::var("UPDATE_MANIFESTS").is_ok_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create manifests/crd");
        }
        std::fs::write(&path, &generated).expect("write manifest");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{MANIFEST} is out of date with the Rust types; run `make manifests` \
         (UPDATE_MANIFESTS=1 cargo test --test crd) and commit the result"
    );
}

#[test]
fn crd_fits_client_side_apply() {
    let yaml = crd_yaml();
    assert!(
        yaml.len() < SIZE_BUDGET,
        "CRD YAML is {} bytes, budget {SIZE_BUDGET}",
        yaml.len()
    );
    let json = serde_json::to_string(&crd()).expect("serialise");
    assert!(json.len() < SIZE_BUDGET, "CRD JSON is {} bytes", json.len());
}

fn crd_json() -> Value {
    serde_json::to_value(crd()).expect("serialise")
}

fn schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Follows `.a.b` through `properties` of the schema; `items` and `additionalProperties` step
/// into list items and map values.
fn node<'a>(schema: &'a Value, dotted: &str) -> &'a Value {
    dotted
        .split('.')
        .filter(|s| !s.is_empty())
        .fold(schema, |n, key| match key {
            "items" | "additionalProperties" => &n[key],
            _ => &n["properties"][key],
        })
}

#[test]
fn crd_metadata_names_and_columns() {
    let crd = crd_json();
    assert_eq!(
        crd["metadata"]["name"],
        "sparkapplications.sparkoperator.k8s.io"
    );
    assert_eq!(
        crd["metadata"]["annotations"]["api-approved.kubernetes.io"],
        "https://github.com/kubeflow/spark-operator/pull/1298"
    );
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "sparkoperator.k8s.io");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "SparkApplication");
    assert_eq!(spec["names"]["plural"], "sparkapplications");
    assert_eq!(spec["names"]["singular"], "sparkapplication");
    assert_eq!(
        spec["names"]["shortNames"],
        serde_json::json!(["sparkapp", "sparkapps"])
    );
    assert!(spec.get("selectableFields").is_none());

    let versions = spec["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    let v = &versions[0];
    assert_eq!(v["name"], "v1beta2");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert_eq!(v["subresources"]["status"], serde_json::json!({}));
    assert!(v.get("selectableFields").is_none());

    let columns: Vec<(String, String, String)> = v["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("type"), s("jsonPath"))
        })
        .collect();
    // kubeflow v2.5's columns, Suspend first as there.
    let expected = [
        ("Suspend", "boolean", ".spec.suspend"),
        ("Status", "string", ".status.applicationState.state"),
        ("Attempts", "string", ".status.executionAttempts"),
        ("Start", "string", ".status.lastSubmissionAttemptTime"),
        ("Finish", "string", ".status.terminationTime"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(columns, expected);
}

/// Checks the 1.20 structural-schema rules we rely on, collecting every violation.
fn check_structural(path: &str, n: &Value, errors: &mut Vec<String>) {
    let Some(obj) = n.as_object() else {
        errors.push(format!("{path}: schema node is not an object"));
        return;
    };
    for banned in [
        "x-kubernetes-validations",
        "$ref",
        "$schema",
        "definitions",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "default",
        "uniqueItems",
    ] {
        if obj.contains_key(banned) {
            errors.push(format!("{path}: has `{banned}`"));
        }
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match obj.get("type").and_then(Value::as_str) {
        Some(_) if int_or_string => errors.push(format!("{path}: int-or-string with a type")),
        Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
        Some(other) => errors.push(format!("{path}: bad type {other}")),
        None if int_or_string => {}
        None => errors.push(format!("{path}: no type")),
    }
    if preserve && obj.get("type").and_then(Value::as_str) != Some("object") {
        errors.push(format!("{path}: preserve-unknown node is not type object"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        errors.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            check_structural(&format!("{path}.{k}"), v, errors);
        }
    }
    if let Some(items) = obj.get("items") {
        check_structural(&format!("{path}[]"), items, errors);
    }
    if let Some(extra) = obj.get("additionalProperties") {
        if extra.is_object() {
            check_structural(&format!("{path}{{}}"), extra, errors);
        } else {
            errors.push(format!("{path}: additionalProperties is not a schema"));
        }
    }
}

#[test]
fn schema_is_structural_for_kubernetes_1_20() {
    let mut errors = Vec::new();
    check_structural("", &schema(), &mut errors);
    assert!(
        errors.is_empty(),
        "not structural:\n  {}",
        errors.join("\n  ")
    );
    let text = crd_yaml();
    for banned in ["x-kubernetes-validations", "$ref", "selectableFields"] {
        assert!(!text.contains(banned), "CRD contains {banned}");
    }
}

/// Every property (ours and the embedded core types') explains itself to `kubectl explain`.
#[test]
fn every_property_has_a_description() {
    fn walk(path: &str, n: &Value, missing: &mut Vec<String>) {
        if let Some(props) = n.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v.get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    missing.push(p.clone());
                }
                walk(&p, v, missing);
            }
        }
        if let Some(items) = n.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
        if let Some(extra) = n.get("additionalProperties") {
            walk(&format!("{path}{{}}"), extra, missing);
        }
    }
    let mut missing = Vec::new();
    walk(".spec", node(&schema(), "spec"), &mut missing);
    walk(".status", node(&schema(), "status"), &mut missing);
    assert!(
        missing.is_empty(),
        "no description:\n  {}",
        missing.join("\n  ")
    );

    let archives = node(&schema(), "spec.deps.archives")["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        archives.contains("spark.archives") && archives.contains('#'),
        "{archives}"
    );
}

#[test]
fn required_fields_enums_and_bounds_follow_go() {
    let s = schema();
    let required = |p: &str| -> Vec<String> {
        let mut r: Vec<String> = node(&s, p)["required"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        r.sort();
        r
    };
    // Go also lists mainApplicationFile; it is optional here on purpose (and in practice).
    assert_eq!(
        required("spec"),
        ["driver", "executor", "sparkVersion", "type"]
    );
    assert_eq!(
        required("spec.monitoring"),
        ["exposeDriverMetrics", "exposeExecutorMetrics"]
    );
    assert_eq!(required("spec.monitoring.prometheus"), ["jmxExporterJar"]);
    assert_eq!(required("spec.driver.gpu"), ["name", "quantity"]);
    assert_eq!(required("status.applicationState"), ["state"]);
    assert!(required("spec.restartPolicy").is_empty());
    assert_eq!(
        required("spec.driver.secrets.items"),
        ["name", "path", "secretType"]
    );
    assert_eq!(
        required("spec.executor.ports.items"),
        ["containerPort", "name", "protocol"]
    );
    assert_eq!(
        required("spec.driverIngressOptions.items"),
        ["servicePort", "servicePortName"]
    );
    assert_eq!(
        required("spec.driver.envSecretKeyRefs.additionalProperties"),
        ["key", "name"]
    );

    let enum_of = |p: &str| node(&s, p)["enum"].clone();
    assert_eq!(
        enum_of("spec.type"),
        serde_json::json!(["Java", "Scala", "Python", "R"])
    );
    assert_eq!(
        enum_of("spec.mode"),
        serde_json::json!(["cluster", "client", "in-cluster-client"])
    );
    assert_eq!(
        enum_of("spec.restartPolicy.type"),
        serde_json::json!(["Never", "OnFailure", "Always"])
    );
    assert_eq!(enum_of("spec.pythonVersion"), serde_json::json!(["2", "3"]));
    assert_eq!(
        node(&s, "spec.driver.secrets")["items"]["properties"]["secretType"]["enum"],
        serde_json::json!(["GCPServiceAccount", "HadoopDelegationToken", "Generic"])
    );

    let min = |p: &str| node(&s, p)["minimum"].as_f64();
    assert_eq!(min("spec.executor.instances"), Some(1.0));
    assert_eq!(min("spec.executor.cores"), Some(1.0));
    assert_eq!(min("spec.driver.cores"), Some(1.0));
    assert_eq!(min("spec.restartPolicy.onFailureRetries"), Some(0.0));
    assert_eq!(
        min("spec.restartPolicy.onSubmissionFailureRetries"),
        Some(0.0)
    );
    assert_eq!(min("spec.restartPolicy.onFailureRetryInterval"), Some(1.0));
    assert_eq!(
        min("spec.restartPolicy.onSubmissionFailureRetryInterval"),
        Some(1.0)
    );
    assert_eq!(min("spec.monitoring.prometheus.port"), Some(1024.0));
    assert_eq!(
        node(&s, "spec.monitoring.prometheus.port")["maximum"].as_f64(),
        Some(49151.0)
    );
    // Quantities accept integers as well as strings, as in Go.
    assert_eq!(
        node(&s, "spec.batchSchedulerOptions.resources")["additionalProperties"]["x-kubernetes-int-or-string"],
        true
    );
    // The Go CRD marks the status times nullable (Go writes null for unset times).
    assert_eq!(node(&s, "status.terminationTime")["nullable"], true);
}

#[test]
fn large_core_types_are_preserve_unknown() {
    let s = schema();
    for side in ["driver", "executor"] {
        for field in ["template", "affinity"] {
            let n = node(&s, &format!("spec.{side}.{field}"));
            assert_eq!(n["type"], "object", "{side}.{field}");
            assert_eq!(
                n["x-kubernetes-preserve-unknown-fields"], true,
                "{side}.{field}"
            );
        }
        for field in ["sidecars", "initContainers"] {
            let n = node(&s, &format!("spec.{side}.{field}"));
            assert_eq!(n["items"]["x-kubernetes-preserve-unknown-fields"], true);
        }
        // Smaller core types keep their full schema.
        let env = node(&s, &format!("spec.{side}.env"));
        assert!(env["items"]["properties"]["valueFrom"].is_object());
    }
    assert_eq!(
        node(&s, "spec.volumes")["items"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
}

/// Writes (`UPDATE_MANIFESTS=1`) or checks a committed manifest against its generator.
fn committed_matches(rel: &str, generated: &str) {
    let path = repo_path(rel);
    if std::env::var("UPDATE_MANIFESTS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, generated).expect("write manifest");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{rel} is out of date with the Rust types; run `make manifests` and commit the result"
    );
}

#[test]
fn committed_scheduled_manifest_matches_generated_crd() {
    let generated = scheduled_crd_yaml();
    assert_eq!(generated, scheduled_crd_yaml(), "not deterministic");
    committed_matches(SCHEDULED_MANIFEST, &generated);
    assert!(generated.len() < SIZE_BUDGET, "{} bytes", generated.len());
}

/// Every kubeflow ScheduledSparkApplication example reads and writes back without a field lost.
#[test]
fn kubeflow_scheduled_examples_round_trip_losslessly() {
    for rel in [
        "tests/fixtures/spark-pi-scheduled.yaml",
        "tests/fixtures/scheduledsparkapplication-sample.yaml",
    ] {
        let input: Value = yaml_serde::from_str(&read(rel)).expect("valid YAML");
        let app: ScheduledSparkApplication =
            yaml_serde::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let output = serde_json::to_value(&app).expect("serialise");
        let mut diffs = Vec::new();
        diff("", &input, &output, &mut diffs);
        assert!(diffs.is_empty(), "{rel}:\n  {}", diffs.join("\n  "));
        assert_eq!(app.spec.schedule, "@every 3m");
        assert_eq!(app.spec.policy(), ConcurrencyPolicy::Allow);
        assert_eq!(app.spec.template.type_, SparkApplicationType::Scala);
    }
}

/// kubeflow writes `lastRun: null` and `scheduleState: Scheduled`; both read back.
#[test]
fn kubeflows_scheduled_status_reads() {
    let status: spark_webhook::crd::ScheduledSparkApplicationStatus =
        serde_json::from_value(serde_json::json!({
            "lastRun": null, "nextRun": "2026-01-01T00:03:00Z", "scheduleState": "Scheduled",
            "pastSuccessfulRunNames": ["a-1"], "lastRunName": "a-1"
        }))
        .expect("kubeflow status");
    assert_eq!(status.schedule_state, ScheduleState::Scheduled);
    assert_eq!(status.last_run, None);
    assert!(status.next_run.is_some());
    let fresh: spark_webhook::crd::ScheduledSparkApplicationStatus =
        serde_json::from_value(serde_json::json!({"scheduleState": ""})).expect("new");
    assert_eq!(fresh.schedule_state, ScheduleState::New);
}

#[test]
fn scheduled_crd_has_kubeflows_names_columns_and_status() {
    let crd = serde_json::to_value(scheduled_crd()).expect("serialise");
    assert_eq!(
        crd["metadata"]["name"],
        "scheduledsparkapplications.sparkoperator.k8s.io"
    );
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["scheduledsparkapp"])
    );
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1beta2");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        columns,
        [
            "Schedule",
            "TimeZone",
            "Suspend",
            "Last Run",
            "Next Run",
            "Last Run Name",
            "Age"
        ]
    );
    let schema = &version["schema"]["openAPIV3Schema"];
    assert_eq!(
        schema["properties"]["spec"]["required"],
        serde_json::json!(["schedule", "template"])
    );
    // The template is the SparkApplication's spec schema, whole.
    let app_spec = &serde_json::to_value(crd_v(crd_yaml())).expect("v")["spec"]["versions"][0]["schema"]
        ["openAPIV3Schema"]["properties"]["spec"];
    let mut template = schema["properties"]["spec"]["properties"]["template"].clone();
    let mut app_spec = app_spec.clone();
    for v in [&mut template, &mut app_spec] {
        v.as_object_mut().expect("object").remove("description");
    }
    assert_eq!(template, app_spec);
    assert_eq!(
        schema["properties"]["status"]["properties"]["lastRun"]["nullable"],
        serde_json::json!(true)
    );
}

fn crd_v(yaml: String) -> Value {
    yaml_serde::from_str(&yaml).expect("yaml")
}

#[test]
fn committed_connect_manifest_matches_generated_crd() {
    let generated = connect_crd_yaml();
    assert_eq!(generated, connect_crd_yaml(), "not deterministic");
    committed_matches(CONNECT_MANIFEST, &generated);
    assert!(generated.len() < SIZE_BUDGET, "{} bytes", generated.len());
}

/// kubeflow's SparkConnect example reads and writes back without a field lost but those no
/// Kubernetes type has: its pod-level `securityContext` carries two container-only fields,
/// which kubeflow's Go types (and the kubelet) drop as well; CPU quantities become strings.
#[test]
fn kubeflow_connect_example_round_trips_but_for_what_kubernetes_drops() {
    let rel = "tests/fixtures/spark-connect.yaml";
    let input: Value = yaml_serde::from_str(&read(rel)).expect("valid YAML");
    let conn: SparkConnect =
        yaml_serde::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let output = serde_json::to_value(&conn).expect("serialise");
    let mut diffs = Vec::new();
    diff("", &input, &output, &mut diffs);
    let mut expected = Vec::new();
    for role in ["executor", "server"] {
        if role == "server" {
            for at in ["limits", "requests"] {
                expected.push(format!(
                    ".spec.server.template.spec.containers[0].resources.{at}.cpu: 1 became \"1\""
                ));
            }
        }
        expected.push(format!(".spec.{role}.template.spec.securityContext.allowPrivilegeEscalation: dropped (was false)"));
        expected.push(format!(".spec.{role}.template.spec.securityContext.capabilities: dropped (was {{\"drop\":[\"ALL\"]}})"));
    }
    diffs.sort();
    expected.sort();
    assert_eq!(diffs, expected, "{rel}");
    assert_eq!(conn.spec.executor.instances, Some(2));
    assert_eq!(conn.spec.executor.pod.memory.as_deref(), Some("512m"));
}

/// A status as kubeflow's controller writes it reads back field for field.
#[test]
fn kubeflows_connect_status_round_trips() {
    let written = serde_json::json!({
        "conditions": [{"type": "ServerPodReady", "status": "True", "reason": "ServerPodReady",
            "message": "Server pod is ready", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "state": "Ready",
        "server": {"podName": "c-server", "podIp": "10.0.0.5", "serviceName": "c-server"},
        "executors": {"running": 2},
        "startTime": "2026-01-01T00:00:00Z",
        "lastUpdateTime": "2026-01-01T00:00:01Z"
    });
    let status: SparkConnectStatus = serde_json::from_value(written.clone()).expect("reads");
    assert_eq!(status.state, SparkConnectState::Ready);
    assert_eq!(status.server.pod_ip, "10.0.0.5");
    assert_eq!(serde_json::to_value(&status).expect("writes"), written);
}

#[test]
fn connect_crd_has_kubeflows_names_columns_and_schema() {
    let ours = serde_json::to_value(connect_crd()).expect("serialise");
    let mut theirs: Value = yaml_serde::from_str(&read(
        "tests/fixtures/kubeflow/sparkoperator.k8s.io_sparkconnects.yaml",
    ))
    .expect("kubeflow CRD");
    // The apiserver fills listKind in (<Kind>List), as kube's derive leaves it out.
    theirs["spec"]["names"]
        .as_object_mut()
        .expect("names")
        .remove("listKind");
    for pointer in [
        "/metadata/name",
        "/spec/group",
        "/spec/names",
        "/spec/scope",
        "/spec/versions/0/name",
        "/spec/versions/0/subresources",
        "/spec/versions/0/additionalPrinterColumns",
    ] {
        assert_eq!(ours.pointer(pointer), theirs.pointer(pointer), "{pointer}");
    }
    // Every field kubeflow's schema has, ours has, with the same type (down to where ours keeps
    // core types as preserve-unknown objects).
    let root = "/spec/versions/0/schema/openAPIV3Schema";
    let mut missing = Vec::new();
    // apiVersion, kind and metadata are the apiserver's own, whatever the schema says.
    for part in ["spec", "status"] {
        let at = format!("{root}/properties/{part}");
        same_fields(
            part,
            &theirs.pointer(&at).cloned().unwrap_or_default(),
            &ours.pointer(&at).cloned().unwrap_or_default(),
            &mut missing,
        );
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    let spec = ours
        .pointer(&format!("{root}/properties/spec/required"))
        .expect("required");
    assert_eq!(
        spec,
        &serde_json::json!(["executor", "server", "sparkVersion"])
    );
}

/// Paths of `theirs` schema missing or typed differently in `ours`.
fn same_fields(path: &str, theirs: &Value, ours: &Value, out: &mut Vec<String>) {
    if ours["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    if theirs["type"] != ours["type"] {
        out.push(format!(
            "{path}: type {} vs {}",
            theirs["type"], ours["type"]
        ));
        return;
    }
    for key in ["properties"] {
        if let Some(props) = theirs[key].as_object() {
            for (name, schema) in props {
                match ours[key].get(name) {
                    Some(o) => same_fields(&format!("{path}.{name}"), schema, o, out),
                    None => out.push(format!("{path}.{name}: missing")),
                }
            }
        }
    }
    if theirs["items"].is_object() {
        same_fields(&format!("{path}[]"), &theirs["items"], &ours["items"], out);
    }
    if theirs["additionalProperties"].is_object() {
        same_fields(
            &format!("{path}{{}}"),
            &theirs["additionalProperties"],
            &ours["additionalProperties"],
            out,
        );
    }
}
