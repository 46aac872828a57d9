//! `GET /metrics` in the OpenMetrics text format, with the node's health read at each scrape.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Admin;
use super::error::ApiError;
use crate::node::Node;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes the node's registry.
pub(super) async fn metrics(State(admin): State<Arc<Admin>>) -> Result<Response, ApiError> {
    let mut body = String::new();
    encode(&mut body, &admin.registry).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
    })?;
    Ok(([(CONTENT_TYPE, OPENMETRICS)], body).into_response())
}

/// Gauges read at each scrape: the data volume's space and whether the Raft core runs.
pub(super) struct HealthGauges {
    node: Arc<Node>,
}

impl HealthGauges {
    /// The gauges of `node`.
    pub(super) fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

impl std::fmt::Debug for HealthGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthGauges")
            .field("node", &self.node.id)
            .finish()
    }
}

impl Collector for HealthGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(space) = self.node.volume().space() {
            let gauges = [
                (
                    "data_volume_available_bytes",
                    "Bytes still free for the coordinator on its data volume.",
                    space.available,
                ),
                (
                    "data_volume_size_bytes",
                    "Size of the coordinator's data volume.",
                    space.total,
                ),
            ];
            for (name, help, bytes) in gauges {
                let gauge = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX)).encode(gauge)?;
            }
        }
        let running = encoder.encode_descriptor(
            "raft_running",
            "1 while the Raft core runs, 0 once it stopped (see /readyz for why).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.node.fault().is_none())).encode(running)
    }
}
