//! Why a result only one side has: checked in the order a run would lose it — esdetect's run failed, a
//! source event is gone, outside the window, removed by an exception, not matched by the query on its
//! own (esdetect's evaluator over just these events; [`super::diagnose`] names the stage, conjunct, join
//! key or maxspan), the `max_signals` cap. When none of these explains
//! it the answer is "no reason found", never a guess.

use super::results::{AlertResult, EventRef};
use super::CompareError;
use crate::detect::{self, window::event_in_window, PreparedRule, RunOptions, RunStatus, RunSummary, Window, WindowFields};
use crate::eql::mapping::Mapping;
use crate::es::EsClient;
use crate::event::Event;
use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Value};

/// What explaining needs: the rule as compared, its field types, the cluster.
pub struct Explainer<'a> {
    pub client: &'a EsClient,
    pub prepared: &'a PreparedRule,
    pub mapping: &'a Mapping,
    pub opts: &'a RunOptions,
}

/// The source events by `_index`/`_id` (`None` where the cluster no longer has one).
async fn fetch_events(client: &EsClient, refs: &[EventRef]) -> Result<Vec<Option<Event>>, CompareError> {
    let docs: Vec<Value> = refs.iter().map(|(index, id)| json!({"_index": index, "_id": id})).collect();
    let (status, resp) = client
        .raw(Method::Post, "/_mget", &[], Some(&json!({"docs": docs})))
        .await
        .map_err(CompareError::es("could not read the source events"))?;
    if status != 200 {
        return Err(CompareError::Answer(format!("reading the source events failed with HTTP {status}: {resp}")));
    }
    let found = resp.get("docs").and_then(Value::as_array).cloned().unwrap_or_default();
    Ok(refs
        .iter()
        .map(|(index, id)| {
            // `_mget` answers in request order, but an index pattern resolves to a concrete name: match by `_id`.
            found
                .iter()
                .find(|d| d.get("_id").and_then(Value::as_str) == Some(id) && d.get("found") == Some(&Value::Bool(true)))
                .map(|d| Event::new(d["_index"].as_str().unwrap_or(index), id.as_str(), d["_source"].clone()))
        })
        .collect())
}

fn describe(event: &EventRef) -> String {
    format!("{}/{}", event.0, event.1)
}

fn window_text(w: &Window) -> String {
    let f = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!("[{}, {}]", f(w.from), f(w.to))
}

/// The values of the field that places `event` in a window, for messages.
fn placed_at(fields: &WindowFields, event: &Event) -> String {
    let mut values = event.field_values(&fields.primary);
    let mut field = fields.primary.as_str();
    if values.is_empty() {
        if let Some(fallback) = &fields.fallback {
            values = event.field_values(fallback);
            field = fallback;
        }
    }
    match values.first() {
        Some(v) => format!("{field} {}", v.as_str().map(String::from).unwrap_or_else(|| v.to_string())),
        None => format!("no {field}"),
    }
}

/// The instant that places `event` in a window (primary field, else the fallback), epoch ms.
fn placed_ms(fields: &WindowFields, event: &Event) -> Option<i64> {
    let first = |field: &str| event.field_values(field).first().and_then(|v| v.as_str()).and_then(crate::eql::value::parse_date_ms);
    first(&fields.primary).or_else(|| fields.fallback.as_deref().and_then(first))
}

/// How close to a rebuilt window's edge an event must be for the persistence lag to be named (Kibana
/// persists alerts within seconds of its search; a minute is generous).
const LAG_MS: i64 = 60_000;

/// Why a rebuilt window can be off: it is anchored at the persistence time, not at the search start.
const LAG_NOTE: &str = "Kibana's window ends when its search starts, a little before the alerts are persisted, \
                        and the rebuilt window is anchored at the persistence time";

/// An event in the last [`LAG_MS`] of a rebuilt window may have been after Kibana's real window end.
fn near_the_end(fields: &WindowFields, window: &Window, events: &[Event]) -> Option<String> {
    let end = window.to.timestamp_millis();
    let (e, d) = events.iter().filter_map(|e| placed_ms(fields, e).map(|ms| (e, end - ms))).find(|(_, d)| (0..=LAG_MS).contains(d))?;
    Some(format!(
        "possibly after Kibana's window: event {}/{} ({}) is {d} ms before the rebuilt end, and {LAG_NOTE}; \
         Kibana's next execution would alert on it",
        e.index,
        e.id,
        placed_at(fields, e)
    ))
}

impl Explainer<'_> {
    /// Why esdetect has no result for events Kibana alerted on in `window`.
    pub async fn why_not_esdetect(&self, result: &AlertResult, window: &Window, summary: &RunSummary) -> Result<String, CompareError> {
        if summary.status == RunStatus::Failed {
            return Ok(format!("esdetect's run of this window failed: {}", summary.errors.join("; ")));
        }
        if result.events.is_empty() {
            return Ok("Kibana's alert names no source event (kibana.alert.ancestors), so it cannot be matched".into());
        }
        let events = fetch_events(self.client, &result.events).await?;
        if let Some((missing, _)) = result.events.iter().zip(&events).find(|(_, e)| e.is_none()) {
            return Ok(format!("source event {} no longer exists in the cluster", describe(missing)));
        }
        let events: Vec<Event> = events.into_iter().flatten().collect();
        let fields = WindowFields::for_rule(&self.prepared.rule);
        if let Some(e) = events.iter().find(|e| !event_in_window(&fields, window, e)) {
            let early = placed_ms(&fields, e).map(|ms| window.from.timestamp_millis() - ms).filter(|d| *d > 0 && *d <= LAG_MS);
            let note = match early {
                Some(d) => format!(" ({d} ms before its start: {LAG_NOTE})"),
                None => String::new(),
            };
            return Ok(format!("event {}/{} ({}) is outside the window {}{note}", e.index, e.id, placed_at(&fields, e), window_text(window)));
        }
        let matcher = self.prepared.exceptions.active_at(window.to).matcher(self.mapping);
        if let Some(e) = events.iter().find(|e| matcher.excludes(e)) {
            return Ok(format!("event {}/{} is removed by the rule's exceptions", e.index, e.id));
        }
        let sequence = result.events.len() > 1;
        let outcome = detect::offline::run_on_events(&[self.prepared], self.mapping, events.iter().cloned(), None, self.opts);
        let matched = outcome.first().map(|o| !o.groups.is_empty()).unwrap_or(false);
        if !matched {
            if let Some(why) = super::diagnose::explain(self.prepared, self.mapping, self.opts, &events) {
                return Ok(format!("the rule's query does not match: {why}"));
            }
            return Ok(if sequence {
                "esdetect finds no sequence in these events on their own: a stage condition, join key or maxspan does not hold".into()
            } else {
                "the event does not match the rule's query (esdetect's evaluation of the event on its own)".into()
            });
        }
        if summary.truncated {
            return Ok(format!(
                "esdetect reached max_signals ({}) in this window and kept the most recent results",
                self.prepared.rule.max_signals
            ));
        }
        Ok("no reason found: esdetect matches these events on their own, but its run of the window has no such result".into())
    }

    /// Why Kibana has no alert for a result esdetect found in `window`; `kibana_results` is what
    /// Kibana's execution of that window wrote (`None`: no Kibana execution with alerts covers it).
    pub async fn why_not_kibana(&self, result: &AlertResult, window: &Window, kibana_results: Option<usize>) -> Result<String, CompareError> {
        let Some(written) = kibana_results else {
            return Ok("no Kibana execution with alerts covers this window: Kibana did not run then, or found nothing".into());
        };
        if written as u64 >= self.prepared.rule.max_signals as u64 {
            return Ok(format!("Kibana's execution reached max_signals ({written} results)"));
        }
        let events: Vec<Event> = fetch_events(self.client, &result.events).await?.into_iter().flatten().collect();
        for e in &events {
            let ingested = e.field_values("event.ingested").first().and_then(|v| v.as_str()).and_then(crate::eql::value::parse_date_ms);
            if let Some(ms) = ingested {
                if ms > window.to.timestamp_millis() {
                    return Ok(format!(
                        "event {}/{} was ingested (event.ingested {}) after Kibana's execution ended the window at {}",
                        e.index,
                        e.id,
                        e.field_values("event.ingested")[0],
                        window.to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    ));
                }
            }
        }
        if let Some(why) = near_the_end(&WindowFields::for_rule(&self.prepared.rule), window, &events) {
            return Ok(why);
        }
        Ok("no reason found: the events are in the window and match the rule; Kibana wrote no alert for them".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: &str) -> Event {
        Event::new("i", "e", json!({"@timestamp": at}))
    }

    #[test]
    fn only_an_event_close_to_the_rebuilt_end_is_blamed_on_the_persistence_lag() {
        let fields = WindowFields { primary: "@timestamp".into(), fallback: None };
        let w = Window { from: "2026-05-20T09:56:00Z".parse().unwrap(), to: "2026-05-20T10:05:00Z".parse().unwrap() };
        let why = near_the_end(&fields, &w, &[event("2026-05-20T10:04:30.000Z")]).unwrap();
        assert!(why.starts_with("possibly after Kibana's window: event i/e (@timestamp 2026-05-20T10:04:30.000Z) is 30000 ms"), "{why}");
        assert_eq!(near_the_end(&fields, &w, &[event("2026-05-20T10:02:00.000Z")]), None);
        assert_eq!(placed_ms(&fields, &event("nonsense")), None);
    }
}
