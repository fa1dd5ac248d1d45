//! EQL parser: query text → [`crate::ast::Query`], accepting what Elasticsearch's EQL grammar accepts
//! (`EqlBase.g4` plus the checks ES makes while building its plan), with errors that say what to change.
//!
//! Precedence, loosest first, as in ES: `or` < `and` < `not` < comparison (`== != < <= > >=`, not
//! chainable) < `+ -` < `* / %` < unary minus < a primary with an optional predicate (`:`, `like[~]`,
//! `regex[~]`, `[not] in[~]`). Note that, as in ES, the predicate binds to the primary just before it:
//! `a + b : "x"` is `a + (b : "x")`.
//!
//! Things ES rejects get a specific message here too: `=`, single quotes, chained comparisons, `sequence
//! with maxspan=.. by ..`, a maxspan without unit, unsupported pipes, `join`, lineage (`x of [...]`),
//! array indexes, unknown functions, wrong arity, `~` on a function without a case-insensitive form, and
//! the shape rules of `sample` (2 or more filters, no `with`/`until`/`![...]`/pipes) and of missing-event
//! stages (not as `until`). The rules over well-formed stages (join-key counts, `maxspan` with missing
//! events, a positive stage) are verification's, reported with every other problem at once. Recursion is bounded ([`MAX_NESTING`]) and so is the depth of the tree ([`MAX_TREE_DEPTH`]), so
//! no input can overflow the stack here or in later passes.
//!
//! `Display` is implemented for [`Query`] and its parts: it prints a normalised query (lower-case
//! keywords, canonical function names, minimal parentheses, largest exact maxspan unit) that parses back
//! to the same tree; `esdetect explain` uses it.

use crate::ast::*;
use crate::error::EqlError;
use crate::lexer::{tokenize, Token, TokenKind, KEYWORDS};
use std::fmt;

/// Maximum nesting of parentheses, `not`, unary minus and function calls.
pub const MAX_NESTING: usize = 100;
/// Maximum depth of the resulting expression tree (long `and`/`or` chains grow it one level per operand).
/// Later passes walk the tree recursively; 512 levels stay well inside a 2 MiB thread stack even in
/// debug builds (about 2000 levels overflowed one while printing).
pub const MAX_TREE_DEPTH: u32 = 512;
/// Largest `with runs=N` accepted by Elasticsearch.
pub const MAX_RUNS: u32 = 100;

/// Parses one EQL query (event query, sequence or sample, then pipes).
pub fn parse(text: &str) -> Result<Query, EqlError> {
    let tokens = tokenize(text)?;
    let mut p = Parser { tokens, pos: 0, nesting: 0 };
    let query = p.query()?;
    Ok(query)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    nesting: usize,
}

/// An expression and the depth of its tree.
type Node = (Expr, u32);
type PResult<T> = Result<T, EqlError>;

fn join_span(a: Span, b: Span) -> Span {
    Span { start: a.start, end: b.end.max(a.end), line: a.line, col: a.col }
}

/// Names of Endgame EQL functions that Elasticsearch does not implement.
const UNSUPPORTED_FUNCTIONS: &[&str] = &["arraycontains", "arraycount", "arraysearch", "match", "matchlite", "wildcard", "safe"];

const ALL_FUNCTIONS: &[Function] = &[
    Function::Add,
    Function::Between,
    Function::CidrMatch,
    Function::Concat,
    Function::Divide,
    Function::EndsWith,
    Function::IndexOf,
    Function::Length,
    Function::Modulo,
    Function::Multiply,
    Function::Number,
    Function::StartsWith,
    Function::String,
    Function::StringContains,
    Function::Substring,
    Function::Subtract,
];

/// Keywords spelled as words (`and`, `sequence`, ...), as opposed to punctuation.
fn is_word_keyword(kind: &TokenKind) -> bool {
    let sym = kind.symbol();
    !sym.is_empty() && sym.chars().all(|c| c.is_ascii_alphabetic())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Parser {
    // ---------------------------------------------------------------- token helpers

    fn peek(&self) -> &Token {
        // `tokenize` always ends with Eof and we never advance past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_kind(&self) -> &TokenKind {
        &self.peek().kind
    }

    fn peek_kind_at(&self, n: usize) -> &TokenKind {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].kind
    }

    fn advance(&mut self) -> Token {
        let t = self.peek().clone();
        if t.kind != TokenKind::Eof {
            self.pos += 1;
        }
        t
    }

    fn at(&self, kind: &TokenKind) -> bool {
        self.peek_kind() == kind
    }

    fn eat(&mut self, kind: &TokenKind) -> Option<Token> {
        if self.at(kind) {
            Some(self.advance())
        } else {
            None
        }
    }

    /// Span of the previous token (for closing spans).
    fn prev_span(&self) -> Span {
        if self.pos == 0 {
            self.peek().span
        } else {
            self.tokens[self.pos - 1].span
        }
    }

    fn expect(&mut self, kind: &TokenKind, what: &str) -> PResult<Token> {
        if self.at(kind) {
            Ok(self.advance())
        } else {
            Err(self.unexpected(what))
        }
    }

    /// "expected X, found Y", with hints for common slips (upper-case keywords, `=`).
    fn unexpected(&self, expected: &str) -> EqlError {
        let tok = self.peek();
        let mut msg = format!("expected {expected}, found {}", tok.kind.describe());
        match &tok.kind {
            TokenKind::Ident(w) => {
                let lower = w.to_ascii_lowercase();
                if KEYWORDS.iter().any(|(k, _)| *k == lower) {
                    msg.push_str(&format!(" (EQL keywords are lower-case: write `{lower}`)"));
                }
            }
            TokenKind::Assign => msg.push_str(" (use `==` for equality, or `:` for case-insensitive equality)"),
            _ => {}
        }
        EqlError::syntax(msg, tok.span)
    }

    fn enter(&mut self, span: Span) -> PResult<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(EqlError::syntax(
                format!("query is nested too deeply (more than {MAX_NESTING} levels of parentheses, `not` or function calls): simplify it"),
                span,
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    fn check_depth(depth: u32, span: Span) -> PResult<u32> {
        if depth > MAX_TREE_DEPTH {
            return Err(EqlError::syntax(
                format!("query is too large: its condition is more than {MAX_TREE_DEPTH} operators deep; split it or use `in (...)`"),
                span,
            ));
        }
        Ok(depth)
    }

    // ---------------------------------------------------------------- statements

    fn query(&mut self) -> PResult<Query> {
        let body = match self.peek_kind() {
            TokenKind::Sequence => QueryBody::Sequence(self.sequence()?),
            TokenKind::Sample => QueryBody::Sample(self.sample()?),
            TokenKind::Join => {
                return Err(EqlError::syntax("`join` queries are not supported by Elasticsearch EQL", self.peek().span))
            }
            _ => QueryBody::Event(self.event_filter()?),
        };
        let mut pipes = Vec::new();
        if matches!(body, QueryBody::Sample(_)) && self.at(&TokenKind::Pipe) {
            // ES documents no pipes for samples, and its sample executor limits results by `size` only.
            return Err(EqlError::syntax(
                "pipes after a `sample` query are not supported by esdetect; the number of samples is the \
                 request `size` (a rule's `max_signals`)",
                self.peek().span,
            ));
        }
        while self.at(&TokenKind::Pipe) {
            pipes.push(self.pipe()?);
        }
        if !self.at(&TokenKind::Eof) {
            let what = match self.peek_kind() {
                TokenKind::Assign => "the end of the query",
                _ => "`and`, `or`, `|` or the end of the query",
            };
            return Err(self.unexpected(what));
        }
        Ok(Query { body, pipes })
    }

    fn pipe(&mut self) -> PResult<Pipe> {
        self.expect(&TokenKind::Pipe, "`|`")?;
        let tok = self.advance();
        let name = match &tok.kind {
            TokenKind::Ident(n) => n.clone(),
            TokenKind::Eof => return Err(EqlError::syntax("expected a pipe name (`head` or `tail`) after `|`", tok.span)),
            other => other.symbol().to_string(),
        };
        let lower = name.to_ascii_lowercase();
        if lower != "head" && lower != "tail" {
            return Err(EqlError::syntax(
                format!("pipe `{name}` is not supported by Elasticsearch EQL (only `head N` and `tail N` are)"),
                tok.span,
            ));
        }
        let num = self.advance();
        let n = match &num.kind {
            TokenKind::Integer(text) => text.parse::<u64>().map_err(|_| {
                EqlError::syntax(format!("`{lower}` count `{text}` is too large"), num.span)
            })?,
            _ => {
                return Err(EqlError::syntax(
                    format!("pipe `{lower}` needs a non-negative whole number, e.g. `| {lower} 10`; found {}", num.kind.describe()),
                    num.span,
                ))
            }
        };
        if let TokenKind::Comma = self.peek_kind() {
            return Err(EqlError::syntax(format!("pipe `{lower}` takes a single number"), self.peek().span));
        }
        Ok(if lower == "head" { Pipe::Head(n) } else { Pipe::Tail(n) })
    }

    /// `<category> where <condition>` / `any where <condition>`.
    fn event_filter(&mut self) -> PResult<EventFilter> {
        let tok = self.advance();
        let category = match &tok.kind {
            TokenKind::Any => None,
            TokenKind::Ident(s) | TokenKind::QuotedIdent(s) | TokenKind::Str(s) => Some(s.clone()),
            TokenKind::Eof => {
                return Err(EqlError::syntax(
                    "empty query: expected `<event category> where <condition>`, `any where ...` or `sequence ...`",
                    tok.span,
                ))
            }
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("an event category (e.g. `process`, `any`) or `sequence`"));
            }
        };
        if !self.at(&TokenKind::Where) {
            let cat = category.as_deref().unwrap_or("any");
            if let TokenKind::Of = self.peek_kind() {
                return Err(EqlError::syntax(
                    "process relationships (`... of [...]`) are not supported by Elasticsearch EQL",
                    self.peek().span,
                ));
            }
            return Err(self.unexpected(&format!("`where` after the event category `{cat}`")));
        }
        self.advance();
        if self.at(&TokenKind::Eof) || self.at(&TokenKind::RBracket) || self.at(&TokenKind::Pipe) {
            return Err(self.unexpected("a condition after `where` (use `where true` to match every event)"));
        }
        let (condition, _) = self.expression()?;
        let span = join_span(tok.span, condition.span());
        Ok(EventFilter { category, condition, span })
    }

    fn sequence(&mut self) -> PResult<Sequence> {
        let seq_tok = self.expect(&TokenKind::Sequence, "`sequence`")?;
        let mut by = Vec::new();
        let mut maxspan_ms = None;
        if self.at(&TokenKind::By) {
            by = self.join_keys()?;
            if self.at(&TokenKind::With) {
                maxspan_ms = Some(self.maxspan()?);
            }
        } else if self.at(&TokenKind::With) {
            maxspan_ms = Some(self.maxspan()?);
            if self.at(&TokenKind::By) {
                return Err(EqlError::syntax(
                    "write `sequence by <keys>` before `with maxspan=...`, not after",
                    self.peek().span,
                ));
            }
        }
        let mut stages = Vec::new();
        while self.at(&TokenKind::LBracket) || self.at(&TokenKind::MissingOpen) {
            stages.push(self.stage()?);
        }
        let mut until = None;
        if let Some(u) = self.eat(&TokenKind::Until) {
            if !(self.at(&TokenKind::LBracket)) {
                if self.at(&TokenKind::MissingOpen) {
                    return Err(EqlError::syntax("an `until` stage cannot be a missing-event stage `![...]`", self.peek().span));
                }
                return Err(self.unexpected("`[` to open the `until` stage"));
            }
            let st = self.stage()?;
            if st.runs != 1 {
                return Err(EqlError::syntax("`with runs` is not allowed on the `until` stage", u.span));
            }
            until = Some(st);
        }
        let span = join_span(seq_tok.span, self.prev_span());
        let total: u32 = stages.iter().map(|s| s.runs).sum();
        if total < 2 {
            if stages.is_empty() && !self.at(&TokenKind::Eof) && !self.at(&TokenKind::Pipe) {
                return Err(self.unexpected("`[` to open a sequence stage"));
            }
            return Err(EqlError::syntax(
                format!("a sequence needs at least 2 stages `[ ... ]`, found {}", stages.len()),
                span,
            ));
        }
        // The shape rules over well-formed stages (a positive stage, `maxspan` with missing events, equal
        // join-key counts) are verification's (`analysis::verify::structure`), reported with every other
        // problem of the query at once.
        Ok(Sequence { by, maxspan_ms, stages, until, span })
    }

    /// `sample [by keys] [filter] [by keys] [filter] [by keys] ...` (at least 2 filters, join keys required).
    fn sample(&mut self) -> PResult<Sample> {
        let tok = self.expect(&TokenKind::Sample, "`sample`")?;
        let by = if self.at(&TokenKind::By) { self.join_keys()? } else { Vec::new() };
        if self.at(&TokenKind::With) {
            return Err(EqlError::syntax(
                "`sample` takes no `with` parameters (no maxspan: a sample ignores time order)",
                self.peek().span,
            ));
        }
        let mut stages = Vec::new();
        while self.at(&TokenKind::LBracket) || self.at(&TokenKind::MissingOpen) {
            if self.at(&TokenKind::MissingOpen) {
                return Err(EqlError::syntax(
                    "missing-event filters `![...]` are only allowed in a `sequence`, not in a `sample`",
                    self.peek().span,
                ));
            }
            let st = self.stage()?;
            if st.runs != 1 {
                return Err(EqlError::syntax("`with runs=N` is only allowed in a `sequence`, not in a `sample`", st.filter.span));
            }
            stages.push(st);
        }
        if self.at(&TokenKind::Until) {
            return Err(EqlError::syntax("`until` is only allowed in a `sequence`, not in a `sample`", self.peek().span));
        }
        let span = join_span(tok.span, self.prev_span());
        if stages.len() < 2 {
            if stages.is_empty() && !self.at(&TokenKind::Eof) && !self.at(&TokenKind::Pipe) {
                return Err(self.unexpected("`[` to open a sample filter"));
            }
            return Err(EqlError::syntax(
                format!("a sample needs at least 2 filters `[ ... ]`, found {}", stages.len()),
                span,
            ));
        }
        // Join keys (present, as many on every filter) are verification's, like a sequence's.
        Ok(Sample { by, stages, span })
    }

    /// `[ filter ] [by keys] [with runs=N]` or `![ filter ] ...`.
    fn stage(&mut self) -> PResult<Stage> {
        let open = self.advance();
        let missing = open.kind == TokenKind::MissingOpen;
        if self.at(&TokenKind::Sequence) {
            return Err(EqlError::syntax("a sequence cannot be nested inside a sequence stage", self.peek().span));
        }
        let mut filter = self.event_filter()?;
        let close = self.expect(&TokenKind::RBracket, "`]` to close the sequence stage (or `and`/`or` to continue the condition)")?;
        filter.span = join_span(open.span, close.span);
        let by = if self.at(&TokenKind::By) { self.join_keys()? } else { Vec::new() };
        let mut runs = 1;
        if let Some(with) = self.eat(&TokenKind::With) {
            let key = self.advance();
            match &key.kind {
                TokenKind::Ident(k) if k == "runs" => {}
                TokenKind::Maxspan => {
                    return Err(EqlError::syntax(
                        "`with maxspan` belongs after `sequence [by ...]`, not after a stage",
                        key.span,
                    ))
                }
                _ => return Err(EqlError::syntax(format!("expected `runs=N` after `with`, found {}", key.kind.describe()), key.span)),
            }
            self.expect_assign("runs")?;
            let n = self.advance();
            runs = match &n.kind {
                TokenKind::Integer(t) => t.parse::<u32>().ok().filter(|v| (1..=MAX_RUNS).contains(v)),
                _ => None,
            }
            .ok_or_else(|| {
                EqlError::syntax(
                    format!("`runs` must be a whole number between 1 and {MAX_RUNS}, found {}", n.kind.describe()),
                    join_span(with.span, n.span),
                )
            })?;
            if self.at(&TokenKind::By) {
                return Err(EqlError::syntax("write the stage's `by` keys before `with runs=...`", self.peek().span));
            }
        }
        Ok(Stage { filter, by, runs, missing })
    }

    fn expect_assign(&mut self, what: &str) -> PResult<()> {
        match self.peek_kind() {
            TokenKind::Assign => {
                self.advance();
                Ok(())
            }
            TokenKind::Eq => Err(EqlError::syntax(format!("write `{what}=`, with a single `=`"), self.peek().span)),
            _ => Err(self.unexpected(&format!("`=` after `{what}`"))),
        }
    }

    /// `with maxspan=N<unit>` → milliseconds.
    fn maxspan(&mut self) -> PResult<i64> {
        let with = self.expect(&TokenKind::With, "`with`")?;
        if let TokenKind::Ident(k) = self.peek_kind() {
            if k == "runs" {
                return Err(EqlError::syntax("`with runs=N` goes after a stage `[...]`, not after `sequence`", self.peek().span));
            }
        }
        self.expect(&TokenKind::Maxspan, "`maxspan` after `with`")?;
        self.expect_assign("maxspan")?;
        let num = self.advance();
        let value: i64 = match &num.kind {
            TokenKind::Integer(t) => t
                .parse()
                .map_err(|_| EqlError::syntax(format!("maxspan `{t}` is too large"), num.span))?,
            TokenKind::Decimal(t) => {
                return Err(EqlError::syntax(
                    format!("decimal maxspan `{t}` is not supported: use a whole number with a smaller unit (e.g. 1500ms)"),
                    num.span,
                ))
            }
            _ => {
                return Err(EqlError::syntax(
                    format!("expected a time span such as `5m` after `maxspan=`, found {}", num.kind.describe()),
                    num.span,
                ))
            }
        };
        let factor = match self.peek_kind() {
            TokenKind::Ident(u) => {
                let f = match u.as_str() {
                    "ms" => 1,
                    "s" => 1_000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    "d" => 86_400_000,
                    _ => {
                        return Err(EqlError::syntax(
                            format!("unknown time unit `{u}` in maxspan: use one of ms, s, m, h, d"),
                            self.peek().span,
                        ))
                    }
                };
                self.advance();
                f
            }
            _ => {
                return Err(EqlError::syntax(
                    format!("maxspan needs a time unit: did you mean `{value}s`? (units: ms, s, m, h, d)"),
                    num.span,
                ))
            }
        };
        let span = join_span(with.span, self.prev_span());
        if value <= 0 {
            return Err(EqlError::syntax("maxspan must be greater than zero", span));
        }
        value.checked_mul(factor).ok_or_else(|| EqlError::syntax("maxspan is too large", span))
    }

    /// `by expr, expr, ...` where every key must be a field.
    fn join_keys(&mut self) -> PResult<Vec<FieldRef>> {
        self.expect(&TokenKind::By, "`by`")?;
        let mut keys = Vec::new();
        loop {
            if matches!(self.peek_kind(), TokenKind::LBracket | TokenKind::MissingOpen | TokenKind::Eof | TokenKind::With) {
                return Err(self.unexpected("a field name after `by`"));
            }
            let (e, _) = self.expression()?;
            match e {
                Expr::Field(f) => keys.push(f),
                other => {
                    return Err(EqlError::syntax(
                        "a `by` join key must be a field name (functions and literals are not supported as keys)",
                        other.span(),
                    ))
                }
            }
            if self.eat(&TokenKind::Comma).is_none() {
                return Ok(keys);
            }
        }
    }

    // ---------------------------------------------------------------- expressions

    fn expression(&mut self) -> PResult<Node> {
        self.enter(self.peek().span)?;
        let r = self.or_expr();
        self.leave();
        r
    }

    fn or_expr(&mut self) -> PResult<Node> {
        let (mut left, mut depth) = self.and_expr()?;
        while self.eat(&TokenKind::Or).is_some() {
            let (right, rd) = self.and_expr()?;
            depth = Self::check_depth(depth.max(rd) + 1, right.span())?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok((left, depth))
    }

    fn and_expr(&mut self) -> PResult<Node> {
        let (mut left, mut depth) = self.not_expr()?;
        while self.eat(&TokenKind::And).is_some() {
            let (right, rd) = self.not_expr()?;
            depth = Self::check_depth(depth.max(rd) + 1, right.span())?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok((left, depth))
    }

    fn not_expr(&mut self) -> PResult<Node> {
        if let Some(not) = self.eat(&TokenKind::Not) {
            self.enter(not.span)?;
            let inner = self.not_expr();
            self.leave();
            let (e, d) = inner?;
            let span = join_span(not.span, e.span());
            return Ok((Expr::Not(Box::new(e), span), d + 1));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Node> {
        let (left, ld) = self.additive()?;
        let op = match self.peek_kind() {
            TokenKind::Eq => CompareOp::Eq,
            TokenKind::Neq => CompareOp::NotEq,
            TokenKind::Lt => CompareOp::Lt,
            TokenKind::Lte => CompareOp::Lte,
            TokenKind::Gt => CompareOp::Gt,
            TokenKind::Gte => CompareOp::Gte,
            TokenKind::Assign => {
                return Err(EqlError::syntax(
                    "`=` is not a comparison in EQL: use `==` for equality, or `:` for case-insensitive equality",
                    self.peek().span,
                ))
            }
            _ => return Ok((left, ld)),
        };
        self.advance();
        let (right, rd) = self.additive()?;
        if matches!(
            self.peek_kind(),
            TokenKind::Eq | TokenKind::Neq | TokenKind::Lt | TokenKind::Lte | TokenKind::Gt | TokenKind::Gte
        ) {
            return Err(EqlError::syntax(
                "comparisons cannot be chained: combine them with `and`, e.g. `a < b and b <= c`",
                self.peek().span,
            ));
        }
        let span = join_span(left.span(), right.span());
        let depth = ld.max(rd) + 1;
        Ok((Expr::Compare { op, left: Box::new(left), right: Box::new(right), span }, depth))
    }

    fn additive(&mut self) -> PResult<Node> {
        let (mut left, mut depth) = self.multiplicative()?;
        loop {
            let op = match self.peek_kind() {
                TokenKind::Plus => ArithOp::Add,
                TokenKind::Minus => ArithOp::Sub,
                _ => return Ok((left, depth)),
            };
            self.advance();
            let (right, rd) = self.multiplicative()?;
            let span = join_span(left.span(), right.span());
            depth = Self::check_depth(depth.max(rd) + 1, span)?;
            left = Expr::Arith { op, left: Box::new(left), right: Box::new(right), span };
        }
    }

    fn multiplicative(&mut self) -> PResult<Node> {
        let (mut left, mut depth) = self.unary()?;
        loop {
            let op = match self.peek_kind() {
                TokenKind::Star => ArithOp::Mul,
                TokenKind::Slash => ArithOp::Div,
                TokenKind::Percent => ArithOp::Mod,
                _ => return Ok((left, depth)),
            };
            self.advance();
            let (right, rd) = self.unary()?;
            let span = join_span(left.span(), right.span());
            depth = Self::check_depth(depth.max(rd) + 1, span)?;
            left = Expr::Arith { op, left: Box::new(left), right: Box::new(right), span };
        }
    }

    /// Unary `-`/`+`; a minus in front of a number literal folds into a negative literal (as ES does).
    fn unary(&mut self) -> PResult<Node> {
        let sign = match self.peek_kind() {
            TokenKind::Minus | TokenKind::Plus => self.advance(),
            _ => return self.predicated(),
        };
        self.enter(sign.span)?;
        let inner = self.unary();
        self.leave();
        let (e, d) = inner?;
        if sign.kind == TokenKind::Plus {
            return Ok((e, d));
        }
        let span = join_span(sign.span, e.span());
        Ok(match e {
            Expr::Literal(Literal::Long(v), _) => match v.checked_neg() {
                Some(n) => (Expr::Literal(Literal::Long(n), span), d),
                None => (Expr::Literal(Literal::Double(-(v as f64)), span), d),
            },
            Expr::Literal(Literal::Double(v), _) => (Expr::Literal(Literal::Double(-v), span), d),
            other => (Expr::Neg(Box::new(other), span), d + 1),
        })
    }

    /// A primary optionally followed by `:`/`like`/`regex` patterns or `[not] in (...)`.
    fn predicated(&mut self) -> PResult<Node> {
        let (expr, depth) = self.primary()?;
        let (op, ci) = match self.peek_kind() {
            TokenKind::Colon => (MatchOp::Seq, true),
            TokenKind::Like => (MatchOp::Like, false),
            TokenKind::LikeInsensitive => (MatchOp::Like, true),
            TokenKind::Regex => (MatchOp::Regex, false),
            TokenKind::RegexInsensitive => (MatchOp::Regex, true),
            TokenKind::In | TokenKind::InInsensitive => return self.in_list(expr, depth, false),
            TokenKind::Not if matches!(self.peek_kind_at(1), TokenKind::In | TokenKind::InInsensitive) => {
                self.advance();
                return self.in_list(expr, depth, true);
            }
            _ => return Ok((expr, depth)),
        };
        let op_tok = self.advance();
        let op_name = op_tok.kind.symbol();
        let mut patterns = Vec::new();
        if self.eat(&TokenKind::LParen).is_some() {
            loop {
                patterns.push(self.constant(op_name)?);
                if self.eat(&TokenKind::Comma).is_none() {
                    break;
                }
            }
            self.expect(&TokenKind::RParen, "`,` or `)` to close the pattern list")?;
        } else {
            patterns.push(self.constant(op_name)?);
        }
        let span = join_span(expr.span(), self.prev_span());
        Ok((Expr::Match { op, case_insensitive: ci, expr: Box::new(expr), patterns, span }, depth + 1))
    }

    /// A literal on the right of `:`, `like`, `regex` (a leading `-` is allowed on numbers).
    fn constant(&mut self, op: &str) -> PResult<Expr> {
        let neg = self.eat(&TokenKind::Minus);
        let tok = self.peek().clone();
        let lit = match &tok.kind {
            TokenKind::Integer(_) | TokenKind::Decimal(_) => match (self.number()?, neg.is_some()) {
                (Literal::Long(v), true) => v.checked_neg().map(Literal::Long).unwrap_or(Literal::Double(-(v as f64))),
                (Literal::Double(v), true) => Literal::Double(-v),
                (l, _) => l,
            },
            TokenKind::Str(s) if neg.is_none() => Literal::String(s.clone()),
            TokenKind::Null if neg.is_none() => Literal::Null,
            TokenKind::True if neg.is_none() => Literal::Bool(true),
            TokenKind::False if neg.is_none() => Literal::Bool(false),
            _ => {
                let mut msg = format!(
                    "the right-hand side of `{op}` must be a literal (usually a string) or a parenthesised list of literals, found {}",
                    tok.kind.describe()
                );
                if matches!(tok.kind, TokenKind::Ident(_) | TokenKind::QuotedIdent(_) | TokenKind::Question) {
                    msg.push_str("; comparing a field with another field is not supported by Elasticsearch EQL");
                }
                return Err(EqlError::syntax(msg, tok.span));
            }
        };
        if !matches!(tok.kind, TokenKind::Integer(_) | TokenKind::Decimal(_)) {
            self.advance();
        }
        let span = match &neg {
            Some(n) => join_span(n.span, tok.span),
            None => tok.span,
        };
        Ok(Expr::Literal(lit, span))
    }

    fn in_list(&mut self, expr: Expr, depth: u32, negated: bool) -> PResult<Node> {
        let op = self.advance();
        let ci = op.kind == TokenKind::InInsensitive;
        if !self.at(&TokenKind::LParen) {
            return Err(self.unexpected(&format!("`(` after `{}`: write a list such as `in (\"a\", \"b\")`", op.kind.symbol())));
        }
        self.advance();
        let mut values = Vec::new();
        let mut max_d = depth;
        loop {
            if self.at(&TokenKind::RParen) {
                return Err(self.unexpected("a value in the list"));
            }
            let (v, d) = self.expression()?;
            max_d = max_d.max(d);
            values.push(v);
            if self.eat(&TokenKind::Comma).is_none() {
                break;
            }
        }
        self.expect(&TokenKind::RParen, "`,` or `)` to close the list")?;
        let span = join_span(expr.span(), self.prev_span());
        Ok((Expr::In { expr: Box::new(expr), values, case_insensitive: ci, negated, span }, max_d + 1))
    }

    fn number(&mut self) -> PResult<Literal> {
        let tok = self.advance();
        match &tok.kind {
            TokenKind::Integer(t) => match t.parse::<i64>() {
                Ok(v) => Ok(Literal::Long(v)),
                // ES: an integer too large for a long is read as a double.
                Err(_) => match t.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(Literal::Double(v)),
                    _ => Err(EqlError::syntax(format!("number `{t}` is too large"), tok.span)),
                },
            },
            TokenKind::Decimal(t) => match t.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Literal::Double(v)),
                _ => Err(EqlError::syntax(format!("number `{t}` is too large"), tok.span)),
            },
            _ => Err(EqlError::syntax(format!("expected a number, found {}", tok.kind.describe()), tok.span)),
        }
    }

    fn primary(&mut self) -> PResult<Node> {
        let tok = self.peek().clone();
        match &tok.kind {
            TokenKind::Integer(_) | TokenKind::Decimal(_) => {
                let lit = self.number()?;
                Ok((Expr::Literal(lit, tok.span), 1))
            }
            TokenKind::Str(s) => {
                self.advance();
                Ok((Expr::Literal(Literal::String(s.clone()), tok.span), 1))
            }
            TokenKind::Null => {
                self.advance();
                Ok((Expr::Literal(Literal::Null, tok.span), 1))
            }
            TokenKind::True | TokenKind::False => {
                self.advance();
                Ok((Expr::Literal(Literal::Bool(tok.kind == TokenKind::True), tok.span), 1))
            }
            TokenKind::LParen => {
                self.advance();
                if self.at(&TokenKind::RParen) {
                    return Err(self.unexpected("an expression inside `( )`"));
                }
                let inner = self.expression()?;
                self.expect(&TokenKind::RParen, "`)`")?;
                Ok(inner)
            }
            TokenKind::TildeIdent(_) => self.call(),
            TokenKind::Ident(_) if *self.peek_kind_at(1) == TokenKind::LParen => self.call(),
            TokenKind::Ident(name) if *self.peek_kind_at(1) == TokenKind::Of => Err(EqlError::syntax(
                format!("process relationships (`{name} of [...]`) are not supported by Elasticsearch EQL"),
                tok.span,
            )),
            TokenKind::Ident(_) | TokenKind::QuotedIdent(_) | TokenKind::Question => {
                let f = self.field()?;
                Ok((Expr::Field(f), 1))
            }
            TokenKind::Eof => Err(EqlError::syntax("unexpected end of query: expected a value, field or condition", tok.span)),
            TokenKind::Assign => Err(EqlError::syntax(
                "`=` is not a comparison in EQL: use `==` for equality, or `:` for case-insensitive equality",
                tok.span,
            )),
            kind if is_word_keyword(kind) && !matches!(kind, TokenKind::Not) => Err(EqlError::syntax(
                format!(
                    "expected a value, field, function call or `(`, found the keyword `{0}` (to use it as a field name, put it in back-quotes: `` `{0}` ``)",
                    kind.symbol()
                ),
                tok.span,
            )),
            _ => Err(self.unexpected("a value, field, function call or `(`")),
        }
    }

    /// `[?] part (. part)*` where a part is an identifier or a back-quoted identifier.
    fn field(&mut self) -> PResult<FieldRef> {
        let start = self.peek().span;
        let optional = self.eat(&TokenKind::Question).is_some();
        let mut parts = Vec::new();
        loop {
            let tok = self.advance();
            match &tok.kind {
                TokenKind::Ident(s) | TokenKind::QuotedIdent(s) => parts.push(s.clone()),
                kind if is_word_keyword(kind) => {
                    return Err(EqlError::syntax(
                        format!("`{0}` is a reserved keyword: to use it as a field name, put it in back-quotes (`` `{0}` ``)", kind.symbol()),
                        tok.span,
                    ))
                }
                _ => {
                    self.pos -= usize::from(tok.kind != TokenKind::Eof);
                    return Err(self.unexpected("a field name"));
                }
            }
            if self.at(&TokenKind::Dot) {
                self.advance();
                continue;
            }
            if let TokenKind::Decimal(d) = self.peek_kind() {
                if d.starts_with('.') {
                    return Err(EqlError::syntax(
                        "a field name part cannot start with a digit: back-quote it, e.g. a.`1b`",
                        self.peek().span,
                    ));
                }
            }
            if self.at(&TokenKind::LBracket) && matches!(self.peek_kind_at(1), TokenKind::Integer(_)) {
                return Err(EqlError::syntax("array indexes are not supported by Elasticsearch EQL", self.peek().span));
            }
            break;
        }
        let span = join_span(start, self.prev_span());
        Ok(FieldRef { path: parts.join("."), optional, span })
    }

    fn call(&mut self) -> PResult<Node> {
        let name_tok = self.advance();
        let (name, tilde) = match &name_tok.kind {
            TokenKind::Ident(n) => (n.clone(), false),
            TokenKind::TildeIdent(n) => (n.clone(), true),
            _ => return Err(EqlError::syntax("expected a function name", name_tok.span)),
        };
        let function = Function::from_name(&name).ok_or_else(|| Self::unknown_function(&name, name_tok.span))?;
        if tilde && !function.allows_insensitive() {
            return Err(EqlError::syntax(
                format!(
                    "function `{}` has no case-insensitive form: remove the `~` (only between, endsWith, indexOf, startsWith and stringContains accept it)",
                    function.name()
                ),
                name_tok.span,
            ));
        }
        if !self.at(&TokenKind::LParen) {
            return Err(self.unexpected(&format!("`(` after the function name `{name}~` (no space before `~`)")));
        }
        let open = self.advance();
        self.enter(open.span)?;
        let r = self.call_args();
        self.leave();
        let (args, depth) = r?;
        let close = self.prev_span();
        let span = join_span(name_tok.span, close);
        let (min, max) = function.arity();
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min} argument{}", if min == 1 { "" } else { "s" })
            } else if max == usize::MAX {
                format!("at least {min} argument{}", if min == 1 { "" } else { "s" })
            } else if max == min + 1 {
                format!("{min} or {max} arguments")
            } else {
                format!("{min} to {max} arguments")
            };
            return Err(EqlError::syntax(
                format!(
                    "function `{}` takes {expected}, but {} {} given",
                    function.name(),
                    args.len(),
                    if args.len() == 1 { "was" } else { "were" }
                ),
                span,
            ));
        }
        Ok((Expr::Call { function, case_insensitive: tilde, args, span }, Self::check_depth(depth + 1, span)?))
    }

    fn call_args(&mut self) -> PResult<(Vec<Expr>, u32)> {
        let mut args = Vec::new();
        let mut depth = 0;
        if self.eat(&TokenKind::RParen).is_some() {
            return Ok((args, depth));
        }
        loop {
            let (a, d) = self.expression()?;
            depth = depth.max(d);
            args.push(a);
            if self.eat(&TokenKind::Comma).is_none() {
                break;
            }
        }
        self.expect(&TokenKind::RParen, "`,` or `)` to close the function arguments")?;
        Ok((args, depth))
    }

    fn unknown_function(name: &str, span: Span) -> EqlError {
        let lower = name.to_ascii_lowercase();
        if UNSUPPORTED_FUNCTIONS.contains(&lower.as_str()) {
            return EqlError::syntax(format!("function `{name}` is not supported by Elasticsearch EQL"), span);
        }
        let mut close: Vec<(usize, &str)> = ALL_FUNCTIONS
            .iter()
            .map(|f| (edit_distance(&lower, &f.name().to_ascii_lowercase()), f.name()))
            .filter(|(d, n)| *d <= 2.max(n.len() / 4))
            .collect();
        close.sort();
        let hint = match close.first() {
            Some((_, n)) => format!("; did you mean `{n}`?"),
            None => {
                let all: Vec<&str> = ALL_FUNCTIONS.iter().map(|f| f.name()).collect();
                format!("; known functions: {}", all.join(", "))
            }
        };
        EqlError::syntax(format!("unknown function `{name}`{hint}"), span)
    }
}

// ---------------------------------------------------------------------------------------------------
// Printing: a normalised query that parses back to the same tree (spans aside).

/// Precedence levels used to decide where the printer needs parentheses.
fn prec(e: &Expr) -> u8 {
    match e {
        Expr::Or(..) => 1,
        Expr::And(..) => 2,
        Expr::Not(..) => 3,
        Expr::Compare { .. } => 4,
        Expr::Arith { op: ArithOp::Add | ArithOp::Sub, .. } => 5,
        Expr::Arith { .. } => 6,
        Expr::Neg(..) => 7,
        Expr::Literal(Literal::Long(v), _) if *v < 0 => 7,
        Expr::Literal(Literal::Double(v), _) if v.is_sign_negative() => 7,
        Expr::Match { .. } | Expr::In { .. } => 8,
        Expr::Literal(..) | Expr::Field(_) | Expr::Call { .. } => 9,
    }
}

struct Wrap<'a>(&'a Expr, u8);

impl fmt::Display for Wrap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if prec(self.0) < self.1 {
            write!(f, "({})", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{{{:04x}}}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

fn write_ident(f: &mut fmt::Formatter<'_>, part: &str) -> fmt::Result {
    if crate::lexer::is_plain_identifier(part) {
        f.write_str(part)
    } else {
        write!(f, "`{}`", part.replace('`', "``"))
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Long(v) => write!(f, "{v}"),
            // `{:?}` is the shortest text that reads back to the same f64 and always has `.` or `e`.
            Literal::Double(v) => write!(f, "{v:?}"),
            Literal::String(s) => write_string(f, s),
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.optional {
            f.write_str("?")?;
        }
        for (i, part) in self.path.split('.').enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write_ident(f, part)?;
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(l, _) => write!(f, "{l}"),
            Expr::Field(fr) => write!(f, "{fr}"),
            Expr::Or(a, b) => write!(f, "{} or {}", Wrap(a, 1), Wrap(b, 2)),
            Expr::And(a, b) => write!(f, "{} and {}", Wrap(a, 2), Wrap(b, 3)),
            Expr::Not(e, _) => write!(f, "not {}", Wrap(e, 3)),
            Expr::Compare { op, left, right, .. } => {
                let sym = match op {
                    CompareOp::Eq => "==",
                    CompareOp::NotEq => "!=",
                    CompareOp::Lt => "<",
                    CompareOp::Lte => "<=",
                    CompareOp::Gt => ">",
                    CompareOp::Gte => ">=",
                };
                write!(f, "{} {sym} {}", Wrap(left, 5), Wrap(right, 5))
            }
            Expr::Arith { op, left, right, .. } => {
                let (sym, p) = match op {
                    ArithOp::Add => ("+", 5),
                    ArithOp::Sub => ("-", 5),
                    ArithOp::Mul => ("*", 6),
                    ArithOp::Div => ("/", 6),
                    ArithOp::Mod => ("%", 6),
                };
                write!(f, "{} {sym} {}", Wrap(left, p), Wrap(right, p + 1))
            }
            // The parser never builds `Neg` of a number literal (it folds), so `-x` reads back the same.
            // A chain of minuses prints as `- -x`, not `-(-x)`: parentheses would add nesting levels, and a
            // chain that parsed within the nesting limit must print back within it too.
            Expr::Neg(e, _) if matches!(**e, Expr::Neg(..)) => write!(f, "- {e}"),
            Expr::Neg(e, _) => write!(f, "-{}", Wrap(e, 8)),
            Expr::Match { op, case_insensitive, expr, patterns, .. } => {
                let sym = match (op, case_insensitive) {
                    (MatchOp::Seq, _) => ":",
                    (MatchOp::Like, false) => "like",
                    (MatchOp::Like, true) => "like~",
                    (MatchOp::Regex, false) => "regex",
                    (MatchOp::Regex, true) => "regex~",
                };
                write!(f, "{} {sym} ", Wrap(expr, 9))?;
                write_list(f, patterns, patterns.len() != 1)
            }
            Expr::In { expr, values, case_insensitive, negated, .. } => {
                write!(f, "{} ", Wrap(expr, 9))?;
                if *negated {
                    f.write_str("not ")?;
                }
                f.write_str(if *case_insensitive { "in~ " } else { "in " })?;
                write_list(f, values, true)
            }
            Expr::Call { function, case_insensitive, args, .. } => {
                f.write_str(function.name())?;
                if *case_insensitive {
                    f.write_str("~")?;
                }
                write_list(f, args, true)
            }
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Expr], parens: bool) -> fmt::Result {
    if parens {
        f.write_str("(")?;
    }
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        // Negative literals in a pattern list are fine: the list is parsed as constants.
        write!(f, "{e}")?;
    }
    if parens {
        f.write_str(")")?;
    }
    Ok(())
}

impl fmt::Display for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.category {
            None => f.write_str("any")?,
            Some(c) if crate::lexer::is_plain_identifier(c) => f.write_str(c)?,
            Some(c) => write_string(f, c)?,
        }
        write!(f, " where {}", self.condition)
    }
}

fn write_keys(f: &mut fmt::Formatter<'_>, keys: &[FieldRef]) -> fmt::Result {
    if keys.is_empty() {
        return Ok(());
    }
    f.write_str(" by ")?;
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{k}")?;
    }
    Ok(())
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", if self.missing { "!" } else { "" }, self.filter)?;
        write_keys(f, &self.by)?;
        if self.runs != 1 {
            write!(f, " with runs={}", self.runs)?;
        }
        Ok(())
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sequence")?;
        write_keys(f, &self.by)?;
        if let Some(ms) = self.maxspan_ms {
            let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")];
            let (n, unit) = units
                .iter()
                .find(|(u, _)| ms % u == 0)
                .map(|(u, name)| (ms / u, *name))
                .unwrap_or((ms, "ms"));
            write!(f, " with maxspan={n}{unit}")?;
        }
        for s in &self.stages {
            write!(f, "\n  {s}")?;
        }
        if let Some(u) = &self.until {
            write!(f, "\nuntil {u}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sample")?;
        write_keys(f, &self.by)?;
        for s in &self.stages {
            write!(f, "\n  {s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body {
            QueryBody::Event(e) => write!(f, "{e}")?,
            QueryBody::Sequence(s) => write!(f, "{s}")?,
            QueryBody::Sample(s) => write!(f, "{s}")?,
        }
        for p in &self.pipes {
            match p {
                Pipe::Head(n) => write!(f, "\n| head {n}")?,
                Pipe::Tail(n) => write!(f, "\n| tail {n}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cond(q: &str) -> Expr {
        match parse(q).unwrap_or_else(|e| panic!("{q}: {}", e.render(q))).body {
            QueryBody::Event(e) => e.condition,
            QueryBody::Sequence(_) | QueryBody::Sample(_) => panic!("not an event query"),
        }
    }

    fn err(q: &str) -> EqlError {
        match parse(q) {
            Ok(parsed) => panic!("{q} should not parse, got {parsed:?}"),
            Err(e) => e,
        }
    }

    /// The query printed fully parenthesised-by-structure, for precedence checks.
    fn shape(e: &Expr) -> String {
        match e {
            Expr::Literal(l, _) => l.to_string(),
            Expr::Field(f) => f.path.clone(),
            Expr::And(a, b) => format!("(and {} {})", shape(a), shape(b)),
            Expr::Or(a, b) => format!("(or {} {})", shape(a), shape(b)),
            Expr::Not(a, _) => format!("(not {})", shape(a)),
            Expr::Neg(a, _) => format!("(neg {})", shape(a)),
            Expr::Compare { op, left, right, .. } => format!("({op:?} {} {})", shape(left), shape(right)),
            Expr::Arith { op, left, right, .. } => format!("({op:?} {} {})", shape(left), shape(right)),
            Expr::Match { op, expr, patterns, .. } => {
                format!("({op:?} {} [{}])", shape(expr), patterns.iter().map(shape).collect::<Vec<_>>().join(" "))
            }
            Expr::In { expr, values, negated, .. } => {
                format!("({}in {} [{}])", if *negated { "not" } else { "" }, shape(expr), values.iter().map(shape).collect::<Vec<_>>().join(" "))
            }
            Expr::Call { function, args, .. } => {
                format!("({} {})", function.name(), args.iter().map(shape).collect::<Vec<_>>().join(" "))
            }
        }
    }

    fn s(q: &str) -> String {
        shape(&cond(&format!("any where {q}")))
    }

    #[test]
    fn minus_chains_print_back_within_the_nesting_limit() {
        // Found by the `parse` fuzz target: `-(-(...))` doubled the nesting of a chain of unary minuses.
        let text = format!("process where x {}w == 1", "-".repeat(60));
        let q = parse(&text).unwrap();
        let printed = q.to_string();
        let again = parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(again.to_string(), printed);
        assert!(!printed.contains('('), "{printed}");
    }

    #[test]
    fn precedence_follows_elasticsearch() {
        assert_eq!(s("a or b and c"), "(or a (and b c))");
        assert_eq!(s("a and b or c"), "(or (and a b) c)");
        assert_eq!(s("not a and b"), "(and (not a) b)");
        assert_eq!(s("not a == 1"), "(not (Eq a 1))");
        assert_eq!(s("a + b * c == 7"), "(Eq (Add a (Mul b c)) 7)");
        assert_eq!(s("a - b - c == 1"), "(Eq (Sub (Sub a b) c) 1)");
        assert_eq!(s("-a * b > 0"), "(Gt (Mul (neg a) b) 0)");
        // The predicate binds to the primary just before it, as in ES's grammar.
        assert_eq!(s("a + b : \"x\""), "(Add a (Seq b [\"x\"]))");
        assert_eq!(s("a not in (1, 2) or b in~ (\"x\")"), "(or (notin a [1 2]) (in b [\"x\"]))");
        assert_eq!(s("(a or b) and c"), "(and (or a b) c)");
        assert_eq!(s("x > -1"), "(Gt x -1)");
        assert_eq!(s("null == (exit_code > -1)"), "(Eq null (Gt exit_code -1))");
    }

    #[test]
    fn literals() {
        assert!(matches!(cond("any where x == 9223372036854775807"), Expr::Compare { right, .. } if matches!(*right, Expr::Literal(Literal::Long(i64::MAX), _))));
        // Too large for a long → double, as Elasticsearch does.
        assert!(matches!(cond("any where x == 9223372036854775808"), Expr::Compare { right, .. } if matches!(*right, Expr::Literal(Literal::Double(v), _) if v == 9_223_372_036_854_775_808.0_f64)));
        assert!(matches!(cond("any where x == -9223372036854775808"), Expr::Compare { right, .. } if matches!(*right, Expr::Literal(Literal::Double(v), _) if v == -9_223_372_036_854_775_808.0_f64)));
        assert!(matches!(cond("any where x == 1.5e3"), Expr::Compare { right, .. } if matches!(*right, Expr::Literal(Literal::Double(v), _) if v == 1500.0)));
        assert!(err("any where x == 1e999").message.contains("too large"));
        assert!(matches!(cond("any where x : \"\"\"C:\\temp\\*\"\"\""), Expr::Match { patterns, .. } if matches!(&patterns[0], Expr::Literal(Literal::String(s), _) if s == "C:\\temp\\*")));
        assert!(matches!(cond("any where ?a.`b c`.`d``e` == true"), Expr::Compare { left, .. } if matches!(&*left, Expr::Field(f) if f.optional && f.path == "a.b c.d`e")));
        assert!(matches!(cond("any where @timestamp > 0"), Expr::Compare { left, .. } if matches!(&*left, Expr::Field(f) if f.path == "@timestamp")));
    }

    #[test]
    fn categories() {
        for (q, cat) in [
            ("process where true", Some("process")),
            ("\"my-cat\" where true", Some("my-cat")),
            ("\"\"\"6x\"\"\" where true", Some("6x")),
            ("`a b` where true", Some("a b")),
            ("any where true", None),
        ] {
            let QueryBody::Event(e) = parse(q).unwrap().body else { panic!() };
            assert_eq!(e.category.as_deref(), cat, "{q}");
        }
    }

    #[test]
    fn sequence_forms() {
        let q = parse("sequence with maxspan=500ms [a where true] by x ![b where true] by y [c where true] by z with runs=3 until [d where true] by w").unwrap();
        let QueryBody::Sequence(seq) = q.body else { panic!() };
        assert_eq!(seq.maxspan_ms, Some(500));
        assert_eq!(seq.stages.len(), 3);
        assert!(seq.stages[1].missing && !seq.stages[0].missing);
        assert_eq!(seq.stages[2].runs, 3);
        assert_eq!(seq.until.as_ref().map(|u| u.by[0].path.as_str()), Some("w"));
        for (text, ms) in [("1d", 86_400_000), ("2h", 7_200_000), ("5m", 300_000), ("10s", 10_000), ("7ms", 7)] {
            let QueryBody::Sequence(seq) = parse(&format!("sequence with maxspan={text} [a where true] [b where true]")).unwrap().body else { panic!() };
            assert_eq!(seq.maxspan_ms, Some(ms), "{text}");
        }
        // A single stage repeated counts as two.
        assert!(parse("sequence [a where true] with runs=2").is_ok());
    }

    #[test]
    fn sequence_errors() {
        assert!(err("sequence with maxspan=5 [a where true] [b where true]").message.contains("did you mean `5s`"));
        assert!(err("sequence with maxspan=5y [a where true] [b where true]").message.contains("unknown time unit `y`"));
        assert!(err("sequence with maxspan=1.5m [a where true] [b where true]").message.contains("decimal"));
        assert!(err("sequence with maxspan=0s [a where true] [b where true]").message.contains("greater than zero"));
        assert!(err("sequence with maxspan=5m by x [a where true] [b where true]").message.contains("before `with maxspan"));
        assert!(err("sequence [a where true]").message.contains("at least 2 stages"));
        assert!(err("sequence [a where true] [b where true] with runs=101").message.contains("between 1 and 100"));
        assert!(err("sequence [a where true] [b where true] with runs=0").message.contains("between 1 and 100"));
        assert!(err("sequence by length(x) [a where true] [b where true]").message.contains("must be a field"));
        assert!(err("sequence [a where true [b where true]").message.contains("`]`"));
    }

    #[test]
    fn sample_forms() {
        let q = parse("sample by host [any where uptime > 0] by os [failure where port > 100] by op_sys").unwrap();
        let QueryBody::Sample(smp) = q.body else { panic!() };
        assert_eq!(smp.by.iter().map(|k| k.path.as_str()).collect::<Vec<_>>(), vec!["host"]);
        assert_eq!(smp.stages.len(), 2);
        assert_eq!(smp.stages[1].filter.category.as_deref(), Some("failure"));
        assert_eq!(smp.stages[1].by[0].path, "op_sys");
        // Keys only per filter, and optional keys.
        assert!(parse("sample [a where true] by ?x [b where true] by ?y").is_ok());
        assert!(parse("sample by ?x, y [a where true] [b where true] [c where true] [d where true] [e where true]").is_ok());
    }

    #[test]
    fn sample_errors() {
        let e = err("sample by h [a where true]");
        assert!(e.message.contains("at least 2 filters"), "{}", e.message);
        let e = err("sample by h [a where true] ![b where true]");
        assert!(e.message.contains("only allowed in a `sequence`"), "{}", e.message);
        assert_eq!(e.span.col, 28);
        assert!(err("sample by h [a where true] [b where true] with runs=2").message.contains("`with runs=N`"));
        assert!(err("sample by h with maxspan=1m [a where true] [b where true]").message.contains("no `with` parameters"));
        assert!(err("sample by h [a where true] [b where true] until [c where true]").message.contains("`until`"));
        let e = err("sample by h [a where true] [b where true] | head 1");
        assert!(e.message.contains("pipes after a `sample` query are not supported") && e.is_unsupported(), "{}", e.message);
    }

    #[test]
    fn pipes() {
        let q = parse("any where true | head 5 | tail 2").unwrap();
        assert_eq!(q.pipes, vec![Pipe::Head(5), Pipe::Tail(2)]);
        for p in ["unique a", "filter a == 1", "count", "sort a", "unique_count a"] {
            let e = err(&format!("any where true | {p}"));
            let name = p.split(' ').next().unwrap();
            assert!(e.message.contains(&format!("pipe `{name}` is not supported by Elasticsearch EQL")), "{}", e.message);
        }
        assert!(err("any where true | head").message.contains("whole number"));
        assert!(err("any where true | head -1").message.contains("whole number"));
    }

    #[test]
    fn helpful_errors() {
        let e = err("process where a = 1");
        assert!(e.message.contains("use `==`"), "{}", e.message);
        assert_eq!((e.span.line, e.span.col), (1, 17));

        let e = err("process where a == 'x'");
        assert!(e.message.contains("double quotes"), "{}", e.message);
        assert_eq!(e.span.col, 20);

        let e = err("process where startWith(a, \"x\")");
        assert!(e.message.contains("unknown function `startWith`") && e.message.contains("did you mean `startsWith`"), "{}", e.message);
        let e = err("process where frobnicate(a)");
        assert!(e.message.contains("unknown function `frobnicate`") && e.message.contains("known functions"), "{}", e.message);

        let e = err("process where substring(a)");
        assert!(e.message.contains("`substring` takes 2 or 3 arguments, but 1 was given"), "{}", e.message);
        let e = err("process where length(a, b)");
        assert!(e.message.contains("takes 1 argument,"), "{}", e.message);
        let e = err("process where between(a, \"x\", \"y\", true, true)");
        assert!(e.message.contains("3 or 4 arguments"), "{}", e.message);
        let e = err("process where length~(a) == 1");
        assert!(e.message.contains("no case-insensitive form"), "{}", e.message);
        assert!(cond("process where CONCAT(a, \"b\") == \"c\"") != cond("process where true"));

        // Unterminated string on line 2: the error points at the opening quote.
        let src = "process where\n  a == \"abc";
        let e = err(src);
        assert!(e.message.contains("unterminated string"));
        assert_eq!((e.span.line, e.span.col), (2, 8));
        let rendered = e.render(src);
        assert!(rendered.starts_with("2:8: unterminated string"), "{rendered}");
        assert!(rendered.ends_with("\n    a == \"abc\n         ^"), "caret under the opening quote:\n{rendered}");

        assert!(err("process where a < b <= c").message.contains("cannot be chained"));
        assert!(err("process where a == 1 &&  b == 2").message.contains("use `and`"));
        assert!(err("process where").message.contains("condition after `where`"));
        assert!(err("").message.contains("empty query"));
        assert!(err("process where (a == 1").message.contains("expected `)`"));
        assert!(err("process where a == 1)").message.contains("found `)`"));
        assert!(err("process where a : b").message.contains("another field"));
        assert!(err("process where a[0] == 1").message.contains("array indexes are not supported"));
        assert!(err("PROCESS WHERE a == 1").message.contains("write `where`"));
        assert!(err("process where a == 1 AND b == 2").message.contains("write `and`"));
        assert!(err("process where sequence == 1").message.contains("back-quotes"));
        assert!(parse("process where `sequence` == 1").is_ok());
        assert!(err("process where \"\\q\"").message.contains("unknown escape"));
        assert!(err("process where a == 1 /* open").message.contains("unterminated comment"));
    }

    #[test]
    fn spans_point_at_source() {
        let src = "process where\n  user.name : \"x\" and not b";
        let e = cond(src);
        let Expr::And(l, r) = &e else { panic!() };
        let ls = l.span();
        assert_eq!(&src[ls.start..ls.end], "user.name : \"x\"");
        assert_eq!((ls.line, ls.col), (2, 3));
        let rs = r.span();
        assert_eq!(&src[rs.start..rs.end], "not b");
        assert_eq!(&src[e.span().start..e.span().end], "user.name : \"x\" and not b");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("any where {}a{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(err(&deep).message.contains("nested too deeply"));
        let nots = format!("any where {}a", "not ".repeat(10_000));
        assert!(err(&nots).message.contains("nested too deeply"));
        let calls = format!("any where {}a{}", "length(".repeat(5_000), ")".repeat(5_000));
        assert!(err(&calls).message.contains("nested too deeply"));
        let minus = format!("any where {}a == 1", "-".repeat(10_000));
        assert!(err(&minus).message.contains("nested too deeply"));
        // Long flat chains are fine up to the tree limit, then a clear error.
        let ok_chain = format!("any where a == 1{}", " or a == 1".repeat(400));
        assert!(parse(&ok_chain).is_ok());
        // Just under the tree limit: parsing, printing and dropping must not overflow the stack.
        let near = format!("any where a == 1{}", " or a == 1".repeat(MAX_TREE_DEPTH as usize - 5));
        let parsed = parse(&near).unwrap();
        assert!(parse(&parsed.to_string()).is_ok());
        drop(parsed);
        let long_chain = format!("any where a == 1{}", " or a == 1".repeat(50_000));
        assert!(err(&long_chain).message.contains("too large"));
        // Moderate nesting within the limits still parses.
        let fine = format!("any where {}a == 1{}", "(".repeat(50), ")".repeat(50));
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn printer_round_trips_tricky_trees() {
        for q in [
            "any where a and (b and c)",
            "any where a or (b or c)",
            "any where not (a and b)",
            "any where (-5) : \"x\"",
            "any where -(a + b) > 1",
            "any where --a > 1",
            "any where -\"s\" == 1",
            "any where (a + b) in (1, -2.5)",
            "any where a - (b - c) == 1",
            "any where a / (b * c) == 1",
            "any where (a == 1) == (b < 2)",
            "any where x : (\"a\", \"b*\") and y like~ \"Q?\" and z regex \".*\" and w regex~ (\"a\", \"b\")",
            "any where s == \"tab\\there \\\"quoted\\\" back\\\\slash \\u{01}\"",
            "any where ?`a-b`.`c``d`.e == 1.0 and `and` == 2",
            "any where 1e20 == 1.5e-7",
            "\"my cat\" where startsWith~(a, \"b\") and between(a, \"x\", \"y\", true) : \"q\"",
            "sequence by a, ?b with maxspan=90s [x where true] by c ![y where true] by d [z where true] by e with runs=2 until [w where true] by f | head 3 | tail 1",
            "sample by a, ?b [x where c > 1] by c [\"y z\" where true] by d [any where e : \"f*\"] by g",
            "sequence with maxspan=1m ![x where true] [y where true] ![z where true] with runs=2",
        ] {
            let parsed = parse(q).unwrap_or_else(|e| panic!("{q}: {}", e.render(q)));
            let printed = parsed.to_string();
            let again = parse(&printed).unwrap_or_else(|e| panic!("{printed}: {}", e.render(&printed)));
            assert_eq!(printed, again.to_string(), "printing is stable");
            assert_eq!(shape_q(&parsed), shape_q(&again), "{q} → {printed}");
        }
        // Normalisation: canonical function names, lower-case keywords, units.
        let p = parse("sequence with maxspan=120000ms [a where CIDRMATCH(x, \"10.0.0.0/8\")] [b where true]").unwrap();
        assert_eq!(p.to_string(), "sequence with maxspan=2m\n  [a where cidrMatch(x, \"10.0.0.0/8\")]\n  [b where true]");
    }

    fn shape_q(q: &Query) -> String {
        match &q.body {
            QueryBody::Event(e) => format!("{:?} {} {:?}", e.category, shape(&e.condition), q.pipes),
            QueryBody::Sequence(s) => {
                let stage = |st: &Stage| {
                    format!("{}{:?}:{}:{:?}:{}", if st.missing { "!" } else { "" }, st.filter.category, shape(&st.filter.condition),
                        st.by.iter().map(|f| (f.path.clone(), f.optional)).collect::<Vec<_>>(), st.runs)
                };
                format!(
                    "{:?} {:?} {:?} {:?} {:?}",
                    s.by.iter().map(|f| (f.path.clone(), f.optional)).collect::<Vec<_>>(),
                    s.maxspan_ms,
                    s.stages.iter().map(stage).collect::<Vec<_>>(),
                    s.until.as_ref().map(stage),
                    q.pipes
                )
            }
            QueryBody::Sample(s) => format!(
                "sample {:?} {:?} {:?}",
                s.by.iter().map(|f| (f.path.clone(), f.optional)).collect::<Vec<_>>(),
                s.stages
                    .iter()
                    .map(|st| format!("{:?}:{}:{:?}", st.filter.category, shape(&st.filter.condition),
                        st.by.iter().map(|f| (f.path.clone(), f.optional)).collect::<Vec<_>>()))
                    .collect::<Vec<_>>(),
                q.pipes
            ),
        }
    }

    const SOUP: &[&str] = &[
        "sequence", "by", "with", "maxspan", "=", "5m", "[", "]", "![", "until", "any", "where", "process", "and", "or", "not",
        "in", "in~", "like", "like~", "regex~", ":", "==", "!=", "<", ">=", "(", ")", ",", "|", "head", "tail", "1", "-",
        "+", "*", "/", "%", "\"s\"", "\"\"\"r\"\"\"", "a.b", "?x", "`q`", "null", "true", "concat", "startsWith~", ".", "runs",
        "'", "\"", "/*", "*/", "//", "\n", "sample", "join", "of", "9999999999999999999999", "1.5e3", "~", "!", "\\",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn token_soup_never_panics(words in proptest::collection::vec(proptest::sample::select(SOUP), 0..40)) {
            let q = words.join(" ");
            if let Err(e) = parse(&q) {
                // Errors always point inside the text (or at its end) and render.
                prop_assert!(e.span.start <= q.len() && e.span.end <= q.len());
                let _ = e.render(&q);
            }
        }

        #[test]
        fn valid_queries_round_trip(words in proptest::collection::vec(proptest::sample::select(SOUP), 0..30)) {
            let q = format!("any where {}", words.join(" "));
            if let Ok(parsed) = parse(&q) {
                let printed = parsed.to_string();
                let again = parse(&printed);
                prop_assert!(again.is_ok(), "{} → {}", q, printed);
                prop_assert_eq!(shape_q(&parsed), shape_q(&again.unwrap()));
            }
        }
    }
}
