//! The Seata RPC server on port 8091.

mod connection;
mod handle;
mod registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use handle::{ConnHandle, DispatchError};
pub use registry::{RmRegistry, client_id};

use crate::config::ServerTuning;
use crate::tc::Tc;

/// What every connection shares.
pub struct ServerContext {
    /// The request handler.
    pub tc: Arc<Tc>,
    /// Resource → connections, for phase two.
    pub registry: Arc<RmRegistry>,
    /// Protocol tuning.
    pub tuning: ServerTuning,
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
                Ok((stream, peer)) => {
                    let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(connection::serve(stream, peer, ctx.clone(), conn_id));
                }
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
