//! The run configuration: one TOML file, unknown keys rejected, every field defaulted, checked
//! before anything starts. This crate does no I/O: it parses text ([`Config::parse`]), checks it
//! into a [`Config`] and maps it onto the settings of the pipeline, the archive and the Sentinel
//! sink. The binary reads the file, resolves what the file only names (the secrets' environment
//! variables, the certificate and CA files: see [`LiveSentinel`]) and starts things. Relative
//! paths are taken from the current directory.
//!
//! ```toml
//! [source.files]
//! paths = ["examples/sample/*.ndjson.gz"]   # files or globs; gzip is detected
//!
//! [archive]
//! url = "out/archive"        # a path, file://, az://container/prefix or abfss://fs@account.dfs.core.windows.net/prefix
//! roll_size_mb = 64          # roll a Parquet file at this encoded size
//! roll_seconds = 300         # ... or this long after it was opened (fractions allowed: 0.5)
//! zstd_level = 3
//! max_buffered_mb = 256      # every open file's encoded size together; past it the largest roll early
//!
//! [pipeline]
//! flush_rows = 65536         # the decoder cuts a batch at this many rows,
//! flush_mb = 32              # ... this many MB of input,
//! flush_seconds = 5          # ... or this age (fractions allowed: 0.25)
//! budget_mb = 32             # input in flight: raw, being decoded, and decoded for the destinations
//! max_unknown_tables = 100   # distinct unknown tables kept apart; later ones share one overflow table
//! # cpu_workers = 2          # blocking workers for Parquet, Sentinel row encoding and gzip (default: one per core)
//! sentinel_in_flight = 8     # Sentinel batches in flight at once, across partitions and tables
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
//!
//! Invariants: every default is in [`defaults`] (read from the library type that has it, when
//! one does); every error names the key, and its line when the mistake is at one; no error
//! quotes a value that may be a secret put in the file by mistake.

pub mod defaults;
mod file;
pub mod history;
mod sentinel;
mod validate;

use std::{collections::BTreeMap, sync::Arc};

use defender_core::{FlushRule, billing::Prices};
use defender_pipeline::{PipelineOptions, Policy, policy::PolicyError};
use defender_sinks::ArchiveConfig;

pub use crate::{
    file::{
        ArchiveSection, AuthSection, ConfigFile, DcrSection, EventHubsSection, FilesSource, KafkaSection, PackSetting,
        PipelineSection, Seconds, SentinelSection, ServiceSection, SourceConfig, TableEntry,
    },
    sentinel::{LiveSentinel, SentinelTarget},
};

/// A mistake in the config. The message names the key (and its line when known) and never
/// quotes a value that may be a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or not the file's shape (an unknown key, a wrong type): "line L, column C: ...".
    #[error("{0}")]
    Syntax(String),
    /// Where a table goes, or one of its filters.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A value out of range, missing or inconsistent with another.
    #[error("{0}")]
    Invalid(String),
}

/// `bail!` for [`ConfigError::Invalid`].
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::ConfigError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;

/// The config, checked: built only by [`Config::parse`] (or [`ConfigFile::validate`]), or
/// [`Config::default`] (everything at its default, no source: the command line gives one).
#[derive(Debug, Default)]
pub struct Config {
    pub source: SourceConfig,
    pub archive: Option<ArchiveSection>,
    pub pipeline: PipelineSection,
    pub service: ServiceSection,
    /// Per table (and `default`): destinations and filters.
    pub tables: BTreeMap<String, TableEntry>,
    /// Where rows the policy sends to Sentinel go.
    pub sentinel: Option<SentinelSection>,
    /// Price overrides for estimates.
    pub prices: Prices,
    /// Where each table goes, built from `tables`.
    policy: Arc<Policy>,
}

impl Config {
    /// Parses and checks the text of a config file; errors name the line and what was expected.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Syntax(toml_error(text, &e)))?;
        file.validate(text)
    }

    /// Where each table goes.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
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
                max_age: p.flush_seconds.duration(),
            },
            budget_bytes: p.budget_mb << 20,
            max_unknown_tables: p.max_unknown_tables,
            cpu_workers: p.cpu_workers,
            sentinel_in_flight: p.sentinel_in_flight,
            policy: self.policy.clone(),
            ..PipelineOptions::default()
        }
    }

    pub fn archive_config(&self) -> ArchiveConfig {
        let mut c = ArchiveConfig::default();
        if let Some(a) = &self.archive {
            c.roll_bytes = (a.roll_size_mb << 20) as usize;
            c.roll_age = a.roll_seconds.duration();
            c.zstd_level = a.zstd_level;
            c.max_buffered_bytes = (a.max_buffered_mb << 20) as usize;
        }
        c
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

#[cfg(test)]
mod tests;
