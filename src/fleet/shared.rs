//! [`Shared`]: the source a refresher in a fleet fetches through. The effects of the fleet
//! (store calls, the lease's renewals, timers); what they decide is in `rule.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::rule;
use super::{FleetError, FleetErrorKind, FleetFuture, FleetStore};
use crate::duration_format::Readable;
use crate::{Clock, Event, FetchContext, FetchError, FetchFuture, Token, TokenSource};

/// Where a [`Shared`] source reports what it did (the refresher's event stream).
pub(crate) type Report = Arc<dyn Fn(Event) + Send + Sync>;

/// How often a replica that did not get the lease looks for the holder's token (and tries the
/// lease again, so that a dead holder is replaced as soon as its lease lapses).
const POLL_EVERY: Duration = Duration::from_millis(100);

/// How the fleet is used: fixed at spawn time.
pub(crate) struct Settings {
    /// The longest lease (`RefreshPolicy::fleet_lease`).
    pub(crate) longest_lease: Duration,
    /// Bound on each call to the store.
    pub(crate) store_timeout: Duration,
    /// How long a replica waits for the holder's token before it reports a failure: a little
    /// less than the refresher's own bound on the fetch, so that the message is this one.
    pub(crate) wait_for: Duration,
    /// How soon a failed holder retries while readers wait
    /// (`RefreshPolicy::fleet_retry_while_waiting`): it keeps its lease at least that much
    /// longer, so that the fleet has one prober, not one per lapsed lease.
    pub(crate) prober_retry: Duration,
}

/// A source that fetches through the fleet (see the module docs). Built by
/// [`RefresherBuilder::shared`](crate::RefresherBuilder::shared).
pub(crate) struct Shared {
    source: Arc<dyn TokenSource>,
    store: Arc<dyn FleetStore>,
    /// This replica's lease identity.
    holder: String,
    settings: Settings,
    clock: Clock,
    report: Report,
    /// The store failed its last call (so its recovery is reported once); shared with the
    /// handles (`TokenHandle::fleet_available`).
    unavailable: Arc<AtomicBool>,
}

/// What became of a fetch made under the lease.
enum Minted {
    Fetched(Result<Token, FetchError>),
    /// The lease could not be renewed in time: the fetch was cut.
    Cut(&'static str),
}

impl Shared {
    pub(crate) fn new(
        source: Arc<dyn TokenSource>,
        store: Arc<dyn FleetStore>,
        settings: Settings,
        clock: Clock,
        report: Report,
        unavailable: Arc<AtomicBool>,
    ) -> Shared {
        Shared {
            source,
            store,
            holder: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            settings,
            clock,
            report,
            unavailable,
        }
    }

    /// One call to the store, bounded; reports when the store goes away and comes back.
    async fn bounded<T>(&self, call: FleetFuture<'_, T>) -> Result<T, FleetError> {
        let timeout = self.settings.store_timeout;
        let result = tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(FleetError::with_kind(
                    FleetErrorKind::Timeout,
                    format!(
                        "{} did not answer within {}",
                        self.store.describe(),
                        Readable(timeout)
                    ),
                ))
            });
        match &result {
            Ok(_) if self.unavailable.swap(false, Ordering::Relaxed) => {
                tracing::info!(store = %self.store.describe(), "the fleet store answers again");
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
        let give_up_at = Instant::now() + self.settings.wait_for;
        let shared = match self.bounded(self.store.load()).await {
            Ok(shared) => shared,
            Err(error) => return self.uncoordinated(ctx, error).await,
        };
        if let Some(token) = shared.filter(|t| rule::adoptable(t, &ctx)) {
            return Ok(self.adopted(token, "adopted the fleet's token"));
        }
        let lease = rule::lease_length(
            self.settings.longest_lease,
            ctx.previous(),
            ctx.started_at(),
        );
        // The lease, or the holder's token; a dead holder's lease lapses and is taken here.
        let confirmed = loop {
            let sent = Instant::now();
            match self
                .bounded(self.store.try_lease(&self.holder, lease))
                .await
            {
                Ok(true) => break sent,
                Ok(false) => {}
                Err(error) => return self.uncoordinated(ctx, error).await,
            }
            if Instant::now() + POLL_EVERY >= give_up_at {
                return Err(FetchError::transient(format!(
                    "another replica holds the lease on minting at {} and shared no token \
                     within {}",
                    self.store.describe(),
                    Readable(self.settings.wait_for)
                )));
            }
            tokio::time::sleep(POLL_EVERY).await;
            match self.bounded(self.store.load()).await {
                Ok(Some(token)) if rule::adoptable(&token, &ctx) => {
                    return Ok(self.adopted(token, "adopted the token another replica minted"));
                }
                Ok(_) => {}
                Err(error) => return self.uncoordinated(ctx, error).await,
            }
        };
        // What was loaded before the lease may be stale: another holder may have published and
        // released in between. Minting from it would present a spent refresh token.
        let shared = match self.bounded(self.store.load()).await {
            Ok(shared) => shared,
            Err(error) => return self.uncoordinated(ctx, error).await,
        };
        if let Some(token) = shared.as_ref().filter(|t| rule::adoptable(t, &ctx)) {
            // Publishing the same token back releases the lease at once.
            let _ = self.bounded(self.store.publish(&self.holder, token)).await;
            return Ok(self.adopted(
                token.clone(),
                "adopted the token another replica minted while this one took the lease",
            ));
        }
        let head = rule::chain_head(ctx.previous(), shared.as_ref()).cloned();
        self.mint(ctx, head, lease, confirmed).await
    }

    fn adopted(&self, token: Token, how: &'static str) -> Token {
        debug!("{how}");
        (self.report)(Event::AdoptedFromFleet);
        token
    }

    /// Fetches under the lease from `head` (the newest token of the chain), renewing the lease
    /// meanwhile, then publishes the result.
    async fn mint(
        &self,
        ctx: FetchContext,
        head: Option<Token>,
        lease: Duration,
        confirmed: Instant,
    ) -> Result<Token, FetchError> {
        // Measured from here: time spent on the store is not taken from the token's life.
        let started_at = self.clock.now();
        let ctx = FetchContext::for_attempt(ctx.reason(), head, ctx.attempt(), started_at);
        let minted = tokio::select! {
            biased;
            result = self.source.fetch(ctx) => Minted::Fetched(result),
            why = self.keep_lease(lease, confirmed) => Minted::Cut(why),
        };
        let result = match minted {
            Minted::Fetched(result) => result.map(|token| token.anchored_at(started_at)),
            Minted::Cut(why) => {
                warn!(store = %self.store.describe(), "{why}: the fetch was cut");
                return Err(FetchError::transient(format!(
                    "{why} ({}); the fetch was cut so that no two replicas present one \
                     refresh token",
                    self.store.describe()
                )));
            }
        };
        // After a failure the lease is kept, and held until this replica's next retry while
        // readers wait: it retries on its backoff schedule (renewing it), the others keep
        // waiting, so an outage costs the endpoint one prober, not a fleet.
        if result.is_err() {
            let hold = lease + self.settings.prober_retry;
            let _ = self.bounded(self.store.try_lease(&self.holder, hold)).await;
        }
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
                // This replica's token is now the newest of the chain (`rule::chain_head`):
                // its next mint continues from it.
                Err(error) => warn!(%error, "could not share the new token with the fleet"),
            }
        }
        result.map_err(FetchError::probed_for_fleet)
    }

    /// Renews the lease every third of it for as long as the fetch runs; returns (so that the
    /// fetch is dropped) only when a single-use secret must no longer be presented: the lease
    /// was lost, or could not be renewed before it might lapse. A source that spends nothing
    /// single-use is never cut (its fetch is harmless to repeat); the renewals only keep the
    /// others waiting for it.
    async fn keep_lease(&self, lease: Duration, mut confirmed: Instant) -> &'static str {
        let single_use = self.source.spends_single_use_secret();
        // After a renewal that failed, when to try again.
        let mut again_at = None;
        loop {
            let stop_at = confirmed + rule::safe_for(lease);
            if Instant::now() >= stop_at {
                if single_use {
                    return "the minting lease could not be renewed in time";
                }
                // The lease may lapse; this fetch is harmless to repeat, so it goes on.
                std::future::pending::<()>().await;
            }
            let renew_at = again_at.unwrap_or(confirmed + rule::renew_every(lease));
            tokio::time::sleep_until(renew_at.min(stop_at)).await;
            if Instant::now() >= stop_at {
                continue;
            }
            let sent = Instant::now();
            let bound = stop_at
                .saturating_duration_since(sent)
                .min(self.settings.store_timeout);
            let renewal = self.store.try_lease(&self.holder, lease);
            match tokio::time::timeout(bound, renewal).await {
                Ok(Ok(true)) => {
                    confirmed = sent;
                    again_at = None;
                }
                Ok(Ok(false)) if single_use => return "the minting lease was lost",
                Ok(Ok(false)) => std::future::pending::<()>().await,
                Ok(Err(_)) | Err(_) => again_at = Some(Instant::now() + POLL_EVERY / 2),
            }
        }
    }

    /// The store cannot coordinate this fetch: fetch alone if that spends nothing single-use
    /// (static stability), else serve what there is and wait for the store.
    async fn uncoordinated(
        &self,
        ctx: FetchContext,
        cause: FleetError,
    ) -> Result<Token, FetchError> {
        let kind = cause.kind();
        let single_use = self.source.spends_single_use_secret();
        if rule::may_fetch_without_lease(single_use, kind) {
            if kind == FleetErrorKind::KeyMismatch {
                error!(error = %cause, "this replica's fleet key does not open the fleet's record; fetching a token alone");
            } else {
                warn!(error = %cause, "the fleet store is unavailable; fetching a token alone");
            }
            return self.source.fetch(ctx).await;
        }
        let waiting = match kind {
            FleetErrorKind::KeyMismatch => {
                error!(error = %cause, "this replica's fleet key does not open the fleet's record; not spending the single-use refresh token");
                "this replica's fleet key does not open the fleet's record (configure the \
                 fleet's key)"
            }
            _ => {
                warn!(error = %cause, "the fleet store is unavailable; not spending the single-use refresh token without the fleet's lease");
                "waiting for the fleet store to answer"
            }
        };
        Err(FetchError::transient(format!(
            "{waiting}: {cause}. This credential's refresh token is single-use: spending it \
             without the fleet's lease could revoke the grant, so this replica serves its \
             current token while it is valid and tries again on its retry schedule"
        )))
    }
}

impl TokenSource for Shared {
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(self.fetch_through_fleet(ctx))
    }

    fn origin(&self) -> Option<String> {
        self.source.origin()
    }

    fn spends_single_use_secret(&self) -> bool {
        self.source.spends_single_use_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FetchReason;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU32;

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

    fn settings() -> Settings {
        Settings {
            longest_lease: Duration::from_secs(5),
            store_timeout: Duration::from_secs(2),
            wait_for: Duration::from_secs(29),
            prober_retry: Duration::from_secs(1),
        }
    }

    fn shared(source: impl TokenSource, store: Arc<dyn FleetStore>) -> Shared {
        Shared::new(
            Arc::new(source),
            store,
            settings(),
            Clock::system(),
            Arc::new(|_event| {}),
            Arc::default(),
        )
    }

    fn counting(
        fetches: &Arc<AtomicU32>,
    ) -> crate::FnSource<
        impl Fn(FetchContext) -> std::future::Ready<Result<Token, FetchError>> + Send + Sync + 'static,
    > {
        let counted = fetches.clone();
        crate::from_fn(move |_ctx| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, FetchError>(Token::new("would-spend-rt-0")))
        })
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
        let fetches = Arc::new(AtomicU32::new(0));
        let shared = shared(counting(&fetches), store.clone());
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

    /// A store that always fails with `kind`.
    struct Failing(FleetErrorKind);

    impl FleetStore for Failing {
        fn load(&self) -> FleetFuture<'_, Option<Token>> {
            let kind = self.0;
            Box::pin(async move { Err(FleetError::with_kind(kind, "down")) })
        }
        fn try_lease(&self, _holder: &str, _ttl: Duration) -> FleetFuture<'_, bool> {
            let kind = self.0;
            Box::pin(async move { Err(FleetError::with_kind(kind, "down")) })
        }
        fn publish(&self, _holder: &str, _token: &Token) -> FleetFuture<'_, bool> {
            let kind = self.0;
            Box::pin(async move { Err(FleetError::with_kind(kind, "down")) })
        }
    }

    #[tokio::test]
    async fn without_the_store_a_single_use_secret_waits_and_others_fetch_alone() {
        for kind in [FleetErrorKind::Unreachable, FleetErrorKind::KeyMismatch] {
            let fetches = Arc::new(AtomicU32::new(0));
            let spending = shared(counting(&fetches).single_use(), Arc::new(Failing(kind)));
            let error = spending
                .fetch(FetchContext::new(FetchReason::Scheduled))
                .await
                .unwrap_err();
            assert!(error.is_transient());
            assert!(error.message().contains("single-use"), "{error}");
            assert_eq!(fetches.load(Ordering::SeqCst), 0, "{kind}: nothing spent");

            let plain = shared(counting(&fetches), Arc::new(Failing(kind)));
            plain
                .fetch(FetchContext::new(FetchReason::Scheduled))
                .await
                .unwrap();
            assert_eq!(fetches.load(Ordering::SeqCst), 1, "{kind}: fetched alone");
        }
    }

    /// A store that answers every call after `delay`, grants every lease and keeps what is
    /// published.
    struct Slow {
        delay: Duration,
        token: Mutex<Option<Token>>,
    }

    impl FleetStore for Slow {
        fn load(&self) -> FleetFuture<'_, Option<Token>> {
            Box::pin(async {
                tokio::time::sleep(self.delay).await;
                Ok(self.token.lock().unwrap().clone())
            })
        }
        fn try_lease(&self, _holder: &str, _ttl: Duration) -> FleetFuture<'_, bool> {
            Box::pin(async {
                tokio::time::sleep(self.delay).await;
                Ok(true)
            })
        }
        fn publish(&self, _holder: &str, token: &Token) -> FleetFuture<'_, bool> {
            *self.token.lock().unwrap() = Some(token.clone());
            Box::pin(async { Ok(true) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn time_spent_on_the_store_is_not_taken_from_the_tokens_life() {
        let clock = Clock::tokio();
        let store = Slow {
            delay: Duration::from_millis(1_500),
            token: Mutex::default(),
        };
        let source = crate::from_fn(|_ctx| async {
            Ok::<_, FetchError>(Token::new("twenty-seconds").expires_in(Duration::from_secs(20)))
        });
        let spawned_at = clock.now();
        let handle = crate::Refresher::builder(source)
            .clock(clock.clone())
            .shared(store)
            .spawn();
        let token = handle.ready().await.unwrap();
        // A load, the lease and a reload under it: 4.5 s on the store before the mint.
        let life = token.expiry().unwrap().duration_since(spawned_at).unwrap();
        assert_eq!(
            life,
            Duration::from_millis(24_500),
            "20 s from the mint's start"
        );
    }

    /// A store that grants the first lease, then never answers a renewal (frozen).
    struct FreezesAfterTheLease {
        leases: std::sync::atomic::AtomicU32,
    }

    impl FleetStore for FreezesAfterTheLease {
        fn load(&self) -> FleetFuture<'_, Option<Token>> {
            Box::pin(async { Ok(None) })
        }
        fn try_lease(&self, _holder: &str, _ttl: Duration) -> FleetFuture<'_, bool> {
            let first = self.leases.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                if !first {
                    std::future::pending::<()>().await;
                }
                Ok(true)
            })
        }
        fn publish(&self, _holder: &str, _token: &Token) -> FleetFuture<'_, bool> {
            Box::pin(async { Ok(true) })
        }
    }

    /// A holder presenting a single-use secret whose renewals go unanswered stops before its
    /// lease could lapse (four fifths of it), so no other replica can hold the lease while it
    /// still presents the refresh token; a source that spends nothing is not cut.
    #[tokio::test(start_paused = true)]
    async fn a_single_use_fetch_is_cut_before_its_lease_can_lapse() {
        let slow = || {
            crate::from_fn(|_ctx| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, FetchError>(Token::new("late"))
            })
        };
        let store = || {
            Arc::new(FreezesAfterTheLease {
                leases: std::sync::atomic::AtomicU32::new(0),
            })
        };
        let started = Instant::now();
        let error = shared(slow().single_use(), store())
            .fetch(FetchContext::new(FetchReason::Initial))
            .await
            .unwrap_err();
        assert!(error.message().contains("the fetch was cut"), "{error}");
        assert!(error.is_transient());
        // The first fetch's lease is the longest (5 s): cut at 4 s, before it lapses.
        assert_eq!(started.elapsed(), Duration::from_secs(4));

        let started = Instant::now();
        let token = shared(slow(), store())
            .fetch(FetchContext::new(FetchReason::Initial))
            .await
            .unwrap();
        assert_eq!(token.expose_secret(), "late");
        assert_eq!(started.elapsed(), Duration::from_secs(60), "not cut");
    }
}
