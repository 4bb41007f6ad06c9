//! `defender-ingest backfill` end to end: Capture files written by fastavro (codecs null and
//! deflate, an empty file, a truncated one, a Body that is not JSON) and storage-export
//! PT1H.json blobs with CRLF lines → the archive → read back by pyarrow; reruns read nothing
//! twice and add no rows.

use std::path::Path;

use defender_tests::{python, readback, run_cli};
use serde_json::Value;

fn backfill(args: &[&str]) -> Value {
    let mut all = vec!["backfill"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = run_cli(&all, &[]);
    serde_json::from_slice(&out.stdout).expect("backfill --json prints the summary")
}

fn table<'a>(summary: &'a Value, t: &str) -> &'a Value {
    &summary["tables"][t]
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn capture_files_from_fastavro_are_archived_once_with_bad_data_dead_lettered() {
    let (input, archive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let counts: Value = serde_json::from_str(&python("capture_files.py", &[path(input.path())])).unwrap();
    let args = ["--capture", path(input.path()), "--to", "2024-05-02", "--archive", path(archive.path())];
    let s = backfill(&args);
    let info = table(&s, "DeviceInfo");
    assert_eq!(info["records_in"], counts["DeviceInfo"], "{s}");
    assert_eq!(info["written_archive"], counts["DeviceInfo"], "{s}");
    let unknown = table(&s, "unknown");
    assert_eq!(unknown["dead_lettered"]["malformed_json"], counts["not_json"], "{s}");
    assert_eq!(unknown["dead_lettered"]["unreadable_input"], counts["unreadable"], "{s}");
    let totals = &s["totals"];
    let dead: u64 = totals["dead_lettered"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(
        totals["records_in"].as_u64().unwrap(),
        totals["delivered"].as_u64().unwrap() + totals["filtered"].as_u64().unwrap() + dead,
        "records in = delivered + filtered + dead-lettered: {s}"
    );
    let back = readback(path(archive.path()));
    assert_eq!(back["tables"]["DeviceInfo"]["rows"], counts["DeviceInfo"], "{back}");

    // A rerun reads nothing it finished and adds no row; widening the window reads the late file.
    let again = backfill(&args);
    assert_eq!(again["totals"]["records_in"], 0, "{again}");
    let wider = backfill(&["--capture", path(input.path()), "--archive", path(archive.path())]);
    assert_eq!(wider["totals"]["records_in"], counts["late"], "{wider}");
    let back = readback(path(archive.path()));
    let expected = counts["DeviceInfo"].as_u64().unwrap() + counts["late"].as_u64().unwrap();
    assert_eq!(back["tables"]["DeviceInfo"]["rows"], expected, "{back}");
}

fn line(n: u32) -> String {
    let ts = format!("2024-05-01T10:{:02}:00.1234567Z", n % 60);
    format!(
        "{{\"time\":\"{ts}\",\"tenantId\":\"t\",\"operationName\":\"Publish\",\"category\":\"AdvancedHunting-DeviceInfo\",\
         \"properties\":{{\"Timestamp\":\"{ts}\",\"DeviceId\":\"dev-{n}\",\"DeviceName\":\"host-{n}\"}}}}\r\n"
    )
}

#[test]
fn storage_export_blobs_are_read_to_their_last_complete_line_and_resumed() {
    let (input, archive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blob =
        input.path().join("insights-logs-advancedhunting-deviceinfo/tenantId=t/y=2024/m=05/d=01/h=10/m=00/PT1H.json");
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    let (first, partial) = (format!("{}{}", line(1), line(2)), line(3));
    // The third line is half written: no terminator yet.
    std::fs::write(&blob, format!("{first}{}", &partial[..40])).unwrap();
    let args = ["--storage", path(input.path()), "--archive", path(archive.path())];
    let s = backfill(&args);
    assert_eq!(table(&s, "DeviceInfo")["written_archive"], 2, "{s}");
    // The blob grows: the rest of line 3 and line 4.
    std::fs::write(&blob, format!("{first}{partial}{}", line(4))).unwrap();
    let s = backfill(&args);
    assert_eq!(table(&s, "DeviceInfo")["records_in"], 2, "only the new complete lines: {s}");
    let s = backfill(&args);
    assert_eq!(s["totals"]["records_in"], 0, "{s}");
    let back = readback(path(archive.path()));
    assert_eq!(back["tables"]["DeviceInfo"]["rows"], 4, "{back}");
}
