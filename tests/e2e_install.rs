//! End-to-end: the kustomize base installs with plain kubectl on the local kube-apiserver 1.20
//! (`manifests/k8s-1.20`, the base with its PodDisruptionBudget as policy/v1beta1; nothing runs
//! the Deployment here, there is no kubelet), `make install-certs` puts `make certs`' files where
//! the Deployment and the webhook configurations expect them, and every example passes
//! `kubectl apply --dry-run=server`.
//!
//! The base's webhook configurations select only namespaces labelled
//! `spark-webhook/job-namespace=true` (only the base's spark-jobs is), and they are deleted
//! before anything is created there: the apiserver never calls the base's Service (no traffic
//! leaves loopback).

mod common;

use std::process::Command;

use common::{install_crd, kubectl, kubectl_ok};
use serde::Deserialize;
use serde_json::Value;
use spark_webhook::certs::{files::generate, issue::CertOptions};

fn render(dir: &str) -> Vec<Value> {
    let path = common::repo_root().join(dir);
    let yaml = kubectl_ok(&["kustomize", path.to_str().unwrap()], None);
    yaml_serde::Deserializer::from_str(&yaml)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn apply_k(dir: &str) -> String {
    let path = common::repo_root().join(dir);
    kubectl_ok(&["apply", "-k", path.to_str().unwrap()], None)
}

fn get_json(args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&kubectl_ok(&all, None)).unwrap()
}

fn install_certs(cert_dir: &std::path::Path) -> std::process::Output {
    let c = common::cluster();
    Command::new(common::repo_root().join("manifests/install-certs.sh"))
        .env("CERT_DIR", cert_dir)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("KUBECTL", c.bin.join("kubectl"))
        .output()
        .expect("running manifests/install-certs.sh")
}

fn ca_bundles() -> Vec<String> {
    [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ]
    .iter()
    .map(|kind| {
        get_json(&[kind, "spark-webhook"])["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
    .collect()
}

fn delete_webhook_configurations() {
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let _ = kubectl(&["delete", kind, "spark-webhook", "--ignore-not-found"]);
    }
}

#[test]
fn the_base_installs_with_kubectl_and_install_certs_fills_in_the_secret_and_ca_bundle() {
    // The 1.20 variant is the base but for the PodDisruptionBudget's apiVersion.
    let base = render("manifests");
    let legacy = render("manifests/k8s-1.20");
    assert_eq!(base.len(), legacy.len());
    for (b, l) in base.iter().zip(&legacy) {
        if b["kind"] == "PodDisruptionBudget" {
            assert_eq!(
                (b["apiVersion"].as_str(), l["apiVersion"].as_str()),
                (Some("policy/v1"), Some("policy/v1beta1"))
            );
            let strip = |v: &Value| {
                let mut v = v.clone();
                v.as_object_mut().unwrap().remove("apiVersion");
                v
            };
            assert_eq!(strip(b), strip(l));
        } else {
            assert_eq!(b, l);
        }
    }
    let kinds: Vec<&str> = base.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(&kind), "the base has no {kind}: {kinds:?}");
    }
    assert!(
        !kinds.contains(&"SparkApplication") && !kinds.contains(&"Secret"),
        "examples and certificates are not part of the base: {kinds:?}"
    );

    install_crd();
    let out = apply_k("manifests/k8s-1.20");
    let result = std::panic::catch_unwind(|| {
        assert!(out.contains("deployment.apps/spark-webhook"), "{out}");
        let deployment = get_json(&["deployment", "-n", "spark-operator", "spark-webhook"]);
        assert_eq!(deployment["spec"]["replicas"], 2);
        // Applying again changes nothing and fails nothing.
        apply_k("manifests/k8s-1.20");
        // The opt-in NetworkPolicy is accepted as written.
        let policy = common::repo_root().join("manifests/network-policy/networkpolicy.yaml");
        let out = kubectl_ok(
            &["apply", "--dry-run=server", "-f", policy.to_str().unwrap()],
            None,
        );
        assert!(
            out.contains("networkpolicy.networking.k8s.io/spark-webhook"),
            "{out}"
        );

        // make certs; make install-certs.
        let tmp = tempfile::tempdir().unwrap();
        let report = generate(&CertOptions::new(tmp.path())).unwrap();
        let out = install_certs(tmp.path());
        assert!(
            out.status.success(),
            "install-certs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secret = get_json(&["secret", "-n", "spark-operator", "spark-webhook-certs"]);
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let mut keys: Vec<&str> = secret["data"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"], "ca.key stays local");
        assert!(
            secret["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .is_null(),
            "the private key must not be copied into an annotation"
        );
        let ca = report.ca_bundle_base64();
        assert_eq!(ca_bundles(), [ca.clone(), ca.clone()]);

        // Rotation: `make certs` again, `make install-certs` again updates the Secret.
        let first_tls = secret["data"]["tls.crt"].clone();
        generate(&CertOptions::new(tmp.path())).unwrap();
        let out = install_certs(tmp.path());
        assert!(
            out.status.success(),
            "install-certs again: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secret = get_json(&["secret", "-n", "spark-operator", "spark-webhook-certs"]);
        assert_ne!(
            secret["data"]["tls.crt"], first_tls,
            "serving certificate replaced"
        );
        assert_eq!(ca_bundles(), [ca.clone(), ca.clone()], "CA kept");

        // Re-applying the base keeps the caBundle (the manifests carry none).
        apply_k("manifests/k8s-1.20");
        assert_eq!(ca_bundles(), [ca.clone(), ca]);

        // The driver identities: `spark` and kubeflow's `spark-operator-spark` may do what a
        // driver does in spark-jobs (the RBAC-enforcing apiserver decides, by impersonation);
        // the namespace's `default` ServiceAccount may not, nor may they elsewhere.
        let can_i = |sa: &str, verb: &str, resource: &str, ns: &str| {
            let user = format!("--as=system:serviceaccount:spark-jobs:{sa}");
            let out = kubectl(&["auth", "can-i", verb, resource, "-n", ns, &user]);
            String::from_utf8_lossy(&out.stdout).trim() == "yes"
        };
        for sa in ["spark", "spark-operator-spark"] {
            for resource in ["pods", "services", "configmaps", "persistentvolumeclaims"] {
                for verb in ["create", "watch", "delete"] {
                    assert!(
                        can_i(sa, verb, resource, "spark-jobs"),
                        "{sa} may not {verb} {resource} in spark-jobs"
                    );
                }
            }
            assert!(!can_i(sa, "create", "pods", "default"), "{sa} in default");
            assert!(
                !can_i(sa, "create", "secrets", "spark-jobs"),
                "{sa} secrets"
            );
        }
        assert!(!can_i("default", "create", "pods", "spark-jobs"));

        // The operator (the base names its job namespace): pods, Services and ConfigMaps
        // only in spark-jobs, nowhere else.
        let operator_can = |verb: &str, resource: &str, ns: &str| {
            let user = "--as=system:serviceaccount:spark-operator:spark-webhook";
            let out = kubectl(&["auth", "can-i", verb, resource, "-n", ns, user]);
            String::from_utf8_lossy(&out.stdout).trim() == "yes"
        };
        for resource in ["pods", "services", "configmaps"] {
            assert!(operator_can("create", resource, "spark-jobs"), "{resource}");
            for ns in ["kube-system", "default", "spark-operator"] {
                assert!(
                    !operator_can("create", resource, ns),
                    "the operator may create {resource} in {ns}"
                );
            }
        }
    });
    // Before anything is created in spark-jobs, and whatever happened above. Without the
    // Service, a configuration left behind by a killed run could not be called either.
    delete_webhook_configurations();
    let _ = kubectl(&[
        "delete",
        "service",
        "-n",
        "spark-operator",
        "spark-webhook",
        "--ignore-not-found",
    ]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }

    // Every example is accepted by the apiserver (schema, namespace) and by our own validation.
    let examples = common::repo_root().join("manifests/examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in &files {
        let out = kubectl_ok(
            &["apply", "--dry-run=server", "-f", file.to_str().unwrap()],
            None,
        );
        assert!(out.contains("(server dry run)"), "{out}");
        let render = Command::new(env!("CARGO_BIN_EXE_spark-webhook"))
            .arg("render")
            .arg(file)
            .output()
            .unwrap();
        assert!(
            render.status.success(),
            "spark-webhook render {}: {}",
            file.display(),
            String::from_utf8_lossy(&render.stderr)
        );
    }
    // The generated folders still apply with -f (their Kustomization files have no extension).
    for dir in ["manifests/crd", "manifests/webhook", "manifests/rbac"] {
        let path = common::repo_root().join(dir);
        kubectl_ok(
            &["apply", "--dry-run=server", "-f", path.to_str().unwrap()],
            None,
        );
    }
}
