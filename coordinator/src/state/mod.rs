//! The replicated state machine: global sessions, branches and row locks, changed only by
//! applying [`Command`]s. Applying is deterministic (no clock, no I/O, no randomness): ids
//! come from the log index, times from the command.

mod command;
mod finished;
mod locks;
mod session;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use txmesh_seata::{BranchStatus, BranchType, GlobalStatus, TransactionExceptionCode as Code};

pub use command::{Command, Outcome, Rejection};
pub use finished::{FINISHED_CAPACITY, FinishedLog};
pub use locks::{LockOwner, LockTable, branch_row_keys, row_keys};
pub use session::{
    BranchSession, Direction, GlobalSession, is_timeout_family, phase_two_direction,
};

/// Everything the coordinator knows about transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxState {
    sessions: BTreeMap<u64, GlobalSession>,
    locks: LockTable,
    /// `(deadline_ms, tx_id)` of every `Begin` transaction: the timeout driver reads the
    /// front instead of scanning everything.
    deadlines: BTreeSet<(u64, u64)>,
    finished: FinishedLog,
}

impl TxState {
    /// Applies the command at log `index`.
    pub fn apply(&mut self, index: u64, command: Command) -> Outcome {
        match command {
            Command::Begin {
                address,
                application_id,
                transaction_service_group,
                name,
                timeout_ms,
                now_ms,
            } => {
                let session = GlobalSession {
                    tx_id: index,
                    xid: format!("{address}:{index}"),
                    application_id,
                    transaction_service_group,
                    name,
                    timeout_ms,
                    begin_ms: now_ms,
                    status: GlobalStatus::Begin,
                    branches: Vec::new(),
                };
                let outcome = Outcome::Begun {
                    tx_id: index,
                    xid: session.xid.clone(),
                };
                self.deadlines.insert((session.deadline_ms(), index));
                self.sessions.insert(index, session);
                outcome
            }
            Command::RegisterBranch {
                tx_id,
                branch_type,
                resource_id,
                lock_key,
                application_data,
                client_id,
            } => {
                let branch = BranchSession {
                    branch_id: index,
                    branch_type,
                    resource_id,
                    lock_key,
                    application_data,
                    client_id,
                    status: BranchStatus::Registered,
                    locks: Vec::new(),
                };
                self.register(tx_id, branch)
            }
            Command::ReportBranch {
                tx_id,
                branch_id,
                status,
                application_data,
            } => self.report_branch(tx_id, branch_id, status, application_data),
            Command::Commit { tx_id, now_ms } => self.commit(tx_id, now_ms),
            Command::Rollback { tx_id } => {
                self.when_begin(tx_id, |state| state.start_rollback(tx_id, false))
            }
            Command::Timeout { tx_id, now_ms } => self.when_begin(tx_id, |state| {
                match state
                    .sessions
                    .get(&tx_id)
                    .is_some_and(|s| now_ms >= s.deadline_ms())
                {
                    true => state.start_rollback(tx_id, true),
                    false => GlobalStatus::Begin,
                }
            }),
            Command::BranchesDone { tx_id, results } => self.branches_done(tx_id, &results),
            Command::Retrying { tx_id } => self.set_status(tx_id, retrying_status),
            Command::GiveUp { tx_id } => self.set_status(tx_id, given_up_status),
            Command::Report { tx_id, status } => self.report(tx_id, status),
            Command::Resume {
                tx_id,
                commit,
                now_ms,
            } => self.resume(tx_id, commit, now_ms),
        }
    }

    /// A live session.
    pub fn session(&self, tx_id: u64) -> Option<&GlobalSession> {
        self.sessions.get(&tx_id)
    }

    /// Every live session, oldest first.
    pub fn sessions(&self) -> impl DoubleEndedIterator<Item = &GlobalSession> {
        self.sessions.values()
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The status of a live or recently finished transaction.
    pub fn status(&self, tx_id: u64) -> Option<GlobalStatus> {
        self.sessions
            .get(&tx_id)
            .map(|s| s.status)
            .or_else(|| self.finished.get(tx_id))
    }

    /// The row-lock table.
    pub fn locks(&self) -> &LockTable {
        &self.locks
    }

    /// The earliest deadline of a `Begin` transaction.
    pub fn next_deadline(&self) -> Option<(u64, u64)> {
        self.deadlines.first().copied()
    }

    /// `Begin` transactions whose deadline is at or before `now_ms`, earliest first.
    pub fn expired(&self, now_ms: u64) -> impl Iterator<Item = u64> + '_ {
        self.deadlines
            .iter()
            .take_while(move |(deadline, _)| *deadline <= now_ms)
            .map(|(_, tx)| *tx)
    }

    /// Whether every row of `lock_key` is free or held by `tx_id` (GlobalLockQuery). Only AT
    /// branches lock rows.
    pub fn lockable(
        &self,
        tx_id: Option<u64>,
        branch_type: BranchType,
        resource_id: &str,
        lock_key: &str,
    ) -> bool {
        if branch_type != BranchType::At {
            return true;
        }
        let keys = row_keys(resource_id, lock_key);
        self.locks
            .first_conflict(tx_id.unwrap_or(0), &keys)
            .is_none()
    }

    /// The status as Seata reports it: `Finished` for a transaction it does not know.
    pub fn status_or_finished(&self, tx_id: u64) -> GlobalStatus {
        self.status(tx_id).unwrap_or(GlobalStatus::Finished)
    }

    /// Runs `decide` if the transaction is `Begin`; otherwise reports its status unchanged.
    fn when_begin(
        &mut self,
        tx_id: u64,
        decide: impl FnOnce(&mut Self) -> GlobalStatus,
    ) -> Outcome {
        match self.sessions.get(&tx_id).map(|s| s.status) {
            Some(GlobalStatus::Begin) => Outcome::Status(decide(self)),
            _ => Outcome::Status(self.status_or_finished(tx_id)),
        }
    }

    /// Why registering a branch that locks `keys` ([`branch_row_keys`]) would be refused now,
    /// if it would. The leader asks before proposing, so a conflict on a hot row costs no log
    /// entry; applying asks again.
    pub fn registration_refusal(
        &self,
        tx_id: u64,
        branch_type: BranchType,
        keys: &[String],
        application_data: &str,
    ) -> Option<Rejection> {
        let Some(session) = self.sessions.get(&tx_id) else {
            let message = format!("global transaction {tx_id} does not exist");
            return Some(Rejection::new(Code::GlobalTransactionNotExist, message));
        };
        // Saga forward recovery registers branches after the decision, as Seata allows.
        if session.status != GlobalStatus::Begin && branch_type != BranchType::Saga {
            let message = format!(
                "global transaction {} is {}, not Begin",
                session.xid, session.status
            );
            return Some(Rejection::new(Code::GlobalTransactionNotActive, message));
        }
        if branch_type != BranchType::At {
            return None;
        }
        self.lock_conflict(tx_id, keys, application_data)
    }

    /// The transactions `tx_id` would wait for to get these rows: those holding one, if every
    /// such holder is still `Begin`, so that its decision will free them. `None` when waiting
    /// cannot help: no row is held by another, or a holder is rolling back (its undo may need
    /// the row the requester holds in its local database transaction) or failed and keeps its
    /// rows for an operator.
    pub fn lock_holders_to_wait_for(&self, tx_id: u64, keys: &[String]) -> Option<Vec<u64>> {
        let mut holders = Vec::new();
        for key in keys {
            let Some(owner) = self.locks.owner(key).filter(|o| o.tx_id != tx_id) else {
                continue;
            };
            match self.sessions.get(&owner.tx_id).map(|s| s.status) {
                Some(GlobalStatus::Begin) if !holders.contains(&owner.tx_id) => {
                    holders.push(owner.tx_id)
                }
                Some(GlobalStatus::Begin) => {}
                _ => return None,
            }
        }
        (!holders.is_empty()).then_some(holders)
    }

    fn register(&mut self, tx_id: u64, mut branch: BranchSession) -> Outcome {
        let keys = branch_row_keys(branch.branch_type, &branch.resource_id, &branch.lock_key);
        let refusal =
            self.registration_refusal(tx_id, branch.branch_type, &keys, &branch.application_data);
        if let Some(rejection) = refusal {
            return Outcome::Rejected(rejection);
        }
        branch.locks = self.locks.acquire(tx_id, branch.branch_id, keys);
        let branch_id = branch.branch_id;
        if let Some(session) = self.sessions.get_mut(&tx_id) {
            session.branches.push(branch);
        }
        Outcome::Registered { branch_id }
    }

    /// A conflict names the holder; it is fail-fast when the holder is rolling back and the
    /// requester holds a local transaction (`autoCommit: false`), since waiting would deadlock
    /// with the holder's undo.
    fn lock_conflict(
        &self,
        tx_id: u64,
        keys: &[String],
        application_data: &str,
    ) -> Option<Rejection> {
        let (key, owner) = self.locks.first_conflict(tx_id, keys)?;
        let holder = self.sessions.get(&owner.tx_id);
        let holder_xid = holder.map_or_else(|| owner.tx_id.to_string(), |s| s.xid.clone());
        let holder_rolling_back =
            holder.and_then(|s| phase_two_direction(s.status)) == Some(Direction::Rollback);
        let code = if holder_rolling_back && holds_local_transaction(application_data) {
            Code::LockKeyConflictFailFast
        } else {
            Code::LockKeyConflict
        };
        Some(Rejection::new(
            code,
            format!(
                "global lock on {key} is held by {holder_xid} (branch {})",
                owner.branch_id
            ),
        ))
    }

    fn report_branch(
        &mut self,
        tx_id: u64,
        branch_id: u64,
        status: BranchStatus,
        data: String,
    ) -> Outcome {
        let Some(session) = self.sessions.get_mut(&tx_id) else {
            return reject(
                Code::GlobalTransactionNotExist,
                format!("global transaction {tx_id} does not exist"),
            );
        };
        let global = session.status;
        let Some(branch) = session.branch_mut(branch_id) else {
            return reject(
                Code::BranchTransactionNotExist,
                format!("branch {branch_id} does not exist in {tx_id}"),
            );
        };
        branch.status = status;
        branch.application_data = data;
        Outcome::Status(global)
    }

    fn commit(&mut self, tx_id: u64, now_ms: u64) -> Outcome {
        self.when_begin(tx_id, |state| {
            let Some(session) = state.sessions.get_mut(&tx_id) else {
                return GlobalStatus::Finished;
            };
            if now_ms > session.deadline_ms() {
                return state.start_rollback(tx_id, true);
            }
            state.deadlines.remove(&(session.deadline_ms(), tx_id));
            session.branches.retain(|b| !b.failed_in_phase_one());
            // The decision is final: AT rows are settled, other writers may proceed.
            for branch in &mut session.branches {
                state.locks.release(&std::mem::take(&mut branch.locks));
            }
            if session.branches.is_empty() {
                return state.finish(tx_id, GlobalStatus::Committed);
            }
            session.status = match session.commits_async() {
                true => GlobalStatus::AsyncCommitting,
                false => GlobalStatus::Committing,
            };
            session.status
        })
    }

    /// Moves a `Begin` transaction to rollback; branches that failed in phase one need no call.
    fn start_rollback(&mut self, tx_id: u64, timed_out: bool) -> GlobalStatus {
        let Some(session) = self.sessions.get_mut(&tx_id) else {
            return GlobalStatus::Finished;
        };
        self.deadlines.remove(&(session.deadline_ms(), tx_id));
        let (failed, live): (Vec<_>, Vec<_>) = session
            .branches
            .drain(..)
            .partition(|b| b.failed_in_phase_one());
        session.branches = live;
        failed.iter().for_each(|b| self.locks.release(&b.locks));
        let (rolling, done) = match timed_out {
            true => (
                GlobalStatus::TimeoutRollbacking,
                GlobalStatus::TimeoutRollbacked,
            ),
            false => (GlobalStatus::Rollbacking, GlobalStatus::Rollbacked),
        };
        if session.branches.is_empty() {
            return self.finish(tx_id, done);
        }
        session.status = rolling;
        rolling
    }

    /// Records branch results in order, stopping at the first one refused.
    fn branches_done(&mut self, tx_id: u64, results: &[(u64, BranchStatus)]) -> Outcome {
        let mut outcome = Outcome::Status(self.status_or_finished(tx_id));
        for &(branch_id, status) in results {
            outcome = self.branch_done(tx_id, branch_id, status);
            if !matches!(outcome, Outcome::Status(_)) {
                break;
            }
        }
        outcome
    }

    fn branch_done(&mut self, tx_id: u64, branch_id: u64, status: BranchStatus) -> Outcome {
        let Some(session) = self.sessions.get_mut(&tx_id) else {
            return Outcome::Status(self.status_or_finished(tx_id));
        };
        let Some(direction) = phase_two_direction(session.status) else {
            let message = format!("{} is {}, not in phase two", session.xid, session.status);
            return reject(Code::GlobalTransactionStatusInvalid, message);
        };
        let timed_out = is_timeout_family(session.status);
        match (direction, status) {
            (Direction::Commit, BranchStatus::PhaseTwoCommitted)
            | (Direction::Rollback, BranchStatus::PhaseTwoRollbacked) => {
                if let Some(at) = session
                    .branches
                    .iter()
                    .position(|b| b.branch_id == branch_id)
                {
                    let branch = session.branches.remove(at);
                    self.locks.release(&branch.locks);
                }
            }
            (Direction::Commit, BranchStatus::PhaseTwoCommitFailedUnretryable) => {
                session.status = GlobalStatus::CommitFailed;
            }
            (Direction::Rollback, BranchStatus::PhaseTwoRollbackFailedUnretryable) => {
                session.status = if timed_out {
                    GlobalStatus::TimeoutRollbackFailed
                } else {
                    GlobalStatus::RollbackFailed
                };
            }
            (_, other) => {
                let message = format!(
                    "branch status {other} does not end phase two of {}",
                    session.xid
                );
                return reject(Code::GlobalTransactionStatusInvalid, message);
            }
        }
        if session.branches.is_empty() && phase_two_direction(session.status).is_some() {
            let done = match (direction, timed_out) {
                (Direction::Commit, _) => GlobalStatus::Committed,
                (Direction::Rollback, true) => GlobalStatus::TimeoutRollbacked,
                (Direction::Rollback, false) => GlobalStatus::Rollbacked,
            };
            return Outcome::Status(self.finish(tx_id, done));
        }
        Outcome::Status(session.status)
    }

    fn set_status(&mut self, tx_id: u64, next: fn(GlobalStatus) -> GlobalStatus) -> Outcome {
        match self.sessions.get_mut(&tx_id) {
            Some(session) => {
                session.status = next(session.status);
                Outcome::Status(session.status)
            }
            None => Outcome::Status(self.status_or_finished(tx_id)),
        }
    }

    /// Saga TMs report outcomes themselves; a final one ends the transaction.
    fn report(&mut self, tx_id: u64, status: GlobalStatus) -> Outcome {
        let Some(session) = self.sessions.get_mut(&tx_id) else {
            return Outcome::Status(status);
        };
        use GlobalStatus as G;
        if matches!(
            status,
            G::Committed | G::Rollbacked | G::TimeoutRollbacked | G::Finished
        ) {
            return Outcome::Status(self.finish(tx_id, status));
        }
        if session.status == G::Begin {
            self.deadlines.remove(&(session.deadline_ms(), tx_id));
        }
        session.status = status;
        Outcome::Status(status)
    }

    /// An operator sends a stuck transaction through phase two again, in the direction it
    /// was already going (a partly undone transaction cannot be committed).
    fn resume(&mut self, tx_id: u64, commit: bool, now_ms: u64) -> Outcome {
        use GlobalStatus as G;
        let Some(session) = self.sessions.get_mut(&tx_id) else {
            return reject(
                Code::GlobalTransactionNotExist,
                format!("global transaction {tx_id} is not live"),
            );
        };
        if session.status == G::Begin {
            return match commit {
                true => self.commit(tx_id, now_ms),
                false => Outcome::Status(self.start_rollback(tx_id, false)),
            };
        }
        let next = match (commit, session.status) {
            (true, G::AsyncCommitting) => G::AsyncCommitting,
            (
                true,
                G::Committing
                | G::CommitRetrying
                | G::CommitFailed
                | G::CommitRetryTimeout
                | G::StopCommitOrCommitRetry,
            ) => G::CommitRetrying,
            (
                false,
                G::TimeoutRollbacking | G::TimeoutRollbackRetrying | G::TimeoutRollbackFailed,
            ) => G::TimeoutRollbackRetrying,
            (
                false,
                G::Rollbacking
                | G::RollbackRetrying
                | G::RollbackFailed
                | G::RollbackRetryTimeout
                | G::StopRollbackOrRollbackRetry,
            ) => G::RollbackRetrying,
            (_, current) => {
                let verb = if commit { "commit" } else { "roll back" };
                let message = format!("cannot {verb} {}: it is {current}", session.xid);
                return reject(Code::GlobalTransactionStatusInvalid, message);
            }
        };
        session.status = next;
        Outcome::Status(next)
    }

    /// Ends a transaction: its locks go, its final status is remembered.
    fn finish(&mut self, tx_id: u64, status: GlobalStatus) -> GlobalStatus {
        if let Some(session) = self.sessions.remove(&tx_id) {
            self.deadlines.remove(&(session.deadline_ms(), tx_id));
            session
                .branches
                .iter()
                .for_each(|b| self.locks.release(&b.locks));
        }
        self.finished.record(tx_id, status);
        status
    }
}

fn reject(code: Code, message: String) -> Outcome {
    Outcome::Rejected(Rejection::new(code, message))
}

/// `Committing` → `CommitRetrying` and so on; other statuses stay.
fn retrying_status(status: GlobalStatus) -> GlobalStatus {
    use GlobalStatus as G;
    match status {
        G::Committing => G::CommitRetrying,
        G::Rollbacking => G::RollbackRetrying,
        G::TimeoutRollbacking => G::TimeoutRollbackRetrying,
        other => other,
    }
}

/// The *RetryTimeout status for a transaction still in phase two.
fn given_up_status(status: GlobalStatus) -> GlobalStatus {
    match phase_two_direction(status) {
        Some(Direction::Commit) => GlobalStatus::CommitRetryTimeout,
        Some(Direction::Rollback) => GlobalStatus::RollbackRetryTimeout,
        None => status,
    }
}

/// Whether an AT branch's application data says the business code holds a local transaction.
fn holds_local_transaction(application_data: &str) -> bool {
    let compact: String = application_data
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    compact.contains("\"autoCommit\":false")
}

#[cfg(test)]
mod tests;
