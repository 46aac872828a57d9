//! Coordinators on this machine, for `txmesh bench` and `txmesh demo`: this same binary run
//! as `txmesh coordinator` in child processes, on free loopback ports, each with a data
//! directory under one temporary directory. Durability is as in production: the Raft log is
//! fsynced before any answer. A node can be killed (SIGKILL) and restarted on its data.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use tempfile::TempDir;

use crate::child;

const LEADER_POLL: Duration = Duration::from_millis(20);

/// One coordinator of the cluster.
#[derive(Debug)]
pub struct LocalNode {
    /// Its Raft node id (1, 2, …).
    pub id: u64,
    /// Where it serves Seata RPC.
    pub seata_addr: SocketAddr,
    /// Where it serves health, metrics and the admin API.
    pub http_addr: SocketAddr,
    raft_addr: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl LocalNode {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A running group of child coordinators. Dropping it kills and reaps every child, then
/// removes the data directories (unless [`LocalCluster::keep`] was called).
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<LocalNode>,
    log_level: String,
    /// Declared last so that it is removed after the children are gone.
    dir: Option<TempDir>,
}

/// What a node says about the group (`GET /api/v1/cluster`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeView {
    state: String,
    term: u64,
}

impl LocalCluster {
    /// Starts `size` voters (ids 1..=size) logging at `log_level`, and waits until each
    /// listens. Node 1 initializes the group.
    pub async fn start(size: usize, prefix: &str, log_level: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .context("cannot create a temporary data directory")?;
        let addrs = child::free_local_addrs(3 * size)?;
        let nodes = addrs
            .chunks(3)
            .zip(1..)
            .map(|(ports, id)| LocalNode {
                id,
                seata_addr: ports[0],
                http_addr: ports[1],
                raft_addr: ports[2],
                data_dir: dir.path().join(format!("node-{id}")),
                log_path: dir.path().join(format!("node-{id}.log")),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            nodes,
            log_level: log_level.to_owned(),
            dir: Some(dir),
        };
        for index in 0..cluster.nodes.len() {
            cluster.spawn(index)?;
        }
        for index in 0..cluster.nodes.len() {
            cluster.wait_until_listening(index).await?;
        }
        Ok(cluster)
    }

    /// Every node's Seata address.
    pub fn seata_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|node| node.seata_addr).collect()
    }

    /// The temporary directory holding the data and the logs.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(TempDir::path)
    }

    /// Kills node `id` with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        let mut child = node.child.take().context("the node is not running")?;
        child.kill().context("cannot kill the coordinator")?;
        child.wait().context("cannot reap the coordinator")?;
        Ok(())
    }

    /// Starts node `id` again on its data directory and waits until it listens.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let index = self.index_of(id)?;
        if self.nodes[index].child.is_some() {
            bail!("node {id} is running");
        }
        self.spawn(index)?;
        self.wait_until_listening(index).await
    }

    /// The leader and its term, as the running nodes report them: the node that says it
    /// leads, in the highest term any node reports (a deposed leader may not know yet).
    pub async fn leader(&self) -> Option<(u64, u64)> {
        let mut views = Vec::new();
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            let addr = node.http_addr;
            let view = tokio::task::spawn_blocking(move || node_view(addr)).await;
            if let Ok(Ok(view)) = view {
                views.push((node.id, view));
            }
        }
        let term = views.iter().map(|(_, view)| view.term).max()?;
        views
            .into_iter()
            .find(|(_, view)| view.term == term && view.state == "leader")
            .map(|(id, view)| (id, view.term))
    }

    /// Waits until a node leads in a term above `term` (0: any term); its id and term.
    pub async fn wait_for_leader(
        &self,
        term: u64,
        timeout: Duration,
    ) -> anyhow::Result<(u64, u64)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((id, leader_term)) = self.leader().await
                && leader_term > term
            {
                return Ok((id, leader_term));
            }
            if Instant::now() >= deadline {
                bail!("no coordinator became leader within {timeout:?}");
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// Waits until node `id` says it is ready (`/readyz`: a member, caught up with the
    /// leader).
    pub async fn wait_until_ready(&self, id: u64, timeout: Duration) -> anyhow::Result<()> {
        let addr = self.node(id)?.http_addr;
        let deadline = Instant::now() + timeout;
        loop {
            let probe = tokio::task::spawn_blocking(move || child::http_get(addr, "/readyz"));
            if let Ok(Ok((200, _))) = probe.await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("coordinator {id} was not ready within {timeout:?}");
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// The node with id `id`.
    pub fn node(&self, id: u64) -> anyhow::Result<&LocalNode> {
        Ok(&self.nodes[self.index_of(id)?])
    }

    /// Leaves the children running and their data in place when the cluster is dropped;
    /// returns the directory.
    pub fn keep(&mut self) -> Option<PathBuf> {
        self.nodes
            .iter_mut()
            .for_each(|node| drop(node.child.take()));
        self.dir.take().map(TempDir::keep)
    }

    fn node_mut(&mut self, id: u64) -> anyhow::Result<&mut LocalNode> {
        let index = self.index_of(id)?;
        Ok(&mut self.nodes[index])
    }

    fn index_of(&self, id: u64) -> anyhow::Result<usize> {
        self.nodes
            .iter()
            .position(|node| node.id == id)
            .with_context(|| format!("no node {id}"))
    }

    fn peers(&self) -> String {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("{}={}", node.id, node.raft_addr))
            .collect();
        peers.join(",")
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let peers = self.peers();
        let several = self.nodes.len() > 1;
        let node = &mut self.nodes[index];
        let mut args: Vec<OsString> = vec![
            "--log-level".into(),
            self.log_level.clone().into(),
            "coordinator".into(),
            "--data-dir".into(),
            node.data_dir.clone().into(),
        ];
        for (flag, value) in [
            ("--node-id", node.id.to_string()),
            ("--seata-addr", node.seata_addr.to_string()),
            ("--http-addr", node.http_addr.to_string()),
            ("--raft-addr", node.raft_addr.to_string()),
        ] {
            args.extend([flag.into(), value.into()]);
        }
        if several {
            args.extend(["--peers".into(), peers.into()]);
        }
        node.child = Some(child::spawn(args, &node.log_path)?);
        Ok(())
    }

    async fn wait_until_listening(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        let what = format!("coordinator {}", node.id);
        let child = node.child.as_mut().context("the node is not running")?;
        let listening = child::wait_listening(child, node.seata_addr, &node.log_path, &what).await;
        if listening.is_err() {
            if let Some(running) = node.child.take() {
                child::kill(running);
            }
        }
        listening
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(running) = node.child.take() {
                child::kill(running);
            }
        }
    }
}

/// `GET /api/v1/cluster` (the answer is small JSON).
fn node_view(addr: SocketAddr) -> anyhow::Result<NodeView> {
    let (status, body) = child::http_get(addr, "/api/v1/cluster")?;
    if status != 200 {
        bail!("GET /api/v1/cluster answered {status}");
    }
    Ok(serde_json::from_str(&body)?)
}
