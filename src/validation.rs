//! Whether a SparkApplication can run: the rules behind the validating webhook (and, later, the
//! reconciler's refusal to submit); and whether a ScheduledSparkApplication can (its schedule,
//! its limits, and its template as the SparkApplications it will create). Pure functions; every
//! finding names its field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::crd::{ScheduledSparkApplication, SparkApplication, SparkPodSpec};
use crate::cron::Schedule;
use crate::quantity::{parse_kubernetes, parse_spark_mib};

/// One problem, at a JSON path such as `spec.driver.volumeMounts[1].name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What validation found: errors refuse the app, warnings are shown to the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
}

impl Findings {
    /// The errors as one message, `; ` between them; None when there are none. How the webhook,
    /// the reconciler and `render` all say why an app is refused.
    pub fn error_message(&self) -> Option<String> {
        if self.errors.is_empty() {
            return None;
        }
        let list: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        Some(list.join("; "))
    }

    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// sparkConf keys kubeflow v2.5 refuses (`sparkconf_validator.go`), with its reasons: the
/// operator owns the API endpoint and the credentials, and a token here would sit in plain text
/// in the driver's ConfigMap. (Its three image keys are honoured here instead: see DEVIATIONS.md.)
const DENIED_SPARK_CONF: &[(&str, &str)] = &[
    ("spark.master", "this value is managed by the operator"),
    (
        "spark.kubernetes.driver.master",
        "this value is managed by the operator",
    ),
    (
        "spark.kubernetes.authenticate.driver.serviceAccountName",
        "configure the service account with spec.driver.serviceAccount instead",
    ),
    (
        "spark.kubernetes.authenticate.executor.serviceAccountName",
        "configure the service account with spec.executor.serviceAccount instead",
    ),
    (
        "spark.kubernetes.authenticate.oauthToken",
        "authentication credentials are managed by the operator",
    ),
    (
        "spark.kubernetes.authenticate.oauthTokenFile",
        "authentication credentials are managed by the operator",
    ),
    (
        "spark.kubernetes.authenticate.driver.oauthToken",
        "authentication credentials are managed by the operator",
    ),
    (
        "spark.kubernetes.authenticate.driver.oauthTokenFile",
        "authentication credentials are managed by the operator",
    ),
    (
        "spark.kubernetes.authenticate.executor.oauthToken",
        "authentication credentials are managed by the operator",
    ),
    (
        "spark.kubernetes.authenticate.executor.oauthTokenFile",
        "authentication credentials are managed by the operator",
    ),
];

/// A ScheduledSparkApplication: its schedule and time zone, its history limits, and its
/// template validated as the runs it creates (named `<name>-<slot in Unix seconds>`), with
/// the template's fields under `spec.template`.
pub fn validate_scheduled(s: &ScheduledSparkApplication) -> Findings {
    let mut f = Findings::default();
    let anchor = k8s_openapi::jiff::Timestamp::now();
    if let Err(e) = Schedule::parse(&s.spec.schedule, s.spec.time_zone.as_deref(), anchor) {
        f.error(e.field.path(), e.message);
    }
    for (field, limit) in [
        (
            "spec.successfulRunHistoryLimit",
            s.spec.successful_run_history_limit,
        ),
        (
            "spec.failedRunHistoryLimit",
            s.spec.failed_run_history_limit,
        ),
    ] {
        if let Some(n) = limit.filter(|n| *n < 0) {
            f.error(
                field,
                format!("{n} is negative: the number of past runs to keep"),
            );
        }
    }
    let name = s.metadata.name.as_deref().unwrap_or_default();
    // The longest run name: a slot of ten digits (until the year 2286).
    let run = SparkApplication {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: (!name.is_empty()).then(|| format!("{name}-0000000000")),
            namespace: s.metadata.namespace.clone(),
            ..Default::default()
        },
        spec: s.spec.template.clone(),
        status: None,
    };
    let of_run = validate(&run);
    for e in of_run.errors {
        match e.field.strip_prefix("spec.") {
            Some(rest) => f.error(format!("spec.template.{rest}"), e.message),
            None if e.field == "metadata.name" => f.error(
                "metadata.name",
                format!(
                    "runs are named {name}-<slot time in Unix seconds>, 11 characters more: {}",
                    e.message
                ),
            ),
            None => f.error(e.field, e.message),
        }
    }
    f.warnings.extend(
        of_run
            .warnings
            .into_iter()
            .map(|w| w.replacen("spec.", "spec.template.", 1)),
    );
    f
}

/// Checks everything that can be checked without a cluster.
pub fn validate(app: &SparkApplication) -> Findings {
    let mut f = Findings::default();
    let spec = &app.spec;
    let name = app.metadata.name.as_deref().unwrap_or_default();
    if !name.is_empty()
        && let Err(why) = dns1035_label(name)
    {
        f.error(
            "metadata.name",
            format!("{name:?} {why}: driver Services are named after the app"),
        );
    }
    if spec
        .main_application_file
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        f.error(
            "spec.mainApplicationFile",
            "is required: the jar, Python or R file to run (e.g. local:///opt/spark/examples/jars/spark-examples.jar)",
        );
    }
    if !spec.node_selector.is_empty()
        && (!spec.driver.pod.node_selector.is_empty()
            || !spec.executor.pod.node_selector.is_empty())
    {
        f.error(
            "spec.nodeSelector",
            "cannot be combined with spec.driver.nodeSelector or spec.executor.nodeSelector; set it in one place",
        );
    }
    let volumes: BTreeSet<&str> = spec.volumes.iter().map(|v| v.name.as_str()).collect();
    pod_spec(&mut f, "spec.driver", &spec.driver.pod, &volumes);
    pod_spec(&mut f, "spec.executor", &spec.executor.pod, &volumes);
    kube_quantity(
        &mut f,
        "spec.driver.coreRequest",
        spec.driver.core_request.as_deref(),
    );
    kube_quantity(
        &mut f,
        "spec.executor.coreRequest",
        spec.executor.core_request.as_deref(),
    );
    if let Some(n) = spec.executor.instances.filter(|n| *n < 0) {
        f.error(
            "spec.executor.instances",
            format!("{n} must not be negative"),
        );
    }
    if let Some(factor) = spec.memory_overhead_factor.as_deref()
        && !factor
            .parse::<f64>()
            .is_ok_and(|x| x.is_finite() && x >= 0.0)
    {
        f.error(
            "spec.memoryOverheadFactor",
            format!("{factor:?} is not a non-negative number (e.g. 0.1)"),
        );
    }
    if let Some(da) = &spec.dynamic_allocation {
        let (min, max, init) = (da.min_executors, da.max_executors, da.initial_executors);
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            f.error(
                "spec.dynamicAllocation.minExecutors",
                format!("{min} is greater than maxExecutors {max}"),
            );
        }
        if let (Some(init), Some(min)) = (init, min)
            && init < min
        {
            f.error(
                "spec.dynamicAllocation.initialExecutors",
                format!("{init} is less than minExecutors {min}"),
            );
        }
        if let (Some(init), Some(max)) = (init, max)
            && init > max
        {
            f.error(
                "spec.dynamicAllocation.initialExecutors",
                format!("{init} is greater than maxExecutors {max}"),
            );
        }
    }
    let rp = &spec.restart_policy;
    for (field, v) in [
        (
            "spec.restartPolicy.onFailureRetries",
            rp.on_failure_retries.map(i64::from),
        ),
        (
            "spec.restartPolicy.onSubmissionFailureRetries",
            rp.on_submission_failure_retries.map(i64::from),
        ),
        (
            "spec.restartPolicy.onFailureRetryInterval",
            rp.on_failure_retry_interval,
        ),
        (
            "spec.restartPolicy.onSubmissionFailureRetryInterval",
            rp.on_submission_failure_retry_interval,
        ),
        ("spec.timeToLiveSeconds", spec.time_to_live_seconds),
        ("spec.failureRetries", spec.failure_retries.map(i64::from)),
        ("spec.retryInterval", spec.retry_interval),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            f.error(field, format!("{v} must not be negative"));
        }
    }
    // Kept in the schema for old YAML; kubeflow v2.5 reads neither either. Said, not dropped
    // silently: a user setting them expects retries they will not get from these fields.
    for (field, set) in [
        ("spec.failureRetries", spec.failure_retries.is_some()),
        ("spec.retryInterval", spec.retry_interval.is_some()),
    ] {
        if set {
            f.warnings.push(format!(
                "{field} is not used (nor by kubeflow v2.5): retries follow spec.restartPolicy (onFailureRetries, onSubmissionFailureRetries and their intervals)"
            ));
        }
    }
    for (i, archive) in spec.deps.archives.iter().enumerate() {
        if let Err(why) = archive_uri(archive) {
            f.error(
                format!("spec.deps.archives[{i}]"),
                format!("{archive:?} {why}"),
            );
        }
    }
    ingress_options(&mut f, app);
    spark_conf(&mut f, app);
    f
}

/// The rules shared by driver and executor.
fn pod_spec(f: &mut Findings, at: &str, pod: &SparkPodSpec, volumes: &BTreeSet<&str>) {
    spark_size(f, &format!("{at}.memory"), pod.memory.as_deref());
    spark_size(
        f,
        &format!("{at}.memoryOverhead"),
        pod.memory_overhead.as_deref(),
    );
    kube_quantity(f, &format!("{at}.coreLimit"), pod.core_limit.as_deref());
    kube_quantity(f, &format!("{at}.memoryLimit"), pod.memory_limit.as_deref());
    if let Some(c) = pod.cores.filter(|c| *c < 1) {
        f.error(format!("{at}.cores"), format!("{c} must be at least 1"));
    }
    // Zero GPUs is no GPU (templated YAML writes `quantity: 0` for CPU-only runs), as in
    // kubeflow; GPUs of no resource name, or a negative count, are mistakes.
    if let Some(gpu) = &pod.gpu {
        if gpu.name.trim().is_empty() && gpu.quantity > 0 {
            f.error(
                format!("{at}.gpu.name"),
                "is required (e.g. nvidia.com/gpu)",
            );
        }
        if gpu.quantity < 0 {
            f.error(
                format!("{at}.gpu.quantity"),
                format!("{} must not be negative", gpu.quantity),
            );
        }
    }
    let mut paths: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in pod.volume_mounts.iter().enumerate() {
        if !volumes.contains(m.name.as_str()) {
            f.error(
                format!("{at}.volumeMounts[{i}].name"),
                format!("volume {:?} is not declared in spec.volumes", m.name),
            );
        }
        if let Some(first) = paths.insert(m.mount_path.as_str(), i) {
            f.error(
                format!("{at}.volumeMounts[{i}].mountPath"),
                format!(
                    "{:?} is already used by {at}.volumeMounts[{first}]",
                    m.mount_path
                ),
            );
        }
    }
}

fn spark_size(f: &mut Findings, field: &str, value: Option<&str>) {
    if let Some(Err(e)) = value.map(parse_spark_mib) {
        f.error(field, e.to_string());
    }
}

fn kube_quantity(f: &mut Findings, field: &str, value: Option<&str>) {
    if let Some(Err(e)) = value.map(parse_kubernetes) {
        f.error(field, e.to_string());
    }
}

fn ingress_options(f: &mut Findings, app: &SparkApplication) {
    let mut ports = BTreeSet::new();
    let mut formats = BTreeSet::new();
    for (i, o) in app.spec.driver_ingress_options.iter().enumerate() {
        if !ports.insert(o.service_port) {
            f.error(
                format!("spec.driverIngressOptions[{i}].servicePort"),
                format!("{} is used twice", o.service_port),
            );
        }
        match o.ingress_url_format.as_deref().filter(|s| !s.is_empty()) {
            None => f.error(
                format!("spec.driverIngressOptions[{i}].ingressURLFormat"),
                "is required",
            ),
            Some(fmt) if !formats.insert(fmt) => f.error(
                format!("spec.driverIngressOptions[{i}].ingressURLFormat"),
                format!("{fmt:?} is used twice"),
            ),
            Some(_) => {}
        }
    }
}

fn spark_conf(f: &mut Findings, app: &SparkApplication) {
    let namespace = app.metadata.namespace.as_deref();
    for (key, value) in &app.spec.spark_conf {
        if let Some((_, why)) = DENIED_SPARK_CONF.iter().find(|(k, _)| k == key) {
            f.error(
                format!("spec.sparkConf[{key:?}]"),
                format!("is not allowed: {why}"),
            );
        }
        if key == "spark.kubernetes.namespace" && namespace.is_some_and(|ns| ns != value) {
            f.error(
                format!("spec.sparkConf[{key:?}]"),
                format!(
                    "{value:?} must equal the application's namespace {:?}",
                    namespace.unwrap_or_default()
                ),
            );
        }
    }
}

/// A `spark.archives` entry: a URI (or absolute path) Spark can fetch, with an optional
/// `#alias` that must be a plain directory name since Spark unpacks the archive into
/// `./<alias>` of the working directory.
pub fn archive_uri(entry: &str) -> Result<(), String> {
    let (location, alias) = match entry.split_once('#') {
        Some((l, a)) => (l, Some(a)),
        None => (entry, None),
    };
    if location.is_empty() || location.chars().any(char::is_whitespace) {
        return Err(
            "is not a URI (no spaces; e.g. s3a://bucket/deps.zip#deps or local:///opt/deps.zip)"
                .into(),
        );
    }
    let has_scheme = location
        .split_once("://")
        .is_some_and(|(scheme, rest)| valid_scheme(scheme) && !rest.is_empty())
        || location.starts_with("file:/");
    if !has_scheme && !location.starts_with('/') {
        return Err("is not a URI Spark can fetch: use scheme://path (local://, file://, http(s)://, s3a://, hdfs://, ...) or an absolute path".into());
    }
    if let Some(alias) = alias
        && (alias.is_empty()
            || alias == "."
            || alias == ".."
            || alias.contains('/')
            || alias.contains('\\'))
    {
        return Err(format!(
            "has alias {alias:?}: after '#' comes the directory name to unpack into, a plain name without '/' or '..'"
        ));
    }
    Ok(())
}

fn valid_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// RFC 1035 label: what Services (named after the app) require.
fn dns1035_label(s: &str) -> Result<(), &'static str> {
    if s.len() > 63 {
        return Err("is longer than 63 characters");
    }
    let mut chars = s.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter");
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may contain only lowercase letters, digits and '-'");
    }
    if s.ends_with('-') {
        return Err("must end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_message_joins_the_errors_and_is_none_without_any() {
        let mut findings = Findings::default();
        assert_eq!(findings.error_message(), None);
        findings.warnings.push("only a warning".into());
        assert_eq!(findings.error_message(), None);
        findings.error("spec.a", "is wrong");
        findings.error("spec.b", "is missing");
        assert_eq!(
            findings.error_message().as_deref(),
            Some("spec.a: is wrong; spec.b: is missing")
        );
    }

    #[test]
    fn archives() {
        for ok in [
            "s3a://b/deps.zip#deps",
            "local:///opt/x.zip",
            "https://h/x.tgz#env",
            "/abs/x.zip",
            "hdfs://nn:8020/a.zip",
        ] {
            assert_eq!(archive_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "deps.zip",
            "s3a://b/x.zip#",
            "s3a://b/x.zip#a/b",
            "s3a://b/x.zip#..",
            "has space://x",
            "://x",
            "s3a://",
        ] {
            assert!(archive_uri(bad).is_err(), "{bad} must be refused");
        }
    }

    /// kubeflow's denied keys are refused with the key and its reason, not overridden quietly
    /// (a token would otherwise land in the driver's ConfigMap); other keys pass.
    #[test]
    fn credentials_in_spark_conf_are_refused() {
        let app: SparkApplication =
            yaml_serde::from_str(include_str!("../tests/fixtures/sparkapplication-pi.yaml"))
                .unwrap();
        assert_eq!(validate(&app).error_message(), None);
        for (key, why) in [
            (
                "spark.kubernetes.authenticate.driver.oauthToken",
                "credentials",
            ),
            ("spark.master", "managed by the operator"),
            (
                "spark.kubernetes.authenticate.executor.serviceAccountName",
                "spec.executor.serviceAccount",
            ),
        ] {
            let mut denied = app.clone();
            denied.spec.spark_conf.insert(key.into(), "x".into());
            let message = validate(&denied).error_message().unwrap_or_default();
            assert!(
                message.starts_with(&format!("spec.sparkConf[{key:?}]: is not allowed")),
                "{message}"
            );
            assert!(message.contains(why), "{message}");
        }
        let mut legacy = app.clone();
        legacy.spec.failure_retries = Some(3);
        let findings = validate(&legacy);
        assert_eq!(findings.error_message(), None);
        assert!(
            findings.warnings[0].starts_with("spec.failureRetries is not used"),
            "{:?}",
            findings.warnings
        );
        let mut fine = app.clone();
        fine.spec.spark_conf.insert(
            "spark.kubernetes.container.image".into(),
            "spark:3.5.3".into(),
        );
        assert_eq!(validate(&fine).error_message(), None);
    }

    fn scheduled(yaml: &str) -> ScheduledSparkApplication {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn a_scheduled_app_is_refused_for_its_schedule_limits_template_and_name() {
        let ok = "apiVersion: sparkoperator.k8s.io/v1beta2\nkind: ScheduledSparkApplication\n\
            metadata: {name: nightly, namespace: jobs}\n\
            spec: {schedule: '@every 10m', template: {type: Scala, sparkVersion: 3.5.3, \
            mainApplicationFile: 'local:///x.jar', driver: {}, executor: {}}}";
        assert_eq!(validate_scheduled(&scheduled(ok)).error_message(), None);

        let mut s = scheduled(ok);
        s.spec.schedule = "every day".into();
        s.spec.successful_run_history_limit = Some(-1);
        s.spec.template.main_application_file = None;
        let msg = validate_scheduled(&s).error_message().unwrap();
        assert!(
            msg.starts_with("spec.schedule: \"every day\" is not a known macro")
                || msg.starts_with("spec.schedule: \"every day\" has 2 fields"),
            "{msg}"
        );
        assert!(
            msg.contains("spec.successfulRunHistoryLimit: -1 is negative"),
            "{msg}"
        );
        assert!(
            msg.contains("spec.template.mainApplicationFile: is required"),
            "{msg}"
        );

        let mut s = scheduled(ok);
        s.spec.time_zone = Some("Europe/Atlantis".into());
        let msg = validate_scheduled(&s).error_message().unwrap();
        assert!(
            msg.starts_with("spec.timeZone: unknown time zone \"Europe/Atlantis\""),
            "{msg}"
        );

        // 53 characters: its runs' names would be 64.
        let mut s = scheduled(ok);
        s.metadata.name = Some("a".repeat(53));
        let msg = validate_scheduled(&s).error_message().unwrap();
        assert!(msg.starts_with("metadata.name: runs are named"), "{msg}");
        s.metadata.name = Some("a".repeat(52));
        assert_eq!(validate_scheduled(&s).error_message(), None);
    }

    #[test]
    fn names() {
        assert!(dns1035_label("spark-pi").is_ok());
        assert!(dns1035_label("1pi").is_err());
        assert!(dns1035_label("Pi").is_err());
        assert!(dns1035_label("pi-").is_err());
        assert!(dns1035_label(&"a".repeat(64)).is_err());
    }
}
