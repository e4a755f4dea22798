//! What the commands that change an encrypted file in place share (set, unset, edit): open it
//! remembering its IVs, and write it back sealed under the same data key.

use std::path::Path;

use veil::config::Config;
use veil::document::{self, OpenOptions, Opened};
use veil::metadata::Metadata;
use veil::store::Format;
use veil::tree::Tree;

use super::io::{write_atomically, Input};
use super::{in_file, CliResult, Code, Failure, GlobalArgs};

/// An encrypted file opened for a change.
pub struct Opening {
    pub input: Input,
    pub format: Format,
    pub config: Option<Config>,
    pub opened: Opened,
}

/// Opens `file` (which must exist) with every IV remembered.
pub fn open(
    file: &Path,
    input_type: Option<&str>,
    decryption_order: Option<&str>,
    ignore_mac: bool,
    global: &GlobalArgs,
) -> CliResult<Opening> {
    let input = Input::from_arg(Some(file));
    input.require_existing()?;
    let format_args = super::args::FormatArgs {
        input_type: input_type.map(String::from),
        ..Default::default()
    };
    let format = super::input_format(&format_args, &input)?;
    let config = super::load_config(global)?;
    let keyring = super::keys::keyring(decryption_order)?;
    let bytes = input.read()?;
    let loaded = format.load(&bytes).map_err(|e| {
        Failure::new(
            Code::CouldNotReadInputFile,
            in_file(&input, format!("Error loading file: {e}")),
        )
    })?;
    let options = OpenOptions {
        ignore_mac,
        remember_ivs: true,
    };
    let opened = document::open(loaded, &keyring, options)
        .map_err(|e| super::decrypt::open_failure(&input, e))?;
    Ok(Opening {
        input,
        format,
        config,
        opened,
    })
}

/// Seals the opened document again and replaces the file atomically.
pub fn write_back(opening: Opening, global: &GlobalArgs) -> CliResult {
    let Opening {
        input,
        format,
        config,
        opened,
    } = opening;
    let (tree, metadata) = document::seal(opened)
        .map_err(|e| Failure::new(Code::ErrorEncryptingTree, in_file(&input, e)))?;
    write_sealed(&input, format, config.as_ref(), global, &tree, &metadata)
}

pub fn write_sealed(
    input: &Input,
    format: Format,
    config: Option<&Config>,
    global: &GlobalArgs,
    tree: &Tree,
    metadata: &Metadata,
) -> CliResult {
    let text = format
        .emit(
            tree,
            Some(&metadata.to_map()),
            super::indent(config, global),
        )
        .map_err(|e| {
            Failure::new(
                Code::ErrorDumpingTree,
                in_file(input, format!("Could not marshal tree: {e}")),
            )
        })?;
    let Input::File(path) = input else {
        unreachable!("changes are made to files, never to stdin")
    };
    write_atomically(path, &text).map_err(|e| {
        Failure::new(
            Code::CouldNotWriteOutputFile,
            format!("Could not write {}: {e}", path.display()),
        )
    })
}
