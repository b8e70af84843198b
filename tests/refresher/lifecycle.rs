//! Starting, reading, shutting down, and dropping.

use std::time::SystemTime;

use tokenwarden::{Clock, Error, Event, FetchReason, Token, TokenState};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn first_fetch_publishes_a_fresh_token() {
    let source = Scripted::tokens(secs(600));
    let handle = builder(&source).spawn();

    assert!(matches!(
        handle.current(),
        Err(Error::Pending { last_error: None })
    ));
    let token = handle.ready().await.unwrap();

    assert_eq!(token.expose_secret(), secret(1));
    assert_eq!(handle.current().unwrap().expose_secret(), secret(1));
    assert!(matches!(handle.state(), TokenState::Fresh(_)));
    assert_eq!(source.fetches(), 1);
    let ctx = &source.contexts()[0];
    assert_eq!(ctx.reason(), FetchReason::Initial);
    assert_eq!(ctx.attempt(), 1);
    assert!(ctx.previous().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_valid_initial_token_costs_no_fetch_and_is_refreshed_on_schedule() {
    let source = Scripted::tokens(secs(600));
    let clock = Clock::tokio();
    let stored = Token::new("stored-token").expires_at(clock.now() + secs(1000));
    let start = Instant::now();
    let handle = builder(&source).clock(clock).initial_token(stored).spawn();
    let mut events = handle.subscribe();

    assert_eq!(
        handle.ready().await.unwrap().expose_secret(),
        "stored-token"
    );
    settle().await;
    assert_eq!(source.fetches(), 0);

    // Lifetime is measured from when the refresher received it: 80 % of 1000 s.
    let token = next_rotation(&mut events).await;
    assert_near(start.elapsed(), secs(800));
    assert_eq!(token.expose_secret(), secret(1));
    assert_eq!(source.contexts()[0].reason(), FetchReason::Scheduled);
}

#[tokio::test(start_paused = true)]
async fn an_expired_initial_token_is_fetched_over_and_passed_as_previous() {
    let source = Scripted::tokens(secs(600));
    let stored = Token::new("stale").expires_at(SystemTime::UNIX_EPOCH);
    let handle = builder(&source).initial_token(stored).spawn();

    assert_eq!(handle.ready().await.unwrap().expose_secret(), secret(1));
    let ctx = &source.contexts()[0];
    assert_eq!(ctx.reason(), FetchReason::Initial);
    assert_eq!(ctx.previous().unwrap().expose_secret(), "stale");
}

#[tokio::test(start_paused = true)]
async fn shutdown_in_the_middle_of_a_fetch_stops_promptly() {
    let source = Scripted::tokens(secs(600));
    source.set_latency(secs(3600)); // the fetch would take an hour
    let handle = builder(&source).spawn();
    let mut events = handle.subscribe();
    let waiter = tokio::spawn({
        let handle = handle.clone();
        async move { handle.refresh().await }
    });
    settle().await;
    assert_eq!(source.fetches(), 1, "the fetch is under way");

    let start = Instant::now();
    handle.shutdown();
    handle.stopped().await;

    assert_eq!(start.elapsed(), secs(0), "no waiting for the fetch");
    assert!(matches!(handle.state(), TokenState::Stopped));
    assert!(matches!(handle.current(), Err(Error::Stopped)));
    assert!(matches!(handle.refresh().await, Err(Error::Stopped)));
    assert!(matches!(waiter.await.unwrap(), Err(Error::Stopped)));
    assert!(matches!(next_event(&mut events).await, Event::Stopped));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_parent_token_stops_the_refresher() {
    let source = Scripted::tokens(secs(600));
    let shutdown = CancellationToken::new();
    let handle = builder(&source)
        .cancellation_token(shutdown.clone())
        .spawn();
    handle.ready().await.unwrap();

    shutdown.cancel();
    handle.stopped().await;
    assert!(matches!(handle.current(), Err(Error::Stopped)));
    assert!(matches!(handle.ready().await, Err(Error::Stopped)));
}

#[tokio::test(start_paused = true)]
async fn handle_shutdown_leaves_the_parent_and_siblings_running() {
    let parent = CancellationToken::new();
    let a = builder(&Scripted::tokens(secs(600)))
        .cancellation_token(parent.clone())
        .spawn();
    let b = builder(&Scripted::tokens(secs(600)))
        .cancellation_token(parent.clone())
        .spawn();
    a.ready().await.unwrap();
    b.ready().await.unwrap();

    a.shutdown();
    a.stopped().await;
    assert!(!parent.is_cancelled());
    assert!(b.current().is_ok());
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_ends_the_task() {
    let source = Scripted::tokens(secs(600));
    let handle = builder(&source).spawn();
    handle.ready().await.unwrap();
    let clone = handle.clone();
    let mut watch = handle.watch();
    assert!(source.strong_count() > 1, "the actor holds the source");

    drop(handle);
    settle().await;
    assert!(
        !matches!(*watch.borrow(), TokenState::Stopped),
        "a clone still lives"
    );

    drop(clone);
    watch
        .wait_for(|state| matches!(state, TokenState::Stopped))
        .await
        .unwrap();
    settle().await;
    assert_eq!(
        source.strong_count(),
        1,
        "the actor and its source are gone"
    );
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0,
        "no task is left behind"
    );
}

#[tokio::test(start_paused = true)]
async fn handles_are_cheap_send_sync_clones() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<tokenwarden::TokenHandle>();
    let handle = builder(&Scripted::tokens(secs(600))).spawn();
    handle.ready().await.unwrap();
    // A read from plain sync code on another thread.
    let reader = handle.clone();
    let secret = std::thread::spawn(move || reader.current().unwrap().expose_secret().to_owned())
        .join()
        .unwrap();
    assert_eq!(secret, crate::support::secret(1));
    assert_eq!(handle.name(), "test-api");
}

#[tokio::test(start_paused = true)]
async fn ready_is_pending_until_the_first_token_arrives() {
    use tokio_test::{assert_pending, assert_ready_ok, task};

    let source = Scripted::tokens(secs(600));
    source.set_latency(secs(2));
    let handle = builder(&source).spawn();
    let mut ready = task::spawn(handle.ready());

    assert_pending!(ready.poll());
    tokio::time::sleep(secs(1)).await;
    assert_pending!(ready.poll());
    tokio::time::sleep(secs(1)).await;
    settle().await; // the fetch ends at this very instant: let the actor publish
    assert!(ready.is_woken(), "publishing the token wakes the waiter");
    let token = assert_ready_ok!(ready.poll());
    assert_eq!(token.expose_secret(), secret(1));
}

#[tokio::test(start_paused = true)]
async fn a_shared_dyn_source_works_like_any_other() {
    let source: std::sync::Arc<dyn tokenwarden::TokenSource> =
        std::sync::Arc::new(Scripted::tokens(secs(600)));
    let a = tokenwarden::Refresher::builder(source.clone()).spawn();
    let b = tokenwarden::Refresher::builder(source).spawn();
    assert_eq!(a.ready().await.unwrap().expose_secret(), secret(1));
    assert_eq!(b.ready().await.unwrap().expose_secret(), secret(2));
}
