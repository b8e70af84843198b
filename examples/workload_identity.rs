//! Workload identity: tokens from the platform itself, against embedded stand-ins for the GCE
//! metadata server and Azure IMDS (on a cloud VM, leave out `host` / `imds_host`: the sources
//! find the platform's own endpoint). The GCE server starts late, as metadata servers do at pod
//! start: the refresher rides it out.
//!
//! ```text
//! cargo run --example workload_identity
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokenwarden::sources::cloud::{AzureManagedIdentity, GceMetadata};
use tokenwarden::{Event, Refresher};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let up = Arc::new(AtomicBool::new(false));
    let platform = serve(up.clone()).await?;

    let gce = GceMetadata::access_token()
        .scopes(["https://www.googleapis.com/auth/cloud-platform"])
        .host(&platform)
        .build()?;
    let gcp = Refresher::builder(gce).name("gcp").spawn();
    let mut events = gcp.subscribe();

    // The metadata server answers 503 at first; it comes up after the first failed try.
    if let Ok(Event::RefreshFailed { error, .. }) = events.recv().await {
        println!("gcp: not up yet ({error}); retrying");
        up.store(true, Ordering::SeqCst);
    }
    let token = gcp.ready().await?;
    println!("gcp: a {} token, {} left", token.token_type(), left(&token));

    let azure = AzureManagedIdentity::builder("https://vault.azure.net/.default")
        .imds_host(format!("http://{platform}"))
        .build()?;
    let vault = Refresher::builder(azure).name("key-vault").spawn();
    let token = vault.ready().await?;
    println!(
        "key-vault: a {} token, {} left",
        token.token_type(),
        left(&token)
    );

    gcp.shutdown();
    vault.shutdown();
    Ok(())
}

fn left(token: &tokenwarden::Token) -> String {
    let left = token.time_left(SystemTime::now()).unwrap_or_default();
    humantime::format_duration(Duration::from_secs(left.as_secs())).to_string()
}

/// GCE's token path and IMDS's, as the platforms document them; `host:port`.
async fn serve(up: Arc<AtomicBool>) -> std::io::Result<String> {
    let gce = move |headers: HeaderMap| {
        let up = up.load(Ordering::SeqCst);
        async move {
            if !up {
                return (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response();
            }
            if headers.get("metadata-flavor").is_none_or(|v| v != "Google") {
                return (StatusCode::FORBIDDEN, "Metadata-Flavor required").into_response();
            }
            let body =
                json!({"access_token": "ya29.example", "expires_in": 3599, "token_type": "Bearer"});
            let mut response: Response = axum::Json(body).into_response();
            response
                .headers_mut()
                .insert("metadata-flavor", "Google".parse().unwrap());
            response
        }
    };
    let imds = |headers: HeaderMap| async move {
        if headers.get("metadata").is_none_or(|v| v != "true") {
            return (StatusCode::BAD_REQUEST, "Metadata header required").into_response();
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = json!({
            "access_token": "eyJ0eXAi.example",
            "expires_in": "86399",
            "expires_on": (now + 86399).to_string(),
            "resource": "https://vault.azure.net",
            "token_type": "Bearer",
        });
        axum::Json(body).into_response()
    };
    let app = Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(gce),
        )
        .route("/metadata/identity/oauth2/token", get(imds));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr.to_string())
}
