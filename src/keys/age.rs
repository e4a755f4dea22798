//! age recipients and identities (X25519, SSH, plugins), stored as armored age files.
//!
//! Wrapping encrypts the key part to exactly one recipient and ASCII-armors the result, as sops
//! does (`-----BEGIN AGE ENCRYPTED FILE-----`, 64-column base64, trailing newline).
//!
//! Unwrapping uses every identity this process can find, from the sources sops reads (spec §7.2):
//! `SOPS_AGE_SSH_PRIVATE_KEY_FILE`, `~/.ssh/id_ed25519`, `~/.ssh/id_rsa`, `SOPS_AGE_KEY`
//! (whitespace-separated), `SOPS_AGE_KEY_FILE`, the default `<config dir>/sops/age/keys.txt`,
//! and the commands `SOPS_AGE_SSH_PRIVATE_KEY_CMD` and `SOPS_AGE_KEY_CMD`. Nothing is read or
//! run until the first age entry is to be opened, so files without age keys never touch these
//! sources. Files and variables are read once; the commands run for every entry, because they are
//! told which recipient is wanted (`SOPS_AGE_RECIPIENT`). All identities are offered together;
//! those that need a passphrase (protected identity files, encrypted SSH keys) go last, so the
//! terminal is only asked when no plain identity opens the entry.
//!
//! A source that is missing is only listed as "looked here"; a source that is broken (unreadable
//! file, failing command, malformed line) is reported when no identity opens the entry. Reports
//! name the source (variable, path, line number) and never the key text.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::iter;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::plugin::{IdentityPluginV1, RecipientPluginV1};
use age::secrecy::SecretString;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Identity, KeyEntry, KeyError, KeyPart, Recipient};

const KIND: &str = "age";

/// The scrypt work factor age (Go) accepts by default for passphrase-protected identity files;
/// higher factors are refused rather than letting a hostile file burn minutes of CPU.
const MAX_SCRYPT_WORK_FACTOR: u8 = 22;

/// One age recipient, as the user wrote it.
pub struct AgeRecipient {
    /// The trimmed text, stored in the metadata `recipient` field.
    text: String,
    key: RecipientKey,
}

enum RecipientKey {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
    Plugin(age::plugin::Recipient),
}

impl AgeRecipient {
    /// Parses `age1…` (X25519), `age1<plugin>1…` (plugin), `ssh-ed25519 …` / `ssh-rsa …`.
    pub fn parse(text: &str) -> Result<AgeRecipient, KeyError> {
        let text = text.trim();
        let rejected = |reason: String| KeyError {
            kind: KIND,
            name: text.to_string(),
            reason,
        };
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("AGE-SECRET-KEY-") || upper.starts_with("AGE-PLUGIN-") {
            // Someone pasted an identity where a recipient belongs: never echo it back.
            return Err(KeyError {
                kind: KIND,
                name: "(an age identity)".into(),
                reason: "this is a private key, not a recipient; give its public key (age1…)"
                    .into(),
            });
        }
        let key = if text.starts_with("age1pq1") {
            return Err(rejected(
                "post-quantum age recipients (age1pq1…) are not supported by veil yet".into(),
            ));
        } else if text.starts_with("age1") && text.matches('1').count() > 1 {
            // The bech32 data part never contains '1', so a second one separates a plugin name.
            RecipientKey::Plugin(
                text.parse()
                    .map_err(|why| rejected(format!("not a valid age plugin recipient: {why}")))?,
            )
        } else if text.starts_with("age1") {
            RecipientKey::X25519(
                text.parse()
                    .map_err(|why| rejected(format!("not a valid age recipient: {why}")))?,
            )
        } else if text.starts_with("ssh-") {
            RecipientKey::Ssh(
                text.parse().map_err(|why| {
                    rejected(format!("not a usable SSH public key for age: {why:?}"))
                })?,
            )
        } else {
            return Err(rejected(
                "unknown recipient type: expected age1…, ssh-ed25519 … or ssh-rsa …".into(),
            ));
        };
        Ok(AgeRecipient {
            text: text.to_string(),
            key,
        })
    }

    fn error(&self, reason: String) -> KeyError {
        KeyError {
            kind: KIND,
            name: self.text.clone(),
            reason,
        }
    }
}

impl Recipient for AgeRecipient {
    fn wrap(&self, part: &KeyPart) -> Result<KeyEntry, KeyError> {
        let plugin;
        let recipient: &dyn age::Recipient = match &self.key {
            RecipientKey::X25519(key) => key,
            RecipientKey::Ssh(key) => key,
            RecipientKey::Plugin(key) => {
                plugin = RecipientPluginV1::new(
                    key.plugin(),
                    std::slice::from_ref(key),
                    &[],
                    TerminalCallbacks,
                )
                .map_err(|why| self.error(why.to_string()))?;
                &plugin
            }
        };
        let enc = encrypt_armored(recipient, part.as_bytes())
            .map_err(|why| self.error(format!("age encryption failed: {why}")))?;
        Ok(KeyEntry::Age {
            recipient: self.text.clone(),
            enc,
        })
    }

    fn name(&self) -> String {
        self.text.clone()
    }
}

fn encrypt_armored(recipient: &dyn age::Recipient, plaintext: &[u8]) -> Result<String, String> {
    let encryptor =
        age::Encryptor::with_recipients(iter::once(recipient)).map_err(|e| e.to_string())?;
    let armor = ArmoredWriter::wrap_output(Vec::new(), Format::AsciiArmor).map_err(io_text)?;
    let mut writer = encryptor.wrap_output(armor).map_err(io_text)?;
    writer.write_all(plaintext).map_err(io_text)?;
    let armored = writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(io_text)?;
    String::from_utf8(armored).map_err(|_| "armor produced non-UTF-8 output".into())
}

fn io_text(err: io::Error) -> String {
    err.to_string()
}

/// Where identities come from, read from the environment once at construction. Only the
/// variables are captured here; the files and commands they name are used lazily.
struct Sources {
    ssh_key_file: Option<PathBuf>,
    ssh_key_cmd: Option<String>,
    home: Option<PathBuf>,
    age_key: Option<Zeroizing<String>>,
    age_key_file: Option<PathBuf>,
    age_key_cmd: Option<String>,
    config_dir: Option<PathBuf>,
}

/// All the age identities available to this process. Gathered on first use.
pub struct AgeIdentities {
    sources: Sources,
    /// Identities from files and variables, which do not depend on the entry being opened;
    /// gathered on first use. (A lock, not a once-cell: passphrase identities are not `Sync`.)
    fixed: Mutex<Option<Found>>,
}

impl AgeIdentities {
    /// The identities named by this process' environment and home directory.
    pub fn from_process_env() -> AgeIdentities {
        let home = std::env::var_os(if cfg!(windows) { "USERPROFILE" } else { "HOME" })
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        AgeIdentities::from_env(|name| std::env::var(name).ok(), home, None)
    }

    /// The identities named by `env`, with `home` for `~/.ssh` and `config_dir` overriding the
    /// user config directory (otherwise `$XDG_CONFIG_HOME`, else the platform default under
    /// `home`). Empty variables count as unset.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        home: Option<PathBuf>,
        config_dir: Option<PathBuf>,
    ) -> AgeIdentities {
        let var = |name: &str| env(name).filter(|value| !value.is_empty());
        let config_dir = config_dir
            .or_else(|| var("XDG_CONFIG_HOME").map(PathBuf::from))
            .or_else(|| {
                if cfg!(windows) {
                    var("APPDATA").map(PathBuf::from)
                } else if cfg!(target_os = "macos") {
                    home.as_ref()
                        .map(|h| h.join("Library").join("Application Support"))
                } else {
                    home.as_ref().map(|h| h.join(".config"))
                }
            });
        AgeIdentities {
            sources: Sources {
                ssh_key_file: var("SOPS_AGE_SSH_PRIVATE_KEY_FILE").map(PathBuf::from),
                ssh_key_cmd: var("SOPS_AGE_SSH_PRIVATE_KEY_CMD"),
                home,
                age_key: var("SOPS_AGE_KEY").map(Zeroizing::new),
                age_key_file: var("SOPS_AGE_KEY_FILE").map(PathBuf::from),
                age_key_cmd: var("SOPS_AGE_KEY_CMD"),
                config_dir,
            },
            fixed: Mutex::new(None),
        }
    }

    /// Reads the files and variables (everything but the commands), in sops' order.
    fn gather_fixed(&self) -> Found {
        let sources = &self.sources;
        let mut found = Found::default();
        match &sources.ssh_key_file {
            Some(path) => {
                let origin = format!("SOPS_AGE_SSH_PRIVATE_KEY_FILE ({})", path.display());
                match read_secret_file(path) {
                    Ok(bytes) => found.add_ssh_key(&origin, &bytes),
                    Err(why) => found.problem(&origin, &format!("cannot read: {why}")),
                }
            }
            None => found.looked("SOPS_AGE_SSH_PRIVATE_KEY_FILE (unset)"),
        }
        match &sources.home {
            Some(home) => {
                for name in ["id_ed25519", "id_rsa"] {
                    let path = home.join(".ssh").join(name);
                    found.add_optional_file(&path, |found, origin, bytes| {
                        found.add_ssh_key(origin, bytes)
                    });
                }
            }
            None => found.looked("~/.ssh (no home directory)"),
        }
        match &sources.age_key {
            Some(text) => found.add_identity_text("SOPS_AGE_KEY", text.as_bytes(), true),
            None => found.looked("SOPS_AGE_KEY (unset)"),
        }
        match &sources.age_key_file {
            Some(path) => {
                let origin = format!("SOPS_AGE_KEY_FILE ({})", path.display());
                match read_secret_file(path) {
                    Ok(bytes) => found.add_identity_text(&origin, &bytes, false),
                    Err(why) => found.problem(&origin, &format!("cannot read: {why}")),
                }
            }
            None => found.looked("SOPS_AGE_KEY_FILE (unset)"),
        }
        match &sources.config_dir {
            Some(dir) => {
                let path = dir.join("sops").join("age").join("keys.txt");
                found.add_optional_file(&path, |found, origin, bytes| {
                    found.add_identity_text(origin, bytes, false)
                });
            }
            None => found.looked("the default keys.txt (no home or config directory)"),
        }
        found
    }

    /// Runs the commands, which may answer differently for each recipient.
    fn gather_from_commands(&self, recipient: &str) -> Found {
        let sources = &self.sources;
        let mut found = Found::default();
        let commands = [
            ("SOPS_AGE_SSH_PRIVATE_KEY_CMD", &sources.ssh_key_cmd, true),
            ("SOPS_AGE_KEY_CMD", &sources.age_key_cmd, false),
        ];
        for (origin, command, is_ssh) in commands {
            let Some(command) = command else {
                found.looked(&format!("{origin} (unset)"));
                continue;
            };
            match run_identity_command(command, recipient) {
                Ok(output) if is_ssh => found.add_ssh_key(origin, &output),
                Ok(output) => found.add_identity_text(origin, &output, false),
                Err(why) => found.problem(origin, &why),
            }
        }
        found
    }

    fn open(&self, recipient: &str, enc: &str) -> Result<KeyPart, String> {
        let ciphertext = dearmor(enc)?;
        let stanzas = header_stanzas(&ciphertext);
        let mut fixed = self.fixed.lock().unwrap_or_else(PoisonError::into_inner);
        let fixed = fixed.get_or_insert_with(|| self.gather_fixed());
        let dynamic = self.gather_from_commands(recipient);

        // Source order (commands last), except that identities needing a passphrase go after
        // all the others, so a file that a plain identity opens never prompts. Encrypted SSH keys
        // are offered only to files carrying a stanza for exactly that key.
        let all: Vec<&Candidate> = fixed.candidates.iter().chain(&dynamic.candidates).collect();
        let usable = |c: &Candidate| {
            c.ssh_stanza
                .as_ref()
                .is_none_or(|wanted| stanzas.iter().any(|s| s.starts_with(wanted.as_str())))
        };
        let ordered: Vec<&dyn age::Identity> = all
            .iter()
            .filter(|c| !c.locked)
            .chain(all.iter().filter(|c| c.locked))
            .filter(|c| usable(c))
            .map(|c| c.identity.as_ref() as &dyn age::Identity)
            .collect();

        let problems: Vec<&String> = fixed.problems.iter().chain(&dynamic.problems).collect();
        let looked: Vec<&String> = fixed.looked.iter().chain(&dynamic.looked).collect();
        let origins: Vec<&String> = fixed.origins.iter().chain(&dynamic.origins).collect();
        // Broken sources come first: they are the likeliest reason nothing opened the entry.
        let problems = (!problems.is_empty()).then(|| join(&problems, "; "));
        if all.is_empty() {
            let nothing = format!(
                "no age identities found (looked in: {})",
                join(&looked, ", ")
            );
            return Err(match problems {
                Some(problems) => format!("{problems}; and {nothing}"),
                None => nothing,
            });
        }
        let with_problems = |reason: String| match &problems {
            Some(problems) => format!("{problems}; and {reason}"),
            None => reason,
        };

        let decryptor = age::Decryptor::new_buffered(&ciphertext[..])
            .map_err(|why| format!("enc is not a valid age file: {why}"))?;
        match decryptor.decrypt(ordered.into_iter()) {
            Ok(mut reader) => {
                let mut part = Zeroizing::new(Vec::new());
                reader
                    .read_to_end(&mut part)
                    .map_err(|why| format!("enc is corrupt: {why}"))?;
                Ok(KeyPart(part))
            }
            Err(age::DecryptError::NoMatchingKeys) => Err(with_problems(format!(
                "no age identity matches this recipient (tried {} from: {})",
                plural(all.len(), "identity", "identities"),
                join(&origins, ", ")
            ))),
            Err(why) => Err(with_problems(format!("age decryption failed: {why}"))),
        }
    }
}

impl Identity for AgeIdentities {
    fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        let KeyEntry::Age { recipient, enc } = entry else {
            return None;
        };
        Some(self.open(recipient, enc).map_err(|reason| KeyError {
            kind: KIND,
            name: recipient.clone(),
            reason,
        }))
    }
}

fn join(items: &[&String], separator: &str) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(separator)
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// One identity and what it takes to use it.
struct Candidate {
    identity: Box<dyn age::Identity + Send>,
    /// Needs a passphrase typed at the terminal.
    locked: bool,
    /// For encrypted SSH keys: the stanza prefix (`ssh-ed25519 <tag>`) it can open.
    ssh_stanza: Option<String>,
}

/// What a set of sources produced.
#[derive(Default)]
struct Found {
    candidates: Vec<Candidate>,
    /// Sources that held identities, for "tried N from …".
    origins: Vec<String>,
    /// Sources that were absent, for "no identities found (looked in …)".
    looked: Vec<String>,
    /// Sources that were present but broken.
    problems: Vec<String>,
}

impl Found {
    fn looked(&mut self, what: &str) {
        self.looked.push(what.to_string());
    }

    fn problem(&mut self, origin: &str, why: &str) {
        self.problems.push(format!("{origin}: {why}"));
    }

    fn add(&mut self, origin: &str, candidate: Candidate) {
        self.candidates.push(candidate);
        if !self.origins.iter().any(|o| o == origin) {
            self.origins.push(origin.to_string());
        }
    }

    /// A default location: absent is fine, present but unreadable is a problem.
    fn add_optional_file(&mut self, path: &Path, add: impl FnOnce(&mut Found, &str, &[u8])) {
        let origin = path.display().to_string();
        match read_secret_file(path) {
            Ok(bytes) => add(self, &origin, &bytes),
            Err(why) if why.kind() == io::ErrorKind::NotFound => self.looked(&origin),
            Err(why) => self.problem(&origin, &format!("cannot read: {why}")),
        }
    }

    /// An identity file's text (or `SOPS_AGE_KEY` when `any_whitespace`, where identities may be
    /// separated by spaces as well as newlines).
    fn add_identity_text(&mut self, origin: &str, bytes: &[u8], any_whitespace: bool) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return self.problem(origin, "not UTF-8 text");
        };
        let start = text.trim_start();
        if start.starts_with("age-encryption.org") || start.starts_with("-----BEGIN AGE") {
            return self.add_passphrase_file(origin, bytes);
        }
        let before = (self.candidates.len(), self.problems.len());
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let items: Vec<&str> = if any_whitespace {
                line.split_whitespace().collect()
            } else {
                vec![line]
            };
            for item in items {
                match parse_identity(item) {
                    Ok(identity) => self.add(
                        origin,
                        Candidate {
                            identity,
                            locked: false,
                            ssh_stanza: None,
                        },
                    ),
                    Err(why) => self.problem(origin, &format!("line {}: {why}", index + 1)),
                }
            }
        }
        if (self.candidates.len(), self.problems.len()) == before {
            self.looked(&format!("{origin} (no identities in it)"));
        }
    }

    fn add_passphrase_file(&mut self, origin: &str, bytes: &[u8]) {
        if !terminal_available() {
            return self.problem(
                origin,
                "passphrase-protected identity file needs a terminal to ask for its passphrase",
            );
        }
        let reader = ArmoredReader::new(Cursor::new(bytes.to_vec()));
        match age::encrypted::Identity::from_buffer(
            reader,
            Some(origin.to_string()),
            TerminalCallbacks,
            Some(MAX_SCRYPT_WORK_FACTOR),
        ) {
            Ok(Some(identity)) => self.add(
                origin,
                Candidate {
                    identity: Box::new(identity),
                    locked: true,
                    ssh_stanza: None,
                },
            ),
            Ok(None) => self.problem(
                origin,
                "is an age file encrypted to recipients, not a passphrase-protected identity file",
            ),
            Err(why) => self.problem(
                origin,
                &format!("unreadable encrypted identity file: {why}"),
            ),
        }
    }

    fn add_ssh_key(&mut self, origin: &str, bytes: &[u8]) {
        let identity = match age::ssh::Identity::from_buffer(bytes, Some(origin.to_string())) {
            Ok(identity) => identity,
            Err(_) => return self.problem(origin, "not an OpenSSH private key"),
        };
        match identity {
            age::ssh::Identity::Unencrypted(_) => self.add(
                origin,
                Candidate {
                    identity: Box::new(identity),
                    locked: false,
                    ssh_stanza: None,
                },
            ),
            age::ssh::Identity::Encrypted(_) => {
                if !terminal_available() {
                    return self.problem(
                        origin,
                        "passphrase-protected SSH key needs a terminal to ask for its passphrase",
                    );
                }
                let Some(stanza) = ssh_stanza_prefix(&identity) else {
                    return self.problem(origin, "SSH key type not supported by age");
                };
                self.add(
                    origin,
                    Candidate {
                        identity: Box::new(identity.with_callbacks(TerminalCallbacks)),
                        locked: true,
                        ssh_stanza: Some(stanza),
                    },
                )
            }
            age::ssh::Identity::Unsupported(kind) => {
                self.problem(origin, &format!("SSH key not supported by age ({kind:?})"))
            }
        }
    }
}

/// Parses one identity line; the error never contains the line.
fn parse_identity(text: &str) -> Result<Box<dyn age::Identity + Send>, String> {
    if text.starts_with("AGE-PLUGIN-") {
        let identity: age::plugin::Identity = text
            .parse()
            .map_err(|why| format!("not a valid age plugin identity ({why})"))?;
        let plugin = IdentityPluginV1::new(
            identity.plugin(),
            std::slice::from_ref(&identity),
            TerminalCallbacks,
        )
        .map_err(|_| format!("needs age-plugin-{} on PATH", identity.plugin()))?;
        Ok(Box::new(plugin))
    } else if text.starts_with("AGE-SECRET-KEY-PQ-") {
        Err("post-quantum age identities are not supported by veil yet".into())
    } else if text.starts_with("AGE-SECRET-KEY-1") {
        let identity: age::x25519::Identity = text
            .parse()
            .map_err(|why| format!("not a valid age secret key ({why})"))?;
        Ok(Box::new(identity))
    } else {
        Err("not an age identity (expected AGE-SECRET-KEY-1… or AGE-PLUGIN-…)".into())
    }
}

/// `ssh-ed25519 <tag>`: how an age header names the stanza for this SSH key (the tag is the
/// first 4 bytes of SHA-256 of the public key's wire form, unpadded base64).
fn ssh_stanza_prefix(identity: &age::ssh::Identity) -> Option<String> {
    let public = age::ssh::Recipient::try_from(identity.clone())
        .ok()?
        .to_string();
    let (kind, key) = public.split_once(' ')?;
    let wire = STANDARD.decode(key.trim()).ok()?;
    let tag = STANDARD_NO_PAD.encode(&Sha256::digest(&wire)[..4]);
    Some(format!("{kind} {tag}"))
}

/// Normalises the armor sops and other tools wrote (CRLF, missing final newline, indentation
/// left over from YAML) into the canonical form the age crate insists on, then decodes it.
fn dearmor(enc: &str) -> Result<Vec<u8>, String> {
    let mut canonical = String::with_capacity(enc.len() + 1);
    for line in enc.lines().map(str::trim).filter(|l| !l.is_empty()) {
        canonical.push_str(line);
        canonical.push('\n');
    }
    if !canonical.starts_with("-----BEGIN AGE ENCRYPTED FILE-----") {
        return Err("enc is not an armored age file".into());
    }
    let mut binary = Vec::new();
    ArmoredReader::new(canonical.as_bytes())
        .read_to_end(&mut binary)
        .map_err(|why| format!("enc is not a valid armored age file: {why}"))?;
    Ok(binary)
}

/// The recipient lines (`-> type args…`) of an age header, as `type args…`.
fn header_stanzas(ciphertext: &[u8]) -> Vec<String> {
    ciphertext
        .split(|&b| b == b'\n')
        .take_while(|line| !line.starts_with(b"---"))
        .filter_map(|line| line.strip_prefix(b"-> "))
        .filter_map(|line| std::str::from_utf8(line).ok())
        .map(str::to_string)
        .collect()
}

fn read_secret_file(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    std::fs::read(path).map(Zeroizing::new)
}

/// Runs `SOPS_AGE_KEY_CMD` / `SOPS_AGE_SSH_PRIVATE_KEY_CMD`: shell-split, no shell, told the
/// recipient wanted, stdout captured (stderr left to the user's terminal).
fn run_identity_command(command: &str, recipient: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let words = shlex::split(command)
        .ok_or_else(|| "cannot split the command line (unbalanced quotes?)".to_string())?;
    let (program, args) = words
        .split_first()
        .ok_or_else(|| "the command is empty".to_string())?;
    let output = Command::new(program)
        .args(args)
        .env("SOPS_AGE_RECIPIENT", recipient)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|why| format!("cannot run {program}: {why}"))?;
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        return Err(format!("{program} failed ({})", output.status));
    }
    Ok(stdout)
}

fn open_terminal() -> io::Result<std::fs::File> {
    OpenOptions::new().read(true).write(true).open("/dev/tty")
}

fn terminal_available() -> bool {
    cfg!(unix) && open_terminal().is_ok()
}

/// Lets age ask the user for passphrases (and plugins show messages) on the terminal.
#[derive(Clone, Copy)]
struct TerminalCallbacks;

impl TerminalCallbacks {
    fn read_line(prompt: &str, hidden: bool) -> Option<Zeroizing<String>> {
        let mut terminal = open_terminal().ok()?;
        write!(terminal, "{prompt} ").ok()?;
        terminal.flush().ok()?;
        if hidden {
            set_echo(&terminal, false);
        }
        let mut line = Zeroizing::new(String::new());
        let read = terminal
            .try_clone()
            .and_then(|tty| BufReader::new(tty).read_line(&mut line));
        if hidden {
            set_echo(&terminal, true);
            let _ = writeln!(terminal);
        }
        read.ok()?;
        let length = line.trim_end_matches(['\r', '\n']).len();
        line.truncate(length);
        Some(line)
    }
}

/// Turns terminal echo off or on by running `stty` on the terminal itself, which avoids an
/// unsafe termios dependency for one prompt. Best effort: a failure only means visible typing.
fn set_echo(terminal: &std::fs::File, on: bool) {
    if let Ok(tty) = terminal.try_clone() {
        let _ = Command::new("stty")
            .arg(if on { "echo" } else { "-echo" })
            .stdin(tty)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl age::Callbacks for TerminalCallbacks {
    fn display_message(&self, message: &str) {
        eprintln!("{message}");
    }

    fn confirm(&self, _message: &str, _yes: &str, _no: Option<&str>) -> Option<bool> {
        None
    }

    fn request_public_string(&self, description: &str) -> Option<String> {
        Self::read_line(description, false).map(|line| line.to_string())
    }

    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        let line = Self::read_line(description, true)?;
        Some(SecretString::from(line.to_string()))
    }
}

#[cfg(test)]
mod tests;
