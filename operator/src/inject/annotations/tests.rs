use serde_json::json;

use super::*;

fn config() -> InjectorConfig {
    InjectorConfig {
        sidecar_image: "txmesh/txmesh:0.1.0".into(),
        native_sidecar: true,
        resources: serde_json::from_value(json!({"requests": {"cpu": "50m", "memory": "64Mi"}}))
            .expect("resources"),
        default_coordinator: None,
    }
}

fn pod(annotations: serde_json::Value, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"generateName": "orders-", "annotations": annotations, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "orders:1"}]},
    }))
    .expect("pod")
}

fn asking(extra: serde_json::Value) -> Pod {
    let mut annotations = json!({"txmesh.io/inject": "true", "txmesh.io/coordinator": "tc"});
    for (key, value) in extra.as_object().expect("object") {
        annotations[key] = value.clone();
    }
    pod(annotations, json!({"app.kubernetes.io/name": "orders"}))
}

fn error_of(extra: serde_json::Value) -> String {
    settings(&asking(extra), "shop", &config())
        .expect_err("refused")
        .to_string()
}

#[test]
fn a_pod_route_injects_only_pods_that_ask_and_a_namespace_route_all_but_those_that_decline() {
    let asks = pod(json!({"txmesh.io/inject": "true"}), json!({}));
    let declines = pod(json!({"txmesh.io/inject": "false"}), json!({}));
    let silent = pod(json!({}), json!({}));
    let table = [
        (Route::Pod, &asks, true),
        (Route::Pod, &declines, false),
        (Route::Pod, &silent, false),
        (Route::Namespace, &asks, true),
        (Route::Namespace, &declines, false),
        (Route::Namespace, &silent, true),
    ];
    for (route, pod, wanted) in table {
        assert_eq!(wants_sidecar(route, pod), Ok(wanted), "{route:?} {pod:?}");
    }
    let unclear = pod(json!({"txmesh.io/inject": "yes"}), json!({}));
    assert_eq!(
        wants_sidecar(Route::Pod, &unclear)
            .expect_err("refused")
            .to_string(),
        "txmesh.io/inject: \"yes\" is not \"true\" or \"false\""
    );
}

#[test]
fn defaults_come_from_the_injector_and_the_pods_labels() {
    let settings = settings(&asking(json!({})), "shop", &config()).expect("settings");
    assert_eq!(
        settings,
        Settings {
            coordinator: ("shop".into(), "tc".into()),
            application_id: "orders".into(),
            service_group: "default_tx_group".into(),
            native: true,
            image: "txmesh/txmesh:0.1.0".into(),
            resources: config().resources,
            log_level: None,
            grpc_port: 50051,
            http_port: 7092,
            shutdown_grace: None,
        }
    );
    let labelled_app = pod(
        json!({"txmesh.io/coordinator": "tc"}),
        json!({"app": "billing"}),
    );
    let from_app = super::settings(&labelled_app, "shop", &config()).expect("settings");
    assert_eq!(from_app.application_id, "billing");
}

#[test]
fn every_annotation_overrides_its_default() {
    let annotations = json!({
        "txmesh.io/coordinator": "txmesh/payments-tc",
        "txmesh.io/application-id": "orders-eu",
        "txmesh.io/service-group": "eu_tx_group",
        "txmesh.io/native-sidecar": "false",
        "txmesh.io/sidecar-image": "registry.local/txmesh:dev",
        "txmesh.io/sidecar-cpu-request": "100m",
        "txmesh.io/sidecar-cpu-limit": "1",
        "txmesh.io/sidecar-memory-request": "0.5Gi",
        "txmesh.io/sidecar-memory-limit": "1e9",
        "txmesh.io/log-level": "debug,txmesh_seata=trace",
        "txmesh.io/grpc-port": "60051",
        "txmesh.io/http-port": "17092",
        "txmesh.io/shutdown-grace": "30s",
    });
    let settings = settings(&asking(annotations), "shop", &config()).expect("settings");
    assert_eq!(
        settings.coordinator,
        ("txmesh".into(), "payments-tc".into())
    );
    assert_eq!(settings.application_id, "orders-eu");
    assert_eq!(settings.service_group, "eu_tx_group");
    assert!(!settings.native);
    assert_eq!(settings.image, "registry.local/txmesh:dev");
    let resources = serde_json::to_value(&settings.resources).expect("JSON");
    assert_eq!(
        resources,
        json!({
            "requests": {"cpu": "100m", "memory": "0.5Gi"},
            "limits": {"cpu": "1", "memory": "1e9"},
        })
    );
    assert_eq!(
        settings.log_level.as_deref(),
        Some("debug,txmesh_seata=trace")
    );
    assert_eq!((settings.grpc_port, settings.http_port), (60051, 17092));
    assert_eq!(settings.shutdown_grace.as_deref(), Some("30s"));
}

#[test]
fn the_injectors_default_coordinator_serves_pods_that_name_none() {
    let silent = pod(json!({}), json!({"app": "orders"}));
    assert_eq!(
        settings(&silent, "shop", &config())
            .expect_err("refused")
            .to_string(),
        "no TransactionCoordinator: annotate the pod with txmesh.io/coordinator (the injector has no default coordinator)"
    );
    let config = InjectorConfig {
        default_coordinator: Some("txmesh/tc".into()),
        ..config()
    };
    let settings = settings(&silent, "shop", &config).expect("settings");
    assert_eq!(settings.coordinator, ("txmesh".into(), "tc".into()));
}

#[test]
fn bad_values_are_refused_with_the_annotation_named() {
    let table = [
        (
            json!({"txmesh.io/coordinator": "Payments"}),
            "txmesh.io/coordinator: \"Payments\" is not a TransactionCoordinator name or namespace/name",
        ),
        (
            json!({"txmesh.io/coordinator": "a/b/c"}),
            "txmesh.io/coordinator: \"a/b/c\" is not a TransactionCoordinator name or namespace/name",
        ),
        (
            json!({"txmesh.io/grpc-port": "0"}),
            "txmesh.io/grpc-port: \"0\" is not a port (1-65535)",
        ),
        (
            json!({"txmesh.io/http-port": "70000"}),
            "txmesh.io/http-port: \"70000\" is not a port (1-65535)",
        ),
        (
            json!({"txmesh.io/grpc-port": "7092"}),
            "txmesh.io/grpc-port and txmesh.io/http-port are both 7092",
        ),
        (
            json!({"txmesh.io/sidecar-memory-limit": "lots"}),
            "txmesh.io/sidecar-memory-limit: \"lots\" is not a quantity (e.g. 100m, 128Mi)",
        ),
        (
            json!({"txmesh.io/sidecar-cpu-request": "1.2.3"}),
            "txmesh.io/sidecar-cpu-request: \"1.2.3\" is not a quantity (e.g. 100m, 128Mi)",
        ),
        (
            json!({"txmesh.io/shutdown-grace": "10"}),
            "txmesh.io/shutdown-grace: \"10\" is not a duration (e.g. 500ms, 10s, 2m)",
        ),
        (
            json!({"txmesh.io/log-level": "info; rm -rf"}),
            "txmesh.io/log-level: \"info; rm -rf\" is not a log level or filter (e.g. info, debug,txmesh_seata=trace)",
        ),
        (
            json!({"txmesh.io/native-sidecar": "maybe"}),
            "txmesh.io/native-sidecar: \"maybe\" is not \"true\" or \"false\"",
        ),
        (
            json!({"txmesh.io/application-id": " "}),
            "txmesh.io/application-id: \" \" is empty or spans lines",
        ),
    ];
    for (annotations, message) in table {
        assert_eq!(error_of(annotations.clone()), message, "{annotations}");
    }
    let nameless = pod(json!({"txmesh.io/coordinator": "tc"}), json!({}));
    assert_eq!(
        settings(&nameless, "shop", &config())
            .expect_err("refused")
            .to_string(),
        "no application id: annotate the pod with txmesh.io/application-id or label it app.kubernetes.io/name"
    );
}
