//! Branch registrations that wait on the leader for their rows (`[locks] wait-ms`) instead of
//! being answered `LockKeyConflict` at once. Seata has no wait queue: its clients poll every
//! 10 ms, so a hot row is handed over up to 10 ms after it is freed. Here a waiting
//! registration looks again as soon as an applied command may have freed a row, and takes it.
//!
//! Leader-local, nothing replicated: a new leader starts with no waiters, and their clients
//! retry as they would with Seata. While an AT registration is being replicated its rows are
//! claimed here, so another transaction's registration for them waits (or is refused) instead
//! of going to the log only to be refused when applied.
//!
//! Waiting makes deadlocks visible: when T1 holds row a and waits for b while T2 holds b and
//! waits for a, neither can win, and with polling both spent every retry before one rolled
//! back. A registration whose wait would close such a cycle is refused at once with
//! `LockKeyConflictFailFast`, which ends its client's retries, so its transaction rolls back
//! and the others go on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use txmesh_seata::{BranchType, TransactionExceptionCode as Code};

use crate::metrics::Metrics;
use crate::state::Rejection;
use crate::store::SharedState;

/// The rows of AT registrations being replicated, who waits for whom, and how long a
/// registration may wait.
pub struct LockWaits {
    metrics: Arc<Metrics>,
    /// Row key → the transaction whose registration of it is in the log's queue.
    claims: Mutex<HashMap<String, u64>>,
    /// Waiting registration → (its transaction, the transactions it waits for).
    waiting: Mutex<HashMap<u64, (u64, Vec<u64>)>>,
    next_waiter: AtomicU64,
    wait: Duration,
}

/// A registration's place in the wait-for graph, taken out when it stops waiting.
struct Waiting<'w> {
    waits: &'w LockWaits,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.waits.waiting).remove(&self.id);
    }
}

/// A registration, as the lock check needs it.
pub struct Registration<'r> {
    /// The global transaction.
    pub tx_id: u64,
    /// Its mode: only AT branches take rows.
    pub branch_type: BranchType,
    /// Its row keys (empty unless AT).
    pub keys: &'r [String],
    /// Its application data (`autoCommit` decides fail-fast).
    pub application_data: &'r str,
}

/// Rows claimed for one registration until it has been applied; dropping it frees them.
#[must_use]
pub struct Claim<'w> {
    waits: &'w LockWaits,
    state: &'w SharedState,
    keys: Vec<String>,
    /// Whether the registration took its rows: then waiters have nothing new to see.
    taken: bool,
}

impl Claim<'_> {
    /// The registration was applied and holds its rows in the lock table now.
    pub fn taken(mut self) {
        self.taken = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut claims = lock(&self.waits.claims);
        for key in &self.keys {
            claims.remove(key);
        }
        drop(claims);
        if !self.taken {
            self.state.note_lock_change();
        }
    }
}

/// Why a registration is not admitted now, and the transactions it would wait for, if
/// waiting may change that.
struct NotNow {
    rejection: Rejection,
    wait_for: Option<Vec<u64>>,
}

impl LockWaits {
    /// Registrations wait at most `wait` for their rows; zero refuses at once. Waits and
    /// refusals are counted in `metrics`.
    pub fn new(wait: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            claims: Mutex::default(),
            waiting: Mutex::default(),
            next_waiter: AtomicU64::new(0),
            wait,
        }
    }

    /// Admits `registration` with its rows claimed, waiting while they are held by a
    /// transaction that is still `Begin` (or claimed by one being registered), at most the
    /// configured wait, unless that wait would close a deadlock. Anything else that refuses a
    /// registration refuses it at once.
    pub async fn admit<'w>(
        &'w self,
        state: &'w SharedState,
        registration: &Registration<'_>,
    ) -> Result<Claim<'w>, Rejection> {
        let admitted = self.admit_uncounted(state, registration).await;
        if let Err(rejection) = &admitted {
            if matches!(
                rejection.code,
                Code::LockKeyConflict | Code::LockKeyConflictFailFast
            ) {
                self.metrics.count_lock_conflict();
            }
        }
        admitted
    }

    async fn admit_uncounted<'w>(
        &'w self,
        state: &'w SharedState,
        registration: &Registration<'_>,
    ) -> Result<Claim<'w>, Rejection> {
        let deadline = Instant::now() + self.wait;
        let mut waiting = None;
        loop {
            // Subscribed before the check, so a change between the two is not missed.
            let mut changes = state.lock_changes();
            let (rejection, holders) = match self.try_claim(state, registration) {
                Ok(claim) => return Ok(claim),
                Err(NotNow {
                    rejection,
                    wait_for: Some(holders),
                }) if !self.wait.is_zero() => (rejection, holders),
                Err(NotNow { rejection, .. }) => return Err(rejection),
            };
            let first_wait = waiting.is_none();
            let id = waiting
                .get_or_insert_with(|| Waiting {
                    waits: self,
                    id: self.next_waiter.fetch_add(1, Ordering::Relaxed),
                })
                .id;
            if let Some(deadlock) = self.wait_for(id, registration.tx_id, holders) {
                self.metrics.count_lock_deadlock();
                return Err(deadlock);
            }
            if first_wait {
                self.metrics.count_lock_wait();
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Err(rejection),
            }
        }
    }

    /// Records that waiting registration `id` of `tx_id` waits for `holders`, unless one of
    /// them waits, directly or through others, for `tx_id`: then the refusal that breaks the
    /// deadlock. Checked and recorded under one lock, so of two registrations closing a cycle
    /// at the same moment the second sees the first.
    fn wait_for(&self, id: u64, tx_id: u64, holders: Vec<u64>) -> Option<Rejection> {
        let mut waiting = lock(&self.waiting);
        let mut reached = holders.clone();
        let mut next = 0;
        while let Some(&tx) = reached.get(next) {
            if tx == tx_id {
                waiting.remove(&id);
                let message = format!(
                    "deadlock: global transaction {tx_id} would wait for {holders:?}, which \
                     wait for it; this registration is refused so that the others can finish"
                );
                return Some(Rejection::new(Code::LockKeyConflictFailFast, message));
            }
            for (waiter, waited_for) in waiting.values() {
                if *waiter != tx {
                    continue;
                }
                for &further in waited_for {
                    if !reached.contains(&further) {
                        reached.push(further);
                    }
                }
            }
            next += 1;
        }
        waiting.insert(id, (tx_id, holders));
        None
    }

    fn try_claim<'w>(
        &'w self,
        state: &'w SharedState,
        registration: &Registration<'_>,
    ) -> Result<Claim<'w>, NotNow> {
        let &Registration {
            tx_id,
            branch_type,
            keys,
            application_data,
        } = registration;
        let applied = state.read();
        if let Some(rejection) =
            applied
                .tx
                .registration_refusal(tx_id, branch_type, keys, application_data)
        {
            let wait_for = match rejection.code {
                Code::LockKeyConflict => applied.tx.lock_holders_to_wait_for(tx_id, keys),
                _ => None,
            };
            return Err(NotNow {
                rejection,
                wait_for,
            });
        }
        let mut claims = lock(&self.claims);
        let claimed_by_other = keys.iter().find_map(|key| {
            let holder = *claims.get(key)?;
            (holder != tx_id).then_some((key, holder))
        });
        if let Some((key, holder)) = claimed_by_other {
            let message =
                format!("global lock on {key} is being taken by global transaction {holder}");
            return Err(NotNow {
                rejection: Rejection::new(Code::LockKeyConflict, message),
                wait_for: Some(vec![holder]),
            });
        }
        let mut mine = Vec::new();
        for key in keys {
            if !claims.contains_key(key) {
                claims.insert(key.clone(), tx_id);
                mine.push(key.clone());
            }
        }
        Ok(Claim {
            waits: self,
            state,
            keys: mine,
            taken: false,
        })
    }
}

/// Locks a mutex; a panic elsewhere leaves the maps usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
