//! Many credentials in one registry, on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokenwarden::{Clock, Event, FetchError, Refresher, RefresherBuilder, Registry, Token};

/// Counts across every credential's fetches.
#[derive(Default)]
struct Load {
    running: AtomicUsize,
    most: AtomicUsize,
    fetches: AtomicU64,
    late: AtomicU64,
}

/// A credential whose endpoint takes `latency` and issues tokens living `lifetime`.
fn credential(
    load: &Arc<Load>,
    clock: &Clock,
    lifetime: Duration,
    latency: Duration,
) -> RefresherBuilder {
    let (load, fetch_clock) = (load.clone(), clock.clone());
    let source = tokenwarden::from_fn(move |ctx| {
        let (load, clock) = (load.clone(), fetch_clock.clone());
        async move {
            let running = load.running.fetch_add(1, Ordering::SeqCst) + 1;
            load.most.fetch_max(running, Ordering::SeqCst);
            load.fetches.fetch_add(1, Ordering::SeqCst);
            if ctx.previous().is_some_and(|t| t.is_expired_at(clock.now())) {
                load.late.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(latency).await;
            load.running.fetch_sub(1, Ordering::SeqCst);
            // A new secret each time: the same one fetched again would keep its expiry.
            let n = load.fetches.load(Ordering::SeqCst);
            Ok::<_, FetchError>(Token::new(format!("t{n}")).expires_in(lifetime))
        }
    });
    Refresher::builder(source).clock(clock.clone())
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_credentials_stay_within_the_cap_and_all_rotate_before_expiry() {
    let load = Arc::new(Load::default());
    let clock = Clock::tokio();
    let registry: Registry<u32> = Registry::builder()
        .max_concurrent_fetches(32)
        .event_capacity(200_000)
        .build();
    let mut events = registry.subscribe();
    for key in 0..10_000 {
        registry.insert(
            key,
            credential(
                &load,
                &clock,
                Duration::from_secs(600),
                Duration::from_millis(100),
            ),
        );
    }

    // All 10,000 start at once: 313 rounds of 32 fetches of 100 ms, about 31 s. Then two
    // lifetimes of scheduled refreshes.
    tokio::time::sleep(Duration::from_secs(1300)).await;

    assert_eq!(
        load.most.load(Ordering::SeqCst),
        32,
        "the cap binds and holds"
    );
    let fetches = load.fetches.load(Ordering::SeqCst);
    assert!(
        fetches >= 30_000,
        "every credential rotated at least twice: {fetches}"
    );
    assert_eq!(
        load.late.load(Ordering::SeqCst),
        0,
        "no refresh found its token expired"
    );
    let mut expired = 0;
    while let Ok(keyed) = events.try_recv() {
        if matches!(keyed.event, Event::Expired { .. }) {
            expired += 1;
        }
    }
    assert_eq!(expired, 0);
    for (_, handle) in registry.handles() {
        assert!(handle.current().is_ok());
    }

    registry.shutdown();
    registry.stopped().await;
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn events_are_merged_with_their_keys() {
    let load = Arc::new(Load::default());
    let clock = Clock::tokio();
    let registry: Registry<&'static str> = Registry::new();
    let mut events = registry.subscribe();
    for key in ["acme", "globex"] {
        registry.insert(
            key,
            credential(&load, &clock, Duration::from_secs(600), Duration::ZERO),
        );
    }
    let mut rotated = Vec::new();
    while rotated.len() < 2 {
        let keyed = events.recv().await.unwrap();
        if matches!(keyed.event, Event::Rotated { .. }) {
            rotated.push(keyed.key);
        }
    }
    rotated.sort();
    assert_eq!(rotated, ["acme", "globex"]);
    // Named after the key's `Display` (no quotes), since the builder was not named.
    assert_eq!(registry.get("acme").unwrap().name(), "acme");
}

#[tokio::test(start_paused = true)]
async fn string_keys_are_looked_up_by_str_and_named_without_quotes() {
    let load = Arc::new(Load::default());
    let clock = Clock::tokio();
    let registry: Registry<String> = Registry::new();
    registry.insert(
        "tenant-a".to_string(),
        credential(&load, &clock, Duration::from_secs(600), Duration::ZERO),
    );
    let handle = registry.get("tenant-a").expect("found by &str");
    assert_eq!(handle.name(), "tenant-a");
    assert!(registry.remove("tenant-a").is_some());
    assert!(registry.get("tenant-a").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_builders_own_cancellation_token_still_stops_its_credential() {
    let load = Arc::new(Load::default());
    let clock = Clock::tokio();
    let registry: Registry<u32> = Registry::new();
    let own = tokio_util::sync::CancellationToken::new();
    let first = registry.insert(
        1,
        credential(&load, &clock, Duration::from_secs(600), Duration::ZERO)
            .cancellation_token(own.clone()),
    );
    let second = registry.insert(
        2,
        credential(&load, &clock, Duration::from_secs(600), Duration::ZERO),
    );
    first.ready().await.unwrap();
    second.ready().await.unwrap();

    // The builder's token stops its own credential and no other...
    own.cancel();
    tokio::time::timeout(Duration::from_secs(1), first.stopped())
        .await
        .expect("the builder's token stopped the credential");
    assert!(matches!(first.current(), Err(tokenwarden::Error::Stopped)));
    assert!(second.current().is_ok());

    // ...and the registry's shutdown still stops a credential that has its own token.
    let own = tokio_util::sync::CancellationToken::new();
    let third = registry.insert(
        3,
        credential(&load, &clock, Duration::from_secs(600), Duration::ZERO)
            .cancellation_token(own.clone()),
    );
    third.ready().await.unwrap();
    registry.shutdown();
    third.stopped().await;
    second.stopped().await;
    assert!(
        !own.is_cancelled(),
        "the registry never cancels a caller's token"
    );
}

#[tokio::test(start_paused = true)]
async fn removal_and_shutdown_leave_no_running_tasks() {
    let load = Arc::new(Load::default());
    let clock = Clock::tokio();
    let registry: Registry<u32> = Registry::new();
    for key in 0..100 {
        registry.insert(
            key,
            credential(&load, &clock, Duration::from_secs(600), Duration::ZERO),
        );
    }
    for (_, handle) in registry.handles() {
        handle.ready().await.unwrap();
    }

    for key in 0..10 {
        let removed = registry.remove(&key).unwrap();
        removed.stopped().await;
        assert!(registry.get(&key).is_none());
    }
    assert_eq!(registry.len(), 90);

    // Replacing a key stops the credential it replaces.
    let old = registry.get(&50).unwrap();
    registry.insert(
        50,
        credential(&load, &clock, Duration::from_secs(600), Duration::ZERO),
    );
    old.stopped().await;
    assert_eq!(registry.len(), 90);

    registry.shutdown();
    registry.stopped().await;
    assert!(registry.is_empty());
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_parent_token_shuts_the_registry_down() {
    let parent = tokio_util::sync::CancellationToken::new();
    let load = Arc::new(Load::default());
    let clock = Clock::tokio();
    let registry: Registry<u32> = Registry::builder()
        .cancellation_token(parent.clone())
        .build();
    let handle = registry.insert(
        1,
        credential(&load, &clock, Duration::from_secs(600), Duration::ZERO),
    );
    handle.ready().await.unwrap();
    parent.cancel();
    registry.stopped().await;
    assert!(matches!(handle.current(), Err(tokenwarden::Error::Stopped)));
}
