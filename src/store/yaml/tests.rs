use super::*;
use crate::crypt::{self, Cipher, DataKey, Rules};
use crate::keys::KeyEntry;
use crate::metadata::{KeyGroup, Metadata, FORMAT_VERSION};
use crate::store::Indent;
use crate::tree::{Comment, List, ListItem, MapItem, Pair, Scalar};

const ENC_VALUE: &str = "ENC[AES256_GCM,data:abc=,iv:def=,tag:ghi=,type:str]";
const ENC_COMMENT: &str = "ENC[AES256_GCM,data:abc=,iv:def=,tag:ghi=,type:comment]";

fn load_str(text: &str) -> Loaded {
    match load(text.as_bytes()) {
        Ok(loaded) => loaded,
        Err(e) => panic!("cannot load {text:?}: {e}"),
    }
}

fn emit_str(tree: &Tree, metadata: Option<&Map>) -> String {
    String::from_utf8(emit(tree, metadata, Indent::default()).expect("emit")).expect("utf-8")
}

fn value_of(text: &str) -> Value {
    let loaded = load_str(text);
    match loaded.tree.documents[0].get("v") {
        Some(Node::Scalar(s)) => s.value.clone(),
        other => panic!("{text:?}: no scalar v: {other:?}"),
    }
}

fn time(text: &str) -> Value {
    Value::Time(crate::tree::parse_time(text).expect("test time"))
}

#[test]
fn scalars_are_typed_as_yaml_v3_types_them() {
    let table: Vec<(&str, Value)> = vec![
        ("v: 123", Value::Int(123)),
        ("v: -17", Value::Int(-17)),
        ("v: +1", Value::Int(1)),
        ("v: 1_000", Value::Int(1000)),
        ("v: 0x1F", Value::Int(31)),
        ("v: -0x1F", Value::Int(-31)),
        ("v: 0755", Value::Int(493)),
        ("v: 0o17", Value::Int(15)),
        ("v: 0b101", Value::Int(5)),
        ("v: 08", Value::Float(8.0)),
        ("v: 9223372036854775807", Value::Int(i64::MAX)),
        ("v: -9223372036854775808", Value::Int(i64::MIN)),
        (
            "v: 18446744073709551616",
            Value::Float(18446744073709551616.0),
        ),
        ("v: 1.5", Value::Float(1.5)),
        ("v: 1.", Value::Float(1.0)),
        ("v: 1e3", Value::Float(1000.0)),
        ("v: -2.5E-3", Value::Float(-0.0025)),
        ("v: .5", Value::Float(0.5)),
        ("v: .inf", Value::Float(f64::INFINITY)),
        ("v: -.Inf", Value::Float(f64::NEG_INFINITY)),
        ("v: 1e400", Value::Str("1e400".into())),
        ("v: 1.2.3", Value::Str("1.2.3".into())),
        ("v: true", Value::Bool(true)),
        ("v: True", Value::Bool(true)),
        ("v: FALSE", Value::Bool(false)),
        ("v: yes", Value::Str("yes".into())),
        ("v: off", Value::Str("off".into())),
        ("v: null", Value::Null),
        ("v: ~", Value::Null),
        ("v:", Value::Null),
        ("v: NULL", Value::Null),
        ("v: 2024-01-01", time("2024-01-01T00:00:00Z")),
        ("v: 2024-1-2", time("2024-01-02T00:00:00Z")),
        (
            "v: 2001-12-14t21:59:43.10-05:00",
            time("2001-12-14T21:59:43.1-05:00"),
        ),
        ("v: 2001-12-14T21:59:43Z", time("2001-12-14T21:59:43Z")),
        ("v: 2001-12-14 21:59:43.10", time("2001-12-14T21:59:43.1Z")),
        (
            "v: 2001-12-14T21:59:43",
            Value::Str("2001-12-14T21:59:43".into()),
        ),
        ("v: 2001-13-14", Value::Str("2001-13-14".into())),
        ("v: 12345-01-01", Value::Str("12345-01-01".into())),
        ("v: hello world", Value::Str("hello world".into())),
        ("v: '123'", Value::Str("123".into())),
        ("v: \"true\"", Value::Str("true".into())),
        ("v: \"a\\tb\\u00e9\"", Value::Str("a\tb\u{e9}".into())),
        ("v: 'it''s'", Value::Str("it's".into())),
        ("v: !!str 123", Value::Str("123".into())),
        ("v: !!int \"12\"", Value::Int(12)),
        ("v: !!float 2", Value::Float(2.0)),
        ("v: !!binary aGVsbG8=", Value::Str("hello".into())),
        ("v: !!binary /w==", Value::Bytes(vec![0xff])),
        ("v: !Ref some-resource", Value::Str("some-resource".into())),
        ("v: |\n  a\n  b\n", Value::Str("a\nb\n".into())),
        ("v: |-\n  a\n", Value::Str("a".into())),
        ("v: >\n  a\n  b\n", Value::Str("a b\n".into())),
        ("v: |\n  a", Value::Str("a".into())),
    ];
    for (text, want) in table {
        let got = value_of(text);
        assert_eq!(got, want, "{text:?}");
    }
    let nan = value_of("v: .nan");
    assert!(matches!(nan, Value::Float(f) if f.is_nan()));
}

#[test]
fn non_string_keys_are_refused_as_sops_does() {
    for (text, path, key) in [
        ("1: a\n", "(top level)", "1"),
        ("db:\n  true: b\n", r#"["db"]"#, "true"),
        ("l:\n  - 2024-01-01: c\n", r#"["l"][0]"#, "2024-01-01"),
        ("~: d\n", "(top level)", "~"),
    ] {
        match load(text.as_bytes()) {
            Err(StoreError::NonStringKey { path: p, key: k }) => {
                assert_eq!((p.as_str(), k.as_str()), (path, key), "{text:?}")
            }
            Err(other) => panic!("{text:?}: {other}"),
            Ok(_) => panic!("{text:?}: accepted"),
        }
    }
    // Quoted or tagged, they are strings.
    let loaded = load_str("\"1\": a\n'true': b\n!!str 2024-01-01: c\n");
    let keys: Vec<&str> = loaded.tree.documents[0]
        .pairs()
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(keys, ["1", "true", "2024-01-01"]);
}

/// The tree in walk order: `=path` for a pair, `-` for a list element, `#text @container`
/// for a comment (container = the AAD keys, `[]` when the comment is a list item).
fn outline(tree: &Tree) -> Vec<String> {
    fn map(m: &Map, path: &str, out: &mut Vec<String>) {
        for item in &m.0 {
            match item {
                MapItem::Comment(c) => out.push(comment(c, path)),
                MapItem::Pair(p) => {
                    let path = format!("{path}{}:", p.key);
                    out.push(format!("={path}"));
                    node(&p.value, &path, out);
                }
            }
        }
    }
    fn node(n: &Node, path: &str, out: &mut Vec<String>) {
        match n {
            Node::Map(m) => map(m, path, out),
            Node::List(l) => {
                for item in &l.0 {
                    match item {
                        ListItem::Comment(c) => out.push(comment(c, &format!("{path}[]"))),
                        ListItem::Node(n) => {
                            out.push(format!("-{path}"));
                            node(n, path, out);
                        }
                    }
                }
            }
            Node::Scalar(_) => {}
        }
    }
    fn comment(c: &Comment, path: &str) -> String {
        let inline = if c.inline { " (inline)" } else { "" };
        format!("#{} @{path}{inline}", c.text)
    }
    let mut out = Vec::new();
    for (i, document) in tree.documents.iter().enumerate() {
        if i > 0 {
            out.push("---".into());
        }
        map(document, "", &mut out);
    }
    out
}

#[test]
fn comments_are_filed_where_sops_files_them() {
    let table: &[(&str, &[&str])] = &[
        (
            // vectors/comments.yaml
            "# first comment in file\nlorem: ipsum\n# this-is-a-comment\ndolor: sit",
            &["# first comment in file @", "=lorem:", "# this-is-a-comment @", "=dolor:"],
        ),
        (
            // vectors/comments_list.yaml
            "lorem:\n- foo\n#this-is-a-comment\n- bar",
            &["=lorem:", "-lorem:", "#this-is-a-comment @lorem:[]", "-lorem:"],
        ),
        (
            // the plaintext of vectors/example.yaml: foot comments of nested mappings
            "app2:\n    db:\n        user: u\n        # db comment\n    key: k\nthis:\n    is:\n        value: v\n        # one\n        # two\nnext: 1\n",
            &[
                "=app2:", "=app2:db:", "=app2:db:user:", "# db comment @app2:db:", "=app2:key:",
                "=this:", "=this:is:", "=this:is:value:", "# one @this:is:", "# two @this:is:",
                "=next:",
            ],
        ),
        (
            "a: 1 # one\nb: 2\n",
            &["# one @ (inline)", "=a:", "=b:"],
        ),
        (
            "a: # about a\n    b: 1\n",
            &["# about a @ (inline)", "=a:", "=a:b:"],
        ),
        (
            "a:\n    # head of b\n    b: 1\n",
            &["=a:", "# head of b @a:", "=a:b:"],
        ),
        (
            "a:\n# between\n    b: 1\n",
            &["=a:", "# between @a:", "=a:b:"],
        ),
        (
            "a:\n    b: 1\n# head of c\nc: 2\n",
            &["=a:", "=a:b:", "# head of c @", "=c:"],
        ),
        (
            "l:\n    - x # about x\n    - y\n",
            &["=l:", "# about x @l:[] (inline)", "-l:", "-l:"],
        ),
        (
            "l:\n    - # in the element\n      k: v\n",
            &["=l:", "-l:", "# in the element @l: (inline)", "=l:k:"],
        ),
        (
            "l:\n    - k: v\n      # in the element map\n    - w\n",
            &["=l:", "-l:", "=l:k:", "# in the element map @l:", "-l:"],
        ),
        (
            "m:\n    a:\n        - x\n    # closes m\nnext: 1\n",
            &["=m:", "=m:a:", "-m:a:", "# closes m @m:", "=next:"],
        ),
        (
            "a: 1\n# end of one\n---\n# head of two\nb: 2\n# last\n",
            &["=a:", "# end of one @", "---", "# head of two @", "=b:", "# last @"],
        ),
        (
            "# only a comment\n---\na: 1\n",
            &["# only a comment @", "=a:"],
        ),
    ];
    for (text, want) in table {
        let loaded = load_str(text);
        assert_eq!(outline(&loaded.tree), *want, "{text:?}");
    }
}

#[test]
fn anchors_are_expanded_and_merge_keys_kept_as_keys() {
    let text = "base: &base\n    a: 1\nname: &n app\nother: *n\nmerged:\n    <<: *base\n    b: 2\n";
    let loaded = load_str(text);
    let doc = &loaded.tree.documents[0];
    assert!(
        matches!(doc.get("other"), Some(Node::Scalar(s)) if s.value == Value::Str("app".into()))
    );
    let merged = doc.get("merged").and_then(Node::as_map).expect("merged");
    let copied = merged
        .get("<<")
        .and_then(Node::as_map)
        .expect("<< holds the copy");
    assert!(matches!(copied.get("a"), Some(Node::Scalar(s)) if s.value == Value::Int(1)));
    // Written back expanded: no alias survives.
    let written = emit_str(&loaded.tree, None);
    assert!(!written.contains('*'), "{written}");
    let again = load_str(&written);
    assert_eq!(strip(&again.tree.documents), strip(&loaded.tree.documents));
}

#[test]
fn the_sops_entry_becomes_metadata_in_every_document() {
    let text = "a: 1\nsops:\n    version: 3.13.2\n---\nb: 2\nsops:\n    version: other\n";
    let loaded = load_str(text);
    assert_eq!(outline(&loaded.tree), ["=a:", "---", "=b:"]);
    let metadata = loaded.metadata.expect("metadata");
    let version = metadata.as_map().and_then(|m| m.get("version"));
    assert!(matches!(version, Some(Node::Scalar(s)) if s.value == Value::Str("3.13.2".into())));
    assert_eq!(emit_str(&loaded.tree, None), "a: 1\n---\nb: 2\n");
}

#[test]
fn bad_input_is_an_error_naming_the_place_never_the_value() {
    let syntax: &[(&str, usize)] = &[
        ("password: \"hunter2\n", 1),
        ("a: [1, 2\nb: hunter2\n", 2),
        ("a: b: hunter2\n", 1),
        ("a:\n  - x\n  hunter2: y\n", 3),
        ("a: *hunter2\n", 1),
        ("a: 'hunter2\n", 1),
    ];
    for (text, line) in syntax {
        match load(text.as_bytes()) {
            Err(StoreError::Syntax {
                line: got,
                column,
                message,
            }) => {
                assert_eq!(got, *line, "{text:?}: {message}");
                assert!(column >= 1, "{text:?}");
                assert!(!message.contains("hunter2"), "{text:?}: {message}");
            }
            Err(other) => panic!("{text:?}: expected a syntax error, got {other}"),
            Ok(_) => panic!("{text:?}: expected a syntax error"),
        }
    }
    let structure: &[(&str, &str)] = &[
        ("- a\n- b\n", "(top level)"),
        ("just text\n", "(top level)"),
        ("a: 1\nb: 2\na: hunter2\n", "[\"a\"]"),
        ("x:\n    ? [k]\n    : hunter2\n", "[\"x\"]"),
        ("big: 18446744073709551615\n", "[\"big\"]"),
        ("v: !!int hunter2\n", "[\"v\"]"),
    ];
    for (text, path) in structure {
        match load(text.as_bytes()) {
            Err(StoreError::Structure { path: got, message }) => {
                assert_eq!(got, *path, "{text:?}: {message}");
                assert!(!message.contains("hunter2"), "{text:?}: {message}");
            }
            Err(other) => panic!("{text:?}: expected a structure error, got {other}"),
            Ok(_) => panic!("{text:?}: expected a structure error"),
        }
    }
    for empty in ["", "\n\n", "# just a comment\n"] {
        assert_eq!(
            load(empty.as_bytes()).err(),
            Some(StoreError::Empty),
            "{empty:?}"
        );
    }
    // Duplicates are only rejected in the first document, as sops.
    assert!(load(b"a: 1\n---\nb: 1\nb: 2\n").is_ok());
    assert!(matches!(
        load(b"a: \xff\n"),
        Err(StoreError::Syntax {
            line: 1,
            column: 4,
            ..
        })
    ));
}

pub(crate) const KUBERNETES_SECRET: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
  namespace: prod
  labels:
    app.kubernetes.io/name: postgres
type: Opaque
stringData:
  username: admin
  password: \"s3cr3t: with colon\"
  port: \"5432\"
";

pub(crate) const HELM_VALUES: &str = "\
# Default values for the chart.
# This is a YAML-formatted file.

replicaCount: 2 # keep it even

image:
  repository: nginx
  pullPolicy: IfNotPresent
  # Overrides the image tag.
  tag: '1.25'

env: [production, eu-west-1]
ports: {http: 80, https: 443}

config:
  nginx.conf: |
    server {
      listen 80;
    }

  motd: >-
    Welcome to the server
  ratio: 0.75
  enabled: true
  started: 2024-05-01T10:00:00Z
  nothing: null
  empty: \"\"

resources:
  limits:
    cpu: 100m
    memory: 128Mi
  # requests: commented out secret-ish setting
tolerations:
  - key: dedicated
    value: db   # the db pool
  # a comment inside the list
  - key: spot
    effect: NoSchedule
hosts:
- a.example.com
- b.example.com
";

pub(crate) const MULTI_DOCUMENT: &str = "\
---
# first
a: 1
b: text
...
---
c:
  - x
  - y
# trailing
---
d: {}
";

pub(crate) const INDENTED_AND_QUOTED: &str = "\
top:
    'single': 'it''s'
    \"double\": \"tab\\there\"
    plain key with spaces: value with spaces
    url: http://example.com:8080/path?q=1
    list:
        -   four-space-dash
        -   nested:
                deep: true
    flow: [a, \"c\", {d: 1}, 2]
";

pub(crate) const WINDOWS_LINE_ENDINGS: &str = "# settings\r\nname: app\r\nscript: |\r\n  echo hi\r\n  exit 0\r\nlist:\r\n  - a\r\n  # between\r\n  - b\r\n";

const CORPUS: &[&str] = &[
    KUBERNETES_SECRET,
    HELM_VALUES,
    MULTI_DOCUMENT,
    INDENTED_AND_QUOTED,
    WINDOWS_LINE_ENDINGS,
];

#[test]
fn unchanged_trees_are_written_back_byte_for_byte() {
    for text in CORPUS {
        let loaded = load_str(text);
        assert_eq!(emit_str(&loaded.tree, None), *text);
    }
}

/// Replaces every value and comment as encryption would.
fn simulate_encryption(map: &mut Map) {
    fn node(n: &mut Node) {
        match n {
            Node::Map(m) => simulate_encryption(m),
            Node::List(l) => {
                for item in &mut l.0 {
                    match item {
                        ListItem::Node(n) => node(n),
                        ListItem::Comment(c) => c.text = ENC_COMMENT.into(),
                    }
                }
            }
            Node::Scalar(s) if s.value == Value::Null || s.value.is_empty_string() => {}
            Node::Scalar(s) => s.value = Value::Str(ENC_VALUE.into()),
        }
    }
    for item in &mut map.0 {
        match item {
            MapItem::Pair(p) => node(&mut p.value),
            MapItem::Comment(c) => c.text = ENC_COMMENT.into(),
        }
    }
}

/// Puts `from`'s values and comment texts into `into`, which has the same structure except
/// that encrypted list comments are list elements (as decryption does).
fn restore(into: &mut Map, from: &Map) {
    fn node(into: &mut Node, from: &Node) {
        match (into, from) {
            (Node::Map(a), Node::Map(b)) => restore(a, b),
            (Node::List(a), Node::List(b)) => {
                assert_eq!(a.0.len(), b.0.len());
                for (x, y) in a.0.iter_mut().zip(&b.0) {
                    match (&mut *x, y) {
                        (ListItem::Node(x), ListItem::Node(y)) => node(x, y),
                        (ListItem::Comment(x), ListItem::Comment(y)) => x.text = y.text.clone(),
                        (ListItem::Node(Node::Scalar(s)), ListItem::Comment(y)) => {
                            *x = ListItem::Comment(Comment {
                                text: y.text.clone(),
                                inline: false,
                                span: s.span.take(),
                            })
                        }
                        _ => panic!("list structure differs"),
                    }
                }
            }
            (Node::Scalar(a), Node::Scalar(b)) => a.value = b.value.clone(),
            _ => panic!("structure differs"),
        }
    }
    assert_eq!(into.0.len(), from.0.len());
    for (x, y) in into.0.iter_mut().zip(&from.0) {
        match (x, y) {
            (MapItem::Pair(a), MapItem::Pair(b)) => {
                assert_eq!(a.key, b.key);
                node(&mut a.value, &b.value);
            }
            (MapItem::Comment(a), MapItem::Comment(b)) => a.text = b.text.clone(),
            _ => panic!("map structure differs"),
        }
    }
}

/// Documents without spans or inline flags, with encrypted list comments as comments.
fn strip(documents: &[Map]) -> Vec<Map> {
    fn map(m: &Map) -> Map {
        Map(m
            .0
            .iter()
            .map(|item| match item {
                MapItem::Pair(p) => MapItem::Pair(Pair {
                    key: p.key.clone(),
                    value: node(&p.value),
                }),
                MapItem::Comment(c) => MapItem::Comment(Comment::new(c.text.clone())),
            })
            .collect())
    }
    fn node(n: &Node) -> Node {
        match n {
            Node::Map(m) => Node::Map(map(m)),
            Node::List(l) => Node::List(List(
                l.0.iter()
                    .map(|item| match item {
                        ListItem::Node(Node::Scalar(s))
                            if s.value.as_str() == Some(ENC_COMMENT) =>
                        {
                            ListItem::Comment(Comment::new(ENC_COMMENT))
                        }
                        ListItem::Node(n) => ListItem::Node(node(n)),
                        ListItem::Comment(c) => ListItem::Comment(Comment::new(c.text.clone())),
                    })
                    .collect(),
            )),
            Node::Scalar(s) => Node::Scalar(Scalar::new(s.value.clone())),
        }
    }
    documents.iter().map(map).collect()
}

fn fake_metadata() -> Map {
    let mut pgp = Map::new();
    pgp.insert(
        "created_at",
        Node::scalar(Value::Str("2026-05-22T20:16:20Z".into())),
    );
    pgp.insert(
        "enc",
        Node::scalar(Value::Str(
            "-----BEGIN PGP MESSAGE-----\n\nwcBMAyUpShfNkFB\n-----END PGP MESSAGE-----".into(),
        )),
    );
    pgp.insert(
        "fp",
        Node::scalar(Value::Str(
            "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4".into(),
        )),
    );
    let mut map = Map::new();
    map.insert(
        "lastmodified",
        Node::scalar(Value::Str("2026-05-22T20:16:23Z".into())),
    );
    map.insert("mac", Node::scalar(Value::Str(ENC_VALUE.into())));
    map.insert(
        "pgp",
        Node::List(List(vec![ListItem::Node(Node::Map(pgp))])),
    );
    map.insert(
        "unencrypted_suffix",
        Node::scalar(Value::Str("_unencrypted".into())),
    );
    map.insert("version", Node::scalar(Value::Str("3.13.2".into())));
    map
}

/// Input lines that hold no value or comment, which must reappear unchanged and in order.
fn structural_lines(text: &str, tree: &Tree) -> Vec<String> {
    let mut leaf_ranges = Vec::new();
    fn collect(n: &Node, out: &mut Vec<Range<usize>>) {
        match n {
            Node::Map(m) => collect_map(m, out),
            Node::List(l) => {
                for item in &l.0 {
                    match item {
                        ListItem::Node(n) => collect(n, out),
                        ListItem::Comment(c) => out.extend(c.span.iter().map(|s| s.range.clone())),
                    }
                }
            }
            Node::Scalar(s) => out.extend(s.span.iter().map(|s| s.range.clone())),
        }
    }
    fn collect_map(m: &Map, out: &mut Vec<Range<usize>>) {
        for item in &m.0 {
            match item {
                MapItem::Pair(p) => collect(&p.value, out),
                MapItem::Comment(c) => out.extend(c.span.iter().map(|s| s.range.clone())),
            }
        }
    }
    for document in &tree.documents {
        collect_map(document, &mut leaf_ranges);
    }
    let mut lines = Vec::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        if !leaf_ranges
            .iter()
            .any(|r| r.start < end && r.end > start && !(r.is_empty() && r.start == end))
        {
            lines.push(line.trim_end_matches(['\n', '\r']).to_string());
        }
        start = end;
    }
    lines
}

fn assert_in_order(wanted: &[String], output: &str) {
    let mut lines = output.lines();
    for line in wanted {
        assert!(
            lines.any(|l| l == line),
            "structural line {line:?} missing or out of order in:\n{output}"
        );
    }
}

#[test]
fn simulated_encryption_keeps_the_layout_and_decrypts_to_the_same_bytes() {
    let metadata = fake_metadata();
    for text in CORPUS {
        let original = load_str(text);
        let mut encrypted = original.tree.clone();
        for document in &mut encrypted.documents {
            simulate_encryption(document);
        }
        let written = emit_str(&encrypted, Some(&metadata));
        assert_in_order(&structural_lines(text, &original.tree), &written);
        assert_eq!(
            written.lines().filter(|l| *l == "sops:").count(),
            original.tree.documents.len(),
            "{written}"
        );

        let mut reloaded = load_str(&written);
        assert_eq!(
            strip(&reloaded.tree.documents),
            strip(&encrypted.documents),
            "{written}"
        );
        let read_metadata = reloaded.metadata.take().expect("metadata");
        assert_eq!(
            strip(&[read_metadata.as_map().cloned().unwrap_or_default()]),
            strip(std::slice::from_ref(&metadata))
        );
        assert!(Metadata::from_node(&read_metadata).is_ok());

        for (document, plain) in reloaded
            .tree
            .documents
            .iter_mut()
            .zip(&original.tree.documents)
        {
            restore(document, plain);
        }
        assert_eq!(emit_str(&reloaded.tree, None), *text, "from:\n{written}");
    }
}

#[test]
fn encrypted_text_looks_like_sops_output() {
    let text = "# head\nuser: admin # inline\nkey: |\n  line1\n  line2\nport: 5432\nlist:\n- a\n# list comment\n- 'b'\nflow: [x, \"y\"]\n";
    let loaded = load_str(text);
    let mut tree = loaded.tree.clone();
    simulate_encryption(&mut tree.documents[0]);
    let mut metadata = Map::new();
    metadata.insert(
        "lastmodified",
        Node::scalar(Value::Str("2026-05-22T20:16:23Z".into())),
    );
    metadata.insert("version", Node::scalar(Value::Str("3.13.2".into())));
    let want = format!(
        "#{c}\nuser: {v} #{c}\nkey: |-\n  {v}\nport: {v}\nlist:\n- {v}\n- {c}\n- '{v}'\nflow: ['{v}', \"{v}\"]\nsops:\n    lastmodified: \"2026-05-22T20:16:23Z\"\n    version: 3.13.2\n",
        c = ENC_COMMENT,
        v = ENC_VALUE
    );
    assert_eq!(emit_str(&tree, Some(&metadata)), want);
}

#[test]
fn an_encrypted_inline_list_comment_becomes_an_element_before_its_value() {
    let text = "list:\n  - a # about a\n  - b\n";
    let mut tree = load_str(text).tree;
    simulate_encryption(&mut tree.documents[0]);
    let written = emit_str(&tree, None);
    assert_eq!(
        written,
        format!("list:\n  - {ENC_COMMENT}\n  - {ENC_VALUE}\n  - {ENC_VALUE}\n")
    );
    assert_eq!(
        strip(&load_str(&written).tree.documents),
        strip(&tree.documents)
    );
}

#[test]
fn decrypted_values_are_written_in_the_style_of_their_place() {
    // (encrypted line(s), decrypted value, expected text)
    let table: Vec<(String, Value, String)> = vec![
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Str("hello".into()),
            "k: hello\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Str("123".into()),
            "k: \"123\"\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Str("".into()),
            "k: \"\"\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Str("a: b".into()),
            "k: \"a: b\"\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Int(-5),
            "k: -5\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Float(1.0),
            "k: 1.0\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Float(0.25),
            "k: 0.25\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Float(1e21),
            "k: 1e+21\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Bool(false),
            "k: false\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            time("2024-01-01T00:00:00Z"),
            "k: 2024-01-01T00:00:00Z\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\n"),
            Value::Bytes(vec![0xff]),
            "k: !!binary /w==\n".into(),
        ),
        (
            format!("k: {ENC_VALUE}\nnext: 1\n"),
            Value::Str("line1\nline2\n".into()),
            "k: |\n    line1\n    line2\nnext: 1\n".into(),
        ),
        (
            format!("l:\n  - {ENC_VALUE}\n"),
            Value::Str("a\nb".into()),
            "l:\n  - |-\n      a\n      b\n".into(),
        ),
        (
            format!("k: {ENC_VALUE} # note\n"),
            Value::Str("a\nb".into()),
            "k: \"a\\nb\" # note\n".into(),
        ),
        (
            format!("k: \"{ENC_VALUE}\"\n"),
            Value::Str("say \"hi\"".into()),
            "k: \"say \\\"hi\\\"\"\n".into(),
        ),
        (
            format!("k: \"{ENC_VALUE}\"\n"),
            Value::Int(7),
            "k: 7\n".into(),
        ),
        (
            format!("k: '{ENC_VALUE}'\n"),
            Value::Str("it's".into()),
            "k: 'it''s'\n".into(),
        ),
        (
            format!("k: '{ENC_VALUE}'\n"),
            Value::Str("a\nb".into()),
            "k: \"a\\nb\"\n".into(),
        ),
        (
            format!("k: [\"{ENC_VALUE}\"]\n"),
            Value::Str("a,b".into()),
            "k: [\"a,b\"]\n".into(),
        ),
        (
            format!("k: [\"{ENC_VALUE}\"]\n"),
            Value::Str("ab".into()),
            "k: [\"ab\"]\n".into(),
        ),
        (
            format!("k: ['{ENC_VALUE}']\n"),
            Value::Str("ab".into()),
            "k: [ab]\n".into(),
        ),
        (
            format!("k: ['{ENC_VALUE}']\n"),
            Value::Str("a, b".into()),
            "k: ['a, b']\n".into(),
        ),
        (
            format!("k: >-\n    {ENC_VALUE}\n"),
            Value::Str("one line".into()),
            "k: >-\n    one line\n".into(),
        ),
        (
            format!("k: >-\n    {ENC_VALUE}\n"),
            Value::Str("two\nlines".into()),
            "k: |-\n    two\n    lines\n".into(),
        ),
        (
            format!("k: {{a: \"{ENC_VALUE}\"}}\n"),
            Value::Int(1),
            "k: {a: 1}\n".into(),
        ),
        (
            format!("k: |-\n    {ENC_VALUE}\nn: 1\n"),
            Value::Str("x\ny\n".into()),
            "k: |\n    x\n    y\nn: 1\n".into(),
        ),
        (
            format!("k: |-\n    {ENC_VALUE}\n\nn: 1\n"),
            Value::Str("x\n\n".into()),
            "k: \"x\\n\\n\"\n\nn: 1\n".into(),
        ),
        (
            format!("k: |-\n    {ENC_VALUE}\nn: 1\n"),
            Value::Str("x\n\n".into()),
            "k: |+\n    x\n\nn: 1\n".into(),
        ),
        (
            format!("k: |-\n    {ENC_VALUE}\nn: 1\n"),
            Value::Str("  indented".into()),
            "k: \"  indented\"\nn: 1\n".into(),
        ),
        (
            format!("k: |-\n    {ENC_VALUE}\n"),
            Value::Int(3),
            "k: 3\n".into(),
        ),
    ];
    for (encrypted, value, want) in table {
        let mut loaded = load_str(&encrypted);
        let Some(Node::Scalar(scalar)) = find_first_scalar(&mut loaded.tree.documents[0]) else {
            panic!("{encrypted:?}: no scalar");
        };
        scalar.value = value;
        assert_eq!(emit_str(&loaded.tree, None), want, "{encrypted:?}");
    }
}

fn find_first_scalar(map: &mut Map) -> Option<&mut Node> {
    fn node(n: &mut Node) -> Option<&mut Node> {
        match n {
            Node::Scalar(_) => Some(n),
            Node::Map(m) => find_first_scalar(m),
            Node::List(l) => l.0.iter_mut().find_map(|i| match i {
                ListItem::Node(n) => node(n),
                ListItem::Comment(_) => None,
            }),
        }
    }
    map.0.iter_mut().find_map(|i| match i {
        MapItem::Pair(p) => node(&mut p.value),
        MapItem::Comment(_) => None,
    })
}

#[test]
fn a_changed_structure_is_written_fresh() {
    let mut loaded = load_str("b: 1\na:\n  - x\n");
    loaded.tree.documents[0].insert("c", Node::scalar(Value::Str("new".into())));
    assert_eq!(emit_str(&loaded.tree, None), "b: 1\na:\n    - x\nc: new\n");
    let mut loaded = load_str("b: 1\na: 2\n");
    loaded.tree.documents[0].remove("b");
    assert_eq!(emit_str(&loaded.tree, None), "a: 2\n");
}

#[test]
fn fresh_yaml_is_written_as_sops_writes_it() {
    let mut tree = Map::new();
    tree.0.push(MapItem::Comment(Comment::new(" head")));
    tree.insert("plain", Node::scalar(Value::Str("hello world".into())));
    tree.0.push(MapItem::Comment(Comment {
        text: " inline".into(),
        inline: true,
        span: None,
    }));
    tree.insert("number", Node::scalar(Value::Int(5)));
    let mut nested = Map::new();
    for text in [
        "123",
        "true",
        "",
        " lead",
        "a: b",
        "null",
        "#x",
        "multi\nline\n",
    ] {
        nested.insert(
            format!("k{}", nested.0.len()),
            Node::scalar(Value::Str(text.into())),
        );
    }
    tree.insert("nested", Node::Map(nested));
    let mut element = Map::new();
    element.insert("name", Node::scalar(Value::Str("x".into())));
    element.insert("body", Node::scalar(Value::Str("a\nb".into())));
    tree.insert(
        "list",
        Node::List(List(vec![
            ListItem::Node(Node::scalar(Value::Float(1.5))),
            ListItem::Comment(Comment::new(" note")),
            ListItem::Comment(Comment::new(ENC_COMMENT)),
            ListItem::Node(Node::Map(element)),
            ListItem::Node(Node::List(List(vec![ListItem::Node(Node::scalar(
                Value::Null,
            ))]))),
        ])),
    );
    tree.insert("empty_map", Node::Map(Map::new()));
    tree.insert("empty_list", Node::List(List::default()));
    tree.insert("1", Node::scalar(Value::Bool(true)));
    tree.0.push(MapItem::Comment(Comment::new(" foot")));
    let mut metadata = Map::new();
    metadata.insert(
        "lastmodified",
        Node::scalar(Value::Str("2026-05-22T20:16:23Z".into())),
    );
    let want = format!(
        "# head\nplain: hello world\nnumber: 5 # inline\nnested:\n    k0: \"123\"\n    k1: \"true\"\n    k2: \"\"\n    k3: \" lead\"\n    k4: \"a: b\"\n    k5: \"null\"\n    k6: \"#x\"\n    k7: |\n        multi\n        line\nlist:\n    - 1.5\n    # note\n    - {ENC_COMMENT}\n    - name: x\n      body: |-\n        a\n        b\n    - - null\nempty_map: {{}}\nempty_list: []\n\"1\": true\n# foot\nsops:\n    lastmodified: \"2026-05-22T20:16:23Z\"\n"
    );
    let tree = Tree {
        documents: vec![tree],
        layout: None,
    };
    let written = emit_str(&tree, Some(&metadata));
    assert_eq!(written, want);
    let reread = load_str(&written);
    assert_eq!(strip(&reread.tree.documents), strip(&tree.documents));

    let two_docs = Tree {
        documents: vec![Map::new(), Map::new()],
        layout: None,
    };
    assert_eq!(emit_str(&two_docs, None), "{}\n---\n{}\n");
    let two_space = emit(
        &load_str("a:\n    b: [1]\n").tree,
        None,
        Indent {
            yaml: 2,
            ..Indent::default()
        },
    );
    assert_eq!(
        two_space.ok(),
        Some(b"a:\n    b: [1]\n".to_vec()),
        "the layout wins"
    );
}

#[test]
fn metadata_block_follows_the_indent_setting() {
    let tree = Tree {
        documents: vec![load_str("a: 1\n").tree.documents[0].clone()],
        layout: None,
    };
    let written = emit(
        &tree,
        Some(&fake_metadata()),
        Indent {
            yaml: 2,
            ..Indent::default()
        },
    )
    .map(String::from_utf8);
    let want = "a: 1\nsops:\n  lastmodified: \"2026-05-22T20:16:23Z\"\n  mac: ENC[AES256_GCM,data:abc=,iv:def=,tag:ghi=,type:str]\n  pgp:\n    - created_at: \"2026-05-22T20:16:20Z\"\n      enc: |-\n        -----BEGIN PGP MESSAGE-----\n\n        wcBMAyUpShfNkFB\n        -----END PGP MESSAGE-----\n      fp: FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4\n  unencrypted_suffix: _unencrypted\n  version: 3.13.2\n";
    assert_eq!(written.ok().and_then(Result::ok).as_deref(), Some(want));
}

#[test]
fn single_nodes_are_written_as_documents() {
    let list = Node::List(List(vec![
        ListItem::Node(Node::scalar(Value::Str("a".into()))),
        ListItem::Node(Node::scalar(Value::Int(2))),
    ]));
    assert_eq!(
        emit_node(&list, Indent::default()).ok(),
        Some(b"- a\n- 2\n".to_vec())
    );
    assert_eq!(
        emit_node(&Node::scalar(Value::Float(2.0)), Indent::default()).ok(),
        Some(b"2.0\n".to_vec())
    );
}

#[test]
fn real_encryption_round_trips_byte_for_byte() {
    for text in CORPUS {
        let loaded = load_str(text);
        let mut tree = loaded.tree;
        let key = DataKey::generate();
        let mut cipher = Cipher::new(DataKey::from_bytes(key.as_bytes()).expect("key"));
        let rules = Rules::default();
        let mac = crypt::encrypt_tree(&mut tree, &mut cipher, &rules).expect("encrypt");
        let lastmodified = "2026-05-22T20:16:23Z".to_string();
        let metadata = Metadata {
            mac: crypt::seal_mac(&mut cipher, &mac, &lastmodified),
            lastmodified,
            version: FORMAT_VERSION.into(),
            rules: rules.clone(),
            shamir_threshold: 0,
            key_groups: vec![KeyGroup {
                keys: vec![KeyEntry::Age {
                    recipient: "age1test".into(),
                    enc: "-----BEGIN AGE ENCRYPTED FILE-----\nabc\n-----END AGE ENCRYPTED FILE-----\n".into(),
                }],
                foreign: Vec::new(),
            }],
        };
        let written = emit_str(&tree, Some(&metadata.to_map()));

        let mut reloaded = load_str(&written);
        let read = Metadata::from_node(&reloaded.metadata.take().expect("metadata"))
            .expect("metadata parses");
        assert_eq!(read, metadata);
        let mut cipher = Cipher::new(key);
        let decrypted =
            crypt::decrypt_tree(&mut reloaded.tree, &mut cipher, &read.rules).expect("decrypt");
        assert_eq!(decrypted.mac, mac);
        assert_eq!(emit_str(&reloaded.tree, None), *text, "from:\n{written}");
    }
}

#[test]
fn documents_of_every_shape_take_the_metadata_block() {
    let table: &[(&str, usize)] = &[
        ("{}\n", 1),
        ("---\n", 1),
        ("a: 1", 1),
        ("  a: 1\n  b: 2\n", 1),
        ("a: 1\n---\n{}\n---\nb: [1]\n", 3),
        ("# head\na: 1\n# tail\n", 1),
    ];
    for (text, documents) in table {
        let loaded = load_str(text);
        assert_eq!(loaded.tree.documents.len(), *documents, "{text:?}");
        let written = emit_str(&loaded.tree, Some(&fake_metadata()));
        let again = load_str(&written);
        assert_eq!(
            again.tree.documents.len(),
            *documents,
            "{text:?} → {written:?}"
        );
        assert_eq!(
            strip(&again.tree.documents),
            strip(&loaded.tree.documents),
            "{written:?}"
        );
        let metadata = again.metadata.expect("metadata");
        assert!(Metadata::from_node(&metadata).is_ok(), "{written:?}");
    }
}

#[test]
fn truncated_input_never_panics_and_what_loads_writes_back() {
    let metadata = fake_metadata();
    for text in CORPUS {
        for end in (0..=text.len()).filter(|i| text.is_char_boundary(*i)) {
            let prefix = &text[..end];
            let Ok(loaded) = load(prefix.as_bytes()) else {
                continue;
            };
            assert_eq!(emit_str(&loaded.tree, None), prefix);
            let mut tree = loaded.tree.clone();
            for document in &mut tree.documents {
                simulate_encryption(document);
            }
            let written = emit_str(&tree, Some(&metadata));
            let reloaded = load(written.as_bytes())
                .unwrap_or_else(|e| panic!("{prefix:?} → {written:?}: {e}"));
            assert_eq!(
                strip(&reloaded.tree.documents),
                strip(&tree.documents),
                "{prefix:?} → {written}"
            );
        }
    }
}

#[test]
fn sops_vectors_load_with_values_and_comments_where_sops_put_them() {
    let Ok(dir) = std::env::var("VEIL_SOPS_VECTORS") else {
        println!("SKIPPED: VEIL_SOPS_VECTORS is not set");
        return;
    };
    let dir = std::path::Path::new(&dir);
    let mut seen = 0;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("vector directory")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    for name in names {
        let bytes = std::fs::read(dir.join(&name)).expect("vector");
        let loaded = load(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        seen += 1;
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        // Without metadata the sops block is cut out and nothing else changes.
        let plain_part = match text.find("\nsops:\n") {
            Some(at) => &text[..at + 1],
            None => &text[..],
        };
        assert_eq!(emit_str(&loaded.tree, None), plain_part, "{name}");
        let Some(metadata) = &loaded.metadata else {
            assert!(
                matches!(name.as_str(), "comments.yaml" | "comments_list.yaml"),
                "{name}"
            );
            continue;
        };
        let parsed = Metadata::from_node(metadata).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Every value outside `_unencrypted` keys is encrypted, every comment too (except in
        // the file written before sops encrypted comments).
        let plain_comments = name == "comments_unencrypted_comments.yaml";
        check_encrypted(&loaded.tree.documents[0], false, plain_comments, &name);
        // The structure matches what sops decrypted it to.
        let expected = dir.join("expected").join(format!("{name}.json"));
        if let Ok(json) = std::fs::read_to_string(&expected) {
            let json: serde_json::Value = serde_json::from_str(&json).expect("expected json");
            assert_same_keys(&Node::Map(loaded.tree.documents[0].clone()), &json, &name);
        }
        // Re-written with fresh metadata, the file loads again with the same tree.
        let written = emit_str(&loaded.tree, Some(&parsed.to_map()));
        let again = load_str(&written);
        assert_eq!(
            strip(&again.tree.documents),
            strip(&loaded.tree.documents),
            "{name}"
        );
        let reparsed = Metadata::from_node(&again.metadata.expect("metadata")).expect("metadata");
        assert_eq!(reparsed, parsed, "{name}");
    }
    assert!(seen >= 7, "only {seen} YAML vectors found");

    // The comment placements that decide the AADs, as sops wrote them.
    let example = load_str(&std::fs::read_to_string(dir.join("example.yaml")).expect("example"));
    let comments: Vec<String> = outline(&example.tree)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.rsplit_once(" @")
                .map(|(_, at)| at.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        comments,
        [
            "app2:db:",
            "this:is:a:nested:",
            "this:is:a:nested:",
            "this:is:a:nested:"
        ]
    );
    let top = load_str(&std::fs::read_to_string(dir.join("comments.enc.yaml")).expect("comments"));
    let outline = outline(&top.tree);
    assert_eq!(outline.len(), 4);
    assert!(
        outline[0].starts_with("#ENC[") && outline[0].ends_with(" @"),
        "{outline:?}"
    );
    assert!(
        outline[2].starts_with("#ENC[") && outline[2].ends_with(" @"),
        "{outline:?}"
    );
}

fn check_encrypted(map: &Map, unencrypted: bool, plain_comments: bool, name: &str) {
    for item in &map.0 {
        match item {
            MapItem::Comment(c) => {
                assert_eq!(
                    c.text.starts_with("ENC["),
                    !plain_comments && !unencrypted,
                    "{name}"
                )
            }
            MapItem::Pair(p) => {
                let unencrypted = unencrypted || p.key.ends_with("_unencrypted");
                check_node(&p.value, unencrypted, plain_comments, name);
            }
        }
    }
}

fn check_node(node: &Node, unencrypted: bool, plain_comments: bool, name: &str) {
    match node {
        Node::Map(m) => check_encrypted(m, unencrypted, plain_comments, name),
        Node::List(l) => {
            for n in l.nodes() {
                check_node(n, unencrypted, plain_comments, name);
            }
        }
        Node::Scalar(s) => {
            let sealed = s
                .value
                .as_str()
                .is_some_and(|t| t.starts_with("ENC[AES256_GCM,"));
            assert_eq!(sealed, !unencrypted, "{name}: {:?}", s.value);
        }
    }
}

fn assert_same_keys(node: &Node, json: &serde_json::Value, name: &str) {
    match (node, json) {
        (Node::Map(m), serde_json::Value::Object(o)) => {
            let keys: Vec<&str> = m.pairs().map(|p| p.key.as_str()).collect();
            let want: Vec<&str> = o.keys().map(String::as_str).collect();
            assert_eq!(keys, want, "{name}");
            for p in m.pairs() {
                assert_same_keys(&p.value, &o[&p.key], name);
            }
        }
        (Node::List(l), serde_json::Value::Array(a)) => {
            let nodes: Vec<&Node> = l.nodes().collect();
            assert_eq!(nodes.len(), a.len(), "{name}");
            for (n, j) in nodes.into_iter().zip(a) {
                assert_same_keys(n, j, name);
            }
        }
        (Node::Scalar(_), j) => assert!(!j.is_object() && !j.is_array(), "{name}"),
        _ => panic!("{name}: structure differs from the decrypted JSON"),
    }
}

#[test]
fn large_files_load_and_write() {
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!(
            "key{i}:\n    # note {i}\n    value: secret-{i}\n    port: {i}\n"
        ));
    }
    let loaded = load_str(&text);
    let mut tree = loaded.tree.clone();
    for document in &mut tree.documents {
        simulate_encryption(document);
    }
    let written = emit_str(&tree, Some(&fake_metadata()));
    // Speed is measured by bench/run.sh, not here: this checks that a large file survives.
    assert_eq!(
        written.matches("ENC[").count(),
        20_000 * 3 + 1,
        "every value, comment and the MAC"
    );
}

/// A YAML file above the size from which `emit_to` streams, with nested maps, lists and
/// own-line comments; with `inline`, end-of-line comments too (they make the splice buffered).
fn large_yaml(inline: bool) -> String {
    let mut text = String::from("# a large file\n");
    let mut i = 0;
    while text.len() < 3 << 19 {
        let note = if inline { " # note" } else { "" };
        text.push_str(&format!(
            "service_{i}:\n  # settings\n  url: \"https://db-{i}.internal:5432\"{note}\n  port: {i}\n  hosts:\n  - a-{i}\n  - 'b-{i}'\n  key: |\n    line {i}\n    more\n"
        ));
        i += 1;
    }
    text
}

/// A writer that fails once it has taken `room` bytes.
struct FullDisk {
    taken: usize,
    room: usize,
}

impl std::io::Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.taken + buf.len() > self.room {
            return Err(std::io::Error::other("no space left"));
        }
        self.taken += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn streaming_a_large_file_writes_what_emit_builds() {
    let metadata = fake_metadata();
    for inline in [false, true] {
        let text = large_yaml(inline);
        let mut tree = load_str(&text).tree;
        for document in &mut tree.documents {
            simulate_encryption(document);
        }
        let built = emit_str(&tree, Some(&metadata));
        let mut streamed = Vec::new();
        emit_to(&tree, Some(&metadata), Indent::default(), &mut streamed).expect("emit_to");
        assert!(
            built == String::from_utf8(streamed).unwrap(),
            "inline comments: {inline}"
        );

        let mut disk = FullDisk {
            taken: 0,
            room: built.len() / 2,
        };
        let err = emit_to(&tree, Some(&metadata), Indent::default(), &mut disk).err();
        assert!(
            matches!(err, Some(crate::store::EmitError::Write(_))),
            "{err:?}"
        );
    }
}

#[test]
fn streaming_writes_nothing_before_it_knows_the_layout_holds() {
    let text = large_yaml(false);
    let mut tree = load_str(&text).tree;
    // The last service gains a key: the source no longer describes the tree, which shows only
    // at the end of the walk. Nothing spliced may reach the writer before that.
    let Some(MapItem::Pair(last)) = tree.documents[0].0.last_mut() else {
        panic!("no last service")
    };
    let Node::Map(service) = &mut last.value else {
        panic!("not a map")
    };
    service.insert("added", Node::scalar(Value::Int(1)));
    let layout = match &tree.layout {
        Some(crate::store::Layout::Yaml(layout)) => layout,
        _ => panic!("no YAML layout"),
    };
    let mut written = Vec::new();
    assert!(splice::splice_to(&tree.documents, layout, None, 2, &mut written).is_none());
    assert!(written.is_empty());
    // emit_to then writes the tree afresh, as emit does.
    let mut streamed = Vec::new();
    emit_to(&tree, None, Indent::default(), &mut streamed).expect("emit_to");
    assert!(String::from_utf8(streamed).unwrap() == emit_str(&tree, None));
}
