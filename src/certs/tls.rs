//! A rustls server-certificate resolver that picks up rotated certificates without a restart.
//!
//! The current [`CertifiedKey`] sits behind an [`ArcSwap`]: handshakes only do an atomic load,
//! so they never block on, and never fail because of, a reload. Reloads poll the files instead
//! of using inotify because polling sees every way a certificate gets replaced (a Kubernetes
//! Secret volume's `..data` symlink swap, an atomic rename, an in-place rewrite, cert-manager)
//! and re-reading two small files once a second is cheap. A new pair is only installed when
//! both files parse and the key matches the certificate, so a half-written or mid-rotation
//! pair is skipped and retried on the next poll while the previous certificate keeps serving.
//!
//! The same resolver also serves certificates handed to it in memory
//! ([`ReloadingCertResolver::in_memory`], [`ReloadingCertResolver::install_pem`]): the
//! self-managed mode watches its Secret through the API and swaps each
//! new pair in at once, without the minute a kubelet takes to update a mounted volume. Until a
//! first pair arrives it has none, and handshakes fail (readiness stays false meanwhile).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use super::x509::{self, CertInfo};

/// Errors loading a certificate/key pair; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The certificate file holds no usable PEM `CERTIFICATE` block.
    #[error("invalid certificate PEM in {}: {source}", path.display())]
    CertPem {
        /// The certificate file.
        path: PathBuf,
        /// The PEM error (`no items found` when there is no certificate at all).
        source: rustls::pki_types::pem::Error,
    },
    /// The key file holds no usable PEM private key.
    #[error("invalid private key PEM in {}: {source}", path.display())]
    KeyPem {
        /// The key file.
        path: PathBuf,
        /// The PEM error (`no items found` when there is no private key at all).
        source: rustls::pki_types::pem::Error,
    },
    /// The private key is not supported by the ring provider.
    #[error("unsupported private key in {}: {source}", path.display())]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The leaf certificate is not valid X.509.
    #[error("cannot parse the leaf certificate in {}: {reason}", path.display())]
    CertParse {
        /// The certificate file.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
    /// The private key does not belong to the leaf certificate.
    #[error(
        "private key {} does not match certificate {} (a rotation may be in progress)",
        key_path.display(),
        cert_path.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
    },
    /// Whether key and certificate match could not be determined.
    #[error("cannot check that {} matches {}: {source}", key_path.display(), cert_path.display())]
    KeyCheck {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The rustls configuration could not be built.
    #[error("cannot build the TLS server configuration: {0}")]
    Config(rustls::Error),
}

/// The installed pair plus the raw file bytes, to skip re-parsing unchanged files.
struct Loaded {
    key: Arc<CertifiedKey>,
    info: CertInfo,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// A [`ResolvesServerCert`] serving the pair at `cert_path`/`key_path` (or handed over in
/// memory), reloadable at runtime.
pub struct ReloadingCertResolver {
    /// The files, or for an in-memory resolver, names used in logs and errors only.
    cert_path: PathBuf,
    key_path: PathBuf,
    /// False for an in-memory resolver: [`Self::reload`] then never reads files.
    from_files: bool,
    provider: Arc<CryptoProvider>,
    current: ArcSwapOption<Loaded>,
    /// Only touched by reloads, never by handshakes.
    last_error: Mutex<Option<String>>,
    /// Expiry of the CA that signed the served certificate (unix seconds; 0: unknown), for the
    /// metric beside the certificate's own expiry.
    ca_not_after: AtomicI64,
}

impl fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("ReloadingCertResolver")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("info", &current.as_ref().map(|c| &c.info))
            .finish_non_exhaustive()
    }
}

/// The crypto provider used everywhere: ring only.
fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ReloadingCertResolver {
    /// Loads the pair; fails if either file is unreadable or the key does not match.
    ///
    /// `cert_path` may hold a full chain (leaf first).
    pub fn load(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Result<Self, TlsError> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let provider = ring_provider();
        let loaded = read_pair(&cert_path, &key_path, &provider)?;
        Ok(Self {
            cert_path,
            key_path,
            from_files: true,
            provider,
            current: ArcSwapOption::from_pointee(loaded),
            last_error: Mutex::new(None),
            ca_not_after: AtomicI64::new(0),
        })
        .inspect(Self::read_ca_file)
    }

    /// A resolver with no certificate yet, fed by [`Self::install_pem`]; `source` names where the
    /// pairs come from in logs and errors (e.g. `secret ns/name`).
    pub fn in_memory(source: &str) -> Self {
        Self {
            cert_path: PathBuf::from(format!("{source} tls.crt")),
            key_path: PathBuf::from(format!("{source} tls.key")),
            from_files: false,
            provider: ring_provider(),
            current: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
            ca_not_after: AtomicI64::new(0),
        }
    }

    /// Installs the pair if it differs from the one served and is valid (parses, key matches).
    ///
    /// Returns `Ok(true)` when a new pair was installed, `Ok(false)` when it is the one already
    /// served. On error the current pair keeps serving.
    pub fn install_pem(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, TlsError> {
        if let Some(current) = self.current.load().as_ref()
            && current.cert_pem == cert_pem
            && current.key_pem == key_pem
        {
            return Ok(false);
        }
        let loaded = build(
            &self.cert_path,
            &self.key_path,
            cert_pem.to_vec(),
            key_pem.to_vec(),
            &self.provider,
        )?;
        self.store(loaded);
        Ok(true)
    }

    /// Re-reads both files and installs the pair if it changed and is valid.
    ///
    /// Returns `Ok(true)` when a new pair was installed, `Ok(false)` when the files are
    /// unchanged. On error the current pair keeps serving. Paths are opened anew each time,
    /// so a swapped `..data` symlink is followed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        if !self.from_files {
            return Ok(false);
        }
        let current = self.current.load_full();
        let mut attempt = 0;
        let loaded = loop {
            attempt += 1;
            let cert_pem = read(&self.cert_path)?;
            let key_pem = read(&self.key_path)?;
            if current
                .as_ref()
                .is_some_and(|c| cert_pem == c.cert_pem && key_pem == c.key_pem)
            {
                return Ok(false);
            }
            match build(
                &self.cert_path,
                &self.key_path,
                cert_pem,
                key_pem,
                &self.provider,
            ) {
                Ok(loaded) => break loaded,
                // Files replaced between our two reads: read once more before giving up.
                Err(TlsError::KeyMismatch { .. }) if attempt < 2 => continue,
                Err(e) => return Err(e),
            }
        };
        self.store(loaded);
        self.read_ca_file();
        Ok(true)
    }

    /// Records the expiry of `ca.crt` beside the files (best effort: absent when a mounted
    /// Secret holds no CA).
    fn read_ca_file(&self) {
        let Some(path) = self.cert_path.parent().map(|d| d.join("ca.crt")) else {
            return;
        };
        if let Some(t) = std::fs::read(path)
            .ok()
            .and_then(|pem| x509::not_after(&pem))
        {
            self.set_ca_not_after(t.unix_timestamp());
        }
    }

    /// Records the expiry (unix seconds) of the CA that signed the served certificate.
    pub fn set_ca_not_after(&self, unix: i64) {
        self.ca_not_after.store(unix, Ordering::Relaxed);
    }

    /// Expiry of the CA that signed the served certificate, seconds since the Unix epoch (0 while
    /// unknown).
    pub fn ca_not_after_unix(&self) -> i64 {
        self.ca_not_after.load(Ordering::Relaxed)
    }

    /// Serves `loaded` from the next handshake on, and logs what it is.
    fn store(&self, loaded: Loaded) {
        let info = loaded.info.clone();
        self.current.store(Some(Arc::new(loaded)));
        if info.not_after_unix <= time::OffsetDateTime::now_utc().unix_timestamp() {
            tracing::warn!(
                cert = %self.cert_path.display(),
                not_after = %info.not_after_rfc3339(),
                "reloaded serving certificate is already expired"
            );
        }
        tracing::info!(
            cert = %self.cert_path.display(),
            not_after = %info.not_after_rfc3339(),
            sans = ?info.sans,
            serial = %info.serial,
            "reloaded serving certificate"
        );
    }

    /// Polls the files every `interval` until `shutdown` is cancelled.
    ///
    /// Logs an info line per installed certificate. Errors are logged once per distinct error:
    /// at debug the first time (a rotation writes two files, so a single mismatched read is
    /// expected), at warn if the same error is still there on the next poll.
    pub fn spawn_reloader(
        self: Arc<Self>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; the pair was just loaded
            let mut seen: Option<String> = None;
            let mut warned = false;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let this = Arc::clone(&self);
                let result = match tokio::task::spawn_blocking(move || this.reload()).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(join) => Err(format!("certificate reload task failed: {join}")),
                };
                match result {
                    Ok(_) => {
                        if seen.take().is_some() && warned {
                            tracing::info!(
                                cert = %self.cert_path.display(),
                                "certificate reload recovered"
                            );
                        }
                        warned = false;
                        self.set_last_error(None);
                    }
                    Err(msg) => {
                        if seen.as_deref() != Some(msg.as_str()) {
                            tracing::debug!(error = %msg, "certificate reload failed; keeping the current certificate");
                            seen = Some(msg.clone());
                            warned = false;
                        } else if !warned {
                            tracing::warn!(error = %msg, "certificate reload failed; keeping the current certificate");
                            warned = true;
                        }
                        self.set_last_error(Some(msg));
                    }
                }
            }
        })
    }

    /// Records (or clears) the error readiness reports while no usable pair is served; the
    /// in-memory mode's loader sets it.
    pub fn set_last_error(&self, error: Option<String>) {
        if let Ok(mut guard) = self.last_error.lock() {
            *guard = error;
        }
    }

    /// The last reload error, if the latest poll failed (for diagnostics/readiness).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    /// Expiry of the certificate being served, seconds since the Unix epoch (0 while an
    /// in-memory resolver has none yet).
    pub fn not_after_unix(&self) -> i64 {
        self.current
            .load()
            .as_ref()
            .map_or(0, |c| c.info.not_after_unix)
    }

    /// Whether a certificate is served and within its validity end.
    pub fn is_valid_now(&self) -> bool {
        self.not_after_unix() > time::OffsetDateTime::now_utc().unix_timestamp()
    }

    /// Whether a certificate is served at all.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Facts about the certificate being served.
    pub fn cert_info(&self) -> Option<CertInfo> {
        self.current.load().as_ref().map(|c| c.info.clone())
    }

    /// The certificate chain and key being served.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().map(|c| Arc::clone(&c.key))
    }

    /// The watched certificate path.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The watched key path.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// TLS 1.2 + 1.3 with ring, no client auth, ALPN `h2` and `http/1.1`, certificates from
/// `resolver`.
pub fn server_config(
    resolver: Arc<ReloadingCertResolver>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::clone(&resolver.provider);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks that `cert_pem` (leaf first) and `key_pem` form a pair this server could serve (both
/// parse, the key is supported and belongs to the leaf); `source` names them in errors.
pub fn check_pair(cert_pem: &[u8], key_pem: &[u8], source: &str) -> Result<CertInfo, TlsError> {
    let loaded = build(
        &PathBuf::from(format!("{source} tls.crt")),
        &PathBuf::from(format!("{source} tls.key")),
        cert_pem.to_vec(),
        key_pem.to_vec(),
        &ring_provider(),
    )?;
    Ok(loaded.info)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    build(
        cert_path,
        key_path,
        read(cert_path)?,
        read(key_path)?,
        provider,
    )
}

fn build(
    cert_path: &Path,
    key_path: &Path,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::CertPem {
            path: cert_path.to_path_buf(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::CertPem {
            path: cert_path.to_path_buf(),
            source: rustls::pki_types::pem::Error::NoItemsFound,
        });
    };
    let info = CertInfo::from_der(leaf).map_err(|reason| TlsError::CertParse {
        path: cert_path.to_path_buf(),
        reason,
    })?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::KeyPem {
        path: key_path.to_path_buf(),
        source,
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsError::UnsupportedKey {
            path: key_path.to_path_buf(),
            source,
        })?;
    let key = CertifiedKey::new(chain, signing_key);
    match key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert_path: cert_path.to_path_buf(),
                key_path: key_path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(TlsError::KeyCheck {
                cert_path: cert_path.to_path_buf(),
                key_path: key_path.to_path_buf(),
                source,
            });
        }
    }
    Ok(Loaded {
        key: Arc::new(key),
        info,
        cert_pem,
        key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::files::generate;
    use crate::certs::issue::CertOptions;

    #[test]
    fn load_reports_sans_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let report = generate(&CertOptions::new(dir.path())).unwrap();
        let r = ReloadingCertResolver::load(&report.cert_path, &report.key_path).unwrap();
        assert_eq!(r.not_after_unix(), report.not_after.unix_timestamp());
        assert!(r.is_valid_now());
        let info = r.cert_info().unwrap();
        assert!(
            info.sans
                .contains(&"spark-webhook.spark-operator.svc".to_owned())
        );
        assert!(info.sans.contains(&"127.0.0.1".to_owned()));
        // The CA's expiry, for the metric beside the certificate's, from ca.crt beside it.
        assert_eq!(r.ca_not_after_unix(), report.ca_not_after.unix_timestamp());
    }

    #[test]
    fn reload_is_a_noop_when_unchanged_and_swaps_on_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let report = generate(&CertOptions::new(dir.path())).unwrap();
        let r = ReloadingCertResolver::load(&report.cert_path, &report.key_path).unwrap();
        let before = r.current().unwrap();
        assert!(!r.reload().unwrap());
        assert!(Arc::ptr_eq(&before, &r.current().unwrap()));

        generate(&CertOptions::new(dir.path())).unwrap();
        assert!(r.reload().unwrap());
        assert_ne!(before.cert[0], r.current().unwrap().cert[0]);
        assert!(!r.reload().unwrap());
    }

    #[test]
    fn mismatched_or_broken_pairs_are_refused_and_old_cert_kept() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ra = generate(&CertOptions::new(a.path())).unwrap();
        let rb = generate(&CertOptions::new(b.path())).unwrap();

        // Loading a mismatched pair fails outright.
        let err = ReloadingCertResolver::load(&ra.cert_path, &rb.key_path).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");

        let r = ReloadingCertResolver::load(&ra.cert_path, &ra.key_path).unwrap();
        let served = r.current().unwrap().cert[0].clone();

        std::fs::copy(&rb.key_path, &ra.key_path).unwrap();
        let err = r.reload().unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert_eq!(r.current().unwrap().cert[0], served);

        std::fs::write(&ra.cert_path, b"-----BEGIN CERTIFICATE-----\ntrunc").unwrap();
        let err = r.reload().unwrap_err();
        assert!(matches!(err, TlsError::CertPem { .. }), "{err}");
        assert!(err.to_string().contains("tls.crt"), "{err}");
        assert_eq!(r.current().unwrap().cert[0], served);

        std::fs::write(&ra.cert_path, b"").unwrap();
        assert!(matches!(r.reload(), Err(TlsError::CertPem { .. })));

        std::fs::remove_file(&ra.key_path).unwrap();
        assert!(matches!(r.reload(), Err(TlsError::Read { .. })));
        assert_eq!(r.current().unwrap().cert[0], served);

        // The matching new pair is accepted.
        std::fs::copy(&rb.cert_path, &ra.cert_path).unwrap();
        std::fs::copy(&rb.key_path, &ra.key_path).unwrap();
        assert!(r.reload().unwrap());
        assert_ne!(r.current().unwrap().cert[0], served);
    }

    #[test]
    fn in_memory_resolver_serves_nothing_until_a_valid_pair_is_installed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ra = generate(&CertOptions::new(a.path())).unwrap();
        let rb = generate(&CertOptions::new(b.path())).unwrap();
        let (crt, key) = (
            std::fs::read(&ra.cert_path).unwrap(),
            std::fs::read(&ra.key_path).unwrap(),
        );
        let r = ReloadingCertResolver::in_memory("Secret ns/name");
        assert!(!r.is_loaded() && !r.is_valid_now() && r.current().is_none());
        assert_eq!(r.not_after_unix(), 0);
        let err = r
            .install_pem(&crt, &std::fs::read(&rb.key_path).unwrap())
            .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("Secret ns/name tls.key"), "{err}");
        assert!(!r.is_loaded());
        assert!(r.install_pem(&crt, &key).unwrap());
        assert!(r.is_valid_now());
        assert!(!r.install_pem(&crt, &key).unwrap(), "unchanged pair");
        assert!(!r.reload().unwrap(), "an in-memory resolver reads no files");
    }

    #[test]
    fn server_config_offers_h2_and_http11() {
        let dir = tempfile::tempdir().unwrap();
        let report = generate(&CertOptions::new(dir.path())).unwrap();
        let r = ReloadingCertResolver::load(&report.cert_path, &report.key_path).unwrap();
        let config = server_config(Arc::new(r)).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
