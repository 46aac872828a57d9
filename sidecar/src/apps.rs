//! The applications' `Participant.Serve` streams: which resources each serves, and the
//! phase-two actions sent on them that wait for an answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;
use txmesh_api::v1::{ActionResult, PhaseTwoAction};

/// What an open stream is sent.
pub type ActionSender = mpsc::Sender<Result<PhaseTwoAction, Status>>;

/// Actions a stream may have queued before sending blocks.
const STREAM_QUEUE: usize = 1024;

/// Identifies one open stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId(u64);

struct Stream {
    resources: BTreeSet<String>,
    actions: ActionSender,
    waiting: HashMap<u64, oneshot::Sender<ActionResult>>,
}

/// How delivering an action went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The application answered.
    Answered(ActionResult),
    /// No open stream serves the resource.
    NoStream,
    /// No answer in time.
    TimedOut,
    /// The stream closed before answering.
    StreamClosed,
}

/// The open streams.
pub struct Apps {
    streams: Mutex<BTreeMap<StreamId, Stream>>,
    resources: watch::Sender<BTreeSet<String>>,
    next_id: AtomicU64,
}

impl Default for Apps {
    fn default() -> Self {
        Self {
            streams: Mutex::default(),
            resources: watch::Sender::new(BTreeSet::new()),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Apps {
    fn streams(&self) -> std::sync::MutexGuard<'_, BTreeMap<StreamId, Stream>> {
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a stream serving `resources`; actions for it come out of the receiver.
    pub fn open(
        &self,
        resources: Vec<String>,
    ) -> (StreamId, mpsc::Receiver<Result<PhaseTwoAction, Status>>) {
        let id = StreamId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (actions, receiver) = mpsc::channel(STREAM_QUEUE);
        let mut streams = self.streams();
        streams.insert(
            id,
            Stream {
                resources: resources.into_iter().collect(),
                actions,
                waiting: HashMap::new(),
            },
        );
        self.publish(&streams);
        (id, receiver)
    }

    /// Replaces what a stream serves (a later Hello).
    pub fn declare(&self, id: StreamId, resources: Vec<String>) {
        let mut streams = self.streams();
        if let Some(stream) = streams.get_mut(&id) {
            stream.resources = resources.into_iter().collect();
        }
        self.publish(&streams);
    }

    /// Hands the application's answer to the delivery waiting for it.
    pub fn answer(&self, id: StreamId, result: ActionResult) -> bool {
        let waiting = self
            .streams()
            .get_mut(&id)
            .and_then(|s| s.waiting.remove(&result.action_id));
        waiting.is_some_and(|reply| reply.send(result).is_ok())
    }

    /// Forgets a stream; its unanswered actions count as closed.
    pub fn close(&self, id: StreamId) {
        let mut streams = self.streams();
        streams.remove(&id);
        self.publish(&streams);
    }

    /// Ends every stream (at shutdown).
    pub fn close_all(&self) {
        let mut streams = self.streams();
        streams.clear();
        self.publish(&streams);
    }

    /// How many streams are open.
    pub fn open_streams(&self) -> usize {
        self.streams().len()
    }

    /// Whether some stream serves `resource_id`.
    pub fn serves(&self, resource_id: &str) -> bool {
        self.resources.borrow().contains(resource_id)
    }

    /// Every resource served, following changes.
    pub fn resources(&self) -> watch::Receiver<BTreeSet<String>> {
        self.resources.subscribe()
    }

    fn publish(&self, streams: &BTreeMap<StreamId, Stream>) {
        let all: BTreeSet<String> = streams
            .values()
            .flat_map(|s| s.resources.iter().cloned())
            .collect();
        self.resources.send_if_modified(|current| {
            let changed = *current != all;
            *current = all;
            changed
        });
    }

    /// Sends `action` to the newest stream serving its resource and waits at most `timeout`
    /// for the answer.
    pub async fn deliver(&self, mut action: PhaseTwoAction, timeout: Duration) -> Delivery {
        let (reply, answer) = oneshot::channel();
        let (id, sender) = {
            let mut streams = self.streams();
            let Some((id, stream)) = streams
                .iter_mut()
                .rev()
                .find(|(_, s)| s.resources.contains(&action.resource_id))
            else {
                return Delivery::NoStream;
            };
            action.action_id = self.next_id.fetch_add(1, Ordering::Relaxed);
            stream.waiting.insert(action.action_id, reply);
            (*id, stream.actions.clone())
        };
        let action_id = action.action_id;
        let delivery = tokio::time::timeout(timeout, async {
            if sender.send(Ok(action)).await.is_err() {
                return Delivery::StreamClosed;
            }
            match answer.await {
                Ok(result) => Delivery::Answered(result),
                Err(_) => Delivery::StreamClosed,
            }
        })
        .await
        .unwrap_or(Delivery::TimedOut);
        if delivery != Delivery::StreamClosed
            && let Some(stream) = self.streams().get_mut(&id)
        {
            stream.waiting.remove(&action_id);
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(resource: &str) -> PhaseTwoAction {
        PhaseTwoAction {
            resource_id: resource.into(),
            ..PhaseTwoAction::default()
        }
    }

    #[tokio::test]
    async fn actions_go_to_the_newest_stream_serving_the_resource() {
        let apps = std::sync::Arc::new(Apps::default());
        assert_eq!(
            apps.deliver(action("a"), Duration::from_secs(5)).await,
            Delivery::NoStream
        );
        let (_old, _old_rx) = apps.open(vec!["a".into()]);
        let (new, mut new_rx) = apps.open(vec!["a".into(), "b".into()]);
        assert!(apps.serves("b"));
        let delivering = tokio::spawn({
            let apps = apps.clone();
            async move { apps.deliver(action("a"), Duration::from_secs(30)).await }
        });
        let sent = new_rx.recv().await.expect("sent").expect("an action");
        let result = ActionResult {
            action_id: sent.action_id,
            outcome: 1,
            message: String::new(),
        };
        assert!(apps.answer(new, result.clone()));
        assert_eq!(delivering.await.expect("joins"), Delivery::Answered(result));
    }

    #[tokio::test]
    async fn a_closing_stream_fails_its_waiting_actions() {
        let apps = std::sync::Arc::new(Apps::default());
        let (id, mut rx) = apps.open(vec!["a".into()]);
        let delivering = tokio::spawn({
            let apps = apps.clone();
            async move { apps.deliver(action("a"), Duration::from_secs(30)).await }
        });
        rx.recv().await.expect("sent").expect("an action");
        apps.close(id);
        assert_eq!(delivering.await.expect("joins"), Delivery::StreamClosed);
        assert!(!apps.serves("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_action_times_out() {
        let apps = Apps::default();
        let (_id, _rx) = apps.open(vec!["a".into()]);
        assert_eq!(
            apps.deliver(action("a"), Duration::from_secs(1)).await,
            Delivery::TimedOut
        );
    }
}
