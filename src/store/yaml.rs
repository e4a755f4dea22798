//! yaml store (being written).

use super::{Loaded, StoreError};
use crate::tree::{Map, Tree};

const FORMAT: &str = "yaml";

pub fn load(_input: &[u8]) -> Result<Loaded, StoreError> {
    Err(StoreError::Emit {
        format: FORMAT,
        message: "not implemented yet".into(),
    })
}

/// Where each document and the metadata block stood in the source.
#[derive(Clone, Default)]
pub struct Layout {}

pub fn emit(
    _tree: &Tree,
    _metadata: Option<&Map>,
    _indent: super::Indent,
) -> Result<Vec<u8>, StoreError> {
    Err(StoreError::Emit {
        format: FORMAT,
        message: "not implemented yet".into(),
    })
}

pub fn emit_node(_node: &crate::tree::Node, _indent: super::Indent) -> Result<Vec<u8>, StoreError> {
    Err(StoreError::Emit {
        format: FORMAT,
        message: "not implemented yet".into(),
    })
}
