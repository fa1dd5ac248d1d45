//! URL paths built from names (index patterns, aliases, template names): each name is percent-encoded
//! as one path segment, so no name can add a segment (`/`), a query (`?`) or a fragment (`#`) to a
//! request, whatever a rule or configuration file says. Index patterns are also checked against
//! Elasticsearch's naming rules when a rule is loaded (`rules::index_pattern`); this is the second line.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but letters, digits and the characters index patterns use (`-_.*:+~`) is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'*').remove(b':').remove(b'~');

/// One name as a path segment.
pub fn segment(name: &str) -> String {
    let encoded = utf8_percent_encode(name, SEGMENT).to_string();
    // `.` and `..` would be resolved away by URL parsing: encode their dots.
    match encoded.as_str() {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => encoded,
    }
}

/// Several index names as one comma-separated path segment (`a-*,b`); the commas stay literal.
pub fn indices(names: &[String]) -> String {
    names.iter().map(|n| segment(n)).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_leave_their_segment() {
        assert_eq!(indices(&["a-*".into(), "b".into()]), "a-*,b");
        assert_eq!(segment("remote:logs-*"), "remote:logs-*");
        assert_eq!(segment(".ds-logs-2026.05.20-000001"), ".ds-logs-2026.05.20-000001");
        let evil = indices(&["../_security/api_key?x=".into(), "a/../../_all".into(), "x#y".into()]);
        assert_eq!(evil, "..%2F_security%2Fapi_key%3Fx%3D,a%2F..%2F..%2F_all,x%23y");
        assert!(!evil.contains(['/', '?', '#']));
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("a,b"), "a%2Cb");
    }
}
