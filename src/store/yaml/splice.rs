//! Layout-preserving writing: the source text with only changed scalars and comments replaced.
//!
//! The tree is walked alongside the [`Shape`] recorded when it was read; any difference in
//! keys, nesting or leaf positions (a key added, removed or moved) means the source no longer
//! describes the tree, and the caller writes fresh YAML instead. Replacements are collected,
//! sorted by position and applied in one pass over the source.
//!
//! A large file can be written straight into a writer ([`splice_to`]): a rehearsal walk that
//! keeps nothing first finds out whether the layout holds, so that nothing is written when the
//! caller must fall back to fresh YAML; the real walk then hands its text over as it goes.

use std::io::{self, Write};
use std::ops::Range;

use super::read::{line_end_after, line_start, LeafContext};
use super::resolve::{is_plain_safe, resolve_typed};
use super::write::{
    is_sealed_comment, literal_block, metadata_block, push_double_quoted, push_inline_str,
    push_inline_text, push_spaces, push_typed_text, single_quoted,
};
use super::{Layout, Leaf, Original, Step};
use crate::tree::{Comment, ListItem, Map, MapItem, Node, Scalar, Span, Style, Value};

/// A replacement in buffered mode: `range` of the source becomes `texts[text]`.
struct Edit {
    range: Range<usize>,
    text: Range<usize>,
}

/// Where replacements go.
enum Sink<'w> {
    /// Straight into the output, while they come in source order (the common case).
    Direct {
        out: String,
        copied: usize,
        spill: Spill<'w>,
    },
    /// Collected and sorted, for trees whose walk order is not source order (inline comments
    /// filed before their item, a `sops` entry that is not last).
    Buffered {
        texts: String,
        edits: Vec<Edit>,
        spill: Spill<'w>,
    },
}

/// What becomes of the output once [`SPILL_AT`] bytes of it are gathered.
enum Spill<'w> {
    /// It is kept: the whole text is the result.
    Keep,
    /// It is thrown away: a rehearsal, run only to learn whether the walk goes through.
    Discard,
    /// It is written to a writer; the first write error is kept and ends the writing.
    To(&'w mut dyn Write, Option<io::Error>),
}

/// How much text a spilling sink gathers before it hands it on.
const SPILL_AT: usize = 64 * 1024;

/// Sources below this size are spliced in memory and written at once: a rehearsal costs more
/// than the memory it saves.
const STREAM_FROM: usize = 1 << 20;

impl Spill<'_> {
    fn take_if_full(&mut self, out: &mut String) {
        if out.len() >= SPILL_AT {
            self.take(out);
        }
    }

    fn take(&mut self, out: &mut String) {
        match self {
            Spill::Keep => return,
            Spill::Discard => {}
            Spill::To(writer, error) => {
                if error.is_none() {
                    if let Err(err) = writer.write_all(out.as_bytes()) {
                        *error = Some(err);
                    }
                }
            }
        }
        out.clear();
    }
}

/// The spliced text, or `None` when the tree no longer matches the layout.
pub(super) fn splice(
    documents: &[Map],
    layout: &Layout,
    metadata: Option<&Map>,
    step: usize,
) -> Option<String> {
    if documents.len() != layout.documents.len() {
        return None;
    }
    let source: &str = &layout.source;
    let shape = &layout.shape.0;
    let leaves = shape.leaves.len();
    // Room for every value to become a ciphertext (~110 bytes more than its text) and for the
    // metadata. Pages never written are never touched, so a generous reservation costs no
    // memory when the text shrinks (decryption).
    let capacity = source
        .len()
        .saturating_mul(2)
        .saturating_add(leaves.saturating_mul(128))
        .saturating_add(8192);
    let direct = Sink::Direct {
        out: String::with_capacity(capacity),
        copied: 0,
        spill: Spill::Keep,
    };
    match splice_into(documents, layout, metadata, step, direct) {
        Spliced::Done(text, _) => Some(text),
        Spliced::NoMatch => None,
        Spliced::OutOfOrder => {
            let buffered = Sink::Buffered {
                texts: String::new(),
                edits: Vec::new(),
                spill: Spill::Keep,
            };
            match splice_into(documents, layout, metadata, step, buffered) {
                Spliced::Done(text, _) => Some(text),
                _ => None,
            }
        }
    }
}

/// [`splice`] into `writer`; `None` (nothing written) when the tree no longer matches the
/// layout, else the outcome of writing.
pub(super) fn splice_to(
    documents: &[Map],
    layout: &Layout,
    metadata: Option<&Map>,
    step: usize,
    writer: &mut dyn Write,
) -> Option<io::Result<()>> {
    if layout.source.len() < STREAM_FROM {
        let text = splice(documents, layout, metadata, step)?;
        return Some(writer.write_all(text.as_bytes()));
    }
    let rehearsal = Sink::Direct {
        out: String::with_capacity(2 * SPILL_AT),
        copied: 0,
        spill: Spill::Discard,
    };
    let sink = match splice_into(documents, layout, metadata, step, rehearsal) {
        Spliced::NoMatch => return None,
        Spliced::Done(..) => Sink::Direct {
            out: String::with_capacity(2 * SPILL_AT),
            copied: 0,
            spill: Spill::To(writer, None),
        },
        Spliced::OutOfOrder => Sink::Buffered {
            texts: String::new(),
            edits: Vec::new(),
            spill: Spill::To(writer, None),
        },
    };
    match splice_into(documents, layout, metadata, step, sink) {
        Spliced::Done(mut rest, mut spill) => {
            spill.take(&mut rest);
            match spill {
                Spill::To(_, Some(err)) => Some(Err(err)),
                _ => Some(Ok(())),
            }
        }
        // The rehearsal went through the same walk; a buffered walk checks its edits before
        // it writes any of them.
        Spliced::NoMatch | Spliced::OutOfOrder => None,
    }
}

enum Spliced<'w> {
    /// The text not yet handed to the spill (all of it when kept), and the spill.
    Done(String, Spill<'w>),
    NoMatch,
    /// A replacement came before one already written: do it again buffered.
    OutOfOrder,
}

fn splice_into<'w>(
    documents: &[Map],
    layout: &Layout,
    metadata: Option<&Map>,
    step: usize,
    sink: Sink<'w>,
) -> Spliced<'w> {
    let source: &str = &layout.source;
    // Text written over several lines uses the file's own line ending.
    let crlf = source
        .find('\n')
        .is_some_and(|i| source[..i].ends_with('\r'));
    let mut walk = Walk {
        source,
        shape: &layout.shape.0.steps,
        leaves: &layout.shape.0.leaves,
        keys: &layout.shape.0.keys,
        at: 0,
        leaf_at: 0,
        key_at: 0,
        step,
        crlf,
        sink,
        out_of_order: false,
    };
    let result = walk_documents(&mut walk, documents, layout, metadata);
    if walk.out_of_order {
        return Spliced::OutOfOrder;
    }
    if result.is_none() || walk.at != walk.shape.len() {
        return Spliced::NoMatch;
    }
    match walk.sink {
        Sink::Direct {
            mut out,
            copied,
            spill,
        } => {
            out.push_str(&source[copied..]);
            Spliced::Done(out, spill)
        }
        Sink::Buffered {
            texts,
            mut edits,
            mut spill,
        } => {
            // Nearly sorted already (only inline comments sit before their item): cheap to sort.
            edits.sort_by_key(|e| (e.range.start, e.range.end));
            // Checked before anything is written, so that a mismatch leaves the writer untouched.
            let mut copied = 0;
            for edit in &edits {
                if edit.range.start < copied || edit.range.end > source.len() {
                    return Spliced::NoMatch;
                }
                copied = edit.range.end;
            }
            let capacity = match spill {
                Spill::Keep => source.len() + texts.len(),
                _ => 2 * SPILL_AT,
            };
            let mut out = String::with_capacity(capacity);
            let mut copied = 0;
            for edit in edits {
                out.push_str(&source[copied..edit.range.start]);
                out.push_str(&texts[edit.text]);
                copied = edit.range.end;
                spill.take_if_full(&mut out);
            }
            out.push_str(&source[copied..]);
            Spliced::Done(out, spill)
        }
    }
}

fn walk_documents(
    walk: &mut Walk<'_, '_>,
    documents: &[Map],
    layout: &Layout,
    metadata: Option<&Map>,
) -> Option<()> {
    let source = walk.source;
    let step = walk.step;
    for (document, place) in documents.iter().zip(&layout.documents) {
        walk.map(document)?;
        walk.expect(|s| matches!(s, Step::EndDocument))?;
        if let Some(sops) = &place.sops {
            walk.edit(sops.clone(), |_| Some(()))?;
        }
        if let Some(metadata) = metadata {
            if !place.top_block {
                return None;
            }
            let at = place.insert_at;
            if at > 0 && !source[..at].ends_with('\n') && ends_with_plain_block_scalar(document) {
                // The line break before the sops block would become part of that block's value
                // (sops would then see another MAC): write the document afresh instead.
                return None;
            }
            walk.edit(at..at, |out| {
                if at > 0 && !source[..at].ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&metadata_block(metadata, place.top_indent, step));
                Some(())
            })?;
        }
    }
    Some(())
}

/// Whether the document's last item is an unencrypted block scalar (`|`, `>` and their
/// variants), whose value would take in any line break written after it.
fn ends_with_plain_block_scalar(document: &Map) -> bool {
    let mut node = match document.0.last() {
        Some(MapItem::Pair(pair)) => &pair.value,
        _ => return false,
    };
    loop {
        node = match node {
            Node::Map(map) => match map.0.last() {
                Some(MapItem::Pair(pair)) => &pair.value,
                _ => return false,
            },
            Node::List(list) => match list.0.last() {
                Some(ListItem::Node(node)) => node,
                _ => return false,
            },
            Node::Scalar(scalar) => {
                let block = scalar
                    .span
                    .as_ref()
                    .is_some_and(|span| matches!(span.style, Style::Literal | Style::Folded));
                let sealed = scalar
                    .value
                    .as_str()
                    .is_some_and(|text| text.starts_with("ENC["));
                return block && !sealed;
            }
        };
    }
}

struct Walk<'a, 'w> {
    source: &'a str,
    shape: &'a [Step],
    leaves: &'a [Leaf],
    keys: &'a str,
    at: usize,
    /// The next of `leaves`.
    leaf_at: usize,
    /// Where the next key starts in `keys`.
    key_at: usize,
    step: usize,
    crlf: bool,
    sink: Sink<'w>,
    /// Set when a direct sink met a replacement before its position.
    out_of_order: bool,
}

impl<'a> Walk<'a, '_> {
    fn next(&mut self) -> Option<&'a Step> {
        let step = self.shape.get(self.at)?;
        self.at += 1;
        Some(step)
    }

    fn expect(&mut self, wanted: impl Fn(&Step) -> bool) -> Option<()> {
        wanted(self.next()?).then_some(())
    }

    /// Replaces `range` of the source with what `write` appends (line breaks as the file's).
    fn edit(
        &mut self,
        range: Range<usize>,
        write: impl FnOnce(&mut String) -> Option<()>,
    ) -> Option<()> {
        let source = self.source;
        let crlf = self.crlf;
        let text_in = |buffer: &mut String| -> Option<Range<usize>> {
            let from = buffer.len();
            write(buffer)?;
            if crlf && buffer[from..].contains('\n') {
                // Rendered text has no line break of its own but those between block lines.
                let text = buffer.split_off(from);
                buffer.push_str(&text.replace('\n', "\r\n"));
            }
            Some(from..buffer.len())
        };
        match &mut self.sink {
            Sink::Direct { out, copied, spill } => {
                if range.start < *copied || range.end > source.len() {
                    self.out_of_order = true;
                    return None;
                }
                out.push_str(&source[*copied..range.start]);
                text_in(out)?;
                *copied = range.end;
                spill.take_if_full(out);
            }
            Sink::Buffered { texts, edits, .. } => {
                let text = text_in(texts)?;
                edits.push(Edit { range, text });
            }
        }
        Some(())
    }

    fn map(&mut self, map: &Map) -> Option<()> {
        self.expect(|s| matches!(s, Step::Open))?;
        for item in &map.0 {
            match item {
                MapItem::Pair(pair) => {
                    let Step::Key(end) = self.next()? else {
                        return None;
                    };
                    let start = std::mem::replace(&mut self.key_at, *end);
                    if self.keys.get(start..*end)? != pair.key {
                        return None;
                    }
                    self.node(&pair.value)?;
                }
                MapItem::Comment(comment) => self.comment(comment, false)?,
            }
        }
        self.expect(|s| matches!(s, Step::Close))
    }

    fn node(&mut self, node: &Node) -> Option<()> {
        match node {
            Node::Map(map) => self.map(map),
            Node::List(list) => {
                self.expect(|s| matches!(s, Step::Open))?;
                for item in &list.0 {
                    match item {
                        ListItem::Node(node) => self.node(node)?,
                        ListItem::Comment(comment) => self.comment(comment, true)?,
                    }
                }
                self.expect(|s| matches!(s, Step::Close))
            }
            Node::Scalar(scalar) => self.scalar(scalar),
        }
    }

    fn leaf<'s>(&mut self, span: Option<&'s Span>) -> Option<(&'a Leaf, &'s Span)> {
        let span = span?;
        let Step::Leaf = self.next()? else {
            return None;
        };
        let leaf = self.leaves.get(self.leaf_at)?;
        self.leaf_at += 1;
        (leaf.start == span.range.start).then_some((leaf, span))
    }

    /// Whether `value` is the value the leaf at `span` held when it was read.
    fn unchanged(&self, leaf: &Leaf, span: &Span, value: &Value) -> bool {
        let Some(text) = self.source.get(span.range.clone()) else {
            return false;
        };
        match &leaf.original {
            Original::Value(original) => **original == *value,
            Original::Plain => match value {
                // A plain text resolves to a string only as itself.
                Value::Str(s) => s == text && matches!(resolve_typed(text), Ok(None)),
                other => resolve_typed(text).is_ok_and(|v| v.as_ref() == Some(other)),
            },
            Original::Quoted => {
                matches!(value, Value::Str(s) if text.len() >= 2 && *s == text[1..text.len() - 1])
            }
            Original::SourceComment | Original::Comment(_) => false,
        }
    }

    fn scalar(&mut self, scalar: &Scalar) -> Option<()> {
        let (leaf, span) = self.leaf(scalar.span.as_ref())?;
        if !leaf.context.alias && self.unchanged(leaf, span, &scalar.value) {
            return Some(());
        }
        let source = self.source;
        let step = self.step;
        self.edit(span.range.clone(), |out| {
            render(source, span, &scalar.value, &leaf.context, step, out)
        })
    }

    fn comment(&mut self, comment: &Comment, in_list: bool) -> Option<()> {
        let (leaf, span) = self.leaf(comment.span.as_ref())?;
        if comment.text.contains('\n') {
            return None;
        }
        let source = self.source;
        let was_element = match &leaf.original {
            Original::SourceComment
                if source.get(span.range.start + 1..span.range.end)
                    == Some(comment.text.as_str()) =>
            {
                return Some(())
            }
            Original::Comment(text) if **text == *comment.text => return Some(()),
            original => !original.is_comment(),
        };
        let as_element = in_list && is_sealed_comment(&comment.text);
        let line = line_start(source, span.range.start);
        let before = &source[line..span.range.start];
        let own_line = before.trim().is_empty();
        match (was_element, as_element) {
            (false, false) => self.edit(span.range.clone(), |out| {
                out.push('#');
                out.push_str(&comment.text);
                Some(())
            }),
            (true, true) => {
                let in_flow = leaf.context.in_flow;
                self.edit(span.range.clone(), |out| {
                    push_inline_str(out, &comment.text, in_flow);
                    Some(())
                })
            }
            // An encrypted list comment becomes a `- ENC[…]` element (spec §6.1.4).
            (false, true) => {
                let dash = leaf.context.list_dash()?;
                let element = |out: &mut String| {
                    push_spaces(out, dash);
                    out.push_str("- ");
                    out.push_str(&comment.text);
                };
                if own_line {
                    self.edit(line..span.range.end, |out| {
                        element(out);
                        Some(())
                    })
                } else {
                    // After `- value`: the element goes on its own line before the value's,
                    // keeping the order of the tree (sops files the comment before the value).
                    let rest = &source[line..];
                    let starts_element = rest.len() - rest.trim_start_matches(' ').len() == dash
                        && rest.trim_start_matches(' ').starts_with('-');
                    if !starts_element {
                        return None;
                    }
                    let gap = before.len() - before.trim_end_matches([' ', '\t']).len();
                    self.edit(line..line, |out| {
                        element(out);
                        out.push('\n');
                        Some(())
                    })?;
                    self.edit(span.range.start - gap..span.range.end, |_| Some(()))
                }
            }
            // A `- ENC[…,type:comment]` element decrypted: a comment again, where the dash was.
            (true, false) => {
                if before.trim() != "-" {
                    return None;
                }
                let dash = line + before.find('-')?;
                self.edit(dash..span.range.end, |out| {
                    out.push('#');
                    out.push_str(&comment.text);
                    Some(())
                })
            }
        }
    }
}

/// Appends the new text for a scalar's range, in the style it was written in where the value
/// allows.
pub(crate) fn render(
    source: &str,
    span: &Span,
    value: &Value,
    context: &LeafContext,
    step: usize,
    out: &mut String,
) -> Option<()> {
    let range = &span.range;
    match (span.style, value) {
        (Style::Literal | Style::Folded, _) => {
            // The range runs from the header to the end of the last content line.
            let line_break = if source[..range.end].ends_with('\n') {
                "\n"
            } else {
                ""
            };
            let Value::Str(text) = value else {
                push_typed_text(out, value);
                out.push_str(line_break);
                return Some(());
            };
            let column = match block_content_column(source, range) {
                Some(column) => column,
                None => context.parent_indent()? + step,
            };
            if let Some(block) = literal_block(text, column) {
                if !block.keeps_trailing || blank_lines_after(source, range.end) == 0 {
                    // A folded block keeps its `>` while its value is one line, which folding
                    // leaves as it is.
                    let one_line = !text.trim_end_matches('\n').contains('\n');
                    if span.style == Style::Folded && one_line {
                        out.push_str(&block.header.replacen('|', ">", 1));
                    } else {
                        out.push_str(&block.header);
                    }
                    out.push('\n');
                    out.push_str(&block.body);
                    return Some(());
                }
            }
            push_double_quoted(out, text);
            out.push_str(line_break);
        }
        (Style::Plain, Value::Str(text)) if text.contains('\n') && !context.in_flow => {
            // A multi-line value where a one-line scalar stood (a file sops encrypted): a
            // literal block, when nothing else follows on the line.
            if matches!(source.as_bytes().get(range.end), Some(b'\n' | b'\r')) {
                if let Some(block) = literal_block(text, context.parent_indent()? + step) {
                    let after = line_end_after(source, range.end + 1);
                    if !block.keeps_trailing || blank_lines_after(source, after) == 0 {
                        let body = block.body.strip_suffix('\n').unwrap_or(&block.body);
                        out.push_str(&block.header);
                        out.push('\n');
                        out.push_str(body);
                        return Some(());
                    }
                }
            }
            push_double_quoted(out, text);
        }
        // In a flow collection a ciphertext cannot be plain (it holds commas): a plain value
        // is sealed in single quotes, and a single-quoted place opens to plain again, so that
        // `[a, "b"]` survives encryption and decryption unchanged.
        (Style::Plain, Value::Str(text)) if context.in_flow && !is_plain_safe(text, true) => {
            match single_quoted(text) {
                Some(quoted) => out.push_str(&quoted),
                None => push_double_quoted(out, text),
            }
        }
        (Style::SingleQuoted, Value::Str(text)) if context.in_flow && is_plain_safe(text, true) => {
            out.push_str(text)
        }
        (Style::Plain, _) => push_inline_text(out, value, context.in_flow),
        (Style::SingleQuoted, Value::Str(text)) => match single_quoted(text) {
            Some(quoted) => out.push_str(&quoted),
            None => push_double_quoted(out, text),
        },
        (Style::DoubleQuoted, Value::Str(text)) => push_double_quoted(out, text),
        // A typed value where a quoted string stood: quoting would turn it into a string.
        (_, other) => push_typed_text(out, other),
    }
    Some(())
}

/// The indentation of a block scalar's first non-blank content line.
fn block_content_column(source: &str, range: &Range<usize>) -> Option<usize> {
    let header_line = source.get(range.start..range.end)?;
    let content_start = range.start + header_line.find('\n')? + 1;
    source
        .get(content_start..range.end)?
        .split('\n')
        .find(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start_matches(' ').len())
        .filter(|column| *column > 0)
}

/// How many whitespace-only lines follow `at` (which starts a line).
fn blank_lines_after(source: &str, at: usize) -> usize {
    source
        .get(at..)
        .unwrap_or("")
        .split_inclusive('\n')
        .take_while(|line| line.trim().is_empty())
        .count()
}
