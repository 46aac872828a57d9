//! Workers that follow the leader while it is killed (`--kill-leader-every`): the bench
//! publishes the leader's Seata address, and a worker whose transaction failed moves its
//! connection to that address before its next one. Every acknowledged commit is remembered
//! for the check after the run, and reported to the outage clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use txmesh_seata::client::{ClientConfig, ClientError};

use super::load::{Connection, LoadPlan, REQUEST_TIMEOUT, TransactionRunner};
use super::workload::{End, Outcome, SplitMix64, Worker, client_failure};
use crate::outage::OutageClock;

/// How long a reconnect may try before the transaction counts as failed: within the time
/// the load waits for transactions in flight at its end.
const RECONNECT_BOUND: Duration = REQUEST_TIMEOUT;
/// Pause between connection attempts while no new leader is published.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// A connection pair shared by several workers, moved to the leader when it fails.
pub struct FollowedConnection {
    leader: watch::Receiver<String>,
    config: ClientConfig,
    resources: Vec<String>,
    current: tokio::sync::Mutex<Current>,
}

/// The pair in use, numbered so that workers that failed together reconnect once.
struct Current {
    generation: u64,
    addr: String,
    connection: Connection,
}

impl FollowedConnection {
    /// Connects to the leader `leader` names now.
    pub async fn open(
        leader: watch::Receiver<String>,
        config: ClientConfig,
        resources: Vec<String>,
    ) -> Result<Self, ClientError> {
        let addr = leader.borrow().clone();
        let connection = Connection::open(&addr, &config, &resources).await?;
        Ok(Self {
            leader,
            config,
            resources,
            current: tokio::sync::Mutex::new(Current {
                generation: 0,
                addr,
                connection,
            }),
        })
    }

    /// The pair in use and its generation.
    async fn current(&self) -> (u64, Connection) {
        let current = self.current.lock().await;
        (current.generation, current.connection.clone())
    }

    /// The pair to use after a transaction failed on generation `failed`: a newer pair if
    /// another worker has replaced it already, the same if it is open and on the published
    /// leader (the failure was not a failover), else a new pair on the published leader.
    async fn after_failure(&self, failed: u64) -> Result<(u64, Connection), ClientError> {
        let mut current = self.current.lock().await;
        let mut leader = self.leader.clone();
        let deadline = Instant::now() + RECONNECT_BOUND;
        while current.generation == failed {
            let addr = leader.borrow_and_update().clone();
            if current.connection.is_open() && current.addr == addr {
                break;
            }
            match Connection::open(&addr, &self.config, &self.resources).await {
                Ok(connection) => {
                    current.connection.close();
                    *current = Current {
                        generation: failed + 1,
                        addr,
                        connection,
                    };
                }
                Err(error) if Instant::now() >= deadline => return Err(error),
                // The old leader's address until a successor is published.
                Err(_) => {
                    let _ = tokio::time::timeout(RECONNECT_PAUSE, leader.changed()).await;
                }
            }
        }
        Ok((current.generation, current.connection.clone()))
    }

    /// Closes the pair in use.
    pub async fn close(&self) {
        self.current.lock().await.connection.close();
    }
}

/// What the coordinators acknowledged to the workers, checked after the run.
#[derive(Debug, Default)]
pub struct Acknowledged {
    /// Transactions begun that ended, or may have (a failed commit may have gone through):
    /// an upper bound of what the coordinator has finished since.
    ends: AtomicU64,
    /// Each committed XID with the number of such ends before it.
    committed: Mutex<Vec<(u64, String)>>,
}

impl Acknowledged {
    fn commit(&self, xid: String) {
        let seq = self.ends.fetch_add(1, Ordering::Relaxed);
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((seq, xid));
    }

    /// A transaction begun that was rolled back or failed.
    fn other_end(&self) {
        self.ends.fetch_add(1, Ordering::Relaxed);
    }

    /// The committed XIDs, each with how many transactions ended (or may have) after it.
    pub fn take(&self) -> Vec<(String, u64)> {
        let ends = self.ends.load(Ordering::Relaxed);
        let committed = std::mem::take(
            &mut *self
                .committed
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        committed
            .into_iter()
            .map(|(seq, xid)| (xid, ends.saturating_sub(seq + 1)))
            .collect()
    }
}

/// A load worker on a followed connection.
pub struct FollowingWorker {
    worker: Worker,
    connection: Arc<FollowedConnection>,
    generation: u64,
    /// Whether the last transaction failed, so the connection may need to move.
    failed: bool,
    clock: Arc<OutageClock>,
    acknowledged: Arc<Acknowledged>,
}

impl FollowingWorker {
    /// A worker of `plan` on `connection`'s current pair.
    pub async fn new(
        plan: &LoadPlan,
        random: SplitMix64,
        connection: Arc<FollowedConnection>,
        clock: Arc<OutageClock>,
        acknowledged: Arc<Acknowledged>,
    ) -> Self {
        let (generation, pair) = connection.current().await;
        Self {
            worker: Worker {
                tm: pair.tm,
                rm: pair.rm,
                workload: plan.workload,
                rows: plan.rows,
                random,
            },
            connection,
            generation,
            failed: false,
            clock,
            acknowledged,
        }
    }
}

impl TransactionRunner for FollowingWorker {
    async fn run_transaction(&mut self) -> Outcome {
        if self.failed {
            match self.connection.after_failure(self.generation).await {
                Ok((generation, pair)) => {
                    self.generation = generation;
                    (self.worker.tm, self.worker.rm) = (pair.tm, pair.rm);
                    self.failed = false;
                }
                Err(error) => {
                    return Outcome {
                        end: End::Failed(format!("reconnect: {}", client_failure(&error))),
                        lock_conflicts: 0,
                    };
                }
            }
        }
        let began = Instant::now();
        let mut xid = None;
        let outcome = self.worker.run_recording_xid(&mut xid).await;
        match outcome.end {
            End::Committed => {
                self.clock.committed(began);
                // Committed means begun: the XID is there.
                self.acknowledged.commit(xid.unwrap_or_default());
            }
            End::RolledBack => self.acknowledged.other_end(),
            End::Failed(_) => {
                if xid.is_some() {
                    self.acknowledged.other_end();
                }
                self.failed = true;
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_commit_knows_how_many_ends_followed_it() {
        let acknowledged = Acknowledged::default();
        acknowledged.commit("a".into());
        acknowledged.other_end();
        acknowledged.commit("b".into());
        acknowledged.commit("c".into());
        assert_eq!(
            acknowledged.take(),
            vec![("a".into(), 3), ("b".into(), 1), ("c".into(), 0)]
        );
    }
}
