//! Encrypting and decrypting a whole file as it is read, without building its tree.
//!
//! The tree ([`crate::tree`]) is what every command works on, and for a small file it costs
//! nothing. For a large one it is most of the time and memory of `encrypt` and `decrypt`: a few
//! hundred bytes per value, allocated, filled and dropped. The passes here read the input's text
//! once, keep their place in a [`Cursor`] (so they take the same decisions, AAD and MAC as the
//! tree walk), seal or open values in [`SealQueue`]/[`OpenQueue`] batches on every core, and write
//! the result as they go: memory stays near the size of the input, whatever its size.
//!
//! They cover the common case only: YAML in the subset the fast scanner reads, and JSON. For
//! anything else a pass *declines*, before it has written a byte, and the caller takes the tree
//! path, which reports every error in its own words. Decrypting, a pass also declines on any
//! failure (a value that does not open, a comment it cannot read): the tree path then gives the
//! precise error, so the fast path never needs its own. In test builds every input of the store
//! suites is run through both paths and the outputs compared byte for byte.
//!
//! [`Cursor`]: crate::crypt::Cursor
//! [`SealQueue`]: crate::crypt::SealQueue
//! [`OpenQueue`]: crate::crypt::OpenQueue

mod json;
mod yaml;

use zeroize::Zeroizing;

use crate::crypt::{Cipher, Rules};
use crate::store::{EmitError, Format, Indent};
use crate::tree::{Map, Node};

/// Values a pass queues before it seals or opens them: enough to keep every core busy, few
/// enough that the queue and its results stay small beside the input.
pub(crate) const QUEUE_SIZE: usize = 4096;

/// What encrypting needs besides the input.
pub struct Sealing<'a> {
    pub cipher: &'a mut Cipher,
    pub rules: &'a Rules,
    pub indent: Indent,
    /// Builds the `sops` map from the MAC over the values (uppercase hex), once the pass has
    /// seen them all; it is written at the end of the output, where sops puts it.
    pub metadata: &'a mut dyn FnMut(&mut Cipher, String) -> Map,
    /// Told, as the pass goes, the offset before which it no longer reads the input (a mapped
    /// input hands those pages back).
    pub release: &'a dyn Fn(usize),
}

/// What decrypting needs besides the input.
pub struct Opening<'a> {
    /// Holds the data key; IVs are not remembered.
    pub cipher: &'a Cipher,
    pub rules: &'a Rules,
    pub indent: Indent,
    /// As [`Sealing::release`].
    pub release: &'a dyn Fn(usize),
}

/// A decrypted file: its plaintext text (wiped when dropped) and the MAC over its values.
pub struct Plain {
    pub text: Zeroizing<Vec<u8>>,
    pub mac: String,
}

/// Whether a pass exists for this conversion at all (before any work is done).
/// `VEIL_STREAM=0` turns the passes off, so that the tree path can be compared with them.
pub fn covers(input: Format, output: Format) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let enabled = *ENABLED.get_or_init(|| std::env::var_os("VEIL_STREAM").is_none_or(|v| v != "0"));
    enabled && input == output && matches!(input, Format::Yaml | Format::Json)
}

/// A plain file an encrypting pass has read through and will write whole: checking comes
/// first so that a file the pass declines, or a broken one, costs no key wrapping and the tree
/// path reports its errors in their usual order.
pub enum Checked<'a> {
    Json(json::Checked<'a>),
    Yaml(yaml::Checked<'a>),
}

/// Reads `input` (plain text in `format`) through; `None` declines (nothing is written then).
/// `release` is told how far the check has read, as [`Sealing::release`].
pub fn check<'a>(format: Format, input: &'a [u8], release: &dyn Fn(usize)) -> Option<Checked<'a>> {
    let checked = match format {
        Format::Json => json::check(input, release).map(Checked::Json),
        Format::Yaml => yaml::check(input, release).map(Checked::Yaml),
        _ => None,
    };
    release(input.len());
    checked
}

impl Checked<'_> {
    /// Encrypts the file into `sink`, the `sops` map last. An error here is the sink's, or an
    /// input the check should have declined (reported, never a panic).
    pub fn encrypt(self, sealing: Sealing, sink: &mut dyn std::io::Write) -> Result<(), EmitError> {
        match self {
            Checked::Json(checked) => checked.encrypt(sealing, sink),
            Checked::Yaml(checked) => checked.encrypt(sealing, sink),
        }
    }
}

/// The `sops` map of an encrypted file, found without reading the rest of it into a tree.
/// `None` declines (the tree path then loads the file and reports what is wrong).
pub fn metadata(format: Format, input: &[u8]) -> Option<Node> {
    match format {
        Format::Json => json::metadata(input),
        Format::Yaml => yaml::metadata(input),
        _ => None,
    }
}

/// Decrypts `input` (an encrypted file in `format`) into the plaintext file the tree path
/// would write, without its `sops` block. `None` declines, on anything unusual or any failure.
pub fn decrypt(format: Format, input: &[u8], opening: Opening) -> Option<Plain> {
    match format {
        Format::Json => json::decrypt(input, opening),
        Format::Yaml => yaml::decrypt(input, opening),
        _ => None,
    }
}
