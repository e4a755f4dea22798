//! What the commands that change an encrypted file in place share (set, unset, edit): open it
//! remembering its IVs, and write it back sealed under the same data key.

use std::path::{Path, PathBuf};

use veil::config::Config;
use veil::document::{self, OpenOptions, Opened};
use veil::metadata::Metadata;
use veil::store::Format;
use veil::tree::Tree;

use super::io::{Input, Output};
use super::{in_file, CliResult, Code, Failure, GlobalArgs};

/// An encrypted file opened for a change.
pub struct Opening {
    /// The file, which is also where the result goes.
    pub path: PathBuf,
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
    let input = in_place_input(file)?;
    input.require_existing()?;
    let format_args = super::args::FormatArgs {
        input_type: input_type.map(String::from),
        ..Default::default()
    };
    let format = super::input_format(&format_args, &input)?;
    let config = super::load_config(global)?;
    let keyring = super::keys::keyring(decryption_order)?;
    let loaded = super::load_encrypted(&input, format)?;
    let options = OpenOptions {
        ignore_mac,
        remember_ivs: true,
    };
    let opened = document::open(loaded, &keyring, options)
        .map_err(|e| super::decrypt::open_failure(&input, e))?;
    Ok(Opening {
        path: file.to_path_buf(),
        input,
        format,
        config,
        opened,
    })
}

/// Seals the opened document again and replaces the file atomically.
pub fn write_back(opening: Opening, global: &GlobalArgs) -> CliResult {
    let Opening {
        path,
        input,
        format,
        config,
        opened,
    } = opening;
    let (tree, metadata) = document::seal(opened)
        .map_err(|e| Failure::new(Code::ErrorEncryptingTree, in_file(&input, e)))?;
    write_sealed(
        &path,
        &input,
        format,
        config.as_ref(),
        global,
        &tree,
        &metadata,
    )
}

/// The input of a command that writes its result back: a file, never standard input.
pub fn in_place_input(file: &Path) -> CliResult<Input> {
    match Input::from_arg(Some(file)) {
        Input::Stdin => Err(Failure::new(
            Code::ConflictingParameters,
            "Error: this command writes the file back, so it cannot read standard input",
        )
        .with_hint("give the file's path")),
        input => Ok(input),
    }
}

/// Writes a sealed tree and its metadata over `path`, atomically.
pub fn write_sealed(
    path: &Path,
    input: &Input,
    format: Format,
    config: Option<&Config>,
    global: &GlobalArgs,
    tree: &Tree,
    metadata: &Metadata,
) -> CliResult {
    let text = super::emit_encrypted(input, format, tree, metadata, config, global)?;
    Output::InPlace(path.to_path_buf()).write(&text)
}
