//! Rule actions: notifications through connectors (webhook, Slack, Teams, PagerDuty, email) after a
//! rule's alerts are written, with Kibana's frequency options and Mustache message templates.
//!
//! One entry point, [`dispatch`], called by the run path after a rule's write with the documents that
//! write actually created (never duplicates), so a rerun over the same window — or a second replica
//! racing for it — has nothing new to notify. Delivery never fails the detection: outcomes go to the run
//! summary, the logs and `esdetect_actions_total{connector,outcome}`. Throttle state and an outbox of
//! not-yet-delivered messages live in Elasticsearch ([`store`]), so they survive restarts and crashes and
//! are shared by replicas; the outbox is drained at the start of each of the rule's runs.

pub mod check;
pub mod config;
pub mod connectors;
pub mod kibana;
pub mod store;
pub mod template;

use crate::detect::{PreparedRule, RunSummary};
use crate::es::retry::RetryPolicy;
use crate::es::EsClient;
use config::{ActionConfig, ActionsSettings, ConnectorConfig, NotifyWhen};
use connectors::{Connector, ConnectorError, Delivery, Message};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;
use template::{Escape, TemplateError};

/// Connectors with their secrets read, and each rule's actions, checked against them.
#[derive(Debug)]
pub struct Actions {
    pub settings: ActionsSettings,
    pub connectors: BTreeMap<String, Connector>,
    /// Keyed by rule_id.
    pub rules: BTreeMap<String, Vec<ActionConfig>>,
    /// Kibana connector id → (configured connector name, kind), for the actions of exported rules.
    by_kibana_id: BTreeMap<String, (String, &'static str)>,
    http: reqwest::Client,
}

impl Actions {
    /// Resolves connectors and checks every action: unknown connector, missing throttle, template syntax.
    /// `None` when no rule has an action (nothing to do, nothing to set up).
    pub fn new(
        settings: &ActionsSettings,
        connectors: &BTreeMap<String, ConnectorConfig>,
        rules: BTreeMap<String, Vec<ActionConfig>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Actions>, ActionsError> {
        let rules: BTreeMap<_, _> = rules.into_iter().filter(|(_, a)| !a.is_empty()).collect();
        let mut resolved = BTreeMap::new();
        for (name, c) in connectors {
            resolved.insert(name.clone(), Connector::resolve(name, c, env)?);
        }
        for (rule_id, actions) in &rules {
            for (i, a) in actions.iter().enumerate() {
                let at = format!("rules.\"{rule_id}\".actions[{i}]");
                if !resolved.contains_key(&a.connector) {
                    let known = resolved.keys().cloned().collect();
                    return Err(ActionsError::UnknownConnector { at, connector: a.connector.clone(), known });
                }
                if a.notify_when == NotifyWhen::OnThrottleInterval && a.throttle.is_none() {
                    return Err(ActionsError::NoThrottle { at });
                }
                for (field, t) in [("message", &a.message), ("subject", &a.subject), ("body", &a.body)] {
                    if let Some(t) = t {
                        template::check(&format!("{at}.{field}"), t)?;
                    }
                }
            }
        }
        for (name, c) in &resolved {
            if let Connector::Webhook { body: Some(b), .. } = c {
                template::check(&format!("connectors.{name}.body"), b)?;
            }
        }
        let mut by_kibana_id = BTreeMap::new();
        for (name, c) in connectors {
            if let Some(id) = c.kibana_id() {
                if let Some((other, _)) = by_kibana_id.insert(id.to_string(), (name.clone(), c.kind())) {
                    return Err(ActionsError::DuplicateKibanaId { name: name.clone(), id: id.to_string(), other });
                }
            }
        }
        if rules.is_empty() && by_kibana_id.is_empty() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("esdetect/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ActionsError::HttpClient)?;
        Ok(Some(Actions { settings: settings.clone(), connectors: resolved, rules, by_kibana_id, http }))
    }

    /// Whether the rule has actions: configured ones, or those of its Kibana export.
    pub fn applies_to(&self, prepared: &PreparedRule) -> bool {
        self.rules.contains_key(&prepared.rule.rule_id)
            || (!self.by_kibana_id.is_empty()
                && prepared.rule.export_extra.get("actions").and_then(Value::as_array).is_some_and(|a| !a.is_empty()))
    }

    /// The rule's actions: the configured ones win over its export's (with the export actions that could
    /// not be mapped, as messages).
    pub fn actions_for(&self, prepared: &PreparedRule) -> (Vec<ActionConfig>, Vec<String>) {
        match self.rules.get(&prepared.rule.rule_id) {
            Some(a) => (a.clone(), Vec::new()),
            None if self.by_kibana_id.is_empty() => (Vec::new(), Vec::new()),
            None => kibana::export_actions(&prepared.rule, &self.by_kibana_id),
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy { max_retries: self.settings.max_retries, base_delay: self.settings.retry_delay, max_delay: Duration::from_secs(30) }
    }
}

/// Why the configured connectors and actions cannot be used (found at start-up, before any run).
#[derive(Debug, thiserror::Error)]
pub enum ActionsError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// `at` is the action, e.g. `rules."r1".actions[0]`.
    #[error("{at}: no connector `{connector}` (defined: {known:?}); add [connectors.{connector}]")]
    UnknownConnector { at: String, connector: String, known: Vec<String> },
    #[error("{at}: notify_when = \"on_throttle_interval\" needs `throttle`, e.g. \"1h\"")]
    NoThrottle { at: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("connectors.{name}: kibana_id `{id}` is also the kibana_id of connectors.{other}")]
    DuplicateKibanaId { name: String, id: String, other: String },
    #[error("cannot build the HTTP client for connectors: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// What the actions of one rule run did: counts per `connector` and outcome (`sent`, `failed`,
/// `throttled`; `redelivered` and `dropped` for outbox messages of earlier runs), plus the errors.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ActionsReport {
    pub outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    pub errors: Vec<String>,
}

impl ActionsReport {
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty() && self.errors.is_empty()
    }

    fn record(&mut self, connector: &str, outcome: &str) {
        *self.outcomes.entry(connector.to_string()).or_default().entry(outcome.to_string()).or_default() += 1;
        ACTIONS_TOTAL.with_label_values(&[connector, outcome]).inc();
    }
}

/// One line of a ledger entry's action outcomes: how many messages to `connector` ended as `outcome`
/// (a list rather than a map keyed by connector, so connector names never become index fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ActionCount {
    pub connector: String,
    pub outcome: String,
    pub count: u64,
}

impl ActionsReport {
    /// The outcomes as ledger lines, ordered by connector and outcome.
    pub fn counts(&self) -> Vec<ActionCount> {
        let mut out = Vec::new();
        for (connector, outcomes) in &self.outcomes {
            for (outcome, count) in outcomes {
                out.push(ActionCount { connector: connector.clone(), outcome: outcome.clone(), count: *count });
            }
        }
        out
    }
}

/// Adds `from` into `into` (same connector and outcome: counts summed), keeping the order sorted.
pub fn add_counts(into: &mut Vec<ActionCount>, from: &[ActionCount]) {
    for c in from {
        match into.iter_mut().find(|x| x.connector == c.connector && x.outcome == c.outcome) {
            Some(x) => x.count += c.count,
            None => into.push(c.clone()),
        }
    }
    into.sort_by(|a, b| (&a.connector, &a.outcome).cmp(&(&b.connector, &b.outcome)));
}

/// `soc-hook: 1 sent, 2 failed; pager: 1 throttled` (for `esdetect status`); empty when none.
pub fn describe_counts(counts: &[ActionCount]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in counts {
        let item = format!("{} {}", c.count, c.outcome);
        match parts.last_mut() {
            Some(last) if last.starts_with(&format!("{}: ", c.connector)) => {
                last.push_str(", ");
                last.push_str(&item);
            }
            _ => parts.push(format!("{}: {item}", c.connector)),
        }
    }
    parts.join("; ")
}

/// `esdetect_actions_total{connector,outcome}`; the daemon registers it with its `/metrics` registry.
pub static ACTIONS_TOTAL: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::IntCounterVec::new(
        prometheus::Opts::new("esdetect_actions_total", "Notifications by connector and outcome (sent, failed, throttled, redelivered, dropped)"),
        &["connector", "outcome"],
    )
    .expect("valid metric definition")
});

/// Runs the rule's actions for the alert documents its write created (`written`: `(id, source)`).
/// Building blocks of sequences are not notified (their shell is). Never fails: every problem ends in
/// the report.
pub async fn dispatch(
    client: &EsClient,
    actions: &Actions,
    prepared: &PreparedRule,
    summary: &RunSummary,
    written: &[(String, Value)],
) -> ActionsReport {
    let mut report = ActionsReport::default();
    let (rule_actions, problems) = actions.actions_for(prepared);
    for p in problems {
        tracing::warn!(rule_id = %prepared.rule.rule_id, "{p}");
        report.errors.push(p);
    }
    let alerts: Vec<Value> = written
        .iter()
        .filter(|(_, doc)| doc.get("kibana.alert.building_block_type").is_none())
        .map(|(id, doc)| {
            let mut a = template::expand_dotted(doc);
            if let Some(m) = a.as_object_mut() {
                m.insert("_id".into(), json!(id));
                m.insert("_index".into(), json!(prepared.alias));
            }
            a
        })
        .collect();
    let deadline = tokio::time::Instant::now() + actions.settings.budget;
    if !rule_actions.is_empty() {
        redeliver(client, actions, prepared, deadline, &mut report).await;
    }
    if alerts.is_empty() {
        return report;
    }
    let now = chrono::Utc::now();
    for (i, action) in rule_actions.iter().enumerate() {
        let Some(connector) = actions.connectors.get(&action.connector) else { continue };
        let key = store::action_key(&prepared.rule_uuid, i, &action.connector);
        if let (NotifyWhen::OnThrottleInterval, Some(throttle)) = (action.notify_when, action.throttle) {
            match store::last_sent(client, &actions.settings.state_index, &key).await {
                Ok(Some(last)) if now.signed_duration_since(last).to_std().map(|d| d < throttle).unwrap_or(true) => {
                    report.record(&action.connector, "throttled");
                    continue;
                }
                Ok(_) => {}
                // Unknown state: sending risks a repeat, not sending risks a miss; a notification is
                // worth more than a repeat.
                Err(e) => tracing::warn!(error = %e, "could not read action throttle state; sending"),
            }
        }
        let batches: Vec<Vec<Value>> = if action.summary { vec![alerts.clone()] } else { alerts.iter().map(|a| vec![a.clone()]).collect() };
        let mut any_sent = false;
        for batch in batches {
            let data = template_data(actions, prepared, summary, &batch, !action.summary, now);
            let message = match render_message(connector, action, i, prepared, &data) {
                Ok(m) => m,
                Err(e) => {
                    report.record(&action.connector, "failed");
                    report.errors.push(e.to_string());
                    continue;
                }
            };
            // Into the outbox first: if delivery fails or the process dies, a later run sends it.
            let ids: Vec<&str> = batch.iter().filter_map(|a| a["_id"].as_str()).collect();
            let outbox_id = format!("pending-{}", store::action_key(&key, 0, &ids.join(",")));
            let pending = store::Pending { rule_uuid: prepared.rule_uuid.clone(), connector: action.connector.clone(), message, tries: 1 };
            let index = &actions.settings.state_index;
            if let Err(e) = store::put_pending(client, index, &outbox_id, &pending).await {
                tracing::warn!(error = %e, "could not record the message in the outbox; sending without a later retry");
            }
            match deliver_within(actions, connector, &pending.message, deadline).await {
                Delivery::Sent { attempts } => {
                    tracing::info!(connector = %action.connector, rule_id = %prepared.rule.rule_id, attempts, "notification sent");
                    report.record(&action.connector, "sent");
                    any_sent = true;
                    if let Err(e) = store::delete_pending(client, index, &outbox_id).await {
                        tracing::warn!(error = %e, "could not clear a delivered message from the outbox; a later run may send it again");
                    }
                }
                Delivery::Failed { attempts, error } => {
                    let e = format!(
                        "action {i} ({}): not delivered after {attempts} attempt(s): {error}; kept for the next run",
                        action.connector
                    );
                    tracing::error!(rule_id = %prepared.rule.rule_id, "{e}");
                    report.record(&action.connector, "failed");
                    report.errors.push(e);
                }
            }
        }
        if any_sent && action.notify_when == NotifyWhen::OnThrottleInterval {
            if let Err(e) = store::record_sent(client, &actions.settings.state_index, &key, &prepared.rule.rule_id, now).await {
                tracing::warn!(error = %e, "could not record the action's send time; the next run may notify again");
            }
        }
    }
    report
}

/// Delivery bounded by the run's actions budget.
async fn deliver_within(actions: &Actions, connector: &Connector, message: &Message, deadline: tokio::time::Instant) -> Delivery {
    let policy = actions.retry_policy();
    let delivery = connectors::deliver(&actions.http, connector, message, &policy, actions.settings.timeout);
    tokio::time::timeout_at(deadline, delivery).await.unwrap_or_else(|_| Delivery::Failed {
        attempts: 0,
        error: format!("the actions budget ({:?}) of this run is used up; raise [actions] budget", actions.settings.budget),
    })
}

/// Runs that may try an outbox message before it is given up.
pub const MAX_TRIES: u32 = 5;

/// Sends the rule's outbox messages left by earlier runs (failed deliveries, or a crash between the
/// alert write and the send). Outcomes: `redelivered`, `failed` (kept), `dropped` (given up).
async fn redeliver(client: &EsClient, actions: &Actions, prepared: &PreparedRule, deadline: tokio::time::Instant, report: &mut ActionsReport) {
    let index = &actions.settings.state_index;
    let pending = match store::pending_for(client, index, &prepared.rule_uuid).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the actions outbox; earlier undelivered messages wait for a later run");
            return;
        }
    };
    for (id, mut p) in pending {
        let Some(connector) = actions.connectors.get(&p.connector) else {
            report.record(&p.connector, "dropped");
            report.errors.push(format!("outbox message for connector `{}` dropped: the connector is no longer configured", p.connector));
            let _ = store::delete_pending(client, index, &id).await;
            continue;
        };
        match deliver_within(actions, connector, &p.message, deadline).await {
            Delivery::Sent { .. } => {
                report.record(&p.connector, "redelivered");
                if let Err(e) = store::delete_pending(client, index, &id).await {
                    tracing::warn!(error = %e, "could not clear a delivered message from the outbox; a later run may send it again");
                }
            }
            Delivery::Failed { error, .. } if p.tries + 1 >= MAX_TRIES => {
                report.record(&p.connector, "dropped");
                report.errors.push(format!("outbox message for `{}` dropped after {MAX_TRIES} runs: {error}", p.connector));
                let _ = store::delete_pending(client, index, &id).await;
            }
            Delivery::Failed { error, .. } => {
                p.tries += 1;
                report.record(&p.connector, "failed");
                report.errors.push(format!("outbox message for `{}` not delivered (run {} of {MAX_TRIES}): {error}", p.connector, p.tries));
                let _ = store::put_pending(client, index, &id, &p).await;
            }
        }
    }
}

/// The variables Kibana's Security rule actions offer.
fn template_data(
    actions: &Actions,
    prepared: &PreparedRule,
    summary: &RunSummary,
    alerts: &[Value],
    per_alert: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let r = &prepared.rule;
    let rule = json!({
        "id": prepared.rule_uuid,
        "rule_id": r.rule_id,
        "name": r.name,
        "description": r.description,
        "severity": r.severity,
        "risk_score": r.risk_score,
        "type": "eql",
        "language": "eql",
        "query": r.query,
        "index": r.index,
        "interval": r.interval,
        "max_signals": r.max_signals,
        "tags": r.tags,
        "references": r.references,
        "false_positives": r.false_positives,
        "from": summary.window.from,
        "to": summary.window.to,
        "output_index": prepared.alias,
    });
    let results_link = actions
        .settings
        .kibana_url
        .as_deref()
        .map(|base| {
            format!(
                "{}/app/security/detections/rules/id/{}?timerange=(global:(linkTo:!(timeline),timerange:(from:'{}',kind:absolute,to:'{}')))",
                base.trim_end_matches('/'),
                prepared.rule_uuid,
                summary.window.from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                summary.window.to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
        })
        .unwrap_or_default();
    let alert_id = if per_alert { alerts.first().and_then(|a| a["_id"].as_str()).unwrap_or("") } else { r.rule_id.as_str() };
    json!({
        "context": {"rule": rule, "alerts": alerts, "results_link": results_link},
        "state": {"signals_count": alerts.len()},
        "rule": {"id": prepared.rule_uuid, "name": r.name, "spaceId": prepared.space, "tags": r.tags, "type": "siem.eqlRule"},
        "alert": {"id": alert_id, "actionGroup": "default"},
        "alerts": {"new": {"count": alerts.len(), "data": alerts}, "all": {"count": alerts.len(), "data": alerts}},
        "date": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "kibanaBaseUrl": actions.settings.kibana_url.clone().unwrap_or_default(),
    })
}

const DEFAULT_MESSAGE: &str = "Rule {{context.rule.name}} generated {{state.signals_count}} alert(s)";

fn render_message(
    connector: &Connector,
    action: &ActionConfig,
    i: usize,
    prepared: &PreparedRule,
    data: &Value,
) -> Result<Message, TemplateError> {
    let at = format!("rules.\"{}\".actions[{i}]", prepared.rule.rule_id);
    let text = template::render(&format!("{at}.message"), action.message.as_deref().unwrap_or(DEFAULT_MESSAGE), data, Escape::None)?;
    let subject = template::render(&format!("{at}.subject"), action.subject.as_deref().unwrap_or(DEFAULT_MESSAGE), data, Escape::None)?;
    let body_template = action.body.as_deref().or(match connector {
        Connector::Webhook { body, .. } => body.as_deref(),
        _ => None,
    });
    let body = match body_template {
        Some(t) => template::render(&format!("{at}.body"), t, data, Escape::Json)?,
        None => connectors::default_webhook_body(data),
    };
    let dedup_key = format!("esdetect-{}-{}", prepared.rule_uuid, data["alert"]["id"].as_str().unwrap_or_default());
    Ok(Message {
        text,
        subject,
        body,
        dedup_key,
        severity: connectors::pagerduty_severity(&prepared.rule.severity).to_string(),
        source: format!("esdetect rule {}", prepared.rule.rule_id),
    })
}

#[cfg(test)]
mod ledger_tests {
    use super::*;

    fn c(connector: &str, outcome: &str, count: u64) -> ActionCount {
        ActionCount { connector: connector.into(), outcome: outcome.into(), count }
    }

    #[test]
    fn outcomes_of_several_windows_add_up_per_connector_and_outcome() {
        let mut total = vec![c("hook", "sent", 1)];
        add_counts(&mut total, &[c("pager", "failed", 1), c("hook", "sent", 2), c("hook", "failed", 1)]);
        assert_eq!(total, vec![c("hook", "failed", 1), c("hook", "sent", 3), c("pager", "failed", 1)]);
        assert_eq!(describe_counts(&total), "hook: 1 failed, 3 sent; pager: 1 failed");
        assert_eq!(describe_counts(&[]), "");
    }
}
