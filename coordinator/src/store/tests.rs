//! The store against openraft's storage conformance suite, and across restarts.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, RaftSnapshotBuilder, Vote};
use tempfile::TempDir;
use txmesh_seata::GlobalStatus;

use super::*;
use crate::raft::{Applied, Entry, LogId, Proposal, StorageError, TypeConfig, command_id};
use crate::state::{Command, Outcome};

struct TempStore;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStore {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let (log, machine) = open(dir.path(), &Arc::default()).expect("opens");
        Ok((dir, log, machine))
    }
}

#[test]
fn passes_the_openraft_storage_suite() {
    Suite::test_all(TempStore).expect("conformant");
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn begin(index: u64) -> Entry {
    let command = Command::Begin {
        address: "127.0.0.1:8091".into(),
        application_id: "app".into(),
        transaction_service_group: "g".into(),
        name: "tx".into(),
        timeout_ms: 60_000,
        now_ms: 1_000,
    };
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(Proposal(vec![command.clone(), command])),
    }
}

#[tokio::test]
async fn the_log_and_vote_survive_a_restart() {
    let dir = TempDir::new().expect("temp dir");
    {
        let (mut log, _) = open(dir.path(), &Arc::default()).expect("opens");
        log.save_vote(&Vote::new(3, 1)).await.expect("vote saved");
        log.blocking_append((1..=5).map(begin))
            .await
            .expect("appended");
        log.truncate(log_id(1, 5)).await.expect("truncated");
        log.purge(log_id(1, 2)).await.expect("purged");
    }
    let (mut log, _) = open(dir.path(), &Arc::default()).expect("reopens");
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 4)));
    let entries = log.try_get_log_entries(0..10).await.expect("entries");
    assert_eq!(
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        [3, 4]
    );
    assert_eq!(
        entries[0].payload,
        begin(3).payload,
        "commands round-trip through the binary encoding"
    );
}

#[tokio::test]
async fn a_snapshot_restores_the_applied_state() {
    let dir = TempDir::new().expect("temp dir");
    let tx_id = {
        let (_, mut machine) = open(dir.path(), &Arc::default()).expect("opens");
        let applied = machine.apply([begin(7)]).await.expect("applied");
        let [Applied(outcomes)] = applied.as_slice() else {
            panic!("one entry, one result: {applied:?}")
        };
        let [
            Outcome::Begun { tx_id, .. },
            Outcome::Begun { tx_id: second, .. },
        ] = outcomes.as_slice()
        else {
            panic!("unexpected outcomes {outcomes:?}");
        };
        assert_eq!(
            (*tx_id, *second),
            (command_id(7, 0), command_id(7, 1)),
            "ids from index and position"
        );
        let snapshot = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 7)));
        *tx_id
    };
    let (_, mut machine) = open(dir.path(), &Arc::default()).expect("reopens");
    let (last_applied, _) = machine.applied_state().await.expect("applied state");
    assert_eq!(last_applied, Some(log_id(1, 7)));
    assert_eq!(
        machine.state().read().tx.status(tx_id),
        Some(GlobalStatus::Begin)
    );
    let current = machine
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    assert_eq!(current.meta.last_log_id, Some(log_id(1, 7)));
}
