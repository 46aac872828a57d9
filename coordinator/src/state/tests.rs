//! State machine behaviour, command by command, and invariants over random histories.

use proptest::prelude::*;

use super::*;

const ADDR: &str = "10.0.0.1:8091";

/// A state plus the next log index, applying commands the way the log would.
#[derive(Default)]
struct Log {
    state: TxState,
    index: u64,
}

impl Log {
    fn apply(&mut self, command: Command) -> Outcome {
        self.index += 1;
        self.state.apply(self.index, command)
    }

    fn begin(&mut self, timeout_ms: u64, now_ms: u64) -> u64 {
        let begin = Command::Begin {
            address: ADDR.into(),
            application_id: "shop".into(),
            transaction_service_group: "default_tx_group".into(),
            name: "buy".into(),
            timeout_ms,
            now_ms,
        };
        match self.apply(begin) {
            Outcome::Begun { tx_id, .. } => tx_id,
            other => panic!("begin failed: {other:?}"),
        }
    }

    fn register(
        &mut self,
        tx_id: u64,
        branch_type: BranchType,
        lock_key: &str,
        data: &str,
    ) -> Outcome {
        self.apply(Command::RegisterBranch {
            tx_id,
            branch_type,
            resource_id: "db".into(),
            lock_key: lock_key.into(),
            application_data: data.into(),
            client_id: "shop:127.0.0.1:4000".into(),
        })
    }

    fn branch(&mut self, tx_id: u64, branch_type: BranchType, lock_key: &str) -> u64 {
        match self.register(tx_id, branch_type, lock_key, "") {
            Outcome::Registered { branch_id } => branch_id,
            other => panic!("registration failed: {other:?}"),
        }
    }

    fn done(&mut self, tx_id: u64, branch_id: u64, status: BranchStatus) -> Outcome {
        self.apply(Command::BranchesDone {
            tx_id,
            results: vec![(branch_id, status)],
        })
    }
}

fn status(s: GlobalStatus) -> Outcome {
    Outcome::Status(s)
}

fn rejected_with(outcome: &Outcome) -> Code {
    match outcome {
        Outcome::Rejected(r) => r.code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn ids_come_from_the_log_index_and_xids_carry_the_address() {
    let mut log = Log {
        index: 41,
        ..Log::default()
    };
    let tx = log.begin(60_000, 1_000);
    assert_eq!(tx, 42);
    assert_eq!(
        log.state.session(tx).map(|s| s.xid.as_str()),
        Some("10.0.0.1:8091:42")
    );
    assert_eq!(log.branch(tx, BranchType::Tcc, ""), 43);
    assert_eq!(log.state.next_deadline(), Some((61_000, 42)));
}

#[test]
fn an_at_commit_answers_at_once_and_frees_rows_at_the_decision() {
    let mut log = Log::default();
    let tx = log.begin(60_000, 0);
    let b1 = log.branch(tx, BranchType::At, "t:1");
    let b2 = log.branch(tx, BranchType::At, "t:2");
    assert_eq!(log.state.locks().len(), 2);
    assert_eq!(
        log.apply(Command::Commit {
            tx_id: tx,
            now_ms: 10
        }),
        status(GlobalStatus::AsyncCommitting)
    );
    assert!(
        log.state.locks().is_empty(),
        "rows are free once the commit is decided"
    );
    assert_eq!(log.state.next_deadline(), None);
    assert_eq!(
        log.done(tx, b1, BranchStatus::PhaseTwoCommitted),
        status(GlobalStatus::AsyncCommitting)
    );
    assert_eq!(
        log.done(tx, b2, BranchStatus::PhaseTwoCommitted),
        status(GlobalStatus::Committed)
    );
    assert!(log.state.session(tx).is_none());
    assert_eq!(
        log.state.status(tx),
        Some(GlobalStatus::Committed),
        "the outcome stays queryable"
    );
    assert_eq!(
        log.apply(Command::Commit {
            tx_id: tx,
            now_ms: 20
        }),
        status(GlobalStatus::Committed)
    );
}

#[test]
fn one_record_ends_several_branches_in_order() {
    let mut log = Log::default();
    let tx = log.begin(60_000, 0);
    let b1 = log.branch(tx, BranchType::Tcc, "");
    let b2 = log.branch(tx, BranchType::Tcc, "");
    let b3 = log.branch(tx, BranchType::Tcc, "");
    log.apply(Command::Commit {
        tx_id: tx,
        now_ms: 1,
    });
    let done = |branch_id| (branch_id, BranchStatus::PhaseTwoCommitted);
    assert_eq!(
        log.apply(Command::BranchesDone {
            tx_id: tx,
            results: vec![done(b1), done(b2)],
        }),
        status(GlobalStatus::Committing)
    );
    assert_eq!(
        log.state.session(tx).map(|s| s.branches.len()),
        Some(1),
        "both recorded branches are gone"
    );
    let failed = (b3, BranchStatus::PhaseTwoCommitFailedUnretryable);
    let outcome = log.apply(Command::BranchesDone {
        tx_id: tx,
        results: vec![failed, done(b3)],
    });
    assert_eq!(
        rejected_with(&outcome),
        Code::GlobalTransactionStatusInvalid,
        "a result after the transaction left phase two is refused"
    );
    assert_eq!(log.state.status(tx), Some(GlobalStatus::CommitFailed));
}

#[test]
fn a_tcc_commit_goes_through_committing() {
    let mut log = Log::default();
    let tx = log.begin(60_000, 0);
    let b1 = log.branch(tx, BranchType::Tcc, "");
    log.branch(tx, BranchType::At, "t:1");
    assert_eq!(
        log.apply(Command::Commit {
            tx_id: tx,
            now_ms: 1
        }),
        status(GlobalStatus::Committing)
    );
    assert_eq!(
        log.done(tx, b1, BranchStatus::PhaseTwoCommitted),
        status(GlobalStatus::Committing)
    );
    assert_eq!(
        log.state.session(tx).map(|s| s.commits_async()),
        Some(true),
        "only AT is left"
    );
}

#[test]
fn an_empty_transaction_commits_and_ends_at_once() {
    let mut log = Log::default();
    let tx = log.begin(60_000, 0);
    assert_eq!(
        log.apply(Command::Commit {
            tx_id: tx,
            now_ms: 1
        }),
        status(GlobalStatus::Committed)
    );
    assert_eq!(log.state.session_count(), 0);
}

#[test]
fn rollback_releases_each_branchs_rows_as_it_is_undone() {
    let mut log = Log::default();
    let tx = log.begin(60_000, 0);
    let b1 = log.branch(tx, BranchType::At, "t:1");
    let b2 = log.branch(tx, BranchType::At, "t:2,3");
    assert_eq!(
        log.apply(Command::Rollback { tx_id: tx }),
        status(GlobalStatus::Rollbacking)
    );
    assert_eq!(log.state.locks().len(), 3, "rows stay locked until undone");
    assert_eq!(
        log.done(tx, b2, BranchStatus::PhaseTwoRollbacked),
        status(GlobalStatus::Rollbacking)
    );
    assert_eq!(log.state.locks().len(), 1);
    assert_eq!(
        log.done(tx, b1, BranchStatus::PhaseTwoRollbacked),
        status(GlobalStatus::Rollbacked)
    );
    assert!(log.state.locks().is_empty());
    assert_eq!(
        log.apply(Command::Rollback { tx_id: tx }),
        status(GlobalStatus::Rollbacked)
    );
}

#[test]
fn lock_conflicts_name_the_holder_and_fail_fast_against_a_rollback() {
    let mut log = Log::default();
    let holder = log.begin(60_000, 0);
    log.branch(holder, BranchType::At, "t:1");
    log.branch(holder, BranchType::At, "t:1,2");
    assert_eq!(
        log.state.locks().len(),
        2,
        "re-entrant within one transaction"
    );

    let other = log.begin(60_000, 0);
    let conflict = log.register(other, BranchType::At, "t:3;t:2", "");
    let Outcome::Rejected(rejection) = &conflict else {
        panic!("expected a conflict: {conflict:?}")
    };
    assert_eq!(rejection.code, Code::LockKeyConflict);
    assert!(
        rejection.message.contains("db^^^t^^^2") && rejection.message.contains("10.0.0.1:8091:1"),
        "{rejection:?}"
    );
    assert_eq!(
        log.state.locks().owner("db^^^t^^^3"),
        None,
        "all or nothing"
    );
    assert!(!log.state.lockable(Some(other), BranchType::At, "db", "t:2"));
    assert!(
        log.state
            .lockable(Some(holder), BranchType::At, "db", "t:2")
    );
    assert!(log.state.lockable(None, BranchType::Tcc, "db", "t:2"));

    log.apply(Command::Rollback { tx_id: holder });
    let local_tx = "{\"autoCommit\": false}";
    assert_eq!(
        rejected_with(&log.register(other, BranchType::At, "t:1", local_tx)),
        Code::LockKeyConflictFailFast
    );
    assert_eq!(
        rejected_with(&log.register(other, BranchType::At, "t:1", "")),
        Code::LockKeyConflict
    );
}

#[test]
fn registration_needs_a_live_begin_transaction() {
    let mut log = Log::default();
    assert_eq!(
        rejected_with(&log.register(99, BranchType::At, "t:1", "")),
        Code::GlobalTransactionNotExist
    );
    let tx = log.begin(60_000, 0);
    log.branch(tx, BranchType::Tcc, "");
    log.apply(Command::Commit {
        tx_id: tx,
        now_ms: 1,
    });
    assert_eq!(
        rejected_with(&log.register(tx, BranchType::Tcc, "", "")),
        Code::GlobalTransactionNotActive
    );
    assert!(
        matches!(
            log.register(tx, BranchType::Saga, "", ""),
            Outcome::Registered { .. }
        ),
        "Saga is exempt"
    );
}

#[test]
fn a_commit_after_the_deadline_rolls_back_instead() {
    let mut log = Log::default();
    let tx = log.begin(1_000, 0);
    log.branch(tx, BranchType::Tcc, "");
    assert_eq!(
        log.apply(Command::Timeout {
            tx_id: tx,
            now_ms: 999
        }),
        status(GlobalStatus::Begin)
    );
    assert_eq!(log.state.expired(999).count(), 0);
    assert_eq!(log.state.expired(1_000).collect::<Vec<_>>(), [tx]);
    assert_eq!(
        log.apply(Command::Commit {
            tx_id: tx,
            now_ms: 1_001
        }),
        status(GlobalStatus::TimeoutRollbacking)
    );
    assert_eq!(log.state.expired(u64::MAX).count(), 0, "no longer Begin");
}

#[test]
fn the_timeout_driver_rolls_back_and_the_outcome_says_timeout() {
    let mut log = Log::default();
    let tx = log.begin(1_000, 0);
    let b = log.branch(tx, BranchType::At, "t:9");
    assert_eq!(
        log.apply(Command::Timeout {
            tx_id: tx,
            now_ms: 1_000
        }),
        status(GlobalStatus::TimeoutRollbacking)
    );
    assert_eq!(
        log.apply(Command::Retrying { tx_id: tx }),
        status(GlobalStatus::TimeoutRollbackRetrying)
    );
    assert_eq!(
        log.done(tx, b, BranchStatus::PhaseTwoRollbacked),
        status(GlobalStatus::TimeoutRollbacked)
    );
}

#[test]
fn phase_one_failures_need_no_phase_two() {
    let mut log = Log::default();
    let tx = log.begin(60_000, 0);
    let b = log.branch(tx, BranchType::At, "t:1");
    let report = Command::ReportBranch {
        tx_id: tx,
        branch_id: b,
        status: BranchStatus::PhaseOneFailed,
        application_data: String::new(),
    };
    assert_eq!(log.apply(report), status(GlobalStatus::Begin));
    assert_eq!(
        log.apply(Command::Rollback { tx_id: tx }),
        status(GlobalStatus::Rollbacked)
    );
    assert!(log.state.locks().is_empty());
    let missing = Command::ReportBranch {
        tx_id: tx,
        branch_id: b,
        status: BranchStatus::PhaseOneDone,
        application_data: String::new(),
    };
    assert_eq!(
        rejected_with(&log.apply(missing)),
        Code::GlobalTransactionNotExist
    );
}

#[test]
fn unretryable_failures_keep_the_session_and_its_locks_for_an_operator() {
    let mut log = Log::default();
    let tx = log.begin(60_000, 0);
    let b = log.branch(tx, BranchType::At, "t:1");
    log.apply(Command::Rollback { tx_id: tx });
    assert_eq!(
        log.done(tx, b, BranchStatus::PhaseTwoRollbackFailedUnretryable),
        status(GlobalStatus::RollbackFailed)
    );
    assert_eq!(log.state.locks().len(), 1);
    let commit = Command::Resume {
        tx_id: tx,
        commit: true,
        now_ms: 5,
    };
    assert_eq!(
        rejected_with(&log.apply(commit)),
        Code::GlobalTransactionStatusInvalid
    );
    assert_eq!(
        log.apply(Command::Resume {
            tx_id: tx,
            commit: false,
            now_ms: 5
        }),
        status(GlobalStatus::RollbackRetrying)
    );
    assert_eq!(
        log.done(tx, b, BranchStatus::PhaseTwoRollbacked),
        status(GlobalStatus::Rollbacked)
    );
}

#[test]
fn retries_that_run_out_of_time_give_up() {
    let mut log = Log::default();
    let tx = log.begin(60_000, 0);
    let b = log.branch(tx, BranchType::Tcc, "");
    log.apply(Command::Commit {
        tx_id: tx,
        now_ms: 1,
    });
    assert_eq!(
        log.apply(Command::Retrying { tx_id: tx }),
        status(GlobalStatus::CommitRetrying)
    );
    assert_eq!(
        log.apply(Command::GiveUp { tx_id: tx }),
        status(GlobalStatus::CommitRetryTimeout)
    );
    assert_eq!(
        log.apply(Command::Resume {
            tx_id: tx,
            commit: true,
            now_ms: 9
        }),
        status(GlobalStatus::CommitRetrying)
    );
    assert_eq!(
        log.done(tx, b, BranchStatus::PhaseTwoCommitFailedUnretryable),
        status(GlobalStatus::CommitFailed)
    );
    assert!(log.state.session(tx).is_some());
}

#[test]
fn a_saga_report_ends_the_transaction() {
    let mut log = Log::default();
    let tx = log.begin(60_000, 0);
    assert_eq!(
        log.apply(Command::Report {
            tx_id: tx,
            status: GlobalStatus::Committed
        }),
        status(GlobalStatus::Committed)
    );
    assert_eq!(log.state.status(tx), Some(GlobalStatus::Committed));
}

#[test]
fn the_finished_log_forgets_the_oldest_beyond_its_capacity() {
    let mut finished = FinishedLog::default();
    for tx in 0..(FINISHED_CAPACITY as u64 + 5) {
        finished.record(tx, GlobalStatus::Committed);
    }
    assert_eq!(finished.len(), FINISHED_CAPACITY);
    assert_eq!(finished.get(4), None);
    assert_eq!(finished.get(5), Some(GlobalStatus::Committed));
}

/// Random commands over a few transactions and rows.
fn command() -> impl Strategy<Value = Command> {
    let tx = 1u64..12;
    let branch_type = prop::sample::select(vec![BranchType::At, BranchType::Tcc, BranchType::Saga]);
    let lock_key = prop::sample::select(vec!["", "t:1", "t:2", "t:1,2", "t:3;u:1"]);
    let done = prop::sample::select(vec![
        BranchStatus::PhaseTwoCommitted,
        BranchStatus::PhaseTwoRollbacked,
        BranchStatus::PhaseTwoCommitFailedUnretryable,
        BranchStatus::PhaseTwoRollbackFailedUnretryable,
        BranchStatus::PhaseOneFailed,
    ]);
    prop_oneof![
        (1u64..5_000, 0u64..5_000).prop_map(|(timeout_ms, now_ms)| Command::Begin {
            address: ADDR.into(),
            application_id: "a".into(),
            transaction_service_group: "g".into(),
            name: "n".into(),
            timeout_ms,
            now_ms,
        }),
        (tx.clone(), branch_type, lock_key).prop_map(|(tx_id, branch_type, lock_key)| {
            Command::RegisterBranch {
                tx_id,
                branch_type,
                resource_id: "db".into(),
                lock_key: lock_key.into(),
                application_data: String::new(),
                client_id: "a:127.0.0.1:1".into(),
            }
        }),
        (tx.clone(), 1u64..40, done.clone()).prop_map(|(tx_id, branch_id, status)| {
            Command::ReportBranch {
                tx_id,
                branch_id,
                status,
                application_data: String::new(),
            }
        }),
        (tx.clone(), 0u64..10_000).prop_map(|(tx_id, now_ms)| Command::Commit { tx_id, now_ms }),
        tx.clone().prop_map(|tx_id| Command::Rollback { tx_id }),
        (tx.clone(), 0u64..10_000).prop_map(|(tx_id, now_ms)| Command::Timeout { tx_id, now_ms }),
        (
            tx.clone(),
            proptest::collection::vec((1u64..40, done), 1..3)
        )
            .prop_map(|(tx_id, results)| Command::BranchesDone { tx_id, results }),
        tx.clone().prop_map(|tx_id| Command::Retrying { tx_id }),
        tx.clone().prop_map(|tx_id| Command::GiveUp { tx_id }),
        (tx, any::<bool>(), 0u64..10_000).prop_map(|(tx_id, commit, now_ms)| Command::Resume {
            tx_id,
            commit,
            now_ms
        }),
    ]
}

/// What must hold after every command.
fn check_invariants(state: &TxState) {
    for (key, owner) in state.locks().iter() {
        let session = state
            .session(owner.tx_id)
            .unwrap_or_else(|| panic!("lock {key} outlives tx {}", owner.tx_id));
        let branch = session
            .branch(owner.branch_id)
            .unwrap_or_else(|| panic!("lock {key} outlives its branch"));
        assert!(
            branch.locks.iter().any(|k| k == key),
            "lock {key} missing from its branch's list"
        );
        assert_eq!(branch.branch_type, BranchType::At);
        assert_ne!(
            phase_two_direction(session.status),
            Some(Direction::Commit),
            "a committing tx holds {key}"
        );
    }
    let held: usize = state
        .sessions()
        .flat_map(|s| &s.branches)
        .map(|b| b.locks.len())
        .sum();
    assert_eq!(
        held,
        state.locks().len(),
        "branch lists and the table agree"
    );
    let begun: Vec<u64> = state
        .sessions()
        .filter(|s| s.status == GlobalStatus::Begin)
        .map(|s| s.tx_id)
        .collect();
    let mut indexed: Vec<u64> = state.expired(u64::MAX).collect();
    indexed.sort_unstable();
    assert_eq!(
        indexed, begun,
        "the deadline index holds exactly the Begin transactions"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn invariants_hold_and_replay_is_deterministic(commands in prop::collection::vec(command(), 1..80)) {
        let mut log = Log::default();
        let mut replica = Log::default();
        for command in commands {
            let outcome = log.apply(command.clone());
            prop_assert_eq!(replica.apply(command), outcome);
            check_invariants(&log.state);
        }
        prop_assert_eq!(&log.state, &replica.state);
    }
}
