//! The transfers: each is a global transaction begun through the client's sidecar, with a
//! debit try at the paying service and a credit try at the receiving one (each through its
//! own sidecar), then a commit — or a rollback when a try failed. Calls that fail with a
//! retryable error (a coordinator failing over) are repeated; commit and rollback are
//! idempotent, so repeating one whose answer was lost is safe.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::Status;
use txmesh_api::participant::Sidecar;
use txmesh_api::reason::is_retryable;
use txmesh_api::v1::GlobalStatus;

use super::ledger::{Ledger, Leg, LegKind};
use crate::bench::stats::LatencyHistogram;
use crate::outage::OutageClock;

/// How long a transfer's transaction may stay open before the coordinator rolls it back.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call is retried while the coordinators are unavailable.
const RETRY_FOR: Duration = Duration::from_secs(20);
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The largest amount moved by one transfer.
const MAX_AMOUNT: u64 = 100;

/// An account service: its sidecar and its ledger.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service's own sidecar.
    pub sidecar: Sidecar,
    /// Its accounts.
    pub ledger: Arc<Ledger>,
    /// The names of its accounts.
    pub accounts: Vec<String>,
}

/// How a transfer ended, as the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The coordinator decided to commit.
    Committed,
    /// The coordinator decided to roll back.
    RolledBack,
}

/// One transfer's outcome.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Its global transaction.
    pub xid: String,
    /// How it ended.
    pub ending: Ending,
    /// The debited leg (paying service) and the credited leg.
    pub legs: [Leg; 2],
}

/// Counters the progress line and the chaos read while transfers run.
#[derive(Debug)]
pub struct Live {
    started: Instant,
    /// Transfers handed out to workers.
    next: AtomicU64,
    committed: AtomicU64,
    rolled_back: AtomicU64,
    /// The failover gap, ended by the first commit of a transfer begun after the kill.
    outage: OutageClock,
}

impl Live {
    /// Counters for a run starting now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            next: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            rolled_back: AtomicU64::new(0),
            outage: OutageClock::default(),
        }
    }

    /// When the run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Committed transfers so far.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Rolled-back transfers so far.
    pub fn rolled_back(&self) -> u64 {
        self.rolled_back.load(Ordering::Relaxed)
    }

    /// Transfers finished so far.
    pub fn finished(&self) -> u64 {
        self.committed() + self.rolled_back()
    }

    /// Marks the start of an outage (a coordinator was killed).
    pub fn outage_begins(&self) {
        self.outage.begins();
    }

    /// The last outage's gap, once a transfer begun after it has committed.
    pub fn outage_gap(&self) -> Option<Duration> {
        self.outage.gap()
    }

    fn count(&self, ending: Ending, began: Instant) {
        match ending {
            Ending::Committed => {
                self.committed.fetch_add(1, Ordering::Relaxed);
                self.outage.committed(began);
            }
            Ending::RolledBack => {
                self.rolled_back.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What one worker did.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// Every transfer it finished.
    pub transfers: Vec<Transfer>,
    /// Begin-to-end latencies of its committed transfers.
    pub latencies: LatencyHistogram,
    /// Transfers it gave up on (the coordinators stayed unavailable), with why.
    pub abandoned: Vec<String>,
}

/// Runs transfers until `total` have been handed out, one at a time.
pub async fn worker(
    client: Sidecar,
    services: [Service; 2],
    total: u64,
    seed: u64,
    live: Arc<Live>,
) -> WorkerReport {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut report = WorkerReport::default();
    while live.next.fetch_add(1, Ordering::Relaxed) < total {
        let paying = rng.usize(0..2);
        let (from, to) = (&services[paying], &services[1 - paying]);
        let amount = rng.u64(1..=MAX_AMOUNT);
        let legs = [
            leg(LegKind::Debit, pick(&mut rng, &from.accounts), amount),
            leg(LegKind::Credit, pick(&mut rng, &to.accounts), amount),
        ];
        let began = Instant::now();
        match transfer(&client, [from, to], &legs).await {
            Ok((xid, ending)) => {
                live.count(ending, began);
                if ending == Ending::Committed {
                    report.latencies.record(began.elapsed());
                }
                report.transfers.push(Transfer { xid, ending, legs });
            }
            Err(status) => report.abandoned.push(status.message().to_owned()),
        }
    }
    report
}

fn leg(kind: LegKind, account: &str, amount: u64) -> Leg {
    Leg {
        kind,
        account: account.to_owned(),
        amount,
    }
}

fn pick<'a>(rng: &mut fastrand::Rng, accounts: &'a [String]) -> &'a str {
    &accounts[rng.usize(0..accounts.len())]
}

/// One transfer: begin, both tries, commit or roll back.
async fn transfer(
    client: &Sidecar,
    services: [&Service; 2],
    legs: &[Leg; 2],
) -> Result<(String, Ending), Status> {
    let xid = retrying(|| client.begin("transfer", TRANSACTION_TIMEOUT)).await?;
    let mut tried = true;
    for (service, leg) in services.iter().zip(legs) {
        let ledger = &*service.ledger;
        let data = leg.encode();
        let done = service
            .sidecar
            .try_branch(ledger, &xid, ledger.resource_id(), &data)
            .await;
        if done.is_err() {
            tried = false;
            break;
        }
    }
    let status = match tried {
        true => retrying(|| client.commit(&xid)).await?,
        false => retrying(|| client.rollback(&xid)).await?,
    };
    match ending_of(status) {
        Some(ending) => Ok((xid, ending)),
        None => Err(Status::internal(format!("{xid} ended {status:?}"))),
    }
}

/// Which way a status says the transaction went; `None` when it says neither.
fn ending_of(status: GlobalStatus) -> Option<Ending> {
    use GlobalStatus as G;
    match status {
        G::Committed | G::Committing | G::CommitRetrying | G::AsyncCommitting => {
            Some(Ending::Committed)
        }
        G::Rollbacked
        | G::Rollbacking
        | G::RollbackRetrying
        | G::TimeoutRollbacked
        | G::TimeoutRollbacking
        | G::TimeoutRollbackRetrying => Some(Ending::RolledBack),
        _ => None,
    }
}

/// Repeats `call` while it fails with a retryable error, for up to [`RETRY_FOR`].
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        match call().await {
            Err(status) if is_retryable(&status) && Instant::now() < deadline => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_decision_they_carry() {
        assert_eq!(
            ending_of(GlobalStatus::CommitRetrying),
            Some(Ending::Committed)
        );
        assert_eq!(
            ending_of(GlobalStatus::TimeoutRollbacked),
            Some(Ending::RolledBack)
        );
        assert_eq!(ending_of(GlobalStatus::Begin), None);
        assert_eq!(ending_of(GlobalStatus::CommitFailed), None);
    }

    #[test]
    fn commits_end_the_gap_and_rollbacks_do_not() {
        let live = Live::new();
        live.outage_begins();
        live.count(Ending::RolledBack, Instant::now());
        assert_eq!(live.outage_gap(), None, "a rollback is not a commit");
        live.count(Ending::Committed, Instant::now());
        assert!(live.outage_gap().is_some());
        assert_eq!(live.committed(), 1);
        assert_eq!(live.finished(), 2);
    }
}
