//! The price table of estimate mode.
//!
//! **These are ILLUSTRATIVE list prices in USD, as of [`AS_OF`].** Azure prices are regional and
//! change; Microsoft's pricing pages render them dynamically and none of these figures was read
//! from Microsoft. Check them against the Azure pricing calculator for your region and override
//! them in config ([`Prices`] accepts any subset of its fields). GB means 10^9 bytes, as Log
//! Analytics bills.
//!
//! | Meter | Product | USD | Default of | Source |
//! |---|---|---|---|---|
//! | Analytics tier, pay-as-you-go, per GB | Sentinel (simplified pricing) | 5.22 | `analytics_per_gb` | see below |
//! | Analytics Logs, pay-as-you-go, per GB | Log Analytics only | 2.30 | — ([`LOG_ANALYTICS_ANALYTICS_PER_GB`]) | monitoringcost.com 2026 |
//! | Basic Logs, per GB | Log Analytics | 0.50 | `basic_per_gb` | monitoringcost.com 2026 |
//! | Data lake ingestion 0.05 + processing 0.10, per GB | Sentinel data lake (Auxiliary) | 0.15 | `auxiliary_per_gb` | charbelnemnom.com 2026-02 |
//! | Auxiliary Logs, per GB | Log Analytics only | 0.05 | — ([`LOG_ANALYTICS_AUXILIARY_PER_GB`]) | monitoringcost.com 2026 |
//! | Long-term retention, per GB-month | Log Analytics | 0.02 | — ([`LONG_TERM_RETENTION_PER_GB_MONTH`]) | monitoringcost.com 2026 |
//! | Blob storage Hot, per GB-month | Azure Storage | 0.018 | `archive_storage_per_gb_month` | illustrative |
//! | Blob storage Cool, per GB-month | Azure Storage | 0.01 | — ([`BLOB_COOL_PER_GB_MONTH`]) | illustrative |
//!
//! Why these defaults: the project ingests into a Sentinel workspace, so the analytics default is
//! the Sentinel analytics tier under simplified pricing (one meter that includes Log Analytics
//! ingestion), not the Log Analytics-only $2.30. $5.22/GB is a commonly quoted East US
//! pay-as-you-go figure, inside the $4–5.50 third-party range of `contracts.md` §e; workspaces on
//! classic pricing pay Log Analytics plus a separate Sentinel meter. The Basic default is the Log
//! Analytics Basic figure (no Sentinel Basic figure was found). The Auxiliary default is the
//! Sentinel data lake lake-only ingestion (ingestion plus processing), since Defender data
//! in Auxiliary tables is lake data. The archive default is Hot storage, the dearer of the two, for
//! the Parquet bytes actually produced. Not modelled: the free first 10 GB/day trial, the Defender
//! XDR free benefit, commitment tiers, query and retention charges.

use serde::{Deserialize, Serialize};

use super::Tier;

/// When the default prices were written down.
pub const AS_OF: &str = "2026-11";

/// Average days in a month (365.25 / 12 = 30.4375, rounded to 30.44).
pub const DAYS_PER_MONTH: f64 = 30.44;

/// Bytes in a billed GB.
pub const BYTES_PER_GB: f64 = 1e9;

/// Sentinel analytics tier, simplified pricing, pay-as-you-go, USD per GB (illustrative).
pub const SENTINEL_ANALYTICS_PER_GB: f64 = 5.22;
/// Log Analytics Analytics Logs alone (no Sentinel), pay-as-you-go, USD per GB (illustrative).
pub const LOG_ANALYTICS_ANALYTICS_PER_GB: f64 = 2.30;
/// Log Analytics Basic Logs, USD per GB (illustrative).
pub const LOG_ANALYTICS_BASIC_PER_GB: f64 = 0.50;
/// Log Analytics Auxiliary Logs alone, USD per GB (illustrative).
pub const LOG_ANALYTICS_AUXILIARY_PER_GB: f64 = 0.05;
/// Sentinel data lake ingestion ($0.05) plus data processing ($0.10), USD per GB (illustrative).
pub const SENTINEL_DATA_LAKE_PER_GB: f64 = 0.15;
/// Log Analytics long-term retention, USD per GB-month (illustrative).
pub const LONG_TERM_RETENTION_PER_GB_MONTH: f64 = 0.02;
/// Azure Blob storage, Hot tier, USD per GB-month (illustrative).
pub const BLOB_HOT_PER_GB_MONTH: f64 = 0.018;
/// Azure Blob storage, Cool tier, USD per GB-month (illustrative).
pub const BLOB_COOL_PER_GB_MONTH: f64 = 0.01;

/// The prices of an estimate; `Default` is the table of the module documentation. A config may
/// set any subset of the fields.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    pub as_of: String,
    pub currency: String,
    /// Analytics tier, per GB ingested.
    pub analytics_per_gb: f64,
    /// Basic plan, per GB ingested.
    pub basic_per_gb: f64,
    /// Auxiliary plan / data lake, per GB ingested.
    pub auxiliary_per_gb: f64,
    /// Storage of the Parquet archive, per GB-month.
    pub archive_storage_per_gb_month: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            as_of: AS_OF.to_string(),
            currency: "USD".to_string(),
            analytics_per_gb: SENTINEL_ANALYTICS_PER_GB,
            basic_per_gb: LOG_ANALYTICS_BASIC_PER_GB,
            auxiliary_per_gb: SENTINEL_DATA_LAKE_PER_GB,
            archive_storage_per_gb_month: BLOB_HOT_PER_GB_MONTH,
        }
    }
}

impl Prices {
    /// The ingestion price per GB of `tier`.
    pub fn per_gb(&self, tier: Tier) -> f64 {
        match tier {
            Tier::Analytics => self.analytics_per_gb,
            Tier::Basic => self.basic_per_gb,
            Tier::Auxiliary => self.auxiliary_per_gb,
        }
    }
}

/// Cost of a month of `gb_per_day` at `per_gb`: `gb_per_day × 30.44 × per_gb` (see
/// [`DAYS_PER_MONTH`]). For storage priced per GB-month, pass the GB added per day: the result is
/// what one month's worth of data costs to keep for a month.
pub fn monthly_cost(gb_per_day: f64, per_gb: f64) -> f64 {
    gb_per_day * DAYS_PER_MONTH * per_gb
}

/// GB per day implied by `billed_bytes` whose events span `event_time_span_seconds` of event time:
/// `billed_bytes / 10^9 × 86 400 / span`. Returns 0 when the span is not a positive finite number
/// (a sample from a single instant projects nothing).
pub fn projected_gb_per_day(billed_bytes: u64, event_time_span_seconds: f64) -> f64 {
    if !(event_time_span_seconds.is_finite() && event_time_span_seconds > 0.0) {
        return 0.0;
    }
    billed_bytes as f64 / BYTES_PER_GB * 86_400.0 / event_time_span_seconds
}
