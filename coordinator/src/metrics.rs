//! The node's Prometheus metrics. Events and latencies are recorded where they happen; how many
//! transactions are active and how many rows are locked is read from the applied state at each
//! scrape, so those gauges can never drift from it.
//!
//! Lifecycle counters (begun, committed, rolled back, timed out) are counted as the state
//! machine applies commands, from the status before and after each one: exact, since a
//! repeated request for a finished transaction changes nothing. Every replica applies every
//! command, so aggregate them across a group's nodes with `max`, not `sum`. The lock counters
//! are the leader's own (waits and refusals happen there): aggregate those with `sum`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use txmesh_seata::GlobalStatus;

use crate::state::{Command, Outcome, TxState, is_timeout_family};
use crate::store::SharedState;

/// Prefix of every metric name.
const PREFIX: &str = "txmesh_coordinator";

/// What one node records.
#[derive(Debug)]
pub struct Metrics {
    begun: Counter,
    committed: Counter,
    rolled_back: Counter,
    timed_out: Counter,
    phase_two_latency: Histogram,
    phase_two_retries: Counter,
    raft_apply_latency: Histogram,
    entries_per_fsync: Histogram,
    lock_waits: Counter,
    lock_conflicts: Counter,
    lock_deadlocks: Counter,
    connections: ConnectionMetrics,
}

/// A `reason` label.
pub(crate) type Reason = [(&'static str, &'static str); 1];

/// What the Seata server's limits record; clones share the values. Its connections and
/// buffer claims are counted on the gauges themselves (see `server::limits`).
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Connections open.
    pub(crate) open: Gauge,
    /// Bytes claimed from the frame-buffer budget.
    pub(crate) buffered: Gauge,
    /// Connections refused or closed by a limit, by reason.
    pub(crate) refused: Family<Reason, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            begun: Counter::default(),
            committed: Counter::default(),
            rolled_back: Counter::default(),
            timed_out: Counter::default(),
            // 1 ms to 16 s: a phase-two timeout is 15 s by default.
            phase_two_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            phase_two_retries: Counter::default(),
            // 100 µs to 3.3 s.
            raft_apply_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // 1 to 2048 appends per fsync.
            entries_per_fsync: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            lock_waits: Counter::default(),
            lock_conflicts: Counter::default(),
            lock_deadlocks: Counter::default(),
            connections: ConnectionMetrics::default(),
        }
    }
}

/// The live status of the transaction a command names, read before the command is applied.
pub(crate) struct StatusBefore {
    tx_id: u64,
    status: GlobalStatus,
}

impl StatusBefore {
    /// Reads it; `None` for a command that names no live transaction.
    pub(crate) fn read(tx: &TxState, command: &Command) -> Option<Self> {
        let tx_id = match command {
            Command::Begin { .. } => return None,
            Command::RegisterBranch { tx_id, .. }
            | Command::ReportBranch { tx_id, .. }
            | Command::Commit { tx_id, .. }
            | Command::Rollback { tx_id }
            | Command::Timeout { tx_id, .. }
            | Command::BranchesDone { tx_id, .. }
            | Command::Retrying { tx_id }
            | Command::GiveUp { tx_id }
            | Command::Report { tx_id, .. }
            | Command::Resume { tx_id, .. } => *tx_id,
        };
        let status = tx.session(tx_id)?.status;
        Some(Self { tx_id, status })
    }
}

impl Metrics {
    /// A registry of these metrics, with the gauges read from `state` at each scrape.
    pub fn registry(&self, state: Arc<SharedState>) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        let counters = [
            (
                "transactions_begun",
                "Global transactions begun",
                &self.begun,
            ),
            (
                "transactions_committed",
                "Global transactions that ended committed",
                &self.committed,
            ),
            (
                "transactions_rolled_back",
                "Global transactions that ended rolled back, after a timeout or not",
                &self.rolled_back,
            ),
            (
                "transactions_timed_out",
                "Global transactions whose deadline passed before they were decided",
                &self.timed_out,
            ),
            (
                "phase_two_retries",
                "Phase-two passes scheduled again after a retryable failure",
                &self.phase_two_retries,
            ),
            (
                "lock_waits",
                "AT branch registrations that waited on this leader for rows another transaction held",
                &self.lock_waits,
            ),
            (
                "lock_conflicts",
                "AT branch registrations this leader answered LockKeyConflict or LockKeyConflictFailFast",
                &self.lock_conflicts,
            ),
            (
                "lock_deadlocks",
                "AT branch registrations refused because their wait would have closed a deadlock",
                &self.lock_deadlocks,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let histograms = [
            (
                "phase_two_branch_duration",
                "Round trip of one branch commit or rollback to its resource manager",
                &self.phase_two_latency,
            ),
            (
                "raft_apply_duration",
                "Time from proposing a command to its applied outcome",
                &self.raft_apply_latency,
            ),
        ];
        for (name, help, histogram) in histograms {
            registry.register_with_unit(name, help, Unit::Seconds, histogram.clone());
        }
        let connections = &self.connections;
        registry.register(
            "connections_open",
            "Seata RPC connections open",
            connections.open.clone(),
        );
        registry.register_with_unit(
            "frame_buffer",
            "Declared lengths of the partly received Seata frames held against the frame-buffer budget",
            Unit::Bytes,
            connections.buffered.clone(),
        );
        registry.register(
            "connections_refused",
            "Seata RPC connections refused or closed by a limit or for bad framing, by reason",
            connections.refused.clone(),
        );
        registry.register(
            "raft_entries_per_fsync",
            "Log entries made durable by one WAL fsync",
            self.entries_per_fsync.clone(),
        );
        registry.register_collector(Box::new(StateGauges(state)));
        registry
    }

    /// Counts the lifecycle step an applied command took, if any: a begin, a timeout, an end.
    pub(crate) fn count_step(&self, before: Option<StatusBefore>, tx: &TxState, outcome: &Outcome) {
        if matches!(outcome, Outcome::Begun { .. }) {
            self.begun.inc();
            return;
        }
        let Some(before) = before else {
            return;
        };
        // Final statuses are never live, so reaching one from a live status is the end.
        let after = tx.status(before.tx_id);
        let ended = match after {
            Some(GlobalStatus::Committed) => Some(&self.committed),
            Some(GlobalStatus::Rollbacked | GlobalStatus::TimeoutRollbacked) => {
                Some(&self.rolled_back)
            }
            _ => None,
        };
        if let Some(counter) = ended {
            counter.inc();
        }
        if before.status == GlobalStatus::Begin && after.is_some_and(is_timeout_family) {
            self.timed_out.inc();
        }
    }

    /// Records one phase-two round trip to a resource manager.
    pub(crate) fn observe_phase_two(&self, took: Duration) {
        self.phase_two_latency.observe(took.as_secs_f64());
    }

    /// Counts a phase-two pass scheduled again.
    pub(crate) fn count_phase_two_retry(&self) {
        self.phase_two_retries.inc();
    }

    /// Counts a registration that started to wait for rows.
    pub(crate) fn count_lock_wait(&self) {
        self.lock_waits.inc();
    }

    /// Counts a registration refused for its rows.
    pub(crate) fn count_lock_conflict(&self) {
        self.lock_conflicts.inc();
    }

    /// Counts a registration refused to break a deadlock (also a conflict).
    pub(crate) fn count_lock_deadlock(&self) {
        self.lock_deadlocks.inc();
    }

    /// Records how long a proposal took to be applied.
    pub(crate) fn observe_apply(&self, took: Duration) {
        self.raft_apply_latency.observe(took.as_secs_f64());
    }

    /// What the Seata server's limits record into.
    pub(crate) fn connections(&self) -> ConnectionMetrics {
        self.connections.clone()
    }

    /// The histogram the log syncer records its batch sizes in.
    pub(crate) fn entries_per_fsync(&self) -> Histogram {
        self.entries_per_fsync.clone()
    }
}

/// Gauges read from the applied state at each scrape.
#[derive(Debug)]
struct StateGauges(Arc<SharedState>);

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (active, locks) = {
            let state = self.0.read();
            let mut active: BTreeMap<GlobalStatus, i64> = BTreeMap::new();
            for session in state.tx.sessions() {
                *active.entry(session.status).or_default() += 1;
            }
            (active, state.tx.locks().len() as i64)
        };
        // Unlike registered metrics, a collector's help text gets no full stop added.
        let mut by_status = encoder.encode_descriptor(
            "transactions_active",
            "Live global transactions by status.",
            None,
            MetricType::Gauge,
        )?;
        for (status, count) in active {
            let labels = [("status", status.name())];
            ConstGauge::new(count).encode(by_status.encode_family(&labels)?)?;
        }
        let held = encoder.encode_descriptor(
            "locks_held",
            "Rows locked by AT branches.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(locks).encode(held)
    }
}
