//! Deterministic names and ids of one submission.
//!
//! spark-submit draws its ids at random (`spark-<uuid>` app id, 16-hex `uniqueID`s in the
//! Service and ConfigMap names, a `/var/data/spark-<uuid>` local dir). Here every one of them is
//! a SHA-256 of (app uid, attempt, purpose), so a reconcile repeated after a crash rebuilds the
//! very same objects: creating them again yields AlreadyExists instead of a second driver.

use ring::digest::{SHA256, digest};

use crate::crd::SparkApplication;

/// Longest DNS-1035 label (Service names, and the driver pod name kept within it so the pod
/// name can double as a hostname or label value).
pub(crate) const MAX_NAME_LENGTH: usize = 63;
const DRIVER_SVC_SUFFIX: &str = "-driver-svc";

/// Every generated name and id of one (app uid, attempt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Names {
    /// `sparkoperator.k8s.io/submission-id`: UUID-shaped.
    pub submission_id: String,
    /// `spark.app.id`, `SPARK_APPLICATION_ID`, label `spark-app-selector`: `spark-` + 32 hex.
    pub app_id: String,
    pub driver_pod: String,
    pub service: String,
    pub config_map: String,
    /// Mount path of the default `spark-local-dir-1` emptyDir.
    pub local_dir: String,
}

impl Names {
    /// `attempt` is 1-based; 0 is treated as 1.
    pub(crate) fn new(app: &SparkApplication, uid: &str, attempt: u32) -> Self {
        let attempt = attempt.max(1);
        let id = |purpose: &str| derive(uid, attempt, purpose);
        let app_name = app.metadata.name.as_deref().unwrap_or_default();
        let service_id = hex(&id("driver-service")[..8]);
        let prefix = resource_name_prefix(app_name, &service_id);
        let preferred = format!("{prefix}{DRIVER_SVC_SUFFIX}");
        // Spark's own fallback when `<app>-<id>-driver-svc` is too long.
        let service = if preferred.len() <= MAX_NAME_LENGTH {
            preferred
        } else {
            format!("spark-{service_id}{DRIVER_SVC_SUFFIX}")
        };
        Self {
            submission_id: uuid(&id("submission-id")),
            app_id: format!("spark-{}", hex(&id("app-id")[..16])),
            driver_pod: driver_pod_name(app, attempt),
            service,
            config_map: format!("spark-drv-{}-conf-map", hex(&id("config-map")[..8])),
            local_dir: format!("/var/data/spark-{}", uuid(&id("local-dir"))),
        }
    }
}

/// The driver pod's name: `spec.driver.podName`, else sparkConf `spark.kubernetes.driver.pod.name`
/// (both as kubeflow does; the same name on every attempt, so the caller must delete the previous
/// driver before retrying), else `<app>-driver` on attempt 1 and `<app>-driver-<attempt>` after.
/// A generated name stays within 63 characters: a long app name is cut and an 8-hex hash of the
/// full name is added, so two long names sharing a prefix still get different drivers.
pub fn driver_pod_name(app: &SparkApplication, attempt: u32) -> String {
    let non_empty = |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned();
    if let Some(name) = non_empty(app.spec.driver.pod_name.as_ref())
        .or_else(|| non_empty(app.spec.spark_conf.get(super::keys::DRIVER_POD_NAME)))
    {
        return name;
    }
    let suffix = match attempt {
        0 | 1 => "driver".to_string(),
        n => format!("driver-{n}"),
    };
    fit_name(app.metadata.name.as_deref().unwrap_or_default(), &suffix)
}

/// `<name>-<suffix>`, or `<cut name>-<hash>-<suffix>` when that exceeds 63 characters (kubeflow's
/// `generateName` scheme, with SHA-256 instead of MD5).
pub(crate) fn fit_name(name: &str, suffix: &str) -> String {
    let preferred = format!("{name}-{suffix}");
    if preferred.len() <= MAX_NAME_LENGTH {
        return preferred;
    }
    let hash = hex(&digest(&SHA256, name.as_bytes()).as_ref()[..4]);
    let keep = MAX_NAME_LENGTH.saturating_sub(suffix.len() + hash.len() + 2);
    let cut: String = name.chars().take(keep).collect();
    let cut = cut.trim_end_matches(['-', '.']);
    format!("{cut}-{hash}-{suffix}")
}

/// Spark's `KubernetesConf.getResourceNamePrefix`: `<app>-<id>` lowercased, every character
/// outside `[a-z0-9-]` turned into `-`, runs of `-` collapsed, no leading `-`, and a leading
/// digit replaced by `x`.
pub(crate) fn resource_name_prefix(app_name: &str, id: &str) -> String {
    let raw = format!("{app_name}-{id}").trim().to_lowercase();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let out = out.trim_start_matches('-');
    let mut chars = out.chars();
    match chars.next() {
        Some(c) if c.is_ascii_digit() => format!("x{}", chars.as_str()),
        _ => out.to_string(),
    }
}

/// Spark's `KubernetesConf.getAppNameLabel`: the app name as a label value (lowercase,
/// `[a-z0-9-]`, at most 63 characters). Trailing dashes left by the cut are dropped, since a
/// label value must end with an alphanumeric character.
pub(crate) fn app_name_label(app_name: &str) -> String {
    let prefix = resource_name_prefix(app_name, "");
    let cut: String = prefix
        .trim_end_matches('-')
        .chars()
        .take(MAX_NAME_LENGTH)
        .collect();
    cut.trim_end_matches('-').to_string()
}

fn derive(uid: &str, attempt: u32, purpose: &str) -> [u8; 32] {
    let input = format!("spark-webhook/submission/v1\0{purpose}\0{uid}\0{attempt}");
    // SHA-256 digests are always 32 bytes.
    digest(&SHA256, input.as_bytes())
        .as_ref()
        .try_into()
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A UUID string from the first 16 bytes, marked as an RFC 9562 version 8 (custom) UUID.
fn uuid(bytes: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!(
        "{}-{}-{}-{}-{}",
        hex(&b[0..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_name_prefix_like_spark() {
        assert_eq!(resource_name_prefix("spark-pi", "abc"), "spark-pi-abc");
        assert_eq!(resource_name_prefix("My_App.v2", "0f"), "my-app-v2-0f");
        assert_eq!(resource_name_prefix("--x", "1"), "x-1");
        assert_eq!(resource_name_prefix("9lives", "1"), "xlives-1");
    }

    #[test]
    fn app_name_label_fits() {
        assert_eq!(app_name_label("spark-pi"), "spark-pi");
        let long = format!("{}-b", "a".repeat(62));
        assert_eq!(app_name_label(&long), "a".repeat(62));
    }

    #[test]
    fn uuid_shape() {
        let u = uuid(&derive("uid", 1, "x"));
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'8');
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn fit_name_hashes_long_names() {
        assert_eq!(fit_name("pi", "driver"), "pi-driver");
        let long = "a".repeat(70);
        let fitted = fit_name(&long, "driver-12");
        assert_eq!(fitted.len(), MAX_NAME_LENGTH);
        assert!(fitted.ends_with("-driver-12"));
        assert_ne!(fitted, fit_name(&format!("{long}b"), "driver-12"));
    }
}
