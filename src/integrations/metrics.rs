//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`): every
//! refresher records these, labelled `credential` (its [name](crate::RefresherBuilder::name)).
//! Install any `metrics` exporter (Prometheus, StatsD, OpenTelemetry) and they appear; without
//! one, recording costs a few atomic loads.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `tokenwarden_refreshes_total` | counter | `credential`, `reason`, `outcome` | fetches finished; `reason` is `initial`, `scheduled`, `forced` or `rejected`; `outcome` is `success`, `transient_error` or `permanent_error` |
//! | `tokenwarden_fetch_duration_seconds` | histogram | `credential`, `outcome` | how long each fetch took, store save included |
//! | `tokenwarden_token_expires_at_seconds` | gauge | `credential` | when the served token expires (Unix time, seconds); alert on `tokenwarden_token_expires_at_seconds - time()` |
//! | `tokenwarden_token_seconds_until_expiry` | gauge | `credential` | seconds the served token has left, as of the refresher's last change or wake-up (it wakes a few times per lifetime) |
//! | `tokenwarden_state` | gauge | `credential`, `state` | 1 for the current state, 0 for the others; `state` is `pending`, `fresh`, `refreshing`, `stale`, `expired`, `failed` or `stopped` |
//! | `tokenwarden_fleet_available` | gauge | `credential` | for a refresher [shared](crate::RefresherBuilder::shared) with a fleet: 1 while its store answers, 0 while it does not |
//!
//! `contrib/` holds a Grafana dashboard and Prometheus alerting rules over these series
//! (`contrib/prometheus/tokenwarden.rules.yml`, tested with `promtool test rules`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A service installs an exporter once at startup, e.g.
//! // `metrics_exporter_prometheus::PrometheusBuilder::new().install()`; here, a recorder
//! // that keeps what it is given.
//! let recorder = metrics_util::debugging::DebuggingRecorder::new();
//! let snapshot = recorder.snapshotter();
//! recorder.install().expect("the first recorder of this process");
//!
//! let source = tokenwarden::from_fn(|_ctx| async {
//!     Ok::<_, tokenwarden::FetchError>(tokenwarden::Token::new("t").expires_in(std::time::Duration::from_secs(60)))
//! });
//! let handle = tokenwarden::Refresher::builder(source).name("billing").spawn();
//! handle.ready().await.unwrap();
//! let names: Vec<String> = snapshot
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .map(|(key, ..)| key.key().name().to_owned())
//!     .collect();
//! assert!(names.iter().any(|n| n == "tokenwarden_refreshes_total"));
//! # }
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{FetchError, FetchReason, TokenState};

/// A fetch finished after `took`.
pub(crate) fn fetched<T>(
    credential: &Arc<str>,
    reason: FetchReason,
    result: &Result<T, FetchError>,
    took: Duration,
) {
    let outcome = match result {
        Ok(_) => "success",
        Err(error) if error.is_permanent() => "permanent_error",
        Err(_) => "transient_error",
    };
    let name = credential.to_string();
    metrics::counter!(
        "tokenwarden_refreshes_total",
        "credential" => name.clone(),
        "reason" => reason.to_string(),
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!(
        "tokenwarden_fetch_duration_seconds",
        "credential" => name,
        "outcome" => outcome
    )
    .record(took.as_secs_f64());
}

/// Whether a shared refresher's fleet store answers.
pub(crate) fn fleet_available(credential: &Arc<str>, available: bool) {
    metrics::gauge!("tokenwarden_fleet_available", "credential" => credential.to_string())
        .set(if available { 1.0 } else { 0.0 });
}

/// The published state went from `previous` (if any) to `state`, at wall-clock `now`.
pub(crate) fn state(
    credential: &Arc<str>,
    previous: Option<&TokenState>,
    state: &TokenState,
    now: SystemTime,
) {
    let name = credential.to_string();
    let label = state.label();
    if let Some(previous) = previous.map(TokenState::label).filter(|p| *p != label) {
        metrics::gauge!("tokenwarden_state", "credential" => name.clone(), "state" => previous)
            .set(0.0);
    }
    metrics::gauge!("tokenwarden_state", "credential" => name.clone(), "state" => label).set(1.0);
    if let Some(expiry) = state.token().and_then(|token| token.expiry()) {
        let at = expiry.duration_since(UNIX_EPOCH).unwrap_or_default();
        metrics::gauge!("tokenwarden_token_expires_at_seconds", "credential" => name.clone())
            .set(at.as_secs_f64());
        let left = expiry.duration_since(now).unwrap_or_default();
        metrics::gauge!("tokenwarden_token_seconds_until_expiry", "credential" => name)
            .set(left.as_secs_f64());
    }
}
