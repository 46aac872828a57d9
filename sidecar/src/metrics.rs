//! The sidecar's Prometheus metrics: application calls by method and gRPC code with their
//! latency, phase-two deliveries by outcome, upstream reconnects and batching, fence hits.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tonic::Code;

/// Prefix of every metric name.
const PREFIX: &str = "txmesh_sidecar";

type Labels<const N: usize> = [(&'static str, &'static str); N];

/// What the sidecar records.
#[derive(Debug, Clone)]
pub struct Metrics {
    calls: Family<Labels<2>, Counter>,
    latency: Family<Labels<1>, Histogram>,
    in_flight: Gauge,
    phase_two: Family<Labels<2>, Counter>,
    fence_hits: Family<Labels<1>, Counter>,
    reconnects: Counter,
    batched_frames: Counter,
    batched_requests: Counter,
}

fn latency_histogram() -> Histogram {
    // 25 µs to 26 s.
    Histogram::new(exponential_buckets(0.000_025, 2.0, 21))
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            phase_two: Family::default(),
            fence_hits: Family::default(),
            reconnects: Counter::default(),
            batched_frames: Counter::default(),
            batched_requests: Counter::default(),
        }
    }
}

impl Metrics {
    /// A registry exposing these metrics.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "calls",
            "Application gRPC calls by method and status code",
            self.calls.clone(),
        );
        registry.register_with_unit(
            "call_duration",
            "Latency of application gRPC calls by method",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "calls_in_flight",
            "Application calls being served",
            self.in_flight.clone(),
        );
        registry.register(
            "phase_two",
            "Confirm/Cancel requests from coordinators by phase and answer",
            self.phase_two.clone(),
        );
        registry.register(
            "fence_hits",
            "Phase-two requests answered by the TCC fence without calling the application, by kind",
            self.fence_hits.clone(),
        );
        registry.register(
            "upstream_reconnects",
            "Coordinator connections lost and made again",
            self.reconnects.clone(),
        );
        registry.register(
            "upstream_merged_frames",
            "MergedWarpMessage frames sent upstream",
            self.batched_frames.clone(),
        );
        registry.register(
            "upstream_merged_requests",
            "Requests sent inside merged frames (divided by the frames: the mean batch size)",
            self.batched_requests.clone(),
        );
        registry
    }

    /// Counts a call starting; the guard records its end.
    pub fn call_started(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(self)
    }

    /// Records one finished application call.
    pub fn observe_call(&self, method: &'static str, code: Code, elapsed: Duration) {
        self.calls
            .get_or_create(&[("method", method), ("code", code_name(code))])
            .inc();
        self.latency
            .get_or_create(&[("method", method)])
            .observe(elapsed.as_secs_f64());
    }

    /// Records the answer given to a coordinator's phase-two request.
    pub fn observe_phase_two(&self, phase: &'static str, answer: &'static str) {
        self.phase_two
            .get_or_create(&[("phase", phase), ("answer", answer)])
            .inc();
    }

    /// Counts a phase-two request the fence answered by itself.
    pub fn fence_hit(&self, kind: &'static str) {
        self.fence_hits.get_or_create(&[("kind", kind)]).inc();
    }

    /// Counts a lost coordinator connection.
    pub fn reconnect(&self) {
        self.reconnects.inc();
    }

    /// Adds what a connection merged since the last call.
    pub fn batched(&self, frames: u64, requests: u64) {
        self.batched_frames.inc_by(frames);
        self.batched_requests.inc_by(requests);
    }

    /// Calls being served now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }
}

/// Decrements the in-flight gauge when dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// The canonical name of a gRPC code, as Prometheus labels carry it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn calls_are_labelled_by_method_and_code() {
        let metrics = Metrics::default();
        metrics.observe_call("Begin", Code::Ok, Duration::from_micros(80));
        metrics.observe_call("Begin", Code::Unavailable, Duration::from_millis(3));
        metrics.fence_hit("duplicate");
        let mut text = String::new();
        encode(&mut text, &metrics.registry()).expect("encodes");
        assert!(text.contains(r#"txmesh_sidecar_calls_total{method="Begin",code="OK"} 1"#));
        assert!(text.contains(r#"code="UNAVAILABLE"} 1"#));
        assert!(text.contains(r#"txmesh_sidecar_fence_hits_total{kind="duplicate"} 1"#));
        assert!(text.contains("txmesh_sidecar_call_duration_seconds_bucket"));
    }
}
