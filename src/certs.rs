//! Self-managed webhook certificates: a long-lived CA plus a short-lived serving certificate.
//!
//! The API server only trusts the webhook through the `caBundle` of the webhook configuration,
//! so the CA is kept across runs and only the serving key/certificate is replaced on every run
//! (rotation without touching `caBundle`). Files use the Kubernetes TLS Secret key names
//! (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`) so the directory can be turned into a Secret as is.
//!
//! Every file is replaced atomically (temp file in the same directory, fsync, rename), so a
//! server polling the directory never reads half a file. `tls.key` is written before `tls.crt`:
//! between the two renames a reader sees a new key with the old certificate, which
//! [`crate::tls::ReloadingCertResolver`] rejects as a mismatched pair and simply retries.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData as _, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use time::{Duration, OffsetDateTime};

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

    fn validate(&self) -> Result<(), CertError> {
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

/// What [`generate`] did.
#[derive(Debug, Clone)]
pub struct CertReport {
    /// Path of `ca.crt`.
    pub ca_cert_path: PathBuf,
    /// Path of `ca.key`.
    pub ca_key_path: PathBuf,
    /// Path of `tls.crt`.
    pub cert_path: PathBuf,
    /// Path of `tls.key`.
    pub key_path: PathBuf,
    /// Whether the CA was reused or created (and why).
    pub ca: CaOutcome,
    /// Expiry of the CA in use.
    pub ca_not_after: OffsetDateTime,
    /// Expiry of the new serving certificate.
    pub not_after: OffsetDateTime,
    /// Subject alternative names of the new serving certificate.
    pub sans: Vec<String>,
    ca_pem: String,
}

impl CertReport {
    /// Base64 of the `ca.crt` PEM, as expected by a webhook configuration's `caBundle`.
    pub fn ca_bundle_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes())
    }

    /// The CA certificate PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

impl fmt::Display for CertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ca {
            CaOutcome::Reused => writeln!(
                f,
                "CA: reused {} (expires {}); caBundle unchanged",
                self.ca_cert_path.display(),
                rfc3339(self.ca_not_after)
            )?,
            CaOutcome::Created(reason) => writeln!(
                f,
                "CA: created {} (expires {}) because {reason}; update the webhook caBundle",
                self.ca_cert_path.display(),
                rfc3339(self.ca_not_after)
            )?,
        }
        writeln!(
            f,
            "serving certificate: {} / {} (expires {})",
            self.cert_path.display(),
            self.key_path.display(),
            rfc3339(self.not_after)
        )?;
        write!(f, "SANs: {}", self.sans.join(", "))
    }
}

/// Errors from [`generate`]; each names the step and, where relevant, the file.
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

/// Generates (or rotates) the webhook certificates in `opts.dir`.
///
/// Always creates a fresh serving key and certificate. The CA in `opts.dir` is reused unless
/// `opts.new_ca` is set or it is missing, unusable, or expires before the new serving
/// certificate would; the report says which.
pub fn generate(opts: &CertOptions) -> Result<CertReport, CertError> {
    opts.validate()?;
    let dir = opts.dir.as_path();
    fs::create_dir_all(dir).map_err(|source| CertError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    let cert_path = dir.join(TLS_CERT_FILE);
    let key_path = dir.join(TLS_KEY_FILE);

    let existing = if opts.new_ca {
        Err(NewCaReason::Requested)
    } else {
        read_ca_files(&ca_cert_path, &ca_key_path)
    };
    let generated = generate_with_ca(opts, existing, LeafLimit::CaOutlivesLeaf)?;

    if let CaOutcome::Created(_) = generated.ca {
        write_atomic(&ca_key_path, generated.ca_key_pem.as_bytes(), 0o600)?;
        write_atomic(&ca_cert_path, generated.ca_cert_pem.as_bytes(), 0o644)?;
    }
    // Key first: a reader seeing the new key with the old cert detects the mismatch and retries.
    write_atomic(&key_path, generated.key_pem.as_bytes(), 0o600)?;
    write_atomic(&cert_path, generated.cert_pem.as_bytes(), 0o644)?;

    Ok(CertReport {
        ca_cert_path,
        ca_key_path,
        cert_path,
        key_path,
        ca: generated.ca,
        ca_not_after: generated.ca_not_after,
        not_after: generated.not_after,
        sans: generated.sans,
        ca_pem: generated.ca_cert_pem,
    })
}

/// A CA and serving certificate built in memory (PEM), for callers that store them elsewhere
/// than in files (the self-managed Secret, [`crate::certmanager`]).
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
/// [`crate::certmanager`] replaces it first. `opts.dir` and `opts.new_ca` are not used: pass
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
enum LeafLimit {
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

/// Expiry of the first certificate in `pem`, if it parses.
pub fn not_after(pem: &[u8]) -> Option<OffsetDateTime> {
    let der = CertificateDer::from_pem_slice(pem).ok()?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der).ok()?;
    OffsetDateTime::from_unix_timestamp(x509.validity().not_after.timestamp()).ok()
}

fn generate_with_ca(
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

/// Reads `ca.crt` and `ca.key`; the error says why they cannot be used.
fn read_ca_files(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), NewCaReason> {
    let read = |path: &Path| match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NewCaReason::Missing),
        Err(e) => Err(NewCaReason::Unusable(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    };
    Ok((read(cert_path)?, read(key_path)?))
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

/// Replaces `path` atomically: temp file in the same directory, fsync, rename, fsync the dir.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let err = |step: &'static str| {
        move |source: io::Error| CertError::Write {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let tmp = dir.join(format!(".{file_name}.tmp.{}.{nanos}", std::process::id()));

    let result = (|| {
        let mut file = open_new(&tmp, mode).map_err(err("create temporary file"))?;
        set_mode(&file, mode).map_err(err("set permissions on temporary file"))?;
        file.write_all(contents)
            .map_err(err("write temporary file"))?;
        file.sync_all().map_err(err("fsync temporary file"))?;
        drop(file);
        fs::rename(&tmp, path).map_err(err("rename temporary file into place"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename durable; failure here does not affect readers, so it is not fatal.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn open_new(path: &Path, mode: u32) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _mode: u32) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Sets the exact mode regardless of the umask.
#[cfg(unix)]
fn set_mode(file: &fs::File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &fs::File, _mode: u32) -> io::Result<()> {
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{ServerName, UnixTime};

    fn opts(dir: &Path) -> CertOptions {
        CertOptions::new(dir)
    }

    fn read_der(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).expect("PEM certificate")
    }

    fn sans_of(der: &[u8]) -> Vec<String> {
        crate::tls::CertInfo::from_der(der).expect("parse").sans
    }

    /// Verifies `tls.crt` as a server certificate for `name` against `ca.crt` (webpki, ring).
    fn verify(ca: &Path, leaf: &Path, name: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(read_der(ca)).expect("add root");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .expect("verifier");
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        verifier
            .verify_server_cert(&read_der(leaf), &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn serving_cert_has_all_service_sans_and_common_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.extra_dns = vec!["webhook.example.com".into()];
        o.extra_ips = vec!["10.1.2.3".parse().unwrap()];
        let report = generate(&o).unwrap();

        let sans = sans_of(&read_der(&report.cert_path));
        for want in [
            "spark-webhook",
            "spark-webhook.spark-operator",
            "spark-webhook.spark-operator.svc",
            "spark-webhook.spark-operator.svc.cluster.local",
            "localhost",
            "webhook.example.com",
            "127.0.0.1",
            "10.1.2.3",
        ] {
            assert!(
                sans.iter().any(|s| s == want),
                "missing SAN {want} in {sans:?}"
            );
        }
        assert_eq!(
            report.sans.len(),
            sans.len(),
            "report SANs {:?}",
            report.sans
        );

        let der = read_der(&report.cert_path);
        let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = x509.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "spark-webhook.spark-operator.svc");
        assert!(!x509.is_ca());
        let eku = x509.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth);

        let ca = read_der(&report.ca_cert_path);
        let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
        assert!(ca.is_ca());
        let cn = ca.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), CA_COMMON_NAME);
        let ku = ca.key_usage().unwrap().unwrap();
        assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
    }

    #[test]
    fn leaf_verifies_against_ca_for_dns_and_ip() {
        let dir = tempfile::tempdir().unwrap();
        let r = generate(&opts(dir.path())).unwrap();
        for name in ["spark-webhook.spark-operator.svc", "localhost", "127.0.0.1"] {
            verify(&r.ca_cert_path, &r.cert_path, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(
            verify(&r.ca_cert_path, &r.cert_path, "other.example.com").is_err(),
            "a name not in the SANs must not verify"
        );
        // A CA from another directory must not vouch for this leaf.
        let other = tempfile::tempdir().unwrap();
        let r2 = generate(&opts(other.path())).unwrap();
        assert!(verify(&r2.ca_cert_path, &r.cert_path, "localhost").is_err());
    }

    #[test]
    fn rotation_keeps_ca_and_replaces_serving_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(&opts(dir.path())).unwrap();
        assert!(matches!(first.ca, CaOutcome::Created(NewCaReason::Missing)));
        let ca_before = fs::read(&first.ca_cert_path).unwrap();
        let ca_key_before = fs::read(&first.ca_key_path).unwrap();
        let crt_before = fs::read(&first.cert_path).unwrap();
        let key_before = fs::read(&first.key_path).unwrap();

        let second = generate(&opts(dir.path())).unwrap();
        assert_eq!(second.ca, CaOutcome::Reused);
        assert_eq!(fs::read(&second.ca_cert_path).unwrap(), ca_before);
        assert_eq!(fs::read(&second.ca_key_path).unwrap(), ca_key_before);
        assert_eq!(first.ca_bundle_base64(), second.ca_bundle_base64());
        assert_eq!(second.ca_pem().as_bytes(), ca_before.as_slice());
        assert_ne!(fs::read(&second.cert_path).unwrap(), crt_before);
        assert_ne!(fs::read(&second.key_path).unwrap(), key_before);
        // The rotated leaf is still trusted by the original CA bundle.
        verify(
            &first.ca_cert_path,
            &second.cert_path,
            "spark-webhook.spark-operator.svc",
        )
        .unwrap();
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 4, "unexpected files: {names:?}");
    }

    #[test]
    fn new_ca_option_replaces_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(&opts(dir.path())).unwrap();
        let mut o = opts(dir.path());
        o.new_ca = true;
        let second = generate(&o).unwrap();
        assert_eq!(second.ca, CaOutcome::Created(NewCaReason::Requested));
        assert_ne!(first.ca_bundle_base64(), second.ca_bundle_base64());
        assert!(verify(&first.ca_cert_path, &second.cert_path, "localhost").is_ok());
        // first.ca_cert_path == second.ca_cert_path: the file now holds the new CA.
        let old_ca = tempfile::NamedTempFile::new().unwrap();
        fs::write(old_ca.path(), first.ca_pem()).unwrap();
        assert!(verify(old_ca.path(), &second.cert_path, "localhost").is_err());
    }

    #[test]
    fn unusable_or_expiring_ca_is_replaced_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.validity_days = 1;
        o.ca_validity_days = 1;
        let first = generate(&o).unwrap();

        // The CA would expire before a 2-day serving certificate.
        o.validity_days = 2;
        o.ca_validity_days = 10;
        let second = generate(&o).unwrap();
        assert!(
            matches!(second.ca, CaOutcome::Created(NewCaReason::Expiring { .. })),
            "{:?}",
            second.ca
        );
        assert_ne!(first.ca_bundle_base64(), second.ca_bundle_base64());

        fs::write(dir.path().join(CA_KEY_FILE), b"garbage").unwrap();
        let third = generate(&o).unwrap();
        match &third.ca {
            CaOutcome::Created(NewCaReason::Unusable(why)) => {
                assert!(why.contains("ca.key"), "{why}")
            }
            other => panic!("expected unusable CA, got {other:?}"),
        }
        verify(&third.ca_cert_path, &third.cert_path, "localhost").unwrap();
    }

    #[test]
    fn options_where_leaf_outlives_ca_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.validity_days = 30;
        o.ca_validity_days = 10;
        let err = generate(&o).unwrap_err();
        assert!(err.to_string().contains("outlive"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_certs_world_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let r = generate(&opts(dir.path())).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&r.key_path), 0o600);
        assert_eq!(mode(&r.ca_key_path), 0o600);
        assert_eq!(mode(&r.cert_path), 0o644);
        assert_eq!(mode(&r.ca_cert_path), 0o644);
    }

    #[test]
    fn ca_bundle_is_base64_of_ca_crt() {
        let dir = tempfile::tempdir().unwrap();
        let r = generate(&opts(dir.path())).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(r.ca_bundle_base64())
            .unwrap();
        assert_eq!(decoded, fs::read(&r.ca_cert_path).unwrap());
        let text = r.to_string();
        assert!(
            text.contains("created") && text.contains("caBundle"),
            "{text}"
        );
    }
}
