//! `.sops.yaml` (spec §9): parsing, rule matching, indentation and discovery. Every path is built
//! under a temporary directory and passed explicitly; nothing depends on the process cwd.

use super::*;

const AGE_A: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const AGE_B: &str = "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg";
const AGE_C: &str = "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw";
const FP_1: &str = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4";
const FP_2: &str = "D7229043384BCC60326C6FB9D8720D957C3D3074";

/// A config "read" from `<dir>/.sops.yaml`.
fn config_in(dir: &Path, text: &str) -> Config {
    parse(text.as_bytes(), &dir.join(CONFIG_NAME))
        .unwrap_or_else(|e| panic!("config parses: {e}\n{text}"))
}

/// A config whose file is `/project/.sops.yaml` (never touched on disk).
fn config(text: &str) -> Config {
    config_in(Path::new("/project"), text)
}

fn one_rule(text: &str) -> CreationRule {
    let mut config = config(text);
    assert_eq!(config.creation_rules.len(), 1, "{text}");
    config.creation_rules.remove(0)
}

/// The message of a parse that must fail with `ConfigError::Invalid` naming the file.
fn invalid_message(text: &str) -> String {
    let file = Path::new("/project/conf/.sops.yaml");
    match parse(text.as_bytes(), file) {
        Err(err @ ConfigError::Invalid { .. }) => {
            let shown = err.to_string();
            let ConfigError::Invalid {
                file: named,
                message,
            } = err
            else {
                unreachable!()
            };
            assert_eq!(named, file, "{text}");
            assert!(shown.contains("/project/conf/.sops.yaml"), "{shown}");
            message
        }
        other => panic!("expected ConfigError::Invalid for {text:?}, got {other:?}"),
    }
}

fn group(age: &[&str], pgp: &[&str]) -> GroupSpec {
    GroupSpec {
        age: age.iter().map(|s| s.to_string()).collect(),
        pgp: pgp.iter().map(|s| s.to_string()).collect(),
        ..GroupSpec::default()
    }
}

/// Index of the rule `config` picks for `target`, an absolute path.
fn picked(config: &Config, target: &Path) -> usize {
    let rule = config
        .rule_for(target)
        .unwrap_or_else(|e| panic!("{}: {e}", target.display()))
        .expect("the config has rules");
    config
        .creation_rules
        .iter()
        .position(|r| std::ptr::eq(r, rule))
        .unwrap()
}

#[test]
fn rules_are_tried_in_order_and_the_first_match_wins() {
    let config = config(&format!(
        "creation_rules:\n\
         \x20 - path_regex: prod/.*\\.yaml$\n    age: {AGE_A}\n\
         \x20 - path_regex: \\.yaml$\n    age: {AGE_B}\n\
         \x20 - path_regex: \\.env$\n    pgp: {FP_1}\n\
         \x20 - age: {AGE_C}\n"
    ));
    for (target, want) in [
        ("prod/db.yaml", 0),
        ("prod/nested/db.yaml", 0),
        ("dev/db.yaml", 1),
        // unanchored: the regex may match anywhere in the path
        ("prod.yaml", 1),
        ("app.env", 2),
        ("prod/app.env", 2),
        // a rule without path_regex matches everything left
        ("notes.txt", 3),
        ("prod/db.json", 3),
    ] {
        assert_eq!(
            picked(&config, &Path::new("/project").join(target)),
            want,
            "{target}"
        );
    }
    assert_eq!(
        config.creation_rules[3].key_groups,
        [group(&[AGE_C], &[])],
        "the catch-all rule's keys"
    );
}

#[test]
fn path_regex_matches_the_path_relative_to_the_config_directory() {
    let config = config_in(
        Path::new("/srv/project"),
        &format!(
            "creation_rules:\n  - path_regex: ^secrets/[^/]+\\.yaml$\n    age: {AGE_A}\n  - path_regex: ^/elsewhere/\n    age: {AGE_B}\n"
        ),
    );
    // Under the config's directory: the prefix and its separator are removed.
    assert_eq!(
        picked(&config, Path::new("/srv/project/secrets/db.yaml")),
        0
    );
    // Lexically normalised first, as Go's filepath.Abs.
    assert_eq!(
        picked(
            &config,
            Path::new("/srv/project/other/../secrets/./db.yaml")
        ),
        0
    );
    // Outside it: the absolute path is matched as it is.
    assert_eq!(picked(&config, Path::new("/elsewhere/secrets/db.yaml")), 1);
    for target in [
        "/srv/project/nested/secrets/db.yaml",
        "/srv/projectx/secrets/db.yaml",
        "/srv/secrets/db.yaml",
    ] {
        match config.rule_for(Path::new(target)) {
            Err(ConfigError::NoMatchingRule {
                file,
                target: shown,
            }) => {
                assert_eq!(file, Path::new("/srv/project/.sops.yaml"));
                assert!(target.ends_with(&shown), "{target} shown as {shown}");
            }
            other => panic!("{target}: expected NoMatchingRule, got {other:?}"),
        }
    }
}

#[test]
fn no_matching_rule_is_an_error_naming_config_and_target() {
    let config = config(&format!(
        "creation_rules:\n  - path_regex: \\.yaml$\n    age: {AGE_A}\n"
    ));
    let err = config
        .rule_for(Path::new("/project/app/secrets.json"))
        .unwrap_err();
    let shown = err.to_string();
    match err {
        ConfigError::NoMatchingRule { file, target } => {
            assert_eq!(file, Path::new("/project/.sops.yaml"));
            assert_eq!(target, "app/secrets.json");
        }
        other => panic!("expected NoMatchingRule, got {other:?}"),
    }
    assert!(
        shown.contains("/project/.sops.yaml") && shown.contains("app/secrets.json"),
        "{shown}"
    );
}

#[test]
fn a_config_without_creation_rules_gives_no_rule() {
    for text in [
        "{}\n",
        "stores:\n  yaml:\n    indent: 2\n",
        "creation_rules: []\n",
        "# only a comment\nfoo: bar\n",
    ] {
        let config = config(text);
        assert!(
            config
                .rule_for(Path::new("/project/a.yaml"))
                .unwrap()
                .is_none(),
            "{text}"
        );
    }
}

#[test]
fn age_and_pgp_are_comma_strings_or_lists() {
    for (fields, want) in [
        (
            format!("age: {AGE_A},{AGE_B}\n    pgp: {FP_1}"),
            group(&[AGE_A, AGE_B], &[FP_1]),
        ),
        // items trimmed, empties dropped
        (
            format!("age: ' {AGE_A} ,, {AGE_B} ,'\n    pgp: '{FP_1} , {FP_2}'"),
            group(&[AGE_A, AGE_B], &[FP_1, FP_2]),
        ),
        (
            format!("age:\n      - {AGE_A}\n      - {AGE_B}\n    pgp: [{FP_1}, {FP_2}]"),
            group(&[AGE_A, AGE_B], &[FP_1, FP_2]),
        ),
        // a list item may itself be a comma string
        (
            format!("age: ['{AGE_A},{AGE_B}', {AGE_C}]"),
            group(&[AGE_A, AGE_B, AGE_C], &[]),
        ),
        // duplicates removed, first occurrence kept
        (
            format!("age: {AGE_B},{AGE_A},{AGE_B}"),
            group(&[AGE_B, AGE_A], &[]),
        ),
        (
            "age:\n    pgp: ''".to_string(),
            group(&[], &[]),
        ),
        // SSH recipients keep their inner spaces
        (
            "age: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID+Wi8WZw2bXfBpcs/WECttCzP39OkenS6pHWHWGFJvN Test'"
                .to_string(),
            group(
                &["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID+Wi8WZw2bXfBpcs/WECttCzP39OkenS6pHWHWGFJvN Test"],
                &[],
            ),
        ),
    ] {
        let text = format!("creation_rules:\n  - {fields}\n");
        assert_eq!(one_rule(&text).key_groups, [want], "{text}");
    }
}

#[test]
fn key_types_of_the_wrong_shape_are_errors() {
    for (fields, needle) in [
        ("age: 3", "age"),
        ("pgp: {a: b}", "pgp"),
        ("age: [[nested]]", "age"),
        ("key_groups: {age: x}", "key_groups must be a list"),
        ("key_groups: [x]", "key_groups[0] must be a mapping"),
        ("key_groups:\n      - merge: x", "merge"),
        ("key_groups:\n      - age: 1", "key_groups[0]"),
    ] {
        let message = invalid_message(&format!("creation_rules:\n  - {fields}\n"));
        assert!(
            message.contains("creation_rules[0]") && message.contains(needle),
            "{fields}: {message}"
        );
    }
}

#[test]
fn key_groups_with_merge_and_shamir_threshold() {
    let rule = one_rule(&format!(
        "creation_rules:\n\
         \x20 - path_regex: \\.yaml$\n\
         \x20   shamir_threshold: 2\n\
         \x20   age: {AGE_C}\n\
         \x20   key_groups:\n\
         \x20     - age: [{AGE_A}]\n\
         \x20       pgp: [{FP_1}]\n\
         \x20     - pgp: [{FP_2}]\n\
         \x20       merge:\n\
         \x20         - age: [{AGE_B}]\n\
         \x20         - pgp: [{FP_1}, {FP_2}]\n\
         \x20           merge:\n\
         \x20             - age: [{AGE_C}]\n"
    ));
    assert_eq!(rule.shamir_threshold, 2);
    assert_eq!(
        rule.key_groups,
        [
            group(&[AGE_A], &[FP_1]),
            // the flat `age` is ignored; merges are flattened recursively, come first and are
            // de-duplicated
            group(&[AGE_B, AGE_C], &[FP_1, FP_2]),
        ]
    );
    let plain = one_rule(&format!("creation_rules:\n  - age: {AGE_A}\n"));
    assert_eq!(plain.shamir_threshold, 0, "no threshold by default");
    for bad in ["-1", "two", "[2]"] {
        let message = invalid_message(&format!(
            "creation_rules:\n  - age: {AGE_A}\n    shamir_threshold: {bad}\n"
        ));
        assert!(message.contains("shamir_threshold"), "{bad}: {message}");
    }
}

#[test]
fn merged_keys_come_before_the_group_s_own_keys() {
    // spec §9.3: a group's keys are ordered merge results first, then age, pgp, …
    let rule = one_rule(&format!(
        "creation_rules:\n  - key_groups:\n      - merge:\n          - age: [{AGE_B}]\n        age: [{AGE_A}]\n"
    ));
    assert_eq!(rule.key_groups, [group(&[AGE_B, AGE_A], &[])]);
    // The field order in the file does not matter.
    let rule = one_rule(&format!(
        "creation_rules:\n  - key_groups:\n      - age: [{AGE_A}]\n        merge:\n          - age: [{AGE_B}]\n"
    ));
    assert_eq!(rule.key_groups, [group(&[AGE_B, AGE_A], &[])]);
}

#[test]
fn a_rule_without_keys_has_one_empty_group() {
    for fields in ["path_regex: x", "key_groups: []", "key_groups: [{}]"] {
        let rule = one_rule(&format!("creation_rules:\n  - {fields}\n"));
        assert_eq!(rule.key_groups, [GroupSpec::default()], "{fields}");
        assert!(rule.key_groups[0].is_empty());
    }
    // spec §9.3: a non-empty `key_groups` replaces the flat key fields, even with empty groups
    // (sops then fails with "empty key group provided").
    let rule = one_rule(&format!(
        "creation_rules:\n  - age: {AGE_A}\n    key_groups: [{{}}]\n"
    ));
    assert_eq!(rule.key_groups, [GroupSpec::default()]);
}

#[test]
fn unsupported_key_types_are_kept_with_their_entries() {
    let rule = one_rule(
        "creation_rules:\n  - kms: arn:aws:kms:eu-west-1:1:key/a,arn:aws:kms:eu-west-1:1:key/b\n    gcp_kms: projects/p/locations/l/keyRings/r/cryptoKeys/k\n    azure_keyvault: https://v.vault.azure.net/keys/k/1\n",
    );
    assert_eq!(
        rule.key_groups[0]
            .kms
            .iter()
            .map(|k| k.arn.as_str())
            .collect::<Vec<_>>(),
        [
            "arn:aws:kms:eu-west-1:1:key/a",
            "arn:aws:kms:eu-west-1:1:key/b"
        ]
    );
    assert_eq!(
        rule.key_groups[0].gcp_kms,
        ["projects/p/locations/l/keyRings/r/cryptoKeys/k"]
    );
    assert_eq!(
        rule.key_groups[0].azure_kv,
        [AzureKvSpec::Url(
            "https://v.vault.azure.net/keys/k/1".into()
        )]
    );
    assert!(rule.key_groups[0].unsupported.is_empty());
    assert!(!rule.key_groups[0].is_empty());
}

#[test]
fn azure_keyvault_takes_urls_or_sops_maps_in_key_groups() {
    // Flat: a comma-separated string or a list of URLs, as sops.
    for value in [
        "'https://a.vault.azure.net/keys/k/1, https://b.vault.azure.net/keys/l'",
        "[https://a.vault.azure.net/keys/k/1, https://b.vault.azure.net/keys/l]",
    ] {
        let rule = one_rule(&format!("creation_rules:\n  - azure_keyvault: {value}\n"));
        assert_eq!(
            rule.key_groups[0].azure_kv,
            [
                AzureKvSpec::Url("https://a.vault.azure.net/keys/k/1".into()),
                AzureKvSpec::Url("https://b.vault.azure.net/keys/l".into()),
            ],
            "{value}"
        );
    }
    // key_groups: sops' {vaultUrl, key, version} maps (version optional), merged and deduplicated.
    let rule = one_rule(
        "creation_rules:\n  - key_groups:\n      - azure_keyvault:\n          - vaultUrl: https://a.vault.azure.net\n            key: k\n            version: '1'\n          - vaultUrl: https://a.vault.azure.net\n            key: k\n            version: '1'\n          - https://b.vault.azure.net/keys/l\n        merge:\n          - azure_keyvault:\n              - vaultUrl: https://c.vault.azure.net/\n                key: m\n",
    );
    assert_eq!(
        rule.key_groups[0].azure_kv,
        [
            AzureKvSpec::Parts {
                vault_url: "https://c.vault.azure.net/".into(),
                key: "m".into(),
                version: String::new(),
            },
            AzureKvSpec::Parts {
                vault_url: "https://a.vault.azure.net".into(),
                key: "k".into(),
                version: "1".into(),
            },
            AzureKvSpec::Url("https://b.vault.azure.net/keys/l".into()),
        ]
    );
    let message = invalid_message(
        "creation_rules:\n  - key_groups:\n      - azure_keyvault:\n          - key: k\n",
    );
    assert!(
        message.contains("azure_keyvault") && message.contains("vaultUrl"),
        "{message}"
    );
}

#[test]
fn each_selector_field_sets_the_rule_s_selector() {
    for field in Selector::FIELDS {
        let value = "^(password|token)$";
        let rule = one_rule(&format!(
            "creation_rules:\n  - age: {AGE_A}\n    {field}: '{value}'\n"
        ));
        let want = Selector::from_field(field, value).unwrap();
        assert_eq!(rule.selector.as_ref(), Some(&want), "{field}");
        assert_eq!(rule.rules().selector, Some(want), "{field}");
        assert!(!rule.rules().mac_only_encrypted);
    }
    // No selector (or an empty one): sops' default `_unencrypted` suffix.
    for extra in ["", "\n    encrypted_regex: ''"] {
        let rule = one_rule(&format!("creation_rules:\n  - age: {AGE_A}{extra}\n"));
        assert_eq!(rule.selector, None, "{extra:?}");
        assert_eq!(rule.rules(), crate::crypt::Rules::default(), "{extra:?}");
    }
    let rule = one_rule(&format!(
        "creation_rules:\n  - age: {AGE_A}\n    mac_only_encrypted: true\n"
    ));
    assert!(rule.mac_only_encrypted && rule.rules().mac_only_encrypted);
}

#[test]
fn two_selectors_in_one_rule_are_an_error() {
    for (a, b) in [
        ("unencrypted_suffix", "encrypted_suffix"),
        ("encrypted_regex", "unencrypted_regex"),
        ("unencrypted_suffix", "encrypted_comment_regex"),
    ] {
        let message = invalid_message(&format!(
            "creation_rules:\n  - age: {AGE_A}\n  - age: {AGE_B}\n    {a}: x\n    {b}: y\n"
        ));
        assert!(
            message.contains("creation_rules[1]") && message.contains(a) && message.contains(b),
            "{a} + {b}: {message}"
        );
    }
}

#[test]
fn a_bad_regex_is_an_error_naming_it() {
    for (field, regex) in [
        ("path_regex", "secrets/(unclosed"),
        ("encrypted_regex", "^(data|stringData"),
        ("unencrypted_regex", "[z-a]"),
        ("encrypted_comment_regex", "*sops"),
        ("unencrypted_comment_regex", "a{2,1}"),
    ] {
        let message = invalid_message(&format!(
            "creation_rules:\n  - age: {AGE_A}\n    {field}: '{regex}'\n"
        ));
        assert!(
            message.contains("creation_rules[0]") && message.contains(regex),
            "{field}: {message}"
        );
    }
}

#[test]
fn store_indentation_and_the_indent_flag() {
    let default = Indent::default();
    for (text, want) in [
        ("{}\n", default),
        (
            "stores:\n  yaml:\n    indent: 2\n",
            Indent {
                yaml: 2,
                ..default
            },
        ),
        (
            "stores:\n  json:\n    indent: 2\n",
            Indent {
                json: Some(2),
                ..default
            },
        ),
        (
            "stores:\n  json:\n    indent: -1\n  json_binary:\n    indent: 3\n",
            Indent {
                json: None,
                json_binary: Some(3),
                ..default
            },
        ),
        (
            "stores:\n  yaml:\n    indent: 0\n  json:\n    indent: 0\n  json_binary:\n    indent: -1\n  dotenv: {}\n",
            Indent {
                yaml: 0,
                json: Some(0),
                json_binary: None,
            },
        ),
    ] {
        let config = config(text);
        assert_eq!(config.indent(None), want, "{text}");
        assert_eq!(
            config.indent(Some(6)),
            Indent {
                yaml: 6,
                json: Some(6),
                json_binary: Some(6),
            },
            "--indent overrides every store: {text}"
        );
    }
    assert_eq!(default.yaml, 4, "sops' YAML default");
    assert_eq!(default.json, None, "sops' JSON default is a tab");
    for (text, needle) in [
        ("stores:\n  yaml:\n    indent: -1\n", "stores.yaml.indent"),
        ("stores:\n  yaml:\n    indent: two\n", "stores.yaml.indent"),
        ("stores:\n  json:\n    indent: -2\n", "stores.json.indent"),
        ("stores:\n  json:\n    indent: [2]\n", "stores.json.indent"),
        (
            "stores:\n  json_binary:\n    indent: 1.5\n",
            "stores.json_binary.indent",
        ),
    ] {
        let message = invalid_message(text);
        assert!(message.contains(needle), "{text}: {message}");
    }
}

#[test]
fn discovery_climbs_from_the_working_directory() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    let nested = project.join("a/b/c");
    std::fs::create_dir_all(&nested).unwrap();
    assert!(
        discover(&nested, None).unwrap().is_none(),
        "no config anywhere below the temp dir"
    );

    let config_file = project.join(CONFIG_NAME);
    std::fs::write(
        &config_file,
        format!("creation_rules:\n  - path_regex: ^a/\n    age: {AGE_A}\n"),
    )
    .unwrap();
    // `.sops.yml` is never used, even when it is nearer.
    std::fs::write(
        project.join("a/.sops.yml"),
        format!("creation_rules:\n  - age: {AGE_B}\n"),
    )
    .unwrap();
    for start in [&project, &project.join("a"), &nested] {
        let found = discover(start, None).unwrap().expect("config found");
        assert_eq!(found.file, config_file, "from {}", start.display());
        assert_eq!(
            found.creation_rules[0].key_groups,
            [group(&[AGE_A], &[])],
            "from {}",
            start.display()
        );
        // The rule is matched relative to the config's directory, not the start.
        assert!(found
            .rule_for(&nested.join("secret.yaml"))
            .unwrap()
            .is_some());
    }

    // The nearest `.sops.yaml` wins.
    let inner = project.join("a/b").join(CONFIG_NAME);
    std::fs::write(&inner, format!("creation_rules:\n  - age: {AGE_C}\n")).unwrap();
    assert_eq!(discover(&nested, None).unwrap().unwrap().file, inner);
    assert_eq!(
        discover(&project.join("a"), None).unwrap().unwrap().file,
        config_file
    );

    // A broken config found by the search is an error, not "no config".
    std::fs::write(&inner, "creation_rules: {\n").unwrap();
    assert!(matches!(
        discover(&nested, None),
        Err(ConfigError::Invalid { file, .. }) if file == inner
    ));
}

#[test]
fn an_explicit_config_is_used_without_searching() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join(CONFIG_NAME),
        format!("creation_rules:\n  - age: {AGE_A}\n"),
    )
    .unwrap();
    let explicit = root.path().join("conf/custom-name.yaml");
    std::fs::create_dir_all(explicit.parent().unwrap()).unwrap();
    std::fs::write(
        &explicit,
        format!("creation_rules:\n  - path_regex: ^secrets/\n    age: {AGE_B}\n"),
    )
    .unwrap();

    let found = discover(&work, Some(&explicit)).unwrap().unwrap();
    assert_eq!(found.file, explicit);
    assert_eq!(found.creation_rules[0].key_groups, [group(&[AGE_B], &[])]);
    // path_regex is relative to the explicit file's directory.
    assert!(found
        .rule_for(&root.path().join("conf/secrets/x.yaml"))
        .unwrap()
        .is_some());
    assert!(found.rule_for(&work.join("secrets/x.yaml")).is_err());

    let missing = root.path().join("nope.yaml");
    match discover(&work, Some(&missing)) {
        Err(ConfigError::Read { file, .. }) => assert_eq!(file, missing),
        other => panic!("expected ConfigError::Read, got {other:?}"),
    }
}

#[test]
fn recipient_names_resolve_to_keys() {
    let rule_text = |rule: &str| {
        format!(
            "recipients:\n  alice: {AGE_A}\n  bob: ' {AGE_B} '\n  ops: {FP_1}\ncreation_rules:\n  - {rule}\n"
        )
    };
    let named = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, n)| (k.to_string(), n.to_string()))
            .collect()
    };
    for (rule, age, pgp, names) in [
        (
            "age: [alice, bob]\n    pgp: ops".to_string(),
            vec![AGE_A, AGE_B],
            vec![FP_1],
            named(&[(AGE_A, "alice"), (AGE_B, "bob"), (FP_1, "ops")]),
        ),
        // names and keys mix; an unknown name is kept as written
        (
            format!("age: alice,{AGE_C},carol"),
            vec![AGE_A, AGE_C, "carol"],
            vec![],
            named(&[(AGE_A, "alice")]),
        ),
        (
            "key_groups:\n      - age: [bob]\n      - pgp: [ops]\n        merge:\n          - age: [alice]"
                .to_string(),
            vec![AGE_B],
            vec![],
            named(&[(AGE_B, "bob")]),
        ),
    ] {
        let rule = one_rule(&rule_text(&rule));
        let first = &rule.key_groups[0];
        assert_eq!(first.age, age, "{rule:?}");
        assert_eq!(first.pgp, pgp, "{rule:?}");
        assert_eq!(first.named, names, "{rule:?}");
    }
    let rule = one_rule(&rule_text(
        "key_groups:\n      - age: [bob]\n      - pgp: [ops]\n        merge:\n          - age: [alice]",
    ));
    assert_eq!(
        rule.key_groups[1],
        GroupSpec {
            age: vec![AGE_A.into()],
            pgp: vec![FP_1.into()],
            named: named(&[(AGE_A, "alice"), (FP_1, "ops")]),
            unsupported: vec![],
            ..Default::default()
        }
    );
    for bad in [
        "recipients: [alice]\n",
        "recipients:\n  alice: ''\n",
        "recipients:\n  alice: [x]\n",
    ] {
        let message = invalid_message(bad);
        assert!(message.contains("recipients"), "{bad}: {message}");
    }
}

#[test]
fn malformed_configs_are_invalid_naming_the_file() {
    for (text, needle) in [
        ("creation_rules: [\n", ""),
        ("creation_rules:\n  - age: [x\n", ""),
        ("\t- not: yaml: at all\n", ""),
        (
            "creation_rules: {age: x}\n",
            "creation_rules must be a list",
        ),
        ("creation_rules: age1abc\n", "creation_rules must be a list"),
        (
            "creation_rules:\n  - just a string\n",
            "creation_rules[0] must be a mapping",
        ),
        (
            "creation_rules:\n  - age: x\n  - [a, b]\n",
            "creation_rules[1] must be a mapping",
        ),
        (
            "creation_rules:\n  - path_regex: [a]\n",
            "path_regex must be a string",
        ),
    ] {
        let message = invalid_message(text);
        assert!(message.contains(needle), "{text:?}: {message}");
    }
}

#[test]
fn pkcs11_uris_are_comma_strings_or_lists_flat_and_in_key_groups() {
    let a = "pkcs11:token=t;manufacturer=Snake%20Oil,%20Inc.;object=a";
    let b = "pkcs11:token=t;object=b";
    let rule = one_rule(&format!(
        "creation_rules:\n  - pkcs11: \"{a}, {b}\"\n    age: {AGE_A}\n"
    ));
    assert_eq!(rule.key_groups[0].pkcs11, [a, b]);
    assert!(!rule.key_groups[0].is_empty());
    let rule = one_rule(&format!(
        "recipients:\n  hsm: \"{b}\"\ncreation_rules:\n  - key_groups:\n      - pkcs11: [\"{a}\", hsm, \"{a}\"]\n      - merge:\n          - pkcs11: [\"{b}\"]\n"
    ));
    assert_eq!(rule.key_groups[0].pkcs11, [a, b]);
    assert_eq!(
        rule.key_groups[0].named,
        [(b.to_string(), "hsm".to_string())]
    );
    assert_eq!(rule.key_groups[1].pkcs11, [b]);
    let message = invalid_message("creation_rules:\n  - pkcs11: {a: b}\n");
    assert!(message.contains("pkcs11"), "{message}");
}

#[test]
fn vault_uris_from_flat_fields_and_key_groups() {
    const V1: &str = "https://vault:8200/v1/transit/keys/a";
    const V2: &str = "https://vault:8200/v1/team/transit/keys/b";
    let rule = one_rule(&format!(
        "creation_rules:\n  - hc_vault_transit_uri: {V1}, {V2},{V1}\n"
    ));
    assert_eq!(rule.key_groups[0].vault, [V1, V2]);
    assert!(rule.key_groups[0].unsupported.is_empty());
    assert!(!rule.key_groups[0].is_empty());

    let rule = one_rule(&format!(
        "creation_rules:\n  - key_groups:\n      - hc_vault: [{V1}]\n        merge:\n          - hc_vault: [{V2}]\n      - age: [{AGE_A}]\n"
    ));
    assert_eq!(rule.key_groups[0].vault, [V2, V1], "merged keys come first");
    assert!(rule.key_groups[0].unsupported.is_empty());
    assert_eq!(rule.key_groups[1].age, [AGE_A]);
    assert!(rule.key_groups[1].vault.is_empty());
}

#[test]
fn kms_keys_take_role_context_and_profile() {
    let rule = one_rule(
        "creation_rules:\n  - kms: 'arn:aws:kms:us-east-1:1:key/a+arn:aws:iam::1:role/r, arn:aws:kms:us-east-1:1:key/b'\n    aws_profile: dev\n",
    );
    let kms = &rule.key_groups[0].kms;
    assert_eq!(
        kms[0],
        KmsSpec {
            arn: "arn:aws:kms:us-east-1:1:key/a".into(),
            role: "arn:aws:iam::1:role/r".into(),
            context: vec![],
            aws_profile: "dev".into(),
        }
    );
    assert_eq!(kms[1].arn, "arn:aws:kms:us-east-1:1:key/b");
    assert_eq!(kms[1].aws_profile, "dev");

    let rule = one_rule(&format!(
        "creation_rules:\n  - key_groups:\n      - kms:\n          - arn: arn:aws:kms:us-east-1:1:key/a\n            role: arn:aws:iam::1:role/r\n            context: {{app: web, env: prod}}\n            aws_profile: ops\n          - arn: arn:aws:kms:us-east-1:1:key/a\n            role: arn:aws:iam::1:role/r\n            context: {{app: web, env: prod}}\n            aws_profile: ops\n        age: [{AGE_A}]\n"
    ));
    let group = &rule.key_groups[0];
    assert_eq!(group.age, [AGE_A]);
    assert_eq!(
        group.kms,
        [KmsSpec {
            arn: "arn:aws:kms:us-east-1:1:key/a".into(),
            role: "arn:aws:iam::1:role/r".into(),
            context: vec![("app".into(), "web".into()), ("env".into(), "prod".into())],
            aws_profile: "ops".into(),
        }]
    );
    assert!(group.unsupported.is_empty());
    for bad in [
        "creation_rules:\n  - key_groups:\n      - kms: [{role: x}]\n",
        "creation_rules:\n  - key_groups:\n      - kms: [{arn: a, context: [x]}]\n",
        "creation_rules:\n  - key_groups:\n      - kms: arn:x\n",
    ] {
        assert!(
            parse(bad.as_bytes(), Path::new("/p/.sops.yaml")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn gcp_kms_keys_parse_flat_and_in_key_groups() {
    let flat = one_rule(
        "creation_rules:\n  - gcp_kms: 'projects/p/locations/l/keyRings/r/cryptoKeys/a, projects/p/locations/l/keyRings/r/cryptoKeys/b'\n",
    );
    assert_eq!(
        flat.key_groups[0].gcp_kms,
        [
            "projects/p/locations/l/keyRings/r/cryptoKeys/a",
            "projects/p/locations/l/keyRings/r/cryptoKeys/b"
        ]
    );
    let grouped = one_rule(
        "creation_rules:\n  - key_groups:\n      - gcp_kms:\n          - resource_id: projects/p/locations/l/keyRings/r/cryptoKeys/a\n          - projects/p/locations/l/keyRings/r/cryptoKeys/b\n          - resource_id: projects/p/locations/l/keyRings/r/cryptoKeys/a\n",
    );
    assert_eq!(
        grouped.key_groups[0].gcp_kms,
        [
            "projects/p/locations/l/keyRings/r/cryptoKeys/a",
            "projects/p/locations/l/keyRings/r/cryptoKeys/b"
        ]
    );
    assert!(grouped.key_groups[0].unsupported.is_empty());
    let message = invalid_message("creation_rules:\n  - key_groups:\n      - gcp_kms: [{}]\n");
    assert!(message.contains("gcp_kms"), "{message}");
}
