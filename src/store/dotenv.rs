//! The dotenv store: `KEY=VALUE` lines, as sops reads and writes them (spec §6.3).
//!
//! sops treats dotenv byte-literally: the key is everything before the first `=` (spaces
//! included), the value everything after it, with no quote or `export` handling; the only
//! escape is the two characters `\n`, read as a newline and written back for one. A line whose
//! first byte is `#` is a comment. Every value is a string. Metadata lives in `sops_`-prefixed
//! lines after the data, flattened (see [`super::flatten`]).
//!
//! Beyond sops, blank lines and a missing final newline survive: [`Layout`] records them, so
//! `decrypt(encrypt(file))` gives the file back byte for byte.

use super::flatten::{flatten, scalar_text, unflatten};
use super::{Loaded, StoreError};
use crate::crypt::display_path;
use crate::tree::{Comment, Map, MapItem, Node, PathStep, Tree, Value};

/// Where blank lines stood in the source, so decrypting gives the file back byte for byte.
#[derive(Clone, Default)]
pub struct Layout {
    /// How many data items (pairs and comments, not metadata lines) the source had; a tree with
    /// another count was restructured, and is written without this layout.
    items: usize,
    /// For every blank line, in order, how many data items stood before it.
    blank_lines: Vec<usize>,
    /// The source's last line had no newline.
    no_final_newline: bool,
}

const FORMAT: &str = "dotenv";
const METADATA_PREFIX: &str = "sops_";

/// Reads a dotenv file, plain or encrypted. `sops_` lines anywhere in the file are metadata.
pub fn load(input: &[u8]) -> Result<Loaded, StoreError> {
    let (body, no_final_newline) = match input.strip_suffix(b"\n") {
        Some(body) => (body, false),
        None => (input, !input.is_empty()),
    };
    let mut data = Map::new();
    let mut metadata = Vec::new();
    let mut blank_lines = Vec::new();
    let lines = if input.is_empty() {
        Vec::new()
    } else {
        body.split(|b| *b == b'\n').collect()
    };
    for (index, raw) in lines.into_iter().enumerate() {
        let line_number = index + 1;
        if raw.is_empty() {
            blank_lines.push(data.0.len());
            continue;
        }
        let line = std::str::from_utf8(raw).map_err(|err| StoreError::Syntax {
            line: line_number,
            column: err.valid_up_to() + 1,
            message: "the line is not valid UTF-8".into(),
        })?;
        if let Some(text) = line.strip_prefix('#') {
            data.0.push(MapItem::Comment(Comment::new(text)));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            let message = if line == "\r" {
                // sops splits on \n only, so a CRLF blank line is a line holding "\r".
                "a blank line ending in a carriage return: sops cannot read it either; \
                 convert the file to LF line endings"
            } else {
                "expected KEY=VALUE, but the line has no '='"
            };
            return Err(StoreError::Syntax {
                line: line_number,
                column: 1,
                message: message.into(),
            });
        };
        let value = value.replace("\\n", "\n");
        match key.strip_prefix(METADATA_PREFIX) {
            Some(field) => metadata.push((field.to_string(), value)),
            None => data.insert(key, Node::scalar(Value::Str(value))),
        }
    }
    let metadata = if metadata.is_empty() {
        None
    } else {
        Some(unflatten(metadata).map_err(|err| match err {
            StoreError::Structure { path, message } => StoreError::Structure {
                path: format!("{METADATA_PREFIX}{path}"),
                message,
            },
            other => other,
        })?)
    };
    let layout = Layout {
        items: data.0.len(),
        blank_lines,
        no_final_newline,
    };
    Ok(Loaded {
        tree: Tree {
            documents: vec![data],
            layout: Some(super::Layout::Dotenv(layout)),
        },
        metadata,
    })
}

/// Writes the first document as dotenv lines, then the flattened metadata when given.
pub fn emit(tree: &Tree, metadata: Option<&Map>) -> Result<Vec<u8>, StoreError> {
    let items: &[MapItem] = tree.documents.first().map_or(&[], |doc| &doc.0);
    let layout = match &tree.layout {
        Some(super::Layout::Dotenv(layout)) if layout.items == items.len() => Some(layout),
        _ => None,
    };
    let blank_lines: &[usize] = layout.map_or(&[], |l| &l.blank_lines);
    let mut blanks = blank_lines.iter().peekable();
    let mut out = String::new();
    for (position, item) in items.iter().enumerate() {
        while blanks.next_if(|before| **before == position).is_some() {
            out.push('\n');
        }
        match item {
            MapItem::Comment(comment) => {
                // A comment from another format may span lines; each needs its own '#'.
                for line in comment.text.split('\n') {
                    out.push('#');
                    out.push_str(line);
                    out.push('\n');
                }
            }
            MapItem::Pair(pair) => {
                check_key(&pair.key)?;
                if metadata.is_some() && pair.key.starts_with(METADATA_PREFIX) {
                    return Err(StoreError::AlreadyEncrypted(pair.key.clone()));
                }
                let value = value_text(&pair.key, &pair.value)?;
                push_line(&mut out, &pair.key, &value);
            }
        }
    }
    // Blank lines after the last item go before the metadata, where they read back from.
    for _ in blanks {
        out.push('\n');
    }
    if let Some(metadata) = metadata {
        for (field, value) in flatten(metadata)? {
            let key = format!("{METADATA_PREFIX}{field}");
            check_key(&key)?;
            push_line(&mut out, &key, &value);
        }
    }
    if layout.is_some_and(|l| l.no_final_newline) && out.ends_with('\n') {
        out.pop();
    }
    Ok(out.into_bytes())
}

fn push_line(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push('=');
    out.push_str(&value.replace('\n', "\\n"));
    out.push('\n');
}

/// A key that would read back as something else (another key, a comment, two lines) is refused.
fn check_key(key: &str) -> Result<(), StoreError> {
    let problem = if key.contains('=') {
        "a dotenv key cannot contain '='"
    } else if key.contains('\n') {
        "a dotenv key cannot contain a newline"
    } else if key.starts_with('#') {
        "a dotenv key cannot start with '#', it would read back as a comment"
    } else {
        return Ok(());
    };
    Err(StoreError::Emit {
        format: FORMAT,
        message: format!("{problem}: {}", display_path(&[PathStep::Key(key.into())])),
    })
}

fn value_text(key: &str, node: &Node) -> Result<String, StoreError> {
    let path = || display_path(&[PathStep::Key(key.into())]);
    match node {
        Node::Scalar(scalar) => scalar_text(&scalar.value).ok_or_else(|| StoreError::Emit {
            format: FORMAT,
            message: format!("dotenv cannot hold raw bytes at {}", path()),
        }),
        Node::Map(_) | Node::List(_) => Err(StoreError::Emit {
            format: FORMAT,
            message: format!("dotenv cannot hold nested values at {}", path()),
        }),
    }
}

#[cfg(test)]
mod tests;
