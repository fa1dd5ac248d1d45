//! Builders for single post-pipeline Windows Security documents (spec `event-shapes.md` §2–§4).
//!
//! Every builder is a pure function of its inputs (no randomness here), so a test can build the same
//! event twice with one field changed and compare the two documents.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
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
}

/// An account as Windows writes it into Subject*/Target* fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub name: String,
    pub domain: String,
    pub sid: String,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

fn ms_string(ms: i64) -> String {
    time(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The common part of every document; `event`/`winlog` get completed by the per-event builders.
fn envelope(c: &Common, code: &str, action: &str, category: &[&str], types: &[&str], outcome: &str) -> Map<String, Value> {
    let ts = ms_string(c.ts_ms);
    let precise = format!("{}{:04}Z", &ts[..ts.len() - 1], c.sub_ms % 10_000);
    let timestamp = if c.family == Family::Winlogbeat { precise.clone() } else { ts.clone() };
    // event.ingested precision varies by path (event-shapes §2): nanoseconds or whole seconds.
    let ingested_ms = c.ts_ms + c.ingest_delay_ms;
    let ingested = if c.record_id.is_multiple_of(3) {
        time(ingested_ms).format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        time(ingested_ms).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    };
    let meta_host = if c.family == Family::Forwarded { c.collector } else { c.host };
    let keyword = if outcome == "success" { "Audit Success" } else { "Audit Failure" };
    let mut event = json!({
        "action": action, "category": category, "code": code, "kind": "event", "outcome": outcome,
        "provider": "Microsoft-Windows-Security-Auditing", "type": types, "ingested": ingested,
        "created": ms_string(ingested_ms - 5),
    });
    let record_id = if c.family == Family::Winlogbeat { json!(c.record_id) } else { json!(c.record_id.to_string()) };
    let doc = json!({
        "@timestamp": timestamp,
        "ecs": {"version": "8.17.0"},
        "host": {
            "name": meta_host.computer_name.to_lowercase(),
            "hostname": meta_host.short.to_lowercase(),
            "id": meta_host.id,
            "ip": meta_host.ips(),
            "mac": [format!("00-50-56-{:02X}-{:02X}-{:02X}", meta_host.ipv4.octets()[1], meta_host.ipv4.octets()[2], meta_host.ipv4.octets()[3])],
            "architecture": "x86_64",
            "os": {"type": "windows", "family": "windows", "platform": "windows", "name": "Windows Server 2022 Datacenter", "kernel": "10.0.20348.2849 (WinBuild.160101.0800)", "version": "10.0", "build": "20348.2849"}
        },
        "log": {"level": "information"},
        "winlog": {
            "channel": "Security", "computer_name": c.host.computer_name, "event_id": code,
            "keywords": [keyword], "opcode": "Info", "outcome": outcome,
            "process": {"pid": c.lsass_pid, "thread": {"id": 700 + c.record_id % 97}},
            "provider_guid": "{54849625-5478-4994-a5ba-3e3b0328c30d}",
            "provider_name": "Microsoft-Windows-Security-Auditing",
            "record_id": record_id, "time_created": precise,
        },
    });
    let Value::Object(mut m) = doc else { return Map::new() };
    match c.family {
        Family::System | Family::Forwarded => {
            let dataset = if c.family == Family::System { "system.security" } else { "windows.forwarded" };
            event["dataset"] = json!(dataset);
            event["module"] = json!(dataset.split('.').next().unwrap_or_default());
            event["agent_id_status"] = json!("verified");
            m.insert("data_stream".into(), json!({"type": "logs", "dataset": dataset, "namespace": "default"}));
            m.insert("agent".into(), json!({"id": meta_host.agent_id, "name": meta_host.short.to_lowercase(), "type": "filebeat", "version": "8.19.0", "ephemeral_id": format!("{}-e", meta_host.agent_id)}));
            m.insert("elastic_agent".into(), json!({"id": meta_host.agent_id, "snapshot": false, "version": "8.19.0"}));
            m.insert("input".into(), json!({"type": "winlog"}));
        }
        Family::Winlogbeat => {
            event["module"] = json!("security");
            m.insert("agent".into(), json!({"id": meta_host.agent_id, "name": meta_host.short.to_lowercase(), "type": "winlogbeat", "version": "8.19.0", "ephemeral_id": format!("{}-e", meta_host.agent_id)}));
        }
    }
    m.insert("event".into(), event);
    m
}

/// Deep-merges `extra` into `doc` (objects merged key by key, anything else replaced).
fn merge(doc: &mut Map<String, Value>, extra: Value) {
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            match (doc.get_mut(&k), v) {
                (Some(Value::Object(a)), Value::Object(b)) => merge(a, Value::Object(b)),
                (_, v) => {
                    doc.insert(k, v);
                }
            }
        }
    }
}

fn finish(mut doc: Map<String, Value>, extra: Value) -> Value {
    merge(&mut doc, extra);
    Value::Object(doc)
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

pub fn logon_4624(c: &Common, l: &Logon) -> Value {
    let doc = envelope(c, "4624", "logged-in", &["authentication"], &["start"], "success");
    let (logon_process, lm) = match l.auth_package.as_str() {
        "NTLM" => ("NtLmSsp ", "NTLM V2"),
        "Kerberos" => ("Kerberos", "-"),
        _ => ("Advapi  ", "-"),
    };
    let mut event_data = json!({
        "AuthenticationPackageName": l.auth_package, "ElevatedToken": l.elevated_token,
        "ImpersonationLevel": "%%1833", "KeyLength": "0", "LmPackageName": lm,
        "LogonGuid": "{00000000-0000-0000-0000-000000000000}", "LogonProcessName": logon_process,
        "LogonType": l.logon_type.to_string(), "RestrictedAdminMode": "-", "TargetOutboundDomainName": "-",
        "TargetOutboundUserName": "-", "VirtualAccount": "%%1843",
        "SubjectDomainName": "-", "SubjectLogonId": "0x0", "SubjectUserName": "-", "SubjectUserSid": "S-1-0-0",
        "TargetDomainName": l.target.domain, "TargetLinkedLogonId": "0x0", "TargetLogonId": l.target_logon_id,
        "TargetUserName": l.target.name, "TargetUserSid": l.target.sid, "TransmittedServices": "-",
    });
    let mut extra = json!({
        "process": {"pid": l.pid, "executable": l.process_name, "name": l.process_name.rsplit('\\').next().unwrap_or("-")},
        "related": {"user": [l.target.name]},
        "user": {"name": l.target.name, "domain": l.target.domain, "id": l.target.sid},
        "winlog": {"logon": {"id": "0x0", "type": logon_type_name(l.logon_type)}, "version": 2},
    });
    match &l.source_ip {
        Some(ip) => {
            extra["source"] = json!({"ip": ip, "port": l.source_port});
            extra["related"]["ip"] = json!([ip]);
        }
        None => {
            // The pipeline keeps the "-" values it could not copy (event-shapes §2).
            event_data["IpAddress"] = json!("-");
            event_data["IpPort"] = json!("-");
        }
    }
    if let Some(w) = &l.workstation {
        extra["source"]["domain"] = json!(w);
    }
    extra["winlog"]["event_data"] = event_data;
    finish(doc, extra)
}

/// 4625 ("An account failed to log on").
pub fn failed_logon_4625(c: &Common, target: &Account, logon_type: u8, auth_package: &str, source_ip: &str, status: &str) -> Value {
    let doc = envelope(c, "4625", "logon-failed", &["authentication"], &["start"], "failure");
    finish(doc, json!({
        "source": {"ip": source_ip, "port": 0},
        "related": {"user": [target.name], "ip": [source_ip]},
        "user": {"name": target.name, "domain": target.domain},
        "winlog": {"logon": {"id": "0x0", "type": logon_type_name(logon_type), "failure": {"status": status}}, "version": 0,
            "event_data": {"AuthenticationPackageName": auth_package, "FailureReason": "%%2313", "LogonType": logon_type.to_string(),
                "Status": status, "SubStatus": "0xc000006a", "SubjectLogonId": "0x0", "SubjectUserSid": "S-1-0-0",
                "TargetDomainName": target.domain, "TargetUserName": target.name, "TargetUserSid": "S-1-0-0"}}
    }))
}

/// 4634 ("An account was logged off"); `winlog.logon.id` is the TargetLogonId here.
pub fn logoff_4634(c: &Common, target: &Account, logon_type: u8, target_logon_id: &str) -> Value {
    let doc = envelope(c, "4634", "logged-out", &["authentication"], &["end"], "success");
    finish(doc, json!({
        "related": {"user": [target.name]},
        "user": {"name": target.name, "domain": target.domain, "id": target.sid},
        "winlog": {"logon": {"id": target_logon_id, "type": logon_type_name(logon_type)},
            "event_data": {"LogonType": logon_type.to_string(), "TargetDomainName": target.domain, "TargetLogonId": target_logon_id,
                "TargetUserName": target.name, "TargetUserSid": target.sid}}
    }))
}

/// 4672 ("Special privileges assigned to new logon").
pub fn special_logon_4672(c: &Common, subject: &Account, logon_id: &str) -> Value {
    let doc = envelope(c, "4672", "logged-in-special", &["iam"], &["admin"], "success");
    finish(doc, json!({
        "related": {"user": [subject.name]},
        "user": {"name": subject.name, "domain": subject.domain, "id": subject.sid},
        "winlog": {"logon": {"id": logon_id}, "event_data": {
            "PrivilegeList": ["SeSecurityPrivilege", "SeBackupPrivilege", "SeRestorePrivilege", "SeDebugPrivilege", "SeImpersonatePrivilege"],
            "SubjectDomainName": subject.domain, "SubjectLogonId": logon_id, "SubjectUserName": subject.name, "SubjectUserSid": subject.sid}}
    }))
}

/// 4688 ("A new process has been created").
#[allow(clippy::too_many_arguments)] // one plain argument per field of the event
pub fn process_4688(c: &Common, subject: &Account, logon_id: &str, pid: u64, exe: &str, parent_pid: u64, parent_exe: &str, args: &str) -> Value {
    let doc = envelope(c, "4688", "created-process", &["process"], &["start"], "success");
    let name = exe.rsplit('\\').next().unwrap_or(exe);
    finish(doc, json!({
        "process": {"pid": pid, "executable": exe, "name": name, "command_line": format!("\"{exe}\" {args}").trim_end().to_string(),
            "parent": {"pid": parent_pid, "executable": parent_exe, "name": parent_exe.rsplit('\\').next().unwrap_or(parent_exe)}},
        "related": {"user": [subject.name]},
        "user": {"name": subject.name, "domain": subject.domain, "id": subject.sid},
        "winlog": {"logon": {"id": logon_id}, "event_data": {
            "NewProcessId": format!("0x{pid:x}"), "NewProcessName": exe, "ParentProcessName": parent_exe, "ProcessId": format!("0x{parent_pid:x}"),
            "SubjectDomainName": subject.domain, "SubjectLogonId": logon_id, "SubjectUserName": subject.name, "SubjectUserSid": subject.sid,
            "TokenElevationType": "%%1936", "MandatoryLabel": "S-1-16-12288"}}
    }))
}

/// 4697 ("A service was installed in the system"); `SubjectLogonId` is rule 1's stage-B key.
pub fn service_4697(c: &Common, subject: &Account, subject_logon_id: &str, service_name: &str, service_file: &str) -> Value {
    let doc = envelope(c, "4697", "service-installed", &["iam", "configuration"], &["admin", "change"], "success");
    finish(doc, json!({
        "related": {"user": [subject.name]},
        "service": {"name": service_name, "type": "Win32 Own Process"},
        "user": {"name": subject.name, "domain": subject.domain, "id": subject.sid},
        "winlog": {"logon": {"id": subject_logon_id}, "event_data": {
            "ServiceAccount": "LocalSystem", "ServiceFileName": service_file, "ServiceName": service_name,
            "ServiceStartType": "3", "ServiceType": "0x10", "SubjectDomainName": subject.domain,
            "SubjectLogonId": subject_logon_id, "SubjectUserName": subject.name, "SubjectUserSid": subject.sid}}
    }))
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

pub fn share_5140(c: &Common, s: &ShareAccess) -> Value {
    let doc = envelope(c, "5140", "network-share-object-accessed", &["network", "file"], &["info", "access"], "success");
    finish(doc, share_fields(s, false))
}

pub fn share_5145(c: &Common, s: &ShareAccess) -> Value {
    let doc = envelope(c, "5145", "network-share-object-access-checked", &["network", "file"], &["info", "access"], "success");
    finish(doc, share_fields(s, true))
}

fn share_fields(s: &ShareAccess, detailed: bool) -> Value {
    let mut event_data = json!({
        "AccessList": ["1538", "1541", "4416"], "AccessListDescription": ["READ_CONTROL", "SYNCHRONIZE", "ReadData (or ListDirectory)"],
        "AccessMask": ["0x120089"], "ObjectType": "File", "ShareLocalPath": "", "ShareName": s.share,
        "SubjectDomainName": s.subject.domain, "SubjectLogonId": s.logon_id, "SubjectUserName": s.subject.name,
        "SubjectUserSid": s.subject.sid,
    });
    if detailed {
        event_data["RelativeTargetName"] = json!(s.relative_target);
    }
    json!({
        "related": {"user": [s.subject.name], "ip": [s.source_ip]},
        "source": {"ip": s.source_ip, "port": s.source_port},
        "user": {"name": s.subject.name, "domain": s.subject.domain, "id": s.subject.sid},
        "winlog": {"logon": {"id": s.logon_id}, "event_data": event_data},
    })
}
