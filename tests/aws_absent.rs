//! A build without the `aws` feature: AWS KMS keys from flags, environment and creation rules are
//! refused with a clear message instead of being dropped.
#![cfg(not(feature = "aws"))]

mod common;

use common::*;

const PLAIN: &str = "db:\n  password: hunter2\n";
const ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";

#[test]
fn kms_keys_are_refused_without_the_feature() {
    let mut sandbox = Sandbox::new();
    sandbox.write("app.yaml", PLAIN);
    let stderr = fails_with(sandbox.run(&["encrypt", "--kms", ARN, "app.yaml"], None), 1);
    assert!(stderr.contains("AWS KMS"), "{stderr}");

    sandbox.write(
        ".sops.yaml",
        format!("creation_rules:\n  - key_groups:\n      - kms:\n          - arn: {ARN}\n"),
    );
    let stderr = fails_with(sandbox.run(&["encrypt", "app.yaml"], None), 1);
    assert!(stderr.contains("kms"), "{stderr}");

    sandbox.env("SOPS_KMS_ARN", ARN);
    std::fs::remove_file(sandbox.path(".sops.yaml")).unwrap();
    let stderr = fails_with(sandbox.run(&["encrypt", "app.yaml"], None), 1);
    assert!(stderr.contains("AWS KMS"), "{stderr}");
}
