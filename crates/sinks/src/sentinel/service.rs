//! Exactly one Logs Ingestion API call: `POST {endpoint}/dataCollectionRules/{dcr}/streams/
//! {stream}?api-version=2023-01-01` with one gzip'd body, and a typed result.
//!
//! Headers: `Authorization: Bearer <token>`, `Content-Type: application/json`,
//! `Content-Encoding: gzip`, `x-ms-client-request-id: <uuid v4>` (fresh per call, logged so a
//! call can be found in Azure's logs). Any 2xx (the service answers 204) is success; everything
//! else becomes a [`SendError`] whose [`SendErrorKind`] is what [`super::retry::classify`] reads.
//!
//! Invariants:
//! - this module never retries, sleeps or refreshes tokens, and never logs or formats the token;
//! - a timeout or a connection lost after the request was written is `Transient` with
//!   `outcome_unknown = true`: the service may have stored the rows. Retrying it (which we do:
//!   data must not be lost) may duplicate rows; the service does not deduplicate, which is why
//!   every row carries a deterministic `RecordId_CF` users can dedupe on;
//! - error messages carry the service's error code and message, and for 403/404 a hint that says
//!   what to fix.

use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, header};

use super::retry::parse_retry_after;

/// The API version this client speaks.
pub const API_VERSION: &str = "2023-01-01";

/// What kind of failure a call had (what the retry classifier decides on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendErrorKind {
    /// 5xx (but 503 with `Retry-After`), 408, timeouts and connection errors: retry with backoff.
    Transient,
    /// 429, or 503 with `Retry-After`: wait `retry_after` (or back off) and retry.
    Throttled { retry_after: Option<Duration> },
    /// 413: the body is too large; split it.
    TooLarge,
    /// 401: the token is missing, invalid or expired.
    Unauthorized,
    /// 400: the service refused the body's content. Some of its rows may be at fault (a value
    /// the stream cannot take) or all of them (a stream declaration that does not match):
    /// [`super::retry::classify`] halves the body to find out.
    Invalid,
    /// 403, 404 and other 4xx: a configuration error; retrying cannot help.
    Config,
}

/// One failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub kind: SendErrorKind,
    /// The HTTP status, when the service answered.
    pub status: Option<u16>,
    pub message: String,
    /// The request may have been processed (timeout, connection lost after sending).
    pub outcome_unknown: bool,
}

/// What to fix when the service answers 403.
pub const HINT_FORBIDDEN: &str = "grant the app the Monitoring Metrics Publisher role on the DCR; \
    permissions can take 30 minutes to propagate";
/// What to fix when the service answers 404.
pub const HINT_NOT_FOUND: &str = "check the DCR immutable id and the stream name (and that the \
    endpoint is the DCR's logs ingestion endpoint or its DCE)";

/// Builds the typed result of a response from its status, `Retry-After` header and body.
pub fn classify_response(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> Result<(), SendError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let retry_after = retry_after.and_then(|v| parse_retry_after(v, now));
    let detail = service_detail(body);
    let (kind, hint) = match status {
        401 => (SendErrorKind::Unauthorized, "the bearer token was refused"),
        403 => (SendErrorKind::Config, HINT_FORBIDDEN),
        404 => (SendErrorKind::Config, HINT_NOT_FOUND),
        408 => (SendErrorKind::Transient, "the service timed out reading the request"),
        400 => (SendErrorKind::Invalid, "the service refused the body's content; check the DCR stream declaration"),
        413 => (SendErrorKind::TooLarge, "the body is over the 1 MB limit; it will be split"),
        429 => (SendErrorKind::Throttled { retry_after }, "the DCR's rate limits were exceeded"),
        503 if retry_after.is_some() => (SendErrorKind::Throttled { retry_after }, "the service is unavailable"),
        500..=599 => (SendErrorKind::Transient, "service error"),
        _ => (SendErrorKind::Config, "the request was refused; check the DCR stream declaration"),
    };
    let message = if detail.is_empty() {
        format!("logs ingestion api answered {status}: {hint}")
    } else {
        format!("logs ingestion api answered {status} ({detail}): {hint}")
    };
    Err(SendError { kind, status: Some(status), message, outcome_unknown: false })
}

/// `code: message` from Azure's `{"error":{"code","message"}}` envelope, else the body's text
/// (cut to 512 bytes).
fn service_detail(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let error = value.get("error").unwrap_or(&value);
        let code = error.get("code").and_then(|c| c.as_str());
        let message = error.get("message").and_then(|m| m.as_str());
        match (code, message) {
            (Some(c), Some(m)) => return format!("{c}: {m}"),
            (Some(s), None) | (None, Some(s)) => return s.to_string(),
            (None, None) => {}
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut end = text.len().min(512);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// A fresh random (version 4) UUID, for `x-ms-client-request-id`.
pub fn request_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The HTTP side of the sink: one client (connection pool) for every DCR and stream.
#[derive(Debug, Clone)]
pub struct IngestionService {
    http: reqwest::Client,
    endpoint: String,
}

impl IngestionService {
    /// `endpoint` is the DCR's logs ingestion endpoint or a DCE (`https://…ingest.monitor.azure.com`).
    pub fn new(http: reqwest::Client, endpoint: &str) -> Self {
        Self { http, endpoint: endpoint.trim_end_matches('/').to_string() }
    }

    /// The URL of one stream.
    pub fn url(&self, dcr: &str, stream: &str) -> String {
        format!("{}/dataCollectionRules/{dcr}/streams/{stream}?api-version={API_VERSION}", self.endpoint)
    }

    /// Sends one gzip'd body. `request_id` goes to `x-ms-client-request-id`.
    pub async fn post(
        &self,
        dcr: &str,
        stream: &str,
        token: &str,
        request_id: &str,
        gzip: bytes::Bytes,
    ) -> Result<(), SendError> {
        let response = self
            .http
            .post(self.url(dcr, stream))
            .bearer_auth(token)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_ENCODING, "gzip")
            .header("x-ms-client-request-id", request_id)
            .body(gzip)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        // The body only explains the error; failing to read it does not change the status.
        let body = response.bytes().await.unwrap_or_default();
        classify_response(status.as_u16(), retry_after.as_deref(), &body, SystemTime::now())
    }
}

/// A call that got no HTTP status: connection refused (nothing was sent) or a timeout / lost
/// connection (the service may have processed it).
fn transport_error(error: reqwest::Error) -> SendError {
    let connect = error.is_connect();
    let what = if error.is_timeout() {
        "timed out"
    } else if connect {
        "could not connect"
    } else {
        "failed"
    };
    let mut message = format!("logs ingestion call {what}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    let status = error.status().map(|s: StatusCode| s.as_u16());
    SendError { kind: SendErrorKind::Transient, status, message, outcome_unknown: !connect }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470)
    }

    fn kind(status: u16, retry_after: Option<&str>) -> Option<SendErrorKind> {
        classify_response(status, retry_after, b"", now()).err().map(|e| e.kind)
    }

    #[test]
    fn every_status_gets_its_kind() {
        assert_eq!(kind(204, None), None);
        assert_eq!(kind(200, None), None);
        assert_eq!(kind(400, None), Some(SendErrorKind::Invalid));
        assert_eq!(kind(401, None), Some(SendErrorKind::Unauthorized));
        assert_eq!(kind(403, None), Some(SendErrorKind::Config));
        assert_eq!(kind(404, None), Some(SendErrorKind::Config));
        assert_eq!(kind(408, None), Some(SendErrorKind::Transient));
        assert_eq!(kind(413, None), Some(SendErrorKind::TooLarge));
        assert_eq!(kind(429, None), Some(SendErrorKind::Throttled { retry_after: None }));
        assert_eq!(kind(429, Some("7")), Some(SendErrorKind::Throttled { retry_after: Some(Duration::from_secs(7)) }));
        assert_eq!(
            kind(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(SendErrorKind::Throttled { retry_after: Some(Duration::from_secs(10)) })
        );
        assert_eq!(kind(500, None), Some(SendErrorKind::Transient));
        assert_eq!(kind(502, None), Some(SendErrorKind::Transient));
        assert_eq!(kind(503, None), Some(SendErrorKind::Transient));
        assert_eq!(kind(503, Some("3")), Some(SendErrorKind::Throttled { retry_after: Some(Duration::from_secs(3)) }));
    }

    #[test]
    fn messages_carry_the_service_error_and_a_hint() {
        let body = br#"{"error":{"code":"OperationFailed","message":"The authentication token provided does not have access to ingest data for the data collection rule"}}"#;
        let e = classify_response(403, None, body, now()).unwrap_err();
        assert_eq!(e.status, Some(403));
        assert!(e.message.contains("OperationFailed: The authentication token"), "{}", e.message);
        assert!(e.message.contains("Monitoring Metrics Publisher"), "{}", e.message);
        assert!(e.message.contains("30 minutes"), "{}", e.message);
        let e = classify_response(404, None, b"stream not found", now()).unwrap_err();
        assert!(e.message.contains("stream not found"), "{}", e.message);
        assert!(e.message.contains("check the DCR immutable id and the stream name"), "{}", e.message);
        assert!(!e.outcome_unknown);
    }

    #[test]
    fn long_error_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(1000);
        let e = classify_response(500, None, body.as_bytes(), now()).unwrap_err();
        assert!(e.message.len() < 700);
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, request_id());
    }

    #[test]
    fn urls_follow_the_documented_form() {
        let s = IngestionService::new(reqwest::Client::new(), "https://dce.eastus-1.ingest.monitor.azure.com/");
        assert_eq!(
            s.url("dcr-0001", "Custom-DeviceEvents_CL"),
            "https://dce.eastus-1.ingest.monitor.azure.com/dataCollectionRules/dcr-0001/streams/Custom-DeviceEvents_CL?api-version=2023-01-01"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient_with_a_known_outcome() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let s = IngestionService::new(reqwest::Client::new(), &format!("http://127.0.0.1:{port}"));
        let e = s.post("dcr", "Custom-T_CL", "tok", &request_id(), bytes::Bytes::new()).await.unwrap_err();
        assert_eq!(e.kind, SendErrorKind::Transient);
        assert!(!e.outcome_unknown, "{e:?}");
        assert!(!e.message.contains("tok"));
    }

    #[tokio::test]
    async fn a_timeout_is_transient_with_an_unknown_outcome() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let http = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
        let s = IngestionService::new(http, &format!("http://{addr}"));
        let e = s.post("dcr", "Custom-T_CL", "tok", &request_id(), bytes::Bytes::from_static(b"x")).await.unwrap_err();
        assert_eq!(e.kind, SendErrorKind::Transient);
        assert!(e.outcome_unknown, "{e:?}");
        assert!(e.message.contains("timed out"), "{}", e.message);
        server.abort();
    }
}
