//! Coordinator processes.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `txmesh` binary built next to the test binary (`cargo test --workspace` builds it
/// before running any test).
pub fn txmesh_binary() -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let binary = profile_dir.join(format!("txmesh{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: build it first (`cargo build -p txmesh`)",
        binary.display()
    );
    binary
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr").port()
}

/// A coordinator process with fixed loopback ports, so clients find it again after a restart.
/// Dropping it kills the process.
pub struct CoordinatorProcess {
    data_dir: PathBuf,
    node_id: u64,
    /// `--peers` of a multi-node group.
    peers: Option<String>,
    seata_port: u16,
    raft_port: u16,
    http_port: u16,
    child: Option<Child>,
}

/// How long a start may take before the test fails.
const START_BOUND: Duration = Duration::from_secs(20);

impl CoordinatorProcess {
    fn new(data_dir: PathBuf, node_id: u64) -> Self {
        Self {
            data_dir,
            node_id,
            peers: None,
            seata_port: free_port(),
            raft_port: free_port(),
            http_port: free_port(),
            child: None,
        }
    }

    /// Starts a single-node coordinator on `data_dir` and waits until it accepts connections.
    pub fn start(data_dir: &Path) -> Self {
        let mut process = Self::new(data_dir.to_path_buf(), 1);
        process.restart();
        process
    }

    /// Starts an `n`-node group, each node with its own directory under `root`.
    pub fn cluster(root: &Path, n: u64) -> Vec<Self> {
        let mut nodes: Vec<Self> = (1..=n)
            .map(|id| Self::new(root.join(format!("node-{id}")), id))
            .collect();
        let peers: Vec<String> = nodes
            .iter()
            .map(|p| format!("{}=127.0.0.1:{}", p.node_id, p.raft_port))
            .collect();
        for node in &mut nodes {
            node.peers = Some(peers.join(","));
            node.restart();
        }
        nodes
    }

    /// The Seata RPC address.
    pub fn seata_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.seata_port))
    }

    /// The admin HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// Kills the process with SIGKILL: no shutdown code runs, as in a power cut of the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the process on the same data directory and ports.
    pub fn restart(&mut self) {
        self.kill9();
        let child = Command::new(txmesh_binary())
            .args(["--log-level", "warn", "coordinator"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--seata-addr", &format!("127.0.0.1:{}", self.seata_port)])
            .args(["--raft-addr", &format!("127.0.0.1:{}", self.raft_port)])
            .args(["--http-addr", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--node-id", &self.node_id.to_string()])
            .args(
                self.peers
                    .iter()
                    .flat_map(|peers| ["--peers", peers.as_str()]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the coordinator starts");
        self.child = Some(child);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + START_BOUND;
        while TcpStream::connect(self.seata_addr()).is_err() {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the coordinator exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the coordinator did not listen within {START_BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
