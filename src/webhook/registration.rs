//! The Mutating/ValidatingWebhookConfigurations: built from flags, printed for users who register
//! by hand, and created or updated by `serve --register-webhook`.
//!
//! Updates are idempotent: an object already equal to what we would write is left alone, so two
//! versions running side by side never flap. Configurations are never deleted on shutdown (an old
//! replica deleting them after a new one registered was a Go operator bug, #1005 / #910).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::Client;
use kube::api::{Api, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::{MUTATE_POD_PATH, VALIDATE_APP_PATH};

/// Label on Spark pods launched by a SparkApplication (kubeflow's convention, set by the
/// submission on driver and executors).
pub const LAUNCHED_BY_LABEL: &str = "sparkoperator.k8s.io/launched-by-spark-operator";

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
                "app.kubernetes.io/managed-by".to_string(),
                "spark-webhook".to_string(),
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
                            key: "spark-role".into(),
                            operator: "In".into(),
                            values: Some(vec!["driver".into(), "executor".into()]),
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

    /// The SparkApplication validator: CREATE and UPDATE.
    pub fn validating(&self) -> ValidatingWebhookConfiguration {
        ValidatingWebhookConfiguration {
            metadata: self.metadata(),
            webhooks: Some(vec![ValidatingWebhook {
                name: format!("sparkapplications.{}.sparkoperator.k8s.io", self.name),
                admission_review_versions: vec!["v1".into()],
                client_config: self.client_config(VALIDATE_APP_PATH),
                failure_policy: Some(self.app_failure_policy.as_str().into()),
                match_conditions: None,
                match_policy: Some("Equivalent".into()),
                namespace_selector: self.namespace_selector(),
                object_selector: None,
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec!["sparkoperator.k8s.io".into()]),
                    api_versions: Some(vec!["v1beta2".into()]),
                    operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                    resources: Some(vec!["sparkapplications".into()]),
                    scope: Some("Namespaced".into()),
                }]),
                side_effects: "None".into(),
                timeout_seconds: Some(self.timeout_seconds),
            }]),
        }
    }

    /// Both configurations as one multi-document YAML, for `kubectl apply -f`.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let m = serde_yaml::to_string(&tagged(&self.mutating(), "MutatingWebhookConfiguration"))?;
        let v = serde_yaml::to_string(&tagged(
            &self.validating(),
            "ValidatingWebhookConfiguration",
        ))?;
        Ok(format!("{m}---\n{v}"))
    }

    /// Creates or updates both configurations so they equal what we would write.
    pub async fn apply(&self, client: &Client) -> Result<(), RegistrationError> {
        let mutating = self.mutating();
        let validating = self.validating();
        converge(
            &Api::<MutatingWebhookConfiguration>::all(client.clone()),
            "MutatingWebhookConfiguration",
            mutating,
            |have, want| {
                have.webhooks == want.webhooks && labels_cover(&have.metadata, &want.metadata)
            },
        )
        .await?;
        converge(
            &Api::<ValidatingWebhookConfiguration>::all(client.clone()),
            "ValidatingWebhookConfiguration",
            validating,
            |have, want| {
                have.webhooks == want.webhooks && labels_cover(&have.metadata, &want.metadata)
            },
        )
        .await
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
/// defaults into stored webhooks, so equality is checked on a normalised copy of ours.
async fn converge<K>(
    api: &Api<K>,
    kind: &'static str,
    want: K,
    same: impl Fn(&K, &K) -> bool,
) -> Result<(), RegistrationError>
where
    K: kube::Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
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
                    tracing::info!(kind, name, "webhook configuration created");
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(err("creating", e)),
            },
            Some(have) => {
                let mut normalised = want.clone();
                normalised.meta_mut().resource_version = have.meta().resource_version.clone();
                if same(&have, &with_server_defaults(&normalised)) {
                    tracing::debug!(kind, name, "webhook configuration already up to date");
                    return Ok(());
                }
                let mut merged = normalised;
                // Keep labels/annotations others added; ours win on conflict.
                let mut labels = have.meta().labels.clone().unwrap_or_default();
                labels.extend(merged.meta().labels.clone().unwrap_or_default());
                merged.meta_mut().labels = Some(labels);
                merged.meta_mut().annotations = have.meta().annotations.clone();
                match api.replace(&name, &PostParams::default(), &merged).await {
                    Ok(_) => {
                        tracing::info!(kind, name, "webhook configuration updated");
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

    #[test]
    fn yaml_has_both_kinds_and_a_base64_ca_bundle() {
        let yaml = reg(Endpoint::Url("https://127.0.0.1:9443".into()))
            .to_yaml()
            .unwrap();
        assert!(yaml.contains("kind: MutatingWebhookConfiguration"));
        assert!(yaml.contains("kind: ValidatingWebhookConfiguration"));
        assert!(
            yaml.contains("caBundle: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="),
            "{yaml}"
        );
    }
}
