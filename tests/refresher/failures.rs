//! Transient and permanent failures, outages, panics and hangs.

use std::time::Duration;

use tokenwarden::{Error, Event, FetchError, FetchErrorKind, TokenState};
use tokio::time::Instant;

use crate::support::*;

fn down() -> Step {
    Step::Fail(FetchError::transient(
        "https://auth.test/token answered 503",
    ))
}

#[tokio::test(start_paused = true)]
async fn transient_failures_back_off_while_the_old_token_is_served() {
    let source = Scripted::tokens(secs(600));
    let start = Instant::now();
    let (handle, mut events) = started(builder(&source)).await;
    source.set_default(down());

    // Failures from the scheduled refresh at 480 s on; the token expires at 600 s.
    let mut last = secs(480);
    let mut ceiling = secs(1);
    for attempt in 1..=4 {
        let Event::RefreshFailed {
            error,
            attempt: n,
            retry_in,
        } = next_event(&mut events).await
        else {
            panic!("expected a failure");
        };
        let at = start.elapsed();
        assert_near(at, last);
        assert_eq!(n, attempt);
        assert_eq!(error.kind(), FetchErrorKind::Transient);
        let retry_in = retry_in.expect("transient failures are retried");
        // Full jitter under an exponential ceiling, floored at the minimum interval.
        assert!(
            retry_in >= secs(1) && retry_in <= ceiling.max(secs(1)),
            "{retry_in:?}"
        );
        // The old token is still served, marked stale.
        assert_eq!(handle.current().unwrap().expose_secret(), secret(1));
        assert!(matches!(handle.state(), TokenState::Stale { .. }));
        last = at + retry_in;
        ceiling *= 2;
    }
}

#[tokio::test(start_paused = true)]
async fn retries_are_kept_before_expiry_when_backoff_has_grown() {
    let source = Scripted::tokens(secs(600));
    let start = Instant::now();
    let (_handle, mut events) = started(builder(&source)).await;
    source.set_default(down());

    // However long the backoff grows, tries keep coming before the 600 s expiry.
    let mut tries_before_expiry = 0;
    loop {
        match next_event(&mut events).await {
            Event::RefreshFailed { .. } => tries_before_expiry += 1,
            Event::Expired { last_error } => {
                assert!(last_error.is_some());
                assert_near(start.elapsed(), secs(600));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(tries_before_expiry >= 4, "only {tries_before_expiry} tries");
}

#[tokio::test(start_paused = true)]
async fn after_an_outage_expires_the_token_a_read_recovers_within_a_second() {
    let source = Scripted::tokens(secs(600));
    let (handle, mut events) = started(builder(&source)).await;
    source.set_default(down());

    // Outage: the token expires.
    while !matches!(next_event(&mut events).await, Event::Expired { .. }) {}
    let err = handle.current().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Expired {
                last_error: Some(_)
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("answered 503"), "{err}");

    // Let the backoff grow long: minutes between tries.
    tokio::time::advance(secs(1800)).await;
    while events.try_recv().is_ok() {}

    // The endpoint comes back. Without readers the next try could be minutes away; a read
    // wakes the refresher, and the token arrives within the minimum interval.
    source.set_default(Step::Token(secs(600)));
    let back = Instant::now();
    assert!(handle.current().is_err());
    let mut order = Vec::new();
    loop {
        match next_event(&mut events).await {
            Event::Recovered { failed_attempts } => {
                assert!(failed_attempts > 5);
                order.push("recovered");
            }
            Event::Rotated { .. } => {
                order.push("rotated");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(order, ["recovered", "rotated"]);
    assert!(
        back.elapsed() <= secs(1),
        "recovered after {:?}",
        back.elapsed()
    );
    assert!(handle.current().is_ok());
    assert!(matches!(handle.state(), TokenState::Fresh(_)));
}

#[tokio::test(start_paused = true)]
async fn readers_hammering_a_failed_endpoint_cause_about_one_fetch_a_second() {
    let source = Scripted::new(down());
    let handle = builder(&source).spawn();

    // 100 readers a second for 30 s while the endpoint is down.
    for _ in 0..3000 {
        assert!(matches!(handle.current(), Err(Error::Pending { .. })));
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let fetches = source.fetches();
    assert!((25..=31).contains(&fetches), "{fetches} fetches in 30 s");
}

#[tokio::test(start_paused = true)]
async fn ready_waits_through_transient_failures() {
    let source = Scripted::tokens(secs(600));
    source.then([down(), down(), down()]);
    let handle = builder(&source).spawn();

    let token = handle.ready().await.unwrap();
    assert_eq!(token.expose_secret(), secret(4));
    let attempts: Vec<u32> = source.contexts().iter().map(|c| c.attempt()).collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_stops_retrying_until_re_armed() {
    let source = Scripted::new(Step::Fail(FetchError::permanent(
        "https://auth.test/token: invalid_client",
    )));
    let handle = builder(&source).spawn();
    let mut events = handle.subscribe();

    let err = handle.ready().await.unwrap_err();
    assert!(
        matches!(&err, Error::Failed(e) if e.is_permanent()),
        "{err:?}"
    );
    assert!(matches!(
        next_event(&mut events).await,
        Event::RefreshFailed {
            retry_in: None,
            attempt: 1,
            ..
        }
    ));

    // An hour of readers: no retry storm, no retry at all.
    for _ in 0..60 {
        assert!(matches!(handle.current(), Err(Error::Failed(_))));
        tokio::time::advance(secs(60)).await;
    }
    assert_eq!(source.fetches(), 1);

    // The operator fixes the credentials; refresh() re-arms.
    source.set_default(Step::Token(secs(600)));
    let token = handle.refresh().await.unwrap();
    assert_eq!(token.expose_secret(), secret(2));
    assert!(matches!(handle.state(), TokenState::Fresh(_)));
    assert!(handle.current().is_ok());
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_keeps_serving_a_still_valid_token() {
    let source = Scripted::tokens(secs(600));
    let (handle, mut events) = started(builder(&source)).await;
    source.set_default(Step::Fail(FetchError::permanent("invalid_grant")));

    assert!(matches!(
        next_event(&mut events).await,
        Event::RefreshFailed { retry_in: None, .. }
    ));
    assert_eq!(handle.current().unwrap().expose_secret(), secret(1));
    assert!(matches!(handle.state(), TokenState::Stale { .. }));

    assert!(matches!(
        next_event(&mut events).await,
        Event::Expired { .. }
    ));
    assert!(matches!(handle.state(), TokenState::Failed(_)));
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_source_is_a_transient_failure() {
    let source = Scripted::tokens(secs(600));
    source.then([Step::Panic]);
    let handle = builder(&source).spawn();
    let mut events = handle.subscribe();

    let Event::RefreshFailed {
        error, retry_in, ..
    } = next_event(&mut events).await
    else {
        panic!("expected a failure");
    };
    assert!(error.is_transient());
    assert!(retry_in.is_some());
    assert_eq!(error.to_string(), "the token source of `test-api` panicked");

    assert_eq!(handle.ready().await.unwrap().expose_secret(), secret(2));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_source_times_out() {
    let source = Scripted::tokens(secs(600));
    source.set_latency(secs(3600));
    let start = Instant::now();
    let handle = builder(&source).spawn();
    let mut events = handle.subscribe();

    let Event::RefreshFailed { error, .. } = next_event(&mut events).await else {
        panic!("expected a failure");
    };
    assert_near(start.elapsed(), secs(30));
    assert!(error.is_transient());
    assert_eq!(
        error.to_string(),
        "fetching a token for `test-api` timed out after 30s"
    );
    assert!(matches!(
        handle.current(),
        Err(Error::Pending {
            last_error: Some(_)
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn the_server_retry_after_is_honoured() {
    let source = Scripted::tokens(secs(600));
    source.then([Step::Fail(
        FetchError::transient("429").with_retry_after(secs(40)),
    )]);
    let start = Instant::now();
    let handle = builder(&source).spawn();

    handle.ready().await.unwrap();
    assert_near(start.elapsed(), secs(40));
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn unusable_tokens_are_failures_not_published() {
    let empty = tokenwarden::from_fn(|_ctx| async {
        Ok::<_, FetchError>(tokenwarden::Token::new("").expires_in(Duration::from_secs(60)))
    });
    let handle = tokenwarden::Refresher::builder(empty)
        .name("empty-api")
        .clock(tokenwarden::Clock::tokio())
        .spawn();
    let mut events = handle.subscribe();
    let Event::RefreshFailed { error, .. } = next_event(&mut events).await else {
        panic!("expected a failure");
    };
    assert_eq!(
        error.to_string(),
        "the token source of `empty-api` returned an unusable token: the token is empty"
    );
    assert!(matches!(handle.current(), Err(Error::Pending { .. })));
}
