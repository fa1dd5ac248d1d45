//! Typed errors of the cluster client. Each message says what failed and what the user can check.
//!
//! One rule for displaying errors, in the whole crate: an error names its cause in its own message (so a
//! log line or a ledger message, which print `{}`, is complete) and keeps it as `#[source]`; the CLI prints
//! the chain on one line with [`chain_message`](super::chain_message), which skips a cause whose text a
//! message already contains. So an unreachable cluster is one line, and context added at the CLI edge
//! (`.context(…)`) is never lost.

use thiserror::Error;

/// Anything that can go wrong talking to the cluster.
#[derive(Debug, Error)]
pub enum EsError {
    /// The configuration cannot produce a client (bad URL, unreadable CA file, …).
    #[error("invalid Elasticsearch connection settings: {0}")]
    Config(String),

    /// No HTTP answer at all (connection refused, DNS, TLS handshake, timeout), after all retries.
    #[error(
        "cannot reach Elasticsearch at {url}: {detail}. Check that the URL (scheme http/https, host, port) \
         is right, that the cluster is running and reachable from here, and that the TLS settings \
         (ca_cert / insecure_skip_verify) match the cluster's certificate"
    )]
    Unreachable {
        url: String,
        /// The whole cause chain as text (reqwest's top-level message alone says little).
        detail: String,
        #[source]
        source: elasticsearch::Error,
    },

    /// HTTP 401.
    #[error(
        "Elasticsearch rejected the credentials (401 Unauthorized) during {what}: check api_key, or \
         username/password, in the connection settings"
    )]
    Unauthorized { what: String },

    /// HTTP 403, or a `_has_privileges` check that found a privilege missing.
    #[error(
        "the configured user lacks a privilege: {privilege}. Grant it through a role (Kibana → Stack \
         Management → Roles, or the _security/role API) and try again"
    )]
    Forbidden { privilege: String },

    /// Any other error answer from the cluster.
    #[error("Elasticsearch answered {status} to {what}: {error_type}: {reason}")]
    Response { what: String, status: u16, error_type: String, reason: String },

    /// The cluster answered 2xx but the body was not what the API promises.
    #[error("unexpected response to {what}: {detail}")]
    Decode { what: String, detail: String },
}

impl EsError {
    /// Builds the error for a non-success answer from its status and JSON body (`{"error":{type,reason}}`).
    pub fn from_response(what: &str, status: u16, body: &serde_json::Value) -> EsError {
        let (error_type, reason) = error_type_reason(body);
        match status {
            401 => EsError::Unauthorized { what: what.to_string() },
            403 => EsError::Forbidden { privilege: format!("{what}: {reason}") },
            _ => EsError::Response { what: what.to_string(), status, error_type, reason },
        }
    }

    /// HTTP status of an error answer, if the cluster answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            EsError::Unauthorized { .. } => Some(401),
            EsError::Forbidden { .. } => Some(403),
            EsError::Response { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Elasticsearch error `type` (e.g. `resource_already_exists_exception`), if any.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            EsError::Response { error_type, .. } => Some(error_type),
            _ => None,
        }
    }
}

/// Extracts `(type, reason)` from an Elasticsearch error body, tolerating the odd shapes
/// (`{"error": "text"}`, missing fields, non-JSON bodies stored as a string).
pub fn error_type_reason(body: &serde_json::Value) -> (String, String) {
    let err = &body["error"];
    if let Some(s) = err.as_str() {
        return ("error".to_string(), s.to_string());
    }
    let ty = err["type"].as_str().unwrap_or("unknown").to_string();
    let mut reason = err["reason"].as_str().map(str::to_string).unwrap_or_else(|| match body {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    });
    // The root cause often names the actual index or field; keep it when it adds something.
    if let Some(rc) = err["root_cause"][0]["reason"].as_str() {
        if !reason.contains(rc) {
            reason = format!("{reason} (root cause: {rc})");
        }
    }
    (ty, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_statuses() {
        let body = json!({"error":{"type":"index_not_found_exception","reason":"no such index [x]"},"status":404});
        let e = EsError::from_response("search", 404, &body);
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.error_type(), Some("index_not_found_exception"));
        assert!(e.to_string().contains("no such index [x]"));
        assert!(matches!(EsError::from_response("x", 401, &json!({})), EsError::Unauthorized { .. }));
        let f = EsError::from_response("bulk", 403, &json!({"error":{"type":"security_exception","reason":"action [indices:data/write/bulk] is unauthorized"}}));
        assert!(matches!(&f, EsError::Forbidden { privilege } if privilege.contains("indices:data/write/bulk")));
        assert_eq!(error_type_reason(&json!({"error":"plain"})), ("error".into(), "plain".into()));
    }
}
