//! gpg round trips in a throw-away GNUPGHOME holding sops' functional-test keys.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

const SECRET_FP: &str = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4";
const PUBLIC_ONLY_FP: &str = "B611A2F9F11D0FF82568805119F9B5DAEA91FF86";

/// A temporary GnuPG home with the vector keys imported; its agent is killed on drop.
struct GnupgHome {
    dir: tempfile::TempDir,
}

impl GnupgHome {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn env(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| (name == "GNUPGHOME").then(|| self.path().display().to_string())
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("GNUPGHOME", self.path())
            .status();
    }
}

fn vectors() -> Option<PathBuf> {
    match std::env::var_os("VEIL_SOPS_VECTORS") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            println!("SKIPPED: VEIL_SOPS_VECTORS is not set");
            None
        }
    }
}

/// Imports the vector keys into a fresh home, or says why the test is skipped.
fn gnupg_home(vectors: &Path) -> Option<GnupgHome> {
    use std::os::unix::fs::PermissionsExt;
    if Command::new("gpg").arg("--version").output().is_err() {
        println!("SKIPPED: gpg is not installed");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 700");
    let home = GnupgHome { dir };
    let status = Command::new("gpg")
        .args(["--batch", "--quiet", "--import"])
        .arg(vectors.join("sops_functional_tests_key.asc"))
        .env("GNUPGHOME", home.path())
        .output()
        .expect("run gpg --import");
    assert!(status.status.success(), "gpg --import failed");
    Some(home)
}

/// The first armored PGP message in a sops YAML file, de-indented.
fn first_pgp_enc(yaml: &str) -> String {
    let start = yaml.find("-----BEGIN PGP MESSAGE-----").expect("a pgp enc");
    let end = start
        + yaml[start..]
            .find("-----END PGP MESSAGE-----")
            .expect("armor end");
    let block = &yaml[start..end + "-----END PGP MESSAGE-----".len()];
    block.lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

#[test]
fn wraps_and_unwraps_with_gpg_and_opens_real_sops_entries() {
    let Some(vectors) = vectors() else { return };
    let Some(home) = gnupg_home(&vectors) else {
        return;
    };
    let identity = GpgIdentity::from_env(home.env());

    // Fingerprints may be written with spaces (as gpg prints them).
    let spaced = "FBC7 B9E2 A4F9 289A C0C1  D484 3D16 CEE4 A273 81B4";
    let recipient = PgpRecipient::with_env(spaced, home.env());
    assert_eq!(recipient.name(), SECRET_FP);
    assert_eq!(recipient.trusted_key_id(), "3D16CEE4A27381B4");
    let part = KeyPart::new((0u8..33).collect());
    let entry = recipient.wrap(&part).expect("wrap");
    let KeyEntry::Pgp {
        fp,
        created_at,
        enc,
    } = &entry
    else {
        panic!("not a pgp entry")
    };
    assert_eq!(fp, SECRET_FP);
    assert!(
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok() && created_at.ends_with('Z'),
        "{created_at}"
    );
    assert!(enc.starts_with("-----BEGIN PGP MESSAGE-----"), "{enc}");
    assert!(enc.ends_with("-----END PGP MESSAGE-----"), "trimmed: {enc}");
    let unwrapped = identity.unwrap(&entry).expect("claimed").expect("unwrap");
    assert_eq!(unwrapped.as_bytes(), part.as_bytes());

    // Real sops entries, also with CRLF line ends and without the final newline.
    for file in ["multiple_keys.yaml", "example.yaml"] {
        let yaml = std::fs::read_to_string(vectors.join(file)).expect("vector");
        let enc = first_pgp_enc(&yaml);
        for variant in [enc.clone(), format!("{enc}\n"), enc.replace('\n', "\r\n")] {
            let entry = KeyEntry::Pgp {
                fp: SECRET_FP.into(),
                created_at: String::new(),
                enc: variant,
            };
            let part = identity.unwrap(&entry).expect("claimed").expect(file);
            assert_eq!(part.as_bytes().len(), 32, "{file}");
        }
    }
}

#[test]
fn gpg_failures_name_the_key() {
    let Some(vectors) = vectors() else { return };
    let Some(home) = gnupg_home(&vectors) else {
        return;
    };
    let identity = GpgIdentity::from_env(home.env());

    // A public key without its secret half: wrapping works, unwrapping cannot.
    let entry = PgpRecipient::with_env(PUBLIC_ONLY_FP, home.env())
        .wrap(&KeyPart::new(vec![7; 32]))
        .expect("wrap for a public key");
    let err = identity
        .unwrap(&entry)
        .expect("claimed")
        .err()
        .expect("no secret key");
    assert_eq!(err.name, PUBLIC_ONLY_FP);
    assert!(err.to_string().contains(PUBLIC_ONLY_FP), "{err}");
    assert!(err.reason.contains("could not decrypt"), "{err}");

    let unknown = "0000000000000000000000000000000000000000";
    let err = PgpRecipient::with_env(unknown, home.env())
        .wrap(&KeyPart::new(vec![7; 32]))
        .expect_err("unknown key");
    assert_eq!(err.name, unknown);
    assert!(err.reason.contains("gpg failed"), "{err}");

    let garbage = KeyEntry::Pgp {
        fp: SECRET_FP.into(),
        created_at: String::new(),
        enc: "-----BEGIN PGP MESSAGE-----\n\nnot base64\n-----END PGP MESSAGE-----".into(),
    };
    let err = identity
        .unwrap(&garbage)
        .expect("claimed")
        .err()
        .expect("garbage");
    assert!(err.to_string().contains(SECRET_FP), "{err}");
}

#[test]
fn missing_gpg_binary_is_explained() {
    let part = KeyPart::new(vec![1; 32]);
    let cases = [
        (None, "gpg not found; install GnuPG or set SOPS_GPG_EXEC"),
        (
            Some("/nonexistent/veil-test-gpg"),
            "SOPS_GPG_EXEC names /nonexistent/veil-test-gpg, which was not found",
        ),
    ];
    for (exec, expected) in cases {
        let env = |name: &str| match name {
            "SOPS_GPG_EXEC" => exec.map(String::from),
            _ => None,
        };
        let mut gpg = Gpg::from_env(&env);
        if exec.is_none() {
            // Stand in for "no gpg on PATH" without touching the process environment.
            gpg.program = "veil-test-no-such-gpg".into();
        }
        let recipient = PgpRecipient {
            fingerprint: SECRET_FP.into(),
            gpg: gpg.clone(),
        };
        let err = recipient.wrap(&part).expect_err("no gpg");
        assert_eq!(err.reason, expected);
        let entry = KeyEntry::Pgp {
            fp: SECRET_FP.into(),
            created_at: String::new(),
            enc: "x".into(),
        };
        let err = GpgIdentity { gpg }
            .unwrap(&entry)
            .expect("claimed")
            .err()
            .expect("no gpg");
        assert!(err.reason.ends_with(expected), "{}", err.reason);
    }
}

#[test]
fn ignores_other_key_types_and_parses_fingerprints() {
    let identity = GpgIdentity::from_env(|_| None);
    let age = KeyEntry::Age {
        recipient: "age1x".into(),
        enc: String::new(),
    };
    assert!(identity.unwrap(&age).is_none());

    let cases = [
        (
            " FBC7 B9E2 A4F9 289A C0C1 D484 3D16 CEE4 A273 81B4 ",
            SECRET_FP,
            "3D16CEE4A27381B4",
        ),
        (
            "3D16CEE4A27381B4!",
            "3D16CEE4A27381B4!",
            "3D16CEE4A27381B4!",
        ),
        ("A27381B4", "A27381B4", "A27381B4"),
    ];
    for (input, name, trusted) in cases {
        let recipient = PgpRecipient::with_env(input, |_| None);
        assert_eq!(recipient.name(), name, "{input}");
        assert_eq!(recipient.trusted_key_id(), trusted, "{input}");
    }
    assert_eq!(
        summarise(b"gpg: one\n\n  gpg: two  \n"),
        "gpg: one; gpg: two"
    );
    assert_eq!(summarise(b""), "no message from gpg");
}

/// The whole pipeline with real keys: a file encrypted for an age group and a pgp group
/// (both needed), then opened with the process-style identities.
#[test]
fn a_document_opens_with_age_and_gpg_key_groups() {
    use crate::document::{encrypt, open, EncryptPlan, OpenOptions};
    use crate::keys::age::{AgeIdentities, AgeRecipient};
    use crate::keys::keyring::{DecryptionOrder, Keyring};
    use crate::store::Loaded;
    use crate::tree::{Map, Node, Tree, Value};

    let Some(vectors) = vectors() else { return };
    let Some(home) = gnupg_home(&vectors) else {
        return;
    };
    let age_identity = ::age::x25519::Identity::generate();
    let age_recipient = age_identity.to_public().to_string();
    let age_secret = {
        use ::age::secrecy::ExposeSecret;
        age_identity.to_string().expose_secret().to_string()
    };

    let mut map = Map::new();
    map.insert("password", Node::scalar(Value::Str("hunter2".into())));
    let plain = Tree {
        documents: vec![map],
        layout: None,
    };
    let plan = EncryptPlan {
        groups: vec![
            vec![Box::new(AgeRecipient::parse(&age_recipient).expect("age")) as Box<dyn Recipient>],
            vec![Box::new(PgpRecipient::with_env(SECRET_FP, home.env()))],
        ],
        shamir_threshold: 2,
        rules: Default::default(),
    };
    let mut tree = Tree {
        documents: plain.documents.clone(),
        layout: None,
    };
    let metadata = encrypt(&mut tree, &plan).expect("encrypt");
    let loaded = |tree: Tree| Loaded {
        tree,
        metadata: Some(Node::Map(metadata.to_map())),
    };

    let keyring = Keyring::new(
        vec![
            Box::new(AgeIdentities::from_env(
                |name| (name == "SOPS_AGE_KEY").then(|| age_secret.clone()),
                None,
                None,
            )),
            Box::new(GpgIdentity::from_env(home.env())),
        ],
        DecryptionOrder::default(),
    );
    let opened = open(
        loaded(Tree {
            documents: tree.documents.clone(),
            layout: None,
        }),
        &keyring,
        OpenOptions::default(),
    )
    .expect("open");
    assert!(opened.tree.documents == plain.documents);

    // Without the age identity only one of the two needed groups opens, and the report says why.
    let gpg_only = Keyring::new(
        vec![
            Box::new(AgeIdentities::from_env(|_| None, None, None)),
            Box::new(GpgIdentity::from_env(home.env())),
        ],
        DecryptionOrder::default(),
    );
    let err = open(loaded(tree), &gpg_only, OpenOptions::default())
        .err()
        .expect("one group is not enough");
    let text = err.to_string();
    assert!(text.contains("no age identities found"), "{text}");
}
