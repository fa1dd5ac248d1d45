//! The lab flow against the live node, through the real binary: `esdetect simulate` writes events, `esdetect
//! run --once` writes alerts, and `esdetect test` over the same events (exported as search hits) finds exactly
//! the same alert `_id`s. This is the issue's acceptance path, run in CI by `scripts/test.sh`.
//!
//! Isolation on a shared node: the events go to a namespace of their own (`simulate --namespace`), the rules are
//! temporary copies whose `index` names only that namespace, alerts go to a test-only alias, and the test puts
//! its own index templates for its indices (so it depends on no other template). Everything is deleted at the end,
//! also when the test fails.

use crate::common;

use chrono::{DurationRound, Utc};
use elasticsearch::http::Method;
use esdetect::es::{ConnectionConfig, EsClient};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

fn es(url: &str) -> EsClient {
    EsClient::new(&ConnectionConfig { urls: vec![url.to_string()], ..ConnectionConfig::default() }).expect("client")
}

fn esdetect(url: &str, cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdetect"));
    cmd.current_dir(cwd).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("ESDETECT_") || name == "NO_COLOR" {
            cmd.env_remove(name);
        }
    }
    cmd.env("ESDETECT_ES_URL", url);
    cmd.output().expect("running the esdetect binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Everything the test creates on the node, removed on drop (a failing test cleans up too).
struct Cleanup {
    url: String,
    indices: Vec<String>,
    templates: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, indices, templates) = (self.url.clone(), self.indices.clone(), self.templates.clone());
        // Drop cannot await and the test's runtime may be busy: a thread with its own runtime and client.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let c = es(&url);
                for pattern in &indices {
                    let _ = c.raw(Method::Delete, &format!("/{pattern}"), &[("expand_wildcards", "all".into()), ("ignore_unavailable", "true".into())], None).await;
                }
                for t in &templates {
                    let _ = c.raw(Method::Delete, &format!("/_index_template/{t}"), &[], None).await;
                }
            });
            Some(())
        })
        .join();
    }
}

fn record_id(v: &Value) -> Option<String> {
    v.pointer("/winlog/record_id").map(|r| r.as_str().map(String::from).unwrap_or_else(|| r.to_string()))
}

#[tokio::test]
async fn simulate_run_once_and_offline_test_agree_on_alert_ids() {
    let url = common::es_url();
    let client = es(&url);
    let dir = tempfile::tempdir().unwrap();
    // A data stream namespace of this run only: lower case, digits, `_`.
    let ns = common::unique_index_name("lab").trim_start_matches("esdetect-test-").replace('-', "_");
    let indices = [
        format!("logs-system.security-{ns}"),
        format!("logs-windows.forwarded-{ns}"),
        format!("winlogbeat-8.19.0-{ns}"),
    ];
    let alias = format!("esdetect-test-alerts-{ns}");
    let template = format!("esdetect-test-events-{ns}");
    let _cleanup = Cleanup {
        url: url.clone(),
        indices: indices.iter().cloned().chain([format!("{alias}-*")]).collect(),
        templates: vec![template.clone(), format!("esdetect-{alias}")],
    };

    // Our own ECS-typed template for our indices (priority unlikely to collide with anyone's).
    let body = json!({
        "index_patterns": indices,
        "priority": 4321,
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "date_detection": false,
                "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}}],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "event": {"properties": {"ingested": {"type": "date"}, "created": {"type": "date"}}},
                    "source": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
                    "host": {"properties": {"ip": {"type": "ip"}}},
                    "process": {"properties": {"pid": {"type": "long"}}}
                }
            }
        }
    });
    let (status, resp) = client.raw(Method::Put, &format!("/_index_template/{template}"), &[], Some(&body)).await.unwrap();
    assert_eq!(status, 200, "put index template: {resp}");

    // Temporary rule copies reading only this namespace.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let upstream_index = r#"index = ["logs-system.security*", "logs-windows.forwarded*", "winlogbeat-*"]"#;
    let ours = format!(r#"index = ["logs-system.security-{ns}", "logs-windows.forwarded-{ns}", "winlogbeat-*-{ns}"]"#);
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(upstream_index), "{} changed its index patterns; update this test", path.display());
        std::fs::write(rules.join(path.file_name().unwrap()), text.replace(upstream_index, &ours)).unwrap();
    }
    let config = dir.path().join("esdetect.toml");
    std::fs::write(&config, format!("rules_dir = \"rules\"\n[alerts]\nindex = \"{alias}\"\n")).unwrap();
    let cfg = config.to_str().unwrap();

    // Events in [now - 6m, now - 2m): inside both rules' 9-minute window ending at `now`, ingest delays included.
    let now = Utc::now().duration_trunc(chrono::Duration::seconds(1)).unwrap();
    let now_s = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let start_s = (now - chrono::Duration::minutes(6)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let planted_path = dir.path().join("planted.json");
    let out = esdetect(
        &url,
        dir.path(),
        &["--config", cfg, "simulate", "--scenario", "all", "--count", "300", "--seed", "11", "--start", &start_s, "--namespace", &ns, "--planted-out", planted_path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "simulate: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("6 planted attacks") && stderr.contains(&indices[0]), "{stderr}");
    let planted: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&planted_path).unwrap()).unwrap();
    let planted_records = |scenario: &str| -> BTreeSet<String> {
        planted
            .iter()
            .filter(|p| p["attack"] == true && p["scenario"] == scenario)
            .flat_map(|p| p["record_ids"].as_array().unwrap().iter().map(|r| r.as_str().map(String::from).unwrap_or_else(|| r.to_string())))
            .collect()
    };
    let (smb_planted, krb_planted) = (planted_records("SmbRelay"), planted_records("KrbRelayUp"));
    assert_eq!((smb_planted.len(), krb_planted.len()), (3, 6), "3 SMB relays, 3 KrbRelayUp pairs");

    // One cluster run at `now`.
    let out = esdetect(&url, dir.path(), &["--config", cfg, "run", "--once", "--now", &now_s, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "run --once: stdout {} stderr {}", text(&out.stdout), text(&out.stderr));
    let summaries: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(summaries.len(), 2, "one summary per rule");
    let written: u64 = summaries.iter().map(|s| s["alerts_written"].as_u64().unwrap()).sum();
    // 3 event alerts + 3 sequences × (shell + 2 building blocks).
    assert_eq!(written, 3 + 3 * 3, "{summaries:?}");
    for s in &summaries {
        assert_eq!(s["status"], "succeeded", "{s}");
    }

    // What the alias holds: exactly the planted attacks.
    let (status, resp) = client.raw(Method::Post, &format!("/{alias}/_search"), &[], Some(&json!({"size": 1000, "query": {"match_all": {}}}))).await.unwrap();
    assert_eq!(status, 200, "{resp}");
    let alerts = resp["hits"]["hits"].as_array().unwrap().clone();
    let mut cluster_ids = BTreeSet::new();
    let (mut smb_seen, mut krb_seen) = (BTreeSet::new(), BTreeSet::new());
    for a in &alerts {
        let id = a["_id"].as_str().unwrap().to_string();
        assert_eq!(a["_source"]["kibana.alert.uuid"], id.as_str());
        assert!(cluster_ids.insert(id), "duplicate alert id");
        if let Some(r) = record_id(&a["_source"]) {
            let rule = a["_source"]["kibana.alert.rule.rule_id"].as_str().unwrap_or("");
            if rule == "d84a11c0-eb12-4e7d-8a0a-718e38351e29" { smb_seen.insert(r) } else { krb_seen.insert(r) };
        }
    }
    assert_eq!(cluster_ids.len(), 12);
    assert_eq!(smb_seen, smb_planted, "SMB alerts are exactly the planted relays");
    assert_eq!(krb_seen, krb_planted, "building blocks are exactly the planted KrbRelayUp events");

    // A second run of the same window writes nothing new: every alert is a duplicate.
    let out = esdetect(&url, dir.path(), &["--config", cfg, "run", "--once", "--now", &now_s, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(again.iter().map(|s| s["alerts_written"].as_u64().unwrap()).sum::<u64>(), 0);
    assert_eq!(again.iter().map(|s| s["duplicates"].as_u64().unwrap()).sum::<u64>(), 12);

    // Export the events as search hits and run the same rules offline at the same `now`.
    let (status, resp) = client
        .raw(Method::Post, &format!("/{}/_search", indices.join(",")), &[], Some(&json!({"size": 10000, "query": {"match_all": {}}})))
        .await
        .unwrap();
    assert_eq!(status, 200, "{resp}");
    let hits = resp["hits"]["hits"].as_array().unwrap();
    assert!(hits.len() >= 300, "{} events exported", hits.len());
    let export: String = hits
        .iter()
        .map(|h| serde_json::to_string(&json!({"_index": h["_index"], "_id": h["_id"], "_source": h["_source"]})).unwrap() + "\n")
        .collect();
    let export_path = dir.path().join("export.ndjson");
    std::fs::write(&export_path, export).unwrap();
    let out = esdetect(&url, dir.path(), &["--config", cfg, "test", "--events", export_path.to_str().unwrap(), "--now", &now_s, "--format", "ndjson"]);
    assert_eq!(out.status.code(), Some(0), "test: {}", text(&out.stderr));
    let offline_ids: BTreeSet<String> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(offline_ids, cluster_ids, "esdetect test must give the cluster run's alert ids");
}
