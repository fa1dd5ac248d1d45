//! One configuration, read once at the CLI edge and handed down.
//!
//! Sources, later ones winning: built-in defaults → the TOML file (`--config`) → `ESDETECT_*` environment
//! variables for the connection (so secrets need not live in files). Nothing below the CLI reads the
//! environment. esdetect-specific rule settings (enabled, Kibana rule uuid, space, alerts index, schedule)
//! live here, never in the detection-rules files, so those files stay byte-identical to upstream.

use crate::es::ConnectionConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Rules path: a folder of detection-rules TOML files and/or Kibana export NDJSON files (or one such
    /// file), or a detection-rules custom-rules folder with `_config.yaml`.
    pub rules_dir: PathBuf,
    pub elasticsearch: ConnectionConfig,
    pub alerts: AlertsConfig,
    pub run: RunConfig,
    /// How much of each event a cluster scan reads (`[source]`).
    pub source: SourceConfig,
    /// Field mapping used to type fields when evaluating EQL.
    pub mapping: MappingConfig,
    /// Daemon mode (`esdetect run` without `--once`): state, ledger, gaps, timeouts, HTTP endpoints.
    pub scheduler: SchedulerSettings,
    /// Run rules whose detection-rules `metadata.maturity` is `deprecated` (default: skip them). A rule's
    /// own `enabled = true` below also runs it.
    pub include_deprecated: bool,
    /// Per-rule settings, keyed by the detection-rules `rule_id`.
    pub rules: BTreeMap<String, RuleSettings>,
    /// Where `rules_dir` came from, for error messages (not a setting).
    #[serde(skip)]
    pub rules_dir_origin: String,
    /// Notification targets that rule actions name (`[connectors.<name>]`, `type = "webhook"`, …).
    pub connectors: BTreeMap<String, crate::actions::config::ConnectorConfig>,
    /// Delivery settings of rule actions (`[actions]`).
    pub actions: crate::actions::config::ActionsSettings,
    /// Shadow mode (`mode = "shadow"` rules): where Kibana's alerts are and when to compare.
    pub shadow: ShadowSettings,
    /// The file this configuration was read from (a reload reads it again; not a setting).
    #[serde(skip)]
    pub config_path: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rules_dir: PathBuf::from("rules"),
            elasticsearch: ConnectionConfig::default(),
            alerts: AlertsConfig::default(),
            run: RunConfig::default(),
            source: SourceConfig::default(),
            mapping: MappingConfig::default(),
            scheduler: SchedulerSettings::default(),
            include_deprecated: false,
            rules: BTreeMap::new(),
            rules_dir_origin: "the default `rules` folder in the current directory".into(),
            connectors: BTreeMap::new(),
            actions: crate::actions::config::ActionsSettings::default(),
            shadow: ShadowSettings::default(),
            config_path: None,
        }
    }
}

/// How a rule runs in the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuleMode {
    /// Writes alerts.
    #[default]
    Active,
    /// Writes no alerts; compares each window with Kibana's alerts for it (src/scheduler/shadow.rs).
    Shadow,
}

/// `[shadow]`: the comparison of shadow-mode rules with Kibana.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowSettings {
    /// How long after a window's end Kibana's execution of the same tick has surely written its alerts;
    /// the comparison of the window runs then.
    #[serde(deserialize_with = "crate::es::config::de_duration")]
    pub delay: std::time::Duration,
    /// Kibana's alerts index or alias (`{space}` is the rule's space).
    pub kibana_alerts: String,
}

impl Default for ShadowSettings {
    fn default() -> Self {
        ShadowSettings { delay: std::time::Duration::from_secs(120), kibana_alerts: ".alerts-security.alerts-{space}".into() }
    }
}

/// Where and how alerts are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Kibana space id (`kibana.space_ids`, part of event-alert ids).
    pub space: String,
    /// Alerts alias; `{space}` is replaced by the space id. Kibana's own alias
    /// (`.alerts-security.alerts-<space>`) is allowed only when it already exists.
    pub index: String,
    /// `kibana.version` written on alerts.
    pub kibana_version: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            space: "default".into(),
            index: "esdetect-alerts-{space}".into(),
            kibana_version: "9.0.1".into(),
        }
    }
}

/// How a detection run fetches and evaluates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Hits per search page (PIT + `search_after`).
    pub page_size: usize,
    /// `kibana`: each window on its own, exactly like Kibana. `complete`: sequences that straddle windows
    /// are found too (the window is extended back by the sequence's maxspan).
    pub sequence_mode: SequenceMode,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { page_size: 1000, sequence_mode: SequenceMode::Kibana }
    }
}

/// `[source]`: what a cluster scan reads of each event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `full` (default): the whole `_source` of every event. `filtered`: only the fields the rules read,
    /// then the whole `_source` of the events that become alerts by `_mget` (fewer bytes, same alerts).
    pub fetch: crate::source::es::SourceFetch,
}

/// How sequence rules treat sequences that straddle the window start. One type for the configuration,
/// the detect layer (which does the querying) and the scheduler (which only passes it on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SequenceMode {
    /// Query exactly the window, as Kibana does (a sequence that started before it is missed).
    #[default]
    Kibana,
    /// Query an extra `maxspan` before the window and emit only sequences whose last event is new
    /// (after the previous window's end).
    Complete,
}

/// Where field types come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    /// Ask the cluster for `_mapping` of the rule's indices (merged over the built-in ECS table).
    pub from_cluster: bool,
    /// A mapping JSON file merged over the built-in table (and under the cluster's).
    pub file: Option<PathBuf>,
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig { from_cluster: true, file: None }
    }
}

/// esdetect-specific settings of one rule.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSettings {
    /// Wins over the rule's own `enabled` (Kibana exports) and over deprecation; default: the rule's.
    pub enabled: Option<bool>,
    /// Kibana's rule saved-object id; set it to make alert ids equal to Kibana's. Default: the `id` of a rule
    /// read from a Kibana export, else a UUIDv5 of the rule_id (stable, and different from Kibana's so both
    /// can run side by side).
    pub uuid: Option<String>,
    /// Overrides `alerts.space` for this rule.
    pub space: Option<String>,
    /// Overrides `alerts.index` for this rule.
    pub alerts_index: Option<String>,
    /// Overrides `run.sequence_mode` for this rule.
    pub sequence_mode: Option<SequenceMode>,
    /// A cron expression (UTC) replacing the rule's `interval` as its schedule in daemon mode: 5 fields
    /// (crontab: `*/5 * * * *`), 6 fields (with seconds first: `0 */5 * * * *`) or a shorthand such as
    /// `@hourly`. Catch-up and backfill windows still step by the rule's `interval`.
    pub schedule: Option<String>,
    /// Notifications after this rule's runs (`[[rules."<id>".actions]]`), see the README's "Actions".
    pub actions: Vec<crate::actions::config::ActionConfig>,
    /// `shadow`: the daemon writes no alerts for this rule and compares each window with Kibana's.
    pub mode: Option<RuleMode>,
}

/// Log line format of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[scheduler]`: how the daemon keeps state, fills gaps and reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    pub listen: String,
    /// Index of the per-rule state documents (last window end, lease).
    pub state_index: String,
    /// Index of the per-execution ledger documents (what `esdetect status` reads).
    pub ledger_index: String,
    /// `number_of_replicas` of the two indices when esdetect creates them; unset: the cluster default.
    pub index_replicas: Option<u32>,
    /// This replica's id in leases and the ledger; default: host name + a random id (must be unique
    /// per process).
    pub owner: Option<String>,
    /// true: fill the whole gap after an outage (up to `max_backfill`) in window-sized steps; false:
    /// Kibana's behaviour (at most 4 catch-up windows, the rest reported as a failed run with the gap).
    pub backfill_gaps: bool,
    #[serde(deserialize_with = "crate::es::config::de_duration")]
    pub max_backfill: std::time::Duration,
    /// Longest one window's run may take; it is then stopped, counted as failed and retried.
    #[serde(deserialize_with = "crate::es::config::de_duration")]
    pub run_timeout: std::time::Duration,
    /// After SIGTERM/SIGINT, how long a run in progress may continue before it is abandoned.
    #[serde(deserialize_with = "crate::es::config::de_duration")]
    pub shutdown_grace: std::time::Duration,
    /// How long a rule's lease lasts unless renewed: how long a killed replica blocks its rules.
    #[serde(deserialize_with = "crate::es::config::de_duration")]
    pub lease_ttl: std::time::Duration,
    /// How often a running execution renews its lease (must be shorter than `lease_ttl`).
    #[serde(deserialize_with = "crate::es::config::de_duration")]
    pub lease_renew: std::time::Duration,
    /// No longer used (the lease used to be max(interval, run_timeout) + this); accepted so old
    /// configurations still load, with a warning.
    #[serde(deserialize_with = "de_opt_duration")]
    pub lease_margin: Option<std::time::Duration>,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Reload rules and configuration when a file under the rules path changes (as SIGHUP does).
    pub watch_rules: bool,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            listen: "127.0.0.1:9464".into(),
            state_index: "esdetect-state".into(),
            ledger_index: "esdetect-ledger".into(),
            index_replicas: None,
            owner: None,
            backfill_gaps: true,
            max_backfill: std::time::Duration::from_secs(24 * 3600),
            run_timeout: std::time::Duration::from_secs(300),
            shutdown_grace: std::time::Duration::from_secs(30),
            lease_ttl: std::time::Duration::from_secs(90),
            lease_renew: std::time::Duration::from_secs(30),
            lease_margin: None,
            log_format: LogFormat::Text,
            watch_rules: false,
        }
    }
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    crate::es::config::de_duration(d).map(Some)
}

/// A configuration problem, with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("rule actions: {0}")]
    Actions(#[source] crate::actions::ActionsError),
}

impl Config {
    /// Loads `path` (or defaults when `None`), then applies `ESDETECT_*` variables from `env`.
    pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: describe_toml_error(&text, &e),
                })?;
                // Relative paths in the file are relative to the file, not to the working directory.
                if let Some(dir) = path.parent() {
                    if config.rules_dir.is_relative() && text.contains("rules_dir") {
                        config.rules_dir = dir.join(&config.rules_dir);
                    }
                }
                if text.contains("rules_dir") {
                    config.rules_dir_origin = format!(
                        "`rules_dir` in {} (a relative path is relative to the config file's folder)",
                        path.display()
                    );
                } else {
                    config.rules_dir_origin = Config::default().rules_dir_origin;
                }
                config
            }
        };
        config.config_path = path.map(Path::to_path_buf);
        config.apply_env(env)?;
        // Checked here, before any command talks to the cluster (it used to surface only after the
        // alerts alias had been set up).
        if !(1..=10_000).contains(&config.run.page_size) {
            return Err(ConfigError::Invalid(format!(
                "[run] page_size = {} is out of range: use 1 to 10000 (Elasticsearch's index.max_result_window)",
                config.run.page_size
            )));
        }
        Ok(config)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(urls) = env("ESDETECT_ES_URL") {
            self.elasticsearch.urls = urls.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(key) = env("ESDETECT_ES_API_KEY") {
            self.elasticsearch.api_key = Some(crate::es::Secret::new(key));
        }
        if let Some(user) = env("ESDETECT_ES_USERNAME") {
            self.elasticsearch.username = Some(user);
        }
        if let Some(password) = env("ESDETECT_ES_PASSWORD") {
            self.elasticsearch.password = Some(crate::es::Secret::new(password));
        }
        if let Some(ca) = env("ESDETECT_ES_CA_CERT") {
            self.elasticsearch.ca_cert = Some(PathBuf::from(ca));
        }
        if let Some(dir) = env("ESDETECT_RULES_DIR") {
            self.rules_dir = PathBuf::from(dir);
            self.rules_dir_origin = "ESDETECT_RULES_DIR".into();
        }
        if let Some(space) = env("ESDETECT_SPACE") {
            self.alerts.space = space;
        }
        if let Some(index) = env("ESDETECT_ALERTS_INDEX") {
            self.alerts.index = index;
        }
        if let Some(size) = env("ESDETECT_PAGE_SIZE") {
            self.run.page_size = size.parse().map_err(|_| ConfigError::Env {
                name: "ESDETECT_PAGE_SIZE".into(),
                message: format!("`{size}` is not a whole number"),
            })?;
        }
        Ok(())
    }

    /// Settings of one rule (defaults when the config does not name it).
    pub fn rule_settings(&self, rule_id: &str) -> RuleSettings {
        self.rules.get(rule_id).cloned().unwrap_or_default()
    }

    /// Connectors with their secrets read and every rule's actions checked; `None` when no rule has one.
    pub fn rule_actions(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<crate::actions::Actions>, ConfigError> {
        let rules = self.rules.iter().map(|(id, s)| (id.clone(), s.actions.clone())).collect();
        crate::actions::Actions::new(&self.actions, &self.connectors, rules, env)
            .map_err(ConfigError::Actions)
    }

    /// The alerts alias for a space, with `{space}` expanded.
    pub fn alerts_alias(&self, settings: &RuleSettings) -> String {
        let space = settings.space.as_deref().unwrap_or(&self.alerts.space);
        settings.alerts_index.as_deref().unwrap_or(&self.alerts.index).replace("{space}", space)
    }
}

/// `line:col: message` for a TOML error, so the user can jump to the place.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map(|s| s.chars().count()).unwrap_or(0) + 1;
            format!("{line}:{col}: {}", err.message())
        }
        None => err.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_and_env_overrides() {
        let env = |name: &str| match name {
            "ESDETECT_ES_URL" => Some("http://a:9200, http://b:9200".to_string()),
            "ESDETECT_SPACE" => Some("soc".to_string()),
            _ => None,
        };
        let config = Config::load(None, &env).unwrap();
        assert_eq!(config.elasticsearch.urls, vec!["http://a:9200", "http://b:9200"]);
        assert_eq!(config.alerts_alias(&RuleSettings::default()), "esdetect-alerts-soc");
        assert_eq!(config.run.sequence_mode, SequenceMode::Kibana);
    }

    #[test]
    fn file_errors_name_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esdetect.toml");
        std::fs::write(&path, "[alerts]\nspace = \"a\"\nbogus = 1\n").unwrap();
        let err = Config::load(Some(&path), &no_env).unwrap_err().to_string();
        assert!(err.contains("esdetect.toml: 3:1:"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn scheduler_section_and_rule_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[scheduler]\nlisten = \"127.0.0.1:0\"\nbackfill_gaps = false\nmax_backfill = \"2d\"\nrun_timeout = 90\n\
             log_format = \"json\"\nindex_replicas = 0\n[rules.r1]\nschedule = \"*/5 * * * *\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &no_env).unwrap();
        let s = &config.scheduler;
        assert_eq!((s.listen.as_str(), s.backfill_gaps, s.index_replicas), ("127.0.0.1:0", false, Some(0)));
        assert_eq!(s.max_backfill, std::time::Duration::from_secs(2 * 86_400));
        assert_eq!(s.run_timeout, std::time::Duration::from_secs(90));
        assert_eq!(s.shutdown_grace, std::time::Duration::from_secs(30));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(config.rule_settings("r1").schedule.as_deref(), Some("*/5 * * * *"));
        assert_eq!(Config::default().scheduler.listen, "127.0.0.1:9464");
        std::fs::write(&path, "[scheduler]\nmax_backfill = \"forever\"\n").unwrap();
        let err = Config::load(Some(&path), &no_env).unwrap_err().to_string();
        assert!(err.contains("invalid duration"), "{err}");
        // Out-of-range durations are refused at load time with the position, never overflow later.
        std::fs::write(&path, "[scheduler]\nrun_timeout = \"100000000d\"\n").unwrap();
        let err = Config::load(Some(&path), &no_env).unwrap_err().to_string();
        assert!(err.contains("c.toml: 2:15:") && err.contains("maximum of 3650 days"), "{err}");
        std::fs::write(&path, "[scheduler]\nlease_margin = 999999999999\n").unwrap();
        let err = Config::load(Some(&path), &no_env).unwrap_err().to_string();
        assert!(err.contains("2:16:") && err.contains("maximum"), "{err}");
        std::fs::write(&path, "[run]\npage_size = 0\n").unwrap();
        assert!(Config::load(Some(&path), &no_env).unwrap_err().to_string().contains("page_size = 0 is out of range"));
        let big = |name: &str| (name == "ESDETECT_PAGE_SIZE").then(|| "20000".to_string());
        assert!(Config::load(None, &big).unwrap_err().to_string().contains("page_size = 20000"));
        std::fs::write(&path, "[scheduler]\nlistn = \"x\"\n").unwrap();
        assert!(Config::load(Some(&path), &no_env).is_err(), "unknown keys are refused");
        // `[source] fetch`: full by default, filtered on request, anything else refused with the position.
        use crate::source::es::SourceFetch;
        assert_eq!(Config::default().source.fetch, SourceFetch::Full);
        std::fs::write(&path, "[source]\nfetch = \"filtered\"\n").unwrap();
        assert_eq!(Config::load(Some(&path), &no_env).unwrap().source.fetch, SourceFetch::Filtered);
        std::fs::write(&path, "[source]\nfetch = \"some\"\n").unwrap();
        let err = Config::load(Some(&path), &no_env).unwrap_err().to_string();
        assert!(err.contains("2:9") && err.contains("filtered") && err.contains("full"), "{err}");
    }

    #[test]
    fn per_rule_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[rules.\"d84a11c0-eb12-4e7d-8a0a-718e38351e29\"]\nuuid = \"5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10\"\nalerts_index = \".alerts-security.alerts-{space}\"\nspace = \"soc\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &no_env).unwrap();
        let s = config.rule_settings("d84a11c0-eb12-4e7d-8a0a-718e38351e29");
        assert_eq!(s.uuid.as_deref(), Some("5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10"));
        assert_eq!(config.alerts_alias(&s), ".alerts-security.alerts-soc");
        assert!(config.rule_settings("other").uuid.is_none());
    }
}
