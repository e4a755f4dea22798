//! Where a walk over a document stands, and what that decides for the leaf or comment there.
//!
//! The tree walk in this module and the streaming passes in [`crate::stream`] visit a document
//! in the same order; both keep their place in a [`Cursor`], so the key path (the AAD), the
//! selectors' answer and the MAC are computed by one piece of code, whichever drives it.

use sha2::{Digest, Sha256, Sha512};

use super::{display_path, Rules};
use crate::tree::PathStep;

/// What the rules say of the leaf at a cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafPlan {
    /// The value is sealed (encrypting) or must be sealed (decrypting).
    pub encrypted: bool,
    /// Its canonical plaintext goes into the MAC.
    pub hashed: bool,
}

pub struct Cursor<'r> {
    rules: &'r Rules,
    /// Mapping keys from the root (the first `depth` entries; the rest are spare buffers, so
    /// that a walk does not allocate per key); joined with ':' they are the AAD.
    keys: Vec<String>,
    depth: usize,
    /// The AAD of the current path: each key followed by ':'.
    aad: Vec<u8>,
    /// Where each key's part of `aad` starts.
    aad_marks: Vec<usize>,
    /// The same path with list indexes, for error messages; `None` stands for the next key.
    steps: Vec<Option<usize>>,
    /// The comments seen so far at each open collection (the comment selectors read them).
    comments: Vec<Vec<String>>,
    mac: Sha512,
}

impl<'r> Cursor<'r> {
    pub fn new(rules: &'r Rules) -> Self {
        let mut mac = Sha512::new();
        if rules.mac_only_encrypted {
            mac.update(Sha256::digest(b"sops"));
        }
        Cursor {
            rules,
            keys: Vec::new(),
            depth: 0,
            aad: Vec::new(),
            aad_marks: Vec::new(),
            steps: Vec::new(),
            comments: Vec::new(),
            mac,
        }
    }

    pub fn rules(&self) -> &'r Rules {
        self.rules
    }

    /// The mapping keys from the root to here.
    pub fn keys(&self) -> &[String] {
        &self.keys[..self.depth]
    }

    /// The first `depth` keys of the path (the enclosing paths, for comments sops misfiles).
    pub(super) fn keys_to(&self, depth: usize) -> &[String] {
        &self.keys[..depth.min(self.depth)]
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Steps into the value of a mapping key.
    pub fn push_key(&mut self, key: &str) {
        if let Some(spare) = self.keys.get_mut(self.depth) {
            spare.clear();
            spare.push_str(key);
        } else {
            self.keys.push(key.to_string());
        }
        self.depth += 1;
        self.aad_marks.push(self.aad.len());
        self.aad.extend_from_slice(key.as_bytes());
        self.aad.push(b':');
        self.steps.push(None);
    }

    /// Steps out of the value entered by [`Cursor::push_key`].
    pub fn pop_key(&mut self) {
        self.depth -= 1;
        if let Some(mark) = self.aad_marks.pop() {
            self.aad.truncate(mark);
        }
        self.steps.pop();
    }

    /// Steps into a list element (indexes only name paths in messages; they are not in the AAD).
    pub fn push_index(&mut self, index: usize) {
        self.steps.push(Some(index));
    }

    pub fn pop_index(&mut self) {
        self.steps.pop();
    }

    /// A mapping or list opens: its comments are counted apart from the enclosing ones.
    pub fn open_collection(&mut self) {
        self.comments.push(Vec::new());
    }

    pub fn close_collection(&mut self) {
        self.comments.pop();
    }

    /// A pair or list element ended: comments before it no longer select what follows (sops
    /// forgets them at each item).
    pub fn end_item(&mut self) {
        if let Some(level) = self.comments.last_mut() {
            level.clear();
        }
    }

    /// Records a comment (its plaintext) at the current level and says whether it is encrypted.
    pub fn comment(&mut self, text: &str) -> bool {
        self.comments
            .last_mut()
            .expect("comments live inside a map or list")
            .push(text.to_string());
        self.rules.should_encrypt(self.keys(), &self.comments, true)
    }

    /// Replaces the text of the comment recorded last (by [`Cursor::comment`]) with its
    /// plaintext, once it is opened.
    pub fn opened_comment(&mut self, plaintext: &str) {
        if let Some(last) = self.comments.last_mut().and_then(|l| l.last_mut()) {
            plaintext.clone_into(last);
        }
    }

    /// What the rules say of a (non-null) leaf here.
    pub fn leaf(&self) -> LeafPlan {
        let encrypted = self
            .rules
            .should_encrypt(self.keys(), &self.comments, false);
        LeafPlan {
            encrypted,
            hashed: encrypted || !self.rules.mac_only_encrypted,
        }
    }

    /// The AAD of the current path: each key followed by ':', or `:` at the top level.
    pub fn aad(&self) -> &[u8] {
        if self.depth == 0 {
            b":"
        } else {
            &self.aad
        }
    }

    /// Feeds a value's canonical plaintext into the MAC (in walk order).
    pub fn hash(&mut self, plaintext: &[u8]) {
        self.mac.update(plaintext);
    }

    /// The current path in `--extract` syntax, for messages.
    pub fn path(&self) -> String {
        let mut keys = self.keys().iter();
        let steps: Vec<PathStep> = self
            .steps
            .iter()
            .map(|step| match step {
                Some(index) => PathStep::Index(*index),
                None => PathStep::Key(keys.next().cloned().unwrap_or_default()),
            })
            .collect();
        display_path(&steps)
    }

    /// The MAC over every value hashed, as uppercase hex.
    pub fn mac_hex(self) -> String {
        let digest = self.mac.finalize();
        let mut mac = String::with_capacity(128);
        for byte in digest {
            mac.push_str(&format!("{byte:02X}"));
        }
        mac
    }
}
