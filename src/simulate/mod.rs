//! A deterministic simulator of Windows Security events as they sit in Elasticsearch after the
//! Elastic ingest pipelines (spec `event-shapes.md`), for end-to-end tests and benchmarks.
//!
//! It plants the two seed rules' attacks (KrbRelayUp: loopback Kerberos logon followed by a service
//! install in that session; SMB relay: a host's own machine account reaching a share from a remote
//! address) among ordinary traffic and *look-alikes* that differ from an attack in one deliberate
//! field and must not match. Every planted event is described by a [`Planted`] record so tests can
//! look for it by content; the simulator never says what a rule *should* return — tests work that
//! out themselves. Same seed, same start, same calls → byte-identical output.

pub mod events;
pub mod lab;
pub mod scenarios;
pub mod stream;
pub mod templates;

use crate::event::Event;
use chrono::{DateTime, Utc};
pub use events::{Account, Family, Host};
pub use scenarios::{KrbCase, SmbCase};
use serde_json::Value;
use std::net::{Ipv4Addr, Ipv6Addr};

/// splitmix64: tiny, fast and fully determined by its seed (no global or OS randomness).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as u64) as i64
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Rule 1's attack: loopback Kerberos network logon (4624) then a service install (4697) by that
    /// logon session on the same computer within 5 minutes.
    KrbRelayUp,
    /// Rule 2's attack: a 5145 by the target server's own machine account from a remote address.
    SmbRelay,
    /// Ordinary traffic plus look-alikes of both attacks that must not match.
    Noise,
    /// Noise with a few of each attack mixed in.
    All,
}

/// A deliberate near-miss of an attack; the name says which field differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookAlike {
    /// 4624 with `ElevatedToken` `%%1842` instead of `%%1843`.
    KrbElevatedYes,
    /// 4624 from a remote `source.ip`.
    KrbRemoteSource,
    /// 4624 with NTLM instead of Kerberos.
    KrbNtlm,
    /// 4624 with logon type Interactive instead of Network.
    KrbNotNetwork,
    /// 4697 whose `SubjectLogonId` is a different session.
    KrbOtherLogonId,
    /// 4697 more than 5 minutes after the 4624.
    KrbLateService,
    /// 5145 by the machine account from the host's own IPv4 address (listed in `host.ip`).
    SmbOwnIpv4,
    /// Same from the host's own IPv6 link-local address.
    SmbOwnIpv6,
    /// Same from loopback.
    SmbLoopback,
    /// 5145 on the host by a *different* machine's account from a remote address.
    SmbOtherMachine,
}

impl LookAlike {
    pub const ALL: [LookAlike; 10] = [
        LookAlike::KrbElevatedYes,
        LookAlike::KrbRemoteSource,
        LookAlike::KrbNtlm,
        LookAlike::KrbNotNetwork,
        LookAlike::KrbOtherLogonId,
        LookAlike::KrbLateService,
        LookAlike::SmbOwnIpv4,
        LookAlike::SmbOwnIpv6,
        LookAlike::SmbLoopback,
        LookAlike::SmbOtherMachine,
    ];

    /// The attack this is a near-miss of.
    pub fn scenario(self) -> Scenario {
        match self {
            LookAlike::SmbOwnIpv4 | LookAlike::SmbOwnIpv6 | LookAlike::SmbLoopback | LookAlike::SmbOtherMachine => {
                Scenario::SmbRelay
            }
            _ => Scenario::KrbRelayUp,
        }
    }
}

/// One planted attack or look-alike, described by content (documents get their `_id` at indexing).
#[derive(Debug, Clone, PartialEq)]
pub struct Planted {
    /// `KrbRelayUp` or `SmbRelay`.
    pub scenario: Scenario,
    /// `None` for a real attack (should raise an alert); `Some` for a near-miss (must not).
    pub lookalike: Option<LookAlike>,
    /// `winlog.computer_name` of the planted events.
    pub computer_name: String,
    /// The logon id tying the events together (4624 TargetLogonId; 5145 SubjectLogonId).
    pub logon_id: String,
    /// `winlog.record_id` of each planted event, in event order (4624 then 4697 for KrbRelayUp).
    pub record_ids: Vec<String>,
    /// Index/data stream of each planted event, same order.
    pub indices: Vec<String>,
}

impl Planted {
    pub fn is_attack(&self) -> bool {
        self.lookalike.is_none()
    }
}

/// The simulator: a fixed fleet, a start time and a seeded random stream.
#[derive(Debug, Clone)]
pub struct Simulator {
    pub seed: u64,
    /// Events fall in `[start, start + window_ms)`.
    pub start: DateTime<Utc>,
    pub window_ms: i64,
    /// `hosts[0]` is the WEC collector; the others log events. `FS01` (`fs01.corp.local`) is always there.
    pub hosts: Vec<Host>,
    pub(crate) rng: Rng,
    pub(crate) next_logon: u64,
    pub(crate) next_record: u64,
    pub(crate) planted: Vec<Planted>,
    /// Whether drawing an attack or look-alike records it in [`Simulator::planted`] (true by default;
    /// a streamed simulation of millions of events turns it off unless the list is wanted).
    pub record_planted: bool,
    /// `data_stream.namespace` written into documents (`default`; [`lab::apply_namespace`] moves
    /// generated documents elsewhere, a streamed simulation writes its namespace directly).
    pub(crate) namespace: String,
}

impl Simulator {
    /// A fleet of a collector, a domain controller, a file server and six workstations in `corp.local`.
    pub fn new(seed: u64, start: DateTime<Utc>) -> Simulator {
        let mut rng = Rng::new(seed);
        let names: [(&str, &str); 9] = [
            ("WEC01", "WEC01.corp.local"),
            ("DC01", "DC01.corp.local"),
            ("FS01", "fs01.corp.local"),
            ("WS01", "WS01.corp.local"),
            ("WS02", "WS02.corp.local"),
            ("WS03", "ws03.corp.local"),
            ("WS04", "WS04.corp.local"),
            ("WS05", "WS05.corp.local"),
            ("WS06", "WS06.corp.local"),
        ];
        let hosts = names
            .iter()
            .enumerate()
            .map(|(i, (short, fqdn))| {
                let r = rng.next_u64();
                Host {
                    short: short.to_string(),
                    computer_name: fqdn.to_string(),
                    ipv4: Ipv4Addr::new(10, 0, 1, 10 + i as u8),
                    ipv6: Ipv6Addr::new(0xfe80, 0, 0, 0, (r >> 48) as u16, (r >> 32) as u16, (r >> 16) as u16, r as u16),
                    id: format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", r as u32, (r >> 32) as u16, (r >> 20) & 0xfff, (r >> 8) & 0xfff, rng.next_u64() & 0xffff_ffff_ffff),
                    agent_id: format!("{:016x}", rng.next_u64()),
                }
            })
            .collect();
        Simulator { seed, start, window_ms: 3_600_000, hosts, rng, next_logon: 0x10000, next_record: 100_000, planted: Vec::new(), record_planted: true, namespace: "default".into() }
    }

    /// Everything planted so far, in planting order.
    pub fn planted(&self) -> &[Planted] {
        &self.planted
    }

    /// Generates documents as `(index or data stream, _source)`, ordered by event time.
    ///
    /// `count` means: attacks to plant for `KrbRelayUp` (two documents each) and `SmbRelay` (one
    /// each); for `Noise` and `All`, exactly `count` documents: benign ones (every tenth slot a
    /// look-alike, cycling through all [`LookAlike`] kinds) and, for `All`, `max(1, count / 100)` attacks
    /// of each kind among them (three documents per round; none when `count` is below 3).
    /// Holds every document in memory; [`Simulator::write_hits`] streams the same documents in the same
    /// order in bounded memory.
    pub fn generate(&mut self, scenario: Scenario, count: usize) -> Vec<(String, Value)> {
        let mut units = Vec::new();
        self.draw_units(scenario, count, &mut |u| units.push(u));
        let mut out: Vec<(i64, String, Value)> = Vec::new();
        for unit in &units {
            for (part, ts) in unit.doc_times().into_iter().enumerate() {
                let (index, doc) = self.render(unit, part);
                out.push((ts, index, doc));
            }
        }
        // Stable sort keeps generation order within a millisecond (a 4624 before its 4697).
        out.sort_by_key(|(ts, _, _)| *ts);
        out.into_iter().map(|(_, index, doc)| (index, doc)).collect()
    }

    pub(crate) fn start_ms(&self) -> i64 {
        self.start.timestamp_millis()
    }

    pub(crate) fn new_logon_id(&mut self) -> String {
        format!("0x{:x}", self.new_logon_number())
    }

    pub(crate) fn new_logon_number(&mut self) -> u64 {
        self.next_logon += 1 + self.rng.below(0x3000);
        self.next_logon
    }

    pub(crate) fn new_record_id(&mut self) -> u64 {
        self.next_record += 1;
        self.next_record
    }
}

/// A bulk mix for benchmarks: `n` events of 4624/4625/4634/4672/4688/4697/5140/5145, about 1 % of
/// them planted seed-rule matches (KrbRelayUp pairs and SMB relays), each as an [`Event`] with its
/// index and a deterministic `_id` (`sim-<seed>-<n>`), ordered by time over a window of one hour per
/// 100 000 events.
pub fn benchmark_events(n: usize, seed: u64) -> Vec<Event> {
    let start = DateTime::<Utc>::from_timestamp_millis(1_735_689_600_000).unwrap_or_default(); // 2025-01-01
    let mut sim = Simulator::new(seed, start);
    sim.window_ms = 3_600_000 * (n as i64 / 100_000 + 1);
    let attacks = n / 100 / 3; // a KrbRelayUp pair + one SMB relay = 3 events per round
    let mut docs = sim.generate(Scenario::Noise, n.saturating_sub(attacks * 3));
    docs.extend(sim.generate(Scenario::KrbRelayUp, attacks));
    docs.extend(sim.generate(Scenario::SmbRelay, attacks));
    let mut timed: Vec<(i64, (String, Value))> =
        docs.into_iter().map(|d| (scenarios::timestamp_ms(&d.1).unwrap_or(0), d)).collect();
    timed.sort_by_key(|(t, _)| *t);
    timed
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(i, (_, (index, source)))| Event::new(index, format!("sim-{seed:x}-{i:08}"), source))
        .collect()
}

#[cfg(test)]
mod tests;
