//! The run configuration: one TOML file, unknown keys rejected, every field defaulted, checked
//! before anything starts. Relative paths are taken from the current directory.
//!
//! ```toml
//! [source.files]
//! paths = ["examples/sample/*.ndjson.gz"]   # files or globs; gzip is detected
//!
//! [archive]
//! url = "out/archive"        # a path, file://, az://container/prefix or abfss://fs@account.dfs.core.windows.net/prefix
//! roll_size_mb = 64          # roll a Parquet file at this encoded size
//! roll_seconds = 300         # ... or this long after it was opened
//! zstd_level = 3
//!
//! [pipeline]
//! flush_rows = 65536         # the decoder cuts a batch at this many rows,
//! flush_mb = 32              # ... this many MB of input,
//! flush_seconds = 5          # ... or this age
//! budget_mb = 64             # raw input in flight between source and decoder
//! max_unknown_tables = 100   # distinct unknown tables kept apart; later ones share one overflow table
//!
//! [tables.default]           # tables not named below
//! archive = true
//! sentinel = false
//!
//! [tables.DeviceNetworkEvents]
//! sentinel = true
//! plan = "auxiliary"         # analytics (default) | basic | auxiliary: the Sentinel table's plan
//! sentinel_filter = '''
//! where not(ActionType == "ConnectionSuccess" and RemotePort in (80, 443))
//! | project-away AdditionalFields
//! '''
//! group_by = "ActionType"    # estimate's cost per group (the default here; "" for none)
//!
//! [sentinel]                 # where the Sentinel path goes: the Logs Ingestion API ...
//! pack = "uncompressed"      # ≤ 1 MiB of JSON per call (the SDK's rule), or "compressed"
//! # dry_run_dir = "out/sentinel"   # ... or, instead of endpoints, store the request bodies here
//!
//! # Per DCR (by immutable id): its own logs ingestion endpoint and its tables, as the
//! # `schemas dcr` template's outputs dcr<N>ImmutableId, dcr<N>LogsIngestionEndpoint, dcr<N>Tables
//! # give them (DCRs of kind Direct: each has its own endpoint).
//! [sentinel.dcrs.dcr-0123456789abcdef0123456789abcdef]
//! endpoint = "https://defender-ingest-1-abcd.eastus-1.ingest.monitor.azure.com"
//! tables = ["DeviceNetworkEvents"]
//!
//! # ... or one endpoint for every DCR (a data collection endpoint, DCE, or a single DCR) and the
//! # DCR of the tables without one of their own:
//! # [sentinel]
//! # endpoint = "https://my-dce-abcd.eastus-1.ingest.monitor.azure.com"
//! # dcr_immutable_id = "dcr-0123456789abcdef0123456789abcdef"   # or per table: tables.X.dcr_immutable_id
//!
//! [sentinel.auth]            # client_secret | client_certificate | workload_identity | managed_identity | azure_cli
//! method = "client_secret"
//! tenant_id = "..."
//! client_id = "..."
//! client_secret_env = "AZURE_CLIENT_SECRET"   # the secret itself never goes in the file
//!
//! [prices]                   # override any of the illustrative list prices
//! analytics_per_gb = 5.22
//! ```

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use defender_core::{
    Catalog, FlushRule,
    billing::{Prices, Tier},
};
use defender_pipeline::{PipelineOptions, Policy, policy::TableSettings};
use defender_sinks::{
    ArchiveConfig,
    sentinel::{AuthConfig, PackMode, Secret, SentinelConfig, client::check_endpoint},
};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub source: SourceConfig,
    pub archive: Option<ArchiveSection>,
    #[serde(default)]
    pub pipeline: PipelineSection,
    #[serde(default)]
    pub service: ServiceSection,
    /// Per table (and `default`): destinations and filters.
    #[serde(default)]
    pub tables: BTreeMap<String, TableEntry>,
    /// Where rows the policy sends to Sentinel go.
    pub sentinel: Option<SentinelSection>,
    /// Price overrides for estimates.
    #[serde(default)]
    pub prices: Prices,
    /// Checked from `tables` by [`Config::parse`].
    #[serde(skip)]
    pub policy: Arc<Policy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelSection {
    /// Store every request body the Logs Ingestion client would send under this directory (or
    /// object store URL), instead of sending it.
    pub dry_run_dir: Option<String>,
    /// Send to this logs ingestion endpoint (`https://...`) the tables of every DCR without an
    /// endpoint in `dcrs`: a DCE's (one for several DCRs), or the DCR's when there is one.
    pub endpoint: Option<Spanned<String>>,
    /// The DCR of tables that do not name their own.
    pub dcr_immutable_id: Option<String>,
    /// Per DCR (by immutable id, `[sentinel.dcrs.dcr-...]`): its own endpoint and its tables.
    #[serde(default)]
    pub dcrs: BTreeMap<Spanned<String>, DcrSection>,
    #[serde(default)]
    pub pack: PackSetting,
    /// Calls in flight per DCR (default 4).
    pub concurrency_per_dcr: Option<usize>,
    /// Longest wait between two tries of a call (the backoff's cap; default 60), and how often
    /// a daemon that Sentinel refuses permanently tries again.
    pub retry_max_seconds: Option<u64>,
    /// Extra trusted root certificate (PEM file): a private CA, or the test server's.
    pub ca_file: Option<std::path::PathBuf>,
    pub auth: Option<AuthSection>,
}

/// One DCR: `[sentinel.dcrs.<immutable id>]`.
///
/// A DCR of kind `Direct` (what `schemas dcr` generates) has its own logs ingestion endpoint,
/// its `properties.endpoints.logsIngestion` ("Structure of a data collection rule",
/// learn.microsoft.com/azure/azure-monitor/essentials/data-collection-rule-structure), and its
/// tables are sent there; a data collection endpoint (DCE) instead serves every DCR that uses
/// it ("Data collection endpoints in Azure Monitor", learn.microsoft.com/azure/azure-monitor/
/// essentials/data-collection-endpoint-overview), so then `[sentinel] endpoint` is enough.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DcrSection {
    /// The DCR's own logs ingestion endpoint (`https://...`; the template's
    /// `dcr<N>LogsIngestionEndpoint`); default `[sentinel] endpoint`.
    pub endpoint: Option<Spanned<String>>,
    /// Tables sent to this DCR (Defender names; the template's `dcr<N>Tables`), as if each had
    /// `tables.<Table>.dcr_immutable_id` set to it. Listing a table does not send it: its
    /// `sentinel` setting does.
    #[serde(default)]
    pub tables: Vec<Spanned<String>>,
}

/// How the sink gets its Entra token. Secrets are never in the file: they come from the
/// environment variable the config names.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSection {
    /// An app registration and its secret.
    ClientSecret {
        tenant_id: String,
        client_id: String,
        #[serde(default = "defaults::client_secret_env")]
        client_secret_env: String,
        #[serde(default = "defaults::authority_host")]
        authority_host: String,
    },
    /// An app registration and its certificate: `certificate_file` is PEM with the unencrypted
    /// RSA private key and the certificate (as `az ad sp create-for-rbac --create-cert` writes).
    ClientCertificate {
        tenant_id: String,
        client_id: String,
        certificate_file: std::path::PathBuf,
        #[serde(default = "defaults::authority_host")]
        authority_host: String,
    },
    /// AKS workload identity; defaults from the variables the webhook injects
    /// (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE).
    WorkloadIdentity {
        tenant_id: Option<String>,
        client_id: Option<String>,
        token_file: Option<std::path::PathBuf>,
        #[serde(default = "defaults::authority_host")]
        authority_host: String,
    },
    /// The node's or VM's managed identity (user-assigned when `client_id` is given).
    ManagedIdentity { client_id: Option<String> },
    /// `az login` on a developer machine.
    AzureCli,
}

/// What the Sentinel path of a run is.
#[derive(Debug)]
pub enum SentinelTarget {
    /// `plans`: the plan of each table sent to Sentinel.
    DryRun {
        dir: String,
        pack: PackMode,
        plans: BTreeMap<String, Tier>,
    },
    Live(Box<SentinelConfig>),
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PackSetting {
    /// At most 1 MiB of JSON before gzip per call, as Microsoft's SDKs do.
    #[default]
    Uncompressed,
    /// At most 1 MB of gzip on the wire per call, at most 50 MiB of JSON.
    Compressed,
}

impl PackSetting {
    pub fn mode(self) -> PackMode {
        match self {
            Self::Uncompressed => PackMode::SDK,
            Self::Compressed => PackMode::COMPRESSED,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    pub archive: Option<bool>,
    pub sentinel: Option<bool>,
    pub archive_filter: Option<Spanned<String>>,
    pub sentinel_filter: Option<Spanned<String>>,
    /// The DCR and stream of this table (default: `[sentinel] dcr_immutable_id`,
    /// `Custom-<Table>_CL`).
    pub dcr_immutable_id: Option<String>,
    pub stream: Option<String>,
    /// The plan of the table's Sentinel table (`analytics`, `basic`, `auxiliary`; default
    /// `analytics`, or `tables.default.plan`): what `schemas dcr` creates it with, what the
    /// estimate bills it at, and whose ingestion rules the sink follows.
    pub plan: Option<Tier>,
    /// The string column `estimate` groups this table's cost by (default: see
    /// `defender_pipeline::breakdown::default_group_column`; `""` for none).
    pub group_by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub files: Option<FilesSource>,
    pub kafka: Option<KafkaSection>,
}

/// Event Hubs through its Kafka endpoint (or any Kafka broker), as a consumer group member.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// `<namespace>.servicebus.windows.net:9093` for Event Hubs.
    pub bootstrap: String,
    /// Event hubs (topics) to read: one carrying every table, or one per table.
    pub topics: Vec<String>,
    #[serde(default = "defaults::group")]
    pub group: String,
    /// Where a partition without a committed offset starts: "earliest", "latest" or an RFC 3339
    /// time such as "2026-11-01T00:00:00Z".
    #[serde(default = "defaults::start")]
    pub start: String,
    /// SASL_SSL + PLAIN with the namespace connection string read from this environment variable.
    pub connection_string_env: Option<String>,
    /// SASL_SSL + OAUTHBEARER with an Entra token (workload_identity, managed_identity, ...).
    pub auth: Option<AuthSection>,
    /// PLAINTEXT, no TLS and no SASL: local brokers only.
    #[serde(default)]
    pub plaintext: bool,
    /// Static group membership; default: the POD_NAME environment variable when set.
    pub group_instance_id: Option<String>,
    #[serde(default = "defaults::commit_interval_ms")]
    pub commit_interval_ms: u64,
    #[serde(default = "defaults::session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// How long a rebalance waits for the pipeline to make revoked partitions durable.
    #[serde(default = "defaults::revoke_timeout_seconds")]
    pub revoke_timeout_seconds: u64,
    /// Further librdkafka properties (never secrets: those come from the environment).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// The long-running process: probes, metrics and shutdown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Address of `/healthz`, `/readyz` and `/metrics` (e.g. "0.0.0.0:9464"); none by default.
    pub listen: Option<String>,
    /// On SIGTERM, how long the source waits for in-flight data to be made durable and committed.
    #[serde(default = "defaults::shutdown_grace_seconds")]
    pub shutdown_grace_seconds: u64,
    /// `/healthz` fails when a pipeline stage has been working this long without progress (a
    /// stuck call, a stuck consumer thread). Waits for input, for a slower stage, or for a
    /// Sentinel outage to end do not count. Above the longest call the stages make (archive
    /// uploads with their retries, Sentinel calls with `request_timeout_seconds`).
    #[serde(default = "defaults::liveness_threshold_seconds")]
    pub liveness_threshold_seconds: u64,
}

impl Default for ServiceSection {
    fn default() -> Self {
        Self {
            listen: None,
            shutdown_grace_seconds: defaults::shutdown_grace_seconds(),
            liveness_threshold_seconds: defaults::liveness_threshold_seconds(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSource {
    pub paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    pub url: String,
    #[serde(default = "defaults::roll_size_mb")]
    pub roll_size_mb: u64,
    #[serde(default = "defaults::roll_seconds")]
    pub roll_seconds: u64,
    #[serde(default = "defaults::zstd_level")]
    pub zstd_level: i32,
}

impl ArchiveSection {
    /// An archive at `url` with every other setting at its default (for `--archive`).
    pub fn with_url(url: &str) -> Self {
        Self {
            url: url.to_string(),
            roll_size_mb: defaults::roll_size_mb(),
            roll_seconds: defaults::roll_seconds(),
            zstd_level: defaults::zstd_level(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    #[serde(default = "defaults::flush_rows")]
    pub flush_rows: usize,
    #[serde(default = "defaults::flush_mb")]
    pub flush_mb: usize,
    #[serde(default = "defaults::flush_seconds")]
    pub flush_seconds: u64,
    #[serde(default = "defaults::budget_mb")]
    pub budget_mb: usize,
    /// Distinct unknown tables (categories without a schema) archived under names of their
    /// own; records of later ones go to `_OverflowUnknownTables`.
    #[serde(default = "defaults::max_unknown_tables")]
    pub max_unknown_tables: usize,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            flush_rows: defaults::flush_rows(),
            flush_mb: defaults::flush_mb(),
            flush_seconds: defaults::flush_seconds(),
            budget_mb: defaults::budget_mb(),
            max_unknown_tables: defaults::max_unknown_tables(),
        }
    }
}

mod defaults {
    pub fn roll_size_mb() -> u64 {
        64
    }
    pub fn roll_seconds() -> u64 {
        300
    }
    pub fn zstd_level() -> i32 {
        3
    }
    pub fn flush_rows() -> usize {
        65_536
    }
    pub fn flush_mb() -> usize {
        32
    }
    pub fn flush_seconds() -> u64 {
        5
    }
    pub fn budget_mb() -> usize {
        64
    }
    pub fn max_unknown_tables() -> usize {
        defender_core::decode::unknown::DEFAULT_MAX_UNKNOWN_TABLES
    }
    pub fn client_secret_env() -> String {
        "AZURE_CLIENT_SECRET".to_string()
    }
    pub fn group() -> String {
        "defender-ingest".to_string()
    }
    pub fn start() -> String {
        "earliest".to_string()
    }
    pub fn commit_interval_ms() -> u64 {
        2_000
    }
    pub fn session_timeout_ms() -> u64 {
        30_000
    }
    pub fn revoke_timeout_seconds() -> u64 {
        60
    }
    pub fn shutdown_grace_seconds() -> u64 {
        25
    }
    pub fn liveness_threshold_seconds() -> u64 {
        300
    }
    pub fn authority_host() -> String {
        "https://login.microsoftonline.com".to_string()
    }
}

impl Config {
    /// Reads and checks a config file; errors name the file, the line and what was expected.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    /// The config of a command: the file (optional when the command line says enough) with
    /// `--input` and `--archive` applied; checks that a source (and, if `needs_archive`, an
    /// archive) is configured.
    pub fn resolve(
        path: Option<&Path>,
        input: &[String],
        archive: Option<&str>,
        needs_archive: bool,
    ) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(path) => Self::load(path)?,
            None if !input.is_empty() && (archive.is_some() || !needs_archive) => Self::default(),
            None if needs_archive => {
                bail!("no --config given: pass --config FILE, or both --input PATH... and --archive URL")
            }
            None => bail!("no --config given: pass --config FILE or --input PATH..."),
        };
        if !input.is_empty() {
            config.source.files = Some(FilesSource { paths: input.to_vec() });
        }
        if let Some(url) = archive {
            match &mut config.archive {
                Some(a) => a.url = url.to_string(),
                None => config.archive = Some(ArchiveSection::with_url(url)),
            }
        }
        if config.source.files.is_some() && config.source.kafka.is_some() && !input.is_empty() {
            config.source.kafka = None; // --input replaces the configured source
        }
        if config.source.files.is_none() && config.source.kafka.is_none() {
            bail!(
                "no source configured: add a [source.files] section with `paths` or a [source.kafka] section, \
                 or pass --input"
            );
        }
        if needs_archive && config.archive.is_none() {
            bail!("no archive configured: add an [archive] section with `url`, or pass --archive");
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut config: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", toml_error(text, &e)))?;
        config.validate()?;
        let settings: BTreeMap<String, TableSettings> = config
            .tables
            .iter()
            .map(|(name, e)| {
                let at = |f: &Option<Spanned<String>>| f.as_ref().map(|f| filter_at(text, f));
                let s = TableSettings {
                    archive: e.archive,
                    sentinel: e.sentinel,
                    archive_filter: at(&e.archive_filter),
                    sentinel_filter: at(&e.sentinel_filter),
                    plan: e.plan,
                };
                (name.clone(), s)
            })
            .collect();
        let catalog = Catalog::embedded();
        config.policy = Arc::new(Policy::new(&catalog, &settings)?);
        for (name, e) in &config.tables {
            let routes = config.policy.routes(&catalog, name);
            if let Some(stream) = e.stream.as_deref().filter(|s| s.starts_with("Microsoft-"))
                && routes.sentinel.enabled
                && routes.plan == Tier::Auxiliary
            {
                bail!(
                    "tables.{name}.plan: the Auxiliary plan is only for custom tables (`Custom-<name>_CL` streams) and \
                     {name} goes to the built-in table of stream {stream:?}; built-in Azure tables do not support the \
                     Auxiliary plan (Microsoft, \"Select a table plan\", 2025-08-29)"
                );
            }
        }
        for (name, column) in config.tables.iter().filter_map(|(n, e)| Some((n, e.group_by.as_deref()?))) {
            let schema = catalog.get(name).ok_or_else(|| {
                anyhow::anyhow!("tables.{name}.group_by: a grouping column belongs to one table, not to `{name}`")
            })?;
            if !column.is_empty() {
                defender_pipeline::breakdown::check_group_column(schema, column)
                    .map_err(|e| anyhow::anyhow!("tables.{name}.group_by: {e}"))?;
            }
        }
        if let Some(s) = &config.sentinel {
            s.check(text, &catalog, &config.tables)?;
        }
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let p = &self.pipeline;
        for (key, value) in [
            ("pipeline.flush_rows", p.flush_rows),
            ("pipeline.flush_mb", p.flush_mb),
            ("pipeline.budget_mb", p.budget_mb),
            ("pipeline.max_unknown_tables", p.max_unknown_tables),
            ("service.liveness_threshold_seconds", self.service.liveness_threshold_seconds as usize),
        ] {
            if value == 0 {
                bail!("`{key}` must be at least 1");
            }
        }
        if let Some(a) = &self.archive {
            if a.roll_size_mb == 0 {
                bail!("`archive.roll_size_mb` must be at least 1");
            }
            if !(1..=22).contains(&a.zstd_level) {
                bail!("`archive.zstd_level` must be between 1 and 22, got {}", a.zstd_level);
            }
            if a.url.trim().is_empty() {
                bail!("`archive.url` is empty: expected a path, file://, az:// or abfss:// URL");
            }
        }
        if let Some(f) = &self.source.files
            && f.paths.is_empty()
        {
            bail!("`source.files.paths` is empty: expected at least one file or glob");
        }
        if self.source.files.is_some() && self.source.kafka.is_some() {
            bail!("[source.files] and [source.kafka] are both set: a run reads one source");
        }
        if let Some(k) = &self.source.kafka {
            k.check()?;
        }
        let auths = [
            ("sentinel.auth", self.sentinel.as_ref().and_then(|s| s.auth.as_ref())),
            ("source.kafka.auth", self.source.kafka.as_ref().and_then(|k| k.auth.as_ref())),
        ];
        for (at, auth) in auths {
            if let Some(AuthSection::ClientSecret { client_secret_env, .. }) = auth {
                env_var_name(&format!("{at}.client_secret_env"), client_secret_env)?;
            }
        }
        Ok(())
    }

    /// The grouping columns the config sets (`None`: no grouping), by table.
    pub fn group_by(&self) -> BTreeMap<String, Option<String>> {
        self.tables
            .iter()
            .filter_map(|(t, e)| {
                let column = e.group_by.as_ref()?;
                Some((t.clone(), (!column.is_empty()).then(|| column.clone())))
            })
            .collect()
    }

    pub fn pipeline_options(&self) -> PipelineOptions {
        let p = &self.pipeline;
        PipelineOptions {
            flush: FlushRule {
                max_rows: p.flush_rows,
                max_bytes: p.flush_mb << 20,
                max_age: Duration::from_secs(p.flush_seconds),
            },
            budget_bytes: p.budget_mb << 20,
            max_unknown_tables: p.max_unknown_tables,
            policy: self.policy.clone(),
            ..PipelineOptions::default()
        }
    }

    /// The Sentinel path, checked: a dry run or a live sink with a DCR for every table the
    /// policy sends to Sentinel. `None` without a `[sentinel]` section.
    pub fn sentinel_target(&self, catalog: &Catalog) -> anyhow::Result<Option<SentinelTarget>> {
        let Some(s) = &self.sentinel else { return Ok(None) };
        let own_endpoints = s.dcrs.values().any(|d| d.endpoint.is_some());
        match (&s.dry_run_dir, s.endpoint.is_some() || own_endpoints) {
            (Some(dir), false) => {
                let plans = catalog
                    .tables()
                    .iter()
                    .map(|t| (t.table.clone(), self.policy.routes(catalog, &t.table)))
                    .filter(|(_, r)| r.sentinel.enabled)
                    .map(|(t, r)| (t, r.plan))
                    .collect();
                return Ok(Some(SentinelTarget::DryRun { dir: dir.clone(), pack: s.pack.mode(), plans }));
            }
            (None, true) => {}
            _ => bail!(
                "[sentinel] needs exactly one of `dry_run_dir` (store the bodies) and endpoints to send to \
                 (`endpoint`, or `endpoint` in each [sentinel.dcrs.<immutable id>])"
            ),
        }
        let default_endpoint = s.endpoint.as_ref().map(|e| e.get_ref().clone()).unwrap_or_default();
        let Some(auth) = &s.auth else {
            bail!(
                "[sentinel] sends to the Logs Ingestion API but has no [sentinel.auth] section (method = \"client_secret\", \"client_certificate\", \"workload_identity\", \"managed_identity\" or \"azure_cli\")"
            );
        };
        let auth = auth.resolve("sentinel.auth")?;
        let mut config = SentinelConfig::new(default_endpoint, auth);
        for (dcr, d) in &s.dcrs {
            if let Some(endpoint) = &d.endpoint {
                config = config.with_dcr_endpoint(dcr.get_ref(), endpoint.get_ref());
            }
        }
        config.pack = s.pack.mode();
        if let Some(n) = s.concurrency_per_dcr {
            config.concurrency_per_dcr = n;
        }
        if let Some(n) = s.retry_max_seconds {
            if n == 0 {
                bail!("`sentinel.retry_max_seconds` must be at least 1");
            }
            config.retry.max = Duration::from_secs(n);
            config.retry.initial = config.retry.initial.min(config.retry.max);
        }
        if let Some(path) = &s.ca_file {
            config.extra_root_pem = Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("sentinel.ca_file: cannot read {}", path.display()))?,
            );
        }
        for t in catalog.tables() {
            if !self.policy.routes(catalog, &t.table).sentinel.enabled {
                continue;
            }
            let entry = self.tables.get(&t.table);
            let Some(dcr) = s.dcr_of(&t.table, entry) else {
                bail!(
                    "tables.{0}: sent to Sentinel but no DCR: list it in `tables` of its [sentinel.dcrs.<immutable id>], \
                     or set tables.{0}.dcr_immutable_id or [sentinel] dcr_immutable_id",
                    t.table
                );
            };
            if config.endpoint_for(&dcr).is_empty() {
                bail!(
                    "tables.{}: sent to DCR {dcr}, which has no endpoint: set `endpoint` in [sentinel.dcrs.{dcr}] (the \
                     DCR's own logs ingestion endpoint) or [sentinel] endpoint (a data collection endpoint for every DCR)",
                    t.table
                );
            }
            config = config.with_table(&t.table, &dcr, entry.and_then(|e| e.stream.as_deref()));
            config = config.with_plan(&t.table, self.policy.routes(catalog, &t.table).plan);
        }
        config.validate().map_err(|e| anyhow::anyhow!("[sentinel]: {e}"))?;
        Ok(Some(SentinelTarget::Live(Box::new(config))))
    }

    pub fn archive_config(&self) -> ArchiveConfig {
        let mut c = ArchiveConfig::default();
        if let Some(a) = &self.archive {
            c.roll_bytes = (a.roll_size_mb << 20) as usize;
            c.roll_age = Duration::from_secs(a.roll_seconds);
            c.zstd_level = a.zstd_level;
        }
        c
    }
}

impl SentinelSection {
    /// The DCR of `table`: its own `dcr_immutable_id`, else the `[sentinel.dcrs.<id>]` listing it,
    /// else `[sentinel] dcr_immutable_id`.
    fn dcr_of(&self, table: &str, entry: Option<&TableEntry>) -> Option<String> {
        entry
            .and_then(|e| e.dcr_immutable_id.clone())
            .or_else(|| {
                self.dcrs
                    .iter()
                    .find(|(_, d)| d.tables.iter().any(|t| t.get_ref() == table))
                    .map(|(id, _)| id.get_ref().clone())
            })
            .or_else(|| self.dcr_immutable_id.clone())
    }

    /// What can be checked at load: every endpoint is an https URL, every table listed under a
    /// DCR is a table that can go to Sentinel and is listed once, and agrees with its own
    /// `dcr_immutable_id`; every `[sentinel.dcrs.<id>]` is some table's DCR. Errors name the key
    /// and its line.
    fn check(&self, text: &str, catalog: &Catalog, tables: &BTreeMap<String, TableEntry>) -> anyhow::Result<()> {
        let at = |key: &str, span: std::ops::Range<usize>| format!("`{key}` at line {}", line_at(text, span.start));
        if let Some(e) = &self.endpoint {
            check_endpoint(&at("sentinel.endpoint", e.span()), e.get_ref()).map_err(anyhow::Error::msg)?;
        }
        let mut listed: BTreeMap<&str, &str> = BTreeMap::new();
        for (id, d) in &self.dcrs {
            let id_str = id.get_ref().as_str();
            if let Some(e) = &d.endpoint {
                check_endpoint(&at(&format!("sentinel.dcrs.{id_str}.endpoint"), e.span()), e.get_ref())
                    .map_err(anyhow::Error::msg)?;
            }
            for t in &d.tables {
                let (name, key) = (t.get_ref().as_str(), at(&format!("sentinel.dcrs.{id_str}.tables"), t.span()));
                match catalog.get(name) {
                    None => bail!("{key}: {name} is not a table (see `defender-ingest schemas list`)"),
                    Some(schema) if schema.tvm => {
                        bail!(
                            "{key}: {name} is a Defender Vulnerability Management (TVM) table, never sent to Sentinel"
                        )
                    }
                    Some(_) => {}
                }
                if let Some(other) = listed.insert(name, id_str) {
                    bail!("{key}: {name} is also listed in `sentinel.dcrs.{other}.tables`: a table goes to one DCR");
                }
                if let Some(own) = tables.get(name).and_then(|e| e.dcr_immutable_id.as_deref())
                    && own != id_str
                {
                    bail!(
                        "{key}: {name} has its own tables.{name}.dcr_immutable_id = {own:?}: a table goes to one DCR"
                    );
                }
            }
            let named = self.dcr_immutable_id.as_deref() == Some(id_str)
                || tables.values().any(|e| e.dcr_immutable_id.as_deref() == Some(id_str));
            if d.tables.is_empty() && !named {
                bail!(
                    "{}: no table goes to this DCR: list its tables in `tables`, or set tables.<Table>.dcr_immutable_id \
                     = {id_str:?}",
                    at(&format!("sentinel.dcrs.{id_str}"), id.span())
                );
            }
        }
        Ok(())
    }
}

impl AuthSection {
    /// The credential settings, with secrets and workload identity defaults read from the
    /// environment; `at` names the section in errors.
    pub fn resolve(&self, at: &str) -> anyhow::Result<AuthConfig> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        Ok(match self {
            Self::ClientSecret { tenant_id, client_id, client_secret_env, authority_host } => {
                let secret = env(client_secret_env).ok_or_else(|| {
                    anyhow::anyhow!("{at}.client_secret_env: environment variable {client_secret_env} is not set")
                })?;
                AuthConfig::ClientSecret {
                    tenant: tenant_id.clone(),
                    client_id: client_id.clone(),
                    secret: Secret::new(secret),
                    authority_host: authority_host.clone(),
                }
            }
            Self::ClientCertificate { tenant_id, client_id, certificate_file, authority_host } => {
                let key = format!("{at}.certificate_file");
                let bytes = std::fs::read(certificate_file)
                    .with_context(|| format!("{key}: cannot read {}", certificate_file.display()))?;
                let pem = String::from_utf8(bytes).ok().filter(|pem| pem.contains("-----BEGIN")).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{key}: {} is not PEM (expected the private key and the certificate, PEM-encoded)",
                        certificate_file.display()
                    )
                })?;
                AuthConfig::ClientCertificate {
                    tenant: tenant_id.clone(),
                    client_id: client_id.clone(),
                    certificate: Secret::new(pem),
                    authority_host: authority_host.clone(),
                }
            }
            Self::WorkloadIdentity { tenant_id, client_id, token_file, authority_host } => {
                let need = |v: &Option<String>, var: &str, key: &str| {
                    v.clone()
                        .or_else(|| env(var))
                        .ok_or_else(|| anyhow::anyhow!("{at}.{key}: not set and {var} is empty"))
                };
                AuthConfig::WorkloadIdentity {
                    tenant: need(tenant_id, "AZURE_TENANT_ID", "tenant_id")?,
                    client_id: need(client_id, "AZURE_CLIENT_ID", "client_id")?,
                    token_file: match token_file {
                        Some(f) => f.clone(),
                        None => env("AZURE_FEDERATED_TOKEN_FILE")
                            .ok_or_else(|| {
                                anyhow::anyhow!("{at}.token_file: not set and AZURE_FEDERATED_TOKEN_FILE is empty")
                            })?
                            .into(),
                    },
                    authority_host: authority_host.clone(),
                }
            }
            Self::ManagedIdentity { client_id } => AuthConfig::ManagedIdentity { client_id: client_id.clone() },
            Self::AzureCli => AuthConfig::AzureCli,
        })
    }
}

impl KafkaSection {
    fn check(&self) -> anyhow::Result<()> {
        if self.bootstrap.trim().is_empty() {
            bail!(
                "`source.kafka.bootstrap` is empty: expected host:port, e.g. <namespace>.servicebus.windows.net:9093"
            );
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            bail!("`source.kafka.topics` must name at least one event hub (topic), without empty names");
        }
        if self.group.trim().is_empty() {
            bail!("`source.kafka.group` is empty: expected the consumer group name");
        }
        self.start_position()?;
        if let Some(var) = &self.connection_string_env {
            env_var_name("source.kafka.connection_string_env", var)?;
        }
        let ways = [self.connection_string_env.is_some(), self.auth.is_some(), self.plaintext];
        if ways.iter().filter(|w| **w).count() != 1 {
            bail!(
                "[source.kafka] needs exactly one of `connection_string_env` (Event Hubs SAS), [source.kafka.auth] \
                 (Entra token) and `plaintext = true` (a local broker)"
            );
        }
        for (key, value) in
            [("commit_interval_ms", self.commit_interval_ms), ("session_timeout_ms", self.session_timeout_ms)]
        {
            if value == 0 {
                bail!("`source.kafka.{key}` must be at least 1");
            }
        }
        if let Some(k) = self.properties.keys().find(|k| k.starts_with("sasl.") || k.contains("password")) {
            bail!(
                "`source.kafka.properties.{k}`: credentials do not go in the file; use connection_string_env or [source.kafka.auth]"
            );
        }
        Ok(())
    }

    pub fn start_position(&self) -> anyhow::Result<defender_sources::StartPosition> {
        use defender_sources::StartPosition;
        Ok(match self.start.as_str() {
            "earliest" => StartPosition::Earliest,
            "latest" => StartPosition::Latest,
            t => {
                let nanos = defender_core::policy::parse_datetime(t).ok_or_else(|| {
                    anyhow::anyhow!(
                        "`source.kafka.start` is {t:?}: expected \"earliest\", \"latest\" or an RFC 3339 time such as \"2026-11-01T00:00:00Z\""
                    )
                })?;
                StartPosition::Timestamp(nanos / 1_000_000)
            }
        })
    }
}

/// A TOML mistake as "line L, column C: <what> in `<table>`", without the offending line:
/// toml's own message quotes it, and a secret put in the file by mistake
/// (`client_secret = "..."`, an unknown key) would be printed.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let mut bare = e.clone();
    bare.set_input(None); // no source, no quoted line: the message and the key path
    let what = bare.to_string().trim_end().replace('\n', " ");
    let Some(span) = e.span() else { return what };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {what}")
}

/// `at` (a `*_env` key) names an environment variable, not a secret pasted in its place: the
/// error would otherwise print the value.
fn env_var_name(at: &str, name: &str) -> anyhow::Result<()> {
    let plausible = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plausible {
        bail!(
            "`{at}` must be the name of an environment variable (letters, digits and `_`), and it is not: \
             was the secret itself put there? It goes in the variable, never in the file (the value is not shown)"
        );
    }
    Ok(())
}

/// The line (from 1) of byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A filter's text with the line and column of its first character in the config file (after the
/// opening quotes, and after the newline that TOML drops right after `'''` or `"""`).
fn filter_at(text: &str, value: &Spanned<String>) -> (String, usize, usize) {
    let mut start = value.span().start;
    let raw = &text[start..value.span().end];
    if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        start += 3;
        if text[start..].starts_with("\r\n") {
            start += 2;
        } else if text[start..].starts_with('\n') {
            start += 1;
        }
    } else {
        start += 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (value.get_ref().clone(), line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../../examples/local.toml");
        let c = Config::parse(text).unwrap();
        assert!(c.source.files.is_some());
        assert!(c.archive.is_some());
    }

    #[test]
    fn the_event_hubs_example_is_valid_and_takes_the_connection_string_from_the_environment() {
        let text = include_str!("../../../examples/eventhubs.toml");
        let c = Config::parse(text).unwrap();
        let k = c.source.kafka.as_ref().unwrap();
        assert_eq!(k.bootstrap, "my-namespace.servicebus.windows.net:9093");
        assert_eq!(k.connection_string_env.as_deref(), Some("EVENTHUB_CONNECTION_STRING"));
        assert_eq!(k.start_position().unwrap(), defender_sources::StartPosition::Earliest);
        assert_eq!(c.service.listen.as_deref(), Some("0.0.0.0:9464"));
        let s = c.sentinel.as_ref().unwrap();
        let (dcr, d) = s.dcrs.iter().next().unwrap();
        assert_eq!(dcr.get_ref(), "dcr-0123456789abcdef0123456789abcdef");
        assert!(d.endpoint.as_ref().unwrap().get_ref().starts_with("https://defender-ingest-1-"));
        let tables: Vec<&str> = d.tables.iter().map(|t| t.get_ref().as_str()).collect();
        assert_eq!(tables, ["DeviceNetworkEvents", "DeviceProcessEvents"]);
    }

    #[test]
    fn kafka_mistakes_say_what_was_expected() {
        let base = "[source.kafka]\nbootstrap = \"b:9093\"\ntopics = [\"t\"]\n";
        let err = |extra: &str| Config::parse(&format!("{base}{extra}")).unwrap_err().to_string();
        assert!(err("").contains("exactly one of `connection_string_env`"), "{}", err(""));
        assert!(err("plaintext = true\nconnection_string_env = \"X\"\n").contains("exactly one"));
        let e = err("plaintext = true\nstart = \"yesterday\"\n");
        assert!(e.contains("`source.kafka.start` is \"yesterday\"") && e.contains("RFC 3339"), "{e}");
        let e = err("plaintext = true\n[source.kafka.properties]\n\"sasl.password\" = \"x\"\n");
        assert!(e.contains("credentials do not go in the file"), "{e}");
        let e = err("plaintext = true\ncommit_interval = 5\n");
        assert!(e.contains("line 5") && e.contains("unknown field `commit_interval`"), "{e}");
        let ok = Config::parse(&format!("{base}plaintext = true\nstart = \"2026-11-01T00:00:00Z\"\n")).unwrap();
        assert_eq!(
            ok.source.kafka.unwrap().start_position().unwrap(),
            defender_sources::StartPosition::Timestamp(1_793_491_200_000)
        );
    }

    #[test]
    fn an_unknown_key_names_its_line_and_the_expected_keys() {
        let err = Config::parse("[archive]\nurl = \"x\"\nroll_size = 3\n").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("unknown field `roll_size`, expected one of `url`, `roll_size_mb`"), "{err}");
    }

    #[test]
    fn a_secret_in_the_file_by_mistake_is_not_quoted_back() {
        let secret = "SharedAccessKey=Zm9vYmFyc2VjcmV0";
        // Under a key that does not exist: the error names the key and the line, not the value.
        let text = format!(
            "[sentinel]\nendpoint = \"https://dce.example\"\n[sentinel.auth]\nmethod = \"client_secret\"\n\
             tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"{secret}\"\n"
        );
        let err = Config::parse(&text).unwrap_err().to_string();
        // (A tagged section's mistakes point at its header.)
        assert!(err.starts_with("line 3, column 1: unknown field `client_secret`"), "{err}");
        assert!(!err.contains("Zm9vYmFy"), "{err}");
        // In place of the name of the variable that holds it.
        let base = "[source.kafka]\nbootstrap = \"b:9093\"\ntopics = [\"t\"]\n";
        let err = Config::parse(&format!("{base}connection_string_env = \"Endpoint=sb://x/;{secret}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("`source.kafka.connection_string_env` must be the name of an environment variable"),
            "{err}"
        );
        assert!(!err.contains("Zm9vYmFy") && !err.contains("Endpoint"), "{err}");
        let err = Config::parse(&text.replace("client_secret =", "client_secret_env =")).unwrap_err().to_string();
        assert!(
            err.starts_with("`sentinel.auth.client_secret_env` must be the name of an environment variable"),
            "{err}"
        );
        assert!(!err.contains("Zm9vYmFy"), "{err}");
        Config::parse(&format!("{base}connection_string_env = \"EVENTHUB_CONNECTION_STRING\"\n")).unwrap();
    }

    #[test]
    fn a_wrong_type_names_its_line_and_the_expected_type() {
        let err = Config::parse("[pipeline]\nflush_rows = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("invalid type: string \"many\", expected usize"), "{err}");
    }

    #[test]
    fn a_filter_mistake_points_at_its_line_in_the_config() {
        let text = "[tables.DeviceNetworkEvents]\nsentinel = true\nsentinel_filter = '''\nwhere RemotePort > 80\n| project-away Nope\n'''\n";
        let err = Config::parse(text).unwrap_err().to_string();
        assert!(err.starts_with("tables.DeviceNetworkEvents.sentinel_filter at line 5, column 16:"), "{err}");
        let text = "[tables.DeviceNetworkEvents]\nsentinel_filter = \"where RemotePort == \\\"x\\\"\"\n";
        let err = Config::parse(text).unwrap_err().to_string();
        assert!(err.starts_with("tables.DeviceNetworkEvents.sentinel_filter at line 2, column"), "{err}");
    }

    #[test]
    fn a_tvm_table_asked_to_go_to_sentinel_is_rejected_with_the_reason() {
        let err = Config::parse("[tables.DeviceTvmSoftwareInventory]\nsentinel = true\n").unwrap_err().to_string();
        assert!(err.starts_with("tables.DeviceTvmSoftwareInventory.sentinel: DeviceTvmSoftwareInventory is a Defender Vulnerability Management (TVM) table"), "{err}");
    }

    #[test]
    fn group_by_is_checked_against_the_table_and_can_turn_grouping_off() {
        let c = Config::parse(
            "[tables.EmailEvents]\ngroup_by = \"DeliveryAction\"\n[tables.DeviceEvents]\ngroup_by = \"\"\n",
        )
        .unwrap();
        let g = c.group_by();
        assert_eq!(g["EmailEvents"].as_deref(), Some("DeliveryAction"));
        assert_eq!(g["DeviceEvents"], None);
        let err = Config::parse("[tables.EmailEvents]\ngroup_by = \"Nope\"\n").unwrap_err().to_string();
        assert_eq!(err, "tables.EmailEvents.group_by: EmailEvents has no column `Nope`");
        let err = Config::parse("[tables.DeviceNetworkEvents]\ngroup_by = \"RemotePort\"\n").unwrap_err().to_string();
        assert!(err.contains("grouping takes a string column"), "{err}");
        let err = Config::parse("[tables.default]\ngroup_by = \"ActionType\"\n").unwrap_err().to_string();
        assert!(err.starts_with("tables.default.group_by: a grouping column belongs to one table"), "{err}");
    }

    #[test]
    fn prices_can_be_overridden_in_part() {
        let c = Config::parse("[prices]\nanalytics_per_gb = 1.0\n").unwrap();
        assert_eq!(c.prices.analytics_per_gb, 1.0);
        assert_eq!(c.prices.basic_per_gb, Prices::default().basic_per_gb);
        let err = Config::parse("[prices]\nanalytics = 1.0\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `analytics`"), "{err}");
    }

    #[test]
    fn a_client_certificate_file_is_read_and_an_unreadable_one_names_the_key() {
        let dir = std::env::temp_dir().join(format!("defender-ingest-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n";
        std::fs::write(dir.join("app.pem"), pem).unwrap();
        std::fs::write(dir.join("app.pfx"), [0x30, 0x82, 0xff, 0xfe]).unwrap();
        let config = |file: &Path| {
            let text = format!(
                "[tables.DeviceEvents]\nsentinel = true\n\
                 [sentinel]\nendpoint = \"https://dce.eastus-1.ingest.monitor.azure.com\"\ndcr_immutable_id = \"dcr-1\"\n\
                 [sentinel.auth]\nmethod = \"client_certificate\"\ntenant_id = \"t\"\nclient_id = \"c\"\ncertificate_file = {:?}\n",
                file.to_str().unwrap()
            );
            Config::parse(&text).unwrap()
        };
        let catalog = Catalog::embedded();
        let Some(SentinelTarget::Live(live)) = config(&dir.join("app.pem")).sentinel_target(&catalog).unwrap() else {
            panic!("a live target")
        };
        let AuthConfig::ClientCertificate { certificate, client_id, .. } = &live.auth else {
            panic!("{:?}", live.auth)
        };
        assert_eq!((certificate.expose(), client_id.as_str()), (pem, "c"));
        let err = config(&dir.join("missing.pem")).sentinel_target(&catalog).unwrap_err().to_string();
        assert!(err.starts_with("sentinel.auth.certificate_file: cannot read "), "{err}");
        let err = config(&dir.join("app.pfx")).sentinel_target(&catalog).unwrap_err().to_string();
        assert!(err.starts_with("sentinel.auth.certificate_file: ") && err.contains("is not PEM"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two DCRs of kind Direct, as `schemas dcr` generates them: each with its own endpoint.
    const TWO_DCRS: &str = r#"
[tables.DeviceNetworkEvents]
sentinel = true

[tables.DeviceProcessEvents]
sentinel = true

[tables.EmailEvents]
sentinel = true
dcr_immutable_id = "dcr-2222"

[sentinel]

[sentinel.dcrs.dcr-1111]
endpoint = "https://defender-ingest-1-abcd.eastus-1.ingest.monitor.azure.com"
tables = ["DeviceNetworkEvents", "DeviceProcessEvents"]

[sentinel.dcrs.dcr-2222]
endpoint = "https://defender-ingest-2-efgh.eastus-1.ingest.monitor.azure.com/"

[sentinel.auth]
method = "azure_cli"
"#;

    fn live(text: &str) -> SentinelConfig {
        match Config::parse(text).unwrap().sentinel_target(&Catalog::embedded()).unwrap() {
            Some(SentinelTarget::Live(c)) => *c,
            other => panic!("a live target, not {other:?}"),
        }
    }

    fn target_error(text: &str) -> String {
        Config::parse(text).unwrap().sentinel_target(&Catalog::embedded()).unwrap_err().to_string()
    }

    #[test]
    fn each_dcr_can_have_its_own_endpoint_and_list_its_tables() {
        let c = live(TWO_DCRS);
        let dcr = |t: &str| c.tables[t].dcr_immutable_id.as_str();
        assert_eq!(
            [dcr("DeviceNetworkEvents"), dcr("DeviceProcessEvents"), dcr("EmailEvents")],
            ["dcr-1111", "dcr-1111", "dcr-2222"]
        );
        assert_eq!(c.endpoint, "", "no default endpoint");
        assert_eq!(c.endpoint_for("dcr-1111"), "https://defender-ingest-1-abcd.eastus-1.ingest.monitor.azure.com");
        assert_eq!(c.endpoint_for("dcr-2222"), "https://defender-ingest-2-efgh.eastus-1.ingest.monitor.azure.com/");
        assert_eq!(c.endpoints().len(), 2);
    }

    #[test]
    fn one_endpoint_for_every_dcr_still_works_and_a_dcr_can_override_it() {
        let one = "[tables.DeviceEvents]\nsentinel = true\n[tables.EmailEvents]\nsentinel = true\n\
                   dcr_immutable_id = \"dcr-2\"\n[sentinel]\nendpoint = \"https://dce.eastus-1.ingest.monitor.azure.com\"\n\
                   dcr_immutable_id = \"dcr-1\"\n[sentinel.auth]\nmethod = \"azure_cli\"\n";
        let c = live(one);
        assert!(c.dcr_endpoints.is_empty());
        for dcr in ["dcr-1", "dcr-2"] {
            assert_eq!(c.endpoint_for(dcr), "https://dce.eastus-1.ingest.monitor.azure.com", "{dcr}: the DCE");
        }
        let mixed = one.replace(
            "[sentinel.auth]",
            "[sentinel.dcrs.dcr-2]\nendpoint = \"https://defender-ingest-2.eastus-1.ingest.monitor.azure.com\"\n[sentinel.auth]",
        );
        let c = live(&mixed);
        assert_eq!(c.endpoint_for("dcr-1"), "https://dce.eastus-1.ingest.monitor.azure.com");
        assert_eq!(c.endpoint_for("dcr-2"), "https://defender-ingest-2.eastus-1.ingest.monitor.azure.com");
    }

    #[test]
    fn dcr_and_endpoint_mistakes_name_the_key_and_its_line() {
        let err = |text: &str| Config::parse(text).unwrap_err().to_string();
        let e = err(&TWO_DCRS.replace("https://defender-ingest-2", "http://defender-ingest-2"));
        assert!(e.starts_with("`sentinel.dcrs.dcr-2222.endpoint` at line 19 must be an https url"), "{e}");
        let e = err(&TWO_DCRS.replace("[sentinel]\n", "[sentinel]\nendpoint = \"dce.example\"\n"));
        assert!(e.starts_with("`sentinel.endpoint` at line 13 \"dce.example\" is not a url"), "{e}");
        let e = err(&TWO_DCRS.replace("\"DeviceProcessEvents\"]", "\"DeviceProcesEvents\"]"));
        assert!(e.starts_with("`sentinel.dcrs.dcr-1111.tables` at line 16: DeviceProcesEvents is not a table"), "{e}");
        let e = err(&TWO_DCRS.replace("\"DeviceProcessEvents\"]", "\"DeviceTvmSoftwareInventory\"]"));
        assert!(e.contains("line 16: DeviceTvmSoftwareInventory is a Defender Vulnerability Management (TVM)"), "{e}");
        let e = err(&TWO_DCRS.replace(".com/\"\n", ".com/\"\ntables = [\"DeviceNetworkEvents\"]\n"));
        assert!(e.starts_with("`sentinel.dcrs.dcr-2222.tables` at line 20: DeviceNetworkEvents is also listed in `sentinel.dcrs.dcr-1111.tables`"), "{e}");
        let e = err(&TWO_DCRS.replace("\"DeviceNetworkEvents\", ", "\"DeviceNetworkEvents\", \"EmailEvents\", "));
        assert!(
            e.contains("line 16: EmailEvents has its own tables.EmailEvents.dcr_immutable_id = \"dcr-2222\""),
            "{e}"
        );
        let e = err(&TWO_DCRS.replace("dcr_immutable_id = \"dcr-2222\"", ""));
        assert!(e.starts_with("`sentinel.dcrs.dcr-2222` at line 18: no table goes to this DCR"), "{e}");
        let e = err(&TWO_DCRS.replace("tables = [", "table = ["));
        assert!(e.contains("line 16") && e.contains("unknown field `table`, expected `endpoint` or `tables`"), "{e}");
    }

    #[test]
    fn every_table_sent_needs_a_dcr_and_an_endpoint() {
        let e = target_error(
            &TWO_DCRS.replace("\nendpoint = \"https://defender-ingest-2-efgh.eastus-1.ingest.monitor.azure.com/\"", ""),
        );
        assert!(e.starts_with("tables.EmailEvents: sent to DCR dcr-2222, which has no endpoint: set `endpoint` in [sentinel.dcrs.dcr-2222]"), "{e}");
        let e = target_error(
            &TWO_DCRS
                .replace("[tables.EmailEvents]", "[tables.DeviceLogonEvents]\nsentinel = true\n[tables.EmailEvents]"),
        );
        assert!(
            e.starts_with(
                "tables.DeviceLogonEvents: sent to Sentinel but no DCR: list it in `tables` of its [sentinel.dcrs."
            ),
            "{e}"
        );
        let e = target_error(&TWO_DCRS.replace("[sentinel]\n", "[sentinel]\ndry_run_dir = \"out/sentinel\"\n"));
        assert!(e.starts_with("[sentinel] needs exactly one of `dry_run_dir`"), "{e}");
    }

    #[test]
    fn each_table_sent_gets_its_plan_and_plan_mistakes_name_the_key() {
        let text = TWO_DCRS.replace(
            "[tables.DeviceNetworkEvents]\nsentinel = true\n",
            "[tables.DeviceNetworkEvents]\nsentinel = true\nplan = \"auxiliary\"\n",
        );
        let c = live(&text);
        assert_eq!(c.tables["DeviceNetworkEvents"].plan, Tier::Auxiliary);
        assert_eq!(c.tables["DeviceProcessEvents"].plan, Tier::Analytics, "the default plan");
        let c = live(&text.replace("[tables.EmailEvents]", "[tables.default]\nplan = \"basic\"\n[tables.EmailEvents]"));
        assert_eq!(c.tables["EmailEvents"].plan, Tier::Basic, "tables.default.plan");
        assert_eq!(c.tables["DeviceNetworkEvents"].plan, Tier::Auxiliary, "its own plan first");
        let err = |text: &str| Config::parse(text).unwrap_err().to_string();
        let e = err(&text.replace("\"auxiliary\"", "\"lake\""));
        assert!(
            e.starts_with(
                "line 4, column 8: unknown variant `lake`, expected one of `analytics`, `basic`, `auxiliary`"
            ),
            "{e}"
        );
        let e = err("[tables.DeviceTvmSoftwareInventory]\nplan = \"basic\"\n");
        assert!(e.starts_with("tables.DeviceTvmSoftwareInventory.plan: DeviceTvmSoftwareInventory is a Defender Vulnerability Management (TVM) table"), "{e}");
        let e = err("[tables.DeviceEvents]\nplan = \"auxiliary\"\n");
        assert!(e.starts_with("tables.DeviceEvents.plan: DeviceEvents is not sent to Sentinel"), "{e}");
        let e = err(&text
            .replace("plan = \"auxiliary\"\n", "plan = \"auxiliary\"\nstream = \"Microsoft-DeviceNetworkEvents\"\n"));
        assert!(e.starts_with("tables.DeviceNetworkEvents.plan: the Auxiliary plan is only for custom tables"), "{e}");
    }

    #[test]
    fn values_out_of_range_name_the_key() {
        let err = Config::parse("[archive]\nurl = \"x\"\nzstd_level = 40\n").unwrap_err().to_string();
        assert_eq!(err, "`archive.zstd_level` must be between 1 and 22, got 40");
        let err = Config::parse("[source.files]\npaths = []\n").unwrap_err().to_string();
        assert_eq!(err, "`source.files.paths` is empty: expected at least one file or glob");
    }
}
