//! Wrapping and unwrapping the data key: a [`Recipient`] wraps it into a metadata entry,
//! an [`Identity`] unwraps an entry it holds the key for. One module per key source.

pub mod age;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(test)]
pub(crate) mod fake;
#[cfg(feature = "gcp")]
pub mod gcp;
pub mod keyring;
pub mod net;
pub mod pgp;
pub mod pkcs11;
#[cfg(feature = "vault")]
pub mod vault;

use zeroize::Zeroizing;

/// What a master key wraps: the data key itself, or with several key groups one Shamir share
/// (one byte longer than the key). Zeroized on drop; no `Debug`.
pub struct KeyPart(pub Zeroizing<Vec<u8>>);

impl KeyPart {
    pub fn new(bytes: Vec<u8>) -> Self {
        KeyPart(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One wrapped copy of the data key (or share), as stored in the `sops` metadata.
/// Field names follow sops' metadata; timestamps stay the strings that were stored.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyEntry {
    Age {
        recipient: String,
        enc: String,
    },
    Pgp {
        fp: String,
        created_at: String,
        enc: String,
    },
    Kms {
        arn: String,
        role: String,
        context: Vec<(String, String)>,
        created_at: String,
        enc: String,
        aws_profile: String,
    },
    GcpKms {
        resource_id: String,
        created_at: String,
        enc: String,
    },
    AzureKv {
        vault_url: String,
        name: String,
        version: String,
        created_at: String,
        enc: String,
    },
    Vault {
        vault_address: String,
        engine_path: String,
        key_name: String,
        created_at: String,
        enc: String,
    },
    /// veil's own: a key in a PKCS#11 token, named by its RFC 7512 URI (never with a pin-value).
    Pkcs11 {
        uri: String,
        created_at: String,
        enc: String,
    },
}

impl KeyEntry {
    /// The metadata list this entry belongs in, which is also its `--decryption-order` name.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyEntry::Age { .. } => "age",
            KeyEntry::Pgp { .. } => "pgp",
            KeyEntry::Kms { .. } => "kms",
            KeyEntry::GcpKms { .. } => "gcp_kms",
            KeyEntry::AzureKv { .. } => "azure_kv",
            KeyEntry::Vault { .. } => "hc_vault",
            KeyEntry::Pkcs11 { .. } => "pkcs11",
        }
    }

    /// The key's public name, as users wrote it (recipient, fingerprint, ARN, …).
    pub fn name(&self) -> String {
        match self {
            KeyEntry::Age { recipient, .. } => recipient.clone(),
            KeyEntry::Pgp { fp, .. } => fp.clone(),
            KeyEntry::Kms { arn, role, .. } if !role.is_empty() => format!("{arn}+{role}"),
            KeyEntry::Kms { arn, .. } => arn.clone(),
            KeyEntry::GcpKms { resource_id, .. } => resource_id.clone(),
            KeyEntry::AzureKv {
                vault_url,
                name,
                version,
                ..
            } => format!("{vault_url}/keys/{name}/{version}"),
            KeyEntry::Vault {
                vault_address,
                engine_path,
                key_name,
                ..
            } => {
                format!("{vault_address}/v1/{engine_path}/keys/{key_name}")
            }
            KeyEntry::Pkcs11 { uri, .. } => uri.clone(),
        }
    }
}

/// Why a key could not wrap or unwrap. Names the key, never holds secret material.
#[derive(Debug, thiserror::Error)]
#[error("{kind} key {name}: {reason}")]
pub struct KeyError {
    pub kind: &'static str,
    pub name: String,
    pub reason: String,
}

/// The public side of a master key: wraps the data key (or a share) for one recipient.
pub trait Recipient {
    fn wrap(&self, part: &KeyPart) -> Result<KeyEntry, KeyError>;
    /// The recipient as the user named it, for messages.
    fn name(&self) -> String;
}

/// The private side: unwraps entries it holds the key for. Shared with the threads that try a
/// group's network keys at once (see `keyring`), hence `Send + Sync`.
pub trait Identity: Send + Sync {
    /// `None` when this entry is not for this identity (so the next one is tried).
    fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>>;
}

/// An error and its sources, `outer: inner: …`, each level once: cloud SDK errors hide the
/// useful part (unreachable, access denied) a few sources down.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        let part = next.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = next.source();
    }
    text
}
