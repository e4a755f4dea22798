//! The command line as sops users drive it: flags, stdin, exit codes and messages.

mod common;

use common::*;

const PLAIN: &str =
    "db:\n  password: hunter2\n  hosts:\n    - a.internal\n    - b.internal\nport: 5432\n";

fn encrypted(sandbox: &Sandbox, recipient: &str) -> std::path::PathBuf {
    sandbox.write("app.yaml", PLAIN);
    let out = ok(sandbox.run(&["encrypt", "--age", recipient, "app.yaml"], None));
    sandbox.write("app.enc.yaml", out)
}

#[test]
fn encrypt_decrypt_in_place_and_extract() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write("app.yaml", PLAIN);
    ok(sandbox.run(&["encrypt", "-i", "--age", &recipient, "app.yaml"], None));
    let text = sandbox.read("app.yaml");
    assert!(!text.contains("hunter2") && text.contains("sops:"));
    assert_eq!(
        ok(sandbox.run(&["filestatus", "app.yaml"], None)),
        b"{\"encrypted\":true}\n"
    );
    ok(sandbox.run(&["decrypt", "-i", "app.yaml"], None));
    assert_eq!(sandbox.read("app.yaml"), PLAIN);
    assert_eq!(
        ok(sandbox.run(&["filestatus", "app.yaml"], None)),
        b"{\"encrypted\":false}\n"
    );

    let enc = encrypted(&sandbox, &recipient);
    let enc = enc.to_str().unwrap();
    assert_eq!(
        ok(sandbox.run(
            &["decrypt", "--extract", r#"["db"]["password"]"#, enc],
            None
        )),
        b"hunter2"
    );
    assert_eq!(
        ok(sandbox.run(
            &["decrypt", "--extract", r#"["db"]["hosts"][1]"#, enc],
            None
        )),
        b"b.internal"
    );
    let sub = String::from_utf8(ok(
        sandbox.run(&["decrypt", "--extract", r#"["db"]"#, enc], None)
    ))
    .unwrap();
    assert!(sub.contains("password: hunter2"), "{sub}");
    let json = ok(sandbox.run(&["decrypt", "--output-type", "json", enc], None));
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(value["db"]["password"], "hunter2");
    assert_eq!(value["port"], 5432);
}

#[test]
fn stdin_forms() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    // Encrypting stdin needs a file name for the format and the rules.
    let stderr = fails_with(
        sandbox.run(&["encrypt", "--age", &recipient], Some(PLAIN.as_bytes())),
        8,
    );
    assert!(stderr.contains("--filename-override"), "{stderr}");
    let enc = ok(sandbox.run(
        &[
            "encrypt",
            "--age",
            &recipient,
            "--filename-override",
            "x.yaml",
            "/dev/stdin",
        ],
        Some(PLAIN.as_bytes()),
    ));
    // Decrypting stdin: type from --input-type, output follows it.
    let out = ok(sandbox.run(
        &[
            "decrypt",
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
            "/dev/stdin",
        ],
        Some(&enc),
    ));
    assert_eq!(out, PLAIN.as_bytes());
    let out = ok(sandbox.run(&["decrypt", "--input-type", "yaml", "-"], Some(&enc)));
    assert_eq!(out, PLAIN.as_bytes());
    // dotenv through stdin, as in `cat x.env | veil encrypt --input-type dotenv ... /dev/stdin`
    let env = "DB_PASSWORD=hunter2\nDEBUG=false\n";
    let enc = ok(sandbox.run(
        &[
            "encrypt",
            "--input-type",
            "dotenv",
            "--filename-override",
            "x.env",
            "--age",
            &recipient,
            "/dev/stdin",
        ],
        Some(env.as_bytes()),
    ));
    let enc_text = String::from_utf8(enc.clone()).unwrap();
    assert!(
        enc_text.starts_with("DB_PASSWORD=ENC[") && enc_text.contains("sops_mac="),
        "{enc_text}"
    );
    assert_eq!(
        ok(sandbox.run(
            &["decrypt", "--input-type", "dotenv", "/dev/stdin"],
            Some(&enc)
        )),
        env.as_bytes()
    );
}

#[test]
fn legacy_flags() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write("app.yaml", PLAIN);
    let enc = ok(sandbox.run(&["-e", "--age", &recipient, "app.yaml"], None));
    sandbox.write("app.enc.yaml", &enc);
    assert_eq!(
        ok(sandbox.run(&["-d", "app.enc.yaml"], None)),
        PLAIN.as_bytes()
    );
    assert_eq!(
        ok(sandbox.run(
            &["--decrypt", "--extract", r#"["port"]"#, "app.enc.yaml"],
            None
        )),
        b"5432\n"
    );
    ok(sandbox.run(&["-d", "--output", "out.yaml", "app.enc.yaml"], None));
    assert_eq!(sandbox.read("out.yaml"), PLAIN);
}

#[test]
fn recipients_from_the_environment_and_config() {
    let mut sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write("app.yaml", PLAIN);
    sandbox.env("SOPS_AGE_RECIPIENTS", recipient.clone());
    let out = String::from_utf8(ok(sandbox.run(&["encrypt", "app.yaml"], None))).unwrap();
    assert!(out.contains(&recipient));

    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write(
        ".sops.yaml",
        format!("creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n    encrypted_regex: ^(password|token)$\n    age: {recipient}\n"),
    );
    sandbox.write("secrets/app.yaml", "user: app\npassword: hunter2\n");
    let out = String::from_utf8(ok(sandbox.run(&["encrypt", "secrets/app.yaml"], None))).unwrap();
    assert!(
        out.contains("user: app"),
        "encrypted_regex leaves other keys clear: {out}"
    );
    assert!(!out.contains("hunter2"));
    assert!(out.contains("encrypted_regex: ^(password|token)$"), "{out}");
    sandbox.write("other/app.yaml", "a: b\n");
    let stderr = fails_with(sandbox.run(&["encrypt", "other/app.yaml"], None), 1);
    assert!(stderr.contains("no creation rule matches"), "{stderr}");
}

#[test]
fn exit_codes_follow_sops() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    let enc = encrypted(&sandbox, &recipient);
    let enc = enc.to_str().unwrap();
    let r = recipient.as_str();
    fails_with(sandbox.run(&["decrypt", "missing.yaml"], None), 100);
    fails_with(
        sandbox.run(&["encrypt", "--age", r, "missing.yaml"], None),
        100,
    );
    fails_with(
        sandbox.run(&["decrypt", "-i", "--output", "x", enc], None),
        8,
    );
    fails_with(sandbox.run(&["decrypt", "-i"], Some(b"")), 8);
    fails_with(
        sandbox.run(
            &[
                "encrypt",
                "--age",
                r,
                "--unencrypted-suffix",
                "_x",
                "--encrypted-regex",
                "y",
                "app.yaml",
            ],
            None,
        ),
        8,
    );
    let stderr = fails_with(sandbox.run(&["encrypt", "--age", r, enc], None), 203);
    assert!(stderr.contains("already encrypted"), "{stderr}");
    sandbox.write("empty.yaml", "");
    fails_with(
        sandbox.run(&["encrypt", "--age", r, "empty.yaml"], None),
        92,
    );
    sandbox.write("broken.yaml", "a: [1, 2\n");
    let stderr = fails_with(
        sandbox.run(&["encrypt", "--age", r, "broken.yaml"], None),
        2,
    );
    assert!(
        stderr.contains("broken.yaml") && stderr.contains("line"),
        "{stderr}"
    );
    fails_with(
        sandbox.run(&["decrypt", "--extract", "db.password", enc], None),
        91,
    );
    fails_with(
        sandbox.run(&["decrypt", "--decryption-order", "age,pgp,age", enc], None),
        112,
    );
    let stderr = fails_with(
        sandbox.run(&["decrypt", "--extract", r#"["nope"]"#, enc], None),
        1,
    );
    assert!(stderr.contains("not found"), "{stderr}");
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 1);
    assert!(stderr.contains("sops metadata not found"), "{stderr}");
    let stderr = fails_with(sandbox.run(&["encrypt", "app.yaml"], None), 1);
    assert!(stderr.contains("no recipients"), "{stderr}");
    fails_with(sandbox.run(&[], None), 100);
}

#[test]
fn no_identity_gives_128_with_the_recipient_named() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    let enc = encrypted(&sandbox, &recipient);
    std::fs::remove_file(sandbox.home().join(".config/sops/age/keys.txt")).unwrap();
    let stderr = fails_with(sandbox.run(&["decrypt", enc.to_str().unwrap()], None), 128);
    assert!(stderr.contains(&recipient), "{stderr}");
}

#[test]
fn version_and_help() {
    let sandbox = Sandbox::new();
    let out = String::from_utf8(ok(sandbox.run(&["--version"], None))).unwrap();
    assert!(out.starts_with("veil "), "{out}");
    let help = String::from_utf8(ok(sandbox.run(&["--help"], None))).unwrap();
    for command in ["encrypt", "decrypt", "filestatus"] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn a_sops_symlink_behaves_as_sops() {
    let Some(vectors) = vectors() else { return };
    let Some(sandbox) = Sandbox::with_sops_pgp_key(&vectors) else {
        return;
    };
    let link = sandbox.dir.path().join("bin/sops");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_veil"), &link).unwrap();
    // Ansible's community.sops reads the version from the first line.
    let out = String::from_utf8(ok(sandbox
        .program(&link)
        .arg("--version")
        .output()
        .unwrap()))
    .unwrap();
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("sops 3."), "{first}");
    // helm-secrets' call
    let file = vectors.join("format.enc.yaml");
    let out = ok(sandbox
        .program(&link)
        .args(["--decrypt", "--input-type", "yaml", "--output-type", "yaml"])
        .arg(&file)
        .output()
        .unwrap());
    assert_eq!(out, b"foo: bar\n");
    // sops decrypt /dev/stdin
    let bytes = std::fs::read(&file).unwrap();
    let out = ok(run_with_stdin(
        sandbox
            .program(&link)
            .args(["decrypt", "--input-type", "yaml", "/dev/stdin"]),
        Some(&bytes),
    ));
    assert_eq!(out, b"foo: bar\n");
    let out = ok(sandbox
        .program(&link)
        .arg("filestatus")
        .arg(&file)
        .output()
        .unwrap());
    assert_eq!(out, b"{\"encrypted\":true}\n");
}
