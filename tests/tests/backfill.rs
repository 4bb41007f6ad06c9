//! `defender-ingest backfill` end to end: Capture files written by fastavro (codecs null,
//! deflate and snappy, an empty file, a truncated one, a snappy block with a bad CRC, a Body
//! that is not JSON) and storage-export
//! PT1H.json blobs with CRLF lines → the archive → read back by pyarrow; reruns read nothing
//! twice and add no rows.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use defender_tests::{binary, infra, python, readback, run_cli};
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

/// `defender-ingest generate` into `dir`: `records` records of DeviceInfo and
/// DeviceProcessEvents (bare records with `bare`); returns the file and the records per table.
fn generate(dir: &Path, records: u64, bare: bool) -> (std::path::PathBuf, BTreeMap<String, u64>) {
    let (out, ledger) = (dir.join("generated.ndjson"), dir.join("ledger.json"));
    let n = records.to_string();
    let mut args = vec!["generate", "--records", &n, "--tables", "DeviceInfo,DeviceProcessEvents", "--seed", "7"];
    args.extend(["-o", path(&out), "--ledger", path(&ledger)]);
    if bare {
        args.push("--bare");
    }
    run_cli(&args, &[]);
    let ledger: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    let tables = ledger["tables"].as_object().unwrap();
    (out, tables.iter().map(|(t, l)| (t.clone(), l["records"].as_u64().unwrap())).collect())
}

/// A running `defender-ingest backfill`, its stderr lines forwarded as they come.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn defender-ingest");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines, stderr: Vec::new() }
    }

    /// Waits (at most 60 s) for a stderr line for which `f` holds.
    fn wait_for(&mut self, mut f: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Also asked every 50 ms without a line (`""`), for conditions on files.
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if f("") {
                        return String::new();
                    }
                }
                Err(e) => panic!("no such line on stderr ({e}); so far:\n{}", self.stderr.join("\n")),
            }
        }
    }

    /// Waits for the process; (exit status, stdout, all of stderr).
    fn finish(mut self) -> (std::process::ExitStatus, Vec<u8>, String) {
        let mut stdout = Vec::new();
        self.child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        self.stderr.extend(self.lines.iter());
        (status, stdout, self.stderr.join("\n"))
    }
}

fn progress_line(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line).ok().filter(|v| v["progress"] == "backfill")
}

fn records_in(summary: &Value) -> BTreeMap<String, u64> {
    let tables = summary["tables"].as_object().unwrap();
    tables.iter().map(|(t, s)| (t.clone(), s["records_in"].as_u64().unwrap())).collect()
}

/// Per table: records in = written to the archive + filtered + dead-lettered.
fn check_balanced(summary: &Value) {
    for (table, s) in summary["tables"].as_object().unwrap() {
        let dead: u64 = s["dead_lettered"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        let out = s["written_archive"].as_u64().unwrap() + s["filtered"].as_u64().unwrap() + dead;
        assert_eq!(
            s["records_in"].as_u64().unwrap(),
            out,
            "{table}: records in = archived + filtered + dead: {summary}"
        );
    }
}

fn archived_rows(archive: &str) -> BTreeMap<String, u64> {
    let back = readback(archive);
    let tables = back["tables"].as_object().unwrap();
    tables.iter().map(|(t, v)| (t.clone(), v["rows"].as_u64().unwrap())).collect()
}

#[test]
fn sigterm_finishes_in_flight_saves_and_the_printed_command_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (messages, ledger) = generate(dir.path(), 40_000, false);
    let input = dir.path().join("capture");
    let files = python("capture_files.py", &["--messages", path(&messages), "--files", "24", path(&input)]);
    let files: Value = serde_json::from_str(&files).unwrap();
    let archive = dir.path().join("archive");
    let bin = binary();
    let args = [
        "backfill",
        "--capture",
        path(&input),
        "--archive",
        path(&archive),
        "--parallel",
        "1",
        "--progress-interval",
        "0.2",
        "--json",
    ];
    let mut running = Running::start(&args);
    // Off a terminal: JSON progress lines with files and bytes done of the total.
    let first = running.wait_for(|l| progress_line(l).is_some_and(|p| p["records_in"].as_u64() > Some(0)));
    let p = progress_line(&first).unwrap();
    assert_eq!(p["files"], files["files"], "{p}");
    assert!(p["bytes"].as_u64().unwrap() > 0 && p["bytes_done"].as_u64() <= p["bytes"].as_u64(), "{p}");
    assert!(p["files_done"].as_u64() < p["files"].as_u64(), "{p}");
    for key in ["records_per_second", "eta_seconds", "rows_archived", "elapsed_seconds"] {
        assert!(p.get(key).is_some(), "{key} in {p}");
    }
    let pid = running.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (status, stdout, stderr) = running.finish();
    assert_eq!(status.code(), Some(130), "interrupted: non-zero\n{stderr}");
    let resume = stderr.split("to resume, run the same command again:\n  ").nth(1).expect(&stderr);
    let expected = std::iter::once(bin.to_str().unwrap()).chain(args).collect::<Vec<_>>().join(" ");
    assert_eq!(resume.lines().next().unwrap(), expected, "the exact command");
    let first: Value = serde_json::from_slice(&stdout).expect("the accounting, as JSON");
    check_balanced(&first);
    let first_in = records_in(&first);
    assert!(first_in.values().sum::<u64>() < ledger.values().sum::<u64>(), "stopped in the middle: {first}");

    let second = backfill(&args[1..args.len() - 1]);
    check_balanced(&second);
    // Nothing read twice, nothing left out: the two runs together read every record once.
    for (table, n) in &ledger {
        let both = first_in.get(table).unwrap_or(&0) + records_in(&second).get(table).unwrap_or(&0);
        assert_eq!(both, *n, "{table}: records read by the two runs\n{first}\n{second}");
    }
    assert_eq!(archived_rows(path(&archive)), ledger, "every record archived once");
}

/// The storage-export blobs of `lines` (bare records): 6 hours per table's container, CRLF.
/// Returns, per blob name (relative), its lines' (start offset, table).
fn storage_blobs(root: &Path, lines: &str) -> BTreeMap<String, Vec<(u64, String)>> {
    let mut blobs: BTreeMap<String, (String, Vec<(u64, String)>)> = BTreeMap::new();
    for (i, line) in lines.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let record: Value = serde_json::from_str(line).unwrap();
        let table = record["category"].as_str().unwrap().trim_start_matches("AdvancedHunting-").to_string();
        let name = format!(
            "insights-logs-advancedhunting-{}/tenantId=t/y=2024/m=05/d=01/h={:02}/m=00/PT1H.json",
            table.to_ascii_lowercase(),
            i % 6
        );
        let (text, offsets) = blobs.entry(name).or_default();
        offsets.push((text.len() as u64, table));
        text.push_str(line);
        text.push_str("\r\n");
    }
    blobs
        .into_iter()
        .map(|(name, (text, offsets))| {
            let file = root.join(&name);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
            (name, offsets)
        })
        .collect()
}

#[test]
fn kill_9_then_the_same_command_archives_every_record_once_and_rereads_only_what_was_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (generated, ledger) = generate(dir.path(), 60_000, true);
    let input = dir.path().join("export");
    let blobs = storage_blobs(&input, &std::fs::read_to_string(generated).unwrap());
    let archive = dir.path().join("archive");
    // Small archive files, so data becomes durable (and progress is saved) while reading.
    let config = dir.path().join("c.toml");
    let toml =
        "[archive]\nurl = \"unused\"\nroll_size_mb = 1\nroll_seconds = 1\n\n[pipeline]\nflush_mb = 1\nbudget_mb = 4\n";
    std::fs::write(&config, toml).unwrap();
    let args = ["--storage", path(&input), "--archive", path(&archive), "--config", path(&config)];
    let args = [&args[..], &["--parallel", "1", "--save-interval", "0.2"]].concat();
    let mut all = vec!["backfill", "--progress-interval", "0.2"];
    all.extend(&args);
    let mut running = Running::start(&all);
    // Kill once some progress is saved and well before the end.
    let progress_dir = archive.join("_backfill");
    // (Every entry is looked at: the store writes a staging file next to the progress file.)
    let saved = |_: &str| {
        let Ok(files) = std::fs::read_dir(&progress_dir) else { return false };
        files.flatten().filter(|f| f.path().extension().is_some_and(|e| e == "json")).any(|f| {
            let doc: Value =
                serde_json::from_str(&std::fs::read_to_string(f.path()).unwrap_or_default()).unwrap_or_default();
            doc["files"].as_object().is_some_and(|f| f.values().any(|v| v["offset"].is_i64()))
        })
    };
    running.wait_for(saved);
    running.child.kill().unwrap();
    let (status, _, stderr) = running.finish();
    assert_eq!(status.code(), None, "killed by SIGKILL\n{stderr}");

    // What the rerun must read: every line after its blob's saved offset.
    let progress = std::fs::read_dir(&progress_dir)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("the progress file");
    let progress: Value = serde_json::from_str(&std::fs::read_to_string(progress).unwrap()).unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (name, lines) in &blobs {
        let saved = progress["files"][name]["offset"].as_i64().map(|o| o as u64);
        for (offset, table) in lines {
            if saved.is_none_or(|s| *offset > s) {
                *expected.entry(table.clone()).or_default() += 1;
            }
        }
    }
    let second = backfill(&args);
    check_balanced(&second);
    let second_in: BTreeMap<String, u64> = records_in(&second).into_iter().filter(|(_, n)| *n > 0).collect();
    expected.retain(|_, n| *n > 0);
    assert_eq!(second_in, expected, "the rerun reads exactly the lines after the saved offsets\n{second}");
    assert!(second_in.values().sum::<u64>() < ledger.values().sum::<u64>(), "killed in the middle");
    assert_eq!(archived_rows(path(&archive)), ledger, "every record archived exactly once");
}

fn estimate(args: &[&str]) -> Value {
    let mut all = vec!["estimate"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_slice(&run_cli(&all, &[]).stdout).expect("estimate --json")
}

fn estimated<'a>(e: &'a Value, table: &str) -> Option<&'a Value> {
    e["tables"].as_array().unwrap().iter().find(|t| t["table"] == table)
}

#[test]
fn estimate_prices_capture_and_storage_history_in_a_window_and_writes_nothing() {
    let input = tempfile::tempdir().unwrap();
    let counts: Value = serde_json::from_str(&python("capture_files.py", &[path(input.path())])).unwrap();
    let e = estimate(&["--capture", path(input.path()), "--to", "2024-05-02"]);
    let info = estimated(&e, "DeviceInfo").expect("DeviceInfo priced");
    assert_eq!(info["records"], counts["DeviceInfo"], "{e}");
    assert!(info["billed_bytes_before"].as_u64() > Some(0), "{e}");
    // Events/s from event time: the fixture's events span 10:00 to 10:25 of 2024-05-01.
    let span = e["event_span_seconds"].as_f64().unwrap();
    assert!((20.0 * 60.0..30.0 * 60.0).contains(&span), "{span}");
    let rate = info["records_per_second"].as_f64().unwrap();
    assert!((rate - counts["DeviceInfo"].as_f64().unwrap() / span).abs() < 1e-6, "{rate} {span}");
    let late = estimate(&["--capture", path(input.path()), "--from", "2024-05-02"]);
    assert_eq!(estimated(&late, "DeviceInfo").unwrap()["records"], counts["late"], "{late}");

    let blob = "insights-logs-advancedhunting-deviceinfo/tenantId=t/y=2024/m=05/d=01/h=10/m=00/PT1H.json";
    let file = input.path().join("export").join(blob);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, format!("{}{}{}", line(1), line(2), line(4))).unwrap();
    let export = input.path().join("export");
    let e = estimate(&["--storage", path(&export), "--from", "2024-05-01T10:00:00Z", "--tables", "DeviceInfo"]);
    let info = estimated(&e, "DeviceInfo").expect("DeviceInfo priced");
    assert_eq!(info["records"], 3, "{e}");
    assert_eq!(e["event_span_seconds"].as_f64(), Some(180.0), "10:01 to 10:04: {e}");
    let other = estimate(&["--storage", path(&export), "--tables", "AlertInfo"]);
    assert!(estimated(&other, "DeviceInfo").is_none(), "another table's container is not read: {other}");
    let outside = estimate(&["--storage", path(&export), "--to", "2024-05-01T10:00:00Z"]);
    assert!(estimated(&outside, "DeviceInfo").is_none(), "the hour is outside the window: {outside}");
    // An estimate keeps no progress anywhere: the history is untouched.
    let written: Vec<_> = walk(input.path()).into_iter().filter(|p| p.contains("_backfill")).collect();
    assert!(written.is_empty(), "{written:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p.display().to_string());
    }
    out
}

#[test]
fn run_reads_a_storage_section_and_resumes_it_from_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let blob = "insights-logs-advancedhunting-deviceinfo/tenantId=t/y=2024/m=05/d=01/h=10/m=00/PT1H.json";
    let file = dir.path().join("export").join(blob);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, format!("{}{}", line(1), line(2))).unwrap();
    let config = dir.path().join("c.toml");
    let toml = format!(
        "[source.storage]\nlocation = {:?}\ntables = [\"DeviceInfo\"]\n\n[archive]\nurl = {:?}\n",
        path(&dir.path().join("export")),
        path(&dir.path().join("archive"))
    );
    std::fs::write(&config, toml).unwrap();
    let run = |_: ()| -> Value {
        let out = run_cli(&["run", "--config", path(&config), "--json"], &[]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let s = run(());
    check_balanced(&s);
    assert_eq!(table(&s, "DeviceInfo")["written_archive"], 2, "{s}");
    std::fs::write(&file, format!("{}{}{}", line(1), line(2), line(3))).unwrap();
    let s = run(());
    assert_eq!(s["totals"]["records_in"], 1, "only the new line: {s}");
    assert!(dir.path().join("archive/_backfill").is_dir(), "progress kept with the archive");
    assert_eq!(archived_rows(path(&dir.path().join("archive")))["DeviceInfo"], 3);
}

#[test]
fn then_checkpoint_reports_the_last_archived_event_per_partition_and_refuses_the_undocumented_kafka_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("capture");
    python("capture_files.py", &[path(&input)]);
    let live = dir.path().join("live.toml");
    std::fs::write(&live, "[source.kafka]\nbootstrap = \"127.0.0.1:9\"\ntopics = [\"hub\"]\nplaintext = true\n")
        .unwrap();
    let archive = dir.path().join("archive");
    let out = Command::new(binary())
        .args(["backfill", "--capture", path(&input), "--to", "2024-05-02", "--archive", path(&archive)])
        .args(["--then-checkpoint", path(&live), "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "the hand-off is not done: an error\n{stderr}");
    assert!(stderr.contains("not documented to be Event Hubs sequence numbers"), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the backfill itself finished");
    check_balanced(&summary);
    let handoff: BTreeMap<String, (i64, String)> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["handoff"] == "capture"))
        .map(|v| {
            let key = format!(
                "{}/{}/{}",
                v["namespace"].as_str().unwrap(),
                v["event_hub"].as_str().unwrap(),
                v["partition_id"].as_str().unwrap()
            );
            (key, (v["sequence_number"].as_i64().unwrap(), v["offset"].as_str().unwrap().to_string()))
        })
        .collect();
    // The fixture's last events before 2024-05-02 (capture_files.py: Offset = 100 × sequence).
    let expected: BTreeMap<String, (i64, String)> = [("ns/hub/0", 2), ("ns/hub/1", 22), ("ns/hub/2", 52)]
        .into_iter()
        .map(|(p, n)| (p.to_string(), (n, (n * 100).to_string())))
        .collect();
    assert_eq!(handoff, expected, "{stderr}");
}

#[test]
fn azurite_capture_files_and_append_blobs_written_by_the_azure_sdk_between_two_runs() {
    let endpoint = infra("DI_AZURITE_BLOB");
    let url = endpoint.trim_end_matches('/').trim_end_matches("/devstoreaccount1").to_string();
    let env = [("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", url.as_str())];
    let backfill_az = |args: &[&str]| -> Value {
        let mut all = vec!["backfill"];
        all.extend_from_slice(args);
        all.push("--json");
        serde_json::from_slice(&run_cli(&all, &env).stdout).expect("the summary")
    };
    let dir = tempfile::tempdir().unwrap();
    let container = format!("backfill{}", std::process::id());

    // Capture files uploaded to Blob.
    let local = dir.path().join("capture");
    let counts: Value = serde_json::from_str(&python("capture_files.py", &[path(&local)])).unwrap();
    python("storage_export.py", &["upload", &endpoint, &container, "capture", path(&local)]);
    let archive = dir.path().join("archive-capture");
    let location = format!("az://{container}/capture");
    let s = backfill_az(&["--capture", &location, "--to", "2024-05-02", "--archive", path(&archive)]);
    check_balanced(&s);
    assert_eq!(table(&s, "DeviceInfo")["written_archive"], counts["DeviceInfo"], "{s}");
    assert_eq!(table(&s, "unknown")["dead_lettered"]["unreadable_input"], counts["unreadable"], "{s}");
    assert_eq!(archived_rows(path(&archive))["DeviceInfo"], counts["DeviceInfo"].as_u64().unwrap());

    // A PT1H.json append blob, appended to between two runs; the last line is half written.
    let blob = "export/insights-logs-advancedhunting-deviceinfo/tenantId=t/y=2024/m=05/d=01/h=10/m=00/PT1H.json";
    let append = |text: &str| {
        let f = dir.path().join("append.txt");
        std::fs::write(&f, text).unwrap();
        python("storage_export.py", &["append", &endpoint, &container, blob, path(&f)]);
    };
    let (l3, archive) = (line(3), dir.path().join("archive-storage"));
    append(&format!("{}{}{}", line(1), line(2), &l3[..50]));
    let location = format!("az://{container}/export");
    let args = ["--storage", location.as_str(), "--tables", "DeviceInfo", "--archive", path(&archive)];
    let s = backfill_az(&args);
    check_balanced(&s);
    assert_eq!(table(&s, "DeviceInfo")["records_in"], 2, "a last line without its CRLF is not taken: {s}");
    append(&format!("{}{}", &l3[50..], line(4)));
    let s = backfill_az(&args);
    check_balanced(&s);
    assert_eq!(table(&s, "DeviceInfo")["records_in"], 2, "only the new complete lines: {s}");
    assert_eq!(archived_rows(path(&archive))["DeviceInfo"], 4);
}
