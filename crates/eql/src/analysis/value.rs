//! Document values and query literals, normalised per field type the way Elasticsearch indexes them.
//!
//! ES never compares `_source` JSON: it compares what the field mapper indexed (spec §3.3, §5.2). So a
//! keyword field holding the JSON number `5145` is the term `"5145"`, a `long` field holding `"0"` is `0`,
//! an IPv4 address is stored as IPv4-mapped IPv6, a date is epoch milliseconds, and a value the mapper would
//! reject (longer than `ignore_above`, `"0x1c0"` in a long, a bad IP) is simply not there. Literals are
//! coerced to the field's type the same way (§5.1); a literal the mapper cannot parse fails the query.

use crate::ast::{Literal, Span};
use crate::plan::KeyValue;
use crate::EqlError;
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::{IpAddr, Ipv6Addr};

/// How a field's values are normalised and compared (derived from its mapped type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// keyword, wildcard, constant_keyword, and text fields with a keyword-family sub-field.
    Keyword,
    /// A `text` field without a keyword sub-field (EQL cannot compare it exactly).
    Text,
    Long,
    Double,
    Ip,
    Date,
    DateNanos,
    Bool,
    Version,
    /// Offline mode, field unknown to the mapping: each value typed by its JSON type
    /// (string → keyword, integer → long, float → double, bool → boolean), never malformed.
    Inferred,
    /// object/alias/other types: not usable in EQL expressions.
    Unsupported(&'static str),
}

impl ValueKind {
    /// True for the keyword family (what string functions accept).
    pub fn is_string(&self) -> bool {
        matches!(self, ValueKind::Keyword)
    }
    pub fn is_numeric(&self) -> bool {
        matches!(self, ValueKind::Long | ValueKind::Double)
    }
}

/// One indexed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Str(Cow<'a, str>),
    Long(i64),
    Double(f64),
    Bool(bool),
    /// IPv6 form; IPv4 is stored IPv4-mapped, as ES does.
    Ip(Ipv6Addr),
    /// Epoch milliseconds.
    Date(i64),
    Version(Cow<'a, str>),
}

/// The outcome of normalising one raw `_source` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Norm<'a> {
    Val(Val<'a>),
    /// Not indexed, and not an error (null, `ignore_above`, empty boolean string).
    Skip,
    /// The mapper would have rejected it (indexed only under `ignore_malformed`): missing, and counted.
    Malformed,
}

impl Val<'_> {
    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Version(s) => Val::Version(Cow::Owned(s.into_owned())),
            Val::Long(l) => Val::Long(l),
            Val::Double(d) => Val::Double(d),
            Val::Bool(b) => Val::Bool(b),
            Val::Ip(i) => Val::Ip(i),
            Val::Date(d) => Val::Date(d),
        }
    }

    /// The text a script sees (`doc[f].value.toString()`-like): canonical IP, ISO date, Java numbers.
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Val::Str(s) | Val::Version(s) => Cow::Borrowed(s.as_ref()),
            Val::Long(l) => Cow::Owned(l.to_string()),
            Val::Double(d) => Cow::Owned(java_double_to_string(*d)),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Ip(ip) => Cow::Owned(format_ip(ip)),
            Val::Date(ms) => Cow::Owned(format_date_ms(*ms)),
        }
    }

    /// As a join-key / tiebreaker part, typed like ES's hit extractor returns it.
    pub fn to_key(&self) -> KeyValue {
        match self {
            Val::Str(s) | Val::Version(s) => KeyValue::Str(s.to_string()),
            Val::Long(l) => KeyValue::Long(*l),
            Val::Double(d) => KeyValue::double(*d),
            Val::Bool(b) => KeyValue::Bool(*b),
            Val::Ip(ip) => KeyValue::Str(format_ip(ip)),
            Val::Date(ms) => KeyValue::Str(format_date_ms(*ms)),
        }
    }
}

/// Length in UTF-16 code units (Java `String.length()`).
pub fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.encode_utf16().count()
    }
}

/// Normalises one raw value (never an array: callers flatten) for a field of `kind`.
/// `null` yields [`Norm::Skip`]; the caller substitutes a mapping's `null_value` first.
pub fn normalize<'a>(kind: &ValueKind, ignore_above: Option<usize>, v: &'a Value) -> Norm<'a> {
    match v {
        Value::Null | Value::Array(_) => return Norm::Skip,
        Value::Object(_) => return Norm::Malformed,
        _ => {}
    }
    match kind {
        ValueKind::Keyword | ValueKind::Text | ValueKind::Unsupported(_) => {
            let s: Cow<'a, str> = match v {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                Value::Number(n) => Cow::Owned(n.to_string()),
                Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
                _ => return Norm::Skip,
            };
            if let Some(max) = ignore_above {
                // Bytes ≥ UTF-16 units, so the cheap test settles the common case.
                if s.len() > max && utf16_len(&s) > max {
                    return Norm::Skip;
                }
            }
            Norm::Val(Val::Str(s))
        }
        ValueKind::Long => match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Norm::Val(Val::Long(i))
                } else if n.is_u64() {
                    Norm::Malformed
                } else {
                    match n.as_f64().and_then(f64_to_long_trunc) {
                        Some(l) => Norm::Val(Val::Long(l)),
                        None => Norm::Malformed,
                    }
                }
            }
            Value::String(s) => match parse_long_coerce(s) {
                Some(l) => Norm::Val(Val::Long(l)),
                None => Norm::Malformed,
            },
            _ => Norm::Malformed,
        },
        ValueKind::Double => match v {
            Value::Number(n) => match n.as_f64() {
                Some(d) if d.is_finite() => Norm::Val(Val::Double(d)),
                _ => Norm::Malformed,
            },
            Value::String(s) => match parse_java_double(s) {
                Some(d) if d.is_finite() => Norm::Val(Val::Double(d)),
                _ => Norm::Malformed,
            },
            _ => Norm::Malformed,
        },
        ValueKind::Ip => match v {
            Value::String(s) => match parse_ip(s) {
                Some(ip) => Norm::Val(Val::Ip(ip)),
                None => Norm::Malformed,
            },
            _ => Norm::Malformed,
        },
        ValueKind::Date | ValueKind::DateNanos => match v {
            Value::String(s) => match parse_date_ms(s) {
                Some(ms) => Norm::Val(Val::Date(ms)),
                None => Norm::Malformed,
            },
            Value::Number(n) => {
                let ms = n.as_i64().or_else(|| n.as_f64().and_then(f64_to_long_trunc));
                match ms {
                    Some(ms) => Norm::Val(Val::Date(ms)),
                    None => Norm::Malformed,
                }
            }
            _ => Norm::Malformed,
        },
        ValueKind::Bool => match v {
            Value::Bool(b) => Norm::Val(Val::Bool(*b)),
            Value::String(s) if s == "true" => Norm::Val(Val::Bool(true)),
            Value::String(s) if s == "false" => Norm::Val(Val::Bool(false)),
            Value::String(s) if s.is_empty() => Norm::Skip,
            _ => Norm::Malformed,
        },
        ValueKind::Version => match v {
            Value::String(s) => Norm::Val(Val::Version(Cow::Borrowed(s.as_str()))),
            _ => Norm::Malformed,
        },
        ValueKind::Inferred => match v {
            Value::String(s) => Norm::Val(Val::Str(Cow::Borrowed(s.as_str()))),
            Value::Bool(b) => Norm::Val(Val::Bool(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Norm::Val(Val::Long(i)),
                None => Norm::Val(Val::Double(n.as_f64().unwrap_or(f64::NAN))),
            },
            _ => Norm::Skip,
        },
    }
}

fn f64_to_long_trunc(d: f64) -> Option<i64> {
    // Java's range check happens on the double; values at the edges saturate like `(long)`.
    if !d.is_finite() || d < i64::MIN as f64 || d > i64::MAX as f64 {
        return None;
    }
    Some(d.trunc() as i64)
}

/// ES `Numbers.toLong(s, coerce=true)`: a Java long, else a BigDecimal truncated toward zero.
/// No whitespace, no hex, no `NaN`.
pub fn parse_long_coerce(s: &str) -> Option<i64> {
    if let Ok(l) = s.parse::<i64>() {
        return Some(l);
    }
    if !is_big_decimal(s) {
        return None;
    }
    let d: f64 = s.parse().ok()?;
    f64_to_long_trunc(d)
}

/// Java `BigDecimal(String)` grammar: `[+-]digits[.digits][(e|E)[+-]digits]` (at least one digit).
fn is_big_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// Java `Double.parseDouble`: trims whitespace, accepts a trailing `d`/`f`, `NaN`, `Infinity`.
pub fn parse_java_double(s: &str) -> Option<f64> {
    let t = s.trim();
    match t {
        "NaN" | "+NaN" | "-NaN" => return Some(f64::NAN),
        "Infinity" | "+Infinity" => return Some(f64::INFINITY),
        "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let t = t.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(t);
    if !is_big_decimal(t) && !(t.ends_with('.') && is_big_decimal(&t[..t.len() - 1])) {
        return None;
    }
    t.parse().ok()
}

/// Parses an IP address as ES's `InetAddresses.forString` does (IPv4 dotted quad or IPv6), IPv4 mapped.
///
/// An IPv6 scope (zone) id, `fe80::1%12` or `fe80::1%eth0`, is accepted and dropped as Elasticsearch's
/// `InetAddresses.forString` does (so the address is indexed without it); an empty scope (`fe80::1%`), a
/// scope on an IPv4 address or on IPv6 text with a dotted quad (`::ffff:10.0.0.1%3`) is not an address
/// (checked against Elasticsearch 8.19's `ip` field).
pub fn parse_ip(s: &str) -> Option<Ipv6Addr> {
    let s = match s.split_once('%') {
        // Elasticsearch converts a dotted quad inside IPv6 text before dropping the scope, which then fails.
        Some((addr, scope)) if addr.contains(':') && !addr.contains('.') && !scope.is_empty() => addr,
        Some(_) => return None,
        None => s,
    };
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => Some(v6),
    }
}

/// Canonical text of an IP doc value: IPv4 dotted quad (also for IPv4-mapped), IPv6 RFC 5952.
pub fn format_ip(ip: &Ipv6Addr) -> String {
    match ip.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => ip.to_string(),
    }
}

/// Java `Double.toString(d)` (shortest round-trip digits, JDK ≥ 19): plain notation for
/// 10⁻³ ≤ |d| < 10⁷ (`42.5`, `1.0`), otherwise `d.dddE±n` (`1.0E10`, `1.0E-5`).
pub fn java_double_to_string(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let sci = format!("{:e}", d.abs()); // e.g. "4.25e1", "1e10"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if d < 0.0 { "-" } else { "" };
    let a = d.abs();
    if (1e-3..1e7).contains(&a) {
        if exp >= 0 {
            let e = exp as usize;
            let (int, frac) = if digits.len() > e + 1 {
                (digits[..=e].to_string(), digits[e + 1..].to_string())
            } else {
                (format!("{digits}{}", "0".repeat(e + 1 - digits.len())), "0".to_string())
            };
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let rest = if digits.len() > 1 { &digits[1..] } else { "0" };
        format!("{sign}{}.{rest}E{exp}", &digits[..1])
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// ES's default date format `strict_date_optional_time||epoch_millis`, to epoch milliseconds
/// (sub-millisecond digits truncated, as a `date` field stores them).
pub fn parse_date_ms(s: &str) -> Option<i64> {
    parse_iso_ms(s).or_else(|| parse_epoch_millis(s))
}

fn parse_epoch_millis(s: &str) -> Option<i64> {
    if let Ok(l) = s.parse::<i64>() {
        return Some(l);
    }
    if is_big_decimal(s) && !s.contains(['e', 'E']) {
        return f64_to_long_trunc(s.parse::<f64>().ok()?);
    }
    None
}

fn parse_iso_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    let num = |i: &mut usize, n: usize| -> Option<u32> {
        if *i + n > b.len() || !b[*i..*i + n].iter().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let v = std::str::from_utf8(&b[*i..*i + n]).ok()?.parse().ok()?;
        *i += n;
        Some(v)
    };
    let year = num(&mut i, 4)? as i64;
    let (mut month, mut day) = (1, 1);
    let (mut h, mut mi, mut sec, mut ms) = (0u32, 0u32, 0u32, 0u32);
    if i < b.len() && b[i] == b'-' {
        i += 1;
        month = num(&mut i, 2)?;
        if i < b.len() && b[i] == b'-' {
            i += 1;
            day = num(&mut i, 2)?;
        }
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut offset_min: i64 = 0;
    if i < b.len() && b[i] == b'T' {
        i += 1;
        h = num(&mut i, 2)?;
        if i < b.len() && b[i] == b':' {
            i += 1;
            mi = num(&mut i, 2)?;
            if i < b.len() && b[i] == b':' {
                i += 1;
                sec = num(&mut i, 2)?;
                if i < b.len() && (b[i] == b'.' || b[i] == b',') {
                    i += 1;
                    let start = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    let frac = &s[start..i];
                    if frac.is_empty() || frac.len() > 9 {
                        return None;
                    }
                    let f3: String = frac.chars().chain("000".chars()).take(3).collect();
                    ms = f3.parse().ok()?;
                }
            }
        }
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        if i < b.len() {
            match b[i] {
                b'Z' => i += 1,
                b'+' | b'-' => {
                    let neg = b[i] == b'-';
                    i += 1;
                    let oh = num(&mut i, 2)? as i64;
                    let mut om = 0i64;
                    if i < b.len() && b[i] == b':' {
                        i += 1;
                        om = num(&mut i, 2)? as i64;
                    } else if i + 2 <= b.len() {
                        om = num(&mut i, 2)? as i64;
                    }
                    if oh > 18 || om > 59 {
                        return None;
                    }
                    offset_min = (oh * 60 + om) * if neg { -1 } else { 1 };
                }
                _ => return None,
            }
        }
    }
    if i != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + sec as i64 - offset_min * 60;
    secs.checked_mul(1000)?.checked_add(ms as i64)
}

/// `strict_date_optional_time` with milliseconds, UTC (`1970-01-01T00:00:00.000Z`), as ES renders a date
/// field in `fields` and join keys.
pub fn format_date_ms(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

/// Orders `version` values like ES (best effort): valid semver-like versions by numeric parts, a
/// pre-release before its release, pre-release identifiers numerically or lexically; invalid versions after
/// all valid ones, lexically.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> Option<(Vec<u64>, Option<Vec<&str>>)> {
        let v = v.split('+').next().unwrap_or(v);
        let (main, pre) = match v.split_once('-') {
            Some((m, p)) => (m, Some(p.split('.').collect::<Vec<_>>())),
            None => (v, None),
        };
        let nums: Option<Vec<u64>> = main.split('.').map(|p| p.parse().ok()).collect();
        Some((nums?, pre))
    }
    match (split(a), split(b)) {
        (Some((na, pa)), Some((nb, pb))) => na.cmp(&nb).then_with(|| match (pa, pb) {
            (None, None) => Ordering::Equal,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => {
                for (p, q) in x.iter().zip(y.iter()) {
                    let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                        (Ok(m), Ok(n)) => m.cmp(&n),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        _ => p.cmp(q),
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                x.len().cmp(&y.len())
            }
        }),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
    .then_with(|| a.cmp(b))
}

/// Compares an indexed value with a coerced literal. `None` = not comparable (never matches).
pub fn compare(v: &Val<'_>, lit: &Val<'_>) -> Option<Ordering> {
    use Val::*;
    match (v, lit) {
        (Str(a), Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
        (Long(a), Long(b)) => Some(a.cmp(b)),
        (Long(a), Double(b)) => (*a as f64).partial_cmp(b),
        (Double(a), Long(b)) => a.partial_cmp(&(*b as f64)),
        (Double(a), Double(b)) => a.partial_cmp(b),
        (Bool(a), Bool(b)) => Some(a.cmp(b)),
        (Ip(a), Ip(b)) => Some(a.octets().cmp(&b.octets())),
        (Date(a), Date(b)) => Some(a.cmp(b)),
        (Version(a), Version(b)) => Some(version_cmp(a, b)),
        // Offline (inferred) fields: a string value compares with the literal's text, a number with
        // the literal parsed as a number.
        (Str(a), Long(_) | Double(_) | Bool(_)) => Some(a.as_ref().cmp(lit.to_text().as_ref())),
        (Long(_) | Double(_), Str(b)) => {
            let n = parse_java_double(b)?;
            let a = match v {
                Long(l) => *l as f64,
                Double(d) => *d,
                _ => return None,
            };
            a.partial_cmp(&n)
        }
        _ => None,
    }
}

/// Coerces a query literal to the type of the field it is compared with (spec §5.1).
/// Returns `Ok(None)` for `null`. Errors are query errors: ES fails the whole search.
pub fn coerce_literal(kind: &ValueKind, lit: &Literal, field: &str, span: Span) -> Result<Option<Val<'static>>, EqlError> {
    let natural = || -> Val<'static> {
        match lit {
            Literal::Bool(b) => Val::Bool(*b),
            Literal::Long(l) => Val::Long(*l),
            Literal::Double(d) => Val::Double(*d),
            Literal::String(s) => Val::Str(Cow::Owned(s.clone())),
            Literal::Null => Val::Bool(false),
        }
    };
    if matches!(lit, Literal::Null) {
        return Ok(None);
    }
    let text = || -> String {
        match lit {
            Literal::Bool(b) => b.to_string(),
            Literal::Long(l) => l.to_string(),
            Literal::Double(d) => java_double_to_string(*d),
            Literal::String(s) => s.clone(),
            Literal::Null => String::new(),
        }
    };
    Ok(Some(match kind {
        ValueKind::Keyword | ValueKind::Text | ValueKind::Unsupported(_) => Val::Str(Cow::Owned(text())),
        ValueKind::Inferred => natural(),
        ValueKind::Long | ValueKind::Double => match lit {
            Literal::Long(l) => {
                if *kind == ValueKind::Double {
                    Val::Double(*l as f64)
                } else {
                    Val::Long(*l)
                }
            }
            Literal::Double(d) => Val::Double(*d),
            Literal::String(s) => match parse_java_double(s).filter(|d| !d.is_nan()) {
                Some(d) if *kind == ValueKind::Long && d.fract() == 0.0 && d.abs() < 9.2e18 => {
                    Val::Long(s.parse::<i64>().unwrap_or(d as i64))
                }
                Some(d) => Val::Double(d),
                None => {
                    return Err(EqlError::query(
                        format!("cannot compare numeric field [{field}] with the non-numeric string \"{s}\" (Elasticsearch fails the search: number_format_exception)"),
                        span,
                    ))
                }
            },
            _ => {
                return Err(EqlError::query(
                    format!("cannot compare numeric field [{field}] with {}", text()),
                    span,
                ))
            }
        },
        ValueKind::Ip => match parse_ip(&text()) {
            Some(ip) => Val::Ip(ip),
            None => {
                return Err(EqlError::query(
                    format!("'{}' is not an IP string literal (field [{field}] is of type ip)", text()),
                    span,
                ))
            }
        },
        ValueKind::Date | ValueKind::DateNanos => {
            let ms = match lit {
                Literal::Long(l) => Some(*l),
                Literal::Double(d) => f64_to_long_trunc(*d),
                _ => parse_date_ms(&text()),
            };
            match ms {
                Some(ms) => Val::Date(ms),
                None => {
                    return Err(EqlError::query(
                        format!("failed to parse date \"{}\" for field [{field}] (expected strict_date_optional_time or epoch_millis)", text()),
                        span,
                    ))
                }
            }
        }
        ValueKind::Bool => match lit {
            Literal::Bool(b) => Val::Bool(*b),
            Literal::String(s) if s == "true" => Val::Bool(true),
            Literal::String(s) if s == "false" => Val::Bool(false),
            _ => {
                return Err(EqlError::query(
                    format!("cannot compare boolean field [{field}] with {} (only true/false)", text()),
                    span,
                ))
            }
        },
        ValueKind::Version => Val::Version(Cow::Owned(text())),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n<'a>(k: ValueKind, v: &'a Value) -> Norm<'a> {
        normalize(&k, Some(1024), v)
    }

    #[test]
    fn keyword_takes_number_text_and_drops_long_values() {
        assert_eq!(n(ValueKind::Keyword, &json!(5145)), Norm::Val(Val::Str("5145".into())));
        assert_eq!(n(ValueKind::Keyword, &json!(true)), Norm::Val(Val::Str("true".into())));
        let long = Value::String("x".repeat(1025));
        assert_eq!(n(ValueKind::Keyword, &long), Norm::Skip);
        let ok = Value::String("x".repeat(1024));
        assert!(matches!(n(ValueKind::Keyword, &ok), Norm::Val(_)));
        // 600 two-byte characters: 1200 bytes but 600 UTF-16 units → indexed.
        let wide = Value::String("é".repeat(600));
        assert!(matches!(n(ValueKind::Keyword, &wide), Norm::Val(_)));
        assert_eq!(n(ValueKind::Keyword, &json!(null)), Norm::Skip);
    }

    #[test]
    fn long_coercion_like_es() {
        assert_eq!(n(ValueKind::Long, &json!("0")), Norm::Val(Val::Long(0)));
        assert_eq!(n(ValueKind::Long, &json!(1.5)), Norm::Val(Val::Long(1)));
        assert_eq!(n(ValueKind::Long, &json!("-1.9")), Norm::Val(Val::Long(-1)));
        assert_eq!(n(ValueKind::Long, &json!("1e3")), Norm::Val(Val::Long(1000)));
        assert_eq!(n(ValueKind::Long, &json!("0x1c0")), Norm::Malformed);
        assert_eq!(n(ValueKind::Long, &json!(" 5")), Norm::Malformed);
        assert_eq!(n(ValueKind::Long, &json!("NaN")), Norm::Malformed);
        assert_eq!(n(ValueKind::Long, &json!(true)), Norm::Malformed);
    }

    #[test]
    fn ip_parse_and_canonical_text() {
        let a = parse_ip("::ffff:127.0.0.1").unwrap();
        assert_eq!(a, parse_ip("127.0.0.1").unwrap());
        assert_eq!(format_ip(&a), "127.0.0.1");
        assert_eq!(parse_ip("0:0:0:0:0:0:0:1"), parse_ip("::1"));
        assert_eq!(format_ip(&parse_ip("FE80:0:0:0:0:0:0:1").unwrap()), "fe80::1");
        assert_eq!(format_ip(&parse_ip("2001:db8:0:0:1:0:0:1").unwrap()), "2001:db8::1:0:0:1");
        assert_eq!(n(ValueKind::Ip, &json!("not-an-ip")), Norm::Malformed);
        assert_eq!(n(ValueKind::Ip, &json!("999.1.1.1")), Norm::Malformed);
        // Scope ids, as Elasticsearch 8.19 indexes them: dropped, or the value is malformed.
        assert_eq!(parse_ip("fe80::1%12"), parse_ip("fe80::1"));
        assert_eq!(parse_ip("fe80::1%eth0"), parse_ip("fe80::1"));
        for bad in ["fe80::1%", "10.0.0.1%1", "::ffff:10.0.0.1%3", "%12"] {
            assert_eq!(parse_ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_iso_and_epoch() {
        assert_eq!(parse_date_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_date_ms("2024-05-01T10:20:40.3805426Z"), Some(1714558840380));
        assert_eq!(parse_date_ms("2024-05-01T12:20:40+02:00"), Some(1714558840000));
        assert_eq!(parse_date_ms("2024-05-01"), Some(1714521600000));
        assert_eq!(parse_date_ms("1"), Some(1));
        assert_eq!(parse_date_ms("-5"), Some(-5));
        assert_eq!(parse_date_ms("2024-02-30"), None);
        assert_eq!(parse_date_ms("yesterday"), None);
        assert_eq!(format_date_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(n(ValueKind::Date, &json!(1714558840380i64)), Norm::Val(Val::Date(1714558840380)));
    }

    #[test]
    fn java_double_formatting() {
        assert_eq!(java_double_to_string(42.5), "42.5");
        assert_eq!(java_double_to_string(1.0), "1.0");
        assert_eq!(java_double_to_string(1e10), "1.0E10");
        assert_eq!(java_double_to_string(1.0e7), "1.0E7");
        assert_eq!(java_double_to_string(9999999.0), "9999999.0");
        assert_eq!(java_double_to_string(0.001), "0.001");
        assert_eq!(java_double_to_string(0.0001), "1.0E-4");
        assert_eq!(java_double_to_string(-1.25e-5), "-1.25E-5");
        assert_eq!(java_double_to_string(123.456), "123.456");
        assert_eq!(java_double_to_string(0.1), "0.1");
    }

    #[test]
    fn literal_coercion_table() {
        let sp = Span::default();
        let kw = coerce_literal(&ValueKind::Keyword, &Literal::Long(5145), "event.code", sp).unwrap();
        assert_eq!(kw, Some(Val::Str("5145".into())));
        let kd = coerce_literal(&ValueKind::Keyword, &Literal::Double(1e10), "f", sp).unwrap();
        assert_eq!(kd, Some(Val::Str("1.0E10".into())));
        assert_eq!(coerce_literal(&ValueKind::Long, &Literal::String("0".into()), "p", sp).unwrap(), Some(Val::Long(0)));
        let e = coerce_literal(&ValueKind::Long, &Literal::String("abc".into()), "process.pid", sp).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Query);
        assert!(coerce_literal(&ValueKind::Ip, &Literal::String("nope".into()), "source.ip", sp).is_err());
        assert_eq!(
            coerce_literal(&ValueKind::Ip, &Literal::String("0:0:0:0:0:0:0:0".into()), "ip", sp).unwrap(),
            Some(Val::Ip(Ipv6Addr::UNSPECIFIED))
        );
    }

    #[test]
    fn version_order() {
        assert_eq!(version_cmp("1.2.4", "1.11.3"), Ordering::Less);
        assert_eq!(version_cmp("1.11.3", "1.5.0"), Ordering::Greater);
        assert_eq!(version_cmp("1.0.0-alpha", "1.0.0"), Ordering::Less);
        assert_eq!(version_cmp("abc", "99.0.0"), Ordering::Greater);
    }
}
