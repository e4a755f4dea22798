//! Reading input and writing output: stdin, stdout, `--output` and atomic in-place writes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use veil::store::{EmitError, StoreError};

use super::failure::{CliResult, Code, Failure};
use super::mapped::{Mapped, MAP_FROM};

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
            Input::File(path) => std::fs::read(path).map_err(|e| read_failure(path, e)),
        }
    }

    /// [`Input::read`], but a large regular file is mapped rather than read (for the commands
    /// that go through it in one streaming pass).
    pub fn read_text(&self) -> CliResult<Text> {
        if let Input::File(path) = self {
            let file = std::fs::File::open(path).map_err(|e| read_failure(path, e))?;
            let metadata = file.metadata().map_err(|e| read_failure(path, e))?;
            if metadata.is_file() && metadata.len() >= MAP_FROM {
                if let Some(mapped) = Mapped::new(&file, metadata.len()) {
                    return Ok(Text::Mapped(mapped));
                }
            }
        }
        self.read().map(Text::Read)
    }
}

/// An input's bytes: a large regular file mapped (see [`Mapped`]), anything else read.
pub enum Text {
    Read(Vec<u8>),
    Mapped(Mapped),
}

impl Text {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Text::Read(bytes) => bytes,
            Text::Mapped(mapped) => mapped.bytes(),
        }
    }

    /// Tells a mapping that the reader is done with the bytes before `offset` (see
    /// [`Mapped::release_before`]); read bytes stay as they are.
    pub fn release_before(&self, offset: usize) {
        if let Text::Mapped(mapped) = self {
            mapped.release_before(offset);
        }
    }

    /// The bytes as an owned buffer (a copy of a mapping), for the loaders that keep their input.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Text::Read(bytes) => bytes,
            Text::Mapped(mapped) => mapped.bytes().to_vec(),
        }
    }
}

fn read_failure(path: &Path, err: std::io::Error) -> Failure {
    Failure::new(
        Code::CouldNotReadInputFile,
        format!("Error reading file {}: {err}", path.display()),
    )
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
        self.write_with(
            |sink| sink.write_all(bytes).map_err(EmitError::Write),
            // Writing bytes raises no store error; should one ever come, it is a dump failure.
            |err| Failure::new(Code::ErrorDumpingTree, err.to_string()),
        )
    }

    /// Writes what `produce` writes as it writes it: to standard output directly, to a file
    /// through a temporary file that replaces the target only when all went well. A store
    /// error is turned into a failure by `on_error`.
    ///
    /// On standard output a late failure leaves the part already written; only `encrypt`
    /// streams, so that part is ciphertext.
    pub fn write_with(
        &self,
        produce: impl FnOnce(&mut dyn Write) -> Result<(), EmitError>,
        on_error: impl FnOnce(StoreError) -> Failure,
    ) -> CliResult {
        let failed = match self {
            Output::Stdout => {
                let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
                match produce(&mut out) {
                    Ok(()) => out.flush().map_err(EmitError::Write),
                    Err(err) => Err(err),
                }
            }
            Output::File(path) | Output::InPlace(path) => write_atomically(path, produce),
        };
        match failed {
            Ok(()) => Ok(()),
            Err(EmitError::Store(err)) => Err(on_error(err)),
            // A closed pipe (`veil decrypt f | head`) is not an error.
            Err(EmitError::Write(e))
                if matches!(self, Output::Stdout) && e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                Ok(())
            }
            Err(EmitError::Write(e)) => Err(Failure::new(
                Code::CouldNotWriteOutputFile,
                match self {
                    Output::Stdout => format!("Error writing to stdout: {e}"),
                    Output::File(path) | Output::InPlace(path) => {
                        format!("Could not write {}: {e}", path.display())
                    }
                },
            )),
        }
    }
}

/// Writes through a temporary file in the same directory, fsynced and renamed over the target,
/// so the target is either the old or the new content, never half of one. An existing file keeps
/// its permissions; a new one gets what a plain create would give (0666 minus the umask), as sops.
/// `produce` writes the content; on any failure the temporary file is removed.
fn write_atomically(
    path: &Path,
    produce: impl FnOnce(&mut dyn Write) -> Result<(), EmitError>,
) -> Result<(), EmitError> {
    let io = EmitError::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing_mode = std::fs::metadata(path).ok().map(|m| m.permissions());
    let mut temp = tempfile::Builder::new()
        .prefix(".veil-")
        .tempfile_in(&dir)
        .map_err(io)?;
    {
        let mut buffered = std::io::BufWriter::with_capacity(1 << 16, temp.as_file_mut());
        produce(&mut buffered)?;
        buffered.flush().map_err(io)?;
    }
    temp.as_file().sync_all().map_err(io)?;
    match existing_mode {
        Some(permissions) => temp.as_file().set_permissions(permissions).map_err(io)?,
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // tempfile creates 0600; widen to what a plain create would give (0666 & ~umask).
                let umask = current_umask();
                temp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o666 & !umask))
                    .map_err(io)?;
            }
        }
    }
    temp.persist(path).map_err(|e| io(e.error))?;
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
