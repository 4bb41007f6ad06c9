//! Replays without duplicate rows.
//!
//! A committing source (Kafka) reads again, after a crash or a lost partition, everything after
//! its last commit; some of it may already be in files stored before the crash (a file is
//! durable before the commit that covers it, by up to a commit interval). So that those rows
//! are not archived twice:
//!
//! 1. before a file of a *tracked* partition is stored, a marker
//!    `<prefix>/_progress/<source key>/<table>.<hour>.<first>.<last>` is put (empty); for a
//!    dead-letter file the hour is `dl` (`rejected` for rows a destination refused, in files
//!    `<source>-<first>-<last>.rejected.ndjson.gz`). After Sentinel accepted every row of an
//!    epoch's batch of a table, a marker with the hour `sent` records it (it has no file: the
//!    marker is the record), so a replay does not send those rows again: duplicates in Sentinel
//!    after a crash are bounded by the epochs in flight, not by the commit lag;
//! 2. when the partition is assigned again, [`recover`] lists its markers: a marker whose file
//!    exists says rows of that (table, hour) up to offset `last` are archived. The decoder cuts
//!    its epochs at those offsets (so no epoch straddles one) and the archive skips rows of that
//!    (table, hour) in epochs ending at or before it. A marker without its file (the crash came
//!    between the two puts) is deleted;
//! 3. markers at or below the committed offset are deleted, during recovery, as commits
//!    advance, and after the last commit of a partition given back (a rebalance, a clean
//!    stop) ([`super::ArchiveSink::release`]).
//!
//! Files are named by their offsets, so a file rewritten with the same range replaces itself.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, path::Path};

use super::{ArchiveError, layout};
use crate::store::Location;

/// What is already archived of one partition, beyond its commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// (table, hour since the epoch) → last offset whose rows are stored.
    pub skip: HashMap<(Arc<str>, i64), i64>,
    /// Offsets the decoder must end an epoch at.
    pub cuts: BTreeSet<i64>,
}

/// The `hour` of a marker (and of a skip entry) that stands for a dead-letter file.
pub(crate) const DEAD_LETTERS: i64 = i64::MIN;
/// The `hour` of a marker (and of a skip entry) that records rows Sentinel accepted.
pub(crate) const SENT: i64 = i64::MIN + 1;
/// The `hour` of a marker that stands for a file of rows a destination refused (see
/// [`super::ArchiveSink::write_rejected`]).
pub(crate) const REJECTED: i64 = i64::MIN + 2;

/// One stored (or about to be stored) file of a tracked partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub table: Arc<str>,
    pub hour: i64,
    pub first: i64,
    pub last: i64,
}

impl Marker {
    fn name(&self) -> String {
        let hour = match self.hour {
            DEAD_LETTERS => "dl".to_string(),
            SENT => "sent".to_string(),
            REJECTED => "rejected".to_string(),
            h => h.to_string(),
        };
        format!("{}.{hour}.{:020}.{:020}", self.table, self.first, self.last)
    }

    fn parse(name: &str) -> Option<Self> {
        let mut it = name.rsplitn(4, '.');
        let last = it.next()?.parse().ok()?;
        let first = it.next()?.parse().ok()?;
        let hour = match it.next()? {
            "dl" => DEAD_LETTERS,
            "sent" => SENT,
            "rejected" => REJECTED,
            h => h.parse().ok()?,
        };
        let table = it.next()?.into();
        Some(Self { table, hour, first, last })
    }

    /// The Parquet (or dead-letter) file the marker stands for.
    pub fn file(&self, prefix: &Path, source_key: &str) -> Path {
        if self.hour == DEAD_LETTERS || self.hour == REJECTED {
            let kind = if self.hour == REJECTED { ".rejected" } else { "" };
            let name = format!("{source_key}-{:020}-{:020}{kind}.ndjson.gz", self.first, self.last);
            return layout::dead_letter_path(prefix, &self.table, &name);
        }
        let name = format!("{source_key}-{:020}-{:020}.parquet", self.first, self.last);
        layout::parquet_path(prefix, &self.table, self.hour, &name)
    }

    pub fn path(&self, prefix: &Path, source_key: &str) -> Path {
        dir(prefix, source_key).join(self.name())
    }
}

fn dir(prefix: &Path, source_key: &str) -> Path {
    prefix.clone().join("_progress").join(source_key)
}

/// Reads the markers of `source` (a partition's stable name) against its committed offset.
pub async fn recover(location: &Location, source: &str, committed: Option<i64>) -> Result<Recovery, ArchiveError> {
    let key = layout::source_key(source);
    let prefix = &location.prefix;
    let err = |path: &Path| {
        let path = path.to_string();
        move |source| ArchiveError::Progress { path, source }
    };
    let listing = dir(prefix, &key);
    let metas: Vec<_> = location.store.list(Some(&listing)).try_collect().await.map_err(err(&listing))?;
    let mut recovery = Recovery::default();
    for meta in metas {
        let Some(marker) = meta.location.filename().and_then(Marker::parse) else { continue };
        let stale = committed.is_some_and(|c| marker.last <= c);
        let stored = !stale
            && (marker.hour == SENT || {
                let file = marker.file(prefix, &key);
                match location.store.head(&file).await {
                    Ok(_) => true,
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(e) => return Err(err(&file)(e)),
                }
            });
        if stored {
            let e = recovery.skip.entry((marker.table.clone(), marker.hour)).or_insert(marker.last);
            *e = (*e).max(marker.last);
            recovery.cuts.insert(marker.last);
        } else {
            match location.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(err(&meta.location)(e)),
            }
        }
    }
    let sent = recovery.skip.keys().filter(|(_, hour)| *hour == SENT).count();
    if recovery.skip.len() > sent {
        tracing::info!(%source, ?committed, files = recovery.cuts.len(), "rows past the commit already archived: they will not be written twice");
    }
    if sent > 0 {
        tracing::info!(%source, ?committed, tables = sent, "rows past the commit sentinel accepted before: they will not be sent again");
    }
    Ok(recovery)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_round_trip() {
        let m = Marker { table: "DeviceInfo".into(), hour: 498_648, first: 7, last: 1_234 };
        assert_eq!(Marker::parse(&m.name()), Some(m.clone()));
        assert_eq!(
            m.file(&Path::from("root"), "hub_0-abcd").as_ref(),
            "root/table=DeviceInfo/date=2026-11-20/hour=00/hub_0-abcd-00000000000000000007-00000000000000001234.parquet"
        );
        assert_eq!(Marker::parse("junk"), None);
        let d = Marker { table: "_Other-x-0123456789abcdef".into(), hour: DEAD_LETTERS, first: 1, last: 2 };
        assert_eq!(Marker::parse(&d.name()), Some(d.clone()));
        let sent = Marker { table: "DeviceInfo".into(), hour: SENT, first: 3, last: 4 };
        assert_eq!(Marker::parse(&sent.name()), Some(sent.clone()));
        assert!(sent.name().starts_with("DeviceInfo.sent."));
        assert_eq!(
            d.file(&Path::from("root"), "k").as_ref(),
            "root/_deadletter/table=_Other-x-0123456789abcdef/k-00000000000000000001-00000000000000000002.ndjson.gz"
        );
    }
}
