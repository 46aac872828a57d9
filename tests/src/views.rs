//! What a set of running coordinators say of themselves through their admin API, wherever
//! they run (loopback ports or network namespaces): who leads, whether they have applied the
//! same log, and how each sees a transaction.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::http_request;

/// How long an election or catching up may take.
const BOUND: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Running nodes by id, with their admin addresses.
pub struct AdminViews {
    nodes: Vec<(u64, SocketAddr)>,
}

impl AdminViews {
    /// The nodes `nodes` (id, admin address), all running.
    pub fn new(nodes: Vec<(u64, SocketAddr)>) -> Self {
        Self { nodes }
    }

    /// Node `id`'s view of the group (`GET /api/v1/cluster`); `None` if it does not answer.
    pub async fn view(&self, id: u64) -> Option<Value> {
        let (status, body) = self.get(id, "/api/v1/cluster").await?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// The leader among the nodes `acceptable` admits, once one is elected: the node that
    /// says it leads, in the highest term they report.
    pub async fn leader_where(&self, acceptable: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + BOUND;
        loop {
            let mut views = Vec::new();
            for &(id, _) in &self.nodes {
                if acceptable(id)
                    && let Some(view) = self.view(id).await
                {
                    views.push((id, view));
                }
            }
            let term = views.iter().filter_map(|(_, v)| v["term"].as_u64()).max();
            let leader = views
                .iter()
                .find(|(_, view)| view["term"].as_u64() == term && view["state"] == "leader");
            if let Some((id, _)) = leader {
                return *id;
            }
            assert!(Instant::now() < deadline, "no leader within {BOUND:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until node `id` is ready: running, a member, caught up with the leader.
    pub async fn until_ready(&self, id: u64) {
        let deadline = Instant::now() + BOUND;
        while self
            .get(id, "/readyz")
            .await
            .is_none_or(|(status, _)| status != 200)
        {
            assert!(
                Instant::now() < deadline,
                "node {id} not ready within {BOUND:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every node has applied the same, whole log; returns its index.
    pub async fn until_converged(&self) -> u64 {
        let deadline = Instant::now() + BOUND;
        loop {
            let mut positions = Vec::new();
            for &(id, _) in &self.nodes {
                let view = self.view(id).await.unwrap_or_default();
                positions.push((view["appliedIndex"].as_u64(), view["lastLogIndex"].as_u64()));
            }
            let (applied, _) = positions[0];
            if applied.is_some() && positions.iter().all(|&p| p == (applied, applied)) {
                return applied.unwrap_or_default();
            }
            assert!(
                Instant::now() < deadline,
                "the nodes did not converge within {BOUND:?}: (applied, last) {positions:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `xid`'s status as node `id` has applied it (`GET /api/v1/transactions/{xid}`).
    async fn status_on(&self, id: u64, xid: &str) -> Option<String> {
        let (status, body) = self.get(id, &format!("/api/v1/transactions/{xid}")).await?;
        let view: Value = serde_json::from_str(&body).ok()?;
        (status == 200).then(|| view["status"].as_str().map(str::to_owned))?
    }

    /// Asserts that every node knows every one of `xids` with the same status.
    pub async fn assert_agree_on(&self, xids: &[String]) {
        for xid in xids {
            let mut statuses = Vec::new();
            for &(id, _) in &self.nodes {
                statuses.push(self.status_on(id, xid).await);
            }
            assert!(statuses[0].is_some(), "{xid} is known: {statuses:?}");
            assert!(
                statuses.iter().all(|status| *status == statuses[0]),
                "{xid}: the nodes disagree: {statuses:?}"
            );
        }
    }

    /// A GET to node `id`'s admin port, off the async threads.
    async fn get(&self, id: u64, path: &str) -> Option<(u16, String)> {
        let &(_, addr) = self.nodes.iter().find(|(node, _)| *node == id)?;
        let path = path.to_owned();
        let call = move || http_request(addr, "GET", &path, None, None);
        tokio::task::spawn_blocking(call).await.ok()?
    }
}
