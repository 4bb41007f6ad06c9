//! Faithfulness: Microsoft's own Python clients (azure-monitor-ingestion + azure-identity, pinned
//! in scripts/requirements-test.txt) upload through this server, which must accept exactly what
//! they send; and the server rejects what the real service would.
//!
//! Needs `$DI_PYTHON` (the test venv's interpreter, set by `scripts/test-infra.sh`).

mod common;

use std::path::PathBuf;

use common::*;
use defender_ingestion_server::{Fault, RequestLog, TestServer};
use serde_json::Value;

const SECRET_ENV: &str = "DI_INGESTION_TEST_SECRET";

fn python() -> String {
    std::env::var("DI_PYTHON").unwrap_or_else(|_| {
        panic!(
            "DI_PYTHON is not set: run `scripts/test-infra.sh install` and source the env file \
             it prints (the venv needs azure-monitor-ingestion and azure-identity)"
        )
    })
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/upload_with_sdk.py")
}

struct Upload {
    summary: Value,
    sent: Vec<serde_json::Map<String, Value>>,
}

/// Runs upload_with_sdk.py against `server` and returns its summary and the rows it sent.
async fn upload_with_sdk(server: &TestServer, rows: usize, row_size: usize) -> Upload {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let rows_out = dir.path().join("rows.json");
    let output = tokio::process::Command::new(python())
        .arg(script())
        .args(["--endpoint", &server.endpoint])
        .args(["--authority", &server.authority])
        .args(["--tenant", TENANT, "--client-id", CLIENT_ID, "--secret-env", SECRET_ENV])
        .args(["--dcr", DCR, "--stream", STREAM])
        .args(["--rows", &rows.to_string(), "--row-size", &row_size.to_string()])
        .arg("--rows-out")
        .arg(&rows_out)
        .env(SECRET_ENV, SECRET)
        .env("SSL_CERT_FILE", &ca)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "upload_with_sdk.py failed: {stderr}");
    let summary: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("bad summary ({e}): {stderr}"));
    let sent = serde_json::from_str(&std::fs::read_to_string(&rows_out).unwrap()).unwrap();
    Upload { summary, sent }
}

fn describe(logs: &[RequestLog]) -> String {
    logs.iter()
        .map(|l| {
            format!(
                "status={} rows={} wire={} decompressed={} gzip={} request_id={}",
                l.status,
                l.rows,
                l.wire_bytes,
                l.decompressed_bytes,
                l.gzip,
                l.client_request_id.is_some()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn sdk_upload_of_large_rows_is_accepted_exactly_including_over_one_mib_decompressed() {
    let server = start().await;
    let upload = upload_with_sdk(&server, 5_000, 970).await;
    assert_eq!(upload.summary["errors"], serde_json::json!([]), "{}", upload.summary);
    assert_eq!(upload.summary["failed_rows"], 0);

    let accepted = server.accepted(DCR, STREAM);
    assert_eq!(accepted.len(), 5_000);
    assert_eq!(accepted, upload.sent, "the server must hold exactly the rows the SDK sent");

    let logs = server.requests();
    eprintln!("sdk {}\n{}", upload.summary["versions"], describe(&logs));
    assert!(logs.iter().all(|l| l.gzip && l.status == 204), "{}", describe(&logs));
    assert_eq!(logs.iter().map(|l| l.rows).sum::<usize>(), 5_000);
    assert!(logs.iter().all(|l| l.wire_bytes <= defender_ingestion_server::DEFAULT_MAX_WIRE_BYTES));
    let max = logs.iter().map(|l| l.decompressed_bytes).max().unwrap();
    assert!(
        max > 1024 * 1024,
        "the SDK's largest decompressed body was {max} bytes; contracts.md §d measured \
         1,050,703: a faithful server must accept bodies over 1 MiB decompressed"
    );
    server.stop().await;
}

#[tokio::test]
async fn sdk_upload_of_small_batch_is_one_gzip_request() {
    let server = start().await;
    let upload = upload_with_sdk(&server, 25, 200).await;
    assert_eq!(upload.summary["errors"], serde_json::json!([]), "{}", upload.summary);
    assert_eq!(server.accepted(DCR, STREAM), upload.sent);
    let logs = server.requests();
    assert_eq!(logs.len(), 1, "{}", describe(&logs));
    assert!(logs[0].gzip && logs[0].status == 204 && logs[0].rows == 25);
}

#[tokio::test]
async fn sdk_honours_injected_429_and_503_with_retry_after_then_succeeds_once() {
    let server = start().await;
    server.inject(Fault::Status { status: 429, retry_after: Some(1) });
    server.inject(Fault::Status { status: 503, retry_after: Some(1) });
    let upload = upload_with_sdk(&server, 10, 100).await;
    assert_eq!(upload.summary["errors"], serde_json::json!([]), "{}", upload.summary);
    assert_eq!(server.accepted(DCR, STREAM), upload.sent);
    let statuses: Vec<_> = server.requests().iter().map(|l| l.status).collect();
    assert_eq!(statuses, vec![429, 503, 204]);
    assert!(upload.summary["elapsed_s"].as_f64().unwrap() >= 2.0, "{}", upload.summary);
}

#[tokio::test]
async fn sdk_reports_a_failure_for_an_unknown_stream_and_nothing_is_stored() {
    let mut config = config();
    config.streams.get_mut(DCR).unwrap().clear();
    config.streams.get_mut(DCR).unwrap().insert("Custom-Other_CL".into(), vec!["Seq".into()]);
    let server = TestServer::start(config).await.unwrap();
    let upload = upload_with_sdk(&server, 5, 100).await;
    assert_eq!(upload.summary["failed_rows"], 5, "{}", upload.summary);
    let logs = server.requests();
    assert_eq!(logs[0].status, 404);
    assert_eq!(logs[0].error_code.as_deref(), Some("InvalidStream"));
    assert!(server.accepted(DCR, STREAM).is_empty());
}

/// What, path and query, headers, body, expected status.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16);

/// The requests a real service refuses, sent by a plain HTTPS client with a token from the
/// same token endpoint the SDK used.
#[tokio::test]
async fn server_rejects_what_the_service_would() {
    let server = start().await;
    let token = token(&server).await;
    let auth = format!("Bearer {token}");
    let json = ("content-type", "application/json");
    let valid = rows(2).to_string().into_bytes();
    let cases: Vec<Case<'_>> = vec![
        ("missing token", ingest_path(DCR, STREAM), vec![json], valid.clone(), 401),
        (
            "unknown stream",
            ingest_path(DCR, "Custom-Nope_CL"),
            vec![json, ("authorization", &auth)],
            valid.clone(),
            404,
        ),
        (
            "non-array body",
            ingest_path(DCR, STREAM),
            vec![json, ("authorization", &auth)],
            br#"{"Seq":1}"#.to_vec(),
            400,
        ),
        (
            "oversize body",
            ingest_path(DCR, STREAM),
            vec![json, ("authorization", &auth)],
            vec![b' '; 1024 * 1024 + 1],
            413,
        ),
        (
            "wrong api-version",
            format!("/dataCollectionRules/{DCR}/streams/{STREAM}?api-version=2021-11-01-preview"),
            vec![json, ("authorization", &auth)],
            valid.clone(),
            400,
        ),
    ];
    for (what, path, headers, body, status) in cases {
        let reply = send(&server.endpoint, &server.ca_pem, "POST", &path, &headers, body).await.unwrap();
        assert_eq!(reply.status, status, "{what}");
        let error = reply.json();
        assert!(error["error"]["code"].is_string(), "{what}: {error}");
        assert!(error["error"]["message"].is_string(), "{what}: {error}");
    }
    assert!(server.accepted(DCR, STREAM).is_empty());
}
