//! A client that follows the leader the way Seata's raft-mode clients do (`registry.type=raft`:
//! the Java client's raft registry and its channel manager; seata-go ports the same logic).
//! Our own clients follow a leader at once; this one is the stand-in for every Java and Go
//! user, so it keeps their habits, each of which shapes how long a failover lasts for them:
//!
//! - **Start.** The first `GET /metadata/v1/cluster?group=` goes to a random configured
//!   control (HTTP) address with a 1 s timeout. A non-200 answer or `"nodes": null` fails the
//!   start. Answers are parsed strictly, as Jackson does with its defaults: a field the client
//!   does not know makes it keep its old metadata.
//! - **Metadata.** Each answer replaces the node list and the term, whatever the term was;
//!   the leader is replaced only when the answer names one, and kept otherwise.
//! - **One refresh loop.** A `POST /metadata/v1/watch` long poll (form `<group>=<term>`, 30 s
//!   client timeout, the server's default hold), sent to a random *connected follower's*
//!   control port; a 200 fetches the metadata at once from a target chosen the same way; any
//!   other status polls again at once; an I/O error sleeps 1 s; and the metadata is fetched
//!   anyway once 30 s have passed since the last fetch.
//! - **Connections.** At start, a registered connection to every node. Every request goes to
//!   the leader's transaction endpoint only, connecting and registering on demand; nothing is
//!   retried and no failure triggers a metadata fetch. A reconnect timer (first run after 60 s,
//!   then every 10 s) connects to every node again and records the connected nodes other than
//!   the leader as the "connected followers" the refresh loop talks to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::task::JoinHandle;
use txmesh_seata::Message;
use txmesh_seata::client::{ClientConfig, SeataClient, ServerRequestHandler};

use crate::clients::Role;
use crate::process::HttpRequest;

/// The metadata request's timeout.
const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// The long poll's client-side timeout.
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The sleep after an I/O error in the refresh loop.
const RETRY_SLEEP: Duration = Duration::from_secs(1);
/// The metadata is fetched at least this often (`client.metadataMaxAgeMs`).
const MAX_AGE: Duration = Duration::from_secs(30);

/// The reconnect timer: when it first runs, and how often after that.
#[derive(Debug, Clone, Copy)]
pub struct ReconnectTimer {
    /// Until the first run.
    pub first: Duration,
    /// Between runs.
    pub period: Duration,
}

impl Default for ReconnectTimer {
    /// The Java client's constants: 60 s, then every 10 s.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(60),
            period: Duration::from_secs(10),
        }
    }
}

/// `MetadataResponse`, strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MetadataAnswer {
    nodes: Option<Vec<NodeAnswer>>,
    store_mode: String,
    term: u64,
}

/// `Node`, strictly: a role left out means MEMBER.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeAnswer {
    control: Endpoint,
    transaction: Endpoint,
    /// Read only so that its shape is checked, as Jackson checks it.
    #[serde(rename = "internal")]
    _internal: Endpoint,
    group: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(rename = "version")]
    _version: String,
    #[serde(rename = "metadata")]
    _metadata: serde_json::Map<String, serde_json::Value>,
}

/// `Node.Endpoint`, strictly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    fn addr(&self) -> Option<SocketAddr> {
        format!("{}:{}", self.host, self.port).parse().ok()
    }
}

/// What the client knows.
#[derive(Debug, Default)]
struct Known {
    group: Option<String>,
    nodes: Vec<NodeAnswer>,
    term: u64,
    leader: Option<NodeAnswer>,
    /// Transaction endpoints of the nodes connected at the last reconnect, the leader left out.
    connected_followers: Vec<SocketAddr>,
}

/// Why a metadata call failed, as the Java client sorts it: I/O errors make the loop sleep.
#[derive(Debug)]
enum CallError {
    Io(std::io::Error),
    Refused(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Io(error) => write!(f, "I/O error: {error}"),
            CallError::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

/// A TM or RM that follows the leader as Seata's raft-mode client does.
pub struct RaftModeClient<H> {
    init: Vec<SocketAddr>,
    role: Role,
    config: ClientConfig,
    handler: Arc<H>,
    known: Mutex<Known>,
    channels: Mutex<HashMap<SocketAddr, SeataClient>>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl<H: ServerRequestHandler> RaftModeClient<H> {
    /// Starts a client configured with the coordinators' control (admin HTTP) addresses,
    /// registering as `role` on every node; fails as the Java client's start does.
    pub async fn start(
        control: Vec<SocketAddr>,
        role: Role,
        config: ClientConfig,
        handler: Arc<H>,
        timer: ReconnectTimer,
    ) -> Result<Arc<Self>, String> {
        assert!(!control.is_empty(), "a client needs an address");
        let client = Arc::new(Self {
            init: control,
            role,
            config,
            handler,
            known: Mutex::new(Known::default()),
            channels: Mutex::new(HashMap::new()),
            background: Mutex::new(Vec::new()),
        });
        let first = client.init[fastrand::usize(..client.init.len())];
        client
            .fetch(first, "")
            .await
            .map_err(|error| format!("the first metadata fetch failed: {error}"))?;
        client.reconnect().await;
        let refresh = tokio::spawn(client.clone().refresh_loop());
        let reconnect = tokio::spawn(client.clone().reconnect_loop(timer));
        client.tasks().extend([refresh, reconnect]);
        Ok(client)
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The leader's transaction endpoint as the client knows it.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.known().leader.as_ref()?.transaction.addr()
    }

    /// The term the client holds.
    pub fn term(&self) -> u64 {
        self.known().term
    }

    /// Sends `request` to the leader it knows, connecting and registering first if needed;
    /// the answer, or why there is none. Nothing is retried.
    pub async fn call(&self, request: Message) -> Result<Message, String> {
        let leader = self.leader().ok_or("no leader is known")?;
        let channel = self.channel(leader).await?;
        channel
            .call(request)
            .await
            .map_err(|error| format!("{leader}: {error}"))
    }

    /// Stops the background loops and closes every connection.
    pub fn close(&self) {
        for task in self.tasks().drain(..) {
            task.abort();
        }
        for (_, channel) in self.channels().drain() {
            channel.close();
        }
    }

    /// The registered connection to `addr`: the cached one while it is open, else a new one
    /// (made outside the lock, so a node that does not answer holds up no other).
    async fn channel(&self, addr: SocketAddr) -> Result<SeataClient, String> {
        if let Some(channel) = self
            .channels()
            .get(&addr)
            .filter(|channel| channel.close_reason().is_none())
        {
            return Ok(channel.clone());
        }
        let channel = self
            .connect(addr)
            .await
            .map_err(|error| format!("can not connect to services-server {addr}: {error}"))?;
        if let Some(replaced) = self.channels().insert(addr, channel.clone()) {
            replaced.close();
        }
        Ok(channel)
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, SeataClient>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SeataClient, String> {
        let client =
            SeataClient::connect(&addr.to_string(), self.config.clone(), self.handler.clone())
                .await
                .map_err(|e| e.to_string())?;
        let registered = match &self.role {
            Role::Tm => client.register_tm().await.map(drop),
            Role::Rm(resources) => client.register_rm(resources).await.map(drop),
        };
        registered.map_err(|e| e.to_string())?;
        Ok(client)
    }

    /// Connects to every node it knows; records the connected ones but the leader.
    async fn reconnect(&self) {
        let (nodes, leader) = {
            let known = self.known();
            let nodes: Vec<SocketAddr> = known
                .nodes
                .iter()
                .filter_map(|node| node.transaction.addr())
                .collect();
            (
                nodes,
                known.leader.as_ref().and_then(|l| l.transaction.addr()),
            )
        };
        let mut connected = Vec::new();
        for addr in nodes {
            if self.channel(addr).await.is_ok() {
                connected.push(addr);
            }
        }
        connected.retain(|addr| Some(*addr) != leader);
        self.known().connected_followers = connected;
    }

    async fn reconnect_loop(self: Arc<Self>, timer: ReconnectTimer) {
        tokio::time::sleep(timer.first).await;
        loop {
            self.reconnect().await;
            tokio::time::sleep(timer.period).await;
        }
    }

    async fn refresh_loop(self: Arc<Self>) {
        let mut fetched = Instant::now();
        loop {
            let mut fetch = fetched.elapsed() > MAX_AGE;
            if !fetch {
                match self.watch().await {
                    Ok(changed) => fetch = changed,
                    Err(error @ CallError::Io(_)) => {
                        eprintln!("seata client: watch failed, retrying in 1 s: {error}");
                        tokio::time::sleep(RETRY_SLEEP).await;
                        continue;
                    }
                    Err(error) => eprintln!("seata client: watch failed: {error}"),
                }
            }
            if !fetch {
                continue;
            }
            let group = self.known().group.clone().unwrap_or_default();
            match self.fetch(self.http_target(), &group).await {
                Err(error @ CallError::Io(_)) => {
                    eprintln!("seata client: metadata fetch failed, retrying in 1 s: {error}");
                    tokio::time::sleep(RETRY_SLEEP).await;
                }
                // Logged and dropped by the Java client; the fetch counts as done.
                Err(error) => {
                    eprintln!("seata client: failed to get the leader address: {error}");
                    fetched = Instant::now();
                }
                Ok(()) => fetched = Instant::now(),
            }
        }
    }

    /// Where the refresh loop sends its HTTP calls: a random connected follower's control
    /// port (its transaction port when it is no longer listed), else a random listed node,
    /// else a configured address.
    fn http_target(&self) -> SocketAddr {
        let known = self.known();
        if known.nodes.is_empty() {
            return self.init[fastrand::usize(..self.init.len())];
        }
        if known.connected_followers.is_empty() {
            let node = &known.nodes[fastrand::usize(..known.nodes.len())];
            return node.control.addr().unwrap_or(self.init[0]);
        }
        let follower =
            known.connected_followers[fastrand::usize(..known.connected_followers.len())];
        known
            .nodes
            .iter()
            .find(|node| node.transaction.addr() == Some(follower))
            .and_then(|node| node.control.addr())
            .unwrap_or(follower)
    }

    /// One long poll with the term held; whether it answered 200.
    async fn watch(&self) -> Result<bool, CallError> {
        let (group, term) = {
            let known = self.known();
            match &known.group {
                Some(group) => (group.clone(), known.term),
                None => return Ok(false),
            }
        };
        let target = self.http_target();
        let request = HttpRequest {
            method: "POST".to_owned(),
            path: "/metadata/v1/watch".to_owned(),
            authorization: None,
            body: Some((
                "application/x-www-form-urlencoded",
                format!("{group}={term}"),
            )),
            timeout: WATCH_TIMEOUT,
        };
        let (status, _) = send(target, request).await.map_err(CallError::Io)?;
        Ok(status == 200)
    }

    /// `GET /metadata/v1/cluster?group=` from `target`, stored as the Java client stores it.
    async fn fetch(&self, target: SocketAddr, group: &str) -> Result<(), CallError> {
        let request = HttpRequest {
            method: "GET".to_owned(),
            path: format!("/metadata/v1/cluster?group={group}"),
            authorization: None,
            body: None,
            timeout: FETCH_TIMEOUT,
        };
        let (status, body) = send(target, request).await.map_err(CallError::Io)?;
        if status != 200 {
            return Err(CallError::Refused(format!("{target}: {status} {body}")));
        }
        let answer: MetadataAnswer = match serde_json::from_str(&body) {
            Ok(answer) => answer,
            // Jackson's error is logged; the metadata stays as it was.
            Err(_) => return Ok(()),
        };
        let nodes = answer
            .nodes
            .ok_or_else(|| CallError::Refused(format!("{target}: no nodes in {body}")))?;
        if !answer.store_mode.eq_ignore_ascii_case("raft") {
            return Err(CallError::Refused(format!(
                "{target}: store mode {}",
                answer.store_mode
            )));
        }
        let mut known = self.known();
        if let Some(leader) = nodes.iter().find(|n| n.role.as_deref() == Some("LEADER")) {
            known.leader = Some(leader.clone());
        }
        if let Some(first) = nodes.first() {
            known.group = Some(first.group.clone());
            known.term = answer.term;
            known.nodes = nodes;
        }
        Ok(())
    }
}

/// Sends `request` on a blocking thread (the long poll holds it up to 30 s).
async fn send(target: SocketAddr, request: HttpRequest) -> std::io::Result<(u16, String)> {
    tokio::task::spawn_blocking(move || request.send(target))
        .await
        .map_err(std::io::Error::other)?
}
