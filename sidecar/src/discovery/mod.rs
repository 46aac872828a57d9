//! Where the coordinators are: a `tokio::sync::watch` of resolved endpoints, fed from a static
//! list or a file (names resolved again every interval, so a coordinator that moves is
//! followed; an entry that fails to resolve keeps its last known addresses), from Seata 2.x's
//! metadata endpoint ([`metadata`]), or from a Kubernetes Service's EndpointSlices
//! ([`endpoint_slices`]).

pub mod endpoint_slices;
pub mod metadata;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::CoordinatorSource;

/// One coordinator address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The entry as configured, `host:port`.
    pub name: String,
    /// One address it resolves to.
    pub addr: SocketAddr,
}

impl Endpoint {
    /// Whether an XID's `host:port` names this endpoint.
    pub fn serves_xid(&self, xid: &str) -> bool {
        let Some((address, _)) = xid.rsplit_once(':') else {
            return false;
        };
        address == self.name || address == self.addr.to_string()
    }
}

/// Why the coordinator list cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The file cannot be read.
    #[error("cannot read the coordinator list {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An entry is not `host:port`.
    #[error("coordinator entry {0:?} is not host:port")]
    BadEntry(String),
    /// The list is empty.
    #[error("no coordinator is configured")]
    Empty,
    /// A Service is not `namespace/name`.
    #[error("coordinator service {0:?} is not namespace/name")]
    BadService(String),
    /// A list was asked of a Service source (which is watched instead).
    #[error("the coordinators come from the Kubernetes Service {0}, not from a list")]
    NotAList(String),
    /// No coordinator's metadata endpoint gave a cluster view.
    #[error("cannot read the cluster view from {address}: {why}")]
    Metadata {
        /// The coordinator HTTP address asked last.
        address: String,
        /// What went wrong.
        why: String,
    },
    /// No Kubernetes client can be made (no in-cluster service account, no kubeconfig).
    #[error("cannot reach the Kubernetes API: {0}")]
    Kubernetes(String),
}

/// Parses `host:port` entries separated by commas or whitespace; `#` starts a comment.
pub fn parse_list(text: &str) -> Result<Vec<String>, DiscoveryError> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        for entry in line.split(|c: char| c == ',' || c.is_whitespace()) {
            if entry.is_empty() {
                continue;
            }
            let port = entry
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(_))) if !host.is_empty() => entries.push(entry.to_owned()),
                _ => return Err(DiscoveryError::BadEntry(entry.to_owned())),
            }
        }
    }
    Ok(entries)
}

/// The entries `source` names now.
pub async fn read_source(source: &CoordinatorSource) -> Result<Vec<String>, DiscoveryError> {
    let entries = match source {
        CoordinatorSource::Static(entries) => parse_list(&entries.join(","))?,
        CoordinatorSource::File(path) => parse_list(&read_file(path)?)?,
        CoordinatorSource::Metadata { addresses, group } => {
            metadata::read(addresses, group).await?
        }
        CoordinatorSource::Service { namespace, name } => {
            return Err(DiscoveryError::NotAList(format!("{namespace}/{name}")));
        }
    };
    if entries.is_empty() {
        return Err(DiscoveryError::Empty);
    }
    Ok(entries)
}

fn read_file(path: &Path) -> Result<String, DiscoveryError> {
    std::fs::read_to_string(path).map_err(|source| DiscoveryError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Resolves `entries`; an entry that does not resolve now keeps what `known` had for it.
pub async fn resolve(entries: &[String], known: &[Endpoint]) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for name in entries {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => endpoints.extend(addrs.map(|addr| Endpoint {
                name: name.clone(),
                addr,
            })),
            Err(error) => {
                tracing::warn!(%name, %error, "coordinator name does not resolve; keeping its last addresses");
                endpoints.extend(known.iter().filter(|e| &e.name == name).cloned());
            }
        }
    }
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

/// Watches `source`: a list is read and resolved before this returns (so a bad configuration
/// fails the start), later changes are published as they are seen; a Service is watched
/// through the Kubernetes API.
pub async fn watch_source(
    source: CoordinatorSource,
    interval: Duration,
) -> Result<watch::Receiver<Vec<Endpoint>>, DiscoveryError> {
    if let CoordinatorSource::Service { namespace, name } = &source {
        return endpoint_slices::watch_service(namespace, name).await;
    }
    let entries = read_source(&source).await?;
    let endpoints = resolve(&entries, &[]).await;
    log_change(&[], &endpoints);
    let (publish, endpoints) = watch::channel(endpoints);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = publish.closed() => return,
            }
            let entries = match read_source(&source).await {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(%error, "keeping the previous coordinator list");
                    continue;
                }
            };
            let known = publish.borrow().clone();
            let next = resolve(&entries, &known).await;
            if next != known {
                log_change(&known, &next);
                publish.send_replace(next);
            }
        }
    });
    Ok(endpoints)
}

fn log_change(before: &[Endpoint], after: &[Endpoint]) {
    let show = |endpoints: &[Endpoint]| -> BTreeMap<String, Vec<SocketAddr>> {
        let mut by_name: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
        for e in endpoints {
            by_name.entry(e.name.clone()).or_default().push(e.addr);
        }
        by_name
    };
    tracing::info!(before = ?show(before), after = ?show(after), "coordinators");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_parse_with_commas_lines_and_comments() {
        let text = "a:1, b:2\n# comment\nc.example:8091 # trailing\n\n";
        assert_eq!(
            parse_list(text).expect("valid"),
            vec!["a:1", "b:2", "c.example:8091"]
        );
        assert!(matches!(
            parse_list("nohost"),
            Err(DiscoveryError::BadEntry(_))
        ));
        assert!(matches!(
            parse_list(":80"),
            Err(DiscoveryError::BadEntry(_))
        ));
        assert!(matches!(
            read_source(&CoordinatorSource::Static(vec![])).await,
            Err(DiscoveryError::Empty)
        ));
    }

    #[test]
    fn xids_name_their_coordinator() {
        let endpoint = Endpoint {
            name: "tc-0.tc:8091".into(),
            addr: SocketAddr::from(([10, 0, 0, 7], 8091)),
        };
        assert!(endpoint.serves_xid("tc-0.tc:8091:42"));
        assert!(endpoint.serves_xid("10.0.0.7:8091:42"));
        assert!(!endpoint.serves_xid("10.0.0.8:8091:42"));
        assert!(!endpoint.serves_xid("42"));
    }

    #[tokio::test]
    async fn a_file_source_is_followed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("coordinators");
        std::fs::write(&path, "127.0.0.1:1000").expect("write");
        let mut endpoints = watch_source(
            CoordinatorSource::File(path.clone()),
            Duration::from_millis(10),
        )
        .await
        .expect("readable");
        assert_eq!(endpoints.borrow_and_update()[0].addr.port(), 1000);
        std::fs::write(&path, "127.0.0.1:2000").expect("write");
        let moved = endpoints
            .wait_for(|e| e.iter().any(|e| e.addr.port() == 2000))
            .await
            .expect("the watcher runs")
            .clone();
        assert_eq!(moved.len(), 1);
    }
}
