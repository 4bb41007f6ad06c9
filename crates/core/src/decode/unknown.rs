//! Records of tables we have no schema for: archived whole, as raw JSON, under a table name taken
//! from their category, and counted. Never dropped.

use std::{collections::BTreeMap, sync::Arc};

use arrow_array::{
    RecordBatch,
    builder::{StringBuilder, TimestampNanosecondBuilder},
};

use super::table::Envelope;
use crate::schema::{CATEGORY_PREFIX, unknown_table_schema};

/// The archive table name of an unknown category: the category without `AdvancedHunting-`, with
/// every character other than a letter, digit, `_` or `-` replaced by `_`.
pub fn table_name(category: &str) -> String {
    let name = category.strip_prefix(CATEGORY_PREFIX).unwrap_or(category);
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if clean.is_empty() { "_empty".to_string() } else { clean }
}

#[derive(Default)]
struct Builders {
    timestamp: TimestampNanosecondBuilder,
    category: StringBuilder,
    env_time: TimestampNanosecondBuilder,
    env_tenant: StringBuilder,
    raw: StringBuilder,
}

#[derive(Default)]
pub(crate) struct UnknownTables {
    tables: BTreeMap<String, Builders>,
}

impl UnknownTables {
    pub(crate) fn append(&mut self, name: &str, category: &str, time: i64, env: Envelope<'_>, raw: &str) {
        if !self.tables.contains_key(name) {
            self.tables.insert(name.to_string(), Builders::default());
        }
        let b = self.tables.get_mut(name).expect("inserted above");
        b.timestamp.append_value(time);
        b.category.append_value(category);
        b.env_time.append_option(env.time);
        b.env_tenant.append_option(env.tenant);
        b.raw.append_value(raw);
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
                    ],
                )
                .expect("every builder holds one value per row");
                (name.into(), batch)
            })
            .collect()
    }
}
