//! `veil set FILE INDEX VALUE` and `veil unset FILE INDEX`: change one value of an encrypted file
//! in place. Every other value keeps its ciphertext.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use veil::store::Format;
use veil::tree::{edit, parse_index_path, Node, PathStep};

use super::io::Input;
use super::{change, in_file, CliResult, Code, Failure, GlobalArgs};

#[derive(Args, Debug)]
pub struct SetArgs {
    /// Read the value from this file instead of the VALUE argument
    #[arg(long)]
    pub value_file: bool,
    /// Read the value from standard input
    #[arg(long)]
    pub value_stdin: bool,
    /// Do not write the file when the value is already set
    #[arg(long)]
    pub idempotent: bool,
    #[command(flatten)]
    pub open: OpenArgs,
    /// The encrypted file
    pub file: PathBuf,
    /// Where to set the value, e.g. '["db"]["password"]'
    pub index: String,
    /// The value as JSON, e.g. '"hunter2"' or '{"a": 1}' (a path with --value-file)
    pub value: Option<String>,
}

#[derive(Args, Debug)]
pub struct UnsetArgs {
    /// Succeed without writing when the key does not exist
    #[arg(long)]
    pub idempotent: bool,
    #[command(flatten)]
    pub open: OpenArgs,
    /// The encrypted file
    pub file: PathBuf,
    /// What to remove, e.g. '["db"]["password"]'
    pub index: String,
}

/// Flags for opening the file, shared by set and unset.
#[derive(Args, Debug, Default)]
pub struct OpenArgs {
    /// Input format (default: from the file extension)
    #[arg(long)]
    pub input_type: Option<String>,
    /// Accepted for sops compatibility: the file keeps its format
    #[arg(long, hide = true)]
    pub output_type: Option<String>,
    /// Open even if the MAC does not match
    #[arg(long)]
    pub ignore_mac: bool,
    /// Key types to try first, e.g. age,pgp (env SOPS_DECRYPTION_ORDER); offline keys (age, pgp,
    /// pkcs11) still go before network keys
    #[arg(long)]
    pub decryption_order: Option<String>,
    /// Accepted for sops compatibility: set and unset keep the file's key groups
    #[arg(long, hide = true)]
    pub shamir_secret_sharing_threshold: Option<usize>,
}

fn bad_set(message: impl std::fmt::Display) -> Failure {
    Failure::new(Code::InvalidSetFormat, message)
}

fn index(text: &str) -> CliResult<Vec<PathStep>> {
    parse_index_path(text).map_err(|e| {
        bad_set(e).with_hint(r#"write keys quoted and indexes bare: '["db"]["hosts"][0]'"#)
    })
}

/// Parses a JSON value (any JSON, not only an object) into a tree node.
pub fn json_value(text: &str) -> CliResult<Node> {
    // The JSON store reads documents (objects); wrap the value in one to reuse its reader.
    let wrapped = format!("{{\"value\":\n{text}\n}}");
    let mut loaded = Format::Json.load(wrapped.as_bytes()).map_err(|_| {
        bad_set("the value is not valid JSON")
            .with_hint(r#"strings need JSON quotes: '"a string"'"#)
    })?;
    loaded
        .tree
        .documents
        .first_mut()
        .and_then(|doc| doc.remove("value"))
        .ok_or_else(|| bad_set("the value is not valid JSON"))
}

fn open(
    file: &std::path::Path,
    flags: &OpenArgs,
    global: &GlobalArgs,
) -> CliResult<change::Opening> {
    change::open(
        file,
        flags.input_type.as_deref(),
        flags.decryption_order.as_deref(),
        flags.ignore_mac,
        global,
    )
}

/// The document set and unset work on (sops: the first), and the input for messages.
fn first_document(opening: &mut change::Opening) -> CliResult<(&Input, &mut veil::tree::Map)> {
    let input = &opening.input;
    match opening.opened.tree.documents.first_mut() {
        Some(document) => Ok((input, document)),
        None => Err(Failure::new(
            Code::Generic,
            in_file(input, "the file has no document"),
        )),
    }
}

pub fn run_set(args: SetArgs, global: &GlobalArgs) -> CliResult {
    let steps = index(&args.index)?;
    let text = match (args.value_file, args.value_stdin, args.value.as_deref()) {
        (true, true, _) => {
            return Err(Failure::new(
                Code::ConflictingParameters,
                "Error: use only one of --value-file and --value-stdin",
            ))
        }
        (false, true, None) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| bad_set(format!("cannot read the value from stdin: {e}")))?;
            text
        }
        (true, false, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| bad_set(format!("cannot read the value file {path}: {e}")))?,
        (false, false, Some(value)) => value.to_string(),
        (false, true, Some(_)) => {
            return Err(bad_set(
                "give the value either as an argument or with --value-stdin",
            ))
        }
        (_, false, None) => {
            return Err(Failure::new(
                Code::NoFileSpecified,
                "Error: set needs FILE, INDEX and VALUE",
            ))
        }
    };
    let value = json_value(&text)?;
    let mut opening = open(&args.file, &args.open, global)?;
    let (input, document) = first_document(&mut opening)?;
    let changed = edit::set(document, &steps, value).map_err(|e| bad_set(in_file(input, e)))?;
    if !changed && args.idempotent {
        return Ok(());
    }
    change::write_back(opening, global)
}

pub fn run_unset(args: UnsetArgs, global: &GlobalArgs) -> CliResult {
    let steps = index(&args.index)?;
    let mut opening = open(&args.file, &args.open, global)?;
    let (input, document) = first_document(&mut opening)?;
    match edit::unset(document, &steps) {
        Ok(()) => change::write_back(opening, global),
        Err(edit::EditError::NotFound { .. }) if args.idempotent => Ok(()),
        Err(e) => Err(bad_set(in_file(input, e))),
    }
}
