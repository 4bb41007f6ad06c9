//! The Parquet archive sink, with the dead-letter area beside it.
//!
//! Layout (DESIGN §3): `<root>/table=<Table>/date=YYYY-MM-DD/hour=HH/<name>.parquet`, partitioned
//! by the rows' event `Timestamp`; dead letters under
//! `<root>/_deadletter/table=<Table>/<name>.ndjson.gz`.
//!
//! Invariants:
//! - one open file per (table, hour, source partition); it gathers the batches of consecutive
//!   epochs and is rolled when its encoded size reaches `roll_bytes`, when it is older than
//!   `roll_age`, when the buffered total passes `max_buffered_bytes` (the largest files first),
//!   or at [`ArchiveSink::close`];
//! - a file is encoded in memory and stored with one put: readers see it whole or not at all
//!   (a local put writes a temporary file and renames it);
//! - a file's name is `<source>-<first offset>-<last offset>` of the epochs it holds, so a
//!   replay of the same input rewrites the same names instead of adding duplicates;
//! - a batch (or an epoch's dead letters of one table) is reported [`Durable`] only when every
//!   file holding a piece of it is stored.

mod encoding;
mod files;
pub(crate) mod layout;
mod markers;
pub mod replay;

pub use files::ParquetSizer;
pub use markers::Markers;
pub use replay::{Recovery, recover};

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use arrow_array::RecordBatch;
use defender_core::{DeadLetter, TableBatch};
use object_store::{ObjectStoreExt, PutPayload, path::Path};

use self::{
    files::{DeadLetterFile, ParquetFile},
    layout::{FileKey, hour_groups, source_key},
    replay::Marker,
};
use crate::store::Location;

/// Settings of the archive sink.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Roll a file when its encoded size reaches this many bytes.
    pub roll_bytes: usize,
    /// Roll a file this long after it was opened.
    pub roll_age: Duration,
    /// zstd level of the Parquet column chunks.
    pub zstd_level: i32,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Bound on the bytes held by open files; past it the largest files are rolled.
    pub max_buffered_bytes: usize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            roll_bytes: 64 << 20,
            roll_age: Duration::from_secs(300),
            zstd_level: 3,
            row_group_rows: 128 * 1024,
            max_buffered_bytes: 256 << 20,
        }
    }
}

/// Errors of the archive sink. Transient store errors are retried inside `object_store`
/// (exponential backoff); what reaches here is final for this attempt.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot store {path}: {source}")]
    Put {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// The batch cannot be encoded (nothing of it was taken: its rows can be dead-lettered).
    #[error("cannot encode parquet for table {table}: {source}")]
    Encode {
        table: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// An open file's writer failed part-way (never caused by a batch's content, whose schema
    /// is checked first): the file cannot be trusted, the run stops without committing it.
    #[error("parquet writer of table {table} failed: {source}")]
    Writer {
        table: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("cannot read the progress markers at {path}: {source}")]
    Progress {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot write dead letters: {0}")]
    DeadLetter(#[source] std::io::Error),
}

/// A batch, or the dead letters of one table of one epoch, is now durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable {
    pub table: Arc<str>,
    pub partition: u32,
    /// The last offset of the epoch the rows came from (the ack tracker's key).
    pub epoch: i64,
    /// Rows (or dead letters) made durable.
    pub rows: u64,
    pub dead_letters: bool,
}

/// What a put stored, for accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub table: String,
    pub path: String,
    pub bytes: u64,
    pub rows: u64,
    pub dead_letters: bool,
}

/// A dead-letter file's key: (table, source key, partition, kind).
type DeadKey = (Arc<str>, Arc<str>, u32, i64);

struct Pending {
    durable: Durable,
    pieces: u32,
}

/// The archive sink. Fed table batches and dead letters; reports what became durable.
pub struct ArchiveSink {
    location: Location,
    config: ArchiveConfig,
    parquet: HashMap<FileKey, ParquetFile>,
    /// By (table, source key, partition, kind: [`replay::DEAD_LETTERS`] or [`replay::REJECTED`]).
    dead: HashMap<DeadKey, DeadLetterFile>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    stored: Vec<Stored>,
    /// The replay markers of the partitions read here (shared with the Sentinel path).
    markers: Markers,
    /// Rows skipped because an earlier run had stored them.
    replayed_rows: u64,
}

impl std::fmt::Debug for ArchiveSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveSink").field("location", &self.location.display).finish()
    }
}

impl ArchiveSink {
    pub fn new(location: Location, config: ArchiveConfig) -> Self {
        Self {
            markers: Markers::new(location.clone()),
            location,
            config,
            parquet: HashMap::new(),
            dead: HashMap::new(),
            pending: HashMap::new(),
            next_id: 0,
            stored: Vec::new(),
            replayed_rows: 0,
        }
    }

    /// The replay markers: track partitions as they are assigned, release markers as commits
    /// pass them, record what Sentinel accepted (see [`Markers`]).
    pub fn markers(&self) -> &Markers {
        &self.markers
    }

    /// How long a file stays open at most.
    pub fn roll_age(&self) -> Duration {
        self.config.roll_age
    }

    /// Rows not written again because an earlier run had stored them (see [`replay`]).
    pub fn replayed_rows(&self) -> u64 {
        self.replayed_rows
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    fn register(&mut self, durable: Durable, pieces: u32) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, Pending { durable, pieces });
        id
    }

    /// Adds a table batch. Returns what became durable (files rolled on the way).
    pub async fn write(&mut self, batch: &TableBatch) -> Result<Vec<Durable>, ArchiveError> {
        let groups = hour_groups(&batch.batch);
        let durable = Durable {
            table: batch.table.clone(),
            partition: batch.partition,
            epoch: batch.last_offset,
            rows: batch.rows() as u64,
            dead_letters: false,
        };
        let source = source_key(&batch.source);
        let mut replayed = 0;
        let groups: Vec<_> = groups
            .into_iter()
            .filter(|(hour, rows)| {
                let stored = self.markers.stored_before(&source, &batch.table, *hour, batch.last_offset);
                if stored {
                    replayed += rows.num_rows() as u64;
                }
                !stored
            })
            .collect();
        if groups.is_empty() {
            self.replayed_rows += replayed;
            return Ok(vec![durable]);
        }
        // Every file this batch needs is opened before anything changes, so an encoding error
        // leaves the sink as it was. An open file of another schema (the same table under an
        // earlier `archive_filter`, say) is rolled first: a file holds one schema.
        let schema = batch.batch.schema();
        let mut opened = Vec::new();
        for (hour, rows) in &groups {
            let key = FileKey { table: batch.table.clone(), hour: *hour, source: source.clone() };
            if self.parquet.get(&key).is_none_or(|f| f.schema != schema) {
                opened.push((key, ParquetFile::new(&batch.table, rows, &self.config)?));
            }
        }
        self.replayed_rows += replayed;
        let mut done = Vec::new();
        for (key, file) in opened {
            done.extend(self.roll_parquet(&key).await?);
            self.parquet.insert(key, file);
        }
        let id = self.register(durable, groups.len() as u32);
        let mut full = Vec::new();
        for (hour, rows) in groups {
            let key = FileKey { table: batch.table.clone(), hour, source: source.clone() };
            let file = self.parquet.get_mut(&key).expect("opened above");
            file.append(id, batch.first_offset, batch.last_offset, &rows)?;
            if file.size() >= self.config.roll_bytes {
                full.push(key);
            }
        }
        for key in full {
            done.extend(self.roll_parquet(&key).await?);
        }
        done.extend(self.enforce_budget().await?);
        Ok(done)
    }

    /// Adds the dead letters the decoder made of one epoch (any tables, one partition).
    pub async fn write_dead_letters(
        &mut self,
        source: &Arc<str>,
        partition: u32,
        epoch: i64,
        letters: &[DeadLetter],
    ) -> Result<Vec<Durable>, ArchiveError> {
        self.write_letters(replay::DEAD_LETTERS, source, partition, epoch, letters).await
    }

    /// Adds the dead letters a destination made of one epoch's rows (Sentinel refused them, an
    /// encoder could not represent them). They get files and markers of their own: they are
    /// written after the epoch's decoder dead letters, possibly after those were stored, and a
    /// replay must not take the one for the other.
    pub async fn write_rejected(
        &mut self,
        source: &Arc<str>,
        partition: u32,
        epoch: i64,
        letters: &[DeadLetter],
    ) -> Result<Vec<Durable>, ArchiveError> {
        self.write_letters(replay::REJECTED, source, partition, epoch, letters).await
    }

    async fn write_letters(
        &mut self,
        kind: i64,
        source: &Arc<str>,
        partition: u32,
        epoch: i64,
        letters: &[DeadLetter],
    ) -> Result<Vec<Durable>, ArchiveError> {
        let mut by_table: Vec<(Arc<str>, Vec<&DeadLetter>)> = Vec::new();
        for l in letters {
            match by_table.iter_mut().find(|(t, _)| *t == l.table) {
                Some((_, v)) => v.push(l),
                None => by_table.push((l.table.clone(), vec![l])),
            }
        }
        let source_name = source_key(source);
        let mut done = Vec::new();
        for (table, letters) in by_table {
            let durable =
                Durable { table: table.clone(), partition, epoch, rows: letters.len() as u64, dead_letters: true };
            if self.markers.stored_before(&source_name, &table, kind, epoch) {
                // An earlier run stored these before its crash (see `replay`).
                done.push(durable);
                continue;
            }
            let id = self.register(durable, 1);
            let key = (table.clone(), source_name.clone(), partition, kind);
            let file = self.dead.entry(key.clone()).or_insert_with(DeadLetterFile::new);
            let first = letters.first().map_or(epoch, |l| l.position.offset);
            file.append(id, first, epoch, &letters).map_err(ArchiveError::DeadLetter)?;
            if file.size() >= self.config.roll_bytes {
                done.extend(self.roll_dead(&key).await?);
            }
        }
        Ok(done)
    }

    /// Rolls the files older than `roll_age`.
    pub async fn poll(&mut self, now: Instant) -> Result<Vec<Durable>, ArchiveError> {
        let age = self.config.roll_age;
        let old: Vec<FileKey> =
            self.parquet.iter().filter(|(_, f)| now.duration_since(f.opened) >= age).map(|(k, _)| k.clone()).collect();
        let mut done = Vec::new();
        for key in old {
            done.extend(self.roll_parquet(&key).await?);
        }
        let old: Vec<_> =
            self.dead.iter().filter(|(_, f)| now.duration_since(f.opened) >= age).map(|(k, _)| k.clone()).collect();
        for key in old {
            done.extend(self.roll_dead(&key).await?);
        }
        Ok(done)
    }

    /// Rolls every open file.
    pub async fn close(&mut self) -> Result<Vec<Durable>, ArchiveError> {
        self.poll(Instant::now() + self.config.roll_age).await
    }

    /// Every file stored so far (drained).
    pub fn take_stored(&mut self) -> Vec<Stored> {
        std::mem::take(&mut self.stored)
    }

    async fn enforce_budget(&mut self) -> Result<Vec<Durable>, ArchiveError> {
        let mut done = Vec::new();
        loop {
            let total: usize = self.parquet.values().map(ParquetFile::size).sum();
            if total <= self.config.max_buffered_bytes {
                return Ok(done);
            }
            let Some(key) = self.parquet.iter().max_by_key(|(_, f)| f.size()).map(|(k, _)| k.clone()) else {
                return Ok(done);
            };
            done.extend(self.roll_parquet(&key).await?);
        }
    }

    async fn roll_parquet(&mut self, key: &FileKey) -> Result<Vec<Durable>, ArchiveError> {
        let Some(file) = self.parquet.remove(key) else { return Ok(Vec::new()) };
        let (bytes, first, last, rows, pieces) = file.finish()?;
        let marker = Marker { table: key.table.clone(), hour: key.hour, first, last };
        self.markers.put(&key.source, &marker).await?;
        let path = marker.file(&self.location.prefix, &key.source);
        self.put(&path, bytes, &key.table, rows, false).await?;
        Ok(self.pieces_done(pieces))
    }

    async fn roll_dead(&mut self, key: &DeadKey) -> Result<Vec<Durable>, ArchiveError> {
        let Some(file) = self.dead.remove(key) else { return Ok(Vec::new()) };
        let (bytes, first, last, rows, pieces) = file.finish().map_err(ArchiveError::DeadLetter)?;
        let marker = Marker { table: key.0.clone(), hour: key.3, first, last };
        self.markers.put(&key.1, &marker).await?;
        let path = marker.file(&self.location.prefix, &key.1);
        self.put(&path, bytes, &key.0, rows, true).await?;
        Ok(self.pieces_done(pieces))
    }

    async fn put(
        &mut self,
        path: &Path,
        bytes: Vec<u8>,
        table: &str,
        rows: u64,
        dead: bool,
    ) -> Result<(), ArchiveError> {
        let size = bytes.len() as u64;
        self.location
            .store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(|source| ArchiveError::Put { path: path.to_string(), source })?;
        tracing::debug!(path = %path, bytes = size, rows, "archive file stored");
        self.stored.push(Stored {
            table: table.to_string(),
            path: path.to_string(),
            bytes: size,
            rows,
            dead_letters: dead,
        });
        Ok(())
    }

    fn pieces_done(&mut self, ids: Vec<u64>) -> Vec<Durable> {
        let mut done = Vec::new();
        for id in ids {
            if let Some(p) = self.pending.get_mut(&id) {
                p.pieces -= 1;
                if p.pieces == 0 {
                    done.push(self.pending.remove(&id).expect("present").durable);
                }
            }
        }
        done
    }
}

/// Rows of a batch that fall into one hour, with the hour (hours since the Unix epoch).
pub(crate) type HourGroup = (i64, RecordBatch);

#[cfg(test)]
mod tests;
