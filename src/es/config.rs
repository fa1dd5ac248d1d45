//! Connection settings for one Elasticsearch / OpenSearch cluster, as read from the config file.
//!
//! Secrets (API key, password) are wrapped in [`Secret`] so that `{:?}` / `{}` of a config, or of an
//! error that carries one, can never print them into a log.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::duration::{DurationError, Notation};
use serde::{Deserialize, Deserializer};

/// A credential that must never appear in logs: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The clear text, for the one place that needs it (the auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to reach and authenticate to the cluster.
///
/// `api_key` is either Kibana's "encoded" form (base64 of `id:key`) or the raw `id:key` pair; it wins
/// over `username`/`password` when both are set.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// One or more node URLs (`https://host:9200`). Several URLs form a static round-robin pool;
    /// a retry after a connection error goes to the next node.
    pub urls: Vec<String>,
    pub api_key: Option<Secret>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM file with the CA (or CA chain) that signed the cluster's HTTP certificate.
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate. For diagnosis only: it disables TLS's protection.
    pub insecure_skip_verify: bool,
    /// Per-request timeout: seconds as a number, or a string like `"30s"`, `"2m"`, `"500ms"`.
    #[serde(deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// Retries after the first attempt for connection errors, 429 and 502/503/504.
    pub max_retries: u32,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            urls: vec!["http://localhost:9200".to_string()],
            api_key: None,
            username: None,
            password: None,
            ca_cert: None,
            insecure_skip_verify: false,
            request_timeout: Duration::from_secs(60),
            max_retries: 3,
        }
    }
}

/// Like a derived `Debug`, but URLs with credentials in them are redacted ([`redact_url`]).
impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("urls", &self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
            .field("api_key", &self.api_key)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_cert", &self.ca_cert)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// A URL fit for messages: a password in its user-info becomes `***` (`https://user:***@host:9200`).
/// Works on text that is not a valid URL too (no scheme, a bad port), which is exactly when it ends up
/// in an error message.
pub fn redact_url(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            format!("{scheme}{user}:***@{}{tail}", &authority[at + 1..])
        }
        None => raw.to_string(),
    }
}

impl ConnectionConfig {
    /// A config for one URL with defaults for everything else (handy for tests and the CLI).
    pub fn for_url(url: impl Into<String>) -> Self {
        ConnectionConfig { urls: vec![url.into()], ..Default::default() }
    }
}

/// Parses `30`, `"30s"`, `"500ms"`, `"2m"`, `"1h"`, `"2d"` (esdetect's duration notation in its
/// configuration form); `None` for anything else or anything longer than [`crate::limits::MAX_DURATION_DAYS`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    crate::duration::parse(s, Notation::Config).ok()
}

/// Serde helper for every duration setting: seconds (`30`) or text with a unit (`"500ms"`, `"5m"`, `"24h"`).
pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Secs(n) => n.to_string(),
        Raw::Text(t) => t,
    };
    crate::duration::parse(&text, Notation::Config).map_err(|e| serde::de::Error::custom(match e {
        DurationError::TooLong(_) => e.to_string(),
        _ => format!("invalid duration {text:?}: use seconds (30) or a number with ms/s/m/h/d (\"500ms\", \"5m\", \"24h\")"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let cfg = ConnectionConfig {
            api_key: Some(Secret::new("c2VjcmV0OmtleQ==")),
            password: Some(Secret::new("hunter2")),
            username: Some("elastic".into()),
            ..Default::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("c2VjcmV0"), "{dbg}");
        assert!(dbg.contains("***") && dbg.contains("elastic"));
        assert_eq!(Secret::new("x").to_string(), "***");
        assert_eq!(Secret::new("x").expose(), "x");
        let cfg = ConnectionConfig::for_url("https://elastic:hunter2@es01:9200");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2") && dbg.contains("elastic:***@es01:9200"), "{dbg}");
    }

    #[test]
    fn passwords_in_urls_are_redacted_even_in_broken_urls() {
        for (raw, want) in [
            ("https://elastic:hunter2@es01:9200", "https://elastic:***@es01:9200"),
            ("http://elastic:hunter2@es01:99999/x?y", "http://elastic:***@es01:99999/x?y"),
            ("elastic:hunter2@es01:9200", "elastic:***@es01:9200"),
            ("ftp://u:p@w@host", "ftp://u:***@host"),
            ("https://es01:9200", "https://es01:9200"),
        ] {
            assert_eq!(redact_url(raw), want);
        }
    }

    #[test]
    fn deserialises_with_defaults_and_durations() {
        let cfg: ConnectionConfig =
            toml::from_str("urls = [\"https://a:9200\", \"https://b:9200\"]\nrequest_timeout = \"2m\"\napi_key = \"k\"")
                .unwrap();
        assert_eq!(cfg.urls.len(), 2);
        assert_eq!(cfg.request_timeout, Duration::from_secs(120));
        assert_eq!(cfg.max_retries, 3);
        assert_eq!(cfg.api_key.unwrap().expose(), "k");
        let cfg: ConnectionConfig = toml::from_str("request_timeout = 5").unwrap();
        assert_eq!(cfg.request_timeout, Duration::from_secs(5));
        assert!(toml::from_str::<ConnectionConfig>("request_timeout = \"5 parsecs\"").is_err());
        assert!(toml::from_str::<ConnectionConfig>("url = \"typo\"").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
