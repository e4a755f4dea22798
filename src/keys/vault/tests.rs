use super::*;

fn key(address: &str, engine: &str, name: &str) -> TransitKey {
    TransitKey {
        address: address.into(),
        engine_path: engine.into(),
        key_name: name.into(),
    }
}

#[test]
fn parses_key_uris_as_sops() {
    assert_eq!(
        TransitKey::parse("https://vault.example.org:8200/v1/transit/keys/dev").unwrap(),
        key("https://vault.example.org:8200", "transit", "dev")
    );
    // nested engine path; the segment before the name is dropped whatever it is
    assert_eq!(
        TransitKey::parse(" http://127.0.0.1:8200/v1/team/a/transit/keys/app/ ").unwrap(),
        key("http://127.0.0.1:8200", "team/a/transit", "app")
    );
    assert_eq!(
        TransitKey::parse("HTTPS://vault/v2/sops/key/k").unwrap(),
        key("https://vault", "sops", "k")
    );
    let uri = "https://vault.example.org:8200/v1/secret/sops/keys/my-key";
    let parsed = TransitKey::parse(uri).unwrap();
    assert_eq!(parsed.uri(), uri);
    let entry = KeyEntry::Vault {
        vault_address: parsed.address.clone(),
        engine_path: parsed.engine_path.clone(),
        key_name: parsed.key_name.clone(),
        created_at: String::new(),
        enc: String::new(),
    };
    assert_eq!(
        entry.name(),
        parsed.uri(),
        "rotate/updatekeys compare these"
    );
    assert_eq!(parsed.endpoint("encrypt"), "secret/sops/encrypt/my-key");
}

#[test]
fn rejects_malformed_uris() {
    for (uri, why) in [
        (
            "vault.example.org:8200/v1/transit/keys/dev",
            "missing scheme",
        ),
        ("://vault/v1/transit/keys/dev", "missing scheme"),
        ("https://vault/prefix/v1/transit/keys/dev", "prefixed URL"),
        ("https://vault/v1/transit/dev", "not formatted correctly"),
        ("https://vault/transit/keys/dev", "not formatted correctly"),
        ("https://vault", "not formatted correctly"),
        ("https:///v1/transit/keys/dev", "no host"),
        ("https://vault/v1/transit/keys/dev?x=1", "query"),
        ("https://vault/v1/../keys/dev", "segments"),
    ] {
        let err = TransitKey::parse(uri)
            .err()
            .unwrap_or_else(|| panic!("{uri}"));
        assert!(err.reason.contains(why), "{uri}: {}", err.reason);
        assert_eq!(err.kind, "hc_vault");
    }
}

#[test]
fn allowlist_follows_sops() {
    let all = Allowlist::parse(None).unwrap();
    assert!(all.allows("https://anything:8200"));
    assert_eq!(Allowlist::parse(Some("")).unwrap(), all);
    assert!(!Allowlist::parse(Some("none"))
        .unwrap()
        .allows("https://vault:8200"));
    let list = Allowlist::parse(Some(
        "https://vault.example.com:8200, http://127.0.0.1:8200/",
    ))
    .unwrap();
    assert!(list.allows("https://vault.example.com:8200"));
    assert!(list.allows("http://127.0.0.1:8200/"));
    // a prefix is a whole address: no other port, no look-alike host
    assert!(!list.allows("https://vault.example.com:82001"));
    assert!(!list.allows("https://vault.example.com:8200.evil.test"));
    assert!(!list.allows("http://127.0.0.1:8300"));
    let err = Allowlist::parse(Some("https://a,,https://b")).unwrap_err();
    assert!(err.contains("entry 2 is empty"), "{err}");
}

#[test]
fn json_bodies_escape_their_strings() {
    let body = json_object(&[("role", "a\"b\\c"), ("jwt", "x\ny")]);
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["role"], "a\"b\\c");
    assert_eq!(value["jwt"], "x\ny");
    assert_eq!(&*json_object(&[]), "{}");
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

#[test]
fn identity_ignores_other_entries() {
    let identity = VaultIdentity::from_env(env_of(&[]), None);
    let age = KeyEntry::Age {
        recipient: "age1x".into(),
        enc: String::new(),
    };
    assert!(identity.unwrap(&age).is_none());
}

#[test]
fn allowlist_refuses_before_any_request() {
    let identity = VaultIdentity::from_env(
        env_of(&[
            ("SOPS_HC_VAULT_ALLOWLIST", "https://vault.example.com"),
            ("VAULT_TOKEN", "hvs.do-not-print"),
        ]),
        None,
    );
    let entry = KeyEntry::Vault {
        // port 1 on loopback: a request would fail differently
        vault_address: "http://127.0.0.1:1".into(),
        engine_path: "transit".into(),
        key_name: "k".into(),
        created_at: String::new(),
        enc: "vault:v1:AAAA".into(),
    };
    let err = identity.unwrap(&entry).unwrap().err().unwrap();
    assert!(
        err.reason
            .contains("SOPS_HC_VAULT_ALLOWLIST does not allow http://127.0.0.1:1"),
        "{}",
        err.reason
    );
    assert_eq!(err.name, "http://127.0.0.1:1/v1/transit/keys/k");
}

#[test]
fn errors_name_the_key_and_never_the_token() {
    // Nothing listens on port 1: the connection fails.
    let recipient = VaultRecipient::with_env(
        TransitKey::parse("http://127.0.0.1:1/v1/transit/keys/k").unwrap(),
        env_of(&[("VAULT_TOKEN", "hvs.do-not-print")]),
        None,
    );
    let err = recipient.wrap(&KeyPart::new(vec![7; 32])).err().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("http://127.0.0.1:1/v1/transit/keys/k"),
        "{text}"
    );
    assert!(text.contains("is unreachable"), "{text}");
    assert!(!text.contains("do-not-print"), "{text}");
}

#[test]
fn timeouts_follow_the_network_policy_unless_vault_client_timeout_is_set() {
    let settings = |pairs: &[(&str, &str)]| Settings::from_env(&env_of(pairs), None);
    assert_eq!(settings(&[]).timeouts, net::Timeouts::default());
    let short = settings(&[("VEIL_KEY_SERVICE_TIMEOUT", "2")]);
    assert_eq!(short.timeouts.read, Duration::from_secs(2));
    assert_eq!(short.timeouts.connect, Duration::from_secs(2));
    let vault = settings(&[
        ("VEIL_KEY_SERVICE_TIMEOUT", "2"),
        ("VAULT_CLIENT_TIMEOUT", "90s"),
    ]);
    assert_eq!(vault.timeouts.read, Duration::from_secs(90));
    assert_eq!(vault.timeouts.connect, net::CONNECT_TIMEOUT);
    assert!(vault.invalid.is_none());
    for (name, value) in [
        ("VAULT_CLIENT_TIMEOUT", "soon"),
        ("VEIL_KEY_SERVICE_TIMEOUT", "0"),
    ] {
        let bad = settings(&[(name, value)]);
        let why = bad.invalid.expect("reported");
        assert!(why.contains(name), "{why}");
    }
}

#[test]
fn bad_settings_are_reported() {
    let identity = VaultIdentity::from_env(env_of(&[("VAULT_SKIP_VERIFY", "maybe")]), None);
    let entry = KeyEntry::Vault {
        vault_address: String::new(),
        engine_path: "transit".into(),
        key_name: "k".into(),
        created_at: String::new(),
        enc: String::new(),
    };
    let err = identity.unwrap(&entry).unwrap().err().unwrap();
    assert!(err.reason.contains("no vault_address"), "{}", err.reason);

    let identity = VaultIdentity::from_env(
        env_of(&[
            ("VAULT_SKIP_VERIFY", "maybe"),
            ("VAULT_ADDR", "http://127.0.0.1:1"),
        ]),
        None,
    );
    let err = identity.unwrap(&entry).unwrap().err().unwrap();
    assert!(err.reason.contains("VAULT_SKIP_VERIFY"), "{}", err.reason);

    let recipient = VaultRecipient::with_env(
        TransitKey::parse("http://127.0.0.1:1/v1/transit/keys/k").unwrap(),
        env_of(&[("VAULT_JWT_ROLE", "ci")]),
        None,
    );
    let err = recipient.wrap(&KeyPart::new(vec![1])).err().unwrap();
    assert!(err.reason.contains("VAULT_JWT"), "{}", err.reason);

    let recipient = VaultRecipient::with_env(
        TransitKey::parse("https://127.0.0.1:1/v1/transit/keys/k").unwrap(),
        env_of(&[("VAULT_CACERT", "/nonexistent/ca.pem")]),
        None,
    );
    let err = recipient.wrap(&KeyPart::new(vec![1])).err().unwrap();
    assert!(err.reason.contains("VAULT_CACERT"), "{}", err.reason);
}

#[test]
fn skip_verify_parses_like_go() {
    assert_eq!(parse_bool("1"), Some(true));
    assert_eq!(parse_bool("True"), Some(true));
    assert_eq!(parse_bool("f"), Some(false));
    assert_eq!(parse_bool("yes"), None);
}
