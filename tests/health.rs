//! Readiness and liveness probes served by axum over real HTTP on 127.0.0.1: 503 with the
//! reason while a required credential has no token, 200 once it has; never a secret in the
//! report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokenwarden::{Backoff, ClientCredentials, Health, RefreshPolicy, Refresher, Registry};

const CLIENT_SECRET: &str = "health-client-secret-3b7e";
const ACCESS_TOKEN: &str = "health-access-token-91c2";

/// A token endpoint that refuses (echoing the client's secret back, as careless servers do)
/// until `up` is set.
async fn token_endpoint(up: Arc<AtomicBool>) -> String {
    let app = Router::new().route(
        "/token",
        post(move || {
            let up = up.load(Ordering::SeqCst);
            async move {
                if up {
                    (StatusCode::OK, Json(json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 600})))
                } else {
                    let description = format!("temporarily down; you sent {CLIENT_SECRET}");
                    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "temporarily_unavailable", "error_description": description})))
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The probes, served like a service would serve them.
async fn probes(health: Health) -> String {
    let app = Router::new()
        .route_service("/readyz", health.readiness())
        .route_service("/healthz", health.liveness());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn probe(url: &str) -> (u16, Value, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap(), text)
}

#[tokio::test]
async fn readiness_follows_the_required_credentials_and_says_why_without_secrets() {
    let up = Arc::new(AtomicBool::new(false));
    let url = token_endpoint(up.clone()).await;
    let mut policy = RefreshPolicy::default();
    policy.backoff = Backoff::default();
    policy.backoff.initial = Duration::from_millis(50);
    policy.backoff.max = Duration::from_millis(50);
    let registry: Registry<String> = Registry::new();
    let orders = registry.insert(
        "orders-api".into(),
        Refresher::builder(
            ClientCredentials::builder(&url, "orders", CLIENT_SECRET)
                .build()
                .unwrap(),
        )
        .policy(policy),
    );
    let mut events = orders.subscribe();
    let base = probes(Health::new().registry(&registry)).await;

    // The endpoint refuses: not ready, saying which credential and why; still live.
    let _ = events.recv().await; // the first failed fetch
    let (status, report, text) = probe(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{text}");
    assert_eq!(report["ready"], false);
    let why = report["not_ready"][0].as_str().unwrap();
    assert!(why.starts_with("orders-api: pending: "), "{why}");
    assert!(why.contains("503") && why.contains("temporarily"), "{why}");
    assert!(
        !text.contains(CLIENT_SECRET),
        "the echoed secret is scrubbed: {text}"
    );
    let next = &report["credentials"][0]["next_attempt_in_seconds"];
    assert!(
        next.is_null() || next.as_u64() == Some(0),
        "retrying every 50 ms: {next}"
    );
    let (status, _, _) = probe(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "a failing endpoint is not a reason to restart");

    // It comes up: ready, with the time left; the token itself is never in the report.
    up.store(true, Ordering::SeqCst);
    orders.ready().await.unwrap();
    let (status, report, text) = probe(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(report["credentials"][0]["state"], "fresh");
    assert!(report["credentials"][0]["seconds_left"].as_u64().unwrap() > 590);
    assert!(
        !text.contains(ACCESS_TOKEN) && !text.contains(CLIENT_SECRET),
        "{text}"
    );

    // A refresher that stopped while still registered: not live.
    orders.shutdown();
    orders.stopped().await;
    let (status, report, _) = probe(&format!("{base}/healthz")).await;
    assert_eq!(status, 503);
    assert_eq!(report["live"], false);
}

#[tokio::test]
async fn an_optional_credential_is_reported_but_does_not_decide_readiness() {
    let url = token_endpoint(Arc::new(AtomicBool::new(false))).await;
    let source = ClientCredentials::builder(&url, "search", CLIENT_SECRET)
        .build()
        .unwrap();
    let search = Refresher::builder(source).name("search").spawn();
    let base = probes(Health::new().optional(search)).await;
    let (status, report, _) = probe(&format!("{base}/readyz")).await;
    assert_eq!(status, 200);
    assert_eq!(report["credentials"][0]["name"], "search");
    assert_eq!(report["credentials"][0]["required"], false);
    assert_eq!(report["credentials"][0]["serving"], false);
}
