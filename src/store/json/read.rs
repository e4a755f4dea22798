//! A small JSON reader that builds a [`Map`] directly, as sops' token-stream decoder sees JSON.
//!
//! Why not serde_json: its `Value` drops duplicate member names (sops keeps them as separate
//! items) and its errors may quote input text. This reader keeps every member in order, types
//! numbers as sops 3.13.2 does (int64 when the literal is an integer that fits, float otherwise),
//! decodes strings like Go (`\u` surrogate pairs combined, lone surrogates and invalid UTF-8
//! bytes each become U+FFFD), and reports errors by line and column only.

use crate::store::StoreError;
use crate::tree::{List, ListItem, Map, MapItem, Node, Pair, Value};

/// Deeper nesting is refused: the crypt walk and the emitters recurse over the tree, and no
/// real configuration file comes near this.
pub(crate) const MAX_DEPTH: usize = 1000;

/// Parses a whole JSON text whose top level must be an object.
pub(super) fn parse_document(input: &[u8]) -> Result<Map, StoreError> {
    let mut reader = Reader { input, pos: 0 };
    reader.skip_whitespace();
    if reader.pos == input.len() {
        return Err(StoreError::Empty);
    }
    let map = match reader.value()? {
        Node::Map(map) => map,
        other => {
            return Err(StoreError::Structure {
                path: "(top level)".into(),
                message: format!(
                    "sops only supports JSON files with a top-level object (starting with '{{'), \
                     not {}; wrap it in an object, e.g. {{\"data\": ...}}",
                    kind_of(&other)
                ),
            })
        }
    };
    reader.skip_whitespace();
    if reader.pos != input.len() {
        return Err(reader.error_at(reader.pos, "unexpected data after the top-level object"));
    }
    Ok(map)
}

fn kind_of(node: &Node) -> &'static str {
    match node {
        Node::Map(_) => "an object",
        Node::List(_) => "an array",
        Node::Scalar(s) => match s.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            _ => "a string",
        },
    }
}

/// A container being read: its items so far (and, for an object, the key of the member whose
/// value comes next).
enum Open {
    Object { items: Vec<MapItem>, key: String },
    Array { items: Vec<ListItem> },
}

pub(crate) struct Reader<'a> {
    pub(crate) input: &'a [u8],
    pub(crate) pos: usize,
}

impl Reader<'_> {
    /// A syntax error at a byte offset, as a 1-based line and column (counted in characters).
    /// Computed only on failure, so the happy path never tracks lines.
    pub(crate) fn error_at(&self, offset: usize, message: &str) -> StoreError {
        let before = &self.input[..offset.min(self.input.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        // UTF-8 continuation bytes do not start a character.
        let column = 1 + before[line_start..]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count();
        StoreError::Syntax {
            line,
            column,
            message: message.to_string(),
        }
    }

    pub(crate) fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn unexpected(&self, expected: &str) -> StoreError {
        let message = if self.pos >= self.input.len() {
            format!("unexpected end of input, expected {expected}")
        } else {
            // The offending character is not quoted: it may be part of a secret value.
            format!("unexpected character, expected {expected}")
        };
        self.error_at(self.pos, &message)
    }

    /// One JSON value, nested containers included. Iterative, with the open containers on an
    /// explicit stack, so hostile nesting costs heap (bounded by [`MAX_DEPTH`]), never the
    /// call stack.
    pub(crate) fn value(&mut self) -> Result<Node, StoreError> {
        let mut open: Vec<Open> = Vec::new();
        loop {
            self.skip_whitespace();
            let mut node = match self.peek() {
                Some(container @ (b'{' | b'[')) => {
                    if open.len() >= MAX_DEPTH {
                        return Err(self.error_at(
                            self.pos,
                            &format!(
                                "objects and arrays are nested more than {MAX_DEPTH} levels deep"
                            ),
                        ));
                    }
                    self.pos += 1;
                    self.skip_whitespace();
                    let (close, empty) = if container == b'{' {
                        (b'}', Node::Map(Map::new()))
                    } else {
                        (b']', Node::List(List::default()))
                    };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        empty
                    } else {
                        open.push(if container == b'{' {
                            Open::Object {
                                items: Vec::new(),
                                key: self.member_key()?,
                            }
                        } else {
                            Open::Array { items: Vec::new() }
                        });
                        continue;
                    }
                }
                Some(b'"') => Node::scalar(Value::Str(self.string()?)),
                Some(b'-' | b'0'..=b'9') => Node::scalar(self.number()?),
                Some(b't') => self.literal(b"true", Value::Bool(true))?,
                Some(b'f') => self.literal(b"false", Value::Bool(false))?,
                Some(b'n') => self.literal(b"null", Value::Null)?,
                _ => return Err(self.unexpected("a value")),
            };
            // Hand the finished value to its container; close every container that ends here.
            loop {
                let Some(mut container) = open.pop() else {
                    return Ok(node);
                };
                let closed = match &mut container {
                    Open::Object { items, key } => {
                        items.push(MapItem::Pair(Pair {
                            key: std::mem::take(key),
                            value: node,
                        }));
                        self.skip_whitespace();
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                *key = self.member_key()?;
                                false
                            }
                            Some(b'}') => true,
                            _ => return Err(self.unexpected("',' or '}' after an object member")),
                        }
                    }
                    Open::Array { items } => {
                        items.push(ListItem::Node(node));
                        self.skip_whitespace();
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                false
                            }
                            Some(b']') => true,
                            _ => return Err(self.unexpected("',' or ']' after an array element")),
                        }
                    }
                };
                if !closed {
                    open.push(container);
                    break; // on to the container's next value
                }
                self.pos += 1;
                // Growth leaves up to half of a vector unused; give it back (in place).
                node = match container {
                    Open::Object { mut items, .. } => {
                        items.shrink_to_fit();
                        Node::Map(Map(items))
                    }
                    Open::Array { mut items } => {
                        items.shrink_to_fit();
                        Node::List(List(items))
                    }
                };
            }
        }
    }

    /// An object member's `"key":`, leaving the position at its value.
    fn member_key(&mut self) -> Result<String, StoreError> {
        self.skip_whitespace();
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a string as an object key"));
        }
        let key = self.string()?;
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.unexpected("':' after an object key"));
        }
        self.pos += 1;
        Ok(key)
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Node, StoreError> {
        if self.input[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(Node::scalar(value))
        } else {
            Err(self.error_at(self.pos, "invalid literal, expected true, false or null"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number. Integer literals that fit in i64 are ints (sops 3.13.2 `normalizeJSONNumber`);
    /// anything else is a float, and a float beyond f64's range is an error, as Go's
    /// `ParseFloat` reports it.
    pub(crate) fn number(&mut self) -> Result<Value, StoreError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.unexpected("a digit")),
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            integral = false;
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.unexpected("a digit after the decimal point"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integral = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.unexpected("a digit in the exponent"));
            }
        }
        // The grammar above admits only ASCII, so this cannot fail; stay panic-free regardless.
        let text = std::str::from_utf8(&self.input[start..self.pos])
            .map_err(|_| self.error_at(start, "invalid number"))?;
        if integral {
            if let Ok(int) = text.parse::<i64>() {
                return Ok(Value::Int(int));
            }
        }
        match text.parse::<f64>() {
            Ok(float) if float.is_finite() => Ok(Value::Float(float)),
            _ => Err(self.error_at(start, "number is out of range for a 64-bit float")),
        }
    }

    /// A string, starting at its opening quote.
    fn string(&mut self) -> Result<String, StoreError> {
        let open = self.pos;
        let start = open + 1;
        let input = self.input;
        let end = start + plain_run(&input[start.min(input.len())..]);
        // Fast path: no escapes, valid UTF-8 — one copy.
        if input.get(end) == Some(&b'"') {
            if let Ok(text) = std::str::from_utf8(&input[start..end]) {
                self.pos = end + 1;
                return Ok(text.to_owned());
            }
        }
        let mut out = String::with_capacity(end - start + 16);
        let mut at = start;
        loop {
            let run_start = at;
            at += plain_run(&input[at.min(input.len())..]);
            push_coerced(&mut out, &input[run_start..at]);
            match input.get(at) {
                None => return Err(self.error_at(open, "unterminated string")),
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(out);
                }
                Some(b'\\') => at = self.escape(at, &mut out)?,
                Some(_) => {
                    return Err(self.error_at(at, "control character inside a string"));
                }
            }
        }
    }

    /// Decodes the escape at `at` (its backslash) into `out`; returns the offset after it.
    pub(crate) fn escape(&self, at: usize, out: &mut String) -> Result<usize, StoreError> {
        let simple = match self.input.get(at + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let first = self
                    .hex4(at + 2)
                    .ok_or_else(|| self.error_at(at, "invalid \\u escape: needs 4 hex digits"))?;
                let mut next = at + 6;
                let ch = if (0xD800..0xDC00).contains(&first) {
                    // A high surrogate combines with an immediately following low one; Go
                    // turns any other surrogate into U+FFFD and leaves the next escape alone.
                    let low = match (self.input.get(next), self.input.get(next + 1)) {
                        (Some(b'\\'), Some(b'u')) => self.hex4(next + 2),
                        _ => None,
                    };
                    match low {
                        Some(low @ 0xDC00..=0xDFFF) => {
                            next += 6;
                            char::from_u32(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00))
                        }
                        _ => None,
                    }
                } else {
                    char::from_u32(first)
                };
                out.push(ch.unwrap_or(char::REPLACEMENT_CHARACTER));
                return Ok(next);
            }
            None => return Err(self.error_at(at, "unterminated string")),
            Some(_) => return Err(self.error_at(at, "invalid escape sequence in a string")),
        };
        out.push(simple);
        Ok(at + 2)
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.input.get(at..at + 4)?;
        digits.iter().try_fold(0u32, |acc, &b| {
            let digit = (b as char).to_digit(16)?;
            Some(acc * 16 + digit)
        })
    }
}

/// The length of the longest prefix of `bytes` without a quote, a backslash or a control
/// character (what ends a run of a string's literal text).
///
/// Callers pass the rest of the input. Its first eight bytes are looked at as one word (most
/// strings are short keys, which end there); after them, [`RUN_STEP`] bytes at a time: a
/// fixed-size chunk folded with a non-short-circuit `|` of one comparison per byte, which LLVM
/// turns into a handful of SSE2 compares and one mask test per 16 bytes (x86-64 baseline, no
/// `target-cpu`). Only the chunk that holds the end is then searched, a word at a time. Fewer
/// than [`RUN_STEP`] bytes are left only at the end of the input; they are searched byte by byte.
pub(crate) fn plain_run(bytes: &[u8]) -> usize {
    let Some((head, tail)) = bytes.split_first_chunk::<8>() else {
        return bytes
            .iter()
            .position(|&b| ends_run(b))
            .unwrap_or(bytes.len());
    };
    if let Some(end) = word_end(*head) {
        return end;
    }
    let (chunks, rest) = tail.as_chunks::<RUN_STEP>();
    for (i, chunk) in chunks.iter().enumerate() {
        if chunk.iter().fold(false, |seen, &b| seen | ends_run(b)) {
            return 8 + i * RUN_STEP + first_end(chunk);
        }
    }
    8 + chunks.len() * RUN_STEP + rest.iter().position(|&b| ends_run(b)).unwrap_or(rest.len())
}

/// Bytes [`plain_run`] looks at per step: two SSE2 vectors. A string is typically a short key
/// or an `ENC[…]` value of some 150 bytes; a wider step would cost more in the chunk where the
/// run ends than it saves before it.
const RUN_STEP: usize = 32;

/// Whether a byte ends a run: a quote, a backslash or a control character. Written without
/// branches (`min` of three terms, zero exactly when one of them holds: `b ^ b'"'` is zero for a
/// quote only, `b ^ b'\\'` for a backslash only, `b - 0x1F` saturates to zero below 0x20 only)
/// so that a fold of it over a chunk vectorises: two XORs, a saturating subtraction, two
/// minimums and one compare with zero per vector.
#[inline(always)]
fn ends_run(b: u8) -> bool {
    (b ^ b'"').min(b ^ b'\\').min(b.saturating_sub(0x1F)) == 0
}

/// The offset of the first byte of `chunk` that ends a run ([`RUN_STEP`] when none does), a
/// word at a time.
fn first_end(chunk: &[u8; RUN_STEP]) -> usize {
    let (words, _) = chunk.as_chunks::<8>();
    for (i, word) in words.iter().enumerate() {
        if let Some(end) = word_end(*word) {
            return i * 8 + end;
        }
    }
    RUN_STEP
}

/// The offset of the first byte of `word` that ends a run, if one does. The flags below are
/// exact up to that byte: a subtraction borrows across bytes only from a byte that is flagged
/// itself, so a false flag (from a borrow) only ever stands above a true one, and the lowest
/// flag is the answer.
#[inline(always)]
fn word_end(word: [u8; 8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `v` that is zero (exact up to the first one).
    let zeros = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let word = u64::from_le_bytes(word);
    // Bytes below 0x20: `!word` drops bytes of 0x80 and above, whose difference may have the
    // high bit set too.
    let flags = (word.wrapping_sub(ONES * 0x20) & !word & HIGH)
        | zeros(word ^ (ONES * u64::from(b'"')))
        | zeros(word ^ (ONES * u64::from(b'\\')));
    // Little-endian: the first byte is the lowest.
    (flags != 0).then(|| (flags.trailing_zeros() / 8) as usize)
}

/// Appends bytes as Go's decoder does: valid UTF-8 as is, each invalid byte as U+FFFD.
pub(crate) fn push_coerced(out: &mut String, mut bytes: &[u8]) {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.push_str(text);
                return;
            }
            Err(err) => {
                let valid = err.valid_up_to();
                // `valid_up_to` marks a proven UTF-8 prefix, so this conversion cannot fail.
                out.push_str(std::str::from_utf8(&bytes[..valid]).unwrap_or_default());
                out.push(char::REPLACEMENT_CHARACTER);
                // Go's utf8.DecodeRune consumes one byte of an invalid sequence at a time.
                bytes = &bytes[valid + 1..];
            }
        }
    }
}

#[cfg(test)]
mod plain_run_tests {
    use super::plain_run;

    /// What [`plain_run`] must answer, byte by byte.
    fn expected(bytes: &[u8]) -> usize {
        bytes
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(bytes.len())
    }

    #[test]
    fn plain_run_stops_at_the_first_quote_backslash_or_control_character() {
        // Every byte value as the end of a run, at every offset of a chunk and of the bytes
        // after a few chunks, behind plain bytes that come near the edges (ASCII and not),
        // with any bytes after it.
        let plain: Vec<u8> = (0x20..=0xFFu8)
            .filter(|&b| b != b'"' && b != b'\\')
            .collect();
        for len in 0..100usize {
            for end in 0..=0xFFu8 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|i| plain[(i * 7 + end as usize) % plain.len()])
                    .collect();
                bytes.push(end);
                bytes.extend_from_slice(b"\\\"\x00\x1f");
                assert_eq!(plain_run(&bytes), expected(&bytes), "{len} {end:#x}");
                bytes.truncate(len + 1);
                assert_eq!(plain_run(&bytes), expected(&bytes), "{len} {end:#x}");
                bytes.truncate(len);
                assert_eq!(plain_run(&bytes), expected(&bytes), "{len}");
            }
        }
        // Random bytes, to mix several ends in one word.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 80) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| match (state >> (i % 60)) % 9 {
                    0 => (state >> (i % 50)) as u8 & 0x3F,
                    1 => (state >> (i % 40)) as u8 | 0x80,
                    _ => b'a' + (i as u8 % 26),
                })
                .collect();
            assert_eq!(plain_run(&bytes), expected(&bytes), "{bytes:?}");
        }
    }
}
