//! One conformance table: every format × every key source, through the real `veil` binary.
//!
//! For each (format, key source) pair: encrypt (no plaintext left, `filestatus`, exactly one key
//! entry of that type, naming the key that was asked for), decrypt (byte-identical),
//! `--output-type json` (same values), `--extract` (raw bytes), `set` (only that value's line and
//! the MAC change), `rotate` (same plaintext, every ciphertext new, the same key entry) and
//! encrypting the encrypted output again (exit 203).
//!
//! The key sources: age X25519, age SSH ed25519 and PGP (the sops test key, from
//! `VEIL_SOPS_VECTORS`); with their cargo features, AWS KMS (a real `moto_server`,
//! `tests/support/moto.rs`), GCP KMS, Azure Key Vault (HTTPS) and Vault transit (the loopback
//! stand-ins of `tests/support/`), and PKCS#11 with an AES-256 key and an RSA-2048 pair (a
//! SoftHSM2 token, `tests/support/softhsm.rs`). A source whose external program is missing
//! prints `SKIPPED:` and runs nothing. Each source has one sandbox, reused across the formats,
//! that holds its credentials, and keeps its server alive for the whole table; the sources run
//! as one test each, in parallel.

mod common;

#[cfg(feature = "azure")]
#[path = "support/azure_kv_server.rs"]
mod azure_kv_server;
#[cfg(feature = "gcp")]
#[path = "support/gcp_kms_server.rs"]
mod gcp_kms_server;
#[cfg(any(feature = "azure", feature = "gcp", feature = "vault"))]
#[path = "support/http.rs"]
mod http;
#[cfg(feature = "aws")]
#[path = "support/moto.rs"]
mod moto;
#[cfg(feature = "pkcs11")]
#[path = "support/softhsm.rs"]
mod softhsm;
#[cfg(feature = "vault")]
#[path = "support/vault_server.rs"]
mod vault_server;

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::time::Instant;

use common::*;
use serde_json::{json, Value};

/// A plaintext fixture and what the checks expect of it.
struct Fixture {
    format: &'static str,
    file: &'static str,
    plain: &'static str,
    /// Plaintext that must not survive encryption (values and comment text).
    secrets: &'static [&'static str],
    /// `decrypt --output-type json`, compared as values.
    json: fn() -> Value,
    /// `--extract` path and the raw bytes it prints.
    extract: (&'static str, &'static str),
    /// `set`: the index, the new value as JSON, its JSON pointer and the key its line starts with.
    set: (&'static str, &'static str, &'static str, &'static str),
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        format: "yaml",
        file: "app.yaml",
        plain: include_str!("data/conformance/app.yaml"),
        secrets: &[
            "billing",
            "p@ss=word!",
            "quoted",
            "ünïcödé",
            "a.internal",
            "service account",
            "Billing service",
        ],
        json: nested_json,
        extract: (r#"["db"]["password"]"#, "p@ss=word!"),
        set: (
            r#"["db"]["password"]"#,
            r#""n3w p@ss ü""#,
            "/db/password",
            "password",
        ),
    },
    Fixture {
        format: "json",
        file: "app.json",
        plain: include_str!("data/conformance/app.json"),
        secrets: &["billing", "p@ss=word!", "quoted", "ünïcödé", "a.internal"],
        json: nested_json,
        extract: (r#"["db"]["quote"]"#, r#"it's "quoted""#),
        set: (
            r#"["db"]["password"]"#,
            r#""n3w p@ss ü""#,
            "/db/password",
            "password",
        ),
    },
    Fixture {
        format: "dotenv",
        file: "app.env",
        plain: include_str!("data/conformance/app.env"),
        secrets: &[
            "billing",
            "p@ss=word!",
            "quoted",
            "ünïcödé",
            "Billing service",
        ],
        json: || {
            json!({
                "APP_NAME": "billing",
                "REPLICAS": "3",
                "DEBUG": "false",
                "DB_PASSWORD": "p@ss=word!",
                "QUOTE": "it's \"quoted\"",
                "GREETING": "ünïcödé",
                "EMPTY": "",
            })
        },
        extract: (r#"["DB_PASSWORD"]"#, "p@ss=word!"),
        set: (
            r#"["DB_PASSWORD"]"#,
            r#""n3w p@ss ü""#,
            "/DB_PASSWORD",
            "DB_PASSWORD",
        ),
    },
    Fixture {
        format: "ini",
        file: "app.ini",
        plain: include_str!("data/conformance/app.ini"),
        secrets: &[
            "billing",
            "p@ss=word!",
            "quoted",
            "ünïcödé",
            "service account",
            "Billing service",
        ],
        json: || {
            json!({
                "DEFAULT": {},
                "app": {"name": "billing", "replicas": "3", "debug": "false"},
                "db": {
                    "user": "app",
                    "password": "p@ss=word!",
                    "quote": "it's \"quoted\"",
                    "greeting": "ünïcödé",
                    "empty": "",
                },
            })
        },
        extract: (r#"["db"]["greeting"]"#, "ünïcödé"),
        set: (
            r#"["db"]["password"]"#,
            r#""n3w p@ss ü""#,
            "/db/password",
            "password",
        ),
    },
    Fixture {
        format: "toml",
        file: "app.toml",
        plain: include_str!("data/conformance/app.toml"),
        secrets: &[
            "billing",
            "p@ss=word!",
            "quoted",
            "ünïcödé",
            "a.internal",
            "service account",
            "Billing service",
        ],
        json: || {
            json!({
                "title": "billing",
                "app": {"replicas": 3, "ratio": 0.75, "debug": false},
                "db": {
                    "user": "app",
                    "password": "p@ss=word!",
                    "quote": "it's \"quoted\"",
                    "greeting": "ünïcödé",
                    "empty": "",
                    "hosts": ["a.internal", "b.internal"],
                },
            })
        },
        extract: (r#"["db"]["password"]"#, "p@ss=word!"),
        set: (
            r#"["db"]["password"]"#,
            r#""n3w p@ss ü""#,
            "/db/password",
            "password",
        ),
    },
    Fixture {
        format: "binary",
        file: "app.bin",
        plain: include_str!("data/conformance/app.bin"),
        secrets: &[
            "OPENSSH",
            "not-a-real-key",
            "p@ss=word!",
            "quoted",
            "ünïcödé",
        ],
        json: || json!({ "data": include_str!("data/conformance/app.bin") }),
        extract: (r#"["data"]"#, include_str!("data/conformance/app.bin")),
        set: (r#"["data"]"#, r#""n3w p@ss ü\n""#, "/data", "data"),
    },
];

/// The JSON and YAML fixtures hold the same values.
fn nested_json() -> Value {
    json!({
        "app": {"name": "billing", "replicas": 3, "ratio": 0.75, "debug": false},
        "db": {
            "user": "app",
            "password": "p@ss=word!",
            "quote": "it's \"quoted\"",
            "greeting": "ünïcödé",
            "empty": "",
            "hosts": ["a.internal", "b.internal"],
        },
    })
}

/// A key source: its sandbox, the encrypt flags that name it, and the one metadata entry it makes.
struct KeySource {
    label: &'static str,
    sandbox: Sandbox,
    encrypt_args: Vec<String>,
    /// `(metadata key type, identifying fields)`, as `key_entries` reads them (see `ENTRY_IDS`).
    entry: (String, String),
    /// What the key lives in (a server, a shared `moto_server`), kept alive for the table.
    _server: Option<Box<dyn Any>>,
}

fn age_x25519() -> Option<KeySource> {
    let sandbox = Sandbox::new();
    let recipient = sandbox.age_identity()?;
    Some(KeySource {
        label: "age",
        sandbox,
        encrypt_args: vec!["--age".into(), recipient.clone()],
        entry: ("age".into(), recipient),
        _server: None,
    })
}

fn age_ssh_ed25519() -> Option<KeySource> {
    if !have("ssh-keygen") {
        return None;
    }
    let sandbox = Sandbox::new();
    let ssh = sandbox.home().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "veil@conformance",
            "-f",
        ])
        .arg(ssh.join("id_ed25519"))
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen failed: {out:?}");
    let public = std::fs::read_to_string(ssh.join("id_ed25519.pub")).unwrap();
    let public = public.trim().to_string();

    // The whole `.pub` line, comment included, as users paste it.
    let encrypt_args = vec!["--age".into(), public.clone()];
    Some(KeySource {
        label: "age-ssh",
        sandbox,
        encrypt_args,
        entry: ("age".into(), public),
        _server: None,
    })
}

fn pgp() -> Option<KeySource> {
    let vectors = vectors()?;
    let sandbox = Sandbox::with_sops_pgp_key(&vectors)?;
    Some(KeySource {
        label: "pgp",
        sandbox,
        encrypt_args: vec!["--pgp".into(), PGP_FP.into()],
        entry: ("pgp".into(), PGP_FP.into()),
        _server: None,
    })
}

/// A symmetric key of a real `moto_server`, with its test credentials.
#[cfg(feature = "aws")]
fn aws_kms() -> Option<KeySource> {
    let moto = moto::moto()?;
    let arn = moto.create_key();
    let mut sandbox = Sandbox::new();
    moto.credentials(&mut sandbox);
    Some(KeySource {
        label: "aws-kms",
        sandbox,
        encrypt_args: vec!["--kms".into(), arn.clone()],
        entry: ("kms".into(), arn),
        _server: Some(Box::new(moto)),
    })
}

#[cfg(feature = "gcp")]
fn gcp_kms() -> Option<KeySource> {
    const KEY: &str = "projects/veil/locations/global/keyRings/conformance/cryptoKeys/app";
    const TOKEN: &str = "ya29.conformance-access-token";
    let server = gcp_kms_server::GcpKmsServer::builder()
        .token(TOKEN)
        .key(KEY)
        .start();
    let mut sandbox = Sandbox::new();
    sandbox
        .env("SOPS_GCP_KMS_ENDPOINT", server.endpoint.clone())
        .env("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN);
    Some(KeySource {
        label: "gcp-kms",
        sandbox,
        encrypt_args: vec!["--gcp-kms".into(), KEY.into()],
        entry: ("gcp_kms".into(), KEY.into()),
        _server: Some(Box::new(server)),
    })
}

/// A key with two versions, named without one: the entry records the latest.
#[cfg(feature = "azure")]
fn azure_kv() -> Option<KeySource> {
    const KEY: &str = "conformance";
    const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.conformance";
    let server = azure_kv_server::AzureKvServer::builder()
        .token(TOKEN)
        .key(KEY, 2)
        .start();
    let mut sandbox = Sandbox::new();
    let ca = sandbox.dir.path().join("azure-ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    sandbox
        .env("VEIL_AZURE_CA_BUNDLE", ca.display().to_string())
        .env("VEIL_AZURE_ACCESS_TOKEN", TOKEN);
    let latest = server.versions(KEY).pop().expect("a version");
    Some(KeySource {
        label: "azure-kv",
        sandbox,
        encrypt_args: vec!["--azure-kv".into(), server.url(KEY)],
        entry: ("azure_kv".into(), format!("{}/{latest}", server.url(KEY))),
        _server: Some(Box::new(server)),
    })
}

#[cfg(feature = "vault")]
fn vault_transit() -> Option<KeySource> {
    const TOKEN: &str = "hvs.conformance-token";
    let server = vault_server::VaultServer::builder()
        .token(TOKEN)
        .key("transit", "conformance")
        .start();
    let mut sandbox = Sandbox::new();
    sandbox.env("VAULT_TOKEN", TOKEN);
    let uri = server.uri("transit", "conformance");
    Some(KeySource {
        label: "vault",
        sandbox,
        encrypt_args: vec!["--hc-vault-transit".into(), uri.clone()],
        entry: ("hc_vault".into(), uri),
        _server: Some(Box::new(server)),
    })
}

/// The token's AES-256 key, its PIN from the URI's `pin-source` file.
#[cfg(feature = "pkcs11")]
fn pkcs11_aes() -> Option<KeySource> {
    let hsm = softhsm::Hsm::new("conf-aes")?;
    let uri = hsm.uri("object=sops-aes;type=secret-key", &hsm.pin_source());
    Some(KeySource {
        label: "p11-aes",
        sandbox: hsm.sandbox,
        encrypt_args: vec!["--pkcs11".into(), uri.clone()],
        entry: ("pkcs11".into(), uri),
        _server: None,
    })
}

/// The token's RSA-2048 pair: wrapped with the public key, unwrapped with the private one (the
/// PIN from VEIL_PKCS11_PIN).
#[cfg(feature = "pkcs11")]
fn pkcs11_rsa() -> Option<KeySource> {
    let mut hsm = softhsm::Hsm::new("conf-rsa")?;
    let uri = hsm.uri("object=sops-rsa;type=public", "");
    hsm.sandbox.env("VEIL_PKCS11_PIN", softhsm::PIN);
    Some(KeySource {
        label: "p11-rsa",
        sandbox: hsm.sandbox,
        encrypt_args: vec!["--pkcs11".into(), uri.clone()],
        entry: ("pkcs11".into(), uri),
        _server: None,
    })
}

/// Runs the table when the source is available (it printed `SKIPPED:` otherwise).
fn table(source: Option<KeySource>) {
    if let Some(source) = source {
        run_table(&source);
    }
}

#[test]
fn every_format_with_age_x25519() {
    table(age_x25519());
}

#[test]
fn every_format_with_age_ssh_ed25519() {
    table(age_ssh_ed25519());
}

#[test]
fn every_format_with_pgp() {
    table(pgp());
}

#[cfg(feature = "aws")]
#[test]
fn every_format_with_aws_kms() {
    table(aws_kms());
}

#[cfg(feature = "gcp")]
#[test]
fn every_format_with_gcp_kms() {
    table(gcp_kms());
}

#[cfg(feature = "azure")]
#[test]
fn every_format_with_azure_key_vault() {
    table(azure_kv());
}

#[cfg(feature = "vault")]
#[test]
fn every_format_with_vault_transit() {
    table(vault_transit());
}

#[cfg(feature = "pkcs11")]
#[test]
fn every_format_with_pkcs11_aes() {
    table(pkcs11_aes());
}

#[cfg(feature = "pkcs11")]
#[test]
fn every_format_with_pkcs11_rsa() {
    table(pkcs11_rsa());
}

/// Runs every fixture with one key source; a broken case does not hide the others.
fn run_table(source: &KeySource) {
    let mut broken = Vec::new();
    for fixture in FIXTURES {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| check(source, fixture)));
        let status = if result.is_ok() { "ok" } else { "FAILED" };
        eprintln!(
            "conformance {:<6} x {:<7} {status} ({} ms)",
            fixture.format,
            source.label,
            started.elapsed().as_millis()
        );
        if result.is_err() {
            broken.push(format!("{} x {}", fixture.format, source.label));
        }
    }
    assert!(broken.is_empty(), "broken cases: {broken:?}");
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 output")
}

fn check(source: &KeySource, fx: &Fixture) {
    let case = format!("{} x {}", fx.format, source.label);
    let sb = &source.sandbox;
    let plain = sb.write(fx.file, fx.plain);
    let plain = plain.to_str().unwrap();
    let enc_path = format!("enc/{}", fx.file);
    let run = |args: &[&str]| sb.run(args, None);

    // 1. encrypt
    let mut args = vec!["encrypt"];
    args.extend(source.encrypt_args.iter().map(String::as_str));
    args.push(plain);
    let encrypted = text(ok(run(&args)));
    sb.write(&enc_path, &encrypted);
    for secret in fx.secrets {
        assert!(
            !encrypted.contains(secret),
            "{case}: {secret:?} is left in the clear:\n{encrypted}"
        );
    }
    assert_eq!(
        text(ok(run(&["filestatus", &enc_path]))),
        "{\"encrypted\":true}\n",
        "{case}"
    );
    assert_eq!(
        key_entries(fx.format, &encrypted),
        std::slice::from_ref(&source.entry),
        "{case}: exactly one key entry, of the source's type"
    );

    // 2. decrypt gives the input back
    let decrypted = text(ok(run(&["decrypt", &enc_path])));
    let round_trip = |input: &str| {
        let again = format!("again/{}", fx.file);
        sb.write(&again, input);
        let mut args = vec!["encrypt", "-i"];
        args.extend(source.encrypt_args.iter().map(String::as_str));
        args.push(&again);
        ok(run(&args));
        text(ok(run(&["decrypt", &again])))
    };
    assert_identical(fx, &case, &decrypted, round_trip);

    // 3. as JSON, the same values
    let as_json = ok(run(&["decrypt", "--output-type", "json", &enc_path]));
    let as_json: Value = serde_json::from_slice(&as_json)
        .unwrap_or_else(|e| panic!("{case}: --output-type json is not JSON: {e}"));
    assert_eq!(normalize(as_json), normalize((fx.json)()), "{case}");

    // 4. one value, raw
    let (path, raw) = fx.extract;
    assert_eq!(
        text(ok(run(&["decrypt", "--extract", path, &enc_path]))),
        raw,
        "{case}: --extract {path}"
    );

    // 5. set: only that value's line and the metadata's MAC/lastmodified change
    let (index, value, pointer, line_key) = fx.set;
    let set_path = format!("set/{}", fx.file);
    sb.write(&set_path, &encrypted);
    ok(run(&["set", &set_path, index, value]));
    let after_set = sb.read(&set_path);
    let new_value: Value = serde_json::from_str(value).unwrap();
    let mut want = (fx.json)();
    *want.pointer_mut(pointer).unwrap() = new_value.clone();
    let got: Value =
        serde_json::from_slice(&ok(run(&["decrypt", "--output-type", "json", &set_path]))).unwrap();
    assert_eq!(normalize(got), normalize(want), "{case}: after set");
    let shown = text(ok(run(&["decrypt", &set_path])));
    assert!(
        shown.contains(new_value.as_str().unwrap()),
        "{case}: decrypt shows the new value:\n{shown}"
    );
    let (kept, replaced) = ciphertext_lines(&encrypted, &after_set, line_key);
    assert!(
        replaced > 0,
        "{case}: the set value's line changed:\n{after_set}"
    );
    assert!(
        kept.is_empty(),
        "{case}: set changed other values' ciphertext lines: {kept:#?}\n---\n{after_set}"
    );

    // 6. rotate: same plaintext, all new ciphertexts
    let rot_path = format!("rot/{}", fx.file);
    sb.write(&rot_path, &encrypted);
    ok(run(&["rotate", "-i", &rot_path]));
    let rotated = sb.read(&rot_path);
    assert_eq!(
        text(ok(run(&["decrypt", &rot_path]))),
        decrypted,
        "{case}: rotate keeps the plaintext"
    );
    let before = ciphertexts(&encrypted);
    let after = ciphertexts(&rotated);
    assert!(!before.is_empty(), "{case}: has ciphertexts");
    assert_eq!(before.len(), after.len(), "{case}: as many ciphertexts");
    assert!(
        before.is_disjoint(&after),
        "{case}: rotate re-encrypts every value: {:?}",
        before.intersection(&after).collect::<Vec<_>>()
    );
    assert_eq!(
        key_entries(fx.format, &rotated),
        std::slice::from_ref(&source.entry),
        "{case}: rotate keeps the key entry"
    );

    // 7. encrypting the encrypted output again
    let mut args = vec!["encrypt"];
    args.extend(source.encrypt_args.iter().map(String::as_str));
    args.push(&enc_path);
    if fx.format == "binary" {
        // sops never treats a binary input as already encrypted (spec §6.5): it wraps the
        // envelope again, and veil does the same.
        let twice = text(ok(run(&args)));
        assert_eq!(
            key_entries(fx.format, &twice),
            std::slice::from_ref(&source.entry),
            "{case}"
        );
    } else {
        let stderr = fails_with(run(&args), 203);
        assert!(stderr.contains("already encrypted"), "{case}: {stderr}");
    }
}

/// Step 2: decrypting gives back the input byte for byte.
fn assert_identical(
    fx: &Fixture,
    case: &str,
    decrypted: &str,
    round_trip: impl Fn(&str) -> String,
) {
    match fx.format {
        // JSON and INI are written as sops writes them (JSON re-indented with tabs, INI aligned
        // on `=`), as the README says; what holds is that the layout is stable: decrypting what
        // that output encrypts to gives the same bytes, and steps 3 and 6 check the values.
        "json" | "ini" => {
            assert_eq!(
                round_trip(decrypted),
                decrypted,
                "{case}: the layout is stable"
            );
        }
        _ => assert_eq!(decrypted, fx.plain, "{case}: decrypt is byte-identical"),
    }
}

/// Every `data:…,iv:…` pair in a file (values, comments and the MAC).
fn ciphertexts(file: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"ENC\[AES256_GCM,data:([^,]*),iv:([^,]*),").unwrap();
    re.captures_iter(file)
        .map(|c| format!("{}/{}", &c[1], &c[2]))
        .collect()
}

/// Compares the ciphertext lines of two versions of an encrypted file. Returns the lines, other
/// than the MAC's and those of `key`, that are missing from `after` (should be none), and how many
/// of `key`'s lines were replaced. A line's key is its leading name, quotes and a `sops_` prefix
/// dropped: `mac`, `password`, `DB_PASSWORD`, `data`. Metadata lines without a ciphertext may come
/// and go (`lastmodified`, and the default suffix `set` writes into a binary file's metadata).
fn ciphertext_lines<'a>(before: &'a str, after: &str, key: &str) -> (Vec<&'a str>, usize) {
    let after: BTreeSet<&str> = after.lines().collect();
    let mut missing = Vec::new();
    let mut replaced = 0;
    for line in before.lines().filter(|l| l.contains("ENC[AES256_GCM,")) {
        let name = line.trim_start().trim_start_matches('"');
        let name = name.strip_prefix("sops_").unwrap_or(name);
        let name: String = name
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name == key {
            replaced += usize::from(!after.contains(line));
        } else if name != "mac" && !after.contains(line) {
            missing.push(line);
        }
    }
    (missing, replaced)
}

/// What identifies the key of an entry, per metadata key type: a template over the entry's
/// fields. A field the entry lacks stays as `{field}`, and an unknown type has no template, so
/// both fail the comparison visibly.
const ENTRY_IDS: &[(&str, &str)] = &[
    ("age", "{recipient}"),
    ("pgp", "{fp}"),
    ("kms", "{arn}"),
    ("gcp_kms", "{resource_id}"),
    ("azure_kv", "{vault_url}/keys/{name}/{version}"),
    (
        "hc_vault",
        "{vault_address}/v1/{engine_path}/keys/{key_name}",
    ),
    ("pkcs11", "{uri}"),
];

/// The identifying string of an entry of type `kind`, from its string fields.
fn entry_id(kind: &str, field: impl Fn(&str) -> Option<String>) -> String {
    let Some((_, template)) = ENTRY_IDS.iter().find(|(k, _)| *k == kind) else {
        return format!("<no identifying fields known for {kind:?}>");
    };
    let re = regex::Regex::new(r"\{([a-z_]+)\}").unwrap();
    re.replace_all(template, |c: &regex::Captures| {
        field(&c[1]).unwrap_or_else(|| c[0].to_string())
    })
    .into_owned()
}

/// The key entries of a file's metadata, as `(type, identifying fields)`.
fn key_entries(format: &str, file: &str) -> Vec<(String, String)> {
    match format {
        "yaml" => {
            let doc: Value = serde_yaml_ng::from_str(file).expect("encrypted YAML parses");
            structured_entries(&doc["sops"])
        }
        "json" | "binary" => {
            let doc: Value = serde_json::from_str(file).expect("encrypted JSON parses");
            structured_entries(&doc["sops"])
        }
        "toml" => {
            let doc: toml_edit::DocumentMut = file.parse().expect("encrypted TOML parses");
            let sops = doc["sops"].as_table().expect("a [sops] table");
            let mut out = Vec::new();
            for (kind, item) in sops.iter() {
                if let Some(tables) = item.as_array_of_tables() {
                    for table in tables.iter() {
                        let id = entry_id(kind, |f| {
                            table.get(f).and_then(|v| v.as_str()).map(str::to_string)
                        });
                        out.push((kind.to_string(), id));
                    }
                }
            }
            out
        }
        "dotenv" => flattened_entries(file.lines().filter_map(|line| {
            let (key, value) = line.strip_prefix("sops_")?.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })),
        "ini" => {
            let section = file
                .split_once("\n[sops]\n")
                .map(|(_, s)| s)
                .expect("a [sops] section");
            flattened_entries(section.lines().filter_map(|line| {
                let (key, value) = line.split_once('=')?;
                Some((
                    key.trim().to_string(),
                    ini_unquote(value.trim()).to_string(),
                ))
            }))
        }
        other => panic!("no metadata reader for {other}"),
    }
}

/// An INI value without the quotes go-ini writes around it: `"""…"""` (newlines, backticks),
/// backticks (`;` or `#`, the comment markers, as in a PKCS#11 URI) or `"…"` (edge spaces).
fn ini_unquote(value: &str) -> &str {
    ["\"\"\"", "`", "\""]
        .iter()
        .find_map(|q| value.strip_prefix(q)?.strip_suffix(q))
        .unwrap_or(value)
}

/// Entries of `sops:` as a tree: every list of mappings is a key type (`key_groups` would show up
/// as one, and fail the comparison).
fn structured_entries(sops: &Value) -> Vec<(String, String)> {
    let Value::Object(map) = sops else {
        panic!("no sops metadata: {sops}")
    };
    let mut out = Vec::new();
    for (kind, value) in map {
        if let Value::Array(items) = value {
            for item in items.iter().filter(|i| i.is_object()) {
                let id = entry_id(kind, |f| item[f].as_str().map(str::to_string));
                out.push((kind.clone(), id));
            }
        }
    }
    out
}

/// Entries of flattened metadata (`age__list_0__map_recipient = …`, spec §5.6).
fn flattened_entries(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let re = regex::Regex::new(r"^([a-z0-9_]+?)__list_(\d+)__map_([a-z0-9_]+)$").unwrap();
    let mut entries: BTreeMap<(String, usize), BTreeMap<String, String>> = BTreeMap::new();
    for (key, value) in pairs {
        let Some(c) = re.captures(&key) else { continue };
        entries
            .entry((c[1].to_string(), c[2].parse().unwrap()))
            .or_default()
            .insert(c[3].to_string(), value);
    }
    entries
        .into_iter()
        .map(|((kind, _), fields)| {
            let id = entry_id(&kind, |f| fields.get(f).cloned());
            (kind, id)
        })
        .collect()
}
