//! age recipients and identities (X25519, SSH, plugins), stored as armored age files.
//!
//! Placeholder while the key source is written: every operation reports that age is unavailable.

use super::{Identity, KeyEntry, KeyError, KeyPart, Recipient};

pub struct AgeRecipient {
    text: String,
}

impl AgeRecipient {
    pub fn parse(text: &str) -> Result<AgeRecipient, KeyError> {
        Ok(AgeRecipient {
            text: text.trim().to_string(),
        })
    }
}

impl Recipient for AgeRecipient {
    fn wrap(&self, _part: &KeyPart) -> Result<KeyEntry, KeyError> {
        Err(KeyError {
            kind: "age",
            name: self.text.clone(),
            reason: "age is not available in this build yet".into(),
        })
    }
    fn name(&self) -> String {
        self.text.clone()
    }
}

pub struct AgeIdentities;

impl AgeIdentities {
    pub fn from_process_env() -> AgeIdentities {
        AgeIdentities
    }
}

impl Identity for AgeIdentities {
    fn unwrap(&self, _entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        None
    }
}
