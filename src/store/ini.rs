//! ini store (being written).

use super::{Loaded, StoreError};
use crate::tree::{Map, Tree};

const FORMAT: &str = "ini";

pub fn load(_input: &[u8]) -> Result<Loaded, StoreError> {
    Err(StoreError::Emit {
        format: FORMAT,
        message: "not implemented yet".into(),
    })
}

pub fn emit(_tree: &Tree, _metadata: Option<&Map>) -> Result<Vec<u8>, StoreError> {
    Err(StoreError::Emit {
        format: FORMAT,
        message: "not implemented yet".into(),
    })
}
