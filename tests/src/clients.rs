//! Seata clients that survive coordinator restarts and leader changes: a dead connection, or
//! one whose coordinator answered not-leader, is replaced on next use by a registered one to
//! the next address that accepts it (every node does, as in Seata's raft mode).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use txmesh_seata::Message;
use txmesh_seata::client::{ClientConfig, ClientError, SeataClient, ServerRequestHandler};

/// Which registration a peer makes.
#[derive(Debug, Clone)]
pub enum Role {
    /// A transaction manager.
    Tm,
    /// A resource manager serving these resources.
    Rm(Vec<String>),
}

/// A reconnecting, leader-following client.
pub struct Peer<H> {
    addrs: Vec<String>,
    role: Role,
    config: ClientConfig,
    handler: Arc<H>,
    current: Mutex<Current>,
}

#[derive(Default)]
struct Current {
    client: Option<SeataClient>,
    /// The address to try first on the next connect.
    next: usize,
}

/// Give up reconnecting after this long.
const RECONNECT_BOUND: Duration = Duration::from_secs(20);

impl<H: ServerRequestHandler> Peer<H> {
    /// A peer of `role` for the coordinators at `addrs`.
    pub fn new(addrs: Vec<String>, role: Role, config: ClientConfig, handler: Arc<H>) -> Self {
        assert!(!addrs.is_empty(), "a peer needs an address");
        Self {
            addrs,
            role,
            config,
            handler,
            current: Mutex::new(Current::default()),
        }
    }

    /// Sends a request over a live connection; `None` when there is none, it broke or the
    /// answer did not come in time. A coordinator that does not answer in time may be cut
    /// off from its group, so the next call goes to the next address.
    pub async fn call(&self, request: Message) -> Option<Message> {
        let client = self.client().await.ok()?;
        match client.call(request).await {
            Ok(answer) => Some(answer),
            Err(ClientError::Timeout(_)) => {
                self.reset().await;
                None
            }
            Err(_) => None,
        }
    }

    /// Drops the current connection (its coordinator does not lead); the next one goes to
    /// the next address.
    pub async fn reset(&self) {
        let mut current = self.current.lock().await;
        if let Some(client) = current.client.take() {
            client.close();
            current.next += 1;
        }
    }

    /// A live, registered connection: the current one, or a new one.
    pub async fn client(&self) -> Result<SeataClient, ClientError> {
        let mut current = self.current.lock().await;
        if let Some(client) = current
            .client
            .as_ref()
            .filter(|c| c.close_reason().is_none())
        {
            return Ok(client.clone());
        }
        let deadline = Instant::now() + RECONNECT_BOUND;
        loop {
            let index = current.next % self.addrs.len();
            current.next = index + 1;
            match self.connect(&self.addrs[index]).await {
                Ok(client) => {
                    current.next = index;
                    current.client = Some(client.clone());
                    return Ok(client);
                }
                Err(error) if Instant::now() >= deadline => return Err(error),
                // Restarting, or not the leader: try the next address shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn connect(&self, addr: &str) -> Result<SeataClient, ClientError> {
        let client = SeataClient::connect(addr, self.config.clone(), self.handler.clone()).await?;
        match &self.role {
            Role::Tm => client.register_tm().await.map(drop)?,
            Role::Rm(resources) => client.register_rm(resources).await.map(drop)?,
        }
        Ok(client)
    }
}
