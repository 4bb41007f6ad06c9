//! The Streaming API's storage-account export: `PT1H.json` append blobs of JSON lines.
//!
//! Defender writes one container per table, `insights-logs-advancedhunting-<table lower-cased>`,
//! and in it `tenantId=<id>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`: one record per line, each
//! line ended by CRLF. The blobs are append blobs that keep growing after their hour, so a line
//! without its terminator is never taken (it may be half written): it is read on a later run.
//!
//! Offsets are the byte position of a line's first byte in its blob: stable across runs and
//! growing with the blob. A reader resuming after offset `o` reads from `o` and drops the line
//! that starts there (it was taken before).

use bytes::Bytes;

/// Splits bytes read from a blob into complete lines.
#[derive(Debug)]
pub struct LineSplitter {
    /// The blob position of `buf[0]`.
    base: u64,
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Starts at byte `position` of the blob.
    pub fn new(position: u64) -> Self {
        Self { base: position, buf: Vec::new() }
    }

    /// Adds the next bytes of the blob; returns the lines they complete as (offset, line
    /// without its terminator), blank lines skipped.
    pub fn push(&mut self, data: &[u8]) -> Vec<(i64, Bytes)> {
        self.buf.extend_from_slice(data);
        let Some(last_nl) = memchr::memrchr(b'\n', &self.buf) else { return Vec::new() };
        let rest = self.buf.split_off(last_nl + 1);
        let complete = Bytes::from(std::mem::replace(&mut self.buf, rest));
        let mut out = Vec::new();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &complete) {
            let mut end = nl;
            while end > start && complete[end - 1].is_ascii_whitespace() {
                end -= 1;
            }
            let mut s = start;
            while s < end && complete[s].is_ascii_whitespace() {
                s += 1;
            }
            if s < end {
                out.push(((self.base + start as u64) as i64, complete.slice(s..end)));
            }
            start = nl + 1;
        }
        self.base += complete.len() as u64;
        out
    }

    /// Bytes of an unterminated last line held back.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_crlf_lines_at_their_byte_offsets_and_holds_back_an_unterminated_one() {
        let mut s = LineSplitter::new(100);
        let got = s.push(b"{\"a\":1}\r\n\r\n{\"b\":");
        assert_eq!(got, vec![(100, Bytes::from_static(b"{\"a\":1}"))]);
        assert_eq!(s.pending(), 5);
        let got = s.push(b"2}\r\n{\"c\":3}");
        assert_eq!(got, vec![(111, Bytes::from_static(b"{\"b\":2}"))]);
        assert_eq!(s.pending(), 7, "no terminator: not taken");
        assert!(s.push(b"").is_empty());
    }
}
