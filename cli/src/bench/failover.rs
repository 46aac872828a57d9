//! `txmesh bench coordinator --kill-leader-every SECS`: the load runs on a local group whose
//! leader is killed with SIGKILL every SECS seconds of the measured interval and restarted on
//! its data directory after a second. Workers follow the leader. Per kill it reports the
//! election time and the write-unavailability gap (kill → first commit of a transaction begun
//! after it); after each failover and after the run it asks the leader about every commit
//! acknowledged since and counts those it no longer knows as committed: lost acknowledged
//! outcomes, which must be none.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use futures_util::{StreamExt, stream};
use serde::Serialize;
use tokio::sync::watch;
use txmesh_coordinator::state::FINISHED_CAPACITY;
use txmesh_seata::client::{NoResources, SeataClient};
use txmesh_seata::message::GlobalEndRequest;
use txmesh_seata::{GlobalStatus, Message, TransactionExceptionCode};

use super::follow::{Acknowledged, FollowedConnection, FollowingWorker};
use super::interrupt::Interrupt;
use super::load::{self, LoadPlan};
use super::report::Report;
use super::workload::SplitMix64;
use crate::local_cluster::LocalCluster;
use crate::outage::{DOWN_FOR, OutageClock};

/// How long an election may take before the run fails.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restarted node may take to catch up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the leader is looked up between kills (it may also change on its own).
const LEADER_POLL: Duration = Duration::from_millis(100);
/// How long the check after the run may take to get an answer about every commit.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Status queries in flight at once during the check.
const CHECK_CONCURRENCY: usize = 64;

/// Runs `plan` on `cluster`, killing its leader every `every` of the measured interval.
pub async fn run(
    cluster: &mut LocalCluster,
    plan: &LoadPlan,
    every: Duration,
    interrupt: &mut Interrupt,
) -> anyhow::Result<Report> {
    // The leader changes: no one process's CPU time stands for the coordinator's.
    let plan = LoadPlan {
        coordinator_pid: None,
        ..plan.clone()
    };
    interrupt
        .unless_interrupted(load::wait_until_serving(&plan))
        .await?;
    let (leader, following) = watch::channel(plan.addr.clone());
    let clock = Arc::new(OutageClock::default());
    let acknowledged = Arc::new(Acknowledged::default());
    let mut connections = Vec::new();
    for _ in 0..plan.connections {
        let opening = FollowedConnection::open(
            following.clone(),
            load::client_config(&plan),
            plan.workload.resources(),
        );
        let connection = async { opening.await.context("cannot connect and register") };
        connections.push(Arc::new(interrupt.unless_interrupted(connection).await?));
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut workers = Vec::new();
    for index in 0..plan.concurrency {
        let connection = connections[index as usize % connections.len()].clone();
        let random = SplitMix64::new(seed ^ u64::from(index));
        workers.push(
            FollowingWorker::new(
                &plan,
                random,
                connection,
                clock.clone(),
                acknowledged.clone(),
            )
            .await,
        );
    }

    let measuring_from = Instant::now() + plan.warmup;
    let schedule = Schedule {
        first: measuring_from + every,
        every,
        end: measuring_from + plan.duration,
    };
    let (done, until_done) = watch::channel(false);
    let measuring = async {
        let measurement = load::measure(workers, &plan, None, interrupt).await;
        let _ = done.send(true);
        measurement
    };
    let chaos = Chaos {
        cluster,
        leader,
        clock,
        acknowledged,
        done: until_done,
    };
    let (measurement, chaos) = tokio::join!(measuring, chaos.run(schedule));
    for connection in &connections {
        connection.close().await;
    }
    let (measurement, (kills, check)) = (measurement?, chaos?);
    let mut report = Report::new(&plan, &measurement);
    report.failover = Some(FailoverReport::new(every, &kills, check));
    Ok(report)
}

/// When to kill: at `first`, then `every` later (or as soon as the previous failover is
/// over, if it took longer), while before `end`.
struct Schedule {
    first: Instant,
    every: Duration,
    end: Instant,
}

/// One leader kill.
#[derive(Debug, Clone, Copy)]
struct Kill {
    node: u64,
    term: u64,
    election: Duration,
    /// `None` if no transaction begun after the kill committed before the run ended.
    gap: Option<Duration>,
}

/// The group under load and what the workers publish and report.
struct Chaos<'a> {
    cluster: &'a mut LocalCluster,
    /// The leader's Seata address, for the workers.
    leader: watch::Sender<String>,
    clock: Arc<OutageClock>,
    acknowledged: Arc<Acknowledged>,
    /// Turns true when the load has ended.
    done: watch::Receiver<bool>,
}

impl Chaos<'_> {
    /// Kills the leader as `schedule` says until the load is done, keeping the published
    /// leader current in between. After each failover, and once the load has ended, asks
    /// the leader about the commits acknowledged since the last check: while they are
    /// fewer than it remembers finished transactions, it can tell about every one.
    async fn run(mut self, schedule: Schedule) -> anyhow::Result<(Vec<Kill>, OutcomeCheck)> {
        let (mut kills, mut check) = (Vec::new(), OutcomeCheck::default());
        let mut at = schedule.first;
        'kills: while at < schedule.end {
            while Instant::now() < at {
                if let Some((id, _)) = self.cluster.leader().await {
                    self.publish(id)?;
                }
                if !self.pause(LEADER_POLL.min(at - Instant::now())).await {
                    break 'kills;
                }
            }
            kills.push(self.kill_leader().await?);
            check.add(check_outcomes(self.cluster, self.acknowledged.take()).await?);
            at = (at + schedule.every).max(Instant::now());
        }
        let _ = self.done.wait_for(|&done| done).await;
        check.add(check_outcomes(self.cluster, self.acknowledged.take()).await?);
        Ok((kills, check))
    }

    /// Kills the leader, publishes its successor, restarts it after [`DOWN_FOR`] and waits
    /// until it is caught up and writes have resumed (or the load is done).
    async fn kill_leader(&mut self) -> anyhow::Result<Kill> {
        let (node, term) = self.cluster.wait_for_leader(0, ELECTION_TIMEOUT).await?;
        self.cluster.kill(node)?;
        let killed = self.clock.begins();
        let (successor, _) = self.cluster.wait_for_leader(term, ELECTION_TIMEOUT).await?;
        let election = killed.elapsed();
        self.publish(successor)?;
        tokio::time::sleep_until((killed + DOWN_FOR).into()).await;
        self.cluster.restart(node).await?;
        self.cluster.wait_until_ready(node, READY_TIMEOUT).await?;
        while self.clock.gap().is_none() && self.pause(LEADER_POLL).await {}
        Ok(Kill {
            node,
            term,
            election,
            gap: self.clock.gap(),
        })
    }

    /// Tells the workers that node `id` leads.
    fn publish(&self, id: u64) -> anyhow::Result<()> {
        let addr = self.cluster.node(id)?.seata_addr.to_string();
        self.leader.send_if_modified(|published| {
            let changed = *published != addr;
            *published = addr;
            changed
        });
        Ok(())
    }

    /// Waits for `duration`; `false` if the load is done first.
    async fn pause(&mut self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = self.done.wait_for(|&done| done) => false,
        }
    }
}

/// What the leader said about the acknowledged commits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutcomeCheck {
    /// Commits asked about.
    pub checked: u64,
    /// Commits the leader does not report as committed.
    pub lost: u64,
    /// Commits it may have forgotten by design: it remembers only the last
    /// [`FINISHED_CAPACITY`] finished transactions, and as many may have ended after these.
    pub forgotten: u64,
}

impl OutcomeCheck {
    fn add(&mut self, other: OutcomeCheck) {
        self.checked += other.checked;
        self.lost += other.lost;
        self.forgotten += other.forgotten;
    }
}

/// How a status answers for an acknowledged commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Kept,
    Forgotten,
    Lost,
}

/// The verdict on a commit answered `status`, after which at most `ends_after` transactions
/// ended. `Finished` is what an unknown XID gets, so it means lost unless the coordinator
/// may have forgotten the transaction.
fn verdict(status: GlobalStatus, ends_after: u64) -> Verdict {
    use GlobalStatus as G;
    match status {
        G::Committed | G::Committing | G::CommitRetrying | G::AsyncCommitting => Verdict::Kept,
        G::Finished if ends_after >= FINISHED_CAPACITY as u64 => Verdict::Forgotten,
        _ => Verdict::Lost,
    }
}

/// Asks the leader for the status of every committed XID (with the ends after it); XIDs
/// without an answer (the leader moved) are asked again of the next leader.
async fn check_outcomes(
    cluster: &LocalCluster,
    committed: Vec<(String, u64)>,
) -> anyhow::Result<OutcomeCheck> {
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let mut check = OutcomeCheck::default();
    let mut pending = committed;
    while !pending.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "the leader did not answer about {} acknowledged commits within {CHECK_TIMEOUT:?}",
            pending.len()
        );
        let (id, _) = cluster.wait_for_leader(0, ELECTION_TIMEOUT).await?;
        let addr = cluster.node(id)?.seata_addr.to_string();
        let Ok(tm) = SeataClient::connect(&addr, Default::default(), Arc::new(NoResources)).await
        else {
            continue;
        };
        if tm.register_tm().await.is_err() {
            tm.close();
            continue;
        }
        let answers: Vec<_> = stream::iter(pending)
            .map(|(xid, ends_after)| {
                let tm = &tm;
                async move { (status(tm, &xid).await, xid, ends_after) }
            })
            .buffer_unordered(CHECK_CONCURRENCY)
            .collect()
            .await;
        tm.close();
        pending = Vec::new();
        for (status, xid, ends_after) in answers {
            let Some(status) = status else {
                pending.push((xid, ends_after));
                continue;
            };
            check.checked += 1;
            match verdict(status, ends_after) {
                Verdict::Kept => {}
                Verdict::Forgotten => check.forgotten += 1,
                Verdict::Lost => check.lost += 1,
            }
        }
    }
    Ok(check)
}

/// `xid`'s status; `None` when not answered or answered not-leader.
async fn status(tm: &SeataClient, xid: &str) -> Option<GlobalStatus> {
    let request = GlobalEndRequest {
        xid: xid.into(),
        extra_data: String::new(),
    };
    match tm.call(Message::GlobalStatusRequest(request)).await {
        Ok(Message::GlobalStatusResponse(r))
            if r.result.is_success()
                || r.result.exception_code != TransactionExceptionCode::NotRaftLeader =>
        {
            Some(r.global_status)
        }
        _ => None,
    }
}

/// Percentiles of a few durations, in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SpreadMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Longest.
    pub max: f64,
}

impl SpreadMs {
    /// The spread of `values`; `None` when there are none.
    fn of(values: impl IntoIterator<Item = Duration>) -> Option<Self> {
        let mut sorted: Vec<Duration> = values.into_iter().collect();
        sorted.sort();
        let rank = |quantile: f64| {
            let rank = (quantile * sorted.len() as f64).ceil() as usize;
            ms(sorted[rank.clamp(1, sorted.len()) - 1])
        };
        let max = ms(*sorted.last()?);
        Some(Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max,
        })
    }
}

impl fmt::Display for SpreadMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.0} / {:.0} / {:.0} ms", self.p50, self.p99, self.max)
    }
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

/// One kill, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KillReport {
    /// The node killed (the leader).
    pub node: u64,
    /// The term it led.
    pub term: u64,
    /// From the kill until another node led.
    pub election_ms: f64,
    /// From the kill until a transaction begun after it committed (null: none did before the
    /// run ended).
    pub gap_ms: Option<f64>,
}

/// The failover part of a run's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailoverReport {
    /// Seconds between kills.
    pub kill_every_s: u64,
    /// Each kill.
    pub kills: Vec<KillReport>,
    /// Election times over all kills.
    pub election_ms: Option<SpreadMs>,
    /// Write-unavailability gaps over the kills after which writes resumed.
    pub gap_ms: Option<SpreadMs>,
    /// Kills after which no transaction begun later committed before the run ended.
    pub not_resumed: u64,
    /// Acknowledged commits asked about after the run.
    pub acknowledged_commits: u64,
    /// Of those, how many the leader no longer reports as committed (must be 0).
    pub lost_acknowledged: u64,
    /// Of those, how many answered `Finished` when it may have forgotten them by design (as
    /// many transactions as it remembers may have ended after them).
    pub forgotten: u64,
}

impl FailoverReport {
    fn new(every: Duration, kills: &[Kill], check: OutcomeCheck) -> Self {
        Self {
            kill_every_s: every.as_secs(),
            kills: kills
                .iter()
                .map(|kill| KillReport {
                    node: kill.node,
                    term: kill.term,
                    election_ms: ms(kill.election),
                    gap_ms: kill.gap.map(ms),
                })
                .collect(),
            election_ms: SpreadMs::of(kills.iter().map(|kill| kill.election)),
            gap_ms: SpreadMs::of(kills.iter().filter_map(|kill| kill.gap)),
            not_resumed: kills.iter().filter(|kill| kill.gap.is_none()).count() as u64,
            acknowledged_commits: check.checked,
            lost_acknowledged: check.lost,
            forgotten: check.forgotten,
        }
    }
}

impl fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_na = |spread: Option<SpreadMs>| spread.map_or("n/a".into(), |s| s.to_string());
        writeln!(
            f,
            "{:<26}{} (every {} s)",
            "leader kills",
            self.kills.len(),
            self.kill_every_s
        )?;
        for (number, kill) in self.kills.iter().enumerate() {
            let gap = kill
                .gap_ms
                .map_or("writes did not resume before the end".into(), |gap| {
                    format!("write gap {gap:.0} ms")
                });
            writeln!(
                f,
                "{:<26}node {} (term {}): elected in {:.0} ms, {gap}",
                format!("  kill {}", number + 1),
                kill.node,
                kill.term,
                kill.election_ms
            )?;
        }
        writeln!(
            f,
            "{:<26}{}",
            "election p50 / p99 / max",
            or_na(self.election_ms)
        )?;
        let resumed = match self.not_resumed {
            0 => String::new(),
            n => format!(" ({n} kills without resumed writes)"),
        };
        writeln!(
            f,
            "{:<26}{}{resumed}",
            "write gap p50 / p99 / max",
            or_na(self.gap_ms)
        )?;
        let forgotten = match self.forgotten {
            0 => String::new(),
            n => format!(", {n} older than what the leader remembers"),
        };
        writeln!(
            f,
            "{:<26}{} of {} acknowledged commits{forgotten}",
            "lost acknowledged", self.lost_acknowledged, self.acknowledged_commits
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_kept_while_its_decision_is() {
        for status in [
            GlobalStatus::Committed,
            GlobalStatus::Committing,
            GlobalStatus::CommitRetrying,
            GlobalStatus::AsyncCommitting,
        ] {
            assert_eq!(verdict(status, 0), Verdict::Kept, "{status}");
        }
        for status in [
            GlobalStatus::Begin,
            GlobalStatus::Rollbacked,
            GlobalStatus::TimeoutRollbacked,
        ] {
            assert_eq!(verdict(status, u64::MAX), Verdict::Lost, "{status}");
        }
    }

    #[test]
    fn finished_is_lost_unless_the_coordinator_may_have_forgotten_it() {
        let capacity = FINISHED_CAPACITY as u64;
        assert_eq!(verdict(GlobalStatus::Finished, 0), Verdict::Lost);
        assert_eq!(verdict(GlobalStatus::Finished, capacity - 1), Verdict::Lost);
        assert_eq!(
            verdict(GlobalStatus::Finished, capacity),
            Verdict::Forgotten
        );
    }

    #[test]
    fn spreads_use_the_nearest_rank() {
        assert_eq!(SpreadMs::of([]), None);
        let values = [300, 100, 200, 400].map(Duration::from_millis);
        let spread = SpreadMs::of(values).expect("values");
        assert_eq!((spread.p50, spread.p99, spread.max), (200.0, 400.0, 400.0));
        let one = SpreadMs::of([Duration::from_micros(1_234_560)]).expect("one");
        assert_eq!((one.p50, one.max), (1234.6, 1234.6));
    }

    #[test]
    fn the_report_lists_each_kill_and_the_losses() {
        let kills = [
            Kill {
                node: 1,
                term: 1,
                election: Duration::from_millis(400),
                gap: Some(Duration::from_millis(700)),
            },
            Kill {
                node: 2,
                term: 2,
                election: Duration::from_millis(500),
                gap: None,
            },
        ];
        let check = OutcomeCheck {
            checked: 10,
            lost: 0,
            forgotten: 0,
        };
        let report = FailoverReport::new(Duration::from_secs(3), &kills, check);
        assert_eq!(report.not_resumed, 1);
        assert_eq!(report.gap_ms.map(|g| g.max), Some(700.0));
        let table = report.to_string();
        assert!(
            table.contains("leader kills              2 (every 3 s)"),
            "{table}"
        );
        assert!(table.contains("node 1 (term 1): elected in 400 ms, write gap 700 ms"));
        assert!(table.contains("lost acknowledged         0 of 10 acknowledged commits"));
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["lost_acknowledged"], 0);
        assert!(json["kills"][1]["gap_ms"].is_null());
    }
}
