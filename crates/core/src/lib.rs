//! defender-core: everything about a Defender record that needs no I/O.
//!
//! - [`schema`]: the table schemas (embedded from `table-schemas/`) and their Arrow shape;
//! - [`decode`]: the validating decoder, message bytes → one Arrow `RecordBatch` per table;
//! - [`policy`]: per-table filter pipelines (a KQL subset), checked against the schema and
//!   evaluated vectorised on Arrow batches;
//! - [`accounting`]: per-table counters (records in = written + filtered + dead-lettered);
//! - [`batch`]: what flows between stages, with the source positions it covers;
//! - [`deadletter`]: structurally broken records, with reason and source position;
//! - [`ack`]: the per-partition tracker that decides which position may be committed.
//!
//! No async runtime, no network, no filesystem: the crate is pure CPU and fully unit-tested.

pub mod accounting;
pub mod ack;
pub mod batch;
pub mod billing;
pub mod dcr;
pub mod deadletter;
pub mod decode;
pub mod health;
pub mod policy;
pub mod schema;

pub use accounting::{Accounting, TableStats};
pub use batch::{FlushRule, Position, TableBatch};
pub use deadletter::{DeadLetter, DeadLetterReason};
pub use decode::{Decoder, DecoderOutput};
pub use schema::{Catalog, ColumnType, TableSchema};
