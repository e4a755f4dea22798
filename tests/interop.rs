//! The other direction: what veil writes opens with the real `age` and `gpg`, and its metadata
//! has every field sops needs, checked with plain YAML/JSON parsers.

mod common;

use common::*;

const PLAIN: &str =
    "db:\n  user: app\n  password: hunter2\nport: 5432\nratio: 0.25\nenabled: true\n";

fn yaml(text: &[u8]) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_slice(text).expect("veil's output parses as YAML")
}

/// Checks the fields sops needs to load a file (spec §5).
fn check_sops_block(sops: &serde_json::Value) {
    let version = sops["version"].as_str().expect("version is a string");
    let parts: Vec<u32> = version
        .split('.')
        .map(|p| p.parse().expect("semver"))
        .collect();
    assert_eq!(parts.len(), 3, "semver version: {version}");
    assert!(
        parts >= vec![3, 3, 0],
        "version {version} is at least 3.3.0"
    );
    let lastmodified = sops["lastmodified"]
        .as_str()
        .expect("lastmodified is a string");
    assert!(
        chrono::DateTime::parse_from_rfc3339(lastmodified).is_ok(),
        "RFC 3339: {lastmodified}"
    );
    assert!(lastmodified.ends_with('Z'));
    let mac = sops["mac"].as_str().expect("mac");
    assert!(
        mac.starts_with("ENC[AES256_GCM,data:") && mac.ends_with(",type:str]"),
        "{mac}"
    );
    assert_eq!(sops["unencrypted_suffix"], "_unencrypted");
}

fn yaml_to_json(value: serde_yaml_ng::Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn the_age_cli_opens_veils_age_stanza() {
    if !have("age") {
        return;
    }
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write("app.yaml", PLAIN);
    let out = ok(sandbox.run(&["encrypt", "--age", &recipient, "app.yaml"], None));
    let doc = yaml_to_json(yaml(&out));
    let sops = &doc["sops"];
    check_sops_block(sops);
    assert_eq!(sops["age"][0]["recipient"], recipient.as_str());
    let enc = sops["age"][0]["enc"].as_str().unwrap();
    assert!(enc.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let armored = sandbox.write("stanza.age", enc);
    let key_file = sandbox.home().join(".config/sops/age/keys.txt");
    let data_key = ok(sandbox
        .program("age")
        .arg("-d")
        .arg("-i")
        .arg(&key_file)
        .arg(&armored)
        .output()
        .unwrap());
    assert_eq!(
        data_key.len(),
        32,
        "the stanza holds the raw 32-byte data key"
    );
    // No plaintext value leaks into the encrypted file.
    let text = String::from_utf8(out).unwrap();
    for secret in ["hunter2", "5432", "0.25"] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
}

#[test]
fn gpg_opens_veils_pgp_stanza_and_json_output_has_sops_fields() {
    let Some(vectors) = vectors() else { return };
    let Some(sandbox) = Sandbox::with_sops_pgp_key(&vectors) else {
        return;
    };
    sandbox.write("app.json", r#"{"password": "hunter2", "port": 5432}"#);
    let out = ok(sandbox.run(&["encrypt", "--pgp", PGP_FP, "app.json"], None));
    let doc: serde_json::Value = serde_json::from_slice(&out).expect("veil's JSON output parses");
    let sops = &doc["sops"];
    check_sops_block(sops);
    let entry = &sops["pgp"][0];
    assert_eq!(entry["fp"], PGP_FP);
    assert!(chrono::DateTime::parse_from_rfc3339(entry["created_at"].as_str().unwrap()).is_ok());
    let enc = entry["enc"].as_str().unwrap();
    assert!(enc.starts_with("-----BEGIN PGP MESSAGE-----"));
    let armored = sandbox.write("stanza.asc", enc);
    let data_key = ok(sandbox
        .program("gpg")
        .args(["--batch", "--quiet", "--decrypt"])
        .arg(&armored)
        .output()
        .unwrap());
    assert_eq!(data_key.len(), 32);
    assert!(
        doc["port"].as_str().unwrap().ends_with(",type:int]"),
        "ints keep their type"
    );
}

#[test]
fn yaml_metadata_timestamps_are_quoted_strings() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write("a.yaml", PLAIN);
    let out = String::from_utf8(ok(
        sandbox.run(&["encrypt", "--age", &recipient, "a.yaml"], None)
    ))
    .unwrap();
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("lastmodified:"))
        .unwrap();
    assert!(
        line.contains("lastmodified: \""),
        "sops fails on an unquoted timestamp: {line}"
    );
    // The strict parser sees a string, not a timestamp.
    let doc = yaml(out.as_bytes());
    assert!(doc["sops"]["lastmodified"].is_string());
}
