//! How long to wait after a failed fetch: one pure function of the policy, the failure and a
//! random sample. Nothing else in the crate decides when a retry happens.

use std::time::Duration;

use super::{Backoff, RefreshPolicy, sane_fraction};

/// What the retry decision needs to know about a failed fetch, as plain data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Failure {
    /// Consecutive failures of this kind (transient or permanent), this one included.
    pub(crate) streak: u32,
    pub(crate) permanent: bool,
    /// The server's `Retry-After`, if it sent one.
    pub(crate) retry_after: Option<Duration>,
    /// How long the current token is still served, if there is a valid one.
    pub(crate) time_left: Option<Duration>,
    /// Readers have asked for a token and found none since the last attempt started.
    pub(crate) readers_waiting: bool,
    /// The failure was a fleet lease holder's, probing the endpoint for the whole fleet.
    pub(crate) fleet_probe: bool,
}

/// The largest wait before retry number `streak` (1 for the first failure): exponential,
/// capped at `max`.
pub(crate) fn ceiling(backoff: &Backoff, streak: u32) -> Duration {
    let multiplier = if backoff.multiplier.is_finite() {
        backoff.multiplier.max(1.0)
    } else {
        2.0
    };
    let exponent = streak.saturating_sub(1).min(1_000) as i32;
    let secs = backoff.initial.as_secs_f64() * multiplier.powi(exponent);
    Duration::try_from_secs_f64(secs)
        .unwrap_or(backoff.max)
        .min(backoff.max)
}

/// The part of a server's `Retry-After` that is honoured: at most `max_retry_after`
/// (default: the backoff's cap).
pub(crate) fn honoured_retry_after(policy: &RefreshPolicy, after: Duration) -> Duration {
    after.min(policy.max_retry_after.unwrap_or(policy.backoff.max))
}

/// The wait before the next try, or `None` when a permanent failure is not to be retried.
///
/// 1. The ceiling grows with the streak: `policy.backoff` after transient failures,
///    `policy.permanent_backoff` after permanent ones.
/// 2. After a transient failure, waiting readers cap it at `max_retry_while_waiting` (at
///    `fleet_retry_while_waiting` for a fleet's lease holder, the fleet's one prober), and so
///    does a still-valid token: retries come at least every half of its remaining time, but
///    not more often than readers could make them (no burst of retries just before expiry).
/// 3. `sample` (in `[0, 1]`) takes up to `jitter` of it off, so a fleet spreads apart.
/// 4. A server's `Retry-After` (itself capped, see [`honoured_retry_after`]) lengthens it, and
///    nothing waits less than `min_interval`.
pub(crate) fn retry_delay(
    policy: &RefreshPolicy,
    failure: &Failure,
    sample: f64,
) -> Option<Duration> {
    let backoff = if failure.permanent {
        policy.permanent_backoff.as_ref()?
    } else {
        &policy.backoff
    };
    let mut ceiling = ceiling(backoff, failure.streak);
    if !failure.permanent {
        let floor = policy.max_retry_while_waiting;
        if failure.readers_waiting {
            let cap = if failure.fleet_probe {
                policy.fleet_retry_while_waiting.min(floor)
            } else {
                floor
            };
            ceiling = ceiling.min(cap);
        }
        if let Some(left) = failure.time_left.filter(|left| !left.is_zero()) {
            ceiling = ceiling.min((left / 2).max(floor));
        }
    }
    let jitter = sane_fraction(backoff.jitter, 1.0, 0.0) * sane_fraction(sample, 1.0, 1.0);
    let mut wait = ceiling.mul_f64(1.0 - jitter);
    if let Some(after) = failure.retry_after {
        wait = wait.max(honoured_retry_after(policy, after));
    }
    Some(wait.max(policy.min_interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn transient(streak: u32) -> Failure {
        Failure {
            streak,
            permanent: false,
            retry_after: None,
            time_left: None,
            readers_waiting: false,
            fleet_probe: false,
        }
    }

    #[test]
    fn a_fleets_prober_retries_every_second_while_readers_wait() {
        let policy = exact();
        let failure = Failure {
            readers_waiting: true,
            fleet_probe: true,
            ..transient(6)
        };
        assert_eq!(retry_delay(&policy, &failure, 0.0), Some(secs(1)));
        let alone = Failure {
            fleet_probe: false,
            ..failure
        };
        assert_eq!(retry_delay(&policy, &alone, 0.0), Some(secs(5)));
        let nobody_waiting = Failure {
            readers_waiting: false,
            ..failure
        };
        assert_eq!(
            retry_delay(&policy, &nobody_waiting, 0.0),
            Some(secs(32)),
            "the usual backoff when nobody waits"
        );
    }

    fn exact() -> RefreshPolicy {
        let mut policy = RefreshPolicy::default();
        policy.backoff.jitter = 0.0;
        policy
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let backoff = Backoff::default();
        let ceilings: Vec<_> = (1..=11).map(|n| ceiling(&backoff, n)).collect();
        assert_eq!(
            ceilings,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300].map(secs)
        );
        assert_eq!(ceiling(&backoff, u32::MAX), secs(300));
    }

    #[test]
    fn jitter_takes_at_most_its_share_off() {
        let policy = RefreshPolicy::default();
        assert_eq!(retry_delay(&policy, &transient(5), 0.0), Some(secs(16)));
        assert_eq!(
            retry_delay(&policy, &transient(5), 0.5),
            Some(secs(16).mul_f64(0.9))
        );
        assert_eq!(
            retry_delay(&policy, &transient(5), 1.0),
            Some(secs(16).mul_f64(0.8))
        );
        // The minimum interval is a floor.
        assert_eq!(retry_delay(&policy, &transient(1), 1.0), Some(secs(1)));
    }

    #[test]
    fn waiting_readers_cap_the_wait_but_never_undercut_the_schedule() {
        let policy = exact();
        let waiting = |streak| {
            let failure = Failure {
                readers_waiting: true,
                ..transient(streak)
            };
            retry_delay(&policy, &failure, 0.0).unwrap()
        };
        let alone = |streak| retry_delay(&policy, &transient(streak), 0.0).unwrap();
        assert_eq!(
            (1..=6).map(waiting).collect::<Vec<_>>(),
            [1, 2, 4, 5, 5, 5].map(secs)
        );
        assert_eq!(
            (1..=6).map(alone).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32].map(secs)
        );
    }

    #[test]
    fn a_valid_token_brings_retries_forward_but_not_into_a_burst() {
        let policy = exact();
        let with_left = |left| Failure {
            time_left: Some(left),
            ..transient(9)
        };
        assert_eq!(
            retry_delay(&policy, &with_left(secs(100)), 0.0),
            Some(secs(50))
        );
        // Near the end: every `max_retry_while_waiting`, not every `min_interval`.
        assert_eq!(
            retry_delay(&policy, &with_left(secs(3)), 0.0),
            Some(secs(5))
        );
        // Expired: back to plain backoff.
        assert_eq!(
            retry_delay(&policy, &with_left(Duration::ZERO), 0.0),
            Some(secs(256))
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let mut policy = exact();
        let asked = |after| Failure {
            retry_after: Some(after),
            time_left: Some(secs(20)),
            readers_waiting: true,
            ..transient(1)
        };
        assert_eq!(
            retry_delay(&policy, &asked(secs(30)), 0.0),
            Some(secs(30)),
            "the server's wish wins over waiting readers and the expiry: an earlier try would be refused"
        );
        assert_eq!(
            retry_delay(&policy, &asked(secs(1_000_000_000)), 0.0),
            Some(secs(300)),
            "capped at the backoff's cap"
        );
        policy.max_retry_after = Some(secs(60));
        assert_eq!(
            retry_delay(&policy, &asked(secs(3600)), 0.0),
            Some(secs(60))
        );
    }

    #[test]
    fn permanent_failures_are_retried_slowly_or_not_at_all() {
        let mut policy = exact();
        let permanent = |streak| Failure {
            permanent: true,
            readers_waiting: true,
            time_left: Some(secs(10)),
            ..transient(streak)
        };
        let delays: Vec<_> = (1..=6)
            .map(|n| retry_delay(&policy, &permanent(n), 0.0).unwrap())
            .collect();
        assert_eq!(delays, [300, 600, 1200, 2400, 3600, 3600].map(secs));
        policy.permanent_backoff = None;
        assert_eq!(retry_delay(&policy, &permanent(1), 0.0), None);
    }

    #[test]
    fn nonsense_inputs_do_not_panic() {
        let mut policy = RefreshPolicy::default();
        policy.backoff.multiplier = f64::NAN;
        policy.backoff.initial = Duration::MAX;
        policy.backoff.jitter = f64::NAN;
        assert_eq!(
            retry_delay(&policy, &transient(3), f64::NAN),
            Some(secs(300))
        );
        policy.backoff.multiplier = 0.1;
        policy.backoff.jitter = 7.0;
        assert!(retry_delay(&policy, &transient(3), -4.0).unwrap() >= policy.min_interval);
    }

    proptest! {
        #[test]
        fn delay_stays_within_bounds(
            streak in 1u32..100,
            sample in 0.0f64..=1.0,
            left_ms in proptest::option::of(0u64..10_000_000),
            after_ms in proptest::option::of(0u64..1_000_000_000),
            readers_waiting: bool,
        ) {
            let policy = RefreshPolicy::default();
            let failure = Failure {
                time_left: left_ms.map(Duration::from_millis),
                retry_after: after_ms.map(Duration::from_millis),
                readers_waiting,
                ..transient(streak)
            };
            let delay = retry_delay(&policy, &failure, sample).unwrap();
            let after = failure.retry_after.map(|a| honoured_retry_after(&policy, a));

            prop_assert!(delay >= policy.min_interval);
            prop_assert!(delay <= policy.backoff.max, "never longer than the cap, whatever the server says");
            prop_assert!(delay <= ceiling(&policy.backoff, streak).max(after.unwrap_or_default()).max(policy.min_interval));
            if let Some(after) = after {
                prop_assert!(delay >= after);
            }
            if readers_waiting && after.is_none() {
                prop_assert!(delay <= policy.max_retry_while_waiting);
            }
            if let (Some(left), None) = (failure.time_left, after)
                && left >= 2 * policy.max_retry_while_waiting
            {
                prop_assert!(delay <= left / 2, "a try is kept before expiry");
            }
        }
    }
}
