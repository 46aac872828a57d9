//! Learners that have stopped catching up. The leader reports each learner's `matchIndex`;
//! one that is reachable yet has not advanced for the stall window will not catch up by
//! waiting (its disk is full, it cannot install the snapshot), so its join is a blocker the
//! user must see. Progress is remembered in memory: a restarted operator only restarts the
//! window.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::admin::{ClusterView, Role};

/// The stall window the operator uses unless told otherwise.
pub const DEFAULT_STALL_WINDOW: Duration = Duration::from_secs(120);

/// A learner's last advance.
#[derive(Debug, Clone, Copy)]
struct Advance {
    index: Option<u64>,
    at: Instant,
}

/// Remembers when each learner's log last advanced.
#[derive(Debug)]
pub struct CatchUpWatch {
    window: Duration,
    /// By group (the resource's uid) and node id.
    seen: Mutex<HashMap<(String, u64), Advance>>,
}

impl CatchUpWatch {
    /// A watch that calls a learner stalled after `window` without an advance.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records what the leader's `view` of `group` shows at `now`; the node ids of the
    /// reachable learners whose log has not advanced for the window.
    pub fn stalled(&self, group: &str, view: &ClusterView, now: Instant) -> BTreeSet<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let learners: Vec<_> = view
            .members
            .iter()
            .filter(|m| m.role == Role::Learner && m.caught_up != Some(true))
            .collect();
        // Forget members of this group that are no longer catching up.
        seen.retain(|(g, id), _| g != group || learners.iter().any(|m| m.id == *id));
        let mut stalled = BTreeSet::new();
        for learner in learners {
            let key = (group.to_owned(), learner.id);
            let advance = seen.entry(key).or_insert(Advance {
                index: learner.match_index,
                at: now,
            });
            if learner.match_index > advance.index || !learner.reachable {
                // An unreachable learner is a blocker of its own; its window restarts.
                *advance = Advance {
                    index: learner.match_index,
                    at: now,
                };
            } else if now.duration_since(advance.at) >= self.window {
                stalled.insert(learner.id);
            }
        }
        stalled
    }

    /// Forgets a deleted group.
    pub fn forget(&self, group: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|(g, _), _| g != group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::MemberView;

    const WINDOW: Duration = Duration::from_secs(120);

    fn view(learner_index: Option<u64>, reachable: bool) -> ClusterView {
        let member = |id, role, match_index, reachable| MemberView {
            id,
            address: format!("tc-{}.tc-peers.payments.svc.cluster.local:9091", id - 1),
            role,
            match_index,
            caught_up: Some(role != Role::Learner),
            reachable,
        };
        ClusterView {
            node_id: 1,
            state: "leader".into(),
            leader_id: Some(1),
            leader_admin_address: None,
            change_in_progress: false,
            last_log_index: Some(5_000),
            members: vec![
                member(1, Role::Leader, Some(5_000), true),
                member(4, Role::Learner, learner_index, reachable),
            ],
        }
    }

    #[test]
    fn a_learner_that_advances_is_never_stalled() {
        let watch = CatchUpWatch::new(WINDOW);
        let start = Instant::now();
        for minute in 0..10 {
            let at = start + Duration::from_secs(60 * minute);
            let stalled = watch.stalled("uid", &view(Some(100 * minute), true), at);
            assert!(stalled.is_empty(), "minute {minute}");
        }
    }

    #[test]
    fn a_reachable_learner_stuck_at_one_index_for_the_window_is_stalled() {
        let watch = CatchUpWatch::new(WINDOW);
        let start = Instant::now();
        assert!(
            watch
                .stalled("uid", &view(Some(700), true), start)
                .is_empty()
        );
        let before = start + WINDOW - Duration::from_secs(1);
        assert!(
            watch
                .stalled("uid", &view(Some(700), true), before)
                .is_empty()
        );
        let after = start + WINDOW;
        assert_eq!(
            watch.stalled("uid", &view(Some(700), true), after),
            BTreeSet::from([4])
        );
        // It moves again: no longer stalled, and the window starts over.
        let moved = after + Duration::from_secs(10);
        assert!(
            watch
                .stalled("uid", &view(Some(701), true), moved)
                .is_empty()
        );
    }

    #[test]
    fn an_unreachable_learner_restarts_the_window() {
        let watch = CatchUpWatch::new(WINDOW);
        let start = Instant::now();
        watch.stalled("uid", &view(Some(700), true), start);
        watch.stalled("uid", &view(Some(700), false), start + WINDOW);
        let later = start + WINDOW + Duration::from_secs(30);
        assert!(
            watch
                .stalled("uid", &view(Some(700), true), later)
                .is_empty()
        );
    }

    #[test]
    fn groups_are_watched_apart_and_forgotten() {
        let watch = CatchUpWatch::new(WINDOW);
        let start = Instant::now();
        watch.stalled("a", &view(Some(700), true), start);
        let later = start + WINDOW;
        // Group b's learner at the same id has only just been seen.
        assert!(watch.stalled("b", &view(Some(700), true), later).is_empty());
        assert_eq!(
            watch.stalled("a", &view(Some(700), true), later),
            BTreeSet::from([4])
        );
        watch.forget("a");
        assert!(watch.stalled("a", &view(Some(700), true), later).is_empty());
    }
}
