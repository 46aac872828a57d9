//! Raft membership through the admin API, on in-process groups over loopback: growing a group
//! learner by learner, promoting, removing, transferring leadership, the refusals, readiness,
//! and the endpoints Seata 2.x clients use to find the leader.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{BOUND, Body, Reply, begin, bounded, branch, commit, http, loopback_config, send};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::mpsc;
use txmesh_coordinator::config::{Peer, RaftTuning};
use txmesh_coordinator::{Coordinator, CoordinatorConfig};
use txmesh_seata::client::{ClientConfig, NoResources, SeataClient, ServerRequestHandler};
use txmesh_seata::message::{BranchEndRequest, BranchEndResponse, GlobalBeginRequest, TxResult};
use txmesh_seata::{BranchStatus, BranchType, GlobalStatus, Message, TransactionExceptionCode};

const TOKEN: &str = "cluster-token";
/// How often a poll looks again.
const POLL: Duration = Duration::from_millis(20);

/// One node: its data directory and, while it runs, its coordinator.
struct Member {
    dir: TempDir,
    coordinator: Coordinator,
}

/// Nodes by id; node 1 founds the group, the others join through the membership API.
struct Cluster {
    members: BTreeMap<u64, Member>,
    raft: RaftTuning,
}

impl Cluster {
    /// Node 1 alone, leading.
    async fn found(raft: RaftTuning) -> Self {
        let mut cluster = Self {
            members: BTreeMap::new(),
            raft,
        };
        cluster.start(1).await;
        assert!(
            cluster.node(1).wait_until_leading(BOUND).await,
            "node 1 leads"
        );
        cluster
    }

    /// Nodes 1, 2 and 3 as voters, grown through the API.
    async fn of_three() -> Self {
        let mut cluster = Self::found(RaftTuning::default()).await;
        for id in [2, 3] {
            cluster.start(id).await;
            cluster.join_as_voter(id).await;
        }
        cluster
    }

    /// Starts node `id`. Any node but 1 lists node 1 as a peer, so it does not found a group
    /// of its own but waits to be added.
    async fn start(&mut self, id: u64) {
        let dir = TempDir::new().expect("temp dir");
        let peers = match id {
            1 => Vec::new(),
            _ => vec![
                Peer {
                    id: 1,
                    addr: self.node(1).raft_addr().to_string(),
                },
                Peer {
                    id,
                    addr: "127.0.0.1:1".into(),
                },
            ],
        };
        let config = CoordinatorConfig {
            node_id: id,
            admin_token: Some(TOKEN.into()),
            raft: self.raft.clone(),
            peers,
            ..loopback_config(&dir)
        };
        let coordinator = bounded(Coordinator::start(config)).await.expect("starts");
        self.members.insert(id, Member { dir, coordinator });
    }

    /// Stops node `id` for good.
    async fn stop(&mut self, id: u64) {
        let member = self.members.remove(&id).expect("a running node");
        member.coordinator.stop().await;
        drop(member.dir);
    }

    fn node(&self, id: u64) -> &Coordinator {
        &self.members.get(&id).expect("a running node").coordinator
    }

    /// The node that leads, as its own status says.
    async fn leader(&self) -> u64 {
        bounded(async {
            loop {
                for (id, member) in &self.members {
                    if member.coordinator.node().is_leader() {
                        return *id;
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
    }

    async fn get(&self, id: u64, path: &str) -> Reply {
        http(self.node(id).http_addr(), "GET", path, None).await
    }

    /// A membership call with the token.
    async fn call(&self, id: u64, method: &str, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(Body::json);
        send(self.node(id).http_addr(), method, path, Some(TOKEN), body).await
    }

    async fn add_learner(&self, on: u64, id: u64, address: &str) -> Reply {
        let body = json!({ "id": id, "address": address });
        self.call(on, "POST", "/api/v1/cluster/learners", Some(body))
            .await
    }

    async fn promote(&self, on: u64, id: u64) -> Reply {
        let path = format!("/api/v1/cluster/voters/{id}/promote");
        self.call(on, "POST", &path, None).await
    }

    async fn remove(&self, on: u64, id: u64) -> Reply {
        let path = format!("/api/v1/cluster/members/{id}");
        self.call(on, "DELETE", &path, None).await
    }

    async fn transfer(&self, on: u64, id: u64) -> Reply {
        let body = json!({ "id": id });
        self.call(on, "POST", "/api/v1/cluster/leader", Some(body))
            .await
    }

    /// The leader's status of member `id`, polled until `done` holds for it.
    async fn until_member(&self, id: u64, done: impl Fn(&Value) -> bool) -> Value {
        bounded(async {
            loop {
                let leader = self.leader().await;
                let status = self.get(leader, "/api/v1/cluster").await.json();
                if let Some(member) = member(&status, id).filter(|member| done(member)) {
                    return member.clone();
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
    }

    /// Adds running node `id` as a learner, waits until it is caught up, promotes it.
    async fn join_as_voter(&self, id: u64) {
        let leader = self.leader().await;
        let address = self.node(id).raft_addr().to_string();
        let added = self.add_learner(leader, id, &address).await;
        assert_eq!(added.status, 200, "{}", added.body);
        assert_eq!(added.json()["changed"], true);
        self.until_member(id, |m| m["caughtUp"] == true).await;
        let promoted = self.promote(leader, id).await;
        assert_eq!(promoted.status, 200, "{}", promoted.body);
        let cluster = &promoted.json()["cluster"];
        assert_eq!(member(cluster, id).expect("a member")["role"], "follower");
    }

    async fn tm(&self, id: u64) -> SeataClient {
        let config = ClientConfig {
            application_id: "shop".into(),
            ..ClientConfig::default()
        };
        let addr = self.node(id).seata_addr().to_string();
        let client = SeataClient::connect(&addr, config, Arc::new(NoResources))
            .await
            .expect("connects");
        client.register_tm().await.expect("registers");
        client
    }

    /// Polls node `id` until it has applied the begin of `xid` (caught up allows some lag).
    async fn until_begun(&self, id: u64, xid: &str) {
        let path = format!("/api/v1/transactions/{xid}");
        bounded(async {
            while self.get(id, &path).await.status != 200 {
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        assert_eq!(self.get(id, &path).await.json()["status"], "Begin");
    }

    /// Polls node `id`'s readiness until it answers `status`.
    async fn until_ready_is(&self, id: u64, status: u16) {
        bounded(async {
            while self.get(id, "/readyz").await.status != status {
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
    }
}

/// An RM that reports every BranchCommit it receives and commits it.
struct CommitRecorder(mpsc::UnboundedSender<(String, i64)>);

impl ServerRequestHandler for CommitRecorder {
    async fn branch_commit(&self, request: BranchEndRequest) -> BranchEndResponse {
        let _ = self.0.send((request.xid.clone(), request.branch_id));
        BranchEndResponse {
            result: TxResult::success(),
            xid: request.xid,
            branch_id: request.branch_id,
            branch_status: BranchStatus::PhaseTwoCommitted,
        }
    }

    async fn branch_rollback(&self, request: BranchEndRequest) -> BranchEndResponse {
        panic!("no rollback expected: {request:?}")
    }
}

fn member(status: &Value, id: u64) -> Option<&Value> {
    status["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == id)
}

fn ids(status: &Value) -> Vec<u64> {
    status["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_u64().expect("an id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_grows_changes_members_and_hands_over_leadership() {
    let mut cluster = Cluster::of_three().await;
    let status = cluster.get(1, "/api/v1/cluster").await.json();
    assert_eq!(
        (status["nodeId"].as_u64(), status["leaderId"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(status["state"], "leader");
    assert_eq!(ids(&status), [1, 2, 3]);
    for m in status["members"].as_array().expect("members") {
        assert_eq!(
            (&m["caughtUp"], &m["reachable"]),
            (&json!(true), &json!(true)),
            "{m}"
        );
        assert!(m["matchIndex"].as_u64().is_some(), "{m}");
    }
    assert_eq!(member(&status, 1).expect("leader")["role"], "leader");
    // A follower knows who leads and where to send changes, but not how others replicate.
    let seen_by_2 = cluster.get(2, "/api/v1/cluster").await.json();
    assert_eq!(seen_by_2["state"], "follower");
    assert_eq!(seen_by_2["leaderId"], 1);
    let leader_admin = cluster.node(1).http_addr().to_string();
    assert_eq!(seen_by_2["leaderAdminAddress"], leader_admin.as_str());
    assert_eq!(
        member(&seen_by_2, 3).expect("member 3")["matchIndex"],
        Value::Null
    );

    // State written before a node joins reaches it.
    let tm = cluster.tm(1).await;
    let xid = begin(&tm, 60_000).await;

    cluster.start(4).await;
    let address = cluster.node(4).raft_addr().to_string();
    let added = cluster.add_learner(1, 4, &address).await.json();
    assert_eq!(
        member(&added["cluster"], 4).expect("member 4")["role"],
        "learner"
    );
    let again = cluster.add_learner(1, 4, &address).await;
    assert_eq!(
        (again.status, &again.json()["changed"]),
        (200, &json!(false))
    );
    cluster.until_member(4, |m| m["caughtUp"] == true).await;
    let promoted = cluster.promote(1, 4).await;
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    cluster.until_begun(4, &xid).await;

    let removed = cluster.remove(1, 3).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(ids(&removed.json()["cluster"]), [1, 2, 4]);
    cluster.stop(3).await;

    let transferred = cluster.transfer(1, 4).await;
    assert_eq!(transferred.status, 200, "{}", transferred.body);
    assert_eq!(transferred.json()["changed"], true);
    assert!(
        cluster.node(4).wait_until_leading(BOUND).await,
        "node 4 leads"
    );
    let status = cluster.get(4, "/api/v1/cluster").await.json();
    assert_eq!(
        (status["leaderId"].as_u64(), status["state"].as_str()),
        (Some(4), Some("leader"))
    );
    assert_eq!(member(&status, 1).expect("member 1")["role"], "follower");
    // The transaction begun under node 1 is still there under node 4.
    cluster.until_begun(4, &xid).await;

    // The old leader now sends changes to the new one.
    let redirected = cluster.remove(1, 2).await;
    redirected.error(421);
    let body = redirected.json();
    assert_eq!(body["code"], "NotLeader");
    assert_eq!(body["leaderId"], 4);
    let new_admin = cluster.node(4).http_addr().to_string();
    assert_eq!(body["leaderAdminAddress"], new_admin.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_or_malformed_changes_are_refused_with_reasons() {
    let mut cluster = Cluster::of_three().await;

    let anonymous = http(
        cluster.node(1).http_addr(),
        "DELETE",
        "/api/v1/cluster/members/3",
        None,
    );
    anonymous.await.error(401);
    let wrong = send(
        cluster.node(1).http_addr(),
        "DELETE",
        "/api/v1/cluster/members/3",
        Some("guess"),
        None,
    );
    wrong.await.error(401);

    let leader = cluster.remove(1, 1).await;
    assert!(
        leader.error(409).contains("transfer leadership"),
        "{}",
        leader.body
    );
    assert_eq!(leader.json()["code"], "RemovingLeader");
    cluster.remove(1, 9).await.error(404);
    cluster.promote(1, 9).await.error(404);
    cluster
        .call(1, "POST", "/api/v1/cluster/voters/x/promote", None)
        .await
        .error(400);
    let voter = cluster.promote(1, 2).await;
    assert_eq!(
        (voter.status, &voter.json()["changed"]),
        (200, &json!(false))
    );

    cluster.add_learner(1, 5, "no-port").await.error(400);
    let body = Some(json!({ "id": 5 }));
    cluster
        .call(1, "POST", "/api/v1/cluster/learners", body)
        .await
        .error(400);
    let elsewhere = cluster.add_learner(1, 2, "127.0.0.1:2").await;
    assert_eq!(elsewhere.status, 409, "{}", elsewhere.body);
    assert_eq!(elsewhere.json()["code"], "MemberElsewhere");
    let taken = cluster.node(2).raft_addr().to_string();
    assert_eq!(
        cluster.add_learner(1, 5, &taken).await.json()["code"],
        "AddressTaken"
    );

    // Nothing listens at this learner's address: it never catches up.
    let absent = cluster.add_learner(1, 5, "127.0.0.1:1").await;
    assert_eq!(absent.status, 200, "{}", absent.body);
    let behind = cluster.promote(1, 5).await;
    assert!(
        behind.error(409).contains("not caught up"),
        "{}",
        behind.body
    );
    let to_learner = cluster.transfer(1, 5).await;
    assert_eq!(
        (to_learner.status, &to_learner.json()["code"]),
        (409, &json!("NotAVoter"))
    );
    assert_eq!(
        cluster.remove(1, 5).await.status,
        200,
        "a learner goes at once"
    );

    // Changes belong on the leader.
    let follower = cluster.promote(2, 3).await;
    follower.error(421);
    let hint = follower.json();
    assert_eq!(hint["leaderId"], 1);
    let admin = cluster.node(1).http_addr().to_string();
    assert_eq!(hint["leaderAdminAddress"], admin.as_str());

    // With node 3 down, removing node 2 would leave {1, 3}: no quorum. Removing 3 is fine.
    cluster.stop(3).await;
    let lose = cluster.remove(1, 2).await;
    assert_eq!(lose.status, 409, "{}", lose.body);
    assert_eq!(lose.json()["code"], "WouldLoseQuorum");
    let status = cluster.get(1, "/api/v1/cluster").await.json();
    assert_eq!(member(&status, 3).expect("member 3")["reachable"], false);
    assert_eq!(cluster.remove(1, 3).await.status, 200);
    assert_eq!(ids(&cluster.get(1, "/api/v1/cluster").await.json()), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_membership_and_catching_up() {
    let mut cluster = Cluster::found(RaftTuning::default()).await;
    assert_eq!(
        cluster.get(1, "/readyz").await.status,
        200,
        "a leader is ready"
    );
    cluster.start(2).await;
    // Started but not added: alive, not ready.
    assert_eq!(cluster.get(2, "/healthz").await.status, 200);
    let not_member = cluster.get(2, "/readyz").await;
    assert!(
        not_member.error(503).contains("not a member"),
        "{}",
        not_member.body
    );
    let address = cluster.node(2).raft_addr().to_string();
    assert_eq!(cluster.add_learner(1, 2, &address).await.status, 200);
    cluster.until_ready_is(2, 200).await;
    let status = cluster.get(1, "/api/v1/cluster").await.json();
    assert_eq!(member(&status, 2).expect("member 2")["caughtUp"], true);
    // The leader gone, the learner is alive but not ready.
    cluster.stop(1).await;
    cluster.until_ready_is(2, 503).await;
    assert_eq!(cluster.get(2, "/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_far_behind_catches_up_from_a_snapshot() {
    let tuning = RaftTuning {
        snapshot_every_entries: 100,
        ..RaftTuning::default()
    };
    let mut cluster = Cluster::found(tuning).await;
    let tm = cluster.tm(1).await;
    // One begin at a time is one log entry each: enough for the log to be purged past what
    // the snapshot covers (openraft keeps the last 1,000 entries).
    let mut xids = Vec::new();
    while cluster
        .node(1)
        .node()
        .raft
        .metrics()
        .borrow()
        .purged
        .is_none()
    {
        xids.push(bounded(begin(&tm, 600_000)).await);
        assert!(xids.len() < 5_000, "the log is never purged");
    }
    cluster.start(2).await;
    let address = cluster.node(2).raft_addr().to_string();
    assert_eq!(cluster.add_learner(1, 2, &address).await.status, 200);
    cluster.until_member(2, |m| m["caughtUp"] == true).await;
    // The leader's log no longer starts at the first transaction, so the learner can have it
    // only from a snapshot.
    let learner = cluster.node(2).node().raft.metrics().borrow().clone();
    assert!(
        learner.snapshot.is_some(),
        "installed a snapshot: {learner:?}"
    );
    for xid in [xids.first(), xids.last()].into_iter().flatten() {
        cluster.until_begun(2, xid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seata_clients_log_in_read_the_metadata_and_watch_the_term() {
    let cluster = Cluster::of_three().await;
    let addr = cluster.node(2).http_addr();

    let wrong = json!({ "username": "seata", "password": "nope" });
    let refused = send(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(Body::json(wrong)),
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["code"], "401");
    let right = json!({ "username": "seata", "password": "seata" });
    let login = send(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(Body::json(right)),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let result = login.json();
    assert_eq!(
        (&result["code"], &result["success"]),
        (&json!("200"), &json!(true))
    );
    let bearer = result["data"].as_str().expect("a token");
    assert!(bearer.starts_with("Bearer "), "{bearer}");
    assert_eq!(login.header("authorization"), Some(bearer));

    for path in ["/metadata/v1/cluster", "/metadata/v1/cluster?group=default"] {
        let metadata = http(addr, "GET", path, None).await.json();
        assert_eq!(metadata["storeMode"], "raft");
        let term = cluster.node(1).node().raft.metrics().borrow().current_term;
        assert_eq!(metadata["term"], term);
        let nodes = metadata["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), 3);
        let leaders: Vec<&Value> = nodes.iter().filter(|n| n["role"] == "LEADER").collect();
        assert_eq!(leaders.len(), 1, "{nodes:?}");
        let leader = cluster.node(1);
        let endpoint =
            |addr: std::net::SocketAddr| json!({ "host": "127.0.0.1", "port": addr.port() });
        assert_eq!(leaders[0]["transaction"], endpoint(leader.seata_addr()));
        assert_eq!(leaders[0]["control"], endpoint(leader.http_addr()));
        assert_eq!(leaders[0]["internal"], endpoint(leader.raft_addr()));
        assert_eq!(leaders[0]["group"], "default");
        let registration_version = CoordinatorConfig::default().server.version;
        assert!(
            nodes.iter().all(|n| n["version"] == registration_version),
            "the version registrations report, everywhere: {nodes:?}"
        );
        let roles: Vec<&str> = nodes.iter().filter_map(|n| n["role"].as_str()).collect();
        assert_eq!(
            roles.iter().filter(|r| **r == "FOLLOWER").count(),
            2,
            "{roles:?}"
        );
    }
    let unknown = http(addr, "GET", "/metadata/v1/cluster?group=other", None).await;
    assert!(
        unknown.error(404).contains("vgroupMapping"),
        "{}",
        unknown.body
    );

    let term = cluster.node(1).node().raft.metrics().borrow().current_term;
    let watch = |form: String| async move {
        send(
            addr,
            "POST",
            "/metadata/v1/watch",
            None,
            Some(Body::form(&form)),
        )
        .await
    };
    assert_eq!(
        watch(format!("default={term}&timeout=50")).await.status,
        304
    );
    assert_eq!(
        watch(format!("default={}&timeout=5000", term - 1))
            .await
            .status,
        200
    );
    watch("timeout=50".into()).await.error(400);
    watch("other=1&timeout=50".into()).await.error(404);

    // A watch on the current term answers once leadership moves on.
    let pending = tokio::spawn(watch(format!("default={term}&timeout=8000")));
    let moved = cluster.transfer(1, 2).await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(bounded(pending).await.expect("watched").status, 200);
    let metadata = http(addr, "GET", "/metadata/v1/cluster", None).await.json();
    assert!(metadata["term"].as_u64() > Some(term));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rm_registered_on_a_follower_gets_phase_two_once_it_leads() {
    let cluster = Cluster::of_three().await;
    let follower = cluster.node(2).seata_addr().to_string();
    // Seata's raft-mode clients register with every node; a follower accepts and keeps them.
    let tm = cluster.tm(2).await;
    let (commits, mut committed) = mpsc::unbounded_channel();
    let config = ClientConfig {
        application_id: "stock".into(),
        ..ClientConfig::default()
    };
    let rm = SeataClient::connect(&follower, config, Arc::new(CommitRecorder(commits)))
        .await
        .expect("connects");
    rm.register_rm(&["debit".to_owned()])
        .await
        .expect("a follower accepts the registration");
    let on_follower = GlobalBeginRequest {
        timeout: 60_000,
        transaction_name: "transfer".into(),
    };
    match tm
        .call(Message::GlobalBeginRequest(on_follower))
        .await
        .expect("answered")
    {
        Message::GlobalBeginResponse(r) => assert_eq!(
            (r.result.is_success(), r.result.exception_code),
            (false, TransactionExceptionCode::NotRaftLeader),
            "a follower still serves no transaction"
        ),
        other => panic!("unexpected answer {other:?}"),
    }

    let transferred = cluster.transfer(1, 2).await;
    assert_eq!(transferred.status, 200, "{}", transferred.body);
    assert!(
        cluster.node(2).wait_until_leading(BOUND).await,
        "node 2 leads"
    );
    let xid = begin(&tm, 60_000).await;
    let branch_id = branch(&rm, &xid, BranchType::Tcc, "debit", "").await;
    assert_eq!(commit(&tm, &xid).await, GlobalStatus::Committed);
    let received = bounded(committed.recv())
        .await
        .expect("BranchCommit arrives");
    assert_eq!(received, (xid, branch_id));
    assert!(
        rm.close_reason().is_none() && tm.close_reason().is_none(),
        "both connections outlived the change of leader"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_begun_under_a_dead_leader_is_continued_under_the_next() {
    let mut cluster = Cluster::of_three().await;
    assert_eq!(cluster.leader().await, 1);
    // RMs register with every node, as Seata's raft-mode clients do.
    let (commits, mut committed) = mpsc::unbounded_channel();
    let mut rms = BTreeMap::new();
    for id in [1, 2, 3] {
        let config = ClientConfig {
            application_id: "stock".into(),
            ..ClientConfig::default()
        };
        let addr = cluster.node(id).seata_addr().to_string();
        let recorder = Arc::new(CommitRecorder(commits.clone()));
        let rm = SeataClient::connect(&addr, config, recorder)
            .await
            .expect("connects");
        rm.register_rm(&["debit".to_owned()])
            .await
            .expect("registers");
        rms.insert(id, rm);
    }
    let xid = begin(&cluster.tm(1).await, 60_000).await;
    let first = branch(&rms[&1], &xid, BranchType::Tcc, "debit", "").await;

    cluster.stop(1).await;
    let successor = cluster.leader().await;
    // Unlike Seata's raft mode, the new leader does not roll live transactions back.
    cluster.until_begun(successor, &xid).await;
    let second = branch(&rms[&successor], &xid, BranchType::Tcc, "debit", "").await;
    let tm = cluster.tm(successor).await;
    assert_eq!(commit(&tm, &xid).await, GlobalStatus::Committed);
    let mut received = Vec::new();
    for _ in 0..2 {
        received.push(
            bounded(committed.recv())
                .await
                .expect("BranchCommit arrives"),
        );
    }
    assert_eq!(
        received,
        [(xid.clone(), first), (xid, second)],
        "both branches committed, in registration order"
    );
}
