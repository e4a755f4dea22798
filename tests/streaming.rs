//! Large files through the command line: the streaming passes (and the mapped input they read)
//! against the tree path, which `VEIL_STREAM=0` selects. Either path must open what the other
//! wrote, give the same plaintext, and fail the same way on the same bad input.

mod common;

use common::*;

/// A YAML file of about `values` values with comments, lists, quoting and empty values: over
/// a MiB for 40k values, so the input is mapped.
fn large_yaml(values: usize) -> String {
    let mut text = String::from("# services\n");
    for service in 0..values / 20 {
        text.push_str(&format!("service_{service}:\n  # owner: team {service}\n"));
        for key in 0..16 {
            match key % 4 {
                0 => text.push_str(&format!("  key_{key}: {}\n", service * 31 + key)),
                1 => text.push_str(&format!("  key_{key}: \"quoted \\\"{service}\\\" ü\"\n")),
                2 => text.push_str(&format!("  key_{key}: 'single {service}'\n")),
                _ => text.push_str(&format!(
                    "  key_{key}: postgres://user:{:x}@db-{service}.internal:5432/app # inline\n",
                    service * 7919 + key
                )),
            }
        }
        text.push_str("  hosts:\n    - a.internal\n    # spare\n    - b.internal\n");
        text.push_str("  empty: \"\"\n  nothing:\n  enabled: true\n  ratio: 0.5\n");
    }
    text
}

/// The same shape as JSON.
fn large_json(values: usize) -> String {
    let mut members = Vec::new();
    for service in 0..values / 20 {
        let mut inner = Vec::new();
        for key in 0..16 {
            inner.push(match key % 4 {
                0 => format!("\"key_{key}\": {}", service * 31 + key),
                1 => format!("\"key_{key}\": \"quoted \\\"{service}\\\" \\u00fc\""),
                2 => format!("\"key_{key}\": {}.25", service),
                _ => format!(
                    "\"key_{key}\": \"postgres://user:{:x}@db-{service}.internal:5432/app\"",
                    service * 7919 + key
                ),
            });
        }
        inner.push("\"hosts\": [\"a\", \"b\", [], {}]".into());
        inner.push("\"empty\": \"\", \"nothing\": null, \"enabled\": false".into());
        members.push(format!("\"service_{service}\": {{{}}}", inner.join(", ")));
    }
    format!("{{{}}}\n", members.join(",\n"))
}

/// The number of lines before the `sops` metadata.
fn body_lines(encrypted: &[u8]) -> usize {
    let text = String::from_utf8_lossy(encrypted);
    let end = text
        .find("\nsops:\n")
        .or_else(|| text.find("\"sops\": {"))
        .expect("sops metadata");
    text[..end].lines().count()
}

fn tree_path(sandbox: &Sandbox, args: &[&str]) -> Vec<u8> {
    ok(sandbox
        .veil()
        .env("VEIL_STREAM", "0")
        .args(args)
        .output()
        .expect("veil runs"))
}

#[test]
fn either_path_opens_what_the_other_wrote() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    for (name, plain) in [
        ("big.yaml", large_yaml(40_000)),
        ("big.json", large_json(40_000)),
    ] {
        assert!(
            plain.len() > 1 << 20,
            "{name} must be large enough to be mapped"
        );
        sandbox.write(name, &plain);
        let streamed = ok(sandbox.run(&["encrypt", "--age", &recipient, name], None));
        let treed = tree_path(&sandbox, &["encrypt", "--age", &recipient, name]);
        let streamed_file = sandbox.write(&format!("s.{name}"), &streamed);
        let treed_file = sandbox.write(&format!("t.{name}"), &treed);
        let (streamed_file, treed_file) = (
            streamed_file.to_str().unwrap(),
            treed_file.to_str().unwrap(),
        );
        assert!(!String::from_utf8_lossy(&streamed).contains("postgres://"));
        // Same layout, other IVs: the bodies have the same lines (the age stanzas in the
        // metadata vary in length from run to run).
        assert_eq!(body_lines(&streamed), body_lines(&treed), "{name}");
        let expected = tree_path(&sandbox, &["decrypt", treed_file]);
        for file in [streamed_file, treed_file] {
            assert_eq!(
                ok(sandbox.run(&["decrypt", file], None)),
                expected,
                "{name} {file}"
            );
            assert_eq!(
                tree_path(&sandbox, &["decrypt", file]),
                expected,
                "{name} {file}"
            );
        }
        if name.ends_with(".yaml") {
            // The layout is kept: decrypting gives back the input byte for byte.
            assert_eq!(String::from_utf8(expected).unwrap(), plain);
        }
    }
}

#[test]
fn in_place_round_trip_of_a_mapped_file() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    let plain = large_yaml(40_000);
    sandbox.write("app.yaml", &plain);
    ok(sandbox.run(&["encrypt", "-i", "--age", &recipient, "app.yaml"], None));
    let encrypted = sandbox.read("app.yaml");
    assert!(encrypted.contains("ENC[AES256_GCM,") && encrypted.contains("\nsops:\n"));
    // Encrypting it again is refused, as sops refuses it.
    fails_with(
        sandbox.run(&["encrypt", "-i", "--age", &recipient, "app.yaml"], None),
        203,
    );
    assert_eq!(sandbox.read("app.yaml"), encrypted);
    ok(sandbox.run(&["decrypt", "-i", "app.yaml"], None));
    assert_eq!(sandbox.read("app.yaml"), plain);
}

#[test]
fn bad_large_files_fail_as_on_the_tree_path() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write("big.json", large_json(40_000));
    let encrypted = String::from_utf8(ok(
        sandbox.run(&["encrypt", "--age", &recipient, "big.json"], None)
    ))
    .unwrap();
    // A value swapped with another one: both paths fail to open it (sops' code 25) ...
    let first = encrypted.find("ENC[").unwrap();
    let first_end = first + encrypted[first..].find(']').unwrap() + 1;
    let second = first_end + encrypted[first_end..].find("ENC[").unwrap();
    let second_end = second + encrypted[second..].find(']').unwrap() + 1;
    let swapped = format!(
        "{}{}{}{}{}",
        &encrypted[..first],
        &encrypted[second..second_end],
        &encrypted[first_end..second],
        &encrypted[first..first_end],
        &encrypted[second_end..]
    );
    sandbox.write("swapped.json", &swapped);
    let streamed = fails_with(sandbox.run(&["decrypt", "swapped.json"], None), 25);
    let treed = fails_with(
        sandbox
            .veil()
            .env("VEIL_STREAM", "0")
            .args(["decrypt", "swapped.json"])
            .output()
            .unwrap(),
        25,
    );
    assert_eq!(streamed, treed);
    assert!(
        streamed.contains("[\"service_0\"][\"key_0\"]"),
        "{streamed}"
    );
    // ... and a value removed fails the MAC (51), unless --ignore-mac.
    let removed: String = encrypted
        .split_inclusive('\n')
        .filter(|line| !line.contains("\"key_1\": \"ENC["))
        .collect();
    sandbox.write("removed.json", &removed);
    fails_with(sandbox.run(&["decrypt", "removed.json"], None), 51);
    ok(sandbox.run(&["decrypt", "--ignore-mac", "removed.json"], None));
    // A broken file is reported by line and column, on either path.
    let json = large_json(40_000);
    let broken = format!("{}\n{{", &json[..json.len() - 10]);
    sandbox.write("broken.json", broken);
    let message = fails_with(
        sandbox.run(&["encrypt", "--age", &recipient, "broken.json"], None),
        2,
    );
    assert!(message.contains("line"), "{message}");
}

#[test]
fn a_file_broken_before_its_metadata_is_reported_as_broken() {
    // The passes read the metadata near the end of the file and seek the key before reading
    // the rest; a file broken elsewhere must still be reported as broken, as the tree path
    // (and sops, which loads the file first) reports it, whether the key is found or not.
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    for (name, plain, from, to) in [
        (
            "big.json",
            large_json(40_000),
            "\"key_0\": \"ENC[",
            "\"key_0\": [\"ENC[",
        ),
        (
            "big.yaml",
            large_yaml(40_000),
            "key_0: ENC[",
            "key_0: [ENC[",
        ),
    ] {
        sandbox.write(name, plain);
        let encrypted = String::from_utf8(ok(
            sandbox.run(&["encrypt", "--age", &recipient, name], None)
        ))
        .unwrap();
        let middle = encrypted.len() / 2;
        let at = middle + encrypted[middle..].find(from).expect("a value to break");
        let broken = format!(
            "{}{}{}",
            &encrypted[..at],
            to,
            &encrypted[at + from.len()..]
        );
        let file = format!("broken.{name}");
        sandbox.write(&file, &broken);
        let with_key = fails_with(sandbox.run(&["decrypt", &file], None), 1);
        let without_key = fails_with(
            sandbox
                .veil()
                .env("XDG_CONFIG_HOME", sandbox.path("nowhere"))
                .args(["decrypt", &file])
                .output()
                .unwrap(),
            1,
        );
        for stderr in [&with_key, &without_key] {
            assert!(
                stderr.contains(&file) && stderr.contains("line"),
                "{name}: {stderr}"
            );
        }
        // The same file with its key unavailable, unbroken: the key is what is missing.
        let whole = format!("whole.{name}");
        sandbox.write(&whole, &encrypted);
        fails_with(
            sandbox
                .veil()
                .env("XDG_CONFIG_HOME", sandbox.path("nowhere"))
                .args(["decrypt", &whole])
                .output()
                .unwrap(),
            128,
        );
    }
}
