//! Analysis: types a parsed query against a field mapping and compiles it into per-event tests.
//!
//! This is where Elasticsearch's verifier and query translator are mirrored: unknown fields and
//! field-vs-field comparisons are rejected with spans, `?field` absent from the mapping becomes `null`,
//! literals are coerced to the field's type (a non-numeric string against a `long` is a query error, raised
//! here because ES fails every search with it), each condition is split into pushdown and script
//! predicates (spec §4.1), `with runs=N` is expanded, and the result limit is derived from `size`,
//! `result_position` and the pipes. [`CompiledQuery`] implements [`Plan`] for the sequence engine.
//! When a query is refused, [`super::verify`] asks the same checks about every other part of the query,
//! so the error carries all of its problems (Elasticsearch's verifier reports them together).
//!
//! Limit rule (ES `LogicalPlanBuilder.visitStatement`): the request `size` becomes an implicit limit in the
//! direction of the **first** pipe (or of `result_position` when there is none), and limits combine by
//! taking the smaller count: `size=100` + `| head 3` → head 3, `| tail 200` → tail 100. A later pipe in
//! the *opposite* direction would need an offset ES keeps but [`Limit`] cannot express; esdetect then
//! uses the later pipe's direction with the smaller count (documented approximation).

use crate::ast::{self, CompareOp, Expr, FieldRef, Function, Literal, MatchOp, Span};
use crate::eval::{FieldAcc, Pred, SExpr, Script};
use crate::functions::{self as fx, Arith, Glob, SV};
use crate::mapping::Mapping;
use crate::plan::{KeyValue, Limit, Plan, Position, QueryOptions};
use crate::value::{coerce_literal, Val, ValueKind};
use crate::EqlError;
use crate::event::Event;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// One join-key part.
#[derive(Debug, Clone)]
struct KeyField {
    /// `None`: an optional field absent from the mapping (always null).
    acc: Option<FieldAcc>,
    optional: bool,
}

#[derive(Debug, Clone)]
struct CompiledStage {
    pred: Pred,
    keys: Vec<KeyField>,
}

/// A query ready to run: predicates, join keys, ordering fields and limit.
#[derive(Debug)]
pub struct CompiledQuery {
    sequence: bool,
    sample: bool,
    /// The request's `max_samples_per_key` (samples only).
    max_samples_per_key: usize,
    stages: Vec<CompiledStage>,
    /// Missing-event stages (`![...]`, expanded by `runs`) and where each sits among the positive stages.
    missing: Vec<CompiledStage>,
    missing_positions: Vec<usize>,
    until: Option<CompiledStage>,
    maxspan_ms: Option<i64>,
    limit: Limit,
    /// Cuts applied after `limit`, in order (the second and later pipes).
    then_limits: Vec<Limit>,
    timestamp: FieldAcc,
    tiebreaker: Option<FieldAcc>,
    malformed: AtomicU64,
    /// Events (per stage) left out because their join keys expand to more than
    /// [`crate::limits::MAX_JOIN_KEY_COMBINATIONS`] keys.
    keys_over_limit: AtomicU64,
    /// Event evaluations left out because a predicate would try more than
    /// [`crate::limits::MAX_PREDICATE_COMBINATIONS`] value combinations.
    predicates_over_limit: AtomicU64,
}

/// Static type of an expression, for verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Num,
    Bool,
    Ip,
    Date,
    Version,
    Null,
    Any,
}

fn ty_of_kind(k: &ValueKind) -> Ty {
    match k {
        ValueKind::Keyword => Ty::Str,
        ValueKind::Long | ValueKind::Double => Ty::Num,
        ValueKind::Bool => Ty::Bool,
        ValueKind::Ip => Ty::Ip,
        ValueKind::Date | ValueKind::DateNanos => Ty::Date,
        ValueKind::Version => Ty::Version,
        _ => Ty::Any,
    }
}

fn ty_name(t: Ty) -> &'static str {
    match t {
        Ty::Str => "keyword",
        Ty::Num => "number",
        Ty::Bool => "boolean",
        Ty::Ip => "ip",
        Ty::Date => "date",
        Ty::Version => "version",
        Ty::Null => "null",
        Ty::Any => "unknown",
    }
}

/// An operand as seen by the pushdown/script split.
enum Operand<'e> {
    Field(FieldAcc),
    /// A literal, including `?field` absent from the mapping (null).
    Lit(Cow<'e, Literal>),
    Other,
}

pub(super) struct Compiler<'m> {
    mapping: &'m Mapping,
}

fn lit_to_sv(l: &Literal) -> SV<'static> {
    match l {
        Literal::Null => SV::Null,
        Literal::Bool(b) => SV::Bool(*b),
        Literal::Long(v) => SV::Long(*v),
        Literal::Double(d) => SV::Double(*d),
        Literal::String(s) => SV::Str(Cow::Owned(s.clone())),
    }
}

fn swap(op: CompareOp) -> CompareOp {
    match op {
        CompareOp::Lt => CompareOp::Gt,
        CompareOp::Lte => CompareOp::Gte,
        CompareOp::Gt => CompareOp::Lt,
        CompareOp::Gte => CompareOp::Lte,
        o => o,
    }
}

impl<'m> Compiler<'m> {
    /// `Ok(None)`: optional field unknown to the mapping (the literal `null`).
    pub(super) fn field(&self, f: &FieldRef) -> Result<Option<FieldAcc>, EqlError> {
        match self.mapping.resolve(&f.path) {
            Some(r) => {
                if let ValueKind::Unsupported(what) = r.kind {
                    return Err(EqlError::verification(
                        format!("Cannot use field [{}] of type [{}] in EQL ({what})", f.path,
                            r.declared.map(|d| d.es_name()).unwrap_or_default()),
                        f.span,
                    ));
                }
                Ok(Some(FieldAcc {
                    name: f.path.clone(),
                    source_path: r.source_path,
                    kind: r.kind,
                    ignore_above: r.ignore_above,
                    null_value: r.null_value,
                }))
            }
            None if f.optional => Ok(None),
            None => {
                let similar = super::verify::similar_fields(&f.path, self.mapping);
                let message = match super::verify::did_you_mean(&similar) {
                    none if none.is_empty() => format!(
                        "Unknown column [{0}]: the field is not in the mapping. Check the spelling, write ?{0} if it may be absent, or supply the index mapping",
                        f.path
                    ),
                    dym => format!(
                        "Unknown column [{0}]{dym} The field is not in the mapping; write ?{0} if it may be absent, or supply the index mapping",
                        f.path
                    ),
                };
                Err(EqlError::verification(message, f.span))
            }
        }
    }

    pub(super) fn exact_field(&self, acc: &FieldAcc, span: Span) -> Result<(), EqlError> {
        if acc.kind == ValueKind::Text {
            return Err(EqlError::verification(
                format!("Field [{}] is a text field without a keyword sub-field; EQL can only compare exact (keyword) values", acc.name),
                span,
            ));
        }
        Ok(())
    }

    fn operand<'e>(&self, e: &'e Expr) -> Result<Operand<'e>, EqlError> {
        Ok(match e {
            Expr::Literal(l, _) => Operand::Lit(Cow::Borrowed(l)),
            Expr::Field(f) => match self.field(f)? {
                Some(acc) => Operand::Field(acc),
                None => Operand::Lit(Cow::Owned(Literal::Null)),
            },
            _ => Operand::Other,
        })
    }

    pub(super) fn pred(&self, e: &Expr) -> Result<Pred, EqlError> {
        match e {
            Expr::And(a, b) => {
                let mut v = match (self.pred(a)?, self.pred(b)?) {
                    (Pred::And(mut x), Pred::And(y)) => {
                        x.extend(y);
                        x
                    }
                    (Pred::And(mut x), y) => {
                        x.push(y);
                        x
                    }
                    (x, y) => vec![x, y],
                };
                sort_conjuncts(&mut v);
                Ok(Pred::And(v))
            }
            Expr::Or(a, b) => Ok(match (self.pred(a)?, self.pred(b)?) {
                (Pred::Or(mut x), y) => {
                    x.push(y);
                    Pred::Or(x)
                }
                (x, y) => Pred::Or(vec![x, y]),
            }),
            Expr::Not(x, _) => Ok(Pred::Not(Box::new(self.pred(x)?))),
            Expr::Literal(Literal::Bool(b), _) => Ok(Pred::Const(*b)),
            Expr::Literal(Literal::Null, _) => Ok(Pred::Const(false)),
            Expr::Literal(l, span) => Err(EqlError::verification(
                format!("Condition expression needs to be boolean, found [{l:?}]"),
                *span,
            )),
            Expr::Field(f) => match self.field(f)? {
                None => Ok(Pred::Const(false)),
                Some(acc) if matches!(acc.kind, ValueKind::Bool | ValueKind::Inferred) => {
                    Ok(Pred::Cmp(acc, CompareOp::Eq, Val::Bool(true)))
                }
                Some(acc) => Err(EqlError::verification(
                    format!("Condition expression needs to be boolean, found [{}] of type [{}]", f.path, ty_name(ty_of_kind(&acc.kind))),
                    f.span,
                )),
            },
            Expr::Compare { op, left, right, span } => self.compare_pred(e, op, left, right, span),
            Expr::Match { op, case_insensitive, expr, patterns, span } => self.match_pred(e, op, case_insensitive, expr, patterns, span),
            Expr::In { expr, values, case_insensitive, negated, span } => self.in_pred(expr, values, case_insensitive, negated, span),
            Expr::Call { function, case_insensitive, args, span } => self.call_pred(e, function, case_insensitive, args, span),
            Expr::Arith { span, .. } | Expr::Neg(_, span) => Err(EqlError::verification(
                "Condition expression needs to be boolean, found an arithmetic expression",
                *span,
            )),
        }
    }

    /// A comparison between a field and a literal, or a script when either side is computed.
    fn compare_pred(&self, e: &Expr, op: &CompareOp, left: &Expr, right: &Expr, span: &Span) -> Result<Pred, EqlError> {
        match (self.operand(left)?, self.operand(right)?) {
            (Operand::Field(a), Operand::Field(_)) => {
                let _ = a;
                Err(EqlError::verification(
                    "Comparisons against fields are not (currently) supported; compare a field with a literal",
                    *span,
                ))
            }
            (Operand::Field(acc), Operand::Lit(l)) => self.field_cmp(acc, *op, &l, *span),
            (Operand::Lit(l), Operand::Field(acc)) => self.field_cmp(acc, swap(*op), &l, *span),
            _ => self.script(e),
        }
    }

    /// `:`, `like`, `regex` (and their `~` forms): globs or regexes on a field, a script otherwise.
    fn match_pred(&self, e: &Expr, op: &MatchOp, case_insensitive: &bool, expr: &Expr, patterns: &[Expr], span: &Span) -> Result<Pred, EqlError> {
        let lits: Option<Vec<&str>> = patterns
            .iter()
            .map(|p| match p {
                Expr::Literal(Literal::String(s), _) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        let Some(lits) = lits else {
            return Err(EqlError::verification(
                "patterns of :, like and regex must be string literals",
                *span,
            ));
        };
        match self.operand(expr)? {
            Operand::Field(acc) => {
                self.exact_field(&acc, *span)?;
                if !matches!(acc.kind, ValueKind::Keyword | ValueKind::Inferred) {
                    if *op == MatchOp::Seq {
                        // `:` on a non-string field is plain equality.
                        let mut alts = Vec::new();
                        for l in &lits {
                            alts.push(self.field_cmp(acc.clone(), CompareOp::Eq, &Literal::String(l.to_string()), *span)?);
                        }
                        return Ok(Pred::Or(alts));
                    }
                    return Err(EqlError::verification(
                        format!("[{}] needs a string field, found [{}] of type [{}]",
                            if *op == MatchOp::Like { "like" } else { "regex" }, acc.name, ty_name(ty_of_kind(&acc.kind))),
                        *span,
                    ));
                }
                Ok(match op {
                    MatchOp::Regex => Pred::Regexes(
                        acc,
                        lits.iter().map(|p| fx::lucene_regex(p, *case_insensitive, *span)).collect::<Result<_, _>>()?,
                    ),
                    MatchOp::Seq => Pred::Globs(acc, lits.iter().map(|p| Glob::new(p, true)).collect()),
                    MatchOp::Like => Pred::Globs(acc, lits.iter().map(|p| Glob::new(p, *case_insensitive)).collect()),
                })
            }
            Operand::Lit(l) if matches!(*l, Literal::Null) => Ok(Pred::Const(false)),
            _ => self.script(e),
        }
    }

    /// `in`, `in~`, `not in`: a set test on a field, a script otherwise.
    fn in_pred(&self, expr: &Expr, values: &[Expr], case_insensitive: &bool, negated: &bool, span: &Span) -> Result<Pred, EqlError> {
        let lits: Option<Vec<Literal>> = values
            .iter()
            .map(|v| match v {
                Expr::Literal(l, _) => Some(l.clone()),
                Expr::Field(f) if self.mapping.resolve(&f.path).is_none() && f.optional => Some(Literal::Null),
                _ => None,
            })
            .collect();
        let Some(lits) = lits else {
            return Err(EqlError::verification(
                "Comparisons against fields are not (currently) supported; the values of in (...) must be literals",
                *span,
            ));
        };
        let inner = match self.operand(expr)? {
            Operand::Field(acc) => {
                self.exact_field(&acc, *span)?;
                if *case_insensitive && matches!(acc.kind, ValueKind::Keyword | ValueKind::Inferred) {
                    let mut globs = Vec::new();
                    for l in &lits {
                        if let Some(Val::Str(s)) = coerce_literal(&ValueKind::Keyword, l, &acc.name, *span)? {
                            globs.push(Glob::literal(&s, true));
                        }
                    }
                    Pred::Globs(acc, globs)
                } else {
                    let mut vals = Vec::new();
                    for l in &lits {
                        if let Some(v) = coerce_literal(&acc.kind, l, &acc.name, *span)? {
                            vals.push(v);
                        }
                    }
                    Pred::In(acc, vals)
                }
            }
            _ => {
                let mut slots = Vec::new();
                let (x, _) = self.sexpr(expr, &mut slots)?;
                let s = Script {
                    expr: SExpr::In(Box::new(x), lits.iter().map(lit_to_sv).collect(), *case_insensitive),
                    slots,
                };
                Pred::Script(Box::new(s))
            }
        };
        Ok(if *negated { Pred::Not(Box::new(inner)) } else { inner })
    }

    /// `startsWith`, `endsWith`, `stringContains` and `cidrMatch` on a field with literal arguments become
    /// pushdown-able tests; any other call is a script.
    fn call_pred(&self, e: &Expr, function: &Function, case_insensitive: &bool, args: &[Expr], span: &Span) -> Result<Pred, EqlError> {
        self.check_call(*function, *case_insensitive, args, *span)?;
        let rest_lits: Option<Vec<&Literal>> = args
            .iter()
            .skip(1)
            .map(|a| match a {
                Expr::Literal(l, _) => Some(l),
                _ => None,
            })
            .collect();
        if let (Some(Expr::Field(_)), Some(rest)) = (args.first(), rest_lits) {
            let first = self.operand(&args[0])?;
            if let Operand::Field(acc) = first {
                match function {
                    Function::StartsWith | Function::EndsWith | Function::StringContains => {
                        self.exact_field(&acc, *span)?;
                        if !matches!(acc.kind, ValueKind::Keyword | ValueKind::Inferred) {
                            return Err(EqlError::verification(
                                format!("first argument of [{}] must be [keyword], found [{}] of type [{}]",
                                    function.name(), acc.name, ty_name(ty_of_kind(&acc.kind))),
                                args[0].span(),
                            ));
                        }
                        let Literal::String(p) = rest[0] else {
                            return Ok(Pred::Const(false));
                        };
                        let ci = *case_insensitive;
                        let g = match function {
                            Function::StartsWith => Glob::prefix(p, ci),
                            // Pushdown quirk (§7.1): the literal is not escaped.
                            Function::EndsWith => Glob::lucene_wildcard(p, true, false, ci),
                            _ => Glob::lucene_wildcard(p, true, true, ci),
                        };
                        return Ok(Pred::Globs(acc, vec![g]));
                    }
                    Function::CidrMatch => {
                        if !matches!(acc.kind, ValueKind::Ip | ValueKind::Inferred) {
                            return Err(EqlError::verification(
                                format!("first argument of [cidrMatch] must be [ip], found [{}] of type [{}]",
                                    acc.name, ty_name(ty_of_kind(&acc.kind))),
                                args[0].span(),
                            ));
                        }
                        let blocks = self.cidr_blocks(&args[1..])?;
                        return Ok(Pred::Cidr(acc, blocks));
                    }
                    _ => {}
                }
            }
        }
        self.script(e)
    }

    fn field_cmp(&self, acc: FieldAcc, op: CompareOp, lit: &Literal, span: Span) -> Result<Pred, EqlError> {
        self.exact_field(&acc, span)?;
        if matches!(lit, Literal::Null) {
            return Ok(match op {
                CompareOp::Eq => Pred::Not(Box::new(Pred::Exists(acc))),
                CompareOp::NotEq => Pred::Exists(acc),
                _ => Pred::Const(false),
            });
        }
        let v = coerce_literal(&acc.kind, lit, &acc.name, span)?.unwrap_or(Val::Bool(false));
        Ok(match op {
            CompareOp::NotEq => Pred::Not(Box::new(Pred::Cmp(acc, CompareOp::Eq, v))),
            op => Pred::Cmp(acc, op, v),
        })
    }

    fn cidr_blocks(&self, args: &[Expr]) -> Result<Vec<ipnet::Ipv6Net>, EqlError> {
        let mut blocks = Vec::new();
        for a in args {
            match a {
                Expr::Literal(Literal::String(s), sp) => match fx::parse_cidr(s) {
                    Some(b) => blocks.push(b),
                    None => {
                        return Err(EqlError::verification(
                            format!("cidrMatch: \"{s}\" is not a valid CIDR block or IP address"),
                            *sp,
                        ))
                    }
                },
                other => {
                    return Err(EqlError::verification(
                        "cidrMatch: the address blocks must be string literals",
                        other.span(),
                    ))
                }
            }
        }
        Ok(blocks)
    }

    fn check_call(&self, f: Function, ci: bool, args: &[Expr], span: Span) -> Result<(), EqlError> {
        let (lo, hi) = f.arity();
        if args.len() < lo || args.len() > hi {
            return Err(EqlError::verification(
                format!("function [{}] takes {} argument(s), found {}", f.name(),
                    if hi == usize::MAX { format!("at least {lo}") } else if lo == hi { lo.to_string() } else { format!("{lo} to {hi}") },
                    args.len()),
                span,
            ));
        }
        if ci && !f.allows_insensitive() {
            return Err(EqlError::verification(format!("function [{}] has no case-insensitive form {}~", f.name(), f.name()), span));
        }
        Ok(())
    }

    fn script(&self, e: &Expr) -> Result<Pred, EqlError> {
        let mut slots = Vec::new();
        let (expr, ty) = self.sexpr(e, &mut slots)?;
        if !matches!(ty, Ty::Bool | Ty::Any | Ty::Null) {
            return Err(EqlError::verification(
                format!("Condition expression needs to be boolean, found [{}]", ty_name(ty)),
                e.span(),
            ));
        }
        Ok(Pred::Script(Box::new(Script { expr, slots })))
    }

    fn require(&self, t: Ty, want: &[Ty], f: Function, pos: &str, arg: &Expr) -> Result<(), EqlError> {
        if matches!(t, Ty::Any | Ty::Null) || want.contains(&t) {
            return Ok(());
        }
        Err(EqlError::verification(
            format!("{pos} argument of [{}] must be [{}], found [{}]", f.name(),
                want.iter().map(|w| ty_name(*w)).collect::<Vec<_>>().join(" or "), ty_name(t)),
            arg.span(),
        ))
    }

    fn sexpr(&self, e: &Expr, slots: &mut Vec<FieldAcc>) -> Result<(SExpr, Ty), EqlError> {
        Ok(match e {
            Expr::Literal(l, _) => (
                SExpr::Lit(lit_to_sv(l)),
                match l {
                    Literal::Null => Ty::Null,
                    Literal::Bool(_) => Ty::Bool,
                    Literal::Long(_) | Literal::Double(_) => Ty::Num,
                    Literal::String(_) => Ty::Str,
                },
            ),
            Expr::Field(f) => match self.field(f)? {
                None => (SExpr::Lit(SV::Null), Ty::Null),
                Some(acc) => {
                    self.exact_field(&acc, f.span)?;
                    let ty = ty_of_kind(&acc.kind);
                    slots.push(acc);
                    (SExpr::Slot(slots.len() - 1), ty)
                }
            },
            Expr::And(a, b) => (SExpr::And(Box::new(self.sexpr(a, slots)?.0), Box::new(self.sexpr(b, slots)?.0)), Ty::Bool),
            Expr::Or(a, b) => (SExpr::Or(Box::new(self.sexpr(a, slots)?.0), Box::new(self.sexpr(b, slots)?.0)), Ty::Bool),
            Expr::Not(x, _) => (SExpr::Not(Box::new(self.sexpr(x, slots)?.0)), Ty::Bool),
            Expr::Compare { op, left, right, span } => self.compare_sexpr(op, left, right, span, slots)?,
            Expr::Match { op, case_insensitive, expr, patterns, span } => self.match_sexpr(op, case_insensitive, expr, patterns, span, slots)?,
            Expr::In { expr, values, case_insensitive, negated, span } => {
                let (x, _) = self.sexpr(expr, slots)?;
                let mut lits = Vec::new();
                for v in values {
                    match v {
                        Expr::Literal(l, _) => lits.push(lit_to_sv(l)),
                        _ => return Err(EqlError::verification("the values of in (...) must be literals", *span)),
                    }
                }
                let inner = SExpr::In(Box::new(x), lits, *case_insensitive);
                (if *negated { SExpr::Not(Box::new(inner)) } else { inner }, Ty::Bool)
            }
            Expr::Arith { op, left, right, span } => self.arith_sexpr(op, left, right, span, slots)?,
            Expr::Neg(x, span) => (SExpr::Neg(Box::new(self.sexpr(x, slots)?.0), *span), Ty::Num),
            Expr::Call { function, case_insensitive, args, span } => self.call_sexpr(function, case_insensitive, args, span, slots)?,
        })
    }

    /// A comparison inside a script; `== null` / `!= null` become null tests.
    fn compare_sexpr(&self, op: &CompareOp, left: &Expr, right: &Expr, span: &Span, slots: &mut Vec<FieldAcc>) -> Result<(SExpr, Ty), EqlError> {
        Ok({
            let (l, lt) = self.sexpr(left, slots)?;
            let (r, rt) = self.sexpr(right, slots)?;
            let field_like = |x: &Expr| matches!(x, Expr::Field(_)) ;
            if field_like(left) && field_like(right) && lt != Ty::Null && rt != Ty::Null {
                return Err(EqlError::verification(
                    "Comparisons against fields are not (currently) supported; compare a field with a literal",
                    *span,
                ));
            }
            match (op, lt, rt) {
                (CompareOp::Eq, _, Ty::Null) => (SExpr::IsNull(Box::new(l), false), Ty::Bool),
                (CompareOp::Eq, Ty::Null, _) => (SExpr::IsNull(Box::new(r), false), Ty::Bool),
                (CompareOp::NotEq, _, Ty::Null) => (SExpr::IsNull(Box::new(l), true), Ty::Bool),
                (CompareOp::NotEq, Ty::Null, _) => (SExpr::IsNull(Box::new(r), true), Ty::Bool),
                _ => (SExpr::Cmp(*op, Box::new(l), Box::new(r)), Ty::Bool),
            }
        })
    }

    /// Pattern matching inside a script; the operand must be a string.
    fn match_sexpr(&self, op: &MatchOp, case_insensitive: &bool, expr: &Expr, patterns: &[Expr], span: &Span, slots: &mut Vec<FieldAcc>) -> Result<(SExpr, Ty), EqlError> {
        Ok({
            let (x, t) = self.sexpr(expr, slots)?;
            if !matches!(t, Ty::Str | Ty::Any | Ty::Null) {
                return Err(EqlError::verification(format!("pattern matching needs a string, found [{}]", ty_name(t)), *span));
            }
            let mut lits = Vec::new();
            for p in patterns {
                match p {
                    Expr::Literal(Literal::String(s), _) => lits.push(s.as_str()),
                    other => return Err(EqlError::verification("patterns of :, like and regex must be string literals", other.span())),
                }
            }
            match op {
                MatchOp::Regex => (
                    SExpr::Regexes(Box::new(x), lits.iter().map(|p| fx::lucene_regex(p, *case_insensitive, *span)).collect::<Result<_, _>>()?, *span),
                    Ty::Bool,
                ),
                MatchOp::Seq => (SExpr::Globs(Box::new(x), lits.iter().map(|p| Glob::new(p, true)).collect(), *span), Ty::Bool),
                MatchOp::Like => (SExpr::Globs(Box::new(x), lits.iter().map(|p| Glob::new(p, *case_insensitive)).collect(), *span), Ty::Bool),
            }
        })
    }

    /// Infix arithmetic inside a script; both sides must be numbers.
    fn arith_sexpr(&self, op: &ast::ArithOp, left: &Expr, right: &Expr, span: &Span, slots: &mut Vec<FieldAcc>) -> Result<(SExpr, Ty), EqlError> {
        Ok({
            let (l, lt) = self.sexpr(left, slots)?;
            let (r, rt) = self.sexpr(right, slots)?;
            for (t, x) in [(lt, left), (rt, right)] {
                if !matches!(t, Ty::Num | Ty::Any | Ty::Null) {
                    return Err(EqlError::verification(format!("arithmetic needs numbers, found [{}]", ty_name(t)), x.span()));
                }
            }
            let op = match op {
                ast::ArithOp::Add => Arith::Add,
                ast::ArithOp::Sub => Arith::Sub,
                ast::ArithOp::Mul => Arith::Mul,
                ast::ArithOp::Div => Arith::Div,
                ast::ArithOp::Mod => Arith::Mod,
            };
            (SExpr::Arith(op, Box::new(l), Box::new(r), *span), Ty::Num)
        })
    }

    /// A function call inside a script: its arguments compiled, their types checked as Elasticsearch does.
    fn call_sexpr(&self, function: &Function, case_insensitive: &bool, args: &[Expr], span: &Span, slots: &mut Vec<FieldAcc>) -> Result<(SExpr, Ty), EqlError> {
        let f = *function;
        self.check_call(f, *case_insensitive, args, *span)?;
        let mut cargs = Vec::new();
        let mut tys = Vec::new();
        let upto = if f == Function::CidrMatch { 1 } else { args.len() };
        for a in &args[..upto] {
            let (x, t) = self.sexpr(a, slots)?;
            cargs.push(x);
            tys.push(t);
        }
        let (ret, cidr) = self.call_type(f, &tys, args)?;
        Ok((SExpr::Call { function: f, ci: *case_insensitive, args: cargs, span: *span, cidr }, ret))
    }

    /// The result type of a call after checking its arguments' types `tys` (the compiled ones: only the
    /// first of `cidrMatch`, whose blocks are parsed here).
    fn call_type(&self, f: Function, tys: &[Ty], args: &[Expr]) -> Result<(Ty, Vec<ipnet::Ipv6Net>), EqlError> {
        const POS: [&str; 5] = ["first", "second", "third", "fourth", "fifth"];
        let pos = |i: usize| POS.get(i).copied().unwrap_or("an");
        let mut cidr = Vec::new();
        let ret = match f {
            Function::StartsWith | Function::EndsWith | Function::StringContains => {
                for i in 0..2 {
                    self.require(tys[i], &[Ty::Str], f, pos(i), &args[i])?;
                }
                Ty::Bool
            }
            Function::Between => {
                for i in 0..3 {
                    self.require(tys[i], &[Ty::Str], f, pos(i), &args[i])?;
                }
                if args.len() > 3 {
                    self.require(tys[3], &[Ty::Bool], f, pos(3), &args[3])?;
                }
                if args.len() > 4 {
                    return Err(EqlError::verification(
                        "between: a fifth (case_sensitive) argument is not supported; use between~ for case-insensitive matching",
                        args[4].span(),
                    ));
                }
                Ty::Str
            }
            Function::CidrMatch => {
                self.require(tys[0], &[Ty::Ip], f, "first", &args[0])?;
                cidr = self.cidr_blocks(&args[1..])?;
                Ty::Bool
            }
            Function::Concat => Ty::Str,
            Function::Add | Function::Subtract | Function::Multiply | Function::Divide | Function::Modulo => {
                for i in 0..2 {
                    self.require(tys[i], &[Ty::Num], f, pos(i), &args[i])?;
                }
                Ty::Num
            }
            Function::IndexOf => {
                for i in 0..2 {
                    self.require(tys[i], &[Ty::Str], f, pos(i), &args[i])?;
                }
                if args.len() > 2 {
                    self.require(tys[2], &[Ty::Num], f, pos(2), &args[2])?;
                }
                Ty::Num
            }
            Function::Length => {
                self.require(tys[0], &[Ty::Str], f, "first", &args[0])?;
                Ty::Num
            }
            Function::Number => {
                self.require(tys[0], &[Ty::Str], f, "first", &args[0])?;
                if args.len() > 1 {
                    self.require(tys[1], &[Ty::Num], f, "second", &args[1])?;
                }
                Ty::Num
            }
            Function::String => Ty::Str,
            Function::Substring => {
                self.require(tys[0], &[Ty::Str], f, "first", &args[0])?;
                for i in 1..args.len() {
                    self.require(tys[i], &[Ty::Num], f, pos(i), &args[i])?;
                }
                Ty::Str
            }
        };
        Ok((ret, cidr))
    }

    fn stage(&self, filter: &ast::EventFilter, by: &[&FieldRef], opts: &QueryOptions) -> Result<CompiledStage, EqlError> {
        let cond = self.pred(&filter.condition)?;
        let pred = match &filter.category {
            None => cond,
            Some(cat) => {
                let acc = match self.mapping.resolve(&opts.event_category_field) {
                    Some(r) => FieldAcc {
                        name: opts.event_category_field.clone(),
                        source_path: r.source_path,
                        kind: if r.kind == ValueKind::Inferred { ValueKind::Keyword } else { r.kind },
                        ignore_above: r.ignore_above,
                        null_value: r.null_value,
                    },
                    None => FieldAcc {
                        name: opts.event_category_field.clone(),
                        source_path: opts.event_category_field.clone(),
                        kind: ValueKind::Keyword,
                        ignore_above: None,
                        null_value: None,
                    },
                };
                let cat_pred = Pred::Cmp(acc, CompareOp::Eq, Val::Str(Cow::Owned(cat.clone())));
                let mut v = match cond {
                    Pred::Const(true) => return Ok(self.with_keys(cat_pred, by)?),
                    Pred::And(mut v) => {
                        v.insert(0, cat_pred);
                        v
                    }
                    other => vec![cat_pred, other],
                };
                sort_conjuncts(&mut v);
                Pred::And(v)
            }
        };
        self.with_keys(pred, by)
    }

    fn with_keys(&self, pred: Pred, by: &[&FieldRef]) -> Result<CompiledStage, EqlError> {
        let mut keys = Vec::new();
        for k in by {
            let acc = self.field(k)?;
            if let Some(a) = &acc {
                self.exact_field(a, k.span)?;
            }
            keys.push(KeyField { acc, optional: k.optional });
        }
        Ok(CompiledStage { pred, keys })
    }
}

/// A necessary condition for an event to matter to one stage of a query: one of its values of `field` (a
/// keyword field that says which event a document is) equals one of `values` — exactly, or ignoring ASCII
/// case when `ascii_ci` (then `values` are lower case). An event that meets no stage's gate matches no
/// stage, so a pass over many rules can skip offering it to this query at all.
#[derive(Debug, Clone)]
pub struct Gate {
    pub field: FieldAcc,
    pub values: Vec<String>,
    pub ascii_ci: bool,
}

/// The conjuncts of a stage's predicate.
fn conjuncts(pred: &Pred) -> &[Pred] {
    match pred {
        Pred::And(v) => v,
        p => std::slice::from_ref(p),
    }
}

/// The gate of one stage: its first conjunct that is an equality test on a discriminating keyword field.
fn stage_gate(pred: &Pred) -> Option<Gate> {
    let gateable = |acc: &FieldAcc| acc.kind == ValueKind::Keyword && DISCRIMINATING_FIELDS.contains(&acc.name.as_str());
    conjuncts(pred).iter().find_map(|c| gate_of(c, &gateable))
}

/// Every conjunct of a stage that is an exact equality test on a keyword or ip field (any such field): an
/// event that matches the stage meets all of them. An ip gate's values are the addresses' IPv6 text.
fn stage_gates(pred: &Pred) -> Vec<Gate> {
    let gateable = |acc: &FieldAcc| matches!(acc.kind, ValueKind::Keyword | ValueKind::Ip);
    conjuncts(pred).iter().filter_map(|c| gate_of(c, &gateable)).collect()
}

/// `c` as a gate, when it is an exact equality test on a field `gateable` accepts.
fn gate_of(c: &Pred, gateable: &dyn Fn(&FieldAcc) -> bool) -> Option<Gate> {
    match c {
        Pred::Cmp(acc, CompareOp::Eq, Val::Str(s)) if gateable(acc) => {
            Some(Gate { field: acc.clone(), values: vec![s.to_string()], ascii_ci: false })
        }
        Pred::Cmp(acc, CompareOp::Eq, Val::Ip(ip)) if acc.kind == ValueKind::Ip && gateable(acc) => {
            Some(Gate { field: acc.clone(), values: vec![ip.to_string()], ascii_ci: false })
        }
        Pred::In(acc, lits) if gateable(acc) => {
            let values = lits.iter().map(|l| if let Val::Str(s) = l { Some(s.to_string()) } else { None }).collect::<Option<_>>()?;
            Some(Gate { field: acc.clone(), values, ascii_ci: false })
        }
        Pred::Globs(acc, globs) if gateable(acc) && !globs.is_empty() => {
            let ci = globs[0].is_ci();
            let mut values = Vec::with_capacity(globs.len());
            for g in globs {
                let text = g.exact_text()?;
                // Only plain equality, one kind of case handling, and ASCII when case is ignored (the
                // matcher's ASCII fast path; other text folds by Unicode rules).
                if g.is_ci() != ci || (ci && !text.is_ascii()) {
                    return None;
                }
                values.push(if ci { text.to_ascii_lowercase() } else { text.to_string() });
            }
            Some(Gate { field: acc.clone(), values, ascii_ci: ci })
        }
        _ => None,
    }
}

/// ECS fields that say *which* event a document is; in Windows data a test on them rejects most documents.
const DISCRIMINATING_FIELDS: &[&str] = &["event.code", "event.action", "winlog.event_id", "event.category", "event.type"];

/// Evaluation order of a conjunct (lower first). Conjuncts of an `and` are evaluated independently and
/// the non-script ones are pure and infallible, so their order changes nothing but speed: tests on the
/// fields that identify the event type go first (they reject most documents with one lookup), then other
/// index-like tests, then negations and disjunctions. Scripts stay last and keep their written order,
/// so which script error (if any) a document raises is unchanged.
fn conjunct_rank(p: &Pred) -> u8 {
    match p {
        Pred::Const(false) => 0,
        Pred::Cmp(acc, CompareOp::Eq, _) | Pred::In(acc, _) | Pred::Globs(acc, _)
            if DISCRIMINATING_FIELDS.contains(&acc.name.as_str()) =>
        {
            if acc.name == "event.category" || acc.name == "event.type" {
                2
            } else {
                1
            }
        }
        Pred::Cmp(..) | Pred::In(..) | Pred::Globs(..) | Pred::Cidr(..) | Pred::Regexes(..) => 3,
        Pred::Script(_) => 6,
        Pred::Exists(_) => 4,
        _ => 5,
    }
}

/// Sorts the conjuncts of an `and` by [`conjunct_rank`] (stable: equal ranks keep their written order).
fn sort_conjuncts(v: &mut [Pred]) {
    v.sort_by_key(conjunct_rank);
}

fn ordering_field(mapping: &Mapping, name: &str, default_kind: ValueKind) -> FieldAcc {
    match mapping.resolve(name) {
        Some(r) if r.kind != ValueKind::Inferred => FieldAcc {
            name: name.to_string(),
            source_path: r.source_path,
            kind: r.kind,
            ignore_above: r.ignore_above,
            null_value: r.null_value,
        },
        other => FieldAcc {
            name: name.to_string(),
            source_path: other.map(|r| r.source_path).unwrap_or_else(|| name.to_string()),
            kind: default_kind,
            ignore_above: None,
            null_value: None,
        },
    }
}

impl CompiledQuery {
    /// Verifies `q` against `mapping` and compiles it. Verification errors carry the span of the culprit;
    /// literal coercion failures are `Query` errors (ES would fail the search).
    ///
    /// The error is the first problem (in the order the compiler meets them); when the verifier finds more,
    /// they are in [`EqlError::also`], so a user can fix them all in one go.
    pub fn compile(q: &ast::Query, mapping: &Mapping, opts: &QueryOptions) -> Result<CompiledQuery, EqlError> {
        Self::compile_first(q, mapping, opts).map_err(|mut first| {
            if first.kind == crate::error::ErrorKind::Verification || first.kind == crate::error::ErrorKind::Query {
                let others = super::verify::problems(&Compiler { mapping }, q);
                first.also = others.into_iter().filter(|e| e.span != first.span || e.message != first.message).collect();
            }
            first
        })
    }

    fn compile_first(q: &ast::Query, mapping: &Mapping, opts: &QueryOptions) -> Result<CompiledQuery, EqlError> {
        let c = Compiler { mapping };
        let mut missing = Vec::new();
        let mut missing_positions = Vec::new();
        let mut sample = false;
        let (sequence, stages, until, maxspan_ms) = match &q.body {
            ast::QueryBody::Event(f) => (false, vec![c.stage(f, &[], opts)?], None, None),
            ast::QueryBody::Sample(s) => {
                sample = true;
                let mut stages = Vec::new();
                for st in &s.stages {
                    let by: Vec<&FieldRef> = s.by.iter().chain(st.by.iter()).collect();
                    stages.push(c.stage(&st.filter, &by, opts)?);
                }
                if let Some(e) = super::verify::sample_keys(s) {
                    return Err(e);
                }
                (false, stages, None, None)
            }
            ast::QueryBody::Sequence(s) => {
                let mut stages = Vec::new();
                for st in &s.stages {
                    if let Some(e) = super::verify::runs(st) {
                        return Err(e);
                    }
                    let by: Vec<&FieldRef> = s.by.iter().chain(st.by.iter()).collect();
                    let compiled = c.stage(&st.filter, &by, opts)?;
                    for _ in 0..st.runs {
                        if st.missing {
                            missing_positions.push(stages.len());
                            missing.push(compiled.clone());
                        } else {
                            stages.push(compiled.clone());
                        }
                    }
                }
                if let Some(e) = super::verify::needs_positive_stage(s).or_else(|| super::verify::needs_maxspan(s)) {
                    return Err(e);
                }
                let until = match &s.until {
                    Some(u) => {
                        let by: Vec<&FieldRef> = s.by.iter().chain(u.by.iter()).collect();
                        Some(c.stage(&u.filter, &by, opts)?)
                    }
                    None => None,
                };
                if let Some(e) = super::verify::sequence_keys(s) {
                    return Err(e);
                }
                (true, stages, until, s.maxspan_ms)
            }
        };
        // Limits: the first pipe sets the direction of the implicit `size` limit (counts combine by min);
        // every later pipe cuts the result of the one before (`| head 4 | tail 2` = results 3 and 4).
        let pipe_limit = |p: &ast::Pipe| match p {
            ast::Pipe::Head(n) => Limit { position: Position::Head, count: usize::try_from(*n).unwrap_or(usize::MAX) },
            ast::Pipe::Tail(n) => Limit { position: Position::Tail, count: usize::try_from(*n).unwrap_or(usize::MAX) },
        };
        let mut limit = Limit { position: opts.position, count: opts.size };
        let mut then_limits = Vec::new();
        if let Some((first, rest)) = q.pipes.split_first() {
            let first = pipe_limit(first);
            limit = Limit { position: first.position, count: limit.count.min(first.count) };
            then_limits = rest.iter().map(pipe_limit).collect();
        }
        let timestamp = ordering_field(mapping, &opts.timestamp_field, ValueKind::Date);
        let tiebreaker = opts.tiebreaker_field.as_deref().map(|t| ordering_field(mapping, t, ValueKind::Inferred));
        Ok(CompiledQuery {
            sequence,
            sample,
            max_samples_per_key: opts.max_samples_per_key.max(1),
            stages,
            missing,
            missing_positions,
            until,
            maxspan_ms,
            limit,
            then_limits,
            timestamp,
            tiebreaker,
            malformed: AtomicU64::new(0),
            keys_over_limit: AtomicU64::new(0),
            predicates_over_limit: AtomicU64::new(0),
        })
    }

    /// How many document values were skipped because the mapping could not index them (e.g. `"0x1c0"` in a
    /// `long` field, an invalid IP) — ES would have rejected or ignored them; worth a warning.
    /// Every `_source` path this query reads (predicates of every stage — positive, missing, until —, join
    /// keys, timestamp, tiebreaker), aliases
    /// resolved: what an event must carry for the query to see it exactly as the whole document.
    pub fn fields_read(&self) -> Vec<String> {
        let mut out = vec![self.timestamp.source_path.clone()];
        out.extend(self.tiebreaker.iter().map(|t| t.source_path.clone()));
        for stage in self.stages.iter().chain(&self.missing).chain(self.until.iter()) {
            stage.pred.fields_read(&mut out);
            out.extend(stage.keys.iter().filter_map(|k| k.acc.as_ref()).map(|a| a.source_path.clone()));
        }
        out.sort();
        out.dedup();
        out
    }

    /// One [`Gate`] per stage (positive, missing, until), or `None` when some stage has none: then every
    /// event may matter.
    pub fn gates(&self) -> Option<Vec<Gate>> {
        self.stages.iter().chain(&self.missing).chain(self.until.iter()).map(|s| stage_gate(&s.pred)).collect()
    }

    /// Like [`CompiledQuery::gates`], with every gate of each stage: an event that matches a stage meets
    /// all of that stage's gates — tests on any keyword field, so a rule that differs from a thousand others
    /// only in a `user.name == "…"` is gated by it. `None` when some stage has none.
    pub fn gate_sets(&self) -> Option<Vec<Vec<Gate>>> {
        self.stages
            .iter()
            .chain(&self.missing)
            .chain(self.until.iter())
            .map(|s| Some(stage_gates(&s.pred)).filter(|g| !g.is_empty()))
            .collect()
    }

    pub fn malformed_values(&self) -> u64 {
        self.malformed.load(AtomicOrdering::Relaxed)
    }

    /// Events skipped by per-event limits, by reason (see [`crate::limits`]); empty when none was.
    pub fn limit_skips(&self) -> Vec<(String, u64)> {
        let keys = self.keys_over_limit.load(AtomicOrdering::Relaxed);
        let preds = self.predicates_over_limit.load(AtomicOrdering::Relaxed);
        let mut out = Vec::new();
        if keys > 0 {
            out.push((
                format!(
                    "join keys expanding to more than {} combinations (the event is left out of the sequence)",
                    crate::limits::MAX_JOIN_KEY_COMBINATIONS
                ),
                keys,
            ));
        }
        if preds > 0 {
            out.push((
                format!(
                    "multi-valued fields needing more than {} value combinations in one predicate (the event is \
                     left out)",
                    crate::limits::MAX_PREDICATE_COMBINATIONS
                ),
                preds,
            ));
        }
        out
    }

    /// A predicate that hit a per-event limit counts as "this event does not take part", not as a failed
    /// run: one crafted event must not fail (and after three attempts give up) a whole window.
    fn within_limits(&self, result: Result<bool, EqlError>) -> Result<bool, EqlError> {
        match result {
            Err(e) if e.kind == crate::error::ErrorKind::Limit => {
                self.predicates_over_limit.fetch_add(1, AtomicOrdering::Relaxed);
                Ok(false)
            }
            other => other,
        }
    }

    /// The join keys of `event` for `stage`: the cartesian product of each key field's distinct non-null
    /// values (in first-seen order). An event whose product would exceed
    /// [`crate::limits::MAX_JOIN_KEY_COMBINATIONS`] takes no part and is counted ([`Self::limit_skips`]):
    /// a few crafted arrays must not cost minutes and gigabytes.
    fn keys_of(&self, stage: &CompiledStage, event: &Event) -> Vec<Vec<KeyValue>> {
        /// Up to this many distinct values of one key are de-duplicated by a scan.
        const FEW_KEY_VALUES: usize = 16;
        let mut per_key: Vec<Vec<KeyValue>> = Vec::with_capacity(stage.keys.len());
        let mut product: usize = 1;
        for k in &stage.keys {
            let mut vals: Vec<KeyValue> = Vec::new();
            if let Some(acc) = &k.acc {
                // De-duplication: a scan while there are few values (almost always one), a hash set from
                // then on, so that a crafted array stays linear.
                let mut seen: Option<std::collections::HashSet<KeyValue>> = None;
                acc.any(&event.source, &self.malformed, &mut |v| {
                    let kv = v.to_key();
                    let new = match &mut seen {
                        Some(set) => set.insert(kv.clone()),
                        None if vals.len() < FEW_KEY_VALUES => !vals.contains(&kv),
                        None => {
                            let mut set: std::collections::HashSet<KeyValue> = vals.iter().cloned().collect();
                            let new = set.insert(kv.clone());
                            seen = Some(set);
                            new
                        }
                    };
                    if new {
                        vals.push(kv);
                    }
                    false
                });
            }
            if vals.is_empty() {
                if !k.optional {
                    return Vec::new();
                }
                vals.push(KeyValue::Null);
            }
            product = product.saturating_mul(vals.len());
            if product > crate::limits::MAX_JOIN_KEY_COMBINATIONS {
                self.keys_over_limit.fetch_add(1, AtomicOrdering::Relaxed);
                return Vec::new();
            }
            per_key.push(vals);
        }
        let mut combos: Vec<Vec<KeyValue>> = vec![Vec::with_capacity(stage.keys.len())];
        for vals in per_key {
            if vals.len() == 1 {
                for c in &mut combos {
                    c.push(vals[0].clone());
                }
            } else {
                let mut next = Vec::with_capacity(combos.len() * vals.len());
                for c in &combos {
                    for v in &vals {
                        let mut n = c.clone();
                        n.push(v.clone());
                        next.push(n);
                    }
                }
                combos = next;
            }
        }
        combos
    }
}

/// A sample's keys come from composite-aggregation buckets, where a `date` key is its epoch-millisecond
/// number (sequence keys come from the document and stay formatted).
fn sample_keys(stage: &CompiledStage, mut keys: Vec<Vec<KeyValue>>) -> Vec<Vec<KeyValue>> {
    for (i, k) in stage.keys.iter().enumerate() {
        if k.acc.as_ref().is_some_and(|a| matches!(a.kind, ValueKind::Date | ValueKind::DateNanos)) {
            for key in keys.iter_mut() {
                if let Some(KeyValue::Str(text)) = key.get(i) {
                    if let Some(ms) = crate::value::parse_date_ms(text) {
                        key[i] = KeyValue::Long(ms);
                    }
                }
            }
        }
    }
    keys
}

impl Plan for CompiledQuery {
    fn is_sequence(&self) -> bool {
        self.sequence
    }
    fn stage_count(&self) -> usize {
        self.stages.len()
    }
    fn matches_stage(&self, stage: usize, event: &Event) -> Result<bool, EqlError> {
        match self.stages.get(stage) {
            Some(s) => self.within_limits(s.pred.eval(&event.source, &self.malformed)),
            None => Ok(false),
        }
    }
    fn join_keys(&self, stage: usize, event: &Event) -> Vec<Vec<KeyValue>> {
        match self.stages.get(stage) {
            Some(s) if self.sample => sample_keys(s, self.keys_of(s, event)),
            Some(s) => self.keys_of(s, event),
            None => Vec::new(),
        }
    }
    fn has_until(&self) -> bool {
        self.until.is_some()
    }
    fn matches_until(&self, event: &Event) -> Result<bool, EqlError> {
        match &self.until {
            Some(s) => self.within_limits(s.pred.eval(&event.source, &self.malformed)),
            None => Ok(false),
        }
    }
    fn until_keys(&self, event: &Event) -> Vec<Vec<KeyValue>> {
        match &self.until {
            Some(s) => self.keys_of(s, event),
            None => Vec::new(),
        }
    }
    fn maxspan_ms(&self) -> Option<i64> {
        self.maxspan_ms
    }
    fn limit(&self) -> Limit {
        self.limit
    }
    fn then_limits(&self) -> Vec<Limit> {
        self.then_limits.clone()
    }
    fn timestamp_ms(&self, event: &Event) -> Option<i64> {
        match self.timestamp.first(&event.source, &self.malformed)? {
            Val::Date(ms) | Val::Long(ms) => Some(ms),
            Val::Double(d) if d.is_finite() => Some(d.trunc() as i64),
            _ => None,
        }
    }
    fn fields_read(&self) -> Option<Vec<String>> {
        Some(CompiledQuery::fields_read(self))
    }
    fn retained_fields(&self) -> Option<Vec<String>> {
        let mut out = vec![self.timestamp.source_path.clone()];
        out.extend(self.tiebreaker.iter().map(|t| t.source_path.clone()));
        Some(out)
    }

    fn tiebreaker(&self, event: &Event) -> Option<KeyValue> {
        let acc = self.tiebreaker.as_ref()?;
        acc.first(&event.source, &self.malformed).map(|v| v.to_key())
    }
    fn missing_positions(&self) -> Vec<usize> {
        self.missing_positions.clone()
    }
    fn matches_missing(&self, m: usize, event: &Event) -> Result<bool, EqlError> {
        match self.missing.get(m) {
            Some(s) => s.pred.eval(&event.source, &self.malformed),
            None => Ok(false),
        }
    }
    fn missing_keys(&self, m: usize, event: &Event) -> Vec<Vec<KeyValue>> {
        match self.missing.get(m) {
            Some(s) => self.keys_of(s, event),
            None => Vec::new(),
        }
    }
    fn is_sample(&self) -> bool {
        self.sample
    }
    fn max_samples_per_key(&self) -> usize {
        self.max_samples_per_key
    }
}

#[cfg(test)]
mod tests {
    //! Behaviour tests on hand-built syntax trees (the parser is developed separately): the two seed rules
    //! of spec §10 against the edge cases of §13, the operator table of §2, the null table of §3.1 and
    //! the coercion table of §5.1.
    use super::*;
    use crate::ast::{EventFilter, Pipe, Query, QueryBody, Sequence, Stage};
    use crate::mapping::{FieldMapping, FieldType};
    use crate::ErrorKind;
    use serde_json::{json, Value};

    fn sp() -> Span {
        Span::default()
    }
    fn fref(p: &str) -> FieldRef {
        FieldRef { path: p.into(), optional: p.starts_with('?'), span: sp() }
            .normalized()
    }
    trait Norm {
        fn normalized(self) -> Self;
    }
    impl Norm for FieldRef {
        fn normalized(mut self) -> Self {
            if let Some(p) = self.path.strip_prefix('?') {
                self.path = p.to_string();
            }
            self
        }
    }
    fn f(p: &str) -> Expr {
        Expr::Field(fref(p))
    }
    fn s(v: &str) -> Expr {
        Expr::Literal(Literal::String(v.into()), sp())
    }
    fn n(v: i64) -> Expr {
        Expr::Literal(Literal::Long(v), sp())
    }
    fn d(v: f64) -> Expr {
        Expr::Literal(Literal::Double(v), sp())
    }
    fn null() -> Expr {
        Expr::Literal(Literal::Null, sp())
    }
    fn cmp(op: CompareOp, a: Expr, b: Expr) -> Expr {
        Expr::Compare { op, left: Box::new(a), right: Box::new(b), span: sp() }
    }
    fn eq(a: Expr, b: Expr) -> Expr {
        cmp(CompareOp::Eq, a, b)
    }
    fn ne(a: Expr, b: Expr) -> Expr {
        cmp(CompareOp::NotEq, a, b)
    }
    fn not(e: Expr) -> Expr {
        Expr::Not(Box::new(e), sp())
    }
    fn and(items: Vec<Expr>) -> Expr {
        let mut it = items.into_iter();
        let first = it.next().expect("at least one conjunct");
        it.fold(first, |a, b| Expr::And(Box::new(a), Box::new(b)))
    }
    fn m(op: MatchOp, ci: bool, e: Expr, pats: &[&str]) -> Expr {
        Expr::Match { op, case_insensitive: ci, expr: Box::new(e), patterns: pats.iter().map(|p| s(p)).collect(), span: sp() }
    }
    fn inn(e: Expr, vals: Vec<Expr>, ci: bool, negated: bool) -> Expr {
        Expr::In { expr: Box::new(e), values: vals, case_insensitive: ci, negated, span: sp() }
    }
    fn call(name: &str, ci: bool, args: Vec<Expr>) -> Expr {
        Expr::Call { function: Function::from_name(name).expect("known function"), case_insensitive: ci, args, span: sp() }
    }
    fn event_query(category: Option<&str>, cond: Expr) -> Query {
        Query {
            body: QueryBody::Event(EventFilter { category: category.map(str::to_string), condition: cond, span: sp() }),
            pipes: vec![],
        }
    }

    /// Rule 1 (spec §10.1).
    fn rule1() -> Query {
        let a = and(vec![
            eq(f("host.os.type"), s("windows")),
            eq(f("event.action"), s("logged-in")),
            eq(f("event.outcome"), s("success")),
            eq(f("winlog.event_data.ElevatedToken"), s("%%1843")),
            eq(f("process.pid"), n(0)),
            m(MatchOp::Seq, false, f("winlog.event_data.AuthenticationPackageName"), &["Kerberos"]),
            eq(f("winlog.logon.type"), s("Network")),
            call("cidrmatch", false, vec![f("source.ip"), s("127.0.0.0/8"), s("::1")]),
        ]);
        let b = and(vec![
            eq(f("host.os.type"), s("windows")),
            m(MatchOp::Seq, false, f("event.action"), &["service-installed"]),
        ]);
        Query {
            body: QueryBody::Sequence(Sequence {
                by: vec![fref("winlog.computer_name")],
                maxspan_ms: Some(300_000),
                stages: vec![
                    Stage {
                        filter: EventFilter { category: Some("authentication".into()), condition: a, span: sp() },
                        by: vec![fref("winlog.event_data.TargetLogonId")],
                        runs: 1,
                        missing: false,
                    },
                    Stage {
                        filter: EventFilter { category: None, condition: b, span: sp() },
                        by: vec![fref("winlog.event_data.SubjectLogonId")],
                        runs: 1,
                        missing: false,
                    },
                ],
                until: None,
                span: sp(),
            }),
            pipes: vec![],
        }
    }

    /// Rule 2 (spec §10.2).
    fn rule2() -> Query {
        event_query(
            Some("file"),
            and(vec![
                eq(f("host.os.type"), s("windows")),
                eq(f("event.code"), s("5145")),
                call("endswith", false, vec![f("user.name"), s("$")]),
                call(
                    "startswith",
                    true,
                    vec![
                        call("concat", false, vec![f("winlog.computer_name"), s(".")]),
                        call("concat", false, vec![call("substring", false, vec![f("user.name"), n(0), n(-1)]), s(".")]),
                    ],
                ),
                not(call("endswith", false, vec![call("string", false, vec![f("source.ip")]), call("string", false, vec![f("host.ip")])])),
                ne(f("source.ip"), s("::")),
                ne(f("source.ip"), null()),
                ne(f("source.ip"), s("::1")),
                ne(f("source.ip"), s("127.0.0.1")),
            ]),
        )
    }

    fn compile(q: &Query) -> CompiledQuery {
        CompiledQuery::compile(q, &Mapping::builtin_ecs(), &QueryOptions::default()).expect("compiles")
    }

    fn ev(doc: Value) -> Event {
        Event::new("idx", "1", doc)
    }

    /// Sets (or with `Value::Null` as `remove`, deletes) a dotted path in a nested document.
    fn set(mut doc: Value, path: &str, v: Option<Value>) -> Value {
        let parts: Vec<&str> = path.split('.').collect();
        let mut cur = &mut doc;
        for p in &parts[..parts.len() - 1] {
            cur = cur.as_object_mut().expect("object").entry(p.to_string()).or_insert_with(|| json!({}));
        }
        let obj = cur.as_object_mut().expect("object");
        match v {
            Some(v) => {
                obj.insert(parts[parts.len() - 1].to_string(), v);
            }
            None => {
                obj.remove(parts[parts.len() - 1]);
            }
        }
        doc
    }

    fn r2_base() -> Value {
        json!({
            "@timestamp": "2024-05-01T10:00:00.000Z",
            "event": {"category": ["network", "file"], "code": "5145", "action": "access"},
            "host": {"os": {"type": "windows"}, "ip": ["10.0.0.5", "fe80::1"]},
            "user": {"name": "FS01$"},
            "winlog": {"computer_name": "FS01.corp.local"},
            "source": {"ip": "10.0.0.9"}
        })
    }

    fn r1a_base() -> Value {
        json!({
            "@timestamp": "2024-05-01T10:00:00.000Z",
            "event": {"category": ["authentication"], "action": "logged-in", "outcome": "success"},
            "host": {"os": {"type": "windows"}},
            "process": {"pid": 0},
            "source": {"ip": "127.0.0.1"},
            "winlog": {"computer_name": "DC01.corp.local", "logon": {"type": "Network"},
                "event_data": {"ElevatedToken": "%%1843", "AuthenticationPackageName": "Kerberos", "TargetLogonId": "0x129f1"}}
        })
    }

    fn r1b_base() -> Value {
        json!({
            "@timestamp": "2024-05-01T10:00:01.000Z",
            "event": {"action": "service-installed"},
            "host": {"os": {"type": "windows"}},
            "winlog": {"computer_name": "DC01.corp.local", "event_data": {"SubjectLogonId": "0x129f1"}}
        })
    }

    fn r2(doc: Value) -> bool {
        compile(&rule2()).matches_stage(0, &ev(doc)).expect("no query error")
    }
    fn r1(stage: usize, doc: Value) -> bool {
        compile(&rule1()).matches_stage(stage, &ev(doc)).expect("no query error")
    }

    #[test]
    fn seed_rules_base_documents_match() {
        assert!(r2(r2_base()));
        assert!(r1(0, r1a_base()));
        assert!(r1(1, r1b_base()));
        assert!(!r1(0, r1b_base()));
        assert!(!r1(1, r1a_base()));
    }

    #[test]
    fn ten_thousand_by_ten_thousand_addresses_are_left_out_quickly_not_matched() {
        let ips = |p: u32| json!((0..10_000u32).map(|i| format!("10.{p}.{}.{}", i / 256, i % 256)).collect::<Vec<_>>());
        let doc = set(set(r2_base(), "source.ip", Some(ips(1))), "host.ip", Some(ips(2)));
        let q = compile(&rule2());
        let started = std::time::Instant::now();
        // Without the limit the `not endswith(...)` loop would try 10^8 pairs; with it the event takes no
        // part (and the surrounding `not` does not turn the cut-off into a match).
        assert_eq!(q.matches_stage(0, &ev(doc)), Ok(false));
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
        let skips = q.limit_skips();
        assert_eq!(skips.len(), 1, "{skips:?}");
        assert!(skips[0].0.contains("1000000 value combinations") && skips[0].1 == 1, "{skips:?}");
        // 1,000 × 1,000 is within the limit and evaluated normally.
        let small = |p: u32| json!((0..1000u32).map(|i| format!("10.{p}.{}.{}", i / 256, i % 256)).collect::<Vec<_>>());
        let doc = set(set(r2_base(), "source.ip", Some(small(1))), "host.ip", Some(small(2)));
        assert_eq!(q.matches_stage(0, &ev(doc)), Ok(true));
        assert_eq!(q.limit_skips()[0].1, 1);
    }

    #[test]
    fn a_source_address_with_an_ipv6_zone_id_is_an_address() {
        // Elasticsearch indexes `fe80::99%12` as `fe80::99`, and Kibana raises the alert.
        assert!(r2(set(r2_base(), "source.ip", Some(json!("fe80::99%12")))));
        // The host's own address with a zone id is still local access.
        assert!(!r2(set(r2_base(), "source.ip", Some(json!("fe80::1%eth0")))));
    }

    #[test]
    fn e01_host_ip_missing_keeps_the_event() {
        assert!(r2(set(r2_base(), "host.ip", None)));
        assert!(r2(set(r2_base(), "host.ip", Some(json!([])))));
        assert!(r2(set(r2_base(), "host.ip", Some(json!(null)))));
    }

    #[test]
    fn e02_host_ip_multi_valued() {
        assert!(!r2(set(r2_base(), "host.ip", Some(json!(["10.0.0.9", "fe80::1"])))));
        assert!(!r2(set(r2_base(), "host.ip", Some(json!(["fe80::1", "10.0.0.9"])))));
        assert!(r2(set(r2_base(), "host.ip", Some(json!(["10.0.0.5", "fe80::1"])))));
    }

    #[test]
    fn e03_string_suffix_quirk() {
        assert!(fx::str_test(fx::StrTest::EndsWith, "10.0.0.15", "0.0.15", false));
        let doc = set(set(r2_base(), "source.ip", Some(json!("110.0.0.1"))), "host.ip", Some(json!(["10.0.0.1"])));
        assert!(!r2(doc));
        let doc = set(set(r2_base(), "source.ip", Some(json!("110.0.0.1"))), "host.ip", Some(json!(["10.0.0.2"])));
        assert!(r2(doc));
    }

    #[test]
    fn e04_ipv4_mapped_and_loopback_forms() {
        let mapped = json!("::ffff:127.0.0.1");
        assert!(r1(0, set(r1a_base(), "source.ip", Some(mapped.clone()))));
        assert!(!r2(set(r2_base(), "source.ip", Some(mapped))));
        // 127.0.0.2: in the CIDR, but not excluded by != "127.0.0.1".
        assert!(r1(0, set(r1a_base(), "source.ip", Some(json!("127.0.0.2")))));
        assert!(r2(set(r2_base(), "source.ip", Some(json!("127.0.0.2")))));
        // 0:0:0:0:0:0:0:1 ≡ ::1.
        assert!(r1(0, set(r1a_base(), "source.ip", Some(json!("0:0:0:0:0:0:0:1")))));
        assert!(!r2(set(r2_base(), "source.ip", Some(json!("0:0:0:0:0:0:0:1")))));
        assert!(!r2(set(r2_base(), "source.ip", Some(json!("0:0:0:0:0:0:0:0")))));
        assert!(!r1(0, set(r1a_base(), "source.ip", Some(json!("10.0.0.1")))));
    }

    #[test]
    fn e05_source_ip_missing() {
        assert!(!r2(set(r2_base(), "source.ip", None)));
        assert!(!r1(0, set(r1a_base(), "source.ip", None)));
        // Malformed IP = not indexed = missing.
        assert!(!r2(set(r2_base(), "source.ip", Some(json!("-")))));
    }

    #[test]
    fn e06_process_pid_forms() {
        assert!(r1(0, set(r1a_base(), "process.pid", Some(json!(0)))));
        assert!(r1(0, set(r1a_base(), "process.pid", Some(json!("0")))));
        assert!(!r1(0, set(r1a_base(), "process.pid", None)));
        assert!(!r1(0, set(r1a_base(), "process.pid", Some(json!(448)))));
        let q = compile(&rule1());
        assert!(!q.matches_stage(0, &ev(set(r1a_base(), "process.pid", Some(json!("0x1c0"))))).unwrap());
        assert!(q.malformed_values() >= 1);
    }

    #[test]
    fn e07_event_code_string_or_number() {
        assert!(r2(set(r2_base(), "event.code", Some(json!("5145")))));
        assert!(r2(set(r2_base(), "event.code", Some(json!(5145)))));
        assert!(!r2(set(r2_base(), "event.code", Some(json!(5140)))));
    }

    #[test]
    fn e08_event_category_forms() {
        assert!(r2(set(r2_base(), "event.category", Some(json!("file")))));
        assert!(r2(set(r2_base(), "event.category", Some(json!(["network", "file"])))));
        assert!(!r2(set(r2_base(), "event.category", Some(json!("File")))));
        assert!(!r1(0, set(r1a_base(), "event.category", Some(json!(["iam"])))));
        assert!(!r1(0, set(r1a_base(), "event.category", None)));
        // Stage B (`any where`) matches with or without a category.
        assert!(r1(1, set(r1b_base(), "event.category", Some(json!(["configuration"])))));
        assert!(r1(1, set(r1b_base(), "event.category", None)));
        // Dotted key form is the same field.
        let mut doc = set(r2_base(), "event.category", None);
        doc.as_object_mut().unwrap().insert("event.category".into(), json!("file"));
        assert!(r2(doc));
    }

    #[test]
    fn e09_case_sensitivity() {
        assert!(r1(1, set(r1b_base(), "event.action", Some(json!("Service-Installed")))));
        assert!(!r1(0, set(r1a_base(), "event.action", Some(json!("Logged-In")))));
        assert!(r1(0, set(r1a_base(), "winlog.event_data.AuthenticationPackageName", Some(json!("KERBEROS")))));
        assert!(!r1(0, set(r1a_base(), "winlog.logon.type", Some(json!("network")))));
    }

    #[test]
    fn e10_elevated_token() {
        let p = "winlog.event_data.ElevatedToken";
        assert!(r1(0, set(r1a_base(), p, Some(json!("%%1843")))));
        assert!(!r1(0, set(r1a_base(), p, Some(json!("%%1842")))));
        assert!(!r1(0, set(r1a_base(), p, None)));
        assert!(!r1(0, set(r1a_base(), p, Some(json!("No")))));
    }

    #[test]
    fn e11_user_and_computer_names() {
        assert!(!r2(set(r2_base(), "user.name", Some(json!("$")))));
        assert!(!r2(set(r2_base(), "winlog.computer_name", Some(json!("FS010.corp.local")))));
        assert!(r2(set(r2_base(), "winlog.computer_name", Some(json!("fs01.corp.local")))));
        assert!(r2(set(r2_base(), "winlog.computer_name", Some(json!("FS01")))));
        assert!(!r2(set(r2_base(), "user.name", None)));
        assert!(!r2(set(r2_base(), "user.name", Some(json!("FS01")))));
        assert!(!r2(set(r2_base(), "winlog.computer_name", None)));
        // Multi-valued user.name: the script loops over each value independently.
        assert!(r2(set(r2_base(), "user.name", Some(json!(["admin$", "FS01$"])))));
    }

    #[test]
    fn e12_missing_and_null_arrays() {
        let mut mp = Mapping::new();
        mp.insert("k", FieldMapping::new(FieldType::Keyword));
        let run = |cond: Expr, doc: Value| {
            CompiledQuery::compile(&event_query(None, cond), &mp, &QueryOptions::default())
                .unwrap()
                .matches_stage(0, &ev(doc))
                .unwrap()
        };
        assert!(run(ne(f("k"), s("a")), json!({})));
        for doc in [json!({}), json!({"k": []}), json!({"k": [null]}), json!({"k": null})] {
            assert!(run(eq(f("k"), null()), doc.clone()), "{doc} == null");
            assert!(!run(ne(f("k"), null()), doc.clone()), "{doc} != null");
        }
        assert!(run(ne(f("k"), null()), json!({"k": [null, "x"]})));
    }

    #[test]
    fn e13_keyword_over_ignore_above_is_missing() {
        let long_user = format!("{}$", "A".repeat(1024));
        assert!(!r2(set(r2_base(), "user.name", Some(json!(long_user)))));
        // Not indexed → `!=` is true.
        let q = event_query(None, ne(f("event.action"), s("x")));
        let long = "x".repeat(1025);
        assert!(compile(&q).matches_stage(0, &ev(json!({"event": {"action": long}}))).unwrap());
    }

    #[test]
    fn e14_substring_in_script_counts_utf16() {
        let mut mp = Mapping::new();
        mp.insert("k", FieldMapping::new(FieldType::Keyword));
        let q = event_query(None, eq(call("substring", false, vec![f("k"), n(-3), n(-1)]), s("😀")));
        let cq = CompiledQuery::compile(&q, &mp, &QueryOptions::default()).unwrap();
        assert!(cq.matches_stage(0, &ev(json!({"k": "ab😀c"}))).unwrap());
        assert!(!cq.matches_stage(0, &ev(json!({"k": "abc😀"}))).unwrap());
        let q = event_query(None, eq(call("length", false, vec![f("k")]), n(3)));
        let cq = CompiledQuery::compile(&q, &mp, &QueryOptions::default()).unwrap();
        assert!(cq.matches_stage(0, &ev(json!({"k": "a😀"}))).unwrap());
    }

    fn kv_mapping() -> Mapping {
        let mut mp = Mapping::new();
        mp.insert("k", FieldMapping::new(FieldType::Keyword));
        mp.insert("k2", FieldMapping::new(FieldType::Keyword));
        mp.insert("n", FieldMapping::new(FieldType::Long));
        mp.insert("ip", FieldMapping::new(FieldType::Ip));
        mp.insert("d", FieldMapping::new(FieldType::Date));
        mp
    }

    fn run_on(cond: Expr, doc: Value) -> bool {
        CompiledQuery::compile(&event_query(None, cond), &kv_mapping(), &QueryOptions::default())
            .unwrap()
            .matches_stage(0, &ev(doc))
            .unwrap()
    }

    #[test]
    fn operator_table_section_2() {
        let doc = json!({"k": ["Hello*World", "other"]});
        assert!(run_on(eq(f("k"), s("Hello*World")), doc.clone()));
        assert!(!run_on(eq(f("k"), s("Hello*")), doc.clone()), "== has no wildcards");
        assert!(!run_on(eq(f("k"), s("hello*world")), doc.clone()));
        assert!(!run_on(ne(f("k"), s("other")), doc.clone()));
        assert!(run_on(ne(f("k"), s("x")), doc.clone()));
        assert!(run_on(m(MatchOp::Seq, false, f("k"), &["OTHER"]), doc.clone()));
        assert!(run_on(m(MatchOp::Seq, false, f("k"), &["hello*"]), doc.clone()));
        assert!(run_on(m(MatchOp::Seq, false, f("k"), &["x", "oth?r"]), doc.clone()));
        assert!(!run_on(m(MatchOp::Seq, false, f("k"), &["oth?"]), doc.clone()));
        assert!(run_on(m(MatchOp::Like, false, f("k"), &["Hello*"]), doc.clone()));
        assert!(!run_on(m(MatchOp::Like, false, f("k"), &["hello*"]), doc.clone()));
        assert!(run_on(m(MatchOp::Like, true, f("k"), &["hello*"]), doc.clone()));
        assert!(run_on(m(MatchOp::Regex, false, f("k"), &["H.*d"]), doc.clone()));
        assert!(!run_on(m(MatchOp::Regex, false, f("k"), &["ello.*"]), doc.clone()), "regex is anchored");
        assert!(run_on(m(MatchOp::Regex, true, f("k"), &["h.*D"]), doc.clone()));
        assert!(run_on(inn(f("k"), vec![s("a"), s("other")], false, false), doc.clone()));
        assert!(!run_on(inn(f("k"), vec![s("OTHER")], false, false), doc.clone()));
        assert!(run_on(inn(f("k"), vec![s("OTHER")], true, false), doc.clone()));
        assert!(!run_on(inn(f("k"), vec![s("oth*")], true, false), doc.clone()), "in~ is verbatim");
        assert!(!run_on(inn(f("k"), vec![s("other")], false, true), doc.clone()));
        assert!(run_on(inn(f("k"), vec![s("zzz")], false, true), doc.clone()));
        assert!(run_on(inn(f("k"), vec![s("zzz")], false, true), json!({})), "not in on missing is true");
        // Ranges: strings by code point, case-sensitive ("B" < "a").
        assert!(run_on(cmp(CompareOp::Lt, f("k"), s("a")), json!({"k": "B"})));
        assert!(!run_on(cmp(CompareOp::Gt, f("k"), s("a")), json!({"k": "B"})));
        assert!(run_on(cmp(CompareOp::Gte, f("n"), n(5)), json!({"n": [1, 5]})));
        assert!(!run_on(cmp(CompareOp::Gt, f("n"), n(5)), json!({"n": [1, 5]})));
        assert!(run_on(cmp(CompareOp::Lt, n(5), f("n")), json!({"n": 7})), "literal on the left is swapped");
        assert!(run_on(cmp(CompareOp::Gt, f("n"), n(9)), json!({"n": "10"})), "numeric, not lexical");
        // Date ranges with ISO literals.
        assert!(run_on(cmp(CompareOp::Gte, f("d"), s("2024-01-01")), json!({"d": "2024-05-01T00:00:00Z"})));
    }

    #[test]
    fn null_table_section_3_1() {
        let script = |x: Expr| eq(call("concat", false, vec![x, s("!")]), s("a!"));
        let missing = json!({});
        let ab = json!({"k": ["a", "b"]});
        assert!(!run_on(eq(f("k"), s("a")), missing.clone()));
        assert!(run_on(eq(f("k"), s("b")), ab.clone()));
        assert!(run_on(ne(f("k"), s("a")), missing.clone()));
        assert!(!run_on(ne(f("k"), s("a")), ab.clone()));
        assert!(run_on(not(eq(f("k"), s("a"))), missing.clone()));
        assert!(run_on(eq(f("k"), null()), missing.clone()));
        assert!(!run_on(eq(f("k"), null()), ab.clone()));
        assert!(!run_on(ne(f("k"), null()), missing.clone()));
        assert!(run_on(ne(f("k"), null()), ab.clone()));
        assert!(!run_on(script(f("k")), missing.clone()));
        assert!(run_on(script(f("k")), ab.clone()));
        assert!(run_on(not(script(f("k"))), missing.clone()));
        assert!(!run_on(not(script(f("k"))), ab.clone()));
        assert!(run_on(not(script(f("k"))), json!({"k": ["b"]})));
        // Repeated field occurrences loop independently: ∃x,y ∈ k: x == "a" and y == "b".
        let two = eq(call("concat", false, vec![f("k"), f("k")]), s("ab"));
        assert!(run_on(two.clone(), ab.clone()));
        assert!(!run_on(two, json!({"k": "a"})));
    }

    #[test]
    fn coercion_table_section_5_1() {
        assert!(run_on(eq(f("k"), n(5145)), json!({"k": "5145"})));
        assert!(run_on(eq(f("k"), d(1.0)), json!({"k": "1.0"})));
        assert!(run_on(eq(f("n"), s("0")), json!({"n": 0})));
        assert!(!run_on(eq(f("n"), d(1.5)), json!({"n": 1})));
        let err = CompiledQuery::compile(&event_query(None, eq(f("n"), s("abc"))), &kv_mapping(), &QueryOptions::default())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Query);
        assert!(run_on(eq(f("ip"), s("::")), json!({"ip": "0:0:0:0:0:0:0:0"})));
        assert!(run_on(eq(f("ip"), s("127.0.0.1")), json!({"ip": "::ffff:127.0.0.1"})));
        let err = CompiledQuery::compile(&event_query(None, eq(f("ip"), s("10.0.0.300"))), &kv_mapping(), &QueryOptions::default())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Query);
    }

    #[test]
    fn concat_uses_java_formatting() {
        let c = call("concat", false, vec![f("k"), n(5), d(42.5), d(1e10), Expr::Literal(Literal::Bool(true), sp()), f("n")]);
        assert!(run_on(eq(c.clone(), s("x542.51.0E10true7")), json!({"k": "x", "n": 7})));
        // Any null argument → null → no match (n missing).
        assert!(!run_on(eq(c, s("x542.51.0E10true")), json!({"k": "x"})));
        assert!(run_on(eq(call("concat", false, vec![f("k"), null()]), null()), json!({"k": "x"})));
    }

    #[test]
    fn cidr_match_script_and_pushdown() {
        let push = call("cidrmatch", false, vec![f("ip"), s("127.0.0.0/8"), s("::1")]);
        let script = call("cidrmatch", false, vec![f("ip"), s("127.0.0.0/8"), s("::1")]);
        assert!(run_on(push, json!({"ip": "::ffff:127.0.0.1"})));
        assert!(run_on(and(vec![script, eq(f("k"), s("a"))]), json!({"ip": "0:0:0:0:0:0:0:1", "k": "a"})));
        let bad = CompiledQuery::compile(
            &event_query(None, call("cidrmatch", false, vec![f("ip"), s("10.0.0.0/99")])),
            &kv_mapping(),
            &QueryOptions::default(),
        );
        assert_eq!(bad.unwrap_err().kind, ErrorKind::Verification);
        let not_ip = CompiledQuery::compile(
            &event_query(None, call("cidrmatch", false, vec![call("string", false, vec![f("k")]), s("10.0.0.0/8")])),
            &kv_mapping(),
            &QueryOptions::default(),
        );
        assert_eq!(not_ip.unwrap_err().kind, ErrorKind::Verification);
    }

    #[test]
    fn endswith_pushdown_wildcard_quirk() {
        // Pushdown: `*` inside the literal acts as a wildcard.
        assert!(run_on(call("endswith", false, vec![f("k"), s("a*c")]), json!({"k": "xxabbc"})));
        assert!(run_on(call("stringcontains", false, vec![f("k"), s("a?c")]), json!({"k": "xabcx"})));
        // Script path: plain Java endsWith.
        let script = call("endswith", false, vec![call("string", false, vec![f("k")]), s("a*c")]);
        assert!(!run_on(script.clone(), json!({"k": "xxabbc"})));
        assert!(run_on(script, json!({"k": "xxa*c"})));
        // startsWith is a prefix query: the literal stays literal.
        assert!(!run_on(call("startswith", false, vec![f("k"), s("a*")]), json!({"k": "abc"})));
        assert!(run_on(call("startswith", true, vec![f("k"), s("AB")]), json!({"k": "abc"})));
    }

    #[test]
    fn verification_errors() {
        let mp = kv_mapping();
        let o = QueryOptions::default();
        let e = CompiledQuery::compile(&event_query(None, eq(f("nope"), s("a"))), &mp, &o).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Verification);
        assert!(e.message.contains("Unknown column [nope]"));
        let e = CompiledQuery::compile(&event_query(None, eq(f("k"), f("k2"))), &mp, &o).unwrap_err();
        assert!(e.message.contains("Comparisons against fields"));
        // Optional unknown field → literal null.
        assert!(run_on(eq(f("?nope"), null()), json!({})));
        assert!(!run_on(f("?nope"), json!({})));
        assert!(!run_on(eq(f("?nope"), s("a")), json!({"nope": "a"})));
        // ?x == ?y with both absent → null == null → true (QA sequenceOptionalFieldAsQueryKeysOnly).
        assert!(run_on(eq(f("?x"), f("?y")), json!({})));
        // A string function on a long field.
        let e = CompiledQuery::compile(&event_query(None, call("startswith", false, vec![f("n"), s("1")])), &mp, &o);
        assert!(e.is_err());
        // Offline mode: unknown fields are inferred.
        let off = Mapping::new().infer_unknown(true);
        let q = CompiledQuery::compile(&event_query(None, eq(f("x"), n(5))), &off, &o).unwrap();
        assert!(q.matches_stage(0, &ev(json!({"x": 5}))).unwrap());
        assert!(q.matches_stage(0, &ev(json!({"x": "5"}))).unwrap());
        assert!(!q.matches_stage(0, &ev(json!({"x": 6}))).unwrap());
    }

    #[test]
    fn join_keys_rule1() {
        let q = compile(&rule1());
        let keys = q.join_keys(0, &ev(r1a_base()));
        assert_eq!(keys, vec![vec![KeyValue::Str("DC01.corp.local".into()), KeyValue::Str("0x129f1".into())]]);
        assert_eq!(q.join_keys(1, &ev(r1b_base())), keys);
        // Missing non-optional → never joins.
        assert!(q.join_keys(0, &ev(set(r1a_base(), "winlog.event_data.TargetLogonId", None))).is_empty());
        assert!(q.join_keys(1, &ev(set(r1b_base(), "winlog.computer_name", Some(json!(null))))).is_empty());
        // Multi-valued: cartesian, nulls ignored, duplicates collapsed.
        let doc = set(r1a_base(), "winlog.event_data.TargetLogonId", Some(json!(["0x1", null, "0x2", "0x1"])));
        let doc = set(doc, "winlog.computer_name", Some(json!(["A", "B"])));
        let mut keys = q.join_keys(0, &ev(doc));
        keys.sort();
        let k = |a: &str, b: &str| vec![KeyValue::Str(a.into()), KeyValue::Str(b.into())];
        assert_eq!(keys, vec![k("A", "0x1"), k("A", "0x2"), k("B", "0x1"), k("B", "0x2")]);
        assert!(q.limit_skips().is_empty());
        // 3,000 × 3,000 values: over the cap, so the event is left out and counted, quickly.
        let many = |p: &str| json!((0..3000).map(|i| format!("{p}{i}")).collect::<Vec<_>>());
        let doc = set(r1a_base(), "winlog.event_data.TargetLogonId", Some(many("0x")));
        let doc = set(doc, "winlog.computer_name", Some(many("h")));
        let started = std::time::Instant::now();
        assert!(q.join_keys(0, &ev(doc)).is_empty());
        assert_eq!(q.limit_skips().len(), 1);
        assert_eq!(q.limit_skips()[0].1, 1);
        // 100,000 values of one key, all the same: de-duplication is linear.
        let same = json!(vec!["0x1"; 100_000]);
        let keys = q.join_keys(0, &ev(set(r1a_base(), "winlog.event_data.TargetLogonId", Some(same))));
        assert_eq!(keys.len(), 1);
        // 20 distinct values, each twice, across the switch from scanning to hashing: first-seen order.
        let twice = json!((0..40).map(|i| format!("0x{}", i % 20)).collect::<Vec<_>>());
        let keys = q.join_keys(0, &ev(set(r1a_base(), "winlog.event_data.TargetLogonId", Some(twice))));
        let ids: Vec<KeyValue> = (0..20).map(|i| KeyValue::Str(format!("0x{i}"))).collect();
        assert_eq!(keys.iter().map(|k| k[1].clone()).collect::<Vec<_>>(), ids);
        // 1,024 distinct values: exactly at the cap, still joined.
        let at_cap = json!((0..1024).map(|i| format!("0x{i}")).collect::<Vec<_>>());
        let keys = q.join_keys(0, &ev(set(r1a_base(), "winlog.event_data.TargetLogonId", Some(at_cap))));
        assert_eq!(keys.len(), 1024);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
        assert_eq!(q.stage_count(), 2);
        assert!(q.is_sequence());
        assert_eq!(q.maxspan_ms(), Some(300_000));
        assert_eq!(q.timestamp_ms(&ev(r1a_base())), Some(1714557600000));
    }

    #[test]
    fn join_keys_optional_typed_and_runs() {
        let mut mp = kv_mapping();
        mp.insert("date_tags", FieldMapping::new(FieldType::Date));
        let stage = |by: Vec<FieldRef>, runs| Stage {
            filter: EventFilter { category: None, condition: Expr::Literal(Literal::Bool(true), sp()), span: sp() },
            by,
            runs,
            missing: false,
        };
        let q = Query {
            body: QueryBody::Sequence(Sequence {
                by: vec![fref("?k"), fref("n"), fref("?unmapped")],
                maxspan_ms: None,
                stages: vec![stage(vec![fref("date_tags")], 1), stage(vec![fref("ip")], 2)],
                until: None,
                span: sp(),
            }),
            pipes: vec![Pipe::Tail(3)],
        };
        let opts = QueryOptions { tiebreaker_field: Some("n".into()), size: 100, ..QueryOptions::default() };
        let cq = CompiledQuery::compile(&q, &mp, &opts).unwrap();
        assert_eq!(cq.stage_count(), 3, "runs=2 expands");
        assert_eq!(cq.limit(), Limit { position: Position::Tail, count: 3 });
        let e = ev(json!({"n": "7", "date_tags": "1970-01-01T00:00:00.000Z", "ip": "::ffff:10.0.0.1"}));
        assert_eq!(
            cq.join_keys(0, &e),
            vec![vec![KeyValue::Null, KeyValue::Long(7), KeyValue::Null, KeyValue::Str("1970-01-01T00:00:00.000Z".into())]]
        );
        assert_eq!(cq.join_keys(2, &e)[0][3], KeyValue::Str("10.0.0.1".into()));
        assert_eq!(cq.tiebreaker(&e), Some(KeyValue::Long(7)));
        assert!(cq.join_keys(0, &ev(json!({"n": 7}))).is_empty());
    }

    #[test]
    fn limits_from_size_position_and_pipes() {
        let lim = |pipes: Vec<Pipe>, size, position| {
            let mut q = rule2();
            q.pipes = pipes;
            let o = QueryOptions { size, position, ..QueryOptions::default() };
            CompiledQuery::compile(&q, &Mapping::builtin_ecs(), &o).unwrap().limit()
        };
        assert_eq!(lim(vec![], 100, Position::Tail), Limit { position: Position::Tail, count: 100 });
        assert_eq!(lim(vec![Pipe::Head(3)], 100, Position::Tail), Limit { position: Position::Head, count: 3 });
        assert_eq!(lim(vec![Pipe::Tail(200)], 100, Position::Head), Limit { position: Position::Tail, count: 100 });
    }

    #[test]
    fn null_value_and_alias_from_mapping() {
        let mp = Mapping::from_es_mapping(&json!({"properties": {
            "event_type": {"type": "keyword"},
            "event": {"properties": {"category": {"type": "alias", "path": "event_type"}}},
            "opt": {"type": "keyword", "null_value": "NULL"}
        }}))
        .unwrap();
        let q = event_query(Some("process"), eq(f("?opt"), s("NULL")));
        let cq = CompiledQuery::compile(&q, &mp, &QueryOptions::default()).unwrap();
        assert!(cq.matches_stage(0, &ev(json!({"event_type": "process", "opt": null}))).unwrap());
        assert!(!cq.matches_stage(0, &ev(json!({"event_type": "process"}))).unwrap());
        assert!(!cq.matches_stage(0, &ev(json!({"event_type": "file", "opt": null}))).unwrap());
    }

    #[test]
    fn runtime_type_error_is_a_query_error() {
        let off = Mapping::new().infer_unknown(true);
        let q = event_query(None, call("startswith", false, vec![call("string", false, vec![f("x")]), f("y")]));
        let cq = CompiledQuery::compile(&q, &off, &QueryOptions::default()).unwrap();
        let err = cq.matches_stage(0, &ev(json!({"x": "abc", "y": 5}))).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Query);
        assert!(cq.matches_stage(0, &ev(json!({"x": "abc", "y": "ab"}))).unwrap());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|i| json!(i)),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
                "[a-zA-Z0-9.:$%*?\\\\ -]{0,12}".prop_map(Value::String),
                Just(json!("::ffff:127.0.0.1")),
                Just(json!("FS01$")),
                Just(json!("😀é")),
            ]
        }

        fn doc() -> impl Strategy<Value = Value> {
            let paths = prop::sample::select(vec![
                "event.category", "event.code", "event.action", "event.outcome", "host.os.type", "host.ip",
                "source.ip", "user.name", "winlog.computer_name", "process.pid", "@timestamp",
                "winlog.event_data.TargetLogonId", "winlog.logon.type", "winlog.event_data.ElevatedToken",
            ]);
            let val = leaf().prop_recursive(2, 8, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec(("[a-z]{1,3}", inner), 0..3)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            });
            prop::collection::vec((paths, val, any::<bool>()), 0..10).prop_map(|items| {
                let mut d = json!({});
                for (p, v, dotted) in items {
                    if dotted {
                        d.as_object_mut().unwrap().insert(p.to_string(), v);
                    } else {
                        d = set(d, p, Some(v));
                    }
                }
                d
            })
        }

        proptest! {
            #[test]
            fn seed_rules_never_panic(d in doc()) {
                let r1 = compile(&rule1());
                let r2 = compile(&rule2());
                let e = ev(d);
                let _ = r1.matches_stage(0, &e);
                let _ = r1.matches_stage(1, &e);
                let _ = r1.join_keys(0, &e);
                let _ = r1.join_keys(1, &e);
                let _ = r1.timestamp_ms(&e);
                let _ = r2.matches_stage(0, &e);
            }
        }
    }
}
