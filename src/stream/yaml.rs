//! The streaming pass for YAML (see [`super`]).
//!
//! It covers what the tree path reads with the fast scanner (`store::yaml::fast`) and writes
//! with the layout-keeping splice writer (`store::yaml::splice`): the input text, with each
//! changed scalar and comment replaced in its own style, and the `sops` block after each
//! document. The scanner's events go through [`filer`], which hands the items over in the
//! tree's order; the walkers here keep the walk's place in a [`Cursor`], seal or open the
//! values in batches, and write each batch's replacements, sorted into source order, with the
//! splice writer's own rendering ([`render`]). Anything the scanner declines, or the splice
//! writer would not splice, declines (see `filer` for the list).
//!
//! Encrypting, the output goes to the sink as it is made, but for one thing: the `sops` block
//! holds the MAC, known once every value is seen. In a file of several documents a block
//! follows each one, so what comes after the first block waits in memory for it; and with
//! `unencrypted_comment_regex` all of it waits, because a sealed comment the regex matches
//! fails the file (as the tree walk fails it) and nothing may be written then.

mod filer;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, SyncSender};

use zeroize::Zeroizing;

use super::{Opening, Plain, Sealing, QUEUE_SIZE};
use crate::crypt::value::is_sealed;
use crate::crypt::{
    push_wiped, Cipher, Cursor, OpenQueue, OpenedValues, Pattern, SealQueue, Selector,
};
use crate::store::yaml::read::{fast_path_enabled, line_start, LeafContext};
use crate::store::yaml::splice::render;
use crate::store::yaml::write::{is_sealed_comment, metadata_block, push_inline_str, push_spaces};
use crate::store::yaml::{fast, indent_step};
use crate::store::{EmitError, StoreError};
use crate::tree::{ListItem, Map, MapItem, Node, Span, Value};
use filer::{decline, Comment, DocumentEnd, Filer, Leaf, Mode, ReadValue, Step, Text, Walker};

/// A plain YAML file read through (see [`super::Checked`]).
pub struct Checked<'a> {
    source: &'a str,
    /// Comments in the file (see the module comment on `unencrypted_comment_regex`).
    comments: usize,
}

/// Inputs from this size could hold columns the layout does not record (it keeps 32 bits).
const MAX_INPUT: usize = 1 << 31;

/// Text gathered before it goes to the sink.
const SPILL_AT: usize = 64 * 1024;

/// The input as text, when the pass may read it at all: UTF-8, and only characters the fast
/// scanner reads (`fast::plain_characters`; the filer scans without checking them again). It
/// is checked a piece at a time, each piece ending after a line feed (so no character and no
/// CRLF is cut) and handed to `release` once checked, so that checking a mapped input does not
/// bring all of it in at once.
fn readable<'a>(input: &'a [u8], release: &dyn Fn(usize)) -> Option<&'a str> {
    if input.len() >= MAX_INPUT || !fast_path_enabled() {
        return None;
    }
    let mut checked = 0;
    while checked < input.len() {
        let window = &input[checked..(checked + RELEASE_EVERY).min(input.len())];
        let end = match memchr::memrchr(b'\n', window) {
            Some(line_feed) if checked + window.len() < input.len() => checked + line_feed + 1,
            // The last piece, or a line longer than a piece: the rest at once.
            _ => input.len(),
        };
        let piece = &input[checked..end];
        if std::str::from_utf8(piece).is_err() || !fast::plain_characters(piece) {
            return None;
        }
        checked = end;
        release(checked);
    }
    // SAFETY: every byte of `input` was checked to be UTF-8 above, in pieces that each end
    // after a line feed, which is always a character boundary.
    Some(unsafe { std::str::from_utf8_unchecked(input) })
}

pub(super) fn check<'a>(input: &'a [u8], release: &dyn Fn(usize)) -> Option<Checked<'a>> {
    let source = readable(input, release)?;
    let checker = Checker {
        source,
        release,
        released: 0,
    };
    let (filer, complete) = Filer::run(source, Mode::Plain, checker);
    complete.then_some(())?;
    Some(Checked {
        source,
        comments: filer.comments,
    })
}

impl Checked<'_> {
    pub(super) fn encrypt(
        self,
        sealing: Sealing,
        sink: &mut dyn std::io::Write,
    ) -> Result<(), EmitError> {
        let source = self.source;
        let comment_rule = match &sealing.rules.selector {
            Some(Selector::UnencryptedCommentRegex(pattern)) => Some(pattern),
            _ => None,
        };
        // (Fields taken one by one: the caller's `Sealing` may carry more than the pass uses.)
        let (cipher, rules, metadata) = (sealing.cipher, sealing.rules, sealing.metadata);
        let release = sealing.release;
        let step = indent_step(sealing.indent);
        let crlf = crlf(source);
        let out = Output {
            sink,
            buffer: Vec::with_capacity(2 * SPILL_AT),
            copied: 0,
            release,
            blocks: (comment_rule.is_some() && self.comments > 0).then(Vec::new),
            error: None,
        };
        // The walk runs here while a thread seals the batch before (see `Sealer::dispatch`);
        // the cipher is the sealing thread's until the walk is done.
        let walked = std::thread::scope(|scope| {
            let (to_worker, work) = mpsc::sync_channel::<SealBatch>(1);
            let (done, from_worker) = mpsc::sync_channel(1);
            let worker_cipher = &mut *cipher;
            scope.spawn(move || {
                for mut batch in work {
                    let sealed = if batch.queue.is_empty() {
                        Vec::new()
                    } else {
                        batch.queue.seal_all(worker_cipher)
                    };
                    if done.send((batch, sealed)).is_err() {
                        break;
                    }
                }
            });
            let sealer = Sealer {
                source,
                at: Cursor::new(rules),
                batch: SealBatch::default(),
                in_flight: false,
                spare: None,
                to_worker,
                from_worker,
                step,
                crlf,
                out,
                comment_rule,
                failure: None,
                scratch: String::new(),
            };
            match Filer::run(source, Mode::Plain, sealer) {
                (filer, true) => filer.walker.finish(),
                // The check read the same input through the same filer: only the walker
                // stops it.
                (mut filer, false) => {
                    Err(filer.walker.failure.take().unwrap_or_else(order_failure))
                }
            }
        });
        let (mac, out) = walked?;
        let map = metadata(cipher, mac);
        out.finish(&map, step, crlf)
    }
}

pub(super) fn metadata(input: &[u8]) -> Option<Node> {
    if input.len() >= MAX_INPUT || !fast_path_enabled() {
        return None;
    }
    // Only the block is read (the loader checks that it is UTF-8), not the whole input.
    let (start, end) = locate_sops(input)?;
    let loaded = crate::store::yaml::load(&input[start..end]).ok()?;
    let mut node = loaded.metadata?;
    shift_spans(&mut node, start);
    Some(node)
}

pub(super) fn decrypt(input: &[u8], opening: Opening) -> Option<Plain> {
    let source = readable(input, opening.release)?;
    let cipher = opening.cipher;
    // As encrypting: a thread opens the batch before while the walk goes on. It first finds
    // the `sops` block as `metadata` finds it, for the walk's own finding to be checked
    // against at the end.
    std::thread::scope(|scope| {
        let (to_worker, work) = mpsc::sync_channel::<OpenBatch>(1);
        let (done, from_worker) = mpsc::sync_channel(1);
        let worker = scope.spawn(move || {
            let located = locate_sops(source.as_bytes());
            for mut batch in work {
                let opened = if batch.queue.is_empty() {
                    Some(OpenedValues::default())
                } else {
                    batch.queue.open_all(cipher).ok()
                };
                if done.send((batch, opened)).is_err() {
                    break;
                }
            }
            located
        });
        let opener = Opener {
            source,
            at: Cursor::new(opening.rules),
            cipher,
            batch: OpenBatch::default(),
            in_flight: false,
            spare: None,
            to_worker,
            from_worker,
            step: indent_step(opening.indent),
            crlf: crlf(source),
            // Plaintext is much smaller than its `ENC[…]` form (a third, for values of some
            // forty characters); the buffer moves, wiped, when it must grow. (All of its room
            // is touched when it is wiped: a generous guess costs memory.)
            out: Zeroizing::new(Vec::with_capacity(source.len() / 3)),
            copied: 0,
            scratch: Zeroizing::new(String::new()),
        };
        let (filer, complete) = Filer::run(source, Mode::Encrypted, opener);
        complete.then_some(())?;
        let first_sops = filer.first_sops;
        let plain = filer.walker.finish()?;
        // The metadata the caller read (`metadata`) must be the block this pass set aside.
        let located = worker.join().ok()??;
        (first_sops == Some(located.0)).then_some(plain)
    })
}

/// Whether rendered text takes CRLF line breaks: when the file's first line ends in one (the
/// splice writer's rule).
fn crlf(source: &str) -> bool {
    source
        .find('\n')
        .is_some_and(|i| source[..i].ends_with('\r'))
}

/// Where the first document with a top-level `sops` entry has it: from the `sops:` line to the
/// end of that document. In a file sops or veil wrote, the entry is the last of its document;
/// this looks for it from each document's end (at the column of the document's first key)
/// without reading the rest, and the decrypting pass, which reads everything, checks its own
/// finding against this one.
fn locate_sops(bytes: &[u8]) -> Option<(usize, usize)> {
    let is_marker = |line: &[u8]| {
        (line.starts_with(b"---") || line.starts_with(b"..."))
            && matches!(line.get(3), None | Some(b' ' | b'\r' | b'\n'))
    };
    // Markers start lines with `-` or `.`, which base64 (most of an encrypted file) lacks.
    let mut ends: Vec<usize> = memchr::memchr2_iter(b'-', b'.', bytes)
        .filter(|&at| at > 0 && bytes[at - 1] == b'\n' && is_marker(&bytes[at..]))
        .collect();
    ends.push(bytes.len());
    let mut start = 0;
    for end in ends {
        let document = &bytes[start..end];
        // The column of the top-level keys: the first line that is not blank, a comment or a
        // document marker.
        let indent = document.split(|b| *b == b'\n').find_map(|line| {
            let content = line.trim_ascii_start();
            let spaces = line.len() - content.len();
            let skip = content.is_empty()
                || content.starts_with(b"#")
                || is_marker(line)
                || line[..spaces].iter().any(|b| *b != b' ');
            (!skip).then_some(spaces)
        });
        if let Some(indent) = indent {
            let mut search = document.len();
            while let Some(at) = memchr::memmem::rfind(&document[..search], b"sops:") {
                let line = at.checked_sub(indent).filter(|&line| {
                    (line == 0 || document[line - 1] == b'\n')
                        && document[line..at].iter().all(|b| *b == b' ')
                });
                let follows = document.get(at + 5);
                if let Some(line) = line {
                    if matches!(follows, None | Some(b' ' | b'\r' | b'\n')) {
                        return Some((start + line, end));
                    }
                }
                search = at;
            }
        }
        start = end;
    }
    None
}

/// Moves every span of `node` by `offset` (a node read from a slice of the input, placed back).
fn shift_spans(node: &mut Node, offset: usize) {
    let shift = |span: &mut Option<Span>| {
        if let Some(span) = span {
            span.range = span.range.start + offset..span.range.end + offset;
        }
    };
    match node {
        Node::Scalar(scalar) => shift(&mut scalar.span),
        Node::Map(map) => {
            for item in &mut map.0 {
                match item {
                    MapItem::Pair(pair) => shift_spans(&mut pair.value, offset),
                    MapItem::Comment(comment) => shift(&mut comment.span),
                }
            }
        }
        Node::List(list) => {
            for item in &mut list.0 {
                match item {
                    ListItem::Node(inner) => shift_spans(inner, offset),
                    ListItem::Comment(comment) => shift(&mut comment.span),
                }
            }
        }
    }
}

/// Where a comment filed in a block list goes once it is written as a `- ` element (the
/// splice writer's rule, spec §6.1.4).
enum ElementPlace {
    /// Alone on its line: the line becomes the element.
    OwnLine { line: usize },
    /// After a `- value` on its line: the element goes on a line of its own before, and the
    /// comment (with the blanks before it) goes.
    Before { line: usize, gap: usize },
}

/// `None` when the comment's line does not start with its list's `-` (the splice writer then
/// writes fresh YAML).
fn element_place(source: &str, range: &Range<usize>, dash: usize) -> Option<ElementPlace> {
    let line = line_start(source, range.start);
    let before = &source[line..range.start];
    if before.trim().is_empty() {
        return Some(ElementPlace::OwnLine { line });
    }
    let rest = &source[line..];
    let content = rest.trim_start_matches(' ');
    let starts_element = rest.len() - content.len() == dash && content.starts_with('-');
    starts_element.then(|| ElementPlace::Before {
        line,
        gap: before.len() - before.trim_end_matches([' ', '\t']).len(),
    })
}

/// Calls `f` with a leaf's canonical plaintext (the MAC's and the cipher's input) and its type
/// name; a rendered copy is wiped afterwards.
fn with_canonical<R>(value: &ReadValue<'_>, f: impl FnOnce(&[u8], &'static str) -> R) -> R {
    match value {
        ReadValue::Str(text) => f(text.as_str().as_bytes(), "str"),
        ReadValue::Typed(value) => f(&Zeroizing::new(value.canonical_bytes()), value.type_name()),
    }
}

/// A value that compares unequal to itself (a NaN): the splice writer sees it as changed and
/// writes it again, in its canonical text.
fn rewritten(value: &ReadValue<'_>) -> Option<Value> {
    match value {
        ReadValue::Typed(Value::Float(f)) if f.is_nan() => Some(Value::Float(*f)),
        _ => None,
    }
}

/// Appends `text`, its line breaks as the file's.
fn push_text(out: &mut Vec<u8>, text: &str, crlf: bool) {
    if crlf && text.contains('\n') {
        for (n, part) in text.split('\n').enumerate() {
            if n > 0 {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(part.as_bytes());
        }
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// The check's walker: nothing is sealed, but what the encrypting walker could not write as
/// the splice writer does declines here, whichever values the rules select.
struct Checker<'s, 'r> {
    source: &'s str,
    /// Told how far the check has read, every [`RELEASE_EVERY`] bytes (`Sealing::release`).
    release: &'r dyn Fn(usize),
    released: usize,
}

/// How often a pass reports its progress to `release`: rarely enough to cost nothing.
const RELEASE_EVERY: usize = 1 << 20;

impl<'s> Walker<'s> for Checker<'s, '_> {
    fn open(&mut self) {}
    fn close(&mut self) {}
    fn push_key(&mut self, _key: &str) {}
    fn pop_key(&mut self) {}
    fn push_index(&mut self, _index: usize) {}
    fn pop_index(&mut self, _node: bool) {}

    fn leaf(&mut self, leaf: Leaf<'s>) -> Step {
        if leaf.span.range.start >= self.released + RELEASE_EVERY {
            self.released = leaf.span.range.start;
            (self.release)(self.released);
        }
        Ok(())
    }

    fn comment(&mut self, comment: Comment<'s>) -> Step {
        // Sealed, a comment in a list becomes an element, which needs a line of its own.
        match comment.dash {
            Some(dash) if element_place(self.source, &comment.range, dash).is_none() => {
                Err(decline())
            }
            _ => Ok(()),
        }
    }

    fn settled(&mut self) -> Step {
        Ok(())
    }

    fn sops(&mut self, _range: Range<usize>) -> Step {
        Err(decline())
    }

    fn document_end(&mut self, end: DocumentEnd) -> Step {
        // A block scalar ending the file without a line break would take in the one written
        // before the `sops` block, unless it is sealed: the splice writer then writes fresh
        // YAML (and which values are sealed is not known yet).
        let at = end.insert_at;
        if end.ends_with_block && at > 0 && !self.source[..at].ends_with('\n') {
            return Err(decline());
        }
        Ok(())
    }
}

/// A replacement the encrypting walker will write once its batch is sealed.
struct SealJob {
    range: Range<usize>,
    what: Sealed,
}

enum Sealed {
    /// A leaf: the batch's sealed text `n`, in the style of its place.
    Leaf {
        span: Span,
        context: LeafContext,
        n: usize,
    },
    /// A leaf written again in its canonical text (see [`rewritten`]).
    Again {
        span: Span,
        context: LeafContext,
        value: Value,
    },
    /// A comment: `#` and the sealed text `n`; `path` is kept for the error when
    /// `unencrypted_comment_regex` is set.
    Comment { n: usize, path: Option<String> },
    /// A comment in a list, as a `- ` element at column `dash`, on a line of its own
    /// (`line_break`: inserted before the line it stood on).
    Element {
        n: usize,
        dash: usize,
        line_break: bool,
        path: Option<String>,
    },
    /// Text that goes (a comment moved to an element before its line).
    Remove,
    /// Where a document's `sops` block goes; `newline` when the document's last line has no
    /// line break.
    Metadata { top_indent: usize, newline: bool },
}

/// The encrypted text on its way to the sink.
struct Output<'w> {
    sink: &'w mut dyn Write,
    buffer: Vec<u8>,
    /// The source is written (or replaced) up to here.
    copied: usize,
    /// Told how far the source has been copied out (`Sealing::release`).
    release: &'w dyn Fn(usize),
    /// Once output waits (see the module comment): where each `sops` block goes in `buffer`,
    /// with its document's top-level column and whether a line break goes first.
    blocks: Option<Vec<(usize, usize, bool)>>,
    error: Option<std::io::Error>,
}

impl Output<'_> {
    /// Copies the source up to `at`; `false` when that is behind what is written already (the
    /// filer's order makes that impossible; checked rather than trusted).
    fn copy_to(&mut self, source: &str, at: usize) -> bool {
        if at < self.copied || at > source.len() {
            return false;
        }
        self.buffer
            .extend_from_slice(&source.as_bytes()[self.copied..at]);
        self.copied = at;
        true
    }

    /// Hands the gathered text to the sink, unless it waits for the metadata.
    fn spill(&mut self) {
        if self.blocks.is_none() && self.buffer.len() >= SPILL_AT {
            self.write_buffer();
        }
    }

    fn write_buffer(&mut self) {
        if self.error.is_none() {
            if let Err(err) = self.sink.write_all(&self.buffer) {
                self.error = Some(err);
            }
        }
        self.buffer.clear();
        (self.release)(self.copied);
    }

    /// Writes what waited, with the `sops` blocks in their places.
    fn finish(mut self, metadata: &Map, step: usize, crlf: bool) -> Result<(), EmitError> {
        let mut written = 0;
        let held = std::mem::take(&mut self.buffer);
        let mut rendered: Option<(usize, String)> = None;
        for (at, top_indent, newline) in self.blocks.take().unwrap_or_default() {
            self.write_all(&held[written..at]);
            written = at;
            let block = match &rendered {
                Some((indent, block)) if *indent == top_indent => block.clone(),
                _ => {
                    let block = metadata_block(metadata, top_indent, step);
                    rendered = Some((top_indent, block.clone()));
                    block
                }
            };
            let mut text = String::with_capacity(block.len() + 1);
            if newline {
                text.push('\n');
            }
            text.push_str(&block);
            let mut bytes = Vec::with_capacity(2 * text.len());
            push_text(&mut bytes, &text, crlf);
            self.write_all(&bytes);
        }
        self.write_all(&held[written..]);
        if self.error.is_none() {
            if let Err(err) = self.sink.flush() {
                self.error = Some(err);
            }
        }
        match self.error {
            Some(err) => Err(EmitError::Write(err)),
            None => Ok(()),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(err) = self.sink.write_all(bytes) {
                self.error = Some(err);
            }
        }
    }
}

/// A batch of the encrypting walk: the values to seal, and the replacements waiting for them.
#[derive(Default)]
struct SealBatch {
    queue: SealQueue,
    jobs: Vec<SealJob>,
}

/// The encrypting walker: the tree walk's `Mode::Encrypt` over the filer's items.
struct Sealer<'a, 's> {
    source: &'s str,
    at: Cursor<'a>,
    /// The batch being gathered.
    batch: SealBatch,
    /// A batch is with the sealing thread.
    in_flight: bool,
    /// A batch written out, kept for its buffers.
    spare: Option<SealBatch>,
    to_worker: SyncSender<SealBatch>,
    from_worker: Receiver<(SealBatch, Vec<String>)>,
    step: usize,
    crlf: bool,
    out: Output<'a>,
    comment_rule: Option<&'a Pattern>,
    /// Why the walk stopped, when it did.
    failure: Option<EmitError>,
    scratch: String,
}

impl Sealer<'_, '_> {
    fn fail(&mut self, failure: EmitError) -> Step {
        self.failure.get_or_insert(failure);
        Err(decline())
    }

    /// Hands the gathered batch to the sealing thread, once the one before is back and
    /// written: the walk goes on meanwhile, so that both cores work.
    fn dispatch(&mut self) -> Step {
        if self.in_flight {
            self.collect()?;
        }
        let next = self.spare.take().unwrap_or_default();
        let batch = std::mem::replace(&mut self.batch, next);
        if self.to_worker.send(batch).is_err() {
            return self.fail(order_failure());
        }
        self.in_flight = true;
        Ok(())
    }

    /// Waits for the batch with the sealing thread and writes its replacements.
    fn collect(&mut self) -> Step {
        let Ok((mut batch, sealed)) = self.from_worker.recv() else {
            return self.fail(order_failure());
        };
        self.in_flight = false;
        self.write(&mut batch.jobs, sealed)?;
        self.spare = Some(batch);
        Ok(())
    }

    /// Writes a sealed batch's replacements, in source order.
    fn write(&mut self, jobs: &mut Vec<SealJob>, mut sealed: Vec<String>) -> Step {
        if let Some(rule) = self.comment_rule {
            let matched = jobs.iter().find_map(|job| match &job.what {
                Sealed::Comment { n, path } | Sealed::Element { n, path, .. }
                    if sealed.get(*n).is_some_and(|text| rule.is_match(text)) =>
                {
                    Some(path.clone().unwrap_or_default())
                }
                _ => None,
            });
            if let Some(path) = matched {
                // The tree walk's `CryptError::CommentMatchesRule`, in its words.
                return self.fail(EmitError::Store(StoreError::Structure {
                    path,
                    message: "an encrypted comment would match unencrypted_comment_regex and could not be decrypted again".into(),
                }));
            }
        }
        // Walk order is source order but for end-of-line comments, filed before their item.
        jobs.sort_by_key(|job| (job.range.start, job.range.end));
        for job in jobs.drain(..) {
            if !self.out.copy_to(self.source, job.range.start) {
                return self.fail(order_failure());
            }
            self.scratch.clear();
            let mut sealed_text = |n: usize| sealed.get_mut(n).map(std::mem::take);
            match job.what {
                Sealed::Leaf { span, context, n } => {
                    let Some(text) = sealed_text(n) else {
                        return self.fail(order_failure());
                    };
                    let value = Value::Str(text);
                    if render(
                        self.source,
                        &span,
                        &value,
                        &context,
                        self.step,
                        &mut self.scratch,
                    )
                    .is_none()
                    {
                        return self.fail(order_failure());
                    }
                }
                Sealed::Again {
                    span,
                    context,
                    value,
                } => {
                    if render(
                        self.source,
                        &span,
                        &value,
                        &context,
                        self.step,
                        &mut self.scratch,
                    )
                    .is_none()
                    {
                        return self.fail(order_failure());
                    }
                }
                Sealed::Comment { n, .. } => {
                    let Some(text) = sealed_text(n) else {
                        return self.fail(order_failure());
                    };
                    self.scratch.push('#');
                    self.scratch.push_str(&text);
                }
                Sealed::Element {
                    n,
                    dash,
                    line_break,
                    ..
                } => {
                    let Some(text) = sealed_text(n) else {
                        return self.fail(order_failure());
                    };
                    push_spaces(&mut self.scratch, dash);
                    self.scratch.push_str("- ");
                    self.scratch.push_str(&text);
                    if line_break {
                        self.scratch.push('\n');
                    }
                }
                Sealed::Remove => {}
                Sealed::Metadata {
                    top_indent,
                    newline,
                } => {
                    // Everything after waits for the MAC.
                    let at = self.out.buffer.len();
                    self.out
                        .blocks
                        .get_or_insert_with(Vec::new)
                        .push((at, top_indent, newline));
                }
            }
            push_text(&mut self.out.buffer, &self.scratch, self.crlf);
            self.out.copied = job.range.end;
        }
        self.out.spill();
        if let Some(err) = self.out.error.take() {
            return self.fail(EmitError::Write(err));
        }
        Ok(())
    }
}

impl<'a> Sealer<'a, '_> {
    /// Seals and writes what is left; the MAC, and the output waiting for its `sops` blocks.
    fn finish(mut self) -> Result<(String, Output<'a>), EmitError> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        if self.dispatch().and_then(|()| self.collect()).is_err() {
            return Err(self.failure.take().unwrap_or_else(order_failure));
        }
        if !self.out.copy_to(self.source, self.source.len()) {
            return Err(order_failure());
        }
        let Sealer { at, out, .. } = self;
        Ok((at.mac_hex(), out))
    }
}

/// A replacement out of source order or not renderable: what the check exists to rule out.
fn order_failure() -> EmitError {
    EmitError::Store(StoreError::Emit {
        format: "yaml",
        message: "the streaming pass met a replacement it cannot place".into(),
    })
}

impl<'s> Walker<'s> for Sealer<'_, 's> {
    fn open(&mut self) {
        self.at.open_collection();
    }

    fn close(&mut self) {
        self.at.close_collection();
    }

    fn push_key(&mut self, key: &str) {
        self.at.push_key(key);
    }

    fn pop_key(&mut self) {
        self.at.pop_key();
        self.at.end_item();
    }

    fn push_index(&mut self, index: usize) {
        self.at.push_index(index);
    }

    fn pop_index(&mut self, node: bool) {
        if node {
            self.at.end_item();
        }
        self.at.pop_index();
    }

    fn leaf(&mut self, leaf: Leaf<'s>) -> Step {
        let plan = self.at.leaf();
        let empty = matches!(&leaf.value, ReadValue::Str(text) if text.as_str().is_empty());
        let seal = plan.encrypted && !empty;
        let n = self.batch.queue.len();
        let Sealer { at, batch, .. } = self;
        with_canonical(&leaf.value, |plaintext, type_name| {
            if plan.hashed {
                at.hash(plaintext);
            }
            if seal {
                batch.queue.push_text(plaintext, at.aad(), type_name);
            }
        });
        let what = if seal {
            Sealed::Leaf {
                span: leaf.span.clone(),
                context: leaf.context,
                n,
            }
        } else if let Some(value) = rewritten(&leaf.value) {
            Sealed::Again {
                span: leaf.span.clone(),
                context: leaf.context,
                value,
            }
        } else {
            return Ok(());
        };
        self.batch.jobs.push(SealJob {
            range: leaf.span.range,
            what,
        });
        Ok(())
    }

    fn comment(&mut self, comment: Comment<'s>) -> Step {
        let text = comment.text.as_str();
        if !self.at.comment(text) || text.is_empty() {
            return Ok(());
        }
        let n = self.batch.queue.len();
        self.batch
            .queue
            .push_text(text.as_bytes(), self.at.aad(), "comment");
        let path = self.comment_rule.map(|_| self.at.path());
        let Some(dash) = comment.dash else {
            self.batch.jobs.push(SealJob {
                range: comment.range,
                what: Sealed::Comment { n, path },
            });
            return Ok(());
        };
        match element_place(self.source, &comment.range, dash) {
            Some(ElementPlace::OwnLine { line }) => self.batch.jobs.push(SealJob {
                range: line..comment.range.end,
                what: Sealed::Element {
                    n,
                    dash,
                    line_break: false,
                    path,
                },
            }),
            Some(ElementPlace::Before { line, gap }) => {
                self.batch.jobs.push(SealJob {
                    range: line..line,
                    what: Sealed::Element {
                        n,
                        dash,
                        line_break: true,
                        path,
                    },
                });
                self.batch.jobs.push(SealJob {
                    range: comment.range.start - gap..comment.range.end,
                    what: Sealed::Remove,
                });
            }
            None => return self.fail(order_failure()),
        }
        Ok(())
    }

    fn settled(&mut self) -> Step {
        if self.batch.queue.len() >= QUEUE_SIZE || self.batch.jobs.len() >= QUEUE_SIZE {
            self.dispatch()?;
        }
        Ok(())
    }

    fn sops(&mut self, _range: Range<usize>) -> Step {
        // A plain file with a `sops` entry: the filer declines it before this.
        Err(decline())
    }

    fn document_end(&mut self, end: DocumentEnd) -> Step {
        let at = end.insert_at;
        self.batch.jobs.push(SealJob {
            range: at..at,
            what: Sealed::Metadata {
                top_indent: end.top_indent,
                newline: at > 0 && !self.source[..at].ends_with('\n'),
            },
        });
        Ok(())
    }
}

/// A replacement the decrypting walker will write once its batch is opened.
struct OpenJob<'s> {
    range: Range<usize>,
    what: Opened<'s>,
}

enum Opened<'s> {
    /// A leaf: the batch's opened value `n`, in the style of its place, unless it is the
    /// sealed text itself.
    Leaf {
        span: Span,
        context: LeafContext,
        n: usize,
        sealed: &'s str,
    },
    /// A leaf written again in its canonical text (see [`rewritten`]).
    Again {
        span: Span,
        context: LeafContext,
        value: Value,
    },
    /// Text known already (a comment's).
    Text(Zeroizing<String>),
    /// Text that goes: the `sops` entry, a comment moved.
    Remove,
}

/// One input of the MAC, in walk order: an opened value of the batch, or bytes in
/// [`Opener::plain`].
enum Hashed {
    Opened(usize),
    Plain(Range<usize>),
}

/// A batch of the decrypting walk: the values to open, the MAC's inputs in walk order, and
/// the replacements waiting for them.
#[derive(Default)]
struct OpenBatch<'s> {
    queue: OpenQueue<'s>,
    jobs: Vec<OpenJob<'s>>,
    hashes: Vec<Hashed>,
    /// Canonical plaintext of the batch's unsealed leaves, waiting for their turn in the MAC.
    plain: Zeroizing<Vec<u8>>,
}

/// The decrypting walker: the tree walk's `Mode::Decrypt` over the filer's items. Every
/// failure declines (the tree path then reports it precisely).
struct Opener<'a, 's> {
    source: &'s str,
    at: Cursor<'a>,
    cipher: &'a Cipher,
    /// The batch being gathered.
    batch: OpenBatch<'s>,
    /// A batch is with the opening thread.
    in_flight: bool,
    /// A batch written out, kept for its buffers.
    spare: Option<OpenBatch<'s>>,
    to_worker: SyncSender<OpenBatch<'s>>,
    from_worker: Receiver<(OpenBatch<'s>, Option<OpenedValues>)>,
    step: usize,
    crlf: bool,
    out: Zeroizing<Vec<u8>>,
    copied: usize,
    /// Rendered text, in a buffer made large enough beforehand so that it never moves (a move
    /// would leave a copy of the plaintext behind).
    scratch: Zeroizing<String>,
}

impl Opener<'_, '_> {
    /// Makes the scratch buffer hold at least `needed` bytes without moving.
    fn reserve_scratch(&mut self, needed: usize) {
        self.scratch.clear();
        if self.scratch.capacity() < needed {
            self.scratch = Zeroizing::new(String::with_capacity(needed.next_power_of_two()));
        }
    }

    /// Renders `value` in the style of its place into the scratch buffer.
    fn render(&mut self, span: &Span, context: &LeafContext, value: &Value) -> Step {
        // The most a rendering takes: four bytes per byte (`\xNN`), or a block's indentation
        // per line (the column is at most the line's start plus the span, plus a step). Other
        // types render in a few dozen bytes at most.
        let (length, lines) = match value {
            Value::Str(text) => (
                text.len(),
                memchr::memchr_iter(b'\n', text.as_bytes()).count(),
            ),
            Value::Bytes(bytes) => (bytes.len(), 0),
            _ => (64, 0),
        };
        let column = span.range.start - line_start(self.source, span.range.start)
            + span.range.len()
            + self.step;
        self.reserve_scratch(4 * length + (lines + 2) * (column + 2) + 64);
        let capacity = self.scratch.capacity();
        let scratch: &mut String = &mut self.scratch;
        render(self.source, span, value, context, self.step, scratch).ok_or_else(decline)?;
        debug_assert_eq!(
            self.scratch.capacity(),
            capacity,
            "the scratch buffer moved"
        );
        Ok(())
    }

    /// Writes the scratch buffer in place of `range`.
    fn replace(&mut self, range: &Range<usize>) -> Step {
        self.copy_to(range.start)?;
        let text = std::mem::take(&mut *self.scratch);
        if self.crlf && text.contains('\n') {
            let mut converted = Zeroizing::new(Vec::with_capacity(2 * text.len()));
            push_text(&mut converted, &text, true);
            push_wiped(&mut self.out, &converted);
        } else {
            push_wiped(&mut self.out, text.as_bytes());
        }
        *self.scratch = text;
        self.copied = range.end;
        Ok(())
    }

    fn copy_to(&mut self, at: usize) -> Step {
        if at < self.copied || at > self.source.len() {
            // Replacements that overlap (a comment inside the `sops` block's lines, say): the
            // splice writer writes fresh YAML then.
            return Err(decline());
        }
        push_wiped(&mut self.out, &self.source.as_bytes()[self.copied..at]);
        self.copied = at;
        Ok(())
    }

    /// Hands the gathered batch to the opening thread, once the one before is back and
    /// written.
    fn dispatch(&mut self) -> Step {
        if self.in_flight {
            self.collect()?;
        }
        let next = self.spare.take().unwrap_or_default();
        let batch = std::mem::replace(&mut self.batch, next);
        self.to_worker.send(batch).map_err(|_| decline())?;
        self.in_flight = true;
        Ok(())
    }

    /// Waits for the batch with the opening thread; feeds the MAC in walk order and writes the
    /// replacements in source order.
    fn collect(&mut self) -> Step {
        let (mut batch, values) = self.from_worker.recv().map_err(|_| decline())?;
        self.in_flight = false;
        let values = values.ok_or_else(decline)?;
        for hashed in batch.hashes.drain(..) {
            match hashed {
                Hashed::Opened(n) => match values.get(n).ok_or_else(decline)? {
                    Value::Str(text) => self.at.hash(text.as_bytes()),
                    Value::Bytes(bytes) => self.at.hash(bytes),
                    other => self.at.hash(&Zeroizing::new(other.canonical_bytes())),
                },
                Hashed::Plain(range) => self.at.hash(&batch.plain[range]),
            }
        }
        batch.plain.clear();
        batch
            .jobs
            .sort_by_key(|job| (job.range.start, job.range.end));
        for job in batch.jobs.drain(..) {
            match job.what {
                Opened::Leaf {
                    span,
                    context,
                    n,
                    sealed,
                } => {
                    let value = values.get(n).ok_or_else(decline)?;
                    if matches!(value, Value::Str(text) if text == sealed) {
                        // Unchanged: the source stays.
                        continue;
                    }
                    self.render(&span, &context, value)?;
                }
                Opened::Again {
                    span,
                    context,
                    value,
                } => self.render(&span, &context, &value)?,
                Opened::Text(text) => {
                    self.reserve_scratch(text.len());
                    self.scratch.push_str(&text);
                }
                Opened::Remove => self.scratch.clear(),
            }
            self.replace(&job.range)?;
        }
        self.spare = Some(batch);
        Ok(())
    }

    fn finish(mut self) -> Option<Plain> {
        self.dispatch().ok()?;
        self.collect().ok()?;
        self.copy_to(self.source.len()).ok()?;
        Some(Plain {
            mac: self.at.mac_hex(),
            text: self.out,
        })
    }

    /// Queues a comment's new text for `range`, as the splice writer writes it: `write` puts
    /// `#`, a `- ` element or a quoted string around `length` bytes of plaintext, in a buffer
    /// large enough for it not to move.
    fn text_job(&mut self, range: Range<usize>, length: usize, write: impl FnOnce(&mut String)) {
        let room = 4 * length + range.len() + 16;
        let mut text = Zeroizing::new(String::with_capacity(room));
        write(&mut text);
        debug_assert!(text.capacity() == room, "the comment buffer moved");
        self.batch.jobs.push(OpenJob {
            range,
            what: Opened::Text(text),
        });
    }
}

impl<'s> Walker<'s> for Opener<'_, 's> {
    fn open(&mut self) {
        self.at.open_collection();
    }

    fn close(&mut self) {
        self.at.close_collection();
    }

    fn push_key(&mut self, key: &str) {
        self.at.push_key(key);
    }

    fn pop_key(&mut self) {
        self.at.pop_key();
        self.at.end_item();
    }

    fn push_index(&mut self, index: usize) {
        self.at.push_index(index);
    }

    fn pop_index(&mut self, node: bool) {
        if node {
            self.at.end_item();
        }
        self.at.pop_index();
    }

    fn leaf(&mut self, leaf: Leaf<'s>) -> Step {
        let plan = self.at.leaf();
        if plan.encrypted {
            match &leaf.value {
                ReadValue::Str(text) if is_sealed(text.as_str()) => {
                    let sealed =
                        in_source(self.source, text, leaf.text_start).ok_or_else(decline)?;
                    let n = self.batch.queue.len();
                    self.batch.queue.push(sealed, self.at.aad());
                    if plan.hashed {
                        self.batch.hashes.push(Hashed::Opened(n));
                    }
                    self.batch.jobs.push(OpenJob {
                        range: leaf.span.range.clone(),
                        what: Opened::Leaf {
                            span: leaf.span,
                            context: leaf.context,
                            n,
                            sealed,
                        },
                    });
                    return Ok(());
                }
                // sops never encrypts an empty string.
                ReadValue::Str(text) if text.as_str().is_empty() => {}
                // A value the rules say is encrypted, and is not.
                _ => return Err(decline()),
            }
        }
        if plan.hashed {
            let OpenBatch { plain, hashes, .. } = &mut self.batch;
            with_canonical(&leaf.value, |bytes, _| {
                let start = plain.len();
                push_wiped(plain, bytes);
                hashes.push(Hashed::Plain(start..plain.len()));
            });
        }
        if let Some(value) = rewritten(&leaf.value) {
            self.batch.jobs.push(OpenJob {
                range: leaf.span.range.clone(),
                what: Opened::Again {
                    span: leaf.span,
                    context: leaf.context,
                    value,
                },
            });
        }
        Ok(())
    }

    fn comment(&mut self, comment: Comment<'s>) -> Step {
        let text = comment.text.as_str();
        let opened = if self.at.comment(text) && !text.is_empty() {
            // One that does not open the tree walk keeps, with a warning: the tree path's.
            let plaintext =
                OpenQueue::open_comment(self.cipher, &self.at, text).ok_or_else(decline)?;
            self.at.opened_comment(&plaintext);
            Some(plaintext)
        } else {
            None
        };
        let new = opened.as_ref().map_or(text, |plaintext| plaintext.as_str());
        if new.contains('\n') {
            return Err(decline());
        }
        let range = comment.range;
        if !comment.element && self.source.get(range.start + 1..range.end) == Some(new) {
            return Ok(());
        }
        let as_element = comment.dash.is_some() && is_sealed_comment(new);
        match (comment.element, as_element) {
            (false, false) => self.text_job(range, new.len(), |out| {
                out.push('#');
                out.push_str(new);
            }),
            (true, true) => self.text_job(range, new.len(), |out| push_inline_str(out, new, false)),
            (false, true) => {
                let dash = comment.dash.ok_or_else(decline)?;
                let element = |out: &mut String| {
                    push_spaces(out, dash);
                    out.push_str("- ");
                    out.push_str(new);
                };
                match element_place(self.source, &range, dash).ok_or_else(decline)? {
                    ElementPlace::OwnLine { line } => {
                        self.text_job(line..range.end, new.len() + dash, element)
                    }
                    ElementPlace::Before { line, gap } => {
                        self.text_job(line..line, new.len() + dash, |out| {
                            element(out);
                            out.push('\n');
                        });
                        self.batch.jobs.push(OpenJob {
                            range: range.start - gap..range.end,
                            what: Opened::Remove,
                        });
                    }
                }
            }
            (true, false) => {
                // A `- ENC[…]` element decrypted: a comment again, where the dash was.
                let line = line_start(self.source, range.start);
                let before = &self.source[line..range.start];
                if before.trim() != "-" {
                    return Err(decline());
                }
                let dash = line + before.find('-').ok_or_else(decline)?;
                self.text_job(dash..range.end, new.len(), |out| {
                    out.push('#');
                    out.push_str(new);
                });
            }
        }
        Ok(())
    }

    fn settled(&mut self) -> Step {
        let batch = &self.batch;
        if batch.queue.len() >= QUEUE_SIZE
            || batch.jobs.len() >= QUEUE_SIZE
            || batch.hashes.len() >= QUEUE_SIZE
        {
            self.dispatch()?;
        }
        Ok(())
    }

    fn sops(&mut self, range: Range<usize>) -> Step {
        self.batch.jobs.push(OpenJob {
            range,
            what: Opened::Remove,
        });
        Ok(())
    }

    fn document_end(&mut self, _end: DocumentEnd) -> Step {
        Ok(())
    }
}

/// A sealed text as a slice of the input (the open queue borrows its texts): a block scalar's
/// text is the scanner's copy, but its one line stands in the source from `start`.
fn in_source<'s>(source: &'s str, text: &Text<'s>, start: usize) -> Option<&'s str> {
    match text {
        Text::Borrowed(text) => Some(text),
        Text::Owned(text) => source
            .get(start..start + text.len())
            .filter(|found| *found == text.as_str()),
    }
}
