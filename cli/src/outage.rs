//! A failover as clients see it, for `txmesh demo` and `txmesh bench coordinator
//! --kill-leader-every`: the write-unavailability gap runs from the kill of the leader to the
//! first commit of a transaction begun after the kill. A transaction begun before the kill
//! does not end the gap even if it commits later: it may have been decided by the old leader.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a killed coordinator stays down before it is restarted on its data directory.
pub const DOWN_FOR: Duration = Duration::from_secs(1);

/// The current (or last) outage; commits are reported to it as they happen.
#[derive(Debug, Default)]
pub struct OutageClock(Mutex<Outage>);

#[derive(Debug, Default, Clone, Copy)]
struct Outage {
    since: Option<Instant>,
    gap: Option<Duration>,
}

impl OutageClock {
    /// Marks the start of an outage (the leader was killed just now) and returns its instant.
    pub fn begins(&self) -> Instant {
        let now = Instant::now();
        *self.outage() = Outage {
            since: Some(now),
            gap: None,
        };
        now
    }

    /// A transaction begun at `began` has just committed: ends the outage if it began after
    /// the kill.
    pub fn committed(&self, began: Instant) {
        let mut outage = self.outage();
        if let Some(since) = outage.since
            && outage.gap.is_none()
            && began >= since
        {
            outage.gap = Some(since.elapsed());
        }
    }

    /// The last outage's gap, once a transaction begun after the kill has committed.
    pub fn gap(&self) -> Option<Duration> {
        self.outage().gap
    }

    fn outage(&self) -> MutexGuard<'_, Outage> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_ends_with_the_first_commit_begun_after_the_kill() {
        let clock = OutageClock::default();
        clock.committed(Instant::now());
        assert_eq!(clock.gap(), None, "no outage yet");
        let before = Instant::now();
        let killed = clock.begins();
        clock.committed(before);
        assert_eq!(clock.gap(), None, "begun before the kill");
        clock.committed(Instant::now());
        let gap = clock.gap().expect("ended");
        clock.committed(Instant::now());
        assert_eq!(clock.gap(), Some(gap), "the first such commit ends it");
        assert!(gap <= killed.elapsed());
        clock.begins();
        assert_eq!(clock.gap(), None, "a new outage starts open");
    }
}
