//! EQL tokenizer: turns query text into tokens with exact spans, following the lexical rules of
//! Elasticsearch's `EqlBase.g4` (lower-case keywords, `IDENTIFIER = (letter | _ | @)(letter | digit | _)*`,
//! back-quoted identifiers, `"..."` and `"""..."""` strings, nested `/* */` comments and `//` comments).
//!
//! Lexical mistakes people actually make get a specific message rather than "unexpected character":
//! single-quoted strings, `?"..."` raw strings from the Endgame dialect, `&&`/`||`, an unterminated
//! string or comment (pointing at where it starts).

use crate::ast::Span;
use crate::error::EqlError;

#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A bare identifier (never a keyword).
    Ident(String),
    /// A back-quoted identifier, with doubled back-quotes already collapsed.
    QuotedIdent(String),
    /// `name~` written without a space: a case-insensitive function name.
    TildeIdent(String),
    /// A string literal, escapes already resolved.
    Str(String),
    /// Digits only; converted by the parser (too large for i64 → double, as ES does).
    Integer(String),
    /// A decimal or exponent number.
    Decimal(String),
    // Keywords (case-sensitive, lower-case, as in Elasticsearch).
    And,
    Any,
    By,
    False,
    In,
    InInsensitive,
    Join,
    Like,
    LikeInsensitive,
    Maxspan,
    Not,
    Null,
    Of,
    Or,
    Regex,
    RegexInsensitive,
    Sample,
    Sequence,
    True,
    Until,
    Where,
    With,
    // Operators and punctuation.
    Colon,
    Assign,
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Dot,
    Comma,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Pipe,
    Question,
    /// `![`, the opening of a missing-event stage.
    MissingOpen,
    Eof,
}

/// All keywords, in their only accepted (lower-case) spelling.
pub const KEYWORDS: &[(&str, TokenKind)] = &[
    ("and", TokenKind::And),
    ("any", TokenKind::Any),
    ("by", TokenKind::By),
    ("false", TokenKind::False),
    ("in", TokenKind::In),
    ("join", TokenKind::Join),
    ("like", TokenKind::Like),
    ("maxspan", TokenKind::Maxspan),
    ("not", TokenKind::Not),
    ("null", TokenKind::Null),
    ("of", TokenKind::Of),
    ("or", TokenKind::Or),
    ("regex", TokenKind::Regex),
    ("sample", TokenKind::Sample),
    ("sequence", TokenKind::Sequence),
    ("true", TokenKind::True),
    ("until", TokenKind::Until),
    ("where", TokenKind::Where),
    ("with", TokenKind::With),
];

/// The keyword for `word`, if it is one (exact, case-sensitive match).
pub fn keyword(word: &str) -> Option<TokenKind> {
    KEYWORDS.iter().find(|(k, _)| *k == word).map(|(_, t)| t.clone())
}

/// Whether `word` can be written without back-quotes (a valid identifier that is not a keyword).
pub fn is_plain_identifier(word: &str) -> bool {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '@' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && keyword(word).is_none()
}

impl TokenKind {
    /// How the token is named in error messages.
    pub fn describe(&self) -> String {
        use TokenKind::*;
        match self {
            Ident(s) => format!("identifier `{s}`"),
            QuotedIdent(s) => format!("identifier `{s}`"),
            TildeIdent(s) => format!("`{s}~`"),
            Str(s) => format!("string \"{}\"", s.chars().take(40).collect::<String>()),
            Integer(s) | Decimal(s) => format!("number `{s}`"),
            Eof => "end of query".to_string(),
            other => format!("`{}`", other.symbol()),
        }
    }

    /// Source spelling of keywords and punctuation (empty for tokens with a payload).
    pub fn symbol(&self) -> &'static str {
        use TokenKind::*;
        match self {
            And => "and",
            Any => "any",
            By => "by",
            False => "false",
            In => "in",
            InInsensitive => "in~",
            Join => "join",
            Like => "like",
            LikeInsensitive => "like~",
            Maxspan => "maxspan",
            Not => "not",
            Null => "null",
            Of => "of",
            Or => "or",
            Regex => "regex",
            RegexInsensitive => "regex~",
            Sample => "sample",
            Sequence => "sequence",
            True => "true",
            Until => "until",
            Where => "where",
            With => "with",
            Colon => ":",
            Assign => "=",
            Eq => "==",
            Neq => "!=",
            Lt => "<",
            Lte => "<=",
            Gt => ">",
            Gte => ">=",
            Plus => "+",
            Minus => "-",
            Star => "*",
            Slash => "/",
            Percent => "%",
            Dot => ".",
            Comma => ",",
            LBracket => "[",
            RBracket => "]",
            LParen => "(",
            RParen => ")",
            Pipe => "|",
            Question => "?",
            MissingOpen => "![",
            Ident(_) | QuotedIdent(_) | TildeIdent(_) | Str(_) | Integer(_) | Decimal(_) | Eof => "",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// Splits `src` into tokens; the last token is always [`TokenKind::Eof`].
pub fn tokenize(src: &str) -> Result<Vec<Token>, EqlError> {
    let mut lx = Lexer { src, pos: 0, line: 1, col: 1 };
    let mut out = Vec::new();
    loop {
        lx.skip_trivia()?;
        let start = lx.mark();
        let Some(c) = lx.peek() else {
            out.push(Token { kind: TokenKind::Eof, span: lx.span_from(start) });
            return Ok(out);
        };
        let kind = lx.token(c, start)?;
        out.push(Token { kind, span: lx.span_from(start) });
    }
}

/// A saved position: byte offset, line, column.
#[derive(Clone, Copy)]
struct Mark {
    pos: usize,
    line: u32,
    col: u32,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: u32,
    col: u32,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn mark(&self) -> Mark {
        Mark { pos: self.pos, line: self.line, col: self.col }
    }

    fn span_from(&self, m: Mark) -> Span {
        Span { start: m.pos, end: self.pos, line: m.line, col: m.col }
    }

    /// Span of the single character at the current position.
    fn char_span(&self) -> Span {
        let len = self.peek().map(char::len_utf8).unwrap_or(0);
        Span { start: self.pos, end: self.pos + len, line: self.line, col: self.col }
    }

    fn skip_trivia(&mut self) -> Result<(), EqlError> {
        loop {
            let rest = self.rest();
            if rest.starts_with("//") {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else if rest.starts_with("/*") {
                self.block_comment()?;
            } else if matches!(self.peek(), Some(c) if c.is_whitespace()) {
                self.bump();
            } else {
                return Ok(());
            }
        }
    }

    /// `/* ... */`, nested as in Elasticsearch's grammar.
    fn block_comment(&mut self) -> Result<(), EqlError> {
        let open = self.mark();
        self.bump();
        self.bump();
        let mut depth = 1usize;
        while depth > 0 {
            let rest = self.rest();
            if rest.is_empty() {
                let span = Span { start: open.pos, end: open.pos + 2, line: open.line, col: open.col };
                return Err(EqlError::syntax("unterminated comment: this `/*` is never closed with `*/`", span));
            }
            if rest.starts_with("*/") {
                self.bump();
                self.bump();
                depth -= 1;
            } else if rest.starts_with("/*") {
                self.bump();
                self.bump();
                depth += 1;
            } else {
                self.bump();
            }
        }
        Ok(())
    }

    fn token(&mut self, c: char, start: Mark) -> Result<TokenKind, EqlError> {
        use TokenKind::*;
        if c.is_ascii_alphabetic() || c == '_' || c == '@' {
            return Ok(self.word());
        }
        if c.is_ascii_digit() || (c == '.' && matches!(self.peek_at(1), Some(d) if d.is_ascii_digit())) {
            return Ok(self.number());
        }
        match c {
            '"' => return self.string(start),
            '`' => return self.quoted_ident(start),
            '\'' => {
                return Err(EqlError::syntax(
                    "single-quoted strings are not valid in Elasticsearch EQL: use double quotes, e.g. \"text\"",
                    self.char_span(),
                ))
            }
            _ => {}
        }
        let two: String = self.rest().chars().take(2).collect();
        let (kind, len) = match two.as_str() {
            "==" => (Eq, 2),
            "!=" => (Neq, 2),
            "<=" => (Lte, 2),
            ">=" => (Gte, 2),
            "![" => (MissingOpen, 2),
            "&&" | "||" => {
                let word = if two == "&&" { "and" } else { "or" };
                let span = Span { start: self.pos, end: self.pos + 2, line: self.line, col: self.col };
                return Err(EqlError::syntax(format!("`{two}` is not an EQL operator: use `{word}`"), span));
            }
            "?\"" | "?'" => {
                let span = Span { start: self.pos, end: self.pos + 2, line: self.line, col: self.col };
                return Err(EqlError::syntax(
                    "`?\"...\"` raw strings are not valid in Elasticsearch EQL: write a raw string as \"\"\"...\"\"\"",
                    span,
                ));
            }
            _ => match c {
                ':' => (Colon, 1),
                '=' => (Assign, 1),
                '<' => (Lt, 1),
                '>' => (Gt, 1),
                '+' => (Plus, 1),
                '-' => (Minus, 1),
                '*' => (Star, 1),
                '/' => (Slash, 1),
                '%' => (Percent, 1),
                '.' => (Dot, 1),
                ',' => (Comma, 1),
                '[' => (LBracket, 1),
                ']' => (RBracket, 1),
                '(' => (LParen, 1),
                ')' => (RParen, 1),
                '|' => (Pipe, 1),
                '?' => (Question, 1),
                '!' => {
                    return Err(EqlError::syntax(
                        "unexpected `!`: use `not` to negate a condition, `!=` for inequality, or `![ ... ]` for a missing-event stage",
                        self.char_span(),
                    ))
                }
                '~' => {
                    return Err(EqlError::syntax(
                        "unexpected `~`: it must directly follow a function name or `in`/`like`/`regex`, without a space (e.g. `startsWith~(...)`, `in~`)",
                        self.char_span(),
                    ))
                }
                other => {
                    let what = if other.is_control() {
                        format!("U+{:04X}", other as u32)
                    } else {
                        format!("`{other}`")
                    };
                    return Err(EqlError::syntax(
                        format!("unexpected character {what}: field names with special characters must be back-quoted, e.g. `my-field`"),
                        self.char_span(),
                    ));
                }
            },
        };
        for _ in 0..len {
            self.bump();
        }
        Ok(kind)
    }

    fn word(&mut self) -> TokenKind {
        let start = self.pos;
        self.bump();
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.bump();
        }
        let text = &self.src[start..self.pos];
        if self.peek() == Some('~') {
            let insensitive = match text {
                "in" => Some(TokenKind::InInsensitive),
                "like" => Some(TokenKind::LikeInsensitive),
                "regex" => Some(TokenKind::RegexInsensitive),
                _ => None,
            };
            self.bump();
            return insensitive.unwrap_or_else(|| TokenKind::TildeIdent(text.to_string()));
        }
        keyword(text).unwrap_or_else(|| TokenKind::Ident(text.to_string()))
    }

    /// INTEGER = digits; DECIMAL = digits `.` digits* | `.` digits, optionally followed by an exponent,
    /// or digits with an exponent. An `e` not followed by digits is left for the next token (`5m`, `1d`).
    fn number(&mut self) -> TokenKind {
        let start = self.pos;
        let mut decimal = false;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek() == Some('.') {
            decimal = true;
            self.bump();
            while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                self.bump();
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let digits_at = if matches!(self.peek_at(1), Some('+' | '-')) { 2 } else { 1 };
            if matches!(self.peek_at(digits_at), Some(c) if c.is_ascii_digit()) {
                decimal = true;
                for _ in 0..digits_at {
                    self.bump();
                }
                while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                    self.bump();
                }
            }
        }
        let text = self.src[start..self.pos].to_string();
        if decimal {
            TokenKind::Decimal(text)
        } else {
            TokenKind::Integer(text)
        }
    }

    fn quoted_ident(&mut self, start: Mark) -> Result<TokenKind, EqlError> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => {
                    let span = Span { start: start.pos, end: start.pos + 1, line: start.line, col: start.col };
                    return Err(EqlError::syntax(
                        "unterminated back-quoted identifier: add the closing ` (write `` for a literal back-quote)",
                        span,
                    ));
                }
                Some('`') => {
                    if self.peek() == Some('`') {
                        self.bump();
                        out.push('`');
                    } else {
                        return Ok(TokenKind::QuotedIdent(out));
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn string(&mut self, start: Mark) -> Result<TokenKind, EqlError> {
        if self.rest().starts_with("\"\"\"") {
            return self.raw_string(start);
        }
        let open_span = Span { start: start.pos, end: start.pos + 1, line: start.line, col: start.col };
        self.bump();
        let mut out = String::new();
        loop {
            let esc_start = self.mark();
            match self.bump() {
                None | Some('\n') | Some('\r') => {
                    return Err(EqlError::syntax(
                        "unterminated string: add the closing `\"` on the same line (use \\n for a newline, or a \"\"\"raw string\"\"\")",
                        open_span,
                    ));
                }
                Some('"') => return Ok(TokenKind::Str(out)),
                Some('\\') => {
                    let c = self.bump();
                    match c {
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('t') => out.push('\t'),
                        Some('b') => out.push('\u{8}'),
                        Some('f') => out.push('\u{c}'),
                        Some('"') => out.push('"'),
                        Some('\'') => out.push('\''),
                        Some('\\') => out.push('\\'),
                        Some('u') => out.push(self.unicode_escape(esc_start)?),
                        None | Some('\n') | Some('\r') => {
                            return Err(EqlError::syntax(
                                "unterminated string: add the closing `\"` on the same line",
                                open_span,
                            ))
                        }
                        Some(other) => {
                            return Err(EqlError::syntax(
                                format!(
                                    "unknown escape sequence `\\{other}`: supported escapes are \\n \\r \\t \\\" \\\\ and \\u{{XXXX}}; \
                                     write `\\\\` for a literal backslash or use a \"\"\"raw string\"\"\""
                                ),
                                self.span_from(esc_start),
                            ))
                        }
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// `\u{XXXX}` with 2 to 8 hex digits, after the `\u` has been consumed.
    fn unicode_escape(&mut self, esc_start: Mark) -> Result<char, EqlError> {
        let bad = |lx: &Lexer<'_>, msg: &str| EqlError::syntax(msg.to_string(), lx.span_from(esc_start));
        if self.peek() != Some('{') {
            return Err(bad(self, "invalid unicode escape: write it as \\u{XXXX} with 2 to 8 hex digits"));
        }
        self.bump();
        let mut hex = String::new();
        while let Some(c) = self.peek() {
            if c == '}' || c == '"' || c == '\n' || hex.len() > 8 {
                break;
            }
            hex.push(c);
            self.bump();
        }
        if self.peek() != Some('}') {
            return Err(bad(self, "invalid unicode escape: missing `}` (write \\u{XXXX} with 2 to 8 hex digits)"));
        }
        self.bump();
        if hex.len() < 2 || hex.len() > 8 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(self, "invalid unicode escape: \\u{...} needs 2 to 8 hex digits"));
        }
        u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| bad(self, "invalid unicode escape: not a valid Unicode code point"))
    }

    /// `"""..."""`: no escapes; up to two extra `"` before the closing triple belong to the content.
    fn raw_string(&mut self, start: Mark) -> Result<TokenKind, EqlError> {
        for _ in 0..3 {
            self.bump();
        }
        let body_start = self.pos;
        match self.rest().find("\"\"\"") {
            None => {
                let span = Span { start: start.pos, end: start.pos + 3, line: start.line, col: start.col };
                Err(EqlError::syntax("unterminated raw string: this `\"\"\"` is never closed with `\"\"\"`", span))
            }
            Some(rel) => {
                let mut end = body_start + rel;
                // `""""` or `"""""` at the end: the extra quotes are content.
                let mut extra = 0;
                while extra < 2 && self.src[end + 3..].starts_with('"') {
                    end += 1;
                    extra += 1;
                }
                let body = self.src[body_start..end].to_string();
                while self.pos < end + 3 {
                    self.bump();
                }
                Ok(TokenKind::Str(body))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenKind::*;

    fn kinds(s: &str) -> Vec<TokenKind> {
        tokenize(s).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn keywords_are_lower_case_only() {
        assert_eq!(kinds("and AND"), vec![And, Ident("AND".into()), Eof]);
    }

    #[test]
    fn tilde_forms() {
        assert_eq!(
            kinds("in~ like~ regex~ startsWith~("),
            vec![InInsensitive, LikeInsensitive, RegexInsensitive, TildeIdent("startsWith".into()), LParen, Eof]
        );
    }

    #[test]
    fn numbers_and_units() {
        assert_eq!(kinds("5m"), vec![Integer("5".into()), Ident("m".into()), Eof]);
        assert_eq!(kinds("500ms"), vec![Integer("500".into()), Ident("ms".into()), Eof]);
        assert_eq!(kinds("1e5 1.5 .5 2."), vec![
            Decimal("1e5".into()),
            Decimal("1.5".into()),
            Decimal(".5".into()),
            Decimal("2.".into()),
            Eof
        ]);
        assert_eq!(kinds("1d"), vec![Integer("1".into()), Ident("d".into()), Eof]);
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(kinds(r#""a\"b\\c\n\u{41}""#), vec![Str("a\"b\\c\nA".into()), Eof]);
        assert_eq!(kinds(r#""""C:\x"y""""#), vec![Str("C:\\x\"y".into()), Eof]);
        // `""""a""""`: the quote after the opening triple and the one before the closing triple are content.
        assert_eq!(kinds("\"\"\"\"a\"\"\"\""), vec![Str("\"a\"".into()), Eof]);
        assert_eq!(kinds(r#""""a"""""#), vec![Str("a\"".into()), Eof]);
        assert_eq!(kinds("\"\""), vec![Str(String::new()), Eof]);
    }

    #[test]
    fn identifiers() {
        assert_eq!(kinds("@timestamp _x a1"), vec![
            Ident("@timestamp".into()),
            Ident("_x".into()),
            Ident("a1".into()),
            Eof
        ]);
        assert_eq!(kinds("`a b``c`"), vec![QuotedIdent("a b`c".into()), Eof]);
    }

    #[test]
    fn comments_are_skipped_and_nest() {
        assert_eq!(kinds("a /* x /* y */ z */ b // c\n d"), vec![
            Ident("a".into()),
            Ident("b".into()),
            Ident("d".into()),
            Eof
        ]);
    }

    #[test]
    fn error_positions() {
        let e = tokenize("a ==\n  \"abc").unwrap_err();
        assert_eq!((e.span.line, e.span.col), (2, 3));
        assert!(e.message.contains("unterminated string"));
        let e = tokenize("x == 'a'").unwrap_err();
        assert!(e.message.contains("double quotes"), "{}", e.message);
        assert_eq!(e.span.col, 6);
        let e = tokenize("a /* b").unwrap_err();
        assert!(e.message.contains("unterminated comment"));
        let e = tokenize(r#""\q""#).unwrap_err();
        assert!(e.message.contains("unknown escape"));
        assert!(tokenize(r#""\u{110000}""#).is_err());
        assert!(tokenize(r#""\u{4}""#).is_err());
    }
}
