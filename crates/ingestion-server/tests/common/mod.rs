//! Helpers shared by the integration tests: a small HTTPS client (hyper over tokio-rustls,
//! trusting only the server's CA) and a server with one DCR and stream.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use defender_ingestion_server::tls::SelfSigned;
use defender_ingestion_server::{ServerConfig, TestServer};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const DCR: &str = "dcr-00000000000000000000000000000001";
pub const STREAM: &str = "Custom-DeviceEvents_CL";
pub const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
pub const CLIENT_ID: &str = "00000000-0000-0000-0000-0000000000bb";
pub const SECRET: &str = "local-test-secret";
pub const COLUMNS: [&str; 3] = ["TimeGenerated", "Seq", "Payload"];

pub fn config() -> ServerConfig {
    let mut streams = BTreeMap::new();
    streams.insert(
        DCR.to_owned(),
        BTreeMap::from([(STREAM.to_owned(), COLUMNS.iter().map(|c| (*c).to_owned()).collect())]),
    );
    ServerConfig::new(streams, TENANT, CLIENT_ID, SECRET)
}

pub async fn start() -> TestServer {
    TestServer::start(config()).await.unwrap()
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// `error.code` of an Azure-style error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap().to_owned()
    }
}

/// Sends one request on a fresh connection; `Err` when the connection ends without a response.
pub async fn send(
    base: &str,
    ca_pem: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Reply, String> {
    let addr = base.trim_start_matches("https://").to_owned();
    let tcp = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
    let connector = TlsConnector::from(Arc::new(SelfSigned::client_config_for(ca_pem).unwrap()));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path_and_query).header("host", addr.as_str());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
    Ok(Reply { status, headers, body })
}

/// Posts a form to the token endpoint.
pub async fn post_token_form(authority: &str, ca_pem: &str, form: String) -> Reply {
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    send(authority, ca_pem, "POST", &format!("/{TENANT}/oauth2/v2.0/token"), &headers, form.into_bytes()).await.unwrap()
}

/// Requests a token for `scope` with the right credentials.
pub async fn token_for(server: &TestServer, scope: &str) -> String {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("client_secret", SECRET)
        .append_pair("scope", scope)
        .finish();
    let reply = post_token_form(&server.authority, &server.ca_pem, form).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

pub async fn token(server: &TestServer) -> String {
    token_for(server, "https://monitor.azure.com/.default").await
}

pub fn ingest_path(dcr: &str, stream: &str) -> String {
    format!("/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// `n` rows with the declared columns.
pub fn rows(n: usize) -> serde_json::Value {
    serde_json::Value::Array(
        (0..n)
            .map(|i| {
                serde_json::json!({
                    "TimeGenerated": "2026-11-24T08:00:00Z",
                    "Seq": i,
                    "Payload": format!("row-{i}"),
                })
            })
            .collect(),
    )
}

/// POSTs `body` (already encoded) as JSON with a valid token.
pub async fn post(server: &TestServer, token: &str, body: Vec<u8>, gzip: bool) -> Result<Reply, String> {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    if gzip {
        headers.push(("content-encoding", "gzip"));
    }
    send(&server.endpoint, &server.ca_pem, "POST", &ingest_path(DCR, STREAM), &headers, body).await
}
