//! `txmesh-operator`: the Kubernetes operator that runs `TransactionCoordinator` resources as
//! Raft groups of coordinators.
//!
//! [`build`] turns a resource into the objects that run it (pure functions, pinned by golden
//! tests and validated against the Kubernetes schemas); [`controller`] reconciles: read →
//! validate → build → server-side apply → status ([`status`]), with a finalizer and Events.

pub mod build;
pub mod controller;
pub mod status;
