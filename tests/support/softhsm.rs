//! SoftHSM2 tokens for tests: each `Hsm` is a sandbox with its own SOFTHSM2_CONF and token
//! directory, holding one token with an AES-256 key and an RSA-2048 pair made with
//! `softhsm2-util` and `pkcs11-tool`. `Hsm::new` prints `SKIPPED:` and returns `None` when
//! softhsm2 or opensc are missing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use crate::common::{have, run_with_stdin, Sandbox};

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const PIN: &str = "471123";
pub const WRONG_PIN: &str = "999317";
pub const SO_PIN: &str = "12345678";

/// A sandbox whose SoftHSM2 has one token `label` with an AES-256 key `sops-aes` (id 01) and
/// an RSA-2048 pair `sops-rsa` (id 02). The PIN is in the file `pin.txt` of the sandbox.
pub struct Hsm {
    pub sandbox: Sandbox,
    pub pin_file: PathBuf,
    pub label: String,
    /// The SOFTHSM2_CONF that reaches this token, for other sandboxes.
    pub conf: PathBuf,
}

impl Hsm {
    pub fn new(label: &str) -> Option<Hsm> {
        if !have("softhsm2-util") || !have("pkcs11-tool") {
            return None;
        }
        if !Path::new(MODULE).exists() {
            eprintln!("SKIPPED: {MODULE} is missing (.ci/run installs softhsm2)");
            return None;
        }
        let mut sandbox = Sandbox::new();
        let base = sandbox.dir.path().join("softhsm");
        std::fs::create_dir_all(base.join("tokens")).unwrap();
        let conf = base.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                base.join("tokens").display()
            ),
        )
        .unwrap();
        sandbox.env("SOFTHSM2_CONF", conf.display().to_string());
        let pin_file = sandbox.dir.path().join("pin.txt");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        let hsm = Hsm {
            sandbox,
            pin_file,
            label: label.to_string(),
            conf,
        };
        // Test tokens only: these throw-away PINs are given on the tools' command lines.
        hsm.tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                PIN,
            ],
        );
        hsm.keygen(&[
            "--keygen",
            "--key-type",
            "AES:32",
            "--label",
            "sops-aes",
            "--id",
            "01",
        ]);
        hsm.keygen(&[
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--label",
            "sops-rsa",
            "--id",
            "02",
        ]);
        Some(hsm)
    }

    pub fn tool(&self, program: &str, args: &[&str]) {
        let out = run_with_stdin(self.sandbox.program(program).args(args), None);
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn keygen(&self, args: &[&str]) {
        let mut all = vec![
            "--module",
            MODULE,
            "--login",
            "--pin",
            PIN,
            "--token-label",
            &self.label,
        ];
        all.extend_from_slice(args);
        self.tool("pkcs11-tool", &all);
    }

    /// The URI of a key of this token, with the module and `extra` query attributes.
    pub fn uri(&self, path: &str, extra: &str) -> String {
        format!(
            "pkcs11:token={};{path}?module-path={MODULE}{extra}",
            self.label
        )
    }

    pub fn pin_source(&self) -> String {
        format!("&pin-source=file:{}", self.pin_file.display())
    }

    /// Lets `sandbox` reach this token (its key URIs carry their PIN source).
    pub fn reach_from(&self, sandbox: &mut Sandbox) {
        sandbox.env("SOFTHSM2_CONF", self.conf.display().to_string());
    }
}
