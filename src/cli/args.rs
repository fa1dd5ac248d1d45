//! Command-line arguments (clap derive). Only argument shapes live here; behaviour is in the library.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Run Elastic Security EQL detection rules outside Kibana, with Elasticsearch's EQL semantics,
/// writing Kibana-compatible, deduplicated alerts.
/// Exit codes, shown at the end of `esdetect --help` (keep in step with `cli::EXIT_*`).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success: every rule ran (or every rule is valid)
  1  at least one rule failed: a run error, an invalid rule (validate/test), or a failed conformance query;
     for `compare`: esdetect and Kibana (or _eql/search) differ
  2  usage, configuration or connection problem: nothing was run or written
  3  no failure, but a warning made a run a \"partial failure\" (e.g. the max_signals cap was reached)

Colour: tables are coloured only when stdout is a terminal; --no-color or a non-empty NO_COLOR turns it off.";

impl Cli {
    /// The log filter in force: `--log`/`ESDETECT_LOG`, else `info` for the daemon and `warn` otherwise.
    pub fn log_filter(&self) -> &str {
        match (&self.log, &self.command) {
            (Some(filter), _) => filter,
            (None, Command::Run(run)) if !run.once => "info",
            (None, _) => "warn",
        }
    }
}

#[derive(Debug, Parser)]
#[command(name = "esdetect", version, propagate_version = true, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Configuration file (TOML). Connection settings can also come from ESDETECT_ES_URL,
    /// ESDETECT_ES_API_KEY, ESDETECT_ES_USERNAME, ESDETECT_ES_PASSWORD, ESDETECT_ES_CA_CERT.
    #[arg(long, short = 'c', global = true, env = "ESDETECT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Rules folder or file: detection-rules TOML, Kibana export NDJSON (overrides `rules_dir` from the config).
    #[arg(long, global = true)]
    pub rules: Option<PathBuf>,

    /// Disable colours in human output.
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `esdetect=debug`. Default: `info` for the
    /// daemon (`run` without --once), `warn` for everything else.
    #[arg(long, global = true, env = "ESDETECT_LOG")]
    pub log: Option<String>,

    /// Log as JSON lines instead of human text.
    #[arg(long, global = true)]
    pub log_json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every enabled rule against the cluster. `--once` runs each rule's current window once.
    Run(RunArgs),
    /// Run rules over local event files, with no cluster, printing the alerts that would be written.
    Test(TestArgs),
    /// Parse and verify every rule; problems are printed as `file:line:col: message`.
    Validate,
    /// Print the parsed query and the Elasticsearch requests a run would send.
    Explain(ExplainArgs),
    /// Run an Elasticsearch EQL QA spec file (TOML) over a data file and compare results.
    EqlSpec(EqlSpecArgs),
    /// Write realistic Windows Security events (attacks and look-alikes) into the cluster.
    Simulate(SimulateArgs),
    /// Show each rule's state and its latest runs from the ledger (why was there no alert?).
    Status(StatusArgs),
    /// Run rules over a past time range now, window by window (execution type `manual`).
    Backfill(BackfillArgs),
    /// Compare Kibana's alerts for a rule with what esdetect finds over the same windows (writes nothing).
    /// Exit 0 when both agree, 1 when they differ, 2 on usage or connection problems.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The rule's `rule_id` (it must be in the rules path).
    #[arg(long, value_name = "RULE_ID")]
    pub rule: String,
    /// Start of the range (RFC 3339): Kibana executions whose alerts were persisted from then on.
    #[arg(long, value_name = "RFC3339")]
    pub from: String,
    /// End of the range (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<String>,
    /// Kibana's alerts index or alias; default `.alerts-security.alerts-<space>`.
    #[arg(long, value_name = "INDEX")]
    pub kibana_alerts: Option<String>,
    /// Kibana's rule id (saved-object uuid): match alerts by `kibana.alert.rule.uuid` instead of the rule_id.
    #[arg(long, value_name = "UUID")]
    pub kibana_rule_uuid: Option<String>,
    /// What to compare esdetect with: Kibana's alerts, or Elasticsearch's `_eql/search` run over the rule's
    /// schedule windows as Kibana sends it (checks the engine on your data; needs the EQL endpoint).
    #[arg(long, value_enum, default_value = "kibana")]
    pub against: Against,
    /// Output format (`json`: the whole report as one JSON object, for CI).
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Against {
    Kibana,
    Eql,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this rule id.
    #[arg(long, value_name = "RULE_ID")]
    pub rule: Option<String>,
    /// Latest runs shown per rule.
    #[arg(long, default_value_t = 5)]
    pub limit: usize,
    /// Output format (`json`: one `{"state":…}` or `{"run":…}` object per line).
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Start of the range (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub from: String,
    /// End of the range (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<String>,
    /// Only these rule ids (repeatable; disabled rules named here run too).
    #[arg(long = "rule", value_name = "RULE_ID")]
    pub rule_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run each enabled rule once over its window ending at `--now`, then exit. Without it, run as a
    /// daemon: every rule on its schedule until SIGTERM/SIGINT (see `[scheduler]` in the config).
    #[arg(long)]
    pub once: bool,
    /// End of the window (RFC 3339); default: the current time.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Only run these rule ids (repeatable).
    #[arg(long = "rule", value_name = "RULE_ID")]
    pub rule_ids: Vec<String>,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlertFormat {
    Table,
    Ndjson,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Events: NDJSON, a JSON array, or either gzipped (`.gz`); bare events or search hits. `-` reads standard
    /// input (once: it must be in time order).
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// Evaluate each rule over its own window `[T - from, T]` instead of the whole file as one window.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Output: a table of alerts, or one alert document per line (`_index`, `_id`, `_source`).
    #[arg(long, value_enum, default_value = "table")]
    pub format: AlertFormat,
    /// Only run these rule ids (repeatable).
    #[arg(long = "rule", value_name = "RULE_ID")]
    pub rule_ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The rule's `rule_id`.
    pub rule_id: String,
    /// End of the window to show (RFC 3339); default: the current time.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub struct EqlSpecArgs {
    /// Data: a JSON array of documents (`//` comment lines allowed). Several files (repeat the option or
    /// separate with commas) are searched together, one index each, like `sample1,sample2,sample3`.
    #[arg(long, value_name = "FILE", required = true, value_delimiter = ',')]
    pub data: Vec<PathBuf>,
    /// Spec: Elasticsearch QA TOML (`[[queries]]` with `query` and `expected_event_ids`).
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// Elasticsearch mapping JSON for the data (`#` comment lines allowed); several are merged.
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pub mapping: Vec<PathBuf>,
    /// Tiebreaker field; also the field that identifies events in `expected_event_ids` unless `--id-field`.
    #[arg(long, value_name = "FIELD", default_value = "serial_event_id")]
    pub tiebreaker: String,
    /// Send no tiebreaker field (the `test_sample.toml` runner does not).
    #[arg(long)]
    pub no_tiebreaker: bool,
    /// Field that identifies events in `expected_event_ids` (default: the tiebreaker field).
    #[arg(long, value_name = "FIELD")]
    pub id_field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioArg {
    Krbrelayup,
    SmbRelay,
    Noise,
    All,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Which events to write.
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: ScenarioArg,
    /// How many: for `all` and `noise` exactly this many events (attacks included); for `krbrelayup`
    /// and `smb-relay` the number of attacks (two events each for krbrelayup, one for smb-relay).
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Start of the time the events are spread over (RFC 3339): every event is at or after it, the attacks
    /// and nearly all other events within the next 4 minutes (a "late service" look-alike's second event
    /// up to 10 minutes after). Default: 4 minutes ago.
    #[arg(long, value_name = "RFC3339")]
    pub start: Option<String>,
    /// Random seed (same seed, same events).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the events as NDJSON search hits instead of writing them to the cluster.
    #[arg(long)]
    pub stdout: bool,
    /// Data stream namespace: events go to `logs-system.security-<NS>`, `logs-windows.forwarded-<NS>` and
    /// `winlogbeat-8.19.0-<NS>` (the last only when NS is not `default`). Lower case, digits and `_`.
    #[arg(long, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// Also write what was planted (attacks and look-alikes, with record ids and indices) to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub planted_out: Option<PathBuf>,
}
