//! Waiting for rows: handed over when freed, bounded by the wait, never for a holder rolling
//! back, and one registration at a time per row while it is being replicated.

use std::sync::Arc;

use txmesh_seata::GlobalStatus;

use super::*;
use crate::state::{Command, Outcome, row_keys};
use crate::store::AppliedState;

const WAIT: Duration = Duration::from_millis(10);

/// A leader's applied state and its lock waits, driven the way the log would drive them.
struct Leader {
    state: SharedState,
    waits: LockWaits,
    index: std::sync::atomic::AtomicU64,
}

impl Leader {
    fn new(wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: SharedState::new(AppliedState::default()),
            waits: LockWaits::new(wait, Arc::default()),
            index: Default::default(),
        })
    }

    /// Applies `command` as the state machine does, waking waiters when it may free rows.
    fn apply(&self, command: Command) -> Outcome {
        let index = self
            .index
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let wakes = command.may_release_locks();
        let outcome = self.state.write().tx.apply(index, command);
        if wakes {
            self.state.note_lock_change();
        }
        outcome
    }

    fn begin(&self) -> u64 {
        let begin = Command::Begin {
            address: "10.0.0.1:8091".into(),
            application_id: "shop".into(),
            transaction_service_group: "default_tx_group".into(),
            name: "buy".into(),
            timeout_ms: 60_000,
            now_ms: 0,
        };
        match self.apply(begin) {
            Outcome::Begun { tx_id, .. } => tx_id,
            other => panic!("begin failed: {other:?}"),
        }
    }

    /// A transaction holding row `t:1` through an applied AT branch.
    fn holder(&self) -> u64 {
        self.holding("t:1")
    }

    /// A transaction holding the rows of `lock_key` through an applied AT branch.
    fn holding(&self, lock_key: &str) -> u64 {
        let tx_id = self.begin();
        let registered = self.apply(Command::RegisterBranch {
            tx_id,
            branch_type: BranchType::At,
            resource_id: "db".into(),
            lock_key: lock_key.into(),
            application_data: String::new(),
            client_id: "shop:127.0.0.1:4000".into(),
        });
        assert!(
            matches!(registered, Outcome::Registered { .. }),
            "{registered:?}"
        );
        tx_id
    }

    /// Starts an admission of `lock_key` for `tx_id` in the background.
    fn admit_later(
        self: &Arc<Self>,
        tx_id: u64,
        lock_key: &'static str,
    ) -> tokio::task::JoinHandle<Result<Vec<String>, Rejection>> {
        let leader = self.clone();
        tokio::spawn(async move { leader.admit(tx_id, lock_key, "").await })
    }

    /// Admits an AT registration of `lock_key` for `tx_id`; `Ok` holds the rows it claimed.
    async fn admit(
        &self,
        tx_id: u64,
        lock_key: &str,
        application_data: &str,
    ) -> Result<Vec<String>, Rejection> {
        let keys = row_keys("db", lock_key);
        let registration = Registration {
            tx_id,
            branch_type: BranchType::At,
            keys: &keys,
            application_data,
        };
        let claim = self.waits.admit(&self.state, &registration).await?;
        let claimed = claim.keys.clone();
        claim.taken();
        Ok(claimed)
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_registration_gets_the_row_when_its_holder_commits() {
    let leader = Leader::new(Duration::from_secs(5));
    let holder = leader.holder();
    let waiter = leader.begin();
    let started = Instant::now();
    let admitted = tokio::spawn({
        let leader = leader.clone();
        async move { leader.admit(waiter, "t:1", "").await }
    });
    tokio::time::sleep(Duration::from_millis(3)).await;
    assert!(
        !admitted.is_finished(),
        "it waits while the holder is Begin"
    );
    leader.apply(Command::Commit {
        tx_id: holder,
        now_ms: 1,
    });
    let claimed = admitted.await.expect("joins").expect("admitted");
    assert_eq!(claimed, ["db^^^t^^^1"]);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(3),
        "handed over when freed, not at the end of the wait"
    );
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_bounded_and_ends_in_the_conflict_naming_the_holder() {
    let leader = Leader::new(WAIT);
    let holder = leader.holder();
    let waiter = leader.begin();
    let started = Instant::now();
    let refused = leader.admit(waiter, "t:1", "").await.expect_err("refused");
    assert_eq!(started.elapsed(), WAIT);
    assert_eq!(refused.code, Code::LockKeyConflict);
    assert!(
        refused.message.contains(&format!("10.0.0.1:8091:{holder}")),
        "{}",
        refused.message
    );
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_starts_to_roll_back_ends_the_wait_at_once() {
    let leader = Leader::new(Duration::from_secs(5));
    let holder = leader.holder();
    let waiter = leader.begin();
    let started = Instant::now();
    let refused = tokio::spawn({
        let leader = leader.clone();
        async move { leader.admit(waiter, "t:1", r#"{"autoCommit":false}"#).await }
    });
    tokio::time::sleep(Duration::from_millis(2)).await;
    leader.apply(Command::Rollback { tx_id: holder });
    let refused = refused.await.expect("joins").expect_err("refused");
    assert_eq!(
        refused.code,
        Code::LockKeyConflictFailFast,
        "its undo needs the row the requester holds locally"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(2));
}

#[tokio::test(start_paused = true)]
async fn a_holder_already_rolling_back_is_not_waited_for() {
    let leader = Leader::new(Duration::from_secs(5));
    let holder = leader.holder();
    leader.apply(Command::Rollback { tx_id: holder });
    let state = leader.state.read().tx.status(holder);
    assert_eq!(state, Some(GlobalStatus::Rollbacking));
    let waiter = leader.begin();
    let started = Instant::now();
    let refused = leader.admit(waiter, "t:1", "").await.expect_err("refused");
    assert_eq!(
        refused.code,
        Code::LockKeyConflict,
        "autoCommit on: the client rolls back its statement and retries"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn without_a_wait_a_conflict_is_answered_at_once() {
    let leader = Leader::new(Duration::ZERO);
    leader.holder();
    let waiter = leader.begin();
    let started = Instant::now();
    let refused = leader.admit(waiter, "t:1", "").await.expect_err("refused");
    assert_eq!(refused.code, Code::LockKeyConflict);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn rows_being_registered_are_claimed_until_the_registration_is_applied() {
    let leader = Leader::new(Duration::from_secs(5));
    let (first, second) = (leader.begin(), leader.begin());
    let keys = row_keys("db", "t:1,2");
    let registration = Registration {
        tx_id: first,
        branch_type: BranchType::At,
        keys: &keys,
        application_data: "",
    };
    let claim = leader
        .waits
        .admit(&leader.state, &registration)
        .await
        .expect("free rows are admitted");

    // The same transaction re-enters its own claim; another waits for it.
    assert_eq!(
        leader.admit(first, "t:2,3", "").await.expect("re-entrant"),
        ["db^^^t^^^3"]
    );
    let waiting = tokio::spawn({
        let leader = leader.clone();
        async move { leader.admit(second, "t:2", "").await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!waiting.is_finished(), "row 2 is claimed by the first");

    // The first registration is refused when applied (say its transaction ended): its
    // claim goes, and the waiter takes the row.
    drop(claim);
    assert_eq!(
        waiting.await.expect("joins").expect("admitted"),
        ["db^^^t^^^2"]
    );
}

#[tokio::test(start_paused = true)]
async fn branches_that_lock_nothing_are_not_held_up() {
    let leader = Leader::new(Duration::from_secs(5));
    leader.holder();
    let waiter = leader.begin();
    let registration = Registration {
        tx_id: waiter,
        branch_type: BranchType::Tcc,
        keys: &[],
        application_data: "",
    };
    let claim = leader
        .waits
        .admit(&leader.state, &registration)
        .await
        .expect("a TCC branch takes no rows");
    assert!(claim.keys.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_would_close_a_deadlock_is_refused_at_once() {
    let leader = Leader::new(Duration::from_secs(5));
    let (first, second) = (leader.holding("t:1"), leader.holding("t:2"));
    let first_waits = leader.admit_later(first, "t:2");
    tokio::time::sleep(Duration::from_millis(1)).await;

    let started = Instant::now();
    let refused = leader.admit(second, "t:1", "").await.expect_err("refused");
    assert_eq!(started.elapsed(), Duration::ZERO, "no wait");
    assert_eq!(
        refused.code,
        Code::LockKeyConflictFailFast,
        "ends the client's retries, so its transaction rolls back"
    );
    assert!(refused.message.contains("deadlock"), "{}", refused.message);
    assert!(!first_waits.is_finished(), "the other one goes on waiting");

    // The victim rolls back: a holder rolling back is not waited for (the survivor retries
    // as a client does), and once its branch is undone the row is free.
    leader.apply(Command::Rollback { tx_id: second });
    let refused_while_undoing = first_waits.await.expect("joins");
    assert_eq!(
        refused_while_undoing.map_err(|r| r.code),
        Err(Code::LockKeyConflict)
    );
    leader.apply(Command::BranchesDone {
        tx_id: second,
        results: vec![(second + 1, txmesh_seata::BranchStatus::PhaseTwoRollbacked)],
    });
    assert_eq!(
        leader.admit(first, "t:2", "").await.map_err(|r| r.code),
        Ok(vec!["db^^^t^^^2".to_owned()])
    );
}

#[tokio::test(start_paused = true)]
async fn a_cycle_through_several_transactions_is_found() {
    let leader = Leader::new(Duration::from_secs(5));
    let (a, b, c) = (
        leader.holding("t:1"),
        leader.holding("t:2"),
        leader.holding("t:3"),
    );
    let a_waits = leader.admit_later(a, "t:2");
    let b_waits = leader.admit_later(b, "t:3");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let refused = leader.admit(c, "t:1", "").await.expect_err("refused");
    assert_eq!(refused.code, Code::LockKeyConflictFailFast);
    assert!(!a_waits.is_finished() && !b_waits.is_finished());
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_waiter_is_no_deadlock() {
    let leader = Leader::new(WAIT);
    let (a, _b) = (leader.holding("t:1"), leader.holding("t:2"));
    let a_waits = leader.admit_later(a, "t:2");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let c = leader.begin();
    let refused = leader.admit(c, "t:1", "").await.expect_err("refused");
    assert_eq!(
        refused.code,
        Code::LockKeyConflict,
        "c waits for a, which waits for b: a chain, not a cycle"
    );
    assert_eq!(
        a_waits.await.expect("joins").map_err(|r| r.code),
        Err(Code::LockKeyConflict)
    );
}
