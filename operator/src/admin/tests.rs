//! The client against the test double of the admin API.

use super::double::{Coordinators, Group, SERVICE, TOKEN, admin_address};
use super::*;

fn client(double: &Coordinators, token: &str) -> AdminClient {
    AdminClient::new(token.into(), Duration::from_secs(5)).routed(Some(double.addr))
}

#[tokio::test]
async fn the_view_comes_from_the_leader_even_when_a_follower_answers_first() {
    let double = Coordinators::start(Group::settled(3, 3)).await;
    let view = client(&double, TOKEN)
        .view(&[SERVICE.into(), admin_address(0)])
        .await
        .expect("a view");
    // The Service reached node 1, a follower; its view named the leader, whose view this is.
    assert!(view.is_leaders(), "{view:?}");
    assert_eq!((view.node_id, view.leader_id), (3, Some(3)));
    assert_eq!(view.members.len(), 3);
    assert!(
        view.members
            .iter()
            .all(|m| m.caught_up == Some(true) && m.reachable)
    );
    assert_eq!(view.members[2].role, Role::Leader);
}

#[tokio::test]
async fn a_view_is_asked_of_the_next_address_when_one_does_not_answer() {
    let mut group = Group::settled(3, 1);
    group.running.remove(&2);
    let double = Coordinators::start(group).await;
    let view = client(&double, TOKEN)
        .view(&[admin_address(1), admin_address(0)])
        .await
        .expect("a view");
    assert_eq!(view.node_id, 1);
    assert!(!view.members[1].reachable);
}

#[tokio::test]
async fn a_change_sent_to_a_follower_follows_its_421_to_the_leader() {
    let double = Coordinators::start(Group::settled(3, 2)).await;
    let admin = client(&double, TOKEN);
    let changed = admin
        .change(&admin_address(0), &Change::TransferLeadership(3))
        .await
        .expect("transferred");
    assert!(changed);
    // Asking for what already is changes nothing.
    let again = admin
        .change(&admin_address(2), &Change::TransferLeadership(3))
        .await
        .expect("no change");
    assert!(!again);
    assert_eq!(double.group().log, ["transfer to 3"]);
}

#[tokio::test]
async fn refusals_carry_their_status_and_code() {
    let double = Coordinators::start(Group::settled(3, 1)).await;
    let error = client(&double, TOKEN)
        .change(&admin_address(0), &Change::Remove(1))
        .await
        .expect_err("the leader cannot remove itself");
    assert_eq!(error.code(), Some("RemovingLeader"));
    assert!(
        matches!(&error, AdminError::Refused { status, .. } if *status == StatusCode::CONFLICT),
        "{error}"
    );
    let error = client(&double, "wrong")
        .change(&admin_address(0), &Change::Promote(2))
        .await
        .expect_err("a wrong token");
    assert!(
        matches!(&error, AdminError::Refused { status, .. } if *status == StatusCode::UNAUTHORIZED),
        "{error}"
    );
}

#[tokio::test]
async fn a_learner_is_added_and_promoted_once_caught_up() {
    let double = Coordinators::start(Group::settled(3, 1)).await;
    double.group().running.insert(4);
    let admin = client(&double, TOKEN);
    let address = "tc-3.tc-peers.payments.svc.cluster.local:9091".to_owned();
    let learner = Change::AddLearner { id: 4, address };
    assert!(
        admin
            .change(&admin_address(0), &learner)
            .await
            .expect("added")
    );
    assert!(
        !admin
            .change(&admin_address(0), &learner)
            .await
            .expect("again")
    );
    let early = admin.change(&admin_address(0), &Change::Promote(4)).await;
    assert_eq!(
        early.expect_err("not caught up").code(),
        Some("NotCaughtUp")
    );
    double.group().tick();
    double.group().tick();
    assert!(
        admin
            .change(&admin_address(0), &Change::Promote(4))
            .await
            .expect("promoted")
    );
    assert_eq!(double.group().log, ["add learner 4", "promote 4"]);
}
