//! The binary store (spec §3.4, §6.5): any file as one opaque value.
//!
//! A plain file is its whole byte string under the single key `data`. Encrypted, it becomes a
//! JSON envelope `{"data": "ENC[…]", "sops": {…}}` written by the JSON store; decrypted, it is
//! the `data` bytes again, byte for byte, with nothing added.

use super::{json, Loaded, StoreError};
use crate::tree::{Map, Node, Scalar, Tree, Value};

const FORMAT: &str = "binary";

/// The only key of a binary file's tree.
const DATA_KEY: &str = "data";

/// Reads a binary file: an encrypted envelope when the input is a JSON object with both a
/// `sops` and a `data` member, otherwise the raw bytes as a plain file.
pub fn load(input: &[u8]) -> Result<Loaded, StoreError> {
    // Only something that starts like a JSON object is worth parsing; arbitrary binaries
    // (images, archives) go straight to the plain path.
    let starts_like_object = input
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{');
    if starts_like_object {
        if let Ok(loaded) = json::load(input) {
            let has_data = loaded
                .tree
                .documents
                .first()
                .is_some_and(|doc| doc.get(DATA_KEY).is_some());
            if loaded.metadata.is_some() && has_data {
                return Ok(loaded);
            }
        }
    }
    Ok(load_plain(input))
}

/// Takes the bytes as a plain file, whatever they contain. Encryption uses this: sops encrypts
/// a file's raw bytes in binary mode, even when they happen to be a JSON envelope.
pub fn load_plain(input: &[u8]) -> Loaded {
    load_plain_owned(input.to_vec())
}

/// [`load_plain`] taking the bytes by value: they become the value without a copy.
pub fn load_plain_owned(input: Vec<u8>) -> Loaded {
    let value = match String::from_utf8(input) {
        Ok(text) => Value::Str(text),
        Err(e) => Value::Bytes(e.into_bytes()),
    };
    let mut document = Map::new();
    document.insert(DATA_KEY, Node::scalar(value));
    Loaded {
        tree: Tree {
            documents: vec![document],
            layout: None,
        },
        metadata: None,
    }
}

/// With metadata: the JSON envelope, as sops writes it. Without (decryption): the raw bytes of
/// the `data` value, nothing added.
pub fn emit(
    tree: &Tree,
    metadata: Option<&Map>,
    indent: Option<usize>,
) -> Result<Vec<u8>, StoreError> {
    if metadata.is_some() {
        return json::emit(tree, metadata, indent);
    }
    let fail = |message: &str| StoreError::Emit {
        format: FORMAT,
        message: message.to_string(),
    };
    let [document] = tree.documents.as_slice() else {
        return Err(fail("a binary file holds exactly one document"));
    };
    match document.get(DATA_KEY) {
        Some(Node::Scalar(Scalar {
            value: Value::Str(text),
            ..
        })) => Ok(text.as_bytes().to_vec()),
        Some(Node::Scalar(Scalar {
            value: Value::Bytes(bytes),
            ..
        })) => Ok(bytes.clone()),
        Some(_) => Err(fail("the tree's `data` key does not hold a string")),
        None => Err(fail(
            "the tree has no `data` key: this is likely not an encrypted binary file",
        )),
    }
}

#[cfg(test)]
mod tests;
