//! Which events belong to a rule by their index: a rule's `index` patterns matched against an event's
//! `_index`, as Elasticsearch resolves them for a search.
//!
//! A cluster run never needs this (the search names the patterns); a one-pass run over a file of search
//! hits from several indices does, so that each hit is offered only to the rules that would have read it.
//! Resolution follows Elasticsearch's for the forms detection rules use: comma-separated expressions, `*`
//! wildcards, `-pattern` exclusions (which remove what the expressions before them matched), and data
//! streams: a backing index `.ds-<stream>-<yyyy.MM.dd>-<generation>` belongs to `<stream>`. Aliases cannot
//! be resolved without the cluster, so a hit whose `_index` is only reachable through an alias is not
//! matched; `esdetect test` documents this.

/// A rule's compiled index expressions.
#[derive(Debug, Clone)]
pub struct IndexPatterns {
    /// In order: `(exclude, pattern)`.
    exprs: Vec<(bool, String)>,
}

impl IndexPatterns {
    pub fn new(patterns: &[String]) -> IndexPatterns {
        let mut exprs = Vec::new();
        for p in patterns.iter().flat_map(|p| p.split(',')) {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            // A leading `-` is an exclusion only after some expression (Elasticsearch's rule).
            match p.strip_prefix('-') {
                Some(rest) if !exprs.is_empty() => exprs.push((true, rest.to_string())),
                _ => exprs.push((false, p.to_string())),
            }
        }
        IndexPatterns { exprs }
    }

    /// Whether a search over these patterns would read a document of `index`.
    pub fn matches(&self, index: &str) -> bool {
        let stream = data_stream_of(index);
        let hit = |pattern: &str| glob(pattern, index) || stream.is_some_and(|s| glob(pattern, s));
        let mut matched = false;
        for (exclude, pattern) in &self.exprs {
            if *exclude {
                if matched && hit(pattern) {
                    matched = false;
                }
            } else if !matched && hit(pattern) {
                matched = true;
            }
        }
        matched
    }
}

/// `<stream>` of a data stream backing index `.ds-<stream>-<yyyy.MM.dd>-<generation>` (also the
/// `partial-`/`restored-` prefixes of searchable snapshots), else `None`.
fn data_stream_of(index: &str) -> Option<&str> {
    let name = index.strip_prefix("partial-").or_else(|| index.strip_prefix("restored-")).unwrap_or(index);
    let rest = name.strip_prefix(".ds-")?;
    let (head, generation) = rest.rsplit_once('-')?;
    if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (stream, date) = head.rsplit_once('-')?;
    let date_ok = date.len() == 10 && date.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'.' } else { b.is_ascii_digit() });
    (date_ok && !stream.is_empty()).then_some(stream)
}

/// `*` matches any run of characters (Elasticsearch's `Regex.simpleMatch`).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> IndexPatterns {
        IndexPatterns::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn seed_rule_patterns() {
        let p = pats(&["logs-system.security*", "logs-windows.forwarded*", "winlogbeat-*"]);
        assert!(p.matches("logs-system.security-default"));
        assert!(p.matches(".ds-logs-system.security-default-2026.05.20-000001"));
        assert!(p.matches("winlogbeat-8.19.0-lab"));
        assert!(p.matches("logs-windows.forwarded-default"));
        assert!(!p.matches("logs-endpoint.events.process-default"));
        assert!(!p.matches(".ds-logs-endpoint.events.process-default-2026.05.20-000001"));
        assert!(!p.matches("offline"));
    }

    #[test]
    fn exclusions_commas_and_globs() {
        let p = pats(&["logs-*,-logs-test*", "metrics-a"]);
        assert!(p.matches("logs-prod"));
        assert!(!p.matches("logs-test-1"));
        assert!(p.matches("metrics-a"));
        assert!(!p.matches("metrics-ab"));
        // A leading exclusion is a plain name to Elasticsearch.
        assert!(pats(&["-x"]).matches("-x"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("*", ""));
        assert!(data_stream_of(".ds-logs-x-2026.01.02-000003") == Some("logs-x"));
        assert!(data_stream_of(".ds-logs-x-000003").is_none());
    }
}
