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
//! key is ever logged (`CertMaterial`'s `Debug` prints key names and sizes only).
//!
//! The Secret is the only source of truth for the `caBundle`: after every check each replica
//! registers the Secret's CAs ([`rotation::bundle`]) through the idempotent
//! [`Registration::apply`], which writes nothing when they are already there. Replicas reading the
//! same Secret therefore converge on the same object instead of flapping, and a caBundle changed
//! by hand is put back at the next check (across versions, see [`crate::registration`]).
//! The renewed certificate covers the names the old one had besides the required ones, so two
//! versions requiring different names converge on a certificate valid for both.
//!
//! A renewal keeps the CA; the CA itself is replaced in stages ([`rotation`]) so that the
//! apiserver trusts every certificate any replica serves at every moment. Only a CA already lost
//! (the Secret deleted) or expired is replaced together with the certificate: nothing the
//! apiserver trusts can sign then, and a call between the Secret's write and the caBundle's can
//! fail its handshake.

use std::collections::BTreeMap;
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
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::check::{Invalid, check, regenerate};
use super::issue::CaOutcome;
use super::rotation::{self, Step};
use super::secret::{CertManagerError, CertMaterial, SecretCertConfig};
use super::tls::ReloadingCertResolver;
use super::x509::{self, rfc3339};
use crate::labels::ISSUED_BY_ANNOTATION;
use crate::registration::Registration;

/// The Secret type written when creating it (an existing Secret keeps its type: it is immutable).
pub const SECRET_TYPE: &str = "kubernetes.io/tls";
/// A replica writes at most this many certificates per [`WRITE_WINDOW`], so a disagreement (two
/// versions with incompatible settings rewriting each other's) costs a few writes a minute, not a
/// hot loop; the other replicas still renew meanwhile.
const MAX_WRITES_PER_WINDOW: usize = 5;
const WRITE_WINDOW: Duration = Duration::from_secs(60);
/// Backoff between failed checks (apiserver unreachable, Secret forbidden): 1 s doubling to this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
        if let Some(t) = material.ca_crt.as_deref().and_then(x509::not_after) {
            self.resolver.set_ca_not_after(t.unix_timestamp());
        }
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

    /// Checks at start, every `check_interval` (sooner when a CA replacement step falls due) and
    /// on every change of the Secret; failures are retried with a backoff of 1 s doubling to a
    /// minute.
    async fn check_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        let mut writes = WriteBudget::default();
        loop {
            let wait = match self.ensure(&mut writes).await {
                Ok(due) => {
                    backoff = Duration::from_secs(1);
                    due.map_or(self.cfg.check_interval, |d| d.min(self.cfg.check_interval))
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

    /// One check: read the Secret; renew the leaf if invalid; serve it and register the
    /// caBundle; take the next step of a CA replacement if one is due. Every write is
    /// conflict-safe and followed by a fresh read. Returns when the next step falls due, if one
    /// is pending.
    async fn ensure(&self, writes: &mut WriteBudget) -> Result<Option<Duration>, CertManagerError> {
        let required = self.cfg.required_names();
        for _ in 0..6 {
            let current = self
                .api
                .get_opt(&self.cfg.name)
                .await
                .map_err(|e| self.api_error("reading", e))?;
            let material = current.as_ref().map(CertMaterial::from_secret);
            let now = OffsetDateTime::now_utc();
            let step = material
                .as_ref()
                .map_or(Step::Idle, |m| rotation::plan(m, &self.cfg, now));
            match check(material.as_ref(), &required, self.cfg.renew_before, now) {
                Ok(valid) => {
                    tracing::debug!(secret = %self.secret(), not_after = %rfc3339(valid.not_after), serial = %valid.serial, "certificate in the Secret is valid");
                }
                Err(why) if defer_to_rotation(&why, material.as_ref(), &step, now) => {
                    tracing::info!(secret = %self.secret(), reason = %why, step = step.name(), "the certificate is due for renewal, but its CA is being replaced: the new CA issues the next one");
                }
                Err(why) => {
                    if let Some(wait) = writes.exhausted() {
                        tracing::warn!(secret = %self.secret(), reason = %why, retry_in = ?wait, "this replica renewed the certificate {MAX_WRITES_PER_WINDOW} times within {WRITE_WINDOW:?} (do two versions disagree on what is valid?); waiting before renewing again");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    tracing::info!(secret = %self.secret(), reason = %why, "certificate in the Secret must be renewed; generating a new one");
                    let generated = regenerate(material.as_ref(), &self.cfg)?;
                    let renewed = material.unwrap_or_default().renewed(&generated);
                    let ca = match &generated.ca {
                        CaOutcome::Reused => "reused".to_string(),
                        CaOutcome::Created(reason) => format!("new ({reason})"),
                    };
                    if let Some(rv) = self.write(current, &renewed).await? {
                        writes.record();
                        tracing::info!(
                            secret = %self.secret(),
                            not_after = %rfc3339(generated.not_after),
                            sans = ?generated.sans,
                            ca,
                            resource_version = rv,
                            "wrote a new certificate to the Secret"
                        );
                    }
                    continue;
                }
            }
            let material = material.unwrap_or_default();
            self.serve(&material);
            self.register(&material).await?;
            match step {
                Step::Idle => return Ok(None),
                Step::Wait { until, then } => {
                    tracing::debug!(secret = %self.secret(), then, due = %rfc3339(until), "CA replacement in progress");
                    return Ok(Some(Duration::try_from(until - now).unwrap_or_default()));
                }
                Step::Switch if !self.registered_trust_next(&material).await? => {
                    tracing::info!(secret = %self.secret(), "CA replacement: waiting for the webhook configurations to trust the next CA before serving a certificate from it");
                    return Ok(Some(Duration::from_secs(1)));
                }
                step => {
                    if let Some(wait) = writes.exhausted() {
                        return Ok(Some(wait));
                    }
                    let next = rotation::advance(&step, &material, &self.cfg, now)?;
                    if let Some(rv) = self.write(current, &next).await? {
                        writes.record();
                        let (reason, ca_not_after) = match &step {
                            Step::Stage(reason) => {
                                (reason.to_string(), next.ca_next_crt.as_deref())
                            }
                            _ => (String::new(), next.ca_crt.as_deref()),
                        };
                        let ca_not_after = ca_not_after
                            .and_then(x509::not_after)
                            .map(rfc3339)
                            .unwrap_or_default();
                        tracing::info!(
                            secret = %self.secret(),
                            step = step.name(),
                            reason,
                            ca_not_after,
                            resource_version = rv,
                            "CA replacement: {}",
                            match step {
                                Step::Stage(_) => "staged the next CA (trusted, signing nothing yet)",
                                Step::Switch => "switched to the next CA (new certificate; the old CA stays trusted)",
                                _ => "dropped the previous CA",
                            }
                        );
                    }
                }
            }
        }
        Err(CertManagerError::Conflicts {
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
        })
    }

    /// Writes `material` over `current` (creates the Secret when there is none): the new
    /// resourceVersion, or None when another replica wrote first (Conflict/AlreadyExists: the
    /// caller re-reads and uses the winner's).
    async fn write(
        &self,
        current: Option<Secret>,
        material: &CertMaterial,
    ) -> Result<Option<String>, CertManagerError> {
        let exists = current.is_some();
        let secret = self.secret_with(current, material);
        let written = if exists {
            self.api
                .replace(&self.cfg.name, &PostParams::default(), &secret)
                .await
        } else {
            self.api.create(&PostParams::default(), &secret).await
        };
        match written {
            Ok(written) => Ok(Some(written.resource_version().unwrap_or_default())),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::info!(secret = %self.secret(), "another replica wrote the Secret first; using its content");
                Ok(None)
            }
            Err(e) => {
                let action = if exists { "updating" } else { "creating" };
                Err(self.api_error(action, e))
            }
        }
    }

    /// `old` (or a new Secret) carrying `material`; other keys, labels and annotations stay.
    fn secret_with(&self, old: Option<Secret>, material: &CertMaterial) -> Secret {
        let mut secret = old.unwrap_or_else(|| Secret {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    crate::labels::MANAGED_BY_LABEL.to_string(),
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
        for (key, value) in material.data() {
            match value {
                Some(v) => data.insert(key.to_string(), ByteString(v.clone())),
                None => data.remove(key),
            };
        }
        let annotations = secret.annotations_mut();
        for (key, value) in material.marks() {
            match value {
                Some(v) => annotations.insert(key.to_string(), v.clone()),
                None => annotations.remove(key),
            };
        }
        annotations.insert(ISSUED_BY_ANNOTATION.to_string(), self.cfg.identity.clone());
        secret
    }

    /// Sets the caBundle of our webhook configurations from the Secret (a no-op when it is
    /// there): every CA it holds ([`rotation::bundle`]).
    async fn register(&self, material: &CertMaterial) -> Result<(), CertManagerError> {
        let Some(registration) = &self.registration else {
            return Ok(());
        };
        let ca_bundle = rotation::bundle(material);
        if ca_bundle.is_empty() {
            return Ok(());
        }
        Registration {
            ca_bundle,
            ..registration.clone()
        }
        .apply(&self.client)
        .await?;
        Ok(())
    }

    /// Whether the webhook configurations, as the apiserver has them, trust the next CA (true
    /// when we do not register: then `ca_overlap` alone paces the switch).
    async fn registered_trust_next(
        &self,
        material: &CertMaterial,
    ) -> Result<bool, CertManagerError> {
        match (&self.registration, &material.ca_next_crt) {
            (Some(registration), Some(next)) => Ok(registration.trusts(&self.client, next).await?),
            _ => Ok(true),
        }
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

/// Whether a leaf renewal waits for the CA replacement under way: the leaf is only expiring (not
/// expired yet), so it still serves; a leaf from the ageing CA would be cut short to the CA's
/// expiry and be due again at once, while the switch issues a full one from the next CA.
fn defer_to_rotation(
    why: &Invalid,
    material: Option<&CertMaterial>,
    step: &Step,
    now: OffsetDateTime,
) -> bool {
    matches!(why, Invalid::Expiring { .. })
        && matches!(
            step,
            Step::Stage(_) | Step::Switch | Step::Wait { then: "switch", .. }
        )
        && material
            .and_then(|m| m.tls_crt.as_deref())
            .and_then(x509::not_after)
            .is_some_and(|t| t > now)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_expiring_leaf_waits_for_the_ca_switch_but_an_expired_one_does_not() {
        let mut c = crate::certs::check::tests::cfg();
        c.ca_validity_days = 20;
        c.validity_days = 20;
        let m = CertMaterial::from_generated(&regenerate(None, &c).unwrap());
        let now = OffsetDateTime::now_utc();
        let why = check(Some(&m), &c.required_names(), c.renew_before, now).unwrap_err();
        assert!(matches!(why, Invalid::Expiring { .. }));
        let c = crate::certs::check::tests::cfg();
        let step = rotation::plan(&m, &c, now);
        assert!(matches!(step, Step::Stage(_)), "{step:?}");
        assert!(defer_to_rotation(&why, Some(&m), &step, now));
        // Expired: renewed at once, whatever the CA replacement is doing.
        let later = now + time::Duration::days(21);
        assert!(!defer_to_rotation(&why, Some(&m), &step, later));
        // No replacement under way: renewed at once.
        assert!(!defer_to_rotation(&why, Some(&m), &Step::Idle, now));
    }
}
