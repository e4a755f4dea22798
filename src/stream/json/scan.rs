//! A JSON text read as a sequence of events, by the store's own reader.
//!
//! The passes must accept exactly what [`crate::store::json::load`] accepts and read every
//! string and number as it does, or a file would come out differently on the two paths. So
//! the pieces that decide those things are the store reader's ([`Reader::number`],
//! [`Reader::escape`], [`plain_run`], [`push_coerced`]); only the grammar loop is here, kept
//! iterative (with [`MAX_DEPTH`], as the reader) so no input can exhaust the call stack.

use std::ops::Range;

use zeroize::{Zeroize, Zeroizing};

use crate::store::json::read::{plain_run, push_coerced, Reader, MAX_DEPTH};
use crate::store::StoreError;

/// A decoded string: borrowed from the input when it is written there as is (the common case,
/// no copy), else decoded into the walk's buffer.
#[derive(Clone, Copy)]
pub(super) enum Text<'a, 'b> {
    Input(&'a str),
    Decoded(&'b str),
}

impl Text<'_, '_> {
    pub(super) fn as_str(&self) -> &str {
        match self {
            Text::Input(text) | Text::Decoded(text) => text,
        }
    }
}

/// A scalar as the store's reader types it.
pub(super) enum Leaf<'a, 'b> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Text<'a, 'b>),
}

/// What a visitor wants done with an object member's value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Report its events.
    Enter,
    /// Read it through (it must still be valid) without reporting it; its byte range is
    /// handed to [`Visit::skipped`].
    Skip,
}

/// What a walk reports, in text order. `depth` is the nesting of the container concerned (the
/// top-level object is 0), as the store's writer counts it.
pub(super) trait Visit<'a> {
    type Error: From<StoreError>;

    /// A `{` (`object`) or `[` opens a container.
    fn open(&mut self, object: bool) -> Result<(), Self::Error>;

    /// A member key of the object at `depth`; `first` when no member was entered before it.
    fn key(&mut self, key: &str, first: bool, depth: usize) -> Result<Flow, Self::Error>;

    /// The value of a member that [`Visit::key`] skipped, read through.
    fn skipped(&mut self, _value: Range<usize>) -> Result<(), Self::Error> {
        Ok(())
    }

    /// An element of the array at `depth` starts (its value follows).
    fn element(&mut self, index: usize, depth: usize) -> Result<(), Self::Error>;

    /// A scalar value; `in_list` when it is an array element.
    fn leaf(&mut self, leaf: Leaf<'a, '_>, in_list: bool) -> Result<(), Self::Error>;

    /// The value of an entered member (`object`) or of an array element is complete.
    fn end_item(&mut self, object: bool);

    /// The container at `depth` closes after `count` entered members or elements.
    fn close(&mut self, object: bool, count: usize, depth: usize) -> Result<(), Self::Error>;
}

/// How often a walk reports its progress to `release`: rarely enough to cost nothing.
const RELEASE_EVERY: usize = 1 << 20;

struct Frame {
    object: bool,
    /// Members entered, or elements seen.
    count: usize,
}

/// Walks a whole JSON file whose top level must be an object, as the store's reader would read
/// it, reporting to `visit`; any input the reader refuses is an error here too. `text` is the
/// buffer strings with escapes are decoded into (it is wiped before it grows). `release` is told
/// every [`RELEASE_EVERY`] bytes how far the walk has read (see `Sealing::release`).
pub(super) fn walk<'a, V: Visit<'a>>(
    input: &'a [u8],
    visit: &mut V,
    text: &mut Zeroizing<String>,
    release: &dyn Fn(usize),
) -> Result<(), V::Error> {
    let mut r = Reader { input, pos: 0 };
    let mut released = 0;
    r.skip_whitespace();
    match input.get(r.pos) {
        None => return Err(StoreError::Empty.into()),
        Some(b'{') => {}
        // The store's message names the kind of value; the pass only declines.
        Some(_) => {
            return Err(StoreError::Structure {
                path: "(top level)".into(),
                message: "the top level is not an object".into(),
            }
            .into())
        }
    }
    let mut frames: Vec<Frame> = Vec::with_capacity(16);
    // While a member's value is read through: the number of frames it belongs under and where
    // the value starts.
    let mut skip: Option<(usize, usize)> = None;
    loop {
        if r.pos - released >= RELEASE_EVERY {
            released = r.pos;
            release(released);
        }
        // A value starts here.
        r.skip_whitespace();
        let live = skip.is_none();
        let depth = frames.len();
        let in_list = frames.last().is_some_and(|f| !f.object);
        match input.get(r.pos) {
            Some(&open @ (b'{' | b'[')) => {
                if frames.len() >= MAX_DEPTH {
                    return Err(r.error_at(r.pos, "nested too deeply").into());
                }
                r.pos += 1;
                let object = open == b'{';
                if live {
                    visit.open(object)?;
                }
                frames.push(Frame { object, count: 0 });
                r.skip_whitespace();
                let close = if object { b'}' } else { b']' };
                if input.get(r.pos) == Some(&close) {
                    r.pos += 1;
                    frames.pop();
                    if live {
                        visit.close(object, 0, depth)?;
                    }
                } else {
                    next_item(&mut r, &mut frames, &mut skip, visit, text)?;
                    continue;
                }
            }
            Some(b'"') => {
                if live {
                    let value = string(&mut r, text)?;
                    visit.leaf(Leaf::Str(value), in_list)?;
                } else {
                    skip_string(&mut r, text)?;
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let leaf = match r.number()? {
                    crate::tree::Value::Int(int) => Leaf::Int(int),
                    crate::tree::Value::Float(float) => Leaf::Float(float),
                    // The reader types numbers as nothing else.
                    _ => return Err(r.error_at(r.pos, "invalid number").into()),
                };
                if live {
                    visit.leaf(leaf, in_list)?;
                }
            }
            Some(b't' | b'f' | b'n') => {
                let rest = input.get(r.pos..).unwrap_or_default();
                let (leaf, len) = if rest.starts_with(b"true") {
                    (Leaf::Bool(true), 4)
                } else if rest.starts_with(b"false") {
                    (Leaf::Bool(false), 5)
                } else if rest.starts_with(b"null") {
                    (Leaf::Null, 4)
                } else {
                    return Err(r.error_at(r.pos, "invalid literal").into());
                };
                r.pos += len;
                if live {
                    visit.leaf(leaf, in_list)?;
                }
            }
            _ => return Err(r.error_at(r.pos, "expected a value").into()),
        }
        // The value is complete: close every container that ends with it.
        loop {
            match skip {
                // The skipped value itself is complete: its member was never entered.
                Some((level, start)) if frames.len() == level => {
                    skip = None;
                    visit.skipped(start..r.pos)?;
                }
                Some(_) => {}
                None => {
                    if let Some(frame) = frames.last() {
                        visit.end_item(frame.object);
                    }
                }
            }
            let Some(frame) = frames.last() else {
                r.skip_whitespace();
                if r.pos != input.len() {
                    return Err(r.error_at(r.pos, "data after the top-level object").into());
                }
                return Ok(());
            };
            let object = frame.object;
            let count = frame.count;
            r.skip_whitespace();
            match input.get(r.pos) {
                Some(b',') => {
                    r.pos += 1;
                    next_item(&mut r, &mut frames, &mut skip, visit, text)?;
                    break;
                }
                Some(b'}') if object => {}
                Some(b']') if !object => {}
                _ => {
                    return Err(r
                        .error_at(r.pos, "expected ',' or the end of a container")
                        .into())
                }
            }
            r.pos += 1;
            frames.pop();
            if skip.is_none() {
                visit.close(object, count, frames.len())?;
            }
        }
    }
}

/// Starts the next item of the innermost container: reads an object member's key (up to its
/// value) or reports an array element.
fn next_item<'a, V: Visit<'a>>(
    r: &mut Reader<'a>,
    frames: &mut [Frame],
    skip: &mut Option<(usize, usize)>,
    visit: &mut V,
    text: &mut Zeroizing<String>,
) -> Result<(), V::Error> {
    let level = frames.len();
    let Some(frame) = frames.last_mut() else {
        return Err(r.error_at(r.pos, "no container").into());
    };
    let depth = level - 1;
    let live = skip.is_none();
    if !frame.object {
        if live {
            visit.element(frame.count, depth)?;
        }
        frame.count += 1;
        return Ok(());
    }
    r.skip_whitespace();
    if r.input.get(r.pos) != Some(&b'"') {
        return Err(r
            .error_at(r.pos, "expected a string as an object key")
            .into());
    }
    if !live {
        skip_string(r, text)?;
        return colon(r).map_err(Into::into);
    }
    let key = string(r, text)?;
    colon(r)?;
    match visit.key(key.as_str(), frame.count == 0, depth)? {
        Flow::Enter => frame.count += 1,
        Flow::Skip => {
            r.skip_whitespace();
            *skip = Some((level, r.pos));
        }
    }
    Ok(())
}

/// The `:` after an object key.
fn colon(r: &mut Reader<'_>) -> Result<(), StoreError> {
    r.skip_whitespace();
    if r.input.get(r.pos) != Some(&b':') {
        return Err(r.error_at(r.pos, "expected ':' after an object key"));
    }
    r.pos += 1;
    Ok(())
}

/// A string starting at its opening quote, read through as the store's reader reads it, its
/// text not kept: invalid UTF-8 is no error there (it becomes U+FFFD), so only the escapes
/// and the end need checking. `scratch` takes the escapes' text.
fn skip_string(r: &mut Reader<'_>, scratch: &mut Zeroizing<String>) -> Result<(), StoreError> {
    let input = r.input;
    let open = r.pos;
    let mut at = open + 1;
    loop {
        at += plain_run(input.get(at..).unwrap_or_default());
        match input.get(at) {
            None => return Err(r.error_at(open, "unterminated string")),
            Some(b'"') => {
                r.pos = at + 1;
                return Ok(());
            }
            Some(b'\\') => {
                scratch.clear();
                at = r.escape(at, scratch)?;
            }
            Some(_) => return Err(r.error_at(at, "control character inside a string")),
        }
    }
}

/// A string starting at its opening quote, decoded as the store's reader decodes it.
fn string<'a, 'b>(
    r: &mut Reader<'a>,
    buffer: &'b mut Zeroizing<String>,
) -> Result<Text<'a, 'b>, StoreError> {
    let input = r.input;
    let open = r.pos;
    let start = open + 1;
    let end = start + plain_run(input.get(start..).unwrap_or_default());
    // No escapes and valid UTF-8: the text is the input's own bytes.
    if input.get(end) == Some(&b'"') {
        if let Some(Ok(text)) = input.get(start..end).map(std::str::from_utf8) {
            r.pos = end + 1;
            return Ok(Text::Input(text));
        }
    }
    // Decoding never makes a string more than three times longer (an invalid byte becomes the
    // three bytes of U+FFFD; escapes shrink), so the buffer is sized once and never moves the
    // plaintext by reallocating.
    let raw = raw_len(input.get(start..).unwrap_or_default());
    buffer.clear();
    if buffer.capacity() < 3 * raw {
        buffer.zeroize();
        *buffer = Zeroizing::new(String::with_capacity(3 * raw));
    }
    let mut at = start;
    loop {
        let run_start = at;
        at += plain_run(input.get(at..).unwrap_or_default());
        push_coerced(buffer, input.get(run_start..at).unwrap_or_default());
        match input.get(at) {
            None => return Err(r.error_at(open, "unterminated string")),
            Some(b'"') => {
                r.pos = at + 1;
                return Ok(Text::Decoded(buffer.as_str()));
            }
            Some(b'\\') => at = r.escape(at, buffer)?,
            Some(_) => return Err(r.error_at(at, "control character inside a string")),
        }
    }
}

/// The length of a string's text up to its closing quote (or the end of the input), escapes
/// stepped over.
fn raw_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    loop {
        at += plain_run(bytes.get(at..).unwrap_or_default());
        match bytes.get(at) {
            Some(b'\\') => at += 2,
            // The closing quote, or a control character where the decoder stops with its
            // error.
            _ => return at.min(bytes.len()),
        }
    }
}
