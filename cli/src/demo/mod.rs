//! `txmesh demo`: money transfers between two account services on a local coordinator group.
//!
//! It starts a Raft group of coordinators (child processes, RocksDB in a temporary
//! directory, free loopback ports), one sidecar per service (in this process), two account
//! services with in-memory ledgers serving TCC through `Participant.Serve`, and a client that
//! runs transfers between them through its own sidecar. Midway the coordinator leader is
//! killed and later restarted. At the end it checks that no money was created or lost, none
//! is left frozen, and each transfer was applied as the client was told; the exit code is
//! non-zero when that does not hold.

mod chaos;
mod check;
mod console;
mod ledger;
mod transfers;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use futures_util::future::join_all;
use tokio::sync::watch;
use txmesh_api::participant::{Serving, Sidecar as SidecarClient};
use txmesh_sidecar::{CoordinatorSource, Sidecar, SidecarConfig};

use self::check::Verdict;
use self::console::{Console, Summary};
use self::ledger::Ledger;
use self::transfers::{Live, Service, WorkerReport};
use crate::local_cluster::LocalCluster;

/// Money each account starts with.
const OPENING_BALANCE: u64 = 1_000;
/// How long the sidecars may take to register with the coordinators.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long phase two may take to reach every branch after the last transfer.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `txmesh demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Transfers to run.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    transfers: u64,

    /// Transfers in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,

    /// Share of tries (0–1) that fail on purpose, so their transfers roll back.
    #[arg(long, default_value_t = 0.1)]
    failure_rate: f64,

    /// Do not kill the coordinator leader midway.
    #[arg(long)]
    no_chaos: bool,

    /// Leave the coordinators running (and their data in place) when the demo ends.
    #[arg(long)]
    keep: bool,

    /// Coordinators in the Raft group.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=7))]
    nodes: u32,

    /// Accounts at each service.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    accounts: u32,

    /// Seed of the random transfers and failures [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,

    /// Make service B credit every confirmed transfer twice, to see the check fail.
    #[arg(long, hide = true)]
    sabotage: bool,
}

impl DemoArgs {
    /// Runs the demo; an error (exit code 2) when the invariant does not hold.
    pub fn run(self) -> anyhow::Result<()> {
        ensure!(
            (0.0..=1.0).contains(&self.failure_rate),
            "--failure-rate must be between 0 and 1, not {}",
            self.failure_rate
        );
        ensure!(
            self.no_chaos || self.nodes >= 3,
            "killing the leader needs at least 3 coordinators (or --no-chaos)"
        );
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        let verdict = runtime.block_on(self.demo())?;
        if !verdict.holds() {
            bail!("the invariant does not hold");
        }
        Ok(())
    }

    async fn demo(self) -> anyhow::Result<Verdict> {
        let console = Console::stdout();
        let seed = self.seed.unwrap_or_else(clock_seed);
        fastrand::seed(seed);
        let mut cluster = LocalCluster::start(self.nodes as usize, "txmesh-demo-", "warn").await?;
        let dir = cluster.dir().map(Path::to_path_buf).unwrap_or_default();
        let (leader, term) = cluster.wait_for_leader(0, READY_TIMEOUT).await?;
        console.event(&format!(
            "coordinators: {} nodes on {} (Raft, RocksDB under {}); node {leader} leads (term {term})",
            self.nodes,
            list(&cluster.seata_addrs()),
            dir.display()
        ));
        let seata_addrs: Vec<String> = cluster
            .seata_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let services = [("accounts-a", 'a'), ("accounts-b", 'b')];
        let mut sidecars = Vec::new();
        for name in ["transfer-client", services[0].0, services[1].0] {
            sidecars.push(start_sidecar(name, &dir, &seata_addrs).await?);
        }
        let clients: Vec<SidecarClient> = sidecars
            .iter()
            .map(|s| SidecarClient::new(format!("http://{}", s.grpc_addr())))
            .collect::<Result<_, _>>()?;
        let mut serving: Vec<Serving> = Vec::new();
        let mut account_services = Vec::new();
        for ((resource, prefix), client) in services.into_iter().zip(&clients[1..]) {
            let accounts: Vec<String> =
                (0..self.accounts).map(|i| format!("{prefix}{i}")).collect();
            let mut ledger = Ledger::new(resource, &accounts, OPENING_BALANCE, self.failure_rate);
            if self.sabotage && prefix == 'b' {
                ledger = ledger.sabotaged();
            }
            let ledger = Arc::new(ledger);
            let served = client.serve(ledger.clone());
            tokio::time::timeout(READY_TIMEOUT, served.connected())
                .await
                .with_context(|| format!("{resource} could not open its Serve stream"))?;
            serving.push(served);
            account_services.push(Service {
                sidecar: client.clone(),
                ledger,
                accounts,
            });
        }
        for sidecar in &sidecars {
            ensure!(
                sidecar.wait_ready(READY_TIMEOUT).await,
                "a sidecar did not register with the coordinators within {READY_TIMEOUT:?}"
            );
        }
        console.event(&format!(
            "services: accounts-a and accounts-b ({} accounts of {OPENING_BALANCE} each), a client; one sidecar each",
            self.accounts
        ));
        console.event(&format!(
            "running {} transfers, {} at a time, {:.0} % of tries failing on purpose{} (seed {seed})",
            self.transfers,
            self.concurrency,
            self.failure_rate * 100.0,
            if self.no_chaos { "" } else { ", leader killed midway" },
        ));

        let live = Arc::new(Live::new());
        let (done_tx, done) = watch::channel(false);
        let progress = tokio::spawn(console.progress(live.clone(), self.transfers, done.clone()));
        let services = [account_services[0].clone(), account_services[1].clone()];
        let workers: Vec<_> = (0..u64::from(self.concurrency))
            .map(|i| {
                let worker = transfers::worker(
                    clients[0].clone(),
                    services.clone(),
                    self.transfers,
                    seed.wrapping_add(i),
                    live.clone(),
                );
                tokio::spawn(worker)
            })
            .collect();
        let all_done = async {
            let reports = join_all(workers).await;
            done_tx.send_replace(true);
            reports
        };
        let chaos = async {
            match self.no_chaos {
                true => Ok(None),
                false => {
                    let at = self.transfers / 3;
                    chaos::kill_the_leader(&mut cluster, &live, at, console, done.clone()).await
                }
            }
        };
        let (reports, election) = tokio::join!(all_done, chaos);
        let elapsed = live.started().elapsed();
        let _ = progress.await;
        let election = election?;
        let mut merged = WorkerReport::default();
        for report in reports {
            let report = report.context("a transfer worker failed")?;
            merged.transfers.extend(report.transfers);
            merged.latencies.merge(&report.latencies);
            merged.abandoned.extend(report.abandoned);
        }

        let ledgers = [&*services[0].ledger, &*services[1].ledger];
        settle(&ledgers).await;
        let verdict = check::check(OPENING_BALANCE, &ledgers, &merged.transfers);
        let summary = Summary {
            transfers: self.transfers,
            elapsed,
            latencies: &merged.latencies,
            election,
            failover_gap: live.outage_gap(),
            abandoned: &merged.abandoned,
            verdict: &verdict,
        };
        print!("{}", summary.render());
        drop(serving);
        for sidecar in sidecars {
            sidecar.stop().await;
        }
        if self.keep {
            if let Some(kept) = cluster.keep() {
                console.event(&format!(
                    "coordinators left running: Seata RPC on {}, data and logs in {}",
                    list(&seata_addrs),
                    kept.display()
                ));
            }
        }
        Ok(verdict)
    }
}

/// Starts one in-process sidecar on free loopback ports, its fence under `dir`.
async fn start_sidecar(name: &str, dir: &Path, coordinators: &[String]) -> anyhow::Result<Sidecar> {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = SidecarConfig {
        grpc_addr: any_port,
        http_addr: any_port,
        coordinators: CoordinatorSource::Static(coordinators.to_vec()),
        data_dir: dir.join(format!("sidecar-{name}")),
        application_id: name.to_owned(),
        shutdown_grace: Duration::from_secs(2),
        ..SidecarConfig::default()
    };
    Sidecar::start(config)
        .await
        .with_context(|| format!("cannot start the sidecar of {name}"))
}

/// Waits until phase two has reached every branch (nothing frozen or announced is left), or
/// [`SETTLE_TIMEOUT`] passes; the check then reports what is left.
async fn settle(ledgers: &[&Ledger]) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while ledgers.iter().map(|l| l.unsettled()).sum::<u64>() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn list(items: &[impl ToString]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}
