//! `backfill --capture ... --then-checkpoint live.toml` handing off to the native Event Hubs
//! (AMQP) source: the local Event Hubs endpoint (crates/eventhubs-server) holds the events,
//! Microsoft's Python SDK reads the first of each partition and fastavro writes them as Capture
//! files with their real sequence numbers and offsets (tests/python/capture_from_hub.py); the
//! backfill archives them and writes the Blob checkpoints (Azurite) the daemon then starts
//! from. Every event ends up in the archive exactly once across both runs.
//!
//! Needs the test infrastructure (`scripts/test.sh`: Azurite, the Python venv) and the
//! `defender-eventhubs-server` and `defender-ingest` binaries of this build.

// Synchronous test code, never on a tokio worker: it waits with thread::sleep.
#![allow(clippy::disallowed_methods)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use defender_tests::{
    archived_report_ids, assert_exactly_once, binary, eventhubs::EventHubs, infra, kafka::Daemon, python,
};
use serde_json::Value;

const PARTITIONS: u32 = 3;
/// Messages produced to each partition.
const PER_PARTITION: i64 = 12;
/// Of them, the first ones captured, per partition: partition 2 has no capture file (the
/// daemon reads it from its start).
const CAPTURED: [i64; PARTITIONS as usize] = [5, 8, 0];
const RECORDS_PER_MESSAGE: i64 = 4;
const CS_ENV: &str = "DI_TEST_HANDOFF_CONNECTION_STRING";
const SAS_ENV: &str = "DI_TEST_HANDOFF_CHECKPOINT_SAS";
/// As users write it: the checkpoint blobs must be under `$default/`.
const GROUP: &str = "$Default";

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}{:x}{:x}", std::process::id(), n % 0xffff_ffff)
}

/// Message `m`: DeviceInfo records with unique ReportIds `m * 4 + i`.
fn message(m: i64) -> Vec<u8> {
    let records: Vec<String> = (0..RECORDS_PER_MESSAGE)
        .map(|i| {
            let id = m * RECORDS_PER_MESSAGE + i;
            format!(
                r#"{{"time":"2026-11-20T12:00:00Z","tenantId":"t","operationName":"Publish","category":"AdvancedHunting-DeviceInfo","properties":{{"Timestamp":"2026-11-20T12:{:02}:{:02}Z","DeviceId":"dev-{}","DeviceName":"host-{}","ReportId":{id}}}}}"#,
                (id / 60) % 60,
                id % 60,
                id % 7,
                id % 7
            )
        })
        .collect();
    format!(r#"{{"records":[{}]}}"#, records.join(",")).into_bytes()
}

/// A live config of `[source.eventhubs]` on `hub` of `namespace`, archive at `archive`.
fn live_config(path: &Path, namespace: &str, hub: &str, container_url: &str, endpoint: &str, archive: &Path) {
    let text = format!(
        r#"
[source.eventhubs]
namespace = "{namespace}"
event_hub = "{hub}"
consumer_group = "{GROUP}"
checkpoint_container = "{container_url}"
custom_endpoint = "{endpoint}"
connection_string_env = "{CS_ENV}"
checkpoint_sas_env = "{SAS_ENV}"
load_balancing_interval_seconds = 1
partition_expiration_seconds = 5
checkpoint_interval_ms = 300

[pipeline]
flush_seconds = 1

[archive]
url = "{archive}"
roll_seconds = 1
"#,
        archive = archive.display()
    );
    std::fs::write(path, text).unwrap();
}

fn cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(binary()).args(args).envs(envs.iter().copied()).output().expect("spawn defender-ingest")
}

fn checkpoint_blobs(container: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let out = python("eventhubs_checkpoints.py", &["blobs", &infra("DI_AZURITE_BLOB"), container]);
    serde_json::from_str(&out).unwrap()
}

/// `records` DeviceInfo records in, every one archived, and the accounting balances.
fn check_accounting(summary: &Value, records: i64) {
    defender_tests::check_balanced(summary, "DeviceInfo", records as u64);
    let t = &summary["tables"]["DeviceInfo"];
    assert_eq!(t["written_archive"].as_i64(), Some(records), "nothing filtered or dead-lettered: {summary}");
}

/// The stderr lines of the hand-off's checkpoint writer, by partition.
fn checkpoint_lines(stderr: &str) -> BTreeMap<String, Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["checkpoint"] == "eventhubs"))
        .map(|v| (v["partition_id"].as_str().unwrap().to_string(), v))
        .collect()
}

#[test]
fn capture_backfill_hands_off_to_the_amqp_source_with_no_gap_and_no_overlap() {
    let dir = tempfile::tempdir().unwrap();
    // Upper case in the hub's name: the checkpoint blobs must be lower-cased.
    let hub = unique("Defender-Hub");
    let hubs = EventHubs::start(dir.path(), &hub, PARTITIONS);
    let blob = infra("DI_AZURITE_BLOB");
    let container = unique("handoff");
    let sas = python("eventhubs_checkpoints.py", &["container", &blob, &container]).trim().to_string();
    for p in 0..PARTITIONS {
        let bodies: Vec<Vec<u8>> = (0..PER_PARTITION).map(|i| message(i * PARTITIONS as i64 + p as i64)).collect();
        hubs.produce(p, &bodies);
    }
    let cs = hubs.connection_string();
    let envs = [(CS_ENV, cs.as_str()), (SAS_ENV, sas.as_str())];

    // Capture files of the first events, under the namespace *name* in another case than the
    // live config's fqdn (Capture writes what the portal shows; the hand-off compares
    // case-insensitively).
    let capture = dir.path().join("capture");
    let namespace_name = hubs.namespace().split('.').next().unwrap().to_uppercase();
    let specs: Vec<String> =
        CAPTURED.iter().enumerate().filter(|(_, k)| **k > 0).map(|(p, k)| format!("{p}={k}")).collect();
    let mut args = vec![cs.as_str(), capture.to_str().unwrap(), namespace_name.as_str(), hub.as_str()];
    args.extend(specs.iter().map(String::as_str));
    let last: BTreeMap<String, (i64, String)> =
        serde_json::from_str(&python("capture_from_hub.py", &args)).expect("capture_from_hub.py prints JSON");

    let archive = dir.path().join("archive");
    let live = dir.path().join("live.toml");
    live_config(&live, hubs.namespace(), &hub, &format!("{blob}/{container}"), &hubs.endpoint(), &archive);
    let backfill = [
        "backfill",
        "--capture",
        capture.to_str().unwrap(),
        "--archive",
        archive.to_str().unwrap(),
        "--then-checkpoint",
        live.to_str().unwrap(),
        "--json",
    ];
    let out = cli(&backfill, &envs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "backfill with the hand-off:\n{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the summary");
    let captured: i64 = CAPTURED.iter().sum();
    check_accounting(&summary, captured * RECORDS_PER_MESSAGE);
    assert!(!stderr.contains(&sas), "the SAS is never printed");

    // What was written, said per partition, and where Microsoft's SDKs and KEDA read it.
    let lines = checkpoint_lines(&stderr);
    assert_eq!(lines.keys().collect::<Vec<_>>(), last.keys().collect::<Vec<_>>(), "{stderr}");
    for (p, (seq, offset)) in &last {
        assert_eq!(lines[p]["result"], "written", "{stderr}");
        assert_eq!(lines[p]["sequence_number"].as_i64(), Some(*seq), "{stderr}");
        assert_eq!(lines[p]["offset"].as_str(), Some(offset.as_str()), "{stderr}");
    }
    let prefix = format!("{}/{}/$default/checkpoint/", hubs.namespace(), hub.to_lowercase());
    let read_checkpoints = || -> BTreeMap<String, (i64, String)> {
        checkpoint_blobs(&container)
            .into_iter()
            .filter_map(|(name, meta)| {
                let p = name.strip_prefix(&prefix)?.to_string();
                Some((p, (meta.get("sequencenumber")?.parse().ok()?, meta.get("offset")?.clone())))
            })
            .collect()
    };
    assert_eq!(read_checkpoints(), last, "checkpoints at {prefix}<partition>: {:?}", checkpoint_blobs(&container));

    // The daemon on the live config, same archive: it reads what the capture did not hold.
    let mut daemon = Daemon::start(&live, dir.path(), "live", &envs);
    let end: BTreeMap<String, i64> =
        (0..PARTITIONS).map(|p| (p.to_string(), hubs.last_enqueued(p).expect("a partition with events"))).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let at: BTreeMap<String, i64> = read_checkpoints().into_iter().map(|(p, (s, _))| (p, s)).collect();
        if at == end {
            break;
        }
        assert!(daemon.try_wait().is_none(), "the daemon exited:\n{}", daemon.log_text());
        assert!(Instant::now() < deadline, "checkpoints {at:?}, the partitions end at {end:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, summary) = daemon.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    let live_events = PER_PARTITION * PARTITIONS as i64 - captured;
    check_accounting(&summary, live_events * RECORDS_PER_MESSAGE);

    // Every event archived exactly once across the backfill and the daemon.
    let all = PER_PARTITION * PARTITIONS as i64 * RECORDS_PER_MESSAGE;
    assert_exactly_once(&archived_report_ids(archive.to_str().unwrap()), all);

    // The same command again: nothing read, and checkpoints the daemon moved past the captured
    // events are not moved back.
    let out = cli(&backfill, &envs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["totals"]["records_in"], 0, "{summary}");
    let lines = checkpoint_lines(&stderr);
    for p in last.keys() {
        assert!(lines[p]["result"].as_str().unwrap().starts_with("kept"), "{stderr}");
        assert_eq!(lines[p]["existing_sequence_number"].as_i64(), Some(end[p]), "{stderr}");
    }
    let at: BTreeMap<String, i64> = read_checkpoints().into_iter().map(|(p, (s, _))| (p, s)).collect();
    assert_eq!(at, end, "checkpoints left where the daemon put them");
}

/// Writes one Capture file under `root/<namespace>/<hub>/0/...` (capture_files.py's fixture,
/// moved under the names given).
fn capture_under(root: &Path, namespace: &str, hub: &str) -> PathBuf {
    let fixture = root.join("fixture");
    python("capture_files.py", &[fixture.to_str().unwrap()]);
    let at = root.join(namespace);
    std::fs::create_dir_all(&at).unwrap();
    std::fs::rename(fixture.join("ns/hub"), at.join(hub)).unwrap();
    root.to_path_buf()
}

#[test]
fn a_hand_off_to_another_namespace_or_event_hub_is_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let live = dir.path().join("live.toml");
    // Nothing is contacted before the check: the endpoint and container need not exist.
    live_config(
        &live,
        "contoso.servicebus.windows.net",
        "defender",
        "http://127.0.0.1:9/c",
        "amqp://127.0.0.1:9",
        &archive,
    );
    let cs = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0";
    let envs = [(CS_ENV, cs), (SAS_ENV, "sv=2024&sig=c2VjcmV0")];
    for (namespace, hub, why) in [("fabrikam", "defender", "another namespace"), ("Contoso", "other", "another hub")] {
        let root = dir.path().join(format!("{namespace}-{hub}"));
        let capture = capture_under(&root, namespace, hub);
        let out = cli(
            &["backfill", "--capture", capture.to_str().unwrap(), "--archive", archive.to_str().unwrap()]
                .into_iter()
                .chain(["--then-checkpoint", live.to_str().unwrap(), "--json"])
                .collect::<Vec<_>>(),
            &envs,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: refused\n{stderr}");
        let expected = format!("is of event hub `{namespace}/{hub}`, the live source reads `contoso/defender`");
        assert!(stderr.contains(&expected), "{why}: {stderr}");
        assert!(out.stdout.is_empty(), "{why}: nothing was read, no summary");
        assert!(!stderr.contains("c2VjcmV0"), "no secret in the error");
    }
    assert!(!archive.join("DeviceInfo").exists(), "nothing archived");
}
