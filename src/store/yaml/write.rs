//! Fresh YAML text from a tree, in the style of sops' emitter (yaml.v3; spec §6.1.3, §6.1.5),
//! and the scalar renderings the splicing writer shares.
//!
//! Mappings indent by `step` spaces, sequences are indented under their key (`    - item`),
//! comments are written as `#` + text, strings are quoted only when they would otherwise read
//! back as something else, multi-line strings become literal blocks.

use base64::Engine;

use super::resolve::{is_plain_safe, is_printable};
use crate::crypt::value::is_sealed;
use crate::tree::{format_time, Comment, List, ListItem, Map, MapItem, Node, Value};

/// The documents of a stream, each followed by its copy of the metadata block.
pub(super) fn stream(documents: &[Map], metadata: Option<&Map>, step: usize) -> String {
    let mut out = String::new();
    for (index, document) in documents.iter().enumerate() {
        if index > 0 {
            out.push_str("---\n");
        }
        if document.is_empty() && metadata.is_none() {
            out.push_str("{}\n");
            continue;
        }
        let mut emitter = Emitter {
            out: &mut out,
            step,
        };
        emitter.map(document, 0, step, false);
        if let Some(metadata) = metadata {
            emitter.map(&sops_entry(metadata), 0, step, false);
        }
    }
    out
}

/// `sops:` and the metadata under it, with its keys at column `column`.
pub(crate) fn metadata_block(metadata: &Map, column: usize, step: usize) -> String {
    let mut out = String::new();
    Emitter {
        out: &mut out,
        step,
    }
    .map(&sops_entry(metadata), column, column + step, false);
    out
}

fn sops_entry(metadata: &Map) -> Map {
    let mut entry = Map::new();
    entry.insert("sops", Node::Map(metadata.clone()));
    entry
}

/// One node as a document of its own (`--extract` of a list or a non-string scalar).
pub(super) fn node_document(node: &Node, step: usize) -> String {
    let mut out = String::new();
    let mut emitter = Emitter {
        out: &mut out,
        step,
    };
    match node {
        Node::Map(map) if map.is_empty() => emitter.out.push_str("{}\n"),
        Node::Map(map) => emitter.map(map, 0, step, false),
        Node::List(list) if list.0.is_empty() => emitter.out.push_str("[]\n"),
        Node::List(list) => emitter.list(list, 0, false),
        Node::Scalar(scalar) => {
            emitter.scalar(&scalar.value, step);
            emitter.out.push('\n');
        }
    }
    out
}

struct Emitter<'a> {
    out: &'a mut String,
    step: usize,
}

impl Emitter<'_> {
    /// Starts a line at `column`, unless the caller already wrote `- ` for it.
    fn start_line(&mut self, column: usize, continued: &mut bool) {
        if *continued {
            *continued = false;
        } else {
            push_spaces(self.out, column);
        }
    }

    fn comment_lines(&mut self, comments: &[&Comment], column: usize, continued: &mut bool) {
        for comment in comments {
            for line in comment.text.split('\n') {
                self.start_line(column, continued);
                self.out.push('#');
                self.out.push_str(line);
                self.out.push('\n');
            }
        }
    }

    /// A line comment: the inline comments sops buffered before the item, on the item's line.
    fn line_comment(&mut self, comments: &[&Comment]) {
        for comment in comments {
            self.out.push_str(" #");
            self.out.push_str(&comment.text.replace('\n', " "));
        }
    }

    /// A block mapping with its keys at `column`; nested content goes to `nested`.
    fn map(&mut self, map: &Map, column: usize, nested: usize, mut continued: bool) {
        let mut head: Vec<&Comment> = Vec::new();
        let mut line: Vec<&Comment> = Vec::new();
        for item in &map.0 {
            let pair = match item {
                MapItem::Comment(c) if c.inline => {
                    line.push(c);
                    continue;
                }
                MapItem::Comment(c) => {
                    head.push(c);
                    continue;
                }
                MapItem::Pair(pair) => pair,
            };
            self.comment_lines(&head, column, &mut continued);
            head.clear();
            self.start_line(column, &mut continued);
            self.out.push_str(&key_text(&pair.key));
            self.out.push(':');
            match &pair.value {
                Node::Scalar(scalar) => {
                    self.out.push(' ');
                    let block = self.scalar(&scalar.value, nested);
                    self.finish_item(&line, block);
                }
                Node::Map(inner) if inner.is_empty() => {
                    self.out.push_str(" {}");
                    self.finish_item(&line, None);
                }
                Node::List(inner) if inner.0.is_empty() => {
                    self.out.push_str(" []");
                    self.finish_item(&line, None);
                }
                Node::Map(inner) => {
                    self.finish_item(&line, None);
                    self.map(inner, nested, nested + self.step, false);
                }
                Node::List(inner) => {
                    self.finish_item(&line, None);
                    self.list(inner, nested, false);
                }
            }
            line.clear();
        }
        head.extend(line);
        if !head.is_empty() {
            // Trailing comments are the foot of the last key; a mapping of only comments
            // gets them as its head.
            self.comment_lines(&head, column, &mut continued);
        }
    }

    /// Ends an item's line: its line comment, then the body of a block scalar if any.
    fn finish_item(&mut self, line: &[&Comment], block_body: Option<String>) {
        self.line_comment(line);
        self.out.push('\n');
        if let Some(body) = block_body {
            self.out.push_str(&body);
        }
    }

    /// A block sequence with its `-` at `column`.
    fn list(&mut self, list: &List, column: usize, mut continued: bool) {
        let mut line: Vec<&Comment> = Vec::new();
        // Keys of a mapping element sit after "- "; what nests under them goes one step in
        // from the dash, as yaml.v3 does, unless that would not be deeper than the keys.
        let element_keys = column + 2;
        let element_nested = if column + self.step > element_keys {
            column + self.step
        } else {
            element_keys + self.step
        };
        for item in &list.0 {
            let node = match item {
                ListItem::Comment(c) if is_sealed_comment(&c.text) => {
                    // sops writes an encrypted list comment as a plain element (spec §6.1.4).
                    self.start_line(column, &mut continued);
                    self.out.push_str("- ");
                    self.out.push_str(&c.text);
                    self.out.push('\n');
                    continue;
                }
                ListItem::Comment(c) if c.inline => {
                    line.push(c);
                    continue;
                }
                ListItem::Comment(c) => {
                    self.comment_lines(&[c], column, &mut continued);
                    continue;
                }
                ListItem::Node(node) => node,
            };
            self.start_line(column, &mut continued);
            self.out.push('-');
            match node {
                Node::Scalar(scalar) => {
                    self.out.push(' ');
                    let block = self.scalar(&scalar.value, column + self.step);
                    self.finish_item(&line, block);
                }
                Node::Map(inner) if inner.is_empty() => {
                    self.out.push_str(" {}");
                    self.finish_item(&line, None);
                }
                Node::List(inner) if inner.0.is_empty() => {
                    self.out.push_str(" []");
                    self.finish_item(&line, None);
                }
                Node::Map(inner) => {
                    self.out.push(' ');
                    self.line_comment_before(&line);
                    self.map(inner, element_keys, element_nested, true);
                }
                Node::List(inner) => {
                    self.out.push(' ');
                    self.line_comment_before(&line);
                    self.list(inner, element_keys, true);
                }
            }
            line.clear();
        }
        if !line.is_empty() {
            self.comment_lines(&line, column, &mut continued);
        }
    }

    /// Inline comments before a collection element have no line of their own to sit on:
    /// they go on the line above, as head comments.
    fn line_comment_before(&mut self, line: &[&Comment]) {
        if line.is_empty() {
            return;
        }
        // The dash is already written; move the comments before it.
        let dash_line_start = self.out.rfind('\n').map_or(0, |i| i + 1);
        let indent: String = self.out[dash_line_start..]
            .chars()
            .take_while(|c| *c == ' ')
            .collect();
        let mut text = String::new();
        for comment in line {
            for part in comment.text.split('\n') {
                text.push_str(&indent);
                text.push('#');
                text.push_str(part);
                text.push('\n');
            }
        }
        self.out.insert_str(dash_line_start, &text);
    }

    /// Writes a scalar after `key: ` or `- `. A literal block returns its body (the lines
    /// after the header), to be written once the header line is complete.
    fn scalar(&mut self, value: &Value, block_column: usize) -> Option<String> {
        if let Value::Str(text) = value {
            if text.contains('\n') {
                if let Some(block) = literal_block(text, block_column) {
                    self.out.push_str(&block.header);
                    return Some(block.body);
                }
            }
        }
        self.out.push_str(&inline_text(value, false));
        None
    }
}

pub(crate) fn push_spaces(out: &mut String, count: usize) {
    out.extend(std::iter::repeat_n(' ', count));
}

/// True for `ENC[…,type:comment]`, the form of an encrypted comment.
pub(crate) fn is_sealed_comment(text: &str) -> bool {
    is_sealed(text) && text.ends_with(",type:comment]")
}

/// A mapping key: plain when it reads back as the same string, else double-quoted.
pub(super) fn key_text(key: &str) -> String {
    if is_plain_safe(key, false) {
        key.to_string()
    } else {
        double_quoted(key)
    }
}

/// A value on one line: strings plain when safe, else double-quoted; other types in the
/// text that reads back as the same type.
pub(super) fn inline_text(value: &Value, in_flow: bool) -> String {
    let mut out = String::new();
    push_inline_text(&mut out, value, in_flow);
    out
}

/// [`inline_text`], appended to `out`.
pub(super) fn push_inline_text(out: &mut String, value: &Value, in_flow: bool) {
    match value {
        Value::Str(text) => push_inline_str(out, text, in_flow),
        other => push_typed_text(out, other),
    }
}

/// A string on one line: plain when safe, else double-quoted.
pub(crate) fn push_inline_str(out: &mut String, text: &str, in_flow: bool) {
    if is_plain_safe(text, in_flow) {
        out.push_str(text);
    } else {
        push_double_quoted(out, text);
    }
}

/// The text of a non-string value. Floats keep a `.` or exponent so that they stay floats.
pub(super) fn push_typed_text(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            use std::fmt::Write;
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&yaml_float(*f)),
        Value::Time(t) => out.push_str(&format_time(t)),
        Value::Bytes(bytes) => {
            out.push_str("!!binary ");
            base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
        }
        Value::Str(text) => push_double_quoted(out, text),
    }
}

/// A float that reads back as the same float: shortest round-trip digits, in positional
/// notation (as sops' canonical text, so ordinary values such as `0.25` or `1234567.5` come back
/// as written) except for very large or small magnitudes (`1e+21`, `1e-05`, Go's exponent form),
/// with `.0` added where the text would otherwise read back as an integer.
pub(super) fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut text = String::new();
    if mantissa.starts_with('-') {
        text.push('-');
    }
    if !(-4..21).contains(&exponent) {
        text.push_str(&digits[..1]);
        if digits.len() > 1 {
            text.push('.');
            text.push_str(&digits[1..]);
        }
        text.push('e');
        text.push(if exponent < 0 { '-' } else { '+' });
        text.push_str(&format!("{:02}", exponent.abs()));
        return text;
    }
    if exponent < 0 {
        text.push_str("0.");
        push_zeros(&mut text, (-exponent - 1) as usize);
        text.push_str(&digits);
    } else {
        let point = exponent as usize + 1;
        if digits.len() <= point {
            text.push_str(&digits);
            push_zeros(&mut text, point - digits.len());
            text.push_str(".0");
        } else {
            text.push_str(&digits[..point]);
            text.push('.');
            text.push_str(&digits[point..]);
        }
    }
    text
}

fn push_zeros(text: &mut String, count: usize) {
    text.extend(std::iter::repeat_n('0', count));
}

/// A double-quoted scalar with YAML escapes.
pub(super) fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_double_quoted(&mut out, text);
    out
}

/// [`double_quoted`], appended to `out`.
pub(super) fn push_double_quoted(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02X}", c as u32))
            }
            c if !is_printable(c) => {
                if (c as u32) <= 0xFFFF {
                    out.push_str(&format!("\\u{:04X}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08X}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A single-quoted scalar, when the text fits on one line without escapes.
pub(super) fn single_quoted(text: &str) -> Option<String> {
    if text
        .chars()
        .any(|c| !is_printable(c) || matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
    {
        return None;
    }
    Some(format!("'{}'", text.replace('\'', "''")))
}

/// A literal block: the header (`|`, `|-` or `|+`) and the lines under it, each ending in a
/// line break.
pub(super) struct LiteralBlock {
    pub header: String,
    pub body: String,
    /// `|+`: blank lines after the block would become part of the value.
    pub keeps_trailing: bool,
}

/// The literal block for `text` with its content at `column`, or `None` when the text cannot
/// be one (characters a block cannot hold, leading indentation, whitespace-only lines).
pub(super) fn literal_block(text: &str, column: usize) -> Option<LiteralBlock> {
    if column == 0
        || text.trim().is_empty()
        || text
            .chars()
            .any(|c| !is_printable(c) || matches!(c, '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
    {
        return None;
    }
    let trailing = text.len() - text.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let body_text = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<&str> = body_text.split('\n').collect();
    let first_content = lines.iter().find(|l| !l.is_empty())?;
    if first_content.starts_with([' ', '\t'])
        || lines
            .iter()
            .any(|l| !l.is_empty() && l.trim_matches([' ', '\t']).is_empty())
    {
        return None;
    }
    let mut body = String::with_capacity(text.len() + lines.len() * (column + 1));
    for line in lines {
        if !line.is_empty() {
            push_spaces(&mut body, column);
            body.push_str(line);
        }
        body.push('\n');
    }
    Some(LiteralBlock {
        header: format!("|{chomp}"),
        body,
        keeps_trailing: trailing > 1,
    })
}
