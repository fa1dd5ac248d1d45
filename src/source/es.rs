//! Fetching one rule window from the cluster: every event in `[from, to]`, in `@timestamp` order,
//! paged with a point in time (PIT) and `search_after` so that memory holds one page at a time and the
//! result is a consistent snapshot even while new data arrives.
//!
//! The time filter is exactly the one Kibana puts on a rule's EQL request (spec alert-documents §13):
//! inclusive `gte`/`lte` on ms-precision ISO strings, and with a timestamp override plus fallback the
//! `should` form that takes events by `event.ingested`, or by `@timestamp` when `event.ingested` is
//! missing. EQL also drops events without its timestamp field, so an `exists` filter is added.
//!
//! A failed or incomplete fetch (shard failures, time-out) is an error, never a silently shorter window:
//! a rule run over partial data would miss alerts without telling anyone.
//!
//! `_source` filtering: a detection scan asks only for the fields its rules read (`"_source": {"includes":
//! [...]}`, [`WindowQuery::source_includes`]); Elasticsearch's filter matches nested objects, dotted keys and
//! arrays of objects alike, so the hit keeps everything the projection would keep from the whole document.
//! Such events carry no text ([`Event::projected_unfetched`]); the few that become alerts get their whole
//! `_source` afterwards with `_mget` by `_index`/`_id` ([`fetch_sources`]). It is opt-in
//! ([`SourceFetch::Filtered`]); by default every hit carries its whole `_source` ([`SourceFetch`] says why).
//!
//! [`describe_window`] is the request sequence a scan sends, for `esdetect explain` to print.
//!
//! Dialects: Elasticsearch opens a PIT with `POST <idx>/_pit` (answer `id`) and closes it with
//! `DELETE /_pit`; OpenSearch uses `POST <idx>/_search/point_in_time` (answer `pit_id`) and
//! `DELETE /_search/point_in_time`. The search body is the same.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use elasticsearch::http::Method;
use elasticsearch::indices::{IndicesGetMapping, IndicesGetMappingParts};
use tokio_util::task::AbortOnDropHandle;
use serde_json::{json, Value};
use thiserror::Error;

use crate::es::{EsClient, EsError, Flavour};
use crate::event::projection::Projection;
use crate::event::Event;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// How much of each hit's `_source` a detection scan asks for (`[source] fetch`).
///
/// `Full` is the default because it measured faster in wall time where Elasticsearch runs next to
/// esdetect on loopback (benches/README.md, cluster section): filtering each hit's `_source` costs the
/// node about what the smaller answers save there. `Filtered` reads ~5× fewer bytes and ~35 % less client
/// CPU, which is the better trade over a real network or a metered link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFetch {
    /// Only the fields the rules read; the whole `_source` of the events that become alerts by `_mget`.
    Filtered,
    /// The whole `_source` of every hit.
    #[default]
    Full,
}

/// Documents per `_mget` request.
pub const MGET_BATCH: usize = 1000;

/// How long the cluster keeps the PIT alive between two page requests.
pub const PIT_KEEP_ALIVE: &str = "1m";

/// Everything that defines the events of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowQuery {
    /// Index patterns of the rule (`logs-system.security*`, …).
    pub indices: Vec<String>,
    /// The EQL ordering clock (`timestamp_field`), `@timestamp` unless the rule says otherwise.
    pub timestamp_field: String,
    /// The field the window is applied to: the rule's `timestamp_override` or `timestamp_field`.
    pub window_field: String,
    /// With an override: also take events that lack `window_field` but whose `timestamp_field` is in the
    /// window (Kibana's default; `timestamp_override_fallback_disabled` turns it off).
    pub fallback_to_timestamp: bool,
    /// Window start, inclusive.
    pub from: DateTime<Utc>,
    /// Window end, inclusive (the run's start time).
    pub to: DateTime<Utc>,
    /// Optional Query DSL that pre-filters candidates (from the EQL pushdown); must never drop an event
    /// the rule could match.
    pub pushdown: Option<Value>,
    /// Hits per page.
    pub page_size: usize,
    /// More filters ANDed in (rule filters, exceptions, data-tier filter).
    pub extra_filters: Vec<Value>,
    /// Ask only for these `_source` fields (dotted paths); `None`: the whole `_source`. With a filter the
    /// events carry no text: [`fetch_sources`] reads it for the ones that need it.
    pub source_includes: Option<Vec<String>>,
}

impl WindowQuery {
    /// A window on `@timestamp` over `indices`, no pushdown, 1000 hits per page.
    pub fn new(indices: Vec<String>, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        WindowQuery {
            indices,
            timestamp_field: "@timestamp".to_string(),
            window_field: "@timestamp".to_string(),
            fallback_to_timestamp: true,
            from,
            to,
            pushdown: None,
            page_size: 1000,
            extra_filters: Vec::new(),
            source_includes: None,
        }
    }

    /// Applies a rule's `timestamp_override` (e.g. `event.ingested`) with Kibana's fallback setting.
    pub fn with_override(mut self, field: &str, fallback: bool) -> Self {
        self.window_field = field.to_string();
        self.fallback_to_timestamp = fallback;
        self
    }
}

/// What one fetch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchStats {
    /// Search requests sent (pages, including the final empty or short one).
    pub pages: usize,
    /// Events handed to the consumer.
    pub hits: usize,
    /// Bytes of the search answers (the pages' bodies).
    pub bytes: u64,
    pub duration: Duration,
}

/// Why a window could not be fetched completely.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error(transparent)]
    Es(#[from] EsError),
    #[error(
        "{failed} of {total} shards failed while searching {indices}: {reasons}. The window was NOT fully \
         read, so this run fails rather than miss events; check the cluster's health and the indices' mappings"
    )]
    ShardFailures { indices: String, failed: u64, total: u64, reasons: String },
    #[error("the search of {indices} timed out on the cluster; the window was not fully read")]
    TimedOut { indices: String },
    #[error("unexpected search response: {0}")]
    Malformed(String),
    #[error("window query is invalid: {0}")]
    InvalidQuery(String),
    #[error("the consumer of the events failed: {0}")]
    Consumer(Box<dyn std::error::Error + Send + Sync>),
}

/// ISO-8601 UTC with milliseconds, as JavaScript's `Date.toISOString()` prints it.
pub fn iso_ms(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn range(field: &str, from: &str, to: &str) -> Value {
    // Key order as Kibana sends it (lte, gte, format): irrelevant to the cluster, helpful when diffing.
    json!({"range": {field: {"lte": to, "gte": from, "format": "strict_date_optional_time"}}})
}

/// Kibana's time-range filter for the window (spec alert-documents §13).
pub fn range_filter(q: &WindowQuery) -> Value {
    let (from, to) = (iso_ms(&q.from), iso_ms(&q.to));
    let primary = range(&q.window_field, &from, &to);
    if q.window_field == q.timestamp_field || !q.fallback_to_timestamp {
        return primary;
    }
    json!({"bool": {"minimum_should_match": 1, "should": [
        primary,
        {"bool": {"filter": [
            range(&q.timestamp_field, &from, &to),
            {"bool": {"must_not": {"exists": {"field": q.window_field}}}}
        ]}}
    ]}})
}

fn check_query(q: &WindowQuery) -> Result<(), SourceError> {
    if q.indices.is_empty() {
        return Err(SourceError::InvalidQuery("no index pattern given".into()));
    }
    if q.page_size == 0 || q.page_size > 10_000 {
        return Err(SourceError::InvalidQuery(format!(
            "page_size {} is out of range 1..=10000 (index.max_result_window)",
            q.page_size
        )));
    }
    if q.from > q.to {
        return Err(SourceError::InvalidQuery(format!("window start {} is after its end {}", iso_ms(&q.from), iso_ms(&q.to))));
    }
    Ok(())
}

/// Sort: the EQL clock ascending, then a per-document tiebreak that is unique inside a PIT
/// (`_shard_doc`, Elasticsearch ≥ 7.12; not verified against OpenSearch, which may need another tiebreak), so that
/// `search_after` neither skips nor repeats events that share a timestamp.
fn sort_clause(q: &WindowQuery) -> Value {
    json!([
        {q.timestamp_field.as_str(): {"order": "asc", "unmapped_type": "date"}},
        {"_shard_doc": "asc"}
    ])
}

/// The search body of the first page, without the PIT (added per request). This is exactly what
/// `esdetect explain` shows: the query, sort and page size sent for every page.
pub fn window_request_body(q: &WindowQuery) -> Value {
    let mut filters = vec![range_filter(q), json!({"exists": {"field": q.timestamp_field}})];
    if let Some(p) = &q.pushdown {
        filters.push(p.clone());
    }
    filters.extend(q.extra_filters.iter().cloned());
    let mut body = json!({
        "size": q.page_size,
        "query": {"bool": {"filter": filters}},
        "sort": sort_clause(q),
        "track_total_hits": false,
    });
    if let Some(includes) = &q.source_includes {
        body["_source"] = json!({"includes": includes});
    }
    body
}

/// One HTTP request of a scan, as `esdetect explain` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestStep {
    pub method: &'static str,
    /// Path with its query string.
    pub path: String,
    /// When and how often it is sent.
    pub note: String,
    /// The JSON body (for the page request: the first page's; later ones add `pit` and `search_after`).
    pub body: Option<Value>,
}

/// The requests [`stream_window`] sends for `q`, in order, then the `_mget` of the alerts' sources when
/// the scan is filtered. What `esdetect explain` prints, so that it cannot drift from what a run does.
pub fn describe_window(flavour: Flavour, q: &WindowQuery) -> Vec<RequestStep> {
    let (pit_path, params) = pit_open_request(flavour, &q.indices);
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let close_path = match flavour {
        Flavour::Elasticsearch => "/_pit",
        Flavour::OpenSearch => "/_search/point_in_time",
    };
    let mut steps = vec![
        RequestStep { method: "POST", path: format!("{pit_path}?{}", query.join("&")), note: String::new(), body: None },
        RequestStep {
            method: "POST",
            path: "/_search".into(),
            note: "repeated with pit and search_after until a page is short".into(),
            body: Some(window_request_body(q)),
        },
        RequestStep { method: "DELETE", path: close_path.into(), note: String::new(), body: None },
    ];
    if q.source_includes.is_some() {
        steps.push(RequestStep {
            method: "POST",
            path: "/_mget".into(),
            note: format!("whole `_source` of the events that become alerts, by `_index`/`_id`, {MGET_BATCH} per request"),
            body: Some(json!({"docs": [{"_index": "<_index of the hit>", "_id": "<_id of the hit>"}]})),
        });
    }
    steps
}

/// The URL path and query parameters that open a PIT over the rule's index patterns.
pub fn pit_open_request(flavour: Flavour, indices: &[String]) -> (String, Vec<(&'static str, String)>) {
    let joined = crate::es::path::indices(indices);
    match flavour {
        Flavour::Elasticsearch => (
            format!("/{joined}/_pit"),
            vec![
                ("keep_alive", PIT_KEEP_ALIVE.to_string()),
                ("ignore_unavailable", "true".to_string()),
                ("allow_no_indices", "true".to_string()),
            ],
        ),
        Flavour::OpenSearch => (
            format!("/{joined}/_search/point_in_time"),
            vec![("keep_alive", PIT_KEEP_ALIVE.to_string())],
        ),
    }
}

/// Opens a PIT; returns its id.
pub async fn open_pit(client: &EsClient, flavour: Flavour, indices: &[String]) -> Result<String, SourceError> {
    let (path, params) = pit_open_request(flavour, indices);
    let (status, body) = client.raw(Method::Post, &path, &params, None).await?;
    if !(200..300).contains(&status) {
        return Err(EsError::from_response("open point in time", status, &body).into());
    }
    check_shards(&body, indices)?;
    let key = match flavour {
        Flavour::Elasticsearch => "id",
        Flavour::OpenSearch => "pit_id",
    };
    body[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| SourceError::Malformed(format!("open point in time answered without `{key}`: {body}")))
}

/// Closes a PIT. A PIT that is already gone (404) counts as closed.
pub async fn close_pit(client: &EsClient, flavour: Flavour, id: &str) -> Result<(), EsError> {
    let (path, body) = match flavour {
        Flavour::Elasticsearch => ("/_pit", json!({"id": id})),
        Flavour::OpenSearch => ("/_search/point_in_time", json!({"pit_id": [id]})),
    };
    let (status, resp) = client.raw(Method::Delete, path, &[], Some(&body)).await?;
    if (200..300).contains(&status) || status == 404 {
        Ok(())
    } else {
        Err(EsError::from_response("close point in time", status, &resp))
    }
}

/// Closes the PIT if the fetch future is dropped before it could (cancellation, panic in the consumer).
/// The normal path closes explicitly and disarms the guard.
struct PitGuard {
    client: EsClient,
    flavour: Flavour,
    id: Option<String>,
}

impl Drop for PitGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let (client, flavour) = (self.client.clone(), self.flavour);
                handle.spawn(async move {
                    if let Err(e) = close_pit(&client, flavour, &id).await {
                        tracing::warn!("could not close point in time after an aborted fetch: {e}");
                    }
                });
            }
            // Without a runtime the PIT expires by itself after PIT_KEEP_ALIVE.
        }
    }
}

/// A `_shards` section with failures, or a timed-out search, is an error.
fn check_shards(body: &Value, indices: &[String]) -> Result<(), SourceError> {
    let failed = body["_shards"]["failed"].as_u64().unwrap_or(0);
    if failed > 0 {
        let reasons: Vec<String> = body["_shards"]["failures"]
            .as_array()
            .map(|fs| {
                fs.iter()
                    .map(|f| {
                        let idx = f["index"].as_str().unwrap_or("?");
                        let r = &f["reason"];
                        format!("[{idx}] {}: {}", r["type"].as_str().unwrap_or("?"), r["reason"].as_str().unwrap_or("?"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Err(SourceError::ShardFailures {
            indices: indices.join(","),
            failed,
            total: body["_shards"]["total"].as_u64().unwrap_or(0),
            reasons: if reasons.is_empty() { "no reason given".into() } else { reasons.join("; ") },
        });
    }
    if body["timed_out"].as_bool() == Some(true) {
        return Err(SourceError::TimedOut { indices: indices.join(",") });
    }
    Ok(())
}

/// Streams every event of the window to `on_event`, oldest first, one page in memory at a time; each
/// hit's `_source` is parsed as `projection` says (only the fields the rules read, or whole).
/// The PIT is closed on every path (explicitly, or by a guard if this future is dropped).
pub async fn stream_window<F, E>(
    client: &EsClient,
    q: &WindowQuery,
    projection: &Projection,
    mut on_event: F,
) -> Result<FetchStats, SourceError>
where
    F: FnMut(Event) -> Result<(), E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    check_query(q)?;
    let started = Instant::now();
    let flavour = client.info().await?.flavour;
    let pit_id = open_pit(client, flavour, &q.indices).await?;
    let mut guard = PitGuard { client: client.clone(), flavour, id: Some(pit_id) };

    let result = page_loop(client, q, projection, &mut guard, &mut on_event).await;

    // Close with the newest id (the cluster may hand out a new one with each page).
    if let Some(id) = guard.id.take() {
        if let Err(e) = close_pit(client, flavour, &id).await {
            // Not fatal for the data already read: the PIT expires after PIT_KEEP_ALIVE anyway.
            tracing::warn!("could not close point in time: {e}");
        }
    }
    let mut stats = result?;
    stats.duration = started.elapsed();
    Ok(stats)
}

/// One search answer, parsed without building a tree: hits keep `_source` as text.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow, default)]
    pit_id: Option<Cow<'a, str>>,
    #[serde(default)]
    timed_out: bool,
    #[serde(default, rename = "_shards")]
    shards: Value,
    #[serde(borrow)]
    hits: Option<PageHits<'a>>,
}

#[derive(Deserialize)]
struct PageHits<'a> {
    #[serde(borrow)]
    hits: Vec<PageHit<'a>>,
}

#[derive(Deserialize)]
struct PageHit<'a> {
    #[serde(borrow, rename = "_index")]
    index: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "_id")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "_source")]
    source: Option<&'a RawValue>,
    #[serde(default)]
    sort: Value,
}

async fn page_loop<F, E>(
    client: &EsClient,
    q: &WindowQuery,
    projection: &Projection,
    guard: &mut PitGuard,
    on_event: &mut F,
) -> Result<FetchStats, SourceError>
where
    F: FnMut(Event) -> Result<(), E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let base = window_request_body(q);
    let mut stats = FetchStats::default();
    // The next page is asked for as soon as this one's last `sort` is known, before its events are
    // evaluated, so Elasticsearch's work on page n+1 overlaps esdetect's on page n (requests are the same,
    // one at a time). Dropping the handle (an error, a dropped run) aborts a request still in flight.
    let mut in_flight: Option<AbortOnDropHandle<Result<(u16, String), EsError>>> = None;
    loop {
        let (status, text) = match in_flight.take() {
            Some(handle) => handle.await.map_err(|e| SourceError::Malformed(format!("the page request task failed: {e}")))??,
            None => client.raw_text(Method::Post, "/_search", &[], Some(&page_body(&base, guard, None))).await?,
        };
        stats.pages += 1;
        stats.bytes += text.len() as u64;
        let page: Page<'_> = answer("window search", "search", status, &text)?;
        check_shards(&json!({"_shards": page.shards, "timed_out": page.timed_out}), &q.indices)?;
        if let Some(new_id) = &page.pit_id {
            guard.id = Some(new_id.to_string());
        }
        let hits = page
            .hits
            .ok_or_else(|| SourceError::Malformed(format!("no hits.hits in search response: {}", truncate_str(&text))))?
            .hits;
        let full = hits.len() >= q.page_size;
        if full {
            match hits.last().map(|h| &h.sort) {
                Some(sort) if sort.is_array() => {
                    let body = page_body(&base, guard, Some(sort));
                    let client = client.clone();
                    // With a PIT the indices come from the PIT: the path must not name any.
                    in_flight = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                        client.raw_text(Method::Post, "/_search", &[], Some(&body)).await
                    })));
                }
                _ => return Err(SourceError::Malformed("hit without `sort` values; cannot page".into())),
            }
        }
        let filtered = q.source_includes.is_some();
        for hit in hits {
            let event = hit_to_event(&hit, projection, filtered)?;
            stats.hits += 1;
            on_event(event).map_err(|e| SourceError::Consumer(e.into()))?;
        }
        if !full {
            return Ok(stats);
        }
    }
}

/// The body of one page request: the window search with the newest PIT id and, after the first page, the
/// last hit's `sort` values.
fn page_body(base: &Value, guard: &PitGuard, search_after: Option<&Value>) -> Value {
    let mut body = base.clone();
    body["pit"] = json!({"id": guard.id.clone().unwrap_or_default(), "keep_alive": PIT_KEEP_ALIVE});
    if let Some(sa) = search_after {
        body["search_after"] = sa.clone();
    }
    body
}

/// `filtered`: the hit carries only the requested fields, so the event keeps no text.
fn hit_to_event(hit: &PageHit<'_>, projection: &Projection, filtered: bool) -> Result<Event, SourceError> {
    let (Some(index), Some(id)) = (&hit.index, &hit.id) else {
        return Err(SourceError::Malformed(format!(
            "hit without _index/_id: {}",
            truncate_str(hit.source.map(RawValue::get).unwrap_or(""))
        )));
    };
    // A hit without `_source` (disabled on the index) is an empty document, as before.
    let source = hit.source.map(RawValue::get).unwrap_or("{}");
    let bad = |e: serde_json::Error| SourceError::Malformed(format!("hit {index}/{id}: `_source` does not parse: {e}"));
    if !filtered {
        return projection.event(index.to_string(), id.to_string(), source).map_err(bad);
    }
    // The cluster already cut the document to the fields; projecting again keeps exactly what the
    // projection of the whole document would (the filter keeps a superset of it).
    let value = match projection {
        Projection::Full => serde_json::from_str(source).map_err(bad)?,
        Projection::Fields(fields) => crate::event::projection::project_str(fields, source).map_err(bad)?,
    };
    Ok(Event::projected_unfetched(index.to_string(), id.to_string(), value))
}

/// What [`fetch_sources`] read.
#[derive(Debug, Default)]
pub struct Sources {
    /// The whole `_source` text of each document found, by (`_index`, `_id`).
    pub found: std::collections::HashMap<(String, String), std::sync::Arc<str>>,
    /// Documents not found (deleted since the scan, or their index gone), with the cluster's reason.
    pub missing: Vec<(String, String, String)>,
    pub requests: usize,
    /// Bytes of the `_mget` answers.
    pub bytes: u64,
}

#[derive(Deserialize)]
struct MgetAnswer<'a> {
    #[serde(borrow)]
    docs: Vec<MgetDoc<'a>>,
}

#[derive(Deserialize)]
struct MgetDoc<'a> {
    #[serde(borrow, rename = "_index")]
    index: Cow<'a, str>,
    #[serde(borrow, rename = "_id")]
    id: Cow<'a, str>,
    #[serde(default)]
    found: bool,
    #[serde(borrow, rename = "_source")]
    source: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<Value>,
}

/// Reads the whole `_source` of `docs` (`_index`, `_id`; duplicates read once) with `_mget`, in batches
/// of [`MGET_BATCH`]. A document that is gone is reported in [`Sources::missing`], not an error: its
/// alert can still be written from what the scan read. A failed request is an error.
pub async fn fetch_sources(client: &EsClient, docs: &[(String, String)]) -> Result<Sources, SourceError> {
    let mut wanted: Vec<&(String, String)> = docs.iter().collect();
    wanted.sort();
    wanted.dedup();
    let mut out = Sources::default();
    for batch in wanted.chunks(MGET_BATCH) {
        let body = json!({"docs": batch.iter().map(|(index, id)| json!({"_index": index, "_id": id})).collect::<Vec<_>>()});
        let (status, text) = client.raw_text(Method::Post, "/_mget", &[], Some(&body)).await?;
        out.requests += 1;
        out.bytes += text.len() as u64;
        let mget: MgetAnswer<'_> = answer("read the alerts' events (_mget)", "_mget", status, &text)?;
        for doc in mget.docs {
            match (doc.found, doc.source) {
                (true, Some(source)) => {
                    out.found.insert((doc.index.into_owned(), doc.id.into_owned()), source.get().into());
                }
                (true, None) => out.missing.push((doc.index.into_owned(), doc.id.into_owned(), "`_source` is disabled on the index".into())),
                (false, _) => match &doc.error {
                    None => out.missing.push((doc.index.into_owned(), doc.id.into_owned(), "not found (deleted since the scan)".into())),
                    // The index itself is gone (deleted by ILM since the scan): so is the document.
                    Some(e) if e["type"].as_str() == Some("index_not_found_exception") => {
                        out.missing.push((doc.index.into_owned(), doc.id.into_owned(), "its index was deleted since the scan".into()))
                    }
                    // Anything else (a shard unavailable, …) may pass: the run fails and its window is retried,
                    // rather than write an alert without its document for good.
                    Some(e) => {
                        return Err(SourceError::Malformed(format!(
                            "_mget could not read {}/{}: {}",
                            doc.index,
                            doc.id,
                            e["reason"].as_str().or(e["type"].as_str()).unwrap_or("unknown error")
                        )))
                    }
                },
            }
        }
    }
    Ok(out)
}

/// A 2xx answer decoded into `T` (borrowing from `text`); another status is the cluster's error for `what`,
/// and an answer that does not decode is malformed (`name` says whose response it was).
fn answer<'t, T: Deserialize<'t>>(what: &str, name: &str, status: u16, text: &'t str) -> Result<T, SourceError> {
    if !(200..300).contains(&status) {
        let resp = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
        return Err(EsError::from_response(what, status, &resp).into());
    }
    serde_json::from_str(text)
        .map_err(|e| SourceError::Malformed(format!("{name} response does not parse ({e}): {}", truncate_str(text))))
}

fn truncate_str(s: &str) -> String {
    if s.len() > 500 {
        let mut end = 500;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

/// Convenience: the whole window as a vector (tests, `esdetect test` on small windows).
pub async fn fetch_window(client: &EsClient, q: &WindowQuery) -> Result<(Vec<Event>, FetchStats), SourceError> {
    let mut events = Vec::new();
    let stats = stream_window(client, q, &Projection::Full, |e| {
        events.push(e);
        Ok::<(), std::convert::Infallible>(())
    })
    .await?;
    Ok((events, stats))
}

/// `GET <indices>/_mapping` (missing indices ignored): the mappings the EQL analyser types fields with.
/// Answer shape: `{"<concrete index>": {"mappings": {...}}, …}`; `{}` when nothing matches.
pub async fn fetch_mapping(client: &EsClient, indices: &[String]) -> Result<Value, EsError> {
    let names: Vec<&str> = indices.iter().map(String::as_str).collect();
    client
        .send("get mapping", || {
            IndicesGetMapping::new(client.es().transport(), IndicesGetMappingParts::Index(&names))
                .ignore_unavailable(true)
                .allow_no_indices(true)
                .send()
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn q() -> WindowQuery {
        WindowQuery::new(
            vec!["logs-*".into()],
            Utc.with_ymd_and_hms(2026, 5, 20, 10, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 5, 20, 10, 9, 0).unwrap() + chrono::Duration::milliseconds(7),
        )
    }

    #[test]
    fn plain_range_is_kibanas() {
        // Written out by hand from spec alert-documents §13 (rule 1, no override).
        let expected = json!({"range":{"@timestamp":{"lte":"2026-05-20T10:09:00.007Z","gte":"2026-05-20T10:00:00.000Z","format":"strict_date_optional_time"}}});
        assert_eq!(range_filter(&q()), expected);
        assert_eq!(serde_json::to_string(&range_filter(&q())).unwrap(), serde_json::to_string(&expected).unwrap());
    }

    #[test]
    fn override_with_fallback_is_kibanas() {
        let (f, t) = ("2026-05-20T10:00:00.000Z", "2026-05-20T10:09:00.007Z");
        let expected = json!({"bool":{"minimum_should_match":1,"should":[
            {"range":{"event.ingested":{"lte":t,"gte":f,"format":"strict_date_optional_time"}}},
            {"bool":{"filter":[
                {"range":{"@timestamp":{"lte":t,"gte":f,"format":"strict_date_optional_time"}}},
                {"bool":{"must_not":{"exists":{"field":"event.ingested"}}}}]}}]}});
        assert_eq!(range_filter(&q().with_override("event.ingested", true)), expected);
        // Fallback disabled: only the override field.
        let no_fb = range_filter(&q().with_override("event.ingested", false));
        assert_eq!(no_fb, json!({"range":{"event.ingested":{"lte":t,"gte":f,"format":"strict_date_optional_time"}}}));
    }

    #[test]
    fn body_has_range_exists_pushdown_and_sort() {
        let mut wq = q();
        wq.pushdown = Some(json!({"term": {"event.code": "4624"}}));
        wq.extra_filters = vec![json!({"bool": {"must_not": [{"term": {"host.name": "x"}}]}})];
        wq.page_size = 4;
        let b = window_request_body(&wq);
        let filters = b["query"]["bool"]["filter"].as_array().unwrap();
        assert_eq!(filters.len(), 4);
        assert_eq!(filters[0], range_filter(&wq));
        assert_eq!(filters[1], json!({"exists": {"field": "@timestamp"}}));
        assert_eq!(filters[2], json!({"term": {"event.code": "4624"}}));
        assert_eq!(b["size"], json!(4));
        assert_eq!(b["sort"][0]["@timestamp"]["order"], json!("asc"));
        assert_eq!(b["sort"][1], json!({"_shard_doc": "asc"}));
        assert!(b.get("pit").is_none());
    }

    #[test]
    fn filtered_body_asks_for_the_fields_and_explain_lists_the_mget() {
        let mut wq = q();
        assert!(window_request_body(&wq).get("_source").is_none(), "no filter: the whole `_source`");
        assert_eq!(describe_window(Flavour::Elasticsearch, &wq).len(), 3, "open, pages, close");
        wq.source_includes = Some(vec!["@timestamp".into(), "event.code".into()]);
        let b = window_request_body(&wq);
        assert_eq!(b["_source"], json!({"includes": ["@timestamp", "event.code"]}));
        let steps = describe_window(Flavour::Elasticsearch, &wq);
        let lines: Vec<String> = steps.iter().map(|s| format!("{} {}", s.method, s.path)).collect();
        assert_eq!(
            lines,
            ["POST /logs-*/_pit?keep_alive=1m&ignore_unavailable=true&allow_no_indices=true", "POST /_search", "DELETE /_pit", "POST /_mget"]
        );
        assert_eq!(steps[1].body.as_ref(), Some(&b), "the page body is the one a scan sends");
        let os: Vec<String> = describe_window(Flavour::OpenSearch, &wq).iter().map(|s| s.path.clone()).collect();
        assert_eq!(os[0], "/logs-*/_search/point_in_time?keep_alive=1m");
        assert_eq!(os[2], "/_search/point_in_time");
    }

    #[test]
    fn invalid_queries_are_rejected() {
        let mut wq = q();
        wq.page_size = 0;
        assert!(check_query(&wq).is_err());
        let mut wq = q();
        std::mem::swap(&mut wq.from, &mut wq.to);
        assert!(check_query(&wq).is_err());
        let mut wq = q();
        wq.indices.clear();
        assert!(check_query(&wq).is_err());
        assert!(check_query(&q()).is_ok());
    }

    #[test]
    fn pit_dialects() {
        let idx = vec!["a-*".to_string(), "b".to_string()];
        let (p, params) = pit_open_request(Flavour::Elasticsearch, &idx);
        assert_eq!(p, "/a-*,b/_pit");
        assert!(params.contains(&("ignore_unavailable", "true".into())));
        assert!(params.contains(&("allow_no_indices", "true".into())));
        let (p, _) = pit_open_request(Flavour::OpenSearch, &idx);
        assert_eq!(p, "/a-*,b/_search/point_in_time");
        // Rule data never leaves its path segment.
        let evil = vec!["../_security/api_key?x=".to_string(), "logs".to_string()];
        let (p, _) = pit_open_request(Flavour::Elasticsearch, &evil);
        assert_eq!(p, "/..%2F_security%2Fapi_key%3Fx%3D,logs/_pit");
    }

    #[test]
    fn shard_failures_and_timeouts_are_errors() {
        let idx = vec!["x".to_string()];
        let bad = json!({"_shards":{"total":2,"successful":1,"failed":1,"failures":[{"index":"x","reason":{"type":"query_shard_exception","reason":"failed to create query"}}]}});
        match check_shards(&bad, &idx) {
            Err(SourceError::ShardFailures { failed: 1, total: 2, reasons, .. }) => assert!(reasons.contains("failed to create query")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(check_shards(&json!({"timed_out": true, "_shards": {"failed": 0}}), &idx), Err(SourceError::TimedOut { .. })));
        assert!(check_shards(&json!({"timed_out": false, "_shards": {"total": 1, "failed": 0}}), &idx).is_ok());
    }
}

/// Counts documents of the window that lack the timestamp field (only possible with a
/// `timestamp_override`: such a document is in the window by the override field). Elasticsearch's EQL never
/// returns them, and neither does the fetch; this count lets the run report them as skipped.
pub async fn count_without_timestamp(client: &EsClient, q: &WindowQuery) -> Result<u64, SourceError> {
    if q.window_field == q.timestamp_field {
        return Ok(0);
    }
    let body = json!({"query": {"bool": {
        "filter": [range_filter(q)],
        "must_not": [{"exists": {"field": q.timestamp_field}}]
    }}});
    let path = format!("/{}/_count", crate::es::path::indices(&q.indices));
    let params = vec![
        ("ignore_unavailable", "true".to_string()),
        ("allow_no_indices", "true".to_string()),
    ];
    let (status, response) = client.raw(Method::Post, &path, &params, Some(&body)).await?;
    if !(200..300).contains(&status) {
        return Err(SourceError::Malformed(format!("`_count` answered {status}: {response}")));
    }
    response
        .get("count")
        .and_then(Value::as_u64)
        .ok_or_else(|| SourceError::Malformed(format!("`_count` answered without a count: {response}")))
}
