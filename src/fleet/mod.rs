//! A fleet of replicas sharing one token: one mint per refresh cycle, not one per replica.
//!
//! [`FleetStore`] is where the fleet keeps its newest token and its minting lease
//! ([`RedisFleet`], with the `redis` feature: a single server, Sentinel or Cluster). Give one
//! to [`RefresherBuilder::shared`](crate::RefresherBuilder::shared); every replica's refresher
//! then, when a fetch is due:
//!
//! 1. adopts the fleet's token if it is newer than its own (a replica that starts while a
//!    valid shared token exists fetches nothing);
//! 2. otherwise takes the lease and, only if it got it, fetches from the token endpoint,
//!    continuing the newest refresh-token chain (the fleet's record, or its own token if that
//!    is newer), and publishes the result (fenced: a holder whose lease has passed cannot
//!    overwrite a newer token) *before* handing it to its own readers;
//! 3. otherwise polls for the holder's token, trying the lease each time, so a dead holder is
//!    replaced as soon as its lease lapses.
//!
//! # Leases
//!
//! A lease lasts a quarter of the time the holder's token is still served (what the others can
//! afford to wait), between 0.5 s and [`RefreshPolicy::fleet_lease`](crate::RefreshPolicy)
//! (default 5 s). The holder renews it every third of its length while it fetches. A holder
//! presenting a single-use secret (a rotating refresh token) whose renewals fail is cut off
//! at four fifths of the lease, before the store could give the lease to another replica: two
//! holders never present one refresh token at once. A holder whose fetch failed keeps the
//! lease and retries (every second while readers wait, see
//! [`RefreshPolicy::fleet_retry_while_waiting`](crate::RefreshPolicy)): while the token
//! endpoint fails it sees one prober, not the fleet.
//!
//! # When the store cannot be used
//!
//! The fleet store is never on the read path: `current()` reads the replica's own state. When
//! the store is out of reach, or this replica's key cannot open the fleet's record:
//!
//! - a source that spends nothing single-use (client credentials, API keys, assertions)
//!   fetches alone (static stability) and the fleet converges back to one minter when the
//!   store answers;
//! - a source that does ([`TokenSource::spends_single_use_secret`](crate::TokenSource::spends_single_use_secret), true for
//!   [`RefreshTokenGrant`](crate::sources::RefreshTokenGrant)) never fetches without the
//!   lease: the replica serves its valid token to its end, then reports the wait (the state's
//!   last error says what it waits for and why) and resumes by itself when the store answers.
//!   Availability is lost for a while; the grant is never lost.
//!
//! A store outage is told by [`Event::FleetUnavailable`](crate::Event::FleetUnavailable)
//! (with a [`FleetErrorKind`]) and [`TokenHandle::fleet_available`](crate::TokenHandle::fleet_available).
//!
//! # Mints per refresh cycle
//!
//! The fleet mints once per refresh cycle of one replica: with the default policy a token is
//! refreshed at about 80 % of its life (at least `min_margin` before it stops being served),
//! so a fleet mints `lifetime / refresh offset` times per token lifetime: 1.25 for an hour's
//! token, about 3 for 10 s tokens (where the margin decides). RELIABILITY.md has the
//! measured numbers.

mod error;
#[cfg(feature = "redis")]
mod redis_fleet;
mod rule;
mod shared;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::Token;

pub use self::error::{FleetError, FleetErrorKind};
pub(crate) use self::shared::{Settings, Shared};

#[cfg(feature = "redis")]
pub use self::redis_fleet::RedisFleet;
/// The `redis` crate this one is built with (feature `redis`): build the
/// [`redis::Client`] (or Sentinel or Cluster client) you give [`RedisFleet`] from this path,
/// so that a service on another version of `redis` gets no type mismatch.
#[cfg(feature = "redis")]
pub use ::redis;

/// The future a [`FleetStore`] returns.
pub type FleetFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, FleetError>> + Send + 'a>>;

/// Where a fleet keeps its newest token and the lease on minting the next one.
///
/// Implementations must make [`publish`](FleetStore::publish) conditional on the lease in one
/// atomic step, and keep a published token that carries a refresh token for as long as that
/// refresh token may live (not only as long as the access token): it is how a fleet restarted
/// after any downtime continues its chain. Every call is bounded by the caller's timeout.
pub trait FleetStore: Send + Sync + 'static {
    /// The fleet's newest token, if there is one (also one whose access token expired: its
    /// refresh token continues the chain).
    fn load(&self) -> FleetFuture<'_, Option<Token>>;

    /// Takes the minting lease for `ttl` if nobody holds it, or renews it for `ttl` if
    /// `holder` holds it already. `true` if `holder` now holds it.
    fn try_lease(&self, holder: &str, ttl: Duration) -> FleetFuture<'_, bool>;

    /// Stores `token` as the fleet's newest and releases the lease, only if `holder` still
    /// holds it. `true` if it was stored.
    fn publish(&self, holder: &str, token: &Token) -> FleetFuture<'_, bool>;

    /// The store for messages: its address and the fleet's name, never a password. Default:
    /// `the fleet store`.
    fn describe(&self) -> String {
        "the fleet store".to_owned()
    }

    /// Checks that the store can be used: reachable, this replica admitted, the fleet's record
    /// (if any) readable with this replica's key. Call it at startup so that a deploy with a
    /// wrong address, password or key fails at once rather than at the first refresh.
    /// Default: a [`load`](FleetStore::load).
    fn check(&self) -> FleetFuture<'_, ()> {
        let load = self.load();
        Box::pin(async move { load.await.map(drop) })
    }
}
