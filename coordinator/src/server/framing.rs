//! A connection's decoder: Seata framing whose frame limit is small until the peer has
//! registered, with every partly received frame longer than the read buffer claimed from the
//! server's frame-buffer budget until it is complete. A frame refused by either limit is
//! refused on its 7-byte header, before its bytes are buffered.

use bytes::BytesMut;
use tokio_util::codec::Decoder;
use txmesh_seata::{FrameCodec, FrameError, RawFrame};

use super::limits::{FrameClaim, OverBudget, Refusal};

/// Frames up to this length fit in the read buffer every connection has anyway (tokio-util's
/// initial 8 KiB), so they are not counted against the budget: ordinary traffic never is.
const UNCOUNTED_FRAME_LEN: usize = 8 * 1024;

/// Why a connection stopped reading.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The framing is broken, a frame is too long, or the socket failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame does not fit in the frame-buffer budget.
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
}

impl From<std::io::Error> for ReadError {
    fn from(error: std::io::Error) -> Self {
        Self::Frame(FrameError::Io(error))
    }
}

impl ReadError {
    /// The limit or rule it broke; none for a failed socket, which is no refusal.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        match self {
            Self::OverBudget(_) => Some(Refusal::FrameBudget),
            Self::Frame(FrameError::TooLong { .. }) => Some(Refusal::FrameTooLong),
            Self::Frame(FrameError::Io(_)) => None,
            Self::Frame(_) => Some(Refusal::BadFrame),
        }
    }
}

/// The decoder of one connection.
pub(crate) struct BoundedFrames {
    codec: FrameCodec,
    registered_max_frame_len: usize,
    claim: FrameClaim,
}

impl BoundedFrames {
    /// Frames up to `unregistered_max_frame_len` until [`Self::registered`], then up to
    /// `max_frame_len`; partly received ones held in `claim`.
    pub(crate) fn new(
        unregistered_max_frame_len: usize,
        max_frame_len: usize,
        claim: FrameClaim,
    ) -> Self {
        Self {
            codec: FrameCodec::new(unregistered_max_frame_len.min(max_frame_len)),
            registered_max_frame_len: max_frame_len,
            claim,
        }
    }

    /// The peer has registered: it may send frames up to the full limit.
    pub(crate) fn registered(&mut self) {
        self.codec.set_max_frame_len(self.registered_max_frame_len);
    }
}

impl Decoder for BoundedFrames {
    type Item = RawFrame;
    type Error = ReadError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, ReadError> {
        let frame = self.codec.decode(src)?;
        match &frame {
            Some(_) => self.claim.release(),
            // The codec has checked the declared length against the frame limit already.
            None => match FrameCodec::declared_len(src) {
                Some(declared) if declared > UNCOUNTED_FRAME_LEN => self.claim.hold(declared)?,
                _ => {}
            },
        }
        Ok(frame)
    }
}
