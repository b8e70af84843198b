//! Trading an API key for short-lived JWTs, against an embedded endpoint; then a key that
//! already is a JWT, passed through without any request.
//!
//! ```text
//! cargo run --example api_key
//! ```

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use tokenwarden::Refresher;
use tokenwarden::sources::ApiKeyExchange;

const API_KEY: &str = "sk-live-example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = serve(Router::new().route("/api/v1/inference_tokens", post(mint))).await?;

    let source = ApiKeyExchange::builder(&url, API_KEY)
        .body(json!({"client_id": "example-sdk/1.0"}))
        .opt_out_env("EXAMPLE_SDK_NO_EXCHANGE")
        .build()?;
    let handle = Refresher::builder(source).name("inference").spawn();
    let token = handle.ready().await?;
    let expires = token.expiry().map(humantime::format_rfc3339_seconds);
    println!(
        "exchanged: a JWT for {}, expiring {}",
        token.claims().unwrap_or_default()["sub"],
        expires.map_or("never".into(), |t| t.to_string())
    );

    // A key that already is a JWT is used as it is.
    let jwt_key = jwt(json!({"sub": "ci-robot", "exp": 4_000_000_000u64}));
    let source = ApiKeyExchange::builder(&url, jwt_key).build()?;
    println!(
        "a JWT key is passed through: {}",
        source.passes_key_through()
    );

    // A wrong key: the error says so plainly, without the key.
    let wrong = ApiKeyExchange::builder(&url, "sk-wrong").build()?;
    let handle = Refresher::builder(wrong)
        .name("inference-wrong-key")
        .spawn();
    println!("wrong key: {}", handle.ready().await.unwrap_err());
    Ok(())
}

async fn mint(
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {API_KEY}"))
    {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_api_key", "error_description": "unknown key"})),
        ));
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(Json(
        json!({"token": jwt(json!({"sub": body["client_id"], "exp": now.as_secs() + 900}))}),
    ))
}

/// An unsigned JWT shape; real servers sign theirs.
fn jwt(claims: Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    )
}

async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/api/v1/inference_tokens", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
