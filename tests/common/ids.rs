//! Kibana's alert ids written from the formulas of `shared/spec/alert-documents.md` §9, independently of
//! `esdetect::alert` (so a test compares the program against the spec, never against itself).

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `text`.
pub fn sha(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// §9.1: an event alert's id, `sha256(index + id + String(undefined) + space + ":" + rule uuid)`.
pub fn event_alert_id(index: &str, id: &str, space: &str, rule_uuid: &str) -> String {
    sha(&format!("{index}{id}undefined{space}:{rule_uuid}"))
}

/// §9.2 and §9.3: a sequence of `(index, id)` events → (shell id, building-block ids in event order).
/// Neither depends on the space.
pub fn sequence_ids(events: &[(&str, &str)], rule_uuid: &str) -> (String, Vec<String>) {
    let base: String = events.iter().map(|(index, id)| format!("{id}{index}{rule_uuid}")).collect();
    let bbs: Vec<String> = (0..events.len()).map(|i| sha(&format!("{base}{i}"))).collect();
    let shell_input: String =
        events.iter().zip(&bbs).map(|((index, id), bb)| format!("{id}{index}{bb}")).collect::<String>() + rule_uuid;
    (sha(&shell_input), bbs)
}
