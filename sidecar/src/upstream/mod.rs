//! The coordinators, seen from the sidecar: one Seata connection per coordinator address,
//! registered as TM and as RM for the resources the application serves (again whenever they
//! change), reconnecting with jittered back-off. Every node accepts registrations, as in
//! Seata's raft mode, so all connections stay up and a new leader reaches this sidecar's RMs
//! at once. Requests go to the connection of the node that last served one (the leader), else
//! the one an XID names, else any; a not-leader answer means the request was not executed, so
//! it moves to another connection, and to all of them again shortly while an election runs.
//! A request that was sent and got no answer is never sent again: if its connection dies it
//! fails at once with a retryable error, since it may or may not have been executed.

mod backoff;
mod link;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use txmesh_seata::client::{ClientConfig, ClientError, SeataClient, ServerRequestHandler};
use txmesh_seata::message::TxResult;
use txmesh_seata::{Message, TransactionExceptionCode};

pub use backoff::Backoff;

use crate::discovery::Endpoint;
use crate::metrics::Metrics;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No coordinator connection was registered within the wait.
    #[error("no coordinator is reachable (waited {0:?} for a registered connection)")]
    NoCoordinator(Duration),
    /// The request was sent and its connection failed; it may or may not have been executed.
    #[error("coordinator call failed: {0}")]
    Call(#[from] ClientError),
}

/// How the connections behave.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Seata client settings of each connection.
    pub client: ClientConfig,
    /// How long a request waits for a registered connection to a leader.
    pub ready_wait: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
}

/// A registered connection.
struct Ready {
    endpoint: Endpoint,
    client: SeataClient,
    /// The resources registered on it.
    resources: BTreeSet<String>,
}

struct Inner<H> {
    config: UpstreamConfig,
    handler: Arc<H>,
    served: watch::Receiver<BTreeSet<String>>,
    /// Registered connections by session (a new id for every registration).
    ready: Mutex<BTreeMap<u64, Ready>>,
    /// Bumped whenever `ready` changes.
    changed: watch::Sender<u64>,
    next_session: AtomicU64,
    /// The session whose node last served a request (0: unknown): most likely the leader.
    leader: AtomicU64,
    metrics: Metrics,
}

/// The coordinators.
pub struct Upstream<H> {
    inner: Arc<Inner<H>>,
}

impl<H> Clone for Upstream<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<H: ServerRequestHandler> Upstream<H> {
    /// Starts connecting to the coordinators `endpoints` names (following its changes),
    /// registering the resources in `served`, and handing phase two to `handler`. Stops when
    /// `stop` turns true; the task returned ends once every connection is closed.
    pub fn start(
        config: UpstreamConfig,
        handler: Arc<H>,
        endpoints: watch::Receiver<Vec<Endpoint>>,
        served: watch::Receiver<BTreeSet<String>>,
        metrics: Metrics,
        stop: watch::Receiver<bool>,
    ) -> (Self, JoinHandle<()>) {
        let inner = Arc::new(Inner {
            config,
            handler,
            served,
            ready: Mutex::default(),
            changed: watch::Sender::new(0),
            next_session: AtomicU64::new(1),
            leader: AtomicU64::new(0),
            metrics,
        });
        let supervisor = tokio::spawn(supervise(inner.clone(), endpoints, stop));
        (Self { inner }, supervisor)
    }

    /// Whether a registered connection serves every resource the application declared.
    pub fn is_ready(&self) -> bool {
        let served = self.inner.served.borrow().clone();
        self.inner
            .ready()
            .values()
            .any(|r| r.resources.is_superset(&served))
    }

    /// Waits until [`Upstream::is_ready`] or `timeout` passes; whether it is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut changed = self.inner.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            changed.borrow_and_update();
            if self.is_ready() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }

    /// Sends `request` and returns the coordinator's answer. `xid` (when the request is about
    /// one) names the coordinator that began it: the first guess while no leader is known.
    /// When every node answers not-leader until the wait ends, the last such answer is
    /// returned.
    pub async fn call(
        &self,
        request: Message,
        xid: Option<&str>,
    ) -> Result<Message, UpstreamError> {
        let wait = self.inner.config.ready_wait;
        let deadline = Instant::now() + wait;
        let mut changed = self.inner.changed.subscribe();
        let mut refused = Vec::new();
        let mut not_leader = None;
        loop {
            changed.borrow_and_update();
            let Some((session, client)) = self.inner.pick(xid, &refused) else {
                if Instant::now() >= deadline {
                    return not_leader.ok_or(UpstreamError::NoCoordinator(wait));
                }
                // With every node refusing, an election is under way: ask them all again soon.
                let retry = match refused.is_empty() {
                    true => deadline,
                    false => (Instant::now() + LEADER_RETRY).min(deadline),
                };
                let _ = tokio::time::timeout_at(retry, changed.changed()).await;
                refused.clear();
                continue;
            };
            let answer = client.call(request.clone()).await?;
            if answer.tx_result().is_some_and(is_not_leader) {
                // Not executed: safe to send elsewhere. The connection stays, registered, for
                // when its node leads.
                tracing::debug!(peer = %client.peer_addr(), "coordinator is not the leader; trying another");
                let _ = self.inner.leader.compare_exchange(
                    session,
                    0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                refused.push(session);
                not_leader = Some(answer);
                continue;
            }
            self.inner.leader.store(session, Ordering::Relaxed);
            return Ok(answer);
        }
    }
}

impl<H> Inner<H> {
    fn ready(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Ready>> {
        self.ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection for a request: the leader's, else the XID's coordinator, else any.
    fn pick(&self, xid: Option<&str>, refused: &[u64]) -> Option<(u64, SeataClient)> {
        let ready = self.ready();
        let usable = || {
            ready
                .iter()
                .filter(|(s, r)| !refused.contains(s) && r.client.close_reason().is_none())
        };
        let leader = self.leader.load(Ordering::Relaxed);
        usable()
            .find(|(s, _)| **s == leader)
            .or_else(|| xid.and_then(|xid| usable().find(|(_, r)| r.endpoint.serves_xid(xid))))
            .or_else(|| usable().next())
            .map(|(s, r)| (*s, r.client.clone()))
    }

    fn publish(&self, endpoint: Endpoint, client: SeataClient, resources: BTreeSet<String>) -> u64 {
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let ready = Ready {
            endpoint,
            client,
            resources,
        };
        self.ready().insert(session, ready);
        self.changed.send_modify(|n| *n += 1);
        session
    }

    fn set_resources(&self, session: u64, resources: BTreeSet<String>) {
        if let Some(ready) = self.ready().get_mut(&session) {
            ready.resources = resources;
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn withdraw(&self, session: u64) {
        self.ready().remove(&session);
        self.changed.send_modify(|n| *n += 1);
    }
}

/// Keeps one link task per endpoint, following the endpoint list.
async fn supervise<H: ServerRequestHandler>(
    inner: Arc<Inner<H>>,
    mut endpoints: watch::Receiver<Vec<Endpoint>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut links: HashMap<Endpoint, (watch::Sender<bool>, JoinHandle<()>)> = HashMap::new();
    loop {
        let wanted: Vec<Endpoint> = endpoints.borrow_and_update().clone();
        links.retain(|endpoint, (stop_link, _)| {
            let keep = wanted.contains(endpoint);
            if !keep {
                tracing::info!(coordinator = %endpoint.addr, "coordinator removed");
                stop_link.send_replace(true);
            }
            keep
        });
        for endpoint in wanted {
            if let Entry::Vacant(slot) = links.entry(endpoint) {
                let (stop_link, stopped) = watch::channel(false);
                let task = tokio::spawn(link::run(inner.clone(), slot.key().clone(), stopped));
                slot.insert((stop_link, task));
            }
        }
        tokio::select! {
            changed = endpoints.changed() => if changed.is_err() { break },
            _ = crate::until_stopped(&mut stop) => break,
        }
    }
    for (stop_link, task) in links.into_values() {
        stop_link.send_replace(true);
        let _ = task.await;
    }
}

/// How soon a request asks every node again when all of them answered not-leader.
const LEADER_RETRY: Duration = Duration::from_millis(20);

fn is_not_leader(result: &TxResult) -> bool {
    !result.is_success() && result.exception_code == TransactionExceptionCode::NotRaftLeader
}
