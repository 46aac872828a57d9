//! The status the operator reports: pure functions from what it saw to the
//! `TransactionCoordinatorStatus`, so each outcome is tested without an API server.
//!
//! Conditions: `Available` (every coordinator a caught-up member), `Progressing` (the operator
//! or the StatefulSet is still changing something; its reason says what) and `Degraded`
//! (something needs the user; its message says what). Membership steps add their own
//! `Progressing` reasons (a learner joining, a leader moving) and `Degraded` blockers.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use txmesh_crds::TransactionCoordinator;
use txmesh_crds::v1alpha1::{Phase, TransactionCoordinatorStatus};

/// Condition type: every coordinator is a caught-up member.
pub const AVAILABLE: &str = "Available";
/// Condition type: something is being changed.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something needs the user's attention.
pub const DEGRADED: &str = "Degraded";

/// What the latest reconcile achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    /// The objects were applied; the StatefulSet as the API server returned it.
    Applied {
        /// The applied StatefulSet.
        stateful_set: &'a StatefulSet,
        /// The Seata client endpoint.
        client_endpoint: String,
        /// The pods' label selector.
        selector: String,
    },
    /// The spec was refused; the message says what to change.
    InvalidSpec(String),
    /// Applying an object failed; the message says which and why.
    ApplyFailed(String),
    /// `spec.paused`: nothing was changed.
    Paused,
}

/// The status after `outcome`, keeping what it does not change from the previous status
/// (and each condition's transition time while its status stays the same).
pub fn status(
    tc: &TransactionCoordinator,
    outcome: &Outcome,
    now: &Time,
) -> TransactionCoordinatorStatus {
    let mut status = tc.status.clone().unwrap_or_default();
    let generation = tc.metadata.generation;
    status.observed_generation = generation;
    let mut set = |type_: &str, value: bool, reason: &str, message: String| {
        set_condition(
            &mut status.conditions,
            Condition {
                type_: type_.into(),
                status: if value { "True" } else { "False" }.into(),
                reason: reason.into(),
                message,
                observed_generation: generation,
                last_transition_time: now.clone(),
            },
        );
    };
    match outcome {
        Outcome::Applied {
            stateful_set,
            client_endpoint,
            selector,
        } => {
            let wanted = tc.spec.replicas;
            let sts = stateful_set.status.clone().unwrap_or_default();
            let ready = sts.ready_replicas.unwrap_or(0);
            let rolled_out = sts.observed_generation == stateful_set.metadata.generation
                && sts.update_revision.is_some()
                && sts.update_revision == sts.current_revision
                && sts.updated_replicas.unwrap_or(0) == wanted;
            let progress = if sts.replicas != wanted {
                Some((
                    "Scaling",
                    format!("{} of {wanted} coordinators exist", sts.replicas),
                ))
            } else if !rolled_out {
                Some((
                    "RollingOut",
                    format!(
                        "{} of {wanted} coordinators run the current pod template",
                        sts.updated_replicas.unwrap_or(0)
                    ),
                ))
            } else if ready < wanted {
                Some((
                    "Joining",
                    format!("{ready} of {wanted} coordinators are ready"),
                ))
            } else {
                None
            };
            match progress {
                Some((reason, message)) => set(PROGRESSING, true, reason, message),
                None => set(
                    PROGRESSING,
                    false,
                    "UpToDate",
                    format!(
                        "{wanted} coordinators run generation {}",
                        generation.unwrap_or(0)
                    ),
                ),
            }
            let available = ready == wanted && wanted > 0;
            set(
                AVAILABLE,
                available,
                if available {
                    "MembersReady"
                } else {
                    "MembersNotReady"
                },
                format!("{ready} of {wanted} coordinators are caught-up members"),
            );
            set(
                DEGRADED,
                false,
                "AsExpected",
                "Nothing needs attention".into(),
            );
            status.replicas = sts.replicas;
            status.ready_replicas = ready;
            status.client_endpoint = Some(client_endpoint.clone());
            status.selector = Some(selector.clone());
        }
        Outcome::InvalidSpec(message) => {
            set(
                PROGRESSING,
                false,
                "InvalidSpec",
                "Waiting for a valid spec".into(),
            );
            set(DEGRADED, true, "InvalidSpec", message.clone());
        }
        Outcome::ApplyFailed(message) => {
            set(DEGRADED, true, "ApplyFailed", message.clone());
        }
        Outcome::Paused => {
            set(
                PROGRESSING,
                false,
                "Paused",
                "spec.paused is set: no changes are made".into(),
            );
        }
    }
    status.phase = Some(phase(&status, matches!(outcome, Outcome::Paused)));
    status
}

/// The one-word summary: paused, else degraded, else progressing, else available.
fn phase(status: &TransactionCoordinatorStatus, paused: bool) -> Phase {
    let is = |type_: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    if paused {
        Phase::Paused
    } else if is(DEGRADED) {
        Phase::Degraded
    } else if is(AVAILABLE) && !is(PROGRESSING) {
        Phase::Available
    } else {
        Phase::Progressing
    }
}

/// Replaces the condition of the same type; its transition time stays while its status does.
fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = condition;
        }
        None => conditions.push(condition),
    }
}

/// Whether this generation of the spec has not been reported on yet.
pub fn is_new_generation(tc: &TransactionCoordinator) -> bool {
    tc.status.as_ref().and_then(|s| s.observed_generation) != tc.metadata.generation
}

#[cfg(test)]
mod tests;
