//! What one driver or executor pod requests, as kubeflow's YuniKorn integration computes it
//! (`internal/scheduler/yunikorn/resourceusage`), which is what Spark gives the pods: CPU is
//! `coreRequest`, else `cores`, else 1; memory is `memory` plus `memoryOverhead`, else
//! `max(memory × factor, 384Mi)` with the factor `spec.memoryOverheadFactor`, else 0.1 for JVM
//! apps and 0.4 for Python and R; executors add `spark.executor.pyspark.memory` (Python) and
//! `spark.memory.offHeap.size` (when off-heap is enabled). Memory is floored to MiB, as Spark
//! sizes its pods in MiB.

use crate::crd::{SparkApplication, SparkApplicationType};
use crate::labels::SparkRole;
use crate::quantity::{parse_kubernetes, parse_spark_mib};

const MIB: u64 = 1 << 20;
/// Spark's minimum memory overhead.
const MIN_OVERHEAD: u64 = 384 * MIB;

/// One pod's requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRequest {
    /// CPU as written (`coreRequest` verbatim, else cores): YuniKorn's task-group value.
    pub cpu: String,
    /// The same in millicores, rounded up.
    pub cpu_milli: u64,
    pub memory_mib: u64,
}

/// The requests of one `role` pod of `app` (defaulted); the error names the field that does
/// not parse.
pub fn pod_request(app: &SparkApplication, role: SparkRole) -> Result<PodRequest, String> {
    let spec = &app.spec;
    let (pod, core_request) = match role {
        SparkRole::Driver => (&spec.driver.pod, &spec.driver.core_request),
        SparkRole::Executor => (&spec.executor.pod, &spec.executor.core_request),
    };
    let field = |f: &str| format!("spec.{}.{f}", role.as_str());
    let cpu = match (core_request.as_deref(), pod.cores) {
        (Some(request), _) => request.to_string(),
        (None, Some(cores)) => cores.to_string(),
        (None, None) => "1".to_string(),
    };
    let cores = parse_kubernetes(&cpu).map_err(|e| format!("{}: {e}", field("coreRequest")))?;
    let cpu_milli = (cores * 1000.0).ceil().max(0.0) as u64;
    let size = |name: &str, value: &str| {
        parse_spark_mib(value)
            .map(|mib| mib.saturating_mul(MIB))
            .map_err(|e| format!("{name}: {e}"))
    };
    let memory = match &pod.memory {
        Some(m) => size(&field("memory"), m)?,
        None => 0,
    };
    let overhead = match &pod.memory_overhead {
        Some(o) => size(&field("memoryOverhead"), o)?,
        None => ((memory as f64 * overhead_factor(app)?) as u64).max(MIN_OVERHEAD),
    };
    let mut bytes = memory.saturating_add(overhead);
    if role == SparkRole::Executor {
        if spec.type_ == SparkApplicationType::Python
            && let Some(py) = spec.spark_conf.get("spark.executor.pyspark.memory")
        {
            bytes = bytes.saturating_add(size("spark.executor.pyspark.memory", py)?);
        }
        let off_heap = spec
            .spark_conf
            .get("spark.memory.offHeap.enabled")
            .is_some_and(|v| v != "false");
        if off_heap && let Some(off) = spec.spark_conf.get("spark.memory.offHeap.size") {
            bytes = bytes.saturating_add(size("spark.memory.offHeap.size", off)?);
        }
    }
    Ok(PodRequest {
        cpu,
        cpu_milli,
        memory_mib: bytes / MIB,
    })
}

fn overhead_factor(app: &SparkApplication) -> Result<f64, String> {
    match &app.spec.memory_overhead_factor {
        Some(f) => f
            .parse::<f64>()
            .map_err(|_| format!("spec.memoryOverheadFactor: {f:?} is not a number")),
        None if matches!(
            app.spec.type_,
            SparkApplicationType::Java | SparkApplicationType::Scala
        ) =>
        {
            Ok(0.1)
        }
        None => Ok(0.4),
    }
}

/// How many executors Spark asks for at start (kubeflow's `GetInitialExecutorNumber`, after
/// Spark's `SchedulerBackendUtils`): with dynamic allocation the largest of `instances`,
/// `initialExecutors` and `minExecutors`; without, `instances` (2 when unset).
pub fn initial_executors(app: &SparkApplication) -> u32 {
    let spec = &app.spec;
    let dynamic = spec
        .dynamic_allocation
        .as_ref()
        .filter(|d| d.enabled == Some(true));
    let n = match dynamic {
        Some(d) => [
            spec.executor.instances,
            d.initial_executors,
            d.min_executors,
        ]
        .into_iter()
        .flatten()
        .fold(0, i32::max),
        None => spec.executor.instances.unwrap_or(2),
    };
    n.max(0) as u32
}

/// The driver plus the initial executors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Total {
    pub cpu_milli: u64,
    pub memory_mib: u64,
}

/// What the driver and its initial executors request together.
pub fn total(app: &SparkApplication) -> Result<Total, String> {
    let driver = pod_request(app, SparkRole::Driver)?;
    let executor = pod_request(app, SparkRole::Executor)?;
    let n = u64::from(initial_executors(app));
    Ok(Total {
        cpu_milli: driver
            .cpu_milli
            .saturating_add(executor.cpu_milli.saturating_mul(n)),
        memory_mib: driver
            .memory_mib
            .saturating_add(executor.memory_mib.saturating_mul(n)),
    })
}

/// Millicores as a Kubernetes quantity: whole cores without a suffix.
pub fn cpu_quantity(milli: u64) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(extra: serde_json::Value) -> SparkApplication {
        let mut base = serde_json::json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "pi", "namespace": "ns"},
            "spec": {"type": "Scala", "sparkVersion": "3.5.3", "mainApplicationFile": "local:///x.jar",
                     "driver": {}, "executor": {}}
        });
        for (k, v) in extra.as_object().unwrap() {
            base["spec"][k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    /// kubeflow's resourceusage tests: 1g JVM → 1024 + 384 (the minimum overhead wins over
    /// 10%); 4g Python → 4096 + 40%; an explicit overhead wins over the factor.
    #[test]
    fn memory_overhead_as_kubeflow_computes_it() {
        let a = app(serde_json::json!({"driver": {"memory": "1g", "cores": 2}}));
        let d = pod_request(&a, SparkRole::Driver).unwrap();
        assert_eq!(
            (d.cpu.as_str(), d.cpu_milli, d.memory_mib),
            ("2", 2000, 1408)
        );
        let a = app(serde_json::json!({"type": "Python", "executor": {"memory": "4g"}}));
        assert_eq!(
            pod_request(&a, SparkRole::Executor).unwrap().memory_mib,
            4096 + 1638
        );
        let a =
            app(serde_json::json!({"memoryOverheadFactor": "0.5", "driver": {"memory": "2048m"}}));
        assert_eq!(pod_request(&a, SparkRole::Driver).unwrap().memory_mib, 3072);
        let a = app(serde_json::json!({"driver": {"memory": "1g", "memoryOverhead": "100m"}}));
        assert_eq!(pod_request(&a, SparkRole::Driver).unwrap().memory_mib, 1124);
    }

    #[test]
    fn core_request_wins_and_executors_add_pyspark_and_off_heap_memory() {
        let a = app(serde_json::json!({
            "type": "Python",
            "sparkConf": {"spark.executor.pyspark.memory": "256m",
                          "spark.memory.offHeap.enabled": "true", "spark.memory.offHeap.size": "1g"},
            "executor": {"cores": 4, "coreRequest": "1500m", "memory": "1g"},
        }));
        let e = pod_request(&a, SparkRole::Executor).unwrap();
        assert_eq!((e.cpu.as_str(), e.cpu_milli), ("1500m", 1500));
        assert_eq!(e.memory_mib, 1024 + 409 + 256 + 1024);
        // The driver gets neither.
        assert_eq!(pod_request(&a, SparkRole::Driver).unwrap().memory_mib, 384);
        let bad = app(serde_json::json!({"executor": {"memory": "lots"}}));
        assert!(
            pod_request(&bad, SparkRole::Executor)
                .unwrap_err()
                .starts_with("spec.executor.memory: ")
        );
    }

    #[test]
    fn initial_executors_follow_spark() {
        assert_eq!(initial_executors(&app(serde_json::json!({}))), 2);
        assert_eq!(
            initial_executors(&app(serde_json::json!({"executor": {"instances": 5}}))),
            5
        );
        let dynamic = serde_json::json!({
            "executor": {"instances": 1},
            "dynamicAllocation": {"enabled": true, "initialExecutors": 3, "minExecutors": 2},
        });
        assert_eq!(initial_executors(&app(dynamic)), 3);
        let off = serde_json::json!({"dynamicAllocation": {"enabled": false, "minExecutors": 4}});
        assert_eq!(initial_executors(&app(off)), 2);
    }

    #[test]
    fn totals_and_cpu_quantities() {
        let a = app(serde_json::json!({
            "driver": {"cores": 1, "memory": "1g"},
            "executor": {"coreRequest": "500m", "memory": "2g", "instances": 3},
        }));
        let t = total(&a).unwrap();
        assert_eq!(t.cpu_milli, 1000 + 3 * 500);
        assert_eq!(t.memory_mib, 1408 + 3 * (2048 + 384));
        assert_eq!(cpu_quantity(t.cpu_milli), "2500m");
        assert_eq!(cpu_quantity(3000), "3");
    }
}
