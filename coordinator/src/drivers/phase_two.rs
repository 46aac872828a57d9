//! Phase two: one task per transaction sends BranchCommit (in registration order) or
//! BranchRollback (in reverse order) to the branches' resource managers, records the branches
//! that ended in one command per pass, and retries retryable failures with exponential
//! back-off per transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::watch;
use txmesh_seata::message::BranchEndRequest;
use txmesh_seata::{BranchStatus, GlobalStatus, Message};

use crate::config::RecoveryTuning;
use crate::node::{Node, ProposeError};
use crate::server::{DispatchError, RmRegistry};
use crate::state::{BranchSession, Command, Direction, Outcome, phase_two_direction};
use crate::tc::now_ms;

/// Publishes the status a first pass ended in, once.
fn settle(first_pass: &watch::Sender<Option<GlobalStatus>>, status: GlobalStatus) {
    first_pass.send_if_modified(|settled| match settled {
        Some(_) => false,
        None => {
            *settled = Some(status);
            true
        }
    });
}

/// Whether a branch's phase two succeeded.
fn is_success(status: BranchStatus) -> bool {
    matches!(
        status,
        BranchStatus::PhaseTwoCommitted | BranchStatus::PhaseTwoRollbacked
    )
}

/// Drives transactions through phase two.
pub struct PhaseTwo {
    node: Arc<Node>,
    registry: Arc<RmRegistry>,
    tuning: RecoveryTuning,
    /// Transactions being driven, each with the status its first pass ended in.
    runs: Mutex<HashMap<u64, watch::Receiver<Option<GlobalStatus>>>>,
}

/// How one pass over a transaction's branches ended.
enum Pass {
    /// No more phase-two work.
    Ended,
    /// Some branch needs another try later.
    Retry(String),
    /// This node cannot continue (no longer leader, shutting down).
    Stop(ProposeError),
}

impl PhaseTwo {
    /// A driver dispatching through `registry`.
    pub fn new(node: Arc<Node>, registry: Arc<RmRegistry>, tuning: RecoveryTuning) -> Arc<Self> {
        Arc::new(Self {
            node,
            registry,
            tuning,
            runs: Mutex::new(HashMap::new()),
        })
    }

    /// Starts driving `tx_id` unless it already is; one run per transaction, so a TM's request
    /// and the recovery never race on the same branches.
    pub fn start(self: &Arc<Self>, tx_id: u64) -> watch::Receiver<Option<GlobalStatus>> {
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(run) = runs.get(&tx_id) {
            return run.clone();
        }
        let (first_pass, receiver) = watch::channel(None);
        runs.insert(tx_id, receiver.clone());
        tokio::spawn(self.clone().drive(tx_id, first_pass));
        receiver
    }

    /// Drives `tx_id` and waits for its first pass: the final status, or the retrying status.
    pub async fn first_pass(self: &Arc<Self>, tx_id: u64) -> GlobalStatus {
        let mut first = self.start(tx_id);
        let ended = first
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|status| *status);
        ended.unwrap_or_else(|| self.node.status(tx_id))
    }

    /// Resumes every transaction that is in phase two (after a start or a leadership change).
    pub fn resume_all(self: &Arc<Self>) -> usize {
        let pending: Vec<u64> = {
            let state = self.node.state.read();
            state
                .tx
                .sessions()
                .filter(|s| phase_two_direction(s.status).is_some())
                .map(|s| s.tx_id)
                .collect()
        };
        pending.iter().for_each(|tx_id| drop(self.start(*tx_id)));
        pending.len()
    }

    /// How many transactions are being driven.
    pub fn running(&self) -> usize {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    async fn drive(self: Arc<Self>, tx_id: u64, first_pass: watch::Sender<Option<GlobalStatus>>) {
        let mut delay = Duration::from_millis(self.tuning.retry_initial_ms);
        let mut marked_retrying = false;
        loop {
            match self.pass(tx_id).await {
                Pass::Ended => break,
                Pass::Stop(error) => {
                    tracing::info!(tx_id, %error, "phase two paused");
                    break;
                }
                Pass::Retry(reason) => {
                    tracing::debug!(tx_id, %reason, ?delay, "phase two will be retried");
                    if !marked_retrying {
                        marked_retrying = true;
                        if let Err(error) = self.node.propose(Command::Retrying { tx_id }).await {
                            tracing::info!(tx_id, %error, "phase two paused");
                            break;
                        }
                    }
                    settle(&first_pass, self.node.status(tx_id));
                    if self.out_of_time(tx_id) {
                        tracing::warn!(tx_id, %reason, "phase two retries exhausted; kept for an operator");
                        let _ = self.node.propose(Command::GiveUp { tx_id }).await;
                        break;
                    }
                    self.node.metrics.count_phase_two_retry();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(self.tuning.retry_max_ms));
                }
            }
        }
        settle(&first_pass, self.node.status(tx_id));
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&tx_id);
    }

    /// Whether the configured retry time (since begin, as in Seata) has passed.
    fn out_of_time(&self, tx_id: u64) -> bool {
        let state = self.node.state.read();
        let Some(session) = state.tx.session(tx_id) else {
            return false;
        };
        let limit = match phase_two_direction(session.status) {
            Some(Direction::Commit) => self.tuning.max_commit_retry_ms,
            Some(Direction::Rollback) => self.tuning.max_rollback_retry_ms,
            None => None,
        };
        limit.is_some_and(|limit| now_ms() > session.begin_ms.saturating_add(limit))
    }

    /// One pass: every remaining branch once, in order (AT-only commits all at once), then one
    /// record of every branch that ended, so a pass costs one replicated write.
    async fn pass(&self, tx_id: u64) -> Pass {
        // RMs stay connected to a deposed leader; only the new one may drive them.
        if !self.node.is_leader() {
            return Pass::Stop(ProposeError::NotLeader { leader: None });
        }
        let (xid, status, mut branches) = {
            let state = self.node.state.read();
            match state.tx.session(tx_id) {
                Some(s) => (s.xid.clone(), s.status, s.branches.clone()),
                None => return Pass::Ended,
            }
        };
        let Some(direction) = phase_two_direction(status) else {
            return Pass::Ended;
        };
        if direction == Direction::Rollback {
            branches.reverse();
        }
        let mut ended = Vec::new();
        let mut retry = None;
        if status == GlobalStatus::AsyncCommitting {
            let answers = join_all(
                branches
                    .iter()
                    .map(|b| self.branch_result(&xid, b, direction)),
            )
            .await;
            for (branch, answer) in branches.iter().zip(answers) {
                match answer {
                    Ok(status) => ended.push((branch.branch_id, status)),
                    Err(reason) => retry = Some(reason),
                }
            }
            // Successes first: a failure for good ends phase two and refuses later results.
            ended.sort_by_key(|&(_, status)| !is_success(status));
        } else {
            for branch in &branches {
                match self.branch_result(&xid, branch, direction).await {
                    Ok(status) => {
                        ended.push((branch.branch_id, status));
                        if !is_success(status) {
                            break;
                        }
                    }
                    Err(reason) => {
                        retry = Some(reason);
                        break;
                    }
                }
            }
        }
        if !ended.is_empty() {
            let results = ended;
            match self
                .node
                .propose(Command::BranchesDone { tx_id, results })
                .await
            {
                Ok(Outcome::Status(_)) => {}
                Ok(other) => return Pass::Retry(format!("recording phase two gave {other:?}")),
                Err(error) => return Pass::Stop(error),
            }
        }
        match retry {
            Some(reason) => Pass::Retry(reason),
            None => Pass::Ended,
        }
    }

    /// Sends phase two to one branch: the status that ends it, or why it must be retried.
    async fn branch_result(
        &self,
        xid: &str,
        branch: &BranchSession,
        direction: Direction,
    ) -> Result<BranchStatus, String> {
        let status = self
            .dispatch(xid, branch, direction)
            .await
            .map_err(|error| format!("branch {}: {error}", branch.branch_id))?;
        let ends = is_success(status)
            || matches!(
                status,
                BranchStatus::PhaseTwoCommitFailedUnretryable
                    | BranchStatus::PhaseTwoRollbackFailedUnretryable
            );
        match ends {
            true => Ok(status),
            false => Err(format!("branch {} answered {status}", branch.branch_id)),
        }
    }

    /// The branch status the resource manager answered. A failed answer counts only when it
    /// says the failure is for good; otherwise it is retried, like no answer.
    async fn dispatch(
        &self,
        xid: &str,
        branch: &BranchSession,
        direction: Direction,
    ) -> Result<BranchStatus, DispatchError> {
        let conn = self
            .registry
            .route(&branch.resource_id, &branch.client_id, branch.branch_type)
            .ok_or_else(|| DispatchError::NoConnection(branch.resource_id.clone()))?;
        let request = BranchEndRequest {
            xid: xid.to_owned(),
            branch_id: branch.branch_id as i64,
            branch_type: branch.branch_type,
            resource_id: branch.resource_id.clone(),
            application_data: branch.application_data.clone(),
        };
        let message = match direction {
            Direction::Commit => Message::BranchCommitRequest(request),
            Direction::Rollback => Message::BranchRollbackRequest(request),
        };
        let timeout = Duration::from_millis(self.tuning.phase_two_timeout_ms);
        let sent = Instant::now();
        let answer = conn.request(message, timeout).await;
        self.node.metrics.observe_phase_two(sent.elapsed());
        let response = match answer? {
            Message::BranchCommitResponse(r) | Message::BranchRollbackResponse(r) => r,
            other => {
                let error = txmesh_seata::BodyError::UnknownTypeCode(other.type_code());
                return Err(DispatchError::Undecodable(error));
            }
        };
        let unretryable = matches!(
            response.branch_status,
            BranchStatus::PhaseTwoCommitFailedUnretryable
                | BranchStatus::PhaseTwoRollbackFailedUnretryable
        );
        match response.result.is_success() || unretryable {
            true => Ok(response.branch_status),
            false => Ok(match direction {
                Direction::Commit => BranchStatus::PhaseTwoCommitFailedRetryable,
                Direction::Rollback => BranchStatus::PhaseTwoRollbackFailedRetryable,
            }),
        }
    }
}
