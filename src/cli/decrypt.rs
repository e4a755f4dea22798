//! `veil decrypt`: open a file and print (or write) its plaintext.

use std::path::PathBuf;

use clap::Args;
use veil::document::{self, DocumentError, OpenOptions};
use veil::tree::{edit, parse_index_path};

use super::args::FormatArgs;
use super::io::{Input, Output, Text};
use super::{in_file, CliResult, Code, Failure, GlobalArgs};

#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// Write the plaintext back to FILE
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// Write the plaintext to this file
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print only this part of the tree, e.g. '["db"]["password"]'
    #[arg(long)]
    pub extract: Option<String>,
    /// Decrypt even if the MAC does not match
    #[arg(long)]
    pub ignore_mac: bool,
    /// Key types to try first, e.g. age,pgp (env SOPS_DECRYPTION_ORDER); offline keys (age, pgp,
    /// pkcs11) still go before network keys
    #[arg(long)]
    pub decryption_order: Option<String>,
    #[command(flatten)]
    pub format: FormatArgs,
    /// The file to decrypt (standard input if absent, `-` or /dev/stdin)
    pub file: Option<PathBuf>,
}

pub fn run(args: DecryptArgs, global: &GlobalArgs) -> CliResult {
    let input = Input::from_arg(args.file.as_deref());
    let output = Output::choose(&input, args.in_place, args.output.as_deref())?;
    input.require_existing()?;
    let extract = match args.extract.as_deref() {
        Some(path) => Some(parse_index_path(path).map_err(|e| {
            Failure::new(
                Code::InvalidTreePathFormat,
                format!("error parsing --extract path: {e}"),
            )
            .with_hint(r#"write keys quoted and indexes bare: '["db"]["hosts"][0]'"#)
        })?),
        None => None,
    };
    let in_format = super::input_format(&args.format, &input)?;
    let out_format = super::output_format(&args.format, &input, in_format)?;
    let config = super::load_config(global)?;
    let keyring = super::keys::keyring(args.decryption_order.as_deref())?;
    let streamable = extract.is_none() && veil::stream::covers(in_format, out_format);
    let bytes = if streamable {
        input.read_text()?
    } else {
        Text::Read(input.read()?)
    };
    let options = OpenOptions {
        ignore_mac: args.ignore_mac,
        remember_ivs: false,
    };
    let indent = super::indent(config.as_ref(), global);
    // A whole file decrypted to its own format goes straight from its text when a streaming
    // pass reads it. If the pass declines, or anything fails (recovering the key included),
    // the tree path below loads the file, reports what is wrong in its usual order, and opens
    // it with whatever recovering the key gave.
    let mut recovered = None;
    if streamable {
        if let Some(metadata) = veil::stream::metadata(in_format, bytes.bytes())
            .and_then(|node| document::metadata_from(&node).ok())
        {
            let key = keyring.recover(&metadata);
            if let Ok(key) = &key {
                let release = |offset| bytes.release_before(offset);
                let stream = document::open_stream(
                    in_format,
                    bytes.bytes(),
                    &metadata,
                    key,
                    options,
                    indent,
                    &release,
                );
                if let Some(text) = stream {
                    return output.write(&text);
                }
            }
            recovered = Some((metadata, key));
        }
    }
    // Loading takes the input: it is the YAML layout's source, or dropped once parsed.
    let loaded = in_format.load_owned(bytes.into_vec()).map_err(|e| {
        Failure::new(
            Code::Generic,
            in_file(&input, format!("Error loading file: {e}")),
        )
    })?;
    let opened = document::open_recovered(loaded, &keyring, options, recovered)
        .map_err(|e| open_failure(&input, e))?;
    if !opened.kept_comments.is_empty() {
        let paths: Vec<_> = opened
            .kept_comments
            .iter()
            .map(|c| c.path.as_str())
            .collect();
        eprintln!(
            "warning: {}: {} comment(s) were not encrypted or could not be decrypted and are kept as they are (at {})",
            input.display(),
            paths.len(),
            paths.join(", ")
        );
    }
    let text = match extract {
        Some(steps) => {
            let node = opened
                .tree
                .documents
                .first()
                .and_then(|document| edit::get(document, &steps))
                .ok_or_else(|| {
                    Failure::new(
                        Code::Generic,
                        in_file(
                            &input,
                            format!(
                                "error truncating tree: {} not found",
                                args.extract.unwrap_or_default()
                            ),
                        ),
                    )
                })?;
            out_format.emit_value(node, indent)
        }
        None => out_format.emit(&opened.tree, None, indent),
    }
    .map_err(|e| {
        let failure = Failure::new(
            Code::ErrorDumpingTree,
            in_file(&input, format!("Error dumping file: {e}")),
        );
        if out_format == veil::store::Format::Binary {
            failure.with_hint(
                "this is likely not an encrypted binary file; pass --output-type or --input-type",
            )
        } else {
            failure
        }
    })?;
    output.write(&text)?;
    super::leave_for_exit(opened);
    Ok(())
}

/// Maps an opening failure to sops' exit code, with a hint where one helps.
pub fn open_failure(input: &Input, err: DocumentError) -> Failure {
    let code = match &err {
        DocumentError::Recovery(_) => Code::CouldNotRetrieveKey,
        DocumentError::Decrypt(_) => Code::ErrorDecryptingTree,
        DocumentError::MacMismatch { .. } | DocumentError::MacUnreadable(_) => Code::MacMismatch,
        _ => Code::Generic,
    };
    let hint = match &err {
        DocumentError::Recovery(_) => Some("make an identity available: SOPS_AGE_KEY_FILE, ~/.config/sops/age/keys.txt, or a gpg secret key"),
        DocumentError::MacMismatch { .. } => Some("--ignore-mac decrypts anyway, if you trust the file"),
        DocumentError::NotEncrypted => Some("the file has no sops metadata; encrypt it with `veil encrypt`"),
        _ => None,
    };
    let failure = Failure::new(code, in_file(input, &err));
    match hint {
        Some(h) => failure.with_hint(h),
        None => failure,
    }
}
