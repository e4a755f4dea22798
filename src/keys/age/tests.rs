//! age wrapping against the real `age` CLI, and identity gathering from every source.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use age::secrecy::ExposeSecret;

use super::*;

/// A fresh X25519 key pair: (secret identity line, recipient).
fn key_pair() -> (String, String) {
    let identity = age::x25519::Identity::generate();
    (
        identity.to_string().expose_secret().to_string(),
        identity.to_public().to_string(),
    )
}

/// Identities from exactly these variables, with no home and no config directory unless given.
fn identities(vars: &[(&str, String)], home: Option<&Path>) -> AgeIdentities {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let config_dir = home.map(|h| h.join("no-config"));
    AgeIdentities::from_env(
        move |name| vars.get(name).cloned(),
        home.map(Path::to_path_buf),
        config_dir,
    )
}

fn wrap(recipient: &str, part: &[u8]) -> KeyEntry {
    AgeRecipient::parse(recipient)
        .expect("recipient")
        .wrap(&KeyPart::new(part.to_vec()))
        .expect("wrap")
}

fn open(identities: &AgeIdentities, entry: &KeyEntry) -> Result<Vec<u8>, KeyError> {
    identities
        .unwrap(entry)
        .expect("age entries are claimed")
        .map(|part| part.as_bytes().to_vec())
}

fn have(program: &str) -> bool {
    let found = Command::new(program).arg("--help").output().is_ok();
    if !found {
        println!("SKIPPED: {program} is not installed");
    }
    found
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn parses_recipients_and_rejects_bad_ones() {
    let (_, x25519) = key_pair();
    let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN";
    let good = [
        (format!("  {x25519}\n"), x25519.clone()),
        (ssh.to_string(), ssh.to_string()),
        (format!("{ssh} alice@host"), format!("{ssh} alice@host")),
    ];
    for (input, stored) in good {
        let recipient = AgeRecipient::parse(&input).expect(&input);
        assert_eq!(recipient.name(), stored);
    }

    let bad = [
        ("", "unknown recipient type"),
        ("pgp:FBC7B9E2", "unknown recipient type"),
        ("age1notbech32", "not a valid age recipient"),
        ("age1yubikey1notbech32", "not a valid age plugin recipient"),
        ("age1pq1qqqq", "post-quantum"),
        ("ssh-ed25519 AAAA", "not a usable SSH public key"),
        (
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
            "not a usable SSH public key",
        ),
    ];
    for (input, reason) in bad {
        let err = AgeRecipient::parse(input).err().expect(input);
        assert_eq!(err.name, input.trim(), "{input}");
        assert!(err.reason.contains(reason), "{input}: {err}");
    }

    // An identity pasted as a recipient is refused without echoing it.
    let (secret, _) = key_pair();
    let err = AgeRecipient::parse(&secret).err().expect("identity");
    assert!(!err.to_string().contains(&secret[16..]), "{err}");
    assert!(err.reason.contains("private key"), "{err}");
}

#[test]
fn wrap_writes_the_armor_age_and_sops_write() {
    let (_, recipient) = key_pair();
    let KeyEntry::Age {
        recipient: stored,
        enc,
    } = wrap(&format!(" {recipient} "), &[9; 32])
    else {
        panic!("not an age entry")
    };
    assert_eq!(stored, recipient);
    assert!(
        enc.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"),
        "{enc}"
    );
    assert!(
        enc.ends_with("\n-----END AGE ENCRYPTED FILE-----\n"),
        "{enc}"
    );
    let body: Vec<&str> = enc.lines().skip(1).collect();
    let body = &body[..body.len() - 1];
    assert!(
        body[..body.len() - 1].iter().all(|l| l.len() == 64),
        "{enc}"
    );
    assert!(body.last().is_some_and(|l| l.len() <= 64), "{enc}");
}

#[test]
fn interoperates_with_the_age_cli() {
    if !have("age") || !have("age-keygen") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("key.txt");
    let made = Command::new("age-keygen")
        .arg("-o")
        .arg(&key_file)
        .output()
        .expect("age-keygen");
    assert!(made.status.success());
    let keys = std::fs::read_to_string(&key_file).expect("key file");
    let recipient = keys
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key comment")
        .to_string();
    let part: Vec<u8> = (0u8..33).collect();

    // veil wraps, age decrypts.
    let KeyEntry::Age { enc, .. } = wrap(&recipient, &part) else {
        panic!("not an age entry")
    };
    let enc_file = write(dir.path(), "part.age", &enc);
    let decrypted = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key_file)
        .arg(&enc_file)
        .output()
        .expect("age -d");
    assert!(decrypted.status.success(), "age -d failed");
    assert_eq!(decrypted.stdout, part);

    // age encrypts, veil unwraps: as written, CRLF, without the final newline, indented.
    let plain_file = dir.path().join("part.bin");
    std::fs::write(&plain_file, &part).expect("write part");
    let encrypted = Command::new("age")
        .args(["-a", "-r", &recipient])
        .arg(&plain_file)
        .output()
        .expect("age -a -r");
    assert!(encrypted.status.success());
    let armored = String::from_utf8(encrypted.stdout).expect("armor is text");
    let identities = identities(
        &[("SOPS_AGE_KEY_FILE", key_file.display().to_string())],
        None,
    );
    let variants = [
        armored.clone(),
        armored.replace('\n', "\r\n"),
        armored.trim_end().to_string(),
        armored.lines().map(|l| format!("    {l}\n")).collect(),
    ];
    for enc in variants {
        let entry = KeyEntry::Age {
            recipient: recipient.clone(),
            enc,
        };
        assert_eq!(open(&identities, &entry).expect("unwrap"), part);
    }
}

#[test]
fn gathers_identities_from_every_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (secret, recipient) = key_pair();
    let (other_secret, _) = key_pair();
    let part = [5u8; 32];
    let entry = wrap(&recipient, &part);
    let key_file = write(
        dir.path(),
        "keys.txt",
        &format!("# created: today\n\n{other_secret}\n{secret}\n"),
    );

    // SOPS_AGE_KEY_CMD must be told which recipient is wanted.
    let script = write(
        dir.path(),
        "key-cmd.sh",
        &format!(
            "#!/bin/sh\n[ \"$SOPS_AGE_RECIPIENT\" = \"{recipient}\" ] || exit 3\ncat '{}'\n",
            key_file.display()
        ),
    );
    let config_home = dir.path().join("xdg");
    std::fs::create_dir_all(config_home.join("sops/age")).expect("mkdir");
    std::fs::copy(&key_file, config_home.join("sops/age/keys.txt")).expect("copy");

    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "SOPS_AGE_KEY, space separated",
            vec![("SOPS_AGE_KEY", format!("{other_secret} {secret}"))],
        ),
        (
            "SOPS_AGE_KEY, key file text",
            vec![("SOPS_AGE_KEY", std::fs::read_to_string(&key_file).unwrap())],
        ),
        (
            "SOPS_AGE_KEY_FILE",
            vec![("SOPS_AGE_KEY_FILE", key_file.display().to_string())],
        ),
        (
            "SOPS_AGE_KEY_CMD",
            vec![(
                "SOPS_AGE_KEY_CMD",
                format!("sh '{}' ignored-arg", script.display()),
            )],
        ),
        (
            "XDG_CONFIG_HOME default file",
            vec![("XDG_CONFIG_HOME", config_home.display().to_string())],
        ),
    ];
    for (source, vars) in cases {
        let found = AgeIdentities::from_env(
            |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            },
            None,
            None,
        );
        assert_eq!(open(&found, &entry).expect(source), part, "{source}");
    }

    // The default directory also comes from the explicit config_dir, then from ~/.config.
    let with_config_dir = AgeIdentities::from_env(|_| None, None, Some(config_home.clone()));
    assert_eq!(open(&with_config_dir, &entry).expect("config_dir"), part);
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config")).expect("mkdir");
    std::fs::rename(config_home.join("sops"), home.join(".config/sops")).expect("move");
    let from_home = AgeIdentities::from_env(|_| None, Some(home), None);
    assert_eq!(open(&from_home, &entry).expect("~/.config"), part);

    // The command sees the entry's recipient: another recipient makes it fail, by name.
    let (_, stranger) = key_pair();
    let found = identities(
        &[("SOPS_AGE_KEY_CMD", format!("sh '{}'", script.display()))],
        None,
    );
    let err = open(&found, &wrap(&stranger, &part)).expect_err("fails");
    assert!(err.reason.contains("SOPS_AGE_KEY_CMD"), "{err}");
    assert!(err.reason.contains("failed"), "{err}");
}

#[test]
fn opens_with_ssh_keys() {
    if !have("ssh-keygen") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
    let key = home.join(".ssh/id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@veil", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(made.status.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub key");
    let part = [3u8; 33];
    let entry = wrap(&public, &part);
    let KeyEntry::Age { recipient, .. } = &entry else {
        panic!("not an age entry")
    };
    assert_eq!(recipient, public.trim());

    let from_home = identities(&[], Some(&home));
    assert_eq!(open(&from_home, &entry).expect("~/.ssh/id_ed25519"), part);

    let moved = dir.path().join("elsewhere");
    std::fs::rename(&key, &moved).expect("move key");
    let from_var = identities(
        &[("SOPS_AGE_SSH_PRIVATE_KEY_FILE", moved.display().to_string())],
        Some(&home),
    );
    assert_eq!(open(&from_var, &entry).expect("ssh key file"), part);
    let from_cmd = identities(
        &[(
            "SOPS_AGE_SSH_PRIVATE_KEY_CMD",
            format!("cat '{}'", moved.display()),
        )],
        None,
    );
    assert_eq!(open(&from_cmd, &entry).expect("ssh key command"), part);

    // A passphrase-protected key needs a terminal to ask for the passphrase.
    if !terminal_available() {
        let locked = dir.path().join("locked");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
            .arg(&locked)
            .output()
            .expect("ssh-keygen");
        assert!(made.status.success(), "ssh-keygen failed");
        let public = std::fs::read_to_string(locked.with_extension("pub")).expect("pub key");
        let found = identities(
            &[(
                "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
                locked.display().to_string(),
            )],
            None,
        );
        let err = open(&found, &wrap(&public, &part)).expect_err("no terminal");
        assert!(
            err.reason
                .contains("passphrase-protected SSH key needs a terminal"),
            "{err}"
        );
    }
}

#[test]
fn failures_say_why_without_key_material() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (secret, recipient) = key_pair();
    let (other_secret, _) = key_pair();
    let entry = wrap(&recipient, &[1; 32]);
    // Another last character breaks the bech32 checksum (the same one would not).
    let last = other_secret.chars().last().unwrap_or('Q');
    let replacement = if last == 'Q' { 'P' } else { 'Q' };
    let broken_line = format!("{}{replacement}", &other_secret[..other_secret.len() - 1]);
    let broken_file = write(
        dir.path(),
        "broken.txt",
        &format!("# comment\n{broken_line}\nnot-a-key-{secret}\n"),
    );
    let passphrase_file = write(
        dir.path(),
        "protected.txt",
        "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n",
    );
    let missing = dir.path().join("missing.txt");

    type Case<'a> = (Vec<(&'a str, String)>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            vec![],
            vec![
                "no age identities found".into(),
                "SOPS_AGE_KEY (unset)".into(),
                "SOPS_AGE_KEY_FILE (unset)".into(),
                "SOPS_AGE_KEY_CMD (unset)".into(),
            ],
        ),
        (
            vec![("SOPS_AGE_KEY", other_secret.clone())],
            vec![
                "no age identity matches this recipient (tried 1 identity from: SOPS_AGE_KEY)"
                    .into(),
            ],
        ),
        (
            vec![("SOPS_AGE_KEY_FILE", broken_file.display().to_string())],
            vec![
                format!(
                    "SOPS_AGE_KEY_FILE ({}): line 2: not a valid age secret key",
                    broken_file.display()
                ),
                "line 3: not an age identity".into(),
            ],
        ),
        (
            vec![("SOPS_AGE_KEY_FILE", missing.display().to_string())],
            vec![format!(
                "SOPS_AGE_KEY_FILE ({}): cannot read",
                missing.display()
            )],
        ),
        (
            vec![("SOPS_AGE_KEY_CMD", "false".into())],
            vec!["SOPS_AGE_KEY_CMD: false failed".into()],
        ),
        (
            vec![("SOPS_AGE_KEY_CMD", "'unbalanced".into())],
            vec!["SOPS_AGE_KEY_CMD: cannot split the command line".into()],
        ),
        (
            vec![("SOPS_AGE_KEY_CMD", "/nonexistent/veil-key-cmd".into())],
            vec!["SOPS_AGE_KEY_CMD: cannot run /nonexistent/veil-key-cmd".into()],
        ),
    ];
    for (vars, expected) in cases {
        let found = identities(&vars, None);
        let err = open(&found, &entry).expect_err("must fail");
        let text = err.to_string();
        assert_eq!(err.name, recipient);
        for part in &expected {
            assert!(text.contains(part.as_str()), "missing {part:?} in {text}");
        }
        for key in [&secret, &other_secret, &broken_line] {
            assert!(!text.contains(&key[16..]), "key material in {text}");
        }
    }

    if !terminal_available() {
        let found = identities(
            &[("SOPS_AGE_KEY_FILE", passphrase_file.display().to_string())],
            None,
        );
        let err = open(&found, &entry).expect_err("needs a terminal");
        assert!(err.reason.contains("needs a terminal"), "{err}");
    }

    let corrupt = KeyEntry::Age {
        recipient: recipient.clone(),
        enc: "-----BEGIN AGE ENCRYPTED FILE-----\n!!!\n-----END AGE ENCRYPTED FILE-----".into(),
    };
    let found = identities(&[("SOPS_AGE_KEY", secret.clone())], None);
    let err = open(&found, &corrupt).expect_err("corrupt");
    assert!(err.reason.contains("not a valid armored age file"), "{err}");
}

#[test]
fn gathers_nothing_until_an_age_entry_is_opened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("ran");
    let found = identities(
        &[
            ("SOPS_AGE_KEY_CMD", format!("touch '{}'", marker.display())),
            ("SOPS_AGE_KEY_FILE", "/nonexistent/keys.txt".into()),
        ],
        None,
    );
    let pgp = KeyEntry::Pgp {
        fp: "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4".into(),
        created_at: String::new(),
        enc: String::new(),
    };
    assert!(found.unwrap(&pgp).is_none());
    assert!(found.fixed.lock().unwrap().is_none(), "files were read");
    assert!(!marker.exists(), "the command ran");

    let (_, recipient) = key_pair();
    assert!(open(&found, &wrap(&recipient, &[0; 32])).is_err());
    assert!(found.fixed.lock().unwrap().is_some());
    assert!(marker.exists(), "the command runs for age entries");
}

#[test]
fn sops_test_identities_open_their_recipients() {
    let Some(vectors) = std::env::var_os("VEIL_SOPS_VECTORS") else {
        println!("SKIPPED: VEIL_SOPS_VECTORS is not set");
        return;
    };
    let key_file = PathBuf::from(vectors).join("age-test-keys.txt");
    let text = std::fs::read_to_string(&key_file).expect("age-test-keys.txt");
    let recipients: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# recipient: "))
        .collect();
    assert_eq!(recipients.len(), 2);
    let found = identities(
        &[("SOPS_AGE_KEY_FILE", key_file.display().to_string())],
        None,
    );
    for recipient in recipients {
        let part: Vec<u8> = recipient.bytes().take(32).collect();
        assert_eq!(
            open(&found, &wrap(recipient, &part)).expect(recipient),
            part
        );
    }
}

/// Encrypted SSH keys are only offered (and so only prompt) for files with a stanza for them.
#[test]
fn encrypted_ssh_keys_match_only_their_own_stanza() {
    if !have("ssh-keygen") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let locked = dir.path().join("locked");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(&locked)
        .output()
        .expect("ssh-keygen");
    assert!(made.status.success(), "ssh-keygen failed");
    let private = std::fs::read(&locked).expect("key");
    let identity = age::ssh::Identity::from_buffer(&private[..], None).expect("ssh key");
    assert!(matches!(identity, age::ssh::Identity::Encrypted(_)));
    let prefix = ssh_stanza_prefix(&identity).expect("stanza prefix");

    let public = std::fs::read_to_string(locked.with_extension("pub")).expect("pub key");
    let (_, x25519) = key_pair();
    for (recipient, matches) in [(public.as_str(), true), (x25519.as_str(), false)] {
        let KeyEntry::Age { enc, .. } = wrap(recipient, &[1; 32]) else {
            panic!("not an age entry")
        };
        let stanzas = header_stanzas(&dearmor(&enc).expect("armor"));
        assert_eq!(
            stanzas.iter().any(|s| s.starts_with(&prefix)),
            matches,
            "{prefix} vs {stanzas:?}"
        );
    }
}
