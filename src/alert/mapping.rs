//! Index template for a separate alerts index (spec §1, §2 mode A/B): a **compatible subset** of
//! Kibana's `.alerts-security.alerts-*` mappings — `dynamic: false`, the `kibana.alert.*` fields
//! esdetect writes and the Security UI filters/sorts on, and the ECS fields the seed rules and the
//! alerts table use. It is not Kibana's full field map (no `signal.*` aliases, no full ECS); fields
//! outside it stay in `_source` unindexed, exactly as non-ECS fields do in Kibana's own index.

use serde_json::{json, Map, Value};

fn kw() -> Value {
    json!({"type": "keyword", "ignore_above": 1024})
}
fn date() -> Value {
    json!({"type": "date"})
}
fn long() -> Value {
    json!({"type": "long"})
}
fn ip() -> Value {
    json!({"type": "ip"})
}

/// Inserts `path` (dotted) into a `properties` tree with the leaf mapping `leaf`.
fn add(props: &mut Map<String, Value>, path: &str, leaf: Value) {
    match path.split_once('.') {
        None => {
            props.insert(path.to_string(), leaf);
        }
        Some((head, tail)) => {
            let node = props.entry(head.to_string()).or_insert_with(|| json!({"properties": {}}));
            if node.get("properties").is_none() {
                node["properties"] = json!({});
            }
            if let Some(Value::Object(child)) = node.get_mut("properties") {
                add(child, tail, leaf);
            }
        }
    }
}

/// The mapping `properties` (exposed separately for tests and for updating an existing index).
pub fn alerts_properties() -> Map<String, Value> {
    let mut p = Map::new();
    for f in ["@timestamp", "kibana.alert.original_time", "kibana.alert.start", "kibana.alert.last_detected",
              "kibana.alert.intended_timestamp", "kibana.alert.rule.execution.timestamp",
              "kibana.alert.rule.created_at", "kibana.alert.rule.updated_at",
              "event.created", "event.ingested", "event.start", "event.end"] {
        add(&mut p, f, date());
    }
    for f in ["kibana.alert.depth", "kibana.alert.group.index", "kibana.alert.rule.revision",
              "kibana.alert.rule.max_signals", "kibana.alert.rule.version",
              "source.port", "destination.port", "process.pid", "process.parent.pid", "event.severity"] {
        add(&mut p, f, long());
    }
    // Alert suppression (src/alert/suppression.rs): searched and collapsed on when merging.
    add(&mut p, "kibana.alert.instance.id", kw());
    add(&mut p, "kibana.alert.suppression.terms", json!({"properties": {"field": kw(), "value": kw()}}));
    add(&mut p, "kibana.alert.suppression.start", date());
    add(&mut p, "kibana.alert.suppression.end", date());
    add(&mut p, "kibana.alert.suppression.docs_count", long());
    add(&mut p, "kibana.alert.risk_score", json!({"type": "float"}));
    // `text`, not Kibana's `match_only_text`: the latter lives in the mapper-extras module, which not every
    // node has; searching the reason works the same.
    add(&mut p, "kibana.alert.reason", json!({"type": "keyword", "ignore_above": 1024, "fields": {"text": {"type": "text"}}}));
    add(&mut p, "kibana.alert.rule.enabled", json!({"type": "keyword"}));
    add(&mut p, "kibana.alert.rule.immutable", json!({"type": "keyword"}));
    // Parameters are kept for display only, like Kibana's `flattened`-free mapping: not indexed.
    add(&mut p, "kibana.alert.rule.parameters", json!({"type": "object", "enabled": false}));
    add(&mut p, "kibana.alert.ancestors", json!({"properties": {
        "id": kw(), "type": kw(), "index": kw(), "rule": kw(), "depth": long()
    }}));
    add(&mut p, "kibana.alert.rule.threat", json!({"properties": {
        "framework": kw(),
        "tactic": {"properties": {"id": kw(), "name": kw(), "reference": kw()}},
        "technique": {"properties": {"id": kw(), "name": kw(), "reference": kw(),
            "subtechnique": {"properties": {"id": kw(), "name": kw(), "reference": kw()}}}}
    }}));
    for f in ["kibana.space_ids", "kibana.version", "kibana.alert.uuid", "kibana.alert.status",
              "kibana.alert.workflow_status", "kibana.alert.workflow_tags", "kibana.alert.workflow_assignee_ids",
              "kibana.alert.severity", "kibana.alert.building_block_type", "kibana.alert.group.id",
              "kibana.alert.rule.uuid", "kibana.alert.rule.rule_id", "kibana.alert.rule.name",
              "kibana.alert.rule.type", "kibana.alert.rule.rule_type_id", "kibana.alert.rule.category",
              "kibana.alert.rule.consumer", "kibana.alert.rule.producer", "kibana.alert.rule.execution.uuid",
              "kibana.alert.rule.execution.type", "kibana.alert.rule.from", "kibana.alert.rule.to",
              "kibana.alert.rule.interval", "kibana.alert.rule.indices", "kibana.alert.rule.timestamp_override",
              "kibana.alert.rule.tags", "kibana.alert.rule.author", "kibana.alert.rule.license",
              "kibana.alert.rule.description", "kibana.alert.rule.references", "kibana.alert.rule.false_positives",
              "kibana.alert.rule.created_by", "kibana.alert.rule.updated_by", "kibana.alert.rule.note",
              "kibana.alert.original_data_stream.type", "kibana.alert.original_data_stream.dataset",
              "kibana.alert.original_data_stream.namespace"] {
        add(&mut p, f, kw());
    }
    for f in ["action", "category", "code", "dataset", "id", "kind", "module", "outcome", "provider", "type",
              "reason", "timezone", "agent_id_status", "hash"] {
        add(&mut p, &format!("kibana.alert.original_event.{f}"), kw());
    }
    for f in ["created", "ingested", "start", "end"] {
        add(&mut p, &format!("kibana.alert.original_event.{f}"), date());
    }
    for f in ["sequence", "severity", "duration"] {
        add(&mut p, &format!("kibana.alert.original_event.{f}"), long());
    }
    for f in ["host.ip", "source.ip", "destination.ip", "related.ip"] {
        add(&mut p, f, ip());
    }
    for f in ["event.kind", "event.action", "event.category", "event.code", "event.outcome", "event.type",
              "event.provider", "event.dataset", "event.module", "host.name", "host.hostname", "host.id",
              "host.os.type", "host.os.family", "host.os.name", "user.name", "user.domain", "user.id",
              "source.domain", "process.name", "process.executable", "process.parent.name", "file.name",
              "file.path", "agent.type", "agent.id", "agent.name", "agent.version", "data_stream.type",
              "data_stream.dataset", "data_stream.namespace", "ecs.version", "related.user", "related.hosts",
              "service.name", "winlog.computer_name", "winlog.event_id", "winlog.channel", "winlog.provider_name",
              "winlog.logon.id", "winlog.logon.type", "winlog.event_data.TargetLogonId",
              "winlog.event_data.SubjectLogonId", "winlog.event_data.TargetUserName",
              "winlog.event_data.SubjectUserName", "winlog.event_data.ShareName",
              "winlog.event_data.RelativeTargetName", "winlog.event_data.ServiceName",
              "winlog.event_data.ServiceFileName", "winlog.event_data.AuthenticationPackageName"] {
        add(&mut p, f, kw());
    }
    p
}

/// Composable index template body (`PUT _index_template/<name>`) for `index_patterns`. No `priority`:
/// the sink sets one per alias so that templates of overlapping aliases never tie.
/// Compatible subset of Kibana's security alerts mapping (see module docs).
pub fn alerts_index_template(index_patterns: &[String]) -> Value {
    json!({
        "index_patterns": index_patterns,
        "template": {
            "settings": {"index": {"hidden": true}},
            "mappings": {
                "dynamic": false,
                "_meta": {"managed_by": "esdetect", "note": "compatible subset of Kibana's .alerts-security.alerts mappings"},
                "properties": Value::Object(alerts_properties())
            }
        },
        "_meta": {"managed_by": "esdetect"}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf<'a>(t: &'a Value, path: &str) -> Option<&'a Value> {
        let mut node = &t["template"]["mappings"]["properties"];
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            node = node.get(*part)?;
            if i + 1 < parts.len() {
                node = node.get("properties")?;
            }
        }
        Some(node)
    }

    #[test]
    fn key_fields_have_kibana_types() {
        let t = alerts_index_template(&["esdetect-alerts-*".to_string()]);
        assert_eq!(t["template"]["mappings"]["dynamic"], false);
        assert_eq!(t["index_patterns"], json!(["esdetect-alerts-*"]));
        let ty = |p: &str| leaf(&t, p).and_then(|v| v.get("type")).and_then(Value::as_str).map(str::to_string);
        assert_eq!(ty("kibana.alert.uuid").as_deref(), Some("keyword"));
        assert_eq!(ty("kibana.alert.risk_score").as_deref(), Some("float"));
        assert_eq!(ty("kibana.alert.original_time").as_deref(), Some("date"));
        assert_eq!(ty("kibana.alert.group.index").as_deref(), Some("long"));
        assert_eq!(ty("kibana.alert.ancestors.depth").as_deref(), Some("long"));
        assert_eq!(ty("kibana.alert.original_event.code").as_deref(), Some("keyword"));
        assert_eq!(ty("host.ip").as_deref(), Some("ip"));
        assert_eq!(ty("event.kind").as_deref(), Some("keyword"));
        assert_eq!(ty("winlog.computer_name").as_deref(), Some("keyword"));
        assert_eq!(ty("@timestamp").as_deref(), Some("date"));
        // the alert root and the ECS `event` object coexist with their children
        assert!(leaf(&t, "kibana.alert.rule.rule_id").is_some());
        assert!(leaf(&t, "event.ingested").is_some());
    }
}
