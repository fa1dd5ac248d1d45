//! Runs Elasticsearch's EQL QA specifications (`test_queries.toml`, `test_extra.toml`, `test_sample.toml`,
//! `test_missing_events.toml`) against the engine.
//!
//! Samples and missing events follow the README's §8: several data files may form one request (one index
//! each, their mappings merged), a spec may set `size`, a sample is flattened like a sequence, and a missing
//! event is the id `-1` at its stage's place. Queries listed in [`KNOWN_DIFFERENCES`] are reported as
//! skipped with the documented reason when they do not match (and as passed when they do).
//!
//! The format and the comparison rules are described in `shared/conformance/README.md` §3–§7: each active
//! `[[queries]]` table has a `name`, a `query` and `expected_event_ids` (the tiebreaker-field values of the
//! returned events, sequences flattened in stage order); `test_extra.toml` adds `join_keys` (the flattened
//! join-key values as strings). Queries run with `size = 50`, `result_position = tail` and the index's
//! tiebreaker field, like ES's `BaseEqlSpecTestCase`.
//!
//! This module does not know how a query is compiled: callers pass a closure (the parser + analyser + a
//! mapping). A compile error whose message starts with [`UNSUPPORTED_PREFIX`] (or says "not supported")
//! marks a feature the engine deliberately does not implement; such tests count as *skipped*, every other
//! error or mismatch as *failed*.

use esdetect_eql::engine::{self, Results};
use esdetect_eql::plan::{KeyValue, Plan, Position, QueryOptions};
use esdetect_eql::EqlError;
use esdetect_eql::event::Event;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// The message prefix the analyser uses for features it deliberately does not implement
/// (`unsupported: missing-event stages`). Conformance runs count such queries as skipped.
pub const UNSUPPORTED_PREFIX: &str = "unsupported:";

/// Whether a compile error marks an unimplemented feature rather than a bug.
pub fn is_unsupported(err: &EqlError) -> bool {
    err.message.starts_with(UNSUPPORTED_PREFIX) || err.message.to_ascii_lowercase().contains("not supported")
}

/// Stands in for a bare TOML `null` (which TOML lacks) while parsing; never visible outside this module.
const NULL_SENTINEL: &str = "\u{E000}null\u{E000}";

/// Why a spec or data file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid spec file: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("{path}: not valid event data (expected a JSON array of objects or one JSON object per line): {message}")]
    Data { path: PathBuf, message: String },
}

/// One expected join-key value. Upstream writes both a bare `null` (JToml null) and the string `"null"`;
/// they stay distinct here, and both match a null key in the results (ES renders keys with
/// `String.valueOf`, which turns null into `"null"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedKey {
    Null,
    Str(String),
}

/// One active `[[queries]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecQuery {
    pub name: String,
    /// The query text, trimmed like the ES loader does.
    pub query: String,
    /// Accepted results: one flat id list, or (newer loader) several alternatives.
    pub expected_event_ids: Vec<Vec<i64>>,
    pub join_keys: Option<Vec<ExpectedKey>>,
    /// The request `size` for this query (newer specs), instead of the runner's 50.
    pub size: Option<usize>,
    /// The request `max_samples_per_key` for a `sample` query (newer specs), instead of ES's default 1.
    pub max_samples_per_key: Option<usize>,
}

/// A parsed spec file (active queries only, in file order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpecFile {
    pub queries: Vec<SpecQuery>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    queries: Vec<RawQuery>,
}

#[derive(Deserialize)]
struct RawQuery {
    name: String,
    query: String,
    expected_event_ids: toml::Value,
    #[serde(default)]
    join_keys: Option<Vec<toml::Value>>,
    #[serde(default)]
    size: Option<i64>,
    #[serde(default)]
    max_samples_per_key: Option<i64>,
}

impl SpecFile {
    /// Parses spec text. Lines starting with `#` are comments (so commented-out tests are inactive); bare
    /// `null` inside `join_keys` arrays is accepted, as ES's JToml parser does.
    pub fn parse(text: &str) -> Result<SpecFile, String> {
        let cleaned = replace_bare_nulls(text);
        let raw: RawFile = toml::from_str(&cleaned).map_err(|e| e.to_string())?;
        let mut queries = Vec::with_capacity(raw.queries.len());
        for q in raw.queries {
            let expected_event_ids = parse_expected_ids(&q.expected_event_ids)
                .map_err(|m| format!("query {:?}: expected_event_ids: {m}", q.name))?;
            let join_keys = match q.join_keys {
                None => None,
                Some(values) => Some(
                    values
                        .iter()
                        .map(|v| match v {
                            toml::Value::String(s) if s == NULL_SENTINEL => Ok(ExpectedKey::Null),
                            toml::Value::String(s) => Ok(ExpectedKey::Str(s.clone())),
                            toml::Value::Integer(i) => Ok(ExpectedKey::Str(i.to_string())),
                            other => Err(format!("query {:?}: join_keys: unexpected value {other}", q.name)),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let size = match q.size {
                None => None,
                Some(n) => Some(usize::try_from(n).map_err(|_| format!("query {:?}: size {n} is negative", q.name))?),
            };
            let max_samples_per_key = match q.max_samples_per_key {
                None => None,
                Some(n) if n >= 1 => Some(n as usize),
                Some(n) => return Err(format!("query {:?}: max_samples_per_key {n} must be at least 1", q.name)),
            };
            queries.push(SpecQuery {
                name: q.name,
                query: q.query.trim().to_string(),
                expected_event_ids,
                join_keys,
                size,
                max_samples_per_key,
            });
        }
        Ok(SpecFile { queries })
    }

    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<SpecFile, ConformanceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConformanceError::Io { path: path.into(), source })?;
        SpecFile::parse(&text).map_err(|message| ConformanceError::Spec { path: path.into(), message })
    }
}

/// `[1, 2]` → one alternative; `[[1, 2], [3, 4]]` → two alternatives; `[]` → one empty alternative.
fn parse_expected_ids(v: &toml::Value) -> Result<Vec<Vec<i64>>, String> {
    let toml::Value::Array(items) = v else { return Err("must be an array".into()) };
    if items.iter().all(|i| matches!(i, toml::Value::Array(_))) && !items.is_empty() {
        items.iter().map(|alt| ids_of(alt)).collect()
    } else {
        Ok(vec![ids_of(v)?])
    }
}

fn ids_of(v: &toml::Value) -> Result<Vec<i64>, String> {
    let toml::Value::Array(items) = v else { return Err("must be an array".into()) };
    items.iter().map(|i| i.as_integer().ok_or_else(|| format!("{i} is not an integer"))).collect()
}

/// Replaces bare `null` tokens in `join_keys = [...]` arrays (possibly spanning lines) by a sentinel string.
/// Only those arrays are touched: query text (inside `'''` strings) may legitimately contain `null`.
fn replace_bare_nulls(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut in_join_keys = false;
    let mut depth = 0i32;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if !in_join_keys && !trimmed.starts_with('#') && trimmed.starts_with("join_keys") {
            in_join_keys = true;
            depth = 0;
        }
        if !in_join_keys || trimmed.starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut in_str: Option<char> = None;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match in_str {
                Some(q) => {
                    out.push(c);
                    if c == '\\' && q == '"' && i + 1 < chars.len() {
                        out.push(chars[i + 1]);
                        i += 1;
                    } else if c == q {
                        in_str = None;
                    }
                }
                None => match c {
                    '"' | '\'' => {
                        in_str = Some(c);
                        out.push(c);
                    }
                    '#' => {
                        out.extend(&chars[i..]);
                        break;
                    }
                    '[' => {
                        depth += 1;
                        out.push(c);
                    }
                    ']' => {
                        depth -= 1;
                        out.push(c);
                        if depth <= 0 {
                            in_join_keys = false;
                        }
                    }
                    'n' if chars[i..].starts_with(&['n', 'u', 'l', 'l'])
                        && (i == 0 || !chars[i - 1].is_alphanumeric())
                        && chars.get(i + 4).is_none_or(|c| !c.is_alphanumeric() && *c != '_') =>
                    {
                        out.push('"');
                        out.push_str(NULL_SENTINEL);
                        out.push('"');
                        i += 3;
                    }
                    _ => out.push(c),
                },
            }
            i += 1;
        }
    }
    out
}

/// Loads events from a JSON array (or one JSON object per line). Each event gets `_index` = the file stem
/// and `_id` = its `id_field` value. Endgame data (a FILETIME `timestamp` and no `@timestamp`) gets
/// `@timestamp = timestamp / 10_000 - 11_644_473_600_000`, exactly ES's `DataLoader` rule.
pub fn load_events(path: &Path, id_field: &str) -> Result<Vec<Event>, ConformanceError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConformanceError::Io { path: path.into(), source })?;
    // ES's JSON parser accepts `//` comment lines (`missing-events.data` has `////test2`); serde_json does not.
    let text: String = raw.split_inclusive('\n').filter(|l| !l.trim_start().starts_with("//")).collect();
    let index = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let data_err = |message: String| ConformanceError::Data { path: path.into(), message };
    let docs: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => items,
        Ok(other @ Value::Object(_)) => vec![other],
        Ok(_) => return Err(data_err("the top-level value is neither an array nor an object".into())),
        Err(first) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(n, l)| serde_json::from_str(l).map_err(|e| data_err(format!("line {}: {e} (as a whole file: {first})", n + 1))))
            .collect::<Result<_, _>>()?,
    };
    docs.into_iter()
        .enumerate()
        .map(|(n, mut doc)| {
            let Value::Object(map) = &mut doc else { return Err(data_err(format!("document {} is not an object", n + 1))) };
            if !map.contains_key("@timestamp") {
                if let Some(filetime) = map.get("timestamp").and_then(Value::as_i64) {
                    map.insert("@timestamp".into(), Value::from(filetime / 10_000 - 11_644_473_600_000));
                }
            }
            let id = match map.get(id_field) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(x)) => x.to_string(),
                _ => return Err(data_err(format!("document {} has no scalar `{id_field}` (the id field)", n + 1))),
            };
            Ok(Event::new(index.clone(), id, doc))
        })
        .collect()
}

/// What happened to one spec query.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Skipped { reason: String },
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub name: String,
    pub query: String,
    pub outcome: Outcome,
}

/// Per-query outcomes of a spec run. `Display` prints one line per failure or skip and ends with
/// `N passed, M failed, K skipped`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub results: Vec<QueryResult>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.outcome == Outcome::Passed).count()
    }
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Failed { .. })).count()
    }
    pub fn skipped(&self) -> usize {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Skipped { .. })).count()
    }
    /// The summary line.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed, {} skipped", self.passed(), self.failed(), self.skipped())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            let query = r.query.split_whitespace().collect::<Vec<_>>().join(" ");
            match &r.outcome {
                Outcome::Failed { reason } => writeln!(f, "FAILED {}: {} — {}", r.name, query, reason)?,
                Outcome::Skipped { reason } => writeln!(f, "SKIPPED {}: {reason}", r.name)?,
                Outcome::Passed => {}
            }
        }
        write!(f, "{}", self.summary())
    }
}

/// How a query is turned into a [`Plan`] (parser + analyser + mapping, supplied by the caller).
pub type Compile<'a> = dyn Fn(&str, &QueryOptions) -> Result<Box<dyn Plan>, EqlError> + 'a;

/// The request settings of ES's QA runner: size 50, tail, the given tiebreaker field.
pub fn spec_options(tiebreaker: &str) -> QueryOptions {
    QueryOptions { tiebreaker_field: Some(tiebreaker.to_string()), size: 50, position: Position::Tail, ..QueryOptions::default() }
}

/// Spec queries whose expected result esdetect deliberately does not reproduce, with the reason (also in the
/// README's "Known differences"). Such a query counts as skipped when it does not match.
pub const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "customDateFormatAsKey_SameIndexResults",
        "known difference: a date mapping's custom `format` (here dd-MM-yyyy / yyyy-MM-dd) is not applied; \
         such values are treated as unindexable (missing)",
    ),
    (
        "customDateFormatsAsKey_DifferentIndicesResults",
        "known difference: a date mapping's custom `format` (here dd-MM-yyyy / yyyy-MM-dd) is not applied; \
         such values are treated as unindexable (missing)",
    ),
    (
        "customDateFormatsAsKey_DifferentKeyNames",
        "known difference: a date mapping's custom `format` (here dd-MM-yyyy / yyyy-MM-dd) is not applied; \
         such values are treated as unindexable (missing)",
    ),
];

/// Runs every query of `spec` over `events` and compares ids (and join keys, when the spec has them).
/// `id_field` is the tiebreaker field holding each event's test id.
pub fn run_spec(spec: &SpecFile, events: &[Event], compile: &Compile<'_>, id_field: &str) -> Report {
    run_spec_with(spec, events, compile, &spec_options(id_field), id_field)
}

/// Like [`run_spec`] with explicit request options (a spec query's `size` still overrides `options.size`).
pub fn run_spec_with(spec: &SpecFile, events: &[Event], compile: &Compile<'_>, options: &QueryOptions, id_field: &str) -> Report {
    let results = spec
        .queries
        .iter()
        .map(|q| {
            let mut options = options.clone();
            if let Some(size) = q.size {
                options.size = size;
            }
            if let Some(n) = q.max_samples_per_key {
                options.max_samples_per_key = n;
            }
            let mut outcome = run_one(q, events, compile, &options, id_field);
            if let Outcome::Failed { reason } = &outcome {
                if let Some((_, why)) = KNOWN_DIFFERENCES.iter().find(|(name, _)| *name == q.name) {
                    outcome = Outcome::Skipped { reason: format!("{why} ({reason})") };
                }
            }
            QueryResult { name: q.name.clone(), query: q.query.clone(), outcome }
        })
        .collect();
    Report { results }
}

fn run_one(q: &SpecQuery, events: &[Event], compile: &Compile<'_>, options: &QueryOptions, id_field: &str) -> Outcome {
    let plan = match compile(&q.query, options) {
        Ok(p) => p,
        Err(e) if is_unsupported(&e) => return Outcome::Skipped { reason: e.message },
        Err(e) => return Outcome::Failed { reason: format!("compile error: {e}") },
    };
    // Each event reduced to the fields the plan says it reads (plus the spec's id field): a query that
    // reads a field it does not declare fails here, as it would on esdetect's projected data path.
    let projected: Vec<Event> = match plan.fields_read() {
        Some(mut fields) => {
            fields.push(id_field.to_string());
            let fields = esdetect_eql::event::FieldSet::new(fields);
            events.iter().map(|e| Event::new(e.index.clone(), e.id.clone(), fields.prune(&e.source))).collect()
        }
        None => events.to_vec(),
    };
    let out = match engine::run(&*plan, projected) {
        Ok(o) => o,
        Err(e) => return Outcome::Failed { reason: format!("query error: {e}") },
    };
    // `None` stands for a missing-event placeholder (id -1 in the specs).
    let (result_events, keys): (Vec<Option<&Event>>, Vec<&KeyValue>) = match &out.results {
        Results::Events(v) => (v.iter().map(Some).collect(), Vec::new()),
        Results::Sequences(s) => (
            s.iter()
                .flat_map(|m| {
                    let mut present = m.events.iter();
                    (0..m.events.len() + m.missing.len())
                        .map(|i| if m.missing.contains(&i) { None } else { present.next() })
                        .collect::<Vec<_>>()
                })
                .collect(),
            s.iter().flat_map(|m| m.join_keys.iter()).collect(),
        ),
    };
    let got: Result<Vec<i64>, String> =
        result_events.iter().map(|e| e.map_or(Ok(-1), |e| event_id(e, id_field))).collect();
    let got = match got {
        Ok(g) => g,
        Err(m) => return Outcome::Failed { reason: m },
    };
    if !q.expected_event_ids.iter().any(|alt| *alt == got) {
        let expected = match q.expected_event_ids.as_slice() {
            [one] => format!("{one:?}"),
            alts => format!("one of {alts:?}"),
        };
        return Outcome::Failed { reason: format!("expected {expected}, got {got:?}") };
    }
    if let Some(expected) = &q.join_keys {
        let ok = expected.len() == keys.len() && expected.iter().zip(&keys).all(|(e, a)| key_matches(e, a));
        if !ok {
            let got: Vec<String> = keys.iter().map(|k| key_string(k)).collect();
            return Outcome::Failed { reason: format!("ids ok, but expected join_keys {expected:?}, got {got:?}") };
        }
    }
    Outcome::Passed
}

fn event_id(e: &Event, id_field: &str) -> Result<i64, String> {
    match e.field_values(id_field).first() {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("event {} has a non-integer id {n}", e.id)),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("event {} has a non-integer id {s:?}", e.id)),
        _ => Err(format!("result event {}/{} has no `{id_field}`", e.index, e.id)),
    }
}

/// A key value rendered like Java's `String.valueOf` on ES's response values.
pub fn key_string(k: &KeyValue) -> String {
    match k {
        KeyValue::Null => "null".into(),
        KeyValue::Bool(b) => b.to_string(),
        KeyValue::Long(l) => l.to_string(),
        KeyValue::Double(bits) => {
            let d = f64::from_bits(*bits);
            // Java prints integral doubles with a trailing ".0".
            if d.is_finite() && d.fract() == 0.0 && d.abs() < 1e7 {
                format!("{d:.1}")
            } else {
                d.to_string()
            }
        }
        KeyValue::Str(s) => s.clone(),
    }
}

fn key_matches(expected: &ExpectedKey, actual: &KeyValue) -> bool {
    match expected {
        ExpectedKey::Null => *actual == KeyValue::Null,
        ExpectedKey::Str(s) => key_string(actual) == *s,
    }
}

/// Loads `data` and `spec` and runs the spec. `compile` receives the query, the request options and the
/// mapping path given here (so the caller decides how to load a mapping).
pub fn run_files(
    data: &Path,
    spec: &Path,
    mapping: Option<&Path>,
    tiebreaker: &str,
    compile: &dyn Fn(&str, &QueryOptions, Option<&Path>) -> Result<Box<dyn Plan>, EqlError>,
) -> Result<Report, ConformanceError> {
    let spec_file = SpecFile::load(spec)?;
    let events = load_events(data, tiebreaker)?;
    let with_mapping = |q: &str, o: &QueryOptions| compile(q, o, mapping);
    Ok(run_spec(&spec_file, &events, &with_mapping, tiebreaker))
}

/// Runs a spec with esdetect's own parser and analyser, typing fields the way the Elasticsearch QA runner's
/// index would: the given mapping file (or none), plus Elasticsearch's dynamic-mapping defaults for fields
/// the data holds but the mapping lacks.
pub fn run_files_with_engine(
    data: &Path,
    spec: &Path,
    mapping: Option<&Path>,
    tiebreaker: &str,
) -> Result<Report, ConformanceError> {
    let mappings: Vec<&Path> = mapping.into_iter().collect();
    run_indices_with_engine(&[data], spec, &mappings, Some(tiebreaker), tiebreaker)
}

/// Runs a spec over several data files searched together (one index each, in the order given, like ES's
/// `sample1,sample2,sample3` request), typed by the union of their mapping files. `tiebreaker` is the
/// request's tiebreaker field (none for the sample specs); `id_field` holds each event's test id.
pub fn run_indices_with_engine(
    data: &[&Path],
    spec: &Path,
    mappings: &[&Path],
    tiebreaker: Option<&str>,
    id_field: &str,
) -> Result<Report, ConformanceError> {
    let spec_file = SpecFile::load(spec)?;
    let mut events = Vec::new();
    for d in data {
        events.extend(load_events(d, id_field)?);
    }
    let mut base = esdetect_eql::mapping::Mapping::new();
    if mappings.is_empty() {
        base = base.infer_unknown(true);
    }
    for path in mappings {
        let m = esdetect_eql::mapping::Mapping::from_es_mapping_file(path)
            .map_err(|e| ConformanceError::Data { path: path.to_path_buf(), message: e.to_string() })?;
        base.merge(&m);
    }
    let sources: Vec<Value> = events.iter().map(|e| e.source.clone()).collect();
    let mapping = base.with_dynamic_defaults(&sources);
    let compile = |text: &str, options: &QueryOptions| -> Result<Box<dyn Plan>, EqlError> {
        let query = esdetect_eql::parse(text)?;
        Ok(Box::new(esdetect_eql::analyze::CompiledQuery::compile(&query, &mapping, options)?))
    };
    let options = QueryOptions {
        tiebreaker_field: tiebreaker.map(str::to_string),
        size: 50,
        position: Position::Tail,
        ..QueryOptions::default()
    };
    Ok(run_spec_with(&spec_file, &events, &compile, &options, id_field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use esdetect_eql::sequence::test_plan::{cat, ev, field_is, TestPlan};
    use serde_json::json;

    /// `shared/conformance` is `../shared` from the main checkout and `../../shared` from a helper worktree.
    fn corpus(name: &str) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        ["../shared/conformance", "../../shared/conformance"]
            .iter()
            .map(|d| root.join(d))
            .find(|d| d.join("README.md").exists())
            .unwrap_or_else(|| root.join("../shared/conformance"))
            .join(name)
    }

    /// The corpus lives beside the repository (`../shared`), as in CI; a missing corpus fails the test
    /// rather than letting it pass without checking anything.
    fn have_corpus() -> bool {
        assert!(corpus("README.md").exists(), "the EQL conformance corpus (../shared/conformance) is missing");
        true
    }

    #[test]
    fn real_spec_files_parse_with_the_readme_counts() {
        if !have_corpus() {
            return;
        }
        let queries = SpecFile::load(&corpus("test_queries.toml")).unwrap();
        assert_eq!(queries.queries.len(), 133);
        assert!(queries.queries.iter().all(|q| q.join_keys.is_none()));
        let extra = SpecFile::load(&corpus("test_extra.toml")).unwrap();
        assert_eq!(extra.queries.len(), 40);
        assert_eq!(extra.queries.iter().filter(|q| q.join_keys.is_some()).count(), 34);

        let by_name = |n: &str| extra.queries.iter().find(|q| q.name == n).unwrap().clone();
        // Bare null and the string "null" stay distinct.
        assert_eq!(by_name("sequenceWithOptionalMultivalue_simple").join_keys, Some(vec![ExpectedKey::Null]));
        assert_eq!(
            by_name("sequenceWithOptionalMultivalue_multiPlusOptional").join_keys,
            Some(vec![ExpectedKey::Str("tag1".into()), ExpectedKey::Null])
        );
        assert_eq!(
            by_name("sequenceOptionalFieldAsKeyAndFirstFilter").join_keys,
            Some(vec![ExpectedKey::Str("null".into()), ExpectedKey::Str("null".into())])
        );
        // Query text keeps its own `null`, trimmed.
        assert_eq!(by_name("optionalNoDocsFieldNullEquality").query, "OPTIONAL where ?optional_field_mapping_only == null");
        let many = by_name("sequenceWithMultivalue_ManyToMany");
        assert_eq!(many.expected_event_ids, vec![vec![1, 23, 4, 23, 4, 23]]);
        // A commented-out block is not a test.
        assert!(extra.queries.iter().all(|q| !q.name.is_empty()));
    }

    #[test]
    fn bare_nulls_are_replaced_only_in_join_keys() {
        let text = "[[queries]]\nname = \"a\"\nquery = '''\nx where y == null\n'''\nexpected_event_ids = [[1], [2]]\njoin_keys = [\n  \"nullable\", null,\n  'null', null ] # null\n";
        let spec = SpecFile::parse(text).unwrap();
        let q = &spec.queries[0];
        assert_eq!(q.query, "x where y == null");
        assert_eq!(q.expected_event_ids, vec![vec![1], vec![2]]);
        assert_eq!(
            q.join_keys,
            Some(vec![ExpectedKey::Str("nullable".into()), ExpectedKey::Null, ExpectedKey::Str("null".into()), ExpectedKey::Null])
        );
        assert!(SpecFile::parse("[[queries]]\nname = 1\n").is_err());
    }

    #[test]
    fn endgame_data_gets_the_es_loader_timestamp() {
        if !have_corpus() {
            return;
        }
        let events = load_events(&corpus("endgame-140.test_data.json"), "serial_event_id").unwrap();
        assert_eq!(events.len(), 102);
        let by_id = |id: &str| events.iter().find(|e| e.id == id).unwrap();
        assert_eq!(by_id("1").index, "endgame-140.test_data");
        // README §4 examples.
        assert_eq!(by_id("1").source["@timestamp"], json!(0));
        assert_eq!(by_id("97").source["@timestamp"], json!(1516116808349i64));

        let extra = load_events(&corpus("extra.data"), "sequence").unwrap();
        assert_eq!(extra.len(), 23);
        assert_eq!(extra[0].index, "extra");
        assert_eq!(extra[0].source["@timestamp"], json!("1"), "existing @timestamp is left alone");
    }

    #[test]
    fn qa_many_to_many_passes_on_the_real_data_with_a_hand_written_plan() {
        if !have_corpus() {
            return;
        }
        let spec = SpecFile::load(&corpus("test_extra.toml")).unwrap();
        let one = SpecFile {
            queries: spec
                .queries
                .into_iter()
                .filter(|q| q.name == "sequenceWithMultivalue_ManyToMany" || q.name == "sequenceWithMultivalue_CartesianProduct")
                .collect(),
        };
        assert_eq!(one.queries.len(), 2);
        let events = load_events(&corpus("extra.data"), "sequence").unwrap();
        let compile = |q: &str, o: &QueryOptions| -> Result<Box<dyn Plan>, EqlError> {
            assert_eq!((o.size, o.position, o.tiebreaker_field.as_deref()), (50, Position::Tail, Some("sequence")));
            let keys: &[&str] = if q.contains("items") { &["tags", "items"] } else { &["tags"] };
            let mut p = TestPlan::seq(vec![field_is("event_type", "REQUEST"), field_is("event_type", "file")], keys);
            p.tiebreaker_field = Some("sequence".into());
            Ok(Box::new(p))
        };
        let report = run_spec(&one, &events, &compile, "sequence");
        assert_eq!(report.summary(), "2 passed, 0 failed, 0 skipped", "{report}");
    }

    #[test]
    fn report_counts_skips_failures_and_join_key_mismatches() {
        let spec = SpecFile::parse(
            r#"
[[queries]]
name = "ok"
query = "A then B"
expected_event_ids = [1, 2]
join_keys = ["x"]

[[queries]]
name = "wrongIds"
query = "A then B"
expected_event_ids = [2, 1]

[[queries]]
name = "wrongKeys"
query = "A then B"
expected_event_ids = [1, 2]
join_keys = ["y"]

[[queries]]
name = "missing"
query = "missing"
expected_event_ids = []

[[queries]]
name = "broken"
query = "broken"
expected_event_ids = []
"#,
        )
        .unwrap();
        let events = vec![ev(1, 1, "A", json!({"k": "x"})), ev(2, 2, "B", json!({"k": "x"}))];
        let compile = |q: &str, _: &QueryOptions| -> Result<Box<dyn Plan>, EqlError> {
            match q {
                "missing" => Err(EqlError::verification("unsupported: missing-event stages", Default::default())),
                "broken" => Err(EqlError::syntax("expected `where`", Default::default())),
                _ => Ok(Box::new(TestPlan::seq(vec![cat("A"), cat("B")], &["k"]))),
            }
        };
        let report = run_spec(&spec, &events, &compile, "n");
        let outcomes: Vec<&str> = report
            .results
            .iter()
            .map(|r| match r.outcome {
                Outcome::Passed => "pass",
                Outcome::Skipped { .. } => "skip",
                Outcome::Failed { .. } => "fail",
            })
            .collect();
        assert_eq!(outcomes, vec!["pass", "fail", "fail", "skip", "fail"]);
        let text = report.to_string();
        assert!(text.ends_with("\n1 passed, 3 failed, 1 skipped"), "{text}");
        assert!(text.contains("FAILED wrongIds: A then B — expected [2, 1], got [1, 2]"), "{text}");
        // Three failures, one skip (with its reason), the summary.
        assert_eq!(text.lines().count(), 5);
        assert_eq!(text.lines().filter(|l| l.starts_with("SKIPPED ")).count(), 1, "{text}");
    }

    #[test]
    fn known_differences_are_skipped_only_when_they_fail() {
        let spec = SpecFile::parse(
            "[[queries]]\nname = \"customDateFormatAsKey_SameIndexResults\"\nquery = 'A where true'\nexpected_event_ids = [9]\n\
             [[queries]]\nname = \"customDateFormatsAsKey_DifferentKeyNames\"\nquery = 'A where true'\nexpected_event_ids = [1]\n",
        )
        .unwrap();
        let events = vec![ev(1, 10, "A", json!({}))];
        let compile = |_: &str, _: &QueryOptions| -> Result<Box<dyn Plan>, EqlError> { Ok(Box::new(TestPlan::events(cat("A")))) };
        let report = run_spec(&spec, &events, &compile, "n");
        assert!(matches!(&report.results[0].outcome, Outcome::Skipped { reason } if reason.contains("custom `format`")));
        assert_eq!(report.results[1].outcome, Outcome::Passed);
    }

    /// A spec's `max_samples_per_key` reaches the engine: two samples of one key instead of ES's default one,
    /// picked by backtracking as `SampleIterator` does (event 1 with the first, then the next event of the
    /// second filter: samples may share an event).
    #[test]
    fn spec_max_samples_per_key_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d.data");
        let events: Vec<Value> = (1..=4)
            .map(|i| json!({"id": i, "@timestamp": 1000 * i, "event": {"category": "process"}, "host": "a", "x": 2 - i % 2}))
            .collect();
        std::fs::write(&data, serde_json::to_string(&events).unwrap()).unwrap();
        let spec = dir.path().join("s.toml");
        std::fs::write(
            &spec,
            "[[queries]]\nname = \"one\"\nquery = 'sample by host [any where x == 1] [any where x == 2]'\nexpected_event_ids = [1, 2]\n\
             [[queries]]\nname = \"two\"\nmax_samples_per_key = 2\nquery = 'sample by host [any where x == 1] [any where x == 2]'\n\
             expected_event_ids = [1, 2, 1, 4]\n",
        )
        .unwrap();
        assert_eq!(SpecFile::load(&spec).unwrap().queries[1].max_samples_per_key, Some(2));
        let report = run_files_with_engine(&data, &spec, None, "id").unwrap();
        assert!(report.results.iter().all(|r| r.outcome == Outcome::Passed), "{report}");
        assert!(SpecFile::parse("[[queries]]\nname = \"z\"\nmax_samples_per_key = 0\nquery = 'x'\nexpected_event_ids = []\n").is_err());
    }

    #[test]
    fn spec_size_missing_placeholders_and_comment_lines() {
        let spec = SpecFile::parse("[[queries]]\nname = \"s\"\nsize = 2\nquery = 'x'\nexpected_event_ids = [1, -1]\n").unwrap();
        assert_eq!(spec.queries[0].size, Some(2));
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d.data");
        std::fs::write(&data, "[{\"sequence\": 1},\n////group 2\n{\"sequence\": 2}]").unwrap();
        let events = load_events(&data, "sequence").unwrap();
        assert_eq!(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["1", "2"]);
    }

    #[test]
    fn null_keys_match_both_spellings() {
        assert!(key_matches(&ExpectedKey::Null, &KeyValue::Null));
        assert!(key_matches(&ExpectedKey::Str("null".into()), &KeyValue::Null));
        assert!(!key_matches(&ExpectedKey::Null, &KeyValue::Str("x".into())));
        assert!(key_matches(&ExpectedKey::Str("1234".into()), &KeyValue::Long(1234)));
        assert_eq!(key_string(&KeyValue::double(2.0)), "2.0");
    }
}
