//! Batches (spec §4.6): MergedWarpMessage (59) carries several requests, MergeResultMessage
//! (60) all their answers in order, BatchResultMessage (121) some answers by id.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::{Body, BodyContext, Message};
use crate::error::BodyError;
use crate::wire::Reader;

/// MergedWarpMessage (59).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergedWarpMessage {
    /// The requests.
    pub msgs: Vec<Message>,
    /// The request id of each (clients ≥ 1.5.0; absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_ids: Option<Vec<i32>>,
}

impl Body for MergedWarpMessage {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        let mut inner = inner_reader(r)?;
        let msgs = read_messages(&mut inner, ctx)?;
        let msg_ids = match inner.remaining() {
            0 => None,
            _ => Some(read_ids(&mut inner, msgs.len())?),
        };
        inner.finish()?;
        Ok(Self { msgs, msg_ids })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        write_inner(dst, |dst| {
            write_messages(dst, &self.msgs, ctx)?;
            if let Some(ids) = &self.msg_ids {
                write_ids(dst, ids, self.msgs.len())?;
            }
            Ok(())
        })
    }
}

/// MergeResultMessage (60).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeResultMessage {
    /// The answers, in the order of the merged requests.
    pub msgs: Vec<Message>,
}

impl Body for MergeResultMessage {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        let mut inner = inner_reader(r)?;
        let msgs = read_messages(&mut inner, ctx)?;
        inner.finish()?;
        Ok(Self { msgs })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        write_inner(dst, |dst| write_messages(dst, &self.msgs, ctx))
    }
}

/// BatchResultMessage (121).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResultMessage {
    /// Some of the answers.
    pub result_messages: Vec<Message>,
    /// The request id each answer belongs to.
    pub msg_ids: Vec<i32>,
}

impl Body for BatchResultMessage {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        let mut inner = inner_reader(r)?;
        let result_messages = read_messages(&mut inner, ctx)?;
        let msg_ids = read_ids(&mut inner, result_messages.len())?;
        inner.finish()?;
        Ok(Self {
            result_messages,
            msg_ids,
        })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        write_inner(dst, |dst| {
            write_messages(dst, &self.result_messages, ctx)?;
            write_ids(dst, &self.msg_ids, self.result_messages.len())
        })
    }
}

/// The `innerLength`-prefixed area, which must end exactly where the body does.
fn inner_reader<'a>(r: &mut Reader<'a>) -> Result<Reader<'a>, BodyError> {
    let len = r.len_i32("innerLength")?;
    Ok(Reader::new(r.take(len, "batch")?))
}

fn read_messages(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Vec<Message>, BodyError> {
    let count = r.len_i16("batch count")?;
    // Each message takes at least its 2-byte type code: never reserve more than that allows.
    let mut msgs = Vec::with_capacity(count.min(r.remaining() / 2));
    for _ in 0..count {
        let code = r.i16("type code")?;
        if matches!(code, 59 | 60 | 121) {
            return Err(BodyError::NestedBatch(code));
        }
        msgs.push(Message::read_payload(code, r, ctx)?);
    }
    Ok(msgs)
}

fn read_ids(r: &mut Reader<'_>, count: usize) -> Result<Vec<i32>, BodyError> {
    let needed = count * 4;
    if r.remaining() != needed {
        return Err(BodyError::BatchIdsMismatch {
            messages: count,
            ids: r.remaining() / 4,
        });
    }
    (0..count).map(|_| r.i32("msgId")).collect()
}

fn write_inner(
    dst: &mut BytesMut,
    fill: impl FnOnce(&mut BytesMut) -> Result<(), BodyError>,
) -> Result<(), BodyError> {
    let at = dst.len();
    dst.put_i32(0);
    fill(dst)?;
    let inner =
        i32::try_from(dst.len() - at - 4).map_err(|_| BodyError::BatchTooLarge(dst.len()))?;
    dst[at..at + 4].copy_from_slice(&inner.to_be_bytes());
    Ok(())
}

fn write_messages(
    dst: &mut BytesMut,
    msgs: &[Message],
    ctx: &BodyContext,
) -> Result<(), BodyError> {
    let count = i16::try_from(msgs.len()).map_err(|_| BodyError::BatchTooLarge(msgs.len()))?;
    dst.put_i16(count);
    for message in msgs {
        if message.is_batch() {
            return Err(BodyError::NestedBatch(message.type_code()));
        }
        message.encode(dst, ctx)?;
    }
    Ok(())
}

fn write_ids(dst: &mut BytesMut, ids: &[i32], messages: usize) -> Result<(), BodyError> {
    if ids.len() != messages {
        return Err(BodyError::BatchIdsMismatch {
            messages,
            ids: ids.len(),
        });
    }
    ids.iter().for_each(|id| dst.put_i32(*id));
    Ok(())
}
