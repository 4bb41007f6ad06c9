//! A strict local Azure Monitor Logs Ingestion API server and a local Entra-style OAuth2
//! client-credentials token endpoint, for tests (DESIGN.md §7, contracts.md §d).
//!
//! Two HTTPS listeners on `127.0.0.1`, both with one self-signed certificate generated at start
//! (`ca_pem`; Microsoft's clients refuse bearer tokens over plain HTTP):
//! - the *endpoint* serves `POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`
//!   and validates every request as described in [`ingest`];
//! - the *authority* serves `POST /{tenant}/oauth2/v2.0/token`, the OpenID configuration MSAL
//!   reads and the instance-discovery document ([`token`]).
//!
//! Invariants: a row is recorded in [`TestServer::accepted`] only when the whole request was
//! accepted (204, or [`Fault::AcceptThenDrop`]); every ingestion request, accepted or not, is
//! appended to [`TestServer::requests`]; secrets and tokens are never logged or printed.

pub mod ingest;
pub mod plans;
pub mod tls;
pub mod token;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

pub use plans::{StreamRules, TablePlan, rules_from_template};

/// One JSON row as accepted by the server.
pub type Row = Map<String, Value>;

/// The documented 1 MB per-call limit (contracts.md §d, "Maximum size of API call | 1 MB | Both
/// compressed and uncompressed data"), read as 1 MiB = 1,048,576 bytes: the figure Microsoft's
/// own client uses (`MAX_CHUNK_SIZE_BYTES = 1024 * 1024` in azure-monitor-ingestion
/// `_helpers.py`). Applied to the body as sent on the wire.
pub const DEFAULT_MAX_WIRE_BYTES: usize = 1024 * 1024;

/// Cap on the decompressed JSON of a gzip body: 50 MiB, from the field report cited in
/// contracts.md §d (open-telemetry/otel-arrow#2535). Microsoft's client sends gzip bodies whose
/// JSON exceeds 1 MiB (measured 1,050,703 bytes), so the wire limit cannot apply to it.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 50 * 1024 * 1024;

/// The only scope whose tokens the ingestion endpoint accepts.
pub const MONITOR_SCOPE: &str = "https://monitor.azure.com/.default";

/// The only accepted `api-version`.
pub const API_VERSION: &str = "2023-01-01";

/// Configuration of a [`TestServer`].
#[derive(Clone)]
pub struct ServerConfig {
    /// dcr immutable id -> stream name -> declared column names (the DCR's stream declaration).
    pub streams: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Tenant served by the token endpoint (`/{tenant}/oauth2/v2.0/token`).
    pub tenant: String,
    /// The only client id the token endpoint knows.
    pub client_id: String,
    /// Its secret; never logged.
    pub client_secret: String,
    /// Lifetime of issued tokens (`expires_in`); default 3600 s.
    pub token_lifetime: Duration,
    /// Request body limit on the wire, 413 above; default [`DEFAULT_MAX_WIRE_BYTES`].
    pub max_wire_bytes: usize,
    /// Cap on a gzip body's decompressed JSON, 413 above; default
    /// [`DEFAULT_MAX_DECOMPRESSED_BYTES`].
    pub max_decompressed_bytes: usize,
    /// Reject (400) rows with keys that are not declared columns of the stream. The real service
    /// is not documented to reject them (undeclared properties are not part of the stream the
    /// transformation sees); strict by default so tests catch schema drift.
    pub reject_unknown_columns: bool,
    /// The client's certificate (PEM): when set, the token endpoint also accepts a
    /// `client_assertion` JWT (RS256 or PS256) signed with its key, as
    /// `ClientCertificateCredential` sends; default None (client secret only).
    pub client_certificate_pem: Option<String>,
    /// Per stream name, the plan of its table and what that plan refuses ([`plans`]); a stream
    /// not listed is an Analytics one. Default empty; [`rules_from_template`] fills it from the
    /// generated ARM template.
    pub rules: BTreeMap<String, StreamRules>,
    /// Benchmarks: check the call (auth, path, content type, wire and decompressed limits,
    /// gzip) but neither parse nor keep the rows, so the server's own JSON parsing is not what
    /// a benchmark of the client measures. Default false.
    pub limits_only: bool,
}

impl ServerConfig {
    /// A configuration with the documented defaults.
    pub fn new(
        streams: BTreeMap<String, BTreeMap<String, Vec<String>>>,
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            streams,
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            token_lifetime: Duration::from_secs(3600),
            max_wire_bytes: DEFAULT_MAX_WIRE_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            reject_unknown_columns: true,
            client_certificate_pem: None,
            rules: BTreeMap::new(),
            limits_only: false,
        }
    }

    /// The same, with the stream rules of `template` (see [`rules_from_template`]).
    pub fn with_template(mut self, template: &Value) -> Result<Self, String> {
        self.rules = rules_from_template(template)?;
        Ok(self)
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("streams", &self.streams)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token_lifetime", &self.token_lifetime)
            .field("max_wire_bytes", &self.max_wire_bytes)
            .field("max_decompressed_bytes", &self.max_decompressed_bytes)
            .field("reject_unknown_columns", &self.reject_unknown_columns)
            .field("client_certificate_pem", &self.client_certificate_pem.as_ref().map(|_| "<certificate>"))
            .field("rules", &self.rules)
            .finish()
    }
}

/// What the server saw of one ingestion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLog {
    /// Status sent; 0 when the connection was dropped without a response ([`Fault::Drop`],
    /// [`Fault::AcceptThenDrop`]).
    pub status: u16,
    /// DCR immutable id from the path (empty when the path did not parse).
    pub dcr: String,
    /// Stream name from the path (empty when the path did not parse).
    pub stream: String,
    /// Rows in the body when it parsed as an array, else 0.
    pub rows: usize,
    /// Body bytes as received (up to the wire limit).
    pub wire_bytes: usize,
    /// Body bytes after gzip decoding (equal to `wire_bytes` without gzip).
    pub decompressed_bytes: usize,
    /// Whether the request had `Content-Encoding: gzip`.
    pub gzip: bool,
    /// `x-ms-client-request-id`, when sent.
    pub client_request_id: Option<String>,
    /// The `error.code` of the response body, for errors.
    pub error_code: Option<String>,
}

/// A fault applied to the next ingestion request, before any validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (an Azure-style error body); 429 and 503 carry `Retry-After`
    /// (seconds) when given.
    Status { status: u16, retry_after: Option<u64> },
    /// Wait, then handle the request normally.
    Slow(Duration),
    /// Read the body, then close the connection without a response; rows are not recorded.
    Drop,
    /// Validate and record the rows as for a 204, then close the connection without a response.
    AcceptThenDrop,
}

struct TokenInfo {
    expires: Instant,
    scope: String,
}

#[derive(Default)]
struct Inner {
    accepted: HashMap<(String, String), Vec<Row>>,
    requests: Vec<RequestLog>,
    faults: VecDeque<Fault>,
    tokens: HashMap<String, TokenInfo>,
}

/// State shared by both listeners.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) authority: String,
    inner: Mutex<Inner>,
    /// Another server whose tokens the ingestion endpoint accepts too ([`TestServer::start_trusting`]).
    issuer: Option<Arc<Shared>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner half-updated in a way tests care
        // about: keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_fault(&self) -> Option<Fault> {
        self.lock().faults.pop_front()
    }

    pub(crate) fn log_request(&self, log: RequestLog) {
        self.lock().requests.push(log);
    }

    pub(crate) fn record_rows(&self, dcr: &str, stream: &str, rows: Vec<Row>) {
        self.lock().accepted.entry((dcr.to_owned(), stream.to_owned())).or_default().extend(rows);
    }

    pub(crate) fn issue_token(&self, token: String, scope: String) {
        let expires = Instant::now() + self.config.token_lifetime;
        self.lock().tokens.insert(token, TokenInfo { expires, scope });
    }

    /// `Ok(())` when the token was issued by us (or by the server we trust), is not expired or
    /// revoked, and is for [`MONITOR_SCOPE`]; else the reason.
    pub(crate) fn check_token(&self, token: &str) -> Result<(), &'static str> {
        match (self.check_own_token(token), &self.issuer) {
            (Err(_), Some(issuer)) => issuer.check_token(token),
            (own, _) => own,
        }
    }

    fn check_own_token(&self, token: &str) -> Result<(), &'static str> {
        let inner = self.lock();
        let info = inner.tokens.get(token).ok_or("the access token is invalid or was revoked")?;
        if info.expires <= Instant::now() {
            return Err("the access token has expired");
        }
        if !info.scope.split(' ').any(|s| s == MONITOR_SCOPE) {
            return Err("the access token audience is not https://monitor.azure.com");
        }
        Ok(())
    }
}

/// A running server; both listeners stop when it is stopped or dropped.
pub struct TestServer {
    /// `https://127.0.0.1:PORT`: the DCR's logs ingestion endpoint.
    pub endpoint: String,
    /// `https://127.0.0.1:PORT2`: the authority hosting the token endpoint.
    pub authority: String,
    /// PEM of the self-signed certificate both listeners present: trust it.
    pub ca_pem: String,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("endpoint", &self.endpoint)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

type Handler = fn(Arc<Shared>, Request<Incoming>) -> ingest::BoxResponseFuture;

impl TestServer {
    /// Generates the certificate, binds `127.0.0.1:0` for both listeners and starts serving.
    pub async fn start(config: ServerConfig) -> std::io::Result<TestServer> {
        Self::start_with(config, None).await
    }

    /// Like [`TestServer::start`], but the ingestion endpoint also accepts the tokens `issuer`'s
    /// token endpoint issues (while they are valid there): two servers then stand for two DCRs
    /// with their own logs ingestion endpoints, which one Entra token for
    /// `https://monitor.azure.com` reaches. Rows and requests are still recorded per server, and
    /// the certificate is this server's own.
    pub async fn start_trusting(config: ServerConfig, issuer: &TestServer) -> std::io::Result<TestServer> {
        Self::start_with(config, Some(issuer.shared.clone())).await
    }

    async fn start_with(config: ServerConfig, issuer: Option<Arc<Shared>>) -> std::io::Result<TestServer> {
        let cert = tls::SelfSigned::generate()?;
        let acceptor = TlsAcceptor::from(Arc::new(cert.server_config()?));
        let ingest_listener = TcpListener::bind("127.0.0.1:0").await?;
        let token_listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("https://{}", ingest_listener.local_addr()?);
        let authority = format!("https://{}", token_listener.local_addr()?);
        let shared =
            Arc::new(Shared { config, authority: authority.clone(), inner: Mutex::new(Inner::default()), issuer });
        let tasks = vec![
            tokio::spawn(accept_loop(ingest_listener, acceptor.clone(), shared.clone(), ingest::handle)),
            tokio::spawn(accept_loop(token_listener, acceptor, shared.clone(), token::handle)),
        ];
        Ok(TestServer { endpoint, authority, ca_pem: cert.pem, shared, tasks })
    }

    /// Every accepted row of `dcr`/`stream`, in arrival order.
    pub fn accepted(&self, dcr: &str, stream: &str) -> Vec<Row> {
        self.shared.lock().accepted.get(&(dcr.to_owned(), stream.to_owned())).cloned().unwrap_or_default()
    }

    /// Every ingestion request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.lock().requests.clone()
    }

    /// Queues a fault for the next ingestion request that has none queued before it.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Drops every fault not yet applied (ends an injected outage now).
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Invalidates every token issued so far by this server: the next ingestion call with one
    /// gets 401 (here, and on the servers that trust this one).
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Stops both listeners and every open connection.
    pub async fn stop(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>, handler: Handler) {
    // Connections live in this set: aborting the accept loop drops it and aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                connections.spawn(serve_connection(tcp, peer, acceptor.clone(), shared.clone(), handler));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    _peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    handler: Handler,
) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let service = service_fn(move |req| handler(shared.clone(), req));
    // An Err from the service (a drop fault) makes hyper close the connection without a
    // response; other errors are the client going away.
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
}

/// The error hyper sees when a fault asks for the connection to be dropped.
#[derive(Debug)]
pub struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DropConnection {}

/// A response with a body.
pub(crate) type Resp = Response<Full<Bytes>>;
