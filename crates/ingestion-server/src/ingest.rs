//! The Logs Ingestion API endpoint: `POST /dataCollectionRules/{dcr}/streams/{stream}
//! ?api-version=2023-01-01` (contracts.md §d).
//!
//! A queued [`Fault`] applies first. Then the checks run in this order, the first failure wins
//! (status, `error.code`):
//! 1. method POST, else 405 `MethodNotAllowed`;
//! 2. path `/dataCollectionRules/{dcr}/streams/{stream}`, else 404 `NotFound`;
//! 3. query `api-version=2023-01-01`, else 400 `InvalidApiVersion` (`MissingApiVersion` when absent);
//! 4. `Authorization: Bearer <token>` issued by our token endpoint for
//!    `https://monitor.azure.com/.default`, not expired or revoked, else 401 `InvalidAuthenticationToken`
//!    (`MissingAuthenticationToken` without the header);
//! 5. known DCR, else 404 `InvalidDcrImmutableId`; known stream, else 404 `InvalidStream`;
//! 6. `Content-Type: application/json` (parameters such as `charset` allowed), else 415
//!    `UnsupportedMediaType` (the docs call the header required but do not name the status; 415 is
//!    HTTP's status for it, RFC 9110 §15.5.16);
//! 7. `Content-Encoding` absent, `identity` or `gzip`, else 415 `UnsupportedContentEncoding`;
//! 8. body on the wire ≤ `max_wire_bytes`, else 413 `ContentLengthLimitExceeded`;
//! 9. gzip decodes, else 400 `InvalidContentEncoding`; decoded ≤ `max_decompressed_bytes`, else 413;
//! 10. body is UTF-8 JSON, an array of objects, else 400 `InvalidJson` / `InvalidPayload`;
//! 11. every key a declared column (when `reject_unknown_columns`), else 400 `InvalidColumns`;
//! 12. for a stream whose table has the Auxiliary plan ([`crate::plans`]): nested JSON only into
//!     `dynamic` columns, else 400 `MalformedJson`; without a transformation, rows spanning less
//!     than 30 minutes of `TimeGenerated`, else 400 `RecordsTimeRangeIsMoreThan30Minutes`.
//!
//! Success is 204 without a body; the rows are then recorded. The error codes are in Azure's
//! `{"error":{"code","message"}}` envelope; the codes themselves are not documented (UNVERIFIED),
//! only the statuses and the 413 message are.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::{API_VERSION, DropConnection, Fault, RequestLog, Resp, Row, Shared};

/// The service's 413 message (tutorial troubleshooting, contracts.md §d).
pub const TOO_LARGE_MESSAGE: &str = "The message is too large. The maximum message size is currently 1 MB per call.";

/// The future a handler returns.
pub type BoxResponseFuture = Pin<Box<dyn Future<Output = Result<Resp, DropConnection>> + Send>>;

/// Entry point of the ingestion listener.
pub(crate) fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> BoxResponseFuture {
    Box::pin(handle_inner(shared, req))
}

/// An Azure-style error response: `{"error":{"code","message"}}`.
pub(crate) fn error_response(status: u16, code: &str, message: &str) -> Resp {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// A rejection: status, error code and message.
struct Reject {
    status: u16,
    code: &'static str,
    message: String,
}

fn reject(status: u16, code: &'static str, message: impl Into<String>) -> Reject {
    Reject { status, code, message: message.into() }
}

async fn handle_inner(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, DropConnection> {
    let (parts, body) = req.into_parts();
    let (dcr, stream) = parse_path(parts.uri.path()).unwrap_or_default();
    let mut log = RequestLog {
        status: 0,
        dcr,
        stream,
        rows: 0,
        wire_bytes: 0,
        decompressed_bytes: 0,
        gzip: header_str(&parts.headers, CONTENT_ENCODING.as_str())
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip")),
        client_request_id: header_str(&parts.headers, "x-ms-client-request-id").map(str::to_owned),
        error_code: None,
    };
    let fault = shared.next_fault();
    let mut then_drop = false;
    match fault {
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Status { status, retry_after }) => {
            let wire = read_body(body, shared.config.max_wire_bytes).await;
            log.wire_bytes = wire.as_ref().map_or(0, Bytes::len);
            let code = fault_code(status);
            let mut resp = error_response(status, code, "injected fault");
            if let Some(secs) = retry_after
                && let Ok(value) = secs.to_string().parse()
            {
                resp.headers_mut().insert("retry-after", value);
            }
            log.status = status;
            log.error_code = Some(code.to_owned());
            shared.log_request(log);
            return Ok(resp);
        }
        Some(Fault::Drop) => {
            let wire = read_body(body, shared.config.max_wire_bytes).await;
            log.wire_bytes = wire.as_ref().map_or(0, Bytes::len);
            shared.log_request(log);
            return Err(DropConnection);
        }
        Some(Fault::AcceptThenDrop) => then_drop = true,
        None => {}
    }

    let outcome = validate(&shared, &parts, body, &mut log).await;
    match outcome {
        Ok(rows) => {
            log.rows = rows.len();
            shared.record_rows(&log.dcr, &log.stream, rows);
            if then_drop {
                shared.log_request(log);
                return Err(DropConnection);
            }
            log.status = 204;
            shared.log_request(log);
            Ok(Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::new(Bytes::new()))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
        }
        Err(r) => {
            log.status = r.status;
            log.error_code = Some(r.code.to_owned());
            shared.log_request(log);
            let mut resp = error_response(r.status, r.code, &r.message);
            if r.status == 401 {
                resp.headers_mut().insert("www-authenticate", hyper::header::HeaderValue::from_static("Bearer"));
            }
            if r.status == 405 {
                resp.headers_mut().insert("allow", hyper::header::HeaderValue::from_static("POST"));
            }
            Ok(resp)
        }
    }
}

async fn validate(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    log: &mut RequestLog,
) -> Result<Vec<Row>, Reject> {
    let config = &shared.config;
    if parts.method != Method::POST {
        return Err(reject(405, "MethodNotAllowed", format!("the method {} is not allowed; use POST", parts.method)));
    }
    if log.dcr.is_empty() {
        return Err(reject(
            404,
            "NotFound",
            "the path must be /dataCollectionRules/{dcrImmutableId}/streams/{streamName}",
        ));
    }
    check_api_version(parts.uri.query())?;
    check_auth(shared, &parts.headers)?;
    let Some(streams) = config.streams.get(&log.dcr) else {
        return Err(reject(
            404,
            "InvalidDcrImmutableId",
            format!("data collection rule with immutable id '{}' not found", log.dcr),
        ));
    };
    let Some(columns) = streams.get(&log.stream) else {
        return Err(reject(
            404,
            "InvalidStream",
            format!("stream '{}' is not declared in data collection rule '{}'", log.stream, log.dcr),
        ));
    };
    check_content_type(&parts.headers)?;
    let encoding = header_str(&parts.headers, CONTENT_ENCODING.as_str()).map(str::trim);
    match encoding {
        None | Some("") => {}
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("identity") => {}
        Some(e) => {
            return Err(reject(
                415,
                "UnsupportedContentEncoding",
                format!("content encoding '{e}' is not supported; use gzip"),
            ));
        }
    }

    let Some(wire) = read_body(body, config.max_wire_bytes).await else {
        log.wire_bytes = header_str(&parts.headers, CONTENT_LENGTH.as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(config.max_wire_bytes + 1);
        return Err(reject(413, "ContentLengthLimitExceeded", TOO_LARGE_MESSAGE));
    };
    log.wire_bytes = wire.len();
    let json = if log.gzip {
        let mut out = Vec::new();
        let cap = u64::try_from(config.max_decompressed_bytes).unwrap_or(u64::MAX);
        MultiGzDecoder::new(&wire[..])
            .take(cap.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| reject(400, "InvalidContentEncoding", format!("the body is not valid gzip: {e}")))?;
        log.decompressed_bytes = out.len();
        if out.len() > config.max_decompressed_bytes {
            return Err(reject(413, "ContentLengthLimitExceeded", TOO_LARGE_MESSAGE));
        }
        out
    } else {
        log.decompressed_bytes = wire.len();
        wire.to_vec()
    };

    if config.limits_only {
        return Ok(Vec::new());
    }
    let rows = parse_rows(&json, log)?;
    if config.reject_unknown_columns {
        check_columns(&rows, columns)?;
    }
    if let Some(rules) = config.rules.get(&log.stream) {
        crate::plans::check(&rows, rules).map_err(|(code, message)| reject(400, code, message))?;
    }
    Ok(rows)
}

fn parse_rows(json: &[u8], log: &mut RequestLog) -> Result<Vec<Row>, Reject> {
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| reject(400, "InvalidJson", format!("the body is not valid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(reject(400, "InvalidPayload", "the body must be a JSON array of objects"));
    };
    log.rows = items.len();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(row) => Ok(row),
            _ => Err(reject(400, "InvalidPayload", format!("item {i} of the array is not a JSON object"))),
        })
        .collect()
}

fn check_columns(rows: &[Row], columns: &[String]) -> Result<(), Reject> {
    let declared: BTreeSet<&str> = columns.iter().map(String::as_str).collect();
    let unknown: BTreeSet<&str> =
        rows.iter().flat_map(|r| r.keys()).map(String::as_str).filter(|k| !declared.contains(k)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<&str> = unknown.into_iter().collect();
    Err(reject(400, "InvalidColumns", format!("columns not declared in the stream: {}", list.join(", "))))
}

fn check_api_version(query: Option<&str>) -> Result<(), Reject> {
    let version = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.into_owned());
    match version {
        Some(v) if v == API_VERSION => Ok(()),
        Some(v) => {
            Err(reject(400, "InvalidApiVersion", format!("the api-version '{v}' is not supported; use {API_VERSION}")))
        }
        None => Err(reject(
            400,
            "MissingApiVersion",
            format!("the api-version query parameter is required; use {API_VERSION}"),
        )),
    }
}

fn check_auth(shared: &Shared, headers: &HeaderMap) -> Result<(), Reject> {
    let Some(value) = header_str(headers, "authorization") else {
        return Err(reject(401, "MissingAuthenticationToken", "the request has no Authorization header"));
    };
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| {
            reject(401, "InvalidAuthenticationToken", "the Authorization header must be 'Bearer <token>'")
        })?;
    shared.check_token(token).map_err(|why| reject(401, "InvalidAuthenticationToken", why))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Reject> {
    let value = header_str(headers, CONTENT_TYPE.as_str()).unwrap_or("");
    let media = value.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(reject(
            415,
            "UnsupportedMediaType",
            format!("content type '{value}' is not supported; use application/json"),
        ))
    }
}

/// `(dcr, stream)` from `/dataCollectionRules/{dcr}/streams/{stream}`.
fn parse_path(path: &str) -> Option<(String, String)> {
    let mut segments = path.trim_start_matches('/').split('/');
    let (a, dcr, b, stream) = (segments.next()?, segments.next()?, segments.next()?, segments.next()?);
    let ok = segments.next().is_none()
        && a.eq_ignore_ascii_case("dataCollectionRules")
        && b.eq_ignore_ascii_case("streams")
        && !dcr.is_empty()
        && !stream.is_empty();
    ok.then(|| (dcr.to_owned(), stream.to_owned()))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The body, or `None` when it exceeds `limit` bytes (or the connection failed).
async fn read_body(body: Incoming, limit: usize) -> Option<Bytes> {
    Limited::new(body, limit).collect().await.ok().map(|c| c.to_bytes())
}

fn fault_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "InvalidAuthenticationToken",
        403 => "Forbidden",
        404 => "NotFound",
        408 => "RequestTimeout",
        413 => "ContentLengthLimitExceeded",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "InjectedFault",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ingestion_path() {
        assert_eq!(
            parse_path("/dataCollectionRules/dcr-1/streams/Custom-T_CL"),
            Some(("dcr-1".into(), "Custom-T_CL".into()))
        );
        assert_eq!(parse_path("/dataCollectionRules/dcr-1/streams"), None);
        assert_eq!(parse_path("/dataCollectionRules/dcr-1/streams/s/x"), None);
        assert_eq!(parse_path("/other/dcr-1/streams/s"), None);
    }

    #[test]
    fn api_version_must_be_2023_01_01() {
        assert!(check_api_version(Some("api-version=2023-01-01")).is_ok());
        assert_eq!(check_api_version(Some("api-version=2021-11-01-preview")).unwrap_err().code, "InvalidApiVersion");
        assert_eq!(check_api_version(None).unwrap_err().code, "MissingApiVersion");
    }

    #[test]
    fn content_type_allows_a_charset_parameter() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        assert!(check_content_type(&h).is_ok());
        h.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(check_content_type(&h).unwrap_err().status, 415);
        assert_eq!(check_content_type(&HeaderMap::new()).unwrap_err().status, 415);
    }

    #[test]
    fn unknown_columns_are_listed() {
        let rows: Vec<Row> = serde_json::from_str(r#"[{"A":1,"Zed":2},{"B":3,"A":4}]"#).unwrap();
        let err = check_columns(&rows, &["A".to_owned()]).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.ends_with("B, Zed"), "{}", err.message);
        assert!(check_columns(&rows, &["A".into(), "B".into(), "Zed".into()]).is_ok());
    }
}
