//! [`Health`]: what a service's readiness and liveness probes ask, across its credentials.
//!
//! A [`HealthReport`] has one [`CredentialHealth`] per credential (state, whether it serves a
//! token now, time left, last error, next attempt, fleet store availability) and two verdicts:
//!
//! - **ready** when every *required* credential serves a token now (`not_ready` names those
//!   that do not, and why). A credential that is still waiting for its first token, whose token
//!   expired, or that failed permanently makes the service not ready: requests needing it would
//!   fail. Optional credentials are reported, never counted.
//! - **live** when every refresher is running (none has stopped while still registered here).
//!   A failing token endpoint is *not* a liveness failure: restarting the process would not
//!   mend it and would drop the tokens still being served.
//!
//! With feature `health`, [`Health::readiness`] and [`Health::liveness`] are tower services
//! (for axum's `route_service`, hyper, any tower server) that answer `200` or `503` with the
//! report as JSON. Reports carry no secret: states, times and error messages, which the
//! built-in sources never let a secret into.
//!
//! ```
//! use std::time::Duration;
//! use tokenwarden::{FetchError, Health, Refresher, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let api = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
//!     Ok::<_, FetchError>(Token::new("t").expires_in(Duration::from_secs(600)))
//! }))
//! .name("orders-api")
//! .spawn();
//! let health = Health::new().require(api.clone());
//! assert!(!health.report().ready, "no token yet");
//! api.ready().await.unwrap();
//! let report = health.report();
//! assert!(report.ready && report.live);
//! assert_eq!(report.credentials[0].state, "fresh");
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::{Registry, TokenHandle};

/// One credential's health, as a probe reports it.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CredentialHealth {
    /// The credential's name.
    pub name: String,
    /// `pending`, `fresh`, `refreshing`, `stale`, `expired`, `failed` or `stopped`.
    pub state: &'static str,
    /// Whether a read would get a token now.
    pub serving: bool,
    /// Whether readiness counts it.
    pub required: bool,
    /// Seconds the served token has left, if it states an expiry.
    pub seconds_left: Option<u64>,
    /// The last fetch's error, if the last fetch failed.
    pub last_error: Option<String>,
    /// Whether that error is permanent (no retry will mend it).
    pub permanent: bool,
    /// Seconds until the next fetch after a failure, if one is scheduled.
    pub next_attempt_in_seconds: Option<u64>,
    /// For a refresher shared with a fleet: whether its store answers.
    pub fleet_available: Option<bool>,
}

/// The health of a set of credentials, and the two verdicts.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Every required credential serves a token.
    pub ready: bool,
    /// Every refresher is running.
    pub live: bool,
    /// `name: why` for each required credential that serves no token.
    pub not_ready: Vec<String>,
    /// Each credential.
    pub credentials: Vec<CredentialHealth>,
}

impl HealthReport {
    /// The report as JSON.
    pub fn to_json(&self) -> String {
        // Plain strings, numbers and booleans: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The credentials a service's probes look at: handles, required or optional, and registries
/// (every credential in them, required).
#[derive(Clone, Default)]
pub struct Health {
    parts: Arc<Vec<Part>>,
}

#[derive(Clone)]
enum Part {
    Handle { handle: TokenHandle, required: bool },
    Registry(Arc<dyn Fn() -> Vec<TokenHandle> + Send + Sync>),
}

impl Health {
    /// Nothing to look at yet: ready and live.
    pub fn new() -> Health {
        Health::default()
    }

    /// Adds a credential readiness requires.
    pub fn require(self, handle: TokenHandle) -> Health {
        self.with(Part::Handle {
            handle,
            required: true,
        })
    }

    /// Adds a credential that is reported but does not decide readiness (a feature that can
    /// run degraded without it).
    pub fn optional(self, handle: TokenHandle) -> Health {
        self.with(Part::Handle {
            handle,
            required: false,
        })
    }

    /// Adds every credential of `registry`, as it is at each report, all required.
    pub fn registry<K>(self, registry: &Registry<K>) -> Health
    where
        K: Clone + Eq + std::hash::Hash + fmt::Display + Send + Sync + 'static,
    {
        let registry = registry.clone();
        self.with(Part::Registry(Arc::new(move || {
            registry.handles().into_iter().map(|(_, h)| h).collect()
        })))
    }

    fn with(self, part: Part) -> Health {
        let mut parts = Vec::clone(&self.parts);
        parts.push(part);
        Health {
            parts: Arc::new(parts),
        }
    }

    /// The report as of now.
    pub fn report(&self) -> HealthReport {
        let now = SystemTime::now();
        let mut credentials = Vec::new();
        for part in self.parts.iter() {
            match part {
                Part::Handle { handle, required } => {
                    credentials.push(credential(handle, *required, now));
                }
                Part::Registry(handles) => {
                    let mut found: Vec<CredentialHealth> = handles()
                        .iter()
                        .map(|handle| credential(handle, true, now))
                        .collect();
                    found.sort_by(|a, b| a.name.cmp(&b.name));
                    credentials.extend(found);
                }
            }
        }
        verdicts(credentials)
    }
}

/// The report's verdicts over `credentials`: the readiness and liveness rules.
fn verdicts(credentials: Vec<CredentialHealth>) -> HealthReport {
    let not_ready: Vec<String> = credentials
        .iter()
        .filter(|c| c.required && !c.serving)
        .map(|c| {
            let why = match (&c.last_error, c.state) {
                (Some(error), _) => format!("{}: {error}", c.state),
                (None, "pending") => "pending: no token yet".to_owned(),
                (None, state) => state.to_owned(),
            };
            format!("{}: {why}", c.name)
        })
        .collect();
    HealthReport {
        ready: not_ready.is_empty(),
        live: credentials.iter().all(|c| c.state != "stopped"),
        not_ready,
        credentials,
    }
}

fn credential(handle: &TokenHandle, required: bool, now: SystemTime) -> CredentialHealth {
    let state = handle.state();
    let last_error = state.last_error();
    let seconds_until = |at: SystemTime| at.duration_since(now).unwrap_or_default().as_secs();
    CredentialHealth {
        name: handle.name().to_owned(),
        state: state.label(),
        serving: handle.with_current(|_| ()).is_ok(),
        required,
        seconds_left: state
            .token()
            .and_then(|token| token.expiry())
            .map(seconds_until),
        last_error: last_error.map(ToString::to_string),
        permanent: last_error.is_some_and(|e| e.is_permanent()),
        next_attempt_in_seconds: state.next_attempt().map(seconds_until),
        fleet_available: handle.fleet_available(),
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("parts", &self.parts.len())
            .finish()
    }
}

#[cfg(feature = "health")]
mod http_service {
    use std::convert::Infallible;
    use std::future::{Ready, ready};
    use std::task::{Context, Poll};

    use super::{Health, HealthReport};

    /// Which verdict a [`HealthService`] answers with.
    #[derive(Clone, Copy, Debug)]
    enum Probe {
        Readiness,
        Liveness,
    }

    /// A tower service answering a probe: `200 OK` when the verdict holds, `503 Service
    /// Unavailable` when it does not, with the [`HealthReport`] as a JSON body either way.
    /// Ignores the request (any method and path).
    #[derive(Clone, Debug)]
    pub struct HealthService {
        health: Health,
        probe: Probe,
    }

    impl Health {
        /// A service for a readiness probe (`/readyz`): 200 when every required credential
        /// serves a token. Feature `health`.
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() {
        /// use tokenwarden::Health;
        /// let app: axum::Router = axum::Router::new()
        ///     .route_service("/readyz", Health::new().readiness())
        ///     .route_service("/healthz", Health::new().liveness());
        /// # let _ = app; }
        /// ```
        pub fn readiness(&self) -> HealthService {
            HealthService {
                health: self.clone(),
                probe: Probe::Readiness,
            }
        }

        /// A service for a liveness probe (`/healthz`): 200 while every refresher runs.
        /// Feature `health`.
        pub fn liveness(&self) -> HealthService {
            HealthService {
                health: self.clone(),
                probe: Probe::Liveness,
            }
        }
    }

    fn answer(report: &HealthReport, ok: bool) -> http::Response<String> {
        let status = if ok {
            http::StatusCode::OK
        } else {
            http::StatusCode::SERVICE_UNAVAILABLE
        };
        let mut response = http::Response::new(report.to_json());
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        response
    }

    impl<B> tower_service::Service<http::Request<B>> for HealthService {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = Ready<Result<http::Response<String>, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<B>) -> Self::Future {
            let report = self.health.report();
            let ok = match self.probe {
                Probe::Readiness => report.ready,
                Probe::Liveness => report.live,
            };
            ready(Ok(answer(&report, ok)))
        }
    }
}

#[cfg(feature = "health")]
#[cfg_attr(docsrs, doc(cfg(feature = "health")))]
pub use http_service::HealthService;

#[cfg(test)]
mod tests {
    use super::*;

    fn health(name: &str, state: &'static str, serving: bool, required: bool) -> CredentialHealth {
        CredentialHealth {
            name: name.into(),
            state,
            serving,
            required,
            seconds_left: None,
            last_error: None,
            permanent: false,
            next_attempt_in_seconds: None,
            fleet_available: None,
        }
    }

    #[test]
    fn ready_needs_every_required_credential_serving_and_names_those_that_do_not() {
        let mut failing = health("billing", "failed", false, true);
        failing.last_error = Some("invalid_client".into());
        let report = verdicts(vec![
            health("orders", "fresh", true, true),
            failing,
            health("search", "pending", false, false),
        ]);
        assert!(!report.ready);
        assert_eq!(report.not_ready, ["billing: failed: invalid_client"]);
        assert!(report.live, "a failing endpoint is no reason to restart");
    }

    #[test]
    fn a_stale_token_still_serves_and_a_stopped_refresher_is_not_live() {
        let report = verdicts(vec![health("orders", "stale", true, true)]);
        assert!(report.ready && report.live);
        let report = verdicts(vec![health("orders", "stopped", false, true)]);
        assert!(!report.ready && !report.live);
        assert_eq!(report.not_ready, ["orders: stopped"]);
    }

    #[test]
    fn nothing_to_look_at_is_ready_and_live() {
        let report = Health::new().report();
        assert!(report.ready && report.live && report.credentials.is_empty());
    }
}
