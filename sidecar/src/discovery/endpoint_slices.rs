//! Coordinators from a Kubernetes Service (`--coordinator-service namespace/name`): the ready
//! endpoints of the Service's EndpointSlices (those labelled
//! `kubernetes.io/service-name=<name>`), on the port named `seata` (or the slice's only port).
//! A kube-rs watcher keeps the set current; changes are published within the watch's latency.
//!
//! RBAC the sidecar's service account needs, in the coordinators' namespace: `get`, `list`
//! and `watch` on `endpointslices` in the `discovery.k8s.io` API group (a Role + RoleBinding).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use super::{DiscoveryError, Endpoint};

/// The label EndpointSlices carry with the name of their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The port the coordinators' Service names for Seata RPC.
pub const SEATA_PORT_NAME: &str = "seata";

/// The endpoints of `slices` that take traffic: ready (unknown counts as ready, as the API
/// documents) and not terminating, each address on the Seata port.
pub fn ready_endpoints<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let seata = ports
            .iter()
            .find(|p| p.name.as_deref() == Some(SEATA_PORT_NAME))
            .or(match ports {
                [only] => Some(only),
                _ => None,
            });
        let Some(port) = seata
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse::<IpAddr>() else {
                    continue;
                };
                let addr = SocketAddr::new(ip, port);
                endpoints.push(Endpoint {
                    name: addr.to_string(),
                    addr,
                });
            }
        }
    }
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

/// Parses `namespace/name`.
pub fn parse_service(text: &str) -> Result<(String, String), DiscoveryError> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok((namespace.to_owned(), name.to_owned()))
        }
        _ => Err(DiscoveryError::BadService(text.to_owned())),
    }
}

/// Watches the Service `namespace/name` with the client from the environment (in-cluster
/// service account, or the kubeconfig outside a cluster).
pub async fn watch_service(
    namespace: &str,
    name: &str,
) -> Result<watch::Receiver<Vec<Endpoint>>, DiscoveryError> {
    let client = Client::try_default()
        .await
        .map_err(|e| DiscoveryError::Kubernetes(e.to_string()))?;
    Ok(watch_with(client, namespace, name))
}

/// Watches with `client`; the set starts empty and follows every change of the slices.
pub fn watch_with(client: Client, namespace: &str, name: &str) -> watch::Receiver<Vec<Endpoint>> {
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={name}"));
    let (publish, endpoints) = watch::channel(Vec::new());
    let service = format!("{namespace}/{name}");
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let mut slices = SliceSet::default();
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = publish.closed() => return,
            };
            match event {
                Some(Ok(event)) => {
                    if let Some(next) = slices.apply(event) {
                        let next = ready_endpoints(next.values());
                        if *publish.borrow() != next {
                            tracing::info!(%service, endpoints = ?next, "coordinators");
                            publish.send_replace(next);
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%service, %error, "cannot watch the coordinators' EndpointSlices; retrying")
                }
                None => return,
            }
        }
    });
    endpoints
}

/// The slices seen so far; a relist is buffered and swapped in whole once complete.
#[derive(Debug, Default)]
struct SliceSet {
    current: BTreeMap<String, EndpointSlice>,
    relisting: Option<BTreeMap<String, EndpointSlice>>,
}

impl SliceSet {
    /// Applies `event`; the slices when they changed.
    fn apply(&mut self, event: Event<EndpointSlice>) -> Option<&BTreeMap<String, EndpointSlice>> {
        match event {
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                return None;
            }
            Event::InitApply(slice) => {
                self.relisting
                    .get_or_insert_with(BTreeMap::new)
                    .insert(slice.name_any(), slice);
                return None;
            }
            Event::InitDone => self.current = self.relisting.take().unwrap_or_default(),
            Event::Apply(slice) => {
                self.current.insert(slice.name_any(), slice);
            }
            Event::Delete(slice) => {
                self.current.remove(&slice.name_any());
            }
        }
        Some(&self.current)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::discovery::v1::{
        Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn endpoint(ip: &str, ready: Option<bool>, terminating: Option<bool>) -> SliceEndpoint {
        SliceEndpoint {
            addresses: vec![ip.to_owned()],
            conditions: Some(EndpointConditions {
                ready,
                terminating,
                ..EndpointConditions::default()
            }),
            ..SliceEndpoint::default()
        }
    }

    fn slice(name: &str, ports: &[(&str, i32)], endpoints: Vec<SliceEndpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| EndpointPort {
                        name: Some((*name).to_owned()),
                        port: Some(*port),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
            endpoints: Some(endpoints),
        }
    }

    fn ports(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints.iter().map(|e| e.addr.to_string()).collect()
    }

    #[test]
    fn only_ready_endpoints_on_the_seata_port_count() {
        let slices = [
            slice(
                "tc-a",
                &[("http", 7091), ("seata", 8091)],
                vec![
                    endpoint("10.0.0.1", Some(true), None),
                    endpoint("10.0.0.2", Some(false), None),
                    endpoint("10.0.0.3", None, None),
                    endpoint("10.0.0.4", Some(true), Some(true)),
                ],
            ),
            slice(
                "tc-b",
                &[("any", 9000)],
                vec![endpoint("10.0.0.5", Some(true), None)],
            ),
            slice(
                "tc-c",
                &[("http", 7091), ("raft", 9091)],
                vec![endpoint("10.0.0.6", Some(true), None)],
            ),
        ];
        assert_eq!(
            ports(&ready_endpoints(&slices)),
            ["10.0.0.1:8091", "10.0.0.3:8091", "10.0.0.5:9000"],
            "not ready, terminating and port-less slices are left out"
        );
    }

    #[test]
    fn a_relist_replaces_the_set_only_when_complete() {
        let mut set = SliceSet::default();
        let a = slice(
            "a",
            &[("seata", 8091)],
            vec![endpoint("10.0.0.1", None, None)],
        );
        let b = slice(
            "b",
            &[("seata", 8091)],
            vec![endpoint("10.0.0.2", None, None)],
        );
        assert!(set.apply(Event::Apply(a.clone())).is_some());
        assert!(set.apply(Event::Init).is_none());
        assert!(set.apply(Event::InitApply(b.clone())).is_none());
        assert_eq!(set.current.len(), 1, "still the old set while relisting");
        let relisted = set.apply(Event::InitDone).expect("changed");
        assert_eq!(relisted.keys().collect::<Vec<_>>(), ["b"]);
        assert!(set.apply(Event::Delete(b)).expect("changed").is_empty());
    }

    #[test]
    fn services_are_namespace_slash_name() {
        assert_eq!(
            parse_service("txmesh/tc").expect("valid"),
            ("txmesh".to_owned(), "tc".to_owned())
        );
        assert!(parse_service("tc").is_err());
        assert!(parse_service("/tc").is_err());
    }

    /// A slice as the API server sends it: `ip` ready on the Seata `port`.
    fn slice_json(ip: &str, port: i32, version: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "tc-abcde",
                "namespace": "txmesh",
                "resourceVersion": version,
                "labels": { SERVICE_NAME_LABEL: "tc" }
            },
            "addressType": "IPv4",
            "ports": [{ "name": "seata", "port": port, "protocol": "TCP" }],
            "endpoints": [{ "addresses": [ip], "conditions": { "ready": true } }]
        })
    }

    fn respond(
        send: tower_test::mock::SendResponse<http::Response<kube::client::Body>>,
        body: Vec<u8>,
    ) {
        send.send_response(http::Response::new(kube::client::Body::from(body)));
    }

    #[tokio::test]
    async fn a_coordinator_that_moves_is_followed_through_the_api() {
        let (service, mut api) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = Client::new(service, "txmesh");
        let mut endpoints = watch_with(client, "txmesh", "tc");

        let (list, send) = api.next_request().await.expect("the initial list");
        let query = list.uri().query().unwrap_or_default().to_owned();
        assert!(
            list.uri()
                .path()
                .ends_with("/namespaces/txmesh/endpointslices"),
            "{}",
            list.uri()
        );
        assert!(
            query.contains("labelSelector=kubernetes.io%2Fservice-name%3Dtc"),
            "{query}"
        );
        let listed = serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": { "resourceVersion": "1" },
            "items": [slice_json("10.0.0.1", 8091, "1")]
        });
        respond(send, serde_json::to_vec(&listed).expect("json"));
        let first = endpoints
            .wait_for(|e| !e.is_empty())
            .await
            .expect("the watcher runs")
            .clone();
        assert_eq!(ports(&first), ["10.0.0.1:8091"]);

        let (watch, send) = api.next_request().await.expect("the watch");
        assert!(
            watch
                .uri()
                .query()
                .unwrap_or_default()
                .contains("watch=true"),
            "{}",
            watch.uri()
        );
        let moved =
            serde_json::json!({ "type": "MODIFIED", "object": slice_json("10.0.0.9", 18091, "2") });
        let mut line = serde_json::to_vec(&moved).expect("json");
        line.push(b'\n');
        respond(send, line);
        let moved = endpoints
            .wait_for(|e| e.iter().any(|e| e.addr.port() == 18091))
            .await
            .expect("the watcher runs")
            .clone();
        assert_eq!(ports(&moved), ["10.0.0.9:18091"]);
    }
}
