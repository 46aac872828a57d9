//! Tells one resource manager per registered resource to trim its undo log, as Seata does
//! once a day (`server.undo.logDeletePeriod`, first run after three minutes).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use txmesh_seata::message::UndoLogDeleteRequest;
use txmesh_seata::{BranchType, Message};

use crate::config::RecoveryTuning;
use crate::node::Node;
use crate::server::RmRegistry;

const FIRST_RUN: Duration = Duration::from_secs(180);

/// Runs until `shutdown` turns true.
pub async fn run_undo_log_trimming(
    node: Arc<Node>,
    registry: Arc<RmRegistry>,
    tuning: RecoveryTuning,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = Duration::from_millis(tuning.undo_log_delete_period_ms.max(1_000));
    let mut wait = FIRST_RUN.min(period);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        wait = period;
        if !node.is_leader() {
            continue;
        }
        for (resource_id, conn) in registry.one_per_resource() {
            let request = UndoLogDeleteRequest {
                branch_type: BranchType::At,
                resource_id: resource_id.clone(),
                save_days: tuning.undo_log_save_days,
            };
            if let Err(error) = conn.notify(Message::UndoLogDeleteRequest(request)).await {
                tracing::debug!(%resource_id, %error, "undo-log delete not sent");
            }
        }
    }
}
