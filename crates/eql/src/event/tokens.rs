//! The projection scan's first stage: where each JSON token of a text starts, found 64 bytes at a time.
//!
//! The scan (`super::scan`) used to walk a document byte by byte, and most of its time went into the
//! ~165 strings of a Windows event that it only skipped. Here each 64-byte block is classified at once
//! (SSE2 on x86_64, 16 bytes per instruction; a byte loop elsewhere) into one bit per byte: quote,
//! backslash, structural character (`{}[]:,`), space, control character. From those bits, carried across
//! blocks: which quotes are escaped (a backslash that is not itself escaped escapes the next byte), which
//! bytes lie inside strings (a prefix XOR of the real quotes) and where runs of other bytes outside
//! strings (numbers, `true`, …) begin. The tokens are the structural characters outside strings, every
//! real quote (a string is the pair of its quotes) and the first byte of every such run; the walk then
//! never looks at the bytes of a skipped string or at whitespace.
//!
//! What the byte scan checked on the way is checked here, as serde checks it: every escape is a
//! backslash followed by one of `"\/bfnrt`, or by `u` and four hex digits. Raw control characters
//! (which serde tells apart by where they are) and a text that ends inside a string make it give up.

use super::scan::GiveUp;

/// One bit per byte of a 64-byte block, bit `i` for byte `i`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Classes {
    quote: u64,
    backslash: u64,
    /// `{`, `}`, `[`, `]`, `:`, `,`.
    structural: u64,
    space: u64,
    /// Bytes below 0x20.
    control: u64,
}

/// Where a text's tokens and escapes are.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// The byte offset of every token in `slots[..count]`, in order (see the module comment). The slots
    /// only grow, to one per byte of the longest text so far, so the loop below stores without checking
    /// capacity and nothing is cleared between texts.
    slots: Vec<u32>,
    count: usize,
    /// The byte offset of every backslash that starts an escape, in order: whether a string holds an
    /// escape is a look here, not a search of its bytes.
    escapes: Vec<u32>,
}

impl Index {
    /// The byte offset of every token of the text last indexed, in order.
    pub(super) fn tokens(&self) -> &[u32] {
        &self.slots[..self.count]
    }

    /// The byte offset of every backslash that starts an escape in the text last indexed, in order.
    pub(super) fn escapes(&self) -> &[u32] {
        &self.escapes
    }

    /// The room the index holds (a token slot per byte of the longest text indexed so far).
    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }
}

/// Indexes `text` into `index` (its previous contents replaced).
pub(super) fn index(text: &str, index: &mut Index) -> Result<(), GiveUp> {
    let bytes = text.as_bytes();
    if u32::try_from(bytes.len()).is_err() {
        return Err(GiveUp);
    }
    let Index { slots, count: found_count, escapes } = index;
    escapes.clear();
    *found_count = 0;
    let mut count = 0;
    if slots.len() < bytes.len() {
        slots.resize(bytes.len(), 0);
    }
    // Carried from one block to the next: all ones while inside a string; 1 when the block's first byte
    // is escaped by the previous block's last; 1 when the previous block ended in a run of scalar bytes.
    let (mut in_string, mut escape_carry, mut scalar_carry) = (0u64, 0u64, 0u64);
    for (n, chunk) in bytes.chunks(64).enumerate() {
        let base = n * 64;
        let classes = match <&[u8; 64]>::try_from(chunk) {
            Ok(block) => classify(block),
            Err(_) => {
                // The last, short block: padded with spaces, which are no tokens.
                let mut block = [b' '; 64];
                block[..chunk.len()].copy_from_slice(chunk);
                classify(&block)
            }
        };
        if classes.control != 0 {
            return Err(GiveUp);
        }
        let mut escaped = escape_carry;
        escape_carry = 0;
        let mut backslashes = classes.backslash;
        while backslashes != 0 {
            let i = backslashes.trailing_zeros();
            backslashes &= backslashes - 1;
            if escaped >> i & 1 == 1 {
                continue;
            }
            if !escape_is_valid(bytes, base + i as usize) {
                return Err(GiveUp);
            }
            escapes.push((base + i as usize) as u32);
            if i == 63 {
                escape_carry = 1;
            } else {
                escaped |= 1 << (i + 1);
            }
        }
        let quotes = classes.quote & !escaped;
        // Set from an opening quote up to (not including) its closing quote.
        let strings = prefix_xor(quotes) ^ in_string;
        in_string = ((strings as i64) >> 63) as u64;
        let scalars = !(classes.structural | classes.space | strings | quotes);
        let scalar_starts = scalars & !(scalars << 1 | scalar_carry);
        scalar_carry = scalars >> 63;
        let mut found = (classes.structural & !strings) | quotes | scalar_starts;
        while found != 0 {
            slots[count] = (base + found.trailing_zeros() as usize) as u32;
            count += 1;
            found &= found - 1;
        }
    }
    *found_count = count;
    if in_string != 0 || escape_carry != 0 {
        return Err(GiveUp);
    }
    Ok(())
}

/// Whether the backslash at `at` starts an escape serde accepts in a string it skips.
fn escape_is_valid(bytes: &[u8], at: usize) -> bool {
    match bytes.get(at + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => true,
        Some(b'u') => bytes.get(at + 2..at + 6).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
        _ => false,
    }
}

/// Bit `i` of the result is the parity of the set bits of `x` at `0..=i`.
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

#[inline]
fn classify(block: &[u8; 64]) -> Classes {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `classify_sse2` needs only SSE2, which this build's target enables (the cfg above).
        unsafe { classify_sse2(block) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        classify_bytes(block)
    }
}

/// [`classify`] one byte at a time: the portable path, and the reference for the SSE2 one.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn classify_bytes(block: &[u8; 64]) -> Classes {
    let mut classes = Classes::default();
    for (i, &byte) in block.iter().enumerate() {
        let bit = 1u64 << i;
        match byte {
            b'"' => classes.quote |= bit,
            b'\\' => classes.backslash |= bit,
            b'{' | b'}' | b'[' | b']' | b':' | b',' => classes.structural |= bit,
            b' ' => classes.space |= bit,
            0..=0x1f => classes.control |= bit,
            _ => {}
        }
    }
    classes
}

/// [`classify`] sixteen bytes per instruction. The structural characters are found with four
/// comparisons, not six: `[` and `]` are `{` and `}` without the 0x20 bit, so `byte | 0x20` is one of
/// `{`, `}`, `:`, `,` exactly for the six of them and four control characters, which are masked out.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn classify_sse2(block: &[u8; 64]) -> Classes {
    use std::arch::x86_64::*;
    let mut classes = Classes::default();
    let splat = |byte: u8| _mm_set1_epi8(byte as i8);
    let bits = |lanes: __m128i| _mm_movemask_epi8(lanes) as u16 as u64;
    for (k, lane) in block.chunks_exact(16).enumerate() {
        let half = |from: usize| i64::from_le_bytes(lane[from..from + 8].try_into().expect("eight bytes"));
        let x = _mm_set_epi64x(half(8), half(0));
        let y = _mm_or_si128(x, splat(0x20));
        let structural = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(y, splat(b'{')), _mm_cmpeq_epi8(y, splat(b'}'))),
            _mm_or_si128(_mm_cmpeq_epi8(y, splat(b':')), _mm_cmpeq_epi8(y, splat(b','))),
        );
        // `min(x, 0x1f) == x` is `x <= 0x1f` for unsigned bytes.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(x, splat(0x1f)), x);
        let shift = 16 * k;
        classes.quote |= bits(_mm_cmpeq_epi8(x, splat(b'"'))) << shift;
        classes.backslash |= bits(_mm_cmpeq_epi8(x, splat(b'\\'))) << shift;
        classes.structural |= bits(_mm_andnot_si128(control, structural)) << shift;
        classes.space |= bits(_mm_cmpeq_epi8(x, splat(b' '))) << shift;
        classes.control |= bits(control) << shift;
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The tokens by a byte-at-a-time reading of the same rules.
    fn naive(text: &str) -> Option<Vec<u32>> {
        let bytes = text.as_bytes();
        let (mut out, mut i, mut previous_scalar) = (Vec::new(), 0, false);
        while i < bytes.len() {
            let byte = bytes[i];
            let scalar = !matches!(byte, b'{' | b'}' | b'[' | b']' | b':' | b',' | b' ' | b'"');
            match byte {
                0..=0x1f => return None,
                b'{' | b'}' | b'[' | b']' | b':' | b',' => out.push(i as u32),
                b'"' => {
                    out.push(i as u32);
                    i += 1;
                    loop {
                        match bytes.get(i)? {
                            b'"' => break,
                            b'\\' if escape_is_valid(bytes, i) => i += 2,
                            b'\\' => return None,
                            0..=0x1f => return None,
                            _ => i += 1,
                        }
                    }
                    out.push(i as u32);
                }
                b'\\' if !escape_is_valid(bytes, i) => return None,
                // Outside a string too, a backslash escapes the next byte (the text is invalid either way).
                b'\\' => {
                    if !previous_scalar {
                        out.push(i as u32);
                    }
                    previous_scalar = true;
                    i += 2;
                    continue;
                }
                _ if scalar && !previous_scalar => out.push(i as u32),
                _ => {}
            }
            previous_scalar = scalar && byte != b'"';
            i += 1;
        }
        Some(out)
    }

    fn tokens(text: &str) -> Option<Vec<u32>> {
        let mut out = Index::default();
        index(text, &mut out).ok().map(|_| out.tokens().to_vec())
    }

    #[test]
    fn a_small_document() {
        let text = r#"{"a" : [1, true,"x\"y"], "b\\":{}}"#;
        let starts: Vec<char> = tokens(text).unwrap().iter().map(|&at| text.as_bytes()[at as usize] as char).collect();
        assert_eq!(starts.iter().collect::<String>(), r#"{"":[1,t,""],"":{}}"#);
        assert_eq!(tokens(r#"{"a":"unterminated}"#), None);
        assert_eq!(tokens(r#"{"a":"\q"}"#), None);
        assert_eq!(tokens("{\"a\":\t1}"), None);
    }

    #[test]
    fn escapes_and_strings_across_block_boundaries() {
        for pad in 55..70 {
            for tail in [r#""\\""#, r#""\"""#, r#""\\\"\\""#, r#""\u00e9x""#, r#""ab""#, "12345", "true"] {
                let text = format!(r#"{{"{}":{tail}, "k": [1,2]}}"#, "p".repeat(pad));
                assert_eq!(tokens(&text), naive(&text), "{text}");
            }
        }
    }

    fn alphabet() -> impl Strategy<Value = u8> {
        prop::sample::select(&[b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b' ', b'a', b'u', b'0', b'n', 0x01, 0x0c, 0x1a, 0x1f,
            0x20, 0x3a, 0x5b, 0x7b, 0x7f, 0x80, 0xbb, 0xdb, 0xfb, 0xff][..])
    }

    proptest! {
        #[test]
        fn sse2_and_byte_classification_agree(block in prop::collection::vec(alphabet(), 64)) {
            let block: [u8; 64] = block.try_into().unwrap();
            prop_assert_eq!(classify(&block), classify_bytes(&block));
        }

        #[test]
        fn tokens_agree_with_a_byte_reading(
            text in prop::collection::vec(prop::sample::select(&["\"", "\\", "\\\\", "\\\"", "\\u00e9", "{", "}", "[", "]", ":",
                ",", " ", "a", "1", "-", "é", "true", "\u{1}"][..]), 0..120),
        ) {
            let text: String = text.concat();
            prop_assert_eq!(tokens(&text), naive(&text), "{:?}", text);
        }
    }
}
