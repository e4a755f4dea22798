//! PKCS#11 keys through the real binary, each test with a fresh SoftHSM2 token in its sandbox
//! (its own SOFTHSM2_CONF and token directory). Skipped when softhsm2 / opensc are missing.
#![cfg(feature = "pkcs11")]

mod common;
#[path = "support/softhsm.rs"]
mod softhsm;

use common::*;
use softhsm::*;

const PLAIN: &str = "db:\n  password: hunter2\nport: 5432\n";

fn yaml(text: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn aes_gcm_key_encrypts_and_decrypts_with_a_pin_file_and_from_env() {
    let Some(mut hsm) = Hsm::new("veil-aes") else {
        return;
    };
    let uri = hsm.uri("object=sops-aes;type=secret-key", &hsm.pin_source());
    hsm.sandbox.write("app.yaml", PLAIN);
    let encrypted = ok(hsm
        .sandbox
        .run(&["encrypt", "--pkcs11", &uri, "app.yaml"], None));
    let text = String::from_utf8(encrypted).unwrap();
    hsm.sandbox.write("app.enc.yaml", &text);

    // The metadata, read back with an independent YAML parser.
    let doc = yaml(&text);
    let entries = doc["sops"]["pkcs11"].as_sequence().expect("pkcs11 list");
    assert_eq!(entries.len(), 1);
    let entry = entries[0].as_mapping().unwrap();
    let fields: Vec<&str> = entry.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(fields, ["created_at", "enc", "uri"]);
    assert_eq!(entries[0]["uri"].as_str(), Some(uri.as_str()));
    let enc = entries[0]["enc"].as_str().unwrap();
    use base64::Engine;
    let envelope = base64::engine::general_purpose::STANDARD
        .decode(enc)
        .unwrap();
    assert_eq!(&envelope[..2], &[1, 1], "version 1, AES-GCM");
    assert_eq!(envelope.len(), 2 + 12 + 32 + 16, "IV, data key, tag");
    assert!(
        doc["sops"]["age"].is_null(),
        "no empty age list at top level"
    );

    // PIN from the URI's pin-source.
    let plain = ok(hsm.sandbox.run(&["decrypt", "app.enc.yaml"], None));
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);

    // Keys named without pin-source: the PIN comes from VEIL_PKCS11_PIN or VEIL_PKCS11_PIN_FILE.
    let bare = hsm.uri("object=sops-aes", "");
    hsm.sandbox.env("VEIL_PKCS11_PIN", PIN);
    ok(hsm.sandbox.run(
        &[
            "encrypt",
            "--pkcs11",
            &bare,
            "--output",
            "bare.enc.yaml",
            "app.yaml",
        ],
        None,
    ));
    let plain = ok(hsm.sandbox.run(&["decrypt", "bare.enc.yaml"], None));
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);

    let mut other = Sandbox::new();
    let conf = hsm.sandbox.dir.path().join("softhsm/softhsm2.conf");
    other.env("SOFTHSM2_CONF", conf.display().to_string());
    other.env("VEIL_PKCS11_PIN_FILE", hsm.pin_file.display().to_string());
    other.write("bare.enc.yaml", hsm.sandbox.read("bare.enc.yaml"));
    let plain = ok(other.run(&["decrypt", "bare.enc.yaml"], None));
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);

    // VEIL_PKCS11_URIS names the recipients like --pkcs11.
    other.env("VEIL_PKCS11_URIS", bare.as_str());
    other.write("app.yaml", PLAIN);
    let text = String::from_utf8(ok(other.run(&["encrypt", "app.yaml"], None))).unwrap();
    assert!(text.contains("pkcs11:"), "{text}");
}

#[test]
fn wrong_pin_fails_with_128_naming_the_uri_and_never_the_pin() {
    let Some(mut hsm) = Hsm::new("veil-pin") else {
        return;
    };
    let uri = hsm.uri("object=sops-aes", "");
    hsm.sandbox.env("VEIL_PKCS11_PIN", PIN);
    hsm.sandbox.write("app.yaml", PLAIN);
    ok(hsm
        .sandbox
        .run(&["encrypt", "-i", "--pkcs11", &uri, "app.yaml"], None));

    let mut wrong = Sandbox::new();
    let conf = hsm.sandbox.dir.path().join("softhsm/softhsm2.conf");
    wrong.env("SOFTHSM2_CONF", conf.display().to_string());
    wrong.env("VEIL_PKCS11_PIN", WRONG_PIN);
    wrong.write("app.yaml", hsm.sandbox.read("app.yaml"));
    let stderr = fails_with(wrong.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains(&uri), "{stderr}");
    assert!(stderr.contains("refused the PIN"), "{stderr}");
    assert!(
        !stderr.contains(WRONG_PIN) && !stderr.contains(PIN),
        "{stderr}"
    );

    // No PIN at all: says where one can come from.
    let mut none = Sandbox::new();
    none.env("SOFTHSM2_CONF", conf.display().to_string());
    none.write("app.yaml", hsm.sandbox.read("app.yaml"));
    let stderr = fails_with(none.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains("VEIL_PKCS11_PIN"), "{stderr}");

    // A pin-value in the URI is refused, and not echoed.
    let with_value = hsm.uri("object=sops-aes", &format!("&pin-value={PIN}"));
    hsm.sandbox.write("plain.yaml", PLAIN);
    let stderr = fails_with(
        hsm.sandbox
            .run(&["encrypt", "--pkcs11", &with_value, "plain.yaml"], None),
        1,
    );
    assert!(stderr.contains("VEIL_PKCS11_ALLOW_PIN_VALUE"), "{stderr}");
    assert!(!stderr.contains(PIN), "{stderr}");
}

#[test]
fn pin_value_is_allowed_on_request_and_not_stored() {
    let Some(mut hsm) = Hsm::new("veil-pv") else {
        return;
    };
    hsm.sandbox.env("VEIL_PKCS11_ALLOW_PIN_VALUE", "1");
    let with_value = hsm.uri("object=sops-aes", &format!("&pin-value={PIN}"));
    hsm.sandbox.write("app.yaml", PLAIN);
    let text = String::from_utf8(ok(hsm
        .sandbox
        .run(&["encrypt", "--pkcs11", &with_value, "app.yaml"], None)))
    .unwrap();
    assert!(!text.contains("pin-value") && !text.contains(PIN), "{text}");
    assert_eq!(
        yaml(&text)["sops"]["pkcs11"][0]["uri"].as_str(),
        Some(hsm.uri("object=sops-aes", "").as_str())
    );
}

#[test]
fn rsa_oaep_key_wraps_with_the_public_key_and_unwraps_with_the_private_one() {
    let Some(mut hsm) = Hsm::new("veil-rsa") else {
        return;
    };
    let uri = hsm.uri("object=sops-rsa;type=public", "");
    hsm.sandbox.write("app.yaml", PLAIN);
    // Wrapping with the public key needs no PIN.
    ok(hsm
        .sandbox
        .run(&["encrypt", "-i", "--pkcs11", &uri, "app.yaml"], None));
    let text = hsm.sandbox.read("app.yaml");
    let enc = yaml(&text)["sops"]["pkcs11"][0]["enc"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine;
    let envelope = base64::engine::general_purpose::STANDARD
        .decode(enc)
        .unwrap();
    assert_eq!(envelope[0], 1);
    assert!(matches!(envelope[1], 2 | 3), "RSA-OAEP");
    assert_eq!(envelope.len(), 2 + 256);

    hsm.sandbox.env("VEIL_PKCS11_PIN", PIN);
    let plain = ok(hsm.sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);

    // By id (percent-encoded), without type: the AES key with id 01 is found first.
    let by_id = hsm.uri("id=%01", "");
    hsm.sandbox.write("plain.yaml", PLAIN);
    ok(hsm.sandbox.run(
        &[
            "encrypt",
            "--pkcs11",
            &by_id,
            "--output",
            "id.enc.yaml",
            "plain.yaml",
        ],
        None,
    ));
    assert!(ok(hsm.sandbox.run(&["decrypt", "id.enc.yaml"], None)).len() > 10);
}

#[test]
fn key_groups_with_pkcs11_and_age_combine_shamir_shares() {
    let Some(hsm) = Hsm::new("veil-groups") else {
        return;
    };
    let Some(age) = hsm.sandbox.age_identity() else {
        return;
    };
    let uri = hsm.uri("object=sops-aes", &hsm.pin_source());
    let rsa = hsm.uri("object=sops-rsa;type=public", "");
    hsm.sandbox.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - shamir_threshold: 2\n    key_groups:\n      - pkcs11:\n          - {uri}\n      - age: [{age}]\n      - pkcs11: [{rsa}]\n"
        ),
    );
    hsm.sandbox.write("app.yaml", PLAIN);
    ok(hsm.sandbox.run(&["encrypt", "-i", "app.yaml"], None));
    let text = hsm.sandbox.read("app.yaml");
    let doc = yaml(&text);
    let groups = doc["sops"]["key_groups"].as_sequence().expect("key_groups");
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[0]["pkcs11"][0]["uri"].as_str(), Some(uri.as_str()));
    assert_eq!(groups[2]["pkcs11"][0]["uri"].as_str(), Some(rsa.as_str()));
    assert_eq!(doc["sops"]["shamir_threshold"].as_u64(), Some(2));

    // Group 1 (pin-source) and group 2 (age) are enough; group 3 needs a PIN nobody gave.
    let plain = ok(hsm.sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);

    // Without the age key only one group opens: 128, with the per-group report.
    std::fs::remove_file(hsm.sandbox.home().join(".config/sops/age/keys.txt")).unwrap();
    let stderr = fails_with(hsm.sandbox.run(&["decrypt", "app.yaml"], None), 128);
    assert!(stderr.contains("1 of the 2"), "{stderr}");
    assert!(stderr.contains(&rsa), "{stderr}");
}

#[test]
fn rotate_adds_and_removes_pkcs11_keys() {
    let Some(mut hsm) = Hsm::new("veil-rotate") else {
        return;
    };
    let Some(age) = hsm.sandbox.age_identity() else {
        return;
    };
    hsm.sandbox.env("VEIL_PKCS11_PIN", PIN);
    let aes = hsm.uri("object=sops-aes", "");
    let rsa = hsm.uri("object=sops-rsa;type=public", "");
    hsm.sandbox.write("app.yaml", PLAIN);
    ok(hsm.sandbox.run(
        &["encrypt", "-i", "--age", &age, "--pkcs11", &aes, "app.yaml"],
        None,
    ));
    ok(hsm
        .sandbox
        .run(&["rotate", "-i", "--add-pkcs11", &rsa, "app.yaml"], None));
    let uris = |hsm: &Hsm| -> Vec<String> {
        yaml(&hsm.sandbox.read("app.yaml"))["sops"]["pkcs11"]
            .as_sequence()
            .map(|s| {
                s.iter()
                    .map(|e| e["uri"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(uris(&hsm), [aes.clone(), rsa.clone()]);

    // Removed however the URI is written (attribute order, a pin-value).
    let aes_reordered = format!(
        "pkcs11:object=sops-aes;token={}?pin-value=0000&module-path={MODULE}",
        hsm.label
    );
    ok(hsm.sandbox.run(
        &["rotate", "-i", "--rm-pkcs11", &aes_reordered, "app.yaml"],
        None,
    ));
    assert_eq!(uris(&hsm), [rsa]);
    let text = hsm.sandbox.read("app.yaml");
    assert!(yaml(&text)["sops"]["age"].as_sequence().is_some());
    let plain = ok(hsm.sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);
}

#[test]
fn a_module_path_outside_the_system_directories_is_not_loaded() {
    let Some(mut hsm) = Hsm::new("veil-module") else {
        return;
    };
    hsm.sandbox.env("VEIL_PKCS11_PIN", PIN);
    let copy = hsm.sandbox.dir.path().join("libcopy.so");
    std::fs::copy(MODULE, &copy).unwrap();
    let uri = format!(
        "pkcs11:token={};object=sops-aes?module-path={}",
        hsm.label,
        copy.display()
    );
    hsm.sandbox.write("app.yaml", PLAIN);
    let stderr = fails_with(
        hsm.sandbox
            .run(&["encrypt", "--pkcs11", &uri, "app.yaml"], None),
        1,
    );
    assert!(stderr.contains("VEIL_PKCS11_MODULE"), "{stderr}");
    hsm.sandbox
        .env("VEIL_PKCS11_MODULE", copy.display().to_string());
    ok(hsm
        .sandbox
        .run(&["encrypt", "--pkcs11", &uri, "app.yaml"], None));
}

#[test]
fn groups_add_takes_pkcs11_keys() {
    let Some(mut hsm) = Hsm::new("veil-gadd") else {
        return;
    };
    let Some(age) = hsm.sandbox.age_identity() else {
        return;
    };
    hsm.sandbox.env("VEIL_PKCS11_PIN", PIN);
    hsm.sandbox.write("app.yaml", PLAIN);
    ok(hsm
        .sandbox
        .run(&["encrypt", "-i", "--age", &age, "app.yaml"], None));
    let uri = hsm.uri("object=sops-aes", "");
    ok(hsm.sandbox.run(
        &[
            "groups", "add", "--file", "app.yaml", "--pkcs11", &uri, "-i",
        ],
        None,
    ));
    let doc = yaml(&hsm.sandbox.read("app.yaml"));
    assert_eq!(
        doc["sops"]["key_groups"][1]["pkcs11"][0]["uri"].as_str(),
        Some(uri.as_str())
    );
    let plain = ok(hsm.sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);
}

#[test]
fn updatekeys_adds_a_pkcs11_key_from_the_creation_rule() {
    let Some(mut hsm) = Hsm::new("veil-upd") else {
        return;
    };
    let Some(age) = hsm.sandbox.age_identity() else {
        return;
    };
    hsm.sandbox.env("VEIL_PKCS11_PIN", PIN);
    hsm.sandbox
        .write(".sops.yaml", format!("creation_rules:\n  - age: {age}\n"));
    hsm.sandbox.write("app.yaml", PLAIN);
    ok(hsm.sandbox.run(&["encrypt", "-i", "app.yaml"], None));
    let uri = hsm.uri("object=sops-aes", "");
    hsm.sandbox.write(
        ".sops.yaml",
        format!("creation_rules:\n  - age: {age}\n    pkcs11: \"{uri}\"\n"),
    );
    ok(hsm.sandbox.run(&["updatekeys", "-y", "app.yaml"], None));
    let doc = yaml(&hsm.sandbox.read("app.yaml"));
    assert_eq!(doc["sops"]["pkcs11"][0]["uri"].as_str(), Some(uri.as_str()));

    // The HSM alone opens it now.
    std::fs::remove_file(hsm.sandbox.home().join(".config/sops/age/keys.txt")).unwrap();
    let plain = ok(hsm.sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);
}
