//! Coordinator and sidecar processes.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
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

/// A loopback port that was free a moment ago and that no earlier call in this test process
/// handed out. The kernel may give a port it just freed again (about once in 450 groups of
/// nine), and a coordinator whose Seata port is another's Raft port looks started while it
/// has already exited.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        if handed_out.insert(port) {
            return port;
        }
    }
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
    /// `--config` file, when started with tuning.
    config: Option<PathBuf>,
    /// `--admin-token-file`, for membership changes.
    admin_token: Option<PathBuf>,
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
            config: None,
            admin_token: None,
            child: None,
        }
    }

    /// A member of a group, not started yet: node `node_id` on `data_dir` with its own free
    /// ports; [`CoordinatorProcess::set_peers`] and [`CoordinatorProcess::restart`] next.
    pub fn member(data_dir: &Path, node_id: u64) -> Self {
        Self::new(data_dir.to_path_buf(), node_id)
    }

    /// `--peers` from the next start on.
    pub fn set_peers(&mut self, peers: &str) {
        self.peers = Some(peers.to_owned());
    }

    /// `--admin-token-file` from the next start on.
    pub fn set_admin_token_file(&mut self, path: &Path) {
        self.admin_token = Some(path.to_path_buf());
    }

    /// The Raft node id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The Raft address it listens on.
    pub fn raft_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.raft_port))
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the process with SIGTERM (a graceful stop) and waits for it to exit.
    pub fn terminate(&mut self) {
        terminate(&mut self.child);
    }

    /// Whether the process was started and has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Like [`CoordinatorProcess::start`], with `toml` as its `--config` file.
    pub fn start_with_config(data_dir: &Path, toml: &str) -> Self {
        let mut process = Self::new(data_dir.to_path_buf(), 1);
        std::fs::create_dir_all(data_dir).expect("create the data directory");
        let config = data_dir.join("coordinator.toml");
        std::fs::write(&config, toml).expect("write the config file");
        process.config = Some(config);
        process.restart();
        process
    }

    /// Restarts the process on the same data directory but another Seata port, as a
    /// coordinator rescheduled elsewhere would come back.
    pub fn restart_on_new_port(&mut self) {
        self.kill9();
        self.seata_port = free_port();
        self.restart();
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
                self.config
                    .iter()
                    .flat_map(|c| [OsStr::new("--config"), c.as_os_str()]),
            )
            .args(
                self.admin_token
                    .iter()
                    .flat_map(|t| [OsStr::new("--admin-token-file"), t.as_os_str()]),
            )
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
        self.wait_until_started();
    }

    /// Waits until this process answers on its admin port with its own node id, and accepts
    /// Seata connections. The ports are bound before the node starts, so a bare connect could
    /// succeed on a process about to fail its start.
    fn wait_until_started(&mut self) {
        let deadline = Instant::now() + START_BOUND;
        while !(self.answers_as_itself() && TcpStream::connect(self.seata_addr()).is_ok()) {
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

    /// Whether the admin API on this process's port reports this node's id.
    fn answers_as_itself(&self) -> bool {
        http_get(self.http_addr(), "/api/v1/cluster")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .is_some_and(|view| view["nodeId"] == self.node_id)
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How a sidecar finds its coordinators.
#[derive(Debug, Clone)]
pub enum Coordinators {
    /// `--coordinators`.
    Static(Vec<SocketAddr>),
    /// `--coordinators-file`, reread every 100 ms.
    File(PathBuf),
    /// `--coordinators-metadata`: coordinators' HTTP addresses, their cluster view read
    /// every 100 ms.
    Metadata(Vec<SocketAddr>),
}

/// A bare HTTP/1.0 GET: status code and body, `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path, None, None)
}

/// A bare HTTP/1.0 request, with a bearer token and a JSON body if given: status code and
/// body, `None` when nothing answers.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Option<(u16, String)> {
    let request = HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        authorization: token.map(|token| format!("Bearer {token}")),
        body: json.map(|json| ("application/json", json.to_owned())),
        timeout: Duration::from_secs(15),
    };
    request.send(addr).ok()
}

/// One HTTP/1.0 request, its answer read to the end.
pub struct HttpRequest {
    /// GET, POST, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The whole `Authorization` header value.
    pub authorization: Option<String>,
    /// Content type and body.
    pub body: Option<(&'static str, String)>,
    /// For the connect and for each read.
    pub timeout: Duration,
}

impl HttpRequest {
    /// Sends it to `addr`: status code and body.
    pub fn send(&self, addr: SocketAddr) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        let mut head = format!("{} {} HTTP/1.0\r\nHost: {addr}\r\n", self.method, self.path);
        if let Some(authorization) = &self.authorization {
            head.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        let body = match &self.body {
            Some((content_type, body)) => {
                head.push_str(&format!("Content-Type: {content_type}\r\n"));
                body.as_str()
            }
            None => "",
        };
        write!(stream, "{head}Content-Length: {}\r\n\r\n{body}", body.len())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let malformed = || std::io::Error::other(format!("malformed HTTP answer {response:?}"));
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(malformed)?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .ok_or_else(malformed)?;
        Ok((status, body))
    }
}

/// A sidecar process with fixed loopback ports, so its application finds it again after a
/// restart. Dropping it kills the process.
pub struct SidecarProcess {
    data_dir: PathBuf,
    application_id: String,
    coordinators: Coordinators,
    batch: bool,
    grpc_port: u16,
    http_port: u16,
    child: Option<Child>,
}

impl SidecarProcess {
    /// Starts a sidecar for `application_id` on `data_dir` (its fence) and waits until it
    /// serves HTTP. `batch` switches merged batching upstream.
    pub fn start(
        data_dir: &Path,
        application_id: &str,
        coordinators: Coordinators,
        batch: bool,
    ) -> Self {
        let mut process = Self {
            data_dir: data_dir.to_path_buf(),
            application_id: application_id.to_owned(),
            coordinators,
            batch,
            grpc_port: free_port(),
            http_port: free_port(),
            child: None,
        };
        process.restart();
        process
    }

    /// The gRPC endpoint for applications.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with SIGTERM (a graceful stop) and waits for it to exit.
    pub fn terminate(&mut self) {
        terminate(&mut self.child);
    }

    /// (Re)starts the process on the same data directory and ports.
    pub fn restart(&mut self) {
        self.kill9();
        let mut command = Command::new(txmesh_binary());
        command
            .args(["--log-level", "warn", "sidecar"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--grpc-addr", &format!("127.0.0.1:{}", self.grpc_port)])
            .args(["--http-addr", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--application-id", &self.application_id])
            .args(["--phase-two-timeout", "2s", "--shutdown-grace", "300ms"])
            .args(["--discovery-interval", "100ms"]);
        match &self.coordinators {
            Coordinators::Static(addrs) => {
                let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                command.args(["--coordinators", &list.join(",")]);
            }
            Coordinators::File(path) => {
                command.arg("--coordinators-file").arg(path);
            }
            Coordinators::Metadata(addrs) => {
                let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                command.args(["--coordinators-metadata", &list.join(",")]);
            }
        }
        if !self.batch {
            command.arg("--no-batch");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the sidecar starts");
        self.child = Some(child);
        let deadline = Instant::now() + START_BOUND;
        while self.get("/healthz").is_none() {
            self.assert_running(deadline, "serve HTTP");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the sidecar is registered with a coordinator for every resource its
    /// application serves (`/readyz`).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_BOUND;
        while self.get("/readyz").is_none_or(|(status, _)| status != 200) {
            self.assert_running(deadline, "become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.get("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    fn assert_running(&mut self, deadline: Instant, what: &str) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("the sidecar exited before it could {what}: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar did not {what} within {START_BOUND:?}"
        );
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(SocketAddr::from(([127, 0, 0, 1], self.http_port)), path)
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Stops `child` with SIGTERM (SIGKILL if that cannot be sent) and reaps it.
fn terminate(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !signalled {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}
