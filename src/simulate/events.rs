//! Builders for single post-pipeline Windows Security documents (spec `event-shapes.md` §2–§4).
//!
//! Every builder is a pure function of its inputs (no randomness here), so a test can build the same
//! event twice with one field changed and compare the two documents. A builder writes the document's
//! compact JSON straight into a byte buffer (a simulation of millions of events spends its time here,
//! and building a `serde_json::Value` tree per event cost ~5× more); [`to_value`] parses it back for
//! callers that want a `Value`. Key order is part of the output (identical runs give identical bytes):
//! the envelope's keys, the event's `winlog` keys inside `winlog`, then the event's own top-level keys.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A simulated Windows machine (or a WEC collector).
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// NetBIOS name, upper case: `FS01`; its machine account is `FS01$`.
    pub short: String,
    /// What Windows reports as `winlog.computer_name` (FQDN, case as configured on the machine).
    pub computer_name: String,
    pub ipv4: Ipv4Addr,
    /// IPv6 link-local address; `host.ip` lists it after the IPv4 address.
    pub ipv6: Ipv6Addr,
    /// `host.id` (machine GUID).
    pub id: String,
    /// Elastic Agent / Winlogbeat id on this machine.
    pub agent_id: String,
}

impl Host {
    pub fn machine_account(&self) -> String {
        format!("{}$", self.short)
    }
    /// `host.ip` as the agent reports it: IPv4 then IPv6 link-local.
    pub fn ips(&self) -> Vec<String> {
        vec![self.ipv4.to_string(), self.ipv6.to_string()]
    }
}

/// The three ways Windows Security events reach the seed rules' index patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Elastic Agent, System integration: data stream `logs-system.security-default`.
    System,
    /// Elastic Agent reading ForwardedEvents on a WEC collector: `logs-windows.forwarded-default`;
    /// `host.*` describes the collector, `winlog.computer_name` the source machine.
    Forwarded,
    /// Winlogbeat 8.x with its ingest pipeline: index `winlogbeat-8.19.0`; `@timestamp` keeps 100-ns
    /// digits and `winlog.record_id` is a number.
    Winlogbeat,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::System, Family::Forwarded, Family::Winlogbeat];

    /// The data stream or index the document is written to.
    pub fn index(self) -> &'static str {
        match self {
            Family::System => "logs-system.security-default",
            Family::Forwarded => "logs-windows.forwarded-default",
            Family::Winlogbeat => "winlogbeat-8.19.0",
        }
    }
}

/// Where and when one event happened: everything the envelope of a document needs.
#[derive(Debug, Clone)]
pub struct Common<'a> {
    /// The machine that logged the event.
    pub host: &'a Host,
    /// The WEC collector (used for `host.*` in the forwarded family).
    pub collector: &'a Host,
    pub family: Family,
    /// Event time in epoch milliseconds.
    pub ts_ms: i64,
    /// Extra 100-ns digits (0..10_000) shown only by the Winlogbeat family; never changes the ms.
    pub sub_ms: u32,
    /// Ingest delay after the event, in ms (`event.ingested`).
    pub ingest_delay_ms: i64,
    pub record_id: u64,
    /// pid of lsass (the logging process, `winlog.process.pid`).
    pub lsass_pid: u64,
    /// `data_stream.namespace` (the agent families only).
    pub namespace: &'a str,
}

/// An account as Windows writes it into Subject*/Target* fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub name: String,
    pub domain: String,
    pub sid: String,
}

/// A compact JSON writer over a byte buffer: `k` writes a key (with the comma before it when needed),
/// the value writers write values. A comma is needed unless the last byte opened an object or array.
pub struct Json<'a>(pub &'a mut Vec<u8>);

impl Json<'_> {
    fn sep(&mut self) {
        if !matches!(self.0.last(), None | Some(b'{') | Some(b'[')) {
            self.0.push(b',');
        }
    }
    fn k(&mut self, key: &str) -> &mut Self {
        self.sep();
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
        self
    }
    fn s(&mut self, v: &str) -> &mut Self {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.0, v);
        self
    }
    /// A string value written with `format_args!`; only for text that needs no JSON escaping.
    fn plain(&mut self, v: std::fmt::Arguments) -> &mut Self {
        self.0.push(b'"');
        let _ = self.0.write_fmt(v);
        self.0.push(b'"');
        self
    }
    fn u(&mut self, v: u64) -> &mut Self {
        let _ = write!(self.0, "{v}");
        self
    }
    fn b(&mut self, v: bool) -> &mut Self {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        self
    }
    fn ks(&mut self, key: &str, v: &str) -> &mut Self {
        self.k(key).s(v)
    }
    fn strs(&mut self, items: &[&str]) -> &mut Self {
        self.0.push(b'[');
        for item in items {
            self.sep();
            self.s(item);
        }
        self.0.push(b']');
        self
    }
    fn obj(&mut self, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.0.push(b'{');
        body(self);
        self.0.push(b'}');
        self
    }
    /// `key: {…}`.
    fn ko(&mut self, key: &str, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.k(key).obj(body)
    }
}

/// Parses a builder's bytes back into a `Value` (key order kept).
pub fn to_value(write: impl FnOnce(&mut Json)) -> Value {
    let mut buf = Vec::with_capacity(2048);
    write(&mut Json(&mut buf));
    serde_json::from_slice(&buf).unwrap_or_else(|e| panic!("a simulated document is not valid JSON ({e}): {}", String::from_utf8_lossy(&buf)))
}

/// `2025-03-01T12:00:00.123Z` (`frac` 3), `…:00.123000000Z` (9) or `…:00Z` (0); with `extra`, four more
/// digits after the milliseconds (Winlogbeat's 100-ns precision).
fn put_time(buf: &mut Vec<u8>, ms: i64, frac: u8, extra: Option<u32>) {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let _ = write!(buf, "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second());
    let millis = t.nanosecond() / 1_000_000;
    match frac {
        3 => {
            let _ = write!(buf, ".{millis:03}");
        }
        9 => {
            let _ = write!(buf, ".{:09}", t.nanosecond());
        }
        _ => {}
    }
    if let Some(digits) = extra {
        let _ = write!(buf, "{:04}", digits % 10_000);
    }
    buf.push(b'Z');
}

fn time_value(j: &mut Json, ms: i64, frac: u8, extra: Option<u32>) {
    j.0.push(b'"');
    put_time(j.0, ms, frac, extra);
    j.0.push(b'"');
}

/// What the event-specific part of a document says in the envelope.
struct Head<'a> {
    code: &'a str,
    action: &'a str,
    category: &'a [&'a str],
    types: &'a [&'a str],
    outcome: &'a str,
}

/// Writes a whole document: the envelope common to every event, with `winlog` (the event's keys inside
/// the envelope's `winlog` object, after its own) and `tail` (the event's top-level keys, after `event`).
fn document(out: &mut Json, c: &Common, h: Head, winlog: impl FnOnce(&mut Json), tail: impl FnOnce(&mut Json)) {
    let meta_host = if c.family == Family::Forwarded { c.collector } else { c.host };
    let keyword = if h.outcome == "success" { "Audit Success" } else { "Audit Failure" };
    let winlogbeat = c.family == Family::Winlogbeat;
    let ingested_ms = c.ts_ms + c.ingest_delay_ms;
    let agent_id = &meta_host.agent_id;
    let agent_name = meta_host.short.to_lowercase();
    out.obj(|j| {
        j.k("@timestamp");
        time_value(j, c.ts_ms, 3, winlogbeat.then_some(c.sub_ms));
        j.ko("ecs", |j| {
            j.ks("version", "8.17.0");
        });
        j.ko("host", |j| {
            let o = meta_host.ipv4.octets();
            j.ks("name", &meta_host.computer_name.to_lowercase()).ks("hostname", &agent_name).ks("id", &meta_host.id);
            j.k("ip").0.push(b'[');
            j.plain(format_args!("{}", meta_host.ipv4)).0.push(b',');
            j.plain(format_args!("{}", meta_host.ipv6)).0.push(b']');
            j.k("mac").0.push(b'[');
            j.plain(format_args!("00-50-56-{:02X}-{:02X}-{:02X}", o[1], o[2], o[3])).0.push(b']');
            j.ks("architecture", "x86_64");
            j.ko("os", |j| {
                j.ks("type", "windows").ks("family", "windows").ks("platform", "windows");
                j.ks("name", "Windows Server 2022 Datacenter").ks("kernel", "10.0.20348.2849 (WinBuild.160101.0800)");
                j.ks("version", "10.0").ks("build", "20348.2849");
            });
        });
        j.ko("log", |j| {
            j.ks("level", "information");
        });
        j.ko("winlog", |j| {
            j.ks("channel", "Security").ks("computer_name", &c.host.computer_name).ks("event_id", h.code);
            j.k("keywords").strs(&[keyword]);
            j.ks("opcode", "Info").ks("outcome", h.outcome);
            j.ko("process", |j| {
                j.k("pid").u(c.lsass_pid);
                j.ko("thread", |j| {
                    j.k("id").u(700 + c.record_id % 97);
                });
            });
            j.ks("provider_guid", "{54849625-5478-4994-a5ba-3e3b0328c30d}");
            j.ks("provider_name", "Microsoft-Windows-Security-Auditing");
            j.k("record_id");
            if winlogbeat {
                j.u(c.record_id);
            } else {
                j.plain(format_args!("{}", c.record_id));
            }
            j.k("time_created");
            time_value(j, c.ts_ms, 3, Some(c.sub_ms));
            winlog(j);
        });
        let agent = |j: &mut Json, kind: &str| {
            j.ko("agent", |j| {
                j.ks("id", agent_id).ks("name", &agent_name).ks("type", kind).ks("version", "8.19.0");
                j.k("ephemeral_id").plain(format_args!("{agent_id}-e"));
            });
        };
        let dataset = match c.family {
            Family::System => "system.security",
            Family::Forwarded => "windows.forwarded",
            Family::Winlogbeat => "",
        };
        if winlogbeat {
            agent(j, "winlogbeat");
        } else {
            j.ko("data_stream", |j| {
                j.ks("type", "logs").ks("dataset", dataset).ks("namespace", c.namespace);
            });
            agent(j, "filebeat");
            j.ko("elastic_agent", |j| {
                j.ks("id", agent_id).k("snapshot").b(false);
                j.ks("version", "8.19.0");
            });
            j.ko("input", |j| {
                j.ks("type", "winlog");
            });
        }
        j.ko("event", |j| {
            j.ks("action", h.action).k("category").strs(h.category);
            j.ks("code", h.code).ks("kind", "event").ks("outcome", h.outcome);
            j.ks("provider", "Microsoft-Windows-Security-Auditing").k("type").strs(h.types);
            // event.ingested precision varies by path (event-shapes §2): nanoseconds or whole seconds.
            j.k("ingested");
            time_value(j, ingested_ms, if c.record_id.is_multiple_of(3) { 0 } else { 9 }, None);
            j.k("created");
            time_value(j, ingested_ms - 5, 3, None);
            if winlogbeat {
                j.ks("module", "security");
            } else {
                j.ks("dataset", dataset).ks("module", dataset.split('.').next().unwrap_or_default());
                j.ks("agent_id_status", "verified");
            }
        });
        tail(j);
    });
}

fn logon_type_name(t: u8) -> &'static str {
    match t {
        2 => "Interactive",
        3 => "Network",
        4 => "Batch",
        5 => "Service",
        7 => "Unlock",
        8 => "NetworkCleartext",
        9 => "NewCredentials",
        10 => "RemoteInteractive",
        11 => "CachedInteractive",
        _ => "Unknown",
    }
}

/// `user: {name, domain, id}`.
fn user_object(j: &mut Json, a: &Account) {
    j.ko("user", |j| {
        j.ks("name", &a.name).ks("domain", &a.domain).ks("id", &a.sid);
    });
}

/// `related: {user: [name]}`, with `ip: [ip]` when given.
fn related(j: &mut Json, user: &str, ip: Option<&str>) {
    j.ko("related", |j| {
        j.k("user").strs(&[user]);
        if let Some(ip) = ip {
            j.k("ip").strs(&[ip]);
        }
    });
}

/// The four `Subject*` insertion strings.
fn subject_fields(j: &mut Json, a: &Account, logon_id: &str) {
    j.ks("SubjectDomainName", &a.domain).ks("SubjectLogonId", logon_id).ks("SubjectUserName", &a.name).ks("SubjectUserSid", &a.sid);
}

/// 4624 version 2 ("An account was successfully logged on").
#[derive(Debug, Clone, PartialEq)]
pub struct Logon {
    pub target: Account,
    /// `0x…` lower-case, the id of the new logon session.
    pub target_logon_id: String,
    pub logon_type: u8,
    /// `Kerberos`, `NTLM`, `Negotiate`.
    pub auth_package: String,
    /// Raw insertion string: `%%1842` (Yes) or `%%1843` (No).
    pub elevated_token: String,
    /// `None` when Windows logged `IpAddress` `-` (then `source.*` is absent).
    pub source_ip: Option<String>,
    pub source_port: u16,
    /// `process.pid` (from `ProcessId`); 0 for network logons.
    pub pid: u64,
    pub process_name: String,
    pub workstation: Option<String>,
}

pub fn write_4624(out: &mut Json, c: &Common, l: &Logon) {
    let (logon_process, lm) = match l.auth_package.as_str() {
        "NTLM" => ("NtLmSsp ", "NTLM V2"),
        "Kerberos" => ("Kerberos", "-"),
        _ => ("Advapi  ", "-"),
    };
    let head = Head { code: "4624", action: "logged-in", category: &["authentication"], types: &["start"], outcome: "success" };
    let winlog = |j: &mut Json| {
        j.ko("logon", |j| {
            j.ks("id", "0x0").ks("type", logon_type_name(l.logon_type));
        });
        j.k("version").u(2);
        j.ko("event_data", |j| {
            j.ks("AuthenticationPackageName", &l.auth_package).ks("ElevatedToken", &l.elevated_token);
            j.ks("ImpersonationLevel", "%%1833").ks("KeyLength", "0").ks("LmPackageName", lm);
            j.ks("LogonGuid", "{00000000-0000-0000-0000-000000000000}").ks("LogonProcessName", logon_process);
            j.k("LogonType").plain(format_args!("{}", l.logon_type));
            j.ks("RestrictedAdminMode", "-").ks("TargetOutboundDomainName", "-");
            j.ks("TargetOutboundUserName", "-").ks("VirtualAccount", "%%1843");
            j.ks("SubjectDomainName", "-").ks("SubjectLogonId", "0x0").ks("SubjectUserName", "-").ks("SubjectUserSid", "S-1-0-0");
            j.ks("TargetDomainName", &l.target.domain).ks("TargetLinkedLogonId", "0x0").ks("TargetLogonId", &l.target_logon_id);
            j.ks("TargetUserName", &l.target.name).ks("TargetUserSid", &l.target.sid).ks("TransmittedServices", "-");
            if l.source_ip.is_none() {
                // The pipeline keeps the "-" values it could not copy (event-shapes §2).
                j.ks("IpAddress", "-").ks("IpPort", "-");
            }
        });
    };
    let tail = |j: &mut Json| {
        j.ko("process", |j| {
            j.k("pid").u(l.pid);
            j.ks("executable", &l.process_name).ks("name", l.process_name.rsplit('\\').next().unwrap_or("-"));
        });
        related(j, &l.target.name, l.source_ip.as_deref());
        user_object(j, &l.target);
        if l.source_ip.is_some() || l.workstation.is_some() {
            j.ko("source", |j| {
                if let Some(ip) = &l.source_ip {
                    j.ks("ip", ip).k("port").u(u64::from(l.source_port));
                }
                if let Some(w) = &l.workstation {
                    j.ks("domain", w);
                }
            });
        }
    };
    document(out, c, head, winlog, tail);
}

pub fn logon_4624(c: &Common, l: &Logon) -> Value {
    to_value(|j| write_4624(j, c, l))
}

/// 4625 ("An account failed to log on").
pub fn write_4625(out: &mut Json, c: &Common, target: &Account, logon_type: u8, auth_package: &str, source_ip: &str, status: &str) {
    let head = Head { code: "4625", action: "logon-failed", category: &["authentication"], types: &["start"], outcome: "failure" };
    let winlog = |j: &mut Json| {
        j.ko("logon", |j| {
            j.ks("id", "0x0").ks("type", logon_type_name(logon_type));
            j.ko("failure", |j| {
                j.ks("status", status);
            });
        });
        j.k("version").u(0);
        j.ko("event_data", |j| {
            j.ks("AuthenticationPackageName", auth_package).ks("FailureReason", "%%2313");
            j.k("LogonType").plain(format_args!("{logon_type}"));
            j.ks("Status", status).ks("SubStatus", "0xc000006a").ks("SubjectLogonId", "0x0").ks("SubjectUserSid", "S-1-0-0");
            j.ks("TargetDomainName", &target.domain).ks("TargetUserName", &target.name).ks("TargetUserSid", "S-1-0-0");
        });
    };
    let tail = |j: &mut Json| {
        j.ko("source", |j| {
            j.ks("ip", source_ip).k("port").u(0);
        });
        related(j, &target.name, Some(source_ip));
        j.ko("user", |j| {
            j.ks("name", &target.name).ks("domain", &target.domain);
        });
    };
    document(out, c, head, winlog, tail);
}

pub fn failed_logon_4625(c: &Common, target: &Account, logon_type: u8, auth_package: &str, source_ip: &str, status: &str) -> Value {
    to_value(|j| write_4625(j, c, target, logon_type, auth_package, source_ip, status))
}

/// 4634 ("An account was logged off"); `winlog.logon.id` is the TargetLogonId here.
pub fn write_4634(out: &mut Json, c: &Common, target: &Account, logon_type: u8, target_logon_id: &str) {
    let head = Head { code: "4634", action: "logged-out", category: &["authentication"], types: &["end"], outcome: "success" };
    let winlog = |j: &mut Json| {
        j.ko("logon", |j| {
            j.ks("id", target_logon_id).ks("type", logon_type_name(logon_type));
        });
        j.ko("event_data", |j| {
            j.k("LogonType").plain(format_args!("{logon_type}"));
            j.ks("TargetDomainName", &target.domain).ks("TargetLogonId", target_logon_id);
            j.ks("TargetUserName", &target.name).ks("TargetUserSid", &target.sid);
        });
    };
    let tail = |j: &mut Json| {
        related(j, &target.name, None);
        user_object(j, target);
    };
    document(out, c, head, winlog, tail);
}

pub fn logoff_4634(c: &Common, target: &Account, logon_type: u8, target_logon_id: &str) -> Value {
    to_value(|j| write_4634(j, c, target, logon_type, target_logon_id))
}

/// 4672 ("Special privileges assigned to new logon").
pub fn write_4672(out: &mut Json, c: &Common, subject: &Account, logon_id: &str) {
    let head = Head { code: "4672", action: "logged-in-special", category: &["iam"], types: &["admin"], outcome: "success" };
    let winlog = |j: &mut Json| {
        j.ko("logon", |j| {
            j.ks("id", logon_id);
        });
        j.ko("event_data", |j| {
            j.k("PrivilegeList").strs(&["SeSecurityPrivilege", "SeBackupPrivilege", "SeRestorePrivilege", "SeDebugPrivilege", "SeImpersonatePrivilege"]);
            subject_fields(j, subject, logon_id);
        });
    };
    let tail = |j: &mut Json| {
        related(j, &subject.name, None);
        user_object(j, subject);
    };
    document(out, c, head, winlog, tail);
}

pub fn special_logon_4672(c: &Common, subject: &Account, logon_id: &str) -> Value {
    to_value(|j| write_4672(j, c, subject, logon_id))
}

/// 4688 ("A new process has been created").
#[allow(clippy::too_many_arguments)] // one plain argument per field of the event
pub fn write_4688(out: &mut Json, c: &Common, subject: &Account, logon_id: &str, pid: u64, exe: &str, parent_pid: u64, parent_exe: &str, args: &str) {
    let head = Head { code: "4688", action: "created-process", category: &["process"], types: &["start"], outcome: "success" };
    let winlog = |j: &mut Json| {
        j.ko("logon", |j| {
            j.ks("id", logon_id);
        });
        j.ko("event_data", |j| {
            j.k("NewProcessId").plain(format_args!("0x{pid:x}"));
            j.ks("NewProcessName", exe).ks("ParentProcessName", parent_exe);
            j.k("ProcessId").plain(format_args!("0x{parent_pid:x}"));
            subject_fields(j, subject, logon_id);
            j.ks("TokenElevationType", "%%1936").ks("MandatoryLabel", "S-1-16-12288");
        });
    };
    let tail = |j: &mut Json| {
        j.ko("process", |j| {
            j.k("pid").u(pid);
            j.ks("executable", exe).ks("name", exe.rsplit('\\').next().unwrap_or(exe));
            j.ks("command_line", format!("\"{exe}\" {args}").trim_end());
            j.ko("parent", |j| {
                j.k("pid").u(parent_pid);
                j.ks("executable", parent_exe).ks("name", parent_exe.rsplit('\\').next().unwrap_or(parent_exe));
            });
        });
        related(j, &subject.name, None);
        user_object(j, subject);
    };
    document(out, c, head, winlog, tail);
}

#[allow(clippy::too_many_arguments)] // one plain argument per field of the event
pub fn process_4688(c: &Common, subject: &Account, logon_id: &str, pid: u64, exe: &str, parent_pid: u64, parent_exe: &str, args: &str) -> Value {
    to_value(|j| write_4688(j, c, subject, logon_id, pid, exe, parent_pid, parent_exe, args))
}

/// 4697 ("A service was installed in the system"); `SubjectLogonId` is rule 1's stage-B key.
pub fn write_4697(out: &mut Json, c: &Common, subject: &Account, subject_logon_id: &str, service_name: &str, service_file: &str) {
    let head = Head {
        code: "4697",
        action: "service-installed",
        category: &["iam", "configuration"],
        types: &["admin", "change"],
        outcome: "success",
    };
    let winlog = |j: &mut Json| {
        j.ko("logon", |j| {
            j.ks("id", subject_logon_id);
        });
        j.ko("event_data", |j| {
            j.ks("ServiceAccount", "LocalSystem").ks("ServiceFileName", service_file).ks("ServiceName", service_name);
            j.ks("ServiceStartType", "3").ks("ServiceType", "0x10");
            subject_fields(j, subject, subject_logon_id);
        });
    };
    let tail = |j: &mut Json| {
        related(j, &subject.name, None);
        j.ko("service", |j| {
            j.ks("name", service_name).ks("type", "Win32 Own Process");
        });
        user_object(j, subject);
    };
    document(out, c, head, winlog, tail);
}

pub fn service_4697(c: &Common, subject: &Account, subject_logon_id: &str, service_name: &str, service_file: &str) -> Value {
    to_value(|j| write_4697(j, c, subject, subject_logon_id, service_name, service_file))
}

/// A file-share access: 5140 ("A network share object was accessed") or 5145 (detailed, "checked").
#[derive(Debug, Clone, PartialEq)]
pub struct ShareAccess {
    pub subject: Account,
    pub logon_id: String,
    pub source_ip: String,
    pub source_port: u16,
    /// `\\*\IPC$` style.
    pub share: String,
    /// 5145 only: pipe or path below the share.
    pub relative_target: String,
}

/// 5140, or with `detailed` 5145.
pub fn write_share(out: &mut Json, c: &Common, s: &ShareAccess, detailed: bool) {
    let head = Head {
        code: if detailed { "5145" } else { "5140" },
        action: if detailed { "network-share-object-access-checked" } else { "network-share-object-accessed" },
        category: &["network", "file"],
        types: &["info", "access"],
        outcome: "success",
    };
    let winlog = |j: &mut Json| {
        j.ko("logon", |j| {
            j.ks("id", &s.logon_id);
        });
        j.ko("event_data", |j| {
            j.k("AccessList").strs(&["1538", "1541", "4416"]);
            j.k("AccessListDescription").strs(&["READ_CONTROL", "SYNCHRONIZE", "ReadData (or ListDirectory)"]);
            j.k("AccessMask").strs(&["0x120089"]);
            j.ks("ObjectType", "File").ks("ShareLocalPath", "").ks("ShareName", &s.share);
            subject_fields(j, &s.subject, &s.logon_id);
            if detailed {
                j.ks("RelativeTargetName", &s.relative_target);
            }
        });
    };
    let tail = |j: &mut Json| {
        related(j, &s.subject.name, Some(&s.source_ip));
        j.ko("source", |j| {
            j.ks("ip", &s.source_ip).k("port").u(u64::from(s.source_port));
        });
        user_object(j, &s.subject);
    };
    document(out, c, head, winlog, tail);
}

pub fn share_5140(c: &Common, s: &ShareAccess) -> Value {
    to_value(|j| write_share(j, c, s, false))
}

pub fn share_5145(c: &Common, s: &ShareAccess) -> Value {
    to_value(|j| write_share(j, c, s, true))
}
