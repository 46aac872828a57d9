//! Phase two from the coordinators: each BranchCommit/BranchRollback passes the TCC fence and,
//! when the fence says so, reaches the application as a Confirm/Cancel on its stream. The
//! answer becomes the branch status the coordinator acts on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use txmesh_api::v1::{self, ActionOutcome, PhaseTwoAction};
use txmesh_seata::client::ServerRequestHandler;
use txmesh_seata::message::{BranchEndRequest, BranchEndResponse, TxResult};
use txmesh_seata::{BranchStatus, TransactionExceptionCode as Code};

use crate::apps::{Apps, Delivery};
use crate::convert::branch_type_to_api;
use crate::fence::{Fence, Phase, Verdict};
use crate::metrics::Metrics;

/// Answers the coordinators' phase-two requests.
pub struct PhaseTwoHandler {
    fence: Arc<Fence>,
    apps: Arc<Apps>,
    timeout: Duration,
    metrics: Metrics,
    /// Requests being answered.
    in_flight: watch::Sender<usize>,
}

/// Counts a request in flight until dropped.
struct Answering<'a>(&'a watch::Sender<usize>);

impl<'a> Answering<'a> {
    fn new(in_flight: &'a watch::Sender<usize>) -> Self {
        in_flight.send_modify(|n| *n += 1);
        Self(in_flight)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl PhaseTwoHandler {
    /// A handler delivering through `apps`, waiting `timeout` for each answer.
    pub fn new(fence: Arc<Fence>, apps: Arc<Apps>, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            fence,
            apps,
            timeout,
            metrics,
            in_flight: watch::Sender::new(0),
        }
    }

    /// Waits until no request is being answered (at shutdown, once no more can come, so
    /// every answer the application gave is in the fence before its stream closes).
    pub async fn idle(&self) {
        let _ = self.in_flight.subscribe().wait_for(|n| *n == 0).await;
    }

    async fn end(&self, request: BranchEndRequest, phase: Phase) -> BranchEndResponse {
        let _answering = Answering::new(&self.in_flight);
        let decision = self
            .fence
            .phase_two(
                phase,
                &request.xid,
                request.branch_id,
                &request.resource_id,
                || self.deliver(phase, &request),
            )
            .await;
        let verdict = match decision {
            Ok(decision) => {
                if let Some(hit) = decision.hit {
                    self.metrics.fence_hit(hit.name());
                }
                decision.verdict
            }
            Err(error) => {
                tracing::error!(xid = %request.xid, branch_id = request.branch_id, %error, "fence unavailable");
                Verdict::RetryLater(error.to_string())
            }
        };
        let (answer, status, result) = answer(phase, verdict);
        self.metrics.observe_phase_two(phase.name(), answer);
        if answer != "done" {
            tracing::debug!(xid = %request.xid, branch_id = request.branch_id, phase = phase.name(), why = %result.msg, "phase two not done");
        }
        BranchEndResponse {
            result,
            xid: request.xid,
            branch_id: request.branch_id,
            branch_status: status,
        }
    }

    async fn deliver(&self, phase: Phase, request: &BranchEndRequest) -> Verdict {
        let action = PhaseTwoAction {
            action_id: 0,
            phase: match phase {
                Phase::Confirm => v1::Phase::Confirm,
                Phase::Cancel => v1::Phase::Cancel,
            }
            .into(),
            xid: request.xid.clone(),
            branch_id: request.branch_id,
            resource_id: request.resource_id.clone(),
            branch_type: branch_type_to_api(request.branch_type).into(),
            application_data: request.application_data.clone(),
        };
        match self.apps.deliver(action, self.timeout).await {
            Delivery::Answered(result) => match result.outcome() {
                ActionOutcome::Done => Verdict::Done,
                ActionOutcome::RetryLater => Verdict::RetryLater(result.message),
                ActionOutcome::Failed => Verdict::Failed(result.message),
                ActionOutcome::Unspecified => {
                    Verdict::RetryLater("the application gave no outcome".into())
                }
            },
            Delivery::NoStream => Verdict::RetryLater(format!(
                "no application stream serves {}",
                request.resource_id
            )),
            Delivery::TimedOut => Verdict::RetryLater(format!(
                "the application did not answer within {:?}",
                self.timeout
            )),
            Delivery::StreamClosed => {
                Verdict::RetryLater("the application's stream closed before answering".into())
            }
        }
    }
}

/// The metric label, branch status and result for a verdict.
fn answer(phase: Phase, verdict: Verdict) -> (&'static str, BranchStatus, TxResult) {
    use BranchStatus::*;
    let (done, retry, failed, retry_code, failed_code) = match phase {
        Phase::Confirm => (
            PhaseTwoCommitted,
            PhaseTwoCommitFailedRetryable,
            PhaseTwoCommitFailedUnretryable,
            Code::Unknown,
            Code::Unknown,
        ),
        Phase::Cancel => (
            PhaseTwoRollbacked,
            PhaseTwoRollbackFailedRetryable,
            PhaseTwoRollbackFailedUnretryable,
            Code::BranchRollbackFailedRetriable,
            Code::BranchRollbackFailedUnretriable,
        ),
    };
    match verdict {
        Verdict::Done => ("done", done, TxResult::success()),
        Verdict::RetryLater(why) => ("retry", retry, TxResult::failure(retry_code, why)),
        Verdict::Failed(why) => ("failed", failed, TxResult::failure(failed_code, why)),
    }
}

impl ServerRequestHandler for PhaseTwoHandler {
    async fn branch_commit(&self, request: BranchEndRequest) -> BranchEndResponse {
        self.end(request, Phase::Confirm).await
    }

    async fn branch_rollback(&self, request: BranchEndRequest) -> BranchEndResponse {
        self.end(request, Phase::Cancel).await
    }
}

#[cfg(test)]
mod tests {
    use txmesh_api::v1::ActionResult;
    use txmesh_seata::BranchType;

    use super::*;

    fn request(branch_id: i64) -> BranchEndRequest {
        BranchEndRequest {
            xid: "127.0.0.1:8091:1".into(),
            branch_id,
            branch_type: BranchType::Tcc,
            resource_id: "accounts".into(),
            application_data: "{}".into(),
        }
    }

    fn handler(
        dir: &std::path::Path,
        timeout: Duration,
    ) -> (Arc<Fence>, Arc<Apps>, PhaseTwoHandler) {
        let fence = Arc::new(Fence::open(dir).expect("opens"));
        let apps = Arc::new(Apps::default());
        let handler =
            PhaseTwoHandler::new(fence.clone(), apps.clone(), timeout, Metrics::default());
        (fence, apps, handler)
    }

    #[tokio::test]
    async fn without_a_stream_the_coordinator_is_told_to_retry() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (fence, _apps, handler) = handler(dir.path(), Duration::from_secs(5));
        fence
            .record_try("127.0.0.1:8091:1", 1, "accounts")
            .await
            .expect("records");
        let answer = handler.branch_commit(request(1)).await;
        assert_eq!(
            answer.branch_status,
            BranchStatus::PhaseTwoCommitFailedRetryable
        );
        assert!(!answer.result.is_success());
        let answer = handler.branch_rollback(request(2)).await;
        assert_eq!(
            answer.branch_status,
            BranchStatus::PhaseTwoRollbacked,
            "empty rollback"
        );
        assert!(answer.result.is_success());
    }

    #[tokio::test]
    async fn answers_map_to_branch_statuses() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (fence, apps, handler) = handler(dir.path(), Duration::from_secs(30));
        let handler = Arc::new(handler);
        let (stream, mut actions) = apps.open(vec!["accounts".into()]);
        let cases = [
            (
                ActionOutcome::RetryLater,
                BranchStatus::PhaseTwoCommitFailedRetryable,
            ),
            (
                ActionOutcome::Failed,
                BranchStatus::PhaseTwoCommitFailedUnretryable,
            ),
            (ActionOutcome::Done, BranchStatus::PhaseTwoCommitted),
        ];
        for (branch_id, (outcome, status)) in (1..).zip(cases) {
            fence
                .record_try("127.0.0.1:8091:1", branch_id, "accounts")
                .await
                .expect("records");
            let answering = tokio::spawn({
                let handler = handler.clone();
                async move { handler.branch_commit(request(branch_id)).await }
            });
            let action = actions.recv().await.expect("sent").expect("an action");
            assert_eq!(action.phase(), v1::Phase::Confirm);
            assert_eq!(action.branch_id, branch_id);
            let result = ActionResult {
                action_id: action.action_id,
                outcome: outcome.into(),
                message: "why".into(),
            };
            assert!(apps.answer(stream, result));
            assert_eq!(answering.await.expect("joins").branch_status, status);
        }
    }
}
