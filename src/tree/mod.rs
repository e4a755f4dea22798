//! The format-neutral document model every store reads into and writes from.
//!
//! It mirrors sops' tree (ordered mappings whose items may be comments, lists whose elements may
//! be comments, typed scalars) and adds what sops throws away: where each scalar and comment came
//! from in the source text ([`Span`]), so a store can write a document back with its original
//! layout and change only the values.

pub mod edit;
mod path;
mod value;

pub use path::{parse_index_path, PathError, PathStep};
pub use value::{format_float, format_time, parse_time, Timestamp, Value};

use std::ops::Range;

/// A parsed file: one or more documents (only YAML streams have several) and, when the store
/// keeps it, the layout of the text it was read from.
#[derive(Clone, Default)]
pub struct Tree {
    pub documents: Vec<Map>,
    pub layout: Option<crate::store::Layout>,
}

/// An ordered mapping. Items keep their input order; comments are items of their own, as in sops.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct Map(pub Vec<MapItem>);

#[derive(Clone, Debug, PartialEq)]
pub enum MapItem {
    Pair(Pair),
    Comment(Comment),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub key: String,
    pub value: Node,
}

/// An ordered list; comments inside a list are elements of their own, as in sops.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct List(pub Vec<ListItem>);

#[derive(Clone, Debug, PartialEq)]
pub enum ListItem {
    Node(Node),
    Comment(Comment),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Map(Map),
    List(List),
    Scalar(Scalar),
}

/// A leaf value, with where it stood in the source when a store recorded that.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub value: Value,
    pub span: Option<Span>,
}

/// A comment. `text` is what follows the comment marker, verbatim (for `# note` it is ` note`).
#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    pub text: String,
    /// Written on the same line as a value (`key: v # note`).
    pub inline: bool,
    pub span: Option<Span>,
}

/// Where a scalar or comment was in the source text, and how it was written there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub range: Range<usize>,
    pub style: Style,
}

/// How a scalar was written. YAML uses every variant; TOML maps basic strings to
/// `DoubleQuoted`, literal strings to `SingleQuoted` and the multi-line forms to
/// `Literal` (basic) and `Folded` (literal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

impl Scalar {
    pub fn new(value: Value) -> Self {
        Scalar { value, span: None }
    }
}

impl Node {
    pub fn scalar(value: Value) -> Self {
        Node::Scalar(Scalar::new(value))
    }

    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }
}

impl Comment {
    pub fn new(text: impl Into<String>) -> Self {
        Comment {
            text: text.into(),
            inline: false,
            span: None,
        }
    }
}

impl Map {
    pub fn new() -> Self {
        Map(Vec::new())
    }

    /// The value of the first pair with this key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.pairs().find(|p| p.key == key).map(|p| &p.value)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.0.iter_mut().find_map(|item| match item {
            MapItem::Pair(p) if p.key == key => Some(&mut p.value),
            _ => None,
        })
    }

    /// Removes every pair with this key and returns the first one's value.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let mut found = None;
        self.0.retain_mut(|item| match item {
            MapItem::Pair(p) if p.key == key => {
                if found.is_none() {
                    found = Some(std::mem::replace(&mut p.value, Node::scalar(Value::Null)));
                }
                false
            }
            _ => true,
        });
        found
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Node) {
        self.0.push(MapItem::Pair(Pair {
            key: key.into(),
            value,
        }));
    }

    pub fn pairs(&self) -> impl Iterator<Item = &Pair> {
        self.0.iter().filter_map(|item| match item {
            MapItem::Pair(p) => Some(p),
            MapItem::Comment(_) => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl List {
    /// The list's values, without its comments.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.0.iter().filter_map(|item| match item {
            ListItem::Node(n) => Some(n),
            ListItem::Comment(_) => None,
        })
    }
}
