//! A build without the `pkcs11` feature: files with PKCS#11 keys still open through their other
//! keys, and PKCS#11 keys say why they cannot be used.
#![cfg(not(feature = "pkcs11"))]

mod common;

use common::*;

const PLAIN: &str = "db:\n  password: hunter2\n";
const URI: &str = "pkcs11:token=t;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn pkcs11_entries_are_kept_and_reported_as_not_built() {
    let sandbox = Sandbox::new();
    let Some(age) = sandbox.age_identity() else {
        return;
    };
    sandbox.write("app.yaml", PLAIN);
    let text = String::from_utf8(ok(
        sandbox.run(&["encrypt", "--age", &age, "app.yaml"], None)
    ))
    .unwrap();
    // A pkcs11 entry, as a pkcs11 build writes it (the MAC covers values, not keys).
    let entry = format!(
        "sops:\n    pkcs11:\n        - created_at: \"2026-01-01T00:00:00Z\"\n          enc: AQE=\n          uri: {URI}\n"
    );
    let text = text.replacen("sops:\n", &entry, 1);
    sandbox.write("app.enc.yaml", &text);

    let plain = ok(sandbox.run(&["decrypt", "app.enc.yaml"], None));
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);

    // Rewriting keeps the entry.
    ok(sandbox.run(
        &["set", "app.enc.yaml", r#"["db"]["password"]"#, r#""x""#],
        None,
    ));
    assert!(sandbox.read("app.enc.yaml").contains(URI));

    std::fs::remove_file(sandbox.home().join(".config/sops/age/keys.txt")).unwrap();
    let stderr = fails_with(sandbox.run(&["decrypt", "app.enc.yaml"], None), 128);
    assert!(
        stderr.contains(&format!("pkcs11 {URI}: veil was built without pkcs11")),
        "{stderr}"
    );

    sandbox.write("new.yaml", PLAIN);
    let stderr = fails_with(
        sandbox.run(&["encrypt", "--pkcs11", URI, "new.yaml"], None),
        1,
    );
    assert!(stderr.contains("built without pkcs11"), "{stderr}");
}
