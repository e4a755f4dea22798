//! The JSON store (spec §6.2): a top-level object, read with member order and duplicate names
//! kept, written exactly as sops writes it.
//!
//! Reading ([`read`]) is a purpose-built parser rather than serde_json, because sops keeps
//! duplicate members and veil's errors must name a line and column without quoting values.
//! Writing ([`write`]) reproduces Go's `encoding/json` escaping and float text and `json.Indent`
//! layout, so a file veil writes diffs cleanly against one sops wrote.
//!
//! The `sops` metadata block is the top-level member `sops` (spec §5.5): [`load`] takes it out
//! of the tree, [`emit`] appends it as the last member.

pub(crate) mod read;
pub(crate) mod write;

#[cfg(test)]
pub(super) mod tests;

use super::{Loaded, StoreError};
use crate::tree::{Map, Node, Tree, Value};
// The tests build trees by hand through `super::*`.
#[cfg(test)]
use crate::tree::MapItem;
use write::Writer;

pub(crate) const FORMAT: &str = "json";

/// The top-level member that holds the metadata.
pub(crate) const METADATA_KEY: &str = "sops";

/// Reads a JSON file, plain or encrypted, splitting off its `sops` member as the metadata.
pub fn load(input: &[u8]) -> Result<Loaded, StoreError> {
    let mut document = read::parse_document(input)?;
    let metadata = take_metadata(&mut document)?;
    Ok(Loaded {
        tree: Tree {
            documents: vec![document],
            layout: None,
        },
        metadata,
    })
}

/// Removes the top-level `sops` member. Its value is handed over whatever its type, so that
/// the metadata reader reports a malformed block and encryption still sees the file as
/// encrypted; a second `sops` member is ambiguous and refused, as sops does.
fn take_metadata(document: &mut Map) -> Result<Option<Node>, StoreError> {
    let count = document.pairs().filter(|p| p.key == METADATA_KEY).count();
    if count > 1 {
        return Err(StoreError::Structure {
            path: METADATA_KEY.into(),
            message: "the top-level sops metadata entry appears more than once".into(),
        });
    }
    Ok(document.remove(METADATA_KEY))
}

/// Writes the first document as sops does, with the metadata block as its last member when
/// given. `indent`: `None` is a tab (sops' default), `Some(n)` n spaces. Ends with a newline.
pub fn emit(
    tree: &Tree,
    metadata: Option<&Map>,
    indent: Option<usize>,
) -> Result<Vec<u8>, StoreError> {
    // JSON holds one document: sops writes only the first branch of a multi-document tree.
    let empty = Map::new();
    let document = tree.documents.first().unwrap_or(&empty);
    let mut writer = Writer::new(indent, estimated_size(document));
    writer
        .object(document, metadata.map(|m| (METADATA_KEY, m)), 0)
        .map_err(|e| emit_error(e.describe()))?;
    writer.out.push(b'\n');
    Ok(writer.out)
}

/// [`emit`] straight into `sink`, a buffer at a time.
pub fn emit_to(
    tree: &Tree,
    metadata: Option<&Map>,
    indent: Option<usize>,
    sink: &mut dyn std::io::Write,
) -> Result<(), super::EmitError> {
    let empty = Map::new();
    let document = tree.documents.first().unwrap_or(&empty);
    let mut writer = Writer::streaming(indent, sink);
    let written = writer.object(document, metadata.map(|m| (METADATA_KEY, m)), 0);
    // A failed write stops the streaming early; that error is the one to report.
    if let Some(err) = writer.spill_error.take() {
        return Err(super::EmitError::Write(err));
    }
    written.map_err(|e| emit_error(e.describe()))?;
    writer.out.push(b'\n');
    writer.finish().map_err(super::EmitError::Write)
}

/// Writes one value on its own (`--extract` of a list or scalar), as sops' `EmitValue`: the
/// same layout as in a document, without a trailing newline.
pub fn emit_node(node: &Node, indent: Option<usize>) -> Result<Vec<u8>, StoreError> {
    let mut writer = Writer::new(indent, 256);
    writer.node(node, 0).map_err(|e| emit_error(e.describe()))?;
    Ok(writer.out)
}

fn emit_error(message: String) -> StoreError {
    StoreError::Emit {
        format: FORMAT,
        message,
    }
}

/// A starting buffer size: the text of every key and string plus a little for each value and
/// its indentation, so the output is written into one allocation (escapes or deep nesting may
/// still grow it). Reserved pages that are never written cost no memory.
fn estimated_size(document: &Map) -> usize {
    fn size(node: &Node, depth: usize) -> usize {
        match node {
            Node::Map(map) => map
                .pairs()
                .map(|p| p.key.len() + 8 + depth * 2 + size(&p.value, depth + 1))
                .sum::<usize>()
                .saturating_add(4 + depth * 2),
            Node::List(list) => list
                .nodes()
                .map(|n| 4 + depth * 2 + size(n, depth + 1))
                .sum::<usize>()
                .saturating_add(4 + depth * 2),
            Node::Scalar(scalar) => match &scalar.value {
                Value::Str(s) => s.len() + s.len() / 16 + 2,
                Value::Bytes(b) => b.len() * 2 + 2,
                _ => 40,
            },
        }
    }
    let body: usize = document
        .pairs()
        .map(|p| p.key.len() + 8 + size(&p.value, 1))
        .sum();
    body.saturating_add(body / 8).saturating_add(16384)
}
