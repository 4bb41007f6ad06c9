//! The binary prints its endpoint and authority as one JSON line, serves them with the CA it
//! wrote, and exits cleanly on SIGTERM.

mod common;

use std::process::Stdio;

use common::{CLIENT_ID, DCR, SECRET, STREAM, TENANT, post_token_form};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn binary_prints_endpoints_serves_tokens_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let streams = dir.path().join("streams.json");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&streams, serde_json::json!({ DCR: { STREAM: ["TimeGenerated", "Seq"] } }).to_string()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_defender-ingestion-server"))
        .arg("--streams")
        .arg(&streams)
        .args(["--tenant", TENANT, "--client-id", CLIENT_ID])
        .args(["--client-secret-env", "DI_BINARY_TEST_SECRET"])
        .arg("--ca-out")
        .arg(&ca)
        .env("DI_BINARY_TEST_SECRET", SECRET)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    assert!(!line.contains(SECRET));
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let authority = ready["authority"].as_str().unwrap();
    assert!(ready["endpoint"].as_str().unwrap().starts_with("https://127.0.0.1:"));
    let ca_pem = std::fs::read_to_string(&ca).unwrap();

    let form = format!(
        "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={SECRET}&scope=https%3A%2F%2Fmonitor.azure.com%2F.default"
    );
    let reply = post_token_form(authority, &ca_pem, form).await;
    assert_eq!(reply.status, 200);

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
}
