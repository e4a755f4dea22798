use super::*;
use crate::tree::{List, MapItem, Pair};

fn pair(key: &str, value: Node) -> MapItem {
    MapItem::Pair(Pair {
        key: key.into(),
        value,
    })
}

fn s(text: &str) -> Node {
    Node::scalar(Value::Str(text.into()))
}

/// The tree of spec §13.1.
fn vector_tree() -> Tree {
    let list = List(vec![
        ListItem::Node(s("s1")),
        ListItem::Node(Node::scalar(Value::Bool(false))),
    ]);
    let doc = Map(vec![
        pair("a", s("hello")),
        pair("n", Node::scalar(Value::Int(42))),
        pair("f", Node::scalar(Value::Float(1.5))),
        pair("t", Node::scalar(Value::Bool(true))),
        pair("l_unencrypted", s("keep")),
        pair("nested", Node::Map(Map(vec![pair("x", Node::List(list))]))),
    ]);
    Tree {
        documents: vec![doc],
        layout: None,
    }
}

fn vector_key() -> DataKey {
    DataKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap()
}

fn leaf<'t>(tree: &'t Tree, key: &str) -> &'t Value {
    match tree.documents[0].get(key) {
        Some(Node::Scalar(s)) => &s.value,
        _ => panic!("no scalar {key}"),
    }
}

#[test]
fn reproduces_the_spec_known_answer_vectors() {
    let mut tree = vector_tree();
    let mut cipher = Cipher::with_counter_ivs(vector_key(), 1);
    let mac = encrypt_tree(&mut tree, &mut cipher, &Rules::default()).unwrap();
    assert_eq!(
        leaf(&tree, "a").as_str().unwrap(),
        "ENC[AES256_GCM,data:0cHFi7Y=,iv:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,tag:ymZUyOw8wR96TPf7Sj/n1A==,type:str]"
    );
    assert_eq!(
        leaf(&tree, "n").as_str().unwrap(),
        "ENC[AES256_GCM,data:W0k=,iv:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=,tag:n8oGjv6FNr6xulgvsO4HZQ==,type:int]"
    );
    assert_eq!(
        leaf(&tree, "f").as_str().unwrap(),
        "ENC[AES256_GCM,data:W1p2,iv:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=,tag:sXwRZZ6UC//dD5lG89rMvg==,type:float]"
    );
    assert_eq!(
        leaf(&tree, "t").as_str().unwrap(),
        "ENC[AES256_GCM,data:On4aDA==,iv:BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=,tag:ovzkseXRQgndYeCdG5Ng8w==,type:bool]"
    );
    assert_eq!(leaf(&tree, "l_unencrypted"), &Value::Str("keep".into()));
    let Some(Node::Map(nested)) = tree.documents[0].get("nested") else {
        panic!()
    };
    let Some(Node::List(x)) = nested.get("x") else {
        panic!()
    };
    let items: Vec<_> = x
        .nodes()
        .map(|n| match n {
            Node::Scalar(s) => s.value.as_str().unwrap().to_string(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(items[0], "ENC[AES256_GCM,data:g4s=,iv:BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=,tag:p6jLxPrg/kjP/CGA03JVvw==,type:str]");
    assert_eq!(items[1], "ENC[AES256_GCM,data:/vDfDN0=,iv:BgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgY=,tag:ACLDRKVitznmw4KCY6F9dA==,type:bool]");
    assert_eq!(
        mac,
        "64B3612F77881ED9FF06F2034E149961EF59363E1E61AC3E35297CC16BABC3C4F4AC3DD387D0DD3FF4050B6930F42D96CCB97B392D27309BA33BEF8A44E307E7"
    );
    assert_eq!(
        seal_mac(&mut cipher, &mac, "2024-01-01T00:00:00Z"),
        "ENC[AES256_GCM,data:DwhGwkAYp5zJ9h3UUTSmnC3K/kq33KjKTbvClHoLN8Rp9GO+UNxyU0L/nDHmADwlt9522Qbjf3JuaQLn5K/N1bWk8JxuJR/W5whLH8hBGWmFf92ETYNjKuLd5Q/j372N6d0vIRTo0Gu4uzKvi45Ygz76u/NxoSA6uLYaq13iHJc=,iv:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=,tag:lUnJlocRqv3m+hdEhuUL2Q==,type:str]"
    );
}

#[test]
fn top_level_comment_vector() {
    let mut tree = Tree {
        documents: vec![Map(vec![MapItem::Comment(Comment::new(" a comment"))])],
        layout: None,
    };
    let mut cipher = Cipher::with_counter_ivs(vector_key(), 8);
    encrypt_tree(&mut tree, &mut cipher, &Rules::default()).unwrap();
    let MapItem::Comment(c) = &tree.documents[0].0[0] else {
        panic!()
    };
    assert_eq!(
        c.text,
        "ENC[AES256_GCM,data:tsjFp4eovLU4TA==,iv:CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=,tag:Y1bz2UIuMOHtdfYjZRt7eg==,type:comment]"
    );
}

#[test]
fn round_trip_restores_types_and_mac() {
    let mut tree = vector_tree();
    let mut cipher = Cipher::new(DataKey::generate());
    let mac = encrypt_tree(&mut tree, &mut cipher, &Rules::default()).unwrap();
    let opened = decrypt_tree(&mut tree, &mut cipher, &Rules::default()).unwrap();
    assert_eq!(opened.mac, mac);
    assert_eq!(leaf(&tree, "n"), &Value::Int(42));
    assert_eq!(leaf(&tree, "t"), &Value::Bool(true));
    assert!(tree.documents[0] == vector_tree().documents[0]);
}

#[test]
fn a_value_moved_to_another_key_fails_with_its_path() {
    let mut tree = vector_tree();
    let mut cipher = Cipher::new(DataKey::generate());
    encrypt_tree(&mut tree, &mut cipher, &Rules::default()).unwrap();
    let moved = leaf(&tree, "a").clone();
    if let MapItem::Pair(p) = &mut tree.documents[0].0[1] {
        p.value = Node::scalar(moved);
    }
    let err = decrypt_tree(&mut tree, &mut cipher, &Rules::default())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            CryptError::Open {
                source: OpenError::Authentication,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.path(), "[\"n\"]");
}

#[test]
fn a_plain_value_where_ciphertext_belongs_is_an_error() {
    let mut tree = vector_tree();
    let err = decrypt_tree(
        &mut tree,
        &mut Cipher::new(DataKey::generate()),
        &Rules::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, CryptError::NotEncrypted { .. }));
    assert_eq!(err.path(), "[\"a\"]");
}

#[test]
fn remembered_ivs_keep_unchanged_ciphertexts() {
    let mut tree = vector_tree();
    let mut cipher = Cipher::new(DataKey::generate());
    encrypt_tree(&mut tree, &mut cipher, &Rules::default()).unwrap();
    let before = leaf(&tree, "a").clone();
    cipher.remember_ivs();
    decrypt_tree(&mut tree, &mut cipher, &Rules::default()).unwrap();
    encrypt_tree(&mut tree, &mut cipher, &Rules::default()).unwrap();
    assert_eq!(leaf(&tree, "a"), &before);
}

#[test]
fn mac_only_encrypted_skips_clear_values_and_is_prefixed() {
    let rules = Rules {
        mac_only_encrypted: true,
        ..Rules::default()
    };
    let mut with_clear = vector_tree();
    let mac = encrypt_tree(
        &mut with_clear,
        &mut Cipher::new(DataKey::generate()),
        &rules,
    )
    .unwrap();
    let mut changed = vector_tree();
    if let MapItem::Pair(p) = &mut changed.documents[0].0[4] {
        p.value = s("changed");
    }
    let mac2 = encrypt_tree(&mut changed, &mut Cipher::new(DataKey::generate()), &rules).unwrap();
    assert_eq!(mac, mac2, "clear values are outside the MAC");
    let plain = encrypt_tree(
        &mut vector_tree(),
        &mut Cipher::new(DataKey::generate()),
        &Rules::default(),
    )
    .unwrap();
    assert_ne!(mac, plain);
}

#[test]
fn empty_tree_mac_is_sha512_of_nothing() {
    let mut tree = Tree {
        documents: vec![Map::new()],
        layout: None,
    };
    let mac = encrypt_tree(
        &mut tree,
        &mut Cipher::new(DataKey::generate()),
        &Rules::default(),
    )
    .unwrap();
    assert!(mac.starts_with("CF83E1357EEFB8BDF1542850D66D8007"));
}

#[test]
fn mac_aad_drops_fractions_and_keeps_offsets() {
    assert_eq!(
        mac_aad("2024-01-01T00:00:00.5Z").unwrap(),
        "2024-01-01T00:00:00Z"
    );
    assert_eq!(
        mac_aad("2024-01-01T00:00:00+00:00").unwrap(),
        "2024-01-01T00:00:00Z"
    );
    assert_eq!(
        mac_aad("2024-01-01T01:00:00+01:00").unwrap(),
        "2024-01-01T01:00:00+01:00"
    );
}

/// A tree large enough to be split over threads: `groups` maps of 100 typed values, a list and
/// a comment in each, and one `_unencrypted` value.
fn large_tree(groups: usize) -> Tree {
    let mut doc = Map::new();
    for g in 0..groups {
        let mut items = vec![MapItem::Comment(Comment::new(format!(" group {g}")))];
        for k in 0..100 {
            let value = match k % 4 {
                0 => Value::Int(g as i64 * 1000 + k),
                1 => Value::Bool(k % 8 == 1),
                2 => Value::Float(k as f64 + 0.5),
                _ => Value::Str(format!("secret-{g}-{k}")),
            };
            items.push(pair(&format!("k{k}"), Node::scalar(value)));
        }
        items.push(pair(
            "list",
            Node::List(List(vec![ListItem::Node(s("a")), ListItem::Node(s("b"))])),
        ));
        items.push(pair("note_unencrypted", s("plain")));
        doc.0.push(pair(&format!("g{g}"), Node::Map(Map(items))));
    }
    Tree {
        documents: vec![doc],
        layout: None,
    }
}

#[test]
fn threaded_and_sequential_walks_agree_both_ways() {
    let plain = large_tree(200);
    assert!(Cipher::new(vector_key()).can_batch());

    // Encrypted in a batch (random IVs), opened by a sequential walk (it remembers IVs).
    let mut tree = plain.clone();
    let mac = encrypt_tree(&mut tree, &mut Cipher::new(vector_key()), &Rules::default()).unwrap();
    let mut sequential = Cipher::new(vector_key());
    sequential.remember_ivs();
    assert!(!sequential.can_batch());
    let mut opened = tree.clone();
    let decrypted = decrypt_tree(&mut opened, &mut sequential, &Rules::default()).unwrap();
    assert_eq!(decrypted.mac, mac);
    assert_eq!(opened.documents, plain.documents);

    // Encrypted sequentially (counter IVs), opened in a batch.
    let mut tree = plain.clone();
    let counter_mac = encrypt_tree(
        &mut tree,
        &mut Cipher::with_counter_ivs(vector_key(), 0),
        &Rules::default(),
    )
    .unwrap();
    assert_eq!(counter_mac, mac, "the MAC depends on the plaintext only");
    let decrypted =
        decrypt_tree(&mut tree, &mut Cipher::new(vector_key()), &Rules::default()).unwrap();
    assert_eq!(decrypted.mac, mac);
    assert_eq!(tree.documents, plain.documents);
}

#[test]
fn a_threaded_walk_names_the_first_bad_value() {
    fn value_at<'t>(tree: &'t mut Tree, group: &str, key: &str) -> &'t mut Value {
        let Some(Node::Map(g)) = tree.documents[0].get_mut(group) else {
            panic!("no group {group}")
        };
        match g.get_mut(key) {
            Some(Node::Scalar(s)) => &mut s.value,
            _ => panic!("no value {key}"),
        }
    }
    let mut sealed = large_tree(200);
    encrypt_tree(
        &mut sealed,
        &mut Cipher::new(vector_key()),
        &Rules::default(),
    )
    .unwrap();
    // Two values swapped: both fail to authenticate and the earlier is reported, whether it is
    // in the first batch of leaves (g7) or a later one (g170).
    for (early, late) in [("g7", "g180"), ("g170", "g190")] {
        let mut tree = sealed.clone();
        let a = std::mem::replace(value_at(&mut tree, early, "k3"), Value::Null);
        let b = std::mem::replace(value_at(&mut tree, late, "k11"), a);
        *value_at(&mut tree, early, "k3") = b;
        let err = decrypt_tree(&mut tree, &mut Cipher::new(vector_key()), &Rules::default())
            .err()
            .unwrap();
        assert_eq!(err.path(), format!(r#"["{early}"]["k3"]"#), "{err}");
        assert!(matches!(err, CryptError::Open { .. }), "{err}");
    }
}
