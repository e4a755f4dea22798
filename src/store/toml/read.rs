//! TOML text → tree: values with their spans, comments placed where they stand, the `sops`
//! table split off, and the [`Layout`] that lets the writer splice new values into the text.
//!
//! toml_edit parses and validates the text and gives every key, value and table header its
//! span. Comments are found by a small scan of the (already valid) text that skips strings, and
//! are then filed under the container of the item they belong to (see the module docs of the
//! store). To do that, every map and list built gets an id in tree pre-order, and every item an
//! anchor (the offset where it starts in the text); a comment is merged into its container's
//! items by offset.

use std::ops::Range;

use toml_edit::{Array, ImDocument, InlineTable, Item, Table, TomlError, Value as TomlValue};

use super::{shape, to_timestamp, Layout, METADATA_KEY};
use crate::crypt::display_path;
use crate::store::{Layout as StoreLayout, Loaded, StoreError};
use crate::tree::{
    Comment, List, ListItem, Map, MapItem, Node, Pair, PathStep, Scalar, Span, Style, Tree, Value,
};

pub(super) fn load(input: &[u8]) -> Result<Loaded, StoreError> {
    let source = std::str::from_utf8(input).map_err(|err| {
        let (line, column) = position(input, err.valid_up_to());
        StoreError::Syntax {
            line,
            column,
            message: "the file is not valid UTF-8".into(),
        }
    })?;
    let document = ImDocument::parse(source).map_err(|err| syntax_error(source, &err))?;
    let mut reader = Reader {
        source,
        anchors: Vec::new(),
        statements: Vec::new(),
        arrays: Vec::new(),
        metadata_statements: None,
    };
    let mut root = reader.table(document.as_table(), &mut Vec::new())?;
    reader.place_comments(&mut root, scan_comments(source));

    let mut usable = true;
    let mut metadata_region = None;
    let metadata = match document.as_table().get_key_value(METADATA_KEY) {
        Some((key, item)) => {
            metadata_region = reader.metadata_region(key.span(), item);
            usable = metadata_region.is_some();
            root.remove(METADATA_KEY)
        }
        None => None,
    };

    let mut values = Vec::new();
    collect_map_values(&root, &mut values);
    let layout = Layout {
        source: source.to_string(),
        values,
        metadata_region,
        shape: shape(&root),
        crlf: source
            .find('\n')
            .is_some_and(|at| source[..at].ends_with('\r')),
        usable,
    };
    Ok(Loaded {
        tree: Tree {
            documents: vec![root],
            layout: Some(StoreLayout::Toml(layout)),
        },
        metadata,
    })
}

/// A key/value line or a table header: what a comment above it belongs to.
struct Statement {
    offset: usize,
    /// The container a comment above the statement goes into.
    before: usize,
    /// The container an end-of-line or trailing comment after it goes into: the map holding a
    /// key/value, the table a header opens.
    after: usize,
    /// Part of the top-level `sops` entry: comments above it are trailing comments of the data
    /// (the `[sops]` table is appended after them), not comments of the metadata.
    metadata: bool,
}

/// A multi-line-capable array: comments inside it are elements of its list.
struct ArrayRegion {
    span: Range<usize>,
    container: usize,
}

struct FoundComment {
    /// The text after `#`, up to the end of the line.
    text: Range<usize>,
    inline: bool,
}

struct Reader<'s> {
    source: &'s str,
    /// For every container (by pre-order id), the anchor offset of each of its items.
    anchors: Vec<Vec<usize>>,
    statements: Vec<Statement>,
    arrays: Vec<ArrayRegion>,
    /// The statements of the top-level `sops` entry.
    metadata_statements: Option<Range<usize>>,
}

impl Reader<'_> {
    fn open_container(&mut self) -> usize {
        self.anchors.push(Vec::new());
        self.anchors.len() - 1
    }

    fn missing_span(path: &[PathStep]) -> StoreError {
        StoreError::Structure {
            path: display_path(path),
            message: "the TOML parser gave no position for this entry".into(),
        }
    }

    fn table(&mut self, table: &Table, path: &mut Vec<PathStep>) -> Result<Map, StoreError> {
        let id = self.open_container();
        let mut items = Vec::with_capacity(table.len());
        for (key, item) in table.iter() {
            path.push(PathStep::Key(key.to_string()));
            let first_statement = self.statements.len();
            let key_offset = table.key(key).and_then(|k| k.span()).map(|s| s.start);
            let node = match item {
                Item::None => {
                    path.pop();
                    continue;
                }
                Item::Value(value) => {
                    let offset = key_offset
                        .or_else(|| value.span().map(|s| s.start))
                        .ok_or_else(|| Self::missing_span(path))?;
                    self.statements.push(Statement {
                        offset,
                        before: id,
                        after: id,
                        metadata: false,
                    });
                    self.anchors[id].push(offset);
                    self.value(value, path)?
                }
                Item::Table(sub) => {
                    let child = self.anchors.len();
                    // Implicit tables (`a` of `[a.b]`) and dotted ones (`a` of `a.b = 1`) have no
                    // header line of their own.
                    let header = (!sub.is_implicit() && !sub.is_dotted())
                        .then(|| sub.span().map(|s| s.start))
                        .flatten();
                    if let Some(offset) = header {
                        self.statements.push(Statement {
                            offset,
                            before: id,
                            after: child,
                            metadata: false,
                        });
                    }
                    let node = Node::Map(self.table(sub, path)?);
                    let anchor = header
                        .or_else(|| self.anchors[child].first().copied())
                        .or(key_offset)
                        .unwrap_or_else(|| self.anchors[id].last().copied().unwrap_or(0));
                    self.anchors[id].push(anchor);
                    node
                }
                Item::ArrayOfTables(tables) => {
                    let list = self.open_container();
                    let mut elements = Vec::with_capacity(tables.len());
                    for (index, sub) in tables.iter().enumerate() {
                        path.push(PathStep::Index(index));
                        let offset = sub
                            .span()
                            .map(|s| s.start)
                            .ok_or_else(|| Self::missing_span(path))?;
                        let child = self.anchors.len();
                        self.statements.push(Statement {
                            offset,
                            before: list,
                            after: child,
                            metadata: false,
                        });
                        self.anchors[list].push(offset);
                        elements.push(ListItem::Node(Node::Map(self.table(sub, path)?)));
                        path.pop();
                    }
                    let anchor = self.anchors[list].first().copied().unwrap_or(0);
                    self.anchors[id].push(anchor);
                    Node::List(List(elements))
                }
            };
            if path.len() == 1 && key == METADATA_KEY {
                self.statements[first_statement..]
                    .iter_mut()
                    .for_each(|s| s.metadata = true);
                self.metadata_statements = Some(first_statement..self.statements.len());
            }
            path.pop();
            items.push(MapItem::Pair(Pair {
                key: key.to_string(),
                value: node,
            }));
        }
        Ok(Map(items))
    }

    fn value(&mut self, value: &TomlValue, path: &mut Vec<PathStep>) -> Result<Node, StoreError> {
        let range = value.span().ok_or_else(|| Self::missing_span(path))?;
        let raw = self
            .source
            .get(range.clone())
            .ok_or_else(|| Self::missing_span(path))?;
        let (value, style) = match value {
            TomlValue::String(s) => (Value::Str(s.value().clone()), string_style(raw)),
            TomlValue::Integer(i) => (Value::Int(*i.value()), Style::Plain),
            TomlValue::Float(f) => (Value::Float(*f.value()), Style::Plain),
            TomlValue::Boolean(b) => (Value::Bool(*b.value()), Style::Plain),
            TomlValue::Datetime(d) => match to_timestamp(d.value()) {
                Some(time) => (Value::Time(time), Style::Plain),
                // No offset: kept as its exact text, written bare again (module docs).
                None => (Value::Str(raw.to_string()), Style::Plain),
            },
            TomlValue::Array(array) => return Ok(Node::List(self.array(array, range, path)?)),
            TomlValue::InlineTable(table) => return Ok(Node::Map(self.inline_table(table, path)?)),
        };
        Ok(Node::Scalar(Scalar {
            value,
            span: Some(Span { range, style }),
        }))
    }

    fn array(
        &mut self,
        array: &Array,
        span: Range<usize>,
        path: &mut Vec<PathStep>,
    ) -> Result<List, StoreError> {
        let id = self.open_container();
        self.arrays.push(ArrayRegion {
            span,
            container: id,
        });
        let mut items = Vec::with_capacity(array.len());
        for value in array.iter() {
            let offset = value
                .span()
                .map(|s| s.start)
                .ok_or_else(|| Self::missing_span(path))?;
            self.anchors[id].push(offset);
            items.push(ListItem::Node(self.value(value, path)?));
        }
        Ok(List(items))
    }

    fn inline_table(
        &mut self,
        table: &InlineTable,
        path: &mut Vec<PathStep>,
    ) -> Result<Map, StoreError> {
        let id = self.open_container();
        let mut items = Vec::with_capacity(table.len());
        for (key, value) in table.iter() {
            path.push(PathStep::Key(key.to_string()));
            let offset = table
                .key(key)
                .and_then(|k| k.span())
                .or_else(|| value.span())
                .map(|s| s.start)
                .ok_or_else(|| Self::missing_span(path))?;
            self.anchors[id].push(offset);
            let node = self.value(value, path)?;
            path.pop();
            items.push(MapItem::Pair(Pair {
                key: key.to_string(),
                value: node,
            }));
        }
        Ok(Map(items))
    }

    /// Files every comment under its container, then merges each container's comments into its
    /// items by offset.
    fn place_comments(&mut self, root: &mut Map, comments: Vec<FoundComment>) {
        if comments.is_empty() {
            return;
        }
        self.statements.sort_by_key(|s| s.offset);
        let mut arrays: Vec<&ArrayRegion> = self.arrays.iter().collect();
        arrays.sort_by_key(|a| a.span.start);
        let mut pending: Vec<Vec<(usize, Comment)>> = vec![Vec::new(); self.anchors.len()];
        // The arrays open at the current comment, outermost first: arrays nest or are apart.
        let mut open: Vec<&ArrayRegion> = Vec::new();
        let mut next_array = arrays.iter().peekable();
        for found in comments {
            let at = found.text.start;
            while let Some(array) = next_array.next_if(|a| a.span.start < at) {
                while open.last().is_some_and(|o| o.span.end <= array.span.start) {
                    open.pop();
                }
                open.push(array);
            }
            while open.last().is_some_and(|o| o.span.end <= at) {
                open.pop();
            }
            let container = match open.last() {
                Some(array) => array.container,
                None => {
                    let next = self.statements.partition_point(|s| s.offset < at);
                    let previous = next.checked_sub(1).map(|i| &self.statements[i]);
                    match (found.inline, self.statements.get(next), previous) {
                        (false, Some(following), _) if !following.metadata => following.before,
                        (_, _, Some(previous)) => previous.after,
                        _ => 0,
                    }
                }
            };
            let text = self.source[found.text.clone()].to_string();
            pending[container].push((
                at,
                Comment {
                    text,
                    inline: found.inline,
                    span: Some(Span {
                        range: found.text,
                        style: Style::Plain,
                    }),
                },
            ));
        }
        let mut next_id = 0;
        merge_map(root, &mut next_id, &self.anchors, &mut pending);
    }

    /// The lines of the top-level `sops` entry, when they form one block with nothing else in
    /// it (always so for files veil writes); `None` otherwise.
    fn metadata_region(&self, key_span: Option<Range<usize>>, item: &Item) -> Option<Range<usize>> {
        let mut extent = key_span;
        item_extent(item, &mut extent);
        let extent = extent?;
        let bytes = self.source.as_bytes();
        let start = bytes[..extent.start.min(bytes.len())]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let end = bytes[extent.end.min(bytes.len())..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| extent.end + i + 1);
        let own = self.metadata_statements.clone()?.len();
        let inside = self
            .statements
            .iter()
            .filter(|s| (start..end).contains(&s.offset))
            .count();
        (inside == own).then_some(start..end)
    }
}

fn widen(extent: &mut Option<Range<usize>>, span: Option<Range<usize>>) {
    if let Some(span) = span {
        *extent = Some(match extent.take() {
            Some(e) => e.start.min(span.start)..e.end.max(span.end),
            None => span,
        });
    }
}

fn item_extent(item: &Item, extent: &mut Option<Range<usize>>) {
    match item {
        Item::None => {}
        Item::Value(value) => widen(extent, value.span()),
        Item::Table(table) => table_extent(table, extent),
        Item::ArrayOfTables(tables) => tables.iter().for_each(|t| table_extent(t, extent)),
    }
}

fn table_extent(table: &Table, extent: &mut Option<Range<usize>>) {
    widen(extent, table.span());
    for (key, item) in table.iter() {
        widen(extent, table.key(key).and_then(|k| k.span()));
        item_extent(item, extent);
    }
}

fn merge_map(
    map: &mut Map,
    next_id: &mut usize,
    anchors: &[Vec<usize>],
    pending: &mut [Vec<(usize, Comment)>],
) {
    let id = *next_id;
    *next_id += 1;
    let comments = std::mem::take(&mut pending[id]);
    if !comments.is_empty() {
        let items = std::mem::take(&mut map.0);
        map.0 = merge(items, &anchors[id], comments, MapItem::Comment);
    }
    for item in &mut map.0 {
        if let MapItem::Pair(pair) = item {
            merge_node(&mut pair.value, next_id, anchors, pending);
        }
    }
}

fn merge_node(
    node: &mut Node,
    next_id: &mut usize,
    anchors: &[Vec<usize>],
    pending: &mut [Vec<(usize, Comment)>],
) {
    match node {
        Node::Map(map) => merge_map(map, next_id, anchors, pending),
        Node::List(list) => {
            let id = *next_id;
            *next_id += 1;
            let comments = std::mem::take(&mut pending[id]);
            if !comments.is_empty() {
                let items = std::mem::take(&mut list.0);
                list.0 = merge(items, &anchors[id], comments, ListItem::Comment);
            }
            for item in &mut list.0 {
                if let ListItem::Node(child) = item {
                    merge_node(child, next_id, anchors, pending);
                }
            }
        }
        Node::Scalar(_) => {}
    }
}

/// Interleaves comments (in text order) with a container's items (whose anchors are in text
/// order): each comment goes before the first item that starts after it.
fn merge<T>(
    items: Vec<T>,
    anchors: &[usize],
    comments: Vec<(usize, Comment)>,
    wrap: fn(Comment) -> T,
) -> Vec<T> {
    let mut merged = Vec::with_capacity(items.len() + comments.len());
    let mut comments = comments.into_iter().peekable();
    for (index, item) in items.into_iter().enumerate() {
        let anchor = anchors.get(index).copied().unwrap_or(usize::MAX);
        while let Some((_, comment)) = comments.next_if(|(at, _)| *at < anchor) {
            merged.push(wrap(comment));
        }
        merged.push(item);
    }
    merged.extend(comments.map(|(_, comment)| wrap(comment)));
    merged
}

/// Finds every comment of a valid TOML text, skipping strings (the only place a `#` can be
/// something else).
fn scan_comments(source: &str) -> Vec<FoundComment> {
    let bytes = source.as_bytes();
    let mut found = Vec::new();
    let mut line_has_content = false;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\n' => {
                line_has_content = false;
                at += 1;
            }
            b'#' => {
                let start = at + 1;
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |i| start + i);
                let text_end = if end > start && bytes[end - 1] == b'\r' {
                    end - 1
                } else {
                    end
                };
                found.push(FoundComment {
                    text: start..text_end,
                    inline: line_has_content,
                });
                at = end;
            }
            b'"' | b'\'' => {
                line_has_content = true;
                at = skip_string(bytes, at);
            }
            b' ' | b'\t' | b'\r' => at += 1,
            _ => {
                line_has_content = true;
                at += 1;
            }
        }
    }
    found
}

/// The offset just past the string that starts at `start`.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let delimiter = [quote; 3];
    let multi_line = bytes[start..].starts_with(&delimiter);
    let escapes = quote == b'"';
    let mut at = start + if multi_line { 3 } else { 1 };
    while at < bytes.len() {
        let byte = bytes[at];
        if escapes && byte == b'\\' {
            at += 2;
            continue;
        }
        if byte == quote {
            if !multi_line {
                return at + 1;
            }
            if bytes[at..].starts_with(&delimiter) {
                // Up to two quotes of the content may stand right before the closing ones.
                let run = bytes[at..]
                    .iter()
                    .take(5)
                    .take_while(|&&b| b == quote)
                    .count();
                return at + run;
            }
        }
        at += 1;
    }
    bytes.len()
}

fn string_style(raw: &str) -> Style {
    if raw.starts_with("\"\"\"") {
        Style::Literal
    } else if raw.starts_with("'''") {
        Style::Folded
    } else if raw.starts_with('\'') {
        Style::SingleQuoted
    } else {
        Style::DoubleQuoted
    }
}

fn collect_map_values(map: &Map, values: &mut Vec<Value>) {
    for pair in map.pairs() {
        collect_node_values(&pair.value, values);
    }
}

fn collect_node_values(node: &Node, values: &mut Vec<Value>) {
    match node {
        Node::Map(map) => collect_map_values(map, values),
        Node::List(list) => list.nodes().for_each(|n| collect_node_values(n, values)),
        Node::Scalar(scalar) => values.push(scalar.value.clone()),
    }
}

/// The parser's message names grammar rules and keys, never value text.
fn syntax_error(source: &str, error: &TomlError) -> StoreError {
    let offset = error.span().map_or(source.len(), |s| s.start);
    let (line, column) = position(source.as_bytes(), offset);
    let message = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    StoreError::Syntax {
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}
