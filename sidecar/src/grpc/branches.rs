//! `Branches`: registration goes through the TCC fence (a register for an XID rolled back
//! here is refused; a registered branch is recorded before the application learns its id);
//! report and lock queries pass through.

use tonic::{Request, Response, Status};
use txmesh_api::reason::Reason;
use txmesh_api::v1::branches_server::Branches;
use txmesh_api::v1::{
    BranchPhaseOneStatus, LockQueryRequest, LockQueryResponse, RegisterBranchRequest,
    RegisterBranchResponse, ReportBranchRequest, ReportBranchResponse,
};
use txmesh_seata::message::{BranchRegisterRequest, BranchReportRequest};
use txmesh_seata::{BranchStatus, BranchType, Message};

use super::Api;
use super::errors::{check_xid, fence, invalid, refused, unexpected, upstream};
use crate::convert::branch_type_from_api;
use crate::fence::TryAdmission;
use crate::upstream::UpstreamError;

fn already_cancelled(xid: &str) -> Status {
    Reason::AlreadyCancelled.status(format!(
        "{xid} was already rolled back at this participant: do not run the try"
    ))
}

impl Api {
    async fn register_call(
        &self,
        request: RegisterBranchRequest,
    ) -> Result<RegisterBranchResponse, Status> {
        let inner = &self.inner;
        let xid = check_xid(&request.xid)?.to_owned();
        let resource_id = request.resource_id.clone();
        if resource_id.is_empty() {
            return Err(invalid("resource_id is required"));
        }
        if !inner.apps.serves(&resource_id) {
            return Err(invalid(format!(
                "resource {resource_id:?} is not served here: open Participant.Serve with a Hello naming it first, so phase two can reach it"
            )));
        }
        if inner.fence.rolled_back(&xid).map_err(|e| fence(&e))? {
            return Err(already_cancelled(&xid));
        }
        let message = Message::BranchRegisterRequest(BranchRegisterRequest {
            xid: xid.clone(),
            branch_type: branch_type_from_api(request.branch_type()),
            resource_id: request.resource_id,
            lock_key: request.lock_keys,
            application_data: request.application_data,
        });
        // The intent's fsync runs while the coordinator registers the branch.
        let (registered, intent) = tokio::join!(
            inner.upstream.call(message, Some(&xid)),
            inner.fence.record_intent(&xid, &resource_id)
        );
        if let Err(error) = intent {
            // The branch may exist now; without the intent its try must not run.
            tracing::error!(%xid, %error, "cannot record a register in the fence");
            return Err(fence(&error));
        }
        let branch_id = match registered {
            Ok(Message::BranchRegisterResponse(r)) if r.result.is_success() => r.branch_id,
            Ok(Message::BranchRegisterResponse(r)) => return Err(refused(&r.result)),
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => {
                if matches!(error, UpstreamError::Call(_)) {
                    // The coordinator may hold a branch whose try will never run: a confirm
                    // for it must not wait for this sidecar forever.
                    if let Err(e) = inner
                        .fence
                        .record_uncertain_register(&xid, &resource_id)
                        .await
                    {
                        tracing::error!(%xid, error = %e, "cannot record an uncertain register");
                    }
                }
                return Err(upstream(&error));
            }
        };
        match inner.fence.record_try(&xid, branch_id, &resource_id).await {
            Ok(TryAdmission::Recorded) => Ok(RegisterBranchResponse { branch_id }),
            Ok(TryAdmission::AlreadyRolledBack) => Err(already_cancelled(&xid)),
            Err(error) => {
                if let Err(e) = inner
                    .fence
                    .record_uncertain_register(&xid, &resource_id)
                    .await
                {
                    tracing::error!(%xid, error = %e, "cannot record an uncertain register");
                }
                Err(fence(&error))
            }
        }
    }

    async fn report_call(
        &self,
        request: ReportBranchRequest,
    ) -> Result<ReportBranchResponse, Status> {
        let xid = check_xid(&request.xid)?.to_owned();
        let status = match request.status() {
            BranchPhaseOneStatus::Done => BranchStatus::PhaseOneDone,
            BranchPhaseOneStatus::Failed => BranchStatus::PhaseOneFailed,
            BranchPhaseOneStatus::Unspecified => return Err(invalid("status is required")),
        };
        let message = Message::BranchReportRequest(BranchReportRequest {
            xid: xid.clone(),
            branch_id: request.branch_id,
            status,
            resource_id: request.resource_id.clone(),
            application_data: request.application_data.clone(),
            branch_type: branch_type_from_api(request.branch_type()),
        });
        match self.inner.upstream.call(message, Some(&xid)).await {
            Ok(Message::BranchReportResponse(r)) if r.is_success() => Ok(ReportBranchResponse {}),
            Ok(Message::BranchReportResponse(r)) => Err(refused(&r)),
            Ok(other) => Err(unexpected(&other)),
            Err(error) => Err(upstream(&error)),
        }
    }

    async fn lock_query_call(
        &self,
        request: LockQueryRequest,
    ) -> Result<LockQueryResponse, Status> {
        if request.resource_id.is_empty() {
            return Err(invalid("resource_id is required"));
        }
        let xid = (!request.xid.is_empty()).then(|| request.xid.clone());
        let message = Message::GlobalLockQueryRequest(BranchRegisterRequest {
            xid: request.xid,
            branch_type: BranchType::At,
            resource_id: request.resource_id,
            lock_key: request.lock_keys,
            application_data: String::new(),
        });
        match self.inner.upstream.call(message, xid.as_deref()).await {
            Ok(Message::GlobalLockQueryResponse(r)) if r.result.is_success() => {
                Ok(LockQueryResponse {
                    lockable: r.lockable,
                })
            }
            Ok(Message::GlobalLockQueryResponse(r)) => Err(refused(&r.result)),
            Ok(other) => Err(unexpected(&other)),
            Err(error) => Err(upstream(&error)),
        }
    }
}

#[tonic::async_trait]
impl Branches for Api {
    async fn register(
        &self,
        request: Request<RegisterBranchRequest>,
    ) -> Result<Response<RegisterBranchResponse>, Status> {
        self.instrument("Register", self.register_call(request.into_inner()))
            .await
    }

    async fn report(
        &self,
        request: Request<ReportBranchRequest>,
    ) -> Result<Response<ReportBranchResponse>, Status> {
        self.instrument("Report", self.report_call(request.into_inner()))
            .await
    }

    async fn lock_query(
        &self,
        request: Request<LockQueryRequest>,
    ) -> Result<Response<LockQueryResponse>, Status> {
        self.instrument("LockQuery", self.lock_query_call(request.into_inner()))
            .await
    }
}
