//! Records of tables we have no schema for: archived whole, as raw JSON, under a table name taken
//! from their category, and counted. Never dropped.
//!
//! The name of an unknown table ([`UnknownTableNames::name`]) never equals a known table's, so an
//! unknown table never shares an archive file, a Parquet schema, a Sentinel stream or a row of
//! the accounting with a known one:
//!
//! | category | archive table name |
//! |---|---|
//! | `AdvancedHunting-<X>`, `X` a plain name (a letter, then letters, digits, `_`, `-`; at most [`MAX_PLAIN_NAME`] characters), not a known table or [`UNKNOWN_TABLE`] in any casing | `X` |
//! | anything else: a bare name (`DeviceInfo`), a case variant of a known table (`AdvancedHunting-deviceinfo`), odd characters, a very long name, an empty one | `_Other-<first 40 safe characters>-<16 hex digits of xxh3-64 of the whole category>` |
//! | a new category after [`UnknownTableNames::limit`] distinct ones were seen by the process | [`OVERFLOW_TABLE`] |
//!
//! Every name is at most 64 ASCII characters of `[A-Za-z0-9_-]`: safe as a path segment on local
//! disks (255), Azure Blob (1,024 per name) and ADLS Gen2. The original category is kept in each
//! row's `_Category` column.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use arrow_array::{
    RecordBatch,
    builder::{StringBuilder, TimestampNanosecondBuilder},
};

use super::table::Envelope;
use crate::{
    deadletter::UNKNOWN_TABLE,
    schema::{CATEGORY_PREFIX, Catalog, unknown_table_schema},
};

/// Longest category name (after `AdvancedHunting-`) kept as it is.
pub const MAX_PLAIN_NAME: usize = 64;
/// Where records of unknown tables go once [`UnknownTableNames::limit`] distinct names are taken.
pub const OVERFLOW_TABLE: &str = "_OverflowUnknownTables";
/// Distinct unknown tables a process tracks by default (`[pipeline] max_unknown_tables`).
pub const DEFAULT_MAX_UNKNOWN_TABLES: usize = 100;

/// The names unknown categories are archived under, shared by every decoder of a process and
/// bounded: see the module documentation.
#[derive(Debug)]
pub struct UnknownTableNames {
    limit: usize,
    /// Known table names, lower-cased, and [`UNKNOWN_TABLE`].
    reserved: std::collections::HashSet<String>,
    names: Mutex<HashMap<Box<str>, Arc<str>>>,
}

impl UnknownTableNames {
    /// At most `limit` distinct unknown tables; later ones go to [`OVERFLOW_TABLE`].
    pub fn new(catalog: &Catalog, limit: usize) -> Self {
        let mut reserved: std::collections::HashSet<String> =
            catalog.tables().iter().map(|t| t.table.to_ascii_lowercase()).collect();
        reserved.insert(UNKNOWN_TABLE.to_ascii_lowercase());
        Self { limit, reserved, names: Mutex::new(HashMap::new()) }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Distinct unknown tables named so far (at most [`Self::limit`]).
    pub fn len(&self) -> usize {
        self.names.lock().expect("unknown names lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The archive table name of `category` (a category that is not a known table's).
    pub fn name(&self, category: &str) -> Arc<str> {
        let mut names = self.names.lock().expect("unknown names lock");
        if let Some(n) = names.get(category) {
            return n.clone();
        }
        if names.len() >= self.limit {
            return OVERFLOW_TABLE.into();
        }
        let name: Arc<str> = table_name(category, &self.reserved).into();
        names.insert(category.into(), name.clone());
        name
    }
}

/// See the module documentation. `reserved`: lower-cased names an unknown table may not take.
fn table_name(category: &str, reserved: &std::collections::HashSet<String>) -> String {
    if let Some(name) = category.strip_prefix(CATEGORY_PREFIX) {
        let plain = name.len() <= MAX_PLAIN_NAME
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if plain && !reserved.contains(&name.to_ascii_lowercase()) {
            return name.to_string();
        }
    }
    let safe: String = category
        .chars()
        .filter_map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => Some(c),
            ' ' | '.' | '/' | '\\' | ':' => Some('_'),
            _ => None,
        })
        .take(40)
        .collect();
    format!("_Other-{safe}-{:016x}", xxhash_rust::xxh3::xxh3_64(category.as_bytes()))
}

#[derive(Default)]
struct Builders {
    timestamp: TimestampNanosecondBuilder,
    category: StringBuilder,
    env_time: TimestampNanosecondBuilder,
    env_tenant: StringBuilder,
    raw: StringBuilder,
    record_id: StringBuilder,
}

/// The rows of unknown tables since the last flush, by archive table name.
#[derive(Default)]
pub(crate) struct UnknownTables {
    tables: BTreeMap<Arc<str>, Builders>,
}

impl UnknownTables {
    pub(crate) fn append(
        &mut self,
        name: &Arc<str>,
        category: &str,
        time: i64,
        env: Envelope<'_>,
        raw: &str,
        record_id: &str,
    ) {
        let b = self.tables.entry(name.clone()).or_default();
        b.timestamp.append_value(time);
        b.category.append_value(category);
        b.env_time.append_option(env.time);
        b.env_tenant.append_option(env.tenant);
        b.raw.append_value(raw);
        b.record_id.append_value(record_id);
    }

    pub(crate) fn finish(&mut self) -> Vec<(Arc<str>, RecordBatch)> {
        std::mem::take(&mut self.tables)
            .into_iter()
            .map(|(name, mut b)| {
                let batch = RecordBatch::try_new(
                    unknown_table_schema(),
                    vec![
                        Arc::new(b.timestamp.finish().with_timezone("UTC")),
                        Arc::new(b.category.finish()),
                        Arc::new(b.env_time.finish().with_timezone("UTC")),
                        Arc::new(b.env_tenant.finish()),
                        Arc::new(b.raw.finish()),
                        Arc::new(b.record_id.finish()),
                    ],
                )
                .expect("every builder holds one value per row");
                (name, batch)
            })
            .collect()
    }
}
