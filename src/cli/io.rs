//! Reading input and writing output: stdin, stdout, `--output` and atomic in-place writes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::failure::{CliResult, Code, Failure};

/// Where a command reads from.
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    /// No file, `-` and `/dev/stdin` read standard input.
    pub fn from_arg(file: Option<&Path>) -> Input {
        match file {
            None => Input::Stdin,
            Some(p) if p == Path::new("-") || p == Path::new("/dev/stdin") => Input::Stdin,
            Some(p) => Input::File(p.to_path_buf()),
        }
    }

    pub fn is_stdin(&self) -> bool {
        matches!(self, Input::Stdin)
    }

    /// The name used in messages.
    pub fn display(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".into(),
            Input::File(p) => p.display().to_string(),
        }
    }

    /// Fails with sops' exit code 100 when the file does not exist.
    pub fn require_existing(&self) -> CliResult {
        if let Input::File(path) = self {
            if !path.exists() {
                return Err(Failure::new(
                    Code::NoFileSpecified,
                    format!(
                        "Error: cannot operate on non-existent file {:?}",
                        path.display().to_string()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn read(&self) -> CliResult<Vec<u8>> {
        match self {
            Input::Stdin => {
                let mut bytes = Vec::new();
                std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
                    Failure::new(
                        Code::CouldNotReadInputFile,
                        format!("Error reading from stdin: {e}"),
                    )
                })?;
                Ok(bytes)
            }
            Input::File(path) => std::fs::read(path).map_err(|e| {
                Failure::new(
                    Code::CouldNotReadInputFile,
                    format!("Error reading file {}: {e}", path.display()),
                )
            }),
        }
    }
}

/// Where a command writes its result.
pub enum Output {
    Stdout,
    /// `--output FILE`
    File(PathBuf),
    /// `-i`: replace the input file.
    InPlace(PathBuf),
}

impl Output {
    /// Checks sops' rules: `-i` needs a file and excludes `--output`.
    pub fn choose(input: &Input, in_place: bool, output: Option<&Path>) -> CliResult<Output> {
        match (in_place, output, input) {
            (true, Some(_), _) => Err(Failure::new(
                Code::ConflictingParameters,
                "Error: cannot operate on both --output and --in-place",
            )),
            (true, None, Input::Stdin) => Err(Failure::new(
                Code::ConflictingParameters,
                "Error: cannot use --in-place when reading from stdin",
            )),
            (true, None, Input::File(path)) => Ok(Output::InPlace(path.clone())),
            (false, Some(path), _) => Ok(Output::File(path.to_path_buf())),
            (false, None, _) => Ok(Output::Stdout),
        }
    }

    pub fn write(&self, bytes: &[u8]) -> CliResult {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                match out.write_all(bytes).and_then(|_| out.flush()) {
                    Ok(()) => Ok(()),
                    // A closed pipe (`veil decrypt f | head`) is not an error.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                    Err(e) => Err(Failure::new(
                        Code::CouldNotWriteOutputFile,
                        format!("Error writing to stdout: {e}"),
                    )),
                }
            }
            Output::File(path) | Output::InPlace(path) => {
                write_atomically(path, bytes).map_err(|e| {
                    Failure::new(
                        Code::CouldNotWriteOutputFile,
                        format!("Could not write {}: {e}", path.display()),
                    )
                })
            }
        }
    }
}

/// Writes through a temporary file in the same directory, fsynced and renamed over the target,
/// so the target is either the old or the new content, never half of one. An existing file keeps
/// its permissions; a new one gets what a plain create would give (0666 minus the umask), as sops.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing_mode = std::fs::metadata(path).ok().map(|m| m.permissions());
    let mut temp = tempfile::Builder::new()
        .prefix(".veil-")
        .tempfile_in(&dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    match existing_mode {
        Some(permissions) => temp.as_file().set_permissions(permissions)?,
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // tempfile creates 0600; widen to what a plain create would give (0666 & ~umask).
                let umask = current_umask();
                temp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o666 & !umask))?;
            }
        }
    }
    temp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The process umask, read without changing it (Linux exposes it in /proc).
#[cfg(unix)]
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022)
}
