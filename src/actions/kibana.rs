//! Actions of rules read from a Kibana export: the rule's `actions` array (connector saved-object id,
//! `action_type_id`, `params`, `frequency`) mapped onto configured connectors by their `kibana_id`.
//!
//! An export never carries connector secrets (Kibana exports connectors with `isMissingSecrets`), so a
//! Kibana connector is only usable once the configuration names it. Supported types: `.webhook`,
//! `.slack`, `.teams`, `.pagerduty`, `.email`; other types and unmapped connectors are reported, not sent.

use super::config::{ActionConfig, NotifyWhen};
use crate::rules::Rule;
use serde_json::Value;
use std::collections::BTreeMap;

/// The rule's export actions. `by_kibana_id`: Kibana connector id → (configured name, kind).
/// Returns the actions it could map and one message per action it could not.
pub fn export_actions(rule: &Rule, by_kibana_id: &BTreeMap<String, (String, &'static str)>) -> (Vec<ActionConfig>, Vec<String>) {
    let (mut actions, mut problems) = (Vec::new(), Vec::new());
    let Some(list) = rule.export_extra.get("actions").and_then(Value::as_array) else { return (actions, problems) };
    // Before 8.8 the frequency was rule-wide: `throttle` = "no_actions", "rule" (every run) or "1h"….
    let rule_throttle = rule.export_extra.get("throttle").and_then(Value::as_str);
    for (i, a) in list.iter().enumerate() {
        let at = format!("rule {} action {i}", rule.rule_id);
        let id = a["id"].as_str().unwrap_or_default();
        let type_id = a["action_type_id"].as_str().or(a["actionTypeId"].as_str()).unwrap_or_default();
        let kind = match type_id {
            ".webhook" => "webhook",
            ".slack" => "slack",
            ".teams" => "teams",
            ".pagerduty" => "pagerduty",
            ".email" => "email",
            other => {
                problems.push(format!("{at}: connector type `{other}` is not supported (webhook, slack, teams, pagerduty, email)"));
                continue;
            }
        };
        let Some((name, configured_kind)) = by_kibana_id.get(id) else {
            problems.push(format!("{at}: Kibana connector `{id}` ({type_id}) is not configured; add a [connectors.<name>] with kibana_id = \"{id}\""));
            continue;
        };
        if *configured_kind != kind {
            problems.push(format!("{at}: connector `{name}` is a {configured_kind} connector, the rule's action needs {kind}"));
            continue;
        }
        let params = &a["params"];
        let text = |k: &str| params[k].as_str().map(str::to_string);
        let frequency = &a["frequency"];
        let throttle_text = frequency["throttle"].as_str().or(rule_throttle.filter(|t| !["rule", "no_actions"].contains(t)));
        let notify_when = match frequency["notifyWhen"].as_str() {
            Some("onThrottleInterval") => NotifyWhen::OnThrottleInterval,
            Some(_) => NotifyWhen::OnActiveAlert,
            None if throttle_text.is_some() => NotifyWhen::OnThrottleInterval,
            None => NotifyWhen::OnActiveAlert,
        };
        let throttle = match (notify_when, throttle_text) {
            (NotifyWhen::OnThrottleInterval, Some(t)) => match crate::rules::parse_interval(t) {
                Ok(d) => d.to_std().ok(),
                Err(e) => {
                    problems.push(format!("{at}: throttle `{t}`: {e}"));
                    continue;
                }
            },
            (NotifyWhen::OnThrottleInterval, None) => {
                problems.push(format!("{at}: notifyWhen onThrottleInterval without a throttle"));
                continue;
            }
            _ => None,
        };
        actions.push(ActionConfig {
            connector: name.clone(),
            summary: frequency["summary"].as_bool().unwrap_or(true),
            notify_when,
            throttle,
            message: if kind == "pagerduty" { text("summary") } else { text("message") },
            subject: text("subject"),
            body: text("body"),
        });
    }
    (actions, problems)
}
