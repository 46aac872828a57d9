//! The load: N TM connections (and N RM connections for workloads with branches), C workers
//! spread over them, each running one transaction after another through warm-up and the
//! measured interval. Only transactions that finish inside the measured interval count.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::task::JoinSet;
use txmesh_seata::client::{BatchConfig, ClientConfig, ClientError, NoResources, SeataClient};

use super::cpu::{CpuMeter, CpuUse};
use super::interrupt::Interrupt;
use super::stats::Tally;
use super::workload::{End, InstantPhaseTwo, Outcome, SplitMix64, Worker, Workload};

/// How long a request may wait for its answer; longer counts as a `timeout` error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the coordinator may take to elect itself and answer a first transaction.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(100);
/// A worker whose transaction failed waits this long, so that a dead connection does not
/// turn into a busy loop.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);

/// What to run, against which coordinator.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The coordinator's Seata address (`host:port`).
    pub addr: String,
    /// The coordinator's process, to measure its CPU time.
    pub coordinator_pid: Option<u32>,
    /// The transactions.
    pub workload: Workload,
    /// Rows the AT workload locks among.
    pub rows: u64,
    /// TM connections (and as many RM connections).
    pub connections: u32,
    /// Workers, each with one transaction in flight.
    pub concurrency: u32,
    /// Merge concurrent requests into MergedWarpMessage frames.
    pub batch: bool,
    /// Load before measuring.
    pub warmup: Duration,
    /// The measured interval.
    pub duration: Duration,
}

/// What the measured interval produced.
#[derive(Debug)]
pub struct Measurement {
    /// Outcomes and latencies.
    pub tally: Tally,
    /// Its actual length (shorter when interrupted).
    pub elapsed: Duration,
    /// CPU time used in it.
    pub cpu: CpuUse,
    /// Whether a stop signal ended it early.
    pub interrupted: bool,
}

/// Where the workers are; they count only while `Measuring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    WarmUp,
    Measuring,
    Done,
}

#[derive(Debug)]
struct SharedPhase(AtomicU8);

impl SharedPhase {
    fn get(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::WarmUp,
            1 => Phase::Measuring,
            _ => Phase::Done,
        }
    }

    fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Release);
    }
}

/// One TM connection and the connection its workers register branches on.
#[derive(Clone)]
pub struct Connection {
    /// Begins and ends transactions.
    pub tm: SeataClient,
    /// Registers branches and answers phase two (the TM connection when there are none).
    pub rm: SeataClient,
}

impl Connection {
    /// Connects to `addr` and registers a TM, and an RM for `resources` if there are any.
    pub async fn open(
        addr: &str,
        config: &ClientConfig,
        resources: &[String],
    ) -> Result<Self, ClientError> {
        let tm = SeataClient::connect(addr, config.clone(), Arc::new(NoResources)).await?;
        tm.register_tm().await?;
        if resources.is_empty() {
            // No branches to register: the TM connection stands in.
            return Ok(Self { rm: tm.clone(), tm });
        }
        let rm = SeataClient::connect(addr, config.clone(), Arc::new(InstantPhaseTwo)).await;
        let registered = match rm {
            Ok(rm) => rm.register_rm(resources).await.map(|_| rm),
            Err(error) => Err(error),
        };
        if registered.is_err() {
            tm.close();
        }
        Ok(Self {
            tm,
            rm: registered?,
        })
    }

    /// Whether both connections are still open.
    pub fn is_open(&self) -> bool {
        self.tm.close_reason().is_none() && self.rm.close_reason().is_none()
    }

    /// Closes both connections.
    pub fn close(&self) {
        self.tm.close();
        self.rm.close();
    }
}

/// Connects, waits for the coordinator to serve, runs the load and collects the results.
pub async fn run(plan: &LoadPlan, interrupt: &mut Interrupt) -> anyhow::Result<Measurement> {
    interrupt
        .unless_interrupted(wait_until_serving(plan))
        .await?;
    let connections = interrupt.unless_interrupted(connect(plan)).await?;

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let workers = (0..plan.concurrency)
        .map(|index| {
            let connection = &connections[index as usize % connections.len()];
            Worker {
                tm: connection.tm.clone(),
                rm: connection.rm.clone(),
                workload: plan.workload,
                rows: plan.rows,
                random: SplitMix64::new(seed ^ u64::from(index)),
            }
        })
        .collect();
    let measured = measure(workers, plan, None, interrupt).await;
    connections.iter().for_each(Connection::close);
    measured
}

/// Runs one transaction after another: a worker of the load.
pub trait TransactionRunner: Send + 'static {
    /// Runs one transaction to its end.
    fn run_transaction(&mut self) -> impl Future<Output = Outcome> + Send;
}

impl TransactionRunner for Worker {
    fn run_transaction(&mut self) -> impl Future<Output = Outcome> + Send {
        Worker::run_transaction(self)
    }
}

/// Runs `workers` through `plan`'s warm-up and measured interval, measuring the CPU time of
/// the coordinator and, when given, of a sidecar process.
pub async fn measure<W: TransactionRunner>(
    workers: Vec<W>,
    plan: &LoadPlan,
    sidecar_pid: Option<u32>,
    interrupt: &mut Interrupt,
) -> anyhow::Result<Measurement> {
    let phase = Arc::new(SharedPhase(AtomicU8::new(Phase::WarmUp as u8)));
    let mut running = JoinSet::new();
    let tallies: Vec<Arc<Mutex<Tally>>> = workers
        .into_iter()
        .map(|worker| {
            let tally = Arc::new(Mutex::new(Tally::default()));
            running.spawn(work(worker, phase.clone(), tally.clone()));
            tally
        })
        .collect();

    let warmed_up = interrupt.sleep(plan.warmup).await;
    let meter = CpuMeter::start(plan.coordinator_pid, sidecar_pid)?;
    let started = Instant::now();
    let mut finished = false;
    if warmed_up {
        phase.set(Phase::Measuring);
        finished = interrupt.sleep(plan.duration).await;
    }
    phase.set(Phase::Done);
    let elapsed = if warmed_up {
        started.elapsed()
    } else {
        Duration::ZERO
    };
    let cpu = meter.stop()?;

    // Transactions in flight end within the request timeout; what still hangs is abandoned.
    let all_ended = async { while running.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT + READY_POLL, all_ended).await;
    running.abort_all();
    let mut tally = Tally::default();
    for worker_tally in &tallies {
        tally.merge(&worker_tally.lock().unwrap_or_else(PoisonError::into_inner));
    }
    Ok(Measurement {
        tally,
        elapsed,
        cpu,
        interrupted: !finished,
    })
}

/// Runs transactions until `Done`, counting those that finish while `Measuring`.
async fn work<W: TransactionRunner>(
    mut worker: W,
    phase: Arc<SharedPhase>,
    tally: Arc<Mutex<Tally>>,
) {
    while phase.get() != Phase::Done {
        let started = Instant::now();
        let outcome = worker.run_transaction().await;
        let latency = started.elapsed();
        let failed = matches!(outcome.end, End::Failed(_));
        if phase.get() == Phase::Measuring {
            tally
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(outcome, latency);
        }
        if failed {
            tokio::time::sleep(FAILURE_PAUSE).await;
        }
    }
}

/// The Seata client settings of the load's connections.
pub fn client_config(plan: &LoadPlan) -> ClientConfig {
    ClientConfig {
        application_id: "txmesh-bench".into(),
        request_timeout: REQUEST_TIMEOUT,
        batch: plan.batch.then(BatchConfig::default),
        ..ClientConfig::default()
    }
}

async fn connect(plan: &LoadPlan) -> anyhow::Result<Vec<Connection>> {
    let config = client_config(plan);
    let resources = plan.workload.resources();
    let mut connections = Vec::new();
    for _ in 0..plan.connections {
        let connection = Connection::open(&plan.addr, &config, &resources).await;
        connections.push(connection.context("cannot connect and register")?);
    }
    Ok(connections)
}

/// Waits until an empty transaction commits on a connection of its own: the port opens
/// before the coordinator has elected itself leader, and until then it refuses transactions.
pub async fn wait_until_serving(plan: &LoadPlan) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let error = match probe(plan).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            return Err(error.context(format!(
                "the coordinator did not commit a transaction within {READY_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Connects, registers a TM and runs one empty transaction.
async fn probe(plan: &LoadPlan) -> anyhow::Result<()> {
    let tm = SeataClient::connect(&plan.addr, client_config(plan), Arc::new(NoResources)).await?;
    let committed = empty_transaction(&tm).await;
    tm.close();
    committed
}

async fn empty_transaction(tm: &SeataClient) -> anyhow::Result<()> {
    tm.register_tm().await.context("TM registration")?;
    let mut probe = Worker {
        tm: tm.clone(),
        rm: tm.clone(),
        workload: Workload::Empty,
        rows: 1,
        random: SplitMix64::new(0),
    };
    match probe.run_transaction().await.end {
        End::Committed => Ok(()),
        other => bail!("an empty transaction ended {other:?}"),
    }
}
