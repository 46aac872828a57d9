//! One async lock per key, created on demand and forgotten when nobody holds or waits for it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// Locks by key.
#[derive(Debug)]
pub struct KeyLocks<K> {
    locks: Arc<Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>>,
}

impl<K> Default for KeyLocks<K> {
    fn default() -> Self {
        Self {
            locks: Arc::default(),
        }
    }
}

impl<K: Hash + Eq + Clone> KeyLocks<K> {
    /// Waits for `key`'s lock.
    pub async fn lock(&self, key: K) -> KeyGuard<K> {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(key.clone()).or_default().clone()
        };
        KeyGuard {
            guard: Some(lock.lock_owned().await),
            key,
            locks: self.locks.clone(),
        }
    }

    /// Keys with a lock held or awaited.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// A held key lock.
#[derive(Debug)]
pub struct KeyGuard<K: Hash + Eq> {
    guard: Option<OwnedMutexGuard<()>>,
    key: K,
    locks: Arc<Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>>,
}

impl<K: Hash + Eq> Drop for KeyGuard<K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only the table's own reference left: no holder, no waiter.
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_nothing_left_behind() {
        let locks = KeyLocks::default();
        let first = locks.lock("a").await;
        let other = locks.lock("b").await;
        // A zero timeout polls the future exactly once.
        let waiting = tokio::time::timeout(Duration::ZERO, locks.lock("a")).await;
        assert!(waiting.is_err(), "a second holder of the same key waits");
        drop(first);
        let again = locks.lock("a").await;
        drop((again, other));
        assert_eq!(locks.len(), 0);
    }
}
