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
//! (`holes`); once the batch has run, the two are merged in order and written out. Batches go
//! through two worker threads ([`Workers`]): one seals or opens a batch's values, on every
//! core, while the other finishes the batch before (the MAC, which takes the values in walk
//! order, and the merged output), and the walk reads the next; so reading, the crypto and
//! writing overlap. Decrypting, a batch's values go into the MAC from a log once opened.

mod scan;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use zeroize::{Zeroize, Zeroizing};

use super::{Opening, Plain, Sealing, QUEUE_SIZE};
use crate::crypt::value::{is_sealed, type_name_of};
use crate::crypt::{push_wiped, Cipher, Cursor, OpenQueue, OpenedValues, SealQueue, SealedValues};
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
            let sealing = SealValues { cipher };
            let finish = SealFinish {
                mac: Cursor::new(rules),
            };
            let mut pass = Seal {
                at: Cursor::new(rules),
                text: Writer::new(indent.json, TEXT_LIMIT + SPILL_AT),
                reading: SealBatch::default(),
                workers: Workers::start(scope, sealing, finish),
                sink,
                number: Zeroizing::new(Vec::with_capacity(64)),
                members: 0,
            };
            let mut strings = Zeroizing::new(String::new());
            scan::walk(input, &mut pass, &mut strings, release)?;
            let members = pass.members;
            let (sealing, finish, sink) = pass.finish()?;
            let map = metadata(sealing.cipher, finish.mac.mac_hex());
            // The `sops` member last, as `Writer::object` writes the metadata of `emit_to`.
            let mut out = Writer::new(indent.json, SPILL_AT);
            out.member_key(METADATA_KEY, members == 0, 0);
            out.object(&map, None, 1).map_err(emit_error)?;
            out.newline(0);
            out.out.extend_from_slice(b"}\n");
            sink.write_all(&out.out).map_err(EmitError::Write)
        })
    }
}

fn emit_error(err: WriteError) -> EmitError {
    EmitError::Store(StoreError::Emit {
        format: FORMAT,
        message: err.describe(),
    })
}

/// Batches a pass may have on its workers at once: one being opened or sealed while the one
/// before is finished (hashed and merged), and the walk reads the next. (A third in flight
/// measured no faster, and held 3 MiB more.)
const IN_FLIGHT: usize = 2;

/// What a worker does to each batch, in the order the walk sent them; it keeps what runs
/// through all of them (the cipher, the MAC).
trait Stage<B>: Send {
    fn run(&mut self, batch: &mut B);
}

/// The two threads a pass's batches run through, in order, while the walk reads the next
/// ones: the first seals or opens a batch's values (on every core), the second finishes it
/// (the MAC, which takes the values in walk order, and the output). Each is a single pass
/// over the whole file, so they overlap instead of taking turns. Batches come back to the
/// walk, finished, to be written and reused. (Threads for each batch would cost more to start
/// than some batches take.)
struct Workers<'s, B, C, F> {
    to_workers: Option<SyncSender<B>>,
    from_workers: Receiver<B>,
    /// Batches sent and not yet received back.
    in_flight: usize,
    crypt: ScopedJoinHandle<'s, C>,
    finish: ScopedJoinHandle<'s, F>,
}

impl<'s, B: Send + 's, C: Stage<B> + 's, F: Stage<B> + 's> Workers<'s, B, C, F> {
    fn start(scope: &'s Scope<'s, '_>, crypt: C, finish: F) -> Self {
        let (to_workers, batches) = sync_channel::<B>(IN_FLIGHT);
        let (to_finish, crypted) = sync_channel::<B>(IN_FLIGHT);
        let (done, from_workers) = sync_channel::<B>(IN_FLIGHT);
        // A thread ends when the one before it drops its end of the channel; should a batch
        // panic, the pass finds the workers gone, stops, and the panic goes on when they are
        // joined.
        Workers {
            to_workers: Some(to_workers),
            from_workers,
            in_flight: 0,
            crypt: scope.spawn(move || run_stage(crypt, batches, to_finish)),
            finish: scope.spawn(move || run_stage(finish, crypted, done)),
        }
    }
}

/// Runs every batch that comes through `batches` and sends it on.
fn run_stage<B, S: Stage<B>>(mut stage: S, batches: Receiver<B>, next: SyncSender<B>) -> S {
    for mut batch in batches {
        stage.run(&mut batch);
        if next.send(batch).is_err() {
            break;
        }
    }
    stage
}

impl<B, C, F> Workers<'_, B, C, F> {
    /// Whether as many batches as may be are on the workers.
    fn is_full(&self) -> bool {
        self.in_flight >= IN_FLIGHT
    }

    /// Sends a batch to run; `false` when the workers are gone.
    fn send(&mut self, batch: B) -> bool {
        let sent = self
            .to_workers
            .as_ref()
            .is_some_and(|to_workers| to_workers.send(batch).is_ok());
        self.in_flight += usize::from(sent);
        sent
    }

    /// The oldest batch sent, once finished; `None` when there is none or the workers are
    /// gone.
    fn receive(&mut self) -> Option<B> {
        if self.in_flight == 0 {
            return None;
        }
        let batch = self.from_workers.recv().ok()?;
        self.in_flight -= 1;
        Some(batch)
    }

    /// Ends the workers once every batch has come back, and hands back their stages; a panic
    /// in a batch goes on here.
    fn finish(mut self) -> (C, F) {
        drop(self.to_workers.take());
        let crypt = joined(self.crypt.join());
        (crypt, joined(self.finish.join()))
    }
}

/// What a worker thread handed back; its panic goes on.
fn joined<S>(result: std::thread::Result<S>) -> S {
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
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
    /// The queued values, sealed.
    sealed: SealedValues,
    /// The output with the sealed values in place, once the batch has run.
    merged: Vec<u8>,
}

impl SealBatch {
    fn clear(&mut self) {
        self.text.clear();
        self.holes.clear();
        self.hashed.clear();
        self.sealed = SealedValues::default();
        self.merged.clear();
    }
}

/// The sealing worker: it keeps the cipher.
struct SealValues<'c> {
    cipher: &'c mut Cipher,
}

impl Stage<SealBatch> for SealValues<'_> {
    /// Seals the batch's values, on several threads.
    fn run(&mut self, batch: &mut SealBatch) {
        batch.sealed = batch.queue.seal_values(self.cipher);
    }
}

/// The worker that finishes sealed batches: it keeps the cursor whose MAC takes the values
/// (batches run one after the other, so it takes them in walk order).
struct SealFinish<'r> {
    mac: Cursor<'r>,
}

impl Stage<SealBatch> for SealFinish<'_> {
    /// Hashes the batch's values and merges its output.
    fn run(&mut self, batch: &mut SealBatch) {
        self.mac.hash(&batch.hashed);
        let sealed = &batch.sealed;
        let quotes = 2 * batch.holes.len();
        batch
            .merged
            .reserve(batch.text.len() + sealed.text_len() + quotes);
        let mut from = 0;
        for (&hole, value) in batch.holes.iter().zip(sealed.iter()) {
            let piece = batch.text.get(from..hole).unwrap_or_default();
            batch.merged.extend_from_slice(piece);
            write_sealed(&mut batch.merged, value);
            from = hole;
        }
        let rest = batch.text.get(from..).unwrap_or_default();
        batch.merged.extend_from_slice(rest);
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

/// The encrypting walk. A full batch is sealed, then hashed and merged, on the workers while
/// the walk reads the next one; its output is written once it is back. The workers take the
/// batches in order, so they (the MAC, and the IVs of a counter cipher) keep their order.
struct Seal<'s, 'r, 'c, 'w> {
    at: Cursor<'r>,
    /// The output of the batch being read, without its values to seal.
    text: Writer<'static>,
    /// The rest of the batch being read.
    reading: SealBatch,
    workers: Workers<'s, SealBatch, SealValues<'c>, SealFinish<'r>>,
    sink: &'w mut dyn Write,
    /// A number's or boolean's canonical text (its plaintext).
    number: Zeroizing<Vec<u8>>,
    /// Top-level members, once the top-level object has closed.
    members: usize,
}

impl<'s, 'r, 'c, 'w> Seal<'s, 'r, 'c, 'w> {
    fn maybe_hand_over(&mut self) -> Result<(), EmitError> {
        if self.reading.queue.len() >= QUEUE_SIZE || self.text.out.len() >= TEXT_LIMIT {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Sends the workers the batch read, once there is room for it (writing the output of the
    /// oldest batch there to make room).
    fn hand_over(&mut self) -> Result<(), EmitError> {
        let mut batch = if self.workers.is_full() {
            self.write_oldest()?
        } else {
            SealBatch::default()
        };
        std::mem::swap(&mut batch, &mut self.reading);
        std::mem::swap(&mut batch.text, &mut self.text.out);
        if !self.workers.send(batch) {
            return Err(lost_cipher());
        }
        Ok(())
    }

    /// Waits for the oldest batch on the workers and writes its output; hands the batch back,
    /// emptied, for reuse.
    fn write_oldest(&mut self) -> Result<SealBatch, EmitError> {
        let mut batch = self.workers.receive().ok_or_else(lost_cipher)?;
        let written = self.sink.write_all(&batch.merged);
        batch.clear();
        written.map_err(EmitError::Write)?;
        Ok(batch)
    }

    /// Sends the last batch, writes every batch's output, and hands back the workers' stages
    /// (with the MAC over all the values) and the sink.
    fn finish(mut self) -> Result<(SealValues<'c>, SealFinish<'r>, &'w mut dyn Write), EmitError> {
        self.hand_over()?;
        while self.workers.in_flight > 0 {
            self.write_oldest()?;
        }
        let (sealing, finish) = self.workers.finish();
        Ok((sealing, finish, self.sink))
    }
}

/// The workers hand every batch back unless one panicked, and then the panic goes on; this
/// error is never seen, but it is not a panic here.
fn lost_cipher() -> EmitError {
    EmitError::Store(StoreError::Emit {
        format: FORMAT,
        message: "the cipher was not handed back by a batch".into(),
    })
}

impl<'a> Visit<'a> for Seal<'_, '_, '_, '_> {
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

impl Seal<'_, '_, '_, '_> {
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
    if let Some((_, node)) = metadata_at_end(input) {
        return Some(node);
    }
    metadata_value(input, metadata_by_walk(input)?)
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
    metadata_at_end(input).map(|(span, _)| span)
}

/// [`metadata_from_end`], with the node of the value found (read once, where it is checked).
fn metadata_at_end(input: &[u8]) -> Option<(Range<usize>, Node)> {
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
        let node = reader.value().ok()?;
        let end = reader.pos;
        reader.skip_whitespace();
        return (reader.pos == body.len()).then_some((start..end, node));
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
        let opening = OpenValues { cipher };
        let finish = OpenFinish {
            mac: Cursor::new(rules),
            indent: indent.json,
            number: Zeroizing::new(Vec::with_capacity(64)),
            out: Wiped(Vec::with_capacity(estimated_plaintext(input))),
            input,
            consumed: 0,
            failed: false,
        };
        let mut pass = Unseal {
            at: Cursor::new(rules),
            input,
            text: Writer::new(indent.json, TEXT_LIMIT + SPILL_AT),
            reading: OpenBatch::default(),
            workers: Workers::start(scope, opening, finish),
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
        let mut stage = pass.finish().ok()?;
        if stage.failed {
            return None;
        }
        Some(Plain {
            text: stage.out.take(),
            mac: stage.mac.mac_hex(),
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

/// What the decrypting walk gathers of a batch.
#[derive(Default)]
struct OpenBatch<'a> {
    /// The values to open.
    queue: OpenQueue<'a>,
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
    /// The values, opened (by the first worker, for the second).
    opened: OpenedValues,
    /// Set by the workers: this batch or one before did not open.
    failed: bool,
}

impl OpenBatch<'_> {
    fn clear(&mut self) {
        self.text.clear();
        self.holes.clear();
        self.log.clear();
        self.clear.clear();
        self.consumed = 0;
    }
}

/// The opening worker: it keeps the cipher.
struct OpenValues<'c> {
    cipher: &'c Cipher,
}

impl<'a> Stage<OpenBatch<'a>> for OpenValues<'_> {
    /// Opens the batch's values, on several threads. After a failure, batches are only
    /// handed on.
    fn run(&mut self, batch: &mut OpenBatch<'a>) {
        if batch.failed {
            return;
        }
        match batch.queue.open_all(self.cipher) {
            Ok(opened) => batch.opened = opened,
            Err(_) => batch.failed = true,
        }
    }
}

/// The worker that finishes opened batches: it keeps the cursor whose MAC takes the values
/// (batches run one after the other, so it takes them in walk order), and the plaintext file,
/// which it writes the batches' output into.
struct OpenFinish<'a, 'r> {
    input: &'a [u8],
    mac: Cursor<'r>,
    indent: Option<usize>,
    number: Zeroizing<Vec<u8>>,
    /// The plaintext file, opened values included.
    out: Wiped,
    /// How far into the input the values written so far reach.
    consumed: usize,
    /// A value did not open, or cannot be written: the tree path names it.
    failed: bool,
}

impl<'a> Stage<OpenBatch<'a>> for OpenFinish<'a, '_> {
    /// Feeds the MAC in walk order and writes the output. After a failure, batches are only
    /// handed back (marked, so that the walk stops).
    fn run(&mut self, batch: &mut OpenBatch<'a>) {
        self.failed |= batch.failed;
        if !self.failed {
            self.failed = self.write(batch).is_err();
        }
        batch.failed = self.failed;
        // The plaintexts are wiped as they go.
        batch.opened = OpenedValues::default();
    }
}

impl<'a> OpenFinish<'a, '_> {
    fn write(&mut self, batch: &mut OpenBatch<'a>) -> Result<(), Decline> {
        let opened = &batch.opened;
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
        // grows the buffer itself. The file so far tells the size it is heading for.
        let expected = expected_size(self.out.0.len(), self.consumed, self.input.len());
        let mut writer = Writer::new(self.indent, 0);
        writer.out = std::mem::take(&mut self.out.0);
        let mut from = 0;
        let mut written = Ok(());
        for (&hole, value) in batch.holes.iter().zip(opened.iter()) {
            let piece = batch.text.get(from..hole).unwrap_or_default();
            let most = match value {
                Value::Str(text) => escaped(text.len()),
                Value::Bytes(bytes) => escaped(bytes.len()),
                _ => SCALAR_ROOM,
            };
            room_wiped(&mut writer.out, piece.len().saturating_add(most), expected);
            writer.out.extend_from_slice(piece);
            // NaN and infinities cannot be written: the tree path reports them.
            written = writer.value(value).map_err(|_| Decline);
            if written.is_err() {
                break;
            }
            from = hole;
        }
        let rest = batch.text.get(from..).unwrap_or_default();
        room_wiped(&mut writer.out, rest.len(), expected);
        writer.out.extend_from_slice(rest);
        self.out.0 = std::mem::take(&mut writer.out);
        self.consumed = self.consumed.max(batch.consumed);
        written
    }
}

/// The decrypting walk: batches are opened (and hashed and merged) on the worker while the
/// walk reads on, as [`Seal`] seals them.
struct Unseal<'s, 'a, 'r, 'c> {
    at: Cursor<'r>,
    input: &'a [u8],
    /// The batch being read: its output without the values to open, and the rest.
    text: Writer<'static>,
    reading: OpenBatch<'a>,
    workers: Workers<'s, OpenBatch<'a>, OpenValues<'c>, OpenFinish<'a, 'r>>,
    number: Zeroizing<Vec<u8>>,
    /// Top-level `sops` members seen, and where the value of the last one is.
    sops: usize,
    sops_at: Option<Range<usize>>,
}

impl<'s, 'a, 'r, 'c> Unseal<'s, 'a, 'r, 'c> {
    fn maybe_hand_over(&mut self) -> Result<(), Decline> {
        if self.reading.queue.len() >= QUEUE_SIZE || self.text.out.len() >= TEXT_LIMIT {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Sends the workers the batch read, once there is room for it.
    fn hand_over(&mut self) -> Result<(), Decline> {
        let mut batch = if self.workers.is_full() {
            self.take_back()?
        } else {
            OpenBatch::default()
        };
        std::mem::swap(&mut batch, &mut self.reading);
        std::mem::swap(&mut batch.text, &mut self.text.out);
        if !self.workers.send(batch) {
            return Err(Decline);
        }
        Ok(())
    }

    /// Waits for the oldest batch on the workers (the second wrote its output); hands it back,
    /// emptied, for reuse. A failure stops the walk: the tree path takes the file.
    fn take_back(&mut self) -> Result<OpenBatch<'a>, Decline> {
        let mut batch = self.workers.receive().ok_or(Decline)?;
        if batch.failed {
            return Err(Decline);
        }
        batch.clear();
        Ok(batch)
    }

    /// Sends the last batch, waits for every batch and hands back the finishing worker's stage
    /// (with the plaintext file and the MAC over all the values).
    fn finish(mut self) -> Result<OpenFinish<'a, 'r>, Decline> {
        self.hand_over()?;
        while self.workers.in_flight > 0 {
            self.take_back()?;
        }
        Ok(self.workers.finish().1)
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
            self.reading.queue.push(sealed, self.at.aad());
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

impl<'a> Visit<'a> for Unseal<'_, 'a, '_, '_> {
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
