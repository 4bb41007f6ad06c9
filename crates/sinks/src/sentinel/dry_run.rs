//! The Sentinel path without the network: every request body the Logs Ingestion client would
//! POST (gzip'd JSON arrays within the API limits) is stored under
//! `<root>/Custom-<Table>_CL/<source>-<first offset>-<last offset>-<n>.json.gz`.
//!
//! It shows a SOC, and lets tests check, exactly which rows and columns the policy sends and
//! what the bodies look like, before any DCR exists. Names come from the source positions, so
//! a replay rewrites the same files. A body is durable once stored (one put). Tables of the
//! Auxiliary plan ([`DryRunSink::with_plans`]) are encoded and packed as the live sink sends
//! them (rows in time order, bodies within the 30-minute window).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use arrow_schema::SchemaRef;
use defender_core::{Catalog, TableBatch, billing::Tier};
use object_store::{ObjectStoreExt, PutPayload, path::Path};

use super::{DEFAULT_GZIP_LEVEL, EncodedRows, PackMode, Packer, RowEncoder, SentinelError};
use crate::{archive::layout::source_key, store::Location};

/// What one table batch became on the Sentinel path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub table: Arc<str>,
    pub partition: u32,
    pub epoch: i64,
    /// Rows in stored bodies.
    pub rows: u64,
    /// Rows no body can carry, and rows the service refused on their own: each is in
    /// [`Self::rejected_rows`], for the dead letters.
    pub rejected: u64,
    pub rejected_rows: Vec<RejectedRow>,
    /// Values cut at 64 KB.
    pub truncated: u64,
    pub bodies: usize,
    /// Bytes stored (gzip).
    pub bytes: u64,
}

/// A row of a batch the Sentinel path could not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// Its index in the batch.
    pub row: usize,
    /// Why, in words (the packer's or the service's).
    pub reason: String,
    /// The row's JSON, as the Logs Ingestion API would have received it.
    pub json: Vec<u8>,
}

impl RejectedRow {
    pub(crate) fn packed(rows: &EncodedRows, rejected: &super::Rejected) -> Self {
        Self { row: rejected.row, reason: rejected.reason.to_string(), json: rows.row(rejected.row).to_vec() }
    }
}

/// See the module documentation.
pub struct DryRunSink {
    location: Location,
    catalog: Arc<Catalog>,
    packer: Packer,
    encoders: HashMap<Arc<str>, (SchemaRef, RowEncoder)>,
    rows: EncodedRows,
    /// Per table, the plan of its Sentinel table (Analytics when absent).
    plans: BTreeMap<String, Tier>,
}

impl std::fmt::Debug for DryRunSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DryRunSink").field("location", &self.location.display).finish()
    }
}

impl DryRunSink {
    pub fn new(location: Location, catalog: Arc<Catalog>, mode: PackMode) -> Self {
        Self {
            location,
            catalog,
            packer: Packer::new(mode, DEFAULT_GZIP_LEVEL),
            encoders: HashMap::new(),
            rows: EncodedRows::new(),
            plans: BTreeMap::new(),
        }
    }

    /// The plan of each table's Sentinel table (tables not given: Analytics).
    pub fn with_plans(mut self, plans: BTreeMap<String, Tier>) -> Self {
        self.plans = plans;
        self
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Encodes, packs and stores one batch (already filtered and projected by the policy).
    pub async fn write(&mut self, batch: &TableBatch) -> Result<Sent, SentinelError> {
        let schema = batch.batch.schema();
        let plan = self.plans.get(&*batch.table).copied().unwrap_or_default();
        let stale = self.encoders.get(&batch.table).is_none_or(|(s, _)| *s != schema);
        if stale {
            let table = self
                .catalog
                .get(&batch.table)
                .ok_or_else(|| SentinelError::UnknownTable { table: batch.table.to_string() })?;
            let encoder = RowEncoder::new(table, &schema)?.with_table_plan(plan);
            self.encoders.insert(batch.table.clone(), (schema, encoder));
        }
        let (_, encoder) = self.encoders.get_mut(&batch.table).expect("inserted above");
        self.rows.clear();
        let stats = encoder.encode(&batch.batch, &mut self.rows)?;
        let order = (plan == Tier::Auxiliary).then(|| {
            let (sorted, order) = self.rows.sorted_by_time();
            self.rows = sorted;
            order
        });
        let packed = self.packer.for_plan(plan).pack(&self.rows);
        for r in &packed.rejected {
            tracing::warn!(table = %batch.table, row = r.row, reason = %r.reason, "row cannot be sent to sentinel");
        }
        let stream = format!("Custom-{}_CL", batch.table);
        let source = source_key(&batch.source);
        let mut sent = Sent {
            table: batch.table.clone(),
            partition: batch.partition,
            epoch: batch.last_offset,
            rejected: packed.rejected.len() as u64,
            rejected_rows: packed
                .rejected
                .iter()
                .map(|r| RejectedRow {
                    row: order.as_ref().map_or(r.row, |o| o[r.row]),
                    ..RejectedRow::packed(&self.rows, r)
                })
                .collect(),
            truncated: stats.truncated_total(),
            ..Sent::default()
        };
        for (n, body) in packed.bodies.into_iter().enumerate() {
            let name = format!("{source}-{:020}-{:020}-{n:04}.json.gz", batch.first_offset, batch.last_offset);
            let mut parts: Vec<String> = self.location.prefix.parts().map(|p| p.as_ref().to_string()).collect();
            parts.extend([stream.clone(), name]);
            let path = Path::from_iter(parts);
            sent.rows += body.rows as u64;
            sent.bytes += body.gzip.len() as u64;
            sent.bodies += 1;
            self.location
                .store
                .put(&path, PutPayload::from(body.gzip))
                .await
                .map_err(|source| SentinelError::Put { path: path.to_string(), source })?;
        }
        Ok(sent)
    }
}
