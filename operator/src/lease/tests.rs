//! The Lease claim rules as pure functions, then the elector's calls against a mocked API
//! server.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::mock_api::{self, ApiHandle, expect, fail, not_found, respond};

const DURATION: Duration = Duration::from_secs(15);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("time")
}

fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_duration_seconds: Some(15),
        acquire_time: Some(MicroTime(at(0))),
        renew_time: Some(MicroTime(at(renewed))),
        lease_transitions: Some(2),
        ..LeaseSpec::default()
    }
}

#[test]
fn a_missing_lease_is_taken() {
    let spec = claim(None, "b", at(100), DURATION).expect("taken");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[test]
fn a_current_lease_of_another_is_left_alone() {
    assert_eq!(claim(Some(&held_by("a", 90)), "b", at(100), DURATION), None);
}

#[test]
fn an_expired_lease_is_taken_over() {
    let spec = claim(Some(&held_by("a", 80)), "b", at(100), DURATION).expect("taken");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
    assert_eq!(spec.lease_transitions, Some(3));
}

#[test]
fn the_holder_renews_without_a_transition() {
    let spec = claim(Some(&held_by("a", 95)), "a", at(100), DURATION).expect("renewed");
    assert_eq!(spec.renew_time, Some(MicroTime(at(100))));
    assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
    assert_eq!(spec.lease_transitions, Some(2));
}

#[test]
fn a_released_lease_is_free() {
    let mut released = held_by("a", 99);
    released.holder_identity = None;
    let spec = claim(Some(&released), "b", at(100), DURATION).expect("taken");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/txmesh-system/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/txmesh-system/leases/txmesh-operator";

fn elector(renew: Duration, duration: Duration) -> (Elector, ApiHandle) {
    let (client, handle) = mock_api::client();
    let config = LeaseConfig {
        name: "txmesh-operator".into(),
        namespace: "txmesh-system".into(),
        holder: "operator-b".into(),
        duration,
        renew,
    };
    (Elector::new(client, config), handle)
}

/// The Lease as the API server stores it: `spec` at resourceVersion 7.
fn stored(spec: &LeaseSpec) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "txmesh-operator", "namespace": "txmesh-system", "resourceVersion": "7"},
        "spec": spec,
    })
}

/// Held by `holder`, renewed `ago` before now.
fn renewed_ago(holder: &str, ago: Duration) -> LeaseSpec {
    let renewed = Timestamp::now() - SignedDuration::try_from(ago).expect("duration");
    LeaseSpec {
        renew_time: Some(MicroTime(renewed)),
        ..held_by(holder, 0)
    }
}

#[tokio::test]
async fn a_missing_lease_is_created_for_this_replica() {
    let (elector, mut handle) = elector(Duration::from_secs(5), DURATION);
    let server = async {
        let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
        not_found(send);
        let (lease, send) = expect(&mut handle, Method::POST, LEASES).await;
        assert_eq!(lease["metadata"]["name"], "txmesh-operator");
        assert_eq!(lease["spec"]["holderIdentity"], "operator-b");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
        respond(send, StatusCode::CREATED, &lease);
    };
    let (held, ()) = tokio::join!(elector.try_hold(), server);
    assert!(held.expect("no API error"));
    drop(elector);
    mock_api::expect_no_more(handle).await;
}

#[tokio::test]
async fn a_current_lease_of_another_replica_is_not_written() {
    let (elector, mut handle) = elector(Duration::from_secs(5), DURATION);
    let server = async {
        let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
        let current = renewed_ago("operator-a", Duration::from_secs(1));
        respond(send, StatusCode::OK, &stored(&current));
    };
    let (held, ()) = tokio::join!(elector.try_hold(), server);
    assert!(!held.expect("no API error"));
    drop(elector);
    mock_api::expect_no_more(handle).await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_at_the_version_read() {
    let (elector, mut handle) = elector(Duration::from_secs(5), DURATION);
    let server = async {
        let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
        let expired = renewed_ago("operator-a", Duration::from_secs(60));
        respond(send, StatusCode::OK, &stored(&expired));
        let (lease, send) = expect(&mut handle, Method::PUT, LEASE).await;
        // The version read: if another replica wrote in between, the API server answers 409.
        assert_eq!(lease["metadata"]["resourceVersion"], "7");
        assert_eq!(lease["spec"]["holderIdentity"], "operator-b");
        assert_eq!(lease["spec"]["leaseTransitions"], 3);
        respond(send, StatusCode::OK, &lease);
    };
    let (held, ()) = tokio::join!(elector.try_hold(), server);
    assert!(held.expect("no API error"));
}

#[tokio::test]
async fn losing_the_race_for_a_lease_is_not_holding_it() {
    let (elector, mut handle) = elector(Duration::from_secs(5), DURATION);
    let server = async {
        // Creating it: another replica created it first.
        let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
        not_found(send);
        let (_, send) = expect(&mut handle, Method::POST, LEASES).await;
        fail(
            send,
            StatusCode::CONFLICT,
            "AlreadyExists",
            "leases \"txmesh-operator\" already exists",
        );
        // Taking it over: another replica wrote it after it was read.
        let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
        let expired = renewed_ago("operator-a", Duration::from_secs(60));
        respond(send, StatusCode::OK, &stored(&expired));
        let (_, send) = expect(&mut handle, Method::PUT, LEASE).await;
        fail(
            send,
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified",
        );
    };
    let attempts = async {
        let created = elector.try_hold().await.expect("no API error");
        let replaced = elector.try_hold().await.expect("no API error");
        (created, replaced)
    };
    let ((created, replaced), ()) = tokio::join!(attempts, server);
    assert!(!created && !replaced);
}

#[tokio::test]
async fn any_other_api_failure_is_an_error() {
    let (elector, mut handle) = elector(Duration::from_secs(5), DURATION);
    let server = async {
        let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
        fail(
            send,
            StatusCode::FORBIDDEN,
            "Forbidden",
            "leases is forbidden",
        );
    };
    let (held, ()) = tokio::join!(elector.try_hold(), server);
    assert!(held.is_err(), "{held:?}");
}

#[tokio::test]
async fn keeping_the_lease_ends_when_another_replica_holds_it() {
    let (elector, mut handle) = elector(Duration::from_millis(10), DURATION);
    let server = async {
        for renewal in 0..3 {
            let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
            let ours = renewed_ago("operator-b", Duration::from_millis(10));
            respond(send, StatusCode::OK, &stored(&ours));
            let (lease, send) = expect(&mut handle, Method::PUT, LEASE).await;
            assert_eq!(
                lease["spec"]["holderIdentity"], "operator-b",
                "renewal {renewal}"
            );
            respond(send, StatusCode::OK, &lease);
        }
        // Taken over, say after a long pause of this process.
        let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
        let theirs = renewed_ago("operator-a", Duration::ZERO);
        respond(send, StatusCode::OK, &stored(&theirs));
    };
    tokio::join!(elector.keep(), server);
    drop(elector);
    mock_api::expect_no_more(handle).await;
}

#[tokio::test(start_paused = true)]
async fn keeping_the_lease_ends_before_it_could_expire_when_renewals_fail() {
    // Renewing every 10 ms, held for 45 ms: after four failed renewals the next could land
    // too late, so keeping it ends rather than act on a Lease another may hold by then.
    // (Paused time: the sleeps between renewals take exactly their length.)
    let (elector, mut handle) = elector(Duration::from_millis(10), Duration::from_millis(45));
    let server = async {
        let mut failures = 0;
        while let Some((request, send)) = handle.next_request().await {
            assert_eq!(
                (request.method(), request.uri().path()),
                (&Method::GET, LEASE)
            );
            fail(
                send,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "etcd is down",
            );
            failures += 1;
        }
        failures
    };
    let kept = async {
        elector.keep().await;
        drop(elector);
    };
    let ((), failures) = tokio::join!(kept, server);
    assert_eq!(failures, 4);
}

#[tokio::test]
async fn releasing_clears_only_this_replicas_hold() {
    let (elector, mut handle) = elector(Duration::from_secs(5), DURATION);
    let server = async {
        let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
        let ours = renewed_ago("operator-b", Duration::from_secs(1));
        respond(send, StatusCode::OK, &stored(&ours));
        let (lease, send) = expect(&mut handle, Method::PUT, LEASE).await;
        assert_eq!(lease["metadata"]["resourceVersion"], "7");
        assert_eq!(lease["spec"].get("holderIdentity"), None);
        assert_eq!(lease["spec"].get("renewTime"), None);
        respond(send, StatusCode::OK, &lease);
        // A second release finds another replica holding it and leaves it alone.
        let (_, send) = expect(&mut handle, Method::GET, LEASE).await;
        let theirs = renewed_ago("operator-a", Duration::from_secs(1));
        respond(send, StatusCode::OK, &stored(&theirs));
    };
    let releases = async {
        elector.release().await;
        elector.release().await;
    };
    tokio::join!(releases, server);
    drop(elector);
    mock_api::expect_no_more(handle).await;
}
