use super::*;
use crate::metadata::Metadata;
use crate::store::flatten::tests::{
    assert_truncations_never_panic, rich_metadata, seal_and_open, sops_vector,
};
use crate::store::Format;
use crate::tree::Pair;

/// What a data item reads as: `Ok((key, value))` for a pair, `Err(text)` for a comment.
type Item = Result<(&'static str, &'static str), &'static str>;

fn items_of(map: &Map) -> Vec<Result<(String, String), String>> {
    map.0
        .iter()
        .map(|item| match item {
            MapItem::Comment(c) => Err(c.text.clone()),
            MapItem::Pair(Pair { key, value }) => match value {
                Node::Scalar(s) => Ok((key.clone(), s.value.as_str().unwrap().to_string())),
                _ => panic!("dotenv values are scalars"),
            },
        })
        .collect()
}

fn owned(items: &[Item]) -> Vec<Result<(String, String), String>> {
    items
        .iter()
        .map(|i| match i {
            Ok((k, v)) => Ok((k.to_string(), v.to_string())),
            Err(c) => Err(c.to_string()),
        })
        .collect()
}

fn plain_tree(input: &str) -> Tree {
    let loaded = load(input.as_bytes()).unwrap();
    assert!(loaded.metadata.is_none());
    loaded.tree
}

fn emit_plain(tree: &Tree) -> String {
    String::from_utf8(emit(tree, None).unwrap()).unwrap()
}

#[test]
fn parses_byte_literally_like_sops() {
    let cases: Vec<(&str, Vec<Item>)> = vec![
        ("A=b=c\n", vec![Ok(("A", "b=c"))]),
        ("EMPTY=\n", vec![Ok(("EMPTY", ""))]),
        ("foo = bar\n", vec![Ok(("foo ", " bar"))]),
        ("Q=\"quoted\" 'too'\n", vec![Ok(("Q", "\"quoted\" 'too'"))]),
        ("export A=1\n", vec![Ok(("export A", "1"))]),
        ("ML=a\\nb\\n\n", vec![Ok(("ML", "a\nb\n"))]),
        ("BS=a\\tb\\\\\n", vec![Ok(("BS", "a\\tb\\\\"))]),
        ("A=1\r\nB=2\r\n", vec![Ok(("A", "1\r")), Ok(("B", "2\r"))]),
        ("#c\n# spaced \n", vec![Err("c"), Err(" spaced ")]),
        (" #x=1\n", vec![Ok((" #x", "1"))]),
        ("=v\n", vec![Ok(("", "v"))]),
        ("A=1\n\n\nB=2", vec![Ok(("A", "1")), Ok(("B", "2"))]),
        ("K=ünï=cødé\n", vec![Ok(("K", "ünï=cødé"))]),
        ("", vec![]),
        ("\n\n", vec![]),
    ];
    for (input, want) in cases {
        let tree = plain_tree(input);
        assert_eq!(items_of(&tree.documents[0]), owned(&want), "{input:?}");
    }
}

#[test]
fn bad_lines_are_errors_with_their_line_and_no_text() {
    for (input, line, column, hint) in [
        ("A=1\nhunter2\n", 2, 1, "no '='"),
        ("A=1\r\n\r\nB=2\r\n", 2, 1, "carriage return"),
        ("  \n", 1, 1, "no '='"),
        ("A=1\nB=x\u{0}\n#ok\nnope", 4, 1, "no '='"),
    ] {
        match load(input.as_bytes()) {
            Err(StoreError::Syntax {
                line: l,
                column: c,
                message,
            }) => {
                assert_eq!((l, c), (line, column), "{input:?}");
                assert!(message.contains(hint), "{message}");
                assert!(!message.contains("hunter2"));
            }
            other => panic!("{input:?}: {:?}", other.err()),
        }
    }
    let mut bad_utf8 = b"A=1\nB=s3cr\xc3".to_vec();
    bad_utf8.extend_from_slice(b"\n");
    assert_eq!(
        load(&bad_utf8).err(),
        Some(StoreError::Syntax {
            line: 2,
            column: 7,
            message: "the line is not valid UTF-8".into()
        })
    );
}

#[test]
fn sops_lines_are_metadata_wherever_they_stand() {
    let input = "A=1\nsops_version=3.13.2\n#note\nsops_pgp__list_0__map_enc=x\\ny\nB=2\n";
    let loaded = load(input.as_bytes()).unwrap();
    assert_eq!(
        items_of(&loaded.tree.documents[0]),
        owned(&[Ok(("A", "1")), Err("note"), Ok(("B", "2"))])
    );
    let Some(Node::Map(meta)) = loaded.metadata else {
        panic!("metadata expected")
    };
    assert_eq!(
        meta.get("version"),
        Some(&Node::scalar(Value::Str("3.13.2".into())))
    );
    let Some(Node::List(pgp)) = meta.get("pgp") else {
        panic!("pgp list expected")
    };
    let entry = pgp.nodes().next().and_then(Node::as_map).unwrap();
    assert_eq!(
        entry.get("enc"),
        Some(&Node::scalar(Value::Str("x\ny".into())))
    );
}

#[test]
fn broken_metadata_names_the_prefixed_key() {
    let err = load(b"sops_pgp__list_1__map_fp=F\n").err().unwrap();
    assert!(
        matches!(&err, StoreError::Structure { path, message } if path == "sops_pgp" && message.starts_with("Incomplete list")),
        "{err}"
    );
}

#[test]
fn layouts_round_trip_byte_for_byte() {
    for input in [
        "",
        "\n",
        "A=1",
        "A=1\n",
        "\nA=1\n",
        "A=1\n\n\nB=2\n\n",
        "#c\n\n#d\nA=\n",
        "A=1\r\nB=x\\ny\r\n",
        "A=1\nB=2",
    ] {
        assert_eq!(emit_plain(&plain_tree(input)), input, "{input:?}");
    }
}

fn compose_env() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/layout/compose.env");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn compose_file_round_trips_through_a_simulated_encryption() {
    let original = compose_env();
    let mut tree = plain_tree(&original);
    assert_eq!(emit_plain(&tree), original);
    // Stand-ins for encryption: every value and comment becomes an ENC[…] string.
    let plain_items = tree.documents[0].0.clone();
    for (i, item) in tree.documents[0].0.iter_mut().enumerate() {
        let sealed = format!("ENC[AES256_GCM,data:{i},iv:x,tag:y,type:str]");
        match item {
            MapItem::Pair(p) => p.value = Node::scalar(Value::Str(sealed)),
            MapItem::Comment(c) => c.text = sealed.replace("str]", "comment]"),
        }
    }
    let metadata = rich_metadata().to_map();
    let encrypted = String::from_utf8(emit(&tree, Some(&metadata)).unwrap()).unwrap();
    assert!(
        encrypted.contains("\n\n#ENC[AES256_GCM,data:"),
        "{encrypted}"
    );
    assert!(!encrypted.contains("hunter2") && !encrypted.contains("Database"));
    let mut reloaded = load(encrypted.as_bytes()).unwrap();
    assert_eq!(
        Metadata::from_node(reloaded.metadata.as_ref().unwrap()).unwrap(),
        Metadata::from_node(&Node::Map(metadata)).unwrap()
    );
    reloaded.tree.documents[0].0 = plain_items;
    assert_eq!(emit_plain(&reloaded.tree), original);
}

#[test]
fn compose_file_round_trips_through_real_encryption() {
    let original = compose_env();
    let (encrypted, decrypted) = seal_and_open(Format::Dotenv, original.as_bytes());
    assert_eq!(String::from_utf8(decrypted).unwrap(), original);
    let encrypted = String::from_utf8(encrypted).unwrap();
    for secret in ["p@ss=word!", "hunter2", "sk_test", "Database"] {
        assert!(!encrypted.contains(secret), "{secret} leaked:\n{encrypted}");
    }
    // Blank lines stay where they were, before their sections' comments.
    let blank_at: Vec<usize> = encrypted
        .lines()
        .enumerate()
        .filter(|(_, l)| l.is_empty())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(blank_at, [2, 7]);
}

#[test]
fn restructured_trees_are_written_without_the_layout() {
    let mut tree = plain_tree("A=1\n\nB=2");
    tree.documents[0].insert("C", Node::scalar(Value::Str("3".into())));
    assert_eq!(emit_plain(&tree), "A=1\nB=2\nC=3\n");
    tree.layout = None;
    assert_eq!(emit_plain(&tree), "A=1\nB=2\nC=3\n");
}

#[test]
fn emits_other_formats_trees_as_sops_does() {
    let mut map = Map::new();
    map.insert("F", Node::scalar(Value::Float(1.0)));
    map.insert("I", Node::scalar(Value::Int(7)));
    map.insert("B", Node::scalar(Value::Bool(true)));
    map.insert("N", Node::scalar(Value::Null));
    map.insert("S", Node::scalar(Value::Str("two\nlines".into())));
    map.0
        .push(MapItem::Comment(Comment::new(" first\n second")));
    let tree = Tree {
        documents: vec![map, Map::new()],
        layout: None,
    };
    assert_eq!(
        emit_plain(&tree),
        "F=1.0\nI=7\nB=true\nN=\nS=two\\nlines\n# first\n# second\n"
    );
}

#[test]
fn emit_refuses_what_dotenv_cannot_hold() {
    let with = |key: &str, value: Node| {
        let mut map = Map::new();
        map.insert(key, value);
        Tree {
            documents: vec![map],
            layout: None,
        }
    };
    let secret = || Node::scalar(Value::Str("s3cret".into()));
    for (tree, hint) in [
        (
            with("db", Node::Map(Map::new())),
            "nested values at [\"db\"]",
        ),
        (
            with("l", Node::List(Default::default())),
            "nested values at [\"l\"]",
        ),
        (with("a=b", secret()), "cannot contain '='"),
        (with("a\nb", secret()), "newline"),
        (with("#a", secret()), "comment"),
        (
            with("raw", Node::scalar(Value::Bytes(vec![0xff]))),
            "raw bytes",
        ),
    ] {
        match emit(&tree, None) {
            Err(StoreError::Emit { format, message }) => {
                assert_eq!(format, "dotenv");
                assert!(message.contains(hint), "{message}");
                assert!(!message.contains("s3cret"));
            }
            other => panic!("{hint}: {other:?}"),
        }
    }
    let reserved = with("sops_version", secret());
    assert_eq!(
        emit(&reserved, Some(&rich_metadata().to_map())).err(),
        Some(StoreError::AlreadyEncrypted("sops_version".into()))
    );
    // Decrypting a file that holds such a key just writes it.
    assert_eq!(emit_plain(&reserved), "sops_version=s3cret\n");
}

#[test]
fn truncated_inputs_never_panic() {
    let encrypted = emit(&plain_tree(&compose_env()), Some(&rich_metadata().to_map())).unwrap();
    assert_truncations_never_panic(Format::Dotenv, &encrypted);
}

#[test]
fn reads_the_sops_vector_and_writes_it_back_identically() {
    let Some(vector) = sops_vector("format.enc.env") else {
        return;
    };
    assert_truncations_never_panic(Format::Dotenv, &vector);
    let loaded = load(&vector).unwrap();
    let data = &loaded.tree.documents[0];
    assert_eq!(data.0.len(), 1);
    // The key keeps its trailing space (its AAD is "foo :").
    let Some(Node::Scalar(foo)) = data.get("foo ") else {
        panic!("key \"foo \" expected")
    };
    assert!(foo
        .value
        .as_str()
        .unwrap()
        .starts_with("ENC[AES256_GCM,data:XBV7lQ==,"));
    let metadata = Metadata::from_node(loaded.metadata.as_ref().unwrap()).unwrap();
    assert_eq!(metadata.version, "3.13.1");
    assert_eq!(metadata.lastmodified, "2026-05-22T20:15:29Z");
    assert!(metadata.mac.starts_with("ENC[AES256_GCM,data:evEAiDYe"));
    let keys: Vec<_> = metadata.keys().collect();
    let [crate::keys::KeyEntry::Pgp {
        fp,
        created_at,
        enc,
    }] = keys.as_slice()
    else {
        panic!("one pgp key expected: {keys:?}")
    };
    assert_eq!(fp, "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4");
    assert_eq!(created_at, "2026-05-22T20:15:26Z");
    assert!(enc.starts_with("-----BEGIN PGP MESSAGE-----\n\nwcBMA"));
    assert!(enc.ends_with("\n-----END PGP MESSAGE-----"));
    // sops 3.13 sorts the block the way Metadata::to_map does, so the file comes back as it was.
    let rewritten = emit(&loaded.tree, Some(&metadata.to_map())).unwrap();
    assert_eq!(
        String::from_utf8(rewritten).unwrap(),
        String::from_utf8(vector).unwrap()
    );
}
