//! GCP KMS keys through the real binary, against the in-repo stand-in
//! (`tests/support/gcp_kms_server.rs`, Cloud KMS' published REST API on 127.0.0.1, port 0).
#![cfg(feature = "gcp")]

mod common;
#[path = "support/gcp_kms_server.rs"]
mod gcp_kms_server;
#[path = "support/http.rs"]
mod http;

use common::*;
use gcp_kms_server::GcpKmsServer;

const PLAIN: &str = "db:\n  user: app\n  password: hunter2\ntoken: s3cr3t\n";
const TOKEN: &str = "ya29.test-access-token-for-veil";
const KEY_A: &str = "projects/p/locations/global/keyRings/ring/cryptoKeys/a";
const KEY_B: &str = "projects/p/locations/europe-west1/keyRings/ring/cryptoKeys/b";

fn server() -> GcpKmsServer {
    GcpKmsServer::builder()
        .token(TOKEN)
        .key(KEY_A)
        .key(KEY_B)
        .start()
}

/// A sandbox pointed at `server` with the right token, holding the plain `app.yaml`.
fn sandbox(server: &GcpKmsServer) -> Sandbox {
    let mut sandbox = Sandbox::new();
    sandbox.write("app.yaml", PLAIN);
    sandbox.env("SOPS_GCP_KMS_ENDPOINT", &server.endpoint);
    sandbox.env("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN);
    sandbox
}

fn decrypts(sandbox: &Sandbox) {
    let out = ok(sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(out).unwrap(), PLAIN);
}

#[test]
fn encrypts_with_a_flag_writes_sops_metadata_and_decrypts_with_a_token() {
    let server = server();
    let sandbox = sandbox(&server);
    ok(sandbox.run(&["encrypt", "-i", "--gcp-kms", KEY_A, "app.yaml"], None));
    let text = sandbox.read("app.yaml");
    assert!(!text.contains("hunter2"));
    let entries = key_entries_of(&text, "gcp_kms");
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(field(entry, "resource_id"), KEY_A);
    let enc = field(entry, "enc");
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&enc)
        .expect("enc is standard base64");
    assert!(raw.len() > 32, "{enc}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(&field(entry, "created_at")).is_ok(),
        "{}",
        field(entry, "created_at")
    );
    let names: Vec<&str> = entry.keys().filter_map(|k| k.as_str()).collect();
    // sops writes the fields of a gcp_kms entry sorted.
    assert_eq!(names, ["created_at", "enc", "resource_id"]);

    // A fresh sandbox, only the endpoint and the token.
    let mut other = Sandbox::new();
    other.write("app.yaml", &text);
    other.env("SOPS_GCP_KMS_ENDPOINT", &server.endpoint);
    other.env("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN);
    decrypts(&other);

    // What the official client sent: the published REST paths, JSON, the bearer token.
    let seen = server.seen();
    assert!(seen.len() >= 2, "{seen:?}");
    assert_eq!(seen[0].path, format!("/v1/{KEY_A}:encrypt"));
    assert_eq!(seen.last().unwrap().path, format!("/v1/{KEY_A}:decrypt"));
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert!(request.query.contains("alt=json"), "{}", request.query);
        assert_eq!(
            request.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}

#[test]
fn encrypts_for_every_id_in_sops_gcp_kms_ids() {
    let server = server();
    let mut sandbox = sandbox(&server);
    sandbox.env("SOPS_GCP_KMS_IDS", format!("{KEY_A}, {KEY_B}"));
    ok(sandbox.run(&["encrypt", "-i", "app.yaml"], None));
    let ids: Vec<String> = key_entries_of(&sandbox.read("app.yaml"), "gcp_kms")
        .iter()
        .map(|e| field(e, "resource_id"))
        .collect();
    assert_eq!(ids, [KEY_A, KEY_B]);
    decrypts(&sandbox);
}

#[test]
fn a_wrong_key_or_token_fails_with_128_naming_the_key_and_not_the_token() {
    let server = server();
    let sandbox = sandbox(&server);
    ok(sandbox.run(&["encrypt", "-i", "--gcp-kms", KEY_A, "app.yaml"], None));
    let text = sandbox.read("app.yaml");

    // Another server whose key of that name is a different AES key.
    let impostor = GcpKmsServer::builder().token(TOKEN).key(KEY_A).start();
    let mut wrong_key = Sandbox::new();
    wrong_key.write("app.yaml", &text);
    wrong_key.env("SOPS_GCP_KMS_ENDPOINT", &impostor.endpoint);
    wrong_key.env("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN);
    let stderr = fails_with(wrong_key.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains(KEY_A), "{stderr}");
    assert!(stderr.contains("ciphertext is invalid"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");

    // The right server, a wrong token.
    let mut wrong_token = Sandbox::new();
    wrong_token.write("app.yaml", &text);
    wrong_token.env("SOPS_GCP_KMS_ENDPOINT", &server.endpoint);
    wrong_token.env("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.not-the-token");
    let stderr = fails_with(wrong_token.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains(KEY_A), "{stderr}");
    assert!(!stderr.contains("ya29.not-the-token"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");

    // A key the service does not have, when encrypting: the command fails naming it.
    let missing = "projects/p/locations/global/keyRings/ring/cryptoKeys/missing";
    let fresh = self::sandbox(&server);
    let output = fresh.run(&["encrypt", "--gcp-kms", missing, "app.yaml"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(missing), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");

    // Not a CryptoKey resource ID: refused before any request.
    let before = server.seen().len();
    let output = fresh.run(
        &["encrypt", "--gcp-kms", "projects/p/keyRings/r", "app.yaml"],
        None,
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no valid resource ID"));
    assert_eq!(server.seen().len(), before);
}

#[test]
fn a_creation_rule_with_gcp_kms_and_age_in_a_key_group() {
    let server = server();
    let sandbox = sandbox(&server);
    let Some(age) = sandbox.age_identity() else {
        return;
    };
    sandbox.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - path_regex: app\\.yaml$\n    key_groups:\n      - gcp_kms:\n          - resource_id: {KEY_A}\n        age:\n          - {age}\n"
        ),
    );
    ok(sandbox.run(&["encrypt", "-i", "app.yaml"], None));
    let text = sandbox.read("app.yaml");
    let entries = key_entries_of(&text, "gcp_kms");
    assert_eq!(entries.len(), 1);
    assert_eq!(field(&entries[0], "resource_id"), KEY_A);
    assert!(text.contains(&age));

    // Either key opens it: GCP alone (no age key file) …
    let mut gcp_only = Sandbox::new();
    gcp_only.write("app.yaml", &text);
    gcp_only.env("SOPS_GCP_KMS_ENDPOINT", &server.endpoint);
    gcp_only.env("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN);
    decrypts(&gcp_only);
    // … and age alone, with GCP unreachable.
    let mut age_only = self::sandbox(&server);
    age_only.env("SOPS_GCP_KMS_ENDPOINT", "http://127.0.0.1:9");
    std::fs::create_dir_all(age_only.home().join(".config/sops/age")).unwrap();
    std::fs::copy(
        sandbox.home().join(".config/sops/age/keys.txt"),
        age_only.home().join(".config/sops/age/keys.txt"),
    )
    .unwrap();
    age_only.write("app.yaml", &text);
    decrypts(&age_only);
}

#[test]
fn rotate_removes_and_adds_gcp_keys_and_groups_add_takes_gcp_kms() {
    let server = server();
    let sandbox = sandbox(&server);
    ok(sandbox.run(
        &[
            "encrypt",
            "-i",
            "--gcp-kms",
            &format!("{KEY_A},{KEY_B}"),
            "app.yaml",
        ],
        None,
    ));
    assert_eq!(
        key_entries_of(&sandbox.read("app.yaml"), "gcp_kms").len(),
        2
    );

    ok(sandbox.run(&["rotate", "-i", "--rm-gcp-kms", KEY_B, "app.yaml"], None));
    let entries = key_entries_of(&sandbox.read("app.yaml"), "gcp_kms");
    assert_eq!(entries.len(), 1);
    assert_eq!(field(&entries[0], "resource_id"), KEY_A);
    decrypts(&sandbox);

    ok(sandbox.run(&["rotate", "-i", "--add-gcp-kms", KEY_B, "app.yaml"], None));
    let ids: Vec<String> = key_entries_of(&sandbox.read("app.yaml"), "gcp_kms")
        .iter()
        .map(|e| field(e, "resource_id"))
        .collect();
    assert_eq!(ids, [KEY_A, KEY_B]);
    decrypts(&sandbox);

    ok(sandbox.run(
        &["groups", "add", "-i", "-f", "app.yaml", "--gcp-kms", KEY_B],
        None,
    ));
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&sandbox.read("app.yaml")).unwrap();
    let groups = doc["sops"]["key_groups"].as_sequence().expect("key_groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1]["gcp_kms"][0]["resource_id"].as_str(), Some(KEY_B));
    decrypts(&sandbox);
}

#[test]
fn google_credentials_json_is_used_before_the_token() {
    // GOOGLE_CREDENTIALS takes precedence (as in sops): an unusable one fails, naming the variable.
    let server = server();
    let mut sandbox = sandbox(&server);
    sandbox.env("GOOGLE_CREDENTIALS", "{\"type\": \"mystery\"}");
    let output = sandbox.run(&["encrypt", "--gcp-kms", KEY_A, "app.yaml"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GOOGLE_CREDENTIALS"), "{stderr}");
    assert!(server.seen().is_empty());
}

#[test]
fn an_unreachable_service_fails_with_128() {
    let server = server();
    let sandbox = sandbox(&server);
    ok(sandbox.run(&["encrypt", "-i", "--gcp-kms", KEY_A, "app.yaml"], None));
    let mut away = Sandbox::new();
    away.write("app.yaml", sandbox.read("app.yaml"));
    away.env(
        "SOPS_GCP_KMS_ENDPOINT",
        format!("http://127.0.0.1:{}", closed_port()),
    );
    away.env("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN);
    let stderr = fails_with(away.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains(&format!("gcp_kms {KEY_A}: ")), "{stderr}");
    assert!(stderr.contains("GCP KMS is unreachable"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
}
