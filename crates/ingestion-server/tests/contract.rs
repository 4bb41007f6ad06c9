//! The ingestion endpoint and the token endpoint enforce the Logs Ingestion API contract
//! (contracts.md §d); each test sends one kind of bad request with a plain HTTPS client.

mod common;

use common::*;
use defender_ingestion_server::ingest::TOO_LARGE_MESSAGE;
use defender_ingestion_server::{ServerConfig, TestServer};

fn body(n: usize) -> Vec<u8> {
    rows(n).to_string().into_bytes()
}

#[tokio::test]
async fn accepts_plain_and_gzip_arrays_with_204_and_records_rows_in_order() {
    let server = start().await;
    let token = token(&server).await;
    let plain = post(&server, &token, body(3), false).await.unwrap();
    assert_eq!(plain.status, 204);
    assert!(plain.body.is_empty());
    let gz = post(&server, &token, gzip(&body(2)), true).await.unwrap();
    assert_eq!(gz.status, 204);
    let accepted = server.accepted(DCR, STREAM);
    let seqs: Vec<_> = accepted.iter().map(|r| r["Seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2, 0, 1]);
    let logs = server.requests();
    assert_eq!(logs.len(), 2);
    assert!(!logs[0].gzip && logs[1].gzip);
    assert_eq!(logs[1].decompressed_bytes, body(2).len());
    assert_eq!(logs[1].rows, 2);
    server.stop().await;
}

#[tokio::test]
async fn records_the_client_request_id_and_allows_a_charset() {
    let server = start().await;
    let auth = format!("Bearer {}", token(&server).await);
    let reply = send(
        &server.endpoint,
        &server.ca_pem,
        "POST",
        &ingest_path(DCR, STREAM),
        &[
            ("authorization", &auth),
            ("content-type", "application/json; charset=utf-8"),
            ("x-ms-client-request-id", "11111111-2222-3333-4444-555555555555"),
        ],
        body(1),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 204);
    assert_eq!(server.requests()[0].client_request_id.as_deref(), Some("11111111-2222-3333-4444-555555555555"));
}

#[tokio::test]
async fn missing_expired_revoked_or_wrong_audience_tokens_get_401() {
    let mut config = config();
    config.token_lifetime = std::time::Duration::ZERO;
    let expiring = TestServer::start(config).await.unwrap();
    let expired = token(&expiring).await;
    let reply = post(&expiring, &expired, body(1), false).await.unwrap();
    assert_eq!((reply.status, reply.error_code().as_str()), (401, "InvalidAuthenticationToken"));

    let server = start().await;
    let reply = send(
        &server.endpoint,
        &server.ca_pem,
        "POST",
        &ingest_path(DCR, STREAM),
        &[("content-type", "application/json")],
        body(1),
    )
    .await
    .unwrap();
    assert_eq!((reply.status, reply.error_code().as_str()), (401, "MissingAuthenticationToken"));
    assert_eq!(reply.headers["www-authenticate"], "Bearer");

    let forged = post(&server, "not-a-token-we-issued", body(1), false).await.unwrap();
    assert_eq!(forged.status, 401);

    let graph = token_for(&server, "https://graph.microsoft.com/.default").await;
    assert_eq!(post(&server, &graph, body(1), false).await.unwrap().status, 401);

    let good = token(&server).await;
    assert_eq!(post(&server, &good, body(1), false).await.unwrap().status, 204);
    server.revoke_tokens();
    assert_eq!(post(&server, &good, body(1), false).await.unwrap().status, 401);
    assert_eq!(server.accepted(DCR, STREAM).len(), 1);
}

#[tokio::test]
async fn a_server_started_trusting_another_accepts_its_tokens_and_no_others() {
    let issuer = start().await;
    let second = TestServer::start_trusting(config(), &issuer).await.unwrap();
    let stranger = start().await;
    let shared = token(&issuer).await;
    assert_eq!(post(&second, &shared, body(2), false).await.unwrap().status, 204);
    assert_eq!(post(&second, &token(&second).await, body(1), false).await.unwrap().status, 204, "its own too");
    assert_eq!(post(&second, &token(&stranger).await, body(1), false).await.unwrap().status, 401);
    assert_eq!(post(&stranger, &shared, body(1), false).await.unwrap().status, 401);
    assert_eq!((second.accepted(DCR, STREAM).len(), issuer.accepted(DCR, STREAM).len()), (3, 0), "rows per server");
    issuer.revoke_tokens();
    assert_eq!(post(&second, &shared, body(1), false).await.unwrap().status, 401, "revoked at the issuer");
}

#[tokio::test]
async fn unknown_dcr_or_stream_or_path_gets_404() {
    let server = start().await;
    let auth = format!("Bearer {}", token(&server).await);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    for (path, code) in [
        (ingest_path("dcr-unknown", STREAM), "InvalidDcrImmutableId"),
        (ingest_path(DCR, "Custom-Other_CL"), "InvalidStream"),
        ("/dataCollectionRules/x?api-version=2023-01-01".to_owned(), "NotFound"),
    ] {
        let reply = send(&server.endpoint, &server.ca_pem, "POST", &path, &headers, body(1)).await.unwrap();
        assert_eq!((reply.status, reply.error_code().as_str()), (404, code), "{path}");
    }
}

#[tokio::test]
async fn wrong_or_missing_api_version_gets_400() {
    let server = start().await;
    let auth = format!("Bearer {}", token(&server).await);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let base = format!("/dataCollectionRules/{DCR}/streams/{STREAM}");
    for (query, code) in [("?api-version=2021-11-01-preview", "InvalidApiVersion"), ("", "MissingApiVersion")] {
        let path = format!("{base}{query}");
        let reply = send(&server.endpoint, &server.ca_pem, "POST", &path, &headers, body(1)).await.unwrap();
        assert_eq!((reply.status, reply.error_code().as_str()), (400, code));
    }
}

#[tokio::test]
async fn methods_other_than_post_get_405() {
    let server = start().await;
    let auth = format!("Bearer {}", token(&server).await);
    let reply = send(
        &server.endpoint,
        &server.ca_pem,
        "PUT",
        &ingest_path(DCR, STREAM),
        &[("authorization", &auth), ("content-type", "application/json")],
        body(1),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "POST");
}

#[tokio::test]
async fn content_type_other_than_json_gets_415() {
    let server = start().await;
    let auth = format!("Bearer {}", token(&server).await);
    let reply = send(
        &server.endpoint,
        &server.ca_pem,
        "POST",
        &ingest_path(DCR, STREAM),
        &[("authorization", &auth), ("content-type", "text/plain")],
        body(1),
    )
    .await
    .unwrap();
    assert_eq!((reply.status, reply.error_code().as_str()), (415, "UnsupportedMediaType"));
}

#[tokio::test]
async fn bodies_that_are_not_arrays_of_objects_get_400() {
    let server = start().await;
    let token = token(&server).await;
    for (raw, code) in [
        (&b"{\"Seq\":1}"[..], "InvalidPayload"),
        (b"[1,2]", "InvalidPayload"),
        (b"[{\"Seq\":1}", "InvalidJson"),
        (b"[{\"Payload\":\"\xff\"}]", "InvalidJson"),
    ] {
        let reply = post(&server, &token, raw.to_vec(), false).await.unwrap();
        assert_eq!((reply.status, reply.error_code().as_str()), (400, code));
    }
    let bad_gzip = post(&server, &token, b"not gzip".to_vec(), true).await.unwrap();
    assert_eq!((bad_gzip.status, bad_gzip.error_code().as_str()), (400, "InvalidContentEncoding"));
    assert!(server.accepted(DCR, STREAM).is_empty());
}

#[tokio::test]
async fn undeclared_columns_get_400_listing_them_unless_allowed() {
    let server = start().await;
    let token = token(&server).await;
    let raw = br#"[{"Seq":1,"Zeta":2,"Alpha":3}]"#.to_vec();
    let reply = post(&server, &token, raw.clone(), false).await.unwrap();
    assert_eq!((reply.status, reply.error_code().as_str()), (400, "InvalidColumns"));
    let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.ends_with("Alpha, Zeta"), "{message}");

    let mut config = config();
    config.reject_unknown_columns = false;
    let lenient = TestServer::start(config).await.unwrap();
    let lenient_token = common::token(&lenient).await;
    assert_eq!(post(&lenient, &lenient_token, raw, false).await.unwrap().status, 204);
}

#[tokio::test]
async fn bodies_over_the_wire_limit_get_413_with_the_service_message() {
    let server = start().await;
    let token = token(&server).await;
    let big = vec![b' '; defender_ingestion_server::DEFAULT_MAX_WIRE_BYTES + 1];
    let reply = post(&server, &token, big, false).await.unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["message"], TOO_LARGE_MESSAGE);
    assert!(server.accepted(DCR, STREAM).is_empty());
}

#[tokio::test]
async fn gzip_bodies_over_one_mib_decompressed_are_accepted_up_to_the_cap() {
    let mut config = config();
    config.max_decompressed_bytes = 3 * 1024 * 1024;
    let server = TestServer::start(config).await.unwrap();
    let token = token(&server).await;
    let pad = "x".repeat(1000);
    let make = |n: usize| {
        let rows: Vec<_> = (0..n).map(|i| serde_json::json!({ "Seq": i, "Payload": pad })).collect();
        serde_json::to_vec(&rows).unwrap()
    };
    let two_mib = make(2 * 1024);
    assert!(two_mib.len() > 2 * 1024 * 1024);
    let reply = post(&server, &token, gzip(&two_mib), true).await.unwrap();
    assert_eq!(reply.status, 204);
    assert_eq!(server.requests()[0].decompressed_bytes, two_mib.len());

    let four_mib = make(4 * 1024);
    let reply = post(&server, &token, gzip(&four_mib), true).await.unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["message"], TOO_LARGE_MESSAGE);
    assert_eq!(server.accepted(DCR, STREAM).len(), 2 * 1024);
}

#[tokio::test]
async fn token_endpoint_rejects_a_wrong_secret_with_401_invalid_client() {
    let server = start().await;
    let form = format!(
        "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret=wrong&scope=https%3A%2F%2Fmonitor.azure.com%2F.default"
    );
    let reply = post_token_form(&server.authority, &server.ca_pem, form).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"], "invalid_client");
    assert!(!String::from_utf8_lossy(&reply.body).contains(SECRET));
}

#[tokio::test]
async fn token_endpoint_issues_bearer_tokens_and_serves_openid_configuration() {
    let server = start().await;
    let form = format!(
        "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={SECRET}&scope=https%3A%2F%2Fmonitor.azure.com%2F.default"
    );
    let reply = post_token_form(&server.authority, &server.ca_pem, form).await;
    let json = reply.json();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 3600);
    assert_eq!(json["ext_expires_in"], 3600);

    let oidc = send(
        &server.authority,
        &server.ca_pem,
        "GET",
        &format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
        &[],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(oidc.status, 200);
    assert_eq!(oidc.json()["token_endpoint"], format!("{}/{TENANT}/oauth2/v2.0/token", server.authority));
    let config = ServerConfig::new(Default::default(), "t", "c", "s");
    assert!(!format!("{config:?}").contains("\"s\""));
}

/// Benchmarks' mode: the call is still checked (limits, gzip), the rows are neither parsed nor
/// kept.
#[tokio::test]
async fn limits_only_checks_the_call_but_keeps_no_rows() {
    let mut config = config();
    config.limits_only = true;
    let server = TestServer::start(config).await.unwrap();
    let token = token(&server).await;
    let reply = post(&server, &token, gzip(&body(3)), true).await.unwrap();
    assert_eq!(reply.status, 204);
    assert!(server.accepted(DCR, STREAM).is_empty(), "rows are not kept");
    let big = vec![b' '; defender_ingestion_server::DEFAULT_MAX_WIRE_BYTES + 1];
    assert_eq!(post(&server, &token, big, false).await.unwrap().status, 413, "limits still hold");
    assert_eq!(post(&server, &token, b"not gzip".to_vec(), true).await.unwrap().status, 400, "gzip still checked");
}
