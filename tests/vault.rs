//! HashiCorp Vault / OpenBao transit keys through the real binary, against the in-repo stand-in
//! (`tests/support/vault_server.rs`, Vault's published transit API on 127.0.0.1, port 0).
#![cfg(feature = "vault")]

mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/vault_server.rs"]
mod vault_server;

use common::*;
use http::test_certificates;
use vault_server::VaultServer;

const PLAIN: &str = "db:\n  user: app\n  password: hunter2\ntoken: s3cr3t\n";
const TOKEN: &str = "hvs.root-token-for-tests";

fn server() -> VaultServer {
    VaultServer::builder()
        .token(TOKEN)
        .key("transit", "app")
        .key("team/transit", "other")
        .approle("approle", "role-1", "secret-1")
        .approle("ci-approle", "role-2", "secret-2")
        .kubernetes("kubernetes", "k8s-role", "k8s.jwt.value")
        .jwt("jwt", "ci", "ci.jwt.value")
        .start()
}

fn sops_block(text: &str) -> serde_yaml_ng::Value {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
    doc["sops"].clone()
}

/// A sandbox with `app.yaml` encrypted for the `transit/app` key (VAULT_TOKEN set for it).
fn encrypted(server: &VaultServer) -> Sandbox {
    let mut sandbox = Sandbox::new();
    sandbox.write("app.yaml", PLAIN);
    sandbox.env("VAULT_TOKEN", TOKEN);
    let uri = server.uri("transit", "app");
    ok(sandbox.run(
        &["encrypt", "-i", "--hc-vault-transit", &uri, "app.yaml"],
        None,
    ));
    sandbox
}

/// A sandbox without any Vault variable, holding a copy of `from`'s encrypted file.
fn fresh_copy(from: &Sandbox) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.write("app.yaml", from.read("app.yaml"));
    sandbox
}

fn decrypts(sandbox: &Sandbox) {
    let out = ok(sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(out).unwrap(), PLAIN);
}

#[test]
fn encrypts_with_a_transit_key_and_writes_sops_metadata() {
    let server = server();
    let sandbox = encrypted(&server);
    let text = sandbox.read("app.yaml");
    assert!(!text.contains("hunter2"));
    let sops = sops_block(&text);
    let entries = sops["hc_vault"].as_sequence().expect("hc_vault list");
    assert_eq!(entries.len(), 1);
    let entry = entries[0].as_mapping().unwrap();
    let field = |name: &str| entry[name].as_str().unwrap_or_default().to_string();
    assert_eq!(field("vault_address"), server.address);
    assert_eq!(field("engine_path"), "transit");
    assert_eq!(field("key_name"), "app");
    assert!(field("enc").starts_with("vault:v1:"), "{}", field("enc"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(&field("created_at")).is_ok(),
        "{}",
        field("created_at")
    );
    let names: Vec<&str> = entry.keys().filter_map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "created_at",
            "enc",
            "engine_path",
            "key_name",
            "vault_address"
        ],
        "sorted field order"
    );
    decrypts(&sandbox);
    // every request carried the token in its header, none in its URL
    let seen = server.seen();
    assert!(seen.iter().any(|s| s.path == "/v1/transit/encrypt/app"));
    assert!(seen.iter().any(|s| s.path == "/v1/transit/decrypt/app"));
    for request in &seen {
        assert_eq!(
            request.headers.get("x-vault-token").map(String::as_str),
            Some(TOKEN)
        );
        assert!(!request.path.contains(TOKEN));
    }
}

#[test]
fn decrypts_with_the_vault_token_file() {
    let server = server();
    let sandbox = fresh_copy(&encrypted(&server));
    std::fs::write(sandbox.home().join(".vault-token"), format!("{TOKEN}\n")).unwrap();
    decrypts(&sandbox);
}

#[test]
fn a_wrong_token_fails_with_128_naming_the_key_and_not_the_token() {
    let server = server();
    let mut sandbox = fresh_copy(&encrypted(&server));
    sandbox.env("VAULT_TOKEN", "hvs.wrong-token-value");
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains(&server.uri("transit", "app")), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(!stderr.contains("wrong-token-value"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

#[test]
fn an_unreachable_server_fails_with_128_naming_the_key() {
    let server = server();
    let text = encrypted(&server).read("app.yaml");
    let port = format!("127.0.0.1:{}", server.port);
    assert!(text.contains(&port), "{text}");
    let closed = format!("127.0.0.1:{}", closed_port());
    let mut sandbox = Sandbox::new();
    sandbox.write("app.yaml", text.replace(&port, &closed));
    sandbox.env("VAULT_TOKEN", TOKEN);
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
    let key = format!("http://{closed}/v1/transit/keys/app");
    assert!(stderr.contains(&format!("hc_vault {key}: ")), "{stderr}");
    assert!(stderr.contains("is unreachable"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

#[test]
fn a_sealed_server_is_asked_again_a_bounded_number_of_times() {
    let server = server();
    let sandbox = encrypted(&server);
    let decrypts_seen = || {
        server
            .seen()
            .iter()
            .filter(|s| s.path.contains("/decrypt/"))
            .count()
    };
    // Two 503s, then an answer: the third attempt opens the file.
    server.answer_unavailable(2);
    decrypts(&sandbox);
    assert_eq!(decrypts_seen(), 3);
    // Always 503: three attempts in all, then 128 with Vault's message.
    server.answer_unavailable(usize::MAX);
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains("503"), "{stderr}");
    assert!(stderr.contains("Vault is sealed"), "{stderr}");
    assert_eq!(decrypts_seen(), 6);
    server.answer_unavailable(0);
}

#[test]
fn no_token_at_all_fails_with_a_hint() {
    let server = server();
    let sandbox = fresh_copy(&encrypted(&server));
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains("VAULT_TOKEN"), "{stderr}");
}

#[test]
fn logs_in_with_approle() {
    let server = server();
    let mut sandbox = fresh_copy(&encrypted(&server));
    sandbox
        .env("VAULT_ROLE_ID", "role-1")
        .env("VAULT_SECRET_ID", "secret-1");
    decrypts(&sandbox);
    assert_eq!(server.logins(), 1);
    let login = server
        .seen()
        .into_iter()
        .find(|s| s.path == "/v1/auth/approle/login")
        .expect("an AppRole login");
    assert!(!login.headers.contains_key("x-vault-token"));

    // another mount, and a bad secret that must not be printed
    let mut other = fresh_copy(&sandbox);
    other
        .env("VAULT_ROLE_ID", "role-2")
        .env("VAULT_SECRET_ID", "secret-2")
        .env("VAULT_AUTH_MOUNT", "ci-approle");
    decrypts(&other);
    let mut bad = fresh_copy(&sandbox);
    bad.env("VAULT_ROLE_ID", "role-1")
        .env("VAULT_SECRET_ID", "not-the-secret");
    let stderr = fails_with(bad.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains("AppRole login failed"), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
}

#[test]
fn logs_in_with_a_kubernetes_service_account() {
    let server = server();
    let mut sandbox = fresh_copy(&encrypted(&server));
    let token_file = sandbox.write("sa/token", "k8s.jwt.value\n");
    sandbox
        .env("VAULT_K8S_ROLE", "k8s-role")
        .env("VAULT_K8S_TOKEN_PATH", token_file.to_string_lossy());
    decrypts(&sandbox);
    assert!(server
        .seen()
        .iter()
        .any(|s| s.path == "/v1/auth/kubernetes/login"));
}

#[test]
fn logs_in_with_a_jwt_from_a_variable_or_a_file() {
    let server = server();
    let base = encrypted(&server);
    let mut by_value = fresh_copy(&base);
    by_value
        .env("VAULT_JWT_ROLE", "ci")
        .env("VAULT_JWT", "ci.jwt.value");
    decrypts(&by_value);
    let mut by_file = fresh_copy(&base);
    let jwt = by_file.write("ci.jwt", "ci.jwt.value");
    by_file
        .env("VAULT_JWT_ROLE", "ci")
        .env("VAULT_JWT_PATH", jwt.to_string_lossy());
    decrypts(&by_file);
    let mut wrong = fresh_copy(&base);
    wrong
        .env("VAULT_JWT_ROLE", "ci")
        .env("VAULT_JWT", "forged.jwt.value");
    let stderr = fails_with(wrong.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains("JWT login failed"), "{stderr}");
    assert!(!stderr.contains("forged.jwt.value"), "{stderr}");
}

#[test]
fn a_ciphertext_only_opens_under_its_own_key() {
    let server = server();
    let mut sandbox = encrypted(&server);
    // point the entry at the other key: real AES-GCM refuses it
    let text = sandbox
        .read("app.yaml")
        .replace("engine_path: transit", "engine_path: team/transit")
        .replace("key_name: app", "key_name: other");
    sandbox.write("app.yaml", text);
    sandbox.env("VAULT_TOKEN", TOKEN);
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains("message authentication failed"), "{stderr}");
}

#[test]
fn sops_vault_uris_and_a_creation_rule_with_a_nested_engine() {
    let server = server();
    let mut sandbox = Sandbox::new();
    sandbox.env("VAULT_TOKEN", TOKEN);
    sandbox.write("a.yaml", PLAIN);
    sandbox.env("SOPS_VAULT_URIS", server.uri("team/transit", "other"));
    ok(sandbox.run(&["encrypt", "-i", "a.yaml"], None));
    let sops = sops_block(&sandbox.read("a.yaml"));
    assert_eq!(
        sops["hc_vault"][0]["engine_path"].as_str(),
        Some("team/transit")
    );

    let mut sandbox = Sandbox::new();
    sandbox.env("VAULT_TOKEN", TOKEN);
    sandbox.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - path_regex: secrets/\n    hc_vault_transit_uri: \"{},{}\"\n",
            server.uri("transit", "app"),
            server.uri("team/transit", "other")
        ),
    );
    sandbox.write("secrets/app.yaml", PLAIN);
    ok(sandbox.run(&["encrypt", "-i", "secrets/app.yaml"], None));
    let sops = sops_block(&sandbox.read("secrets/app.yaml"));
    let keys: Vec<&str> = sops["hc_vault"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| e["key_name"].as_str())
        .collect();
    assert_eq!(keys, ["app", "other"]);
    let out = ok(sandbox.run(&["decrypt", "secrets/app.yaml"], None));
    assert_eq!(String::from_utf8(out).unwrap(), PLAIN);
    // updatekeys sees the file as matching its rule
    let out = sandbox.run(&["updatekeys", "-y", "secrets/app.yaml"], None);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("already up to date"), "{stderr}");
}

#[test]
fn key_groups_mix_vault_and_age() {
    let server = server();
    let mut sandbox = Sandbox::new();
    let Some(age) = sandbox.age_identity() else {
        return;
    };
    sandbox.env("VAULT_TOKEN", TOKEN);
    sandbox.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - shamir_threshold: 2\n    key_groups:\n      - age: [{age}]\n      - hc_vault: [{}]\n",
            server.uri("transit", "app")
        ),
    );
    sandbox.write("app.yaml", PLAIN);
    ok(sandbox.run(&["encrypt", "-i", "app.yaml"], None));
    let sops = sops_block(&sandbox.read("app.yaml"));
    assert_eq!(sops["key_groups"].as_sequence().unwrap().len(), 2);
    assert_eq!(
        sops["key_groups"][1]["hc_vault"][0]["key_name"].as_str(),
        Some("app")
    );
    let out = ok(sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(out).unwrap(), PLAIN);

    // the age key alone is one share of two: not enough
    let mut no_vault = Sandbox::new();
    no_vault.age_identity();
    std::fs::copy(
        sandbox.home().join(".config/sops/age/keys.txt"),
        no_vault.home().join(".config/sops/age/keys.txt"),
    )
    .unwrap();
    no_vault.write("app.yaml", sandbox.read("app.yaml"));
    no_vault.env("VAULT_TOKEN", "hvs.nope");
    let stderr = fails_with(no_vault.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains("1 of the 2 key groups"), "{stderr}");
    assert!(!stderr.contains("hvs.nope"), "{stderr}");

    // one group holding both: age opens it without asking Vault
    let before = server.seen().len();
    let both = Sandbox::new();
    let uri = server.uri("transit", "app");
    both.write("b.yaml", PLAIN);
    let mut both = both;
    both.env("VAULT_TOKEN", TOKEN);
    let Some(age2) = both.age_identity() else {
        return;
    };
    ok(both.run(
        &[
            "encrypt",
            "-i",
            "--age",
            &age2,
            "--hc-vault-transit",
            &uri,
            "b.yaml",
        ],
        None,
    ));
    let after_encrypt = server.seen().len();
    assert_eq!(after_encrypt, before + 1, "one wrap");
    let out = ok(both.run(&["decrypt", "b.yaml"], None));
    assert_eq!(String::from_utf8(out).unwrap(), PLAIN);
    assert_eq!(server.seen().len(), after_encrypt, "age is tried first");
}

#[test]
fn rotate_adds_and_removes_vault_keys() {
    let server = server();
    let mut sandbox = Sandbox::new();
    let Some(age) = sandbox.age_identity() else {
        return;
    };
    sandbox.env("VAULT_TOKEN", TOKEN);
    sandbox.write("app.yaml", PLAIN);
    let app = server.uri("transit", "app");
    let other = server.uri("team/transit", "other");
    ok(sandbox.run(
        &[
            "encrypt",
            "-i",
            "--age",
            &age,
            "--hc-vault-transit",
            &app,
            "app.yaml",
        ],
        None,
    ));
    ok(sandbox.run(
        &["rotate", "-i", "--add-hc-vault-transit", &other, "app.yaml"],
        None,
    ));
    let sops = sops_block(&sandbox.read("app.yaml"));
    assert_eq!(sops["hc_vault"].as_sequence().unwrap().len(), 2);

    ok(sandbox.run(
        &[
            "rotate",
            "-i",
            "--rm-hc-vault-transit",
            &format!("{app},{other}"),
            "app.yaml",
        ],
        None,
    ));
    let sops = sops_block(&sandbox.read("app.yaml"));
    assert!(
        sops.get("hc_vault")
            .is_none_or(|v| v.as_sequence().is_none_or(|s| s.is_empty())),
        "{sops:?}"
    );
    assert_eq!(sops["age"].as_sequence().unwrap().len(), 1);
    let out = ok(sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(out).unwrap(), PLAIN);
}

#[test]
fn https_with_vault_cacert_and_namespace() {
    let certs = test_certificates();
    let ca = certs.ca_pem;
    let server = VaultServer::builder()
        .token(TOKEN)
        .key("transit", "app")
        .tls(&certs.leaf_pem, &certs.leaf_key_pem)
        .start();
    assert!(server.address.starts_with("https://127.0.0.1:"));
    let mut sandbox = Sandbox::new();
    let ca_file = sandbox.write("ca.pem", &ca);
    sandbox.write("app.yaml", PLAIN);
    let uri = server.uri("transit", "app");

    // without the CA the server is not trusted
    let mut untrusted = Sandbox::new();
    untrusted.write("app.yaml", PLAIN);
    untrusted.env("VAULT_TOKEN", TOKEN);
    let stderr = fails_with(
        untrusted.run(&["encrypt", "--hc-vault-transit", &uri, "app.yaml"], None),
        1,
    );
    assert!(stderr.contains("cannot reach Vault"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");

    sandbox
        .env("VAULT_TOKEN", TOKEN)
        .env("VAULT_CACERT", ca_file.to_string_lossy())
        .env("VAULT_NAMESPACE", "team-a");
    ok(sandbox.run(
        &["encrypt", "-i", "--hc-vault-transit", &uri, "app.yaml"],
        None,
    ));
    decrypts(&sandbox);
    let seen = server.seen();
    assert!(seen.len() >= 2);
    assert!(seen
        .iter()
        .all(|s| s.headers.get("x-vault-namespace").map(String::as_str) == Some("team-a")));

    // VAULT_SKIP_VERIFY, as the Vault client honours it
    let mut skip = fresh_copy(&sandbox);
    skip.env("VAULT_TOKEN", TOKEN)
        .env("VAULT_SKIP_VERIFY", "true");
    decrypts(&skip);
}

#[test]
fn the_allowlist_refuses_other_addresses_before_sending_anything() {
    let server = server();
    let base = encrypted(&server);
    let before = server.seen().len();
    let mut sandbox = fresh_copy(&base);
    sandbox
        .env("VAULT_TOKEN", TOKEN)
        .env("SOPS_HC_VAULT_ALLOWLIST", "https://vault.example.com:8200");
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains("SOPS_HC_VAULT_ALLOWLIST"), "{stderr}");
    assert_eq!(server.seen().len(), before, "no request was sent");
    let mut allowed = fresh_copy(&base);
    allowed.env("VAULT_TOKEN", TOKEN).env(
        "SOPS_HC_VAULT_ALLOWLIST",
        format!("https://other, {}", server.address),
    );
    decrypts(&allowed);
}

#[test]
fn a_malformed_uri_is_refused_before_encrypting() {
    let sandbox = Sandbox::new();
    sandbox.write("app.yaml", PLAIN);
    let stderr = fails_with(
        sandbox.run(
            &[
                "encrypt",
                "--hc-vault-transit",
                "https://vault/prefix/v1/transit/keys/k",
                "app.yaml",
            ],
            None,
        ),
        1,
    );
    assert!(stderr.contains("prefixed URL"), "{stderr}");
}

#[test]
fn groups_add_takes_a_vault_key() {
    let server = server();
    let mut sandbox = Sandbox::new();
    let Some(age) = sandbox.age_identity() else {
        return;
    };
    sandbox.env("VAULT_TOKEN", TOKEN);
    sandbox.write("app.yaml", PLAIN);
    ok(sandbox.run(&["encrypt", "-i", "--age", &age, "app.yaml"], None));
    let uri = server.uri("transit", "app");
    ok(sandbox.run(
        &[
            "groups",
            "add",
            "-i",
            "--file",
            "app.yaml",
            "--hc-vault-transit",
            &uri,
        ],
        None,
    ));
    let sops = sops_block(&sandbox.read("app.yaml"));
    assert_eq!(
        sops["key_groups"][1]["hc_vault"][0]["key_name"].as_str(),
        Some("app")
    );
    decrypts(&sandbox);
}
