//! Seata clients that survive coordinator restarts and leader changes: a dead connection, or
//! one whose coordinator answered not-leader, is replaced on next use by a registered one to
//! the next address that accepts it (every node does, as in Seata's raft mode).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use txmesh_seata::client::{ClientConfig, ClientError, SeataClient, ServerRequestHandler};
use txmesh_seata::{Message, TransactionExceptionCode};

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
    /// Counts connections made, so a failure seen on an older one does not drop a newer one.
    generation: u64,
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

    /// Sends a request over a live connection; `None` when there is none, it broke, the
    /// answer did not come in time or said `NotRaftLeader`. A coordinator that does not lead,
    /// or does not answer in time (it may be cut off from its group), is left: the next call
    /// goes to the next address.
    pub async fn call(&self, request: Message) -> Option<Message> {
        let (client, generation) = self.client().await.ok()?;
        match client.call(request).await {
            Ok(answer) if is_not_leader(&answer) => {
                self.leave(generation).await;
                None
            }
            Ok(answer) => Some(answer),
            Err(ClientError::Timeout(_)) => {
                self.leave(generation).await;
                None
            }
            Err(_) => None,
        }
    }

    /// Drops connection `generation` if it is still the current one, so that the next call
    /// goes to the next address. Calls in flight on it fail one after another: only the
    /// first of them moves on, the others must not drop the connection it made since.
    async fn leave(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.generation != generation {
            return;
        }
        if let Some(client) = current.client.take() {
            client.close();
            current.next += 1;
        }
    }

    /// A live, registered connection (the current one, or a new one) and its generation.
    async fn client(&self) -> Result<(SeataClient, u64), ClientError> {
        let mut current = self.current.lock().await;
        if let Some(client) = current
            .client
            .as_ref()
            .filter(|c| c.close_reason().is_none())
        {
            return Ok((client.clone(), current.generation));
        }
        let deadline = Instant::now() + RECONNECT_BOUND;
        loop {
            let index = current.next % self.addrs.len();
            current.next = index + 1;
            match self.connect(&self.addrs[index]).await {
                Ok(client) => {
                    current.next = index;
                    current.generation += 1;
                    current.client = Some(client.clone());
                    return Ok((client, current.generation));
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

/// Whether a coordinator answered that it does not lead.
fn is_not_leader(answer: &Message) -> bool {
    answer
        .tx_result()
        .is_some_and(|result| result.exception_code == TransactionExceptionCode::NotRaftLeader)
}
