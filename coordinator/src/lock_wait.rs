//! Branch registrations that wait on the leader for their rows (`[locks] wait-ms`) instead of
//! being answered `LockKeyConflict` at once. Seata has no wait queue: its clients poll every
//! 10 ms, so a hot row is handed over up to 10 ms after it is freed. Here a waiting
//! registration looks again as soon as an applied command may have freed a row, and takes it.
//!
//! Leader-local, nothing replicated: a new leader starts with no waiters, and their clients
//! retry as they would with Seata. While an AT registration is being replicated its rows are
//! claimed here, so another transaction's registration for them waits (or is refused) instead
//! of going to the log only to be refused when applied.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use txmesh_seata::{BranchType, TransactionExceptionCode as Code};

use crate::state::Rejection;
use crate::store::SharedState;

/// The rows of AT registrations being replicated, and how long a registration may wait.
pub struct LockWaits {
    /// Row key → the transaction whose registration of it is in the log's queue.
    claims: Mutex<HashMap<String, u64>>,
    wait: Duration,
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
        let mut claims = self.waits.claims();
        for key in &self.keys {
            claims.remove(key);
        }
        drop(claims);
        if !self.taken {
            self.state.note_lock_change();
        }
    }
}

/// Why a registration is not admitted now, and whether waiting may change that.
struct NotNow {
    rejection: Rejection,
    may_wait: bool,
}

impl LockWaits {
    /// Registrations wait at most `wait` for their rows; zero refuses at once.
    pub fn new(wait: Duration) -> Self {
        Self {
            claims: Mutex::default(),
            wait,
        }
    }

    /// Admits `registration` with its rows claimed, waiting while they are held by a
    /// transaction that is still `Begin` (or claimed by one being registered), at most the
    /// configured wait. Anything else that refuses a registration refuses it at once.
    pub async fn admit<'w>(
        &'w self,
        state: &'w SharedState,
        registration: &Registration<'_>,
    ) -> Result<Claim<'w>, Rejection> {
        let deadline = Instant::now() + self.wait;
        loop {
            // Subscribed before the check, so a change between the two is not missed.
            let mut changes = state.lock_changes();
            let not_now = match self.try_claim(state, registration) {
                Ok(claim) => return Ok(claim),
                Err(NotNow {
                    rejection,
                    may_wait: true,
                }) => rejection,
                Err(NotNow { rejection, .. }) => return Err(rejection),
            };
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Err(not_now),
            }
        }
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
                .refusal_for_rows(tx_id, branch_type, keys, application_data)
        {
            let may_wait =
                rejection.code == Code::LockKeyConflict && applied.tx.lock_wait_helps(tx_id, keys);
            return Err(NotNow {
                rejection,
                may_wait,
            });
        }
        let mut claims = self.claims();
        let claimed_by_other = keys.iter().find_map(|key| {
            let holder = *claims.get(key)?;
            (holder != tx_id).then_some((key, holder))
        });
        if let Some((key, holder)) = claimed_by_other {
            let message =
                format!("global lock on {key} is being taken by global transaction {holder}");
            return Err(NotNow {
                rejection: Rejection::new(Code::LockKeyConflict, message),
                may_wait: true,
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

    fn claims(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
