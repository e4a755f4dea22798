//! The JSON emitter: byte for byte what sops writes (its hand-built `encodeTree` passed through
//! Go's `json.Indent`), straight into one buffer.
//!
//! When given a writer, the buffer is handed to it every [`SPILL_AT`] bytes, so a large file is
//! never held whole in memory.
//!
//! Go's layout: `{`/`[` then one member per line at one more indent level, `": "` between key and
//! value, `{}` and `[]` when empty; comments are skipped. Strings are escaped as Go's
//! `json.Marshal` does with HTML escaping on, floats use its `'f'`/`'e'` switch.

use super::read::MAX_DEPTH;
use crate::crypt::display_path;
use crate::tree::{format_time, ListItem, Map, Node, PathStep, Value};

/// Why a tree could not be written: a message and the key path, innermost step first (filled in
/// while the error travels up, so the happy path builds no paths).
pub(crate) struct WriteError {
    reversed_path: Vec<PathStep>,
    message: &'static str,
}

impl WriteError {
    fn new(message: &'static str) -> Self {
        WriteError {
            reversed_path: Vec::new(),
            message,
        }
    }

    fn under(mut self, step: PathStep) -> Self {
        self.reversed_path.push(step);
        self
    }

    /// `message at ["a"]["b"]`.
    pub(crate) fn describe(mut self) -> String {
        self.reversed_path.reverse();
        format!("{} at {}", self.message, display_path(&self.reversed_path))
    }
}

/// How much output a streaming writer gathers before writing it out.
pub(crate) const SPILL_AT: usize = 64 * 1024;

pub(crate) struct Writer<'w> {
    pub(crate) out: Vec<u8>,
    /// One level of indentation: a tab or n spaces.
    unit: Vec<u8>,
    /// Where full buffers go, when streaming; the first write error stops the streaming and
    /// is kept for the caller.
    spill: Option<&'w mut dyn std::io::Write>,
    pub(super) spill_error: Option<std::io::Error>,
}

impl<'w> Writer<'w> {
    pub(crate) fn new(indent: Option<usize>, capacity: usize) -> Self {
        Writer {
            out: Vec::with_capacity(capacity),
            unit: match indent {
                None => b"\t".to_vec(),
                Some(n) => vec![b' '; n],
            },
            spill: None,
            spill_error: None,
        }
    }

    /// A writer that hands its output to `sink` as it goes ([`Writer::finish`] writes the rest).
    pub(super) fn streaming(indent: Option<usize>, sink: &'w mut dyn std::io::Write) -> Self {
        Writer {
            spill: Some(sink),
            ..Writer::new(indent, 2 * SPILL_AT)
        }
    }

    fn maybe_spill(&mut self) {
        if self.out.len() >= SPILL_AT {
            self.spill_now();
        }
    }

    fn spill_now(&mut self) {
        if let Some(sink) = self.spill.as_mut() {
            if let Err(err) = sink.write_all(&self.out) {
                self.spill_error = Some(err);
                self.spill = None;
            }
            self.out.clear();
        }
    }

    /// Writes what is left to the sink; the first write error, if any.
    pub(super) fn finish(mut self) -> std::io::Result<()> {
        self.spill_now();
        match self.spill_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    pub(crate) fn newline(&mut self, depth: usize) {
        self.out.push(b'\n');
        for _ in 0..depth {
            self.out.extend_from_slice(&self.unit);
        }
    }

    /// An object from the map's pairs, plus `extra` as its last member (the `sops` block).
    pub(crate) fn object(
        &mut self,
        map: &Map,
        extra: Option<(&str, &Map)>,
        depth: usize,
    ) -> Result<(), WriteError> {
        if depth >= MAX_DEPTH {
            return Err(WriteError::new("the tree is nested too deeply"));
        }
        self.out.push(b'{');
        let mut empty = true;
        for pair in map.pairs() {
            self.member_key(&pair.key, empty, depth);
            empty = false;
            self.node(&pair.value, depth + 1)
                .map_err(|e| e.under(PathStep::Key(pair.key.clone())))?;
        }
        if let Some((key, extra_map)) = extra {
            self.member_key(key, empty, depth);
            empty = false;
            self.object(extra_map, None, depth + 1)
                .map_err(|e| e.under(PathStep::Key(key.to_string())))?;
        }
        if !empty {
            self.newline(depth);
        }
        self.out.push(b'}');
        Ok(())
    }

    /// The separator, line break and `"key": ` before a member's value.
    pub(crate) fn member_key(&mut self, key: &str, first: bool, depth: usize) {
        self.maybe_spill();
        if !first {
            self.out.push(b',');
        }
        self.newline(depth + 1);
        self.string(key.as_bytes());
        self.out.extend_from_slice(b": ");
    }

    fn array(&mut self, items: &[ListItem], depth: usize) -> Result<(), WriteError> {
        if depth >= MAX_DEPTH {
            return Err(WriteError::new("the tree is nested too deeply"));
        }
        self.out.push(b'[');
        let mut index = 0;
        for item in items {
            let ListItem::Node(node) = item else { continue };
            self.maybe_spill();
            if index > 0 {
                self.out.push(b',');
            }
            self.newline(depth + 1);
            self.node(node, depth + 1)
                .map_err(|e| e.under(PathStep::Index(index)))?;
            index += 1;
        }
        if index > 0 {
            self.newline(depth);
        }
        self.out.push(b']');
        Ok(())
    }

    pub(super) fn node(&mut self, node: &Node, depth: usize) -> Result<(), WriteError> {
        match node {
            Node::Map(map) => self.object(map, None, depth),
            Node::List(list) => self.array(&list.0, depth),
            Node::Scalar(scalar) => self.value(&scalar.value),
        }
    }

    pub(crate) fn value(&mut self, value: &Value) -> Result<(), WriteError> {
        match value {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Int(int) => self.out.extend_from_slice(int.to_string().as_bytes()),
            Value::Float(float) => {
                let text = go_json_float(*float)
                    .ok_or_else(|| WriteError::new("NaN and infinity cannot be written as JSON"))?;
                self.out.extend_from_slice(text.as_bytes());
            }
            Value::Str(text) => self.string(text.as_bytes()),
            // sops holds binary data as a Go string; json.Marshal writes its invalid UTF-8
            // bytes as \ufffd, and so does `string`.
            Value::Bytes(bytes) => self.string(bytes),
            Value::Time(time) => self.string(format_time(time).as_bytes()),
        }
        Ok(())
    }

    /// A quoted string, escaped as Go's `json.Marshal` (HTML-safe) does.
    pub(crate) fn string(&mut self, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.out.reserve(bytes.len() + 2);
        self.out.push(b'"');
        let mut rest = bytes;
        while !rest.is_empty() {
            // Copy the longest run that needs no escaping in one go.
            let safe = safe_prefix(rest);
            self.out.extend_from_slice(&rest[..safe]);
            rest = &rest[safe..];
            let Some(&b) = rest.first() else { break };
            if b < 0x80 {
                match b {
                    b'"' => self.out.extend_from_slice(b"\\\""),
                    b'\\' => self.out.extend_from_slice(b"\\\\"),
                    0x08 => self.out.extend_from_slice(b"\\b"),
                    0x0C => self.out.extend_from_slice(b"\\f"),
                    b'\n' => self.out.extend_from_slice(b"\\n"),
                    b'\r' => self.out.extend_from_slice(b"\\r"),
                    b'\t' => self.out.extend_from_slice(b"\\t"),
                    // Other control characters and the HTML-sensitive <, >, &.
                    _ => self.out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 0xF)],
                    ]),
                }
                rest = &rest[1..];
                continue;
            }
            let width = utf8_width(rest);
            match width.and_then(|w| std::str::from_utf8(&rest[..w]).ok()) {
                Some("\u{2028}") => self.out.extend_from_slice(b"\\u2028"),
                Some("\u{2029}") => self.out.extend_from_slice(b"\\u2029"),
                Some(ch) => self.out.extend_from_slice(ch.as_bytes()),
                None => {
                    self.out.extend_from_slice(b"\\ufffd");
                    rest = &rest[1..];
                    continue;
                }
            }
            rest = &rest[width.unwrap_or(1)..];
        }
        self.out.push(b'"');
    }
}

/// Bytes the string escaper must look at: ASCII that Go escapes, and every non-ASCII byte
/// (to check UTF-8 and catch U+2028/U+2029).
fn needs_escape(b: u8) -> bool {
    !(0x20..0x80).contains(&b) || matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&')
}

/// The length of the longest prefix of `bytes` without a byte that [`needs_escape`], eight
/// bytes at a time.
fn safe_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Nonzero when some byte of `v` is zero (exact as a whole, though not per byte).
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let special = (word & HIGH)
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGH)
            | has_zero(word ^ (ONES * u64::from(b'"')))
            | has_zero(word ^ (ONES * u64::from(b'\\')))
            | has_zero(word ^ (ONES * u64::from(b'<')))
            | has_zero(word ^ (ONES * u64::from(b'>')))
            | has_zero(word ^ (ONES * u64::from(b'&')));
        if special != 0 {
            // Find it among these eight, or go on after them.
            match chunk.iter().position(|&b| needs_escape(b)) {
                Some(i) => return at + i,
                None => {
                    at += 8;
                    continue;
                }
            }
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| needs_escape(b))
        .unwrap_or(bytes.len() - at)
}

/// The length of the UTF-8 sequence a non-ASCII lead byte announces, if the input holds it.
fn utf8_width(bytes: &[u8]) -> Option<usize> {
    let width = match bytes.first()? {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    (bytes.len() >= width).then_some(width)
}

/// Go's `encoding/json` float text: shortest round-trip digits, plain notation unless the
/// magnitude is below 1e-6 or at least 1e21, then exponent form with a signed exponent of at
/// least one digit (`1e-7`, `1e+21`). `None` for NaN and infinities, which JSON cannot hold.
pub(super) fn go_json_float(float: f64) -> Option<String> {
    if !float.is_finite() {
        return None;
    }
    let magnitude = float.abs();
    if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        let text = format!("{float:e}");
        // Rust writes `1e21`, Go `1e+21`; negative exponents already agree (`1e-7`).
        Some(match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                format!("{mantissa}e+{exponent}")
            }
            _ => text,
        })
    } else {
        Some(format!("{float}"))
    }
}
