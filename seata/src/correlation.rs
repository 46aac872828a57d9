//! Requests waiting for their answers on one connection, by request id. Used by both sides:
//! a client waiting for the coordinator, and a coordinator waiting for a resource manager.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::message::Message;

/// Where an answer goes.
pub type Reply<E> = oneshot::Sender<Result<Message, E>>;

/// The in-flight table.
pub struct Correlation<E> {
    replies: Mutex<HashMap<i32, Reply<E>>>,
}

impl<E> Default for Correlation<E> {
    fn default() -> Self {
        Self {
            replies: Mutex::new(HashMap::new()),
        }
    }
}

impl<E> Correlation<E> {
    /// Waits for the answer to request `id`.
    pub fn insert(&self, id: i32, reply: Reply<E>) {
        lock(&self.replies).insert(id, reply);
    }

    /// Stops waiting for request `id`.
    pub fn remove(&self, id: i32) -> Option<Reply<E>> {
        lock(&self.replies).remove(&id)
    }

    /// Delivers an answer; false when nobody waits for it (late or unknown).
    pub fn complete(&self, id: i32, result: Result<Message, E>) -> bool {
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
    pub fn fail_all(&self, error: impl Fn() -> E) {
        let drained: Vec<Reply<E>> = lock(&self.replies).drain().map(|(_, r)| r).collect();
        for reply in drained {
            let _ = reply.send(Err(error()));
        }
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        lock(&self.replies).len()
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A poisoned lock only means another thread panicked mid-update of a plain map; the map
/// itself is still usable, and the connection must keep working.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
