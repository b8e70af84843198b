//! One identity, a token per scope set: `KeyedCredential` starts a refresher per key on first
//! use (client credentials against an embedded token endpoint) and stops it when idle.
//!
//! ```text
//! cargo run --example keyed
//! ```

use std::collections::HashMap;
use std::time::Duration;

use axum::routing::post;
use axum::{Form, Json, Router};
use serde_json::{Value, json};
use tokenwarden::registry::{KeyedCredential, TokenKey};
use tokenwarden::{ClientCredentials, Refresher};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let token_url = serve().await?;
    let tokens = KeyedCredential::builder(move |key: &TokenKey| {
        let mut source = ClientCredentials::builder(&token_url, "reporting", "s3cret");
        if let Some(scope) = key.scope() {
            source = source.scope(scope);
        }
        if let Some(audience) = &key.audience {
            source = source.audience(audience);
        }
        Ok(Refresher::builder(source.build()?))
    })
    .idle_after(Duration::from_secs(10 * 60))
    .max_keys(100)
    .build();

    let orders = TokenKey::new()
        .scopes(["orders.read"])
        .audience("https://orders.example.com");
    let billing = TokenKey::new().scopes(["invoices.read", "invoices.write"]);
    for key in [&orders, &billing, &orders] {
        let token = tokens.token(key).await?;
        println!("{key}: granted scope {:?}", token.scope().unwrap_or("-"));
    }
    println!("{} keys live, one refresher each", tokens.len());
    Ok(())
}

/// A token endpoint that grants the scope asked for.
async fn serve() -> std::io::Result<String> {
    async fn token(Form(form): Form<HashMap<String, String>>) -> Json<Value> {
        let scope = form.get("scope").cloned().unwrap_or_default();
        Json(
            json!({"access_token": "t", "token_type": "Bearer", "expires_in": 3600, "scope": scope}),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/token", listener.local_addr()?);
    let app = Router::new().route("/token", post(token));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
