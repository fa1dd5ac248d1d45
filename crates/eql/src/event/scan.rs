//! The projection's fast path: one validating scan over a document's text, without serde's visitor calls.
//!
//! Profiles of `esdetect test` put most of its CPU in reading each document, and most of a ~2.2 KB
//! Windows event is skipped. So the text is read in two stages: [`super::tokens`] finds where every token
//! starts, 64 bytes at a time, and this module walks those tokens — a skipped string is two tokens, its
//! bytes never looked at again — checking the grammar on the way. Keys that cannot be wanted are rejected
//! by their length before any hashing, and only the kept subtrees are handed to `serde_json` to build
//! their `Value`s.
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
use super::tokens;
use serde_json::{Map, Value};
use std::cell::RefCell;

/// The scan gave up: the serde path reads the text instead.
pub(super) struct GiveUp;

type Scanned<T> = Result<T, GiveUp>;

/// Deeper nesting is left to serde, whose recursion limit (128, counted over kept levels only) this
/// scan does not reproduce; staying far below it keeps the two paths' answers identical.
const MAX_DEPTH: usize = 100;

/// An index kept past this many token slots (~4 MB of text) is freed after use, not kept for the next.
const KEEP_TOKENS: usize = 1 << 22;

thread_local! {
    /// The index of the document being read, its buffers reused from one document to the next.
    static INDEX: RefCell<tokens::Index> = RefCell::new(tokens::Index::default());
}

/// [`super::projection::read_document`] when the scan is certain, else `None`.
pub(super) fn read_document(root: &Node, json: &str) -> Option<Document> {
    scan(json, |scan| {
        if scan.peek()? != b'{' {
            return Err(GiveUp);
        }
        scan.document(root)
    })
}

/// [`super::projection::project_str`] when the scan is certain, else `None`.
pub(super) fn project_str(root: &Node, json: &str) -> Option<Map<String, Value>> {
    scan(json, |scan| {
        if scan.peek()? != b'{' {
            return Err(GiveUp);
        }
        scan.project(root)
    })
}

/// Indexes `text`'s tokens and reads the one value `read` reads, which must be the whole text.
fn scan<T>(text: &str, read: impl FnOnce(&mut Scan<'_, '_>) -> Scanned<T>) -> Option<T> {
    INDEX.with(|cell| {
        let mut index = cell.try_borrow_mut().ok()?;
        let result = tokens::index(text, &mut index).and_then(|()| {
            let mut scan = Scan {
                text,
                bytes: text.as_bytes(),
                tokens: index.tokens(),
                next: 0,
                escapes: index.escapes(),
                next_escape: 0,
                depth: 0,
            };
            let value = read(&mut scan)?;
            scan.end()?;
            Ok(value)
        });
        if index.capacity() > KEEP_TOKENS {
            *index = tokens::Index::default();
        }
        result.ok()
    })
}

/// A walk over a text's tokens ([`super::tokens`]), `next` the index of the token at the cursor.
struct Scan<'a, 't> {
    text: &'a str,
    bytes: &'a [u8],
    tokens: &'t [u32],
    next: usize,
    /// The escapes, and the first of them not before the last string asked about ([`Scan::escaped`]).
    escapes: &'t [u32],
    next_escape: usize,
    depth: usize,
}

impl<'a> Scan<'a, '_> {
    /// The byte offset of the token at the cursor.
    #[inline]
    fn at(&self) -> Scanned<usize> {
        self.tokens.get(self.next).map(|&at| at as usize).ok_or(GiveUp)
    }

    /// The first byte of the token at the cursor.
    #[inline]
    fn peek(&self) -> Scanned<u8> {
        Ok(self.bytes[self.at()?])
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Scanned<()> {
        if self.peek()? == byte {
            self.next += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// No token after the document (only whitespace), as `serde_json::Deserializer::end` requires.
    fn end(&self) -> Scanned<()> {
        if self.next == self.tokens.len() {
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// The byte after the token before the cursor (the end of a container or string just passed).
    #[inline]
    fn after_previous(&self) -> usize {
        self.tokens[self.next - 1] as usize + 1
    }

    /// The string at the cursor: its raw text between the quotes (escapes were checked by the index).
    #[inline]
    fn string(&mut self) -> Scanned<&'a str> {
        let open = self.at()?;
        if self.bytes[open] != b'"' {
            return Err(GiveUp);
        }
        // Nothing inside a string is a token: the next one is its closing quote.
        let close = self.tokens[self.next + 1] as usize;
        self.next += 2;
        Ok(&self.text[open + 1..close])
    }

    /// Whether the string just read (`raw`, a slice of the text) holds an escape, so would have to be
    /// unescaped to be used as it is. Strings are asked about in text order, so one cursor over the
    /// escapes answers each in constant time.
    #[inline]
    fn escaped(&mut self, raw: &str) -> bool {
        let open = raw.as_ptr() as usize - self.text.as_ptr() as usize;
        let escapes = self.escapes;
        while escapes.get(self.next_escape).is_some_and(|&at| (at as usize) < open) {
            self.next_escape += 1;
        }
        escapes.get(self.next_escape).is_some_and(|&at| (at as usize) < open + raw.len())
    }

    /// The object at the cursor, each member handed to `member` with its key and the cursor at its
    /// value (which `member` must consume).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Scanned<()>) -> Scanned<()> {
        self.container(b'{', b'}', |scan| {
            let key = scan.member_key()?;
            member(scan, key)
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
        if self.peek()? == close {
            self.next += 1;
        } else {
            loop {
                entry(self)?;
                match self.peek()? {
                    b',' => self.next += 1,
                    byte if byte == close => {
                        self.next += 1;
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

    /// Passes over the value at the cursor, checking it is valid JSON, and returns the offset of the
    /// byte after it. One loop over the tokens, not a call per nested value: the open containers are
    /// the bits of a word (1 for an object), at most [`MAX_DEPTH`] of them.
    fn skip(&mut self) -> Scanned<usize> {
        let (mut objects, mut open) = (0u128, 0usize);
        loop {
            // A value at the cursor.
            let mut end = match self.peek()? {
                b'"' => {
                    self.next += 2;
                    self.after_previous()
                }
                b'{' => {
                    self.next += 1;
                    self.enter()?;
                    if self.peek()? != b'}' {
                        objects |= 1 << open;
                        open += 1;
                        self.member_key()?;
                        continue;
                    }
                    self.next += 1;
                    self.depth -= 1;
                    self.after_previous()
                }
                b'[' => {
                    self.next += 1;
                    self.enter()?;
                    if self.peek()? != b']' {
                        objects &= !(1 << open);
                        open += 1;
                        continue;
                    }
                    self.next += 1;
                    self.depth -= 1;
                    self.after_previous()
                }
                _ => self.scalar()?,
            };
            // After a value: the next one in the innermost container, or its end.
            loop {
                if open == 0 {
                    return Ok(end);
                }
                let object = objects >> (open - 1) & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.next += 1;
                        if object {
                            self.member_key()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return Err(GiveUp),
                }
                self.next += 1;
                end = self.after_previous();
                open -= 1;
                self.depth -= 1;
            }
        }
    }

    /// A member's key (its raw text) and colon, up to its value.
    #[inline]
    fn member_key(&mut self) -> Scanned<&'a str> {
        let key = self.string()?;
        self.eat(b':')?;
        Ok(key)
    }

    /// The number or literal at the cursor; returns the offset of the byte after it, which must end the
    /// run of bytes its token starts (`truex` and `1.2.3` are not values).
    fn scalar(&mut self) -> Scanned<usize> {
        let at = self.at()?;
        let end = match self.bytes[at] {
            b't' => self.literal(at, b"true")?,
            b'f' => self.literal(at, b"false")?,
            b'n' => self.literal(at, b"null")?,
            b'-' | b'0'..=b'9' => self.number(at)?,
            _ => return Err(GiveUp),
        };
        match self.bytes.get(end) {
            None | Some(b' ' | b',' | b'}' | b']' | b':' | b'{' | b'[' | b'"') => {
                self.next += 1;
                Ok(end)
            }
            Some(_) => Err(GiveUp),
        }
    }

    fn literal(&self, at: usize, word: &[u8]) -> Scanned<usize> {
        if self.bytes[at..].starts_with(word) {
            Ok(at + word.len())
        } else {
            Err(GiveUp)
        }
    }

    /// A number by JSON's grammar (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`) from `at`;
    /// returns the offset after it.
    fn number(&self, mut at: usize) -> Scanned<usize> {
        let byte = |at: usize| self.bytes.get(at).copied();
        let digits = |from: usize| from + self.bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
        if byte(at) == Some(b'-') {
            at += 1;
        }
        match byte(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => at = digits(at),
            _ => return Err(GiveUp),
        }
        if byte(at) == Some(b'.') {
            let end = digits(at + 1);
            if end == at + 1 {
                return Err(GiveUp);
            }
            at = end;
        }
        if matches!(byte(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(byte(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let end = digits(at);
            if end == at {
                return Err(GiveUp);
            }
            at = end;
        }
        Ok(at)
    }

    /// The value at the cursor, whole, as `serde_json` parses it (an unescaped string directly).
    fn whole(&mut self) -> Scanned<Value> {
        let start = self.at()?;
        let end = if self.peek()? == b'"' {
            let raw = self.string()?;
            if !self.escaped(raw) {
                return Ok(Value::String(raw.to_owned()));
            }
            self.after_previous()
        } else {
            self.skip()?
        };
        serde_json::from_str(&self.text[start..end]).map_err(|_| GiveUp)
    }

    /// The object at the cursor with only the members `node` wants (see [`super::projection`]).
    fn project(&mut self, node: &Node) -> Scanned<Map<String, Value>> {
        // Sized once for the keys that may be kept (a handful; capped for huge field sets), not grown on inserts.
        let mut out = Map::with_capacity(node.len().min(16));
        self.object(|scan, key| {
            if scan.escaped(key) {
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
                _ => {
                    scan.skip()?;
                }
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
        let (mut index, mut id, mut projection) = (None, None, None);
        self.object(|scan, key| {
            if scan.escaped(key) {
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
                _ => {
                    scan.skip()?;
                }
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
