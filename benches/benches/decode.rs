//! Decode throughput: our decoder against arrow-json's `Decoder` on the same generated corpus,
//! in the same run (DESIGN §8: ours ≥ 2.5× arrow-json on one core).
//!
//! Both produce typed Arrow batches of the table schema. arrow-json cannot route records by
//! `category` nor keep a JSON object as text, so it is given each table's records already split
//! and with object values already turned into JSON text (outside the timed loop: both favour
//! arrow-json), and decodes them with a nested `properties` struct; ours is given the messages
//! as they arrive.
//!
//! Run: `cargo bench -p defender-benches --bench decode`

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use arrow_json::ReaderBuilder;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use defender_core::{
    Catalog, Decoder, FlushRule,
    schema::{COL_ENVELOPE_TENANT, COL_ENVELOPE_TIME, COL_EXTRA, COL_TIME_RECEIVED, TableSchema, timestamp_type},
};
use defender_gen::{GenOptions, Target};

struct Corpus {
    name: &'static str,
    /// What our decoder reads: one message (or record) per line.
    lines: Vec<Vec<u8>>,
    bytes: u64,
    /// What arrow-json reads: per table, its bare records as NDJSON.
    per_table: Vec<(SchemaRef, Vec<u8>)>,
}

/// Our schema's types for arrow-json: the same, with the UTC zone written as an offset (arrow-json
/// has no named time zones without chrono-tz); the values are identical.
fn for_arrow_json(ty: &DataType) -> DataType {
    match ty {
        DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, Some("+00:00".into())),
        other => other.clone(),
    }
}

fn arrow_json_schema(table: &TableSchema) -> SchemaRef {
    let ours = table.arrow_schema();
    let internal = [COL_ENVELOPE_TIME, COL_ENVELOPE_TENANT, COL_TIME_RECEIVED, COL_EXTRA];
    let props: Vec<Field> = ours
        .fields()
        .iter()
        .filter(|f| !internal.contains(&f.name().as_str()))
        .map(|f| Field::new(f.name(), for_arrow_json(f.data_type()), true))
        .collect();
    let ts = for_arrow_json(&timestamp_type());
    Arc::new(Schema::new(vec![
        Field::new("time", ts.clone(), true),
        Field::new("tenantId", DataType::Utf8, true),
        Field::new("operationName", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("_TimeReceivedBySvc", ts, true),
        Field::new("properties", DataType::Struct(props.into()), true),
    ]))
}

fn corpus(name: &'static str, catalog: &Catalog, tables: &[&str], envelope: bool, bytes: u64) -> Corpus {
    let options = GenOptions {
        seed: 7,
        tables: tables.iter().map(|t| t.to_string()).collect(),
        target: Target::Bytes(bytes),
        envelope,
        ..GenOptions::default()
    };
    let mut out = Vec::new();
    defender_gen::generate(catalog, &options, &mut out).expect("generate into memory");
    let lines: Vec<Vec<u8>> = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    let mut per_table: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_slice(line).expect("generated JSON");
        let records = match v.get("records") {
            Some(serde_json::Value::Array(r)) => r.clone(),
            _ => vec![v],
        };
        for mut r in records {
            let table = r["category"].as_str().unwrap().trim_start_matches("AdvancedHunting-").to_string();
            // arrow-json cannot keep an object or array as JSON text: hand it the text already.
            if let Some(props) = r["properties"].as_object_mut() {
                for v in props.values_mut().filter(|v| v.is_object() || v.is_array()) {
                    *v = serde_json::Value::String(v.to_string());
                }
            }
            let buf = per_table.entry(table).or_default();
            serde_json::to_writer(&mut *buf, &r).unwrap();
            buf.push(b'\n');
        }
    }
    let per_table = per_table.into_iter().map(|(t, buf)| (arrow_json_schema(catalog.get(&t).unwrap()), buf)).collect();
    let bytes = lines.iter().map(|l| l.len() as u64 + 1).sum();
    Corpus { name, lines, bytes, per_table }
}

fn decode_ours(catalog: &Catalog, corpus: &Corpus) -> usize {
    let rule = FlushRule { max_rows: usize::MAX, max_bytes: usize::MAX, max_age: Duration::MAX };
    let mut d = Decoder::new(catalog, "bench".into(), 0, rule);
    for (i, line) in corpus.lines.iter().enumerate() {
        d.decode(line, i as i64);
    }
    d.flush().map_or(0, |o| o.batches.iter().map(|b| b.rows()).sum())
}

fn decode_arrow_json(corpus: &Corpus) -> usize {
    let mut rows = 0;
    for (schema, ndjson) in &corpus.per_table {
        let mut decoder = ReaderBuilder::new(schema.clone()).with_batch_size(8192).build_decoder().unwrap();
        let mut buf = &ndjson[..];
        while !buf.is_empty() {
            let n = decoder.decode(buf).unwrap();
            buf = &buf[n..];
            if let Some(b) = decoder.flush().unwrap() {
                rows += b.num_rows();
            }
        }
        if let Some(b) = decoder.flush().unwrap() {
            rows += b.num_rows();
        }
    }
    rows
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::embedded();
    let corpora = [
        corpus("DeviceProcessEvents", &catalog, &["DeviceProcessEvents"], false, 16_000_000),
        corpus("mixed", &catalog, &[], true, 16_000_000),
    ];
    for corpus in &corpora {
        let ours = decode_ours(&catalog, corpus);
        let theirs = decode_arrow_json(corpus);
        assert_eq!(ours, theirs, "both decoders produce every row of {}", corpus.name);
        let mut group = c.benchmark_group(format!("decode/{}", corpus.name));
        group.throughput(Throughput::Bytes(corpus.bytes));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(10));
        group.bench_function("defender-core", |b| b.iter(|| decode_ours(&catalog, corpus)));
        group.bench_function("arrow-json", |b| b.iter(|| decode_arrow_json(corpus)));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
