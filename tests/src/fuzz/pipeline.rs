//! The pipeline-level check: a batch of inputs through the whole in-process pipeline (decode →
//! policy with KQL filters → Parquet archive on a temporary directory → Sentinel rows stored by
//! the dry-run sink), then its report checked against what the decoder-level check counted for
//! the same inputs.
//!
//! Invariants: the run succeeds (content never stops it) within a minute; every table
//! balances (`Accounting::unbalanced`); records in, decoded and the decoder's dead letters per
//! known table (and summed over unknown tables, whose names depend on the order they were seen)
//! are the decoder-level counts; every decoded row is delivered or filtered (or dead-lettered
//! when an encoder cannot take it); a table sent whole to a destination has every row there;
//! TVM and unknown tables send nothing to Sentinel; every partition commits its last offset.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use defender_core::{Accounting, Catalog, FlushRule, TableStats};
use defender_pipeline::{PipelineOptions, Policy, SentinelPath, policy::TableSettings};
use defender_sinks::{
    ArchiveConfig, ArchiveSink,
    sentinel::{DryRunSink, PackMode},
    store,
};
use defender_sources::{BytePermit, Chunk, SourceEvent, SourceIo};

/// One table's settings: (table, archive, sentinel, archive_filter, sentinel_filter).
type Entry = (&'static str, Option<bool>, Option<bool>, Option<&'static str>, Option<&'static str>);

/// Filters over the columns the mutator hits (strings with odd unicode, ints given as text, ...).
const POLICY: &[Entry] = &[
    (
        "DeviceProcessEvents",
        None,
        Some(true),
        None,
        Some(
            r#"where ProcessCommandLine has "powershell -enc" or FileName =~ "CMD.EXE" or AccountName startswith "adm"
               or ProcessCommandLine contains "é" | project Timestamp, DeviceName, ProcessCommandLine, AccountName, ReportId"#,
        ),
    ),
    (
        "DeviceNetworkEvents",
        None,
        Some(true),
        Some(r#"where ActionType != "ListeningConnectionCreated""#),
        Some(
            r#"where not(ActionType == "ConnectionSuccess" and RemotePort in (80, 443)) | project-away AdditionalFields"#,
        ),
    ),
    ("DeviceInfo", None, Some(true), None, None),
    ("CloudAppEvents", None, Some(true), None, None),
    (
        "EmailEvents",
        None,
        Some(true),
        None,
        Some(
            r#"where Subject contains "Ω" or Subject matches regex "^[A-Z]" or SenderFromAddress endswith "@contoso.com"
               or Timestamp between (datetime(2026-01-01) .. datetime(2027-01-01)) or BulkComplaintLevel > 5"#,
        ),
    ),
    (
        "DeviceEvents",
        None,
        Some(true),
        None,
        Some(
            r#"where ActionType in~ ("AntivirusDetection", "processcreatedusingwmiquery") or AdditionalFields has_any ("Ω", "x") or isnull(RemotePort)"#,
        ),
    ),
    ("DeviceLogonEvents", Some(false), Some(false), None, None),
    ("DeviceTvmSoftwareInventory", Some(true), None, None, None),
];

/// The two policies runs alternate between: only the tables above to Sentinel, or every table
/// (unknown and TVM ones refused and counted as dropped) with the archive off by default.
pub fn policies(catalog: &Catalog) -> Result<[Arc<Policy>; 2], String> {
    let mut settings = BTreeMap::new();
    for &(table, archive, sentinel, archive_filter, sentinel_filter) in POLICY {
        let filter = |f: Option<&str>| f.map(|t| (t.to_string(), 1, 1));
        settings.insert(
            table.to_string(),
            TableSettings {
                archive,
                sentinel,
                archive_filter: filter(archive_filter),
                sentinel_filter: filter(sentinel_filter),
                plan: None,
            },
        );
    }
    let first = Policy::new(catalog, &settings).map_err(|e| e.to_string())?;
    settings.insert(
        "default".into(),
        TableSettings { archive: Some(false), sentinel: Some(true), ..TableSettings::default() },
    );
    let second = Policy::new(catalog, &settings).map_err(|e| e.to_string())?;
    Ok([Arc::new(first), Arc::new(second)])
}

/// Runs `inputs` through the pipeline (spread over two partitions, epochs of a few rows) and
/// checks the report against `expected`, the decoder-level accounting of the same inputs.
pub fn check(
    catalog: &Arc<Catalog>,
    policy: &Arc<Policy>,
    inputs: &[Vec<u8>],
    expected: &Accounting,
) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let open = |name: &str| {
        store::open(dir.path().join(name).to_str().expect("temp paths are UTF-8")).map_err(|e| e.to_string())
    };
    let archive = ArchiveSink::new(open("archive")?, ArchiveConfig::default());
    let sentinel = SentinelPath::DryRun(DryRunSink::new(open("sentinel")?, catalog.clone(), PackMode::default()));
    let mut partitions: [Vec<(i64, Bytes)>; 2] = [Vec::new(), Vec::new()];
    for (i, input) in inputs.iter().enumerate() {
        let p = &mut partitions[i % 2];
        p.push((p.len() as i64, Bytes::from(input.clone())));
    }
    let last: BTreeMap<u32, i64> = (0..2u32)
        .filter(|&p| !partitions[p as usize].is_empty())
        .map(|p| (p, partitions[p as usize].len() as i64 - 1))
        .collect();
    let source = move |io: SourceIo| async move {
        for (p, messages) in partitions.into_iter().enumerate() {
            for chunk in messages.chunks(5) {
                let chunk = Chunk {
                    source: format!("fuzz/{p}").into(),
                    partition: p as u32,
                    messages: chunk.to_vec(),
                    permit: BytePermit::none(),
                };
                if io.events.send(SourceEvent::Chunk(chunk)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    };
    let options = PipelineOptions {
        flush: FlushRule { max_rows: 7, ..FlushRule::default() },
        policy: policy.clone(),
        tick: Duration::from_millis(50),
        ..PipelineOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let run = defender_pipeline::run(catalog.clone(), source, archive, Some(sentinel), options, |_| {});
    let report = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), run).await })
        .map_err(|_| "the run did not end within 60 s".to_string())?
        .map_err(|e| format!("the run failed: {e}"))?;

    let got = &report.accounting;
    if let Some((t, records_in, accounted)) = got.unbalanced().into_iter().next() {
        return Err(format!("{t}: {records_in} in, {accounted} accounted for"));
    }
    compare_decoding(catalog, got, expected)?;
    for (t, s) in &got.tables {
        check_routes(catalog, policy, t, s)?;
    }
    if report.committed != last {
        return Err(format!("committed {:?}, expected {last:?}", report.committed));
    }
    let dead_letters: u64 = got.tables.values().map(TableStats::dead_lettered_total).sum();
    if dead_letters > 0 && report.dead_letter_files == 0 {
        return Err(format!("{dead_letters} dead letters and no dead-letter file"));
    }
    Ok(())
}

/// Records in, decoded, and the decoder's dead letters: per known table, and summed over the
/// unknown ones.
fn compare_decoding(catalog: &Catalog, got: &Accounting, expected: &Accounting) -> Result<(), String> {
    let counts = |a: &Accounting| {
        let mut out: BTreeMap<String, (u64, u64, BTreeMap<String, u64>)> = BTreeMap::new();
        for (t, s) in &a.tables {
            let key = if s.unknown_table { "<unknown tables>".to_string() } else { t.clone() };
            let e = out.entry(key).or_default();
            e.0 += s.records_in;
            e.1 += s.decoded;
            for (r, n) in s.dead_lettered.iter().filter(|(r, _)| !is_sink_reason(r)) {
                *e.2.entry(r.clone()).or_default() += n;
            }
        }
        out
    };
    let (got, expected) = (counts(got), counts(expected));
    if got != expected {
        let tables: std::collections::BTreeSet<&String> = got.keys().chain(expected.keys()).collect();
        for t in tables {
            if got.get(t) != expected.get(t) {
                let known = catalog.get(t).is_some();
                return Err(format!(
                    "{t} (known: {known}): pipeline counted {:?}, the decoder alone {:?} (records in, decoded, dead letters)",
                    got.get(t),
                    expected.get(t)
                ));
            }
        }
    }
    Ok(())
}

/// Dead-letter reasons the sinks add (a batch an encoder cannot take).
fn is_sink_reason(reason: &str) -> bool {
    reason == "encode_failed"
}

fn check_routes(catalog: &Catalog, policy: &Policy, table: &str, s: &TableStats) -> Result<(), String> {
    let encode_failed = s.dead_lettered.get("encode_failed").copied().unwrap_or(0);
    let fail = |what: String| Err(format!("{table}: {what} ({s:?})"));
    if s.delivered + s.filtered + encode_failed != s.decoded {
        return fail(format!(
            "{} delivered + {} filtered + {encode_failed} encode_failed != {} decoded",
            s.delivered, s.filtered, s.decoded
        ));
    }
    let routes = policy.routes(catalog, table);
    let known = catalog.get(table).is_some();
    let sentinel_whole =
        routes.sentinel.enabled && routes.sentinel.filter.is_none() && known && routes.sentinel_refused.is_none();
    if sentinel_whole && s.sent_sentinel + s.sentinel_rejected != s.decoded {
        return fail(format!(
            "sent whole to Sentinel: {} sent + {} rejected != {} decoded",
            s.sent_sentinel, s.sentinel_rejected, s.decoded
        ));
    }
    if (!known || routes.sentinel_refused.is_some() || !routes.sentinel.enabled)
        && s.sent_sentinel + s.sentinel_rejected > 0
    {
        return fail("rows on a closed Sentinel path".into());
    }
    if s.sent_sentinel + s.sentinel_rejected > s.delivered {
        return fail("more rows to Sentinel than delivered".into());
    }
    let archive_whole = routes.archive.enabled && routes.archive.filter.is_none();
    if archive_whole && s.written_archive + encode_failed != s.decoded {
        return fail(format!(
            "archived whole: {} written + {encode_failed} encode_failed != {} decoded",
            s.written_archive, s.decoded
        ));
    }
    if !routes.archive.enabled && s.written_archive > 0 {
        return fail("rows in a closed archive".into());
    }
    Ok(())
}
