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

mod files;
pub(crate) mod layout;
pub mod replay;

pub use files::ParquetSizer;
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

struct Pending {
    durable: Durable,
    pieces: u32,
}

/// The archive sink. Fed table batches and dead letters; reports what became durable.
pub struct ArchiveSink {
    location: Location,
    config: ArchiveConfig,
    parquet: HashMap<FileKey, ParquetFile>,
    dead: HashMap<(Arc<str>, Arc<str>, u32), DeadLetterFile>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    stored: Vec<Stored>,
    /// Partitions of a committing source, by source key (see [`replay`]).
    tracked: HashMap<Arc<str>, Tracked>,
    /// Markers of partitions given back, until their last commit is known (see [`Self::release`]).
    leftover: HashMap<u32, Vec<(i64, Path)>>,
    /// Rows skipped because an earlier run had stored them.
    replayed_rows: u64,
}

/// A partition whose files get progress markers.
struct Tracked {
    partition: u32,
    /// (table, hour) → rows of epochs ending at or before this offset are already stored.
    skip: HashMap<(Arc<str>, i64), i64>,
    /// Markers put, by last offset: deleted once the commit passes them.
    markers: Vec<(i64, Path)>,
}

impl std::fmt::Debug for ArchiveSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveSink").field("location", &self.location.display).finish()
    }
}

impl ArchiveSink {
    pub fn new(location: Location, config: ArchiveConfig) -> Self {
        Self {
            location,
            config,
            parquet: HashMap::new(),
            dead: HashMap::new(),
            pending: HashMap::new(),
            next_id: 0,
            stored: Vec::new(),
            tracked: HashMap::new(),
            leftover: HashMap::new(),
            replayed_rows: 0,
        }
    }

    /// From now on, files of `source` (partition `partition` of a committing source) get
    /// progress markers, and rows `recovery` says are stored already are skipped.
    pub fn track(&mut self, source: &str, partition: u32, recovery: Recovery) {
        let tracked = Tracked { partition, skip: recovery.skip, markers: Vec::new() };
        // Whatever an earlier assignment left is this recovery's to judge now.
        self.leftover.remove(&partition);
        self.tracked.insert(source_key(source), tracked);
    }

    /// Stops tracking `partition` (revoked). Its markers wait for its last commit
    /// ([`Self::release`]); those the commit does not pass stay for its next reader's recovery.
    pub fn untrack(&mut self, partition: u32) {
        let keys: Vec<Arc<str>> =
            self.tracked.iter().filter(|(_, t)| t.partition == partition).map(|(k, _)| k.clone()).collect();
        for k in keys {
            if let Some(t) = self.tracked.remove(&k) {
                self.leftover.entry(partition).or_default().extend(t.markers);
            }
        }
    }

    /// Deletes the markers the commits passed: `committed` (partition → last committed offset)
    /// for partitions read here, `revoked` (the last commit of partitions given back, after
    /// which nothing of theirs is kept here).
    pub async fn release(
        &mut self,
        committed: &std::collections::BTreeMap<u32, i64>,
        revoked: &std::collections::BTreeMap<u32, i64>,
    ) -> Result<(), ArchiveError> {
        let mut done = Vec::new();
        for t in self.tracked.values_mut() {
            let Some(&c) = committed.get(&t.partition) else { continue };
            t.markers.retain(|(last, path)| {
                if *last <= c {
                    done.push(path.clone());
                }
                *last > c
            });
        }
        for (partition, &c) in revoked {
            if let Some(markers) = self.leftover.remove(partition) {
                done.extend(markers.into_iter().filter(|(last, _)| *last <= c).map(|(_, p)| p));
            }
        }
        for path in done {
            match self.location.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(ArchiveError::Put { path: path.to_string(), source }),
            }
        }
        Ok(())
    }

    /// True when an earlier run recorded that Sentinel accepted the rows of `table` of the epoch
    /// of `source` ending at `last` (see [`replay`]): they are not sent again.
    pub fn sentinel_sent_before(&self, source: &str, table: &Arc<str>, last: i64) -> bool {
        self.stored_before(&source_key(source), table, replay::SENT, last)
    }

    /// True when an earlier run stored (or, for [`replay::SENT`], sent) the rows of `table` and
    /// `hour` of the epoch of `source` (a source key) ending at `last` (see [`replay`]).
    fn stored_before(&self, source: &Arc<str>, table: &Arc<str>, hour: i64, last: i64) -> bool {
        self.tracked.get(source).and_then(|t| t.skip.get(&(table.clone(), hour))).is_some_and(|&stored| last <= stored)
    }

    /// Records, for a tracked partition, that Sentinel accepted every row of `table` of the
    /// epoch `first..=last` of `source` (a marker put now, deleted once the commit passes it).
    pub async fn sentinel_sent(
        &mut self,
        source: &str,
        table: &Arc<str>,
        first: i64,
        last: i64,
    ) -> Result<(), ArchiveError> {
        let key = source_key(source);
        self.put_marker(&key, &Marker { table: table.clone(), hour: replay::SENT, first, last }).await
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
                let stored = self.stored_before(&source, &batch.table, *hour, batch.last_offset);
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
        for (hour, _) in &groups {
            let key = FileKey { table: batch.table.clone(), hour: *hour, source: source.clone() };
            if self.parquet.get(&key).is_none_or(|f| f.schema != schema) {
                opened.push((key, ParquetFile::new(&batch.table, schema.clone(), &self.config)?));
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

    /// Adds the dead letters of one epoch (any tables, one partition).
    pub async fn write_dead_letters(
        &mut self,
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
            if self.stored_before(&source_name, &table, replay::DEAD_LETTERS, epoch) {
                // An earlier run stored these before its crash (see `replay`).
                done.push(durable);
                continue;
            }
            let id = self.register(durable, 1);
            let key = (table.clone(), source_name.clone(), partition);
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
        self.put_marker(&key.source, &marker).await?;
        let path = marker.file(&self.location.prefix, &key.source);
        self.put(&path, bytes, &key.table, rows, false).await?;
        Ok(self.pieces_done(pieces))
    }

    /// For a tracked partition, puts the marker of a file about to be stored. The marker first:
    /// a crash between the two puts leaves a marker without its file, which recovery deletes;
    /// never a file without its marker.
    async fn put_marker(&mut self, source: &Arc<str>, marker: &Marker) -> Result<(), ArchiveError> {
        let Some(t) = self.tracked.get_mut(source) else { return Ok(()) };
        let path = marker.path(&self.location.prefix, source);
        self.location
            .store
            .put(&path, PutPayload::new())
            .await
            .map_err(|source| ArchiveError::Put { path: path.to_string(), source })?;
        t.markers.push((marker.last, path));
        Ok(())
    }

    async fn roll_dead(&mut self, key: &(Arc<str>, Arc<str>, u32)) -> Result<Vec<Durable>, ArchiveError> {
        let Some(file) = self.dead.remove(key) else { return Ok(Vec::new()) };
        let (bytes, first, last, rows, pieces) = file.finish().map_err(ArchiveError::DeadLetter)?;
        let marker = Marker { table: key.0.clone(), hour: replay::DEAD_LETTERS, first, last };
        self.put_marker(&key.1, &marker).await?;
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
