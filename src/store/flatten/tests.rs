use super::*;
use crate::crypt::{self, Cipher, DataKey, Rules};
use crate::document::{self, OpenOptions};
use crate::keys::KeyEntry;
use crate::metadata::{KeyGroup, Metadata, FORMAT_VERSION};
use crate::store::{Format, Indent};
use crate::tree::Scalar;

fn text(s: &str) -> Node {
    Node::scalar(Value::Str(s.into()))
}

fn map(pairs: Vec<(&str, Node)>) -> Node {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k, v);
    }
    Node::Map(m)
}

fn list(nodes: Vec<Node>) -> Node {
    Node::List(List(nodes.into_iter().map(ListItem::Node).collect()))
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// (nested tree, flat pairs): both directions must agree. Trees are written sorted, as
/// unflatten rebuilds them.
fn both_ways() -> Vec<(Node, Vec<(String, String)>)> {
    vec![
        (
            map(vec![(
                "pgp",
                list(vec![map(vec![
                    ("created_at", text("T")),
                    ("fp", text("FP")),
                ])]),
            )]),
            owned(&[
                ("pgp__list_0__map_created_at", "T"),
                ("pgp__list_0__map_fp", "FP"),
            ]),
        ),
        (
            map(vec![(
                "key_groups",
                list(vec![
                    map(vec![("pgp", list(vec![map(vec![("fp", text("A"))])]))]),
                    map(vec![(
                        "age",
                        list(vec![map(vec![("recipient", text("age1x"))])]),
                    )]),
                ]),
            )]),
            owned(&[
                ("key_groups__list_0__map_pgp__list_0__map_fp", "A"),
                (
                    "key_groups__list_1__map_age__list_0__map_recipient",
                    "age1x",
                ),
            ]),
        ),
        (
            map(vec![(
                "kms",
                list(vec![map(vec![(
                    "context",
                    map(vec![("a:b", text("1")), ("tenant", text("acme"))]),
                )])]),
            )]),
            owned(&[
                ("kms__list_0__map_context__map_a:b", "1"),
                ("kms__list_0__map_context__map_tenant", "acme"),
            ]),
        ),
        (
            map(vec![
                ("lastmodified", text("2024-01-01T00:00:00Z")),
                ("version", text("3.13.2")),
            ]),
            owned(&[
                ("lastmodified", "2024-01-01T00:00:00Z"),
                ("version", "3.13.2"),
            ]),
        ),
        (
            map(vec![
                ("enc", text("line1\nline2")),
                ("v", list(vec![text("x"), text("y")])),
            ]),
            owned(&[
                ("enc", "line1\nline2"),
                ("v__list_0", "x"),
                ("v__list_1", "y"),
            ]),
        ),
        (map(vec![]), vec![]),
    ]
}

#[test]
fn flattens_and_unflattens_the_spec_examples() {
    for (tree, flat) in both_ways() {
        let Node::Map(m) = &tree else { unreachable!() };
        assert_eq!(flatten(m).unwrap(), flat);
        assert_eq!(unflatten(flat.clone()).unwrap(), tree, "{flat:?}");
    }
}

#[test]
fn flatten_types_scalars_and_skips_comments_nulls_and_empties() {
    let mut m = Map::new();
    m.0.push(MapItem::Comment(crate::tree::Comment::new("c")));
    m.insert("shamir_threshold", Node::scalar(Value::Int(2)));
    m.insert("mac_only_encrypted", Node::scalar(Value::Bool(true)));
    m.insert("gone", Node::scalar(Value::Null));
    m.insert("age", list(vec![]));
    m.insert("empty", map(vec![]));
    let mut with_comment = List(vec![ListItem::Comment(crate::tree::Comment::new("c"))]);
    with_comment.0.push(ListItem::Node(text("first")));
    m.insert("l", Node::List(with_comment));
    assert_eq!(
        flatten(&m).unwrap(),
        owned(&[
            ("shamir_threshold", "2"),
            ("mac_only_encrypted", "true"),
            ("l__list_0", "first")
        ])
    );
}

#[test]
fn flatten_rejects_collisions_and_raw_bytes() {
    let collide = map(vec![
        ("a__map_b", text("1")),
        ("a", map(vec![("b", text("2"))])),
    ]);
    let Node::Map(m) = collide else {
        unreachable!()
    };
    assert!(matches!(flatten(&m), Err(StoreError::Structure { path, .. }) if path == "a__map_b"));
    let mut m = Map::new();
    m.insert("b", Node::scalar(Value::Bytes(vec![0xff])));
    assert!(matches!(flatten(&m), Err(StoreError::Structure { path, .. }) if path == "b"));
}

#[test]
fn unflatten_errors_name_the_key() {
    for (pairs, path, message) in [
        (vec![("pgp__list_1__map_fp", "x")], "pgp", "Incomplete list"),
        (
            vec![("pgp__list_0", "x"), ("pgp__list_2", "y")],
            "pgp",
            "Incomplete list",
        ),
        (vec![("a", "x"), ("a__map_b", "y")], "a", "Type mismatch"),
        (
            vec![("a__list_0", "x"), ("a__map_b", "y")],
            "a",
            "Type mismatch",
        ),
        (
            vec![("a__list_0", "x"), ("a__list_0__map_k", "y")],
            "a__list_0",
            "Type mismatch",
        ),
        (vec![("k", "x"), ("k", "y")], "k", "Duplicate value"),
        (vec![("pgp__list_x", "v")], "pgp__list_x", "a list index"),
        (vec![("pgp__list_-1", "v")], "pgp__list_-1", "a list index"),
        (vec![("pgp__list_", "v")], "pgp__list_", "a list index"),
    ] {
        let pairs = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match unflatten(pairs) {
            Err(StoreError::Structure {
                path: p,
                message: m,
            }) => {
                assert_eq!(p, path);
                assert!(m.starts_with(message), "{m}");
                assert!(
                    !m.contains('x') || message.contains('x'),
                    "value leaked: {m}"
                );
            }
            other => panic!("{path}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn unflatten_tokenizes_like_sops() {
    // Leading separator: an empty first key. Lone underscores are ordinary characters.
    let node = unflatten(owned(&[
        ("__map_a", "1"),
        ("x_y__z", "2"),
        ("é__map_ü", "3"),
    ]))
    .unwrap();
    assert_eq!(
        node,
        map(vec![
            ("", map(vec![("a", text("1"))])),
            ("x_y__z", text("2")),
            ("é", map(vec![("ü", text("3"))])),
        ])
    );
    let deep = vec![("a__map_".repeat(MAX_DEPTH + 1), "v".to_string())];
    assert!(unflatten(deep).is_err());
}

#[test]
fn scalar_text_is_sops_val_to_string() {
    let time = crate::tree::parse_time("2001-12-14T21:59:43.10-05:00").unwrap();
    let utc = crate::tree::parse_time("2024-01-01T00:00:00.5+00:00").unwrap();
    for (value, want) in [
        (Value::Float(1.0), "1.0"),
        (Value::Float(200000.0), "200000.0"),
        (Value::Float(1e6), "1E+06"),
        (Value::Float(-2e10), "-2E+10"),
        (Value::Float(1.2345e-100), "1.2345E-100"),
        (Value::Float(0.0001), "0.0001"),
        (Value::Float(0.00001), "1E-05"),
        (Value::Float(123456.5), "123456.5"),
        (Value::Float(1234567.5), "1.2345675E+06"),
        (Value::Float(-0.0), "-0.0"),
        (Value::Float(f64::NAN), "NaN"),
        (Value::Float(f64::INFINITY), "+Inf"),
        (Value::Int(-42), "-42"),
        (Value::Bool(false), "false"),
        (Value::Time(time), "2001-12-14T21:59:43-05:00"),
        (Value::Time(utc), "2024-01-01T00:00:00Z"),
        (Value::Null, ""),
        (Value::Str("a\nb".into()), "a\nb"),
    ] {
        assert_eq!(scalar_text(&value).as_deref(), Some(want), "{value:?}");
    }
    assert_eq!(scalar_text(&Value::Bytes(vec![0xff])), None);
}

/// A metadata block with every kind of entry the flat stores have to carry.
pub(crate) fn rich_metadata() -> Metadata {
    let armor = "-----BEGIN PGP MESSAGE-----\n\nwcBMA+x/y=\n-----END PGP MESSAGE-----";
    Metadata {
        lastmodified: "2024-01-01T00:00:00Z".into(),
        mac: "ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:str]".into(),
        version: FORMAT_VERSION.into(),
        rules: Rules::default(),
        shamir_threshold: 2,
        key_groups: vec![
            KeyGroup {
                keys: vec![
                    KeyEntry::Pgp {
                        fp: "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4".into(),
                        created_at: "2024-01-01T00:00:00Z".into(),
                        enc: armor.into(),
                    },
                    KeyEntry::Kms {
                        arn: "arn:aws:kms:us-east-1:1:key/k".into(),
                        role: String::new(),
                        context: vec![("tenant".into(), "acme".into()), ("app".into(), "x".into())],
                        created_at: "2024-01-01T00:00:00Z".into(),
                        enc: "AQID".into(),
                        aws_profile: String::new(),
                    },
                ],
                foreign: vec![],
            },
            KeyGroup {
                keys: vec![KeyEntry::Age {
                    recipient: "age1qqq".into(),
                    enc: "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"
                        .into(),
                }],
                foreign: vec![],
            },
        ],
    }
}

#[test]
fn metadata_survives_flattening() {
    let mut single = rich_metadata();
    single.shamir_threshold = 0;
    let mut keys = single.key_groups.remove(1).keys;
    single.key_groups[0].keys.append(&mut keys);
    for meta in [rich_metadata(), single] {
        let flat = flatten(&meta.to_map()).unwrap();
        let back = Metadata::from_node(&unflatten(flat).unwrap()).unwrap();
        // Exactly what the nested form gives (which sorts key lists and the kms context).
        let want = Metadata::from_node(&Node::Map(meta.to_map())).unwrap();
        assert_eq!(want.key_groups.len(), meta.key_groups.len());
        assert_eq!(back, want);
    }
}

/// Runs a plain file through the whole pipeline with a throw-away data key: load, encrypt,
/// emit with metadata, load again, check the metadata, decrypt (MAC checked), emit plain.
/// Returns the encrypted and the decrypted bytes.
pub(crate) fn seal_and_open(format: Format, plain: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let loaded = format.load(plain).expect("plain file loads");
    assert!(loaded.metadata.is_none(), "a plain file has no metadata");
    let mut tree = loaded.tree;
    let key = DataKey::generate();
    let mut cipher = Cipher::new(key.clone());
    let rules = Rules::default();
    let mac = crypt::encrypt_tree(&mut tree, &mut cipher, &rules).expect("encrypts");
    let lastmodified = "2024-01-01T00:00:00Z".to_string();
    let mut metadata = rich_metadata();
    metadata.mac = crypt::seal_mac(&mut cipher, &mac, &lastmodified);
    metadata.lastmodified = lastmodified;
    let encrypted = format
        .emit(&tree, Some(&metadata.to_map()), Indent::default())
        .expect("encrypted tree emits");
    let reloaded = format.load(&encrypted).expect("encrypted file loads");
    let read_back = document::metadata_of(&reloaded).expect("metadata parses");
    assert_eq!(read_back.key_groups.len(), 2);
    assert_eq!(read_back.mac, metadata.mac);
    let opened = document::open_with_key(reloaded.tree, read_back, key, OpenOptions::default())
        .expect("decrypts with a matching MAC");
    let decrypted = format
        .emit(&opened.tree, None, Indent::default())
        .expect("plain tree emits");
    (encrypted, decrypted)
}

#[test]
fn scalar_node_helper_is_plain() {
    // Guards the test helpers above: `text` builds span-less string scalars.
    assert_eq!(
        text("a"),
        Node::Scalar(Scalar {
            value: Value::Str("a".into()),
            span: None
        })
    );
}

/// A real sops file from `$VEIL_SOPS_VECTORS`, or `None` (after saying so) when it is unset.
pub(crate) fn sops_vector(name: &str) -> Option<Vec<u8>> {
    let Some(dir) = std::env::var_os("VEIL_SOPS_VECTORS") else {
        println!("SKIPPED: VEIL_SOPS_VECTORS is not set");
        return None;
    };
    let path = std::path::Path::new(&dir).join(name);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Every prefix of `input` loads or fails cleanly; none panics.
pub(crate) fn assert_truncations_never_panic(format: Format, input: &[u8]) {
    for end in 0..=input.len() {
        let _ = format.load(&input[..end]);
    }
}
