//! The `[connectors.<name>]`, `[actions]` and per-rule `actions` sections of the configuration.
//!
//! Kept apart from the resolved, ready-to-send forms in [`super::connectors`]: these types only say what
//! the file may contain. Secret-bearing values (URLs with tokens, passwords, routing keys, header values)
//! are [`SecretValue`]s: written inline, or read from an environment variable or a file, like the
//! cluster's credentials, and never printed.

use crate::es::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A value that may be a secret: `"text"`, `{ env = "NAME" }` or `{ file = "/path" }` (trailing newline
/// removed).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SecretValue {
    Inline(Secret),
    Env { env: String },
    File { file: PathBuf },
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretValue::Inline(_) => f.write_str("***"),
            SecretValue::Env { env } => write!(f, "env:{env}"),
            SecretValue::File { file } => write!(f, "file:{}", file.display()),
        }
    }
}

impl SecretValue {
    /// The clear value; `what` names the setting in the error.
    pub fn resolve(&self, what: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, SecretError> {
        match self {
            SecretValue::Inline(s) => Ok(s.clone()),
            SecretValue::Env { env: name } => env(name)
                .map(Secret::new)
                .ok_or_else(|| SecretError::EnvUnset { what: what.to_string(), name: name.clone() }),
            SecretValue::File { file } => std::fs::read_to_string(file)
                .map(|s| Secret::new(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|source| SecretError::Read { what: what.to_string(), path: file.clone(), source }),
        }
    }
}

/// Why a [`SecretValue`] could not be read; `what` is the setting (e.g. `connectors.hook.url`).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{what}: environment variable {name} is not set; export it or write the value in the file")]
    EnvUnset { what: String, name: String },
    #[error("{what}: cannot read {}: {source}", path.display())]
    Read {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `[connectors.<name>]`: where notifications go. `type` selects the kind. Every kind takes `kibana_id`:
/// the saved-object id of the Kibana connector it stands for, so the `actions` of rules read from a
/// Kibana export (which never carries connector secrets) are sent through it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ConnectorConfig {
    /// Any HTTP endpoint: `method` (post, put; default post), `url`, `headers`, `body` (a Mustache
    /// template whose string values are JSON-escaped, as Kibana's webhook connector does).
    Webhook {
        #[serde(default)]
        kibana_id: Option<String>,
        url: SecretValue,
        #[serde(default)]
        method: HttpMethod,
        #[serde(default)]
        headers: BTreeMap<String, SecretValue>,
        #[serde(default)]
        body: Option<String>,
    },
    /// A Slack incoming webhook: `{"text": message}`.
    Slack {
        #[serde(default)]
        kibana_id: Option<String>,
        url: SecretValue,
    },
    /// A Microsoft Teams incoming webhook: `{"text": message}`.
    Teams {
        #[serde(default)]
        kibana_id: Option<String>,
        url: SecretValue,
    },
    /// PagerDuty Events API v2: a `trigger` event per message.
    Pagerduty {
        #[serde(default)]
        kibana_id: Option<String>,
        routing_key: SecretValue,
        /// Default `https://events.pagerduty.com/v2/enqueue`.
        #[serde(default)]
        api_url: Option<String>,
        /// critical, error, warning or info; default: from the rule's severity.
        #[serde(default)]
        severity: Option<String>,
    },
    /// SMTP: `secure` = "starttls" (default), "tls" (implicit TLS, port 465) or "none" (plain; tests and
    /// local relays only).
    Email {
        #[serde(default)]
        kibana_id: Option<String>,
        host: String,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        secure: SmtpSecurity,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<SecretValue>,
        /// PEM CA certificate(s) trusted for the server's TLS certificate, besides the public roots.
        #[serde(default)]
        ca_cert: Option<PathBuf>,
        from: String,
        to: Vec<String>,
    },
}

impl ConnectorConfig {
    pub fn kibana_id(&self) -> Option<&str> {
        match self {
            ConnectorConfig::Webhook { kibana_id, .. }
            | ConnectorConfig::Slack { kibana_id, .. }
            | ConnectorConfig::Teams { kibana_id, .. }
            | ConnectorConfig::Pagerduty { kibana_id, .. }
            | ConnectorConfig::Email { kibana_id, .. } => kibana_id.as_deref(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorConfig::Webhook { .. } => "webhook",
            ConnectorConfig::Slack { .. } => "slack",
            ConnectorConfig::Teams { .. } => "teams",
            ConnectorConfig::Pagerduty { .. } => "pagerduty",
            ConnectorConfig::Email { .. } => "email",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

/// When an action fires, in Kibana's terms (`frequency.notifyWhen`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NotifyWhen {
    /// Every run that wrote new alerts ("per rule run").
    #[default]
    OnActiveAlert,
    /// At most once per `throttle` interval.
    OnThrottleInterval,
}

/// One action of a rule: `[[rules."<rule_id>".actions]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Name of a `[connectors.<name>]`.
    pub connector: String,
    /// true (default): one message per run listing the new alerts ("summary of alerts");
    /// false: one message per new alert ("for each alert").
    #[serde(default = "yes")]
    pub summary: bool,
    #[serde(default)]
    pub notify_when: NotifyWhen,
    /// With `notify_when = "on_throttle_interval"`: e.g. "1h".
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub throttle: Option<Duration>,
    /// Message template (Slack, Teams, PagerDuty summary, email body). Default: a short summary.
    #[serde(default)]
    pub message: Option<String>,
    /// Email subject template.
    #[serde(default)]
    pub subject: Option<String>,
    /// Webhook body template; wins over the connector's `body`.
    #[serde(default)]
    pub body: Option<String>,
}

/// A duration that is present (the field's `default` covers absence).
fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::es::config::de_duration(d).map(Some)
}

fn yes() -> bool {
    true
}

/// `[actions]`: delivery settings shared by all connectors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsSettings {
    /// Index of the throttle state (one document per rule action).
    pub state_index: String,
    /// Retries after the first attempt, on connection errors, 429 and 5xx.
    pub max_retries: u32,
    /// Backoff before the first retry (doubles, jittered, capped at 30 s).
    #[serde(deserialize_with = "crate::es::config::de_duration")]
    pub retry_delay: Duration,
    /// Timeout of one delivery attempt.
    #[serde(deserialize_with = "crate::es::config::de_duration")]
    pub timeout: Duration,
    /// Longest all actions of one rule run may take, retries included; messages not sent by then count
    /// as failed. Keeps notifications from pushing a run past the scheduler's `run_timeout`.
    #[serde(deserialize_with = "crate::es::config::de_duration")]
    pub budget: Duration,
    /// Kibana's base URL, for `{{context.results_link}}` (empty when unset).
    pub kibana_url: Option<String>,
}

impl Default for ActionsSettings {
    fn default() -> Self {
        ActionsSettings {
            state_index: "esdetect-actions".into(),
            max_retries: 3,
            retry_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
            budget: Duration::from_secs(60),
            kibana_url: None,
        }
    }
}
