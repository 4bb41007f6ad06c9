//! Injected faults: each kind, and that queued faults apply to the next requests in order.

mod common;

use std::time::{Duration, Instant};

use common::*;
use defender_ingestion_server::Fault;

fn body(n: usize) -> Vec<u8> {
    rows(n).to_string().into_bytes()
}

#[tokio::test]
async fn status_fault_answers_429_with_retry_after_and_records_nothing() {
    let server = start().await;
    let token = token(&server).await;
    server.inject(Fault::Status { status: 429, retry_after: Some(7) });
    let reply = post(&server, &token, body(2), false).await.unwrap();
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers["retry-after"], "7");
    assert_eq!(reply.error_code(), "TooManyRequests");
    assert!(server.accepted(DCR, STREAM).is_empty());
    // The fault was used up: the next request is handled normally.
    assert_eq!(post(&server, &token, body(2), false).await.unwrap().status, 204);
    let statuses: Vec<_> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 204]);
}

#[tokio::test]
async fn status_fault_applies_before_validation() {
    let server = start().await;
    server.inject(Fault::Status { status: 503, retry_after: None });
    // No token at all: the fault still wins.
    let reply = post(&server, "none", b"garbage".to_vec(), false).await.unwrap();
    assert_eq!(reply.status, 503);
    assert!(!reply.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn slow_fault_delays_then_accepts() {
    let server = start().await;
    let token = token(&server).await;
    server.inject(Fault::Slow(Duration::from_millis(400)));
    let started = Instant::now();
    let reply = post(&server, &token, body(1), false).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(reply.status, 204);
    assert_eq!(server.accepted(DCR, STREAM).len(), 1);
}

#[tokio::test]
async fn drop_fault_closes_without_response_and_records_no_rows() {
    let server = start().await;
    let token = token(&server).await;
    server.inject(Fault::Drop);
    let outcome = post(&server, &token, body(3), false).await;
    assert!(outcome.is_err(), "expected no response, got {outcome:?}");
    assert!(server.accepted(DCR, STREAM).is_empty());
    let log = &server.requests()[0];
    assert_eq!((log.status, log.wire_bytes), (0, body(3).len()));
}

#[tokio::test]
async fn accept_then_drop_records_rows_but_sends_no_response() {
    let server = start().await;
    let token = token(&server).await;
    server.inject(Fault::AcceptThenDrop);
    let outcome = post(&server, &token, body(3), false).await;
    assert!(outcome.is_err(), "expected no response, got {outcome:?}");
    assert_eq!(server.accepted(DCR, STREAM).len(), 3);
    // A client retry duplicates the rows: the service does not deduplicate.
    assert_eq!(post(&server, &token, body(3), false).await.unwrap().status, 204);
    assert_eq!(server.accepted(DCR, STREAM).len(), 6);
    let log = &server.requests()[0];
    assert_eq!((log.status, log.rows), (0, 3));
}

#[tokio::test]
async fn queued_faults_apply_to_the_next_requests_in_order() {
    let server = start().await;
    let token = token(&server).await;
    server.inject(Fault::Status { status: 500, retry_after: None });
    server.inject(Fault::Drop);
    server.inject(Fault::Status { status: 429, retry_after: Some(1) });
    assert_eq!(post(&server, &token, body(1), false).await.unwrap().status, 500);
    assert!(post(&server, &token, body(1), false).await.is_err());
    assert_eq!(post(&server, &token, body(1), false).await.unwrap().status, 429);
    assert_eq!(post(&server, &token, body(1), false).await.unwrap().status, 204);
    let statuses: Vec<_> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 0, 429, 204]);
    assert_eq!(server.accepted(DCR, STREAM).len(), 1);
}
