//! The JSON pass against the tree path: every input of the store's suite and many generated
//! ones go through both, under every kind of rule, with the counter-IV cipher, and must give
//! the same bytes (or the pass must decline).

use std::cell::RefCell;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::crypt::{self, DataKey, Pattern, Rules, Selector};
use crate::store::{Format, Indent};
use crate::stream::{self as stream, Opening, Sealing};
use crate::tree::Map;

const LASTMODIFIED: &str = "2026-05-22T20:16:18Z";

fn data_key() -> DataKey {
    DataKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).expect("32 bytes")
}

fn text(s: &str) -> Node {
    Node::scalar(Value::Str(s.into()))
}

/// A metadata map as the pipeline builds one: the MAC sealed under the data key (the last IV
/// drawn), nested values of several kinds.
fn metadata_map(cipher: &mut Cipher, mac: &str) -> Map {
    let mut recipient = Map::new();
    recipient.insert("recipient", text("age1recipient"));
    recipient.insert(
        "enc",
        text("-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"),
    );
    let mut map = Map::new();
    map.insert(
        "age",
        Node::List(crate::tree::List(vec![crate::tree::ListItem::Node(
            Node::Map(recipient),
        )])),
    );
    map.insert("lastmodified", text(LASTMODIFIED));
    map.insert("mac", text(&crypt::seal_mac(cipher, mac, LASTMODIFIED)));
    map.insert("shamir_threshold", Node::scalar(Value::Int(0)));
    map.insert("version", text("3.13.2"));
    map
}

fn indent(json: Option<usize>) -> Indent {
    Indent {
        json,
        ..Indent::default()
    }
}

/// The tree path of `veil encrypt`: the encrypted file and the MAC.
fn tree_encrypt(
    input: &[u8],
    rules: &Rules,
    indent: Indent,
    cipher: &mut Cipher,
) -> Result<(Vec<u8>, String), String> {
    let loaded = Format::Json.load(input).map_err(|e| e.to_string())?;
    if loaded.metadata.is_some() {
        return Err("already encrypted".into());
    }
    let mut tree = loaded.tree;
    let mac = crypt::encrypt_tree(&mut tree, cipher, rules).map_err(|e| e.to_string())?;
    let map = metadata_map(cipher, &mac);
    let mut out = Vec::new();
    Format::Json
        .emit_to(&tree, Some(&map), indent, &mut out)
        .map_err(|e| e.to_string())?;
    Ok((out, mac))
}

/// The pass: `None` when it declines.
fn stream_encrypt(
    input: &[u8],
    rules: &Rules,
    indent: Indent,
    cipher: &mut Cipher,
) -> Option<(Vec<u8>, String)> {
    let checked = stream::check(Format::Json, input, &|_| {})?;
    let seen = RefCell::new(String::new());
    let mut metadata = |cipher: &mut Cipher, mac: String| {
        let map = metadata_map(cipher, &mac);
        *seen.borrow_mut() = mac;
        map
    };
    let mut out = Vec::new();
    let sealing = Sealing {
        cipher,
        rules,
        indent,
        metadata: &mut metadata,
        release: &|_| {},
    };
    if let Err(err) = checked.encrypt(sealing, &mut out) {
        panic!("a checked file failed to encrypt: {err}");
    }
    Some((out, seen.into_inner()))
}

/// The tree path of `veil decrypt`: the plaintext file and the MAC the values give.
fn tree_decrypt(input: &[u8], rules: &Rules, indent: Indent) -> Result<(Vec<u8>, String), String> {
    let loaded = Format::Json.load(input).map_err(|e| e.to_string())?;
    if loaded.metadata.is_none() {
        return Err("not encrypted".into());
    }
    let mut tree = loaded.tree;
    let mut cipher = Cipher::new(data_key());
    let decrypted =
        crypt::decrypt_tree(&mut tree, &mut cipher, rules).map_err(|e| e.to_string())?;
    let text = Format::Json
        .emit(&tree, None, indent)
        .map_err(|e| e.to_string())?;
    Ok((text, decrypted.mac))
}

fn stream_decrypt(input: &[u8], rules: &Rules, indent: Indent) -> Option<Plain> {
    let cipher = Cipher::new(data_key());
    stream::decrypt(
        Format::Json,
        input,
        Opening {
            cipher: &cipher,
            rules,
            indent,
            release: &|_| {},
        },
    )
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() > 3000 {
        format!(
            "{}… ({} bytes)",
            &text[..text.floor_char_boundary(3000)],
            text.len()
        )
    } else {
        text.into_owned()
    }
}

/// The first line where two outputs differ, for a readable failure.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    for (n, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}:\n tree:   {x:?}\n stream: {y:?}", n + 1);
        }
    }
    format!("lengths {} and {}", a.len(), b.len())
}

/// Decrypts `encrypted` both ways and compares text and MAC; returns whether the pass took it.
fn decrypts_alike(encrypted: &[u8], rules: &Rules, indent: Indent, context: &str) -> bool {
    let tree = tree_decrypt(encrypted, rules, indent);
    let metadata = stream::metadata(Format::Json, encrypted);
    let stream = metadata
        .as_ref()
        .and_then(|_| stream_decrypt(encrypted, rules, indent));
    match (&tree, &stream) {
        (_, None) => false,
        (Err(err), Some(_)) => {
            panic!("{context}: the pass decrypted a file the tree path refuses ({err})")
        }
        (Ok((text, mac)), Some(plain)) => {
            assert!(
                text.as_slice() == plain.text.as_slice(),
                "{context}: decrypted texts differ at {}",
                first_difference(text, &plain.text)
            );
            assert_eq!(mac, &plain.mac, "{context}: MACs differ");
            let loaded = Format::Json.load(encrypted).expect("loads");
            assert_eq!(loaded.metadata, metadata, "{context}: metadata differs");
            true
        }
    }
}

/// Runs a plain file through both paths, both ways. `None`: the tree path refuses the file
/// (and the pass declined it, as it must); `Some(false)`: the pass declined a file the tree
/// path takes; `Some(true)`: both took it and agreed everywhere.
fn both_ways(input: &[u8], rules: &Rules, indent: Indent) -> Option<bool> {
    let tree = tree_encrypt(
        input,
        rules,
        indent,
        &mut Cipher::with_counter_ivs(data_key(), 1),
    );
    let stream = stream_encrypt(
        input,
        rules,
        indent,
        &mut Cipher::with_counter_ivs(data_key(), 1),
    );
    let context = format!("{rules:?} {indent:?} on {}", show(input));
    let (encrypted, mac) = match (tree, stream) {
        (Err(_), None) => return None,
        (Err(err), Some(_)) => {
            panic!("{context}: the pass took a file the tree path refuses: {err}")
        }
        (Ok(_), None) => return Some(false),
        (Ok((tree, tree_mac)), Some((stream, stream_mac))) => {
            assert!(
                tree == stream,
                "{context}: encrypted files differ at {}",
                first_difference(&tree, &stream)
            );
            assert_eq!(tree_mac, stream_mac, "{context}");
            (tree, tree_mac)
        }
    };
    // The pass decrypts its own output, whatever the output indentation.
    for out_indent in [indent, self::indent(Some(3))] {
        assert!(
            decrypts_alike(&encrypted, rules, out_indent, &context),
            "{context}: the pass declined to decrypt a file it encrypted"
        );
    }
    // The MAC of the decrypted values is the encryption's, unless a value left clear reads
    // back as another type (`-0.0` is written `-0`, an int), on both paths alike.
    if !input.windows(4).any(|w| w == b"-0.0") {
        let plain = stream_decrypt(&encrypted, rules, indent).expect("decrypts");
        assert_eq!(plain.mac, mac, "{context}: the MAC does not verify");
    }
    Some(true)
}

fn all_rules() -> Vec<Rules> {
    let selectors = [
        Some(Selector::UnencryptedSuffix("_unencrypted".into())),
        Some(Selector::EncryptedSuffix("_enc".into())),
        Some(Selector::UnencryptedRegex(Pattern::new("^pub"))),
        Some(Selector::EncryptedRegex(Pattern::new(
            "^(data|stringData|secret.*)$",
        ))),
        Some(Selector::UnencryptedCommentRegex(Pattern::new("public"))),
        Some(Selector::EncryptedCommentRegex(Pattern::new("sops:enc"))),
        // An invalid regex matches nothing, as in sops.
        Some(Selector::EncryptedRegex(Pattern::new("("))),
        None,
    ];
    let mut rules = Vec::new();
    for selector in selectors {
        for mac_only_encrypted in [false, true] {
            rules.push(Rules {
                selector: selector.clone(),
                mac_only_encrypted,
            });
        }
    }
    rules
}

fn indents() -> [Indent; 4] {
    [
        indent(None),
        indent(Some(0)),
        indent(Some(2)),
        indent(Some(4)),
    ]
}

// ---------------------------------------------------------------------------------------------
// The store suite's inputs

const SECRET: &str = "s3cr3t-h\u{e9}ll\u{f6}";

fn rich_document() -> String {
    format!(
        "{{\n\t\"password\": \"{SECRET}\",\n\t\"escaped\": \"\\u00e9\\n\\ud83d\\ude00{SECRET}\",\n\
         \t\"n\": -12.5e3,\n\t\"i\": 1234,\n\t\"list\": [true, false, null, [], {{}}, \"{SECRET}\"],\n\
         \t\"nested\": {{\"deeper\": {{\"k\": \"{SECRET}\"}}}}\n}}\n"
    )
}

/// The literals of the store's tests, each as the value of a member.
const LITERALS: &[&str] = &[
    "0",
    "-0",
    "42",
    "-17",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "1.0",
    "25.4",
    "1e2",
    "1E2",
    "2.5e+3",
    "1e-2",
    "-1.5e-7",
    "1.7976931348623157e308",
    "1e-400",
    "-0.0",
    "0.1",
    "1e21",
    "1e20",
    "5e-324",
    "123456789.0",
    "1234568000.0",
    "0.000001",
    "0.0000001",
    r#""plain""#,
    r#""\"\\\/\b\f\n\r\t""#,
    r#""\u00e9\u00E9""#,
    r#""\u0000""#,
    r#""\ud83d\ude00""#,
    r#""\uD83D\uDE00""#,
    r#""\ud83d""#,
    r#""\ude00""#,
    r#""\ud83dx""#,
    r#""\ud83d\u0041""#,
    r#""\ud83d\ud83d\ude00""#,
    r#""é😀 raw""#,
    r#""<&>""#,
    r#""<a href=\"x\">&amp;</a>""#,
    r#""quote \" backslash \\ slash /""#,
    "\"del \u{7f} stays\"",
    "\"line\u{2028}para\u{2029}\"",
    "\"\u{FFFD}\"",
    r#""""#,
    r#""ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:str]""#,
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "[null]",
    "[[], {}, [[]], {\"a\": {}}]",
];

/// Whole documents of the store's tests (plain ones).
fn store_documents() -> Vec<Vec<u8>> {
    let mut docs: Vec<Vec<u8>> = vec![
        br#"{"b": 1, "a": 2, "b": 3, "c": {"z": null, "z": true}}"#.to_vec(),
        b"\r\n{ \"s\":\"x\", \"l\" : [1, [], {}, [null]],\t\"t\":true,\"f\":false }\r\n".to_vec(),
        br#"{"a": {"sops": 1}}"#.to_vec(),
        b"{}".to_vec(),
        b"  {  }  \n".to_vec(),
        b"{\"first\": \"1\"}".to_vec(),
        br#"{"s": "x", "f": 1.5, "b": false, "empty": {}, "list": [1, {"k": null}, []], "when": "2024-01-01T10:00:00.5+02:00"}"#.to_vec(),
        br#"{"a": "x"}"#.to_vec(),
        br#"{"ok": "x", "outer": {"list": [0, 1.5]}}"#.to_vec(),
        br#"{"url": "postgres://db-1/app \"quoted\" <tag>", "port": 1, "hosts": ["a", 1.5]}"#.to_vec(),
        br#"{"only_nulls": null, "deep": {"n": null, "l": [null, null]}}"#.to_vec(),
        br#"{"a_unencrypted": {"b": "clear", "c": [1, 2]}, "secret_x": "y", "data": {"k": "v"}}"#.to_vec(),
        rich_document().into_bytes(),
    ];
    for literal in LITERALS {
        docs.push(format!("{{\"v\": {literal}}}").into_bytes());
        docs.push(
            format!("{{\"l\": [{literal}, {literal}], \"k_unencrypted\": {literal}}}").into_bytes(),
        );
    }
    // Invalid UTF-8 in strings and keys.
    for raw in [
        &b"\xff"[..],
        b"a\xffb",
        b"\xe2\x82",
        b"\xe2\x82\\n",
        b"\xc3",
    ] {
        docs.push([b"{\"v\": \"".as_slice(), raw, b"\"}"].concat());
        docs.push([b"{\"".as_slice(), raw, b"\": \"x\"}"].concat());
    }
    // Exactly at the nesting limit.
    let half = crate::store::json::read::MAX_DEPTH / 2;
    docs.push(format!("{}1{}", "{\"a\":[".repeat(half), "]}".repeat(half)).into_bytes());
    docs.push(format!("{}\"x\"{}", "{\"a\":[".repeat(half), "]}".repeat(half)).into_bytes());
    // A large file, beyond one batch and one spill of output.
    let mut large = String::from("{\n");
    for i in 0..(QUEUE_SIZE * 2 + 17) {
        large.push_str(&format!("\t\"key{i}\": \"value number {i} \\u00e9\",\n"));
        if i % 7 == 0 {
            large.push_str(&format!("\t\"n{i}_unencrypted\": {i},\n"));
        }
    }
    large.push_str("\t\"last\": [\n\t\t1,\n\t\t2.5,\n\t\ttrue\n\t]\n}\n");
    docs.push(large.into_bytes());
    docs
}

/// Inputs the store refuses (its error tests): the pass declines every one.
fn broken_documents() -> Vec<Vec<u8>> {
    let mut docs: Vec<Vec<u8>> = [
        "",
        " ",
        "\n\t\r\n  ",
        "[1, 2]",
        "\"x\"",
        "12",
        "true",
        "null",
        "{",
        "{\"a\"",
        "{\"a\": ",
        "{\"a\": 1",
        "{\"a\": 1,",
        "{\"a\": \"unterminated",
        "{\"a\": 1}}",
        "{\"a\": 1} {}",
        "{\"a\": 1}\n\nx",
        "{\n  \"a\": 1\n  \"b\": 2\n}",
        "{\"a\": 1,}",
        "{a: 1}",
        "{\"a\": [1,]}",
        "{\"a\": [1 2]}",
        "{\"a\": tru}",
        "{\"a\": nul}",
        "{\"a\": True}",
        "{\"a\": 'x'}",
        "{\"a\": \"\\x\"}",
        "{\"a\": \"\\u12\"}",
        "{\"a\": \"\\u12G4\"}",
        "{\"a\": \"tab\there\"}",
        "{\"a\": \"new\nline\"}",
        "{\"é\": \"ü\" x}",
        "\u{feff}{}",
        "{} // comment",
        "{\"v\": 1e400}",
        "{\"v\": -1e400}",
        "{\"v\": 01}",
        "{\"v\": 1.}",
        "{\"v\": .5}",
        "{\"v\": -}",
        "{\"v\": 1e}",
        "{\"v\": 1e+}",
        "{\"v\": +1}",
        "{\"v\": 0x10}",
        "{\"v\": NaN}",
        "{\"v\": Infinity}",
        "{\"a\": [}",
        "{\"a\": {]}",
        "{\"a\": [1}",
        "{\"a\": {\"b\": 1]}",
        "{\"a\" 1}",
        // Already encrypted, or ambiguous.
        r#"{"a": "x", "sops": {"version": "3.13.2"}, "b": 1}"#,
        r#"{"sops": "x"}"#,
        r#"{"sops": {}, "sops": {}}"#,
        r#"{"so\u0070s": {}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let depth = 100_000;
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        docs.push(format!("{{\"a\":{}{}}}", open.repeat(depth), close.repeat(depth)).into_bytes());
    }
    let half = crate::store::json::read::MAX_DEPTH / 2;
    let at_limit = format!("{}1{}", "{\"a\":[".repeat(half), "]}".repeat(half));
    docs.push(format!("{{\"a\":[{at_limit}]}}").into_bytes());
    docs.push(
        format!(
            "{{\"a\":[{}]}}",
            "{\"a\":[".repeat(half) + &"]}".repeat(half)
        )
        .into_bytes(),
    );
    docs
}

#[test]
fn the_store_suites_inputs_encrypt_and_decrypt_alike() {
    let mut taken = 0;
    for doc in store_documents() {
        // The large and the deep documents under a few rules only (the small ones cover every
        // rule): unoptimised test builds are slow.
        let (rules, indents) = if doc.len() > 2000 {
            (
                all_rules()[..4].to_vec(),
                vec![indent(None), indent(Some(2))],
            )
        } else {
            (all_rules(), indents().to_vec())
        };
        for rules in rules {
            for &indent in &indents {
                match both_ways(&doc, &rules, indent) {
                    Some(true) => taken += 1,
                    Some(false) => panic!("the pass declined {} under {rules:?}", show(&doc)),
                    None => panic!("the tree path refuses {}", show(&doc)),
                }
            }
        }
    }
    assert!(taken > 1000, "{taken}");
}

#[test]
fn broken_or_encrypted_inputs_are_declined() {
    for doc in broken_documents() {
        assert!(
            stream::check(Format::Json, &doc, &|_| {}).is_none(),
            "checked {}",
            show(&doc)
        );
        // And the tree path refuses every one too.
        for rules in &all_rules()[..2] {
            assert_eq!(both_ways(&doc, rules, indent(None)), None, "{}", show(&doc));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generated documents

/// Random JSON text: every kind of value, escapes, odd whitespace, duplicate and suffixed keys.
struct Generator {
    rng: ChaCha8Rng,
    out: Vec<u8>,
}

const KEYS: &[&str] = &[
    "a",
    "b",
    "password",
    "dup",
    "dup",
    "public_key",
    "pub",
    "data",
    "stringData",
    "secret",
    "secret_enc",
    "token_enc",
    "name_unencrypted",
    "x_unencrypted",
    "sops",
    "",
    "with space",
    "é",
    "\\u00e9t\\u00e9",
    "quote\\\"d",
    "tab\\t",
    "emoji\\ud83d\\ude00",
    "lone\\ud800",
    "slash\\/",
    "中文",
    "<html&>",
];

const STRING_PIECES: &[&[u8]] = &[
    b"",
    b"plain",
    b"postgres://user:pw@db:5432/app",
    b"ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:str]",
    b"ENC[not really",
    b"\\n",
    b"\\r\\n",
    b"\\t",
    b"\\u0000",
    b"\\u001f",
    b"\\ud83d",
    b"\\ud83d\\ude00",
    b"\\uDBFF\\uDFFF",
    b"\\ude00",
    b"\\u2028",
    b"\\\"",
    b"\\\\",
    b"\\/",
    b"\\b\\f",
    "é".as_bytes(),
    "中文".as_bytes(),
    "😀".as_bytes(),
    "\u{2028}\u{2029}".as_bytes(),
    "\u{7f}".as_bytes(),
    b"<&>",
    b"\xff",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"public",
    b"sops:enc",
    b" ",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "42",
    "-17",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551616",
    "1.0",
    "25.4",
    "-0.0",
    "0.1",
    "1e2",
    "1E+2",
    "2.5e-3",
    "1e21",
    "1e-7",
    "1.5e300",
    "1e-400",
    "5e-324",
    "1.7976931348623157e308",
    "0.30000000000000004",
    "100000000000000000000000",
];

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            out: Vec::new(),
        }
    }

    fn ws(&mut self) {
        const SPACES: [&[u8]; 6] = [b"", b"", b" ", b"\n", b"\t", b"\r\n  "];
        let pick = SPACES[self.rng.gen_range(0..SPACES.len())];
        self.out.extend_from_slice(pick);
    }

    fn key(&mut self, top: bool) {
        let key = loop {
            let key = KEYS[self.rng.gen_range(0..KEYS.len())];
            // A top-level `sops` member makes a file encrypted: the pass declines it.
            if !(top && key == "sops") {
                break key;
            }
        };
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        if self.rng.gen_bool(0.3) {
            let n = self.rng.gen_range(0..100);
            self.out.extend_from_slice(n.to_string().as_bytes());
        }
        self.out.push(b'"');
    }

    fn string(&mut self) {
        self.out.push(b'"');
        for _ in 0..self.rng.gen_range(0..5) {
            let piece = STRING_PIECES[self.rng.gen_range(0..STRING_PIECES.len())];
            self.out.extend_from_slice(piece);
        }
        if self.rng.gen_bool(0.05) {
            let long = "x".repeat(self.rng.gen_range(100..5000));
            self.out.extend_from_slice(long.as_bytes());
        }
        self.out.push(b'"');
    }

    fn number(&mut self) {
        if self.rng.gen_bool(0.5) {
            let n: i64 = self.rng.gen_range(-1_000_000..1_000_000_000);
            self.out.extend_from_slice(n.to_string().as_bytes());
        } else if self.rng.gen_bool(0.3) {
            let f: f64 = self.rng.gen_range(-1e6..1e6);
            self.out.extend_from_slice(format!("{f:e}").as_bytes());
        } else {
            let n = NUMBERS[self.rng.gen_range(0..NUMBERS.len())];
            self.out.extend_from_slice(n.as_bytes());
        }
    }

    fn value(&mut self, depth: usize) {
        let container = if depth < 6 { 30 } else { 0 };
        match self.rng.gen_range(0..100 + container) {
            0..=34 => self.string(),
            35..=64 => self.number(),
            65..=79 => self
                .out
                .extend_from_slice(if self.rng.gen() { b"true" } else { b"false" }),
            80..=99 => self.out.extend_from_slice(b"null"),
            100..=114 => self.object(depth + 1, false),
            _ => self.array(depth + 1),
        }
    }

    fn object(&mut self, depth: usize, top: bool) {
        self.out.push(b'{');
        let members = if top {
            self.rng.gen_range(0..30)
        } else {
            self.rng.gen_range(0..6)
        };
        for n in 0..members {
            if n > 0 {
                self.out.push(b',');
            }
            self.ws();
            self.key(top);
            self.ws();
            self.out.push(b':');
            self.ws();
            self.value(depth);
            self.ws();
        }
        self.ws();
        self.out.push(b'}');
    }

    fn array(&mut self, depth: usize) {
        self.out.push(b'[');
        for n in 0..self.rng.gen_range(0..6) {
            if n > 0 {
                self.out.push(b',');
            }
            self.ws();
            self.value(depth);
            self.ws();
        }
        self.out.push(b']');
    }

    fn document(&mut self) -> Vec<u8> {
        self.out.clear();
        self.ws();
        self.object(0, true);
        self.ws();
        std::mem::take(&mut self.out)
    }
}

#[test]
fn generated_documents_encrypt_and_decrypt_alike_under_every_rule() {
    let mut generator = Generator::new(0x5eed);
    let rules = all_rules();
    let indents = indents();
    let mut taken = 0;
    for n in 0..200 {
        let doc = generator.document();
        for (r, rule) in rules.iter().enumerate() {
            let indent = indents[(n + r) % indents.len()];
            match both_ways(&doc, rule, indent) {
                Some(true) => taken += 1,
                Some(false) => panic!("the pass declined {}", show(&doc)),
                None => panic!(
                    "the generator wrote a file the store refuses: {}",
                    show(&doc)
                ),
            }
        }
    }
    assert_eq!(taken, 200 * rules.len());
}

/// The shape of the benchmark corpus (`gen_corpus.py`): services, environments, ten keys of
/// mixed types, written as Python's `json.dump(indent=2)` writes it.
fn corpus(values: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut out = String::from("{");
    let (mut count, mut service) = (0, 0);
    while count < values {
        out.push_str(if service == 0 { "\n" } else { ",\n" });
        out.push_str(&format!("  \"service_{service}\": {{"));
        for (e, env) in ["dev", "staging", "prod"].iter().enumerate() {
            out.push_str(if e == 0 { "\n" } else { ",\n" });
            out.push_str(&format!("    \"{env}\": {{"));
            for k in 0..10 {
                if count >= values {
                    break;
                }
                let value = match rng.gen_range(0..5) {
                    0 => rng.gen_range(1..1u64 << 31).to_string(),
                    1 => rng.gen_bool(0.5).to_string(),
                    2 => format!(
                        "\"postgres://user:{:032x}@db-{service}.internal:5432/app\"",
                        rng.gen::<u128>()
                    ),
                    _ => format!("\"{:032x}{:032x}\"", rng.gen::<u128>(), rng.gen::<u128>()),
                };
                out.push_str(if k == 0 { "\n" } else { ",\n" });
                out.push_str(&format!("      \"key_{k}\": {value}"));
                count += 1;
            }
            out.push_str("\n    }");
        }
        out.push_str("\n  }");
        service += 1;
    }
    out.push_str("\n}\n");
    out.into_bytes()
}

#[test]
fn the_benchmark_shape_encrypts_and_decrypts_alike() {
    let doc = corpus(3 * QUEUE_SIZE + 5);
    for rules in [
        Rules::default(),
        Rules {
            selector: Some(Selector::EncryptedRegex(Pattern::new("^key_[0-4]$"))),
            mac_only_encrypted: true,
        },
    ] {
        for indent in [indent(None), indent(Some(2))] {
            assert_eq!(both_ways(&doc, &rules, indent), Some(true));
        }
    }
}

#[test]
fn a_failure_in_any_batch_declines_the_whole_file() {
    // Batches are on the workers while the walk reads on: a value that fails to open in the
    // first, a middle or the last batch must stop the pass, whatever else is in flight.
    let doc = corpus(6 * QUEUE_SIZE + 5);
    let rules = Rules::default();
    let (encrypted, _) = stream_encrypt(
        &doc,
        &rules,
        indent(None),
        &mut Cipher::with_counter_ivs(data_key(), 1),
    )
    .expect("encrypts");
    assert!(stream_decrypt(&encrypted, &rules, indent(None)).is_some());
    let text = String::from_utf8(encrypted).expect("UTF-8");
    let metadata = text.rfind("\"sops\"").expect("metadata");
    let values: Vec<usize> = text[..metadata]
        .match_indices("ENC[")
        .map(|(at, _)| at)
        .collect();
    for n in [0, QUEUE_SIZE + 1, 3 * QUEUE_SIZE, values.len() - 1] {
        let at = values[n];
        let end = at + text[at..].find(']').expect("closes") + 1;
        // The control: another value sealed where it stands opens.
        let other = sealed("other", &aad_at(&text, at), "str");
        let replaced = format!("{}{other}{}", &text[..at], &text[end..]);
        assert!(
            stream_decrypt(replaced.as_bytes(), &rules, indent(None)).is_some(),
            "value {n} replaced"
        );
        // A tampered value: its data's first symbol changed.
        let data = at + "ENC[AES256_GCM,data:".len();
        let symbol = if &text[data..data + 1] == "A" {
            "B"
        } else {
            "A"
        };
        let tampered = format!("{}{symbol}{}", &text[..data], &text[data + 1..]);
        assert!(
            stream_decrypt(tampered.as_bytes(), &rules, indent(None)).is_none(),
            "value {n} tampered"
        );
        // A value that opens but cannot be written (NaN), where the second worker fails.
        let nan = sealed("NaN", &aad_at(&text, at), "float");
        let unwritable = format!("{}{nan}{}", &text[..at], &text[end..]);
        assert!(
            stream_decrypt(unwritable.as_bytes(), &rules, indent(None)).is_none(),
            "value {n} unwritable"
        );
    }
}

/// The AAD of the corpus value at `at` (the corpus nests service, environment and key).
fn aad_at(text: &str, at: usize) -> String {
    let before = &text[..at];
    let key = |from: usize, prefix: &str| {
        let start = before[..from].rfind(prefix).expect("a key") + 1;
        let end = start + before[start..].find('"').expect("closes");
        (start, before[start..end].to_string())
    };
    let (k, key_name) = key(before.len(), "\"key_");
    let (e, env) = ["\"dev\"", "\"staging\"", "\"prod\""]
        .iter()
        .filter_map(|name| {
            before[..k]
                .rfind(name)
                .map(|at| (at, name.trim_matches('"')))
        })
        .max()
        .map(|(at, name)| (at, name.to_string()))
        .expect("an environment");
    let (_, service) = key(e, "\"service_");
    format!("{service}:{env}:{key_name}:")
}

/// The corpus files the benchmark uses, when they have been generated (`bench/work`, not
/// committed): `plain-N.json` from `gen_corpus.py`.
#[test]
fn the_benchmark_files_encrypt_and_decrypt_alike() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/work");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("SKIPPED: no {}", dir.display());
        return;
    };
    let mut seen = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("plain-") && name.ends_with(".json")) {
            continue;
        }
        let input = std::fs::read(entry.path()).expect("reads");
        assert_eq!(
            both_ways(&input, &Rules::default(), indent(None)),
            Some(true),
            "{name}"
        );
        seen += 1;
    }
    println!("{seen} benchmark files compared");
}

// ---------------------------------------------------------------------------------------------
// Random IVs

#[test]
fn random_iv_encryption_decrypts_to_the_same_values() {
    let mut generator = Generator::new(7);
    let mut docs: Vec<Vec<u8>> = (0..40).map(|_| generator.document()).collect();
    docs.push(corpus(3 * QUEUE_SIZE));
    docs.push(rich_document().into_bytes());
    for (n, doc) in docs.iter().enumerate() {
        let rules = &all_rules()[n % 16];
        let indent = indent(None);
        let (counter, counter_mac) = tree_encrypt(
            doc,
            rules,
            indent,
            &mut Cipher::with_counter_ivs(data_key(), 1),
        )
        .expect("encrypts");
        let (random, mac) = stream_encrypt(doc, rules, indent, &mut Cipher::new(data_key()))
            .expect("the pass takes it");
        let want = tree_decrypt(&counter, rules, indent).expect("decrypts");
        let got = tree_decrypt(&random, rules, indent).expect("decrypts");
        assert!(want.0 == got.0, "{}", first_difference(&want.0, &got.0));
        assert_eq!(want.1, got.1);
        assert_eq!(mac, counter_mac);
        // And through the pass again.
        assert!(decrypts_alike(&random, rules, indent, "random IVs"));
    }
}

// ---------------------------------------------------------------------------------------------
// Encrypted files the pass leaves to the tree path

/// An encrypted file built by hand: `body` members (JSON text) and the metadata.
fn encrypted_file(body: &str) -> Vec<u8> {
    let mut cipher = Cipher::with_counter_ivs(data_key(), 1);
    let mut map = Map::new();
    map.insert("lastmodified", text(LASTMODIFIED));
    map.insert("mac", text(&crypt::seal_mac(&mut cipher, "", LASTMODIFIED)));
    let metadata = Format::Json
        .emit(
            &crate::tree::Tree {
                documents: vec![map],
                layout: None,
            },
            None,
            indent(None),
        )
        .expect("emits");
    let metadata = String::from_utf8(metadata).expect("UTF-8");
    format!("{{{body}, \"sops\": {}}}", metadata.trim_end()).into_bytes()
}

fn sealed(plaintext: &str, aad: &str, type_name: &str) -> String {
    Cipher::with_counter_ivs(data_key(), 9).seal(plaintext.as_bytes(), aad.as_bytes(), type_name)
}

/// The pass declines; the tree path either refuses the file or takes it (then the pass only
/// left a rare case to it).
fn declined(encrypted: &[u8], rules: &Rules) {
    assert!(
        stream_decrypt(encrypted, rules, indent(None)).is_none(),
        "decrypted {}",
        show(encrypted)
    );
}

#[test]
fn unusual_or_failing_encrypted_files_are_declined() {
    let rules = Rules::default();
    let good = sealed("hello", "a:", "str");
    // The control: a well-formed file is taken.
    let control = encrypted_file(&format!("\"a\": \"{good}\""));
    assert!(decrypts_alike(&control, &rules, indent(None), "control"));

    // A value the rules say is encrypted is in clear.
    declined(&encrypted_file("\"a\": \"clear\""), &rules);
    declined(&encrypted_file("\"a\": 12"), &rules);
    declined(&encrypted_file("\"a\": [true]"), &rules);
    assert!(tree_decrypt(&encrypted_file("\"a\": 12"), &rules, indent(None)).is_err());
    // The wrong AAD (a value moved to another key), a tampered value, a malformed one.
    declined(&encrypted_file(&format!("\"b\": \"{good}\"")), &rules);
    declined(
        &encrypted_file(&format!("\"a\": \"{}\"", good.replace("data:", "data:A"))),
        &rules,
    );
    declined(&encrypted_file("\"a\": \"ENC[AES256_GCM,data:\""), &rules);
    declined(&encrypted_file("\"a\": \"ENC[\""), &rules);
    // An unknown type, and plaintexts that do not parse as their type.
    declined(
        &encrypted_file(&format!("\"a\": \"{}\"", sealed("x", "a:", "blob"))),
        &rules,
    );
    declined(
        &encrypted_file(&format!("\"a\": \"{}\"", sealed("x", "a:", "int"))),
        &rules,
    );
    declined(
        &encrypted_file(&format!("\"a\": \"{}\"", sealed("nope", "a:", "time"))),
        &rules,
    );
    // A float sealed as NaN opens, but JSON cannot hold it.
    let nan = encrypted_file(&format!("\"a\": \"{}\"", sealed("NaN", "a:", "float")));
    declined(&nan, &rules);
    assert!(tree_decrypt(&nan, &rules, indent(None)).is_err());
    // A sealed comment in a list (what sops writes for a YAML comment there).
    let comment = encrypted_file(&format!(
        "\"l\": [\"{}\", \"{}\"]",
        sealed(" note", "l:", "comment"),
        sealed("v", "l:", "str")
    ));
    declined(&comment, &rules);
    // A sealed value written with an escape.
    let escaped = good.replacen('E', "\\u0045", 1);
    let escaped = encrypted_file(&format!("\"a\": \"{escaped}\""));
    declined(&escaped, &rules);
    assert!(tree_decrypt(&escaped, &rules, indent(None)).is_ok());
    // Two `sops` members; no metadata at all.
    let twice = format!(
        "{{\"sops\": {{}}, {}",
        String::from_utf8(control.clone())
            .expect("UTF-8")
            .trim_start_matches('{')
    );
    // (Found from the end, the last one may be taken for the metadata: the pass then
    // declines, and the loader refuses the file.)
    declined(twice.as_bytes(), &rules);
    assert!(Format::Json.load(twice.as_bytes()).is_err());
    assert!(stream::metadata(Format::Json, format!("{{\"a\": \"{good}\"}}").as_bytes()).is_none());
    declined(format!("{{\"a\": \"{good}\"}}").as_bytes(), &rules);
    // Broken files.
    for cut in [1, control.len() / 2, control.len() - 1] {
        assert!(stream::metadata(Format::Json, &control[..cut]).is_none());
        declined(&control[..cut], &rules);
    }
}

#[test]
fn values_the_rules_leave_clear_stay_as_they_are() {
    // Under `mac_only_encrypted`, clear values are not hashed; a sealed-looking clear value
    // (not selected by the rules) stays as it is, as the tree walk leaves it.
    let good = sealed("hello", "a_unencrypted:", "str");
    let file = encrypted_file(&format!(
        "\"a_unencrypted\": \"{good}\", \"n_unencrypted\": [1, 2.5, null, \"\"], \"e\": \"\""
    ));
    for mac_only_encrypted in [false, true] {
        let rules = Rules {
            mac_only_encrypted,
            ..Rules::default()
        };
        assert!(decrypts_alike(&file, &rules, indent(None), "clear values"));
    }
}

#[test]
fn the_metadata_is_the_loaders() {
    let (encrypted, _) = stream_encrypt(
        rich_document().as_bytes(),
        &Rules::default(),
        indent(None),
        &mut Cipher::with_counter_ivs(data_key(), 1),
    )
    .expect("encrypts");
    let want = Format::Json.load(&encrypted).expect("loads").metadata;
    assert!(want.is_some());
    assert_eq!(stream::metadata(Format::Json, &encrypted), want);
    // Wherever the member stands, and whatever its value is.
    for file in [
        r#"{"sops": {"version": "3.13.2"}, "a": "x"}"#,
        r#"{"a": "x", "sops": {"version": "3.13.2", "l": [1, {"k": null}]}, "b": 1}"#,
        r#"{"sops": "x"}"#,
        r#"{"sops": [1, 2.5, true]}"#,
        "{\"sops\" :\n\t{ } }",
    ] {
        let want = Format::Json.load(file.as_bytes()).expect("loads").metadata;
        assert_eq!(
            stream::metadata(Format::Json, file.as_bytes()),
            want,
            "{file}"
        );
    }
}

#[test]
fn the_metadata_found_from_the_end_is_the_walks() {
    let (encrypted, _) = stream_encrypt(
        rich_document().as_bytes(),
        &Rules::default(),
        indent(Some(2)),
        &mut Cipher::with_counter_ivs(data_key(), 1),
    )
    .expect("encrypts");
    let found = metadata_from_end(&encrypted);
    assert!(found.is_some());
    assert_eq!(found, metadata_by_walk(&encrypted));
    // Found: whitespace of any kind, and `"sops"` strings that are not keys after it.
    for file in [
        "{\"a\": 1, \"sops\": {\"v\": 2}}",
        "{\"sops\":{}}",
        "{\"a\": \"sops\",\n\t\"sops\" \r\n: { \"hc_vault\": [{\"engine_path\": \"sops\"}] } \n}\n\n",
        "{\"a\": \"x\\\"sops\\\": 1\", \"sops\": {\"k\": \"\\\"sops\\\": {}\"}}",
    ] {
        let found = metadata_from_end(file.as_bytes());
        assert!(found.is_some(), "{file}");
        assert_eq!(found, metadata_by_walk(file.as_bytes()), "{file}");
    }
    // Not found from the end; the walk decides (and finds the member where there is one).
    for (file, walk_finds) in [
        // Not the last member.
        ("{\"sops\": {}, \"a\": 1}", true),
        // A nested key `sops` last.
        ("{\"sops\": {\"k\": {\"sops\": 1}}}", true),
        ("{\"a\": {\"sops\": {}}}", false),
        // The key written with an escape, or preceded by an escaped quote (inside a key).
        ("{\"\\u0073ops\": {}}", true),
        ("{\"x\\\"sops\": {}}", false),
        // Not an object at the end, or broken.
        ("[{\"sops\": {}}]", false),
        ("{\"sops\": {}", false),
        ("{\"sops\": {]}", false),
        ("{\"sops\": }", false),
    ] {
        assert_eq!(metadata_from_end(file.as_bytes()), None, "{file}");
        assert_eq!(
            metadata_by_walk(file.as_bytes()).is_some(),
            walk_finds,
            "{file}"
        );
    }
}

#[test]
fn a_file_whose_metadata_is_not_last_decrypts_alike() {
    let good = sealed("hello", "a:", "str");
    let file = String::from_utf8(encrypted_file(&format!("\"a\": \"{good}\""))).expect("UTF-8");
    // The `sops` member moved to the front.
    let at = file.find(", \"sops\"").expect("has metadata");
    let moved = format!("{{{}, {}}}", &file[at + 2..file.len() - 1], &file[1..at]);
    assert!(metadata_from_end(moved.as_bytes()).is_none());
    assert!(stream::metadata(Format::Json, moved.as_bytes()).is_some());
    assert!(decrypts_alike(
        moved.as_bytes(),
        &Rules::default(),
        indent(None),
        "moved"
    ));
}

// ---------------------------------------------------------------------------------------------
// No panics, whatever the input

/// Runs every entry point on `input`; where the pass takes it, it must agree with the tree path.
fn survive(input: &[u8]) {
    let rules = Rules::default();
    let _ = both_ways(input, &rules, indent(None));
    let _ = decrypts_alike(input, &rules, indent(None), "mutated");
}

#[test]
fn truncated_and_mutated_inputs_never_panic() {
    let plain = rich_document().into_bytes();
    let (encrypted, _) = stream_encrypt(
        &plain,
        &Rules::default(),
        indent(None),
        &mut Cipher::with_counter_ivs(data_key(), 1),
    )
    .expect("encrypts");
    for input in [&plain, &encrypted] {
        for cut in 0..input.len() {
            survive(&input[..cut]);
        }
        let step = (input.len() / 400).max(1);
        for at in (0..input.len()).step_by(step) {
            for replacement in [
                b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', 0x00, 0xff,
            ] {
                let mut mutated = input.clone();
                mutated[at] = replacement;
                survive(&mutated);
            }
        }
    }
    let mut generator = Generator::new(99);
    let mut rng = ChaCha8Rng::seed_from_u64(100);
    for _ in 0..300 {
        let mut doc = generator.document();
        if doc.is_empty() {
            continue;
        }
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..doc.len());
            match rng.gen_range(0..3) {
                0 => doc[at] = rng.gen(),
                1 => {
                    doc.remove(at);
                }
                _ => doc.insert(at, b"\"{}[],:\\"[rng.gen_range(0..8)]),
            }
            if doc.is_empty() {
                break;
            }
        }
        survive(&doc);
    }
}

// ---------------------------------------------------------------------------------------------
// Pieces

#[test]
fn canonical_text_is_the_values_own() {
    let mut buffer = Zeroizing::new(Vec::new());
    let mut values = vec![
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(0),
        Value::Int(i64::MIN),
        Value::Int(i64::MAX),
        Value::Float(0.0),
        Value::Float(-0.0),
        Value::Float(1e21),
        Value::Float(1e-7),
        Value::Float(5e-324),
        Value::Float(f64::MAX),
        Value::Float(f64::NAN),
        Value::Float(f64::NEG_INFINITY),
        Value::Str("text".into()),
        Value::Bytes(vec![0xff, 0]),
        Value::Time(crate::tree::parse_time("2024-01-01T10:00:00.5+02:00").expect("a time")),
        Value::Null,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..1000 {
        values.push(Value::Int(rng.gen()));
        values.push(Value::Float(f64::from_bits(rng.gen())));
    }
    for value in values {
        assert_eq!(
            canonical(&value, &mut buffer),
            value.canonical_bytes(),
            "{value:?}"
        );
    }
}

#[test]
fn a_failing_sink_is_reported() {
    struct Closed;
    impl std::io::Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    for doc in [corpus(2 * QUEUE_SIZE), b"{}".to_vec()] {
        let checked = stream::check(Format::Json, &doc, &|_| {}).expect("checks");
        let mut cipher = Cipher::with_counter_ivs(data_key(), 1);
        let mut metadata = |cipher: &mut Cipher, mac: String| metadata_map(cipher, &mac);
        let sealing = Sealing {
            cipher: &mut cipher,
            rules: &Rules::default(),
            indent: indent(None),
            metadata: &mut metadata,
            release: &|_| {},
        };
        let err = checked.encrypt(sealing, &mut Closed).err();
        assert!(
            matches!(&err, Some(EmitError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe),
            "{err:?}"
        );
    }
}

#[test]
fn the_plaintext_comes_back_in_a_buffer_of_about_its_size() {
    // Mostly sealed values, and mostly clear ones (the first guess is then far too small).
    for rules in [
        Rules::default(),
        Rules {
            selector: Some(Selector::EncryptedRegex(Pattern::new("^key_0$"))),
            mac_only_encrypted: false,
        },
    ] {
        let plain = corpus(5 * QUEUE_SIZE);
        let (encrypted, _) = stream_encrypt(
            &plain,
            &rules,
            indent(None),
            &mut Cipher::with_counter_ivs(data_key(), 1),
        )
        .expect("encrypts");
        let decrypted = stream_decrypt(&encrypted, &rules, indent(None)).expect("opens");
        let actual = decrypted.text.len();
        assert!(
            decrypted.text.capacity() <= actual + actual / 8 + SPILL_AT,
            "{} for {actual}",
            decrypted.text.capacity()
        );
    }
    assert_eq!(expected_size(100, 0, 1000), 0);
    assert_eq!(expected_size(100, 2000, 1000), 0);
    assert_eq!(expected_size(100, 500, 1000), 206);
}

#[test]
fn sealed_values_are_written_as_the_writer_writes_them() {
    let mut cipher = Cipher::new(data_key());
    for (plaintext, type_name) in [
        ("", "str"),
        ("x", "str"),
        ("<&>\"\\\n", "str"),
        ("12", "int"),
        ("1.5", "float"),
        ("True", "bool"),
        ("2024-01-01T00:00:00Z", "time"),
        (" note", "comment"),
    ] {
        for _ in 0..50 {
            let sealed = cipher.seal(plaintext.as_bytes(), b"a:b:", type_name);
            let mut direct = b"x".to_vec();
            write_sealed(&mut direct, &sealed);
            let mut escaped = Writer::new(None, 0);
            escaped.out.push(b'x');
            escaped.string(sealed.as_bytes());
            assert_eq!(direct, escaped.out);
        }
    }
    // Text that is not a sealed value goes through the writer's escaping.
    for text in ["<tag>", "a\"b", "é", "\u{2028}", "\n"] {
        let mut direct = b"x".to_vec();
        write_sealed(&mut direct, text);
        let mut escaped = Writer::new(None, 0);
        escaped.out.push(b'x');
        escaped.string(text.as_bytes());
        assert_eq!(direct, escaped.out);
    }
}
