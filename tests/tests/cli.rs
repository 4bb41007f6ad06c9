//! The binary's commands as a user runs them: schema checks, help, config mistakes.

use std::process::Command;

use defender_tests::{binary, repo_root, run_cli};

#[test]
fn schemas_check_passes_for_the_embedded_and_the_folder_schemas() {
    let out = run_cli(&["schemas", "check"], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok: 36 tables (12 TVM), 958 columns\n");
    let dir = repo_root().join("table-schemas");
    let out = run_cli(&["schemas", "check", "--dir", dir.to_str().unwrap()], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 36 tables"));
}

#[test]
fn schemas_check_reports_a_broken_folder_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("T.json"),
        r#"{"table":"T","columns":[{"name":"Timestamp","type":"datetime","sentinel_name":"Timestamp"},
            {"name":"Type","type":"string","sentinel_name":"Type"},{"name":"type","type":"long","sentinel_name":"type_CF"}]}"#,
    )
    .unwrap();
    let out =
        Command::new(binary()).args(["schemas", "check", "--dir", dir.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("T.Type: sentinel_name `Type` is reserved by Log Analytics"), "{text}");
    assert!(text.contains("T.type: collides with column `Type` (names compare without case)"), "{text}");
}

#[test]
fn help_says_what_the_tool_does() {
    let out = run_cli(&["--help"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Defender XDR"), "{text}");
    for cmd in ["run", "generate", "schemas"] {
        assert!(text.contains(cmd), "{cmd} listed");
    }
}

#[test]
fn a_config_mistake_points_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[source.files]\npaths = [\"x\"]\n\n[archive]\nurl = \"out\"\nroll_sise_mb = 3\n").unwrap();
    let out = Command::new(binary()).args(["run", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 6"), "{err}");
    assert!(err.contains("unknown field `roll_sise_mb`"), "{err}");
}

#[test]
fn run_without_config_or_overrides_says_what_is_needed() {
    let out = Command::new(binary()).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no --config given: pass --config FILE, or both --input PATH... and --archive URL\n"
    );
}

#[test]
fn generate_is_deterministic_and_gzip_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json.gz");
    run_cli(&["generate", "--records", "200", "--seed", "3", "--output", a.to_str().unwrap()], &[]);
    run_cli(&["generate", "--records", "200", "--seed", "3", "--gzip", "--output", b.to_str().unwrap()], &[]);
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(std::fs::File::open(&b).unwrap()), &mut unzipped)
        .unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), unzipped);
}

#[test]
fn sending_to_sentinel_without_a_sentinel_section_is_refused_with_what_to_add() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[tables.DeviceInfo]\nsentinel = true\n").unwrap();
    let input = dir.path().join("in.json");
    std::fs::write(&input, "").unwrap();
    let out = Command::new(binary())
        .args(["run", "--config", config.to_str().unwrap(), "--input", input.to_str().unwrap(), "--archive"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no [sentinel] section") && err.contains("dry_run_dir"), "{err}");
}

/// The README's first command (`run --config examples/local.toml --summary ...`, here with the
/// archive in a temporary directory): every counter of the closing table sits under its own
/// header and equals the summary's.
#[test]
fn the_end_of_run_table_puts_each_counter_under_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, summary) = (dir.path().join("archive"), dir.path().join("summary.json"));
    let out = Command::new(binary())
        .current_dir(repo_root())
        .args(["run", "--config", "examples/local.toml", "--archive", archive.to_str().unwrap(), "--summary"])
        .arg(&summary)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let total = lines.find(|l| l.starts_with("total ")).unwrap_or_else(|| panic!("no total line:\n{text}"));
    // A header's column ends where the header ends; the value ends at the same place.
    let cell = |name: &str| {
        let end = header.find(name).unwrap_or_else(|| panic!("no header {name:?}:\n{text}")) + name.len();
        let start = header[..end - name.len()].trim_end().len();
        total[start..end].trim().to_string()
    };
    let totals = &summary["totals"];
    let sum = |v: &serde_json::Value| v.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum::<u64>();
    for (name, expected) in [
        ("records in", totals["records_in"].as_u64().unwrap()),
        ("archived", totals["written_archive"].as_u64().unwrap()),
        ("sent to Sentinel", totals["sent_sentinel"].as_u64().unwrap()),
        ("filtered", totals["filtered"].as_u64().unwrap()),
        ("dead-lettered", sum(&totals["dead_lettered"])),
        ("coerced", sum(&totals["coerced"])),
        ("kept in _Extra", sum(&totals["kept_in_extra"])),
    ] {
        assert_eq!(cell(name), expected.to_string(), "column {name:?}:\n{text}");
    }
    assert!(totals["records_in"].as_u64().unwrap() > 0 && sum(&totals["dead_lettered"]) > 0, "{text}");
    assert_eq!(header.split("  ").filter(|h| !h.trim().is_empty()).count(), 10, "table + 9 headers:\n{text}");
    assert!(cell("parquet").ends_with("B") && cell("bytes in").ends_with("B"), "{text}");
}

#[test]
fn config_check_passes_the_examples_and_points_at_a_mistake_without_connecting() {
    let config = repo_root().join("examples/eventhubs.toml");
    // No connection string nor workload identity in the environment: nothing is resolved.
    let out = Command::new(binary())
        .args(["config", "check", "--config", config.to_str().unwrap()])
        .env_remove("EVENTHUB_CONNECTION_STRING")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.starts_with("ok: ") && text.contains("source kafka my-namespace.servicebus.windows.net:9093"),
        "{text}"
    );
    assert!(text.contains("sentinel 2 table(s) to 1 DCR(s)"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[source.kafka]\nbootstrap = \"b:9093\"\ntopics = [\"t\"]\nstart = \"yesterday\"\n[archive]\nurl = \"out\"\n",
    )
    .unwrap();
    let out = Command::new(binary()).args(["config", "check", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("start"), "{err}");

    // The estimate example has no archive: fine for `estimate`, and `run` says how to check it.
    let estimate = repo_root().join("examples/estimate.toml");
    let check = |purpose: &[&str]| {
        Command::new(binary()).args(["config", "check", "--config"]).arg(&estimate).args(purpose).output().unwrap()
    };
    let out = check(&["--for", "estimate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("archive none"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no archive configured") && err.contains("--for estimate"), "{err}");
}
