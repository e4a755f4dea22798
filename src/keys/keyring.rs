//! Recovering a file's data key from its key groups with the identities at hand.
//!
//! How keys are tried: in each group the offline keys (age, PGP, PKCS#11: files, gpg, a local
//! token) come first, one after another in decryption order, and the first that opens wins.
//! Only when none does are the group's network keys (AWS KMS, GCP KMS, Azure Key Vault, Vault
//! transit, and types veil does not know) asked, all at once, each on its own thread: the first
//! answer that opens wins and the slower ones are not waited for (their threads are left to
//! finish or to be ended with the process). An explicit `--decryption-order` orders the offline
//! keys among themselves and the network keys among themselves; it never puts a network key
//! before an offline one. With several key groups (Shamir), the offline keys of every group are
//! tried before any network key, and no group is opened once the threshold of parts is reached,
//! so a file that offline keys open never touches the network. (sops tries every key of every
//! group one after another, in decryption order; the data key is the same either way.)
//!
//! The failure report lists every key tried, in that order (offline keys, then network keys,
//! each in decryption order), whatever order the answers came in.

use std::fmt;
use std::sync::{mpsc, Arc};

use super::{Identity, KeyEntry, KeyPart};
use crate::crypt::DataKey;
use crate::metadata::Metadata;

/// The key types sops knows, which `--decryption-order` may name (and veil's `pkcs11`).
const KNOWN_TYPES: [&str; 8] = [
    "age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms", "pkcs11",
];

/// The key types whose keys are on this machine (identity files, gpg, a local token): tried
/// first and one at a time. Every other type (and every unknown one) reaches out to a service.
const OFFLINE_TYPES: [&str; 3] = ["age", "pgp", "pkcs11"];

/// Whether keys of this type are opened without the network.
pub fn is_offline(kind: &str) -> bool {
    OFFLINE_TYPES.contains(&kind)
}

/// In which order the keys of a group are tried: offline keys first, by default age then pgp
/// then pkcs11; then the others, in the order they are stored. A given order sorts the offline
/// keys and the network keys each among themselves.
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

    /// The group's keys in the order to try them: offline before network, then by rank (a
    /// stable sort keeps stored order within a type).
    fn sorted<'a>(&self, keys: &'a [KeyEntry]) -> Vec<&'a KeyEntry> {
        let mut sorted: Vec<&KeyEntry> = keys.iter().collect();
        sorted.sort_by_key(|k| (!is_offline(k.kind()), self.rank(k.kind())));
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

/// The identities of this process, shared with the threads that ask network services.
type Identities = Arc<[Box<dyn Identity>]>;

/// The identities available to this process and the order to try keys in.
pub struct Keyring {
    identities: Identities,
    order: DecryptionOrder,
}

/// Which keys of a group a pass tries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Offline,
    Network,
}

/// Offers one entry to every identity: the first part unwrapped, else why each identity that
/// claimed the entry failed (or that none did).
fn try_entry(
    identities: &[Box<dyn Identity>],
    entry: &KeyEntry,
) -> Result<KeyPart, Vec<KeyFailure>> {
    let failure = |reason: String| KeyFailure {
        kind: entry.kind(),
        name: entry.name(),
        reason,
    };
    let mut failures = Vec::new();
    for identity in identities {
        match identity.unwrap(entry) {
            None => continue,
            Some(Ok(part)) => return Ok(part),
            Some(Err(err)) => failures.push(failure(err.reason)),
        }
    }
    if failures.is_empty() {
        failures.push(failure(format!(
            "veil cannot use {} keys in this build",
            entry.kind()
        )));
    }
    Err(failures)
}

impl Keyring {
    pub fn new(identities: Vec<Box<dyn Identity>>, order: DecryptionOrder) -> Self {
        Keyring {
            identities: identities.into(),
            order,
        }
    }

    /// One pass over a group's keys: the first that opens wins.
    fn open_group(&self, keys: &[KeyEntry], pass: Pass) -> Result<KeyPart, Vec<KeyFailure>> {
        let entries: Vec<&KeyEntry> = self
            .order
            .sorted(keys)
            .into_iter()
            .filter(|k| is_offline(k.kind()) == (pass == Pass::Offline))
            .collect();
        if pass == Pass::Network && entries.len() > 1 {
            return self.open_concurrently(&entries);
        }
        let mut failures = Vec::new();
        for entry in entries {
            match try_entry(&self.identities, entry) {
                Ok(part) => return Ok(part),
                Err(more) => failures.extend(more),
            }
        }
        Err(failures)
    }

    /// Asks for every entry at once, one thread each; returns with the first part unwrapped,
    /// without waiting for the others. Failures are reported in the entries' order.
    fn open_concurrently(&self, entries: &[&KeyEntry]) -> Result<KeyPart, Vec<KeyFailure>> {
        let (sender, answers) = mpsc::channel();
        for (index, entry) in entries.iter().enumerate() {
            let identities = Arc::clone(&self.identities);
            let owned = (*entry).clone();
            let to_keyring = sender.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("veil-key-{index}"))
                .spawn(move || {
                    // The keyring may have its part already and be gone: then this one's
                    // answer (zeroized on drop) is not needed.
                    let _ = to_keyring.send((index, try_entry(&identities, &owned)));
                });
            if spawned.is_err() {
                let _ = sender.send((index, try_entry(&self.identities, entry)));
            }
        }
        drop(sender);
        let mut failures: Vec<Option<Vec<KeyFailure>>> = vec![None; entries.len()];
        // Ends when every thread has answered (or ended without answering).
        for (index, answer) in answers {
            match answer {
                Ok(part) => return Ok(part),
                Err(why) => failures[index] = Some(why),
            }
        }
        Err(failures
            .into_iter()
            .zip(entries)
            .flat_map(|(failure, entry)| {
                failure.unwrap_or_else(|| {
                    vec![KeyFailure {
                        kind: entry.kind(),
                        name: entry.name(),
                        reason: "the attempt ended without an answer (internal error)".into(),
                    }]
                })
            })
            .collect())
    }

    /// Recovers the data key of a file: offline keys of every group first, then network keys
    /// of the groups still needed, stopping as soon as enough parts are there.
    pub fn recover(&self, metadata: &Metadata) -> Result<DataKey, RecoveryError> {
        let groups = &metadata.key_groups;
        let single = groups.len() == 1;
        let needed = if single {
            1
        } else if metadata.shamir_threshold == 0 {
            groups.len()
        } else {
            // Combining takes at least two shares, whatever a file says.
            metadata.shamir_threshold.max(2)
        };
        let mut parts: Vec<Option<KeyPart>> = groups.iter().map(|_| None).collect();
        let mut report: Vec<Vec<KeyFailure>> = vec![Vec::new(); groups.len()];
        let mut found = 0;
        for pass in [Pass::Offline, Pass::Network] {
            for (index, group) in groups.iter().enumerate() {
                if found >= needed {
                    break;
                }
                if parts[index].is_some() {
                    continue;
                }
                match self.open_group(&group.keys, pass) {
                    Ok(part) => {
                        parts[index] = Some(part);
                        report[index].clear();
                        found += 1;
                    }
                    Err(failures) => report[index].extend(failures),
                }
            }
        }
        let shares = (!single).then_some((found, needed));
        if found < needed || found == 0 {
            return Err(RecoveryError {
                groups: report,
                shares,
            });
        }
        let parts: Vec<KeyPart> = parts.into_iter().flatten().collect();
        if single {
            let part = &parts[0];
            return DataKey::from_bytes(part.as_bytes()).ok_or_else(|| RecoveryError {
                groups: vec![vec![KeyFailure {
                    kind: "data key",
                    name: String::new(),
                    reason: format!("unwrapped to {} bytes, expected 32", part.as_bytes().len()),
                }]],
                shares: None,
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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

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

    /// A network key service for `kms` entries, by ARN: `slow` waits for `release` (at most a
    /// minute, so a keyring that waits for it fails its test instead of hanging) and then
    /// fails; `fail` fails at once and tells `on_fail`; any other ARN opens, its part the hex
    /// in `enc`. Counts its calls.
    #[derive(Default)]
    struct Network {
        calls: AtomicUsize,
        release: Mutex<Option<mpsc::Receiver<()>>>,
        on_fail: Mutex<Option<mpsc::Sender<()>>>,
        slow_answered: AtomicBool,
    }

    impl Identity for Arc<Network> {
        fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
            let KeyEntry::Kms { arn, enc, .. } = entry else {
                return None;
            };
            self.calls.fetch_add(1, Ordering::SeqCst);
            let failed = |reason: &str| {
                Some(Err(KeyError {
                    kind: "kms",
                    name: entry.name(),
                    reason: reason.into(),
                }))
            };
            match arn.as_str() {
                "slow" => {
                    let release = self.release.lock().unwrap().take();
                    if let Some(release) = release {
                        let _ = release.recv_timeout(Duration::from_secs(60));
                    }
                    self.slow_answered.store(true, Ordering::SeqCst);
                    failed("unreachable")
                }
                "fail" => {
                    if let Some(tell) = self.on_fail.lock().unwrap().take() {
                        let _ = tell.send(());
                    }
                    failed("access denied")
                }
                _ => Some(Ok(KeyPart::new(hex(enc)))),
            }
        }
    }

    fn kms(arn: &str, enc: &str) -> KeyEntry {
        KeyEntry::Kms {
            arn: arn.into(),
            role: String::new(),
            context: vec![],
            created_at: String::new(),
            enc: enc.into(),
            aws_profile: String::new(),
        }
    }

    fn with_network(network: &Arc<Network>, order: DecryptionOrder) -> Keyring {
        Keyring::new(vec![Box::new(Fake), Box::new(Arc::clone(network))], order)
    }

    #[test]
    fn the_first_network_key_to_open_wins_without_waiting_for_a_slower_one() {
        let network = Arc::new(Network::default());
        let (release, released) = mpsc::channel();
        *network.release.lock().unwrap() = Some(released);
        let key = [9u8; 32];
        // The slow key comes first in the file: tried one after the other, it would hold the
        // fast one up until released, which happens only once `recover` has returned.
        let meta = metadata(vec![vec![kms("slow", ""), kms("fast", &to_hex(&key))]], 0);
        let keyring = with_network(&network, DecryptionOrder::default());
        let recovered = keyring.recover(&meta).expect("the fast key opens");
        assert_eq!(recovered.as_bytes(), &key);
        assert!(
            !network.slow_answered.load(Ordering::SeqCst),
            "recover waited for the slow key"
        );
        let _ = release.send(());
    }

    #[test]
    fn offline_keys_that_open_keep_the_network_out() {
        let network = Arc::new(Network::default());
        let key = [3u8; 32];
        let group = vec![kms("counted", &to_hex(&key)), pgp(), age(&to_hex(&key))];
        for order in [
            DecryptionOrder::default(),
            DecryptionOrder::parse("kms,pgp,age").unwrap(),
        ] {
            let keyring = with_network(&network, order);
            let recovered = keyring.recover(&metadata(vec![group.clone()], 0)).ok();
            assert_eq!(recovered.unwrap().as_bytes(), &key);
        }
        assert_eq!(network.calls.load(Ordering::SeqCst), 0);

        // Key groups: offline keys of every group go first, and no group is opened once the
        // threshold is reached.
        let secret = [0x5au8; 32];
        let shares = crate::crypt::shamir::split(&secret, 3, 2).unwrap();
        let keyring = with_network(&network, DecryptionOrder::default());
        for groups in [
            vec![
                vec![kms("counted", &to_hex(&shares[0]))],
                vec![age(&to_hex(&shares[1]))],
                vec![age(&to_hex(&shares[2]))],
            ],
            vec![
                vec![age(&to_hex(&shares[0]))],
                vec![age(&to_hex(&shares[1]))],
                vec![kms("counted", &to_hex(&shares[2]))],
            ],
        ] {
            let recovered = keyring.recover(&metadata(groups, 2)).ok();
            assert_eq!(recovered.unwrap().as_bytes(), &secret);
        }
        assert_eq!(network.calls.load(Ordering::SeqCst), 0);

        // When the offline keys are not enough, the network is asked.
        let groups = vec![
            vec![kms("counted", &to_hex(&shares[0]))],
            vec![age("bad")],
            vec![age(&to_hex(&shares[2]))],
        ];
        let recovered = keyring.recover(&metadata(groups, 2)).ok();
        assert_eq!(recovered.unwrap().as_bytes(), &secret);
        assert_eq!(network.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failures_are_reported_in_decryption_order_not_in_answer_order() {
        let network = Arc::new(Network::default());
        // `slow` (stored first) answers only after `fail` has.
        let (tell, told) = mpsc::channel();
        *network.release.lock().unwrap() = Some(told);
        *network.on_fail.lock().unwrap() = Some(tell);
        let keyring = with_network(&network, DecryptionOrder::default());
        let meta = metadata(
            vec![vec![kms("slow", ""), pgp(), kms("fail", ""), age("bad")]],
            0,
        );
        let err = keyring.recover(&meta).err().expect("nothing opens");
        let tried: Vec<(&str, &str)> = err.groups[0]
            .iter()
            .map(|f| (f.kind, f.name.as_str()))
            .collect();
        assert_eq!(
            tried,
            [
                ("age", "age1bad"),
                ("pgp", "FP"),
                ("kms", "slow"),
                ("kms", "fail")
            ]
        );
        let text = err.to_string();
        assert!(text.contains("kms slow: unreachable"), "{text}");
        assert!(text.contains("kms fail: access denied"), "{text}");
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
