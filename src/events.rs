//! Kubernetes Events (`events.k8s.io/v1`) on our objects, a repeat folded into a series.
//!
//! On the wire this does what kube-runtime's `Recorder` did: an Event created in the regarding
//! object's namespace, named `<regarding name>.<hex nanoseconds>`, and a repeat of the same
//! event (type, action, reason, regarding, related) within six minutes a merge PATCH of that
//! Event's `series` (count 2, 3, ...; lastObservedTime) instead of a new object. The RBAC it
//! needs is the same: create and patch on events.k8s.io events.
//!
//! What differs is memory and time. kube's recorder kept every Event it had published, whole,
//! for six minutes and scanned all of them under a write lock on every publish (2.8 MiB at 1000
//! apps, quadratic under a burst). Here [`SeriesCache`] keeps per event only what a repeat needs
//! (16 bytes behind a 64-bit key), holds at most [`MAX_TRACKED`] of them, and expires old ones
//! at most once a minute or when full. And a repeat whose Event is gone (deleted, or expired by
//! the apiserver's event TTL) creates a fresh Event instead of failing with 404.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use thiserror::Error;

/// The event to publish and who publishes it: kube-runtime's plain data types, kept so callers
/// describe events as before.
pub use kube::runtime::events::{Event, EventType, Reporter};

/// The longest note an Event can have, in bytes: the apiserver refuses an events.k8s.io/v1
/// Event whose `note` is longer (a limit on bytes, not characters: 1000 characters of `é` are
/// 2000 bytes, and such an Event was refused whole).
pub const MAX_NOTE_BYTES: usize = 1024;

/// `text` as an Event's note: cut at the last character boundary within [`MAX_NOTE_BYTES`].
pub fn note(text: &str) -> String {
    // `str::floor_char_boundary` once the MSRV (1.89) reaches 1.91.
    let mut end = text.len().min(MAX_NOTE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// How long after its last observation an event can still become (or extend) a series: six
/// minutes, as in client-go and kube-runtime.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Most events remembered for series at once, whatever the number of apps: 25 bytes per table
/// bucket (key, [`Seen`], control byte), and 4096 entries take 8192 buckets at the table's 7/8
/// load factor, so ~200 KiB at most (kube's recorder held ~2 KiB per event). Beyond it the
/// oldest are forgotten, and a repeat of a forgotten event creates a new Event object instead of
/// patching a series: `kubectl describe` still shows it, only less folded. Repeats are rare (the
/// regarding reference carries the object's resourceVersion, which changes with every status
/// write), so most entries are never used again and losing the oldest costs little.
pub const MAX_TRACKED: usize = 4096;

/// Expired entries are swept at most this often (or when the cache is full), not on every
/// publish: one O(n) pass a minute instead of one per Event.
const SWEEP_EVERY: u32 = 60;

/// When full with live entries, this fraction of the cap (the oldest) goes at once, so the scan
/// that finds them is paid once per `cap / EVICT_FRACTION` new events, not on every one.
const EVICT_FRACTION: usize = 8;

/// Publishes Events; cheap to clone, and the clones share one series cache.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    reporter: Reporter,
    /// Keys the hash of an event's identity: random per process, so names chosen by users
    /// (pods, apps) cannot be crafted to collide.
    keys: RandomState,
    cache: Mutex<SeriesCache>,
}

/// A publish the apiserver refused; the message carries the apiserver's reason.
#[derive(Debug, Error)]
pub enum PublishError {
    #[error("creating Event {namespace}/{name}: {source}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("patching the series of Event {namespace}/{name}: {source}")]
    Patch {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self::with_capacity(client, reporter, MAX_TRACKED)
    }

    /// A recorder remembering at most `cap` events for series.
    pub fn with_capacity(client: Client, reporter: Reporter, cap: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                reporter,
                keys: RandomState::new(),
                cache: Mutex::new(SeriesCache::new(cap, Instant::now())),
            }),
        }
    }

    /// Publishes `ev` about `regarding`: a new Event, or, for a repeat within [`SERIES_WINDOW`],
    /// a PATCH of the first one's series. Cluster-scoped objects get their Events in `default`.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), PublishError> {
        let key = event_key(&self.inner.keys, ev, regarding);
        let next = self.cache().next(key, Instant::now());
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.inner.client.clone(), namespace);
        if let Next::Patch { stamp, count } = next {
            let name = self.event_name(regarding, stamp);
            let series = EventSeries {
                count,
                last_observed_time: MicroTime(Timestamp::now()),
            };
            let body = serde_json::json!({ "series": series });
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => return Ok(()),
                // Deleted, or expired by the apiserver's event TTL: start over with a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    tracing::debug!(%namespace, %name, "the series's Event is gone; creating anew");
                }
                Err(source) => {
                    return Err(PublishError::Patch {
                        namespace: namespace.into(),
                        name,
                        source,
                    });
                }
            }
        }
        let now = Timestamp::now();
        // Names need only be unique per regarding object; a clock before 1970 is not a concern.
        let stamp = u64::try_from(now.as_nanosecond()).unwrap_or_default();
        let event = self.event(ev, regarding, now, stamp);
        if let Err(source) = events.create(&PostParams::default(), &event).await {
            return Err(PublishError::Create {
                namespace: namespace.into(),
                name: event.metadata.name.unwrap_or_default(),
                source,
            });
        }
        self.cache().created(key, stamp, Instant::now());
        Ok(())
    }

    /// The map lock, held for one map operation, never across an await. A panic elsewhere
    /// while holding it leaves the map consistent (every operation completes or does nothing).
    fn cache(&self) -> MutexGuard<'_, SeriesCache> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `<regarding name>.<stamp in hex>`: derived, not stored, since a repeat has the same
    /// regarding object (part of its key) and the same reporter (one per recorder).
    fn event_name(&self, regarding: &ObjectReference, stamp: u64) -> String {
        let base = regarding
            .name
            .as_deref()
            .unwrap_or(&self.inner.reporter.controller);
        format!("{base}.{stamp:x}")
    }

    fn event(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
        stamp: u64,
    ) -> K8sEvent {
        let reporter = &self.inner.reporter;
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(self.event_name(regarding, stamp)),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(reporter.controller.clone()),
            reporting_instance: Some(
                reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| reporter.controller.clone()),
            ),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            note: ev.note.clone(),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            ..K8sEvent::default()
        }
    }
}

/// An event's identity, hashed: its type, action, reason, regarding and related objects (every
/// field of the references, as kube-runtime compared them). The reporter is one per recorder,
/// so not part of it. 64 keyed bits: among [`MAX_TRACKED`] entries a collision (a repeat
/// patching another event's series) has a chance of about 1 in 10^12.
fn event_key(keys: &impl BuildHasher, ev: &Event, regarding: &ObjectReference) -> u64 {
    let mut h = keys.build_hasher();
    ev.type_.hash(&mut h);
    ev.action.hash(&mut h);
    ev.reason.hash(&mut h);
    hash_reference(regarding, &mut h);
    match &ev.secondary {
        None => h.write_u8(0),
        Some(related) => {
            h.write_u8(1);
            hash_reference(related, &mut h);
        }
    }
    h.finish()
}

fn hash_reference(r: &ObjectReference, h: &mut impl Hasher) {
    // Destructured so that a field added to ObjectReference fails to compile here.
    let ObjectReference {
        api_version,
        field_path,
        kind,
        name,
        namespace,
        resource_version,
        uid,
    } = r;
    (
        api_version,
        field_path,
        kind,
        name,
        namespace,
        resource_version,
        uid,
    )
        .hash(h);
}

/// What a publish does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Not seen within the window (or forgotten): create an Event.
    Create,
    /// A repeat: set the series of the Event created at `stamp` to `count`.
    Patch { stamp: u64, count: i32 },
}

/// Per event, what its next repeat needs.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The creation time in the Event's name (nanoseconds since the epoch).
    stamp: u64,
    /// Last observed, in whole seconds since the cache's epoch.
    last: u32,
    /// Observations so far (1 until the first repeat).
    count: i32,
}

/// The recorder's memory of recent events, with no I/O and the clock passed in, so that keying,
/// counting, expiry and the cap are tested without a cluster.
struct SeriesCache {
    entries: HashMap<u64, Seen>,
    cap: usize,
    epoch: Instant,
    /// When (seconds since `epoch`) the next sweep of expired entries is due.
    next_sweep: u32,
}

impl SeriesCache {
    fn new(cap: usize, epoch: Instant) -> Self {
        Self {
            entries: HashMap::new(),
            cap: cap.max(1),
            epoch,
            next_sweep: SWEEP_EVERY,
        }
    }

    fn secs(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.epoch).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    fn live(seen: &Seen, now: u32) -> bool {
        // Whole seconds: an entry lives between 6 and 7 minutes, never less than the window.
        u64::from(now) <= u64::from(seen.last) + SERIES_WINDOW.as_secs()
    }

    /// Decides a publish of `key`; a repeat is counted now, so concurrent repeats get distinct
    /// counts (a failed PATCH then leaves a gap in the numbering, which is harmless).
    fn next(&mut self, key: u64, now: Instant) -> Next {
        let now = self.secs(now);
        if now >= self.next_sweep {
            self.expire(now);
        }
        match self.entries.get_mut(&key) {
            Some(seen) if Self::live(seen, now) => {
                seen.count = seen.count.saturating_add(1);
                seen.last = now;
                Next::Patch {
                    stamp: seen.stamp,
                    count: seen.count,
                }
            }
            _ => Next::Create,
        }
    }

    /// Remembers the Event just created for `key` (replacing an older one's entry).
    fn created(&mut self, key: u64, stamp: u64, now: Instant) {
        let now = self.secs(now);
        if self.entries.len() >= self.cap && !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        let seen = Seen {
            stamp,
            last: now,
            count: 1,
        };
        self.entries.insert(key, seen);
    }

    fn expire(&mut self, now: u32) {
        self.entries.retain(|_, seen| Self::live(seen, now));
        self.next_sweep = now.saturating_add(SWEEP_EVERY);
    }

    /// Expired entries first; if that is not enough, the least recently observed eighth.
    fn make_room(&mut self, now: u32) {
        self.expire(now);
        if self.entries.len() < self.cap {
            return;
        }
        let drop = (self.cap / EVICT_FRACTION).max(1);
        let mut by_age: Vec<(u32, u64)> = self.entries.iter().map(|(k, s)| (s.last, *k)).collect();
        by_age.select_nth_unstable(drop - 1);
        for (_, key) in &by_age[..drop] {
            self.entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_cut_at_a_character_boundary_within_its_limit_in_bytes() {
        assert_eq!(note("short"), "short");
        let ascii = "a".repeat(MAX_NOTE_BYTES + 5);
        assert_eq!(note(&ascii), ascii[..MAX_NOTE_BYTES]);
        assert_eq!(note(&ascii[..MAX_NOTE_BYTES]), ascii[..MAX_NOTE_BYTES]);
        // 2 bytes each: exactly 512 fit.
        assert_eq!(note(&"é".repeat(2000)), "é".repeat(512));
        // 3 and 4 bytes each: the character the limit falls inside is left out, not split.
        assert_eq!(note(&"€".repeat(2000)), "€".repeat(341));
        assert_eq!(note(&"𝄞".repeat(2000)), "𝄞".repeat(256));
        let mixed = format!("x{}", "€".repeat(2000));
        assert_eq!(note(&mixed), format!("x{}", "€".repeat(341)));
        assert_eq!(note(&mixed).len(), 1024);
    }

    fn ev(reason: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some("a note".into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    fn app(name: &str, rv: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("sparkoperator.k8s.io/v1beta2".into()),
            kind: Some("SparkApplication".into()),
            name: Some(name.into()),
            namespace: Some("spark-jobs".into()),
            resource_version: Some(rv.into()),
            uid: Some("0d1f5e4e-8d35-4c7b-9f0e-3a1c2b4d5e6f".into()),
            field_path: None,
        }
    }

    #[test]
    fn the_key_is_the_event_identity_not_its_note() {
        let keys = RandomState::new();
        let key = |ev: &Event, r: &ObjectReference| event_key(&keys, ev, r);
        let base = key(&ev("SparkApplicationSubmitted"), &app("pi", "1"));

        let mut other_note = ev("SparkApplicationSubmitted");
        other_note.note = Some("something else".into());
        assert_eq!(key(&other_note, &app("pi", "1")), base);

        assert_ne!(key(&ev("SparkDriverRunning"), &app("pi", "1")), base);
        assert_ne!(
            key(&ev("SparkApplicationSubmitted"), &app("pi2", "1")),
            base
        );
        assert_ne!(key(&ev("SparkApplicationSubmitted"), &app("pi", "2")), base);
        let mut warning = ev("SparkApplicationSubmitted");
        warning.type_ = EventType::Warning;
        assert_ne!(key(&warning, &app("pi", "1")), base);
        let mut action = ev("SparkApplicationSubmitted");
        action.action = "MutatePod".into();
        assert_ne!(key(&action, &app("pi", "1")), base);
        let mut related = ev("SparkApplicationSubmitted");
        related.secondary = Some(app("driver", "1"));
        assert_ne!(key(&related, &app("pi", "1")), base);
        // Field boundaries count: "ab"+"c" is not "a"+"bc".
        let mut a = app("pi", "1");
        a.kind = Some("ab".into());
        a.name = Some("c".into());
        let mut b = app("pi", "1");
        b.kind = Some("a".into());
        b.name = Some("bc".into());
        let e = ev("X");
        assert_ne!(key(&e, &a), key(&e, &b));
    }

    #[test]
    fn repeats_count_a_series_on_the_first_events_name() {
        let t0 = Instant::now();
        let mut cache = SeriesCache::new(16, t0);
        assert_eq!(cache.next(7, t0), Next::Create);
        cache.created(7, 1234, t0);
        for (count, secs) in [(2, 10), (3, 20), (4, 200)] {
            let at = t0 + Duration::from_secs(secs);
            assert_eq!(cache.next(7, at), Next::Patch { stamp: 1234, count });
        }
        assert_eq!(cache.next(8, t0), Next::Create);
    }

    #[test]
    fn an_event_not_repeated_within_the_window_starts_over() {
        let t0 = Instant::now();
        let mut cache = SeriesCache::new(16, t0);
        cache.created(1, 10, t0);
        // Each repeat extends the window from its own observation.
        let t1 = t0 + SERIES_WINDOW - Duration::from_secs(1);
        assert_eq!(
            cache.next(1, t1),
            Next::Patch {
                stamp: 10,
                count: 2
            }
        );
        let late = t1 + SERIES_WINDOW + Duration::from_secs(1);
        assert_eq!(cache.next(1, late), Next::Create);
        cache.created(1, 20, late);
        assert_eq!(
            cache.next(1, late + Duration::from_secs(1)),
            Next::Patch {
                stamp: 20,
                count: 2
            }
        );
    }

    #[test]
    fn a_recreated_event_replaces_its_entry() {
        let t0 = Instant::now();
        let mut cache = SeriesCache::new(16, t0);
        cache.created(1, 10, t0);
        assert_eq!(
            cache.next(1, t0),
            Next::Patch {
                stamp: 10,
                count: 2
            }
        );
        // The PATCH found the Event gone (404), and the recorder created a new one.
        cache.created(1, 11, t0);
        assert_eq!(
            cache.next(1, t0),
            Next::Patch {
                stamp: 11,
                count: 2
            }
        );
        assert_eq!(cache.entries.len(), 1);
    }

    #[test]
    fn expired_entries_are_swept_once_a_minute_not_on_every_publish() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut cache = SeriesCache::new(16, t0);
        cache.created(1, 10, at(0)); // expires after 360 s
        cache.created(2, 20, at(41)); // after 401 s
        cache.created(3, 30, at(300)); // after 660 s
        // The first sweep is due at 60 s: nothing has expired.
        let _ = cache.next(9, at(61));
        assert_eq!(cache.entries.len(), 3);
        // At 400 s one is due again (121 s): entry 1 goes.
        let _ = cache.next(9, at(400));
        assert!(!cache.entries.contains_key(&1));
        assert_eq!(cache.entries.len(), 2);
        // Entry 2 expires at 402 s, but the next sweep is not before 460 s; a publish of it
        // still starts over, and the entry is replaced.
        let _ = cache.next(9, at(459));
        assert!(cache.entries.contains_key(&2));
        assert_eq!(cache.next(2, at(459)), Next::Create);
        let _ = cache.next(9, at(460));
        assert_eq!(cache.entries.keys().collect::<Vec<_>>(), [&3]);
    }

    #[test]
    fn at_the_cap_expired_entries_go_first() {
        let t0 = Instant::now();
        let mut cache = SeriesCache::new(16, t0);
        for key in 0..8 {
            cache.created(key, key, t0);
        }
        let t1 = t0 + Duration::from_secs(30);
        for key in 8..16 {
            cache.created(key, key, t1);
        }
        let later = t0 + SERIES_WINDOW + Duration::from_secs(2);
        cache.created(100, 100, later);
        assert_eq!(cache.entries.len(), 9);
        assert!((0..8).all(|k| !cache.entries.contains_key(&k)));
        assert!((8..16).all(|k| cache.entries.contains_key(&k)));
    }

    #[test]
    fn at_the_cap_with_all_live_the_oldest_eighth_goes() {
        let t0 = Instant::now();
        let cap = 64;
        let mut cache = SeriesCache::new(cap, t0);
        for key in 0..cap as u64 {
            cache.created(key, key, t0 + Duration::from_secs(key));
        }
        // A repeat refreshes key 0: it is no longer among the oldest.
        assert!(matches!(
            cache.next(0, t0 + Duration::from_secs(100)),
            Next::Patch { .. }
        ));
        cache.created(1000, 1000, t0 + Duration::from_secs(101));
        assert_eq!(cache.entries.len(), cap - cap / EVICT_FRACTION + 1);
        assert!(cache.entries.contains_key(&0));
        assert!((1..=8).all(|k| !cache.entries.contains_key(&k)));
        assert!((9..cap as u64).all(|k| cache.entries.contains_key(&k)));
        // Room for an eighth more before the next scan; the map never exceeds the cap.
        for key in 2000..2100 {
            cache.created(key, key, t0 + Duration::from_secs(102));
            assert!(cache.entries.len() <= cap);
        }
        // Full, a known key is updated in place: nothing is evicted.
        let mut key = 3000;
        while cache.entries.len() < cap {
            cache.created(key, key, t0 + Duration::from_secs(103));
            key += 1;
        }
        let sorted = |c: &SeriesCache| {
            let mut keys: Vec<u64> = c.entries.keys().copied().collect();
            keys.sort_unstable();
            keys
        };
        let before = sorted(&cache);
        cache.created(before[0], 1, t0 + Duration::from_secs(104));
        assert_eq!(sorted(&cache), before);
    }

    #[test]
    fn an_entry_stays_small() {
        assert_eq!(std::mem::size_of::<(u64, Seen)>(), 24);
    }
}
