//! Recently finished transactions and their final status, so a late status query or a
//! repeated commit gets the real outcome instead of Seata's ambiguous `Finished`.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use txmesh_seata::GlobalStatus;

/// How many finished transactions are remembered (oldest forgotten first). A constant, so
/// that every replica forgets the same ones.
pub const FINISHED_CAPACITY: usize = 100_000;

/// A bounded, insertion-ordered map of finished transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedLog {
    order: VecDeque<u64>,
    status: HashMap<u64, GlobalStatus>,
}

impl FinishedLog {
    /// Records a final status.
    pub fn record(&mut self, tx_id: u64, status: GlobalStatus) {
        if self.status.insert(tx_id, status).is_none() {
            self.order.push_back(tx_id);
        }
        while self.order.len() > FINISHED_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.status.remove(&old);
            }
        }
    }

    /// The final status of a finished transaction still remembered.
    pub fn get(&self, tx_id: u64) -> Option<GlobalStatus> {
        self.status.get(&tx_id).copied()
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
