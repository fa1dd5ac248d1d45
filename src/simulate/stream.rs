//! Streaming a simulation in time order with memory that does not grow with the number of events.
//!
//! A run is drawn as *units* in generation order (an ordinary event, an attack or a look-alike: all its
//! random choices, nothing rendered), and every unit's documents get random times over the whole window,
//! so the first document in time order may be the last one drawn. Holding every document until the end
//! (what [`Simulator::generate`] does) costs ~17 KB per event, so [`Simulator::write_hits`] works in time
//! slices instead: one pass draws every unit only to count documents per millisecond and cut the window
//! into slices of at most a budget of documents; then, per slice, a fresh copy of the simulator replays
//! the draws (cheap: numbers, no documents), keeps the units with a document in the slice, sorts them
//! and renders and writes them. Memory is the budget's worth of units (~100 bytes each); CPU is one
//! replay per slice, which is small next to rendering as long as slices are large. The output is
//! byte-for-byte what rendering [`Simulator::generate`]'s documents gives: same documents, same order
//! (time, then generation order), same ids.

use super::lab;
use super::scenarios::{KrbCase, OrdinaryCase, SmbCase};
use super::{LookAlike, Scenario, Simulator};
use std::io::{self, Write};

/// Documents a slice may hold by default (~25 MB of units): few enough to keep a 10 M-event simulation
/// small, many enough that the replays (one per slice) cost less than rendering.
pub const SLICE_DOCS: usize = 250_000;

/// Latest a document can come after the window's start when the window is short: a "late service"
/// look-alike's 4697 is up to ten minutes after its 4624.
const LATEST_MS: i64 = 600_001;

/// At most this many counting buckets (4 MB): a bucket is one millisecond unless the window is longer
/// than about 17 minutes.
const MAX_BUCKETS: i64 = 1 << 20;

/// One drawn piece of a run: the random choices behind one or two documents.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    /// One benign event.
    Ordinary(OrdinaryCase),
    /// A KrbRelayUp attack or look-alike: a 4624 and a 4697.
    Krb(Box<KrbCase>, Option<LookAlike>),
    /// An SMB relay attack or look-alike: one 5145.
    Smb(Box<SmbCase>, Option<LookAlike>),
}

impl Unit {
    pub fn doc_count(&self) -> usize {
        match self {
            Unit::Krb(..) => 2,
            _ => 1,
        }
    }

    /// Event time (epoch ms) of each document, in document order.
    pub fn doc_times(&self) -> impl Iterator<Item = i64> {
        let times = match self {
            Unit::Ordinary(o) => [o.ts, 0],
            Unit::Krb(k, _) => [k.logon_ms, k.logon_ms + k.delay_ms],
            Unit::Smb(s, _) => [s.ts_ms, 0],
        };
        times.into_iter().take(self.doc_count())
    }
}

/// A document of the current slice, waiting to be sorted and rendered.
struct Kept {
    ts: i64,
    /// Position in generation order: ties within a millisecond keep it.
    seq: u64,
    part: usize,
    unit: Unit,
}

impl Simulator {
    /// Writes the documents of `scenario` with `count` (see [`Simulator::generate`]) as NDJSON search
    /// hits in time order, in namespace `namespace`, holding about `slice_docs` documents' draws at a time
    /// (see the module doc). Ids are `sim-<seed in hex>-<position>`. Leaves the simulator as `generate`
    /// would (random stream, counters, planted list if recorded). Returns how many hits were written.
    pub fn write_hits(&mut self, scenario: Scenario, count: usize, namespace: &str, slice_docs: usize, out: &mut dyn Write) -> io::Result<u64> {
        let mut base = self.clone();
        base.planted = Vec::new();
        base.record_planted = false;
        base.namespace = namespace.to_string();

        // Counting pass (on `self`, so it ends where `generate` would).
        let lo = self.start_ms();
        let span = self.window_ms.max(LATEST_MS);
        let width = (span + MAX_BUCKETS - 1) / MAX_BUCKETS;
        let bucket = |ts: i64| ((ts - lo).clamp(0, span - 1) / width) as usize;
        let mut counts = vec![0u32; bucket(lo + span - 1) + 1];
        self.draw_units(scenario, count, &mut |unit| unit.doc_times().for_each(|ts| counts[bucket(ts)] += 1));

        let cuts = slice_cuts(&counts, lo, width, slice_docs);
        drop(counts);

        let mut written = 0u64;
        let mut kept: Vec<Kept> = Vec::new();
        let mut doc = Vec::with_capacity(4096);
        for slice in cuts.windows(2) {
            let (from, to) = (slice[0], slice[1]);
            let mut replay = base.clone();
            let mut seq = 0u64;
            replay.draw_units(scenario, count, &mut |unit| {
                for (part, ts) in unit.doc_times().enumerate() {
                    if from <= ts && ts < to {
                        kept.push(Kept { ts, seq: seq + part as u64, part, unit: unit.clone() });
                    }
                }
                seq += unit.doc_count() as u64;
            });
            kept.sort_unstable_by_key(|k| (k.ts, k.seq));
            for k in kept.drain(..) {
                doc.clear();
                let index = lab::namespaced_index(replay.render_json(&k.unit, k.part, &mut doc), namespace);
                lab::write_raw_hit(out, &index, &format!("sim-{:x}-{written:06}", self.seed), &doc)?;
                written += 1;
            }
        }
        Ok(written)
    }
}

/// Where slices start, from documents counted per bucket (`counts[b]` documents in
/// `[lo + b·width, lo + (b+1)·width)`): each slice holds at most `budget` documents unless one bucket alone
/// holds more, and boundaries fall between buckets, so one millisecond is never split. The result starts
/// with `i64::MIN` and ends with `i64::MAX`; slice `i` is `[cuts[i], cuts[i + 1])`.
pub(crate) fn slice_cuts(counts: &[u32], lo: i64, width: i64, budget: usize) -> Vec<i64> {
    let mut cuts = vec![i64::MIN];
    let mut held = 0usize;
    for (b, &n) in counts.iter().enumerate() {
        if held > 0 && held + n as usize > budget {
            cuts.push(lo + b as i64 * width);
            held = 0;
        }
        held += n as usize;
    }
    cuts.push(i64::MAX);
    cuts
}
