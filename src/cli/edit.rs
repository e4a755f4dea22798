//! `veil edit FILE` (and the bare `veil FILE`): decrypt to a private temporary file, run the
//! editor, and encrypt the result under the same data key.
//!
//! The plaintext lives in a fresh 0700 directory, on tmpfs when the machine has one, so it never
//! touches a persistent disk there; the directory goes away on every way out, including SIGINT,
//! SIGTERM and SIGHUP. Unchanged values keep their exact ciphertext, so editing one value changes
//! one line of the file (plus `lastmodified` and `mac`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sha2::{Digest, Sha256};
use veil::document::{self, Opened};
use veil::store::Format;
use zeroize::Zeroizing;

use super::args::{RecipientArgs, SelectorArgs};
use super::{change, env, in_file, CliResult, Code, Failure, GlobalArgs};

#[derive(Args, Debug)]
pub struct EditArgs {
    /// Show the sops metadata in the editor too (read-only: changes to it are ignored)
    #[arg(short = 's', long)]
    pub show_master_keys: bool,
    /// Open even if the MAC does not match
    #[arg(long)]
    pub ignore_mac: bool,
    /// Key types to try first, e.g. age,pgp (env SOPS_DECRYPTION_ORDER); offline keys (age, pgp,
    /// pkcs11) still go before network keys
    #[arg(long)]
    pub decryption_order: Option<String>,
    /// Input format (default: from the file extension)
    #[arg(long)]
    pub input_type: Option<String>,
    /// Recipients for a new file
    #[command(flatten)]
    pub recipients: RecipientArgs,
    #[command(flatten)]
    pub selectors: SelectorArgs,
    /// The file to edit; a missing file is created
    pub file: PathBuf,
}

/// What a new file starts with, per format (sops starts from an example document too).
fn template(format: Format) -> &'static [u8] {
    match format {
        Format::Yaml => b"# A new file: write your secrets here.\nexample_key: example_value\n",
        Format::Json => b"{\n\t\"example_key\": \"example_value\"\n}\n",
        Format::Dotenv => b"EXAMPLE_KEY=example_value\n",
        Format::Ini => b"[section]\nexample_key = example_value\n",
        Format::Toml => {
            b"# A new file: write your secrets here.\nexample_key = \"example_value\"\n"
        }
        Format::Binary => b"example value\n",
    }
}

pub fn run(args: EditArgs, global: &GlobalArgs) -> CliResult {
    let signals = Signals::register()?;
    if args.file.exists() {
        edit_existing(args, global, &signals)
    } else {
        create(args, global, &signals)
    }
}

fn edit_existing(args: EditArgs, global: &GlobalArgs, signals: &Signals) -> CliResult {
    let opening = change::open(
        &args.file,
        args.input_type.as_deref(),
        args.decryption_order.as_deref(),
        args.ignore_mac,
        global,
    )?;
    let indent = super::indent(opening.config.as_ref(), global);
    let metadata_map = opening.opened.metadata.to_map();
    let shown = if args.show_master_keys {
        Some(&metadata_map)
    } else {
        None
    };
    let plaintext = Zeroizing::new(
        opening
            .format
            .emit(&opening.opened.tree, shown, indent)
            .map_err(|e| {
                Failure::new(
                    Code::ErrorDumpingTree,
                    in_file(&opening.input, format!("Error dumping file: {e}")),
                )
            })?,
    );
    let Some(edited) = edit_until_valid(
        &args.file,
        opening.format,
        &plaintext,
        args.show_master_keys,
        signals,
    )?
    else {
        return Err(Failure::new(
            Code::FileHasNotBeenModified,
            "File has not changed, exiting.",
        ));
    };
    let change::Opening {
        path,
        input,
        format,
        config,
        opened,
    } = opening;
    let reopened = Opened {
        tree: edited,
        metadata: opened.metadata,
        cipher: opened.cipher,
        kept_comments: Vec::new(),
    };
    let (tree, metadata) = document::seal(reopened)
        .map_err(|e| Failure::new(Code::ErrorEncryptingTree, in_file(&input, e)))?;
    change::write_sealed(
        &path,
        &input,
        format,
        config.as_ref(),
        global,
        &tree,
        &metadata,
    )
}

fn create(args: EditArgs, global: &GlobalArgs, signals: &Signals) -> CliResult {
    let input = change::in_place_input(&args.file)?;
    let format_args = super::args::FormatArgs {
        input_type: args.input_type.clone(),
        ..Default::default()
    };
    let format = super::input_format(&format_args, &input)?;
    let config = super::load_config(global)?;
    let rule = match &config {
        Some(config) => config
            .rule_for(&args.file)
            .map_err(|e| Failure::new(Code::Generic, e))?,
        None => None,
    };
    // Check the recipients before the user types anything.
    let plan = super::keys::encrypt_plan(
        &args.recipients,
        &args.selectors,
        global,
        rule,
        format == Format::Binary,
    )?;
    if plan.groups.iter().all(|g| g.is_empty()) {
        return Err(Failure::new(
            Code::Generic,
            in_file(&input, "no recipients for a new file"),
        )
        .with_hint(
            "give --age or --pgp, set SOPS_AGE_RECIPIENTS, or add a creation rule to .sops.yaml",
        ));
    }
    let Some(mut tree) = edit_until_valid(&args.file, format, template(format), false, signals)?
    else {
        return Err(Failure::new(
            Code::FileHasNotBeenModified,
            "File has not changed, exiting.",
        ));
    };
    let metadata = document::encrypt(&mut tree, &plan)
        .map_err(|e| Failure::new(Code::ErrorEncryptingTree, in_file(&input, e)))?;
    change::write_sealed(
        &args.file,
        &input,
        format,
        config.as_ref(),
        global,
        &tree,
        &metadata,
    )
}

/// Runs the editor on the plaintext until it gives a valid document. `None`: nothing changed.
fn edit_until_valid(
    target: &Path,
    format: Format,
    plaintext: &[u8],
    metadata_shown: bool,
    signals: &Signals,
) -> CliResult<Option<veil::tree::Tree>> {
    let scratch = Scratch::new(target, plaintext)?;
    let before = Sha256::digest(plaintext);
    loop {
        run_editor(&scratch.file, signals)?;
        let bytes = Zeroizing::new(std::fs::read(&scratch.file).map_err(|e| {
            Failure::new(
                Code::CouldNotReadInputFile,
                format!("Could not read the edited file: {e}"),
            )
        })?);
        if Sha256::digest(bytes.as_slice()) == before {
            return Ok(None);
        }
        let problem = match format.load(&bytes) {
            Ok(loaded) if loaded.metadata.is_some() && !metadata_shown => {
                "the file must not have a top-level sops key".to_string()
            }
            Ok(loaded) if loaded.tree.documents.is_empty() => "the file is empty".to_string(),
            Ok(mut loaded) => {
                loaded.metadata = None;
                return Ok(Some(loaded.tree));
            }
            Err(e) => format!("the edited file is not valid {}: {e}", format.name()),
        };
        let message = format!("{}: {problem}", target.display());
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(Code::CouldNotReadInputFile, message)
                .with_hint("the file was left as it was"));
        }
        eprintln!("{message}");
        eprintln!("Press enter to return to the editor, or Ctrl+C to exit.");
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if matches!(read, Ok(0) | Err(_)) || signals.caught() {
            return Err(Failure::new(
                Code::Generic,
                "Edit cancelled; the file was left as it was",
            ));
        }
    }
}

/// The editor command: `SOPS_EDITOR`, else `EDITOR` (split as a shell would), else the first of
/// vim, nano, vi on PATH.
fn editor_command() -> CliResult<Vec<String>> {
    for var in ["SOPS_EDITOR", "EDITOR"] {
        if let Some(text) = env(var) {
            return shlex::split(&text)
                .filter(|words| !words.is_empty())
                .ok_or_else(|| {
                    Failure::new(
                        Code::NoEditorFound,
                        format!("{var} cannot be split into a command: {text:?}"),
                    )
                });
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["vim", "nano", "vi"] {
        if std::env::split_paths(&path).any(|dir| dir.join(name).is_file()) {
            return Ok(vec![name.to_string()]);
        }
    }
    Err(Failure::new(Code::NoEditorFound, "No editor found")
        .with_hint("set SOPS_EDITOR or EDITOR, e.g. EDITOR=nano"))
}

fn run_editor(file: &Path, signals: &Signals) -> CliResult {
    let words = editor_command()?;
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .arg(file)
        .spawn()
        .map_err(|e| {
            Failure::new(
                Code::NoEditorFound,
                format!("Could not run the editor {:?}: {e}", words[0]),
            )
        })?;
    loop {
        if signals.caught() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::new(
                Code::Generic,
                "Edit interrupted; the file was left as it was",
            ));
        }
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(Failure::new(
                    Code::Generic,
                    format!("The editor exited with {status}; the file was left as it was"),
                ))
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(Failure::new(
                    Code::Generic,
                    format!("Waiting for the editor failed: {e}"),
                ))
            }
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, turned into a flag so the scratch directory is always removed.
pub struct Signals(Arc<AtomicBool>);

impl Signals {
    fn register() -> CliResult<Signals> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            signal_hook::flag::register(signal, Arc::clone(&flag)).map_err(|e| {
                Failure::new(Code::Generic, format!("cannot watch for signals: {e}"))
            })?;
        }
        Ok(Signals(flag))
    }

    fn caught(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A private directory holding the plaintext under the target's base name (so the editor picks
/// the right syntax), removed when dropped.
struct Scratch {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Scratch {
    fn new(target: &Path, plaintext: &[u8]) -> CliResult<Scratch> {
        let base = private_base();
        let dir = tempfile::Builder::new()
            .prefix("veil-edit-")
            .tempdir_in(&base)
            .map_err(|e| {
                Failure::new(
                    Code::CouldNotWriteOutputFile,
                    format!(
                        "Could not create a temporary directory in {}: {e}",
                        base.display()
                    ),
                )
            })?;
        let name = target
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("file"));
        let file = dir.path().join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut handle = options
            .open(&file)
            .and_then(|mut f| f.write_all(plaintext).map(|_| f))
            .map_err(|e| {
                Failure::new(
                    Code::CouldNotWriteOutputFile,
                    format!("Could not write the temporary file: {e}"),
                )
            })?;
        let _ = handle.flush();
        Ok(Scratch { dir, file })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Overwrite before unlinking: on a persistent disk the blocks would otherwise keep the
        // plaintext until reused.
        if let Ok(len) = std::fs::metadata(&self.file).map(|m| m.len()) {
            let _ = std::fs::write(&self.file, vec![0u8; len as usize]);
        }
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

/// Where scratch directories go: a per-user tmpfs when there is one, else the temp directory.
fn private_base() -> PathBuf {
    let candidates = [
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        Some(PathBuf::from("/dev/shm")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| is_writable_dir(dir))
        .unwrap_or_else(std::env::temp_dir)
}

fn is_writable_dir(dir: &Path) -> bool {
    tempfile::Builder::new()
        .prefix(".veil-probe-")
        .tempfile_in(dir)
        .is_ok()
}
