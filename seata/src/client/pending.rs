//! The client's in-flight requests: single requests by id, plus merged batches by outer id.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::ClientError;
use crate::correlation::{Correlation, lock};

/// A merged batch whose answer has not come as one MergeResultMessage yet. Servers may answer
/// sub-requests one by one instead, so entries also expire.
struct Merged {
    ids: Vec<i32>,
    expires: Instant,
}

/// The in-flight table of one connection.
#[derive(Default)]
pub(crate) struct Pending {
    replies: Correlation<ClientError>,
    merged: Mutex<MergedTable>,
}

#[derive(Default)]
struct MergedTable {
    batches: HashMap<i32, Merged>,
    next_sweep: Option<Instant>,
}

const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Deref for Pending {
    type Target = Correlation<ClientError>;

    fn deref(&self) -> &Self::Target {
        &self.replies
    }
}

impl Pending {
    /// Fails every waiting request and forgets the batches (the connection is gone).
    pub(crate) fn fail_everything(&self, error: impl Fn() -> ClientError) {
        self.replies.fail_all(error);
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
