//! DPoP-bound tokens (RFC 9449): client credentials with a proof on each token request, then
//! API calls through the reqwest middleware, each with a fresh proof; both embedded servers
//! ask for a nonce first, as servers that require nonces do.
//!
//! ```text
//! cargo run --example dpop --features dpop,middleware
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokenwarden::dpop::DpopKey;
use tokenwarden::integrations::middleware::TokenAuth;
use tokenwarden::{ClientCredentials, Refresher};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = serve().await?;
    let key = DpopKey::generate()?;
    println!(
        "key thumbprint (what a bound token's cnf.jkt names): {}",
        key.thumbprint()
    );

    let source = ClientCredentials::builder(format!("{base}/token"), "orders-service", "s3cret")
        .dpop(key)
        .build()?;
    let handle = Refresher::builder(source).name("orders").spawn();
    let token = handle.ready().await?;
    println!(
        "token type {}, bound to {:?}",
        token.token_type(),
        token.dpop_key().map(DpopKey::thumbprint)
    );

    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TokenAuth::new(handle.clone()))
        .build();
    for _ in 0..2 {
        let response = client.get(format!("{base}/orders")).send().await?;
        println!("GET /orders: {}", response.status());
    }
    handle.shutdown();
    Ok(())
}

/// A token endpoint and an API that want a DPoP proof, and a nonce in it. (A real server
/// verifies the proof's signature, `htm`, `htu` and `ath`; `tests/dpop.rs` does.)
async fn serve() -> std::io::Result<String> {
    let calls = Arc::new(AtomicUsize::new(0));
    let nonce_wanted = |headers: &HeaderMap| {
        let proof = headers
            .get("dpop")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let claims = proof.split('.').nth(1).unwrap_or_default();
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap_or_default();
        !String::from_utf8_lossy(&claims).contains("\"nonce\":\"n-1\"")
    };
    let token = move |headers: HeaderMap| async move {
        if nonce_wanted(&headers) {
            let body = Json(json!({"error": "use_dpop_nonce"}));
            return (StatusCode::BAD_REQUEST, [("dpop-nonce", "n-1")], body).into_response();
        }
        Json(json!({"access_token": "bound-token", "token_type": "DPoP", "expires_in": 3600}))
            .into_response()
    };
    let orders = move |headers: HeaderMap| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if nonce_wanted(&headers) {
                let challenge = r#"DPoP error="use_dpop_nonce""#;
                return (
                    StatusCode::UNAUTHORIZED,
                    [("www-authenticate", challenge), ("dpop-nonce", "n-1")],
                    "",
                )
                    .into_response();
            }
            (StatusCode::OK, "[]").into_response()
        }
    };
    let app = Router::new()
        .route("/token", post(token))
        .route("/orders", get(orders));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}
