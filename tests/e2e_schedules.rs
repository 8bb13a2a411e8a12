//! End-to-end: ScheduledSparkApplications on a real kube-apiserver, with `@every` schedules of
//! a few seconds. Runs appear on their slots, named from them; Forbid skips while a run is
//! active and Replace replaces it; the history limits delete old runs; suspend stops new runs
//! and a resume brings one catch-up run, not a burst; a crash right after a run's create and a
//! leader failover still give one run per slot; a bad schedule is refused by the webhook with
//! its field and reason.
//!
//! There is no kubelet here: runs stay SUBMITTED until the test writes COMPLETED or FAILED into
//! their status, as a finished driver would have the reconciler do.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Served, certs, eventually, install_crd, namespace, state_of};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use spark_webhook::crd::{ScheduleState, ScheduledSparkApplication, SparkApplication};
use spark_webhook::labels::SCHEDULED_APP_NAME_LABEL;

const WAIT: Duration = Duration::from_secs(40);

/// The operator with its webhook (validation) and reconciler, no leader election.
fn start(ns: &str, dir: &std::path::Path, extra: &[&str]) -> Served {
    let mut args = vec!["--driver-start-timeout", "0s"];
    if !extra.iter().any(|a| a.starts_with("--leader-election")) {
        args.push("--leader-election=false");
    }
    args.extend_from_slice(extra);
    Served::start(ns, dir, &args)
}

fn schedule(ns: &str, name: &str, every: &str, spec: Value) -> ScheduledSparkApplication {
    let mut obj = json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
        "metadata": {"name": name, "namespace": ns, "labels": {"team": "e2e"}},
        "spec": {
            "schedule": format!("@every {every}"),
            "template": {
                "type": "Scala", "mode": "cluster", "sparkVersion": "3.5.3", "image": "spark:3.5.3",
                "mainClass": "org.apache.spark.examples.SparkPi",
                "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
                "restartPolicy": {"type": "Never"},
                "driver": {"cores": 1, "memory": "512m", "serviceAccount": "spark"},
                "executor": {"instances": 1, "cores": 1, "memory": "512m"}
            }
        }
    });
    if let (Some(into), Value::Object(extra)) = (obj["spec"].as_object_mut(), spec) {
        into.extend(extra);
    }
    serde_json::from_value(obj).expect("a ScheduledSparkApplication")
}

async fn create(client: &Client, s: &ScheduledSparkApplication) -> ScheduledSparkApplication {
    let api: Api<ScheduledSparkApplication> =
        Api::namespaced(client.clone(), &s.namespace().unwrap_or_default());
    api.create(&PostParams::default(), s)
        .await
        .unwrap_or_else(|e| panic!("creating {}: {e}", s.name_any()))
}

/// The runs of `schedule`, by name.
async fn runs(apps: &Api<SparkApplication>, schedule: &str) -> BTreeMap<String, SparkApplication> {
    apps.list(&ListParams::default().labels(&format!("{SCHEDULED_APP_NAME_LABEL}={schedule}")))
        .await
        .map(|l| l.items.into_iter().map(|a| (a.name_any(), a)).collect())
        .unwrap_or_default()
}

/// A run's slot (Unix seconds), read from its name.
fn slot_of(run: &str) -> i64 {
    run.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("run {run} is not named <schedule>-<slot>"))
}

/// Ends a run as its driver would: waits for SUBMITTED, then writes `state`.
async fn finish(apps: &Api<SparkApplication>, run: &str, state: &str) {
    eventually(&format!("{run} submitted"), WAIT, || async {
        let app = apps.get_opt(run).await.ok()??;
        (state_of(&app) == "SUBMITTED").then_some(())
    })
    .await;
    let patch = json!({"status": {"applicationState": {"state": state}}});
    apps.patch_status(run, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("status of {run}: {e}"));
}

async fn get(api: &Api<ScheduledSparkApplication>, name: &str) -> ScheduledSparkApplication {
    api.get(name).await.expect("the schedule")
}

fn event_reasons(ns: &str, regarding: &str) -> Vec<String> {
    let out = common::kubectl(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["regarding"]["name"] == regarding)
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect()
}

fn created(app: &SparkApplication) -> Timestamp {
    app.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .expect("creationTimestamp")
}

#[tokio::test]
async fn runs_start_on_their_slots_and_the_history_limits_delete_old_runs() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "sched-slots").await;
    let dir = certs();
    let served = start(&ns, dir.path(), &[]);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let scheds: Api<ScheduledSparkApplication> = Api::namespaced(client.clone(), &ns);
    let s = create(
        &client,
        &schedule(
            &ns,
            "pi",
            "3s",
            json!({"successfulRunHistoryLimit": 1, "failedRunHistoryLimit": 1}),
        ),
    )
    .await;
    let anchor = s
        .metadata
        .creation_timestamp
        .as_ref()
        .unwrap()
        .0
        .as_second();

    // Four runs: the first fails, the others complete, each as it comes.
    let mut seen: Vec<(String, SparkApplication)> = Vec::new();
    while seen.len() < 4 {
        let next = eventually("the next run", WAIT, || async {
            runs(&apps, "pi")
                .await
                .into_iter()
                .find(|(n, _)| !seen.iter().any(|(s, _)| s == n))
        })
        .await;
        let state = if seen.is_empty() {
            "FAILED"
        } else {
            "COMPLETED"
        };
        finish(&apps, &next.0, state).await;
        seen.push(next);
    }
    // Stop further runs, so the history settles.
    scheds
        .patch(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();

    let mut lateness = Vec::new();
    for (i, (name, run)) in seen.iter().enumerate() {
        let slot = slot_of(name);
        assert_eq!(
            (slot - anchor) % 3,
            0,
            "{name}: slot off the @every grid from {anchor}"
        );
        if i > 0 {
            assert_eq!(
                slot - slot_of(&seen[i - 1].0),
                3,
                "consecutive slots: {seen:?}"
            );
        }
        let late = created(run).as_second() - slot;
        assert!(
            (0..=2).contains(&late),
            "{name} created {late}s after its slot"
        );
        lateness.push(late);
        assert_eq!(run.labels()["team"], "e2e", "the schedule's labels");
        let owner = &run.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ScheduledSparkApplication");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(run.spec, s.spec.template);
    }

    // History: the newest completed run and the failed one kept, older completed ones deleted.
    let failed = seen[0].0.clone();
    let newest = seen
        .iter()
        .filter(|(n, _)| *n != failed)
        .map(|(n, _)| n.clone())
        .max_by_key(|n| slot_of(n))
        .unwrap();
    eventually("the history within its limits", WAIT, || async {
        let left = runs(&apps, "pi").await;
        let status = get(&scheds, "pi").await.status?;
        let completed: Vec<&String> = left
            .iter()
            .filter(|(_, a)| state_of(a) == "COMPLETED")
            .map(|(n, _)| n)
            .collect();
        (completed == [&newest]
            && left.contains_key(&failed)
            && status.past_successful_run_names == [newest.clone()]
            && status.past_failed_run_names == [failed.clone()])
        .then_some(())
    })
    .await;
    let status = get(&scheds, "pi").await.status.unwrap();
    assert_eq!(status.schedule_state, ScheduleState::Scheduled);
    assert!(status.last_run.is_some() && status.next_run.is_some());
    assert_eq!(status.last_run_name, seen.last().unwrap().0);
    let reasons = event_reasons(&ns, "pi");
    assert!(
        reasons.iter().any(|r| r == "ScheduledRunStarted"),
        "{reasons:?}"
    );
    let (_, metrics) = served.admin_get("/metrics").expect("metrics");
    let started = metrics
        .lines()
        .find_map(|l| l.strip_prefix("spark_webhook_scheduled_runs_total{outcome=\"started\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(started >= 4.0, "{metrics}");
    eprintln!("slots: lateness of 4 runs in seconds (whole): {lateness:?}");
}

#[tokio::test]
async fn forbid_skips_while_a_run_is_active_and_replace_replaces_it() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "sched-policy").await;
    let dir = certs();
    let served = start(&ns, dir.path(), &[]);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    create(
        &client,
        &schedule(&ns, "forbid", "2s", json!({"concurrencyPolicy": "Forbid"})),
    )
    .await;
    create(
        &client,
        &schedule(
            &ns,
            "replace",
            "2s",
            json!({"concurrencyPolicy": "Replace"}),
        ),
    )
    .await;

    // Forbid: the first run stays active; the next slots are skipped, with an Event.
    let first = eventually("forbid's first run", WAIT, || async {
        runs(&apps, "forbid").await.into_keys().next()
    })
    .await;
    eventually("a skipped slot", WAIT, || async {
        event_reasons(&ns, "forbid")
            .iter()
            .any(|r| r == "ScheduledRunSkipped")
            .then_some(())
    })
    .await;
    assert_eq!(
        runs(&apps, "forbid").await.into_keys().collect::<Vec<_>>(),
        std::slice::from_ref(&first),
        "Forbid started a second run while the first was active"
    );
    // One skip per slot: the requeues in between (the run's watch events, the status write's
    // own event) publish no Skipped again. The slots passed since the first run's, at most.
    let skipped = outcome_count(&served, "skipped");
    let slots = (Timestamp::now().as_second() - slot_of(&first)) / 2;
    assert!(
        (1..=slots).contains(&(skipped as i64)),
        "{skipped} slots skipped in {slots} slots"
    );
    let reasons = event_reasons(&ns, "forbid");
    let skip_events = reasons
        .iter()
        .filter(|r| *r == "ScheduledRunSkipped")
        .count();
    assert!(
        skip_events <= slots as usize,
        "{reasons:?} in {slots} slots"
    );
    // Finished, the next slot runs again.
    finish(&apps, &first, "COMPLETED").await;
    let second = eventually("forbid's next run", WAIT, || async {
        runs(&apps, "forbid")
            .await
            .into_keys()
            .find(|n| *n != first)
    })
    .await;
    assert!(
        slot_of(&second) >= slot_of(&first) + 4,
        "slots were skipped in between"
    );

    // Replace: the active first run is deleted when the next one starts.
    let replaced = eventually("replace's first run", WAIT, || async {
        runs(&apps, "replace").await.into_keys().next()
    })
    .await;
    let successor = eventually("the replacement", WAIT, || async {
        let now = runs(&apps, "replace").await;
        let live: Vec<String> = now
            .iter()
            .filter(|(_, a)| a.metadata.deletion_timestamp.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        (live.len() == 1 && live[0] != replaced && !now.contains_key(&replaced))
            .then(|| live[0].clone())
    })
    .await;
    assert!(slot_of(&successor) > slot_of(&replaced));
    let reasons = event_reasons(&ns, "replace");
    assert!(
        reasons.iter().any(|r| r == "ScheduledRunReplaced"),
        "{reasons:?}"
    );
    for outcome in ["skipped", "replaced"] {
        assert!(outcome_count(&served, outcome) >= 1.0, "{outcome}");
    }
}

/// `spark_webhook_scheduled_runs_total` of `outcome`, 0 while unset.
fn outcome_count(served: &Served, outcome: &str) -> f64 {
    let (_, metrics) = served.admin_get("/metrics").expect("metrics");
    let line = format!("spark_webhook_scheduled_runs_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn suspend_stops_new_runs_and_a_resume_brings_one_catch_up_run() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "sched-suspend").await;
    let dir = certs();
    let _served = start(&ns, dir.path(), &[]);
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let scheds: Api<ScheduledSparkApplication> = Api::namespaced(client.clone(), &ns);
    create(
        &client,
        &schedule(&ns, "nap", "2s", json!({"successfulRunHistoryLimit": 50})),
    )
    .await;
    eventually("a first run", WAIT, || async {
        (!runs(&apps, "nap").await.is_empty()).then_some(())
    })
    .await;
    let suspend = |on: bool| json!({"spec": {"suspend": on}});
    scheds
        .patch("nap", &PatchParams::default(), &Patch::Merge(suspend(true)))
        .await
        .unwrap();
    let suspended_at = Timestamp::now().as_second();
    // Four slots go by: no run is created later than the one in flight when suspend came.
    let window = Instant::now() + Duration::from_secs(8);
    while Instant::now() < window {
        let late: Vec<String> = runs(&apps, "nap")
            .await
            .into_iter()
            .filter(|(_, a)| created(a).as_second() > suspended_at + 1)
            .map(|(n, _)| n)
            .collect();
        assert!(late.is_empty(), "runs started while suspended: {late:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let before: Vec<String> = runs(&apps, "nap").await.into_keys().collect();
    scheds
        .patch(
            "nap",
            &PatchParams::default(),
            &Patch::Merge(suspend(false)),
        )
        .await
        .unwrap();
    let resumed_at = Timestamp::now().as_second();
    // One catch-up run for the four missed slots, at once; not four.
    let catch_up = eventually("the catch-up run", WAIT, || async {
        let after = runs(&apps, "nap").await;
        let new: Vec<(String, Timestamp)> = after
            .iter()
            .filter(|(n, _)| !before.contains(n))
            .map(|(n, a)| (n.clone(), created(a)))
            .collect();
        (!new.is_empty()).then_some(new)
    })
    .await;
    let first_new = catch_up.iter().map(|(_, t)| *t).min().unwrap();
    assert!(
        first_new.as_second() - resumed_at <= 2,
        "the catch-up run came {}s after the resume",
        first_new.as_second() - resumed_at
    );
    let burst: Vec<&String> = catch_up
        .iter()
        .filter(|(_, t)| t.as_second() <= first_new.as_second())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(burst.len(), 1, "a burst of catch-up runs: {catch_up:?}");
}

#[tokio::test]
async fn an_invalid_schedule_is_refused_with_its_field_and_reason() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "sched-valid").await;
    let dir = certs();
    let _served = start(&ns, dir.path(), &[]);
    let apply = |obj: Value| common::kubectl_stdin(&["apply", "-f", "-"], Some(&obj.to_string()));
    let mut bad = serde_json::to_value(schedule(&ns, "bad", "1m", json!({}))).unwrap();
    bad["spec"]["schedule"] = json!("every monday");
    let out = apply(bad.clone());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ScheduledSparkApplication")
            && err.contains("spec.schedule: \"every monday\""),
        "{err}"
    );
    bad["spec"]["schedule"] = json!("0 9 * * MON");
    bad["spec"]["timeZone"] = json!("Mars/Olympus_Mons");
    let err = String::from_utf8_lossy(&apply(bad.clone()).stderr).into_owned();
    assert!(
        err.contains("spec.timeZone: unknown time zone \"Mars/Olympus_Mons\""),
        "{err}"
    );
    // The template is validated as the runs it makes.
    bad["spec"]["timeZone"] = json!("Europe/Berlin");
    bad["spec"]["template"]["mainApplicationFile"] = json!("");
    let err = String::from_utf8_lossy(&apply(bad.clone()).stderr).into_owned();
    assert!(
        err.contains("spec.template.mainApplicationFile: is required"),
        "{err}"
    );
    // Fixed, it applies; nothing of the refused ones was stored.
    bad["spec"]["template"]["mainApplicationFile"] =
        json!("local:///opt/spark/examples/jars/spark-examples.jar");
    let out = apply(bad);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // kubeflow's examples apply unchanged: its sample through our webhook, spark-pi-scheduled
    // (namespace default, outside the webhook's test scope) against the CRD's schema.
    let root = common::repo_root();
    let sample = root.join("tests/fixtures/scheduledsparkapplication-sample.yaml");
    common::kubectl_ok(&["apply", "-n", &ns, "-f", sample.to_str().unwrap()], None);
    let pi = root.join("tests/fixtures/spark-pi-scheduled.yaml");
    common::kubectl_ok(
        &["apply", "--dry-run=server", "-f", pi.to_str().unwrap()],
        None,
    );
    let listed = common::kubectl_ok(&["get", "scheduledsparkapp", "-n", &ns], None);
    assert!(
        listed.contains("NEXT RUN") && listed.contains("scheduledsparkapplication-sample"),
        "{listed}"
    );
}

/// A run's uid and slot, to tell a run deleted and created again from one created once.
fn uids(runs: &BTreeMap<String, SparkApplication>) -> BTreeMap<String, String> {
    runs.iter()
        .map(|(n, a)| (n.clone(), a.metadata.uid.clone().unwrap_or_default()))
        .collect()
}

/// Slots of consecutive runs: on the grid, one run each, and after an outage at most one gap
/// (the single catch-up run).
fn assert_one_run_per_slot(names: &[String], period: i64, anchor: i64) {
    let slots: Vec<i64> = names.iter().map(|n| slot_of(n)).collect();
    let mut sorted = slots.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        slots.len(),
        "two runs for one slot: {names:?}"
    );
    assert!(
        sorted.iter().all(|s| (s - anchor) % period == 0),
        "{names:?}"
    );
    let gaps = sorted.windows(2).filter(|w| w[1] - w[0] != period).count();
    assert!(gaps <= 1, "more than one gap (catch-up) in {sorted:?}");
}

#[tokio::test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the fail points: --features failpoints (tests/run.sh)"
)]
async fn a_crash_right_after_a_runs_create_does_not_start_it_twice() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "sched-crash").await;
    let dir = certs();
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let scheds: Api<ScheduledSparkApplication> = Api::namespaced(client.clone(), &ns);
    // Aborts right after creating the second run, before the status records it.
    let mut first = Served::spawn_as(
        &common::cluster().kubeconfig,
        &[("SPARK_WEBHOOK_FAIL_POINT", "scheduled-run-created:2")],
        &ns,
        dir.path(),
        &[
            "--webhook=false",
            "--leader-election=false",
            "--driver-start-timeout",
            "0s",
        ],
    );
    let s = create(
        &client,
        &schedule(&ns, "tick", "2s", json!({"successfulRunHistoryLimit": 50})),
    )
    .await;
    let anchor = s
        .metadata
        .creation_timestamp
        .as_ref()
        .unwrap()
        .0
        .as_second();
    let exit = first
        .wait_exit(WAIT)
        .expect("the operator aborts at the fail point");
    assert!(!exit.success());
    let at_crash = runs(&apps, "tick").await;
    assert_eq!(at_crash.len(), 2, "{:?}\n{}", at_crash.keys(), first.logs());
    let second = at_crash.keys().max_by_key(|n| slot_of(n)).unwrap().clone();
    let recorded = get(&scheds, "tick").await.status.unwrap_or_default();
    assert_ne!(
        recorded.last_run_name, second,
        "the crash came before the status"
    );

    // Restarted: the run of the crashed slot is adopted, not created again.
    let dir2 = certs();
    let _again = start(&ns, dir2.path(), &["--webhook=false"]);
    let later = eventually("three runs after the restart", WAIT, || async {
        let now = runs(&apps, "tick").await;
        (now.len() >= at_crash.len() + 3).then_some(now)
    })
    .await;
    for (name, uid) in uids(&at_crash) {
        assert_eq!(
            uids(&later).get(&name),
            Some(&uid),
            "{name} was deleted or recreated"
        );
    }
    let names: Vec<String> = later.into_keys().collect();
    assert_one_run_per_slot(&names, 2, anchor);
}

#[tokio::test]
async fn a_leader_failover_at_a_slot_boundary_starts_one_run_per_slot() {
    let client = common::client().await;
    install_crd();
    let ns = namespace(&client, "sched-leader").await;
    let apps: Api<SparkApplication> = Api::namespaced(client.clone(), &ns);
    let flags = [
        "--webhook=false",
        "--leader-election=true",
        "--leader-election-lock-namespace",
        &ns,
        "--leader-election-lease-duration",
        "3s",
        "--leader-election-renew-grace",
        "1s",
        "--driver-start-timeout",
        "0s",
    ];
    let kubeconfig = &common::cluster().kubeconfig;
    let (c1, c2) = (certs(), certs());
    let mut a = Served::start_as(
        kubeconfig,
        &[("POD_NAME", "replica-a")],
        &ns,
        c1.path(),
        &flags,
    );
    let mut b = Served::start_as(
        kubeconfig,
        &[("POD_NAME", "replica-b")],
        &ns,
        c2.path(),
        &flags,
    );
    let s = create(
        &client,
        &schedule(&ns, "lead", "2s", json!({"successfulRunHistoryLimit": 50})),
    )
    .await;
    let anchor = s
        .metadata
        .creation_timestamp
        .as_ref()
        .unwrap()
        .0
        .as_second();
    // Two runs, then the leader is killed the moment the next slot's run appears.
    let two = Instant::now() + WAIT;
    while runs(&apps, "lead").await.len() < 2 {
        assert!(
            Instant::now() < two,
            "no two runs:\n{}\n{}",
            a.logs(),
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = runs(&apps, "lead").await;
    let boundary = eventually("the next slot's run", WAIT, || async {
        let now = runs(&apps, "lead").await;
        (now.len() > before.len()).then_some(now)
    })
    .await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns);
    let holder = leases
        .get("spark-webhook-lock")
        .await
        .ok()
        .and_then(|l| l.spec?.holder_identity)
        .expect("a lease holder");
    let (leader, follower) = if holder == "replica-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let _ = leader.child.kill();
    let _ = leader.child.wait();
    let later = eventually("three runs after the failover", WAIT, || async {
        let now = runs(&apps, "lead").await;
        (now.len() >= boundary.len() + 3).then_some(now)
    })
    .await;
    assert!(follower.logs().contains("became leader"));
    for (name, uid) in uids(&boundary) {
        assert_eq!(
            uids(&later).get(&name),
            Some(&uid),
            "{name} was deleted or recreated"
        );
    }
    let names: Vec<String> = later.into_keys().collect();
    assert_one_run_per_slot(&names, 2, anchor);
}
