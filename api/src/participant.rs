//! A Rust client for the sidecar, and a model for other languages: [`Sidecar`] wraps the
//! generated clients, and a [`Participant`] (try / confirm / cancel) is served by
//! [`Sidecar::serve`], which keeps a `Participant.Serve` stream open — reopening it whenever
//! the sidecar restarts — and answers each phase-two action with what the participant says.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::v1::branches_client::BranchesClient;
use crate::v1::participant_client::ParticipantClient;
use crate::v1::participant_message::Kind;
use crate::v1::transactions_client::TransactionsClient;
use crate::v1::{
    ActionOutcome, ActionResult, BeginRequest, BranchType, CommitRequest, GlobalStatus, Hello,
    ParticipantMessage, Phase, PhaseTwoAction, RegisterBranchRequest, RollbackRequest,
};

/// What a participant says about a phase-two action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done: never asked again.
    Done,
    /// Not now: the coordinator retries later.
    RetryLater(String),
    /// Impossible for good: the transaction ends failed, for an operator.
    Failed(String),
}

impl Answer {
    fn into_result(self, action_id: u64) -> ActionResult {
        let (outcome, message) = match self {
            Answer::Done => (ActionOutcome::Done, String::new()),
            Answer::RetryLater(why) => (ActionOutcome::RetryLater, why),
            Answer::Failed(why) => (ActionOutcome::Failed, why),
        };
        ActionResult {
            action_id,
            outcome: outcome.into(),
            message,
        }
    }
}

/// A branch registered for a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// The global transaction.
    pub xid: String,
    /// The id the coordinator gave the branch.
    pub branch_id: i64,
    /// The resource it belongs to.
    pub resource_id: String,
    /// What phase two will be handed back.
    pub application_data: String,
}

/// The business side of a TCC resource. Confirm and cancel may be called for a branch whose
/// try failed part way (and, after a sidecar crash, again for a branch already done), so
/// they must be safe to repeat; the sidecar's fence keeps ordinary redeliveries away.
pub trait Participant: Send + Sync + 'static {
    /// Why a try failed.
    type Error: std::fmt::Display + Send;

    /// The resources served, declared to the sidecar.
    fn resource_ids(&self) -> Vec<String>;

    /// Phase one: reserve what the branch needs.
    fn r#try(&self, branch: &Branch) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Phase two after a commit: make the try's effect final.
    fn confirm(&self, action: &PhaseTwoAction) -> impl Future<Output = Answer> + Send;

    /// Phase two after a rollback: undo the try's effect, if it had any.
    fn cancel(&self, action: &PhaseTwoAction) -> impl Future<Output = Answer> + Send;
}

/// Why [`Sidecar::try_branch`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TryError<E: std::fmt::Display> {
    /// The branch could not be registered; the try did not run.
    #[error("cannot register the branch: {0}")]
    Register(Status),
    /// The try ran and failed.
    #[error("the try failed: {0}")]
    Try(E),
}

/// The sidecar, over one gRPC channel that reconnects by itself.
#[derive(Debug, Clone)]
pub struct Sidecar {
    channel: Channel,
}

impl Sidecar {
    /// A client for the sidecar at `endpoint` (`http://127.0.0.1:50051`). The connection is
    /// made on first use and remade whenever it breaks.
    pub fn new(endpoint: impl Into<String>) -> Result<Self, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(endpoint.into())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(3));
        Ok(Self::from_channel(endpoint.connect_lazy()))
    }

    /// A client over an existing channel (e.g. one on a unix socket).
    pub fn from_channel(channel: Channel) -> Self {
        Self { channel }
    }

    /// The generated `Transactions` client.
    pub fn transactions(&self) -> TransactionsClient<Channel> {
        TransactionsClient::new(self.channel.clone())
    }

    /// The generated `Branches` client.
    pub fn branches(&self) -> BranchesClient<Channel> {
        BranchesClient::new(self.channel.clone())
    }

    /// The generated `Participant` client.
    pub fn participant(&self) -> ParticipantClient<Channel> {
        ParticipantClient::new(self.channel.clone())
    }

    /// Opens a global transaction; `timeout` zero means the coordinator's default.
    pub async fn begin(&self, name: &str, timeout: Duration) -> Result<String, Status> {
        let request = BeginRequest {
            name: name.to_owned(),
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        };
        Ok(self.transactions().begin(request).await?.into_inner().xid)
    }

    /// Commits; the status the transaction reached.
    pub async fn commit(&self, xid: &str) -> Result<GlobalStatus, Status> {
        let request = CommitRequest {
            xid: xid.to_owned(),
        };
        let response = self.transactions().commit(request).await?.into_inner();
        Ok(response.status())
    }

    /// Rolls back; the status the transaction reached.
    pub async fn rollback(&self, xid: &str) -> Result<GlobalStatus, Status> {
        let request = RollbackRequest {
            xid: xid.to_owned(),
        };
        let response = self.transactions().rollback(request).await?.into_inner();
        Ok(response.status())
    }

    /// Registers a TCC branch of `xid` for `resource_id`, then runs the participant's try.
    pub async fn try_branch<P: Participant>(
        &self,
        participant: &P,
        xid: &str,
        resource_id: &str,
        application_data: &str,
    ) -> Result<Branch, TryError<P::Error>> {
        let request = RegisterBranchRequest {
            xid: xid.to_owned(),
            resource_id: resource_id.to_owned(),
            branch_type: BranchType::Tcc.into(),
            lock_keys: String::new(),
            application_data: application_data.to_owned(),
        };
        let branch_id = self
            .branches()
            .register(request)
            .await
            .map_err(TryError::Register)?
            .into_inner()
            .branch_id;
        let branch = Branch {
            xid: xid.to_owned(),
            branch_id,
            resource_id: resource_id.to_owned(),
            application_data: application_data.to_owned(),
        };
        participant.r#try(&branch).await.map_err(TryError::Try)?;
        Ok(branch)
    }

    /// Serves `participant`'s phase two until the returned handle is stopped or dropped.
    pub fn serve<P: Participant>(&self, participant: Arc<P>) -> Serving {
        let (connected, connected_now) = watch::channel(false);
        let client = self.participant();
        let task = tokio::spawn(serve_loop(client, participant, connected));
        Serving {
            connected: connected_now,
            task,
        }
    }
}

/// A running [`Sidecar::serve`] loop; dropping it stops serving.
#[derive(Debug)]
pub struct Serving {
    connected: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Serving {
    /// Waits until the sidecar has taken the participant's Hello.
    pub async fn connected(&self) {
        let mut connected = self.connected.clone();
        // The sender lives as long as the task, which only ends when stopped.
        let _ = connected.wait_for(|up| *up).await;
    }

    /// Whether a stream is open now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Stops serving: the stream closes, and unanswered actions become retries.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

async fn serve_loop<P: Participant>(
    mut client: ParticipantClient<Channel>,
    participant: Arc<P>,
    connected: watch::Sender<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match serve_once(&mut client, &participant, &connected).await {
            Ok(()) => backoff = FIRST_BACKOFF,
            Err(status) if status.code() == Code::Unavailable => {
                tracing::debug!(%status, "sidecar unavailable; reconnecting")
            }
            Err(status) => tracing::warn!(%status, "participant stream ended; reconnecting"),
        }
        connected.send_replace(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One stream, from Hello to its end. `Ok` when it had been open (the next try starts fresh).
async fn serve_once<P: Participant>(
    client: &mut ParticipantClient<Channel>,
    participant: &Arc<P>,
    connected: &watch::Sender<bool>,
) -> Result<(), Status> {
    let (outbound, queue) = mpsc::channel(256);
    let hello = Kind::Hello(Hello {
        resource_ids: participant.resource_ids(),
    });
    // The queue has room: this cannot fail.
    let _ = outbound.try_send(ParticipantMessage { kind: Some(hello) });
    let mut actions = client.serve(ReceiverStream::new(queue)).await?.into_inner();
    connected.send_replace(true);
    loop {
        let Some(action) = actions.message().await? else {
            return Ok(());
        };
        let (participant, outbound) = (participant.clone(), outbound.clone());
        tokio::spawn(async move {
            let answer = match action.phase() {
                Phase::Confirm => participant.confirm(&action).await,
                Phase::Cancel => participant.cancel(&action).await,
                Phase::Unspecified => Answer::Failed("no phase given".into()),
            };
            let result = answer.into_result(action.action_id);
            let message = ParticipantMessage {
                kind: Some(Kind::Result(result)),
            };
            // A closed stream loses the answer; the sidecar counts it as a retry.
            let _ = outbound.send(message).await;
        });
    }
}
