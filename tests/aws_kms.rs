//! AWS KMS keys through the real binary, against a real `moto_server` (PyPI `moto[server]`, the
//! AWS KMS and STS endpoint for these tests) on 127.0.0.1 and a free port. Keys are created
//! through the KMS API with the AWS SDK; veil finds the server through `AWS_ENDPOINT_URL`.
//! Every test prints `SKIPPED:` and returns when `moto_server` is not installed.
#![cfg(feature = "aws")]

mod common;
#[path = "support/moto.rs"]
mod moto;

use common::*;
use moto::{moto, Moto};

const PLAIN: &str = "db:\n  user: app\n  password: hunter2\ntoken: s3cr3t\n";
/// An age recipient whose identity no test has: entries for it can never open a file.
const AGE_ELSEWHERE: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const ROLE: &str = "arn:aws:iam::123456789012:role/sops-test";

/// A sandbox with test credentials for the server and no IMDS probing.
fn sandbox(moto: &Moto) -> Sandbox {
    let mut sandbox = Sandbox::new();
    moto.credentials(&mut sandbox);
    sandbox.write("app.yaml", PLAIN);
    sandbox
}

fn decrypts(sandbox: &Sandbox) {
    let out = ok(sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(out).unwrap(), PLAIN);
}

#[test]
fn encrypts_with_a_kms_key_and_decrypts() {
    let Some(moto) = moto() else { return };
    let arn = moto.create_key();
    let sandbox = sandbox(&moto);
    ok(sandbox.run(&["encrypt", "-i", "--kms", &arn, "app.yaml"], None));
    let text = sandbox.read("app.yaml");
    assert!(!text.contains("hunter2"));
    let entries = key_entries_of(&text, "kms");
    assert_eq!(entries.len(), 1, "{text}");
    let entry = &entries[0];
    assert_eq!(field(entry, "arn"), arn);
    let names: Vec<&str> = entry.keys().filter_map(|k| k.as_str()).collect();
    // sops' sorted field order; role and context omitted when empty, aws_profile always there.
    assert_eq!(names, ["arn", "aws_profile", "created_at", "enc"], "{text}");
    assert_eq!(field(entry, "aws_profile"), "");
    assert!(chrono::DateTime::parse_from_rfc3339(&field(entry, "created_at")).is_ok());
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(field(entry, "enc"))
        .expect("enc is standard base64");
    assert!(blob.len() > 32);
    decrypts(&sandbox);

    // The same through SOPS_KMS_ARN, and `arn` lists with spaces.
    let mut env_sandbox = self::sandbox(&moto);
    env_sandbox.env("SOPS_KMS_ARN", format!(" {arn} "));
    ok(env_sandbox.run(&["encrypt", "-i", "app.yaml"], None));
    assert_eq!(
        field(
            &key_entries_of(&env_sandbox.read("app.yaml"), "kms")[0],
            "arn"
        ),
        arn
    );
    decrypts(&env_sandbox);
}

#[test]
fn encryption_context_is_stored_and_must_match() {
    let Some(moto) = moto() else { return };
    let arn = moto.create_key();
    let sandbox = sandbox(&moto);
    ok(sandbox.run(
        &[
            "encrypt",
            "-i",
            "--kms",
            &arn,
            "--encryption-context",
            "app:web,env:prod",
            "app.yaml",
        ],
        None,
    ));
    let text = sandbox.read("app.yaml");
    let entry = &key_entries_of(&text, "kms")[0];
    let context = entry.get("context").and_then(|c| c.as_mapping()).unwrap();
    assert_eq!(context.get("app").and_then(|v| v.as_str()), Some("web"));
    assert_eq!(context.get("env").and_then(|v| v.as_str()), Some("prod"));
    decrypts(&sandbox);

    // KMS refuses another context: exit 128, naming the key.
    assert!(text.contains("env: prod"), "{text}");
    sandbox.write("app.yaml", text.replace("env: prod", "env: dev"));
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains(&arn), "{stderr}");
    assert!(stderr.contains("InvalidCiphertext"), "{stderr}");

    // A malformed context is sops' exit 6, before any key is used.
    sandbox.write("new.yaml", PLAIN);
    for bad in ["app", "app:web,env", "url:http://x"] {
        let stderr = fails_with(
            sandbox.run(
                &[
                    "encrypt",
                    "--kms",
                    &arn,
                    "--encryption-context",
                    bad,
                    "new.yaml",
                ],
                None,
            ),
            6,
        );
        assert!(stderr.contains("encryption context"), "{stderr}");
    }
}

#[test]
fn creation_rule_with_kms_and_age_in_a_key_group() {
    let Some(moto) = moto() else { return };
    let arn = moto.create_key();
    let sandbox = sandbox(&moto);
    sandbox.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - path_regex: \\.yaml$\n    key_groups:\n      - kms:\n          - arn: {arn}\n            context:\n              team: ops\n        age:\n          - {AGE_ELSEWHERE}\n"
        ),
    );
    ok(sandbox.run(&["encrypt", "-i", "app.yaml"], None));
    let text = sandbox.read("app.yaml");
    let entry = &key_entries_of(&text, "kms")[0];
    assert_eq!(field(entry, "arn"), arn);
    let context = entry.get("context").and_then(|c| c.as_mapping()).unwrap();
    assert_eq!(context.get("team").and_then(|v| v.as_str()), Some("ops"));
    assert!(text.contains(AGE_ELSEWHERE), "{text}");
    // Only the KMS key can open it here.
    decrypts(&sandbox);

    // A flat rule: `kms` as a comma-separated string.
    sandbox.write(".sops.yaml", format!("creation_rules:\n  - kms: '{arn}'\n"));
    sandbox.write("app.yaml", PLAIN);
    ok(sandbox.run(&["encrypt", "-i", "app.yaml"], None));
    assert_eq!(
        field(&key_entries_of(&sandbox.read("app.yaml"), "kms")[0], "arn"),
        arn
    );
    decrypts(&sandbox);
}

#[test]
fn rotate_removes_and_adds_kms_keys_and_groups_add_takes_kms() {
    let Some(moto) = moto() else { return };
    let first = moto.create_key();
    let second = moto.create_key();
    let sandbox = sandbox(&moto);
    ok(sandbox.run(
        &[
            "encrypt",
            "-i",
            "--kms",
            &format!("{first},{second}"),
            "app.yaml",
        ],
        None,
    ));
    assert_eq!(key_entries_of(&sandbox.read("app.yaml"), "kms").len(), 2);

    ok(sandbox.run(&["rotate", "-i", "--rm-kms", &second, "app.yaml"], None));
    let entries = key_entries_of(&sandbox.read("app.yaml"), "kms");
    assert_eq!(entries.len(), 1);
    assert_eq!(field(&entries[0], "arn"), first);
    decrypts(&sandbox);

    ok(sandbox.run(&["rotate", "-i", "--add-kms", &second, "app.yaml"], None));
    let arns: Vec<String> = key_entries_of(&sandbox.read("app.yaml"), "kms")
        .iter()
        .map(|e| field(e, "arn"))
        .collect();
    assert_eq!(arns, [first.clone(), second.clone()]);
    decrypts(&sandbox);

    // groups add --kms: a second group, which needs a Shamir share of its own.
    let third = moto.create_key();
    ok(sandbox.run(
        &["groups", "add", "-i", "-f", "app.yaml", "--kms", &third],
        None,
    ));
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&sandbox.read("app.yaml")).unwrap();
    let groups = doc["sops"]["key_groups"].as_sequence().expect("key_groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1]["kms"][0]["arn"].as_str(), Some(third.as_str()));
    decrypts(&sandbox);
}

#[test]
fn an_arn_with_a_role_assumes_it_through_sts() {
    let Some(moto) = moto() else { return };
    let arn = moto.create_key();
    let sandbox = sandbox(&moto);
    ok(sandbox.run(
        &[
            "encrypt",
            "-i",
            "--kms",
            &format!("{arn}+{ROLE}"),
            "app.yaml",
        ],
        None,
    ));
    let text = sandbox.read("app.yaml");
    let entry = &key_entries_of(&text, "kms")[0];
    assert_eq!(field(entry, "arn"), arn);
    assert_eq!(field(entry, "role"), ROLE);
    decrypts(&sandbox);
}

#[test]
fn bad_arns_and_unreachable_endpoints_fail_cleanly() {
    let Some(moto) = moto() else { return };
    let mut sandbox = sandbox(&moto);
    let stderr = fails_with(
        sandbox.run(&["encrypt", "--kms", "not-an-arn", "app.yaml"], None),
        1,
    );
    assert!(stderr.contains("no valid ARN"), "{stderr}");

    // A key moto does not have.
    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    let stderr = fails_with(
        sandbox.run(&["encrypt", "--kms", missing, "app.yaml"], None),
        1,
    );
    assert!(stderr.contains(missing), "{stderr}");

    // Nothing listens: an error naming the key and saying why, for encrypt (1) and decrypt
    // (128, no key could open the file).
    let arn = moto.create_key();
    ok(sandbox.run(&["encrypt", "-i", "--kms", &arn, "app.yaml"], None));
    sandbox.env(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", closed_port()),
    );
    sandbox.write("new.yaml", PLAIN);
    let stderr = fails_with(
        sandbox.run(&["encrypt", "--kms", &arn, "new.yaml"], None),
        1,
    );
    assert!(stderr.contains(&arn), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains(&format!("kms {arn}: ")), "{stderr}");
    assert!(stderr.contains("AWS KMS is unreachable"), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(
        !stderr.contains("testing"),
        "no credentials in messages: {stderr}"
    );
}
