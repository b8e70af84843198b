//! OAuth2 client credentials against an embedded token endpoint on 127.0.0.1.
//!
//! ```text
//! cargo run --example client_credentials
//! ```

use axum::extract::Form;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokenwarden::sources::ClientCredentials;
use tokenwarden::{Event, Refresher};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let token_url = serve(Router::new().route("/oauth/token", post(token_endpoint))).await?;

    // The three lines an SDK needs.
    let source = ClientCredentials::builder(token_url, "reporting-service", "s3cr3t")
        .scope("reports:read")
        .build()?;
    let handle = Refresher::builder(source).name("reports-api").spawn();

    let token = handle.ready().await?;
    let mut events = handle.subscribe();
    println!(
        "first token: scope {:?}, region endpoint {}",
        token.scope(),
        token.extra()["endpoints"]["eu"]
    );

    // The endpoint issues 3 s tokens: watch two scheduled rotations.
    for _ in 0..2 {
        if let Event::Rotated { token, reason } = events.recv().await? {
            println!(
                "rotated ({reason}): expires in {:?}",
                token
                    .time_left(std::time::SystemTime::now())
                    .unwrap_or_default()
            );
        }
    }
    handle.shutdown();
    handle.stopped().await;
    Ok(())
}

/// RFC 6749 section 4.4, as a server sees it: HTTP Basic client authentication, a form body.
async fn token_endpoint(
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let authenticated = headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes().starts_with(b"Basic "));
    let grant = form
        .iter()
        .any(|(k, v)| k == "grant_type" && v == "client_credentials");
    if !authenticated || !grant {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request"})),
        ));
    }
    Ok(Json(json!({
        "access_token": format!("opaque-{}", fastrand::u32(..)),
        "token_type": "bearer",
        "expires_in": 3,
        "scope": "reports:read",
        "endpoints": {"eu": "https://eu.reports.example", "us": "https://us.reports.example"}
    })))
}

async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/oauth/token", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
