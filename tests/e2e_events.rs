//! End-to-end: the Event recorder against a real apiserver. A repeat becomes the first Event's
//! series (one object, count 2, 3...), a repeat whose Event was deleted creates a new one, an
//! event forgotten at the cache's cap starts a new Event rather than failing, and a long
//! non-ASCII note is cut within the apiserver's 1024 bytes instead of losing the Event.

mod common;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Resource as _};
use spark_webhook::events::{Event, EventType, Recorder, Reporter};

fn reporter() -> Reporter {
    Reporter {
        controller: "spark-webhook".into(),
        instance: Some("e2e-events-0".into()),
    }
}

fn event(reason: &str, note: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// A fresh namespace and an object in it for the Events to be about.
async fn regarding(client: &Client, prefix: &str) -> (Api<K8sEvent>, ObjectReference) {
    let ns = common::namespace(client, prefix).await;
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "subject", "namespace": ns}
    }))
    .unwrap();
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    (Api::namespaced(client.clone(), &ns), cm.object_ref(&()))
}

async fn events(api: &Api<K8sEvent>) -> Vec<K8sEvent> {
    let mut items = api.list(&ListParams::default()).await.unwrap().items;
    items.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    items
}

/// Publishes `reason` with `note` about `subject`, then lists the Events as [`events`] does.
async fn publish(
    recorder: &Recorder,
    api: &Api<K8sEvent>,
    subject: &ObjectReference,
    reason: &str,
    note: &str,
) -> Vec<K8sEvent> {
    recorder
        .publish(&event(reason, note), subject)
        .await
        .unwrap();
    events(api).await
}

fn count(e: &K8sEvent) -> Option<i32> {
    e.series.as_ref().map(|s| s.count)
}

#[tokio::test]
async fn a_repeat_patches_the_series_of_one_event() {
    let client = common::client().await;
    let (api, subject) = regarding(&client, "ev-series").await;
    let recorder = Recorder::new(client.clone(), reporter());

    let first = publish(&recorder, &api, &subject, "Flapping", "first").await;
    assert_eq!(first.len(), 1);
    let e = &first[0];
    let name = e.metadata.name.clone().unwrap();
    assert!(name.starts_with("subject."), "{name}");
    assert_eq!(e.reason.as_deref(), Some("Flapping"));
    assert_eq!(e.action.as_deref(), Some("Reconcile"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.note.as_deref(), Some("first"));
    assert_eq!(e.reporting_controller.as_deref(), Some("spark-webhook"));
    assert_eq!(e.reporting_instance.as_deref(), Some("e2e-events-0"));
    assert_eq!(e.regarding.as_ref().unwrap().uid, subject.uid);
    assert!(e.event_time.is_some());
    assert_eq!(count(e), None);

    // The note is not part of an event's identity: as with kube's recorder, the first stays.
    let after = publish(&recorder, &api, &subject, "Flapping", "second").await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(count(&after[0]), Some(2));
    assert_eq!(after[0].note.as_deref(), Some("first"));
    let observed = after[0].series.as_ref().unwrap().last_observed_time.0;
    assert!(observed >= e.event_time.as_ref().unwrap().0);

    let after = publish(&recorder, &api, &subject, "Flapping", "third").await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(count(&after[0]), Some(3));

    // Another reason is another Event.
    assert_eq!(
        publish(&recorder, &api, &subject, "Other", "x").await.len(),
        2
    );
}

#[tokio::test]
async fn a_repeat_of_a_deleted_event_creates_a_new_one() {
    let client = common::client().await;
    let (api, subject) = regarding(&client, "ev-gone").await;
    let recorder = Recorder::new(client.clone(), reporter());

    let first = publish(&recorder, &api, &subject, "Flapping", "first").await;
    assert_eq!(first.len(), 1);
    let old = first[0].metadata.name.clone().unwrap();
    api.delete(&old, &DeleteParams::default()).await.unwrap();

    let now = publish(&recorder, &api, &subject, "Flapping", "second").await;
    assert_eq!(now.len(), 1, "{now:?}");
    let new = now[0].metadata.name.clone().unwrap();
    assert_ne!(new, old);
    assert_eq!(count(&now[0]), None);
    assert_eq!(now[0].note.as_deref(), Some("second"));

    // The new Event is the one the next repeat extends.
    let now = publish(&recorder, &api, &subject, "Flapping", "third").await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].metadata.name.as_deref(), Some(new.as_str()));
    assert_eq!(count(&now[0]), Some(2));
}

#[tokio::test]
async fn an_event_forgotten_at_the_cap_starts_a_new_event() {
    let client = common::client().await;
    let (api, subject) = regarding(&client, "ev-cap").await;
    let recorder = Recorder::with_capacity(client.clone(), reporter(), 1);

    recorder.publish(&event("A", "a"), &subject).await.unwrap();
    recorder.publish(&event("B", "b"), &subject).await.unwrap();
    // A was dropped to make room for B: its repeat is a new Event, not an error.
    let all = publish(&recorder, &api, &subject, "A", "a again").await;
    let reasons: Vec<_> = all.iter().map(|e| e.reason.as_deref().unwrap()).collect();
    assert_eq!(reasons, ["A", "B", "A"]);
    assert!(all.iter().all(|e| e.series.is_none()), "{all:?}");
}

#[tokio::test]
async fn a_long_non_ascii_message_gets_an_event_with_its_note_cut_within_1024_bytes() {
    let client = common::client().await;
    let (api, subject) = regarding(&client, "ev-note").await;
    let recorder = Recorder::new(client.clone(), reporter());
    // 2000 characters of 3 bytes each (6000 bytes).
    let message = "日".repeat(2000);

    // The apiserver's limit is on bytes: 1000 such characters (the old cut) are refused.
    let refused = recorder
        .publish(&event("TooLong", &"日".repeat(1000)), &subject)
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(events(&api).await.is_empty());

    let all = publish(
        &recorder,
        &api,
        &subject,
        "Failed",
        &spark_webhook::events::note(&message),
    )
    .await;
    assert_eq!(all.len(), 1, "{all:?}");
    let note = all[0].note.as_deref().unwrap();
    assert!(note.len() <= 1024, "{} bytes", note.len());
    // Valid UTF-8 (a String), and as much of the message as fits: 341 whole characters.
    assert_eq!(note, "日".repeat(341));
}
