//! Arbitrary bytes through the server's decode path: `FrameCodec` takes frames off the buffer
//! until it needs more input or refuses it, and each frame's body is decoded. Besides "no
//! panic", every frame that decodes must survive a round trip: re-encoding it and decoding
//! the result gives an equal `Frame`, and encoding that again gives the same bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use txmesh_seata::{DEFAULT_MAX_FRAME_LEN, Dialect, Frame, FrameCodec, RawFrame};

/// The frame limit the fuzzed codec uses: small, so length checks are reachable.
const MAX_FRAME_LEN: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut codec = FrameCodec::new(MAX_FRAME_LEN);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(raw)) = codec.decode(&mut buf) {
        check_round_trip(raw);
    }
});

fn check_round_trip(raw: RawFrame) {
    // Decode the body as a server does; remember which msg layout worked (spec P1) and use
    // it for the rest, as a server would for that peer.
    let (dialect, has_body) = match raw.message_any_msg_length(&Dialect::CURRENT) {
        Ok(Some((_, msg_length))) => (
            Dialect {
                branch_msg_length: msg_length,
                ..Dialect::CURRENT
            },
            true,
        ),
        Ok(None) => (Dialect::CURRENT, false),
        Err(_) => return,
    };
    let frame = match raw.clone().into_frame(&dialect) {
        Ok(frame) => frame,
        // A heartbeat with an unknown serializer or compressor byte: refused, fine.
        Err(_) if !has_body => return,
        Err(e) => panic!("the body decoded but into_frame failed: {e}\nraw: {raw:?}"),
    };

    let mut first = BytesMut::new();
    if let Err(e) = frame.encode(&dialect, DEFAULT_MAX_FRAME_LEN, &mut first) {
        panic!("a decoded frame does not re-encode: {e}\nframe: {frame:?}");
    }
    let again = match Frame::decode(&first, &dialect) {
        Ok(again) => again,
        Err(e) => panic!(
            "a re-encoded frame does not decode: {e}\nframe: {frame:?}\nbytes: {}",
            hex(&first)
        ),
    };
    assert_eq!(
        again,
        frame,
        "the round trip changed the frame\nbytes: {}",
        hex(&first)
    );

    let mut second = BytesMut::new();
    if let Err(e) = again.encode(&dialect, DEFAULT_MAX_FRAME_LEN, &mut second) {
        panic!("a round-tripped frame does not re-encode: {e}\nframe: {again:?}");
    }
    assert_eq!(
        hex(&first),
        hex(&second),
        "encoding the same frame twice gave different bytes"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
