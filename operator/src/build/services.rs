//! The Services, the PodDisruptionBudget and the ServiceMonitor.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{HTTP_PORT, RAFT_PORT, Target};

/// Label telling the two Services apart (they select the same pods).
const SERVICE_LABEL: &str = "txmesh.io/service";

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// A Service of the group's pods, labelled `txmesh.io/service: <role>`.
fn service(target: &Target, name: String, role: &str, spec: ServiceSpec) -> Service {
    let mut metadata = target.metadata(name);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(SERVICE_LABEL.into(), role.into());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            selector: Some(target.selector_labels()),
            ..spec
        }),
        ..Service::default()
    }
}

/// Headless, and listing pods before they are ready: a starting coordinator must reach its
/// peers (and be reached) to become ready at all.
pub(super) fn peer_service(target: &Target) -> Service {
    service(
        target,
        target.peer_service_name(),
        "peers",
        ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![port("raft", RAFT_PORT), port("http", HTTP_PORT)]),
            ..ServiceSpec::default()
        },
    )
}

/// Where Seata clients and sidecars connect; only ready coordinators (members, caught up).
pub(super) fn client_service(target: &Target) -> Service {
    service(
        target,
        target.name.clone(),
        "client",
        ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![
                ServicePort {
                    port: target.tc.spec.seata.port,
                    ..port("seata", 0)
                },
                port("http", HTTP_PORT),
            ]),
            ..ServiceSpec::default()
        },
    )
}

/// One coordinator down at a time: a majority stays up in any group of three or more.
pub(super) fn pod_disruption_budget(target: &Target) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: target.metadata(target.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(target.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The ServiceMonitor's kind: not in k8s-openapi, so an untyped object.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// Scrapes every pod through the headless Service, ready or not: a member that is not ready
/// is exactly the one whose metrics matter.
pub(super) fn service_monitor(target: &Target) -> DynamicObject {
    let monitor = &target.tc.spec.metrics.service_monitor;
    let mut metadata = target.metadata(target.name.clone());
    // The operator's labels win over the user's: the objects must stay recognisable.
    let mut labels = monitor.labels.clone();
    labels.extend(metadata.labels.take().unwrap_or_default());
    metadata.labels = Some(labels);
    let selector: BTreeMap<String, String> = target
        .selector_labels()
        .into_iter()
        .chain([(SERVICE_LABEL.to_owned(), "peers".to_owned())])
        .collect();
    DynamicObject {
        metadata,
        ..DynamicObject::new(&target.name, &service_monitor_resource())
    }
    .data(json!({
        "spec": {
            "selector": {"matchLabels": selector},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": monitor.interval}],
        }
    }))
}
