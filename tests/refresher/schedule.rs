//! When refreshes happen.

use std::time::Duration;

use tokenwarden::{Clock, Error, Event, FetchReason, Token};
use tokio::time::Instant;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn refreshes_proactively_at_eighty_percent_of_the_lifetime() {
    let source = Scripted::tokens(secs(600));
    let start = Instant::now();
    let (handle, mut events) = started(builder(&source)).await;

    let second = next_rotation(&mut events).await;
    assert_near(start.elapsed(), secs(480));
    assert_eq!(second.expose_secret(), secret(2));
    assert_eq!(handle.current().unwrap().expose_secret(), secret(2));
    assert_eq!(source.contexts()[1].reason(), FetchReason::Scheduled);
    assert_eq!(
        source.contexts()[1].previous().unwrap().expose_secret(),
        secret(1),
        "the source sees the token it replaces"
    );

    next_rotation(&mut events).await;
    assert_near(start.elapsed(), secs(960));
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_refreshes_within_five_percent() {
    let mut times = Vec::new();
    for _ in 0..20 {
        let source = Scripted::tokens(secs(1000));
        // The default policy, jitter and serve margin included: the token is served for
        // 990 s, refreshed at 80 % of that, +/- 5 %.
        let builder = builder(&source).policy(tokenwarden::RefreshPolicy::default());
        let at = first_refresh_after(builder).await;
        assert!(at >= secs(742) && at <= secs(842), "refreshed at {at:?}");
        times.push(at);
    }
    times.sort();
    times.dedup();
    assert!(times.len() > 10, "refresh times are spread: {times:?}");
}

#[tokio::test(start_paused = true)]
async fn short_tokens_keep_a_margin_before_expiry() {
    // 80 % of 120 s is 96 s, but the refresh must come 30 s before expiry.
    let source = Scripted::tokens(secs(120));
    assert_near(first_refresh_after(builder(&source)).await, secs(90));
}

#[tokio::test(start_paused = true)]
async fn already_expiring_tokens_never_cause_a_busy_loop() {
    // The server hands out tokens that live 50 ms.
    let source = Scripted::tokens(Duration::from_millis(50));
    let handle = builder(&source).spawn();
    handle.ready().await.unwrap();

    for _ in 0..1000 {
        tokio::time::advance(Duration::from_millis(10)).await;
        let _ = handle.current(); // readers keep asking
    }
    // 10 s of virtual time at the 1 s minimum interval.
    assert!(
        (10..=12).contains(&source.fetches()),
        "{} fetches in 10 s",
        source.fetches()
    );
}

#[tokio::test(start_paused = true)]
async fn relative_lifetime_is_measured_from_when_the_request_was_sent() {
    let source = Scripted::tokens(secs(60));
    source.set_latency(secs(5));
    let clock = Clock::tokio();
    let sent = clock.now();
    let handle = builder(&source).clock(clock).spawn();

    let token = handle.ready().await.unwrap();
    assert_eq!(token.issued_at(), sent);
    assert_eq!(token.expiry(), Some(sent + secs(60)), "not sent + 65 s");
}

#[tokio::test(start_paused = true)]
async fn server_refresh_hint_brings_the_refresh_forward() {
    let hinted = tokenwarden::from_fn(|_ctx| async {
        Ok::<_, tokenwarden::FetchError>(
            Token::new("hinted")
                .expires_in(Duration::from_secs(3600))
                .with_refresh_in(Duration::from_secs(60)),
        )
    });
    let builder = tokenwarden::Refresher::builder(hinted)
        .policy(exact_policy())
        .clock(Clock::tokio());
    assert_near(first_refresh_after(builder).await, secs(60));
}

#[tokio::test(start_paused = true)]
async fn a_process_that_slept_through_expiry_gets_an_error_and_an_immediate_refresh() {
    let source = Scripted::tokens(secs(600));
    let clock = Clock::tokio();
    let (handle, mut events) = started(builder(&source).clock(clock.clone())).await;
    tokio::time::advance(secs(10)).await;

    // The machine sleeps for 20 minutes: the wall clock jumps, tokio's timers do not.
    clock.skip(secs(1200));
    assert!(
        matches!(handle.current(), Err(Error::Expired { .. })),
        "never a token whose expiry has passed"
    );

    // The read woke the refresher: it notices the expiry and fetches at once.
    let woke = Instant::now();
    assert!(matches!(
        next_event(&mut events).await,
        Event::Expired { .. }
    ));
    let token = next_rotation(&mut events).await;
    assert!(
        woke.elapsed() < Duration::from_millis(5),
        "took {:?}",
        woke.elapsed()
    );
    assert_eq!(token.expose_secret(), secret(2));
    assert_eq!(handle.current().unwrap().expose_secret(), secret(2));
}

#[tokio::test(start_paused = true)]
async fn tokens_without_expiry_use_the_default_lifetime() {
    let source = tokenwarden::from_fn(|_ctx| async {
        Ok::<_, tokenwarden::FetchError>(Token::new("opaque"))
    });
    let builder = tokenwarden::Refresher::builder(source)
        .policy(exact_policy())
        .clock(Clock::tokio());
    assert_near(first_refresh_after(builder).await, secs(2880)); // 80 % of 1 h
}
