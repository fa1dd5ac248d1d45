//! The EQL syntax tree, as written by the user (before analysis against a mapping).
//!
//! The parser produces it, the analyser types it against a field mapping, the evaluator and the sequence
//! matcher run it, and pushdown derives a Query DSL filter from it. Every node that can be blamed in an
//! error message carries a [`Span`].

/// A place in the query text. `line` and `col` are 1-based; `col` counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset one past the last character.
    pub end: usize,
    pub line: u32,
    pub col: u32,
}

/// A whole query: an event query, a sequence or a sample, followed by pipes.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub body: QueryBody,
    pub pipes: Vec<Pipe>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueryBody {
    /// `<category> where <condition>` or `any where <condition>`.
    Event(EventFilter),
    Sequence(Sequence),
    Sample(Sample),
}

/// `<category> where <condition>`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFilter {
    /// `None` for `any where` (no category filter). Case-sensitive; matches any value of the
    /// event-category field.
    pub category: Option<String>,
    pub condition: Expr,
    pub span: Span,
}

/// `sequence [by k, ...] [with maxspan=N<unit>] [stage] [by ...] ... [until [stage] [by ...]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Keys shared by every stage (`sequence by ...`); they come first in each stage's join key.
    pub by: Vec<FieldRef>,
    /// Inclusive maximum span between the first and the last event, in milliseconds.
    pub maxspan_ms: Option<i64>,
    pub stages: Vec<Stage>,
    pub until: Option<Stage>,
    pub span: Span,
}

/// `sample [by k, ...] [filter] [by ...] [filter] [by ...] ...`: events sharing join-key values, one per
/// filter, in any time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Keys shared by every filter (`sample by ...`); they come first in each filter's join key.
    pub by: Vec<FieldRef>,
    /// The filters, as stages (never `missing`, always `runs == 1`).
    pub stages: Vec<Stage>,
    pub span: Span,
}

/// One bracketed stage of a sequence (or filter of a sample).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub filter: EventFilter,
    /// Stage-specific keys (`[...] by a, b`), appended after the sequence-level keys.
    pub by: Vec<FieldRef>,
    /// `with runs=N`: the stage is repeated N times (1 when absent).
    pub runs: u32,
    /// `![...]`: a missing-event stage.
    pub missing: bool,
}

/// `| head N` / `| tail N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    Head(u64),
    Tail(u64),
}

/// A field reference: `a.b.c`, `` `a b`.c ``, or the optional form `?a.b`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRef {
    /// The dotted path with back-quotes removed.
    pub path: String,
    /// Written `?field`: unknown to the mapping is not an error, and as a join key it may be null.
    pub optional: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    String(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// Operators that take a list of literal patterns on the right-hand side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `:` — case-insensitive equality, or a case-insensitive wildcard when a pattern holds `*` or `?`.
    Seq,
    /// `like` / `like~` — wildcard (`*`, `?`) over the whole value.
    Like,
    /// `regex` / `regex~` — Lucene regular expression over the whole value.
    Regex,
}

/// The EQL functions Elasticsearch supports. Names are case-insensitive in the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Add,
    Between,
    CidrMatch,
    Concat,
    Divide,
    EndsWith,
    IndexOf,
    Length,
    Modulo,
    Multiply,
    Number,
    StartsWith,
    String,
    StringContains,
    Substring,
    Subtract,
}

impl Function {
    /// Looks a function up by its case-insensitive name.
    pub fn from_name(name: &str) -> Option<Function> {
        use Function::*;
        Some(match name.to_ascii_lowercase().as_str() {
            "add" => Add,
            "between" => Between,
            "cidrmatch" => CidrMatch,
            "concat" => Concat,
            "divide" => Divide,
            "endswith" => EndsWith,
            "indexof" => IndexOf,
            "length" => Length,
            "modulo" => Modulo,
            "multiply" => Multiply,
            "number" => Number,
            "startswith" => StartsWith,
            "string" => String,
            "stringcontains" => StringContains,
            "substring" => Substring,
            "subtract" => Subtract,
            _ => return None,
        })
    }

    /// The canonical (Elasticsearch documentation) spelling.
    pub fn name(self) -> &'static str {
        use Function::*;
        match self {
            Add => "add",
            Between => "between",
            CidrMatch => "cidrMatch",
            Concat => "concat",
            Divide => "divide",
            EndsWith => "endsWith",
            IndexOf => "indexOf",
            Length => "length",
            Modulo => "modulo",
            Multiply => "multiply",
            Number => "number",
            StartsWith => "startsWith",
            String => "string",
            StringContains => "stringContains",
            Substring => "substring",
            Subtract => "subtract",
        }
    }

    /// Whether Elasticsearch accepts the case-insensitive `name~(...)` form.
    pub fn allows_insensitive(self) -> bool {
        use Function::*;
        matches!(self, Between | EndsWith | IndexOf | StartsWith | StringContains)
    }

    /// Accepted argument counts (inclusive range; `usize::MAX` = variadic).
    pub fn arity(self) -> (usize, usize) {
        use Function::*;
        match self {
            Add | Divide | Modulo | Multiply | Subtract => (2, 2),
            // ES: between(source, left, right[, greedy]); the Endgame 5th `case_sensitive` argument is not accepted.
            Between => (3, 4),
            CidrMatch => (2, usize::MAX),
            Concat => (1, usize::MAX),
            EndsWith | StartsWith | StringContains => (2, 2),
            IndexOf => (2, 3),
            Length | String => (1, 1),
            Number => (1, 2),
            Substring => (2, 3),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal, Span),
    Field(FieldRef),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>, Span),
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`.
    Compare { op: CompareOp, left: Box<Expr>, right: Box<Expr>, span: Span },
    /// `:`, `like`, `like~`, `regex`, `regex~` with one pattern or a parenthesised list of patterns.
    Match { op: MatchOp, case_insensitive: bool, expr: Box<Expr>, patterns: Vec<Expr>, span: Span },
    /// `in`, `in~`, `not in`.
    In { expr: Box<Expr>, values: Vec<Expr>, case_insensitive: bool, negated: bool, span: Span },
    /// Infix arithmetic `+ - * / %`.
    Arith { op: ArithOp, left: Box<Expr>, right: Box<Expr>, span: Span },
    /// Unary minus on a non-literal.
    Neg(Box<Expr>, Span),
    /// `name(args)` or `name~(args)`.
    Call { function: Function, case_insensitive: bool, args: Vec<Expr>, span: Span },
}

impl Expr {
    /// The text range this expression covers (for error messages).
    pub fn span(&self) -> Span {
        match self {
            Expr::Literal(_, s) | Expr::Not(_, s) | Expr::Neg(_, s) => *s,
            Expr::Field(f) => f.span,
            Expr::And(a, b) | Expr::Or(a, b) => {
                let (a, b) = (a.span(), b.span());
                Span { start: a.start, end: b.end, line: a.line, col: a.col }
            }
            Expr::Compare { span, .. }
            | Expr::Match { span, .. }
            | Expr::In { span, .. }
            | Expr::Arith { span, .. }
            | Expr::Call { span, .. } => *span,
        }
    }
}
