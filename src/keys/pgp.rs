//! PGP through the `gpg` binary, as sops does (spec §7.3).
//!
//! sops first tries an in-process OpenPGP library on the legacy `pubring.gpg`/`secring.gpg`, which
//! modern GnuPG (2.1+) no longer writes; veil always runs gpg, which is what sops falls back to.
//! The binary is `$SOPS_GPG_EXEC` or `gpg` on PATH; gpg finds its home itself (`$GNUPGHOME`, else
//! `~/.gnupg`), so the process environment is passed through. The key part travels on stdin and
//! stdout only, never on the command line.

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::{Identity, KeyEntry, KeyError, KeyPart, Recipient};

const KIND: &str = "pgp";

/// How much of gpg's stderr goes into an error message.
const STDERR_SUMMARY_LINES: usize = 4;

/// Which gpg to run and with which home; read from the environment once.
#[derive(Clone, Debug)]
struct Gpg {
    program: OsString,
    /// Whether the program came from `SOPS_GPG_EXEC`, for the "not found" message.
    from_env: bool,
    /// Set explicitly on the child only when given; otherwise gpg inherits our environment.
    home: Option<OsString>,
}

impl Gpg {
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Gpg {
        let var = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let exec = var("SOPS_GPG_EXEC");
        Gpg {
            from_env: exec.is_some(),
            program: OsString::from(exec.unwrap_or_else(|| "gpg".into())),
            home: var("GNUPGHOME").map(OsString::from),
        }
    }

    /// Runs gpg with `args`, feeding `input` on stdin; returns stdout (zeroized on drop, as it
    /// may be a key part) or a reason naming what went wrong.
    fn run(&self, args: &[&str], input: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(home) = &self.home {
            command.env("GNUPGHOME", home);
        }
        let mut child = command.spawn().map_err(|why| self.spawn_error(&why))?;
        // Inputs are a key part or one armored message (a few KiB), well under a pipe buffer,
        // so writing everything before reading cannot deadlock.
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(input))
            .unwrap_or(Ok(()));
        let output = child
            .wait_with_output()
            .map_err(|why| format!("gpg did not finish: {why}"))?;
        let stdout = Zeroizing::new(output.stdout);
        if !output.status.success() {
            return Err(format!(
                "gpg failed ({}): {}",
                output.status,
                summarise(&output.stderr)
            ));
        }
        written.map_err(|why| format!("could not write to gpg: {why}"))?;
        Ok(stdout)
    }

    fn spawn_error(&self, why: &io::Error) -> String {
        let name = self.program.to_string_lossy();
        match (why.kind(), self.from_env) {
            (io::ErrorKind::NotFound, false) => {
                "gpg not found; install GnuPG or set SOPS_GPG_EXEC".into()
            }
            (io::ErrorKind::NotFound, true) => {
                format!("SOPS_GPG_EXEC names {name}, which was not found")
            }
            _ => format!("cannot run {name}: {why}"),
        }
    }
}

/// The last few meaningful lines of gpg's stderr (which holds diagnostics, not secrets).
fn summarise(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if lines.is_empty() {
        return "no message from gpg".into();
    }
    lines[lines.len().saturating_sub(STDERR_SUMMARY_LINES)..].join("; ")
}

/// A PGP key to wrap for, named by its fingerprint.
pub struct PgpRecipient {
    fingerprint: String,
    gpg: Gpg,
}

impl PgpRecipient {
    /// A recipient using this process' `SOPS_GPG_EXEC` and `GNUPGHOME`.
    pub fn new(fingerprint: &str) -> PgpRecipient {
        PgpRecipient::with_env(fingerprint, |name| std::env::var(name).ok())
    }

    /// A recipient whose gpg settings (`SOPS_GPG_EXEC`, `GNUPGHOME`) come from `env`.
    pub fn with_env(fingerprint: &str, env: impl Fn(&str) -> Option<String>) -> PgpRecipient {
        PgpRecipient {
            fingerprint: fingerprint.trim().replace(' ', ""),
            gpg: Gpg::from_env(&env),
        }
    }

    /// The key id gpg is told to trust: the last 16 hex digits, keeping a trailing `!` (which
    /// asks gpg for exactly that subkey).
    fn trusted_key_id(&self) -> String {
        let (core, bang) = match self.fingerprint.strip_suffix('!') {
            Some(core) => (core, "!"),
            None => (self.fingerprint.as_str(), ""),
        };
        let tail = core.get(core.len().saturating_sub(16)..).unwrap_or(core);
        format!("{tail}{bang}")
    }
}

impl Recipient for PgpRecipient {
    fn wrap(&self, part: &KeyPart) -> Result<KeyEntry, KeyError> {
        let error = |reason: String| KeyError {
            kind: KIND,
            name: self.fingerprint.clone(),
            reason,
        };
        let trusted = self.trusted_key_id();
        // sops' flags; `--trusted-key` lets gpg encrypt to a key nobody certified, and `--batch`
        // makes any other question (expired key, …) a failure instead of a hang. Encryption needs
        // no passphrase, so batch mode costs nothing here.
        let args = [
            "--batch",
            "--quiet",
            "--no-default-recipient",
            "--yes",
            "--encrypt",
            "-a",
            "-r",
            &self.fingerprint,
            "--trusted-key",
            &trusted,
            "--no-encrypt-to",
        ];
        let stdout = self.gpg.run(&args, part.as_bytes()).map_err(&error)?;
        let enc = std::str::from_utf8(&stdout)
            .map_err(|_| error("gpg wrote a non-armored message".into()))?
            .trim();
        if !enc.starts_with("-----BEGIN PGP MESSAGE-----") {
            return Err(error("gpg wrote no armored message".into()));
        }
        Ok(KeyEntry::Pgp {
            fp: self.fingerprint.clone(),
            created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            enc: enc.to_string(),
        })
    }

    fn name(&self) -> String {
        self.fingerprint.clone()
    }
}

/// The secret keys gpg (and its agent) holds.
pub struct GpgIdentity {
    gpg: Gpg,
}

impl GpgIdentity {
    /// gpg as configured by this process' environment.
    pub fn from_process_env() -> GpgIdentity {
        GpgIdentity::from_env(|name| std::env::var(name).ok())
    }

    /// gpg as configured by `env` (`SOPS_GPG_EXEC`, `GNUPGHOME`).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> GpgIdentity {
        GpgIdentity {
            gpg: Gpg::from_env(&env),
        }
    }
}

impl Identity for GpgIdentity {
    fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        let KeyEntry::Pgp { fp, enc, .. } = entry else {
            return None;
        };
        let error = |reason: String| KeyError {
            kind: KIND,
            name: fp.clone(),
            reason,
        };
        // `--batch` stops gpg itself from asking questions on the terminal; passphrases are
        // asked by gpg-agent through pinentry, which batch mode does not disable (only
        // `--pinentry-mode loopback` would route them through gpg, and we do not use it).
        let armored = normalise_armor(enc);
        let result = self
            .gpg
            .run(&["--batch", "--quiet", "--decrypt"], armored.as_bytes())
            .map_err(|why| error(format!("could not decrypt: {why}")))
            .and_then(|part| {
                if part.is_empty() {
                    Err(error("gpg decrypted to nothing".into()))
                } else {
                    Ok(KeyPart(part))
                }
            });
        Some(result)
    }
}

/// Armored messages from YAML may carry CRLF or lack the final newline; gpg wants neither.
fn normalise_armor(enc: &str) -> String {
    let mut text: String = enc
        .trim()
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests;
