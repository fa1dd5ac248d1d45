//! Human output: aligned tables (coloured on a terminal unless `--no-color`), and JSON for machines.

use crate::detect::{RunStatus, RunSummary};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Attribute, Cell, Color, ContentArrangement, Table};

/// Table style settings decided once at the CLI edge.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn detect(no_color: bool) -> Style {
        use std::io::IsTerminal;
        // no-color.org: a NO_COLOR that is present and not empty disables colour.
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style { color: !no_color && !no_color_env && std::io::stdout().is_terminal() }
    }

    pub fn table(&self, header: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
        if !self.color {
            t.force_no_tty();
        }
        // A terminal that reports no usable width (e.g. a pty without a size) would squeeze every column to
        // one character: print the table at its natural width instead.
        if t.width().is_none_or(|w| w < 40) {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
        t.set_header(header.iter().map(|h| {
            let c = Cell::new(h);
            if self.color {
                c.add_attribute(Attribute::Bold)
            } else {
                c
            }
        }));
        t
    }

    pub fn status_cell(&self, status: RunStatus) -> Cell {
        let c = Cell::new(status.as_str());
        if !self.color {
            return c;
        }
        c.fg(match status {
            RunStatus::Succeeded => Color::Green,
            RunStatus::PartialFailure => Color::Yellow,
            RunStatus::Failed => Color::Red,
            RunStatus::Skipped => Color::Grey,
        })
    }
}

/// The per-rule run summaries as a table, followed by warnings and errors in full.
pub fn summaries_table(style: Style, summaries: &[RunSummary]) -> String {
    let mut t = style.table(&[
        "rule", "window (UTC)", "status", "fetched", "candidates", "matches", "written", "dupes", "truncated", "ms",
    ]);
    for s in summaries {
        t.add_row(vec![
            Cell::new(&s.rule_name),
            Cell::new(format!("{} → {}", s.window.from.format("%Y-%m-%d %H:%M:%S%.3f"), s.window.to.format("%H:%M:%S%.3f"))),
            style.status_cell(s.status),
            Cell::new(s.fetched),
            Cell::new(s.candidates),
            Cell::new(s.matches),
            Cell::new(s.alerts_written),
            Cell::new(s.duplicates),
            Cell::new(if s.truncated { "yes" } else { "no" }),
            Cell::new(s.durations.total_ms),
        ]);
    }
    let mut out = t.to_string();
    for s in summaries {
        for w in &s.warnings {
            out.push_str(&format!("\nwarning [{}]: {w}", s.rule_id));
        }
        for e in &s.errors {
            out.push_str(&format!("\nerror [{}]: {e}", s.rule_id));
        }
        for (reason, n) in &s.skipped {
            out.push_str(&format!("\nnote [{}]: {n} skipped: {reason}", s.rule_id));
        }
        if s.bytes_fetched > 0 || s.bytes_mget > 0 {
            out.push_str(&format!(
                "\nnote [{}]: read {} bytes of search pages and {} bytes of `_mget` (whole documents of the alerts' events)",
                s.rule_id, s.bytes_fetched, s.bytes_mget
            ));
        }
        if s.suppressed > 0 {
            out.push_str(&format!("\nnote [{}]: {} alert(s) suppressed (alert_suppression)", s.rule_id, s.suppressed));
        }
    }
    out
}
