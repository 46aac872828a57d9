//! Child processes of this same binary (`txmesh coordinator`, `txmesh sidecar`) for the bench
//! and the demo: started in their own process group with a private environment, logging to a
//! file, and watched until they listen.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a child may take to open its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_POLL: Duration = Duration::from_millis(50);
/// Lines of a child's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 20;
/// How long a probe of a child's HTTP port may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Starts `txmesh <args>`, appending its stderr to `log_path`.
pub fn spawn<I, S>(args: I, log_path: &Path) -> anyhow::Result<Child>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // A private process: settings meant for a real deployment (peers, config file, node id,
    // coordinators) must not leak in from this environment.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TXMESH_") {
            command.env_remove(name);
        }
    }
    // Its own process group: a terminal's Ctrl-C reaches only this program, which then stops
    // its own work first and the children last.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command.spawn().context("cannot start a child process")
}

/// Waits until `child` accepts connections on `addr`; fails, quoting its log, if it exits
/// first or takes too long. `what` names it in errors.
pub async fn wait_listening(
    child: &mut Child,
    addr: SocketAddr,
    log_path: &Path,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("cannot watch a child process")? {
            bail!(
                "{what} exited ({status}) before listening; its log ends with:\n{}",
                log_tail(log_path)
            );
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{what} did not listen on {addr} within {START_TIMEOUT:?}; its log ends with:\n{}",
                log_tail(log_path)
            );
        }
        tokio::time::sleep(START_POLL).await;
    }
}

/// Kills and reaps `child` (errors mean it is already gone; waiting reaps it either way).
pub fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn log_tail(log_path: &Path) -> String {
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Distinct free loopback addresses: all are bound at once (so no two are equal), then freed
/// for children to take.
pub fn free_local_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find a free local port")?;
    listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find a free local port")
}

/// `GET path` on a child's HTTP port over a plain HTTP/1.1 connection: the status code and
/// the body (probes and status views answer small bodies with a length).
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no status code in the HTTP response")?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn free_addresses_are_distinct_loopback_ports() {
        let addrs = free_local_addrs(9).expect("free ports");
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() != 0));
        assert_eq!(addrs.iter().collect::<HashSet<_>>().len(), 9);
    }
}
