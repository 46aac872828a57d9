//! The chaos: once a share of the transfers is done, the coordinator leader is killed with
//! SIGKILL; the demo reports when another node takes over and when transfers commit again,
//! then restarts the killed node on its data directory.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::console::Console;
use super::transfers::Live;
use crate::local_cluster::LocalCluster;
use crate::outage::DOWN_FOR;
/// How long an election may take before the demo gives up.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// Kills the leader once `at` transfers have finished (unless the run is `done` first);
/// returns how long the election took.
pub async fn kill_the_leader(
    cluster: &mut LocalCluster,
    live: &Live,
    at: u64,
    console: Console,
    done: watch::Receiver<bool>,
) -> anyhow::Result<Option<Duration>> {
    while live.finished() < at {
        if *done.borrow() {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
    let (leader, term) = cluster.wait_for_leader(0, ELECTION_TIMEOUT).await?;
    cluster.kill(leader)?;
    let killed = Instant::now();
    live.outage_begins();
    console.event(&format!(
        "✗ killed the coordinator leader, node {leader} (term {term}), after {} transfers",
        live.finished()
    ));
    let (successor, new_term) = cluster.wait_for_leader(term, ELECTION_TIMEOUT).await?;
    let election = killed.elapsed();
    console.event(&format!(
        "✓ node {successor} leads (term {new_term}), elected {} ms after the kill",
        election.as_millis()
    ));
    // Restart the killed node after DOWN_FOR, and report when transfers commit again
    // (whichever comes first); stop waiting for the latter once the run is over.
    let restart_at = killed + DOWN_FOR;
    let (mut restarted, mut reported) = (false, false);
    while !(restarted && (reported || *done.borrow())) {
        if let (false, Some(gap)) = (reported, live.outage_gap()) {
            console.event(&format!(
                "✓ transfers commit again, {} ms after the kill",
                gap.as_millis()
            ));
            reported = true;
        }
        if !restarted && Instant::now() >= restart_at {
            cluster.restart(leader).await?;
            console.event(&format!(
                "↻ node {leader} restarted on its data directory; it rejoins as a follower"
            ));
            restarted = true;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(Some(election))
}
