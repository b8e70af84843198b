//! Building sources from an issuer URL (OpenID Connect Discovery, RFC 8414 fallback), against
//! an embedded authorization server on 127.0.0.1.
//!
//! ```text
//! cargo run --example discovery
//! ```

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokenwarden::Refresher;
use tokenwarden::sources::{ClientAuth, HttpOptions, Issuer, SubjectToken};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer_url = serve().await?;

    let issuer = Issuer::discover(&issuer_url, &HttpOptions::new()).await?;
    println!(
        "discovered {} -> token endpoint {}",
        issuer.issuer(),
        issuer.token_endpoint()
    );

    let source = issuer.client_credentials("reports", "s3cr3t").build()?;
    let handle = Refresher::builder(source).name("reports").spawn();
    let token = handle.ready().await?;
    println!("client credentials: a {} token", token.token_type());

    // What the server does not offer is refused when the source is built, not at 3 a.m.
    let refused = issuer
        .client_credentials("reports", "s3cr3t")
        .auth(ClientAuth::Body)
        .build();
    println!("client_secret_post: {}", refused.unwrap_err());
    let refused = issuer
        .token_exchange(SubjectToken::file("/dev/null"))
        .build();
    println!("token exchange: {}", refused.unwrap_err());

    handle.shutdown();
    handle.stopped().await;
    Ok(())
}

async fn serve() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}/realms/demo", listener.local_addr()?);
    let metadata = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/protocol/openid-connect/token"),
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
    });
    let app = Router::new()
        .route(
            "/realms/demo/.well-known/openid-configuration",
            get(move || async move { Json(metadata) }),
        )
        .route(
            "/realms/demo/protocol/openid-connect/token",
            post(|| async {
                Json(json!({"access_token": "demo", "token_type": "Bearer", "expires_in": 300}))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(issuer)
}
