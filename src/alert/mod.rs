//! Kibana-compatible alert documents and their deterministic ids, built from matched events.
//!
//! Pure: no I/O and no clock — every time comes in through [`AlertContext`]. The contract is
//! `shared/spec/alert-documents.md`: event alerts (§5), sequence building blocks + shell (§6), reason
//! (§7), ids (§9), and a compatible subset of the alerts-index mapping (§1) in [`mapping`].

pub mod document;
pub mod ids;
pub mod intersect;
pub mod mapping;
pub mod object_hash;
pub mod reason;
pub mod source;
pub mod suppression;

pub use document::{event_alert, event_alerts, is_own_alert, sequence_alerts, AlertContext, AlertDoc, ExecutionType};
pub use ids::{building_block_ids, event_alert_id, shell_id};

use serde_json::Value;

/// The first value at a dotted path, through nested objects or dotted keys (the literal key wins).
/// Arrays are returned as they are, not searched.
pub fn get_path<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    get_path_in(doc.as_object()?, path)
}

/// [`get_path`] in an object that is not wrapped in a [`Value`].
pub fn get_path_in<'a>(map: &'a serde_json::Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    for (i, _) in path.match_indices('.') {
        if let Some(child) = map.get(&path[..i]) {
            if let Some(v) = get_path(child, &path[i + 1..]) {
                return Some(v);
            }
        }
    }
    None
}
