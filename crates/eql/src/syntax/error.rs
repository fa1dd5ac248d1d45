//! Errors a person can act on: what is wrong, where (line:column), and a caret under the token.

use crate::ast::Span;
use std::fmt;

/// Which phase rejected the query; a `Query` error is raised while evaluating (Elasticsearch would fail
/// the whole search, e.g. a non-numeric string compared with a `long` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Syntax,
    Verification,
    Query,
    /// One event needs more work than `crate::limits` allows; the event is left out and counted, the run
    /// goes on.
    Limit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EqlError {
    pub kind: ErrorKind,
    pub message: String,
    pub span: Span,
    /// The query's other problems, in source order, when the verifier found more than one (Elasticsearch
    /// reports them together: "Found 2 problems"). Empty for syntax, query and limit errors.
    pub also: Vec<EqlError>,
}

impl EqlError {
    pub fn syntax(message: impl Into<String>, span: Span) -> Self {
        EqlError { kind: ErrorKind::Syntax, message: message.into(), span, also: Vec::new() }
    }
    pub fn verification(message: impl Into<String>, span: Span) -> Self {
        EqlError { kind: ErrorKind::Verification, message: message.into(), span, also: Vec::new() }
    }
    pub fn query(message: impl Into<String>, span: Span) -> Self {
        EqlError { kind: ErrorKind::Query, message: message.into(), span, also: Vec::new() }
    }
    pub fn limit(message: impl Into<String>) -> Self {
        EqlError { kind: ErrorKind::Limit, message: message.into(), span: Span::default(), also: Vec::new() }
    }

    /// Every problem: this one, then [`EqlError::also`].
    pub fn problems(&self) -> impl Iterator<Item = &EqlError> {
        std::iter::once(self).chain(self.also.iter())
    }

    /// Whether the query uses a feature that Elasticsearch EQL (or esdetect) does not support — `join`,
    /// pipes other than head/tail, lineage, Endgame-only functions — rather than being malformed.
    /// Every such message produced by the parser says "not supported".
    pub fn is_unsupported(&self) -> bool {
        self.message.contains("not supported")
    }

    /// Renders `line:col: message`, then the offending source line with a caret under the token.
    pub fn render(&self, source: &str) -> String {
        let line_text = source.lines().nth(self.span.line.saturating_sub(1) as usize).unwrap_or("");
        let width = source
            .get(self.span.start..self.span.end)
            .map(|s| s.lines().next().unwrap_or("").chars().count())
            .unwrap_or(1)
            .max(1);
        let pad: String = line_text.chars().take(self.span.col.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        format!("{}:{}: {}\n  {}\n  {}{}", self.span.line, self.span.col, self.message, line_text, pad, "^".repeat(width))
    }
}

impl EqlError {
    /// [`EqlError::render`] of every problem, one after the other.
    pub fn render_all(&self, source: &str) -> String {
        self.problems().map(|p| p.render(source)).collect::<Vec<_>>().join("\n")
    }
}

impl fmt::Display for EqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.span.line, self.span.col, self.message)
    }
}

impl std::error::Error for EqlError {}
