//! Self-managed serving certificate: one Secret, read and renewed by every replica, served by all.
//!
//! Every replica watches the Secret (a watcher on that one name) and swaps each new pair into its
//! [`ReloadingCertResolver`] in memory, so all replicas serve the same certificate within moments
//! of a write (no wait for the kubelet to refresh a mounted volume). At start, every
//! `check_interval`, and whenever the Secret changes, each replica checks it ([`check`]). When it
//! is missing or invalid, every replica that notices generates a replacement, but only one write
//! can win: a create fails with AlreadyExists, and an update carries the resourceVersion it read
//! and fails with Conflict, if another replica wrote first; the loser re-reads and uses the
//! winner's certificate. No lease is needed.
//!
//! Key material lives in the Secret only: `ca.key` is stored next to `ca.crt`, `tls.crt` and
//! `tls.key`, so whichever replica renews can sign with the same CA and the `caBundle` stays put
//! across renewals. That adds no exposure: whoever can read the Secret already holds `tls.key` and
//! can impersonate the webhook, and the CA is trusted only by this webhook's `caBundle`. Neither
//! key is ever logged (`CertMaterial`'s `Debug` prints key names only).
//!
//! The Secret is the only source of truth for the `caBundle`: after every check each replica
//! registers `ca.crt` as the caBundle through the idempotent
//! [`Registration::apply`], which writes nothing when it is already there. Two replicas (or two
//! versions during a rolling upgrade) reading the same Secret therefore converge on the same
//! object instead of flapping, and a caBundle changed by hand is put back at the next check.
//! The renewed certificate covers the names the old one had besides the required ones, so two
//! versions requiring different names converge on a certificate valid for both.
//!
//! Not covered: a CA replacement (only when the CA is lost or expiring) is not staged. The
//! replicas switch to the new certificate at the Secret's write and the apiserver trusts its CA
//! only from the caBundle's write just after, so a call in between can fail its handshake.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt as _, watcher as watch_stream};
use kube::{Client, ResourceExt as _};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::certs::{
    self, CA_CERT_FILE, CA_KEY_FILE, CaOutcome, CertError, CertOptions, TLS_CERT_FILE, TLS_KEY_FILE,
};
use crate::tls::{self, ReloadingCertResolver};
use crate::webhook::registration::{Registration, RegistrationError};

/// The Secret type written when creating it (an existing Secret keeps its type: it is immutable).
pub const SECRET_TYPE: &str = "kubernetes.io/tls";
/// Annotation naming the replica that wrote the current certificate.
pub const ISSUED_BY_ANNOTATION: &str = "spark-webhook.sparkoperator.k8s.io/issued-by";
/// A replica writes at most this many certificates per [`WRITE_WINDOW`], so a disagreement (two
/// versions with incompatible settings rewriting each other's) costs a few writes a minute, not a
/// hot loop; the other replicas still renew meanwhile.
const MAX_WRITES_PER_WINDOW: usize = 5;
const WRITE_WINDOW: Duration = Duration::from_secs(60);
/// Backoff between failed checks (apiserver unreachable, Secret forbidden): 1 s doubling to this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

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

/// The four keys of the Secret, as found (absent or empty keys are `None`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CertMaterial {
    /// `ca.crt`: the CA (the caBundle).
    pub ca_crt: Option<Vec<u8>>,
    /// `ca.key`: the CA's private key, needed to renew with the same CA.
    pub ca_key: Option<Vec<u8>>,
    /// `tls.crt`: the serving certificate (chain, leaf first).
    pub tls_crt: Option<Vec<u8>>,
    /// `tls.key`: the serving private key.
    pub tls_key: Option<Vec<u8>>,
}

impl fmt::Debug for CertMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has = |v: &Option<Vec<u8>>| v.as_ref().map(|b| b.len());
        f.debug_struct("CertMaterial")
            .field("ca.crt bytes", &has(&self.ca_crt))
            .field("ca.key bytes", &has(&self.ca_key))
            .field("tls.crt bytes", &has(&self.tls_crt))
            .field("tls.key bytes", &has(&self.tls_key))
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
        Self {
            ca_crt: get(CA_CERT_FILE),
            ca_key: get(CA_KEY_FILE),
            tls_crt: get(TLS_CERT_FILE),
            tls_key: get(TLS_KEY_FILE),
        }
    }

    fn from_generated(g: &certs::Generated) -> Self {
        Self {
            ca_crt: Some(g.ca_cert_pem.clone().into_bytes()),
            ca_key: Some(g.ca_key_pem.clone().into_bytes()),
            tls_crt: Some(g.cert_pem.clone().into_bytes()),
            tls_key: Some(g.key_pem.clone().into_bytes()),
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

/// Errors of one check; the loop logs them and retries with backoff.
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

/// Runs the self-managed mode: the watcher feeding `resolver`, and the check-and-renew loop.
pub struct CertManager {
    api: Api<Secret>,
    client: Client,
    cfg: SecretCertConfig,
    resolver: Arc<ReloadingCertResolver>,
    /// Our webhook configurations; their caBundle is set from the Secret. None: not registering.
    registration: Option<Registration>,
    wake: Notify,
}

impl CertManager {
    /// A manager of `cfg.namespace/cfg.name` feeding `resolver` (an in-memory one).
    pub fn new(
        client: Client,
        cfg: SecretCertConfig,
        resolver: Arc<ReloadingCertResolver>,
        registration: Option<Registration>,
    ) -> Result<Self, CertManagerError> {
        cfg.validate()?;
        Ok(Self {
            api: Api::namespaced(client.clone(), &cfg.namespace),
            client,
            cfg,
            resolver,
            registration,
            wake: Notify::new(),
        })
    }

    /// Starts the watcher and the check loop; both stop on `shutdown`.
    pub fn spawn(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        tokio::spawn(Arc::clone(&this).watch(shutdown.clone()));
        tokio::spawn(this.check_loop(shutdown));
    }

    fn secret(&self) -> String {
        format!("{}/{}", self.cfg.namespace, self.cfg.name)
    }

    /// Serves every version of the Secret as it arrives, and wakes the check loop for it.
    async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.cfg.name));
        let mut events = watch_stream(self.api.clone(), config)
            .default_backoff()
            .boxed();
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                None => return,
                Some(Ok(Event::Apply(secret) | Event::InitApply(secret))) => {
                    self.serve(&CertMaterial::from_secret(&secret));
                    self.wake.notify_one();
                }
                Some(Ok(Event::Delete(_))) => {
                    tracing::warn!(secret = %self.secret(), "certificate Secret deleted; the current certificate keeps serving until it is re-created");
                    self.wake.notify_one();
                }
                Some(Ok(Event::Init | Event::InitDone)) => {}
                Some(Err(e)) => {
                    let error = brief_watch(&e);
                    tracing::warn!(secret = %self.secret(), %error, hint = hint_for_watch(&e), "watching the certificate Secret failed; retrying with backoff");
                    if !self.resolver.is_loaded() {
                        self.resolver.set_last_error(Some(format!(
                            "watching Secret {}: {error}",
                            self.secret()
                        )));
                    }
                }
            }
        }
    }

    /// Installs the pair of `material` if it is new and usable; the previous one keeps serving
    /// otherwise.
    fn serve(&self, material: &CertMaterial) {
        let (Some(crt), Some(key)) = (&material.tls_crt, &material.tls_key) else {
            return;
        };
        match self.resolver.install_pem(crt, key) {
            Ok(true) => {
                tracing::info!(secret = %self.secret(), "serving the certificate from the Secret");
                self.resolver.set_last_error(None);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(secret = %self.secret(), error = %e, "the Secret holds no usable certificate; keeping the current one");
                if !self.resolver.is_loaded() {
                    self.resolver.set_last_error(Some(e.to_string()));
                }
            }
        }
    }

    /// Checks at start, every `check_interval` and on every change of the Secret; failures are
    /// retried with a backoff of 1 s doubling to a minute.
    async fn check_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        let mut writes = WriteBudget::default();
        loop {
            let wait = match self.ensure(&mut writes).await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    self.cfg.check_interval
                }
                Err(e) => {
                    let hint = match &e {
                        CertManagerError::Api { hint, .. } => *hint,
                        _ => "",
                    };
                    tracing::error!(secret = %self.secret(), error = %e, retry_in = ?backoff, hint, "certificate check failed");
                    if !self.resolver.is_loaded() {
                        self.resolver.set_last_error(Some(e.to_string()));
                    }
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One check: read the Secret, renew it if invalid (conflict-safe), serve it, register its CA.
    async fn ensure(&self, writes: &mut WriteBudget) -> Result<(), CertManagerError> {
        let required = self.cfg.required_names();
        for _ in 0..3 {
            let current = self
                .api
                .get_opt(&self.cfg.name)
                .await
                .map_err(|e| self.api_error("reading", e))?;
            let material = current.as_ref().map(CertMaterial::from_secret);
            let why = match check(
                material.as_ref(),
                &required,
                self.cfg.renew_before,
                OffsetDateTime::now_utc(),
            ) {
                Ok(valid) => {
                    tracing::debug!(secret = %self.secret(), not_after = %rfc3339(valid.not_after), serial = %valid.serial, "certificate in the Secret is valid");
                    let material = material.unwrap_or_default();
                    self.serve(&material);
                    return self.register(&material).await;
                }
                Err(why) => why,
            };
            if let Some(wait) = writes.exhausted() {
                tracing::warn!(secret = %self.secret(), reason = %why, retry_in = ?wait, "this replica renewed the certificate {MAX_WRITES_PER_WINDOW} times within {WRITE_WINDOW:?} (do two versions disagree on what is valid?); waiting before renewing again");
                tokio::time::sleep(wait).await;
                continue;
            }
            tracing::info!(secret = %self.secret(), reason = %why, "certificate in the Secret must be renewed; generating a new one");
            let generated = regenerate(material.as_ref(), &self.cfg)?;
            let exists = current.is_some();
            let secret = self.secret_with(current, &generated);
            let written = if exists {
                self.api
                    .replace(&self.cfg.name, &PostParams::default(), &secret)
                    .await
            } else {
                self.api.create(&PostParams::default(), &secret).await
            };
            match written {
                Ok(written) => {
                    writes.record();
                    let ca = match &generated.ca {
                        CaOutcome::Reused => "reused".to_string(),
                        CaOutcome::Created(reason) => format!("new ({reason})"),
                    };
                    tracing::info!(
                        secret = %self.secret(),
                        not_after = %rfc3339(generated.not_after),
                        sans = ?generated.sans,
                        ca,
                        resource_version = written.resource_version().unwrap_or_default(),
                        "wrote a new certificate to the Secret"
                    );
                    let material = CertMaterial::from_generated(&generated);
                    self.serve(&material);
                    return self.register(&material).await;
                }
                // AlreadyExists on create, Conflict on update: another replica wrote first.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::info!(secret = %self.secret(), "another replica wrote the Secret first; using its certificate");
                }
                Err(e) => {
                    let action = if exists { "updating" } else { "creating" };
                    return Err(self.api_error(action, e));
                }
            }
        }
        Err(CertManagerError::Conflicts {
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
        })
    }

    /// `old` (or a new Secret) carrying `generated`; other keys, labels and annotations stay.
    fn secret_with(&self, old: Option<Secret>, generated: &certs::Generated) -> Secret {
        let mut secret = old.unwrap_or_else(|| Secret {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "spark-webhook".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_string()),
            ..Secret::default()
        });
        // The apiserver fills stringData into data; never send both.
        secret.string_data = None;
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in [
            (CA_CERT_FILE, &generated.ca_cert_pem),
            (CA_KEY_FILE, &generated.ca_key_pem),
            (TLS_CERT_FILE, &generated.cert_pem),
            (TLS_KEY_FILE, &generated.key_pem),
        ] {
            data.insert(key.to_string(), ByteString(value.clone().into_bytes()));
        }
        secret
            .annotations_mut()
            .insert(ISSUED_BY_ANNOTATION.to_string(), self.cfg.identity.clone());
        secret
    }

    /// Sets the caBundle of our webhook configurations to `ca.crt` (a no-op when it is there).
    async fn register(&self, material: &CertMaterial) -> Result<(), CertManagerError> {
        let (Some(registration), Some(ca)) = (&self.registration, &material.ca_crt) else {
            return Ok(());
        };
        Registration {
            ca_bundle: ca.clone(),
            ..registration.clone()
        }
        .apply(&self.client)
        .await?;
        Ok(())
    }

    fn api_error(&self, action: &'static str, source: kube::Error) -> CertManagerError {
        let hint = match &source {
            kube::Error::Api(s) if s.code == 403 => {
                "the operator's ServiceAccount needs get/list/watch/update on this Secret and create on secrets in its namespace (manifests/rbac/operator.yaml, Role spark-webhook-certs)"
            }
            _ => "",
        };
        CertManagerError::Api {
            action,
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
            detail: brief(&source),
            source: Box::new(source),
            hint,
        }
    }
}

/// This replica's recent certificate writes (the rate limit of [`MAX_WRITES_PER_WINDOW`]).
#[derive(Default)]
struct WriteBudget {
    recent: std::collections::VecDeque<Instant>,
}

impl WriteBudget {
    /// How long to wait before the next write is allowed, if the budget is used up.
    fn exhausted(&mut self) -> Option<Duration> {
        while self
            .recent
            .front()
            .is_some_and(|t| t.elapsed() >= WRITE_WINDOW)
        {
            self.recent.pop_front();
        }
        (self.recent.len() >= MAX_WRITES_PER_WINDOW)
            .then(|| {
                self.recent
                    .front()
                    .map(|t| WRITE_WINDOW.saturating_sub(t.elapsed()))
            })
            .flatten()
    }

    fn record(&mut self) {
        self.recent.push_back(Instant::now());
    }
}

/// A client error in one line: the apiserver's own message for API errors (kube's `Display`
/// appends the whole Status in Debug form).
fn brief(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

/// A watch error in one line, as [`brief`].
fn brief_watch(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(e) => format!("listing: {}", brief(e)),
        watcher::Error::WatchStartFailed(e) => format!("starting the watch: {}", brief(e)),
        watcher::Error::WatchFailed(e) => format!("watching: {}", brief(e)),
        watcher::Error::WatchError(s) => {
            format!("watching: {} ({} {})", s.message, s.code, s.reason)
        }
        other => other.to_string(),
    }
}

fn hint_for_watch(e: &watcher::Error) -> &'static str {
    let forbidden = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 403,
        watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    };
    if forbidden {
        "the operator's ServiceAccount needs list/watch on this Secret (manifests/rbac/operator.yaml)"
    } else {
        ""
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn cfg() -> SecretCertConfig {
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
    fn writes_are_limited_per_window() {
        let mut budget = WriteBudget::default();
        for _ in 0..MAX_WRITES_PER_WINDOW {
            assert_eq!(budget.exhausted(), None);
            budget.record();
        }
        let wait = budget.exhausted().expect("budget used up");
        assert!(wait > WRITE_WINDOW - Duration::from_secs(5) && wait <= WRITE_WINDOW);
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
