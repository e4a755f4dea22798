//! The fast scanner's events, turned into the visits of the tree walk, in the tree's order.
//!
//! The tree walk (`crypt::Walk`) visits a document in the order of the tree the reader
//! (`store::yaml::read`) builds, and that is not quite source order: the reader files comments
//! where sops' YAML library attaches them. This module reproduces the reader's filing over the
//! events of the fast scanner, which it reads as they come, and hands each item to a
//! [`Walker`] the moment its place in the tree is settled. Only three rules reorder:
//! * an end-of-line comment goes before the item on its line, which came first: the last
//!   scalar (or empty `[]`/`{}`) of the innermost collection is held back ([`Filer::deferred`])
//!   until the next event shows that no such comment follows;
//! * a comment on its own line waits for the next node (a head comment) or the end of its
//!   collection (a foot comment, when indented at least as deep);
//! * a mapping key is visited with its value, after the comments between the two.
//!
//! What the reader would refuse (duplicate keys in the first document, non-string keys,
//! integers past 64 bits, a top level that is not a mapping) declines here, as does what the
//! layout-keeping writer would not splice (a block scalar with a comment on its header line,
//! comments filed in an empty flow collection, comments after the last `...`). A decline is
//! always safe: the caller takes the tree path, which reports the input's faults itself.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

use granit_parser::{Event, Placement, ScalarStyle, StructureStyle};
use zeroize::Zeroizing;

use crate::store::yaml::fast;
use crate::store::yaml::read::{line_end_after, line_start, LeafContext, Position, Reader};
use crate::store::yaml::resolve::resolve_typed;
use crate::tree::{Span, Style, Value};

/// The pass cannot reproduce the tree path here (or a walker gave up): nothing it did counts.
#[derive(Debug)]
pub(super) struct Decline;

/// A [`Decline`]; under test, where it was made is kept, to tell why an input was declined.
#[track_caller]
pub(super) fn decline() -> Decline {
    #[cfg(test)]
    {
        let at = std::panic::Location::caller();
        LAST_DECLINE.with(|last| last.set(Some(at)));
    }
    Decline
}

#[cfg(test)]
thread_local! {
    pub(super) static LAST_DECLINE: std::cell::Cell<Option<&'static std::panic::Location<'static>>> =
        const { std::cell::Cell::new(None) };
}

pub(super) type Step = Result<(), Decline>;

/// A scalar's or comment's text: borrowed from the input, or decoded by the scanner (escapes,
/// block scalars) into a buffer that is wiped when dropped.
pub(super) enum Text<'s> {
    Borrowed(&'s str),
    Owned(Zeroizing<String>),
}

impl<'s> Text<'s> {
    fn from_cow(text: Cow<'s, str>) -> Self {
        match text {
            Cow::Borrowed(text) => Text::Borrowed(text),
            Cow::Owned(text) => Text::Owned(Zeroizing::new(text)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(text) => text,
            Text::Owned(text) => text,
        }
    }
}

/// A leaf's value as the reader types it: a string (borrowed where it can be), or another type.
pub(super) enum ReadValue<'s> {
    Str(Text<'s>),
    /// Never a `Value::Str`.
    Typed(Value),
}

impl ReadValue<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, ReadValue::Typed(Value::Null))
    }
}

/// A leaf where the tree has one: its value, where it stands and how it was written.
pub(super) struct Leaf<'s> {
    pub value: ReadValue<'s>,
    /// The range the writer replaces, and the scalar's style.
    pub span: Span,
    pub context: LeafContext,
    /// Where the scanner's text starts (a block scalar's first content character).
    pub text_start: usize,
}

/// A comment item of the tree.
pub(super) struct Comment<'s> {
    /// What follows the `#`; or, for a list element holding a sealed comment, its string.
    pub text: Text<'s>,
    /// From the `#` to the end of the line; an element's scalar span.
    pub range: Range<usize>,
    /// The column of the `-` indicators when the comment is filed in a block list.
    pub dash: Option<usize>,
    /// A list element holding a sealed comment (decrypting), which the tree walk turns into a
    /// comment.
    pub element: bool,
}

/// Where a document ended, as the writer places a `sops` block after it.
pub(super) struct DocumentEnd {
    /// After the document's last line.
    pub insert_at: usize,
    /// The column of the top-level keys.
    pub top_indent: usize,
    /// The document's last item is (or ends in) a block scalar.
    pub ends_with_block: bool,
}

/// What a pass does with the items, in the tree walk's order. The structural visits map one to
/// one onto the walk's [`Cursor`](crate::crypt::Cursor) calls.
pub(super) trait Walker<'s> {
    /// A mapping or list opens (`open_collection`).
    fn open(&mut self);
    /// It closes (`close_collection`).
    fn close(&mut self);
    /// A pair starts (`push_key`).
    fn push_key(&mut self, key: &str);
    /// It ends (`pop_key`, then `end_item`).
    fn pop_key(&mut self);
    /// A list item starts (`push_index`).
    fn push_index(&mut self, index: usize);
    /// It ends: `end_item` for an element (`node`), not for a comment; then `pop_index`.
    fn pop_index(&mut self, node: bool);
    /// A leaf that is not null (the walk skips nulls).
    fn leaf(&mut self, leaf: Leaf<'s>) -> Step;
    fn comment(&mut self, comment: Comment<'s>) -> Step;
    /// Nothing is held back: whatever the walker has gathered can be written out.
    fn settled(&mut self) -> Step;
    /// The first top-level `sops` entry of a document (decrypting), whole lines; its content is
    /// not visited.
    fn sops(&mut self, range: Range<usize>) -> Step;
    fn document_end(&mut self, end: DocumentEnd) -> Step;
}

/// What the input is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A plain file: a top-level `sops` entry means it is encrypted already (declines).
    Plain,
    /// An encrypted file: the `sops` entries are set aside, and list elements holding sealed
    /// comments are comments.
    Encrypted,
}

/// A comment waiting for the node that decides where it goes.
struct Held<'s> {
    text: &'s str,
    range: Range<usize>,
    column: usize,
    /// An end-of-line comment after a bare `-` or key: it belongs to the content that follows.
    into_collection: bool,
}

/// A mapping key waiting for its value.
struct Key<'s> {
    text: Cow<'s, str>,
    line: usize,
    start: usize,
    /// The top-level `sops` entry.
    sops: bool,
}

struct Frame<'s> {
    list: bool,
    /// An empty flow collection (`[]`, `{}`): visited as one item when it ends.
    flow: bool,
    /// Column of the keys or `-` indicators.
    indent: usize,
    key: Option<Key<'s>>,
    /// Line on which the last item ended (0 for a block collection), for end-of-line comments.
    last_line: usize,
    /// List items visited so far: the next one's index.
    visited: usize,
    /// Inside the `sops` entry: nothing is visited.
    discarded: bool,
    /// The last item is (or ends in) a block scalar.
    ends_with_block: bool,
    /// First document, mappings: where this mapping's keys start in [`Filer::keys`]; with the
    /// hashes of those keys once there are many (the duplicate check).
    keys_from: Option<usize>,
    seen: Option<HashSet<u64>>,
}

/// The item held back until the next event (see the module comment).
struct Deferred<'s> {
    /// The key of a pair; `None` for a list element.
    key: Option<Cow<'s, str>>,
    /// The leaf; `None` for an empty flow collection.
    leaf: Option<Leaf<'s>>,
}

/// The document's root mapping, as far as it has come.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Root {
    /// Not started.
    None,
    /// Its frame is open.
    Open,
    /// Its frame has ended; comments may still be filed at its end, until the document ends.
    Closed {
        indent: usize,
        ends_with_block: bool,
    },
    /// The document is empty (a null root): an empty mapping, opened when the document ends.
    Empty,
}

/// Mappings with more keys than this keep key hashes for the duplicate check, as the reader.
const SCAN_KEYS: usize = 16;

pub(super) struct Filer<'s, W> {
    source: &'s str,
    mode: Mode,
    /// The reader's own span helpers (block scalar ranges, sequence indents), with its
    /// `last_content_end` kept as the reader keeps it.
    reader: Reader<'s>,
    frames: Vec<Frame<'s>>,
    held: Vec<Held<'s>>,
    deferred: Option<Deferred<'s>>,
    /// Keys of the open mappings of the first document (see [`Frame::keys_from`]).
    keys: Vec<Cow<'s, str>>,
    root: Root,
    /// End of the last token of the current document.
    document_end: usize,
    documents: usize,
    /// A `sops` entry was met in the current document.
    sops_in_document: bool,
    /// Where the first top-level `sops` entry starts.
    pub first_sops: Option<usize>,
    /// Comments visited (outside the `sops` entries).
    pub comments: usize,
    pub walker: W,
}

impl<'s, W: Walker<'s>> Filer<'s, W> {
    /// Reads `source` through, handing its items to `walker`. The filer comes back (with the
    /// walker, which may know why it stopped) with whether the whole input went through.
    pub fn run(source: &'s str, mode: Mode, walker: W) -> (Self, bool) {
        let mut filer = Filer {
            source,
            mode,
            reader: Reader::new(source),
            frames: Vec::new(),
            held: Vec::new(),
            deferred: None,
            keys: Vec::new(),
            root: Root::None,
            document_end: 0,
            documents: 0,
            sops_in_document: false,
            first_sops: None,
            comments: 0,
            walker,
        };
        #[cfg(test)]
        LAST_DECLINE.with(|last| last.set(None));
        // Every caller has checked the source's characters (`readable`).
        let complete = fast::scan_checked(source, |event, at| filer.event(event, at).is_ok());
        // Declined or stopped; or comments after the last `...`, which the reader files in the
        // last document although they come after its `sops` block.
        let complete = complete && filer.documents > 0 && filer.held.is_empty();
        (filer, complete)
    }

    fn event(&mut self, event: Event<'s>, at: Position) -> Step {
        if let Event::Comment(text, Placement::Right) = &event {
            if self.before_deferred(at) {
                let discarded = self.frames.last().is_some_and(|f| f.discarded);
                if self.deferred.is_none() && !discarded {
                    // The item it goes before was visited already: not a case the reader's
                    // event order allows, so not one to guess at.
                    return Err(decline());
                }
                // Filed before the item held back, which stays held.
                self.document_end = self.document_end.max(at.end);
                let held = self.held_comment(text, at, false);
                return self.file(held, false);
            }
        }
        self.release()?;
        match event {
            Event::StreamStart | Event::StreamEnd => Ok(()),
            Event::DocumentStart(..) => {
                self.document_end = at.end;
                Ok(())
            }
            Event::DocumentEnd => self.end_document(),
            Event::Comment(text, placement) => {
                self.document_end = self.document_end.max(at.end);
                let held = self.held_comment(&text, at, false);
                if placement == Placement::Right {
                    self.end_of_line_comment(held, at)
                } else {
                    self.held.push(held);
                    Ok(())
                }
            }
            Event::Scalar(text, style, 0, None) => self.scalar(text, style, at),
            Event::MappingStart(style, 0, None) => {
                self.collection(false, style == StructureStyle::Flow, at)
            }
            Event::SequenceStart(style, 0, None) => {
                self.collection(true, style == StructureStyle::Flow, at)
            }
            Event::MappingEnd | Event::SequenceEnd => self.end_collection(at),
            // Anchors, aliases and tags: the fast scanner reads none, and nor does the pass.
            _ => Err(decline()),
        }
    }

    fn held_comment(&self, text: &Cow<'s, str>, at: Position, into_collection: bool) -> Held<'s> {
        let text = match text {
            Cow::Borrowed(text) => text,
            // The fast scanner borrows every comment; its text is the source after the `#`.
            Cow::Owned(_) => self.source.get(at.start + 1..at.end).unwrap_or_default(),
        };
        Held {
            text,
            range: at.start..at.end,
            column: at.column,
            into_collection,
        }
    }

    /// Whether an end-of-line comment at `at` goes before the last item of the innermost
    /// collection (the reader inserts it there), which is then the item held back.
    fn before_deferred(&self, at: Position) -> bool {
        match self.frames.last() {
            Some(frame) => {
                frame.last_line == at.line && (frame.list || frame.key.is_none()) && !frame.flow
            }
            None => false,
        }
    }

    /// Visits the item held back, if any.
    fn release(&mut self) -> Step {
        let Some(item) = self.deferred.take() else {
            return Ok(());
        };
        let Some(frame) = self.frames.last_mut() else {
            return Err(decline());
        };
        match item.key {
            Some(key) => {
                self.walker.push_key(&key);
                match item.leaf {
                    Some(leaf) if leaf.value.is_null() => {}
                    Some(leaf) => self.walker.leaf(leaf)?,
                    None => {
                        self.walker.open();
                        self.walker.close();
                    }
                }
                self.walker.pop_key();
            }
            None => {
                let index = frame.visited;
                frame.visited += 1;
                let dash = (!frame.flow).then_some(frame.indent);
                self.walker.push_index(index);
                let node = match item.leaf {
                    Some(leaf) if self.mode == Mode::Encrypted && is_sealed_comment(&leaf) => {
                        // The tree walk turns the element into a comment before visiting it.
                        let ReadValue::Str(text) = leaf.value else {
                            return Err(decline());
                        };
                        self.comments += 1;
                        self.walker.comment(Comment {
                            text,
                            range: leaf.span.range,
                            dash,
                            element: true,
                        })?;
                        false
                    }
                    Some(leaf) if leaf.value.is_null() => true,
                    Some(leaf) => {
                        self.walker.leaf(leaf)?;
                        true
                    }
                    None => {
                        self.walker.open();
                        self.walker.close();
                        true
                    }
                };
                self.walker.pop_index(node);
            }
        }
        self.walker.settled()
    }

    /// Files a comment into the innermost collection: at its end (`appended`), or before its
    /// last item (an end-of-line comment). The root, once its frame has ended, takes comments
    /// until the document ends.
    fn file(&mut self, held: Held<'s>, appended: bool) -> Step {
        let Some(frame) = self.frames.last_mut() else {
            return self.file_at_root(held);
        };
        if frame.discarded {
            return Ok(());
        }
        if frame.flow {
            // Comments inside an empty flow collection: the writer puts them back where they
            // stood, inside the brackets; left to the tree path.
            return Err(decline());
        }
        if appended {
            frame.ends_with_block = false;
        }
        self.comments += 1;
        let comment = Comment {
            text: Text::Borrowed(held.text),
            range: held.range,
            dash: frame.list.then_some(frame.indent),
            element: false,
        };
        if frame.list {
            let index = frame.visited;
            frame.visited += 1;
            self.walker.push_index(index);
            self.walker.comment(comment)?;
            self.walker.pop_index(false);
            Ok(())
        } else {
            self.walker.comment(comment)
        }
    }

    fn file_at_root(&mut self, held: Held<'s>) -> Step {
        match &mut self.root {
            Root::Closed {
                ends_with_block, ..
            } => *ends_with_block = false,
            // The reader holds them for the root (a null one, or one not started yet).
            _ => return Err(decline()),
        }
        self.comments += 1;
        self.walker.comment(Comment {
            text: Text::Borrowed(held.text),
            range: held.range,
            dash: None,
            element: false,
        })
    }

    /// Every held comment goes into the innermost collection, at its end (the reader's
    /// `file_comments`); with no collection open they stay held, for the root.
    fn file_held(&mut self) -> Step {
        if self.frames.is_empty() {
            return Ok(());
        }
        for held in std::mem::take(&mut self.held) {
            self.file(held, true)?;
        }
        Ok(())
    }

    fn end_of_line_comment(&mut self, mut held: Held<'s>, at: Position) -> Step {
        let Some(frame) = self.frames.last() else {
            self.held.push(held);
            return Ok(());
        };
        if !frame.list {
            if let Some(key) = &frame.key {
                if key.line == at.line {
                    // After a key on its line: before the pair, which comes with its value.
                    return self.file(held, true);
                }
            }
        }
        // (The case of a comment on the line of the last item is `before_deferred`.)
        held.into_collection = true;
        self.held.push(held);
        Ok(())
    }

    fn is_key_slot(&self) -> bool {
        self.frames
            .last()
            .is_some_and(|f| !f.list && !f.flow && f.key.is_none())
    }

    fn scalar(&mut self, text: Cow<'s, str>, style: ScalarStyle, at: Position) -> Step {
        self.document_end = self.document_end.max(at.end);
        if self.is_key_slot() {
            self.reader.last_content_end = at.end;
            if style == ScalarStyle::Plain && matches!(resolve_typed(&text), Ok(Some(_))) {
                // A key that is not a string: the reader refuses it.
                return Err(decline());
            }
            return self.key(text, at);
        }
        let value = if style == ScalarStyle::Plain {
            match resolve_typed(&text) {
                Ok(Some(value)) => ReadValue::Typed(value),
                Ok(None) => ReadValue::Str(Text::from_cow(text)),
                // An integer past 64 bits: the reader refuses it.
                Err(_) => return Err(decline()),
            }
        } else {
            ReadValue::Str(Text::from_cow(text))
        };
        let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
        if block {
            // The reader finds a block scalar's header by searching from the previous token:
            // in a comment in between (`- a # x>y`) it could find the wrong one; and a comment
            // on the header line itself is overwritten or misplaced when the value changes. So
            // the line where the search lands must hold no comment (from the previous token on).
            let from = self.reader.last_content_end.min(at.start);
            let header = self.source[from..at.start]
                .find(['|', '>'])
                .map(|i| from + i);
            let line = header.and_then(|header| {
                let end = header + self.source[header..].find('\n')?;
                Some(line_start(self.source, header).max(from)..end)
            });
            match line {
                Some(line) if !self.source[line.clone()].contains('#') => {}
                _ => return Err(decline()),
            }
        }
        let range = self.reader.scalar_range(style, at, None);
        self.reader.last_content_end = at.end;
        let span = Span {
            range,
            style: match style {
                ScalarStyle::SingleQuoted => Style::SingleQuoted,
                ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                ScalarStyle::Literal => Style::Literal,
                ScalarStyle::Folded => Style::Folded,
                _ => Style::Plain,
            },
        };
        let context = match self.frames.last() {
            Some(frame) => LeafContext::new(
                frame.flow,
                frame.indent,
                (frame.list && !frame.flow).then_some(frame.indent),
                false,
            ),
            None => LeafContext::default(),
        };
        let leaf = Leaf {
            value,
            span,
            context,
            text_start: at.start,
        };
        self.file_held()?;
        let depth = self.frames.len();
        let Some(frame) = self.frames.last_mut() else {
            // The null of an empty document becomes an empty root mapping.
            if !leaf.value.is_null() {
                return Err(decline());
            }
            self.root = Root::Empty;
            return Ok(());
        };
        frame.last_line = at.end_line;
        frame.ends_with_block = block;
        if frame.list {
            if !frame.discarded {
                self.deferred = Some(Deferred {
                    key: None,
                    leaf: Some(leaf),
                });
            }
            return Ok(());
        }
        let Some(key) = frame.key.take() else {
            return Err(decline());
        };
        if depth == 1 && key.sops {
            return self.sops_entry(key.start);
        }
        if !frame.discarded {
            self.deferred = Some(Deferred {
                key: Some(key.text),
                leaf: Some(leaf),
            });
        }
        Ok(())
    }

    fn key(&mut self, text: Cow<'s, str>, at: Position) -> Step {
        let depth = self.frames.len();
        let Some(frame) = self.frames.last_mut() else {
            return Err(decline());
        };
        if let Some(from) = frame.keys_from {
            if is_duplicate(frame, &self.keys[from..], &text) {
                return Err(decline());
            }
            self.keys.push(text.clone());
        }
        for held in std::mem::take(&mut self.held) {
            self.file(held, true)?;
        }
        let sops = depth == 1 && text == "sops";
        if sops {
            if self.mode == Mode::Plain || self.sops_in_document {
                // Encrypted already; or a second `sops` entry, which the writer would keep.
                return Err(decline());
            }
            self.sops_in_document = true;
        }
        let Some(frame) = self.frames.last_mut() else {
            return Err(decline());
        };
        frame.key = Some(Key {
            text,
            line: at.line,
            start: at.start,
            sops,
        });
        Ok(())
    }

    fn collection(&mut self, list: bool, flow: bool, at: Position) -> Step {
        if self.is_key_slot() {
            // A complex key: the reader refuses it.
            return Err(decline());
        }
        self.document_end = self.document_end.max(at.end);
        self.reader.last_content_end = at.end;
        let indent = if list && !flow {
            self.reader.dash_column(at)
        } else {
            at.column
        };
        if list && self.frames.is_empty() {
            return Err(decline());
        }
        let in_list = self.frames.last().is_some_and(|f| f.list);
        let (outside, inside): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|p| in_list && !p.into_collection);
        for held in outside {
            self.file(held, true)?;
        }
        let depth = self.frames.len();
        let flow = flow || self.frames.last().is_some_and(|f| f.flow);
        let discarded = match self.frames.last_mut() {
            None => {
                if flow || self.root != Root::None {
                    return Err(decline());
                }
                self.root = Root::Open;
                false
            }
            Some(parent) if parent.list => parent.discarded,
            Some(parent) => match &parent.key {
                Some(key) => parent.discarded || (depth == 1 && key.sops),
                None => return Err(decline()),
            },
        };
        // An empty flow collection is visited as one item when it ends (an end-of-line comment
        // may yet go before it).
        if !discarded && !flow {
            match self.frames.last_mut() {
                None => {}
                Some(parent) if parent.list => {
                    let index = parent.visited;
                    parent.visited += 1;
                    self.walker.push_index(index);
                }
                Some(parent) => {
                    if let Some(key) = &parent.key {
                        self.walker.push_key(key.text.as_ref());
                    }
                }
            }
            self.walker.open();
        }
        let first_document = self.documents == 0;
        self.frames.push(Frame {
            list,
            flow,
            indent,
            key: None,
            last_line: 0,
            visited: 0,
            discarded,
            ends_with_block: false,
            keys_from: (first_document && !list).then_some(self.keys.len()),
            seen: None,
        });
        for held in inside {
            self.file(held, true)?;
        }
        Ok(())
    }

    fn end_collection(&mut self, at: Position) -> Step {
        let Some(frame) = self.frames.last() else {
            return Ok(());
        };
        if frame.flow {
            self.document_end = self.document_end.max(at.end);
            self.reader.last_content_end = at.end;
        }
        // Foot comments: those indented at least as deep as the collection, in order.
        let claimed = if frame.flow {
            self.held.len()
        } else {
            self.held
                .iter()
                .take_while(|p| p.column >= frame.indent)
                .count()
        };
        let foot: Vec<Held<'s>> = self.held.drain(..claimed).collect();
        for held in foot {
            self.file(held, true)?;
        }
        let Some(frame) = self.frames.pop() else {
            return Err(decline());
        };
        if let Some(from) = frame.keys_from {
            self.keys.truncate(from);
        }
        // The root stays open until its document ends (comments may still be filed in it).
        if !frame.discarded && !frame.flow && !self.frames.is_empty() {
            self.walker.close();
        }
        let depth = self.frames.len();
        let Some(parent) = self.frames.last_mut() else {
            self.root = Root::Closed {
                indent: frame.indent,
                ends_with_block: frame.ends_with_block,
            };
            return Ok(());
        };
        parent.last_line = if frame.flow { at.end_line } else { 0 };
        parent.ends_with_block = frame.ends_with_block && !frame.flow;
        if parent.list {
            if parent.discarded {
            } else if frame.flow {
                self.deferred = Some(Deferred {
                    key: None,
                    leaf: None,
                });
            } else {
                self.walker.pop_index(true);
            }
            return Ok(());
        }
        let Some(key) = parent.key.take() else {
            return Err(decline());
        };
        if depth == 1 && key.sops {
            return self.sops_entry(key.start);
        }
        if parent.discarded {
        } else if frame.flow {
            self.deferred = Some(Deferred {
                key: Some(key.text),
                leaf: None,
            });
        } else {
            self.walker.pop_key();
        }
        Ok(())
    }

    /// The top-level `sops` entry whose key is at `start` is complete.
    fn sops_entry(&mut self, start: usize) -> Step {
        let line = line_start(self.source, start);
        self.first_sops.get_or_insert(line);
        let end = line_end_after(self.source, self.reader.last_content_end);
        self.walker.sops(line..end)
    }

    fn end_document(&mut self) -> Step {
        if !self.frames.is_empty() {
            return Err(decline());
        }
        match self.root {
            Root::Open => return Err(decline()),
            Root::Closed { .. } => {}
            // A null (or, were there one, missing) root: an empty mapping.
            Root::None | Root::Empty => {
                self.root = Root::Closed {
                    indent: 0,
                    ends_with_block: false,
                };
                self.walker.open();
            }
        }
        for held in std::mem::take(&mut self.held) {
            self.file_at_root(held)?;
        }
        let Root::Closed {
            indent,
            ends_with_block,
        } = self.root
        else {
            return Err(decline());
        };
        self.walker.close();
        self.walker.document_end(DocumentEnd {
            insert_at: line_end_after(self.source, self.document_end),
            top_indent: indent,
            ends_with_block,
        })?;
        self.root = Root::None;
        self.sops_in_document = false;
        self.documents += 1;
        self.walker.settled()
    }
}

/// Whether `key` is already one of the frame's mapping's `keys`. Small mappings are scanned;
/// larger ones keep a set of key hashes, and a hash seen before is confirmed by a scan (as the
/// reader does).
fn is_duplicate(frame: &mut Frame<'_>, keys: &[Cow<'_, str>], key: &str) -> bool {
    let scan = || keys.iter().any(|k| k == key);
    match &mut frame.seen {
        Some(seen) => !seen.insert(key_hash(key)) && scan(),
        None => {
            if scan() {
                return true;
            }
            if keys.len() >= SCAN_KEYS {
                let mut seen: HashSet<u64> = keys.iter().map(|k| key_hash(k)).collect();
                seen.insert(key_hash(key));
                frame.seen = Some(seen);
            }
            false
        }
    }
}

/// FNV-1a: each key is hashed once, and the set confirms a match by comparison.
fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The tree walk's test for a list element that is an encrypted comment (sops writes those as
/// plain elements): a sealed string of type `comment` whose fields parse.
fn is_sealed_comment(leaf: &Leaf<'_>) -> bool {
    use crate::crypt::value;
    match &leaf.value {
        ReadValue::Str(text) => {
            let text = text.as_str();
            value::is_sealed(text)
                && value::type_name_of(text) == Some("comment")
                && value::parse(text).is_ok()
        }
        ReadValue::Typed(_) => false,
    }
}
