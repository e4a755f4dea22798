//! The `veil` command line: sops' subcommands, legacy flags, environment variables and exit
//! codes. One file per subcommand; this one parses and dispatches.

mod args;
mod change;
mod completion;
mod decrypt;
mod edit;
mod encrypt;
mod exec;
mod failure;
mod filestatus;
mod groups;
mod io;
mod keys;
mod mapped;
mod rotate;
mod set;
mod updatekeys;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

pub use failure::{CliResult, Code, Failure};

use args::{FormatArgs, RecipientArgs, SelectorArgs};
use io::Input;
use veil::config::{self, Config};
use veil::store::{Format, Indent};

/// The sops release whose command line and file format veil follows.
pub const SOPS_VERSION: &str = veil::metadata::FORMAT_VERSION;

#[derive(Parser, Debug)]
#[command(
    name = "veil",
    about = "Keep secrets in git: encrypt YAML, JSON, dotenv, INI, TOML and binary files value by value, compatible with sops",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub legacy: LegacyArgs,
}

/// Flags sops reads before the subcommand; veil accepts them anywhere.
#[derive(Args, Debug, Default)]
pub struct GlobalArgs {
    /// Path to the .sops.yaml config (env SOPS_CONFIG); default: search from the working directory up
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Print more about what happens
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Indentation for YAML and JSON output
    #[arg(long, global = true)]
    pub indent: Option<usize>,
    /// Compute the MAC over encrypted values only
    #[arg(long, global = true)]
    pub mac_only_encrypted: bool,
    /// Leave values after a comment matching this regex unencrypted
    #[arg(long, global = true)]
    pub unencrypted_comment_regex: Option<String>,
    /// Encrypt only values after a comment matching this regex
    #[arg(long, global = true)]
    pub encrypted_comment_regex: Option<String>,
    /// Accepted for sops compatibility; veil never checks for updates
    #[arg(long, global = true, hide = true)]
    pub disable_version_check: bool,
    /// Accepted for sops compatibility; veil never checks for updates
    #[arg(long, global = true, hide = true)]
    pub check_for_updates: bool,
    /// Print the version
    #[arg(short = 'v', long, global = true)]
    pub version: bool,
    /// A sops key service to use (not available in veil yet; keys are used locally)
    #[arg(long, global = true, hide = true)]
    pub keyservice: Vec<String>,
    /// Accepted for sops compatibility: veil always uses local keys
    #[arg(
        long,
        global = true,
        hide = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub enable_local_keyservice: Option<String>,
}

/// sops' flag-driven mode: `sops -d FILE`, `sops -e -i FILE`.
#[derive(Args, Debug, Default)]
pub struct LegacyArgs {
    /// Encrypt FILE
    #[arg(short = 'e', long)]
    pub encrypt: bool,
    /// Decrypt FILE
    #[arg(short = 'd', long)]
    pub decrypt: bool,
    /// Rotate FILE's data key
    #[arg(short = 'r', long)]
    pub rotate: bool,
    /// Set one value: --set '["key"] "json value"'
    #[arg(long, value_name = "INDEX VALUE")]
    pub set: Option<String>,
    #[command(flatten)]
    pub key_changes: rotate::KeyChangeArgs,
    /// Write the result back to FILE
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// Write the result to this file
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print only this part of the decrypted tree, e.g. '["db"]["password"]'
    #[arg(long)]
    pub extract: Option<String>,
    /// Decrypt even if the MAC does not match
    #[arg(long)]
    pub ignore_mac: bool,
    /// Key types to try first, e.g. age,pgp (env SOPS_DECRYPTION_ORDER); offline keys (age, pgp,
    /// pkcs11) still go before network keys
    #[arg(long)]
    pub decryption_order: Option<String>,
    /// When editing, show the sops metadata too
    #[arg(short = 's', long)]
    pub show_master_keys: bool,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    #[command(flatten)]
    pub selectors: SelectorArgs,
    #[command(flatten)]
    pub format: FormatArgs,
    /// The file to work on
    pub file: Option<PathBuf>,
}

// Parsed once per process: boxing the argument structs would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encrypt a file, printing the result (or writing it with -i/--output)
    Encrypt(encrypt::EncryptArgs),
    /// Decrypt a file, printing the plaintext (or writing it with -i/--output)
    Decrypt(decrypt::DecryptArgs),
    /// Print {"encrypted":true} or {"encrypted":false} for a file
    Filestatus(filestatus::FilestatusArgs),
    /// Set one value of an encrypted file in place: veil set FILE '["key"]' '"json value"'
    Set(set::SetArgs),
    /// Remove one key or list element of an encrypted file in place
    Unset(set::UnsetArgs),
    /// Edit an encrypted file in $SOPS_EDITOR / $EDITOR; a missing file is created
    Edit(edit::EditArgs),
    /// Encrypt the file again under a new data key, optionally adding or removing recipients
    Rotate(rotate::RotateArgs),
    /// Make files' recipients match their creation rule in .sops.yaml
    Updatekeys(updatekeys::UpdateKeysArgs),
    /// Add or delete key groups
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Print a shell completion script: bash, zsh or fish
    Completion(completion::CompletionArgs),
    /// Run a command with the file's top-level values as environment variables
    ExecEnv(exec::ExecEnvArgs),
    /// Run a command with the decrypted file at {} (a FIFO unless --no-fifo)
    ExecFile(exec::ExecFileArgs),
}

/// Runs a parsed command line. `invoked_as_sops` changes only what `--version` prints.
pub fn run(cli: Cli, invoked_as_sops: bool) -> CliResult {
    if cli.global.version {
        print_version(invoked_as_sops);
        return Ok(());
    }
    let remote_keyservice = !cli.global.keyservice.is_empty() || env("SOPS_KEYSERVICE").is_some();
    if remote_keyservice {
        return Err(Failure::new(
            Code::Generic,
            "--keyservice / SOPS_KEYSERVICE: veil has no key service client yet",
        )
        .with_hint("run veil where the keys are, or unset SOPS_KEYSERVICE"));
    }
    match cli.command {
        Some(Command::Encrypt(args)) => encrypt::run(args, &cli.global),
        Some(Command::Decrypt(args)) => decrypt::run(args, &cli.global),
        Some(Command::Filestatus(args)) => filestatus::run(args, &cli.global),
        Some(Command::Set(args)) => set::run_set(args, &cli.global),
        Some(Command::Edit(args)) => edit::run(args, &cli.global),
        Some(Command::Rotate(args)) => rotate::run(args, &cli.global),
        Some(Command::Updatekeys(args)) => updatekeys::run(args, &cli.global),
        Some(Command::Groups(command)) => groups::run(command, &cli.global),
        Some(Command::Completion(args)) => completion::run(args, &cli.global, invoked_as_sops),
        Some(Command::ExecEnv(args)) => exec::run_env(args, &cli.global),
        Some(Command::ExecFile(args)) => exec::run_file(args, &cli.global),
        Some(Command::Unset(args)) => set::run_unset(args, &cli.global),
        None => run_legacy(cli.legacy, &cli.global),
    }
}

fn print_version(invoked_as_sops: bool) {
    let veil = env!("CARGO_PKG_VERSION");
    if invoked_as_sops {
        // Tools such as Ansible's community.sops parse "sops X.Y.Z" from the first line.
        println!("sops {SOPS_VERSION} (veil {veil})");
    } else {
        println!("veil {veil} (sops {SOPS_VERSION} compatible)");
    }
}

fn run_legacy(legacy: LegacyArgs, global: &GlobalArgs) -> CliResult {
    let Some(file) = legacy.file.clone() else {
        return Err(
            Failure::new(Code::NoFileSpecified, "Error: no file specified")
                .with_hint("use `veil encrypt FILE`, `veil decrypt FILE`, or see `veil --help`"),
        );
    };
    let modes = [
        legacy.encrypt,
        legacy.decrypt,
        legacy.rotate,
        legacy.set.is_some(),
    ];
    if modes.iter().filter(|m| **m).count() > 1 {
        return Err(Failure::new(
            Code::ConflictingParameters,
            "Error: use only one of --encrypt, --decrypt, --rotate and --set",
        ));
    }
    if legacy.key_changes.any() && !file.exists() {
        return Err(Failure::new(
            Code::CannotChangeKeysFromNonExistentFile,
            format!(
                "Error: cannot add or remove keys on non-existent file {:?}",
                file.display().to_string()
            ),
        ));
    }
    if legacy.rotate
        || (legacy.key_changes.any() && !legacy.encrypt && !legacy.decrypt && legacy.set.is_none())
    {
        return rotate::run(
            rotate::RotateArgs {
                in_place: legacy.in_place,
                output: legacy.output,
                keys: legacy.key_changes,
                decryption_order: legacy.decryption_order,
                ignore_mac: legacy.ignore_mac,
                format: legacy.format,
                file,
            },
            global,
        );
    }
    if let Some(text) = legacy.set {
        // sops splits `--set '["a"]["b"] value'` at the first "] ".
        let Some(at) = text.find("] ") else {
            return Err(Failure::new(
                Code::InvalidSetFormat,
                "Error: --set needs an index and a value: --set '[\"key\"] \"value\"'",
            ));
        };
        return set::run_set(
            set::SetArgs {
                value_file: false,
                value_stdin: false,
                idempotent: false,
                open: set::OpenArgs {
                    input_type: legacy.format.input_type,
                    ignore_mac: legacy.ignore_mac,
                    decryption_order: legacy.decryption_order,
                    ..Default::default()
                },
                file,
                index: text[..at + 1].to_string(),
                value: Some(text[at + 2..].to_string()),
            },
            global,
        );
    }
    match (legacy.encrypt, legacy.decrypt) {
        (true, _) => encrypt::run(
            encrypt::EncryptArgs {
                in_place: legacy.in_place,
                output: legacy.output,
                recipients: legacy.recipients,
                selectors: legacy.selectors,
                format: legacy.format,
                file: Some(file),
            },
            global,
        ),
        (false, true) => decrypt::run(
            decrypt::DecryptArgs {
                in_place: legacy.in_place,
                output: legacy.output,
                extract: legacy.extract,
                ignore_mac: legacy.ignore_mac,
                decryption_order: legacy.decryption_order,
                format: legacy.format,
                file: Some(file),
            },
            global,
        ),
        (false, false) => edit::run(
            edit::EditArgs {
                show_master_keys: legacy.show_master_keys,
                ignore_mac: legacy.ignore_mac,
                decryption_order: legacy.decryption_order,
                input_type: legacy.format.input_type,
                recipients: legacy.recipients,
                selectors: legacy.selectors,
                file,
            },
            global,
        ),
    }
}

/// An environment variable, with empty meaning unset (as sops' flag defaults behave).
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn format_named(name: Option<&str>) -> CliResult<Option<Format>> {
    match name {
        None => Ok(None),
        Some(n) => Format::from_name(n).map(Some).ok_or_else(|| {
            Failure::new(Code::Generic, format!("unknown format {n:?}"))
                .with_hint("use one of yaml, json, dotenv, ini, toml, binary")
        }),
    }
}

/// The path that decides formats and creation rules: `--filename-override`, else the file.
fn naming_path<'a>(format: &'a FormatArgs, input: &'a Input) -> Option<&'a Path> {
    format.filename_override.as_deref().or(match input {
        Input::File(p) => Some(p.as_path()),
        Input::Stdin => None,
    })
}

/// Input format: `--input-type`, else the extension (stdin without a name reads as binary).
fn input_format(format: &FormatArgs, input: &Input) -> CliResult<Format> {
    if let Some(f) = format_named(format.input_type.as_deref())? {
        return Ok(f);
    }
    Ok(naming_path(format, input)
        .map(Format::from_path)
        .unwrap_or(Format::Binary))
}

/// Output format: `--output-type`, else the extension when it names a format, else the input's.
fn output_format(format: &FormatArgs, input: &Input, input_format: Format) -> CliResult<Format> {
    if let Some(f) = format_named(format.output_type.as_deref())? {
        return Ok(f);
    }
    Ok(match naming_path(format, input).map(Format::from_path) {
        Some(f) if f != Format::Binary => f,
        _ => input_format,
    })
}

/// The `.sops.yaml` in effect (`--config`, `SOPS_CONFIG`, or discovered from the working directory).
fn load_config(global: &GlobalArgs) -> CliResult<Option<Config>> {
    let explicit = global
        .config
        .clone()
        .or_else(|| env("SOPS_CONFIG").map(PathBuf::from));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    config::discover(&cwd, explicit.as_deref()).map_err(|e| Failure::new(Code::Generic, e))
}

fn indent(config: Option<&Config>, global: &GlobalArgs) -> Indent {
    match config {
        Some(c) => c.indent(global.indent),
        None => match global.indent {
            Some(n) => Indent {
                yaml: n,
                json: Some(n),
                json_binary: Some(n),
            },
            None => Indent::default(),
        },
    }
}

/// Reads an encrypted file into its store (exit 2 when it cannot be parsed).
fn load_encrypted(input: &Input, format: Format) -> CliResult<veil::store::Loaded> {
    let bytes = input.read()?;
    format.load_owned(bytes).map_err(|e| {
        Failure::new(
            Code::CouldNotReadInputFile,
            in_file(input, format!("Error loading file: {e}")),
        )
    })
}

/// Writes an encrypted tree with its metadata block, in `format` (exit 4 when it cannot).
fn emit_encrypted(
    input: &Input,
    format: Format,
    tree: &veil::tree::Tree,
    metadata: &veil::metadata::Metadata,
    config: Option<&Config>,
    global: &GlobalArgs,
) -> CliResult<Vec<u8>> {
    format
        .emit(tree, Some(&metadata.to_map()), indent(config, global))
        .map_err(|e| dump_failure(input, e))
}

/// A tree that cannot be written in the output format.
fn dump_failure(input: &Input, err: veil::store::StoreError) -> Failure {
    Failure::new(
        Code::ErrorDumpingTree,
        in_file(input, format!("Could not marshal tree: {err}")),
    )
}

/// Hands a document that is no longer needed to the end of the process instead of freeing it
/// now: the command is about to exit, and freeing a large tree one allocation at a time costs
/// more than writing it out did. (Its values were never wiped on drop either; the operating
/// system reclaims the pages when the process ends.)
fn leave_for_exit<T>(document: T) {
    std::mem::forget(document);
}

/// Adds the file name to a library error.
fn in_file(input: &Input, err: impl std::fmt::Display) -> String {
    format!("{}: {err}", input.display())
}
