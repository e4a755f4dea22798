//! `veil encrypt`: seal a plain file for its recipients.

use std::path::PathBuf;

use clap::Args;
use veil::document::{self, DocumentError};
use veil::store::{Format, StoreError};

use super::args::{FormatArgs, RecipientArgs, SelectorArgs};
use super::io::{Input, Output, Text};
use super::{in_file, CliResult, Code, Failure, GlobalArgs};

#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// Write the result back to FILE
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// Write the result to this file
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    #[command(flatten)]
    pub selectors: SelectorArgs,
    #[command(flatten)]
    pub format: FormatArgs,
    /// The file to encrypt (standard input if absent, `-` or /dev/stdin)
    pub file: Option<PathBuf>,
}

pub fn run(args: EncryptArgs, global: &GlobalArgs) -> CliResult {
    let input = Input::from_arg(args.file.as_deref());
    let output = Output::choose(&input, args.in_place, args.output.as_deref())?;
    input.require_existing()?;
    if input.is_stdin() && args.format.filename_override.is_none() {
        return Err(Failure::new(
            Code::ConflictingParameters,
            "Error: --filename-override is required when encrypting from stdin",
        )
        .with_hint("it names the file for format detection and .sops.yaml rules, e.g. --filename-override secrets.yaml"));
    }
    let in_format = super::input_format(&args.format, &input)?;
    let out_format = super::output_format(&args.format, &input, in_format)?;
    let streamable = veil::stream::covers(in_format, out_format);
    let bytes = if streamable {
        input.read_text()?
    } else {
        Text::Read(input.read()?)
    };
    // Files are encrypted straight from their text when a streaming pass reads them; anything
    // it declines (broken, unusual, already encrypted) takes the tree path below.
    if streamable {
        let release = |offset| bytes.release_before(offset);
        if let Some(checked) = veil::stream::check(in_format, bytes.bytes(), &release) {
            let (plan, indent) = prepare(&args, global, &input, in_format)?;
            let sealer = document::Sealer::new(&plan).map_err(|e| encrypt_failure(&input, e))?;
            return output.write_with(
                |sink| sealer.seal_stream(checked, indent, &release, sink),
                |err| super::dump_failure(&input, err),
            );
        }
    }
    let bytes = bytes.into_vec();
    // sops encrypts any file's raw bytes in binary mode, even one that looks like an envelope.
    let mut loaded = match in_format {
        Format::Binary => veil::store::binary::load_plain_owned(bytes),
        format => format
            .load_owned(bytes)
            .map_err(|e| load_failure(&input, e))?,
    };
    if loaded.metadata.is_some() {
        return Err(Failure::new(
            Code::FileAlreadyEncrypted,
            in_file(&input, "the file is already encrypted"),
        )
        .with_hint(
            "decrypt it first, or use `veil rotate` / `veil updatekeys` to change its keys",
        ));
    }
    if loaded.tree.documents.is_empty() {
        return Err(Failure::new(
            Code::NeedAtLeastOneDocument,
            in_file(&input, "the file cannot be completely empty"),
        ));
    }
    let (plan, indent) = prepare(&args, global, &input, in_format)?;
    let metadata = document::Sealer::new(&plan)
        .and_then(|sealer| sealer.seal_tree(&mut loaded.tree))
        .map_err(|e| encrypt_failure(&input, e))?;
    // Written as it is produced: a large encrypted file is several times its plaintext.
    let metadata = metadata.to_map();
    output.write_with(
        |sink| out_format.emit_to(&loaded.tree, Some(&metadata), indent, sink),
        |err| super::dump_failure(&input, err),
    )?;
    super::leave_for_exit(loaded);
    Ok(())
}

/// Who the file is encrypted for and how (flags, environment, `.sops.yaml`), and the output's
/// indentation.
fn prepare(
    args: &EncryptArgs,
    global: &GlobalArgs,
    input: &Input,
    in_format: Format,
) -> CliResult<(document::EncryptPlan, veil::store::Indent)> {
    let config = super::load_config(global)?;
    let naming = super::naming_path(&args.format, input).map(|p| p.to_path_buf());
    let rule = match (&config, &naming) {
        (Some(config), Some(path)) => config
            .rule_for(path)
            .map_err(|e| Failure::new(Code::Generic, e))?,
        _ => None,
    };
    let plan = super::keys::encrypt_plan(
        &args.recipients,
        &args.selectors,
        global,
        rule,
        in_format == Format::Binary,
    )?;
    Ok((plan, super::indent(config.as_ref(), global)))
}

fn load_failure(input: &Input, err: StoreError) -> Failure {
    match err {
        StoreError::Empty => Failure::new(
            Code::NeedAtLeastOneDocument,
            in_file(input, "the file cannot be completely empty"),
        ),
        StoreError::AlreadyEncrypted(_) => {
            Failure::new(Code::FileAlreadyEncrypted, in_file(input, err))
        }
        StoreError::NonStringKey { .. } => {
            Failure::new(Code::ErrorEncryptingTree, in_file(input, err))
        }
        other => Failure::new(
            Code::CouldNotReadInputFile,
            in_file(input, format!("Error unmarshalling file: {other}")),
        ),
    }
}

fn encrypt_failure(input: &Input, err: DocumentError) -> Failure {
    let code = match err {
        DocumentError::Encrypt(_) => Code::ErrorEncryptingTree,
        _ => Code::Generic,
    };
    let failure = Failure::new(code, in_file(input, &err));
    match err {
        DocumentError::NoRecipients => {
            failure.with_hint("e.g. veil encrypt --age age1… FILE; see README for .sops.yaml")
        }
        _ => failure,
    }
}
