//! When to refresh a token: a pure function of the policy, the token's times and a jitter sample.

use std::time::{Duration, SystemTime};

use super::{RefreshPolicy, sane_fraction};

/// How long before its expiry a token stops being served: `serve_margin`, capped at a quarter
/// of the token's lifetime so that short-lived tokens stay usable.
pub(crate) fn serve_margin(policy: &RefreshPolicy, lifetime: Duration) -> Duration {
    policy.serve_margin.min(lifetime / 4)
}

/// How long after `issued_at` the token should be refreshed, where `expires_at` is the end of
/// its use (the refresher passes the moment it stops serving the token).
///
/// - at `refresh_at` of the lifetime,
/// - but no later than `min_margin` (capped at half the lifetime) plus the jitter share before
///   the end,
/// - moved by `jitter` (a sample in `[-1, 1]`) times the policy's jitter share of the lifetime,
///   after those clamps, so short-lived tokens (where the margin decides) spread too;
/// - no later than the server's `refresh_in` hint;
/// - yet never sooner than `min_interval` after the fetch that got it, so a server that hands
///   out already-expiring tokens cannot cause a busy loop.
///
/// A token without an expiry is given `default_lifetime`.
pub(crate) fn refresh_offset(
    policy: &RefreshPolicy,
    issued_at: SystemTime,
    expires_at: Option<SystemTime>,
    refresh_in: Option<Duration>,
    jitter: f64,
) -> Duration {
    let lifetime = match expires_at {
        Some(expires_at) => expires_at
            .duration_since(issued_at)
            .unwrap_or(Duration::ZERO),
        None => policy.default_lifetime,
    };
    let of_lifetime = |share: f64| {
        Duration::try_from_secs_f64(lifetime.as_secs_f64() * share)
            .unwrap_or(lifetime)
            .min(lifetime)
    };
    let jitter_share = sane_fraction(policy.jitter, 0.5, 0.0);
    let spread = of_lifetime(jitter_share);
    let margin = policy.min_margin.min(lifetime / 2);
    // The centre of the jittered window, placed so that its late edge keeps the margin.
    let centre = of_lifetime(sane_fraction(policy.refresh_at, 1.0, 0.8))
        .min(lifetime.saturating_sub(margin).saturating_sub(spread));
    let jitter = if jitter.is_finite() {
        jitter.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let moved = spread.mul_f64(jitter.abs());
    let mut offset = if jitter >= 0.0 {
        centre.saturating_add(moved)
    } else {
        centre.saturating_sub(moved)
    }
    .min(lifetime - margin);
    if let Some(hint) = refresh_in {
        offset = offset.min(hint);
    }
    offset.max(policy.min_interval)
}

/// Whether a token served until `current` is better kept than one served until `fetched`:
/// it is served longer (a token without an end is served longest).
pub(crate) fn serves_longer(current: Option<SystemTime>, fetched: Option<SystemTime>) -> bool {
    match (current, fetched) {
        (None, Some(_)) => true,
        (Some(current), Some(fetched)) => current > fetched,
        (_, None) => false,
    }
}

/// How long from `now` until a point `offset` after `issued_at` (zero if it has passed).
pub(crate) fn delay_until(issued_at: SystemTime, offset: Duration, now: SystemTime) -> Duration {
    match now.duration_since(issued_at) {
        Ok(elapsed) => offset.saturating_sub(elapsed),
        // The wall clock went back since the token was issued.
        Err(back) => offset.saturating_add(back.duration()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn offset(policy: &RefreshPolicy, lifetime: Option<u64>, jitter: f64) -> Duration {
        refresh_offset(policy, T0, lifetime.map(|s| T0 + secs(s)), None, jitter)
    }

    #[test]
    fn one_hour_token_refreshes_at_eighty_percent() {
        let policy = RefreshPolicy::default();
        assert_eq!(offset(&policy, Some(3600), 0.0), secs(2880));
        assert_eq!(offset(&policy, Some(3600), 1.0), secs(3060)); // +5 %
        assert_eq!(offset(&policy, Some(3600), -1.0), secs(2700)); // -5 %
    }

    #[test]
    fn margin_wins_over_share_for_short_tokens() {
        let policy = RefreshPolicy::default();
        // 2 min token: 80 % = 96 s, but it must be refreshed 30 s before expiry, jitter included
        // (+/- 6 s around 84 s).
        assert_eq!(offset(&policy, Some(120), 0.0), secs(84));
        assert_eq!(offset(&policy, Some(120), 1.0), secs(90));
        assert_eq!(offset(&policy, Some(120), -1.0), secs(78));
        // 40 s token: margin capped at half the lifetime.
        assert_eq!(offset(&policy, Some(40), 0.0), secs(18));
        assert_eq!(offset(&policy, Some(40), 1.0), secs(20));
    }

    #[test]
    fn short_lived_tokens_are_spread_by_the_jitter() {
        let policy = RefreshPolicy::default();
        for lifetime in [5, 60, 90, 120, 150] {
            let early = offset(&policy, Some(lifetime), -1.0);
            let late = offset(&policy, Some(lifetime), 1.0);
            let window = late - early;
            assert!(
                window >= Duration::from_secs(lifetime).mul_f64(0.099),
                "{lifetime} s: window {window:?}"
            );
        }
    }

    #[test]
    fn the_serve_margin_is_capped_for_short_tokens() {
        let policy = RefreshPolicy::default();
        assert_eq!(serve_margin(&policy, secs(3600)), secs(10));
        assert_eq!(serve_margin(&policy, secs(5)), Duration::from_millis(1250));
        assert_eq!(serve_margin(&policy, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn no_expiry_uses_default_lifetime() {
        let policy = RefreshPolicy::default();
        assert_eq!(offset(&policy, None, 0.0), secs(2880));
    }

    #[test]
    fn server_hint_brings_refresh_forward_only() {
        let policy = RefreshPolicy::default();
        let early = refresh_offset(&policy, T0, Some(T0 + secs(3600)), Some(secs(600)), 0.0);
        assert_eq!(early, secs(600));
        let late = refresh_offset(&policy, T0, Some(T0 + secs(3600)), Some(secs(7200)), 0.0);
        assert_eq!(late, secs(2880));
    }

    #[test]
    fn already_expired_or_tiny_tokens_respect_the_minimum_interval() {
        let policy = RefreshPolicy::default();
        assert_eq!(offset(&policy, Some(0), 0.0), secs(1));
        assert_eq!(offset(&policy, Some(0), 1.0), secs(1));
        let expired = refresh_offset(&policy, T0 + secs(10), Some(T0), None, 0.0);
        assert_eq!(expired, secs(1));
        let hinted = refresh_offset(&policy, T0, Some(T0 + secs(60)), Some(Duration::ZERO), 0.0);
        assert_eq!(hinted, secs(1));
    }

    #[test]
    fn nonsense_policy_values_do_not_panic() {
        let policy = RefreshPolicy {
            refresh_at: f64::NAN,
            jitter: f64::INFINITY,
            default_lifetime: Duration::MAX,
            ..RefreshPolicy::default()
        };
        let offset = offset(&policy, None, f64::NAN.clamp(-1.0, 1.0));
        assert!(offset <= Duration::MAX);
    }

    #[test]
    fn the_token_served_longer_is_kept() {
        let (early, late) = (Some(T0 + secs(10)), Some(T0 + secs(20)));
        assert!(serves_longer(late, early));
        assert!(!serves_longer(early, late));
        assert!(!serves_longer(late, late), "a tie adopts the new token");
        assert!(serves_longer(None, early));
        assert!(!serves_longer(early, None));
    }

    #[test]
    fn delay_is_measured_from_now() {
        assert_eq!(delay_until(T0, secs(100), T0 + secs(30)), secs(70));
        assert_eq!(delay_until(T0, secs(100), T0 + secs(300)), Duration::ZERO);
        assert_eq!(delay_until(T0 + secs(5), secs(100), T0), secs(105));
    }

    proptest! {
        #[test]
        fn bounds_hold_for_any_lifetime_and_jitter(
            lifetime_ms in 0u64..(30 * 24 * 3600 * 1000),
            jitter in -1.0f64..=1.0,
            hint_ms in proptest::option::of(0u64..(30 * 24 * 3600 * 1000)),
        ) {
            let policy = RefreshPolicy::default();
            let lifetime = Duration::from_millis(lifetime_ms);
            let hint = hint_ms.map(Duration::from_millis);
            let offset = refresh_offset(&policy, T0, Some(T0 + lifetime), hint, jitter);

            // The minimum interval always holds.
            prop_assert!(offset >= policy.min_interval);
            if lifetime >= 2 * policy.min_interval {
                // Never past expiry, and never later than the (capped) margin before it.
                let margin = policy.min_margin.min(lifetime / 2);
                prop_assert!(offset <= lifetime - margin, "{offset:?} > {lifetime:?} - {margin:?}");
                // Jitter stays within +/- 5 % of the lifetime around 80 % (or the margin's
                // clamp, moved earlier by 5 %).
                let latest = lifetime.mul_f64(0.85);
                prop_assert!(offset <= latest + Duration::from_nanos(2));
                if hint.is_none() && lifetime - margin >= lifetime.mul_f64(0.85) {
                    prop_assert!(offset >= lifetime.mul_f64(0.75).saturating_sub(Duration::from_nanos(2)));
                }
            }
            if let Some(hint) = hint {
                prop_assert!(offset <= hint.max(policy.min_interval));
            }
        }
    }
}
