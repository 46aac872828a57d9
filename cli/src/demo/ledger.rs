//! An account service's in-memory ledger, as a TCC participant: a try freezes (debit) or
//! announces (credit) an amount, a confirm makes it final, a cancel undoes it. Every branch it
//! has seen is kept, so the demo can check afterwards that each committed transfer was applied
//! exactly once and nothing is left frozen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use txmesh_api::participant::{Answer, Branch, Participant};
use txmesh_api::v1::PhaseTwoAction;

/// One side of a transfer, as a branch's application data: `debit:a3:57`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// Money leaves (`Debit`) or arrives (`Credit`).
    pub kind: LegKind,
    /// The account.
    pub account: String,
    /// How much.
    pub amount: u64,
}

/// The direction of a [`Leg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegKind {
    /// Money leaves the account.
    Debit,
    /// Money arrives in the account.
    Credit,
}

impl Leg {
    /// The branch's application data.
    pub fn encode(&self) -> String {
        let kind = match self.kind {
            LegKind::Debit => "debit",
            LegKind::Credit => "credit",
        };
        format!("{kind}:{}:{}", self.account, self.amount)
    }

    fn decode(data: &str) -> Result<Self, TryFailure> {
        let malformed = || TryFailure::Malformed(data.to_owned());
        let mut parts = data.split(':');
        let kind = match parts.next() {
            Some("debit") => LegKind::Debit,
            Some("credit") => LegKind::Credit,
            _ => return Err(malformed()),
        };
        let account = parts.next().ok_or_else(malformed)?.to_owned();
        let amount = parts
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(malformed)?;
        Ok(Self {
            kind,
            account,
            amount,
        })
    }
}

/// Why a try failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TryFailure {
    /// The demo's failure injection.
    #[error("failed on purpose")]
    Injected,
    /// A debit larger than the available balance.
    #[error("insufficient funds in {0}")]
    InsufficientFunds(String),
    /// No such account here.
    #[error("no account {0}")]
    UnknownAccount(String),
    /// The branch was cancelled before its try ran (a suspended try): it must not freeze.
    #[error("the branch was already cancelled")]
    AlreadyCancelled,
    /// The application data is not a leg.
    #[error("malformed leg {0:?}")]
    Malformed(String),
}

/// An account's money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balance {
    /// Spendable.
    pub available: u64,
    /// Held by tries of debits not yet confirmed or cancelled.
    pub frozen: u64,
    /// Announced by tries of credits not yet confirmed or cancelled.
    pub incoming: u64,
}

/// What happened to one branch here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchRecord {
    /// The leg its try applied.
    pub leg: Leg,
    /// Confirms that reached this ledger.
    pub confirms: u32,
    /// Cancels that reached this ledger.
    pub cancels: u32,
}

#[derive(Debug, Default)]
struct Book {
    accounts: BTreeMap<String, Balance>,
    /// Branches whose try succeeded, by (xid, branch id).
    branches: HashMap<(String, i64), BranchRecord>,
    /// Cancels that came before (or without) a try: that try must now fail.
    cancelled_untried: HashSet<(String, i64)>,
}

/// The ledger of one account service.
#[derive(Debug)]
pub struct Ledger {
    resource_id: String,
    book: Mutex<Book>,
    failure_rate: f64,
    /// Applies every confirmed credit twice, so the invariant check has something to find.
    sabotage: bool,
}

impl Ledger {
    /// A ledger serving `resource_id` whose `accounts` each start with `balance`; tries fail
    /// on purpose with probability `failure_rate`.
    pub fn new(resource_id: &str, accounts: &[String], balance: u64, failure_rate: f64) -> Self {
        let accounts = accounts
            .iter()
            .map(|name| {
                let balance = Balance {
                    available: balance,
                    ..Balance::default()
                };
                (name.clone(), balance)
            })
            .collect();
        Self {
            resource_id: resource_id.to_owned(),
            book: Mutex::new(Book {
                accounts,
                ..Book::default()
            }),
            failure_rate,
            sabotage: false,
        }
    }

    /// Makes the ledger apply every confirmed credit twice.
    pub fn sabotaged(mut self) -> Self {
        self.sabotage = true;
        self
    }

    /// The resource this ledger serves.
    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    /// Every account's balance now.
    pub fn balances(&self) -> BTreeMap<String, Balance> {
        self.book().accounts.clone()
    }

    /// Every branch whose try succeeded here, by (xid, branch id).
    pub fn branches(&self) -> HashMap<(String, i64), BranchRecord> {
        self.book().branches.clone()
    }

    /// Money held by unfinished tries (frozen debits plus announced credits).
    pub fn unsettled(&self) -> u64 {
        self.book()
            .accounts
            .values()
            .map(|b| b.frozen + b.incoming)
            .sum()
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic elsewhere cannot leave a half-applied change: every change is one block.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn settle(&self, action: &PhaseTwoAction, confirm: bool) -> Answer {
        let key = (action.xid.clone(), action.branch_id);
        let mut book = self.book();
        let Some(record) = book.branches.get(&key).cloned() else {
            if !confirm {
                book.cancelled_untried.insert(key);
            }
            return Answer::Done;
        };
        let first = record.confirms + record.cancels == 0;
        let double = self.sabotage && confirm && record.leg.kind == LegKind::Credit;
        let Some(balance) = book.accounts.get_mut(&record.leg.account) else {
            return Answer::Failed(format!("no account {}", record.leg.account));
        };
        if first {
            let amount = record.leg.amount;
            match (record.leg.kind, confirm) {
                (LegKind::Debit, true) => balance.frozen -= amount,
                (LegKind::Debit, false) => {
                    balance.frozen -= amount;
                    balance.available += amount;
                }
                (LegKind::Credit, true) => {
                    balance.incoming -= amount;
                    balance.available += if double { 2 * amount } else { amount };
                }
                (LegKind::Credit, false) => balance.incoming -= amount,
            }
        }
        if let Some(record) = book.branches.get_mut(&key) {
            match confirm {
                true => record.confirms += 1,
                false => record.cancels += 1,
            }
        }
        Answer::Done
    }

    fn fails_on_purpose(&self) -> bool {
        self.failure_rate > 0.0 && fastrand::f64() < self.failure_rate
    }
}

impl Participant for Ledger {
    type Error = TryFailure;

    fn resource_ids(&self) -> Vec<String> {
        vec![self.resource_id.clone()]
    }

    async fn r#try(&self, branch: &Branch) -> Result<(), TryFailure> {
        let leg = Leg::decode(&branch.application_data)?;
        if self.fails_on_purpose() {
            return Err(TryFailure::Injected);
        }
        let key = (branch.xid.clone(), branch.branch_id);
        let mut book = self.book();
        if book.cancelled_untried.contains(&key) {
            return Err(TryFailure::AlreadyCancelled);
        }
        let balance = book
            .accounts
            .get_mut(&leg.account)
            .ok_or_else(|| TryFailure::UnknownAccount(leg.account.clone()))?;
        match leg.kind {
            LegKind::Debit if balance.available < leg.amount => {
                return Err(TryFailure::InsufficientFunds(leg.account.clone()));
            }
            LegKind::Debit => {
                balance.available -= leg.amount;
                balance.frozen += leg.amount;
            }
            LegKind::Credit => balance.incoming += leg.amount,
        }
        let record = BranchRecord {
            leg,
            confirms: 0,
            cancels: 0,
        };
        book.branches.insert(key, record);
        Ok(())
    }

    async fn confirm(&self, action: &PhaseTwoAction) -> Answer {
        self.settle(action, true)
    }

    async fn cancel(&self, action: &PhaseTwoAction) -> Answer {
        self.settle(action, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new("accounts", &["a0".to_owned()], 100, 0.0)
    }

    fn branch(id: i64, data: &str) -> Branch {
        Branch {
            xid: "x:1:1".into(),
            branch_id: id,
            resource_id: "accounts".into(),
            application_data: data.into(),
        }
    }

    fn action(id: i64) -> PhaseTwoAction {
        PhaseTwoAction {
            xid: "x:1:1".into(),
            branch_id: id,
            ..PhaseTwoAction::default()
        }
    }

    fn balance(ledger: &Ledger) -> Balance {
        ledger.balances()["a0"]
    }

    #[tokio::test]
    async fn a_confirmed_debit_leaves_and_a_repeat_changes_nothing() {
        let ledger = ledger();
        ledger.r#try(&branch(1, "debit:a0:30")).await.expect("try");
        assert_eq!(
            balance(&ledger),
            Balance {
                available: 70,
                frozen: 30,
                incoming: 0
            }
        );
        assert_eq!(ledger.confirm(&action(1)).await, Answer::Done);
        assert_eq!(ledger.confirm(&action(1)).await, Answer::Done);
        assert_eq!(
            balance(&ledger),
            Balance {
                available: 70,
                frozen: 0,
                incoming: 0
            }
        );
        assert_eq!(ledger.branches()[&("x:1:1".into(), 1)].confirms, 2);
    }

    #[tokio::test]
    async fn a_cancelled_credit_never_arrives() {
        let ledger = ledger();
        ledger.r#try(&branch(2, "credit:a0:5")).await.expect("try");
        assert_eq!(balance(&ledger).incoming, 5);
        ledger.cancel(&action(2)).await;
        assert_eq!(
            balance(&ledger),
            Balance {
                available: 100,
                frozen: 0,
                incoming: 0
            }
        );
    }

    #[tokio::test]
    async fn a_cancel_before_the_try_blocks_the_try() {
        let ledger = ledger();
        assert_eq!(ledger.cancel(&action(3)).await, Answer::Done);
        let late = ledger.r#try(&branch(3, "debit:a0:10")).await;
        assert_eq!(late, Err(TryFailure::AlreadyCancelled));
        assert_eq!(ledger.unsettled(), 0);
    }

    #[tokio::test]
    async fn overdrafts_and_bad_data_are_refused() {
        let ledger = ledger();
        let overdraft = ledger.r#try(&branch(4, "debit:a0:101")).await;
        assert_eq!(overdraft, Err(TryFailure::InsufficientFunds("a0".into())));
        let garbage = ledger.r#try(&branch(5, "refund:a0")).await;
        assert!(matches!(garbage, Err(TryFailure::Malformed(_))));
        assert_eq!(balance(&ledger).available, 100);
    }
}
