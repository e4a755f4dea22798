//! Encrypting keeps the layout: every line that holds no value or comment stays byte-identical,
//! and decrypting gives back the input byte for byte.

mod common;

use common::*;

const FIXTURES: &[&str] = &[
    "k8s-secret.yaml",
    "helm-values.yaml",
    "multi-doc.yaml",
    "compose.env",
    "Cargo-style.toml",
];

/// Lines without a value or comment: blank lines, document markers, keys opening a nested
/// collection, TOML table headers.
fn is_structural(line: &str) -> bool {
    let t = line.trim();
    t.is_empty()
        || t == "---"
        || (t.ends_with(':') && !t.contains('#') && !t.starts_with('-'))
        || (t.starts_with('[') && t.ends_with(']') && !t.contains('='))
}

/// The lines of an encrypted file outside its metadata: the YAML `sops:` block of each document,
/// the TOML `[sops]` table (always last) and the dotenv `sops_` lines are left out.
fn body(encrypted: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in encrypted.lines() {
        if line == "sops:" || line == "[sops]" {
            skipping = true;
            continue;
        }
        if line.starts_with("sops_") {
            continue;
        }
        // A YAML document marker ends a `sops:` block; armored keys inside TOML's `[sops]`
        // start with dashes too, but never with a lone `---`.
        let document_marker = line == "---" || line.starts_with("--- ");
        if skipping && !document_marker {
            continue;
        }
        skipping = false;
        out.push(line);
    }
    out
}

#[test]
fn layout_survives_encryption_and_decryption_restores_bytes() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/layout");
    for name in FIXTURES {
        let input = std::fs::read_to_string(fixtures.join(name)).unwrap();
        sandbox.write(name, &input);
        let encrypted = String::from_utf8(ok(
            sandbox.run(&["encrypt", "--age", &recipient, name], None)
        ))
        .unwrap();
        let out_lines = body(&encrypted);
        // Structural lines survive, in order.
        let mut rest = out_lines.iter();
        for line in input.lines().filter(|l| is_structural(l)) {
            assert!(
                rest.any(|o| o == &line),
                "{name}: structural line {line:?} is missing or moved\n{encrypted}"
            );
        }
        // Every other output line is an input line, or carries ciphertext.
        for line in &out_lines {
            let kept = input.lines().any(|i| i == *line);
            let block_header =
                line.trim_end().ends_with(['|', '-', '+', '>']) && line.contains(':');
            assert!(
                kept || line.contains("ENC[") || block_header,
                "{name}: unexpected line {line:?}\n{encrypted}"
            );
        }
        // Values and comments are gone.
        for secret in [
            "c0rrect-h0rse",
            "sup3r$ecret",
            "p@ss=word!",
            "hunter2",
            "tok_live_123",
            "rotated quarterly",
            "rotate me",
        ] {
            assert!(
                !encrypted.contains(secret),
                "{name}: {secret} leaked\n{encrypted}"
            );
        }
        let enc_name = format!("enc-{name}");
        sandbox.write(&enc_name, &encrypted);
        let decrypted = String::from_utf8(ok(sandbox.run(&["decrypt", &enc_name], None))).unwrap();
        assert_eq!(
            decrypted, input,
            "{name}: decryption restores the input byte for byte"
        );
    }
}

#[test]
fn values_at_the_very_end_of_a_file_keep_their_value() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    // Files without a final newline: appending the sops block must not give the last value a
    // line break it did not have (sops would see a MAC mismatch). A block scalar there cannot
    // come back byte for byte (its value has no line break, so its indicator becomes `|-`, and an
    // unencrypted one makes veil write the document afresh), and the missing final newline comes
    // back; the values always survive.
    for (name, input, byte_for_byte) in [
        ("literal.yaml", "a: 1\nnote_unencrypted: |\n  text", false),
        ("folded.yaml", "a: 1\nnote_unencrypted: >\n  text", false),
        ("keep.yaml", "a: 1\nnote_unencrypted: |+\n  text", false),
        (
            "list.yaml",
            "a: 1\nitems_unencrypted:\n  - |\n    text",
            false,
        ),
        ("encrypted.yaml", "a: 1\nnote: |\n  text", false),
        (
            "with-newline.yaml",
            "a: 1\nnote_unencrypted: |\n  text\n",
            true,
        ),
        ("plain.yaml", "a: 1\nb: text", false),
    ] {
        sandbox.write(name, input);
        let encrypted = ok(sandbox.run(&["encrypt", "--age", &recipient, name], None));
        let enc_name = format!("enc-{name}");
        sandbox.write(&enc_name, &encrypted);
        let decrypted = String::from_utf8(ok(sandbox.run(&["decrypt", &enc_name], None))).unwrap();
        if byte_for_byte {
            assert_eq!(decrypted, input, "{name}");
        }
        let got: serde_json::Value = serde_json::from_slice(&ok(
            sandbox.run(&["decrypt", "--output-type", "json", &enc_name], None)
        ))
        .unwrap();
        let plain: serde_yaml_ng::Value = serde_yaml_ng::from_str(input).unwrap();
        assert_eq!(
            got,
            serde_json::to_value(plain).unwrap(),
            "{name}: the values survive"
        );
    }
}
