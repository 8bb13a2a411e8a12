//! The Mutating/ValidatingWebhookConfigurations: built from flags, printed for users who register
//! by hand, and created or updated by `serve --register-webhook`.
//!
//! What is guaranteed when several replicas, possibly of different versions (a rolling upgrade),
//! register the same configurations:
//!
//! - Each write records the writer's version ([`VERSION_ANNOTATION`], the crate version, compared
//!   by semver precedence). A replica never rewrites the spec of a configuration recorded by a
//!   newer version: it logs that once and leaves it, keeping only the caBundle in line with the
//!   certificate both serve (the same Secret or mounted files give the same bundle, so the two
//!   never disagree on it; and after a rollback the caBundle still follows CA rotations). An
//!   older, unrecorded or unreadable version is taken over.
//! - Equal versions converge: an object already equal to what we would write (after the
//!   apiserver's defaults) is not written at all, so a periodic re-registration costs a read.
//!   Replicas of one version with different flags (say, two webhook URLs) would still rewrite
//!   each other; they are one misconfigured deployment, not an upgrade.
//! - Rolling back leaves the newer spec in place until its annotation is removed
//!   (`kubectl annotate mutatingwebhookconfiguration <name> <annotation>-`, same for the
//!   validating one); the older version then takes over.
//!
//! Configurations are never deleted on shutdown (an old replica deleting them after a new one
//! registered was a Go operator bug, #1005 / #910).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt as _};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use semver::Version;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::labels::{
    LAUNCHED_BY_LABEL, MANAGED_BY_LABEL, SPARK_ROLE_LABEL, SparkRole, VERSION_ANNOTATION,
};

/// The path the apiserver calls with pod reviews (the webhook's route).
pub const MUTATE_POD_PATH: &str = "/mutate-v1-pod";
/// The path the apiserver calls with SparkApplication reviews.
pub const VALIDATE_APP_PATH: &str = "/validate-sparkoperator-k8s-io-v1beta2-sparkapplication";
/// The path the apiserver calls with ScheduledSparkApplication reviews (kubeflow's).
pub const VALIDATE_SCHEDULED_PATH: &str =
    "/validate-sparkoperator-k8s-io-v1beta2-scheduledsparkapplication";

/// Debug builds only: the version to register instead of the crate's, so a test can run two
/// "versions" of one build. Release builds ignore it: no user can pin a version by accident.
pub const VERSION_OVERRIDE_ENV: &str = "SPARK_WEBHOOK_TEST_REGISTRATION_VERSION";

/// The version this binary registers as: `CARGO_PKG_VERSION` (or, in a debug build,
/// [`VERSION_OVERRIDE_ENV`]).
pub fn registering_version() -> &'static Version {
    static VERSION: OnceLock<Version> = OnceLock::new();
    VERSION.get_or_init(|| {
        let overridden = cfg!(debug_assertions)
            .then(|| std::env::var(VERSION_OVERRIDE_ENV).ok())
            .flatten()
            .and_then(|v| Version::parse(v.trim()).ok());
        overridden.unwrap_or_else(|| {
            Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(Version::new(0, 0, 0))
        })
    })
}

/// Who may write the spec of a configuration recorded by version `theirs`.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// Ours, equal, older, absent or unreadable: we write our spec (when it differs).
    Ours,
    /// A newer version's: we keep its spec and only set the caBundle.
    Newer(Version),
}

fn claim(theirs: Option<&str>, ours: &Version) -> Claim {
    match theirs.and_then(|v| Version::parse(v.trim()).ok()) {
        Some(v) if v.cmp_precedence(ours).is_gt() => Claim::Newer(v),
        _ => Claim::Ours,
    }
}

/// How the apiserver reaches the webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// In a cluster: through the webhook's Service.
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    /// Outside a cluster (local runs): a base URL such as `https://127.0.0.1:9443`.
    Url(String),
}

/// What the apiserver does when the webhook cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    Ignore,
    Fail,
}

impl FailurePolicy {
    fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Ignore => "Ignore",
            FailurePolicy::Fail => "Fail",
        }
    }
}

/// Everything the two configurations are built from.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Name of both configuration objects.
    pub name: String,
    pub endpoint: Endpoint,
    /// PEM of the CA that signed the serving certificate.
    pub ca_bundle: Vec<u8>,
    pub pod_failure_policy: FailurePolicy,
    pub app_failure_policy: FailurePolicy,
    pub timeout_seconds: i32,
    /// Optional namespaceSelector (`key=value` labels, ANDed) limiting both webhooks to labelled
    /// job namespaces.
    pub namespace_selector: BTreeMap<String, String>,
}

#[derive(Debug, Error)]
pub enum RegistrationError {
    #[error("{action} {kind} {name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {name} kept changing under us (conflicts); giving up for now")]
    Conflicts { kind: &'static str, name: String },
}

impl Registration {
    fn client_config(&self, path: &str) -> WebhookClientConfig {
        // No caBundle rather than an empty one: `kubectl apply` of printed YAML then never
        // clears the caBundle that registration or `make install-certs` put in.
        let ca_bundle = (!self.ca_bundle.is_empty()).then(|| ByteString(self.ca_bundle.clone()));
        match &self.endpoint {
            Endpoint::Service {
                namespace,
                name,
                port,
            } => WebhookClientConfig {
                ca_bundle,
                service: Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some(path.to_string()),
                    port: Some(*port),
                }),
                url: None,
            },
            Endpoint::Url(base) => WebhookClientConfig {
                ca_bundle,
                service: None,
                url: Some(format!("{}{path}", base.trim_end_matches('/'))),
            },
        }
    }

    fn namespace_selector(&self) -> Option<LabelSelector> {
        (!self.namespace_selector.is_empty()).then(|| LabelSelector {
            match_labels: Some(self.namespace_selector.clone()),
            match_expressions: None,
        })
    }

    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.clone()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                "spark-webhook".to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                VERSION_ANNOTATION.to_string(),
                registering_version().to_string(),
            )])),
            ..ObjectMeta::default()
        }
    }

    /// The pod webhook: CREATE of Spark pods we launched, nothing else.
    pub fn mutating(&self) -> MutatingWebhookConfiguration {
        MutatingWebhookConfiguration {
            metadata: self.metadata(),
            webhooks: Some(vec![MutatingWebhook {
                name: format!("pods.{}.sparkoperator.k8s.io", self.name),
                admission_review_versions: vec!["v1".into()],
                client_config: self.client_config(MUTATE_POD_PATH),
                failure_policy: Some(self.pod_failure_policy.as_str().into()),
                match_conditions: None,
                match_policy: Some("Equivalent".into()),
                // Only Spark pods we launched ever reach us: ordinary pods never wait on us.
                object_selector: Some(LabelSelector {
                    match_labels: None,
                    match_expressions: Some(vec![
                        LabelSelectorRequirement {
                            key: SPARK_ROLE_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![
                                SparkRole::Driver.as_str().into(),
                                SparkRole::Executor.as_str().into(),
                            ]),
                        },
                        LabelSelectorRequirement {
                            key: LAUNCHED_BY_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec!["true".into()]),
                        },
                    ]),
                }),
                namespace_selector: self.namespace_selector(),
                // Our patch is idempotent, so being called again after another webhook changed
                // the pod is safe and keeps our additions in place.
                reinvocation_policy: Some("IfNeeded".into()),
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec!["".into()]),
                    api_versions: Some(vec!["v1".into()]),
                    operations: Some(vec!["CREATE".into()]),
                    resources: Some(vec!["pods".into()]),
                    scope: Some("Namespaced".into()),
                }]),
                // We publish an Event when we refuse a pod, never on dry runs.
                side_effects: "NoneOnDryRun".into(),
                timeout_seconds: Some(self.timeout_seconds),
            }]),
        }
    }

    /// The SparkApplication and ScheduledSparkApplication validators: CREATE and UPDATE.
    pub fn validating(&self) -> ValidatingWebhookConfiguration {
        let validator = |resource: &str, path: &str| ValidatingWebhook {
            name: format!("{resource}.{}.sparkoperator.k8s.io", self.name),
            admission_review_versions: vec!["v1".into()],
            client_config: self.client_config(path),
            failure_policy: Some(self.app_failure_policy.as_str().into()),
            match_conditions: None,
            match_policy: Some("Equivalent".into()),
            namespace_selector: self.namespace_selector(),
            object_selector: None,
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["sparkoperator.k8s.io".into()]),
                api_versions: Some(vec!["v1beta2".into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                resources: Some(vec![resource.into()]),
                scope: Some("Namespaced".into()),
            }]),
            side_effects: "None".into(),
            timeout_seconds: Some(self.timeout_seconds),
        };
        ValidatingWebhookConfiguration {
            metadata: self.metadata(),
            webhooks: Some(vec![
                validator("sparkapplications", VALIDATE_APP_PATH),
                validator("scheduledsparkapplications", VALIDATE_SCHEDULED_PATH),
            ]),
        }
    }

    /// Both configurations as one multi-document YAML, for `kubectl apply -f`. Without the
    /// version annotation: it records who registered through the API, and committed manifests
    /// would otherwise change with every release.
    pub fn to_yaml(&self) -> Result<String, yaml_serde::Error> {
        let mut mutating = self.mutating();
        mutating.metadata.annotations = None;
        let mut validating = self.validating();
        validating.metadata.annotations = None;
        let m = yaml_serde::to_string(&tagged(&mutating, "MutatingWebhookConfiguration"))?;
        let v = yaml_serde::to_string(&tagged(&validating, "ValidatingWebhookConfiguration"))?;
        Ok(format!("{m}---\n{v}"))
    }

    /// Creates or updates both configurations so they equal what we would write, unless a newer
    /// version wrote them (then only their caBundle is set); see the module doc.
    pub async fn apply(&self, client: &Client) -> Result<(), RegistrationError> {
        converge(
            &Api::<MutatingWebhookConfiguration>::all(client.clone()),
            self.mutating(),
        )
        .await?;
        converge(
            &Api::<ValidatingWebhookConfiguration>::all(client.clone()),
            self.validating(),
        )
        .await
    }

    /// Whether both configurations, as the apiserver has them now, trust every CA in `ca_pem`
    /// in every webhook's caBundle (false when one is missing).
    pub async fn trusts(&self, client: &Client, ca_pem: &[u8]) -> Result<bool, RegistrationError> {
        let m = read::<MutatingWebhookConfiguration>(client, &self.name).await?;
        let v = read::<ValidatingWebhookConfiguration>(client, &self.name).await?;
        let bundles: Vec<Option<&ByteString>> = match (&m, &v) {
            (Some(m), Some(v)) => m.ca_bundles().into_iter().chain(v.ca_bundles()).collect(),
            _ => return Ok(false),
        };
        let wanted = ders(ca_pem);
        Ok(!bundles.is_empty()
            && bundles.iter().all(|b| {
                let have = b.map(|b| ders(&b.0)).unwrap_or_default();
                wanted.iter().all(|der| have.contains(der))
            }))
    }
}

/// The certificates (DER) of a PEM bundle; unparsable parts are skipped.
fn ders(pem: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|d| d.to_vec())
        .collect()
}

async fn read<K: WebhookConfig>(
    client: &Client,
    name: &str,
) -> Result<Option<K>, RegistrationError> {
    Api::<K>::all(client.clone())
        .get_opt(name)
        .await
        .map_err(|source| RegistrationError::Api {
            action: "reading",
            kind: K::KIND,
            name: name.to_string(),
            source,
        })
}

/// What [`converge`] needs of both configuration kinds.
trait WebhookConfig:
    kube::Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug
{
    const KIND: &'static str;
    /// Whether the webhooks are equal.
    fn same_webhooks(&self, other: &Self) -> bool;
    /// Every webhook's caBundle.
    fn ca_bundles(&self) -> Vec<Option<&ByteString>>;
    /// Sets every webhook's caBundle.
    fn set_ca_bundle(&mut self, ca_bundle: &ByteString);
}

/// The two configuration types differ in name only: the fields read here are the same.
macro_rules! webhook_config {
    ($config:ty, $kind:literal) => {
        impl WebhookConfig for $config {
            const KIND: &'static str = $kind;
            fn same_webhooks(&self, other: &Self) -> bool {
                self.webhooks == other.webhooks
            }
            fn ca_bundles(&self) -> Vec<Option<&ByteString>> {
                self.webhooks
                    .iter()
                    .flatten()
                    .map(|w| w.client_config.ca_bundle.as_ref())
                    .collect()
            }
            fn set_ca_bundle(&mut self, ca_bundle: &ByteString) {
                for w in self.webhooks.iter_mut().flatten() {
                    w.client_config.ca_bundle = Some(ca_bundle.clone());
                }
            }
        }
    };
}

webhook_config!(MutatingWebhookConfiguration, "MutatingWebhookConfiguration");
webhook_config!(
    ValidatingWebhookConfiguration,
    "ValidatingWebhookConfiguration"
);

/// Logs once per configuration and version that a newer version's spec is left in place.
fn note_newer(kind: &'static str, name: &str, newer: &Version) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let key = format!("{kind}/{name}@{newer}");
    let first = SEEN
        .get_or_init(Default::default)
        .lock()
        .map(|mut seen| seen.insert(key))
        .unwrap_or(false);
    if first {
        tracing::warn!(
            kind,
            name,
            registered_by = %newer,
            ours = %registering_version(),
            "webhook configuration written by a newer version: leaving its spec alone (only its caBundle is kept in line); remove annotation {VERSION_ANNOTATION} to let this version take over after a rollback"
        );
    }
}

/// apiVersion/kind first, as users expect to read them.
fn tagged<T: Serialize>(obj: &T, kind: &str) -> serde_json::Value {
    let mut v = serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind});
    if let (Some(map), Ok(serde_json::Value::Object(fields))) =
        (v.as_object_mut(), serde_json::to_value(obj))
    {
        map.extend(fields);
    }
    v
}

fn labels_cover(have: &ObjectMeta, want: &ObjectMeta) -> bool {
    let have = have.labels.clone().unwrap_or_default();
    want.labels
        .iter()
        .flatten()
        .all(|(k, v)| have.get(k) == Some(v))
}

/// GET, then create or replace unless already equal; retries on conflicts. The apiserver fills
/// defaults into stored webhooks, so equality is checked on a normalised copy of ours. A spec
/// recorded by a newer version is kept, with our caBundle.
async fn converge<K: WebhookConfig>(api: &Api<K>, want: K) -> Result<(), RegistrationError> {
    let kind = K::KIND;
    let name = want.meta().name.clone().unwrap_or_default();
    let err = |action, source| RegistrationError::Api {
        action,
        kind,
        name: name.clone(),
        source,
    };
    for _ in 0..5 {
        match api.get_opt(&name).await.map_err(|e| err("reading", e))? {
            None => match api.create(&PostParams::default(), &want).await {
                Ok(_) => {
                    tracing::info!(kind, name, version = %registering_version(), "webhook configuration created");
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(err("creating", e)),
            },
            Some(have) => {
                let desired = desired(&have, &want);
                if have.same_webhooks(&desired)
                    && labels_cover(have.meta(), desired.meta())
                    && have.annotations().get(VERSION_ANNOTATION)
                        == desired.annotations().get(VERSION_ANNOTATION)
                {
                    tracing::debug!(kind, name, "webhook configuration already up to date");
                    return Ok(());
                }
                match api.replace(&name, &PostParams::default(), &desired).await {
                    Ok(_) => {
                        tracing::info!(kind, name, version = %registering_version(), "webhook configuration updated");
                        return Ok(());
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(err("updating", e)),
                }
            }
        }
    }
    Err(RegistrationError::Conflicts { kind, name })
}

/// What `have` should become: our spec (labels and annotations others added kept, ours win), or,
/// when a newer version wrote it, its own spec with our caBundle.
fn desired<K: WebhookConfig>(have: &K, want: &K) -> K {
    let theirs = have
        .annotations()
        .get(VERSION_ANNOTATION)
        .map(String::as_str);
    if let Claim::Newer(newer) = claim(theirs, registering_version()) {
        note_newer(K::KIND, &have.name_any(), &newer);
        let mut kept = have.clone();
        if let Some(Some(ca)) = want.ca_bundles().first() {
            kept.set_ca_bundle(ca);
        }
        return kept;
    }
    let mut merged = want.clone();
    merged.meta_mut().resource_version = have.meta().resource_version.clone();
    let mut merged = with_server_defaults(&merged);
    let mut labels = have.meta().labels.clone().unwrap_or_default();
    labels.extend(merged.meta().labels.clone().unwrap_or_default());
    merged.meta_mut().labels = Some(labels);
    let mut annotations = have.meta().annotations.clone().unwrap_or_default();
    annotations.extend(want.meta().annotations.clone().unwrap_or_default());
    merged.meta_mut().annotations = Some(annotations);
    merged
}

/// Our object as the apiserver stores it: it defaults the namespaceSelector to `{}` and the
/// service port to 443; comparing without these would update on every start.
fn with_server_defaults<K: Serialize + DeserializeOwned + Clone>(obj: &K) -> K {
    let Ok(mut v) = serde_json::to_value(obj) else {
        return obj.clone();
    };
    if let Some(hooks) = v.get_mut("webhooks").and_then(|h| h.as_array_mut()) {
        for hook in hooks {
            if let Some(h) = hook.as_object_mut() {
                h.entry("namespaceSelector")
                    .or_insert_with(|| serde_json::json!({}));
                h.entry("objectSelector")
                    .or_insert_with(|| serde_json::json!({}));
            }
        }
    }
    serde_json::from_value(v).unwrap_or_else(|_| obj.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(endpoint: Endpoint) -> Registration {
        Registration {
            name: "spark-webhook".into(),
            endpoint,
            ca_bundle: b"-----BEGIN CERTIFICATE-----\n".to_vec(),
            pod_failure_policy: FailurePolicy::Ignore,
            app_failure_policy: FailurePolicy::Ignore,
            timeout_seconds: 5,
            namespace_selector: BTreeMap::new(),
        }
    }

    #[test]
    fn url_and_service_client_configs() {
        let m = reg(Endpoint::Url("https://127.0.0.1:9443/".into())).mutating();
        let hook = &m.webhooks.unwrap()[0];
        assert_eq!(
            hook.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/mutate-v1-pod")
        );
        assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(
            hook.rules.as_ref().unwrap()[0].operations.as_ref().unwrap(),
            &vec!["CREATE".to_string()]
        );

        let v = reg(Endpoint::Service {
            namespace: "ops".into(),
            name: "svc".into(),
            port: 443,
        })
        .validating();
        let svc = v.webhooks.unwrap()[0]
            .client_config
            .service
            .clone()
            .unwrap();
        assert_eq!(
            (svc.namespace.as_str(), svc.name.as_str(), svc.port),
            ("ops", "svc", Some(443))
        );
        assert_eq!(svc.path.as_deref(), Some(VALIDATE_APP_PATH));
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn only_a_newer_version_keeps_its_spec() {
        let ours = v("0.10.0");
        assert_eq!(claim(Some("0.11.0"), &ours), Claim::Newer(v("0.11.0")));
        // Semver, not string order: 0.9 is older than 0.10, an rc older than its release.
        assert_eq!(claim(Some("0.9.0"), &ours), Claim::Ours);
        assert_eq!(claim(Some("0.10.0-rc.1"), &ours), Claim::Ours);
        assert_eq!(claim(Some("0.10.0"), &ours), Claim::Ours);
        assert_eq!(claim(Some("0.10.0+build.7"), &ours), Claim::Ours);
        assert_eq!(claim(None, &ours), Claim::Ours);
        assert_eq!(claim(Some("not a version"), &ours), Claim::Ours);
    }

    fn stored(r: &Registration, version: &str) -> MutatingWebhookConfiguration {
        let mut m = with_server_defaults(&r.mutating());
        m.metadata.resource_version = Some("7".into());
        m.annotations_mut()
            .insert(VERSION_ANNOTATION.into(), version.into());
        m.annotations_mut()
            .insert("someone.else/note".into(), "kept".into());
        m
    }

    #[test]
    fn a_newer_spec_is_kept_with_our_ca_bundle_and_ours_replaces_an_older_one() {
        let ours = reg(Endpoint::Url("https://127.0.0.1:9443".into()));
        let mut theirs = reg(Endpoint::Url("https://127.0.0.1:9999".into()));
        theirs.ca_bundle = b"old bundle".to_vec();

        let newer = stored(&theirs, "999.0.0");
        let kept = desired(&newer, &ours.mutating());
        let hook = &kept.webhooks.as_ref().unwrap()[0];
        assert_eq!(
            hook.client_config.url.as_deref(),
            Some("https://127.0.0.1:9999/mutate-v1-pod"),
            "the newer spec stays"
        );
        assert_eq!(
            hook.client_config
                .ca_bundle
                .as_ref()
                .map(|b| b.0.as_slice()),
            Some(ours.ca_bundle.as_slice()),
            "the caBundle follows our certificate"
        );
        assert_eq!(kept.annotations()[VERSION_ANNOTATION], "999.0.0");

        let older = stored(&theirs, "0.0.1");
        let taken = desired(&older, &ours.mutating());
        assert_eq!(
            taken.webhooks.as_ref().unwrap()[0]
                .client_config
                .url
                .as_deref(),
            Some("https://127.0.0.1:9443/mutate-v1-pod")
        );
        assert_eq!(
            taken.annotations()[VERSION_ANNOTATION],
            registering_version().to_string()
        );
        assert_eq!(taken.annotations()["someone.else/note"], "kept");
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn our_own_stored_spec_needs_no_write() {
        let ours = reg(Endpoint::Url("https://127.0.0.1:9443".into()));
        let have = stored(&ours, &registering_version().to_string());
        let want = desired(&have, &ours.mutating());
        assert!(have.same_webhooks(&want));
        assert_eq!(
            have.annotations().get(VERSION_ANNOTATION),
            want.annotations().get(VERSION_ANNOTATION)
        );
    }

    #[test]
    fn yaml_has_both_kinds_and_a_base64_ca_bundle() {
        let yaml = reg(Endpoint::Url("https://127.0.0.1:9443".into()))
            .to_yaml()
            .unwrap();
        assert!(yaml.contains("kind: MutatingWebhookConfiguration"));
        assert!(yaml.contains("kind: ValidatingWebhookConfiguration"));
        assert!(!yaml.contains(VERSION_ANNOTATION), "{yaml}");
        assert!(
            yaml.contains("caBundle: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="),
            "{yaml}"
        );
    }
}
