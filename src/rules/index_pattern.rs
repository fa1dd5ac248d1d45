//! Elasticsearch's index naming rules applied to a rule's `index` patterns, so that rule data can never
//! turn into something other than index names in a request path (`../_security/…`, `?x=`, `#`).
//!
//! The rules are those of `MetadataCreateIndexService.validateIndexOrAliasName` plus what a search
//! pattern may add: a `*` wildcard, a leading `-` excluding a pattern, and a `cluster:` prefix for
//! cross-cluster search. Date math names (`<logs-{now/d}>`) are not supported.

/// Characters Elasticsearch forbids in index names (`Strings.INVALID_FILENAME_CHARS` and `#`, `:`); `*`
/// is allowed here because patterns may use it as a wildcard.
const FORBIDDEN: &[char] = &['\\', '/', '?', '"', '<', '>', '|', ' ', ',', '#'];

/// Longest index name Elasticsearch accepts, in bytes.
const MAX_BYTES: usize = 255;

/// Checks one index pattern; the error says what is wrong and how to write it.
pub fn check(pattern: &str) -> Result<(), String> {
    let shown = pattern.escape_debug();
    if pattern.is_empty() {
        return Err("an index pattern is empty".into());
    }
    // `cluster:pattern` (cross-cluster search): the cluster alias may not contain `:` either.
    let name = match pattern.split_once(':') {
        Some((cluster, rest)) => {
            if cluster.is_empty() || cluster.contains(FORBIDDEN) || rest.contains(':') {
                return Err(format!("`{shown}` is not a valid `cluster:index` pattern"));
            }
            rest
        }
        None => pattern,
    };
    let name = name.strip_prefix('-').unwrap_or(name); // an exclusion such as `-logs-test*`
    if name.is_empty() {
        return Err(format!("`{shown}` names no index"));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c) || c.is_control()) {
        return Err(format!(
            "index pattern `{shown}` contains `{}`, which Elasticsearch does not allow in index names \
             (forbidden: \\ / ? \" < > | space , #)",
            c.escape_debug()
        ));
    }
    if name.chars().any(char::is_uppercase) {
        return Err(format!("index pattern `{shown}` must be lowercase, as Elasticsearch index names are"));
    }
    if name.starts_with(['_', '-', '+']) {
        return Err(format!("index pattern `{shown}` must not start with `_`, `-` or `+`"));
    }
    if name == "." || name == ".." {
        return Err(format!("`{shown}` is not an index name"));
    }
    if name.len() > MAX_BYTES {
        return Err(format!("index pattern `{}…` is longer than Elasticsearch's {MAX_BYTES} bytes", &shown.to_string()[..40]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn upstream_patterns_pass() {
        for p in ["logs-system.security*", "logs-windows.forwarded*", "winlogbeat-*", ".alerts-security.alerts-default", "remote:logs-*", "-logs-test*", "*"] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn names_that_would_leave_the_path_are_refused() {
        for p in ["../_security/api_key?x=", "a/../../_all", "logs#frag", "a b", "a,b", "Logs-*", "_all", "..", ".", "", "x:y:z", "-", "a\u{0}b"] {
            assert!(check(p).is_err(), "{p:?} must be refused");
        }
        assert!(check(&"a".repeat(256)).is_err());
        assert!(check("../_security/api_key?x=").unwrap_err().contains('/'));
    }
}
