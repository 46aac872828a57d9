//! Codec throughput: encoding and decoding the frames a coordinator sees most.
//!
//! - `branch_register/*` — one `BranchRegisterRequest` frame with the realistic values of
//!   seata-protocol.md §7.7 (AT branch, one row lock).
//! - `merged_warp_16/*` — a `MergedWarpMessage` carrying 16 such requests with their msgIds,
//!   as a batching client sends them.
//!
//! `decode` is the whole path a server takes per frame: [`FrameCodec`] (a
//! `tokio_util::codec::Decoder`) takes a [`RawFrame`] off a `BytesMut`, then the body is
//! decoded with [`RawFrame::message`]. `encode` is [`Frame::encode`] into a reused buffer.
//!
//! Run with `cargo bench -p txmesh-seata --bench codec`; results live in docs/benchmarks.md.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::codec::Decoder;
use txmesh_seata::message::{BranchRegisterRequest, MergedWarpMessage};
use txmesh_seata::{
    BranchType, DEFAULT_MAX_FRAME_LEN, Dialect, Frame, FrameCodec, Message, RawFrame,
};

/// How many requests the batch benchmark merges into one frame.
const BATCH: usize = 16;

/// The §7.7 request: AT branch on `account_tbl:1`, no application data.
fn branch_register() -> Message {
    Message::BranchRegisterRequest(BranchRegisterRequest {
        xid: "192.168.0.2:8091:2000042948".into(),
        branch_type: BranchType::At,
        resource_id: "jdbc:mysql://127.0.0.1:3306/db".into(),
        lock_key: "account_tbl:1".into(),
        application_data: String::new(),
    })
}

fn branch_register_frame() -> Frame {
    Frame::request(6, branch_register())
}

fn merged_frame() -> Frame {
    let msgs = (0..BATCH).map(|_| branch_register()).collect();
    let msg_ids = (0..BATCH as i32).map(|i| 100 + i).collect();
    Frame::oneway(
        22,
        Message::MergedWarpMessage(MergedWarpMessage {
            msgs,
            msg_ids: Some(msg_ids),
        }),
    )
}

fn wire_bytes(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    frame
        .encode(&Dialect::CURRENT, DEFAULT_MAX_FRAME_LEN, &mut buf)
        .expect("the benchmark frame encodes");
    buf.to_vec()
}

/// Decodes one frame the way a connection task does: codec → raw frame → message.
fn decode_one(codec: &mut FrameCodec, buf: &mut BytesMut) -> Option<Message> {
    let raw: RawFrame = codec
        .decode(buf)
        .expect("the benchmark frame is valid")
        .expect("the whole frame is buffered");
    raw.message(&Dialect::CURRENT)
        .expect("the benchmark body is valid")
}

fn bench_frame(c: &mut Criterion, group_name: &str, frame: &Frame, elements: u64) {
    let wire = wire_bytes(frame);

    // Sanity check outside the timed loop: the decode path really yields the message.
    let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME_LEN);
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(
        decode_one(&mut codec, &mut buf).as_ref(),
        frame.body.as_ref()
    );
    assert!(buf.is_empty());

    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(elements));

    let mut out = BytesMut::with_capacity(wire.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(frame)
                .encode(&Dialect::CURRENT, DEFAULT_MAX_FRAME_LEN, &mut out)
                .expect("the benchmark frame encodes");
            black_box(out.len())
        })
    });

    let mut input = BytesMut::with_capacity(wire.len());
    group.bench_function("decode", |b| {
        b.iter(|| {
            input.clear();
            input.extend_from_slice(black_box(&wire));
            black_box(decode_one(&mut codec, &mut input))
        })
    });

    group.finish();
}

fn codec_benches(c: &mut Criterion) {
    bench_frame(c, "branch_register", &branch_register_frame(), 1);
    bench_frame(c, "merged_warp_16", &merged_frame(), BATCH as u64);
}

criterion_group!(benches, codec_benches);
criterion_main!(benches);
