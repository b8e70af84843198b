//! No token is served past the issuer's own expiry, or within the serve margin before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokenwarden::{Clock, Error, Event, FetchError, RefreshPolicy, Refresher, Token, TokenHandle};

use crate::support::*;

/// An unsigned JWT with these claims (the refresher never verifies signatures).
fn jwt(claims: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.sig")
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Reads `handle` every 10 ms for `window`; for each token read, asserts it still had at least
/// `margin` before `deadline(token)`. Returns how many reads got a token.
async fn read_for(
    handle: &TokenHandle,
    clock: &Clock,
    window: Duration,
    margin: Duration,
    deadline: impl Fn(&Token) -> SystemTime,
) -> u32 {
    let mut served = 0;
    let steps = window.as_millis() / 10;
    for _ in 0..steps {
        if let Ok(token) = handle.current() {
            let now = clock.now();
            let left = deadline(&token).duration_since(now).unwrap_or_default();
            assert!(
                left >= margin,
                "served with {left:?} left before the issuer's expiry"
            );
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    served
}

/// Like a conformant authorization server: `exp` is computed from the whole second it issues
/// the token in, `expires_in` is the same 5 s. Then the endpoint goes down.
#[tokio::test(start_paused = true)]
async fn a_jwt_is_never_served_past_its_exp_however_expires_in_is_anchored() {
    let clock = Clock::tokio();
    // Start 0.9 s into a second, so the truncation costs the most.
    let into_second = clock
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::advance(Duration::from_millis(u64::from(
        (1900 - into_second) % 1000,
    )))
    .await;

    let fetches = Arc::new(AtomicU32::new(0));
    let source = tokenwarden::from_fn({
        let (clock, fetches) = (clock.clone(), fetches.clone());
        move |_ctx| {
            let (clock, fetches) = (clock.clone(), fetches.clone());
            async move {
                let n = fetches.fetch_add(1, Ordering::SeqCst);
                if n > 0 {
                    return Err(FetchError::transient(
                        "https://auth.test/token answered 503",
                    ));
                }
                let exp = unix_secs(clock.now()) + 5;
                let token = jwt(serde_json::json!({"sub": "svc", "exp": exp}));
                Ok(Token::new(token).expires_in(Duration::from_secs(5)))
            }
        }
    });
    let handle = Refresher::builder(source)
        .clock(clock.clone())
        .name("jwt-api")
        .spawn();
    let token = handle.ready().await.unwrap();
    let exp = UNIX_EPOCH + Duration::from_secs(token.claims().unwrap()["exp"].as_u64().unwrap());
    assert_eq!(token.expiry(), Some(exp), "the JWT's exp, not expires_in");

    // The token lived 4.1 s by the server's clock; it is served for 3/4 of that at most.
    let served = read_for(
        &handle,
        &clock,
        secs(8),
        Duration::from_millis(1000),
        |_| exp,
    )
    .await;
    assert!(served >= 250, "served {served} reads of 10 ms");
    assert!(matches!(handle.current(), Err(Error::Expired { .. })));
}

/// An issuer that hands out the very same opaque token again with a later expiry (a sliding
/// session) has it served for its new life.
#[tokio::test(start_paused = true)]
async fn the_same_token_with_a_later_expiry_is_served_for_its_new_life() {
    let clock = Clock::tokio();
    let source = tokenwarden::from_fn(|_ctx| async {
        Ok::<_, FetchError>(Token::new("sliding-token").expires_in(secs(60)))
    });
    let handle = Refresher::builder(source)
        .clock(clock.clone())
        .policy(exact_policy())
        .name("sliding-api")
        .spawn();
    let first = handle.ready().await.unwrap();
    let mut expiry = first.expiry().unwrap();
    for _ in 0..5 {
        tokio::time::advance(secs(5)).await;
        let again = handle.refresh().await.unwrap();
        assert_eq!(
            again.expiry(),
            Some(expiry + secs(5)),
            "restated from the later send"
        );
        expiry = again.expiry().unwrap();
    }
    // Served for 10 minutes (refreshed on schedule each time), never past what was stated.
    assert_eq!(read_each_second(&handle, &clock, 600).await, 600);
}

/// The same token answered again, now already expired by its `expires_in`: the refusal names
/// `expires_in`, the field that decided (it used to say `expires_at`, because the repeated
/// secret's expiry was clamped to the first one's).
#[tokio::test(start_paused = true)]
async fn a_repeated_token_refused_names_the_field_that_decided() {
    let answers = Arc::new(AtomicU32::new(0));
    let source = tokenwarden::from_fn({
        let answers = answers.clone();
        move |_ctx| {
            let lifetime = if answers.fetch_add(1, Ordering::SeqCst) == 0 {
                60
            } else {
                0
            };
            async move { Ok::<_, FetchError>(Token::new("same-token").expires_in(secs(lifetime))) }
        }
    });
    let handle = Refresher::builder(source)
        .clock(Clock::tokio())
        .policy(exact_policy())
        .spawn();
    handle.ready().await.unwrap();
    tokio::time::advance(secs(5)).await;
    let error = handle.refresh().await.unwrap_err().to_string();
    assert!(error.contains("already expired by `expires_in`"), "{error}");
}

/// Reads `handle` once a second for `seconds`; asserts that no token read had expired, and
/// returns how many reads got a token.
async fn read_each_second(handle: &TokenHandle, clock: &Clock, seconds: u32) -> u32 {
    let mut served = 0;
    for _ in 0..seconds {
        if let Ok(token) = handle.current() {
            assert!(
                clock.now() < token.expiry().unwrap(),
                "served past its expiry"
            );
            served += 1;
        }
        tokio::time::sleep(secs(1)).await;
    }
    served
}

/// An issuer that hands out one token until shortly before its end (a cloud metadata server's
/// cache: the same token, the same expiry, until 5 minutes are left) is not fetched in a loop:
/// each unchanged answer schedules the next try on what is left of the token (about halfway
/// there once the margin decides), and serving never stops.
#[tokio::test(start_paused = true)]
async fn the_same_token_with_no_later_expiry_is_not_fetched_in_a_loop() {
    let clock = Clock::tokio();
    let fetches = Arc::new(AtomicU32::new(0));
    let source = tokenwarden::from_fn({
        let (clock, fetches) = (clock.clone(), fetches.clone());
        move |_ctx| {
            fetches.fetch_add(1, Ordering::SeqCst);
            // Tokens live an hour from each whole hour; a new one 5 minutes before the end.
            let now = clock.now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
            let hour = (now.as_secs() + 300) / 3600;
            let expires_at = SystemTime::UNIX_EPOCH + secs((hour + 1) * 3600);
            async move {
                Ok::<_, FetchError>(Token::new(format!("metadata-{hour}")).expires_at(expires_at))
            }
        }
    });
    let handle = Refresher::builder(source)
        .clock(clock.clone())
        .policy(exact_policy())
        .name("metadata")
        .spawn();
    handle.ready().await.unwrap();
    let served = read_each_second(&handle, &clock, 3 * 3600).await;
    assert_eq!(served, 3 * 3600, "every read of the 3 hours was served");
    let fetches = fetches.load(Ordering::SeqCst);
    // One at 80 % of each hour (the cache answers the same token), one when a new one is
    // issued: 2 an hour (the first fetch included, 7 at most).
    assert!(fetches <= 7, "{fetches} fetches in 3 hours: no loop");
}

#[tokio::test(start_paused = true)]
async fn reads_stop_a_serve_margin_before_expiry_capped_for_short_tokens() {
    for (lifetime, margin) in [(3600, 10_000), (60, 10_000), (5, 1250)] {
        let source = Scripted::tokens(secs(lifetime));
        let clock = Clock::tokio();
        let handle = builder(&source)
            .policy(RefreshPolicy::default())
            .clock(clock.clone())
            .spawn();
        let token = handle.ready().await.unwrap();
        source.set_default(Step::Fail(FetchError::transient("down")));
        let expiry = token.expiry().unwrap();
        assert_eq!(
            token.usable_until(),
            Some(expiry - Duration::from_millis(margin)),
            "{lifetime} s token"
        );

        // During the outage the token is served until exactly the margin before expiry.
        let until_margin =
            expiry.duration_since(clock.now()).unwrap() - Duration::from_millis(margin);
        tokio::time::sleep(until_margin - Duration::from_millis(1)).await;
        assert!(handle.current().is_ok(), "{lifetime} s token");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            matches!(handle.current(), Err(Error::Expired { .. })),
            "{lifetime} s token"
        );
        handle.shutdown();
    }
}

#[tokio::test(start_paused = true)]
async fn the_refresh_comes_well_before_the_serve_margin() {
    for lifetime in [5, 30, 60, 120, 3600] {
        let source = Scripted::tokens(secs(lifetime));
        let policy = RefreshPolicy::default();
        let handle = builder(&source).policy(policy).spawn();
        let first = handle.ready().await.unwrap();
        let mut events = handle.subscribe();
        let second = next_rotation(&mut events).await;
        let refreshed_at = second.issued_at();
        let usable_until = first.usable_until().unwrap();
        let lead = usable_until.duration_since(refreshed_at).unwrap();
        // The policy's margin (30 s, at most half of the time the token is served), jitter
        // included.
        let served_for = usable_until.duration_since(first.issued_at()).unwrap();
        assert!(
            lead >= (served_for / 2).min(secs(30)),
            "{lifetime} s token refreshed only {lead:?} before it stops being served"
        );
        handle.shutdown();
    }
}

/// A token that states no expiry is assumed to live `default_lifetime`; in an outage it is not
/// served for ever.
#[tokio::test(start_paused = true)]
async fn a_token_without_expiry_is_not_served_past_the_assumed_lifetime() {
    let served = Arc::new(AtomicU32::new(0));
    let source = tokenwarden::from_fn({
        let served = served.clone();
        move |_ctx| {
            let n = served.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Ok(Token::new("opaque-token")),
                    _ => Err(FetchError::transient("down")),
                }
            }
        }
    });
    let handle = Refresher::builder(source).clock(Clock::tokio()).spawn();
    let mut events = handle.subscribe();
    let token = handle.ready().await.unwrap();
    assert_eq!(
        token.expiry(),
        Some(token.issued_at() + secs(3600)),
        "the default lifetime is assumed"
    );
    loop {
        if let Event::Expired { .. } = next_event(&mut events).await {
            break;
        }
    }
    assert!(handle.current().is_err());
}

/// A refresh that returns a token expiring sooner than the current one does not replace it
/// (readers would be turned away early), but its rotated refresh token is kept, and the next
/// refresh comes on the new token's schedule.
#[tokio::test(start_paused = true)]
async fn a_shorter_lived_new_token_does_not_replace_a_longer_lived_one() {
    let fetches = Arc::new(AtomicU32::new(0));
    let previous_refresh = Arc::new(std::sync::Mutex::new(Vec::new()));
    let source = tokenwarden::from_fn({
        let (fetches, previous_refresh) = (fetches.clone(), previous_refresh.clone());
        move |ctx| {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(refresh) = ctx.previous().and_then(Token::refresh_token) {
                use tokenwarden::ExposeSecret;
                previous_refresh
                    .lock()
                    .unwrap()
                    .push(refresh.expose_secret().to_owned());
            }
            async move {
                // The second answer lives 2 s only.
                let lifetime = if n == 2 { secs(2) } else { secs(600) };
                Ok::<_, FetchError>(
                    Token::new(format!("token-{n}"))
                        .expires_in(lifetime)
                        .with_refresh_token(format!("refresh-{n}")),
                )
            }
        }
    });
    let handle = Refresher::builder(source)
        .clock(Clock::tokio())
        .policy(exact_policy())
        .spawn();
    handle.ready().await.unwrap();
    let mut events = handle.subscribe();
    // The scheduled refresh (480 s) gets the 2 s token; token-1 (120 s left) stays.
    next_rotation(&mut events).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    for _ in 0..100 {
        let token = handle.current().expect("never turned away");
        assert_eq!(token.expose_secret(), "token-1");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Next refresh on the 2 s token's schedule, presenting the rotated refresh token.
    let token = next_rotation(&mut events).await;
    assert_eq!(token.expose_secret(), "token-3");
    assert_eq!(
        *previous_refresh.lock().unwrap(),
        ["refresh-1", "refresh-2"]
    );
}
