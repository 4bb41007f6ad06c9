//! `defender-ingest run` as a consumer group member of the real broker (tansu, from
//! `scripts/test-infra.sh`): generated Defender traffic on several partitions, to the archive
//! (local and Azurite), with the accounting per table, the probes and metrics, SIGTERM, and
//! group rebalances.

// Synchronous test code, never on a tokio worker: it waits with thread::sleep.
#![allow(clippy::disallowed_methods)]

use std::{path::Path, time::Duration};

use defender_core::Catalog;
use defender_gen::{GenOptions, Ledger, Target};
use defender_tests::{
    check_accounting, infra,
    kafka::{self, Daemon},
    python, readback,
};
use serde_json::Value;

const PARTITIONS: i32 = 4;

/// Generated message bodies (every table, quirks and broken records) spread over the
/// partitions round robin, and the generator's ledger.
fn traffic(records: u64, seed: u64) -> (Vec<(i32, Vec<u8>)>, Ledger) {
    let catalog = Catalog::embedded();
    let opts = GenOptions {
        seed,
        target: Target::Records(records),
        envelope: true,
        records_per_message: 20,
        quirks: 0.05,
        bad: 0.02,
        ..GenOptions::default()
    };
    let mut out = Vec::new();
    let ledger = defender_gen::generate(&catalog, &opts, &mut out).unwrap();
    let messages = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| ((i as i32) % PARTITIONS, l.to_vec()))
        .collect();
    (messages, ledger)
}

fn archived_rows(summary: &Value) -> u64 {
    summary["totals"]["written_archive"].as_u64().unwrap()
}

/// Produces, runs one daemon until the group committed the end of every partition, stops it
/// with SIGTERM and checks the accounting, the probes and what pyarrow reads back.
fn stream_to_archive(archive_url: &str, read_root: &str, dir: &Path) {
    let topic = kafka::unique("defender");
    let group = kafka::unique("group");
    kafka::create_topic(&topic, PARTITIONS);
    let (messages, ledger) = traffic(3000, 11);
    kafka::produce(&topic, &messages);

    let config = dir.join("kafka.toml");
    std::fs::write(
        &config,
        kafka::config(&topic, &group, &format!("[archive]\nurl = \"{archive_url}\"\nroll_seconds = 1\n")),
    )
    .unwrap();
    let blob = infra("DI_AZURITE_BLOB");
    let envs = [
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", blob.trim_end_matches("/devstoreaccount1")),
    ];
    let mut daemon = Daemon::start(&config, dir, "run", &envs);
    daemon.wait_ready(Duration::from_secs(30));
    assert_eq!(daemon.get("/healthz").unwrap().0, 200);
    let end = kafka::ends_after(&messages, PARTITIONS);
    kafka::wait_committed(&group, &topic, &end, Duration::from_secs(120));

    // The metrics show the records per table, the commits and a zero lag once caught up.
    let records_in: f64 = daemon.metric("defender_records_in_total").values().sum();
    assert_eq!(records_in as u64, ledger.records(), "records_in_total");
    let committed = daemon.metric("defender_kafka_committed_offset");
    assert_eq!(committed.len(), PARTITIONS as usize, "{committed:?}");
    for (p, end) in &end {
        assert_eq!(committed[&format!("partition=\"{topic}/{p}\"")], (*end - 1) as f64, "partition {p}");
    }
    assert_eq!(daemon.get("/nope").unwrap().0, 404);

    let (status, summary) = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM ends the run with exit 0, got {status}");
    check_accounting(&summary, &ledger);
    let rb = readback(read_root);
    let read: u64 = rb["tables"].as_object().unwrap().values().map(|t| t["rows"].as_u64().unwrap()).sum();
    assert_eq!(read, archived_rows(&summary), "pyarrow reads every archived row, once");
}

#[test]
fn streams_every_partition_to_a_local_archive_and_commits_it() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    stream_to_archive(archive, archive, dir.path());
}

#[test]
fn streams_to_an_archive_on_azurite() {
    let dir = tempfile::tempdir().unwrap();
    let container = kafka::unique("kafka").to_lowercase();
    python("azurite.py", &["create-container", &infra("DI_AZURITE_BLOB"), &container]);
    let url = format!("az://{container}/defender");
    stream_to_archive(&url, &url, dir.path());
}

/// Two daemons in one group: the second joining takes partitions from the first, the first
/// leaving hands its partitions back; every record is archived, none twice.
#[test]
fn two_consumers_split_the_partitions_and_rebalance_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let topic = kafka::unique("defender");
    let group = kafka::unique("group");
    kafka::create_topic(&topic, PARTITIONS);
    let archive = dir.path().join("archive");
    let config = dir.path().join("kafka.toml");
    let rest = format!("[archive]\nurl = \"{}\"\nroll_seconds = 1\n", archive.display());
    std::fs::write(&config, kafka::config(&topic, &group, &rest)).unwrap();

    let (first, l1) = traffic(1000, 21);
    let (second, l2) = traffic(1000, 22);
    let (third, l3) = traffic(1000, 23);
    let mut produced = Vec::new();
    let mut produce = |messages: &[(i32, Vec<u8>)]| {
        kafka::produce(&topic, messages);
        produced.extend_from_slice(messages);
        kafka::ends_after(&produced, PARTITIONS)
    };
    let mut a = Daemon::start(&config, dir.path(), "a", &[]);
    a.wait_ready(Duration::from_secs(30));
    let end = produce(&first);
    kafka::wait_committed(&group, &topic, &end, Duration::from_secs(120));

    // B joins: the group rebalances; both consume.
    let mut b = Daemon::start(&config, dir.path(), "b", &[]);
    b.wait_ready(Duration::from_secs(30));
    wait_for(|| assigned(&a) + assigned(&b) == PARTITIONS as usize && assigned(&b) > 0, "b gets partitions");
    let end = produce(&second);
    kafka::wait_committed(&group, &topic, &end, Duration::from_secs(120));
    assert!(assigned(&a) > 0, "a kept some partitions");

    // A leaves (SIGTERM): its partitions move to B.
    let (status, summary_a) = a.terminate(Duration::from_secs(60));
    assert!(status.success());
    wait_for(|| assigned(&b) == PARTITIONS as usize, "b takes every partition");
    let end = produce(&third);
    kafka::wait_committed(&group, &topic, &end, Duration::from_secs(120));
    let (status, summary_b) = b.terminate(Duration::from_secs(60));
    assert!(status.success());

    let produced = l1.records() + l2.records() + l3.records();
    let records_in = |s: &Value| s["totals"]["records_in"].as_u64().unwrap();
    assert_eq!(records_in(&summary_a) + records_in(&summary_b), produced, "every record read once over both");
    for s in [&summary_a, &summary_b] {
        let t = &s["totals"];
        let dead: u64 = t["dead_lettered"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(records_in(s), t["written_archive"].as_u64().unwrap() + t["filtered"].as_u64().unwrap() + dead);
    }
    let rb = readback(archive.to_str().unwrap());
    let read: u64 = rb["tables"].as_object().unwrap().values().map(|t| t["rows"].as_u64().unwrap()).sum();
    assert_eq!(read, archived_rows(&summary_a) + archived_rows(&summary_b), "no row lost or archived twice");
}

/// Partitions a daemon holds now.
fn assigned(d: &Daemon) -> usize {
    d.metric("defender_kafka_assigned").len()
}

fn wait_for(mut check: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `estimate` reads a bounded sample of the live topic without joining the daemons' group and
/// commits nothing.
#[test]
fn estimate_reads_a_bounded_sample_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topic = kafka::unique("defender");
    let group = kafka::unique("group");
    kafka::create_topic(&topic, PARTITIONS);
    let (messages, ledger) = traffic(2000, 31);
    kafka::produce(&topic, &messages);
    let config = dir.path().join("kafka.toml");
    std::fs::write(&config, kafka::config(&topic, &group, "")).unwrap();
    let config = config.to_str().unwrap();

    let out = defender_tests::run_cli(
        &["estimate", "--config", config, "--max-records", "500", "--duration", "120", "--json"],
        &[],
    );
    let estimate: Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = estimate["totals"]["records"].as_u64().unwrap();
    assert!((500..=ledger.records()).contains(&records), "stopped soon after 500 records: {records}");
    let all = defender_tests::run_cli(&["estimate", "--config", config, "--duration", "8", "--json"], &[]);
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all["totals"]["records"].as_u64().unwrap(), ledger.records(), "8 s read the whole topic");
    assert_eq!(kafka::committed(&group, &topic, PARTITIONS), std::collections::BTreeMap::new());
    assert_eq!(kafka::committed(&format!("{group}-estimate"), &topic, PARTITIONS), std::collections::BTreeMap::new());

    let err =
        std::process::Command::new(defender_tests::binary()).args(["estimate", "--config", config]).output().unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("--duration"), "an endless source needs a bound");
}
