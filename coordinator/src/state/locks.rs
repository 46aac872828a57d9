//! The AT row-lock table (seata-tc-semantics.md §3): one owner per row, all-or-nothing per
//! registration, re-entrant per global transaction, released per branch or per transaction.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use txmesh_seata::BranchType;

/// Who holds a row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    /// The global transaction.
    pub tx_id: u64,
    /// The branch that first took the lock.
    pub branch_id: u64,
}

/// Row key → owner. Keys are Seata's canonical `resourceId^^^table^^^pk`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTable {
    rows: HashMap<String, LockOwner>,
}

/// The rows a branch locks: an AT branch's row keys; none for any other mode.
pub fn branch_row_keys(branch_type: BranchType, resource_id: &str, lock_key: &str) -> Vec<String> {
    match branch_type {
        BranchType::At => row_keys(resource_id, lock_key),
        _ => Vec::new(),
    }
}

/// Splits an AT lock key (`table:pk1,pk2;table2:pk3`) into canonical row keys, de-duplicated
/// and in first-seen order. Empty tables or keys are skipped.
pub fn row_keys(resource_id: &str, lock_key: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for table_part in lock_key.split(';') {
        let Some((table, pks)) = table_part.split_once(':') else {
            continue;
        };
        let table = table.trim();
        if table.is_empty() {
            continue;
        }
        for pk in pks.split(',').map(str::trim).filter(|pk| !pk.is_empty()) {
            let key = format!("{resource_id}^^^{table}^^^{pk}");
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

impl LockTable {
    /// Number of rows locked.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is locked.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The owner of a row.
    pub fn owner(&self, key: &str) -> Option<LockOwner> {
        self.rows.get(key).copied()
    }

    /// The first key held by another transaction, if any.
    pub fn first_conflict<'k>(
        &self,
        tx_id: u64,
        keys: &'k [String],
    ) -> Option<(&'k str, LockOwner)> {
        keys.iter().find_map(|k| {
            self.owner(k)
                .filter(|o| o.tx_id != tx_id)
                .map(|o| (k.as_str(), o))
        })
    }

    /// Takes every key not already held by `tx_id` for `branch_id`; returns the keys this
    /// branch now owns. The caller has checked for conflicts.
    pub fn acquire(&mut self, tx_id: u64, branch_id: u64, keys: Vec<String>) -> Vec<String> {
        let mut taken = Vec::with_capacity(keys.len());
        for key in keys {
            if self.rows.contains_key(&key) {
                continue; // re-entrant: already ours
            }
            self.rows
                .insert(key.clone(), LockOwner { tx_id, branch_id });
            taken.push(key);
        }
        taken
    }

    /// Releases the keys a branch owns.
    pub fn release(&mut self, owned: &[String]) {
        for key in owned {
            self.rows.remove(key);
        }
    }

    /// Every lock, for the admin view.
    pub fn iter(&self) -> impl Iterator<Item = (&str, LockOwner)> {
        self.rows.iter().map(|(k, o)| (k.as_str(), *o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_split_into_canonical_row_keys() {
        assert_eq!(
            row_keys("db", "account:1,2;order:7; order:7 ;bad;:3;t:"),
            ["db^^^account^^^1", "db^^^account^^^2", "db^^^order^^^7"]
        );
        assert!(row_keys("db", "").is_empty());
    }

    #[test]
    fn acquisition_is_reentrant_and_release_is_per_branch() {
        let mut table = LockTable::default();
        let keys = row_keys("db", "t:1,2");
        assert_eq!(table.acquire(1, 10, keys.clone()), keys);
        assert_eq!(
            table.first_conflict(1, &keys),
            None,
            "the same transaction re-enters"
        );
        let more = row_keys("db", "t:2,3");
        assert_eq!(table.acquire(1, 11, more.clone()), ["db^^^t^^^3"]);
        assert_eq!(
            table.first_conflict(2, &more),
            Some((
                "db^^^t^^^2",
                LockOwner {
                    tx_id: 1,
                    branch_id: 10
                }
            ))
        );
        table.release(&["db^^^t^^^3".to_owned()]);
        assert_eq!(table.len(), 2, "branch 11 releases only what it took");
    }
}
