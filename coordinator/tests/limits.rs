//! The Seata server's memory stays bounded under a flood, as Kafka's and NATS's do: peers that
//! never register and trickle oversized frames, a thousand idle connections, garbage senders
//! and connections past the limit, all while a normal client keeps committing. Each limit
//! refuses exactly what it should (read from `/metrics`), the normal client sees no error, and
//! the whole test process (coordinator and every flooding client) stays under [`RSS_BOUND`].

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{BOUND, begin, bounded, commit, http, loopback_config, sample};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use txmesh_coordinator::config::ServerTuning;
use txmesh_coordinator::{Coordinator, CoordinatorConfig};
use txmesh_seata::GlobalStatus;
use txmesh_seata::client::{ClientConfig, NoResources, SeataClient};

/// Peak resident memory of this test process allowed (the flood took a coordinator
/// from 53 MB to 1.3 GB).
const RSS_BOUND_MB: u64 = 200;
const MAX_CONNECTIONS: usize = 1_250;
const IDLE: usize = 1_000;
/// Tricklers declaring a frame just under the 8 MiB limit: refused on their header.
const HUGE_TRICKLERS: usize = 100;
/// Tricklers declaring 60 KiB, under the 64 KiB limit before registration: each claims it
/// from the budget until the budget is spent, then the rest are refused.
const BUDGET_TRICKLERS: usize = 100;
const BUDGET_FRAME: usize = 60 * 1024;
const BUDGET: usize = 4 * 1024 * 1024;
const GARBAGE: usize = 50;
/// Connections opened past the ones above, to reach the connection limit.
const EXTRA: usize = 300;

fn config(dir: &TempDir) -> CoordinatorConfig {
    CoordinatorConfig {
        server: ServerTuning {
            max_connections: MAX_CONNECTIONS,
            max_buffered_frame_bytes: BUDGET,
            // The idle connections stay for the whole test.
            read_idle_timeout_ms: 120_000,
            ..ServerTuning::default()
        },
        ..loopback_config(dir)
    }
}

/// The coordinator's connection metrics, scraped.
struct Scrape(String);

impl Scrape {
    async fn of(coordinator: &Coordinator) -> Self {
        Self(
            http(coordinator.http_addr(), "GET", "/metrics", None)
                .await
                .body,
        )
    }

    fn value(&self, name: &str) -> u64 {
        let name = format!("txmesh_coordinator_{name}");
        sample(&self.0, &name).unwrap_or_else(|| panic!("no {name}")) as u64
    }

    fn open(&self) -> u64 {
        self.value("connections_open")
    }

    fn buffered(&self) -> u64 {
        self.value("frame_buffer_bytes")
    }

    fn refused(&self, reason: &str) -> u64 {
        self.value(&format!("connections_refused_total{{reason=\"{reason}\"}}"))
    }
}

/// Scrapes until `done` holds for the metrics; on a timeout, fails with the last scrape's
/// connection metrics.
async fn until(coordinator: &Coordinator, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = String::new();
    let waited = tokio::time::timeout(BOUND, async {
        loop {
            let scrape = Scrape::of(coordinator).await;
            if done(&scrape) {
                return scrape;
            }
            last = scrape.0;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| {
        let lines: Vec<&str> = last
            .lines()
            .filter(|line| line.contains("connections") || line.contains("frame_buffer"))
            .collect();
        panic!("never: {what}\n{}", lines.join("\n"))
    })
}

/// A kilobyte figure from `/proc/self/status` (`VmRSS`, `VmHWM`), in MB.
fn status_mb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field}"));
    kb / 1024
}

/// The soft limit on open files: this process holds both ends of every connection.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    limits
        .lines()
        .find_map(|line| {
            line.strip_prefix("Max open files")?
                .split_whitespace()
                .next()
        })
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(u64::MAX)
}

/// A frame header declaring `len` bytes: magic, version 1, full length, head length 16,
/// a request, SEATA codec, no compression, id 1.
fn header(len: usize) -> Vec<u8> {
    let mut head = vec![0xda, 0xda, 1];
    head.extend_from_slice(&(len as u32).to_be_bytes());
    head.extend_from_slice(&16u16.to_be_bytes());
    head.extend_from_slice(&[0, 1, 0]);
    head.extend_from_slice(&1i32.to_be_bytes());
    head
}

/// Waits until the server closes `stream` (EOF or a reset).
async fn closed_by_server(mut stream: TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match bounded(stream.read(&mut buf)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    bounded(TcpStream::connect(addr)).await.expect("connects")
}

/// A TM that begins and commits until told to stop; how many it committed. Any failure
/// panics the task.
fn normal_client(
    tm: SeataClient,
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let xid = begin(&tm, 60_000).await;
            assert_eq!(commit(&tm, &xid).await, GlobalStatus::Committed);
            committed.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Sends the header of a frame of `declared` bytes and all of it but its last kilobyte (up to
/// 56 KiB), then a byte every 50 ms until `stop` or the server closes the connection; never
/// completes the frame.
fn trickle(mut stream: TcpStream, declared: usize, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut start = header(declared);
        start.resize(declared.saturating_sub(1024).min(56 * 1024), 0);
        let mut sent = start.len();
        if stream.write_all(&start).await.is_err() {
            return;
        }
        while !stop.load(Ordering::Relaxed) && sent + 1 < declared {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stream.write_all(&[0]).await.is_err() {
                return;
            }
            sent += 1;
        }
    })
}

/// Pseudo-random bytes that are no Seata frame: a bad magic, or version 0.
fn garbage(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    match seed % 2 {
        0 => bytes[0] = 0x47,
        _ => bytes[..3].copy_from_slice(&[0xda, 0xda, 0]),
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_within_bounds_while_a_normal_client_commits() {
    let sockets_needed = 2 * (IDLE + HUGE_TRICKLERS + BUDGET_TRICKLERS + GARBAGE + EXTRA) + 512;
    let limit = open_files_limit();
    assert!(
        limit >= sockets_needed as u64,
        "this test holds both ends of {sockets_needed} sockets; raise `ulimit -n` (now {limit})"
    );
    let dir = TempDir::new().expect("temp dir");
    let coordinator = bounded(Coordinator::start(config(&dir)))
        .await
        .expect("starts");
    assert!(coordinator.wait_until_leading(BOUND).await, "leads");
    let addr = coordinator.seata_addr();
    let rss_before = status_mb("VmRSS");

    let tm_config = ClientConfig {
        application_id: "shop".into(),
        ..ClientConfig::default()
    };
    let tm = SeataClient::connect(&addr.to_string(), tm_config, Arc::new(NoResources))
        .await
        .expect("connects");
    tm.register_tm().await.expect("registers");
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let client = normal_client(tm, stop.clone(), committed.clone());
    let normal = until(&coordinator, "the client's connection", |m| m.open() >= 1).await;
    let normal_open = normal.open();

    let mut idle = Vec::with_capacity(IDLE + EXTRA);
    for _ in 0..IDLE {
        idle.push(connect(addr).await);
    }

    // Unregistered peers declaring just under 8 MiB are refused on their 7-byte header.
    for _ in 0..HUGE_TRICKLERS {
        let stream = connect(addr).await;
        trickle(stream, 8 * 1024 * 1024 - 1, stop.clone());
    }
    // Unregistered peers declaring 60 KiB each claim it while they trickle; the budget holds
    // this many, and the rest are refused.
    let fit = BUDGET / BUDGET_FRAME;
    let mut tricklers = Vec::new();
    for _ in 0..BUDGET_TRICKLERS {
        let stream = connect(addr).await;
        tricklers.push(trickle(stream, BUDGET_FRAME, stop.clone()));
    }
    for seed in 0..GARBAGE as u64 {
        let mut stream = connect(addr).await;
        let _ = stream.write_all(&garbage(seed)).await;
        closed_by_server(stream).await;
    }
    let flooded = until(&coordinator, "the flood is sorted", |m| {
        m.refused("frame_too_long") == HUGE_TRICKLERS as u64
            && m.refused("frame_budget") == (BUDGET_TRICKLERS - fit) as u64
            && m.refused("bad_frame") == GARBAGE as u64
            && m.open() == normal_open + (IDLE + fit) as u64
    })
    .await;
    assert_eq!(
        flooded.buffered(),
        (fit * BUDGET_FRAME) as u64,
        "the claims of the tricklers let in"
    );
    assert!(flooded.buffered() <= BUDGET as u64);

    // Past max-connections, connections are closed as soon as they are accepted.
    let room = MAX_CONNECTIONS - flooded.open() as usize;
    for _ in 0..EXTRA {
        idle.push(connect(addr).await);
    }
    let full = until(&coordinator, "the connection limit refuses the rest", |m| {
        m.refused("max_connections") == (EXTRA - room) as u64
    })
    .await;
    assert_eq!(full.open(), MAX_CONNECTIONS as u64);
    let rss_flooded = status_mb("VmRSS");

    // The normal client went on committing through all of it.
    let before = committed.load(Ordering::Relaxed);
    bounded(async {
        while committed.load(Ordering::Relaxed) < before + 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    bounded(client)
        .await
        .expect("the normal client saw no error");
    for trickler in tricklers {
        bounded(trickler).await.expect("trickled");
    }
    drop(idle);
    // The normal client's task has dropped its client too.
    let after = until(&coordinator, "every connection is gone", |m| {
        m.open() == 0 && m.buffered() == 0
    })
    .await;
    assert_eq!(
        after.buffered(),
        0,
        "closed connections give their claims back"
    );

    let peak = status_mb("VmHWM");
    eprintln!(
        "RSS: {rss_before} MB before the flood, {rss_flooded} MB with {} connections open and {} \
         bytes of frames claimed, peak {peak} MB; {} transactions committed",
        full.open(),
        flooded.buffered(),
        committed.load(Ordering::Relaxed),
    );
    assert!(
        peak < RSS_BOUND_MB,
        "peak RSS {peak} MB is over {RSS_BOUND_MB} MB"
    );
    coordinator.stop().await;
}
