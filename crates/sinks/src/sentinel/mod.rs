//! The Sentinel sink's CPU half: Arrow batches → Logs Ingestion API request bodies.
//!
//! Two stages, both pure CPU (no network here):
//! - [`rows`]: a [`RowEncoder`], built once per table, writes each row of a `RecordBatch` as one
//!   compact JSON object into a shared byte buffer ([`EncodedRows`]), keyed by Sentinel column
//!   names, with `TimeGenerated` and a deterministic `RecordId_CF`;
//! - [`pack`]: a [`Packer`] groups encoded rows into gzip'd JSON array bodies that respect the
//!   API's size limits (DESIGN §3, contracts §d), and [`Packer::split`] halves a body the service
//!   refused with 413.
//!
//! The network half: [`client`] ([`SentinelSink`], [`SentinelConfig`]) drives each body through
//! [`service`] (exactly one HTTP call), [`retry`] (classifier, jittered backoff, per-DCR rate
//! budget) and [`auth`] (Entra tokens), and returns only when every row was accepted.
//!
//! Invariants:
//! - every row is a valid JSON object; every body decompresses to a valid JSON array of rows, in
//!   the order they were encoded, each row in exactly one body or in the rejected list;
//! - no string value is longer than [`MAX_FIELD_BYTES`] (we truncate on a character boundary and
//!   count it, instead of letting the service truncate silently);
//! - every row's `RecordId_CF` is the batch's `_RecordId` (the decoder's id of the record's
//!   bytes as received), so a retried call that had in fact succeeded, or a replay, leaves
//!   duplicates users can remove, and the archive row with the same `_RecordId` is the same
//!   event. Batches without a `_RecordId` column (tests, tools) get a hash of the row instead.

pub mod auth;
pub mod client;
pub mod dry_run;
pub mod pack;
pub mod retry;
pub mod rows;
pub mod service;

pub use auth::{AuthConfig, AuthError, EVENT_HUBS_SCOPE, Secret, TokenSource};
pub use client::{
    ClientError, Delivered, MAX_UNPROVEN_REFUSALS, Prepared, SentinelConfig, SentinelSink, SinkWatch, StreamTarget,
};
pub use dry_run::{DryRunSink, RejectedRow, Sent};
pub use pack::{Body, DEFAULT_GZIP_LEVEL, PackMode, Packed, Packer, RejectReason, Rejected};
pub use retry::{RateBudget, RetryPolicy};
pub use rows::{EncodeStats, EncodedRows, RowEncoder};
pub use service::{IngestionService, SendError, SendErrorKind};

use arrow_schema::DataType;

/// Longest field value the Logs Ingestion API stores (64 KB); longer string values are cut.
pub const MAX_FIELD_BYTES: usize = 65_536;

/// The Sentinel column every row's event time goes to.
pub const TIME_GENERATED: &str = "TimeGenerated";

/// The internal column holding the row's deterministic id (renamed by
/// [`defender_core::schema::sentinel_name`] to `RecordId_CF`).
pub use defender_core::schema::COL_RECORD_ID;

/// Errors building or running a [`RowEncoder`]: a batch or schema the encoder cannot represent.
/// They are configuration or programming errors, not bad records.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("table {table}: column {column} has arrow type {data_type}, which has no sentinel encoding")]
    UnsupportedType { table: String, column: String, data_type: DataType },
    #[error("table {table}: sentinel column name {name} is used twice")]
    DuplicateName { table: String, name: String },
    #[error("table {table}: the batch schema does not match the encoder's ({detail})")]
    SchemaMismatch { table: String, detail: String },
    #[error("table {table} has no schema: it cannot be sent to Sentinel")]
    UnknownTable { table: String },
    #[error("cannot store {path}: {source}")]
    Put {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("invalid sentinel config: {0}")]
    Config(String),
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

impl SentinelError {
    /// An error of the encoder about the batch in hand (its schema or values), not of the
    /// network, the store or the configuration: the batch's rows are dead-lettered and the run
    /// goes on.
    pub fn is_encoding(&self) -> bool {
        matches!(
            self,
            Self::UnsupportedType { .. }
                | Self::DuplicateName { .. }
                | Self::SchemaMismatch { .. }
                | Self::UnknownTable { .. }
        )
    }
}

#[cfg(test)]
mod tests;
