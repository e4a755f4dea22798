//! dotenv store (being written).

use super::{Loaded, StoreError};
use crate::tree::{Map, Tree};

/// Where blank lines stood in the source, so decrypting gives the file back byte for byte.
#[derive(Clone, Default)]
pub struct Layout {}

const FORMAT: &str = "dotenv";

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
