//! Harness for end-to-end scenarios: the `txmesh` binary started as real processes on
//! loopback ports, killed and restarted at will and always cleaned up, and Seata clients that
//! reconnect and re-register like real SDKs do; for the sidecar, an account [`ledger`] served
//! as a TCC participant and money transfers between two of them ([`bank`]); a coordinator
//! [`Group`] driven through its admin API, whose members can be cut off from each other.

pub mod bank;
mod clients;
mod group;
pub mod ledger;
mod netns;
mod partition;
mod process;
mod raft_client;
mod views;
mod volume;
mod workload;

pub use clients::{Peer, Role};
pub use group::Group;
pub use netns::NetworkLab;
pub use process::{
    CoordinatorProcess, Coordinators, HttpRequest, SidecarProcess, free_port, http_get,
    txmesh_binary,
};
pub use raft_client::{RaftModeClient, ReconnectTimer};
pub use views::AdminViews;
pub use volume::SmallVolume;
pub use workload::{Report, Running, Workload};
