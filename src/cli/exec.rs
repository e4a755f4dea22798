//! `veil exec-env FILE COMMAND` and `veil exec-file FILE COMMAND`: hand decrypted secrets to a
//! program without writing them to a disk.
//!
//! exec-env puts the file's top-level values into the command's environment; exec-file gives the
//! command the decrypted document as a file, by default a FIFO that holds nothing once read.
//! Both run the command with `/bin/sh -c` as sops does and exit with its exit code.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use clap::Args;
use veil::document::{self, OpenOptions, Opened};
use veil::tree::{format_float, format_time, Node, Value};
use zeroize::Zeroizing;

use super::args::FormatArgs;
use super::io::Input;
use super::{in_file, CliResult, Code, Failure, GlobalArgs};

#[derive(Args, Debug)]
pub struct ExecEnvArgs {
    /// Start the command in the background (deprecated in sops; veil waits for it as usual)
    #[arg(long)]
    pub background: bool,
    /// Give the command only the decrypted variables, not veil's environment
    #[arg(long)]
    pub pristine: bool,
    /// Run the command as this user
    #[arg(long)]
    pub user: Option<String>,
    /// Replace the veil process with the command instead of running it as a child
    #[arg(long)]
    pub same_process: bool,
    /// Key types to try first, e.g. age,pgp (env SOPS_DECRYPTION_ORDER); offline keys (age, pgp,
    /// pkcs11) still go before network keys
    #[arg(long)]
    pub decryption_order: Option<String>,
    /// Decrypt even if the MAC does not match
    #[arg(long)]
    pub ignore_mac: bool,
    /// The encrypted file
    pub file: PathBuf,
    /// The command, run with /bin/sh -c
    pub command: String,
}

#[derive(Args, Debug)]
pub struct ExecFileArgs {
    /// Start the command in the background (deprecated in sops; veil waits for it as usual)
    #[arg(long)]
    pub background: bool,
    /// Write a 0600 regular file instead of a FIFO (for commands that read the file twice)
    #[arg(long)]
    pub no_fifo: bool,
    /// Run the command as this user
    #[arg(long)]
    pub user: Option<String>,
    /// The name of the decrypted file inside its private directory (default tmp-file)
    #[arg(long)]
    pub filename: Option<PathBuf>,
    /// Key types to try first, e.g. age,pgp (env SOPS_DECRYPTION_ORDER); offline keys (age, pgp,
    /// pkcs11) still go before network keys
    #[arg(long)]
    pub decryption_order: Option<String>,
    /// Decrypt even if the MAC does not match
    #[arg(long)]
    pub ignore_mac: bool,
    #[command(flatten)]
    pub format: FormatArgs,
    /// The encrypted file
    pub file: PathBuf,
    /// The command, run with /bin/sh -c; {} stands for the decrypted file's path
    pub command: String,
}

fn open(
    file: &Path,
    format_args: &FormatArgs,
    order: Option<&str>,
    ignore_mac: bool,
) -> CliResult<(Input, veil::store::Format, Opened)> {
    let input = Input::from_arg(Some(file));
    input.require_existing()?;
    let format = super::input_format(format_args, &input)?;
    let keyring = super::keys::keyring(order)?;
    let loaded = format.load_owned(input.read()?).map_err(|e| {
        Failure::new(
            Code::Generic,
            in_file(&input, format!("Error loading file: {e}")),
        )
    })?;
    let options = OpenOptions {
        ignore_mac,
        remember_ivs: false,
    };
    let opened = document::open(loaded, &keyring, options)
        .map_err(|e| super::decrypt::open_failure(&input, e))?;
    Ok((input, format, opened))
}

/// A scalar as an environment variable's text (sops' `ValToString`).
fn env_text(value: &Value) -> Zeroizing<String> {
    Zeroizing::new(match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float(*f),
        Value::Str(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Time(t) => format_time(t),
    })
}

pub fn run_env(args: ExecEnvArgs, global: &GlobalArgs) -> CliResult {
    let _ = global;
    let (input, _, opened) = open(
        &args.file,
        &FormatArgs::default(),
        args.decryption_order.as_deref(),
        args.ignore_mac,
    )?;
    let mut vars: Vec<(String, Zeroizing<String>)> = Vec::new();
    if let Some(document) = opened.tree.documents.first() {
        for pair in document.pairs() {
            let Node::Scalar(scalar) = &pair.value else {
                return Err(Failure::new(
                    Code::Generic,
                    in_file(
                        &input,
                        format!(
                            "[{:?}]: exec-env takes only top-level values, not nested ones",
                            pair.key
                        ),
                    ),
                ));
            };
            if pair.key.contains('=') || pair.key.is_empty() || pair.key.contains('\0') {
                return Err(Failure::new(
                    Code::Generic,
                    in_file(
                        &input,
                        format!("[{:?}] cannot be an environment variable name", pair.key),
                    ),
                ));
            }
            vars.push((pair.key.clone(), env_text(&scalar.value)));
        }
    }
    drop(opened);
    let mut command = shell(&args.command);
    if args.pristine {
        command.env_clear();
    }
    for (name, value) in &vars {
        command.env(name, value.as_str());
    }
    if let Some(user) = &args.user {
        as_user(&mut command, user)?;
    }
    if args.same_process {
        let err = command.exec();
        return Err(Failure::new(
            Code::Generic,
            format!("Could not run the command: {err}"),
        ));
    }
    let code = run_child(command)?;
    drop(vars);
    finish(code)
}

pub fn run_file(args: ExecFileArgs, global: &GlobalArgs) -> CliResult {
    let name = args
        .filename
        .clone()
        .unwrap_or_else(|| PathBuf::from("tmp-file"));
    if name.is_absolute()
        || name
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        || name.as_os_str().is_empty()
    {
        return Err(Failure::new(
            Code::Generic,
            format!(
                "--filename {:?} must be a plain relative name inside the private directory",
                name.display().to_string()
            ),
        ));
    }
    let (input, in_format, opened) = open(
        &args.file,
        &args.format,
        args.decryption_order.as_deref(),
        args.ignore_mac,
    )?;
    let out_format = super::output_format(&args.format, &input, in_format)?;
    let config = super::load_config(global)?;
    let plaintext = Zeroizing::new(
        out_format
            .emit(&opened.tree, None, super::indent(config.as_ref(), global))
            .map_err(|e| {
                Failure::new(
                    Code::ErrorDumpingTree,
                    in_file(&input, format!("Error dumping file: {e}")),
                )
            })?,
    );
    drop(opened);
    let dir = tempfile::Builder::new()
        .prefix("veil-exec-")
        .tempdir()
        .map_err(|e| {
            Failure::new(
                Code::CouldNotWriteOutputFile,
                format!("Could not create a temporary directory: {e}"),
            )
        })?;
    let path = dir.path().join(&name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            Failure::new(
                Code::CouldNotWriteOutputFile,
                format!("Could not create {}: {e}", parent.display()),
            )
        })?;
    }
    let command_text = args.command.replace("{}", &path.to_string_lossy());
    let mut command = shell(&command_text);
    if let Some(user) = &args.user {
        as_user(&mut command, user)?;
        // The command's user must be able to reach the file.
        chown_to(dir.path(), user)?;
    }
    if args.no_fifo {
        write_private(&path, &plaintext)?;
        if let Some(user) = &args.user {
            chown_to(&path, user)?;
        }
        let code = run_child(command);
        drop(dir);
        return finish(code?);
    }
    make_fifo(&path)?;
    if let Some(user) = &args.user {
        chown_to(&path, user)?;
    }
    // Opening a FIFO for writing blocks until the command opens it for reading, so the writer
    // runs beside the command; if the command never reads, it is dropped when veil exits.
    let writer_path = path.clone();
    let bytes = plaintext.clone();
    std::thread::spawn(move || {
        if let Ok(mut fifo) = std::fs::OpenOptions::new().write(true).open(&writer_path) {
            let _ = fifo.write_all(&bytes);
        }
    });
    let code = run_child(command);
    drop(dir);
    finish(code?)
}

fn shell(text: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(text);
    command
}

/// Runs the command; its exit code (128 + N for a signal, as shells report it).
fn run_child(mut command: Command) -> CliResult<i32> {
    let status = command
        .status()
        .map_err(|e| Failure::new(Code::Generic, format!("Could not run the command: {e}")))?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// Exits with the command's exit code, as sops does.
fn finish(code: i32) -> CliResult {
    if code == 0 {
        return Ok(());
    }
    std::process::exit(code);
}

fn write_private(path: &Path, bytes: &[u8]) -> CliResult {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| {
            Failure::new(
                Code::CouldNotWriteOutputFile,
                format!("Could not write {}: {e}", path.display()),
            )
        })
}

fn make_fifo(path: &Path) -> CliResult {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Failure::new(Code::Generic, "the FIFO path contains a NUL byte"))?;
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    if rc != 0 {
        return Err(Failure::new(
            Code::CouldNotWriteOutputFile,
            format!(
                "Could not create the FIFO {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ),
        ));
    }
    Ok(())
}

/// The uid and gid of a user name (or a numeric uid).
fn lookup_user(name: &str) -> CliResult<(u32, u32)> {
    let c_name = CString::new(name)
        .map_err(|_| Failure::new(Code::Generic, "--user contains a NUL byte"))?;
    // SAFETY: getpwnam reads a NUL-terminated name and returns a pointer into static storage
    // (or NULL); it is read at once, before any other call could overwrite it.
    let entry = unsafe { libc::getpwnam(c_name.as_ptr()) };
    if entry.is_null() {
        if let Ok(uid) = name.parse::<u32>() {
            return Ok((uid, uid));
        }
        return Err(Failure::new(
            Code::Generic,
            format!("--user {name:?}: no such user"),
        ));
    }
    // SAFETY: entry is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok((uid, gid))
}

fn as_user(command: &mut Command, name: &str) -> CliResult {
    let (uid, gid) = lookup_user(name)?;
    command.uid(uid).gid(gid);
    Ok(())
}

fn chown_to(path: &Path, name: &str) -> CliResult {
    let (uid, gid) = lookup_user(name)?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
        Failure::new(
            Code::Generic,
            format!("Could not hand {} to {name}: {e}", path.display()),
        )
    })
}
