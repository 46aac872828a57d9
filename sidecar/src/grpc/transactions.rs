//! `Transactions`: global transactions, passed through to the coordinators.

use tonic::{Request, Response, Status};
use txmesh_api::reason::Reason;
use txmesh_api::v1::transactions_server::Transactions;
use txmesh_api::v1::{
    BeginRequest, BeginResponse, CommitRequest, CommitResponse, GetStatusRequest,
    GetStatusResponse, RollbackRequest, RollbackResponse,
};
use txmesh_seata::Message;
use txmesh_seata::message::{GlobalBeginRequest, GlobalEndRequest};

use super::Api;
use super::errors::{check_xid, invalid, refused, unexpected, upstream};
use crate::convert::global_status_to_api;

/// Seata's default transaction timeout.
const DEFAULT_TIMEOUT_MS: u32 = 60_000;

impl Api {
    async fn begin_call(&self, request: BeginRequest) -> Result<BeginResponse, Status> {
        if !*self.inner.accepting.borrow() {
            return Err(Reason::ShuttingDown
                .status("the sidecar is shutting down and starts no new transaction"));
        }
        let timeout_ms = match request.timeout_ms {
            0 => DEFAULT_TIMEOUT_MS,
            ms => ms,
        };
        let timeout = i32::try_from(timeout_ms)
            .map_err(|_| invalid(format!("timeout_ms {timeout_ms} is too large")))?;
        let message = Message::GlobalBeginRequest(GlobalBeginRequest {
            timeout,
            transaction_name: request.name,
        });
        match self.inner.upstream.call(message, None).await {
            Ok(Message::GlobalBeginResponse(r)) if r.result.is_success() => {
                Ok(BeginResponse { xid: r.xid })
            }
            Ok(Message::GlobalBeginResponse(r)) => Err(refused(&r.result)),
            Ok(other) => Err(unexpected(&other)),
            Err(error) => Err(upstream(&error)),
        }
    }

    /// Commit, rollback and status share one shape: an XID in, a global status out.
    async fn end_call(
        &self,
        xid: String,
        message: fn(GlobalEndRequest) -> Message,
    ) -> Result<i32, Status> {
        check_xid(&xid)?;
        let request = message(GlobalEndRequest {
            xid: xid.clone(),
            extra_data: String::new(),
        });
        match self.inner.upstream.call(request, Some(&xid)).await {
            Ok(
                Message::GlobalCommitResponse(r)
                | Message::GlobalRollbackResponse(r)
                | Message::GlobalStatusResponse(r),
            ) => match r.result.is_success() {
                true => Ok(global_status_to_api(r.global_status).into()),
                false => Err(refused(&r.result)),
            },
            Ok(other) => Err(unexpected(&other)),
            Err(error) => Err(upstream(&error)),
        }
    }
}

#[tonic::async_trait]
impl Transactions for Api {
    async fn begin(
        &self,
        request: Request<BeginRequest>,
    ) -> Result<Response<BeginResponse>, Status> {
        self.instrument("Begin", self.begin_call(request.into_inner()))
            .await
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let xid = request.into_inner().xid;
        let call = self.end_call(xid, Message::GlobalCommitRequest);
        self.instrument("Commit", async {
            Ok(CommitResponse {
                status: call.await?,
            })
        })
        .await
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<RollbackResponse>, Status> {
        let xid = request.into_inner().xid;
        let call = self.end_call(xid, Message::GlobalRollbackRequest);
        self.instrument("Rollback", async {
            Ok(RollbackResponse {
                status: call.await?,
            })
        })
        .await
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let xid = request.into_inner().xid;
        let call = self.end_call(xid, Message::GlobalStatusRequest);
        self.instrument("GetStatus", async {
            Ok(GetStatusResponse {
                status: call.await?,
            })
        })
        .await
    }
}
