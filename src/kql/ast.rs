//! The KQL syntax tree, shaped like Kibana's KQL nodes after parsing: value lists are already spread
//! into one [`Node::Is`] per value, so every leaf names its field.

/// A literal or wildcard as the grammar produced it.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// An unquoted string (trimmed; escapes resolved).
    Str(String),
    /// A quoted string: as a value it asks for a phrase.
    Quoted(String),
    /// Unquoted `true` / `false`.
    Bool(bool),
    /// Unquoted `null`; as a field: "every field" (a value written without a field).
    Null,
    /// An unquoted literal with at least one `*`: characters, `None` where a wildcard stands.
    Wildcard(Vec<Option<char>>),
}

impl Term {
    /// A wildcard that is only `*`.
    pub fn is_lone_wildcard(&self) -> bool {
        matches!(self, Term::Wildcard(p) if p.iter().all(|c| c.is_none()) && !p.is_empty())
    }

    /// The text of a field name (`*` for wildcards), as Kibana sends a name it does not know.
    pub fn name(&self) -> String {
        match self {
            Term::Str(s) | Term::Quoted(s) => s.clone(),
            Term::Bool(b) => b.to_string(),
            Term::Null => "null".into(),
            Term::Wildcard(p) => p.iter().map(|c| c.unwrap_or('*')).collect(),
        }
    }
}

/// Range operators `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl RangeOp {
    /// The Query DSL key (`lt`, `lte`, …).
    pub fn key(self) -> &'static str {
        match self {
            RangeOp::Lt => "lt",
            RangeOp::Lte => "lte",
            RangeOp::Gt => "gt",
            RangeOp::Gte => "gte",
        }
    }
}

/// One KQL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    /// `field: value` (`field` is [`Term::Null`] for a bare value).
    Is { field: Term, value: Term },
    /// `field < value` and friends.
    Range { field: Term, op: RangeOp, value: Term },
    /// `path: { query }` over a nested field.
    Nested { path: Term, query: Box<Node> },
}
