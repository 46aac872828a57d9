//! The Seata RPC server on port 8091.

mod connection;
mod framing;
mod handle;
mod limits;
mod registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use handle::{ConnHandle, DispatchError};
pub use registry::{RmRegistry, client_id};

use crate::config::ServerTuning;
use crate::metrics::ConnectionMetrics;
use crate::tc::Tc;
use limits::{Limits, Refusal};

/// What every connection shares.
pub struct ServerContext {
    /// The request handler.
    pub tc: Arc<Tc>,
    /// Resource → connections, for phase two.
    pub registry: Arc<RmRegistry>,
    /// Protocol tuning.
    pub tuning: ServerTuning,
    limits: Limits,
}

impl ServerContext {
    /// The context of a server handing requests to `tc`, with its limits from `tuning`
    /// recorded into `metrics`.
    pub fn new(
        tc: Arc<Tc>,
        registry: Arc<RmRegistry>,
        tuning: ServerTuning,
        metrics: ConnectionMetrics,
    ) -> Self {
        let limits = Limits::new(&tuning, metrics);
        Self {
            tc,
            registry,
            tuning,
            limits,
        }
    }
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ServerContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let next_id = AtomicU64::new(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match ctx.limits.open_slot() {
                    Some(slot) => {
                        let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(connection::serve(stream, peer, ctx.clone(), conn_id, slot));
                    }
                    // Dropping the stream closes it at once: the peer sees the refusal.
                    None => {
                        let detail = format!("{} connections are open (max-connections)", ctx.tuning.max_connections);
                        ctx.limits.refuse(peer, Refusal::MaxConnections, &detail);
                    }
                },
                // Out of file descriptors and the like: keep serving the connections we have.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = crate::stopped(&mut shutdown) => return,
        }
    }
}
