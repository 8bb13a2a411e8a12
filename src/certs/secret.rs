//! The self-managed Secret as data: its settings ([`SecretCertConfig`]), its content
//! ([`CertMaterial`]), the key and annotation names of a CA replacement in progress, and the
//! errors of managing it. Checking, CA rotation and the manager all read and write these keys, so
//! they live below all three.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;

use super::issue::{
    CA_CERT_FILE, CA_KEY_FILE, CaOutcome, CertError, CertOptions, Generated, TLS_CERT_FILE,
    TLS_KEY_FILE,
};
use crate::labels::{NEXT_STAGED_AT_ANNOTATION, PREVIOUS_RETIRED_AT_ANNOTATION};
use crate::registration::RegistrationError;

/// Secret key of the next CA's certificate (staged, signing nothing yet).
pub const CA_NEXT_CERT: &str = "ca-next.crt";
/// Secret key of the next CA's private key.
pub const CA_NEXT_KEY: &str = "ca-next.key";
/// Secret key of the CA replaced at the switch, trusted for `ca_overlap` more.
pub const CA_PREVIOUS_CERT: &str = "ca-previous.crt";

/// What the self-managed mode manages and how.
#[derive(Clone, Debug)]
pub struct SecretCertConfig {
    /// Namespace of the Secret (the operator's).
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// The webhook's Service: the certificate must cover `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`
    /// and `<svc>.<ns>.svc.cluster.local`.
    pub service_name: String,
    /// Namespace of the webhook's Service.
    pub service_namespace: String,
    /// Further DNS names the certificate must cover (e.g. the host of a url clientConfig).
    pub extra_dns: Vec<String>,
    /// Further IP addresses the certificate must cover.
    pub extra_ips: Vec<IpAddr>,
    /// A certificate expiring within this is renewed.
    pub renew_before: Duration,
    /// How often the Secret is checked besides at start and on every change.
    pub check_interval: Duration,
    /// Validity of a new serving certificate, in days.
    pub validity_days: u32,
    /// Validity of a new CA, in days.
    pub ca_validity_days: u32,
    /// A CA expiring within this is replaced, in stages (see `rotation`).
    pub ca_renew_before: Duration,
    /// How long each stage of a CA replacement lasts at least: a new CA is trusted this long
    /// before it signs the served certificate, and the old one stays trusted this long after.
    pub ca_overlap: Duration,
    /// This replica's name, recorded on the certificates it writes.
    pub identity: String,
}

impl SecretCertConfig {
    /// The names (DNS, then IP) a valid certificate must cover.
    pub fn required_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service_name, &self.service_namespace);
        let mut names = vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ];
        names.extend(self.extra_dns.iter().cloned());
        names.extend(self.extra_ips.iter().map(IpAddr::to_string));
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }

    /// Settings that would make every certificate we write look invalid to ourselves.
    pub fn validate(&self) -> Result<(), CertManagerError> {
        let validity = Duration::from_secs(u64::from(self.validity_days) * 86_400);
        if self.renew_before >= validity {
            return Err(CertManagerError::Config(format!(
                "the renewal window ({} days) must be shorter than the certificate's validity ({} days)",
                self.renew_before.as_secs() / 86_400,
                self.validity_days
            )));
        }
        // A leaf is cut short to its CA's expiry; a CA replacement starting before the leaf's own
        // renewal window opens means the leaf never has to switch CA on its own (abruptly).
        if self.ca_renew_before <= self.renew_before {
            return Err(CertManagerError::Config(format!(
                "the CA renewal window ({} days) must be longer than the certificate's ({} days)",
                self.ca_renew_before.as_secs() / 86_400,
                self.renew_before.as_secs() / 86_400
            )));
        }
        let ca_validity = Duration::from_secs(u64::from(self.ca_validity_days) * 86_400);
        if self.ca_renew_before >= ca_validity {
            return Err(CertManagerError::Config(format!(
                "the CA renewal window ({} days) must be shorter than the CA's validity ({} days)",
                self.ca_renew_before.as_secs() / 86_400,
                self.ca_validity_days
            )));
        }
        if self.check_interval.is_zero() {
            return Err(CertManagerError::Config(
                "the check interval must not be zero".into(),
            ));
        }
        Ok(())
    }

    /// Options for a new certificate: the required names plus `inherited` (the old one's).
    pub(super) fn cert_options(&self, inherited: &[String]) -> CertOptions {
        let mut opts = CertOptions::new("");
        opts.service_name = self.service_name.clone();
        opts.namespace = self.service_namespace.clone();
        opts.validity_days = self.validity_days;
        opts.ca_validity_days = self.ca_validity_days;
        opts.extra_dns = self.extra_dns.clone();
        opts.extra_ips = self.extra_ips.clone();
        for name in inherited {
            match name.parse::<IpAddr>() {
                Ok(ip) => opts.extra_ips.push(ip),
                // Only names rcgen accepts: a strange SAN in the old certificate must not block
                // the renewal.
                Err(_) if rcgen::string::Ia5String::try_from(name.as_str()).is_ok() => {
                    opts.extra_dns.push(name.clone())
                }
                Err(_) => {}
            }
        }
        opts
    }
}

/// The keys of the Secret, as found (absent or empty keys are `None`), and the marks of a CA
/// replacement in progress (see `rotation`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CertMaterial {
    /// `ca.crt`: the CA that signed `tls.crt`.
    pub ca_crt: Option<Vec<u8>>,
    /// `ca.key`: the CA's private key, needed to renew with the same CA.
    pub ca_key: Option<Vec<u8>>,
    /// `tls.crt`: the serving certificate (chain, leaf first).
    pub tls_crt: Option<Vec<u8>>,
    /// `tls.key`: the serving private key.
    pub tls_key: Option<Vec<u8>>,
    /// `ca-next.crt`: the CA that will replace `ca.crt`, already trusted, signing nothing yet.
    pub ca_next_crt: Option<Vec<u8>>,
    /// `ca-next.key`: its private key.
    pub ca_next_key: Option<Vec<u8>>,
    /// `ca-previous.crt`: the CA `ca.crt` replaced, still trusted for a while.
    pub ca_previous_crt: Option<Vec<u8>>,
    /// When `ca-next.crt` was staged (RFC 3339, from an annotation).
    pub next_staged_at: Option<String>,
    /// When `ca-previous.crt` stopped signing (RFC 3339, from an annotation).
    pub previous_retired_at: Option<String>,
}

impl fmt::Debug for CertMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has = |v: &Option<Vec<u8>>| v.as_ref().map(|b| b.len());
        f.debug_struct("CertMaterial")
            .field("ca.crt bytes", &has(&self.ca_crt))
            .field("ca.key bytes", &has(&self.ca_key))
            .field("tls.crt bytes", &has(&self.tls_crt))
            .field("tls.key bytes", &has(&self.tls_key))
            .field("ca-next.crt bytes", &has(&self.ca_next_crt))
            .field("ca-next.key bytes", &has(&self.ca_next_key))
            .field("ca-previous.crt bytes", &has(&self.ca_previous_crt))
            .field("next_staged_at", &self.next_staged_at)
            .field("previous_retired_at", &self.previous_retired_at)
            .finish()
    }
}

impl CertMaterial {
    /// The keys of a Secret's `data`.
    pub fn from_secret(secret: &Secret) -> Self {
        let data = secret.data.as_ref();
        let get = |key: &str| {
            data.and_then(|d| d.get(key))
                .map(|b| b.0.clone())
                .filter(|b| !b.is_empty())
        };
        let mark = |key: &str| secret.annotations().get(key).cloned();
        Self {
            ca_crt: get(CA_CERT_FILE),
            ca_key: get(CA_KEY_FILE),
            tls_crt: get(TLS_CERT_FILE),
            tls_key: get(TLS_KEY_FILE),
            ca_next_crt: get(CA_NEXT_CERT),
            ca_next_key: get(CA_NEXT_KEY),
            ca_previous_crt: get(CA_PREVIOUS_CERT),
            next_staged_at: mark(NEXT_STAGED_AT_ANNOTATION),
            previous_retired_at: mark(PREVIOUS_RETIRED_AT_ANNOTATION),
        }
    }

    /// The Secret's data keys and their values (None: the key is removed on write).
    pub(super) fn data(&self) -> [(&'static str, Option<&Vec<u8>>); 7] {
        [
            (CA_CERT_FILE, self.ca_crt.as_ref()),
            (CA_KEY_FILE, self.ca_key.as_ref()),
            (TLS_CERT_FILE, self.tls_crt.as_ref()),
            (TLS_KEY_FILE, self.tls_key.as_ref()),
            (CA_NEXT_CERT, self.ca_next_crt.as_ref()),
            (CA_NEXT_KEY, self.ca_next_key.as_ref()),
            (CA_PREVIOUS_CERT, self.ca_previous_crt.as_ref()),
        ]
    }

    /// The Secret's annotations of a replacement in progress (None: removed on write).
    pub(super) fn marks(&self) -> [(&'static str, Option<&String>); 2] {
        [
            (NEXT_STAGED_AT_ANNOTATION, self.next_staged_at.as_ref()),
            (
                PREVIOUS_RETIRED_AT_ANNOTATION,
                self.previous_retired_at.as_ref(),
            ),
        ]
    }

    pub(super) fn from_generated(g: &Generated) -> Self {
        Self {
            ca_crt: Some(g.ca_cert_pem.clone().into_bytes()),
            ca_key: Some(g.ca_key_pem.clone().into_bytes()),
            tls_crt: Some(g.cert_pem.clone().into_bytes()),
            tls_key: Some(g.key_pem.clone().into_bytes()),
            ..Self::default()
        }
    }

    /// This material with the leaf (and CA) of `g`. A replacement in progress stays when `g` is
    /// signed by our CA; a new CA (ours was lost or expired: nothing to stage from) ends it.
    pub(super) fn renewed(&self, g: &Generated) -> Self {
        match g.ca {
            CaOutcome::Reused => Self {
                tls_crt: Some(g.cert_pem.clone().into_bytes()),
                tls_key: Some(g.key_pem.clone().into_bytes()),
                ..self.clone()
            },
            CaOutcome::Created(_) => Self::from_generated(g),
        }
    }
}

/// Errors of one check; the loop logs them and retries with backoff. Here rather than in the
/// manager because [`SecretCertConfig::validate`] reports through it too.
#[derive(Debug, thiserror::Error)]
pub enum CertManagerError {
    /// An API call on the Secret failed.
    #[error("{action} Secret {namespace}/{name}: {detail}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
        /// The client's error in one line (the apiserver's message, without its Debug dump).
        detail: String,
        /// What to do about it, when known (logged beside the error).
        hint: &'static str,
    },
    /// Certificate generation failed.
    #[error("generating a certificate: {0}")]
    Generate(#[from] CertError),
    /// Every attempt lost a race with another writer.
    #[error("Secret {namespace}/{name} kept changing while we tried to renew it")]
    Conflicts {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
    },
    /// Writing the caBundle into the webhook configurations failed.
    #[error("registering the caBundle: {0}")]
    Register(#[from] RegistrationError),
    /// Inconsistent settings.
    #[error("invalid certificate settings: {0}")]
    Config(String),
}
