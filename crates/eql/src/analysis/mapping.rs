//! Field mappings: which Elasticsearch type each field has, because EQL's results depend on it.
//!
//! Literal coercion (`event.code == 5145` against a keyword), what counts as "missing" (`ignore_above`,
//! malformed numbers/IPs), `string(ip)` output and join-key types are all decided by the mapping, not by the
//! JSON in `_source` (spec §5). A [`Mapping`] comes from three places, later ones overriding earlier ones:
//! the built-in ECS table ([`Mapping::builtin_ecs`]), a mapping file or a cluster `GET _mapping` response
//! ([`Mapping::from_es_mapping`], [`Mapping::from_es_mapping_file`]), and — for fields present in data but
//! mapped nowhere — Elasticsearch's dynamic-mapping defaults ([`Mapping::with_dynamic_defaults`]).
//!
//! Offline mode ([`Mapping::set_infer_unknown`]): when no mapping is known for a field, it is not an
//! "Unknown column" error; instead each value is typed from its JSON type at evaluation time
//! (string → keyword, integer → long, float → double, bool → boolean). See [`crate::value::ValueKind::Inferred`].

use crate::value::ValueKind;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The Elasticsearch field types EQL distinguishes.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    Keyword,
    Wildcard,
    ConstantKeyword,
    /// `text`; EQL compares on the keyword-family sub-field (`fields.<name>`) when there is one.
    Text { keyword_subfield: Option<String> },
    Long,
    Integer,
    Short,
    Byte,
    Double,
    Float,
    HalfFloat,
    ScaledFloat,
    UnsignedLong,
    Ip,
    Date,
    DateNanos,
    Boolean,
    Version,
    Object,
    /// `alias` to another field path.
    Alias(String),
    /// Any type EQL has no special rules for (`geo_point`, `binary`, …).
    Other(String),
}

impl FieldType {
    /// Parses an Elasticsearch `"type"` string.
    pub fn from_es(name: &str) -> FieldType {
        match name {
            "keyword" => FieldType::Keyword,
            "wildcard" => FieldType::Wildcard,
            "constant_keyword" => FieldType::ConstantKeyword,
            "text" | "match_only_text" => FieldType::Text { keyword_subfield: None },
            "long" => FieldType::Long,
            "integer" => FieldType::Integer,
            "short" => FieldType::Short,
            "byte" => FieldType::Byte,
            "double" => FieldType::Double,
            "float" => FieldType::Float,
            "half_float" => FieldType::HalfFloat,
            "scaled_float" => FieldType::ScaledFloat,
            "unsigned_long" => FieldType::UnsignedLong,
            "ip" => FieldType::Ip,
            "date" => FieldType::Date,
            "date_nanos" => FieldType::DateNanos,
            "boolean" => FieldType::Boolean,
            "version" => FieldType::Version,
            "object" | "nested" | "flattened" => FieldType::Object,
            other => FieldType::Other(other.to_string()),
        }
    }

    /// How values of this type are normalised and compared.
    pub fn value_kind(&self) -> ValueKind {
        match self {
            FieldType::Keyword | FieldType::Wildcard | FieldType::ConstantKeyword => ValueKind::Keyword,
            FieldType::Text { .. } => ValueKind::Text,
            FieldType::Long
            | FieldType::Integer
            | FieldType::Short
            | FieldType::Byte
            | FieldType::UnsignedLong => ValueKind::Long,
            FieldType::Double | FieldType::Float | FieldType::HalfFloat | FieldType::ScaledFloat => {
                ValueKind::Double
            }
            FieldType::Ip => ValueKind::Ip,
            FieldType::Date => ValueKind::Date,
            FieldType::DateNanos => ValueKind::DateNanos,
            FieldType::Boolean => ValueKind::Bool,
            FieldType::Version => ValueKind::Version,
            FieldType::Object => ValueKind::Unsupported("object"),
            FieldType::Alias(_) => ValueKind::Unsupported("alias"),
            FieldType::Other(_) => ValueKind::Unsupported("unsupported type"),
        }
    }

    /// Name for messages.
    pub fn es_name(&self) -> String {
        match self {
            FieldType::Keyword => "keyword".into(),
            FieldType::Wildcard => "wildcard".into(),
            FieldType::ConstantKeyword => "constant_keyword".into(),
            FieldType::Text { .. } => "text".into(),
            FieldType::Long => "long".into(),
            FieldType::Integer => "integer".into(),
            FieldType::Short => "short".into(),
            FieldType::Byte => "byte".into(),
            FieldType::Double => "double".into(),
            FieldType::Float => "float".into(),
            FieldType::HalfFloat => "half_float".into(),
            FieldType::ScaledFloat => "scaled_float".into(),
            FieldType::UnsignedLong => "unsigned_long".into(),
            FieldType::Ip => "ip".into(),
            FieldType::Date => "date".into(),
            FieldType::DateNanos => "date_nanos".into(),
            FieldType::Boolean => "boolean".into(),
            FieldType::Version => "version".into(),
            FieldType::Object => "object".into(),
            FieldType::Alias(p) => format!("alias of {p}"),
            FieldType::Other(t) => t.clone(),
        }
    }
}

/// One mapped field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    pub ty: FieldType,
    /// Keyword strings longer than this (in UTF-16 units, like Java) are not indexed → missing.
    pub ignore_above: Option<usize>,
    /// Value indexed in place of an explicit JSON `null`.
    pub null_value: Option<Value>,
    /// For a multi-field (`hostname.keyword`): the `_source` path its values come from (`hostname`).
    pub source_path: Option<String>,
}

impl FieldMapping {
    pub fn new(ty: FieldType) -> Self {
        FieldMapping { ty, ignore_above: None, null_value: None, source_path: None }
    }
    fn keyword_ecs() -> Self {
        FieldMapping { ignore_above: Some(1024), ..FieldMapping::new(FieldType::Keyword) }
    }
}

/// A field as the evaluator sees it after following aliases and text → keyword sub-fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedField {
    /// The path written in the query.
    pub name: String,
    /// Where the values live in `_source`.
    pub source_path: String,
    pub kind: ValueKind,
    pub ignore_above: Option<usize>,
    pub null_value: Option<Value>,
    /// The declared type, for messages (`None` for inferred fields).
    pub declared: Option<FieldType>,
}

/// Why a mapping could not be read.
#[derive(Debug)]
pub struct MappingError(pub String);

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for MappingError {}

/// Field path → type table, plus the offline-inference switch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    fields: BTreeMap<String, FieldMapping>,
    infer_unknown: bool,
    /// Unlisted `winlog.event_data.*` fields are keyword (ECS dynamic template).
    event_data_keyword: bool,
}

impl Mapping {
    /// An empty mapping (every field unknown).
    pub fn new() -> Self {
        Mapping::default()
    }

    /// Offline mode: fields unknown to the mapping are typed per value from JSON instead of being an
    /// "Unknown column" verification error.
    pub fn set_infer_unknown(&mut self, on: bool) {
        self.infer_unknown = on;
    }

    /// Builder form of [`Mapping::set_infer_unknown`].
    pub fn infer_unknown(mut self, on: bool) -> Self {
        self.infer_unknown = on;
        self
    }

    pub fn is_inferring(&self) -> bool {
        self.infer_unknown
    }

    pub fn insert(&mut self, path: impl Into<String>, field: FieldMapping) {
        self.fields.insert(path.into(), field);
    }

    pub fn get(&self, path: &str) -> Option<&FieldMapping> {
        self.fields.get(path)
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Every mapped path.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(|s| s.as_str())
    }

    /// Overrides this mapping with every entry of `other` (a file or cluster mapping over the built-in
    /// table). The inference flag is kept if either side has it.
    pub fn merge(&mut self, other: &Mapping) {
        for (k, v) in &other.fields {
            self.fields.insert(k.clone(), v.clone());
        }
        self.infer_unknown |= other.infer_unknown;
        self.event_data_keyword |= other.event_data_keyword;
    }

    /// Resolves a query field: follows an alias, uses a text field's keyword sub-field, falls back to
    /// per-value inference in offline mode. `None` = unknown field.
    pub fn resolve(&self, path: &str) -> Option<ResolvedField> {
        let mut target = path;
        let mut fm = self.fields.get(path);
        if let Some(FieldMapping { ty: FieldType::Alias(p), .. }) = fm {
            target = p.as_str();
            fm = self.fields.get(target);
        }
        let fm = match fm {
            Some(fm) => fm,
            None => {
                // `winlog.event_data.*` is mapped keyword by ECS dynamic templates.
                if self.event_data_keyword && target.starts_with("winlog.event_data.") {
                    return Some(ResolvedField {
                        name: path.to_string(),
                        source_path: target.to_string(),
                        kind: ValueKind::Keyword,
                        ignore_above: Some(1024),
                        null_value: None,
                        declared: Some(FieldType::Keyword),
                    });
                }
                if self.infer_unknown {
                    return Some(ResolvedField {
                        name: path.to_string(),
                        source_path: target.to_string(),
                        kind: ValueKind::Inferred,
                        ignore_above: None,
                        null_value: None,
                        declared: None,
                    });
                }
                return None;
            }
        };
        let source_path = fm.source_path.clone().unwrap_or_else(|| target.to_string());
        let (kind, ignore_above, null_value) = match &fm.ty {
            FieldType::Text { keyword_subfield: Some(sub) } => {
                let subm = self.fields.get(&format!("{target}.{sub}"));
                let kind = subm.map(|m| m.ty.value_kind()).unwrap_or(ValueKind::Keyword);
                (kind, subm.and_then(|m| m.ignore_above), subm.and_then(|m| m.null_value.clone()))
            }
            ty => (ty.value_kind(), fm.ignore_above, fm.null_value.clone()),
        };
        Some(ResolvedField {
            name: path.to_string(),
            source_path,
            kind,
            ignore_above,
            null_value,
            declared: Some(fm.ty.clone()),
        })
    }

    /// The built-in table of ECS / Windows fields used by the seed rules and typical detection rules
    /// (spec §5.3). Keyword fields carry ECS's `ignore_above: 1024`.
    ///
    /// Fields under `winlog.event_data.` that are not listed resolve to keyword as well: the Winlogbeat and
    /// Elastic integration templates map them through a dynamic template (`winlog.event_data.*` → keyword).
    pub fn builtin_ecs() -> Mapping {
        let mut m = Mapping { event_data_keyword: true, ..Mapping::new() };
        for f in ["@timestamp", "event.ingested", "event.created", "event.start", "event.end"] {
            m.insert(f, FieldMapping::new(FieldType::Date));
        }
        const KEYWORDS: &[&str] = &[
            "event.category", "event.action", "event.outcome", "event.code", "event.kind", "event.type",
            "event.provider", "event.dataset", "event.module", "event.id", "event.hash",
            "host.os.type", "host.os.family", "host.os.name", "host.os.platform", "host.os.version",
            "host.os.kernel", "host.name", "host.hostname", "host.id", "host.architecture", "host.mac",
            "host.domain",
            "user.name", "user.domain", "user.id", "user.email", "user.target.name", "user.target.domain",
            "user.target.id", "user.effective.name", "user.effective.domain", "user.effective.id",
            "winlog.computer_name", "winlog.logon.type", "winlog.logon.id", "winlog.channel",
            "winlog.event_id", "winlog.provider_name", "winlog.provider_guid", "winlog.record_id",
            "winlog.task", "winlog.opcode", "winlog.keywords", "winlog.activity_id", "winlog.api",
            "winlog.user.identifier", "winlog.user.name", "winlog.user.domain",
            "winlog.user.type",
            "process.name", "process.executable", "process.command_line", "process.entity_id",
            "process.working_directory", "process.args", "process.hash.md5", "process.hash.sha1",
            "process.hash.sha256", "process.parent.name", "process.parent.executable",
            "process.parent.command_line", "process.parent.entity_id", "process.parent.args",
            "process.pe.original_file_name", "process.code_signature.subject_name",
            "process.code_signature.status",
            "file.name", "file.path", "file.directory", "file.extension", "file.hash.md5",
            "file.hash.sha1", "file.hash.sha256", "file.pe.original_file_name",
            "registry.path", "registry.key", "registry.value", "registry.hive", "registry.data.strings",
            "registry.data.type",
            "service.name", "service.type",
            "source.domain", "destination.domain", "network.protocol", "network.transport",
            "network.direction", "dns.question.name", "url.full", "url.original", "url.domain",
            "group.name", "group.id", "group.domain",
            "agent.type", "agent.id", "agent.name", "agent.version", "data_stream.dataset",
            "data_stream.namespace", "data_stream.type", "ecs.version", "message_keyword",
            "related.user", "related.hosts", "related.hash", "tags",
        ];
        for f in KEYWORDS {
            m.insert(*f, FieldMapping::keyword_ecs());
        }
        for f in ["host.ip", "source.ip", "destination.ip", "related.ip", "client.ip", "server.ip"] {
            m.insert(f, FieldMapping::new(FieldType::Ip));
        }
        for f in [
            "process.pid", "process.parent.pid", "process.thread.id", "process.ppid", "source.port",
            "destination.port", "client.port", "server.port", "event.sequence", "event.severity",
            "source.bytes", "destination.bytes", "network.bytes", "file.size", "event.duration",
            "winlog.process.pid", "winlog.process.thread.id",
        ] {
            m.insert(f, FieldMapping::new(FieldType::Long));
        }
        m.insert("event.risk_score", FieldMapping::new(FieldType::Double));
        m.insert("message", FieldMapping::new(FieldType::Text { keyword_subfield: None }));
        m
    }

    /// Parses an Elasticsearch mapping: `{"properties":…}`, `{"mappings":{"properties":…}}`, or a whole
    /// `GET _mapping` response (`{"index":{"mappings":{…}}, …}`, merged across indices; a later index wins a
    /// conflict).
    pub fn from_es_mapping(json: &Value) -> Result<Mapping, MappingError> {
        let mut m = Mapping::new();
        let obj = json.as_object().ok_or_else(|| MappingError("mapping must be a JSON object".into()))?;
        if let Some(props) = obj.get("properties") {
            m.add_properties("", props)?;
        } else if let Some(mappings) = obj.get("mappings") {
            let props = mappings.get("properties").unwrap_or(&Value::Null);
            if !props.is_null() {
                m.add_properties("", props)?;
            }
        } else {
            // `GET _mapping`: index name → {"mappings": {...}}.
            let mut any = false;
            for (_index, body) in obj {
                if let Some(props) = body.get("mappings").and_then(|mm| mm.get("properties")) {
                    m.add_properties("", props)?;
                    any = true;
                } else if body.get("mappings").is_some() {
                    any = true;
                }
            }
            if !any && !obj.is_empty() {
                return Err(MappingError(
                    "not an Elasticsearch mapping: expected \"properties\", \"mappings\" or a GET _mapping response"
                        .into(),
                ));
            }
        }
        Ok(m)
    }

    /// Reads a mapping file. Lines starting with `#` are dropped and the ES QA placeholder
    /// `[runtime_random_keyword_type]` becomes `keyword` (as the conformance `*.mapping` files need).
    pub fn from_es_mapping_file(path: impl AsRef<Path>) -> Result<Mapping, MappingError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| MappingError(format!("cannot read mapping file {}: {e}", path.display())))?;
        Mapping::from_es_mapping_str(&text)
            .map_err(|e| MappingError(format!("mapping file {}: {}", path.display(), e.0)))
    }

    /// [`Mapping::from_es_mapping_file`] on text already in memory.
    pub fn from_es_mapping_str(text: &str) -> Result<Mapping, MappingError> {
        let cleaned: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| l.replace("[runtime_random_keyword_type]", "keyword"))
            .collect::<Vec<_>>()
            .join("\n");
        let json: Value = serde_json::from_str(&cleaned)
            .map_err(|e| MappingError(format!("invalid JSON: {e} (line {}, column {})", e.line(), e.column())))?;
        Mapping::from_es_mapping(&json)
    }

    fn add_properties(&mut self, prefix: &str, props: &Value) -> Result<(), MappingError> {
        let props = props
            .as_object()
            .ok_or_else(|| MappingError(format!("\"properties\" of {prefix:?} must be an object")))?;
        for (name, def) in props {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            let def = def
                .as_object()
                .ok_or_else(|| MappingError(format!("definition of field {path:?} must be an object")))?;
            let ty_name = def.get("type").and_then(|t| t.as_str());
            if let Some(sub) = def.get("properties") {
                // Object field (explicit `object` or implied by `properties`).
                self.add_properties(&path, sub)?;
                if ty_name.is_none() || ty_name == Some("object") || ty_name == Some("nested") {
                    continue;
                }
            }
            let Some(ty_name) = ty_name else { continue };
            let mut ty = if ty_name == "alias" {
                let target = def.get("path").and_then(|p| p.as_str()).ok_or_else(|| {
                    MappingError(format!("alias field {path:?} has no \"path\""))
                })?;
                FieldType::Alias(target.to_string())
            } else {
                FieldType::from_es(ty_name)
            };
            if let Some(Value::Object(subs)) = def.get("fields") {
                let mut keyword_sub = None;
                for (sub_name, sub_def) in subs {
                    let sub_ty = sub_def.get("type").and_then(|t| t.as_str()).map(FieldType::from_es);
                    let Some(sub_ty) = sub_ty else { continue };
                    if keyword_sub.is_none()
                        && matches!(sub_ty, FieldType::Keyword | FieldType::Wildcard | FieldType::ConstantKeyword)
                    {
                        keyword_sub = Some(sub_name.clone());
                    }
                    let mut fm = FieldMapping::new(sub_ty);
                    fm.ignore_above = sub_def.get("ignore_above").and_then(|v| v.as_u64()).map(|v| v as usize);
                    fm.null_value = sub_def.get("null_value").cloned();
                    fm.source_path = Some(path.clone());
                    self.fields.insert(format!("{path}.{sub_name}"), fm);
                }
                if let FieldType::Text { keyword_subfield } = &mut ty {
                    *keyword_subfield = keyword_sub;
                }
            }
            let mut fm = FieldMapping::new(ty);
            fm.ignore_above = def.get("ignore_above").and_then(|v| v.as_u64()).map(|v| v as usize);
            fm.null_value = def.get("null_value").cloned();
            self.fields.insert(path, fm);
        }
        Ok(())
    }

    /// Adds Elasticsearch's dynamic-mapping defaults for every leaf field present in `docs` but not
    /// mapped: JSON strings → `text` with a `keyword` sub-field (`ignore_above: 256`), integers → `long`,
    /// floats → `float`, booleans → `boolean`. The first document that has the field decides, as in ES.
    /// (ES would also detect dates in strings — `date_detection` — which the conformance data never hits.)
    pub fn with_dynamic_defaults(mut self, docs: &[Value]) -> Mapping {
        for d in docs {
            self.add_dynamic("", d);
        }
        self
    }

    fn add_dynamic(&mut self, prefix: &str, v: &Value) {
        let Value::Object(map) = v else { return };
        for (k, v) in map {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            self.add_dynamic_value(&path, v);
        }
    }

    fn add_dynamic_value(&mut self, path: &str, v: &Value) {
        match v {
            Value::Object(_) => self.add_dynamic(path, v),
            Value::Array(items) => {
                for it in items {
                    self.add_dynamic_value(path, it);
                }
            }
            Value::Null => {}
            _ if self.fields.contains_key(path) => {}
            Value::String(_) => {
                self.fields.insert(
                    path.to_string(),
                    FieldMapping::new(FieldType::Text { keyword_subfield: Some("keyword".into()) }),
                );
                let mut kw = FieldMapping::new(FieldType::Keyword);
                kw.ignore_above = Some(256);
                kw.source_path = Some(path.to_string());
                self.fields.insert(format!("{path}.keyword"), kw);
            }
            Value::Number(n) => {
                let ty = if n.is_f64() { FieldType::Float } else { FieldType::Long };
                self.fields.insert(path.to_string(), FieldMapping::new(ty));
            }
            Value::Bool(_) => {
                self.fields.insert(path.to_string(), FieldMapping::new(FieldType::Boolean));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_types_and_event_data_fallback() {
        let m = Mapping::builtin_ecs();
        assert_eq!(m.resolve("source.ip").unwrap().kind, ValueKind::Ip);
        assert_eq!(m.resolve("process.pid").unwrap().kind, ValueKind::Long);
        let kw = m.resolve("event.code").unwrap();
        assert_eq!((kw.kind.clone(), kw.ignore_above), (ValueKind::Keyword, Some(1024)));
        assert_eq!(m.resolve("winlog.event_data.SomethingNew").unwrap().kind, ValueKind::Keyword);
        assert!(m.resolve("no.such.field").is_none());
        assert_eq!(m.clone().infer_unknown(true).resolve("no.such.field").unwrap().kind, ValueKind::Inferred);
    }

    #[test]
    fn conformance_mapping_file_with_alias_and_subfields() {
        let text = "# comment\n{\"properties\":{\"event_type\":{\"type\":\"[runtime_random_keyword_type]\"},\
            \"event\":{\"properties\":{\"category\":{\"type\":\"alias\",\"path\":\"event_type\"}}},\
            \"hostname\":{\"type\":\"text\",\"fields\":{\"[runtime_random_keyword_type]\":{\"type\":\"[runtime_random_keyword_type]\",\"ignore_above\":256}}},\
            \"opt\":{\"type\":\"keyword\",\"null_value\":\"NULL\"}}}";
        let m = Mapping::from_es_mapping_str(text).unwrap();
        let cat = m.resolve("event.category").unwrap();
        assert_eq!((cat.source_path.as_str(), cat.kind.clone()), ("event_type", ValueKind::Keyword));
        let h = m.resolve("hostname").unwrap();
        assert_eq!((h.kind.clone(), h.ignore_above), (ValueKind::Keyword, Some(256)));
        let hk = m.resolve("hostname.keyword").unwrap();
        assert_eq!(hk.source_path, "hostname");
        assert_eq!(m.resolve("opt").unwrap().null_value, Some(json!("NULL")));
    }

    #[test]
    fn get_mapping_response_merges_indices_and_overrides_builtin() {
        let resp = json!({
            "a": {"mappings": {"properties": {"x": {"type": "long"}}}},
            "b": {"mappings": {"properties": {"y": {"type": "ip"}, "event": {"properties": {"code": {"type": "long"}}}}}}
        });
        let file = Mapping::from_es_mapping(&resp).unwrap();
        let mut m = Mapping::builtin_ecs();
        m.merge(&file);
        assert_eq!(m.resolve("x").unwrap().kind, ValueKind::Long);
        assert_eq!(m.resolve("y").unwrap().kind, ValueKind::Ip);
        assert_eq!(m.resolve("event.code").unwrap().kind, ValueKind::Long);
        assert!(Mapping::from_es_mapping(&json!([1])).is_err());
    }

    #[test]
    fn dynamic_defaults_only_for_unmapped_fields() {
        let m = Mapping::from_es_mapping(&json!({"properties": {"pid": {"type": "keyword"}}}))
            .unwrap()
            .with_dynamic_defaults(&[json!({"pid": 5, "destination_address": "10.0.0.1", "n": 3, "o": {"f": 1.5}})]);
        assert_eq!(m.resolve("pid").unwrap().kind, ValueKind::Keyword);
        let d = m.resolve("destination_address").unwrap();
        assert_eq!((d.kind.clone(), d.ignore_above), (ValueKind::Keyword, Some(256)));
        assert_eq!(m.resolve("n").unwrap().kind, ValueKind::Long);
        assert_eq!(m.resolve("o.f").unwrap().kind, ValueKind::Double);
    }
}
