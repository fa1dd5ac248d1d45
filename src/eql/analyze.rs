//! Analysis: types a parsed query against a field mapping and compiles it into per-event tests.
//!
//! This is where Elasticsearch's verifier and query translator are mirrored: unknown fields and
//! field-vs-field comparisons are rejected with spans, `?field` absent from the mapping becomes `null`,
//! literals are coerced to the field's type (a non-numeric string against a `long` is a query error, raised
//! here because ES fails every search with it), each condition is split into pushdown and script
//! predicates (spec §4.1), `with runs=N` is expanded, and the result limit is derived from `size`,
//! `result_position` and the pipes. [`CompiledQuery`] implements [`Plan`] for the sequence engine.
//!
//! Limit rule (ES `LogicalPlanBuilder.visitStatement`): the request `size` becomes an implicit limit in the
//! direction of the **first** pipe (or of `result_position` when there is none), and limits combine by
//! taking the smaller count: `size=100` + `| head 3` → head 3, `| tail 200` → tail 100. A later pipe in
//! the *opposite* direction would need an offset ES keeps but [`Limit`] cannot express; esdetect then
//! uses the later pipe's direction with the smaller count (documented approximation).

use super::ast::{self, CompareOp, Expr, FieldRef, Function, Literal, MatchOp, Span};
use super::eval::{FieldAcc, Pred, SExpr, Script};
use super::functions::{self as fx, Arith, Glob, SV};
use super::mapping::Mapping;
use super::plan::{KeyValue, Limit, Plan, Position, QueryOptions};
use super::value::{coerce_literal, Val, ValueKind};
use super::EqlError;
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
    stages: Vec<CompiledStage>,
    until: Option<CompiledStage>,
    maxspan_ms: Option<i64>,
    limit: Limit,
    timestamp: FieldAcc,
    tiebreaker: Option<FieldAcc>,
    malformed: AtomicU64,
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

struct Compiler<'m> {
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
    fn field(&self, f: &FieldRef) -> Result<Option<FieldAcc>, EqlError> {
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
            None => Err(EqlError::verification(
                format!(
                    "Unknown column [{}]: the field is not in the mapping. Check the spelling, write ?{} if it may be absent, or supply the index mapping",
                    f.path, f.path
                ),
                f.span,
            )),
        }
    }

    fn exact_field(&self, acc: &FieldAcc, span: Span) -> Result<(), EqlError> {
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

    fn pred(&self, e: &Expr) -> Result<Pred, EqlError> {
        match e {
            Expr::And(a, b) => Ok(match (self.pred(a)?, self.pred(b)?) {
                (Pred::And(mut x), Pred::And(y)) => {
                    x.extend(y);
                    Pred::And(x)
                }
                (Pred::And(mut x), y) => {
                    x.push(y);
                    Pred::And(x)
                }
                (x, y) => Pred::And(vec![x, y]),
            }),
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
            Expr::Compare { op, left, right, span } => {
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
            Expr::Match { op, case_insensitive, expr, patterns, span } => {
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
            Expr::In { expr, values, case_insensitive, negated, span } => {
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
            Expr::Call { function, case_insensitive, args, span } => {
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
                                let blocks = self.cidr_blocks(&args[1..])?;
                                return Ok(Pred::Cidr(acc, blocks));
                            }
                            _ => {}
                        }
                    }
                }
                self.script(e)
            }
            Expr::Arith { span, .. } | Expr::Neg(_, span) => Err(EqlError::verification(
                "Condition expression needs to be boolean, found an arithmetic expression",
                *span,
            )),
        }
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
            Expr::Compare { op, left, right, span } => {
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
            }
            Expr::Match { op, case_insensitive, expr, patterns, span } => {
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
            }
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
            Expr::Arith { op, left, right, span } => {
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
            }
            Expr::Neg(x, span) => (SExpr::Neg(Box::new(self.sexpr(x, slots)?.0), *span), Ty::Num),
            Expr::Call { function, case_insensitive, args, span } => {
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
                (SExpr::Call { function: f, ci: *case_insensitive, args: cargs, span: *span, cidr }, ret)
            }
        })
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
                match cond {
                    Pred::Const(true) => cat_pred,
                    Pred::And(mut v) => {
                        v.insert(0, cat_pred);
                        Pred::And(v)
                    }
                    other => Pred::And(vec![cat_pred, other]),
                }
            }
        };
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
    pub fn compile(q: &ast::Query, mapping: &Mapping, opts: &QueryOptions) -> Result<CompiledQuery, EqlError> {
        let c = Compiler { mapping };
        let (sequence, stages, until, maxspan_ms) = match &q.body {
            ast::QueryBody::Event(f) => (false, vec![c.stage(f, &[], opts)?], None, None),
            ast::QueryBody::Sequence(s) => {
                let mut stages = Vec::new();
                for st in &s.stages {
                    if st.missing {
                        return Err(EqlError::verification(
                            "missing-event stages ![...] are not supported by esdetect yet",
                            st.filter.span,
                        ));
                    }
                    if st.runs == 0 {
                        return Err(EqlError::verification("runs must be at least 1", st.filter.span));
                    }
                    let by: Vec<&FieldRef> = s.by.iter().chain(st.by.iter()).collect();
                    let compiled = c.stage(&st.filter, &by, opts)?;
                    for _ in 0..st.runs {
                        stages.push(compiled.clone());
                    }
                }
                let until = match &s.until {
                    Some(u) => {
                        let by: Vec<&FieldRef> = s.by.iter().chain(u.by.iter()).collect();
                        Some(c.stage(&u.filter, &by, opts)?)
                    }
                    None => None,
                };
                if let Some(first) = stages.first() {
                    let n = first.keys.len();
                    if stages.iter().chain(until.iter()).any(|st| st.keys.len() != n) {
                        return Err(EqlError::verification(
                            "every stage of a sequence must have the same number of join keys",
                            s.span,
                        ));
                    }
                }
                (true, stages, until, s.maxspan_ms)
            }
        };
        // Limit: the first pipe sets the direction of the implicit `size` limit; counts combine by min.
        let mut limit = Limit { position: opts.position, count: opts.size };
        for p in &q.pipes {
            let (pos, n) = match p {
                ast::Pipe::Head(n) => (Position::Head, *n),
                ast::Pipe::Tail(n) => (Position::Tail, *n),
            };
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            limit = Limit { position: pos, count: limit.count.min(n) };
        }
        let timestamp = ordering_field(mapping, &opts.timestamp_field, ValueKind::Date);
        let tiebreaker = opts.tiebreaker_field.as_deref().map(|t| ordering_field(mapping, t, ValueKind::Inferred));
        Ok(CompiledQuery {
            sequence,
            stages,
            until,
            maxspan_ms,
            limit,
            timestamp,
            tiebreaker,
            malformed: AtomicU64::new(0),
        })
    }

    /// How many document values were skipped because the mapping could not index them (e.g. `"0x1c0"` in a
    /// `long` field, an invalid IP) — ES would have rejected or ignored them; worth a warning.
    pub fn malformed_values(&self) -> u64 {
        self.malformed.load(AtomicOrdering::Relaxed)
    }

    fn keys_of(&self, stage: &CompiledStage, event: &Event) -> Vec<Vec<KeyValue>> {
        let mut combos: Vec<Vec<KeyValue>> = vec![Vec::with_capacity(stage.keys.len())];
        for k in &stage.keys {
            let mut vals: Vec<KeyValue> = Vec::new();
            if let Some(acc) = &k.acc {
                acc.any(&event.source, &self.malformed, &mut |v| {
                    let kv = v.to_key();
                    if !vals.contains(&kv) {
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
            if vals.len() == 1 {
                let v = vals.pop().unwrap_or(KeyValue::Null);
                for c in &mut combos {
                    c.push(v.clone());
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

impl Plan for CompiledQuery {
    fn is_sequence(&self) -> bool {
        self.sequence
    }
    fn stage_count(&self) -> usize {
        self.stages.len()
    }
    fn matches_stage(&self, stage: usize, event: &Event) -> Result<bool, EqlError> {
        match self.stages.get(stage) {
            Some(s) => s.pred.eval(&event.source, &self.malformed),
            None => Ok(false),
        }
    }
    fn join_keys(&self, stage: usize, event: &Event) -> Vec<Vec<KeyValue>> {
        match self.stages.get(stage) {
            Some(s) => self.keys_of(s, event),
            None => Vec::new(),
        }
    }
    fn has_until(&self) -> bool {
        self.until.is_some()
    }
    fn matches_until(&self, event: &Event) -> Result<bool, EqlError> {
        match &self.until {
            Some(s) => s.pred.eval(&event.source, &self.malformed),
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
    fn timestamp_ms(&self, event: &Event) -> Option<i64> {
        match self.timestamp.first(&event.source, &self.malformed)? {
            Val::Date(ms) | Val::Long(ms) => Some(ms),
            Val::Double(d) if d.is_finite() => Some(d.trunc() as i64),
            _ => None,
        }
    }
    fn tiebreaker(&self, event: &Event) -> Option<KeyValue> {
        let acc = self.tiebreaker.as_ref()?;
        acc.first(&event.source, &self.malformed).map(|v| v.to_key())
    }
}
