//! What makes the Secret's certificate worth keeping ([`check`]), and its replacement
//! ([`regenerate`]): pure functions of the Secret's content, the settings and the time.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;

use super::issue::{self, CA_CERT_FILE, CertError, Generated, TLS_CERT_FILE, TLS_KEY_FILE};
use super::secret::{CertMaterial, SecretCertConfig};
use super::tls;
use super::x509::{CertInfo, rfc3339};

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
) -> Result<Generated, CertError> {
    let inherited = old
        .and_then(|m| m.tls_crt.as_deref())
        .and_then(|pem| CertificateDer::from_pem_slice(pem).ok())
        .and_then(|der| CertInfo::from_der(&der).ok())
        .map(|info| info.sans)
        .unwrap_or_default();
    let ca = old.and_then(|m| Some((m.ca_crt.as_deref()?, m.ca_key.as_deref()?)));
    issue::generate_pem(&cfg.cert_options(&inherited), ca)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::certs::issue::{CA_KEY_FILE, CaOutcome, NewCaReason};
    use crate::certs::secret::CertManagerError;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use std::collections::BTreeMap;

    const DAY: Duration = Duration::from_secs(86_400);

    pub(in crate::certs) fn cfg() -> SecretCertConfig {
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

    fn material(g: &Generated) -> CertMaterial {
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
        assert_eq!(g.ca, CaOutcome::Created(NewCaReason::Missing));
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
