//! json store (being written).

use super::{Loaded, StoreError};
use crate::tree::{Map, Tree};

const FORMAT: &str = "json";

pub fn load(_input: &[u8]) -> Result<Loaded, StoreError> {
    Err(StoreError::Emit {
        format: FORMAT,
        message: "not implemented yet".into(),
    })
}

pub fn emit(
    _tree: &Tree,
    _metadata: Option<&Map>,
    _indent: Option<usize>,
) -> Result<Vec<u8>, StoreError> {
    Err(StoreError::Emit {
        format: FORMAT,
        message: "not implemented yet".into(),
    })
}

pub fn emit_node(_node: &crate::tree::Node, _indent: Option<usize>) -> Result<Vec<u8>, StoreError> {
    Err(StoreError::Emit {
        format: FORMAT,
        message: "not implemented yet".into(),
    })
}
