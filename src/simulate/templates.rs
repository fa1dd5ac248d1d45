//! ECS index templates for the event indices the seed rules read, for clusters that have none.
//!
//! On a real stack Fleet/integrations install templates that map `source.ip`/`host.ip` as `ip`,
//! `process.pid` as `long` and strings as `keyword`. A bare node (the lab, the test node) has none, so
//! dynamically mapped strings become `text` and an EQL rule fails just as it would in Elasticsearch
//! (`first argument of [cidrMatch] must be [ip]`). [`event_index_templates`] builds composable templates
//! from the same built-in ECS table the evaluator types fields with
//! ([`Mapping::builtin_ecs`](crate::eql::mapping::Mapping::builtin_ecs)), so what the simulator writes is
//! mapped the way the engine expects.
//!
//! The templates are deliberately weak and simple:
//! - priority [`EVENT_TEMPLATE_PRIORITY`] (50): on a real cluster the built-in `logs` template
//!   (`logs-*-*`, priority 100, with `ecs@mappings`) or an integration's own template wins, and those are
//!   the mappings that count there;
//! - no `data_stream` section: the built-in `logs` template declares one, ours must not, because the
//!   nodes they are meant for may have no data-stream support (the test node does not); events then go
//!   to plain indices, which the rules' patterns (`logs-system.security*`, …) match just the same.

use crate::eql::mapping::{FieldType, Mapping};
use serde_json::{json, Map, Value};

/// Priority of the event templates: below the `logs-*-*` built-in (100) so a real cluster's own wins.
pub const EVENT_TEMPLATE_PRIORITY: u64 = 50;

/// The index patterns the seed rules read, with the name of the template esdetect puts for each.
pub const EVENT_INDEX_PATTERNS: &[(&str, &str)] = &[
    ("esdetect-ecs-logs-system.security", "logs-system.security-*"),
    ("esdetect-ecs-logs-windows.forwarded", "logs-windows.forwarded-*"),
    ("esdetect-ecs-winlogbeat", "winlogbeat-*"),
];

/// `(template name, composable index template body)` for each pattern in [`EVENT_INDEX_PATTERNS`].
pub fn event_index_templates() -> Vec<(String, Value)> {
    let template = ecs_index_template_section();
    EVENT_INDEX_PATTERNS
        .iter()
        .map(|(name, pattern)| {
            let body = json!({
                "index_patterns": [pattern],
                "priority": EVENT_TEMPLATE_PRIORITY,
                "template": template.clone(),
                "_meta": {
                    "managed_by": "esdetect",
                    "description": "ECS mappings for Windows Security events where no integration template exists"
                }
            });
            (name.to_string(), body)
        })
        .collect()
}

/// The `template` section (settings + mappings) shared by all event templates; also usable as the body
/// of a plain index-create request.
pub fn ecs_index_template_section() -> Value {
    json!({
        "settings": {"number_of_replicas": 0},
        "mappings": ecs_mappings(&Mapping::builtin_ecs()),
    })
}

/// `{"dynamic_templates": […], "properties": {…}}` for every path of `mapping`.
pub fn ecs_mappings(mapping: &Mapping) -> Value {
    let mut properties = Map::new();
    for path in mapping.paths() {
        let Some(field) = mapping.get(path) else { continue };
        let Some(leaf) = leaf_mapping(&field.ty, field.ignore_above) else { continue };
        insert_path(&mut properties, path, leaf);
    }
    json!({
        "dynamic_templates": [
            {"strings_as_keyword": {
                "match_mapping_type": "string",
                "mapping": {"type": "keyword", "ignore_above": 1024}
            }}
        ],
        "properties": properties,
    })
}

/// The Elasticsearch mapping of one leaf, or `None` for types that have no standalone mapping here
/// (aliases and objects are structure, not leaves).
fn leaf_mapping(ty: &FieldType, ignore_above: Option<usize>) -> Option<Value> {
    match ty {
        FieldType::Alias(_) | FieldType::Object => None,
        FieldType::Text { keyword_subfield: Some(sub) } => {
            Some(json!({"type": "text", "fields": {sub.as_str(): {"type": "keyword", "ignore_above": 1024}}}))
        }
        FieldType::Other(name) if name.contains(' ') => None,
        other => {
            let mut m = json!({"type": other.es_name()});
            if let Some(limit) = ignore_above.filter(|_| matches!(other, FieldType::Keyword)) {
                m["ignore_above"] = json!(limit);
            }
            Some(m)
        }
    }
}

/// Puts `leaf` at the dotted `path` as nested `properties`. A path whose prefix is already a leaf (or
/// whose leaf is already an object) is skipped: one mapping cannot make a field both.
fn insert_path(properties: &mut Map<String, Value>, path: &str, leaf: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut current = properties;
    for part in parts {
        let entry = current.entry(part.to_string()).or_insert_with(|| json!({"properties": {}}));
        let Some(next) = entry.get_mut("properties").and_then(Value::as_object_mut) else { return };
        current = next;
    }
    if !current.contains_key(last) {
        current.insert(last.to_string(), leaf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(template: &'a Value, path: &str) -> &'a Value {
        let mut v = &template["template"]["mappings"];
        for part in path.split('.') {
            v = &v["properties"][part];
        }
        v
    }

    #[test]
    fn three_templates_for_the_rule_patterns() {
        let templates = event_index_templates();
        let patterns: Vec<&str> =
            templates.iter().map(|(_, t)| t["index_patterns"][0].as_str().unwrap_or("")).collect();
        assert_eq!(patterns, ["logs-system.security-*", "logs-windows.forwarded-*", "winlogbeat-*"]);
        for (name, t) in &templates {
            assert!(name.starts_with("esdetect-"), "{name}");
            assert_eq!(t["priority"], json!(50));
            assert!(t.get("data_stream").is_none(), "must not declare a data stream: {t}");
            assert_eq!(t["template"]["settings"]["number_of_replicas"], json!(0));
        }
    }

    #[test]
    fn ecs_types_where_the_rules_need_them() {
        let (_, t) = &event_index_templates()[0];
        assert_eq!(field(t, "source.ip"), &json!({"type": "ip"}));
        assert_eq!(field(t, "host.ip"), &json!({"type": "ip"}));
        assert_eq!(field(t, "process.pid"), &json!({"type": "long"}));
        assert_eq!(field(t, "event.category"), &json!({"type": "keyword", "ignore_above": 1024}));
        assert_eq!(field(t, "event.code"), &json!({"type": "keyword", "ignore_above": 1024}));
        assert_eq!(field(t, "winlog.computer_name")["type"], "keyword");
        assert_eq!(field(t, "@timestamp"), &json!({"type": "date"}));
        assert_eq!(field(t, "event.ingested"), &json!({"type": "date"}));
        // Nested, not dotted keys.
        assert!(t["template"]["mappings"]["properties"].get("source.ip").is_none());
        // Unlisted strings (winlog.event_data.*) become keyword.
        let dynamic = &t["template"]["mappings"]["dynamic_templates"][0]["strings_as_keyword"];
        assert_eq!(dynamic["match_mapping_type"], "string");
        assert_eq!(dynamic["mapping"]["type"], "keyword");
    }

    #[test]
    fn conflicting_paths_are_skipped_not_panicking() {
        let mut props = Map::new();
        insert_path(&mut props, "a.b", json!({"type": "keyword"}));
        insert_path(&mut props, "a.b.c", json!({"type": "long"}));
        insert_path(&mut props, "a", json!({"type": "long"}));
        assert_eq!(Value::Object(props), json!({"a": {"properties": {"b": {"type": "keyword"}}}}));
    }
}
