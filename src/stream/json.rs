//! The streaming pass for JSON (see [`super`]).
//!
//! The input is walked as a sequence of events ([`scan`]), read by the store's own reader
//! functions; a [`Cursor`] follows the walk exactly as the tree walk would over the tree the
//! store builds (JSON has no comments, so only keys, indexes and leaves move it), and the
//! output is written with the store's own [`Writer`] pieces, so the text of every key, string,
//! number and indentation is the one the tree path writes.
//!
//! Values to seal or open cannot be written where they stand until their batch has run. The
//! output since the last batch is gathered without them, with the offsets where each one goes
//! (`holes`); once the batch has run, the two are merged in order and written out. A batch
//! runs on other threads while the walk reads the next one, so reading, writing and the
//! crypto overlap. Decrypting, the MAC must also take every value in walk order, so a batch's
//! values go into it from a log once they are opened.

mod scan;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::Scope;

use zeroize::{Zeroize, Zeroizing};

use super::{Opening, Plain, Sealing, QUEUE_SIZE};
use crate::crypt::value::{is_sealed, type_name_of};
use crate::crypt::{push_wiped, Cipher, Cursor, OpenQueue, SealQueue};
use crate::store::json::read::Reader;
use crate::store::json::write::{WriteError, Writer, SPILL_AT};
use crate::store::json::{FORMAT, METADATA_KEY};
use crate::store::{EmitError, StoreError};
use crate::tree::{Node, Value};
use scan::{Flow, Leaf, Text, Visit};

/// Output gathered between two batches after which what is queued is sealed or opened anyway:
/// a file whose values are mostly left clear would otherwise gather all of its text.
const TEXT_LIMIT: usize = 1 << 20;

/// A plain JSON file read through (see [`super::Checked`]). The check learns nothing the
/// encryption needs beyond "valid": reading again costs less than keeping offsets would.
pub struct Checked<'a> {
    input: &'a [u8],
}

/// The pass leaves this input to the tree path (which reports whatever is wrong with it).
struct Decline;

impl From<StoreError> for Decline {
    fn from(_: StoreError) -> Self {
        Decline
    }
}

pub(super) fn check<'a>(input: &'a [u8], release: &dyn Fn(usize)) -> Option<Checked<'a>> {
    /// Reads the file through; a top-level `sops` member means it is already encrypted.
    struct Check;
    impl Visit<'_> for Check {
        type Error = Decline;
        fn open(&mut self, _: bool) -> Result<(), Decline> {
            Ok(())
        }
        fn key(&mut self, key: &str, _: bool, _: usize) -> Result<Flow, Decline> {
            // Only top-level keys are reported: every value is skipped.
            if key == METADATA_KEY {
                return Err(Decline);
            }
            Ok(Flow::Skip)
        }
        fn element(&mut self, _: usize, _: usize) -> Result<(), Decline> {
            Ok(())
        }
        fn leaf(&mut self, _: Leaf<'_, '_>, _: bool) -> Result<(), Decline> {
            Ok(())
        }
        fn end_item(&mut self, _: bool) {}
        fn close(&mut self, _: bool, _: usize, _: usize) -> Result<(), Decline> {
            Ok(())
        }
    }
    let mut strings = Zeroizing::new(String::new());
    scan::walk(input, &mut Check, &mut strings, release).ok()?;
    Some(Checked { input })
}

impl Checked<'_> {
    pub(super) fn encrypt(
        self,
        sealing: Sealing,
        sink: &mut dyn std::io::Write,
    ) -> Result<(), EmitError> {
        let Sealing {
            cipher,
            rules,
            indent,
            metadata,
            release,
        } = sealing;
        let input = self.input;
        std::thread::scope(|scope| {
            let first = SealJob {
                batch: SealBatch::default(),
                cipher,
                mac: Cursor::new(rules),
            };
            let mut pass = Seal {
                at: Cursor::new(rules),
                text: Writer::new(indent.json, TEXT_LIMIT + SPILL_AT),
                reading: SealBatch::default(),
                worker: Worker::start(scope, first),
                sink,
                number: Zeroizing::new(Vec::with_capacity(64)),
                members: 0,
            };
            let mut strings = Zeroizing::new(String::new());
            scan::walk(input, &mut pass, &mut strings, release)?;
            pass.hand_over()?;
            let job = pass.finish()?;
            let map = metadata(job.cipher, job.mac.mac_hex());
            // The `sops` member last, as `Writer::object` writes the metadata of `emit_to`.
            let mut out = Writer::new(indent.json, SPILL_AT);
            out.member_key(METADATA_KEY, pass.members == 0, 0);
            out.object(&map, None, 1).map_err(emit_error)?;
            out.newline(0);
            out.out.extend_from_slice(b"}\n");
            pass.sink.write_all(&out.out).map_err(EmitError::Write)
        })
    }
}

fn emit_error(err: WriteError) -> EmitError {
    EmitError::Store(StoreError::Emit {
        format: FORMAT,
        message: err.describe(),
    })
}

/// A batch and what it needs to run (on the worker).
trait Job: Send {
    fn run(self) -> Self;
}

/// The one thread a pass's batches run on, one at a time, while the walk reads the next (a
/// thread for each batch would cost more to start than some batches take). The job goes to it
/// and comes back; in between, the pass holds it.
struct Worker<J> {
    to_worker: SyncSender<J>,
    from_worker: Receiver<J>,
    /// The job, between two batches; `None` while it is on the worker.
    idle: Option<J>,
}

impl<J: Job> Worker<J> {
    fn start<'s>(scope: &'s Scope<'s, '_>, first: J) -> Self
    where
        J: 's,
    {
        let (to_worker, jobs) = sync_channel::<J>(1);
        let (done, from_worker) = sync_channel::<J>(1);
        // The thread ends when the pass drops its end of the channel; should a job panic, the
        // pass finds the worker gone, stops, and the scope then goes on with the panic.
        scope.spawn(move || {
            for job in jobs {
                if done.send(job.run()).is_err() {
                    break;
                }
            }
        });
        Worker {
            to_worker,
            from_worker,
            idle: Some(first),
        }
    }

    /// The job, back from the worker once its batch has run; `None` when the worker is gone.
    fn take(&mut self) -> Option<J> {
        match self.idle.take() {
            Some(job) => Some(job),
            None => self.from_worker.recv().ok(),
        }
    }

    /// Sends a job to run; `false` when the worker is gone.
    fn send(&mut self, job: J) -> bool {
        self.to_worker.send(job).is_ok()
    }
}

/// What the encrypting walk gathers of a batch, for its thread.
#[derive(Default)]
struct SealBatch {
    queue: SealQueue,
    /// The output without the values queued.
    text: Vec<u8>,
    /// Where each queued value goes in `text`, in queue order.
    holes: Vec<usize>,
    /// Every plaintext the MAC takes, in walk order, back to back (so one update takes them).
    hashed: Zeroizing<Vec<u8>>,
    /// The output with the sealed values in place, once the batch has run.
    merged: Vec<u8>,
}

impl SealBatch {
    fn clear(&mut self) {
        self.text.clear();
        self.holes.clear();
        self.hashed.clear();
        self.merged.clear();
    }
}

/// A batch and what its thread needs: the cipher, and the cursor whose MAC takes the values
/// (batches run one after the other, so it takes them in walk order).
struct SealJob<'r, 'c> {
    batch: SealBatch,
    cipher: &'c mut Cipher,
    mac: Cursor<'r>,
}

impl Job for SealJob<'_, '_> {
    /// Hashes, seals (on several threads) and merges the batch.
    fn run(mut self) -> Self {
        let batch = &mut self.batch;
        self.mac.hash(&batch.hashed);
        let sealed = batch.queue.seal_all(self.cipher);
        let size = sealed.iter().fold(batch.text.len(), |n, s| n + s.len() + 2);
        batch.merged.reserve(size);
        let mut from = 0;
        for (&hole, value) in batch.holes.iter().zip(&sealed) {
            let piece = batch.text.get(from..hole).unwrap_or_default();
            batch.merged.extend_from_slice(piece);
            write_sealed(&mut batch.merged, value);
            from = hole;
        }
        let rest = batch.text.get(from..).unwrap_or_default();
        batch.merged.extend_from_slice(rest);
        self
    }
}

/// Writes a sealed value as `Writer::string` does. Its text is the `ENC[…]` prefix, base64,
/// `,:]` and a type name, none of which Go's encoder escapes, so it is copied as it is (one
/// vectorised check, where the writer's escaping would look at every byte in turn); anything
/// else goes through the writer.
fn write_sealed(out: &mut Vec<u8>, sealed: &str) {
    let escapes = sealed.bytes().fold(false, |seen, b| {
        seen | !(0x20..0x80).contains(&b) | matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&')
    });
    if escapes {
        let mut writer = Writer::new(None, 0);
        writer.out = std::mem::take(out);
        writer.string(sealed.as_bytes());
        *out = writer.out;
    } else {
        out.push(b'"');
        out.extend_from_slice(sealed.as_bytes());
        out.push(b'"');
    }
}

/// The encrypting walk. A full batch is hashed, sealed and merged on the worker while the walk
/// reads the next one; its output is written once it is back, before the next batch is sent,
/// so the batches (the MAC, and the IVs of a counter cipher) keep their order.
struct Seal<'r, 'c, 'w> {
    at: Cursor<'r>,
    /// The output of the batch being read, without its values to seal.
    text: Writer<'static>,
    /// The rest of the batch being read.
    reading: SealBatch,
    worker: Worker<SealJob<'r, 'c>>,
    sink: &'w mut dyn std::io::Write,
    /// A number's or boolean's canonical text (its plaintext).
    number: Zeroizing<Vec<u8>>,
    /// Top-level members, once the top-level object has closed.
    members: usize,
}

impl<'r, 'c> Seal<'r, 'c, '_> {
    fn maybe_hand_over(&mut self) -> Result<(), EmitError> {
        if self.reading.queue.len() >= QUEUE_SIZE || self.text.out.len() >= TEXT_LIMIT {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Writes the output of the batch on its thread, then sends it the batch read.
    fn hand_over(&mut self) -> Result<(), EmitError> {
        let mut job = self.finish()?;
        std::mem::swap(&mut job.batch, &mut self.reading);
        std::mem::swap(&mut job.batch.text, &mut self.text.out);
        if !self.worker.send(job) {
            return Err(lost_cipher());
        }
        Ok(())
    }

    /// Waits for the batch on the worker and writes its output; hands back what the next
    /// batch needs.
    fn finish(&mut self) -> Result<SealJob<'r, 'c>, EmitError> {
        let mut job = self.worker.take().ok_or_else(lost_cipher)?;
        let written = self.sink.write_all(&job.batch.merged);
        job.batch.clear();
        written.map_err(EmitError::Write)?;
        Ok(job)
    }
}

/// The worker hands every job back (with the cipher) unless a batch panicked, and then the
/// panic goes on; this error is never seen, but it is not a panic here.
fn lost_cipher() -> EmitError {
    EmitError::Store(StoreError::Emit {
        format: FORMAT,
        message: "the cipher was not handed back by a batch".into(),
    })
}

impl<'a> Visit<'a> for Seal<'_, '_, '_> {
    type Error = EmitError;

    fn open(&mut self, object: bool) -> Result<(), EmitError> {
        self.text.out.push(if object { b'{' } else { b'[' });
        self.at.open_collection();
        Ok(())
    }

    fn key(&mut self, key: &str, first: bool, depth: usize) -> Result<Flow, EmitError> {
        self.text.member_key(key, first, depth);
        self.at.push_key(key);
        Ok(Flow::Enter)
    }

    fn element(&mut self, index: usize, depth: usize) -> Result<(), EmitError> {
        if index > 0 {
            self.text.out.push(b',');
        }
        self.text.newline(depth + 1);
        self.at.push_index(index);
        Ok(())
    }

    fn leaf(&mut self, leaf: Leaf<'a, '_>, _: bool) -> Result<(), EmitError> {
        // As `Walk::leaf`: a null is neither hashed nor sealed, an empty string is hashed but
        // never sealed.
        let value = match leaf {
            Leaf::Null => return self.text.value(&Value::Null).map_err(emit_error),
            Leaf::Str(text) => {
                let text = text.as_str();
                let plan = self.at.leaf();
                if plan.hashed {
                    push_wiped(&mut self.reading.hashed, text.as_bytes());
                }
                if plan.encrypted && !text.is_empty() {
                    self.queue(text.as_bytes(), "str");
                } else {
                    self.text.string(text.as_bytes());
                }
                return self.maybe_hand_over();
            }
            Leaf::Bool(b) => Value::Bool(b),
            Leaf::Int(int) => Value::Int(int),
            Leaf::Float(float) => Value::Float(float),
        };
        let plan = self.at.leaf();
        let mut number = std::mem::take(&mut self.number);
        let plaintext = canonical(&value, &mut number);
        if plan.hashed {
            push_wiped(&mut self.reading.hashed, plaintext);
        }
        let written = if plan.encrypted {
            self.queue(plaintext, value.type_name());
            Ok(())
        } else {
            self.text.value(&value).map_err(emit_error)
        };
        self.number = number;
        written?;
        self.maybe_hand_over()
    }

    fn end_item(&mut self, object: bool) {
        // The order of `Walk::map` and `Walk::list`.
        if object {
            self.at.pop_key();
            self.at.end_item();
        } else {
            self.at.end_item();
            self.at.pop_index();
        }
    }

    fn close(&mut self, object: bool, count: usize, depth: usize) -> Result<(), EmitError> {
        self.at.close_collection();
        if depth == 0 {
            // The top level closes after the `sops` member, once the MAC is known.
            self.members = count;
            return Ok(());
        }
        if count > 0 {
            self.text.newline(depth);
        }
        self.text.out.push(if object { b'}' } else { b']' });
        Ok(())
    }
}

impl Seal<'_, '_, '_> {
    /// Queues a value's plaintext for sealing where the output stands.
    fn queue(&mut self, plaintext: &[u8], type_name: &'static str) {
        self.reading
            .queue
            .push_text(plaintext, self.at.aad(), type_name);
        self.reading.holes.push(self.text.out.len());
    }
}

/// A value's canonical plaintext (`Value::canonical_bytes`, what is sealed and hashed): a
/// string's own bytes, a number's or boolean's text written into `buffer` without allocating.
fn canonical<'v>(value: &'v Value, buffer: &'v mut Zeroizing<Vec<u8>>) -> &'v [u8] {
    use std::io::Write;
    buffer.clear();
    match value {
        Value::Str(text) => return text.as_bytes(),
        Value::Bytes(bytes) => return bytes,
        Value::Bool(true) => buffer.extend_from_slice(b"True"),
        Value::Bool(false) => buffer.extend_from_slice(b"False"),
        // Writing into a vector cannot fail.
        Value::Int(int) => {
            let _ = write!(&mut **buffer, "{int}");
        }
        // `format_float` of a finite float.
        Value::Float(float) if float.is_finite() => {
            let _ = write!(&mut **buffer, "{float}");
        }
        other => buffer.extend_from_slice(&Zeroizing::new(other.canonical_bytes())),
    }
    buffer.as_slice()
}

pub(super) fn metadata(input: &[u8]) -> Option<Node> {
    let span = metadata_from_end(input).or_else(|| metadata_by_walk(input))?;
    metadata_value(input, span)
}

/// The node of the `sops` member's value at `span`, as the store's loader builds it.
fn metadata_value(input: &[u8], span: Range<usize>) -> Option<Node> {
    let mut reader = Reader {
        input: input.get(..span.end)?,
        pos: span.start,
    };
    reader.value().ok()
}

/// Where the value of the top-level `sops` member is, found from the end of the file without
/// reading the rest: sops and veil write it as the last member. `None` when the file does not
/// end that way (the caller then walks it).
///
/// The answer is the walk's whenever the file is valid JSON (the decrypting pass, which reads
/// all of it, declines when it is not, and checks this answer against its own). The `"` found
/// is preceded by whitespace, `{` or `,`, so it is not escaped; an unescaped quote either opens
/// a string or closes one, and a closing quote followed by `sops"` is not JSON: so it opens the
/// key `sops`. Its value is followed only by the file's last `}`, which closes the top-level
/// object: the member is a top-level one, and the last. A later `"sops":` inside that value
/// (a nested key) stops the search, and the walk decides.
fn metadata_from_end(input: &[u8]) -> Option<Range<usize>> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let close = input.iter().rposition(|b| !is_space(b))?;
    if input.get(close) != Some(&b'}') {
        return None;
    }
    let body = input.get(..close)?;
    let key = format!("\"{METADATA_KEY}\"");
    for at in memchr::memmem::rfind_iter(body, key.as_bytes()) {
        let opens = at
            .checked_sub(1)
            .and_then(|before| body.get(before))
            .is_some_and(|b| is_space(b) || matches!(b, b'{' | b','));
        let mut reader = Reader {
            input: body,
            pos: at + key.len(),
        };
        reader.skip_whitespace();
        if !opens || body.get(reader.pos) != Some(&b':') {
            // A string `"sops"` that is not a key (a Vault engine path, say).
            continue;
        }
        reader.pos += 1;
        reader.skip_whitespace();
        let start = reader.pos;
        reader.value().ok()?;
        let end = reader.pos;
        reader.skip_whitespace();
        return (reader.pos == body.len()).then_some(start..end);
    }
    None
}

/// Where the value of the one top-level `sops` member is, by reading the whole file through.
fn metadata_by_walk(input: &[u8]) -> Option<Range<usize>> {
    /// Reads the file through, noting where the value of its one top-level `sops` member is.
    #[derive(Default)]
    struct Find {
        seen: usize,
        in_sops: bool,
        found: Option<Range<usize>>,
    }
    impl Visit<'_> for Find {
        type Error = Decline;
        fn open(&mut self, _: bool) -> Result<(), Decline> {
            Ok(())
        }
        fn key(&mut self, key: &str, _: bool, _: usize) -> Result<Flow, Decline> {
            // Only top-level keys are reported: every value is skipped.
            self.in_sops = key == METADATA_KEY;
            if self.in_sops {
                self.seen += 1;
                // Two are refused by the store.
                if self.seen > 1 {
                    return Err(Decline);
                }
            }
            Ok(Flow::Skip)
        }
        fn skipped(&mut self, value: Range<usize>) -> Result<(), Decline> {
            if self.in_sops {
                self.found = Some(value);
            }
            Ok(())
        }
        fn element(&mut self, _: usize, _: usize) -> Result<(), Decline> {
            Ok(())
        }
        fn leaf(&mut self, _: Leaf<'_, '_>, _: bool) -> Result<(), Decline> {
            Ok(())
        }
        fn end_item(&mut self, _: bool) {}
        fn close(&mut self, _: bool, _: usize, _: usize) -> Result<(), Decline> {
            Ok(())
        }
    }
    let mut find = Find::default();
    let mut strings = Zeroizing::new(String::new());
    scan::walk(input, &mut find, &mut strings, &|_| {}).ok()?;
    find.found
}

pub(super) fn decrypt(input: &[u8], opening: Opening) -> Option<Plain> {
    let Opening {
        cipher,
        rules,
        indent,
        release,
    } = opening;
    std::thread::scope(|scope| {
        let first = OpenJob {
            batch: OpenBatch::default(),
            queue: OpenQueue::default(),
            cipher,
            mac: Cursor::new(rules),
            indent: indent.json,
            number: Zeroizing::new(Vec::with_capacity(64)),
            failed: false,
        };
        let mut pass = Unseal {
            at: Cursor::new(rules),
            input,
            queue: OpenQueue::default(),
            text: Writer::new(indent.json, TEXT_LIMIT + SPILL_AT),
            reading: OpenBatch::default(),
            worker: Worker::start(scope, first),
            out: Wiped(Vec::with_capacity(estimated_plaintext(input))),
            number: Zeroizing::new(Vec::with_capacity(64)),
            sops: 0,
            sops_at: None,
        };
        let mut strings = Zeroizing::new(String::new());
        scan::walk(input, &mut pass, &mut strings, release).ok()?;
        // The tree path would not have come this far without the metadata, and the caller
        // read it where this pass found it (`metadata`).
        if pass.sops != 1 {
            return None;
        }
        if metadata_from_end(input).is_some_and(|found| pass.sops_at.as_ref() != Some(&found)) {
            return None;
        }
        pass.hand_over().ok()?;
        let job = pass.finish().ok()?;
        Some(Plain {
            text: pass.out.take(),
            mac: job.mac.mac_hex(),
        })
    })
}

/// Makes room for `more` bytes in a buffer of plaintext, so that writing into it never grows
/// it (growing would leave a copy behind): a larger buffer takes the text and the old one is
/// wiped. `expected` is the size the text is expected to reach, when known. Past its length
/// such a buffer never holds text (it is wiped before it is cleared), so wiping the written
/// part wipes all it ever held.
fn room_wiped(buffer: &mut Vec<u8>, more: usize, expected: usize) {
    if buffer.capacity() - buffer.len() >= more {
        return;
    }
    let needed = buffer.len().saturating_add(more);
    let capacity = if expected > needed {
        expected
    } else {
        needed.max(buffer.capacity().saturating_add(buffer.capacity() / 2))
    };
    let mut larger = Vec::with_capacity(capacity);
    larger.extend_from_slice(buffer);
    buffer.as_mut_slice().zeroize();
    *buffer = larger;
}

/// The plaintext file: it grows only through [`room_wiped`], and is wiped when dropped.
struct Wiped(Vec<u8>);

impl Wiped {
    /// The text written, in a buffer the size of it (a larger one would be touched whole when
    /// it is wiped).
    fn take(&mut self) -> Zeroizing<Vec<u8>> {
        let buffer = &mut self.0;
        if buffer.capacity() - buffer.len() <= buffer.len() / 8 + SPILL_AT {
            return Zeroizing::new(std::mem::take(buffer));
        }
        let exact = Zeroizing::new(buffer.clone());
        buffer.as_mut_slice().zeroize();
        *buffer = Vec::new();
        exact
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

/// The most a string of `len` bytes takes once escaped (`\u00XX` for one byte), quotes included.
fn escaped(len: usize) -> usize {
    len.saturating_mul(6).saturating_add(2)
}

/// Room for a number, a boolean, a null or a time as the writer writes them.
const SCALAR_ROOM: usize = 64;

/// The size of the plaintext file, told from the encrypted one: each `ENC[…]` value gives way
/// to about three quarters of its data field. Only the first megabyte is looked at (and the
/// rest taken to be like it); should the guess be short, the buffer grows to the size
/// [`expected_size`] tells once a batch is written. The output buffer gets this capacity, so
/// that it seldom moves while it grows nor keeps much unused room.
fn estimated_plaintext(input: &[u8]) -> usize {
    const PREFIX: &[u8] = b"ENC[AES256_GCM,data:";
    const SAMPLE: usize = 1 << 20;
    let sample = input.get(..SAMPLE).unwrap_or(input);
    let mut size = sample.len();
    for at in memchr::memmem::find_iter(sample, PREFIX) {
        let data = sample.get(at + PREFIX.len()..).unwrap_or_default();
        let (Some(comma), Some(close)) = (memchr::memchr(b',', data), memchr::memchr(b']', data))
        else {
            continue;
        };
        let sealed = PREFIX.len() + close + 1;
        size = size.saturating_sub(sealed) + comma * 3 / 4;
    }
    let whole = size as u128 * input.len() as u128 / sample.len().max(1) as u128;
    let whole = usize::try_from(whole).unwrap_or(usize::MAX);
    whole.saturating_add(whole / 32).saturating_add(4096)
}

/// The size the plaintext file is expected to reach, told from the `written` bytes that the
/// first `consumed` bytes of the input gave, with a little to spare; 0 when unknown.
fn expected_size(written: usize, consumed: usize, input: usize) -> usize {
    if consumed == 0 || consumed > input {
        return 0;
    }
    let expected = written as u128 * input as u128 / consumed as u128;
    usize::try_from(expected + expected / 32).unwrap_or(usize::MAX)
}

/// A value the MAC takes, in walk order.
enum Hashed {
    /// The batch's next opened value.
    Opened,
    /// A value left clear: its canonical plaintext in the batch's `clear`.
    Clear(Range<usize>),
}

/// What the decrypting walk gathers of a batch besides the values to open.
#[derive(Default)]
struct OpenBatch {
    /// The output without the values to open: only what the encrypted file holds in clear
    /// (its structure, keys and the values left clear).
    text: Vec<u8>,
    /// Where each value to open goes in `text`, in queue order.
    holes: Vec<usize>,
    /// What the MAC takes, in walk order.
    log: Vec<Hashed>,
    clear: Vec<u8>,
    /// How far into the input its last value to open ends.
    consumed: usize,
    /// The output with the opened values in place, once the batch has run: plaintext, wiped
    /// before it is cleared and when dropped.
    merged: Vec<u8>,
}

impl OpenBatch {
    fn clear(&mut self) {
        self.text.clear();
        self.holes.clear();
        self.log.clear();
        self.clear.clear();
        self.consumed = 0;
        self.merged.as_mut_slice().zeroize();
        self.merged.clear();
    }
}

impl Drop for OpenBatch {
    fn drop(&mut self) {
        self.merged.as_mut_slice().zeroize();
    }
}

/// A batch and what its thread needs: the values to open, the cipher, and the cursor whose
/// MAC takes the values (batches run one after the other, so it takes them in walk order).
struct OpenJob<'a, 'r, 'c> {
    batch: OpenBatch,
    queue: OpenQueue<'a>,
    cipher: &'c Cipher,
    mac: Cursor<'r>,
    indent: Option<usize>,
    number: Zeroizing<Vec<u8>>,
    /// A value did not open, or cannot be written: the tree path names it.
    failed: bool,
}

impl Job for OpenJob<'_, '_, '_> {
    /// Opens the batch's values (on several threads), feeds the MAC in walk order and merges
    /// the output.
    fn run(mut self) -> Self {
        self.failed = self.open().is_err();
        self
    }
}

impl OpenJob<'_, '_, '_> {
    fn open(&mut self) -> Result<(), Decline> {
        let opened = self.queue.open_all(self.cipher).map_err(|_| Decline)?;
        let batch = &mut self.batch;
        let mut values = opened.iter();
        for entry in &batch.log {
            match entry {
                Hashed::Opened => {
                    let value = values.next().ok_or(Decline)?;
                    self.mac.hash(canonical(value, &mut self.number));
                }
                Hashed::Clear(range) => self
                    .mac
                    .hash(batch.clear.get(range.clone()).unwrap_or_default()),
            }
        }
        // The writer writes the opened values; room is made before each, so that it never
        // grows the buffer itself.
        let mut writer = Writer::new(self.indent, 0);
        writer.out = std::mem::take(&mut batch.merged);
        let mut from = 0;
        let mut written = Ok(());
        for (&hole, value) in batch.holes.iter().zip(opened.iter()) {
            let piece = batch.text.get(from..hole).unwrap_or_default();
            let most = match value {
                Value::Str(text) => escaped(text.len()),
                Value::Bytes(bytes) => escaped(bytes.len()),
                _ => SCALAR_ROOM,
            };
            room_wiped(&mut writer.out, piece.len().saturating_add(most), 0);
            writer.out.extend_from_slice(piece);
            // NaN and infinities cannot be written: the tree path reports them.
            written = writer.value(value).map_err(|_| Decline);
            if written.is_err() {
                break;
            }
            from = hole;
        }
        let rest = batch.text.get(from..).unwrap_or_default();
        room_wiped(&mut writer.out, rest.len(), 0);
        writer.out.extend_from_slice(rest);
        batch.merged = std::mem::take(&mut writer.out);
        written
    }
}

/// The decrypting walk: batches are opened (and hashed and merged) on the worker while the
/// walk reads on, as [`Seal`] seals them.
struct Unseal<'a, 'r, 'c> {
    at: Cursor<'r>,
    input: &'a [u8],
    /// The batch being read: the values to open, the output without them, the rest.
    queue: OpenQueue<'a>,
    text: Writer<'static>,
    reading: OpenBatch,
    worker: Worker<OpenJob<'a, 'r, 'c>>,
    /// The plaintext file, opened values included.
    out: Wiped,
    number: Zeroizing<Vec<u8>>,
    /// Top-level `sops` members seen, and where the value of the last one is.
    sops: usize,
    sops_at: Option<Range<usize>>,
}

impl<'a, 'r, 'c> Unseal<'a, 'r, 'c> {
    fn maybe_hand_over(&mut self) -> Result<(), Decline> {
        if self.queue.len() >= QUEUE_SIZE || self.text.out.len() >= TEXT_LIMIT {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Writes the output of the batch on its thread, then sends it the batch read.
    fn hand_over(&mut self) -> Result<(), Decline> {
        let mut job = self.finish()?;
        std::mem::swap(&mut job.batch, &mut self.reading);
        std::mem::swap(&mut job.batch.text, &mut self.text.out);
        std::mem::swap(&mut job.queue, &mut self.queue);
        if !self.worker.send(job) {
            return Err(Decline);
        }
        Ok(())
    }

    /// Waits for the batch on the worker and writes its output; hands back what the next
    /// batch needs.
    fn finish(&mut self) -> Result<OpenJob<'a, 'r, 'c>, Decline> {
        let mut job = self.worker.take().ok_or(Decline)?;
        if job.failed {
            return Err(Decline);
        }
        let merged = &job.batch.merged;
        let written = self.out.0.len().saturating_add(merged.len());
        let expected = expected_size(written, job.batch.consumed, self.input.len());
        room_wiped(&mut self.out.0, merged.len(), expected);
        self.out.0.extend_from_slice(merged);
        job.batch.clear();
        Ok(job)
    }

    /// Notes a value left clear for the MAC.
    fn hash_clear(&mut self, plaintext: &[u8]) {
        let batch = &mut self.reading;
        let start = batch.clear.len();
        batch.clear.extend_from_slice(plaintext);
        batch.log.push(Hashed::Clear(start..batch.clear.len()));
    }

    fn string(&mut self, text: Text<'a, '_>, in_list: bool) -> Result<(), Decline> {
        let plain = text.as_str();
        let sealed = is_sealed(plain);
        // The tree walk reads a sealed comment in a list (how sops writes comments there) as
        // a comment; JSON has none, and such a file is left to it.
        if sealed && in_list && type_name_of(plain) == Some("comment") {
            return Err(Decline);
        }
        let plan = self.at.leaf();
        if plan.encrypted && sealed {
            // A sealed value written with escapes is not the input's own text; unusual enough
            // to leave to the tree path.
            let Text::Input(sealed) = text else {
                return Err(Decline);
            };
            self.queue.push(sealed, self.at.aad());
            // The value is the input's own text: where it ends tells how far the walk is.
            let offset = (sealed.as_ptr() as usize).wrapping_sub(self.input.as_ptr() as usize);
            self.reading.consumed = offset.saturating_add(sealed.len());
            self.reading.holes.push(self.text.out.len());
            // An encrypted value is always hashed.
            self.reading.log.push(Hashed::Opened);
            return self.maybe_hand_over();
        }
        if plan.encrypted && !plain.is_empty() {
            // A value the rules say is encrypted, but is not: the tree path reports it.
            return Err(Decline);
        }
        if plan.hashed {
            self.hash_clear(plain.as_bytes());
        }
        self.text.string(plain.as_bytes());
        self.maybe_hand_over()
    }
}

impl<'a> Visit<'a> for Unseal<'a, '_, '_> {
    type Error = Decline;

    fn open(&mut self, object: bool) -> Result<(), Decline> {
        self.text.out.push(if object { b'{' } else { b'[' });
        self.at.open_collection();
        Ok(())
    }

    fn key(&mut self, key: &str, first: bool, depth: usize) -> Result<Flow, Decline> {
        if depth == 0 && key == METADATA_KEY {
            // The store takes the metadata out of the tree; a second one is an error there.
            self.sops += 1;
            return if self.sops > 1 {
                Err(Decline)
            } else {
                Ok(Flow::Skip)
            };
        }
        self.text.member_key(key, first, depth);
        self.at.push_key(key);
        Ok(Flow::Enter)
    }

    fn skipped(&mut self, value: Range<usize>) -> Result<(), Decline> {
        // Only the `sops` member is skipped.
        self.sops_at = Some(value);
        Ok(())
    }

    fn element(&mut self, index: usize, depth: usize) -> Result<(), Decline> {
        if index > 0 {
            self.text.out.push(b',');
        }
        self.text.newline(depth + 1);
        self.at.push_index(index);
        Ok(())
    }

    fn leaf(&mut self, leaf: Leaf<'a, '_>, in_list: bool) -> Result<(), Decline> {
        // As `Walk::leaf` and `Walk::open_leaf` decrypting.
        let value = match leaf {
            Leaf::Null => return self.text.value(&Value::Null).map_err(|_| Decline),
            Leaf::Str(text) => return self.string(text, in_list),
            Leaf::Bool(b) => Value::Bool(b),
            Leaf::Int(int) => Value::Int(int),
            Leaf::Float(float) => Value::Float(float),
        };
        let plan = self.at.leaf();
        if plan.encrypted {
            // A value the rules say is encrypted, but is not: the tree path reports it.
            return Err(Decline);
        }
        if plan.hashed {
            let mut number = std::mem::take(&mut self.number);
            self.hash_clear(canonical(&value, &mut number));
            self.number = number;
        }
        self.text.value(&value).map_err(|_| Decline)?;
        self.maybe_hand_over()
    }

    fn end_item(&mut self, object: bool) {
        // The order of `Walk::map` and `Walk::list`.
        if object {
            self.at.pop_key();
            self.at.end_item();
        } else {
            self.at.end_item();
            self.at.pop_index();
        }
    }

    fn close(&mut self, object: bool, count: usize, depth: usize) -> Result<(), Decline> {
        self.at.close_collection();
        if count > 0 {
            self.text.newline(depth);
        }
        self.text.out.push(if object { b'}' } else { b']' });
        if depth == 0 {
            self.text.out.push(b'\n');
        }
        Ok(())
    }
}
