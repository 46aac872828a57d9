use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::admin::MemberView;

/// A leader's view of voters 1-3, led by node 1, node 3 behind.
fn view() -> ClusterView {
    let member = |id: u64, role: Role, caught_up: bool| MemberView {
        id,
        address: format!("tc-{}.tc-peers.payments.svc.cluster.local:9091", id - 1),
        role,
        match_index: Some(if caught_up { 500 } else { 20 }),
        caught_up: Some(caught_up),
        reachable: true,
    };
    ClusterView {
        node_id: 1,
        state: "leader".into(),
        leader_id: Some(1),
        leader_admin_address: Some("tc-0.tc-peers.payments.svc.cluster.local:7091".into()),
        change_in_progress: false,
        last_log_index: Some(500),
        members: vec![
            member(1, Role::Leader, true),
            member(2, Role::Follower, true),
            member(3, Role::Learner, false),
        ],
    }
}

fn coordinator(status: Option<TransactionCoordinatorStatus>) -> TransactionCoordinator {
    let mut tc = crate::fixtures::coordinator(json!({"generation": 2}), json!({}));
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

fn applied<'a>(
    sts: &'a StatefulSet,
    view: Option<&'a ClusterView>,
    report: &'a Report,
) -> Outcome<'a> {
    Outcome::Applied {
        stateful_set: sts,
        view,
        report,
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
fn a_settled_group_with_every_member_ready_is_available() {
    let sts = stateful_set(3, 3, 3);
    let view = view();
    let status = status(
        &coordinator(None),
        &applied(&sts, Some(&view), &Report::Settled),
        &at(100),
    );
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
    assert_eq!(status.leader.as_deref(), Some("tc-0"));
    let members: Vec<(&str, i64, MemberRole, bool)> = status
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.id, m.role, m.caught_up))
        .collect();
    assert_eq!(
        members,
        [
            ("tc-0", 1, MemberRole::Leader, true),
            ("tc-1", 2, MemberRole::Follower, true),
            ("tc-2", 3, MemberRole::Learner, false),
        ]
    );
}

#[test]
fn without_a_leader_the_group_is_not_available() {
    let sts = stateful_set(3, 3, 3);
    let status = status(
        &coordinator(None),
        &applied(&sts, None, &Report::Settled),
        &at(100),
    );
    assert_eq!(condition(&status, AVAILABLE).status, "False");
    assert_eq!(status.leader, None);
    assert!(status.members.is_empty());
    assert_eq!(status.phase, Some(Phase::Progressing));
}

#[test]
fn a_step_shows_as_progressing_and_a_blocker_as_degraded() {
    let sts = stateful_set(4, 3, 4);
    let view = view();
    let step = Report::Progressing {
        reason: "Promoting",
        message: "promoting tc-3 (node 4) to voter".into(),
    };
    let stepping = status(
        &coordinator(None),
        &applied(&sts, Some(&view), &step),
        &at(100),
    );
    let progressing = condition(&stepping, PROGRESSING);
    assert_eq!(
        (
            progressing.status.as_str(),
            progressing.reason.as_str(),
            progressing.message.as_str()
        ),
        ("True", "Promoting", "promoting tc-3 (node 4) to voter")
    );
    assert_eq!(stepping.phase, Some(Phase::Progressing));
    let blocker = Report::Blocked {
        reason: "QuorumAtRisk",
        message: "restarting node 3 would leave 1 of 3 voters".into(),
    };
    let tc = coordinator(Some(stepping));
    assert!(is_new_blocker(
        &tc,
        "QuorumAtRisk",
        "restarting node 3 would leave 1 of 3 voters"
    ));
    let blocked = status(&tc, &applied(&sts, Some(&view), &blocker), &at(200));
    let degraded = condition(&blocked, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "QuorumAtRisk")
    );
    assert_eq!(condition(&blocked, PROGRESSING).status, "False");
    assert_eq!(blocked.phase, Some(Phase::Degraded));
    let tc = coordinator(Some(blocked));
    assert!(!is_new_blocker(
        &tc,
        "QuorumAtRisk",
        "restarting node 3 would leave 1 of 3 voters"
    ));
}

#[test]
fn transition_times_move_only_when_a_condition_changes() {
    let joining = stateful_set(3, 1, 3);
    let ready = stateful_set(3, 3, 3);
    let view = view();
    let first = status(
        &coordinator(None),
        &applied(&joining, Some(&view), &Report::Settled),
        &at(100),
    );
    assert_eq!(condition(&first, PROGRESSING).reason, "Joining");
    let second = status(
        &coordinator(Some(first)),
        &applied(&ready, Some(&view), &Report::Settled),
        &at(200),
    );
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
    let view = view();
    let before = status(
        &coordinator(None),
        &applied(&sts, Some(&view), &Report::Settled),
        &at(100),
    );
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
