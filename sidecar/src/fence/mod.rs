//! The durable TCC fence (seata-tc-semantics.md §6.2), kept by the sidecar in RocksDB so the
//! application needs none of its own:
//! - **idempotence**: a Confirm/Cancel delivered again after the application did it is
//!   answered from the fence, without calling the application;
//! - **empty rollback**: a Cancel for a branch never registered here is acknowledged without
//!   calling the application, and recorded;
//! - **anti-suspension**: a register for an XID already rolled back here is refused, so a
//!   late try cannot freeze resources nobody will release.
//!
//! Records that must hold before the application acts are synced before anyone is answered:
//! a register's intent (written while the coordinator registers the branch, and standing in
//! for the branch's own record, which is only written) and an empty rollback. The record of a done Confirm/Cancel is written (readable
//! at once) before the coordinator is answered and synced moments later: losing it in a crash
//! matters only if the coordinator also missed the answer and redelivers, whereas syncing
//! first would turn every crash in that window into a redelivery. Work on one branch is
//! serialized by a lock per branch, so concurrent duplicates reach the application once. A
//! crash between the application's answer and the sync can still deliver an action once more:
//! confirm and cancel must tolerate that, as they must in Seata.

mod locks;
mod store;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use locks::KeyLocks;
use store::Durability;
use store::Store;
pub use store::{Record, State, now_ms};

/// Branch id under which an XID's uncertain registers are recorded (coordinators never give 0).
const XID_MARKER: i64 = 0;
/// Branch id under which registers going through this sidecar are recorded (nor -1).
const INTENT_MARKER: i64 = -1;

/// The fence cannot do its job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    /// The database cannot be opened.
    #[error("cannot open the fence at {path}: {reason}")]
    Open {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// A read failed.
    #[error("fence read failed: {0}")]
    Read(String),
    /// A write failed.
    #[error("fence write failed: {0}")]
    Write(String),
    /// A stored record does not decode.
    #[error("a fence record is corrupt")]
    Corrupt,
    /// The fence is closing.
    #[error("the fence is closed")]
    Closed,
}

/// Which phase-two action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Make the try's effect final.
    Confirm,
    /// Undo the try's effect.
    Cancel,
}

impl Phase {
    /// The name used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Confirm => "confirm",
            Phase::Cancel => "cancel",
        }
    }
}

/// What a phase-two action came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done (now or before).
    Done,
    /// Not done; the coordinator should try again later.
    RetryLater(String),
    /// Cannot be done, ever.
    Failed(String),
}

/// Why the fence answered without calling the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// The action was done before.
    Duplicate,
    /// A cancel for a branch with no try here.
    EmptyRollback,
    /// A confirm for a branch whose register failed here without a clear outcome: the
    /// application never received its id, so no try ran.
    EmptyCommit,
    /// A confirm for a branch not registered here (it may belong to another instance).
    NoTry,
    /// The opposite action was done before.
    Conflict,
}

impl Hit {
    /// The name used in metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Hit::Duplicate => "duplicate",
            Hit::EmptyRollback => "empty_rollback",
            Hit::EmptyCommit => "empty_commit",
            Hit::NoTry => "no_try",
            Hit::Conflict => "conflict",
        }
    }
}

/// A phase-two decision and whether the fence made it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What the coordinator is told.
    pub verdict: Verdict,
    /// Set when the application was not called.
    pub hit: Option<Hit>,
}

impl Decision {
    fn hit(hit: Hit, verdict: Verdict) -> Self {
        Self {
            verdict,
            hit: Some(hit),
        }
    }
}

/// Whether a try may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryAdmission {
    /// Recorded: phase two will reach the application.
    Recorded,
    /// The XID was already rolled back here: the try must not run.
    AlreadyRolledBack,
}

/// The fence.
pub struct Fence {
    store: Store,
    locks: KeyLocks<(String, i64)>,
}

impl Fence {
    /// Opens (or creates) the fence in `dir`.
    pub fn open(dir: &Path) -> Result<Self, FenceError> {
        Ok(Self {
            store: Store::open(dir)?,
            locks: KeyLocks::default(),
        })
    }

    /// Whether a branch of `xid` was rolled back here (a register would be refused).
    pub fn rolled_back(&self, xid: &str) -> Result<bool, FenceError> {
        let records = self.store.scan_xid(xid)?;
        Ok(records.iter().any(|(_, r)| r.state.is_rolled_back()))
    }

    /// Records that the coordinator registered `branch_id`, unless a cancel got here first.
    pub async fn record_try(
        &self,
        xid: &str,
        branch_id: i64,
        resource_id: &str,
    ) -> Result<TryAdmission, FenceError> {
        let _branch = self.locks.lock((xid.to_owned(), branch_id)).await;
        if self.rolled_back(xid)? {
            return Ok(TryAdmission::AlreadyRolledBack);
        }
        if self.store.get(xid, branch_id)?.is_none() {
            // Not synced: the intent recorded with the register already is, and it stands in
            // for this record if a crash loses it.
            let record = Record::now(State::Tried, resource_id);
            let records = [(xid, branch_id, Some(&record))];
            self.store.write_with(records, Durability::Visible).await?;
        }
        Ok(TryAdmission::Recorded)
    }

    /// Records, durably, that a register for `xid` goes through this sidecar; done while the
    /// coordinator registers the branch, so the fsync costs no time of its own. Until the
    /// branch's own record exists, phase two for `xid` is handed to the application, which
    /// may have run the try.
    pub async fn record_intent(&self, xid: &str, resource_id: &str) -> Result<(), FenceError> {
        let record = Record::now(State::Registering, resource_id);
        self.store
            .write([(xid, INTENT_MARKER, Some(&record))])
            .await
    }

    /// Records that a register for `xid` failed without a clear outcome.
    pub async fn record_uncertain_register(
        &self,
        xid: &str,
        resource_id: &str,
    ) -> Result<(), FenceError> {
        let record = Record::now(State::RegisterUncertain, resource_id);
        self.store.write([(xid, XID_MARKER, Some(&record))]).await
    }

    /// Decides a phase-two action, calling `deliver` (the application) only when the branch
    /// was tried here and the action is not done yet.
    pub async fn phase_two<F, Fut>(
        &self,
        phase: Phase,
        xid: &str,
        branch_id: i64,
        resource_id: &str,
        deliver: F,
    ) -> Result<Decision, FenceError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Verdict>,
    {
        let _branch = self.locks.lock((xid.to_owned(), branch_id)).await;
        let state = match branch_id {
            XID_MARKER | INTENT_MARKER => None,
            _ => self.store.get(xid, branch_id)?.map(|r| r.state),
        };
        // A register went through here but the branch's record is missing (still being
        // written, or lost in a crash before its sync): the try may have run, so the
        // application decides.
        let state = match state {
            None if self.registered_here(xid)? => Some(State::Tried),
            known => known,
        };
        let done = match phase {
            Phase::Confirm => State::Confirmed,
            Phase::Cancel => State::Cancelled,
        };
        let repeated = |s: State| match phase {
            Phase::Confirm => s == State::Confirmed,
            Phase::Cancel => s.is_rolled_back(),
        };
        match state {
            Some(State::Tried) => {
                let verdict = deliver().await;
                if verdict == Verdict::Done {
                    let record = Record::now(done, resource_id);
                    let records = [(xid, branch_id, Some(&record))];
                    self.store.write_with(records, Durability::Visible).await?;
                }
                Ok(Decision { verdict, hit: None })
            }
            Some(s) if repeated(s) => Ok(Decision::hit(Hit::Duplicate, Verdict::Done)),
            Some(s) => {
                tracing::error!(
                    xid,
                    branch_id,
                    ?s,
                    phase = phase.name(),
                    "phase two contradicts what this branch already did"
                );
                let why = format!("the branch was already {s:?} here");
                Ok(Decision::hit(Hit::Conflict, Verdict::Failed(why)))
            }
            None => self.without_try(phase, xid, branch_id, resource_id).await,
        }
    }

    /// Whether a register for `xid` went through here with no register in doubt (a register
    /// in doubt never reached the application, so its branch had no try).
    fn registered_here(&self, xid: &str) -> Result<bool, FenceError> {
        let intent = self.store.get(xid, INTENT_MARKER)?.is_some();
        Ok(intent && self.store.get(xid, XID_MARKER)?.is_none())
    }

    /// A phase-two action for a branch never registered here.
    async fn without_try(
        &self,
        phase: Phase,
        xid: &str,
        branch_id: i64,
        resource_id: &str,
    ) -> Result<Decision, FenceError> {
        match phase {
            Phase::Cancel => {
                let record = Record::now(State::EmptyRollback, resource_id);
                self.store.write([(xid, branch_id, Some(&record))]).await?;
                tracing::info!(xid, branch_id, "empty rollback: no try was registered here");
                Ok(Decision::hit(Hit::EmptyRollback, Verdict::Done))
            }
            Phase::Confirm => {
                let uncertain = self
                    .store
                    .get(xid, XID_MARKER)?
                    .is_some_and(|r| r.state == State::RegisterUncertain);
                if uncertain {
                    let record = Record::now(State::Confirmed, resource_id);
                    self.store.write([(xid, branch_id, Some(&record))]).await?;
                    return Ok(Decision::hit(Hit::EmptyCommit, Verdict::Done));
                }
                // Seata's fence does the same: the branch may be another instance's.
                tracing::warn!(
                    xid,
                    branch_id,
                    "confirm for a branch not registered here; the coordinator will retry"
                );
                Ok(Decision::hit(
                    Hit::NoTry,
                    Verdict::RetryLater("no try was registered through this sidecar".into()),
                ))
            }
        }
    }

    /// Closes the database (at shutdown, so a restart in the same process can open it);
    /// later calls fail with [`FenceError::Closed`].
    pub fn close(&self) {
        self.store.close();
    }

    /// The records of `xid`'s branches.
    pub fn records(&self, xid: &str) -> Result<Vec<(i64, Record)>, FenceError> {
        let mut records = self.store.scan_xid(xid)?;
        records.retain(|(branch_id, _)| *branch_id != XID_MARKER && *branch_id != INTENT_MARKER);
        Ok(records)
    }

    /// Deletes finished records (and uncertain-register markers) last changed more than
    /// `retention` ago; records of branches still waiting for phase two are kept.
    pub async fn collect_garbage(&self, retention: Duration) -> Result<usize, FenceError> {
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms().saturating_sub(retention_ms);
        let expired = self.store.scan_expired(|r| {
            let marker = matches!(r.state, State::RegisterUncertain | State::Registering);
            (r.state.is_final() || marker) && r.updated_at_ms < cutoff
        })?;
        if !expired.is_empty() {
            let deletes = expired.iter().map(|(xid, id)| (xid.as_str(), *id, None));
            self.store.write(deletes).await?;
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests;
