//! Throughput of the in-memory EQL evaluator on the application's seed rules (`rules/*.toml` at the
//! repository root: only their `query`, read with `toml`), with nothing but this crate.
//!
//! Input: N parsed Windows Security documents generated once, outside every timed loop, by tiling the
//! checked-in fixture `benches/fixtures/windows_security.ndjson` (200 simulated search hits: the mix of
//! 4624/4625/4634/4672/4688/4697/5140/5145 with ~1 % planted attacks and their look-alikes) along the time
//! axis (see [`benchmark_events`]). N is 100 000 unless `ESDETECT_BENCH_EVENTS` says otherwise (see
//! [`DEFAULT_EVENTS`] for why not 1 M).
//!
//! Two groups, both reported as elements (= events) per second:
//! - `predicate/<rule>`: `CompiledQuery::matches_stage` for every stage over every event — the cost of
//!   deciding matches, nothing else;
//! - `predicate_hot/<rule>`: the same over the first 1 000 events only, which stay in the CPU cache;
//! - `baseline/*`: one `serde_json` lookup per event (the floor for any predicate on cold documents), the
//!   timestamp read the engine does per event, and freeing the events;
//! - `engine/<rule>`: the full streaming engine (`Runner::push` for every event, then `finish`): timestamp
//!   and ordinal handling, per-millisecond buffering, join keys, the sequence state machine and the tail
//!   selection. The runner owns its events, so each iteration gets a fresh copy of the event vector; making
//!   the copy is not timed, dropping the events the runner discards is (as in a real run).
//! - `projection/{scan,serde}`: reading one search hit's text into its identity and the projection of its
//!   `_source` to the fields the seed rules read (`event::projection::read_document`, what `esdetect test`
//!   does per line), over the fixture's lines, by the fast scan and by the serde reference; reported in
//!   bytes per second (`*_keep_nothing`: the same with no field wanted, i.e. validating and skipping
//!   alone). It needs no events: `ESDETECT_BENCH_EVENTS=1000 cargo bench -p esdetect-eql --bench
//!   eql -- projection` skips the costly setup of the other groups.
//! - `engine_projected/<rule>`: the same engine as the one-pass data path feeds it: events projected to the
//!   fields the rule reads, shared through `Arc` (`Runner::push_shared`), so an iteration pays for the
//!   engine's work, not for freeing whole documents (the artefact that dominated `engine/*`).
//!
//! Run with `cargo bench -p esdetect-eql --bench eql`; see `benches/README.md` (repository root) for the
//! figures.

use chrono::{DateTime, SecondsFormat, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use esdetect_eql::analyze::CompiledQuery;
use esdetect_eql::engine::{Evaluation, Runner};
use esdetect_eql::mapping::Mapping;
use esdetect_eql::plan::{Plan, Position, QueryOptions};
use esdetect_eql::event::projection::{read_document, read_document_serde};
use esdetect_eql::event::{Event, FieldSet};
use serde_json::Value;
use std::hint::black_box;
use std::sync::Arc;
use std::path::Path;
use std::time::Duration;

/// Each seed rule's short name and its compiled query.
fn seed_rules() -> Vec<(String, CompiledQuery)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let opts = QueryOptions { size: 100, position: Position::Tail, ..QueryOptions::default() };
    let mapping = Mapping::builtin_ecs();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let rule: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let query = rule["rule"]["query"].as_str().unwrap_or_else(|| panic!("{}: no rule.query", p.display()));
            let q = esdetect_eql::parse(query).unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
            let plan = CompiledQuery::compile(&q, &mapping, &opts).unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (name, plan)
        })
        .collect()
}

/// 100 000 rather than 1 000 000 by default: a parsed simulated document takes about 20 KB of heap
/// (`serde_json` maps with `preserve_order`), and the engine group needs a second copy per iteration, so
/// 1 M events would need ~40 GB. Events per second do not depend on N once the events far exceed the CPU
/// caches (100 000 documents ≈ 2 GB).
const DEFAULT_EVENTS: usize = 100_000;

fn event_count() -> usize {
    std::env::var("ESDETECT_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_EVENTS)
}

/// The fixture: simulated search hits (`_index`, `_id`, `_source`), in time order.
const FIXTURE: &str = include_str!("fixtures/windows_security.ndjson");

/// `n` events: the fixture repeated, each copy shifted in time past the end of the one before (by the
/// fixture's span plus 10 minutes, longer than the seed rules' `maxspan`, so no sequence spans two copies)
/// and given ids of its own. Every event is its own allocation, as parsed hits are.
fn benchmark_events(n: usize) -> Vec<Event> {
    let mut hits: Vec<(i64, String, String, Value)> = FIXTURE
        .lines()
        .map(|line| {
            let mut hit: Value = serde_json::from_str(line).expect("fixture line is JSON");
            let source = hit["_source"].take();
            let ts = source["@timestamp"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).expect("fixture @timestamp");
            let (index, id) = (hit["_index"].as_str().unwrap_or_default(), hit["_id"].as_str().unwrap_or_default());
            (ts.timestamp_millis(), index.to_string(), id.to_string(), source)
        })
        .collect();
    hits.sort_by_key(|h| h.0);
    let span = hits.last().map_or(0, |h| h.0) - hits.first().map_or(0, |h| h.0);
    let period = span + 600_000;
    (0..n)
        .map(|i| {
            let (copy, (ts, index, id, source)) = (i / hits.len(), &hits[i % hits.len()]);
            let mut source = source.clone();
            let at = DateTime::<Utc>::from_timestamp_millis(ts + copy as i64 * period).expect("timestamp in range");
            source["@timestamp"] = Value::String(at.to_rfc3339_opts(SecondsFormat::Millis, true));
            Event::new(index.clone(), format!("{id}-{copy}"), source)
        })
        .collect()
}

/// Matches of every stage over all events (the predicate-only workload); also a sanity check that the
/// benchmark input really contains matches.
fn stage_matches(plan: &CompiledQuery, events: &[Event]) -> usize {
    let mut n = 0;
    for e in events {
        for s in 0..plan.stage_count() {
            if plan.matches_stage(s, e).unwrap_or(false) {
                n += 1;
            }
        }
    }
    n
}

/// One full engine run: push every event in order, then finish.
fn run_engine(plan: &CompiledQuery, events: impl IntoIterator<Item = Event>) -> Evaluation {
    let mut runner = Runner::new(plan);
    for e in events {
        runner.push(e).expect("push");
    }
    runner.finish().expect("finish")
}

/// The projection parse of each fixture line, by the fast scan and by serde alone.
fn bench_projection(c: &mut Criterion) {
    let rules = seed_rules();
    let fields = FieldSet::new(rules.iter().flat_map(|(_, plan)| plan.fields_read()));
    let lines: Vec<&str> = FIXTURE.lines().filter(|l| !l.trim().is_empty()).collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    for line in &lines {
        assert_eq!(read_document(&fields, line).ok(), read_document_serde(&fields, line).ok(), "{line}");
    }
    let mut g = c.benchmark_group("projection");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("scan", |b| b.iter(|| lines.iter().filter(|l| read_document(&fields, black_box(l)).is_ok()).count()));
    g.bench_function("serde", |b| b.iter(|| lines.iter().filter(|l| read_document_serde(&fields, black_box(l)).is_ok()).count()));
    // The same with no field wanted: validating and skipping alone, no value built.
    let none = FieldSet::new(Vec::<String>::new());
    g.bench_function("scan_keep_nothing", |b| b.iter(|| lines.iter().filter(|l| read_document(&none, black_box(l)).is_ok()).count()));
    g.bench_function("serde_keep_nothing", |b| b.iter(|| lines.iter().filter(|l| read_document_serde(&none, black_box(l)).is_ok()).count()));
    g.finish();
}

fn bench(c: &mut Criterion) {
    let n = event_count();
    let events = benchmark_events(n);
    let rules = seed_rules();
    assert!(!rules.is_empty(), "no rules/*.toml found");

    for (name, plan) in &rules {
        let hits = stage_matches(plan, &events);
        let out = run_engine(plan, events.iter().cloned());
        eprintln!(
            "{name}: {hits} stage matches over {n} events; engine: {} results ({} before the tail cut)",
            out.results.len(),
            out.stats.total_results
        );
        assert!(hits > 0, "{name}: the benchmark input has no matches; the workload is not representative");
    }

    let mut g = c.benchmark_group("predicate");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(n as u64));
    for (name, plan) in &rules {
        g.bench_function(name.as_str(), |b| b.iter(|| black_box(stage_matches(plan, black_box(&events)))));
    }
    g.finish();

    // The same over documents that are still in the CPU cache (1 000 events, ~20 MB, each pass over them
    // counted): the situation of a page of hits evaluated right after it was parsed.
    let hot = &events[..events.len().min(1_000)];
    let mut g = c.benchmark_group("predicate_hot");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(hot.len() as u64));
    for (name, plan) in &rules {
        g.bench_function(name.as_str(), |b| b.iter(|| black_box(stage_matches(plan, black_box(hot)))));
    }
    g.finish();

    // What the engine group pays besides matching: freeing the events it does not keep, and reading each
    // event's timestamp for ordering.
    let mut g = c.benchmark_group("baseline");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("drop_events", |b| b.iter_batched(|| events.clone(), drop, BatchSize::PerIteration));
    // The floor for any predicate: one nested lookup per document through serde_json's own map API.
    g.bench_function("lookup_event_code", |b| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| e.source.get("event").and_then(|v| v.get("code")).is_some_and(|c| c == "5145"))
                .count()
        })
    });
    let plan = &rules[0].1;
    g.bench_function("timestamp_ms", |b| {
        b.iter(|| events.iter().filter_map(|e| plan.timestamp_ms(black_box(e))).fold(0i64, i64::wrapping_add))
    });
    g.finish();

    let mut g = c.benchmark_group("engine_projected");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(n as u64));
    for (name, plan) in &rules {
        let fields = FieldSet::new(plan.fields_read());
        let projected: Vec<Arc<Event>> =
            events.iter().map(|e| Arc::new(Event::new(e.index.clone(), e.id.clone(), fields.prune(&e.source)))).collect();
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let mut runner = Runner::new(plan);
                for e in &projected {
                    runner.push_shared(Arc::clone(e)).expect("push");
                }
                black_box(runner.finish().expect("finish"))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("engine");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(n as u64));
    for (name, plan) in &rules {
        g.bench_function(name.as_str(), |b| {
            b.iter_batched(
                || events.clone(),
                |batch| black_box(run_engine(plan, batch)),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_projection, bench);
criterion_main!(benches);
