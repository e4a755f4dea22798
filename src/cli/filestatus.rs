//! `veil filestatus`: whether a file is encrypted, as sops prints it.

use std::path::PathBuf;

use clap::Args;

use super::args::FormatArgs;
use super::io::Input;
use super::{in_file, CliResult, Code, Failure, GlobalArgs};

#[derive(Args, Debug)]
pub struct FilestatusArgs {
    #[command(flatten)]
    pub format: FormatArgs,
    /// The file to check
    pub file: PathBuf,
}

pub fn run(args: FilestatusArgs, _global: &GlobalArgs) -> CliResult {
    let input = Input::from_arg(Some(&args.file));
    input.require_existing()?;
    let format = super::input_format(&args.format, &input)?;
    let loaded = format
        .load_owned(input.read()?)
        .map_err(|e| Failure::new(Code::Generic, in_file(&input, e)))?;
    let encrypted = veil::document::is_encrypted(&loaded);
    println!("{{\"encrypted\":{encrypted}}}");
    Ok(())
}
