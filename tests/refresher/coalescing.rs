//! Many callers, one fetch.

use std::time::Duration;

use futures_util::future::join_all;
use tokenwarden::{FetchReason, TokenHandle};
use tokio::time::Instant;

use crate::support::*;

async fn ready_with_latency(latency: Duration) -> (Scripted, TokenHandle) {
    let source = Scripted::tokens(secs(600));
    source.set_latency(latency);
    let handle = builder(&source).spawn();
    handle.ready().await.unwrap();
    (source, handle)
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_rejects_of_the_same_token_cause_one_fetch() {
    let (source, handle) = ready_with_latency(Duration::from_millis(500)).await;
    tokio::time::advance(secs(5)).await;
    let rejected = handle.current().unwrap();

    let calls = (0..100).map(|_| {
        let handle = handle.clone();
        let rejected = rejected.clone();
        tokio::spawn(async move { handle.reject(&rejected).await })
    });
    let results = join_all(calls).await;

    for result in results {
        assert_eq!(result.unwrap().unwrap().expose_secret(), secret(2));
    }
    assert_eq!(
        source.fetches(),
        2,
        "the initial fetch and one for all rejects"
    );
    assert_eq!(source.contexts()[1].reason(), FetchReason::Rejected);
}

#[tokio::test(start_paused = true)]
async fn concurrent_refreshes_and_rejects_share_one_fetch() {
    let (source, handle) = ready_with_latency(Duration::from_millis(500)).await;
    tokio::time::advance(secs(5)).await;
    let rejected = handle.current().unwrap();

    let refreshes = (0..20).map(|_| {
        let handle = handle.clone();
        tokio::spawn(async move { handle.refresh().await })
    });
    let rejects = (0..20).map(|_| {
        let handle = handle.clone();
        let rejected = rejected.clone();
        tokio::spawn(async move { handle.reject(&rejected).await })
    });
    let results = join_all(refreshes.chain(rejects)).await;

    for result in results {
        assert_eq!(result.unwrap().unwrap().expose_secret(), secret(2));
    }
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_during_a_scheduled_fetch_joins_it() {
    let (source, handle) = ready_with_latency(secs(10)).await;
    // The first token was issued when its fetch started (0 s) and arrived at 10 s; its
    // scheduled refresh starts at 480 s and takes until 490 s. (A paused-time sleep lets
    // each timer fire at its own time; `advance` would jump past it.)
    tokio::time::sleep(secs(475)).await;
    settle().await;
    assert_eq!(source.fetches(), 2, "the scheduled fetch is under way");

    let start = Instant::now();
    let token = handle.refresh().await.unwrap();
    assert_eq!(token.expose_secret(), secret(2));
    assert_near(start.elapsed(), secs(5));
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn rejecting_a_token_that_already_rotated_returns_the_new_one_without_a_fetch() {
    let (source, handle) = ready_with_latency(Duration::ZERO).await;
    let old = handle.current().unwrap();
    tokio::time::advance(secs(5)).await;
    handle.refresh().await.unwrap();
    assert_eq!(source.fetches(), 2);

    let token = handle.reject(&old).await.unwrap();
    assert_eq!(token.expose_secret(), secret(2));
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn back_to_back_refreshes_keep_the_minimum_interval() {
    let (source, handle) = ready_with_latency(Duration::ZERO).await;
    let start = Instant::now();
    handle.refresh().await.unwrap();
    assert_near(start.elapsed(), secs(1));
    handle.refresh().await.unwrap();
    assert_near(start.elapsed(), secs(2));
    assert_eq!(source.fetches(), 3);
}
