//! The replay markers of the partitions this process reads (see [`super::replay`]): what an
//! earlier run stored or sent beyond the commit, and the markers this run puts. Shared (cheap
//! clones of one state) by the archive, which puts a marker before each file, the Sentinel
//! path, which puts one after each accepted batch, and the pipeline, which tracks partitions
//! as they are assigned and releases markers as commits pass them.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use object_store::{ObjectStoreExt, PutPayload, path::Path};

use super::{
    ArchiveError,
    layout::source_key,
    replay::{self, Marker, Recovery},
};
use crate::store::Location;

#[derive(Clone)]
pub struct Markers {
    location: Location,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Markers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Markers").field("location", &self.location.display).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Partitions of a committing source, by source key.
    tracked: HashMap<Arc<str>, Tracked>,
    /// Markers of partitions given back, until their last commit is known (see
    /// [`Markers::release`]).
    leftover: HashMap<u32, Vec<(i64, Path)>>,
}

/// A partition whose files get progress markers.
struct Tracked {
    partition: u32,
    /// (table, hour) → rows of epochs ending at or before this offset are already stored.
    skip: HashMap<(Arc<str>, i64), i64>,
    /// Markers put, by last offset: deleted once the commit passes them.
    markers: Vec<(i64, Path)>,
}

impl Markers {
    pub fn new(location: Location) -> Self {
        Self { location, state: Arc::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("markers poisoned")
    }

    /// From now on, files of `source` (partition `partition` of a committing source) get
    /// progress markers, and rows `recovery` says are stored already are skipped.
    pub fn track(&self, source: &str, partition: u32, recovery: Recovery) {
        let tracked = Tracked { partition, skip: recovery.skip, markers: Vec::new() };
        let mut state = self.state();
        // Whatever an earlier assignment left is this recovery's to judge now.
        state.leftover.remove(&partition);
        state.tracked.insert(source_key(source), tracked);
    }

    /// Stops tracking `partition` (revoked). Its markers wait for its last commit
    /// ([`Self::release`]); those the commit does not pass stay for its next reader's recovery.
    pub fn untrack(&self, partition: u32) {
        let mut state = self.state();
        let keys: Vec<Arc<str>> =
            state.tracked.iter().filter(|(_, t)| t.partition == partition).map(|(k, _)| k.clone()).collect();
        for k in keys {
            if let Some(t) = state.tracked.remove(&k) {
                state.leftover.entry(partition).or_default().extend(t.markers);
            }
        }
    }

    /// Deletes the markers the commits passed: `committed` (partition → last committed offset)
    /// for partitions read here, `revoked` (the last commit of partitions given back, after
    /// which nothing of theirs is kept here).
    pub async fn release(
        &self,
        committed: &BTreeMap<u32, i64>,
        revoked: &BTreeMap<u32, i64>,
    ) -> Result<(), ArchiveError> {
        let mut done = Vec::new();
        {
            let mut state = self.state();
            for t in state.tracked.values_mut() {
                let Some(&c) = committed.get(&t.partition) else { continue };
                t.markers.retain(|(last, path)| {
                    if *last <= c {
                        done.push(path.clone());
                    }
                    *last > c
                });
            }
            for (partition, &c) in revoked {
                if let Some(markers) = state.leftover.remove(partition) {
                    done.extend(markers.into_iter().filter(|(last, _)| *last <= c).map(|(_, p)| p));
                }
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

    /// Records, for a tracked partition, that Sentinel accepted every row of `table` of the
    /// epoch `first..=last` of `source` (a marker put now, deleted once the commit passes it).
    /// Batches of one partition and table must be recorded in offset order.
    pub async fn sentinel_sent(
        &self,
        source: &str,
        table: &Arc<str>,
        first: i64,
        last: i64,
    ) -> Result<(), ArchiveError> {
        let key = source_key(source);
        self.put(&key, &Marker { table: table.clone(), hour: replay::SENT, first, last }).await
    }

    /// True when an earlier run stored (or, for [`replay::SENT`], sent) the rows of `table` and
    /// `hour` of the epoch of `source` (a source key) ending at `last` (see [`replay`]).
    pub(crate) fn stored_before(&self, source: &Arc<str>, table: &Arc<str>, hour: i64, last: i64) -> bool {
        self.state()
            .tracked
            .get(source)
            .and_then(|t| t.skip.get(&(table.clone(), hour)))
            .is_some_and(|&stored| last <= stored)
    }

    /// For a tracked partition, puts the marker of a file about to be stored (or of a batch
    /// Sentinel accepted). The marker first: a crash between the two puts leaves a marker
    /// without its file, which recovery deletes; never a file without its marker.
    pub(crate) async fn put(&self, source: &Arc<str>, marker: &Marker) -> Result<(), ArchiveError> {
        let Some(partition) = self.state().tracked.get(source).map(|t| t.partition) else { return Ok(()) };
        let path = marker.path(&self.location.prefix, source);
        self.location
            .store
            .put(&path, PutPayload::new())
            .await
            .map_err(|source| ArchiveError::Put { path: path.to_string(), source })?;
        let mut state = self.state();
        match state.tracked.get_mut(source) {
            Some(t) => t.markers.push((marker.last, path)),
            // Given back while the put was on its way: released with the partition's last commit.
            None => state.leftover.entry(partition).or_default().push((marker.last, path)),
        }
        Ok(())
    }
}
