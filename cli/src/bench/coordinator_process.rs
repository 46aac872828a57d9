//! The coordinator under test, when the benchmark starts its own: this same binary run as
//! `txmesh coordinator` in a child process, on free local ports and a temporary data
//! directory. Durability is as in production: the Raft log is fsynced before any answer.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

/// How long the child may take to open its Seata port.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_POLL: Duration = Duration::from_millis(50);
/// Lines of the child's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// A running child coordinator. Dropping it kills and reaps the child, then removes its
/// data directory.
#[derive(Debug)]
pub struct CoordinatorProcess {
    child: Child,
    seata_addr: SocketAddr,
    log_path: PathBuf,
    /// Declared last so that it is removed after the child is gone.
    _dir: TempDir,
}

impl CoordinatorProcess {
    /// Starts the child and waits until its Seata port accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("txmesh-bench-")
            .tempdir()
            .context("cannot create a temporary data directory")?;
        let [seata_addr, http_addr, raft_addr] = free_local_addrs()?;
        let log_path = dir.path().join("coordinator.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let mut command = Command::new(exe);
        command
            .args(["--log-level", "warn", "coordinator", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--seata-addr", &seata_addr.to_string()])
            .args(["--http-addr", &http_addr.to_string()])
            .args(["--raft-addr", &raft_addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // A private single-node coordinator: settings meant for a real one (peers, config
        // file, node id) must not leak in from this environment.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TXMESH_") {
                command.env_remove(name);
            }
        }
        // Its own process group: a terminal's Ctrl-C reaches only the benchmark, which then
        // stops the load first and the coordinator last.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .context("cannot start the coordinator process")?;
        let mut process = Self {
            child,
            seata_addr,
            log_path,
            _dir: dir,
        };
        process.wait_until_listening().await?;
        Ok(process)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the child serves Seata RPC.
    pub fn seata_addr(&self) -> SocketAddr {
        self.seata_addr
    }

    async fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("cannot watch the coordinator")?
            {
                bail!(
                    "the coordinator exited ({status}) before listening; its log ends with:\n{}",
                    self.log_tail()
                );
            }
            if tokio::net::TcpStream::connect(self.seata_addr)
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the coordinator did not listen on {} within {START_TIMEOUT:?}; its log ends with:\n{}",
                    self.seata_addr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        // Errors mean it is already gone; waiting reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Distinct free loopback addresses: all are bound at once (so no two are equal), then freed
/// for the child to take.
fn free_local_addrs<const N: usize>() -> anyhow::Result<[SocketAddr; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find a free local port")?;
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find a free local port")?;
    addrs
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected {N} addresses"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_addresses_are_distinct_loopback_ports() {
        let addrs: [SocketAddr; 3] = free_local_addrs().expect("free ports");
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() != 0));
        assert_ne!(addrs[0], addrs[1]);
        assert_ne!(addrs[1], addrs[2]);
        assert_ne!(addrs[0], addrs[2]);
    }
}
