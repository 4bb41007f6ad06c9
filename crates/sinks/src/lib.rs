//! defender-sinks: where decoded records go.
//!
//! - [`archive`]: the Parquet archive (hive layout, zstd, rolled by size and age, visible only
//!   when complete, file names derived from source positions) and the dead-letter area, on any
//!   `object_store` (a local directory, Azure Blob / ADLS Gen2);
//! - [`store`]: turning an archive URL into an object store.
//!
//! Every sink acknowledges a batch only after the data it holds is durable.

pub mod archive;
pub mod sentinel;
pub mod store;

pub use archive::{ArchiveConfig, ArchiveSink, Durable};
