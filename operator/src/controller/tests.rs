//! The reconciler against a mocked API server (tower-test, as in kube-rs controller-rs): each
//! test scripts the requests it expects, in order, answers them, and checks that nothing else
//! was asked.

use http::{Method, StatusCode};
use kube::runtime::events::Reporter;
use serde_json::{Value, json};

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::*;
use crate::admin::double::{Coordinators, Group, TOKEN};
use crate::mock_api::{self, ApiHandle, expect, fail, not_found, respond};

const STATEFUL_SET: &str = "/apis/apps/v1/namespaces/payments/statefulsets/tc";
const ADMIN_TOKEN: &str = "/api/v1/namespaces/payments/secrets/tc-admin-token";

fn context() -> (Arc<Context>, ApiHandle) {
    let (client, handle) = mock_api::client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    );
    let ctx = Context::new(
        client,
        recorder,
        BuildConfig::default(),
        Arc::new(Metrics::default()),
    );
    (Arc::new(ctx), handle)
}

/// A resource as the API server would hand it over, with `spec` over a minimal spec.
fn coordinator(spec: Value, finalizers: &[&str]) -> TransactionCoordinator {
    let metadata = json!({
        "uid": "0b6d3c3e-6f1e-4c55-9d3a-1f2a3b4c5d6e",
        "generation": 1,
        "resourceVersion": "100",
        "finalizers": finalizers,
    });
    crate::fixtures::coordinator(metadata, spec)
}

/// Answers a server-side apply with the applied object.
async fn expect_apply(handle: &mut ApiHandle, path: &str) -> Value {
    let (body, send) = expect(handle, Method::PATCH, path).await;
    respond(send, StatusCode::OK, &body);
    body
}

/// How every apply pass of a group without a StatefulSet starts: the StatefulSet looked up
/// (none), the admin-token Secret read (answered with `existing`, or 404) and applied. The
/// applied Secret.
async fn expect_token_applied(handle: &mut ApiHandle, existing: Option<&Value>) -> Value {
    let (_, send) = expect(handle, Method::GET, STATEFUL_SET).await;
    not_found(send);
    let (_, send) = expect(handle, Method::GET, ADMIN_TOKEN).await;
    match existing {
        Some(secret) => respond(send, StatusCode::OK, secret),
        None => not_found(send),
    }
    expect_apply(handle, ADMIN_TOKEN).await
}

/// Answers an Event creation; returns the Event.
async fn expect_event(handle: &mut ApiHandle) -> Value {
    let (body, send) = expect(
        handle,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/payments/events",
    )
    .await;
    respond(send, StatusCode::CREATED, &body);
    body
}

/// Answers the status patch with the resource carrying that status; returns the status.
async fn expect_status(handle: &mut ApiHandle, tc: &TransactionCoordinator) -> Value {
    let (body, send) = expect(
        handle,
        Method::PATCH,
        "/apis/txmesh.io/v1alpha1/namespaces/payments/transactioncoordinators/tc/status",
    )
    .await;
    let mut object = serde_json::to_value(tc).expect("JSON");
    object["status"] = body["status"].clone();
    respond(send, StatusCode::OK, &object);
    body["status"].clone()
}

/// After the reconcile, no further request may come.
async fn expect_no_more(ctx: Arc<Context>, handle: ApiHandle) {
    drop(ctx);
    mock_api::expect_no_more(handle).await;
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn a_new_resource_gets_the_finalizer_before_anything_else() {
    let (ctx, mut handle) = context();
    let tc = coordinator(json!({}), &[]);
    let server = async {
        let (patch, send) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/txmesh.io/v1alpha1/namespaces/payments/transactioncoordinators/tc",
        )
        .await;
        assert_eq!(patch[1]["op"], "add");
        assert_eq!(patch[1]["value"], json!([FINALIZER]));
        respond(
            send,
            StatusCode::OK,
            &serde_json::to_value(coordinator(json!({}), &[FINALIZER])).expect("JSON"),
        );
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc), ctx.clone()), server);
    assert_eq!(action.expect("reconciled"), Action::await_change());
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn create_applies_every_object_then_reports_progress() {
    let (ctx, mut handle) = context();
    let tc = coordinator(json!({}), &[FINALIZER]);
    let server = async {
        let ns = "/api/v1/namespaces/payments";
        let secret = expect_token_applied(&mut handle, None).await;
        let token = secret["data"]["admin-token"].as_str().expect("token");
        // 32 random bytes as hex, base64-encoded: 88 characters.
        assert_eq!(token.len(), 88, "{token}");
        expect_apply(&mut handle, &format!("{ns}/configmaps/tc-config")).await;
        let peers = expect_apply(&mut handle, &format!("{ns}/services/tc-peers")).await;
        assert_eq!(peers["spec"]["publishNotReadyAddresses"], true);
        expect_apply(&mut handle, &format!("{ns}/services/tc")).await;
        let sts = expect_apply(
            &mut handle,
            "/apis/apps/v1/namespaces/payments/statefulsets/tc",
        )
        .await;
        assert_eq!(sts["spec"]["replicas"], 3);
        expect_apply(
            &mut handle,
            "/apis/policy/v1/namespaces/payments/poddisruptionbudgets/tc",
        )
        .await;
        // No ServiceMonitor asked for: one left from an earlier spec would be deleted.
        let (_, send) = expect(
            &mut handle,
            Method::DELETE,
            "/apis/monitoring.coreos.com/v1/namespaces/payments/servicemonitors/tc",
        )
        .await;
        not_found(send);
        let event = expect_event(&mut handle).await;
        assert_eq!(
            (&event["type"], &event["reason"]),
            (&json!("Normal"), &json!("Created"))
        );
        let status = expect_status(&mut handle, &tc).await;
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(status["phase"], "Progressing");
        assert_eq!(condition(&status, "Progressing")["reason"], "Creating");
        assert_eq!(condition(&status, "Available")["status"], "False");
        assert_eq!(condition(&status, "Degraded")["status"], "False");
        assert_eq!(
            status["clientEndpoint"],
            "tc.payments.svc.cluster.local:8091"
        );
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    assert_eq!(
        action.expect("reconciled"),
        Action::requeue(PROGRESS_REQUEUE)
    );
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_with_a_warning_and_waits_for_a_change() {
    let (ctx, mut handle) = context();
    // Even replicas get past an API server whose CRD lacks the CEL rule.
    let tc = coordinator(json!({"replicas": 4}), &[FINALIZER]);
    let server = async {
        let event = expect_event(&mut handle).await;
        assert_eq!(
            (&event["type"], &event["reason"]),
            (&json!("Warning"), &json!("InvalidSpec"))
        );
        let note = event["note"].as_str().expect("note");
        assert!(note.contains("replicas must be odd"), "{note}");
        let status = expect_status(&mut handle, &tc).await;
        assert_eq!(status["phase"], "Degraded");
        let degraded = condition(&status, "Degraded");
        assert_eq!(
            (&degraded["status"], &degraded["reason"]),
            (&json!("True"), &json!("InvalidSpec"))
        );
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    // No requeue at all: the next reconcile comes from the user's next change.
    assert_eq!(action.expect("reconciled"), Action::await_change());
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn deletion_announces_itself_and_releases_the_finalizer() {
    let (ctx, mut handle) = context();
    let mut tc = coordinator(json!({}), &[FINALIZER]);
    tc.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    let server = async {
        let event = expect_event(&mut handle).await;
        assert_eq!(event["reason"], "Deleting");
        let (patch, send) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/txmesh.io/v1alpha1/namespaces/payments/transactioncoordinators/tc",
        )
        .await;
        assert_eq!(
            patch[1],
            json!({"op": "remove", "path": "/metadata/finalizers/0"})
        );
        respond(
            send,
            StatusCode::OK,
            &serde_json::to_value(coordinator(json!({}), &[])).expect("JSON"),
        );
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc), ctx.clone()), server);
    assert_eq!(action.expect("reconciled"), Action::await_change());
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn an_update_keeps_the_admin_token_and_announces_the_new_generation() {
    let (ctx, mut handle) = context();
    let mut tc = coordinator(json!({"image": "txmesh/txmesh:0.2.0"}), &[FINALIZER]);
    tc.metadata.generation = Some(2);
    tc.status = Some(txmesh_crds::TransactionCoordinatorStatus {
        observed_generation: Some(1),
        ..Default::default()
    });
    let server = async {
        let ns = "/api/v1/namespaces/payments";
        let existing = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tc-admin-token", "namespace": "payments"},
            "data": {"admin-token": "a2VwdC10b2tlbg=="},
        });
        let secret = expect_token_applied(&mut handle, Some(&existing)).await;
        assert_eq!(
            secret["data"]["admin-token"], "a2VwdC10b2tlbg==",
            "the token is kept"
        );
        expect_apply(&mut handle, &format!("{ns}/configmaps/tc-config")).await;
        expect_apply(&mut handle, &format!("{ns}/services/tc-peers")).await;
        expect_apply(&mut handle, &format!("{ns}/services/tc")).await;
        let sts = expect_apply(
            &mut handle,
            "/apis/apps/v1/namespaces/payments/statefulsets/tc",
        )
        .await;
        assert_eq!(
            sts["spec"]["template"]["spec"]["containers"][0]["image"],
            "txmesh/txmesh:0.2.0"
        );
        expect_apply(
            &mut handle,
            "/apis/policy/v1/namespaces/payments/poddisruptionbudgets/tc",
        )
        .await;
        let (_, send) = expect(
            &mut handle,
            Method::DELETE,
            "/apis/monitoring.coreos.com/v1/namespaces/payments/servicemonitors/tc",
        )
        .await;
        // Without RBAC for ServiceMonitors the operator never made one: nothing to delete.
        fail(send, StatusCode::FORBIDDEN, "Forbidden", "forbidden");
        let event = expect_event(&mut handle).await;
        assert_eq!(event["reason"], "Applied");
        let note = event["note"].as_str().expect("note");
        assert!(
            note.contains("generation 2") && note.contains("txmesh/txmesh:0.2.0"),
            "{note}"
        );
        let status = expect_status(&mut handle, &tc).await;
        assert_eq!(status["observedGeneration"], 2);
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    assert_eq!(
        action.expect("reconciled"),
        Action::requeue(PROGRESS_REQUEUE)
    );
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn a_paused_resource_changes_nothing_but_its_status() {
    let (ctx, mut handle) = context();
    let tc = coordinator(json!({"paused": true, "replicas": 5}), &[FINALIZER]);
    let server = async {
        let event = expect_event(&mut handle).await;
        assert_eq!(event["reason"], "Paused");
        let status = expect_status(&mut handle, &tc).await;
        assert_eq!(status["phase"], "Paused");
        assert_eq!(condition(&status, "Progressing")["reason"], "Paused");
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    assert_eq!(
        action.expect("reconciled"),
        Action::requeue(SETTLED_REQUEUE)
    );
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn a_refused_apply_is_degraded_with_a_warning_and_backs_off() {
    let (ctx, mut handle) = context();
    let tc = coordinator(json!({}), &[FINALIZER]);
    let server = async {
        let ns = "/api/v1/namespaces/payments";
        expect_token_applied(&mut handle, None).await;
        expect_apply(&mut handle, &format!("{ns}/configmaps/tc-config")).await;
        expect_apply(&mut handle, &format!("{ns}/services/tc-peers")).await;
        expect_apply(&mut handle, &format!("{ns}/services/tc")).await;
        let (_, send) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/apps/v1/namespaces/payments/statefulsets/tc",
        )
        .await;
        let refusal = "StatefulSet.apps \"tc\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";
        fail(send, StatusCode::UNPROCESSABLE_ENTITY, "Invalid", refusal);
        let event = expect_event(&mut handle).await;
        assert_eq!(
            (&event["type"], &event["reason"]),
            (&json!("Warning"), &json!("ApplyFailed"))
        );
        let status = expect_status(&mut handle, &tc).await;
        let degraded = condition(&status, "Degraded");
        assert_eq!(degraded["reason"], "ApplyFailed");
        let message = degraded["message"].as_str().expect("message");
        assert!(message.starts_with("apply StatefulSet tc: "), "{message}");
        assert!(message.contains("Forbidden"), "{message}");
    };
    let (result, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    let error = result.expect_err("the failure is returned");
    assert_eq!(
        error_policy(Arc::new(tc), &error, ctx.clone()),
        Action::requeue(ERROR_REQUEUE)
    );
    expect_no_more(ctx, handle).await;
}

/// A small Kubernetes for multi-step runs: it answers whatever the reconciler asks (rather than
/// a script), keeps the StatefulSet, its pods, the Secret and the resource's status, and
/// between reconciles plays the StatefulSet controller and kubelet. The coordinators are the
/// admin API double; restarts go into its log next to the membership changes.
struct World {
    tc: TransactionCoordinator,
    stateful_set: Option<Value>,
    /// Pods by ordinal: their revision.
    pods: BTreeMap<i32, String>,
    /// The revision pods below the partition keep.
    old_revision: String,
    /// A revision whose pods never run (their image cannot be pulled).
    broken: Option<String>,
    events: Vec<String>,
}

impl World {
    /// A settled group of 3 as built from `tc`, led by node `leader`.
    fn settled(tc: &TransactionCoordinator, group: &mut Group) -> Self {
        let hash = build::template_hash(tc, &BuildConfig::default()).expect("hash");
        let desired =
            build::desired(tc, &BuildConfig::default(), build::Pods::initial(tc)).expect("build");
        let mut sts = serde_json::to_value(&desired.stateful_set).expect("JSON");
        sts["metadata"]["generation"] = json!(1);
        let mut world = Self {
            tc: tc.clone(),
            stateful_set: Some(sts),
            pods: (0..3).map(|o| (o, hash.clone())).collect(),
            old_revision: hash,
            broken: None,
            events: Vec::new(),
        };
        world.settle(group);
        world
    }

    /// The StatefulSet controller, kubelet and the coordinators catching up.
    fn settle(&mut self, group: &mut Group) {
        group.tick();
        let Some(sts) = &mut self.stateful_set else {
            return;
        };
        let replicas = sts["spec"]["replicas"]
            .as_i64()
            .and_then(|r| i32::try_from(r).ok())
            .expect("replicas");
        let partition = sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0);
        let revision = sts["metadata"]["annotations"][build::TEMPLATE_HASH_ANNOTATION]
            .as_str()
            .expect("template hash")
            .to_owned();
        self.pods.retain(|o, _| *o < replicas);
        group
            .running
            .retain(|id| *id <= u64::try_from(replicas).expect("replicas"));
        for o in 0..replicas {
            let id = membership::node_id(o);
            let wanted = if o >= partition {
                &revision
            } else {
                &self.old_revision
            };
            let runs = Some(wanted) != self.broken.as_ref();
            match self.pods.get(&o) {
                None => {
                    self.pods.insert(o, wanted.clone());
                    group.running.insert(id);
                }
                Some(current) if current != wanted && o >= partition => {
                    assert_ne!(group.leader, Some(id), "the leader's pod restarted");
                    group.log.push(format!("restart tc-{o}"));
                    self.pods.insert(o, wanted.clone());
                    if let Some(node) = group.members.get_mut(&id) {
                        node.lag = 1;
                    }
                }
                Some(_) => continue,
            }
            match runs {
                true => group.running.insert(id),
                false => group.running.remove(&id),
            };
        }
        if partition == 0 {
            self.old_revision = revision.clone();
        }
        let voters: Vec<u64> = group
            .members
            .iter()
            .filter(|(_, n)| n.voter)
            .map(|(id, _)| *id)
            .collect();
        let healthy = voters.iter().filter(|id| group.healthy(**id)).count();
        assert!(healthy > voters.len() / 2, "below quorum: {group:?}");
        let ready = self.pods.keys().filter(|o| ready(group, **o)).count();
        let updated = self.pods.values().filter(|r| **r == revision).count();
        sts["status"] = json!({
            "observedGeneration": sts["metadata"]["generation"],
            "replicas": self.pods.len(),
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "currentRevision": self.old_revision,
            "updateRevision": revision,
        });
    }

    fn pod(&self, group: &Group, ordinal: i32, revision: &str) -> Value {
        let runs = Some(revision) != self.broken.as_deref();
        let state = match runs {
            true => json!({"running": {}}),
            false => json!({"waiting": {
                "reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"txmesh/txmesh:0.2.0\"",
            }}),
        };
        json!({
            "metadata": {
                "name": format!("tc-{ordinal}"),
                "namespace": "payments",
                "labels": {"controller-revision-hash": revision},
            },
            "status": {
                "containerStatuses": [{
                    "name": "coordinator", "started": runs, "ready": ready(group, ordinal),
                    "restartCount": 0, "image": "", "imageID": "", "state": state,
                }],
                "conditions": [{
                    "type": "Ready",
                    "status": if ready(group, ordinal) { "True" } else { "False" },
                }],
            },
        })
    }

    /// One reconcile, every request answered from the world.
    async fn reconcile(&mut self, double: &Coordinators) -> Action {
        let (ctx, mut handle) = context_with(Some(double.addr));
        let reconciling = reconcile(Arc::new(self.tc.clone()), ctx.clone());
        tokio::pin!(reconciling);
        let action = loop {
            tokio::select! {
                action = &mut reconciling => break action.expect("reconciled"),
                Some((request, send)) = handle.next_request() => {
                    self.answer(request, send, double).await;
                }
            }
        };
        let mut group = double.group();
        self.settle(&mut group);
        action
    }

    async fn answer(
        &mut self,
        request: http::Request<kube::client::Body>,
        send: mock_api::Answer,
        double: &Coordinators,
    ) {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let tc_path = "/apis/txmesh.io/v1alpha1/namespaces/payments/transactioncoordinators/tc";
        match (method, path.as_str()) {
            (Method::GET, STATEFUL_SET) => match &self.stateful_set {
                Some(sts) => respond(send, StatusCode::OK, sts),
                None => not_found(send),
            },
            (Method::PATCH, STATEFUL_SET) => {
                let mut sts = body;
                let previous = self.stateful_set.take().unwrap_or(Value::Null);
                let generation = previous["metadata"]["generation"].as_i64().unwrap_or(0);
                let changed = previous["spec"] != sts["spec"];
                sts["metadata"]["generation"] = json!(generation + i64::from(changed));
                sts["status"] = previous["status"].clone();
                respond(send, StatusCode::OK, &sts);
                self.stateful_set = Some(sts);
            }
            (Method::GET, "/api/v1/namespaces/payments/pods") => {
                let group = double.group();
                let items: Vec<Value> = self
                    .pods
                    .iter()
                    .map(|(o, r)| self.pod(&group, *o, r))
                    .collect();
                respond(
                    send,
                    StatusCode::OK,
                    &json!({"metadata": {}, "items": items}),
                );
            }
            (Method::GET, ADMIN_TOKEN) => {
                let secret = json!({
                    "metadata": {"name": "tc-admin-token", "namespace": "payments"},
                    "data": {"admin-token": k8s_openapi::ByteString(TOKEN.into())},
                });
                respond(send, StatusCode::OK, &secret);
            }
            (Method::POST, "/apis/events.k8s.io/v1/namespaces/payments/events") => {
                self.events.push(format!(
                    "{} {}",
                    body["type"].as_str().unwrap_or_default(),
                    body["reason"].as_str().unwrap_or_default()
                ));
                respond(send, StatusCode::CREATED, &body);
            }
            (Method::PATCH, path) if path == format!("{tc_path}/status") => {
                self.tc.status = serde_json::from_value(body["status"].clone()).expect("status");
                respond(
                    send,
                    StatusCode::OK,
                    &serde_json::to_value(&self.tc).expect("JSON"),
                );
            }
            (Method::DELETE, _) => not_found(send),
            (Method::PATCH, _) => respond(send, StatusCode::OK, &body),
            (method, path) => panic!("unexpected {method} {path}"),
        }
    }

    /// Reconciles until the group is Available again; the Events on the way.
    async fn run(&mut self, double: &Coordinators) -> Vec<String> {
        self.events.clear();
        for _ in 0..40 {
            self.reconcile(double).await;
            let phase = self.tc.status.as_ref().and_then(|s| s.phase);
            if phase == Some(Phase::Available) {
                return self.events.clone();
            }
        }
        panic!("not available: {:?} {:?}", self.events, self.tc.status);
    }

    /// The resource's condition of `type_`.
    fn condition(&self, type_: &str) -> Condition {
        let status = self.tc.status.as_ref().expect("status");
        let found = status.conditions.iter().find(|c| c.type_ == type_);
        found
            .cloned()
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    fn respec(&mut self, spec: Value) {
        let mut tc = serde_json::to_value(&self.tc).expect("JSON");
        for (key, value) in spec.as_object().expect("object") {
            tc["spec"][key] = value.clone();
        }
        tc["metadata"]["generation"] =
            json!(tc["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
        self.tc = serde_json::from_value(tc).expect("resource");
    }
}

/// A pod is ready when it is a caught-up voter.
fn ready(group: &Group, ordinal: i32) -> bool {
    let id = membership::node_id(ordinal);
    group.members.get(&id).is_some_and(|n| n.voter) && group.healthy(id)
}

fn context_with(admin_route: Option<std::net::SocketAddr>) -> (Arc<Context>, ApiHandle) {
    let (ctx, handle) = context();
    let mut ctx = Arc::into_inner(ctx).expect("sole owner");
    ctx.admin_route = admin_route;
    (Arc::new(ctx), handle)
}

#[tokio::test]
async fn scale_3_to_5_to_3_one_member_at_a_time() {
    let tc = coordinator(json!({}), &[FINALIZER]);
    let double = Coordinators::start(Group::settled(3, 1)).await;
    let mut world = World::settled(&tc, &mut double.group());
    world.tc.status = Some(Default::default());
    world.respec(json!({"replicas": 5}));
    let events = world.run(&double).await;
    assert_eq!(
        events,
        [
            "Normal Applied",
            "Normal ScalingUp",
            "Normal AddingLearner",
            "Normal Promoting",
            "Normal ScalingUp",
            "Normal AddingLearner",
            "Normal Promoting",
        ]
    );
    assert_eq!(
        double.group().log,
        ["add learner 4", "promote 4", "add learner 5", "promote 5"]
    );
    let status = world.tc.status.clone().expect("status");
    assert_eq!((status.replicas, status.ready_replicas), (5, 5));
    assert_eq!(status.leader.as_deref(), Some("tc-0"));
    assert_eq!(status.members.len(), 5);

    double.group().log.clear();
    world.respec(json!({"replicas": 3}));
    let events = world.run(&double).await;
    assert_eq!(
        events,
        [
            "Normal Applied",
            "Normal RemovingMember",
            "Normal ScalingDown",
            "Normal RemovingMember",
            "Normal ScalingDown",
        ]
    );
    assert_eq!(double.group().log, ["remove 5", "remove 4"]);
    let status = world.tc.status.clone().expect("status");
    assert_eq!((status.replicas, status.members.len()), (3, 3));
}

#[tokio::test]
async fn an_upgrade_restarts_one_pod_at_a_time_and_moves_leadership_first() {
    let tc = coordinator(json!({}), &[FINALIZER]);
    // The highest pod leads.
    let double = Coordinators::start(Group::settled(3, 3)).await;
    let mut world = World::settled(&tc, &mut double.group());
    world.tc.status = Some(Default::default());
    world.respec(json!({"image": "txmesh/txmesh:0.2.0"}));
    world.run(&double).await;
    assert_eq!(
        double.group().log,
        [
            "transfer to 1",
            "restart tc-2",
            "restart tc-1",
            "transfer to 2",
            "restart tc-0",
        ]
    );
    let sts = world.stateful_set.clone().expect("sts");
    assert_eq!(
        sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        0
    );
    assert_eq!(
        world.tc.status.and_then(|s| s.leader).as_deref(),
        Some("tc-1")
    );
}

#[tokio::test]
async fn a_refused_membership_change_is_degraded_with_one_warning() {
    let tc = coordinator(json!({}), &[FINALIZER]);
    let double = Coordinators::start(Group::settled(3, 1)).await;
    let mut world = World::settled(&tc, &mut double.group());
    world.tc.status = Some(Default::default());
    world.respec(json!({"replicas": 5}));
    world.reconcile(&double).await;
    double.group().refuse_next = Some("WouldLoseQuorum");
    world.events.clear();
    world.reconcile(&double).await;
    let degraded = world.condition("Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "QuorumAtRisk")
    );
    assert!(
        degraded.message.contains("WouldLoseQuorum"),
        "{}",
        degraded.message
    );
    assert_eq!(world.events, ["Warning QuorumAtRisk"]);
    // The next reconcile tries again, and succeeds.
    world.events.clear();
    world.reconcile(&double).await;
    assert_eq!(world.events, ["Normal AddingLearner"]);
}

#[tokio::test]
async fn a_stuck_upgrade_is_degraded_once_and_a_fixed_spec_finishes_it() {
    let tc = coordinator(json!({}), &[FINALIZER]);
    let double = Coordinators::start(Group::settled(3, 1)).await;
    let mut world = World::settled(&tc, &mut double.group());
    world.tc.status = Some(Default::default());
    world.respec(json!({"image": "txmesh/txmesh:0.2.0"}));
    world.broken = Some(build::template_hash(&world.tc, &BuildConfig::default()).expect("hash"));
    for _ in 0..6 {
        world.reconcile(&double).await;
    }
    assert_eq!(
        double.group().log,
        ["restart tc-2"],
        "the rollout stops at one pod"
    );
    let degraded = world.condition("Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "PodFailing")
    );
    assert!(
        degraded
            .message
            .contains("tc-2 cannot run: ImagePullBackOff"),
        "{}",
        degraded.message
    );
    let warnings: Vec<&String> = world
        .events
        .iter()
        .filter(|e| e.starts_with("Warning"))
        .collect();
    assert_eq!(warnings, ["Warning PodFailing"]);

    // Fixed: tc-2 is replaced at once, then the rollout goes on (tc-0 leads, so it is last).
    world.respec(json!({"image": "txmesh/txmesh:0.2.1"}));
    world.run(&double).await;
    assert_eq!(
        double.group().log,
        [
            "restart tc-2",
            "restart tc-2",
            "restart tc-1",
            "transfer to 2",
            "restart tc-0"
        ]
    );
    let sts = world.stateful_set.clone().expect("sts");
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "txmesh/txmesh:0.2.1"
    );
}
