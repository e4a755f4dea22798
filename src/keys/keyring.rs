//! Recovering a file's data key from its key groups with the identities at hand.

use std::fmt;

use super::{Identity, KeyEntry, KeyPart};
use crate::crypt::DataKey;
use crate::metadata::Metadata;

/// The key types sops knows, which `--decryption-order` may name.
const KNOWN_TYPES: [&str; 7] = [
    "age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms",
];

/// In which order the keys of a group are tried: offline keys first by default (age, pgp), then
/// the others in the order they are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptionOrder(Vec<String>);

impl Default for DecryptionOrder {
    fn default() -> Self {
        DecryptionOrder(vec!["age".into(), "pgp".into()])
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--decryption-order names {0:?} twice")]
pub struct DuplicateKeyType(pub String);

impl DecryptionOrder {
    /// Parses `age,pgp,kms`; unknown names are allowed (and never match), duplicates are not.
    pub fn parse(text: &str) -> Result<Self, DuplicateKeyType> {
        let mut order: Vec<String> = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if order.iter().any(|o| o == name) {
                return Err(DuplicateKeyType(name.to_string()));
            }
            order.push(name.to_string());
        }
        Ok(DecryptionOrder(order))
    }

    fn rank(&self, kind: &str) -> usize {
        self.0
            .iter()
            .position(|o| o == kind)
            .unwrap_or(self.0.len() + usize::from(!KNOWN_TYPES.contains(&kind)))
    }

    /// The group's keys in the order to try them (a stable sort keeps stored order within a type).
    fn sorted<'a>(&self, keys: &'a [KeyEntry]) -> Vec<&'a KeyEntry> {
        let mut sorted: Vec<&KeyEntry> = keys.iter().collect();
        sorted.sort_by_key(|k| self.rank(k.kind()));
        sorted
    }
}

/// Why one key of a group did not give up its part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFailure {
    pub kind: &'static str,
    pub name: String,
    pub reason: String,
}

/// The data key could not be recovered: every group and key that was tried, and why each failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryError {
    pub groups: Vec<Vec<KeyFailure>>,
    /// With several groups: how many parts were recovered and how many were needed.
    pub shares: Option<(usize, usize)>,
}

impl std::error::Error for RecoveryError {}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to get the data key required to decrypt the file")?;
        if let Some((found, needed)) = self.shares {
            write!(
                f,
                ": {found} of the {needed} key groups needed could be opened"
            )?;
        }
        for (index, failures) in self.groups.iter().enumerate() {
            if failures.is_empty() {
                continue;
            }
            if self.groups.len() > 1 {
                write!(f, "\n  group {}:", index + 1)?;
            }
            for failure in failures {
                let indent = if self.groups.len() > 1 { "    " } else { "  " };
                write!(
                    f,
                    "\n{indent}{} {}: {}",
                    failure.kind, failure.name, failure.reason
                )?;
            }
        }
        Ok(())
    }
}

/// The identities available to this process and the order to try keys in.
pub struct Keyring {
    identities: Vec<Box<dyn Identity>>,
    order: DecryptionOrder,
}

impl Keyring {
    pub fn new(identities: Vec<Box<dyn Identity>>, order: DecryptionOrder) -> Self {
        Keyring { identities, order }
    }

    /// Unwraps one group's part: the first key that opens wins.
    fn open_group(&self, keys: &[KeyEntry]) -> Result<KeyPart, Vec<KeyFailure>> {
        let mut failures = Vec::new();
        for entry in self.order.sorted(keys) {
            let mut claimed = false;
            for identity in &self.identities {
                match identity.unwrap(entry) {
                    None => continue,
                    Some(Ok(part)) => return Ok(part),
                    Some(Err(err)) => {
                        claimed = true;
                        failures.push(KeyFailure {
                            kind: entry.kind(),
                            name: entry.name(),
                            reason: err.reason,
                        });
                    }
                }
            }
            if !claimed {
                let reason = format!("veil cannot use {} keys in this build", entry.kind());
                failures.push(KeyFailure {
                    kind: entry.kind(),
                    name: entry.name(),
                    reason,
                });
            }
        }
        Err(failures)
    }

    /// Recovers the data key of a file.
    pub fn recover(&self, metadata: &Metadata) -> Result<DataKey, RecoveryError> {
        let groups = &metadata.key_groups;
        if groups.len() == 1 {
            let part = self
                .open_group(&groups[0].keys)
                .map_err(|f| RecoveryError {
                    groups: vec![f],
                    shares: None,
                })?;
            return DataKey::from_bytes(part.as_bytes()).ok_or_else(|| RecoveryError {
                groups: vec![vec![KeyFailure {
                    kind: "data key",
                    name: String::new(),
                    reason: format!("unwrapped to {} bytes, expected 32", part.as_bytes().len()),
                }]],
                shares: None,
            });
        }
        let needed = if metadata.shamir_threshold == 0 {
            groups.len()
        } else {
            metadata.shamir_threshold
        };
        let mut parts = Vec::new();
        let mut report = Vec::new();
        for group in groups {
            match self.open_group(&group.keys) {
                Ok(part) => {
                    parts.push(part);
                    report.push(Vec::new());
                }
                Err(failures) => report.push(failures),
            }
        }
        if parts.len() < needed {
            return Err(RecoveryError {
                groups: report,
                shares: Some((parts.len(), needed)),
            });
        }
        let shares: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        crate::crypt::shamir::combine(&shares)
            .and_then(|secret| DataKey::from_bytes(&secret))
            .ok_or(RecoveryError {
                groups: vec![vec![KeyFailure {
                    kind: "shamir",
                    name: String::new(),
                    reason: "the key group shares do not combine into a 32-byte data key".into(),
                }]],
                shares: Some((parts.len(), needed)),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyError, KeyPart};
    use crate::metadata::KeyGroup;

    /// Opens age entries whose `enc` is the hex of the part, fails pgp entries.
    struct Fake;

    impl Identity for Fake {
        fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
            match entry {
                KeyEntry::Age { enc, .. } if enc.starts_with("bad") => Some(Err(KeyError {
                    kind: "age",
                    name: entry.name(),
                    reason: "no identity matches".into(),
                })),
                KeyEntry::Age { enc, .. } => Some(Ok(KeyPart::new(hex(enc)))),
                KeyEntry::Pgp { .. } => Some(Err(KeyError {
                    kind: "pgp",
                    name: entry.name(),
                    reason: "no secret key".into(),
                })),
                _ => None,
            }
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn to_hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn metadata(groups: Vec<Vec<KeyEntry>>, threshold: usize) -> Metadata {
        Metadata {
            lastmodified: String::new(),
            mac: String::new(),
            version: String::new(),
            rules: Default::default(),
            shamir_threshold: threshold,
            key_groups: groups
                .into_iter()
                .map(|keys| KeyGroup {
                    keys,
                    foreign: vec![],
                })
                .collect(),
        }
    }

    fn age(enc: &str) -> KeyEntry {
        KeyEntry::Age {
            recipient: format!("age1{}", &enc[..4.min(enc.len())]),
            enc: enc.into(),
        }
    }

    fn pgp() -> KeyEntry {
        KeyEntry::Pgp {
            fp: "FP".into(),
            created_at: String::new(),
            enc: String::new(),
        }
    }

    #[test]
    fn tries_age_before_pgp_and_reports_every_failure() {
        let keyring = Keyring::new(vec![Box::new(Fake)], DecryptionOrder::default());
        let key = [7u8; 32];
        let meta = metadata(vec![vec![pgp(), age(&to_hex(&key))]], 0);
        assert_eq!(keyring.recover(&meta).ok().unwrap().as_bytes(), &key);

        let kms = KeyEntry::Kms {
            arn: "arn:aws:kms:x".into(),
            role: String::new(),
            context: vec![],
            created_at: String::new(),
            enc: String::new(),
            aws_profile: String::new(),
        };
        let err = keyring
            .recover(&metadata(vec![vec![kms, pgp(), age("bad")]], 0))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("age age1bad: no identity matches"), "{text}");
        assert!(text.contains("pgp FP: no secret key"), "{text}");
        assert!(
            text.contains("kms arn:aws:kms:x: veil cannot use kms keys"),
            "{text}"
        );
        assert!(
            text.find("age age1bad").unwrap() < text.find("pgp FP").unwrap(),
            "age is tried first"
        );
    }

    #[test]
    fn key_groups_combine_shamir_shares() {
        let secret = [0x42u8; 32];
        let shares = crate::crypt::shamir::split(&secret, 3, 2).unwrap();
        let groups = vec![
            vec![age(&to_hex(&shares[0]))],
            vec![age("bad")],
            vec![age(&to_hex(&shares[2]))],
        ];
        let keyring = Keyring::new(vec![Box::new(Fake)], DecryptionOrder::default());
        assert_eq!(
            keyring
                .recover(&metadata(groups, 2))
                .ok()
                .unwrap()
                .as_bytes(),
            &secret
        );

        let groups = vec![
            vec![age(&to_hex(&shares[0]))],
            vec![age("bad")],
            vec![age("bad2")],
        ];
        let err = keyring.recover(&metadata(groups, 2)).err().unwrap();
        assert_eq!(err.shares, Some((1, 2)));
        assert!(err.to_string().contains("group 2:"), "{err}");
    }

    #[test]
    fn decryption_order_rejects_duplicates() {
        assert_eq!(
            DecryptionOrder::parse("age,pgp,age"),
            Err(DuplicateKeyType("age".into()))
        );
        let order = DecryptionOrder::parse("pgp, age").unwrap();
        assert!(order.rank("pgp") < order.rank("age"));
        assert!(order.rank("kms") < order.rank("unknown"));
    }
}
