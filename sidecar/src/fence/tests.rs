use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const XID: &str = "127.0.0.1:8091:100";

/// An application that counts its calls and answers `verdict`.
#[derive(Default)]
struct App {
    calls: AtomicUsize,
}

impl App {
    async fn answer(&self, verdict: Verdict) -> Verdict {
        self.calls.fetch_add(1, Ordering::SeqCst);
        verdict
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn confirm(fence: &Fence, app: &App, branch_id: i64, answer: Verdict) -> Decision {
    fence
        .phase_two(Phase::Confirm, XID, branch_id, "accounts", || {
            app.answer(answer)
        })
        .await
        .expect("fence works")
}

async fn cancel(fence: &Fence, app: &App, branch_id: i64) -> Decision {
    fence
        .phase_two(Phase::Cancel, XID, branch_id, "accounts", || {
            app.answer(Verdict::Done)
        })
        .await
        .expect("fence works")
}

fn open() -> (tempfile::TempDir, Fence) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fence = Fence::open(dir.path()).expect("opens");
    (dir, fence)
}

#[tokio::test]
async fn a_confirm_delivered_twice_reaches_the_application_once() {
    let (_dir, fence) = open();
    let app = App::default();
    let tried = fence.record_try(XID, 1, "accounts").await.expect("records");
    assert_eq!(tried, TryAdmission::Recorded);
    let first = confirm(&fence, &app, 1, Verdict::Done).await;
    assert_eq!(
        first,
        Decision {
            verdict: Verdict::Done,
            hit: None
        }
    );
    let second = confirm(&fence, &app, 1, Verdict::Done).await;
    assert_eq!(second, Decision::hit(Hit::Duplicate, Verdict::Done));
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn concurrent_duplicates_reach_the_application_once() {
    let (_dir, fence) = open();
    let fence = Arc::new(fence);
    let app = Arc::new(App::default());
    fence.record_try(XID, 1, "accounts").await.expect("records");
    let deliveries = (0..8).map(|_| {
        let (fence, app) = (fence.clone(), app.clone());
        tokio::spawn(async move { confirm(&fence, &app, 1, Verdict::Done).await })
    });
    for delivery in deliveries {
        assert_eq!(delivery.await.expect("joins").verdict, Verdict::Done);
    }
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn an_action_not_done_is_delivered_again() {
    let (_dir, fence) = open();
    let app = App::default();
    fence.record_try(XID, 1, "accounts").await.expect("records");
    let later = Verdict::RetryLater("busy".into());
    assert_eq!(confirm(&fence, &app, 1, later.clone()).await.verdict, later);
    assert_eq!(confirm(&fence, &app, 1, Verdict::Done).await.hit, None);
    assert_eq!(app.calls(), 2);
}

#[tokio::test]
async fn a_cancel_without_a_try_is_an_empty_rollback_and_blocks_a_late_try() {
    let (_dir, fence) = open();
    let app = App::default();
    let decision = cancel(&fence, &app, 7).await;
    assert_eq!(decision, Decision::hit(Hit::EmptyRollback, Verdict::Done));
    assert_eq!(app.calls(), 0, "the application is not called");
    assert!(fence.rolled_back(XID).expect("reads"));
    assert_eq!(
        fence.record_try(XID, 7, "accounts").await.expect("answers"),
        TryAdmission::AlreadyRolledBack
    );
    assert_eq!(
        fence.record_try(XID, 8, "accounts").await.expect("answers"),
        TryAdmission::AlreadyRolledBack,
        "any later branch of the XID is refused too"
    );
    assert_eq!(cancel(&fence, &app, 7).await.hit, Some(Hit::Duplicate));
    let records = fence.records(XID).expect("reads");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.state, State::EmptyRollback);
}

#[tokio::test]
async fn contradicting_actions_fail_for_good() {
    let (_dir, fence) = open();
    let app = App::default();
    fence.record_try(XID, 1, "accounts").await.expect("records");
    cancel(&fence, &app, 1).await;
    let decision = confirm(&fence, &app, 1, Verdict::Done).await;
    assert_eq!(decision.hit, Some(Hit::Conflict));
    assert!(matches!(decision.verdict, Verdict::Failed(_)));
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn a_confirm_without_a_try_waits_unless_the_register_was_uncertain() {
    let (_dir, fence) = open();
    let app = App::default();
    let decision = confirm(&fence, &app, 3, Verdict::Done).await;
    assert_eq!(decision.hit, Some(Hit::NoTry));
    assert!(matches!(decision.verdict, Verdict::RetryLater(_)));
    fence
        .record_uncertain_register(XID, "accounts")
        .await
        .expect("records");
    let decision = confirm(&fence, &app, 3, Verdict::Done).await;
    assert_eq!(decision, Decision::hit(Hit::EmptyCommit, Verdict::Done));
    assert_eq!(app.calls(), 0);
    assert_eq!(
        fence.records(XID).expect("reads").len(),
        1,
        "the marker is hidden"
    );
}

#[tokio::test]
async fn records_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = App::default();
    {
        let fence = Fence::open(dir.path()).expect("opens");
        fence.record_try(XID, 1, "accounts").await.expect("records");
        fence.record_try(XID, 2, "accounts").await.expect("records");
        confirm(&fence, &app, 1, Verdict::Done).await;
    }
    let fence = Fence::open(dir.path()).expect("reopens");
    assert_eq!(
        confirm(&fence, &app, 1, Verdict::Done).await.hit,
        Some(Hit::Duplicate)
    );
    assert_eq!(confirm(&fence, &app, 2, Verdict::Done).await.hit, None);
    assert_eq!(app.calls(), 2);
}

#[tokio::test]
async fn garbage_collection_keeps_branches_waiting_for_phase_two() {
    let (_dir, fence) = open();
    let app = App::default();
    fence.record_try(XID, 1, "accounts").await.expect("records");
    fence.record_try(XID, 2, "accounts").await.expect("records");
    confirm(&fence, &app, 1, Verdict::Done).await;
    assert_eq!(
        fence.collect_garbage(Duration::from_secs(3600)).await,
        Ok(0)
    );
    // Let the records age past a 1 ms retention.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(fence.collect_garbage(Duration::from_millis(1)).await, Ok(1));
    let records = fence.records(XID).expect("reads");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.state, State::Tried);
}

#[tokio::test]
async fn xids_sharing_a_prefix_stay_apart() {
    let (_dir, fence) = open();
    let app = App::default();
    fence
        .phase_two(Phase::Cancel, "a:1:1", 1, "r", || app.answer(Verdict::Done))
        .await
        .expect("fence works");
    assert!(fence.rolled_back("a:1:1").expect("reads"));
    assert!(!fence.rolled_back("a:1:10").expect("reads"));
    assert!(!fence.rolled_back("a:1:").expect("reads"));
}

#[tokio::test]
async fn a_registered_branch_whose_record_is_missing_goes_to_the_application() {
    let (_dir, fence) = open();
    let app = App::default();
    // The register went through here, but the branch's own record is not there (still being
    // written, or lost in a crash before its sync): the try may have run.
    fence.record_intent(XID, "accounts").await.expect("records");
    let cancelled = cancel(&fence, &app, 9).await;
    assert_eq!(cancelled.hit, None, "the application decides");
    assert_eq!(app.calls(), 1);
    assert_eq!(
        fence
            .record_try(XID, 9, "accounts")
            .await
            .expect("fence works"),
        TryAdmission::AlreadyRolledBack,
        "a try that comes after its cancel must not run"
    );
    assert_eq!(cancel(&fence, &app, 9).await.hit, Some(Hit::Duplicate));
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn a_register_in_doubt_keeps_its_confirm_away_from_the_application() {
    let (_dir, fence) = open();
    let app = App::default();
    fence.record_intent(XID, "accounts").await.expect("records");
    fence
        .record_uncertain_register(XID, "accounts")
        .await
        .expect("records");
    let confirmed = confirm(&fence, &app, 4, Verdict::Done).await;
    assert_eq!(confirmed.hit, Some(Hit::EmptyCommit));
    assert_eq!(app.calls(), 0, "the application never got the branch id");
    assert!(
        fence
            .records(XID)
            .expect("readable")
            .iter()
            .all(|(id, _)| *id > 0),
        "the XID's markers are not listed as branches"
    );
}
