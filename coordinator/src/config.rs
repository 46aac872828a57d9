//! The coordinator's configuration: addresses from flags, tuning from an optional TOML file.
//! Defaults are Seata's, except where its defaults are known pain points (noted per field).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::check_host_port;

/// Everything `run` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CoordinatorConfig {
    /// This node's id in the Raft group.
    pub node_id: u64,
    /// Where the Raft log, vote and snapshots live.
    pub data_dir: PathBuf,
    /// Seata RPC listen address.
    pub seata_addr: SocketAddr,
    /// Raft peer listen address.
    pub raft_addr: SocketAddr,
    /// Admin HTTP listen address.
    pub http_addr: SocketAddr,
    /// Host written into XIDs; clients route by it. Defaults to the Seata listen IP, or
    /// 127.0.0.1 when that is unspecified.
    pub advertise_host: Option<String>,
    /// Bearer token for mutating admin calls; without one they are refused.
    pub admin_token: Option<String>,
    /// The account Seata 2.x clients log in with before reading the cluster metadata.
    pub console: ConsoleAccount,
    /// Seata protocol tuning.
    pub server: ServerTuning,
    /// Phase-two and recovery tuning.
    pub recovery: RecoveryTuning,
    /// AT row-lock tuning.
    pub locks: LockTuning,
    /// Raft tuning.
    pub raft: RaftTuning,
    /// The data volume.
    pub storage: StorageTuning,
    /// The voters of a new group (this node included), by id. Empty: a single-voter group of
    /// this node. The lowest id initializes an empty group; the others wait to be contacted.
    pub peers: Vec<Peer>,
}

/// One member of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its node id.
    pub id: u64,
    /// Its Raft address, `host:port`; a DNS name is resolved again on every reconnect.
    pub addr: String,
}

impl Peer {
    /// Parses `id=host:port`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (id, addr) = text
            .split_once('=')
            .ok_or_else(|| format!("peer {text:?} is not id=host:port"))?;
        let id = id
            .trim()
            .parse()
            .ok()
            .filter(|&id| id != 0)
            .ok_or_else(|| format!("peer {text:?} has no node id (a number from 1)"))?;
        let addr = addr.trim();
        check_host_port(addr).map_err(|error| format!("peer {text:?}: {error}"))?;
        Ok(Self {
            id,
            addr: addr.to_owned(),
        })
    }
}

/// The console account of Seata's `POST /api/v1/auth/login`. Defaults are Seata's own
/// (`seata`/`seata`); what the login unlocks is read-only (see the admin API docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConsoleAccount {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl Default for ConsoleAccount {
    fn default() -> Self {
        Self {
            username: "seata".into(),
            password: "seata".into(),
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            data_dir: PathBuf::from("data"),
            seata_addr: SocketAddr::from(([0, 0, 0, 0], 8091)),
            raft_addr: SocketAddr::from(([0, 0, 0, 0], 9091)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 7091)),
            advertise_host: None,
            admin_token: None,
            console: ConsoleAccount::default(),
            server: ServerTuning::default(),
            recovery: RecoveryTuning::default(),
            locks: LockTuning::default(),
            raft: RaftTuning::default(),
            storage: StorageTuning::default(),
            peers: Vec::new(),
        }
    }
}

impl CoordinatorConfig {
    /// Reads tuning from TOML text (any field may be given; the rest keep their defaults).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The group's initial voters: the peers, or this node alone.
    pub fn voters(&self) -> Vec<Peer> {
        match self.peers.is_empty() {
            true => vec![Peer {
                id: self.node_id,
                addr: self.raft_addr.to_string(),
            }],
            false => self.peers.clone(),
        }
    }

    /// `host:port` that prefixes XIDs: the advertised Seata endpoint.
    pub fn xid_address(&self) -> String {
        self.advertised(self.seata_addr)
    }

    /// The advertised admin HTTP endpoint, `host:port`.
    pub fn admin_address(&self) -> String {
        self.advertised(self.http_addr)
    }

    /// How clients reach `listen`: the advertised host, else the listen IP, else 127.0.0.1.
    fn advertised(&self, listen: SocketAddr) -> String {
        let host = match &self.advertise_host {
            Some(host) => host.clone(),
            None if listen.ip().is_unspecified() => "127.0.0.1".to_owned(),
            None => listen.ip().to_string(),
        };
        format!("{host}:{}", listen.port())
    }
}

/// Seata protocol settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerTuning {
    /// Close a connection after this long without inbound bytes (Seata: 15 s).
    pub read_idle_timeout_ms: u64,
    /// Largest frame accepted from a registered peer (Seata: 8 MiB).
    pub max_frame_len: usize,
    /// Largest frame accepted before a peer has registered: a registration is a few hundred
    /// bytes, so a peer that never registers cannot make the server buffer megabytes
    /// (Seata has no such limit).
    pub unregistered_max_frame_len: usize,
    /// Most connections open at once; past it a connection is closed as soon as it is
    /// accepted (Seata has no limit).
    pub max_connections: usize,
    /// Most bytes of partly received frames buffered across all connections, each frame over
    /// 8 KiB counted at its declared length; a connection whose frame would go past it is
    /// closed (Seata has no limit).
    pub max_buffered_frame_bytes: usize,
    /// Version reported in registration answers. At least 2.6.0 so 2.7 RMs unregister on
    /// shutdown, which txmesh handles.
    pub version: String,
}

impl Default for ServerTuning {
    fn default() -> Self {
        Self {
            read_idle_timeout_ms: 15_000,
            max_frame_len: txmesh_seata::DEFAULT_MAX_FRAME_LEN,
            unregistered_max_frame_len: 64 * 1024,
            max_connections: 10_000,
            max_buffered_frame_bytes: 64 * 1024 * 1024,
            version: "2.7.0".into(),
        }
    }
}

impl ServerTuning {
    /// The read-idle timeout.
    pub fn read_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.read_idle_timeout_ms)
    }
}

/// Phase two and recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecoveryTuning {
    /// How long an RM has to answer a BranchCommit/BranchRollback (Seata: 15 s).
    pub phase_two_timeout_ms: u64,
    /// First retry delay after a retryable phase-two failure (Seata retries every 1 s).
    pub retry_initial_ms: u64,
    /// Longest retry delay: the delay doubles up to this (Seata has no back-off at all).
    pub retry_max_ms: u64,
    /// Give up committing after this long since begin; none = never (Seata: -1).
    pub max_commit_retry_ms: Option<u64>,
    /// Give up rolling back after this long since begin; none = never (Seata: -1).
    pub max_rollback_retry_ms: Option<u64>,
    /// How often RMs are told to trim their undo logs (Seata: one day).
    pub undo_log_delete_period_ms: u64,
    /// Undo-log rows younger than this many days are kept (Seata: 7).
    pub undo_log_save_days: i16,
}

impl Default for RecoveryTuning {
    fn default() -> Self {
        Self {
            phase_two_timeout_ms: 15_000,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            max_commit_retry_ms: None,
            max_rollback_retry_ms: None,
            undo_log_delete_period_ms: 86_400_000,
            undo_log_save_days: 7,
        }
    }
}

/// AT row locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockTuning {
    /// How long a branch registration that finds its rows locked by a transaction going
    /// forward waits on the leader for them to be freed before it is answered
    /// `LockKeyConflict`; 0 answers at once, as Seata does (its clients poll every 10 ms
    /// instead, so a hot row is handed over up to 10 ms late). Each of a client's lock retries
    /// may wait this long: it adds to the client's own budget (Java: 30 tries, 10 ms apart).
    pub wait_ms: u64,
}

impl Default for LockTuning {
    fn default() -> Self {
        Self { wait_ms: 10 }
    }
}

impl LockTuning {
    /// The wait.
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms)
    }
}

/// The data volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StorageTuning {
    /// After a write found the data volume full, `txmesh coordinator` restarts itself once
    /// this many MiB are free again (a RocksDB memtable flush alone may need 64).
    pub resume_free_mb: u64,
}

impl Default for StorageTuning {
    fn default() -> Self {
        Self { resume_free_mb: 64 }
    }
}

impl StorageTuning {
    /// The free space to resume at, in bytes.
    pub fn resume_free_bytes(&self) -> u64 {
        self.resume_free_mb.saturating_mul(1024 * 1024)
    }
}

/// Raft settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RaftTuning {
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// Election timeout, lower bound (each node draws its timeout once, between the bounds).
    pub election_timeout_min_ms: u64,
    /// Election timeout, upper bound. It is also openraft's leader lease: a follower that has
    /// heard from a leader waits this long, plus its own timeout, before it campaigns. A dead
    /// leader is therefore replaced after `max + [min, max]`, which the defaults keep under
    /// one second.
    pub election_timeout_max_ms: u64,
    /// Take a snapshot (and compact the log) after this many entries.
    pub snapshot_every_entries: u64,
    /// Most commands batched into one log entry.
    pub max_commands_per_entry: usize,
    /// The group's name: Seata clients map their transaction group to it
    /// (`service.vgroupMapping.<tx group>`) and ask for it in `/metadata/v1/cluster?group=`
    /// (Seata: `server.raft.group`, `default`).
    pub group: String,
    /// A member is caught up when it is at most this many log entries behind: a learner may be
    /// promoted, a voter may take over leadership, and a node is ready (`/readyz`).
    pub caught_up_lag: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            snapshot_every_entries: 20_000,
            max_commands_per_entry: 1_024,
            group: "default".into(),
            caught_up_lag: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_only_what_it_names() {
        let config = CoordinatorConfig::from_toml(
            "[recovery]\nretry-max-ms = 8000\n[server]\nmax-connections = 100\n",
        )
        .expect("valid");
        assert_eq!(config.recovery.retry_max_ms, 8_000);
        assert_eq!(config.server.max_connections, 100);
        assert_eq!(config.server.unregistered_max_frame_len, 65_536);
        assert_eq!(config.recovery.retry_initial_ms, 1_000);
        assert_eq!(config.seata_addr.port(), 8091);
        assert!(
            CoordinatorConfig::from_toml("[recovery]\nretry-max = 1\n").is_err(),
            "typos are errors"
        );
    }

    #[test]
    fn peers_parse_and_default_to_this_node() {
        let peer = Peer::parse("2=tc-1.tc.ns.svc:9091").expect("valid");
        assert_eq!((peer.id, peer.addr.as_str()), (2, "tc-1.tc.ns.svc:9091"));
        for bad in [
            "2",
            "x=host:1",
            "0=host:1",
            "2=host",
            "2=:9091",
            "2=host:port",
        ] {
            assert!(Peer::parse(bad).is_err(), "{bad}");
        }
        let config = CoordinatorConfig::default();
        assert_eq!(
            config.voters(),
            [Peer {
                id: 1,
                addr: "0.0.0.0:9091".into()
            }]
        );
        let toml = "peers = [{ id = 1, addr = \"a:1\" }, { id = 2, addr = \"b:1\" }]";
        assert_eq!(
            CoordinatorConfig::from_toml(toml)
                .expect("valid")
                .voters()
                .len(),
            2
        );
    }

    #[test]
    fn the_xid_address_is_reachable() {
        let mut config = CoordinatorConfig::default();
        assert_eq!(config.xid_address(), "127.0.0.1:8091");
        config.seata_addr = "10.1.2.3:18091".parse().expect("addr");
        assert_eq!(config.xid_address(), "10.1.2.3:18091");
        config.advertise_host = Some("tc-0.tc.ns.svc.cluster.local".into());
        assert_eq!(config.xid_address(), "tc-0.tc.ns.svc.cluster.local:18091");
        assert_eq!(config.admin_address(), "tc-0.tc.ns.svc.cluster.local:7091");
    }
}
