//! The invariant a run must end with: no money created or lost, nothing left frozen, and each
//! transfer applied as the client was told — a committed one exactly once at both services, a
//! rolled-back one not at all.

use std::collections::{BTreeMap, HashMap};

use super::ledger::{BranchRecord, Ledger, LegKind};
use super::transfers::{Ending, Transfer};

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Money in all accounts at the start.
    pub total_before: u64,
    /// Money in all accounts now (available, frozen and announced).
    pub total_after: u64,
    /// Money still frozen or announced by unfinished tries.
    pub unsettled: u64,
    /// Transfers the client saw committed.
    pub committed: usize,
    /// Transfers the client saw rolled back.
    pub rolled_back: usize,
    /// Phase-two actions that reached a service more than once for one branch.
    pub duplicate_deliveries: u32,
    /// What does not add up, one line each (at most [`MAX_FINDINGS`]).
    pub findings: Vec<String>,
}

/// Findings listed in full; more are counted.
pub const MAX_FINDINGS: usize = 5;

impl Verdict {
    /// Whether the invariant holds.
    pub fn holds(&self) -> bool {
        self.total_before == self.total_after && self.unsettled == 0 && self.findings.is_empty()
    }
}

/// Checks `ledgers` against the `transfers` the client saw end, given each account started
/// with `initial_balance`.
pub fn check(initial_balance: u64, ledgers: &[&Ledger], transfers: &[Transfer]) -> Verdict {
    let mut balances = BTreeMap::new();
    let mut branches: HashMap<String, Vec<BranchRecord>> = HashMap::new();
    for ledger in ledgers {
        balances.extend(ledger.balances());
        for ((xid, _), record) in ledger.branches() {
            branches.entry(xid).or_default().push(record);
        }
    }
    let total_before = initial_balance * balances.len() as u64;
    let total_after = balances
        .values()
        .map(|b| b.available + b.frozen + b.incoming)
        .sum();
    let unsettled = balances.values().map(|b| b.frozen + b.incoming).sum();
    let duplicate_deliveries = branches
        .values()
        .flatten()
        .map(|r| (r.confirms + r.cancels).saturating_sub(1))
        .sum();

    let mut findings = Vec::new();
    let mut expected: BTreeMap<&str, i128> = balances
        .keys()
        .map(|account| (account.as_str(), i128::from(initial_balance)))
        .collect();
    for transfer in transfers {
        let records = branches
            .get(&transfer.xid)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let applied_once = |r: &BranchRecord| r.confirms == 1 && r.cancels == 0;
        let ok = match transfer.ending {
            Ending::Committed => records.len() == 2 && records.iter().all(applied_once),
            Ending::RolledBack => records.iter().all(|r| r.confirms == 0 && r.cancels == 1),
        };
        if !ok {
            findings.push(format!(
                "{} ({:?}): branches seen {records:?}",
                transfer.xid, transfer.ending
            ));
        }
        if transfer.ending == Ending::Committed {
            for leg in &transfer.legs {
                if let Some(balance) = expected.get_mut(leg.account.as_str()) {
                    match leg.kind {
                        LegKind::Debit => *balance -= i128::from(leg.amount),
                        LegKind::Credit => *balance += i128::from(leg.amount),
                    }
                }
            }
        }
    }
    for (account, balance) in &balances {
        let want = expected.get(account.as_str()).copied().unwrap_or_default();
        if i128::from(balance.available) != want {
            findings.push(format!(
                "account {account} holds {} but the committed transfers leave {want}",
                balance.available
            ));
        }
    }
    let found = findings.len();
    findings.truncate(MAX_FINDINGS);
    if found > MAX_FINDINGS {
        findings.push(format!("… and {} more", found - MAX_FINDINGS));
    }
    Verdict {
        total_before,
        total_after,
        unsettled,
        committed: count(transfers, Ending::Committed),
        rolled_back: count(transfers, Ending::RolledBack),
        duplicate_deliveries,
        findings,
    }
}

fn count(transfers: &[Transfer], ending: Ending) -> usize {
    transfers.iter().filter(|t| t.ending == ending).count()
}

#[cfg(test)]
mod tests {
    use txmesh_api::participant::{Branch, Participant};
    use txmesh_api::v1::PhaseTwoAction;

    use super::super::ledger::Leg;
    use super::*;

    fn leg(kind: LegKind, account: &str, amount: u64) -> Leg {
        Leg {
            kind,
            account: account.into(),
            amount,
        }
    }

    /// Runs one transfer of 10 from `a0` to `b0` to its end on the two ledgers.
    async fn transfer(a: &Ledger, b: &Ledger, xid: &str, ending: Ending) -> Transfer {
        let legs = [
            leg(LegKind::Debit, "a0", 10),
            leg(LegKind::Credit, "b0", 10),
        ];
        for (id, (ledger, leg)) in [(a, &legs[0]), (b, &legs[1])].into_iter().enumerate() {
            let branch = Branch {
                xid: xid.into(),
                branch_id: id as i64,
                resource_id: ledger.resource_id().into(),
                application_data: leg.encode(),
            };
            ledger.r#try(&branch).await.expect("try");
            let action = PhaseTwoAction {
                xid: xid.into(),
                branch_id: id as i64,
                ..PhaseTwoAction::default()
            };
            match ending {
                Ending::Committed => ledger.confirm(&action).await,
                Ending::RolledBack => ledger.cancel(&action).await,
            };
        }
        Transfer {
            xid: xid.into(),
            ending,
            legs,
        }
    }

    fn ledgers() -> (Ledger, Ledger) {
        (
            Ledger::new("accounts-a", &["a0".into()], 100, 0.0),
            Ledger::new("accounts-b", &["b0".into()], 100, 0.0),
        )
    }

    #[tokio::test]
    async fn a_clean_run_holds() {
        let (a, b) = ledgers();
        let transfers = vec![
            transfer(&a, &b, "x:1", Ending::Committed).await,
            transfer(&a, &b, "x:2", Ending::RolledBack).await,
        ];
        let verdict = check(100, &[&a, &b], &transfers);
        assert!(verdict.holds(), "{verdict:?}");
        assert_eq!((verdict.committed, verdict.rolled_back), (1, 1));
        assert_eq!(a.balances()["a0"].available, 90);
    }

    #[tokio::test]
    async fn a_double_credit_breaks_it() {
        let a = Ledger::new("accounts-a", &["a0".into()], 100, 0.0);
        let b = Ledger::new("accounts-b", &["b0".into()], 100, 0.0).sabotaged();
        let transfers = vec![transfer(&a, &b, "x:1", Ending::Committed).await];
        let verdict = check(100, &[&a, &b], &transfers);
        assert!(!verdict.holds());
        assert_eq!(verdict.total_after, verdict.total_before + 10);
        assert!(verdict.findings[0].contains("b0"), "{:?}", verdict.findings);
    }

    #[tokio::test]
    async fn a_commit_the_services_never_saw_is_found() {
        let (a, b) = ledgers();
        let mut told = transfer(&a, &b, "x:1", Ending::RolledBack).await;
        told.ending = Ending::Committed;
        let verdict = check(100, &[&a, &b], &[told]);
        assert!(!verdict.holds());
        assert!(
            verdict.findings[0].starts_with("x:1"),
            "{:?}",
            verdict.findings
        );
    }
}
