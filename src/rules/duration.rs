//! The two duration notations of a rule: Kibana date math for `from`/`to` (`now-9m`) and the schedule
//! `interval` (`5m`). Only the forms Kibana's rule schema produces are accepted: a whole number followed
//! by one unit of `s`, `m`, `h` or `d`, at most [`crate::limits::MAX_DURATION_DAYS`] long.

use crate::duration::Notation;
use chrono::Duration;

/// Parses `<N><unit>` (`5m`, `90s`, `1h`, `2d`), esdetect's one duration notation in its rule form.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = crate::duration::parse(text, Notation::Rule).map_err(|e| e.to_string())?;
    Duration::from_std(d).map_err(|_| crate::limits::too_long(text))
}

/// Parses Kibana date math relative to the run time, `now` or `now-<N><unit>`, into how far before
/// `now` it points (`now-9m` → 9 minutes, `now` → 0).
pub fn parse_now_minus(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("now") else {
        return Err(format!("`{text}` is not supported date math: expected \"now\" or \"now-<N><s|m|h|d>\", e.g. \"now-9m\""));
    };
    if rest.is_empty() {
        return Ok(Duration::zero());
    }
    let Some(d) = rest.strip_prefix('-') else {
        return Err(format!("`{text}` is not supported date math: expected \"now-<N><s|m|h|d>\", e.g. \"now-9m\""));
    };
    parse_interval(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5m"), Ok(Duration::minutes(5)));
        assert_eq!(parse_interval("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse_interval("2h"), Ok(Duration::hours(2)));
        assert_eq!(parse_interval("1d"), Ok(Duration::days(1)));
        assert!(parse_interval("5").is_err());
        assert!(parse_interval("m").is_err());
        assert!(parse_interval("5w").is_err());
        assert!(parse_interval("-5m").is_err());
        assert!(parse_interval("99999999999999999999d").is_err());
        assert_eq!(parse_interval("3650d"), Ok(Duration::days(3650)));
        assert!(parse_interval("3651d").unwrap_err().contains("maximum of 3650 days"));
        assert!(parse_interval("100000000d").is_err());
    }

    #[test]
    fn date_math() {
        assert_eq!(parse_now_minus("now-9m"), Ok(Duration::minutes(9)));
        assert_eq!(parse_now_minus("now"), Ok(Duration::zero()));
        assert!(parse_now_minus("now+5m").is_err());
        assert!(parse_now_minus("9m").is_err());
        assert!(parse_now_minus("now-9x").is_err());
        assert!(parse_now_minus("now-100000000d").unwrap_err().contains("maximum"));
    }
}
