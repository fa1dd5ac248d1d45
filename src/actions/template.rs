//! Message templates: Mustache, as Kibana's actions use it, rendered by the `mustache` crate.
//!
//! Two Kibana behaviours the plain Mustache spec does not have are reproduced around the crate:
//! `{{x}}` is never HTML-escaped (Kibana replaces Mustache's HTML escaping), and the webhook body escapes
//! string values for JSON instead, so `"{{context.rule.name}}"` stays valid JSON whatever the name holds.
//! An object or list interpolated directly (`{{context.alerts}}`) renders as its JSON, as in Kibana;
//! sections (`{{#context.alerts}}…{{/context.alerts}}`) iterate as usual.

use regex::Regex;
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// How interpolated strings are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As is (Slack, Teams, PagerDuty, email).
    None,
    /// JSON string escaping without the quotes (webhook bodies).
    Json,
}

/// A template problem, with the template's name.
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

/// Renders `template` over `data`.
pub fn render(name: &str, template: &str, data: &Value, escape: Escape) -> Result<String, TemplateError> {
    let err = |message: String| TemplateError { name: name.to_string(), message };
    let compiled = mustache::compile_str(&unescaped_tags(template)).map_err(|e| err(e.to_string()))?;
    let view = prepare(data, escape, &objects_interpolated(template));
    // The crate panics on a value it cannot interpolate; `prepare` turns those into JSON text, and a
    // case it missed must fail this message, not the run.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compiled.render_to_string(&view))) {
        Ok(rendered) => rendered.map_err(|e| err(e.to_string())),
        Err(_) => Err(err("a tag names a value that cannot be rendered as text; name one of its fields".into())),
    }
}

/// Checks that a template parses (at load time, so a typo is a configuration error, not a failed send).
pub fn check(name: &str, template: &str) -> Result<(), TemplateError> {
    mustache::compile_str(&unescaped_tags(template))
        .map(|_| ())
        .map_err(|e| TemplateError { name: name.to_string(), message: e.to_string() })
}

/// `{{name}}` → `{{&name}}`: Mustache's own unescaped form, so the crate never HTML-escapes.
fn unescaped_tags(template: &str) -> String {
    static PLAIN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(^|[^{])\{\{(\s*)([^{#/^!>=&\s])").expect("valid regex"));
    PLAIN.replace_all(template, "$1{{&$2$3").into_owned()
}

/// Dotted names the template interpolates (not sections): those holding an object or list are replaced
/// by their JSON text in the view.
fn objects_interpolated(template: &str) -> Vec<String> {
    static TAG: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\{\{\{?\s*&?\s*([A-Za-z0-9_.@-]+)\s*\}?\}\}").expect("valid regex"));
    TAG.captures_iter(template).map(|c| c[1].to_string()).collect()
}

/// The view: strings escaped, dotted keys expanded (alert documents are flat, `kibana.alert.rule.name`),
/// and interpolated objects turned into their JSON.
fn prepare(data: &Value, escape: Escape, interpolated: &[String]) -> Value {
    let mut view = expand_dotted(data);
    for path in interpolated {
        let parts: Vec<&str> = path.split('.').collect();
        stringify_everywhere(&mut view, &parts);
    }
    escape_strings(&mut view, escape);
    view
}

/// [`stringify_at`] from the root and from every nested object, since inside a section names resolve
/// against the section's element.
fn stringify_everywhere(v: &mut Value, path: &[&str]) {
    stringify_at(v, path);
    match v {
        Value::Object(m) => m.values_mut().for_each(|x| stringify_everywhere(x, path)),
        Value::Array(a) => a.iter_mut().for_each(|x| stringify_everywhere(x, path)),
        _ => {}
    }
}

fn stringify_at(v: &mut Value, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else { return };
    let Some(child) = v.as_object_mut().and_then(|m| m.get_mut(*first)) else { return };
    if rest.is_empty() {
        if child.is_object() || child.is_array() {
            *child = Value::String(child.to_string());
        }
    } else {
        stringify_at(child, rest);
    }
}

/// `{"a.b": 1}` → `{"a": {"b": 1}}`, recursively (Kibana expands alert documents the same way before
/// handing them to actions).
pub fn expand_dotted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                let val = expand_dotted(val);
                let mut parts = k.split('.').collect::<Vec<_>>();
                let last = parts.pop().unwrap_or_default();
                let mut node = &mut out;
                for p in parts {
                    let entry = node.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
                    if !entry.is_object() {
                        *entry = Value::Object(Map::new());
                    }
                    node = entry.as_object_mut().expect("just made an object");
                }
                match (node.get_mut(last), val) {
                    (Some(Value::Object(existing)), Value::Object(new)) => existing.extend(new),
                    (_, val) => {
                        node.insert(last.to_string(), val);
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(expand_dotted).collect()),
        other => other.clone(),
    }
}

fn escape_strings(v: &mut Value, escape: Escape) {
    match v {
        Value::String(s) if escape == Escape::Json => {
            let quoted = Value::String(std::mem::take(s)).to_string();
            *s = quoted[1..quoted.len() - 1].to_string();
        }
        Value::Object(m) => m.values_mut().for_each(|x| escape_strings(x, escape)),
        Value::Array(a) => a.iter_mut().for_each(|x| escape_strings(x, escape)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({
            "context": {"rule": {"name": "SMB <relay> \"x\""}, "alerts": [
                {"_id": "a1", "host.name": "dc01", "kibana.alert.severity": "high"},
                {"_id": "a2", "host.name": "ws02", "kibana.alert.severity": "high"}
            ]},
            "state": {"signals_count": 2}
        })
    }

    #[test]
    fn kibana_variables_sections_and_no_html_escaping() {
        let out = render("t", "{{context.rule.name}}: {{state.signals_count}} alert(s){{#context.alerts}} [{{_id}} {{host.name}}]{{/context.alerts}}", &data(), Escape::None).unwrap();
        assert_eq!(out, "SMB <relay> \"x\": 2 alert(s) [a1 dc01] [a2 ws02]");
        assert_eq!(render("t", "{{^context.none}}none{{/context.none}}", &data(), Escape::None).unwrap(), "none");
        assert_eq!(render("t", "{{{context.rule.name}}}", &data(), Escape::None).unwrap(), "SMB <relay> \"x\"");
    }

    #[test]
    fn webhook_bodies_escape_json_and_objects_render_as_json() {
        let out = render("t", r#"{"rule": "{{context.rule.name}}", "n": {{state.signals_count}}}"#, &data(), Escape::Json).unwrap();
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["rule"], "SMB <relay> \"x\"");
        assert_eq!(parsed["n"], 2);
        let out = render("t", "{{context.alerts}}", &data(), Escape::None).unwrap();
        let alerts: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(alerts[1]["host"]["name"], "ws02");
        // An object inside a section renders as JSON too.
        let out = render("t", "{{#context.alerts}}{{host}};{{/context.alerts}}", &data(), Escape::None).unwrap();
        assert_eq!(out, r#"{"name":"dc01"};{"name":"ws02"};"#);
    }

    #[test]
    fn broken_templates_are_named() {
        let e = check("rule r1 action 0 message", "{{#context.alerts}}x").unwrap_err().to_string();
        assert!(e.contains("rule r1 action 0 message"), "{e}");
    }
}
