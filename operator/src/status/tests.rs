use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

fn coordinator(status: Option<TransactionCoordinatorStatus>) -> TransactionCoordinator {
    let mut tc: TransactionCoordinator = serde_json::from_value(json!({
        "apiVersion": "txmesh.io/v1alpha1",
        "kind": "TransactionCoordinator",
        "metadata": {"name": "tc", "namespace": "payments", "generation": 2},
        "spec": {"image": "txmesh/txmesh:0.1.0"},
    }))
    .expect("valid resource");
    tc.status = status;
    tc
}

fn stateful_set(replicas: i32, ready: i32, updated: i32) -> StatefulSet {
    StatefulSet {
        metadata: kube::api::ObjectMeta {
            generation: Some(4),
            ..Default::default()
        },
        status: Some(StatefulSetStatus {
            observed_generation: Some(4),
            replicas,
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            current_revision: Some("tc-1".into()),
            update_revision: Some(if updated == replicas { "tc-1" } else { "tc-2" }.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("valid time"))
}

fn applied(sts: &StatefulSet) -> Outcome<'_> {
    Outcome::Applied {
        stateful_set: sts,
        client_endpoint: "tc.payments.svc.cluster.local:8091".into(),
        selector: "app=txmesh".into(),
    }
}

fn condition<'a>(status: &'a TransactionCoordinatorStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition present")
}

#[test]
fn a_rolled_out_group_with_every_member_ready_is_available() {
    let sts = stateful_set(3, 3, 3);
    let status = status(&coordinator(None), &applied(&sts), &at(100));
    assert_eq!(status.phase, Some(Phase::Available));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!((status.replicas, status.ready_replicas), (3, 3));
    assert_eq!(condition(&status, AVAILABLE).status, "True");
    assert_eq!(condition(&status, PROGRESSING).reason, "UpToDate");
    assert_eq!(condition(&status, DEGRADED).status, "False");
    assert_eq!(
        status.client_endpoint.as_deref(),
        Some("tc.payments.svc.cluster.local:8091")
    );
}

#[test]
fn progress_says_what_is_still_changing() {
    for (sts, reason, message) in [
        (
            stateful_set(1, 1, 1),
            "Scaling",
            "1 of 3 coordinators exist",
        ),
        (
            stateful_set(3, 2, 1),
            "RollingOut",
            "1 of 3 coordinators run the current pod template",
        ),
        (
            stateful_set(3, 1, 3),
            "Joining",
            "1 of 3 coordinators are ready",
        ),
    ] {
        let status = status(&coordinator(None), &applied(&sts), &at(100));
        let progressing = condition(&status, PROGRESSING);
        assert_eq!(
            (
                progressing.status.as_str(),
                progressing.reason.as_str(),
                progressing.message.as_str()
            ),
            ("True", reason, message)
        );
        assert_eq!(status.phase, Some(Phase::Progressing), "{reason}");
        assert_eq!(condition(&status, AVAILABLE).status, "False", "{reason}");
    }
}

#[test]
fn transition_times_move_only_when_a_condition_changes() {
    let joining = stateful_set(3, 1, 3);
    let ready = stateful_set(3, 3, 3);
    let first = status(&coordinator(None), &applied(&joining), &at(100));
    let second = status(&coordinator(Some(first)), &applied(&ready), &at(200));
    assert_eq!(condition(&second, DEGRADED).last_transition_time, at(100));
    assert_eq!(condition(&second, AVAILABLE).last_transition_time, at(200));
    assert_eq!(
        condition(&second, PROGRESSING).last_transition_time,
        at(200)
    );
}

#[test]
fn an_invalid_spec_degrades_and_keeps_what_was_seen() {
    let sts = stateful_set(3, 3, 3);
    let before = status(&coordinator(None), &applied(&sts), &at(100));
    let status = status(
        &coordinator(Some(before)),
        &Outcome::InvalidSpec("replicas must be odd".into()),
        &at(200),
    );
    assert_eq!(status.phase, Some(Phase::Degraded));
    let degraded = condition(&status, DEGRADED);
    assert_eq!(
        (
            degraded.status.as_str(),
            degraded.reason.as_str(),
            degraded.message.as_str()
        ),
        ("True", "InvalidSpec", "replicas must be odd")
    );
    // The coordinators still run as before: availability and counts are unchanged.
    assert_eq!(condition(&status, AVAILABLE).status, "True");
    assert_eq!(status.ready_replicas, 3);
}

#[test]
fn paused_wins_the_summary() {
    let status = status(&coordinator(None), &Outcome::Paused, &at(100));
    assert_eq!(status.phase, Some(Phase::Paused));
    assert_eq!(condition(&status, PROGRESSING).reason, "Paused");
}
