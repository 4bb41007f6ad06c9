//! Arrow rows → compact JSON objects for the Logs Ingestion API, written straight into one byte
//! buffer (no `serde_json::Value` per row).
//!
//! Each row becomes `{"TimeGenerated":"…",<columns in schema order>,"RecordId_CF":"…"}`:
//! - keys are Sentinel column names: the table file's `sentinel_name` for table columns,
//!   [`sentinel_name`] for the decoder's internal columns (`_Extra` → `Extra_CF`, …);
//! - `TimeGenerated` is the row's `Timestamp`, else its `_EnvelopeTime`, else the time of the
//!   `encode` call (ingestion time, counted in [`EncodeStats::clock_time`]);
//! - datetimes are ISO 8601 UTC with exactly 7 fractional digits (100 ns ticks, Defender's own
//!   precision) and `Z`: `2026-11-20T10:30:00.1234567Z`; each row's `TimeGenerated`, as written,
//!   is kept next to its JSON ([`EncodedRows::time`]) for packing by time;
//! - integers are written exactly (never through `f64`, Defender longs exceed 2^53); reals with
//!   `ryu`; bools as `true`/`false`; strings and guids as escaped JSON strings;
//! - dynamic columns (`dynamic` in the table schema, and `_Extra`) hold JSON text: embedded as raw
//!   JSON when the text is valid JSON nested at most [`MAX_DYNAMIC_DEPTH`] levels deep, else sent
//!   as a JSON string (a deeper value would make the whole request body unreadable to the
//!   service, a 400 that stops the sink: content must never stop the run);
//! - **null values are omitted** from the object. The API treats a missing key as a null column,
//!   Log Analytics stores nothing for it and bills nothing for it (billing counts the stored
//!   columns), so leaving it out makes the body smaller at the same billed size. Non-finite reals
//!   (NaN, ±inf, which JSON cannot carry) are null too, hence omitted, and counted;
//! - a string value longer than [`MAX_FIELD_BYTES`] (measured in UTF-8 bytes of the value, before
//!   JSON escaping) is cut at the last character boundary at or below the limit and counted per
//!   column; a dynamic value that long is sent as the cut text in a JSON string;
//! - `RecordId_CF` is the row's `_RecordId` column (the decoder's id of the record's bytes as
//!   received, `defender_core::decode::record_id`), written last. A batch without that column
//!   gets the xxh3-128 hash (32 lowercase hex digits) of the row's JSON as written up to that
//!   point, seeded by the xxh3-64 hash of the table name (ingestion time left out).
//!
//! For a table of the **Auxiliary** plan ([`RowEncoder::with_table_plan`]) values are shaped as
//! that plan takes them: nested JSON only into `dynamic` columns (Microsoft's Logs Ingestion
//! limits: Auxiliary tables take nested JSON only into `dynamic` columns, else 400 "malformed
//! JSON"), so `_Extra`, declared `string`, goes as a JSON string; and `TimeGenerated` with 6
//! fractional digits ("Set up a table with the Auxiliary plan", 2025-06-16: "The `TimeGenerated`
//! column only supports the ISO 8601 format with 6 decimal places"), cut to the microsecond.
//!
//! Supported Arrow types (what [`ColumnType::arrow_type`] produces, and close relatives): Int32,
//! Int64, Float32, Float64, Boolean, Timestamp (any unit; the value is a UTC instant), Utf8,
//! LargeUtf8, Utf8View. Anything else is a [`SentinelError::UnsupportedType`] at construction.

use std::{
    collections::HashSet,
    ops::Range,
    time::{SystemTime, UNIX_EPOCH},
};

use arrow_array::{
    Array, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    cast::AsArray,
    types::{TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType},
};
use arrow_schema::{DataType, Schema, TimeUnit};
use defender_core::{
    ColumnType, TableSchema,
    billing::Tier,
    schema::{COL_ENVELOPE_TIME, COL_EXTRA, COL_TIMESTAMP, sentinel_name},
};
use xxhash_rust::xxh3::{xxh3_64, xxh3_128_with_seed};

use super::{COL_RECORD_ID, MAX_FIELD_BYTES, SentinelError, TIME_GENERATED};

/// Encoded rows, one compact JSON object each, stored back to back in one buffer.
///
/// Reuse it across batches ([`Self::clear`] keeps the allocation).
#[derive(Debug, Default, Clone)]
pub struct EncodedRows {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Each row's `TimeGenerated` as written, UTC nanoseconds since the epoch.
    times: Vec<i64>,
}

impl EncodedRows {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of JSON held.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The JSON object of row `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn row(&self, i: usize) -> &[u8] {
        &self.bytes[self.range(i)]
    }

    /// The `TimeGenerated` of row `i` as written (UTC nanoseconds since the epoch).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn time(&self, i: usize) -> i64 {
        self.times[i]
    }

    /// Gives back the room the buffers grew into: rows are kept until every body of theirs is
    /// accepted (through an outage's retries), and a doubling buffer may hold twice its length.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.times.shrink_to_fit();
    }

    /// The same rows ordered by `TimeGenerated` (stable: rows of the same time keep their
    /// order), and for each of them its index here.
    pub fn sorted_by_time(&self) -> (EncodedRows, Vec<usize>) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| self.times[i]);
        let mut out = EncodedRows {
            bytes: Vec::with_capacity(self.bytes.len()),
            ends: Vec::with_capacity(self.len()),
            times: Vec::with_capacity(self.len()),
        };
        for &i in &order {
            out.push(self.row(i), self.times[i]);
        }
        (out, order)
    }

    fn range(&self, i: usize) -> Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    /// All rows in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.row(i))
    }

    /// Sum of the rows' lengths in bytes.
    pub fn total_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.times.clear();
    }

    /// Appends an already encoded row (a JSON object; the caller vouches for it) whose
    /// `TimeGenerated` is `time` (UTC nanoseconds), e.g. a row kept from an earlier attempt.
    pub fn push(&mut self, row: &[u8], time: i64) {
        self.bytes.extend_from_slice(row);
        self.ends.push(self.bytes.len());
        self.times.push(time);
    }
}

/// What one [`RowEncoder::encode`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Rows encoded.
    pub rows: usize,
    /// Bytes of JSON produced (sum of the rows' lengths).
    pub bytes: usize,
    /// Values cut to [`MAX_FIELD_BYTES`], per Sentinel column name (only columns with a cut).
    pub truncated: Vec<(String, u64)>,
    /// Non-finite reals sent as null (omitted).
    pub non_finite: u64,
    /// Rows without an event time, whose `TimeGenerated` is the encoding time.
    pub clock_time: u64,
}

impl EncodeStats {
    /// Total values cut, over all columns.
    pub fn truncated_total(&self) -> u64 {
        self.truncated.iter().map(|(_, n)| n).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Bool,
    Time,
    Str,
    Dynamic,
    /// `_RecordId`: written last, as `RecordId_CF`.
    Id,
}

#[derive(Debug)]
struct Plan {
    /// `"Name":`, ready to copy.
    key: Vec<u8>,
    sentinel: String,
    arrow_name: String,
    data_type: DataType,
    kind: Kind,
    /// A column holding JSON that the stream declares `string` (`_Extra`).
    declared_string: bool,
}

/// Turns the rows of one table's batches into Logs Ingestion JSON (see the module docs).
/// Built once per (table, batch schema).
#[derive(Debug)]
pub struct RowEncoder {
    table: String,
    seed: u64,
    plans: Vec<Plan>,
    /// Index of the `Timestamp` column, then of `_EnvelopeTime`, when they are datetimes.
    time_sources: Vec<usize>,
    /// `,"RecordId_CF":"`.
    record_key: Vec<u8>,
    truncated: Vec<u64>,
    /// Fractional digits of `TimeGenerated`: 7, or 6 for Auxiliary.
    time_digits: u32,
}

impl RowEncoder {
    /// An encoder for batches of `schema` (the decoded batch's schema, possibly narrowed by a
    /// `project`) belonging to `table`.
    pub fn new(table: &TableSchema, schema: &Schema) -> Result<Self, SentinelError> {
        let columns = table.decoded_columns();
        let record_id = sentinel_name(COL_RECORD_ID);
        let mut seen: HashSet<String> =
            [TIME_GENERATED.to_ascii_lowercase(), record_id.to_ascii_lowercase()].into_iter().collect();
        let mut plans = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let name = field.name();
            if name == COL_RECORD_ID && matches!(field.data_type(), DataType::Utf8) {
                plans.push(Plan {
                    key: Vec::new(),
                    sentinel: record_id.clone(),
                    arrow_name: name.clone(),
                    data_type: field.data_type().clone(),
                    kind: Kind::Id,
                    declared_string: false,
                });
                continue;
            }
            let column = columns.iter().find(|c| &c.name == name);
            let sentinel = match column {
                Some(c) if !c.sentinel_name.is_empty() => c.sentinel_name.clone(),
                _ => sentinel_name(name),
            };
            if !seen.insert(sentinel.to_ascii_lowercase()) {
                return Err(SentinelError::DuplicateName { table: table.table.clone(), name: sentinel });
            }
            // `_Extra` is declared `string` in the stream; what it holds is JSON.
            let extra = name == COL_EXTRA;
            let dynamic = column.map_or(extra, |c| c.ty == ColumnType::Dynamic);
            let kind = match field.data_type() {
                DataType::Int32 | DataType::Int64 => Kind::Int,
                DataType::Float32 | DataType::Float64 => Kind::Real,
                DataType::Boolean => Kind::Bool,
                DataType::Timestamp(..) => Kind::Time,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if dynamic => Kind::Dynamic,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Str,
                other => {
                    return Err(SentinelError::UnsupportedType {
                        table: table.table.clone(),
                        column: name.clone(),
                        data_type: other.clone(),
                    });
                }
            };
            let mut key = Vec::with_capacity(sentinel.len() + 4);
            key.push(b',');
            write_str(&mut key, &sentinel);
            key.push(b':');
            plans.push(Plan {
                key,
                sentinel,
                arrow_name: name.clone(),
                data_type: field.data_type().clone(),
                kind,
                declared_string: extra && column.is_none(),
            });
        }
        let time_sources = [COL_TIMESTAMP, COL_ENVELOPE_TIME]
            .iter()
            .filter_map(|n| plans.iter().position(|p| p.arrow_name == *n && p.kind == Kind::Time))
            .collect();
        let mut record_key = b",".to_vec();
        write_str(&mut record_key, &record_id);
        record_key.extend_from_slice(b":\"");
        Ok(Self {
            table: table.table.clone(),
            seed: xxh3_64(table.table.as_bytes()),
            truncated: vec![0; plans.len()],
            plans,
            time_sources,
            record_key,
            time_digits: 7,
        })
    }

    /// Shapes values as a table of `plan` takes them (see the module docs): for Auxiliary, JSON
    /// only into `dynamic` columns and `TimeGenerated` to the microsecond; the other plans take
    /// what [`Self::new`] writes.
    pub fn with_table_plan(mut self, plan: Tier) -> Self {
        let auxiliary = plan == Tier::Auxiliary;
        self.time_digits = if auxiliary { 6 } else { 7 };
        for p in &mut self.plans {
            if p.declared_string && p.kind == Kind::Dynamic && auxiliary {
                p.kind = Kind::Str;
            } else if p.declared_string && p.kind == Kind::Str && !auxiliary {
                p.kind = Kind::Dynamic;
            }
        }
        self
    }

    /// The Sentinel column names this encoder writes, in order (without `TimeGenerated` and
    /// `RecordId_CF`, which every row has).
    pub fn sentinel_names(&self) -> impl Iterator<Item = &str> {
        self.plans.iter().filter(|p| p.kind != Kind::Id).map(|p| p.sentinel.as_str())
    }

    /// Appends one JSON object per row of `batch` to `out`; `TimeGenerated` falls back to now.
    pub fn encode(&mut self, batch: &RecordBatch, out: &mut EncodedRows) -> Result<EncodeStats, SentinelError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        self.encode_at(batch, out, i64::try_from(now).unwrap_or(i64::MAX))
    }

    /// Like [`Self::encode`], with `now_nanos` (UTC nanoseconds since the epoch) as the
    /// `TimeGenerated` of rows without an event time.
    pub fn encode_at(
        &mut self,
        batch: &RecordBatch,
        out: &mut EncodedRows,
        now_nanos: i64,
    ) -> Result<EncodeStats, SentinelError> {
        let columns = self.columns(batch)?;
        self.truncated.iter_mut().for_each(|n| *n = 0);
        let start_bytes = out.bytes.len();
        let mut stats = EncodeStats { rows: batch.num_rows(), ..EncodeStats::default() };
        for row in 0..batch.num_rows() {
            self.write_row(&columns, row, now_nanos, out, &mut stats);
        }
        stats.bytes = out.bytes.len() - start_bytes;
        stats.truncated = self
            .plans
            .iter()
            .zip(&self.truncated)
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| (p.sentinel.clone(), *n))
            .collect();
        Ok(stats)
    }

    fn columns<'a>(&self, batch: &'a RecordBatch) -> Result<Vec<Col<'a>>, SentinelError> {
        let mismatch = |detail: String| SentinelError::SchemaMismatch { table: self.table.clone(), detail };
        if batch.num_columns() != self.plans.len() {
            return Err(mismatch(format!("{} columns, expected {}", batch.num_columns(), self.plans.len())));
        }
        let schema = batch.schema();
        let mut columns = Vec::with_capacity(self.plans.len());
        for ((plan, field), array) in self.plans.iter().zip(schema.fields()).zip(batch.columns()) {
            if field.name() != &plan.arrow_name || field.data_type() != &plan.data_type {
                return Err(mismatch(format!(
                    "column {}: {} expected, found {} {}",
                    plan.arrow_name,
                    plan.data_type,
                    field.name(),
                    field.data_type()
                )));
            }
            columns.push(Col::new(array.as_ref()).ok_or_else(|| mismatch(format!("column {}", plan.arrow_name)))?);
        }
        Ok(columns)
    }

    fn write_row(
        &mut self,
        columns: &[Col<'_>],
        row: usize,
        now_nanos: i64,
        out: &mut EncodedRows,
        stats: &mut EncodeStats,
    ) {
        let buf = &mut out.bytes;
        let start = buf.len();
        buf.extend_from_slice(b"{\"TimeGenerated\":\"");
        let event_time = self.time_sources.iter().find_map(|&i| columns[i].time(row));
        let (secs, nanos) =
            event_time.unwrap_or((now_nanos.div_euclid(1_000_000_000), now_nanos.rem_euclid(1_000_000_000) as u32));
        let unit = 10u32.pow(9 - self.time_digits);
        let nanos = nanos - nanos % unit;
        write_datetime_digits(buf, (secs, nanos), self.time_digits);
        buf.push(b'"');
        out.times.push(secs.saturating_mul(1_000_000_000).saturating_add(i64::from(nanos)));
        // Ingestion time is not part of the record: keep it out of the id.
        let hash_from = if event_time.is_some() { start } else { buf.len() };
        if event_time.is_none() {
            stats.clock_time += 1;
        }
        let mut id_col = None;
        for (i, (plan, col)) in self.plans.iter().zip(columns).enumerate() {
            if plan.kind == Kind::Id {
                id_col = Some(col);
                continue;
            }
            match col {
                Col::I32(a) if a.is_valid(row) => {
                    buf.extend_from_slice(&plan.key);
                    buf.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes());
                }
                Col::I64(a) if a.is_valid(row) => {
                    buf.extend_from_slice(&plan.key);
                    buf.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes());
                }
                Col::F32(a) if a.is_valid(row) => {
                    let v = a.value(row);
                    write_real(buf, &plan.key, v, v.is_finite(), stats);
                }
                Col::F64(a) if a.is_valid(row) => {
                    let v = a.value(row);
                    write_real(buf, &plan.key, v, v.is_finite(), stats);
                }
                Col::Bool(a) if a.is_valid(row) => {
                    buf.extend_from_slice(&plan.key);
                    buf.extend_from_slice(if a.value(row) { b"true" } else { b"false" });
                }
                Col::Time(_) => {
                    if let Some(t) = col.time(row) {
                        buf.extend_from_slice(&plan.key);
                        buf.push(b'"');
                        write_datetime(buf, t);
                        buf.push(b'"');
                    }
                }
                Col::Str(_) => {
                    if let Some(s) = col.str(row) {
                        buf.extend_from_slice(&plan.key);
                        let (s, cut) = truncate(s);
                        self.truncated[i] += u64::from(cut);
                        if plan.kind == Kind::Dynamic && !cut && is_json(s) {
                            buf.extend_from_slice(s.as_bytes());
                        } else {
                            write_str(buf, s);
                        }
                    }
                }
                _ => {} // null
            }
        }
        let given =
            id_col.and_then(|c| c.str(row)).filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        match given {
            Some(id) => {
                buf.extend_from_slice(&self.record_key);
                buf.extend_from_slice(id.as_bytes());
            }
            None => {
                let id = xxh3_128_with_seed(&buf[hash_from..], self.seed);
                buf.extend_from_slice(&self.record_key);
                write_hex128(buf, id);
            }
        }
        buf.extend_from_slice(b"\"}");
        out.ends.push(buf.len());
    }
}

/// A batch column, downcast once per batch.
enum Col<'a> {
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    F32(&'a Float32Array),
    F64(&'a Float64Array),
    Bool(&'a BooleanArray),
    /// Values, and how many units make one second.
    Time((&'a dyn Array, &'a [i64], i64)),
    Str(&'a dyn Array),
}

impl<'a> Col<'a> {
    fn new(array: &'a dyn Array) -> Option<Self> {
        let time = |values: &'a [i64], per_sec: i64| Some(Col::Time((array, values, per_sec)));
        match array.data_type() {
            DataType::Int32 => array.as_any().downcast_ref().map(Col::I32),
            DataType::Int64 => array.as_any().downcast_ref().map(Col::I64),
            DataType::Float32 => array.as_any().downcast_ref().map(Col::F32),
            DataType::Float64 => array.as_any().downcast_ref().map(Col::F64),
            DataType::Boolean => array.as_any().downcast_ref().map(Col::Bool),
            DataType::Timestamp(TimeUnit::Second, _) => time(array.as_primitive::<TimestampSecondType>().values(), 1),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                time(array.as_primitive::<TimestampMillisecondType>().values(), 1_000)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                time(array.as_primitive::<TimestampMicrosecondType>().values(), 1_000_000)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                time(array.as_primitive::<TimestampNanosecondType>().values(), 1_000_000_000)
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Col::Str(array)),
            _ => None,
        }
    }

    /// A datetime as (seconds since the epoch, nanoseconds), or None when null or not a datetime.
    fn time(&self, row: usize) -> Option<(i64, u32)> {
        let Col::Time((array, values, per_sec)) = self else { return None };
        if array.is_null(row) {
            return None;
        }
        let v = values[row];
        let sub = v.rem_euclid(*per_sec);
        Some((v.div_euclid(*per_sec), (sub * (1_000_000_000 / per_sec)) as u32))
    }

    fn str(&self, row: usize) -> Option<&'a str> {
        let Col::Str(array) = self else { return None };
        if array.is_null(row) {
            return None;
        }
        match array.data_type() {
            DataType::Utf8 => Some(array.as_string::<i32>().value(row)),
            DataType::LargeUtf8 => Some(array.as_string::<i64>().value(row)),
            DataType::Utf8View => Some(array.as_string_view().value(row)),
            _ => None,
        }
    }
}

/// Writes a real in its shortest round-trip form (ryu), or nothing (null) when not finite.
fn write_real<F: ryu::Float>(buf: &mut Vec<u8>, key: &[u8], v: F, finite: bool, stats: &mut EncodeStats) {
    if finite {
        buf.extend_from_slice(key);
        buf.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        stats.non_finite += 1;
    }
}

/// `s` cut to at most [`MAX_FIELD_BYTES`] on a character boundary, and whether it was cut.
pub(crate) fn truncate(s: &str) -> (&str, bool) {
    if s.len() <= MAX_FIELD_BYTES {
        return (s, false);
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// Deepest nesting of a dynamic value embedded as raw JSON. A body is an array of row objects,
/// so the value's containers sit two levels down: 62 keeps every body within 64 levels, the
/// default limit of .NET's `System.Text.Json` and of Json.NET (and within the 128 of
/// `serde_json`, which our local Logs Ingestion server uses).
pub const MAX_DYNAMIC_DEPTH: usize = 62;

/// Whether `s` is one complete JSON value (validated without building it) nested at most
/// [`MAX_DYNAMIC_DEPTH`] levels deep.
fn is_json(s: &str) -> bool {
    // serde_json skips an ignored value without its recursion limit: the depth is checked here.
    nesting_depth(s) <= MAX_DYNAMIC_DEPTH && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

/// The deepest nesting of `[` and `{` outside strings in `s` (which need not be valid JSON).
fn nesting_depth(s: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in s.as_bytes() {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Writes `s` as a JSON string (RFC 8259 escaping; non-ASCII characters are kept as UTF-8).
pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            buf.extend_from_slice(short);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// Writes `YYYY-MM-DDTHH:MM:SS.fffffffZ` (UTC, 7 fractional digits, truncated to 100 ns).
pub(crate) fn write_datetime(buf: &mut Vec<u8>, t: (i64, u32)) {
    write_datetime_digits(buf, t, 7);
}

/// Writes `YYYY-MM-DDTHH:MM:SS.<digits>Z` (UTC, `digits` fractional digits, 1 to 9, truncated).
fn write_datetime_digits(buf: &mut Vec<u8>, (secs, nanos): (i64, u32), digits: u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if (0..=9999).contains(&year) {
        push_digits(buf, year as u64, 4);
    } else {
        buf.extend_from_slice(itoa::Buffer::new().format(year).as_bytes());
    }
    buf.push(b'-');
    push_digits(buf, u64::from(month), 2);
    buf.push(b'-');
    push_digits(buf, u64::from(day), 2);
    buf.push(b'T');
    push_digits(buf, (sod / 3600) as u64, 2);
    buf.push(b':');
    push_digits(buf, (sod / 60 % 60) as u64, 2);
    buf.push(b':');
    push_digits(buf, (sod % 60) as u64, 2);
    buf.push(b'.');
    push_digits(buf, u64::from(nanos / 10u32.pow(9 - digits)), digits as usize);
    buf.push(b'Z');
}

fn push_digits(buf: &mut Vec<u8>, mut v: u64, width: usize) {
    let at = buf.len();
    buf.resize(at + width, b'0');
    for slot in buf[at..].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_hex128(buf: &mut Vec<u8>, v: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..32).rev() {
        buf.push(HEX[((v >> (shift * 4)) & 0xf) as usize]);
    }
}
