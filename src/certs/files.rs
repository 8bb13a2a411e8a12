//! The `certs` command's certificates as files in a directory: the CA is kept across runs and
//! the serving pair is reissued ([`super::issue`]) on every run.
//!
//! Every file is replaced atomically (temp file in the same directory, fsync, rename), so a
//! server polling the directory never reads half a file. `tls.key` is written before `tls.crt`:
//! between the two renames a reader sees a new key with the old certificate, which the serving
//! certificate's reloader rejects as a mismatched pair and simply retries.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use time::OffsetDateTime;

use super::issue::{
    CA_CERT_FILE, CA_KEY_FILE, CaOutcome, CertError, CertOptions, LeafLimit, NewCaReason,
    TLS_CERT_FILE, TLS_KEY_FILE, generate_with_ca,
};
use super::x509::rfc3339;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::issue::CA_COMMON_NAME;
    use crate::certs::x509::CertInfo;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    fn opts(dir: &Path) -> CertOptions {
        CertOptions::new(dir)
    }

    fn read_der(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).expect("PEM certificate")
    }

    fn sans_of(der: &[u8]) -> Vec<String> {
        CertInfo::from_der(der).expect("parse").sans
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
