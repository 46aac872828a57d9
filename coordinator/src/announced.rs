//! The leader as Seata clients are told of it. A term is announced only once its leader is
//! known on this node, as Seata's server publishes its metadata when a leader starts or a
//! follower starts following, never when a vote merely moves the term.
//!
//! This matters because of how a Seata raft-mode client follows its leader: it stores the term
//! and node list of every metadata answer, keeps its old leader when the answer names none,
//! and then long-polls with the term it stored. An answer that carries a new term but no
//! leader leaves it sending to a dead leader until two 28 s long polls have passed.

use std::time::Duration;

use tokio::sync::watch;

use crate::raft::{NodeId, Raft, RaftMetrics};

/// A term and the leader this node knows for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// The term.
    pub term: u64,
    /// Its leader.
    pub leader: NodeId,
    /// The index of the membership configuration in force, so a change of members is a change
    /// of the announcement too.
    pub membership: Option<u64>,
}

impl Announcement {
    /// What these metrics announce: nothing while no leader is known for the current term.
    fn of(metrics: &RaftMetrics) -> Option<Self> {
        Some(Self {
            term: metrics.current_term,
            leader: metrics.current_leader?,
            membership: metrics
                .membership_config
                .log_id()
                .as_ref()
                .map(|log_id| log_id.index),
        })
    }
}

/// The announcements of one node, kept up to date from its Raft metrics.
#[derive(Debug, Clone)]
pub struct Announcer {
    latest: watch::Receiver<Option<Announcement>>,
}

impl Announcer {
    /// Follows `raft` until it shuts down.
    pub fn start(raft: &Raft) -> Self {
        let mut metrics = raft.metrics();
        let first = Announcement::of(&metrics.borrow_and_update());
        let (announce, latest) = watch::channel(first);
        tokio::spawn(async move {
            while metrics.changed().await.is_ok() {
                let Some(now) = Announcement::of(&metrics.borrow_and_update()) else {
                    continue;
                };
                announce.send_if_modified(|latest| {
                    let changed = *latest != Some(now);
                    *latest = Some(now);
                    changed
                });
            }
        });
        Self { latest }
    }

    /// The latest announcement, if a leader was ever known.
    pub fn latest(&self) -> Option<Announcement> {
        *self.latest.borrow()
    }

    /// The latest announcement, waiting up to `timeout` for the first one.
    pub async fn first(&self, timeout: Duration) -> Option<Announcement> {
        let mut latest = self.latest.clone();
        let first = latest.wait_for(Option::is_some);
        match tokio::time::timeout(timeout, first).await {
            Ok(Ok(announcement)) => *announcement,
            _ => self.latest(),
        }
    }

    /// Waits up to `timeout` for an announcement past what a client that holds `term` has
    /// seen: a later term with its leader, or, once something was announced since the wait
    /// began, a change of members. Returns whether one came (at once when the term is past
    /// `term` already).
    pub async fn past(&self, term: u64, timeout: Duration) -> bool {
        let mut latest = self.latest.clone();
        let start = *latest.borrow_and_update();
        // A change of members within the client's own term counts; catching up to a term
        // the client already holds does not.
        let newer = latest.wait_for(|now| match now {
            Some(now) => {
                now.term > term
                    || (now.term == term
                        && start.is_some_and(|start| start.term == term && start != *now))
            }
            None => false,
        });
        matches!(tokio::time::timeout(timeout, newer).await, Ok(Ok(_)))
    }
}
