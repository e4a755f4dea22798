use super::*;
use crate::keys::KeyEntry;
use crate::metadata::Metadata;
use crate::store::flatten::tests::{
    assert_truncations_never_panic, rich_metadata, seal_and_open, sops_vector,
};
use crate::store::Format;

/// A section's items: `Ok((key, value))` for a pair, `Err(text)` for a comment.
type Items = Vec<Result<(String, String), String>>;

fn sections_of(tree: &Tree) -> Vec<(String, Items)> {
    tree.documents[0]
        .pairs()
        .map(|section| {
            let Node::Map(body) = &section.value else {
                panic!("sections are mappings")
            };
            let items = body
                .0
                .iter()
                .map(|item| match item {
                    MapItem::Comment(c) => Err(c.text.clone()),
                    MapItem::Pair(p) => match &p.value {
                        Node::Scalar(s) => Ok((p.key.clone(), s.value.as_str().unwrap().into())),
                        _ => panic!("values are scalars"),
                    },
                })
                .collect();
            (section.key.clone(), items)
        })
        .collect()
}

fn kv(k: &str, v: &str) -> Result<(String, String), String> {
    Ok((k.into(), v.into()))
}

fn note(text: &str) -> Result<(String, String), String> {
    Err(text.into())
}

fn plain(input: &str) -> Tree {
    let loaded = load(input.as_bytes()).unwrap();
    assert!(loaded.metadata.is_none(), "{input:?}");
    loaded.tree
}

fn emit_plain(tree: &Tree) -> String {
    String::from_utf8(emit(tree, None).unwrap()).unwrap()
}

#[test]
fn parses_like_go_ini() {
    let d = || DEFAULT_SECTION.to_string();
    let s = || "s".to_string();
    let cases: Vec<(&str, Vec<(String, Items)>)> = vec![
        ("", vec![(d(), vec![])]),
        (
            "a = 1\n[s]\nb: 2\nc=3=4\n",
            vec![
                (d(), vec![kv("a", "1")]),
                (s(), vec![kv("b", "2"), kv("c", "3=4")]),
            ],
        ),
        (
            "[s]\nk = \"quoted\"\nq = 'single'\nm = \"a\"b\"\ne =\nw =   spaced out  \n",
            vec![
                (d(), vec![]),
                (
                    s(),
                    vec![
                        kv("k", "quoted"),
                        kv("q", "single"),
                        kv("m", "\"a\"b\""),
                        kv("e", ""),
                        kv("w", "spaced out"),
                    ],
                ),
            ],
        ),
        (
            "[s]\nk = v ; note\nh = a#b\n",
            vec![
                (d(), vec![]),
                (
                    s(),
                    vec![kv("k", "v"), note("note"), kv("h", "a"), note("b")],
                ),
            ],
        ),
        (
            "[s]\nm = \"\"\"l1\n  l2 ; x\nl3\"\"\" ; after\nb = `a;b#c`\nt = \"\"\"one\"\"\"\n",
            vec![
                (d(), vec![]),
                (
                    s(),
                    vec![
                        kv("m", "l1\n  l2 ; x\nl3"),
                        note("after"),
                        kv("b", "a;b#c"),
                        kv("t", "one"),
                    ],
                ),
            ],
        ),
        (
            "[s]\nk = a\\\n  b\\\n  c\nn = 1 ; kept\n",
            vec![
                (d(), vec![]),
                (s(), vec![kv("k", "abc"), kv("n", "1"), note("kept")]),
            ],
        ),
        (
            "[s]\n; first\nk = 1\nj = 2\nk = 3\n",
            vec![(d(), vec![]), (s(), vec![kv("k", "3"), kv("j", "2")])],
        ),
        (
            "[s]\na=1\n[s]\nb=2\n",
            vec![
                (d(), vec![]),
                (s(), vec![kv("a", "1")]),
                (s(), vec![kv("b", "2")]),
            ],
        ),
        (
            "; top\n;; more\n[s]\n# about k\n#   and more\nk = v\n; dropped at the end\n",
            vec![
                (d(), vec![]),
                (
                    s(),
                    vec![
                        note("top\n;; more"),
                        kv("k", "v"),
                        note("about k\n#   and more"),
                    ],
                ),
            ],
        ),
        (
            "[s]\r\nk = v\r\n; c\r\nj = w\r\n",
            vec![
                (d(), vec![]),
                (s(), vec![kv("k", "v"), kv("j", "w"), note("c")]),
            ],
        ),
        (
            "[s]\n\"a=b\" = 1\n`c:d` : 2\n\"\"\"e`f\"\"\" = 3\n",
            vec![
                (d(), vec![]),
                (s(), vec![kv("a=b", "1"), kv("c:d", "2"), kv("e`f", "3")]),
            ],
        ),
        (
            "\u{feff}[ x ] ; c\n  k=v\n[a]b]\n[DEFAULT]\nz=1",
            vec![
                (d(), vec![]),
                (" x ".into(), vec![note("c"), kv("k", "v")]),
                ("a]b".into(), vec![]),
                (d(), vec![kv("z", "1")]),
            ],
        ),
    ];
    for (input, want) in cases {
        assert_eq!(sections_of(&plain(input)), want, "{input:?}");
    }
}

#[test]
fn bad_input_is_an_error_with_its_line_and_no_text() {
    for (input, line, hint) in [
        ("[s]\nk = 1\n[broken\n", 3, "closing ']'"),
        ("[s]\nk = 1\nhunter2\n", 3, "expected `key = value`"),
        ("[s]\n= hunter2\n", 2, "empty name"),
        ("[s]\n\"\" = hunter2\n", 2, "empty name"),
        ("[]\n", 1, "empty name"),
        ("[s]\n\"hunter2 = x\n", 2, "closing quote"),
        ("[s]\n\"hunter2\" x\n", 2, "after the quoted key"),
        ("[s]\nk = \"\"\"hunter2\nstill\n", 2, "never closed"),
        ("[s]\nk = \"\"\"hunter2\nstill", 2, "never closed"),
        ("[s]\nk = `hunter2\n", 2, "never closed"),
    ] {
        match load(input.as_bytes()) {
            Err(StoreError::Syntax {
                line: l, message, ..
            }) => {
                assert_eq!(l, line, "{input:?}: {message}");
                assert!(message.contains(hint), "{input:?}: {message}");
                assert!(!message.contains("hunter2"));
            }
            other => panic!("{input:?}: {:?}", other.err()),
        }
    }
    assert_eq!(
        load(b"[s]\nk = ab\xff\n").err(),
        Some(StoreError::Syntax {
            line: 2,
            column: 7,
            message: "the file is not valid UTF-8 text".into()
        })
    );
    let twice = "[sops]\nversion = 1\n[sops]\nversion = 2\n";
    assert!(matches!(
        load(twice.as_bytes()),
        Err(StoreError::Structure { .. })
    ));
}

#[test]
fn writes_like_go_ini() {
    for (input, want) in [
        // The canonical form reads and writes back unchanged.
        (
            "top = 1\n\n[name]\nfirst = a\nb     = c\n",
            "top = 1\n\n[name]\nfirst = a\nb     = c\n",
        ),
        // An empty DEFAULT section leaves nothing, spacing and alignment are go-ini's.
        (
            "[a]\nk=1\nlonger:2\n[b]\nx = y",
            "[a]\nk      = 1\nlonger = 2\n\n[b]\nx = y\n",
        ),
        (
            "; about a\n[a]\n# about k\nk = v ; inline\n",
            "; about a\n[a]\n; about k\n; inline\nk = v\n",
        ),
        (
            "[q]\nm = \"\"\"l1\nl2\"\"\"\nt = `a#b`\ns = \" pad \"\ne =\nk\"q = 1\n",
            "[q]\nm     = \"\"\"l1\nl2\"\"\"\nt     = `a#b`\ns     = \" pad \"\ne     = \n`k\"q` = 1\n",
        ),
        ("[p]\nwin = \"C:\\dir\\\"\n", "[p]\nwin = \"C:\\dir\\\"\n"),
    ] {
        let written = emit_plain(&plain(input));
        assert_eq!(written, want, "{input:?}");
        // What veil writes reads back to the same tree.
        assert_eq!(
            sections_of(&plain(&written)),
            sections_of(&plain(input)),
            "{written:?}"
        );
    }
}

#[test]
fn writes_other_formats_trees() {
    let mut section = Map::new();
    section.0.push(MapItem::Comment(Comment::new("one")));
    section.0.push(MapItem::Comment(Comment::new("two")));
    section.insert("f", Node::scalar(Value::Float(1.0)));
    section.insert("b", Node::scalar(Value::Bool(false)));
    section.0.push(MapItem::Comment(Comment::new("about b")));
    section.insert("f", Node::scalar(Value::Int(3)));
    let mut root = Map::new();
    root.0
        .push(MapItem::Comment(Comment::new("between sections")));
    root.insert("s", Node::Map(section));
    let tree = Tree {
        documents: vec![root],
        layout: None,
    };
    assert_eq!(
        emit_plain(&tree),
        "; one\n; two\n[s]\nf = 3\n; about b\nb = false\n"
    );
}

#[test]
fn emit_refuses_what_ini_cannot_hold() {
    let scalar = || Node::scalar(Value::Str("s3cret".into()));
    let section = |key: &str, value: Node| {
        let mut m = Map::new();
        m.insert(key, value);
        Node::Map(m)
    };
    for (name, value, hint) in [
        ("top", scalar(), "[\"top\"] is not a mapping"),
        (
            "l",
            Node::List(Default::default()),
            "[\"l\"] is not a mapping",
        ),
        (
            "s",
            section("n", section("x", scalar())),
            "nested values at [\"s\"][\"n\"]",
        ),
        ("s", section("", scalar()), "non-empty line"),
        ("s", section("a\nb", scalar()), "non-empty line"),
        ("a\nb", section("k", scalar()), "section name"),
        (
            "s",
            section("r", Node::scalar(Value::Bytes(vec![0xff]))),
            "raw bytes",
        ),
    ] {
        let mut root = Map::new();
        root.insert(name, value);
        let tree = Tree {
            documents: vec![root],
            layout: None,
        };
        match emit(&tree, None) {
            Err(StoreError::Emit { format, message }) => {
                assert_eq!(format, "ini");
                assert!(message.contains(hint), "{message}");
                assert!(!message.contains("s3cret"));
            }
            other => panic!("{hint}: {other:?}"),
        }
    }
    let mut root = Map::new();
    root.insert("sops", section("version", scalar()));
    let tree = Tree {
        documents: vec![root],
        layout: None,
    };
    assert_eq!(
        emit(&tree, Some(&rich_metadata().to_map())).err(),
        Some(StoreError::AlreadyEncrypted("sops".into()))
    );
}

#[test]
fn metadata_round_trips_with_escaped_newlines() {
    let metadata = rich_metadata();
    let written = emit(&plain("[s]\nk = v\n"), Some(&metadata.to_map())).unwrap();
    let text = String::from_utf8(written.clone()).unwrap();
    assert!(text.contains("\n\n[sops]\n"), "{text}");
    assert!(
        text.contains("-----BEGIN PGP MESSAGE-----\\n\\nwcBMA"),
        "{text}"
    );
    let loaded = load(&written).unwrap();
    assert_eq!(
        sections_of(&loaded.tree),
        vec![
            (DEFAULT_SECTION.to_string(), vec![]),
            ("s".to_string(), vec![kv("k", "v")])
        ]
    );
    assert_eq!(
        Metadata::from_node(loaded.metadata.as_ref().unwrap()).unwrap(),
        Metadata::from_node(&Node::Map(metadata.to_map())).unwrap()
    );
}

const CANONICAL: &str = "\
owner = ops

; database access
[database]
host     = db.internal
password = hunter2
; rotated quarterly
user     = app

[not private]
notsecret_unencrypted = hi there!
";

#[test]
fn a_canonical_file_round_trips_through_real_encryption() {
    assert_eq!(emit_plain(&plain(CANONICAL)), CANONICAL);
    let (encrypted, decrypted) = seal_and_open(Format::Ini, CANONICAL.as_bytes());
    assert_eq!(String::from_utf8(decrypted).unwrap(), CANONICAL);
    let encrypted = String::from_utf8(encrypted).unwrap();
    for secret in ["hunter2", "db.internal", "rotated", "database access"] {
        assert!(!encrypted.contains(secret), "{secret} leaked:\n{encrypted}");
    }
    assert!(encrypted.contains("notsecret_unencrypted = hi there!\n\n[sops]\n"));
    assert!(
        encrypted.starts_with("owner = ENC[AES256_GCM,"),
        "{encrypted}"
    );
}

#[test]
fn truncated_inputs_never_panic() {
    let encrypted = emit(&plain(CANONICAL), Some(&rich_metadata().to_map())).unwrap();
    assert_truncations_never_panic(Format::Ini, &encrypted);
    assert_truncations_never_panic(Format::Ini, b"[s]\nk = \"\"\"a\nb\"\"\" ; c\nj = x\\\ny\n");
}

fn vector_metadata(name: &str) -> Option<(Tree, Metadata)> {
    let vector = sops_vector(name)?;
    assert_truncations_never_panic(Format::Ini, &vector);
    let loaded = load(&vector).unwrap();
    let metadata = Metadata::from_node(loaded.metadata.as_ref().unwrap()).unwrap();
    Some((loaded.tree, metadata))
}

fn single_pgp(metadata: &Metadata) -> (String, String, String) {
    let keys: Vec<_> = metadata.keys().collect();
    let [KeyEntry::Pgp {
        fp,
        created_at,
        enc,
    }] = keys.as_slice()
    else {
        panic!("one pgp key expected: {keys:?}")
    };
    (fp.clone(), created_at.clone(), enc.clone())
}

#[test]
fn reads_both_sops_metadata_layouts() {
    let Some((tree, escaped)) = vector_metadata("format.enc.ini") else {
        return;
    };
    let Some((tree_2, multiline)) = vector_metadata("format-2.enc.ini") else {
        return;
    };
    for (tree, metadata, version, created) in [
        (&tree, &escaped, "3.13.2", "2026-05-22T20:15:53Z"),
        (&tree_2, &multiline, "3.13.1", "2026-05-22T20:15:17Z"),
    ] {
        let sections = sections_of(tree);
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0], (DEFAULT_SECTION.to_string(), vec![]));
        let (name, items) = &sections[1];
        assert_eq!(name, "foo");
        assert!(
            matches!(&items[..], [Ok((k, v))] if k == "bar" && v.starts_with("ENC[AES256_GCM,data:"))
        );
        assert_eq!(metadata.version, version);
        let (fp, created_at, enc) = single_pgp(metadata);
        assert_eq!(fp, "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4");
        assert_eq!(created_at, created);
        assert!(
            enc.starts_with("-----BEGIN PGP MESSAGE-----\n\nwcBMA"),
            "{enc:?}"
        );
        assert!(enc.ends_with("\n-----END PGP MESSAGE-----"));
        assert!(!enc.contains("\\n"));
    }
    // sops 3.13.2 output is what veil writes, byte for byte.
    let rewritten = emit(&tree, Some(&escaped.to_map())).unwrap();
    assert_eq!(
        String::from_utf8(rewritten).unwrap(),
        String::from_utf8(sops_vector("format.enc.ini").unwrap()).unwrap()
    );
}

#[test]
fn reads_the_sops_example_with_section_comments() {
    let Some((tree, metadata)) = vector_metadata("example.ini") else {
        return;
    };
    let sections = sections_of(&tree);
    let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["DEFAULT", "name", "address", "phoneNumbers", "not private"]
    );
    // The comment before [name] is that section's first item, encrypted with AAD "name:".
    let (_, name_items) = &sections[1];
    assert!(
        matches!(&name_items[0], Err(c) if c.starts_with("ENC[") && c.ends_with("type:comment]"))
    );
    let keys: Vec<&str> = name_items
        .iter()
        .filter_map(|i| i.as_ref().ok().map(|(k, _)| k.as_str()))
        .collect();
    assert_eq!(keys, ["firstName", "lastName", "age"]);
    for (_, items) in &sections[1..4] {
        for (key, value) in items.iter().flatten() {
            assert!(
                value.starts_with("ENC[AES256_GCM,") && value.ends_with("type:str]"),
                "{key}"
            );
        }
    }
    assert_eq!(
        sections[4].1,
        vec![kv("notsecret_unencrypted", "hi there!")]
    );
    assert_eq!(metadata.version, "3.5.0");
    assert_eq!(metadata.lastmodified, "2019-12-10T22:45:52Z");
    let fps: Vec<String> = metadata
        .keys()
        .map(|k| match k {
            KeyEntry::Pgp { fp, enc, .. } => {
                assert!(enc.starts_with("-----BEGIN PGP MESSAGE-----\n\n"));
                fp.clone()
            }
            other => panic!("pgp expected: {other:?}"),
        })
        .collect();
    assert_eq!(
        fps,
        [
            "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4",
            "D7229043384BCC60326C6FB9D8720D957C3D3074"
        ]
    );
}
