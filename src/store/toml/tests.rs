use super::*;
use crate::crypt::Rules;
use crate::keys::KeyEntry;
use crate::metadata::{KeyGroup, Metadata, FORMAT_VERSION};
use crate::tree::{List, ListItem, MapItem, Node, Pair, Scalar, Style};

const ENC_COMMENT: &str = "ENC[AES256_GCM,data:abc=,iv:def=,tag:ghi=,type:comment]";

fn enc_value(value: &Value) -> String {
    format!(
        "ENC[AES256_GCM,data:abc=,iv:def=,tag:ghi=,type:{}]",
        value.type_name()
    )
}

fn fixture() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/layout/Cargo-style.toml"
    );
    std::fs::read_to_string(path).expect("the Cargo-style fixture is readable")
}

/// Files that must survive load → emit, encryption and decryption byte for byte.
const CASES: &[(&str, &str)] = &[
    (
        "arrays of tables",
        "# servers\n[[servers]]\nname = \"a\" # first\nport = 1\n\n# the second one\n[[servers]]\nname = \"b\"\n\n[[servers.alias]]\nname = \"b1\"\n\n[other]\nx = true\n",
    ),
    (
        "inline tables",
        "point = { x = 1, y = -2.5, tag = 'p' }\nnested = { a = { b = \"deep\" }, list = [1, 2] }\nempty = {}\n",
    ),
    (
        "nested tables out of order",
        "[a.b]\nc = 1\n\n[x]\ny = \"z\"\n\n[a]\nd = 2\n\n[a.e]\nf = false\n\n[x.sops]\nkeep = \"nested sops keys are data\"\n",
    ),
    (
        "dotted keys",
        "a.b = 1\na.c.d = \"x\"\n\"quoted key\" = 'v'\nsite.\"google.com\" = true\n\n[t]\n# above a dotted key\nu.v = 3 # after it\nw = 4\n",
    ),
    (
        "multi-line strings",
        "basic = \"\"\"\nRoses are red\nViolets are \"blue\"\n\"\"\"\nliteral = '''\nC:\\path\\to\n  indented\n'''\none = \"\"\"no break\"\"\"\none_literal = '''no break either'''\nescapes = \"tab\\there \\\"q\\\" back\\\\slash\"\nunicode = \"héllo wörld\"\nreturn = \"a\\r\\nb\"\nml_return = \"\"\"\nline\\r\nx\"\"\"\nquotes = \"\"\"a \"\" b \"\"\\\"\"\"\"\ncontrol = \"bell\\u0007\"\n",
    ),
    (
        "datetimes of all four kinds",
        "odt1 = 1979-05-27T07:32:00Z\nodt2 = 1979-05-27T00:32:00.999999-07:00\nldt1 = 1979-05-27T07:32:00\nldt2 = 1979-05-27 07:32:00.5\nld = 1979-05-27\nlt1 = 07:32:00\nlt2 = 00:32:00.999999\ndates = [1979-05-27, 2024-02-29T12:00:00Z]\n",
    ),
    (
        "numbers and bools",
        "int = 42\nneg = -17\nzero = 0\nbig = 9223372036854775807\nfloat = 3.14\nsmall = 6.626e-34\nnegf = -0.01\ninf = inf\nminf = -inf\nnan = nan\nyes = true\nno = false\n",
    ),
    (
        "comments above, inline and inside arrays",
        "# top of file\n\n# above a\na = 1 # inline a\nflags = [\n  # first\n  \"x\", # after x\n  \"y\",\n  # last\n] # after the array\nmatrix = [[1, 2], [\"a\", 'b'], []]\n\n[t] # on the header\n#\n#no space\nurl = \"http://h/#not-a-comment\" # real\nlit = 'a#b'\nml = \"\"\"\n# not a comment\n\"\"\"\n# trailing comment\n",
    ),
    (
        "empty values",
        "empty = \"\"\nempty_literal = ''\nempty_array = []\n[empty_table]\n",
    ),
    (
        "crlf line endings",
        "# note\r\n[a]\r\nb = \"c\" # d\r\nn = 5\r\nml = \"\"\"\r\nx\r\ny\r\n\"\"\"\r\nmll = '''\r\nz\r\n'''\r\n",
    ),
    ("only comments", "# just\n# comments\n"),
    ("empty", ""),
];

fn all_cases() -> Vec<(String, String)> {
    let mut cases = vec![("Cargo-style fixture".to_string(), fixture())];
    cases.extend(CASES.iter().map(|(n, t)| (n.to_string(), t.to_string())));
    cases
}

fn sample_metadata() -> Metadata {
    Metadata {
        lastmodified: "2024-01-01T00:00:00Z".into(),
        mac: "ENC[AES256_GCM,data:mac=,iv:iv=,tag:tag=,type:str]".into(),
        version: FORMAT_VERSION.into(),
        rules: Rules::default(),
        shamir_threshold: 0,
        key_groups: vec![KeyGroup {
            keys: vec![
                KeyEntry::Age {
                    recipient: "age1recipient".into(),
                    enc: "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"
                        .into(),
                },
                KeyEntry::Pgp {
                    fp: "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4".into(),
                    created_at: "2024-01-01T00:00:00Z".into(),
                    enc: "-----BEGIN PGP MESSAGE-----\n\nwcBMA\n-----END PGP MESSAGE-----".into(),
                },
            ],
            foreign: vec![],
        }],
    }
}

fn load_text(text: &str) -> Loaded {
    load(text.as_bytes()).unwrap_or_else(|err| panic!("{err}\n{text}"))
}

fn emit_text(tree: &Tree, metadata: Option<&Map>) -> String {
    String::from_utf8(emit(tree, metadata).expect("emit")).expect("utf-8")
}

/// Applies `leaf` to every scalar and `note` to every comment, in tree order.
fn rewrite(map: &mut Map, leaf: &mut dyn FnMut(&mut Scalar), note: &mut dyn FnMut(&mut String)) {
    for item in &mut map.0 {
        match item {
            MapItem::Pair(pair) => rewrite_node(&mut pair.value, leaf, note),
            MapItem::Comment(comment) => note(&mut comment.text),
        }
    }
}

fn rewrite_node(
    node: &mut Node,
    leaf: &mut dyn FnMut(&mut Scalar),
    note: &mut dyn FnMut(&mut String),
) {
    match node {
        Node::Map(map) => rewrite(map, leaf, note),
        Node::List(list) => {
            for item in &mut list.0 {
                match item {
                    ListItem::Node(node) => rewrite_node(node, leaf, note),
                    ListItem::Comment(comment) => note(&mut comment.text),
                }
            }
        }
        Node::Scalar(scalar) => leaf(scalar),
    }
}

/// What crypt does: every non-empty value becomes an ENC string, every non-empty comment an
/// ENC comment; spans stay.
fn simulate_encryption(tree: &mut Tree) {
    for map in &mut tree.documents {
        rewrite(
            map,
            &mut |s| {
                if !s.value.is_empty_string() {
                    s.value = Value::Str(enc_value(&s.value));
                }
            },
            &mut |text| {
                if !text.is_empty() {
                    *text = ENC_COMMENT.to_string();
                }
            },
        );
    }
}

fn scalars_and_comments(map: &Map) -> (Vec<Value>, Vec<String>) {
    let mut copy = map.clone();
    let (mut values, mut comments) = (Vec::new(), Vec::new());
    rewrite(&mut copy, &mut |s| values.push(s.value.clone()), &mut |c| {
        comments.push(c.clone())
    });
    (values, comments)
}

/// The tree without positions (and NaN comparable), to compare trees read from different texts.
fn without_spans(map: &Map) -> Map {
    let mut copy = map.clone();
    strip_map(&mut copy);
    copy
}

fn strip_map(map: &mut Map) {
    for item in &mut map.0 {
        match item {
            MapItem::Pair(pair) => strip_node(&mut pair.value),
            MapItem::Comment(comment) => comment.span = None,
        }
    }
}

fn strip_node(node: &mut Node) {
    match node {
        Node::Map(map) => strip_map(map),
        Node::List(list) => {
            for item in &mut list.0 {
                match item {
                    ListItem::Node(node) => strip_node(node),
                    ListItem::Comment(comment) => comment.span = None,
                }
            }
        }
        Node::Scalar(scalar) => {
            scalar.span = None;
            // NaN is not equal to itself; compare it as a marker.
            if matches!(scalar.value, Value::Float(f) if f.is_nan()) {
                scalar.value = Value::Str("<NaN>".into());
            }
        }
    }
}

/// Lines without a value or comment: blank lines and table headers.
fn is_structural(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || (t.starts_with('[') && t.ends_with(']') && !t.contains('='))
}

fn body_of(encrypted: &str) -> &str {
    if encrypted.starts_with("[sops]\n") {
        return "";
    }
    // The blank line before `[sops]` is veil's separator, not part of the body.
    match encrypted.find("\n\n[sops]\n") {
        Some(at) => &encrypted[..at + 1],
        None => encrypted,
    }
}

#[test]
fn load_then_emit_gives_the_input_back() {
    for (name, input) in all_cases() {
        let loaded = load_text(&input);
        assert!(loaded.metadata.is_none(), "{name}");
        assert_eq!(emit_text(&loaded.tree, None), input, "{name}");
    }
}

#[test]
fn encryption_keeps_the_layout_and_decryption_restores_every_byte() {
    let metadata = sample_metadata();
    for (name, input) in all_cases() {
        let loaded = load_text(&input);
        let original = loaded.tree.documents[0].clone();
        let mut tree = loaded.tree;
        simulate_encryption(&mut tree);
        let encrypted = emit_text(&tree, Some(&metadata.to_map()));

        assert!(
            encrypted.parse::<toml_edit::DocumentMut>().is_ok(),
            "{name}: not valid TOML\n{encrypted}"
        );
        assert!(encrypted.contains("[sops]\n"), "{name}");
        let body = body_of(&encrypted);
        let mut out_lines = body.lines();
        for line in input.lines().filter(|l| is_structural(l)) {
            assert!(
                out_lines.any(|o| o == line),
                "{name}: structural line {line:?} missing or moved\n{encrypted}"
            );
        }
        for line in body.lines() {
            assert!(
                input.lines().any(|i| i == line) || line.contains("ENC["),
                "{name}: unexpected line {line:?}\n{encrypted}"
            );
        }

        let reloaded = load_text(&encrypted);
        let node = reloaded.metadata.as_ref().expect("metadata");
        assert_eq!(
            Metadata::from_node(node).expect("metadata parses"),
            metadata,
            "{name}"
        );
        assert_eq!(
            without_spans(&reloaded.tree.documents[0]),
            without_spans(&tree.documents[0]),
            "{name}: ENC values at the same paths\n{encrypted}"
        );

        // Decryption: the plaintext back into the tree read from the encrypted text.
        let (values, comments) = scalars_and_comments(&original);
        let (mut values, mut comments) = (values.into_iter(), comments.into_iter());
        let mut decrypted = reloaded.tree;
        rewrite(
            &mut decrypted.documents[0],
            &mut |s| s.value = values.next().expect("as many values"),
            &mut |c| *c = comments.next().expect("as many comments"),
        );
        assert_eq!(emit_text(&decrypted, None), input, "{name}\n{encrypted}");
    }
}

#[test]
fn encrypted_values_keep_their_quoting_family() {
    let input = "port = 5432\npassword = \"hunter2\" # rotate me\ntoken = 'tok'\nml = \"\"\"\na\nb\"\"\"\nmll = '''\nx\n'''\nday = 1979-05-27\nliteral_day = '''1979-05-27'''\n";
    let mut tree = load_text(input).tree;
    simulate_encryption(&mut tree);
    let encrypted = emit_text(&tree, None);
    let enc = |t: &str| format!("ENC[AES256_GCM,data:abc=,iv:def=,tag:ghi=,type:{t}]");
    let want = format!(
        "port = \"{int}\"\npassword = \"{s}\" #{ENC_COMMENT}\ntoken = '{s}'\nml = \"\"\"{s}\"\"\"\nmll = '''{s}'''\nday = '''{s}'''\nliteral_day = \"{s}\"\n",
        int = enc("int"),
        s = enc("str"),
    );
    assert_eq!(encrypted, want);
}

#[test]
fn values_and_comments_are_read_with_types_styles_and_places() {
    let input = "# head\n[db]\nport = 5432 # p\nhost = 'h'\nwhen = 1979-05-27T07:32:00Z\nday = 1979-05-27\nlist = [\n  1, # one\n  # before two\n  2,\n]\n";
    let loaded = load_text(input);
    let day_at = input.find("1979-05-27\n").expect("the date");
    let root = &loaded.tree.documents[0];
    let MapItem::Comment(head) = &root.0[0] else {
        panic!("the first comment belongs before [db]")
    };
    assert_eq!((head.text.as_str(), head.inline), (" head", false));
    let db = root.get("db").and_then(Node::as_map).expect("db");
    let kinds: Vec<String> = db
        .0
        .iter()
        .map(|item| match item {
            MapItem::Pair(Pair {
                key,
                value: Node::Scalar(s),
            }) => format!(
                "{key}={:?}/{:?}",
                s.value.type_name(),
                s.span.as_ref().map(|s| s.style)
            ),
            MapItem::Pair(Pair { key, .. }) => format!("{key}=collection"),
            MapItem::Comment(c) => format!("#{}{}", c.text, if c.inline { "(inline)" } else { "" }),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "port=\"int\"/Some(Plain)",
            "# p(inline)",
            "host=\"str\"/Some(SingleQuoted)",
            "when=\"time\"/Some(Plain)",
            "day=\"str\"/Some(Plain)",
            "list=collection",
        ]
    );
    assert_eq!(
        db.get("day"),
        Some(&Node::Scalar(Scalar {
            value: Value::Str("1979-05-27".into()),
            span: Some(Span {
                range: day_at..day_at + 10,
                style: Style::Plain
            }),
        }))
    );
    let Some(Node::List(List(items))) = db.get("list") else {
        panic!("list")
    };
    let shape: Vec<&str> = items
        .iter()
        .map(|i| match i {
            ListItem::Node(_) => "value",
            ListItem::Comment(c) if c.inline => "inline comment",
            ListItem::Comment(_) => "comment",
        })
        .collect();
    assert_eq!(shape, ["value", "inline comment", "comment", "value"]);
}

#[test]
fn decryption_normalises_spellings_it_cannot_keep() {
    for (input, decrypted) in [
        ("a = 0xff\n", "a = 255\n"),
        ("a = 1_000\n", "a = 1000\n"),
        ("a = +17\n", "a = 17\n"),
        ("a = 1.50\n", "a = 1.5\n"),
        ("a = 1e6\n", "a = 1000000.0\n"),
        ("a = 5e+22\n", "a = 5e22\n"),
        (
            "a = 1979-05-27T07:32:00+00:00\n",
            "a = 1979-05-27T07:32:00Z\n",
        ),
        ("a = \"\\u00e9\"\n", "a = \"é\"\n"),
        ("a = \"\"\"\\\n  joined\"\"\"\n", "a = \"\"\"joined\"\"\"\n"),
        ("a = 1", "a = 1\n"),
    ] {
        let loaded = load_text(input);
        let (values, _) = scalars_and_comments(&loaded.tree.documents[0]);
        let mut tree = loaded.tree;
        simulate_encryption(&mut tree);
        let encrypted = emit_text(&tree, Some(&sample_metadata().to_map()));
        let mut reloaded = load_text(&encrypted).tree;
        let mut values = values.into_iter();
        rewrite(
            &mut reloaded.documents[0],
            &mut |s| s.value = values.next().expect("value"),
            &mut |_| {},
        );
        assert_eq!(emit_text(&reloaded, None), decrypted, "{input}");
    }
}

#[test]
fn an_old_sops_table_is_dropped_and_the_new_one_written_last() {
    let input = "a = 1\n\n[sops]\nversion = \"old\"\n\n[[sops.age]]\nrecipient = \"r\"\nenc = \"\"\"\nE\n\"\"\"\n";
    let loaded = load_text(input);
    let metadata = loaded
        .metadata
        .as_ref()
        .expect("a plain file with [sops] is reported");
    let Node::Map(map) = metadata else {
        panic!("metadata is a map")
    };
    assert!(map.get("age").is_some());
    assert_eq!(loaded.tree.documents[0].get("sops"), None);
    assert_eq!(emit_text(&loaded.tree, None), "a = 1\n");
    let rewritten = emit_text(&loaded.tree, Some(&sample_metadata().to_map()));
    assert!(rewritten.starts_with("a = 1\n\n[sops]\n"), "{rewritten}");
    assert_eq!(rewritten.matches("[sops]").count(), 1);
}

#[test]
fn the_metadata_table_uses_arrays_of_tables_and_multi_line_keys() {
    let tree = Tree {
        documents: vec![Map::new()],
        layout: None,
    };
    let out = emit_text(&tree, Some(&sample_metadata().to_map()));
    let want = "[sops]
lastmodified = \"2024-01-01T00:00:00Z\"
mac = \"ENC[AES256_GCM,data:mac=,iv:iv=,tag:tag=,type:str]\"
unencrypted_suffix = \"_unencrypted\"
version = \"3.13.2\"

[[sops.age]]
enc = \"\"\"
-----BEGIN AGE ENCRYPTED FILE-----
YWdl
-----END AGE ENCRYPTED FILE-----
\"\"\"
recipient = \"age1recipient\"

[[sops.pgp]]
created_at = \"2024-01-01T00:00:00Z\"
enc = \"\"\"
-----BEGIN PGP MESSAGE-----

wcBMA
-----END PGP MESSAGE-----\"\"\"
fp = \"FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4\"
";
    assert_eq!(out, want.replace("3.13.2", FORMAT_VERSION));
    let loaded = load_text(&out);
    let node = loaded.metadata.expect("metadata");
    assert_eq!(Metadata::from_node(&node), Ok(sample_metadata()));
}

fn scalar(value: Value) -> Node {
    Node::scalar(value)
}

fn map(pairs: Vec<(&str, Node)>) -> Map {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k, v);
    }
    m
}

#[test]
fn trees_without_a_layout_are_written_as_clean_toml_in_value_order() {
    let time = crate::tree::parse_time("2024-01-01T00:00:00Z").expect("time");
    let mut db = map(vec![("host", scalar(Value::Str("h".into())))]);
    db.0.insert(0, MapItem::Comment(crate::tree::Comment::new(" the host")));
    let servers = Node::List(List(vec![
        ListItem::Comment(crate::tree::Comment::new(" first server")),
        ListItem::Node(Node::Map(map(vec![(
            "name",
            scalar(Value::Str("a".into())),
        )]))),
        ListItem::Node(Node::Map(map(vec![(
            "tags",
            Node::List(List(vec![
                ListItem::Node(scalar(Value::Int(1))),
                ListItem::Comment(crate::tree::Comment::new(" in a list")),
                ListItem::Node(scalar(Value::Float(2.0))),
            ])),
        )]))),
    ]));
    let root = map(vec![
        ("db", Node::Map(db)),
        ("port", scalar(Value::Int(5432))),
        ("text", scalar(Value::Str("two\nlines".into()))),
        ("key with space", scalar(Value::Bool(true))),
        ("when", scalar(Value::Time(time))),
        (
            "inline",
            Node::List(List(vec![
                ListItem::Node(Node::Map(map(vec![("x", scalar(Value::Int(1)))]))),
                ListItem::Node(scalar(Value::Int(2))),
            ])),
        ),
        ("empty", Node::Map(Map::new())),
        ("servers", servers),
        (
            "last",
            Node::Map(map(vec![(
                "deep",
                Node::Map(map(vec![("v", scalar(Value::Str("q\"".into())))])),
            )])),
        ),
    ]);
    let tree = Tree {
        documents: vec![root.clone()],
        layout: None,
    };
    let out = emit_text(&tree, None);
    let want = "# the host
db.host = \"h\"
port = 5432
text = \"\"\"
two
lines\"\"\"
\"key with space\" = true
when = 2024-01-01T00:00:00Z
inline = [{ x = 1 }, 2]

[empty]

# first server
[[servers]]
name = \"a\"

[[servers]]
tags = [
    1,
    # in a list
    2.0,
]

[last.deep]
v = \"q\\\"\"
";
    assert_eq!(out, want);
    // Read back, it is the same tree: same order, so the same MAC.
    let loaded = load_text(&out);
    assert_eq!(without_spans(&loaded.tree.documents[0]), root);
}

#[test]
fn a_changed_structure_is_written_from_scratch() {
    let mut tree = load_text("# c\na = 1\n[t]\nb = 'x'\n").tree;
    tree.documents[0].insert("new", scalar(Value::Str("v".into())));
    let out = emit_text(&tree, None);
    let reread = load_text(&out);
    let root = &reread.tree.documents[0];
    assert_eq!(
        root.get("new")
            .map(|n| without_spans(&map(vec![("n", n.clone())]))),
        Some(map(vec![("n", scalar(Value::Str("v".into())))]))
    );
    assert!(root.get("t").is_some() && root.get("a").is_some(), "{out}");
}

#[test]
fn values_toml_cannot_hold_are_errors_naming_the_path() {
    for (value, needle) in [(Value::Null, "null"), (Value::Bytes(vec![0xff]), "binary")] {
        let inner = map(vec![("secret", scalar(value))]);
        let tree = Tree {
            documents: vec![map(vec![("outer", Node::Map(inner))])],
            layout: None,
        };
        let err = emit(&tree, None).expect_err("no TOML form");
        let text = err.to_string();
        assert!(
            text.contains("[\"outer\"][\"secret\"]") && text.contains(needle),
            "{text}"
        );
    }
    let mut comment_tree = load_text("a = 1 # c\n").tree;
    rewrite(&mut comment_tree.documents[0], &mut |_| {}, &mut |c| {
        *c = "x\n[evil]".into()
    });
    let err = emit(&comment_tree, None).expect_err("a comment cannot hold a line break");
    assert!(matches!(err, StoreError::Emit { .. }), "{err}");
}

#[test]
fn bad_toml_is_a_syntax_error_with_its_position_and_without_values() {
    for (input, line, column) in [
        ("a = ", 1, 5),
        ("a = 1\nb = \"hunter2\n", 2, 13),
        ("[t]\nx = 1\nx = 2\n", 3, 1),
        ("a = 1 2\n", 1, 7),
        ("[t\n", 1, 3),
        ("password = hunter2\n", 1, 12),
        ("é = 1\n", 1, 1),
    ] {
        match load(input.as_bytes()) {
            Err(StoreError::Syntax {
                line: l,
                column: c,
                message,
            }) => {
                assert_eq!((l, c), (line, column), "{input:?}: {message}");
                assert!(!message.contains("hunter2"), "{message}");
            }
            Err(other) => panic!("{input:?}: {other}"),
            Ok(_) => panic!("{input:?} parsed"),
        }
    }
    let err = load(b"a = \"\xff\"\n").err().expect("not UTF-8");
    assert!(
        matches!(
            err,
            StoreError::Syntax {
                line: 1,
                column: 6,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_files_never_panic_and_valid_prefixes_round_trip() {
    for (name, input) in all_cases() {
        let bytes = input.as_bytes();
        for end in 0..=bytes.len() {
            let prefix = &bytes[..end];
            if let Ok(loaded) = load(prefix) {
                let out = emit(&loaded.tree, None).expect("a loaded tree emits");
                assert_eq!(out, prefix, "{name}: prefix of {end} bytes");
            }
        }
    }
}

#[test]
fn many_values_survive_encryption() {
    const TABLES: usize = 200;
    let mut input = String::new();
    for table in 0..TABLES {
        input.push_str(&format!("[t{table}]\n# note\n"));
        for key in 0..100 {
            input.push_str(&format!("k{key} = \"value {key}\"\n"));
        }
    }
    let mut tree = load_text(&input).tree;
    simulate_encryption(&mut tree);
    let encrypted = emit_text(&tree, Some(&sample_metadata().to_map()));
    let reloaded = load_text(&encrypted);
    // Speed is measured by bench/run.sh, not here: this checks that a large file survives.
    assert_eq!(reloaded.tree.documents[0].0.len(), TABLES);
}

/// End to end through the real pipeline, with a stand-in key that "wraps" by hex-encoding.
mod pipeline {
    use super::*;
    use crate::document::{self, EncryptPlan, OpenOptions};
    use crate::keys::keyring::{DecryptionOrder, Keyring};
    use crate::keys::Recipient;

    use crate::keys::fake::Plain;

    fn encrypt(mut tree: Tree) -> String {
        let plan = EncryptPlan {
            groups: vec![vec![Box::new(Plain) as Box<dyn Recipient>]],
            shamir_threshold: 0,
            rules: Rules::default(),
        };
        let metadata = document::encrypt(&mut tree, &plan).expect("encrypt");
        emit_text(&tree, Some(&metadata.to_map()))
    }

    fn decrypt(encrypted: &str) -> Tree {
        let keyring = Keyring::new(vec![Box::new(Plain)], DecryptionOrder::default());
        let opened = document::open(load_text(encrypted), &keyring, OpenOptions::default())
            .unwrap_or_else(|err| panic!("{err}\n{encrypted}"));
        assert!(opened.kept_comments.is_empty(), "every comment opens");
        opened.tree
    }

    #[test]
    fn encrypt_then_decrypt_gives_the_input_back() {
        for (name, input) in all_cases() {
            let encrypted = encrypt(load_text(&input).tree);
            for secret in [
                "hunter2",
                "tok_live_123",
                "rotate me",
                "Roses",
                "1979-05-27",
            ] {
                assert!(
                    !body_of(&encrypted).contains(secret),
                    "{name}: {secret} leaked"
                );
            }
            assert_eq!(
                emit_text(&decrypt(&encrypted), None),
                input,
                "{name}\n{encrypted}"
            );
        }
    }

    #[test]
    fn a_tree_from_another_format_keeps_its_value_order_and_mac() {
        // As a YAML file would give it: a table before plain values, a list of maps.
        let tree = Tree {
            documents: vec![map(vec![
                (
                    "db",
                    Node::Map(map(vec![("user", scalar(Value::Str("u".into())))])),
                ),
                ("port", scalar(Value::Int(1))),
                (
                    "items",
                    Node::List(List(vec![
                        ListItem::Node(Node::Map(map(vec![("a", scalar(Value::Bool(true)))]))),
                        ListItem::Node(Node::Map(map(vec![("a", scalar(Value::Float(0.5)))]))),
                    ])),
                ),
            ])],
            layout: None,
        };
        let original = without_spans(&tree.documents[0]);
        let encrypted = encrypt(tree);
        let decrypted = decrypt(&encrypted);
        assert_eq!(
            without_spans(&decrypted.documents[0]),
            original,
            "{encrypted}"
        );
    }
}

#[test]
fn metadata_of_every_shape_reads_back_equal() {
    let kms = KeyEntry::Kms {
        arn: "arn:aws:kms:eu-west-1:1:key/k".into(),
        role: String::new(),
        context: vec![
            ("app".into(), "shop".into()),
            ("env key".into(), "prod".into()),
        ],
        created_at: "2024-01-01T00:00:00Z".into(),
        enc: "AQID".into(),
        aws_profile: String::new(),
    };
    let mut groups = sample_metadata();
    groups.shamir_threshold = 2;
    groups.key_groups = vec![
        KeyGroup {
            keys: vec![kms.clone()],
            foreign: vec![],
        },
        sample_metadata().key_groups.remove(0),
    ];
    let mut single_kms = sample_metadata();
    // Entries are read back list by list, and the lists are written sorted: age, kms, pgp.
    single_kms.key_groups[0].keys.insert(1, kms);
    single_kms.rules.mac_only_encrypted = true;
    for metadata in [sample_metadata(), groups, single_kms] {
        let tree = load_text("a = 1\n").tree;
        let out = emit_text(&tree, Some(&metadata.to_map()));
        assert!(out.parse::<toml_edit::DocumentMut>().is_ok(), "{out}");
        let node = load_text(&out).metadata.expect("metadata");
        assert_eq!(Metadata::from_node(&node).as_ref(), Ok(&metadata), "{out}");
    }
}

#[test]
fn a_sops_table_anywhere_is_dropped_and_a_scattered_one_forces_a_clean_rewrite() {
    let first = "[sops]\nversion = \"1\"\n\n[data]\nx = 1 # c\n";
    let loaded = load_text(first);
    assert!(loaded.metadata.is_some());
    assert_eq!(emit_text(&loaded.tree, None), "\n[data]\nx = 1 # c\n");

    let scattered = "[sops]\nversion = \"1\"\n\n[data]\nx = 1\n\n[sops.more]\ny = 2\n";
    let loaded = load_text(scattered);
    assert!(loaded.metadata.is_some());
    assert_eq!(emit_text(&loaded.tree, None), "[data]\nx = 1\n");
}

#[test]
fn mutated_files_never_panic_and_whatever_loads_survives_encryption() {
    let metadata = sample_metadata().to_map();
    for (name, input) in all_cases() {
        let bytes = input.as_bytes();
        for at in (0..bytes.len()).step_by(3) {
            for replacement in [b'"', b'\'', b'#', b'[', b']', b'=', b'\n', b'{', b','] {
                let mut mutated = bytes.to_vec();
                mutated[at] = replacement;
                let Ok(loaded) = load(&mutated) else { continue };
                let text = String::from_utf8_lossy(&mutated).into_owned();
                assert_eq!(emit_text(&loaded.tree, None), text, "{name} @{at}");
                let original = loaded.tree.documents[0].clone();
                let (values, comments) = scalars_and_comments(&original);
                let mut tree = loaded.tree;
                simulate_encryption(&mut tree);
                let encrypted = emit_text(&tree, Some(&metadata));
                let mut decrypted = load(encrypted.as_bytes())
                    .unwrap_or_else(|err| panic!("{name} @{at}: {err}\n{encrypted}"))
                    .tree;
                let (mut values, mut comments) = (values.into_iter(), comments.into_iter());
                rewrite(
                    &mut decrypted.documents[0],
                    &mut |s| s.value = values.next().expect("as many values"),
                    &mut |c| *c = comments.next().expect("as many comments"),
                );
                // Same values, types and comments; the spelling may be normalised (module docs).
                let output = emit_text(&decrypted, None);
                assert_eq!(
                    without_spans(&load_text(&output).tree.documents[0]),
                    without_spans(&original),
                    "{name} @{at}\n{text}\n{output}"
                );
            }
        }
    }
}
