//! `kibana.alert.reason`: the one-line summary Kibana shows for every alert (spec §7), rebuilt from
//! the same fields and the same presence rules as Kibana's `buildReasonMessageUtil`.

use super::get_path;
use serde_json::Value;

/// A field's text for the reason, or `None` when Kibana treats it as absent: null, a value without a
/// JavaScript `.length` (numbers, booleans, objects — so a numeric `source.port` never shows), empty,
/// or exactly `"-"` / `["-"]`. Arrays are joined with `", "` like `Array.join`.
fn present(doc: &Value, path: &str) -> Option<String> {
    match get_path(doc, path)? {
        Value::String(s) if s.is_empty() || s == "-" => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            if items.is_empty() || (items.len() == 1 && items[0] == "-") {
                return None;
            }
            let parts: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    Value::Object(_) => "[object Object]".to_string(),
                    other => other.to_string(),
                })
                .collect();
            Some(parts.join(", "))
        }
        _ => None,
    }
}

/// Builds the reason from an alert document's source (nested or dotted fields), the alert severity and
/// the rule name:
/// `[<category> ]event[ with][ process P,][ parent process PP,][ file F,][ source IP][:PORT,]`
/// `[ destination IP][:PORT,][ by USER][ on HOST] created <severity> alert <name>.`
pub fn build_reason(doc: &Value, severity: &str, rule_name: &str) -> String {
    let category = present(doc, "event.category");
    let process = present(doc, "process.name");
    let parent = present(doc, "process.parent.name");
    let file = present(doc, "file.name");
    let src = present(doc, "source.ip");
    let src_port = present(doc, "source.port");
    let dst = present(doc, "destination.ip");
    let dst_port = present(doc, "destination.port");
    let user = present(doc, "user.name");
    let host = present(doc, "host.name");

    let mut out = String::new();
    if let Some(c) = &category {
        out.push_str(c);
        out.push(' ');
    }
    out.push_str("event");
    let interesting = [&process, &parent, &file, &src, &src_port, &dst, &dst_port];
    if interesting.iter().any(|v| v.is_some()) {
        out.push_str(" with");
    }
    if let Some(v) = process {
        out.push_str(&format!(" process {v},"));
    }
    if let Some(v) = parent {
        out.push_str(&format!(" parent process {v},"));
    }
    if let Some(v) = file {
        out.push_str(&format!(" file {v},"));
    }
    if let Some(v) = src {
        out.push_str(&format!(" source {v}"));
    }
    if let Some(v) = src_port {
        out.push_str(&format!(":{v},"));
    }
    if let Some(v) = dst {
        out.push_str(&format!(" destination {v}"));
    }
    if let Some(v) = dst_port {
        out.push_str(&format!(":{v},"));
    }
    if let Some(v) = user {
        out.push_str(&format!(" by {v}"));
    }
    if let Some(v) = host {
        out.push_str(&format!(" on {v}"));
    }
    out.push_str(&format!(" created {severity} alert {rule_name}."));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn real_kibana_example_shape() {
        // Spec §7 real example: nothing but host.name present.
        let doc = json!({"host": {"name": "DC01.lab2019.local"}, "event": {"category": []}});
        assert_eq!(build_reason(&doc, "high", "PKINIT X"), "event on DC01.lab2019.local created high alert PKINIT X.");
    }

    #[test]
    fn numeric_port_and_dash_process_are_absent_string_port_is_not() {
        let doc = json!({
            "event": {"category": ["authentication"]},
            "process": {"name": "-"},
            "source": {"ip": "127.0.0.1", "port": 0},
            "user": {"name": "Administrator"}, "host": {"name": "ws01"}
        });
        assert_eq!(
            build_reason(&doc, "high", "R"),
            "authentication event with source 127.0.0.1 by Administrator on ws01 created high alert R."
        );
        let doc = json!({"source.ip": "10.0.0.1", "source.port": "445", "process": {"name": ["a.exe", "b.exe"]},
                         "file": {"name": ["-"]}, "destination": {"ip": "10.0.0.2", "port": 80}});
        assert_eq!(
            build_reason(&doc, "low", "R"),
            "event with process a.exe, b.exe, source 10.0.0.1:445, destination 10.0.0.2 created low alert R."
        );
    }
}
