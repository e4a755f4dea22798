//! Tree → TOML text: spliced into the original text when the tree still has the shape it was
//! read with, written from scratch otherwise. The rules are in the store's module docs.

use std::ops::Range;

use super::{is_bare_datetime, shape, Layout, FORMAT, METADATA_KEY};
use crate::crypt::display_path;
use crate::store::{Layout as StoreLayout, StoreError};
use crate::tree::{format_time, ListItem, Map, MapItem, Node, PathStep, Style, Tree, Value};

pub(super) fn emit(tree: &Tree, metadata: Option<&Map>) -> Result<Vec<u8>, StoreError> {
    let empty = Map::new();
    let root = tree.documents.first().unwrap_or(&empty);
    let layout = match &tree.layout {
        Some(StoreLayout::Toml(layout))
            if layout.usable && tree.documents.len() == 1 && shape(root) == layout.shape =>
        {
            Some(layout)
        }
        _ => None,
    };
    let mut out = match layout {
        Some(layout) => splice(root, layout)?,
        None => {
            let mut writer = Writer::default();
            writer.table(root, &mut Vec::new(), Order::Document)?;
            writer.out
        }
    };
    if let Some(metadata) = metadata {
        if !out.is_empty() {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push('\n');
        }
        let mut writer = Writer::default();
        let mut path = vec![PathStep::Key(METADATA_KEY.into())];
        writer.header(&path, false);
        writer.table(metadata, &mut path, Order::Grouped)?;
        out.push_str(&writer.out);
    }
    Ok(out.into_bytes())
}

fn emit_error(path: &[PathStep], message: &str) -> StoreError {
    StoreError::Emit {
        format: FORMAT,
        message: format!("{}: {message}", display_path(path)),
    }
}

// ---------------------------------------------------------------------------------------------
// Splicing into the original text

/// The original text with every changed value and comment rewritten and the old `[sops]`
/// table dropped.
fn splice(root: &Map, layout: &Layout) -> Result<String, StoreError> {
    let mut splicer = Splicer {
        layout,
        originals: layout.values.iter(),
        edits: Vec::new(),
        path: Vec::new(),
    };
    splicer.map(root)?;
    let mut edits = splicer.edits;
    if let Some(region) = &layout.metadata_region {
        edits.push((region.clone(), String::new()));
    }
    edits.sort_by_key(|(range, _)| range.start);
    let source = layout.source.as_str();
    let stale = || emit_error(&[], "the recorded layout does not match its text");
    let mut out = String::with_capacity(source.len() + edits.len() * 64);
    let mut at = 0;
    for (range, text) in &edits {
        if range.start < at {
            return Err(stale());
        }
        out.push_str(source.get(at..range.start).ok_or_else(stale)?);
        out.push_str(text);
        at = range.end;
    }
    out.push_str(source.get(at..).ok_or_else(stale)?);
    // veil writes a blank line before the `[sops]` table it appends; take it away with it.
    if layout
        .metadata_region
        .as_ref()
        .is_some_and(|r| r.end == source.len())
        && out.ends_with("\n\n")
    {
        out.pop();
    }
    Ok(out)
}

struct Splicer<'a> {
    layout: &'a Layout,
    originals: std::slice::Iter<'a, Value>,
    edits: Vec<(Range<usize>, String)>,
    path: Vec<PathStep>,
}

impl Splicer<'_> {
    fn map(&mut self, map: &Map) -> Result<(), StoreError> {
        for item in &map.0 {
            match item {
                MapItem::Pair(pair) => {
                    self.path.push(PathStep::Key(pair.key.clone()));
                    self.node(&pair.value)?;
                    self.path.pop();
                }
                MapItem::Comment(comment) => self.comment(&comment.text, comment.span.as_ref())?,
            }
        }
        Ok(())
    }

    fn node(&mut self, node: &Node) -> Result<(), StoreError> {
        match node {
            Node::Map(map) => self.map(map),
            Node::List(list) => {
                for (index, item) in list.0.iter().enumerate() {
                    self.path.push(PathStep::Index(index));
                    match item {
                        ListItem::Node(node) => self.node(node)?,
                        ListItem::Comment(c) => self.comment(&c.text, c.span.as_ref())?,
                    }
                    self.path.pop();
                }
                Ok(())
            }
            Node::Scalar(scalar) => {
                let stale = || emit_error(&self.path, "the recorded layout does not match");
                let original = self.originals.next().ok_or_else(stale)?;
                let span = scalar.span.as_ref().ok_or_else(stale)?;
                if !same_value(original, &scalar.value) {
                    let line_break = if self.layout.crlf { "\r\n" } else { "\n" };
                    let text = render(&scalar.value, span.style, original, line_break, &self.path)?;
                    self.edits.push((span.range.clone(), text));
                }
                Ok(())
            }
        }
    }

    fn comment(&mut self, text: &str, span: Option<&crate::tree::Span>) -> Result<(), StoreError> {
        let span = span.ok_or_else(|| emit_error(&self.path, "a comment has no position"))?;
        if self.layout.source.get(span.range.clone()) != Some(text) {
            check_comment(text, &self.path)?;
            self.edits.push((span.range.clone(), text.to_string()));
        }
        Ok(())
    }
}

/// Equal values, NaN included (an unchanged `nan` keeps its spelling).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// A new value, in the quoting its span recorded (the table in the module docs).
fn render(
    value: &Value,
    style: Style,
    original: &Value,
    line_break: &str,
    path: &[PathStep],
) -> Result<String, StoreError> {
    let Value::Str(text) = value else {
        return bare_text(value, path);
    };
    let was_bare_datetime = matches!(original, Value::Str(o) if is_bare_datetime(o));
    Ok(match style {
        Style::DoubleQuoted => basic(text),
        Style::SingleQuoted => literal(text).unwrap_or_else(|| basic(text)),
        Style::Literal => multi_line_basic(text, line_break),
        // A multi-line literal holding just a date text: encrypted as a basic string, so that
        // `'''…'''` keeps meaning "a bare date/time" in encrypted files.
        Style::Folded if was_bare_datetime && !is_bare_datetime(text) => basic(text),
        Style::Folded | Style::Plain if is_bare_datetime(text) => text.clone(),
        Style::Folded => multi_line_literal(text, line_break)
            .unwrap_or_else(|| multi_line_basic(text, line_break)),
        Style::Plain if matches!(original, Value::Str(_)) => {
            multi_line_literal(text, line_break).unwrap_or_else(|| basic(text))
        }
        Style::Plain => basic(text),
    })
}

/// Comments are written between `#` and the end of the line: no line breaks or other control
/// characters (TOML allows only tab).
fn check_comment(text: &str, path: &[PathStep]) -> Result<(), StoreError> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(emit_error(
            path,
            "a comment holds a line break or control character, which TOML comments cannot",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing from scratch

/// How a table's entries are ordered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// As in the tree (data: the MAC depends on the order of values). Tables that come before a
    /// plain value of the same parent are written with dotted keys.
    Document,
    /// Plain values first, then tables (metadata, whose readers ignore order).
    Grouped,
}

#[derive(Default)]
struct Writer {
    out: String,
}

/// A value that needs a `[table]` or `[[array]]` section of its own.
fn is_section(node: &Node) -> bool {
    match node {
        Node::Map(_) => true,
        Node::List(list) => is_table_array(list),
        Node::Scalar(_) => false,
    }
}

fn is_table_array(list: &crate::tree::List) -> bool {
    let mut nodes = list.nodes().peekable();
    nodes.peek().is_some() && nodes.all(|n| matches!(n, Node::Map(_)))
}

impl Writer {
    fn blank_line(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn header(&mut self, path: &[PathStep], array: bool) {
        let keys: Vec<String> = path
            .iter()
            .filter_map(|step| match step {
                PathStep::Key(key) => Some(key_text(key)),
                PathStep::Index(_) => None,
            })
            .collect();
        let (open, close) = if array { ("[[", "]]") } else { ("[", "]") };
        self.out.push_str(open);
        self.out.push_str(&keys.join("."));
        self.out.push_str(close);
        self.out.push('\n');
    }

    fn comment_line(&mut self, text: &str, path: &[PathStep]) -> Result<(), StoreError> {
        check_comment(text, path)?;
        self.out.push('#');
        self.out.push_str(text);
        self.out.push('\n');
        Ok(())
    }

    /// The body of a table (its header already written), then its sub-tables.
    fn table(
        &mut self,
        map: &Map,
        path: &mut Vec<PathStep>,
        order: Order,
    ) -> Result<(), StoreError> {
        let is_plain_pair =
            |item: &MapItem| matches!(item, MapItem::Pair(p) if !is_section(&p.value));
        // Entries up to the last plain value are written as key/values (tables among them with
        // dotted keys); the rest become sections.
        let split = match order {
            Order::Document => map.0.iter().rposition(is_plain_pair).map_or(0, |i| i + 1),
            Order::Grouped => 0,
        };
        let (body, sections) = map.0.split_at(split);
        for item in body {
            self.dotted(item, &mut Vec::new(), path)?;
        }
        if order == Order::Grouped {
            for item in sections.iter().filter(|item| is_plain_pair(item)) {
                self.dotted(item, &mut Vec::new(), path)?;
            }
        }
        let mut after_comment = false;
        for item in sections {
            match item {
                MapItem::Comment(comment) => {
                    if !after_comment {
                        self.blank_line();
                    }
                    self.comment_line(&comment.text, path)?;
                    after_comment = true;
                    continue;
                }
                MapItem::Pair(pair) if is_section(&pair.value) => {
                    path.push(PathStep::Key(pair.key.clone()));
                    self.section(&pair.value, path, order, after_comment)?;
                    path.pop();
                }
                MapItem::Pair(_) => {} // plain pairs of a grouped table, written above
            }
            after_comment = false;
        }
        Ok(())
    }

    fn section(
        &mut self,
        node: &Node,
        path: &mut Vec<PathStep>,
        order: Order,
        after_comment: bool,
    ) -> Result<(), StoreError> {
        match node {
            Node::Map(map) => {
                // A table holding only tables needs no header of its own.
                let needs_header =
                    map.pairs().next().is_none() || map.pairs().any(|p| !is_section(&p.value));
                if needs_header {
                    if !after_comment {
                        self.blank_line();
                    }
                    self.header(path, false);
                }
                self.table(map, path, order)
            }
            Node::List(list) => {
                let mut after_comment = after_comment;
                for (index, item) in list.0.iter().enumerate() {
                    path.push(PathStep::Index(index));
                    match item {
                        ListItem::Comment(comment) => {
                            if !after_comment {
                                self.blank_line();
                            }
                            self.comment_line(&comment.text, path)?;
                            after_comment = true;
                        }
                        ListItem::Node(Node::Map(map)) => {
                            if !after_comment {
                                self.blank_line();
                            }
                            self.header(path, true);
                            self.table(map, path, order)?;
                            after_comment = false;
                        }
                        ListItem::Node(_) => {
                            return Err(emit_error(path, "an array of tables holds a non-table"))
                        }
                    }
                    path.pop();
                }
                Ok(())
            }
            Node::Scalar(_) => Err(emit_error(path, "a plain value is not a table")),
        }
    }

    /// One entry as `a.b.key = value` lines, `prefix` being the dotted keys above it.
    fn dotted(
        &mut self,
        item: &MapItem,
        prefix: &mut Vec<String>,
        path: &mut Vec<PathStep>,
    ) -> Result<(), StoreError> {
        let pair = match item {
            MapItem::Comment(comment) => return self.comment_line(&comment.text, path),
            MapItem::Pair(pair) => pair,
        };
        path.push(PathStep::Key(pair.key.clone()));
        match &pair.value {
            Node::Map(map) if map.pairs().next().is_some() => {
                prefix.push(key_text(&pair.key));
                for item in &map.0 {
                    self.dotted(item, prefix, path)?;
                }
                prefix.pop();
            }
            value => {
                if let Node::Map(map) = value {
                    // A map of comments only: the comments, then the empty table.
                    for item in &map.0 {
                        self.dotted(item, prefix, path)?;
                    }
                }
                for key in prefix.iter() {
                    self.out.push_str(key);
                    self.out.push('.');
                }
                self.out.push_str(&key_text(&pair.key));
                self.out.push_str(" = ");
                let mut text = String::new();
                inline_value(value, path, &mut text, true)?;
                self.out.push_str(&text);
                self.out.push('\n');
            }
        }
        path.pop();
        Ok(())
    }
}

/// A value written in place: a scalar, an array (one element a line when it holds comments) or
/// an inline table (which cannot hold comments).
fn inline_value(
    node: &Node,
    path: &mut Vec<PathStep>,
    out: &mut String,
    comments_ok: bool,
) -> Result<(), StoreError> {
    match node {
        Node::Scalar(scalar) => out.push_str(&scalar_text(&scalar.value, path)?),
        Node::List(list) => {
            let has_comments = list.0.iter().any(|i| matches!(i, ListItem::Comment(_)));
            if has_comments && !comments_ok {
                return Err(emit_error(path, "a comment inside an inline table"));
            }
            out.push('[');
            for (index, item) in list.0.iter().enumerate() {
                path.push(PathStep::Index(index));
                match item {
                    ListItem::Comment(comment) => {
                        check_comment(&comment.text, path)?;
                        out.push_str("\n    #");
                        out.push_str(&comment.text);
                    }
                    ListItem::Node(node) => {
                        if has_comments {
                            out.push_str("\n    ");
                        } else if index > 0 {
                            out.push_str(", ");
                        }
                        inline_value(node, path, out, comments_ok)?;
                        if has_comments {
                            out.push(',');
                        }
                    }
                }
                path.pop();
            }
            if has_comments {
                out.push('\n');
            }
            out.push(']');
        }
        Node::Map(map) => {
            if map.0.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push_str("{ ");
            for (index, item) in map.0.iter().enumerate() {
                let MapItem::Pair(pair) = item else {
                    return Err(emit_error(path, "a comment inside an inline table"));
                };
                if index > 0 {
                    out.push_str(", ");
                }
                path.push(PathStep::Key(pair.key.clone()));
                out.push_str(&key_text(&pair.key));
                out.push_str(" = ");
                inline_value(&pair.value, path, out, false)?;
                path.pop();
            }
            out.push_str(" }");
        }
    }
    Ok(())
}

fn scalar_text(value: &Value, path: &[PathStep]) -> Result<String, StoreError> {
    match value {
        Value::Str(text) if text.contains('\n') => Ok(multi_line_basic(text, "\n")),
        Value::Str(text) => Ok(basic(text)),
        other => bare_text(other, path),
    }
}

/// The canonical TOML text of a non-string value.
fn bare_text(value: &Value, path: &[PathStep]) -> Result<String, StoreError> {
    Ok(match value {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_text(*f),
        Value::Time(t) => format_time(t),
        Value::Str(text) => basic(text),
        Value::Null => return Err(emit_error(path, "TOML has no null value")),
        Value::Bytes(_) => {
            return Err(emit_error(path, "TOML cannot hold binary (non-UTF-8) data"))
        }
    })
}

/// Shortest round-trip text that TOML reads as a float (`1.0`, not `1`).
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        // Debug always keeps a `.0` or an exponent, so the text never reads as an integer.
        format!("{f:?}")
    }
}

fn key_text(key: &str) -> String {
    let bare = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if !key.is_empty() && key.bytes().all(bare) {
        key.to_string()
    } else {
        basic(key)
    }
}

/// Escapes for basic strings. In the multi-line form (`line_break` given) line breaks are
/// written as `line_break`, and only the quotes that would end the string are escaped (a third
/// one in a row, or one right before the closing quotes). A carriage return is always escaped:
/// TOML reads a raw CRLF inside a multi-line string as a bare line feed.
fn push_escaped(out: &mut String, text: &str, line_break: Option<&str>) {
    let multi_line = line_break.is_some();
    let mut quotes_in_a_row = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' && multi_line && quotes_in_a_row < 2 && chars.peek().is_some() {
            quotes_in_a_row += 1;
            out.push('"');
            continue;
        }
        quotes_in_a_row = 0;
        match (c, line_break) {
            ('"', _) => out.push_str("\\\""),
            ('\\', _) => out.push_str("\\\\"),
            ('\n', Some(line_break)) => out.push_str(line_break),
            ('\n', None) => out.push_str("\\n"),
            ('\t', _) => out.push_str("\\t"),
            ('\r', _) => out.push_str("\\r"),
            ('\u{8}', _) => out.push_str("\\b"),
            ('\u{c}', _) => out.push_str("\\f"),
            (c, _) if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            (c, _) => out.push(c),
        }
    }
}

fn basic(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    push_escaped(&mut out, text, None);
    out.push('"');
    out
}

/// A multi-line basic string; text with a line break starts on the next line, as usually
/// written (TOML drops a line break right after the opening quotes).
fn multi_line_basic(text: &str, line_break: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str("\"\"\"");
    if text.contains('\n') {
        out.push_str(line_break);
    }
    push_escaped(&mut out, text, Some(line_break));
    out.push_str("\"\"\"");
    out
}

/// A literal string, when the text can be one (no `'`, no control character but tab).
fn literal(text: &str) -> Option<String> {
    let fits = !text.contains('\'') && !text.chars().any(|c| c.is_control() && c != '\t');
    fits.then(|| format!("'{text}'"))
}

/// A multi-line literal string, when the text can be one (no `'''`, no control character but
/// tab and line feeds).
fn multi_line_literal(text: &str, line_break: &str) -> Option<String> {
    let fits = !text.contains("'''")
        && !text
            .chars()
            .any(|c| c.is_control() && c != '\t' && c != '\n');
    if !fits {
        return None;
    }
    let first = if text.contains('\n') { line_break } else { "" };
    Some(format!("'''{first}{}'''", text.replace('\n', line_break)))
}
