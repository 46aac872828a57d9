//! `txmesh sidecar`: lets an application take part in Seata transactions over gRPC on
//! localhost. Every flag is also a `TXMESH_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use txmesh_seata::client::BatchConfig;
use txmesh_sidecar::discovery::endpoint_slices;
use txmesh_sidecar::{CoordinatorSource, SidecarConfig};

/// Options of `txmesh sidecar`.
#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// The application's gRPC listen address.
    #[arg(long, env = "TXMESH_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,

    /// Also serve the gRPC API on this unix socket.
    #[arg(long, env = "TXMESH_GRPC_UDS")]
    grpc_uds: Option<PathBuf>,

    /// Health (`/healthz`, `/readyz`) and `/metrics` listen address.
    #[arg(long, env = "TXMESH_HTTP_ADDR", default_value = "127.0.0.1:7092")]
    http_addr: SocketAddr,

    /// Coordinator Seata addresses, `host:port,...` (names are resolved again every
    /// --discovery-interval).
    #[arg(
        long,
        env = "TXMESH_COORDINATORS",
        value_delimiter = ',',
        required_unless_present_any = ["coordinators_file", "coordinator_service", "coordinators_metadata"],
        conflicts_with_all = ["coordinators_file", "coordinator_service", "coordinators_metadata"]
    )]
    coordinators: Vec<String>,

    /// Coordinators' HTTP addresses (`host:7091,...`): the Seata endpoints are read from their
    /// `/metadata/v1/cluster` view (Seata 2.x raft-mode discovery) every --discovery-interval.
    #[arg(
        long,
        env = "TXMESH_COORDINATORS_METADATA",
        value_delimiter = ',',
        conflicts_with_all = ["coordinators_file", "coordinator_service"]
    )]
    coordinators_metadata: Vec<String>,

    /// The Raft group (Seata cluster name) asked about with --coordinators-metadata.
    #[arg(long, env = "TXMESH_METADATA_GROUP", default_value = "default")]
    metadata_group: String,

    /// In Kubernetes: the coordinators' Service as `namespace/name`; the sidecar watches its
    /// EndpointSlices and uses the ready endpoints' `seata` port (RBAC: get, list and watch
    /// on `endpointslices.discovery.k8s.io` in that namespace).
    #[arg(
        long,
        env = "TXMESH_COORDINATOR_SERVICE",
        conflicts_with = "coordinators_file"
    )]
    coordinator_service: Option<String>,

    /// A file listing the coordinators (`host:port` by line or comma), reread every
    /// --discovery-interval: edit it to move the sidecar to other coordinators.
    #[arg(long, env = "TXMESH_COORDINATORS_FILE")]
    coordinators_file: Option<PathBuf>,

    /// How often coordinator names are resolved again (and the file reread), e.g. `5s`.
    #[arg(long, env = "TXMESH_DISCOVERY_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    discovery_interval: Duration,

    /// Threads running the API, the coordinator links and phase two. One serves an
    /// application best (no hand-offs between threads); the fence's fsyncs have a thread of
    /// their own either way.
    #[arg(long, env = "TXMESH_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    worker_threads: u16,

    /// Directory of the TCC fence (RocksDB); keep it across restarts.
    #[arg(long, env = "TXMESH_DATA_DIR", default_value = "txmesh-sidecar-data")]
    data_dir: PathBuf,

    /// Application id sent to the coordinators (phase two is routed by it).
    #[arg(long, env = "TXMESH_APPLICATION_ID", default_value = "txmesh-app")]
    application_id: String,

    /// Seata transaction service group.
    #[arg(
        long,
        env = "TXMESH_TRANSACTION_SERVICE_GROUP",
        default_value = "default_tx_group"
    )]
    transaction_service_group: String,

    /// Send every upstream request alone instead of merging concurrent ones.
    #[arg(long, env = "TXMESH_NO_BATCH")]
    no_batch: bool,

    /// Flush a merged batch once this many requests wait.
    #[arg(long, env = "TXMESH_BATCH_MAX", default_value_t = 32)]
    batch_max: usize,

    /// Flush a merged batch at the latest this long after its first request, e.g. `1ms`.
    #[arg(long, env = "TXMESH_BATCH_WAIT", default_value = "1ms", value_parser = parse_duration)]
    batch_wait: Duration,

    /// How long an upstream request waits for its answer.
    #[arg(long, env = "TXMESH_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,

    /// How long the application gets to answer a Confirm/Cancel before the coordinator is
    /// told to retry (keep it under the coordinator's phase-two timeout).
    #[arg(long, env = "TXMESH_PHASE_TWO_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    phase_two_timeout: Duration,

    /// After SIGTERM, how long phase two keeps being delivered (less if the application
    /// closes its streams first).
    #[arg(long, env = "TXMESH_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,

    /// Finished fence records are deleted after this long.
    #[arg(long, env = "TXMESH_FENCE_RETENTION", default_value = "24h", value_parser = parse_duration)]
    fence_retention: Duration,
}

impl SidecarArgs {
    /// The configuration these options describe.
    fn config(self) -> anyhow::Result<SidecarConfig> {
        anyhow::ensure!(self.batch_max >= 1, "--batch-max must be at least 1");
        let coordinators = match (self.coordinators_file, self.coordinator_service) {
            (Some(path), _) => CoordinatorSource::File(path),
            (None, Some(service)) => {
                let (namespace, name) = endpoint_slices::parse_service(&service)?;
                CoordinatorSource::Service { namespace, name }
            }
            (None, None) if !self.coordinators_metadata.is_empty() => CoordinatorSource::Metadata {
                addresses: self.coordinators_metadata,
                group: self.metadata_group,
            },
            (None, None) => CoordinatorSource::Static(self.coordinators),
        };
        let batch = (!self.no_batch).then_some(BatchConfig {
            max_messages: self.batch_max,
            max_wait: self.batch_wait,
        });
        Ok(SidecarConfig {
            grpc_addr: self.grpc_addr,
            grpc_uds: self.grpc_uds,
            http_addr: self.http_addr,
            coordinators,
            discovery_interval: self.discovery_interval,
            data_dir: self.data_dir,
            application_id: self.application_id,
            transaction_service_group: self.transaction_service_group,
            batch,
            request_timeout: self.request_timeout,
            phase_two_timeout: self.phase_two_timeout,
            shutdown_grace: self.shutdown_grace,
            fence_retention: self.fence_retention,
            ..SidecarConfig::default()
        })
    }

    /// Runs the sidecar until SIGINT or SIGTERM, then stops it gracefully.
    pub fn run(self) -> anyhow::Result<()> {
        let worker_threads = self.worker_threads;
        let config = self.config()?;
        let runtime = match worker_threads {
            1 => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            threads => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(threads))
                .enable_all()
                .build(),
        }
        .context("cannot start the async runtime")?;
        runtime.block_on(async {
            txmesh_sidecar::run(config, crate::signals::terminated())
                .await
                .context("sidecar failed")
        })
    }
}

/// A duration: a number with a unit, `ms`, `s`, `m` or `h` (`250ms`, `10s`, `24h`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m or h"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use ms, s, m or h"
            ));
        }
    };
    number
        .checked_mul(scale)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SidecarArgs,
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn flags_make_the_config() {
        let cli = Cli::try_parse_from([
            "sidecar",
            "--coordinators",
            "a:8091,b:8091",
            "--no-batch",
            "--phase-two-timeout",
            "2s",
        ])
        .expect("valid flags");
        let config = cli.args.config().expect("valid config");
        assert_eq!(
            config.coordinators,
            CoordinatorSource::Static(vec!["a:8091".into(), "b:8091".into()])
        );
        assert_eq!(config.batch, None);
        assert_eq!(config.phase_two_timeout, Duration::from_secs(2));
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(config.transaction_service_group, "default_tx_group");
        assert!(
            Cli::try_parse_from(["sidecar"]).is_err(),
            "coordinators are required"
        );
    }
}
