//! The watchdog's choice of pods, and whole sweeps against a mocked API server.

use http::{Method, StatusCode};
use kube::runtime::events::Reporter;
use serde_json::{Value, json};

use super::*;
use crate::inject::tests::serving_config;
use crate::mock_api::{self, ApiHandle, expect, fail, respond};

/// A pod of application `orders` in `namespace` with `annotations`; owned by a ReplicaSet when
/// `controlled`.
fn pod(namespace: &str, name: &str, annotations: Value, controlled: bool) -> Value {
    let owners = match controlled {
        true => json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "orders-7d9f",
            "uid": "5c1d3c3e-6f1e-4c55-9d3a-1f2a3b4c5d6e", "controller": true,
        }]),
        false => json!([]),
    };
    json!({
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations,
                     "labels": {"app": "orders"}, "ownerReferences": owners},
        "spec": {"containers": [{"name": "app", "image": "orders:1"}]},
    })
}

fn typed(value: &Value) -> Pod {
    serde_json::from_value(value.clone()).expect("pod")
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn only_pods_that_asked_and_lack_the_sidecar_are_chosen() {
    let labelled = set(&["shop"]);
    let excluded = set(&["kube-system", "txmesh-system"]);
    let asks = json!({"txmesh.io/inject": "true"});
    let mut injected = pod("web", "injected", asks.clone(), true);
    injected["spec"]["initContainers"] = json!([{"name": "txmesh-sidecar", "image": "txmesh"}]);
    let mut coordinator = pod("shop", "tc-0", json!({}), true);
    coordinator["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "txmesh-operator"});
    let mut leaving = pod("web", "leaving", asks.clone(), true);
    leaving["metadata"]["deletionTimestamp"] = json!("2026-11-22T06:00:00Z");
    let table = [
        (pod("web", "asked", asks.clone(), true), true),
        (pod("web", "silent", json!({}), true), false),
        (pod("shop", "in-labelled-namespace", json!({}), true), true),
        (
            pod(
                "shop",
                "declined",
                json!({"txmesh.io/inject": "false"}),
                true,
            ),
            false,
        ),
        (pod("kube-system", "system", asks.clone(), true), false),
        (pod("txmesh-system", "operator", asks.clone(), true), false),
        (
            pod("web", "unclear", json!({"txmesh.io/inject": "yes"}), true),
            false,
        ),
        // The webhook would refuse it again: evicted, it would not come back.
        (
            pod(
                "web",
                "bad-port",
                json!({"txmesh.io/inject": "true", "txmesh.io/grpc-port": "http"}),
                true,
            ),
            false,
        ),
        (injected, false),
        (coordinator, false),
        (leaving, false),
    ];
    for (pod, expected) in table {
        assert_eq!(
            lacks_sidecar(&typed(&pod), &labelled, &excluded, &serving_config()),
            expected,
            "{}",
            pod["metadata"]["name"]
        );
    }
}

fn watchdog() -> (Client, Recorder, ApiHandle) {
    let (client, handle) = mock_api::client();
    let reporter = Reporter {
        controller: "txmesh-operator".into(),
        instance: None,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    (client, recorder, handle)
}

fn config(max_evictions: usize) -> WatchdogConfig {
    WatchdogConfig {
        interval: Duration::from_secs(300),
        max_evictions,
        excluded: set(&["kube-system", "txmesh-system"]),
        injector: serving_config(),
    }
}

fn list(kind: &str, items: &[Value], next: Option<&str>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"continue": next}, "items": items})
}

/// Answers the namespaces list: `shop` enabled, `legacy` disabled, `misc` with another value.
async fn namespaces(handle: &mut ApiHandle) {
    let (_, send) = expect(handle, Method::GET, "/api/v1/namespaces").await;
    let namespace = |name: &str, value: &str| json!({"metadata": {"name": name, "labels": {"txmesh.io/injection": value}}});
    let items = [
        namespace("shop", "enabled"),
        namespace("legacy", "disabled"),
        namespace("misc", "true"),
    ];
    respond(send, StatusCode::OK, &list("NamespaceList", &items, None));
}

async fn expect_event(handle: &mut ApiHandle, namespace: &str) -> Value {
    let path = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
    let (event, send) = expect(handle, Method::POST, &path).await;
    respond(send, StatusCode::CREATED, &event);
    event
}

#[tokio::test]
async fn a_sweep_evicts_controlled_pods_and_reports_the_others_over_every_page() {
    let (client, recorder, mut handle) = watchdog();
    let asks = json!({"txmesh.io/inject": "true"});
    let server = async {
        namespaces(&mut handle).await;
        let (_, send) = expect(&mut handle, Method::GET, "/api/v1/pods").await;
        let first = [
            pod("shop", "orders-1", json!({}), true),
            pod("legacy", "old", asks.clone(), true),
        ];
        respond(
            send,
            StatusCode::OK,
            &list("PodList", &first, Some("page-2")),
        );
        let (eviction, send) = expect(
            &mut handle,
            Method::POST,
            "/api/v1/namespaces/shop/pods/orders-1/eviction",
        )
        .await;
        assert_eq!(eviction["metadata"]["name"], "orders-1");
        respond(
            send,
            StatusCode::CREATED,
            &json!({"kind": "Status", "status": "Success"}),
        );
        let event = expect_event(&mut handle, "shop").await;
        assert_eq!(
            (&event["type"], &event["reason"]),
            (&json!("Warning"), &json!("SidecarMissing"))
        );
        assert_eq!(event["regarding"]["name"], "orders-1");
        // Each page is acted on before the next is read.
        let (_, send) = expect(&mut handle, Method::GET, "/api/v1/pods").await;
        let second = [
            pod("misc", "misc-1", asks.clone(), false),
            pod("kube-system", "dns", asks.clone(), true),
        ];
        respond(send, StatusCode::OK, &list("PodList", &second, None));
        let event = expect_event(&mut handle, "misc").await;
        assert_eq!(event["regarding"]["name"], "misc-1");
        handle
    };
    let config = config(20);
    let (swept, handle) = tokio::join!(sweep(&client, &recorder, &config), server);
    let swept = swept.expect("no API error");
    assert_eq!(
        swept,
        Swept {
            pods: 4,
            evicted: vec!["shop/orders-1".into()],
            deferred: vec![],
            reported: vec!["misc/misc-1".into()],
        }
    );
    drop((client, recorder));
    mock_api::expect_no_more(handle).await;
}

#[tokio::test]
async fn evictions_wait_for_disruption_budgets_and_stop_at_the_cap() {
    let (client, recorder, mut handle) = watchdog();
    let server = async {
        namespaces(&mut handle).await;
        let (_, send) = expect(&mut handle, Method::GET, "/api/v1/pods").await;
        let items = [
            pod("shop", "guarded", json!({}), true),
            pod("shop", "orders-1", json!({}), true),
            pod("shop", "orders-2", json!({}), true),
        ];
        respond(send, StatusCode::OK, &list("PodList", &items, None));
        let path = "/api/v1/namespaces/shop/pods/guarded/eviction";
        let (_, send) = expect(&mut handle, Method::POST, path).await;
        let message = "Cannot evict pod as it would violate the pod's disruption budget.";
        fail(
            send,
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            message,
        );
        let path = "/api/v1/namespaces/shop/pods/orders-1/eviction";
        let (_, send) = expect(&mut handle, Method::POST, path).await;
        respond(
            send,
            StatusCode::CREATED,
            &json!({"kind": "Status", "status": "Success"}),
        );
        expect_event(&mut handle, "shop").await;
        handle
    };
    let config = config(1);
    let (swept, handle) = tokio::join!(sweep(&client, &recorder, &config), server);
    let swept = swept.expect("no API error");
    assert_eq!(swept.evicted, ["shop/orders-1"]);
    assert_eq!(swept.deferred, ["shop/guarded", "shop/orders-2"]);
    drop((client, recorder));
    mock_api::expect_no_more(handle).await;
}
