//! Sealing and opening many values on several threads.
//!
//! The walk in `crypt` decides for each leaf what happens to it and keeps the MAC in order; with
//! a batch it only records the leaves whose AES-GCM work can run apart (each with its AAD), and
//! that work is then split over the machine's cores. A large file spends most of its crypto
//! time here, and the values are independent: only the MAC is a chain, and it stays in the walk's
//! order.

use std::ops::Range;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::value::{self, SopsGcm, IV_LEN};
use super::{open_sealed, with_canonical_bytes, LeafFailure};
use crate::tree::Value;

/// Below this many values a batch runs on the calling thread: a thread costs more than it saves.
const VALUES_PER_THREAD: usize = 2048;

/// Threads at most, whatever the machine has: beyond this the walk and the writer dominate.
const MAX_THREADS: usize = 8;

/// A leaf recorded by the walk.
pub(super) enum Pending<'t> {
    /// A value to seal (encrypting) or an `ENC[…]` value to open (decrypting); `ordinal` is its
    /// leaf number in walk order, to name its path if it fails.
    Crypt {
        value: &'t mut Value,
        aad: Range<usize>,
        ordinal: usize,
    },
    /// Decrypting only: a value that stays as it is but is hashed in its turn.
    Plain(&'t Value),
}

#[derive(Default)]
pub(super) struct Batch<'t> {
    items: Vec<Pending<'t>>,
    /// Every recorded AAD, back to back.
    aads: Vec<u8>,
}

impl<'t> Batch<'t> {
    pub fn push_crypt(&mut self, value: &'t mut Value, aad: &[u8], ordinal: usize) {
        let start = self.aads.len();
        self.aads.extend_from_slice(aad);
        self.items.push(Pending::Crypt {
            value,
            aad: start..self.aads.len(),
            ordinal,
        });
    }

    pub fn push_plain(&mut self, value: &'t Value) {
        self.items.push(Pending::Plain(value));
    }

    /// Seals every recorded value in place, each thread drawing IVs from its own ChaCha20
    /// stream seeded by the operating system.
    pub fn seal_all(&mut self, aead: &SopsGcm) {
        let aads = &self.aads;
        let sealed: Result<(), ()> = run_split(&mut self.items, |chunk| {
            let mut rng = ChaCha20Rng::from_rng(rand::rngs::OsRng)
                .expect("the operating system's random number generator is unavailable");
            for item in chunk {
                if let Pending::Crypt { value, aad, .. } = item {
                    let mut iv = [0u8; IV_LEN];
                    rng.fill_bytes(&mut iv);
                    let type_name = value.type_name();
                    let sealed = with_canonical_bytes(value, |plaintext| {
                        value::seal(aead, &iv, plaintext, &aads[aad.clone()], type_name)
                    });
                    **value = Value::Str(sealed);
                }
            }
            Ok(())
        });
        debug_assert!(sealed.is_ok(), "sealing cannot fail");
    }

    /// Opens every recorded value in place; on failure, the first failing leaf in walk order.
    pub fn open_all(&mut self, aead: &SopsGcm) -> Result<(), (usize, LeafFailure)> {
        let aads = &self.aads;
        run_split(&mut self.items, |chunk| {
            for item in chunk {
                if let Pending::Crypt {
                    value,
                    aad,
                    ordinal,
                } = item
                {
                    if let Value::Str(text) = value {
                        let text = std::mem::take(text);
                        **value = open_sealed(aead, text, &aads[aad.clone()], |_, _, _| {})
                            .map_err(|failure| (*ordinal, failure))?;
                    }
                }
            }
            Ok(())
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Forgets every recorded leaf, keeping the buffers.
    pub fn clear(&mut self) {
        self.items.clear();
        self.aads.clear();
    }

    /// Every recorded value in walk order, as it stands now.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.items.iter().map(|item| match item {
            Pending::Crypt { value, .. } => &**value,
            Pending::Plain(value) => *value,
        })
    }
}

/// The cores this process may use, asked once: the answer reads cgroup files each time.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How many threads share a batch of `items` values.
pub(super) fn threads_for(items: usize) -> usize {
    (items / VALUES_PER_THREAD).clamp(1, cores().min(MAX_THREADS))
}

/// Runs `work` over `items` in contiguous chunks, one per thread (the first on the calling
/// thread, which would otherwise only wait); the first failure in item order wins (chunks are
/// in order, and each stops at its first failure).
pub(super) fn run_split<T: Send, E: Send>(
    items: &mut [T],
    work: impl Fn(&mut [T]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let threads = threads_for(items.len());
    if threads == 1 {
        return work(items);
    }
    let chunk = items.len().div_ceil(threads);
    let mut parts: Vec<(&mut [T], Result<(), E>)> =
        items.chunks_mut(chunk).map(|part| (part, Ok(()))).collect();
    run_parts(&mut parts, |(part, outcome)| *outcome = work(part));
    parts
        .into_iter()
        .map(|(_, outcome)| outcome)
        .find(Result::is_err)
        .unwrap_or(Ok(()))
}

/// Runs `work` on every part, each on its own thread but the first, which runs on the
/// calling thread.
pub(super) fn run_parts<P: Send>(parts: &mut [P], work: impl Fn(&mut P) + Sync) {
    let Some((first, rest)) = parts.split_first_mut() else {
        return;
    };
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .iter_mut()
            .map(|part| scope.spawn(move || work(part)))
            .collect();
        work(first);
        for handle in handles {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
    });
}
