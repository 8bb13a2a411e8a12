//! End-to-end, under RBAC: `spark-webhook serve` authenticated as the operator's ServiceAccount
//! (a token minted with the TokenRequest API), bound to exactly the RBAC objects of the committed
//! kustomize base (`kubectl kustomize manifests/`, namespaces and cluster-scoped names made
//! unique per test). The whole flow works with those rules; with one rule taken away, the
//! operator says what is forbidden in its logs and in the app's status or Events, and keeps
//! running.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{NS_LABEL, Served, eventually, install_crd, kubectl, kubectl_ok, namespace};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use spark_webhook::certs::{files::generate, issue::CertOptions};
use spark_webhook::crd::SparkApplication;

const WAIT: Duration = Duration::from_secs(30);
const EXECUTOR: &str = include_str!("fixtures/executor-pod.json");
/// The names the base gives the operator's namespace, job namespace and ServiceAccount.
const BASE_OPERATOR_NS: &str = "spark-operator";
const BASE_JOB_NS: &str = "spark-jobs";
const OPERATOR_SA: &str = "spark-webhook";
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Every object of the base, as `kubectl apply -k manifests/` would apply them.
fn rendered_base() -> Vec<Value> {
    rendered("manifests")
}

/// Every object of the kustomization in `dir` (under the repo).
fn rendered(dir: &str) -> Vec<Value> {
    let root = common::repo_root().join(dir);
    let yaml = kubectl_ok(&["kustomize", root.to_str().unwrap()], None);
    yaml_serde::Deserializer::from_str(&yaml)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// One test's copy of the base's operator install: its own operator and job namespaces, and
/// cluster-scoped names that no other test uses.
struct Install {
    operator_ns: String,
    job_ns: String,
    /// Suffix of the ClusterRole/ClusterRoleBinding names.
    suffix: String,
    /// The test's webhook configuration name (Served uses `e2e-<job ns>`).
    config_name: String,
}

impl Install {
    async fn new(client: &Client, prefix: &str) -> Install {
        let job_ns = namespace(client, prefix).await;
        let operator_ns = namespace(client, &format!("{prefix}-op")).await;
        Install {
            suffix: job_ns.clone(),
            config_name: format!("e2e-{job_ns}"),
            operator_ns,
            job_ns,
        }
    }

    fn map_ns(&self, ns: &str) -> String {
        match ns {
            BASE_OPERATOR_NS => self.operator_ns.clone(),
            BASE_JOB_NS => self.job_ns.clone(),
            other => panic!("the base uses namespace {other}: map it in this test"),
        }
    }

    /// The base's RBAC objects (and ServiceAccounts), moved into this test's namespaces.
    fn rbac(&self, base: &[Value]) -> Vec<Value> {
        let mut out = Vec::new();
        for obj in base {
            let kind = obj["kind"].as_str().unwrap_or_default();
            if !RBAC_KINDS.contains(&kind) {
                continue;
            }
            let mut obj = obj.clone();
            if let Some(ns) = obj["metadata"]["namespace"].as_str() {
                obj["metadata"]["namespace"] = self.map_ns(ns).into();
            }
            if kind.starts_with("Cluster") {
                let name = format!(
                    "{}-{}",
                    obj["metadata"]["name"].as_str().unwrap(),
                    self.suffix
                );
                obj["metadata"]["name"] = name.into();
            }
            if obj["roleRef"]["kind"] == "ClusterRole" {
                let name = format!(
                    "{}-{}",
                    obj["roleRef"]["name"].as_str().unwrap(),
                    self.suffix
                );
                obj["roleRef"]["name"] = name.into();
            }
            for subject in obj["subjects"].as_array_mut().into_iter().flatten() {
                if let Some(ns) = subject["namespace"].as_str() {
                    subject["namespace"] = self.map_ns(ns).into();
                }
            }
            for rule in obj["rules"].as_array_mut().into_iter().flatten() {
                let webhooks = rule["apiGroups"]
                    .as_array()
                    .is_some_and(|g| g.iter().any(|g| g == "admissionregistration.k8s.io"));
                if webhooks {
                    assert_eq!(rule["resourceNames"], json!(["spark-webhook"]));
                    rule["resourceNames"] = json!([self.config_name]);
                }
            }
            out.push(obj);
        }
        let kinds: Vec<&str> = out.iter().filter_map(|o| o["kind"].as_str()).collect();
        for kind in RBAC_KINDS {
            assert!(kinds.contains(&kind), "the base has no {kind}: {kinds:?}");
        }
        out
    }

    /// The base's webhook configurations as `kubectl apply -k` creates them, under this test's
    /// name and limited to its job namespace (the operator then updates them: it may not create).
    fn webhook_configurations(&self, base: &[Value]) -> Vec<Value> {
        let mut out = Vec::new();
        for obj in base {
            let kind = obj["kind"].as_str().unwrap_or_default();
            if !kind.ends_with("WebhookConfiguration") {
                continue;
            }
            let mut obj = obj.clone();
            obj["metadata"]["name"] = self.config_name.clone().into();
            for hook in obj["webhooks"].as_array_mut().into_iter().flatten() {
                hook["namespaceSelector"] = json!({"matchLabels": {NS_LABEL: self.job_ns}});
                hook["clientConfig"]["service"]["namespace"] = self.operator_ns.clone().into();
            }
            out.push(obj);
        }
        assert_eq!(out.len(), 2, "the base has both webhook configurations");
        out
    }

    fn apply(&self, objects: Vec<Value>) {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        kubectl_ok(&["apply", "-f", "-"], Some(&list.to_string()));
    }

    /// Installs `rbac` and the webhook configurations, mints a token for the operator's
    /// ServiceAccount and writes a kubeconfig that authenticates with it (and nothing else).
    async fn install(
        &self,
        client: &Client,
        base: &[Value],
        rbac: Vec<Value>,
        dir: &Path,
    ) -> PathBuf {
        self.apply(rbac);
        self.apply(self.webhook_configurations(base));
        let request: TokenRequest = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = Api::<ServiceAccount>::namespaced(client.clone(), &self.operator_ns)
            .create_token_request(OPERATOR_SA, &PostParams::default(), &request)
            .await
            .expect("TokenRequest for the operator's ServiceAccount")
            .status
            .expect("token status")
            .token;
        let admin: Value =
            yaml_serde::from_str(&std::fs::read_to_string(&common::cluster().kubeconfig).unwrap())
                .unwrap();
        let cluster = admin["clusters"][0]["cluster"].clone();
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": OPERATOR_SA, "user": {"token": token}}],
            "contexts": [{"name": "operator", "context": {"cluster": "local", "user": OPERATOR_SA}}],
            "current-context": "operator"
        });
        let path = dir.join("operator.kubeconfig");
        std::fs::write(&path, yaml_serde::to_string(&kubeconfig).unwrap()).unwrap();
        path
    }

    /// Starts serve as the operator: leader election on, the Lease in the operator namespace.
    fn serve(&self, kubeconfig: &Path, certs: &Path) -> Served {
        self.serve_with(kubeconfig, certs, &[])
    }

    /// [`Install::serve`] with `extra` flags.
    fn serve_with(&self, kubeconfig: &Path, certs: &Path, extra: &[&str]) -> Served {
        let mut args = vec![
            "--leader-election=true",
            "--driver-start-timeout",
            "0s",
            // The UI Ingress too, and a quick sweep of deleted apps' objects.
            "--ingress-url-format",
            "{{$appName}}.example.com",
            "--orphan-sweep-interval",
            "500ms",
        ];
        args.extend_from_slice(extra);
        Served::start_as(
            kubeconfig,
            &[
                ("POD_NAME", "spark-webhook-e2e-0"),
                ("POD_NAMESPACE", &self.operator_ns),
            ],
            &self.job_ns,
            certs,
            &args,
        )
    }

    /// The objects of the opt-in component `dir` (plain YAML files listed in its
    /// kustomization), moved into this test's namespaces.
    fn component(&self, dir: &str) -> Vec<Value> {
        let root = common::repo_root().join(dir);
        let kustomization: Value = yaml_serde::from_str(
            &std::fs::read_to_string(root.join("kustomization.yaml")).unwrap(),
        )
        .unwrap();
        let mut out = Vec::new();
        for file in kustomization["resources"].as_array().unwrap() {
            let text = std::fs::read_to_string(root.join(file.as_str().unwrap())).unwrap();
            for doc in yaml_serde::Deserializer::from_str(&text) {
                let mut obj = Value::deserialize(doc).unwrap();
                if obj.is_null() {
                    continue;
                }
                if let Some(ns) = obj["metadata"]["namespace"].as_str() {
                    obj["metadata"]["namespace"] = self.map_ns(ns).into();
                }
                for subject in obj["subjects"].as_array_mut().into_iter().flatten() {
                    if let Some(ns) = subject["namespace"].as_str() {
                        subject["namespace"] = self.map_ns(ns).into();
                    }
                }
                out.push(obj);
            }
        }
        out
    }

    /// The user under whom the operator runs, as the apiserver names it in denials.
    fn user(&self) -> String {
        format!("system:serviceaccount:{}:{OPERATOR_SA}", self.operator_ns)
    }

    /// `kubectl auth can-i verb resource` as the operator, in `ns` (None: all namespaces).
    fn can_i(&self, verb: &str, resource: &str, ns: Option<&str>) -> bool {
        let user = format!("--as={}", self.user());
        let mut args = vec!["auth", "can-i", verb, resource, user.as_str()];
        match ns {
            Some(ns) => args.extend(["-n", ns]),
            None => args.push("--all-namespaces"),
        }
        let out = kubectl(&args);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    }

    /// Removes the cluster-scoped objects (namespaced ones go with the test's namespaces).
    fn cleanup(&self) {
        for (kind, name) in [
            (
                "clusterrolebinding",
                format!("spark-webhook-{}", self.suffix),
            ),
            ("clusterrole", format!("spark-webhook-{}", self.suffix)),
            (
                "clusterrolebinding",
                format!("spark-webhook-all-namespaces-{}", self.suffix),
            ),
            (
                "clusterrole",
                format!("spark-webhook-all-namespaces-{}", self.suffix),
            ),
            ("mutatingwebhookconfiguration", self.config_name.clone()),
            ("validatingwebhookconfiguration", self.config_name.clone()),
        ] {
            let _ = kubectl(&["delete", kind, &name, "--ignore-not-found", "--wait=false"]);
        }
    }
}

fn app(ns: &str) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": "spark-pi", "namespace": ns},
        "spec": {
            "type": "Scala", "mode": "cluster", "sparkVersion": "3.5.3", "image": "spark:3.5.3",
            "mainClass": "org.apache.spark.examples.SparkPi",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "restartPolicy": {"type": "Never"},
            "driver": {"cores": 1, "memory": "512m", "serviceAccount": "spark"},
            "executor": {"instances": 1, "cores": 1, "memory": "512m",
                         "env": [{"name": "FROM_THE_APP", "value": "yes"}]}
        }
    })
}

async fn wait_state(api: &Api<SparkApplication>, want: &str) -> SparkApplication {
    eventually(&format!("spark-pi in state {want}"), WAIT, || async {
        let app = api.get_opt("spark-pi").await.ok()??;
        let state = app.status.as_ref()?.application_state.state.to_string();
        (state == want).then_some(app)
    })
    .await
}

/// The Events in `ns` written by spark-webhook: (reason, note).
fn our_events(ns: &str) -> Vec<(String, String)> {
    let out = kubectl_ok(
        &["get", "events.events.k8s.io", "-n", ns, "-o", "json"],
        None,
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reportingController"] == "spark-webhook")
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn set_driver_phase(pods: &Api<Pod>, name: &str, phase: &str) {
    let status = json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "spark-kubernetes-driver", "ready": true, "restartCount": 0,
        "image": "spark:3.5.3", "imageID": "", "state": {"running": {}}
    }]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("driver pod status");
}

/// An executor as the driver would create it.
fn executor(ns: &str) -> Pod {
    let mut v: Value = serde_json::from_str(EXECUTOR).unwrap();
    let meta = v["metadata"].as_object_mut().unwrap();
    meta.remove("uid");
    meta.remove("creationTimestamp");
    meta.remove("ownerReferences");
    meta.insert("name".into(), "spark-pi-exec-1".into());
    meta.insert("namespace".into(), ns.into());
    v.as_object_mut().unwrap().remove("status");
    serde_json::from_value(v).unwrap()
}

/// The base's rules, unchanged: everything the operator does succeeds, and nothing is denied.
#[tokio::test]
async fn the_operator_runs_the_whole_flow_with_exactly_the_manifests_rbac() {
    let client = common::client().await;
    install_crd();
    let install = Install::new(&client, "rbac-ok").await;
    let base = rendered_base();
    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let kubeconfig = install
        .install(&client, &base, install.rbac(&base), tmp.path())
        .await;
    // Least privilege: pods, Services and ConfigMaps may be written in the job namespace and
    // nowhere else, not even listed cluster-wide.
    for resource in ["pods", "services", "configmaps"] {
        assert!(
            install.can_i("create", resource, Some(&install.job_ns)),
            "create {resource} in the job namespace"
        );
        for elsewhere in ["kube-system", "default", install.operator_ns.as_str()] {
            assert!(
                !install.can_i("create", resource, Some(elsewhere)),
                "the operator may create {resource} in {elsewhere}"
            );
        }
        assert!(
            !install.can_i("list", resource, None),
            "list {resource} cluster-wide"
        );
    }
    assert!(!install.can_i("delete", "pods", Some("kube-system")));
    assert!(!install.can_i("list", "sparkapplications", None));
    let mut served = install.serve(&kubeconfig, tmp.path());
    let ns = install.job_ns.as_str();

    // Registration: the configurations `kubectl apply -k` created now point at this webhook
    // and carry its CA (update, by name).
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(&install.config_name)
        .await
        .unwrap();
    let hook = &mutating.webhooks.as_ref().unwrap()[0];
    assert_eq!(
        hook.client_config.url.as_deref(),
        Some(format!("https://127.0.0.1:{}/mutate-v1-pod", served.webhook_port).as_str())
    );
    assert_eq!(
        hook.client_config.ca_bundle.as_ref().map(|b| b.0.clone()),
        Some(std::fs::read(tmp.path().join("ca.crt")).unwrap())
    );

    // Leader election: the Lease in the operator's namespace, held by this replica.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &install.operator_ns);
    eventually("the leader Lease", WAIT, || async {
        let lease = leases.get_opt("spark-webhook-lock").await.ok()??;
        let holder = lease.spec?.holder_identity?;
        (holder == "spark-webhook-e2e-0").then_some(())
    })
    .await;

    // Submission: driver pod, Service and ConfigMap, status SUBMITTED; with Prometheus
    // monitoring, also the ConfigMap kubeflow creates for it.
    let mut monitored = app(ns);
    monitored["spec"]["monitoring"] = json!({"exposeDriverMetrics": true, "exposeExecutorMetrics": true,
        "prometheus": {"jmxExporterJar": "/prometheus/jmx.jar"}});
    kubectl_ok(&["apply", "-f", "-"], Some(&monitored.to_string()));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let submitted = wait_state(&apps, "SUBMITTED").await;
    let driver = submitted.status.unwrap().driver_info.pod_name;
    let driver_pod = pods.get(&driver).await.expect("driver pod");
    assert_eq!(
        driver_pod.spec.unwrap().service_account_name.as_deref(),
        Some("spark")
    );
    let services = Api::<Service>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        services
            .items
            .iter()
            .any(|s| s.name_any().ends_with("-driver-svc"))
    );
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        config_maps
            .items
            .iter()
            .any(|c| c.name_any().starts_with("spark-drv-"))
    );
    // kubeflow's objects around the driver: the Prometheus ConfigMap, UI Service and Ingress.
    assert!(
        config_maps
            .items
            .iter()
            .any(|c| c.name_any() == "spark-pi-prom-conf")
    );
    assert!(
        services
            .items
            .iter()
            .any(|s| s.name_any() == "spark-pi-ui-svc")
    );
    let ingresses = Api::<Ingress>::namespaced(client.clone(), ns);
    assert!(
        ingresses
            .get_opt("spark-pi-ui-ingress")
            .await
            .unwrap()
            .is_some()
    );

    // The webhook mutates an executor the driver creates (its own identity reads the app).
    let exec = pods
        .create(&PostParams::default(), &executor(ns))
        .await
        .expect("executor pod");
    let spec = exec.spec.unwrap();
    assert_eq!(
        spec.security_context
            .and_then(|s| s.seccomp_profile)
            .map(|p| p.type_),
        Some("RuntimeDefault".to_string())
    );
    let env: Vec<String> = spec.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert!(env.contains(&"FROM_THE_APP".to_string()), "{env:?}");

    // Status follows the driver; Events are written in the job namespace.
    set_driver_phase(&pods, &driver, "Running").await;
    wait_state(&apps, "RUNNING").await;
    eventually("the operator's Events", WAIT, || async {
        let reasons: Vec<String> = our_events(ns).into_iter().map(|(r, _)| r).collect();
        (reasons.iter().any(|r| r == "SparkApplicationSubmitted")
            && reasons.iter().any(|r| r == "SparkDriverRunning"))
        .then_some(())
    })
    .await;

    // What a user sees with kubectl.
    let table = kubectl_ok(&["get", "sparkapp", "-n", ns], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SUSPEND", "STATUS", "ATTEMPTS", "START", "FINISH", "AGE"
        ],
        "{table}"
    );
    assert!(table.contains("RUNNING"), "{table}");
    let described = kubectl_ok(&["describe", "sparkapp", "-n", ns, "spark-pi"], None);
    assert!(
        described.contains("SparkApplicationSubmitted"),
        "{described}"
    );

    // A SparkConnect gets its server pod, Service and status with the manifests' rules.
    let conn = json!({"apiVersion": "sparkoperator.k8s.io/v1alpha1", "kind": "SparkConnect",
        "metadata": {"name": "connect", "namespace": ns},
        "spec": {"sparkVersion": "4.0.5", "image": "spark:4.0.5", "server": {}, "executor": {"instances": 1}}});
    kubectl_ok(&["apply", "-f", "-"], Some(&conn.to_string()));
    eventually(
        "the SparkConnect's server, Service and status",
        WAIT,
        || async {
            let status = kubectl_ok(
                &[
                    "get",
                    "sparkconnect",
                    "connect",
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.status.state}/{.status.server.podName}",
                ],
                None,
            );
            let svc = Api::<Service>::namespaced(client.clone(), ns);
            (status == "NotReady/connect-server"
                && pods.get_opt("connect-server").await.ok()?.is_some()
                && svc.get_opt("connect-server").await.ok()?.is_some())
            .then_some(())
        },
    )
    .await;

    // A ScheduledSparkApplication starts its run and patches its status with the manifests'
    // rules (Forbid: one run while it is unfinished).
    let schedule = json!({"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
        "metadata": {"name": "every", "namespace": ns},
        "spec": {"schedule": "@every 2s", "concurrencyPolicy": "Forbid", "template": app(ns)["spec"]}});
    kubectl_ok(&["apply", "-f", "-"], Some(&schedule.to_string()));
    let run = eventually("the schedule's run and status", WAIT, || async {
        let status = kubectl_ok(
            &[
                "get",
                "scheduledsparkapplication",
                "every",
                "-n",
                ns,
                "-o",
                "jsonpath={.status.scheduleState}/{.status.lastRunName}",
            ],
            None,
        );
        let run = status.strip_prefix("Scheduled/every-")?;
        (!run.is_empty()).then(|| format!("every-{run}"))
    })
    .await;
    assert!(apps.get_opt(&run).await.unwrap().is_some(), "{run}");

    // Deleting the app tears its attempt down (no garbage collector here): by label, with the
    // manifests' rules.
    apps.delete("spark-pi", &Default::default()).await.unwrap();
    eventually("the attempt's objects deleted", WAIT, || async {
        let svc = Api::<Service>::namespaced(client.clone(), ns);
        let cms = Api::<ConfigMap>::namespaced(client.clone(), ns);
        let gone = pods.get_opt(&driver).await.ok()?.is_none()
            && svc.get_opt("spark-pi-ui-svc").await.ok()?.is_none()
            && cms.get_opt("spark-pi-prom-conf").await.ok()?.is_none()
            && ingresses
                .get_opt("spark-pi-ui-ingress")
                .await
                .ok()?
                .is_none();
        gone.then_some(())
    })
    .await;

    let logs = served.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "nothing may be denied with the manifests' rules:\n{logs}"
    );
    // A clean stop releases the Lease (a patch, by name).
    let status = served.terminate();
    assert!(
        status.success(),
        "serve exited with {status}:\n{}",
        served.logs()
    );
    assert!(
        served.logs().contains("leader lease released"),
        "{}",
        served.logs()
    );
    install.cleanup();
}

/// `--enable-batch-scheduler` and `--enable-resource-quota-enforcement` with the base's RBAC
/// plus the `batch-scheduler` component: a Volcano app's PodGroup is created and removed with its
/// attempt, and an app too large for the namespace's quota is refused; the base alone grants
/// neither right.
#[tokio::test]
async fn the_batch_scheduler_component_grants_what_gang_scheduling_and_quotas_need() {
    let client = common::client().await;
    install_crd();
    common::install_crd_file(
        "tests/fixtures/batch-schedulers/volcano-podgroups.yaml",
        "crd/podgroups.scheduling.volcano.sh",
    );
    let install = Install::new(&client, "rbac-batch").await;
    let base = rendered_base();
    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let kubeconfig = install
        .install(&client, &base, install.rbac(&base), tmp.path())
        .await;
    let job = Some(install.job_ns.as_str());
    assert!(!install.can_i("create", "podgroups.scheduling.volcano.sh", job));
    assert!(!install.can_i("list", "resourcequotas", job));
    install.apply(install.component("manifests/batch-scheduler"));
    assert!(install.can_i("create", "podgroups.scheduling.volcano.sh", job));
    assert!(install.can_i("list", "resourcequotas", job));
    assert!(!install.can_i("create", "podgroups.scheduling.volcano.sh", Some("default")));
    let mut served = install.serve_with(
        &kubeconfig,
        tmp.path(),
        &[
            "--enable-batch-scheduler",
            "--enable-resource-quota-enforcement",
        ],
    );
    let ns = install.job_ns.as_str();
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
    let groups: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("scheduling.volcano.sh", "v1beta1", "PodGroup"),
            "podgroups",
        ),
    );
    let mut gang = app(ns);
    gang["spec"]["batchScheduler"] = "volcano".into();
    kubectl_ok(&["apply", "-f", "-"], Some(&gang.to_string()));
    wait_state(&apps, "SUBMITTED").await;
    groups.get("spark-spark-pi-pg").await.expect("the PodGroup");
    apps.patch(
        "spark-pi",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    wait_state(&apps, "SUSPENDED").await;
    assert!(groups.get_opt("spark-spark-pi-pg").await.unwrap().is_none());

    // A quota with nothing left (its status written as the quota controller would).
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> =
        Api::namespaced(client.clone(), ns);
    let quota = serde_json::from_value(json!({"metadata": {"name": "full"},
        "spec": {"hard": {"requests.cpu": "1"}}}))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    let status = json!({"status": {"hard": {"requests.cpu": "1"}, "used": {"requests.cpu": "1"}}});
    quotas
        .patch_status("full", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    let mut other = app(ns);
    other["metadata"]["name"] = "over".into();
    let refused = common::kubectl_stdin(&["apply", "-f", "-"], Some(&other.to_string()));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("ResourceQuota")
            && stderr.contains("requests.cpu 2"),
        "{stderr}"
    );
    let logs = served.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "nothing may be denied with the component's rules:\n{logs}"
    );
    served.terminate();
    install.cleanup();
}

/// Without `create` on configmaps, submission fails with the apiserver's denial in the app's
/// status, in a Warning Event and in the operator's log; the half-created driver is removed and
/// the operator keeps serving.
#[tokio::test]
async fn without_configmaps_create_the_submission_fails_loudly_and_the_operator_carries_on() {
    let client = common::client().await;
    install_crd();
    let install = Install::new(&client, "rbac-cm").await;
    let base = rendered_base();
    let mut rbac = install.rbac(&base);
    let job_role = rbac
        .iter_mut()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "spark-webhook")
        .expect("the job namespace's Role spark-webhook");
    let rule = job_role["rules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["resources"] == json!(["configmaps"]))
        .expect("the configmaps rule");
    let verbs = rule["verbs"].as_array_mut().unwrap();
    let before = verbs.len();
    verbs.retain(|v| v != "create");
    assert_eq!(verbs.len(), before - 1, "the base grants configmaps create");

    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let kubeconfig = install.install(&client, &base, rbac, tmp.path()).await;
    let mut served = install.serve(&kubeconfig, tmp.path());
    let ns = install.job_ns.as_str();
    kubectl_ok(&["apply", "-f", "-"], Some(&app(ns).to_string()));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);

    // restartPolicy Never: SUBMISSION_FAILED, then FAILED, keeping the reason.
    let failed = wait_state(&apps, "FAILED").await;
    let status = failed.status.unwrap();
    let denial = format!(
        "User \"{}\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"{ns}\"",
        install.user()
    );
    let message = &status.application_state.error_message;
    assert!(
        message.contains("creating the driver ConfigMap"),
        "{message}"
    );
    assert!(message.contains(&denial), "{message}");
    assert_eq!(status.submission_attempts, 1);
    let events = eventually("the SubmissionFailed Event", WAIT, || async {
        let events = our_events(ns);
        events
            .iter()
            .any(|(r, _)| r == "SparkApplicationSubmissionFailed")
            .then_some(events)
    })
    .await;
    let (_, note) = events
        .iter()
        .find(|(r, _)| r == "SparkApplicationSubmissionFailed")
        .unwrap();
    assert!(note.contains(&denial), "{note}");
    let logs = served.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("submission failed") && l.contains(&denial)),
        "the log names what was denied:\n{logs}"
    );

    // No driver is left behind without its ConfigMap (it could never start).
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    common::wait_pod_gone(
        &pods,
        "spark-pi-driver",
        "the half-submitted driver deleted",
        WAIT,
    )
    .await;

    // Degraded, not down: still running and ready.
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "serve exited:\n{}",
        served.logs()
    );
    assert_eq!(served.admin_get("/readyz").map(|(c, _)| c), Some(200));
    let status = served.terminate();
    assert!(status.success(), "serve exited with {status}");
    install.cleanup();
}

/// Without the job namespace's events Role, apps still run (status is right) and the log says
/// which Events could not be written, and why.
#[tokio::test]
async fn without_the_events_role_apps_still_run_and_the_log_names_the_denial() {
    let client = common::client().await;
    install_crd();
    let install = Install::new(&client, "rbac-ev").await;
    let base = rendered_base();
    let mut rbac = install.rbac(&base);
    let events_role = rbac
        .iter_mut()
        .find(|o| {
            o["kind"] == "Role"
                && o["metadata"]["namespace"] == install.job_ns.as_str()
                && o["rules"][0]["apiGroups"] == json!(["events.k8s.io"])
        })
        .expect("the job namespace's events Role");
    events_role["rules"] = json!([]);

    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let kubeconfig = install.install(&client, &base, rbac, tmp.path()).await;
    let mut served = install.serve(&kubeconfig, tmp.path());
    let ns = install.job_ns.as_str();
    kubectl_ok(&["apply", "-f", "-"], Some(&app(ns).to_string()));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
    wait_state(&apps, "SUBMITTED").await;

    let denial = format!(
        "User \"{}\" cannot create resource \"events\" in API group \"events.k8s.io\" in the namespace \"{ns}\"",
        install.user()
    );
    let line = eventually("the denied Event in the log", WAIT, || async {
        served
            .logs()
            .lines()
            .find(|l| l.contains("WARN") && l.contains("could not publish event"))
            .map(String::from)
    })
    .await;
    assert!(line.contains(&denial), "{line}");
    assert!(line.contains("SparkApplicationSubmitted"), "{line}");
    assert!(our_events(ns).is_empty());

    assert!(
        served.child.try_wait().unwrap().is_none(),
        "serve exited:\n{}",
        served.logs()
    );
    let status = served.terminate();
    assert!(status.success(), "serve exited with {status}");
    install.cleanup();
}

/// Without the rules it needs before it can do anything (its webhook configurations, its Lease),
/// serve does not limp along or retry in silence: it stops at once with one `error:` line that
/// names the object and the denial (a Deployment shows it as a crash with that reason).
#[tokio::test]
async fn without_its_registration_or_lease_rules_serve_stops_at_once_and_says_why() {
    let client = common::client().await;
    install_crd();
    type Cut = fn(&mut Vec<Value>);
    let cases: [(&str, Cut, &str); 2] = [
        (
            "rbac-wh",
            |rbac| {
                let role = rbac
                    .iter_mut()
                    .find(|o| o["kind"] == "ClusterRole")
                    .unwrap();
                role["rules"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|r| r["apiGroups"] != json!(["admissionregistration.k8s.io"]));
            },
            "registering the webhook configurations: reading MutatingWebhookConfiguration",
        ),
        (
            "rbac-le",
            |rbac| {
                let role = rbac
                    .iter_mut()
                    .find(|o| {
                        o["kind"] == "Role"
                            && o["rules"][0]["apiGroups"] == json!(["coordination.k8s.io"])
                    })
                    .unwrap();
                role["rules"] = json!([]);
            },
            "leader election on Lease",
        ),
    ];
    for (prefix, cut, error) in cases {
        let install = Install::new(&client, prefix).await;
        let base = rendered_base();
        let mut rbac = install.rbac(&base);
        cut(&mut rbac);
        let tmp = tempfile::tempdir().unwrap();
        generate(&CertOptions::new(tmp.path())).unwrap();
        let kubeconfig = install.install(&client, &base, rbac, tmp.path()).await;
        let mut served = Served::spawn_as(
            &kubeconfig,
            &[("POD_NAMESPACE", &install.operator_ns)],
            &install.job_ns,
            tmp.path(),
            &["--leader-election=true"],
        );
        let status = served.wait_exit(WAIT);
        let logs = served.logs();
        let status = status.unwrap_or_else(|| panic!("{prefix}: serve kept running:\n{logs}"));
        assert!(!status.success(), "{prefix}: {status}");
        let line = logs
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{prefix}: no error line:\n{logs}"));
        assert!(line.contains(error), "{prefix}: {line}");
        assert!(
            line.contains(&install.user()) && line.contains("forbidden"),
            "{prefix}: {line}"
        );
        install.cleanup();
    }
}

/// The all-namespaces variant (`manifests/all-namespaces`): the same job-namespace rules granted
/// cluster-wide, and only there. `kubectl auth can-i` shows the grant reaches every namespace,
/// and the submission flow runs with exactly that variant's RBAC. (serve keeps --namespaces at
/// the test's namespace: on the shared test apiserver an all-namespaces operator would submit
/// the other tests' apps; the cluster-wide list and watch it needs are shown by can-i.)
#[tokio::test]
async fn the_all_namespaces_variant_grants_the_job_rules_everywhere_and_runs_the_flow() {
    let client = common::client().await;
    install_crd();
    let install = Install::new(&client, "rbac-all").await;
    let variant = rendered("manifests/all-namespaces");
    let rbac = install.rbac(&variant);
    assert!(
        rbac.iter().any(|o| o["kind"] == "ClusterRole"
            && o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("spark-webhook-all-namespaces"))),
        "the variant's cluster-wide grant"
    );
    let deployment = variant
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    assert!(
        !args
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.starts_with("--namespaces"))),
        "the variant serves every namespace: {args:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    generate(&CertOptions::new(tmp.path())).unwrap();
    let kubeconfig = install.install(&client, &variant, rbac, tmp.path()).await;
    for resource in ["pods", "services", "configmaps"] {
        for ns in ["kube-system", "default", install.job_ns.as_str()] {
            assert!(
                install.can_i("create", resource, Some(ns)),
                "create {resource} in {ns}"
            );
        }
    }
    for resource in ["pods", "sparkapplications"] {
        for verb in ["list", "watch"] {
            assert!(
                install.can_i(verb, resource, None),
                "{verb} {resource} cluster-wide"
            );
        }
    }
    assert!(install.can_i("delete", "sparkapplications", Some("default")));
    assert!(
        !install.can_i("get", "secrets", Some("kube-system")),
        "no more than the job rules"
    );

    let mut served = install.serve(&kubeconfig, tmp.path());
    let ns = install.job_ns.as_str();
    kubectl_ok(&["apply", "-f", "-"], Some(&app(ns).to_string()));
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), ns);
    let submitted = wait_state(&apps, "SUBMITTED").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.get(&submitted.status.unwrap().driver_info.pod_name)
        .await
        .expect("driver pod");
    let logs = served.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "nothing may be denied with the variant's rules:\n{logs}"
    );
    assert!(served.terminate().success(), "{}", served.logs());
    install.cleanup();
}
