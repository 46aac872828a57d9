//! Which connection serves which resource, for routing phase two (seata-tc-semantics.md §2.3):
//! the exact connection the branch registered on, else the same application on the same host,
//! else the same application elsewhere, else — AT only, since an AT resource is a database any
//! application can undo on — any connection that registered the resource.

use std::collections::HashMap;
use std::sync::RwLock;

use txmesh_seata::BranchType;

use super::handle::ConnHandle;

/// One registration of a resource by a connection.
#[derive(Clone)]
struct Holder {
    application_id: String,
    /// `applicationId:ip:port`, as branches record it.
    client_id: String,
    /// `applicationId:ip:`, shared by the application's connections on one host.
    host_prefix: String,
    conn: ConnHandle,
}

/// Resource id → the connections that registered it.
#[derive(Default)]
pub struct RmRegistry {
    resources: RwLock<HashMap<String, Vec<Holder>>>,
}

/// The `client_id` Seata records for a branch registered over a connection.
pub fn client_id(application_id: &str, conn: &ConnHandle) -> String {
    format!(
        "{application_id}:{}:{}",
        conn.peer().ip(),
        conn.peer().port()
    )
}

impl RmRegistry {
    /// Records that `conn` serves `resources` for `application_id`.
    pub fn register<'a>(
        &self,
        application_id: &str,
        conn: &ConnHandle,
        resources: impl IntoIterator<Item = &'a str>,
    ) {
        let client_id = client_id(application_id, conn);
        let host_prefix = format!("{application_id}:{}:", conn.peer().ip());
        let mut table = self
            .resources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource in resources {
            let holders = table.entry(resource.to_owned()).or_default();
            if !holders.iter().any(|h| h.conn.id() == conn.id()) {
                holders.push(Holder {
                    application_id: application_id.to_owned(),
                    client_id: client_id.clone(),
                    host_prefix: host_prefix.clone(),
                    conn: conn.clone(),
                });
            }
        }
    }

    /// Withdraws some of a connection's resources.
    pub fn unregister<'a>(&self, conn_id: u64, resources: impl IntoIterator<Item = &'a str>) {
        let mut table = self
            .resources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource in resources {
            if let Some(holders) = table.get_mut(resource) {
                holders.retain(|h| h.conn.id() != conn_id);
            }
        }
        table.retain(|_, holders| !holders.is_empty());
    }

    /// Forgets a closed connection.
    pub fn remove_connection(&self, conn_id: u64) {
        let mut table = self
            .resources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        table
            .values_mut()
            .for_each(|holders| holders.retain(|h| h.conn.id() != conn_id));
        table.retain(|_, holders| !holders.is_empty());
    }

    /// The connection to send a branch's phase two to, in Seata's fallback order.
    pub fn route(
        &self,
        resource_id: &str,
        branch_client_id: &str,
        branch_type: BranchType,
    ) -> Option<ConnHandle> {
        let table = self
            .resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let live: Vec<&Holder> = table
            .get(resource_id)?
            .iter()
            .filter(|h| !h.conn.is_closed())
            .collect();
        let same_app =
            |h: &&&Holder| branch_client_id.starts_with(&format!("{}:", h.application_id));
        live.iter()
            .find(|h| h.client_id == branch_client_id)
            .or_else(|| {
                live.iter()
                    .find(|h| branch_client_id.starts_with(&h.host_prefix))
            })
            .or_else(|| live.iter().find(same_app))
            .or_else(|| live.first().filter(|_| branch_type == BranchType::At))
            .map(|h| h.conn.clone())
    }

    /// One live connection per registered resource (for UndoLogDelete).
    pub fn one_per_resource(&self) -> Vec<(String, ConnHandle)> {
        let table = self
            .resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        table
            .iter()
            .filter_map(|(resource, holders)| {
                holders
                    .iter()
                    .find(|h| !h.conn.is_closed())
                    .map(|h| (resource.clone(), h.conn.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;
    use crate::server::handle::Shared;

    fn conn(id: u64, addr: &str) -> (ConnHandle, mpsc::Receiver<bytes::Bytes>) {
        let (tx, rx) = mpsc::channel(1);
        let shared = Shared::new(id, addr.parse().expect("addr"), tx, 1 << 20);
        (
            ConnHandle {
                shared: Arc::new(shared),
            },
            rx,
        )
    }

    #[test]
    fn routing_follows_seatas_fallback_order() {
        let registry = RmRegistry::default();
        let (exact, _r1) = conn(1, "10.0.0.1:4000");
        let (same_host, _r2) = conn(2, "10.0.0.1:4001");
        let (other_host, _r3) = conn(3, "10.0.0.2:4000");
        let (other_app, _r4) = conn(4, "10.0.0.3:4000");
        registry.register("orders", &exact, ["db"]);
        registry.register("orders", &same_host, ["db"]);
        registry.register("orders", &other_host, ["db"]);
        registry.register("billing", &other_app, ["db", "ledger"]);
        let route = |client: &str, t| registry.route("db", client, t).map(|c| c.id());

        assert_eq!(route("orders:10.0.0.1:4000", BranchType::Tcc), Some(1));
        registry.remove_connection(1);
        assert_eq!(
            route("orders:10.0.0.1:4000", BranchType::Tcc),
            Some(2),
            "same app, same host"
        );
        registry.unregister(2, ["db"]);
        assert_eq!(
            route("orders:10.0.0.1:4000", BranchType::Tcc),
            Some(3),
            "same app, other host"
        );
        registry.remove_connection(3);
        assert_eq!(
            route("orders:10.0.0.1:4000", BranchType::Tcc),
            None,
            "TCC never goes to another app"
        );
        assert_eq!(
            route("orders:10.0.0.1:4000", BranchType::At),
            Some(4),
            "AT may be undone by any app"
        );
        assert_eq!(registry.one_per_resource().len(), 2);
    }

    #[test]
    fn closed_connections_are_skipped() {
        let registry = RmRegistry::default();
        let (first, closed) = conn(1, "10.0.0.1:4000");
        let (second, _open) = conn(2, "10.0.0.1:4001");
        registry.register("orders", &first, ["db"]);
        registry.register("orders", &second, ["db"]);
        drop(closed);
        assert_eq!(
            registry
                .route("db", "orders:10.0.0.1:4000", BranchType::Tcc)
                .map(|c| c.id()),
            Some(2)
        );
    }
}
