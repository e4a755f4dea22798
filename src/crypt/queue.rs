//! Values a streaming pass has met, sealed or opened together.
//!
//! A pass that never builds a tree (see [`crate::stream`]) cannot leave its values in place for
//! a batch to fill in; it queues them here instead, with their AAD, and gets the results back in
//! the order it queued them. As with the tree walk's batch, the work runs on every core when the
//! cipher draws random IVs, and in order on the calling thread when IVs follow the test seam's
//! sequence (so a streaming pass and the tree walk seal identical bytes under a counter cipher).

use std::ops::Range;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zeroize::{Zeroize, Zeroizing};

use super::batch::{run_parts, run_split, threads_for};
use super::value::{self, IV_LEN};
use super::{open_sealed_str, with_canonical_bytes, Cipher, CryptError, Cursor};
use crate::tree::Value;

/// Appends to a buffer of plaintext, moving it into a larger one (and wiping the old one) when
/// it must grow: a plain reallocation would free the old buffer unwiped.
pub fn push_wiped(buffer: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    if buffer.capacity() - buffer.len() < bytes.len() {
        let capacity = (buffer.len() + bytes.len()).max(2 * buffer.capacity());
        let mut larger = Zeroizing::new(Vec::with_capacity(capacity));
        larger.extend_from_slice(buffer);
        // The old one is wiped as it is dropped.
        *buffer = larger;
    }
    buffer.extend_from_slice(bytes);
}

/// Values an [`OpenQueue`] opened, in queue order; their plaintexts are wiped when dropped.
#[derive(Default)]
pub struct OpenedValues(Vec<Value>);

impl std::ops::Deref for OpenedValues {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        &self.0
    }
}

impl Drop for OpenedValues {
    fn drop(&mut self) {
        for value in &mut self.0 {
            match value {
                Value::Str(text) => text.zeroize(),
                Value::Bytes(bytes) => bytes.zeroize(),
                _ => {}
            }
        }
    }
}

struct ToSeal {
    plaintext: Range<usize>,
    aad: Range<usize>,
    type_name: &'static str,
}

/// Plaintexts waiting to be sealed.
#[derive(Default)]
pub struct SealQueue {
    /// Every queued plaintext, back to back; wiped when dropped.
    plaintexts: Zeroizing<Vec<u8>>,
    aads: Vec<u8>,
    items: Vec<ToSeal>,
}

impl SealQueue {
    /// Queues a value's canonical plaintext under `type_name` (`"comment"` for a comment).
    pub fn push_text(&mut self, plaintext: &[u8], aad: &[u8], type_name: &'static str) {
        let start = self.plaintexts.len();
        push_wiped(&mut self.plaintexts, plaintext);
        let aad_start = self.aads.len();
        self.aads.extend_from_slice(aad);
        self.items.push(ToSeal {
            plaintext: start..self.plaintexts.len(),
            aad: aad_start..self.aads.len(),
            type_name,
        });
    }

    /// Queues a typed value (its canonical plaintext and type name).
    pub fn push(&mut self, value: &Value, aad: &[u8]) {
        let type_name = value.type_name();
        with_canonical_bytes(value, |plaintext| self.push_text(plaintext, aad, type_name));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Seals everything queued, in queue order, and empties the queue (keeping its buffers).
    pub fn seal_all(&mut self, cipher: &mut Cipher) -> Vec<String> {
        self.seal_values(cipher).iter().map(str::to_owned).collect()
    }

    /// [`SealQueue::seal_all`], the sealed texts packed into a few buffers.
    pub fn seal_values(&mut self, cipher: &mut Cipher) -> SealedValues {
        let (plaintexts, aads) = (&self.plaintexts, &self.aads);
        let sealed = if cipher.can_batch() {
            let aead = &cipher.aead;
            let chunk = self.items.len().div_ceil(threads_for(self.items.len()));
            let mut parts: Vec<(&[ToSeal], SealedPart)> = self
                .items
                .chunks(chunk.max(1))
                .map(|items| (items, SealedPart::default()))
                .collect();
            run_parts(&mut parts, |(items, part)| {
                let mut rng = ChaCha20Rng::from_rng(rand::rngs::OsRng)
                    .expect("the operating system's random number generator is unavailable");
                let room = items.iter().map(ToSeal::sealed_len).sum();
                let mut text = Vec::with_capacity(room);
                let mut scratch = Zeroizing::new(Vec::new());
                for item in *items {
                    let mut iv = [0u8; IV_LEN];
                    rng.fill_bytes(&mut iv);
                    value::seal_into(
                        aead,
                        &iv,
                        &plaintexts[item.plaintext.clone()],
                        &aads[item.aad.clone()],
                        item.type_name,
                        &mut scratch,
                        &mut text,
                    );
                    part.ends.push(text.len());
                }
                part.text = String::from_utf8(text).expect("base64 and type names are ASCII");
            });
            SealedValues {
                parts: parts.into_iter().map(|(_, part)| part).collect(),
            }
        } else {
            let mut part = SealedPart::default();
            for item in &self.items {
                part.text.push_str(&cipher.seal(
                    &plaintexts[item.plaintext.clone()],
                    &aads[item.aad.clone()],
                    item.type_name,
                ));
                part.ends.push(part.text.len());
            }
            SealedValues { parts: vec![part] }
        };
        self.plaintexts.clear();
        self.aads.clear();
        self.items.clear();
        sealed
    }
}

impl ToSeal {
    /// The length of the value's `ENC[…]` text.
    fn sealed_len(&self) -> usize {
        value::sealed_len(self.plaintext.len(), self.type_name)
    }
}

/// Values a [`SealQueue`] sealed, in queue order: their `ENC[…]` texts back to back, in one
/// buffer for each thread that sealed some (a large batch allocates a few buffers, not one
/// for each value).
#[derive(Default)]
pub struct SealedValues {
    parts: Vec<SealedPart>,
}

#[derive(Default)]
struct SealedPart {
    text: String,
    /// Where each value's text ends.
    ends: Vec<usize>,
}

impl SealedValues {
    /// The sealed texts, in queue order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().flat_map(|part| {
            let mut start = 0;
            part.ends.iter().map(move |&end| {
                let text = part.text.get(start..end).unwrap_or_default();
                start = end;
                text
            })
        })
    }

    /// The length of all the texts together.
    pub fn text_len(&self) -> usize {
        self.parts.iter().map(|part| part.text.len()).sum()
    }
}

struct ToOpen<'s> {
    text: &'s str,
    aad: Range<usize>,
}

/// `ENC[…]` texts waiting to be opened, borrowed from the input.
#[derive(Default)]
pub struct OpenQueue<'s> {
    aads: Vec<u8>,
    items: Vec<ToOpen<'s>>,
}

impl<'s> OpenQueue<'s> {
    pub fn push(&mut self, text: &'s str, aad: &[u8]) {
        let start = self.aads.len();
        self.aads.extend_from_slice(aad);
        self.items.push(ToOpen {
            text,
            aad: start..self.aads.len(),
        });
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Opens everything queued into typed values, in queue order, and empties the queue. On a
    /// failure: the queue position of the first value that failed, and why (the caller, who
    /// knows where that value stands, names its path with [`CryptError::at_path`]).
    pub fn open_all(&mut self, cipher: &Cipher) -> Result<OpenedValues, (usize, CryptError)> {
        let aads = &self.aads;
        let mut slots: Vec<(usize, &ToOpen, Value)> = self
            .items
            .iter()
            .enumerate()
            .map(|(n, item)| (n, item, Value::Null))
            .collect();
        let aead = &cipher.aead;
        run_split(&mut slots, |chunk| {
            for (n, item, out) in chunk {
                // Opened from the borrowed text: the plaintext gets a buffer of its own size,
                // and the text is not copied first.
                *out = open_sealed_str(aead, item.text, &aads[item.aad.clone()], |_, _, _| {})
                    .map_err(|failure| (*n, failure.at(String::new())))?;
            }
            Ok(())
        })?;
        let opened = OpenedValues(slots.into_iter().map(|(_, _, value)| value).collect());
        self.aads.clear();
        self.items.clear();
        Ok(opened)
    }

    /// Opens a sealed comment where a walk stands, as the tree walk does (see
    /// [`super::open_comment`]), with a shared cipher: a streaming pass remembers no IVs.
    /// (Comments are opened one by one, in walk order, because the comment selectors read the
    /// plaintext of the comments before.)
    pub fn open_comment(cipher: &Cipher, at: &Cursor, text: &str) -> Option<Zeroizing<String>> {
        super::open_comment(&cipher.aead, at, text, |_, _, _, _| {})
    }
}
