//! What the demo prints: event lines, a live progress line (redrawn in place on a terminal,
//! a plain line every few seconds otherwise) and the closing summary.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::check::Verdict;
use super::transfers::Live;
use crate::bench::stats::LatencyHistogram;

const BAR_WIDTH: usize = 30;

/// Standard output, shared by the progress line and the events.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    terminal: bool,
}

impl Console {
    /// A console on standard output.
    pub fn stdout() -> Self {
        Self {
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// Prints one event line (clearing a progress line first).
    pub fn event(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let clear = if self.terminal { "\r\x1b[2K" } else { "" };
        // Nothing sensible is left to do when stdout is gone.
        let _ = writeln!(out, "{clear}{line}");
    }

    /// Redraws the progress line until `done` turns true.
    pub async fn progress(self, live: Arc<Live>, total: u64, mut done: watch::Receiver<bool>) {
        let every = match self.terminal {
            true => Duration::from_millis(200),
            false => Duration::from_secs(3),
        };
        loop {
            let finished = tokio::time::timeout(every, done.wait_for(|d| *d)).await;
            let line = progress_line(&live, total);
            let mut out = std::io::stdout().lock();
            let _ = match self.terminal {
                true => write!(out, "\r\x1b[2K{line}"),
                false => writeln!(out, "{line}"),
            };
            let _ = out.flush();
            if finished.is_ok() {
                if self.terminal {
                    let _ = writeln!(out);
                }
                return;
            }
        }
    }
}

fn progress_line(live: &Live, total: u64) -> String {
    let finished = live.finished().min(total);
    let filled = (finished as usize * BAR_WIDTH)
        .checked_div(total as usize)
        .unwrap_or(0);
    let elapsed = live.started().elapsed().as_secs_f64();
    let rate = if elapsed > 0.0 {
        finished as f64 / elapsed
    } else {
        0.0
    };
    format!(
        "  [{}{}] {finished:>6}/{total}  committed {:>6}  rolled back {:>5}  {rate:>6.0} tx/s",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        live.committed(),
        live.rolled_back(),
    )
}

/// Everything the summary shows.
#[derive(Debug)]
pub struct Summary<'a> {
    /// Transfers asked for.
    pub transfers: u64,
    /// Wall time of the transfers.
    pub elapsed: Duration,
    /// Committed transfers' latencies.
    pub latencies: &'a LatencyHistogram,
    /// Time from the kill to a new leader, when there was a kill.
    pub election: Option<Duration>,
    /// Time from the kill to the first commit of a transfer begun after it.
    pub failover_gap: Option<Duration>,
    /// Transfers given up on, with a sample reason.
    pub abandoned: &'a [String],
    /// The invariant check.
    pub verdict: &'a Verdict,
}

impl Summary<'_> {
    /// The summary as text.
    pub fn render(&self) -> String {
        let v = self.verdict;
        let rate = (v.committed + v.rolled_back) as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let ms = |us: u64| us as f64 / 1000.0;
        let mut out = String::new();
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "  {name:<22}{value}");
        };
        row("transfers", self.transfers.to_string());
        row("committed", v.committed.to_string());
        row("rolled back", v.rolled_back.to_string());
        if !self.abandoned.is_empty() {
            row(
                "abandoned",
                format!("{} (e.g. {})", self.abandoned.len(), self.abandoned[0]),
            );
        }
        row("throughput", format!("{rate:.0} tx/s"));
        row(
            "latency p50 / p99",
            format!(
                "{:.1} / {:.1} ms",
                ms(self.latencies.quantile_us(0.50)),
                ms(self.latencies.quantile_us(0.99))
            ),
        );
        let shown = |d: Option<Duration>| match d {
            Some(d) => format!("{} ms", d.as_millis()),
            None => "—".to_owned(),
        };
        row("new leader after", shown(self.election));
        row("failover gap", shown(self.failover_gap));
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        let _ = writeln!(out, "invariant");
        let _ = writeln!(
            out,
            "  {} money conserved: {} before, {} after",
            mark(v.total_before == v.total_after),
            v.total_before,
            v.total_after
        );
        let _ = writeln!(
            out,
            "  {} no frozen funds left ({} unsettled)",
            mark(v.unsettled == 0),
            v.unsettled
        );
        let _ = writeln!(
            out,
            "  {} every committed transfer applied exactly once, every rolled-back one not at all",
            mark(v.findings.is_empty())
        );
        for finding in &v.findings {
            let _ = writeln!(out, "      {finding}");
        }
        let _ = writeln!(
            out,
            "    phase-two actions repeated at a service: {}",
            v.duplicate_deliveries
        );
        out
    }
}
