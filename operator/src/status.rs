//! The status the operator reports: pure functions from what it saw to the
//! `TransactionCoordinatorStatus`, so each outcome is tested without an API server.
//!
//! Conditions: `Available` (every coordinator a caught-up member, a leader known),
//! `Progressing` (a membership or rollout step is under way; its reason says which, its message
//! which pod) and `Degraded` (something needs the user, or a step would be unsafe: its reason
//! names the blocker, its message what would unblock it).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use txmesh_crds::TransactionCoordinator;
use txmesh_crds::v1alpha1::{Member, MemberRole, Phase, TransactionCoordinatorStatus};

use crate::admin::{ClusterView, Role};
use crate::build;
use crate::membership::Report;

/// Condition type: every coordinator is a caught-up member.
pub const AVAILABLE: &str = "Available";
/// Condition type: something is being changed.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something needs the user's attention.
pub const DEGRADED: &str = "Degraded";

/// What the latest reconcile achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    /// The objects were applied and a membership step taken or awaited.
    Applied {
        /// The applied StatefulSet, as the API server returned it.
        stateful_set: &'a StatefulSet,
        /// The group's view, if a coordinator answered.
        view: Option<&'a ClusterView>,
        /// What the step reports.
        report: &'a Report,
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
            view,
            report,
            client_endpoint,
            selector,
        } => {
            let wanted = tc.spec.replicas;
            let sts = stateful_set.status.clone().unwrap_or_default();
            let ready = sts.ready_replicas.unwrap_or(0);
            let leader = view.and_then(|view| view.leader_id);
            match report {
                Report::Progressing { reason, message } => {
                    set(PROGRESSING, true, reason, message.clone());
                }
                Report::Blocked { reason, message } => {
                    set(PROGRESSING, false, reason, message.clone());
                }
                Report::Settled if ready < wanted => set(
                    PROGRESSING,
                    true,
                    "Joining",
                    format!("{ready} of {wanted} coordinators are ready"),
                ),
                Report::Settled => set(
                    PROGRESSING,
                    false,
                    "UpToDate",
                    format!(
                        "{wanted} coordinators run generation {}",
                        generation.unwrap_or(0)
                    ),
                ),
            }
            let available = ready == wanted && wanted > 0 && leader.is_some();
            set(
                AVAILABLE,
                available,
                if available {
                    "MembersReady"
                } else {
                    "MembersNotReady"
                },
                match leader {
                    Some(_) => format!("{ready} of {wanted} coordinators are caught-up members"),
                    None => {
                        format!("{ready} of {wanted} coordinators are ready; no leader is known")
                    }
                },
            );
            match report {
                Report::Blocked { reason, message } => {
                    set(DEGRADED, true, reason, message.clone());
                }
                _ => set(
                    DEGRADED,
                    false,
                    "AsExpected",
                    "Nothing needs attention".into(),
                ),
            }
            status.replicas = sts.replicas;
            status.ready_replicas = ready;
            status.leader = leader.and_then(|id| pod_of(tc, id));
            status.members = members(tc, *view);
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

/// The pod of node `id` (ordinal + 1).
fn pod_of(tc: &TransactionCoordinator, id: u64) -> Option<String> {
    let ordinal = i32::try_from(id.checked_sub(1)?).ok()?;
    Some(build::pod_name(tc, ordinal))
}

/// The members as the view lists them; caught up only as far as the leader knows.
fn members(tc: &TransactionCoordinator, view: Option<&ClusterView>) -> Vec<Member> {
    let members = view.map(|view| view.members.as_slice()).unwrap_or_default();
    members
        .iter()
        .filter_map(|member| {
            Some(Member {
                name: pod_of(tc, member.id)?,
                id: i64::try_from(member.id).ok()?,
                role: match member.role {
                    Role::Leader => MemberRole::Leader,
                    Role::Follower => MemberRole::Follower,
                    Role::Learner => MemberRole::Learner,
                },
                caught_up: member.caught_up == Some(true),
            })
        })
        .collect()
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

/// Whether the status does not show this blocker yet (so its Warning is published once).
pub fn is_new_blocker(tc: &TransactionCoordinator, reason: &str, message: &str) -> bool {
    let conditions = tc.status.as_ref().map(|s| s.conditions.as_slice());
    !conditions.unwrap_or_default().iter().any(|c| {
        c.type_ == DEGRADED && c.status == "True" && c.reason == reason && c.message == message
    })
}

/// Whether this generation of the spec has not been reported on yet.
pub fn is_new_generation(tc: &TransactionCoordinator) -> bool {
    tc.status.as_ref().and_then(|s| s.observed_generation) != tc.metadata.generation
}

#[cfg(test)]
mod tests;
