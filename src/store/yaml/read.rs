//! YAML text → [`Map`] documents, placing comments where sops' YAML reader places them and
//! recording where every value and comment stood.
//!
//! sops (yaml.v3) attaches comments to nodes as head, line and foot comments; sops then turns
//! them into comment items of the mapping or list that holds the node (spec §6.1.2), and that
//! container's key path is the comment's AAD. The event parser reports comments in source order
//! without such attachment, so this module reproduces yaml.v3's result from positions:
//! * a comment on its own line is held until the next node: if a collection closes first and
//!   the comment is indented at least as deep as that collection, it is that collection's foot
//!   comment; otherwise it is a head comment of the next node, filed in the collection holding
//!   that node (or, when the next node is a mapping's nested collection value, inside it);
//! * an end-of-line comment goes just before the item on its line, flagged `inline`; after a
//!   bare `key:` or `-` it becomes a head comment of the nested value.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::ops::Range;

use base64::Engine;
use granit_parser::{Event, Marker, Parser, Placement, ScalarStyle, StructureStyle, Tag};

use super::resolve::{resolve_plain, resolve_typed, ResolveError};
use super::{DocumentLayout, Leaf, Original, Shape, ShapeData, Step};
use crate::crypt::display_path;
use crate::store::StoreError;
use crate::tree::{
    Comment, List, ListItem, Map, MapItem, Node, Pair, PathStep, Scalar, Span, Style, Value,
};

/// What [`read`] found: the documents (without their `sops` entries), the first `sops` entry,
/// and the layout facts the splicing writer needs.
#[cfg_attr(test, derive(Debug))]
pub(super) struct Read {
    pub documents: Vec<Map>,
    pub metadata: Option<Node>,
    pub layouts: Vec<DocumentLayout>,
    pub shape: Shape,
}

/// Parses a whole YAML stream: with the fast scanner when it reads the whole input, otherwise
/// (or when the reader finds a fault, so that the error is granit's) with granit.
pub(super) fn read(source: &str) -> Result<Read, StoreError> {
    if fast_path_enabled() {
        if let Some(read) = read_fast(source) {
            // Under test every read the fast path makes is checked against granit's, so the
            // whole suite doubles as a differential test.
            #[cfg(test)]
            match read_granit(source) {
                Ok(granit) => assert_eq!(
                    format!("{read:?}"),
                    format!("{granit:?}"),
                    "the fast path and granit read {source:?} differently"
                ),
                Err(e) => panic!("the fast path reads {source:?}, granit fails: {e}"),
            }
            return Ok(read);
        }
    }
    read_granit(source)
}

/// `VEIL_YAML_FAST=0` turns the fast scanner off, so that a test suite can run over granit
/// alone; read once.
pub(crate) fn fast_path_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("VEIL_YAML_FAST").is_none_or(|v| v != "0"))
}

/// [`read`] over the fast scanner; `None` when it declines or anything fails.
pub(super) fn read_fast(source: &str) -> Option<Read> {
    let mut reader = Reader::new(source);
    let complete = super::fast::scan(source, |event, at| reader.event(event, at, None).is_ok());
    if !complete {
        return None;
    }
    reader.finish().ok()
}

/// [`read`] over granit.
pub(super) fn read_granit(source: &str) -> Result<Read, StoreError> {
    let mut reader = Reader::new(source);
    for event in granit_events(source) {
        let (event, at, tag_range) = event?;
        reader.event(event, at, tag_range)?;
    }
    reader.finish()
}

/// granit's events over `source`, with the positions the reader takes from their spans.
pub(super) fn granit_events(
    source: &str,
) -> impl Iterator<Item = Result<(Event<'_>, Position, Option<Range<usize>>), StoreError>> {
    let options = granit_parser::options! {
        // libyaml (and so yaml.v3) adds no line feed to a block scalar ending the input.
        block_scalar_eof_without_line_feed: true,
        // A long run of comment lines is ordinary in configuration files.
        max_buffered_comment_events: 1 << 20,
    };
    Parser::new_from_str_with_options(source, options).map(|event| {
        let (event, span) = event.map_err(|e| StoreError::Syntax {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info(),
        })?;
        let at = Position {
            start: offset(&span.start),
            end: offset(&span.end),
            line: span.start.line(),
            end_line: span.end.line(),
            column: span.start.col(),
            indent: span.indent,
        };
        let tag_range = span.tag_span().map(|t| offset(&t.start)..offset(&t.end));
        Ok((event, at, tag_range))
    })
}

fn offset(marker: &Marker) -> usize {
    marker.byte_offset().unwrap_or(marker.index())
}

/// Where an event stands, as the reader uses it: byte offsets, the lines (from 1) of its start
/// and end, the column (in characters, from 0) of its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub start: usize,
    pub end: usize,
    pub line: usize,
    pub end_line: usize,
    pub column: usize,
    /// Content indentation, reported for block scalars (and block mapping keys).
    pub indent: Option<usize>,
}

/// Where a leaf stands, as the writer needs it to put new text in its place. One is kept per
/// leaf, so columns are stored in 32 bits ([`TOO_WIDE`] past that, which makes the writer fall
/// back to fresh YAML rather than guess).
#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug))]
pub(crate) struct LeafContext {
    /// Inside a flow collection, where `,[]{}` end a plain scalar.
    pub in_flow: bool,
    /// An expanded alias: always rewritten, so no alias survives over a changed value.
    pub alias: bool,
    /// Whether the value as read can be recomputed from the source text.
    pub(super) from_source: FromSource,
    /// Column of the enclosing block collection (its keys, or its `-` indicators).
    parent_indent: u32,
    /// For an element of a block list: the column of its `-`; [`NO_DASH`] otherwise.
    list_dash: u32,
}

const NO_DASH: u32 = u32::MAX;
const TOO_WIDE: u32 = u32::MAX - 1;

fn column(at: usize) -> u32 {
    u32::try_from(at).map_or(TOO_WIDE, |c| c.min(TOO_WIDE))
}

impl Default for LeafContext {
    fn default() -> Self {
        LeafContext {
            in_flow: false,
            alias: false,
            from_source: FromSource::No,
            parent_indent: 0,
            list_dash: NO_DASH,
        }
    }
}

impl LeafContext {
    pub(crate) fn new(
        in_flow: bool,
        parent_indent: usize,
        list_dash: Option<usize>,
        alias: bool,
    ) -> Self {
        LeafContext {
            in_flow,
            alias,
            from_source: FromSource::No,
            parent_indent: column(parent_indent),
            list_dash: list_dash.map_or(NO_DASH, column),
        }
    }

    /// Column of the enclosing block collection; `None` when too wide to have been recorded.
    pub(super) fn parent_indent(&self) -> Option<usize> {
        (self.parent_indent != TOO_WIDE).then_some(self.parent_indent as usize)
    }

    /// For an element of a block list: the column of its `-` (`None` also when too wide).
    pub(super) fn list_dash(&self) -> Option<usize> {
        (self.list_dash < TOO_WIDE).then_some(self.list_dash as usize)
    }
}

/// How a scalar's value as read follows from its source text, so the layout need not keep a copy.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub(super) enum FromSource {
    #[default]
    No,
    /// Plain and untagged, the source text is the scalar's text.
    Plain,
    /// Quoted and untagged, the text between the quotes is the scalar's text.
    Quoted,
}

struct Frame {
    body: Body,
    /// Column of the keys (mapping) or `-` indicators (sequence).
    indent: usize,
    flow: bool,
    anchor: usize,
    /// Line on which the last item ended, for end-of-line comments.
    last_line: usize,
    /// Whether keys are checked for duplicates (first document only, as sops).
    check_duplicates: bool,
    /// Hashes of the keys so far, for the duplicate check of large mappings (small ones are
    /// scanned); a hash match is confirmed against the keys themselves.
    seen: Option<HashSet<u64, BuildHasherDefault<KeyHasher>>>,
}

/// Keys are hashed once each; FNV-1a is plenty for that and much cheaper than SipHash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn write_u64(&mut self, n: u64) {
        // The set holds hashes already.
        self.0 = n;
    }
}

fn key_hash(key: &str) -> u64 {
    BuildHasherDefault::<KeyHasher>::default().hash_one(key)
}

/// Mappings with more keys than this get a hash set for the duplicate check.
const SCAN_KEYS: usize = 16;

enum Body {
    Map(Map, Option<PendingKey>),
    List(List),
}

struct PendingKey {
    key: String,
    line: usize,
    start: usize,
}

struct PendingComment {
    comment: Comment,
    column: usize,
    /// An end-of-line comment after a bare `-`: it belongs to the element's content.
    into_collection: bool,
}

pub(crate) struct Reader<'s> {
    source: &'s str,
    frames: Vec<Frame>,
    pending: Vec<PendingComment>,
    anchors: HashMap<usize, Node>,
    /// Item vectors of closed collections, emptied, for the next ones to grow in: each
    /// collection then costs one exact allocation instead of a series of growing ones.
    spare_maps: Vec<Vec<MapItem>>,
    spare_lists: Vec<Vec<ListItem>>,
    /// The shape's size, counted as the events come (near enough to allocate it once), unless
    /// an alias copied a collection.
    size: ShapeSize,
    copied_collection: bool,
    /// Leaf contexts by source offset, mostly in source order; sorted once at the end.
    contexts: Vec<(usize, LeafContext)>,
    documents: Vec<Map>,
    layouts: Vec<DocumentLayout>,
    metadata: Option<Node>,
    /// The current document, once its root mapping is complete.
    root: Option<Map>,
    top: Option<(usize, bool)>,
    sops_range: Option<Range<usize>>,
    /// End of the last node token, where a block scalar's header search starts.
    pub(crate) last_content_end: usize,
    /// End of the last token of the current document (content or comment).
    document_end: usize,
}

enum Content {
    Scalar(Scalar, LeafContext),
    Collection(Frame),
    Alias(Node),
}

impl<'s> Reader<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        Reader {
            source,
            frames: Vec::new(),
            pending: Vec::new(),
            anchors: HashMap::new(),
            spare_maps: Vec::new(),
            spare_lists: Vec::new(),
            size: ShapeSize::default(),
            copied_collection: false,
            contexts: Vec::new(),
            documents: Vec::new(),
            layouts: Vec::new(),
            metadata: None,
            root: None,
            top: None,
            sops_range: None,
            last_content_end: 0,
            document_end: 0,
        }
    }

    fn event(
        &mut self,
        event: Event<'_>,
        at: Position,
        tag_range: Option<Range<usize>>,
    ) -> Result<(), StoreError> {
        match event {
            Event::DocumentStart(..) => {
                self.document_end = at.end;
                self.anchors.clear();
            }
            Event::DocumentEnd => self.end_document(),
            Event::Comment(text, placement) => {
                self.document_end = self.document_end.max(at.end);
                self.size.steps += 1;
                self.size.leaves += 1;
                let comment = Comment {
                    text: text.into_owned(),
                    inline: placement == Placement::Right,
                    span: Some(Span {
                        range: at.start..at.end,
                        style: Style::Plain,
                    }),
                };
                if comment.inline {
                    self.end_of_line_comment(comment, at);
                } else {
                    self.pending.push(PendingComment {
                        comment,
                        column: at.column,
                        into_collection: false,
                    });
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.document_end = self.document_end.max(at.end);
                if self.is_key_slot() {
                    self.last_content_end = at.end;
                    if style == ScalarStyle::Plain
                        && tag.is_none()
                        && matches!(resolve_typed(&text), Ok(Some(_)))
                    {
                        return Err(StoreError::NonStringKey {
                            path: display_path(&self.path()),
                            key: text.into_owned(),
                        });
                    }
                    return self.key(text.into_owned(), at);
                }
                let value = self.scalar_value(&text, style, tag.as_deref())?;
                let range = self.scalar_range(style, at, tag_range);
                let from_source = if tag.is_some() {
                    FromSource::No
                } else {
                    match style {
                        ScalarStyle::Plain if is_source(self.source.get(range.clone()), &text) => {
                            FromSource::Plain
                        }
                        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
                            if range.len() >= 2
                                && is_source(
                                    self.source.get(range.start + 1..range.end - 1),
                                    &text,
                                ) =>
                        {
                            FromSource::Quoted
                        }
                        _ => FromSource::No,
                    }
                };
                self.last_content_end = at.end;
                let scalar = Scalar {
                    value,
                    span: Some(Span {
                        range,
                        style: match style {
                            ScalarStyle::SingleQuoted => Style::SingleQuoted,
                            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                            ScalarStyle::Literal => Style::Literal,
                            ScalarStyle::Folded => Style::Folded,
                            _ => Style::Plain,
                        },
                    }),
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, Node::Scalar(scalar.clone()));
                }
                let mut context = self.leaf_context(false);
                context.from_source = from_source;
                self.content(Content::Scalar(scalar, context), at)?;
            }
            Event::Alias(id) => {
                self.document_end = self.document_end.max(at.end);
                self.last_content_end = at.end;
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(self.structure("an alias refers to an unknown anchor"));
                };
                if self.is_key_slot() {
                    let Node::Scalar(scalar) = target else {
                        return Err(self.structure("a mapping key must be a scalar"));
                    };
                    let key = String::from_utf8_lossy(&scalar.value.canonical_bytes()).into();
                    return self.key(key, at);
                }
                let node = match target {
                    Node::Scalar(scalar) => {
                        let context = self.leaf_context(true);
                        let scalar = Scalar {
                            value: scalar.value,
                            span: Some(Span {
                                range: at.start..at.end,
                                style: Style::Plain,
                            }),
                        };
                        return self.content(Content::Scalar(scalar, context), at);
                    }
                    mut collection => {
                        self.copied_collection = true;
                        // The copy has no source of its own: the writer falls back to a fresh
                        // rendering rather than writing a value twice.
                        strip_spans(&mut collection);
                        collection
                    }
                };
                self.content(Content::Alias(node), at)?;
            }
            Event::MappingStart(..) | Event::SequenceStart(..) if self.is_key_slot() => {
                return Err(self.structure("complex mapping keys are not supported"));
            }
            Event::MappingStart(style, anchor, _) => {
                self.document_end = self.document_end.max(at.end);
                self.size.steps += 2;
                self.last_content_end = at.end;
                let flow = style == StructureStyle::Flow;
                let items = self.spare_maps.pop().unwrap_or_default();
                let frame = self.new_frame(Body::Map(Map(items), None), at.column, flow, anchor);
                self.content(Content::Collection(frame), at)?;
            }
            Event::SequenceStart(style, anchor, _) => {
                self.document_end = self.document_end.max(at.end);
                self.size.steps += 2;
                self.last_content_end = at.end;
                let flow = style == StructureStyle::Flow;
                let indent = if flow {
                    at.column
                } else {
                    self.dash_column(at)
                };
                let items = self.spare_lists.pop().unwrap_or_default();
                let frame = self.new_frame(Body::List(List(items)), indent, flow, anchor);
                if self.frames.is_empty() {
                    return Err(self.structure("the top level of a document must be a mapping"));
                }
                self.content(Content::Collection(frame), at)?;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(frame) = self.frames.last() {
                    if frame.flow {
                        self.document_end = self.document_end.max(at.end);
                        self.last_content_end = at.end;
                    }
                }
                self.end_collection(at)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn new_frame(&self, body: Body, indent: usize, flow: bool, anchor: usize) -> Frame {
        let first_document = self.documents.is_empty() && self.root.is_none();
        Frame {
            check_duplicates: first_document && matches!(body, Body::Map(..)),
            body,
            indent,
            flow: flow || self.frames.last().is_some_and(|f| f.flow),
            anchor,
            last_line: 0,
            seen: None,
        }
    }

    /// The column of a block sequence's first `-`: the event may point at the dash or at the
    /// first element's content.
    pub(crate) fn dash_column(&self, at: Position) -> usize {
        let bytes = self.source.as_bytes();
        let mut i = at.start.min(bytes.len());
        if bytes.get(i) != Some(&b'-') {
            while i > 0 && matches!(bytes[i - 1], b' ' | b'\t') {
                i -= 1;
            }
            if i == 0 || bytes[i - 1] != b'-' {
                return at.column;
            }
            i -= 1;
        }
        i - line_start(self.source, i)
    }

    fn is_key_slot(&self) -> bool {
        matches!(
            self.frames.last(),
            Some(Frame {
                body: Body::Map(_, None),
                ..
            })
        )
    }

    fn key(&mut self, key: String, at: Position) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        let Some(frame) = self.frames.last_mut() else {
            return Ok(());
        };
        if frame.check_duplicates && is_duplicate(frame, &key) {
            let mut steps = self.path();
            steps.push(PathStep::Key(key));
            return Err(StoreError::Structure {
                path: display_path(&steps),
                message: "duplicate key".into(),
            });
        }
        let Some(frame) = self.frames.last_mut() else {
            return Ok(());
        };
        if let Body::Map(map, slot) = &mut frame.body {
            for p in pending {
                map.0.push(MapItem::Comment(p.comment));
            }
            self.size.steps += 1;
            self.size.key_bytes += key.len();
            *slot = Some(PendingKey {
                key,
                line: at.line,
                start: at.start,
            });
        }
        Ok(())
    }

    fn leaf_context(&self, alias: bool) -> LeafContext {
        match self.frames.last() {
            Some(frame) => LeafContext::new(
                frame.flow,
                frame.indent,
                match frame.body {
                    Body::List(_) if !frame.flow => Some(frame.indent),
                    _ => None,
                },
                alias,
            ),
            None => LeafContext::default(),
        }
    }

    fn scalar_value(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
    ) -> Result<Value, StoreError> {
        let Some(tag) = tag else {
            // Quoted and block scalars are always strings.
            return if style == ScalarStyle::Plain {
                self.resolved(text)
            } else {
                Ok(Value::Str(text.to_string()))
            };
        };
        if tag.handle() != "tag:yaml.org,2002:" {
            // Unknown tags (`!Ref`) are dropped and the text kept, as sops does.
            return Ok(Value::Str(text.to_string()));
        }
        let wanted = tag.suffix();
        let value = match wanted {
            "binary" => {
                let compact: String = text.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|_| self.structure("a !!binary value is not valid base64"))?;
                return Ok(match String::from_utf8(bytes) {
                    Ok(s) => Value::Str(s),
                    Err(e) => Value::Bytes(e.into_bytes()),
                });
            }
            "int" | "float" | "bool" | "null" | "timestamp" => self.resolved(text)?,
            _ => return Ok(Value::Str(text.to_string())),
        };
        match (wanted, value) {
            ("int", v @ Value::Int(_))
            | ("float", v @ Value::Float(_))
            | ("bool", v @ Value::Bool(_))
            | ("null", v @ Value::Null)
            | ("timestamp", v @ Value::Time(_)) => Ok(v),
            ("float", Value::Int(i)) => Ok(Value::Float(i as f64)),
            _ => Err(self.structure(&format!("the value does not match its !!{wanted} tag"))),
        }
    }

    fn resolved(&self, text: &str) -> Result<Value, StoreError> {
        resolve_plain(text).map_err(|ResolveError::UnsignedInteger| {
            self.structure("integer too large for a signed 64-bit value")
        })
    }

    /// The source range the writer replaces: a block scalar from its `|`/`>` header to the
    /// end of its last non-blank line, a tagged scalar including its tag.
    pub(crate) fn scalar_range(
        &self,
        style: ScalarStyle,
        at: Position,
        tag_range: Option<Range<usize>>,
    ) -> Range<usize> {
        let start = tag_range
            .as_ref()
            .map_or(at.start, |t| t.start.min(at.start));
        if !matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
            return start..at.end;
        }
        let search_from =
            tag_range.map_or(self.last_content_end, |t| t.end.max(self.last_content_end));
        let search_from = search_from.min(at.start);
        let header = self.source[search_from..at.start]
            .find(['|', '>'])
            .map_or(at.start, |i| search_from + i);
        // The content ends with its last line holding more than indentation: any text, or
        // spaces beyond the indentation. The span may also cover the next line's indentation,
        // which is not a line of the block unless the input ends there.
        let indent = at.indent.unwrap_or(0);
        let mut content_end = at.start;
        let mut line_at = at.start;
        for line in self.source[at.start..at.end].split_inclusive('\n') {
            let complete = line.ends_with('\n') || at.end == self.source.len();
            let text = line.trim_end_matches(['\n', '\r']);
            let first = line_at == at.start;
            let deep = if first {
                !text.is_empty()
            } else {
                text.len() > indent
            };
            line_at += line.len();
            if complete && (deep || !text.trim().is_empty()) {
                content_end = line_at;
            }
        }
        // An empty block starts on the line after its header.
        let content_end = content_end.max(line_end_after(self.source, header));
        start.min(header)..content_end
    }

    /// Files a node (or a key's value) into the open collection, flushing held comments.
    fn content(&mut self, content: Content, at: Position) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        match content {
            Content::Collection(mut frame) => {
                let in_list = matches!(
                    self.frames.last(),
                    Some(Frame {
                        body: Body::List(_),
                        ..
                    })
                );
                let (outside, inside): (Vec<_>, Vec<_>) = pending
                    .into_iter()
                    .partition(|p| in_list && !p.into_collection);
                self.file_comments(outside);
                for p in inside {
                    push_comment(&mut frame, p.comment, &mut self.contexts);
                }
                self.frames.push(frame);
                Ok(())
            }
            Content::Scalar(scalar, context) => {
                self.size.steps += 1;
                self.size.leaves += 1;
                self.file_comments(pending);
                if let Some(span) = &scalar.span {
                    self.contexts.push((span.range.start, context));
                }
                self.place(Node::Scalar(scalar), at.end_line)
            }
            Content::Alias(node) => {
                self.file_comments(pending);
                self.place(node, at.end_line)
            }
        }
    }

    /// Held comments become items of the innermost open collection.
    fn file_comments(&mut self, comments: Vec<PendingComment>) {
        if comments.is_empty() {
            return;
        }
        match self.frames.last_mut() {
            Some(frame) => {
                for p in comments {
                    push_comment(frame, p.comment, &mut self.contexts);
                }
            }
            None => self.pending.extend(comments),
        }
    }

    /// Adds a finished node to its parent, or makes it the document root.
    fn place(&mut self, node: Node, end_line: usize) -> Result<(), StoreError> {
        let depth = self.frames.len();
        let last_content_end = self.last_content_end;
        let Some(frame) = self.frames.last_mut() else {
            return self.set_root(node);
        };
        frame.last_line = end_line;
        match &mut frame.body {
            Body::Map(map, slot) => {
                let Some(pending) = slot.take() else {
                    return Ok(());
                };
                if depth == 1 && pending.key == "sops" && self.sops_range.is_none() {
                    self.sops_range = Some(pending.start..last_content_end);
                }
                map.0.push(MapItem::Pair(Pair {
                    key: pending.key,
                    value: node,
                }));
            }
            Body::List(list) => list.0.push(ListItem::Node(node)),
        }
        Ok(())
    }

    fn set_root(&mut self, node: Node) -> Result<(), StoreError> {
        match node {
            Node::Map(map) => self.root = Some(map),
            Node::Scalar(Scalar {
                value: Value::Null, ..
            }) => self.root = Some(Map::new()),
            _ => return Err(self.structure("the top level of a document must be a mapping")),
        }
        Ok(())
    }

    fn end_of_line_comment(&mut self, comment: Comment, at: Position) {
        let Some(frame) = self.frames.last_mut() else {
            self.pending.push(PendingComment {
                comment,
                column: at.column,
                into_collection: false,
            });
            return;
        };
        let same_line = frame.last_line == at.line;
        match &mut frame.body {
            Body::Map(map, Some(key)) if key.line == at.line => {
                map.0.push(MapItem::Comment(comment));
            }
            Body::Map(map, None) if same_line => {
                let before = map
                    .0
                    .iter()
                    .rposition(|i| matches!(i, MapItem::Pair(_)))
                    .unwrap_or(map.0.len());
                map.0.insert(before, MapItem::Comment(comment));
            }
            Body::List(list) if same_line => {
                let before = list
                    .0
                    .iter()
                    .rposition(|i| matches!(i, ListItem::Node(_)))
                    .unwrap_or(list.0.len());
                if let Some(span) = &comment.span {
                    let context = list_context(frame.indent, frame.flow);
                    self.contexts.push((span.range.start, context));
                }
                list.0.insert(before, ListItem::Comment(comment));
            }
            _ => self.pending.push(PendingComment {
                comment,
                column: at.column,
                into_collection: true,
            }),
        }
    }

    fn end_collection(&mut self, at: Position) -> Result<(), StoreError> {
        let Some(mut frame) = self.frames.pop() else {
            return Ok(());
        };
        // Foot comments: those indented at least as deep as this collection, in order.
        let claimed = if frame.flow {
            self.pending.len()
        } else {
            self.pending
                .iter()
                .take_while(|p| p.column >= frame.indent)
                .count()
        };
        for p in self.pending.drain(..claimed) {
            push_comment(&mut frame, p.comment, &mut self.contexts);
        }
        if self.frames.is_empty() {
            self.top = Some((frame.indent, !frame.flow));
        }
        // The node gets its items in a vector of their exact size; the frame's vector, grown
        // to fit, goes back for the next collection.
        let node = match frame.body {
            Body::Map(mut map, _) => {
                let mut items = Vec::with_capacity(map.0.len());
                items.append(&mut map.0);
                self.spare_maps.push(map.0);
                Node::Map(Map(items))
            }
            Body::List(mut list) => {
                let mut items = Vec::with_capacity(list.0.len());
                items.append(&mut list.0);
                self.spare_lists.push(list.0);
                Node::List(List(items))
            }
        };
        if frame.anchor != 0 {
            let mut copy = node.clone();
            strip_spans(&mut copy);
            self.anchors.insert(frame.anchor, copy);
        }
        // Nothing can follow a block collection on its last line; a flow one may carry a comment.
        let end_line = if frame.flow { at.end_line } else { 0 };
        self.place(node, end_line)
    }

    fn end_document(&mut self) {
        let mut map = self.root.take().unwrap_or_default();
        for p in self.pending.drain(..) {
            map.0.push(MapItem::Comment(p.comment));
        }
        let sops = self.sops_range.take().map(|range| {
            line_start(self.source, range.start)..line_end_after(self.source, range.end)
        });
        if map.get("sops").is_some() {
            let found = map.remove("sops");
            if self.metadata.is_none() {
                self.metadata = found;
            }
        }
        let (top_indent, top_block) = self.top.take().unwrap_or((0, true));
        self.layouts.push(DocumentLayout {
            insert_at: line_end_after(self.source, self.document_end),
            top_indent,
            top_block,
            sops,
        });
        self.documents.push(map);
    }

    fn finish(mut self) -> Result<Read, StoreError> {
        if let Some(last) = self.documents.last_mut() {
            for p in self.pending.drain(..) {
                last.0.push(MapItem::Comment(p.comment));
            }
        }
        if self.documents.is_empty() {
            return Err(StoreError::Empty);
        }
        // Later entries for the same offset win, as they did in a map.
        self.contexts.sort_by_key(|(start, _)| *start);
        let size = if self.copied_collection {
            let mut size = ShapeSize::default();
            for document in &self.documents {
                size.map(document);
            }
            size
        } else {
            self.size
        };
        let mut shape = ShapeBuilder {
            source: self.source,
            contexts: &self.contexts,
            cursor: 0,
            data: ShapeData {
                steps: Vec::with_capacity(size.steps + self.documents.len()),
                leaves: Vec::with_capacity(size.leaves),
                keys: String::with_capacity(size.key_bytes),
            },
        };
        for document in &self.documents {
            shape.map(document);
            shape.data.steps.push(Step::EndDocument);
        }
        let shape = Shape(std::sync::Arc::new(shape.data));
        drop(self.contexts);
        Ok(Read {
            documents: self.documents,
            metadata: self.metadata,
            layouts: self.layouts,
            shape,
        })
    }

    /// The key path of the node being read, for error messages.
    fn path(&self) -> Vec<PathStep> {
        self.frames
            .iter()
            .filter_map(|frame| match &frame.body {
                Body::Map(_, Some(key)) => Some(PathStep::Key(key.key.clone())),
                Body::Map(_, None) => None,
                Body::List(list) => Some(PathStep::Index(list.nodes().count())),
            })
            .collect()
    }

    fn structure(&self, message: &str) -> StoreError {
        StoreError::Structure {
            path: display_path(&self.path()),
            message: message.to_string(),
        }
    }
}

/// Whether a scalar's text is the source text `source`: often the very same bytes (a borrowed
/// event text), which spares the comparison.
fn is_source(source: Option<&str>, text: &str) -> bool {
    source.is_some_and(|s| std::ptr::eq(s, text) || s == text)
}

fn list_context(indent: usize, flow: bool) -> LeafContext {
    LeafContext::new(flow, indent, (!flow).then_some(indent), false)
}

/// Whether `key` is already a key of the frame's mapping. Small mappings are scanned; larger
/// ones keep a set of key hashes, and a hash seen before is confirmed by a scan.
fn is_duplicate(frame: &mut Frame, key: &str) -> bool {
    let Body::Map(map, _) = &frame.body else {
        return false;
    };
    let scan = || map.pairs().any(|p| p.key == key);
    match &mut frame.seen {
        Some(seen) => !seen.insert(key_hash(key)) && scan(),
        None => {
            if scan() {
                return true;
            }
            if map.0.len() >= SCAN_KEYS {
                let mut seen: HashSet<u64, BuildHasherDefault<KeyHasher>> =
                    map.pairs().map(|p| key_hash(&p.key)).collect();
                seen.insert(key_hash(key));
                frame.seen = Some(seen);
            }
            false
        }
    }
}

fn push_comment(frame: &mut Frame, comment: Comment, contexts: &mut Vec<(usize, LeafContext)>) {
    match &mut frame.body {
        Body::Map(map, _) => map.0.push(MapItem::Comment(comment)),
        Body::List(list) => {
            if let Some(span) = &comment.span {
                contexts.push((span.range.start, list_context(frame.indent, frame.flow)));
            }
            list.0.push(ListItem::Comment(comment));
        }
    }
}

fn strip_spans(node: &mut Node) {
    match node {
        Node::Scalar(s) => s.span = None,
        Node::Map(map) => {
            for item in &mut map.0 {
                match item {
                    MapItem::Pair(p) => strip_spans(&mut p.value),
                    MapItem::Comment(c) => c.span = None,
                }
            }
        }
        Node::List(list) => {
            for item in &mut list.0 {
                match item {
                    ListItem::Node(n) => strip_spans(n),
                    ListItem::Comment(c) => c.span = None,
                }
            }
        }
    }
}

/// The byte offset where the line holding `at` starts.
pub(crate) fn line_start(source: &str, at: usize) -> usize {
    source[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// The offset just past the line break ending the line that holds the byte before `at`
/// (`at` itself when it already follows a line break).
pub(crate) fn line_end_after(source: &str, at: usize) -> usize {
    let at = at.min(source.len());
    if at == 0 || source.as_bytes().get(at - 1) == Some(&b'\n') {
        return at;
    }
    source[at..].find('\n').map_or(source.len(), |i| at + i + 1)
}

/// Counts the steps and key bytes of a shape, to allocate it once.
#[derive(Clone, Copy, Default)]
struct ShapeSize {
    steps: usize,
    leaves: usize,
    key_bytes: usize,
}

impl ShapeSize {
    fn map(&mut self, map: &Map) {
        self.steps += 2 + map.0.len();
        for item in &map.0 {
            match item {
                MapItem::Pair(pair) => {
                    self.key_bytes += pair.key.len();
                    self.node(&pair.value);
                }
                MapItem::Comment(_) => self.leaves += 1,
            }
        }
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::Map(map) => self.map(map),
            Node::List(list) => {
                self.steps += 2;
                for item in &list.0 {
                    match item {
                        ListItem::Node(node) => self.node(node),
                        ListItem::Comment(_) => {
                            self.steps += 1;
                            self.leaves += 1;
                        }
                    }
                }
            }
            Node::Scalar(_) => {
                self.steps += 1;
                self.leaves += 1;
            }
        }
    }
}

struct ShapeBuilder<'a> {
    source: &'a str,
    /// Sorted by offset.
    contexts: &'a [(usize, LeafContext)],
    /// Where the next leaf's context is likely to be in `contexts`.
    cursor: usize,
    data: ShapeData,
}

impl ShapeBuilder<'_> {
    /// The context recorded last for a leaf at `start`. Leaves come mostly in source order, so
    /// the entry after the previous hit is tried before a binary search.
    fn context(&mut self, start: usize) -> LeafContext {
        let contexts = self.contexts;
        let at = self.cursor;
        let last_at = |i: usize| contexts.get(i + 1).is_none_or(|(next, _)| *next != start);
        if let Some((offset, context)) = contexts.get(at) {
            if *offset == start && last_at(at) {
                self.cursor = at + 1;
                return *context;
            }
        }
        let after = contexts.partition_point(|(at, _)| *at <= start);
        match after.checked_sub(1).map(|i| &contexts[i]) {
            Some((at, context)) if *at == start => {
                self.cursor = after;
                *context
            }
            _ => LeafContext::default(),
        }
    }

    fn map(&mut self, map: &Map) {
        self.data.steps.push(Step::Open);
        for item in &map.0 {
            match item {
                MapItem::Pair(pair) => {
                    self.data.keys.push_str(&pair.key);
                    self.data.steps.push(Step::Key(self.data.keys.len()));
                    self.node(&pair.value);
                }
                MapItem::Comment(c) => self.comment(c),
            }
        }
        self.data.steps.push(Step::Close);
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::Map(map) => self.map(map),
            Node::List(list) => {
                self.data.steps.push(Step::Open);
                for item in &list.0 {
                    match item {
                        ListItem::Node(node) => self.node(node),
                        ListItem::Comment(c) => self.comment(c),
                    }
                }
                self.data.steps.push(Step::Close);
            }
            Node::Scalar(scalar) => {
                let step = match &scalar.span {
                    Some(span) => {
                        let context = self.context(span.range.start);
                        let original = if context.alias {
                            // Always rewritten: the value as read is never compared.
                            Original::Plain
                        } else {
                            match context.from_source {
                                FromSource::Plain => Original::Plain,
                                FromSource::Quoted => Original::Quoted,
                                FromSource::No => Original::Value(Box::new(scalar.value.clone())),
                            }
                        };
                        self.data.leaves.push(Leaf {
                            start: span.range.start,
                            original,
                            context,
                        });
                        Step::Leaf
                    }
                    None => Step::Unplaced,
                };
                self.data.steps.push(step);
            }
        }
    }

    fn comment(&mut self, comment: &Comment) {
        let step = match &comment.span {
            Some(span) => {
                let range = &span.range;
                let in_source = self.source.as_bytes().get(range.start) == Some(&b'#')
                    && self.source.get(range.start + 1..range.end) == Some(comment.text.as_str());
                let leaf = Leaf {
                    start: range.start,
                    original: if in_source {
                        Original::SourceComment
                    } else {
                        Original::Comment(comment.text.as_str().into())
                    },
                    context: self.context(range.start),
                };
                self.data.leaves.push(leaf);
                Step::Leaf
            }
            None => Step::Unplaced,
        };
        self.data.steps.push(step);
    }
}
