//! `txmesh-operator`: the Kubernetes operator that runs `TransactionCoordinator` resources as
//! Raft groups of coordinators.
//!
//! [`build`] turns a resource into the objects that run it (pure functions, pinned by golden
//! tests and validated against the Kubernetes schemas).

pub mod build;
