//! The TOML store. sops has none (getsops/sops#369), so veil defines it, in line with the YAML
//! store and the tree model of the spec (§1, §5.5).
//!
//! # Reading
//! Tables, inline tables and dotted keys become [`Map`]s, arrays [`List`]s, arrays of tables a
//! [`List`] of [`Map`]s, all in the order they are written. Strings, integers, floats (`inf` and
//! `nan` too) and booleans map to the matching [`Value`]; offset date-times become
//! [`Value::Time`]. Local date-times, dates and times have no offset and therefore no
//! [`Value::Time`]: they are read as [`Value::Str`] holding their exact TOML text, with
//! [`Style::Plain`] recording that they were bare, so a decrypted one is written bare again.
//!
//! `# text` comments become [`Comment`]s (`text` is what follows `#`): a comment on its own line
//! belongs to the item that follows it (the next key, table header or array element), an
//! end-of-line comment follows the item on its line, a comment inside an array is an element of
//! that array, and trailing comments belong to the last table. They are thus encrypted like sops
//! encrypts YAML comments, under the path of the map or list that holds them.
//!
//! The top-level `sops` table is removed from the tree and handed over as the metadata.
//!
//! # Writing
//! A tree loaded by [`load`] with its structure unchanged is written as the original text with
//! only value and comment text replaced (the [`Layout`] remembers the text and where every value
//! stood); an old `[sops]` table is dropped and the new one appended. Encrypted values are
//! strings, quoted so that the quoting of the original survives in the encrypted file and the
//! decrypted file comes back byte for byte:
//!
//! | original                       | encrypted           | decrypted as                    |
//! |--------------------------------|---------------------|---------------------------------|
//! | `"basic"`                      | `"ENC[…]"`          | basic string                    |
//! | `'literal'`                    | `'ENC[…]'`          | literal string                  |
//! | `"""multi-line basic"""`       | `"""ENC[…]"""`      | multi-line basic string         |
//! | `'''multi-line literal'''`     | `'''ENC[…]'''`      | multi-line literal string       |
//! | int, float, bool, offset time  | `"ENC[…,type:int]"` | bare, from the `type:` of `ENC` |
//! | local date-time, date, time    | `'''ENC[…]'''`      | bare again                      |
//!
//! A one-line `'''…'''` is thus veil's marker for a bare local date/time: a value in such a
//! string that decrypts to the text of a TOML local date/time is written bare. A multi-line
//! literal string whose whole content is such a text is encrypted as `"ENC[…]"` instead, so it
//! comes back as a (basic) string and never changes type.
//!
//! Known normalisations on decrypt (the value is the same, its spelling canonical): integers in
//! decimal (`0xff` → `255`, `1_000` → `1000`), floats in shortest form (`1.50` → `1.5`, `1e6` →
//! `1000000.0`), offset times as RFC 3339 (`+00:00` → `Z`), escapes in strings written only where
//! needed (`"\u00e9"` → `"é"`), a multi-line string that holds a line break starts with one (its
//! line-ending backslashes resolved, its line breaks those of the file), and a missing final
//! line break is added.
//!
//! Any other tree (converted from another format, or changed by `set`/`unset`) is written as
//! clean TOML: key/values in order (a table that is followed by plain values in its parent is
//! written with dotted keys, so the order of values, which the MAC depends on, survives), then
//! sub-tables, comments as `#text` lines. `null` and binary values have no TOML form and are an
//! error naming the key path. The metadata follows as a `[sops]` table, always last: plain
//! fields first, key lists as arrays of tables (`[[sops.age]]`), multi-line strings (armored
//! keys) as `"""…"""`.

mod read;
mod write;

#[cfg(test)]
mod tests;

use std::hash::{Hash, Hasher};
use std::ops::Range;

use chrono::{FixedOffset, NaiveDate};

use super::{Loaded, StoreError};
use crate::tree::{Comment, ListItem, Map, MapItem, Node, Span, Timestamp, Tree, Value};

const FORMAT: &str = "toml";

/// The top-level key that holds the sops metadata.
const METADATA_KEY: &str = "sops";

/// Reads a TOML file, plain or encrypted.
pub fn load(input: &[u8]) -> Result<Loaded, StoreError> {
    read::load(input)
}

/// Writes a tree, with the `[sops]` table appended when `metadata` is given.
pub fn emit(tree: &Tree, metadata: Option<&Map>) -> Result<Vec<u8>, StoreError> {
    write::emit(tree, metadata)
}

/// The text a tree was read from, and what is needed to write it back with only values changed.
#[derive(Clone, Default)]
pub struct Layout {
    /// The original text; empty for a default layout, which is never used.
    source: String,
    /// The value of every scalar as read, in tree order, to keep unchanged values byte for byte.
    values: Vec<Value>,
    /// The old `[sops]` table, dropped on writing.
    metadata_region: Option<Range<usize>>,
    /// A digest of the tree's shape and spans as read: a tree with another one was changed, and
    /// is written as clean TOML.
    shape: u64,
    /// The text's lines end in CRLF: multi-line strings, whose line breaks TOML reads as line
    /// feeds, are written with CRLF too.
    crlf: bool,
    /// False when the text cannot be reused (a `sops` table mixed with other content).
    usable: bool,
}

/// A digest of the tree's shape: keys, container kinds and sizes, and where every scalar and
/// comment stood. A tree that still has the digest it had when read can be spliced into the
/// original text.
fn shape(map: &Map) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hash_map(map, &mut hasher);
    hasher.finish()
}

fn hash_map(map: &Map, hasher: &mut impl Hasher) {
    hasher.write_u8(b'm');
    hasher.write_usize(map.0.len());
    for item in &map.0 {
        match item {
            MapItem::Pair(pair) => {
                hasher.write_u8(b'p');
                pair.key.hash(hasher);
                hash_node(&pair.value, hasher);
            }
            MapItem::Comment(comment) => hash_comment(comment, hasher),
        }
    }
}

fn hash_node(node: &Node, hasher: &mut impl Hasher) {
    match node {
        Node::Map(map) => hash_map(map, hasher),
        Node::List(list) => {
            hasher.write_u8(b'l');
            hasher.write_usize(list.0.len());
            for item in &list.0 {
                match item {
                    ListItem::Node(node) => hash_node(node, hasher),
                    ListItem::Comment(comment) => hash_comment(comment, hasher),
                }
            }
        }
        Node::Scalar(scalar) => {
            hasher.write_u8(b's');
            hash_span(scalar.span.as_ref(), hasher);
        }
    }
}

fn hash_comment(comment: &Comment, hasher: &mut impl Hasher) {
    hasher.write_u8(b'c');
    hash_span(comment.span.as_ref(), hasher);
}

fn hash_span(span: Option<&Span>, hasher: &mut impl Hasher) {
    match span {
        Some(span) => {
            hasher.write_u8(1);
            hasher.write_usize(span.range.start);
            hasher.write_usize(span.range.end);
            hasher.write_u8(span.style as u8);
        }
        None => hasher.write_u8(0),
    }
}

/// An offset date-time as a timestamp; `None` for local date-times, dates and times, and for
/// the leap second `:60` that TOML accepts and chrono does not.
fn to_timestamp(datetime: &toml_edit::Datetime) -> Option<Timestamp> {
    let (date, time, offset) = (datetime.date?, datetime.time?, datetime.offset?);
    let minutes = match offset {
        toml_edit::Offset::Z => 0,
        toml_edit::Offset::Custom { minutes } => i32::from(minutes),
    };
    let zone = FixedOffset::east_opt(minutes * 60)?;
    NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into())?
        .and_hms_nano_opt(
            time.hour.into(),
            time.minute.into(),
            time.second.into(),
            time.nanosecond,
        )?
        .and_local_timezone(zone)
        .single()
}

/// Whether `text` is a TOML local date-time, date or time (a date-time that is not a
/// [`Value::Time`]), which the store keeps as a string and writes bare.
fn is_bare_datetime(text: &str) -> bool {
    let charset = |b: u8| b.is_ascii_digit() || b"-:.TtZz+ ".contains(&b);
    if text.is_empty() || text.len() > 64 || !text.bytes().all(charset) {
        return false;
    }
    if text.starts_with(' ') || text.ends_with(' ') {
        return false;
    }
    matches!(
        text.parse::<toml_edit::Value>(),
        Ok(toml_edit::Value::Datetime(d)) if to_timestamp(d.value()).is_none()
    )
}
