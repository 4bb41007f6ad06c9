//! Records that cannot be decoded at all. They are data, not crashes: each carries a typed
//! reason, its source and position, and its raw bytes, and is written to the dead-letter area
//! of the archive as one NDJSON line.

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
}

impl DeadLetterReason {
    pub const ALL: [Self; 6] = [
        Self::MalformedJson,
        Self::NotAMessage,
        Self::NotAnObject,
        Self::MissingCategory,
        Self::MissingProperties,
        Self::NoTimestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::NotAMessage => "not_a_message",
            Self::NotAnObject => "not_an_object",
            Self::MissingCategory => "missing_category",
            Self::MissingProperties => "missing_properties",
            Self::NoTimestamp => "no_timestamp",
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
    pub raw: Vec<u8>,
}

impl DeadLetter {
    /// The NDJSON line written to the dead-letter area (without the newline):
    /// `{"reason","table","source","position":{"partition","offset","record"},"raw"}`; raw bytes
    /// that are not UTF-8 are written as `raw_base64` instead, so nothing is lost.
    pub fn to_json_line(&self) -> String {
        let mut position = serde_json::json!({ "partition": self.position.partition, "offset": self.position.offset });
        if let Some(i) = self.record_index {
            position["record"] = i.into();
        }
        let mut line = serde_json::json!({
            "reason": self.reason,
            "table": &*self.table,
            "source": &*self.source,
            "position": position,
        });
        match std::str::from_utf8(&self.raw) {
            Ok(s) => line["raw"] = s.into(),
            Err(_) => line["raw_base64"] = base64(&self.raw).into(),
        }
        line.to_string()
    }
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
