//! Attack cases, their look-alikes and background noise.
//!
//! An attack is first drawn as a *case* (all random choices made up front), then rendered by a pure
//! function with an optional [`LookAlike`] variant: rendering the same case with and without a
//! variant gives documents that differ only in the variant's field(s).

use super::events::{self, to_value, Account, Common, Family, Host, Json, Logon, ShareAccess};
use super::{LookAlike, Planted, Scenario, Simulator};
use super::stream::Unit;
use serde_json::Value;

const DOMAIN: &str = "CORP";
const USERS: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "svc_backup", "adm_grace"];

fn user(name: &str) -> Account {
    let rid = 1100 + name.bytes().map(u32::from).sum::<u32>();
    Account { name: name.to_string(), domain: DOMAIN.into(), sid: format!("S-1-5-21-1004336348-1177238915-682003330-{rid}") }
}

fn machine(host: &Host) -> Account {
    let rid = 2000 + host.short.bytes().map(u32::from).sum::<u32>();
    Account { name: host.machine_account(), domain: DOMAIN.into(), sid: format!("S-1-5-21-1004336348-1177238915-682003330-{rid}") }
}

fn system() -> Account {
    Account { name: "SYSTEM".into(), domain: "NT AUTHORITY".into(), sid: "S-1-5-18".into() }
}

/// The event time in epoch ms of a generated document (`@timestamp`, 100-ns digits ignored).
pub fn timestamp_ms(doc: &Value) -> Option<i64> {
    let ts = doc.get("@timestamp")?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(ts).ok().map(|t| t.timestamp_millis())
}

/// All random choices of one KrbRelayUp attack (or look-alike).
#[derive(Debug, Clone, PartialEq)]
pub struct KrbCase {
    /// Index into `Simulator::hosts` (never the collector).
    pub host: usize,
    pub family: Family,
    pub logon_ms: i64,
    /// 4697 time minus 4624 time (1 s – 4 min for an attack).
    pub delay_ms: i64,
    pub target: Account,
    pub logon_id: String,
    /// Used by [`LookAlike::KrbOtherLogonId`].
    pub other_logon_id: String,
    pub remote_ip: String,
    pub port: u16,
    pub service_name: String,
    pub records: [u64; 2],
    pub sub_ms: [u32; 2],
    pub ingest_delay_ms: [i64; 2],
}

/// All random choices of one SMB relay attack (or look-alike).
#[derive(Debug, Clone, PartialEq)]
pub struct SmbCase {
    pub host: usize,
    pub family: Family,
    pub ts_ms: i64,
    /// The attacker's (relay's) address: not any host's, not loopback.
    pub remote_ip: String,
    pub port: u16,
    pub logon_id: String,
    /// Another machine, for [`LookAlike::SmbOtherMachine`].
    pub other_host: usize,
    pub share: String,
    pub relative_target: String,
    pub record: u64,
    pub sub_ms: u32,
    pub ingest_delay_ms: i64,
}

/// All random choices of one ordinary (benign) event; numbers only, so drawing one allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrdinaryCase {
    pub host: usize,
    pub family: Family,
    pub ts: i64,
    pub sub_ms: u32,
    pub ingest: i64,
    pub record: u64,
    pub name: &'static str,
    pub logon_id: u64,
    /// The client machine (never `host`).
    pub client: usize,
    pub port: u16,
    /// 0..100: which kind of event (see `write_ordinary`).
    pub roll: u64,
    /// `ElevatedToken` `%%1842` (yes) rather than `%%1843`.
    pub elevated: bool,
    pub pid: u64,
}

impl Simulator {
    fn common(&self, host: usize, family: Family, ts_ms: i64, sub_ms: u32, ingest_delay_ms: i64, record_id: u64) -> Common<'_> {
        Common {
            host: &self.hosts[host],
            collector: &self.hosts[0],
            family,
            ts_ms,
            sub_ms,
            ingest_delay_ms,
            record_id,
            lsass_pid: 600 + (host as u64) * 4,
            namespace: &self.namespace,
        }
    }

    fn event_host(&mut self) -> usize {
        1 + self.rng.below(self.hosts.len() as u64 - 1) as usize
    }

    fn family(&mut self) -> Family {
        *self.rng.pick(&Family::ALL)
    }

    fn remote_attacker_ip(&mut self) -> String {
        format!("10.0.{}.{}", 50 + self.rng.below(50), 2 + self.rng.below(250))
    }

    /// Draws a KrbRelayUp case; `late` pushes the service install past the 5-minute span.
    pub fn krb_case(&mut self, late: bool) -> KrbCase {
        let host = self.event_host();
        let family = self.family();
        let delay_ms = if late { self.rng.range(300_001, 600_000) } else { self.rng.range(1_000, 240_000) };
        let logon_ms = self.start_ms() + self.rng.range(0, (self.window_ms - delay_ms - 1).max(0));
        let name = *self.rng.pick(&USERS);
        let target = user(name);
        KrbCase {
            host,
            family,
            logon_ms,
            delay_ms,
            target,
            logon_id: self.new_logon_id(),
            other_logon_id: self.new_logon_id(),
            remote_ip: self.remote_attacker_ip(),
            port: self.rng.range(49152, 65535) as u16,
            service_name: format!("KrbSCM{:04X}", self.rng.below(0x10000)),
            records: [self.new_record_id(), self.new_record_id()],
            sub_ms: [self.rng.below(10_000) as u32, self.rng.below(10_000) as u32],
            ingest_delay_ms: [self.rng.range(300, 9_000), self.rng.range(300, 9_000)],
        }
    }

    /// Renders a KrbRelayUp case: the 4624 and the 4697, with an optional near-miss variant.
    pub fn krb_docs(&self, case: &KrbCase, variant: Option<LookAlike>) -> [(String, Value); 2] {
        let index = case.family.index().to_string();
        [0, 1].map(|part| (index.clone(), to_value(|j| self.write_krb(case, variant, part, j))))
    }

    /// Writes document `part` of a KrbRelayUp case: 0 the 4624, 1 the 4697.
    fn write_krb(&self, case: &KrbCase, variant: Option<LookAlike>, part: usize, j: &mut Json) {
        let v = |l: LookAlike| variant == Some(l);
        let c = self.common(case.host, case.family, case.logon_ms + [0, case.delay_ms][part], case.sub_ms[part], case.ingest_delay_ms[part], case.records[part]);
        if part == 0 {
            let logon = Logon {
                target: case.target.clone(),
                target_logon_id: case.logon_id.clone(),
                logon_type: if v(LookAlike::KrbNotNetwork) { 2 } else { 3 },
                auth_package: if v(LookAlike::KrbNtlm) { "NTLM" } else { "Kerberos" }.into(),
                elevated_token: if v(LookAlike::KrbElevatedYes) { "%%1842" } else { "%%1843" }.into(),
                source_ip: Some(if v(LookAlike::KrbRemoteSource) { case.remote_ip.clone() } else { "127.0.0.1".into() }),
                source_port: case.port,
                pid: 0,
                process_name: "-".into(),
                workstation: None,
            };
            events::write_4624(j, &c, &logon);
        } else {
            let subject_id = if v(LookAlike::KrbOtherLogonId) { &case.other_logon_id } else { &case.logon_id };
            events::write_4697(j, &c, &case.target, subject_id, &case.service_name, "C:\\Windows\\Temp\\KrbSCM.exe");
        }
    }

    /// Draws an SMB relay case. `local_only` keeps it out of the forwarded family, whose `host.ip` is
    /// the collector's (needed for the own-address look-alikes to be excluded by the rule).
    pub fn smb_case(&mut self, local_only: bool) -> SmbCase {
        // The planted target is the file server FS01 most of the time, any machine otherwise.
        let host = if self.rng.chance(70) { 2 } else { self.event_host() };
        let family = if local_only { *self.rng.pick(&[Family::System, Family::Winlogbeat]) } else { self.family() };
        let mut other_host = self.event_host();
        if other_host == host {
            other_host = if host == 1 { 2 } else { 1 };
        }
        let (share, relative_target) = *self.rng.pick(&[
            ("\\\\*\\IPC$", "spoolss"),
            ("\\\\*\\IPC$", "svcctl"),
            ("\\\\*\\IPC$", "lsarpc"),
            ("\\\\*\\ADMIN$", "\\"),
        ]);
        SmbCase {
            host,
            family,
            ts_ms: self.start_ms() + self.rng.range(0, self.window_ms - 1),
            remote_ip: self.remote_attacker_ip(),
            port: self.rng.range(49152, 65535) as u16,
            logon_id: self.new_logon_id(),
            other_host,
            share: share.into(),
            relative_target: relative_target.into(),
            record: self.new_record_id(),
            sub_ms: self.rng.below(10_000) as u32,
            ingest_delay_ms: self.rng.range(300, 9_000),
        }
    }

    /// Renders an SMB relay case (one 5145), with an optional near-miss variant.
    pub fn smb_doc(&self, case: &SmbCase, variant: Option<LookAlike>) -> (String, Value) {
        (case.family.index().to_string(), to_value(|j| self.write_smb(case, variant, j)))
    }

    fn write_smb(&self, case: &SmbCase, variant: Option<LookAlike>, j: &mut Json) {
        let host = &self.hosts[case.host];
        let subject = if variant == Some(LookAlike::SmbOtherMachine) { machine(&self.hosts[case.other_host]) } else { machine(host) };
        let source_ip = match variant {
            Some(LookAlike::SmbOwnIpv4) => host.ipv4.to_string(),
            Some(LookAlike::SmbOwnIpv6) => host.ipv6.to_string(),
            Some(LookAlike::SmbLoopback) => "127.0.0.1".into(),
            _ => case.remote_ip.clone(),
        };
        let access = ShareAccess {
            subject,
            logon_id: case.logon_id.clone(),
            source_ip,
            source_port: case.port,
            share: case.share.clone(),
            relative_target: case.relative_target.clone(),
        };
        let c = self.common(case.host, case.family, case.ts_ms, case.sub_ms, case.ingest_delay_ms, case.record);
        events::write_share(j, &c, &access, true);
    }

    /// Draws a KrbRelayUp attack (`variant` `None`) or look-alike and records it as planted.
    pub(crate) fn draw_krb(&mut self, variant: Option<LookAlike>) -> Unit {
        let case = self.krb_case(variant == Some(LookAlike::KrbLateService));
        if self.record_planted {
            let index = case.family.index().to_string();
            self.planted.push(Planted {
                scenario: Scenario::KrbRelayUp,
                lookalike: variant,
                computer_name: self.hosts[case.host].computer_name.clone(),
                logon_id: case.logon_id.clone(),
                record_ids: case.records.iter().map(u64::to_string).collect(),
                indices: vec![index.clone(), index],
            });
        }
        Unit::Krb(Box::new(case), variant)
    }

    /// Draws an SMB relay attack (`variant` `None`) or look-alike and records it as planted.
    pub(crate) fn draw_smb(&mut self, variant: Option<LookAlike>) -> Unit {
        let local_only = matches!(variant, Some(LookAlike::SmbOwnIpv4 | LookAlike::SmbOwnIpv6));
        let case = self.smb_case(local_only);
        if self.record_planted {
            self.planted.push(Planted {
                scenario: Scenario::SmbRelay,
                lookalike: variant,
                computer_name: self.hosts[case.host].computer_name.clone(),
                logon_id: case.logon_id.clone(),
                record_ids: vec![case.record.to_string()],
                indices: vec![case.family.index().to_string()],
            });
        }
        Unit::Smb(Box::new(case), variant)
    }

    /// Draws every unit of `scenario` with `count` (see [`Simulator::generate`]) in generation order and
    /// hands each to `emit`. This is the only place that decides what a run consists of; rendering is
    /// separate, so a run can be replayed cheaply from a clone of the simulator.
    pub(crate) fn draw_units(&mut self, scenario: Scenario, count: usize, emit: &mut dyn FnMut(Unit)) {
        match scenario {
            Scenario::KrbRelayUp => (0..count).for_each(|_| emit(self.draw_krb(None))),
            Scenario::SmbRelay => (0..count).for_each(|_| emit(self.draw_smb(None))),
            Scenario::Noise => self.noise(count, emit),
            Scenario::All => {
                let rounds = if count >= 3 { (count / 100).max(1) } else { 0 };
                self.noise(count - 3 * rounds, emit);
                for _ in 0..rounds {
                    emit(self.draw_krb(None));
                    emit(self.draw_smb(None));
                }
            }
        }
    }

    /// Exactly `docs` benign documents: ordinary events, and every tenth slot a look-alike (cycling
    /// through all [`LookAlike`] kinds) when the documents it needs still fit.
    fn noise(&mut self, docs: usize, emit: &mut dyn FnMut(Unit)) {
        let mut made = 0usize;
        let mut slot = 0usize;
        while made < docs {
            let left = docs - made;
            let unit = if slot % 10 == 9 {
                let kind = LookAlike::ALL[(slot / 10) % LookAlike::ALL.len()];
                match kind.scenario() {
                    Scenario::SmbRelay => self.draw_smb(Some(kind)),
                    _ if left >= 2 => self.draw_krb(Some(kind)), // a 4624 and its 4697
                    _ => Unit::Ordinary(self.ordinary_case()),
                }
            } else {
                Unit::Ordinary(self.ordinary_case())
            };
            made += unit.doc_count();
            emit(unit);
            slot += 1;
        }
    }

    /// Renders document `part` (0, or 1 for a KrbRelayUp's 4697) of a unit as `(index, _source)`.
    pub(crate) fn render(&self, unit: &Unit, part: usize) -> (String, Value) {
        let mut index = "";
        let doc = to_value(|j| index = self.render_json(unit, part, j.0));
        (index.to_string(), doc)
    }

    /// Writes document `part` of a unit as compact JSON into `out`; returns its index (before any namespace).
    pub(crate) fn render_json(&self, unit: &Unit, part: usize, out: &mut Vec<u8>) -> &'static str {
        let j = &mut Json(out);
        match unit {
            Unit::Ordinary(case) => {
                self.write_ordinary(case, j);
                case.family.index()
            }
            Unit::Krb(case, variant) => {
                self.write_krb(case, *variant, part, j);
                case.family.index()
            }
            Unit::Smb(case, variant) => {
                self.write_smb(case, *variant, j);
                case.family.index()
            }
        }
    }

    /// Draws one ordinary event that can match neither seed rule (all random choices, nothing rendered).
    fn ordinary_case(&mut self) -> OrdinaryCase {
        let host = self.event_host();
        let family = self.family();
        let ts = self.start_ms() + self.rng.range(0, self.window_ms - 1);
        let sub_ms = self.rng.below(10_000) as u32;
        let ingest = self.rng.range(300, 20_000);
        let record = self.new_record_id();
        let name = *self.rng.pick(&USERS);
        let logon_id = self.new_logon_number();
        // A client machine other than the logging one.
        let mut client = self.event_host();
        if client == host {
            client = if host == 1 { 3 } else { 1 };
        }
        let port = self.rng.range(49152, 65535) as u16;
        let roll = self.rng.below(100);
        let elevated = self.rng.chance(50);
        let pid = 0x1000 + self.rng.below(0x8000);
        OrdinaryCase { host, family, ts, sub_ms, ingest, record, name, logon_id, client, port, roll, elevated, pid }
    }

    /// Writes an ordinary event: which kind it is follows from `roll`.
    fn write_ordinary(&self, o: &OrdinaryCase, j: &mut Json) {
        let OrdinaryCase { host, family, ts, sub_ms, ingest, record, name, logon_id, client, port, roll, elevated, pid } = *o;
        let who = user(name);
        let logon_id = format!("0x{logon_id:x}");
        let client_ip = self.hosts[client].ipv4.to_string();
        let elevated = if elevated { "%%1842" } else { "%%1843" }.to_string();
        let c = self.common(host, family, ts, sub_ms, ingest, record);
        match roll {
            // Remote network logons (Kerberos or NTLM) from a client machine.
            0..=24 => events::write_4624(j, &c, &Logon {
                target: who, target_logon_id: logon_id, logon_type: 3,
                auth_package: if roll.is_multiple_of(2) { "Kerberos" } else { "NTLM" }.into(), elevated_token: elevated,
                source_ip: Some(client_ip), source_port: port, pid: 0, process_name: "-".into(), workstation: None,
            }),
            // Interactive logons: loopback source, winlogon's pid, Negotiate.
            25..=32 => events::write_4624(j, &c, &Logon {
                target: who, target_logon_id: logon_id, logon_type: 2, auth_package: "Negotiate".into(),
                elevated_token: elevated, source_ip: Some("127.0.0.1".into()), source_port: 0, pid: 0x2a4,
                process_name: "C:\\Windows\\System32\\svchost.exe".into(), workstation: Some(self.hosts[host].short.clone()),
            }),
            // Service logons: no source address (IpAddress "-").
            33..=37 => events::write_4624(j, &c, &Logon {
                target: system(), target_logon_id: logon_id, logon_type: 5, auth_package: "Negotiate".into(),
                elevated_token: "%%1842".into(), source_ip: None, source_port: 0, pid: 0x2b0,
                process_name: "C:\\Windows\\System32\\services.exe".into(), workstation: None,
            }),
            38..=44 => events::write_4625(j, &c, &who, 3, "NTLM", &client_ip, "0xc000006d"),
            45..=54 => events::write_4634(j, &c, &who, 3, &logon_id),
            55..=61 => events::write_4672(j, &c, &who, &logon_id),
            62..=76 => {
                let (exe, args) = match roll % 4 {
                    0 => ("C:\\Windows\\System32\\cmd.exe", "/c whoami"),
                    1 => ("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "-NoProfile"),
                    2 => ("C:\\Windows\\System32\\conhost.exe", "0xffffffff -ForceV1"),
                    _ => ("C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE", ""),
                };
                events::write_4688(j, &c, &who, &logon_id, pid, exe, 0x1a0c, "C:\\Windows\\explorer.exe", args)
            }
            // Services installed by some other (non-loopback) session, or by SYSTEM (0x3e7).
            77..=80 => {
                let subject_id = if roll.is_multiple_of(2) { "0x3e7".to_string() } else { logon_id };
                events::write_4697(j, &c, &who, &subject_id, "UpdaterSvc", "C:\\Program Files\\Updater\\updater.exe")
            }
            81..=87 => events::write_share(j, &c, &ShareAccess {
                subject: who, logon_id, source_ip: client_ip, source_port: port,
                share: "\\\\*\\Documents".into(), relative_target: String::new(),
            }, false),
            88..=94 => events::write_share(j, &c, &ShareAccess {
                subject: who, logon_id, source_ip: client_ip, source_port: port,
                share: "\\\\*\\Documents".into(), relative_target: "\\reports\\Q1\\summary.docx".into(),
            }, true),
            // A client's machine account reading SYSVOL/IPC$ on another machine (GPO refresh).
            _ => events::write_share(j, &c, &ShareAccess {
                subject: machine(&self.hosts[client]), logon_id, source_ip: client_ip, source_port: port,
                share: "\\\\*\\SYSVOL".into(), relative_target: "corp.local\\Policies".into(),
            }, true),
        }
    }
}
