//! Custom query rules (`type = "query"`, `language = "kuery"` or `"lucene"`) against the cluster.
//!
//! Elasticsearch does the matching, as for Kibana: the rule's query (translated by [`crate::kql`]) and
//! filters, the window's range filter and the exception filter go in one search, paged oldest first
//! with a point in time and `search_after`. Every hit is a result: it becomes an event alert with the same
//! deterministic id, document and dedup as an EQL event alert ([`crate::alert`]). Kibana pages until it
//! has *created* `max_signals` alerts, so hits already alerted by an earlier (overlapping) window do not
//! count against the cap: the same here, by looking the candidate ids up before cutting.

use super::prepare::PreparedRule;
use super::scan::{AlertOutput, ClusterOutcome};
use super::summary::RunSummary;
use super::{alert_context, rule_mapping, write_plain_and_finish, RunOptions, Window, WindowFields, MAX_SIGNALS_WARNING};
use crate::alert::{self, AlertDoc};
use crate::eql::mapping::Mapping;
use crate::es::EsClient;
use crate::event::projection::Projection;
use crate::kql::{self, Language, Node};
use crate::rules::{Rule, RuleError};
use crate::sink::es::existing_ids;
use crate::source::es::{stream_window, SourceError, WindowQuery};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Instant;

/// What kind of rule a prepared rule is, and what its query became.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// An EQL rule: `PreparedRule::query` is its parsed query.
    Eql,
    /// A custom query rule; `PreparedRule::query` is unused (`any where true`).
    Query(QueryRule),
    /// A threshold rule: its query and its `threshold`; `PreparedRule::query` is unused.
    Threshold(QueryRule, super::threshold::ThresholdSpec),
    /// A new terms rule: its query and its new terms settings; `PreparedRule::query` is unused.
    NewTerms(QueryRule, super::new_terms::NewTermsSpec),
}

impl RuleKind {
    pub fn is_eql(&self) -> bool {
        matches!(self, RuleKind::Eql)
    }
}

/// A custom query rule's parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRule {
    pub language: Language,
    /// The parsed KQL (`None` for Lucene, which Elasticsearch parses).
    pub kql: Option<Node>,
}

/// Reads the rule's query for its type: KQL syntax errors point into the rule file.
pub fn rule_kind(rule: &Rule) -> Result<RuleKind, RuleError> {
    if rule.rule_type == "eql" {
        return Ok(RuleKind::Eql);
    }
    let Some(language) = Language::from_rule(&rule.language) else {
        return Err(rule.query_error(1, 1, format!("`language = \"{}\"` is not a query rule language (kuery or lucene)", rule.language)));
    };
    let kql = match language {
        Language::Kuery => Some(kql::parse(&rule.query).map_err(|e| rule.query_error(e.line, e.col, e.message))?),
        Language::Lucene => None,
    };
    let q = QueryRule { language, kql };
    if rule.rule_type == "threshold" {
        return Ok(RuleKind::Threshold(q, super::threshold::spec(rule)?));
    }
    if rule.rule_type == "new_terms" {
        return Ok(RuleKind::NewTerms(q, super::new_terms::spec(rule)?));
    }
    Ok(RuleKind::Query(q))
}

/// The query Kibana's `buildEsQuery` builds for the rule (query + rule filters), typed with `mapping`.
pub fn rule_query(prepared: &PreparedRule, q: &QueryRule, mapping: &Mapping) -> Value {
    kql::rule_query(q.language, &prepared.rule.query, prepared.rule.filters.as_ref(), mapping)
        .expect("the KQL was parsed when the rule was loaded")
}

/// The search of the rule's window: Kibana's range filter, the rule's query, the exceptions.
pub fn window_query(prepared: &PreparedRule, q: &QueryRule, window: &Window, page_size: usize, mapping: &Mapping) -> WindowQuery {
    let rule = &prepared.rule;
    let fields = WindowFields::for_rule(rule);
    let mut wq = WindowQuery::new(rule.index.clone(), window.from, window.to);
    wq.timestamp_field = "@timestamp".into();
    wq.window_field = fields.primary.clone();
    wq.fallback_to_timestamp = fields.fallback.is_some();
    wq.page_size = page_size;
    wq.pushdown = Some(rule_query(prepared, q, mapping));
    if let Some(clause) = prepared.exceptions.active_at(window.to).query_clause() {
        wq.extra_filters.push(serde_json::json!({"bool": {"must_not": [clause]}}));
    }
    wq
}

/// What `esdetect explain` prints for a query rule.
pub fn explain(prepared: &PreparedRule, q: &QueryRule, window: &Window, page_size: usize, mapping: &Mapping) -> String {
    let wq = window_query(prepared, q, window, page_size, mapping);
    let indices = crate::es::path::indices(&prepared.rule.index);
    let lang = match q.language {
        Language::Kuery => "KQL",
        Language::Lucene => "Lucene",
    };
    let body = serde_json::to_string_pretty(&crate::source::es::window_request_body(&wq)).unwrap_or_default();
    format!(
        "rule:      {} ({})\nfile:      {}\nindices:   {}\nrule uuid: {}   space: {}   alerts alias: {}\n\
         window:    [{}, {}] on {}\nlimit:     max_signals {} (the oldest hits first, as Kibana; hits already alerted do not count)\n\n\
         query ({lang}, matched by Elasticsearch):\n  {}\n\n\
         1. POST /{indices}/_pit?keep_alive={}&ignore_unavailable=true&allow_no_indices=true\n\
         2. POST /_search   (repeated with search_after until a page is short)\n{body}\n3. DELETE /_pit\n\
         4. POST /{}/_search   (dedup lookup of candidate alert ids), then POST /_bulk with `create`\n",
        prepared.rule.name,
        prepared.rule.rule_id,
        prepared.rule.path.display(),
        prepared.rule.index.join(" "),
        prepared.rule_uuid,
        prepared.space,
        prepared.alias,
        window.from.to_rfc3339(),
        window.to.to_rfc3339(),
        wq.window_field,
        prepared.rule.max_signals,
        prepared.rule.query.trim(),
        crate::source::es::PIT_KEEP_ALIVE,
        prepared.alias,
    )
}

/// Runs one query rule over one window; writes (or returns) its alerts.
pub async fn run_on_cluster(
    client: &EsClient,
    prepared: &PreparedRule,
    q: &QueryRule,
    window: Window,
    opts: &RunOptions,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
    output: AlertOutput,
) -> ClusterOutcome {
    let started = Instant::now();
    let done = |summary: RunSummary| ClusterOutcome { summary, groups: Vec::new() };
    let mut summary = RunSummary::new(prepared, window);
    let indices = &prepared.rule.index;
    let mapping = match rule_mapping(client, indices, opts).await {
        Ok(m) => m,
        Err(e) => return done(summary.fail(e, started)),
    };
    let wq = window_query(prepared, q, &window, opts.page_size, &mapping);
    let search_started = Instant::now();
    let mut events = Vec::new();
    let fetched = stream_window(client, &wq, &Projection::Full, |e| {
        events.push(e);
        Ok::<(), std::convert::Infallible>(())
    })
    .await;
    summary.durations.search_ms = search_started.elapsed().as_millis() as u64;
    match fetched {
        Ok(stats) => {
            summary.fetched = stats.hits as u64;
            summary.bytes_fetched = stats.bytes;
        }
        Err(SourceError::Consumer(e)) => return done(summary.fail(format!("query failed: {e}"), started)),
        Err(e) => return done(summary.fail(format!("could not read the window: {e}"), started)),
    }
    summary.candidates = events.len() as u64;
    let ctx = alert_context(prepared, opts, now());
    let docs = alert::event_alerts(&prepared.rule, &ctx, &events);
    drop(events);
    summary.matches = docs.len() as u64;

    // Kibana counts created alerts against max_signals: leave out the ones already written first.
    let index_started = Instant::now();
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    let present = if output == AlertOutput::Write && !ids.is_empty() {
        match existing_ids(client, &prepared.alias, &ids).await {
            Ok(p) => p,
            Err(e) => return done(summary.fail(format!("could not look up existing alerts in `{}`: {e}", prepared.alias), started)),
        }
    } else {
        Default::default()
    };
    let (new, old): (Vec<AlertDoc>, Vec<AlertDoc>) = docs.into_iter().partition(|d| !present.contains(&d.id));
    let cap = prepared.rule.max_signals as usize;
    let mut new = new;
    if new.len() > cap {
        new.truncate(cap);
        summary.truncated = true;
    }
    summary.kept = new.len() as u64;
    if cap > 0 && new.len() >= cap {
        summary.warnings.push(MAX_SIGNALS_WARNING.to_string());
    }
    summary.alerts_built = new.len() as u64;
    let groups: Vec<Vec<AlertDoc>> = new.into_iter().map(|d| vec![d]).collect();
    if output == AlertOutput::Return {
        return ClusterOutcome { summary: summary.finish(started), groups };
    }
    summary.duplicates = old.len() as u64;
    write_plain_and_finish(client, prepared, opts, groups, summary, index_started, started).await
}

/// Why `esdetect test` does not evaluate a Lucene rule on a file: its hits are Elasticsearch's to decide.
pub fn offline_refusal(q: &QueryRule) -> String {
    let lang = match q.language {
        Language::Kuery => "KQL",
        Language::Lucene => "Lucene",
    };
    format!("{lang} queries are matched by Elasticsearch and are not evaluated on files: run the rule with `run --once` against a cluster holding the events")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rule_types")
    }

    #[test]
    fn query_rules_load_from_toml_and_export_and_other_types_are_skipped() {
        let p = crate::detect::prepare_rules(&fixtures(), &Config::default());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let mut loaded: Vec<(&str, &str)> = p.rules.iter().map(|r| (r.rule.rule_id.as_str(), r.rule.language.as_str())).collect();
        loaded.sort();
        assert_eq!(
            loaded,
            [
                ("0f3e2a6c-8b1d-4f7a-a2c9-5d6e7f8a9b10", "lucene"),
                ("48b6edfc-079d-4907-b43c-baffa243270d", "kuery"),
                ("6b3f1c2e-0d9a-4b1e-9c55-2a7f0e4d8b11", "kuery"),
                ("a1c2e3f4-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "kuery"),
                ("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f", "kuery"),
                ("c5a1d2e3-kql-export", "kuery"),
                ("c5a1d2e3-nt-export", "kuery"),
                ("c5a1d2e3-thr-export", "kuery"),
            ]
        );
        assert!(p.rules.iter().filter(|r| r.rule.rule_type == "query").all(|r| matches!(r.kind, RuleKind::Query(_))));
        let thr = p.rules.iter().find(|r| r.rule.rule_id == "c5a1d2e3-thr-export").unwrap();
        let RuleKind::Threshold(_, t) = &thr.kind else { panic!("{:?}", thr.kind) };
        assert_eq!((t.fields.clone(), t.value, t.cardinality.clone()), (vec!["source.ip".to_string()], 20, None));
        assert_eq!(crate::detect::prepare::type_counts(&p), "esql 1 skipped, new_terms 2 loaded, query 4 loaded, threshold 2 loaded");
    }

    #[test]
    fn kql_syntax_errors_point_into_the_rule_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(fixtures().join("defense_evasion_shadow_copy_deletion.toml"))
            .unwrap()
            .replace("process.args:(delete and shadows)", "process.args:(delete and shadows");
        std::fs::write(dir.path().join("broken.toml"), &text).unwrap();
        let p = crate::detect::prepare_rules(dir.path(), &Config::default());
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        let e = &p.errors[0];
        // Without the `)`, the value list runs on into the next line (`and not user.name`), so the first
        // character the grammar cannot take is the `:` after `user.name`: line and column in the file.
        let (at, l) = text.lines().enumerate().find(|(_, l)| l.contains("not user.name:")).unwrap();
        assert_eq!((e.line, e.col), (at as u32 + 1, l.find(':').unwrap() as u32 + 1), "{e}");
        assert!(e.message.contains("KQL syntax error"), "{e}");
    }

    #[test]
    fn the_search_holds_range_query_filters_and_exceptions() {
        let p = crate::detect::prepare_rules(&fixtures(), &Config::default());
        let r = p.rules.iter().find(|r| r.rule.rule_id == "c5a1d2e3-kql-export").unwrap();
        let RuleKind::Query(q) = &r.kind else { panic!() };
        let now = chrono::DateTime::parse_from_rfc3339("2026-05-20T10:05:00Z").unwrap().with_timezone(&Utc);
        let window = Window::ending_at(&r.rule, now);
        let wq = window_query(r, q, &window, 500, &Mapping::builtin_ecs());
        let body = crate::source::es::window_request_body(&wq);
        let filters = body["query"]["bool"]["filter"].as_array().unwrap();
        assert_eq!(filters[0]["range"]["@timestamp"]["gte"], "2026-05-20T09:59:00.000Z");
        let q = &filters[2]["bool"];
        assert_eq!(q["filter"][0]["bool"]["filter"][0], serde_json::json!({"bool": {"should": [{"term": {"process.name": {"value": "powershell.exe"}}}], "minimum_should_match": 1}}));
        assert_eq!(q["must_not"], serde_json::json!([{"term": {"user.name": "svc-deploy"}}]));
        assert_eq!(body["sort"][0]["@timestamp"]["order"], "asc");
    }
}
