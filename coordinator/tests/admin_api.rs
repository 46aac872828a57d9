//! The admin HTTP API of a running coordinator: transactions are made through the Seata
//! client, as TMs and RMs make them, then looked at and resumed over HTTP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{BOUND, Reply, begin, bounded, branch, commit, http, loopback_config, sample};
use serde_json::{Value, json};
use tempfile::TempDir;
use txmesh_coordinator::{Coordinator, CoordinatorConfig};
use txmesh_seata::client::{ClientConfig, NoResources, SeataClient, ServerRequestHandler};
use txmesh_seata::message::*;
use txmesh_seata::{BranchStatus, BranchType, GlobalStatus};

const TOKEN: &str = "s3cret-token";

struct Harness {
    dir: TempDir,
    admin_token: Option<String>,
    coordinator: Coordinator,
}

impl Harness {
    async fn start(admin_token: Option<&str>) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let admin_token = admin_token.map(str::to_owned);
        let coordinator = Self::start_in(&dir, admin_token.clone()).await;
        Self {
            dir,
            admin_token,
            coordinator,
        }
    }

    async fn start_in(dir: &TempDir, admin_token: Option<String>) -> Coordinator {
        let config = CoordinatorConfig {
            admin_token,
            ..loopback_config(dir)
        };
        let coordinator = bounded(Coordinator::start(config)).await.expect("starts");
        assert!(coordinator.wait_until_leading(BOUND).await, "leads");
        coordinator
    }

    /// Stops and starts again on the same data directory (and new ports).
    async fn restart(self) -> Self {
        self.coordinator.stop().await;
        let coordinator = Self::start_in(&self.dir, self.admin_token.clone()).await;
        Self {
            coordinator,
            ..self
        }
    }

    async fn get(&self, path: &str) -> Reply {
        http(self.coordinator.http_addr(), "GET", path, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>) -> Reply {
        http(self.coordinator.http_addr(), "POST", path, token).await
    }

    async fn client(
        &self,
        application_id: &str,
        handler: Arc<impl ServerRequestHandler>,
    ) -> SeataClient {
        let config = ClientConfig {
            application_id: application_id.into(),
            ..ClientConfig::default()
        };
        let addr = self.coordinator.seata_addr().to_string();
        SeataClient::connect(&addr, config, handler)
            .await
            .expect("connects")
    }

    async fn tm(&self, application_id: &str) -> SeataClient {
        let client = self.client(application_id, Arc::new(NoResources)).await;
        client.register_tm().await.expect("registers");
        client
    }

    /// A resource manager for `jdbc:db` whose phase two always succeeds.
    async fn rm(&self) -> SeataClient {
        let client = self.client("stock", Arc::new(Agreeable)).await;
        client
            .register_rm(&["jdbc:db".to_owned()])
            .await
            .expect("registers");
        client
    }

    /// Polls a transaction's detail until its status is `wanted`.
    async fn until_status(&self, xid: &str, wanted: &str) {
        let path = format!("/api/v1/transactions/{xid}");
        bounded(async {
            while self.get(&path).await.json()["status"] != wanted {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}

struct Agreeable;

impl ServerRequestHandler for Agreeable {
    async fn branch_commit(&self, request: BranchEndRequest) -> BranchEndResponse {
        done(request, BranchStatus::PhaseTwoCommitted)
    }

    async fn branch_rollback(&self, request: BranchEndRequest) -> BranchEndResponse {
        done(request, BranchStatus::PhaseTwoRollbacked)
    }
}

fn done(request: BranchEndRequest, branch_status: BranchStatus) -> BranchEndResponse {
    BranchEndResponse {
        result: TxResult::success(),
        xid: request.xid,
        branch_id: request.branch_id,
        branch_status,
    }
}

/// Registers an AT branch locking `lock_key`; its id.
async fn lock_rows(rm: &SeataClient, xid: &str, lock_key: &str) -> i64 {
    branch(rm, xid, BranchType::At, "jdbc:db", lock_key).await
}

fn xids(page: &Value) -> Vec<&str> {
    page["transactions"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| t["xid"].as_str().expect("an xid"))
        .collect()
}

#[tokio::test]
async fn probes_answer_and_unknown_routes_are_json_errors() {
    let harness = Harness::start(None).await;
    let live = harness.get("/healthz").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok"));
    assert_eq!(
        harness.get("/readyz").await.status,
        200,
        "a single node leads"
    );
    assert!(!harness.get("/nowhere").await.error(404).is_empty());
    assert!(
        !harness
            .post("/api/v1/locks", None)
            .await
            .error(405)
            .is_empty()
    );
}

#[tokio::test]
async fn listings_filter_by_status_and_application_oldest_first_in_pages() {
    let harness = Harness::start(None).await;
    let shop = harness.tm("shop").await;
    let billing = harness.tm("billing").await;
    let committed = begin(&shop, 60_000).await;
    let first = begin(&shop, 60_000).await;
    let second = begin(&shop, 30_000).await;
    let other = begin(&billing, 60_000).await;
    assert_eq!(commit(&shop, &committed).await, GlobalStatus::Committed);

    let all = harness.get("/api/v1/transactions").await.json();
    assert_eq!(all["total"], 3, "finished transactions are not listed");
    assert_eq!(xids(&all), [&first, &second, &other]);
    let listed = &all["transactions"][1];
    assert_eq!(listed["status"], "Begin");
    assert_eq!(listed["applicationId"], "shop");
    assert_eq!(listed["transactionServiceGroup"], "default_tx_group");
    assert_eq!(listed["name"], "transfer");
    assert_eq!(listed["timeoutMs"], 30_000);
    assert_eq!(listed["branches"], 0);
    assert!(listed["beginTime"].as_u64().expect("ms") > 0);
    let tx_id: u64 = second.rsplit(':').next().expect("id").parse().expect("u64");
    assert_eq!(listed["txId"], tx_id);

    let shop_page = harness
        .get("/api/v1/transactions?status=Begin&application=shop&offset=1&limit=1")
        .await
        .json();
    assert_eq!(shop_page["total"], 2);
    assert_eq!(xids(&shop_page), [&second]);
    let retrying = harness
        .get("/api/v1/transactions?status=CommitRetrying")
        .await
        .json();
    assert_eq!(retrying, json!({"total": 0, "transactions": []}));

    let unknown = harness.get("/api/v1/transactions?status=Stuck").await;
    assert!(
        unknown.error(400).contains("CommitRetrying"),
        "names the valid statuses"
    );
    let too_many = harness.get("/api/v1/transactions?limit=1001").await;
    assert!(too_many.error(400).contains("1000"));
    assert_eq!(
        harness.get("/api/v1/transactions?offset=x").await.status,
        400
    );
}

#[tokio::test]
async fn the_detail_shows_branches_and_the_lock_listing_their_rows() {
    let harness = Harness::start(None).await;
    let tm = harness.tm("shop").await;
    let rm = harness.rm().await;
    let xid = begin(&tm, 60_000).await;
    let branch_id = lock_rows(&rm, &xid, "account:2,1").await;

    let detail = harness
        .get(&format!("/api/v1/transactions/{xid}"))
        .await
        .json();
    assert_eq!(detail["xid"], xid.as_str());
    assert_eq!(detail["status"], "Begin");
    let branch = &detail["branches"][0];
    assert_eq!(branch["branchId"], branch_id);
    assert_eq!(branch["branchType"], "AT");
    assert_eq!(branch["resourceId"], "jdbc:db");
    assert_eq!(branch["status"], "Registered");
    assert_eq!(branch["lockKey"], "account:2,1");
    assert_eq!(branch["applicationData"], "");
    assert!(
        branch["clientId"]
            .as_str()
            .expect("id")
            .starts_with("stock:")
    );
    assert_eq!(
        branch["locks"],
        json!(["jdbc:db^^^account^^^2", "jdbc:db^^^account^^^1"])
    );

    let locks = harness.get("/api/v1/locks").await.json();
    assert_eq!(locks["total"], 2);
    let tx_id = detail["txId"].clone();
    assert_eq!(
        locks["locks"][0],
        json!({"rowKey": "jdbc:db^^^account^^^1", "xid": xid, "txId": tx_id, "branchId": branch_id}),
        "in row-key order"
    );
    let paged = harness
        .get("/api/v1/locks?resource=jdbc:db&offset=1&limit=1")
        .await
        .json();
    assert_eq!(paged["total"], 2);
    assert_eq!(paged["locks"][0]["rowKey"], "jdbc:db^^^account^^^2");
    let elsewhere = harness
        .get("/api/v1/locks?resource=jdbc:other")
        .await
        .json();
    assert_eq!(elsewhere, json!({"total": 0, "locks": []}));
}

#[tokio::test]
async fn unknown_finished_and_malformed_xids() {
    let harness = Harness::start(None).await;
    let tm = harness.tm("shop").await;
    let unknown = harness
        .get("/api/v1/transactions/127.0.0.1:8091:424242")
        .await;
    assert!(unknown.error(404).contains("127.0.0.1:8091:424242"));
    let malformed = harness.get("/api/v1/transactions/not-an-xid").await;
    assert!(malformed.error(400).contains("malformed"));

    let xid = begin(&tm, 60_000).await;
    assert_eq!(commit(&tm, &xid).await, GlobalStatus::Committed);
    let finished = harness.get(&format!("/api/v1/transactions/{xid}")).await;
    assert_eq!(finished.status, 200);
    assert_eq!(finished.json(), json!({"xid": xid, "status": "Committed"}));
}

#[tokio::test]
async fn mutating_calls_are_refused_without_a_configured_token() {
    let harness = Harness::start(None).await;
    let tm = harness.tm("shop").await;
    let xid = begin(&tm, 60_000).await;
    let refused = harness
        .post(&format!("/api/v1/transactions/{xid}/commit"), Some(TOKEN))
        .await;
    assert!(refused.error(403).contains("--admin-token-file"));
    let still = harness.get(&format!("/api/v1/transactions/{xid}")).await;
    assert_eq!(still.json()["status"], "Begin", "nothing changed");
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_unauthorized() {
    let harness = Harness::start(Some(TOKEN)).await;
    let tm = harness.tm("shop").await;
    let xid = begin(&tm, 60_000).await;
    let path = format!("/api/v1/transactions/{xid}/rollback");
    harness.post(&path, None).await.error(401);
    harness.post(&path, Some("s3cret-tokem")).await.error(401);
    harness.post(&path, Some("s3cret-token2")).await.error(401);
    let still = harness.get(&format!("/api/v1/transactions/{xid}")).await;
    assert_eq!(still.json()["status"], "Begin", "nothing changed");
}

#[tokio::test]
async fn the_operator_decides_transactions_with_the_token() {
    let harness = Harness::start(Some(TOKEN)).await;
    let tm = harness.tm("shop").await;
    let rm = harness.rm().await;

    let plain = begin(&tm, 60_000).await;
    let committed = harness
        .post(&format!("/api/v1/transactions/{plain}/commit"), Some(TOKEN))
        .await;
    assert_eq!(committed.status, 200, "{}", committed.body);
    assert_eq!(
        committed.json(),
        json!({"xid": plain, "status": "Committed"})
    );

    let locked = begin(&tm, 60_000).await;
    lock_rows(&rm, &locked, "account:1").await;
    let rolling_back = harness
        .post(
            &format!("/api/v1/transactions/{locked}/rollback"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(rolling_back.json()["status"], "Rollbacking");
    harness.until_status(&locked, "Rollbacked").await;
    let locks = harness.get("/api/v1/locks").await.json();
    assert_eq!(locks["total"], 0, "phase two ran and released the rows");

    let again = harness
        .post(
            &format!("/api/v1/transactions/{plain}/rollback"),
            Some(TOKEN),
        )
        .await;
    assert!(again.error(404).contains("not live"));
    assert_eq!(again.json()["code"], "GlobalTransactionNotExist");
    let malformed = harness
        .post("/api/v1/transactions/nonsense/commit", Some(TOKEN))
        .await;
    malformed.error(400);
}

/// The value of the sample `name` (with its labels) in an OpenMetrics exposition.
#[tokio::test]
async fn metrics_count_the_lifecycle_and_read_the_state() {
    let harness = Harness::start(None).await;
    let tm = harness.tm("shop").await;
    let rm = harness.rm().await;
    let committed = begin(&tm, 60_000).await;
    lock_rows(&rm, &committed, "account:1").await;
    assert_eq!(commit(&tm, &committed).await, GlobalStatus::Committed);
    let open = begin(&tm, 60_000).await;
    lock_rows(&rm, &open, "account:2,3").await;
    let expiring = begin(&tm, 1).await;
    harness.until_status(&expiring, "TimeoutRollbacked").await;
    harness.until_status(&committed, "Committed").await;

    let scrape = harness.get("/metrics").await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = scrape.body.as_str();
    let value = |name: &str| sample(text, name).unwrap_or_else(|| panic!("{name} in:\n{text}"));
    assert_eq!(value("txmesh_coordinator_transactions_begun_total"), 3.0);
    assert_eq!(
        value("txmesh_coordinator_transactions_committed_total"),
        1.0
    );
    assert_eq!(
        value("txmesh_coordinator_transactions_rolled_back_total"),
        1.0
    );
    assert_eq!(
        value("txmesh_coordinator_transactions_timed_out_total"),
        1.0
    );
    assert_eq!(value("txmesh_coordinator_phase_two_retries_total"), 0.0);
    assert_eq!(
        value("txmesh_coordinator_transactions_active{status=\"Begin\"}"),
        1.0
    );
    assert_eq!(value("txmesh_coordinator_locks_held"), 2.0);
    assert_eq!(
        value("txmesh_coordinator_phase_two_branch_duration_seconds_count"),
        1.0,
        "the committed branch's round trip"
    );
    assert!(value("txmesh_coordinator_raft_apply_duration_seconds_count") >= 7.0);
    assert!(value("txmesh_coordinator_raft_entries_per_fsync_count") >= 1.0);
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn a_restart_does_not_count_the_replayed_log_again() {
    let harness = Harness::start(None).await;
    let tm = harness.tm("shop").await;
    let xid = begin(&tm, 60_000).await;
    assert_eq!(commit(&tm, &xid).await, GlobalStatus::Committed);
    drop(tm);

    let harness = harness.restart().await;
    let finished = harness.get(&format!("/api/v1/transactions/{xid}")).await;
    assert_eq!(
        finished.json()["status"],
        "Committed",
        "the state came back"
    );
    let text = harness.get("/metrics").await.body;
    assert_eq!(
        sample(&text, "txmesh_coordinator_transactions_begun_total"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "txmesh_coordinator_transactions_committed_total"),
        Some(0.0)
    );
}
