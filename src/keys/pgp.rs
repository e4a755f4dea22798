//! PGP through the `gpg` binary, as sops does.
//!
//! Placeholder while the key source is written: every operation reports that PGP is unavailable.

use super::{Identity, KeyEntry, KeyError, KeyPart, Recipient};

pub struct PgpRecipient {
    fingerprint: String,
}

impl PgpRecipient {
    pub fn new(fingerprint: &str) -> PgpRecipient {
        PgpRecipient {
            fingerprint: fingerprint.replace(' ', ""),
        }
    }
}

impl Recipient for PgpRecipient {
    fn wrap(&self, _part: &KeyPart) -> Result<KeyEntry, KeyError> {
        Err(KeyError {
            kind: "pgp",
            name: self.fingerprint.clone(),
            reason: "PGP is not available in this build yet".into(),
        })
    }
    fn name(&self) -> String {
        self.fingerprint.clone()
    }
}

pub struct GpgIdentity;

impl GpgIdentity {
    pub fn from_process_env() -> GpgIdentity {
        GpgIdentity
    }
}

impl Identity for GpgIdentity {
    fn unwrap(&self, _entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        None
    }
}
