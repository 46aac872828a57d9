//! `Participant`: the application's phase-two stream, and what the fence knows.

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use txmesh_api::v1::participant_message::Kind;
use txmesh_api::v1::participant_server::Participant;
use txmesh_api::v1::{
    FenceRecord, FenceState, GetFenceRequest, GetFenceResponse, ParticipantMessage, PhaseTwoAction,
};

use super::Api;
use super::errors::{check_xid, fence, invalid};
use crate::fence::State;

fn check_resources(resource_ids: Vec<String>) -> Result<Vec<String>, Status> {
    if resource_ids.iter().any(String::is_empty) {
        return Err(invalid("resource ids must not be empty"));
    }
    Ok(resource_ids)
}

fn fence_state(state: State) -> FenceState {
    match state {
        State::Tried => FenceState::Tried,
        State::Confirmed => FenceState::Confirmed,
        State::Cancelled => FenceState::Cancelled,
        State::EmptyRollback => FenceState::EmptyRollback,
        // Markers of the XID, not of a branch: the fence does not list them.
        State::RegisterUncertain | State::Registering => FenceState::Unspecified,
    }
}

#[tonic::async_trait]
impl Participant for Api {
    type ServeStream = ReceiverStream<Result<PhaseTwoAction, Status>>;

    async fn serve(
        &self,
        request: Request<Streaming<ParticipantMessage>>,
    ) -> Result<Response<Self::ServeStream>, Status> {
        let mut inbound = request.into_inner();
        let resources = match inbound.message().await? {
            Some(ParticipantMessage {
                kind: Some(Kind::Hello(hello)),
            }) => check_resources(hello.resource_ids)?,
            _ => return Err(invalid("the first message must be a Hello")),
        };
        let apps = self.inner.apps.clone();
        tracing::info!(?resources, "application stream opened");
        let (id, actions) = apps.open(resources);
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(ParticipantMessage {
                        kind: Some(Kind::Hello(hello)),
                    })) => match check_resources(hello.resource_ids) {
                        Ok(resources) => apps.declare(id, resources),
                        Err(status) => tracing::warn!(%status, "bad Hello ignored"),
                    },
                    Ok(Some(ParticipantMessage {
                        kind: Some(Kind::Result(result)),
                    })) => {
                        if !apps.answer(id, result) {
                            tracing::debug!("answer for no waiting action (timed out)");
                        }
                    }
                    Ok(Some(ParticipantMessage { kind: None })) => {}
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "application stream broke");
                        break;
                    }
                }
            }
            tracing::info!("application stream closed");
            apps.close(id);
        });
        Ok(Response::new(ReceiverStream::new(actions)))
    }

    async fn get_fence(
        &self,
        request: Request<GetFenceRequest>,
    ) -> Result<Response<GetFenceResponse>, Status> {
        let call = async {
            let xid = request.into_inner().xid;
            check_xid(&xid)?;
            let records = self.inner.fence.records(&xid).map_err(|e| fence(&e))?;
            let records = records
                .into_iter()
                .map(|(branch_id, record)| FenceRecord {
                    branch_id,
                    resource_id: record.resource_id,
                    state: fence_state(record.state).into(),
                    updated_at_ms: record.updated_at_ms,
                })
                .collect();
            Ok(GetFenceResponse { records })
        };
        self.instrument("GetFence", call).await
    }
}
