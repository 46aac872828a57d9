//! `txmesh bench sidecar`: what the sidecar costs. The same TCC transaction (begin, two
//! branches, commit; phase two confirmed at once) runs first straight against the coordinator
//! over Seata RPC, then through a `txmesh sidecar` child process over gRPC, with the branches'
//! Confirm delivered to the bench over `Participant.Serve` and recorded in the sidecar's
//! fence. The report sets both side by side: throughput, latency, the latency the sidecar
//! adds, and its CPU time per transaction.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use txmesh_api::participant::{Answer, Branch, Participant, Serving, Sidecar};
use txmesh_api::v1::{GlobalStatus, PhaseTwoAction};

use super::interrupt::Interrupt;
use super::load::{self, LoadPlan, TransactionRunner};
use super::report::Report;
use super::workload::{End, Outcome, Workload};
use crate::child;
use crate::local_cluster::LocalCluster;

/// Calls the application makes per transaction: begin, two registrations, commit.
const CALLS_PER_TRANSACTION: f64 = 4.0;
/// The resources the bench serves, one per branch.
const RESOURCES: [&str; 2] = ["bench-tcc-a", "bench-tcc-b"];
/// How long the sidecar may take to register with the coordinator.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `txmesh bench sidecar`.
#[derive(Debug, Args)]
pub struct SidecarBenchArgs {
    /// Voters of the coordinator group started for the run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    nodes: u32,

    /// Concurrent transactions.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,

    /// Seconds measured, for each of the two paths.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,

    /// Seconds of load before measuring, for each path.
    #[arg(long, default_value_t = 2)]
    warmup: u64,

    /// Merge concurrent requests into MergedWarpMessage frames, on both paths (the sidecar
    /// does by default; off here, because on loopback the flush window costs more than the
    /// saved syscalls).
    #[arg(long)]
    batch: bool,

    /// The sidecar's `--worker-threads`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    sidecar_worker_threads: u16,

    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// Both runs and what the sidecar adds.
#[derive(Debug, Serialize)]
pub struct SidecarReport {
    /// Straight to the coordinator.
    pub direct: Report,
    /// Through the sidecar.
    pub via_sidecar: Report,
    /// Added latency per transaction, p50 and p99, in milliseconds.
    pub added_ms: Added,
    /// The same per application call (four per transaction), in microseconds.
    pub added_per_call_us: Added,
}

/// A latency difference.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Added {
    /// At the median.
    pub p50: f64,
    /// At the 99th percentile.
    pub p99: f64,
}

impl SidecarBenchArgs {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        let json = self.json;
        let report = runtime.block_on(self.measure())?;
        match json {
            true => println!("{}", serde_json::to_string_pretty(&report)?),
            false => print!("{report}"),
        }
        Ok(())
    }

    async fn measure(self) -> anyhow::Result<SidecarReport> {
        let mut interrupt = Interrupt::listen();
        let cluster = interrupt
            .unless_interrupted(LocalCluster::start(
                self.nodes as usize,
                "txmesh-bench-",
                "warn",
            ))
            .await?;
        let (leader, _) = cluster.wait_for_leader(0, READY_TIMEOUT).await?;
        let leader = cluster.node(leader)?;
        let plan = LoadPlan {
            addr: leader.seata_addr.to_string(),
            coordinator_pid: leader.pid(),
            workload: Workload::Tcc,
            rows: 1,
            connections: self.concurrency.min(4),
            concurrency: self.concurrency,
            batch: self.batch,
            warmup: Duration::from_secs(self.warmup),
            duration: Duration::from_secs(self.duration),
        };
        let direct = load::run(&plan, &mut interrupt).await?;
        let direct = Report::new(&plan, &direct);

        let dir = cluster.dir().context("the cluster has no directory")?;
        let options = SidecarOptions {
            batch: self.batch,
            worker_threads: self.sidecar_worker_threads,
        };
        let mut sidecar = SidecarChild::start(&cluster.seata_addrs(), dir.into(), options).await?;
        let client = Sidecar::new(format!("http://{}", sidecar.grpc_addr))?;
        let serving = client.serve(Arc::new(InstantConfirm));
        interrupt
            .unless_interrupted(sidecar.wait_ready(&serving))
            .await?;
        let workers = (0..self.concurrency)
            .map(|_| SidecarWorker {
                sidecar: client.clone(),
            })
            .collect();
        let measured = load::measure(workers, &plan, sidecar.pid(), &mut interrupt).await?;
        drop(serving);
        let via_sidecar = Report::new(&plan, &measured);
        sidecar.stop();
        drop(cluster);
        let added = |direct: f64, via: f64| via - direct;
        let added_ms = Added {
            p50: added(direct.latency_ms.p50, via_sidecar.latency_ms.p50),
            p99: added(direct.latency_ms.p99, via_sidecar.latency_ms.p99),
        };
        let per_call = |ms: f64| (ms * 1000.0 / CALLS_PER_TRANSACTION).round();
        Ok(SidecarReport {
            added_per_call_us: Added {
                p50: per_call(added_ms.p50),
                p99: per_call(added_ms.p99),
            },
            added_ms,
            direct,
            via_sidecar,
        })
    }
}

impl fmt::Display for SidecarReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== straight to the coordinator (Seata RPC)")?;
        write!(f, "{}", self.direct)?;
        writeln!(f, "== through the sidecar (gRPC, fence, Participant.Serve)")?;
        write!(f, "{}", self.via_sidecar)?;
        writeln!(f, "== what the sidecar adds")?;
        writeln!(
            f,
            "{:<26}{:.3} / {:.3} ms",
            "per transaction p50 / p99", self.added_ms.p50, self.added_ms.p99
        )?;
        writeln!(
            f,
            "{:<26}{:.0} / {:.0} µs (the above over 4 app calls)",
            "per call p50 / p99", self.added_per_call_us.p50, self.added_per_call_us.p99
        )
    }
}

/// A participant whose tries and confirms succeed at once.
struct InstantConfirm;

impl Participant for InstantConfirm {
    type Error = Infallible;

    fn resource_ids(&self) -> Vec<String> {
        RESOURCES.iter().map(|r| (*r).to_owned()).collect()
    }

    async fn r#try(&self, _branch: &Branch) -> Result<(), Infallible> {
        Ok(())
    }

    async fn confirm(&self, _action: &PhaseTwoAction) -> Answer {
        Answer::Done
    }

    async fn cancel(&self, _action: &PhaseTwoAction) -> Answer {
        Answer::Done
    }
}

/// Runs the TCC transaction through the sidecar.
struct SidecarWorker {
    sidecar: Sidecar,
}

impl SidecarWorker {
    async fn transaction(&self) -> Result<End, String> {
        let xid = self
            .sidecar
            .begin("bench", TRANSACTION_TIMEOUT)
            .await
            .map_err(|status| format!("begin: {}", status.code()))?;
        for resource in RESOURCES {
            self.sidecar
                .try_branch(&InstantConfirm, &xid, resource, "")
                .await
                .map_err(|error| format!("register: {error}"))?;
        }
        match self.sidecar.commit(&xid).await {
            Ok(GlobalStatus::Committed) => Ok(End::Committed),
            Ok(status) => Err(format!("commit ended {status:?}")),
            Err(status) => Err(format!("commit: {}", status.code())),
        }
    }
}

impl TransactionRunner for SidecarWorker {
    async fn run_transaction(&mut self) -> Outcome {
        Outcome {
            end: self.transaction().await.unwrap_or_else(End::Failed),
            lock_conflicts: 0,
        }
    }
}

/// How the sidecar child runs.
#[derive(Debug, Clone, Copy)]
struct SidecarOptions {
    /// Merge concurrent upstream requests.
    batch: bool,
    /// Its `--worker-threads`.
    worker_threads: u16,
}

/// `txmesh sidecar` as a child process, its fence under the cluster's directory.
struct SidecarChild {
    child: Option<Child>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
}

impl SidecarChild {
    async fn start(
        coordinators: &[SocketAddr],
        dir: PathBuf,
        options: SidecarOptions,
    ) -> anyhow::Result<Self> {
        let [grpc_addr, http_addr] = child::free_local_addrs(2)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("expected two addresses"))?;
        let coordinators: Vec<String> = coordinators.iter().map(|a| a.to_string()).collect();
        let mut args = vec![
            "--log-level".to_owned(),
            "warn".to_owned(),
            "sidecar".to_owned(),
            "--coordinators".to_owned(),
            coordinators.join(","),
            "--grpc-addr".to_owned(),
            grpc_addr.to_string(),
            "--http-addr".to_owned(),
            http_addr.to_string(),
            "--application-id".to_owned(),
            "txmesh-bench".to_owned(),
            "--data-dir".to_owned(),
            dir.join("sidecar").display().to_string(),
        ];
        args.extend([
            "--worker-threads".to_owned(),
            options.worker_threads.to_string(),
        ]);
        if !options.batch {
            args.push("--no-batch".to_owned());
        }
        let log_path = dir.join("sidecar.log");
        let mut child = child::spawn(&args, &log_path)?;
        if let Err(error) =
            child::wait_listening(&mut child, grpc_addr, &log_path, "the sidecar").await
        {
            child::kill(child);
            return Err(error);
        }
        Ok(Self {
            child: Some(child),
            grpc_addr,
            http_addr,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until the bench's Serve stream is open and the sidecar has registered upstream.
    async fn wait_ready(&self, serving: &Serving) -> anyhow::Result<()> {
        tokio::time::timeout(READY_TIMEOUT, serving.connected())
            .await
            .context("the bench could not open its Serve stream")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.http_addr;
        loop {
            let probe = tokio::task::spawn_blocking(move || child::http_get(addr, "/readyz")).await;
            if let Ok(Ok((200, _))) = probe {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the sidecar was not ready within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(running) = self.child.take() {
            child::kill(running);
        }
    }
}

impl Drop for SidecarChild {
    fn drop(&mut self) {
        self.stop();
    }
}
