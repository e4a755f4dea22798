//! Differential tests: the fast scanner against granit, over every YAML input at hand.
//!
//! For each input the fast path either declines or gives exactly granit's events with exactly
//! granit's positions, and `read` gives the same documents, metadata, layouts and shape over
//! either path. Inputs: the project's test data, the sops vectors (`VEIL_SOPS_VECTORS`), the
//! benchmark corpus generator at small sizes, hand-written snippets at the edges of what the
//! fast path reads, and seeded random documents mixing accepted and declined constructs.

use std::path::{Path, PathBuf};

use super::super::read::{granit_events, read_fast, read_granit, Position};
use super::scan;
use granit_parser::Event;

/// Checks one input; returns whether the fast path read it.
fn check(source: &str) -> bool {
    let mut fast: Vec<(Event<'_>, Position)> = Vec::new();
    let accepted = scan(source, |event, at| {
        fast.push((event, at));
        true
    });
    if accepted {
        let mut granit = Vec::new();
        for event in granit_events(source) {
            match event {
                Ok((event, at, tag)) => {
                    assert!(tag.is_none(), "{source:?}: the fast path read a tag");
                    granit.push((event, at));
                }
                Err(e) => panic!("{source:?}: the fast path read it, granit fails: {e}"),
            }
        }
        for (n, pair) in granit.iter().zip(&fast).enumerate() {
            assert_eq!(
                pair.0, pair.1,
                "{source:?}: event {n} differs (granit, fast)"
            );
        }
        assert_eq!(granit.len(), fast.len(), "{source:?}: event counts differ");
    }
    let granit = read_granit(source);
    match read_fast(source) {
        Some(read) => {
            assert!(
                accepted,
                "{source:?}: read_fast succeeded on a declined input"
            );
            let granit = granit.unwrap_or_else(|e| panic!("{source:?}: granit fails: {e}"));
            assert_eq!(
                format!("{read:?}"),
                format!("{granit:?}"),
                "{source:?}: the reads differ"
            );
        }
        None => {
            // A fault the reader finds makes the fast path hand over too, for granit's message.
            assert!(
                !accepted || granit.is_err(),
                "{source:?}: scanned but not read"
            );
        }
    }
    // And `read` itself, whichever path it takes, is granit's result.
    assert_eq!(
        format!("{:?}", super::super::read::read(source)),
        format!("{:?}", read_granit(source)),
        "{source:?}: read differs from granit's"
    );
    accepted
}

/// Inputs the fast path must read (and match granit on).
pub(crate) const ACCEPTED: &[&str] = &[
    "a: 1\n",
    "a: 1",
    "a:\n",
    "a:",
    "a: \n",
    "a:  # empty, with a comment\nb: 2\n",
    "a:\nb:\nc:\n",
    // Nested and indentless lists.
    "a:\n- 1\n- 2\nb: 3\n",
    "a:\n  - 1\n  - 2\nb: 3\n",
    "a:\n- - x\n  - y\n- - z\n",
    "a:\n  - - x\n    - y\n  -\n  - ''\n",
    "a:\n- k: v\n  j: w\n- k: u\n",
    "a:\n  - k: v\n    j:\n      - 1\n    m: n\n",
    "a:\n- # a comment on the dash\n  k: v\n",
    "a:\n-\n- \n-  # c\n- x\n",
    "a:\n  -\n  - x\n",
    "a:\n- []\n- {}\nb: [] # empty\nc: {}\n",
    // Comments everywhere.
    "# head\n\n# more\na: 1 # eol\n# between\nb:\n  # inside\n  c: 2\n  # foot of b\n# foot\n",
    "a:\n  b: 1\n    # deeper\n# shallow\nc: 2\n",
    "a:\n  # first\n\n  # second\n  b: 1\n",
    "a: # eol on a key\n  b: 1\n",
    "a: # eol\n- 1\n",
    "l:\n  - 1 # one\n  # between\n  - 2\n# after\n",
    "a: 1\n# last, no line feed",
    "a: 1\n# last\n\n\n",
    // Scalars.
    "a: 'single'\nb: \"double\"\nc: 'it''s'\nd: \"esc \\\" \\\\ \\n \\t \\u00e9 \\x41 \\U0001F600\"\n",
    "a: '# not a comment'\nb: \"# nor this\"\nc: x#y\nd: x # but this\n",
    "a: 'k: v'\nb: \"k: v\"\nc: http://host:8080/path\nd: a:b\n",
    "'quoted key': 1\n\"double key\": 2\n'': 3\n",
    "1: a\ntrue: b\nnull2: c\n0x1F: d\n1.5: e\n",
    "a: -1\nb: -x\nc: --\nd: --- not a marker\n",
    "a: x   \nb: 'y'   \nc: z  # c  \n",
    "é: ü\nkey: 日本語 # コメント\nü: 'ö' # ä\n",
    "a: yes\nb: off\nc: ~\nd: null\ne: .inf\nf: 2024-01-01\ng: 1e3\n",
    "<<: x\n",
    // Block scalars.
    "a: |\n  line 1\n  line 2\nb: 1\n",
    "a: |-\n  x\n\n  y\n\n\nb: 1\n",
    "a: |+\n  x\n\n# c\nb: 1\n",
    "a: >\n  folded\n  text\n\n  para\n   more indented\n  back\nb: 1\n",
    "a: >-\n  x\n  y\n",
    "a: | # header comment\n    deep\n   # a comment, less indented\nb: 1\n",
    "a: |\n  x",
    "a: |\n  x\n  ",
    "a: |\n  # content, not a comment\n  x\n",
    "l:\n- |\n  x\n- >-\n  y\n",
    "l:\n  - enc: |\n      -----BEGIN-----\n      abc\n      -----END-----\n    recipient: r\n",
    // Line endings.
    "a: 1\r\nb:\r\n  c: 2 # x\r\n# y\r\n",
    "a: |\r\n  x\r\n  y\r\nb: 1\r\n",
    "a:\r\n-\r\n- 2\r\n",
    // Documents.
    "---\na: 1\n",
    "--- # c\na: 1\n...\n",
    "a: 1\n---\nb: 2\n",
    "---\na: 1\n...\n---\nb: 2\n...\n# trailing\n",
    "# before\n---\na: 1\n",
    "a: 1\n...\n# after\n",
    "  a: 1\n  b: 2\n",
    // Empty documents, as in manifests that end with `---`.
    "a: 1\n---\n",
    "a: 1\n--- # c\n\n# d\n---\nb: 1\n",
    "a: 1\n---\n# c\n...\n# e\n",
    "a: 1\n---\n# c",
    "---\n---\na: 1\n",
    "---\n...\n---\na: 1\n",
];

/// Inputs the fast path must leave to granit.
pub(crate) const DECLINED: &[&str] = &[
    "\u{feff}a: 1\n",
    "a: [1, 2]\n",
    "a: {b: 1}\n",
    "a: &x 1\nb: *x\n",
    "a: !!str 1\n",
    "%YAML 1.2\n---\na: 1\n",
    "? a\n: 1\n",
    "a: b\n  c\n",
    "a: 'multi\n  line'\n",
    "a:\tb\n",
    "a: |2\n   x\n",
    "a: |\n\n  x\n",
    "- a\n",
    "plain\n",
    "",
    "# only a comment\n",
    "a: b: c\n",
    "a : 1\n",
    "a: 1\n...\nb: 2\n",
    "a: 1\rb: 2\n",
];

#[test]
fn hand_written_inputs_agree() {
    for source in ACCEPTED {
        assert!(check(source), "the fast path declined {source:?}");
    }
    for source in DECLINED {
        assert!(!check(source), "the fast path read {source:?}");
    }
}

/// Inputs that may go either way, but must agree with granit when read.
#[test]
fn faulty_and_odd_inputs_agree() {
    let odd = [
        "a: 1\na: 2\n",
        "a: 123456789012345678901234567890\n",
        "1: a\n",
        "null: a\n",
        "a:\n  - 1\n - 2\n",
        "a:\n  b: 1\n c: 2\n",
        "- - a\n  - b\n",
        "a: 'unterminated\n",
        "a: \"bad \\q escape\"\n",
        "a: |\n",
        "a: |\nb: 1\n",
        "a:\n  b: |\n  c: 1\n",
        "---\n",
        "a: -\n",
        "a: \"x\"y\n",
        "a: 'x'#c\n",
        "a: x\n  # c\n  d: e\n",
        "sops:\n  version: 3\na: 1\n",
        "a: 1\n  \n",
        "...\n",
        "a:\n- x\n  y: 1\n",
        "a:\n  - x\n  b: 1\n",
    ];
    for source in odd {
        check(source);
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

fn check_files(dir: &Path) -> usize {
    let mut files = Vec::new();
    yaml_files(dir, &mut files);
    files.sort();
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        // Each file whole, and cut short at every line (what a truncated download looks like).
        check(&text);
        let mut at = 0;
        while let Some(n) = text[at..].find('\n') {
            at += n + 1;
            check(&text[..at]);
            check(&text[..at - 1]);
        }
    }
    files.len()
}

#[test]
fn project_test_data_agrees() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    assert!(check_files(&data) > 0, "no YAML under {}", data.display());
}

#[test]
fn sops_vectors_agree() {
    let Some(dir) = std::env::var_os("VEIL_SOPS_VECTORS") else {
        eprintln!("note: VEIL_SOPS_VECTORS is not set; the sops vectors are not checked");
        return;
    };
    let count = check_files(Path::new(&dir));
    assert!(count > 0, "no YAML in VEIL_SOPS_VECTORS");
}

/// The benchmark corpus, from its generator when it is at hand (next to the vectors), small.
#[test]
fn benchmark_corpus_agrees() {
    let script = std::env::var_os("VEIL_SOPS_VECTORS")
        .map(|v| Path::new(&v).join("../../bench/gen_corpus.py"))
        .filter(|p| p.exists());
    let Some(script) = script else {
        eprintln!(
            "note: gen_corpus.py not found next to VEIL_SOPS_VECTORS; using the inline sample"
        );
        assert!(check(&corpus_sample(40)));
        return;
    };
    for n in [1, 10, 100, 1000] {
        let output = std::process::Command::new("python3")
            .arg(&script)
            .arg(n.to_string())
            .arg("yaml")
            .output();
        let Some(output) = output.ok().filter(|o| o.status.success()) else {
            eprintln!(
                "note: cannot run {}; using the inline sample",
                script.display()
            );
            assert!(check(&corpus_sample(40)));
            return;
        };
        let text = String::from_utf8(output.stdout).expect("utf-8 corpus");
        assert!(check(&text), "the fast path declined the {n}-value corpus");
    }
}

/// The corpus generator's shape: services, environments, keys with mixed values.
pub(crate) fn corpus_sample(values: usize) -> String {
    let mut text = String::new();
    let mut rng = Rng(7);
    let mut count = 0;
    let mut service = 0;
    while count < values {
        text.push_str(&format!("service_{service}:\n"));
        for env in ["dev", "staging", "prod"] {
            text.push_str(&format!("  {env}:\n"));
            for k in 0..10 {
                let value = match rng.below(4) {
                    0 => rng.below(1 << 31).to_string(),
                    1 => (rng.below(2) == 0).to_string(),
                    2 => format!(
                        "postgres://user:{:032x}@db-{service}.internal:5432/app",
                        rng.0
                    ),
                    _ => format!("{:016x}{:016x}", rng.next(), rng.next()),
                };
                text.push_str(&format!("    key_{k}: {value}\n"));
                count += 1;
            }
        }
        service += 1;
    }
    text
}

/// xorshift64: deterministic, so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Values the fast path reads, and (`WILD_*`) ones it leaves to granit or that are not YAML.
const VALUES: &[&str] = &[
    "a",
    "1",
    "-1",
    "x y",
    "true",
    "null",
    "~",
    "'q'",
    "'it''s'",
    "\"d\"",
    "\"e\\tx\"",
    "\"u\\u00e9\"",
    "é",
    "a#b",
    "http://h:1/p",
    "a:b",
    "",
    "-x",
    "--- x",
    "'#'",
    "\"#\"",
    "\"a: b\"",
    "0x1F",
    "1e3",
    "ü ü",
    "[]",
    "{}",
    "|",
    ">",
    "|-",
    ">+",
    "|+",
    ">-",
    "| # h",
];
const WILD_VALUES: &[&str] = &[
    "x: y", "-", "- x", "[1]", "{a: 1}", "&a x", "*a", "!t x", "'un", "\"un", "?", ":x", "...",
    "#", "'a'#c", "\"a\" x", "%x", "@x", "`x", "|2", "[]x", "\"\\q\"",
];
const KEYS: &[&str] = &[
    "a", "b", "key", "1", "true", "'q k'", "\"d k\"", "é", "a b", "-k", "<<", "a#b", "sops", "c",
    "d",
];
const WILD_KEYS: &[&str] = &["null", "?k", "k ", "x:y", "\"\"", "''", "[k]", "&a k", "*a"];

/// A random block collection at `indent`, `depth` levels down.
fn random_block(rng: &mut Rng, out: &mut String, indent: usize, depth: usize, nl: &str) {
    let wild = rng.below(20) == 0;
    let seq = depth > 0 && rng.below(3) == 0;
    for _ in 0..1 + rng.below(4) {
        match rng.below(8) {
            0 => {
                out.push_str(&" ".repeat(rng.below(indent as u64 + 3) as usize));
                out.push_str("# c");
                out.push_str(nl);
            }
            1 => out.push_str(nl),
            2 => {
                out.push_str("  ");
                out.push_str(nl);
            }
            _ => {}
        }
        out.push_str(&" ".repeat(indent));
        if seq {
            out.push_str(rng.pick(&["- ", "- ", "-  ", "-"]));
            if rng.below(4) == 0 {
                out.push_str("- ");
            }
        }
        let entry = !seq || rng.below(2) == 0;
        if entry {
            out.push_str(rng.pick(if wild { WILD_KEYS } else { KEYS }));
            out.push(':');
        }
        if depth < 4 && rng.below(3) == 0 {
            if rng.below(4) == 0 {
                out.push_str(" # e");
            }
            out.push_str(nl);
            let steps: &[&str] = if wild {
                &["2", "4", "1", "0", "3"]
            } else {
                &["2", "2", "4", "1", "3"]
            };
            let step: usize = rng.pick(steps).parse().unwrap_or(2);
            let nested = indent + step + if seq { 2 } else { 0 };
            random_block(rng, out, nested, depth + 1, nl);
            continue;
        }
        let value = rng.pick(if wild { WILD_VALUES } else { VALUES });
        if entry || !value.is_empty() {
            out.push(' ');
        }
        out.push_str(value);
        if value.starts_with(['|', '>']) {
            out.push_str(nl);
            let content = indent + 1 + rng.below(3) as usize + if seq { 2 } else { 0 };
            for _ in 0..1 + rng.below(4) {
                match rng.below(6) {
                    0 => {
                        out.push_str(nl);
                        continue;
                    }
                    1 => out.push_str(&" ".repeat(content + 1)),
                    _ => out.push_str(&" ".repeat(content)),
                }
                out.push_str(rng.pick(&["text", "x y", "a  b", "# t", "more"]));
                out.push_str(nl);
            }
            if rng.below(3) == 0 {
                out.push_str(nl);
            }
            continue;
        }
        match rng.below(6) {
            0 => out.push_str(" # c"),
            1 => out.push_str("  #c "),
            2 => out.push(' '),
            _ => {}
        }
        out.push_str(nl);
    }
}

fn random_stream(rng: &mut Rng) -> String {
    let nl = if rng.below(10) == 0 { "\r\n" } else { "\n" };
    let mut text = String::new();
    match rng.below(8) {
        0 => text.push_str("# top"),
        1 => text.push_str("---"),
        2 => text.push_str("--- # d"),
        _ => {}
    }
    if !text.is_empty() {
        text.push_str(nl);
    }
    random_block(rng, &mut text, 0, 0, nl);
    match rng.below(8) {
        4 => {
            text.push_str("---");
            text.push_str(nl);
        }
        5 => {
            text.push_str("---");
            text.push_str(nl);
            text.push_str("# c");
            text.push_str(nl);
            text.push_str(if rng.below(2) == 0 { "..." } else { "---" });
            text.push_str(nl);
            if rng.below(2) == 0 {
                random_block(rng, &mut text, 0, 0, nl);
            }
        }
        0 => {
            text.push_str("---");
            text.push_str(nl);
            random_block(rng, &mut text, 0, 0, nl);
        }
        1 => {
            text.push_str("...");
            text.push_str(nl);
        }
        2 => {
            text.push_str("# end");
            text.push_str(nl);
        }
        3 => {
            text.push_str("...");
            text.push_str(nl);
            text.push_str("# after");
        }
        _ => {}
    }
    if rng.below(5) == 0 {
        while text.ends_with(['\n', '\r']) {
            text.pop();
        }
    }
    if rng.below(7) == 0 {
        text.push_str("  ");
    }
    text
}

#[test]
fn random_documents_agree() {
    // More with VEIL_YAML_FUZZ=<count> (and another seed with VEIL_YAML_FUZZ_SEED).
    let count = std::env::var("VEIL_YAML_FUZZ")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("VEIL_YAML_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut accepted = 0;
    for _ in 0..count {
        if check(&random_stream(&mut rng)) {
            accepted += 1;
        }
    }
    // The generator mostly writes what the fast path reads; a collapse would mean it declines
    // far more than it should.
    assert!(
        accepted * 4 > count,
        "the fast path read only {accepted} of {count}"
    );
}
