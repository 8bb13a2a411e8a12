//! What makes the Secret's certificate worth keeping ([`check`]), and its replacement
//! ([`regenerate`]): pure functions of the Secret's content, the settings and the time.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;

use super::CertManagerError;
use super::rotation::{CA_NEXT_CERT, CA_NEXT_KEY, CA_PREVIOUS_CERT};
use crate::certs::{
    self, CA_CERT_FILE, CA_KEY_FILE, CertError, CertOptions, TLS_CERT_FILE, TLS_KEY_FILE,
};
use crate::labels::{NEXT_STAGED_AT_ANNOTATION, PREVIOUS_RETIRED_AT_ANNOTATION};
use crate::tls;
use kube::ResourceExt as _;

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
    /// A CA expiring within this is replaced, in stages ([`super::rotation`]).
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
    fn cert_options(&self, inherited: &[String]) -> CertOptions {
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
/// replacement in progress ([`super::rotation`]).
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

    pub(super) fn from_generated(g: &certs::Generated) -> Self {
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
    pub(super) fn renewed(&self, g: &certs::Generated) -> Self {
        match g.ca {
            certs::CaOutcome::Reused => Self {
                tls_crt: Some(g.cert_pem.clone().into_bytes()),
                tls_key: Some(g.key_pem.clone().into_bytes()),
                ..self.clone()
            },
            certs::CaOutcome::Created(_) => Self::from_generated(g),
        }
    }
}

/// Why the certificate in the Secret must be replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// There is no Secret.
    #[error("the Secret does not exist")]
    NoSecret,
    /// A key the certificate needs is absent or empty.
    #[error("key {0} is missing or empty")]
    Missing(&'static str),
    /// `tls.crt`/`tls.key` do not parse or do not belong together.
    #[error("{0}")]
    Pair(String),
    /// `ca.crt` holds no usable certificate.
    #[error("ca.crt holds no usable certificate: {0}")]
    Ca(String),
    /// Expired, or expiring within the renewal window.
    #[error("the certificate expires at {not_after}, within the renewal window")]
    Expiring {
        /// The certificate's notAfter (RFC 3339).
        not_after: String,
    },
    /// Names the certificate must cover but does not.
    #[error("the certificate does not cover {missing:?} (it covers {has:?})")]
    Sans {
        /// The required names it lacks.
        missing: Vec<String>,
        /// The names it has.
        has: Vec<String>,
    },
    /// Not signed by (a CA in) `ca.crt`, or not yet valid.
    #[error("the certificate is not trusted by ca.crt: {0}")]
    NotSigned(String),
}

/// Facts about a certificate [`check`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    /// Expiry of the serving certificate.
    pub not_after: OffsetDateTime,
    /// Its serial number (colon-separated hex), for logs.
    pub serial: String,
}

/// Whether `material` (None: no Secret) holds a certificate worth keeping at `now`: `tls.crt` and
/// `tls.key` parse and match, it expires no sooner than `renew_before` from now, it covers every
/// name in `required`, and it is signed by a CA in `ca.crt` (which is what the caBundle is made
/// of). The first reason found is returned.
pub fn check(
    material: Option<&CertMaterial>,
    required: &[String],
    renew_before: Duration,
    now: OffsetDateTime,
) -> Result<Valid, Invalid> {
    let m = material.ok_or(Invalid::NoSecret)?;
    let tls_crt = m
        .tls_crt
        .as_deref()
        .ok_or(Invalid::Missing(TLS_CERT_FILE))?;
    let tls_key = m.tls_key.as_deref().ok_or(Invalid::Missing(TLS_KEY_FILE))?;
    let ca_crt = m.ca_crt.as_deref().ok_or(Invalid::Missing(CA_CERT_FILE))?;
    let info =
        tls::check_pair(tls_crt, tls_key, "Secret").map_err(|e| Invalid::Pair(e.to_string()))?;

    let not_after = OffsetDateTime::from_unix_timestamp(info.not_after_unix)
        .map_err(|e| Invalid::Pair(format!("tls.crt: invalid notAfter: {e}")))?;
    let window = time::Duration::try_from(renew_before).unwrap_or(time::Duration::MAX);
    if not_after <= now.saturating_add(window) {
        return Err(Invalid::Expiring {
            not_after: rfc3339(not_after),
        });
    }

    let missing: Vec<String> = required
        .iter()
        .filter(|name| !covers(&info.sans, name))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Invalid::Sans {
            missing,
            has: info.sans,
        });
    }

    verify_signed(ca_crt, tls_crt, required.first().map(String::as_str), now)?;
    Ok(Valid {
        not_after,
        serial: info.serial,
    })
}

/// Whether `sans` covers `name`: exactly, or through a `*.` wildcard for one label.
fn covers(sans: &[String], name: &str) -> bool {
    sans.iter().any(|san| {
        san.eq_ignore_ascii_case(name)
            || san.strip_prefix("*.").is_some_and(|suffix| {
                name.split_once('.')
                    .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix))
            })
    })
}

/// Verifies the chain in `tls_crt` against the CAs in `ca_crt` as the apiserver would (webpki:
/// signature, validity period, serverAuth usage) for `name`.
fn verify_signed(
    ca_crt: &[u8],
    tls_crt: &[u8],
    name: Option<&str>,
    now: OffsetDateTime,
) -> Result<(), Invalid> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_crt) {
        let der = der.map_err(|e| Invalid::Ca(e.to_string()))?;
        roots.add(der).map_err(|e| Invalid::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(Invalid::Ca("no certificate in it".into()));
    }
    let chain = CertificateDer::pem_slice_iter(tls_crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Invalid::Pair(format!("tls.crt: {e}")))?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(Invalid::Missing(TLS_CERT_FILE));
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Invalid::Ca(e.to_string()))?;
    let server_name = ServerName::try_from(name.unwrap_or("localhost").to_owned())
        .map_err(|e| Invalid::NotSigned(format!("required name is not a server name: {e}")))?;
    let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    verifier
        .verify_server_cert(
            leaf,
            intermediates,
            &server_name,
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        )
        .map(|_| ())
        .map_err(|e| Invalid::NotSigned(e.to_string()))
}

/// A new certificate for `cfg`, signed by the CA in `old` when it has `ca.crt` and `ca.key`, is
/// usable and outlives the new certificate (so the caBundle does not change); else by a new CA.
pub fn regenerate(
    old: Option<&CertMaterial>,
    cfg: &SecretCertConfig,
) -> Result<certs::Generated, CertError> {
    let inherited = old
        .and_then(|m| m.tls_crt.as_deref())
        .and_then(|pem| CertificateDer::from_pem_slice(pem).ok())
        .and_then(|der| tls::CertInfo::from_der(&der).ok())
        .map(|info| info.sans)
        .unwrap_or_default();
    let ca = old.and_then(|m| Some((m.ca_crt.as_deref()?, m.ca_key.as_deref()?)));
    certs::generate_pem(&cfg.cert_options(&inherited), ca)
}

/// RFC 3339, for logs and messages.
pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::certs::CaOutcome;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    const DAY: Duration = Duration::from_secs(86_400);

    pub(in crate::certmanager) fn cfg() -> SecretCertConfig {
        SecretCertConfig {
            namespace: "spark-operator".into(),
            name: "spark-webhook-certs".into(),
            service_name: "spark-webhook".into(),
            service_namespace: "spark-operator".into(),
            extra_dns: Vec::new(),
            extra_ips: vec!["127.0.0.1".parse().unwrap()],
            renew_before: 30 * DAY,
            check_interval: Duration::from_secs(3600),
            validity_days: 365,
            ca_validity_days: 3650,
            ca_renew_before: 60 * DAY,
            ca_overlap: Duration::from_secs(300),
            identity: "test".into(),
        }
    }

    fn material(g: &certs::Generated) -> CertMaterial {
        CertMaterial::from_generated(g)
    }

    fn fresh(c: &SecretCertConfig) -> CertMaterial {
        material(&regenerate(None, c).unwrap())
    }

    fn check_now(m: Option<&CertMaterial>) -> Result<Valid, Invalid> {
        let c = cfg();
        check(
            m,
            &c.required_names(),
            c.renew_before,
            OffsetDateTime::now_utc(),
        )
    }

    #[test]
    fn a_fresh_certificate_is_valid_and_covers_the_service_names() {
        let m = fresh(&cfg());
        let valid = check_now(Some(&m)).unwrap();
        assert!(valid.not_after > OffsetDateTime::now_utc() + time::Duration::days(364));
        assert_eq!(
            cfg().required_names(),
            [
                "spark-webhook",
                "spark-webhook.spark-operator",
                "spark-webhook.spark-operator.svc",
                "spark-webhook.spark-operator.svc.cluster.local",
                "127.0.0.1"
            ]
        );
    }

    #[test]
    fn missing_secret_or_keys_are_invalid() {
        assert_eq!(check_now(None), Err(Invalid::NoSecret));
        let good = fresh(&cfg());
        for (key, strip) in [
            (
                TLS_CERT_FILE,
                (|m: &mut CertMaterial| m.tls_crt = None) as fn(&mut CertMaterial),
            ),
            (TLS_KEY_FILE, |m| m.tls_key = None),
            (CA_CERT_FILE, |m| m.ca_crt = None),
        ] {
            let mut m = good.clone();
            strip(&mut m);
            assert_eq!(check_now(Some(&m)), Err(Invalid::Missing(key)));
        }
    }

    #[test]
    fn unparsable_or_mismatched_pairs_are_invalid() {
        let mut m = fresh(&cfg());
        m.tls_crt = Some(b"-----BEGIN CERTIFICATE-----\ntrunc".to_vec());
        assert!(matches!(check_now(Some(&m)), Err(Invalid::Pair(_))));
        let mut m = fresh(&cfg());
        m.tls_key = fresh(&cfg()).tls_key;
        match check_now(Some(&m)) {
            Err(Invalid::Pair(why)) => assert!(why.contains("does not match"), "{why}"),
            other => panic!("expected a key mismatch, got {other:?}"),
        }
    }

    #[test]
    fn expiring_within_the_window_or_expired_is_invalid() {
        let mut c = cfg();
        c.validity_days = 10;
        let m = fresh(&c);
        assert!(matches!(check_now(Some(&m)), Err(Invalid::Expiring { .. })));
        // Outside a 5-day window it is fine; 11 days later it has expired.
        let now = OffsetDateTime::now_utc();
        let names = c.required_names();
        assert!(check(Some(&m), &names, 5 * DAY, now).is_ok());
        let later = now + time::Duration::days(11);
        assert!(matches!(
            check(Some(&m), &names, Duration::ZERO, later),
            Err(Invalid::Expiring { .. })
        ));
    }

    #[test]
    fn a_certificate_for_other_names_is_invalid() {
        let mut other = cfg();
        other.service_name = "other".into();
        let m = fresh(&other);
        match check_now(Some(&m)) {
            Err(Invalid::Sans { missing, has }) => {
                assert!(missing.contains(&"spark-webhook.spark-operator.svc".to_string()));
                assert!(has.contains(&"other.spark-operator.svc".to_string()));
            }
            other => panic!("expected a SAN mismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_certificate_not_signed_by_ca_crt_is_invalid() {
        let mut m = fresh(&cfg());
        m.ca_crt = fresh(&cfg()).ca_crt;
        assert!(matches!(check_now(Some(&m)), Err(Invalid::NotSigned(_))));
        let mut m = fresh(&cfg());
        m.ca_crt = Some(b"not a certificate".to_vec());
        assert!(matches!(check_now(Some(&m)), Err(Invalid::Ca(_))));
    }

    #[test]
    fn renewal_keeps_a_usable_ca_and_the_old_names() {
        let first = regenerate(None, &cfg()).unwrap();
        assert!(matches!(first.ca, CaOutcome::Created(_)));
        let old = material(&first);
        let mut wider = cfg();
        wider.extra_dns = vec!["webhook.example.com".into()];
        let second = regenerate(Some(&old), &wider).unwrap();
        assert_eq!(second.ca, CaOutcome::Reused);
        assert_eq!(second.ca_cert_pem, first.ca_cert_pem, "caBundle unchanged");
        assert_ne!(second.cert_pem, first.cert_pem);
        let renewed = material(&second);
        check_now(Some(&renewed)).unwrap();
        // Valid for both versions' names: ours and the other's.
        let mut narrow = cfg();
        narrow.extra_dns = vec!["webhook.example.com".into()];
        let third = regenerate(Some(&renewed), &cfg()).unwrap();
        let names = narrow.required_names();
        check(
            Some(&material(&third)),
            &names,
            narrow.renew_before,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    }

    #[test]
    fn renewal_without_ca_key_creates_a_new_ca() {
        let mut old = fresh(&cfg());
        old.ca_key = None;
        let g = regenerate(Some(&old), &cfg()).unwrap();
        assert_eq!(g.ca, CaOutcome::Created(certs::NewCaReason::Missing));
        assert_ne!(Some(g.ca_cert_pem.into_bytes()), old.ca_crt);
    }

    #[test]
    fn wildcards_cover_one_label() {
        let sans = vec!["*.spark-operator.svc".to_string()];
        assert!(covers(&sans, "spark-webhook.spark-operator.svc"));
        assert!(!covers(&sans, "a.b.spark-operator.svc"));
        assert!(!covers(&sans, "spark-operator.svc"));
    }

    #[test]
    fn debug_output_never_holds_key_material() {
        let m = fresh(&cfg());
        let g = regenerate(None, &cfg()).unwrap();
        for text in [format!("{m:?}"), format!("{g:?}")] {
            assert!(!text.contains("PRIVATE KEY"), "{text}");
            assert!(!text.contains("BEGIN"), "{text}");
        }
    }

    #[test]
    fn a_renewal_window_longer_than_the_validity_is_refused() {
        let mut c = cfg();
        c.validity_days = 20;
        assert!(matches!(c.validate(), Err(CertManagerError::Config(_))));
        assert!(cfg().validate().is_ok());
    }

    #[test]
    fn secrets_map_to_material_by_key() {
        let g = regenerate(None, &cfg()).unwrap();
        let secret = Secret {
            data: Some(BTreeMap::from([
                (
                    TLS_CERT_FILE.to_string(),
                    ByteString(g.cert_pem.clone().into()),
                ),
                (
                    TLS_KEY_FILE.to_string(),
                    ByteString(g.key_pem.clone().into()),
                ),
                (
                    CA_CERT_FILE.to_string(),
                    ByteString(g.ca_cert_pem.clone().into()),
                ),
                (CA_KEY_FILE.to_string(), ByteString(Vec::new())),
            ])),
            ..Secret::default()
        };
        let m = CertMaterial::from_secret(&secret);
        assert_eq!(m.ca_key, None, "an empty key counts as absent");
        check_now(Some(&m)).unwrap();
    }
}
