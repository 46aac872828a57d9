//! One client connection. A reader decodes frames and answers heartbeats and registrations
//! itself; transaction requests run in their own tasks (each waits for Raft), and their
//! answers go through the connection's single writer, so frames never interleave.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use txmesh_seata::TransactionExceptionCode as Code;
use txmesh_seata::message::*;
use txmesh_seata::{Dialect, Frame, FrameType, Message, MsgLength, RawFrame};

use super::ServerContext;
use super::framing::BoundedFrames;
use super::handle::{ConnHandle, DispatchError, Shared};
use super::limits::Slot;
use super::registry::client_id;
use crate::tc::{Caller, failure_answer};

/// Stop gathering queued answers into one write beyond this many bytes.
const MAX_COALESCED_BYTES: usize = 256 * 1024;

/// Serves one accepted connection until it closes, holding its `slot` until then.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ServerContext>,
    conn_id: u64,
    _slot: Slot,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "TCP_NODELAY not set");
    }
    let (read_half, write_half) = stream.into_split();
    let (outbound, queue) = mpsc::channel(4_096);
    let shared = Arc::new(Shared::new(
        conn_id,
        peer,
        outbound,
        ctx.tuning.max_frame_len,
    ));
    tokio::spawn(write_loop(write_half, queue));
    let mut connection = Connection {
        ctx: ctx.clone(),
        handle: ConnHandle {
            shared: shared.clone(),
        },
        caller: None,
    };
    let tuning = &ctx.tuning;
    let decoder = BoundedFrames::new(
        tuning.unregistered_max_frame_len,
        tuning.max_frame_len,
        ctx.limits.claim(),
    );
    let frames = FramedRead::new(read_half, decoder);
    connection.read_loop(frames).await;
    ctx.registry.remove_connection(conn_id);
    shared.correlation.fail_all(|| DispatchError::Closed);
    tracing::debug!(%peer, conn_id, "connection closed");
}

async fn write_loop(mut socket: OwnedWriteHalf, mut queue: mpsc::Receiver<Bytes>) {
    let mut out = BytesMut::with_capacity(8 * 1024);
    while let Some(first) = queue.recv().await {
        out.extend_from_slice(&first);
        while out.len() < MAX_COALESCED_BYTES {
            match queue.try_recv() {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(_) => break,
            }
        }
        if socket.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
    let _ = socket.shutdown().await;
}

struct Connection {
    ctx: Arc<ServerContext>,
    handle: ConnHandle,
    /// Set by the first registration; transaction requests need it.
    caller: Option<Arc<Caller>>,
}

impl Connection {
    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    async fn read_loop(
        &mut self,
        mut frames: FramedRead<tokio::net::tcp::OwnedReadHalf, BoundedFrames>,
    ) {
        let idle = self.ctx.tuning.read_idle_timeout();
        let peer = self.shared().peer;
        loop {
            match tokio::time::timeout(idle, frames.next()).await {
                Err(_) => {
                    return tracing::info!(%peer, ?idle, "closing a connection idle beyond the read timeout");
                }
                Ok(None) => return,
                Ok(Some(Err(error))) => {
                    return match error.refusal() {
                        Some(refusal) => self.ctx.limits.refuse(peer, refusal, &error),
                        None => tracing::debug!(%peer, %error, "connection failed"),
                    };
                }
                Ok(Some(Ok(frame))) => {
                    let registered = self.caller.is_some();
                    self.dispatch(frame);
                    if !registered && self.caller.is_some() {
                        frames.decoder_mut().registered();
                    }
                }
            }
        }
    }

    fn dispatch(&mut self, frame: RawFrame) {
        match frame.frame_type {
            FrameType::HeartbeatRequest => self.send(Frame::pong(frame.request_id)),
            FrameType::HeartbeatResponse => {}
            FrameType::Response => self.answer_arrived(frame),
            FrameType::Request | FrameType::Oneway => {
                let id = frame.request_id;
                match frame.message(&self.shared().dialect()) {
                    Ok(Some(message)) => self.request(id, frame.frame_type, message),
                    Ok(None) => {}
                    // The framing is intact: drop this frame only, and keep the connection.
                    Err(error) => {
                        let peer = self.shared().peer;
                        if self
                            .ctx
                            .limits
                            .first_in_a_while(peer.ip(), "undecodable request")
                        {
                            tracing::warn!(%peer, id, %error, "undecodable request dropped (logged once a minute per address)")
                        }
                    }
                }
            }
        }
    }

    /// An RM's answer to the coordinator's own request. A failed answer that only decodes in
    /// seata-go's layout also teaches the connection that its peer is seata-go.
    fn answer_arrived(&self, frame: RawFrame) {
        let shared = self.shared();
        let result = match frame.message_any_msg_length(&shared.dialect()) {
            Ok(Some((message, layout))) => {
                if layout == MsgLength::U8 && shared.dialect().branch_msg_length != MsgLength::U8 {
                    shared.set_dialect(Dialect::SEATA_GO);
                }
                Ok(message)
            }
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(peer = %shared.peer, id = frame.request_id, %error, "undecodable answer");
                Err(DispatchError::Undecodable(error))
            }
        };
        if !shared.correlation.complete(frame.request_id, result) {
            tracing::debug!(
                id = frame.request_id,
                "answer for no waiting request (timed out)"
            );
        }
    }

    fn request(&mut self, id: i32, frame_type: FrameType, message: Message) {
        match message {
            Message::RegisterTmRequest(request) => {
                let identified = self.register(&request, frame_type == FrameType::Oneway);
                self.respond(
                    id,
                    Message::RegisterTmResponse(self.registration_answer(identified)),
                );
            }
            Message::RegisterRmRequest(request) => {
                let identified = self.register(&request.identity, false);
                if identified {
                    let app = &request.identity.application_id;
                    self.ctx
                        .registry
                        .register(app, &self.handle, request.resources());
                }
                self.respond(
                    id,
                    Message::RegisterRmResponse(self.registration_answer(identified)),
                );
            }
            Message::UnregisterRmRequest(request) => {
                self.ctx
                    .registry
                    .unregister(self.handle.id(), request.resources());
                let answer = UnregisterRmResponse {
                    identified: true,
                    version: self.ctx.tuning.version.clone(),
                };
                self.respond(id, Message::UnregisterRmResponse(answer));
            }
            Message::MergedWarpMessage(merged) => self.serve_merged(id, merged.msgs),
            other => self.serve_one(id, other),
        }
    }

    /// Records who the peer is and which dialect it speaks. seata-go registers its TM oneway
    /// with empty extra data (spec P1); Java TMs always send `vgroup=`/`ip=`. A blank or
    /// malformed version is refused, as Seata's version check does. Followers accept too, as
    /// Seata's raft mode does (spec §4.5): registration is local to the connection, so a
    /// follower that becomes leader can dispatch phase two to its RMs at once.
    fn register(&mut self, identity: &RegisterRequest, oneway: bool) -> bool {
        let peer = self.shared().peer;
        let Some(version) = identity.sdk_version() else {
            tracing::warn!(%peer, version = %identity.version, "registration refused: no valid SDK version");
            return false;
        };
        let seata_go = oneway && identity.extra_data.is_empty();
        let dialect = if seata_go {
            Dialect::SEATA_GO
        } else {
            Dialect::java(version)
        };
        self.shared().set_dialect(dialect);
        self.caller = Some(Arc::new(Caller {
            application_id: identity.application_id.clone(),
            transaction_service_group: identity.transaction_service_group.clone(),
            client_id: client_id(&identity.application_id, &self.handle),
        }));
        tracing::debug!(%peer, app = %identity.application_id, %version, seata_go, "registered");
        true
    }

    fn registration_answer(&self, identified: bool) -> RegisterResponse {
        RegisterResponse::new(identified, self.ctx.tuning.version.clone())
    }

    fn serve_one(&self, id: i32, message: Message) {
        let Some(caller) = self.caller.clone() else {
            return self.refuse_unregistered(id, &message);
        };
        let ctx = self.ctx.clone();
        let shared = self.handle.shared.clone();
        tokio::spawn(async move {
            let kind = message.type_name();
            match ctx.tc.handle(&caller, message).await {
                Some(answer) => send(&shared, Frame::response(id, answer)).await,
                None => {
                    tracing::warn!(peer = %shared.peer, kind, "not a request the coordinator serves")
                }
            }
        });
    }

    /// All sub-requests run concurrently; the answers go back in their order in one
    /// MergeResultMessage, which every Seata client version accepts (spec §4.6).
    fn serve_merged(&self, id: i32, requests: Vec<Message>) {
        let Some(caller) = self.caller.clone() else {
            return requests
                .iter()
                .for_each(|m| self.refuse_unregistered(id, m));
        };
        let ctx = self.ctx.clone();
        let shared = self.handle.shared.clone();
        tokio::spawn(async move {
            let answers = join_all(requests.into_iter().map(|request| {
                let (ctx, caller) = (ctx.clone(), caller.clone());
                async move {
                    let failure = failure_answer(
                        &request,
                        TxResult::failure(Code::Unknown, "not a request the coordinator serves"),
                    );
                    ctx.tc.handle(&caller, request).await.or(failure)
                }
            }))
            .await;
            // Every request gets an answer in its slot, failed if need be (spec P6); only a
            // sub-message that is no request at all, which no client sends, has none.
            let msgs: Vec<Message> = answers.into_iter().flatten().collect();
            send(
                &shared,
                Frame::response(id, Message::MergeResultMessage(MergeResultMessage { msgs })),
            )
            .await;
        });
    }

    /// Seata closes connections that skip registration; an answer saying why is kinder.
    fn refuse_unregistered(&self, id: i32, request: &Message) {
        let peer = self.shared().peer;
        if self
            .ctx
            .limits
            .first_in_a_while(peer.ip(), "unregistered request")
        {
            tracing::warn!(%peer, kind = request.type_name(), "request before registration refused (logged once a minute per address)");
        }
        if let Some(answer) = failure_answer(
            request,
            TxResult::failure(
                Code::Unknown,
                "register with RegisterTMRequest or RegisterRMRequest first",
            ),
        ) {
            self.respond(id, answer);
        }
    }

    fn respond(&self, id: i32, message: Message) {
        self.send(Frame::response(id, message));
    }

    fn send(&self, frame: Frame) {
        let shared = self.handle.shared.clone();
        match shared.encode(&frame) {
            // The reader never waits on a full queue: a slow peer fills its own queue only.
            Ok(bytes) => {
                if let Err(mpsc::error::TrySendError::Full(bytes)) = shared.outbound.try_send(bytes)
                {
                    tokio::spawn(async move { drop(shared.outbound.send(bytes).await) });
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode an answer"),
        }
    }
}

async fn send(shared: &Shared, frame: Frame) {
    match shared.encode(&frame) {
        Ok(bytes) => drop(shared.outbound.send(bytes).await),
        Err(error) => tracing::error!(%error, "cannot encode an answer"),
    }
}
