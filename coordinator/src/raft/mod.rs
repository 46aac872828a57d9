//! The Raft group: type configuration, and the peer transport (client and server).

mod network;
mod service;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use network::PeerNetwork;
pub use service::{RaftService, describe, quorum_index};

use crate::state::{Command, Outcome};

/// A node's id in the group.
pub type NodeId = u64;

/// Where a node serves clients, as they should reach it (`host:port`). Peers learn it with
/// the `Describe` call, so membership entries need carry only the Raft address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// The admin HTTP endpoint.
    pub admin: String,
    /// The Seata RPC endpoint.
    pub seata: String,
    /// The Seata server version announced to clients, in registration answers and metadata.
    pub seata_version: String,
}

openraft::declare_raft_types!(
    /// The coordinator's Raft types: batches of commands in, their outcomes out.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The commands of one log entry. Concurrent requests share an entry, so one append, one
/// fsync and one round of replication serve them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Command>);

/// What applying one log entry produced: one outcome per command, none for Raft's own
/// entries (leader blanks, membership changes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied(pub Vec<Outcome>);

/// Most commands one entry may carry: ids reserve 16 bits for the position.
pub const MAX_PROPOSAL: usize = 1 << 16;

/// The id of whatever the command at `position` of the entry at `index` creates: unique across
/// leaders and restarts because log indexes are, and the same on every replica.
pub const fn command_id(index: u64, position: usize) -> u64 {
    index << 16 | position as u64
}

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// What a Raft node reports about itself.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// The membership as stored with the state.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
