//! The node's health in one place. The probes (`/healthz`, `/readyz`), the Seata server's
//! refusals and the metadata endpoints all ask the node for its verdict (`not_serving`,
//! `failing`, `fault`, built from [`fault`] and [`quorum_lost`]), so they never disagree: a node whose Raft core stopped, whose storage is full,
//! or that leads without a quorum is never reported ready or named as a leader.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openraft::ServerState;
use txmesh_seata::TransactionExceptionCode as Code;

use crate::raft::RaftMetrics;

/// What RocksDB and the kernel say when a write finds no space (ENOSPC).
const NO_SPACE: &str = "No space left on device";
/// A stopped core on a volume with less than this left is taken as stopped by a full disk,
/// whatever the error said (a full disk can surface as a failed sync or rename).
const NEARLY_FULL: u64 = 1024 * 1024;

/// Space on the file system holding the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
    /// The file system's size in bytes.
    pub total: u64,
}

/// The file system holding a data directory.
#[derive(Debug, Clone)]
pub struct Volume {
    path: PathBuf,
}

impl Volume {
    /// The volume holding `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// Its space now; `None` when the file system cannot be asked.
    pub fn space(&self) -> Option<Space> {
        let stat = rustix::fs::statvfs(&self.path).ok()?;
        Some(Space {
            available: stat.f_bavail.saturating_mul(stat.f_frsize),
            total: stat.f_blocks.saturating_mul(stat.f_frsize),
        })
    }
}

/// A failure the node cannot serve through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// A write found the data volume full; the Raft core stopped on it. The node serves again
    /// once space is freed (`txmesh coordinator` restarts itself then).
    #[error(
        "the coordinator's storage is full ({}): it stopped writing and serves again once space is freed on its data volume",
        free_text(*.available)
    )]
    StorageFull {
        /// Bytes available on the data volume when asked.
        available: Option<u64>,
    },
    /// The Raft core stopped for another reason; only a restart brings the node back.
    #[error("the coordinator's Raft core stopped: {0}")]
    RaftStopped(String),
}

fn free_text(available: Option<u64>) -> String {
    match available {
        Some(bytes) => format!("{} KiB free", bytes / 1024),
        None => "free space unknown".to_owned(),
    }
}

impl Fault {
    /// Whether the node can come back without a person: storage that frees up can.
    pub fn recoverable(&self) -> bool {
        matches!(self, Fault::StorageFull { .. })
    }
}

/// The node's fault, if its Raft core has stopped: storage full when the error says so or the
/// volume is nearly full, otherwise a stopped core.
pub fn fault(metrics: &RaftMetrics, volume: &Volume) -> Option<Fault> {
    let fatal = metrics.running_state.as_ref().err()?;
    let detail = fatal.to_string();
    let available = volume.space().map(|space| space.available);
    let full = detail.contains(NO_SPACE) || available.is_some_and(|bytes| bytes < NEARLY_FULL);
    Some(match full {
        true => Fault::StorageFull { available },
        false => Fault::RaftStopped(detail),
    })
}

/// Why a node must not serve transaction requests now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotServing {
    /// Its Raft core or storage failed.
    #[error(transparent)]
    Fault(#[from] Fault),
    /// Another node leads, or none does yet.
    #[error("node {node} is not the leader; {leader}")]
    NotLeader {
        /// This node.
        node: u64,
        /// Who leads, in words.
        leader: String,
    },
    /// It leads, but no quorum has answered it for longer than a follower waits before it
    /// elects another leader: it may be cut off from its group.
    #[error(
        "node {node} leads term {term} but no quorum has answered it for {} ms: it may be cut off from its group, which elects another leader",
        .silent.as_millis()
    )]
    NoQuorum {
        /// This node.
        node: u64,
        /// Its term.
        term: u64,
        /// How long no quorum has answered.
        silent: Duration,
    },
}

impl NotServing {
    /// The Seata exception code clients get: a not-leader answer sends them to the leader,
    /// a fault is a store failure, which no other node of a single-node group could take.
    pub fn code(&self) -> Code {
        match self {
            NotServing::Fault(_) => Code::FailedStore,
            NotServing::NotLeader { .. } | NotServing::NoQuorum { .. } => Code::NotRaftLeader,
        }
    }
}

/// Why a leader with these metrics must not serve, leadership aside: no quorum has answered it
/// for longer than `lease`. `None` on a single-voter group, whose leader is its own quorum.
pub fn quorum_lost(metrics: &RaftMetrics, lease: Duration) -> Option<NotServing> {
    if metrics.state != ServerState::Leader {
        return None;
    }
    let silent = Duration::from_millis(metrics.millis_since_quorum_ack?);
    (silent > lease).then_some(NotServing::NoQuorum {
        node: metrics.id,
        term: metrics.current_term,
        silent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_volume_reports_its_space() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let space = Volume::new(dir.path()).space().expect("statvfs");
        assert!(
            space.total > 0 && space.available <= space.total,
            "{space:?}"
        );
        assert!(Volume::new(&dir.path().join("missing")).space().is_none());
    }

    #[test]
    fn faults_say_what_a_client_and_an_operator_need() {
        let full = Fault::StorageFull {
            available: Some(2048),
        };
        assert!(full.recoverable());
        assert!(
            full.to_string().contains("storage is full (2 KiB free)"),
            "{full}"
        );
        let stopped = Fault::RaftStopped("panicked".into());
        assert!(!stopped.recoverable());
        assert_eq!(NotServing::from(full).code(), Code::FailedStore);
    }
}
