//! Encoded rows → gzip'd Logs Ingestion request bodies (`[row,row,…]`), within the API limits.
//!
//! Two modes (DESIGN §3, contracts §d):
//! - [`PackMode::Uncompressed`] (default): the JSON array is at most `max_bytes` (1 MiB) before
//!   compression, then gzipped. This is what Microsoft's own SDKs do, so the service accepts it
//!   whatever it measures. Our bound is stricter than the Python client's (which sums the records'
//!   sizes and ignores separators): the whole array, brackets and commas included, fits.
//! - [`PackMode::Compressed`]: the gzip body is at most `max_wire_bytes` on the wire and its JSON
//!   at most `max_decompressed`, for far fewer calls. Rows are compressed incrementally into one
//!   stream; the exact output size is known after each sync flush, and a row is added only while
//!   a worst-case bound (flushed output + stored-block expansion of the unflushed input + gzip
//!   overhead) stays within the limit. When the bound would pass it, the stream is sync-flushed
//!   to learn its exact size; if the row still does not fit, the body is closed. As a last guard a
//!   finished body over the limit is re-packed in halves, so no body ever exceeds it.
//!
//! With a time window ([`Packer::with_time_window`]; [`Packer::for_plan`] sets
//! [`AUXILIARY_MAX_SPAN`] for Auxiliary tables) a body also ends before a row that would make
//! its rows' `TimeGenerated` ([`EncodedRows::time`]) span the window or more: the Logs Ingestion
//! API refuses an Auxiliary call whose rows span more than 30 minutes
//! (`RecordsTimeRangeIsMoreThan30Minutes`, a "known limitation" of tables without a
//! transformation, Microsoft's "Logs Ingestion API" overview). The packer keeps rows in the order
//! given, so rows sorted by time ([`EncodedRows::sorted_by_time`]) make the fewest bodies; a row
//! far in the past or future then ends up in a body of its own window.
//!
//! Invariants: bodies cover contiguous row ranges in order, each row is in exactly one body or in
//! [`Packed::rejected`] (a row that cannot fit alone under a limit: reported with its reason,
//! never dropped silently), and a rejected row ends the body before it.

use std::{io::Write, ops::Range, time::Duration};

use defender_core::billing::Tier;
use flate2::{Compression, write::GzEncoder};

use super::rows::EncodedRows;

/// How bodies are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackMode {
    /// The JSON array is at most `max_bytes` before compression.
    Uncompressed { max_bytes: usize },
    /// The gzip body is at most `max_wire_bytes`, its JSON at most `max_decompressed`.
    Compressed { max_wire_bytes: usize, max_decompressed: usize },
}

impl PackMode {
    /// Microsoft's SDK rule: 1 MiB of uncompressed JSON per call.
    pub const SDK: Self = Self::Uncompressed { max_bytes: 1_048_576 };
    /// 1 MB on the wire, at most 50 MiB decompressed.
    pub const COMPRESSED: Self = Self::Compressed { max_wire_bytes: 1_000_000, max_decompressed: 50 * 1024 * 1024 };
}

impl Default for PackMode {
    fn default() -> Self {
        Self::SDK
    }
}

/// One request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The gzip'd JSON array (send with `Content-Encoding: gzip`).
    pub gzip: Vec<u8>,
    /// Number of rows in it.
    pub rows: usize,
    /// Length of the JSON array before compression.
    pub uncompressed_len: usize,
    /// Index (in the [`EncodedRows`] it was packed from) of its first row.
    pub first_row: usize,
}

impl Body {
    /// The rows it holds, as indexes into the [`EncodedRows`] it was packed from.
    pub fn range(&self) -> Range<usize> {
        self.first_row..self.first_row + self.rows
    }
}

/// Why a row cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("row of {bytes} bytes exceeds the {limit}-byte limit on a request's json")]
    TooLarge { bytes: usize, limit: usize },
    #[error("row of {bytes} bytes compresses to {wire} bytes, over the {limit}-byte limit on a request")]
    TooLargeCompressed { bytes: usize, wire: usize, limit: usize },
    #[error("row of {bytes} bytes exceeds the {limit}-byte cap on a request's decompressed json")]
    OverDecompressedCap { bytes: usize, limit: usize },
}

/// A row that fits in no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its index in the [`EncodedRows`].
    pub row: usize,
    pub reason: RejectReason,
}

/// The result of packing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packed {
    pub bodies: Vec<Body>,
    pub rejected: Vec<Rejected>,
}

/// gzip header (10) + trailer (8) + final block and sync-flush markers, with room to spare.
const GZIP_OVERHEAD: usize = 64;

/// Worst-case deflate output for `n` input bytes not yet flushed: stored blocks (5 header bytes
/// per ≤ 64 KiB) are the compressor's fallback, bounded here with a wide margin.
fn deflate_bound(n: usize) -> usize {
    n + n / 1024 + 64
}

/// The default gzip level of the bodies. In the default mode ([`PackMode::SDK`]) the JSON bound
/// cuts the bodies, so the level changes only wire bytes and CPU, not the number of calls: level
/// 1 costs a fraction of level 6's CPU for about 4× instead of 7× on the wire
/// (`benches/RESULTS.md`, gzip). In [`PackMode::Compressed`] the ratio sets the rows per call:
/// level 6 fits about 1.7× the rows of level 1 per call, at 2–3 times the CPU.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;

/// The time window of an Auxiliary table's calls: their rows' `TimeGenerated` span less.
pub const AUXILIARY_MAX_SPAN: Duration = Duration::from_secs(30 * 60);

/// Packs encoded rows into request bodies.
#[derive(Debug, Clone)]
pub struct Packer {
    mode: PackMode,
    level: Compression,
    /// A body's rows span less than this many nanoseconds of `TimeGenerated`.
    window: Option<i64>,
}

impl Packer {
    /// `level` is the gzip level, 0 (store) to 9 (best); higher values are taken as 9.
    pub fn new(mode: PackMode, level: u32) -> Self {
        Self { mode, level: Compression::new(level.min(9)), window: None }
    }

    /// Bodies whose rows span less than `window` of `TimeGenerated` (`None`: any span).
    pub fn with_time_window(mut self, window: Option<Duration>) -> Self {
        self.window = window.map(|w| i64::try_from(w.as_nanos()).unwrap_or(i64::MAX).max(1));
        self
    }

    /// This packer with the window a table of `plan` needs: [`AUXILIARY_MAX_SPAN`] for
    /// Auxiliary, none for the others.
    pub fn for_plan(&self, plan: Tier) -> Self {
        self.clone().with_time_window((plan == Tier::Auxiliary).then_some(AUXILIARY_MAX_SPAN))
    }

    pub fn mode(&self) -> PackMode {
        self.mode
    }

    /// The time window, if any.
    pub fn time_window(&self) -> Option<Duration> {
        self.window.map(|w| Duration::from_nanos(w as u64))
    }

    /// Whether a body whose rows' times are within `span` can take a row of time `t`.
    fn in_window(&self, span: Option<(i64, i64)>, t: i64) -> bool {
        match (self.window, span) {
            (Some(w), Some((lo, hi))) => (hi.max(t) as i128 - lo.min(t) as i128) < w as i128,
            _ => true,
        }
    }

    /// Packs all rows.
    pub fn pack(&self, rows: &EncodedRows) -> Packed {
        self.pack_range(rows, 0..rows.len())
    }

    /// Packs the rows of `range` (indexes into `rows`).
    pub fn pack_range(&self, rows: &EncodedRows, range: Range<usize>) -> Packed {
        let mut packed = Packed::default();
        match self.mode {
            PackMode::Uncompressed { max_bytes } => self.pack_uncompressed(rows, range, max_bytes, &mut packed),
            PackMode::Compressed { max_wire_bytes, max_decompressed } => {
                self.pack_compressed(rows, range, max_wire_bytes, max_decompressed, &mut packed);
            }
        }
        packed
    }

    /// Halves a body the service refused as too large (413): the left half holds its first
    /// `rows / 2` rows. Each half's JSON is shorter than the body's. None for a single row.
    pub fn split(&self, rows: &EncodedRows, body: &Body) -> Option<(Body, Body)> {
        if body.rows < 2 {
            return None;
        }
        let mid = body.first_row + body.rows / 2;
        Some((self.build(rows, body.first_row..mid), self.build(rows, mid..body.range().end)))
    }

    fn pack_uncompressed(&self, rows: &EncodedRows, range: Range<usize>, max: usize, packed: &mut Packed) {
        // `size`: bytes of `[` + rows + commas so far (0 for an empty body); the body is size + 1.
        // `span`: the earliest and latest time of its rows.
        let (mut start, mut size, mut span) = (range.start, 0, None);
        for i in range.clone() {
            let len = rows.row(i).len();
            if len + 2 > max {
                self.flush(rows, start..i, packed);
                packed.rejected.push(Rejected { row: i, reason: RejectReason::TooLarge { bytes: len, limit: max } });
                (start, size, span) = (i + 1, 0, None);
                continue;
            }
            let t = rows.time(i);
            if size != 0 && (size + len + 2 > max || !self.in_window(span, t)) {
                self.flush(rows, start..i, packed);
                (start, size, span) = (i, 0, None);
            }
            size += len + 1;
            span = Some(span.map_or((t, t), |(lo, hi): (i64, i64)| (lo.min(t), hi.max(t))));
        }
        self.flush(rows, start..range.end, packed);
    }

    fn flush(&self, rows: &EncodedRows, range: Range<usize>, packed: &mut Packed) {
        if !range.is_empty() {
            packed.bodies.push(self.build(rows, range));
        }
    }

    fn pack_compressed(
        &self,
        rows: &EncodedRows,
        range: Range<usize>,
        max_wire: usize,
        max_json: usize,
        packed: &mut Packed,
    ) {
        let mut open: Option<OpenBody> = None;
        for i in range {
            let row = rows.row(i);
            let len = row.len();
            if len + 2 > max_json {
                self.close(rows, open.take(), max_wire, packed);
                let reason = RejectReason::OverDecompressedCap { bytes: len, limit: max_json };
                packed.rejected.push(Rejected { row: i, reason });
                continue;
            }
            let t = rows.time(i);
            if let Some(body) = &mut open {
                let room = body.json_len + len + 2 <= max_json
                    && self.in_window(body.span, t)
                    && (body.fits(len, max_wire) || {
                        body.sync_flush();
                        body.fits(len, max_wire)
                    });
                if room {
                    body.append(b",", row);
                    body.span = body.span.map(|(lo, hi)| (lo.min(t), hi.max(t)));
                    continue;
                }
                self.close(rows, open.take(), max_wire, packed);
            }
            if GZIP_OVERHEAD + deflate_bound(len + 2) <= max_wire {
                let mut body = OpenBody::new(i, self.level);
                body.append(b"[", row);
                body.span = Some((t, t));
                open = Some(body);
            } else {
                // Too large for the bound alone: it may still compress under the limit.
                self.emit(rows, self.build(rows, i..i + 1), max_wire, packed);
            }
        }
        self.close(rows, open, max_wire, packed);
    }

    fn close(&self, rows: &EncodedRows, open: Option<OpenBody>, max_wire: usize, packed: &mut Packed) {
        if let Some(body) = open {
            self.emit(rows, body.finish(), max_wire, packed);
        }
    }

    /// Keeps `body` if it is within `max_wire`; else re-packs its rows in halves (a single row
    /// is rejected). Only reached if the bound in [`OpenBody::fits`] were wrong, or for a row too
    /// large for the bound alone.
    fn emit(&self, rows: &EncodedRows, body: Body, max_wire: usize, packed: &mut Packed) {
        debug_assert!(body.gzip.len() <= max_wire || body.rows == 1, "the deflate bound was exceeded");
        if body.gzip.len() <= max_wire {
            packed.bodies.push(body);
        } else if body.rows == 1 {
            let reason = RejectReason::TooLargeCompressed {
                bytes: body.uncompressed_len - 2,
                wire: body.gzip.len(),
                limit: max_wire,
            };
            packed.rejected.push(Rejected { row: body.first_row, reason });
        } else if let Some((left, right)) = self.split(rows, &body) {
            self.emit(rows, left, max_wire, packed);
            self.emit(rows, right, max_wire, packed);
        }
    }

    /// Compresses the rows of `range` into one body, with no limit check.
    fn build(&self, rows: &EncodedRows, range: Range<usize>) -> Body {
        let json_len: usize = 1 + range.clone().map(|i| rows.row(i).len() + 1).sum::<usize>();
        let mut body = OpenBody::new(range.start, self.level);
        for i in range {
            body.append(if body.rows == 0 { b"[" } else { b"," }, rows.row(i));
        }
        let body = body.finish();
        debug_assert_eq!(body.uncompressed_len, json_len.max(2));
        body
    }
}

/// A body being compressed.
struct OpenBody {
    gz: GzEncoder<Vec<u8>>,
    first_row: usize,
    rows: usize,
    json_len: usize,
    /// Exact output length at the last sync flush (0 before the first).
    flushed_out: usize,
    /// Input written since the last sync flush.
    pending: usize,
    /// The earliest and latest time of its rows (kept by the packer).
    span: Option<(i64, i64)>,
}

impl OpenBody {
    fn new(first_row: usize, level: Compression) -> Self {
        Self {
            gz: GzEncoder::new(Vec::new(), level),
            first_row,
            rows: 0,
            json_len: 0,
            flushed_out: 0,
            pending: 0,
            span: None,
        }
    }

    /// Whether `,` + a row of `len` bytes + the closing `]` surely fit under `max_wire`.
    fn fits(&self, len: usize, max_wire: usize) -> bool {
        self.flushed_out + deflate_bound(self.pending + len + 2) + GZIP_OVERHEAD <= max_wire
    }

    fn sync_flush(&mut self) {
        if self.pending > 0 {
            self.gz.flush().expect("writing to a Vec cannot fail");
            self.flushed_out = self.gz.get_ref().len();
            self.pending = 0;
        }
    }

    fn append(&mut self, separator: &[u8], row: &[u8]) {
        self.gz.write_all(separator).expect("writing to a Vec cannot fail");
        self.gz.write_all(row).expect("writing to a Vec cannot fail");
        self.rows += 1;
        self.json_len += separator.len() + row.len();
        self.pending += separator.len() + row.len();
    }

    fn finish(mut self) -> Body {
        if self.rows == 0 {
            self.gz.write_all(b"[").expect("writing to a Vec cannot fail");
            self.json_len += 1;
        }
        self.gz.write_all(b"]").expect("writing to a Vec cannot fail");
        let mut gzip = self.gz.finish().expect("writing to a Vec cannot fail");
        gzip.shrink_to_fit(); // held until accepted, through retries: not twice its length
        Body { gzip, rows: self.rows, uncompressed_len: self.json_len + 1, first_row: self.first_row }
    }
}
