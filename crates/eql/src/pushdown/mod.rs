//! Pushdown: derives a conservative Elasticsearch Query DSL pre-filter from an EQL query.
//!
//! A rule run only needs the documents that *could* take part in a match, so esdetect asks
//! Elasticsearch for those instead of every event in the window. The filter built here is a
//! **superset** of what the in-memory evaluator accepts: it only contains conjuncts whose Query DSL
//! form is exactly what Elasticsearch itself would run for them (spec `eql-semantics.md` §2, §4.2,
//! §6, §7.1), and it simply leaves out everything else (`or`, `not`, `!=`, regex, comparisons other
//! than `==`, scripts, optional fields, ...). Dropping a conjunct of an `and` can only widen the set,
//! so the result is never narrower than the real query; the evaluator still decides every match.
//!
//! Sequences get one `bool.should` branch per stage (the `until` stage included: its events must
//! be fetched so they can cancel sequences). Each branch also requires the stage's non-optional join
//! key fields to exist, because an event whose key is null never joins at that stage (spec §8.2);
//! this is added *per branch*, never at the top level, so an event relevant to one stage is not
//! dropped because it lacks another stage's key. Missing-event stages (`![...]`) are fetched with
//! their condition only (their key handling is not part of this contract), so no key `exists` is
//! added for them.

pub mod dsl;

use crate::ast::{CompareOp, EventFilter, Expr, FieldRef, Function, Literal, MatchOp, Query, QueryBody, Stage};
use crate::plan::QueryOptions;
use serde_json::{json, Value};

/// Builds the pre-filter for `query`, or `None` when nothing useful can be pushed (the caller then
/// fetches everything in the window). Field names are used as written; see [`pushdown_filter_mapped`]
/// when some fields need a different name (a `text` field's keyword sub-field) or must be skipped.
pub fn pushdown_filter(query: &Query, opts: &QueryOptions) -> Option<Value> {
    pushdown_filter_mapped(query, opts, &|f: &str| Some(f.to_string()))
}

/// Like [`pushdown_filter`], but every field goes through `exact_field` first: it returns the field
/// to put in the Query DSL (e.g. `file_name.keyword` for a `text` field with a keyword sub-field, the
/// one Elasticsearch's EQL queries), or `None` to leave every conjunct over that field out (unknown or
/// un-queryable fields). This keeps the superset property when the mapping is not plain ECS.
pub fn pushdown_filter_mapped(
    query: &Query,
    opts: &QueryOptions,
    exact_field: &dyn Fn(&str) -> Option<String>,
) -> Option<Value> {
    let cx = Cx { opts, exact_field };
    match &query.body {
        QueryBody::Event(filter) => {
            let clauses = cx.filter_clauses(filter);
            if clauses.is_empty() {
                None
            } else {
                Some(bool_filter(clauses))
            }
        }
        QueryBody::Sequence(_) | QueryBody::Sample(_) => {
            // Every stage's events are needed, missing-event stages included (they veto sequences).
            let (by, stages): (&[FieldRef], Vec<&Stage>) = match &query.body {
                QueryBody::Sequence(seq) => (&seq.by, seq.stages.iter().chain(seq.until.iter()).collect()),
                QueryBody::Sample(sample) => (&sample.by, sample.stages.iter().collect()),
                QueryBody::Event(_) => (&[], Vec::new()),
            };
            let mut branches: Vec<Value> = Vec::new();
            for stage in stages {
                let clauses = cx.stage_clauses(by, stage);
                // A stage we cannot narrow means every event may matter: no useful filter at all.
                if clauses.is_empty() {
                    return None;
                }
                let branch = bool_filter(clauses);
                if !branches.contains(&branch) {
                    branches.push(branch);
                }
            }
            match branches.len() {
                0 => None,
                1 => branches.pop(),
                _ => Some(json!({"bool": {"should": branches, "minimum_should_match": 1}})),
            }
        }
    }
}

fn bool_filter(clauses: Vec<Value>) -> Value {
    json!({"bool": {"filter": clauses}})
}

struct Cx<'a> {
    opts: &'a QueryOptions,
    exact_field: &'a dyn Fn(&str) -> Option<String>,
}

impl Cx<'_> {
    /// Category term plus the translatable top-level conjuncts of one `<category> where <cond>`.
    fn filter_clauses(&self, filter: &EventFilter) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(category) = &filter.category {
            // Case-sensitive term on the category field (spec §6); `any where` adds nothing.
            if let Some(field) = (self.exact_field)(&self.opts.event_category_field) {
                out.push(term(&field, Value::String(category.clone()), false));
            }
        }
        let mut conjuncts = Vec::new();
        flatten_and(&filter.condition, &mut conjuncts);
        for c in conjuncts {
            if let Some(q) = self.conjunct(c) {
                if !out.contains(&q) {
                    out.push(q);
                }
            }
        }
        out
    }

    fn stage_clauses(&self, seq_by: &[FieldRef], stage: &Stage) -> Vec<Value> {
        let mut out = self.filter_clauses(&stage.filter);
        if !stage.missing {
            for key in seq_by.iter().chain(stage.by.iter()) {
                if key.optional {
                    continue;
                }
                if let Some(field) = (self.exact_field)(&key.path) {
                    let q = json!({"exists": {"field": field}});
                    if !out.contains(&q) {
                        out.push(q);
                    }
                }
            }
        }
        out
    }

    /// A non-optional bare field, mapped to its queryable name.
    fn field(&self, e: &Expr) -> Option<String> {
        match e {
            Expr::Field(f) if !f.optional => (self.exact_field)(&f.path),
            _ => None,
        }
    }

    /// Translates one conjunct, or `None` to leave it out (always safe, see module doc).
    fn conjunct(&self, e: &Expr) -> Option<Value> {
        match e {
            Expr::Compare { op: CompareOp::Eq, left, right, .. } => {
                let (field, lit) = match (self.field(left), self.field(right)) {
                    (Some(f), None) => (f, literal_of(right)?),
                    (None, Some(f)) => (f, literal_of(left)?),
                    _ => return None,
                };
                // `== null` is `must_not exists` — a negation; not needed, left out.
                Some(term(&field, term_value(lit)?, false))
            }
            Expr::Compare { op: CompareOp::NotEq, left, right, .. } => {
                // Only `field != null` (= `exists`, spec §3.2); any other `!=` is a must_not, left out.
                let field = match (self.field(left), self.field(right)) {
                    (Some(f), None) if matches!(literal_of(right)?, Literal::Null) => f,
                    (None, Some(f)) if matches!(literal_of(left)?, Literal::Null) => f,
                    _ => return None,
                };
                Some(json!({"exists": {"field": field}}))
            }
            Expr::Match { op, case_insensitive, expr, patterns, .. } => {
                let field = self.field(expr)?;
                let mut alts = Vec::with_capacity(patterns.len());
                for p in patterns {
                    let Literal::String(s) = literal_of(p)? else { return None };
                    let q = match op {
                        // `:` is case-insensitive; without wildcards it is a case-insensitive term.
                        MatchOp::Seq if !has_wildcard(s) => term(&field, Value::String(s.clone()), true),
                        MatchOp::Seq => wildcard(&field, &escape_backslashes(s), true),
                        MatchOp::Like => wildcard(&field, &escape_backslashes(s), *case_insensitive),
                        MatchOp::Regex => return None,
                    };
                    alts.push(q);
                }
                one_or_should(alts)
            }
            Expr::In { expr, values, case_insensitive, negated: false, .. } => {
                let field = self.field(expr)?;
                let mut vals = Vec::with_capacity(values.len());
                for v in values {
                    vals.push(term_value(literal_of(v)?)?);
                }
                if vals.is_empty() {
                    return None;
                }
                if *case_insensitive {
                    // `in~` is verbatim case-insensitive equality per element (no wildcards).
                    // Only strings can be compared case-insensitively; other literal types: leave out.
                    if !vals.iter().all(Value::is_string) {
                        return None;
                    }
                    one_or_should(vals.into_iter().map(|v| term(&field, v, true)).collect())
                } else {
                    Some(json!({"terms": {field: vals}}))
                }
            }
            Expr::Call { function, case_insensitive, args, .. } => self.call(*function, *case_insensitive, args),
            _ => None,
        }
    }

    /// The pushdown forms of spec §7.1: first argument a bare field, the others string literals.
    fn call(&self, function: Function, ci: bool, args: &[Expr]) -> Option<Value> {
        let (first, rest) = args.split_first()?;
        let field = self.field(first)?;
        let strings: Option<Vec<&String>> = rest
            .iter()
            .map(|a| match literal_of(a)? {
                Literal::String(s) => Some(s),
                _ => None,
            })
            .collect();
        let strings = strings?;
        match function {
            Function::StartsWith if strings.len() == 1 => {
                let mut body = serde_json::Map::new();
                body.insert("value".into(), Value::String(strings[0].clone()));
                if ci {
                    body.insert("case_insensitive".into(), Value::Bool(true));
                }
                Some(json!({"prefix": {field: body}}))
            }
            // Elasticsearch writes these as unescaped wildcards (spec §7.1, U2). Only push when the
            // argument holds no wildcard syntax, where escaped and unescaped readings agree.
            Function::EndsWith if strings.len() == 1 && !has_wildcard_syntax(strings[0]) => {
                Some(wildcard(&field, &format!("*{}", strings[0]), ci))
            }
            Function::StringContains if strings.len() == 1 && !has_wildcard_syntax(strings[0]) => {
                Some(wildcard(&field, &format!("*{}*", strings[0]), ci))
            }
            Function::CidrMatch if !strings.is_empty() => {
                let blocks: Vec<Value> = strings.into_iter().map(|s| Value::String(s.clone())).collect();
                Some(json!({"terms": {field: blocks}}))
            }
            _ => None,
        }
    }
}

fn flatten_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        other => out.push(other),
    }
}

fn literal_of(e: &Expr) -> Option<&Literal> {
    match e {
        Expr::Literal(l, _) => Some(l),
        _ => None,
    }
}

/// The JSON value of a term for `lit`. Doubles are left out: a keyword field would compare them as
/// Java's `Double.toString` text, which JSON does not preserve. Null is not a term.
fn term_value(lit: &Literal) -> Option<Value> {
    match lit {
        Literal::Bool(b) => Some(Value::Bool(*b)),
        Literal::Long(l) => Some(Value::from(*l)),
        Literal::String(s) => Some(Value::String(s.clone())),
        Literal::Double(_) | Literal::Null => None,
    }
}

fn term(field: &str, value: Value, case_insensitive: bool) -> Value {
    if case_insensitive {
        json!({"term": {field: {"value": value, "case_insensitive": true}}})
    } else {
        json!({"term": {field: {"value": value}}})
    }
}

fn wildcard(field: &str, pattern: &str, case_insensitive: bool) -> Value {
    if case_insensitive {
        json!({"wildcard": {field: {"value": pattern, "case_insensitive": true}}})
    } else {
        json!({"wildcard": {field: {"value": pattern}}})
    }
}

fn one_or_should(mut alts: Vec<Value>) -> Option<Value> {
    alts.dedup();
    match alts.len() {
        0 => None,
        1 => alts.pop(),
        _ => Some(json!({"bool": {"should": alts, "minimum_should_match": 1}})),
    }
}

/// EQL wildcards in `:`/`like` patterns.
fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Characters that are syntax in a Lucene wildcard pattern.
fn has_wildcard_syntax(s: &str) -> bool {
    s.contains(['*', '?', '\\'])
}

/// EQL patterns have no escape character: a backslash is literal, so it is escaped for Lucene.
fn escape_backslashes(s: &str) -> String {
    s.replace('\\', "\\\\")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ast::*;

    // Tiny AST builders (the parser is written in parallel; these keep the tests independent of it).
    pub(crate) fn f(path: &str) -> Expr {
        Expr::Field(fr(path))
    }
    pub(crate) fn fr(path: &str) -> FieldRef {
        FieldRef { path: path.into(), optional: false, span: Span::default() }
    }
    pub(crate) fn s(v: &str) -> Expr {
        Expr::Literal(Literal::String(v.into()), Span::default())
    }
    pub(crate) fn n(v: i64) -> Expr {
        Expr::Literal(Literal::Long(v), Span::default())
    }
    pub(crate) fn null() -> Expr {
        Expr::Literal(Literal::Null, Span::default())
    }
    pub(crate) fn cmp(op: CompareOp, l: Expr, r: Expr) -> Expr {
        Expr::Compare { op, left: Box::new(l), right: Box::new(r), span: Span::default() }
    }
    pub(crate) fn eq(l: Expr, r: Expr) -> Expr {
        cmp(CompareOp::Eq, l, r)
    }
    pub(crate) fn ne(l: Expr, r: Expr) -> Expr {
        cmp(CompareOp::NotEq, l, r)
    }
    pub(crate) fn seq(e: Expr, pats: Vec<Expr>) -> Expr {
        Expr::Match { op: MatchOp::Seq, case_insensitive: true, expr: Box::new(e), patterns: pats, span: Span::default() }
    }
    pub(crate) fn call(function: Function, ci: bool, args: Vec<Expr>) -> Expr {
        Expr::Call { function, case_insensitive: ci, args, span: Span::default() }
    }
    pub(crate) fn and_all(mut es: Vec<Expr>) -> Expr {
        let first = es.remove(0);
        es.into_iter().fold(first, |a, b| Expr::And(Box::new(a), Box::new(b)))
    }
    fn not(e: Expr) -> Expr {
        Expr::Not(Box::new(e), Span::default())
    }
    fn ef(category: Option<&str>, condition: Expr) -> EventFilter {
        EventFilter { category: category.map(str::to_string), condition, span: Span::default() }
    }
    fn event_query(category: Option<&str>, condition: Expr) -> Query {
        Query { body: QueryBody::Event(ef(category, condition)), pipes: vec![] }
    }

    /// Rule 1 (spec §10.1), built by hand.
    pub(crate) fn krbrelayup() -> Query {
        let a = and_all(vec![
            eq(f("host.os.type"), s("windows")),
            eq(f("event.action"), s("logged-in")),
            eq(f("event.outcome"), s("success")),
            eq(f("winlog.event_data.ElevatedToken"), s("%%1843")),
            eq(f("process.pid"), n(0)),
            seq(f("winlog.event_data.AuthenticationPackageName"), vec![s("Kerberos")]),
            eq(f("winlog.logon.type"), s("Network")),
            call(Function::CidrMatch, false, vec![f("source.ip"), s("127.0.0.0/8"), s("::1")]),
        ]);
        let b = and_all(vec![eq(f("host.os.type"), s("windows")), seq(f("event.action"), vec![s("service-installed")])]);
        Query {
            body: QueryBody::Sequence(Sequence {
                by: vec![fr("winlog.computer_name")],
                maxspan_ms: Some(300_000),
                stages: vec![
                    Stage { filter: ef(Some("authentication"), a), by: vec![fr("winlog.event_data.TargetLogonId")], runs: 1, missing: false },
                    Stage { filter: ef(None, b), by: vec![fr("winlog.event_data.SubjectLogonId")], runs: 1, missing: false },
                ],
                until: None,
                span: Span::default(),
            }),
            pipes: vec![],
        }
    }

    /// Rule 2 (spec §10.2), built by hand.
    pub(crate) fn smb_relay() -> Query {
        let cond = and_all(vec![
            eq(f("host.os.type"), s("windows")),
            eq(f("event.code"), s("5145")),
            call(Function::EndsWith, false, vec![f("user.name"), s("$")]),
            call(
                Function::StartsWith,
                true,
                vec![
                    call(Function::Concat, false, vec![f("winlog.computer_name"), s(".")]),
                    call(
                        Function::Concat,
                        false,
                        vec![call(Function::Substring, false, vec![f("user.name"), n(0), n(-1)]), s(".")],
                    ),
                ],
            ),
            not(call(
                Function::EndsWith,
                false,
                vec![call(Function::String, false, vec![f("source.ip")]), call(Function::String, false, vec![f("host.ip")])],
            )),
            ne(f("source.ip"), s("::")),
            ne(f("source.ip"), null()),
            ne(f("source.ip"), s("::1")),
            ne(f("source.ip"), s("127.0.0.1")),
        ]);
        event_query(Some("file"), cond)
    }

    fn term_of(field: &str, v: Value) -> Value {
        json!({"term": {field: {"value": v}}})
    }
    fn term_ci(field: &str, v: &str) -> Value {
        json!({"term": {field: {"value": v, "case_insensitive": true}}})
    }
    fn exists(field: &str) -> Value {
        json!({"exists": {"field": field}})
    }

    #[test]
    fn krbrelayup_sequence_filter() {
        let got = pushdown_filter(&krbrelayup(), &QueryOptions::default()).expect("filter");
        let expected = json!({"bool": {"should": [
            {"bool": {"filter": [
                term_of("event.category", json!("authentication")),
                term_of("host.os.type", json!("windows")),
                term_of("event.action", json!("logged-in")),
                term_of("event.outcome", json!("success")),
                term_of("winlog.event_data.ElevatedToken", json!("%%1843")),
                term_of("process.pid", json!(0)),
                term_ci("winlog.event_data.AuthenticationPackageName", "Kerberos"),
                term_of("winlog.logon.type", json!("Network")),
                {"terms": {"source.ip": ["127.0.0.0/8", "::1"]}},
                exists("winlog.computer_name"),
                exists("winlog.event_data.TargetLogonId"),
            ]}},
            // Stage B is `any where`: no category term; `:` gives a case-insensitive term.
            {"bool": {"filter": [
                term_of("host.os.type", json!("windows")),
                term_ci("event.action", "service-installed"),
                exists("winlog.computer_name"),
                exists("winlog.event_data.SubjectLogonId"),
            ]}},
        ], "minimum_should_match": 1}});
        assert_eq!(got, expected);
    }

    #[test]
    fn smb_relay_event_filter_keeps_only_safe_conjuncts() {
        let got = pushdown_filter(&smb_relay(), &QueryOptions::default()).expect("filter");
        let expected = json!({"bool": {"filter": [
            term_of("event.category", json!("file")),
            term_of("host.os.type", json!("windows")),
            term_of("event.code", json!("5145")),
            {"wildcard": {"user.name": {"value": "*$"}}},
            exists("source.ip"),
        ]}});
        assert_eq!(got, expected);
        // Nothing negative is pushed: the `!=` and `not` conjuncts are the evaluator's job.
        assert!(!got.to_string().contains("must_not"));
    }

    #[test]
    fn category_field_comes_from_options_and_any_adds_none() {
        let opts = QueryOptions { event_category_field: "event.type".into(), ..QueryOptions::default() };
        let q = event_query(Some("process"), eq(f("a"), s("x")));
        assert_eq!(
            pushdown_filter(&q, &opts),
            Some(json!({"bool": {"filter": [term_of("event.type", json!("process")), term_of("a", json!("x"))]}}))
        );
        let q = event_query(None, eq(f("a"), s("x")));
        assert_eq!(pushdown_filter(&q, &opts), Some(json!({"bool": {"filter": [term_of("a", json!("x"))]}})));
    }

    #[test]
    fn untranslatable_conditions_give_none() {
        let or = Expr::Or(Box::new(eq(f("a"), s("x"))), Box::new(eq(f("b"), s("y"))));
        assert_eq!(pushdown_filter(&event_query(None, or), &QueryOptions::default()), None);
        assert_eq!(pushdown_filter(&event_query(None, not(eq(f("a"), s("x")))), &QueryOptions::default()), None);
        assert_eq!(pushdown_filter(&event_query(None, ne(f("a"), s("x"))), &QueryOptions::default()), None);
        let regex = Expr::Match { op: MatchOp::Regex, case_insensitive: false, expr: Box::new(f("a")), patterns: vec![s("x.*")], span: Span::default() };
        assert_eq!(pushdown_filter(&event_query(None, regex), &QueryOptions::default()), None);
        // Optional fields and double literals are left out.
        let opt = Expr::Field(FieldRef { path: "a".into(), optional: true, span: Span::default() });
        assert_eq!(pushdown_filter(&event_query(None, eq(opt, s("x"))), &QueryOptions::default()), None);
        let dbl = Expr::Literal(Literal::Double(1.5), Span::default());
        assert_eq!(pushdown_filter(&event_query(None, eq(f("a"), dbl)), &QueryOptions::default()), None);
        // Field against field is not a pushdown form.
        assert_eq!(pushdown_filter(&event_query(None, eq(f("a"), f("b"))), &QueryOptions::default()), None);
    }

    #[test]
    fn match_like_in_and_functions() {
        let like = |ci, p: &str| Expr::Match { op: MatchOp::Like, case_insensitive: ci, expr: Box::new(f("p")), patterns: vec![s(p)], span: Span::default() };
        let cases: Vec<(Expr, Value)> = vec![
            (seq(f("p"), vec![s("cmd*")]), json!({"wildcard": {"p": {"value": "cmd*", "case_insensitive": true}}})),
            (seq(f("p"), vec![s("a"), s("b?")]), json!({"bool": {"should": [term_ci("p", "a"), {"wildcard": {"p": {"value": "b?", "case_insensitive": true}}}], "minimum_should_match": 1}})),
            (like(false, "C:\\x*"), json!({"wildcard": {"p": {"value": "C:\\\\x*"}}})),
            (like(true, "a"), json!({"wildcard": {"p": {"value": "a", "case_insensitive": true}}})),
            (Expr::In { expr: Box::new(f("p")), values: vec![s("a"), n(5)], case_insensitive: false, negated: false, span: Span::default() }, json!({"terms": {"p": ["a", 5]}})),
            (Expr::In { expr: Box::new(f("p")), values: vec![s("a"), s("B")], case_insensitive: true, negated: false, span: Span::default() }, json!({"bool": {"should": [term_ci("p", "a"), term_ci("p", "B")], "minimum_should_match": 1}})),
            (call(Function::StartsWith, true, vec![f("p"), s("Ab")]), json!({"prefix": {"p": {"value": "Ab", "case_insensitive": true}}})),
            (call(Function::StartsWith, false, vec![f("p"), s("Ab")]), json!({"prefix": {"p": {"value": "Ab"}}})),
            (call(Function::StringContains, false, vec![f("p"), s("mid")]), json!({"wildcard": {"p": {"value": "*mid*"}}})),
        ];
        for (e, want) in cases {
            let got = pushdown_filter(&event_query(None, e.clone()), &QueryOptions::default());
            assert_eq!(got, Some(json!({"bool": {"filter": [want]}})), "for {e:?}");
        }
        // Left out: `not in`, endsWith with wildcard syntax, a field in the pattern position.
        let left_out = vec![
            Expr::In { expr: Box::new(f("p")), values: vec![s("a")], case_insensitive: false, negated: true, span: Span::default() },
            call(Function::EndsWith, false, vec![f("p"), s("*x")]),
            call(Function::StartsWith, false, vec![s("abc"), f("p")]),
        ];
        for e in left_out {
            assert_eq!(pushdown_filter(&event_query(None, e.clone()), &QueryOptions::default()), None, "for {e:?}");
        }
    }

    #[test]
    fn sequence_keys_exist_per_branch_and_unnarrowable_stage_gives_none() {
        // A stage with nothing pushable and no keys: every event may matter.
        let q = Query {
            body: QueryBody::Sequence(Sequence {
                by: vec![],
                maxspan_ms: None,
                stages: vec![
                    Stage { filter: ef(Some("process"), eq(f("a"), s("x"))), by: vec![], runs: 1, missing: false },
                    Stage { filter: ef(None, Expr::Or(Box::new(eq(f("a"), s("x"))), Box::new(eq(f("b"), s("y"))))), by: vec![], runs: 1, missing: false },
                ],
                until: None,
                span: Span::default(),
            }),
            pipes: vec![],
        };
        assert_eq!(pushdown_filter(&q, &QueryOptions::default()), None);

        // Stage-specific keys only constrain their own branch; the until stage gets a branch too.
        let q = Query {
            body: QueryBody::Sequence(Sequence {
                by: vec![fr("host")],
                maxspan_ms: None,
                stages: vec![
                    Stage { filter: ef(Some("process"), eq(f("a"), s("x"))), by: vec![fr("pid")], runs: 1, missing: false },
                    Stage { filter: ef(Some("file"), eq(f("a"), s("x"))), by: vec![], runs: 1, missing: false },
                ],
                until: Some(Stage { filter: ef(Some("process"), eq(f("a"), s("end"))), by: vec![fr("pid")], runs: 1, missing: false }),
                span: Span::default(),
            }),
            pipes: vec![],
        };
        let got = pushdown_filter(&q, &QueryOptions::default()).expect("filter");
        assert_eq!(
            got,
            json!({"bool": {"should": [
                {"bool": {"filter": [term_of("event.category", json!("process")), term_of("a", json!("x")), exists("host"), exists("pid")]}},
                {"bool": {"filter": [term_of("event.category", json!("file")), term_of("a", json!("x")), exists("host")]}},
                {"bool": {"filter": [term_of("event.category", json!("process")), term_of("a", json!("end")), exists("host"), exists("pid")]}},
            ], "minimum_should_match": 1}})
        );
    }

    #[test]
    fn mapped_fields_rename_or_drop() {
        let q = event_query(Some("file"), and_all(vec![eq(f("file_name"), s("a.exe")), eq(f("secret"), s("x"))]));
        let got = pushdown_filter_mapped(&q, &QueryOptions::default(), &|p: &str| match p {
            "file_name" => Some("file_name.keyword".into()),
            "secret" => None,
            other => Some(other.into()),
        });
        assert_eq!(
            got,
            Some(json!({"bool": {"filter": [term_of("event.category", json!("file")), term_of("file_name.keyword", json!("a.exe"))]}}))
        );
    }
}

/// Superset property: whenever an independent reference predicate (the seed rules' stage conditions
/// written as plain Rust, spec §10) accepts a document, the pushed-down filter accepts it too.
#[cfg(test)]
mod superset_props {
    use super::tests::{krbrelayup, smb_relay};
    use super::*;
    use crate::dsl;
    use crate::event::Event;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::net::IpAddr;

    // ---- reference predicates (independent of pushdown and of the DSL matcher) ----

    fn vals<'a>(e: &'a Event, path: &str) -> Vec<&'a Value> {
        e.field_values(path).into_iter().filter(|v| !v.is_null()).collect()
    }
    fn any_str(e: &Event, path: &str, p: impl Fn(&str) -> bool) -> bool {
        vals(e, path).into_iter().any(|v| v.as_str().is_some_and(&p))
    }
    fn any_eq(e: &Event, path: &str, want: &str) -> bool {
        any_str(e, path, |s| s == want)
    }
    fn ip_of(v: &Value) -> Option<IpAddr> {
        v.as_str()?.parse::<IpAddr>().ok().map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        })
    }
    fn ips(e: &Event, path: &str) -> Vec<IpAddr> {
        vals(e, path).into_iter().filter_map(ip_of).collect()
    }
    fn keys_present(e: &Event, keys: &[&str]) -> bool {
        keys.iter().all(|k| !vals(e, k).is_empty())
    }

    /// Rule 1 stage A, plus its join keys being non-null (otherwise the event never joins).
    fn stage_a(e: &Event) -> bool {
        any_eq(e, "event.category", "authentication")
            && any_eq(e, "host.os.type", "windows")
            && any_eq(e, "event.action", "logged-in")
            && any_eq(e, "event.outcome", "success")
            && any_eq(e, "winlog.event_data.ElevatedToken", "%%1843")
            && vals(e, "process.pid").into_iter().any(|v| match v {
                Value::Number(n) => n.as_i64() == Some(0),
                Value::String(s) => s.parse::<i64>() == Ok(0),
                _ => false,
            })
            && any_str(e, "winlog.event_data.AuthenticationPackageName", |s| s.eq_ignore_ascii_case("kerberos"))
            && any_eq(e, "winlog.logon.type", "Network")
            && ips(e, "source.ip").into_iter().any(|ip| match ip {
                IpAddr::V4(v4) => v4.octets()[0] == 127,
                IpAddr::V6(v6) => v6.is_loopback(),
            })
            && keys_present(e, &["winlog.computer_name", "winlog.event_data.TargetLogonId"])
    }

    /// Rule 1 stage B, plus its join keys.
    fn stage_b(e: &Event) -> bool {
        any_eq(e, "host.os.type", "windows")
            && any_str(e, "event.action", |s| s.eq_ignore_ascii_case("service-installed"))
            && keys_present(e, &["winlog.computer_name", "winlog.event_data.SubjectLogonId"])
    }

    /// Rule 2 in full, script conjuncts included.
    fn smb(e: &Event) -> bool {
        let users: Vec<Option<&str>> = {
            let v: Vec<_> = vals(e, "user.name").into_iter().map(Value::as_str).collect();
            if v.is_empty() { vec![None] } else { v }
        };
        let computers: Vec<Option<&str>> = {
            let v: Vec<_> = vals(e, "winlog.computer_name").into_iter().map(Value::as_str).collect();
            if v.is_empty() { vec![None] } else { v }
        };
        let same_machine = computers.iter().any(|c| {
            users.iter().any(|u| match (c, u) {
                (Some(c), Some(u)) if !u.is_empty() => {
                    let stem: String = u.chars().take(u.chars().count() - 1).collect();
                    format!("{c}.").to_lowercase().starts_with(&format!("{stem}.").to_lowercase())
                }
                _ => false,
            })
        });
        let src = ips(e, "source.ip");
        let host = ips(e, "host.ip");
        let local = src.iter().any(|s| host.iter().any(|h| s.to_string().ends_with(&h.to_string())));
        let loop4: IpAddr = "127.0.0.1".parse().unwrap();
        let forbidden: [IpAddr; 3] = ["::".parse().unwrap(), "::1".parse().unwrap(), loop4];
        any_str(e, "event.category", |s| s == "file")
            && any_eq(e, "host.os.type", "windows")
            && vals(e, "event.code").into_iter().any(|v| v == "5145" || v.as_i64() == Some(5145))
            && any_str(e, "user.name", |s| s.ends_with('$'))
            && same_machine
            && !local
            && !src.is_empty()
            && !src.iter().any(|s| forbidden.contains(s))
    }

    // ---- document generator ----

    /// Field variants: the first one is the value that satisfies the base predicate.
    fn variants(field: &str) -> Vec<Option<Value>> {
        use serde_json::json as j;
        let v = |xs: Vec<Value>| -> Vec<Option<Value>> {
            let mut out: Vec<Option<Value>> = xs.into_iter().map(Some).collect();
            out.push(None);
            out.push(Some(Value::Null));
            out
        };
        match field {
            "event.category" => v(vec![j!(["authentication"]), j!("authentication"), j!(["iam", "configuration"]), j!(["network", "file"]), j!("file"), j!(["Authentication"]), j!([])]),
            "host.os.type" => v(vec![j!("windows"), j!(["windows"]), j!("Windows"), j!("linux")]),
            "event.action" => v(vec![j!("logged-in"), j!("Logged-In"), j!("service-installed"), j!("Service-Installed"), j!(["SERVICE-INSTALLED"]), j!("network-share-object-access-checked"), j!("Logon")]),
            "event.outcome" => v(vec![j!("success"), j!(["success"]), j!("failure")]),
            "event.code" => v(vec![j!("5145"), j!(5145), j!(["5145"]), j!("4624"), j!(4697)]),
            "winlog.event_data.ElevatedToken" => v(vec![j!("%%1843"), j!("%%1842"), j!("No")]),
            "process.pid" => v(vec![j!(0), j!("0"), j!([4, 0]), j!(448), j!("448"), j!("0x0")]),
            "winlog.event_data.AuthenticationPackageName" => v(vec![j!("Kerberos"), j!("kerberos"), j!("KERBEROS"), j!("NTLM"), j!("Negotiate")]),
            "winlog.logon.type" => v(vec![j!("Network"), j!("network"), j!("Interactive")]),
            "source.ip" => v(vec![j!("127.0.0.1"), j!("127.0.0.2"), j!("::1"), j!("0:0:0:0:0:0:0:1"), j!("::ffff:127.0.0.1"), j!("10.0.0.5"), j!("110.0.0.1"), j!("192.168.7.9"), j!("fe80::1"), j!("::"), j!(["10.0.0.5", "127.0.0.1"]), j!("bogus")]),
            "host.ip" => v(vec![j!(["10.0.0.1", "fe80::1"]), j!("10.0.0.1"), j!([]), j!(["10.0.0.5"])]),
            "user.name" => v(vec![j!("FS01$"), j!("fs01$"), j!("WS01$"), j!("$"), j!("alice"), j!(["alice", "FS01$"])]),
            "winlog.computer_name" => v(vec![j!("FS01.corp.local"), j!("fs01.corp.local"), j!("FS010.corp.local"), j!("FS01")]),
            "winlog.event_data.TargetLogonId" | "winlog.event_data.SubjectLogonId" => v(vec![j!("0x3e7"), j!("0x129f1"), j!(["0x1", null])]),
            _ => v(vec![]),
        }
    }

    const FIELDS: [&str; 15] = [
        "event.category", "host.os.type", "event.action", "event.outcome", "event.code",
        "winlog.event_data.ElevatedToken", "process.pid", "winlog.event_data.AuthenticationPackageName",
        "winlog.logon.type", "source.ip", "host.ip", "user.name", "winlog.computer_name",
        "winlog.event_data.TargetLogonId", "winlog.event_data.SubjectLogonId",
    ];

    /// The matching value of each field for each base: 0 stage A, 1 stage B, 2 rule 2.
    fn base_value(base: u8, field: &str) -> Option<Value> {
        use serde_json::json as j;
        match (base, field) {
            (1, "event.category") => Some(j!(["iam", "configuration"])),
            (1, "event.action") => Some(j!("service-installed")),
            (2, "event.category") => Some(j!(["network", "file"])),
            (2, "event.action") => Some(j!("network-share-object-access-checked")),
            (2, "source.ip") => Some(j!("192.168.7.9")),
            _ => variants(field).swap_remove(0),
        }
    }

    fn insert(doc: &mut serde_json::Map<String, Value>, path: &str, value: Value, dotted: bool) {
        if dotted {
            doc.insert(path.to_string(), value);
            return;
        }
        let mut node = doc;
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            let entry = node.entry(p.to_string()).or_insert_with(|| Value::Object(Default::default()));
            let Value::Object(m) = entry else { return };
            node = m;
        }
        node.insert(parts[parts.len() - 1].to_string(), value);
    }

    /// A document: a matching base, each field kept (≈70 %), replaced by a variant, or removed; some
    /// fields written as dotted keys instead of nested objects.
    fn doc_strategy() -> impl Strategy<Value = Event> {
        (0u8..3, proptest::collection::vec((0u8..10, any::<u8>(), any::<bool>()), FIELDS.len())).prop_map(|(base, picks)| {
            let mut doc = serde_json::Map::new();
            for (field, (keep, pick, dotted)) in FIELDS.iter().zip(picks) {
                let value = if keep < 7 {
                    base_value(base, field)
                } else {
                    let vs = variants(field);
                    vs[pick as usize % vs.len()].clone()
                };
                if let Some(v) = value {
                    insert(&mut doc, field, v, dotted);
                }
            }
            Event::new("logs-test", "1", Value::Object(doc))
        })
    }

    fn check(e: &Event) -> Result<(), TestCaseError> {
        let opts = QueryOptions::default();
        let f1 = pushdown_filter(&krbrelayup(), &opts).expect("rule 1 filter");
        let f2 = pushdown_filter(&smb_relay(), &opts).expect("rule 2 filter");
        if stage_a(e) || stage_b(e) {
            prop_assert!(dsl::matches(&f1, e), "rule 1 filter drops a candidate: {}", e.source);
        }
        if smb(e) {
            prop_assert!(dsl::matches(&f2, e), "rule 2 filter drops a match: {}", e.source);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn pushdown_is_a_superset_of_the_seed_rules(e in doc_strategy()) {
            check(&e)?;
        }
    }

    /// The generator must actually reach the interesting cases, or the property says nothing; and the
    /// filters must also reject something (a match-all filter would pass the property trivially).
    #[test]
    fn generator_covers_positives_and_filters_narrow() {
        let mut runner = TestRunner::deterministic();
        let strategy = doc_strategy();
        let opts = QueryOptions::default();
        let f1 = pushdown_filter(&krbrelayup(), &opts).unwrap();
        let f2 = pushdown_filter(&smb_relay(), &opts).unwrap();
        let (mut a, mut b, mut s, mut rejected1, mut rejected2) = (0, 0, 0, 0, 0);
        for _ in 0..3000 {
            let e = strategy.new_tree(&mut runner).unwrap().current();
            a += stage_a(&e) as usize;
            b += stage_b(&e) as usize;
            s += smb(&e) as usize;
            rejected1 += !dsl::matches(&f1, &e) as usize;
            rejected2 += !dsl::matches(&f2, &e) as usize;
        }
        assert!(a > 20 && b > 50 && s > 20, "positives: A {a}, B {b}, rule 2 {s}");
        assert!(rejected1 > 500 && rejected2 > 500, "rejected: {rejected1}, {rejected2}");
    }
}
