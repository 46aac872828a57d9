//! Money transfers through sidecars against a real coordinator: a transaction manager and two
//! ledgers (TCC participants), each application with its own `txmesh sidecar` process, tries
//! failing at random. After every run the money is conserved, nothing is left held, and no
//! Confirm/Cancel reached a ledger twice — with batching on or off, across a coordinator
//! restart, a sidecar restart, and a coordinator that moves to another port.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use txmesh_e2e::bank::{self, Bank, Load, Outcome, SOURCE, TARGET};
use txmesh_e2e::ledger::Ledger;
use txmesh_e2e::{CoordinatorProcess, Coordinators, SidecarProcess};

/// Quick retries, so phase two that had to wait finishes within a test.
const TUNING: &str = "[recovery]\nretry-initial-ms = 50\nretry-max-ms = 400\n";
const ACCOUNTS: usize = 4;
const BALANCE: i64 = 40;
/// How long phase two may take to finish everything after the load stops.
const SETTLE_BOUND: Duration = Duration::from_secs(30);

struct Deployment {
    coordinator: CoordinatorProcess,
    tm: SidecarProcess,
    source: SidecarProcess,
    target: SidecarProcess,
    bank: Arc<Bank>,
    /// The coordinator list the sidecars read, when they follow a file.
    coordinators_file: Option<std::path::PathBuf>,
    _dir: TempDir,
}

impl Deployment {
    async fn start(batch: bool, follow_file: bool) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let coordinator = CoordinatorProcess::start_with_config(&dir.path().join("tc"), TUNING);
        let coordinators_file = follow_file.then(|| dir.path().join("coordinators"));
        let coordinators = match &coordinators_file {
            Some(path) => {
                write_list(path, &coordinator);
                Coordinators::File(path.clone())
            }
            None => Coordinators::Static(vec![coordinator.seata_addr()]),
        };
        let sidecar = |name: &str| {
            SidecarProcess::start(&dir.path().join(name), name, coordinators.clone(), batch)
        };
        let (mut tm, source, target) = (sidecar("bank-tm"), sidecar(SOURCE), sidecar(TARGET));
        let ledger = |name| Arc::new(Ledger::new(name, bank::accounts(ACCOUNTS, BALANCE)));
        let bank = Bank::open(
            &tm.endpoint(),
            (&source.endpoint(), ledger(SOURCE)),
            (&target.endpoint(), ledger(TARGET)),
        )
        .await;
        let mut deployment = Self {
            coordinator,
            tm: {
                tm.wait_ready();
                tm
            },
            source,
            target,
            bank: Arc::new(bank),
            coordinators_file,
            _dir: dir,
        };
        deployment.wait_ready();
        deployment
    }

    fn wait_ready(&mut self) {
        for sidecar in [&mut self.tm, &mut self.source, &mut self.target] {
            sidecar.wait_ready();
        }
    }

    /// After the load: everything settles, money is conserved, nothing reached a ledger twice.
    async fn check_books(&self) {
        assert!(
            self.bank.settled(SETTLE_BOUND).await,
            "tries still held after {SETTLE_BOUND:?}: source {}, target {}",
            self.bank.source().held(),
            self.bank.target().held()
        );
        let opening = 2 * BALANCE * ACCOUNTS as i64;
        assert_eq!(self.bank.total(), opening, "money is conserved");
        assert_eq!(
            self.bank.repeated_calls(),
            0,
            "a Confirm/Cancel reached a ledger twice"
        );
    }
}

fn write_list(path: &Path, coordinator: &CoordinatorProcess) {
    // Written whole under another name, then renamed: the sidecar never reads half a file.
    let staging = path.with_extension("new");
    std::fs::write(&staging, coordinator.seata_addr().to_string()).expect("write the list");
    std::fs::rename(&staging, path).expect("replace the list");
}

/// Runs the seeded plan (one worker per account, concurrently) and checks every outcome
/// against what the plan determines.
async fn run_plan(deployment: &Deployment, seed: u64) {
    let plans: Vec<_> = (0..ACCOUNTS).map(|w| bank::plan(w, 12, seed)).collect();
    let expected = bank::expected_outcomes(&plans, BALANCE);
    let runs = plans.into_iter().map(|plan| {
        let bank = deployment.bank.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for transfer in &plan {
                outcomes.push(bank.transfer(transfer).await);
            }
            outcomes
        })
    });
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await.expect("a worker does not panic"));
    }
    assert_eq!(outcomes, expected, "every transfer ends as the plan says");
    deployment.check_books().await;
    let moved: i64 = deployment.bank.target().balances().values().sum();
    assert!(moved > BALANCE * ACCOUNTS as i64, "some money moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_end_as_planned_with_batching() {
    let deployment = Deployment::start(true, false).await;
    run_plan(&deployment, 7).await;
    let metrics = deployment.source.metrics();
    assert!(
        metrics.contains(r#"txmesh_sidecar_calls_total{method="Register",code="OK"}"#),
        "calls are counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_end_as_planned_without_batching() {
    let deployment = Deployment::start(false, false).await;
    run_plan(&deployment, 7).await;
}

/// Runs the load, disturbs the deployment with `disturb`, runs on, then checks the books.
async fn under_load(
    deployment: &mut Deployment,
    disturb: impl AsyncFnOnce(&mut Deployment),
) -> Vec<Outcome> {
    let load = Load::start(deployment.bank.clone(), ACCOUNTS, 11);
    let before = committed_soon(deployment).await;
    disturb(deployment).await;
    deployment.wait_ready();
    deployment.bank.reconnected().await;
    let after = committed_soon(deployment).await;
    let outcomes = load.stop().await;
    deployment.check_books().await;
    assert!(before && after, "transfers commit before and after");
    outcomes
}

/// Whether transfers go through: the target ledger finishes a few more branches in time.
async fn committed_soon(deployment: &Deployment) -> bool {
    let target = deployment.bank.target();
    let more = target.finished() + 8;
    target.finished_at_least(more, SETTLE_BOUND).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_restart_delivers_phase_two_once() {
    let mut deployment = Deployment::start(true, false).await;
    let outcomes = under_load(&mut deployment, async |d| d.coordinator.restart()).await;
    assert!(outcomes.contains(&Outcome::Committed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_restart_delivers_phase_two_once() {
    let mut deployment = Deployment::start(true, false).await;
    under_load(&mut deployment, async |d| {
        d.source.terminate();
        d.source.restart();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_on_another_port_is_followed() {
    let mut deployment = Deployment::start(true, true).await;
    under_load(&mut deployment, async |d| {
        d.coordinator.restart_on_new_port();
        let list = d
            .coordinators_file
            .as_ref()
            .expect("the sidecars follow a file");
        write_list(list, &d.coordinator);
    })
    .await;
}
