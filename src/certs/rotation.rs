//! Staged replacement of the self-managed CA, so the apiserver trusts every certificate any
//! replica serves at every moment (cert-manager's and kube-controller-manager's practice of
//! overlapping trust bundles).
//!
//! Switching CA and leaf in one write fails handshakes: the replicas serve the new leaf moments
//! before the apiserver sees the new caBundle (or the other way round), and with failurePolicy
//! Fail the Spark pods of that moment are refused. So the CA is replaced in three writes of the
//! Secret, each conflict-safe (the loser of a race re-reads and finds the step done) and each
//! decided from the Secret alone, never from memory, so a replica dying between two steps leaves
//! a state any replica resumes:
//!
//! 1. **Stage**: a new CA goes into `ca-next.crt`/`ca-next.key`; it signs nothing yet. The
//!    caBundle becomes `ca.crt` + `ca-next.crt`.
//! 2. **Switch**, once the next CA has been trusted for `ca_overlap` and (when we register) the
//!    webhook configurations carry it: a leaf from the next CA is issued, next becomes current
//!    and the old CA moves to `ca-previous.crt`, still in the caBundle for replicas that serve
//!    the old leaf a moment longer.
//! 3. **Drop**, `ca_overlap` later: `ca-previous.crt` leaves the Secret and the caBundle.
//!
//! The caBundle lists previous, current, next in that order, so the bundle is byte-identical
//! across the switch (old + new either way) and the configurations are written only at stage and
//! drop.
//!
//! What starts it: the current CA expiring within `ca_renew_before` (60 days by default, twice
//! the leaf's 30-day window: the leaf is cut short to the CA's expiry, so its own window can only
//! open once the CA's has, and the replacement, minutes long, has a month of slack). A CA we
//! cannot sign with (`ca.key` absent, as with a certificate brought with `make install-certs`,
//! or unusable) is served as it is until its leaf enters that window, then replaced the same way.
//! A CA already lost or expired cannot be staged (nothing the apiserver trusts can sign the
//! leaf): that is renewed at once, unstaged.

use time::OffsetDateTime;

use super::check::regenerate;
use super::issue::{self, CertError, NewCaReason};
use super::secret::{CA_NEXT_CERT, CertMaterial, SecretCertConfig};
use super::x509::{self, rfc3339};
use crate::labels::NEXT_STAGED_AT_ANNOTATION;

/// What the CA replacement needs next, given the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: one CA, far from expiry.
    Idle,
    /// A stage is in progress and lasts until `until`.
    Wait {
        /// When the next step becomes due.
        until: OffsetDateTime,
        /// The step that will then be due.
        then: &'static str,
    },
    /// Write a new next CA (none yet, or the staged one is unusable).
    Stage(NewCaReason),
    /// Issue a leaf from the next CA and make it current; the current one becomes previous.
    Switch,
    /// Forget the previous CA.
    Drop,
}

impl Step {
    /// A name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Idle => "idle",
            Step::Wait { .. } => "wait",
            Step::Stage(_) => "stage",
            Step::Switch => "switch",
            Step::Drop => "drop",
        }
    }
}

/// The step `m` calls for at `now`. Only meaningful for a Secret whose leaf is signed by
/// `ca.crt` (the caller checks that first).
pub fn plan(m: &CertMaterial, cfg: &SecretCertConfig, now: OffsetDateTime) -> Step {
    let overlap = time::Duration::try_from(cfg.ca_overlap).unwrap_or(time::Duration::MAX);
    if let Some(next) = &m.ca_next_crt {
        let key = m.ca_next_key.as_deref().unwrap_or_default();
        if let Err(why) = issue::ca_usable(next, key, now) {
            return Step::Stage(NewCaReason::Unusable(format!("{CA_NEXT_CERT}: {why}")));
        }
        // No (readable) mark: restage, which writes one; a stale next would otherwise be stuck.
        let Some(staged) = parse_mark(m.next_staged_at.as_deref()) else {
            return Step::Stage(NewCaReason::Unusable(format!(
                "{NEXT_STAGED_AT_ANNOTATION} is missing or unreadable"
            )));
        };
        let due = staged.saturating_add(overlap);
        return if now >= due {
            Step::Switch
        } else {
            Step::Wait {
                until: due,
                then: "switch",
            }
        };
    }
    if m.ca_previous_crt.is_some() {
        // The mark is written with ca-previous.crt in one write: without it, drop.
        let Some(retired) = parse_mark(m.previous_retired_at.as_deref()) else {
            return Step::Drop;
        };
        let due = retired.saturating_add(overlap);
        return if now >= due {
            Step::Drop
        } else {
            Step::Wait {
                until: due,
                then: "drop",
            }
        };
    }
    let window = time::Duration::try_from(cfg.ca_renew_before).unwrap_or(time::Duration::MAX);
    let due = |t: OffsetDateTime| t <= now.saturating_add(window);
    // A CA we cannot sign with (no ca.key: a certificate brought with `make install-certs`) is
    // served as it is until its leaf enters the CA window: the leaf could then only be renewed
    // with a new CA, so that one is staged first.
    let leaf_due = || {
        m.tls_crt
            .as_deref()
            .and_then(x509::not_after)
            .is_none_or(due)
    };
    let Some(crt) = &m.ca_crt else {
        return Step::Idle;
    };
    let signable = match &m.ca_key {
        Some(key) => issue::ca_usable(crt, key, now),
        None => Err(NewCaReason::Missing),
    };
    match signable {
        Ok(not_after) if due(not_after) => Step::Stage(NewCaReason::Expiring { not_after }),
        Ok(_) => Step::Idle,
        Err(why) if leaf_due() => Step::Stage(why),
        Err(_) => Step::Idle,
    }
}

/// The Secret after `step` (Stage, Switch or Drop), at `now`.
pub fn advance(
    step: &Step,
    m: &CertMaterial,
    cfg: &SecretCertConfig,
    now: OffsetDateTime,
) -> Result<CertMaterial, CertError> {
    let mut out = m.clone();
    match step {
        Step::Stage(_) => {
            let (crt, key) = issue::new_ca_pem(cfg.ca_validity_days)?;
            out.ca_next_crt = Some(crt.into_bytes());
            out.ca_next_key = Some(key.into_bytes());
            out.next_staged_at = Some(rfc3339(now));
        }
        Step::Switch => {
            let signer = CertMaterial {
                ca_crt: m.ca_next_crt.clone(),
                ca_key: m.ca_next_key.clone(),
                ..m.clone()
            };
            let g = regenerate(Some(&signer), cfg)?;
            out = CertMaterial {
                ca_crt: Some(g.ca_cert_pem.into_bytes()),
                ca_key: Some(g.ca_key_pem.into_bytes()),
                tls_crt: Some(g.cert_pem.into_bytes()),
                tls_key: Some(g.key_pem.into_bytes()),
                ca_next_crt: None,
                ca_next_key: None,
                ca_previous_crt: m.ca_crt.clone(),
                next_staged_at: None,
                previous_retired_at: Some(rfc3339(now)),
            };
        }
        Step::Drop => {
            out.ca_previous_crt = None;
            out.previous_retired_at = None;
        }
        Step::Idle | Step::Wait { .. } => {}
    }
    Ok(out)
}

/// The caBundle for `m`: previous, current and next CA (those present), one PEM after another.
pub fn bundle(m: &CertMaterial) -> Vec<u8> {
    let mut out = Vec::new();
    for pem in [&m.ca_previous_crt, &m.ca_crt, &m.ca_next_crt]
        .into_iter()
        .flatten()
    {
        out.extend_from_slice(pem);
        if !pem.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

fn parse_mark(mark: Option<&str>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(mark?, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::check::{Invalid, check, tests::cfg};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A Secret as a replica writes it, with a CA of `ca_days` and a leaf of `leaf_days` (cut
    /// short to the CA).
    fn secret(ca_days: u32, leaf_days: u32) -> CertMaterial {
        let mut c = cfg();
        c.ca_validity_days = ca_days;
        c.validity_days = leaf_days.min(ca_days);
        CertMaterial::from_generated(&regenerate(None, &c).unwrap())
    }

    fn leaf_valid(m: &CertMaterial, now: OffsetDateTime) -> Result<(), Invalid> {
        let c = cfg();
        check(Some(m), &c.required_names(), Duration::ZERO, now).map(|_| ())
    }

    fn ders(pem: &[u8]) -> Vec<Vec<u8>> {
        CertificateDer::pem_slice_iter(pem)
            .map(|d| d.unwrap().to_vec())
            .collect()
    }

    /// Walks the replacement from `m`, returning each state and the steps taken.
    fn walk(mut m: CertMaterial, mut now: OffsetDateTime) -> (CertMaterial, Vec<&'static str>) {
        let c = cfg();
        let mut steps = Vec::new();
        for _ in 0..10 {
            match plan(&m, &c, now) {
                Step::Idle => return (m, steps),
                Step::Wait { until, .. } => now = until,
                step => {
                    steps.push(step.name());
                    m = advance(&step, &m, &c, now).unwrap();
                }
            }
        }
        panic!("no end after 10 steps: {steps:?}");
    }

    #[test]
    fn a_ca_far_from_expiry_is_left_alone() {
        let m = secret(3650, 365);
        assert_eq!(plan(&m, &cfg(), OffsetDateTime::now_utc()), Step::Idle);
        assert_eq!(ders(&bundle(&m)), ders(m.ca_crt.as_deref().unwrap()));
    }

    #[test]
    fn an_expiring_ca_is_replaced_in_three_steps_and_every_leaf_stays_trusted() {
        let old = secret(40, 365);
        let now = OffsetDateTime::now_utc();
        let c = cfg();
        let old_ca = ders(old.ca_crt.as_deref().unwrap());
        assert!(matches!(
            plan(&old, &c, now),
            Step::Stage(NewCaReason::Expiring { .. })
        ));

        // Stage: the leaf is untouched, the bundle trusts both CAs.
        let staged = advance(&plan(&old, &c, now), &old, &c, now).unwrap();
        assert_eq!(staged.tls_crt, old.tls_crt);
        assert_eq!(staged.ca_crt, old.ca_crt);
        let next_ca = ders(staged.ca_next_crt.as_deref().unwrap());
        assert_eq!(
            ders(&bundle(&staged)),
            [old_ca.clone(), next_ca.clone()].concat()
        );
        leaf_valid(&staged, now).unwrap();
        assert_eq!(
            plan(&staged, &c, now),
            Step::Wait {
                until: now + c.ca_overlap,
                then: "switch"
            }
        );

        // Switch: a leaf from the new CA; the bundle is the same bytes, old leaf still trusted.
        let later = now + c.ca_overlap;
        assert_eq!(plan(&staged, &c, later), Step::Switch);
        let switched = advance(&Step::Switch, &staged, &c, later).unwrap();
        assert_eq!(
            bundle(&switched),
            bundle(&staged),
            "no caBundle write at the switch"
        );
        assert_eq!(switched.ca_crt, staged.ca_next_crt);
        assert_eq!(switched.ca_previous_crt, old.ca_crt);
        assert_eq!(
            (switched.ca_next_crt.as_ref(), switched.ca_next_key.as_ref()),
            (None, None)
        );
        leaf_valid(&switched, later).unwrap();
        let old_leaf_under_new_bundle = CertMaterial {
            ca_crt: Some(bundle(&switched)),
            ..old.clone()
        };
        leaf_valid(&old_leaf_under_new_bundle, later).unwrap();
        // The new leaf has its full validity: the new CA is not cut short.
        let leaf_end = x509::not_after(switched.tls_crt.as_deref().unwrap()).unwrap();
        assert!(leaf_end > later + time::Duration::days(364));

        // Drop, one overlap later: only the new CA is left.
        let end = later + c.ca_overlap;
        assert!(matches!(
            plan(&switched, &c, later),
            Step::Wait { then: "drop", .. }
        ));
        assert_eq!(plan(&switched, &c, end), Step::Drop);
        let done = advance(&Step::Drop, &switched, &c, end).unwrap();
        assert_eq!(ders(&bundle(&done)), next_ca);
        assert_eq!(done.previous_retired_at, None);
        assert_eq!(plan(&done, &c, end), Step::Idle);
    }

    #[test]
    fn every_state_resumes_from_the_secret_alone() {
        // A replica dying after any write leaves a Secret another one finishes from; the same
        // end is reached whichever state it starts from.
        let c = cfg();
        let now = OffsetDateTime::now_utc();
        let old = secret(40, 365);
        let staged = advance(&plan(&old, &c, now), &old, &c, now).unwrap();
        let switched = advance(&Step::Switch, &staged, &c, now + c.ca_overlap).unwrap();
        for (name, start, want) in [
            (
                "before staging",
                old.clone(),
                vec!["stage", "switch", "drop"],
            ),
            ("after staging", staged.clone(), vec!["switch", "drop"]),
            ("after the switch", switched.clone(), vec!["drop"]),
        ] {
            let (end, steps) = walk(start, now);
            assert_eq!(steps, want, "{name}");
            assert_eq!(end.ca_next_crt, None, "{name}");
            assert_eq!(end.ca_previous_crt, None, "{name}");
            assert_eq!(
                ders(&bundle(&end)),
                ders(end.ca_crt.as_deref().unwrap()),
                "{name}"
            );
            leaf_valid(&end, now + c.ca_overlap * 2).unwrap();
        }
    }

    #[test]
    fn a_damaged_stage_is_restaged_and_a_missing_retirement_mark_drops() {
        let c = cfg();
        let now = OffsetDateTime::now_utc();
        let old = secret(40, 365);
        let staged = advance(&plan(&old, &c, now), &old, &c, now).unwrap();
        let no_key = CertMaterial {
            ca_next_key: None,
            ..staged.clone()
        };
        assert!(matches!(
            plan(&no_key, &c, now),
            Step::Stage(NewCaReason::Unusable(_))
        ));
        let no_mark = CertMaterial {
            next_staged_at: None,
            ..staged.clone()
        };
        assert!(matches!(plan(&no_mark, &c, now), Step::Stage(_)));
        let restaged = advance(&plan(&no_mark, &c, now), &no_mark, &c, now).unwrap();
        assert!(matches!(plan(&restaged, &c, now), Step::Wait { .. }));

        let switched = advance(&Step::Switch, &staged, &c, now).unwrap();
        let unmarked = CertMaterial {
            previous_retired_at: None,
            ..switched
        };
        assert_eq!(plan(&unmarked, &c, now), Step::Drop);
    }

    #[test]
    fn a_ca_without_its_key_is_kept_until_its_leaf_nears_expiry_then_staged() {
        let now = OffsetDateTime::now_utc();
        // Brought with `make install-certs` (ca.key stays with the user): served as it is.
        let mut m = secret(3650, 365);
        m.ca_key = None;
        assert_eq!(plan(&m, &cfg(), now), Step::Idle);
        // Its leaf within the CA window: only a new CA can renew it, so one is staged first.
        let mut m = secret(3650, 40);
        m.ca_key = None;
        leaf_valid(&m, now).unwrap();
        assert_eq!(plan(&m, &cfg(), now), Step::Stage(NewCaReason::Missing));
        let (end, steps) = walk(m, now);
        assert_eq!(steps, ["stage", "switch", "drop"]);
        assert!(end.ca_key.is_some());
    }

    #[test]
    fn a_leaf_renewed_under_an_ageing_ca_is_cut_short_and_the_stage_survives_it() {
        let c = cfg();
        let now = OffsetDateTime::now_utc();
        let old = secret(40, 365);
        let ca_end = x509::not_after(old.ca_crt.as_deref().unwrap()).unwrap();
        let leaf_end = x509::not_after(old.tls_crt.as_deref().unwrap()).unwrap();
        assert_eq!(leaf_end, ca_end, "the leaf never outlives its CA");
        let staged = advance(&plan(&old, &c, now), &old, &c, now).unwrap();
        let renewed = staged.renewed(&regenerate(Some(&staged), &c).unwrap());
        assert_ne!(renewed.tls_crt, staged.tls_crt);
        assert_eq!(renewed.ca_crt, staged.ca_crt);
        assert_eq!(renewed.ca_next_crt, staged.ca_next_crt, "the stage is kept");
        assert_eq!(renewed.next_staged_at, staged.next_staged_at);
    }

    #[test]
    fn settings_that_would_replace_a_ca_forever_are_refused() {
        let mut c = cfg();
        c.ca_renew_before = c.renew_before;
        assert!(
            c.validate().is_err(),
            "CA window not longer than the leaf's"
        );
        let mut c = cfg();
        c.ca_validity_days = 60;
        assert!(c.validate().is_err(), "every new CA would be due at once");
        let mut c = cfg();
        c.ca_renew_before = 61 * DAY;
        c.validate().unwrap();
    }
}
