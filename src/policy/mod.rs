//! [`RefreshPolicy`]: when to refresh and how to retry, as plain data, plus the pure decisions
//! made from it (`schedule`, `backoff`). Nothing here reads a clock or does I/O.

pub(crate) mod backoff;
pub(crate) mod schedule;

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::duration_format::humantime_serde;

/// When a refresher renews its token and how it retries failures.
///
/// The defaults suit tokens that live minutes to hours; each is stated with its reason below.
/// Deserialise it from configuration with durations written the humantime way; missing fields
/// keep their defaults and unknown fields are an error (so a typo is not silently ignored):
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::RefreshPolicy;
///
/// let policy: RefreshPolicy = serde_json::from_str(r#"{
///     "refresh_at": 0.75,
///     "min_margin": "1m",
///     "backoff": { "max": "2m" }
/// }"#).unwrap();
/// assert_eq!(policy.min_margin, Duration::from_secs(60));
/// assert_eq!(policy.backoff.initial, Duration::from_secs(1)); // default kept
///
/// // Or start from the defaults in code:
/// let mut policy = RefreshPolicy::default();
/// policy.fetch_timeout = Duration::from_secs(10);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RefreshPolicy {
    /// Share of the token's lifetime after which it is refreshed. Default `0.8`: late enough
    /// not to waste tokens, early enough that a failing endpoint leaves a fifth of the lifetime
    /// for retries while the old token is still served.
    #[serde(deserialize_with = "fraction")]
    pub refresh_at: f64,
    /// Random spread around `refresh_at`, as a share of the lifetime (`0.05` = +/- 5 %), so a
    /// fleet started together does not refresh in lock-step. Between 0 and 0.5.
    #[serde(deserialize_with = "fraction")]
    pub jitter: f64,
    /// Refresh at least this long before the token stops being served (its expiry less
    /// `serve_margin`), capped at half the lifetime for short tokens. Default 30 s: leaves room
    /// for a slow token endpoint and a few retries while the old token is still served.
    #[serde(with = "humantime_serde")]
    pub min_margin: Duration,
    /// Readers stop being given a token this long before its expiry, capped at a quarter of
    /// the token's lifetime (so a 5 s token is still served for 3.75 s). Default 10 s, as
    /// golang/oauth2's `expiryDelta`: it covers clock skew between this host and the issuer,
    /// issuers that compute `exp` from a truncated second, and the time a request takes to
    /// reach the resource server. A token read just before its end still arrives alive.
    #[serde(with = "humantime_serde")]
    pub serve_margin: Duration,
    /// Lifetime assumed for tokens that state no expiry (opaque tokens, no `expires_in`); such
    /// a token is refreshed on that schedule and not served past it. Default 1 h: the most
    /// common access-token lifetime.
    #[serde(with = "humantime_serde")]
    pub default_lifetime: Duration,
    /// The shortest time between the starts of two fetches, whatever asks for them. Default 1 s:
    /// a server that hands out already-expiring tokens, or readers waking a failed credential,
    /// must not cause a busy loop against the endpoint.
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// Bound on every fetch, applied around any source. Default 30 s: a hung endpoint can never
    /// hang the credential; the attempt counts as a transient failure.
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Retries after transient failures.
    pub backoff: Backoff,
    /// While readers are waiting for a token (there is no valid one and `current()` or
    /// `ready()` is being called), transient failures are retried at least this often, instead
    /// of waiting out the full backoff. Default 5 s.
    ///
    /// The trade-off: probing every `T` seconds finds a healed endpoint `T/2` after it heals on
    /// average, and costs `1/T` requests per second per replica and credential while it is
    /// down. Reads never trigger a fetch sooner than this schedule allows.
    #[serde(with = "humantime_serde")]
    pub max_retry_while_waiting: Duration,
    /// In a fleet ([`RefresherBuilder::shared`](crate::RefresherBuilder::shared)), the lease
    /// holder is the only replica that probes a failing endpoint, so while readers wait it
    /// retries at least this often instead of `max_retry_while_waiting`. Default 1 s: the
    /// fleet as a whole sends about one request a second, and serves a new token about a
    /// second after the endpoint heals.
    #[serde(with = "humantime_serde")]
    pub fleet_retry_while_waiting: Duration,
    /// In a fleet, the longest minting lease. A lease is a quarter of the time the holder's
    /// token is still served (what the other replicas can afford to wait for a dead holder),
    /// at least 0.5 s and at most this; the holder renews it every third of its length while it
    /// fetches, and stops presenting a single-use secret before it could lapse. Default 5 s: a
    /// dead holder is replaced within about 5 s, and renewals cost the store a few calls per
    /// fetch. Not tied to `fetch_timeout`.
    #[serde(with = "humantime_serde")]
    pub fleet_lease: Duration,
    /// Retries after a permanent failure (a rejected client, a revoked grant), so that a
    /// credential fixed on the server heals without a restart. Default: first after 5 min,
    /// doubling to 1 h. `None` (`null` in configuration) never retries; then only
    /// `refresh()` or `reject()` try again (they always do, at once).
    pub permanent_backoff: Option<Backoff>,
    /// The longest `Retry-After` honoured; a server asking for longer is waited for this long
    /// (and a warning is logged). `None`, the default, means `backoff.max`: a misconfigured or
    /// hostile answer cannot stop a credential for a year.
    #[serde(with = "humantime_serde::option")]
    pub max_retry_after: Option<Duration>,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            refresh_at: 0.8,
            jitter: 0.05,
            min_margin: Duration::from_secs(30),
            serve_margin: Duration::from_secs(10),
            default_lifetime: Duration::from_secs(3600),
            min_interval: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            max_retry_while_waiting: Duration::from_secs(5),
            fleet_retry_while_waiting: Duration::from_secs(1),
            fleet_lease: Duration::from_secs(5),
            permanent_backoff: Some(Backoff {
                initial: Duration::from_secs(300),
                multiplier: 2.0,
                max: Duration::from_secs(3600),
                jitter: 0.2,
            }),
            max_retry_after: None,
        }
    }
}

/// Exponential backoff: the n-th retry waits up to `ceiling(n) = min(max, initial *
/// multiplier^(n-1))`, less a random share of up to `jitter` of it, so replicas that failed
/// together spread apart while no wait ever exceeds its ceiling. The defaults give 1 s, 2 s,
/// 4 s, ... 256 s, then every 5 min. See [`RefreshPolicy`] for what shortens a wait (waiting
/// readers, a still-valid token nearing its end) and what lengthens it (`Retry-After`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Backoff {
    /// Ceiling of the first retry's wait. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Growth of the ceiling per failure. Default 2 (at least 1).
    #[serde(deserialize_with = "at_least_one")]
    pub multiplier: f64,
    /// Largest wait between tries. Default 5 min: an outage is noticed within minutes of its end
    /// even without readers waking the credential.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// The largest share of a wait taken off at random. Default 0.2: waits fall in
    /// `[0.8, 1.0] x ceiling`. 0 makes every wait exactly its ceiling.
    #[serde(deserialize_with = "fraction")]
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format_args!(
            "{value} is not a fraction between 0 and 1"
        )))
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    if value.is_finite() && value >= 1.0 {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format_args!(
            "{value} must be a finite number of at least 1"
        )))
    }
}

/// A fraction from the policy, made safe for arithmetic whatever a caller set.
pub(crate) fn sane_fraction(value: f64, max: f64, fallback: f64) -> f64 {
    if value.is_finite() {
        value.clamp(0.0, max)
    } else {
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_humantime_and_keeps_defaults() {
        let policy: RefreshPolicy =
            serde_json::from_str(r#"{"min_interval": "250ms", "backoff": {"multiplier": 3}}"#)
                .unwrap();
        assert_eq!(policy.min_interval, Duration::from_millis(250));
        assert_eq!(policy.backoff.multiplier, 3.0);
        assert_eq!(policy.fetch_timeout, Duration::from_secs(30));
    }

    #[test]
    fn round_trips_through_json() {
        let policy = RefreshPolicy::default();
        let text = serde_json::to_string(&policy).unwrap();
        assert!(text.contains(r#""min_margin":"30s""#), "{text}");
        assert!(text.contains(r#""max":"5m""#), "{text}");
        assert_eq!(
            serde_json::from_str::<RefreshPolicy>(&text).unwrap(),
            policy
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = serde_json::from_str::<RefreshPolicy>(r#"{"refresh_at": 1.5}"#).unwrap_err();
        assert!(err.to_string().contains("1.5 is not a fraction"), "{err}");
        let err = serde_json::from_str::<RefreshPolicy>(r#"{"min_margin": "soon"}"#).unwrap_err();
        assert!(
            err.to_string().contains("invalid duration \"soon\""),
            "{err}"
        );
        let err = serde_json::from_str::<RefreshPolicy>(r#"{"refresh_after": 0.5}"#).unwrap_err();
        assert!(err.to_string().contains("refresh_after"), "{err}");
        let err = serde_json::from_str::<RefreshPolicy>(r#"{"backoff": {"multiplier": 0.5}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
