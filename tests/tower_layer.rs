//! The tower Layer on real clients: tonic against a local gRPC server that checks the token,
//! and a hyper client against a local HTTP server.
#![cfg(feature = "tower")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenwarden::integrations::tower::TokenAuthLayer;
use tokenwarden::{FetchError, Refresher, Token, TokenHandle};
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_layer::Layer;

/// A refresher whose endpoint issues `token-1`, `token-2`, ... and counts its fetches.
fn refresher() -> (TokenHandle, Arc<AtomicU32>) {
    let fetches = Arc::new(AtomicU32::new(0));
    let counted = fetches.clone();
    let source = tokenwarden::from_fn(move |_ctx| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Ok::<_, FetchError>(
                Token::new(format!("token-{n}")).expires_in(Duration::from_secs(600)),
            )
        }
    });
    (Refresher::builder(source).name("grpc-api").spawn(), fetches)
}

/// A gRPC server (the standard health service) that accepts only `Bearer <accepted>`, and
/// records the tokens it was shown.
async fn grpc_server(accepted: Arc<Mutex<String>>, shown: Arc<Mutex<Vec<String>>>) -> String {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let check = move |request: Request<()>| {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        shown.lock().unwrap().push(presented.clone());
        if presented == format!("Bearer {}", accepted.lock().unwrap()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("invalid token"))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = tonic::service::interceptor::InterceptedService::new(health, check);
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    url
}

#[tokio::test]
async fn a_tonic_client_sends_the_token_and_a_rejection_renews_it() {
    let accepted = Arc::new(Mutex::new("token-1".to_owned()));
    let shown = Arc::new(Mutex::new(Vec::new()));
    let url = grpc_server(accepted.clone(), shown.clone()).await;
    let (handle, fetches) = refresher();
    handle.ready().await.unwrap();

    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut client = HealthClient::new(TokenAuthLayer::new(handle.clone()).layer(channel));
    let check = || HealthCheckRequest {
        service: String::new(),
    };
    client.check(check()).await.expect("the token is accepted");

    // The server revokes token-1: the call fails UNAUTHENTICATED (a gRPC body is a stream,
    // not replayed), the refresher is told, and the next call carries token-2.
    *accepted.lock().unwrap() = "token-2".to_owned();
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "one refresh after the rejection"
    );
    client
        .check(check())
        .await
        .expect("the new token is accepted");
    assert_eq!(
        *shown.lock().unwrap(),
        ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    );
    handle.shutdown();
}

#[tokio::test]
async fn without_a_token_the_call_fails_unsent_with_the_handles_error() {
    let shown = Arc::new(Mutex::new(Vec::new()));
    let url = grpc_server(Arc::new(Mutex::new("x".into())), shown.clone()).await;
    let source = tokenwarden::from_fn(|_ctx| async {
        Err::<Token, _>(FetchError::permanent(
            "https://auth.test/token answered 401: invalid_client",
        ))
    });
    let handle = Refresher::builder(source).spawn();
    let _ = handle.ready().await;
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut client = HealthClient::new(TokenAuthLayer::new(handle).layer(channel));
    let status = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert!(status.message().contains("invalid_client"), "{status:?}");
    assert!(shown.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_hyper_request_with_a_clonable_body_is_retried_once_with_the_new_token() {
    use axum::http::{HeaderMap, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use tower::ServiceExt;

    // Accepts token-2 only, and counts what it saw.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/things",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let record = record.clone();
            async move {
                let auth = headers["authorization"].to_str().unwrap().to_owned();
                record.lock().unwrap().push(format!("{auth} {body}"));
                if auth == "Bearer token-2" {
                    (StatusCode::OK, "done")
                } else {
                    (StatusCode::UNAUTHORIZED, "expired")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/things", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (handle, fetches) = refresher();
    handle.ready().await.unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let service = TokenAuthLayer::new(handle)
        .retry_cloned_bodies()
        .layer(client);
    let request = http::Request::post(&url)
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"done");
    assert_eq!(
        *seen.lock().unwrap(),
        ["Bearer token-1 payload", "Bearer token-2 payload"],
        "sent once, rejected, replayed once with the new token and the same body"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

/// A token endpoint that hangs, or asks to be left alone for 31 years, after the first token;
/// the server rejects every token. A call with a `grpc-timeout` (tonic's
/// `Request::set_timeout`) waits no longer than it allows; one without at most the default 2 s.
#[tokio::test]
async fn a_call_never_waits_longer_than_its_grpc_timeout() {
    use axum::http::StatusCode;
    use http_body_util::Full;
    use hyper::body::Bytes;
    use std::time::Instant;
    use tower::ServiceExt;

    let app = axum::Router::new().route(
        "/things",
        axum::routing::post(|| async { (StatusCode::UNAUTHORIZED, "expired") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/things", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    for retry_after in [false, true] {
        let fetches = Arc::new(AtomicU32::new(0));
        let counted = fetches.clone();
        let source = tokenwarden::from_fn(move |_ctx| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    return Ok(Token::new("token-1").expires_in(Duration::from_secs(600)));
                }
                if retry_after {
                    return Err(
                        FetchError::transient("https://auth.test/token answered 503")
                            .with_retry_after(Duration::from_secs(1_000_000_000)),
                    );
                }
                std::future::pending().await
            }
        });
        let handle = Refresher::builder(source).spawn();
        handle.ready().await.unwrap();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let service = TokenAuthLayer::new(handle.clone())
            .retry_cloned_bodies()
            .layer(client);

        let request = http::Request::post(&url)
            .header("grpc-timeout", "800m")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let started = Instant::now();
        let response = service.clone().oneshot(request).await.unwrap();
        let own = started.elapsed();
        assert_eq!(response.status(), 401);
        assert!(
            own < Duration::from_millis(1_500),
            "{own:?} for an 800 ms call"
        );

        let request = http::Request::post(&url)
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let started = Instant::now();
        let response = service.oneshot(request).await.unwrap();
        let default = started.elapsed();
        assert_eq!(response.status(), 401);
        assert!(default < Duration::from_secs(4), "{default:?}: at most 2 s");
        if !retry_after {
            // The fetch hangs: the call waited the whole default, and no more.
            assert!(default >= Duration::from_millis(1_900), "{default:?}");
        }
        handle.shutdown();
    }
}
