//! Gzip of Logs Ingestion bodies: which implementation and level (issue 10, item 2).
//!
//! The corpus is what the Sentinel packer sees: generated Event Hubs messages
//! (`defender-gen`, seed 11) decoded by `defender-core` and turned into the sink's own row JSON
//! by `RowEncoder` (public API), per table. The default packer (`PackMode::SDK`, ≤ 1 MiB of JSON
//! per call) cuts them into bodies; every candidate compresses exactly those bodies, so
//! throughput (`Throughput::Bytes`: MB of uncompressed JSON per second, one core) and ratio
//! compare on the same input in the same run:
//!
//! - `packer-flate2`: the real `Packer::pack` as built here (flate2's default backend,
//!   miniz_oxide, unless a feature elsewhere in the build switches it), rows streamed into
//!   `GzEncoder` one by one; the reference;
//! - `miniz_oxide`, `zlib-rs`, `libdeflate`: one-shot gzip of each body's JSON through each
//!   crate directly (independent of flate2's backend choice), a fresh compressor per body as the
//!   packer makes one per body;
//! - `packer-compressed-flate2`: `PackMode::COMPRESSED` (≤ 1 MB of gzip per call), the real
//!   packer with its sync flushes, for the rows per call it reaches.
//!
//! Before timing, every output is decompressed and compared with its input, and a table of
//! ratios and rows per call is printed (stderr): the level cannot change the number of calls in
//! the default mode (the JSON bound cuts the bodies), only the wire bytes and the CPU; in the
//! compressed mode the ratio sets the rows per call.
//!
//! Run: `cargo bench -p defender-benches --bench gzip`

use std::{
    hint::black_box,
    io::{Read, Write},
    time::Duration,
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use defender_core::{Catalog, Decoder, FlushRule};
use defender_gen::{GenOptions, Target};
use defender_sinks::sentinel::{EncodedRows, PackMode, Packer, RowEncoder};

const LEVELS: [u32; 4] = [1, 2, 3, 6];
/// `PackMode::COMPRESSED`'s wire limit.
const WIRE_LIMIT: usize = 1_000_000;

struct Corpus {
    name: &'static str,
    /// Encoded rows, one set per table batch.
    tables: Vec<EncodedRows>,
    /// The JSON arrays the default packer sends, one per call.
    bodies: Vec<Vec<u8>>,
    rows: usize,
    json_bytes: u64,
}

fn corpus(name: &'static str, catalog: &Catalog, tables: &[&str], bytes: u64) -> Corpus {
    let options = GenOptions {
        seed: 11,
        tables: tables.iter().map(|t| t.to_string()).collect(),
        target: Target::Bytes(bytes),
        ..GenOptions::default()
    };
    let mut out = Vec::new();
    defender_gen::generate(catalog, &options, &mut out).expect("generate into memory");
    let rule = FlushRule { max_rows: usize::MAX, max_bytes: usize::MAX, max_age: Duration::MAX };
    let mut decoder = Decoder::new(catalog, "bench".into(), 0, rule);
    for (i, line) in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        decoder.decode(line, i as i64);
    }
    let decoded = decoder.flush().expect("rows decoded");
    let mut encoded = Vec::new();
    for batch in &decoded.batches {
        let table = catalog.get(&batch.table).expect("a catalog table");
        let mut encoder = RowEncoder::new(table, &batch.batch.schema()).expect("an encoder");
        let mut rows = EncodedRows::new();
        encoder.encode(&batch.batch, &mut rows).expect("encoded rows");
        encoded.push(rows);
    }
    let packer = Packer::new(PackMode::SDK, 6);
    let mut bodies = Vec::new();
    for rows in &encoded {
        let packed = packer.pack(rows);
        assert!(packed.rejected.is_empty(), "no generated row is too large");
        for body in &packed.bodies {
            let mut json = Vec::with_capacity(body.uncompressed_len);
            for (n, i) in body.range().enumerate() {
                json.push(if n == 0 { b'[' } else { b',' });
                json.extend_from_slice(rows.row(i));
            }
            json.push(b']');
            assert_eq!(json.len(), body.uncompressed_len);
            bodies.push(json);
        }
    }
    let rows = encoded.iter().map(EncodedRows::len).sum();
    let json_bytes = bodies.iter().map(|b| b.len() as u64).sum();
    Corpus { name, tables: encoded, bodies, rows, json_bytes }
}

#[derive(Debug, Clone, Copy)]
enum Gzip {
    Miniz,
    ZlibRs,
    Libdeflate,
}

impl Gzip {
    const ALL: [Self; 3] = [Self::Miniz, Self::ZlibRs, Self::Libdeflate];

    fn name(self) -> &'static str {
        match self {
            Self::Miniz => "miniz_oxide",
            Self::ZlibRs => "zlib-rs",
            Self::Libdeflate => "libdeflate",
        }
    }

    /// One gzip member holding `input`.
    fn compress(self, input: &[u8], level: u32) -> Vec<u8> {
        match self {
            Self::Miniz => {
                // flate2's GzEncoder framing around miniz_oxide's raw deflate.
                let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
                out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(input, level as u8));
                out.extend_from_slice(&crc32fast::hash(input).to_le_bytes());
                out.extend_from_slice(&(input.len() as u32).to_le_bytes());
                out
            }
            Self::ZlibRs => {
                let mut out = vec![0; zlib_rs::compress_bound(input.len()) + 32];
                // Window bits 16 + 15: a gzip wrapper around a 32 KiB window.
                let config = zlib_rs::DeflateConfig { window_bits: 31, ..zlib_rs::DeflateConfig::new(level as i32) };
                let (written, rc) = zlib_rs::compress_slice(&mut out, input, config);
                assert_eq!(rc, zlib_rs::ReturnCode::Ok, "zlib-rs compress");
                let n = written.len();
                out.truncate(n);
                out
            }
            Self::Libdeflate => {
                let level = libdeflater::CompressionLvl::new(level as i32).expect("a libdeflate level");
                let mut c = libdeflater::Compressor::new(level);
                let mut out = vec![0; c.gzip_compress_bound(input.len())];
                let n = c.gzip_compress(input, &mut out).expect("libdeflate compress");
                out.truncate(n);
                out
            }
        }
    }
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut out).expect("valid gzip");
    out
}

/// The default packer's bodies, compressed by `gzip` at `level`: total gzip bytes.
fn one_shot(corpus: &Corpus, gzip: Gzip, level: u32) -> usize {
    corpus.bodies.iter().map(|b| gzip.compress(b, level).len()).sum()
}

/// The real packer over every table's rows: (bodies, gzip bytes, JSON bytes).
fn packer(corpus: &Corpus, mode: PackMode, level: u32) -> (usize, usize, usize) {
    let packer = Packer::new(mode, level);
    let (mut calls, mut wire, mut json) = (0, 0, 0);
    for rows in &corpus.tables {
        let packed = packer.pack(rows);
        calls += packed.bodies.len();
        for b in &packed.bodies {
            wire += b.gzip.len();
            json += b.uncompressed_len;
        }
    }
    (calls, wire, json)
}

/// Rows in one full call of the compressed mode (1 MB of gzip) at the ratio that `rows` reached
/// in `wire` bytes: what the ratio is worth in calls, apart from how the tables cut the bodies.
fn full_call_rows(rows: usize, wire: usize) -> f64 {
    rows as f64 * WIRE_LIMIT as f64 / wire as f64
}

/// Checks every candidate's output and prints ratios and rows per call (not timed).
fn report(corpus: &Corpus) {
    let mut err = std::io::stderr().lock();
    let calls = corpus.bodies.len();
    let _ = writeln!(
        err,
        "\n{}: {} rows, {:.1} MB of row JSON, default mode (SDK, ≤ 1 MiB JSON): {} calls, {:.0} rows/call at every level",
        corpus.name,
        corpus.rows,
        corpus.json_bytes as f64 / 1e6,
        calls,
        corpus.rows as f64 / calls as f64
    );
    let _ = writeln!(
        err,
        "{:<26} {:>5} {:>12} {:>7} {:>18} {:>20}",
        "candidate", "level", "gzip bytes", "ratio", "rows per 1 MB gzip", "compressed: calls"
    );
    for level in LEVELS {
        for gzip in Gzip::ALL {
            for body in &corpus.bodies {
                assert_eq!(gunzip(&gzip.compress(body, level)), *body, "{} level {level} round-trips", gzip.name());
            }
            let wire = one_shot(corpus, gzip, level);
            let _ = writeln!(
                err,
                "{:<26} {:>5} {:>12} {:>6.2}× {:>18.0} {:>20}",
                gzip.name(),
                level,
                wire,
                corpus.json_bytes as f64 / wire as f64,
                full_call_rows(corpus.rows, wire),
                "-"
            );
        }
        let (sdk_calls, sdk_wire, _) = packer(corpus, PackMode::SDK, level);
        assert_eq!(sdk_calls, calls, "the level does not change the default mode's calls");
        let (c_calls, c_wire, c_json) = packer(corpus, PackMode::COMPRESSED, level);
        let _ = writeln!(
            err,
            "{:<26} {:>5} {:>12} {:>6.2}× {:>18.0} {:>20}",
            "packer-flate2 (as built)",
            level,
            sdk_wire,
            corpus.json_bytes as f64 / sdk_wire as f64,
            full_call_rows(corpus.rows, sdk_wire),
            format!("{c_calls} at {:.2}×", c_json as f64 / c_wire as f64)
        );
    }
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::embedded();
    let corpora = [
        corpus("DeviceProcessEvents", &catalog, &["DeviceProcessEvents"], 8_000_000),
        corpus("DeviceNetworkEvents", &catalog, &["DeviceNetworkEvents"], 8_000_000),
        corpus("mixed", &catalog, &[], 8_000_000),
    ];
    for corpus in &corpora {
        report(corpus);
    }
    for corpus in &corpora {
        let mut group = c.benchmark_group(format!("gzip/{}", corpus.name));
        group.throughput(Throughput::Bytes(corpus.json_bytes));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        for level in LEVELS {
            group.bench_function(format!("packer-flate2/{level}"), |b| {
                b.iter(|| packer(corpus, PackMode::SDK, black_box(level)))
            });
            for gzip in Gzip::ALL {
                group.bench_function(format!("{}/{level}", gzip.name()), |b| {
                    b.iter(|| one_shot(corpus, gzip, black_box(level)))
                });
            }
            group.bench_function(format!("packer-compressed-flate2/{level}"), |b| {
                b.iter(|| packer(corpus, PackMode::COMPRESSED, black_box(level)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
