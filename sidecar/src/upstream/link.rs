//! One coordinator address: connect, register, hold the connection (re-registering resources
//! as they change) until it dies, back off, again — until told to stop.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use txmesh_seata::Message;
use txmesh_seata::client::{ClientError, SeataClient, ServerRequestHandler};
use txmesh_seata::message::{RegisterRequest, RegisterRmRequest};

use super::{Backoff, Inner};
use crate::discovery::Endpoint;

/// How holding a connection ended.
enum Held {
    /// Told to stop.
    Stopped,
    /// The connection died.
    Lost(String),
}

/// Runs the link to `endpoint` until `stop` turns true.
pub(super) async fn run<H: ServerRequestHandler>(
    inner: Arc<Inner<H>>,
    endpoint: Endpoint,
    mut stop: watch::Receiver<bool>,
) {
    let config = &inner.config;
    let mut backoff = Backoff::new(config.reconnect_min, config.reconnect_max);
    let mut served = inner.served.clone();
    loop {
        let attempt = tokio::select! {
            attempt = connect(&inner, &endpoint, &mut served) => attempt,
            _ = crate::until_stopped(&mut stop) => return,
        };
        match attempt {
            Ok((client, resources)) => {
                backoff.reset();
                tracing::info!(coordinator = %endpoint.addr, ?resources, "registered with the coordinator");
                let session = inner.publish(endpoint.clone(), client.clone(), resources.clone());
                let held = hold(&inner, session, &client, resources, &mut served, &mut stop).await;
                inner.withdraw(session);
                match held {
                    Held::Stopped => return client.close(),
                    Held::Lost(reason) => {
                        inner.metrics.reconnect();
                        tracing::warn!(coordinator = %endpoint.addr, %reason, "coordinator connection lost; reconnecting");
                    }
                }
            }
            Err(ClientError::RegistrationRefused(why)) => {
                tracing::warn!(coordinator = %endpoint.addr, %why, "registration refused");
            }
            Err(error) => {
                tracing::debug!(coordinator = %endpoint.addr, %error, "cannot reach the coordinator");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = crate::until_stopped(&mut stop) => return,
        }
    }
}

/// A connection registered as TM, and as RM for what is served now.
async fn connect<H: ServerRequestHandler>(
    inner: &Inner<H>,
    endpoint: &Endpoint,
    served: &mut watch::Receiver<BTreeSet<String>>,
) -> Result<(SeataClient, BTreeSet<String>), ClientError> {
    let addr = endpoint.addr.to_string();
    let client =
        SeataClient::connect(&addr, inner.config.client.clone(), inner.handler.clone()).await?;
    let resources = served.borrow_and_update().clone();
    let registered = async {
        client.register_tm().await?;
        if !resources.is_empty() {
            client.register_rm(&as_list(&resources)).await?;
        }
        Ok(())
    };
    match registered.await {
        Ok(()) => Ok((client, resources)),
        Err(error) => {
            client.close();
            Err(error)
        }
    }
}

/// Holds a registered connection, following the served resources, until it ends.
async fn hold<H: ServerRequestHandler>(
    inner: &Inner<H>,
    session: u64,
    client: &SeataClient,
    mut registered: BTreeSet<String>,
    served: &mut watch::Receiver<BTreeSet<String>>,
    stop: &mut watch::Receiver<bool>,
) -> Held {
    let mut batches = BatchCounter::default();
    let mut tick = tokio::time::interval(BATCH_METRICS_EVERY);
    let held = loop {
        tokio::select! {
            reason = client.closed() => break Held::Lost(reason.to_string()),
            _ = crate::until_stopped(stop) => break Held::Stopped,
            _ = tick.tick() => batches.record(inner, client),
            changed = served.changed() => {
                if changed.is_err() {
                    break Held::Stopped;
                }
                let now = served.borrow_and_update().clone();
                if let Err(error) = reregister(inner, client, &registered, &now).await {
                    client.close();
                    break Held::Lost(format!("re-registration failed: {error}"));
                }
                tracing::info!(peer = %client.peer_addr(), resources = ?now, "resources re-registered");
                registered = now.clone();
                inner.set_resources(session, now);
            }
        }
    };
    batches.record(inner, client);
    held
}

/// How often a connection's batching counters are added to the metrics.
const BATCH_METRICS_EVERY: Duration = Duration::from_secs(1);

/// What a connection had merged when last recorded.
#[derive(Default)]
struct BatchCounter {
    frames: u64,
    requests: u64,
}

impl BatchCounter {
    fn record<H>(&mut self, inner: &Inner<H>, client: &SeataClient) {
        let (frames, requests) = client.merged();
        inner
            .metrics
            .batched(frames - self.frames, requests - self.requests);
        (self.frames, self.requests) = (frames, requests);
    }
}

/// Registers what was added; withdraws what was removed (best effort: a coordinator that
/// does not know UnregisterRM still routes nothing here that the fence cannot answer).
async fn reregister<H>(
    inner: &Inner<H>,
    client: &SeataClient,
    before: &BTreeSet<String>,
    now: &BTreeSet<String>,
) -> Result<(), ClientError> {
    if now.difference(before).next().is_some() {
        client.register_rm(&as_list(now)).await?;
    }
    let removed: Vec<String> = before.difference(now).cloned().collect();
    if !removed.is_empty() {
        let config = &inner.config.client;
        let request = RegisterRmRequest {
            identity: RegisterRequest {
                version: config.sdk_version.clone(),
                application_id: config.application_id.clone(),
                transaction_service_group: config.transaction_service_group.clone(),
                extra_data: String::new(),
            },
            resource_ids: removed.join(","),
        };
        // A dead connection shows in `hold`; anything else only costs retries of phase two.
        if let Err(error) = client.call(Message::UnregisterRmRequest(request)).await {
            tracing::debug!(%error, "unregistering resources failed");
        }
    }
    Ok(())
}

fn as_list(resources: &BTreeSet<String>) -> Vec<String> {
    resources.iter().cloned().collect()
}
