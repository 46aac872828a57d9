//! An in-memory account ledger served as a TCC participant through a sidecar: a try holds
//! money (a withdrawal takes it off the balance, a deposit waits aside), confirm makes the
//! hold final, cancel releases it. It counts every phase-two call that comes again for a
//! branch already finished, so tests can check that Confirm/Cancel reach it exactly once.
//! The demo's two account services are two of these.
//!
//! Application data is `withdraw <account> <amount>` or `deposit <account> <amount>`, with
//! ` fail` appended to make the try fail (tests inject failures this way, deterministically).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use txmesh_api::participant::{Answer, Branch, Participant};
use txmesh_api::v1::{Phase, PhaseTwoAction};

/// What a try asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Money leaves the account.
    Withdraw,
    /// Money arrives in the account.
    Deposit,
}

/// A parsed try request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// Which way.
    pub direction: Direction,
    /// The account.
    pub account: String,
    /// How much (positive).
    pub amount: i64,
    /// Whether the try is told to fail.
    pub fail: bool,
}

impl Movement {
    /// The application data for this movement.
    pub fn encode(&self) -> String {
        let verb = match self.direction {
            Direction::Withdraw => "withdraw",
            Direction::Deposit => "deposit",
        };
        let fail = if self.fail { " fail" } else { "" };
        format!("{verb} {} {}{fail}", self.account, self.amount)
    }

    /// Parses application data.
    pub fn decode(data: &str) -> Option<Self> {
        let mut words = data.split(' ');
        let direction = match words.next()? {
            "withdraw" => Direction::Withdraw,
            "deposit" => Direction::Deposit,
            _ => return None,
        };
        let account = words.next()?.to_owned();
        let amount = words.next()?.parse().ok().filter(|a| *a > 0)?;
        let fail = match words.next() {
            None => false,
            Some("fail") => true,
            Some(_) => return None,
        };
        Some(Self {
            direction,
            account,
            amount,
            fail,
        })
    }
}

/// Why a try failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryFailed(pub String);

impl fmt::Display for TryFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type BranchKey = (String, i64);

#[derive(Debug, Default)]
struct Books {
    balances: BTreeMap<String, i64>,
    /// Money held by tries awaiting phase two.
    holds: HashMap<BranchKey, Movement>,
    /// Branches whose phase two is done, and which phase it was.
    finished: HashMap<BranchKey, Phase>,
    repeated_calls: u64,
}

/// The ledger.
#[derive(Debug)]
pub struct Ledger {
    resource_id: String,
    books: Mutex<Books>,
    /// Bumped at every change, so tests can wait for a state.
    changes: watch::Sender<u64>,
}

impl Ledger {
    /// A ledger serving `resource_id` with these opening balances.
    pub fn new(resource_id: &str, balances: impl IntoIterator<Item = (String, i64)>) -> Self {
        let books = Books {
            balances: balances.into_iter().collect(),
            ..Books::default()
        };
        Self {
            resource_id: resource_id.to_owned(),
            books: Mutex::new(books),
            changes: watch::Sender::new(0),
        }
    }

    /// The resource this ledger serves.
    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Current balances.
    pub fn balances(&self) -> BTreeMap<String, i64> {
        self.books().balances.clone()
    }

    /// The sum of the balances, plus money withdrawn by tries still held.
    pub fn total(&self) -> i64 {
        let books = self.books();
        let held: i64 = books
            .holds
            .values()
            .filter(|m| m.direction == Direction::Withdraw)
            .map(|m| m.amount)
            .sum();
        books.balances.values().sum::<i64>() + held
    }

    /// Tries still waiting for phase two.
    pub fn held(&self) -> usize {
        self.books().holds.len()
    }

    /// Phase-two calls for branches already finished.
    pub fn repeated_calls(&self) -> u64 {
        self.books().repeated_calls
    }

    /// Branches finished by phase two.
    pub fn finished(&self) -> usize {
        self.books().finished.len()
    }

    /// Waits (at most `bound`) until no try is held; whether that happened.
    pub async fn settled(&self, bound: Duration) -> bool {
        self.wait_until(bound, |books| books.holds.is_empty()).await
    }

    /// Waits (at most `bound`) until phase two has finished `count` branches in all.
    pub async fn finished_at_least(&self, count: usize, bound: Duration) -> bool {
        self.wait_until(bound, |books| books.finished.len() >= count)
            .await
    }

    async fn wait_until(&self, bound: Duration, done: impl Fn(&Books) -> bool) -> bool {
        let mut changes = self.changes.subscribe();
        let reached = changes.wait_for(|_| done(&self.books()));
        tokio::time::timeout(bound, reached).await.is_ok()
    }

    fn phase_two(&self, action: &PhaseTwoAction, phase: Phase) -> Answer {
        let key = (action.xid.clone(), action.branch_id);
        let mut books = self.books();
        if books.finished.contains_key(&key) {
            books.repeated_calls += 1;
            return Answer::Done;
        }
        // No hold: the try failed or never ran here; there is nothing to undo or finish.
        if let Some(movement) = books.holds.remove(&key) {
            let apply = match (movement.direction, phase) {
                (Direction::Withdraw, Phase::Cancel) | (Direction::Deposit, Phase::Confirm) => {
                    movement.amount
                }
                _ => 0,
            };
            *books.balances.entry(movement.account).or_default() += apply;
        }
        books.finished.insert(key, phase);
        drop(books);
        self.changed();
        Answer::Done
    }
}

impl Participant for Ledger {
    type Error = TryFailed;

    fn resource_ids(&self) -> Vec<String> {
        vec![self.resource_id.clone()]
    }

    async fn r#try(&self, branch: &Branch) -> Result<(), TryFailed> {
        let movement = Movement::decode(&branch.application_data)
            .ok_or_else(|| TryFailed(format!("bad request {:?}", branch.application_data)))?;
        if movement.fail {
            return Err(TryFailed("injected failure".into()));
        }
        let key = (branch.xid.clone(), branch.branch_id);
        let mut books = self.books();
        // Cancelled before the try got here: holding now would freeze money for good.
        if books.finished.contains_key(&key) {
            return Err(TryFailed("the branch was already cancelled".into()));
        }
        if movement.direction == Direction::Withdraw {
            let balance = books.balances.entry(movement.account.clone()).or_default();
            if *balance < movement.amount {
                return Err(TryFailed(format!(
                    "insufficient funds in {}",
                    movement.account
                )));
            }
            *balance -= movement.amount;
        }
        books.holds.insert(key, movement);
        drop(books);
        self.changed();
        Ok(())
    }

    async fn confirm(&self, action: &PhaseTwoAction) -> Answer {
        self.phase_two(action, Phase::Confirm)
    }

    async fn cancel(&self, action: &PhaseTwoAction) -> Answer {
        self.phase_two(action, Phase::Cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movements_round_trip() {
        let m = Movement {
            direction: Direction::Withdraw,
            account: "alice".into(),
            amount: 5,
            fail: true,
        };
        assert_eq!(Movement::decode(&m.encode()), Some(m));
        assert_eq!(Movement::decode("deposit bob 0"), None);
        assert_eq!(Movement::decode("deposit bob 3 maybe"), None);
    }

    fn action(xid: &str, branch_id: i64) -> PhaseTwoAction {
        PhaseTwoAction {
            xid: xid.into(),
            branch_id,
            ..PhaseTwoAction::default()
        }
    }

    fn branch(xid: &str, branch_id: i64, data: &str) -> Branch {
        Branch {
            xid: xid.into(),
            branch_id,
            resource_id: "a".into(),
            application_data: data.into(),
        }
    }

    #[tokio::test]
    async fn holds_are_confirmed_or_cancelled_once() {
        let ledger = Ledger::new("a", [("alice".to_owned(), 10)]);
        ledger
            .r#try(&branch("x", 1, "withdraw alice 4"))
            .await
            .expect("funds");
        ledger
            .r#try(&branch("y", 1, "withdraw alice 4"))
            .await
            .expect("funds");
        assert!(
            ledger
                .r#try(&branch("z", 1, "withdraw alice 4"))
                .await
                .is_err()
        );
        assert_eq!(ledger.total(), 10);
        assert_eq!(ledger.confirm(&action("x", 1)).await, Answer::Done);
        assert_eq!(ledger.cancel(&action("y", 1)).await, Answer::Done);
        assert_eq!(ledger.balances()["alice"], 6);
        ledger.cancel(&action("y", 1)).await;
        assert_eq!(ledger.repeated_calls(), 1);
        assert_eq!(ledger.held(), 0);
        assert!(
            ledger
                .r#try(&branch("y", 1, "withdraw alice 1"))
                .await
                .is_err(),
            "a try after its cancel is refused"
        );
    }
}
