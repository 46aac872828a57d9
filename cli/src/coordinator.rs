//! `txmesh coordinator`: the Seata-compatible transaction coordinator. Flags (each also a
//! `TXMESH_*` variable) override the optional TOML file, which overrides the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use txmesh_coordinator::CoordinatorConfig;

/// Options of `txmesh coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// TOML file with tuning (the `[server]`, `[recovery]` and `[raft]` tables, and any of
    /// the settings below in kebab-case).
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

    /// File holding the bearer token for mutating admin calls; without it they are refused.
    #[arg(long, env = "TXMESH_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
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
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let token = token.trim();
            anyhow::ensure!(
                !token.is_empty(),
                "the admin token file {} is empty",
                path.display()
            );
            config.admin_token = Some(token.to_owned());
        }
        config.data_dir = self.data_dir.unwrap_or(config.data_dir);
        config.seata_addr = self.seata_addr.unwrap_or(config.seata_addr);
        config.raft_addr = self.raft_addr.unwrap_or(config.raft_addr);
        config.http_addr = self.http_addr.unwrap_or(config.http_addr);
        config.node_id = self.node_id.unwrap_or(config.node_id);
        config.advertise_host = self.advertise_host.or(config.advertise_host);
        Ok(config)
    }

    /// Runs the coordinator until SIGINT or SIGTERM.
    pub fn run(self) -> anyhow::Result<()> {
        let config = self.config()?;
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        runtime.block_on(async {
            txmesh_coordinator::run(config, crate::signals::terminated())
                .await
                .context("coordinator failed")
        })
    }
}
