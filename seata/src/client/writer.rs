//! The connection's only writer: coalesces queued frames into one write, merges batchable
//! requests into MergedWarpMessage frames, and pings when nothing was written for a while.
//! One writer per socket also keeps frames from interleaving (spec P15).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::{ClientError, CloseReason, Outbound, Shared};
use crate::frame::Frame;
use crate::message::{MergedWarpMessage, Message};

/// Stop gathering queued frames into one write beyond this many bytes.
const MAX_COALESCED_BYTES: usize = 256 * 1024;

pub(crate) async fn run(
    mut socket: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Outbound>,
    shared: Arc<Shared>,
) {
    let reason = Writer::new(shared.clone())
        .pump(&mut socket, &mut queue)
        .await;
    shared.close(reason);
    // Best effort: the peer learns at once that we are gone.
    let _ = socket.shutdown().await;
}

struct Writer {
    shared: Arc<Shared>,
    out: BytesMut,
    batch: Vec<(i32, Message)>,
    batch_deadline: Option<Instant>,
    last_write: Instant,
}

impl Writer {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            out: BytesMut::with_capacity(8 * 1024),
            batch: Vec::new(),
            batch_deadline: None,
            last_write: Instant::now(),
        }
    }

    async fn pump(
        &mut self,
        socket: &mut OwnedWriteHalf,
        queue: &mut mpsc::Receiver<Outbound>,
    ) -> CloseReason {
        let mut closed = self.shared.closed.subscribe();
        let heartbeat = self.shared.config.heartbeat_interval;
        loop {
            let flush_at = self
                .batch_deadline
                .unwrap_or_else(|| Instant::now() + heartbeat);
            tokio::select! {
                biased;
                _ = closed.wait_for(Option::is_some) => return CloseReason::Closed,
                item = queue.recv() => {
                    // Every handle is gone: nobody can use this connection any more.
                    let Some(item) = item else { return CloseReason::Closed };
                    self.accept(item);
                    while self.out.len() < MAX_COALESCED_BYTES {
                        match queue.try_recv() {
                            Ok(item) => self.accept(item),
                            Err(_) => break,
                        }
                    }
                }
                _ = sleep_until(flush_at), if self.batch_deadline.is_some() => self.flush_batch(),
                _ = sleep_until(self.last_write + heartbeat) => self.ping(),
            }
            if !self.out.is_empty() {
                if let Err(e) = socket.write_all(&self.out).await {
                    return CloseReason::Io(e.to_string());
                }
                self.out.clear();
                self.last_write = Instant::now();
            }
        }
    }

    fn accept(&mut self, item: Outbound) {
        match item {
            Outbound::Frame(bytes) => self.out.extend_from_slice(&bytes),
            Outbound::Batchable { id, message } => {
                let Some(config) = self.shared.config.batch else {
                    return self.encode_request(id, message);
                };
                if self.batch.is_empty() {
                    self.batch_deadline = Some(Instant::now() + config.max_wait);
                }
                self.batch.push((id, message));
                if self.batch.len() >= config.max_messages {
                    self.flush_batch();
                }
            }
        }
    }

    /// One waiting request goes alone; several go as one MergedWarpMessage with their ids,
    /// flagged oneway as Java sends it.
    fn flush_batch(&mut self) {
        self.batch_deadline = None;
        let mut batch = std::mem::take(&mut self.batch);
        if batch.len() == 1 {
            let (id, message) = batch.remove(0);
            return self.encode_request(id, message);
        }
        let (ids, msgs): (Vec<i32>, Vec<Message>) = batch.into_iter().unzip();
        let outer = self.shared.next_id();
        let merged = Message::MergedWarpMessage(MergedWarpMessage {
            msgs,
            msg_ids: Some(ids.clone()),
        });
        let frame = Frame::oneway(outer, merged);
        let dialect = self.shared.dialect();
        let start = self.out.len();
        match frame.encode(&dialect, self.shared.config.max_frame_len, &mut self.out) {
            Ok(()) => {
                let shared = &self.shared;
                shared.merged_frames.fetch_add(1, Ordering::Relaxed);
                shared
                    .merged_requests
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
                shared
                    .pending
                    .insert_merged(outer, ids, shared.config.request_timeout)
            }
            Err(error) => {
                // Too big together (or one is unencodable): send them one by one, so each
                // request gets its own outcome.
                tracing::debug!(%error, "merged frame not encodable, sending requests singly");
                self.out.truncate(start);
                let Some(Message::MergedWarpMessage(merged)) = frame.body else {
                    return;
                };
                for (id, message) in ids.into_iter().zip(merged.msgs) {
                    self.encode_request(id, message);
                }
            }
        }
    }

    fn encode_request(&mut self, id: i32, message: Message) {
        let dialect = self.shared.dialect();
        let frame = Frame::request(id, message);
        if let Err(error) = frame.encode(&dialect, self.shared.config.max_frame_len, &mut self.out)
        {
            self.shared
                .pending
                .complete(id, Err(ClientError::Encode(error)));
        }
    }

    fn ping(&mut self) {
        let frame = Frame::ping(self.shared.next_id());
        let dialect = self.shared.dialect();
        if let Err(error) = frame.encode(&dialect, self.shared.config.max_frame_len, &mut self.out)
        {
            tracing::error!(%error, "cannot encode a ping");
        }
    }
}
