//! The application-facing gRPC API (`txmesh.v1`): `Transactions` and `Branches` pass through
//! to the coordinators (through the fence for registers), `Participant` carries phase two to
//! the application. Every unary call is counted and timed by method and status code.

mod branches;
mod errors;
mod participant;
mod transactions;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Response, Status};
use txmesh_api::v1::branches_server::BranchesServer;
use txmesh_api::v1::participant_server::ParticipantServer;
use txmesh_api::v1::transactions_server::TransactionsServer;

use crate::apps::Apps;
use crate::fence::Fence;
use crate::metrics::Metrics;
use crate::phase_two::PhaseTwoHandler;
use crate::upstream::Upstream;

/// Largest message a call may send: every request is a few fields, an AT lock key of a
/// thousand rows is tens of kilobytes (tonic's default is 4 MiB).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// What the services share.
struct Inner {
    upstream: Upstream<PhaseTwoHandler>,
    fence: Arc<Fence>,
    apps: Arc<Apps>,
    metrics: Metrics,
    /// False once shutting down: Begin is refused, so no new transaction starts here.
    accepting: watch::Receiver<bool>,
}

/// The three services over shared state (cheap to clone).
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

impl Api {
    /// The API over these parts.
    pub fn new(
        upstream: Upstream<PhaseTwoHandler>,
        fence: Arc<Fence>,
        apps: Arc<Apps>,
        metrics: Metrics,
        accepting: watch::Receiver<bool>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                upstream,
                fence,
                apps,
                metrics,
                accepting,
            }),
        }
    }

    /// A router serving the three services, each refusing messages over 1 MiB.
    pub fn router(&self) -> tonic::service::Routes {
        let transactions =
            TransactionsServer::new(self.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let branches =
            BranchesServer::new(self.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let participant =
            ParticipantServer::new(self.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        tonic::service::Routes::new(transactions)
            .add_service(branches)
            .add_service(participant)
    }

    /// Runs one unary call, recording it under `method`.
    async fn instrument<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let metrics = &self.inner.metrics;
        let _in_flight = metrics.call_started();
        let started = Instant::now();
        let result = call.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        metrics.observe_call(method, code, started.elapsed());
        result.map(Response::new)
    }
}
