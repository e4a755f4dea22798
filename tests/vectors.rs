//! Real files written by sops open in veil, with the values sops printed for them; veil
//! re-encrypts what it opened and opens it again.

mod common;

use common::*;

/// (file, expected output in `expected/`, input type when the extension does not say)
const OPENS: &[(&str, &str)] = &[
    (
        "all_in_one_secret.enc.json",
        "all_in_one_secret.enc.json.json",
    ),
    ("comments.enc.yaml", "comments.enc.yaml.json"),
    (
        "comments_unencrypted_comments.yaml",
        "comments_unencrypted_comments.yaml.json",
    ),
    ("example.ini", "example.ini.json"),
    ("example.json", "example.json.json"),
    ("example.yaml", "example.yaml.json"),
    ("format-2.enc.ini", "format-2.enc.ini.json"),
    ("format.enc.env", "format.enc.env.json"),
    ("format.enc.ini", "format.enc.ini.json"),
    ("format.enc.json", "format.enc.json.json"),
    ("format.enc.yaml", "format.enc.yaml.json"),
    ("multiple_keys.yaml", "multiple_keys.yaml.json"),
    (
        "per_file_static_github.json",
        "per_file_static_github.json.json",
    ),
];

fn expected(vectors: &std::path::Path, name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(vectors.join("expected").join(name)).unwrap();
    normalize(serde_json::from_str(&text).unwrap())
}

fn decrypt_json(sandbox: &Sandbox, file: &std::path::Path) -> serde_json::Value {
    let out = ok(sandbox.run(
        &["decrypt", "--output-type", "json", file.to_str().unwrap()],
        None,
    ));
    normalize(
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display())),
    )
}

#[test]
fn every_sops_vector_decrypts_to_what_sops_printed() {
    let Some(vectors) = vectors() else { return };
    let Some(sandbox) = Sandbox::with_sops_pgp_key(&vectors) else {
        return;
    };
    for (file, want) in OPENS {
        let got = decrypt_json(&sandbox, &vectors.join(file));
        assert_eq!(got, expected(&vectors, want), "{file}");
    }
}

#[test]
fn the_binary_vector_decrypts_byte_for_byte() {
    let Some(vectors) = vectors() else { return };
    let Some(sandbox) = Sandbox::with_sops_pgp_key(&vectors) else {
        return;
    };
    let out = ok(sandbox.run(
        &["decrypt", vectors.join("example.txt").to_str().unwrap()],
        None,
    ));
    assert_eq!(
        out,
        std::fs::read(vectors.join("expected/example.txt.plain")).unwrap()
    );
}

#[test]
fn a_file_without_mac_fails_with_51_unless_ignored() {
    let Some(vectors) = vectors() else { return };
    let Some(sandbox) = Sandbox::with_sops_pgp_key(&vectors) else {
        return;
    };
    let file = vectors.join("no_mac.yaml");
    let stderr = fails_with(sandbox.run(&["decrypt", file.to_str().unwrap()], None), 51);
    assert!(
        stderr.contains("MAC mismatch") && stderr.contains("no MAC"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no_mac.yaml"),
        "the message names the file: {stderr}"
    );
    ok(sandbox.run(&["decrypt", "--ignore-mac", file.to_str().unwrap()], None));
    // sops' legacy form too
    ok(sandbox.run(&["-d", "--ignore-mac", file.to_str().unwrap()], None));
}

#[test]
fn multiple_keys_opens_with_either_pgp_key() {
    let Some(vectors) = vectors() else { return };
    let Some(sandbox) = Sandbox::with_sops_pgp_key(&vectors) else {
        return;
    };
    let file = vectors.join("multiple_keys.yaml");
    for fp in [PGP_FP, PGP_FP_2] {
        let other = if fp == PGP_FP { PGP_FP_2 } else { PGP_FP };
        // Remove the other secret key so only `fp` can open the file.
        let scratch = Sandbox::with_sops_pgp_key(&vectors).unwrap();
        let status = scratch
            .program("gpg")
            .args(["--batch", "--yes", "--delete-secret-keys", other])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let got = decrypt_json(&scratch, &file);
        assert_eq!(
            got,
            expected(&vectors, "multiple_keys.yaml.json"),
            "with {fp} only"
        );
    }
    drop(sandbox);
}

#[test]
fn without_the_key_decryption_fails_with_128_and_names_the_keys() {
    let Some(vectors) = vectors() else { return };
    let sandbox = Sandbox::new();
    let file = vectors.join("format.enc.yaml");
    let stderr = fails_with(sandbox.run(&["decrypt", file.to_str().unwrap()], None), 128);
    assert!(stderr.contains(PGP_FP), "{stderr}");
}

#[test]
fn what_veil_opened_it_re_encrypts_and_opens_again() {
    let Some(vectors) = vectors() else { return };
    let Some(sandbox) = Sandbox::with_sops_pgp_key(&vectors) else {
        return;
    };
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    for (file, want) in OPENS {
        let plain = ok(sandbox.run(&["decrypt", vectors.join(file).to_str().unwrap()], None));
        let ext = std::path::Path::new(file)
            .extension()
            .unwrap()
            .to_str()
            .unwrap();
        let plain_name = format!("plain-{file}");
        sandbox.write(&plain_name, &plain);
        let enc = ok(sandbox.run(&["encrypt", "--age", &recipient, &plain_name], None));
        let enc_name = format!("again.{ext}");
        let enc_path = sandbox.write(&enc_name, &enc);
        let got = decrypt_json(&sandbox, &enc_path);
        assert_eq!(
            got,
            expected(&vectors, want),
            "{file} after a veil round trip"
        );
    }
}
