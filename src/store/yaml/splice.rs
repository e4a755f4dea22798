//! Layout-preserving writing: the source text with only changed scalars and comments replaced.
//!
//! The tree is walked alongside the [`Shape`] recorded when it was read; any difference in
//! keys, nesting or leaf positions (a key added, removed or moved) means the source no longer
//! describes the tree, and the caller writes fresh YAML instead. Replacements are collected,
//! sorted by position and applied in one pass over the source.

use std::ops::Range;

use super::read::{line_end_after, line_start, LeafContext};
use super::resolve::is_plain_safe;
use super::write::{
    double_quoted, inline_text, is_sealed_comment, literal_block, metadata_block, single_quoted,
    spaces, typed_text,
};
use super::{Layout, Leaf, Original, Step};
use crate::tree::{Comment, ListItem, Map, MapItem, Node, Scalar, Span, Style, Value};

struct Edit {
    range: Range<usize>,
    text: String,
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
    // Text written over several lines uses the file's own line ending.
    let crlf = source
        .find('\n')
        .is_some_and(|i| source[..i].ends_with('\r'));
    let mut walk = Walk {
        source,
        shape: &layout.shape.0,
        at: 0,
        step,
        crlf,
        edits: Vec::new(),
    };
    for (document, place) in documents.iter().zip(&layout.documents) {
        walk.map(document)?;
        walk.expect(|s| matches!(s, Step::EndDocument))?;
        if let Some(sops) = &place.sops {
            walk.edits.push(Edit {
                range: sops.clone(),
                text: String::new(),
            });
        }
        if let Some(metadata) = metadata {
            if !place.top_block {
                return None;
            }
            let mut text = String::new();
            if place.insert_at > 0 && !source[..place.insert_at].ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&metadata_block(metadata, place.top_indent, step));
            if crlf {
                text = text.replace('\n', "\r\n");
            }
            walk.edits.push(Edit {
                range: place.insert_at..place.insert_at,
                text,
            });
        }
    }
    if walk.at != walk.shape.len() {
        return None;
    }
    let mut edits = walk.edits;
    // Nearly sorted already (only inline comments sit before their item): cheap to sort.
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out =
        String::with_capacity(source.len() + edits.iter().map(|e| e.text.len()).sum::<usize>());
    let mut copied = 0;
    for edit in edits {
        if edit.range.start < copied || edit.range.end > source.len() {
            return None;
        }
        out.push_str(&source[copied..edit.range.start]);
        out.push_str(&edit.text);
        copied = edit.range.end;
    }
    out.push_str(&source[copied..]);
    Some(out)
}

struct Walk<'a> {
    source: &'a str,
    shape: &'a [Step],
    at: usize,
    step: usize,
    crlf: bool,
    edits: Vec<Edit>,
}

impl<'a> Walk<'a> {
    fn next(&mut self) -> Option<&'a Step> {
        let step = self.shape.get(self.at)?;
        self.at += 1;
        Some(step)
    }

    fn expect(&mut self, wanted: impl Fn(&Step) -> bool) -> Option<()> {
        wanted(self.next()?).then_some(())
    }

    fn map(&mut self, map: &Map) -> Option<()> {
        self.expect(|s| matches!(s, Step::Open))?;
        for item in &map.0 {
            match item {
                MapItem::Pair(pair) => {
                    self.expect(|s| matches!(s, Step::Key(k) if *k == pair.key))?;
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

    fn leaf(&mut self, span: Option<&Span>) -> Option<(&'a Leaf, Span)> {
        let span = span?;
        match self.next()? {
            Step::Leaf(leaf) if leaf.start == span.range.start => Some((leaf, span.clone())),
            _ => None,
        }
    }

    fn scalar(&mut self, scalar: &Scalar) -> Option<()> {
        let (leaf, span) = self.leaf(scalar.span.as_ref())?;
        if !leaf.context.alias {
            if let Original::Value(original) = &leaf.original {
                if *original == scalar.value {
                    return Some(());
                }
            }
        }
        let mut text = render(self.source, &span, &scalar.value, &leaf.context, self.step)?;
        if self.crlf {
            // Rendered text has no line break of its own but those between block lines.
            text = text.replace('\n', "\r\n");
        }
        self.edits.push(Edit {
            range: span.range,
            text,
        });
        Some(())
    }

    fn comment(&mut self, comment: &Comment, in_list: bool) -> Option<()> {
        let (leaf, span) = self.leaf(comment.span.as_ref())?;
        if comment.text.contains('\n') {
            return None;
        }
        let was_element = match &leaf.original {
            Original::Comment(text) if *text == comment.text => return Some(()),
            Original::Comment(_) => false,
            Original::Value(_) => true,
        };
        let as_element = in_list && is_sealed_comment(&comment.text);
        let source = self.source;
        let line = line_start(source, span.range.start);
        let before = &source[line..span.range.start];
        let own_line = before.trim().is_empty();
        let edit = match (was_element, as_element) {
            (false, false) => Edit {
                range: span.range,
                text: format!("#{}", comment.text),
            },
            (true, true) => Edit {
                range: span.range,
                text: inline_text(&Value::Str(comment.text.clone()), leaf.context.in_flow),
            },
            // An encrypted list comment becomes a `- ENC[…]` element (spec §6.1.4).
            (false, true) => {
                let dash = leaf.context.list_dash?;
                let element = format!("{}- {}", spaces(dash), comment.text);
                if own_line {
                    Edit {
                        range: line..span.range.end,
                        text: element,
                    }
                } else {
                    // After `- value`: the element goes on its own line before the value's,
                    // keeping the order of the tree (sops files the comment before the value).
                    let rest = &source[line..];
                    let starts_element = rest.len() - rest.trim_start_matches(' ').len() == dash
                        && rest.trim_start_matches(' ').starts_with('-');
                    if !starts_element {
                        return None;
                    }
                    let newline = if self.crlf { "\r\n" } else { "\n" };
                    let gap = before.len() - before.trim_end_matches([' ', '\t']).len();
                    self.edits.push(Edit {
                        range: line..line,
                        text: format!("{element}{newline}"),
                    });
                    Edit {
                        range: span.range.start - gap..span.range.end,
                        text: String::new(),
                    }
                }
            }
            // A `- ENC[…,type:comment]` element decrypted: a comment again, where the dash was.
            (true, false) => {
                if before.trim() != "-" {
                    return None;
                }
                let dash = line + before.find('-')?;
                Edit {
                    range: dash..span.range.end,
                    text: format!("#{}", comment.text),
                }
            }
        };
        self.edits.push(edit);
        Some(())
    }
}

/// The new text for a scalar's range, in the style it was written in where the value allows.
fn render(
    source: &str,
    span: &Span,
    value: &Value,
    context: &LeafContext,
    step: usize,
) -> Option<String> {
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
                return Some(format!("{}{line_break}", typed_text(value)));
            };
            let column =
                block_content_column(source, range).unwrap_or(context.parent_indent + step);
            if let Some(block) = literal_block(text, column) {
                if !block.keeps_trailing || blank_lines_after(source, range.end) == 0 {
                    // A folded block keeps its `>` while its value is one line, which folding
                    // leaves as it is.
                    let one_line = !text.trim_end_matches('\n').contains('\n');
                    let header = if span.style == Style::Folded && one_line {
                        block.header.replacen('|', ">", 1)
                    } else {
                        block.header
                    };
                    return Some(format!("{header}\n{}", block.body));
                }
            }
            Some(format!("{}{line_break}", double_quoted(text)))
        }
        (Style::Plain, Value::Str(text)) if text.contains('\n') && !context.in_flow => {
            // A multi-line value where a one-line scalar stood (a file sops encrypted): a
            // literal block, when nothing else follows on the line.
            if matches!(source.as_bytes().get(range.end), Some(b'\n' | b'\r')) {
                if let Some(block) = literal_block(text, context.parent_indent + step) {
                    let after = line_end_after(source, range.end + 1);
                    if !block.keeps_trailing || blank_lines_after(source, after) == 0 {
                        let body = block.body.strip_suffix('\n').unwrap_or(&block.body);
                        return Some(format!("{}\n{body}", block.header));
                    }
                }
            }
            Some(double_quoted(text))
        }
        // In a flow collection a ciphertext cannot be plain (it holds commas): a plain value
        // is sealed in single quotes, and a single-quoted place opens to plain again, so that
        // `[a, "b"]` survives encryption and decryption unchanged.
        (Style::Plain, Value::Str(text)) if context.in_flow && !is_plain_safe(text, true) => {
            Some(single_quoted(text).unwrap_or_else(|| double_quoted(text)))
        }
        (Style::SingleQuoted, Value::Str(text)) if context.in_flow && is_plain_safe(text, true) => {
            Some(text.clone())
        }
        (Style::Plain, _) => Some(inline_text(value, context.in_flow)),
        (Style::SingleQuoted, Value::Str(text)) => {
            Some(single_quoted(text).unwrap_or_else(|| double_quoted(text)))
        }
        (Style::DoubleQuoted, Value::Str(text)) => Some(double_quoted(text)),
        // A typed value where a quoted string stood: quoting would turn it into a string.
        (_, other) => Some(typed_text(other)),
    }
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
