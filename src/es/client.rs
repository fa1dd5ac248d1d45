//! `EsClient`: the one place that builds the HTTP client (URLs, auth, CA, timeout), retries, and turns
//! answers into JSON or typed errors. Every other module talks to the cluster through it.
//!
//! Typed APIs of the `elasticsearch` crate are used where they exist and mean the same on Elasticsearch
//! and OpenSearch; [`EsClient::raw`] covers flavour-specific endpoints (point in time).

use std::future::Future;
use std::sync::Arc;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::http::Method;
use elasticsearch::params::Refresh;
use elasticsearch::security::{SecurityHasPrivileges, SecurityHasPrivilegesParts};
use elasticsearch::Elasticsearch;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use url::Url;

use super::config::ConnectionConfig;
use super::error::{error_type_reason, EsError};
use super::retry::{is_retryable_status, RetryPolicy};

/// Which search engine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Elasticsearch,
    OpenSearch,
}

/// What `GET /` says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub flavour: Flavour,
    /// `version.number`, e.g. `8.19.3` or `2.19.1`.
    pub version: String,
    /// Major version parsed from `version`, 0 when unparsable.
    pub major: u32,
    pub cluster_name: String,
}

/// Outcome of a successful privilege check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeCheck {
    /// Every requested privilege is granted.
    Granted,
    /// The cluster runs without security: nothing to check.
    SecurityDisabled,
    /// The cluster has no `_has_privileges` API (OpenSearch): the reason is logged; missing privileges
    /// will surface as 403 errors on first use instead.
    NotChecked(String),
}

/// A cluster client with retries. Cheap to clone (shares the connection pool).
#[derive(Clone, Debug)]
pub struct EsClient {
    es: Elasticsearch,
    urls: Arc<Vec<String>>,
    retry: RetryPolicy,
    info: Arc<OnceCell<ClusterInfo>>,
}

impl EsClient {
    /// Builds a client; no request is sent yet (see [`EsClient::info`] for a first contact).
    pub fn new(cfg: &ConnectionConfig) -> Result<Self, EsError> {
        if cfg.urls.is_empty() {
            return Err(EsError::Config("`urls` is empty: give at least one node URL".into()));
        }
        let mut url_creds = None;
        let mut urls = Vec::with_capacity(cfg.urls.len());
        for raw in &cfg.urls {
            // Never the raw text in a message: it may carry a password.
            let shown = super::config::redact_url(raw);
            let mut u = Url::parse(raw)
                .map_err(|e| EsError::Config(format!("URL {shown:?} is not valid ({e}); expected e.g. https://host:9200")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(EsError::Config(format!("URL {shown:?} must start with http:// or https://")));
            }
            // Credentials inside the URL: take them out (reqwest would send them twice) and use them
            // unless the config names credentials explicitly.
            if !u.username().is_empty() {
                url_creds = Some((u.username().to_string(), u.password().unwrap_or("").to_string()));
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            urls.push(u);
        }
        let printable: Vec<String> = urls.iter().map(|u| u.as_str().trim_end_matches('/').to_string()).collect();

        let mut builder = if urls.len() == 1 {
            TransportBuilder::new(SingleNodeConnectionPool::new(urls.remove(0)))
        } else {
            TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None))
        };
        builder = builder.timeout(cfg.request_timeout).enable_meta_header(false);

        let creds = if let Some(key) = &cfg.api_key {
            let key = key.expose().trim();
            Some(match key.split_once(':') {
                Some((id, secret)) => Credentials::ApiKey(id.to_string(), secret.to_string()),
                None => Credentials::EncodedApiKey(key.to_string()),
            })
        } else if let Some(user) = &cfg.username {
            let pw = cfg.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
            Some(Credentials::Basic(user.clone(), pw))
        } else {
            url_creds.map(|(u, p)| Credentials::Basic(u, p))
        };
        if let Some(c) = creds {
            let plain: Vec<&str> = printable.iter().filter(|u| u.starts_with("http://")).map(String::as_str).collect();
            if !plain.is_empty() {
                tracing::warn!(urls = ?plain, "credentials are sent over plain http:// and can be read on the network; \
                    use https:// (and ca_cert) for any cluster that is not on this machine");
            }
            builder = builder.auth(c);
        }

        if cfg.insecure_skip_verify && cfg.ca_cert.is_some() {
            return Err(EsError::Config(
                "both `ca_cert` and `insecure_skip_verify = true` are set: the CA would be ignored and no certificate \
                 checked. Remove `insecure_skip_verify` to verify against the CA (or `ca_cert` to skip verification \
                 on purpose)"
                    .into(),
            ));
        }
        if cfg.insecure_skip_verify {
            tracing::warn!("insecure_skip_verify is set: the cluster's TLS certificate is NOT verified");
            builder = builder.cert_validation(CertificateValidation::None);
        } else if let Some(path) = &cfg.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                EsError::Config(format!("cannot read ca_cert {}: {e}", path.display()))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                EsError::Config(format!("ca_cert {} is not a PEM certificate: {e}", path.display()))
            })?;
            builder = builder.cert_validation(CertificateValidation::Full(cert));
        }

        let transport = builder
            .build()
            .map_err(|e| EsError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(EsClient {
            es: Elasticsearch::new(transport),
            urls: Arc::new(printable),
            retry: RetryPolicy { max_retries: cfg.max_retries, ..RetryPolicy::default() },
            info: Arc::new(OnceCell::new()),
        })
    }

    /// Replaces the retry policy (tests use short delays).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The underlying transport (with [`EsClient::send`] and its siblings), for the streaming search of
    /// `source::es` only; every other caller uses the typed requests below ([`EsClient::search`],
    /// [`EsClient::bulk`], …) or [`EsClient::raw`], so the pinned client's types stay inside this module.
    pub(crate) fn es(&self) -> &Elasticsearch {
        &self.es
    }

    /// The configured node URLs (without credentials), for messages.
    pub fn urls(&self) -> String {
        self.urls.join(", ")
    }

    /// Sends a request built by `make` (called again for each retry) and returns the HTTP status and
    /// JSON body of the final answer, whatever its status. Retries connection errors, 429 and 502–504.
    /// Only "no answer at all after every retry" is an error here ([`EsError::Unreachable`]).
    pub(crate) async fn send_status<F, Fut>(&self, what: &str, make: F) -> Result<(u16, Value), EsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response, elasticsearch::Error>>,
    {
        let (status, text) = self.send_status_text(what, make).await?;
        Ok((status, parse_body(text)))
    }

    /// [`EsClient::send_status`] with the body as text, for callers that parse large answers themselves
    /// (search pages: only the fields the rules read are parsed).
    pub(crate) async fn send_status_text<F, Fut>(&self, what: &str, mut make: F) -> Result<(u16, String), EsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response, elasticsearch::Error>>,
    {
        let mut retry = 0u32;
        loop {
            let why: String = match make().await {
                Ok(resp) => {
                    let status = resp.status_code().as_u16();
                    if is_retryable_status(status) && retry < self.retry.max_retries {
                        format!("HTTP {status}")
                    } else {
                        match resp.text().await {
                            Ok(text) => return Ok((status, text)),
                            // The connection broke while reading the body: as good as no answer.
                            Err(e) if retry < self.retry.max_retries => chain_message(&e),
                            Err(e) => return Err(self.unreachable(e)),
                        }
                    }
                }
                Err(e) if retry < self.retry.max_retries => chain_message(&e),
                Err(e) => return Err(self.unreachable(e)),
            };
            let delay = self.retry.delay(retry);
            // Debug: the caller reports the final outcome; a WARN per retry flooded the log during outages.
            tracing::debug!(what, attempt = retry + 1, ?delay, "request failed ({why}); retrying");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// Like [`EsClient::send_status`], but any non-2xx answer becomes a typed error.
    pub(crate) async fn send<F, Fut>(&self, what: &str, make: F) -> Result<Value, EsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response, elasticsearch::Error>>,
    {
        let (status, body) = self.send_status(what, make).await?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(EsError::from_response(what, status, &body))
        }
    }

    /// A raw JSON request (for endpoints without a typed API, or that differ between flavours).
    /// Returns status and body; the caller decides which statuses are fine.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(u16, Value), EsError> {
        let what = format!("{} {path}", method_name(method));
        self.send_status(&what, || {
            let body = body.map(|b| b.to_string());
            self.es.transport().send(method, path, HeaderMap::new(), Some(query), body, None)
        })
        .await
    }

    /// [`EsClient::raw`] with the answer as text.
    pub async fn raw_text(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(u16, String), EsError> {
        let what = format!("{} {path}", method_name(method));
        self.send_status_text(&what, || {
            let body = body.map(|b| b.to_string());
            self.es.transport().send(method, path, HeaderMap::new(), Some(query), body, None)
        })
        .await
    }

    /// `POST /<index>/_search` with `body` (`index` may be a comma-separated list or pattern); any non-2xx
    /// answer is a typed error. The answer is decoded into `T`, the caller's own small answer struct (or a
    /// `serde_json::Value`).
    pub async fn search<T: DeserializeOwned>(&self, what: &str, index: &str, body: &Value) -> Result<T, EsError> {
        let path = format!("/{}/_search", super::path::segment(index));
        let (status, text) = self.send_status_text(what, || {
            self.es.transport().send(Method::Post, &path, HeaderMap::new(), None::<&()>, Some(body.to_string()), None)
        })
        .await?;
        decode_answer(what, status, text)
    }

    /// `POST [/<index>]/_bulk` of `lines` (action and document lines, as NDJSON), with `refresh`. The answer
    /// (whose `items` say what happened to each action; the request as a whole succeeds even when some
    /// fail) is decoded into `T`; a non-2xx answer is a typed error.
    pub async fn bulk<T: DeserializeOwned>(
        &self,
        what: &str,
        index: Option<&str>,
        lines: &[Value],
        refresh: Refresh,
    ) -> Result<T, EsError> {
        let path = match index {
            Some(index) => format!("/{}/_bulk", super::path::segment(index)),
            None => "/_bulk".to_string(),
        };
        let mut body = String::new();
        for line in lines {
            body.push_str(&line.to_string());
            body.push('\n');
        }
        let refresh = match refresh {
            Refresh::True => "true",
            Refresh::False => "false",
            Refresh::WaitFor => "wait_for",
        };
        let query = [("refresh", refresh)];
        let (status, text) = self.send_status_text(what, || {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
            self.es.transport().send(Method::Post, &path, headers, Some(&query), Some(body.clone()), None)
        })
        .await?;
        decode_answer(what, status, text)
    }

    /// `PUT /<index>` with `body` (settings, mappings, aliases). Returns the status and answer whatever
    /// the status: an index that already exists is an answer the caller may accept.
    pub async fn create_index(&self, what: &str, index: &str, body: &Value) -> Result<(u16, Value), EsError> {
        let path = format!("/{}", super::path::segment(index));
        self.send_status(what, || {
            self.es.transport().send(Method::Put, &path, HeaderMap::new(), None::<&()>, Some(body.to_string()), None)
        })
        .await
    }

    /// `GET /`: flavour and version. Cached after the first success.
    pub async fn info(&self) -> Result<ClusterInfo, EsError> {
        self.info
            .get_or_try_init(|| async {
                let body = self.send("GET / (cluster info)", || self.es.info().send()).await?;
                parse_info(&body)
            })
            .await
            .cloned()
    }

    /// Checks that the configured user may read `read_indices` (search, PIT, mapping) and read +
    /// create documents in `write_index` (dedup lookup + bulk create), via `_security/user/_has_privileges`.
    /// A cluster without security passes (logged at debug level); on OpenSearch the check is skipped.
    pub async fn check_privileges(
        &self,
        read_indices: &[String],
        write_index: Option<&str>,
    ) -> Result<PrivilegeCheck, EsError> {
        let info = self.info().await?;
        if info.flavour == Flavour::OpenSearch {
            let why = "OpenSearch has no _has_privileges API; missing privileges will show as 403 errors";
            tracing::debug!("privilege check skipped: {why}");
            return Ok(PrivilegeCheck::NotChecked(why.to_string()));
        }
        let body = privileges_request(read_indices, write_index);
        let (status, resp) = self
            .send_status("privilege check (_has_privileges)", || {
                SecurityHasPrivileges::<()>::new(self.es.transport(), SecurityHasPrivilegesParts::None)
                    .body(body.clone())
                    .send()
            })
            .await?;
        if (200..300).contains(&status) {
            return match missing_privileges(&resp) {
                missing if missing.is_empty() => Ok(PrivilegeCheck::Granted),
                missing => Err(EsError::Forbidden { privilege: missing.join(", ") }),
            };
        }
        if security_disabled(status, &resp) {
            tracing::debug!(status, "security is not enabled on the cluster; privilege check passes");
            return Ok(PrivilegeCheck::SecurityDisabled);
        }
        Err(EsError::from_response("privilege check (_has_privileges)", status, &resp))
    }

    /// The indices `patterns` match right now (`_field_caps`, as Kibana checks them before a rule run).
    pub async fn matching_indices(&self, patterns: &[String]) -> Result<Vec<String>, EsError> {
        let path = format!("/{}/_field_caps", super::path::indices(patterns));
        let params = [
            ("fields", "_id".to_string()),
            ("ignore_unavailable", "true".to_string()),
            ("allow_no_indices", "true".to_string()),
        ];
        let (status, body) = self.raw(Method::Get, &path, &params, None).await?;
        if !(200..300).contains(&status) {
            return Err(EsError::from_response("index check (_field_caps)", status, &body));
        }
        Ok(body["indices"].as_array().map(|a| a.iter().filter_map(|i| i.as_str().map(str::to_string)).collect()).unwrap_or_default())
    }

    fn unreachable(&self, e: elasticsearch::Error) -> EsError {
        EsError::Unreachable { url: self.urls(), detail: chain_message(&e), source: e }
    }
}

/// A 2xx answer decoded into `T`; any other status as the cluster's typed error.
fn decode_answer<T: DeserializeOwned>(what: &str, status: u16, text: String) -> Result<T, EsError> {
    if !(200..300).contains(&status) {
        return Err(EsError::from_response(what, status, &parse_body(text)));
    }
    serde_json::from_str(&text).map_err(|e| EsError::Decode { what: what.to_string(), detail: e.to_string() })
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
    }
}

/// The body as JSON; an empty body (HEAD) is `null`, a non-JSON body is kept as a string.
fn parse_body(text: String) -> Value {
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// An error and all its causes, joined: reqwest's top-level "error sending request" hides the useful
/// part ("Connection refused", "invalid peer certificate").
pub fn chain_message(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

pub(crate) fn parse_info(body: &Value) -> Result<ClusterInfo, EsError> {
    let version = body["version"]["number"].as_str().ok_or_else(|| EsError::Decode {
        what: "GET /".into(),
        detail: format!("no version.number in {body}"),
    })?;
    let flavour = if body["version"]["distribution"].as_str() == Some("opensearch") {
        Flavour::OpenSearch
    } else {
        Flavour::Elasticsearch
    };
    let major = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Ok(ClusterInfo {
        flavour,
        version: version.to_string(),
        major,
        cluster_name: body["cluster_name"].as_str().unwrap_or("").to_string(),
    })
}

fn privileges_request(read_indices: &[String], write_index: Option<&str>) -> Value {
    let mut index = Vec::new();
    if !read_indices.is_empty() {
        index.push(json!({"names": read_indices, "privileges": ["read", "view_index_metadata"]}));
    }
    if let Some(w) = write_index {
        index.push(json!({"names": [w], "privileges": ["read", "create_doc"]}));
    }
    json!({ "index": index })
}

/// `["`read` on index `logs-*`", …]` for every privilege answered `false`.
fn missing_privileges(resp: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(indices) = resp["index"].as_object() {
        for (name, privs) in indices {
            if let Some(privs) = privs.as_object() {
                for (p, granted) in privs {
                    if granted.as_bool() != Some(true) {
                        out.push(format!("`{p}` on index `{name}`"));
                    }
                }
            }
        }
    }
    if out.is_empty() && resp["has_all_requested"].as_bool() == Some(false) {
        out.push("some requested privilege (has_all_requested = false)".to_string());
    }
    out
}

/// Whether an error answer to `_has_privileges` means "this cluster has no security to check".
fn security_disabled(status: u16, body: &Value) -> bool {
    let (ty, reason) = error_type_reason(body);
    let text = format!("{ty} {reason}").to_lowercase();
    let says_disabled = text.contains("security")
        && (text.contains("not enabled") || text.contains("disabled") || text.contains("must be explicitly enabled"));
    // The node itself says it has no such API (no security module at all). A bare 404/405 — from a proxy,
    // a path rewrite, a load balancer — says nothing about security and stays an error.
    let no_such_api = text.contains("no handler found");
    matches!(status, 400 | 404 | 405 | 500 | 501) && (says_disabled || no_such_api)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn info_flavours() {
        let es = parse_info(&json!({"cluster_name":"c","version":{"number":"8.19.3","build_flavor":"default"}})).unwrap();
        assert_eq!((es.flavour, es.major), (Flavour::Elasticsearch, 8));
        let os = parse_info(&json!({"version":{"distribution":"opensearch","number":"2.19.1"}})).unwrap();
        assert_eq!((os.flavour, os.major, os.version.as_str()), (Flavour::OpenSearch, 2, "2.19.1"));
        assert!(parse_info(&json!({"tagline":"?"})).is_err());
    }

    #[test]
    fn missing_privileges_are_named() {
        let resp = json!({"has_all_requested": false, "index": {
            "logs-*": {"read": true, "view_index_metadata": false},
            "alerts": {"read": true, "create_doc": false}}});
        let m = missing_privileges(&resp);
        assert_eq!(m, vec!["`view_index_metadata` on index `logs-*`", "`create_doc` on index `alerts`"]);
        assert!(missing_privileges(&json!({"has_all_requested": true, "index": {"a": {"read": true}}})).is_empty());
    }

    #[test]
    fn security_disabled_answers() {
        let basic = json!({"error":{"type":"exception","reason":"Security must be explicitly enabled when using a [basic] license. Enable security by setting [xpack.security.enabled] to true"}});
        assert!(security_disabled(500, &basic));
        assert!(security_disabled(400, &json!({"error":"no handler found for uri [/_security/user/_has_privileges] and method [POST]"})));
        assert!(!security_disabled(500, &json!({"error":{"type":"null_pointer_exception","reason":"boom"}})));
        assert!(!security_disabled(401, &basic));
        // A 404 that does not come from Elasticsearch saying so is not "security disabled".
        assert!(!security_disabled(404, &json!("<html><body>404 Not Found</body></html>")));
        assert!(!security_disabled(404, &Value::Null));
        assert!(!security_disabled(405, &json!({"error": "Method Not Allowed"})));
        assert!(security_disabled(404, &json!({"error":"no handler found for uri [/_security/user/_has_privileges] and method [POST]"})));
    }

    #[test]
    fn bad_config_is_reported() {
        let e = EsClient::new(&ConnectionConfig { urls: vec![], ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("urls"));
        let e = EsClient::new(&ConnectionConfig::for_url("localhost:9200")).unwrap_err();
        assert!(matches!(e, EsError::Config(_)), "{e}");
        let e = EsClient::new(&ConnectionConfig {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..ConnectionConfig::for_url("https://x:9200")
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"));
        assert!(EsClient::new(&ConnectionConfig {
            urls: vec!["http://a:9200".into(), "http://b:9200".into()],
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn passwords_in_urls_never_reach_error_messages() {
        for raw in ["http://elastic:hunter2@es01:99999", "ftp://elastic:hunter2@es01:9200", "elastic:hunter2@es01:9200"] {
            let e = EsClient::new(&ConnectionConfig::for_url(raw)).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("elastic:***@es01"), "{e}");
        }
    }

    #[test]
    fn a_ca_with_verification_switched_off_is_an_error() {
        let e = EsClient::new(&ConnectionConfig {
            ca_cert: Some("/etc/esdetect/ca.pem".into()),
            insecure_skip_verify: true,
            ..ConnectionConfig::for_url("https://x:9200")
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("ca_cert") && e.contains("insecure_skip_verify"), "{e}");
    }

    #[tokio::test]
    async fn unreachable_is_typed_and_bounded() {
        let client = EsClient::new(&ConnectionConfig::for_url("http://127.0.0.1:1"))
            .unwrap()
            .with_retry(RetryPolicy { max_retries: 2, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) });
        let e = client.info().await.unwrap_err();
        match &e {
            EsError::Unreachable { url, .. } => assert_eq!(url, "http://127.0.0.1:1"),
            other => panic!("expected Unreachable, got {other}"),
        }
        assert!(e.to_string().contains("Check that the URL"));
    }
}
