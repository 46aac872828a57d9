//! Requests waiting for their answers, by request id, and merged batches by outer id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::ClientError;
use crate::message::Message;

/// Where an answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Message, ClientError>>;

/// A merged batch whose answer has not come as one MergeResultMessage yet. Servers may answer
/// sub-requests one by one instead, so entries also expire.
struct Merged {
    ids: Vec<i32>,
    expires: Instant,
}

/// The in-flight table of one connection.
#[derive(Default)]
pub(crate) struct Pending {
    replies: Mutex<HashMap<i32, Reply>>,
    merged: Mutex<MergedTable>,
}

#[derive(Default)]
struct MergedTable {
    batches: HashMap<i32, Merged>,
    next_sweep: Option<Instant>,
}

const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Pending {
    pub(crate) fn insert(&self, id: i32, reply: Reply) {
        lock(&self.replies).insert(id, reply);
    }

    pub(crate) fn remove(&self, id: i32) -> Option<Reply> {
        lock(&self.replies).remove(&id)
    }

    /// Delivers an answer; false when nobody waits for it (late or unknown).
    pub(crate) fn complete(&self, id: i32, result: Result<Message, ClientError>) -> bool {
        match self.remove(id) {
            Some(reply) => {
                // The caller may have given up in the meantime; that is not an error here.
                let _ = reply.send(result);
                true
            }
            None => false,
        }
    }

    /// Fails every waiting request (the connection is gone).
    pub(crate) fn fail_all(&self, error: impl Fn() -> ClientError) {
        let drained: Vec<Reply> = lock(&self.replies).drain().map(|(_, r)| r).collect();
        for reply in drained {
            let _ = reply.send(Err(error()));
        }
        lock(&self.merged).batches.clear();
    }

    /// Remembers which sub-requests a merged frame carried.
    pub(crate) fn insert_merged(&self, outer: i32, ids: Vec<i32>, ttl: Duration) {
        let now = Instant::now();
        let mut table = lock(&self.merged);
        if table.next_sweep.is_none_or(|at| at <= now) {
            table.batches.retain(|_, m| m.expires > now);
            table.next_sweep = Some(now + SWEEP_EVERY);
        }
        table.batches.insert(
            outer,
            Merged {
                ids,
                expires: now + ttl,
            },
        );
    }

    /// The sub-request ids of merged frame `outer`, forgetting it.
    pub(crate) fn take_merged(&self, outer: i32) -> Option<Vec<i32>> {
        lock(&self.merged).batches.remove(&outer).map(|m| m.ids)
    }
}

/// A poisoned lock only means another thread panicked mid-update of a plain map; the map
/// itself is still usable, and the connection must keep working.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
