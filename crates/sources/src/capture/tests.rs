//! The reader against a small writer of Capture's exact schema (the integration tests use
//! fastavro as the independent writer).

use std::io::Write;

use super::*;

const SCHEMA: &str = r#"{"type":"record","name":"EventData","namespace":"Microsoft.ServiceBus.Messaging","fields":[
  {"name":"SequenceNumber","type":"long"},{"name":"Offset","type":"string"},
  {"name":"EnqueuedTimeUtc","type":"string"},
  {"name":"SystemProperties","type":{"type":"map","values":["long","double","string","bytes"]}},
  {"name":"Properties","type":{"type":"map","values":["long","double","string","bytes","null"]}},
  {"name":"Body","type":["null","bytes"]}]}"#;

fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    long(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn event(seq: i64, body: Option<&[u8]>) -> Vec<u8> {
    let mut r = Vec::new();
    long(&mut r, seq);
    bytes(&mut r, seq.to_string().as_bytes());
    bytes(&mut r, b"2024-05-01T10:00:00Z");
    // SystemProperties: one entry (string branch), Properties: empty.
    long(&mut r, 1);
    bytes(&mut r, b"x-opt-enqueued-time");
    long(&mut r, 2);
    bytes(&mut r, b"now");
    long(&mut r, 0);
    long(&mut r, 0);
    match body {
        Some(b) => {
            long(&mut r, 1);
            bytes(&mut r, b);
        }
        None => long(&mut r, 0),
    }
    r
}

const SYNC: [u8; 16] = *b"0123456789abcdef";

fn file(codec: &str, blocks: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    long(&mut f, 2);
    bytes(&mut f, b"avro.schema");
    bytes(&mut f, SCHEMA.as_bytes());
    bytes(&mut f, b"avro.codec");
    bytes(&mut f, codec.as_bytes());
    long(&mut f, 0);
    f.extend_from_slice(&SYNC);
    for records in blocks {
        let plain: Vec<u8> = records.concat();
        let data = match codec {
            "deflate" => {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&plain).unwrap();
                e.finish().unwrap()
            }
            "snappy" => {
                let mut d = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
                d.extend_from_slice(&crc32fast::hash(&plain).to_be_bytes());
                d
            }
            _ => plain,
        };
        long(&mut f, records.len() as i64);
        bytes(&mut f, &data);
        f.extend_from_slice(&SYNC);
    }
    f
}

fn read_all(data: Vec<u8>) -> Vec<Item> {
    let mut r = CaptureReader::new(Bytes::from(data));
    let mut out = Vec::new();
    loop {
        let items = r.next_items(10);
        if items.is_empty() {
            return out;
        }
        out.extend(items);
    }
}

fn messages(items: &[Item]) -> Vec<(i64, Vec<u8>)> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Message { offset, body, .. } => Some((*offset, body.to_vec())),
            Item::Unreadable { .. } => None,
        })
        .collect()
}

fn body(n: i64) -> Vec<u8> {
    format!("{{\"records\":[{{\"n\":{n}}}]}}").into_bytes()
}

#[test]
fn reads_bodies_in_order_with_ordinals_for_every_codec() {
    for codec in ["null", "deflate", "snappy"] {
        let blocks = vec![vec![event(10, Some(&body(1))), event(11, Some(&body(2)))], vec![event(12, Some(&body(3)))]];
        let items = read_all(file(codec, &blocks));
        assert_eq!(messages(&items), vec![(1, body(1)), (2, body(2)), (3, body(3))], "{codec}");
        assert!(
            matches!(&items[2], Item::Message { sequence_number: Some(12), event_offset: Some(o), .. } if o == "12"),
            "{items:?}"
        );
    }
}

#[test]
fn an_empty_file_has_no_items() {
    assert!(read_all(file("deflate", &[])).is_empty());
}

#[test]
fn a_file_that_is_not_avro_is_one_unreadable_item() {
    let items = read_all(b"{\"records\":[]}".to_vec());
    assert!(
        matches!(&items[..], [Item::Unreadable { offset: 1, detail, .. }] if detail.contains("magic")),
        "{items:?}"
    );
    let items = read_all(file("zstandard", &[vec![event(1, Some(&body(1)))]]));
    assert!(matches!(&items[..], [Item::Unreadable { detail, .. }] if detail.contains("zstandard")), "{items:?}");
}

#[test]
fn a_bad_sync_marker_skips_to_the_next_block() {
    let blocks = vec![vec![event(1, Some(&body(1)))], vec![event(2, Some(&body(2)))], vec![event(3, Some(&body(3)))]];
    let mut f = file("null", &blocks);
    // Break the sync marker after the first block.
    let first_sync = f.windows(16).enumerate().filter(|(_, w)| *w == SYNC).nth(1).unwrap().0;
    f[first_sync] ^= 0xff;
    let items = read_all(f);
    assert!(
        matches!(&items[0], Item::Unreadable { offset: 1, detail, .. } if detail.contains("bad sync marker")),
        "{items:?}"
    );
    assert_eq!(messages(&items), vec![(2, body(2)), (3, body(3))]);
}

#[test]
fn a_truncated_file_keeps_what_came_before() {
    let blocks = vec![vec![event(1, Some(&body(1)))], vec![event(2, Some(&body(2)))]];
    let mut f = file("deflate", &blocks);
    f.truncate(f.len() - 20);
    let items = read_all(f);
    assert_eq!(messages(&items), vec![(1, body(1))]);
    assert!(
        matches!(&items[1], Item::Unreadable { offset: 2, detail, .. } if detail.contains("truncated")),
        "{items:?}"
    );
}

#[test]
fn a_record_without_body_and_a_block_that_does_not_inflate_are_unreadable() {
    let f = file("null", &[vec![event(1, None), event(2, Some(&body(2)))]]);
    let items = read_all(f);
    assert!(matches!(&items[0], Item::Unreadable { detail, .. } if detail.contains("no Body")));
    assert_eq!(messages(&items), vec![(2, body(2))]);

    let mut f = file("deflate", &[vec![event(1, Some(&body(1)))], vec![event(2, Some(&body(2)))]]);
    // Garble the first block's deflate stream (just after the header's sync marker + count + size).
    let header_end = f.windows(16).position(|w| w == SYNC).unwrap() + 16;
    for b in &mut f[header_end + 8..header_end + 16] {
        *b = 0xff;
    }
    let items = read_all(f);
    assert!(matches!(&items[0], Item::Unreadable { offset: 1, .. }), "{items:?}");
    assert_eq!(messages(&items), vec![(2, body(2))]);
}

#[test]
fn a_snappy_block_whose_crc_does_not_match_is_unreadable_and_the_next_block_is_read() {
    let mut f = file("snappy", &[vec![event(1, Some(&body(1)))], vec![event(2, Some(&body(2)))]]);
    // The first block's CRC: the 4 bytes before the second sync marker.
    let second_sync = f.windows(16).enumerate().filter(|(_, w)| *w == SYNC).nth(1).unwrap().0;
    f[second_sync - 1] ^= 0x01;
    let items = read_all(f);
    assert!(matches!(&items[0], Item::Unreadable { offset: 1, detail, .. } if detail.contains("CRC-32")), "{items:?}");
    assert_eq!(messages(&items), vec![(2, body(2))]);
}
