//! `txmesh coordinator`: the Seata-compatible transaction coordinator. Flags (each also a
//! `TXMESH_*` variable) override the optional TOML file, which overrides the defaults.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use txmesh_coordinator::config::Peer;
use txmesh_coordinator::{CoordinatorConfig, Ended};

/// Options of `txmesh coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// TOML file with tuning (the `[server]` table, with the connection and frame limits, and
    /// the `[recovery]`, `[locks]`, `[raft]` and `[storage]` tables, and any of the settings
    /// below in kebab-case).
    #[arg(long, env = "TXMESH_CONFIG")]
    config: Option<PathBuf>,

    /// Directory for the Raft log, vote and snapshots.
    #[arg(long, env = "TXMESH_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Seata RPC listen address [default: 0.0.0.0:8091].
    #[arg(long, env = "TXMESH_SEATA_ADDR")]
    seata_addr: Option<SocketAddr>,

    /// Raft peer listen address [default: 0.0.0.0:9091].
    #[arg(long, env = "TXMESH_RAFT_ADDR")]
    raft_addr: Option<SocketAddr>,

    /// Admin HTTP listen address [default: 0.0.0.0:7091].
    #[arg(long, env = "TXMESH_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,

    /// Host written into XIDs, which clients use to route requests: a name or address they
    /// can reach [default: the Seata listen IP, or 127.0.0.1].
    #[arg(long, env = "TXMESH_ADVERTISE_HOST")]
    advertise_host: Option<String>,

    /// This node's id in the Raft group [default: 1].
    #[arg(long, env = "TXMESH_NODE_ID")]
    node_id: Option<u64>,

    /// The voters of a new group, this node included: `id=host:port,...` (Raft addresses;
    /// DNS names are resolved again on every reconnect). The lowest id initializes an empty
    /// group. Without it, this node is a single-voter group.
    #[arg(long, env = "TXMESH_PEERS", value_delimiter = ',', value_parser = Peer::parse)]
    peers: Vec<Peer>,

    /// Take the node id from the host name's StatefulSet ordinal (`name-2` → node 3: ids
    /// start at 1).
    #[arg(long, env = "TXMESH_NODE_ID_FROM_HOSTNAME", conflicts_with = "node_id")]
    node_id_from_hostname: bool,

    /// File holding the bearer token for mutating admin calls; without it they are refused.
    #[arg(long, env = "TXMESH_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,

    /// User name Seata 2.x clients log in with (`registry.raft.username`) [default: seata].
    #[arg(long, env = "TXMESH_CONSOLE_USERNAME")]
    console_username: Option<String>,

    /// File holding the password Seata 2.x clients log in with (`registry.raft.password`)
    /// [default: seata].
    #[arg(long, env = "TXMESH_CONSOLE_PASSWORD_FILE")]
    console_password_file: Option<PathBuf>,

    /// The Raft group's name, which Seata clients map their transaction group to
    /// (`service.vgroupMapping.<tx group>`) [default: default].
    #[arg(long, env = "TXMESH_GROUP")]
    group: Option<String>,

    /// Most log entries a member may lag and still count as caught up: for promotion,
    /// leadership transfer and readiness [default: 100].
    #[arg(long, env = "TXMESH_CAUGHT_UP_LAG")]
    caught_up_lag: Option<u64>,
}

impl CoordinatorArgs {
    /// The configuration these options describe.
    fn config(self) -> anyhow::Result<CoordinatorConfig> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                CoordinatorConfig::from_toml(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => CoordinatorConfig::default(),
        };
        if let Some(path) = &self.admin_token_file {
            config.admin_token = Some(secret(path, "admin token")?);
        }
        if let Some(path) = &self.console_password_file {
            config.console.password = secret(path, "console password")?;
        }
        if let Some(username) = self.console_username {
            config.console.username = username;
        }
        config.raft.group = self.group.unwrap_or(config.raft.group);
        config.raft.caught_up_lag = self.caught_up_lag.unwrap_or(config.raft.caught_up_lag);
        config.data_dir = self.data_dir.unwrap_or(config.data_dir);
        config.seata_addr = self.seata_addr.unwrap_or(config.seata_addr);
        config.raft_addr = self.raft_addr.unwrap_or(config.raft_addr);
        config.http_addr = self.http_addr.unwrap_or(config.http_addr);
        config.node_id = match self.node_id_from_hostname {
            true => node_id_from_hostname()?,
            false => self.node_id.unwrap_or(config.node_id),
        };
        if !self.peers.is_empty() {
            config.peers = self.peers;
        }
        if !config.peers.is_empty() {
            anyhow::ensure!(
                config.peers.iter().any(|peer| peer.id == config.node_id),
                "node {} is not among the peers {:?}",
                config.node_id,
                config.peers.iter().map(|p| p.id).collect::<Vec<_>>()
            );
        }
        config.advertise_host = self.advertise_host.or(config.advertise_host);
        Ok(config)
    }

    /// Runs the coordinator until SIGINT or SIGTERM. A coordinator stopped by a full data
    /// volume executes itself again once space is back, with the same arguments and process
    /// id, so it resumes with no person and no supervisor involved.
    pub fn run(self) -> anyhow::Result<()> {
        let config = self.config()?;
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        let ended = runtime.block_on(async {
            txmesh_coordinator::run(config, crate::signals::terminated())
                .await
                .context("coordinator failed")
        })?;
        match ended {
            Ended::Shutdown => Ok(()),
            Ended::Resume => {
                // The new program replaces every thread; waiting for blocking tasks to end
                // could only delay it.
                runtime.shutdown_background();
                Err(restart())
            }
        }
    }
}

/// Replaces this process with a fresh run of the same command; returns only on failure.
fn restart() -> anyhow::Error {
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => {
            return anyhow::Error::new(error).context("cannot find this program to restart it");
        }
    };
    let error = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::Error::new(error).context(format!("cannot restart {}", program.display()))
}

/// The trimmed contents of the file at `path`, which must not be empty.
fn secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.trim();
    anyhow::ensure!(
        !text.is_empty(),
        "the {what} file {} is empty",
        path.display()
    );
    Ok(text.to_owned())
}

/// The node id from a StatefulSet pod's host name (`txmesh-coordinator-2` → 3).
fn node_id_from_hostname() -> anyhow::Result<u64> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .context("cannot read the host name")?;
    ordinal_node_id(hostname.trim())
}

fn ordinal_node_id(hostname: &str) -> anyhow::Result<u64> {
    let ordinal = hostname
        .rsplit('-')
        .next()
        .and_then(|o| o.parse::<u64>().ok());
    let ordinal =
        ordinal.with_context(|| format!("host name {hostname:?} does not end in -<ordinal>"))?;
    Ok(ordinal + 1)
}

#[cfg(test)]
mod tests {
    use super::ordinal_node_id;

    #[test]
    fn statefulset_ordinals_become_node_ids() {
        assert_eq!(ordinal_node_id("txmesh-coordinator-0").expect("ordinal"), 1);
        assert_eq!(ordinal_node_id("tc-12").expect("ordinal"), 13);
        assert!(ordinal_node_id("coordinator").is_err());
    }
}
