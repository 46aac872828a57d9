//! A coordinator group run as processes and driven as the operator drives it, through the
//! admin API: who leads, membership changes one step at a time, readiness, and whether every
//! member has applied the same log. Optionally its Raft traffic goes through
//! [`RaftProxies`], so that a node can be cut off.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::partition::RaftProxies;
use crate::process::{CoordinatorProcess, http_request};
use crate::views::AdminViews;

/// How long an election, a membership change or catching up may take.
const BOUND: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// The admin token every member reads.
const TOKEN: &str = "e2e-admin-token";

/// Members by node id, and the nodes prepared to join.
pub struct Group {
    root: PathBuf,
    nodes: BTreeMap<u64, CoordinatorProcess>,
    token_file: PathBuf,
    proxies: Option<RaftProxies>,
}

impl Group {
    /// Starts `voters` nodes (ids 1..) under `root`, reaching each other directly.
    pub async fn start(root: &Path, voters: u64) -> Self {
        Self::found(root, voters, false).await
    }

    /// Starts `voters` nodes whose Raft traffic goes through proxies, so that
    /// [`Group::isolate`] can cut one off.
    pub async fn start_partitionable(root: &Path, voters: u64) -> Self {
        Self::found(root, voters, true).await
    }

    async fn found(root: &Path, voters: u64, proxied: bool) -> Self {
        let token_file = root.join("admin-token");
        std::fs::write(&token_file, TOKEN).expect("write the admin token");
        let mut group = Self {
            root: root.to_path_buf(),
            nodes: BTreeMap::new(),
            token_file,
            proxies: None,
        };
        for id in 1..=voters {
            group.prepare(id);
        }
        if proxied {
            let targets: Vec<(u64, SocketAddr)> = group
                .nodes
                .values()
                .map(|node| (node.node_id(), node.raft_addr()))
                .collect();
            group.proxies = Some(RaftProxies::start(&targets).await);
        }
        let ids: Vec<u64> = group.nodes.keys().copied().collect();
        for id in ids {
            group.start_node(id);
        }
        group.leader().await;
        group
    }

    /// Prepares node `id` (ports, data directory) without starting it, so that clients can
    /// be given its address before it joins.
    pub fn prepare(&mut self, id: u64) {
        let mut node = CoordinatorProcess::member(&self.root.join(format!("node-{id}")), id);
        node.set_admin_token_file(&self.token_file);
        self.nodes.insert(id, node);
    }

    /// Starts (or restarts) node `id`; its `--peers` name every prepared node, so it never
    /// founds a group of its own unless it has the lowest id of a fresh group.
    pub fn start_node(&mut self, id: u64) {
        let peers: Vec<String> = self
            .nodes
            .keys()
            .map(|&peer| format!("{peer}={}", self.raft_addr(peer)))
            .collect();
        let node = self.node_mut(id);
        node.set_peers(&peers.join(","));
        node.restart();
    }

    /// Every prepared node's Seata address.
    pub fn seata_addrs(&self) -> Vec<String> {
        let addrs = self
            .nodes
            .values()
            .map(|node| node.seata_addr().to_string());
        addrs.collect()
    }

    /// Node `id`.
    pub fn node(&self, id: u64) -> &CoordinatorProcess {
        self.nodes.get(&id).expect("a prepared node")
    }

    /// Node `id`, to kill or restart it.
    pub fn node_mut(&mut self, id: u64) -> &mut CoordinatorProcess {
        self.nodes.get_mut(&id).expect("a prepared node")
    }

    /// Where the other members reach node `id` over Raft.
    fn raft_addr(&self, id: u64) -> SocketAddr {
        match &self.proxies {
            Some(proxies) => proxies.addr(id),
            None => self.node(id).raft_addr(),
        }
    }

    /// The running nodes' admin views.
    fn views(&self) -> AdminViews {
        let running = self.nodes.iter().filter(|(_, node)| node.pid().is_some());
        AdminViews::new(running.map(|(&id, node)| (id, node.http_addr())).collect())
    }

    /// Node `id`'s view of the group (`GET /api/v1/cluster`); `None` if it does not answer.
    pub async fn view(&self, id: u64) -> Option<Value> {
        self.views().view(id).await
    }

    /// The leader, once one is elected: the node that says it leads, in the highest term
    /// any running node reports.
    pub async fn leader(&self) -> u64 {
        self.views().leader_where(|_| true).await
    }

    /// The leader among the nodes other than `old` (killed or cut off), once elected.
    pub async fn leader_other_than(&self, old: u64) -> u64 {
        self.views().leader_where(|id| id != old).await
    }

    /// Adds node `id` (started) as a learner and waits until it has caught up.
    pub async fn add_learner(&self, id: u64) {
        let body = json!({"id": id, "address": self.raft_addr(id).to_string()});
        self.change("POST", "/api/v1/cluster/learners", Some(body))
            .await;
        self.until_member(id, |member| member["caughtUp"] == true)
            .await;
    }

    /// Makes learner `id` a voter.
    pub async fn promote(&self, id: u64) {
        let path = format!("/api/v1/cluster/voters/{id}/promote");
        self.change("POST", &path, None).await;
        self.until_member(id, |member| member["role"] != "learner")
            .await;
    }

    /// Moves leadership off node `id` (before it restarts or leaves), to whichever other
    /// voter wins: a transfer may end with another than its target leading.
    pub async fn move_leadership_off(&self, id: u64) {
        let deadline = Instant::now() + BOUND;
        let mut last = None;
        while self.leader().await == id {
            assert!(
                Instant::now() < deadline,
                "leadership did not leave node {id} within {BOUND:?}; last answer {last:?}"
            );
            let voters = self.voters().await;
            let target = voters.iter().find(|&&voter| voter != id);
            let body = json!({"id": target.expect("another voter")}).to_string();
            last = self
                .http(id, "POST", "/api/v1/cluster/leader", Some(body))
                .await;
        }
    }

    /// Removes member `id` (not the leader).
    pub async fn remove(&self, id: u64) {
        let path = format!("/api/v1/cluster/members/{id}");
        self.change("DELETE", &path, None).await;
    }

    /// The voters, as the leader sees them.
    pub async fn voters(&self) -> Vec<u64> {
        let leader = self.leader().await;
        let view = self.view(leader).await.expect("the leader answers");
        let members = view["members"].as_array().cloned().unwrap_or_default();
        members
            .iter()
            .filter(|member| member["role"] != "learner")
            .filter_map(|member| member["id"].as_u64())
            .collect()
    }

    /// Waits until node `id` is ready: a member, caught up with the leader.
    pub async fn until_ready(&self, id: u64) {
        self.views().until_ready(id).await;
    }

    /// Waits until every running node has applied the same, whole log; returns its index.
    pub async fn until_converged(&self) -> u64 {
        self.views().until_converged().await
    }

    /// Asserts that every running node knows every one of `xids` with the same status.
    pub async fn assert_agree_on(&self, xids: &[String]) {
        self.views().assert_agree_on(xids).await;
    }

    /// Cuts node `id` off from the other members' Raft traffic.
    pub fn isolate(&self, id: u64) {
        let pid = self.node(id).pid().expect("the node runs");
        self.proxies().isolate(id, pid);
    }

    /// Ends the partition.
    pub fn heal(&self) {
        self.proxies().heal();
    }

    fn proxies(&self) -> &RaftProxies {
        let proxies = self.proxies.as_ref();
        proxies.expect("a group started with Group::start_partitionable")
    }

    /// Waits until the leader's view shows member `id` as `done` says.
    async fn until_member(&self, id: u64, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + BOUND;
        loop {
            let leader = self.leader().await;
            let view = self.view(leader).await.unwrap_or_default();
            let members = view["members"].as_array().cloned().unwrap_or_default();
            if members.iter().any(|m| m["id"] == id && done(m)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {id} not as expected within {BOUND:?}: {view}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// A membership change on the leader with the admin token, repeated while the leader
    /// moves, another change is under way or an election runs; anything else but 200 fails
    /// the test.
    async fn change(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let deadline = Instant::now() + BOUND;
        loop {
            let leader = self.leader().await;
            let answer = self
                .http(leader, method, path, body.as_ref().map(Value::to_string))
                .await;
            let (status, text) = answer.unwrap_or((0, String::new()));
            let reply: Value = serde_json::from_str(&text).unwrap_or_default();
            let retry = matches!(status, 0 | 421 | 503) || reply["code"] == "Busy";
            match status {
                200 => return reply,
                _ if retry && Instant::now() < deadline => tokio::time::sleep(POLL).await,
                _ => panic!("{method} {path} on node {leader}: {status} {text}"),
            }
        }
    }

    /// An HTTP call to node `id`'s admin port, off the async threads.
    async fn http(
        &self,
        id: u64,
        method: &str,
        path: &str,
        json: Option<String>,
    ) -> Option<(u16, String)> {
        let addr = self.node(id).http_addr();
        let (method, path) = (method.to_owned(), path.to_owned());
        let call = move || http_request(addr, &method, &path, Some(TOKEN), json.as_deref());
        tokio::task::spawn_blocking(call).await.ok()?
    }
}
