//! Money transfers as TCC transactions across two ledgers, each behind its own sidecar, run
//! by a transaction manager behind a third: begin, try a withdrawal at the source and a
//! deposit at the target, then commit — or roll back when a try failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use txmesh_api::participant::{Serving, Sidecar};
use txmesh_api::v1::GlobalStatus;

use crate::ledger::{Direction, Ledger, Movement};

/// Resource (and application) id of the source ledger.
pub const SOURCE: &str = "ledger-a";
/// Resource (and application) id of the target ledger.
pub const TARGET: &str = "ledger-b";
/// How long a transfer may stay open before the coordinator rolls it back.
const TX_TIMEOUT: Duration = Duration::from_secs(5);

/// How a transfer ended, as its transaction manager saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (phase two may still be finishing).
    Committed,
    /// Rolled back because a try failed.
    RolledBack,
    /// A call failed; the coordinator finishes the transaction on its own.
    Failed(String),
}

/// One transfer: `amount` from `account` at the source to `account` at the target, with a
/// try told to fail at `fail`, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The account (it exists in both ledgers).
    pub account: String,
    /// How much.
    pub amount: i64,
    /// Which try fails.
    pub fail: Option<Direction>,
}

/// The two ledgers and the three sidecar clients.
pub struct Bank {
    tm: Sidecar,
    source: (Sidecar, Arc<Ledger>),
    target: (Sidecar, Arc<Ledger>),
    serving: Vec<Serving>,
}

impl Bank {
    /// Serves `source` and `target` through their sidecars and waits until both streams are
    /// open. Endpoints are `http://host:port`.
    pub async fn open(tm: &str, source: (&str, Arc<Ledger>), target: (&str, Arc<Ledger>)) -> Self {
        let client = |endpoint: &str| Sidecar::new(endpoint.to_owned()).expect("a valid endpoint");
        let source = (client(source.0), source.1);
        let target = (client(target.0), target.1);
        let serving = vec![
            source.0.serve(source.1.clone()),
            target.0.serve(target.1.clone()),
        ];
        for s in &serving {
            s.connected().await;
        }
        Self {
            tm: client(tm),
            source,
            target,
            serving,
        }
    }

    /// The source ledger.
    pub fn source(&self) -> &Arc<Ledger> {
        &self.source.1
    }

    /// The target ledger.
    pub fn target(&self) -> &Arc<Ledger> {
        &self.target.1
    }

    /// Waits until both participant streams are open again (after a sidecar restart).
    pub async fn reconnected(&self) {
        for s in &self.serving {
            s.connected().await;
        }
    }

    /// Runs one transfer.
    pub async fn transfer(&self, transfer: &Transfer) -> Outcome {
        let xid = match self.tm.begin("transfer", TX_TIMEOUT).await {
            Ok(xid) => xid,
            Err(status) => return Outcome::Failed(format!("begin: {status}")),
        };
        let movement = |direction| Movement {
            direction,
            account: transfer.account.clone(),
            amount: transfer.amount,
            fail: transfer.fail == Some(direction),
        };
        let (sidecar, ledger) = &self.source;
        let withdrawn = sidecar
            .try_branch(
                &**ledger,
                &xid,
                SOURCE,
                &movement(Direction::Withdraw).encode(),
            )
            .await;
        let tried = match withdrawn {
            Ok(_) => {
                let (sidecar, ledger) = &self.target;
                let deposit = movement(Direction::Deposit).encode();
                sidecar
                    .try_branch(&**ledger, &xid, TARGET, &deposit)
                    .await
                    .is_ok()
            }
            Err(_) => false,
        };
        if !tried {
            return match self.tm.rollback(&xid).await {
                Ok(_) => Outcome::RolledBack,
                Err(status) => Outcome::Failed(format!("rollback: {status}")),
            };
        }
        match self.tm.commit(&xid).await {
            Ok(
                GlobalStatus::TimeoutRollbacking
                | GlobalStatus::TimeoutRollbackRetrying
                | GlobalStatus::TimeoutRollbacked,
            ) => Outcome::RolledBack,
            Ok(_) => Outcome::Committed,
            Err(status) => Outcome::Failed(format!("commit: {status}")),
        }
    }

    /// The total of both ledgers (money in flight counted at the source).
    pub fn total(&self) -> i64 {
        self.source.1.total() + self.target.1.total()
    }

    /// Waits (at most `bound`) until neither ledger holds a try.
    pub async fn settled(&self, bound: Duration) -> bool {
        self.source.1.settled(bound).await && self.target.1.settled(bound).await
    }

    /// Phase-two calls that reached a ledger for a branch it had already finished.
    pub fn repeated_calls(&self) -> u64 {
        self.source.1.repeated_calls() + self.target.1.repeated_calls()
    }
}

/// Opening balances: `accounts` accounts named `acct-<n>`, each with `balance`.
pub fn accounts(accounts: usize, balance: i64) -> Vec<(String, i64)> {
    (0..accounts)
        .map(|n| (format!("acct-{n}"), balance))
        .collect()
}

/// Transfers for worker `worker`, seeded: amounts 1 to 5, about one try in five told to fail.
pub fn plan(worker: usize, count: usize, seed: u64) -> Vec<Transfer> {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(worker as u64));
    (0..count)
        .map(|_| Transfer {
            account: format!("acct-{worker}"),
            amount: rng.i64(1..=5),
            fail: match rng.u8(0..10) {
                0 => Some(Direction::Withdraw),
                1 => Some(Direction::Deposit),
                _ => None,
            },
        })
        .collect()
}

/// What `plan` should come to with these opening balances: each worker's account is its own,
/// so the outcomes are determined: committed unless a try fails or funds are short.
pub fn expected_outcomes(plans: &[Vec<Transfer>], balance: i64) -> Vec<Vec<Outcome>> {
    plans
        .iter()
        .map(|plan| {
            let mut left = balance;
            plan.iter()
                .map(|t| {
                    if t.fail.is_some() || left < t.amount {
                        Outcome::RolledBack
                    } else {
                        left -= t.amount;
                        Outcome::Committed
                    }
                })
                .collect()
        })
        .collect()
}

/// Workers transferring concurrently until stopped; each returns its outcomes.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// Starts `workers` workers, each transferring from its own account over and over.
    pub fn start(bank: Arc<Bank>, workers: usize, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|worker| {
                let (bank, stop) = (bank.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut round = 0;
                    while !stop.load(Ordering::Relaxed) {
                        for transfer in plan(worker, 16, seed.wrapping_add(round)) {
                            outcomes.push(bank.transfer(&transfer).await);
                        }
                        round += 1;
                    }
                    outcomes
                })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the workers after their current round; all outcomes.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.expect("a worker does not panic"));
        }
        all
    }
}
