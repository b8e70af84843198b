//! Workload identity federation: a token file that something else rotates (as the kubelet
//! rotates a projected service-account token) exchanged for access tokens (RFC 8693), against
//! an embedded security token service on 127.0.0.1.
//!
//! ```text
//! cargo run --example token_exchange
//! ```

use std::time::Duration;

use axum::extract::Form;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokenwarden::sources::{SubjectToken, TOKEN_TYPE_ACCESS_TOKEN, TokenExchange};
use tokenwarden::{Event, Refresher};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sts = serve().await?;
    let dir = tempfile::tempdir()?;
    let subject_file = dir.path().join("token");
    std::fs::write(&subject_file, "k8s-sa-token-1")?;

    let source = TokenExchange::builder(sts, SubjectToken::file(&subject_file))
        .audience("https://api.example.com")
        .requested_token_type(TOKEN_TYPE_ACCESS_TOKEN)
        .build()?;
    let handle = Refresher::builder(source).name("federated").spawn();
    let mut events = handle.subscribe();

    // The STS issues 2 s tokens; after the first exchange the kubelet rotates the file, and
    // the next scheduled exchange reads the new one.
    while let Ok(event) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await? {
        if let Event::Rotated { token, reason } = event {
            let from = token.extra()["exchanged_from"].clone();
            println!(
                "rotated ({reason}): a {} token, exchanged from {from}",
                token.token_type()
            );
            if from == "k8s-sa-token-2" {
                break;
            }
            std::fs::write(&subject_file, "k8s-sa-token-2")?;
        }
    }
    handle.shutdown();
    handle.stopped().await;
    Ok(())
}

/// A security token service: accepts subject tokens that look like the kubelet's, issues 2 s
/// access tokens, and says which subject token it exchanged (a demo; never echo real ones).
async fn token_exchange(
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let grant_ok = field("grant_type") == Some("urn:ietf:params:oauth:grant-type:token-exchange");
    let subject = field("subject_token").unwrap_or_default();
    if !grant_ok || !subject.starts_with("k8s-sa-token-") {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        ));
    }
    Ok(Json(json!({
        "access_token": format!("federated-{}", fastrand::u32(..)),
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "N_A",
        "expires_in": 2,
        "exchanged_from": subject,
    })))
}

async fn serve() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/token", listener.local_addr()?);
    let app = Router::new().route("/v1/token", post(token_exchange));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
