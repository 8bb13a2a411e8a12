//! Issuing certificates in memory: a long-lived CA and the short-lived serving certificate it
//! signs, as PEM. Both stores build on it, the `certs` command's files and the self-managed
//! Secret; nothing here touches the disk or the API.
//!
//! The API server only trusts the webhook through the `caBundle` of the webhook configuration,
//! so a usable CA is reused and only the serving key/certificate is replaced (rotation without
//! touching `caBundle`). Key names follow the Kubernetes TLS Secret (`ca.crt`, `ca.key`,
//! `tls.crt`, `tls.key`), for the files and the Secret alike.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData as _, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use time::{Duration, OffsetDateTime};

use super::x509::rfc3339;

/// File name of the CA certificate (the `caBundle` source).
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key (needed to re-sign the serving certificate on rotation).
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the serving certificate.
pub const TLS_CERT_FILE: &str = "tls.crt";
/// File name of the serving private key.
pub const TLS_KEY_FILE: &str = "tls.key";

/// Common name of the generated CA.
pub const CA_COMMON_NAME: &str = "spark-webhook CA";

/// Certificates are backdated by this much to tolerate clock skew between nodes.
const BACKDATE: Duration = Duration::hours(1);

/// What to generate and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertOptions {
    /// Output directory (created if missing).
    pub dir: PathBuf,
    /// Name of the webhook `Service`.
    pub service_name: String,
    /// Namespace of the webhook `Service`.
    pub namespace: String,
    /// Additional DNS SANs.
    pub extra_dns: Vec<String>,
    /// Additional IP SANs; 127.0.0.1 is always included.
    pub extra_ips: Vec<IpAddr>,
    /// Validity of the serving certificate, in days.
    pub validity_days: u32,
    /// Validity of a newly created CA, in days.
    pub ca_validity_days: u32,
    /// Replace the CA even if a usable one exists (the `caBundle` must then be updated).
    pub new_ca: bool,
}

impl CertOptions {
    /// Options with the defaults (`spark-webhook` in `spark-operator`, 365 d leaf, 3650 d CA).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            service_name: "spark-webhook".to_owned(),
            namespace: "spark-operator".to_owned(),
            extra_dns: Vec::new(),
            extra_ips: Vec::new(),
            validity_days: 365,
            ca_validity_days: 3650,
            new_ca: false,
        }
    }

    /// DNS names then IP addresses the serving certificate is valid for, without duplicates.
    pub fn subject_alt_names(&self) -> Vec<String> {
        let svc = &self.service_name;
        let ns = &self.namespace;
        let mut names: Vec<String> = vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
            "localhost".to_owned(),
        ];
        names.extend(self.extra_dns.iter().cloned());
        let ips =
            std::iter::once(IpAddr::V4(Ipv4Addr::LOCALHOST)).chain(self.extra_ips.iter().copied());
        names.extend(ips.map(|ip| ip.to_string()));
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }

    /// Common name of the serving certificate: `<svc>.<ns>.svc`.
    pub fn common_name(&self) -> String {
        format!("{}.{}.svc", self.service_name, self.namespace)
    }

    pub(super) fn validate(&self) -> Result<(), CertError> {
        let bad = |msg: String| Err(CertError::InvalidOptions(msg));
        if self.service_name.is_empty() || self.namespace.is_empty() {
            return bad("service name and namespace must not be empty".into());
        }
        if self.validity_days == 0 || self.ca_validity_days == 0 {
            return bad("validity_days and ca_validity_days must be at least 1".into());
        }
        if self.validity_days > self.ca_validity_days {
            return bad(format!(
                "the serving certificate ({} days) must not outlive its CA ({} days)",
                self.validity_days, self.ca_validity_days
            ));
        }
        Ok(())
    }
}

/// Why a new CA was created instead of reusing the one on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewCaReason {
    /// `new_ca` was requested.
    Requested,
    /// `ca.crt` or `ca.key` does not exist.
    Missing,
    /// The files exist but could not be used (unreadable, unparsable, not a CA, key mismatch).
    Unusable(String),
    /// The CA is expired or would expire before the new serving certificate.
    Expiring {
        /// Expiry of the CA found on disk.
        not_after: OffsetDateTime,
    },
}

impl fmt::Display for NewCaReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("a new CA was requested"),
            Self::Missing => write!(f, "{CA_CERT_FILE} or {CA_KEY_FILE} is missing"),
            Self::Unusable(why) => write!(f, "the existing CA is unusable: {why}"),
            Self::Expiring { not_after } => write!(
                f,
                "the existing CA expires at {} (expired, or before the new serving certificate)",
                rfc3339(*not_after)
            ),
        }
    }
}

/// Whether the CA on disk was reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaOutcome {
    /// The existing CA signed the new serving certificate; `caBundle` is unchanged.
    Reused,
    /// A new CA was written; the webhook configuration's `caBundle` must be updated.
    Created(NewCaReason),
}

/// Errors issuing ([`generate_pem`]) or writing (the `certs` command) certificates; each names
/// the step and, where relevant, the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The options are inconsistent.
    #[error("invalid certificate options: {0}")]
    InvalidOptions(String),
    /// A SAN is not a valid DNS name.
    #[error("invalid subject alternative name {name:?}: {source}")]
    InvalidSan {
        /// The offending name.
        name: String,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// Key generation or signing failed.
    #[error("certificate generation failed while trying to {step}: {source}")]
    Generate {
        /// What was being done.
        step: &'static str,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// The output directory could not be created.
    #[error("cannot create certificate directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file could not be written atomically.
    #[error("cannot write {}: {step}: {source}", path.display())]
    Write {
        /// The destination file.
        path: PathBuf,
        /// Which part of the atomic write failed.
        step: &'static str,
        /// The I/O error.
        source: io::Error,
    },
}

/// A CA and serving certificate built in memory (PEM), for callers that store them elsewhere
/// than in files (the self-managed Secret).
///
/// `Debug` prints no key material.
#[derive(Clone)]
pub struct Generated {
    /// The CA certificate (the `caBundle`).
    pub ca_cert_pem: String,
    /// The CA private key.
    pub ca_key_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving private key.
    pub key_pem: String,
    /// Whether the given CA was reused or a new one created (and why).
    pub ca: CaOutcome,
    /// Expiry of the CA in use.
    pub ca_not_after: OffsetDateTime,
    /// Expiry of the serving certificate.
    pub not_after: OffsetDateTime,
    /// Subject alternative names of the serving certificate.
    pub sans: Vec<String>,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generated")
            .field("ca", &self.ca)
            .field("ca_not_after", &self.ca_not_after)
            .field("not_after", &self.not_after)
            .field("sans", &self.sans)
            .finish_non_exhaustive()
    }
}

/// Generates a fresh serving key and certificate in memory, signed by the CA given as
/// `(ca.crt PEM, ca.key PEM)` when it is usable and not expired, else by a new CA. A leaf signed
/// by a CA expiring sooner than `opts.validity_days` is cut short to the CA's expiry: the CA is
/// never replaced here just because it is ageing, since a CA switched together with the leaf is
/// refused by an apiserver still trusting the old one; the staged replacement of
/// the self-managed Secret replaces it first. `opts.dir` and `opts.new_ca` are not used: pass
/// `None` for a new CA.
pub fn generate_pem(
    opts: &CertOptions,
    existing_ca: Option<(&[u8], &[u8])>,
) -> Result<Generated, CertError> {
    opts.validate()?;
    let existing = match existing_ca {
        None => Err(NewCaReason::Missing),
        Some((cert, key)) => Ok((cert.to_vec(), key.to_vec())),
    };
    generate_with_ca(opts, existing, LeafLimit::CappedByCa)
}

/// What a reused CA must satisfy for the leaf it signs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum LeafLimit {
    /// The CA must outlive the full-length leaf, else a new CA is made (`spark-webhook certs`).
    CaOutlivesLeaf,
    /// Any unexpired CA signs; the leaf ends no later than the CA (the self-managed Secret).
    CappedByCa,
}

/// A new CA alone (PEM), for a staged CA replacement: it is published in the caBundle before it
/// signs anything.
pub fn new_ca_pem(ca_validity_days: u32) -> Result<(String, String), CertError> {
    if ca_validity_days == 0 {
        return Err(CertError::InvalidOptions(
            "ca_validity_days must be at least 1".into(),
        ));
    }
    let mut opts = CertOptions::new("");
    opts.ca_validity_days = ca_validity_days;
    let ca = new_ca(&opts, OffsetDateTime::now_utc())?;
    Ok((ca.pem, ca.issuer.key().serialize_pem()))
}

/// Expiry of a CA given as `(ca.crt PEM, ca.key PEM)` if it can sign at `now` (parses, is a CA,
/// the key matches, not expired); else why not.
pub fn ca_usable(
    cert_pem: &[u8],
    key_pem: &[u8],
    now: OffsetDateTime,
) -> Result<OffsetDateTime, NewCaReason> {
    parse_ca(cert_pem, key_pem, now, now).map(|ca| ca.not_after)
}

pub(super) fn generate_with_ca(
    opts: &CertOptions,
    existing: Result<(Vec<u8>, Vec<u8>), NewCaReason>,
    limit: LeafLimit,
) -> Result<Generated, CertError> {
    let now = OffsetDateTime::now_utc();
    let mut leaf_not_after = now + Duration::days(i64::from(opts.validity_days));
    let must_outlive = match limit {
        LeafLimit::CaOutlivesLeaf => leaf_not_after,
        LeafLimit::CappedByCa => now,
    };
    let existing = existing.and_then(|(cert, key)| parse_ca(&cert, &key, now, must_outlive));
    let (ca, outcome) = match existing {
        Ok(ca) => (ca, CaOutcome::Reused),
        Err(reason) => (new_ca(opts, now)?, CaOutcome::Created(reason)),
    };
    leaf_not_after = leaf_not_after.min(ca.not_after);

    // Serving certificate, fully built in memory before anything is written.
    let sans = opts.subject_alt_names();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans
        .iter()
        .map(|name| san(name))
        .collect::<Result<_, _>>()?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, opts.common_name());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = leaf_not_after;
    let leaf_key = KeyPair::generate().map_err(|source| CertError::Generate {
        step: "generate the serving key",
        source,
    })?;
    let leaf = params
        .signed_by(&leaf_key, &ca.issuer)
        .map_err(|source| CertError::Generate {
            step: "sign the serving certificate with the CA",
            source,
        })?;
    Ok(Generated {
        ca_key_pem: ca.issuer.key().serialize_pem(),
        ca_cert_pem: ca.pem,
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        ca: outcome,
        ca_not_after: ca.not_after,
        not_after: leaf_not_after,
        sans,
    })
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    not_after: OffsetDateTime,
}

fn new_ca(opts: &CertOptions, now: OffsetDateTime) -> Result<Ca, CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.not_before = now - BACKDATE;
    let not_after = now + Duration::days(i64::from(opts.ca_validity_days));
    params.not_after = not_after;
    let key = KeyPair::generate().map_err(|source| CertError::Generate {
        step: "generate the CA key",
        source,
    })?;
    let cert = params
        .self_signed(&key)
        .map_err(|source| CertError::Generate {
            step: "self-sign the CA certificate",
            source,
        })?;
    Ok(Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
        not_after,
    })
}

/// Parses a CA (the first certificate of `cert_pem`) and its key; the error says why it cannot
/// be reused.
fn parse_ca(
    cert_pem: &[u8],
    key_pem: &[u8],
    now: OffsetDateTime,
    must_outlive: OffsetDateTime,
) -> Result<Ca, NewCaReason> {
    let unusable = |file: &str, what: String| NewCaReason::Unusable(format!("{file}: {what}"));
    let cert_pem = std::str::from_utf8(cert_pem)
        .map_err(|_| unusable(CA_CERT_FILE, "not UTF-8 PEM".into()))?;
    let key_pem =
        std::str::from_utf8(key_pem).map_err(|_| unusable(CA_KEY_FILE, "not UTF-8 PEM".into()))?;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| unusable(CA_CERT_FILE, format!("no PEM certificate: {e}")))?;
    let key = KeyPair::from_pem(key_pem)
        .map_err(|e| unusable(CA_KEY_FILE, format!("cannot parse private key: {e}")))?;

    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| unusable(CA_CERT_FILE, format!("cannot parse certificate: {e}")))?;
    if !x509.is_ca() {
        return Err(unusable(CA_CERT_FILE, "not a CA certificate".into()));
    }
    if x509.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(unusable(
            CA_KEY_FILE,
            format!("does not match {CA_CERT_FILE}"),
        ));
    }
    let not_after = OffsetDateTime::from_unix_timestamp(x509.validity().not_after.timestamp())
        .map_err(|e| unusable(CA_CERT_FILE, format!("invalid notAfter: {e}")))?;
    if not_after <= now || not_after < must_outlive {
        return Err(NewCaReason::Expiring { not_after });
    }
    let issuer = Issuer::from_ca_cert_der(&der, key)
        .map_err(|e| unusable(CA_CERT_FILE, format!("cannot use as issuer: {e}")))?;
    Ok(Ca {
        issuer,
        pem: cert_pem.to_owned(),
        not_after,
    })
}

fn san(name: &str) -> Result<SanType, CertError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    name.to_owned()
        .try_into()
        .map(SanType::DnsName)
        .map_err(|source| CertError::InvalidSan {
            name: name.to_owned(),
            source,
        })
}
