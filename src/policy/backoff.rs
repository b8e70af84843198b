//! How long to wait after a failed fetch: a pure function of the policy, the failure count,
//! the server's wishes, the current token's remaining validity and a random sample.

use std::time::Duration;

use super::{Backoff, RefreshPolicy, sane_fraction};

/// The largest wait before retry number `failures` (1 for the first failure): exponential,
/// capped at `max`.
pub(crate) fn ceiling(backoff: &Backoff, failures: u32) -> Duration {
    let multiplier = if backoff.multiplier.is_finite() {
        backoff.multiplier.max(1.0)
    } else {
        2.0
    };
    let exponent = failures.saturating_sub(1).min(1_000) as i32;
    let secs = backoff.initial.as_secs_f64() * multiplier.powi(exponent);
    Duration::try_from_secs_f64(secs)
        .unwrap_or(backoff.max)
        .min(backoff.max)
}

/// The wait before the next try after `failures` consecutive transient failures.
///
/// Full jitter (`sample` in `[0, 1]` times the ceiling) spreads a fleet's retries apart. While
/// the current token is still valid (`time_left`), the wait is at most half of what is left,
/// so tries keep happening before it expires. A server's `retry_after` is honoured over both,
/// and nothing waits less than `min_interval`.
pub(crate) fn retry_delay(
    policy: &RefreshPolicy,
    failures: u32,
    retry_after: Option<Duration>,
    time_left: Option<Duration>,
    sample: f64,
) -> Duration {
    let ceiling = ceiling(&policy.backoff, failures);
    let mut wait = ceiling.mul_f64(sane_fraction(sample, 1.0, 1.0));
    if let Some(left) = time_left.filter(|left| !left.is_zero()) {
        wait = wait.min(left / 2);
    }
    if let Some(after) = retry_after {
        wait = wait.max(after);
    }
    wait.max(policy.min_interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
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
    fn full_jitter_scales_the_ceiling() {
        let policy = RefreshPolicy::default();
        assert_eq!(retry_delay(&policy, 5, None, None, 0.5), secs(8));
        assert_eq!(retry_delay(&policy, 5, None, None, 1.0), secs(16));
        // The minimum interval is a floor, even for a zero sample.
        assert_eq!(retry_delay(&policy, 5, None, None, 0.0), secs(1));
    }

    #[test]
    fn waits_at_most_half_the_remaining_validity() {
        let policy = RefreshPolicy::default();
        assert_eq!(retry_delay(&policy, 9, None, Some(secs(20)), 1.0), secs(10));
        // Expired: back to plain backoff.
        assert_eq!(
            retry_delay(&policy, 9, None, Some(Duration::ZERO), 1.0),
            secs(256)
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let policy = RefreshPolicy::default();
        assert_eq!(retry_delay(&policy, 1, Some(secs(30)), None, 1.0), secs(30));
        assert_eq!(
            retry_delay(&policy, 1, Some(secs(30)), Some(secs(20)), 1.0),
            secs(30),
            "the server's wish wins over the expiry clamp: an earlier try would be refused"
        );
    }

    #[test]
    fn nonsense_inputs_do_not_panic() {
        let mut policy = RefreshPolicy::default();
        policy.backoff.multiplier = f64::NAN;
        policy.backoff.initial = Duration::MAX;
        assert_eq!(retry_delay(&policy, 3, None, None, f64::NAN), secs(300));
        policy.backoff.multiplier = 0.1;
        assert!(retry_delay(&policy, 3, None, None, -4.0) >= policy.min_interval);
    }

    proptest! {
        #[test]
        fn delay_stays_within_bounds(
            failures in 1u32..100,
            sample in 0.0f64..=1.0,
            left_ms in proptest::option::of(0u64..10_000_000),
            after_ms in proptest::option::of(0u64..1_000_000),
        ) {
            let policy = RefreshPolicy::default();
            let left = left_ms.map(Duration::from_millis);
            let after = after_ms.map(Duration::from_millis);
            let delay = retry_delay(&policy, failures, after, left, sample);

            prop_assert!(delay >= policy.min_interval);
            prop_assert!(delay <= policy.backoff.max.max(after.unwrap_or_default()));
            if let Some(after) = after {
                prop_assert!(delay >= after);
            }
            if let (Some(left), None) = (left, after)
                && left >= 2 * policy.min_interval
            {
                prop_assert!(delay < left, "a try is kept before expiry");
            }
        }
    }
}
