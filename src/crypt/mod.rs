//! Per-value encryption of a tree and the MAC over its values (spec §2-§4).
//!
//! One depth-first walk does both: it decides for each leaf and comment whether it is encrypted
//! ([`Rules`]), seals or opens it under the data key with its key path as AAD, and feeds the
//! canonical plaintext of every value into the SHA-512 MAC.

mod batch;
mod cursor;
mod data_key;
mod queue;
mod rules;
pub mod shamir;
pub mod value;

pub use cursor::{Cursor, LeafPlan};
pub use data_key::{DataKey, DATA_KEY_LEN};
pub use queue::{push_wiped, OpenQueue, OpenedValues, SealQueue, SealedValues};
pub use rules::{Pattern, Rules, Selector, DEFAULT_UNENCRYPTED_SUFFIX};
pub use value::OpenError;

use std::collections::HashMap;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zeroize::{Zeroize, Zeroizing};

use crate::tree::{parse_time, Comment, ListItem, Map, Node, PathStep, Scalar, Tree, Value};
use value::IV_LEN;

/// Where IVs come from.
enum Nonces {
    /// ChaCha20 seeded from the operating system once per file: one getrandom call per value
    /// would cost more than the encryption itself.
    Random(Box<ChaCha20Rng>),
    /// Test seam for known-answer vectors: every IV is 32 copies of the next counter byte.
    Counter(u8),
}

/// Seals and opens values under one data key.
///
/// When asked to remember IVs (edit, set, rotate), every value it opens is recorded with its IV,
/// and sealing the same `(AAD, type, plaintext)` again reuses that IV, so unchanged values keep
/// byte-identical ciphertexts and a one-value edit is a one-line diff (sops does the same).
pub struct Cipher {
    key: DataKey,
    aead: value::SopsGcm,
    nonces: Nonces,
    remembered: Option<HashMap<Vec<u8>, [u8; IV_LEN]>>,
}

impl Drop for Cipher {
    fn drop(&mut self) {
        if let Some(map) = self.remembered.as_mut() {
            for (mut k, _) in map.drain() {
                k.zeroize();
            }
        }
    }
}

fn stash_key(aad: &[u8], type_name: &str, plaintext: &[u8]) -> Vec<u8> {
    [aad, b"\0", type_name.as_bytes(), b"\0", plaintext].concat()
}

impl Cipher {
    pub fn new(key: DataKey) -> Self {
        Cipher {
            aead: value::cipher(&key),
            key,
            nonces: Nonces::Random(Box::new(
                ChaCha20Rng::from_rng(rand::rngs::OsRng)
                    .expect("the operating system's random number generator is unavailable"),
            )),
            remembered: None,
        }
    }

    /// Test seam: IVs are `[first; 32]`, `[first + 1; 32]`, … (spec §13.1).
    #[doc(hidden)]
    pub fn with_counter_ivs(key: DataKey, first: u8) -> Self {
        Cipher {
            aead: value::cipher(&key),
            key,
            nonces: Nonces::Counter(first),
            remembered: None,
        }
    }

    /// Remember the IV of every value opened from now on, to reuse it when the same value is sealed.
    pub fn remember_ivs(&mut self) {
        self.remembered.get_or_insert_with(HashMap::new);
    }

    pub fn key(&self) -> &DataKey {
        &self.key
    }

    /// Replaces the data key (rotate) but keeps remembered IVs, as sops does.
    pub fn set_key(&mut self, key: DataKey) {
        self.aead = value::cipher(&key);
        self.key = key;
    }

    fn fresh_iv(&mut self) -> [u8; IV_LEN] {
        match &mut self.nonces {
            Nonces::Random(rng) => {
                let mut iv = [0u8; IV_LEN];
                rng.fill_bytes(&mut iv);
                iv
            }
            Nonces::Counter(next) => {
                let iv = [*next; IV_LEN];
                *next = next.wrapping_add(1);
                iv
            }
        }
    }

    /// Whether values may be sealed and opened in a [`batch::Batch`]: not when IVs must follow
    /// a sequence (the test seam) or be remembered and reused.
    fn can_batch(&self) -> bool {
        matches!(self.nonces, Nonces::Random(_)) && self.remembered.is_none()
    }

    /// Seals one plaintext as an `ENC[…]` string.
    pub fn seal(&mut self, plaintext: &[u8], aad: &[u8], type_name: &str) -> String {
        let reused = self.remembered.as_ref().and_then(|m| {
            let key = Zeroizing::new(stash_key(aad, type_name, plaintext));
            m.get(key.as_slice()).copied()
        });
        let iv = reused.unwrap_or_else(|| self.fresh_iv());
        value::seal(&self.aead, &iv, plaintext, aad, type_name)
    }

    /// Opens an `ENC[…]` string; returns its type name (borrowed from `text`) and plaintext.
    pub fn open<'t>(
        &mut self,
        text: &'t str,
        aad: &[u8],
    ) -> Result<(&'t str, Zeroizing<Vec<u8>>), OpenError> {
        let sealed = value::parse(text)?;
        let (iv, type_name) = (sealed.iv, sealed.type_name);
        let plaintext = value::open(&self.aead, sealed, aad)?;
        remember(&mut self.remembered, aad, type_name, &plaintext, &iv);
        Ok((type_name, plaintext))
    }
}

/// Records an opened value's IV when IVs are remembered (see [`Cipher`]).
fn remember(
    remembered: &mut Option<HashMap<Vec<u8>, [u8; IV_LEN]>>,
    aad: &[u8],
    type_name: &str,
    plaintext: &[u8],
    iv: &[u8; IV_LEN],
) {
    if let Some(map) = remembered.as_mut() {
        map.insert(stash_key(aad, type_name, plaintext), *iv);
    }
}

/// Why one sealed value could not be opened; [`LeafFailure::at`] adds its path.
pub(crate) enum LeafFailure {
    Open(OpenError),
    /// The plaintext does not parse as its declared type (a type sops writes) …
    BadPlaintext(String),
    /// … or the type is one sops does not know.
    UnknownType(String),
}

impl LeafFailure {
    fn at(self, path: String) -> CryptError {
        match self {
            LeafFailure::Open(source) => CryptError::Open { path, source },
            LeafFailure::BadPlaintext(type_name) => CryptError::BadPlaintext { path, type_name },
            LeafFailure::UnknownType(type_name) => CryptError::UnknownType { path, type_name },
        }
    }
}

/// Opens an `ENC[…]` text into its typed value: the common layout decrypted where it stands in
/// the text's own buffer, anything else through the general parser. `seen` is told the type,
/// IV and plaintext of what was opened (to remember IVs). The one opening path of both walks,
/// the sequential one and the batched one.
fn open_sealed(
    aead: &value::SopsGcm,
    text: String,
    aad: &[u8],
    seen: impl FnMut(&str, &[u8; IV_LEN], &[u8]),
) -> Result<Value, LeafFailure> {
    match value::open_owned(aead, text, aad) {
        value::OpenedInPlace::Opened {
            type_name,
            iv,
            plaintext,
        } => typed_opened(type_name, &iv, plaintext, seen),
        value::OpenedInPlace::Failed(source) => Err(LeafFailure::Open(source)),
        value::OpenedInPlace::Declined(text) => open_general(aead, &text, aad, seen),
    }
}

/// [`open_sealed`] for a text borrowed from the input (the streaming passes' queues): the
/// common layout is decoded straight from the text into the plaintext's buffer, so the text is
/// never copied. The same answers as [`open_sealed`] for every text: both fast paths decline,
/// fail and open alike (see [`value::open_borrowed`]), and what they decline takes the same
/// general path.
fn open_sealed_str(
    aead: &value::SopsGcm,
    text: &str,
    aad: &[u8],
    seen: impl FnMut(&str, &[u8; IV_LEN], &[u8]),
) -> Result<Value, LeafFailure> {
    match value::open_borrowed(aead, text, aad) {
        value::OpenedInPlace::Opened {
            type_name,
            iv,
            plaintext,
        } => typed_opened(type_name, &iv, plaintext, seen),
        value::OpenedInPlace::Failed(source) => Err(LeafFailure::Open(source)),
        value::OpenedInPlace::Declined(()) => open_general(aead, text, aad, seen),
    }
}

/// The general path of [`open_sealed`] and [`open_sealed_str`]: the fields located from the
/// start, as sops' pattern reads them.
fn open_general(
    aead: &value::SopsGcm,
    text: &str,
    aad: &[u8],
    seen: impl FnMut(&str, &[u8; IV_LEN], &[u8]),
) -> Result<Value, LeafFailure> {
    let sealed = value::parse(text).map_err(LeafFailure::Open)?;
    let (iv, type_name) = (sealed.iv, sealed.type_name);
    let plaintext = value::open(aead, sealed, aad).map_err(LeafFailure::Open)?;
    typed_opened(type_name, &iv, plaintext, seen)
}

/// An opened value's plaintext as its typed value, `seen` told of it first.
fn typed_opened(
    type_name: &str,
    iv: &[u8; IV_LEN],
    plaintext: Zeroizing<Vec<u8>>,
    mut seen: impl FnMut(&str, &[u8; IV_LEN], &[u8]),
) -> Result<Value, LeafFailure> {
    seen(type_name, iv, &plaintext);
    typed_value(type_name, plaintext).ok_or_else(|| {
        if is_known_type(type_name) {
            LeafFailure::BadPlaintext(type_name.to_string())
        } else {
            LeafFailure::UnknownType(type_name.to_string())
        }
    })
}

/// A value that could not be encrypted or decrypted, with the key path where it stands.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("{path}: the value is not encrypted, but the file's rules say it must be")]
    NotEncrypted { path: String },
    #[error("{path}: {source}")]
    Open {
        path: String,
        #[source]
        source: OpenError,
    },
    #[error("{path}: the decrypted value is not a valid {type_name}")]
    BadPlaintext { path: String, type_name: String },
    #[error("{path}: unknown value type {type_name:?} in the encrypted value")]
    UnknownType { path: String, type_name: String },
    #[error("{path}: an encrypted comment would match unencrypted_comment_regex and could not be decrypted again")]
    CommentMatchesRule { path: String },
}

impl CryptError {
    /// The same error at another path.
    pub fn at_path(mut self, new_path: String) -> CryptError {
        match &mut self {
            CryptError::NotEncrypted { path }
            | CryptError::Open { path, .. }
            | CryptError::BadPlaintext { path, .. }
            | CryptError::UnknownType { path, .. }
            | CryptError::CommentMatchesRule { path } => *path = new_path,
        }
        self
    }

    /// The key path of the failing value, in `--extract` syntax.
    pub fn path(&self) -> &str {
        match self {
            CryptError::NotEncrypted { path }
            | CryptError::Open { path, .. }
            | CryptError::BadPlaintext { path, .. }
            | CryptError::UnknownType { path, .. }
            | CryptError::CommentMatchesRule { path } => path,
        }
    }
}

/// A comment veil could not decrypt and kept as it was (sops does the same); never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentWarning {
    pub path: String,
}

/// What a decryption walk found besides the values.
pub struct Decrypted {
    /// The MAC computed over the decrypted values (uppercase hex).
    pub mac: String,
    /// Comments that stayed as they were, because they were never encrypted (files from before
    /// sops encrypted comments) or could not be opened.
    pub kept_comments: Vec<CommentWarning>,
}

/// Encrypts every selected leaf and comment of `tree` in place; returns the MAC (uppercase hex).
pub fn encrypt_tree(
    tree: &mut Tree,
    cipher: &mut Cipher,
    rules: &Rules,
) -> Result<String, CryptError> {
    let mut walk = Walk::new(cipher, rules, Mode::Encrypt);
    for doc in &mut tree.documents {
        walk.map(doc)?;
    }
    walk.flush()?;
    Ok(walk.finish().mac)
}

/// Decrypts every selected leaf and comment of `tree` in place and computes the MAC.
pub fn decrypt_tree(
    tree: &mut Tree,
    cipher: &mut Cipher,
    rules: &Rules,
) -> Result<Decrypted, CryptError> {
    let mut walk = Walk::new(cipher, rules, Mode::Decrypt);
    let mut result = tree.documents.iter_mut().try_for_each(|doc| walk.map(doc));
    if result.is_ok() {
        result = walk.flush();
    }
    let failed_leaf = walk.failed_leaf;
    let decrypted = walk.finish();
    match (result, failed_leaf) {
        (Ok(()), _) => Ok(decrypted),
        // A batched value failed: its path is found now that the walk no longer holds the tree.
        (Err(err), Some(ordinal)) => Err(err.at_path(leaf_path(tree, ordinal))),
        (Err(err), None) => Err(err),
    }
}

/// The path of the `ordinal`-th non-null leaf in walk order (what a batch records).
fn leaf_path(tree: &Tree, ordinal: usize) -> String {
    /// Counts leaves down from `left`; true (with `steps` the path) when the leaf is found.
    fn in_map(map: &Map, steps: &mut Vec<PathStep>, left: &mut usize) -> bool {
        map.0.iter().any(|item| match item {
            crate::tree::MapItem::Pair(pair) => {
                steps.push(PathStep::Key(pair.key.clone()));
                let found = in_node(&pair.value, steps, left);
                if !found {
                    steps.pop();
                }
                found
            }
            crate::tree::MapItem::Comment(_) => false,
        })
    }
    fn in_node(node: &Node, steps: &mut Vec<PathStep>, left: &mut usize) -> bool {
        match node {
            Node::Map(map) => in_map(map, steps, left),
            Node::List(list) => list.0.iter().enumerate().any(|(index, item)| match item {
                ListItem::Node(inner) => {
                    steps.push(PathStep::Index(index));
                    let found = in_node(inner, steps, left);
                    if !found {
                        steps.pop();
                    }
                    found
                }
                ListItem::Comment(_) => false,
            }),
            Node::Scalar(scalar) if scalar.value == Value::Null => false,
            Node::Scalar(_) if *left == 0 => true,
            Node::Scalar(_) => {
                *left -= 1;
                false
            }
        }
    }
    let mut steps = Vec::new();
    let mut left = ordinal;
    tree.documents
        .iter()
        .any(|doc| in_map(doc, &mut steps, &mut left));
    display_path(&steps)
}

/// The AAD the MAC is sealed with: `lastmodified` re-rendered with whole seconds (spec §4.4).
pub fn mac_aad(lastmodified: &str) -> Option<String> {
    let t = parse_time(lastmodified)?;
    let text = if t.offset().local_minus_utc() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    };
    Some(text)
}

/// Seals the MAC for the metadata's `mac` field.
pub fn seal_mac(cipher: &mut Cipher, mac_hex: &str, lastmodified: &str) -> String {
    let aad = mac_aad(lastmodified).unwrap_or_else(|| lastmodified.to_string());
    cipher.seal(mac_hex.as_bytes(), aad.as_bytes(), "str")
}

/// Opens the metadata's `mac` field; an empty field opens to the empty string, as in sops.
pub fn open_mac(
    cipher: &mut Cipher,
    sealed: &str,
    lastmodified: &str,
) -> Result<String, OpenError> {
    if sealed.is_empty() {
        return Ok(String::new());
    }
    let aad = mac_aad(lastmodified)
        .ok_or(OpenError::Malformed("lastmodified is not an RFC 3339 time"))?;
    let (_, plaintext) = cipher.open(sealed, aad.as_bytes())?;
    String::from_utf8(plaintext.to_vec()).map_err(|_| OpenError::Malformed("the MAC is not text"))
}

/// Renders a key path the way `--extract` takes it: `["a"]["b"][0]`.
pub fn display_path(steps: &[PathStep]) -> String {
    if steps.is_empty() {
        return "(top level)".into();
    }
    steps
        .iter()
        .map(|s| match s {
            PathStep::Key(k) => format!("[{k:?}]"),
            PathStep::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// Leaves a batch collects before its crypto runs: enough to keep every core busy, few enough
/// that the bookkeeping stays small beside the tree.
const BATCH_SIZE: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Encrypt,
    Decrypt,
}

struct Walk<'a, 't> {
    cipher: &'a mut Cipher,
    /// Leaves whose crypto runs after the walk, on several threads (see [`batch`]).
    batch: Option<batch::Batch<'t>>,
    /// Non-null leaves visited so far: a batched leaf's number, to find its path on failure.
    leaves: usize,
    /// The number of the batched leaf that failed to open (its error has no path yet).
    failed_leaf: Option<usize>,
    mode: Mode,
    at: Cursor<'a>,
    kept_comments: Vec<CommentWarning>,
}

impl<'a, 't> Walk<'a, 't> {
    fn new(cipher: &'a mut Cipher, rules: &'a Rules, mode: Mode) -> Self {
        Walk {
            batch: cipher.can_batch().then(batch::Batch::default),
            leaves: 0,
            failed_leaf: None,
            cipher,
            mode,
            at: Cursor::new(rules),
            kept_comments: Vec::new(),
        }
    }

    fn finish(self) -> Decrypted {
        Decrypted {
            mac: self.at.mac_hex(),
            kept_comments: self.kept_comments,
        }
    }

    /// Runs the batch's crypto now, on several threads, and empties it; decrypting, the opened
    /// values then go into the MAC in their turn. Called when the batch is full and at the end,
    /// so that it never holds more than [`BATCH_SIZE`] leaves.
    fn flush(&mut self) -> Result<(), CryptError> {
        let Some(batch) = self.batch.as_mut() else {
            return Ok(());
        };
        match self.mode {
            Mode::Encrypt => batch.seal_all(&self.cipher.aead),
            Mode::Decrypt => {
                if let Err((ordinal, failure)) = batch.open_all(&self.cipher.aead) {
                    // The path is found once the walk lets go of the tree (`decrypt_tree`).
                    self.failed_leaf = Some(ordinal);
                    return Err(failure.at(String::new()));
                }
                for value in batch.values() {
                    with_canonical_bytes(value, |plaintext| self.at.hash(plaintext));
                }
            }
        }
        batch.clear();
        Ok(())
    }

    fn map(&mut self, map: &'t mut Map) -> Result<(), CryptError> {
        self.at.open_collection();
        for item in &mut map.0 {
            match item {
                crate::tree::MapItem::Comment(c) => self.comment(c)?,
                crate::tree::MapItem::Pair(pair) => {
                    self.at.push_key(&pair.key);
                    let result = self.node(&mut pair.value);
                    self.at.pop_key();
                    result?;
                    self.at.end_item();
                }
            }
        }
        self.at.close_collection();
        Ok(())
    }

    fn list(&mut self, list: &'t mut crate::tree::List) -> Result<(), CryptError> {
        self.at.open_collection();
        for (index, item) in list.0.iter_mut().enumerate() {
            self.at.push_index(index);
            // sops writes an encrypted comment inside a list as a plain list element.
            if self.mode == Mode::Decrypt {
                if let ListItem::Node(node @ Node::Scalar(_)) = item {
                    if is_sealed_comment(node) {
                        let Node::Scalar(Scalar { value, span }) = node else {
                            unreachable!()
                        };
                        let text = match std::mem::replace(value, Value::Null) {
                            Value::Str(text) => text,
                            _ => unreachable!("is_sealed_comment checked a string"),
                        };
                        *item = ListItem::Comment(Comment {
                            text,
                            inline: false,
                            span: span.take(),
                        });
                    }
                }
            }
            let result = match item {
                ListItem::Comment(c) => self.comment(c),
                ListItem::Node(node) => {
                    let result = self.node(node);
                    self.at.end_item();
                    result
                }
            };
            self.at.pop_index();
            result?;
        }
        self.at.close_collection();
        Ok(())
    }

    fn node(&mut self, node: &'t mut Node) -> Result<(), CryptError> {
        match node {
            Node::Map(m) => self.map(m),
            Node::List(l) => self.list(l),
            Node::Scalar(s) => self.leaf(s),
        }
    }

    fn leaf(&mut self, scalar: &'t mut Scalar) -> Result<(), CryptError> {
        if scalar.value == Value::Null {
            return Ok(());
        }
        let ordinal = self.leaves;
        self.leaves += 1;
        let LeafPlan { encrypted, hashed } = self.at.leaf();
        // With a batch, sealing and opening wait for [`Walk::flush`]; the MAC keeps walk order
        // either way (decrypting, a batched leaf is hashed once it is opened).
        let empty = scalar.value.is_empty_string();
        match self.mode {
            Mode::Encrypt => {
                let seal_now = encrypted && !empty && self.batch.is_none();
                let Walk { at, cipher, .. } = self;
                let sealed = with_canonical_bytes(&scalar.value, |plaintext| {
                    if hashed {
                        at.hash(plaintext);
                    }
                    seal_now.then(|| cipher.seal(plaintext, at.aad(), scalar.value.type_name()))
                });
                if let Some(sealed) = sealed {
                    scalar.value = Value::Str(sealed);
                } else if let Some(batch) = self.batch.as_mut().filter(|_| encrypted && !empty) {
                    batch.push_crypt(&mut scalar.value, self.at.aad(), ordinal);
                }
            }
            Mode::Decrypt => {
                let sealed = matches!(&scalar.value, Value::Str(text) if value::is_sealed(text));
                if let Some(batch) = self.batch.as_mut().filter(|_| encrypted && sealed) {
                    batch.push_crypt(&mut scalar.value, self.at.aad(), ordinal);
                } else {
                    if encrypted {
                        self.open_leaf(&mut scalar.value)?;
                    }
                    if hashed {
                        match self.batch.as_mut() {
                            Some(batch) => batch.push_plain(&scalar.value),
                            None => with_canonical_bytes(&scalar.value, |plaintext| {
                                self.at.hash(plaintext)
                            }),
                        }
                    }
                }
            }
        }
        if self.batch.as_ref().is_some_and(|b| b.len() >= BATCH_SIZE) {
            self.flush()?;
        }
        Ok(())
    }

    /// Opens a leaf in place (on a failure the value is left empty: the walk stops with the
    /// error). An empty string stays as it is, as in sops.
    fn open_leaf(&mut self, slot: &mut Value) -> Result<(), CryptError> {
        match slot {
            Value::Str(text) if value::is_sealed(text) => {
                let aad = self.at.aad();
                let Cipher {
                    aead, remembered, ..
                } = &mut *self.cipher;
                let opened =
                    open_sealed(aead, std::mem::take(text), aad, |type_name, iv, plain| {
                        remember(remembered, aad, type_name, plain, iv)
                    });
                *slot = opened.map_err(|failure| failure.at(self.at.path()))?;
                Ok(())
            }
            Value::Str(text) if text.is_empty() => Ok(()),
            _ => Err(CryptError::NotEncrypted {
                path: self.at.path(),
            }),
        }
    }

    fn comment(&mut self, comment: &mut Comment) -> Result<(), CryptError> {
        let encrypted = self.at.comment(&comment.text);
        if !encrypted || comment.text.is_empty() {
            return Ok(());
        }
        match self.mode {
            Mode::Encrypt => {
                let sealed = self
                    .cipher
                    .seal(comment.text.as_bytes(), self.at.aad(), "comment");
                if let Some(Selector::UnencryptedCommentRegex(p)) = &self.at.rules().selector {
                    if p.is_match(&sealed) {
                        return Err(CryptError::CommentMatchesRule {
                            path: self.at.path(),
                        });
                    }
                }
                comment.text = sealed;
            }
            Mode::Decrypt => match self.open_comment(&comment.text) {
                Some(plaintext) => {
                    self.at.opened_comment(&plaintext);
                    comment.text = plaintext;
                }
                None => self.kept_comments.push(CommentWarning {
                    path: self.at.path(),
                }),
            },
        }
        Ok(())
    }

    /// Opens a sealed comment, remembering its IV when IVs are remembered.
    fn open_comment(&mut self, text: &str) -> Option<String> {
        let Cipher {
            aead, remembered, ..
        } = &mut *self.cipher;
        let plaintext = open_comment(aead, &self.at, text, |aad, type_name, iv, plain| {
            remember(remembered, aad, type_name, plain, iv)
        })?;
        Some(plaintext.as_str().to_owned())
    }
}

/// Opens a sealed comment where a walk stands. sops' YAML reader sometimes files a comment
/// under a neighbouring collection (spec §15.2), so the enclosing paths are tried too before a
/// comment is kept as it is. `seen` is told the AAD, type, IV and plaintext of what opened (to
/// remember IVs). `None` when the text is not sealed, opens under none of the paths, or is not
/// text; the plaintext is wiped when dropped.
pub(crate) fn open_comment(
    aead: &value::SopsGcm,
    at: &Cursor,
    text: &str,
    mut seen: impl FnMut(&[u8], &str, &[u8; IV_LEN], &[u8]),
) -> Option<Zeroizing<String>> {
    if !value::is_sealed(text) {
        return None;
    }
    for depth in (0..=at.depth()).rev() {
        let sealed = value::parse(text).ok()?;
        let (iv, type_name) = (sealed.iv, sealed.type_name);
        let aad = aad_of(at.keys_to(depth));
        if let Ok(plaintext) = value::open(aead, sealed, &aad) {
            seen(&aad, type_name, &iv, &plaintext);
            return std::str::from_utf8(&plaintext)
                .ok()
                .map(|text| Zeroizing::new(text.to_owned()));
        }
    }
    None
}

fn aad_of(keys: &[String]) -> Vec<u8> {
    let mut aad = keys.join(":").into_bytes();
    aad.push(b':');
    aad
}

/// The value types sops writes (a value of another type is "unknown", not "bad").
fn is_known_type(type_name: &str) -> bool {
    matches!(
        type_name,
        "str" | "int" | "float" | "bool" | "time" | "bytes"
    )
}

fn is_sealed_comment(node: &Node) -> bool {
    match node {
        Node::Scalar(Scalar {
            value: Value::Str(s),
            ..
        }) => {
            // Only a comment's fields are decoded: any other type answers no without work.
            value::is_sealed(s)
                && value::type_name_of(s) == Some("comment")
                && value::parse(s).is_ok()
        }
        _ => false,
    }
}

/// Calls `f` with a value's canonical plaintext, borrowed where the value holds it as is; a
/// rendered copy is wiped afterwards.
fn with_canonical_bytes<R>(value: &Value, f: impl FnOnce(&[u8]) -> R) -> R {
    match value {
        Value::Str(s) => f(s.as_bytes()),
        Value::Bytes(b) => f(b),
        other => f(&Zeroizing::new(other.canonical_bytes())),
    }
}

/// Parses decrypted plaintext back into a typed value (spec §2.3, Go's parsers). A string or
/// bytes value takes over the plaintext buffer; otherwise it is wiped when dropped.
fn typed_value(type_name: &str, mut plaintext: Zeroizing<Vec<u8>>) -> Option<Value> {
    if matches!(type_name, "str" | "bytes") {
        let bytes = std::mem::take(&mut *plaintext);
        return Some(if type_name == "bytes" {
            Value::Bytes(bytes)
        } else {
            match String::from_utf8(bytes) {
                Ok(s) => Value::Str(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            }
        });
    }
    let plaintext: &[u8] = &plaintext;
    let text = || std::str::from_utf8(plaintext).ok();
    Some(match type_name {
        "int" => Value::Int(text()?.parse().ok()?),
        "float" => Value::Float(parse_go_float(text()?)?),
        "bool" => Value::Bool(match text()? {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => return None,
        }),
        "time" => Value::Time(parse_time(text()?)?),
        _ => return None,
    })
}

fn parse_go_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => text.replace('_', "").parse().ok(),
    }
}

#[cfg(test)]
mod tests;
