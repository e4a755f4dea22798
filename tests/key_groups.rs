//! How veil tries keys of different sources together, through the real binary: age identities,
//! AWS KMS against a real `moto_server`, PKCS#11 keys in SoftHSM2 tokens, and loopback ports
//! that refuse connections or accept them and never answer.
//!
//! - Key groups mixing age, AWS KMS and PKCS#11 open with whichever groups are at hand.
//! - An age key that opens the file keeps veil off the network: a KMS endpoint that would hang
//!   is never connected to.
//! - Network keys that cannot answer fail with exit 128, every key named, in a bounded time
//!   (the connect/read timeouts; `VEIL_KEY_SERVICE_TIMEOUT` shortens them here).
//!
//! Every test prints `SKIPPED:` and returns when moto_server, age-keygen or SoftHSM2 is missing.
#![cfg(feature = "aws")]

mod common;
#[path = "support/moto.rs"]
mod moto;
#[cfg(feature = "pkcs11")]
#[path = "support/softhsm.rs"]
mod softhsm;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use moto::moto;

const PLAIN: &str = "db:\n  user: app\n  password: hunter2\ntoken: s3cr3t\n";

/// A loopback TCP port that accepts connections and never answers them (they stay open),
/// counting them. Its thread ends with the test binary.
struct Silent {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        std::thread::spawn(move || {
            let mut open = Vec::new();
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                open.push(stream);
            }
        });
        Silent { port, connections }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Copies `from`'s default age key file into `to`.
fn share_age_key(from: &Sandbox, to: &Sandbox) {
    let keys = ".config/sops/age/keys.txt";
    std::fs::create_dir_all(to.home().join(keys).parent().unwrap()).unwrap();
    std::fs::copy(from.home().join(keys), to.home().join(keys)).unwrap();
}

fn decrypts(sandbox: &Sandbox) {
    let out = ok(sandbox.run(&["decrypt", "app.yaml"], None));
    assert_eq!(String::from_utf8(out).unwrap(), PLAIN);
}

#[cfg(feature = "pkcs11")]
mod with_pkcs11 {
    use super::softhsm::Hsm;
    use super::*;

    /// One encrypting sandbox that has every key: an age identity, moto credentials and the
    /// SoftHSM token; and a way to make sandboxes with only some of them.
    struct Keys {
        hsm: Hsm,
        moto: Arc<moto::Moto>,
        age: String,
        arn: String,
        uri: String,
    }

    #[derive(Clone, Copy)]
    struct Have {
        age: bool,
        kms: bool,
        pkcs11: bool,
    }

    impl Keys {
        fn new(label: &str) -> Option<Keys> {
            let moto = moto()?;
            let mut hsm = Hsm::new(label)?;
            let age = hsm.sandbox.age_identity()?;
            moto.credentials(&mut hsm.sandbox);
            let arn = moto.create_key();
            let uri = hsm.uri("object=sops-aes;type=secret-key", &hsm.pin_source());
            Some(Keys {
                hsm,
                moto,
                age,
                arn,
                uri,
            })
        }

        /// Encrypts `app.yaml` with this `.sops.yaml` and returns the file.
        fn encrypt(&self, config: &str) -> String {
            let sandbox = &self.hsm.sandbox;
            sandbox.write(".sops.yaml", config);
            sandbox.write("app.yaml", PLAIN);
            ok(sandbox.run(&["encrypt", "-i", "app.yaml"], None));
            sandbox.read("app.yaml")
        }

        /// A sandbox holding `file` with only the keys in `have`. Without KMS credentials the
        /// KMS endpoint is `silent`, which would hold a request up and counts connections.
        fn sandbox(&self, file: &str, have: Have, silent: &Silent) -> Sandbox {
            let mut sandbox = Sandbox::new();
            sandbox.write("app.yaml", file);
            if have.age {
                share_age_key(&self.hsm.sandbox, &sandbox);
            }
            if have.kms {
                self.moto.credentials(&mut sandbox);
            } else {
                sandbox
                    .env("AWS_ACCESS_KEY_ID", "testing")
                    .env("AWS_SECRET_ACCESS_KEY", "testing")
                    .env("AWS_ENDPOINT_URL", silent.url())
                    .env("AWS_EC2_METADATA_DISABLED", "true");
            }
            if have.pkcs11 {
                self.hsm.reach_from(&mut sandbox);
            } else {
                // A SoftHSM without this token.
                let empty = sandbox.dir.path().join("softhsm-empty");
                std::fs::create_dir_all(empty.join("tokens")).unwrap();
                let conf = empty.join("softhsm2.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                        empty.join("tokens").display()
                    ),
                )
                .unwrap();
                sandbox.env("SOFTHSM2_CONF", conf.display().to_string());
            }
            sandbox
        }

        fn groups_config(&self, threshold: usize) -> String {
            format!(
                "creation_rules:\n  - path_regex: app\\.yaml$\n    shamir_threshold: {threshold}\n    key_groups:\n      - age: [{age}]\n      - kms:\n          - arn: {arn}\n      - pkcs11:\n          - '{uri}'\n",
                age = self.age,
                arn = self.arn,
                uri = self.uri
            )
        }
    }

    const ALL: [(&str, Have); 3] = [
        (
            "age",
            Have {
                age: true,
                kms: false,
                pkcs11: false,
            },
        ),
        (
            "kms",
            Have {
                age: false,
                kms: true,
                pkcs11: false,
            },
        ),
        (
            "pkcs11",
            Have {
                age: false,
                kms: false,
                pkcs11: true,
            },
        ),
    ];

    #[test]
    fn one_group_of_age_kms_and_pkcs11_opens_with_any_one_of_them() {
        let Some(keys) = Keys::new("veil-kg-one") else {
            return;
        };
        let text = keys.encrypt(&format!(
            "creation_rules:\n  - path_regex: app\\.yaml$\n    key_groups:\n      - age: [{age}]\n        kms:\n          - arn: {arn}\n        pkcs11:\n          - '{uri}'\n",
            age = keys.age,
            arn = keys.arn,
            uri = keys.uri
        ));
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            doc["sops"]["age"][0]["recipient"].as_str(),
            Some(&*keys.age)
        );
        assert_eq!(doc["sops"]["kms"][0]["arn"].as_str(), Some(&*keys.arn));
        assert_eq!(doc["sops"]["pkcs11"][0]["uri"].as_str(), Some(&*keys.uri));
        let silent = Silent::start();
        for (name, have) in ALL {
            let sandbox = keys.sandbox(&text, have, &silent);
            let out = sandbox.run(&["decrypt", "app.yaml"], None);
            assert!(
                out.status.success(),
                "{name} alone: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8(out.stdout).unwrap(), PLAIN, "{name}");
        }
        // age and PKCS#11 are offline keys, tried first: the KMS endpoint was never contacted.
        assert_eq!(silent.connections(), 0);

        // None of them: 128, every key named.
        let none = Have {
            age: false,
            kms: false,
            pkcs11: false,
        };
        let mut sandbox = keys.sandbox(&text, none, &silent);
        sandbox.env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", closed_port()),
        );
        let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
        for key in [&keys.age, &keys.arn, &keys.uri] {
            assert!(stderr.contains(key.as_str()), "{key}: {stderr}");
        }
    }

    #[test]
    fn three_groups_with_threshold_two_open_with_any_two_of_them() {
        let Some(keys) = Keys::new("veil-kg-two") else {
            return;
        };
        let text = keys.encrypt(&keys.groups_config(2));
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let groups = doc["sops"]["key_groups"].as_sequence().expect("key_groups");
        assert_eq!(groups.len(), 3);
        assert_eq!(doc["sops"]["shamir_threshold"].as_u64(), Some(2));
        assert_eq!(groups[0]["age"][0]["recipient"].as_str(), Some(&*keys.age));
        assert_eq!(groups[1]["kms"][0]["arn"].as_str(), Some(&*keys.arn));
        assert_eq!(groups[2]["pkcs11"][0]["uri"].as_str(), Some(&*keys.uri));

        let silent = Silent::start();
        for (first, second) in [(0, 1), (0, 2), (1, 2)] {
            let (a, have_a) = ALL[first];
            let (b, have_b) = ALL[second];
            let have = Have {
                age: have_a.age || have_b.age,
                kms: have_a.kms || have_b.kms,
                pkcs11: have_a.pkcs11 || have_b.pkcs11,
            };
            let sandbox = keys.sandbox(&text, have, &silent);
            let out = sandbox.run(&["decrypt", "app.yaml"], None);
            assert!(
                out.status.success(),
                "{a} and {b}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8(out.stdout).unwrap(), PLAIN, "{a}, {b}");
        }
        // With age and PKCS#11 at hand, the KMS group was not needed and not contacted.
        assert_eq!(silent.connections(), 0);

        // One group alone is not enough: 128, naming the keys of the groups that failed.
        for (name, have) in ALL {
            let mut sandbox = keys.sandbox(&text, have, &silent);
            if !have.kms {
                sandbox.env(
                    "AWS_ENDPOINT_URL",
                    format!("http://127.0.0.1:{}", closed_port()),
                );
            }
            let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
            assert!(stderr.contains("1 of the 2 key groups"), "{name}: {stderr}");
            for (other, key) in [
                ("age", &keys.age),
                ("kms", &keys.arn),
                ("pkcs11", &keys.uri),
            ] {
                assert_eq!(
                    stderr.contains(key.as_str()),
                    other != name,
                    "{name} alone, {other}: {stderr}"
                );
            }
        }
        assert_eq!(silent.connections(), 0);
    }

    #[test]
    fn a_threshold_of_one_is_refused_as_sops_refuses_it() {
        // sops' Shamir split needs a threshold of at least 2; one group of several keys is
        // how a file opens with any one of them.
        let Some(keys) = Keys::new("veil-kg-t1") else {
            return;
        };
        let sandbox = &keys.hsm.sandbox;
        sandbox.write(".sops.yaml", keys.groups_config(2));
        sandbox.write("app.yaml", PLAIN);
        let out = sandbox.run(
            &[
                "encrypt",
                "--shamir-secret-sharing-threshold",
                "1",
                "app.yaml",
            ],
            None,
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("threshold of 1"), "{stderr}");
        assert_eq!(sandbox.read("app.yaml"), PLAIN);
    }
}

/// A file with a KMS key and an age key, encrypted through moto; `None` when a tool is missing.
fn kms_and_age_file() -> Option<(Sandbox, String)> {
    let moto = moto()?;
    let mut sandbox = Sandbox::new();
    let age = sandbox.age_identity()?;
    moto.credentials(&mut sandbox);
    let arn = moto.create_key();
    sandbox.write("app.yaml", PLAIN);
    ok(sandbox.run(
        &["encrypt", "-i", "--kms", &arn, "--age", &age, "app.yaml"],
        None,
    ));
    let text = sandbox.read("app.yaml");
    assert!(text.contains(&arn) && text.contains(&age), "{text}");
    Some((sandbox, text))
}

#[test]
fn an_age_key_opens_the_file_without_touching_a_kms_endpoint_that_would_hang() {
    let Some((with_keys, text)) = kms_and_age_file() else {
        return;
    };
    let silent = Silent::start();
    for order in [None, Some("kms,age")] {
        let mut sandbox = Sandbox::new();
        sandbox.write("app.yaml", &text);
        share_age_key(&with_keys, &sandbox);
        sandbox
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ENDPOINT_URL", silent.url())
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if let Some(order) = order {
            // An explicit order still tries offline keys first.
            sandbox.env("SOPS_DECRYPTION_ORDER", order);
        }
        decrypts(&sandbox);
    }
    assert_eq!(silent.connections(), 0);
}

#[test]
fn kms_keys_that_cannot_answer_fail_with_128_naming_each_and_why() {
    // Two KMS keys reached through two profiles: one endpoint accepts and never answers, the
    // other refuses connections. Both are tried (at once); the run ends when the shortened
    // timeouts are spent, with exit 128 and both keys in the report.
    let Some(moto) = moto() else { return };
    let hanging_arn = moto.create_key();
    let refused_arn = moto.create_key();
    let mut sandbox = Sandbox::new();
    let config = sandbox.dir.path().join("aws-config");
    let profiles = |hang: &str, refuse: &str| {
        format!(
            "[profile hang]\nregion = us-east-1\nendpoint_url = {hang}\n\n[profile refuse]\nregion = us-east-1\nendpoint_url = {refuse}\n"
        )
    };
    let no_credentials_file = sandbox.dir.path().join("none");
    std::fs::write(&config, profiles(&moto.endpoint, &moto.endpoint)).unwrap();
    sandbox
        .env("AWS_CONFIG_FILE", config.display().to_string())
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            no_credentials_file.display().to_string(),
        )
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    sandbox.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - key_groups:\n      - kms:\n          - arn: {hanging_arn}\n            aws_profile: hang\n          - arn: {refused_arn}\n            aws_profile: refuse\n"
        ),
    );
    sandbox.write("app.yaml", PLAIN);
    ok(sandbox.run(&["encrypt", "-i", "app.yaml"], None));
    decrypts(&sandbox);

    let silent = Silent::start();
    let refused = format!("http://127.0.0.1:{}", closed_port());
    std::fs::write(&config, profiles(&silent.url(), &refused)).unwrap();
    sandbox.env("VEIL_KEY_SERVICE_TIMEOUT", "1");
    let stderr = fails_with(sandbox.run(&["decrypt", "app.yaml"], None), 128);
    // Tried, and again a bounded number of times (veil's policy: 3 attempts per call).
    let connections = silent.connections();
    assert!((1..=3).contains(&connections), "{connections} connections");
    let line = |arn: &str| {
        stderr
            .lines()
            .find(|l| l.contains(&format!("kms {arn}: ")))
            .unwrap_or_else(|| panic!("no line for {arn}: {stderr}"))
            .to_string()
    };
    assert!(line(&hanging_arn).contains("unreachable"), "{stderr}");
    assert!(line(&refused_arn).contains("unreachable"), "{stderr}");
    assert!(
        line(&refused_arn).contains("Connection refused"),
        "{stderr}"
    );
    // Stored order, whichever failed first.
    assert!(
        stderr.find(&hanging_arn).unwrap() < stderr.find(&refused_arn).unwrap(),
        "{stderr}"
    );
    assert!(!stderr.contains("testing"), "no credentials: {stderr}");
}
