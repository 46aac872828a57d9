//! Network partitions on loopback, without privileges: each node's Raft port sits behind a
//! TCP proxy in the test process, and the nodes know each other only by the proxies'
//! addresses. Cutting a node off closes every proxied connection to it or from it, and drops
//! new ones, until healed. A connection comes from the process that owns its client socket,
//! found through `/proc/net/tcp` and `/proc/<pid>/fd` (Linux).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The node cut off, and its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    node: u64,
    pid: u32,
}

/// One proxy per node, in front of its Raft port. Dropping it stops them all.
pub struct RaftProxies {
    addrs: BTreeMap<u64, SocketAddr>,
    cut: watch::Sender<Option<Cut>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RaftProxies {
    /// Proxies for `targets` (node id → the Raft address it listens on).
    pub async fn start(targets: &[(u64, SocketAddr)]) -> Self {
        let (cut, _) = watch::channel(None);
        let mut addrs = BTreeMap::new();
        let mut tasks = Vec::new();
        for &(node, target) in targets {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addrs.insert(node, listener.local_addr().expect("local addr"));
            tasks.push(tokio::spawn(serve(listener, node, target, cut.subscribe())));
        }
        Self { addrs, cut, tasks }
    }

    /// Where the other nodes reach node `node`.
    pub fn addr(&self, node: u64) -> SocketAddr {
        self.addrs[&node]
    }

    /// Cuts node `node`, running as process `pid`, off from the others.
    pub fn isolate(&self, node: u64, pid: u32) {
        self.cut.send_replace(Some(Cut { node, pid }));
    }

    /// Lets every node reach every other again.
    pub fn heal(&self) {
        self.cut.send_replace(None);
    }
}

impl Drop for RaftProxies {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Accepts connections for node `node` and relays them to `target` while not cut.
async fn serve(
    listener: TcpListener,
    node: u64,
    target: SocketAddr,
    cut: watch::Receiver<Option<Cut>>,
) {
    let port = listener.local_addr().map_or(0, |addr| addr.port());
    let mut relays = tokio::task::JoinSet::new();
    while let Ok((mut inbound, peer)) = listener.accept().await {
        let mut cut = cut.clone();
        let inode = client_socket_inode(peer, port);
        let severed = move |cut: &Option<Cut>| {
            cut.is_some_and(|cut| cut.node == node || inode.is_some_and(|i| owns(cut.pid, i)))
        };
        relays.spawn(async move {
            if severed(&cut.borrow_and_update()) {
                return;
            }
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.wait_for(severed) => {}
            }
        });
        // Reap relays that ended, so the set does not grow over a long test.
        while relays.try_join_next().is_some() {}
    }
}

/// The inode of the client socket connected from `peer` to local port `port`.
fn client_socket_inode(peer: SocketAddr, port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port_of = |field: &str| {
            let hex = field.rsplit(':').next()?;
            u16::from_str_radix(hex, 16).ok()
        };
        let matches =
            port_of(fields.get(1)?) == Some(peer.port()) && port_of(fields.get(2)?) == Some(port);
        matches.then(|| fields.get(9)?.parse().ok()).flatten()
    })
}

/// Whether process `pid` holds the socket with inode `inode`.
fn owns(pid: u32, inode: u64) -> bool {
    let socket = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == socket.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_traced_to_the_process_holding_its_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (_server, peer) = listener.accept().await.expect("accept");
        let inode = client_socket_inode(peer, port).expect("the client socket is listed");
        assert!(owns(std::process::id(), inode), "this process holds it");
        drop(client);
    }
}
