//! What the CRD's schema and CEL rules do not check (or an older CRD in the cluster might
//! not): the operator refuses such a spec with a Degraded condition instead of building
//! objects the API server or the coordinator would reject.

use kube::ResourceExt;
use txmesh_crds::TransactionCoordinator;

use super::{HTTP_PORT, RAFT_PORT};

/// Longest name: the StatefulSet's pods carry a `controller-revision-hash` label of
/// `<name>-<10 characters>`, and label values stop at 63.
const MAX_NAME_LEN: usize = 52;

/// A spec the operator will not build objects for; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The name cannot name a Service and a StatefulSet.
    #[error(
        "name {0:?} must be at most {MAX_NAME_LEN} characters of lower-case letters, digits and '-', starting with a letter and ending with a letter or digit"
    )]
    Name(String),
    /// Replicas outside 1, 3, 5, 7, 9.
    #[error("replicas must be odd and between 1 and 9, not {0}")]
    Replicas(i32),
    /// The Seata port clashes with a fixed port.
    #[error("seata.port {0} is taken: {RAFT_PORT} is the Raft port and {HTTP_PORT} the admin port")]
    SeataPort(i32),
    /// A service group name that cannot be a Seata property key.
    #[error("seata.serviceGroups entry {0:?} must be non-empty without whitespace, '=' or ':'")]
    ServiceGroup(String),
    /// Timings that contradict each other.
    #[error("{0}")]
    Timing(&'static str),
}

/// Checks a resource's name and spec.
pub fn validate(tc: &TransactionCoordinator) -> Result<(), SpecError> {
    let name = tc.name_any();
    if !is_dns_label(&name) || name.len() > MAX_NAME_LEN {
        return Err(SpecError::Name(name));
    }
    let spec = &tc.spec;
    if !(1..=9).contains(&spec.replicas) || spec.replicas % 2 == 0 {
        return Err(SpecError::Replicas(spec.replicas));
    }
    if matches!(spec.seata.port, RAFT_PORT | HTTP_PORT) {
        return Err(SpecError::SeataPort(spec.seata.port));
    }
    if let Some(group) = spec.seata.service_groups.iter().find(|group| {
        group.is_empty()
            || group
                .chars()
                .any(|c| c.is_whitespace() || c == '=' || c == ':')
    }) {
        return Err(SpecError::ServiceGroup(group.clone()));
    }
    let raft = &spec.raft;
    if raft.election_timeout_min_ms >= raft.election_timeout_max_ms {
        return Err(SpecError::Timing(
            "raft.electionTimeoutMinMs must be below raft.electionTimeoutMaxMs",
        ));
    }
    if raft.heartbeat_ms >= raft.election_timeout_min_ms {
        return Err(SpecError::Timing(
            "raft.heartbeatMs must be below raft.electionTimeoutMinMs, or followers campaign against a healthy leader",
        ));
    }
    if spec.recovery.retry_initial_ms > spec.recovery.retry_max_ms {
        return Err(SpecError::Timing(
            "recovery.retryInitialMs must not exceed recovery.retryMaxMs",
        ));
    }
    Ok(())
}

/// An RFC 1035 label: what Service names must be.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn coordinator(name: &str, spec: serde_json::Value) -> TransactionCoordinator {
        crate::fixtures::coordinator(json!({"name": name}), spec)
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&coordinator("tc", json!({}))), Ok(()));
    }

    #[test]
    fn names_must_fit_services_and_pod_labels() {
        for bad in ["Tc", "1tc", "tc-", "tc.example", &"a".repeat(53)] {
            assert_eq!(
                validate(&coordinator(bad, json!({}))),
                Err(SpecError::Name(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(validate(&coordinator(&"a".repeat(52), json!({}))), Ok(()));
    }

    #[test]
    fn contradictions_are_refused_with_what_to_change() {
        let cases = [
            (json!({"replicas": 4}), SpecError::Replicas(4)),
            (json!({"replicas": 11}), SpecError::Replicas(11)),
            (json!({"seata": {"port": 9091}}), SpecError::SeataPort(9091)),
            (
                json!({"seata": {"serviceGroups": ["a b"]}}),
                SpecError::ServiceGroup("a b".into()),
            ),
            (
                json!({"raft": {"electionTimeoutMinMs": 400}}),
                SpecError::Timing(
                    "raft.electionTimeoutMinMs must be below raft.electionTimeoutMaxMs",
                ),
            ),
        ];
        for (spec, error) in cases {
            assert_eq!(
                validate(&coordinator("tc", spec.clone())),
                Err(error),
                "{spec}"
            );
        }
        let Err(SpecError::Timing(message)) =
            validate(&coordinator("tc", json!({"raft": {"heartbeatMs": 200}})))
        else {
            panic!("a heartbeat as long as the election timeout is refused");
        };
        assert!(message.contains("heartbeatMs"), "{message}");
    }
}
