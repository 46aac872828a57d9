//! Seata clients that survive coordinator restarts: a dead connection is replaced and
//! registered again on next use, as Seata SDKs do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use txmesh_seata::client::{ClientConfig, ClientError, SeataClient, ServerRequestHandler};

/// Which registration a peer makes.
#[derive(Debug, Clone)]
pub enum Role {
    /// A transaction manager.
    Tm,
    /// A resource manager serving these resources.
    Rm(Vec<String>),
}

/// A reconnecting client.
pub struct Peer<H> {
    addr: String,
    role: Role,
    config: ClientConfig,
    handler: Arc<H>,
    current: Mutex<Option<SeataClient>>,
}

/// Give up reconnecting after this long.
const RECONNECT_BOUND: Duration = Duration::from_secs(20);

impl<H: ServerRequestHandler> Peer<H> {
    /// A peer of `role` for the coordinator at `addr`.
    pub fn new(addr: String, role: Role, config: ClientConfig, handler: Arc<H>) -> Self {
        Self {
            addr,
            role,
            config,
            handler,
            current: Mutex::new(None),
        }
    }

    /// A live, registered connection: the current one, or a new one.
    pub async fn client(&self) -> Result<SeataClient, ClientError> {
        let mut current = self.current.lock().await;
        if let Some(client) = current.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(client.clone());
        }
        let client = self.connect().await?;
        *current = Some(client.clone());
        Ok(client)
    }

    async fn connect(&self) -> Result<SeataClient, ClientError> {
        let deadline = Instant::now() + RECONNECT_BOUND;
        loop {
            match self.try_connect().await {
                Ok(client) => return Ok(client),
                Err(error) if Instant::now() >= deadline => return Err(error),
                // The coordinator is restarting: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn try_connect(&self) -> Result<SeataClient, ClientError> {
        let client =
            SeataClient::connect(&self.addr, self.config.clone(), self.handler.clone()).await?;
        match &self.role {
            Role::Tm => client.register_tm().await.map(drop)?,
            Role::Rm(resources) => client.register_rm(resources).await.map(drop)?,
        }
        Ok(client)
    }
}
