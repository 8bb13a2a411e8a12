//! Property tests of the pod mutation on generated pods and SparkApplications (proptest).
//!
//! The properties (see `properties/check.rs`, shared with the fuzz targets under `fuzz/`):
//! applying our patch to the input yields exactly the mutated pod; mutating twice equals
//! mutating once; no duplicate volume names, container names, mount paths or env names are
//! introduced; label and annotation keys with `/` and `~` are escaped in patch paths.
//!
//! Generated values mostly come from small pools (`properties/pools.rs`) so that pods and apps
//! collide the way real ones do (Spark's container names, the volumes the mutation adds,
//! volumeMounts naming undeclared volumes, bad quantities); the rest is free-form.

#[path = "properties/check.rs"]
mod check;
#[path = "properties/pools.rs"]
mod pools;

use std::collections::BTreeMap;

use check::{Checked, check, escape_token};
use pools::*;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};
use spark_webhook::crd::SparkApplication;
use spark_webhook::labels::SparkRole;
use spark_webhook::mutate::{MutationOptions, pod_patch};

/// A pool value most of the time, else a short free-form string (with `/`, `~` and `.`).
fn pick(pool: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(pool).prop_map(str::to_string),
        1 => "[a-z0-9/~.-]{0,10}",
    ]
    .boxed()
}

fn string_map(keys: &'static [&'static str]) -> BoxedStrategy<BTreeMap<String, String>> {
    btree_map(pick(keys), pick(LABEL_VALUES), 0..4).boxed()
}

/// Inserts `value` under `key` unless it is `None`.
fn set<T: serde::Serialize>(v: &mut Value, key: &str, value: Option<T>) {
    if let Some(value) = value {
        v[key] = json!(value);
    }
}

fn env_var() -> impl Strategy<Value = Value> {
    (
        pick(ENV_NAMES),
        option::of(pick(MOUNT_PATHS)),
        any::<bool>(),
    )
        .prop_map(|(name, value, from_field)| {
            let mut e = json!({ "name": name });
            set(&mut e, "value", value);
            if from_field {
                e["valueFrom"] = json!({"fieldRef": {"fieldPath": "status.podIP"}});
            }
            e
        })
}

fn volume_mount(
    names: &'static [&'static str],
    paths: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    (
        pick(names),
        pick(paths),
        option::of(any::<bool>()),
        option::of(select(&["job.yaml", ""][..])),
    )
        .prop_map(|(name, path, read_only, sub_path)| {
            let mut m = json!({ "name": name, "mountPath": path });
            set(&mut m, "readOnly", read_only);
            set(&mut m, "subPath", sub_path);
            m
        })
}

fn volume(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (pick(names), 0..4u8, pick(CONFIG_MAPS)).prop_map(|(name, kind, source)| match kind {
        0 => json!({ "name": name, "emptyDir": {} }),
        1 => json!({ "name": name, "configMap": { "name": source } }),
        2 => json!({ "name": name, "secret": { "secretName": source, "defaultMode": 420 } }),
        _ => json!({ "name": name, "persistentVolumeClaim": { "claimName": source } }),
    })
}

fn port() -> impl Strategy<Value = Value> {
    (
        select(PORT_NAMES),
        select(PORT_NUMBERS),
        option::of(select(PROTOCOLS)),
    )
        .prop_map(|(name, number, protocol)| {
            let mut p = json!({ "containerPort": number });
            if !name.is_empty() {
                p["name"] = json!(name);
            }
            set(&mut p, "protocol", protocol);
            p
        })
}

fn lifecycle() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}})),
        Just(json!({"postStart": {"exec": {"command": ["true"]}}})),
        Just(json!({})),
    ]
}

fn security_context() -> impl Strategy<Value = Value> {
    (option::of(any::<bool>()), option::of(select(SECCOMP_TYPES))).prop_map(|(priv_esc, sec)| {
        let mut s = json!({});
        set(&mut s, "allowPrivilegeEscalation", priv_esc);
        if let Some(t) = sec {
            s["seccompProfile"] = json!({ "type": t });
        }
        s
    })
}

fn container(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        pick(names),
        option::of(select(IMAGES)),
        option::of(vec(env_var(), 0..4)),
        option::of(vec(volume_mount(VOLUME_NAMES, POD_MOUNT_PATHS), 0..3)),
        option::of(vec(port(), 0..3)),
        option::of((pick(QUANTITIES), pick(QUANTITIES))),
        option::of(security_context()),
        option::of(lifecycle()),
    )
        .prop_map(|(name, image, env, mounts, ports, res, sc, lc)| {
            let mut c = json!({ "name": name });
            set(&mut c, "image", image);
            set(&mut c, "env", env);
            set(&mut c, "volumeMounts", mounts);
            set(&mut c, "ports", ports);
            if let Some((memory, cpu)) = res {
                c["resources"] = json!({"limits": {"memory": memory}, "requests": {"cpu": cpu}});
            }
            set(&mut c, "securityContext", sc);
            set(&mut c, "lifecycle", lc);
            c
        })
}

fn toleration() -> impl Strategy<Value = Value> {
    (pick(LABEL_KEYS), select(&["Equal", "Exists"][..])).prop_map(
        |(key, op)| json!({"key": key, "operator": op, "value": "spark", "effect": "NoSchedule"}),
    )
}

/// A Spark pod of `role` (labelled as such most of the time) of app `spark-pi`.
fn pod(role: SparkRole) -> impl Strategy<Value = Value> {
    let meta = (
        string_map(LABEL_KEYS),
        option::of(string_map(LABEL_KEYS)),
        0..8u8,
        0..8u8,
    );
    let spec = (
        (
            option::weighted(0.9, container(CONTAINER_NAMES)),
            vec(container(CONTAINER_NAMES), 0..3),
        ),
        option::of(vec(container(SIDECAR_NAMES), 0..2)),
        option::of(vec(volume(VOLUME_NAMES), 0..4)),
        option::of(security_context()),
        option::of(0..200i64),
        option::of(vec(toleration(), 0..2)),
        option::of(string_map(LABEL_KEYS)),
        option::of(any::<bool>()),
    );
    (meta, spec).prop_map(move |(meta, spec)| {
        let (mut labels, annotations, label_mode, owned) = meta;
        if label_mode != 0 {
            labels.insert("spark-role".into(), role.as_str().into());
        }
        if label_mode != 1 {
            labels.insert("sparkoperator.k8s.io/app-name".into(), APP_NAME.into());
        }
        let mut metadata = json!({
            "name": format!("{APP_NAME}-{role}"),
            "namespace": "default",
            "labels": labels,
        });
        set(&mut metadata, "annotations", annotations);
        if owned == 0 {
            metadata["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod",
                "name": "spark-pi-driver", "uid": "u-1", "controller": true}]);
        }
        let ((spark, others), init, volumes, psc, grace, tolerations, selector, share) = spec;
        // Mostly a Spark container under Spark's name for the role, first or after others.
        let mut containers = others;
        if let Some(mut c) = spark {
            c["name"] = json!(match role {
                SparkRole::Driver => "spark-kubernetes-driver",
                SparkRole::Executor => "spark-kubernetes-executor",
            });
            let at = usize::from(owned) % (containers.len() + 1);
            containers.insert(at, c);
        }
        let mut s = json!({ "containers": containers });
        set(&mut s, "initContainers", init);
        set(&mut s, "volumes", volumes);
        if let Some(sc) = psc {
            s["securityContext"] = json!({ "seccompProfile": sc["seccompProfile"] });
        }
        set(&mut s, "terminationGracePeriodSeconds", grace);
        set(&mut s, "tolerations", tolerations);
        set(&mut s, "nodeSelector", selector);
        set(&mut s, "shareProcessNamespace", share);
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": s })
    })
}

/// The driver or executor part of an app.
fn role_spec() -> impl Strategy<Value = Value> {
    let pod_level = (
        string_map(LABEL_KEYS),
        string_map(LABEL_KEYS),
        vec(env_var(), 0..3),
        btree_map(pick(ENV_NAMES), pick(MOUNT_PATHS), 0..3),
        btree_map(pick(ENV_NAMES), (pick(CONFIG_MAPS), pick(ENV_NAMES)), 0..2),
        vec(
            (pick(CONFIG_MAPS), pick(SECRET_PATHS), select(SECRET_TYPES)),
            0..2,
        ),
        vec((pick(CONFIG_MAPS), pick(CONFIG_MAP_PATHS)), 0..2),
        vec(volume_mount(APP_VOLUME_NAMES, MOUNT_PATHS), 0..3),
    );
    let more = (
        vec(container(SIDECAR_NAMES), 0..2),
        vec(container(SIDECAR_NAMES), 0..2),
        vec(toleration(), 0..2),
        vec(port(), 0..2),
        option::of(pick(QUANTITIES)),
        option::of((pick(&["nvidia.com/gpu", "", "amd.com/gpu"]), -1..3i64)),
        option::of(security_context()),
        option::of(lifecycle()),
        option::of(0..200i64),
        option::of(any::<bool>()),
        option::of("[a-z-]{1,8}"),
    );
    (pod_level, more).prop_map(|(p, m)| {
        let (labels, annotations, env, env_vars, secret_refs, secrets, config_maps, mounts) = p;
        let (init, sidecars, tolerations, ports, memory_limit, gpu, sc, lc, grace, share, pc) = m;
        let mut r = json!({
            "labels": labels,
            "annotations": annotations,
            "env": env,
            "envVars": env_vars,
            "envSecretKeyRefs": secret_refs.into_iter()
                .map(|(k, (name, key))| (k, json!({"name": name, "key": key})))
                .collect::<BTreeMap<_, _>>(),
            "secrets": secrets.into_iter()
                .map(|(name, path, t)| json!({"name": name, "path": path, "secretType": t}))
                .collect::<Vec<_>>(),
            "configMaps": config_maps.into_iter()
                .map(|(name, path)| json!({"name": name, "path": path}))
                .collect::<Vec<_>>(),
            "volumeMounts": mounts,
            "initContainers": init,
            "sidecars": sidecars,
            "tolerations": tolerations,
            "ports": ports.into_iter().map(|p| json!({
                "name": p.get("name").cloned().unwrap_or(json!("p")),
                "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP")),
                "containerPort": p["containerPort"],
            })).collect::<Vec<_>>(),
        });
        set(&mut r, "memoryLimit", memory_limit);
        if let Some((name, quantity)) = gpu {
            r["gpu"] = json!({ "name": name, "quantity": quantity });
        }
        set(&mut r, "securityContext", sc);
        set(&mut r, "lifecycle", lc);
        set(&mut r, "terminationGracePeriodSeconds", grace);
        set(&mut r, "shareProcessNamespace", share);
        set(&mut r, "priorityClassName", pc);
        r
    })
}

/// A SparkApplication `default/spark-pi`; `None` when the generated JSON does not read as one.
fn app() -> impl Strategy<Value = Option<SparkApplication>> {
    (
        (
            proptest::sample::subsequence(APP_VOLUME_NAMES, 3..=4),
            vec(volume(VOLUME_NAMES), 0..2),
        )
            .prop_flat_map(|(names, extra)| {
                let n = names.len();
                (Just(names), vec(volume(CONFIG_MAPS), n..=n), Just(extra))
            })
            .prop_map(|(names, mut volumes, extra)| {
                for (v, name) in volumes.iter_mut().zip(names) {
                    v["name"] = json!(name);
                }
                volumes.extend(extra);
                volumes
            }),
        option::of(pick(CONFIG_MAPS)),
        option::of(pick(CONFIG_MAPS)),
        option::of(pick(CONTAINER_NAMES)),
        option::of(pick(CONTAINER_NAMES)),
        option::of((
            any::<bool>(),
            any::<bool>(),
            option::of(select(PORT_NUMBERS)),
        )),
        role_spec(),
        role_spec(),
    )
        .prop_map(
            |(volumes, spark_cm, hadoop_cm, driver_cn, exec_cn, monitoring, driver, executor)| {
                let mut conf = BTreeMap::new();
                if let Some(name) = driver_cn {
                    conf.insert("spark.kubernetes.driver.podTemplateContainerName", name);
                }
                if let Some(name) = exec_cn {
                    conf.insert("spark.kubernetes.executor.podTemplateContainerName", name);
                }
                let mut spec = json!({
                    "type": "Scala",
                    "sparkVersion": "3.3.4",
                    "mode": "cluster",
                    "image": "spark:3.3.4",
                    "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
                    "sparkConf": conf,
                    "volumes": volumes,
                    "driver": driver,
                    "executor": executor,
                });
                set(&mut spec, "sparkConfigMap", spark_cm);
                set(&mut spec, "hadoopConfigMap", hadoop_cm);
                if let Some((d, e, port)) = monitoring {
                    let mut prometheus = json!({"jmxExporterJar": "/prometheus/jmx.jar"});
                    set(&mut prometheus, "port", port);
                    spec["monitoring"] = json!({"exposeDriverMetrics": d,
                        "exposeExecutorMetrics": e, "prometheus": prometheus});
                }
                let mut app = json!({
                    "apiVersion": "sparkoperator.k8s.io/v1beta2",
                    "kind": "SparkApplication",
                    "metadata": {"name": APP_NAME, "namespace": "default",
                                 "uid": "7d0c5a3e-2f41-4b8e-9a6d-1c2b3d4e5f60"},
                    "spec": spec,
                });
                check::sidestep_known_bugs(&mut app);
                serde_json::from_value(app).ok()
            },
        )
}

fn role() -> impl Strategy<Value = SparkRole> {
    prop_oneof![Just(SparkRole::Driver), Just(SparkRole::Executor)]
}

fn options() -> impl Strategy<Value = MutationOptions> {
    (any::<bool>(), any::<bool>()).prop_map(|(seccomp, decom)| MutationOptions {
        default_seccomp_profile: seccomp,
        executor_prestop_decommission: decom,
    })
}

fn case() -> impl Strategy<Value = (Option<SparkApplication>, SparkRole, Value, MutationOptions)> {
    (app(), role(), options())
        .prop_flat_map(|(app, role, opts)| (Just(app), Just(role), pod(role), Just(opts)))
}

proptest! {
    // Failures are reported with their minimal input; nothing is written into the repo.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Every property of `check::check`, on generated (app, role, pod) triples.
    #[test]
    fn mutation_properties((app, role, pod, opts) in case()) {
        let app = app.expect("the generated app reads as a SparkApplication");
        if let Err(violation) = check(&app, role, &pod, &opts) {
            prop_assert!(false, "{}\napp: {}\npod: {}", violation,
                serde_json::to_string(&app).unwrap_or_default(), pod);
        }
    }
}

proptest! {
    // Each case mutates the recorded driver pod twice over: fewer cases keep this one short.
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Keys with `/` and `~` reach the patch as RFC 6901 tokens (`~1`, `~0`), whether added or
    /// replaced, and the patched pod carries them unescaped.
    #[test]
    fn label_keys_are_pointer_escaped(
        keys in btree_map("[a-z~/]{1,6}", "[a-z]{0,3}", 1..5),
        pod_has in any::<bool>(),
    ) {
        let mut app = fixture_app();
        app.spec.driver.pod.labels = keys.clone();
        app.spec.driver.pod.annotations = keys.clone();
        let mut pod = fixture_driver_pod();
        pod["metadata"]["annotations"] = json!({"example.com/x": "y"});
        if pod_has {
            for k in keys.keys() {
                pod["metadata"]["labels"][k] = json!("old");
                pod["metadata"]["annotations"][k] = json!("old");
            }
        }
        let opts = MutationOptions::default();
        let patch = pod_patch(&app, SparkRole::Driver, &pod, &opts).expect("mutated");
        let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
        for (k, v) in &keys {
            if pod_has && v == "old" {
                continue;
            }
            for map in ["labels", "annotations"] {
                let want = format!("/metadata/{map}/{}", escape_token(k));
                prop_assert!(paths.contains(&want), "{} missing from {:?}", want, paths);
            }
        }
        match check(&app, SparkRole::Driver, &pod, &opts) {
            Ok(Checked::Mutated { .. }) => {}
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture_app() -> SparkApplication {
    let yaml = std::fs::read_to_string(format!("{FIXTURES}/sparkapplication.yaml")).expect("app");
    yaml_serde::from_str(&yaml).expect("fixture app parses")
}

fn fixture_driver_pod() -> Value {
    let json = std::fs::read_to_string(format!("{FIXTURES}/spark-submit-3.3.4/driver-pod.json"))
        .expect("driver pod");
    serde_json::from_str(&json).expect("fixture pod parses")
}

/// The recorded pods (unknown fields and all) against the fixture app, every option set.
#[test]
fn fixture_pods_have_every_property() {
    let app = fixture_app();
    let executor: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/executor-pod.json")).expect("executor pod"),
    )
    .expect("executor pod parses");
    for (role, pod) in [
        (SparkRole::Driver, fixture_driver_pod()),
        (SparkRole::Executor, executor),
    ] {
        for (seccomp, decom) in [(true, true), (false, false)] {
            let opts = MutationOptions {
                default_seccomp_profile: seccomp,
                executor_prestop_decommission: decom,
            };
            match check(&app, role, &pod, &opts) {
                Ok(Checked::Mutated { ops }) => assert!(ops > 0, "{role}: empty patch"),
                other => panic!("{role}: {other:?}"),
            }
        }
    }
}

/// The generators reach both outcomes often: a generator whose apps are nearly always refused
/// (say, a volumeMount naming an undeclared volume) would test the refusal path only.
#[test]
fn generated_cases_are_mostly_mutated() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = case();
    let (mut mutated, mut refused) = (0, 0);
    let mut reasons = BTreeMap::<String, usize>::new();
    for _ in 0..256 {
        let (app, role, pod, opts) = strategy.new_tree(&mut runner).expect("case").current();
        let app = app.expect("the generated app reads as a SparkApplication");
        match check(&app, role, &pod, &opts).expect("properties hold") {
            Checked::Mutated { .. } => mutated += 1,
            Checked::Refused(e) => {
                refused += 1;
                let kind = format!("{e:?}");
                let kind = kind.split([' ', '{']).next().unwrap_or("").to_string();
                *reasons.entry(kind).or_default() += 1;
            }
        }
    }
    eprintln!("mutated {mutated}, refused {refused}: {reasons:?}");
    assert!(
        mutated >= 64,
        "mutated {mutated}, refused {refused}: {reasons:?}"
    );
    assert!(
        refused >= 16,
        "mutated {mutated}, refused {refused}: {reasons:?}"
    );
}

/// Found by these properties: an executor sidecar named `executor` (Spark 2's executor
/// container name). The first mutation finds the Spark container by the fallback (the first
/// container that is not a sidecar) and appends the sidecar; the second finds the sidecar by
/// Spark's default name and mutates it instead, so the webhook patches (or refuses) a pod that
/// native submission already mutated.
#[test]
fn sidecar_named_like_spark_container_is_idempotent() {
    let mut app = fixture_app();
    app.spec.executor.pod.sidecars = vec![
        serde_json::from_value(json!({"name": "executor", "image": "busybox:1.36"}))
            .expect("container"),
    ];
    let pod = json!({
        "metadata": {"name": "spark-pi-exec-1", "namespace": "default",
                     "labels": {"spark-role": "executor", "sparkoperator.k8s.io/app-name": "spark-pi"}},
        "spec": {"containers": [{"name": "spark", "image": "spark:3.3.4"}]}
    });
    if let Err(violation) = check(&app, SparkRole::Executor, &pod, &MutationOptions::default()) {
        panic!("{violation}");
    }
}

/// The same bug through sparkConf `podTemplateContainerName`: it names a sidecar, not a
/// container of the pod. The first mutation falls back to `spark-kubernetes-driver`; the second
/// finds the appended sidecar by that name.
#[test]
fn sidecar_named_like_template_container_is_idempotent() {
    let mut app = fixture_app();
    app.spec.spark_conf.insert(
        "spark.kubernetes.driver.podTemplateContainerName".into(),
        "log-shipper".into(),
    );
    let pod = fixture_driver_pod();
    if let Err(violation) = check(&app, SparkRole::Driver, &pod, &MutationOptions::default()) {
        panic!("{violation}");
    }
}

/// Found by these properties (both `port_name_declared_*`): executor `ports` declare
/// `jmx-exporter` as 9000 while the
/// Prometheus port is `jmx-exporter` 8090, and the pod already has 9000/TCP unnamed. The first
/// mutation counts the pod's 9000 as the role port and adds jmx-exporter 8090; the second
/// finds jmx-exporter as 8090 and refuses the pod.
#[test]
fn port_name_declared_twice_role_and_prometheus_is_idempotent() {
    let mut app = fixture_app();
    app.spec.executor.ports = vec![
        serde_json::from_value(
            json!({"name": "jmx-exporter", "protocol": "TCP", "containerPort": 9000}),
        )
        .expect("port"),
    ];
    let mut pod: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/executor-pod.json")).expect("executor pod"),
    )
    .expect("executor pod parses");
    pod["spec"]["containers"][0]["ports"]
        .as_array_mut()
        .expect("ports")
        .push(json!({"containerPort": 9000, "protocol": "TCP"}));
    if let Err(violation) = check(&app, SparkRole::Executor, &pod, &MutationOptions::default()) {
        panic!("{violation}");
    }
}

/// Found by the `structured` fuzz target: executor `ports` declare `blockmanager` as 8090/TCP
/// and as 8090/UDP; the pod has 8090/TCP as `jdwp`. The first mutation counts `jdwp` as the
/// first and adds `blockmanager` 8090/UDP; the second refuses the pod.
#[test]
fn port_name_declared_twice_in_role_ports_is_idempotent() {
    let mut app = fixture_app();
    app.spec.monitoring = None;
    app.spec.executor.ports = ["TCP", "UDP"]
        .map(|protocol| {
            serde_json::from_value(
                json!({"name": "blockmanager", "protocol": protocol, "containerPort": 8090}),
            )
            .expect("port")
        })
        .to_vec();
    let mut pod: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/executor-pod.json")).expect("executor pod"),
    )
    .expect("executor pod parses");
    pod["spec"]["containers"][0]["ports"] =
        json!([{"name": "jdwp", "containerPort": 8090, "protocol": "TCP"}]);
    if let Err(violation) = check(&app, SparkRole::Executor, &pod, &MutationOptions::default()) {
        panic!("{violation}");
    }
}
