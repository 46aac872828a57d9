//! The txmesh sidecar: an application in any language takes part in Seata transactions over
//! gRPC on localhost (`txmesh.v1`), and the sidecar speaks Seata RPC to the coordinators.
//!
//! Layering: [`discovery`] (where the coordinators are) → [`upstream`] (Seata connections,
//! registration, leader following) ← [`phase_two`] (coordinator requests through the
//! [`fence`] to the [`apps`]' streams) ; [`grpc`] (the API) and [`http`] (probes, [`metrics`])
//! on top.

pub mod apps;
pub mod config;
pub mod convert;
pub mod discovery;
pub mod fence;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod phase_two;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use apps::Apps;
pub use config::{CoordinatorSource, SidecarConfig};
use fence::Fence;
use grpc::Api;
use metrics::Metrics;
use phase_two::PhaseTwoHandler;
use upstream::{Upstream, UpstreamConfig};

/// Why the sidecar cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The coordinator list is unusable.
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    /// The fence cannot be opened.
    #[error(transparent)]
    Fence(#[from] fence::FenceError),
    /// The data directory cannot be made.
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A listen address is unavailable.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address (or socket path).
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running sidecar.
pub struct Sidecar {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    upstream: Upstream<PhaseTwoHandler>,
    apps: Arc<Apps>,
    fence: Arc<Fence>,
    handler: Arc<PhaseTwoHandler>,
    metrics: Metrics,
    accepting: watch::Sender<bool>,
    /// Stops the coordinator connections.
    stop_upstream: watch::Sender<bool>,
    /// Stops the servers.
    stop: watch::Sender<bool>,
    grace: Duration,
    phase_two_timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
}

/// How long stopping waits for the servers after the grace period.
const STOP_BOUND: Duration = Duration::from_secs(5);

impl Sidecar {
    /// Opens the fence, starts following the coordinators and serves the API and probes.
    pub async fn start(config: SidecarConfig) -> Result<Self, RunError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| RunError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let fence = Arc::new(Fence::open(&config.data_dir.join("fence"))?);
        let metrics = Metrics::default();
        let apps = Arc::new(Apps::default());
        let handler = Arc::new(PhaseTwoHandler::new(
            fence.clone(),
            apps.clone(),
            config.phase_two_timeout,
            metrics.clone(),
        ));
        let endpoints =
            discovery::watch_source(config.coordinators.clone(), config.discovery_interval).await?;
        let grpc_listener = bind(config.grpc_addr).await?;
        let http_listener = bind(config.http_addr).await?;
        let grpc_addr = local_addr(&grpc_listener, config.grpc_addr)?;
        let http_addr = local_addr(&http_listener, config.http_addr)?;

        let (stop, stopped) = watch::channel(false);
        let (stop_upstream, upstream_stopped) = watch::channel(false);
        let upstream_config = UpstreamConfig {
            client: config.client_config(),
            ready_wait: config.ready_wait,
            reconnect_min: config.reconnect_min,
            reconnect_max: config.reconnect_max,
        };
        let (upstream, upstream_task) = Upstream::start(
            upstream_config,
            handler.clone(),
            endpoints,
            apps.resources(),
            metrics.clone(),
            upstream_stopped,
        );
        let (accepting, accepting_now) = watch::channel(true);
        let api = Api::new(
            upstream.clone(),
            fence.clone(),
            apps.clone(),
            metrics.clone(),
            accepting_now,
        );
        let mut tasks = vec![
            upstream_task,
            tokio::spawn(serve_tcp(grpc_listener, api.clone(), stopped.clone())),
            tokio::spawn(http::serve(
                http_listener,
                http::Probes::new(upstream.clone(), metrics.registry()),
                stopped.clone(),
            )),
            tokio::spawn(collect_fence_garbage(
                fence.clone(),
                config.fence_retention,
                stopped.clone(),
            )),
        ];
        if let Some(path) = &config.grpc_uds {
            tasks.push(tokio::spawn(serve_uds(bind_uds(path)?, api, stopped)));
        }
        tracing::info!(%grpc_addr, uds = ?config.grpc_uds, %http_addr, app = %config.application_id, "sidecar started");
        Ok(Self {
            grpc_addr,
            http_addr,
            upstream,
            apps,
            fence,
            handler,
            metrics,
            accepting,
            stop_upstream,
            stop,
            grace: config.shutdown_grace,
            phase_two_timeout: config.phase_two_timeout,
            tasks,
        })
    }

    /// The application gRPC address actually bound.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The HTTP address actually bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Waits until registered upstream for every served resource; whether it is.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.upstream.wait_ready(timeout).await
    }

    /// Stops gracefully: Begin is refused at once; calls in flight finish and phase two keeps
    /// reaching the application until the grace period ends — or earlier, once no call is in
    /// flight and the application has closed its streams. Then the coordinator connections
    /// close, phase two being answered finishes, and the servers stop.
    pub async fn stop(self) {
        self.accepting.send_replace(false);
        tracing::info!(grace = ?self.grace, "sidecar stopping: no new transactions");
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline
            && (self.metrics.in_flight() > 0 || self.apps.open_streams() > 0)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // No phase two comes once the connections close; what is being answered still gets
        // its fence record, so a redelivery after the restart is answered from the fence.
        self.stop_upstream.send_replace(true);
        let _ = tokio::time::timeout(self.phase_two_timeout, self.handler.idle()).await;
        self.apps.close_all();
        self.stop.send_replace(true);
        for mut task in self.tasks {
            if tokio::time::timeout(STOP_BOUND, &mut task).await.is_err() {
                task.abort();
            }
        }
        self.fence.close();
        tracing::info!("sidecar stopped");
    }
}

/// Runs a sidecar until `shutdown` completes, then stops it gracefully.
pub async fn run(
    config: SidecarConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let sidecar = Sidecar::start(config).await?;
    shutdown.await;
    sidecar.stop().await;
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: addr.to_string(),
            source,
        })
}

fn local_addr(listener: &TcpListener, asked: SocketAddr) -> Result<SocketAddr, RunError> {
    listener.local_addr().map_err(|source| RunError::Bind {
        addr: asked.to_string(),
        source,
    })
}

fn bind_uds(path: &std::path::Path) -> Result<tokio::net::UnixListener, RunError> {
    let failed = |source| RunError::Bind {
        addr: path.display().to_string(),
        source,
    };
    // A socket left by a previous run would make the bind fail.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    tokio::net::UnixListener::bind(path).map_err(failed)
}

/// Completes once `stop` turns true (or its sender is gone).
pub(crate) async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    until_stopped(&mut stop).await;
}

/// Most calls and streams one application connection has at once (HTTP/2 streams beyond it
/// wait in the client): an application that leaks calls cannot make the sidecar hold
/// unbounded state for them.
const MAX_STREAMS_PER_CONNECTION: u32 = 1_024;
/// Largest header block a call may send.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// The gRPC server with its limits (message sizes are the services', see [`Api::router`]).
fn grpc_server() -> Server {
    Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
}

async fn serve_tcp(listener: TcpListener, api: Api, stop: watch::Receiver<bool>) {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = grpc_server()
        .add_routes(api.router())
        .serve_with_incoming_shutdown(incoming, stopped(stop))
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the gRPC server stopped");
    }
}

async fn serve_uds(listener: tokio::net::UnixListener, api: Api, stop: watch::Receiver<bool>) {
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let served = grpc_server()
        .add_routes(api.router())
        .serve_with_incoming_shutdown(incoming, stopped(stop))
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the gRPC unix-socket server stopped");
    }
}

/// Deletes old finished fence records now and then.
async fn collect_fence_garbage(
    fence: Arc<Fence>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let every = retention.clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = crate::until_stopped(&mut stop) => return,
        }
        match fence.collect_garbage(retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "old fence records deleted"),
            Err(error) => tracing::warn!(%error, "fence garbage collection failed"),
        }
    }
}
