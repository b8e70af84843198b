//! A fleet of replicas sharing one token: one mint per lifetime, not one per replica.
//!
//! [`FleetStore`] is where the fleet keeps its newest token and its minting lease
//! (`RedisFleet`, with the `redis` feature). Give one to
//! [`RefresherBuilder::shared`](crate::RefresherBuilder::shared); every replica's refresher
//! then, when a fetch is due:
//!
//! 1. adopts the fleet's token if it is newer than its own (a replica that starts while a
//!    valid shared token exists fetches nothing);
//! 2. otherwise takes the lease and, only if it got it, fetches from the token endpoint and
//!    publishes the result (fenced: a holder whose lease has passed cannot overwrite a newer
//!    token) *before* handing it to its own readers, so a rotated refresh token reaches the
//!    fleet first and every replica follows one rotation chain;
//! 3. otherwise waits, polling, for the lease holder's token; if none comes within the lease,
//!    the fetch fails (transient) and is retried on the backoff schedule. A holder whose fetch
//!    failed keeps the lease and retries on its own schedule, so while the token endpoint
//!    fails, it sees one prober, not the fleet; if that replica goes away, its lease runs out
//!    (after `fetch_timeout`) and another takes over.
//!
//! The fleet store is never on the read path: `current()` reads the local watch channel. If
//! the store cannot be reached within its timeout, the replica fetches on its own (static
//! stability) and logs a warning; when the store answers again, the fleet converges back to one
//! minter.

#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{debug, warn};

use crate::{Event, FetchContext, FetchError, FetchFuture, FetchReason, Token, TokenSource};

/// Where a [`Shared`] source reports what it did (the refresher's event stream).
pub(crate) type Report = Arc<dyn Fn(Event) + Send + Sync>;

#[cfg(feature = "redis")]
pub use self::redis::RedisFleet;

/// The future a [`FleetStore`] returns.
pub type FleetFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, FleetError>> + Send + 'a>>;

/// Where a fleet keeps its newest token and the lease on minting the next one.
///
/// Implementations must make [`publish`](FleetStore::publish) conditional on the lease in one
/// atomic step. Every call is bounded by the caller's timeout; a failure makes the replica
/// fetch on its own.
pub trait FleetStore: Send + Sync + 'static {
    /// The fleet's newest token, if there is one.
    fn load(&self) -> FleetFuture<'_, Option<Token>>;

    /// Takes the minting lease for `ttl` if nobody holds it, or renews it for `ttl` if
    /// `holder` holds it already. `true` if `holder` now holds it.
    fn try_lease(&self, holder: &str, ttl: Duration) -> FleetFuture<'_, bool>;

    /// Stores `token` as the fleet's newest and releases the lease, only if `holder` still
    /// holds it. `true` if it was stored.
    fn publish(&self, holder: &str, token: &Token) -> FleetFuture<'_, bool>;
}

/// Why a fleet store could not be used. Its message holds no secret.
#[derive(Clone, Debug)]
pub struct FleetError(String);

impl FleetError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> FleetError {
        FleetError(message.into())
    }
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FleetError {}

/// How often a replica that did not get the lease looks for the holder's token.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// A source that fetches through the fleet (see the module docs). Built by
/// [`RefresherBuilder::shared`](crate::RefresherBuilder::shared).
pub(crate) struct Shared {
    source: Arc<dyn TokenSource>,
    store: Arc<dyn FleetStore>,
    /// This replica's lease identity.
    holder: String,
    /// How long a lease lasts: the fetch's own bound, so a holder that hangs loses it.
    lease: Duration,
    /// Bound on each call to the store.
    store_timeout: Duration,
    report: Report,
    /// The store failed its last call (so its recovery is reported once); shared with the
    /// handles (`TokenHandle::fleet_available`).
    unavailable: Arc<AtomicBool>,
}

impl Shared {
    pub(crate) fn new(
        source: Arc<dyn TokenSource>,
        store: Arc<dyn FleetStore>,
        lease: Duration,
        store_timeout: Duration,
        report: Report,
        unavailable: Arc<AtomicBool>,
    ) -> Shared {
        Shared {
            source,
            store,
            holder: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            lease,
            store_timeout,
            report,
            unavailable,
        }
    }

    /// One call to the store, bounded; reports when the store goes away and comes back.
    async fn bounded<T>(&self, call: FleetFuture<'_, T>) -> Result<T, FleetError> {
        let result = tokio::time::timeout(self.store_timeout, call)
            .await
            .unwrap_or_else(|_| Err(FleetError::new("the fleet store did not answer in time")));
        match &result {
            Ok(_) if self.unavailable.swap(false, Ordering::Relaxed) => {
                tracing::info!("the fleet store answers again");
                (self.report)(Event::FleetAvailable);
            }
            Err(error) if !self.unavailable.swap(true, Ordering::Relaxed) => {
                (self.report)(Event::FleetUnavailable {
                    error: error.clone(),
                });
            }
            _ => {}
        }
        result
    }

    async fn fetch_through_fleet(&self, ctx: FetchContext) -> Result<Token, FetchError> {
        let shared = match self.bounded(self.store.load()).await {
            Ok(shared) => shared,
            Err(error) => return self.alone(ctx, &error).await,
        };
        if let Some(token) = shared.as_ref().filter(|t| adoptable(t, &ctx)) {
            debug!("adopted the fleet's token");
            (self.report)(Event::AdoptedFromFleet);
            return Ok(token.clone());
        }
        match self
            .bounded(self.store.try_lease(&self.holder, self.lease))
            .await
        {
            Ok(true) => {}
            Ok(false) => return self.wait_for_holder(&ctx).await,
            Err(error) => return self.alone(ctx, &error).await,
        }
        // What was loaded before the lease may be stale: another holder may have published and
        // released in between. Minting from it would present a spent refresh token.
        let shared = match self.bounded(self.store.load()).await {
            Ok(shared) => shared,
            Err(error) => return self.alone(ctx, &error).await,
        };
        if let Some(token) = shared.as_ref().filter(|t| adoptable(t, &ctx)) {
            // Publishing the same token back releases the lease at once.
            let _ = self.bounded(self.store.publish(&self.holder, token)).await;
            debug!("adopted the token another replica minted while this one took the lease");
            (self.report)(Event::AdoptedFromFleet);
            return Ok(token.clone());
        }
        // The fleet's token carries the newest refresh token: mint from it.
        let ctx = match shared {
            Some(shared) => ctx.with_previous(shared),
            None => ctx,
        };
        let result = self.source.fetch(ctx).await;
        // After a failure the lease is kept: this replica retries on its backoff schedule
        // (renewing it), the others keep waiting, so an outage costs the token endpoint one
        // prober, not a fleet. If this replica goes away, the lease runs out.
        if let Ok(token) = &result {
            match self.bounded(self.store.publish(&self.holder, token)).await {
                Ok(true) => {
                    debug!("minted a token for the fleet");
                    (self.report)(Event::MintedForFleet);
                }
                Ok(false) => {
                    warn!("the minting lease ran out before the new token was shared");
                    (self.report)(Event::FleetLeaseLost);
                }
                Err(error) => warn!(%error, "could not share the new token with the fleet"),
            }
        }
        result
    }

    /// Another replica holds the lease: wait for its token, up to the lease's length.
    async fn wait_for_holder(&self, ctx: &FetchContext) -> Result<Token, FetchError> {
        let deadline = tokio::time::Instant::now() + self.lease;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(POLL_EVERY).await;
            if let Ok(Some(token)) = self.bounded(self.store.load()).await
                && adoptable(&token, ctx)
            {
                debug!("adopted the token another replica minted");
                (self.report)(Event::AdoptedFromFleet);
                return Ok(token);
            }
        }
        Err(FetchError::transient(format!(
            "another replica holds the lease on minting and shared no token within {}",
            crate::duration_format::Readable(self.lease)
        )))
    }

    /// The fleet store is out of reach: fetch as if alone, so no replica goes without a token.
    async fn alone(&self, ctx: FetchContext, error: &FleetError) -> Result<Token, FetchError> {
        warn!(%error, "the fleet store is unavailable; fetching a token alone");
        self.source.fetch(ctx).await
    }
}

/// Whether the fleet's `token` should replace this replica's: valid, not the token a server
/// just rejected, and not older than the one this replica has.
fn adoptable(token: &Token, ctx: &FetchContext) -> bool {
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

impl TokenSource for Shared {
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(self.fetch_through_fleet(ctx))
    }

    fn origin(&self) -> Option<String> {
        self.source.origin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::SystemTime;

    /// A fleet store in memory whose `try_lease` lets another replica publish first, the
    /// interleaving that once made a replica mint from a spent refresh token.
    struct PublishedMeanwhile {
        token: Mutex<Option<Token>>,
        meanwhile: Token,
        publishes: Mutex<u32>,
    }

    impl FleetStore for PublishedMeanwhile {
        fn load(&self) -> FleetFuture<'_, Option<Token>> {
            Box::pin(async { Ok(self.token.lock().unwrap().clone()) })
        }
        fn try_lease(&self, _holder: &str, _ttl: Duration) -> FleetFuture<'_, bool> {
            // The other replica published and released just before this lease was taken.
            *self.token.lock().unwrap() = Some(self.meanwhile.clone());
            Box::pin(async { Ok(true) })
        }
        fn publish(&self, _holder: &str, token: &Token) -> FleetFuture<'_, bool> {
            *self.publishes.lock().unwrap() += 1;
            *self.token.lock().unwrap() = Some(token.clone());
            Box::pin(async { Ok(true) })
        }
    }

    #[tokio::test]
    async fn a_token_published_while_the_lease_was_taken_is_adopted_not_minted_over() {
        let meanwhile = Token::new("minted-by-another")
            .expires_in(Duration::from_secs(600))
            .with_refresh_token("rt-1");
        let store = Arc::new(PublishedMeanwhile {
            token: Mutex::new(None),
            meanwhile,
            publishes: Mutex::new(0),
        });
        let fetches = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = fetches.clone();
        let source = crate::from_fn(move |_ctx| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, FetchError>(Token::new("would-spend-rt-0")) }
        });
        let shared = Shared::new(
            Arc::new(source),
            store.clone(),
            Duration::from_secs(30),
            Duration::from_secs(2),
            Arc::new(|_event| {}),
            Arc::default(),
        );
        let token = shared
            .fetch(FetchContext::new(FetchReason::Initial))
            .await
            .unwrap();
        assert_eq!(token.expose_secret(), "minted-by-another");
        assert_eq!(fetches.load(Ordering::SeqCst), 0, "nothing minted");
        assert_eq!(
            *store.publishes.lock().unwrap(),
            1,
            "the lease was released"
        );
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ctx(reason: FetchReason, previous: Option<Token>) -> FetchContext {
        FetchContext::for_attempt(reason, previous, 1, at(1_000))
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
}
