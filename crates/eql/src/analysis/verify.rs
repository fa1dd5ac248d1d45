//! Verification: every problem of a query at once, each with its position, as Elasticsearch's EQL
//! `Verifier` reports them ("Found 2 problems\nline 1:18: Unknown column [proces.name], did you mean
//! [process.name]?\n…") instead of stopping at the first.
//!
//! The checks themselves are the compiler's (`analyze`), so the two can never disagree; this module walks
//! the whole query and asks them about each independent part: every leaf condition of the `and`/`or`/`not`
//! tree of every stage, and every join key. Like Elasticsearch, unresolved fields are reported before
//! anything else about the condition that holds them (a condition over an unknown field cannot be typed).
//!
//! For an unknown field, [`similar_fields`] suggests the mapped names Elasticsearch's
//! `StringUtils.findSimilar` would: Levenshtein similarity `1 - distance / longer length` of at least 0.5,
//! the closest first.

use super::analyze::Compiler;
use crate::ast::{self, Expr, FieldRef};
use crate::mapping::Mapping;
use crate::EqlError;

/// Elasticsearch's threshold: a name is suggested when at least half of the longer name survives.
const MIN_SIMILARITY: f64 = 0.5;

/// Mapped field names close to `name`, the closest first (ties keep the mapping's order), as
/// Elasticsearch's `StringUtils.findSimilar` chooses them.
pub fn similar_fields(name: &str, mapping: &Mapping) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = mapping
        .paths()
        .map(|p| (strsim::normalized_levenshtein(name, p), p))
        .filter(|(score, _)| *score >= MIN_SIMILARITY)
        .collect();
    // Stable, like Elasticsearch's TimSort: equal scores stay in mapping order.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().map(|(_, p)| p.to_string()).collect()
}

/// The "did you mean" tail of an unknown-column message, Elasticsearch's wording: `, did you mean [a]?`
/// or `, did you mean any of [a, b]?`; empty when nothing is close.
pub(super) fn did_you_mean(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        [one] => format!(", did you mean [{one}]?"),
        many => format!(", did you mean any of [{}]?", many.join(", ")),
    }
}

/// Every problem `compiler` finds in `q`, without duplicates: those of each stage's condition and join keys
/// in source order, then the structural ones of a sequence or sample ([`structure`]).
pub(super) fn problems(compiler: &Compiler, q: &ast::Query) -> Vec<EqlError> {
    let mut out = Vec::new();
    let stage = |filter: &ast::EventFilter, by: &[&FieldRef], out: &mut Vec<EqlError>| {
        condition(compiler, &filter.condition, out);
        for k in by {
            match compiler.field(k) {
                Err(e) => out.push(e),
                Ok(Some(acc)) => out.extend(compiler.exact_field(&acc, k.span).err()),
                Ok(None) => {}
            }
        }
    };
    match &q.body {
        ast::QueryBody::Event(f) => stage(f, &[], &mut out),
        ast::QueryBody::Sample(s) => {
            for st in &s.stages {
                let by: Vec<&FieldRef> = s.by.iter().chain(st.by.iter()).collect();
                stage(&st.filter, &by, &mut out);
            }
        }
        ast::QueryBody::Sequence(s) => {
            for st in s.stages.iter().chain(s.until.iter()) {
                let by: Vec<&FieldRef> = s.by.iter().chain(st.by.iter()).collect();
                stage(&st.filter, &by, &mut out);
            }
        }
    }
    out.extend(structure(q));
    let mut unique: Vec<EqlError> = Vec::with_capacity(out.len());
    for e in out {
        if !unique.iter().any(|u| u.span == e.span && u.message == e.message) {
            unique.push(e);
        }
    }
    unique
}

/// The structural problems of a sequence or sample, each found by the same check the compiler makes
/// (so the two cannot disagree): a stage with `runs=0`, no stage that is not a missing event, missing-event
/// stages without `maxspan`, stages (or sample filters) with different numbers of join keys.
pub(super) fn structure(q: &ast::Query) -> Vec<EqlError> {
    match &q.body {
        ast::QueryBody::Event(_) => Vec::new(),
        ast::QueryBody::Sample(s) => sample_keys(s).into_iter().collect(),
        ast::QueryBody::Sequence(s) => s
            .stages
            .iter()
            .filter_map(runs)
            .chain(needs_positive_stage(s).or_else(|| needs_maxspan(s)))
            .chain(sequence_keys(s))
            .collect(),
    }
}

/// Every filter of a sample has as many join keys of its own as the first (reported at the first that
/// differs), and there is at least one key.
pub(super) fn sample_keys(s: &ast::Sample) -> Option<EqlError> {
    let first = s.stages.first().map_or(0, |st| st.by.len());
    if let Some(st) = s.stages.iter().find(|st| st.by.len() != first) {
        return Some(EqlError::verification(
            format!(
                "inconsistent number of join keys: the first filter has {first} `by` key(s) but this filter has {}; every filter needs the same number",
                st.by.len()
            ),
            st.filter.span,
        ));
    }
    (s.by.is_empty() && first == 0).then(|| {
        EqlError::verification(
            "a sample needs join keys: `sample by <field> [...] [...]` or `[...] by <field>` on every filter",
            s.span,
        )
    })
}

/// `with runs=N` needs N ≥ 1 (the parser accepts no other; a query built by hand might).
pub(super) fn runs(st: &ast::Stage) -> Option<EqlError> {
    (st.runs == 0).then(|| EqlError::verification("runs must be at least 1", st.filter.span))
}

/// A sequence with missing-event stages needs a stage that is not one.
pub(super) fn needs_positive_stage(s: &ast::Sequence) -> Option<EqlError> {
    (!s.stages.iter().any(|st| !st.missing && st.runs > 0)).then(|| {
        EqlError::verification("a sequence needs at least one stage that is not a missing event `![...]`", s.span)
    })
}

/// Missing-event stages are only defined within a `maxspan`.
pub(super) fn needs_maxspan(s: &ast::Sequence) -> Option<EqlError> {
    (s.stages.iter().any(|st| st.missing && st.runs > 0) && s.maxspan_ms.is_none()).then(|| {
        EqlError::verification("`with maxspan=...` is required in a sequence with missing-event stages `![...]`", s.span)
    })
}

/// Every stage of a sequence (missing ones and `until` included) has as many join keys of its own as the
/// first (Elasticsearch's rule), reported at the first stage that differs.
pub(super) fn sequence_keys(s: &ast::Sequence) -> Option<EqlError> {
    let mut stages = s.stages.iter().chain(s.until.iter());
    let first = stages.next()?.by.len();
    stages.find(|st| st.by.len() != first).map(|st| {
        EqlError::verification(
            format!(
                "inconsistent number of join keys: the first stage has {first} `by` key(s) but this stage has {}; every stage needs the same number",
                st.by.len()
            ),
            st.filter.span,
        )
    })
}

/// The problems of one condition: each side of `and`/`or` and the operand of `not` on its own, so one
/// bad leaf does not hide another.
fn condition(compiler: &Compiler, e: &Expr, out: &mut Vec<EqlError>) {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            condition(compiler, a, out);
            condition(compiler, b, out);
        }
        Expr::Not(x, _) => condition(compiler, x, out),
        leaf => {
            let before = out.len();
            fields_of(leaf, &mut |f| out.extend(compiler.field(f).err()));
            if out.len() == before {
                out.extend(compiler.pred(leaf).err());
            }
        }
    }
}

/// Calls `each` on every field reference in `e`, left to right.
fn fields_of<'e>(e: &'e Expr, each: &mut dyn FnMut(&'e FieldRef)) {
    match e {
        Expr::Literal(..) => {}
        Expr::Field(f) => each(f),
        Expr::And(a, b) | Expr::Or(a, b) => {
            fields_of(a, each);
            fields_of(b, each);
        }
        Expr::Not(x, _) | Expr::Neg(x, _) => fields_of(x, each),
        Expr::Compare { left, right, .. } | Expr::Arith { left, right, .. } => {
            fields_of(left, each);
            fields_of(right, each);
        }
        Expr::Match { expr, patterns, .. } => {
            fields_of(expr, each);
            patterns.iter().for_each(|p| fields_of(p, each));
        }
        Expr::In { expr, values, .. } => {
            fields_of(expr, each);
            values.iter().for_each(|v| fields_of(v, each));
        }
        Expr::Call { args, .. } => args.iter().for_each(|a| fields_of(a, each)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::CompiledQuery;
    use crate::mapping::{FieldMapping, FieldType};
    use crate::plan::QueryOptions;
    use crate::ErrorKind;

    /// A strict mapping (unknown fields are errors, as against a cluster's `_mapping`).
    fn mapping() -> Mapping {
        let mut m = Mapping::new();
        for f in ["event.code", "process.name", "user.name"] {
            m.insert(f, FieldMapping::new(FieldType::Keyword));
        }
        m.insert("process.pid", FieldMapping::new(FieldType::Long));
        m
    }

    fn compile_err(query: &str) -> EqlError {
        let q = crate::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        CompiledQuery::compile(&q, &mapping(), &QueryOptions::default()).expect_err(query)
    }

    /// 1-based (line, col) of the first occurrence of `needle` in `text`.
    fn at(text: &str, needle: &str) -> (u32, u32) {
        let start = text.find(needle).unwrap_or_else(|| panic!("{needle} not in {text}"));
        let before = &text[..start];
        let line = before.matches('\n').count() as u32 + 1;
        let col = before.rsplit('\n').next().unwrap().chars().count() as u32 + 1;
        (line, col)
    }

    fn pos(e: &EqlError) -> (u32, u32) {
        (e.span.line, e.span.col)
    }

    #[test]
    fn two_mistakes_are_both_reported_with_their_positions() {
        let query = "process where proces.name == \"a\" and\n  startswith(process.pid, \"1\")";
        let e = compile_err(query);
        assert_eq!(e.kind, ErrorKind::Verification);
        assert_eq!(pos(&e), at(query, "proces.name"));
        assert!(e.message.starts_with("Unknown column [proces.name], did you mean any of [process.name, process.pid, user.name]?"), "{}", e.message);
        assert_eq!(e.also.len(), 1, "{:?}", e.also);
        let second = &e.also[0];
        assert_eq!(second.kind, ErrorKind::Verification);
        assert_eq!(pos(second), at(query, "process.pid"), "{second}");
        assert!(second.message.contains("first argument of [startsWith]"), "{second}");
        assert_eq!(e.problems().count(), 2);
    }

    #[test]
    fn problems_in_every_stage_and_join_key_of_a_sequence() {
        let query = "sequence by user.nme\n  [process where event.cod == \"1\"]\n  [process where not proces.name : \"x\"]";
        let e = compile_err(query);
        let got: Vec<(u32, u32)> = e.problems().map(pos).collect();
        // The compiler meets the first stage's condition first; the others follow in source order.
        assert_eq!(got, vec![at(query, "event.cod"), at(query, "user.nme"), at(query, "proces.name")], "{e:?}");
        assert!(e.also[0].message.starts_with("Unknown column [user.nme], did you mean [user.name]?"), "{}", e.also[0]);
    }

    #[test]
    fn an_unknown_field_inside_a_comparison_hides_nothing_else() {
        // Both operands unknown: both are reported (Elasticsearch resolves every attribute first).
        let query = "any where proces.name == usr.name";
        let e = compile_err(query);
        let got: Vec<(u32, u32)> = e.problems().map(pos).collect();
        assert_eq!(got, vec![at(query, "proces.name"), at(query, "usr.name")], "{e:?}");
    }

    #[test]
    fn one_problem_has_nothing_else() {
        let e = compile_err("any where event.code == \"1\" and zzz == \"x\"");
        assert!(e.also.is_empty(), "{:?}", e.also);
    }

    #[test]
    fn structural_problems_of_a_sequence_come_with_the_field_problems() {
        // A field mistake (the compiler stops there), a missing-event stage without `maxspan`, and a stage
        // with fewer join keys than the first: all three at once, each at its place.
        let query = "sequence by user.name\n  [process where proces.name == \"a\"] by process.pid\n  ![process where true]\n  [process where true] by process.pid";
        let e = compile_err(query);
        let got: Vec<(u32, u32, &str)> = e.problems().map(|p| (p.span.line, p.span.col, p.message.as_str())).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!((got[0].0, got[0].1), at(query, "proces.name"), "{got:?}");
        assert!(got[0].2.starts_with("Unknown column [proces.name]"), "{got:?}");
        assert_eq!(got[1], (1, 1, "`with maxspan=...` is required in a sequence with missing-event stages `![...]`"));
        assert_eq!((got[2].0, got[2].1), at(query, "![process where true]"), "{got:?}");
        assert_eq!(
            got[2].2,
            "inconsistent number of join keys: the first stage has 1 `by` key(s) but this stage has 0; every stage needs the same number"
        );
        assert!(e.problems().all(|p| p.kind == ErrorKind::Verification));
    }

    #[test]
    fn a_missing_maxspan_and_a_field_mistake_are_both_reported() {
        let query = "sequence by user.name [process where event.cod == \"1\"] ![process where true]";
        let got: Vec<String> = compile_err(query).problems().map(|p| p.message.clone()).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("Unknown column [event.cod]"), "{got:?}");
        assert_eq!(got[1], "`with maxspan=...` is required in a sequence with missing-event stages `![...]`");
    }

    #[test]
    fn a_sample_with_uneven_join_keys_and_a_field_mistake_reports_both() {
        let query = "sample by user.name [process where proces.name == \"a\"] by process.pid [process where true]";
        let got: Vec<String> = compile_err(query).problems().map(|p| p.message.clone()).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("Unknown column [proces.name]"), "{got:?}");
        assert_eq!(
            got[1],
            "inconsistent number of join keys: the first filter has 1 `by` key(s) but this filter has 0; every filter needs the same number"
        );
    }

    #[test]
    fn structural_problems_alone_are_reported_once_each() {
        let e = compile_err("sequence [process where true] by user.name [process where true]");
        assert!(e.message.starts_with("inconsistent number of join keys: the first stage has 1"), "{}", e.message);
        assert!(e.also.is_empty(), "{:?}", e.also);
        let e = compile_err("sample [process where true] [process where true]");
        assert!(e.message.starts_with("a sample needs join keys"), "{}", e.message);
        assert!(e.also.is_empty(), "{:?}", e.also);
        let e = compile_err("sequence\n  ![process where true]\n  ![process where true]");
        assert_eq!(e.message, "a sequence needs at least one stage that is not a missing event `![...]`");
        assert!(e.also.is_empty(), "{:?}", e.also);
    }

    #[test]
    fn suggestions_follow_elasticsearch_find_similar() {
        let m = mapping();
        // Closest first; equal scores (5 edits over 11 characters) keep the mapping's order.
        assert_eq!(similar_fields("proces.name", &m), ["process.name", "process.pid", "user.name"]);
        assert_eq!(similar_fields("user.nme", &m), ["user.name"]);
        // Exactly half of the longer name kept (6 edits over 12 characters) still counts.
        assert_eq!(similar_fields("host.nme", &m), ["process.name"]);
        assert!(did_you_mean(&similar_fields("host.nme", &m)) == ", did you mean [process.name]?");
    }

    #[test]
    fn nothing_close_means_no_suggestion() {
        let m = mapping();
        assert!(similar_fields("pid", &m).is_empty());
        let e = compile_err("any where zzz == \"x\"");
        assert!(!e.message.contains("did you mean"), "{}", e.message);
        assert!(e.message.starts_with("Unknown column [zzz]: the field is not in the mapping."), "{}", e.message);
    }
}
