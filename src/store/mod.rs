//! Bytes ⇄ [`Tree`]: one module per file format.
//!
//! Every store reads a file into a tree and splits off the `sops` metadata block, handing it over
//! as a plain [`Map`]; on the way out it writes the tree and, when given one, the metadata block.
//! Stores that can (YAML, TOML) record where each value stood in the source ([`Layout`]) and write
//! an unchanged structure back with the original layout, changing only values and comments.

pub mod binary;
pub mod dotenv;
pub mod flatten;
pub mod ini;
pub mod json;
pub mod toml;
pub mod yaml;

use std::path::Path;

use crate::tree::{Map, Node, Tree};

/// The file formats veil reads and writes. A closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Toml,
    Binary,
}

/// The source layout a store recorded while reading, so it can write the file back the same way.
#[derive(Clone)]
pub enum Layout {
    Yaml(yaml::Layout),
    Toml(toml::Layout),
    Dotenv(dotenv::Layout),
}

/// A file as read: its tree, and the `sops` block if the file has one.
pub struct Loaded {
    pub tree: Tree,
    pub metadata: Option<Node>,
}

/// Indentation settings from `--indent` and the `stores` section of `.sops.yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Indent {
    /// YAML indentation when a document is written from scratch (sops: 4).
    pub yaml: usize,
    /// JSON indentation: `None` is a tab (sops' default), `Some(n)` n spaces.
    pub json: Option<usize>,
    pub json_binary: Option<usize>,
}

impl Default for Indent {
    fn default() -> Self {
        Indent {
            yaml: 4,
            json: None,
            json_binary: None,
        }
    }
}

/// Why a file could not be read or written. Messages name a line or a key path, never a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Structure { path: String, message: String },
    #[error("the file is empty: it needs at least one document")]
    Empty,
    #[error("the file already has a top-level {0:?} entry: it is already encrypted")]
    AlreadyEncrypted(String),
    /// A YAML key that reads as a number, bool, null or time: sops refuses such trees ("Tree
    /// contains a non-string key"), so veil does too rather than write a file sops cannot open.
    #[error(
        "{path}: the key {key:?} is not a string (sops cannot use it); quote it, e.g. \"{key}\":"
    )]
    NonStringKey { path: String, key: String },
    #[error("cannot write as {format}: {message}")]
    Emit {
        format: &'static str,
        message: String,
    },
}

/// Why [`Format::emit_to`] failed: the tree cannot be written in that format, or the writer
/// failed (a full disk, a closed pipe).
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Write(#[source] std::io::Error),
}

impl Format {
    /// `--input-type`/`--output-type` names. Unknown names are an error, where sops silently
    /// falls back to the file extension.
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "yaml" => Format::Yaml,
            "json" => Format::Json,
            "dotenv" => Format::Dotenv,
            "ini" => Format::Ini,
            "toml" => Format::Toml,
            "binary" => Format::Binary,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Dotenv => "dotenv",
            Format::Ini => "ini",
            Format::Toml => "toml",
            Format::Binary => "binary",
        }
    }

    /// The format of a path by its extension, as sops (case-sensitive; anything else is binary).
    pub fn from_path(path: &Path) -> Format {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            Format::Yaml
        } else if name.ends_with(".json") {
            Format::Json
        } else if name.ends_with(".env") {
            Format::Dotenv
        } else if name.ends_with(".ini") {
            Format::Ini
        } else if name.ends_with(".toml") {
            Format::Toml
        } else {
            Format::Binary
        }
    }

    /// Reads a file, plain or encrypted.
    pub fn load(self, input: &[u8]) -> Result<Loaded, StoreError> {
        match self {
            Format::Yaml => yaml::load(input),
            Format::Json => json::load(input),
            Format::Dotenv => dotenv::load(input),
            Format::Ini => ini::load(input),
            Format::Toml => toml::load(input),
            Format::Binary => binary::load(input),
        }
    }

    /// [`Format::load`] taking the input by value, so that it is not kept alive beside the
    /// tree: the YAML store turns it into its layout's source text without a copy, the others
    /// drop it as soon as it is parsed.
    pub fn load_owned(self, input: Vec<u8>) -> Result<Loaded, StoreError> {
        match self {
            Format::Yaml => yaml::load_owned(input),
            other => other.load(&input),
        }
    }

    /// Writes a tree, with the metadata block appended when given.
    pub fn emit(
        self,
        tree: &Tree,
        metadata: Option<&Map>,
        indent: Indent,
    ) -> Result<Vec<u8>, StoreError> {
        match self {
            Format::Yaml => yaml::emit(tree, metadata, indent),
            Format::Json => json::emit(tree, metadata, indent.json),
            Format::Dotenv => dotenv::emit(tree, metadata),
            Format::Ini => ini::emit(tree, metadata),
            Format::Toml => toml::emit(tree, metadata),
            Format::Binary => binary::emit(tree, metadata, indent.json_binary),
        }
    }

    /// [`Format::emit`] into `sink`. YAML and JSON write a large file a buffer at a time
    /// instead of building it whole first (the others are small by nature and build it).
    /// A failure can leave part of the output written: give it a temporary file, or a stream
    /// where that is acceptable.
    pub fn emit_to(
        self,
        tree: &Tree,
        metadata: Option<&Map>,
        indent: Indent,
        sink: &mut dyn std::io::Write,
    ) -> Result<(), EmitError> {
        match self {
            Format::Yaml => yaml::emit_to(tree, metadata, indent, sink),
            Format::Json => json::emit_to(tree, metadata, indent.json, sink),
            other => {
                let bytes = other.emit(tree, metadata, indent)?;
                sink.write_all(&bytes).map_err(EmitError::Write)
            }
        }
    }

    /// Writes one value on its own, for `--extract`: a mapping as a document, a string leaf as
    /// its raw bytes (no newline), other scalars as the store writes them.
    pub fn emit_value(self, node: &Node, indent: Indent) -> Result<Vec<u8>, StoreError> {
        match node {
            Node::Scalar(s) => match &s.value {
                crate::tree::Value::Str(text) => Ok(text.as_bytes().to_vec()),
                crate::tree::Value::Bytes(bytes) => Ok(bytes.clone()),
                _ => match self {
                    Format::Json | Format::Binary => json::emit_node(node, indent.json),
                    _ => yaml::emit_node(node, indent),
                },
            },
            Node::Map(map) => {
                let tree = Tree {
                    documents: vec![map.clone()],
                    layout: None,
                };
                let format = if self == Format::Binary {
                    Format::Json
                } else {
                    self
                };
                format.emit(&tree, None, indent)
            }
            Node::List(_) => match self {
                Format::Json | Format::Binary => json::emit_node(node, indent.json),
                _ => yaml::emit_node(node, indent),
            },
        }
    }
}
