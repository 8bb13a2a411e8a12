//! A SparkConnect's server: a Spark driver whose main class is Spark's `SparkConnectServer`,
//! built by the same steps as a SparkApplication's driver (its `spark.properties` ConfigMap with
//! the executor pod template, headless driver Service, pod mutation rules), and the Service
//! clients connect through.
//!
//! The SparkConnect is read as the SparkApplication it amounts to ([`as_application`]): `server`
//! is the driver, `executor` the executors, and the main resource Spark's `spark-internal` (no
//! jar: the Connect server ships in the image's `jars/`). kubeflow instead runs
//! `start-connect-server.sh` in client mode with `--conf`s of its own; here the server gets
//! every rule a driver gets, and its executors the pre-mutated template, webhook or not.
//!
//! What differs from a SparkApplication's objects: no `sparkoperator.k8s.io/app-name` label
//! (the webhook would look for, and refuse a pod without, that SparkApplication) but kubeflow's
//! `sparkoperator.k8s.io/connect-name`; the server pod's `spark-role` is kubeflow's
//! `connect-server`; the pod is owned by the SparkConnect; it is named `<name>-server` and has a
//! readiness probe on the gRPC port, so Ready means clients can connect.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerPort, Pod, Probe, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use super::assemble::{self, MainApp, Resource as MainResource};
use super::conf::Conf;
use super::ctx::Ctx;
use super::error::SubmissionError;
use super::keys::{DRIVER_LABEL_PREFIX, EXECUTOR_LABEL_PREFIX, JARS};
use super::{SubmitOptions, driver, executor_template, objects, version};
use crate::crd::{
    ConnectPodSpec, DeployMode, DriverSpec, ExecutorSpec, SparkApplication, SparkApplicationSpec,
    SparkApplicationType, SparkConnect, SparkPodSpec,
};
use crate::labels::{
    APP_NAME_LABEL, CONNECT_NAME_LABEL, CONNECT_SERVER_ROLE, CREATED_BY_LABEL, LAUNCHED_BY_LABEL,
    SPARK_ROLE_LABEL, SPARK_VERSION_LABEL, SUBMISSION_ID_LABEL, SparkRole,
};
use crate::mutate;

/// Spark's Connect server main class (in `spark-connect_<scala>-<version>.jar`).
pub const SERVER_CLASS: &str = "org.apache.spark.sql.connect.service.SparkConnectServer";
/// Spark's "no main resource" (`SparkLauncher.NO_RESOURCE`), as `start-connect-server.sh` submits.
const NO_RESOURCE: &str = "spark-internal";
/// `spark.connect.grpc.binding.port`'s default, the port clients connect to.
pub const GRPC_PORT: i32 = 15002;
const GRPC_PORT_NAME: &str = "spark-connect";
const HADOOP_PREFIX: &str = "spark.hadoop.";

/// The objects of one server generation.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectServer {
    /// On the pod, its ConfigMap and headless Service: the generation they were built from.
    pub submission_id: String,
    /// `<name>-server`, owned by the SparkConnect.
    pub pod: Pod,
    /// The headless driver Service the executors reach the server by; no ownerReferences until
    /// [`ConnectServer::owned_by_pod`].
    pub driver_service: Service,
    /// `spark.properties` and the executor pod template; no ownerReferences until
    /// [`ConnectServer::owned_by_pod`].
    pub config_map: ConfigMap,
}

impl ConnectServer {
    /// Makes the ConfigMap and headless Service children of the created pod (as Spark does for
    /// a driver's), so they go with it: on a restart and when the SparkConnect is deleted.
    pub fn owned_by_pod(&mut self, pod_uid: &str) {
        let reference = super::driver_reference(server_pod_name(self.name()), pod_uid);
        self.driver_service.metadata.owner_references = Some(vec![reference.clone()]);
        self.config_map.metadata.owner_references = Some(vec![reference]);
    }

    fn name(&self) -> &str {
        self.pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONNECT_NAME_LABEL))
            .map_or("", String::as_str)
    }
}

/// `<name>-server`: the server pod (and, by default, the Service).
pub fn server_pod_name(name: &str) -> String {
    format!("{name}-server")
}

/// The name of the Service clients connect through: `spec.server.service`'s, else
/// `<name>-server`.
pub fn server_service_name(conn: &SparkConnect) -> String {
    conn.spec
        .server
        .service
        .as_ref()
        .and_then(|s| s.metadata.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| server_pod_name(&conn.metadata.name.clone().unwrap_or_default()))
}

/// The labels that select a SparkConnect's server pod (kubeflow's `GetServerSelectorLabels`).
pub fn server_selector(conn: &SparkConnect) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LAUNCHED_BY_LABEL.to_string(), "true".to_string()),
        (
            CONNECT_NAME_LABEL.to_string(),
            conn.metadata.name.clone().unwrap_or_default(),
        ),
        (
            SPARK_ROLE_LABEL.to_string(),
            CONNECT_SERVER_ROLE.to_string(),
        ),
        (
            SPARK_VERSION_LABEL.to_string(),
            conn.spec.spark_version.clone(),
        ),
    ])
}

/// The server's objects for the SparkConnect's current generation (`metadata.generation`, which
/// only a spec change moves): a new generation gets a new submission id, ConfigMap and headless
/// Service, which is how the controller sees that the running server is out of date.
pub fn connect_server(
    conn: &SparkConnect,
    opts: &SubmitOptions,
) -> Result<ConnectServer, SubmissionError> {
    let app = as_application(conn);
    let generation = conn.metadata.generation.unwrap_or(1);
    let attempt = u32::try_from(generation).unwrap_or(u32::MAX);
    let ctx = Ctx::new(&app, attempt, opts)?;
    let main = MainApp {
        resource: MainResource::Java,
        main_class: SERVER_CLASS.to_string(),
        main_file: NO_RESOURCE.to_string(),
    };
    let mut conf = assemble::build(&ctx, &main)?;
    relabel_conf(&mut conf, ctx.name);
    let executor_template = executor_template::attach(&ctx, &mut conf)?;
    let mut selector = driver::spark_labels(&ctx, &conf);
    selector.insert(SPARK_ROLE_LABEL.into(), CONNECT_SERVER_ROLE.into());
    let version = version::SparkVersion::of(&ctx, &conf);
    let mut pod = driver::pod(&ctx, &conf, &main, version)?;
    mutate::mutate_pod(&app, SparkRole::Driver, &mut pod, &opts.mutation)?;
    server_pod(conn, &app, &mut pod)?;
    let mut driver_service = objects::service(&ctx, &conf, selector, version)?;
    relabel(&mut driver_service.metadata, ctx.name);
    // Executors find the server by this headless Service's DNS name while it starts, but the
    // server is Ready only once its gRPC port answers, which comes after its SparkContext has
    // waited for those executors: without this, DNS has no address for them until then, and
    // they fail (UnknownHostException) until Spark gives up. A Spark driver has no readiness
    // probe, so its own Service never needed it.
    if let Some(spec) = driver_service.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    let mut config_map = objects::config_map(&ctx, &conf, executor_template);
    relabel(&mut config_map.metadata, ctx.name);
    Ok(ConnectServer {
        submission_id: ctx.names.submission_id.clone(),
        pod,
        driver_service,
        config_map,
    })
}

/// The SparkConnect as a SparkApplication: the server is the driver (named `<name>-server`),
/// `executor` the executors; the SparkConnect's labels go to both, as kubeflow passes them.
pub fn as_application(conn: &SparkConnect) -> SparkApplication {
    let spec = &conn.spec;
    let name = conn.metadata.name.clone().unwrap_or_default();
    // As kubeflow: an image in a template's Spark container wins over `spec.image`.
    let pod = |p: &ConnectPodSpec, container: &str| SparkPodSpec {
        cores: p.cores,
        memory: p.memory.clone(),
        image: template_image(p, container),
        template: p.template.clone(),
        ..SparkPodSpec::default()
    };
    // kubeflow's Connect takes hadoopConf keys with or without `spark.hadoop.`.
    let hadoop_conf = spec
        .hadoop_conf
        .iter()
        .map(|(k, v)| {
            (
                k.strip_prefix(HADOOP_PREFIX).unwrap_or(k).to_string(),
                v.clone(),
            )
        })
        .collect();
    SparkApplication {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: conn.metadata.namespace.clone(),
            uid: conn.metadata.uid.clone(),
            labels: conn.metadata.labels.clone(),
            ..ObjectMeta::default()
        },
        spec: SparkApplicationSpec {
            type_: SparkApplicationType::Scala,
            spark_version: spec.spark_version.clone(),
            mode: Some(DeployMode::Cluster),
            image: spec.image.clone(),
            main_class: Some(SERVER_CLASS.to_string()),
            main_application_file: Some(NO_RESOURCE.to_string()),
            spark_conf: spec.spark_conf.clone(),
            hadoop_conf,
            driver: DriverSpec {
                pod: pod(&spec.server.pod, driver::DRIVER_CONTAINER),
                pod_name: Some(server_pod_name(&name)),
                ..DriverSpec::default()
            },
            executor: ExecutorSpec {
                pod: pod(&spec.executor.pod, executor_template::EXECUTOR_CONTAINER),
                instances: spec.executor.instances,
                ..ExecutorSpec::default()
            },
            dynamic_allocation: spec.dynamic_allocation.clone(),
            ..SparkApplicationSpec::default()
        },
        status: None,
    }
}

/// The image of the template's container named `container`, if it names one.
fn template_image(pod: &ConnectPodSpec, container: &str) -> Option<String> {
    let spec = pod.template.as_ref()?.spec.as_ref()?;
    spec.containers
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.image.clone())
        .filter(|i| !i.is_empty())
}

/// The SparkApplication's label (`app-name`) becomes the SparkConnect's (`connect-name`) on the
/// server and the executors Spark creates; `spark-internal` is not a jar to ship.
fn relabel_conf(conf: &mut Conf, name: &str) {
    for prefix in [DRIVER_LABEL_PREFIX, EXECUTOR_LABEL_PREFIX] {
        conf.remove(&format!("{prefix}{APP_NAME_LABEL}"));
        conf.insert(format!("{prefix}{CONNECT_NAME_LABEL}"), name.to_string());
    }
    let jars: Vec<&str> = conf
        .get(JARS)
        .map(|j| j.split(',').filter(|j| *j != NO_RESOURCE).collect())
        .unwrap_or_default();
    if jars.is_empty() {
        conf.remove(JARS);
    } else {
        let jars = jars.join(",");
        conf.insert(JARS.into(), jars);
    }
}

fn relabel(meta: &mut ObjectMeta, name: &str) {
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.remove(APP_NAME_LABEL);
    labels.insert(CONNECT_NAME_LABEL.into(), name.to_string());
}

/// What makes the driver pod the SparkConnect's server: its role label, its owner, the gRPC
/// port and a readiness probe on it (unless the template has one).
fn server_pod(
    conn: &SparkConnect,
    app: &SparkApplication,
    pod: &mut Pod,
) -> Result<(), SubmissionError> {
    let name = conn.metadata.name.clone().unwrap_or_default();
    relabel(&mut pod.metadata, &name);
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(SPARK_ROLE_LABEL.into(), CONNECT_SERVER_ROLE.into());
    // The rules made the SparkApplication (same uid) the owner; it is the SparkConnect.
    let owner = connect_owner(conn);
    let refs = pod.metadata.owner_references.get_or_insert_with(Vec::new);
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner);
    let index = mutate::spark_container_index(pod, app, SparkRole::Driver)?;
    let Some(container) = pod.spec.as_mut().map(|s| &mut s.containers[index]) else {
        return Ok(());
    };
    let ports = container.ports.get_or_insert_with(Vec::new);
    if !ports.iter().any(|p| p.container_port == GRPC_PORT) {
        ports.push(ContainerPort {
            name: Some(GRPC_PORT_NAME.into()),
            container_port: GRPC_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        });
    }
    if container.readiness_probe.is_none() {
        container.readiness_probe = Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(GRPC_PORT),
                host: None,
            }),
            period_seconds: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        });
    }
    Ok(())
}

/// The SparkConnect as controller owner: deleting it deletes the server pod and the Service,
/// and through the pod its ConfigMap, headless Service and executors.
pub fn connect_owner(conn: &SparkConnect) -> OwnerReference {
    OwnerReference {
        api_version: SparkConnect::api_version(&()).into_owned(),
        kind: SparkConnect::kind(&()).into_owned(),
        name: conn.metadata.name.clone().unwrap_or_default(),
        uid: conn.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The Service clients connect through, as kubeflow builds it: `spec.server.service`'s name,
/// labels, annotations and spec (type, ...) if given, with kubeflow's four ports (driver RPC,
/// block manager, web UI, Spark Connect gRPC) and the server selector.
pub fn server_service(conn: &SparkConnect) -> Service {
    let mut svc = conn.spec.server.service.clone().unwrap_or_default();
    svc.metadata = ObjectMeta {
        name: Some(server_service_name(conn)),
        namespace: conn.metadata.namespace.clone(),
        labels: svc.metadata.labels.take(),
        annotations: svc.metadata.annotations.take(),
        owner_references: Some(vec![connect_owner(conn)]),
        ..ObjectMeta::default()
    };
    let labels = svc.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(CREATED_BY_LABEL.into(), "true".into());
    labels.insert(
        CONNECT_NAME_LABEL.into(),
        conn.metadata.name.clone().unwrap_or_default(),
    );
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    spec.ports = Some(
        [
            ("driver-rpc", 7078, "tcp"),
            ("blockmanager", 7079, "tcp"),
            ("web-ui", 4040, "http"),
            ("spark-connect-server", GRPC_PORT, "grpc"),
        ]
        .into_iter()
        .map(|(name, port, protocol)| ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            app_protocol: Some(protocol.into()),
            ..ServicePort::default()
        })
        .collect(),
    );
    spec.selector
        .get_or_insert_with(BTreeMap::new)
        .extend(server_selector(conn));
    svc.status = None;
    svc
}

/// The submission id a server pod was built with (label `sparkoperator.k8s.io/submission-id`).
pub fn pod_submission_id(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(SUBMISSION_ID_LABEL)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> SparkConnect {
        let text = include_str!("../../tests/fixtures/spark-connect.yaml");
        let mut conn: SparkConnect = yaml_serde::from_str(text).expect("kubeflow's example");
        conn.metadata.uid = Some("0b6e1f52-6d8e-4d5c-9a63-2f1f5b1b0c11".into());
        conn.metadata.generation = Some(1);
        conn
    }

    fn conf_of(server: &ConnectServer) -> String {
        server.config_map.data.as_ref().expect("data")["spark.properties"].clone()
    }

    #[test]
    fn the_server_is_a_driver_running_spark_connect() {
        let conn = example();
        let server = connect_server(&conn, &SubmitOptions::default()).expect("builds");
        let pod = &server.pod;
        assert_eq!(pod.metadata.name.as_deref(), Some("spark-connect-server"));
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[SPARK_ROLE_LABEL], CONNECT_SERVER_ROLE);
        assert_eq!(labels[CONNECT_NAME_LABEL], "spark-connect");
        assert_eq!(labels[SPARK_VERSION_LABEL], "4.0.4");
        assert!(!labels.contains_key(APP_NAME_LABEL), "{labels:?}");
        // The template's labels and the webhook's rules (seccomp default) are on the pod.
        assert_eq!(labels["key1"], "value1");
        let spec = pod.spec.as_ref().expect("spec");
        let c = &spec.containers[0];
        assert_eq!(c.name, "spark-kubernetes-driver");
        assert_eq!(c.image.as_deref(), Some("docker.io/apache/spark:4.0.4"));
        let args = c.args.as_ref().expect("args");
        assert!(
            args.windows(2).any(|w| w == ["--class", SERVER_CLASS]),
            "{args:?}"
        );
        assert_eq!(args.last().map(String::as_str), Some(NO_RESOURCE));
        assert!(c.readiness_probe.is_some());
        let owners = pod.metadata.owner_references.as_ref().expect("owners");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "SparkConnect");
        assert_eq!(owners[0].api_version, "sparkoperator.k8s.io/v1alpha1");
        // Every selector label of both Services is on the pod.
        for (k, v) in server_selector(&conn) {
            assert_eq!(labels.get(&k), Some(&v), "{k}");
        }
        let headless = server.driver_service.spec.as_ref().expect("spec");
        for (k, v) in headless.selector.as_ref().expect("selector") {
            assert_eq!(labels.get(k), Some(v), "headless Service selector {k}");
        }
        // Executors resolve the server before it is Ready (its probe waits on them).
        assert_eq!(headless.publish_not_ready_addresses, Some(true));
    }

    #[test]
    fn executors_are_sized_labelled_and_templated_from_spec_executor() {
        let server = connect_server(&example(), &SubmitOptions::default()).expect("builds");
        let conf = conf_of(&server);
        for line in [
            "spark.executor.instances=2",
            "spark.executor.cores=1",
            "spark.executor.memory=512m",
            "spark.kubernetes.executor.label.sparkoperator.k8s.io/connect-name=spark-connect",
            "spark.kubernetes.executor.podTemplateFile=",
        ] {
            assert!(conf.lines().any(|l| l.starts_with(line)), "{line}\n{conf}");
        }
        assert!(!conf.contains("app-name"), "{conf}");
        assert!(!conf.contains("spark.jars="), "{conf}");
        let template =
            &server.config_map.data.as_ref().expect("data")["executor-pod-template.yaml"];
        assert!(
            template.contains("RuntimeDefault") && template.contains("key3"),
            "{template}"
        );
    }

    #[test]
    fn a_new_generation_is_a_new_submission() {
        let mut conn = example();
        let first = connect_server(&conn, &SubmitOptions::default()).expect("builds");
        assert_eq!(
            connect_server(&conn, &SubmitOptions::default()).expect("builds"),
            first,
            "deterministic"
        );
        conn.metadata.generation = Some(2);
        let second = connect_server(&conn, &SubmitOptions::default()).expect("builds");
        assert_ne!(first.submission_id, second.submission_id);
        assert_ne!(
            first.config_map.metadata.name,
            second.config_map.metadata.name
        );
        assert_eq!(second.pod.metadata.name, first.pod.metadata.name);
        assert_eq!(
            pod_submission_id(&second.pod),
            Some(second.submission_id.as_str())
        );
    }

    #[test]
    fn the_service_has_kubeflows_ports_and_selects_the_server() {
        let conn = example();
        let svc = server_service(&conn);
        assert_eq!(svc.metadata.name.as_deref(), Some("spark-connect-server"));
        let spec = svc.spec.as_ref().expect("spec");
        let ports: Vec<(String, i32)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port))
            .collect();
        assert_eq!(
            ports,
            [
                ("driver-rpc".into(), 7078),
                ("blockmanager".into(), 7079),
                ("web-ui".into(), 4040),
                ("spark-connect-server".into(), 15002)
            ]
        );
        assert_eq!(spec.selector.as_ref(), Some(&server_selector(&conn)));
        assert_eq!(
            svc.metadata.owner_references.as_ref().expect("owner")[0].kind,
            "SparkConnect"
        );
    }

    #[test]
    fn a_users_service_keeps_its_name_type_and_labels_with_kubeflows_ports() {
        let mut conn = example();
        conn.spec.server.service = Some(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "my-connect", "labels": {"team": "a"}},
                "spec": {"type": "NodePort", "ports": [{"port": 1}]}
            }))
            .expect("a Service"),
        );
        assert_eq!(server_service_name(&conn), "my-connect");
        let svc = server_service(&conn);
        assert_eq!(svc.metadata.name.as_deref(), Some("my-connect"));
        let labels = svc.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[CONNECT_NAME_LABEL], "spark-connect");
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(
            spec.ports.as_ref().map(Vec::len),
            Some(4),
            "kubeflow's ports replace the user's"
        );
    }

    #[test]
    fn a_missing_image_is_refused() {
        let mut conn = example();
        conn.spec.server.pod.template = None;
        conn.spec.executor.pod.template = None;
        assert!(connect_server(&conn, &SubmitOptions::default()).is_err());
        conn.spec.image = Some("spark:4.0.4".into());
        let server = connect_server(&conn, &SubmitOptions::default()).expect("builds");
        let c = &server.pod.spec.as_ref().expect("spec").containers[0];
        assert_eq!(c.image.as_deref(), Some("spark:4.0.4"));
    }
}
