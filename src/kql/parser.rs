//! KQL text → [`Node`], following the grammar of Kibana's `@kbn/es-query` (`grammar.peggy`) rule by rule:
//! `or` binds loosest, then `and`, then `not`; `field: (a or b)` value lists are spread into one `is`
//! per value; an unquoted value runs until a special character or a spaced keyword, may contain spaces
//! and is trimmed; `*` in an unquoted value or field makes it a wildcard. The parser is a backtracking
//! recursive descent because the grammar is a PEG (ordered choice, full backtracking).

use super::ast::{Node, RangeOp, Term};
use super::KqlError;

/// One piece of an unquoted literal: a character, or the wildcard `*` (escaped `\*` is a character).
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Char(char),
    Wild,
}

/// A value list before its field is known (the grammar's partial functions `(field) => node`).
enum Values {
    Or(Vec<Values>),
    And(Vec<Values>),
    Not(Box<Values>),
    One(Term),
}

fn apply(values: Values, field: &Term) -> Node {
    match values {
        Values::Or(v) => Node::Or(v.into_iter().map(|x| apply(x, field)).collect()),
        Values::And(v) => Node::And(v.into_iter().map(|x| apply(x, field)).collect()),
        Values::Not(v) => Node::Not(Box::new(apply(*v, field))),
        Values::One(value) => Node::Is { field: field.clone(), value },
    }
}

/// Parses KQL; errors carry the 1-based line and column inside `text`.
pub fn parse(text: &str) -> Result<Node, KqlError> {
    let mut p = Parser { s: text.chars().collect(), furthest: 0 };
    let mut pos = p.spaces(0);
    let query = p.or_query(pos);
    if let Some((_, after)) = &query {
        pos = *after;
    }
    pos = p.spaces(pos);
    if pos == p.s.len() {
        return Ok(query.map(|(n, _)| n).unwrap_or(Node::Is { field: Term::Wildcard(vec![None]), value: Term::Wildcard(vec![None]) }));
    }
    let at = p.furthest.max(pos);
    let (line, col) = line_col(&p.s, at);
    let found = match p.s.get(at) {
        Some(c) => format!("`{c}`"),
        None => "the end of the query".to_string(),
    };
    Err(KqlError { line, col, message: format!("KQL syntax error: unexpected {found}; expected a field, value, `and`, `or`, `not` or a closing bracket (escape special characters \\():<>\"*{{}} with a backslash)") })
}

fn line_col(s: &[char], at: usize) -> (u32, u32) {
    let before = &s[..at.min(s.len())];
    let line = before.iter().filter(|c| **c == '\n').count() + 1;
    let col = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
    (line as u32, col as u32)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{a0}')
}

fn is_special(c: char) -> bool {
    matches!(c, '\\' | '(' | ')' | ':' | '<' | '>' | '"' | '*' | '{' | '}')
}

/// JavaScript's `String.prototype.trim` whitespace (what Kibana trims unquoted values with).
fn is_js_whitespace(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

struct Parser {
    s: Vec<char>,
    /// The furthest position any rule failed at: where a syntax error is reported.
    furthest: usize,
}

type R<T> = Option<(T, usize)>;

impl Parser {
    fn fail<T>(&mut self, at: usize) -> Option<T> {
        self.furthest = self.furthest.max(at);
        None
    }

    fn ch(&self, at: usize) -> Option<char> {
        self.s.get(at).copied()
    }

    fn lit(&mut self, at: usize, c: char) -> Option<usize> {
        if self.ch(at) == Some(c) {
            Some(at + 1)
        } else {
            self.fail(at)
        }
    }

    fn spaces(&self, mut at: usize) -> usize {
        while self.ch(at).map(is_space).unwrap_or(false) {
            at += 1;
        }
        at
    }

    /// Case-insensitive word at `at`.
    fn word(&self, at: usize, w: &str) -> Option<usize> {
        let n = w.chars().count();
        if at + n > self.s.len() {
            return None;
        }
        let got: String = self.s[at..at + n].iter().collect();
        got.eq_ignore_ascii_case(w).then_some(at + n)
    }

    /// `Space+ word Space+` (Or, And).
    fn spaced(&self, at: usize, w: &str) -> Option<usize> {
        let a = self.spaces(at);
        if a == at {
            return None;
        }
        let b = self.word(a, w)?;
        let c = self.spaces(b);
        (c > b).then_some(c)
    }

    /// `'not'i Space+`.
    fn not_kw(&self, at: usize) -> Option<usize> {
        let b = self.word(at, "not")?;
        let c = self.spaces(b);
        (c > b).then_some(c)
    }

    fn is_keyword(&self, at: usize) -> bool {
        self.spaced(at, "or").is_some() || self.spaced(at, "and").is_some() || self.not_kw(at).is_some()
    }

    fn or_query(&mut self, at: usize) -> R<Node> {
        let (head, mut pos) = self.and_query(at)?;
        let mut nodes = vec![head];
        while let Some(next) = self.spaced(pos, "or") {
            match self.and_query(next) {
                Some((n, p)) => {
                    nodes.push(n);
                    pos = p;
                }
                None => break,
            }
        }
        Some((if nodes.len() == 1 { nodes.pop().unwrap() } else { Node::Or(nodes) }, pos))
    }

    fn and_query(&mut self, at: usize) -> R<Node> {
        let (head, mut pos) = self.not_query(at)?;
        let mut nodes = vec![head];
        while let Some(next) = self.spaced(pos, "and") {
            match self.not_query(next) {
                Some((n, p)) => {
                    nodes.push(n);
                    pos = p;
                }
                None => break,
            }
        }
        Some((if nodes.len() == 1 { nodes.pop().unwrap() } else { Node::And(nodes) }, pos))
    }

    fn not_query(&mut self, at: usize) -> R<Node> {
        if let Some(after) = self.not_kw(at) {
            if let Some((n, p)) = self.sub_query(after) {
                return Some((Node::Not(Box::new(n)), p));
            }
        }
        self.sub_query(at)
    }

    fn sub_query(&mut self, at: usize) -> R<Node> {
        if self.ch(at) == Some('(') {
            let a = self.spaces(at + 1);
            if let Some((q, p)) = self.or_query(a) {
                let b = self.spaces(p);
                if let Some(c) = self.lit(b, ')') {
                    return Some((q, c));
                }
            }
        } else {
            self.fail::<()>(at);
        }
        self.nested_query(at)
    }

    fn nested_query(&mut self, at: usize) -> R<Node> {
        if let Some((field, p)) = self.literal(at) {
            let a = self.spaces(p);
            if let Some(b) = self.lit(a, ':') {
                let c = self.spaces(b);
                if let Some(d) = self.lit(c, '{') {
                    let e = self.spaces(d);
                    if let Some((q, f)) = self.or_query(e) {
                        let g = self.spaces(f);
                        if let Some(h) = self.lit(g, '}') {
                            return Some((Node::Nested { path: field, query: Box::new(q) }, h));
                        }
                    }
                }
            }
        }
        self.expression(at)
    }

    fn expression(&mut self, at: usize) -> R<Node> {
        if let Some(r) = self.range_expr(at) {
            return Some(r);
        }
        if let Some(r) = self.field_value_expr(at) {
            return Some(r);
        }
        let (values, p) = self.value(at)?;
        Some((apply(values, &Term::Null), p))
    }

    fn range_expr(&mut self, at: usize) -> R<Node> {
        let (field, p) = self.literal(at)?;
        let a = self.spaces(p);
        let (op, b) = match (self.ch(a), self.ch(a + 1)) {
            (Some('<'), Some('=')) => (RangeOp::Lte, a + 2),
            (Some('>'), Some('=')) => (RangeOp::Gte, a + 2),
            (Some('<'), _) => (RangeOp::Lt, a + 1),
            (Some('>'), _) => (RangeOp::Gt, a + 1),
            _ => return self.fail(a),
        };
        let c = self.spaces(b);
        let (value, d) = self.literal(c)?;
        Some((Node::Range { field, op, value }, d))
    }

    fn field_value_expr(&mut self, at: usize) -> R<Node> {
        let (field, p) = self.literal(at)?;
        let a = self.spaces(p);
        let b = self.lit(a, ':')?;
        let c = self.spaces(b);
        let (values, d) = self.list_of_values(c)?;
        Some((apply(values, &field), d))
    }

    fn list_of_values(&mut self, at: usize) -> R<Values> {
        if self.ch(at) == Some('(') {
            let a = self.spaces(at + 1);
            if let Some((v, p)) = self.or_list(a) {
                let b = self.spaces(p);
                if let Some(c) = self.lit(b, ')') {
                    return Some((v, c));
                }
            }
        }
        self.value(at)
    }

    fn or_list(&mut self, at: usize) -> R<Values> {
        let (head, mut pos) = self.and_list(at)?;
        let mut nodes = vec![head];
        while let Some(next) = self.spaced(pos, "or") {
            match self.and_list(next) {
                Some((n, p)) => {
                    nodes.push(n);
                    pos = p;
                }
                None => break,
            }
        }
        Some((if nodes.len() == 1 { nodes.pop().unwrap() } else { Values::Or(nodes) }, pos))
    }

    fn and_list(&mut self, at: usize) -> R<Values> {
        let (head, mut pos) = self.not_list(at)?;
        let mut nodes = vec![head];
        while let Some(next) = self.spaced(pos, "and") {
            match self.not_list(next) {
                Some((n, p)) => {
                    nodes.push(n);
                    pos = p;
                }
                None => break,
            }
        }
        Some((if nodes.len() == 1 { nodes.pop().unwrap() } else { Values::And(nodes) }, pos))
    }

    fn not_list(&mut self, at: usize) -> R<Values> {
        if let Some(after) = self.not_kw(at) {
            if let Some((v, p)) = self.list_of_values(after) {
                return Some((Values::Not(Box::new(v)), p));
            }
        }
        self.list_of_values(at)
    }

    fn value(&mut self, at: usize) -> R<Values> {
        let (term, p) = self.literal(at)?;
        Some((Values::One(term), p))
    }

    /// `Literal = QuotedString / UnquotedLiteral`.
    fn literal(&mut self, at: usize) -> R<Term> {
        if self.ch(at) == Some('"') {
            if let Some(r) = self.quoted(at) {
                return Some(r);
            }
        }
        self.unquoted(at)
    }

    fn quoted(&mut self, at: usize) -> R<Term> {
        let mut pos = at + 1;
        let mut out = String::new();
        loop {
            match self.ch(pos) {
                None => return self.fail(pos),
                Some('"') => return Some((Term::Quoted(out), pos + 1)),
                Some('\\') => {
                    if let Some((c, p)) = self.escaped_whitespace(pos).or_else(|| self.escaped_unicode(pos)) {
                        out.push(c);
                        pos = p;
                    } else if let Some(c @ ('\\' | '"')) = self.ch(pos + 1) {
                        out.push(c);
                        pos += 2;
                    } else {
                        out.push('\\');
                        pos += 1;
                    }
                }
                Some(c) => {
                    out.push(c);
                    pos += 1;
                }
            }
        }
    }

    fn escaped_whitespace(&self, at: usize) -> Option<(char, usize)> {
        match (self.ch(at), self.ch(at + 1)) {
            (Some('\\'), Some('t')) => Some(('\t', at + 2)),
            (Some('\\'), Some('r')) => Some(('\r', at + 2)),
            (Some('\\'), Some('n')) => Some(('\n', at + 2)),
            _ => None,
        }
    }

    fn escaped_unicode(&self, at: usize) -> Option<(char, usize)> {
        if self.ch(at) != Some('\\') || self.ch(at + 1) != Some('u') {
            return None;
        }
        let hex: String = self.s.get(at + 2..at + 6)?.iter().collect();
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        // JavaScript's String.fromCharCode: a lone surrogate cannot be a Rust char; it becomes U+FFFD.
        let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('\u{fffd}');
        Some((c, at + 6))
    }

    fn unquoted(&mut self, at: usize) -> R<Term> {
        let mut pos = at;
        let mut pieces = Vec::new();
        while let Some(c) = self.ch(pos) {
            if c == '\\' {
                if let Some((c, p)) = self.escaped_whitespace(pos) {
                    pieces.push(Piece::Char(c));
                    pos = p;
                    continue;
                }
                if let Some(n) = self.ch(pos + 1).filter(|n| is_special(*n)) {
                    pieces.push(Piece::Char(n));
                    pos += 2;
                    continue;
                }
                if let Some((c, p)) = self.escaped_unicode(pos) {
                    pieces.push(Piece::Char(c));
                    pos = p;
                    continue;
                }
                if let Some(p) = ["or", "and", "not"].iter().find_map(|w| self.word(pos + 1, w)) {
                    pieces.extend(self.s[pos + 1..p].iter().map(|c| Piece::Char(*c)));
                    pos = p;
                    continue;
                }
                break;
            }
            if c == '*' {
                pieces.push(Piece::Wild);
                pos += 1;
                continue;
            }
            if is_special(c) || self.is_keyword(pos) {
                break;
            }
            pieces.push(Piece::Char(c));
            pos += 1;
        }
        if pieces.is_empty() {
            return self.fail(pos);
        }
        self.furthest = self.furthest.max(pos);
        Some((term_of(pieces), pos))
    }
}

/// Kibana's `UnquotedLiteral` action: trim, then `null`/`true`/`false`, then wildcard, else a string.
fn term_of(mut pieces: Vec<Piece>) -> Term {
    while matches!(pieces.first(), Some(Piece::Char(c)) if is_js_whitespace(*c)) {
        pieces.remove(0);
    }
    while matches!(pieces.last(), Some(Piece::Char(c)) if is_js_whitespace(*c)) {
        pieces.pop();
    }
    if pieces.contains(&Piece::Wild) {
        return Term::Wildcard(pieces.into_iter().map(|p| match p {
            Piece::Char(c) => Some(c),
            Piece::Wild => None,
        }).collect());
    }
    let s: String = pieces.into_iter().map(|p| if let Piece::Char(c) = p { c } else { '*' }).collect();
    match s.as_str() {
        "null" => Term::Null,
        "true" => Term::Bool(true),
        "false" => Term::Bool(false),
        _ => Term::Str(s),
    }
}
