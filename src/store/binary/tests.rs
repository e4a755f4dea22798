use super::*;
use crate::metadata::Metadata;
use crate::store::json::tests::encrypt_emit_load_open;
use crate::tree::MapItem;

fn data_of(loaded: &Loaded) -> &Value {
    match loaded.tree.documents[0].get(DATA_KEY) {
        Some(Node::Scalar(s)) => &s.value,
        other => panic!("no data scalar: {other:?}"),
    }
}

fn tree_with(value: Value) -> Tree {
    let mut map = Map::new();
    map.insert(DATA_KEY, Node::scalar(value));
    Tree {
        documents: vec![map],
        layout: None,
    }
}

#[test]
fn plain_bytes_become_one_data_value() {
    let cases: [(&[u8], Value); 5] = [
        (b"", Value::Str(String::new())),
        (b"hello\nworld\n", Value::Str("hello\nworld\n".into())),
        ("h\u{e9}\r\n".as_bytes(), Value::Str("h\u{e9}\r\n".into())),
        (
            b"\x89PNG\r\n\x1a\n\x00\xff",
            Value::Bytes(b"\x89PNG\r\n\x1a\n\x00\xff".to_vec()),
        ),
        (
            b"{\"not\": \"sops\"}",
            Value::Str("{\"not\": \"sops\"}".into()),
        ),
    ];
    for (input, want) in cases {
        for loaded in [load(input).unwrap(), load_plain(input)] {
            assert!(loaded.metadata.is_none(), "{input:?}");
            assert_eq!(loaded.tree.documents.len(), 1);
            assert_eq!(loaded.tree.documents[0].0.len(), 1);
            assert_eq!(data_of(&loaded), &want, "{input:?}");
        }
    }
}

#[test]
fn only_a_json_object_with_sops_and_data_is_an_envelope() {
    let envelope =
        br#"{"data": "ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]", "sops": {"version": "3.13.2"}}"#;
    let loaded = load(envelope).unwrap();
    assert!(loaded.metadata.is_some());
    assert_eq!(
        data_of(&loaded),
        &Value::Str("ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]".into())
    );
    // load_plain never looks inside.
    let plain = load_plain(envelope);
    assert!(plain.metadata.is_none());
    assert_eq!(
        data_of(&plain).as_str().map(str::as_bytes),
        Some(&envelope[..])
    );
    // Anything short of a full envelope is a plain file: its bytes, untouched.
    let plain_inputs: [&[u8]; 5] = [
        br#"{"data": "x"}"#,
        br#"{"sops": {"version": "3.13.2"}}"#,
        br#"{"data": "x", "sops": {}"#,
        br#"[{"data": "x", "sops": {}}]"#,
        b"  {\"data\": \"x\", \"sops\": {}} trailing",
    ];
    for input in plain_inputs {
        let loaded = load(input).unwrap();
        assert!(loaded.metadata.is_none(), "{input:?}");
        assert_eq!(data_of(&loaded).as_str().map(str::as_bytes), Some(input));
    }
}

#[test]
fn decrypted_output_is_the_raw_data_bytes() {
    let cases: [(Value, &[u8]); 3] = [
        (Value::Str("no newline added".into()), b"no newline added"),
        (Value::Str(String::new()), b""),
        (
            Value::Bytes(vec![0, 0xff, 0xfe, b'\n']),
            &[0, 0xff, 0xfe, b'\n'],
        ),
    ];
    for (value, want) in cases {
        assert_eq!(emit(&tree_with(value), None, None).unwrap(), want);
    }
}

#[test]
fn a_tree_without_string_data_cannot_be_written_as_binary() {
    let mut other = Map::new();
    other.insert("password", Node::scalar(Value::Str("x".into())));
    let cases = [
        (
            Tree {
                documents: vec![other.clone()],
                layout: None,
            },
            "no `data` key",
        ),
        (tree_with(Value::Int(3)), "does not hold a string"),
        (
            Tree {
                documents: vec![other.clone(), other],
                layout: None,
            },
            "exactly one document",
        ),
        (Tree::default(), "exactly one document"),
    ];
    for (tree, fragment) in cases {
        match emit(&tree, None, None) {
            Err(StoreError::Emit { format, message }) => {
                assert_eq!(format, "binary");
                assert!(message.contains(fragment), "{message}");
            }
            other => panic!("{:?}", other.map(String::from_utf8)),
        }
    }
}

#[test]
fn encrypted_output_is_the_json_envelope() {
    let tree = tree_with(Value::Str(
        "ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]".into(),
    ));
    let mut metadata = Map::new();
    metadata.insert("version", Node::scalar(Value::Str("3.13.2".into())));
    let out = emit(&tree, Some(&metadata), None).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\n\t\"data\": \"ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\",\n\
         \t\"sops\": {\n\t\t\"version\": \"3.13.2\"\n\t}\n}\n"
    );
    let out = emit(&tree, Some(&metadata), Some(4)).unwrap();
    assert!(out.starts_with(b"{\n    \"data\": "));
}

#[test]
fn any_bytes_survive_encrypt_emit_load_decrypt() {
    let inputs: [&[u8]; 4] = [
        b"line one\nline two\n",
        b"\x00\x01\x02\xff\xfe binary \r\n",
        "<&> \u{2028} \"quoted\" \\".as_bytes(),
        br#"{"data": "x", "sops": {}}"#,
    ];
    for input in inputs {
        let opened = encrypt_emit_load_open(
            load_plain(input),
            |tree, metadata| emit(tree, Some(metadata), None).unwrap(),
            |bytes| {
                let loaded = load(bytes).unwrap();
                assert!(loaded.metadata.is_some(), "the envelope is recognised");
                loaded
            },
        );
        assert_eq!(emit(&opened, None, None).unwrap(), input);
    }
}

#[test]
fn the_sops_binary_vector_loads_as_an_envelope() {
    let Some(dir) = std::env::var_os("VEIL_SOPS_VECTORS").map(std::path::PathBuf::from) else {
        println!("SKIPPED: VEIL_SOPS_VECTORS is not set");
        return;
    };
    let bytes = std::fs::read(dir.join("example.txt")).unwrap();
    let loaded = load(&bytes).unwrap();
    let node = loaded.metadata.as_ref().expect("metadata");
    let metadata = Metadata::from_node(node).unwrap();
    assert_eq!(metadata.version, "3.5.0");
    let items = &loaded.tree.documents[0].0;
    assert!(matches!(items.as_slice(), [MapItem::Pair(p)] if p.key == DATA_KEY));
    let data = data_of(&loaded).as_str().unwrap();
    assert!(data.starts_with("ENC[AES256_GCM,data:") && data.ends_with(",type:str]"));
    // Written back, it is sops' envelope byte for byte (plus the final newline 3.13 adds).
    let out = emit(&loaded.tree, node.as_map(), None).unwrap();
    assert_eq!(out, [bytes.as_slice(), b"\n"].concat());
}
