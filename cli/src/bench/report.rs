//! The results of a run: one JSON object (`--json`) or a table for humans.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::failover::FailoverReport;
use super::load::{LoadPlan, Measurement};
use super::plot::Point;
use super::workload::Workload;

/// Latency percentiles of the committed transactions, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Everything a run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The transactions run.
    pub workload: Workload,
    /// Rows locked among (AT only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// TM connections.
    pub connections: u32,
    /// Concurrent transactions.
    pub concurrency: u32,
    /// Whether requests were merged into batches.
    pub batch: bool,
    /// Length of the measured interval, in seconds.
    pub duration_s: f64,
    /// Whether a stop signal cut the run short.
    pub interrupted: bool,
    /// Transactions whose commit answer said `Committed`.
    pub committed: u64,
    /// Committed transactions per second.
    pub tx_per_s: f64,
    /// Latency from begin to the commit answer.
    pub latency_ms: LatencyMs,
    /// `LockKeyConflict` answers (each retry counts).
    pub lock_conflicts: u64,
    /// Transactions rolled back because their rows stayed locked (or a deadlock was broken).
    pub rolled_back: u64,
    /// Failed transactions.
    pub errors: u64,
    /// Failed transactions by what failed.
    pub error_kinds: BTreeMap<String, u64>,
    /// The coordinator's process, when known.
    pub coordinator_pid: Option<u32>,
    /// Coordinator CPU time (user + system) per committed transaction, in milliseconds.
    pub coordinator_cpu_ms_per_tx: Option<f64>,
    /// Coordinator CPU time per second of the run: 1.0 is one core busy.
    pub coordinator_cpu_cores: Option<f64>,
    /// Sidecar CPU time per committed transaction, in milliseconds (through a sidecar only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar_cpu_ms_per_tx: Option<f64>,
    /// Sidecar CPU time per second of the run (through a sidecar only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar_cpu_cores: Option<f64>,
    /// This load generator's CPU time per second of the run.
    pub load_generator_cpu_cores: f64,
    /// Leader kills and what they cost (`--kill-leader-every` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverReport>,
}

impl Report {
    /// The report of `measurement`, run as `plan` says.
    pub fn new(plan: &LoadPlan, measurement: &Measurement) -> Self {
        let tally = &measurement.tally;
        let latency = &tally.committed;
        let committed = latency.len();
        let seconds = measurement.elapsed.as_secs_f64();
        let per_second = |value: f64| if seconds > 0.0 { value / seconds } else { 0.0 };
        let cores = |cpu: Duration| round(per_second(cpu.as_secs_f64()), 3);
        let ms = |us: u64| us as f64 / 1000.0;
        let per_tx = |cpu: Option<Duration>| {
            cpu.filter(|_| committed > 0)
                .map(|cpu| round(cpu.as_secs_f64() * 1000.0 / committed as f64, 4))
        };
        Self {
            workload: plan.workload,
            rows: (plan.workload == Workload::At).then_some(plan.rows),
            connections: plan.connections,
            concurrency: plan.concurrency,
            batch: plan.batch,
            duration_s: round(seconds, 3),
            interrupted: measurement.interrupted,
            committed,
            tx_per_s: round(per_second(committed as f64), 1),
            latency_ms: LatencyMs {
                p50: ms(latency.quantile_us(0.50)),
                p99: ms(latency.quantile_us(0.99)),
                p999: ms(latency.quantile_us(0.999)),
                max: ms(latency.max_us()),
                mean: round(latency.mean_us() / 1000.0, 3),
            },
            lock_conflicts: tally.lock_conflicts,
            rolled_back: tally.rolled_back,
            errors: tally.error_count(),
            error_kinds: tally.errors.clone(),
            coordinator_pid: plan.coordinator_pid,
            coordinator_cpu_ms_per_tx: per_tx(measurement.cpu.coordinator),
            coordinator_cpu_cores: measurement.cpu.coordinator.map(cores),
            sidecar_cpu_ms_per_tx: per_tx(measurement.cpu.sidecar),
            sidecar_cpu_cores: measurement.cpu.sidecar.map(cores),
            load_generator_cpu_cores: cores(measurement.cpu.load_generator),
            failover: None,
        }
    }
}

impl Report {
    /// The run as a point of a latency-versus-throughput chart.
    pub fn point(&self) -> Point {
        Point {
            concurrency: self.concurrency,
            tx_per_s: self.tx_per_s,
            p50_ms: self.latency_ms.p50,
            p99_ms: self.latency_ms.p99,
        }
    }
}

/// A sweep's runs, a row per concurrency level.
pub fn sweep_table(reports: &[Report]) -> String {
    let mut out = format!(
        "{:>11} {:>10} {:>9} {:>9} {:>9} {:>14} {:>7}\n",
        "concurrency", "tx/s", "p50 ms", "p99 ms", "p999 ms", "coord CPU/tx", "errors"
    );
    for r in reports {
        let cpu = or_na(
            r.coordinator_cpu_ms_per_tx
                .map(|ms| format!("{:.1} µs", ms * 1000.0)),
        );
        out.push_str(&format!(
            "{:>11} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>14} {:>7}\n",
            r.concurrency,
            r.tx_per_s,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.p999,
            cpu,
            r.errors
        ));
    }
    out
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn or_na(value: Option<String>) -> String {
    value.unwrap_or_else(|| "n/a".into())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let workload = match self.workload {
            Workload::Empty => "empty (begin + commit)".to_owned(),
            Workload::Tcc => "tcc (2 TCC branches)".to_owned(),
            Workload::At => format!("at (2 AT branches, rows {})", self.rows.unwrap_or(0)),
        };
        let latency = &self.latency_ms;
        let mut rows = vec![
            ("workload", workload),
            ("connections", self.connections.to_string()),
            ("concurrency", self.concurrency.to_string()),
            ("batching", if self.batch { "on" } else { "off" }.to_owned()),
            (
                "measured",
                format!(
                    "{:.2} s{}",
                    self.duration_s,
                    if self.interrupted {
                        " (interrupted)"
                    } else {
                        ""
                    }
                ),
            ),
            ("committed", self.committed.to_string()),
            ("throughput", format!("{:.0} tx/s", self.tx_per_s)),
            (
                "latency p50 / p99 / p999",
                format!(
                    "{:.3} / {:.3} / {:.3} ms",
                    latency.p50, latency.p99, latency.p999
                ),
            ),
            (
                "latency max / mean",
                format!("{:.3} / {:.3} ms", latency.max, latency.mean),
            ),
            ("lock conflicts", self.lock_conflicts.to_string()),
            ("rolled back", self.rolled_back.to_string()),
            ("errors", error_summary(self.errors, &self.error_kinds)),
            (
                "coordinator CPU per tx",
                or_na(
                    self.coordinator_cpu_ms_per_tx
                        .map(|ms| format!("{:.1} µs", ms * 1000.0)),
                ),
            ),
            (
                "coordinator CPU",
                or_na(
                    self.coordinator_cpu_cores
                        .map(|cores| format!("{:.0} % of one core", cores * 100.0)),
                ),
            ),
        ];
        if let (Some(per_tx), Some(cores)) = (self.sidecar_cpu_ms_per_tx, self.sidecar_cpu_cores) {
            rows.push(("sidecar CPU per tx", format!("{:.1} µs", per_tx * 1000.0)));
            rows.push(("sidecar CPU", format!("{:.0} % of one core", cores * 100.0)));
        }
        rows.push((
            "load generator CPU",
            format!("{:.0} % of one core", self.load_generator_cpu_cores * 100.0),
        ));
        for (name, value) in rows {
            writeln!(f, "{name:<26}{value}")?;
        }
        match &self.failover {
            Some(failover) => write!(f, "{failover}"),
            None => Ok(()),
        }
    }
}

fn error_summary(errors: u64, kinds: &BTreeMap<String, u64>) -> String {
    if kinds.is_empty() {
        return errors.to_string();
    }
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(kind, count)| format!("{kind}: {count}"))
        .collect();
    format!("{errors} ({})", kinds.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cpu::CpuUse;
    use crate::bench::stats::Tally;
    use crate::bench::workload::{End, Outcome};

    fn plan(workload: Workload) -> LoadPlan {
        LoadPlan {
            addr: "127.0.0.1:8091".into(),
            coordinator_pid: Some(42),
            workload,
            rows: 1,
            connections: 2,
            concurrency: 8,
            batch: false,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(2),
        }
    }

    fn measurement(commits: u64, coordinator_cpu: Option<Duration>) -> Measurement {
        let mut tally = Tally::default();
        for _ in 0..commits {
            let outcome = Outcome {
                end: End::Committed,
                lock_conflicts: 0,
            };
            tally.record(outcome, Duration::from_micros(1500));
        }
        tally.record(
            Outcome {
                end: End::Failed("begin: timeout".into()),
                lock_conflicts: 0,
            },
            Duration::ZERO,
        );
        Measurement {
            tally,
            elapsed: Duration::from_secs(2),
            cpu: CpuUse {
                coordinator: coordinator_cpu,
                sidecar: None,
                load_generator: Duration::from_millis(500),
            },
            interrupted: false,
        }
    }

    #[test]
    fn derives_rates_and_cpu_per_transaction() {
        let report = Report::new(
            &plan(Workload::At),
            &measurement(1000, Some(Duration::from_millis(300))),
        );
        assert_eq!(report.committed, 1000);
        assert_eq!(report.tx_per_s, 500.0);
        assert_eq!(report.latency_ms.p50, 1.5);
        assert_eq!(report.coordinator_cpu_ms_per_tx, Some(0.3));
        assert_eq!(report.coordinator_cpu_cores, Some(0.15));
        assert_eq!(report.load_generator_cpu_cores, 0.25);
        assert_eq!(report.rows, Some(1));
        assert_eq!(report.errors, 1);
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["workload"], "at");
        assert_eq!(json["error_kinds"]["begin: timeout"], 1);
        assert_eq!(json["coordinator_pid"], 42);
    }

    #[test]
    fn unknown_cpu_and_no_commits_read_as_not_available() {
        let report = Report::new(&plan(Workload::Tcc), &measurement(0, None));
        assert_eq!(report.coordinator_cpu_ms_per_tx, None);
        assert_eq!(report.rows, None, "rows only matter for AT");
        let table = report.to_string();
        assert!(table.contains("coordinator CPU per tx    n/a"), "{table}");
        assert!(table.contains("errors                    1 (begin: timeout: 1)"));
    }
}
