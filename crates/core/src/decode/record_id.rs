//! `_RecordId`: a deterministic id of every record, computed from the bytes it arrived as.
//!
//! The id is the xxh3-128 hash, written as 32 lowercase hex digits, of the record's bytes as
//! received, seeded with the xxh3-64 hash of the record's `category` text (for a known table,
//! `AdvancedHunting-<Table>`). The record's bytes are:
//! - in an Event Hubs body `{"records":[...]}`: the element of `records`, from its opening `{`
//!   to its closing `}` inclusive, exactly as in the body (after gzip decoding of a file);
//! - for a bare record (a storage-export line): the line without its terminator and without
//!   leading or trailing ASCII whitespace.
//!
//! So the id is the same on every replay of the same input and for every destination (the
//! archive's `_RecordId`, Sentinel's `RecordId_CF`), whatever the filters project, and two
//! records that differ in any byte get different ids. A record re-sent upstream byte for byte
//! (at-least-once delivery) gets the same id, which is what deduplication needs.
//!
//! When the element boundaries cannot be found by the byte scan (a body whose keys use JSON
//! escapes, say), the hash falls back to the record's compact JSON as the decoder re-writes it:
//! still deterministic for the same input.

use std::ops::Range;

use xxhash_rust::xxh3::{xxh3_64, xxh3_128_with_seed};

/// Length of the hex id.
pub const RECORD_ID_LEN: usize = 32;

/// The id of `bytes`, a record of `category` (see the module documentation).
pub fn record_id(category: &str, bytes: &[u8]) -> [u8; RECORD_ID_LEN] {
    let h = xxh3_128_with_seed(bytes, xxh3_64(category.as_bytes()));
    let mut out = [0u8; RECORD_ID_LEN];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in h.to_be_bytes().iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 15)];
    }
    out
}

/// The bytes of a bare record: `raw` without surrounding ASCII whitespace.
pub fn bare_record(raw: &[u8]) -> &[u8] {
    raw.trim_ascii()
}

/// The byte ranges of the elements of the first `records` key of the JSON object `raw`, when
/// there are exactly `expected` of them; `None` when the scan cannot tell (then the caller falls
/// back). `raw` is JSON that simd-json accepted; the scan never panics on any input.
pub fn record_spans(raw: &[u8], expected: usize) -> Option<Vec<Range<usize>>> {
    let mut spans = Vec::new();
    record_spans_into(raw, expected, &mut spans).then_some(spans)
}

/// [`record_spans`] into `spans` (cleared first; reused by the decoder from message to message):
/// true when it holds exactly `expected` ranges.
pub fn record_spans_into(raw: &[u8], expected: usize, spans: &mut Vec<Range<usize>>) -> bool {
    spans.clear();
    scan_records(raw, expected, spans).is_some()
}

fn scan_records(raw: &[u8], expected: usize, spans: &mut Vec<Range<usize>>) -> Option<()> {
    let mut i = skip_ws(raw, 0);
    if raw.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(raw, i);
        if raw.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(raw, i)?;
        let key = &raw[i + 1..key_end - 1];
        i = skip_ws(raw, key_end);
        if raw.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(raw, i + 1);
        if key == b"records" {
            return array_elements(raw, i, expected, spans);
        }
        if key.contains(&b'\\') {
            // An escaped key might spell `records`: let the caller fall back.
            return None;
        }
        i = skip_ws(raw, value_end(raw, i)?);
        match raw.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn array_elements(raw: &[u8], mut i: usize, expected: usize, spans: &mut Vec<Range<usize>>) -> Option<()> {
    if raw.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(raw, i + 1);
    if raw.get(i) == Some(&b']') {
        return (expected == 0).then_some(());
    }
    loop {
        let end = value_end(raw, i)?;
        spans.push(i..end);
        i = skip_ws(raw, end);
        match raw.get(i) {
            Some(b',') => i = skip_ws(raw, i + 1),
            Some(b']') => break,
            _ => return None,
        }
    }
    (spans.len() == expected).then_some(())
}

fn skip_ws(raw: &[u8], mut i: usize) -> usize {
    while matches!(raw.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `raw[i]` is `"`: the index just past the closing quote.
fn string_end(raw: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let at = j + memchr::memchr2(b'"', b'\\', raw.get(j..)?)?;
        if raw[at] == b'\\' {
            j = at + 2;
        } else {
            return Some(at + 1);
        }
    }
}

/// The index just past the JSON value starting at `raw[i]`.
fn value_end(raw: &[u8], i: usize) -> Option<usize> {
    match *raw.get(i)? {
        b'"' => string_end(raw, i),
        b'{' | b'[' => {
            // Outside strings a record holds few bytes (keys' quotes, numbers, punctuation):
            // step over them one by one and jump over strings.
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *raw.get(j)? {
                    b'"' => j = string_end(raw, j)?,
                    b'{' | b'[' => {
                        depth += 1;
                        j += 1;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        j += 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                    _ => j += 1,
                }
            }
        }
        _ => {
            let mut j = i;
            while !matches!(raw.get(j), None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                j += 1;
            }
            Some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_the_elements_exactly_as_received() {
        let body =
            br#" { "x": {"records": 1, "a": [1, "]"]}, "records" : [ {"a":"}\"{"} ,{"b":[{}]},3 ] , "records": [] } "#;
        let spans = record_spans(body, 3).unwrap();
        let texts: Vec<&[u8]> = spans.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(texts, vec![&br#"{"a":"}\"{"}"#[..], br#"{"b":[{}]}"#, b"3"]);
        assert_eq!(record_spans(body, 2), None, "a count the tape disagrees with is refused");
        assert_eq!(record_spans(br#"{"records":[]}"#, 0), Some(vec![]));
        assert_eq!(record_spans(br#"{"rec\u006frds":[{}],"records":[]}"#, 1), None);
        for broken in [&b""[..], b"[", b"{\"records\":[{\"a\":", b"{\"records\":[1,", b"{\"a\"", b"{\"a\":\"\\"] {
            assert_eq!(record_spans(broken, 1), None, "{}", String::from_utf8_lossy(broken));
        }
    }

    #[test]
    fn ids_depend_on_every_byte_and_the_category() {
        let a = record_id("AdvancedHunting-DeviceInfo", br#"{"a":1}"#);
        assert_eq!(a, record_id("AdvancedHunting-DeviceInfo", br#"{"a":1}"#));
        assert_ne!(a, record_id("AdvancedHunting-DeviceInfo", br#"{"a":2}"#));
        assert_ne!(a, record_id("AdvancedHunting-DeviceEvents", br#"{"a":1}"#));
        assert!(a.iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(bare_record(b" {\"a\":1}\r\n"), b"{\"a\":1}");
    }
}
