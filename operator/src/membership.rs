//! Membership safety: from the spec, the StatefulSet, its pods and the group's view (as the
//! leader reports it), the ONE next step — a pure function, so every situation is a table row
//! in the tests. The reconciler carries the step out and comes back for the next.
//!
//! - Scale up: one more pod → once its process runs, add it as a learner → once caught up,
//!   promote it → the next pod.
//! - Scale down: move leadership off the highest pod if it leads → remove it from the
//!   membership → one pod fewer → the next.
//! - Upgrade (a new pod template): every pod held at its revision (the partition at the
//!   replica count), then the partition lowered one pod at a time, highest ordinal first,
//!   each updated pod caught up before the next. A pod never restarts while it leads:
//!   leadership moves first, to an updated pod if there is one (so it does not move again),
//!   else to pod 0, which is updated last.
//! - Nothing that restarts or removes a voter is done unless the voters left reachable and
//!   caught up are a majority.

use std::collections::{BTreeMap, BTreeSet};

use crate::admin::{ClusterView, MemberView, Role};
use crate::build::Pods;

/// The StatefulSet as read from the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetState {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `spec.updateStrategy.rollingUpdate.partition`.
    pub partition: i32,
    /// The template hash it was given ([`crate::build::TEMPLATE_HASH_ANNOTATION`]).
    pub template_hash: Option<String>,
    /// `status.updateRevision`, once the StatefulSet controller has seen the current spec.
    pub update_revision: Option<String>,
}

/// One pod of the StatefulSet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodState {
    /// Its ordinal (node id − 1).
    pub ordinal: i32,
    /// Its coordinator process answers (the startup probe passed) and it is not terminating.
    pub started: bool,
    /// It is Ready: a member and caught up.
    pub ready: bool,
    /// Its `controller-revision-hash`.
    pub revision: Option<String>,
    /// Why its coordinator cannot run, when a container is stuck (`ImagePullBackOff: …`,
    /// `CrashLoopBackOff: …`): waiting will not help, a spec change may.
    pub failure: Option<String>,
}

/// Everything a decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// `spec.replicas`.
    pub replicas: i32,
    /// The pods' name prefix (the resource's name): pod `<name>-<ordinal>`.
    pub name: &'a str,
    /// The StatefulSet; `None` before it is created.
    pub set: Option<&'a SetState>,
    /// The hash of the pod template about to be applied.
    pub template_hash: &'a str,
    /// The pods that exist.
    pub pods: &'a [PodState],
    /// The group's view, if any coordinator answered.
    pub view: Option<&'a ClusterView>,
    /// Node ids of the reachable learners whose log has stopped advancing
    /// ([`crate::catch_up`]).
    pub stalled: &'a BTreeSet<u64>,
}

/// What to report about the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Nothing left to do.
    Settled,
    /// A step was taken or is awaited: `Progressing` with this reason.
    Progressing {
        /// `ScalingUp`, `AddingLearner`, `CatchingUp`, `Promoting`, `TransferringLeadership`,
        /// `RemovingMember`, `ScalingDown`, `RollingUpdate`, `Creating`, `WaitingForLeader`,
        /// `WaitingForPod`, `MembershipChangeInProgress`.
        reason: &'static str,
        /// What, which pod.
        message: String,
    },
    /// A step is due but would be unsafe, or cannot happen: `Degraded` with this reason.
    Blocked {
        /// `QuorumAtRisk`, `MemberNotCatchingUp`, `NoLeader`, `PodFailing`.
        reason: &'static str,
        /// What blocks it and what would unblock it.
        message: String,
    },
}

/// A membership change, naming pods by ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Add this pod as a learner.
    AddLearner(i32),
    /// Make this learner a voter.
    Promote(i32),
    /// Hand leadership to this voter.
    TransferLeadership(i32),
    /// Remove this member.
    Remove(i32),
}

/// The one next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The StatefulSet's replicas and partition to apply.
    pub pods: Pods,
    /// The membership change to make, if any.
    pub change: Option<Call>,
    /// Whether `pods` differs from the StatefulSet (a step the StatefulSet carries out).
    pub resized: bool,
    /// What to report.
    pub report: Report,
}

/// The next step.
pub fn decide(observed: &Observed) -> Decision {
    let Some(set) = observed.set else {
        // A new group: every pod at once, founded together from the peers.
        let pods = Pods {
            replicas: observed.replicas,
            partition: 0,
        };
        return Decision {
            pods,
            change: None,
            // Announced by the Created Event; no step Event.
            resized: false,
            report: progressing(
                "Creating",
                format!("starting {} coordinators", pods.replicas),
            ),
        };
    };
    let current = Pods {
        replicas: set.replicas,
        partition: set.partition,
    };
    let step = Step {
        observed,
        set,
        current,
    };
    if set.template_hash.as_deref() != Some(observed.template_hash) {
        // A new template: hold every pod at its revision; the rollout below moves them.
        return step.resize(
            Pods {
                partition: set.replicas,
                ..current
            },
            "RollingUpdate",
            "a new pod template: holding every coordinator until it can be updated safely".into(),
        );
    }
    let Some(view) = observed.view.filter(|view| view.is_leaders()) else {
        return step.no_leader();
    };
    let group = Group::new(view);
    if view.change_in_progress {
        return step.wait(progressing(
            "MembershipChangeInProgress",
            "a membership change is being made".into(),
        ));
    }
    if let Some(blocked) = group.quorum_blocker(Outage::None, set.replicas) {
        return step.wait(blocked);
    }
    // Members without a pod leave; when shrinking, so does the highest pod's, then its pod
    // goes, one at a time.
    let shrinking = set.replicas > observed.replicas;
    let leaving = group
        .members
        .keys()
        .rev()
        .copied()
        .find(|&ordinal| ordinal >= set.replicas || (shrinking && ordinal == set.replicas - 1));
    if let Some(ordinal) = leaving {
        return step.leave(&group, ordinal);
    }
    if shrinking {
        return step.resize(
            Pods {
                replicas: set.replicas - 1,
                ..current
            },
            "ScalingDown",
            format!(
                "{} left the group: removing its pod ({} of {} coordinators)",
                pod(observed.name, set.replicas - 1),
                set.replicas - 1,
                observed.replicas
            ),
        );
    }
    // Every pod a voter, the lowest first.
    if let Some(ordinal) = (0..set.replicas).find(|ordinal| !group.is_voter(*ordinal)) {
        return step.join(&group, ordinal);
    }
    if set.replicas < observed.replicas {
        return step.resize(
            Pods {
                replicas: set.replicas + 1,
                ..current
            },
            "ScalingUp",
            format!(
                "starting {} ({} of {} coordinators)",
                pod(observed.name, set.replicas),
                set.replicas + 1,
                observed.replicas
            ),
        );
    }
    step.roll(&group)
}

fn progressing(reason: &'static str, message: String) -> Report {
    Report::Progressing { reason, message }
}

fn blocked(reason: &'static str, message: String) -> Report {
    Report::Blocked { reason, message }
}

fn pod(name: &str, ordinal: i32) -> String {
    format!("{name}-{ordinal}")
}

/// The members by pod ordinal, and who leads.
struct Group<'a> {
    members: BTreeMap<i32, &'a MemberView>,
    leader: Option<i32>,
}

impl<'a> Group<'a> {
    fn new(view: &'a ClusterView) -> Self {
        let members: BTreeMap<i32, &MemberView> = view
            .members
            .iter()
            .filter_map(|member| Some((ordinal_of(member.id)?, member)))
            .collect();
        let leader = view.leader_id.and_then(ordinal_of);
        Self { members, leader }
    }

    fn is_voter(&self, ordinal: i32) -> bool {
        self.members
            .get(&ordinal)
            .is_some_and(|member| member.role != Role::Learner)
    }

    fn voters(&self) -> BTreeSet<i32> {
        let voters = self.members.keys().copied();
        voters.filter(|ordinal| self.is_voter(*ordinal)).collect()
    }

    /// Reachable and caught up (the leader is, as far as it knows).
    fn is_healthy(&self, ordinal: i32) -> bool {
        self.leader == Some(ordinal)
            || self
                .members
                .get(&ordinal)
                .is_some_and(|member| member.reachable && member.caught_up == Some(true))
    }

    /// Why the group would lack a healthy majority of its voters after `change`; `None` when
    /// it would not. A voter that restarts still counts in the majority; one that leaves does
    /// not.
    fn quorum_blocker(&self, change: Outage, replicas: i32) -> Option<Report> {
        let voters = self.voters();
        let (down, what) = match change {
            Outage::None => (None, "the group".to_owned()),
            Outage::Restart(o) => (Some(o), format!("restarting node {}", o + 1)),
            Outage::Leave(o) => (Some(o), format!("removing node {}", o + 1)),
        };
        let remaining: Vec<i32> = voters
            .iter()
            .copied()
            .filter(|v| Some(*v) != down)
            .collect();
        let counted = match change {
            Outage::Leave(_) => remaining.len(),
            _ => voters.len(),
        };
        let healthy = remaining.iter().filter(|v| self.is_healthy(**v)).count();
        let needed = counted / 2 + 1;
        if healthy >= needed {
            return None;
        }
        let lagging: Vec<String> = remaining
            .iter()
            .filter(|v| !self.is_healthy(**v))
            .map(|v| format!("node {} ({})", v + 1, ordinal_label(*v, replicas)))
            .collect();
        Some(blocked(
            "QuorumAtRisk",
            format!(
                "{what} would leave {healthy} of {counted} voters reachable and caught up, {needed} are needed; waiting for {}",
                lagging.join(", ")
            ),
        ))
    }
}

/// What a step takes away from the voters.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// Nothing: is the group healthy as it is?
    None,
    /// The voter at this ordinal restarts.
    Restart(i32),
    /// The voter at this ordinal leaves.
    Leave(i32),
}

/// Node ids are ordinal + 1.
fn ordinal_of(id: u64) -> Option<i32> {
    i32::try_from(id).ok()?.checked_sub(1)
}

fn ordinal_label(ordinal: i32, replicas: i32) -> String {
    match ordinal < replicas {
        true => format!("pod ordinal {ordinal}"),
        false => format!("no pod: ordinal {ordinal}"),
    }
}

/// One decision being made.
struct Step<'a> {
    observed: &'a Observed<'a>,
    set: &'a SetState,
    current: Pods,
}

impl Step<'_> {
    fn pod(&self, ordinal: i32) -> String {
        pod(self.observed.name, ordinal)
    }

    fn pod_state(&self, ordinal: i32) -> Option<&PodState> {
        self.observed.pods.iter().find(|p| p.ordinal == ordinal)
    }

    /// Keep the StatefulSet as it is and report.
    fn wait(&self, report: Report) -> Decision {
        Decision {
            pods: self.current,
            change: None,
            resized: false,
            report,
        }
    }

    fn resize(&self, pods: Pods, reason: &'static str, message: String) -> Decision {
        Decision {
            pods,
            change: None,
            resized: pods != self.current,
            report: progressing(reason, message),
        }
    }

    fn call(&self, change: Call, reason: &'static str, message: String) -> Decision {
        Decision {
            change: Some(change),
            ..self.wait(progressing(reason, message))
        }
    }

    /// Waits for pod `ordinal` with `report`, or reports it failing: a stuck pod does not
    /// come up by itself. A rollout stays held there (every other pod keeps serving), and a
    /// fixed spec replaces it: the StatefulSet's `Parallel` policy lets the controller
    /// replace a pod that is not ready.
    fn wait_for_pod(&self, ordinal: i32, report: Report) -> Decision {
        let failure = self.pod_state(ordinal).and_then(|p| p.failure.as_deref());
        self.wait(match failure {
            Some(failure) => blocked(
                "PodFailing",
                format!(
                    "{} cannot run: {failure}; fix the spec and the pod is replaced",
                    self.pod(ordinal)
                ),
            ),
            None => report,
        })
    }

    /// No leader's view: wait while pods are starting, else the group is in trouble.
    fn no_leader(&self) -> Decision {
        let started = self.observed.pods.iter().filter(|p| p.started).count();
        let all_started = i32::try_from(started).is_ok_and(|n| n >= self.set.replicas);
        let detail = match self.observed.view {
            None => "no coordinator answered".to_owned(),
            Some(view) => format!("node {} knows no leader", view.node_id),
        };
        self.wait(match all_started {
            true => blocked(
                "NoLeader",
                format!("{detail}, though every coordinator runs"),
            ),
            false => progressing(
                "WaitingForLeader",
                format!(
                    "{detail}; {started} of {} coordinators run",
                    self.set.replicas
                ),
            ),
        })
    }

    /// Member at `ordinal` leaves the group: leadership off it first.
    fn leave(&self, group: &Group, ordinal: i32) -> Decision {
        if group.leader == Some(ordinal) {
            let stay = self.set.replicas.min(self.observed.replicas);
            return self.transfer(group, ordinal, |o| o < stay);
        }
        if group.is_voter(ordinal)
            && let Some(blocked) = group.quorum_blocker(Outage::Leave(ordinal), self.set.replicas)
        {
            return self.wait(blocked);
        }
        self.call(
            Call::Remove(ordinal),
            "RemovingMember",
            format!(
                "removing {} (node {}) from the group",
                self.pod(ordinal),
                node_id(ordinal)
            ),
        )
    }

    /// Leadership from `from` to the lowest-ordinal healthy voter that is `eligible`.
    fn transfer(&self, group: &Group, from: i32, eligible: impl Fn(i32) -> bool) -> Decision {
        let target = group
            .voters()
            .into_iter()
            .find(|&o| o != from && eligible(o) && group.is_healthy(o));
        match target {
            Some(to) => self.call(
                Call::TransferLeadership(to),
                "TransferringLeadership",
                format!(
                    "moving leadership from {} to {} before {} restarts or leaves",
                    self.pod(from),
                    self.pod(to),
                    self.pod(from)
                ),
            ),
            None => self.wait(blocked(
                "QuorumAtRisk",
                format!(
                    "{} leads and no other voter that could take over is reachable and caught up",
                    self.pod(from)
                ),
            )),
        }
    }

    /// Pod `ordinal` becomes a voter: added as a learner once it runs, promoted once caught up.
    fn join(&self, group: &Group, ordinal: i32) -> Decision {
        let id = node_id(ordinal);
        let name = self.pod(ordinal);
        let Some(member) = group.members.get(&ordinal) else {
            let pod = self.pod_state(ordinal);
            if pod.is_some_and(|p| p.started) {
                return self.call(
                    Call::AddLearner(ordinal),
                    "AddingLearner",
                    format!("adding {name} (node {id}) as a learner"),
                );
            }
            // A pod that never joined holds no data: it need not wait for its turn in the
            // rollout to run the current template (one stuck on a template since fixed would
            // otherwise wait forever).
            let stale = pod.is_some_and(|p| p.revision != self.set.update_revision);
            let joined_above = (ordinal..self.set.replicas).any(|o| group.members.contains_key(&o));
            if stale
                && self.set.update_revision.is_some()
                && ordinal < self.current.partition
                && !joined_above
            {
                return self.resize(
                    Pods {
                        partition: ordinal,
                        ..self.current
                    },
                    "RollingUpdate",
                    format!("{name} never joined: replacing it on the current template"),
                );
            }
            return self.wait_for_pod(
                ordinal,
                progressing("WaitingForPod", format!("waiting for {name} to start")),
            );
        };
        match (member.reachable, member.caught_up) {
            (true, Some(true)) => self.call(
                Call::Promote(ordinal),
                "Promoting",
                format!("promoting {name} (node {id}) to voter"),
            ),
            (true, _) if self.observed.stalled.contains(&id) => self.wait(blocked(
                "MemberNotCatchingUp",
                format!(
                    "{name} (node {id}) is reachable but its log has stopped advancing{}",
                    member
                        .match_index
                        .map(|index| format!(" at index {index}"))
                        .unwrap_or_default()
                ),
            )),
            (true, _) => {
                let leaders = self.observed.view.and_then(|view| view.last_log_index);
                let at = match (member.match_index, leaders) {
                    (Some(index), Some(last)) => format!(" (at index {index} of {last})"),
                    _ => String::new(),
                };
                self.wait(progressing(
                    "CatchingUp",
                    format!("{name} (node {id}) is catching up with the leader{at}"),
                ))
            }
            (false, _) => self.wait(blocked(
                "MemberNotCatchingUp",
                format!("{name} (node {id}) is a learner the leader cannot reach"),
            )),
        }
    }

    /// The rollout: every pod on the StatefulSet's update revision, one at a time.
    fn roll(&self, group: &Group) -> Decision {
        let Some(revision) = self.set.update_revision.as_deref() else {
            return self.wait(progressing(
                "RollingUpdate",
                "waiting for the StatefulSet controller to see the new template".into(),
            ));
        };
        let partition = self.current.partition.min(self.set.replicas);
        let updated = |ordinal: i32| {
            self.pod_state(ordinal)
                .is_some_and(|p| p.revision.as_deref() == Some(revision))
        };
        // The pods already let through must be updated, ready and caught up first.
        if let Some(ordinal) = (partition..self.set.replicas).find(|&o| {
            !updated(o) || !self.pod_state(o).is_some_and(|p| p.ready) || !group.is_healthy(o)
        }) {
            return self.wait_for_pod(
                ordinal,
                progressing(
                    "RollingUpdate",
                    format!(
                        "waiting for {} to run the new template and catch up",
                        self.pod(ordinal)
                    ),
                ),
            );
        }
        let Some(next) = (0..partition).rev().find(|&o| !updated(o)) else {
            return match partition {
                0 => self.wait(Report::Settled),
                // The pods below already run it: nothing restarts.
                _ => self.resize(
                    Pods {
                        partition: 0,
                        ..self.current
                    },
                    "RollingUpdate",
                    "every coordinator runs the current template".into(),
                ),
            };
        };
        if group.leader == Some(next) {
            // To an updated pod if there is one, else pod 0 (updated last).
            let updated_voter = group
                .voters()
                .into_iter()
                .any(|o| o >= partition && group.is_healthy(o));
            return self.transfer(group, next, |o| !updated_voter || o >= partition);
        }
        if let Some(blocked) = group.quorum_blocker(Outage::Restart(next), self.set.replicas) {
            return self.wait(blocked);
        }
        let remaining = (0..next).filter(|&o| !updated(o)).count();
        self.resize(
            Pods {
                partition: next,
                ..self.current
            },
            "RollingUpdate",
            format!("updating {} ({remaining} more after it)", self.pod(next)),
        )
    }
}

/// The node id of the pod with `ordinal`.
pub fn node_id(ordinal: i32) -> u64 {
    u64::try_from(ordinal).map_or(0, |o| o + 1)
}

#[cfg(test)]
mod tests;
