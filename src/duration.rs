//! The one duration notation of esdetect: a whole number followed by a unit (`500ms`, `30s`, `5m`, `1h`,
//! `2d`), at most [`crate::limits::MAX_DURATION_DAYS`] long. Rules accept what Kibana's rule schema
//! accepts ([`Notation::Rule`]: `s`, `m`, `h`, `d`, a unit required); the configuration also takes
//! milliseconds and bare seconds ([`Notation::Config`]: `500ms`, `30`).

use std::time::Duration;

/// Which forms are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notation {
    /// `<N>s|m|h|d`, as Kibana's rule `interval` and date math.
    Rule,
    /// `<N>`, `<N>ms|s|m|h|d`, as esdetect's configuration.
    Config,
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{text}` is not a duration: expected a number then {}", units(.notation))]
    NoNumber { text: String, notation: Notation },
    #[error("`{text}`: unknown unit `{unit}`; use {}", units(.notation))]
    UnknownUnit { text: String, unit: String, notation: Notation },
    #[error("{}", crate::limits::too_long(.0))]
    TooLong(String),
}

fn units(n: &Notation) -> &'static str {
    match n {
        Notation::Rule => "s, m, h or d, e.g. \"5m\"",
        Notation::Config => "ms, s, m, h or d, or seconds alone, e.g. \"500ms\", \"5m\", \"24h\", 30",
    }
}

/// Parses `text` in `notation`.
pub fn parse(text: &str, notation: Notation) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(DurationError::NoNumber { text: text.to_string(), notation });
    }
    let unit = unit.trim();
    let ms_per_unit: u64 = match (unit, notation) {
        ("ms", Notation::Config) => 1,
        ("s", _) | ("", Notation::Config) => 1_000,
        ("m", _) => 60_000,
        ("h", _) => 3_600_000,
        ("d", _) => 86_400_000,
        _ => return Err(DurationError::UnknownUnit { text: text.to_string(), unit: unit.to_string(), notation }),
    };
    let too_long = || DurationError::TooLong(text.to_string());
    let n: u64 = num.parse().map_err(|_| too_long())?;
    let ms = n.checked_mul(ms_per_unit).ok_or_else(too_long)?;
    if ms / 1000 > crate::limits::MAX_DURATION_SECS {
        return Err(too_long());
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_notations() {
        assert_eq!(parse("5m", Notation::Rule), Ok(Duration::from_secs(300)));
        assert_eq!(parse(" 2d ", Notation::Rule), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("500ms", Notation::Config), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30", Notation::Config), Ok(Duration::from_secs(30)));
        assert!(matches!(parse("500ms", Notation::Rule), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(parse("30", Notation::Rule), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(parse("m", Notation::Rule), Err(DurationError::NoNumber { .. })));
        assert!(matches!(parse("-5m", Notation::Config), Err(DurationError::NoNumber { .. })));
        assert!(matches!(parse("5w", Notation::Config), Err(DurationError::UnknownUnit { .. })));
    }

    #[test]
    fn bounded_by_the_limit() {
        assert_eq!(parse("3650d", Notation::Rule), Ok(Duration::from_secs(3650 * 86_400)));
        for t in ["3651d", "99999999999999999999d", "100000000d"] {
            let e = parse(t, Notation::Rule).unwrap_err();
            assert!(e.to_string().contains("maximum of 3650 days"), "{t}: {e}");
        }
    }
}
