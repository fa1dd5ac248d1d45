//! Rule-file errors that point at the offending spot: `file:line:col: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a rule file was not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleErrorKind {
    /// The file is broken (TOML syntax, missing or mistyped field, bad duration, bad query).
    Invalid,
    /// The file is a valid rule of a type esdetect does not run (not EQL); skipped on purpose.
    Unsupported,
}

/// One problem with one rule file. `line`/`col` are 1-based; `col` counts characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
    /// The rule field concerned (`query`, `from`, …), when there is one.
    pub field: Option<String>,
    pub message: String,
    pub kind: RuleErrorKind,
}

impl RuleError {
    pub fn new(file: &Path, (line, col): (u32, u32), field: Option<&str>, message: impl Into<String>) -> Self {
        RuleError {
            file: file.to_path_buf(),
            line,
            col,
            field: field.map(str::to_string),
            message: message.into(),
            kind: RuleErrorKind::Invalid,
        }
    }

    pub(crate) fn unsupported(mut self) -> Self {
        self.kind = RuleErrorKind::Unsupported;
        self
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.col, self.message)
    }
}

impl std::error::Error for RuleError {}

/// 1-based line and character column of byte offset `offset` in `text` (clamped to the text).
pub fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line as u32, col as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars_from_one() {
        let t = "ab\ncé=1\nx";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        // byte 6 is '=' after the two-byte 'é': column 3, not 4
        assert_eq!(line_col(t, 6), (2, 3));
        assert_eq!(line_col(t, 999), (3, 2));
    }
}
