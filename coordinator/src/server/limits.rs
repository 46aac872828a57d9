//! What bounds the Seata server's memory across connections: a number of connection slots and
//! a budget of buffered frame bytes, both kept on the gauges `/metrics` shows (so they cannot
//! drift from them), and the refusals, counted by reason and logged once per peer a minute.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

use crate::config::ServerTuning;
use crate::metrics::ConnectionMetrics;

/// How long a peer's refusals after a logged one are only counted.
const LOG_PERIOD: Duration = Duration::from_secs(60);
/// Most peers remembered as logged: past it (a flood from many addresses) refusals are only
/// counted until the older entries expire.
const MAX_LOGGED_PEERS: usize = 4_096;

/// Why a connection was refused or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Refusal {
    /// `max-connections` were open.
    MaxConnections,
    /// Its frame would not fit in what is left of the frame-buffer budget.
    FrameBudget,
    /// Its frame is longer than the limit (the small one until it registers).
    FrameTooLong,
    /// It broke the framing: garbage, or another protocol.
    BadFrame,
}

impl Refusal {
    const ALL: [Self; 4] = [
        Self::MaxConnections,
        Self::FrameBudget,
        Self::FrameTooLong,
        Self::BadFrame,
    ];

    /// Its `reason` label.
    fn label(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::FrameBudget => "frame_budget",
            Self::FrameTooLong => "frame_too_long",
            Self::BadFrame => "bad_frame",
        }
    }
}

/// The server's limits, shared by the accept loop and every connection.
pub(crate) struct Limits {
    max_connections: usize,
    metrics: ConnectionMetrics,
    budget: Arc<FrameBudget>,
    logged: Mutex<HashMap<(IpAddr, &'static str), Instant>>,
}

impl Limits {
    pub(crate) fn new(tuning: &ServerTuning, metrics: ConnectionMetrics) -> Self {
        // Every reason has a series from the start, so a rate over it is defined.
        for refusal in Refusal::ALL {
            let _ = metrics
                .refused
                .get_or_create(&[("reason", refusal.label())]);
        }
        let budget = Arc::new(FrameBudget {
            limit: tuning.max_buffered_frame_bytes,
            used: metrics.buffered.clone(),
        });
        Self {
            max_connections: tuning.max_connections,
            metrics,
            budget,
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// A connection slot, or none when `max-connections` are open.
    pub(crate) fn open_slot(&self) -> Option<Slot> {
        let max = i64::try_from(self.max_connections).unwrap_or(i64::MAX);
        let open = &self.metrics.open;
        open.inner()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(open.clone()))
    }

    /// An empty claim on the frame-buffer budget, for one connection.
    pub(crate) fn claim(&self) -> FrameClaim {
        FrameClaim {
            budget: self.budget.clone(),
            held: 0,
        }
    }

    /// Counts a refused or closed connection, and logs it unless this peer's last refusal for
    /// the same reason was logged less than a minute ago.
    pub(crate) fn refuse(&self, peer: SocketAddr, refusal: Refusal, detail: &dyn Display) {
        let reason = refusal.label();
        self.metrics
            .refused
            .get_or_create(&[("reason", reason)])
            .inc();
        if self.first_in_a_while(peer.ip(), reason) {
            tracing::warn!(%peer, reason, %detail, "connection refused; the same refusals of this address are only counted for a minute (txmesh_coordinator_connections_refused_total)");
        }
    }

    /// Whether something about `ip` (`what`) was not logged within the last minute; if so it
    /// counts as logged now. Keeps per-frame complaints about one peer to a line a minute.
    pub(crate) fn first_in_a_while(&self, ip: IpAddr, what: &'static str) -> bool {
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if logged
            .get(&(ip, what))
            .is_some_and(|last| now.duration_since(*last) < LOG_PERIOD)
        {
            return false;
        }
        if logged.len() >= MAX_LOGGED_PEERS {
            logged.retain(|_, last| now.duration_since(*last) < LOG_PERIOD);
            if logged.len() >= MAX_LOGGED_PEERS {
                return false;
            }
        }
        logged.insert((ip, what), now);
        true
    }
}

/// One open connection; dropping it frees the slot.
pub(crate) struct Slot(Gauge);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The bytes all connections may hold in partly received frames.
struct FrameBudget {
    limit: usize,
    used: Gauge,
}

/// What one connection holds of the frame-buffer budget: the declared length of the frame it
/// is receiving, until that frame is complete or the connection closes.
pub(crate) struct FrameClaim {
    budget: Arc<FrameBudget>,
    held: usize,
}

/// A frame that does not fit in the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a frame of {declared} bytes does not fit in the {available} bytes left of the frame-buffer budget"
)]
pub(crate) struct OverBudget {
    declared: usize,
    available: usize,
}

impl FrameClaim {
    /// Holds `declared` bytes for the frame being received (a claim for it already held is
    /// kept).
    pub(crate) fn hold(&mut self, declared: usize) -> Result<(), OverBudget> {
        if declared == self.held {
            return Ok(());
        }
        self.release();
        let limit = i64::try_from(self.budget.limit).unwrap_or(i64::MAX);
        let wanted = i64::try_from(declared).unwrap_or(i64::MAX);
        self.budget
            .used
            .inner()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (wanted <= limit - used).then_some(used + wanted)
            })
            .map(|_| self.held = declared)
            .map_err(|used| OverBudget {
                declared,
                available: usize::try_from(limit - used).unwrap_or(0),
            })
    }

    /// Gives back what is held: the frame is complete.
    pub(crate) fn release(&mut self) {
        if self.held > 0 {
            self.budget.used.dec_by(self.held as i64);
            self.held = 0;
        }
    }
}

impl Drop for FrameClaim {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, budget: usize) -> Limits {
        let tuning = ServerTuning {
            max_connections,
            max_buffered_frame_bytes: budget,
            ..ServerTuning::default()
        };
        Limits::new(&tuning, ConnectionMetrics::default())
    }

    #[test]
    fn slots_run_out_and_come_back() {
        let limits = limits(2, 0);
        let (a, b) = (limits.open_slot(), limits.open_slot());
        assert!(a.is_some() && b.is_some());
        assert!(limits.open_slot().is_none());
        assert_eq!(limits.metrics.open.get(), 2);
        drop(a);
        assert!(
            limits.open_slot().is_some(),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn claims_share_the_budget_until_released_or_dropped() {
        let limits = limits(10, 100);
        let (mut a, mut b) = (limits.claim(), limits.claim());
        assert_eq!(a.hold(60), Ok(()));
        assert_eq!(a.hold(60), Ok(()), "the same frame is claimed once");
        assert_eq!(
            b.hold(50),
            Err(OverBudget {
                declared: 50,
                available: 40
            })
        );
        assert_eq!(b.hold(40), Ok(()));
        assert_eq!(limits.metrics.buffered.get(), 100);
        a.release();
        assert_eq!(limits.metrics.buffered.get(), 40);
        drop(b);
        assert_eq!(limits.metrics.buffered.get(), 0);
    }

    #[test]
    fn a_peer_is_logged_once_a_minute_per_reason() {
        let limits = limits(1, 0);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(limits.first_in_a_while(ip, "bad_frame"));
        assert!(!limits.first_in_a_while(ip, "bad_frame"));
        assert!(limits.first_in_a_while(ip, "max_connections"));
        assert!(limits.first_in_a_while("10.0.0.2".parse().expect("ip"), "bad_frame"));
        let peer = SocketAddr::new(ip, 1);
        limits.refuse(peer, Refusal::BadFrame, &"garbage");
        limits.refuse(peer, Refusal::BadFrame, &"garbage");
        let count = limits
            .metrics
            .refused
            .get_or_create(&[("reason", "bad_frame")])
            .get();
        assert_eq!(count, 2, "every refusal is counted, logged or not");
    }
}
