//! The state machine store: [`TxState`] in memory behind a lock that the server and the admin
//! API read, applied from committed log entries, and saved as snapshots in RocksDB so that the
//! log can be compacted and a restart replays only what follows the snapshot.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
};
use rocksdb::DB;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{CF_SNAPSHOT, OpenError, cf, decode, encode};
use crate::metrics::{Metrics, StatusBefore};
use crate::raft::{
    Applied, Entry, LogId, NodeId, Proposal, StorageError, StoredMembership, TypeConfig, command_id,
};
use crate::state::{Command, TxState};

const CURRENT: &[u8] = b"current";

/// The applied state and where in the log it stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppliedState {
    /// Transactions, branches and locks.
    pub tx: TxState,
    /// The last log entry applied.
    pub last_applied: Option<LogId>,
    /// The membership as of the last applied entry.
    pub membership: StoredMembership,
}

/// The applied state, shared between the state machine (writer) and its readers.
#[derive(Debug)]
pub struct SharedState {
    state: RwLock<AppliedState>,
    /// Counts applied changes that may have freed a row lock (see
    /// [`Command::may_release_locks`](crate::state::Command::may_release_locks)): registrations
    /// waiting on a lock watch it.
    lock_changes: watch::Sender<u64>,
}

impl SharedState {
    /// Shares `state`.
    pub(crate) fn new(state: AppliedState) -> Self {
        Self {
            state: RwLock::new(state),
            lock_changes: watch::Sender::new(0),
        }
    }

    /// Reads the state. A poisoned lock means a panic during apply; the state is still the
    /// last one fully applied or partly applied, and readers only report it.
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the state: the state machine applies, tests set up.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, AppliedState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver that sees every lock change from now on: take it before reading the state,
    /// then wait on it, and no change in between is missed.
    pub fn lock_changes(&self) -> watch::Receiver<u64> {
        self.lock_changes.subscribe()
    }

    /// Wakes whoever waits on [`SharedState::lock_changes`].
    pub fn note_lock_change(&self) {
        self.lock_changes.send_modify(|changes| *changes += 1);
    }
}

/// A snapshot as stored: its metadata and the encoded [`AppliedState`].
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The Raft state machine.
pub struct StateMachineStore {
    state: Arc<SharedState>,
    db: Arc<DB>,
    snapshots_built: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    /// Entries up to this index were applied, and counted, before a restart: applying them
    /// again replays them and is not counted again.
    replayed_until: Option<u64>,
}

impl StateMachineStore {
    /// Loads the last snapshot, if any, as the starting state.
    pub(super) fn open(
        db: Arc<DB>,
        metrics: Arc<Metrics>,
        replayed_until: Option<u64>,
    ) -> Result<Self, OpenError> {
        let mut state = AppliedState::default();
        if let Some(stored) = load_snapshot(&db).map_err(|e| OpenError::Snapshot(e.to_string()))? {
            state = decode(&stored.data).map_err(|e| OpenError::Snapshot(e.to_string()))?;
        }
        Ok(Self {
            state: Arc::new(SharedState::new(state)),
            db,
            snapshots_built: Arc::default(),
            metrics,
            replayed_until,
        })
    }

    /// The state, for readers.
    pub fn state(&self) -> Arc<SharedState> {
        self.state.clone()
    }
}

fn load_snapshot(db: &DB) -> Result<Option<StoredSnapshot>, AnyError> {
    match db
        .get_cf(cf(db, CF_SNAPSHOT), CURRENT)
        .map_err(|e| AnyError::new(&e))?
    {
        None => Ok(None),
        Some(bytes) => decode(&bytes).map(Some).map_err(|e| AnyError::new(&e)),
    }
}

fn save_snapshot(db: &DB, snapshot: &StoredSnapshot) -> Result<(), AnyError> {
    let bytes = encode(snapshot).map_err(|e| AnyError::new(&e))?;
    let mut options = rocksdb::WriteOptions::default();
    options.set_sync(true);
    db.put_cf_opt(cf(db, CF_SNAPSHOT), CURRENT, bytes, &options)
        .map_err(|e| AnyError::new(&e))
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.state.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.state.write();
        let entries = entries.into_iter();
        let mut outcomes = Vec::with_capacity(entries.size_hint().0);
        let mut lock_change = false;
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let applied = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(Proposal(commands)) => {
                    let index = entry.log_id.index;
                    let counted = Some(index) > self.replayed_until;
                    lock_change |= commands.iter().any(Command::may_release_locks);
                    let commands = commands.into_iter().enumerate();
                    commands
                        .map(|(position, command)| {
                            let before = StatusBefore::read(&state.tx, &command);
                            let outcome = state.tx.apply(command_id(index, position), command);
                            if counted {
                                self.metrics.count_step(before, &state.tx, &outcome);
                            }
                            outcome
                        })
                        .collect()
                }
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            outcomes.push(Applied(applied));
        }
        drop(state);
        if lock_change {
            self.state.note_lock_change();
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            state: self.state.clone(),
            db: self.db.clone(),
            built: self.snapshots_built.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let installed: AppliedState = decode(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        save_snapshot(
            &self.db,
            &StoredSnapshot {
                meta: meta.clone(),
                data,
            },
        )
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        *self.state.write() = installed;
        self.state.note_lock_change();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = load_snapshot(&self.db).map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Builds snapshots of the applied state.
pub struct SnapshotBuilder {
    state: Arc<SharedState>,
    db: Arc<DB>,
    built: Arc<AtomicU64>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_log_id, last_membership) = {
            let state = self.state.read();
            let data = encode(&*state)
                .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
            (data, state.last_applied, state.membership.clone())
        };
        let sequence = self.built.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{sequence}", id.leader_id, id.index),
            None => format!("empty-{sequence}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        save_snapshot(&self.db, &stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}
