//! The commands that change encrypted files (set, unset, edit, rotate, updatekeys, groups) and
//! the ones that hand secrets to programs (exec-env, exec-file), driven as sops users drive them.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const PLAIN: &str = "db:\n  user: app\n  password: hunter2\nport: 5432\ntoken: s3cr3t\n";

/// An encrypted `app.yaml` in a sandbox with an age identity; returns the recipient.
fn setup() -> Option<(Sandbox, String)> {
    let sandbox = Sandbox::new();
    let recipient = sandbox.age_identity()?;
    sandbox.write("app.yaml", PLAIN);
    ok(sandbox.run(&["encrypt", "-i", "--age", &recipient, "app.yaml"], None));
    Some((sandbox, recipient))
}

fn decrypt(sandbox: &Sandbox, name: &str) -> String {
    String::from_utf8(ok(sandbox.run(&["decrypt", name], None))).unwrap()
}

/// Keys of the lines that differ between two versions of a file. `lastmodified` has whole
/// seconds, so it is left out: it may or may not change within the same second.
fn changed_lines(before: &str, after: &str) -> Vec<String> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    assert_eq!(
        a.len(),
        b.len(),
        "same number of lines:\n{before}\n---\n{after}"
    );
    a.iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(_, y)| y.trim_start().split(':').next().unwrap().to_string())
        .filter(|key| key != "lastmodified")
        .collect()
}

/// A shell script usable as SOPS_EDITOR.
fn editor(sandbox: &Sandbox, name: &str, body: &str) -> PathBuf {
    let path = sandbox.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

#[test]
fn set_changes_one_value_and_keeps_every_other_ciphertext() {
    let Some((sandbox, _)) = setup() else { return };
    let before = sandbox.read("app.yaml");
    ok(sandbox.run(
        &["set", "app.yaml", r#"["db"]["password"]"#, r#""hunter3""#],
        None,
    ));
    let after = sandbox.read("app.yaml");
    assert_eq!(changed_lines(&before, &after), ["password", "mac"]);
    assert!(decrypt(&sandbox, "app.yaml").contains("password: hunter3"));

    // JSON values of other types, new keys, and values from stdin.
    ok(sandbox.run(&["set", "app.yaml", r#"["port"]"#, "6543"], None));
    ok(sandbox.run(
        &[
            "set",
            "app.yaml",
            r#"["extra"]["list"][0]"#,
            r#"{"a": true}"#,
        ],
        None,
    ));
    ok(sandbox.run(
        &["set", "--value-stdin", "app.yaml", r#"["token"]"#],
        Some(b"\"from-stdin\""),
    ));
    let value_file = sandbox.write("value.json", "\"from-file\"");
    ok(sandbox.run(
        &[
            "set",
            "--value-file",
            "app.yaml",
            r#"["db"]["user"]"#,
            value_file.to_str().unwrap(),
        ],
        None,
    ));
    let json: serde_json::Value = serde_json::from_slice(&ok(
        sandbox.run(&["decrypt", "--output-type", "json", "app.yaml"], None)
    ))
    .unwrap();
    assert_eq!(json["port"], 6543);
    assert_eq!(json["extra"]["list"][0]["a"], true);
    assert_eq!(json["token"], "from-stdin");
    assert_eq!(json["db"]["user"], "from-file");
    assert!(
        !sandbox.read("app.yaml").contains("from-stdin"),
        "values are encrypted"
    );
}

#[test]
fn idempotent_set_and_unset_leave_an_unchanged_file_alone() {
    let Some((sandbox, _)) = setup() else { return };
    let before = sandbox.read("app.yaml");
    ok(sandbox.run(
        &[
            "set",
            "--idempotent",
            "app.yaml",
            r#"["db"]["password"]"#,
            r#""hunter2""#,
        ],
        None,
    ));
    assert_eq!(
        sandbox.read("app.yaml"),
        before,
        "no write, lastmodified untouched"
    );
    ok(sandbox.run(&["unset", "--idempotent", "app.yaml", r#"["nope"]"#], None));
    assert_eq!(sandbox.read("app.yaml"), before);
    let stderr = fails_with(sandbox.run(&["unset", "app.yaml", r#"["nope"]"#], None), 7);
    assert!(stderr.contains(r#"["nope"]"#), "{stderr}");
    ok(sandbox.run(&["unset", "app.yaml", r#"["db"]["user"]"#], None));
    let plain = decrypt(&sandbox, "app.yaml");
    assert!(
        !plain.contains("user:") && plain.contains("password: hunter2"),
        "{plain}"
    );
}

#[test]
fn set_rejects_bad_indexes_and_values_with_exit_7() {
    let Some((sandbox, _)) = setup() else { return };
    let before = sandbox.read("app.yaml");
    for (index, value) in [
        ("db", "\"x\""),
        (r#"["db"]"#, "not json"),
        (r#"["db"]["user"]["deeper"]"#, "1"),
    ] {
        let stderr = fails_with(sandbox.run(&["set", "app.yaml", index, value], None), 7);
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    assert_eq!(sandbox.read("app.yaml"), before);
    // A file read from stdin cannot be written back.
    let text = sandbox.read("app.yaml");
    fails_with(
        sandbox.run(&["set", "-", r#"["port"]"#, "1"], Some(text.as_bytes())),
        8,
    );
    // sops' legacy form
    ok(sandbox.run(&["--set", r#"["port"] 1234"#, "app.yaml"], None));
    assert!(decrypt(&sandbox, "app.yaml").contains("port: 1234"));
}

#[test]
fn edit_with_a_scripted_editor() {
    let Some((sandbox, _)) = setup() else { return };
    let mut sandbox = sandbox;
    let runtime = sandbox.dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    sandbox.env("XDG_RUNTIME_DIR", runtime.to_str().unwrap());
    let before = sandbox.read("app.yaml");

    // Unchanged: exit 200, file untouched.
    let noop = editor(&sandbox, "noop.sh", "exit 0");
    let mut cmd = sandbox.veil();
    cmd.env("SOPS_EDITOR", &noop).args(["edit", "app.yaml"]);
    fails_with(run_with_stdin(&mut cmd, None), 200);
    assert_eq!(sandbox.read("app.yaml"), before);

    // One value changed: only that line, lastmodified and mac differ.
    let change = editor(&sandbox, "change.sh", r#"sed -i 's/hunter2/hunter3/' "$1""#);
    let mut cmd = sandbox.veil();
    cmd.env("SOPS_EDITOR", &change).args(["edit", "app.yaml"]);
    ok(run_with_stdin(&mut cmd, None));
    let after = sandbox.read("app.yaml");
    assert_eq!(changed_lines(&before, &after), ["password", "mac"]);
    assert!(decrypt(&sandbox, "app.yaml").contains("password: hunter3"));

    // The bare `veil FILE` edits too, with EDITOR and its arguments split as sops does.
    let mut cmd = sandbox.veil();
    cmd.env("EDITOR", format!("sh {}", change.display()))
        .arg("app.yaml");
    fails_with(run_with_stdin(&mut cmd, None), 200);

    // -s shows the metadata in the editor too; left unchanged, nothing is written.
    let shows = editor(&sandbox, "shows.sh", r#"grep -q '^sops:' "$1" || exit 3"#);
    let mut cmd = sandbox.veil();
    cmd.env("SOPS_EDITOR", &shows)
        .args(["edit", "-s", "app.yaml"]);
    fails_with(run_with_stdin(&mut cmd, None), 200);

    // Invalid YAML after editing: an error, the file untouched.
    let break_it = editor(&sandbox, "break.sh", r#"printf 'db: [\n' > "$1""#);
    let mut cmd = sandbox.veil();
    cmd.env("SOPS_EDITOR", &break_it).args(["edit", "app.yaml"]);
    let stderr = fails_with(run_with_stdin(&mut cmd, None), 2);
    assert!(stderr.contains("app.yaml"), "{stderr}");
    assert_eq!(sandbox.read("app.yaml"), after);
    assert_eq!(
        std::fs::read_dir(&runtime).unwrap().count(),
        0,
        "no plaintext left behind"
    );
}

#[test]
fn edit_creates_a_missing_file_for_the_given_recipient() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    let write = editor(
        &sandbox,
        "write.sh",
        r#"printf 'api_key: brand-new\n' > "$1""#,
    );
    let mut cmd = sandbox.veil();
    cmd.env("SOPS_EDITOR", &write)
        .args(["edit", "--age", &recipient, "new.yaml"]);
    ok(run_with_stdin(&mut cmd, None));
    assert!(!sandbox.read("new.yaml").contains("brand-new"));
    assert_eq!(decrypt(&sandbox, "new.yaml"), "api_key: brand-new\n");
}

#[test]
fn sigterm_during_edit_leaves_no_temporary_file() {
    let Some((mut sandbox, _)) = setup() else {
        return;
    };
    let runtime = sandbox.dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    sandbox.env("XDG_RUNTIME_DIR", runtime.to_str().unwrap());
    let before = sandbox.read("app.yaml");
    let slow = editor(&sandbox, "slow.sh", "sleep 30");
    let mut child = sandbox
        .veil()
        .env("SOPS_EDITOR", &slow)
        .args(["edit", "app.yaml"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) for the plaintext to appear, then interrupt.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_dir(&runtime).unwrap().count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the editor never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(
        std::fs::read_dir(&runtime).unwrap().count(),
        0,
        "the scratch directory is gone"
    );
    assert_eq!(sandbox.read("app.yaml"), before);
}

#[test]
fn rotate_gives_a_new_data_key_and_changes_recipients() {
    let Some((sandbox, recipient)) = setup() else {
        return;
    };
    let before = sandbox.read("app.yaml");
    let rotated = String::from_utf8(ok(sandbox.run(&["rotate", "app.yaml"], None))).unwrap();
    let cipher = |text: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with("password:"))
            .unwrap()
            .to_string()
    };
    assert_ne!(
        cipher(&rotated),
        cipher(&before),
        "every value is encrypted again"
    );
    sandbox.write("rotated.yaml", &rotated);
    assert_eq!(decrypt(&sandbox, "rotated.yaml"), PLAIN);

    // Add a second recipient, then remove the first: only the second opens the file.
    let other = Sandbox::new();
    let Some(other_recipient) = other.age_identity() else {
        return;
    };
    ok(sandbox.run(
        &["rotate", "-i", "--add-age", &other_recipient, "app.yaml"],
        None,
    ));
    ok(sandbox.run(&["-r", "-i", "--rm-age", &recipient, "app.yaml"], None));
    let text = sandbox.read("app.yaml");
    assert!(
        text.contains(&other_recipient) && !text.contains(&recipient),
        "{text}"
    );
    other.write("app.yaml", &text);
    assert_eq!(decrypt(&other, "app.yaml"), PLAIN);
    fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);

    // A user who cannot decrypt gets an error and an untouched file (sops #484).
    fails_with(sandbox.run(&["rotate", "-i", "app.yaml"], None), 128);
    assert_eq!(sandbox.read("app.yaml"), text);
    // --add/--rm on a missing file: sops' 49.
    fails_with(
        sandbox.run(&["rotate", "--add-age", &recipient, "missing.yaml"], None),
        49,
    );
}

#[test]
fn updatekeys_follows_the_creation_rule_and_rotates_when_a_key_is_removed() {
    let Some((sandbox, first)) = setup() else {
        return;
    };
    let second_home = Sandbox::new();
    let Some(second) = second_home.age_identity() else {
        return;
    };
    let opens = |s: &Sandbox, text: &str| {
        s.write("probe.yaml", text);
        s.run(&["decrypt", "probe.yaml"], None).status.success()
    };
    // Add the second recipient: the data key is re-wrapped, values stay byte-identical.
    sandbox.write(
        ".sops.yaml",
        format!("creation_rules:\n  - path_regex: app\\.yaml$\n    age: {first},{second}\n"),
    );
    let before = sandbox.read("app.yaml");
    let stderr =
        String::from_utf8(sandbox.run(&["updatekeys", "-y", "app.yaml"], None).stderr).unwrap();
    assert!(stderr.contains(&format!("+++ {second}")), "{stderr}");
    let added = sandbox.read("app.yaml");
    let body = |t: &str| t[..t.find("sops:").unwrap()].to_string();
    assert_eq!(body(&added), body(&before), "values untouched");
    assert!(opens(&sandbox, &added) && opens(&second_home, &added));

    // Without -y and with no answer, nothing changes.
    sandbox.write(
        ".sops.yaml",
        format!("creation_rules:\n  - path_regex: app\\.yaml$\n    age: {second}\n"),
    );
    ok(sandbox.run(&["updatekeys", "app.yaml"], None));
    assert_eq!(sandbox.read("app.yaml"), added);

    // --no-rotate: sops' behaviour, values keep their ciphertext.
    sandbox.write("copy.yaml", &added);
    sandbox.write(
        ".sops.yaml",
        format!("creation_rules:\n  - path_regex: (app|copy)\\.yaml$\n    age: {second}\n"),
    );
    ok(sandbox.run(&["updatekeys", "-y", "--no-rotate", "copy.yaml"], None));
    assert_eq!(body(&sandbox.read("copy.yaml")), body(&added));
    // Default: removing a recipient rotates the data key.
    let stderr =
        String::from_utf8(sandbox.run(&["updatekeys", "-y", "app.yaml"], None).stderr).unwrap();
    assert!(stderr.contains("rotated"), "{stderr}");
    let removed = sandbox.read("app.yaml");
    assert_ne!(
        body(&removed),
        body(&added),
        "values encrypted again under a new key"
    );
    assert!(opens(&second_home, &removed));
    assert!(
        !opens(&sandbox, &removed),
        "the removed key no longer opens the file"
    );
}

#[test]
fn key_groups_with_a_shamir_threshold() {
    let homes: Vec<Sandbox> = (0..3).map(|_| Sandbox::new()).collect();
    let Some(recipients) = homes
        .iter()
        .map(|h| h.age_identity())
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let main = &homes[0];
    main.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - shamir_threshold: 2\n    key_groups:\n      - age: [{}]\n      - age: [{}]\n      - age: [{}]\n",
            recipients[0], recipients[1], recipients[2]
        ),
    );
    main.write("app.yaml", PLAIN);
    let text = String::from_utf8(ok(main.run(&["encrypt", "app.yaml"], None))).unwrap();
    assert!(
        text.contains("shamir_threshold: 2") && text.contains("key_groups:"),
        "{text}"
    );
    // Two of three identities: opens. One: fails, naming every group's keys.
    let two = Sandbox::new();
    let keys: String = [0, 1]
        .iter()
        .map(|i| {
            std::fs::read_to_string(homes[*i].home().join(".config/sops/age/keys.txt")).unwrap()
        })
        .collect();
    std::fs::create_dir_all(two.home().join(".config/sops/age")).unwrap();
    std::fs::write(two.home().join(".config/sops/age/keys.txt"), keys).unwrap();
    two.write("app.yaml", &text);
    assert_eq!(decrypt(&two, "app.yaml"), PLAIN);
    homes[2].write("app.yaml", &text);
    let stderr = fails_with(homes[2].run(&["decrypt", "app.yaml"], None), 128);
    for r in &recipients[..2] {
        assert!(
            stderr.contains(r.as_str()),
            "the report names {r}: {stderr}"
        );
    }

    // groups delete / add re-split the same data key.
    two.write("app.yaml", &text);
    let deleted = String::from_utf8(ok(
        two.run(&["groups", "delete", "--file", "app.yaml", "2"], None)
    ))
    .unwrap();
    assert!(!deleted.contains(recipients[2].as_str()));
    two.write("two-groups.yaml", &deleted);
    assert_eq!(decrypt(&two, "two-groups.yaml"), PLAIN);
    ok(two.run(
        &[
            "groups",
            "add",
            "-i",
            "--file",
            "two-groups.yaml",
            "--age",
            &recipients[2],
        ],
        None,
    ));
    assert!(two.read("two-groups.yaml").contains(recipients[2].as_str()));
    assert_eq!(decrypt(&two, "two-groups.yaml"), PLAIN);
    let stderr = fails_with(
        two.run(
            &[
                "groups",
                "delete",
                "--file",
                "two-groups.yaml",
                "--shamir-secret-sharing-threshold",
                "3",
                "0",
            ],
            None,
        ),
        1,
    );
    assert!(stderr.contains("threshold"), "{stderr}");
}

#[test]
fn exec_env_and_exec_file_hand_secrets_to_a_command() {
    let Some((sandbox, recipient)) = setup() else {
        return;
    };
    // Nested values cannot be variables, as in sops.
    let stderr = fails_with(sandbox.run(&["exec-env", "app.yaml", "true"], None), 1);
    assert!(stderr.contains(r#"["db"]"#), "{stderr}");
    sandbox.write("flat.yaml", "token: s3cr3t\nport: 5432\n");
    ok(sandbox.run(&["encrypt", "-i", "--age", &recipient, "flat.yaml"], None));
    let out = ok(sandbox.run(
        &[
            "exec-env",
            "flat.yaml",
            "printf '%s %s' \"$token\" \"$port\"",
        ],
        None,
    ));
    assert_eq!(out, b"s3cr3t 5432");
    let out = ok(sandbox.run(
        &[
            "exec-env",
            "--pristine",
            "flat.yaml",
            "printf '%s' \"${HOME:-none}\"",
        ],
        None,
    ));
    assert_eq!(out, b"none", "--pristine drops veil's environment");
    // The child's exit code comes through.
    let status = sandbox
        .run(&["exec-env", "flat.yaml", "exit 7"], None)
        .status;
    assert_eq!(status.code(), Some(7));

    // exec-file: a FIFO by default, a private file with --no-fifo, {} is its path.
    let out = ok(sandbox.run(&["exec-file", "flat.yaml", "test -p {} && cat {}"], None));
    assert_eq!(out, b"token: s3cr3t\nport: 5432\n");
    let out = ok(sandbox.run(
        &[
            "exec-file",
            "--no-fifo",
            "--filename",
            "x.json",
            "--output-type",
            "json",
            "flat.yaml",
            "test -f {} && cat {}; echo; echo {}",
        ],
        None,
    ));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"token\": \"s3cr3t\""), "{text}");
    let path = text.lines().last().unwrap();
    assert!(path.ends_with("/x.json"));
    assert!(
        !Path::new(path).exists(),
        "the file is removed after the command"
    );
    fails_with(
        sandbox.run(
            &["exec-file", "--filename", "../escape", "flat.yaml", "true"],
            None,
        ),
        1,
    );
}

#[test]
fn completion_scripts() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = String::from_utf8(ok(sandbox.run(&["completion", shell], None))).unwrap();
        assert!(
            out.contains("veil") && out.contains("updatekeys"),
            "{shell}"
        );
    }
}

#[test]
fn creation_rules_can_name_their_recipients() {
    let sandbox = Sandbox::new();
    let Some(recipient) = sandbox.age_identity() else {
        return;
    };
    sandbox.write(
        ".sops.yaml",
        format!(
            "recipients:\n  alice: {recipient}\n  bob: age1notakey\ncreation_rules:\n  - path_regex: ^secrets/\n    age: [alice]\n  - path_regex: ^broken/\n    age: bob\n"
        ),
    );
    sandbox.write("secrets/app.yaml", PLAIN);
    let text = String::from_utf8(ok(sandbox.run(&["encrypt", "secrets/app.yaml"], None))).unwrap();
    assert!(text.contains(&format!("recipient: {recipient}")), "{text}");
    sandbox.write("broken/app.yaml", PLAIN);
    let stderr = fails_with(sandbox.run(&["encrypt", "broken/app.yaml"], None), 1);
    assert!(
        stderr.contains("bob"),
        "the message names the recipient: {stderr}"
    );
}

#[test]
fn exec_env_runs_as_another_user_or_in_the_same_process() {
    let Some((sandbox, recipient)) = setup() else {
        return;
    };
    sandbox.write("flat.yaml", "token: s3cr3t\n");
    ok(sandbox.run(&["encrypt", "-i", "--age", &recipient, "flat.yaml"], None));
    // --same-process replaces veil with the shell: the variables are there all the same.
    let out = ok(sandbox.run(
        &[
            "exec-env",
            "--same-process",
            "flat.yaml",
            "printf %s \"$token\"",
        ],
        None,
    ));
    assert_eq!(out, b"s3cr3t");
    // --user needs root; CI runs as root, a developer may not.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root {
        eprintln!("SKIPPED: --user needs root");
        return;
    }
    let out = ok(sandbox.run(
        &[
            "exec-env",
            "--user",
            "nobody",
            "flat.yaml",
            "id -un; printf %s \"$token\"",
        ],
        None,
    ));
    assert_eq!(String::from_utf8(out).unwrap(), "nobody\ns3cr3t");
    let out = ok(sandbox.run(
        &[
            "exec-file",
            "--user",
            "nobody",
            "flat.yaml",
            "id -un; cat {}",
        ],
        None,
    ));
    assert_eq!(String::from_utf8(out).unwrap(), "nobody\ntoken: s3cr3t\n");
    fails_with(
        sandbox.run(
            &[
                "exec-env",
                "--user",
                "no-such-user-here",
                "flat.yaml",
                "true",
            ],
            None,
        ),
        1,
    );
}

#[test]
fn sops_global_flags_before_the_subcommand() {
    let Some((sandbox, _)) = setup() else { return };
    // Ansible's community.sops passes these before the subcommand.
    let out = ok(sandbox.run(
        &[
            "--enable-local-keyservice=false",
            "--disable-version-check",
            "--verbose",
            "decrypt",
            "--extract",
            r#"["token"]"#,
            "app.yaml",
        ],
        None,
    ));
    assert_eq!(out, b"s3cr3t");
    ok(sandbox.run(
        &[
            "--indent",
            "2",
            "decrypt",
            "--output-type",
            "json",
            "app.yaml",
        ],
        None,
    ));
    let stderr = fails_with(
        sandbox.run(
            &[
                "--keyservice",
                "tcp://127.0.0.1:5000",
                "decrypt",
                "app.yaml",
            ],
            None,
        ),
        1,
    );
    assert!(stderr.contains("key service"), "{stderr}");
    let out = String::from_utf8(ok(
        sandbox.run(&["--version", "--disable-version-check"], None)
    ))
    .unwrap();
    assert!(out.starts_with("veil "), "{out}");
}
