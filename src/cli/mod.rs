//! The command-line shell: parse arguments, load configuration, call the library, print, choose the exit
//! code. No detection logic lives here.
//!
//! Exit codes: 0 every rule succeeded; 1 at least one rule run failed (or validation/conformance found
//! errors, or `compare` found a difference); 2 usage, configuration or connection problem (nothing was run or written); 3 no failure, but
//! at least one run ended in "partial failure" (a warning, e.g. the max_signals cap was hit).

pub mod args;
pub mod daemon;
pub mod output;
pub mod reload;

use crate::config::Config;
use crate::detect::{self, prepare::Prepared, PreparedRule, RunOptions, RunStatus, RunSummary, Window};
use crate::eql::mapping::Mapping;
use crate::es::EsClient;
use anyhow::{anyhow, bail, Context, Result};
use args::{AlertFormat, Cli, Command, OutputFormat};
use chrono::{DateTime, Utc};
use output::Style;
use std::io::Write;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PARTIAL: i32 = 3;

/// Runs the parsed command line; returns the process exit code. Errors are usage/config/connection
/// problems and map to exit code 2.
pub async fn run(cli: Cli) -> Result<i32> {
    let config = load_config(&cli)?;
    let style = Style::detect(cli.no_color);
    match &cli.command {
        Command::Run(a) => run_rules(&config, a, style).await,
        Command::Test(a) => test_rules(&config, a, style),
        Command::Validate => validate(&config, style),
        Command::Explain(a) => explain(&config, a),
        Command::EqlSpec(a) => eql_spec(a),
        Command::Simulate(a) => simulate(&config, a).await,
        Command::Status(a) => daemon::status(&config, a, style).await,
        Command::Backfill(a) => daemon::backfill(&config, a).await,
        Command::Compare(a) => compare(&config, a, style).await,
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    let env = |name: &str| std::env::var(name).ok();
    let mut config = Config::load(cli.config.as_deref(), &env)?;
    if let Some(dir) = &cli.rules {
        config.rules_dir = dir.clone();
        config.rules_dir_origin = "--rules".into();
    }
    Ok(config)
}

/// Whether `rule` is in shadow mode (`mode = "shadow"`): the daemon compares it with Kibana instead of
/// writing alerts, so a manual run (`what`) must not write them either; says so on stderr.
pub(crate) fn writes_nothing(config: &Config, rule: &PreparedRule, what: &str) -> bool {
    let shadow = config.rule_settings(&rule.rule.rule_id).mode == Some(crate::config::RuleMode::Shadow);
    if shadow {
        eprintln!(
            "{}: in shadow mode, so {what} skips it (it writes no alerts); use `esdetect compare --rule {}` to check it",
            rule.rule.rule_id, rule.rule.rule_id
        );
    }
    shadow
}

/// A time argument in RFC 3339; absent means now.
fn parse_time(text: Option<&str>, what: &str) -> Result<DateTime<Utc>> {
    match text {
        None => Ok(Utc::now()),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| anyhow!("{what}: `{t}` is not an RFC 3339 time such as 2026-05-20T10:05:00Z ({e})")),
    }
}

/// Loads and prepares the rules; prints problems as `file:line:col: message`. Fails when none is usable.
fn load_rules(config: &Config, only: &[String]) -> Result<Prepared> {
    // A missing rules path (a folder, or one export/TOML file) is a usage problem (exit 2), said once, with
    // where the path came from.
    if !config.rules_dir.exists() {
        bail!(
            "rules path {} not found (from {}); pass --rules DIR or set `rules_dir` in the config",
            config.rules_dir.display(),
            config.rules_dir_origin
        );
    }
    let mut prepared = detect::prepare_rules(&config.rules_dir, config);
    for e in &prepared.errors {
        eprintln!("{e}");
    }
    for w in &prepared.warnings {
        eprintln!("warning: {w}");
    }
    if !prepared.skipped.is_empty() {
        eprintln!("skipped {} rule(s): {} (`esdetect validate` lists them)", prepared.skipped.len(), skip_counts(&prepared));
    }
    if !only.is_empty() {
        prepared.rules.retain(|r| only.contains(&r.rule.rule_id));
        if prepared.rules.is_empty() {
            bail!("none of the rule ids {only:?} is in {}", config.rules_dir.display());
        }
    }
    Ok(prepared)
}

/// The mapping for offline use: built-in ECS table, the configured mapping file, and value-typed unknowns.
fn offline_mapping(config: &Config) -> Result<Mapping> {
    let mut mapping = Mapping::builtin_ecs();
    if let Some(path) = &config.mapping.file {
        let file = Mapping::from_es_mapping_file(path).with_context(|| format!("mapping file {}", path.display()))?;
        mapping.merge(&file);
    }
    mapping.set_infer_unknown(true);
    Ok(mapping)
}

/// Options of a cluster run: [`offline_run_options`] plus the rule actions (connector secrets read now, so
/// a missing one stops the command before anything runs).
fn run_options(config: &Config) -> Result<RunOptions> {
    let mut opts = offline_run_options(config)?;
    opts.actions = config.rule_actions(&|name| std::env::var(name).ok())?.map(std::sync::Arc::new);
    Ok(opts)
}

/// Options of a run that writes nothing (no actions: nothing is ever notified offline).
fn offline_run_options(config: &Config) -> Result<RunOptions> {
    let mut opts = RunOptions {
        page_size: config.run.page_size,
        kibana_version: config.alerts.kibana_version.clone(),
        mapping_from_cluster: config.mapping.from_cluster,
        source_fetch: config.source.fetch,
        ..RunOptions::default()
    };
    if let Some(path) = &config.mapping.file {
        let file = Mapping::from_es_mapping_file(path).with_context(|| format!("mapping file {}", path.display()))?;
        opts.base_mapping.merge(&file);
    }
    Ok(opts)
}

fn exit_code(summaries: &[RunSummary], had_rule_errors: bool) -> i32 {
    if had_rule_errors || summaries.iter().any(|s| s.status == RunStatus::Failed) {
        EXIT_FAILED
    } else if summaries.iter().any(|s| s.status == RunStatus::PartialFailure) {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    }
}

/// Connects and checks the cluster answers, so an unreachable cluster is one clear error up front.
async fn connect(config: &Config) -> Result<EsClient> {
    let client = EsClient::new(&config.elasticsearch)?;
    let info = client.info().await?;
    tracing::info!(version = %info.version, urls = %client.urls(), "connected");
    Ok(client)
}

async fn run_rules(config: &Config, a: &args::RunArgs, style: Style) -> Result<i32> {
    if !a.once {
        if a.now.is_some() {
            bail!("--now only applies to `run --once`; the daemon always runs on the current time");
        }
        return daemon::run_daemon(config, a).await;
    }
    let now = parse_time(a.now.as_deref(), "--now")?;
    let prepared = load_rules(config, &a.rule_ids)?;
    let rules: Vec<&PreparedRule> =
        prepared.rules.iter().filter(|r| r.enabled && !writes_nothing(config, r, "run --once")).collect();
    if rules.is_empty() {
        bail!("no enabled rule to run in {}", config.rules_dir.display());
    }
    let client = connect(config).await?;
    let opts = run_options(config)?;
    let store = daemon::state_store(config, client.clone());
    let summaries =
        crate::scheduler::manual::run_once(&client, &store, &daemon::owner_id(config), &rules, now, &opts).await?;
    print_summaries(a.format, style, &summaries)?;
    if a.format == OutputFormat::Table {
        // Which cluster this was (credentials never appear: they are taken out of the URLs).
        println!("cluster: {}", client.urls());
    }
    Ok(exit_code(&summaries, !prepared.errors.is_empty()))
}

fn print_summaries(format: OutputFormat, style: Style, summaries: &[RunSummary]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            for s in summaries {
                writeln!(out, "{}", serde_json::to_string(s)?)?;
            }
        }
        OutputFormat::Table => writeln!(out, "{}", output::summaries_table(style, summaries))?,
    }
    Ok(())
}

fn test_rules(config: &Config, a: &args::TestArgs, style: Style) -> Result<i32> {
    let prepared = load_rules(config, &a.rule_ids)?;
    if prepared.runnable().next().is_none() {
        bail!("no enabled rule to run in {}", config.rules_dir.display());
    }
    let mapping = offline_mapping(config)?;
    let now = a.now.as_deref().map(|t| parse_time(Some(t), "--now")).transpose()?;
    let opts = offline_run_options(config)?;
    let rules: Vec<&PreparedRule> = prepared.rules.iter().filter(|r| r.enabled).collect();
    // Query, threshold and new terms rules are evaluated apart (KQL in memory); EQL rules in the one pass.
    let (query_rules, rules): (Vec<&PreparedRule>, Vec<&PreparedRule>) =
        rules.into_iter().partition(|r| detect::offline_query::evaluated_apart(r));
    let mut run = match detect::offline::run_on_file(&rules, &mapping, &a.events, now, &opts) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("error: reading events from {}: {e}", a.events.display());
            return Ok(EXIT_USAGE);
        }
    };
    if !query_rules.is_empty() {
        match detect::offline_query::run_on_file(&query_rules, &mapping, &a.events, now, &opts) {
            Ok(outcomes) => run.rules.extend(outcomes),
            Err(e) => {
                eprintln!("error: reading events from {}: {e}", a.events.display());
                return Ok(EXIT_USAGE);
            }
        }
    }
    for (line, reason) in &run.read.skipped {
        eprintln!("{}:{line}: skipped: {reason}", a.events.display());
    }
    let skipped = run.read.skipped_count();
    if skipped > run.read.skipped.len() as u64 {
        eprintln!("{}: … the first {} skipped line(s) are shown", a.events.display(), run.read.skipped.len());
    }
    if skipped > 0 {
        eprintln!("{}: {} event(s) read, {skipped} line(s) skipped", a.events.display(), run.read.events);
    }
    if let Some(why) = &run.read.truncated {
        eprintln!("{}: the compressed stream ends early ({why}) after {} event(s)", a.events.display(), run.read.events);
    }
    if run.read.events == 0 {
        eprintln!(
            "error: no event could be read from {} ({skipped} line(s) skipped); nothing was evaluated",
            a.events.display()
        );
        return Ok(EXIT_USAGE);
    }
    let mut out = std::io::stdout().lock();
    let mut table = style.table(&["rule", "_id", "kind", "original time", "reason"]);
    // Never wrap an alert id (it must stay copyable) nor a timestamp; the rule name and reason wrap instead.
    for i in [1, 3] {
        if let Some(column) = table.column_mut(i) {
            column.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
        }
    }
    for outcome in &run.rules {
        for group in &outcome.groups {
            match a.format {
                AlertFormat::Ndjson => {
                    crate::sink::stdout::write_alert_docs(&mut out, &outcome.prepared.alias, group)?;
                }
                AlertFormat::Table => {
                    for doc in group {
                        let field = |name: &str| doc.source.get(name).and_then(|v| v.as_str()).unwrap_or("").to_string();
                        table.add_row(vec![
                            outcome.prepared.rule.name.clone(),
                            doc.id.clone(),
                            doc.kind().to_string(),
                            field("kibana.alert.original_time"),
                            field("kibana.alert.reason"),
                        ]);
                    }
                }
            }
        }
    }
    if a.format == AlertFormat::Table {
        writeln!(out, "{table}")?;
    }
    drop(out);
    // Alert suppression offline: say that only its in-run part applies (src/alert/suppression.rs).
    let suppressing: Vec<String> = run
        .rules
        .iter()
        .filter(|o| o.prepared.rule.alert_suppression.is_some())
        .map(|o| format!("note [{}]: alert_suppression applied within this run only ({} alert(s) suppressed); merging with alerts of earlier runs needs `run`", o.prepared.rule.rule_id, o.summary.suppressed))
        .collect();
    let summaries: Vec<RunSummary> = run.rules.into_iter().map(|o| o.summary).collect();
    eprintln!("{}", output::summaries_table(style, &summaries));
    for note in suppressing {
        eprintln!("{note}");
    }
    Ok(exit_code(&summaries, !prepared.errors.is_empty()))
}

/// `3 disabled, 2 type query, …`: the skip reasons with their counts.
fn skip_counts(prepared: &Prepared) -> String {
    prepared.skipped_counts().iter().map(|(reason, n)| format!("{n} {reason}")).collect::<Vec<_>>().join(", ")
}

fn validate(config: &Config, _style: Style) -> Result<i32> {
    let prepared = load_rules(config, &[])?;
    let mapping = offline_mapping(config)?;
    let mut errors = prepared.errors.len();
    let mut valid = 0;
    for rule in &prepared.rules {
        if !rule.kind.is_eql() {
            // Query, threshold, new terms: the KQL (and settings) were checked when the rule was loaded;
            // Elasticsearch parses Lucene.
            valid += rule.enabled as usize;
            continue;
        }
        match detect::compile(rule, &mapping) {
            // Every problem the verifier found, each as `file:line:col: message`, so all can be fixed at once.
            Err(e) => {
                for p in e.problems() {
                    eprintln!("{}", rule.rule.query_error(p.span.line, p.span.col, p.message.clone()));
                    errors += 1;
                }
            }
            Ok(_) if rule.enabled => valid += 1,
            Ok(_) => {}
        }
    }
    for s in &prepared.skipped {
        eprintln!("{s}");
    }
    // Connectors and actions: every problem at once, naming the config file, connector or rule.
    let actions = crate::actions::check::check(config, &prepared.rules, &|name| std::env::var(name).ok());
    for w in &actions.warnings {
        eprintln!("warning: {w}");
    }
    for e in &actions.errors {
        eprintln!("{e}");
    }
    errors += actions.errors.len();
    let skipped = if prepared.skipped.is_empty() { String::new() } else { format!(" ({})", skip_counts(&prepared)) };
    println!("{valid} rule(s) valid, {errors} error(s), {} skipped{skipped}", prepared.skipped.len());
    println!("by type: {}", detect::prepare::type_counts(&prepared));
    if valid == 0 && errors == 0 {
        eprintln!("no rule in {} can run", config.rules_dir.display());
        return Ok(EXIT_FAILED);
    }
    Ok(if errors > 0 { EXIT_FAILED } else { EXIT_OK })
}

fn explain(config: &Config, a: &args::ExplainArgs) -> Result<i32> {
    let prepared = load_rules(config, &[])?;
    let rule = prepared
        .rules
        .iter()
        .find(|r| r.rule.rule_id == a.rule_id)
        .ok_or_else(|| anyhow!("no rule with rule_id {} in {}", a.rule_id, config.rules_dir.display()))?;
    let now = parse_time(a.now.as_deref(), "--now")?;
    let window = Window::ending_at(&rule.rule, now);
    // The built-in ECS table (and the configured mapping file) decide how the pushdown names fields; a run
    // also merges the cluster's `_mapping`, which can only turn a `text` field into its keyword sub-field.
    let mapping = offline_mapping(config)?;
    match &rule.kind {
        detect::query_rule::RuleKind::Query(q) => {
            print!("{}", detect::query_rule::explain(rule, q, &window, config.run.page_size, &mapping));
            return Ok(EXIT_OK);
        }
        detect::query_rule::RuleKind::Threshold(q, t) => {
            print!("{}", detect::threshold::explain(rule, q, t, &window, &mapping));
            return Ok(EXIT_OK);
        }
        detect::query_rule::RuleKind::NewTerms(q, t) => {
            print!("{}", detect::new_terms::explain(rule, q, t, &window, &mapping));
            return Ok(EXIT_OK);
        }
        detect::query_rule::RuleKind::Eql => {}
    }
    let opts = offline_run_options(config)?;
    let plan = detect::compile(rule, &mapping).map_err(|e| anyhow!("query rejected: {}", e.render_all(&rule.rule.query)))?;
    let query = detect::scan::scan_query(rule, &plan, window, &opts, &mapping);
    println!("rule:      {} ({})", rule.rule.name, rule.rule.rule_id);
    println!("file:      {}", rule.rule.path.display());
    println!("indices:   {}", rule.rule.index.join(" "));
    println!("rule uuid: {}   space: {}   alerts alias: {}", rule.rule_uuid, rule.space, rule.alias);
    println!("window:    [{}, {}] on {}", window.from.to_rfc3339(), window.to.to_rfc3339(), query.window_field);
    match &rule.query.body {
        crate::eql::ast::QueryBody::Sample(_) => println!(
            "limit:     max_signals {} samples (the first ones in ascending join-key order, one per key; each is a shell plus building blocks)",
            rule.rule.max_signals
        ),
        _ => println!("limit:     max_signals {} (tail: the most recent results are kept)", rule.rule.max_signals),
    }
    if !rule.exceptions.is_empty() {
        let names: Vec<&str> = rule.exceptions.items.iter().map(|i| i.item_id.as_str()).collect();
        println!("exceptions: {} item(s) ({}), excluded by the `must_not` filter below", names.len(), names.join(", "));
    }
    println!();
    println!("query (normalised):\n  {}\n", rule.query);
    let steps = crate::source::es::describe_window(crate::es::Flavour::Elasticsearch, &query);
    for (n, step) in steps.iter().enumerate() {
        let note = if step.note.is_empty() { String::new() } else { format!("   ({})", step.note) };
        println!("{}. {} {}{note}", n + 1, step.method, step.path);
        if let Some(body) = &step.body {
            println!("{}", serde_json::to_string_pretty(body)?);
        }
    }
    println!("{}. POST /{}/_search   (dedup lookup of candidate alert ids), then POST /_bulk with `create`", steps.len() + 1, rule.alias);
    Ok(EXIT_OK)
}

/// `esdetect compare`: the library compares, this prints the report and maps agreement to the exit code.
async fn compare(config: &Config, a: &args::CompareArgs, style: Style) -> Result<i32> {
    let prepared = load_rules(config, &[])?;
    let rule = prepared
        .rules
        .iter()
        .find(|r| r.rule.rule_id == a.rule)
        .ok_or_else(|| anyhow!("no rule with rule_id {} in {}", a.rule, config.rules_dir.display()))?;
    let req = crate::compare::CompareRequest {
        from: parse_time(Some(&a.from), "--from")?,
        to: parse_time(a.to.as_deref(), "--to")?,
        kibana_index: a.kibana_alerts.clone(),
        kibana_rule_uuid: a.kibana_rule_uuid.clone(),
    };
    if a.against == args::Against::Eql && (req.kibana_index.is_some() || req.kibana_rule_uuid.is_some()) {
        bail!("--kibana-alerts and --kibana-rule-uuid only apply to `--against kibana`");
    }
    let client = connect(config).await?;
    let opts = run_options(config)?;
    if a.against == args::Against::Eql {
        let report = crate::compare::eql::compare_with_eql(&client, rule, req.from, req.to, &opts).await?;
        let mut out = std::io::stdout().lock();
        match a.format {
            OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(&report)?)?,
            OutputFormat::Table => writeln!(out, "{}", eql_compare_table(style, &report))?,
        }
        return Ok(if report.agrees() { EXIT_OK } else { EXIT_FAILED });
    }
    let report = crate::compare::compare(&client, rule, &req, &opts).await?;
    let mut out = std::io::stdout().lock();
    match a.format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(&report)?)?,
        OutputFormat::Table => writeln!(out, "{}", compare_table(style, &report))?,
    }
    Ok(if report.agrees() { EXIT_OK } else { EXIT_FAILED })
}

/// The comparison for people: one row per window, then every divergence with its reason, then totals.
fn compare_table(style: Style, r: &crate::compare::Report) -> String {
    use crate::compare::WindowSource;
    let mut t = style.table(&["window (UTC)", "window of", "esdetect results", "kibana results", "both", "differing", "kibana only", "esdetect only"]);
    let time = |d: DateTime<Utc>| d.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    let mut details = String::new();
    for w in &r.windows {
        let source = match &w.source {
            WindowSource::Kibana { execution_uuid } => format!("execution {execution_uuid}"),
            WindowSource::Schedule => "schedule (no Kibana alert)".to_string(),
        };
        let span = format!("{} → {}", time(w.window.from), w.window.to.format("%H:%M:%S%.3f"));
        t.add_row(vec![
            span.clone(),
            source,
            w.esdetect_results.to_string(),
            w.kibana_results.to_string(),
            w.both.to_string(),
            w.differing.len().to_string(),
            w.kibana_only.len().to_string(),
            w.esdetect_only.len().to_string(),
        ]);
        for d in &w.differing {
            details.push_str(&format!("\ndiffers   [{span}] {} {} ({})", d.kind, d.id, d.events.join(", ")));
            for f in &d.fields {
                let show = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "(absent)".into());
                details.push_str(&format!("\n    {} of {}: Kibana {} / esdetect {}", f.field, f.doc, show(&f.kibana), show(&f.esdetect)));
            }
        }
        for (side, list) in [("only Kibana  ", &w.kibana_only), ("only esdetect", &w.esdetect_only)] {
            for o in list {
                details.push_str(&format!("\n{side} [{span}] {} {} ({})\n    why: {}", o.kind, o.id, o.events.join(", "), o.reason));
            }
        }
    }
    let n = &r.totals;
    let verdict = if r.agrees() { "agree" } else { "DIFFER" };
    format!(
        "{} ({}) vs Kibana rule {} in {}, {} → {}\n{t}{details}\n{verdict}: {} in both ({} of them written by Kibana outside the range), {} differing, {} only in Kibana, {} only in esdetect",
        r.rule_name,
        r.rule_id,
        r.kibana_rule_uuid,
        r.kibana_index,
        time(r.from),
        time(r.to),
        n.both + n.both_outside_range,
        n.both_outside_range,
        n.differing,
        n.kibana_only,
        n.esdetect_only
    )
}

/// `compare --against eql` for people: one row per window, then each one-sided result with its reason.
fn eql_compare_table(style: Style, r: &crate::compare::eql::EqlReport) -> String {
    let mut t = style.table(&["window (UTC)", "_eql results", "esdetect results", "both", "only _eql", "only esdetect"]);
    let mut details = String::new();
    for w in &r.windows {
        let span = format!("{} → {}", w.window.from.format("%Y-%m-%d %H:%M:%S%.3f"), w.window.to.format("%H:%M:%S%.3f"));
        t.add_row(vec![
            span.clone(),
            w.eql_results.to_string(),
            w.esdetect_results.to_string(),
            w.both.to_string(),
            w.eql_only.len().to_string(),
            w.esdetect_only.len().to_string(),
        ]);
        for (side, list) in [("only _eql    ", &w.eql_only), ("only esdetect", &w.esdetect_only)] {
            for o in list {
                details.push_str(&format!("\n{side} [{span}] {}\n    why: {}", o.events.join(", "), o.reason));
            }
        }
    }
    let verdict = if r.agrees() { "agree" } else { "DIFFER" };
    format!("{} ({}) vs Elasticsearch's _eql/search\n{t}{details}\n{verdict}", r.rule_name, r.rule_id)
}

fn eql_spec(a: &args::EqlSpecArgs) -> Result<i32> {
    let data: Vec<&std::path::Path> = a.data.iter().map(|p| p.as_path()).collect();
    let mappings: Vec<&std::path::Path> = a.mapping.iter().map(|p| p.as_path()).collect();
    let tiebreaker = (!a.no_tiebreaker).then_some(a.tiebreaker.as_str());
    let id_field = a.id_field.as_deref().unwrap_or(&a.tiebreaker);
    let report = crate::conformance::run_indices_with_engine(&data, &a.spec, &mappings, tiebreaker, id_field)?;
    println!("{report}");
    Ok(if report.failed() == 0 { EXIT_OK } else { EXIT_FAILED })
}

async fn simulate(config: &Config, a: &args::SimulateArgs) -> Result<i32> {
    use crate::simulate::{lab, Scenario, Simulator};
    lab::check_namespace(&a.namespace).map_err(|e| anyhow!(e))?;
    let spread = chrono::Duration::minutes(4);
    // By default events land in the four minutes before now, so the next run's window sees all of them.
    let start = match &a.start {
        Some(t) => parse_time(Some(t), "--start")?,
        None => Utc::now() - spread,
    };
    let mut sim = Simulator::new(a.seed, start);
    sim.window_ms = spread.num_milliseconds();
    let scenario = match a.scenario {
        args::ScenarioArg::Krbrelayup => Scenario::KrbRelayUp,
        args::ScenarioArg::SmbRelay => Scenario::SmbRelay,
        args::ScenarioArg::Noise => Scenario::Noise,
        args::ScenarioArg::All => Scenario::All,
    };
    let write_planted = |sim: &Simulator| -> Result<()> {
        if let Some(path) = &a.planted_out {
            let planted = lab::planted_json(sim.planted(), &a.namespace);
            std::fs::write(path, serde_json::to_string_pretty(&planted)?)
                .with_context(|| format!("writing --planted-out {}", path.display()))?;
        }
        Ok(())
    };
    if a.stdout {
        // Streamed in time slices: memory does not grow with --count (simulate::stream).
        sim.record_planted = a.planted_out.is_some();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        sim.write_hits(scenario, a.count, &a.namespace, crate::simulate::stream::SLICE_DOCS, &mut out)?;
        out.flush()?;
        write_planted(&sim)?;
        return Ok(EXIT_OK);
    }
    let mut docs = sim.generate(scenario, a.count);
    lab::apply_namespace(&mut docs, &a.namespace);
    write_planted(&sim)?;
    let client = connect(config).await?;
    // indicatif draws only when stderr is a terminal, so logs and CI output stay clean.
    let bar = indicatif::ProgressBar::new(docs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let written = lab::write_events(
        &client,
        &docs,
        &mut |name| bar.suspend(|| eprintln!("created index template {name}")),
        &mut |n| bar.set_position(n as u64),
    )
    .await?;
    bar.finish_and_clear();
    let (attacks, lookalikes) = lab::planted_counts(&sim);
    let mut indices: Vec<&str> = docs.iter().map(|(i, _)| i.as_str()).collect();
    indices.sort();
    indices.dedup();
    eprintln!(
        "wrote {written} events ({attacks} planted attacks, {lookalikes} look-alikes) from {} into {}",
        start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        indices.join(", ")
    );
    Ok(EXIT_OK)
}

