//! The fence's RocksDB: one record per `(xid, branch id)`, keyed `xid NUL branch-id` (big
//! endian) so one XID's records are adjacent. The calling task writes its records (unsynced:
//! a memtable insert and a WAL append) and a syncer thread makes everything written so far
//! durable with one WAL fsync (group commit); a caller waits for the write alone
//! ([`Durability::Visible`]) or for the sync too ([`Durability::Synced`]). Every write is
//! synced moments later either way.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};
use tokio::sync::oneshot;

use super::FenceError;

/// What the fence knows of a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Registered through this sidecar: the try may have run.
    Tried = 1,
    /// Confirmed by the application.
    Confirmed = 2,
    /// Cancelled by the application.
    Cancelled = 3,
    /// Cancelled without a try: the application was not called.
    EmptyRollback = 4,
    /// A register through this sidecar for this XID failed without a clear outcome (kept
    /// under branch id 0): the coordinator may hold a branch whose try never ran.
    RegisterUncertain = 5,
    /// A register for the XID went through this sidecar (written while the coordinator
    /// registers the branch, kept under the XID's marker key).
    Registering = 6,
}

impl State {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => State::Tried,
            2 => State::Confirmed,
            3 => State::Cancelled,
            4 => State::EmptyRollback,
            5 => State::RegisterUncertain,
            6 => State::Registering,
            _ => return None,
        })
    }

    /// Whether phase two is over for the branch.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Confirmed | State::Cancelled | State::EmptyRollback
        )
    }

    /// Whether the branch was rolled back here.
    pub fn is_rolled_back(self) -> bool {
        matches!(self, State::Cancelled | State::EmptyRollback)
    }
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where the branch stands.
    pub state: State,
    /// Its resource.
    pub resource_id: String,
    /// Milliseconds since the Unix epoch of the last change.
    pub updated_at_ms: u64,
}

impl Record {
    /// A record in `state` as of now.
    pub fn now(state: State, resource_id: &str) -> Self {
        Self {
            state,
            resource_id: resource_id.to_owned(),
            updated_at_ms: now_ms(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(9 + self.resource_id.len());
        bytes.push(self.state as u8);
        bytes.extend_from_slice(&self.updated_at_ms.to_be_bytes());
        bytes.extend_from_slice(self.resource_id.as_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (&state, rest) = bytes.split_first()?;
        let (time, resource) = rest.split_at_checked(8)?;
        Some(Self {
            state: State::from_byte(state)?,
            updated_at_ms: u64::from_be_bytes(time.try_into().ok()?),
            resource_id: String::from_utf8(resource.to_vec()).ok()?,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn key(xid: &str, branch_id: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(xid.len() + 9);
    key.extend_from_slice(xid.as_bytes());
    key.push(0);
    key.extend_from_slice(&branch_id.to_be_bytes());
    key
}

fn split_key(key: &[u8]) -> Option<(&[u8], i64)> {
    let (xid, branch) = key.split_at_checked(key.len().checked_sub(9)?)?;
    let (&nul, branch) = branch.split_first()?;
    (nul == 0).then_some((xid, i64::from_be_bytes(branch.try_into().ok()?)))
}

/// How far a write must have gone before its caller goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced to disk.
    Synced,
    /// Written and readable; synced by the next group fsync, moments later.
    Visible,
}

/// Where a sync's outcome goes, when someone waits for it.
type Done = oneshot::Sender<Result<(), String>>;

/// The database with its syncer thread; [`Store::close`] (or dropping it) closes both.
pub struct Store {
    db: RwLock<Option<Arc<DB>>>,
    syncs: Mutex<Option<mpsc::Sender<Option<Done>>>>,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, FenceError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&options, dir).map_err(|e| FenceError::Open {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let db = Arc::new(db);
        let (syncs, requests) = mpsc::channel();
        let sync_db = db.clone();
        let syncer = std::thread::Builder::new()
            .name("fence-syncer".into())
            .spawn(move || sync_loop(&sync_db, &requests))
            .map_err(|e| FenceError::Open {
                path: dir.display().to_string(),
                reason: format!("cannot start the syncer thread: {e}"),
            })?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            syncs: Mutex::new(Some(syncs)),
            syncer: Mutex::new(Some(syncer)),
        })
    }

    fn db(&self) -> Result<Arc<DB>, FenceError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        db.clone().ok_or(FenceError::Closed)
    }

    /// Asks the syncer for a sync, to be told of through `done` if given.
    fn request_sync(&self, done: Option<Done>) -> Result<(), FenceError> {
        let syncs = self.syncs.lock().unwrap_or_else(PoisonError::into_inner);
        let syncs = syncs.as_ref().ok_or(FenceError::Closed)?;
        syncs.send(done).map_err(|_| FenceError::Closed)
    }

    /// Syncs what is written, then closes the database; later calls fail with `Closed`.
    pub fn close(&self) {
        // Closing the queue ends the syncer once it has synced what was asked.
        drop(
            self.syncs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let syncer = self
            .syncer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(syncer) = syncer
            && syncer.join().is_err()
        {
            tracing::error!("the fence syncer thread panicked");
        }
        drop(
            self.db
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    pub fn get(&self, xid: &str, branch_id: i64) -> Result<Option<Record>, FenceError> {
        let bytes = self.db()?.get(key(xid, branch_id)).map_err(read_error)?;
        bytes.map(|b| decode(&b)).transpose()
    }

    /// Every record of `xid`, by branch id.
    pub fn scan_xid(&self, xid: &str) -> Result<Vec<(i64, Record)>, FenceError> {
        let mut prefix = xid.as_bytes().to_vec();
        prefix.push(0);
        let mut records = Vec::new();
        let db = self.db()?;
        let iter = db.iterator(IteratorMode::From(&prefix, Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(read_error)?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some((_, branch_id)) = split_key(&k) {
                records.push((branch_id, decode(&v)?));
            }
        }
        Ok(records)
    }

    /// Keys of records `expired` says to delete.
    pub fn scan_expired(
        &self,
        expired: impl Fn(&Record) -> bool,
    ) -> Result<Vec<(String, i64)>, FenceError> {
        let mut keys = Vec::new();
        let db = self.db()?;
        for item in db.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(read_error)?;
            let (Some((xid, branch_id)), Ok(record)) = (split_key(&k), decode(&v)) else {
                continue;
            };
            if expired(&record) {
                keys.push((String::from_utf8_lossy(xid).into_owned(), branch_id));
            }
        }
        Ok(keys)
    }

    /// Writes (`Some`) or deletes (`None`) records, durably, before returning.
    pub async fn write(
        &self,
        records: impl IntoIterator<Item = (&str, i64, Option<&Record>)>,
    ) -> Result<(), FenceError> {
        self.write_with(records, Durability::Synced).await
    }

    /// Writes or deletes records and returns once they are readable, or synced too (see
    /// [`Durability`]).
    pub async fn write_with(
        &self,
        records: impl IntoIterator<Item = (&str, i64, Option<&Record>)>,
        durability: Durability,
    ) -> Result<(), FenceError> {
        let mut batch = WriteBatch::default();
        for (xid, branch_id, record) in records {
            match record {
                Some(record) => batch.put(key(xid, branch_id), record.encode()),
                None => batch.delete(key(xid, branch_id)),
            }
        }
        let mut unsynced = WriteOptions::default();
        unsynced.set_sync(false);
        self.db()?
            .write_opt(batch, &unsynced)
            .map_err(|e| FenceError::Write(e.to_string()))?;
        match durability {
            Durability::Visible => self.request_sync(None),
            Durability::Synced => {
                let (done, synced) = oneshot::channel();
                self.request_sync(Some(done))?;
                synced
                    .await
                    .map_err(|_| FenceError::Closed)?
                    .map_err(FenceError::Write)
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn decode(bytes: &[u8]) -> Result<Record, FenceError> {
    Record::decode(bytes).ok_or(FenceError::Corrupt)
}

fn read_error(error: rocksdb::Error) -> FenceError {
    FenceError::Read(error.to_string())
}

/// Makes everything written so far durable with one WAL fsync per round (every request queued
/// meanwhile shares it), then tells those waiting.
fn sync_loop(db: &DB, requests: &mpsc::Receiver<Option<Done>>) {
    while let Ok(first) = requests.recv() {
        let waiting: Vec<Done> = std::iter::once(first)
            .chain(requests.try_iter())
            .flatten()
            .collect();
        let result = db.flush_wal(true).map_err(|e| e.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, "fence sync failed");
        }
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_keys_round_trip() {
        let record = Record::now(State::Tried, "accounts");
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Record::decode(&[1, 0]), None);
        let k = key("10.0.0.1:8091:7", -5);
        assert_eq!(split_key(&k), Some((&b"10.0.0.1:8091:7"[..], -5)));
        assert_eq!(split_key(b"short"), None);
    }

    #[tokio::test]
    async fn visible_writes_are_readable_at_once_and_synced_by_close() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("opens");
        let record = Record::now(State::Confirmed, "accounts");
        store
            .write_with([("x:1", 7, Some(&record))], Durability::Visible)
            .await
            .expect("written");
        assert_eq!(store.get("x:1", 7).expect("readable"), Some(record.clone()));
        store
            .write([("x:1", 8, Some(&record))])
            .await
            .expect("synced");
        store.close();
        assert!(matches!(store.get("x:1", 7), Err(FenceError::Closed)));
        let reopened = Store::open(dir.path()).expect("reopens");
        assert_eq!(
            reopened.get("x:1", 7).expect("readable"),
            Some(record.clone())
        );
        assert_eq!(reopened.get("x:1", 8).expect("readable"), Some(record));
    }
}
