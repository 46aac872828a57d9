//! A test double of the coordinators' admin API (docs/admin-api.md), minimal but faithful:
//! one listener stands in for every pod of group `tc` in namespace `payments` and tells them
//! apart by the `Host` header; reads are open, changes need the token and the leader
//! (followers answer 421 naming it), and the documented refusals are checked (`NotCaughtUp`,
//! `WouldLoseQuorum`, `RemovingLeader`, `NotAVoter`, `Unreachable`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The admin token the double expects.
pub(crate) const TOKEN: &str = "test-admin-token";

/// Pod `ordinal`'s admin address.
pub(crate) fn admin_address(ordinal: u64) -> String {
    format!("tc-{ordinal}.tc-peers.payments.svc.cluster.local:7091")
}

/// The client Service's admin address.
pub(crate) const SERVICE: &str = "tc.payments.svc.cluster.local:7091";

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// Its Raft address.
    pub address: String,
    /// A voter (else a learner).
    pub voter: bool,
    /// Ticks until caught up (0: caught up).
    pub lag: u8,
}

/// The group the double serves.
#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Members by node id.
    pub members: BTreeMap<u64, Node>,
    /// The leading node.
    pub leader: Option<u64>,
    /// Nodes whose process runs (they answer, and count as reachable).
    pub running: BTreeSet<u64>,
    /// Every change made, and what the test adds (restarts), in order.
    pub log: Vec<String>,
    /// Refuse the next change with 409 and this code.
    pub refuse_next: Option<&'static str>,
}

impl Group {
    /// `voters` caught-up voters (ids 1..), running, led by `leader`.
    pub fn settled(voters: u64, leader: u64) -> Self {
        let members = (1..=voters)
            .map(|id| {
                let address = format!("tc-{}.tc-peers.payments.svc.cluster.local:9091", id - 1);
                let node = Node {
                    address,
                    voter: true,
                    lag: 0,
                };
                (id, node)
            })
            .collect();
        Self {
            members,
            leader: Some(leader),
            running: (1..=voters).collect(),
            ..Self::default()
        }
    }

    /// Time passes: running members catch up a step.
    pub fn tick(&mut self) {
        for (id, node) in &mut self.members {
            if self.running.contains(id) {
                node.lag = node.lag.saturating_sub(1);
            }
        }
    }

    /// Reachable and caught up; the leader always is.
    pub fn healthy(&self, id: u64) -> bool {
        self.leader == Some(id)
            || (self.running.contains(&id) && self.members.get(&id).is_some_and(|n| n.lag == 0))
    }

    /// Whether `voters` have a healthy majority.
    fn quorate(&self, voters: &BTreeSet<u64>) -> bool {
        voters.iter().filter(|id| self.healthy(**id)).count() > voters.len() / 2
    }

    fn voters(&self) -> BTreeSet<u64> {
        let voters = self.members.iter().filter(|(_, n)| n.voter);
        voters.map(|(id, _)| *id).collect()
    }

    fn view(&self, asked: u64) -> Value {
        let leading = self.leader == Some(asked);
        let state = match (leading, self.members.get(&asked)) {
            (true, _) => "leader",
            (false, Some(node)) if !node.voter => "learner",
            _ => "follower",
        };
        let members: Vec<Value> = self
            .members
            .iter()
            .map(|(id, node)| {
                let role = match (self.leader == Some(*id), node.voter) {
                    (true, _) => "leader",
                    (false, true) => "follower",
                    (false, false) => "learner",
                };
                json!({
                    "id": id,
                    "address": node.address,
                    "adminAddress": admin_address(id - 1),
                    "seataAddress": null,
                    "version": "0.1.0",
                    "role": role,
                    "matchIndex": leading.then_some(100 - u64::from(node.lag)),
                    "caughtUp": leading.then_some(node.lag == 0),
                    "reachable": self.running.contains(id),
                })
            })
            .collect();
        json!({
            "nodeId": asked,
            "state": state,
            "term": 3,
            "leaderId": self.leader,
            "leaderAdminAddress": self.leader.map(|id| admin_address(id - 1)),
            "committedIndex": 100,
            "appliedIndex": 100,
            "lastLogIndex": 100,
            "caughtUpLag": 100,
            "changeInProgress": false,
            "members": members,
        })
    }

    /// The node a `Host` stands for: a pod's, or the client Service's (a running follower,
    /// else the leader).
    fn asked(&self, host: &str) -> Option<u64> {
        if host == SERVICE {
            let followers = self.running.iter().copied();
            return followers
                .filter(|id| Some(*id) != self.leader)
                .find(|id| self.members.contains_key(id))
                .or(self.leader);
        }
        let ordinal: u64 = host.strip_prefix("tc-")?.split('.').next()?.parse().ok()?;
        Some(ordinal + 1).filter(|id| self.running.contains(id))
    }

    fn change(&mut self, method: &Method, path: &str, body: &Value) -> Result<bool, Refusal> {
        if let Some(code) = self.refuse_next.take() {
            return Err(refusal(StatusCode::CONFLICT, code));
        }
        let id_in_path = |prefix: &str, suffix: &str| -> Option<u64> {
            path.strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()
        };
        let conflict = |code| Err(refusal(StatusCode::CONFLICT, code));
        if method == Method::POST && path == "/api/v1/cluster/learners" {
            let id = body["id"]
                .as_u64()
                .ok_or(refusal(StatusCode::BAD_REQUEST, "BadRequest"))?;
            let address = body["address"].as_str().unwrap_or_default().to_owned();
            if let Some(node) = self.members.get(&id) {
                return match node.address == address {
                    true => Ok(false),
                    false => conflict("MemberElsewhere"),
                };
            }
            self.members.insert(
                id,
                Node {
                    address,
                    voter: false,
                    lag: 2,
                },
            );
            self.log.push(format!("add learner {id}"));
            return Ok(true);
        }
        if let Some(id) = id_in_path("/api/v1/cluster/voters/", "/promote") {
            let Some(node) = self.members.get(&id) else {
                return Err(refusal(StatusCode::NOT_FOUND, "UnknownMember"));
            };
            if node.voter {
                return Ok(false);
            }
            if !self.healthy(id) {
                return conflict("NotCaughtUp");
            }
            let mut voters = self.voters();
            voters.insert(id);
            if !self.quorate(&voters) {
                return conflict("WouldLoseQuorum");
            }
            if let Some(node) = self.members.get_mut(&id) {
                node.voter = true;
            }
            self.log.push(format!("promote {id}"));
            return Ok(true);
        }
        if method == Method::DELETE
            && let Some(id) = id_in_path("/api/v1/cluster/members/", "")
        {
            if !self.members.contains_key(&id) {
                return Err(refusal(StatusCode::NOT_FOUND, "UnknownMember"));
            }
            if self.leader == Some(id) {
                return conflict("RemovingLeader");
            }
            let mut voters = self.voters();
            voters.remove(&id);
            if !self.quorate(&voters) {
                return conflict("WouldLoseQuorum");
            }
            self.members.remove(&id);
            self.log.push(format!("remove {id}"));
            return Ok(true);
        }
        if method == Method::POST && path == "/api/v1/cluster/leader" {
            let id = body["id"]
                .as_u64()
                .ok_or(refusal(StatusCode::BAD_REQUEST, "BadRequest"))?;
            if self.leader == Some(id) {
                return Ok(false);
            }
            if !self.voters().contains(&id) {
                return conflict("NotAVoter");
            }
            if !self.healthy(id) {
                return conflict("Unreachable");
            }
            self.leader = Some(id);
            self.log.push(format!("transfer to {id}"));
            return Ok(true);
        }
        Err(refusal(StatusCode::NOT_FOUND, "NoRoute"))
    }
}

type Refusal = (StatusCode, Value);

fn refusal(status: StatusCode, code: &str) -> Refusal {
    (
        status,
        json!({"error": format!("refused: {code}"), "code": code}),
    )
}

/// The double, serving on a local port until dropped.
pub(crate) struct Coordinators {
    /// Where it listens.
    pub addr: SocketAddr,
    group: Arc<Mutex<Group>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Coordinators {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Coordinators {
    /// Serves `group`.
    pub async fn start(group: Group) -> Self {
        let group = Arc::new(Mutex::new(group));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the double");
        let addr = listener.local_addr().expect("its address");
        let app = Router::new().fallback(answer).with_state(group.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, group, task }
    }

    /// The group, to look at or change between calls.
    pub fn group(&self) -> MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn answer(
    State(group): State<Arc<Mutex<Group>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut group = group.lock().unwrap_or_else(PoisonError::into_inner);
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    // A pod that does not run answers nothing; a real client would not even connect.
    let Some(asked) = group.asked(host) else {
        return (StatusCode::BAD_GATEWAY, "no such coordinator").into_response();
    };
    if method == Method::GET && uri.path() == "/api/v1/cluster" {
        return axum::Json(group.view(asked)).into_response();
    }
    let bearer = format!("Bearer {TOKEN}");
    if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some(bearer.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "a token is needed"})),
        )
            .into_response();
    }
    if group.leader != Some(asked) {
        let body = json!({
            "error": format!("node {asked} is not the leader"),
            "code": "NotLeader",
            "leaderId": group.leader,
            "leaderAdminAddress": group.leader.map(|id| admin_address(id - 1)),
        });
        return (StatusCode::MISDIRECTED_REQUEST, axum::Json(body)).into_response();
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match group.change(&method, uri.path(), &request) {
        Ok(changed) => {
            let cluster = group.view(asked);
            axum::Json(json!({"changed": changed, "cluster": cluster})).into_response()
        }
        Err((status, body)) => (status, axum::Json(body)).into_response(),
    }
}
