//! `esdetect validate`'s checks of connectors and rule actions: every problem at once (loading stops at the
//! first), each naming the config file and the connector, or the rule (id, name, file) whose action it is.
//!
//! Errors: a connector whose URL or secret cannot be read (unset environment variable, unreadable file, a
//! URL that does not parse), an action naming an unknown connector, an interval throttle without
//! `throttle`, a template that does not parse — in the config or in a Kibana export's actions.
//! Warnings: what a run reports and skips rather than refuses — export actions whose Kibana connector is
//! not configured or whose type is not supported, and actions configured for a rule id the rules path does
//! not hold.

use super::config::{ActionConfig, NotifyWhen};
use super::connectors::Connector;
use crate::config::Config;
use crate::detect::PreparedRule;
use std::collections::BTreeMap;

/// What `validate` prints: errors fail it, warnings do not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks every connector, every configured action and the actions of every exported rule in `rules`.
pub fn check(config: &Config, rules: &[PreparedRule], env: &dyn Fn(&str) -> Option<String>) -> Findings {
    let mut out = Findings::default();
    let file = config.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the configuration".into());
    let mut usable = BTreeMap::new();
    for (name, c) in &config.connectors {
        match Connector::resolve(name, c, env) {
            Ok(resolved) => {
                if let Connector::Webhook { body: Some(b), .. } = &resolved {
                    if let Err(e) = super::template::check(&format!("connectors.{name}.body"), b) {
                        out.errors.push(format!("{file}: {e}"));
                    }
                }
                usable.insert(name.clone(), resolved);
            }
            Err(e) => out.errors.push(format!("{file}: {e}")),
        }
    }
    let mut by_kibana_id = BTreeMap::new();
    for (name, c) in &config.connectors {
        if let Some(id) = c.kibana_id() {
            if let Some((other, _)) = by_kibana_id.insert(id.to_string(), (name.clone(), c.kind())) {
                out.errors.push(format!("{file}: connectors.{name}: kibana_id `{id}` is also the kibana_id of connectors.{other}"));
            }
        }
    }
    let by_id: BTreeMap<&str, &PreparedRule> = rules.iter().map(|r| (r.rule.rule_id.as_str(), r)).collect();
    for (rule_id, settings) in &config.rules {
        if settings.actions.is_empty() {
            continue;
        }
        let rule = by_id.get(rule_id.as_str());
        let whose = match rule {
            Some(r) => format!(" (rule \"{}\", {})", r.rule.name, r.rule.path.display()),
            None => {
                out.warnings.push(format!(
                    "{file}: [rules.\"{rule_id}\"] has actions but no rule with that rule_id is in {}; they never run",
                    config.rules_dir.display()
                ));
                String::new()
            }
        };
        for (i, a) in settings.actions.iter().enumerate() {
            let at = format!("{file}: rules.\"{rule_id}\".actions[{i}]{whose}");
            check_action(&at, a, config, &usable, &mut out.errors);
        }
    }
    for rule in rules {
        if config.rules.get(&rule.rule.rule_id).is_some_and(|s| !s.actions.is_empty()) {
            continue; // configured actions replace the export's
        }
        let (mapped, problems) = super::kibana::export_actions(&rule.rule, &by_kibana_id);
        let whose = format!("{}: rule \"{}\" ({})", rule.rule.path.display(), rule.rule.name, rule.rule.rule_id);
        for p in problems {
            out.warnings.push(format!("{whose}: {p}; this action is not sent"));
        }
        for a in &mapped {
            check_action(&format!("{whose}: the export's action for connector `{}`", a.connector), a, config, &usable, &mut out.errors);
        }
    }
    out
}

fn check_action(at: &str, a: &ActionConfig, config: &Config, usable: &BTreeMap<String, Connector>, errors: &mut Vec<String>) {
    if !config.connectors.contains_key(&a.connector) {
        let known: Vec<&str> = config.connectors.keys().map(String::as_str).collect();
        errors.push(format!("{at}: no connector `{}` (defined: {known:?}); add [connectors.{}]", a.connector, a.connector));
    } else if !usable.contains_key(&a.connector) {
        errors.push(format!("{at}: connector `{}` cannot be used (see its error above)", a.connector));
    }
    if a.notify_when == NotifyWhen::OnThrottleInterval && a.throttle.is_none() {
        errors.push(format!("{at}: notify_when = \"on_throttle_interval\" needs `throttle`, e.g. \"1h\""));
    }
    for (field, t) in [("message", &a.message), ("subject", &a.subject), ("body", &a.body)] {
        if let Some(t) = t {
            if let Err(e) = super::template::check(field, t) {
                errors.push(format!("{at}: {e}"));
            }
        }
    }
}
