//! Exception items evaluated in memory against events, with the outcome the cluster's query would have.
//!
//! Elasticsearch compares what a field's mapper indexed, so every entry is resolved against the mapping
//! once: a `match` on a keyword field is exact equality with the indexed term, on a `long` field the value
//! is parsed as a number, on an `ip` field it may be a CIDR block, on a `text` field it is a phrase of
//! analysed tokens. Values the mapper would not index (over `ignore_above`, malformed) are missing.

use super::{Entry, ExceptionItem, Operator};
use crate::eql::functions::{cidr_contains, parse_cidr};
use crate::eql::mapping::{FieldType, Mapping};
use crate::eql::value::{normalize, parse_date_ms, parse_java_double, parse_long_coerce, Norm, Val, ValueKind};
use crate::event::{collect_path, Event};
use serde_json::Value;

/// How a field is queried (from its mapping).
#[derive(Debug, Clone)]
struct FieldSpec {
    path: String,
    kind: ValueKind,
    ignore_above: Option<usize>,
    /// `text`: `match_phrase` analyses the value and matches a phrase of tokens.
    text: bool,
    /// Unknown to the mapping (and not inferred): the cluster has nothing indexed, nothing matches.
    unmapped: bool,
}

#[derive(Debug, Clone)]
enum Cond {
    Match(FieldSpec, Vec<String>),
    Exists(FieldSpec),
    Wildcard(FieldSpec, String),
    /// Parent path and conditions evaluated on each of its objects.
    Nested(String, Vec<(Cond, Operator)>),
}

/// Compiled exceptions of one rule: an event is excluded when any alternative has all its conditions true.
#[derive(Debug, Clone, Default)]
pub struct ExceptionMatcher {
    alternatives: Vec<Vec<(Cond, Operator)>>,
}

impl ExceptionMatcher {
    pub(super) fn new(items: &[ExceptionItem], mapping: &Mapping) -> ExceptionMatcher {
        let mut alternatives = Vec::new();
        for item in items {
            let conds: Vec<(Cond, Operator)> = item.entries.iter().map(|e| compile(e, None, mapping)).collect();
            if item.os_types.is_empty() {
                alternatives.push(conds);
                continue;
            }
            for os_field in ["host.os.type", "host.os.name.caseless"] {
                for os in &item.os_types {
                    let mut all = vec![(Cond::Match(spec(os_field, mapping), vec![os.clone()]), Operator::Included)];
                    all.extend(conds.iter().cloned());
                    alternatives.push(all);
                }
            }
        }
        ExceptionMatcher { alternatives }
    }

    /// Whether the rule's exceptions remove this event from what the query sees.
    pub fn excludes(&self, event: &Event) -> bool {
        self.alternatives.iter().any(|conds| conds.iter().all(|(c, op)| holds(c, *op, &event.source)))
    }

    pub fn is_empty(&self) -> bool {
        self.alternatives.is_empty()
    }
}

fn spec(path: &str, mapping: &Mapping) -> FieldSpec {
    match mapping.resolve(path) {
        Some(r) => FieldSpec {
            path: path.to_string(),
            text: matches!(r.declared, Some(FieldType::Text { .. })),
            // A text field is analysed; its keyword sub-field (what EQL compares) plays no part here.
            kind: if matches!(r.declared, Some(FieldType::Text { .. })) { ValueKind::Text } else { r.kind },
            ignore_above: if matches!(r.declared, Some(FieldType::Text { .. })) { None } else { r.ignore_above },
            unmapped: false,
        },
        None => FieldSpec { path: path.to_string(), kind: ValueKind::Keyword, ignore_above: None, text: false, unmapped: true },
    }
}

fn compile(entry: &Entry, parent: Option<&str>, mapping: &Mapping) -> (Cond, Operator) {
    let full = |field: &str| match parent {
        Some(p) => format!("{p}.{field}"),
        None => field.to_string(),
    };
    match entry {
        Entry::Match { field, value, operator } => (Cond::Match(spec(&full(field), mapping), vec![value.clone()]), *operator),
        Entry::MatchAny { field, values, operator } => (Cond::Match(spec(&full(field), mapping), values.clone()), *operator),
        Entry::Exists { field, operator } => (Cond::Exists(spec(&full(field), mapping)), *operator),
        Entry::Wildcard { field, value, operator } => (Cond::Wildcard(spec(&full(field), mapping), value.clone()), *operator),
        Entry::Nested { field, entries } => {
            let path = full(field);
            let inner = entries.iter().map(|e| compile(e, Some(&path), mapping)).collect();
            (Cond::Nested(path, inner), Operator::Included)
        }
    }
}

/// Evaluates one condition below `root` (the document, or one object of a nested field, whose fields are
/// then looked up relative to the nested path).
fn holds(cond: &Cond, op: Operator, root: &Value) -> bool {
    holds_at(cond, op, root, None)
}

fn holds_at(cond: &Cond, op: Operator, root: &Value, strip: Option<&str>) -> bool {
    let lookup = |spec: &FieldSpec| -> Vec<&Value> {
        let rel = match strip {
            Some(prefix) => spec.path.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')).unwrap_or(&spec.path),
            None => spec.path.as_str(),
        };
        let mut out = Vec::new();
        if !spec.unmapped {
            collect_path(root, rel, &mut out);
        }
        out
    };
    let truth = match cond {
        Cond::Match(spec, values) => {
            let found = lookup(spec);
            values.iter().any(|v| found.iter().any(|raw| matches_value(spec, raw, v)))
        }
        Cond::Exists(spec) => lookup(spec).iter().any(|raw| matches!(norm(spec, raw), Norm::Val(_))),
        Cond::Wildcard(spec, pattern) => lookup(spec).iter().any(|raw| matches_wildcard(spec, raw, pattern)),
        Cond::Nested(path, inner) => {
            let mut objects = Vec::new();
            let rel = match strip {
                Some(prefix) => path.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')).unwrap_or(path),
                None => path.as_str(),
            };
            collect_path(root, rel, &mut objects);
            objects
                .iter()
                .filter(|o| o.is_object())
                .any(|o| inner.iter().all(|(c, op)| holds_at(c, *op, o, Some(path))))
        }
    };
    match op {
        Operator::Included => truth,
        Operator::Excluded => !truth,
    }
}

fn norm<'a>(spec: &FieldSpec, raw: &'a Value) -> Norm<'a> {
    normalize(&spec.kind, spec.ignore_above, raw)
}

/// `match_phrase` of `value` against one indexed value.
fn matches_value(spec: &FieldSpec, raw: &Value, value: &str) -> bool {
    let Norm::Val(v) = norm(spec, raw) else { return false };
    if spec.text {
        return match v {
            Val::Str(s) => phrase_matches(&s, value),
            _ => false,
        };
    }
    match (&spec.kind, v) {
        (_, Val::Str(s)) | (_, Val::Version(s)) => s == value,
        (_, Val::Long(l)) => parse_long_coerce(value) == Some(l),
        (_, Val::Double(d)) => parse_java_double(value) == Some(d),
        (_, Val::Bool(b)) => value == if b { "true" } else { "false" },
        // A term on an `ip` field accepts an address or a CIDR block.
        (_, Val::Ip(ip)) => parse_cidr(value).is_some_and(|block| cidr_contains(&[block], &ip)),
        (_, Val::Date(ms)) => parse_date_ms(value) == Some(ms),
    }
}

fn matches_wildcard(spec: &FieldSpec, raw: &Value, pattern: &str) -> bool {
    let Norm::Val(v) = norm(spec, raw) else { return false };
    match v {
        // On a text field the pattern is normalised (lower-cased) and tried against each token.
        Val::Str(s) if spec.text => {
            let p = pattern.to_lowercase();
            tokens(&s).iter().any(|t| glob(t, &p))
        }
        Val::Str(s) | Val::Version(s) => glob(&s, pattern),
        // Elasticsearch refuses wildcard queries on numeric, ip, date and boolean fields.
        _ => false,
    }
}

/// Lucene wildcard: `*` any run, `?` one character, `\` escapes the next character. Case-sensitive.
pub(crate) fn glob(text: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Lit(char),
    }
    let mut parts = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        parts.push(match c {
            '*' => P::Any,
            '?' => P::One,
            '\\' => P::Lit(chars.next().unwrap_or('\\')),
            c => P::Lit(c),
        });
    }
    let t: Vec<char> = text.chars().collect();
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match parts.get(pi) {
            Some(P::Any) => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(P::One) => {
                ti += 1;
                pi += 1;
            }
            Some(P::Lit(c)) if *c == t[ti] => {
                ti += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    parts[pi..].iter().all(|p| *p == P::Any)
}

/// Tokens of the standard analyzer, approximated: runs of letters, digits and `_`, kept together across a
/// single `.` or `'` between two such characters (`example.com`, `don't`), lower-cased.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if word(c) {
            cur.extend(c.to_lowercase());
        } else if (c == '.' || c == '\'')
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(|n| word(*n))
        {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `match_phrase` on a text value: the value's tokens appear consecutively, in order, in the field's.
fn phrase_matches(field_value: &str, phrase: &str) -> bool {
    let want = tokens(phrase);
    if want.is_empty() {
        return false;
    }
    let have = tokens(field_value);
    have.windows(want.len()).any(|w| w == want.as_slice())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn glob_like_lucene() {
        assert!(glob("C:\\Windows\\x.exe", "C:\\\\Windows\\\\*.exe"));
        assert!(glob("abc", "a?c"));
        assert!(glob("abc", "*"));
        assert!(!glob("ABC", "abc"), "case-sensitive");
        assert!(glob("a*c", "a\\*c"));
        assert!(!glob("abc", "a\\*c"));
        assert!(glob("aXbXc", "*b*c"));
        assert!(!glob("ab", "a?c"));
    }

    #[test]
    fn standard_tokens_and_phrases() {
        assert_eq!(tokens("Hello, World! host01.corp.local"), vec!["hello", "world", "host01.corp.local"]);
        assert!(phrase_matches("The quick brown fox", "QUICK brown"));
        assert!(!phrase_matches("The quick brown fox", "brown quick"));
        assert!(!phrase_matches("quickly", "quick"));
    }
}
