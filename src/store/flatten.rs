//! Nested ⇄ flat metadata keys for dotenv and INI (`__map_`/`__list_`, spec §5.5).
//!
//! Neither format can nest, so sops writes its metadata block as flat `key = string` entries:
//! a mapping child `k` under prefix `p` becomes `p__map_k` (`k` at the root), list element `i`
//! becomes `p__list_i`. Reading splits every key at those separators and rebuilds the tree, with
//! mapping keys sorted and every leaf a string (the metadata reader types them weakly).
//!
//! [`scalar_text`] is sops' `ValToString`, the text both stores write for non-string values.

use std::collections::BTreeMap;

use chrono::SecondsFormat;

use super::StoreError;
use crate::tree::{List, ListItem, Map, MapItem, Node, Pair, Value};

const MAP_SEPARATOR: &str = "__map_";
const LIST_SEPARATOR: &str = "__list_";

/// sops' metadata is at most five levels deep (`key_groups`, group, `kms`, entry, `context`);
/// the limit keeps a hostile key of thousands of separators from exhausting the stack.
const MAX_DEPTH: usize = 32;

/// Flattens a metadata map into `(flat key, text)` pairs, in the map's own order (sops writes
/// the block sorted, so the output is sorted by top-level field). Comments, nulls, empty maps
/// and empty lists produce no entry, as in sops.
pub fn flatten(metadata: &Map) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    flatten_map(metadata, "", &mut out)?;
    Ok(out)
}

fn flatten_map(map: &Map, prefix: &str, out: &mut Vec<(String, String)>) -> Result<(), StoreError> {
    for pair in map.pairs() {
        flatten_node(&pair.value, format!("{prefix}{}", pair.key), out)?;
    }
    Ok(())
}

fn flatten_node(
    node: &Node,
    key: String,
    out: &mut Vec<(String, String)>,
) -> Result<(), StoreError> {
    match node {
        Node::Map(map) => flatten_map(map, &format!("{key}{MAP_SEPARATOR}"), out),
        Node::List(list) => {
            // Comments are not elements: indices count values only.
            for (index, element) in list.nodes().enumerate() {
                flatten_node(element, format!("{key}{LIST_SEPARATOR}{index}"), out)?;
            }
            Ok(())
        }
        Node::Scalar(scalar) => {
            if scalar.value == Value::Null {
                return Ok(()); // a null metadata field means "absent"
            }
            if out.iter().any(|(existing, _)| *existing == key) {
                return Err(StoreError::Structure {
                    path: key,
                    message: "two metadata entries flatten to this same key".into(),
                });
            }
            let text = scalar_text(&scalar.value).ok_or_else(|| StoreError::Structure {
                path: key.clone(),
                message: "a metadata value must be text, not raw bytes".into(),
            })?;
            out.push((key, text));
            Ok(())
        }
    }
}

/// One level of the tree being rebuilt: a leaf value, mapping children or list elements.
/// More than one kind at the same flat key is sops' "Type mismatch".
#[derive(Default)]
struct Slot {
    value: Option<String>,
    children: BTreeMap<String, Slot>,
    elements: BTreeMap<usize, Slot>,
}

enum Token<'a> {
    Key(&'a str),
    Index(&'a str),
}

impl<'a> Token<'a> {
    fn new(text: &'a str, is_index: bool) -> Self {
        if is_index {
            Token::Index(text)
        } else {
            Token::Key(text)
        }
    }
}

/// Splits a flat key at every `__map_` and `__list_`, scanning left to right as sops does.
/// The text before the first separator is a mapping key, even when empty.
fn tokenize(key: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut is_index = false;
    let mut at = 0;
    while at < key.len() {
        let rest = &key[at..];
        let separator = if rest.starts_with(MAP_SEPARATOR) {
            Some((MAP_SEPARATOR, false))
        } else if rest.starts_with(LIST_SEPARATOR) {
            Some((LIST_SEPARATOR, true))
        } else {
            None
        };
        match separator {
            Some((sep, next_is_index)) => {
                tokens.push(Token::new(&key[start..at], is_index));
                at += sep.len();
                start = at;
                is_index = next_is_index;
            }
            // Separators are ASCII, so stepping a whole character never skips one.
            None => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    tokens.push(Token::new(&key[start..], is_index));
    tokens
}

/// Rebuilds the nested metadata map from flat pairs (keys already without any `sops_` prefix,
/// values already unescaped). Errors name the flat key.
pub fn unflatten(pairs: Vec<(String, String)>) -> Result<Node, StoreError> {
    let mut root = Slot::default();
    for (key, value) in pairs {
        let tokens = tokenize(&key);
        if tokens.len() > MAX_DEPTH {
            return Err(StoreError::Structure {
                path: key,
                message: format!("metadata key nests deeper than {MAX_DEPTH} levels"),
            });
        }
        let mut slot = &mut root;
        for token in tokens {
            slot = match token {
                Token::Key(name) => slot.children.entry(name.to_string()).or_default(),
                Token::Index(digits) => {
                    let index = parse_index(digits).ok_or_else(|| StoreError::Structure {
                        path: key.clone(),
                        message: "a list index after __list_ must be a decimal number".into(),
                    })?;
                    slot.elements.entry(index).or_default()
                }
            };
        }
        if slot.value.is_some() {
            return Err(StoreError::Structure {
                path: key,
                message: "Duplicate value: the metadata key appears twice".into(),
            });
        }
        slot.value = Some(value);
    }
    // tokenize always starts with a key token, so the root only ever has mapping children.
    Ok(Node::Map(children_to_map(root.children, "")?))
}

/// Go's `strconv.Atoi` accepts a sign; sops then rejects negative indices as an incomplete
/// list. veil rejects anything but plain digits at once (sops silently reads garbage as 0).
fn parse_index(digits: &str) -> Option<usize> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn children_to_map(children: BTreeMap<String, Slot>, prefix: &str) -> Result<Map, StoreError> {
    let mut map = Map::new();
    for (key, slot) in children {
        let flat = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}{MAP_SEPARATOR}{key}")
        };
        let value = slot_to_node(slot, &flat)?;
        map.0.push(MapItem::Pair(Pair { key, value }));
    }
    Ok(map)
}

fn slot_to_node(slot: Slot, flat: &str) -> Result<Node, StoreError> {
    let kinds = usize::from(slot.value.is_some())
        + usize::from(!slot.children.is_empty())
        + usize::from(!slot.elements.is_empty());
    if kinds > 1 {
        return Err(StoreError::Structure {
            path: flat.to_string(),
            message: "Type mismatch: this metadata key holds a value and nested keys".into(),
        });
    }
    if let Some(value) = slot.value {
        return Ok(Node::scalar(Value::Str(value)));
    }
    if !slot.elements.is_empty() {
        // BTreeMap keys are sorted and distinct, so 0..n-1 means the last key is n-1.
        let count = slot.elements.len();
        if slot.elements.keys().next_back() != Some(&(count - 1)) {
            return Err(StoreError::Structure {
                path: flat.to_string(),
                message: "Incomplete list: indices must run from 0 without gaps".into(),
            });
        }
        let mut items = Vec::with_capacity(count);
        for (index, element) in slot.elements {
            let node = slot_to_node(element, &format!("{flat}{LIST_SEPARATOR}{index}"))?;
            items.push(ListItem::Node(node));
        }
        return Ok(Node::List(List(items)));
    }
    // Mapping children, or nothing at all (an empty mapping, as sops builds it).
    Ok(Node::Map(children_to_map(slot.children, flat)?))
}

/// sops' `ValToString`: the text dotenv and INI write for a scalar. Strings as they are; ints
/// in decimal; floats in Go's `%G` shortest form, given a `.0` when they would read as an int;
/// bools `true`/`false`; times RFC 3339 with whole seconds. `None` for raw bytes, which these
/// text formats cannot hold (bytes that are UTF-8 are
/// written as text). Null is written as the empty string (sops writes `<nil>`).
pub fn scalar_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_text(*f),
        Value::Str(s) => s.clone(),
        Value::Time(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Value::Bytes(bytes) => String::from_utf8(bytes.clone()).ok()?,
    })
}

/// Go's `FormatFloat(f, 'G', -1, 64)`, then `FormatFloat(f, 'f', 1, 64)` if that has neither
/// `.` nor `E` (so `1` is written `1.0` and `1e6` `1E+06`).
fn float_text(f: f64) -> String {
    if !f.is_finite() {
        // 'G' gives NaN/+Inf/-Inf and 'f' with one decimal gives the same.
        return crate::tree::format_float(f);
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-100", "2e5", "0e0".
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Go decides by the decimal exponent with precision 6 for the shortest form.
    let text = if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{first}{fraction}E{exp_sign}{:02}", exponent.abs())
    } else {
        // Plain decimal: Display never uses an exponent and prints shortest digits.
        format!("{f}")
    };
    if text.contains('.') || text.contains('E') {
        text
    } else {
        format!("{f:.1}")
    }
}

#[cfg(test)]
pub(crate) mod tests;
