//! Resolved connectors (secrets read) and one delivery: build the request, send it, retry what is worth
//! retrying with the project's backoff policy ([`crate::es::retry::RetryPolicy`]).
//!
//! Retried: no answer (connection refused, timeout), 429 and every 5xx; any other status is final.
//! SMTP: transient (4xx) replies and connection errors are retried, permanent (5xx) replies are final.

use super::config::{ConnectorConfig, HttpMethod, SecretError, SmtpSecurity};
use crate::es::retry::RetryPolicy;
use crate::es::Secret;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// A connector ready to send.
#[derive(Debug, Clone)]
pub enum Connector {
    Webhook { url: Secret, method: HttpMethod, headers: Vec<(String, Secret)>, body: Option<String> },
    Slack { url: Secret },
    Teams { url: Secret },
    Pagerduty { routing_key: Secret, api_url: String, severity: Option<String> },
    Email {
        host: String,
        port: Option<u16>,
        secure: SmtpSecurity,
        username: Option<String>,
        password: Option<Secret>,
        /// PEM text of `ca_cert`, checked when resolved.
        ca_pem: Option<Vec<u8>>,
        from: String,
        to: Vec<String>,
    },
}

impl Connector {
    /// Reads the secrets of `config`; `name` is the connector's name for errors.
    pub fn resolve(name: &str, config: &ConnectorConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Connector, ConnectorError> {
        let what = |field: &str| format!("connectors.{name}.{field}");
        Ok(match config {
            ConnectorConfig::Webhook { url, method, headers, body, .. } => Connector::Webhook {
                url: checked_url(&what("url"), url.resolve(&what("url"), env)?)?,
                method: *method,
                headers: headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.resolve(&what(&format!("headers.{k}")), env)?)))
                    .collect::<Result<_, SecretError>>()?,
                body: body.clone(),
            },
            ConnectorConfig::Slack { url, .. } => Connector::Slack { url: checked_url(&what("url"), url.resolve(&what("url"), env)?)? },
            ConnectorConfig::Teams { url, .. } => Connector::Teams { url: checked_url(&what("url"), url.resolve(&what("url"), env)?)? },
            ConnectorConfig::Pagerduty { routing_key, api_url, severity, .. } => {
                if let Some(s) = severity {
                    if !["critical", "error", "warning", "info"].contains(&s.as_str()) {
                        return Err(ConnectorError::Severity { what: what("severity"), value: s.clone() });
                    }
                }
                Connector::Pagerduty {
                    routing_key: routing_key.resolve(&what("routing_key"), env)?,
                    api_url: api_url.clone().unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into()),
                    severity: severity.clone(),
                }
            }
            ConnectorConfig::Email { host, port, secure, username, password, ca_cert, from, to, .. } => {
                let ca_pem = match ca_cert {
                    None => None,
                    Some(path) => {
                        let pem = std::fs::read(path)
                            .map_err(|source| ConnectorError::CaRead { what: what("ca_cert"), path: path.clone(), source })?;
                        lettre::transport::smtp::client::Certificate::from_pem(&pem)
                            .map_err(|source| ConnectorError::CaPem { what: what("ca_cert"), path: path.clone(), source })?;
                        Some(pem)
                    }
                };
                for address in std::iter::once(from).chain(to) {
                    address
                        .parse::<lettre::message::Mailbox>()
                        .map_err(|source| ConnectorError::Address { name: name.to_string(), address: address.clone(), source })?;
                }
                if to.is_empty() {
                    return Err(ConnectorError::NoRecipient { what: what("to") });
                }
                Connector::Email {
                    host: host.clone(),
                    port: *port,
                    secure: *secure,
                    username: username.clone(),
                    password: password.as_ref().map(|p| p.resolve(&what("password"), env)).transpose()?,
                    ca_pem,
                    from: from.clone(),
                    to: to.clone(),
                }
            }
        })
    }
}

fn checked_url(what: &str, url: Secret) -> Result<Secret, ConnectorError> {
    url::Url::parse(url.expose()).map_err(|source| ConnectorError::NotAUrl { what: what.to_string(), source })?;
    Ok(url)
}

/// Why a `[connectors.<name>]` section cannot be used; `what` is the setting (e.g. `connectors.mail.to`).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The URL itself is never shown: it may carry a token.
    #[error("{what}: not a URL ({source})")]
    NotAUrl {
        what: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{what}: `{value}` is not one of critical, error, warning, info")]
    Severity { what: String, value: String },
    #[error("{what}: cannot read {}: {source}", path.display())]
    CaRead {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {} is not a PEM certificate: {source}", path.display())]
    CaPem {
        what: String,
        path: PathBuf,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("connectors.{name}: `{address}` is not an email address: {source}")]
    Address {
        name: String,
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("{what}: give at least one recipient")]
    NoRecipient { what: String },
}

/// One rendered message, ready for a connector (and storable in the outbox).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// Text (Slack, Teams, PagerDuty summary, email body).
    pub text: String,
    /// Email subject.
    pub subject: String,
    /// Webhook body (already rendered).
    pub body: String,
    /// PagerDuty: dedup key (the same key again is one incident, which also makes retries harmless).
    pub dedup_key: String,
    /// PagerDuty severity derived from the rule when the connector sets none.
    pub severity: String,
    pub source: String,
}

/// The result of one delivery after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent { attempts: u32 },
    Failed { attempts: u32, error: String },
}

enum Attempt {
    Done,
    Retry(String),
    Fatal(String),
}

/// Sends `message` through `connector`, retrying per `policy`.
pub async fn deliver(http: &reqwest::Client, connector: &Connector, message: &Message, policy: &RetryPolicy, timeout: Duration) -> Delivery {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = match connector {
            Connector::Email { .. } => send_email(connector, message, timeout).await,
            _ => send_http(http, connector, message, timeout).await,
        };
        match outcome {
            Attempt::Done => return Delivery::Sent { attempts: attempt },
            Attempt::Fatal(error) => return Delivery::Failed { attempts: attempt, error },
            Attempt::Retry(error) if attempt > policy.max_retries => return Delivery::Failed { attempts: attempt, error },
            Attempt::Retry(error) => {
                let delay = policy.delay(attempt - 1);
                tracing::warn!(%error, ?delay, attempt, "notification not delivered; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn send_http(http: &reqwest::Client, connector: &Connector, m: &Message, timeout: Duration) -> Attempt {
    let request = match connector {
        Connector::Webhook { url, method, headers, .. } => {
            let mut r = match method {
                HttpMethod::Post => http.post(url.expose()),
                HttpMethod::Put => http.put(url.expose()),
            };
            let has_content_type = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
            for (k, v) in headers {
                r = r.header(k, v.expose());
            }
            if !has_content_type {
                r = r.header("content-type", "application/json");
            }
            r.body(m.body.clone())
        }
        Connector::Slack { url } | Connector::Teams { url } => http.post(url.expose()).json(&json!({"text": m.text})),
        Connector::Pagerduty { routing_key, api_url, severity } => http.post(api_url).json(&json!({
            "routing_key": routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": m.dedup_key,
            "payload": {
                "summary": truncate(&m.text, 1024),
                "source": m.source,
                "severity": severity.as_deref().unwrap_or(&m.severity),
            },
        })),
        Connector::Email { .. } => unreachable!("email is not HTTP"),
    };
    match request.timeout(timeout).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                Attempt::Done
            } else {
                let text: String = resp.text().await.unwrap_or_default().chars().take(300).collect();
                let error = format!("HTTP {status}: {text}");
                if status == 429 || status >= 500 {
                    Attempt::Retry(error)
                } else {
                    Attempt::Fatal(error)
                }
            }
        }
        // No answer at all: the URL is not printed (it may hold a token).
        Err(e) => Attempt::Retry(format!("no answer: {}", without_url(e))),
    }
}

fn without_url(e: reqwest::Error) -> String {
    crate::es::client::chain_message(&e.without_url())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

async fn send_email(connector: &Connector, m: &Message, timeout: Duration) -> Attempt {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Mail, Tokio1Executor};
    let Connector::Email { host, port, secure, username, password, ca_pem, from, to } = connector else {
        unreachable!("only email")
    };
    let mut builder = Mail::builder().subject(m.subject.clone());
    // Addresses were checked when the connector was resolved.
    match from.parse() {
        Ok(f) => builder = builder.from(f),
        Err(e) => return Attempt::Fatal(format!("from address: {e}")),
    }
    for address in to {
        match address.parse() {
            Ok(a) => builder = builder.to(a),
            Err(e) => return Attempt::Fatal(format!("to address: {e}")),
        }
    }
    let mail = match builder.header(lettre::message::header::ContentType::TEXT_PLAIN).body(m.text.clone()) {
        Ok(mail) => mail,
        Err(e) => return Attempt::Fatal(format!("cannot build the email: {e}")),
    };
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let tls_parameters = || {
        let mut builder = TlsParameters::builder(host.clone());
        if let Some(pem) = ca_pem {
            builder = builder.add_root_certificate(Certificate::from_pem(pem)?);
        }
        builder.build()
    };
    // Ports as lettre's relay constructors choose them: 587 submission (STARTTLS), 465 (implicit TLS), 25.
    let (tls, default_port) = match secure {
        SmtpSecurity::None => (Ok(Tls::None), 25),
        SmtpSecurity::Starttls => (tls_parameters().map(Tls::Required), 587),
        SmtpSecurity::Tls => (tls_parameters().map(Tls::Wrapper), 465),
    };
    let tls = match tls {
        Ok(t) => t,
        Err(e) => return Attempt::Fatal(format!("SMTP {host}: TLS settings: {e}")),
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port.unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(pass)) = (username, password) {
        transport = transport.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
    }
    match transport.build().send(mail).await {
        Ok(_) => Attempt::Done,
        Err(e) if e.is_permanent() => Attempt::Fatal(format!("SMTP {host}: {}", crate::es::client::chain_message(&e))),
        Err(e) => Attempt::Retry(format!("SMTP {host}: {}", crate::es::client::chain_message(&e))),
    }
}

/// PagerDuty severity for a Kibana rule severity.
pub fn pagerduty_severity(rule_severity: &str) -> &'static str {
    match rule_severity {
        "critical" => "critical",
        "high" => "error",
        "medium" => "warning",
        _ => "info",
    }
}

/// The default webhook body when neither the connector nor the action gives one.
pub fn default_webhook_body(data: &Value) -> String {
    json!({
        "rule": data["context"]["rule"]["name"],
        "rule_id": data["context"]["rule"]["rule_id"],
        "signals_count": data["state"]["signals_count"],
        "alerts": data["context"]["alerts"],
    })
    .to_string()
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use crate::actions::config::SecretValue;
    use std::error::Error as _;

    #[test]
    fn resolve_errors_name_the_setting_and_keep_their_cause() {
        let slack = ConnectorConfig::Slack { kibana_id: None, url: SecretValue::Env { env: "ESDETECT_TEST_UNSET".into() } };
        let e = Connector::resolve("chat", &slack, &|_| None).unwrap_err();
        assert!(matches!(&e, ConnectorError::Secret(SecretError::EnvUnset { name, .. }) if name == "ESDETECT_TEST_UNSET"), "{e:?}");
        assert!(e.to_string().starts_with("connectors.chat.url: environment variable ESDETECT_TEST_UNSET is not set"), "{e}");

        let file = SecretValue::File { file: "/nonexistent/esdetect/token".into() };
        let e = Connector::resolve("chat", &ConnectorConfig::Slack { kibana_id: None, url: file }, &|_| None).unwrap_err();
        assert!(e.to_string().starts_with("connectors.chat.url: cannot read /nonexistent/esdetect/token: "), "{e}");
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).expect("the io error is the cause");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);

        let bad = ConnectorConfig::Slack { kibana_id: None, url: SecretValue::Inline(Secret::new("not a url".to_string())) };
        let e = Connector::resolve("chat", &bad, &|_| None).unwrap_err();
        assert!(matches!(e, ConnectorError::NotAUrl { .. }), "{e:?}");
        assert!(!e.to_string().contains("not a url"), "the value may be a token and is never shown: {e}");
        assert!(e.source().is_some_and(|s| s.is::<url::ParseError>()));
    }
}
