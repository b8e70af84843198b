//! The fleet under faults, on a real `redis-server` and a real authorization server
//! (oidc-provider) that rotates the refresh token at every use and revokes the whole grant when
//! a spent one is presented again. One test per fault that once turned a passing trouble into a
//! revoked grant or a fleet without a token:
//!
//! | fault | test |
//! |---|---|
//! | Redis killed for 12 s, 5 replicas on a rotating grant | `a_store_outage_never_spends_the_refresh_token_twice` |
//! | a replica deployed with another key | `a_replica_with_another_key_never_mints_over_the_fleet` |
//! | the whole fleet stopped for longer than a token's life | `a_fleet_stopped_longer_than_a_token_continues_its_chain` |
//! | the lease holder killed mid-fetch | `a_holder_killed_mid_fetch_is_replaced_before_the_others_run_dry` |
//! | a slow token endpoint | `a_slow_fetch_keeps_its_lease_and_is_not_repeated` |
//! | the same token answered again | `tests/refresher/expiry.rs` (`the_same_token_*`, paused time) |
//!
//! Every test ends by checking that the grant is alive (one more rotation through the fleet
//! succeeds) and that no replica ever saw a permanent failure (`invalid_grant`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenwarden::fleet::{FleetErrorKind, RedisFleet};
use tokenwarden::sources::RefreshTokenGrant;
use tokenwarden::{
    Event, FetchContext, FetchError, FetchFuture, Refresher, TokenHandle, TokenSource, TokenState,
};

use crate::oidc::{AuthServer, SECRET};
use crate::redis_servers::RedisServer;

/// Access tokens live 10 s (as in the report that found these faults).
const TOKEN_SECONDS: u64 = 10;

/// The grant's source, counting its calls (each one spends the refresh token it presents).
struct Counted {
    grant: RefreshTokenGrant,
    calls: Arc<AtomicU32>,
}

impl TokenSource for Counted {
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.grant.fetch(ctx)
    }

    fn spends_single_use_secret(&self) -> bool {
        self.grant.spends_single_use_secret()
    }
}

fn grant(server: &AuthServer, calls: &Arc<AtomicU32>) -> Counted {
    Counted {
        grant: RefreshTokenGrant::builder(&server.token_endpoint, server.refresh_token.as_str())
            .client_id("rt-client")
            .client_secret(SECRET)
            .build()
            .unwrap(),
        calls: calls.clone(),
    }
}

/// Replicas of one credential, with what they went through.
pub(crate) struct Fleet {
    pub(crate) replicas: Vec<TokenHandle>,
    /// Every permanent failure any replica reported (`invalid_grant` among them).
    permanent: Arc<Mutex<Vec<String>>>,
    /// Every fleet error kind any replica reported.
    fleet_errors: Arc<Mutex<Vec<FleetErrorKind>>>,
    /// Reads (every 20 ms per replica, once it had a first token) that found no token.
    misses: Arc<AtomicU32>,
    reads: Arc<AtomicU32>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// The access token the last rotation gave.
    latest: Mutex<Option<String>>,
}

impl Fleet {
    pub(crate) fn new() -> Fleet {
        Fleet {
            replicas: Vec::new(),
            permanent: Arc::default(),
            fleet_errors: Arc::default(),
            misses: Arc::default(),
            reads: Arc::default(),
            readers: Vec::new(),
            latest: Mutex::default(),
        }
    }

    /// A fleet of replicas of the rotating grant, one per store, each with its first token.
    pub(crate) async fn of_grant(
        server: &AuthServer,
        calls: &Arc<AtomicU32>,
        stores: impl IntoIterator<Item = RedisFleet>,
    ) -> Fleet {
        let mut fleet = Fleet::new();
        for store in stores {
            fleet.spawn(grant(server, calls), store);
        }
        fleet.all_ready(Duration::from_secs(20)).await;
        fleet
    }

    /// Adds a replica built from `source` on `store`, and watches its events.
    pub(crate) fn spawn(&mut self, source: impl TokenSource, store: RedisFleet) -> TokenHandle {
        let handle = Refresher::builder(source).shared(store).spawn();
        let mut events = handle.subscribe();
        let (permanent, fleet_errors) = (self.permanent.clone(), self.fleet_errors.clone());
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                match event {
                    Event::RefreshFailed { error, .. } if error.is_permanent() => {
                        permanent.lock().unwrap().push(error.to_string());
                    }
                    Event::FleetUnavailable { error } => {
                        fleet_errors.lock().unwrap().push(error.kind());
                    }
                    Event::Stopped => break,
                    _ => {}
                }
            }
        });
        self.replicas.push(handle.clone());
        handle
    }

    /// Waits until every replica has a token (bounded).
    pub(crate) async fn all_ready(&self, within: Duration) {
        for (i, handle) in self.replicas.iter().enumerate() {
            handle
                .ready_within(within)
                .await
                .unwrap_or_else(|e| panic!("replica {i}: {e}"));
        }
    }

    /// From now on, reads every replica every 20 ms and counts those that find no token.
    pub(crate) fn read_continuously(&mut self) {
        for handle in self.replicas.clone() {
            let (misses, reads) = (self.misses.clone(), self.reads.clone());
            self.readers.push(tokio::spawn(async move {
                loop {
                    reads.fetch_add(1, Ordering::Relaxed);
                    if handle.current().is_err() {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
    }

    pub(crate) fn stop_reading(&mut self) -> (u32, u32) {
        for reader in self.readers.drain(..) {
            reader.abort();
        }
        (
            self.misses.load(Ordering::Relaxed),
            self.reads.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn permanent_failures(&self) -> Vec<String> {
        self.permanent.lock().unwrap().clone()
    }

    pub(crate) fn fleet_errors(&self) -> Vec<FleetErrorKind> {
        self.fleet_errors.lock().unwrap().clone()
    }

    /// One forced rotation through `replica` (a new token from the endpoint, not the one the
    /// last rotation gave, which a replica that is behind adopts first), retried (bounded)
    /// while it says it waits.
    pub(crate) async fn rotate(&self, replica: usize, within: Duration) {
        let handle = &self.replicas[replica];
        let until = tokio::time::Instant::now() + within;
        loop {
            match handle.refresh().await {
                Ok(token) => {
                    let secret = Some(token.expose_secret().to_owned());
                    let mut latest = self.latest.lock().unwrap();
                    if *latest != secret {
                        *latest = secret;
                        return;
                    }
                }
                Err(error) if tokio::time::Instant::now() < until => {
                    assert!(
                        self.permanent_failures().is_empty(),
                        "a permanent failure: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    panic!("replica {replica} could not rotate within {within:?}: {error}")
                }
            }
        }
    }

    /// The grant is alive: a rotation through the fleet succeeds, and nobody ever saw a
    /// permanent failure.
    pub(crate) async fn assert_grant_alive(&self) {
        self.rotate(0, Duration::from_secs(20)).await;
        assert_eq!(self.permanent_failures(), Vec::<String>::new());
    }

    pub(crate) fn shutdown(&mut self) {
        self.stop_reading();
        for handle in self.replicas.drain(..) {
            handle.shutdown();
        }
    }
}

fn last_error(state: &TokenState) -> Option<String> {
    match state {
        TokenState::Pending { last_error, .. } | TokenState::Expired { last_error, .. } => {
            last_error.as_ref().map(ToString::to_string)
        }
        TokenState::Stale { last_error, .. } => Some(last_error.to_string()),
        TokenState::Failed { error, .. } => Some(error.to_string()),
        _ => None,
    }
}

/// Redis killed for 12 s under five replicas on a rotating grant (longer than their 10 s
/// tokens). Each replica serves its token to its end, then waits, saying why; none presents
/// the refresh token alone. Redis comes back empty: the fleet continues from the newest
/// refresh token a replica holds, and every replica serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_never_spends_the_refresh_token_twice() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let Some(server) = crate::oidc::start(TOKEN_SECONDS) else {
        return;
    };
    let calls = Arc::new(AtomicU32::new(0));
    let mut fleet = Fleet::of_grant(&server, &calls, (0..5).map(|_| redis.fleet("outage"))).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one mint for the fleet");

    redis.kill();
    let calls_before = calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        calls_before,
        "no replica presented the refresh token without the lease"
    );
    for handle in &fleet.replicas {
        let state = handle.state();
        assert!(state.token().is_none(), "the 10 s tokens have run out");
        let why = last_error(&state).expect("says why it has no token");
        assert!(
            why.contains("waiting for the fleet store") && why.contains("single-use"),
            "{why}"
        );
    }
    assert!(fleet.fleet_errors().contains(&FleetErrorKind::Unreachable));

    redis.restart();
    fleet.all_ready(Duration::from_secs(15)).await;
    for round in 0..3 {
        fleet.rotate(round % 5, Duration::from_secs(10)).await;
    }
    fleet.assert_grant_alive().await;
    fleet.shutdown();
}

/// A replica deployed with another key cannot open the fleet's sealed record: it says so (an
/// event and its state), never mints over the record with its own (spent) refresh token, and
/// the correctly keyed replicas rotate on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_key_never_mints_over_the_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let Some(server) = crate::oidc::start(TOKEN_SECONDS) else {
        return;
    };
    let (key, other) = ([3u8; 32], [4u8; 32]);
    let calls = Arc::new(AtomicU32::new(0));
    let mut fleet = Fleet::of_grant(
        &server,
        &calls,
        (0..2).map(|_| redis.fleet("keyed").with_key(key)),
    )
    .await;
    fleet.rotate(0, Duration::from_secs(10)).await;

    let wrong_calls = Arc::new(AtomicU32::new(0));
    let wrong = fleet.spawn(
        grant(&server, &wrong_calls),
        redis.fleet("keyed").with_key(other),
    );
    assert!(wrong.ready_within(Duration::from_secs(3)).await.is_err());
    assert_eq!(wrong_calls.load(Ordering::SeqCst), 0, "nothing presented");
    let why = last_error(&wrong.state()).expect("its state says why");
    assert!(
        why.contains("fleet key does not open the fleet's record"),
        "{why}"
    );
    assert!(fleet.fleet_errors().contains(&FleetErrorKind::KeyMismatch));

    for round in 0..3 {
        fleet.rotate(round % 2, Duration::from_secs(10)).await;
    }
    assert_eq!(
        wrong_calls.load(Ordering::SeqCst),
        0,
        "still nothing presented"
    );
    fleet.assert_grant_alive().await;
    fleet.shutdown();
}

/// The whole fleet stopped for longer than an access token's life (a deploy, a cluster
/// restart), then started again with the refresh token it was first configured with (spent
/// long ago): the fleet's record kept the newest refresh token, and the chain continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_stopped_longer_than_a_token_continues_its_chain() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let Some(server) = crate::oidc::start(TOKEN_SECONDS) else {
        return;
    };
    let calls = Arc::new(AtomicU32::new(0));
    let mut fleet = Fleet::of_grant(&server, &calls, (0..3).map(|_| redis.fleet("restart"))).await;
    for round in 0..3 {
        fleet.rotate(round % 3, Duration::from_secs(10)).await;
    }
    fleet.shutdown();
    tokio::time::sleep(Duration::from_secs(TOKEN_SECONDS + 2)).await;

    let mut restarted =
        Fleet::of_grant(&server, &calls, (0..3).map(|_| redis.fleet("restart"))).await;
    restarted.assert_grant_alive().await;
    assert_eq!(fleet.permanent_failures(), Vec::<String>::new());
    restarted.shutdown();
}

/// The lease holder dies mid-fetch (its process killed: here its refresher is stopped while
/// its fetch hangs), under the default policy (`fetch_timeout` 30 s). Its lease lapses within
/// a quarter of what the others' tokens have left, and they take over before their own
/// 10 s tokens stop being served: no read ever finds no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_mid_fetch_is_replaced_before_the_others_run_dry() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let Some(server) = crate::oidc::start(TOKEN_SECONDS) else {
        return;
    };
    let calls = Arc::new(AtomicU32::new(0));
    let mut fleet = Fleet::of_grant(&server, &calls, (0..3).map(|_| redis.fleet("holder"))).await;
    fleet.read_continuously();

    for _ in 0..3 {
        // A replica that adopts the fleet's token, then is asked to refresh: it takes the
        // lease and hangs in the fetch, and is killed there.
        let hanging = Arc::new(tokio::sync::Notify::new());
        let source = tokenwarden::from_fn({
            let hanging = hanging.clone();
            move |_ctx| {
                hanging.notify_one();
                std::future::pending::<Result<tokenwarden::Token, FetchError>>()
            }
        })
        .single_use();
        let doomed = Refresher::builder(source)
            .shared(redis.fleet("holder"))
            .spawn();
        doomed.ready_within(Duration::from_secs(5)).await.unwrap();
        // A forced refresh mints only when no newer token is there to adopt first: ask until
        // it takes the lease (bounded).
        let mut holding = false;
        for _ in 0..50 {
            tokio::select! {
                () = hanging.notified() => {
                    holding = true;
                    break;
                }
                _ = doomed.refresh() => {}
            }
        }
        assert!(holding, "the doomed replica took the lease and fetches");
        doomed.shutdown();
        doomed.stopped().await;
        tokio::time::sleep(Duration::from_secs(TOKEN_SECONDS)).await;
    }
    let (misses, reads) = fleet.stop_reading();
    assert_eq!(misses, 0, "{misses} of {reads} reads found no token");
    fleet.assert_grant_alive().await;
    fleet.shutdown();
}

/// A token endpoint slower than a lease: the holder renews its lease while it waits, so the
/// others keep waiting for its token instead of minting their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fetch_keeps_its_lease_and_is_not_repeated() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mints = Arc::new(AtomicU32::new(0));
    let slow = |mints: &Arc<AtomicU32>| {
        let mints = mints.clone();
        tokenwarden::from_fn(move |_ctx| {
            let n = mints.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                // Longer than the longest lease (5 s).
                tokio::time::sleep(Duration::from_secs(7)).await;
                Ok::<_, FetchError>(
                    tokenwarden::Token::new(format!("slow-{n}"))
                        .expires_in(Duration::from_secs(600))
                        .with_refresh_token(format!("rt-{n}")),
                )
            }
        })
        .single_use()
    };
    let mut fleet = Fleet::new();
    for _ in 0..3 {
        fleet.spawn(slow(&mints), redis.fleet("slow"));
    }
    fleet.all_ready(Duration::from_secs(25)).await;
    assert_eq!(mints.load(Ordering::SeqCst), 1, "one mint, renewed lease");
    fleet.shutdown();
}
