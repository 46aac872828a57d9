//! The operator's own metrics (`/metrics`, OpenMetrics text): reconciles, failed reconciles,
//! reconcile durations, and whether this replica holds the leader Lease.

use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Counter,
    duration: Histogram,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Counter::default();
        let failures = Counter::default();
        // 5 ms to ~40 s: a reconcile may wait on a leadership transfer.
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let leader = Gauge::default();
        let mut registry = Registry::with_prefix("txmesh_operator");
        registry.register(
            "reconciles",
            "Reconciles of TransactionCoordinators",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed and were retried after a back-off",
            failures.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "How long reconciles took",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and reconciles",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            leader,
        }
    }
}

impl Metrics {
    /// A reconcile starts: returns its start, for [`Metrics::reconcile_finished`].
    pub fn reconcile_started(&self) -> Instant {
        self.reconciles.inc();
        Instant::now()
    }

    /// A reconcile that started at `started` ended, well or not.
    pub fn reconcile_finished(&self, started: Instant, ok: bool) {
        self.duration.observe(started.elapsed().as_secs_f64());
        if !ok {
            self.failures.inc();
        }
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String does not fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_failures_and_durations_are_counted() {
        let metrics = Metrics::default();
        let started = metrics.reconcile_started();
        metrics.reconcile_finished(started, true);
        let started = metrics.reconcile_started();
        metrics.reconcile_finished(started, false);
        metrics.set_leader(true);
        let text = metrics.encode();
        for line in [
            "txmesh_operator_reconciles_total 2",
            "txmesh_operator_reconcile_failures_total 1",
            "txmesh_operator_reconcile_duration_seconds_count 2",
            "txmesh_operator_leader 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
