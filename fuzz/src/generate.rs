//! Pods and SparkApplications from `arbitrary` bytes: JSON built from the pools of
//! tests/properties/pools.rs (mostly) and free-form strings, then typed. A quarter of the cases
//! start from the recorded fixture pods and app and change parts of them.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Value, json};
use spark_webhook::crd::SparkApplication;
use spark_webhook::labels::SparkRole;
use spark_webhook::mutate::MutationOptions;

use crate::pools::*;
use crate::{DRIVER_POD, EXECUTOR_POD, FIXTURE_APP_YAML};

/// One generated case.
pub struct Case {
    pub app: SparkApplication,
    pub role: SparkRole,
    pub pod: Value,
    pub opts: MutationOptions,
}

/// `None` when the generated app does not read as a SparkApplication.
pub fn case(u: &mut Unstructured<'_>) -> Result<Option<Case>> {
    let role = if u.arbitrary()? {
        SparkRole::Driver
    } else {
        SparkRole::Executor
    };
    let opts = MutationOptions {
        default_seccomp_profile: u.arbitrary()?,
        executor_prestop_decommission: u.arbitrary()?,
    };
    let from_fixtures = u.ratio(1, 4)?;
    let (mut app, pod) = if from_fixtures {
        (fixture_app(u)?, fixture_pod(u, role)?)
    } else {
        (app(u)?, pod(u, role)?)
    };
    crate::check::sidestep_known_bugs(&mut app);
    Ok(serde_json::from_value(app).ok().map(|app| Case {
        app,
        role,
        pod,
        opts,
    }))
}

fn pick(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<String> {
    if u.ratio(1, 8)? {
        let s: String = u.arbitrary()?;
        Ok(s.chars().take(12).collect())
    } else {
        Ok(u.choose(pool)?.to_string())
    }
}

fn list(
    u: &mut Unstructured<'_>,
    max: usize,
    mut f: impl FnMut(&mut Unstructured<'_>) -> Result<Value>,
) -> Result<Value> {
    let n = u.int_in_range(0..=max)?;
    Ok(Value::Array((0..n).map(|_| f(u)).collect::<Result<_>>()?))
}

fn map(u: &mut Unstructured<'_>, keys: &[&str], values: &[&str], max: usize) -> Result<Value> {
    let n = u.int_in_range(0..=max)?;
    let mut m = Map::new();
    for _ in 0..n {
        m.insert(pick(u, keys)?, Value::String(pick(u, values)?));
    }
    Ok(Value::Object(m))
}

/// Sets `v[key]` to `f()` half of the time.
fn maybe(
    u: &mut Unstructured<'_>,
    v: &mut Value,
    key: &str,
    f: impl FnOnce(&mut Unstructured<'_>) -> Result<Value>,
) -> Result<()> {
    if u.arbitrary()? {
        v[key] = f(u)?;
    }
    Ok(())
}

fn env_var(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut e = json!({ "name": pick(u, ENV_NAMES)? });
    maybe(u, &mut e, "value", |u| Ok(json!(pick(u, MOUNT_PATHS)?)))?;
    if u.ratio(1, 4)? {
        e["valueFrom"] = json!({"fieldRef": {"fieldPath": "status.podIP"}});
    }
    Ok(e)
}

fn volume_mount(u: &mut Unstructured<'_>, names: &[&str], paths: &[&str]) -> Result<Value> {
    let mut m = json!({ "name": pick(u, names)?, "mountPath": pick(u, paths)? });
    maybe(u, &mut m, "readOnly", |u| Ok(json!(u.arbitrary::<bool>()?)))?;
    if u.ratio(1, 4)? {
        m["subPath"] = json!(pick(u, &["job.yaml", ""])?);
    }
    Ok(m)
}

fn volume(u: &mut Unstructured<'_>, name: String) -> Result<Value> {
    let source = pick(u, CONFIG_MAPS)?;
    Ok(match u.int_in_range(0..=3u8)? {
        0 => json!({ "name": name, "emptyDir": {} }),
        1 => json!({ "name": name, "configMap": { "name": source } }),
        2 => json!({ "name": name, "secret": { "secretName": source, "defaultMode": 420 } }),
        _ => json!({ "name": name, "persistentVolumeClaim": { "claimName": source } }),
    })
}

fn port(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut p = json!({ "containerPort": *u.choose(PORT_NUMBERS)? });
    let name = pick(u, PORT_NAMES)?;
    if !name.is_empty() {
        p["name"] = json!(name);
    }
    maybe(u, &mut p, "protocol", |u| Ok(json!(u.choose(PROTOCOLS)?)))?;
    Ok(p)
}

fn lifecycle(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=2u8)? {
        0 => json!({"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}}),
        1 => json!({"postStart": {"exec": {"command": ["true"]}}}),
        _ => json!({}),
    })
}

fn security_context(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut s = json!({});
    maybe(u, &mut s, "allowPrivilegeEscalation", |u| {
        Ok(json!(u.arbitrary::<bool>()?))
    })?;
    maybe(u, &mut s, "runAsUser", |u| {
        Ok(json!(u.int_in_range(0..=1000i64)?))
    })?;
    if u.arbitrary()? {
        s["seccompProfile"] = json!({ "type": u.choose(SECCOMP_TYPES)? });
    }
    Ok(s)
}

fn container(u: &mut Unstructured<'_>, names: &[&str]) -> Result<Value> {
    let mut c = json!({ "name": pick(u, names)? });
    maybe(u, &mut c, "image", |u| Ok(json!(u.choose(IMAGES)?)))?;
    maybe(u, &mut c, "env", |u| list(u, 4, env_var))?;
    maybe(u, &mut c, "volumeMounts", |u| {
        list(u, 3, |u| volume_mount(u, VOLUME_NAMES, POD_MOUNT_PATHS))
    })?;
    maybe(u, &mut c, "ports", |u| list(u, 3, port))?;
    if u.arbitrary()? {
        c["resources"] = json!({"limits": {"memory": pick(u, QUANTITIES)?},
                                "requests": {"cpu": pick(u, QUANTITIES)?}});
    }
    maybe(u, &mut c, "securityContext", security_context)?;
    maybe(u, &mut c, "lifecycle", lifecycle)?;
    if u.ratio(1, 16)? {
        c["x-unknown-field"] = json!({"kept": true});
    }
    Ok(c)
}

fn toleration(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(
        json!({"key": pick(u, LABEL_KEYS)?, "operator": u.choose(&["Equal", "Exists"])?,
              "value": "spark", "effect": "NoSchedule"}),
    )
}

fn spark_name(role: SparkRole) -> &'static str {
    match role {
        SparkRole::Driver => "spark-kubernetes-driver",
        SparkRole::Executor => "spark-kubernetes-executor",
    }
}

fn labels(u: &mut Unstructured<'_>, role: SparkRole) -> Result<Value> {
    let mut labels = map(u, LABEL_KEYS, LABEL_VALUES, 4)?;
    let mode = u.int_in_range(0..=15u8)?;
    if mode != 0 {
        labels["spark-role"] = json!(role.as_str());
    }
    if mode != 1 {
        labels["sparkoperator.k8s.io/app-name"] = json!(APP_NAME);
    }
    Ok(labels)
}

/// A Spark pod of `role` of app `spark-pi` (labelled as such most of the time).
fn pod(u: &mut Unstructured<'_>, role: SparkRole) -> Result<Value> {
    let mut metadata = json!({
        "name": format!("{APP_NAME}-{role}"),
        "namespace": "default",
        "labels": labels(u, role)?,
    });
    maybe(u, &mut metadata, "annotations", |u| {
        map(u, LABEL_KEYS, LABEL_VALUES, 3)
    })?;
    if u.ratio(1, 16)? {
        metadata["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod",
            "name": "spark-pi-driver", "uid": "u-1", "controller": true}]);
    }
    let Value::Array(mut containers) = list(u, 3, |u| container(u, CONTAINER_NAMES))? else {
        unreachable!("list gives an array")
    };
    if !u.ratio(1, 10)? {
        let mut spark = container(u, CONTAINER_NAMES)?;
        spark["name"] = json!(spark_name(role));
        let at = u.int_in_range(0..=containers.len())?;
        containers.insert(at, spark);
    }
    let mut spec = json!({ "containers": containers });
    maybe(u, &mut spec, "initContainers", |u| {
        list(u, 2, |u| container(u, SIDECAR_NAMES))
    })?;
    maybe(u, &mut spec, "volumes", |u| {
        list(u, 4, |u| {
            let name = pick(u, VOLUME_NAMES)?;
            volume(u, name)
        })
    })?;
    if u.arbitrary()? {
        let sc = security_context(u)?;
        spec["securityContext"] = json!({ "seccompProfile": sc["seccompProfile"] });
    }
    maybe(u, &mut spec, "terminationGracePeriodSeconds", |u| {
        Ok(json!(u.int_in_range(0..=200i64)?))
    })?;
    maybe(u, &mut spec, "tolerations", |u| list(u, 2, toleration))?;
    maybe(u, &mut spec, "nodeSelector", |u| {
        map(u, LABEL_KEYS, LABEL_VALUES, 2)
    })?;
    maybe(u, &mut spec, "shareProcessNamespace", |u| {
        Ok(json!(u.arbitrary::<bool>()?))
    })?;
    if u.ratio(1, 16)? {
        spec["x-unknown-field"] = json!([1, 2]);
    }
    let mut pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec });
    if u.ratio(1, 32)? {
        pod.as_object_mut().map(|p| p.remove("metadata"));
    }
    Ok(pod)
}

/// The driver or executor part of an app.
fn role_spec(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut r = json!({});
    maybe(u, &mut r, "labels", |u| map(u, LABEL_KEYS, LABEL_VALUES, 3))?;
    maybe(u, &mut r, "annotations", |u| {
        map(u, LABEL_KEYS, LABEL_VALUES, 3)
    })?;
    maybe(u, &mut r, "env", |u| list(u, 3, env_var))?;
    maybe(u, &mut r, "envVars", |u| map(u, ENV_NAMES, MOUNT_PATHS, 3))?;
    if u.arbitrary()? {
        r["envSecretKeyRefs"] = json!({ pick(u, ENV_NAMES)?: {"name": pick(u, CONFIG_MAPS)?,
                                                              "key": pick(u, ENV_NAMES)?} });
    }
    maybe(u, &mut r, "envFrom", |u| {
        list(u, 2, |u| {
            Ok(json!({"configMapRef": {"name": pick(u, CONFIG_MAPS)?}}))
        })
    })?;
    maybe(u, &mut r, "secrets", |u| {
        list(u, 2, |u| {
            Ok(
                json!({"name": pick(u, CONFIG_MAPS)?, "path": pick(u, SECRET_PATHS)?,
                      "secretType": u.choose(SECRET_TYPES)?}),
            )
        })
    })?;
    maybe(u, &mut r, "configMaps", |u| {
        list(u, 2, |u| {
            Ok(json!({"name": pick(u, CONFIG_MAPS)?, "path": pick(u, CONFIG_MAP_PATHS)?}))
        })
    })?;
    maybe(u, &mut r, "volumeMounts", |u| {
        list(u, 3, |u| volume_mount(u, APP_VOLUME_NAMES, MOUNT_PATHS))
    })?;
    maybe(u, &mut r, "initContainers", |u| {
        list(u, 2, |u| container(u, SIDECAR_NAMES))
    })?;
    maybe(u, &mut r, "sidecars", |u| {
        list(u, 2, |u| container(u, SIDECAR_NAMES))
    })?;
    maybe(u, &mut r, "tolerations", |u| list(u, 2, toleration))?;
    maybe(u, &mut r, "ports", |u| {
        list(u, 2, |u| {
            Ok(
                json!({"name": pick(u, PORT_NAMES)?, "protocol": u.choose(PROTOCOLS)?,
                      "containerPort": *u.choose(PORT_NUMBERS)?}),
            )
        })
    })?;
    if u.arbitrary()? {
        r["memoryLimit"] = json!(pick(u, QUANTITIES)?);
    }
    if u.ratio(1, 4)? {
        r["gpu"] = json!({"name": pick(u, &["nvidia.com/gpu", "", "amd.com/gpu"])?,
                          "quantity": u.int_in_range(-1..=2i64)?});
    }
    maybe(u, &mut r, "securityContext", security_context)?;
    maybe(u, &mut r, "podSecurityContext", |u| {
        Ok(json!({"runAsUser": u.int_in_range(0..=1000i64)?}))
    })?;
    maybe(u, &mut r, "lifecycle", lifecycle)?;
    maybe(u, &mut r, "terminationGracePeriodSeconds", |u| {
        Ok(json!(u.int_in_range(0..=200i64)?))
    })?;
    maybe(u, &mut r, "shareProcessNamespace", |u| {
        Ok(json!(u.arbitrary::<bool>()?))
    })?;
    maybe(u, &mut r, "priorityClassName", |u| {
        Ok(json!(pick(u, &["spark-high", ""])?))
    })?;
    maybe(u, &mut r, "hostNetwork", |u| {
        Ok(json!(u.arbitrary::<bool>()?))
    })?;
    maybe(u, &mut r, "nodeSelector", |u| {
        map(u, LABEL_KEYS, LABEL_VALUES, 2)
    })?;
    Ok(r)
}

fn app_volumes(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut volumes = Vec::new();
    for name in APP_VOLUME_NAMES {
        if !u.ratio(1, 8)? {
            volumes.push(volume(u, name.to_string())?);
        }
    }
    if u.ratio(1, 4)? {
        let name = pick(u, VOLUME_NAMES)?;
        volumes.push(volume(u, name)?);
    }
    Ok(Value::Array(volumes))
}

fn monitoring(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut prometheus = json!({"jmxExporterJar": "/prometheus/jmx.jar"});
    maybe(u, &mut prometheus, "port", |u| {
        Ok(json!(*u.choose(PORT_NUMBERS)?))
    })?;
    if u.ratio(1, 4)? {
        prometheus["portName"] = json!(pick(u, PORT_NAMES)?);
    }
    if u.ratio(1, 4)? {
        prometheus["configFile"] = json!("/etc/metrics/prometheus.yaml");
    }
    let mut m = json!({"exposeDriverMetrics": u.arbitrary::<bool>()?,
                       "exposeExecutorMetrics": u.arbitrary::<bool>()?,
                       "prometheus": prometheus});
    if u.ratio(1, 4)? {
        m["metricsPropertiesFile"] = json!("/etc/metrics/metrics.properties");
    }
    Ok(m)
}

fn spark_conf(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut conf = json!({});
    for role in ["driver", "executor"] {
        if u.ratio(1, 4)? {
            conf[format!("spark.kubernetes.{role}.podTemplateContainerName")] =
                json!(pick(u, CONTAINER_NAMES)?);
        }
    }
    Ok(conf)
}

/// A SparkApplication `default/spark-pi` as JSON.
fn app(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut spec = json!({
        "type": "Scala",
        "sparkVersion": "3.3.4",
        "mode": "cluster",
        "image": "spark:3.3.4",
        "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
        "sparkConf": spark_conf(u)?,
        "volumes": app_volumes(u)?,
        "driver": role_spec(u)?,
        "executor": role_spec(u)?,
    });
    maybe(u, &mut spec, "sparkConfigMap", |u| {
        Ok(json!(pick(u, CONFIG_MAPS)?))
    })?;
    maybe(u, &mut spec, "hadoopConfigMap", |u| {
        Ok(json!(pick(u, CONFIG_MAPS)?))
    })?;
    maybe(u, &mut spec, "monitoring", monitoring)?;
    maybe(u, &mut spec, "nodeSelector", |u| {
        map(u, LABEL_KEYS, LABEL_VALUES, 2)
    })?;
    let mut metadata = json!({"name": APP_NAME, "namespace": "default",
                              "uid": "7d0c5a3e-2f41-4b8e-9a6d-1c2b3d4e5f60"});
    maybe(u, &mut metadata, "labels", |u| {
        map(u, LABEL_KEYS, LABEL_VALUES, 3)
    })?;
    Ok(json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": metadata,
        "spec": spec,
    }))
}

/// The fixture app with some of its parts generated anew.
fn fixture_app(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut app: Value = yaml_serde::from_str(FIXTURE_APP_YAML).expect("fixture app parses");
    if u.arbitrary()? {
        app["spec"]["sparkConf"] = spark_conf(u)?;
    }
    if u.arbitrary()? {
        app["spec"]["monitoring"] = monitoring(u)?;
    }
    for role in ["driver", "executor"] {
        if u.arbitrary()? {
            let generated = role_spec(u)?;
            if let (Some(r), Value::Object(g)) = (app["spec"][role].as_object_mut(), generated) {
                for (k, v) in g {
                    if u.arbitrary()? {
                        r.insert(k, v);
                    }
                }
            }
        }
    }
    Ok(app)
}

/// A recorded pod of `role` with some generated containers, volumes and labels.
fn fixture_pod(u: &mut Unstructured<'_>, role: SparkRole) -> Result<Value> {
    let raw = match role {
        SparkRole::Driver => DRIVER_POD,
        SparkRole::Executor => EXECUTOR_POD,
    };
    let mut pod: Value = serde_json::from_str(raw).expect("fixture pod parses");
    if u.arbitrary()? {
        let extra = map(u, LABEL_KEYS, LABEL_VALUES, 3)?;
        if let (Some(labels), Value::Object(extra)) =
            (pod["metadata"]["labels"].as_object_mut(), extra)
        {
            labels.extend(extra);
        }
    }
    if u.arbitrary()? {
        let c = container(u, CONTAINER_NAMES)?;
        if let Some(cs) = pod["spec"]["containers"].as_array_mut() {
            let at = u.int_in_range(0..=cs.len())?;
            cs.insert(at, c);
        }
    }
    if u.arbitrary()? {
        let name = pick(u, VOLUME_NAMES)?;
        let v = volume(u, name)?;
        if let Some(vs) = pod["spec"]["volumes"].as_array_mut() {
            vs.push(v);
        }
    }
    if u.arbitrary()? {
        let m = volume_mount(u, VOLUME_NAMES, POD_MOUNT_PATHS)?;
        if let Some(ms) = pod["spec"]["containers"][0]["volumeMounts"].as_array_mut() {
            ms.push(m);
        }
    }
    Ok(pod)
}
