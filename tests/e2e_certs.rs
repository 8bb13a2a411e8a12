//! End-to-end, self-managed certificate (`serve --cert-secret`): two replicas against a real
//! kube-apiserver share one Secret. They create it once, both serve it (checked by a TLS
//! handshake to each, trusting only the Secret's CA), register its CA as the caBundle, renew it
//! when it is replaced by an expiring or wrong-name certificate while Spark pods keep being
//! admitted (failurePolicy Fail), and then stop writing anything. Without access to the
//! apiserver or the Secret, serve stays unready and says why, and recovers once it can: under
//! exactly the manifests' Role for the Secret, it creates, watches and renews it. A certificate
//! brought with `make install-certs` is served as it is; the own-certs Component switches the
//! Deployment to the mounted Secret. An expiring CA is replaced in stages while Spark pods keep
//! being admitted and every replica stays trusted by the caBundle registered at every moment; two
//! versions registering one configuration end at the newer one's spec and stop writing.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Served, eventually, install_crd, namespace};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use spark_webhook::certs::{check::check, secret::CertMaterial};
use spark_webhook::certs::{files::generate, issue::CertOptions};
use spark_webhook::labels::{ISSUED_BY_ANNOTATION, VERSION_ANNOTATION};

const DRIVER: &str = include_str!("fixtures/spark-submit-3.3.4/driver-pod.json");
const SECRET: &str = "spark-webhook-certs";
const WAIT: Duration = Duration::from_secs(30);
const WROTE: &str = "wrote a new certificate to the Secret";
const CHECKED_VALID: &str = "certificate in the Secret is valid";

fn app(ns: &str) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "spark-pi", "namespace": ns},
        "spec": {
            "type": "Scala", "mode": "cluster", "sparkVersion": "3.5.3", "image": "spark:3.5.3",
            "mainClass": "org.apache.spark.examples.SparkPi",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "driver": {"cores": 1, "memory": "512m", "serviceAccount": "spark"},
            "executor": {"instances": 1, "cores": 1, "memory": "512m"}
        }
    })
}

/// The driver pod as Spark sends it, renamed into `ns` for app spark-pi.
fn driver_pod(ns: &str, name: &str) -> Pod {
    let mut v: Value = serde_json::from_str(DRIVER).expect("fixture");
    let meta = v["metadata"].as_object_mut().expect("metadata");
    meta.remove("uid");
    meta.remove("creationTimestamp");
    meta.insert("name".into(), name.into());
    meta.insert("namespace".into(), ns.into());
    v["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = "spark-pi".into();
    v.as_object_mut().expect("pod").remove("status");
    serde_json::from_value(v).expect("pod")
}

fn mutated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.seccomp_profile.as_ref())
        .is_some_and(|p| p.type_ == "RuntimeDefault")
}

/// The flags of a self-managed replica keeping its certificate in `ns`/SECRET.
fn self_managed(ns: &str) -> [&str; 7] {
    [
        "--controller=false",
        "--cert-secret",
        SECRET,
        "--cert-secret-namespace",
        ns,
        "--cert-check-interval",
        "1s",
    ]
}

fn material(secret: &Secret) -> CertMaterial {
    CertMaterial::from_secret(secret)
}

fn leaf_der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem)
        .expect("a PEM certificate")
        .to_vec()
}

/// The leaf a replica presents in a TLS handshake on `port`, trusting only `ca_pem` for
/// 127.0.0.1; None when the handshake fails (e.g. the certificate is not signed by that CA).
async fn served_leaf(port: u16, ca_pem: &[u8]) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(der.ok()?).ok()?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = ServerName::try_from("127.0.0.1").ok()?;
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .ok()?
        .ok()?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()?.first().map(|c| c.to_vec())
}

/// Waits until every replica's handshake presents `tls.crt` of `m`, trusted by its `ca.crt`.
async fn all_serve(replicas: &[&Served], m: &CertMaterial) {
    let want = leaf_der(m.tls_crt.as_deref().expect("tls.crt"));
    let ca = m.ca_crt.clone().expect("ca.crt");
    for served in replicas {
        eventually(
            &format!(
                "replica on port {} serving the Secret's certificate",
                served.webhook_port
            ),
            WAIT,
            || async { (served_leaf(served.webhook_port, &ca).await? == want).then_some(()) },
        )
        .await;
    }
}

/// The four names a self-managed certificate must cover, plus the url clientConfig's host.
fn required_names() -> Vec<String> {
    [
        "spark-webhook",
        "spark-webhook.spark-operator",
        "spark-webhook.spark-operator.svc",
        "spark-webhook.spark-operator.svc.cluster.local",
        "127.0.0.1",
    ]
    .map(String::from)
    .to_vec()
}

/// Waits until the Secret holds a valid certificate other than `than` (the replaced one).
async fn renewed(secrets: &Api<Secret>, than: &[u8]) -> Secret {
    eventually("a renewed certificate in the Secret", WAIT, || async {
        let s = secrets.get_opt(SECRET).await.ok()??;
        let m = material(&s);
        let valid = check(
            Some(&m),
            &required_names(),
            Duration::from_secs(30 * 86_400),
            time::OffsetDateTime::now_utc(),
        )
        .is_ok();
        (valid && m.tls_crt.as_deref() != Some(than)).then_some(s)
    })
    .await
}

/// Replaces the Secret's serving pair with one `spark-webhook certs` makes with `opts`, signed
/// by the Secret's own CA (so the caBundle stays right and pods keep being admitted).
async fn replace_pair(secrets: &Api<Secret>, mut opts: CertOptions) -> Vec<u8> {
    let mut secret = secrets.get(SECRET).await.expect("the Secret");
    let m = material(&secret);
    std::fs::create_dir_all(&opts.dir).unwrap();
    std::fs::write(opts.dir.join("ca.crt"), m.ca_crt.unwrap()).unwrap();
    std::fs::write(opts.dir.join("ca.key"), m.ca_key.unwrap()).unwrap();
    opts.new_ca = false;
    generate(&opts).expect("a replacement certificate");
    let crt = std::fs::read(opts.dir.join("tls.crt")).unwrap();
    let data = secret.data.as_mut().unwrap();
    data.insert("tls.crt".into(), ByteString(crt.clone()));
    data.insert(
        "tls.key".into(),
        ByteString(std::fs::read(opts.dir.join("tls.key")).unwrap()),
    );
    secrets
        .replace(SECRET, &PostParams::default(), &secret)
        .await
        .expect("replacing the Secret");
    crt
}

fn count(replicas: &[&Served], needle: &str) -> usize {
    replicas
        .iter()
        .map(|s| s.logs().matches(needle).count())
        .sum()
}

/// How many certificates the replicas wrote, once at least `n` have been logged. The Secret's
/// watcher serves a written certificate (and the replica turns ready) concurrently with the
/// writer logging it, so the log line can come a moment after what the test observed.
async fn writes_after(replicas: &[&Served], n: usize) -> usize {
    eventually("the certificate writes logged", WAIT, || async {
        let c = count(replicas, WROTE);
        (c >= n).then_some(c)
    })
    .await
}

/// caBundle of both configurations of every replica (None: no caBundle, or not registered yet).
async fn ca_bundles(client: &Client, replicas: &[&Served]) -> Vec<Option<Vec<u8>>> {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut out = Vec::new();
    for s in replicas {
        let m = mutating.get_opt(&s.config_name).await.expect("mutating");
        out.push(
            m.and_then(|m| m.webhooks.unwrap()[0].client_config.ca_bundle.clone())
                .map(|b| b.0),
        );
        let v = validating
            .get_opt(&s.config_name)
            .await
            .expect("validating");
        out.push(
            v.and_then(|v| v.webhooks.unwrap()[0].client_config.ca_bundle.clone())
                .map(|b| b.0),
        );
    }
    out
}

/// resourceVersions of the Secret and of every replica's two configurations.
async fn versions(client: &Client, ns: &str, replicas: &[&Served]) -> Vec<Option<String>> {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out = vec![secrets.get(SECRET).await.unwrap().resource_version()];
    for s in replicas {
        out.push(
            mutating
                .get(&s.config_name)
                .await
                .unwrap()
                .resource_version(),
        );
        out.push(
            validating
                .get(&s.config_name)
                .await
                .unwrap()
                .resource_version(),
        );
    }
    out
}

async fn wait_ca_bundles(client: &Client, replicas: &[&Served], ca: &[u8]) {
    eventually(
        "every caBundle equal to the Secret's ca.crt",
        WAIT,
        || async {
            ca_bundles(client, replicas)
                .await
                .iter()
                .all(|b| b.as_deref() == Some(ca))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn two_replicas_share_one_self_managed_secret_and_renew_it_without_a_refused_pod() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "certs").await;
    common::kubectl_apply(&app(&ns));
    let tmp = tempfile::tempdir().unwrap();
    let flags = self_managed(&ns);
    let kubeconfig = &common::cluster().kubeconfig;
    // Both start at once, with no Secret: they race to create it.
    let a = Served::spawn_replica(kubeconfig, &[], &ns, tmp.path(), "", &flags);
    let b = Served::spawn_replica(kubeconfig, &[], &ns, tmp.path(), "-b", &flags);
    let started = Instant::now();
    let (a, b) = (Served::wait_ready(a), Served::wait_ready(b));
    let replicas = [&a, &b];
    eprintln!(
        "both replicas ready with a new Secret in {} ms",
        started.elapsed().as_millis()
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get(SECRET).await.expect("the Secret was created");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert!(
        secret.annotations().contains_key(ISSUED_BY_ANNOTATION),
        "{:?}",
        secret.annotations()
    );
    let first = material(&secret);
    assert!(first.ca_key.is_some(), "ca.key is kept for renewals");
    assert_eq!(
        writes_after(&replicas, 1).await,
        1,
        "exactly one replica writes the certificate:\n{}\n{}",
        a.logs(),
        b.logs()
    );
    all_serve(&replicas, &first).await;
    let ca = first.ca_crt.clone().unwrap();
    wait_ca_bundles(&client, &replicas, &ca).await;

    // Spark pods are created, 4 at a time, through both replicas' webhooks (failurePolicy
    // Fail) until the renewals are done; `created` counts the admitted ones.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let stream = PodStream::start(&pods, &ns, "during");

    // An expiring certificate (1 day, inside the 30-day window), then one for other names: each
    // is renewed by one replica, and both serve the renewal.
    let mut expiring = CertOptions::new(tmp.path().join("expiring"));
    expiring.validity_days = 1;
    let mut other_names = CertOptions::new(tmp.path().join("other"));
    other_names.service_name = "other".into();
    let mut current = first.clone();
    for (round, (what, opts)) in [("expiring", expiring), ("wrong-name", other_names)]
        .into_iter()
        .enumerate()
    {
        stream.admitted_more(10).await;
        let replaced_at = Instant::now();
        let bad = replace_pair(&secrets, opts).await;
        let secret = renewed(&secrets, &bad).await;
        let renewed_after = replaced_at.elapsed();
        current = material(&secret);
        all_serve(&replicas, &current).await;
        stream.admitted_more(10).await;
        eprintln!(
            "{what} certificate: renewed in the Secret after {} ms, served by both replicas after {} ms",
            renewed_after.as_millis(),
            replaced_at.elapsed().as_millis()
        );
        assert_eq!(
            current.ca_crt.as_deref(),
            Some(ca.as_slice()),
            "renewal keeps the CA"
        );
        assert_eq!(
            writes_after(&replicas, round + 2).await,
            round + 2,
            "one renewal per replaced certificate:\n{}\n{}",
            a.logs(),
            b.logs()
        );
    }
    let (created, failures) = stream.finish().await;
    eprintln!("{created} Spark pods admitted around and during the renewals");
    assert!(
        failures.is_empty(),
        "{} of {created} Spark pods refused or unmutated during renewals, first: {:?}",
        failures.len(),
        failures.first()
    );
    wait_ca_bundles(&client, &replicas, &ca).await;

    // Converged: several more checks by each replica write nothing.
    let before = versions(&client, &ns, &replicas).await;
    let checks = [a.logs(), b.logs()].map(|l| l.matches(CHECKED_VALID).count());
    for (served, done) in replicas.iter().zip(checks) {
        eventually("three more periodic checks", WAIT, || async {
            (served.logs().matches(CHECKED_VALID).count() >= done + 3).then_some(())
        })
        .await;
    }
    assert_eq!(
        versions(&client, &ns, &replicas).await,
        before,
        "the Secret or a webhook configuration was rewritten after convergence"
    );

    // A deleted Secret (CA key lost with it) comes back with a new CA, and the caBundles follow.
    secrets
        .delete(SECRET, &Default::default())
        .await
        .expect("deleting the Secret");
    let recreated = eventually("the Secret re-created", WAIT, || async {
        secrets.get_opt(SECRET).await.ok()?
    })
    .await;
    let recreated = material(&recreated);
    assert_ne!(recreated.ca_crt, current.ca_crt, "a new CA");
    all_serve(&replicas, &recreated).await;
    wait_ca_bundles(&client, &replicas, recreated.ca_crt.as_deref().unwrap()).await;
    let pod = pods
        .create(&PostParams::default(), &driver_pod(&ns, "after-new-ca"))
        .await
        .expect("a Spark pod admitted under the new CA");
    assert!(mutated(&pod));
    let metrics = a.admin_get("/metrics").expect("metrics").1;
    assert!(
        metrics.contains("spark_webhook_certificate_not_after_timestamp_seconds"),
        "{metrics}"
    );
}

/// `make install-certs` (manifests/install-certs.sh) of `cert_dir` into `ns` and the
/// configurations `config`.
fn install_certs(cert_dir: &Path, ns: &str, config: &str) {
    let c = common::cluster();
    let out = std::process::Command::new(common::repo_root().join("manifests/install-certs.sh"))
        .env("CERT_DIR", cert_dir)
        .env("NAMESPACE", ns)
        .env("SECRET", SECRET)
        .env("WEBHOOK_CONFIG", config)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("KUBECTL", c.bin.join("kubectl"))
        .output()
        .expect("running manifests/install-certs.sh");
    assert!(
        out.status.success(),
        "install-certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Bringing your own certificate into the self-managed mode: `make certs install-certs`
/// replaces the Secret's content; the replica serves it as it is, registers its CA, and writes
/// nothing while it is valid.
#[tokio::test]
async fn a_certificate_from_make_install_certs_is_served_as_is_and_never_rewritten() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "certs-own").await;
    common::kubectl_apply(&app(&ns));
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(&ns, tmp.path(), &self_managed(&ns));
    let replicas = [&served];
    assert_eq!(writes_after(&replicas, 1).await, 1, "{}", served.logs());

    let user = tmp.path().join("user");
    generate(&CertOptions::new(&user)).expect("make certs");
    install_certs(&user, &ns, &served.config_name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let installed = material(&secrets.get(SECRET).await.unwrap());
    assert_eq!(
        installed.tls_crt,
        Some(std::fs::read(user.join("tls.crt")).unwrap())
    );
    assert_eq!(installed.ca_key, None, "ca.key stays on the user's machine");
    all_serve(&replicas, &installed).await;
    wait_ca_bundles(&client, &replicas, installed.ca_crt.as_deref().unwrap()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .create(&PostParams::default(), &driver_pod(&ns, "own-cert"))
        .await
        .expect("a Spark pod admitted with the user's certificate");
    assert!(mutated(&pod));

    let before = versions(&client, &ns, &replicas).await;
    let done = served.logs().matches(CHECKED_VALID).count();
    eventually("three more periodic checks", WAIT, || async {
        (served.logs().matches(CHECKED_VALID).count() >= done + 3).then_some(())
    })
    .await;
    assert_eq!(versions(&client, &ns, &replicas).await, before);
    assert_eq!(count(&replicas, WROTE), 1, "{}", served.logs());
}

/// A kubeconfig like the admin's, but acting as `user` (impersonation) or calling `server`.
fn kubeconfig_variant(dir: &Path, user: Option<&str>, server: Option<&str>) -> std::path::PathBuf {
    let mut kc: Value = yaml_serde::from_str(
        &std::fs::read_to_string(&common::cluster().kubeconfig).expect("admin kubeconfig"),
    )
    .expect("kubeconfig yaml");
    if let Some(user) = user {
        for u in kc["users"].as_array_mut().expect("users") {
            u["user"]["as"] = user.into();
        }
    }
    if let Some(server) = server {
        for c in kc["clusters"].as_array_mut().expect("clusters") {
            c["cluster"]["server"] = server.into();
        }
    }
    let path = dir.join("variant.kubeconfig");
    std::fs::write(&path, yaml_serde::to_string(&kc).unwrap()).unwrap();
    path
}

/// Polls /readyz until its body contains every needle (it must stay 503 meanwhile).
async fn unready_saying(served: &mut Served, needles: &[&str]) -> String {
    let found = eventually("readiness naming the problem", WAIT, || {
        let answer = served.admin_get("/readyz");
        async move {
            let (code, body) = answer?;
            assert_eq!(code, 503, "ready without a certificate: {body}");
            needles.iter().all(|n| body.contains(n)).then_some(body)
        }
    })
    .await;
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "serve exited:\n{}",
        served.logs()
    );
    found
}

#[tokio::test]
async fn forbidden_secret_keeps_serve_unready_with_a_clear_error_until_access_is_granted() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "certs-denied").await;
    let tmp = tempfile::tempdir().unwrap();
    let sa = format!("system:serviceaccount:{ns}:operator");
    let kubeconfig = kubeconfig_variant(tmp.path(), Some(&sa), None);
    let mut served = Served::spawn_as(&kubeconfig, &[], &ns, tmp.path(), &self_managed(&ns));
    let secret = format!("Secret {ns}/{SECRET}");
    let body = unready_saying(&mut served, &[&secret, "forbidden"]).await;
    eprintln!("readiness while forbidden: {}", body.trim());
    eventually("a clear log line", WAIT, || async {
        let logs = served.logs();
        (logs.contains("certificate check failed") && logs.contains("forbidden")).then_some(())
    })
    .await;
    assert!(!served.logs().contains("panicked"), "{}", served.logs());

    // Granted the manifests' Role for the Secret (moved into this namespace), plus what the
    // rest of serve needs, it recovers by itself (retries with backoff): Secret created, ready.
    let role = manifests_secret_role(&ns);
    let role_name = role["metadata"]["name"].as_str().unwrap().to_string();
    common::kubectl_apply(&role);
    common::kubectl_apply(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": role_name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": ns}]
    }));
    let others = format!("e2e-{ns}-not-secrets");
    common::kubectl_apply(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": others},
        "rules": [
            {"apiGroups": ["sparkoperator.k8s.io"], "resources": ["sparkapplications"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["admissionregistration.k8s.io"],
             "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
             "verbs": ["get", "create", "update"]}
        ]
    }));
    common::kubectl_apply(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": others},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": others},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": ns}]
    }));
    let recovered = Instant::now();
    eventually(
        "ready after access is granted",
        Duration::from_secs(90),
        || async {
            served
                .admin_get("/readyz")
                .is_some_and(|(code, _)| code == 200)
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "ready {} ms after access was granted",
        recovered.elapsed().as_millis()
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let created = material(&secrets.get(SECRET).await.expect("created under the Role"));
    all_serve(&[&served], &created).await;
    // Renewal works under the Role too (update by name, with the resourceVersion read).
    let mut expiring = CertOptions::new(tmp.path().join("expiring"));
    expiring.validity_days = 1;
    let bad = replace_pair(&secrets, expiring).await;
    let renewed = material(&renewed(&secrets, &bad).await);
    all_serve(&[&served], &renewed).await;
    let logs = served.logs();
    let since_served = logs
        .split_once("serving the certificate from the Secret")
        .map_or("", |(_, after)| after);
    assert!(
        !since_served.contains("403 Forbidden"),
        "a call was denied under the manifests' Role:\n{logs}"
    );
    for (kind, name) in [("clusterrolebinding", &others), ("clusterrole", &others)] {
        let _ = common::kubectl(&["delete", kind, name, "--ignore-not-found"]);
    }
}

/// The base's Role for the certificate Secret, moved into `ns`.
fn manifests_secret_role(ns: &str) -> Value {
    use serde::Deserialize;
    let text =
        std::fs::read_to_string(common::repo_root().join("manifests/rbac/operator.yaml")).unwrap();
    let mut role = yaml_serde::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "spark-webhook-certs")
        .expect("Role spark-webhook-certs in manifests/rbac/operator.yaml");
    role["metadata"]["namespace"] = ns.into();
    role
}

#[tokio::test]
async fn unreachable_apiserver_keeps_serve_unready_and_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let kubeconfig =
        kubeconfig_variant(tmp.path(), None, Some(&format!("https://127.0.0.1:{port}")));
    let ns = "certs-unreachable";
    let mut served = Served::spawn_as(&kubeconfig, &[], ns, tmp.path(), &self_managed(ns));
    let secret = format!("Secret {ns}/{SECRET}");
    unready_saying(&mut served, &[&secret]).await;
    eventually("a clear log line", WAIT, || async {
        served
            .logs()
            .contains("certificate check failed")
            .then_some(())
    })
    .await;
    assert!(!served.logs().contains("panicked"), "{}", served.logs());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn rendered(dir: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let yaml = common::kubectl_ok(&["kustomize", dir.to_str().unwrap()], None);
    yaml_serde::Deserializer::from_str(&yaml)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The README's way to bring your own certificate: uncommenting the base's two `components`
/// lines changes only the Deployment, to `--cert-dir` with the Secret mounted there.
#[test]
fn uncommenting_the_own_certs_component_switches_the_deployment_to_the_mounted_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("manifests");
    copy_dir(&common::repo_root().join("manifests"), &copy);
    let base = rendered(&copy);
    let kustomization = copy.join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).unwrap();
    let commented = "# components:\n# - own-certs\n";
    assert!(text.contains(commented), "{text}");
    std::fs::write(
        &kustomization,
        text.replace(commented, "components:\n- own-certs\n"),
    )
    .unwrap();
    let own = rendered(&copy);
    assert_eq!(base.len(), own.len());
    for (b, o) in base.iter().zip(&own) {
        if b["kind"] != "Deployment" {
            assert_eq!(b, o);
            continue;
        }
        let (bc, oc) = (
            &b["spec"]["template"]["spec"]["containers"][0],
            &o["spec"]["template"]["spec"]["containers"][0],
        );
        let args =
            |c: &Value| -> Vec<String> { serde_json::from_value(c["args"].clone()).unwrap() };
        let (bargs, oargs) = (args(bc), args(oc));
        assert!(bargs.contains(&format!("--cert-secret={SECRET}")));
        assert!(oargs.contains(&"--cert-dir=/etc/spark-webhook/certs".to_string()));
        assert_eq!(
            oc["volumeMounts"][0]["mountPath"],
            "/etc/spark-webhook/certs"
        );
        assert_eq!(
            o["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
            SECRET
        );
        // Everything else of the pod is the base's.
        let strip = |d: &Value| {
            let mut d = d.clone();
            let pod = &mut d["spec"]["template"]["spec"];
            pod.as_object_mut().unwrap().remove("volumes");
            let c = pod["containers"][0].as_object_mut().unwrap();
            c.remove("args");
            c.remove("volumeMounts");
            d
        };
        assert_eq!(strip(b), strip(o));
    }
}

/// Spark pods created 4 at a time through the webhooks (failurePolicy Fail) until stopped.
struct PodStream {
    stop: Arc<AtomicBool>,
    created: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl PodStream {
    fn start(pods: &Api<Pod>, ns: &str, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let created = Arc::new(AtomicUsize::new(0));
        let workers = (0..4)
            .map(|worker| {
                let (pods, ns, prefix) = (pods.clone(), ns.to_string(), prefix.to_string());
                let (stop, created) = (Arc::clone(&stop), Arc::clone(&created));
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let name = format!("{prefix}-{worker}-{i}");
                        match pods
                            .create(&PostParams::default(), &driver_pod(&ns, &name))
                            .await
                        {
                            Ok(p) if mutated(&p) => {
                                created.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => failures.push(format!("{name}: created unmutated")),
                            Err(e) => failures.push(format!("{name}: {e}")),
                        }
                    }
                    failures
                })
            })
            .collect();
        Self {
            stop,
            created,
            workers,
        }
    }

    fn created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    /// Waits until `n` more pods were admitted: proof they keep being admitted.
    async fn admitted_more(&self, n: usize) {
        let from = self.created();
        eventually(&format!("{n} more Spark pods admitted"), WAIT, || async {
            (self.created() >= from + n).then_some(())
        })
        .await
    }

    /// Stops the workers: (pods admitted, failures).
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for worker in self.workers {
            failures.extend(worker.await.expect("pod creator"));
        }
        (self.created.load(Ordering::Relaxed), failures)
    }
}

/// Probes, as fast as it can until stopped, what the apiserver relies on: a TLS handshake to
/// each replica trusting only the caBundle registered for it at that moment. A CA switched
/// together with the leaf fails it in the moment between the two writes, a window pods created
/// through kept-alive connections may never hit.
struct TrustProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl TrustProbe {
    fn start(client: &Client, replicas: &[&Served]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let targets: Vec<(u16, String)> = replicas
            .iter()
            .map(|s| (s.webhook_port, s.config_name.clone()))
            .collect();
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let halt = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let (mut probes, mut failures) = (0, Vec::new());
            while !halt.load(Ordering::Relaxed) {
                for (port, config) in &targets {
                    let Ok(m) = mutating.get(config).await else {
                        continue;
                    };
                    let Some(bundle) = m.webhooks.unwrap()[0].client_config.ca_bundle.clone()
                    else {
                        continue;
                    };
                    probes += 1;
                    if served_leaf(*port, &bundle.0).await.is_none() {
                        failures.push(format!(
                            "port {port}: handshake failed against the registered caBundle ({} CAs)",
                            ders(&bundle.0).len()
                        ));
                    }
                }
            }
            (probes, failures)
        });
        Self { stop, task }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("trust probe")
    }
}

/// The certificates (DER) of a PEM bundle.
fn ders(pem: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .map(|d| d.expect("PEM").to_vec())
        .collect()
}

/// A Secret as a previous run left it: its CA (and so its certificate) expires in `days`.
async fn secret_expiring_in(secrets: &Api<Secret>, dir: &Path, days: u32) -> CertMaterial {
    let mut opts = CertOptions::new(dir);
    opts.ca_validity_days = days;
    opts.validity_days = days;
    generate(&opts).expect("certificates");
    let read = |f: &str| ByteString(std::fs::read(dir.join(f)).unwrap());
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET},
        "type": "kubernetes.io/tls",
    }))
    .unwrap();
    let secret = Secret {
        data: Some(
            ["ca.crt", "ca.key", "tls.crt", "tls.key"]
                .into_iter()
                .map(|k| (k.to_string(), read(k)))
                .collect(),
        ),
        ..secret
    };
    material(
        &secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("creating the Secret"),
    )
}

/// The CA replacement as the Secret shows it: stage, switch, drop.
#[derive(Debug, Default)]
struct Stages {
    staged: Option<Duration>,
    switched: Option<Duration>,
    dropped: Option<Duration>,
}

#[tokio::test]
async fn an_expiring_ca_is_replaced_in_stages_without_a_refused_pod() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "ca-rotation").await;
    common::kubectl_apply(&app(&ns));
    let tmp = tempfile::tempdir().unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    // A CA with 90 days left: inside a 100-day CA window, outside the default 60-day one.
    let old = secret_expiring_in(&secrets, &tmp.path().join("old"), 90).await;
    let old_ca = old.ca_crt.clone().unwrap();
    let mut flags = self_managed(&ns).to_vec();
    flags.extend(["--ca-overlap", "3s"]);
    let kubeconfig = &common::cluster().kubeconfig;
    let a = Served::spawn_replica(kubeconfig, &[], &ns, tmp.path(), "", &flags);
    let b = Served::spawn_replica(kubeconfig, &[], &ns, tmp.path(), "-b", &flags);
    let (a, b) = (Served::wait_ready(a), Served::wait_ready(b));
    all_serve(&[&a, &b], &old).await;
    wait_ca_bundles(&client, &[&a, &b], &old_ca).await;
    assert_eq!(
        count(&[&a, &b], "CA replacement:"),
        0,
        "60 days: no replacement yet"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let stream = PodStream::start(&pods, &ns, "rotating");
    let probe = TrustProbe::start(&client, &[&a, &b]);
    stream.admitted_more(10).await;
    // A third replica whose CA window (100 days) covers the CA starts the replacement, as if
    // 30 days had passed; all three take part in it.
    let started = Instant::now();
    let admitted_before = stream.created();
    flags.extend(["--ca-renew-before", "2400h"]);
    let c = Served::spawn_replica(kubeconfig, &[], &ns, tmp.path(), "-c", &flags);
    let mut stages = Stages::default();
    let done = loop {
        assert!(
            started.elapsed() < WAIT,
            "the CA was not replaced in {WAIT:?}: {stages:?}"
        );
        let m = material(&secrets.get(SECRET).await.expect("the Secret"));
        let at = Some(started.elapsed());
        if m.ca_next_crt.is_some() {
            stages.staged = stages.staged.or(at);
        }
        if m.ca_crt.as_deref() != Some(old_ca.as_slice()) {
            stages.staged = stages.staged.or(at);
            stages.switched = stages.switched.or(at);
        }
        if stages.switched.is_some() && m.ca_previous_crt.is_none() {
            stages.dropped = at;
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let c = Served::wait_ready(c);
    let replicas = [&a, &b, &c];
    let new_ca = done.ca_crt.clone().unwrap();
    // Only the new CA is trusted, and every replica serves a certificate chaining to it.
    wait_ca_bundles(&client, &replicas, &new_ca).await;
    all_serve(&replicas, &done).await;
    assert!(
        served_leaf(a.webhook_port, &old_ca).await.is_none(),
        "the old CA no longer vouches for the served certificate"
    );
    stream.admitted_more(10).await;
    let rotated_in = started.elapsed();
    let (created, failures) = stream.finish().await;
    let (probes, distrusted) = probe.finish().await;
    eprintln!(
        "CA replaced in stages in {} ms (staged at {:?}, switched at {:?}, old CA dropped at {:?}); {} Spark pods admitted during it, {created} in all, {} refused; {probes} handshakes against the registered caBundle, {} failed",
        rotated_in.as_millis(),
        stages.staged,
        stages.switched,
        stages.dropped,
        created - admitted_before,
        failures.len(),
        distrusted.len()
    );
    assert!(
        distrusted.is_empty(),
        "{} of {probes} handshakes failed against the registered caBundle, first: {:?}",
        distrusted.len(),
        distrusted.first()
    );
    assert!(
        failures.is_empty(),
        "{} of {created} Spark pods refused or unmutated during the CA replacement, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(stages.staged.is_some() && stages.switched.is_some());
    assert_ne!(ders(&new_ca), ders(&old_ca));
    for step in [
        "staged the next CA",
        "switched to the next CA",
        "dropped the previous CA",
    ] {
        assert_eq!(
            count(&replicas, step),
            1,
            "exactly one replica takes each step ({step}):\n{}\n{}\n{}",
            a.logs(),
            b.logs(),
            c.logs()
        );
    }
    // The CA expiry is exported beside the certificate's.
    let want = spark_webhook::certs::x509::not_after(&new_ca)
        .unwrap()
        .unix_timestamp() as f64;
    for served in replicas {
        eventually("the new CA's expiry in /metrics", WAIT, || async {
            let text = served.admin_get("/metrics")?.1;
            (common::sample(
                &text,
                "spark_webhook_certificate_ca_not_after_timestamp_seconds",
            ) == Some(want))
            .then_some(())
        })
        .await;
    }
}

/// The version a `serve` registers as, through the debug-build-only override
/// (`SPARK_WEBHOOK_TEST_REGISTRATION_VERSION`, ignored by release builds): two "versions" of one
/// build.
fn as_version(version: &str) -> [(&'static str, &str); 1] {
    [(spark_webhook::registration::VERSION_OVERRIDE_ENV, version)]
}

/// (resourceVersion, url, caBundle, registered-by version) of both configurations `name`.
async fn registered(
    client: &Client,
    name: &str,
) -> Vec<(
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
)> {
    let m = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(name)
        .await
        .expect("mutating");
    let v = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get(name)
        .await
        .expect("validating");
    let version = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(VERSION_ANNOTATION).cloned())
    };
    let mc = &m.webhooks.as_ref().unwrap()[0].client_config;
    let vc = &v.webhooks.as_ref().unwrap()[0].client_config;
    vec![
        (
            m.resource_version(),
            mc.url.clone(),
            mc.ca_bundle.clone().map(|b| b.0),
            version(&m.metadata),
        ),
        (
            v.resource_version(),
            vc.url.clone(),
            vc.ca_bundle.clone().map(|b| b.0),
            version(&v.metadata),
        ),
    ]
}

#[tokio::test]
async fn two_versions_registering_one_configuration_end_at_the_newer_spec_without_flapping() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "versions").await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = &common::cluster().kubeconfig;
    let config = format!("e2e-{ns}-shared");
    // Both re-register every second (the self-managed check), each with its own webhook url:
    // two specs for one configuration, as two versions wanting different specs would.
    let flags = self_managed(&ns);
    let old = Served::wait_ready(Served::spawn_named(
        kubeconfig,
        &as_version("1.9.0"),
        &ns,
        tmp.path(),
        "-old",
        &config,
        &flags,
    ));
    let url = |s: &Served| Some(format!("https://127.0.0.1:{}", s.webhook_port));
    let newer = Served::wait_ready(Served::spawn_named(
        kubeconfig,
        &as_version("1.10.0"),
        &ns,
        tmp.path(),
        "-new",
        &config,
        &flags,
    ));
    let ca = material(
        &Api::<Secret>::namespaced(client.clone(), &ns)
            .get(SECRET)
            .await
            .unwrap(),
    )
    .ca_crt
    .unwrap();
    let want_url = url(&newer).unwrap();
    let settled = eventually("the newer version's spec registered", WAIT, || async {
        let r = registered(&client, &config).await;
        r.iter()
            .all(|(_, u, b, v)| {
                u.as_deref().is_some_and(|u| u.starts_with(&want_url))
                    && b.as_deref() == Some(ca.as_slice())
                    && v.as_deref() == Some("1.10.0")
            })
            .then_some(r)
    })
    .await;
    // Ten seconds of both re-registering: nothing is written any more.
    let checks = [&old, &newer].map(|s| s.logs().matches(CHECKED_VALID).count());
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        assert_eq!(
            registered(&client, &config).await,
            settled,
            "a configuration was rewritten after the newer version took over:\n{}\n{}",
            old.logs(),
            newer.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (served, before) in [&old, &newer].into_iter().zip(checks) {
        assert!(
            served.logs().matches(CHECKED_VALID).count() >= before + 5,
            "both kept re-registering meanwhile:\n{}",
            served.logs()
        );
    }
    assert_eq!(
        old.logs().matches("written by a newer version").count(),
        2,
        "the older version says so once per configuration:\n{}",
        old.logs()
    );
    assert_ne!(url(&old), url(&newer));
}
