//! The step function over a table of situations, and over whole scale and upgrade runs: a
//! small model of the StatefulSet controller and the group carries out each decision, and the
//! run is checked step by step (what was done, and that a healthy majority never went away).

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const NAME: &str = "tc";

/// A member: its role, and how many looks it takes to catch up (0: caught up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    voter: bool,
    lag: u8,
}

/// The world the decisions act on.
struct Model {
    spec: i32,
    template: String,
    set: SetState,
    pods: BTreeMap<i32, PodState>,
    members: BTreeMap<i32, Member>,
    leader: i32,
    /// Pods whose process never comes up.
    broken: Vec<i32>,
    /// A template whose pods never come up (their image cannot be pulled).
    broken_template: Option<String>,
    /// Node ids of learners reported as no longer advancing.
    stalled: BTreeSet<u64>,
    /// What each step did, as `Reason tc-N` / `Reason`.
    log: Vec<String>,
}

/// The leader's last log index.
const LAST_INDEX: u64 = 100;

impl Model {
    /// A settled group of `voters` pods on template `v1`, led by `leader`.
    fn settled(voters: i32, leader: i32) -> Self {
        let pods = (0..voters)
            .map(|o| (o, pod(o, "v1")))
            .collect::<BTreeMap<_, _>>();
        let members = (0..voters)
            .map(|o| {
                (
                    o,
                    Member {
                        voter: true,
                        lag: 0,
                    },
                )
            })
            .collect();
        Self {
            spec: voters,
            template: "v1".into(),
            set: SetState {
                replicas: voters,
                partition: 0,
                template_hash: Some("v1".into()),
                update_revision: Some("v1".into()),
            },
            pods,
            members,
            leader,
            broken: Vec::new(),
            broken_template: None,
            stalled: BTreeSet::new(),
            log: Vec::new(),
        }
    }

    fn view(&self) -> ClusterView {
        let members = self
            .members
            .iter()
            .map(|(&o, m)| MemberView {
                id: node_id(o),
                address: format!("tc-{o}.tc-peers.payments.svc.cluster.local:9091"),
                role: match (o == self.leader, m.voter) {
                    (true, _) => Role::Leader,
                    (false, true) => Role::Follower,
                    (false, false) => Role::Learner,
                },
                match_index: Some(LAST_INDEX - u64::from(m.lag)),
                caught_up: Some(m.lag == 0),
                reachable: self.reachable(o),
            })
            .collect();
        ClusterView {
            node_id: node_id(self.leader),
            state: "leader".into(),
            leader_id: Some(node_id(self.leader)),
            leader_admin_address: None,
            change_in_progress: false,
            last_log_index: Some(LAST_INDEX),
            members,
        }
    }

    fn decide(&self) -> Decision {
        let pods: Vec<PodState> = self.pods.values().cloned().collect();
        let view = self.view();
        let observed = Observed {
            replicas: self.spec,
            name: NAME,
            set: Some(&self.set),
            template_hash: &self.template,
            pods: &pods,
            view: Some(&view),
            stalled: &self.stalled,
        };
        decide(&observed)
    }

    fn reachable(&self, ordinal: i32) -> bool {
        self.pods.get(&ordinal).is_some_and(|p| p.started) && !self.is_broken(ordinal)
    }

    fn is_broken(&self, ordinal: i32) -> bool {
        self.broken.contains(&ordinal)
            || self.broken_template.is_some()
                && self.pods.get(&ordinal).and_then(|p| p.revision.as_ref())
                    == self.broken_template.as_ref()
    }

    fn healthy(&self, ordinal: i32) -> bool {
        self.reachable(ordinal) && self.members.get(&ordinal).is_some_and(|m| m.lag == 0)
    }

    /// Time passes: reachable members catch up a little, new pods start, then become ready.
    fn tick(&mut self) {
        let reachable: Vec<i32> = self
            .pods
            .keys()
            .copied()
            .filter(|o| self.reachable(*o))
            .collect();
        for (o, m) in &mut self.members {
            if reachable.contains(o) {
                m.lag = m.lag.saturating_sub(1);
            }
        }
        let members = self.members.clone();
        let broken: Vec<i32> = self
            .pods
            .keys()
            .copied()
            .filter(|o| self.is_broken(*o))
            .collect();
        for (o, p) in &mut self.pods {
            if broken.contains(o) {
                if p.revision.is_some() && p.revision == self.broken_template {
                    p.failure = Some(PULL_FAILURE.into());
                }
                continue;
            }
            p.ready = p.started && members.get(o).is_some_and(|m| m.voter && m.lag == 0);
            p.started = true;
        }
    }

    /// One reconcile: decide, record, carry out.
    fn step(&mut self) -> Decision {
        self.tick();
        let decision = self.decide();
        let (reason, message) = match &decision.report {
            Report::Settled => ("Settled", String::new()),
            Report::Progressing { reason, message } | Report::Blocked { reason, message } => {
                (*reason, message.clone())
            }
        };
        let subject = message
            .split_whitespace()
            .find(|w| w.starts_with("tc-"))
            .map(|w| format!(" {w}"))
            .unwrap_or_default();
        self.log.push(format!("{reason}{subject}"));
        self.check_quorum();
        if let Some(call) = decision.change {
            self.change(call);
        }
        self.apply(decision.pods);
        decision
    }

    fn change(&mut self, call: Call) {
        match call {
            Call::AddLearner(o) => {
                assert!(
                    self.pods.get(&o).is_some_and(|p| p.started),
                    "added before it runs"
                );
                self.members.insert(
                    o,
                    Member {
                        voter: false,
                        lag: 2,
                    },
                );
            }
            Call::Promote(o) => {
                assert!(self.healthy(o), "promoted before catching up");
                self.members.get_mut(&o).expect("a learner").voter = true;
            }
            Call::TransferLeadership(o) => {
                assert!(self.healthy(o), "leadership to a voter that lags");
                self.leader = o;
            }
            Call::Remove(o) => {
                assert_ne!(o, self.leader, "the leader removed");
                self.members.remove(&o);
            }
        }
    }

    /// The StatefulSet controller: pods created and deleted, updated ones restarted.
    fn apply(&mut self, pods: Pods) {
        if self.set.template_hash.as_deref() != Some(&self.template) {
            self.set.template_hash = Some(self.template.clone());
            self.set.update_revision = Some(self.template.clone());
        }
        self.set.replicas = pods.replicas;
        self.set.partition = pods.partition;
        let revision = self.set.update_revision.clone().expect("revision");
        self.pods.retain(|o, _| *o < pods.replicas);
        for o in 0..pods.replicas {
            let current = self.pods.entry(o).or_insert_with(|| PodState {
                ordinal: o,
                revision: Some(revision.clone()),
                ..PodState::default()
            });
            if o >= pods.partition && current.revision.as_ref() != Some(&revision) {
                assert_ne!(o, self.leader, "the leader restarted");
                self.log.push(format!("restart tc-{o}"));
                *current = PodState {
                    ordinal: o,
                    revision: Some(revision.clone()),
                    ..PodState::default()
                };
                if let Some(m) = self.members.get_mut(&o) {
                    m.lag = 1;
                }
            }
        }
    }

    /// Every pod runs `revision` and is ready.
    fn all_ready_on(&self, revision: &str) -> bool {
        let on = |p: &PodState| p.revision.as_deref() == Some(revision) && p.ready;
        self.pods.values().all(on)
    }

    fn check_quorum(&self) {
        let voters: Vec<i32> = self
            .members
            .iter()
            .filter(|(_, m)| m.voter)
            .map(|(o, _)| *o)
            .collect();
        let healthy = voters.iter().filter(|o| self.healthy(**o)).count();
        assert!(
            healthy > voters.len() / 2 || !self.broken.is_empty(),
            "below quorum: {:?}",
            self.members
        );
    }

    /// Steps until settled (or blocked the same way twice); returns the log.
    fn run(&mut self) -> Vec<String> {
        for _ in 0..40 {
            let decision = self.step();
            if decision.report == Report::Settled {
                return self.log.clone();
            }
        }
        panic!("never settled: {:?}", self.log);
    }
}

fn pod(ordinal: i32, revision: &str) -> PodState {
    PodState {
        ordinal,
        started: true,
        ready: true,
        revision: Some(revision.into()),
        failure: None,
    }
}

const PULL_FAILURE: &str = "ImagePullBackOff: Back-off pulling image \"txmesh/txmesh:0.2.0\"";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_new_group_starts_every_pod_at_once() {
    let observed = Observed {
        replicas: 5,
        name: NAME,
        set: None,
        template_hash: "v1",
        pods: &[],
        view: None,
        stalled: &BTreeSet::new(),
    };
    let decision = decide(&observed);
    assert_eq!(
        decision.pods,
        Pods {
            replicas: 5,
            partition: 0
        }
    );
    assert_eq!(decision.change, None);
    assert!(matches!(
        decision.report,
        Report::Progressing {
            reason: "Creating",
            ..
        }
    ));
}

#[test]
fn scale_up_3_to_5_adds_each_pod_as_a_learner_and_promotes_it_when_caught_up() {
    let mut model = Model::settled(3, 0);
    model.spec = 5;
    let log = model.run();
    assert_eq!(
        log,
        strings(&[
            "ScalingUp tc-3",
            "AddingLearner tc-3",
            "CatchingUp tc-3",
            "Promoting tc-3",
            "ScalingUp tc-4",
            "AddingLearner tc-4",
            "CatchingUp tc-4",
            "Promoting tc-4",
            "Settled",
        ])
    );
    assert_eq!(model.set.replicas, 5);
    assert!(model.members.values().all(|m| m.voter));
}

#[test]
fn a_new_pod_is_added_only_once_its_process_runs() {
    let mut model = Model::settled(3, 0);
    model.spec = 5;
    model.broken = vec![3];
    model.step();
    let decision = model.step();
    assert_eq!(decision.change, None);
    assert_eq!(
        decision.report,
        Report::Progressing {
            reason: "WaitingForPod",
            message: "waiting for tc-3 to start".into()
        }
    );
}

#[test]
fn a_new_pod_that_cannot_run_is_a_blocker() {
    let mut model = Model::settled(3, 0);
    model.spec = 5;
    model.template = "v2".into();
    model.broken_template = Some("v2".into());
    // The new template is held from the existing pods; the new pod runs it.
    let log: Vec<String> = (0..4)
        .map(|_| model.step())
        .map(|d| format!("{:?}", d.report))
        .collect();
    let last = model.step();
    assert_eq!(
        last.report,
        Report::Blocked {
            reason: "PodFailing",
            message: format!(
                "tc-3 cannot run: {PULL_FAILURE}; fix the spec and the pod is replaced"
            )
        },
        "{log:?}"
    );
    assert_eq!(last.change, None);

    // The fix: every pod held, but tc-3 never joined, so it runs the new template at once;
    // then the scale up and the rollout go on.
    model.log.clear();
    model.template = "v3".into();
    let log = model.run();
    assert_eq!(
        log[..4],
        [
            "RollingUpdate",
            "RollingUpdate tc-3",
            "restart tc-3",
            "AddingLearner tc-3"
        ],
        "{log:?}"
    );
    assert!(model.members.values().all(|m| m.voter) && model.members.len() == 5);
    assert!(model.all_ready_on("v3"));
}

#[test]
fn a_broken_template_holds_the_rollout_at_one_pod_until_the_spec_is_fixed() {
    let mut model = Model::settled(3, 0);
    model.template = "v2".into();
    model.broken_template = Some("v2".into());
    for _ in 0..6 {
        model.step();
    }
    let held = model.step();
    assert_eq!(
        held.report,
        Report::Blocked {
            reason: "PodFailing",
            message: format!(
                "tc-2 cannot run: {PULL_FAILURE}; fix the spec and the pod is replaced"
            )
        }
    );
    assert_eq!(held.pods.partition, 2, "only tc-2 let through");
    let restarts = |log: &[String]| -> Vec<String> {
        log.iter()
            .filter(|l| l.starts_with("restart"))
            .cloned()
            .collect()
    };
    assert_eq!(restarts(&model.log), ["restart tc-2"]);

    // The fix: a new template. tc-2 is replaced first, then the others as usual.
    model.log.clear();
    model.template = "v3".into();
    let log = model.run();
    assert_eq!(
        restarts(&log),
        ["restart tc-2", "restart tc-1", "restart tc-0"],
        "{log:?}"
    );
    assert!(
        log.contains(&"TransferringLeadership tc-0".to_owned()),
        "{log:?}"
    );
    assert!(model.all_ready_on("v3"));
}

#[test]
fn scale_down_5_to_3_moves_leadership_off_then_removes_then_shrinks() {
    let mut model = Model::settled(5, 4);
    model.spec = 3;
    let log = model.run();
    assert_eq!(
        log,
        strings(&[
            "TransferringLeadership tc-4",
            "RemovingMember tc-4",
            "ScalingDown tc-4",
            "RemovingMember tc-3",
            "ScalingDown tc-3",
            "Settled",
        ])
    );
    assert_eq!(model.leader, 0, "leadership went to a pod that stays");
    assert_eq!(model.set.replicas, 3);
    assert_eq!(model.members.len(), 3);
}

#[test]
fn scale_down_while_growing_removes_the_learner() {
    let mut model = Model::settled(3, 0);
    model.spec = 5;
    model.step();
    model.step();
    assert_eq!(model.members.get(&3).map(|m| m.voter), Some(false));
    model.spec = 3;
    let log = model.run();
    assert_eq!(
        &log[2..],
        strings(&["RemovingMember tc-3", "ScalingDown tc-3", "Settled"])
    );
}

/// The restarts and leadership moves of an upgrade of 3 pods led by `leader`.
fn upgrade(leader: i32) -> (Vec<String>, Model) {
    let mut model = Model::settled(3, leader);
    model.template = "v2".into();
    let log = model.run();
    let actions = log
        .into_iter()
        .filter(|l| l.starts_with("restart") || l.starts_with("TransferringLeadership"))
        .collect();
    (actions, model)
}

#[test]
fn an_upgrade_restarts_one_pod_at_a_time_and_the_leader_last_after_a_transfer() {
    // Pod 0, updated last, leads: it hands over to an updated pod just before its turn.
    let (actions, model) = upgrade(0);
    assert_eq!(
        actions,
        strings(&[
            "restart tc-2",
            "restart tc-1",
            "TransferringLeadership tc-0",
            "restart tc-0"
        ])
    );
    assert_eq!(model.leader, 1);
    // The highest pod leads: leadership goes to pod 0, which is updated last.
    let (actions, model) = upgrade(2);
    assert_eq!(
        actions,
        strings(&[
            "TransferringLeadership tc-2",
            "restart tc-2",
            "restart tc-1",
            "TransferringLeadership tc-0",
            "restart tc-0",
        ])
    );
    assert_eq!(model.leader, 1, "to the lowest updated pod");
    // A middle pod leads: it hands over to an updated pod, once.
    let (actions, model) = upgrade(1);
    assert_eq!(
        actions,
        strings(&[
            "restart tc-2",
            "TransferringLeadership tc-1",
            "restart tc-1",
            "restart tc-0",
        ])
    );
    assert_eq!(model.leader, 2);
    assert!(
        model
            .pods
            .values()
            .all(|p| p.revision.as_deref() == Some("v2"))
    );
    assert_eq!(model.set.partition, 0);
}

#[test]
fn an_upgrade_holds_every_pod_first_and_waits_for_each_to_catch_up() {
    let mut model = Model::settled(3, 0);
    model.template = "v2".into();
    let log = model.run();
    assert_eq!(
        log,
        strings(&[
            // The new template is applied with every pod held back.
            "RollingUpdate",
            "RollingUpdate tc-2",
            "restart tc-2",
            "RollingUpdate tc-2",
            "RollingUpdate tc-1",
            "restart tc-1",
            "RollingUpdate tc-1",
            "TransferringLeadership tc-0",
            "RollingUpdate tc-0",
            "restart tc-0",
            "RollingUpdate tc-0",
            "Settled",
        ])
    );
}

#[test]
fn a_scale_up_during_an_upgrade_starts_new_pods_on_the_new_template() {
    let mut model = Model::settled(3, 0);
    model.template = "v2".into();
    model.spec = 5;
    model.run();
    assert!(
        model
            .pods
            .values()
            .all(|p| p.revision.as_deref() == Some("v2"))
    );
    assert_eq!((model.set.replicas, model.set.partition), (5, 0));
}

#[test]
fn a_restart_that_would_lose_quorum_is_refused() {
    let mut model = Model::settled(3, 0);
    model.template = "v2".into();
    model.broken = vec![1];
    model.step();
    let decision = model.step();
    assert_eq!(
        decision.pods,
        Pods {
            replicas: 3,
            partition: 3
        },
        "nothing restarts"
    );
    let Report::Blocked { reason, message } = decision.report else {
        panic!("not blocked: {decision:?}");
    };
    assert_eq!(reason, "QuorumAtRisk");
    assert_eq!(
        message,
        "restarting node 3 would leave 1 of 3 voters reachable and caught up, 2 are needed; waiting for node 2 (pod ordinal 1)"
    );
}

#[test]
fn a_removal_that_would_lose_quorum_is_refused_but_a_dead_voter_may_leave() {
    // Voters 0-4, 1 and 2 down: removing 4 leaves 2 of 4 healthy.
    let mut model = Model::settled(5, 0);
    model.spec = 3;
    model.broken = vec![1, 2];
    let decision = model.step();
    assert_eq!(decision.change, None);
    assert!(
        matches!(&decision.report, Report::Blocked { reason: "QuorumAtRisk", message } if message.starts_with("removing node 5")),
        "{decision:?}"
    );
    // Voters 0-4 with 4 down: it may leave (the rest are healthy).
    let mut model = Model::settled(5, 0);
    model.spec = 3;
    model.broken = vec![4];
    let decision = model.step();
    assert_eq!(decision.change, Some(Call::Remove(4)));
}

#[test]
fn a_group_without_a_healthy_majority_is_left_alone() {
    let mut model = Model::settled(3, 0);
    model.spec = 5;
    model.broken = vec![1, 2];
    let decision = model.step();
    assert_eq!((decision.change, decision.resized), (None, false));
    assert!(matches!(
        decision.report,
        Report::Blocked {
            reason: "QuorumAtRisk",
            ..
        }
    ));
}

#[test]
fn a_learner_the_leader_cannot_reach_is_a_blocker() {
    let mut model = Model::settled(3, 0);
    model.spec = 5;
    model.step();
    model.step();
    model.broken = vec![3];
    model.pods.get_mut(&3).expect("pod 3").started = false;
    let decision = model.step();
    assert_eq!(
        decision.report,
        Report::Blocked {
            reason: "MemberNotCatchingUp",
            message: "tc-3 (node 4) is a learner the leader cannot reach".into()
        }
    );
}

#[test]
fn a_catching_up_learner_shows_its_progress_and_a_stalled_one_is_a_blocker() {
    let mut model = Model::settled(3, 0);
    model.spec = 5;
    model.step();
    model.step();
    let decision = model.step();
    assert_eq!(
        decision.report,
        Report::Progressing {
            reason: "CatchingUp",
            message: "tc-3 (node 4) is catching up with the leader (at index 99 of 100)".into()
        }
    );
    // Reachable, but its log stopped: the catch-up watch says so, and nothing goes on.
    model.members.get_mut(&3).expect("learner").lag = 5;
    model.stalled.insert(4);
    let decision = model.decide();
    assert_eq!(
        decision.report,
        Report::Blocked {
            reason: "MemberNotCatchingUp",
            message: "tc-3 (node 4) is reachable but its log has stopped advancing at index 95"
                .into()
        }
    );
    assert_eq!((decision.change, decision.resized), (None, false));
}

#[test]
fn without_a_leader_nothing_changes() {
    let set = SetState {
        replicas: 3,
        partition: 0,
        template_hash: Some("v1".into()),
        update_revision: Some("v1".into()),
    };
    let starting = [
        pod(0, "v1"),
        PodState {
            ordinal: 1,
            ..PodState::default()
        },
    ];
    let observed = Observed {
        replicas: 5,
        name: NAME,
        set: Some(&set),
        template_hash: "v1",
        pods: &starting,
        view: None,
        stalled: &BTreeSet::new(),
    };
    let decision = decide(&observed);
    assert_eq!(
        decision.pods,
        Pods {
            replicas: 3,
            partition: 0
        }
    );
    assert!(matches!(
        decision.report,
        Report::Progressing {
            reason: "WaitingForLeader",
            ..
        }
    ));
    let running = [pod(0, "v1"), pod(1, "v1"), pod(2, "v1")];
    let mut follower = Model::settled(3, 0).view();
    follower.state = "candidate".into();
    follower.leader_id = None;
    let observed = Observed {
        pods: &running,
        view: Some(&follower),
        ..observed
    };
    let decision = decide(&observed);
    assert_eq!(
        decision.report,
        Report::Blocked {
            reason: "NoLeader",
            message: "node 1 knows no leader, though every coordinator runs".into()
        }
    );
}

#[test]
fn nothing_is_started_while_a_membership_change_is_in_progress() {
    let model = Model::settled(3, 0);
    let mut view = model.view();
    view.change_in_progress = true;
    let pods: Vec<PodState> = model.pods.values().cloned().collect();
    let observed = Observed {
        replicas: 5,
        name: NAME,
        set: Some(&model.set),
        template_hash: "v1",
        pods: &pods,
        view: Some(&view),
        stalled: &BTreeSet::new(),
    };
    let decision = decide(&observed);
    assert_eq!((decision.change, decision.resized), (None, false));
    assert!(matches!(
        decision.report,
        Report::Progressing {
            reason: "MembershipChangeInProgress",
            ..
        }
    ));
}
