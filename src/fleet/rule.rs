//! The fleet's decisions, as pure functions over plain data: whether a replica may fetch, which
//! token it adopts, which refresh-token chain it continues, and how long a lease lasts. The
//! effects (store calls, timers) live in `shared.rs`; every rule here is a unit test.

use std::time::{Duration, SystemTime};

use super::FleetErrorKind;
use crate::{FetchContext, FetchReason, Token};

/// Whether a replica may call its token source without the fleet's lease, the store being
/// unusable for `_cause` (every cause is treated alike: a store that is down, a wrong password
/// and a wrong key all leave the fetch uncoordinated).
///
/// Under the lease a replica always may. Without it, only a source that spends nothing
/// single-use fetches alone (static stability: client credentials, API keys and assertions can be used by any
/// number of replicas at once). A single-use secret (a rotating refresh token) is never spent
/// without the lease: two replicas presenting one refresh token revoke the grant, which only a
/// new login repairs, while waiting for the store costs availability for a while at most.
pub(crate) fn may_fetch_without_lease(
    spends_single_use_secret: bool,
    _cause: FleetErrorKind,
) -> bool {
    !spends_single_use_secret
}

/// Whether the fleet's `token` should replace this replica's: valid, not the token a server
/// just rejected, and not older than the one this replica has.
pub(crate) fn adoptable(token: &Token, ctx: &FetchContext) -> bool {
    if token.is_expired_at(ctx.started_at()) {
        return false;
    }
    match ctx.previous() {
        None => true,
        Some(previous) if token.same_secret(previous) => false,
        Some(_) if ctx.reason() == FetchReason::Rejected => true,
        Some(previous) => match (token.expiry(), previous.expiry()) {
            (Some(shared), Some(own)) => shared > own,
            _ => true,
        },
    }
}

/// Of this replica's newest token and the fleet's record, the one to mint from: the one issued
/// later carries the newer refresh token. The fleet's wins a tie (it is what every replica
/// follows); this replica's own wins only when it is newer, which happens when it minted and
/// could not publish (the fleet's record then holds a spent refresh token).
pub(crate) fn chain_head<'a>(
    own: Option<&'a Token>,
    fleet: Option<&'a Token>,
) -> Option<&'a Token> {
    match (own, fleet) {
        (Some(own), Some(fleet)) if own.issued_at() > fleet.issued_at() => Some(own),
        (own, fleet) => fleet.or(own),
    }
}

/// The shortest lease: 500 ms, long enough for a few round trips to the store and two
/// renewals (every 167 ms), short enough that replicas of 4 s tokens (1.6 s left when their
/// refresh is due) replace a dead holder before their tokens stop being served.
pub(crate) const SHORTEST_LEASE: Duration = Duration::from_millis(500);

/// How long a lease lasts: a quarter of the time this replica's token is still served (what the
/// others, whose tokens are about as old, can afford to wait for a dead holder), between
/// [`SHORTEST_LEASE`] and `longest`. Without a token to go by (the first fetch), `longest`.
pub(crate) fn lease_length(
    longest: Duration,
    previous: Option<&Token>,
    now: SystemTime,
) -> Duration {
    let longest = longest.max(SHORTEST_LEASE);
    let left = previous
        .and_then(Token::usable_until)
        .map(|until| until.duration_since(now).unwrap_or_default());
    match left {
        Some(left) => (left / 4).clamp(SHORTEST_LEASE, longest),
        None => longest,
    }
}

/// When a holder renews its lease: every third of it, so two renewals can fail before it lapses.
pub(crate) fn renew_every(lease: Duration) -> Duration {
    lease / 3
}

/// How long after a renewal was *sent* the holder may go on presenting its secret: four fifths
/// of the lease. The store starts the lease's clock when the renewal arrives, later than it was
/// sent, so this holder stops before the store could hand the lease to another, with a fifth of
/// the lease to spare for the two clocks' drift.
pub(crate) fn safe_for(lease: Duration) -> Duration {
    lease.mul_f64(0.8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ctx(reason: FetchReason, previous: Option<Token>) -> FetchContext {
        FetchContext::for_attempt(reason, previous, 1, at(1_000))
    }

    #[test]
    fn a_single_use_secret_is_spent_only_under_the_lease() {
        for kind in [
            FleetErrorKind::Unreachable,
            FleetErrorKind::Authentication,
            FleetErrorKind::Timeout,
            FleetErrorKind::KeyMismatch,
            FleetErrorKind::Script,
            FleetErrorKind::Corrupt,
            FleetErrorKind::Other,
        ] {
            assert!(!may_fetch_without_lease(true, kind), "{kind}");
            assert!(may_fetch_without_lease(false, kind), "{kind}");
        }
    }

    #[test]
    fn the_fleets_token_is_adopted_only_when_newer_valid_and_not_rejected() {
        let shared = Token::new("shared").expires_at(at(2_000));
        assert!(adoptable(&shared, &ctx(FetchReason::Initial, None)));
        let older = Token::new("mine").expires_at(at(1_500));
        assert!(adoptable(
            &shared,
            &ctx(FetchReason::Scheduled, Some(older))
        ));
        let newer = Token::new("mine").expires_at(at(3_000));
        assert!(!adoptable(
            &shared,
            &ctx(FetchReason::Scheduled, Some(newer.clone()))
        ));
        assert!(
            adoptable(&shared, &ctx(FetchReason::Rejected, Some(newer))),
            "after a rejection any other valid token is better"
        );
        assert!(
            !adoptable(&shared, &ctx(FetchReason::Rejected, Some(shared.clone()))),
            "never the rejected token itself"
        );
        let expired = Token::new("old").expires_at(at(999));
        assert!(!adoptable(&expired, &ctx(FetchReason::Initial, None)));
    }

    #[test]
    fn the_chain_continues_from_the_later_issued_token_and_the_fleets_on_a_tie() {
        let fleet = Token::new("a")
            .anchored_at(at(100))
            .with_refresh_token("rt-fleet");
        let older = Token::new("b")
            .anchored_at(at(50))
            .with_refresh_token("rt-old");
        let newer = Token::new("c")
            .anchored_at(at(150))
            .with_refresh_token("rt-new");
        let same_time = Token::new("d")
            .anchored_at(at(100))
            .with_refresh_token("rt-same");
        let head =
            |own, fleet| chain_head(own, fleet).map(|t: &Token| t.expose_secret().to_owned());
        assert_eq!(head(Some(&older), Some(&fleet)).as_deref(), Some("a"));
        assert_eq!(head(Some(&newer), Some(&fleet)).as_deref(), Some("c"));
        assert_eq!(head(Some(&same_time), Some(&fleet)).as_deref(), Some("a"));
        assert_eq!(head(None, Some(&fleet)).as_deref(), Some("a"));
        assert_eq!(head(Some(&older), None).as_deref(), Some("b"));
        assert_eq!(head(None, None), None);
    }

    #[test]
    fn a_lease_is_a_quarter_of_what_is_left_within_bounds() {
        let longest = Duration::from_secs(5);
        let token = |left: u64| {
            Token::new("t")
                .expires_at(at(1_000 + left))
                .for_refresher(Duration::from_secs(3600), |_| Duration::ZERO)
        };
        assert_eq!(lease_length(longest, None, at(1_000)), longest);
        assert_eq!(
            lease_length(longest, Some(&token(3_600)), at(1_000)),
            longest
        );
        assert_eq!(
            lease_length(longest, Some(&token(8)), at(1_000)),
            Duration::from_secs(2)
        );
        assert_eq!(
            lease_length(longest, Some(&token(1)), at(1_000)),
            SHORTEST_LEASE
        );
        assert_eq!(
            lease_length(longest, Some(&token(2)), at(5_000)),
            SHORTEST_LEASE,
            "an expired token leaves the shortest lease"
        );
        assert_eq!(
            lease_length(Duration::ZERO, None, at(1_000)),
            SHORTEST_LEASE
        );
    }

    #[test]
    fn a_holder_stops_before_its_lease_can_lapse_and_renews_twice_before() {
        for lease in [
            SHORTEST_LEASE,
            Duration::from_secs(5),
            Duration::from_secs(30),
        ] {
            assert!(safe_for(lease) < lease);
            assert!(2 * renew_every(lease) < safe_for(lease));
        }
    }
}
