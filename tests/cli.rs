//! The binary's command line: outputs users pipe into kubectl, and one clear line on bad input.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    run_with(args, "/nonexistent/kubeconfig")
}

fn run_with(args: &[&str], kubeconfig: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spark-webhook"))
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("running spark-webhook")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn crds_prints_the_committed_crds() {
    let out = run(&["crds"]);
    assert!(out.status.success());
    let apps = include_str!("../manifests/crd/sparkoperator.k8s.io_sparkapplications.yaml");
    let scheduled =
        include_str!("../manifests/crd/sparkoperator.k8s.io_scheduledsparkapplications.yaml");
    let connect = include_str!("../manifests/crd/sparkoperator.k8s.io_sparkconnects.yaml");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{apps}---\n{scheduled}---\n{connect}")
    );
}

#[test]
fn configuration_errors_end_in_one_error_line_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    // A kubeconfig that parses (nothing is contacted before the certificate check).
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let out = run(&["serve", "--cert-dir", dir]);
    assert!(
        stderr(&out).contains("no Kubernetes API configuration"),
        "{}",
        stderr(&out)
    );
    let kubeconfig = kubeconfig.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["serve", "--webhook-addr", "nonsense"],
            "invalid value 'nonsense'",
        ),
        (
            vec!["serve", "--cert-reload-interval", "soon"],
            "is not a duration",
        ),
        (
            vec!["serve", "--cert-dir", dir],
            "no usable serving certificate",
        ),
        (
            vec!["serve", "--webhook=false", "--controller=false"],
            "nothing to run",
        ),
        (
            vec![
                "serve",
                "--admin-addr",
                "127.0.0.1:0",
                "--cert-secret",
                "certs",
                "--cert-renew-before",
                "9000h",
            ],
            "must be shorter than the certificate's validity",
        ),
        (
            vec!["render", "/no/such/app.yaml"],
            "reading /no/such/app.yaml",
        ),
        (
            vec!["serve", "--ingress-tls", r#"[{"hosts": "not a list"}]"#],
            "--ingress-tls: invalid type",
        ),
        (
            vec!["serve", "--ingress-annotations", "{not json"],
            "--ingress-annotations: key must be a string",
        ),
    ] {
        let out = run_with(&args, kubeconfig);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{args:?}: {err}"
        );
        let error_lines = err.lines().filter(|l| l.starts_with("error:")).count();
        assert_eq!(error_lines, 1, "{args:?}: {err}");
    }
}

#[test]
fn render_shows_a_schedules_next_runs_and_its_first_run_and_refuses_a_bad_schedule() {
    let out = run(&["render", "tests/fixtures/spark-pi-scheduled.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("# ScheduledSparkApplication spark-pi-scheduled: schedule \"@every 3m\" in UTC, concurrencyPolicy Allow"),
        "{text}"
    );
    let runs: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#   spark-pi-scheduled-"))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(runs.len(), 3, "{text}");
    assert!(runs.windows(2).all(|w| w[1] - w[0] == 180), "{runs:?}");
    let driver = format!("name: spark-pi-scheduled-{}-driver", runs[0]);
    assert!(text.contains(&driver), "the first run's driver pod: {text}");
    assert!(text.contains("sparkoperator.k8s.io/scheduled-app-name: spark-pi-scheduled"));

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    let app = include_str!("fixtures/spark-pi-scheduled.yaml")
        .replace("\"@every 3m\"", "\"@every sometimes\"");
    std::fs::write(&bad, app).unwrap();
    let out = run(&["render", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("spec.schedule: \"sometimes\" after @every"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn render_prints_the_submission_and_refuses_invalid_apps() {
    let out = run(&["render", "tests/fixtures/sparkapplication-pi.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let kinds: Vec<String> = text
        .split("\n---\n")
        .filter_map(|doc| yaml_serde::from_str::<serde_json::Value>(doc).ok())
        .filter_map(|v| v["kind"].as_str().map(String::from))
        .collect();
    // The driver's ConfigMap, Service and pod, then the Spark UI Service (on by default).
    assert_eq!(kinds, ["ConfigMap", "Service", "Pod", "Service"], "{text}");
    assert!(text.contains("# The webhook's JSON patch for each executor pod"));

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    let app =
        include_str!("fixtures/sparkapplication-pi.yaml").replace("memory: 512m", "memory: lots");
    std::fs::write(&bad, app).unwrap();
    let out = run(&["render", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("spec.driver.memory"),
        "{}",
        stderr(&out)
    );

    // A file that bundles the app with its ConfigMap: the app is rendered, the rest is named.
    let bundle = tmp.path().join("bundle.yaml");
    let config_map =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-code\ndata:\n  a: b\n";
    let pi = include_str!("fixtures/sparkapplication-pi.yaml");
    std::fs::write(&bundle, format!("{config_map}---\n{pi}")).unwrap();
    let out = run(&["render", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# not rendered: ConfigMap app-code"),
        "{text}"
    );
    assert!(text.contains("kind: Service"), "{text}");

    std::fs::write(&bundle, config_map).unwrap();
    let out = run(&["render", bundle.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no SparkApplication in it"),
        "{}",
        stderr(&out)
    );
}

/// An app written for kubeflow without an executor count or retry intervals renders with
/// kubeflow's defaults: one executor (not Spark's two), and the defaults it took named.
#[test]
fn render_shows_kubeflows_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("app.yaml");
    let app = include_str!("fixtures/sparkapplication-pi.yaml")
        .replace("    instances: 1\n", "")
        .replace(
            "  mode: cluster\n",
            "  restartPolicy:\n    type: OnFailure\n",
        );
    assert!(!app.contains("instances"));
    std::fs::write(&file, app).unwrap();
    let out = run(&["render", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "# default: spec.mode: cluster",
        "# default: spec.restartPolicy.onFailureRetryInterval: 5",
        "# default: spec.restartPolicy.onSubmissionFailureRetryInterval: 5",
        "# default: spec.executor.instances: 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(text.contains("spark.executor.instances=1"), "{text}");

    // Dynamic allocation on: Spark sizes the executors, no count is defaulted.
    let dynamic = include_str!("fixtures/sparkapplication-pi.yaml")
        .replace("    instances: 1\n", "")
        .replace(
            "  mode: cluster\n",
            "  mode: cluster\n  dynamicAllocation:\n    enabled: true\n    maxExecutors: 3\n",
        );
    std::fs::write(&file, dynamic).unwrap();
    let out = run(&["render", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("spark.executor.instances"), "{text}");
    assert!(
        text.contains("spark.dynamicAllocation.maxExecutors=3"),
        "{text}"
    );
}
