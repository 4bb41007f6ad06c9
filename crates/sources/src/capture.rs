//! Event Hubs Capture files: Avro object container files of `EventData` records.
//!
//! A minimal, hand-written reader of the [Avro object container format] for what Capture writes:
//! the header (magic `Obj\x01`, a metadata map holding `avro.schema` and `avro.codec`, a 16-byte
//! sync marker), then blocks of (record count, byte size, records, sync marker). The writer
//! schema is read from the header and drives the decoding, so field order and extra fields do
//! not matter; the record must have a `Body` field (`bytes`, or a union of `null` and `bytes`),
//! and `SequenceNumber` (`long`) is read when present. Codecs: `null`, `deflate` (raw deflate,
//! RFC 1951) and `snappy` (raw snappy, then the 4-byte big-endian CRC-32 of the uncompressed
//! block, which is checked); any other codec makes the file one unreadable item.
//!
//! Offsets are item ordinals in the file, from 1: each record, and each unreadable stretch,
//! takes the next one, so they are the same on every run over the same file (archive file names
//! and the backfill's progress rely on that).
//!
//! Bad data is data ([`Item::Unreadable`], which the pipeline turns into a dead letter with
//! the file, the ordinal and a detail naming the byte position): a header that is not Avro, a
//! block whose sync marker is wrong (the reader then looks for the next sync marker and goes
//! on from there), a block that does not decompress, fails its snappy CRC or does not decode
//! (the next block is read), a
//! truncated last block, a record without a Body. A file with a header and no block (Capture
//! writes those for idle windows by default) has no items.
//!
//! [Avro object container format]: https://avro.apache.org/docs/1.11.1/specification/#object-container-files

use std::{collections::HashMap, io::Read};

use bytes::Bytes;

const MAGIC: &[u8; 4] = b"Obj\x01";
/// Longest raw bytes kept for an unreadable stretch (its detail says how long it was).
const MAX_RAW: usize = 1 << 20;

/// What a Capture file yields, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A record's Body (a Streaming-API message) at `offset`, with the event's Event Hubs
    /// `SequenceNumber` and `Offset` when the record has them.
    Message { offset: i64, body: Bytes, sequence_number: Option<i64>, event_offset: Option<Bytes> },
    /// Bytes that could not be read as records.
    Unreadable { offset: i64, detail: String, raw: Bytes },
}

impl Item {
    pub fn offset(&self) -> i64 {
        match self {
            Self::Message { offset, .. } | Self::Unreadable { offset, .. } => *offset,
        }
    }
}

/// An Avro schema, as far as decoding (and skipping) needs it.
#[derive(Debug, Clone, PartialEq)]
enum Schema {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Record(Vec<(String, Schema)>),
    Enum,
    Array(Box<Schema>),
    Map(Box<Schema>),
    Union(Vec<Schema>),
    Fixed(usize),
}

impl Schema {
    fn parse(json: &serde_json::Value, named: &mut HashMap<String, Schema>) -> Result<Self, String> {
        use serde_json::Value;
        Ok(match json {
            Value::String(name) => match name.as_str() {
                "null" => Self::Null,
                "boolean" => Self::Boolean,
                "int" => Self::Int,
                "long" => Self::Long,
                "float" => Self::Float,
                "double" => Self::Double,
                "bytes" => Self::Bytes,
                "string" => Self::String,
                other => {
                    let short = other.rsplit('.').next().unwrap_or(other);
                    named.get(other).or_else(|| named.get(short)).cloned().ok_or(format!("unknown type `{other}`"))?
                }
            },
            Value::Array(branches) => {
                Self::Union(branches.iter().map(|b| Self::parse(b, named)).collect::<Result<_, _>>()?)
            }
            Value::Object(o) => {
                let kind = o.get("type").ok_or("a schema object without `type`")?;
                let schema = match kind.as_str() {
                    Some("record" | "error") => {
                        let fields = o.get("fields").and_then(Value::as_array).ok_or("a record without `fields`")?;
                        let fields = fields
                            .iter()
                            .map(|f| {
                                let name = f.get("name").and_then(Value::as_str).ok_or("a field without `name`")?;
                                let ty = f.get("type").ok_or("a field without `type`")?;
                                Ok((name.to_string(), Self::parse(ty, named)?))
                            })
                            .collect::<Result<_, String>>()?;
                        Self::Record(fields)
                    }
                    Some("enum") => Self::Enum,
                    Some("array") => {
                        Self::Array(Box::new(Self::parse(o.get("items").ok_or("array without items")?, named)?))
                    }
                    Some("map") => {
                        Self::Map(Box::new(Self::parse(o.get("values").ok_or("map without values")?, named)?))
                    }
                    Some("fixed") => {
                        Self::Fixed(o.get("size").and_then(Value::as_u64).ok_or("fixed without size")? as usize)
                    }
                    // A primitive with attributes (`{"type": "long", "logicalType": ...}`).
                    Some(_) => Self::parse(kind, named)?,
                    None => Self::parse(kind, named)?,
                };
                if let Some(name) = o.get("name").and_then(Value::as_str) {
                    named.insert(name.to_string(), schema.clone());
                    if let Some(ns) = o.get("namespace").and_then(Value::as_str) {
                        named.insert(format!("{ns}.{name}"), schema.clone());
                    }
                }
                schema
            }
            other => return Err(format!("not a schema: {other}")),
        })
    }
}

/// A cursor over Avro binary data.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn long(&mut self) -> Result<i64, String> {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let b = *self.data.get(self.pos).ok_or("unexpected end of data in a varint")?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return Err("varint longer than 10 bytes".into());
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len()).ok_or("unexpected end of data")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn len(&mut self) -> Result<usize, String> {
        usize::try_from(self.long()?).map_err(|_| "negative length".to_string())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.len()?;
        self.take(n)
    }

    /// Reads a datum of `schema`, keeping nothing.
    fn skip(&mut self, schema: &Schema) -> Result<(), String> {
        match schema {
            Schema::Null => {}
            Schema::Boolean => drop(self.take(1)?),
            Schema::Int | Schema::Long | Schema::Enum => drop(self.long()?),
            Schema::Float => drop(self.take(4)?),
            Schema::Double => drop(self.take(8)?),
            Schema::Bytes | Schema::String => drop(self.bytes()?),
            Schema::Fixed(n) => drop(self.take(*n)?),
            Schema::Record(fields) => {
                for (_, f) in fields {
                    self.skip(f)?;
                }
            }
            Schema::Union(branches) => {
                let b = self.branch(branches)?;
                self.skip(b)?;
            }
            Schema::Array(items) => self.blocks(|c| c.skip(items))?,
            Schema::Map(values) => self.blocks(|c| {
                c.bytes()?;
                c.skip(values)
            })?,
        }
        Ok(())
    }

    fn branch<'s>(&mut self, branches: &'s [Schema]) -> Result<&'s Schema, String> {
        let i = self.long()?;
        usize::try_from(i).ok().and_then(|i| branches.get(i)).ok_or(format!("union branch {i} out of range"))
    }

    /// The blocks of an array or map: a count (negative: followed by a byte size), items, ... 0.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> Result<(), String>) -> Result<(), String> {
        loop {
            let mut n = self.long()?;
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                n = n.checked_neg().ok_or("bad block count")?;
                self.long()?;
            }
            for _ in 0..n {
                item(self)?;
            }
        }
    }
}

/// The fields of one `EventData` record this reader keeps.
struct Record<'a> {
    body: Option<&'a [u8]>,
    sequence_number: Option<i64>,
    event_offset: Option<&'a [u8]>,
}

/// Reads one record of the top-level schema, keeping Body and SequenceNumber.
fn record<'a>(c: &mut Cursor<'a>, fields: &[(String, Schema)]) -> Result<Record<'a>, String> {
    let mut r = Record { body: None, sequence_number: None, event_offset: None };
    for (name, schema) in fields {
        match (name.as_str(), schema) {
            ("Body", _) => r.body = body(c, schema)?,
            ("SequenceNumber", Schema::Long | Schema::Int) => r.sequence_number = Some(c.long()?),
            ("Offset", Schema::String) => r.event_offset = Some(c.bytes()?),
            _ => c.skip(schema)?,
        }
    }
    Ok(r)
}

fn body<'a>(c: &mut Cursor<'a>, schema: &Schema) -> Result<Option<&'a [u8]>, String> {
    match schema {
        Schema::Bytes | Schema::String => Ok(Some(c.bytes()?)),
        Schema::Null => Ok(None),
        Schema::Union(branches) => {
            let b = c.branch(branches)?;
            body(c, b)
        }
        other => Err(format!("Body of type {other:?}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Codec {
    Null,
    Deflate,
    Snappy,
}

/// An Avro snappy block: raw snappy data, then the big-endian CRC-32 (IEEE) of the data it
/// decompresses to.
fn unsnappy(block: &[u8]) -> Result<Vec<u8>, String> {
    let split = block.len().checked_sub(4).ok_or("shorter than its 4-byte CRC")?;
    let (data, crc) = block.split_at(split);
    let plain = snap::raw::Decoder::new().decompress_vec(data).map_err(|e| e.to_string())?;
    let expected = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    let actual = crc32fast::hash(&plain);
    if actual != expected {
        return Err(format!("CRC-32 {actual:08x} of the uncompressed data, the block says {expected:08x}"));
    }
    Ok(plain)
}

/// Reads one Capture file held in memory, a chunk of items at a time.
#[derive(Debug)]
pub struct CaptureReader {
    data: Bytes,
    pos: usize,
    sync: [u8; 16],
    codec: Codec,
    fields: Vec<(String, Schema)>,
    /// The ordinal of the last item handed out.
    ordinal: i64,
    /// Set when the header could not be read: the whole file is one unreadable item.
    broken: Option<String>,
    done: bool,
}

impl CaptureReader {
    /// Reads the header; a file that is not a readable Capture file yields one unreadable item.
    pub fn new(data: Bytes) -> Self {
        let mut r = Self {
            data,
            pos: 0,
            sync: [0; 16],
            codec: Codec::Null,
            fields: Vec::new(),
            ordinal: 0,
            broken: None,
            done: false,
        };
        if let Err(e) = r.header() {
            r.broken = Some(e);
        }
        r
    }

    fn header(&mut self) -> Result<(), String> {
        if !self.data.starts_with(MAGIC) {
            return Err("not an Avro object container file (no `Obj\\x01` magic)".into());
        }
        let mut c = Cursor { data: &self.data, pos: MAGIC.len() };
        let mut meta = HashMap::new();
        c.blocks(|c| {
            let key = String::from_utf8_lossy(c.bytes()?).into_owned();
            let value = c.bytes()?.to_vec();
            meta.insert(key, value);
            Ok(())
        })
        .map_err(|e| format!("header metadata: {e}"))?;
        self.sync.copy_from_slice(c.take(16).map_err(|e| format!("header sync marker: {e}"))?);
        self.pos = c.pos;
        self.codec = match meta.get("avro.codec").map(|v| v.as_slice()) {
            None | Some(b"null") => Codec::Null,
            Some(b"deflate") => Codec::Deflate,
            Some(b"snappy") => Codec::Snappy,
            Some(other) => return Err(format!("codec `{}` is not supported", String::from_utf8_lossy(other))),
        };
        let schema = meta.get("avro.schema").ok_or("no `avro.schema` in the header")?;
        let json: serde_json::Value =
            serde_json::from_slice(schema).map_err(|e| format!("`avro.schema` is not JSON: {e}"))?;
        match Schema::parse(&json, &mut HashMap::new()).map_err(|e| format!("`avro.schema`: {e}"))? {
            Schema::Record(fields) if fields.iter().any(|(n, _)| n == "Body") => self.fields = fields,
            _ => return Err("the schema is not a record with a `Body` field (not Event Hubs Capture)".into()),
        }
        Ok(())
    }

    /// Bytes of the file read so far (the whole file once it is done).
    pub fn position(&self) -> usize {
        if self.done { self.data.len() } else { self.pos.min(self.data.len()) }
    }

    fn next_ordinal(&mut self) -> i64 {
        self.ordinal += 1;
        self.ordinal
    }

    fn unreadable(&mut self, detail: String, from: usize, to: usize) -> Item {
        let raw = self.data.slice(from..to.min(from + MAX_RAW).max(from));
        Item::Unreadable { offset: self.next_ordinal(), detail, raw }
    }

    /// The next items, blocks of about `max_bytes` of bodies; empty at the end of the file.
    pub fn next_items(&mut self, max_bytes: usize) -> Vec<Item> {
        let mut out = Vec::new();
        if let Some(e) = self.broken.take() {
            self.done = true;
            let len = self.data.len();
            out.push(self.unreadable(format!("unreadable capture file: {e}"), 0, len));
            return out;
        }
        let mut bytes = 0;
        while !self.done && bytes < max_bytes {
            bytes += self.block(&mut out);
        }
        out
    }

    /// True when a block (a count, a size, that many bytes and the sync marker) starts at `at`,
    /// or the file ends there.
    fn block_at(&self, at: usize) -> bool {
        if at >= self.data.len() {
            return at == self.data.len();
        }
        let mut c = Cursor { data: &self.data, pos: at };
        match c.long().and_then(|count| Ok((count, c.len()?))) {
            Ok((count, size)) if count >= 0 => {
                let sync = c.pos.saturating_add(size);
                self.data.get(sync..sync.saturating_add(16)).is_some_and(|s| s == self.sync)
            }
            _ => false,
        }
    }

    /// Reads the block at `pos` into `out`; returns the bytes of bodies read.
    fn block(&mut self, out: &mut Vec<Item>) -> usize {
        let start = self.pos;
        let len = self.data.len();
        if start >= len {
            self.done = true;
            return 0;
        }
        let data = self.data.clone();
        let mut c = Cursor { data: &data, pos: start };
        let header = c.long().and_then(|count| Ok((count, c.len()?)));
        let (count, size) = match header {
            Ok((count, size)) if count >= 0 && c.pos + size + 16 <= len => (count, size),
            Ok((count, size)) => {
                self.done = true;
                let detail = format!(
                    "truncated capture file: block at byte {start} claims {count} record(s) in {size} bytes, \
                     {} bytes left",
                    len - c.pos
                );
                out.push(self.unreadable(detail, start, len));
                return 0;
            }
            Err(e) => {
                self.done = true;
                out.push(self.unreadable(
                    format!("truncated capture file: block header at byte {start}: {e}"),
                    start,
                    len,
                ));
                return 0;
            }
        };
        let body_at = c.pos;
        let sync_at = body_at + size;
        if data[sync_at..sync_at + 16] != self.sync {
            // Go on with the next block where this one's marker should have ended if a
            // well-formed block is there (only the marker was hit), else after the next sync
            // marker found.
            let next = if self.block_at(sync_at + 16) {
                Some(sync_at)
            } else {
                memchr::memmem::find(&data[start + 1..], &self.sync).map(|i| start + 1 + i)
            };
            let (to, detail) = match next {
                Some(at) => {
                    (at, format!("bad sync marker after the block at byte {start}: skipped to byte {}", at + 16))
                }
                None => (len, format!("bad sync marker after the block at byte {start}: no later sync marker")),
            };
            out.push(self.unreadable(detail, start, to));
            match next {
                Some(at) => self.pos = at + 16,
                None => self.done = true,
            }
            return 0;
        }
        self.pos = sync_at + 16;
        let block = data.slice(body_at..sync_at);
        let block = match self.codec {
            Codec::Null => block,
            Codec::Deflate => {
                let mut inflated = Vec::with_capacity(size * 4);
                match flate2::read::DeflateDecoder::new(&block[..]).read_to_end(&mut inflated) {
                    Ok(_) => Bytes::from(inflated),
                    Err(e) => {
                        let detail = format!("block at byte {start} does not inflate (deflate): {e}");
                        out.push(self.unreadable(detail, start, sync_at));
                        return 0;
                    }
                }
            }
            Codec::Snappy => match unsnappy(&block) {
                Ok(plain) => Bytes::from(plain),
                Err(e) => {
                    let detail = format!("block at byte {start} does not decompress (snappy): {e}");
                    out.push(self.unreadable(detail, start, sync_at));
                    return 0;
                }
            },
        };
        let mut rc = Cursor { data: &block, pos: 0 };
        let mut bytes = 0;
        for i in 0..count {
            let at = rc.pos;
            match record(&mut rc, &self.fields) {
                Ok(Record { body: Some(b), sequence_number, event_offset }) => {
                    bytes += b.len();
                    let body = block.slice_ref(b);
                    let event_offset = event_offset.map(|o| block.slice_ref(o));
                    out.push(Item::Message { offset: self.next_ordinal(), body, sequence_number, event_offset });
                }
                Ok(Record { body: None, sequence_number, .. }) => {
                    let detail = format!(
                        "record {i} of the block at byte {start} has no Body (SequenceNumber {sequence_number:?})"
                    );
                    let raw = block.slice(at..rc.pos);
                    out.push(Item::Unreadable { offset: self.next_ordinal(), detail, raw });
                }
                Err(e) => {
                    let detail =
                        format!("block at byte {start}: record {i} of {count} does not decode ({e}): the rest skipped");
                    let raw = block.slice(at..block.len().min(at + MAX_RAW));
                    out.push(Item::Unreadable { offset: self.next_ordinal(), detail, raw });
                    break;
                }
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests;
