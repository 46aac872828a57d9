//! The fence's RocksDB: one record per `(xid, branch id)`, keyed `xid NUL branch-id` (big
//! endian) so one XID's records are adjacent. Every write is synced; one writer thread makes
//! all writes queued meanwhile durable with a single WAL fsync (group commit).

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
}

impl State {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => State::Tried,
            2 => State::Confirmed,
            3 => State::Cancelled,
            4 => State::EmptyRollback,
            5 => State::RegisterUncertain,
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

/// A synced write of several records at once.
struct Job {
    puts: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The database and its writer thread; [`Store::close`] (or dropping it) closes both.
pub struct Store {
    db: RwLock<Option<Arc<DB>>>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
        let (writer, jobs) = mpsc::channel();
        let thread_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("fence-writer".into())
            .spawn(move || write_loop(&thread_db, &jobs))
            .map_err(|e| FenceError::Open {
                path: dir.display().to_string(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            writer: Mutex::new(Some(writer)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn db(&self) -> Result<Arc<DB>, FenceError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        db.clone().ok_or(FenceError::Closed)
    }

    fn send(&self, job: Job) -> Result<(), FenceError> {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let writer = writer.as_ref().ok_or(FenceError::Closed)?;
        writer.send(job).map_err(|_| FenceError::Closed)
    }

    /// Writes what is queued, then closes the database; later calls fail with `Closed`.
    pub fn close(&self) {
        // Closing the queue ends the writer once it has written what was queued.
        drop(
            self.writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the fence writer thread panicked");
        }
        drop(
            self.db
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// The record of a branch.
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
        let puts = records
            .into_iter()
            .map(|(xid, branch_id, record)| (key(xid, branch_id), record.map(Record::encode)))
            .collect();
        let (done, written) = oneshot::channel();
        self.send(Job { puts, done })?;
        written
            .await
            .map_err(|_| FenceError::Closed)?
            .map_err(FenceError::Write)
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

/// Most jobs made durable by one fsync.
const MAX_JOBS_PER_SYNC: usize = 1024;

fn write_loop(db: &DB, jobs: &mpsc::Receiver<Job>) {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    while let Ok(first) = jobs.recv() {
        let mut batch = WriteBatch::default();
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            for (key, value) in job.puts {
                match value {
                    Some(value) => batch.put(key, value),
                    None => batch.delete(key),
                }
            }
            waiting.push(job.done);
            if waiting.len() < MAX_JOBS_PER_SYNC {
                next = jobs.try_recv().ok();
            }
        }
        let result = db.write_opt(batch, &options).map_err(|e| e.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, "fence write failed");
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
}
