//! `run` over `[source.storage]` with `poll_interval_seconds`: a live source for tenants who
//! export to a storage account instead of Event Hubs. Microsoft's `azure-storage-blob` appends
//! CRLF lines to PT1H.json append blobs on Azurite while the daemon runs
//! (tests/python/storage_export.py); the rows appear in the archive (read back by pyarrow)
//! while it runs, a half-written line only once its terminator arrives, and a SIGTERM then a
//! restart reads nothing twice.

// Synchronous test code, never on a tokio worker: it waits with thread::sleep.
#![allow(clippy::disallowed_methods)]

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use defender_tests::{infra, kafka::Daemon, python, readback_values};
use serde_json::Value;

/// Export line `n`: a DeviceInfo record of device `dev-<n>`, CRLF-terminated.
fn line(n: u32) -> String {
    let ts = format!("2024-05-01T10:{:02}:00.1234567Z", n % 60);
    format!(
        "{{\"time\":\"{ts}\",\"tenantId\":\"t\",\"operationName\":\"Publish\",\"category\":\"AdvancedHunting-DeviceInfo\",\
         \"properties\":{{\"Timestamp\":\"{ts}\",\"DeviceId\":\"dev-{n}\",\"DeviceName\":\"host-{n}\"}}}}\r\n"
    )
}

/// Appends `text` to `blob` of `container` with the Azure SDK (one Append Block).
fn append(dir: &Path, container: &str, blob: &str, text: &str) {
    let f = dir.join("append.txt");
    std::fs::write(&f, text).unwrap();
    python("storage_export.py", &["append", &infra("DI_AZURITE_BLOB"), container, blob, f.to_str().unwrap()]);
}

/// The archive's DeviceIds, each with how often it is there.
fn archived(archive: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for v in readback_values(archive.to_str().unwrap(), "DeviceId").remove("DeviceInfo").unwrap_or_default() {
        *ids.entry(v.as_str().expect("DeviceId is a string").to_string()).or_default() += 1;
    }
    ids
}

/// Waits (bounded) until the archive holds exactly `devices`, while the daemon runs.
fn wait_archived(daemon: &mut Daemon, archive: &Path, devices: &[u32]) {
    let want: BTreeMap<String, usize> = devices.iter().map(|n| (format!("dev-{n}"), 1)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = archived(archive);
        if got == want {
            return;
        }
        assert!(got.keys().all(|k| want.contains_key(k)), "archived {got:?}, expected no more than {want:?}");
        assert!(got.values().all(|n| *n == 1), "archived twice: {got:?}");
        assert!(daemon.try_wait().is_none(), "the daemon exited:\n{}", daemon.log_text());
        assert!(Instant::now() < deadline, "archived {got:?}, expected {want:?}:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `records` DeviceInfo records in, every one archived, and the accounting balances.
fn check_accounting(summary: &Value, records: u64) {
    defender_tests::check_balanced(summary, "DeviceInfo", records);
    assert_eq!(summary["tables"]["DeviceInfo"]["written_archive"].as_u64(), Some(records), "{summary}");
}

#[test]
fn a_polling_storage_source_reads_appended_lines_while_running_and_nothing_twice_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = infra("DI_AZURITE_BLOB");
    let url = endpoint.trim_end_matches('/').trim_end_matches("/devstoreaccount1").to_string();
    let env = [("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", url.as_str())];
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let container = format!("poll{}{:x}", std::process::id(), nanos as u32);
    let hour = |h: u32| {
        format!("export/insights-logs-advancedhunting-deviceinfo/tenantId=t/y=2024/m=05/d=01/h={h:02}/m=00/PT1H.json")
    };
    // Two complete lines and a third half written: no CRLF yet.
    let l3 = line(3);
    append(dir.path(), &container, &hour(10), &format!("{}{}{}", line(1), line(2), &l3[..50]));
    let archive = dir.path().join("archive");
    let config = dir.path().join("poll.toml");
    let toml = format!(
        "[source.storage]\nlocation = \"az://{container}/export\"\npoll_interval_seconds = 0.3\n\n\
         [pipeline]\nflush_seconds = 1\n\n[archive]\nurl = \"{}\"\nroll_seconds = 1\n",
        archive.display()
    );
    std::fs::write(&config, toml).unwrap();

    let mut daemon = Daemon::start(&config, dir.path(), "first", &env);
    wait_archived(&mut daemon, &archive, &[1, 2]);
    // A new blob (the next hour): archived by a later pass, while the half line is still not.
    append(dir.path(), &container, &hour(11), &line(10));
    wait_archived(&mut daemon, &archive, &[1, 2, 10]);
    // The terminator of line 3 arrives, and line 4.
    append(dir.path(), &container, &hour(10), &format!("{}{}", &l3[50..], line(4)));
    wait_archived(&mut daemon, &archive, &[1, 2, 3, 4, 10]);
    let (status, summary) = daemon.terminate(Duration::from_secs(60));
    assert!(status.success(), "a stopped daemon exits 0: {status}");
    check_accounting(&summary, 5);

    // Restarted after more was appended: only the new line is read.
    append(dir.path(), &container, &hour(10), &line(5));
    let mut daemon = Daemon::start(&config, dir.path(), "second", &env);
    wait_archived(&mut daemon, &archive, &[1, 2, 3, 4, 5, 10]);
    let (status, summary) = daemon.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    check_accounting(&summary, 1);
}
