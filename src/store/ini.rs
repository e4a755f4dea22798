//! The INI store, reading and writing INI as sops does through `gopkg.in/ini.v1` (spec §6.4).
//!
//! The tree has one top-level mapping per section, in file order; keys before the first header
//! belong to the implicit `DEFAULT` section, which is always first. Every value is a string.
//! Comments follow go-ini: comment lines before a section header become that section's comment
//! (the first item of its mapping), comment lines before a key and an inline `; …` after its
//! value become that key's comment (the item after the key); comments after the last key of the
//! file are dropped. A `[sops]` section holds the flattened metadata (see [`super::flatten`]),
//! with newlines written as the two characters `\n` (sops 3.13.2); sops 3.13.0/1 wrote them
//! inside `"""…"""`, which reads the same.
//!
//! Output is byte for byte what sops writes: `key = value` aligned on `=` within a section, a
//! blank line between sections, go-ini's quoting.

use super::flatten::{flatten, scalar_text, unflatten};
use super::{Loaded, StoreError};
use crate::crypt::display_path;
use crate::tree::{Comment, Map, MapItem, Node, Pair, PathStep, Tree, Value};

const FORMAT: &str = "ini";
const DEFAULT_SECTION: &str = "DEFAULT";
const METADATA_SECTION: &str = "sops";
const KEY_VALUE_DELIMITERS: [char; 2] = ['=', ':'];
const COMMENT_MARKERS: [char; 2] = ['#', ';'];

/// A section as go-ini holds it. Comments keep their markers until they enter the tree.
#[derive(Default)]
struct Section {
    name: String,
    comment: String,
    keys: Vec<Key>,
}

struct Key {
    name: String,
    value: String,
    comment: String,
}

impl Section {
    fn named(name: &str) -> Self {
        Section {
            name: name.to_string(),
            ..Section::default()
        }
    }

    /// go-ini keeps one key per name: a repeated key updates the first one's value and comment.
    fn set(&mut self, name: String, value: String, comment: String) {
        match self.keys.iter_mut().find(|k| k.name == name) {
            Some(key) => {
                key.value = value;
                key.comment = comment;
            }
            None => self.keys.push(Key {
                name,
                value,
                comment,
            }),
        }
    }
}

/// Reads an INI file, plain or encrypted.
pub fn load(input: &[u8]) -> Result<Loaded, StoreError> {
    let text = decode(input)?;
    let mut metadata = None;
    let mut tree = Map::new();
    for section in Parser::new(text).parse()? {
        if section.name == METADATA_SECTION {
            if metadata.is_some() {
                return Err(StoreError::Structure {
                    path: "[sops]".into(),
                    message: "the file has more than one [sops] section".into(),
                });
            }
            let pairs = section
                .keys
                .into_iter()
                .map(|k| (k.name, k.value.replace("\\n", "\n")))
                .collect();
            metadata = Some(unflatten(pairs)?);
            continue;
        }
        let mut items = Vec::new();
        if !section.comment.is_empty() {
            items.push(MapItem::Comment(Comment::new(strip_marker(
                &section.comment,
            ))));
        }
        for key in section.keys {
            items.push(MapItem::Pair(Pair {
                key: key.name,
                value: Node::scalar(Value::Str(key.value)),
            }));
            if !key.comment.is_empty() {
                items.push(MapItem::Comment(Comment::new(strip_marker(&key.comment))));
            }
        }
        tree.insert(section.name, Node::Map(Map(items)));
    }
    Ok(Loaded {
        tree: Tree {
            documents: vec![tree],
            layout: None,
        },
        metadata,
    })
}

/// UTF-8 text without its byte order mark, as go-ini reads it.
fn decode(input: &[u8]) -> Result<&str, StoreError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    std::str::from_utf8(input).map_err(|err| {
        let valid = &input[..err.valid_up_to()];
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        StoreError::Syntax {
            line: valid.iter().filter(|b| **b == b'\n').count() + 1,
            column: valid.len() - line_start + 1,
            message: "the file is not valid UTF-8 text".into(),
        }
    })
}

/// sops strips the leading run of the comment's own marker and spaces (`;; x` → `x`).
fn strip_marker(comment: &str) -> &str {
    match comment.chars().next() {
        Some(';') => comment.trim_start_matches([';', ' ']),
        Some('#') => comment.trim_start_matches(['#', ' ']),
        _ => comment,
    }
}

/// go-ini's line parser with sops' options (default options, non-unique sections allowed).
struct Parser<'a> {
    /// The lines, each with its `\n` when it has one.
    lines: std::iter::Peekable<std::iter::Enumerate<std::str::SplitInclusive<'a, char>>>,
    /// Comment text waiting for the next section or key, markers and line breaks included.
    pending_comment: String,
    line_number: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            lines: text.split_inclusive('\n').enumerate().peekable(),
            pending_comment: String::new(),
            line_number: 0,
        }
    }

    fn error(&self, message: &str) -> StoreError {
        StoreError::Syntax {
            line: self.line_number,
            column: 1,
            message: message.into(),
        }
    }

    /// The next line, or `None` at the end of the input.
    fn next_line(&mut self) -> Option<&'a str> {
        let (index, line) = self.lines.next()?;
        self.line_number = index + 1;
        Some(line)
    }

    fn parse(mut self) -> Result<Vec<Section>, StoreError> {
        let mut sections = Vec::new();
        let mut current = Section::named(DEFAULT_SECTION);
        while let Some(raw) = self.next_line() {
            let line = raw.trim_start();
            if line.is_empty() {
                continue;
            }
            if line.starts_with(COMMENT_MARKERS) {
                self.pending_comment.push_str(line);
                continue;
            }
            if line.starts_with('[') {
                let close = line
                    .rfind(']')
                    .ok_or_else(|| self.error("a section header without its closing ']'"))?;
                let name = &line[1..close];
                if name.is_empty() {
                    return Err(self.error("a section header with an empty name"));
                }
                if let Some(at) = line[close + 1..].find(COMMENT_MARKERS) {
                    self.pending_comment.push_str(&line[close + 1 + at..]);
                }
                let mut section = Section::named(name);
                section.comment = std::mem::take(&mut self.pending_comment).trim().to_string();
                sections.push(std::mem::replace(&mut current, section));
                continue;
            }
            let (name, value_at) = self.key_name(line)?;
            let value = self.value(&line[value_at..])?;
            let comment = std::mem::take(&mut self.pending_comment).trim().to_string();
            current.set(name, value, comment);
        }
        sections.push(current);
        Ok(sections)
    }

    /// The key name and where its value starts. Keys may be quoted with `"`, `"""` or `` ` ``
    /// to hold delimiters.
    fn key_name(&self, line: &str) -> Result<(String, usize), StoreError> {
        let quote = if line.len() > 6 && line.starts_with("\"\"\"") {
            Some("\"\"\"")
        } else if line.starts_with('"') {
            Some("\"")
        } else if line.starts_with('`') {
            Some("`")
        } else {
            None
        };
        let (name, value_at) = match quote {
            Some(quote) => {
                let start = quote.len();
                let close = line[start..]
                    .find(quote)
                    .map(|at| at + start)
                    .ok_or_else(|| self.error("a quoted key without its closing quote"))?;
                let after = close + quote.len();
                let delimiter = line[after..]
                    .find(KEY_VALUE_DELIMITERS)
                    .ok_or_else(|| self.error("expected '=' or ':' after the quoted key"))?;
                (line[start..close].trim(), after + delimiter + 1)
            }
            None => {
                let delimiter = line.find(KEY_VALUE_DELIMITERS).ok_or_else(|| {
                    self.error("expected `key = value`, a [section] or a comment")
                })?;
                (line[..delimiter].trim(), delimiter + 1)
            }
        };
        if name.is_empty() {
            return Err(self.error("a key with an empty name"));
        }
        Ok((name.to_string(), value_at))
    }

    /// The value after the delimiter: `"""…"""` and `` `…` `` quote verbatim (and may span
    /// lines), a trailing `\` continues on the next line, otherwise an unquoted `#` or `;` starts
    /// an inline comment and one pair of surrounding `"` or `'` is removed.
    fn value(&mut self, rest: &'a str) -> Result<String, StoreError> {
        let line = rest.trim_start();
        if line.is_empty() {
            return Ok(String::new());
        }
        let quote = if line.len() > 3 && line.starts_with("\"\"\"") {
            Some("\"\"\"")
        } else if line.starts_with('`') {
            Some("`")
        } else {
            None
        };
        if let Some(quote) = quote {
            let body = &line[quote.len()..];
            return match body.rfind(quote) {
                Some(close) => Ok(body[..close].to_string()),
                None => self.multiline(body, quote),
            };
        }
        let line = line.trim();
        if let Some(head) = line.strip_suffix('\\') {
            return Ok(self.continuation(head));
        }
        let mut line = line;
        if let Some(at) = line.find(COMMENT_MARKERS) {
            self.pending_comment.push_str(&line[at..]);
            line = line[..at].trim();
        }
        for quote in ['"', '\''] {
            if let Some(inner) = line
                .strip_prefix(quote)
                .and_then(|l| l.strip_suffix(quote))
                .filter(|inner| !inner.contains(quote))
            {
                return Ok(inner.to_string());
            }
        }
        Ok(line.to_string())
    }

    /// A quoted value continued on the following lines, up to the line holding its last quote.
    fn multiline(&mut self, first: &str, quote: &str) -> Result<String, StoreError> {
        let start_line = self.line_number;
        let unterminated = || StoreError::Syntax {
            line: start_line,
            column: 1,
            message: format!("a value opened with {quote} is never closed"),
        };
        let mut value = first.to_string();
        loop {
            let next = self.next_line().ok_or_else(unterminated)?;
            if let Some(close) = next.rfind(quote) {
                value.push_str(&next[..close]);
                if let Some(at) = next[close..].find(COMMENT_MARKERS) {
                    self.pending_comment.push_str(next[close + at..].trim());
                }
                return Ok(value);
            }
            value.push_str(next);
            if !next.ends_with('\n') {
                return Err(unterminated());
            }
        }
    }

    /// Lines joined while each ends in `\`; an empty line ends the value (and is consumed).
    fn continuation(&mut self, head: &str) -> String {
        let mut value = head.to_string();
        while let Some(next) = self.next_line() {
            let next = next.trim();
            if next.is_empty() {
                break;
            }
            value.push_str(next);
            if !value.ends_with('\\') {
                break;
            }
            value.pop();
        }
        value
    }
}

/// Writes the tree's sections, then `[sops]` with the flattened metadata when given.
pub fn emit(tree: &Tree, metadata: Option<&Map>) -> Result<Vec<u8>, StoreError> {
    let items: &[MapItem] = tree.documents.first().map_or(&[], |doc| &doc.0);
    let mut sections = Vec::new();
    for item in items {
        // A comment between sections has no place in go-ini's model; sops drops it too.
        let MapItem::Pair(pair) = item else { continue };
        let Node::Map(body) = &pair.value else {
            return Err(StoreError::Emit {
                format: FORMAT,
                message: format!(
                    "INI holds only sections at the top level, and {} is not a mapping",
                    display_path(&[PathStep::Key(pair.key.clone())])
                ),
            });
        };
        if metadata.is_some() && pair.key == METADATA_SECTION {
            return Err(StoreError::AlreadyEncrypted(METADATA_SECTION.into()));
        }
        sections.push(section_of(&pair.key, body)?);
    }
    if let Some(metadata) = metadata {
        let mut section = Section::named(METADATA_SECTION);
        for (name, value) in flatten(metadata)? {
            section.set(name, value.replace('\n', "\\n"), String::new());
        }
        sections.push(section);
    }
    Ok(write(&sections).into_bytes())
}

/// A section of the tree as go-ini would hold it: leading comments become the section's
/// comment, a comment after a key that key's comment. (sops keeps only one of several such
/// comments; veil joins them so none is lost.)
fn section_of(name: &str, body: &Map) -> Result<Section, StoreError> {
    if name.is_empty() || name.contains('\n') {
        return Err(StoreError::Emit {
            format: FORMAT,
            message: format!(
                "an INI section name must be one non-empty line, at {}",
                display_path(&[PathStep::Key(name.to_string())])
            ),
        });
    }
    let mut section = Section::named(name);
    for item in &body.0 {
        match item {
            MapItem::Comment(comment) if !comment.text.is_empty() => {
                let target = match section.keys.last_mut() {
                    Some(key) => &mut key.comment,
                    None => &mut section.comment,
                };
                if !target.is_empty() {
                    target.push('\n');
                }
                target.push_str(&comment.text);
            }
            MapItem::Comment(_) => {}
            MapItem::Pair(pair) => {
                let path = || {
                    display_path(&[
                        PathStep::Key(name.to_string()),
                        PathStep::Key(pair.key.clone()),
                    ])
                };
                let value = match &pair.value {
                    Node::Scalar(scalar) => {
                        scalar_text(&scalar.value).ok_or_else(|| StoreError::Emit {
                            format: FORMAT,
                            message: format!("INI cannot hold raw bytes at {}", path()),
                        })?
                    }
                    Node::Map(_) | Node::List(_) => {
                        return Err(StoreError::Emit {
                            format: FORMAT,
                            message: format!("INI cannot hold nested values at {}", path()),
                        })
                    }
                };
                if pair.key.is_empty() || pair.key.contains('\n') {
                    return Err(StoreError::Emit {
                        format: FORMAT,
                        message: format!("an INI key must be one non-empty line, at {}", path()),
                    });
                }
                // A repeated key keeps the first one's place and comment, as go-ini does.
                match section.keys.iter_mut().find(|k| k.name == pair.key) {
                    Some(key) => key.value = value,
                    None => section.keys.push(Key {
                        name: pair.key.clone(),
                        value,
                        comment: String::new(),
                    }),
                }
            }
        }
    }
    Ok(section)
}

/// go-ini's `WriteTo` with its defaults (`PrettyFormat`, `PrettySection`, `\n` line breaks).
fn write(sections: &[Section]) -> String {
    let mut out = String::new();
    let last = sections.len().saturating_sub(1);
    for (index, section) in sections.iter().enumerate() {
        if !section.comment.is_empty() {
            for line in section.comment.split('\n') {
                push_comment_line(&mut out, line, false);
            }
        }
        if index > 0 || section.name.to_uppercase() != DEFAULT_SECTION {
            out.push('[');
            out.push_str(&section.name);
            out.push_str("]\n");
        } else if section.keys.is_empty() {
            continue; // an empty DEFAULT section leaves no trace, not even a blank line
        }
        let names: Vec<String> = section.keys.iter().map(|k| quote_key(&k.name)).collect();
        let width = names.iter().map(String::len).max().unwrap_or(0);
        for (key, name) in section.keys.iter().zip(&names) {
            if !key.comment.is_empty() {
                for line in key.comment.split('\n') {
                    push_comment_line(&mut out, line, true);
                }
            }
            out.push_str(name);
            out.extend(std::iter::repeat_n(' ', width - name.len()));
            out.push_str(" = ");
            out.push_str(&quote_value(&key.value));
            out.push('\n');
        }
        if index != last {
            out.push('\n');
        }
    }
    out
}

/// go-ini writes a comment line with its own marker, or `; ` when it has none. Section
/// comments keep the unmarked line as it is; key comments trim it.
fn push_comment_line(out: &mut String, line: &str, trim_unmarked: bool) {
    match line.chars().next() {
        Some(marker @ ('#' | ';')) => {
            out.push(marker);
            out.push(' ');
            out.push_str(line[1..].trim());
        }
        // go-ini would crash on an empty line inside a comment; a bare marker keeps it.
        None => out.push(';'),
        Some(_) => {
            out.push_str("; ");
            out.push_str(if trim_unmarked { line.trim() } else { line });
        }
    }
    out.push('\n');
}

/// Keys holding a delimiter or `"` are written in backticks, keys holding a backtick in `"""`.
fn quote_key(name: &str) -> String {
    if name.contains('"') || name.contains(KEY_VALUE_DELIMITERS) {
        format!("`{name}`")
    } else if name.contains('`') {
        format!("\"\"\"{name}\"\"\"")
    } else {
        name.to_string()
    }
}

/// go-ini's value quoting, plus one rule of veil's: a value ending in `\` is double-quoted,
/// because unquoted it would swallow the next line as a continuation when read back.
fn quote_value(value: &str) -> String {
    if value.contains(['\n', '`']) {
        format!("\"\"\"{value}\"\"\"")
    } else if value.contains(COMMENT_MARKERS) {
        format!("`{value}`")
    } else if value.trim() != value || (value.ends_with('\\') && !value.contains('"')) {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests;
