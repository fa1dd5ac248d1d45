//! EQL's scalar functions and string matchers, with Elasticsearch's (Java) semantics.
//!
//! Strings are measured and indexed in UTF-16 code units (`length`, `substring`, `indexOf`) because ES runs
//! them on Java strings. Case-insensitive matching comes in two flavours, both from ES: the Query DSL
//! `case_insensitive` flag (per code point: the character itself or its one alternative case; [`ci_char_eq`])
//! and the script functions' `toLowerCase(Locale.ROOT)` on both sides (Rust `to_lowercase`, spec U5).
//! Numbers follow Java: long arithmetic fails on overflow (`Math.*Exact` → query error), integer division
//! truncates, doubles print as `Double.toString`.

use crate::ast::Span;
use crate::value::{java_double_to_string, parse_ip};
use crate::EqlError;
use ipnet::{IpNet, Ipv6Net};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

/// A value inside a script expression (what Painless would see).
#[derive(Debug, Clone, PartialEq)]
pub enum SV<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(Cow<'a, str>),
}

impl<'a> SV<'a> {
    pub fn is_null(&self) -> bool {
        matches!(self, SV::Null)
    }
    /// Java `toString()`.
    pub fn to_java_string(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            SV::Null => return None,
            SV::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            SV::Long(l) => Cow::Owned(l.to_string()),
            SV::Double(d) => Cow::Owned(java_double_to_string(*d)),
            SV::Str(s) => Cow::Borrowed(s.as_ref()),
        })
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            SV::Null => "null",
            SV::Bool(_) => "boolean",
            SV::Long(_) => "long",
            SV::Double(_) => "double",
            SV::Str(_) => "keyword",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Case-insensitive characters and wildcard patterns (Query DSL semantics)

fn simple_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

fn simple_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// Lucene's `case_insensitive` term/wildcard matching: pattern code point `p` matches `v` if `v == p` or
/// `v` is `p`'s alternative case (upper for a lower-case `p`, lower otherwise). No multi-char folding.
#[inline]
pub fn ci_char_eq(p: char, v: char) -> bool {
    if p == v {
        return true;
    }
    if p.is_ascii() && v.is_ascii() {
        return p.eq_ignore_ascii_case(&v);
    }
    let alt = if p.is_lowercase() { simple_upper(p) } else { simple_lower(p) };
    alt == v
}

#[derive(Debug, Clone, PartialEq)]
enum GTok {
    Lit(char),
    One,
    Star,
}

/// A compiled wildcard pattern (`*` = any run, `?` = one code point) matched against a whole value.
#[derive(Debug, Clone)]
pub struct Glob {
    toks: Vec<GTok>,
    ci: bool,
    /// Pattern without wildcards: equality fast path.
    exact: Option<String>,
    ascii: bool,
    /// `prefix*` fast path (used by `startsWith`).
    prefix: Option<String>,
    /// An ASCII pattern of literals and `*` only: its literal runs between the stars, lower-cased when
    /// case-insensitive (the shape of most `:` patterns), prepared once instead of per value.
    runs: Option<Vec<String>>,
}

impl Glob {
    /// `:`/`like` patterns: `*` and `?` are wildcards, every other character (backslash included) literal.
    pub fn new(pattern: &str, ci: bool) -> Glob {
        let toks = pattern
            .chars()
            .map(|c| match c {
                '*' => GTok::Star,
                '?' => GTok::One,
                c => GTok::Lit(c),
            })
            .collect();
        Glob::from_toks(toks, ci)
    }

    /// Equality (no wildcards at all).
    pub fn literal(s: &str, ci: bool) -> Glob {
        Glob::from_toks(s.chars().map(GTok::Lit).collect(), ci)
    }

    /// `literal*` (prefix query).
    pub fn prefix(s: &str, ci: bool) -> Glob {
        let mut toks: Vec<GTok> = s.chars().map(GTok::Lit).collect();
        toks.push(GTok::Star);
        Glob::from_toks(toks, ci)
    }

    /// Lucene wildcard-query syntax, where `\` escapes the next character. Used for the unescaped
    /// `endsWith`/`stringContains` pushdown (spec §7.1, U2): `lead` and `trail` add `*` around `body`.
    pub fn lucene_wildcard(body: &str, lead_star: bool, trail_star: bool, ci: bool) -> Glob {
        let mut toks = Vec::new();
        if lead_star {
            toks.push(GTok::Star);
        }
        let mut it = body.chars();
        while let Some(c) = it.next() {
            toks.push(match c {
                '*' => GTok::Star,
                '?' => GTok::One,
                '\\' => match it.next() {
                    Some(n) => GTok::Lit(n),
                    None => GTok::Lit('\\'),
                },
                c => GTok::Lit(c),
            });
        }
        if trail_star {
            toks.push(GTok::Star);
        }
        Glob::from_toks(toks, ci)
    }

    fn from_toks(toks: Vec<GTok>, ci: bool) -> Glob {
        let ascii = toks.iter().all(|t| !matches!(t, GTok::Lit(c) if !c.is_ascii()));
        let lits_only = toks.iter().all(|t| matches!(t, GTok::Lit(_)));
        let exact = lits_only.then(|| {
            toks.iter().map(|t| if let GTok::Lit(c) = t { *c } else { ' ' }).collect::<String>()
        });
        let prefix = (toks.last() == Some(&GTok::Star)
            && toks[..toks.len() - 1].iter().all(|t| matches!(t, GTok::Lit(_))))
        .then(|| {
            toks[..toks.len() - 1].iter().map(|t| if let GTok::Lit(c) = t { *c } else { ' ' }).collect::<String>()
        });
        let runs = (ascii && !toks.contains(&GTok::One)).then(|| {
            let mut runs = vec![String::new()];
            for t in &toks {
                match t {
                    GTok::Star => runs.push(String::new()),
                    GTok::Lit(c) => runs.last_mut().expect("at least one run").push(if ci { c.to_ascii_lowercase() } else { *c }),
                    GTok::One => {}
                }
            }
            runs
        });
        Glob { toks, ci, exact, ascii, prefix, runs }
    }

    /// The pattern's text when it has no wildcard (then it matches by equality, case-insensitive when
    /// [`Glob::is_ci`]).
    pub fn exact_text(&self) -> Option<&str> {
        self.exact.as_deref()
    }

    pub fn is_ci(&self) -> bool {
        self.ci
    }

    pub fn matches(&self, v: &str) -> bool {
        if let Some(e) = &self.exact {
            return if !self.ci {
                v == e
            } else if self.ascii {
                v.len() == e.len() && v.as_bytes().eq_ignore_ascii_case(e.as_bytes())
            } else {
                ci_str_eq(e, v)
            };
        }
        if let Some(p) = &self.prefix {
            if !self.ci {
                return v.starts_with(p.as_str());
            }
            if self.ascii {
                return v.len() >= p.len() && v.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes());
            }
        }
        if let (Some(runs), true) = (&self.runs, v.is_ascii()) {
            return star_runs_match(runs, self.ci, v);
        }
        if self.ascii && v.is_ascii() {
            let vb = v.as_bytes();
            glob_match(&self.toks, vb.len(), |ti, vi| match self.toks[ti] {
                GTok::Lit(c) => {
                    let b = vb[vi];
                    if self.ci {
                        (c as u8).eq_ignore_ascii_case(&b)
                    } else {
                        c as u8 == b
                    }
                }
                _ => true,
            })
        } else {
            let vc: Vec<char> = v.chars().collect();
            glob_match(&self.toks, vc.len(), |ti, vi| match self.toks[ti] {
                GTok::Lit(c) => {
                    if self.ci {
                        ci_char_eq(c, vc[vi])
                    } else {
                        c == vc[vi]
                    }
                }
                _ => true,
            })
        }
    }
}

/// Linear matching of an ASCII pattern made of literals and `*` only (the shape of `endsWith`,
/// `stringContains` and most `:` patterns) against an ASCII value: the first literal run is a prefix, the
/// last a suffix, and the runs between are found left to right with a linear substring search. Leftmost
/// placement is always safe when `*` is the only wildcard, so no backtracking is needed. ASCII case folding
/// is exactly [`ci_char_eq`] on ASCII characters. Values up to 256 bytes are folded on the stack.
fn star_runs_match(runs: &[String], ci: bool, v: &str) -> bool {
    let mut stack = [0u8; 256];
    let heap: String;
    let value: &str = if !ci {
        v
    } else if v.len() <= stack.len() {
        for (d, s) in stack.iter_mut().zip(v.bytes()) {
            *d = s.to_ascii_lowercase();
        }
        match std::str::from_utf8(&stack[..v.len()]) {
            Ok(folded) => folded,
            Err(_) => return false, // not reached: an ASCII value folds to ASCII
        }
    } else {
        heap = v.to_ascii_lowercase();
        &heap
    };
    let (first, last) = (runs[0].as_str(), runs[runs.len() - 1].as_str());
    if runs.len() == 1 {
        return value == first;
    }
    if value.len() < first.len() + last.len() || !value.starts_with(first) || !value.ends_with(last) {
        return false;
    }
    let end = value.len() - last.len();
    let mut at = first.len();
    for run in runs[1..runs.len() - 1].iter().filter(|r| !r.is_empty()) {
        // `str::find` is a Two-Way search: linear in the text, whatever the pattern.
        match value[at..end].find(run.as_str()) {
            Some(p) => at += p + run.len(),
            None => return false,
        }
    }
    true
}

/// Whole-string case-insensitive equality with [`ci_char_eq`] per code point (`pattern` first).
pub fn ci_str_eq(pattern: &str, v: &str) -> bool {
    let mut a = pattern.chars();
    let mut b = v.chars();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(p), Some(c)) if ci_char_eq(p, c) => {}
            _ => return false,
        }
    }
}

/// Iterative wildcard matching with single-star backtracking (linear-ish, no recursion).
fn glob_match(toks: &[GTok], n: usize, lit_eq: impl Fn(usize, usize) -> bool) -> bool {
    let (mut t, mut v) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while v < n {
        if t < toks.len() {
            match toks[t] {
                GTok::Star => {
                    star = Some((t, v));
                    t += 1;
                    continue;
                }
                GTok::One => {
                    t += 1;
                    v += 1;
                    continue;
                }
                GTok::Lit(_) if lit_eq(t, v) => {
                    t += 1;
                    v += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((st, sv)) => {
                t = st + 1;
                v = sv + 1;
                star = Some((st, sv + 1));
            }
            None => return false,
        }
    }
    toks[t..].iter().all(|x| *x == GTok::Star)
}

// ---------------------------------------------------------------------------------------------
// Lucene regular expressions

/// Translates a Lucene `RegExp` (the `regexp` query dialect: anchored, whole value, `.` matches any code
/// point, `"…"` quotes literals, `^`/`$` are ordinary characters) into a `regex` crate pattern.
/// The optional Lucene operators `&`, `~`, `<n-m>`, `@`, `#` (on by default in ES) are rejected with an
/// explanation rather than silently misread.
pub fn lucene_regex(pattern: &str, ci: bool, span: Span) -> Result<regex::Regex, EqlError> {
    let unsupported = |what: &str| {
        EqlError::verification(
            format!("regex \"{pattern}\": the Lucene operator {what} is not supported by esdetect; escape it with \\ if you mean the character"),
            span,
        )
    };
    let mut out = String::from(if ci { "(?s)(?i)^(?:" } else { "(?s)^(?:" });
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if in_class {
            match c {
                ']' => {
                    out.push(']');
                    in_class = false;
                }
                '\\' => {
                    i += 1;
                    match chars.get(i) {
                        Some(n) => push_class_escaped(&mut out, *n),
                        None => return Err(EqlError::verification(format!("regex \"{pattern}\" ends with a lone backslash"), span)),
                    }
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '.' | '*' | '+' | '?' | '|' | '(' | ')' => out.push(c),
            '{' => {
                // {n}, {n,}, {n,m}
                let close = chars[i..].iter().position(|&x| x == '}').map(|p| p + i);
                let Some(close) = close else {
                    return Err(EqlError::verification(format!("regex \"{pattern}\": unclosed {{"), span));
                };
                let body: String = chars[i + 1..close].iter().collect();
                let ok = !body.is_empty() && body.chars().all(|x| x.is_ascii_digit() || x == ',');
                if !ok {
                    return Err(EqlError::verification(format!("regex \"{pattern}\": bad repetition {{{body}}}"), span));
                }
                out.push('{');
                out.push_str(&body);
                out.push('}');
                i = close;
            }
            '[' => {
                in_class = true;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            '"' => {
                let close = chars[i + 1..].iter().position(|&x| x == '"').map(|p| p + i + 1);
                let Some(close) = close else {
                    return Err(EqlError::verification(format!("regex \"{pattern}\": unclosed quote"), span));
                };
                let lit: String = chars[i + 1..close].iter().collect();
                out.push_str(&regex::escape(&lit));
                i = close;
            }
            '\\' => {
                i += 1;
                match chars.get(i) {
                    Some('d') => out.push_str("[0-9]"),
                    Some('D') => out.push_str("[^0-9]"),
                    Some('s') => out.push_str("[ \\t\\n\\r]"),
                    Some('S') => out.push_str("[^ \\t\\n\\r]"),
                    Some('w') => out.push_str("[a-zA-Z0-9_]"),
                    Some('W') => out.push_str("[^a-zA-Z0-9_]"),
                    Some(n) => out.push_str(&regex::escape(&n.to_string())),
                    None => return Err(EqlError::verification(format!("regex \"{pattern}\" ends with a lone backslash"), span)),
                }
            }
            '&' => return Err(unsupported("& (intersection)")),
            '~' => return Err(unsupported("~ (complement)")),
            '<' => return Err(unsupported("<n-m> (numeric interval)")),
            '@' => return Err(unsupported("@ (any string)")),
            '#' => return Err(unsupported("# (empty language)")),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if in_class {
        return Err(EqlError::verification(format!("regex \"{pattern}\": unclosed [ character class"), span));
    }
    out.push_str(")$");
    regex::Regex::new(&out).map_err(|e| EqlError::verification(format!("invalid regex \"{pattern}\": {e}"), span))
}

fn push_class_escaped(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        out.push('\\');
        out.push(c);
    }
}

// ---------------------------------------------------------------------------------------------
// UTF-16 helpers

fn to_utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// Lossy: a lone surrogate (a cut through a pair) becomes U+FFFD — a Rust `String` cannot hold it (spec U6).
fn from_utf16(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

/// `substring(s, start[, end])`: Python slice semantics on UTF-16 code units (spec §7.2).
pub fn substring(s: &str, start: Option<i64>, end: Option<i64>) -> String {
    let Some(start) = start else { return s.to_string() };
    if s.is_empty() {
        return String::new();
    }
    let ascii = s.is_ascii();
    let len = if ascii { s.len() as i64 } else { s.encode_utf16().count() as i64 };
    let mut st = start;
    if st < 0 {
        st += len;
        if st < 0 {
            st = 0;
        }
    }
    let mut en = end.unwrap_or(len);
    if en < 0 {
        en += len;
        if en < 0 {
            en = 0;
        }
    } else if en > len {
        en = len;
    }
    if st >= en {
        return String::new();
    }
    if ascii {
        s[st as usize..en as usize].to_string()
    } else {
        from_utf16(&to_utf16(s)[st as usize..en as usize])
    }
}

/// Per-character lower-casing that keeps the UTF-16 length (so indices found on it apply to the original).
fn lower_same_len(s: &str) -> String {
    s.chars()
        .map(|c| {
            let l = simple_lower(c);
            if l.len_utf16() == c.len_utf16() {
                l
            } else {
                c
            }
        })
        .collect()
}

fn index_of_units(hay: &[u16], needle: &[u16], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from.min(hay.len()));
    }
    if from >= hay.len() || needle.len() > hay.len() {
        return None;
    }
    kmp_find(&hay[from..], needle).map(|p| p + from)
}

fn last_index_of_units(hay: &[u16], needle: &[u16]) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    // The last occurrence is the first one in the reversed text of the reversed needle.
    let rev_hay: Vec<u16> = hay.iter().rev().copied().collect();
    let rev_needle: Vec<u16> = needle.iter().rev().copied().collect();
    kmp_find(&rev_hay, &rev_needle).map(|p| hay.len() - p - needle.len())
}

/// Knuth–Morris–Pratt: first index of a non-empty `needle` in `hay`, in linear time whatever the input
/// (a naive scan is quadratic on crafted values).
fn kmp_find(hay: &[u16], needle: &[u16]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    let mut fail = vec![0usize; needle.len()];
    let mut k = 0;
    for i in 1..needle.len() {
        while k > 0 && needle[i] != needle[k] {
            k = fail[k - 1];
        }
        if needle[i] == needle[k] {
            k += 1;
        }
        fail[i] = k;
    }
    let mut k = 0;
    for (i, &c) in hay.iter().enumerate() {
        while k > 0 && c != needle[k] {
            k = fail[k - 1];
        }
        if c == needle[k] {
            k += 1;
            if k == needle.len() {
                return Some(i + 1 - k);
            }
        }
    }
    None
}

/// `indexOf(s, sub[, start])`: first UTF-16 index of `sub` at or after `start` (negative → 0), or `None`.
pub fn index_of(s: &str, sub: &str, start: i64, ci: bool) -> Option<i64> {
    let (s2, sub2);
    let (hs, ns) = if ci {
        s2 = lower_same_len(s);
        sub2 = lower_same_len(sub);
        (s2.as_str(), sub2.as_str())
    } else {
        (s, sub)
    };
    let from = start.max(0) as usize;
    if hs.is_ascii() && ns.is_ascii() {
        // Java clamps fromIndex to the length (an empty needle is then found at the end).
        let from = from.min(hs.len());
        return hs[from..].find(ns).map(|p| (p + from) as i64);
    }
    index_of_units(&to_utf16(hs), &to_utf16(ns), from).map(|p| p as i64)
}

/// `between(s, left, right[, greedy])` (ES `StringUtils.between`): the text after the first `left` up to
/// the next (or, greedy, the last) `right`; `""` when either is not found.
pub fn between(s: &str, left: &str, right: &str, greedy: bool, ci: bool) -> String {
    let (m, l, r) = if ci {
        (lower_same_len(s), lower_same_len(left), lower_same_len(right))
    } else {
        (s.to_string(), left.to_string(), right.to_string())
    };
    let (mu, lu, ru) = (to_utf16(&m), to_utf16(&l), to_utf16(&r));
    let Some(idx) = index_of_units(&mu, &lu, 0) else { return String::new() };
    let start = idx + lu.len();
    let end = if greedy { last_index_of_units(&mu, &ru) } else { index_of_units(&mu, &ru, start) };
    match end {
        Some(e) if e >= start => from_utf16(&to_utf16(s)[start..e]),
        _ => String::new(),
    }
}

/// Java `String.startsWith`/`endsWith`/`contains`, optionally on `toLowerCase(Locale.ROOT)` of both sides.
pub fn str_test(kind: StrTest, s: &str, p: &str, ci: bool) -> bool {
    let (s2, p2);
    let (s, p) = if ci {
        if s.is_ascii() && p.is_ascii() {
            s2 = s.to_ascii_lowercase();
            p2 = p.to_ascii_lowercase();
        } else {
            s2 = s.to_lowercase();
            p2 = p.to_lowercase();
        }
        (s2.as_str(), p2.as_str())
    } else {
        (s, p)
    };
    match kind {
        StrTest::StartsWith => s.starts_with(p),
        StrTest::EndsWith => s.ends_with(p),
        StrTest::Contains => s.contains(p),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrTest {
    StartsWith,
    EndsWith,
    Contains,
}

// ---------------------------------------------------------------------------------------------
// CIDR

/// Parses a `cidrMatch` block: `a.b.c.d/n`, `v6/n`, or a bare address (= /32 or /128). IPv4 blocks are
/// turned into their IPv4-mapped IPv6 form so they also match values stored that way.
pub fn parse_cidr(s: &str) -> Option<Ipv6Net> {
    if s.contains('/') {
        let net: IpNet = s.parse().ok()?;
        Some(match net {
            IpNet::V4(n) => Ipv6Net::new(n.network().to_ipv6_mapped(), n.prefix_len() + 96).ok()?.trunc(),
            IpNet::V6(n) => n.trunc(),
        })
    } else {
        let ip = parse_ip(s)?;
        Ipv6Net::new(ip, 128).ok()
    }
}

pub fn cidr_contains(blocks: &[Ipv6Net], ip: &Ipv6Addr) -> bool {
    blocks.iter().any(|b| b.contains(ip))
}

/// Parses a script-side IP (a canonical string), IPv4 mapped.
pub fn script_ip(s: &str) -> Option<Ipv6Addr> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => Some(v6),
    }
}

// ---------------------------------------------------------------------------------------------
// Arithmetic (QL `Arithmetics`: exact long math, Java double math)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// `a op b` on numbers; `Ok(Null)` if either is null. Long overflow and integer division by zero are
/// query errors (Java `Math.addExact` etc. / `ArithmeticException`).
pub fn arith<'a>(op: Arith, a: &SV<'_>, b: &SV<'_>, span: Span) -> Result<SV<'a>, EqlError> {
    let name = match op {
        Arith::Add => "add",
        Arith::Sub => "subtract",
        Arith::Mul => "multiply",
        Arith::Div => "divide",
        Arith::Mod => "modulo",
    };
    match (a, b) {
        (SV::Null, _) | (_, SV::Null) => Ok(SV::Null),
        (SV::Long(x), SV::Long(y)) => {
            let r = match op {
                Arith::Add => x.checked_add(*y),
                Arith::Sub => x.checked_sub(*y),
                Arith::Mul => x.checked_mul(*y),
                Arith::Div => {
                    if *y == 0 {
                        return Err(EqlError::query(format!("{name}: division by zero"), span));
                    }
                    x.checked_div(*y)
                }
                Arith::Mod => {
                    if *y == 0 {
                        return Err(EqlError::query(format!("{name}: division by zero"), span));
                    }
                    Some(x.wrapping_rem(*y))
                }
            };
            r.map(SV::Long).ok_or_else(|| EqlError::query(format!("{name}: long overflow"), span))
        }
        (SV::Long(_) | SV::Double(_), SV::Long(_) | SV::Double(_)) => {
            let f = |v: &SV| match v {
                SV::Long(l) => *l as f64,
                SV::Double(d) => *d,
                _ => 0.0,
            };
            let (x, y) = (f(a), f(b));
            Ok(SV::Double(match op {
                Arith::Add => x + y,
                Arith::Sub => x - y,
                Arith::Mul => x * y,
                Arith::Div => x / y,
                Arith::Mod => x % y,
            }))
        }
        _ => Err(EqlError::query(
            format!("{name}: arguments must be numbers, found [{}] and [{}]", a.type_name(), b.type_name()),
            span,
        )),
    }
}

/// `number(s[, base])` (ES `ToNumberFunctionProcessor`): base 10 parses a long, else a double;
/// other bases parse a long (a `0x` prefix is allowed for base 16). Unparseable → query error.
pub fn to_number<'a>(s: &str, base: Option<i64>, span: Span) -> Result<SV<'a>, EqlError> {
    let base = base.unwrap_or(10);
    let err = || EqlError::query(format!("Unable to convert [{s}] to number of base [{base}]"), span);
    if !(2..=36).contains(&base) {
        return Err(EqlError::query(format!("number: invalid base [{base}], expected 2..36"), span));
    }
    if base == 10 {
        if let Ok(l) = s.parse::<i64>() {
            return Ok(SV::Long(l));
        }
        return crate::value::parse_java_double(s).map(SV::Double).ok_or_else(err);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let body = if base == 16 { body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")).unwrap_or(body) } else { body };
    let v = i64::from_str_radix(body, base as u32).map_err(|_| err())?;
    Ok(SV::Long(if neg { -v } else { v }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_examples_from_spec() {
        assert_eq!(substring("HOST$", Some(0), Some(-1)), "HOST");
        assert_eq!(substring("$", Some(0), Some(-1)), "");
        assert_eq!(substring("start regsvr32.exe", Some(-4), Some(-1)), ".ex");
        assert_eq!(substring("abc", None, None), "abc");
        assert_eq!(substring("abc", Some(-10), Some(10)), "abc");
        assert_eq!(substring("abc", Some(2), Some(1)), "");
        assert_eq!(substring("abc", Some(1), None), "bc");
        assert_eq!(substring("", Some(0), Some(-1)), "");
        // "a😀b": UTF-16 units a, hi, lo, b → [0,3) = "a😀", [0,-1) same, [1,2) = lone surrogate → U+FFFD.
        assert_eq!(substring("a😀b", Some(0), Some(3)), "a😀");
        assert_eq!(substring("a😀b", Some(0), Some(-1)), "a😀");
        assert_eq!(substring("a😀b", Some(1), Some(2)), "\u{FFFD}");
        assert_eq!(substring("é€x", Some(-2), None), "€x");
    }

    proptest::proptest! {
        /// The star-runs fast path (ASCII patterns of literals and `*`) decides exactly what the general
        /// backtracking matcher decides, case-sensitive and not, for short and long values.
        #[test]
        fn star_runs_agree_with_backtracking(pattern in "[aAb.*]{0,8}", value in "[aAb.]{0,12}", long in 0usize..2, ci in proptest::bool::ANY) {
            let value = if long == 1 { value.repeat(30) } else { value };
            let glob = Glob::new(&pattern, ci);
            let vb = value.as_bytes();
            let general = glob_match(&glob.toks, vb.len(), |ti, vi| match glob.toks[ti] {
                GTok::Lit(c) => if ci { (c as u8).eq_ignore_ascii_case(&vb[vi]) } else { c as u8 == vb[vi] },
                _ => true,
            });
            proptest::prop_assert_eq!(glob.matches(&value), general, "pattern {:?} value {:?} ci {}", pattern, value, ci);
        }
    }

    #[test]
    fn globs() {
        assert!(Glob::new("service-*", true).matches("Service-Installed"));
        assert!(Glob::new("a?c", false).matches("abc"));
        assert!(!Glob::new("a?c", false).matches("ac"));
        assert!(Glob::new("a?c", false).matches("aéc"));
        assert!(Glob::new("*$", false).matches("FS01$"));
        assert!(Glob::new("*a*b*", false).matches("xxaxxbxx"));
        assert!(!Glob::new("*a*b", false).matches("xxaxxbxx"));
        assert!(Glob::new("*AB*ab*", true).matches("xxabYYABzz"));
        assert!(!Glob::new("ab*ba", false).matches("aba"), "prefix and suffix may not overlap");
        assert!(Glob::new("a**b", false).matches("ab"));
        assert!(Glob::new("*", false).matches(""));
        assert!(Glob::literal("Kerberos", true).matches("KERBEROS"));
        assert!(!Glob::literal("Kerberos", false).matches("KERBEROS"));
        assert!(Glob::literal("ÉTÉ", true).matches("été"));
        // `ß` does not fold to `ss`.
        assert!(!Glob::literal("ß", true).matches("ss"));
        // Backslash is literal in `:`/`like` patterns.
        assert!(Glob::new("a\\b", false).matches("a\\b"));
        // Lucene wildcard syntax: `\*` is a literal star.
        assert!(Glob::lucene_wildcard("\\*", true, false, false).matches("x*"));
        assert!(!Glob::lucene_wildcard("\\*", true, false, false).matches("xy"));
    }

    #[test]
    fn lucene_regexes() {
        let sp = Span::default();
        assert!(lucene_regex("ab.*", false, sp).unwrap().is_match("abc"));
        assert!(!lucene_regex("b.*", false, sp).unwrap().is_match("abc"));
        assert!(lucene_regex("[a-c]+x{2}", false, sp).unwrap().is_match("abcxx"));
        assert!(lucene_regex("^a$", false, sp).unwrap().is_match("^a$"));
        assert!(lucene_regex("\"a.b\"", false, sp).unwrap().is_match("a.b"));
        assert!(!lucene_regex("\"a.b\"", false, sp).unwrap().is_match("axb"));
        assert!(lucene_regex("ABC", true, sp).unwrap().is_match("abc"));
        assert!(lucene_regex("a&b", false, sp).is_err());
        assert!(lucene_regex("a\\&b", false, sp).unwrap().is_match("a&b"));
        assert!(lucene_regex("x<1-5>", false, sp).is_err());
    }

    #[test]
    fn adversarial_wildcards_are_linear() {
        // A 5,000-character constant against a 1 MB value that almost matches everywhere.
        let needle = format!("{}b", "a".repeat(4999));
        let hay = "A".repeat(1_000_000);
        let started = std::time::Instant::now();
        for ci in [true, false] {
            assert!(!Glob::lucene_wildcard(&needle, true, false, ci).matches(&hay));
            assert!(!Glob::lucene_wildcard(&needle, true, true, ci).matches(&hay));
        }
        assert!(Glob::lucene_wildcard(&needle, true, false, true).matches(&format!("{hay}{needle}")));
        assert!(!str_test(StrTest::Contains, &hay, &needle, true));
        assert!(index_of(&format!("é{hay}"), &needle, 0, true).is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[test]
    fn index_of_between() {
        assert_eq!(index_of("a.b.c", ".", 0, false), Some(1));
        assert_eq!(index_of("a.b.c", ".", 2, false), Some(3));
        assert_eq!(index_of("a.b.c", "x", 0, false), None);
        assert_eq!(index_of("ABC", "b", 0, true), Some(1));
        assert_eq!(index_of("abc", "", 10, false), Some(3));
        assert_eq!(index_of("😀ab", "a", 0, false), Some(2));
        assert_eq!(between("welcome to event query language", " ", " ", false, false), "to");
        assert_eq!(between("welcome to event query language", " ", " ", true, false), "to event query");
        assert_eq!(between("System32\\cmd.exe", "system32\\", ".exe", false, true), "cmd");
        assert_eq!(between("abc", "x", "c", false, false), "");
    }

    #[test]
    fn cidr_blocks() {
        let b = vec![parse_cidr("127.0.0.0/8").unwrap(), parse_cidr("::1").unwrap()];
        assert!(cidr_contains(&b, &parse_ip("::ffff:127.0.0.1").unwrap()));
        assert!(cidr_contains(&b, &parse_ip("127.0.0.2").unwrap()));
        assert!(cidr_contains(&b, &parse_ip("0:0:0:0:0:0:0:1").unwrap()));
        assert!(!cidr_contains(&b, &parse_ip("10.0.0.1").unwrap()));
        assert!(!cidr_contains(&b, &parse_ip("::2").unwrap()));
        assert!(parse_cidr("300.0.0.0/8").is_none());
        assert!(parse_cidr("10.0.0.0/40").is_none());
    }

    #[test]
    fn arithmetic_java_rules() {
        let sp = Span::default();
        assert_eq!(arith(Arith::Div, &SV::Long(7), &SV::Long(2), sp).unwrap(), SV::Long(3));
        assert_eq!(arith(Arith::Div, &SV::Long(-7), &SV::Long(2), sp).unwrap(), SV::Long(-3));
        assert_eq!(arith(Arith::Mod, &SV::Long(-7), &SV::Long(2), sp).unwrap(), SV::Long(-1));
        assert_eq!(arith(Arith::Div, &SV::Long(7), &SV::Double(2.0), sp).unwrap(), SV::Double(3.5));
        assert!(arith(Arith::Add, &SV::Long(i64::MAX), &SV::Long(1), sp).is_err());
        assert!(arith(Arith::Div, &SV::Long(1), &SV::Long(0), sp).is_err());
        assert_eq!(arith(Arith::Add, &SV::Null, &SV::Long(1), sp).unwrap(), SV::Null);
        assert_eq!(to_number("0x1F", Some(16), sp).unwrap(), SV::Long(31));
        assert_eq!(to_number("1.5", None, sp).unwrap(), SV::Double(1.5));
        assert_eq!(to_number("-12", None, sp).unwrap(), SV::Long(-12));
        assert!(to_number("abc", None, sp).is_err());
    }
}
