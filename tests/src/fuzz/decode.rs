//! The decoder-level check: one input decoded and flushed on its own, then every invariant of
//! the output checked, and every batch of a known table encoded as Sentinel rows.
//!
//! Invariants (DESIGN.md §2, §3; `defender_core::accounting`):
//! - per table, `records_in == decoded + dead-lettered`;
//! - the rows of a table's batches are its `decoded`, the dead letters of a (table, reason) its
//!   counter, and a batch is of an unknown table exactly when its table is counted as one;
//! - the records counted are the records that came in: the length of the first `records`
//!   array, or 1 for anything else (counted by `serde_json`, independently of the decoder's
//!   simd-json; a message simd-json refuses is one `malformed_json` record);
//! - every row has a 32-hex-digit `_RecordId` and a `Timestamp`; `_Extra` and an unknown
//!   table's `_Raw` are valid JSON;
//! - the Sentinel encoder takes every batch and writes one JSON object per row that serde_json
//!   (the local Logs Ingestion server's parser, 128 levels at most) reads.

use std::{collections::BTreeMap, sync::Arc};

use arrow_array::{Array, RecordBatch, cast::AsArray};
use defender_core::{
    Accounting, Catalog, Decoder, DecoderOutput, FlushRule,
    schema::{COL_EXTRA, COL_RAW, COL_RECORD_ID, COL_TIMESTAMP},
};
use defender_sinks::sentinel::{EncodedRows, RowEncoder};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A decoder reused from input to input (as in a partition), with the encoders of its batches.
pub struct DecodeCheck {
    catalog: Arc<Catalog>,
    decoder: Decoder,
    rows: EncodedRows,
}

impl DecodeCheck {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        let decoder = new_decoder(&catalog);
        Self { catalog, decoder, rows: EncodedRows::new() }
    }

    /// A fresh decoder, after a panic left the old one in an unknown state.
    pub fn reset(&mut self) {
        self.decoder = new_decoder(&self.catalog);
    }

    /// Decodes `input` at `offset` as one epoch and checks it; the epoch's accounting.
    pub fn check(&mut self, input: &[u8], offset: i64) -> Result<Accounting, String> {
        self.decoder.decode(input, offset);
        let out = self.decoder.flush().ok_or("flush after a decode returned nothing")?;
        if (out.first_offset, out.last_offset) != (offset, offset) {
            return Err(format!("epoch covers {}..={}, expected {offset}", out.first_offset, out.last_offset));
        }
        check_accounting(&out)?;
        let total: u64 = out.accounting.tables.values().map(|s| s.records_in).sum();
        let malformed = out.dead_letters.iter().any(|d| d.reason.as_str() == "malformed_json");
        let expected = if malformed { Some(1) } else { expected_records(input) };
        if let Some(expected) = expected.filter(|&e| e != total) {
            return Err(format!("{total} records counted, {expected} came in"));
        }
        for b in &out.batches {
            check_batch(&b.table, &b.batch, b.unknown_table)?;
            if !b.unknown_table {
                self.encode(&b.table, &b.batch)?;
            }
        }
        Ok(out.accounting)
    }

    fn encode(&mut self, table: &str, batch: &RecordBatch) -> Result<(), String> {
        let schema = self.catalog.get(table).ok_or_else(|| format!("batch of {table}, not in the catalog"))?;
        let mut encoder = RowEncoder::new(schema, &batch.schema()).map_err(|e| format!("row encoder: {e}"))?;
        self.rows.clear();
        let stats = encoder.encode(batch, &mut self.rows).map_err(|e| format!("sentinel encode of {table}: {e}"))?;
        if stats.rows != batch.num_rows() || self.rows.len() != batch.num_rows() {
            return Err(format!("{table}: {} rows encoded of {}", self.rows.len(), batch.num_rows()));
        }
        for (i, row) in self.rows.iter().enumerate() {
            // As the local Logs Ingestion server reads a body (serde_json, at most 128 levels).
            if !matches!(serde_json::from_slice(row), Ok(serde_json::Value::Object(_))) {
                return Err(format!(
                    "{table}: sentinel row {i} is not a JSON object: {}",
                    String::from_utf8_lossy(row)
                ));
            }
        }
        Ok(())
    }
}

fn new_decoder(catalog: &Catalog) -> Decoder {
    Decoder::new(catalog, "fuzz".into(), 0, FlushRule::default())
}

fn check_accounting(out: &DecoderOutput) -> Result<(), String> {
    let mut rows: BTreeMap<&str, (u64, bool)> = BTreeMap::new();
    for b in &out.batches {
        let e = rows.entry(&b.table).or_insert((0, b.unknown_table));
        e.0 += b.rows() as u64;
        if e.1 != b.unknown_table {
            return Err(format!("{}: batches of a known and of an unknown table", b.table));
        }
    }
    let mut letters: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for d in &out.dead_letters {
        *letters.entry((&d.table, d.reason.as_str())).or_default() += 1;
    }
    for (t, s) in &out.accounting.tables {
        if s.records_in != s.decoded + s.dead_lettered_total() {
            return Err(format!(
                "{t}: {} in, {} decoded, {} dead-lettered",
                s.records_in,
                s.decoded,
                s.dead_lettered_total()
            ));
        }
        let (batch_rows, unknown) = rows.remove(t.as_str()).unwrap_or((0, s.unknown_table));
        if batch_rows != s.decoded || unknown != s.unknown_table {
            return Err(format!(
                "{t}: {batch_rows} rows in batches (unknown table: {unknown}), {} decoded ({})",
                s.decoded, s.unknown_table
            ));
        }
        for (reason, &n) in &s.dead_lettered {
            let got = letters.remove(&(t.as_str(), reason.as_str())).unwrap_or(0);
            if got != n {
                return Err(format!("{t}: {got} dead letters {reason}, {n} counted"));
            }
        }
    }
    if let Some((t, (n, _))) = rows.into_iter().next() {
        return Err(format!("{t}: {n} rows in batches, table not in the accounting"));
    }
    if let Some(((t, r), n)) = letters.into_iter().next() {
        return Err(format!("{t}: {n} dead letters {r} not in the accounting"));
    }
    Ok(())
}

fn check_batch(table: &str, batch: &RecordBatch, unknown: bool) -> Result<(), String> {
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("{table}: no column {name}"));
    let ids = column(COL_RECORD_ID)?;
    let ids = ids.as_string_opt::<i32>().ok_or_else(|| format!("{table}: {COL_RECORD_ID} is not Utf8"))?;
    for i in 0..batch.num_rows() {
        let ok = ids.is_valid(i)
            && ids.value(i).len() == 32
            && ids.value(i).bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(format!("{table}: row {i} has no valid {COL_RECORD_ID}"));
        }
    }
    if column(COL_TIMESTAMP)?.null_count() > 0 {
        return Err(format!("{table}: a row without {COL_TIMESTAMP}"));
    }
    let json_column = if unknown { COL_RAW } else { COL_EXTRA };
    let texts = column(json_column)?;
    let texts = texts.as_string_opt::<i32>().ok_or_else(|| format!("{table}: {json_column} is not Utf8"))?;
    for (i, text) in texts.iter().enumerate() {
        if let Some(text) = text
            && !is_json_object(text.as_bytes())
        {
            return Err(format!("{table}: row {i}: {json_column} is not a JSON object: {text}"));
        }
    }
    Ok(())
}

/// Whether `bytes` is one JSON object (simd-json: its depth limit is 1024, serde_json's 128).
fn is_json_object(bytes: &[u8]) -> bool {
    let mut copy = bytes.to_vec();
    simd_json::to_tape(&mut copy).is_ok_and(|t| matches!(t.0.first(), Some(simd_json::Node::Object { .. })))
}

/// Records in a message as `serde_json` reads it: the length of the first `records` key when
/// it is an array, else 1. `None` when serde_json cannot read it (its depth limit is lower than
/// simd-json's).
pub fn expected_records(input: &[u8]) -> Option<u64> {
    let mut de = serde_json::Deserializer::from_slice(input);
    let n = de.deserialize_any(Message).ok()?;
    de.end().ok()?;
    Some(n)
}

struct Message;

impl<'de> Visitor<'de> for Message {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut records = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "records" && records.is_none() {
                records = Some(map.next_value::<Records>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(records.flatten().unwrap_or(1))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(1)
    }

    fn visit_bool<E>(self, _: bool) -> Result<u64, E> {
        Ok(1)
    }
    fn visit_i64<E>(self, _: i64) -> Result<u64, E> {
        Ok(1)
    }
    fn visit_u64<E>(self, _: u64) -> Result<u64, E> {
        Ok(1)
    }
    fn visit_f64<E>(self, _: f64) -> Result<u64, E> {
        Ok(1)
    }
    fn visit_str<E>(self, _: &str) -> Result<u64, E> {
        Ok(1)
    }
    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(1)
    }
}

/// The value of a `records` key: `Some(len)` for an array.
struct Records(Option<u64>);

impl<'de> serde::Deserialize<'de> for Records {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Records;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Records, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Records(Some(n)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Records, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Records(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Records, E> {
                Ok(Records(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Records, E> {
                Ok(Records(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Records, E> {
                Ok(Records(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Records, E> {
                Ok(Records(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Records, E> {
                Ok(Records(None))
            }
            fn visit_unit<E>(self) -> Result<Records, E> {
                Ok(Records(None))
            }
        }
        d.deserialize_any(V)
    }
}
