//! The connection's only reader: decodes frames, hands answers to the requests waiting for
//! them, and starts a task per server-initiated request so business work never blocks reading.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc::WeakSender;
use tokio_util::codec::FramedRead;

use super::{ClientError, CloseReason, Outbound, ServerRequestHandler, Shared};
use crate::codec::FrameCodec;
use crate::enums::FrameType;
use crate::error::{BodyError, FrameError};
use crate::frame::{Frame, RawFrame};
use crate::message::Message;

pub(crate) async fn run<H: ServerRequestHandler>(
    socket: OwnedReadHalf,
    shared: Arc<Shared>,
    outbound: WeakSender<Outbound>,
    handler: Arc<H>,
) {
    let reader = Reader {
        shared: shared.clone(),
        outbound,
        handler,
    };
    let mut frames = FramedRead::new(socket, FrameCodec::new(shared.config.max_frame_len));
    let mut closed = shared.closed.subscribe();
    let idle = shared.config.read_idle_timeout;
    let reason = loop {
        let next = tokio::select! {
            _ = closed.wait_for(Option::is_some) => return,
            next = tokio::time::timeout(idle, frames.next()) => next,
        };
        match next {
            Err(_) => break CloseReason::ReadIdle(idle),
            Ok(None) => break CloseReason::PeerClosed,
            Ok(Some(Err(FrameError::Io(e)))) => break CloseReason::Io(e.to_string()),
            Ok(Some(Err(e))) => break CloseReason::Framing(e.to_string()),
            Ok(Some(Ok(frame))) => reader.dispatch(frame),
        }
    };
    shared.close(reason);
}

struct Reader<H> {
    shared: Arc<Shared>,
    outbound: WeakSender<Outbound>,
    handler: Arc<H>,
}

impl<H: ServerRequestHandler> Reader<H> {
    fn dispatch(&self, frame: RawFrame) {
        match frame.frame_type {
            FrameType::HeartbeatResponse => {}
            FrameType::HeartbeatRequest => self.pong(frame.request_id),
            FrameType::Response => self.answer(frame),
            FrameType::Request | FrameType::Oneway => self.serve(frame),
        }
    }

    fn pong(&self, id: i32) {
        let Ok(bytes) = self.shared.encode(&Frame::pong(id)) else {
            return;
        };
        if let Some(outbound) = self.outbound.upgrade() {
            // A full queue means data is flowing anyway, which is all a ping asks for.
            let _ = outbound.try_send(Outbound::Frame(bytes));
        }
    }

    /// Answers come as one message, as a MergeResultMessage for a merged frame (in order), or
    /// as a BatchResultMessage (by id).
    fn answer(&self, frame: RawFrame) {
        let pending = &self.shared.pending;
        let id = frame.request_id;
        match frame.message(&self.shared.dialect()) {
            Ok(Some(Message::MergeResultMessage(merged))) => {
                let Some(ids) = pending.take_merged(id) else {
                    return tracing::debug!(id, "merge result for no waiting batch");
                };
                let (answered, expected) = (merged.msgs.len(), ids.len());
                let mut answers = merged.msgs.into_iter();
                for sub in ids {
                    let result =
                        answers
                            .next()
                            .ok_or(ClientError::Body(BodyError::BatchIdsMismatch {
                                messages: expected,
                                ids: answered,
                            }));
                    pending.complete(sub, result);
                }
            }
            Ok(Some(Message::BatchResultMessage(batch))) => {
                for (sub, message) in batch.msg_ids.into_iter().zip(batch.result_messages) {
                    pending.complete(sub, Ok(message));
                }
            }
            Ok(Some(message)) => {
                if !pending.complete(id, Ok(message)) {
                    tracing::debug!(id, "answer for no waiting request (timed out or cancelled)");
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(id, %error, "undecodable answer dropped");
                match pending.take_merged(id) {
                    Some(ids) => ids.into_iter().for_each(|sub| {
                        pending.complete(sub, Err(ClientError::Body(error.clone())));
                    }),
                    None => {
                        pending.complete(id, Err(ClientError::Body(error)));
                    }
                }
            }
        }
    }

    fn serve(&self, frame: RawFrame) {
        let id = frame.request_id;
        let message = match frame.message(&self.shared.dialect()) {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(error) => return tracing::warn!(id, %error, "undecodable server request dropped"),
        };
        let handler = self.handler.clone();
        let shared = self.shared.clone();
        let outbound = self.outbound.clone();
        tokio::spawn(async move {
            let answer = match message {
                Message::BranchCommitRequest(r) => {
                    Message::BranchCommitResponse(handler.branch_commit(r).await)
                }
                Message::BranchRollbackRequest(r) => {
                    Message::BranchRollbackResponse(handler.branch_rollback(r).await)
                }
                Message::UndoLogDeleteRequest(r) => return handler.undo_log_delete(r).await,
                other => {
                    return tracing::warn!(
                        id,
                        kind = other.type_name(),
                        "unexpected request from the server"
                    );
                }
            };
            let bytes = match shared.encode(&Frame::response(id, answer)) {
                Ok(bytes) => bytes,
                Err(error) => {
                    return tracing::error!(id, %error, "cannot encode a phase-two answer");
                }
            };
            if let Some(outbound) = outbound.upgrade() {
                let _ = outbound.send(Outbound::Frame(bytes)).await;
            }
        });
    }
}
