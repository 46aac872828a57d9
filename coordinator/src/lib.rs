//! The txmesh coordinator: a Seata-compatible transaction coordinator whose state is a
//! replicated state machine on openraft, with its log and snapshots in RocksDB.
//!
//! Layering: [`state`] (pure, deterministic) ← [`store`] (RocksDB) ← [`raft`] / [`node`]
//! (consensus, batching) ← [`tc`] (Seata semantics) and [`drivers`] (phase two, timeouts)
//! ← [`server`] (Seata RPC) and [`admin`] (HTTP: probes, [`metrics`], operator API).

pub mod address;
pub mod admin;
pub mod announced;
pub mod config;
pub mod drivers;
pub mod health;
mod lock_wait;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod server;
pub mod state;
pub mod store;
pub mod tc;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use txmesh_api::raft::v1::raft_server::RaftServer;

use admin::Admin;
pub use config::CoordinatorConfig;
use drivers::PhaseTwo;
use membership::Membership;
use node::Node;
use server::{RmRegistry, ServerContext};
use tc::Tc;

/// Why the coordinator cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The node did not start.
    #[error(transparent)]
    Start(#[from] node::StartError),
    /// The Raft core stopped for a reason a restart of the process may cure, a full volume
    /// aside.
    #[error(transparent)]
    Faulted(health::Fault),
    /// A listen address is unavailable.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running coordinator.
pub struct Coordinator {
    /// Whether this node leads, so its Seata server serves transaction requests.
    serving: watch::Receiver<bool>,
    node: Arc<Node>,
    phase_two: Arc<PhaseTwo>,
    seata_addr: SocketAddr,
    http_addr: SocketAddr,
    raft_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Coordinator {
    /// Starts the node, the Seata server, the admin API and the drivers.
    pub async fn start(config: CoordinatorConfig) -> Result<Self, RunError> {
        let (listener, seata_addr) = bind(config.seata_addr).await?;
        let (http_listener, http_addr) = bind(config.http_addr).await?;
        let (raft_listener, raft_addr) = bind(config.raft_addr).await?;
        // The XID and the advertised endpoints carry the ports actually bound (tests bind
        // port 0).
        let config = CoordinatorConfig {
            seata_addr,
            raft_addr,
            http_addr,
            ..config
        };
        let node = Node::start(&config).await?;
        let registry = Arc::new(RmRegistry::default());
        let phase_two = PhaseTwo::new(node.clone(), registry.clone(), config.recovery.clone());
        let tc = Arc::new(Tc::new(
            node.clone(),
            phase_two.clone(),
            config.xid_address(),
            config.locks.wait(),
        ));
        let (stop, stopped) = watch::channel(false);
        let (leading, serving) = watch::channel(false);
        let ctx = Arc::new(ServerContext::new(
            tc,
            registry.clone(),
            config.server.clone(),
            node.metrics.connections(),
        ));
        let membership = Arc::new(Membership::new(node.clone(), &config));
        let advertised = membership.advertised().clone();
        let admin = Admin::new(node.clone(), phase_two.clone(), membership, &config);
        let tasks = vec![
            tokio::spawn(server::serve(listener, ctx, stopped.clone())),
            tokio::spawn(serve_raft(
                raft_listener,
                raft::RaftService::new(node.raft.clone(), advertised),
                stopped.clone(),
            )),
            tokio::spawn(admin::serve(http_listener, admin, stopped.clone())),
            tokio::spawn(drivers::run_timeouts(
                node.clone(),
                phase_two.clone(),
                stopped.clone(),
            )),
            tokio::spawn(drivers::run_undo_log_trimming(
                node.clone(),
                registry,
                config.recovery.clone(),
                stopped.clone(),
            )),
            tokio::spawn(follow_leadership(
                node.clone(),
                phase_two.clone(),
                leading,
                stopped,
            )),
        ];
        tracing::info!(%seata_addr, %http_addr, node_id = config.node_id, xid_address = %config.xid_address(), "coordinator started");
        Ok(Self {
            serving,
            node,
            phase_two,
            seata_addr,
            http_addr,
            raft_addr,
            stop,
            tasks,
        })
    }

    /// The Seata RPC address actually bound.
    pub fn seata_addr(&self) -> SocketAddr {
        self.seata_addr
    }

    /// The admin HTTP address actually bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The Raft peer address actually bound.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// The node, for reads of its state.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Waits until this node leads and its Seata server serves transaction requests.
    pub async fn wait_until_leading(&self, timeout: Duration) -> bool {
        let mut serving = self.serving.clone();
        tokio::time::timeout(timeout, serving.wait_for(|leading| *leading))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Transactions currently being driven through phase two.
    pub fn phase_two_running(&self) -> usize {
        self.phase_two.running()
    }

    /// Stops serving and shuts Raft down.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.node.shutdown().await;
    }
}

/// How a run that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The shutdown signal came.
    Shutdown,
    /// A full data volume stopped the node, and space is free again: start it anew, as
    /// `txmesh coordinator` does by executing itself again.
    Resume,
}

/// How often a node stopped by a full volume looks for free space.
const SPACE_POLL: Duration = Duration::from_secs(1);

/// Runs a coordinator until `shutdown` completes or its Raft core stops. A core stopped by a
/// full data volume keeps the node up, telling clients and probes so, until the configured
/// free space is back ([`Ended::Resume`]); any other stop is [`RunError::Faulted`].
pub async fn run(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Ended, RunError> {
    let resume_at = config.storage.resume_free_bytes();
    let coordinator = Coordinator::start(config).await?;
    tokio::pin!(shutdown);
    let ended = tokio::select! {
        () = &mut shutdown => Ok(Ended::Shutdown),
        fault = coordinator.node.faulted() => match fault.recoverable() {
            true => {
                tracing::error!(%fault, resume_at, "waiting for free space on the data volume");
                tokio::select! {
                    () = &mut shutdown => Ok(Ended::Shutdown),
                    () = space_freed(coordinator.node.volume(), resume_at) => {
                        tracing::warn!("space is free again on the data volume: restarting");
                        Ok(Ended::Resume)
                    }
                }
            }
            false => {
                tracing::error!(%fault, "the coordinator cannot go on");
                Err(RunError::Faulted(fault))
            }
        },
    };
    tracing::info!("coordinator stopping");
    coordinator.stop().await;
    ended
}

/// Completes once `volume` has `bytes` available.
async fn space_freed(volume: &health::Volume, bytes: u64) {
    while volume.space().is_none_or(|space| space.available < bytes) {
        tokio::time::sleep(SPACE_POLL).await;
    }
}

/// Listens on `addr`; returns the listener and the address actually bound (tests bind port 0).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), RunError> {
    let bound = match TcpListener::bind(addr).await {
        Ok(listener) => listener.local_addr().map(|local| (listener, local)),
        Err(error) => Err(error),
    };
    bound.map_err(|source| RunError::Bind { addr, source })
}

/// How often a leader looks for phase-two work that no run is driving.
const PHASE_TWO_SWEEP: Duration = Duration::from_secs(2);

/// Serves the Raft transport to the peers until `stop` turns true.
async fn serve_raft(
    listener: TcpListener,
    service: raft::RaftService,
    mut stop: watch::Receiver<bool>,
) {
    let service = RaftServer::new(service);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stopped(&mut stop))
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the Raft transport stopped");
    }
}

/// Completes once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Follows this node's role and publishes it to [`Coordinator::wait_until_leading`]. Client
/// connections stay open across role changes: requests get a not-leader answer on followers,
/// and a new leader reaches the RMs already registered with it. Each time this node starts
/// leading a term (at start, after an election — even one it wins again), it resumes every
/// transaction in phase two: the new leader decides nothing anew and forces no rollback. While
/// leading, it also sweeps for phase-two work periodically, so no missed event strands one.
async fn follow_leadership(
    node: Arc<Node>,
    phase_two: Arc<PhaseTwo>,
    leading: watch::Sender<bool>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut roles = node.raft.server_metrics();
    let mut led_term = None;
    let mut sweep = tokio::time::interval(PHASE_TWO_SWEEP);
    loop {
        let (leader, vote) = {
            let role = roles.borrow_and_update();
            (role.state == openraft::ServerState::Leader, role.vote)
        };
        let was_leader = leading.send_replace(leader);
        if leader && led_term != Some(vote) {
            led_term = Some(vote);
            let resumed = phase_two.resume_all();
            tracing::info!(
                node_id = node.id,
                term = vote.leader_id().term,
                resumed,
                "leading; phase two resumed"
            );
        }
        if was_leader && !leader {
            tracing::info!(
                node_id = node.id,
                "no longer leading; {}",
                node.leader_description()
            );
        }
        tokio::select! {
            changed = roles.changed() => if changed.is_err() { return },
            _ = sweep.tick(), if leader => { phase_two.resume_all(); }
            _ = crate::stopped(&mut stopped) => return,
        }
    }
}
