//! The status write every controller makes: a JSON merge patch (RFC 7396) of what changed, on
//! the status subresource, carrying the resourceVersion the object was read at. The apiserver
//! applies it to that version only and answers 409 otherwise, so a stale view never overwrites
//! a newer status; the same guarantee as a PUT of the whole object, without sending the spec
//! back for the apiserver to decode, convert and compare.
//!
//! Our statuses omit cleared members (Go's `omitempty`) rather than write them empty, so the
//! patch is the difference to the status read, cleared members as `null`: a merge patch of the
//! new status alone would leave them stale.

use serde::Serialize;
use serde_json::{Value, json};

/// The merge patch that turns `old` (the status read, `null` if none) into `new`, with
/// `resource_version` as its precondition; None without a resourceVersion (then nothing holds
/// the write to the version read: the caller reads again).
pub fn status_patch(
    resource_version: Option<&str>,
    old: &impl Serialize,
    new: &impl Serialize,
) -> Option<Value> {
    let version = resource_version?;
    let old = serde_json::to_value(old).ok()?;
    let new = serde_json::to_value(new).ok()?;
    Some(json!({
        "metadata": {"resourceVersion": version},
        "status": merge_diff(&old, &new),
    }))
}

/// RFC 7396 the other way round: the merge patch that turns `old` into `new`. Members that
/// changed (objects recursively, anything else whole), `null` for members `new` no longer has.
fn merge_diff(old: &Value, new: &Value) -> Value {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return new.clone();
    };
    let mut patch = serde_json::Map::new();
    for (key, value) in new {
        match old.get(key) {
            Some(was) if was == value => {}
            Some(was) => {
                patch.insert(key.clone(), merge_diff(was, value));
            }
            None => {
                patch.insert(key.clone(), value.clone());
            }
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    Value::Object(patch)
}
