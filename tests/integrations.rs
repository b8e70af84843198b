//! Tokens on outgoing requests, against a local resource server that accepts only the newest
//! token (and a token endpoint in the same app).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, post};
use serde_json::json;
use tokenwarden::sources::ClientCredentials;
use tokenwarden::{Error, Refresher, RequestBuilderExt, TokenHandle};

#[derive(Default)]
struct Api {
    issued: AtomicU32,
    valid: Mutex<Option<String>>,
    token_calls: AtomicU32,
    resource_calls: AtomicU32,
    reject_everything: AtomicBool,
}

impl Api {
    /// The server forgets every token (rotated keys, revocation).
    #[cfg_attr(not(feature = "middleware"), allow(dead_code))]
    fn revoke(&self) {
        *self.valid.lock().unwrap() = None;
    }
    #[cfg_attr(not(feature = "middleware"), allow(dead_code))]
    fn token_calls(&self) -> u32 {
        self.token_calls.load(Ordering::SeqCst)
    }
    fn resource_calls(&self) -> u32 {
        self.resource_calls.load(Ordering::SeqCst)
    }
}

async fn issue(State(api): State<Arc<Api>>) -> impl IntoResponse {
    api.token_calls.fetch_add(1, Ordering::SeqCst);
    let token = format!("t-{}", api.issued.fetch_add(1, Ordering::SeqCst) + 1);
    *api.valid.lock().unwrap() = Some(token.clone());
    axum::Json(json!({"access_token": token, "expires_in": 3600}))
}

async fn resource(State(api): State<Arc<Api>>, headers: HeaderMap) -> axum::response::Response {
    api.resource_calls.fetch_add(1, Ordering::SeqCst);
    let sent = headers.get("authorization").and_then(|v| v.to_str().ok());
    let valid = api.valid.lock().unwrap().clone();
    let accepted = !api.reject_everything.load(Ordering::SeqCst)
        && sent.is_some()
        && sent == valid.map(|t| format!("Bearer {t}")).as_deref();
    if accepted {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", r#"Bearer error="invalid_token""#)],
        )
            .into_response()
    }
}

async fn forbidden() -> impl IntoResponse {
    (StatusCode::FORBIDDEN, "not yours")
}

async fn forbidden_invalid_token(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> axum::response::Response {
    // A server that answers 403 but says why in WWW-Authenticate.
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let valid = api
        .valid
        .lock()
        .unwrap()
        .clone()
        .map(|t| format!("Bearer {t}"));
    if sent.is_some() && sent == valid {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::FORBIDDEN,
            [(
                "www-authenticate",
                r#"Bearer realm="api", error="invalid_token""#,
            )],
        )
            .into_response()
    }
}

/// How a token endpoint fails after its first token.
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub enum AfterFirst {
    /// Accepts the connection and never answers.
    BlackHole,
    /// Answers 503 with `Retry-After: 1000000000`.
    RetryAfterForever,
}

/// A raw token endpoint on loopback: the first request gets a token (an hour), every later one
/// fails as `mode` says. Returns its URL.
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
pub async fn token_endpoint_failing_after_first(mode: AfterFirst) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut first = true;
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let answer = if std::mem::take(&mut first) {
                let body = r#"{"access_token":"first-token","expires_in":3600}"#;
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                match mode {
                    AfterFirst::BlackHole => {
                        held.push(socket); // never answered, never closed
                        continue;
                    }
                    AfterFirst::RetryAfterForever => "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1000000000\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                }
            };
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    url
}

async fn start() -> (String, Arc<Api>, TokenHandle) {
    let api = Arc::new(Api::default());
    let app = Router::new()
        .route("/token", post(issue))
        .route("/resource", any(resource))
        .route("/forbidden", any(forbidden))
        .route("/forbidden-invalid-token", any(forbidden_invalid_token))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let source = ClientCredentials::builder(format!("{base}/token"), "id", "secret")
        .build()
        .unwrap();
    let handle = Refresher::builder(source).name("resource-api").spawn();
    handle.ready().await.unwrap();
    (base, api, handle)
}

#[tokio::test]
async fn the_extension_sets_the_header_without_awaiting() {
    let (base, api, handle) = start().await;
    let response = reqwest::Client::new()
        .get(format!("{base}/resource"))
        .with_token(&handle)
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(api.resource_calls(), 1);
}

#[tokio::test]
async fn the_extension_fails_fast_without_a_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/token", listener.local_addr().unwrap());
    drop(listener);
    let source = ClientCredentials::builder(dead, "id", "secret")
        .build()
        .unwrap();
    let handle = Refresher::builder(source).spawn();
    let result = reqwest::Client::new()
        .get("http://127.0.0.1:9/never-sent")
        .with_token(&handle);
    assert!(matches!(result, Err(Error::Pending { .. })));
}

/// A refresher whose source hands out a token only when the test adds a permit to the gate.
fn gated_handle() -> (Arc<tokio::sync::Semaphore>, TokenHandle) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let issued = Arc::new(AtomicU32::new(0));
    let source = tokenwarden::from_fn({
        let gate = gate.clone();
        move |_ctx| {
            let (gate, issued) = (gate.clone(), issued.clone());
            async move {
                gate.acquire().await.unwrap().forget();
                let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                Ok::<_, tokenwarden::FetchError>(
                    tokenwarden::Token::new(format!("t-{n}"))
                        .expires_in(std::time::Duration::from_secs(3600)),
                )
            }
        }
    });
    (gate, Refresher::builder(source).name("gated-api").spawn())
}

#[tokio::test]
async fn the_extension_can_wait_a_bounded_time_for_a_token() {
    use std::time::Duration;
    let (gate, handle) = gated_handle();
    // Nothing comes: the wait ends with the handle's error.
    let result = reqwest::Client::new()
        .get("http://127.0.0.1:9/never-sent")
        .with_token_within(&handle, Duration::from_millis(50))
        .await;
    assert!(matches!(result, Err(Error::Pending { .. })));

    // The token arrives while a request waits: it goes out with it.
    let waiting = tokio::spawn({
        let handle = handle.clone();
        async move {
            reqwest::Client::new()
                .get("http://127.0.0.1:9/not-sent-either")
                .with_token_within(&handle, Duration::from_secs(30))
                .await
                .map(|builder| builder.build().unwrap())
        }
    });
    gate.add_permits(1);
    let request = waiting.await.unwrap().unwrap();
    assert_eq!(request.headers()["authorization"], "Bearer t-1");
}

#[cfg(feature = "middleware")]
mod middleware {
    use futures_util::future::join_all;
    use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
    use tokenwarden::integrations::middleware::TokenAuth;

    use super::*;

    fn client(handle: &TokenHandle) -> ClientWithMiddleware {
        ClientBuilder::new(reqwest::Client::new())
            .with(TokenAuth::new(handle.clone()))
            .build()
    }

    #[tokio::test]
    async fn a_rejected_token_is_refreshed_and_the_request_retried_once() {
        let (base, api, handle) = start().await;
        let client = client(&handle);
        assert_eq!(
            client
                .get(format!("{base}/resource"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );

        api.revoke();
        let response = client
            .post(format!("{base}/resource"))
            .body("a clonable body")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(api.token_calls(), 2, "one refresh");
        assert_eq!(
            api.resource_calls(),
            3,
            "first call, rejected call, its retry"
        );
        assert_eq!(handle.current().unwrap().expose_secret(), "t-2");
    }

    #[tokio::test]
    async fn many_concurrent_rejections_cause_one_refresh() {
        let (base, api, handle) = start().await;
        let client = client(&handle);
        api.revoke();

        let calls = (0..50).map(|_| client.get(format!("{base}/resource")).send());
        let responses = join_all(calls).await;

        for response in responses {
            assert_eq!(response.unwrap().status(), 200);
        }
        assert_eq!(
            api.token_calls(),
            2,
            "the initial token and exactly one refresh"
        );
    }

    #[tokio::test]
    async fn it_never_retries_more_than_once() {
        let (base, api, handle) = start().await;
        api.reject_everything.store(true, Ordering::SeqCst);
        let response = client(&handle)
            .get(format!("{base}/resource"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "the retry's answer is handed back");
        assert_eq!(api.resource_calls(), 2);
        assert_eq!(api.token_calls(), 2);
    }

    #[tokio::test]
    async fn a_streaming_body_is_not_retried_but_the_next_request_succeeds() {
        let (base, api, handle) = start().await;
        let client = client(&handle);
        api.revoke();

        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>("streamed")]);
        let response = client
            .post(format!("{base}/resource"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "handed back untouched");
        assert_eq!(api.resource_calls(), 1, "not retried");
        assert_eq!(api.token_calls(), 2, "but the refresher was told");

        let next = client.get(format!("{base}/resource")).send().await.unwrap();
        assert_eq!(next.status(), 200);
    }

    #[tokio::test]
    async fn other_answers_are_handed_back_untouched() {
        let (base, api, handle) = start().await;
        let response = client(&handle)
            .get(format!("{base}/forbidden"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(response.text().await.unwrap(), "not yours");
        assert_eq!(api.token_calls(), 1, "no refresh for a plain 403");
    }

    #[tokio::test]
    async fn www_authenticate_invalid_token_counts_as_a_rejection() {
        let (base, api, handle) = start().await;
        api.revoke();
        let response = client(&handle)
            .get(format!("{base}/forbidden-invalid-token"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(api.token_calls(), 2);
    }

    #[tokio::test]
    async fn a_request_can_wait_for_the_first_token() {
        let (base, api, _handle) = start().await;
        let (gate, gated) = gated_handle();
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(TokenAuth::new(gated.clone()).wait_for_token(std::time::Duration::from_secs(30)))
            .build();
        *api.valid.lock().unwrap() = Some("t-1".into());
        let request =
            tokio::spawn(async move { client.get(format!("{base}/resource")).send().await });
        gate.add_permits(1);
        let response = request.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn a_rejected_request_waits_for_the_new_token_only_so_long() {
        let (base, api, _handle) = start().await;
        let (gate, gated) = gated_handle();
        gate.add_permits(1); // the first token; the refresh after the 401 then hangs
        gated.ready().await.unwrap();
        api.reject_everything.store(true, Ordering::SeqCst);
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(TokenAuth::new(gated).max_refresh_wait(std::time::Duration::from_millis(100)))
            .build();
        let response = client.get(format!("{base}/resource")).send().await.unwrap();
        assert_eq!(response.status(), 401, "the server's answer is handed back");
        assert_eq!(api.resource_calls(), 1, "not retried without a new token");
    }

    #[tokio::test]
    async fn without_a_token_the_request_is_not_sent() {
        let (base, api, handle) = start().await;
        handle.shutdown();
        handle.stopped().await;
        let error = client(&handle)
            .get(format!("{base}/resource"))
            .send()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("stopped"), "{error}");
        assert_eq!(api.resource_calls(), 0);
    }

    /// A token endpoint that black-holes, or asks to be left alone for 31 years, after the
    /// first token; the resource server rejects every token. A request with its own timeout
    /// waits no longer than it allows; one without waits at most the default 2 s, not the
    /// endpoint's 30 s timeout nor the `Retry-After`.
    #[tokio::test]
    async fn a_request_never_waits_longer_than_it_allows() {
        use std::time::{Duration, Instant};
        for mode in [AfterFirst::BlackHole, AfterFirst::RetryAfterForever] {
            let (base, api, _handle) = start().await;
            api.reject_everything.store(true, Ordering::SeqCst);
            let url = token_endpoint_failing_after_first(mode).await;
            let source = ClientCredentials::builder(url, "id", "secret")
                .build()
                .unwrap();
            let handle = Refresher::builder(source).name("bounded").spawn();
            handle.ready().await.unwrap();
            let client = client(&handle);

            let started = Instant::now();
            let response = client
                .get(format!("{base}/resource"))
                .timeout(Duration::from_millis(800))
                .send()
                .await
                .unwrap();
            let own = started.elapsed();
            assert_eq!(response.status(), 401, "{mode:?}: the server's answer");
            assert!(
                own < Duration::from_millis(1_500),
                "{mode:?}: {own:?} for an 800 ms request"
            );

            let started = Instant::now();
            let response = client.get(format!("{base}/resource")).send().await.unwrap();
            let default = started.elapsed();
            assert_eq!(response.status(), 401, "{mode:?}");
            assert!(
                default < Duration::from_secs(4),
                "{mode:?}: {default:?}, at most 2 s"
            );
            if let AfterFirst::BlackHole = mode {
                // Nothing answers: the request waited the whole default, and no more. (A
                // refused fetch answers the waiting request at once.)
                assert!(default >= Duration::from_millis(1_900), "{default:?}");
            }
            handle.shutdown();
        }
    }
}
