//! Durable storage in one RocksDB: the Raft log and vote ([`LogStore`]), and snapshots of
//! the state machine ([`StateMachineStore`]), which itself lives in memory.

mod log;
mod machine;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

use crate::metrics::Metrics;

pub use log::LogStore;
pub use machine::{AppliedState, SharedState, StateMachineStore};

/// Column family of log entries, keyed by big-endian index.
const CF_LOG: &str = "log";
/// Column family of small records: vote, committed and purged log ids.
const CF_META: &str = "meta";
/// Column family holding the current snapshot.
const CF_SNAPSHOT: &str = "snapshot";

/// Why the store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// RocksDB refused to open the directory.
    #[error("cannot open the store at {path}: {source}")]
    Rocks {
        /// The data directory.
        path: String,
        /// What RocksDB said.
        source: rocksdb::Error,
    },
    /// The stored snapshot does not decode.
    #[error("the stored snapshot is unreadable: {0}")]
    Snapshot(String),
}

/// Opens (or creates) the store under `dir` and returns its two halves, which record into
/// `metrics`.
pub fn open(
    dir: &Path,
    metrics: &Arc<Metrics>,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let path = dir.join("raft");
    let db = open_retrying(&options, &path, &[CF_LOG, CF_META, CF_SNAPSHOT]).map_err(|source| {
        OpenError::Rocks {
            path: path.display().to_string(),
            source,
        }
    })?;
    let db = Arc::new(db);
    let log = LogStore::new(db.clone(), metrics.entries_per_fsync());
    let replayed_until = log.saved_committed_index();
    let machine = StateMachineStore::open(db, metrics.clone(), replayed_until)?;
    Ok((log, machine))
}

/// How long to wait for a database this process is still closing (an in-process restart may
/// race the last fsync of the previous instance).
const LOCK_WAIT: Duration = Duration::from_secs(5);

fn open_retrying(options: &Options, path: &Path, families: &[&str]) -> Result<DB, rocksdb::Error> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let descriptors = families
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        match DB::open_cf_descriptors(options, path, descriptors) {
            Err(e)
                if e.as_ref().contains("lock hold by current process")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

/// The column family `name`, which [`open`] always creates.
fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .unwrap_or_else(|| unreachable!("column family {name} is created at open"))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests;
