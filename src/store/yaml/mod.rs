//! The YAML store: reads YAML streams as sops does, and writes them back keeping their layout.
//!
//! Reading (`read`) follows sops' YAML library, yaml.v3 (spec §6.1): one [`Map`] per document,
//! plain scalars typed by yaml.v3's rules (`resolve`), aliases expanded, comments filed where
//! sops files them (their container decides the AAD of an encrypted comment), the top-level
//! `sops` entry split off as metadata. Every scalar and comment keeps its source span.
//!
//! Writing has two paths:
//! * `splice`: when the tree still has the structure it was read with, the original text is
//!   copied and only the changed scalars and comments are replaced, each in its original style;
//!   the old `sops` block is cut out and the new one appended to each document. Encrypting and
//!   then decrypting an ordinary file therefore gives back the same bytes.
//! * `write`: otherwise (or for trees built elsewhere) fresh YAML in sops' own style.
//!
//! What a splice cannot give back as written, because the ciphertext keeps only the value:
//! non-canonical numbers and bools (`1.50`, `0x1F`, `0755`, `TRUE`), date-only timestamps
//! (back as `2024-01-01T00:00:00Z`), folded blocks of several lines (back as literal blocks),
//! single-quoted strings inside flow collections (back plain: a plain flow value is sealed in
//! single quotes), and inline comments inside lists once encrypted (back on their own line).
//! Collection aliases, a comment on a block scalar's header line next to a changed value, and
//! a flow top-level mapping that must take a `sops` block make the writer fall back to fresh
//! YAML.

pub(crate) mod fast;
pub(crate) mod read;
pub(crate) mod resolve;
pub(crate) mod splice;
pub(crate) mod write;

#[cfg(test)]
pub(crate) mod tests;

use std::ops::Range;
use std::sync::Arc;

use super::{Loaded, StoreError};
use crate::tree::{Map, Node, Tree, Value};

/// Reads a YAML stream: its documents and the first document's `sops` block.
pub fn load(input: &[u8]) -> Result<Loaded, StoreError> {
    let source = std::str::from_utf8(input).map_err(|e| not_utf8(input, e))?;
    load_source(source.to_owned())
}

/// [`load`] taking the input by value: the bytes become the layout's source text, uncopied.
pub fn load_owned(input: Vec<u8>) -> Result<Loaded, StoreError> {
    let source = String::from_utf8(input).map_err(|e| not_utf8(e.as_bytes(), e.utf8_error()))?;
    load_source(source)
}

fn not_utf8(input: &[u8], e: std::str::Utf8Error) -> StoreError {
    let valid = &input[..e.valid_up_to()];
    let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    StoreError::Syntax {
        line: valid.iter().filter(|b| **b == b'\n').count() + 1,
        column: String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1,
        message: "the file is not valid UTF-8".into(),
    }
}

fn load_source(source: String) -> Result<Loaded, StoreError> {
    let read = read::read(&source)?;
    let layout = Layout {
        source: Arc::new(source),
        documents: read.layouts,
        shape: read.shape,
    };
    Ok(Loaded {
        tree: Tree {
            documents: read.documents,
            layout: Some(super::Layout::Yaml(layout)),
        },
        metadata: read.metadata,
    })
}

/// Where each document, value, comment and `sops` block stood in the source, so that an
/// unchanged structure can be written back with the original layout.
#[derive(Clone, Default)]
pub struct Layout {
    /// The text as read (an `Arc<String>` rather than `Arc<str>` so that it is the input
    /// buffer itself, not a copy).
    source: Arc<String>,
    documents: Vec<DocumentLayout>,
    shape: Shape,
}

#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
struct DocumentLayout {
    /// Where a new `sops` block goes: after the document's last line.
    insert_at: usize,
    /// Column of the top-level keys.
    top_indent: usize,
    /// The top-level mapping is a block mapping (a flow one cannot take a `sops:` line).
    top_block: bool,
    /// The old `sops` entry, whole lines.
    sops: Option<Range<usize>>,
}

/// The tree as read, flattened in walk order, to recognise an unchanged structure.
///
/// Kept lean: keys live once in one string (`keys`), and a leaf whose original value can be
/// read again from the source text (the common case) stores no copy of it.
#[derive(Clone, Default)]
#[cfg_attr(test, derive(Debug))]
struct Shape(Arc<ShapeData>);

#[derive(Default)]
#[cfg_attr(test, derive(Debug))]
struct ShapeData {
    steps: Vec<Step>,
    /// The leaves, in order: each `Step::Leaf` is the next one.
    leaves: Vec<Leaf>,
    /// Every key of the tree, concatenated in order: each `Step::Key` ends the next one.
    keys: String,
}

#[cfg_attr(test, derive(Debug))]
enum Step {
    /// A mapping or list begins.
    Open,
    Close,
    /// A key: the text in `keys` from the previous key's end to this offset.
    Key(usize),
    /// The next of `leaves`.
    Leaf,
    /// A leaf without a source position (a copied alias target).
    Unplaced,
    EndDocument,
}

/// A scalar or comment as read.
#[cfg_attr(test, derive(Debug))]
struct Leaf {
    start: usize,
    original: Original,
    context: read::LeafContext,
}

/// What a leaf held when it was read.
#[cfg_attr(test, derive(Debug))]
enum Original {
    /// A plain, untagged scalar whose source text is its text: the value is that text
    /// resolved again (`resolve_plain`).
    Plain,
    /// A quoted, untagged scalar on one line without escapes: the value is the string
    /// between the quotes.
    Quoted,
    /// A value that cannot be read back from the source text cheaply.
    Value(Box<Value>),
    /// A comment whose source is `#` and its text.
    SourceComment,
    Comment(Box<str>),
}

impl Original {
    fn is_comment(&self) -> bool {
        matches!(self, Original::SourceComment | Original::Comment(_))
    }
}

/// Writes the documents, each followed by `metadata` when given, keeping the source layout
/// when the tree still matches it.
pub fn emit(
    tree: &Tree,
    metadata: Option<&Map>,
    indent: super::Indent,
) -> Result<Vec<u8>, StoreError> {
    let step = indent_step(indent);
    if let Some(super::Layout::Yaml(layout)) = &tree.layout {
        if let Some(text) = splice::splice(&tree.documents, layout, metadata, step) {
            return Ok(text.into_bytes());
        }
    }
    Ok(write::stream(&tree.documents, metadata, step).into_bytes())
}

/// [`emit`] into `sink`; a large file that keeps its layout is written as it is spliced.
pub fn emit_to(
    tree: &Tree,
    metadata: Option<&Map>,
    indent: super::Indent,
    sink: &mut dyn std::io::Write,
) -> Result<(), super::EmitError> {
    let step = indent_step(indent);
    if let Some(super::Layout::Yaml(layout)) = &tree.layout {
        if let Some(written) = splice::splice_to(&tree.documents, layout, metadata, step, sink) {
            return written.map_err(super::EmitError::Write);
        }
    }
    let text = write::stream(&tree.documents, metadata, step);
    sink.write_all(text.as_bytes())
        .map_err(super::EmitError::Write)
}

/// Writes one node as a YAML document (`--extract` of a list or a non-string scalar).
pub fn emit_node(node: &Node, indent: super::Indent) -> Result<Vec<u8>, StoreError> {
    Ok(write::node_document(node, indent_step(indent)).into_bytes())
}

/// yaml.v3 accepts indents of 2 to 9 and uses 2 for anything else.
pub(crate) fn indent_step(indent: super::Indent) -> usize {
    if (2..=9).contains(&indent.yaml) {
        indent.yaml
    } else {
        2
    }
}
