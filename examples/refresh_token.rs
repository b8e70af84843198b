//! The OAuth2 refresh-token grant with rotation and a file store, against an embedded endpoint.
//!
//! The endpoint rotates the refresh token on every use (as many do) and accepts each one once.
//! The refresher saves every rotated refresh token before publishing the new access token, so
//! the second "process" below resumes from the file without a new login.
//!
//! ```text
//! cargo run --example refresh_token
//! ```

use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokenwarden::Refresher;
use tokenwarden::sources::RefreshTokenGrant;
use tokenwarden::store::FileStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let valid = Arc::new(Mutex::new(String::from("refresh-from-login")));
    let app = Router::new()
        .route("/oauth/token", post(token_endpoint))
        .with_state(valid.clone());
    let token_url = serve(app).await?;
    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join("token.json");

    for run in 1..=2 {
        // Each run is a process start: the login's refresh token is configured, but a stored,
        // rotated one takes over.
        let source = RefreshTokenGrant::builder(&token_url, "refresh-from-login")
            .client_id("desktop-app")
            .build()?;
        let handle = Refresher::builder(source)
            .name("desktop-api")
            .store(FileStore::new(&store_path))
            .spawn();
        let token = handle.ready().await?;
        println!(
            "run {run}: token for account {}",
            token.claims().map_or(Value::Null, |c| c["account"].clone())
        );
        let token = handle.refresh().await?;
        let expires = token.expiry().map(humantime::format_rfc3339_seconds);
        println!(
            "run {run}: refreshed; the rotated refresh token was saved first; expires {}",
            expires.map_or("never".into(), |t| t.to_string())
        );
        handle.shutdown();
        handle.stopped().await;
    }
    println!(
        "the store at {} holds the latest refresh token",
        store_path.display()
    );
    Ok(())
}

/// Accepts only the newest refresh token and rotates it on every use.
async fn token_endpoint(
    State(valid): State<Arc<Mutex<String>>>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let presented = form
        .iter()
        .find(|(k, _)| k == "refresh_token")
        .map(|(_, v)| v.clone());
    let mut valid = valid.lock().unwrap();
    if presented.as_deref() != Some(valid.as_str()) {
        let error =
            json!({"error": "invalid_grant", "error_description": "refresh token already used"});
        return Err((StatusCode::BAD_REQUEST, Json(error)));
    }
    *valid = format!("refresh-{}", fastrand::u64(..));
    // An unsigned JWT with an account claim; real servers sign theirs.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let access = format!(
        "{}.{}.sig",
        b64.encode(r#"{"alg":"none"}"#),
        b64.encode(r#"{"account":"acct_42"}"#)
    );
    Ok(Json(
        json!({"access_token": access, "expires_in": 600, "refresh_token": *valid}),
    ))
}

async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/oauth/token", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
