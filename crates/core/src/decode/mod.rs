//! The validating decoder: message bytes in, one Arrow `RecordBatch` per table out.
//!
//! A [`Decoder`] serves one source partition. It is fed message bodies in offset order: either
//! an Event Hubs body `{"records":[...]}` or one bare record (the storage-export line shape).
//! Each body is parsed once by simd-json into a tape that is reused between messages; each
//! record is routed by `category` to its `TableDecoder` (module `table`), built once per table schema,
//! which appends the `properties` straight into Arrow builders.
//!
//! Every record ends in exactly one place: decoded into its table's batch, kept whole as raw
//! JSON under an unknown table, or dead-lettered with a [`DeadLetterReason`]. A broken message
//! never stops the decoder.
//!
//! [`Decoder::flush`] cuts an *epoch*: everything decoded since the previous flush, covering
//! every message between two offsets, with the accounting of those messages.

pub mod record_id;
mod table;
pub mod unknown;
pub mod value;

use std::{sync::Arc, time::Instant};

use rustc_hash::FxHashMap;

use simd_json::{Buffers, Node, Tape};

use self::{
    table::{Envelope, TableDecoder},
    unknown::{UnknownTableNames, UnknownTables},
};
use crate::{
    accounting::Accounting,
    batch::{FlushRule, Position, TableBatch},
    deadletter::{DeadLetter, DeadLetterReason, UNKNOWN_TABLE},
    schema::Catalog,
};

/// Everything a decoder produced between two flushes (one epoch of one partition).
#[derive(Debug)]
pub struct DecoderOutput {
    pub source: Arc<str>,
    pub partition: u32,
    /// The epoch covers every message of the partition with offsets `first_offset..=last_offset`.
    pub first_offset: i64,
    pub last_offset: i64,
    pub batches: Vec<TableBatch>,
    pub dead_letters: Vec<DeadLetter>,
    /// Counters of this epoch (records in, decoded, dead-lettered, coercions, bytes in).
    pub accounting: Accounting,
}

/// Decoder of one source partition. See the module documentation.
pub struct Decoder {
    source: Arc<str>,
    partition: u32,
    flush_rule: FlushRule,
    tables: Vec<TableDecoder>,
    by_category: FxHashMap<Box<str>, usize>,
    unknown: UnknownTables,
    unknown_names: Arc<UnknownTableNames>,
    /// Byte ranges of the current message's records (reused between messages).
    spans: Vec<std::ops::Range<usize>>,
    dead_letters: Vec<DeadLetter>,
    accounting: Accounting,
    /// Per known table: (records in, decoded, bytes in) since the last flush.
    counts: Vec<(u64, u64, u64)>,
    first_offset: Option<i64>,
    last_offset: i64,
    opened: Instant,
    pending_bytes: usize,
    pending_rows: usize,
    input: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
    text: String,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("source", &self.source).field("partition", &self.partition).finish()
    }
}

/// Where a record sits, for dead letters, and its bytes as received (for its `_RecordId`).
#[derive(Clone, Copy)]
struct RecordCtx<'a> {
    offset: i64,
    index: Option<u32>,
    raw_message: &'a [u8],
    /// The record's own bytes, when the scan found them (see [`record_id`]).
    record: Option<&'a [u8]>,
    share: u64,
}

impl Decoder {
    pub fn new(catalog: &Catalog, source: Arc<str>, partition: u32, flush_rule: FlushRule) -> Self {
        let tables: Vec<TableDecoder> = catalog.tables().iter().cloned().map(TableDecoder::new).collect();
        let by_category = catalog.tables().iter().enumerate().map(|(i, t)| (t.category().into(), i)).collect();
        Self {
            counts: vec![(0, 0, 0); tables.len()],
            tables,
            by_category,
            source,
            partition,
            flush_rule,
            unknown: UnknownTables::default(),
            unknown_names: Arc::new(UnknownTableNames::new(catalog, unknown::DEFAULT_MAX_UNKNOWN_TABLES)),
            spans: Vec::new(),
            dead_letters: Vec::new(),
            accounting: Accounting::default(),
            first_offset: None,
            last_offset: -1,
            opened: Instant::now(),
            pending_bytes: 0,
            pending_rows: 0,
            input: Vec::new(),
            buffers: Buffers::new(1 << 16),
            tape: Some(Tape::null().reset()),
            text: String::new(),
        }
    }

    /// Shares `names` (the bounded set of unknown table names of a process) with other decoders.
    pub fn with_unknown_names(mut self, names: Arc<UnknownTableNames>) -> Self {
        self.unknown_names = names;
        self
    }

    /// Decodes one message (or line) at `offset`. Offsets must grow.
    pub fn decode(&mut self, bytes: &[u8], offset: i64) {
        if self.first_offset.is_none() {
            self.first_offset = Some(offset);
            self.opened = Instant::now();
        }
        self.last_offset = offset;
        self.pending_bytes += bytes.len();

        let mut input = std::mem::take(&mut self.input);
        input.clear();
        input.extend_from_slice(bytes);
        input.resize(bytes.len() + simd_json::INPUT_PADDING, 0);
        let mut tape = self.tape.take().unwrap_or_else(|| Tape::null().reset()).reset();
        match simd_json::fill_tape_padded(&mut input, bytes.len(), &mut self.buffers, &mut tape) {
            Ok(()) => self.message(&tape.0, offset, bytes),
            Err(_) => {
                let ctx =
                    RecordCtx { offset, index: None, raw_message: bytes, record: None, share: bytes.len() as u64 };
                self.dead_letter(UNKNOWN_TABLE, DeadLetterReason::MalformedJson, ctx, None);
            }
        }
        self.tape = Some(tape.reset());
        self.input = input;
    }

    /// Records input the source could not read (see [`DeadLetterReason::UnreadableInput`]) at
    /// `offset`: one record in, dead-lettered under the unknown table. Offsets must grow.
    pub fn unreadable(&mut self, offset: i64, detail: &str, raw: &[u8]) {
        if self.first_offset.is_none() {
            self.first_offset = Some(offset);
            self.opened = Instant::now();
        }
        self.last_offset = offset;
        self.pending_bytes += raw.len();
        let ctx = RecordCtx { offset, index: None, raw_message: raw, record: None, share: raw.len() as u64 };
        self.dead_letter(UNKNOWN_TABLE, DeadLetterReason::UnreadableInput, ctx, None);
        if let Some(d) = self.dead_letters.last_mut() {
            d.detail = Some(detail.chars().take(crate::deadletter::MAX_DETAIL_CHARS).collect());
        }
    }

    fn message(&mut self, nodes: &[Node<'_>], offset: i64, raw: &[u8]) {
        let records = match nodes[0] {
            Node::Object { len, .. } => {
                find_key(nodes, len, "records").filter(|&i| matches!(nodes[i], Node::Array { .. }))
            }
            _ => {
                let ctx = RecordCtx { offset, index: None, raw_message: raw, record: None, share: raw.len() as u64 };
                return self.dead_letter(UNKNOWN_TABLE, DeadLetterReason::NotAMessage, ctx, None);
            }
        };
        let Some(at) = records else {
            let record = Some(record_id::bare_record(raw));
            let ctx = RecordCtx { offset, index: None, raw_message: raw, record, share: raw.len() as u64 };
            return self.record(nodes, ctx);
        };
        let Node::Array { len, .. } = nodes[at] else { unreachable!() };
        let share = raw.len() as u64 / (len.max(1) as u64);
        let mut spans = std::mem::take(&mut self.spans);
        let found = record_id::record_spans_into(raw, len, &mut spans);
        let mut i = at + 1;
        for index in 0..len {
            let n = value::span(&nodes[i]);
            let record = found.then(|| &raw[spans[index].clone()]);
            let ctx = RecordCtx { offset, index: Some(index as u32), raw_message: raw, record, share };
            self.record(&nodes[i..i + n], ctx);
            i += n;
        }
        self.spans = spans;
    }

    fn record(&mut self, rec: &[Node<'_>], ctx: RecordCtx<'_>) {
        let Node::Object { len, .. } = rec[0] else {
            return self.dead_letter(UNKNOWN_TABLE, DeadLetterReason::NotAnObject, ctx, Some(rec));
        };
        let mut category = None;
        let mut props = None;
        let mut env = Envelope::default();
        let mut time_text = None;
        let mut unknown_env: Vec<(&str, &[Node<'_>])> = Vec::new();
        let mut i = 1;
        for _ in 0..len {
            let Node::String(key) = rec[i] else { unreachable!("object keys are strings") };
            let v = &rec[i + 1..i + 1 + value::span(&rec[i + 1])];
            i += 1 + v.len();
            match (key, v[0]) {
                ("category", Node::String(s)) => category = Some(s),
                ("properties", Node::Object { .. }) => props = Some(v),
                ("time", Node::String(s)) => {
                    time_text = Some(v);
                    env.time = value::parse_datetime_nanos(s);
                }
                ("tenantId", Node::String(s)) => env.tenant = Some(s),
                ("_TimeReceivedBySvc", Node::String(s)) => env.received = value::parse_datetime_nanos(s),
                ("operationName" | "Tenant", _) => {}
                _ => unknown_env.push((key, v)),
            }
        }
        // An envelope `time` that is present but unparseable is kept, not dropped.
        if env.time.is_none()
            && let Some(t) = time_text
        {
            unknown_env.push(("time", t));
        }
        let Some(category) = category else {
            return self.dead_letter(UNKNOWN_TABLE, DeadLetterReason::MissingCategory, ctx, Some(rec));
        };
        let Some(&t) = self.by_category.get(category) else {
            return self.unknown_table(category, props, env, rec, ctx);
        };
        self.counts[t].0 += 1;
        self.counts[t].2 += ctx.share;
        let Some(props) = props else {
            let name = self.tables[t].name.clone();
            return self.dead_letter_counted(&name, DeadLetterReason::MissingProperties, ctx, Some(rec));
        };
        let Ok(time) = TableDecoder::event_time(props, env.time) else {
            let name = self.tables[t].name.clone();
            return self.dead_letter_counted(&name, DeadLetterReason::NoTimestamp, ctx, Some(rec));
        };
        self.counts[t].1 += 1;
        self.pending_rows += 1;
        let id = self.record_id(category, rec, ctx);
        self.tables[t].append(props, time, env, &unknown_env, as_str(&id));
    }

    /// The record's `_RecordId` (see [`record_id`]).
    fn record_id(&mut self, category: &str, rec: &[Node<'_>], ctx: RecordCtx<'_>) -> [u8; record_id::RECORD_ID_LEN] {
        match ctx.record {
            Some(bytes) => record_id::record_id(category, bytes),
            None => {
                self.text.clear();
                value::write_json(&mut self.text, rec);
                record_id::record_id(category, self.text.as_bytes())
            }
        }
    }

    fn unknown_table(
        &mut self,
        category: &str,
        props: Option<&[Node<'_>]>,
        env: Envelope<'_>,
        rec: &[Node<'_>],
        ctx: RecordCtx<'_>,
    ) {
        let name = self.unknown_names.name(category);
        let time = props.and_then(|p| TableDecoder::event_time(p, env.time).ok());
        let stats = self.accounting.table(&name);
        stats.unknown_table = true;
        stats.records_in += 1;
        stats.bytes_in += ctx.share;
        let Some((time, _)) = time else {
            return self.dead_letter_counted(&name, DeadLetterReason::NoTimestamp, ctx, Some(rec));
        };
        stats.decoded += 1;
        self.pending_rows += 1;
        let id = self.record_id(category, rec, ctx);
        self.text.clear();
        value::write_json(&mut self.text, rec);
        self.unknown.append(&name, category, time, env, &self.text, as_str(&id));
    }

    /// Dead-letters a record whose table is not known, counting it as a record in.
    fn dead_letter(&mut self, table: &str, reason: DeadLetterReason, ctx: RecordCtx<'_>, rec: Option<&[Node<'_>]>) {
        let stats = self.accounting.table(table);
        stats.records_in += 1;
        stats.bytes_in += ctx.share;
        self.dead_letter_counted(table, reason, ctx, rec);
    }

    /// Dead-letters a record whose `records_in` was already counted.
    fn dead_letter_counted(
        &mut self,
        table: &str,
        reason: DeadLetterReason,
        ctx: RecordCtx<'_>,
        rec: Option<&[Node<'_>]>,
    ) {
        *self.accounting.table(table).dead_lettered.entry(reason.as_str().to_string()).or_default() += 1;
        let raw = match rec {
            Some(nodes) if ctx.index.is_some() => {
                self.text.clear();
                value::write_json(&mut self.text, nodes);
                self.text.as_bytes().to_vec()
            }
            _ => ctx.raw_message.to_vec(),
        };
        self.pending_rows += 1;
        self.dead_letters.push(DeadLetter {
            table: table.into(),
            reason,
            source: self.source.clone(),
            position: Position { partition: self.partition, offset: ctx.offset },
            record_index: ctx.index,
            last_offset: None,
            detail: None,
            raw,
        });
    }

    /// True when the flush rule says the current epoch should be cut.
    pub fn should_flush(&self, now: Instant) -> bool {
        // An epoch of messages without records still flushes, by age.
        self.first_offset.is_some()
            && self.flush_rule.should_flush(self.pending_rows.max(1), self.pending_bytes, self.opened, now)
    }

    /// Bytes of input decoded since the last flush (held as Arrow builders until then).
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Messages decoded since the last flush.
    pub fn is_empty(&self) -> bool {
        self.first_offset.is_none()
    }

    /// Cuts the current epoch, if any message was decoded since the last flush.
    pub fn flush(&mut self) -> Option<DecoderOutput> {
        let first_offset = self.first_offset.take()?;
        let mut accounting = std::mem::take(&mut self.accounting);
        let mut batches = Vec::new();
        let share = |rows: u64, total_rows: u64, bytes: u64| (bytes * rows).checked_div(total_rows).unwrap_or(0);
        for (t, counts) in self.tables.iter_mut().zip(self.counts.iter_mut()) {
            let (records_in, decoded, bytes_in) = std::mem::take(counts);
            if records_in == 0 {
                continue;
            }
            let stats = accounting.table(&t.name);
            stats.records_in += records_in;
            stats.decoded += decoded;
            stats.bytes_in += bytes_in;
            stats.unknown_columns += std::mem::take(&mut t.unknown_columns);
            for (col, (c, l)) in t.columns.iter().zip(t.coerced.iter_mut().zip(t.lossy.iter_mut())) {
                if *c > 0 {
                    stats.coerced.insert(col.name.clone(), std::mem::take(c));
                }
                if *l > 0 {
                    stats.kept_in_extra.insert(col.name.clone(), std::mem::take(l));
                }
            }
            if t.pending_rows > 0 {
                batches.push(TableBatch {
                    table: t.name.clone(),
                    unknown_table: false,
                    source: self.source.clone(),
                    partition: self.partition,
                    first_offset,
                    last_offset: self.last_offset,
                    raw_bytes: share(decoded, records_in, bytes_in),
                    batch: t.finish(),
                });
            }
        }
        for (name, batch) in self.unknown.finish() {
            let bytes = accounting.tables.get(&*name).map_or(0, |s| s.bytes_in);
            batches.push(TableBatch {
                table: name,
                unknown_table: true,
                source: self.source.clone(),
                partition: self.partition,
                first_offset,
                last_offset: self.last_offset,
                raw_bytes: bytes,
                batch,
            });
        }
        self.pending_bytes = 0;
        self.pending_rows = 0;
        Some(DecoderOutput {
            source: self.source.clone(),
            partition: self.partition,
            first_offset,
            last_offset: self.last_offset,
            batches,
            dead_letters: std::mem::take(&mut self.dead_letters),
            accounting,
        })
    }
}

/// The hex digits of an id as text.
fn as_str(id: &[u8; record_id::RECORD_ID_LEN]) -> &str {
    std::str::from_utf8(id).expect("hex digits are ASCII")
}

/// Index of the value of `key` in the object starting at `nodes[0]`.
fn find_key(nodes: &[Node<'_>], len: usize, key: &str) -> Option<usize> {
    let mut i = 1;
    for _ in 0..len {
        let k = nodes[i];
        i += 1;
        if k == Node::String(key) {
            return Some(i);
        }
        i += value::span(&nodes[i]);
    }
    None
}

#[cfg(test)]
mod tests;
