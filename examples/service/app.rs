//! The operator-facing part of a service that uses tokenwarden: liveness and readiness probes
//! over its credentials and Prometheus metrics. Shared by `main.rs` and the test that scrapes
//! it (`tests/observability.rs`).

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokenwarden::{Health, Registry};

/// Bucket bounds for fetch durations, in seconds: token endpoints answer in tens of
/// milliseconds when healthy; the refresher bounds a fetch at 30 s. Buckets (rather than the
/// exporter's default summaries) aggregate across replicas, as the dashboard and alerts do.
const FETCH_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Installs the Prometheus exporter as the process's `metrics` recorder.
///
/// # Panics
///
/// If a recorder is already installed.
pub fn install_metrics() -> PrometheusHandle {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("tokenwarden_fetch_duration_seconds".into()),
            FETCH_BUCKETS,
        )
        .expect("valid buckets")
        .install_recorder()
        .expect("the first recorder of this process")
}

/// `/healthz` (liveness), `/readyz` (readiness) and `/metrics`, over every credential of
/// `registry`.
pub fn operations(registry: &Registry<String>, metrics: PrometheusHandle) -> Router {
    let health = Health::new().registry(registry);
    Router::new()
        .route_service("/healthz", health.liveness())
        .route_service("/readyz", health.readiness())
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
}
