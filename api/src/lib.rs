//! txmesh's gRPC APIs, generated from `proto/`: [`v1`], what applications call on their
//! sidecar, and [`raft::v1`], the coordinators' Raft transport. [`participant`] is a Rust
//! client for the sidecar; [`reason`] reads and writes the error reasons of `txmesh.v1`.

pub mod participant;
pub mod reason;

/// The application-facing API (`txmesh.v1`).
pub mod v1 {
    #![allow(missing_docs)] // generated; documented in the .proto files
    tonic::include_proto!("txmesh.v1");
}

/// The coordinators' Raft transport.
pub mod raft {
    /// Version 1 (`txmesh.raft.v1`).
    pub mod v1 {
        #![allow(missing_docs)] // generated; documented in the .proto file
        tonic::include_proto!("txmesh.raft.v1");
    }
}
