//! Each fault, for each built-in source: the classification, the message a user sees, what
//! the refresher serves meanwhile, how often it asks, and how fast it shuts down.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokenwarden::{Backoff, Error};

use serde_json::json;
use tokenwarden::sources::{ApiKeyExchange, ClientCredentials, HttpOptions, RefreshTokenGrant};
use tokenwarden::{
    FetchContext, FetchError, FetchReason, RefreshPolicy, Refresher, TokenHandle, TokenSource,
};

use crate::endpoint::{Fault, FaultEndpoint};

const CLIENT_SECRET: &str = "client-secret-Q7";
const REFRESH_TOKEN: &str = "refresh-token-R9";
const API_KEY: &str = "api-key-K3";

/// The per-request bound the suite gives every source: hangs and drips end after it.
const HTTP_TIMEOUT: Duration = Duration::from_millis(400);

#[derive(Clone, Copy, Debug)]
enum Kind {
    ClientCredentials,
    RefreshToken,
    ApiKey,
}

const KINDS: [Kind; 3] = [Kind::ClientCredentials, Kind::RefreshToken, Kind::ApiKey];

fn source(kind: Kind, url: &str) -> Arc<dyn TokenSource> {
    let http = HttpOptions::new()
        .timeout(HTTP_TIMEOUT)
        .max_body_bytes(64 * 1024);
    match kind {
        Kind::ClientCredentials => Arc::new(
            ClientCredentials::builder(url, "client-1", CLIENT_SECRET)
                .http(http)
                .build()
                .unwrap(),
        ),
        Kind::RefreshToken => Arc::new(
            RefreshTokenGrant::builder(url, REFRESH_TOKEN)
                .client_id("client-1")
                .client_secret(CLIENT_SECRET)
                .http(http)
                .build()
                .unwrap(),
        ),
        Kind::ApiKey => Arc::new(
            ApiKeyExchange::builder(url, API_KEY)
                .http(http)
                .build()
                .unwrap(),
        ),
    }
}

async fn fetch_once(kind: Kind, fault: Fault) -> (Result<tokenwarden::Token, FetchError>, String) {
    let endpoint = FaultEndpoint::start(fault).await;
    let result = source(kind, &endpoint.url())
        .fetch(FetchContext::new(FetchReason::Initial))
        .await;
    (result, endpoint.url())
}

fn http_date_in(secs: u64) -> String {
    httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs))
}

/// The faults, each with the class it must be given and words its message must contain.
fn faults() -> Vec<(&'static str, Fault, Expect)> {
    use Expect::*;
    let long_body = format!("{{\"access_token\": \"{}\"}}", "a".repeat(100_000));
    vec![
        ("500", Fault::status(500), Transient(&["500"])),
        ("503", Fault::status(503), Transient(&["503"])),
        (
            "503 Retry-After seconds",
            Fault::answer(503, &[("retry-after", "7")], ""),
            RetryAfter(7),
        ),
        (
            "503 Retry-After date",
            Fault::answer(503, &[("retry-after", &http_date_in(20))], ""),
            RetryAfter(20),
        ),
        (
            "503 Retry-After garbage",
            Fault::answer(503, &[("retry-after", "soon-ish")], ""),
            Transient(&["503"]),
        ),
        (
            "503 Retry-After absurd",
            Fault::answer(503, &[("retry-after", "1000000000")], ""),
            Transient(&["503"]),
        ),
        (
            "429",
            Fault::answer(429, &[("retry-after", "3")], ""),
            RetryAfter(3),
        ),
        ("closed without answer", Fault::Close, Transient(&[])),
        ("reset mid-body", Fault::ResetMidBody, Transient(&[])),
        (
            "drips for ever",
            Fault::Drip,
            Transient(&["no answer within"]),
        ),
        (
            "hangs past the timeout",
            Fault::Hang,
            Transient(&["no answer within"]),
        ),
        (
            "malformed JSON",
            Fault::answer(
                200,
                &[("content-type", "application/json")],
                "{\"access_token\": ",
            ),
            Transient(&["JSON"]),
        ),
        (
            "empty token",
            Fault::json(json!({"access_token": "", "token": ""})),
            Transient(&["empty"]),
        ),
        (
            "token with CR/LF",
            Fault::json(json!({"access_token": "a\r\nb", "token": "a\r\nb"})),
            Transient(&["header"]),
        ),
        (
            "non-ASCII token",
            Fault::json(json!({"access_token": "tök", "token": "tök"})),
            Transient(&["header"]),
        ),
        (
            "body over the size cap",
            Fault::answer(200, &[("content-type", "application/json")], &long_body),
            Transient(&["larger"]),
        ),
        (
            "chunked body over the size cap",
            Fault::Chunked(200_000),
            Transient(&["larger"]),
        ),
        (
            "expires_in negative",
            Fault::json(json!({"access_token": "t", "token": "t", "expires_in": -5})),
            Transient(&["expires_in", "negative"]),
        ),
        (
            "expires_in huge",
            Fault::json(json!({"access_token": "t", "token": "t", "expires_in": 1e300})),
            Transient(&["expires_in", "absurd (1e300 s"]),
        ),
        (
            "expires_in a word",
            Fault::json(json!({"access_token": "t", "token": "t", "expires_in": "soon"})),
            Transient(&["expires_in"]),
        ),
        (
            "text/html 200",
            Fault::answer(200, &[("content-type", "text/html")], "<html>login</html>"),
            Transient(&["html"]),
        ),
        (
            "redirect",
            Fault::answer(
                302,
                &[("location", "http://127.0.0.1:1/elsewhere?code=x")],
                "",
            ),
            Permanent(&["redirect"]),
        ),
        (
            "401 invalid_client",
            Fault::answer(
                401,
                &[("content-type", "application/json")],
                r#"{"error": "invalid_client"}"#,
            ),
            Permanent(&["401"]),
        ),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    Transient(&'static [&'static str]),
    Permanent(&'static [&'static str]),
    /// Transient, with this `Retry-After` (seconds; a date may read up to 2 s less).
    RetryAfter(u64),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_classified_and_named_for_every_source() {
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for kind in KINDS {
        for (name, fault, expect) in faults() {
            let (result, url) = fetch_once(kind, fault).await;
            let error = match result {
                Err(error) => error,
                Ok(token) => {
                    wrong.push(format!("{kind:?} / {name}: accepted a token, {token:?}"));
                    continue;
                }
            };
            let message = error.to_string();
            report.push(format!(
                "| {kind:?} | {name} | {:?} | {message} |",
                error.kind()
            ));
            if !message.contains(&url) {
                wrong.push(format!("{kind:?} / {name}: no endpoint in {message:?}"));
            }
            let (permanent, words): (bool, &[&str]) = match expect {
                Expect::Transient(words) => (false, words),
                Expect::Permanent(words) => (true, words),
                Expect::RetryAfter(secs) => {
                    let after = error.retry_after().unwrap_or_default();
                    // Dates have whole seconds and were written before the request.
                    let stated = Duration::from_secs(secs);
                    if after > stated || after + Duration::from_secs(2) < stated {
                        wrong.push(format!("{kind:?} / {name}: Retry-After read as {after:?}"));
                    }
                    (false, &[])
                }
            };
            if error.is_permanent() != permanent {
                wrong.push(format!("{kind:?} / {name}: classified {:?}", error.kind()));
            }
            for word in words {
                if !message.to_lowercase().contains(&word.to_lowercase()) {
                    wrong.push(format!(
                        "{kind:?} / {name}: {message:?} does not say {word:?}"
                    ));
                }
            }
            for secret in [CLIENT_SECRET, REFRESH_TOKEN, API_KEY] {
                assert!(!format!("{error:?} {message}").contains(secret));
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A policy scaled down so outages play out in about a second of real time: waits of 40, 80,
/// 160, then 320 ms, no jitter; fetches bounded by 1 s.
fn fast_policy() -> RefreshPolicy {
    let mut policy = RefreshPolicy::default();
    policy.jitter = 0.0;
    policy.min_interval = Duration::from_millis(10);
    policy.fetch_timeout = Duration::from_secs(1);
    policy.backoff = Backoff::default();
    policy.backoff.initial = Duration::from_millis(40);
    policy.backoff.max = Duration::from_millis(320);
    policy.backoff.jitter = 0.0;
    policy.max_retry_while_waiting = Duration::from_millis(320);
    policy.max_retry_after = Some(Duration::from_secs(2));
    if let Some(permanent) = &mut policy.permanent_backoff {
        permanent.initial = Duration::from_millis(300);
        permanent.max = Duration::from_secs(5);
        permanent.jitter = 0.0;
    }
    policy
}

fn spawn(kind: Kind, endpoint: &FaultEndpoint) -> TokenHandle {
    Refresher::builder(source(kind, &endpoint.url()))
        .name(format!("{kind:?}"))
        .policy(fast_policy())
        .spawn()
}

/// A transient fault never displaces a valid token, the error names the endpoint, and
/// shutting down while the fault is under way (a hang, a drip) takes under a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_is_served_through_every_transient_fault_and_shutdown_is_prompt() {
    for kind in KINDS {
        for (name, fault, expect) in faults() {
            if matches!(expect, Expect::Permanent(_)) {
                continue;
            }
            let endpoint = FaultEndpoint::start(fault).await;
            endpoint.then([Fault::token("first-token", 3600)]);
            let handle = spawn(kind, &endpoint);
            let first = handle.ready().await.unwrap();

            let refresh = tokio::spawn({
                let handle = handle.clone();
                async move { handle.refresh().await }
            });
            endpoint.wait_for_requests(2).await;
            // Whatever the fault is doing now, the old token is served.
            let served = handle.current().unwrap();
            assert_eq!(
                served.expose_secret(),
                first.expose_secret(),
                "{kind:?} / {name}"
            );

            let started = Instant::now();
            handle.shutdown();
            tokio::time::timeout(Duration::from_secs(1), handle.stopped())
                .await
                .unwrap_or_else(|_| panic!("{kind:?} / {name}: shutdown took over 1 s"));
            let answer = refresh.await.unwrap();
            assert!(
                matches!(&answer, Err(Error::Fetch(e)) if e.to_string().contains(&endpoint.url()))
                    || matches!(answer, Err(Error::Stopped)),
                "{kind:?} / {name}: {answer:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }
}

/// Gaps between consecutive arrivals.
fn gaps(arrivals: &[Instant]) -> Vec<Duration> {
    arrivals.windows(2).map(|w| w[1] - w[0]).collect()
}

/// During an outage the endpoint sees exactly the backoff: the n-th wait is
/// `min(40 ms * 2^(n-1), 320 ms)` after the failure (no jitter), never less. Each gap between
/// arrivals is that wait plus the failed request's own round trip. Once the endpoint heals, a
/// token arrives within the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_an_outage_follow_the_backoff_formula() {
    for kind in KINDS {
        let endpoint = FaultEndpoint::start(Fault::status(503)).await;
        let handle = spawn(kind, &endpoint);
        endpoint.wait_for_requests(8).await;
        endpoint.set_default(Fault::token("healed-token", 3600));
        let healed = Instant::now();
        let token = tokio::time::timeout(Duration::from_secs(2), handle.ready())
            .await
            .expect("recovers")
            .unwrap();
        assert_eq!(token.expose_secret(), "healed-token");
        let recovery = healed.elapsed();
        assert!(
            recovery <= Duration::from_millis(320 + 200),
            "{kind:?}: recovered {recovery:?} after the endpoint healed (cap 320 ms)"
        );

        let arrivals = endpoint.arrivals();
        let expected = [40, 80, 160, 320, 320, 320, 320].map(Duration::from_millis);
        for (n, (gap, wait)) in gaps(&arrivals).iter().zip(expected).enumerate() {
            assert!(
                *gap >= wait && *gap < wait + Duration::from_millis(150),
                "{kind:?}: gap {n} was {gap:?}, the formula says {wait:?} plus a round trip"
            );
        }
        handle.shutdown();
    }
}

/// `Retry-After` (seconds or a date) is honoured, up to `max_retry_after`; an absurd one is
/// cut to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_capped() {
    for (kind, retry_after, at_least, below) in [
        (Kind::ClientCredentials, "1", 1_000, 1_500),
        (Kind::RefreshToken, "1", 1_000, 1_500),
        (Kind::ApiKey, "1", 1_000, 1_500),
        // Capped at max_retry_after (2 s here).
        (Kind::ClientCredentials, "1000000000", 2_000, 2_500),
    ] {
        let endpoint = FaultEndpoint::start(Fault::token("ok-token", 3600)).await;
        endpoint.then([Fault::answer(503, &[("retry-after", retry_after)], "")]);
        let handle = spawn(kind, &endpoint);
        handle.ready().await.unwrap();
        let gap = gaps(&endpoint.arrivals())[0];
        assert!(
            gap >= Duration::from_millis(at_least) && gap < Duration::from_millis(below),
            "{kind:?}, Retry-After {retry_after}: next request after {gap:?}"
        );
        handle.shutdown();
    }
}

/// A permanent error is retried only on the slow schedule (300 ms, 600 ms, ... here), and
/// heals by itself once the server accepts the client again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_retried_slowly_and_heal() {
    let rejected = Fault::answer(
        401,
        &[("content-type", "application/json")],
        r#"{"error": "invalid_client"}"#,
    );
    for kind in KINDS {
        let endpoint = FaultEndpoint::start(rejected.clone()).await;
        let handle = spawn(kind, &endpoint);
        assert!(matches!(handle.ready().await, Err(Error::Failed(_))));
        endpoint.wait_for_requests(3).await;
        endpoint.set_default(Fault::token("after-rotation", 3600));
        let token = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                if let Ok(token) = handle.current() {
                    return token;
                }
                handle.watch().changed().await.unwrap();
            }
        })
        .await
        .expect("heals on the slow schedule");
        assert_eq!(token.expose_secret(), "after-rotation");
        let expected = [300, 600, 1200].map(Duration::from_millis);
        for (gap, wait) in gaps(&endpoint.arrivals()).iter().zip(expected) {
            assert!(
                *gap >= wait && *gap < wait + Duration::from_millis(150),
                "{kind:?}: {gap:?} for {wait:?}"
            );
        }
        handle.shutdown();
    }
}

/// Tokens the refresher itself refuses (already dead on arrival) are reported with the
/// endpoint and the field that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refused_by_the_refresher_name_the_endpoint_and_the_field() {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unix_now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let dead_jwt = format!(
        "{}.{}.sig",
        b64(json!({"alg": "none"})),
        b64(json!({"exp": unix_now - 10}))
    );
    for (answer, field) in [
        (
            json!({"access_token": "t", "expires_in": 0}),
            "`expires_in`",
        ),
        (
            json!({"access_token": "t", "expires_at": unix_now - 10}),
            "`expires_at`",
        ),
        (json!({"access_token": dead_jwt}), "the JWT's `exp`"),
    ] {
        let endpoint = FaultEndpoint::start(Fault::json(answer)).await;
        let handle = spawn(Kind::ClientCredentials, &endpoint);
        let Err(Error::Fetch(error)) = handle.refresh().await else {
            panic!("a dead token was accepted");
        };
        let text = error.to_string();
        assert!(text.contains(&endpoint.url()), "{text}");
        assert!(
            text.contains(&format!("already expired by {field}")),
            "{text}"
        );
        handle.shutdown();
    }
}

/// A refused connection (nothing listens) is transient and names the endpoint.
#[tokio::test]
async fn a_refused_connection_is_transient_and_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    drop(listener);
    for kind in KINDS {
        let error = source(kind, &url)
            .fetch(FetchContext::new(FetchReason::Initial))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{kind:?}: {error:?}");
        let text = error.to_string();
        assert!(
            text.starts_with(&url) && text.contains("could not connect"),
            "{kind:?}: {text}"
        );
    }
}

/// Lifetimes written as a float or a quoted number are read; the expiry follows them.
#[tokio::test]
async fn expires_in_as_a_float_or_a_string_is_read() {
    for (expires_in, secs) in [(json!(3600.5), 3600.5), (json!("120"), 120.0)] {
        for kind in KINDS {
            let answer = json!({"access_token": "t", "token": "t", "expires_in": expires_in});
            let (result, _) = fetch_once(kind, Fault::json(answer)).await;
            let token = result.unwrap_or_else(|e| panic!("{kind:?} {expires_in}: {e}"));
            assert_eq!(
                token.time_left(token.issued_at()),
                Some(Duration::from_secs_f64(secs)),
                "{kind:?} {expires_in}"
            );
        }
    }
}

/// An endpoint that answers the very same opaque token again and again, each time with a
/// fresh `expires_in` of 1 s (a sliding expiry): the token is served for each new life, never
/// past the expiry it was last given, and the endpoint is not hammered (fetches start at
/// least `min_interval` apart, here 10 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_token_with_a_sliding_expiry_is_served_throughout() {
    for kind in KINDS {
        let endpoint = FaultEndpoint::start(Fault::token("same-token", 1)).await;
        let handle = spawn(kind, &endpoint);
        let first = handle.ready().await.unwrap();
        let mut latest = first.expiry().unwrap();
        let (mut reads, mut served) = (0u32, 0u32);
        let until = Instant::now() + Duration::from_millis(2_000);
        while Instant::now() < until {
            reads += 1;
            if let Ok(token) = handle.current() {
                served += 1;
                let expiry = token.expiry().unwrap();
                assert!(expiry >= latest, "{kind:?}: the expiry moved back");
                latest = expiry;
                assert!(
                    SystemTime::now() < expiry,
                    "{kind:?}: served past its expiry"
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            latest > first.expiry().unwrap(),
            "{kind:?}: the new life was taken"
        );
        assert!(
            served * 100 >= reads * 95,
            "{kind:?}: only {served} of {reads} reads were served"
        );
        // Fetch starts are at least `min_interval` (10 ms) apart; arrivals carry the network's
        // jitter, so count them: at most one per 10 ms of the 2 s (and the first).
        let requests = endpoint.arrivals().len();
        assert!(requests <= 2_000 / 10 + 1, "{kind:?}: {requests} requests");
        handle.shutdown();
    }
}
