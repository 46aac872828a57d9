//! The Raft log and vote in RocksDB. Appends are written (without sync) before `append`
//! returns, so they are readable at once; a syncer thread then makes everything written so far
//! durable with one WAL fsync and acknowledges it. While one fsync runs, new appends keep being
//! written and are covered by the next: group commit without stalling the Raft core.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError, Vote};
use prometheus_client::metrics::histogram::Histogram;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{CF_LOG, CF_META, cf, decode, encode};
use crate::raft::{Entry, LogId, NodeId, StorageError, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log store (cheap to clone: clones share the database and the syncer).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    syncer: mpsc::Sender<Written>,
}

impl LogStore {
    /// A store on `db` whose syncer records how many entries each fsync covers.
    pub(super) fn new(db: Arc<DB>, entries_per_fsync: Histogram) -> Self {
        let (syncer, pending) = mpsc::channel();
        // Weak, so that dropping the stores closes the database.
        let sync_db = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_loop(&sync_db, &pending, &entries_per_fsync))
            .unwrap_or_else(|e| panic!("cannot start the log syncer thread: {e}"));
        Self { db, syncer }
    }

    /// The last index saved as committed: a restart applies the log up to it again. Unreadable
    /// counts as none, since openraft reads it too and reports the failure.
    pub(super) fn saved_committed_index(&self) -> Option<u64> {
        let committed = self.get_meta::<Option<LogId>>(COMMITTED).ok().flatten();
        committed.flatten().map(|log_id| log_id.index)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AnyError> {
        let Some(bytes) = self
            .db
            .get_cf(cf(&self.db, CF_META), key)
            .map_err(|e| AnyError::new(&e))?
        else {
            return Ok(None);
        };
        decode(&bytes).map(Some).map_err(|e| AnyError::new(&e))
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), AnyError> {
        let bytes = encode(value).map_err(|e| AnyError::new(&e))?;
        self.db
            .put_cf_opt(cf(&self.db, CF_META), key, bytes, &write_options(sync))
            .map_err(|e| AnyError::new(&e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, AnyError> {
        let mut last = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        match last.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| AnyError::new(&e))?;
                let entry: Entry = decode(&value).map_err(|e| AnyError::new(&e))?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

/// An append written but not yet durable: how many entries, and whom to tell.
struct Written {
    entries: usize,
    callback: LogFlushed<TypeConfig>,
}

/// Acknowledges appends in batches: everything queued is already written, so one fsync of
/// the WAL makes all of it durable. The database is held only during the fsync, and released
/// before acknowledging.
fn sync_loop(db: &Weak<DB>, pending: &mpsc::Receiver<Written>, entries_per_fsync: &Histogram) {
    while let Ok(first) = pending.recv() {
        let batch: Vec<_> = std::iter::once(first).chain(pending.try_iter()).collect();
        entries_per_fsync
            .observe(batch.iter().map(|written| written.entries).sum::<usize>() as f64);
        let result = match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(std::io::Error::other),
            None => Err(std::io::Error::other("the log store is closed")),
        };
        for Written { callback, .. } in batch {
            callback.log_io_completed(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
            );
        }
    }
}

fn write_options(sync: bool) -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(sync);
    options
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mode = IteratorMode::From(&index_key(start), Direction::Forward);
        let mut entries = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_LOG), mode) {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| {
                StorageIOError::read_logs(AnyError::error(format!("malformed log key {key:?}")))
            })?);
            if !range.contains(&index) {
                break;
            }
            entries.push(
                decode(&value)
                    .map_err(|e| StorageIOError::read_log_at_index(index, AnyError::new(&e)))?,
            );
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self
            .get_meta(LAST_PURGED)
            .map_err(StorageIOError::read_logs)?;
        let last_log_id = self
            .last_entry_id()
            .map_err(StorageIOError::read_logs)?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        Ok(self
            .put_meta(VOTE, vote, true)
            .map_err(StorageIOError::write_vote)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.get_meta(VOTE).map_err(StorageIOError::read_vote)?)
    }

    /// Kept so a restarted node applies what was committed before it stopped; it need not be
    /// synced, as a lost value is only recomputed.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        Ok(self
            .put_meta(COMMITTED, &committed, false)
            .map_err(StorageIOError::write)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<Option<LogId>>(COMMITTED)
            .map_err(StorageIOError::read)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = encode(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, AnyError::new(&e)))?;
            batch.put_cf(cf(&self.db, CF_LOG), index_key(entry.log_id.index), bytes);
        }
        let entries = batch.len();
        self.db
            .write_opt(batch, &write_options(false))
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let written = Written { entries, callback };
        self.syncer.send(written).map_err(|_| {
            StorageIOError::write_logs(AnyError::error("the log syncer thread is gone"))
        })?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_LOG),
            index_key(log_id.index),
            index_key(u64::MAX),
        );
        batch.delete_cf(cf(&self.db, CF_LOG), index_key(u64::MAX));
        self.db
            .write_opt(batch, &write_options(true))
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta(LAST_PURGED, &log_id, true)
            .map_err(StorageIOError::write_logs)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_LOG),
            index_key(0),
            index_key(log_id.index + 1),
        );
        self.db
            .write_opt(batch, &write_options(false))
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }
}
