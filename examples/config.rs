//! Credentials declared in a TOML file and spawned in one call, against an embedded token
//! endpoint. The file is `examples/credentials.toml`; its secrets come from an environment
//! variable and a file, never from the configuration itself.
//!
//! ```text
//! cargo run --example config
//! ```

use std::collections::HashMap;

use axum::routing::post;
use axum::{Form, Json, Router};
use serde_json::{Value, json};
use tokenwarden::config::CredentialsConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = serve().await?;
    let secret_file = tempfile::NamedTempFile::new()?;
    std::fs::write(secret_file.path(), "billing-secret\n")?;
    // SAFETY: this program has one thread (a current-thread runtime, nothing spawned on other
    // threads yet), so nothing reads the environment concurrently. A real service's
    // environment is set by whoever starts it.
    unsafe { std::env::set_var("ORDERS_CLIENT_SECRET", "orders-secret") };

    let text = include_str!("credentials.toml")
        .replace("PORT", &port.to_string())
        .replace(
            "CLIENT_SECRET_FILE",
            &secret_file.path().display().to_string(),
        );
    let config: CredentialsConfig = toml::from_str(&text)?;
    let registry = config.spawn().await?;

    for name in ["orders-api", "billing-api"] {
        let handle = registry.get(name).expect("declared in the file");
        let token = handle.ready().await?;
        println!(
            "{name}: a {} token, scope {:?}",
            token.token_type(),
            token.scope().unwrap_or("-")
        );
    }

    // A mistake names the credential and the field.
    let broken = text.replace("refresh_at = 0.75", "refresh_at = 7.5");
    let error = toml::from_str::<CredentialsConfig>(&broken)?
        .spawn()
        .await
        .unwrap_err();
    println!("a bad setting: {error}");

    registry.shutdown();
    registry.stopped().await;
    Ok(())
}

/// A token endpoint that answers any client whose secret it knows.
async fn serve() -> std::io::Result<u16> {
    async fn token(Form(form): Form<HashMap<String, String>>) -> Json<Value> {
        let scope = form.get("scope").cloned().unwrap_or_default();
        Json(
            json!({"access_token": "example-token", "token_type": "Bearer", "expires_in": 3600, "scope": scope}),
        )
    }
    let app = Router::new().route("/oauth/token", post(token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}
