//! The file's types, as serde reads them: unknown keys rejected, every field defaulted (from
//! [`crate::defaults`]), keys whose mistakes must point at a line kept [`Spanned`].

use std::{collections::BTreeMap, fmt, time::Duration};

use defender_core::billing::{Prices, Tier};
use defender_sinks::sentinel::PackMode;
use serde::Deserialize;
use toml::Spanned;

use crate::defaults;

/// The file as written: every section, unknown keys rejected, every field defaulted. Checked
/// by [`ConfigFile::validate`] into a [`Config`](crate::Config).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
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
    /// Calls in flight per DCR (default: `SentinelConfig::new`'s).
    pub concurrency_per_dcr: Option<usize>,
    /// Longest wait between two tries of a call (the backoff's cap; default: `RetryPolicy`'s), and how often
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
#[derive(Debug, Clone, Deserialize)]
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
    pub capture: Option<crate::history::CaptureSection>,
    pub storage: Option<crate::history::StorageSection>,
    pub eventhubs: Option<EventHubsSection>,
}

impl SourceConfig {
    /// The sections set, by name (a run reads exactly one).
    pub fn named(&self) -> Vec<&'static str> {
        let set = [
            ("source.files", self.files.is_some()),
            ("source.kafka", self.kafka.is_some()),
            ("source.capture", self.capture.is_some()),
            ("source.storage", self.storage.is_some()),
            ("source.eventhubs", self.eventhubs.is_some()),
        ];
        set.into_iter().filter(|(_, on)| *on).map(|(name, _)| name).collect()
    }

    /// `[source.capture]` or `[source.storage]`, checked (None: neither is set).
    pub fn history(&self) -> Result<Option<crate::history::History>, crate::ConfigError> {
        match (&self.capture, &self.storage) {
            (Some(c), _) => c.check().map(Some),
            (None, Some(s)) => s.check().map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// Event Hubs over AMQP: one replica of a consumer group, partitions shared by Blob ownership,
/// checkpoints in the Blob layout the Azure SDKs and KEDA read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventHubsSection {
    /// The namespace's fully qualified name, `<namespace>.servicebus.windows.net`.
    pub namespace: String,
    pub event_hub: String,
    #[serde(default = "defaults::consumer_group")]
    pub consumer_group: String,
    /// The checkpoint and ownership container: `https://<account>.blob.core.windows.net/<container>`,
    /// `az://<account>/<container>`, or an emulator's `http://127.0.0.1:10000/devstoreaccount1/<container>`.
    pub checkpoint_container: String,
    /// Where a partition without a checkpoint starts: "earliest", "latest" or an RFC 3339
    /// enqueued time such as "2026-11-01T00:00:00Z".
    #[serde(default = "defaults::start")]
    pub start_position: String,
    /// Events each partition receiver asks for ahead of the pipeline (AMQP link credit).
    #[serde(default = "defaults::prefetch")]
    pub prefetch: u32,
    #[serde(default = "defaults::load_balancing_interval_seconds")]
    pub load_balancing_interval_seconds: u64,
    /// A replica's claims not renewed for this long are taken over (above twice the interval).
    #[serde(default = "defaults::partition_expiration_seconds")]
    pub partition_expiration_seconds: u64,
    #[serde(default = "defaults::eventhubs_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// How long a lost partition waits for the pipeline to make it durable.
    #[serde(default = "defaults::revoke_timeout_seconds")]
    pub revoke_timeout_seconds: u64,
    /// Another AMQP endpoint than the namespace's (private link; `amqp://127.0.0.1:PORT` for a
    /// local endpoint).
    pub custom_endpoint: Option<String>,
    /// This replica's owner id in the ownership blobs; default: the POD_NAME environment
    /// variable when set, else a random id.
    pub owner_id: Option<String>,
    /// SAS tokens minted from the connection string in this environment variable.
    pub connection_string_env: Option<String>,
    /// Entra tokens (Azure Event Hubs Data Receiver).
    pub auth: Option<AuthSection>,
    /// A SAS for the checkpoint container, from this environment variable.
    pub checkpoint_sas_env: Option<String>,
    /// Entra tokens for the checkpoint container (Storage Blob Data Contributor).
    pub checkpoint_auth: Option<AuthSection>,
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
    pub roll_seconds: Seconds,
    #[serde(default = "defaults::zstd_level")]
    pub zstd_level: i32,
    /// The encoded size of every open file together; past it the largest files roll early.
    #[serde(default = "defaults::max_buffered_mb")]
    pub max_buffered_mb: u64,
}

impl ArchiveSection {
    /// An archive at `url` with every other setting at its default (for `--archive`).
    pub fn with_url(url: &str) -> Self {
        Self {
            url: url.to_string(),
            roll_size_mb: defaults::roll_size_mb(),
            roll_seconds: defaults::roll_seconds(),
            zstd_level: defaults::zstd_level(),
            max_buffered_mb: defaults::max_buffered_mb(),
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
    pub flush_seconds: Seconds,
    #[serde(default = "defaults::budget_mb")]
    pub budget_mb: usize,
    /// Distinct unknown tables (categories without a schema) archived under names of their
    /// own; records of later ones go to `_OverflowUnknownTables`.
    #[serde(default = "defaults::max_unknown_tables")]
    pub max_unknown_tables: usize,
    /// Blocking workers for the CPU work (Parquet encoding, Sentinel row encoding and gzip);
    /// default one per core.
    #[serde(default = "defaults::cpu_workers")]
    pub cpu_workers: usize,
    /// Sentinel batches in flight at once, across partitions and tables (calls per DCR stay
    /// bounded by `[sentinel] concurrency_per_dcr`).
    #[serde(default = "defaults::sentinel_in_flight")]
    pub sentinel_in_flight: usize,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            flush_rows: defaults::flush_rows(),
            flush_mb: defaults::flush_mb(),
            flush_seconds: defaults::flush_seconds(),
            budget_mb: defaults::budget_mb(),
            max_unknown_tables: defaults::max_unknown_tables(),
            cpu_workers: defaults::cpu_workers(),
            sentinel_in_flight: defaults::sentinel_in_flight(),
        }
    }
}

/// A duration as the file writes it: whole or fractional seconds (`5`, `0.25`). Checked to lie
/// within [`Seconds::MIN`] and [`Seconds::MAX`] before it becomes a [`Duration`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub f64);

impl Seconds {
    /// Below this, files and epochs would be cut faster than they can be written.
    pub const MIN: f64 = 0.1;
    /// Seven days.
    pub const MAX: f64 = 7.0 * 86_400.0;

    pub fn from_duration(d: Duration) -> Self {
        Self(d.as_secs_f64())
    }

    /// The duration, within the bounds (a value outside them is refused by the config's check).
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0.clamp(Self::MIN, Self::MAX))
    }

    /// Refuses a value outside the bounds, naming `key`.
    pub fn check(self, key: &str) -> Result<(), crate::ConfigError> {
        if !(Self::MIN..=Self::MAX).contains(&self.0) {
            crate::invalid!("`{key}` must be between {} and {} seconds (7 days), got {self}", Self::MIN, Self::MAX);
        }
        Ok(())
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds, such as 5 or 0.5")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}
