//! Shared test harness: a hermetic sandbox (its own HOME, GNUPGHOME, XDG_CONFIG_HOME, no ambient
//! SOPS_* variables) that runs the real `veil` binary, plus access to the real sops vectors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The directory of real sops files, from `VEIL_SOPS_VECTORS` (set by scripts/test.sh).
/// Prints why and returns `None` when it is not available, so the calling test can skip.
pub fn vectors() -> Option<PathBuf> {
    match std::env::var_os("VEIL_SOPS_VECTORS").map(PathBuf::from) {
        Some(dir) if dir.is_dir() => Some(dir),
        _ => {
            eprintln!(
                "SKIPPED: VEIL_SOPS_VECTORS is not set; run the suite through scripts/test.sh"
            );
            None
        }
    }
}

/// Whether a program is on PATH; prints a skip note when it is not.
pub fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED: {program} is not installed (.ci/run installs it)");
    }
    found
}

/// A loopback port nothing listens on (bound, then released): connecting is refused.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub const PGP_FP: &str = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4";
pub const PGP_FP_2: &str = "D7229043384BCC60326C6FB9D8720D957C3D3074";
pub const PGP_PUBLIC_ONLY: &str = "B611A2F9F11D0FF82568805119F9B5DAEA91FF86";

pub struct Sandbox {
    pub dir: TempDir,
    extra_env: Vec<(String, String)>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Each GNUPGHOME gets its own gpg-agent; stop it with the sandbox.
        let _ = Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("GNUPGHOME", self.gnupghome())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("veil-t")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let sandbox = Sandbox {
            dir,
            extra_env: Vec::new(),
        };
        std::fs::create_dir_all(sandbox.home().join(".config")).unwrap();
        std::fs::create_dir_all(sandbox.gnupghome()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(sandbox.gnupghome(), std::fs::Permissions::from_mode(0o700))
                .unwrap();
        }
        std::fs::create_dir_all(sandbox.work()).unwrap();
        sandbox
    }

    /// A sandbox whose GNUPGHOME holds the sops test PGP keys.
    pub fn with_sops_pgp_key(vectors: &Path) -> Option<Sandbox> {
        if !have("gpg") {
            return None;
        }
        let sandbox = Sandbox::new();
        let status = Command::new("gpg")
            .args(["--batch", "--quiet", "--import"])
            .arg(vectors.join("sops_functional_tests_key.asc"))
            .env("GNUPGHOME", sandbox.gnupghome())
            .stderr(Stdio::null())
            .status()
            .expect("run gpg");
        assert!(status.success(), "gpg --import failed");
        Some(sandbox)
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn gnupghome(&self) -> PathBuf {
        self.dir.path().join("gnupg")
    }

    /// The working directory commands run in.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work().join(name)
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// Sets an environment variable for every later command.
    pub fn env(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.extra_env.push((name.to_string(), value.into()));
        self
    }

    /// Generates an age identity with the real `age-keygen` and makes it the default key file
    /// (`$XDG_CONFIG_HOME/sops/age/keys.txt`). Returns the recipient.
    pub fn age_identity(&self) -> Option<String> {
        if !have("age-keygen") {
            return None;
        }
        let keys = self.home().join(".config/sops/age/keys.txt");
        std::fs::create_dir_all(keys.parent().unwrap()).unwrap();
        let out = Command::new("age-keygen")
            .arg("-o")
            .arg(&keys)
            .output()
            .expect("run age-keygen");
        assert!(out.status.success());
        let text = std::fs::read_to_string(&keys).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .map(str::to_string)
    }

    /// A hermetic command for any program (veil, age, gpg) in this sandbox.
    pub fn program(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("GNUPGHOME", self.gnupghome())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("LANG", "C.UTF-8")
            .current_dir(self.work());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The veil binary under test.
    pub fn veil(&self) -> Command {
        self.program(env!("CARGO_BIN_EXE_veil"))
    }

    /// Runs veil with arguments and optional stdin.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with_stdin(self.veil().args(args), stdin)
    }
}

pub fn run_with_stdin(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(bytes) = stdin {
        // veil may exit (on an error it found first) before reading all of its input.
        match child.stdin.take().unwrap().write_all(bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
    }
    child.wait_with_output().expect("wait")
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "expected success, got {:?}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Asserts the exit code and returns stderr.
#[track_caller]
pub fn fails_with(output: Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr: {stderr}\nstdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// JSON values compared as values: every number as f64 (sops prints `2` and `2.0` for one value).
pub fn normalize(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
        }
        other => other,
    }
}

/// The entries of one key type (`kms`, `gcp_kms`, `azure_kv`, …) in a YAML file's `sops` block,
/// parsed with an independent YAML parser.
pub fn key_entries_of(text: &str, kind: &str) -> Vec<serde_yaml_ng::Mapping> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("the file is YAML");
    doc["sops"][kind]
        .as_sequence()
        .map(|list| {
            list.iter()
                .map(|e| e.as_mapping().expect("a key entry is a mapping").clone())
                .collect()
        })
        .unwrap_or_default()
}

/// A string field of a key entry ("" when absent).
pub fn field(entry: &serde_yaml_ng::Mapping, name: &str) -> String {
    entry
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}
