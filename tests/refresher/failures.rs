//! Transient and permanent failures, outages, panics and hangs.

use std::time::Duration;

use tokenwarden::{Clock, Error, Event, FetchError, FetchErrorKind, Refresher, TokenState};
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
        // Without jitter, exactly the exponential ceiling: 1 s, 2 s, 4 s, 8 s.
        assert_eq!(retry_in, Some(ceiling), "attempt {attempt}");
        let retry_in = ceiling;
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

/// When the fetches of an outage start, given the waits between them.
fn attempt_times(waits: impl IntoIterator<Item = u64>, within: u64) -> Vec<u64> {
    let mut at = 0;
    let mut times = vec![0];
    for wait in waits {
        at += wait;
        if at >= within {
            break;
        }
        times.push(at);
    }
    times
}

/// Start times (whole seconds, from the source's creation) of the fetches the source saw.
fn fetch_times(source: &Scripted) -> Vec<u64> {
    source.started_at().iter().map(|at| at.as_secs()).collect()
}

#[tokio::test(start_paused = true)]
async fn readers_hammering_a_failed_endpoint_get_exactly_the_capped_backoff() {
    let source = Scripted::new(down());
    let handle = builder(&source).spawn();

    // 100 reads a second for 60 s while the endpoint is down.
    for _ in 0..6000 {
        assert!(matches!(handle.current(), Err(Error::Pending { .. })));
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    // The backoff grows 1 s, 2 s, 4 s, then waiting readers cap it at 5 s: attempts at
    // 0, 1, 3, 7, 12, 17, ... and not one more.
    let expected = attempt_times([1, 2, 4].into_iter().chain(std::iter::repeat(5)), 60);
    assert_eq!(fetch_times(&source), expected);
}

#[tokio::test(start_paused = true)]
async fn without_readers_the_backoff_grows_to_its_cap() {
    let source = Scripted::new(down());
    let _handle = builder(&source).spawn();

    tokio::time::sleep(secs(1200)).await;
    // 1, 2, 4, ... 256 s, then every 300 s.
    let waits = [1, 2, 4, 8, 16, 32, 64, 128, 256]
        .into_iter()
        .chain(std::iter::repeat(300));
    assert_eq!(fetch_times(&source), attempt_times(waits, 1200));
}

#[tokio::test(start_paused = true)]
async fn ready_never_shortcuts_the_backoff_and_the_state_tells_the_next_attempt() {
    let source = Scripted::new(down());
    let clock = tokenwarden::Clock::tokio();
    let handle = builder(&source).clock(clock.clone()).spawn();
    let mut events = handle.subscribe();

    let waiting = tokio::spawn({
        let handle = handle.clone();
        async move { handle.ready().await }
    });
    for _ in 0..6 {
        let mut announced = loop {
            match next_event(&mut events).await {
                Event::RefreshFailed { retry_in, .. } => break retry_in.unwrap(),
                Event::RetryRescheduled { .. } => continue, // the previous wait's
                other => panic!("expected a failure, got {other:?}"),
            }
        };
        settle().await; // the waiting reader reacts to the new state
        while let Ok(event) = events.try_recv() {
            if let Event::RetryRescheduled { retry_in } = event {
                announced = retry_in; // brought forward, and said so
            }
        }
        let next = handle.state().next_attempt().expect("a next attempt");
        let next_in = next.duration_since(clock.now()).unwrap();
        // What was announced last is the true next attempt, capped at 5 s for the reader.
        assert!(
            next_in.abs_diff(announced) <= Duration::from_millis(1),
            "{next_in:?} vs {announced:?}"
        );
        assert!(next_in <= secs(5), "{next_in:?}");
    }
    // Attempts at 0, 1, 3, 7, 12, 17: the schedule with the readers' cap, nothing sooner.
    assert_eq!(fetch_times(&source), [0, 1, 3, 7, 12, 17]);
    assert!(!waiting.is_finished());
    waiting.abort();
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
async fn permanent_failure_is_retried_slowly_and_at_once_on_refresh() {
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
    let Event::RefreshFailed {
        retry_in, attempt, ..
    } = next_event(&mut events).await
    else {
        panic!("expected a failure");
    };
    assert_eq!((retry_in, attempt), (Some(secs(300)), 1));
    assert!(matches!(
        handle.state(),
        TokenState::Failed {
            next_attempt: Some(_),
            ..
        }
    ));

    // An hour of readers: no retry storm, only the slow schedule (5 min, 10 min, 20 min).
    for _ in 0..60 {
        assert!(matches!(handle.current(), Err(Error::Failed(_))));
        tokio::time::advance(secs(60)).await;
    }
    assert_eq!(source.fetches(), 4);

    // The operator fixes the credentials; refresh() tries at once.
    source.set_default(Step::Token(secs(600)));
    let token = handle.refresh().await.unwrap();
    assert_eq!(token.expose_secret(), secret(5));
    assert!(matches!(handle.state(), TokenState::Fresh(_)));
    assert!(handle.current().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_heals_by_itself_on_the_slow_schedule() {
    let source = Scripted::new(Step::Fail(FetchError::permanent("invalid_client")));
    let handle = builder(&source).spawn();
    assert!(matches!(handle.ready().await, Err(Error::Failed(_))));

    // The operator rotates the secret on the server 7 min in; nobody calls refresh().
    tokio::time::sleep(secs(420)).await;
    source.set_default(Step::Token(secs(600)));
    // Tries at 0 s and 300 s failed; the next is 600 s after that, at 900 s.
    tokio::time::sleep(secs(479)).await;
    assert!(handle.current().is_err());
    tokio::time::sleep(secs(2)).await;
    assert_eq!(handle.current().unwrap().expose_secret(), secret(3));
    assert_eq!(fetch_times(&source), [0, 300, 900]);
}

#[tokio::test(start_paused = true)]
async fn permanent_retries_can_be_turned_off() {
    let source = Scripted::new(Step::Fail(FetchError::permanent("invalid_client")));
    let mut policy = exact_policy();
    policy.permanent_backoff = None;
    let handle = builder(&source).policy(policy).spawn();
    let mut events = handle.subscribe();
    assert!(matches!(handle.ready().await, Err(Error::Failed(_))));
    assert!(matches!(
        next_event(&mut events).await,
        Event::RefreshFailed { retry_in: None, .. }
    ));
    tokio::time::sleep(secs(24 * 3600)).await;
    assert_eq!(source.fetches(), 1);
    assert_eq!(handle.state().next_attempt(), None);
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_keeps_serving_a_still_valid_token() {
    let source = Scripted::tokens(secs(600));
    let (handle, mut events) = started(builder(&source)).await;
    source.set_default(Step::Fail(FetchError::permanent("invalid_grant")));

    let Event::RefreshFailed { retry_in, .. } = next_event(&mut events).await else {
        panic!("expected a failure");
    };
    assert_eq!(retry_in, Some(secs(300)), "retried on the slow schedule");
    assert_eq!(handle.current().unwrap().expose_secret(), secret(1));
    assert!(matches!(handle.state(), TokenState::Stale { .. }));

    assert!(matches!(
        next_event(&mut events).await,
        Event::Expired { .. }
    ));
    assert!(matches!(handle.state(), TokenState::Failed { .. }));
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
        "the token source of `test-api` did not answer within 30s (the policy's fetch_timeout)"
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

/// Fetches per minute (index = minute) from the fetch start times.
fn per_minute(source: &Scripted, minutes: usize) -> Vec<usize> {
    let mut counts = vec![0; minutes];
    for at in source.started_at() {
        if let Some(count) = counts.get_mut(at.as_secs() as usize / 60) {
            *count += 1;
        }
    }
    counts
}

/// The README's table of what a failing endpoint sees from a fleet, measured: 100 replicas
/// with the default policy (jitter on), the endpoint down for 10 minutes.
#[tokio::test(start_paused = true)]
async fn fleet_outage_load_stays_within_the_formula() {
    const REPLICAS: usize = 100;
    for readers in [true, false] {
        let source = Scripted::new(down());
        let handles: Vec<_> = (0..REPLICAS)
            .map(|_| {
                builder(&source)
                    .policy(tokenwarden::RefreshPolicy::default())
                    .spawn()
            })
            .collect();
        for _ in 0..6000 {
            if readers {
                for handle in &handles {
                    assert!(handle.current().is_err());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let minutes = per_minute(&source, 10);
        println!(
            "readers waiting: {readers}; fetches per minute, {REPLICAS} replicas: {minutes:?}"
        );
        let first = minutes[0];
        let steady = &minutes[1..];
        if readers {
            // 0, 1, 3, 7 s (as early as 0, 0.8, 2.4, 5.6 s with jitter), then every 4-5 s:
            // 13 to 17 in the first minute, 12 to 15 a minute after.
            assert!((REPLICAS * 13..=REPLICAS * 17).contains(&first), "{first}");
            for &n in steady {
                assert!(
                    (REPLICAS * 12..=REPLICAS * 15 + REPLICAS).contains(&n),
                    "{n}"
                );
            }
        } else {
            // 0, 1, 3, 7, 15, 31 s (each wait up to 20 % shorter: at most 7 fit in a minute).
            assert!((REPLICAS * 6..=REPLICAS * 7).contains(&first), "{first}");
            // Then 64, 128, 256 s and every 4-5 min: never more than 2 a minute per replica.
            for &n in &steady[3..] {
                assert!(n <= REPLICAS * 2, "{n}");
            }
        }
        for handle in handles {
            handle.shutdown();
        }
    }
}

/// What the refresher announced about its next try (`RefreshFailed::retry_in`, then any
/// `RetryRescheduled`), each checked against the state's `next_attempt()` and paired with when
/// the next fetch really started.
async fn announcements_against_real_gaps(with_reader: bool) {
    let source = Scripted::new(down());
    let mut policy = exact_policy();
    policy.backoff.jitter = 0.2; // real jitter: the announcement must carry it too
    let clock = Clock::tokio();
    let handle = Refresher::builder(source.clone())
        .name("test-api")
        .policy(policy)
        .clock(clock.clone())
        .spawn();
    let mut events = handle.subscribe();
    let start = Instant::now();
    let reader = with_reader.then(|| {
        let handle = handle.clone();
        tokio::spawn(async move {
            loop {
                let _ = handle.current();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    // Per failed attempt: when it was announced and the announced time of the next try (from
    // the start; a reschedule replaces it).
    let mut announced: Vec<(u32, Duration, Duration)> = Vec::new();
    let (mut reschedules, until) = (0, start + secs(600));
    loop {
        let Ok(Ok(event)) = tokio::time::timeout_at(until, events.recv()).await else {
            break;
        };
        let now = start.elapsed();
        let wait = match event {
            Event::RefreshFailed {
                attempt,
                retry_in: Some(wait),
                ..
            } => {
                announced.push((attempt, now, now + wait));
                wait
            }
            Event::RetryRescheduled { retry_in } => {
                reschedules += 1;
                let last = announced.last_mut().expect("a failure was announced first");
                assert!(
                    now + retry_in < last.2,
                    "a reschedule moves the try earlier"
                );
                last.2 = now + retry_in;
                retry_in
            }
            _ => continue,
        };
        let by_state = handle
            .state()
            .next_attempt()
            .expect("the state says it too");
        let by_state = by_state.duration_since(clock.now()).unwrap_or_default();
        assert!(
            by_state.abs_diff(wait) <= Duration::from_millis(1),
            "{by_state:?} vs {wait:?}"
        );
    }
    if let Some(reader) = reader {
        reader.abort();
    }
    let starts = source.started_at();
    assert!(announced.len() >= 9, "{} failures", announced.len());
    let mut paired = 0;
    for (attempt, when, at) in &announced {
        let Some(real) = starts.get(*attempt as usize) else {
            continue; // that try falls after the window
        };
        paired += 1;
        let tolerance = Duration::from_millis(100).max((*at - *when) / 10);
        assert!(
            real.abs_diff(*at) <= tolerance,
            "after attempt {attempt}: announced for {at:?}, started at {real:?} (reader: {with_reader})"
        );
    }
    assert!(paired >= 8, "{paired} announcements paired with a fetch");
    // With a reader there from the start, every wait is decided with it in mind: nothing to
    // reschedule after the first failure (whose wait, 1 s, is under the readers' cap anyway).
    if with_reader {
        assert_eq!(reschedules, 0);
    }
}

/// `RefreshFailed::retry_in`, `RetryRescheduled` (when a read brings a try forward) and the
/// state's `next_attempt()` say when the endpoint next sees a request: with a reader every
/// 50 ms, and without readers.
#[tokio::test(start_paused = true)]
async fn every_announced_retry_is_when_the_next_fetch_starts() {
    announcements_against_real_gaps(true).await;
    announcements_against_real_gaps(false).await;
}

/// A reader that arrives during a long wait brings the try forward, and says so: an event with
/// the new time, which the next fetch keeps.
#[tokio::test(start_paused = true)]
async fn a_reader_arriving_late_reschedules_the_retry_and_says_so() {
    let source = Scripted::new(down());
    let handle = builder(&source).spawn();
    let mut events = handle.subscribe();
    // Six failures without readers: the waits grow 1, 2, 4, 8, 16, 32 s.
    let mut failures = Vec::new();
    while failures.len() < 6 {
        if let Event::RefreshFailed {
            retry_in: Some(wait),
            ..
        } = events.recv().await.unwrap()
        {
            failures.push(wait);
        }
    }
    assert_eq!(failures.last(), Some(&secs(32)));
    let read_at = Instant::now();
    assert!(handle.current().is_err());
    let Event::RetryRescheduled { retry_in } = events.recv().await.unwrap() else {
        panic!("the reschedule is announced");
    };
    assert_eq!(retry_in, secs(5), "the readers' cap");
    loop {
        if let Event::RefreshFailed { .. } = events.recv().await.unwrap() {
            break;
        }
    }
    let real = read_at.elapsed();
    assert!(
        real.abs_diff(retry_in) <= Duration::from_millis(100),
        "{real:?} vs {retry_in:?}"
    );
}
