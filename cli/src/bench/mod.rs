//! `txmesh bench coordinator`: a Seata-protocol load generator. It starts its own coordinator
//! group as child processes (or loads one at `--addr`), runs transactions from many concurrent
//! workers, and reports committed tx/s, latency percentiles and the leader's CPU time per
//! transaction. Results: docs/benchmarks.md.

mod cpu;
mod failover;
mod follow;
mod interrupt;
mod load;
mod plot;
mod report;
mod sidecar;
pub(crate) mod stats;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::{Args, Subcommand, ValueEnum};

use crate::local_cluster::LocalCluster;
use interrupt::Interrupt;
use load::LoadPlan;
use plot::Series;
use report::Report;
use workload::Workload;

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Load a coordinator with Seata transactions; report tx/s, latency and its CPU per tx.
    Coordinator(CoordinatorBenchArgs),
    /// The same TCC transactions straight to the coordinator and through a sidecar: what the
    /// sidecar adds in latency and CPU.
    Sidecar(sidecar::SidecarBenchArgs),
}

impl BenchCommand {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            BenchCommand::Coordinator(args) => args.run(),
            BenchCommand::Sidecar(args) => args.run(),
        }
    }
}

/// Options of `txmesh bench coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorBenchArgs {
    /// Seata address (HOST:PORT) of a running coordinator [default: start one as a child
    /// process, on free local ports and a temporary data directory under $TMPDIR].
    #[arg(long)]
    addr: Option<String>,

    /// Process id of the coordinator at --addr, to measure its CPU time.
    #[arg(long, requires = "addr")]
    coordinator_pid: Option<u32>,

    /// Voters of the coordinator group started for the run (1 = a single node; 3 or 5 = a
    /// Raft group on loopback, loaded through its leader).
    #[arg(long, default_value_t = 1, conflicts_with = "addr",
          value_parser = clap::value_parser!(u32).range(1..=9))]
    nodes: u32,

    /// The transactions: begin + commit, 2 TCC branches, or 2 AT branches with row locks.
    #[arg(long, value_enum, default_value_t = Workload::Tcc)]
    workload: Workload,

    /// TM connections (and, with branches, as many RM connections).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,

    /// Concurrent transactions, spread evenly over the connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,

    /// Seconds measured.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,

    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,

    /// Rows the AT workload locks among (1 = every transaction wants the same hot row).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    rows: u64,

    /// Merge concurrent requests of a connection into MergedWarpMessage frames.
    #[arg(long)]
    batch: bool,

    /// Run once per concurrency level (e.g. `1,4,16,64,256`) instead of once at
    /// --concurrency, one row each; connections are capped at the level.
    #[arg(long, value_delimiter = ',', conflicts_with = "concurrency",
          value_parser = clap::value_parser!(u32).range(1..))]
    sweep: Vec<u32>,

    /// Write the sweep's latency-versus-throughput chart to this SVG file.
    #[arg(long, requires = "sweep")]
    plot: Option<PathBuf>,

    /// Failover mode: SIGKILL the leader every SECS seconds of the measured interval and
    /// restart it a second later; report the election time and the write-unavailability gap
    /// of each kill, and any acknowledged commit the group lost (the exit code is non-zero
    /// then). Needs --nodes 3 or more.
    #[arg(long, value_name = "SECS", conflicts_with_all = ["addr", "sweep"],
          value_parser = clap::value_parser!(u64).range(1..))]
    kill_leader_every: Option<u64>,

    /// Print JSON (one object; with --sweep an array) instead of a table.
    #[arg(long)]
    json: bool,
}

impl CoordinatorBenchArgs {
    /// Checks what clap cannot check field by field.
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            !self.sweep.is_empty() || self.concurrency >= self.connections,
            "--concurrency ({}) must be at least --connections ({}): a connection without a \
             worker would stay idle",
            self.concurrency,
            self.connections
        );
        if let Some(every) = self.kill_leader_every {
            ensure!(
                self.nodes >= 3,
                "--kill-leader-every needs --nodes 3 or more: the others must elect a leader"
            );
            ensure!(
                every < self.duration,
                "--kill-leader-every ({every}) must be shorter than --duration ({}): no kill \
                 would happen",
                self.duration
            );
        }
        Ok(())
    }

    fn run(self) -> anyhow::Result<()> {
        self.validate()?;
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        let (json, sweeping, plot) = (self.json, !self.sweep.is_empty(), self.plot.clone());
        let workload = self
            .workload
            .to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default();
        let title = format!(
            "txmesh bench coordinator --workload {workload} --nodes {}",
            self.nodes
        );
        let reports = runtime.block_on(self.measure())?;
        if let Some(path) = plot {
            let series = Series {
                label: title
                    .trim_start_matches("txmesh bench coordinator ")
                    .to_owned(),
                points: reports.iter().map(Report::point).collect(),
            };
            std::fs::write(&path, plot::svg(&title, &[series]))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        match (json, sweeping) {
            (true, true) => println!("{}", serde_json::to_string_pretty(&reports)?),
            (true, false) => println!("{}", serde_json::to_string_pretty(&reports[0])?),
            (false, true) => print!("{}", report::sweep_table(&reports)),
            (false, false) => print!("{}", reports[0]),
        }
        let lost: u64 = reports
            .iter()
            .filter_map(|report| report.failover.as_ref())
            .map(|failover| failover.lost_acknowledged)
            .sum();
        ensure!(lost == 0, "{lost} acknowledged commits were lost");
        Ok(())
    }

    /// The concurrency levels to measure.
    fn levels(&self) -> Vec<u32> {
        match self.sweep.is_empty() {
            true => vec![self.concurrency],
            false => self.sweep.clone(),
        }
    }

    async fn measure(self) -> anyhow::Result<Vec<Report>> {
        let mut interrupt = Interrupt::listen();
        let mut own_cluster = match self.addr {
            Some(_) => None,
            None => Some(
                interrupt
                    .unless_interrupted(LocalCluster::start(
                        self.nodes as usize,
                        "txmesh-bench-",
                        "warn",
                    ))
                    .await?,
            ),
        };
        let (addr, coordinator_pid) = match &own_cluster {
            Some(cluster) => {
                let leader = interrupt.unless_interrupted(leader_of(cluster)).await?;
                (leader.seata_addr.to_string(), leader.pid())
            }
            None => (self.addr.clone().unwrap_or_default(), self.coordinator_pid),
        };
        let mut reports = Vec::new();
        for concurrency in self.levels() {
            let plan = LoadPlan {
                addr: addr.clone(),
                coordinator_pid,
                workload: self.workload,
                rows: self.rows,
                connections: self.connections.min(concurrency),
                concurrency,
                batch: self.batch,
                warmup: Duration::from_secs(self.warmup),
                duration: Duration::from_secs(self.duration),
            };
            let report = match (self.kill_leader_every, own_cluster.as_mut()) {
                (Some(every), Some(cluster)) => {
                    let every = Duration::from_secs(every);
                    failover::run(cluster, &plan, every, &mut interrupt).await?
                }
                _ => Report::new(&plan, &load::run(&plan, &mut interrupt).await?),
            };
            let interrupted = report.interrupted;
            reports.push(report);
            if interrupted {
                break;
            }
        }
        // Killed and reaped before anything is printed.
        drop(own_cluster);
        Ok(reports)
    }
}

/// The node leading `cluster`, once one is elected.
async fn leader_of(cluster: &LocalCluster) -> anyhow::Result<&crate::local_cluster::LocalNode> {
    let (id, _) = cluster.wait_for_leader(0, LEADER_TIMEOUT).await?;
    cluster.node(id)
}

/// How long a started group may take to elect a leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        bench: BenchCommand,
    }

    fn parse(args: &[&str]) -> Result<CoordinatorBenchArgs, clap::Error> {
        let cli = Cli::try_parse_from(["bench", "coordinator"].iter().chain(args))?;
        match cli.bench {
            BenchCommand::Coordinator(args) => Ok(args),
            BenchCommand::Sidecar(_) => unreachable!("parsed as the coordinator bench"),
        }
    }

    #[test]
    fn defaults_match_the_documented_run() {
        let args = parse(&[]).expect("parses");
        assert_eq!(args.workload, Workload::Tcc);
        assert_eq!((args.connections, args.concurrency), (4, 64));
        assert_eq!((args.duration, args.warmup, args.rows), (10, 2, 1000));
        assert!(args.addr.is_none() && !args.batch && !args.json);
        args.validate().expect("the defaults are valid");
    }

    #[test]
    fn zero_counts_are_refused() {
        for flag in ["--connections", "--concurrency", "--duration", "--rows"] {
            assert!(parse(&[flag, "0"]).is_err(), "{flag} 0 accepted");
        }
        assert!(parse(&["--warmup", "0"]).is_ok(), "no warm-up is fine");
    }

    #[test]
    fn fewer_workers_than_connections_is_refused() {
        let args = parse(&["--connections", "8", "--concurrency", "4"]).expect("parses");
        let error = args.validate().expect_err("refused");
        assert!(error.to_string().contains("--concurrency (4)"), "{error}");
        parse(&["--connections", "1", "--concurrency", "1"])
            .expect("parses")
            .validate()
            .expect("one client alone is valid");
    }

    #[test]
    fn a_coordinator_pid_needs_an_address() {
        assert!(parse(&["--coordinator-pid", "7"]).is_err());
        let args = parse(&["--addr", "10.0.0.1:8091", "--coordinator-pid", "7"]).expect("parses");
        assert_eq!(args.coordinator_pid, Some(7));
    }

    #[test]
    fn failover_needs_its_own_group_and_time_for_a_kill() {
        assert!(parse(&["--kill-leader-every", "2", "--addr", "10.0.0.1:8091"]).is_err());
        assert!(parse(&["--kill-leader-every", "2", "--sweep", "1,4"]).is_err());
        assert!(parse(&["--kill-leader-every", "0"]).is_err());
        let refused = |args: &[&str]| {
            let args = parse(args).expect("parses");
            args.validate().expect_err("refused").to_string()
        };
        assert!(refused(&["--kill-leader-every", "2"]).contains("--nodes 3"));
        let late = refused(&["--kill-leader-every", "10", "--nodes", "3"]);
        assert!(late.contains("shorter than --duration"), "{late}");
        let args = parse(&["--kill-leader-every", "2", "--nodes", "3"]).expect("parses");
        args.validate().expect("valid");
        assert_eq!(args.kill_leader_every, Some(2));
    }

    #[test]
    fn workloads_are_named_in_lowercase() {
        for (name, workload) in [
            ("empty", Workload::Empty),
            ("tcc", Workload::Tcc),
            ("at", Workload::At),
        ] {
            assert_eq!(
                parse(&["--workload", name]).expect("parses").workload,
                workload
            );
        }
    }
}
