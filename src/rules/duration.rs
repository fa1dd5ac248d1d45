//! The two duration notations of a rule: Kibana date math for `from`/`to` (`now-9m`) and the schedule
//! `interval` (`5m`). Only the forms Kibana's rule schema produces are accepted: a whole number followed
//! by one unit of `s`, `m`, `h` or `d`, at most [`crate::limits::MAX_DURATION_DAYS`] long.

use chrono::Duration;

/// Parses `<N><unit>` (`5m`, `90s`, `1h`, `2d`).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("`{text}` is not a duration: expected a number then s, m, h or d, e.g. \"5m\""));
    }
    let n: i64 = num.parse().map_err(|_| format!("`{text}`: number too large"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => {
            return Err(format!("`{text}`: unknown unit `{unit}`; use s, m, h or d (e.g. \"5m\")"));
        }
    }
    .ok_or_else(|| crate::limits::too_long(text))?;
    let d = Duration::try_seconds(secs).ok_or_else(|| crate::limits::too_long(text))?;
    if d > crate::limits::max_duration() {
        return Err(crate::limits::too_long(text));
    }
    Ok(d)
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
