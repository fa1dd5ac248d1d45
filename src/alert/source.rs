//! Layer 1 of an alert document (spec §3): the event's `_source` as Kibana copies it
//! (`traverseAndMutateDoc`). Top-level `kibana*` / `signal*` / `threshold_result*` keys are dropped,
//! values that would not index under the ECS mapping are dropped, empty objects and arrays are dropped,
//! every `event.*` leaf is copied to a flat `kibana.alert.original_event.<path>` key, `data_stream.*` to
//! `kibana.alert.original_data_stream.*`, and the source's `event.kind` is removed.
//!
//! ECS type checks cover a **subset** of ECS (see [`ecs_type`]): the fields Windows Security events
//! and the alerts UI use. Fields outside it (e.g. `winlog.*`, which ECS does not define) are copied
//! as they are, which is what Kibana does for non-ECS fields.

use super::get_path_in;
use serde_json::{Map, Value};

/// The ECS field types esdetect checks values against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsType {
    Keyword,
    Long,
    Float,
    Ip,
    Date,
    Boolean,
    /// An ECS object (field set): a primitive value there is dropped.
    Object,
}

/// ECS type of a dotted path, for the checked subset.
pub fn ecs_type(path: &str) -> Option<EcsType> {
    use EcsType::*;
    Some(match path {
        "@timestamp" | "event.created" | "event.ingested" | "event.start" | "event.end" | "process.start"
        | "process.parent.start" | "file.created" | "file.mtime" | "file.ctime" | "file.accessed" => Date,
        "source.port" | "destination.port" | "client.port" | "server.port" | "process.pid" | "process.parent.pid"
        | "process.thread.id" | "process.ppid" | "event.severity" | "event.sequence" | "event.duration"
        | "source.bytes" | "destination.bytes" | "source.packets" | "destination.packets" | "file.size"
        | "http.response.status_code" | "process.exit_code" => Long,
        "event.risk_score" | "event.risk_score_norm" => Float,
        "source.ip" | "destination.ip" | "client.ip" | "server.ip" | "host.ip" | "related.ip" | "source.nat.ip"
        | "destination.nat.ip" | "observer.ip" => Ip,
        "process.interactive" | "process.parent.interactive" => Boolean,
        "event.action" | "event.category" | "event.code" | "event.kind" | "event.outcome" | "event.type"
        | "event.provider" | "event.dataset" | "event.module" | "event.id" | "event.hash" | "event.original"
        | "event.reason" | "event.reference" | "event.timezone" | "event.url" | "event.agent_id_status"
        | "host.name" | "host.hostname" | "host.id" | "host.domain" | "host.mac" | "host.architecture"
        | "host.os.type" | "host.os.family" | "host.os.name" | "host.os.platform" | "host.os.version"
        | "host.os.kernel" | "host.os.build" | "user.name" | "user.domain" | "user.id" | "user.email"
        | "user.target.name" | "user.target.domain" | "user.target.id" | "source.domain" | "source.address"
        | "destination.domain" | "destination.address" | "process.name" | "process.executable"
        | "process.command_line" | "process.entity_id" | "process.parent.name" | "process.parent.executable"
        | "file.name" | "file.path" | "file.directory" | "file.extension" | "file.target_path" | "agent.type"
        | "agent.version" | "agent.id" | "agent.name" | "agent.ephemeral_id" | "data_stream.type"
        | "data_stream.dataset" | "data_stream.namespace" | "ecs.version" | "log.level" | "log.file.path"
        | "related.user" | "related.hosts" | "related.hash" | "service.name" | "service.type" | "message"
        | "tags" | "network.protocol" | "network.transport" | "network.direction" => Keyword,
        "event" | "host" | "host.os" | "user" | "user.target" | "source" | "source.nat" | "destination"
        | "destination.nat" | "client" | "server" | "process" | "process.parent" | "process.thread" | "file"
        | "agent" | "data_stream" | "ecs" | "log" | "log.file" | "related" | "service" | "network"
        | "observer" | "http" => Object,
        _ => return None,
    })
}

/// Whether a primitive value indexes under an ECS type (JavaScript-compatible leniency: numeric
/// strings are numbers, `"true"`/`"false"` are booleans, epoch-millisecond numbers are dates).
fn valid_primitive(t: EcsType, v: &Value) -> bool {
    match t {
        EcsType::Object => false,
        EcsType::Keyword => true,
        EcsType::Long | EcsType::Float => match v {
            Value::Number(_) => true,
            Value::String(s) => s.trim().parse::<f64>().is_ok(),
            _ => false,
        },
        EcsType::Ip => v.as_str().is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        EcsType::Boolean => matches!(v, Value::Bool(_)) || matches!(v.as_str(), Some("true" | "false")),
        EcsType::Date => match v {
            Value::Number(_) => true,
            Value::String(s) => crate::eql::value::parse_date_ms(s).is_some(),
            _ => false,
        },
    }
}

/// The copied source plus the flat `original_event` / `original_data_stream` keys to add.
pub struct SourceCopy {
    /// The event's source, cleaned, in its original (usually nested) shape, without `event.kind`.
    pub source: Map<String, Value>,
    /// `kibana.alert.original_event.<path>` and `kibana.alert.original_data_stream.<f>` keys, in order.
    pub flat: Vec<(String, Value)>,
}

/// Applies the §3 source-copy rules to one event source.
pub fn copy_source(src: &Value) -> SourceCopy {
    let mut source = match src {
        Value::Object(m) => clean_object(m, "", true),
        _ => Map::new(),
    };
    let mut flat = Vec::new();
    // original_event: every leaf under `event` (nested) and every top-level dotted `event.*` key
    if let Some(Value::Object(ev)) = source.get("event") {
        flatten_into(ev, "kibana.alert.original_event.", &mut flat);
    }
    for (k, v) in &source {
        if let Some(rest) = k.strip_prefix("event.") {
            match v {
                Value::Object(m) => flatten_into(m, &format!("kibana.alert.original_event.{rest}."), &mut flat),
                other => flat.push((format!("kibana.alert.original_event.{rest}"), other.clone())),
            }
        }
    }
    for f in ["type", "dataset", "namespace"] {
        if let Some(v) = get_path_in(&source, &format!("data_stream.{f}")) {
            flat.push((format!("kibana.alert.original_data_stream.{f}"), v.clone()));
        }
    }
    // remove the source's event.kind (the alert's flat `event.kind: signal` replaces it)
    source.remove("event.kind");
    if let Some(Value::Object(ev)) = source.get_mut("event") {
        ev.remove("kind");
        if ev.is_empty() {
            source.remove("event");
        }
    }
    SourceCopy { source, flat }
}

fn flatten_into(m: &Map<String, Value>, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (k, v) in m {
        match v {
            Value::Object(child) => flatten_into(child, &format!("{prefix}{k}."), out),
            other => out.push((format!("{prefix}{k}"), other.clone())),
        }
    }
}

fn clean_object(m: &Map<String, Value>, prefix: &str, top: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in m {
        if top && (k.starts_with("kibana") || k.starts_with("signal") || k.starts_with("threshold_result")) {
            continue;
        }
        let path = format!("{prefix}{k}");
        if let Some(v) = clean_value(v, &path) {
            out.insert(k.clone(), v);
        }
    }
    out
}

fn clean_value(v: &Value, path: &str) -> Option<Value> {
    let t = ecs_type(path);
    match v {
        Value::Object(m) => {
            if t.is_some_and(|t| t != EcsType::Object) {
                return None;
            }
            let r = clean_object(m, &format!("{path}."), false);
            (!r.is_empty()).then_some(Value::Object(r))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(|i| clean_value(i, path)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Null => Some(Value::Null),
        prim => match t {
            Some(t) if !valid_primitive(t, prim) => None,
            _ => Some(prim.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_banned_invalid_and_empty() {
        let src = json!({
            "kibana": {"x": 1}, "kibana.alert.uuid": "u", "signal": {}, "threshold_result": 1,
            "source": {"ip": "not-an-ip", "port": "abc"},
            "host": {"ip": ["10.0.0.1", "bogus"], "name": {"oops": 1}},
            "user": "flat-string-where-ecs-has-an-object",
            "winlog": {"event_data": {"empty": {}, "list": [], "keep": "-"}},
            "process": {"pid": "448"},
            "@timestamp": "2020-04-02T14:34:08.889Z",
        });
        let c = copy_source(&src);
        assert_eq!(
            Value::Object(c.source),
            json!({"host": {"ip": ["10.0.0.1"]}, "winlog": {"event_data": {"keep": "-"}},
                   "process": {"pid": "448"}, "@timestamp": "2020-04-02T14:34:08.889Z"})
        );
        assert!(c.flat.is_empty());
    }

    #[test]
    fn original_event_and_data_stream_are_flat_copies_and_kind_is_removed() {
        let src = json!({"event": {"kind": "event", "code": "5145", "category": ["network", "file"]},
                         "event.module": "system",
                         "data_stream": {"type": "logs", "dataset": "system.security", "namespace": "default"}});
        let c = copy_source(&src);
        let flat: Map<String, Value> = c.flat.into_iter().collect();
        assert_eq!(flat["kibana.alert.original_event.kind"], "event");
        assert_eq!(flat["kibana.alert.original_event.code"], "5145");
        assert_eq!(flat["kibana.alert.original_event.category"], json!(["network", "file"]));
        assert_eq!(flat["kibana.alert.original_event.module"], "system");
        assert_eq!(flat["kibana.alert.original_data_stream.dataset"], "system.security");
        assert_eq!(c.source["event"], json!({"code": "5145", "category": ["network", "file"]}));
    }
}
