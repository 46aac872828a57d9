//! Rolls back `Begin` transactions whose deadline passed, reading the front of the state's
//! deadline index instead of scanning every session.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::watch;
use txmesh_seata::GlobalStatus;

use super::PhaseTwo;
use crate::node::Node;
use crate::state::{Command, Outcome};
use crate::tc::now_ms;

/// Longest sleep between looks at the deadline index: a transaction begun meanwhile with a
/// shorter timeout is seen this late at most.
const MAX_NAP: Duration = Duration::from_millis(100);
/// Timeouts proposed per round.
const ROUND: usize = 1_024;

/// Runs until `shutdown` turns true.
pub async fn run_timeouts(
    node: Arc<Node>,
    phase_two: Arc<PhaseTwo>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = now_ms();
        let (expired, next) = {
            let state = node.state.read();
            let expired: Vec<u64> = state.tx.expired(now).take(ROUND).collect();
            (
                expired,
                state.tx.next_deadline().map(|(deadline, _)| deadline),
            )
        };
        if node.is_leader() && !expired.is_empty() {
            let proposals = expired.iter().map(|tx_id| {
                node.propose(Command::Timeout {
                    tx_id: *tx_id,
                    now_ms: now,
                })
            });
            for (tx_id, outcome) in expired.iter().zip(join_all(proposals).await) {
                match outcome {
                    Ok(Outcome::Status(GlobalStatus::TimeoutRollbacking)) => {
                        drop(phase_two.start(*tx_id))
                    }
                    Ok(_) => {}
                    Err(error) => tracing::info!(tx_id, %error, "timeout not recorded"),
                }
            }
            continue;
        }
        let nap = next.map_or(MAX_NAP, |deadline| {
            Duration::from_millis(deadline.saturating_sub(now)).min(MAX_NAP)
        });
        tokio::select! {
            _ = tokio::time::sleep(nap.max(Duration::from_millis(1))) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
    }
}
