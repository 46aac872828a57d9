//! A coordinator group on a network of its own, made of Linux network namespaces (which needs
//! root, as CI has): each node runs in its namespace with two links, one to the group's
//! bridge, which carries the Raft traffic and can be cut, and one to the test, which carries
//! clients and the admin API and stays up. Cutting a node's group link is a real partition:
//! its packets are dropped by the kernel, with no proxy in between; cutting only the inbound
//! half leaves it sending into the void. Everything made is removed when dropped.
//!
//! The addresses are the group's own, inside its namespaces: 10.77.<lab>.<node> on the
//! bridge, and a 10.78.<lab>.<4 × node>/30 link per node to the test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{http_get, txmesh_binary};
use crate::views::AdminViews;

const SEATA_PORT: u16 = 8091;
const HTTP_PORT: u16 = 7091;
const RAFT_PORT: u16 = 9091;
/// How long a start may take.
const START_BOUND: Duration = Duration::from_secs(20);

/// Runs `ip` with `args`; panics with its error output when it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        output.status.success(),
        "ip {}: {} (network namespaces need root, as CI has)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Runs `tc` with `args`; whether it succeeded.
fn tc(args: &[&str]) -> bool {
    Command::new("tc")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// One node's namespace and process.
struct Host {
    id: u64,
    namespace: String,
    /// The root-namespace end of its link to the bridge.
    group_link: String,
    child: Option<Child>,
}

/// A group of coordinators in namespaces of their own.
pub struct NetworkLab {
    lab: u8,
    bridge: String,
    hosts: Vec<Host>,
}

impl NetworkLab {
    /// Makes the namespaces, links and bridge for `nodes` nodes, and starts a coordinator in
    /// each with its data under `root`. Panics, saying why, where namespaces cannot be made.
    pub fn start(root: &Path, nodes: u64) -> Self {
        // Distinct per test process, so that runs side by side do not collide.
        let lab = (std::process::id() % 200) as u8 + 20;
        let bridge = format!("txb{lab}");
        let mut made = Self {
            lab,
            bridge: bridge.clone(),
            hosts: Vec::new(),
        };
        made.remove_leftovers(nodes);
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["link", "set", &bridge, "up"]);
        for id in 1..=nodes {
            made.add_host(id);
        }
        let peers: Vec<String> = (1..=nodes)
            .map(|id| format!("{id}={}:{RAFT_PORT}", made.group_ip(id)))
            .collect();
        let peers = peers.join(",");
        for index in 0..made.hosts.len() {
            made.launch(index, root, &peers);
        }
        for id in 1..=nodes {
            made.wait_started(id);
        }
        made
    }

    /// Removes what a run of the same lab number that was killed before it could clean up
    /// may have left.
    fn remove_leftovers(&self, nodes: u64) {
        let quietly = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        };
        for id in 1..=nodes {
            quietly(&["netns", "delete", &format!("txm{}n{id}", self.lab)]);
            quietly(&["link", "delete", &format!("txt{}n{id}", self.lab)]);
        }
        quietly(&["link", "delete", &self.bridge]);
    }

    fn group_ip(&self, id: u64) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.lab, id as u8)
    }

    /// The address the test reaches node `id` at.
    pub fn test_ip(&self, id: u64) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, self.lab, 4 * id as u8 + 2)
    }

    fn add_host(&mut self, id: u64) {
        let namespace = format!("txm{}n{id}", self.lab);
        let group_link = format!("txg{}n{id}", self.lab);
        let test_link = format!("txt{}n{id}", self.lab);
        ip(&["netns", "add", &namespace]);
        self.hosts.push(Host {
            id,
            namespace: namespace.clone(),
            group_link: group_link.clone(),
            child: None,
        });
        let in_ns = |args: &[&str]| {
            let mut all = vec!["-n", namespace.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        in_ns(&["link", "set", "lo", "up"]);
        // The group link: the node's eth0 on the bridge.
        ip(&[
            "link",
            "add",
            &group_link,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &namespace,
        ]);
        ip(&["link", "set", &group_link, "master", &self.bridge]);
        ip(&["link", "set", &group_link, "up"]);
        let group_ip = format!("{}/24", self.group_ip(id));
        in_ns(&["addr", "add", &group_ip, "dev", "eth0"]);
        in_ns(&["link", "set", "eth0", "up"]);
        // The test link: a /30 between the root namespace and the node's eth1.
        ip(&[
            "link", "add", &test_link, "type", "veth", "peer", "name", "eth1", "netns", &namespace,
        ]);
        let test_ip = self.test_ip(id);
        let octets = test_ip.octets();
        let near = Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3] - 1);
        ip(&["addr", "add", &format!("{near}/30"), "dev", &test_link]);
        ip(&["link", "set", &test_link, "up"]);
        in_ns(&["addr", "add", &format!("{test_ip}/30"), "dev", "eth1"]);
        in_ns(&["link", "set", "eth1", "up"]);
    }

    fn launch(&mut self, index: usize, root: &Path, peers: &str) {
        let id = self.hosts[index].id;
        let data_dir = root.join(format!("node-{id}"));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.hosts[index].namespace])
            .arg(txmesh_binary())
            .args(["--log-level", "warn", "coordinator"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--node-id", &id.to_string()])
            .args(["--peers", peers])
            .args(["--seata-addr", &format!("0.0.0.0:{SEATA_PORT}")])
            .args(["--http-addr", &format!("0.0.0.0:{HTTP_PORT}")])
            .args(["--raft-addr", &format!("{}:{RAFT_PORT}", self.group_ip(id))])
            .args(["--advertise-host", &self.test_ip(id).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the coordinator starts");
        self.hosts[index].child = Some(child);
    }

    fn wait_started(&self, id: u64) {
        let deadline = Instant::now() + START_BOUND;
        while http_get(self.http_addr(id), "/api/v1/cluster").is_none_or(|(s, _)| s != 200) {
            assert!(
                Instant::now() < deadline,
                "node {id} did not start within {START_BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Node `id`'s Seata address, as the test reaches it.
    pub fn seata_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.test_ip(id)), SEATA_PORT)
    }

    /// Node `id`'s admin address, as the test reaches it.
    pub fn http_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.test_ip(id)), HTTP_PORT)
    }

    /// The nodes' admin views.
    pub fn views(&self) -> AdminViews {
        let nodes = self
            .hosts
            .iter()
            .map(|host| (host.id, self.http_addr(host.id)));
        AdminViews::new(nodes.collect())
    }

    fn host(&self, id: u64) -> &Host {
        self.hosts
            .iter()
            .find(|host| host.id == id)
            .expect("a node of the lab")
    }

    /// Cuts node `id`'s link to the group, both ways.
    pub fn isolate(&self, id: u64) {
        ip(&["link", "set", &self.host(id).group_link, "down"]);
    }

    /// Drops every packet to node `id` from the group, and none from it: it sends, but hears
    /// nothing back.
    pub fn deafen(&self, id: u64) {
        let link = &self.host(id).group_link;
        // A queue that holds nothing drops everything sent its way; unlike netem's loss it
        // needs no kernel module beyond the built-in FIFO.
        assert!(
            tc(&["qdisc", "add", "dev", link, "root", "pfifo", "limit", "0"]),
            "tc could not add a dropping queue on {link}"
        );
    }

    /// Restores every node's link to the group.
    pub fn heal(&self) {
        for host in &self.hosts {
            tc(&["qdisc", "del", "dev", &host.group_link, "root"]);
            ip(&["link", "set", &host.group_link, "up"]);
        }
    }
}

impl Drop for NetworkLab {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut child) = host.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for host in &self.hosts {
            // Deleting the namespace removes its ends of the links, and so the links.
            let _ = Command::new("ip")
                .args(["netns", "delete", &host.namespace])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .status();
    }
}
