//! The SparkConnect decision, pure: from what is observed (the server pod, the executors, the
//! Service, whether this generation's server can be built), what to do to the server pod and
//! the status to write. kubeflow's status: state `Ready` or `NotReady` and condition
//! `ServerPodReady` from the pod's readiness; executors counted by phase; `startTime`, and
//! `lastUpdateTime` whenever the status changes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{SparkConnectServerStatus, SparkConnectState, SparkConnectStatus};

/// kubeflow's one condition type, and its reasons.
pub const CONDITION_SERVER_POD_READY: &str = "ServerPodReady";
pub const REASON_READY: &str = "ServerPodReady";
pub const REASON_NOT_READY: &str = "ServerPodNotReady";

/// The pod named `<name>-server`, as the decision needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerPod {
    /// This SparkConnect is its controller owner (else the name is taken by someone else's pod).
    pub ours: bool,
    /// Label `sparkoperator.k8s.io/submission-id`: the generation it was built from.
    pub submission_id: Option<String>,
    pub deleting: bool,
    pub ready: bool,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`).
    pub phase: String,
    pub ip: String,
    /// `status.message`.
    pub message: String,
}

/// Everything the decision reads.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub now: Timestamp,
    pub generation: i64,
    pub status: &'a SparkConnectStatus,
    pub pod_name: &'a str,
    pub service_name: &'a str,
    /// This generation's submission id, or why its server cannot be built or created.
    pub wanted: Result<&'a str, String>,
    pub server: Option<ServerPod>,
    /// The phases of the executor pods.
    pub executor_phases: Vec<String>,
}

/// What to do to the server pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerAction {
    /// Leave it (it is current, going, ended, or not ours).
    Keep,
    /// None exists: create this generation's.
    Create,
    /// It was built from an older spec: delete it; the next reconcile creates the new one.
    Restart,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub server: ServerAction,
    /// The status to write, when it changed.
    pub status: Option<SparkConnectStatus>,
}

pub fn decide(o: &Observed<'_>) -> Decision {
    let (server, state, condition) = server_decision(o);
    let mut status = o.status.clone();
    status.start_time.get_or_insert(Time(o.now));
    status.state = state;
    set_condition(&mut status.conditions, condition, o.now);
    status.server = SparkConnectServerStatus {
        pod_name: o.pod_name.to_string(),
        pod_ip: o
            .server
            .as_ref()
            .filter(|p| p.ours && server == ServerAction::Keep)
            .map(|p| p.ip.clone())
            .unwrap_or_default(),
        service_name: o.service_name.to_string(),
    };
    status.executors = executor_counts(&o.executor_phases);
    let changed = status != *o.status;
    if changed {
        status.last_update_time = Some(Time(o.now));
    }
    Decision {
        server,
        status: changed.then_some(status),
    }
}

/// The server action, the state and the `ServerPodReady` condition (type set by the caller).
fn server_decision(o: &Observed<'_>) -> (ServerAction, SparkConnectState, Condition) {
    let not_ready = |message: String| condition(false, REASON_NOT_READY, message, o.generation);
    let wanted = match &o.wanted {
        Ok(id) => *id,
        Err(why) => {
            return (
                ServerAction::Keep,
                SparkConnectState::Failed,
                not_ready(format!("Server pod cannot be started: {why}")),
            );
        }
    };
    let Some(pod) = &o.server else {
        return (
            ServerAction::Create,
            SparkConnectState::NotReady,
            not_ready("Server pod is not ready: being created".into()),
        );
    };
    if !pod.ours {
        return (
            ServerAction::Keep,
            SparkConnectState::Failed,
            not_ready(format!(
                "Server pod is not ready: pod {} exists and belongs to someone else",
                o.pod_name
            )),
        );
    }
    if pod.deleting {
        return (
            ServerAction::Keep,
            SparkConnectState::NotReady,
            not_ready("Server pod is not ready: the previous server is stopping".into()),
        );
    }
    if pod.submission_id.as_deref() != Some(wanted) {
        return (
            ServerAction::Restart,
            SparkConnectState::NotReady,
            not_ready("Server pod is not ready: restarting for the changed spec".into()),
        );
    }
    if matches!(pod.phase.as_str(), "Succeeded" | "Failed") {
        return (
            ServerAction::Keep,
            SparkConnectState::Failed,
            not_ready(format!(
                "Server pod is not ready: it ended ({}){}",
                pod.phase,
                if pod.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", pod.message)
                }
            )),
        );
    }
    if pod.ready {
        return (
            ServerAction::Keep,
            SparkConnectState::Ready,
            condition(
                true,
                REASON_READY,
                "Server pod is ready".into(),
                o.generation,
            ),
        );
    }
    (
        ServerAction::Keep,
        SparkConnectState::NotReady,
        not_ready(format!("Server pod is not ready: {}", pod.message)),
    )
}

fn condition(ready: bool, reason: &str, message: String, generation: i64) -> Condition {
    Condition {
        type_: CONDITION_SERVER_POD_READY.into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(generation),
        // Set by set_condition.
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// `meta.SetStatusCondition`: replaces the condition of the same type, keeping its transition
/// time unless its status changed.
fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition, now: Timestamp) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            new.last_transition_time = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                Time(now)
            };
            *old = new;
        }
        None => {
            new.last_transition_time = Time(now);
            conditions.push(new);
        }
    }
}

/// Executors by phase, lower case, as kubeflow counts them.
fn executor_counts(phases: &[String]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for phase in phases {
        *counts.entry(phase.to_lowercase()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "id-2";

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid")
    }

    fn pod(id: &str) -> ServerPod {
        ServerPod {
            ours: true,
            submission_id: Some(id.into()),
            phase: "Running".into(),
            ip: "10.0.0.7".into(),
            ..ServerPod::default()
        }
    }

    fn observe(status: &SparkConnectStatus, server: Option<ServerPod>, now: i64) -> Decision {
        decide(&Observed {
            now: at(now),
            generation: 2,
            status,
            pod_name: "c-server",
            service_name: "c-server",
            wanted: Ok(ID),
            server,
            executor_phases: vec!["Running".into(), "Running".into(), "Pending".into()],
        })
    }

    fn cond(status: &SparkConnectStatus) -> &Condition {
        &status.conditions[0]
    }

    #[test]
    fn a_new_object_gets_its_server_and_a_not_ready_status() {
        let d = observe(&SparkConnectStatus::default(), None, 10);
        assert_eq!(d.server, ServerAction::Create);
        let s = d.status.expect("written");
        assert_eq!(s.state, SparkConnectState::NotReady);
        assert_eq!(s.start_time, Some(Time(at(10))));
        assert_eq!(s.last_update_time, Some(Time(at(10))));
        assert_eq!(cond(&s).status, "False");
        assert_eq!(cond(&s).reason, REASON_NOT_READY);
        assert_eq!(s.server.pod_name, "c-server");
        assert_eq!(s.server.service_name, "c-server");
        assert_eq!(
            s.executors,
            BTreeMap::from([("pending".into(), 1), ("running".into(), 2)])
        );
    }

    #[test]
    fn a_ready_pod_makes_it_ready_and_an_unchanged_status_is_not_rewritten() {
        let first = observe(&SparkConnectStatus::default(), None, 10)
            .status
            .expect("s");
        let ready = ServerPod {
            ready: true,
            ..pod(ID)
        };
        let d = observe(&first, Some(ready.clone()), 20);
        assert_eq!(d.server, ServerAction::Keep);
        let s = d.status.expect("changed");
        assert_eq!(s.state, SparkConnectState::Ready);
        assert_eq!(cond(&s).status, "True");
        assert_eq!(cond(&s).reason, REASON_READY);
        assert_eq!(cond(&s).message, "Server pod is ready");
        assert_eq!(cond(&s).last_transition_time, Time(at(20)));
        assert_eq!(s.server.pod_ip, "10.0.0.7");
        assert_eq!(s.start_time, Some(Time(at(10))), "kept");
        let again = observe(&s, Some(ready), 30);
        assert_eq!(again.status, None, "nothing changed");
    }

    #[test]
    fn a_pod_of_an_older_spec_is_restarted_and_its_ip_dropped() {
        let ready = SparkConnectStatus {
            state: SparkConnectState::Ready,
            ..SparkConnectStatus::default()
        };
        let d = observe(
            &ready,
            Some(ServerPod {
                ready: true,
                ..pod("id-1")
            }),
            10,
        );
        assert_eq!(d.server, ServerAction::Restart);
        let s = d.status.expect("s");
        assert_eq!(s.state, SparkConnectState::NotReady);
        assert_eq!(s.server.pod_ip, "");
        // While it goes, nothing more is done; once gone, the new one is created.
        let going = ServerPod {
            deleting: true,
            ..pod("id-1")
        };
        assert_eq!(observe(&s, Some(going), 11).server, ServerAction::Keep);
        assert_eq!(observe(&s, None, 12).server, ServerAction::Create);
    }

    #[test]
    fn an_ended_server_fails_and_is_left_for_a_spec_change() {
        let ended = ServerPod {
            phase: "Failed".into(),
            message: "OOMKilled".into(),
            ..pod(ID)
        };
        let d = observe(&SparkConnectStatus::default(), Some(ended), 10);
        assert_eq!(d.server, ServerAction::Keep);
        let s = d.status.expect("s");
        assert_eq!(s.state, SparkConnectState::Failed);
        assert!(cond(&s).message.contains("Failed") && cond(&s).message.contains("OOMKilled"));
    }

    #[test]
    fn someone_elses_pod_or_an_unbuildable_spec_fails_without_touching_pods() {
        let foreign = ServerPod {
            ours: false,
            ..pod("x")
        };
        let d = observe(&SparkConnectStatus::default(), Some(foreign), 10);
        assert_eq!(d.server, ServerAction::Keep);
        assert_eq!(d.status.expect("s").state, SparkConnectState::Failed);
        let status = SparkConnectStatus::default();
        let d = decide(&Observed {
            now: at(1),
            generation: 1,
            status: &status,
            pod_name: "c-server",
            service_name: "c-server",
            wanted: Err("no image".into()),
            server: None,
            executor_phases: vec![],
        });
        assert_eq!(d.server, ServerAction::Keep);
        let s = d.status.expect("s");
        assert_eq!(s.state, SparkConnectState::Failed);
        assert!(cond(&s).message.contains("no image"));
    }

    #[test]
    fn the_transition_time_moves_only_when_the_condition_flips() {
        let s1 = observe(&SparkConnectStatus::default(), Some(pod(ID)), 10)
            .status
            .expect("s");
        let not_ready_since = cond(&s1).last_transition_time.clone();
        let mut starting = pod(ID);
        starting.message = "still starting".into();
        let s2 = observe(&s1, Some(starting), 20)
            .status
            .expect("message changed");
        assert_eq!(cond(&s2).last_transition_time, not_ready_since);
        let s3 = observe(
            &s2,
            Some(ServerPod {
                ready: true,
                ..pod(ID)
            }),
            30,
        )
        .status
        .expect("s");
        assert_eq!(cond(&s3).last_transition_time, Time(at(30)));
    }
}
