//! Inputs of the fuzzer: real-shaped seeds and a seeded, deterministic mutator over them.
//!
//! Seeds are the generator's output (every table, Event Hubs bodies and bare records, with its
//! quirks and its broken records) plus a few hand-written edge shapes. A mutated input is a seed
//! parsed into [`J`] (a JSON tree that keeps raw number and string text, so it can hold what no
//! `serde_json::Value` can: duplicate keys, lone surrogate escapes, 400-digit numbers), changed
//! one to four times (wrong types, category tricks, deep nesting, huge values, odd unicode,
//! duplicate keys, `records` not an array, ...), written back, and then sometimes hit at the
//! byte level (bit flips, truncation, splices, invalid UTF-8).
//!
//! The same seed gives the same inputs, in the same order, on every machine.

use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
use rand::{Rng, SeedableRng, rngs::SmallRng, seq::IndexedRandom};
use serde_json::Value;

/// A JSON value with its scalars kept as raw text.
#[derive(Debug, Clone)]
pub enum J {
    /// A number, literal, or anything else written as is (`null`, `true`, `1e400`).
    Raw(String),
    /// A string: the text between the quotes, escapes included, written as is.
    Str(String),
    Arr(Vec<J>),
    /// Keys are raw string contents too; duplicates are allowed.
    Obj(Vec<(String, J)>),
}

impl J {
    fn from_value(v: &Value) -> Self {
        match v {
            Value::Null => Self::Raw("null".into()),
            Value::Bool(b) => Self::Raw(b.to_string()),
            Value::Number(n) => Self::Raw(n.to_string()),
            Value::String(s) => Self::Str(escape(s)),
            Value::Array(a) => Self::Arr(a.iter().map(Self::from_value).collect()),
            Value::Object(o) => Self::Obj(o.iter().map(|(k, v)| (escape(k), Self::from_value(v))).collect()),
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Raw(r) => out.extend_from_slice(r.as_bytes()),
            Self::Str(s) => {
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            }
            Self::Arr(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write(out);
                }
                out.push(b']');
            }
            Self::Obj(o) => {
                out.push(b'{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(b"\":");
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }

    /// Nodes in this tree (itself included).
    fn size(&self) -> usize {
        1 + match self {
            Self::Arr(a) => a.iter().map(Self::size).sum(),
            Self::Obj(o) => o.iter().map(|(_, v)| v.size()).sum(),
            _ => 0,
        }
    }

    /// The `n`-th node in pre-order.
    fn nth(&mut self, n: usize) -> &mut J {
        if n == 0 {
            return self;
        }
        let mut n = n - 1;
        let children: Vec<&mut J> = match self {
            Self::Arr(a) => a.iter_mut().collect(),
            Self::Obj(o) => o.iter_mut().map(|(_, v)| v).collect(),
            _ => unreachable!("n < size"),
        };
        for c in children {
            let s = c.size();
            if n < s {
                return c.nth(n);
            }
            n -= s;
        }
        unreachable!("n < size")
    }

    fn random_node(&mut self, rng: &mut SmallRng) -> &mut J {
        let n = rng.random_range(0..self.size());
        self.nth(n)
    }

    /// Pre-order indices (from `base`) of the objects of the tree that have a key `key`.
    fn objects_with(&self, key: &str, base: usize, out: &mut Vec<usize>) {
        if let Self::Obj(o) = self
            && o.iter().any(|(k, _)| k == key)
        {
            out.push(base);
        }
        let children: Vec<&J> = match self {
            Self::Obj(o) => o.iter().map(|(_, v)| v).collect(),
            Self::Arr(a) => a.iter().collect(),
            Self::Raw(_) | Self::Str(_) => Vec::new(),
        };
        let mut next = base + 1;
        for child in children {
            child.objects_with(key, next, out);
            next += child.size();
        }
    }

    /// The entries of a random object of the tree holding `key`, if any.
    fn random_object_with(&mut self, key: &str, rng: &mut SmallRng) -> Option<&mut Vec<(String, J)>> {
        let mut found = Vec::new();
        self.objects_with(key, 0, &mut found);
        let n = *found.choose(rng)?;
        match self.nth(n) {
            Self::Obj(o) => Some(o),
            _ => None,
        }
    }
}

/// The text between the quotes of `s` as a JSON string.
fn escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("a string serialises");
    quoted[1..quoted.len() - 1].to_string()
}

/// The seeds: one message (or bare record) each.
pub fn seeds(catalog: &Catalog, seed: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, (envelope, per_message)) in [(true, 1), (true, 4), (false, 1)].into_iter().enumerate() {
        let options = GenOptions {
            seed: seed.wrapping_add(i as u64),
            target: Target::Records(600),
            envelope,
            records_per_message: per_message,
            quirks: 0.5,
            bad: 0.1,
            ..GenOptions::default()
        };
        let mut text = Vec::new();
        defender_gen::generate(catalog, &options, &mut text).expect("the generator writes to memory");
        out.extend(text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
    }
    for s in HAND_WRITTEN {
        out.push(s.as_bytes().to_vec());
    }
    out
}

/// Edge shapes the generator does not write (DESIGN.md §2 and §3).
const HAND_WRITTEN: &[&str] = &[
    r#"{"records":[]}"#,
    r#"{}"#,
    r#"[]"#,
    r#"null"#,
    r#"{"records":{}}"#,
    r#"{"records":[{},[],null,1,"x"]}"#,
    r#"{"records":[{"category":"AdvancedHunting-DeviceInfo"}]}"#,
    r#"{"time":"2026-11-20T10:59:00Z","category":"AdvancedHunting-DeviceInfo","properties":{"Timestamp":"2026-11-20T10:30:00.1234567Z","ReportId":639199803770463703,"MachineGroup":"g","OSBuild":"-","IsAzureADJoined":"true","LoggedOnUsers":"[{\"UserName\":\"a\"}]"}}"#,
    r#"{"time":"2026-11-20T10:59:00Z","category":"AdvancedHunting-DeviceNetworkEvents","properties":{"Timestamp":"2026-11-20T10:30:00Z","RemotePort":"","LocalPort":"-","AdditionalFields":{"a":[1,2]}}}"#,
    r#"{"time":"2026-11-20T10:59:00Z","category":"AdvancedHunting-BrandNewTable","properties":{"Timestamp":"2026-11-20T10:30:00Z","X":1}}"#,
    r#"{"records":[{"time":"2026-11-20T10:59:00Z","category":"DeviceInfo","properties":{"Timestamp":"2026-11-20T10:30:00Z"}}],"records":[]}"#,
];

/// Mutates seeds into inputs.
pub struct Mutator {
    rng: SmallRng,
    seeds: Vec<Vec<u8>>,
    /// Table names of the catalog, for category tricks.
    tables: Vec<String>,
}

impl Mutator {
    pub fn new(catalog: &Catalog, seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            seeds: seeds(catalog, seed),
            tables: catalog.tables().iter().map(|t| t.table.clone()).collect(),
        }
    }

    /// The next input.
    pub fn next_input(&mut self) -> Vec<u8> {
        let seed = self.seeds.choose(&mut self.rng).expect("seeds are never empty").clone();
        // A few inputs stay as the seed: the real shapes must pass untouched too.
        if self.rng.random_bool(0.05) {
            return seed;
        }
        let mut bytes = match serde_json::from_slice::<Value>(&seed) {
            Ok(v) if self.rng.random_bool(0.9) => {
                let mut tree = J::from_value(&v);
                for _ in 0..self.rng.random_range(1..=4) {
                    self.mutate_tree(&mut tree);
                }
                let mut out = Vec::with_capacity(seed.len() + 64);
                tree.write(&mut out);
                out
            }
            _ => seed,
        };
        if self.rng.random_bool(0.3) {
            for _ in 0..self.rng.random_range(1..=3) {
                self.mutate_bytes(&mut bytes);
            }
        }
        bytes
    }

    fn mutate_tree(&mut self, tree: &mut J) {
        let rng = &mut self.rng;
        match rng.random_range(0..100) {
            0..20 => {
                // A wrong type, an odd string or number, in a random place (usually a column).
                let value = odd_value(rng);
                match tree.random_object_with("Timestamp", rng).filter(|_| rng.random_bool(0.7)) {
                    Some(props) => {
                        let i = rng.random_range(0..props.len());
                        props[i].1 = value;
                    }
                    None => *tree.random_node(rng) = value,
                }
            }
            20..32 => {
                // Category tricks.
                let category = self.category();
                if let Some(rec) = tree.random_object_with("category", &mut self.rng) {
                    for (k, v) in rec.iter_mut() {
                        if k == "category" {
                            *v = category;
                            break;
                        }
                    }
                }
            }
            32..40 => {
                // Odd event and envelope times.
                let key = if rng.random_bool(0.5) { "Timestamp" } else { "time" };
                let t = J::Str((*ODD_TIMES.choose(rng).expect("not empty")).into());
                if let Some(o) = tree.random_object_with(key, rng) {
                    for (k, v) in o.iter_mut() {
                        if k == key {
                            *v = t;
                            break;
                        }
                    }
                }
            }
            40..50 => {
                // Duplicate keys: the same key again, with another value or the same.
                let node = tree.random_node(rng);
                if let J::Obj(o) = node
                    && !o.is_empty()
                {
                    let i = rng.random_range(0..o.len());
                    let (k, v) = o[i].clone();
                    let v = if rng.random_bool(0.5) { v } else { odd_value(rng) };
                    let at = rng.random_range(0..=o.len());
                    o.insert(at, (k, v));
                }
            }
            50..56 => {
                // Keys removed, unknown keys added, objects emptied.
                let node = tree.random_node(rng);
                if let J::Obj(o) = node {
                    match rng.random_range(0..3) {
                        0 if !o.is_empty() => {
                            o.remove(rng.random_range(0..o.len()));
                        }
                        1 => o.push((odd_key(rng), odd_value(rng))),
                        _ => o.clear(),
                    }
                }
            }
            56..62 => {
                // `records` not an array, or an array of odd elements.
                let value = match rng.random_range(0..6) {
                    0 => J::Obj(Vec::new()),
                    1 => J::Raw("1".into()),
                    2 => J::Str("records".into()),
                    3 => J::Raw("null".into()),
                    4 => J::Arr(Vec::new()),
                    _ => J::Arr((0..rng.random_range(1..6)).map(|_| odd_value(rng)).collect()),
                };
                match tree {
                    J::Obj(o) if o.iter().any(|(k, _)| k == "records") => {
                        o.iter_mut().filter(|(k, _)| k == "records").for_each(|(_, v)| *v = value.clone());
                    }
                    J::Obj(o) => o.push(("records".into(), value)),
                    other => *other = J::Obj(vec![("records".into(), value)]),
                }
            }
            62..68 => {
                // Envelope ↔ bare record, and messages of many records.
                *tree = match std::mem::replace(tree, J::Raw("null".into())) {
                    J::Obj(o) if o.iter().any(|(k, _)| k == "records") => {
                        match o.into_iter().find(|(k, _)| k == "records").map(|(_, v)| v) {
                            Some(J::Arr(mut a)) if !a.is_empty() => a.swap_remove(0),
                            Some(other) => other,
                            None => J::Obj(Vec::new()),
                        }
                    }
                    rec => {
                        let n = *[1usize, 2, 50, 500].choose(rng).expect("not empty");
                        J::Obj(vec![("records".into(), J::Arr(vec![rec; n]))])
                    }
                };
            }
            68..74 => {
                // Deep nesting, around the parser's depth limit (1024) and far past it.
                let depth = *[10, 127, 129, 1000, 1022, 1023, 1024, 1025, 10_000].choose(rng).expect("not empty");
                let open = if rng.random_bool(0.5) { "[" } else { "{\"a\":" };
                let close = if open == "[" { "]" } else { "}" };
                let text = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                *tree.random_node(rng) = J::Raw(text);
            }
            74..78 => {
                // Huge values: multi-MB strings, long numbers.
                let value = match rng.random_range(0..5) {
                    0 => J::Str("A".repeat(rng.random_range(60_000..70_000))),
                    1 => J::Str("é".repeat(rng.random_range(32_000..34_000))),
                    2 => J::Str("x".repeat(rng.random_range(1 << 20..3 << 20))),
                    3 => J::Str("\\u00e9\\n\\\"".repeat(rng.random_range(10_000..20_000))),
                    _ => J::Raw("9".repeat(rng.random_range(20..400))),
                };
                match tree.random_object_with("Timestamp", rng) {
                    Some(props) => {
                        let i = rng.random_range(0..props.len());
                        props[i].1 = value;
                    }
                    None => *tree.random_node(rng) = value,
                }
            }
            78..90 => {
                // Odd unicode inside a string.
                let node = tree.random_node(rng);
                let piece = *ODD_UNICODE.choose(rng).expect("not empty");
                match node {
                    J::Str(s) => {
                        let mut at = rng.random_range(0..=s.len());
                        while !s.is_char_boundary(at) {
                            at -= 1;
                        }
                        s.insert_str(at, piece);
                    }
                    J::Obj(o) if !o.is_empty() => {
                        let i = rng.random_range(0..o.len());
                        o[i].0.push_str(piece);
                    }
                    other => *other = J::Str(piece.into()),
                }
            }
            _ => {
                // Many columns at once: every value of an object replaced.
                if let Some(props) = tree.random_object_with("Timestamp", rng) {
                    for (k, v) in props.iter_mut() {
                        if k != "Timestamp" {
                            *v = odd_value(rng);
                        }
                    }
                }
            }
        }
    }

    fn category(&mut self) -> J {
        let rng = &mut self.rng;
        let table = self.tables.choose(rng).expect("the catalog has tables").clone();
        let text = match rng.random_range(0..10) {
            0 => table,
            1 => format!("AdvancedHunting-{}", table.to_ascii_lowercase()),
            2 => format!("ADVANCEDHUNTING-{table}"),
            3 => format!("AdvancedHunting-{}", "T".repeat(300)),
            4 => format!("AdvancedHunting-{}", ODD_UNICODE.choose(rng).expect("not empty")),
            5 => (*[
                "AdvancedHunting-",
                "",
                "AdvancedHunting-unknown",
                "AdvancedHunting-_OverflowUnknownTables",
                "AdvancedHunting-../../etc",
                "AdvancedHunting-a/b",
                "AdvancedHunting-Device Info",
                "AdvancedHunting-_Other-x-0000000000000000",
                "AdvancedHunting-table=X",
                "AdvancedHunting-\\u0000",
            ]
            .choose(rng)
            .expect("not empty"))
            .to_string(),
            // Many distinct new tables: past the bound of unknown table names.
            6 | 7 => format!("AdvancedHunting-New{}", rng.random_range(0..300)),
            _ => format!("AdvancedHunting-{table}"),
        };
        J::Str(text)
    }

    fn mutate_bytes(&mut self, bytes: &mut Vec<u8>) {
        let rng = &mut self.rng;
        if bytes.is_empty() {
            bytes.push(b'{');
            return;
        }
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..7) {
            0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 => bytes[at] = *INTERESTING_BYTES.choose(rng).expect("not empty"),
            2 => bytes.truncate(at),
            3 => {
                let end = rng.random_range(at..=bytes.len().min(at + 64));
                bytes.drain(at..end);
            }
            4 => {
                let end = rng.random_range(at..=bytes.len().min(at + 64));
                let copy = bytes[at..end].to_vec();
                let to = rng.random_range(0..=bytes.len());
                bytes.splice(to..to, copy);
            }
            5 => {
                // A piece of another seed.
                let other = self.seeds.choose(rng).expect("not empty");
                let from = rng.random_range(0..other.len().max(1));
                let piece = other[from.min(other.len())..other.len().min(from + 200)].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => {
                // Invalid UTF-8 inside a string.
                let piece: &[u8] = INVALID_UTF8.choose(rng).expect("not empty");
                let quote = bytes[at..].iter().position(|&b| b == b'"').map_or(at, |p| at + p + 1);
                bytes.splice(quote..quote, piece.iter().copied());
            }
        }
    }
}

/// A value of any type, most of them wrong for the column they land in.
fn odd_value(rng: &mut SmallRng) -> J {
    let raw = |s: &str| J::Raw(s.to_string());
    match rng.random_range(0..24) {
        0 => raw("null"),
        1 => raw("true"),
        2 => raw("0"),
        3 => raw("-1"),
        4 => raw("1.5"),
        5 => raw("9223372036854775808"),
        6 => raw("-9223372036854775809"),
        7 => raw("18446744073709551616"),
        8 => raw("1e308"),
        9 => raw("1e400"),
        10 => raw("-0.0"),
        11 => raw("2147483648"),
        12 => J::Str(String::new()),
        13 => J::Str("-".into()),
        14 => J::Str("443".into()),
        15 => J::Str("TRUE".into()),
        16 => J::Arr(vec![raw("1"), J::Str("x".into())]),
        17 => J::Obj(vec![("a".into(), J::Obj(Vec::new()))]),
        18 => J::Arr(Vec::new()),
        19 => J::Obj(Vec::new()),
        20 => J::Str((*ODD_TIMES.choose(rng).expect("not empty")).into()),
        21 => J::Str((*ODD_UNICODE.choose(rng).expect("not empty")).into()),
        22 => J::Str("{\"a\":[1,{\"b\":null}]}".replace('"', "\\\"")),
        _ => raw(&format!("{}", rng.random::<i64>())),
    }
}

fn odd_key(rng: &mut SmallRng) -> String {
    (*[
        "",
        "_Extra",
        "_RecordId",
        "TimeGenerated",
        "TenantId",
        "Type",
        "envelope.time",
        "a\\u0000b",
        "\\ud800",
        "Ünïcødé",
        "records",
        "category",
        "properties",
    ]
    .choose(rng)
    .expect("not empty"))
    .to_string()
}

/// Datetime texts at the edges: of the fast parser, of chrono, of i64 nanoseconds, of the
/// archive's date partitions and of the Sentinel encoder's 4-digit years.
const ODD_TIMES: &[&str] = &[
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "1677-09-21T00:12:43.145224192Z",
    "1677-09-21T00:12:43.145224191Z",
    "1969-12-31T23:59:59.9999999Z",
    "2262-04-11T23:47:16.854775807Z",
    "2262-04-11T23:47:16.854775808Z",
    "9999-12-31T23:59:59.9999999Z",
    "+275760-09-13T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "2024-02-30T00:00:00Z",
    "2026-11-20T10:30:00.1234567+14:00",
    "2026-11-20T10:30:00.1234567-12:00",
    "2026-11-20 10:30:00",
    "2026-11-20T10:30:00.12345678901234567890Z",
    "2026-11-20T10:30:00.Z",
    "2026-11-20T10:30:00",
    "2026-11-20T24:00:00Z",
    "2026-11-20",
    "",
    "-",
    "1795132800",
    "2026-11-20T10:30:00Zé",
    "２０２６-11-20T10:30:00Z",
];

/// String contents (already escaped for JSON where they use escapes).
const ODD_UNICODE: &[&str] = &[
    "\\ud800",
    "\\udc00",
    "\\ud800\\udc00",
    "\\udbff\\udfff",
    "\\ud800x",
    "\\u0000",
    "\u{202e}evil\u{202c}",
    "\u{feff}",
    "\u{2028}\u{2029}",
    "e\u{301}\u{301}\u{301}",
    "😀👩‍👩‍👧",
    "\u{10ffff}",
    "ǅǈ",
    "İı",
    "ß",
    "\\\\",
    "\\\"",
    "\\/",
    "\\b\\f\\n\\r\\t",
    "\\u001f",
    "\u{7f}",
    "Ω≈ç√∫",
];

const INTERESTING_BYTES: &[u8] = b"\0\"\\{}[],:\n\x7f\xff\xc0\x80 0-e";

const INVALID_UTF8: &[&[u8]] =
    &[b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80", b"\xfe\xfe", b"\0"];
