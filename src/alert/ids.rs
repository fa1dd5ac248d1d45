//! Kibana's deterministic alert ids (alert-documents spec §9). Identical inputs give identical ids,
//! which is what makes re-found events and sequences deduplicate across overlapping windows.
//! All ids are lower-case hex SHA-256 of a plain UTF-8 concatenation.

use sha2::{Digest, Sha256};

fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Event alert id: `sha256(index + id + "undefined" + space + ":" + rule_uuid)`. The literal
/// `"undefined"` is JavaScript's `String(undefined)` for the `_version` EQL hits never carry.
pub fn event_alert_id(index: &str, id: &str, space: &str, rule_uuid: &str) -> String {
    sha256_hex(&[index, id, "undefined", space, ":", rule_uuid])
}

/// Building-block ids of one sequence, from its events as `(id, index)` pairs in sequence order:
/// `base = Σ (id + index + rule_uuid)`, `bb[i] = sha256(base + i)`. No space id.
pub fn building_block_ids(events: &[(&str, &str)], rule_uuid: &str) -> Vec<String> {
    let lists: Vec<Vec<(&str, &str)>> = events.iter().map(|e| vec![*e]).collect();
    building_block_ids_from_ancestors(&lists, rule_uuid)
}

/// General form of [`building_block_ids`]: each building block contributes all of its ancestors'
/// `(id, index)` (one per block unless the events are themselves alerts), then the rule uuid.
pub fn building_block_ids_from_ancestors(ancestors: &[Vec<(&str, &str)>], rule_uuid: &str) -> Vec<String> {
    let mut base = String::new();
    for list in ancestors {
        for (id, index) in list {
            base.push_str(id);
            base.push_str(index);
        }
        base.push_str(rule_uuid);
    }
    (0..ancestors.len()).map(|i| sha256_hex(&[&base, &i.to_string()])).collect()
}

/// Shell id: `sha256(Σ_i (event_i.id + event_i.index + bb_i + "") + rule_uuid)` — the shell's
/// ancestors in order, a building block's `index` being the empty string. No space id.
pub fn shell_id(events: &[(&str, &str)], bb_ids: &[String], rule_uuid: &str) -> String {
    let mut ancestors: Vec<(&str, &str)> = Vec::with_capacity(events.len() * 2);
    for (e, bb) in events.iter().zip(bb_ids) {
        ancestors.push(*e);
        ancestors.push((bb.as_str(), ""));
    }
    shell_id_from_ancestors(&ancestors, rule_uuid)
}

/// General form of [`shell_id`] over the shell's full ancestor list `(id, index)`.
pub fn shell_id_from_ancestors(ancestors: &[(&str, &str)], rule_uuid: &str) -> String {
    let mut parts: Vec<&str> = Vec::with_capacity(ancestors.len() * 2 + 1);
    for (id, index) in ancestors {
        parts.push(id);
        parts.push(index);
    }
    parts.push(rule_uuid);
    sha256_hex(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Spec §9.4 vector 1, taken from a real Kibana alert.
    #[test]
    fn event_alert_vector() {
        assert_eq!(
            event_alert_id(
                ".ds-winlogbeat-8.19.12-2026.03.19-000001",
                "k4DvQp0B8MuvJ8LEKdpI",
                "default",
                "78430c9f-6d5e-4a09-b929-048a418c6220"
            ),
            "3390cb159697656ff943da9e53b9c9d64054203c7b1795014a8da6c9d0389eb8"
        );
    }

    // Spec §9.4 vector 2: a real 10-event sequence from Kibana 9.0.1.
    #[test]
    fn ten_event_sequence_vector() {
        let idx = ".ds-logs-system.security-default-2025.05.30-000002";
        let rule = "0945c418-c530-45ea-b998-02350c260c5b";
        let ids: Vec<String> = "LMNOPQRSTU".chars().map(|c| format!("AZcvdRS9iYAeD95vW3W{c}")).collect();
        let events: Vec<(&str, &str)> = ids.iter().map(|i| (i.as_str(), idx)).collect();
        let bbs = building_block_ids(&events, rule);
        let expected = [
            "5a630b9d49ee43c356b485e947ee4b431513d3a284354b6fcae9cc5e57d0d61f",
            "8af33ff57cb1050c6334494cc334917700d78681743a1083334fcf35bd987b11",
            "4a0832eb41f37735211036abfcba23e412959084fe482a53bd217dec835afe9c",
            "d7d897fd15b95a780c60d503550b279f5c3c634e73c604786df15fcdbab41aef",
            "fe9349f6282ded70b9f2be636db22ed005d55c2c3b894ffcf967d681e24b7186",
            "c76ff77fbc9e8faae91eb171c68ff7f2c1b175075d9e22d83a0d6fc194297254",
            "a7a1dfe87281a52f01dd46fbfcc99efe81fb38cbfbc491ff8f1d8fc6f810dfc8",
            "f4cea659202a5c5057748bb2a3e8a543d8bc660e606f80eca2b1d36eae2aee8a",
            "398b9778f9a79cfdae8365a4db3484053e53ce281889d99377b90dd342fcf22c",
            "22b271ad8d48aa30470c60d38fffea9007072d8a19d068abd9e71d1dd2b3707c",
        ];
        assert_eq!(bbs, expected);
        assert_eq!(
            shell_id(&events, &bbs, rule),
            "10da92e0b4351ac7b6a3460814f87d13204b7dad67818290dadffdbfff7482b1"
        );
    }

    // Spec §9.5 worked examples for the seed rules.
    #[test]
    fn seed_rule_worked_examples() {
        let idx = ".ds-logs-system.security-default-2026.05.20-000001";
        assert_eq!(
            event_alert_id(idx, "Pc3kLZYBd1Xk0aQ7mX2C", "default", "5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10"),
            "6d15af6dd1d859e30d5c6ea8a354ab7e6b57eb67dca50e5d90e8896ce41f80bf"
        );
        let rule = "7b1c2a9e-3f0d-4c55-9a11-0d6e2f4b8c01";
        let events = [("Nq3kLZYBd1Xk0aQ7mX2A", idx), ("Ob3kLZYBd1Xk0aQ7mX2B", idx)];
        let bbs = building_block_ids(&events, rule);
        assert_eq!(bbs[0], "c2cd89d997be182db1bbeb67089c750a9911c619225247d181c6db45061efd8d");
        assert_eq!(bbs[1], "8d1d8af1c392637281cc8483be9fd005f6cd6fdfbd117a3771102755f4682794");
        assert_eq!(
            shell_id(&events, &bbs, rule),
            "3a760c8c835d6516cf4fcc4882d3420b34e710e7c0dc2529164e97474884d780"
        );
    }

    #[test]
    fn ids_depend_on_space_and_order() {
        let a = event_alert_id("i", "1", "default", "r");
        assert_ne!(a, event_alert_id("i", "1", "other", "r"));
        let fwd = building_block_ids(&[("a", "i"), ("b", "i")], "r");
        let rev = building_block_ids(&[("b", "i"), ("a", "i")], "r");
        assert_ne!(fwd[0], rev[1]);
    }
}
