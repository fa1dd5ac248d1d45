//! What a rules path holds: detection-rules TOML rules, detection-rules exception files, Kibana export
//! NDJSON files — in a plain folder tree or in a detection-rules custom-rules layout.
//!
//! A custom-rules folder has a `_config.yaml` naming its rule folders (`rule_dirs`, `bbr_rules_dirs`) and
//! its exception folder (`directories: exception_dir`), paths relative to the config file; detection-rules
//! reads rules only from those folders and exception lists only from the exception folder, and so does
//! esdetect. Without `_config.yaml` every `*.toml` and `*.ndjson` below the path is read, and a TOML file
//! with `[metadata] list_name` and `[[exceptions]]` is taken as an exception file, never as a broken rule.

use super::kibana;
use super::{line_col, load_file, toml_to_json, Rule, RuleError, RuleErrorKind};
use crate::exceptions::{self, ExceptionItem, ExceptionList};
use std::path::{Path, PathBuf};

/// Rules and exception lists read from a rules path, and the problems met.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub errors: Vec<RuleError>,
    /// detection-rules TOML rules of a type esdetect does not run (read only far enough to say so).
    pub other_types: Vec<OtherType>,
    pub lists: Vec<ExceptionList>,
    pub items: Vec<ExceptionItem>,
}

/// A TOML rule that is not EQL: where it is, and what it is.
#[derive(Debug, Clone)]
pub struct OtherType {
    pub error: RuleError,
    pub rule_id: String,
    pub name: String,
    pub rule_type: String,
    pub language: String,
}

impl RuleSet {
    fn absorb(&mut self, export: kibana::ExportFile) {
        self.rules.extend(export.rules);
        self.errors.extend(export.errors);
        self.lists.extend(export.lists);
        self.items.extend(export.items);
    }
}

/// Reads a rules folder (or a single rule, exception or export file).
pub fn load_path(path: &Path) -> RuleSet {
    let mut set = RuleSet::default();
    if path.is_file() {
        load_one(path, &mut set);
        return set;
    }
    let config = path.join("_config.yaml");
    if config.is_file() {
        let layout = match read_layout(&config) {
            Ok(l) => l,
            Err(e) => {
                set.errors.push(e);
                return set;
            }
        };
        let mut files = Vec::new();
        for dir in &layout.rule_dirs {
            collect(&path.join(dir), &mut files, &mut set.errors);
        }
        files.sort();
        files.dedup();
        for f in files {
            load_one(&f, &mut set);
        }
        if let Some(dir) = &layout.exception_dir {
            let mut files = Vec::new();
            collect(&path.join(dir), &mut files, &mut set.errors);
            files.sort();
            for f in files.iter().filter(|f| has_ext(f, "toml")) {
                load_exception_toml(f, &mut set);
            }
        }
        return set;
    }
    let mut files = Vec::new();
    collect(path, &mut files, &mut set.errors);
    files.sort();
    for f in files {
        load_one(&f, &mut set);
    }
    set
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn load_one(path: &Path, set: &mut RuleSet) {
    if has_ext(path, "ndjson") {
        set.absorb(kibana::load_export(path));
        return;
    }
    if !has_ext(path, "toml") {
        return;
    }
    // Exception files are recognised by content: detection-rules keeps them beside rules in some layouts.
    if let Ok(text) = std::fs::read_to_string(path) {
        if is_exception_toml(&text) {
            load_exception_toml(path, set);
            return;
        }
    }
    match load_file(path) {
        Ok(r) => set.rules.push(r),
        Err(e) if e.kind == RuleErrorKind::Unsupported => {
            let table: toml::Table = std::fs::read_to_string(path).ok().and_then(|t| toml::from_str(&t).ok()).unwrap_or_default();
            let get = |k: &str| table.get("rule").and_then(|r| r.get(k)).and_then(|v| v.as_str()).unwrap_or("").to_string();
            set.other_types.push(OtherType { rule_id: get("rule_id"), name: get("name"), rule_type: get("type"), language: get("language"), error: e });
        }
        Err(e) => set.errors.push(e),
    }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<RuleError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(RuleError::new(dir, (1, 1), None, format!("cannot read rules directory: {e}")));
            return;
        }
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect(&p, files, errors);
        } else if has_ext(&p, "toml") || has_ext(&p, "ndjson") {
            files.push(p);
        }
    }
}

/// A detection-rules exception file: `[metadata]` with `list_name` and an `[[exceptions]]` array.
fn is_exception_toml(text: &str) -> bool {
    // Both keys must appear in the text; checked first so that rule files are not parsed an extra time.
    if !(text.contains("exceptions") && text.contains("list_name")) {
        return false;
    }
    match toml::from_str::<toml::Table>(text) {
        Ok(t) => {
            t.get("exceptions").is_some_and(|e| e.is_array())
                && t.get("metadata").and_then(|m| m.get("list_name")).is_some()
                && !t.contains_key("rule")
        }
        Err(_) => false,
    }
}

/// Reads `[[exceptions]]` blocks: `container` (the list) and `items`.
fn load_exception_toml(path: &Path, set: &mut RuleSet) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            set.errors.push(RuleError::new(path, (1, 1), None, format!("cannot read exception file: {e}")));
            return;
        }
    };
    let doc: toml::Table = match toml::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            let pos = e.span().map(|s| line_col(&text, s.start)).unwrap_or((1, 1));
            set.errors.push(RuleError::new(path, pos, None, format!("invalid TOML: {}", e.message())));
            return;
        }
    };
    // Byte spans only, for positions of the blocks.
    let spans = toml_edit::ImDocument::parse(text.as_str()).ok();
    let block_pos = |i: usize| -> (u32, u32) {
        spans
            .as_ref()
            .and_then(|d| d.as_table().get("exceptions"))
            .and_then(|e| e.as_array_of_tables())
            .and_then(|a| a.get(i))
            .and_then(|t| t.span())
            .map(|s| line_col(&text, s.start))
            .unwrap_or((1, 1))
    };
    let Some(toml::Value::Array(blocks)) = doc.get("exceptions") else {
        set.errors.push(RuleError::new(path, (1, 1), Some("exceptions"), "`exceptions` must be an array of tables"));
        return;
    };
    for (i, block) in blocks.iter().enumerate() {
        let block = toml_to_json(block);
        let pos = block_pos(i);
        let container = block.get("container").cloned().unwrap_or_default();
        let list = match exceptions::parse_list(&container) {
            Ok(l) => l,
            Err(m) => {
                set.errors.push(RuleError::new(path, pos, Some("container"), format!("exception list: {m}")));
                continue;
            }
        };
        if let Some(serde_json::Value::Array(items)) = block.get("items") {
            for item in items {
                match exceptions::parse_item(item) {
                    Ok(it) => set.items.push(it),
                    Err(m) => set.errors.push(RuleError::new(path, pos, Some("items"), m)),
                }
            }
        }
        set.lists.push(list);
    }
}

/// The folders a detection-rules `_config.yaml` names.
#[derive(Debug, Default, PartialEq)]
struct Layout {
    rule_dirs: Vec<String>,
    exception_dir: Option<String>,
}

/// Reads the keys of `_config.yaml` that say where rules and exceptions live: `rule_dirs` and
/// `bbr_rules_dirs` (block lists) and `directories: exception_dir`. Other keys (files, testing, …) do not
/// change what is loaded and are ignored.
fn read_layout(path: &Path) -> Result<Layout, RuleError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RuleError::new(path, (1, 1), None, format!("cannot read _config.yaml: {e}")))?;
    let mut layout = Layout::default();
    let mut section = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("");
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let unquote = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        let indented = line.starts_with(' ') || line.starts_with('\t');
        let item = line.trim_start();
        if !indented {
            let (key, value) = item.split_once(':').unwrap_or((item, ""));
            section = key.trim().to_string();
            let value = value.trim();
            if (section == "rule_dirs" || section == "bbr_rules_dirs") && !value.is_empty() {
                let inline = value.trim_start_matches('[').trim_end_matches(']');
                if !value.starts_with('[') {
                    return Err(RuleError::new(path, (n as u32 + 1, 1), Some(&section), format!("`{section}` must be a list of folders")));
                }
                layout.rule_dirs.extend(inline.split(',').map(unquote).filter(|s| !s.is_empty()));
            }
        } else if let Some(entry) = item.strip_prefix("- ") {
            if section == "rule_dirs" || section == "bbr_rules_dirs" {
                layout.rule_dirs.push(unquote(entry));
            }
        } else if section == "directories" {
            if let Some(("exception_dir", value)) = item.split_once(':').map(|(k, v)| (k.trim(), v)) {
                layout.exception_dir = Some(unquote(value)).filter(|s| !s.is_empty());
            }
        }
    }
    if layout.rule_dirs.is_empty() {
        return Err(RuleError::new(
            path,
            (1, 1),
            Some("rule_dirs"),
            "`_config.yaml` names no `rule_dirs`: list the folders that hold the rules (relative to this file)",
        ));
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("_config.yaml");
        std::fs::write(
            &p,
            "# custom rules\nrule_dirs:\n  - rules\n  - 'more'\nbbr_rules_dirs: [bbr]\nfiles:\n  packages: etc/packages.yaml\n\
             directories:\n  action_dir: actions\n  exception_dir: exceptions  # lists\n",
        )
        .unwrap();
        let l = read_layout(&p).unwrap();
        assert_eq!(l.rule_dirs, ["rules", "more", "bbr"]);
        assert_eq!(l.exception_dir.as_deref(), Some("exceptions"));
        std::fs::write(&p, "files:\n  x: y\n").unwrap();
        assert!(read_layout(&p).unwrap_err().to_string().contains("names no `rule_dirs`"));
    }
}
