//! Shared helpers for integration tests that talk to a live Elasticsearch node.
//!
//! The node comes from `bash scripts/test.sh` (which starts one and exports `ESDETECT_TEST_ES_URL`) or from
//! `scripts/elasticsearch.sh start` (URL recorded in `.es/url`). Integration tests never skip silently: with no
//! live node they panic with instructions, so a green run always means the node-facing code really ran.
//!
//! Each test binary uses only some of these helpers, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod daemon;
pub mod esio;
pub mod ids;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::request::JsonBody;
use elasticsearch::indices::{IndicesCreateParts, IndicesDeleteParts};
use elasticsearch::params::Refresh;
use elasticsearch::{BulkParts, Elasticsearch};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Environment variable naming the node the integration tests use.
pub const ES_URL_VAR: &str = "ESDETECT_TEST_ES_URL";

const HOW_TO: &str = "integration tests need a live node: run `bash scripts/test.sh` or \
                      `scripts/elasticsearch.sh start` (then export ESDETECT_TEST_ES_URL=$(cat .es/url))";

/// URL of the live test node, checked once per test binary.
///
/// Panics (in CI and locally alike) when `ESDETECT_TEST_ES_URL` is unset or the node does not answer.
pub fn es_url() -> String {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    let checked = URL.get_or_init(|| {
        let raw = std::env::var(ES_URL_VAR)
            .map_err(|_| format!("{ES_URL_VAR} is not set"))?;
        let url = raw.trim().trim_end_matches('/').to_string();
        probe(&url).map_err(|e| format!("{ES_URL_VAR}={url} does not answer: {e}"))?;
        Ok(url)
    });
    match checked {
        Ok(url) => url.clone(),
        Err(why) => {
            let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
            panic!("{why}; {HOW_TO}{}", if ci { " (CI=true)" } else { "" })
        }
    }
}

/// Minimal blocking HTTP/1.0 `GET /_cluster/health`: the check must work from sync and async tests alike
/// without blocking on (or nesting) a tokio runtime.
fn probe(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let host = parsed.host_str().ok_or("URL has no host")?.to_string();
    let port = parsed.port_or_known_default().ok_or("URL has no port")?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    if parsed.scheme() != "http" {
        // TLS nodes: a TCP connect is all this probe can do without a TLS stack; the client reports the rest.
        return Ok(());
    }
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(stream, "GET /_cluster/health HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let status = response.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("unexpected answer {status:?}"))
    }
}

/// A client for the live test node.
pub fn client() -> Elasticsearch {
    client_for(&es_url())
}

fn client_for(url: &str) -> Elasticsearch {
    let parsed = url::Url::parse(url).expect("es_url() returned a checked URL");
    let transport = TransportBuilder::new(SingleNodeConnectionPool::new(parsed))
        .disable_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building an Elasticsearch transport for the test node");
    Elasticsearch::new(transport)
}

/// `_bulk` of `lines` (action and document lines) into `index`, or into the indices the actions name,
/// refreshed so the next search sees them; through the tests' own client (the library's client has no
/// raw transport to hand out). Returns the answer; an HTTP error fails the test (item errors are the
/// caller's to check).
pub async fn bulk(index: Option<&str>, lines: Vec<Value>) -> Value {
    let body: Vec<JsonBody<Value>> = lines.into_iter().map(JsonBody::from).collect();
    let parts = match index {
        Some(index) => BulkParts::Index(index),
        None => BulkParts::None,
    };
    let response = client().bulk(parts).refresh(Refresh::True).body(body).send().await.expect("bulk request");
    let status = response.status_code();
    let answer: Value = response.json().await.expect("bulk answer");
    assert!(status.is_success(), "bulk: HTTP {status}: {answer}");
    answer
}

/// A uniquely named index for one test, deleted when the value is dropped (also when the test panics).
pub struct TestIndex {
    pub name: String,
}

impl TestIndex {
    /// Creates `esdetect-test-<label>-<unique>` with `body` (settings/mappings/aliases), asserting success.
    pub async fn create(client: &Elasticsearch, label: &str, body: Value) -> TestIndex {
        let name = unique_index_name(label);
        let response = client
            .indices()
            .create(IndicesCreateParts::Index(&name))
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating test index {name}: {e}"));
        let status = response.status_code();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "creating test index {name}: HTTP {status}: {text}");
        TestIndex { name }
    }
}

impl Drop for TestIndex {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be single-threaded: delete from a separate thread
        // with its own runtime and its own client (connections of the test's client belong to its runtime).
        let name = std::mem::take(&mut self.name);
        let url = es_url();
        let outcome = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                client_for(&url)
                    .indices()
                    .delete(IndicesDeleteParts::Index(&[&name]))
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status_code().is_success())
            })
        })
        .join();
        if !matches!(outcome, Ok(Some(true))) {
            eprintln!("warning: could not delete a test index (left on the test node)");
        }
    }
}

/// Lower-case, unique across processes and calls: `esdetect-test-<label>-<pid>-<nanos>-<n>`.
pub fn unique_index_name(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let label: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    format!(
        "esdetect-test-{label}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs the esdetect binary in `cwd` with a clean environment (no inherited `ESDETECT_*` or `NO_COLOR`), so
/// the developer's or CI's settings never leak into what a test sees.
pub fn esdetect(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdetect"));
    cmd.current_dir(cwd).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("ESDETECT_") || name == "NO_COLOR" {
            cmd.env_remove(name);
        }
    }
    cmd.output().expect("running the esdetect binary")
}
