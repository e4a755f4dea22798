//! The pipeline: encrypt a plain tree for a set of recipients, open an encrypted one with the
//! identities at hand.
//!
//! Errors here carry no file name: the caller knows the file and adds it.

use chrono::Utc;

use crate::crypt::{self, Cipher, CommentWarning, CryptError, DataKey, OpenError, Rules};
use crate::keys::keyring::{Keyring, RecoveryError};
use crate::keys::{KeyError, KeyPart, Recipient};
use crate::metadata::{KeyGroup, Metadata, MetadataError, FORMAT_VERSION};
use zeroize::Zeroizing;

use crate::store::{EmitError, Format, Indent, Loaded};
use crate::stream;
use crate::tree::{Node, Tree};

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("sops metadata not found: the file is not encrypted")]
    NotEncrypted,
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("the file's version {0:?} is not a valid semantic version")]
    Version(String),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error("cannot decrypt {0}")]
    Decrypt(CryptError),
    #[error("cannot encrypt {0}")]
    Encrypt(CryptError),
    #[error("cannot decrypt the MAC: {0}")]
    MacUnreadable(OpenError),
    #[error("MAC mismatch: the file has {stored}, the values give {computed}; the file was changed without its key")]
    MacMismatch { stored: String, computed: String },
    #[error("no recipients: give --age or --pgp, set SOPS_AGE_RECIPIENTS, or add a creation rule to .sops.yaml")]
    NoRecipients,
    #[error("could not generate data key: {}", join(.0))]
    Wrap(Vec<KeyError>),
    #[error("a Shamir threshold of {threshold} needs between 2 and {groups} key groups")]
    Threshold { threshold: usize, groups: usize },
}

fn join(errors: &[KeyError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Who a new file is encrypted for, and how.
pub struct EncryptPlan {
    /// One entry per key group; each recipient of a group wraps that group's part.
    pub groups: Vec<Vec<Box<dyn Recipient>>>,
    pub shamir_threshold: usize,
    pub rules: Rules,
}

/// The current time as sops writes `lastmodified`: UTC, whole seconds.
pub fn now() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Wraps the data key for every group: the key itself for one group, a Shamir share each for
/// several. Every recipient is tried and all failures are reported together.
pub fn wrap_data_key(
    key: &DataKey,
    groups: &[Vec<Box<dyn Recipient>>],
    threshold: usize,
) -> Result<(Vec<KeyGroup>, usize), DocumentError> {
    if groups.is_empty() || groups.iter().all(|g| g.is_empty()) {
        return Err(DocumentError::NoRecipients);
    }
    let (parts, threshold) = if groups.len() == 1 {
        (vec![KeyPart::new(key.as_bytes().to_vec())], threshold)
    } else {
        let threshold = if threshold == 0 {
            groups.len()
        } else {
            threshold
        };
        let shares = crypt::shamir::split(key.as_bytes(), groups.len(), threshold).ok_or(
            DocumentError::Threshold {
                threshold,
                groups: groups.len(),
            },
        )?;
        (
            shares
                .into_iter()
                .map(|s| KeyPart::new(s.to_vec()))
                .collect(),
            threshold,
        )
    };
    let mut wrapped = Vec::with_capacity(groups.len());
    let mut failures = Vec::new();
    for (recipients, part) in groups.iter().zip(&parts) {
        let mut group = KeyGroup::default();
        for recipient in recipients {
            match recipient.wrap(part) {
                Ok(entry) => group.keys.push(entry),
                Err(err) => failures.push(err),
            }
        }
        wrapped.push(group);
    }
    if !failures.is_empty() {
        return Err(DocumentError::Wrap(failures));
    }
    Ok((wrapped, threshold))
}

/// A fresh data key, wrapped for a plan's recipients: where encrypting a file starts. Its
/// values are then sealed either in a tree ([`Sealer::seal_tree`]) or straight from the text
/// ([`Sealer::seal_stream`]); the key is wrapped once, whichever path is taken.
pub struct Sealer<'p> {
    cipher: Cipher,
    key_groups: Vec<KeyGroup>,
    shamir_threshold: usize,
    rules: &'p Rules,
}

impl<'p> Sealer<'p> {
    /// A new data key, wrapped for every group of the plan.
    pub fn new(plan: &'p EncryptPlan) -> Result<Self, DocumentError> {
        Self::with_cipher(plan, Cipher::new(DataKey::generate()))
    }

    /// [`Sealer::new`] with a given cipher (tests use fixed IVs).
    pub fn with_cipher(plan: &'p EncryptPlan, cipher: Cipher) -> Result<Self, DocumentError> {
        let (key_groups, shamir_threshold) =
            wrap_data_key(cipher.key(), &plan.groups, plan.shamir_threshold)?;
        Ok(Sealer {
            cipher,
            key_groups,
            shamir_threshold,
            rules: &plan.rules,
        })
    }

    /// Encrypts a plain tree in place and returns its metadata.
    pub fn seal_tree(mut self, tree: &mut Tree) -> Result<Metadata, DocumentError> {
        let mac = crypt::encrypt_tree(tree, &mut self.cipher, self.rules)
            .map_err(DocumentError::Encrypt)?;
        Ok(metadata_for(
            &mut self.cipher,
            &mac,
            self.rules,
            self.key_groups,
            self.shamir_threshold,
        ))
    }

    /// Encrypts a plain file that [`stream::check`] accepted into `sink`, metadata included.
    pub fn seal_stream(
        mut self,
        checked: stream::Checked,
        indent: Indent,
        release: &dyn Fn(usize),
        sink: &mut dyn std::io::Write,
    ) -> Result<(), EmitError> {
        let (rules, threshold) = (self.rules, self.shamir_threshold);
        let mut groups = Some(self.key_groups);
        let mut metadata = |cipher: &mut Cipher, mac: String| {
            metadata_for(
                cipher,
                &mac,
                rules,
                groups.take().unwrap_or_default(),
                threshold,
            )
            .to_map()
        };
        checked.encrypt(
            stream::Sealing {
                cipher: &mut self.cipher,
                rules,
                indent,
                metadata: &mut metadata,
                release,
            },
            sink,
        )
    }
}

/// The metadata of a file just encrypted: its MAC sealed under a fresh `lastmodified`.
fn metadata_for(
    cipher: &mut Cipher,
    mac: &str,
    rules: &Rules,
    key_groups: Vec<KeyGroup>,
    shamir_threshold: usize,
) -> Metadata {
    let lastmodified = now();
    let mac = crypt::seal_mac(cipher, mac, &lastmodified);
    Metadata {
        lastmodified,
        mac,
        version: FORMAT_VERSION.to_string(),
        rules: rules.clone(),
        shamir_threshold: if key_groups.len() > 1 {
            shamir_threshold
        } else {
            0
        },
        key_groups,
    }
}

/// Encrypts a plain tree in place under a fresh data key and returns its metadata.
pub fn encrypt(tree: &mut Tree, plan: &EncryptPlan) -> Result<Metadata, DocumentError> {
    Sealer::new(plan)?.seal_tree(tree)
}

/// [`encrypt`] with a given cipher (tests use fixed IVs).
pub fn encrypt_with(
    tree: &mut Tree,
    plan: &EncryptPlan,
    cipher: Cipher,
) -> Result<Metadata, DocumentError> {
    Sealer::with_cipher(plan, cipher)?.seal_tree(tree)
}

/// An encrypted file, opened: its plaintext tree, metadata, and the cipher holding its data key.
pub struct Opened {
    pub tree: Tree,
    pub metadata: Metadata,
    pub cipher: Cipher,
    /// Comments left as they were (never encrypted, or not openable), as sops does.
    pub kept_comments: Vec<CommentWarning>,
}

/// Reads and validates the metadata of a loaded file.
pub fn metadata_of(loaded: &Loaded) -> Result<Metadata, DocumentError> {
    let node = loaded
        .metadata
        .as_ref()
        .ok_or(DocumentError::NotEncrypted)?;
    metadata_from(node)
}

/// Reads and validates a file's `sops` map.
pub fn metadata_from(node: &Node) -> Result<Metadata, DocumentError> {
    let metadata = Metadata::from_node(node)?;
    check_version(&metadata.version)?;
    Ok(metadata)
}

/// sops refuses files whose `version` is not semver (legacy `1.x` files excepted).
fn check_version(version: &str) -> Result<(), DocumentError> {
    if version.starts_with("1.") {
        return Ok(());
    }
    let stripped = version.strip_prefix('v').unwrap_or(version);
    semver::Version::parse(stripped)
        .map(|_| ())
        .map_err(|_| DocumentError::Version(version.to_string()))
}

/// Options for opening a file.
#[derive(Clone, Copy, Default)]
pub struct OpenOptions {
    pub ignore_mac: bool,
    /// Remember IVs so re-sealing unchanged values gives identical ciphertexts (edit, set).
    pub remember_ivs: bool,
}

/// Recovers the data key, decrypts every value and checks the MAC.
pub fn open(
    loaded: Loaded,
    keyring: &Keyring,
    options: OpenOptions,
) -> Result<Opened, DocumentError> {
    open_recovered(loaded, keyring, options, None)
}

/// [`open`], when the data key was already sought for the metadata a streaming pass found
/// (`earlier`: that metadata and what recovering its key gave). Whatever that gave is used
/// when the file's metadata is the same, so no key service is asked twice, and a key that
/// could not be recovered is reported only once the file has loaded (as [`open`] orders its
/// errors).
pub fn open_recovered(
    loaded: Loaded,
    keyring: &Keyring,
    options: OpenOptions,
    earlier: Option<(Metadata, Result<DataKey, RecoveryError>)>,
) -> Result<Opened, DocumentError> {
    let metadata = metadata_of(&loaded)?;
    let key = match earlier {
        Some((seen, recovered)) if seen == metadata => recovered?,
        _ => keyring.recover(&metadata)?,
    };
    open_with_key(loaded.tree, metadata, key, options)
}

/// [`open`] once the data key is known.
pub fn open_with_key(
    mut tree: Tree,
    metadata: Metadata,
    key: DataKey,
    options: OpenOptions,
) -> Result<Opened, DocumentError> {
    let mut cipher = Cipher::new(key);
    if options.remember_ivs {
        cipher.remember_ivs();
    }
    let decrypted = crypt::decrypt_tree(&mut tree, &mut cipher, &metadata.rules)
        .map_err(DocumentError::Decrypt)?;
    if !options.ignore_mac {
        let stored = crypt::open_mac(&mut cipher, &metadata.mac, &metadata.lastmodified)
            .map_err(DocumentError::MacUnreadable)?;
        if stored != decrypted.mac {
            let stored = if stored.is_empty() {
                "no MAC".to_string()
            } else {
                stored
            };
            return Err(DocumentError::MacMismatch {
                stored,
                computed: decrypted.mac,
            });
        }
    }
    Ok(Opened {
        tree,
        metadata,
        cipher,
        kept_comments: decrypted.kept_comments,
    })
}

/// Decrypts a whole file straight from its text into the plaintext file the tree path would
/// write (see [`stream`]), once its data key is known. `None` when the pass declines or anything
/// fails, the MAC included: the caller then opens the tree with the same key, which reports the
/// error precisely.
pub fn open_stream(
    format: Format,
    input: &[u8],
    metadata: &Metadata,
    key: &DataKey,
    options: OpenOptions,
    indent: Indent,
    release: &dyn Fn(usize),
) -> Option<Zeroizing<Vec<u8>>> {
    if options.remember_ivs {
        return None;
    }
    let mut cipher = Cipher::new(key.clone());
    let plain = stream::decrypt(
        format,
        input,
        stream::Opening {
            cipher: &cipher,
            rules: &metadata.rules,
            indent,
            release,
        },
    )?;
    if !options.ignore_mac {
        let stored = crypt::open_mac(&mut cipher, &metadata.mac, &metadata.lastmodified).ok()?;
        if stored != plain.mac {
            return None;
        }
    }
    Some(plain.text)
}

/// Encrypts an opened tree again under its own data key (edit, set, unset). Opened with
/// `remember_ivs`, every unchanged value gets back its exact ciphertext, so the file's diff shows
/// only what changed plus `lastmodified` and `mac`. An older version is raised to veil's, as sops
/// does; a newer one is kept.
pub fn seal(mut opened: Opened) -> Result<(Tree, Metadata), DocumentError> {
    let mac = crypt::encrypt_tree(&mut opened.tree, &mut opened.cipher, &opened.metadata.rules)
        .map_err(DocumentError::Encrypt)?;
    let lastmodified = now();
    opened.metadata.mac = crypt::seal_mac(&mut opened.cipher, &mac, &lastmodified);
    opened.metadata.lastmodified = lastmodified;
    if is_older(&opened.metadata.version, FORMAT_VERSION) {
        opened.metadata.version = FORMAT_VERSION.to_string();
    }
    Ok((opened.tree, opened.metadata))
}

/// Whether `version` is older than `than`; sops raises a file's version, never lowers it.
fn is_older(version: &str, than: &str) -> bool {
    let parse = |v: &str| semver::Version::parse(v.strip_prefix('v').unwrap_or(v)).ok();
    match (parse(version), parse(than)) {
        (Some(v), Some(t)) => v < t,
        // Legacy `1.x` and other non-semver versions are older than any release veil follows.
        _ => true,
    }
}

/// Whether a loaded file counts as encrypted for `filestatus`: sops requires both a version and
/// a MAC in its metadata.
pub fn is_encrypted(loaded: &Loaded) -> bool {
    loaded
        .metadata
        .as_ref()
        .and_then(|node| Metadata::from_node(node).ok())
        .is_some_and(|m| !m.version.is_empty() && !m.mac.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::fake::Plain;
    use crate::keys::keyring::DecryptionOrder;
    use crate::tree::{Map, Node, Value};

    fn tree() -> Tree {
        let mut map = Map::new();
        map.insert("password", Node::scalar(Value::Str("hunter2".into())));
        map.insert("port", Node::scalar(Value::Int(5432)));
        Tree {
            documents: vec![map],
            layout: None,
        }
    }

    fn plan(groups: usize) -> EncryptPlan {
        EncryptPlan {
            groups: (0..groups)
                .map(|_| vec![Box::new(Plain) as Box<dyn Recipient>])
                .collect(),
            shamir_threshold: 0,
            rules: Rules::default(),
        }
    }

    fn reload(tree: Tree, metadata: &Metadata) -> Loaded {
        Loaded {
            tree,
            metadata: Some(Node::Map(metadata.to_map())),
        }
    }

    #[test]
    fn encrypt_then_open() {
        for groups in [1, 3] {
            let mut t = tree();
            let metadata = encrypt(&mut t, &plan(groups)).unwrap();
            assert_eq!(metadata.key_groups.len(), groups);
            let keyring = Keyring::new(vec![Box::new(Plain)], DecryptionOrder::default());
            let opened = open(reload(t, &metadata), &keyring, OpenOptions::default()).unwrap();
            assert!(opened.tree.documents == tree().documents);
        }
    }

    #[test]
    fn an_edited_value_fails_the_mac() {
        let mut t = tree();
        let metadata = encrypt(&mut t, &plan(1)).unwrap();
        let mut sneaky = metadata.clone();
        sneaky.rules = Rules {
            selector: Some(crate::crypt::Selector::UnencryptedSuffix("word".into())),
            mac_only_encrypted: false,
        };
        // The attacker declares `password` unencrypted and replaces it with a clear value.
        if let Some(n) = t.documents[0].get_mut("password") {
            *n = Node::scalar(Value::Str("letmein".into()));
        }
        let keyring = Keyring::new(vec![Box::new(Plain)], DecryptionOrder::default());
        let err = open(reload(t, &sneaky), &keyring, OpenOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, DocumentError::MacMismatch { .. }), "{err}");
    }

    #[test]
    fn sealing_again_keeps_unchanged_ciphertexts() {
        let mut t = tree();
        let metadata = encrypt(&mut t, &plan(1)).unwrap();
        let before = t.documents[0].clone();
        let keyring = Keyring::new(vec![Box::new(Plain)], DecryptionOrder::default());
        let options = OpenOptions {
            remember_ivs: true,
            ..OpenOptions::default()
        };
        let mut opened = open(reload(t, &metadata), &keyring, options).unwrap();
        if let Some(n) = opened.tree.documents[0].get_mut("port") {
            *n = Node::scalar(Value::Int(6543));
        }
        let (sealed, new_metadata) = seal(opened).unwrap();
        let after = &sealed.documents[0];
        assert_eq!(
            after.get("password"),
            before.get("password"),
            "unchanged value, same bytes"
        );
        assert_ne!(after.get("port"), before.get("port"));
        assert_ne!(new_metadata.mac, metadata.mac);
        let reopened = open(
            reload(sealed, &new_metadata),
            &keyring,
            OpenOptions::default(),
        )
        .unwrap();
        assert_eq!(
            reopened.tree.documents[0].get("port"),
            Some(&Node::scalar(Value::Int(6543)))
        );
    }

    #[test]
    fn sealing_raises_old_versions_and_keeps_newer_ones() {
        for (stored, kept) in [
            ("3.7.3", false),
            ("3.13.2", true),
            ("3.14.0", true),
            ("v4.0.0", true),
            ("1.13", false),
        ] {
            assert_eq!(!is_older(stored, FORMAT_VERSION), kept, "{stored}");
        }
    }

    #[test]
    fn versions_must_be_semver() {
        assert!(check_version("3.13.2").is_ok());
        assert!(check_version("v3.7.0").is_ok());
        assert!(check_version("1.13").is_ok());
        assert!(check_version("3.13").is_err());
        assert!(check_version("").is_err());
    }

    #[test]
    fn no_recipients_is_an_error() {
        let err = encrypt(&mut tree(), &plan(0)).err().unwrap();
        assert!(matches!(err, DocumentError::NoRecipients));
    }
}
