//! The projection's fast path: one validating scan over a document's text, without serde's visitor calls.
//!
//! Profiles of `esdetect test` put a third of its CPU in the serde projection ([`super::projection`]):
//! visiting every key through `MapAccess`, skipping unused values with `IgnoredAny`. Most of a ~2.2 KB
//! Windows event is skipped, so this module skips it with a small hand-written JSON scanner instead:
//! strings are crossed eight bytes at a time (plain `u64` arithmetic: portable, no target flags), keys
//! that cannot be wanted are rejected by their length before any hashing, and only the kept subtrees are
//! handed to `serde_json` to build their `Value`s.
//!
//! Exactness comes first: the scan returns a result only when it is certain to be the one the serde
//! path gives. It validates everything it skips at least as strictly as serde does (serde's
//! `IgnoredAny` checks the JSON grammar, string escapes and control characters), builds kept values
//! with `serde_json` itself, and applies the same rules (document order, last one wins for duplicate
//! keys, arrays flattened). Anything unusual — an escaped key at a kept level, a raw control character
//! anywhere, nesting deeper than [`MAX_DEPTH`], any syntax error — makes it give up, and the caller
//! reads the text with serde, which also produces the error messages. Giving up costs a second scan of
//! a rare line, never a different result.

use super::projection::{Document, Entry, Node};
use serde_json::{Map, Value};

/// The scan gave up: the serde path reads the text instead.
pub(super) struct GiveUp;

type Scanned<T> = Result<T, GiveUp>;

/// Deeper nesting is left to serde, whose recursion limit (128, counted over kept levels only) this
/// scan does not reproduce; staying far below it keeps the two paths' answers identical.
const MAX_DEPTH: usize = 100;

/// [`super::projection::read_document`] when the scan is certain, else `None`.
pub(super) fn read_document(root: &Node, json: &str) -> Option<Document> {
    let mut scan = Scan::new(json)?;
    let doc = scan.document(root).ok()?;
    scan.end().ok()?;
    Some(doc)
}

/// [`super::projection::project_str`] when the scan is certain, else `None`.
pub(super) fn project_str(root: &Node, json: &str) -> Option<Map<String, Value>> {
    let mut scan = Scan::new(json)?;
    scan.ws();
    if scan.peek().ok()? != b'{' {
        return None;
    }
    let map = scan.project(root).ok()?;
    scan.end().ok()?;
    Some(map)
}

/// The position of the first `"` or `\\` in `bytes` from `from`. Eight bytes at a time in a `u64` (the
/// strings of an event are mostly short keys and values, where a call into a vectorised search costs
/// more than it saves): a byte equal to `b` is a zero byte of `word ^ b…b`, and `(x - 0x01…01) & !x &
/// 0x80…80` marks zero bytes exactly up to the first one, which is the one wanted.
#[inline]
fn quote_or_backslash(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = zero(word ^ QUOTES) | zero(word ^ BACKSLASHES);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at.min(bytes.len())..].iter().position(|&b| b == b'"' || b == b'\\').map(|i| at + i)
}

struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl<'a> Scan<'a> {
    /// A scan of `text`, or `None` when it holds a raw control character: serde rejects those inside
    /// strings and accepts tab and carriage return between tokens; telling the two apart is left to it.
    fn new(text: &'a str) -> Option<Self> {
        let bytes = text.as_bytes();
        // Branch-free per chunk, so the compiler vectorises it.
        let control = bytes.chunks(64).any(|chunk| chunk.iter().fold(false, |any, &b| any | (b < 0x20)));
        (!control).then_some(Scan { text, bytes, at: 0, depth: 0 })
    }

    /// JSON whitespace (with no control characters, only the space remains).
    #[inline]
    fn ws(&mut self) {
        while self.bytes.get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Scanned<u8> {
        self.bytes.get(self.at).copied().ok_or(GiveUp)
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Scanned<()> {
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Only whitespace after the document, as `serde_json::Deserializer::end` requires.
    fn end(&mut self) -> Scanned<()> {
        self.ws();
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// The string at the cursor: its raw text between the quotes, and whether it holds escapes.
    /// Escapes are checked as serde checks skipped strings (a `\u` needs four hex digits).
    #[inline]
    fn string(&mut self) -> Scanned<(&'a str, bool)> {
        self.eat(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            self.at = quote_or_backslash(self.bytes, self.at).ok_or(GiveUp)?;
            if self.bytes[self.at] == b'"' {
                let raw = &self.text[start..self.at];
                self.at += 1;
                return Ok((raw, escaped));
            }
            escaped = true;
            match self.bytes.get(self.at + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 2,
                Some(b'u') => {
                    let hex = self.bytes.get(self.at + 2..self.at + 6).ok_or(GiveUp)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(GiveUp);
                    }
                    self.at += 6;
                }
                _ => return Err(GiveUp),
            }
        }
    }

    /// The object at the cursor, each member handed to `member` with the cursor at its value (which
    /// `member` must consume).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str, bool) -> Scanned<()>) -> Scanned<()> {
        self.container(b'{', b'}', |scan| {
            let (key, escaped) = scan.member_key()?;
            member(scan, key, escaped)
        })
    }

    /// The array at the cursor, `item` called with the cursor at each element (which it must consume).
    fn array(&mut self, item: impl FnMut(&mut Self) -> Scanned<()>) -> Scanned<()> {
        self.container(b'[', b']', item)
    }

    /// The comma-separated entries between `open` and `close` at the cursor, `entry` called at each.
    #[inline]
    fn container(&mut self, open: u8, close: u8, mut entry: impl FnMut(&mut Self) -> Scanned<()>) -> Scanned<()> {
        self.eat(open)?;
        self.enter()?;
        self.ws();
        if self.peek()? == close {
            self.at += 1;
        } else {
            loop {
                entry(self)?;
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.at += 1;
                        self.ws();
                    }
                    byte if byte == close => {
                        self.at += 1;
                        break;
                    }
                    _ => return Err(GiveUp),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn enter(&mut self) -> Scanned<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        Ok(())
    }

    /// Passes over the value at the cursor, checking it is valid JSON. One loop over the tokens, not a
    /// call per nested value: the open containers are the bits of a word (1 for an object), at most
    /// [`MAX_DEPTH`] of them.
    fn skip(&mut self) -> Scanned<()> {
        let (mut objects, mut open) = (0u128, 0usize);
        loop {
            // A value at the cursor.
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' => {
                    self.at += 1;
                    self.enter()?;
                    self.ws();
                    if self.peek()? == b'}' {
                        self.at += 1;
                        self.depth -= 1;
                    } else {
                        objects |= 1 << open;
                        open += 1;
                        self.member_key()?;
                        continue;
                    }
                }
                b'[' => {
                    self.at += 1;
                    self.enter()?;
                    self.ws();
                    if self.peek()? == b']' {
                        self.at += 1;
                        self.depth -= 1;
                    } else {
                        objects &= !(1 << open);
                        open += 1;
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return Err(GiveUp),
            }
            // After a value: the next one in the innermost container, or its end.
            loop {
                if open == 0 {
                    return Ok(());
                }
                self.ws();
                let object = objects >> (open - 1) & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.at += 1;
                        self.ws();
                        if object {
                            self.member_key()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return Err(GiveUp),
                }
                self.at += 1;
                open -= 1;
                self.depth -= 1;
            }
        }
    }

    /// A member's key (its raw text, and whether it holds escapes) and colon, up to its value.
    #[inline]
    fn member_key(&mut self) -> Scanned<(&'a str, bool)> {
        let key = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Ok(key)
    }

    fn literal(&mut self, word: &[u8]) -> Scanned<()> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// A number by JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Scanned<()> {
        if self.bytes[self.at] == b'-' {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return Err(GiveUp),
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(GiveUp);
            }
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.bytes.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(GiveUp);
            }
        }
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - start
    }

    /// The value at the cursor, whole, as `serde_json` parses it (an unescaped string directly).
    fn whole(&mut self) -> Scanned<Value> {
        let start = self.at;
        if self.peek()? == b'"' {
            let (raw, escaped) = self.string()?;
            if !escaped {
                return Ok(Value::String(raw.to_owned()));
            }
        } else {
            self.skip()?;
        }
        serde_json::from_str(&self.text[start..self.at]).map_err(|_| GiveUp)
    }

    /// The object at the cursor with only the members `node` wants (see [`super::projection`]).
    fn project(&mut self, node: &Node) -> Scanned<Map<String, Value>> {
        // Sized once for the keys that may be kept (a handful; capped for huge field sets), not grown on inserts.
        let mut out = Map::with_capacity(node.len().min(16));
        self.object(|scan, key, escaped| {
            if escaped {
                // The key would have to be unescaped to be looked up.
                return Err(GiveUp);
            }
            match node.get(key) {
                Some(Entry { whole: true, .. }) => {
                    let value = scan.whole()?;
                    out.insert(key.to_owned(), value);
                }
                Some(Entry { below: Some(below), .. }) => match scan.below(below)? {
                    Some(value) => {
                        out.insert(key.to_owned(), value);
                    }
                    // A duplicate key replaces the earlier value, as in `serde_json::Map`.
                    None => {
                        out.shift_remove(key);
                    }
                },
                _ => scan.skip()?,
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// A value below a wanted prefix: objects projected, arrays element by element, scalars dropped.
    fn below(&mut self, node: &Node) -> Scanned<Option<Value>> {
        match self.peek()? {
            b'{' => Ok(Some(Value::Object(self.project(node)?))),
            b'[' => {
                let mut items = Vec::new();
                self.array(|scan| {
                    if let Some(value) = scan.below(node)? {
                        items.push(value);
                    }
                    Ok(())
                })?;
                Ok(Some(Value::Array(items)))
            }
            // serde reads these scalars (`deserialize_any`), so a number out of range or a lone surrogate
            // fails there as it fails in a kept value; `whole` reproduces that.
            _ => self.whole().map(|_| None),
        }
    }

    /// A hit (`_index`, `_id`, `_source` projected) or a bare document, as the serde path reads it.
    fn document(&mut self, root: &Node) -> Scanned<Document> {
        self.ws();
        if self.peek()? != b'{' {
            return Err(GiveUp);
        }
        let (mut index, mut id, mut projection) = (None, None, None);
        self.object(|scan, key, escaped| {
            if escaped {
                return Err(GiveUp);
            }
            match key {
                "_index" => index = Some(scan.whole()?),
                "_id" => id = Some(scan.whole()?),
                "_source" => {
                    if scan.peek()? != b'{' {
                        return Err(GiveUp);
                    }
                    projection = Some(scan.project(root)?);
                }
                _ => scan.skip()?,
            }
            Ok(())
        })?;
        Ok(match projection {
            Some(p) => Document::Hit { index, id, projection: Value::Object(p) },
            None => Document::Bare,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The scan against the serde path, on fixture documents and on generated texts (valid, with
    //! duplicate and dotted keys, escapes, numbers of every form, and broken by random edits).
    use super::*;
    use crate::event::projection::{project_str_serde, read_document_serde, FieldSet};
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// Whether the scan answered; fails when its answer differs from serde's (or serde failed).
    fn agree(fields: &FieldSet, text: &str) -> Result<bool, TestCaseError> {
        let slow = read_document_serde(fields, text);
        let fast = read_document(&fields.root, text);
        match (&fast, &slow) {
            (Some(f), Ok(s)) => prop_assert_eq!(f, s, "read_document of {}", text),
            (Some(f), Err(e)) => return Err(TestCaseError::fail(format!("scan read {f:?} where serde fails ({e}): {text}"))),
            (None, _) => {}
        }
        let slow_p = project_str_serde(fields, text);
        let fast_p = project_str(&fields.root, text);
        match (&fast_p, &slow_p) {
            (Some(f), Ok(s)) => prop_assert_eq!(&Value::Object(f.clone()), s, "project_str of {}", text),
            (Some(f), Err(e)) => return Err(TestCaseError::fail(format!("scan projected {f:?} where serde fails ({e}): {text}"))),
            (None, _) => {}
        }
        Ok(fast.is_some())
    }

    #[test]
    fn every_fixture_hit_takes_the_fast_path_and_agrees() {
        let fields = FieldSet::new([
            "@timestamp", "event.code", "event.category", "host.ip", "host.os.type", "winlog.event_data.LogonType",
            "user.name", "source.ip", "process", "winlog.event_data.ShareName",
        ]);
        let fixture = include_str!("../../benches/fixtures/windows_security.ndjson");
        let mut n = 0;
        for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
            assert!(agree(&fields, line).unwrap(), "the scan gave up on {line}");
            n += 1;
        }
        assert!(n >= 100, "{n} fixture lines");
    }

    #[test]
    fn gives_up_where_serde_decides() {
        let fields = FieldSet::new(["a.b", "c"]);
        for text in [
            r#"{"a":{"b":1},"c":"x"}"#,
            "{\"a\":\t{\"b\":1}}",
            r#"{"\u0061":{"b":1}}"#,
            r#"{"c":"\ud800"}"#,
            r#"{"c":1e999}"#,
            r#"{"c":01}"#,
            r#"{"c":[1,]}"#,
            r#"{"z":{"y":-}}"#,
            r#"{"z":"\x"}"#,
            r#"{"c":1} {}"#,
            r#"{"c":tru}"#,
            r#"{"_source":{"a":{"b":[1,{"b":2}]}},"_id":"1"}"#,
            r#"{"_source":null}"#,
            r#"{"_source":{"a":{"b":1}}"#,
            "[1]",
            "",
        ] {
            agree(&fields, text).unwrap();
        }
        let deep = format!("{{\"z\":{}1{}}}", "[".repeat(150), "]".repeat(150));
        assert!(!agree(&fields, &deep).unwrap(), "deep nesting is left to serde");
        assert!(read_document_serde(&fields, &deep).is_ok());
    }

    /// JSON text as a tree, rendered with chosen whitespace (serde_json's `Value` cannot hold duplicate
    /// keys or number spellings).
    #[derive(Debug, Clone)]
    enum Json {
        Object(Vec<(String, Json)>),
        Array(Vec<Json>),
        Raw(String),
    }

    fn render(j: &Json, ws: &str, out: &mut String) {
        match j {
            Json::Raw(s) => out.push_str(s),
            Json::Array(items) => {
                out.push('[');
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    render(it, ws, out);
                }
                out.push_str(ws);
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    out.push_str(k);
                    out.push_str(ws);
                    out.push(':');
                    out.push_str(ws);
                    render(v, ws, out);
                }
                out.push_str(ws);
                out.push('}');
            }
        }
    }

    const PATHS: &[&str] = &["a", "a.b", "b.c", "x.y.z", "x.y", "@timestamp", "c", "e\"q", "é", "_id", "_source.a"];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => prop::sample::select(&["a", "b", "c", "a.b", "b.c", "x", "x.y", "y", "z", "y.z", "x.y.z", "@timestamp",
                "_id", "_index", "_source", "e\"q", "é", ""][..]).prop_map(|k| serde_json::to_string(k).unwrap()),
            1 => Just(r#""\u0061""#.to_string()),
            1 => "[a-z.]{0,4}".prop_map(|k| serde_json::to_string(&k).unwrap()),
        ]
    }

    fn leaf() -> impl Strategy<Value = Json> {
        prop_oneof![
            "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,18})?([eE][+-]?[0-9]{1,3})?".prop_map(Json::Raw),
            any::<i64>().prop_map(|n| Json::Raw(n.to_string())),
            any::<u64>().prop_map(|n| Json::Raw(n.to_string())),
            any::<f64>().prop_map(|f| Json::Raw(serde_json::to_string(&f).unwrap())),
            any::<String>().prop_map(|s| Json::Raw(serde_json::to_string(&s).unwrap())),
            prop::sample::select(&[r#""C:\\Windows\\x.exe""#, r#""\/\b\f\n\r\t\"""#, r#""\u00e9\ud83d\ude00\uFFFF""#, r#""""#][..])
                .prop_map(|s| Json::Raw(s.to_string())),
            prop::sample::select(&["true", "false", "null"][..]).prop_map(|s| Json::Raw(s.to_string())),
        ]
    }

    fn json() -> impl Strategy<Value = Json> {
        leaf().prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
                prop::collection::vec((key(), inner), 0..7).prop_map(Json::Object),
            ]
        })
    }

    fn document() -> impl Strategy<Value = (String, String)> {
        let object = prop::collection::vec((key(), json()), 0..8).prop_map(Json::Object);
        (object, prop::sample::select(&["", " ", "  ", "\t", " \r\n "][..]), any::<bool>()).prop_map(|(o, ws, hit)| {
            let mut body = String::new();
            render(&o, ws, &mut body);
            let text = if hit { format!(r#"{{"_index":"i","_score":1.5,"_id":"x{ws}","_source":{body},"sort":[1]}}"#) } else { body };
            (text, ws.to_string())
        })
    }

    fn fields() -> impl Strategy<Value = FieldSet> {
        prop::collection::vec(prop::sample::select(PATHS), 0..5).prop_map(FieldSet::new)
    }

    proptest! {
        #[test]
        fn the_word_search_finds_the_first_quote_or_backslash(
            bytes in prop::collection::vec(prop::sample::select(&[b'"', b'\\', b'a', 0x01, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xa2, 0xdc, 0xff][..]), 0..40),
            from in 0usize..40,
        ) {
            let from = from.min(bytes.len());
            let naive = bytes[from..].iter().position(|&b| b == b'"' || b == b'\\').map(|i| from + i);
            prop_assert_eq!(quote_or_backslash(&bytes, from), naive);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn the_scan_agrees_with_serde_on_valid_documents((text, ws) in document(), fields in fields()) {
            let fast = agree(&fields, &text)?;
            // Plain documents must take the fast path, or the property above would hold by giving up.
            let plain = (ws.is_empty() || ws.trim().is_empty() && !ws.contains(['\t', '\r', '\n']))
                && !text.contains(r#"\u0061"#) && !text.contains(r#"e\"q"#)
                && read_document_serde(&fields, &text).is_ok();
            if plain {
                prop_assert!(fast, "the scan gave up on {}", text);
            }
        }

        #[test]
        fn the_scan_agrees_with_serde_on_broken_documents(
            (text, _) in document(),
            fields in fields(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>(),
                prop::sample::select(&['{', '}', '[', ']', ',', ':', '"', '\\', ' ', '0', '-', '.', 'e', '1', 'a', '\u{1}'][..])), 1..4),
        ) {
            let mut chars: Vec<char> = text.chars().collect();
            for (at, insert, c) in edits {
                if insert {
                    chars.insert(at.index(chars.len() + 1), c);
                } else if !chars.is_empty() {
                    chars.remove(at.index(chars.len()));
                }
            }
            let text: String = chars.into_iter().collect();
            agree(&fields, &text)?;
        }
    }
}
