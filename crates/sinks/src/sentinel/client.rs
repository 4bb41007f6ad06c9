//! The Sentinel sink proper: table batches → Logs Ingestion API calls, every row accepted.
//!
//! [`SentinelConfig`] (validated with [`SentinelConfig::validate`]) → [`SentinelSink::send`]:
//! encode the batch ([`RowEncoder`], built lazily per table like the dry run), pack it into
//! gzip bodies ([`Packer`]), then drive each body through [`IngestionService::post`] (one HTTP
//! call) and [`retry::classify`] until it is accepted, concurrently up to `concurrency_per_dcr`
//! calls per DCR and within the DCR's [`RateBudget`].
//!
//! Invariants:
//! - `send` returns `Ok` only when every body was accepted (2xx) or split into halves that were;
//!   rows no body can carry (packing), single rows the service still refuses with 413, and
//!   single rows it refuses with 400 while it accepts others (halving finds them) are counted in
//!   [`Sent::rejected`], logged and handed back in [`Sent::rejected_rows`] for the dead
//!   letters, never dropped silently: one bad row never holds the rest;
//! - transient errors and throttling are retried without limit (each retry logged at warn with
//!   the request id, never the token): a stalled service stalls the batch, which is not acked,
//!   which is the pipeline's backpressure. Configuration errors (403, 404, other 4xx, a 400 for
//!   every row of a stream that has accepted nothing), a 401
//!   right after a token refresh, and credentials Entra refuses end `send` with an error (the
//!   pipeline stops without acknowledging the batch), unless the sink was told to hold
//!   ([`SinkWatch::hold_when_refused`], a daemon): then it sets its readiness condition and
//!   tries again every `retry.max` until the service accepts;
//! - a retry after a timeout or a lost connection may duplicate rows (the service does not
//!   deduplicate); rows carry `RecordId_CF` for that;
//! - a permit of the DCR's semaphore is held only during a call, never while sleeping; the rate
//!   budget is taken before the permit.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use arrow_schema::SchemaRef;
use defender_core::health::{Condition, StageObserver};
use defender_core::{Catalog, TableBatch, billing::Tier};
use rand::{SeedableRng, rngs::SmallRng};
use tokio::sync::Semaphore;

use super::{
    DEFAULT_GZIP_LEVEL, EncodedRows, PackMode, Packer, RejectedRow, RowEncoder, Sent, SentinelError,
    auth::{AuthConfig, AuthError, TokenSource},
    pack::{Body, Packed},
    retry::{self, Decision, RateBudget, RetryPolicy},
    service::{IngestionService, SendError, request_id},
};

/// Where one table's rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    /// The DCR's immutable id (`dcr-…`).
    pub dcr_immutable_id: String,
    /// The stream declared in the DCR; `None` means `Custom-<Table>_CL`.
    pub stream: Option<String>,
    /// The plan of the table the stream goes to: its ingestion rules are followed (see
    /// [`super::pack`] and [`super::rows`] for Auxiliary).
    pub plan: Tier,
}

impl StreamTarget {
    pub fn new(dcr_immutable_id: impl Into<String>) -> Self {
        Self { dcr_immutable_id: dcr_immutable_id.into(), stream: None, plan: Tier::Analytics }
    }

    /// The stream name for `table`.
    pub fn stream_for(&self, table: &str) -> String {
        self.stream.clone().unwrap_or_else(|| format!("Custom-{table}_CL"))
    }
}

/// The Sentinel sink's settings.
///
/// Where a DCR's calls go ([`Self::endpoint_for`]). A DCR of kind `Direct` has its own logs
/// ingestion endpoint, `properties.endpoints.logsIngestion`, which Azure creates only for that
/// kind ("Structure of a data collection rule", learn.microsoft.com/azure/azure-monitor/
/// essentials/data-collection-rule-structure), and which can be used instead of a data
/// collection endpoint (DCE); one DCE serves the DCRs that use it, and is required with private
/// link ("Data collection endpoints in Azure Monitor", learn.microsoft.com/azure/azure-monitor/
/// essentials/data-collection-endpoint-overview; "Logs Ingestion API in Azure Monitor",
/// learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview). So: `endpoint`
/// for a DCE (or a single DCR), `dcr_endpoints` for DCRs reached at their own. Each call is
/// `POST {endpoint}/dataCollectionRules/{dcr immutable id}/streams/{stream}?api-version=2023-01-01`
/// ([`IngestionService::url`]; the path of the service's 2023-01-01 REST API description).
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelConfig {
    /// The logs ingestion endpoint (`https://…`) of every DCR not in `dcr_endpoints`: a DCE, or
    /// the only DCR's own. May be empty when every DCR of `tables` is in `dcr_endpoints`.
    pub endpoint: String,
    /// Per DCR immutable id, its own logs ingestion endpoint (`https://…`), used instead of
    /// `endpoint` for its calls.
    pub dcr_endpoints: BTreeMap<String, String>,
    /// Per table (Defender name), its DCR and stream. Batches of other tables are an error.
    pub tables: BTreeMap<String, StreamTarget>,
    pub auth: AuthConfig,
    pub pack: PackMode,
    /// Calls in flight per DCR.
    pub concurrency_per_dcr: usize,
    /// Budget per DCR (the service's limit is 2 GB/min, counted on uncompressed JSON here).
    pub max_bytes_per_minute: u64,
    /// Budget per DCR (the service's limit is 12,000 requests/min).
    pub max_requests_per_minute: u32,
    /// Time limit of one call, connection included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Extra trusted root certificates (PEM), for the ingestion and the token endpoints (tests).
    pub extra_root_pem: Option<String>,
    /// gzip level of the bodies (0–9; default [`DEFAULT_GZIP_LEVEL`]).
    pub gzip_level: u32,
}

impl SentinelConfig {
    /// Defaults for everything but the endpoint, the tables and the auth.
    pub fn new(endpoint: impl Into<String>, auth: AuthConfig) -> Self {
        Self {
            endpoint: endpoint.into(),
            dcr_endpoints: BTreeMap::new(),
            tables: BTreeMap::new(),
            auth,
            pack: PackMode::SDK,
            concurrency_per_dcr: 4,
            max_bytes_per_minute: 2_000_000_000,
            max_requests_per_minute: 12_000,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            extra_root_pem: None,
            gzip_level: DEFAULT_GZIP_LEVEL,
        }
    }

    /// Sends `table` to `stream` (default `Custom-<Table>_CL` when `None`) of `dcr`.
    pub fn with_table(mut self, table: &str, dcr: &str, stream: Option<&str>) -> Self {
        let plan = self.tables.get(table).map_or(Tier::Analytics, |t| t.plan);
        let target = StreamTarget { dcr_immutable_id: dcr.into(), stream: stream.map(str::to_string), plan };
        self.tables.insert(table.into(), target);
        self
    }

    /// Sets the plan of `table`'s Sentinel table (a table not added yet is ignored).
    pub fn with_plan(mut self, table: &str, plan: Tier) -> Self {
        if let Some(t) = self.tables.get_mut(table) {
            t.plan = plan;
        }
        self
    }

    /// Sends the calls of `dcr` to `endpoint` (its own logs ingestion endpoint) instead of
    /// [`Self::endpoint`].
    pub fn with_dcr_endpoint(mut self, dcr: &str, endpoint: &str) -> Self {
        self.dcr_endpoints.insert(dcr.into(), endpoint.into());
        self
    }

    /// The endpoint the calls of `dcr` go to: its own in `dcr_endpoints`, else `endpoint`.
    pub fn endpoint_for(&self, dcr: &str) -> &str {
        self.dcr_endpoints.get(dcr).unwrap_or(&self.endpoint)
    }

    /// Every DCR of `tables` with the endpoint its calls go to.
    pub fn endpoints(&self) -> BTreeMap<&str, &str> {
        self.tables.values().map(|t| (t.dcr_immutable_id.as_str(), self.endpoint_for(&t.dcr_immutable_id))).collect()
    }

    /// Checks everything that can be checked without connecting; the message names the key.
    pub fn validate(&self) -> Result<(), SentinelError> {
        self.check().map_err(SentinelError::Config)
    }

    fn check(&self) -> Result<(), String> {
        if !self.endpoint.is_empty() {
            check_endpoint("endpoint", &self.endpoint)?;
        }
        for (dcr, endpoint) in &self.dcr_endpoints {
            check_endpoint(&format!("dcr_endpoints.{dcr}"), endpoint)?;
        }
        if self.tables.is_empty() {
            return Err("tables must name at least one table to send".into());
        }
        for (table, target) in &self.tables {
            let id = &target.dcr_immutable_id;
            if !id.starts_with("dcr-") || id.len() < 5 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("tables.{table}.dcr_immutable_id must look like dcr-<hex>, not {id:?}"));
            }
            let stream = target.stream_for(table);
            if !(stream.starts_with("Custom-") || stream.starts_with("Microsoft-"))
                || !stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!("tables.{table}.stream must be Custom-<name> or Microsoft-<name>, not {stream:?}"));
            }
            if self.endpoint_for(id).is_empty() {
                return Err(format!(
                    "tables.{table}: dcr {id} has no endpoint: set endpoint (a DCE, for every DCR) or \
                     dcr_endpoints.{id} (the DCR's own logs ingestion endpoint)"
                ));
            }
        }
        if self.concurrency_per_dcr == 0 {
            return Err("concurrency_per_dcr must be at least 1".into());
        }
        if self.max_bytes_per_minute < 1_048_576 {
            return Err("max_bytes_per_minute must be at least 1 MiB (one request)".into());
        }
        if self.max_requests_per_minute == 0 {
            return Err("max_requests_per_minute must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return Err("request_timeout must be greater than zero".into());
        }
        match self.pack {
            PackMode::Uncompressed { max_bytes } if !(1024..=1_048_576).contains(&max_bytes) => {
                return Err(format!("pack max_bytes must be within 1 KiB..=1 MiB, not {max_bytes}"));
            }
            PackMode::Compressed { max_wire_bytes, .. } if !(1024..=1_048_576).contains(&max_wire_bytes) => {
                return Err(format!("pack max_wire_bytes must be within 1 KiB..=1 MiB, not {max_wire_bytes}"));
            }
            _ => {}
        }
        self.retry.validate()?;
        self.auth.validate()
    }
}

/// Checks a logs ingestion endpoint (`key` names it in the message): an `https` URL with a host,
/// since the calls carry bearer tokens.
pub fn check_endpoint(key: &str, endpoint: &str) -> Result<(), String> {
    match url::Url::parse(endpoint) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!("{key} must be an https url (bearer tokens need tls), not {endpoint:?}")),
        Err(e) => Err(format!("{key} {endpoint:?} is not a url: {e}")),
    }
}

/// Errors of the network half, wrapped in [`SentinelError::Client`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("table {table} has no dcr and stream in the sentinel config")]
    UnmappedTable { table: String },
    #[error("cannot build the http client: {0}")]
    Http(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("table {table}: dcr {dcr} stream {stream} refused a body: {error}")]
    Refused { table: String, dcr: String, stream: String, error: SendError },
}

/// What one batch became: the dry run's accounting plus the network's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Rows accepted, bodies and gzip bytes sent (counting accepted calls), rows rejected.
    pub sent: Sent,
    /// Calls retried after a transient error (5xx, timeout, connection).
    pub retries: u64,
    /// Calls retried after throttling (429, 503 with `Retry-After`).
    pub throttled: u64,
    /// Bodies halved after a 413.
    pub splits: u64,
    /// Tokens refreshed after a 401.
    pub refreshes: u64,
}

impl Delivered {
    fn add(&mut self, other: &Delivered) {
        self.sent.rows += other.sent.rows;
        self.sent.rejected += other.sent.rejected;
        self.sent.rejected_rows.extend(other.sent.rejected_rows.iter().cloned());
        self.sent.bodies += other.sent.bodies;
        self.sent.bytes += other.sent.bytes;
        self.retries += other.retries;
        self.throttled += other.throttled;
        self.splits += other.splits;
        self.refreshes += other.refreshes;
    }
}

/// One DCR's limits.
#[derive(Debug)]
struct DcrLimits {
    calls: Semaphore,
    budget: RateBudget,
}

/// See the module documentation.
pub struct SentinelSink {
    config: SentinelConfig,
    catalog: Arc<Catalog>,
    packer: Packer,
    /// Per DCR immutable id, the client of its endpoint (all sharing one connection pool).
    services: HashMap<String, IngestionService>,
    tokens: TokenSource,
    dcrs: HashMap<String, Arc<DcrLimits>>,
    encoders: Mutex<HashMap<Arc<str>, (SchemaRef, RowEncoder)>>,
    /// Per (DCR, stream), whether it accepted rows yet (how a 400 is read).
    streams: Mutex<HashMap<(String, String), StreamState>>,
    watch: Option<SinkWatch>,
}

/// A batch encoded and packed by [`SentinelSink::prepare`], ready for
/// [`SentinelSink::deliver_prepared`].
#[derive(Debug)]
pub struct Prepared {
    rows: EncodedRows,
    /// Auxiliary: the batch row of each encoded row (sorted by time).
    order: Option<Vec<usize>>,
    packed: Packed,
    truncated: u64,
}

impl Prepared {
    /// Bytes held (the rows' JSON and the gzip bodies), for in-flight bounds.
    pub fn bytes(&self) -> usize {
        self.rows.bytes() + self.packed.bodies.iter().map(|b| b.gzip.len()).sum::<usize>()
    }
}

/// How a running pipeline watches the sink (see `defender_core::health`).
#[derive(Debug, Clone)]
pub struct SinkWatch {
    /// The stage driving the sink: every answer is progress, every wait for a retry is excused.
    pub stage: StageObserver,
    /// Set while the service refuses us permanently (readiness), cleared by the next success.
    pub condition: Condition,
    /// A daemon's choice: on a permanent refusal (403, 404, a credential Entra refuses) hold the
    /// batch and try again every `retry.max` instead of failing the run, so a fix on the Azure
    /// side (a role assignment propagating, a DCR recreated) resumes it without a restart loop.
    pub hold_when_refused: bool,
}

impl std::fmt::Debug for SentinelSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSink").field("endpoints", &self.config.endpoints()).finish_non_exhaustive()
    }
}

/// The reqwest client for both the ingestion and the token endpoints.
fn http_client(config: &SentinelConfig) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(config.concurrency_per_dcr.max(1) * config.tables.len().max(1));
    if let Some(pem) = &config.extra_root_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| ClientError::Http(format!("extra_root_pem: {e}")))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| ClientError::Http(e.to_string()))
}

impl SentinelSink {
    /// Validates the config and builds the clients and credential (no network call yet).
    pub fn new(config: SentinelConfig, catalog: Arc<Catalog>) -> Result<Self, SentinelError> {
        config.validate()?;
        let http = http_client(&config)?;
        let tokens = TokenSource::new(config.auth.clone(), http.clone()).map_err(ClientError::from)?;
        let (mut services, mut dcrs) = (HashMap::new(), HashMap::new());
        for target in config.tables.values() {
            let dcr = &target.dcr_immutable_id;
            services
                .entry(dcr.clone())
                .or_insert_with(|| IngestionService::new(http.clone(), config.endpoint_for(dcr)));
            dcrs.entry(target.dcr_immutable_id.clone()).or_insert_with(|| {
                Arc::new(DcrLimits {
                    calls: Semaphore::new(config.concurrency_per_dcr),
                    budget: RateBudget::new(config.max_bytes_per_minute, config.max_requests_per_minute),
                })
            });
        }
        let packer = Packer::new(config.pack, config.gzip_level);
        Ok(Self {
            config,
            catalog,
            packer,
            services,
            tokens,
            dcrs,
            encoders: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            watch: None,
        })
    }

    /// Reports to a running pipeline's health (and, if asked, holds on permanent refusals).
    pub fn watch(&mut self, watch: SinkWatch) {
        self.watch = Some(watch);
    }

    /// A wait of `wait` for a retry: excused in the stage's liveness.
    fn excuse(&self, wait: Duration) {
        if let Some(w) = &self.watch {
            w.stage.excuse(wait);
        }
    }

    /// On a permanent refusal: `Some(wait)` when the sink holds and tries again after `wait`
    /// (readiness fails meanwhile), None when the run should fail.
    fn hold(&self, table: &str, error: &dyn std::fmt::Display) -> Option<Duration> {
        let w = self.watch.as_ref().filter(|w| w.hold_when_refused)?;
        let wait = self.config.retry.max;
        w.condition.refused(&format!("table {table}: {error}"));
        w.stage.excuse(wait);
        tracing::error!(table, error = %error, wait_s = wait.as_secs(),
            "sentinel refuses the call permanently: holding the data (not ready) and trying again");
        Some(wait)
    }

    pub fn config(&self) -> &SentinelConfig {
        &self.config
    }

    /// Encodes, packs and sends one batch (already filtered and projected by the policy);
    /// returns when every row was accepted or rejected, or at the first permanent error.
    pub async fn send(&self, batch: &TableBatch) -> Result<Delivered, SentinelError> {
        let prepared = self.prepare(batch)?;
        self.deliver_prepared(batch, prepared).await
    }

    /// The CPU half of [`Self::send`]: encodes the rows and packs the gzip bodies. Pure
    /// computation (no I/O, no await): a pipeline runs it on a blocking worker.
    pub fn prepare(&self, batch: &TableBatch) -> Result<Prepared, SentinelError> {
        let target = self
            .config
            .tables
            .get(&*batch.table)
            .ok_or_else(|| ClientError::UnmappedTable { table: batch.table.to_string() })?;
        let (rows, truncated) = self.encode(batch, target.plan)?;
        // Auxiliary calls must span less than 30 minutes: rows in time order make the fewest.
        let (rows, order) = match target.plan {
            Tier::Auxiliary => {
                let (sorted, order) = rows.sorted_by_time();
                (sorted, Some(order))
            }
            Tier::Analytics | Tier::Basic => (rows, None),
        };
        let packed = self.packer.for_plan(target.plan).pack(&rows);
        Ok(Prepared { rows, order, packed, truncated })
    }

    /// The I/O half of [`Self::send`]: sends the bodies of `prepared` (made from `batch`).
    pub async fn deliver_prepared(&self, batch: &TableBatch, prepared: Prepared) -> Result<Delivered, SentinelError> {
        let Prepared { rows, order, packed, truncated } = prepared;
        let target = self
            .config
            .tables
            .get(&*batch.table)
            .ok_or_else(|| ClientError::UnmappedTable { table: batch.table.to_string() })?;
        let batch_row = |i: usize| order.as_ref().map_or(i, |o| o[i]);
        for r in &packed.rejected {
            tracing::warn!(table = %batch.table, row = r.row, reason = %r.reason, "row cannot be sent to sentinel");
        }
        let mut total = Delivered {
            sent: Sent {
                table: batch.table.clone(),
                partition: batch.partition,
                epoch: batch.last_offset,
                rejected: packed.rejected.len() as u64,
                rejected_rows: packed
                    .rejected
                    .iter()
                    .map(|r| RejectedRow { row: batch_row(r.row), ..RejectedRow::packed(&rows, r) })
                    .collect(),
                truncated,
                ..Sent::default()
            },
            ..Delivered::default()
        };
        let call = Call {
            table: &batch.table,
            dcr: &target.dcr_immutable_id,
            stream: target.stream_for(&batch.table),
            limits: &self.dcrs[&target.dcr_immutable_id],
            rows: &rows,
            order: order.as_deref(),
        };
        let results = futures::future::try_join_all(packed.bodies.into_iter().map(|b| self.deliver(&call, b))).await?;
        for part in &results {
            total.add(part);
        }
        Ok(total)
    }

    /// Encodes with the table's encoder, taken out of the map while it works, so batches of
    /// different tables (and a second one of the same table, with an encoder of its own) encode
    /// in parallel.
    fn encode(&self, batch: &TableBatch, plan: Tier) -> Result<(EncodedRows, u64), SentinelError> {
        let schema = batch.batch.schema();
        let cached = self.encoders.lock().expect("encoder lock poisoned").remove(&batch.table);
        let mut encoder = match cached {
            Some((s, encoder)) if s == schema => encoder,
            _ => {
                let table = self
                    .catalog
                    .get(&batch.table)
                    .ok_or_else(|| SentinelError::UnknownTable { table: batch.table.to_string() })?;
                RowEncoder::new(table, &schema)?.with_table_plan(plan)
            }
        };
        let mut rows = EncodedRows::new();
        let stats = encoder.encode(&batch.batch, &mut rows)?;
        rows.shrink_to_fit();
        self.encoders.lock().expect("encoder lock poisoned").insert(batch.table.clone(), (schema, encoder));
        Ok((rows, stats.truncated_total()))
    }

    /// Drives one packed body (and the halves of it a 413 or a 400 makes) until every row is
    /// accepted or rejected, or the stream refuses us.
    ///
    /// A 400 says the content is wrong, not which rows: the body is halved until the refused
    /// parts are single rows. A single row refused on its own is rejected (a dead letter with
    /// the service's reason) once the stream has accepted something, in this call or before:
    /// then the stream works and the row is at fault, and it must not hold the rest. While the
    /// stream has accepted nothing, such rows are held back until the other halves answer; if
    /// none is accepted (or [`MAX_UNPROVEN_REFUSALS`] calls in a row are refused), the stream
    /// itself is wrong (a declaration that does not match): a configuration error, held or
    /// failed like a 403.
    async fn deliver(&self, call: &Call<'_>, body: Body) -> Result<Delivered, SentinelError> {
        let mut done = Delivered::default();
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        let mut queue = vec![body];
        // Single rows refused with 400 while the stream had accepted nothing, with their error.
        let mut suspects: Vec<(Body, SendError)> = Vec::new();
        let mut refused_unproven = 0u32;
        'bodies: loop {
            let systematic = refused_unproven >= MAX_UNPROVEN_REFUSALS && !self.proven(call);
            let next = if systematic { None } else { queue.pop() };
            let Some(body) = next else {
                if suspects.is_empty() && queue.is_empty() {
                    return Ok(done);
                }
                if self.proven(call) && queue.is_empty() {
                    for (body, error) in suspects.drain(..) {
                        reject_refused(&mut done, call, &body, &error);
                    }
                    return Ok(done);
                }
                // Every row tried was refused: the stream, not the rows.
                let error = suspects.first().map(|(_, e)| e.clone()).or_else(|| self.last_refusal(call));
                let error = error.expect("a refusal was recorded");
                let Some(wait) = self.hold(call.table, &error) else {
                    tracing::error!(table = %call.table, dcr = %call.dcr, stream = %call.stream, error = %error,
                        "logs ingestion refuses every row: the stream declaration does not match");
                    return Err(self.refused(call, error));
                };
                tokio::time::sleep(wait).await;
                queue.extend(suspects.drain(..).map(|(b, _)| b));
                refused_unproven = 0;
                continue 'bodies;
            };
            let gzip = bytes::Bytes::from(body.gzip.clone());
            let (mut attempt, mut refreshed) = (0u32, false);
            let mut token = self.tokens.token().await;
            loop {
                let current = match token {
                    Ok(t) => t,
                    Err(e) if e.permanent => {
                        let Some(wait) = self.hold(call.table, &e) else { return Err(ClientError::Auth(e).into()) };
                        tokio::time::sleep(wait).await;
                        token = self.tokens.token().await;
                        continue;
                    }
                    Err(e) => {
                        let wait = self.config.retry.backoff(attempt, &mut rng);
                        self.excuse(wait);
                        tracing::warn!(table = %call.table, error = %e, wait_ms = wait.as_millis() as u64, "retrying token request");
                        attempt = attempt.saturating_add(1);
                        tokio::time::sleep(wait).await;
                        token = self.tokens.token().await;
                        continue;
                    }
                };
                let id = request_id();
                let result = {
                    call.limits.budget.acquire(body.uncompressed_len as u64).await;
                    let _permit = call.limits.calls.acquire().await.expect("the semaphore is never closed");
                    self.services[call.dcr].post(call.dcr, &call.stream, &current, &id, gzip.clone()).await
                };
                if let Some(w) = &self.watch {
                    // An answer, whatever it says, is the sink making progress.
                    w.stage.working();
                }
                match retry::classify(&result, attempt, refreshed, &self.config.retry, &mut rng) {
                    Decision::Done => {
                        if let Some(w) = &self.watch {
                            w.condition.accepted();
                        }
                        self.prove(call);
                        done.sent.rows += body.rows as u64;
                        done.sent.bodies += 1;
                        done.sent.bytes += gzip.len() as u64;
                        break;
                    }
                    Decision::Retry { after, throttled } => {
                        let e = result.expect_err("retry follows an error");
                        tracing::warn!(
                            table = %call.table, dcr = %call.dcr, stream = %call.stream, request_id = %id,
                            status = e.status, outcome_unknown = e.outcome_unknown, attempt,
                            wait_ms = after.as_millis() as u64, error = %e, "retrying logs ingestion call"
                        );
                        if throttled {
                            done.throttled += 1
                        } else {
                            done.retries += 1
                        }
                        attempt = attempt.saturating_add(1);
                        // Only a 401 right after a refresh is permanent.
                        refreshed = false;
                        self.excuse(after);
                        tokio::time::sleep(after).await;
                        token = self.tokens.token().await;
                    }
                    Decision::RefreshToken => {
                        tracing::warn!(table = %call.table, request_id = %id, "token refused (401), refreshing it once");
                        done.refreshes += 1;
                        refreshed = true;
                        token = self.tokens.refresh(&current).await;
                    }
                    Decision::Split => {
                        if let Some((left, right)) = self.packer.split(call.rows, &body) {
                            tracing::warn!(table = %call.table, rows = body.rows, bytes = gzip.len(), "body too large (413), splitting it");
                            done.splits += 1;
                            queue.push(right);
                            queue.push(left);
                        } else {
                            tracing::warn!(
                                table = %call.table, row = body.first_row, bytes = body.uncompressed_len,
                                "row refused as too large (413) on its own; it is not sent to sentinel"
                            );
                            let reason = format!(
                                "refused as too large (413) on its own: {} bytes of json",
                                body.uncompressed_len
                            );
                            reject_row(&mut done, call, &body, reason);
                        }
                        break;
                    }
                    Decision::Bisect => {
                        let error = result.expect_err("bisect follows an error");
                        let proven = self.proven(call);
                        if !proven {
                            refused_unproven += 1;
                            self.remember_refusal(call, &error);
                        }
                        if let Some((left, right)) = self.packer.split(call.rows, &body) {
                            tracing::warn!(table = %call.table, rows = body.rows, request_id = %id, error = %error,
                                "body refused (400), halving it to find the rows at fault");
                            done.splits += 1;
                            queue.push(right);
                            queue.push(left);
                        } else if proven {
                            reject_refused(&mut done, call, &body, &error);
                        } else {
                            suspects.push((body.clone(), error));
                        }
                        break;
                    }
                    Decision::Fail => {
                        let error = result.expect_err("failure follows an error");
                        if let Some(wait) = self.hold(call.table, &error) {
                            tokio::time::sleep(wait).await;
                            // A new token too: the refusal may be a role assigned since.
                            (attempt, refreshed) = (0, false);
                            token = self.tokens.refresh(&current).await;
                            continue;
                        }
                        tracing::error!(table = %call.table, dcr = %call.dcr, stream = %call.stream, request_id = %id, error = %error, "logs ingestion refused the call");
                        return Err(self.refused(call, error));
                    }
                }
            }
        }
    }

    fn refused(&self, call: &Call<'_>, error: SendError) -> SentinelError {
        ClientError::Refused {
            table: call.table.to_string(),
            dcr: call.dcr.to_string(),
            stream: call.stream.clone(),
            error,
        }
        .into()
    }

    /// Whether the stream of `call` has accepted a body since the sink started.
    fn proven(&self, call: &Call<'_>) -> bool {
        self.streams
            .lock()
            .expect("streams lock poisoned")
            .get(&(call.dcr.to_owned(), call.stream.clone()))
            .is_some_and(|s| s.proven)
    }

    fn prove(&self, call: &Call<'_>) {
        let mut streams = self.streams.lock().expect("streams lock poisoned");
        let state = streams.entry((call.dcr.to_owned(), call.stream.clone())).or_default();
        state.proven = true;
    }

    fn remember_refusal(&self, call: &Call<'_>, error: &SendError) {
        let mut streams = self.streams.lock().expect("streams lock poisoned");
        streams.entry((call.dcr.to_owned(), call.stream.clone())).or_default().last_refusal = Some(error.clone());
    }

    fn last_refusal(&self, call: &Call<'_>) -> Option<SendError> {
        let streams = self.streams.lock().expect("streams lock poisoned");
        streams.get(&(call.dcr.to_owned(), call.stream.clone())).and_then(|s| s.last_refusal.clone())
    }
}

/// Calls refused with 400 while halving one body, on a stream that has accepted nothing yet, after which the
/// stream itself (not some rows) is taken to be at fault. Halving finds one bad row in a body
/// of 1000 in about 10 refused calls; 64 leaves room for several, and bounds what a wrong
/// declaration costs before it is reported.
pub const MAX_UNPROVEN_REFUSALS: u32 = 64;

/// What the sink learned of one (DCR, stream).
#[derive(Debug, Default)]
struct StreamState {
    /// It accepted a body: a 400 on a single row is that row's fault.
    proven: bool,
    /// The last 400 it answered while not proven (reported if it refuses everything).
    last_refusal: Option<SendError>,
}

/// Rejects the single row of `body`, refused with `error` (400) by a stream that accepts others.
fn reject_refused(done: &mut Delivered, call: &Call<'_>, body: &Body, error: &SendError) {
    tracing::warn!(table = %call.table, row = body.first_row, error = %error,
        "row refused (400) on its own by a stream that accepts other rows; it is not sent to sentinel");
    reject_row(done, call, body, format!("refused by the service on its own: {error}"));
}

/// Counts the single row of `body` as rejected, with its JSON for the dead letters.
fn reject_row(done: &mut Delivered, call: &Call<'_>, body: &Body, reason: String) {
    done.sent.rejected += 1;
    done.sent.rejected_rows.push(RejectedRow {
        row: call.order.map_or(body.first_row, |o| o[body.first_row]),
        reason,
        json: call.rows.row(body.first_row).to_vec(),
    });
}

/// What every call of one batch shares.
struct Call<'a> {
    table: &'a str,
    dcr: &'a str,
    stream: String,
    limits: &'a DcrLimits,
    rows: &'a EncodedRows,
    /// For rows packed in another order than the batch's: each row's index in the batch.
    order: Option<&'a [usize]>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::auth::Secret;

    fn config() -> SentinelConfig {
        SentinelConfig::new("https://dce-1.eastus-1.ingest.monitor.azure.com", AuthConfig::Static(Secret::new("t")))
            .with_table("DeviceEvents", "dcr-00aa11", None)
    }

    fn message(c: &SentinelConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn a_complete_config_validates() {
        config().validate().unwrap();
        assert_eq!(config().tables["DeviceEvents"].stream_for("DeviceEvents"), "Custom-DeviceEvents_CL");
    }

    #[test]
    fn validation_messages_name_the_key() {
        let mut c = config();
        c.endpoint = "http://dce".into();
        assert!(message(&c).contains("endpoint must be an https url"), "{}", message(&c));
        c.endpoint = "not a url".into();
        assert!(message(&c).contains("is not a url"));
        let c = config().with_table("EmailEvents", "12345", None);
        assert!(message(&c).contains("tables.EmailEvents.dcr_immutable_id"), "{}", message(&c));
        let c = config().with_table("EmailEvents", "dcr-1", Some("EmailEvents_CL"));
        assert!(message(&c).contains("tables.EmailEvents.stream"), "{}", message(&c));
        let mut c = config();
        c.tables.clear();
        assert!(message(&c).contains("tables must name"));
        let mut c = config();
        c.concurrency_per_dcr = 0;
        assert!(message(&c).contains("concurrency_per_dcr"));
        let mut c = config();
        c.max_requests_per_minute = 0;
        assert!(message(&c).contains("max_requests_per_minute"));
        let mut c = config();
        c.pack = PackMode::Uncompressed { max_bytes: 4 << 20 };
        assert!(message(&c).contains("pack max_bytes"));
        let mut c = config();
        c.retry.multiplier = 0.0;
        assert!(message(&c).contains("retry.multiplier"));
        let mut c = config();
        c.auth = AuthConfig::client_secret("t", "", "s");
        assert!(message(&c).contains("auth.client_id"));
    }

    #[test]
    fn each_dcr_goes_to_its_own_endpoint_or_to_the_default() {
        let own = "https://defender-ingest-2-abcd.eastus-1.ingest.monitor.azure.com";
        let c = config().with_table("EmailEvents", "dcr-00bb22", None).with_dcr_endpoint("dcr-00bb22", own);
        c.validate().unwrap();
        assert_eq!(c.endpoint_for("dcr-00aa11"), "https://dce-1.eastus-1.ingest.monitor.azure.com");
        assert_eq!(c.endpoint_for("dcr-00bb22"), own);
        assert_eq!(
            c.endpoints().into_iter().collect::<Vec<_>>(),
            [("dcr-00aa11", c.endpoint.as_str()), ("dcr-00bb22", own)]
        );
        // No default: every DCR needs its own, and one without is named.
        let mut c =
            c.with_dcr_endpoint("dcr-00aa11", "https://defender-ingest-1-efgh.eastus-1.ingest.monitor.azure.com");
        c.endpoint.clear();
        c.validate().unwrap();
        c.dcr_endpoints.remove("dcr-00aa11");
        let e = message(&c);
        assert!(e.contains("tables.DeviceEvents: dcr dcr-00aa11 has no endpoint"), "{e}");
        let c = config().with_dcr_endpoint("dcr-00aa11", "http://127.0.0.1:8080");
        let e = message(&c);
        assert!(e.contains("dcr_endpoints.dcr-00aa11 must be an https url"), "{e}");
        let e = message(&config().with_dcr_endpoint("dcr-00aa11", "dce.example"));
        assert!(e.contains("dcr_endpoints.dcr-00aa11 \"dce.example\" is not a url"), "{e}");
    }

    #[test]
    fn config_debug_hides_the_secret() {
        let mut c = config();
        c.auth = AuthConfig::client_secret("t", "app", "very-secret-value");
        assert!(!format!("{c:?}").contains("very-secret-value"));
    }

    #[tokio::test]
    async fn a_batch_of_an_unmapped_table_is_an_error_before_any_call() {
        let sink = SentinelSink::new(config(), Arc::new(Catalog::embedded())).unwrap();
        let batch = TableBatch {
            table: "EmailEvents".into(),
            unknown_table: false,
            source: "test".into(),
            partition: 0,
            first_offset: 0,
            last_offset: 0,
            raw_bytes: 0,
            batch: arrow_array::RecordBatch::new_empty(Arc::new(arrow_schema::Schema::empty())),
        };
        let e = sink.send(&batch).await.unwrap_err().to_string();
        assert!(e.contains("table EmailEvents has no dcr"), "{e}");
    }
}
