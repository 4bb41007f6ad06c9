//! Records that cannot be decoded at all, or that a destination cannot take. They are data, not
//! crashes: each carries a typed reason, its source and position, and its raw bytes, and is
//! written to the dead-letter area of the archive as one NDJSON line.
//!
//! Errors are of two kinds, kept apart in types: a record's *content* (a reason here: the record
//! is dead-lettered, counted, and the run goes on past it) and the *infrastructure* (a store, a
//! network, a configuration: retried, or the run stops without committing what it holds).

use std::{fmt, sync::Arc};

use serde::{Serialize, Serializer};

use crate::batch::Position;

/// Why a record was dead-lettered. Only structural breakage lands here; a bad value in a column
/// is kept in `_Extra` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterReason {
    /// The message (or line) is not valid JSON.
    MalformedJson,
    /// Valid JSON but neither `{"records":[...]}` nor a record object.
    NotAMessage,
    /// An element of `records` that is not a JSON object.
    NotAnObject,
    /// No string `category`.
    MissingCategory,
    /// No object `properties`.
    MissingProperties,
    /// Neither a usable `properties.Timestamp` nor an envelope `time` to fall back on.
    NoTimestamp,
    /// A decoded row the Sentinel path cannot deliver: over the call limit even alone, refused
    /// alone with 413. `raw` is the row as the Logs Ingestion API would have received it.
    SentinelRejected,
    /// A decoded batch an encoder (Parquet, Sentinel JSON) could not represent; `detail` holds
    /// the encoder's error and `raw` the row as JSON.
    EncodeFailed,
    /// Input the source could not read as messages: a corrupt or truncated Capture (Avro)
    /// file or block, a Capture record without a Body. `detail` says what and where (the byte
    /// position in the file); `raw` holds the unreadable bytes (up to 1 MiB).
    UnreadableInput,
}

impl DeadLetterReason {
    pub const ALL: [Self; 9] = [
        Self::MalformedJson,
        Self::NotAMessage,
        Self::NotAnObject,
        Self::MissingCategory,
        Self::MissingProperties,
        Self::NoTimestamp,
        Self::SentinelRejected,
        Self::EncodeFailed,
        Self::UnreadableInput,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::NotAMessage => "not_a_message",
            Self::NotAnObject => "not_an_object",
            Self::MissingCategory => "missing_category",
            Self::MissingProperties => "missing_properties",
            Self::NoTimestamp => "no_timestamp",
            Self::SentinelRejected => "sentinel_rejected",
            Self::EncodeFailed => "encode_failed",
            Self::UnreadableInput => "unreadable_input",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DeadLetterReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Table name used for dead letters whose table is not known.
pub const UNKNOWN_TABLE: &str = "unknown";

/// One dead-lettered record.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The record's table when its category was readable, else [`UNKNOWN_TABLE`].
    pub table: Arc<str>,
    pub reason: DeadLetterReason,
    pub source: Arc<str>,
    pub position: Position,
    /// Index of the record inside its message, when it came from a `records` array.
    pub record_index: Option<u32>,
    /// For a row of a decoded batch, whose message offset is not kept: the last offset of the
    /// batch (`position.offset` is then its first); the row's `_RecordId` tells it exactly.
    pub last_offset: Option<i64>,
    /// What the destination or encoder said (bounded text), for the rejections.
    pub detail: Option<String>,
    pub raw: Vec<u8>,
}

/// Longest `detail` kept in a dead letter.
pub const MAX_DETAIL_CHARS: usize = 1_000;

impl DeadLetter {
    /// A dead letter of `reason` for a record that the decoder already counted and wrote into a
    /// batch covering `first..=last` of `partition`.
    pub fn for_row(
        table: Arc<str>,
        reason: DeadLetterReason,
        source: Arc<str>,
        partition: u32,
        (first, last): (i64, i64),
        detail: &str,
        raw: Vec<u8>,
    ) -> Self {
        Self {
            table,
            reason,
            source,
            position: Position { partition, offset: first },
            record_index: None,
            last_offset: Some(last),
            detail: Some(detail.chars().take(MAX_DETAIL_CHARS).collect()),
            raw,
        }
    }

    /// The NDJSON line written to the dead-letter area (without the newline):
    /// `{"reason","table","source","position":{"partition","offset","record","last_offset"},
    /// "detail","raw"}` (`record`, `last_offset` and `detail` when known); raw bytes that are
    /// not UTF-8 are written as `raw_base64` instead, so nothing is lost.
    pub fn to_json_line(&self) -> String {
        let mut position = serde_json::json!({ "partition": self.position.partition, "offset": self.position.offset });
        if let Some(i) = self.record_index {
            position["record"] = i.into();
        }
        if let Some(last) = self.last_offset {
            position["last_offset"] = last.into();
        }
        let mut line = serde_json::json!({
            "reason": self.reason,
            "table": &*self.table,
            "source": &*self.source,
            "position": position,
        });
        if let Some(detail) = &self.detail {
            line["detail"] = detail.as_str().into();
        }
        match std::str::from_utf8(&self.raw) {
            Ok(s) => line["raw"] = s.into(),
            Err(_) => line["raw_base64"] = base64(&self.raw).into(),
        }
        line.to_string()
    }
}

/// Each row of `batch` as one compact JSON object (arrow-json's writer; nulls left out), for
/// dead letters of rows an encoder could not take. A batch the JSON writer cannot represent
/// either yields `{"_unrepresentable_row": <index>}` per row: the count stays exact.
pub fn rows_json(batch: &arrow_array::RecordBatch) -> Vec<Vec<u8>> {
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    let written = writer.write(batch).and_then(|()| writer.finish());
    let text = writer.into_inner();
    if written.is_ok() {
        let rows: Vec<Vec<u8>> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        if rows.len() == batch.num_rows() {
            return rows;
        }
    }
    (0..batch.num_rows()).map(|i| format!("{{\"_unrepresentable_row\":{i}}}").into_bytes()).collect()
}

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    push_base64(&mut out, bytes);
    out
}

/// Appends the standard (padded) base64 of `bytes`.
pub fn push_base64(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_raw_bytes_are_kept_as_base64() {
        let dl = DeadLetter {
            table: UNKNOWN_TABLE.into(),
            reason: DeadLetterReason::MalformedJson,
            source: "in.json".into(),
            position: Position { partition: 0, offset: 7 },
            record_index: None,
            last_offset: None,
            detail: None,
            raw: vec![0xff, b'a', b'b', b'c'],
        };
        assert_eq!(
            dl.to_json_line(),
            r#"{"reason":"malformed_json","table":"unknown","source":"in.json","position":{"partition":0,"offset":7},"raw_base64":"/2FiYw=="}"#
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }
}
