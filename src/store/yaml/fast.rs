//! A fast event scanner for the YAML that configuration files are made of, with granit as the
//! reference it must match.
//!
//! granit's general scanner and parser state machine is about half of the time of loading a
//! large file. Most files use a small part of YAML: block mappings and sequences, plain and
//! quoted scalars on one line, literal and folded block scalars, comments and document markers.
//! For that subset this module produces the very events granit produces, with the same source
//! positions ([`Position`]), so the [`Reader`](super::read) that builds trees, comments and
//! layouts from them is shared by both paths and cannot tell them apart.
//!
//! Anything else declines: flow collections (but for the empty `[]` and `{}`), anchors,
//! aliases, tags, directives, `?` keys, multi-line plain or quoted scalars, block scalar
//! indentation indicators, a top level that is not a block mapping, tabs, a byte order mark,
//! unusual characters, and every construct that is not valid YAML. A decline can come after events were delivered; `read`
//! then discards its reader and starts over with granit, so declining is always safe and the
//! rules below only need to be exact for what they accept. The differential tests
//! (`fast/tests.rs`) hold this scanner to granit's output, event by event.
//!
//! What granit's output looks like, and so what is reproduced here:
//! * events come in source order; a collection ends where the token that ends it starts (the
//!   next line's first token, a document marker, or the end of the input), after the comments
//!   that precede that token;
//! * a mapping starts at its first key; a block sequence at its first `-`, but an indentless
//!   one (a mapping value whose `-` stand at the key column) where its first entry's content
//!   starts, or at the end of that line when the entry is empty (after a comment on the line);
//! * an empty mapping value is a `~` scalar at its `:`, an empty sequence entry one at the end
//!   of the `-` line; each comes among the comments in source order;
//! * a block scalar spans from its first content character to the first non-space character
//!   of the line that ends it, and comes before the comment on its header line;
//! * an empty document (`---` then nothing) has a `~` scalar and its end at the end of the
//!   `---`, after the comments that follow it;
//! * a comment after a token on its line is `Right`; one on its own line is `Above` when the
//!   next token (comment included) is on the next line, `Last` when nothing but the end of
//!   the stream follows, `Free` otherwise.

use std::borrow::Cow;

use granit_parser::{Event, Placement, ScalarStyle, StructureStyle};

use super::read::Position;

/// Runs the scanner over `source`, handing each event to `sink` (which returns `false` to
/// stop). Returns `true` when the whole stream was delivered; `false` when the scanner
/// declined or the sink stopped, in which case the caller starts over with granit.
pub(crate) fn scan<'s>(source: &'s str, sink: impl FnMut(Event<'s>, Position) -> bool) -> bool {
    plain_characters(source.as_bytes()) && scan_checked(source, sink)
}

/// [`scan`] of a source whose characters the caller has checked with [`plain_characters`]
/// (a streaming pass checks them a piece at a time).
pub(crate) fn scan_checked<'s>(
    source: &'s str,
    sink: impl FnMut(Event<'s>, Position) -> bool,
) -> bool {
    let mut scanner = Scanner {
        src: source,
        b: source.as_bytes(),
        line_start: 0,
        line: 1,
        frames: Vec::new(),
        awaiting: None,
        pending: Vec::new(),
        document: Document::Before,
        marker_end: Mark {
            offset: 0,
            line: 1,
            column: 0,
        },
        lines: Vec::new(),
        sink,
    };
    scanner.stream().is_ok()
}

/// Whether every character is one the scanner reads as granit does: printable, no tab, no byte
/// order mark, no line break but LF and CRLF.
pub(crate) fn plain_characters(b: &[u8]) -> bool {
    // Blocks of printable ASCII and line feeds, the usual content, are checked without a branch
    // per byte (so that the check vectorizes); a block holding anything else goes byte by byte.
    const BLOCK: usize = 32;
    let mut i = 0;
    while i < b.len() {
        if let Some(block) = b.get(i..i + BLOCK) {
            let plain = block.iter().fold(true, |ok, &c| {
                ok & ((c.wrapping_sub(0x20) < 0x5f) | (c == b'\n'))
            });
            if plain {
                i += BLOCK;
                continue;
            }
        }
        let end = (i + BLOCK).min(b.len());
        while i < end {
            if !plain_at(b, i) {
                return false;
            }
            i += 1;
        }
    }
    true
}

/// Whether the byte at `i` starts (or continues) a character [`plain_characters`] accepts.
fn plain_at(b: &[u8], i: usize) -> bool {
    let next = |n: usize| b.get(i + n).copied();
    match b[i] {
        0x20..=0x7e | b'\n' => true,
        b'\r' => next(1) == Some(b'\n'),
        // C1 controls, NEL among them (U+0080..U+009F).
        0xc2 => !matches!(next(1), Some(0x80..=0x9f)),
        // LS and PS (U+2028, U+2029), which some YAML readers take for line breaks.
        0xe2 => !(next(1) == Some(0x80) && matches!(next(2), Some(0xa8 | 0xa9))),
        // The byte order mark (U+FEFF) and the non-characters U+FFFE, U+FFFF.
        0xef => {
            !((next(1) == Some(0xbb) && next(2) == Some(0xbf))
                || (next(1) == Some(0xbf) && matches!(next(2), Some(0xbe | 0xbf))))
        }
        0x80.. => true,
        // Tabs, other controls, DEL.
        _ => false,
    }
}

/// Why scanning stopped early: the input is outside the subset, or the sink asked to stop.
struct Stop;

type Step = Result<(), Stop>;

/// A source position, as granit's markers give it: byte offset, line (from 1) and column in
/// characters (from 0).
#[derive(Clone, Copy)]
struct Mark {
    offset: usize,
    line: usize,
    column: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Map,
    Seq,
    /// A sequence that is a mapping value with its `-` at the key column.
    IndentlessSeq,
}

struct Frame {
    kind: Kind,
    /// Column of the keys or of the `-` indicators.
    indent: usize,
}

/// A comment held until the next token is known (its placement depends on it).
struct PendingComment {
    start: Mark,
    end: usize,
    right: bool,
}

#[derive(PartialEq, Eq)]
enum Document {
    /// No document has started yet.
    Before,
    /// A document is open; `root` once its top-level mapping has started (without, it was
    /// opened by `---`).
    Open { root: bool },
    /// The last document ended with `...`.
    Closed,
}

/// What [`Scanner::begin`] found for a line's first token.
enum Begin {
    /// The token continues the innermost open collection.
    Same,
    /// The token starts a collection nested in the innermost one (or the root).
    Nested { indentless: bool },
}

/// One line of a block scalar: its text past the indentation, `None` when blank.
struct BlockLine<'s> {
    text: Option<&'s str>,
    line_break: bool,
}

/// A scalar token read from a line.
struct Token<'s> {
    text: Cow<'s, str>,
    style: ScalarStyle,
    start: usize,
    end: usize,
    /// Where the rest of the line starts (past the token, or at a plain scalar's comment).
    next: usize,
    /// A `:` (and a space or the line's end) follows: the token is a mapping key.
    key: bool,
    /// An empty flow collection, `[]` (`Some(false)`) or `{}` (`Some(true)`), as old sops
    /// versions write empty key lists; `text` and `style` are then unused.
    empty_flow: Option<bool>,
}

struct Scanner<'s, F> {
    src: &'s str,
    b: &'s [u8],
    /// Start of the line being read, and its number.
    line_start: usize,
    line: usize,
    frames: Vec<Frame>,
    /// Where the empty scalar goes if the innermost collection's open value (after `key:` or
    /// `-`) turns out to be empty.
    awaiting: Option<Mark>,
    pending: Vec<PendingComment>,
    document: Document,
    /// The end of the last `---`, where an empty document's scalar and end go.
    marker_end: Mark,
    /// Scratch for block scalars.
    lines: Vec<BlockLine<'s>>,
    sink: F,
}

fn decline<T>() -> Result<T, Stop> {
    Err(Stop)
}

impl<'s, F: FnMut(Event<'s>, Position) -> bool> Scanner<'s, F> {
    fn stream(&mut self) -> Step {
        let origin = Mark {
            offset: 0,
            line: 1,
            column: 0,
        };
        self.emit(Event::StreamStart, origin, origin, None)?;
        while self.line_start < self.b.len() {
            let start = self.line_start;
            let newline = memchr::memchr(b'\n', &self.b[start..]);
            let (end, next) = match newline {
                Some(n) => {
                    let nl = start + n;
                    let end = if nl > start && self.b[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    };
                    (end, Some(nl + 1))
                }
                None => (self.b.len(), None),
            };
            let before = self.line;
            self.line_content(start, end)?;
            // A block scalar reads on past its header line and leaves the position at the line
            // that ends it.
            if self.line == before {
                match next {
                    Some(next) => {
                        self.line_start = next;
                        self.line += 1;
                    }
                    None => self.line_start = self.b.len(),
                }
            }
        }
        let eof = self.eof();
        match self.document {
            Document::Open { root: true } => self.end_document(eof, eof)?,
            Document::Open { root: false } => self.end_empty_document(None, None)?,
            Document::Closed => self.flush(None, None)?,
            Document::Before => return decline(),
        }
        self.emit(Event::StreamEnd, eof, eof, None)
    }

    /// The end of the input: granit's marker there.
    fn eof(&self) -> Mark {
        self.eof_at(self.line)
    }

    /// The end-of-input marker, the input having `line` lines.
    fn eof_at(&self, line: usize) -> Mark {
        let len = self.b.len();
        let last = memchr::memrchr(b'\n', self.b).map_or(0, |i| i + 1);
        Mark {
            offset: len,
            line,
            column: chars(&self.src[last..]),
        }
    }

    fn mark(&self, offset: usize) -> Mark {
        Mark {
            offset,
            line: self.line,
            column: chars(&self.src[self.line_start..offset]),
        }
    }

    fn emit(&mut self, event: Event<'s>, start: Mark, end: Mark, indent: Option<usize>) -> Step {
        let at = Position {
            start: start.offset,
            end: end.offset,
            line: start.line,
            end_line: end.line,
            column: start.column,
            indent,
        };
        if (self.sink)(event, at) {
            Ok(())
        } else {
            Err(Stop)
        }
    }

    fn emit_empty(&mut self, event: Event<'s>, at: Mark) -> Step {
        self.emit(event, at, at, None)
    }

    fn empty_scalar(&mut self, at: Mark) -> Step {
        self.emit_empty(
            Event::Scalar(Cow::Borrowed("~"), ScalarStyle::Plain, 0, None),
            at,
        )
    }

    /// One line, `start..end` without its line break.
    fn line_content(&mut self, start: usize, end: usize) -> Step {
        let b = self.b;
        let mut i = start;
        while i < end && b[i] == b' ' {
            i += 1;
        }
        if i == end {
            return Ok(());
        }
        let indent = i - start;
        if b[i] == b'#' {
            self.pending.push(PendingComment {
                start: Mark {
                    offset: i,
                    line: self.line,
                    column: indent,
                },
                end,
                right: false,
            });
            return Ok(());
        }
        if indent == 0 && end - i >= 3 && (end - i == 3 || b[i + 3] == b' ') {
            match &b[i..i + 3] {
                b"---" => return self.document_start(i, end),
                b"..." => return self.document_end(i, end),
                _ => {}
            }
        }
        self.content_line(i, end)
    }

    fn document_start(&mut self, at: usize, end: usize) -> Step {
        let mark = self.mark(at);
        match self.document {
            Document::Open { root: true } => self.end_document(mark, mark)?,
            Document::Open { root: false } => self.end_empty_document(Some(mark.line), None)?,
            Document::Before | Document::Closed => self.flush(Some(mark.line), None)?,
        }
        let marker_end = self.mark(at + 3);
        self.emit(Event::DocumentStart(true, None), mark, marker_end, None)?;
        self.document = Document::Open { root: false };
        self.marker_end = marker_end;
        self.marker_rest(at + 3, end)
    }

    fn document_end(&mut self, at: usize, end: usize) -> Step {
        let mark = self.mark(at);
        let marker_end = self.mark(at + 3);
        match self.document {
            Document::Open { root: true } => self.end_document(mark, marker_end)?,
            Document::Open { root: false } => {
                self.end_empty_document(Some(mark.line), Some((mark, marker_end)))?;
            }
            Document::Before | Document::Closed => return decline(),
        }
        self.document = Document::Closed;
        self.marker_rest(at + 3, end)
    }

    /// After `---` or `...`: nothing but a comment.
    fn marker_rest(&mut self, from: usize, end: usize) -> Step {
        let j = skip_spaces(self.b, from, end);
        if j == end {
            Ok(())
        } else if self.b[j] == b'#' && j > from {
            self.right_comment(j, end);
            Ok(())
        } else {
            decline()
        }
    }

    /// Closes the open document at `at` (a marker or the end of the input); `end` is where the
    /// document end event ends (past an explicit `...`).
    fn end_document(&mut self, at: Mark, end: Mark) -> Step {
        let empty = self.awaiting.take();
        self.flush(Some(at.line), empty)?;
        while let Some(frame) = self.frames.pop() {
            self.emit_empty(end_event(frame.kind), at)?;
        }
        self.emit(Event::DocumentEnd, at, end, None)
    }

    /// Closes a document that has nothing but `---` (and comments): its null scalar and end
    /// stand at the end of the `---`, after the comments; an explicit `...` (`end`) is the end's
    /// own span.
    fn end_empty_document(&mut self, next_line: Option<usize>, end: Option<(Mark, Mark)>) -> Step {
        self.flush(next_line, None)?;
        let at = self.marker_end;
        self.empty_scalar(at)?;
        let (start, stop) = end.unwrap_or((at, at));
        self.emit(Event::DocumentEnd, start, stop, None)
    }

    fn right_comment(&mut self, at: usize, end: usize) {
        self.pending.push(PendingComment {
            start: self.mark(at),
            end,
            right: true,
        });
    }

    /// Emits the held comments, now that the next token's line is known (`None`: the stream
    /// ends), with the empty scalar `empty` among them in source order.
    fn flush(&mut self, next_line: Option<usize>, mut empty: Option<Mark>) -> Step {
        let pending = std::mem::take(&mut self.pending);
        for (n, comment) in pending.iter().enumerate() {
            if let Some(at) = empty.filter(|at| at.offset <= comment.start.offset) {
                self.empty_scalar(at)?;
                empty = None;
            }
            let next = match pending.get(n + 1) {
                Some(following) => Some(following.start.line),
                None => next_line,
            };
            let placement = if comment.right {
                Placement::Right
            } else {
                match next {
                    None => Placement::Last,
                    Some(line) if line == comment.start.line + 1 => Placement::Above,
                    Some(_) => Placement::Free,
                }
            };
            self.comment(comment, placement)?;
        }
        if let Some(at) = empty {
            self.empty_scalar(at)?;
        }
        // Keep the allocation.
        self.pending = pending;
        self.pending.clear();
        Ok(())
    }

    fn comment(&mut self, comment: &PendingComment, placement: Placement) -> Step {
        let text = &self.src[comment.start.offset + 1..comment.end];
        let end = Mark {
            offset: comment.end,
            line: comment.start.line,
            column: 0,
        };
        self.emit(
            Event::Comment(Cow::Borrowed(text), placement),
            comment.start,
            end,
            None,
        )
    }

    /// Settles what a line's first token (a `-` or a key at `col`) does to the open
    /// collections: fills or nests into an open value, closes the collections it is outdented
    /// from, and checks that it continues the innermost one.
    fn begin(&mut self, col: usize, dash: bool, mark: Mark) -> Result<Begin, Stop> {
        let Some(top) = self.frames.last() else {
            match self.document {
                Document::Before => {
                    self.flush(Some(mark.line), None)?;
                    self.emit_empty(Event::DocumentStart(false, None), mark)?;
                }
                Document::Open { root: false } => self.flush(Some(mark.line), None)?,
                // A bare document after `...`, or content after the root closed.
                _ => return decline(),
            }
            if dash {
                // The reader wants a mapping at the top; leave sequences to granit.
                return decline();
            }
            self.document = Document::Open { root: true };
            return Ok(Begin::Nested { indentless: false });
        };
        let (kind, indent) = (top.kind, top.indent);
        if let Some(empty) = self.awaiting.take() {
            let indentless = dash && col == indent && kind == Kind::Map;
            if col > indent || indentless {
                self.flush(Some(mark.line), None)?;
                return Ok(Begin::Nested { indentless });
            }
            self.flush(Some(mark.line), Some(empty))?;
        } else {
            self.flush(Some(mark.line), None)?;
        }
        loop {
            let Some(top) = self.frames.last() else {
                return decline();
            };
            let ends_indentless = top.kind == Kind::IndentlessSeq && !dash && col == top.indent;
            if col < top.indent || ends_indentless {
                let kind = top.kind;
                self.frames.pop();
                if self.frames.is_empty() {
                    // Outdented past the top-level mapping.
                    return decline();
                }
                self.emit_empty(end_event(kind), mark)?;
                continue;
            }
            if col > top.indent {
                // A continuation line, or not YAML.
                return decline();
            }
            return match (top.kind, dash) {
                (Kind::Map, false) | (Kind::Seq | Kind::IndentlessSeq, true) => Ok(Begin::Same),
                _ => decline(),
            };
        }
    }

    /// A line holding content, from its first non-space character `at` to `end`.
    fn content_line(&mut self, at: usize, end: usize) -> Step {
        let b = self.b;
        let mut i = at;
        let mut first = true;
        // Leading `-` indicators, each opening an entry (and maybe a nested sequence).
        while b[i] == b'-' && (i + 1 == end || b[i + 1] == b' ') {
            // Only spaces and dashes precede: the column is the byte count.
            let col = i - self.line_start;
            let mark = Mark {
                offset: i,
                line: self.line,
                column: col,
            };
            let j = skip_spaces(b, i + 1, end);
            let only_comment = j < end && b[j] == b'#';
            let mut commented = false;
            if first {
                match self.begin(col, true, mark)? {
                    Begin::Same => {}
                    Begin::Nested { indentless: true } => {
                        // Starts where the entry's content does; a comment alone on the line
                        // comes first and the start moves to the line's end.
                        let start = if j == end || only_comment {
                            if only_comment {
                                let comment = PendingComment {
                                    start: self.mark(j),
                                    end,
                                    right: true,
                                };
                                self.comment(&comment, Placement::Right)?;
                                commented = true;
                            }
                            self.mark(end)
                        } else {
                            self.mark(j)
                        };
                        self.emit_empty(
                            Event::SequenceStart(StructureStyle::Block, 0, None),
                            start,
                        )?;
                        self.frames.push(Frame {
                            kind: Kind::IndentlessSeq,
                            indent: col,
                        });
                    }
                    Begin::Nested { indentless: false } => self.open_seq(mark, col)?,
                }
                first = false;
            } else {
                self.open_seq(mark, col)?;
            }
            if j == end || only_comment {
                if only_comment && !commented {
                    self.right_comment(j, end);
                }
                self.awaiting = Some(self.mark(end));
                return Ok(());
            }
            i = j;
        }
        let token = self.token(i, end)?;
        if !token.key {
            if first {
                // A bare scalar line: a multi-line scalar, or a scalar document.
                return decline();
            }
            return self.value_token(token, end);
        }
        if token.end - token.start > 1000 {
            // granit refuses simple keys past 1024 characters; leave the limit to it.
            return decline();
        }
        let mark = self.mark(token.start);
        let col = mark.column;
        if first {
            if let Begin::Nested { .. } = self.begin(col, false, mark)? {
                self.open_map(mark, col)?;
            }
        } else {
            self.open_map(mark, col)?;
        }
        let key_end = self.mark(token.end);
        self.emit(
            Event::Scalar(token.text, token.style, 0, None),
            mark,
            key_end,
            Some(col),
        )?;
        let colon = token.next;
        let j = skip_spaces(b, colon + 1, end);
        if j == end || b[j] == b'#' {
            if j < end {
                self.right_comment(j, end);
            }
            self.awaiting = Some(self.mark(colon));
            return Ok(());
        }
        let value = self.token(j, end)?;
        if value.key {
            // `a: b: c`.
            return decline();
        }
        self.value_token(value, end)
    }

    fn open_seq(&mut self, mark: Mark, col: usize) -> Step {
        self.emit_empty(Event::SequenceStart(StructureStyle::Block, 0, None), mark)?;
        self.frames.push(Frame {
            kind: Kind::Seq,
            indent: col,
        });
        Ok(())
    }

    fn open_map(&mut self, mark: Mark, col: usize) -> Step {
        self.emit_empty(Event::MappingStart(StructureStyle::Block, 0, None), mark)?;
        self.frames.push(Frame {
            kind: Kind::Map,
            indent: col,
        });
        Ok(())
    }

    /// A value scalar (not a key) and what follows it on the line.
    fn value_token(&mut self, token: Token<'s>, end: usize) -> Step {
        if matches!(token.style, ScalarStyle::Literal | ScalarStyle::Folded) {
            return self.block_scalar(token.start, token.style, end);
        }
        let start = self.mark(token.start);
        let stop = self.mark(token.end);
        match token.empty_flow {
            None => self.emit(
                Event::Scalar(token.text, token.style, 0, None),
                start,
                stop,
                None,
            )?,
            Some(map) => {
                // Each bracket is its event's span.
                let inner = self.mark(token.start + 1);
                let (open, close) = if map {
                    (
                        Event::MappingStart(StructureStyle::Flow, 0, None),
                        Event::MappingEnd,
                    )
                } else {
                    (
                        Event::SequenceStart(StructureStyle::Flow, 0, None),
                        Event::SequenceEnd,
                    )
                };
                self.emit(open, start, inner, None)?;
                self.emit(close, inner, stop, None)?;
            }
        }
        let j = skip_spaces(self.b, token.next, end);
        if j == end {
            Ok(())
        } else if self.b[j] == b'#' && j > token.end {
            self.right_comment(j, end);
            Ok(())
        } else {
            decline()
        }
    }

    /// Reads the scalar token at `i`: plain, quoted, or (style only) a block scalar header.
    fn token(&self, i: usize, end: usize) -> Result<Token<'s>, Stop> {
        let b = self.b;
        let c = b[i];
        let (text, style, token_end) = match c {
            b'\'' => {
                let (text, close) = single_quoted(self.src, i + 1, end)?;
                (text, ScalarStyle::SingleQuoted, close + 1)
            }
            b'"' => {
                let (text, close) = double_quoted(self.src, i + 1, end)?;
                (text, ScalarStyle::DoubleQuoted, close + 1)
            }
            b'|' | b'>' => {
                let style = if c == b'|' {
                    ScalarStyle::Literal
                } else {
                    ScalarStyle::Folded
                };
                return Ok(Token {
                    text: Cow::Borrowed(""),
                    style,
                    start: i,
                    end: i + 1,
                    next: i + 1,
                    key: false,
                    empty_flow: None,
                });
            }
            b'[' | b'{' if b.get(i + 1) == Some(if c == b'[' { &b']' } else { &b'}' }) => {
                return Ok(Token {
                    text: Cow::Borrowed(""),
                    style: ScalarStyle::Plain,
                    start: i,
                    end: i + 2,
                    next: i + 2,
                    key: false,
                    empty_flow: Some(c == b'{'),
                });
            }
            // A plain scalar may start with `-` (`-1`), but not with `- `.
            b'-' if i + 1 < end && b[i + 1] != b' ' => return self.plain(i, end),
            // Indicators that start something else, or that granit may read differently.
            b'-' | b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!'
            | b'%' | b'@' | b'`' => return decline(),
            _ => return self.plain(i, end),
        };
        let key =
            b.get(token_end) == Some(&b':') && (token_end + 1 == end || b[token_end + 1] == b' ');
        Ok(Token {
            text,
            style,
            start: i,
            end: token_end,
            next: token_end,
            key,
            empty_flow: None,
        })
    }

    /// A plain scalar from `i`: up to `: ` (a key), ` #` (a comment) or the line's end.
    fn plain(&self, i: usize, end: usize) -> Result<Token<'s>, Stop> {
        let b = self.b;
        let mut key = false;
        // Where the text ends, before trailing spaces: at `: `, ` #` or the line's end. Only
        // `:` and `#` can end it, and values are often long: jump from one to the next.
        let mut colon_or_comment = end;
        let mut k = i + 1;
        while let Some(n) = memchr::memchr2(b':', b'#', &b[k..end]) {
            let at = k + n;
            if b[at] == b':' {
                if at + 1 == end || b[at + 1] == b' ' {
                    key = true;
                    colon_or_comment = at;
                    break;
                }
            } else if b[at - 1] == b' ' {
                colon_or_comment = at;
                break;
            }
            k = at + 1;
        }
        let k = colon_or_comment;
        let mut stop = k;
        while b[stop - 1] == b' ' {
            stop -= 1;
        }
        if key && stop != k {
            // `key :`, which the fast path leaves to granit.
            return decline();
        }
        Ok(Token {
            text: Cow::Borrowed(&self.src[i..stop]),
            style: ScalarStyle::Plain,
            start: i,
            end: stop,
            next: stop,
            key,
            empty_flow: None,
        })
    }

    /// A `|` or `>` block scalar whose header starts at `header`.
    fn block_scalar(&mut self, header: usize, style: ScalarStyle, end: usize) -> Step {
        let b = self.b;
        let mut k = header + 1;
        let chomp = match b.get(k) {
            Some(b'-') => {
                k += 1;
                Chomp::Strip
            }
            Some(b'+') => {
                k += 1;
                Chomp::Keep
            }
            _ => Chomp::Clip,
        };
        if k < end && b[k] != b' ' {
            // An indentation indicator, or not YAML.
            return decline();
        }
        let j = skip_spaces(b, k, end);
        let header_comment = if j == end {
            None
        } else if b[j] == b'#' && j > k {
            Some(PendingComment {
                start: self.mark(j),
                end,
                right: true,
            })
        } else {
            return decline();
        };
        let parent = self.frames.last().map_or(0, |f| f.indent);
        // The lines of the scalar, from the one after the header.
        let Some(newline) = memchr::memchr(b'\n', &b[end..]) else {
            return decline();
        };
        let mut line_start = end + newline + 1;
        let mut line = self.line + 1;
        let mut indent = None;
        let mut lines = std::mem::take(&mut self.lines);
        lines.clear();
        let (stop, first) = loop {
            if line_start >= b.len() {
                break (self.eof_at(line), None);
            }
            let (text_end, next) = match memchr::memchr(b'\n', &b[line_start..]) {
                Some(n) => {
                    let nl = line_start + n;
                    let text_end = if nl > line_start && b[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    };
                    (text_end, Some(nl + 1))
                }
                None => (b.len(), None),
            };
            let spaces = skip_spaces(b, line_start, text_end) - line_start;
            let blank = line_start + spaces == text_end;
            let ind = *indent.get_or_insert(spaces);
            if blank {
                if spaces > ind || lines.is_empty() {
                    // Blank lines holding spaces past the indentation are content, and leading
                    // blank lines take part in detecting the indentation: left to granit.
                    self.lines = lines;
                    return decline();
                }
            } else if spaces < ind {
                break (
                    Mark {
                        offset: line_start + spaces,
                        line,
                        column: spaces,
                    },
                    Some(line_start),
                );
            } else if lines.is_empty() && ind <= parent {
                // Not indented past its parent: an empty scalar.
                self.lines = lines;
                return decline();
            }
            lines.push(BlockLine {
                text: (!blank).then(|| &self.src[line_start + ind..text_end]),
                line_break: next.is_some(),
            });
            match next {
                Some(next) => {
                    line_start = next;
                    line += 1;
                }
                None => {
                    break (self.eof_at(line), None);
                }
            }
        };
        let Some(ind) = indent.filter(|_| !lines.is_empty()) else {
            self.lines = lines;
            return decline();
        };
        let value = block_value(&lines, style, chomp);
        self.lines = lines;
        let start = Mark {
            offset: end + newline + 1 + ind,
            line: self.line + 1,
            column: ind,
        };
        self.emit(
            Event::Scalar(Cow::Owned(value), style, 0, None),
            start,
            stop,
            Some(ind),
        )?;
        if let Some(comment) = header_comment {
            self.pending.push(comment);
        }
        // Go on at the line that ended the scalar (always past the header line).
        self.line = line;
        self.line_start = first.unwrap_or(b.len());
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Chomp {
    Clip,
    Strip,
    Keep,
}

/// A block scalar's value from its lines (which start and end with content, bar trailing
/// blank lines): literal lines joined as they are, folded ones by YAML's folding rules, then
/// the final line breaks per the chomping indicator.
fn block_value(lines: &[BlockLine<'_>], style: ScalarStyle, chomp: Chomp) -> String {
    let last = lines
        .iter()
        .rposition(|l| l.text.is_some())
        .unwrap_or_default();
    let mut value = String::new();
    let mut blanks = 0;
    let mut previous: Option<&str> = None;
    for line in &lines[..=last] {
        let Some(text) = line.text else {
            blanks += 1;
            continue;
        };
        if let Some(prev) = previous {
            let spaced = prev.starts_with(' ') || text.starts_with(' ');
            if style == ScalarStyle::Literal || spaced {
                value.push('\n');
                value.extend(std::iter::repeat_n('\n', blanks));
            } else if blanks == 0 {
                value.push(' ');
            } else {
                value.extend(std::iter::repeat_n('\n', blanks));
            }
        }
        value.push_str(text);
        previous = Some(text);
        blanks = 0;
    }
    match chomp {
        Chomp::Strip => {}
        Chomp::Clip => {
            if lines[last].line_break {
                value.push('\n');
            }
        }
        Chomp::Keep => {
            value.extend(lines[last..].iter().filter(|l| l.line_break).map(|_| '\n'));
        }
    }
    value
}

fn end_event<'s>(kind: Kind) -> Event<'s> {
    match kind {
        Kind::Map => Event::MappingEnd,
        Kind::Seq | Kind::IndentlessSeq => Event::SequenceEnd,
    }
}

fn skip_spaces(b: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && b[i] == b' ' {
        i += 1;
    }
    i
}

/// Characters in `s`, as granit counts columns.
fn chars(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// A single-quoted scalar's text from just past its opening quote; declines when it does not
/// close on the line. Returns the text and the closing quote's offset.
fn single_quoted(src: &str, from: usize, end: usize) -> Result<(Cow<'_, str>, usize), Stop> {
    let b = src.as_bytes();
    let mut owned: Option<String> = None;
    let mut run = from;
    let mut k = from;
    while k < end {
        if b[k] == b'\'' {
            if b.get(k + 1) == Some(&b'\'') && k + 1 < end {
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&src[run..=k]);
                k += 2;
                run = k;
                continue;
            }
            let text = match owned {
                Some(mut s) => {
                    s.push_str(&src[run..k]);
                    Cow::Owned(s)
                }
                None => Cow::Borrowed(&src[from..k]),
            };
            return Ok((text, k));
        }
        k += 1;
    }
    decline()
}

/// A double-quoted scalar's text from just past its opening quote, escapes decoded; declines
/// when it does not close on the line or holds an escape the fast path does not know.
fn double_quoted(src: &str, from: usize, end: usize) -> Result<(Cow<'_, str>, usize), Stop> {
    let b = src.as_bytes();
    let mut owned: Option<String> = None;
    let mut run = from;
    let mut k = from;
    while k < end {
        match b[k] {
            b'"' => {
                let text = match owned {
                    Some(mut s) => {
                        s.push_str(&src[run..k]);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(&src[from..k]),
                };
                return Ok((text, k));
            }
            b'\\' => {
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&src[run..k]);
                let Some(&e) = b.get(k + 1).filter(|_| k + 1 < end) else {
                    // An escaped line break: a multi-line scalar.
                    return decline();
                };
                let (c, len) = match e {
                    b'0' => ('\0', 2),
                    b'a' => ('\x07', 2),
                    b'b' => ('\x08', 2),
                    b't' => ('\t', 2),
                    b'n' => ('\n', 2),
                    b'v' => ('\x0b', 2),
                    b'f' => ('\x0c', 2),
                    b'r' => ('\r', 2),
                    b'e' => ('\x1b', 2),
                    b' ' => (' ', 2),
                    b'"' => ('"', 2),
                    b'/' => ('/', 2),
                    b'\\' => ('\\', 2),
                    b'N' => ('\u{85}', 2),
                    b'_' => ('\u{a0}', 2),
                    b'L' => ('\u{2028}', 2),
                    b'P' => ('\u{2029}', 2),
                    b'x' | b'u' | b'U' => {
                        let digits = match e {
                            b'x' => 2,
                            b'u' => 4,
                            _ => 8,
                        };
                        let hex = src
                            .get(k + 2..k + 2 + digits)
                            .filter(|_| k + 2 + digits <= end);
                        let Some(c) = hex
                            .filter(|h| h.bytes().all(|d| d.is_ascii_hexdigit()))
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32)
                        else {
                            return decline();
                        };
                        (c, 2 + digits)
                    }
                    _ => return decline(),
                };
                s.push(c);
                k += len;
                run = k;
            }
            _ => k += 1,
        }
    }
    decline()
}

#[cfg(test)]
pub(crate) mod tests;
