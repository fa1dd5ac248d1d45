//! Evaluating compiled predicates against one document, exactly as Elasticsearch's translation behaves.
//!
//! Two paths (spec §4): a *pushdown* predicate (bare field vs literals — what ES turns into `term`, `terms`,
//! `wildcard`, `prefix`, `regexp`, `range`, `exists`) holds if **any** indexed value satisfies it, so it is
//! false on a missing field and its negation is true there. A *script* predicate (anything else) runs
//! ES's `multiValueDocValues` rewrite: an existential loop over **every field occurrence independently**
//! (a missing field iterates once as `null`), each combination null-safe (null → false); a `not` above it
//! stays outside the loops. Top-level `and`/`or`/`not` combine independently evaluated children.
//!
//! Field values are read from `_source` without building strings (dotted and nested keys both work) and
//! normalised per the mapped type on the fly ([`crate::value::normalize`]).

use crate::ast::{CompareOp, Function, Span};
use crate::functions::{self as fx, Arith, Glob, StrTest, SV};
use crate::value::{self, compare, normalize, Norm, Val, ValueKind};
use crate::EqlError;
use ipnet::Ipv6Net;
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// How to read one field from `_source` and what its values are.
#[derive(Debug, Clone)]
pub struct FieldAcc {
    /// As written in the query (for messages).
    pub name: String,
    /// Where the values live in `_source` (alias and multi-field targets resolved).
    pub source_path: String,
    pub kind: ValueKind,
    pub ignore_above: Option<usize>,
    pub null_value: Option<Value>,
}

/// Walks `path` below `node` (nested objects, dotted keys, arrays flattened) and calls `f` for every
/// value; stops early when `f` returns true.
fn walk<'a>(node: &'a Value, path: &str, f: &mut dyn FnMut(&'a Value) -> bool) -> bool {
    match node {
        Value::Array(items) => items.iter().any(|it| walk(it, path, f)),
        Value::Object(map) if map.len() <= 32 => {
            // One pass, no hashing: an exact key, or a key that is a dotted prefix of the path.
            let pb = path.as_bytes();
            for (k, v) in map {
                let kb = k.as_bytes();
                if kb.len() == pb.len() {
                    if kb == pb && flat(v, f) {
                        return true;
                    }
                } else if kb.len() < pb.len() && pb[kb.len()] == b'.' && pb.starts_with(kb) {
                    if walk(v, &path[kb.len() + 1..], f) {
                        return true;
                    }
                }
            }
            false
        }
        Value::Object(map) => {
            if let Some(v) = map.get(path) {
                if flat(v, f) {
                    return true;
                }
            }
            for (i, _) in path.match_indices('.') {
                if let Some(child) = map.get(&path[..i]) {
                    if walk(child, &path[i + 1..], f) {
                        return true;
                    }
                }
            }
            false
        }
        _ => false,
    }
}

fn flat<'a>(v: &'a Value, f: &mut dyn FnMut(&'a Value) -> bool) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|it| flat(it, f)),
        other => f(other),
    }
}

impl FieldAcc {
    /// Calls `f` on each indexed value of the field (normalised); stops at the first `true`.
    pub fn any<'a>(&'a self, src: &'a Value, malformed: &AtomicU64, f: &mut dyn FnMut(&Val<'a>) -> bool) -> bool {
        walk(src, &self.source_path, &mut |raw: &'a Value| {
            let raw = match raw {
                Value::Null => match &self.null_value {
                    Some(nv) => nv,
                    None => return false,
                },
                r => r,
            };
            match normalize(&self.kind, self.ignore_above, raw) {
                Norm::Val(v) => f(&v),
                Norm::Skip => false,
                Norm::Malformed => {
                    malformed.fetch_add(1, AtomicOrdering::Relaxed);
                    false
                }
            }
        })
    }

    /// Every indexed value.
    pub fn values<'a>(&'a self, src: &'a Value, malformed: &AtomicU64) -> Vec<Val<'a>> {
        let mut out = Vec::new();
        self.any(src, malformed, &mut |v| {
            out.push(v.clone());
            false
        });
        out
    }

    /// The first indexed value.
    pub fn first<'a>(&'a self, src: &'a Value, malformed: &AtomicU64) -> Option<Val<'a>> {
        let mut out = None;
        self.any(src, malformed, &mut |v| {
            out = Some(v.clone());
            true
        });
        out
    }
}

/// A compiled boolean condition.
#[derive(Debug, Clone)]
pub enum Pred {
    Const(bool),
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
    /// `f != null` (`exists`).
    Exists(FieldAcc),
    /// Any value `op` literal (`op` is never `!=`: that is `Not(Cmp(==))`).
    Cmp(FieldAcc, CompareOp, Val<'static>),
    /// Any value equal to one of the literals (`terms`).
    In(FieldAcc, Vec<Val<'static>>),
    /// Any value matching one of the wildcard patterns (`:`, `like`, `in~`, `startsWith`, …).
    Globs(FieldAcc, Vec<Glob>),
    /// Any value matching one of the Lucene regexes.
    Regexes(FieldAcc, Vec<regex::Regex>),
    /// Any value inside one of the blocks (`cidrMatch` pushdown).
    Cidr(FieldAcc, Vec<Ipv6Net>),
    Script(Box<Script>),
}

fn op_holds(op: CompareOp, o: Ordering) -> bool {
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::NotEq => o != Ordering::Equal,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Lte => o != Ordering::Greater,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Gte => o != Ordering::Less,
    }
}

#[inline]
fn val_eq(v: &Val<'_>, lit: &Val<'_>) -> bool {
    match (v, lit) {
        (Val::Str(a), Val::Str(b)) => a == b,
        (Val::Long(a), Val::Long(b)) => a == b,
        (Val::Ip(a), Val::Ip(b)) => a == b,
        _ => compare(v, lit) == Some(Ordering::Equal),
    }
}

impl Pred {
    /// Appends the `_source` path of every field this predicate reads.
    pub fn fields_read(&self, out: &mut Vec<String>) {
        match self {
            Pred::Const(_) => {}
            Pred::And(items) | Pred::Or(items) => items.iter().for_each(|p| p.fields_read(out)),
            Pred::Not(p) => p.fields_read(out),
            Pred::Exists(acc)
            | Pred::Cmp(acc, ..)
            | Pred::In(acc, _)
            | Pred::Globs(acc, _)
            | Pred::Regexes(acc, _)
            | Pred::Cidr(acc, _) => out.push(acc.source_path.clone()),
            Pred::Script(script) => out.extend(script.slots.iter().map(|a| a.source_path.clone())),
        }
    }

    pub fn eval(&self, src: &Value, malformed: &AtomicU64) -> Result<bool, EqlError> {
        Ok(match self {
            Pred::Const(b) => *b,
            Pred::And(ps) => {
                for p in ps {
                    if !p.eval(src, malformed)? {
                        return Ok(false);
                    }
                }
                true
            }
            Pred::Or(ps) => {
                for p in ps {
                    if p.eval(src, malformed)? {
                        return Ok(true);
                    }
                }
                false
            }
            Pred::Not(p) => !p.eval(src, malformed)?,
            Pred::Exists(acc) => acc.any(src, malformed, &mut |_| true),
            Pred::Cmp(acc, op, lit) => {
                if *op == CompareOp::Eq {
                    acc.any(src, malformed, &mut |v| val_eq(v, lit))
                } else {
                    acc.any(src, malformed, &mut |v| compare(v, lit).is_some_and(|o| op_holds(*op, o)))
                }
            }
            Pred::In(acc, lits) => acc.any(src, malformed, &mut |v| lits.iter().any(|l| val_eq(v, l))),
            Pred::Globs(acc, globs) => acc.any(src, malformed, &mut |v| {
                let t = v.to_text();
                globs.iter().any(|g| g.matches(&t))
            }),
            Pred::Regexes(acc, res) => acc.any(src, malformed, &mut |v| {
                let t = v.to_text();
                res.iter().any(|r| r.is_match(&t))
            }),
            Pred::Cidr(acc, blocks) => acc.any(src, malformed, &mut |v| match v {
                Val::Ip(ip) => fx::cidr_contains(blocks, ip),
                Val::Str(s) => fx::script_ip(s).is_some_and(|ip| fx::cidr_contains(blocks, &ip)),
                _ => false,
            }),
            Pred::Script(s) => s.eval(src, malformed)?,
        })
    }
}

/// A script-path predicate: an expression over field *occurrences* (slots).
#[derive(Debug, Clone)]
pub struct Script {
    pub expr: SExpr,
    /// One entry per field occurrence, in order of appearance (repeated fields get separate slots).
    pub slots: Vec<FieldAcc>,
}

/// Script expression nodes.
#[derive(Debug, Clone)]
pub enum SExpr {
    Lit(SV<'static>),
    Slot(usize),
    Not(Box<SExpr>),
    And(Box<SExpr>, Box<SExpr>),
    Or(Box<SExpr>, Box<SExpr>),
    Cmp(CompareOp, Box<SExpr>, Box<SExpr>),
    /// `x == null` (`negated`: `x != null`).
    IsNull(Box<SExpr>, bool),
    Arith(Arith, Box<SExpr>, Box<SExpr>, Span),
    Neg(Box<SExpr>, Span),
    Call { function: Function, ci: bool, args: Vec<SExpr>, span: Span, cidr: Vec<Ipv6Net> },
    Globs(Box<SExpr>, Vec<Glob>, Span),
    Regexes(Box<SExpr>, Vec<regex::Regex>, Span),
    /// `x in (...)` / `in~`; `null` elements kept (a miss against a list with null is null).
    In(Box<SExpr>, Vec<SV<'static>>, bool),
}

fn val_to_sv<'a>(v: Val<'a>) -> SV<'a> {
    match v {
        Val::Str(s) | Val::Version(s) => SV::Str(s),
        Val::Long(l) => SV::Long(l),
        Val::Double(d) => SV::Double(d),
        Val::Bool(b) => SV::Bool(b),
        Val::Ip(ip) => SV::Str(Cow::Owned(value::format_ip(&ip))),
        Val::Date(ms) => SV::Str(Cow::Owned(value::format_date_ms(ms))),
    }
}

/// Java `Comparisons.compare`: numbers numerically, same-type comparables, otherwise not comparable.
fn sv_cmp(a: &SV<'_>, b: &SV<'_>) -> Option<Ordering> {
    match (a, b) {
        (SV::Long(x), SV::Long(y)) => Some(x.cmp(y)),
        (SV::Long(_) | SV::Double(_), SV::Long(_) | SV::Double(_)) => {
            let f = |v: &SV| match v {
                SV::Long(l) => *l as f64,
                SV::Double(d) => *d,
                _ => f64::NAN,
            };
            f(a).partial_cmp(&f(b))
        }
        (SV::Str(x), SV::Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (SV::Bool(x), SV::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn need_str<'b>(v: &'b SV<'_>, f: Function, pos: &str, span: Span) -> Result<&'b str, EqlError> {
    match v {
        SV::Str(s) => Ok(s.as_ref()),
        other => Err(EqlError::query(
            format!("{pos} argument of [{}] must be a string, found [{}] of type [{}]", f.name(),
                other.to_java_string().unwrap_or(Cow::Borrowed("null")), other.type_name()),
            span,
        )),
    }
}

fn need_long(v: &SV<'_>, f: Function, pos: &str, span: Span) -> Result<Option<i64>, EqlError> {
    match v {
        SV::Null => Ok(None),
        SV::Long(l) => Ok(Some(*l)),
        other => Err(EqlError::query(
            format!("{pos} argument of [{}] must be an integer, found type [{}]", f.name(), other.type_name()),
            span,
        )),
    }
}

impl Script {
    /// `∃ x_1 ∈ W(f_1) … x_n ∈ W(f_n): nullSafe(P(x…))`.
    pub fn eval(&self, src: &Value, malformed: &AtomicU64) -> Result<bool, EqlError> {
        let lists: Vec<Vec<SV<'_>>> = self
            .slots
            .iter()
            .map(|acc| {
                let mut vs: Vec<SV<'_>> = acc.values(src, malformed).into_iter().map(val_to_sv).collect();
                if vs.is_empty() {
                    vs.push(SV::Null);
                }
                vs
            })
            .collect();
        let combinations = lists.iter().fold(1usize, |n, l| n.saturating_mul(l.len()));
        if combinations > crate::limits::MAX_PREDICATE_COMBINATIONS {
            return Err(EqlError::limit(format!(
                "a predicate over several multi-valued fields would compare more than {} value combinations",
                crate::limits::MAX_PREDICATE_COMBINATIONS
            )));
        }
        let mut idx = vec![0usize; lists.len()];
        loop {
            let env: Vec<&SV<'_>> = lists.iter().zip(&idx).map(|(l, &i)| &l[i]).collect();
            if matches!(eval_sexpr(&self.expr, &env)?, SV::Bool(true)) {
                return Ok(true);
            }
            // Odometer over the cartesian product.
            let mut k = lists.len();
            loop {
                if k == 0 {
                    return Ok(false);
                }
                k -= 1;
                idx[k] += 1;
                if idx[k] < lists[k].len() {
                    break;
                }
                idx[k] = 0;
            }
        }
    }
}

/// Evaluates a script expression for one combination of field values.
pub fn eval_sexpr<'b>(e: &'b SExpr, env: &[&'b SV<'b>]) -> Result<SV<'b>, EqlError> {
    Ok(match e {
        SExpr::Lit(v) => v.clone(),
        SExpr::Slot(i) => env.get(*i).map(|v| (*v).clone()).unwrap_or(SV::Null),
        SExpr::Not(x) => match eval_sexpr(x, env)? {
            SV::Bool(b) => SV::Bool(!b),
            _ => SV::Null,
        },
        SExpr::And(a, b) => {
            let l = eval_sexpr(a, env)?;
            if l == SV::Bool(false) {
                return Ok(SV::Bool(false));
            }
            match (l, eval_sexpr(b, env)?) {
                (_, SV::Bool(false)) => SV::Bool(false),
                (SV::Bool(true), SV::Bool(true)) => SV::Bool(true),
                _ => SV::Null,
            }
        }
        SExpr::Or(a, b) => {
            let l = eval_sexpr(a, env)?;
            if l == SV::Bool(true) {
                return Ok(SV::Bool(true));
            }
            match (l, eval_sexpr(b, env)?) {
                (_, SV::Bool(true)) => SV::Bool(true),
                (SV::Bool(false), SV::Bool(false)) => SV::Bool(false),
                _ => SV::Null,
            }
        }
        SExpr::Cmp(op, a, b) => {
            let (l, r) = (eval_sexpr(a, env)?, eval_sexpr(b, env)?);
            if l.is_null() || r.is_null() {
                SV::Null
            } else {
                match sv_cmp(&l, &r) {
                    Some(o) => SV::Bool(op_holds(*op, o)),
                    None => SV::Null,
                }
            }
        }
        SExpr::IsNull(x, negated) => SV::Bool(eval_sexpr(x, env)?.is_null() != *negated),
        SExpr::Arith(op, a, b, span) => fx::arith(*op, &eval_sexpr(a, env)?, &eval_sexpr(b, env)?, *span)?,
        SExpr::Neg(x, span) => match eval_sexpr(x, env)? {
            SV::Null => SV::Null,
            SV::Long(l) => SV::Long(l.checked_neg().ok_or_else(|| EqlError::query("negation: long overflow", *span))?),
            SV::Double(d) => SV::Double(-d),
            other => return Err(EqlError::query(format!("cannot negate a value of type [{}]", other.type_name()), *span)),
        },
        SExpr::Globs(x, globs, span) => match eval_sexpr(x, env)? {
            SV::Null => SV::Null,
            SV::Str(s) => SV::Bool(globs.iter().any(|g| g.matches(&s))),
            other => return Err(EqlError::query(format!("pattern matching needs a string, found [{}]", other.type_name()), *span)),
        },
        SExpr::Regexes(x, res, span) => match eval_sexpr(x, env)? {
            SV::Null => SV::Null,
            SV::Str(s) => SV::Bool(res.iter().any(|r| r.is_match(&s))),
            other => return Err(EqlError::query(format!("regex matching needs a string, found [{}]", other.type_name()), *span)),
        },
        SExpr::In(x, list, ci) => {
            let v = eval_sexpr(x, env)?;
            if v.is_null() {
                return Ok(SV::Null);
            }
            let mut saw_null = false;
            for item in list {
                if item.is_null() {
                    saw_null = true;
                    continue;
                }
                let hit = match (&v, item, ci) {
                    (SV::Str(a), SV::Str(b), true) => fx::ci_str_eq(b, a),
                    _ => sv_cmp(&v, item) == Some(Ordering::Equal),
                };
                if hit {
                    return Ok(SV::Bool(true));
                }
            }
            if saw_null {
                SV::Null
            } else {
                SV::Bool(false)
            }
        }
        SExpr::Call { function, ci, args, span, cidr } => call(*function, *ci, args, cidr, *span, env)?,
    })
}

fn call<'b>(f: Function, ci: bool, args: &'b [SExpr], cidr: &[Ipv6Net], span: Span, env: &[&'b SV<'b>]) -> Result<SV<'b>, EqlError> {
    let arg = |i: usize| -> Result<SV<'b>, EqlError> {
        match args.get(i) {
            Some(a) => eval_sexpr(a, env),
            None => Ok(SV::Null),
        }
    };
    Ok(match f {
        Function::StartsWith | Function::EndsWith | Function::StringContains => {
            let (s, p) = (arg(0)?, arg(1)?);
            if s.is_null() || p.is_null() {
                return Ok(SV::Null);
            }
            let kind = match f {
                Function::StartsWith => StrTest::StartsWith,
                Function::EndsWith => StrTest::EndsWith,
                _ => StrTest::Contains,
            };
            SV::Bool(fx::str_test(kind, need_str(&s, f, "first", span)?, need_str(&p, f, "second", span)?, ci))
        }
        Function::Between => {
            let (s, l, r) = (arg(0)?, arg(1)?, arg(2)?);
            if s.is_null() || l.is_null() || r.is_null() {
                return Ok(SV::Null);
            }
            let greedy = match arg(3)? {
                SV::Null => false,
                SV::Bool(b) => b,
                other => return Err(EqlError::query(format!("fourth argument of [between] must be a boolean, found [{}]", other.type_name()), span)),
            };
            SV::Str(Cow::Owned(fx::between(
                need_str(&s, f, "first", span)?,
                need_str(&l, f, "second", span)?,
                need_str(&r, f, "third", span)?,
                greedy,
                ci,
            )))
        }
        Function::CidrMatch => match arg(0)? {
            SV::Null => SV::Null,
            SV::Str(s) => match fx::script_ip(&s) {
                Some(ip) => SV::Bool(fx::cidr_contains(cidr, &ip)),
                None => return Err(EqlError::query(format!("cidrMatch: '{s}' is not an IP string literal"), span)),
            },
            other => return Err(EqlError::query(format!("first argument of [cidrMatch] must be an ip, found [{}]", other.type_name()), span)),
        },
        Function::Concat => {
            let mut out = String::new();
            for i in 0..args.len() {
                let v = arg(i)?;
                match v.to_java_string() {
                    Some(s) => out.push_str(&s),
                    None => return Ok(SV::Null),
                }
            }
            SV::Str(Cow::Owned(out))
        }
        Function::Add | Function::Subtract | Function::Multiply | Function::Divide | Function::Modulo => {
            let op = match f {
                Function::Add => Arith::Add,
                Function::Subtract => Arith::Sub,
                Function::Multiply => Arith::Mul,
                Function::Divide => Arith::Div,
                _ => Arith::Mod,
            };
            fx::arith(op, &arg(0)?, &arg(1)?, span)?
        }
        Function::IndexOf => {
            let (s, sub) = (arg(0)?, arg(1)?);
            if s.is_null() || sub.is_null() {
                return Ok(SV::Null);
            }
            let start = need_long(&arg(2)?, f, "third", span)?.unwrap_or(0);
            match fx::index_of(need_str(&s, f, "first", span)?, need_str(&sub, f, "second", span)?, start, ci) {
                Some(i) => SV::Long(i),
                None => SV::Null,
            }
        }
        Function::Length => match arg(0)? {
            SV::Null => SV::Null,
            s => SV::Long(value::utf16_len(need_str(&s, f, "first", span)?) as i64),
        },
        Function::Number => match arg(0)? {
            SV::Null => SV::Null,
            s => {
                let base = need_long(&arg(1)?, f, "second", span)?;
                fx::to_number(need_str(&s, f, "first", span)?, base, span)?
            }
        },
        Function::String => match arg(0)? {
            SV::Null => SV::Null,
            SV::Str(s) => SV::Str(s),
            v => SV::Str(Cow::Owned(v.to_java_string().map(|c| c.into_owned()).unwrap_or_default())),
        },
        Function::Substring => {
            let s = arg(0)?;
            if s.is_null() {
                return Ok(SV::Null);
            }
            let start = need_long(&arg(1)?, f, "second", span)?;
            let end = need_long(&arg(2)?, f, "third", span)?;
            SV::Str(Cow::Owned(fx::substring(need_str(&s, f, "first", span)?, start, end)))
        }
    })
}
