//! Harness for end-to-end scenarios: the `txmesh` binary started as real processes on
//! loopback ports, killed and restarted at will and always cleaned up, and Seata clients that
//! reconnect and re-register like real SDKs do.

mod clients;
mod process;
mod workload;

pub use clients::{Peer, Role};
pub use process::{CoordinatorProcess, free_port, txmesh_binary};
pub use workload::{Report, Running, Workload};
