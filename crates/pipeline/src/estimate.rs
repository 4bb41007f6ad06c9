//! Estimate mode: the same source and decoder as a run, no sink. Per table it reports what
//! Sentinel would bill before and after the table's Sentinel filter, what that costs per tier,
//! and the Parquet bytes the archive would write (the sample is encoded for real, with the
//! archive's settings: no guessed compression ratio).
//!
//! Projection: the sample's event-time span (from its earliest to its latest `Timestamp`,
//! over all tables) stands for the stream's rate: GB/day = billed bytes / span × 86,400 / 10⁹.
//! "Before" is the whole table sent with every column (what switching the table on would cost);
//! "after" is what the policy sends (nothing for tables not sent to Sentinel).
//!
//! Plans: each table sent is billed at its configured plan ([`TableEstimate::plan`], from the
//! policy) in [`MonthlyCost::at_plan`]; `analytics_before`/`analytics_after` stay the
//! all-Analytics baseline, so [`Estimate::saving_per_month`] is what the filters buy and
//! [`Estimate::plan_saving_per_month`] what the plans buy on top. An Auxiliary table also bills
//! the standard columns Log Analytics adds itself ([`billing::standard_columns_bytes`]).
//!
//! Each table also gets its [`TableDetail`]: billed bytes per column and per group, before and
//! after, and ranked savings (see [`crate::breakdown`]).

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Instant};

use arrow_array::{Array, TimestampNanosecondArray};
use defender_core::{
    Catalog,
    billing::{self, Prices, Tier},
    decode::DecoderOutput,
    schema::COL_TIMESTAMP,
};
use defender_sinks::{ArchiveConfig, archive::ParquetSizer};
use defender_sources::{SourceError, SourceIo};
use serde::Serialize;

use crate::{
    PipelineError, PipelineOptions,
    breakdown::{self, DetailAcc, Saving, TableDetail},
    policy::Policy,
};

const SECONDS_PER_DAY: f64 = 86_400.0;

/// Costs of one table per month (USD unless the price table says otherwise).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonthlyCost {
    pub analytics_before: f64,
    pub analytics_after: f64,
    pub basic_after: f64,
    pub auxiliary_after: f64,
    /// After filters, at the table's configured plan (0 for tables not sent to Sentinel).
    pub at_plan: f64,
    pub archive: f64,
}

/// The estimate of one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableEstimate {
    pub table: String,
    pub unknown_table: bool,
    pub tvm: bool,
    pub records: u64,
    pub dead_lettered: u64,
    pub raw_bytes: u64,
    pub records_per_second: f64,
    pub sentinel: bool,
    /// The plan of its Sentinel table, when sent to Sentinel.
    pub plan: Option<Tier>,
    /// Why the table can never go to Sentinel (`tvm`, `unknown_table`).
    pub sentinel_refused: Option<String>,
    pub rows_kept: u64,
    pub columns_in: usize,
    pub columns_kept: usize,
    pub billed_bytes_before: u64,
    pub billed_bytes_after: u64,
    pub billed_bytes_after_auxiliary: u64,
    /// After filters, billed at [`Self::plan`].
    pub billed_bytes_at_plan: u64,
    pub gb_per_day_before: f64,
    pub gb_per_day_after: f64,
    pub archive_rows: u64,
    pub parquet_bytes: u64,
    pub parquet_gb_per_day: f64,
    pub cost_per_month: MonthlyCost,
    /// Where the billed bytes come from, and what would save most (not for the totals, nor for
    /// unknown tables, which are never billed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<TableDetail>,
}

/// The whole estimate.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub tables: Vec<TableEstimate>,
    pub totals: TableEstimate,
    /// Seconds of event time the sample covers.
    pub event_span_seconds: f64,
    pub prices: Prices,
    /// Monthly saving the Sentinel filters and selection buy (analytics tier).
    pub saving_per_month: f64,
    /// Monthly saving the configured table plans buy on top of the filters (against Analytics).
    pub plan_saving_per_month: f64,
    pub elapsed_seconds: f64,
    /// The largest savings of every table, largest first ("where to save").
    pub top_savings: Vec<Saving>,
}

#[derive(Default)]
struct Acc {
    est: TableEstimate,
    sizer: Option<ParquetSizer>,
    detail: Option<DetailAcc>,
    /// Whether the table has a Sentinel filter (a suggested stage then follows `| `).
    filtered: bool,
}

/// Accumulates decoder output into an [`Estimate`].
pub struct Estimator {
    catalog: Arc<Catalog>,
    policy: Arc<Policy>,
    archive: ArchiveConfig,
    tables: BTreeMap<String, Acc>,
    min_ts: i64,
    max_ts: i64,
    /// Grouping column per table, replacing [`breakdown::default_group_column`] (`None`: none).
    group_by: BTreeMap<String, Option<String>>,
}

impl std::fmt::Debug for Estimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Estimator").field("tables", &self.tables.len()).finish()
    }
}

impl Estimator {
    pub fn new(catalog: Arc<Catalog>, policy: Arc<Policy>, archive: ArchiveConfig) -> Self {
        Self {
            catalog,
            policy,
            archive,
            tables: BTreeMap::new(),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            group_by: BTreeMap::new(),
        }
    }

    /// Groups the tables named by the given column (`None`: no grouping) instead of their
    /// default (see [`breakdown::default_group_column`]).
    pub fn with_group_by(mut self, group_by: BTreeMap<String, Option<String>>) -> Self {
        self.group_by = group_by;
        self
    }

    pub fn add(&mut self, out: &DecoderOutput) -> Result<(), PipelineError> {
        for (table, stats) in &out.accounting.tables {
            let acc = self.tables.entry(table.clone()).or_default();
            acc.est.records += stats.records_in;
            acc.est.dead_lettered += stats.dead_lettered_total();
            acc.est.raw_bytes += stats.bytes_in;
            acc.est.unknown_table |= stats.unknown_table;
        }
        for batch in &out.batches {
            let b = &batch.batch;
            if let Some(ts) =
                b.column_by_name(COL_TIMESTAMP).and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
            {
                for v in ts.iter().flatten() {
                    self.min_ts = self.min_ts.min(v);
                    self.max_ts = self.max_ts.max(v);
                }
            }
            let routes = self.policy.routes(&self.catalog, &batch.table);
            let filter_err = |source| PipelineError::Filter { table: batch.table.to_string(), source };
            let billing_err =
                |e: billing::BillingError| PipelineError::Task(format!("billing of table {}: {e}", batch.table));
            let acc = self.tables.entry(batch.table.to_string()).or_default();
            acc.est.tvm = self.catalog.get(&batch.table).is_some_and(|t| t.tvm);
            acc.est.sentinel = routes.sentinel.enabled;
            acc.est.plan = routes.sentinel.enabled.then_some(routes.plan);
            acc.est.sentinel_refused = routes.sentinel_refused.map(str::to_string);
            acc.est.columns_in = data_columns(b);
            acc.filtered = routes.sentinel.filter.is_some();
            // Every row carries its `_RecordId` (RecordId_CF), billed as a column.
            let before = if batch.unknown_table {
                None
            } else {
                Some(billing::bill_by_column(b, Tier::Analytics).map_err(billing_err)?)
            };
            if let Some(bill) = &before {
                acc.est.billed_bytes_before += bill.total();
            }
            let mut after = None;
            if routes.sentinel.enabled {
                let (sent, mask) = match &routes.sentinel.filter {
                    Some(f) => f.apply_with_mask(b).map_err(filter_err)?,
                    None => (b.clone(), None),
                };
                acc.est.rows_kept += sent.num_rows() as u64;
                acc.est.columns_kept = data_columns(&sent);
                let bill = billing::bill_by_column(&sent, Tier::Analytics).map_err(billing_err)?;
                let analytics = bill.total();
                let standard = billing::standard_columns_bytes(Tier::Auxiliary, &format!("{}_CL", batch.table));
                let auxiliary = billing::billed_bytes(&sent, Tier::Auxiliary).map_err(billing_err)?
                    + standard * sent.num_rows() as u64;
                acc.est.billed_bytes_after += analytics;
                acc.est.billed_bytes_after_auxiliary += auxiliary;
                acc.est.billed_bytes_at_plan += match routes.plan {
                    Tier::Analytics => analytics,
                    Tier::Basic => billing::billed_bytes(&sent, Tier::Basic).map_err(billing_err)?,
                    Tier::Auxiliary => auxiliary,
                };
                after = Some((bill, mask, sent));
            }
            if let Some(bill) = &before {
                let group_by = &self.group_by;
                let catalog = &self.catalog;
                let detail = acc.detail.get_or_insert_with(|| {
                    let column = match group_by.get(&*batch.table) {
                        Some(column) => column.clone(),
                        None => catalog
                            .get(&batch.table)
                            .and_then(|t| breakdown::default_group_column(t))
                            .map(str::to_string),
                    };
                    DetailAcc::new(column)
                });
                detail.add(b, bill, after.as_ref().map(|(bill, mask, sent)| (bill, mask.as_ref(), sent)));
            }
            if routes.archive.enabled {
                let kept = match &routes.archive.filter {
                    Some(f) => f.apply(b).map_err(filter_err)?,
                    None => b.clone(),
                };
                if acc.sizer.is_none() {
                    acc.sizer = Some(ParquetSizer::new(&batch.table, &kept, &self.archive)?);
                }
                acc.sizer.as_mut().expect("set above").add(&kept)?;
                acc.est.archive_rows += kept.num_rows() as u64;
            }
        }
        Ok(())
    }

    pub fn finish(self, prices: Prices, elapsed_seconds: f64) -> Result<Estimate, PipelineError> {
        let span = if self.max_ts > self.min_ts { (self.max_ts - self.min_ts) as f64 / 1e9 } else { 1.0 };
        let per_day = |bytes: u64| bytes as f64 / span * SECONDS_PER_DAY / 1e9;
        let mut tables = Vec::new();
        let mut totals = TableEstimate { table: "total".into(), ..TableEstimate::default() };
        for (name, acc) in self.tables {
            let mut e = acc.est;
            e.table = name;
            if let Some(sizer) = acc.sizer {
                e.parquet_bytes = sizer.finish()?;
            }
            if let (Some(detail), Some(schema)) = (acc.detail, self.catalog.get(&e.table)) {
                e.detail = Some(detail.finish(schema, acc.filtered, &per_day, prices.analytics_per_gb));
            }
            e.records_per_second = e.records as f64 / span;
            e.gb_per_day_before = per_day(e.billed_bytes_before);
            e.gb_per_day_after = per_day(e.billed_bytes_after);
            e.parquet_gb_per_day = per_day(e.parquet_bytes);
            e.cost_per_month = MonthlyCost {
                analytics_before: billing::monthly_cost(e.gb_per_day_before, prices.analytics_per_gb),
                analytics_after: billing::monthly_cost(e.gb_per_day_after, prices.analytics_per_gb),
                basic_after: billing::monthly_cost(e.gb_per_day_after, prices.basic_per_gb),
                auxiliary_after: billing::monthly_cost(
                    per_day(e.billed_bytes_after_auxiliary),
                    prices.auxiliary_per_gb,
                ),
                at_plan: billing::monthly_cost(
                    per_day(e.billed_bytes_at_plan),
                    prices.per_gb(e.plan.unwrap_or_default()),
                ),
                // One month of archive data kept for a month.
                archive: billing::monthly_cost(e.parquet_gb_per_day, prices.archive_storage_per_gb_month),
            };
            add_to(&mut totals, &e);
            tables.push(e);
        }
        totals.records_per_second = totals.records as f64 / span;
        totals.sentinel = tables.iter().any(|t| t.sentinel);
        let saving_per_month = totals.cost_per_month.analytics_before - totals.cost_per_month.analytics_after;
        let plan_saving_per_month = totals.cost_per_month.analytics_after - totals.cost_per_month.at_plan;
        let mut top_savings: Vec<Saving> =
            tables.iter().filter_map(|t| t.detail.as_ref()).flat_map(|d| d.savings.iter().cloned()).collect();
        top_savings.sort_by(|a, b| b.billed_bytes.cmp(&a.billed_bytes).then_with(|| a.kql.cmp(&b.kql)));
        top_savings.truncate(breakdown::TOP_SAVINGS_SHOWN);
        Ok(Estimate {
            tables,
            totals,
            event_span_seconds: span,
            prices,
            saving_per_month,
            plan_saving_per_month,
            elapsed_seconds,
            top_savings,
        })
    }
}

fn add_to(t: &mut TableEstimate, e: &TableEstimate) {
    t.records += e.records;
    t.dead_lettered += e.dead_lettered;
    t.raw_bytes += e.raw_bytes;
    t.rows_kept += e.rows_kept;
    t.billed_bytes_before += e.billed_bytes_before;
    t.billed_bytes_after += e.billed_bytes_after;
    t.billed_bytes_after_auxiliary += e.billed_bytes_after_auxiliary;
    t.billed_bytes_at_plan += e.billed_bytes_at_plan;
    t.gb_per_day_before += e.gb_per_day_before;
    t.gb_per_day_after += e.gb_per_day_after;
    t.archive_rows += e.archive_rows;
    t.parquet_bytes += e.parquet_bytes;
    t.parquet_gb_per_day += e.parquet_gb_per_day;
    let (c, x) = (&mut t.cost_per_month, &e.cost_per_month);
    c.analytics_before += x.analytics_before;
    c.analytics_after += x.analytics_after;
    c.basic_after += x.basic_after;
    c.auxiliary_after += x.auxiliary_after;
    c.at_plan += x.at_plan;
    c.archive += x.archive;
}

/// Runs a source through the decoder into an [`Estimator`]; nothing is written, nothing committed.
/// With `max_records`, the source is stopped once that many records were decoded (a few more
/// may arrive while it stops); `options.stop` stops it too. `group_by` replaces the default
/// grouping column of the tables it names (see [`Estimator::with_group_by`]).
pub async fn estimate<S, F>(
    catalog: Arc<Catalog>,
    source: S,
    mut options: PipelineOptions,
    archive: ArchiveConfig,
    prices: Prices,
    max_records: Option<u64>,
    group_by: BTreeMap<String, Option<String>>,
) -> Result<Estimate, PipelineError>
where
    S: FnOnce(SourceIo) -> F,
    F: Future<Output = Result<(), SourceError>> + Send + 'static,
{
    let started = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut outer = std::mem::replace(&mut options.stop, stop_rx);
    let forward = stop_tx.clone();
    tokio::spawn(async move {
        while !*outer.borrow_and_update() {
            if outer.changed().await.is_err() {
                return;
            }
        }
        let _ = forward.send(true);
    });
    let cpu = crate::cpu::Cpu::new(options.cpu_workers);
    let front = crate::Front::spawn(catalog.clone(), source, &options, None, cpu);
    let mut epochs = front.stages;
    let mut records = 0;
    let mut estimator = Estimator::new(catalog, options.policy, archive).with_group_by(group_by);
    let mut result = Ok(());
    while let Some(stage) = epochs.recv().await {
        match stage {
            crate::Stage::Epoch(out) => {
                records += out.accounting.totals().records_in;
                if let Err(e) = estimator.add(&out) {
                    result = Err(e);
                    break;
                }
                if max_records.is_some_and(|max| records >= max) {
                    let _ = stop_tx.send(true);
                }
            }
            // Nothing is written, so nothing to finish.
            crate::Stage::Revoked { done, .. } => {
                let _ = done.send(());
            }
            crate::Stage::Assigned { .. } => {}
        }
    }
    drop(epochs);
    front.tasks.join().await?;
    result?;
    estimator.finish(prices, started.elapsed().as_secs_f64())
}

/// Columns of a batch a user chose or filtered: all but `_RecordId`, which every row carries.
fn data_columns(batch: &arrow_array::RecordBatch) -> usize {
    let id = batch.schema().index_of(defender_core::schema::COL_RECORD_ID).is_ok();
    batch.num_columns() - usize::from(id)
}
