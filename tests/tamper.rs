//! Bad input: every kind of damage gets a clear error naming the file and the key path, with
//! sops' exit code, and never shows a secret.

mod common;

use common::*;

const PLAIN: &str = "db:\n  user: app\n  password: hunter2\napi_token: s3cr3t-t0ken\n";
const SECRETS: [&str; 2] = ["hunter2", "s3cr3t-t0ken"];

struct Case {
    name: &'static str,
    damage: fn(&str) -> String,
    code: i32,
    /// Words the message must contain (besides the file name).
    says: &'static [&'static str],
}

fn value_line(text: &str, key: &str) -> String {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}:")))
        .unwrap()
        .to_string()
}

fn cipher_of(text: &str, key: &str) -> String {
    let line = value_line(text, key);
    line[line.find("ENC[").unwrap()..].to_string()
}

const CASES: &[Case] = &[
    Case {
        name: "truncated ENC[",
        damage: |t| t.replace(&cipher_of(t, "password"), &cipher_of(t, "password")[..30]),
        code: 25,
        says: &["[\"db\"][\"password\"]", "malformed"],
    },
    Case {
        name: "bad base64",
        damage: |t| {
            let c = cipher_of(t, "password");
            t.replace(&c, &c.replacen("data:", "data:!!", 1))
        },
        code: 25,
        says: &["[\"db\"][\"password\"]", "base64"],
    },
    Case {
        name: "unknown type",
        damage: |t| {
            let c = cipher_of(t, "password");
            t.replace(&c, &c.replace("type:str", "type:blob"))
        },
        code: 25,
        says: &["[\"db\"][\"password\"]"],
    },
    Case {
        name: "value moved to another key",
        damage: |t| {
            let (user, password) = (cipher_of(t, "user"), cipher_of(t, "password"));
            t.replace(&user, "@USER@")
                .replace(&password, &user)
                .replace("@USER@", &password)
        },
        code: 25,
        says: &["[\"db\"]", "moved from another key"],
    },
    Case {
        name: "value edited by hand",
        damage: |t| {
            let c = cipher_of(t, "api_token");
            let data_at = c.find("data:").unwrap() + 5;
            let mut edited = c.clone();
            let flipped = if &c[data_at..data_at + 1] == "A" {
                "B"
            } else {
                "A"
            };
            edited.replace_range(data_at..data_at + 1, flipped);
            t.replace(&c, &edited)
        },
        code: 25,
        says: &["[\"api_token\"]", "authentication failed"],
    },
    Case {
        name: "value removed",
        damage: |t| {
            t.lines()
                .filter(|l| !l.trim_start().starts_with("api_token:"))
                .map(|l| format!("{l}\n"))
                .collect()
        },
        code: 51,
        says: &["MAC mismatch"],
    },
    Case {
        name: "plain value where ciphertext belongs",
        damage: |t| t.replace(&cipher_of(t, "user"), "mallory"),
        code: 25,
        says: &["[\"db\"][\"user\"]", "not encrypted"],
    },
    Case {
        name: "sops block missing",
        damage: |t| t[..t.find("sops:").unwrap()].to_string(),
        code: 1,
        says: &["sops metadata not found"],
    },
    Case {
        name: "mac field edited",
        damage: |t| {
            let c = cipher_of(t, "mac");
            t.replace(&c, &c.replacen("data:", "data:AAAA", 1))
        },
        code: 51,
        says: &["MAC"],
    },
    Case {
        name: "lastmodified changed",
        damage: |t| {
            let line = value_line(t, "lastmodified");
            t.replace(&line, "    lastmodified: \"2001-01-01T00:00:00Z\"")
        },
        code: 51,
        says: &["MAC"],
    },
    Case {
        name: "version not semver",
        damage: |t| {
            let line = value_line(t, "version");
            t.replace(&line, "    version: banana")
        },
        code: 1,
        says: &["version", "banana"],
    },
    Case {
        name: "broken YAML",
        damage: |t| t.replacen("db:", "db: [", 1),
        code: 1,
        says: &["line"],
    },
];

#[test]
fn every_kind_of_damage_is_reported_clearly() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write("app.yaml", PLAIN);
    let encrypted = String::from_utf8(ok(
        sandbox.run(&["encrypt", "--age", &recipient, "app.yaml"], None)
    ))
    .unwrap();
    for case in CASES {
        let damaged = (case.damage)(&encrypted);
        assert_ne!(
            damaged, encrypted,
            "{}: the damage changed nothing",
            case.name
        );
        sandbox.write("damaged.yaml", &damaged);
        let stderr = fails_with(sandbox.run(&["decrypt", "damaged.yaml"], None), case.code);
        assert!(
            stderr.contains("damaged.yaml"),
            "{}: names the file: {stderr}",
            case.name
        );
        for word in case.says {
            assert!(
                stderr.contains(word),
                "{}: says {word:?}: {stderr}",
                case.name
            );
        }
        for secret in SECRETS {
            assert!(
                !stderr.contains(secret),
                "{}: leaks a secret: {stderr}",
                case.name
            );
        }
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
    }
}

#[test]
fn a_failed_in_place_decrypt_leaves_the_file_untouched() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write("app.yaml", PLAIN);
    let encrypted = String::from_utf8(ok(
        sandbox.run(&["encrypt", "--age", &recipient, "app.yaml"], None)
    ))
    .unwrap();
    let damaged = encrypted.replace(&cipher_of(&encrypted, "user"), "mallory");
    sandbox.write("app.enc.yaml", &damaged);
    fails_with(sandbox.run(&["decrypt", "-i", "app.enc.yaml"], None), 25);
    assert_eq!(sandbox.read("app.enc.yaml"), damaged);
    let leftovers: Vec<_> = std::fs::read_dir(sandbox.work())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".veil-"))
        .collect();
    assert!(leftovers.is_empty(), "no temp file left behind");
}

#[test]
fn in_place_keeps_the_file_mode() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    let path = sandbox.write("app.yaml", PLAIN);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    ok(sandbox.run(&["encrypt", "-i", "--age", &recipient, "app.yaml"], None));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn yaml_keys_that_are_not_strings_are_refused_as_sops_does() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    // go-yaml reads these keys as int, bool, null, time and float; sops refuses such trees
    // ("Tree contains a non-string key"), so a file veil wrote with them would not open in sops.
    for key in ["1", "true", "~", "2024-01-01", "1.5"] {
        sandbox.write("keys.yaml", format!("db:\n  {key}: hunter2\n"));
        let stderr = fails_with(
            sandbox.run(&["encrypt", "--age", &recipient, "keys.yaml"], None),
            23,
        );
        assert!(
            stderr.contains("keys.yaml") && stderr.contains("db"),
            "{key}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    // Quoted, they are strings, and fine.
    sandbox.write("keys.yaml", "db:\n  \"1\": hunter2\n");
    ok(sandbox.run(&["encrypt", "--age", &recipient, "keys.yaml"], None));
}
