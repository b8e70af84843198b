//! tokenwarden in 15 seconds, with nothing to configure.
//!
//! Starts an embedded OAuth2-style token endpoint on 127.0.0.1 that issues tokens living 4 s,
//! then keeps one credential fresh against it while a "request loop" reads the token every
//! 250 ms. From 6 s to 10 s the endpoint answers 503: watch the refresher back off, keep
//! serving the still-valid token, report the expiry, and recover as soon as the endpoint is
//! back. Prints token metadata, never the secret. Stops after 15 s or on Ctrl-C.
//!
//! ```text
//! cargo run --example quickstart
//! RUST_LOG=tokenwarden=debug cargo run --example quickstart   # the refresher's own logs too
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokenwarden::{Event, FetchError, Refresher, Token};
use tokio_util::sync::CancellationToken;

const TOKEN_LIFETIME_SECS: u64 = 4;
const OUTAGE: std::ops::Range<Duration> = Duration::from_secs(6)..Duration::from_secs(10);
const RUN_FOR: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .init();

    let started = Instant::now();
    let endpoint = spawn_token_endpoint(started).await?;
    println!(
        "token endpoint: {endpoint} (tokens live {TOKEN_LIFETIME_SECS}s; down from 6s to 10s)"
    );

    // The part an SDK writes: how to get a token. Everything else is tokenwarden's job.
    let client = reqwest::Client::new();
    let source = tokenwarden::from_fn(move |_ctx| {
        let client = client.clone();
        let url = endpoint.clone();
        async move {
            let response = client
                .post(&url)
                .json(&json!({ "client_id": "quickstart", "client_secret": "s3cr3t" }))
                .send()
                .await
                .map_err(|e| FetchError::transient(format!("{url}: {}", e.without_url())))?;
            let status = response.status();
            if !status.is_success() {
                let error = FetchError::transient(format!("{url} answered {status}"));
                return Err(if status.is_client_error() {
                    FetchError::permanent(error.message())
                } else {
                    error
                });
            }
            let body: Value = response
                .json()
                .await
                .map_err(|e| FetchError::transient(format!("{url}: unreadable answer: {e}")))?;
            let access_token = body["access_token"].as_str().ok_or_else(|| {
                FetchError::transient(format!("{url}: the answer has no access_token"))
            })?;
            let expires_in = body["expires_in"].as_u64().unwrap_or(3600);
            Ok(Token::new(access_token).expires_in(Duration::from_secs(expires_in)))
        }
    });

    let shutdown = CancellationToken::new();
    let handle = Refresher::builder(source)
        .name("quickstart")
        .cancellation_token(shutdown.clone())
        .spawn();
    let mut events = handle.subscribe();

    let first = handle.ready().await?;
    println!(
        "{:>5.1}s  ready: {}",
        started.elapsed().as_secs_f64(),
        describe(&first)
    );

    // A service's request path: a cheap synchronous read before every call.
    let reader = handle.clone();
    let requests = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, 0u32);
        loop {
            match reader.current() {
                Ok(_token) => ok += 1, // attach `_token.authorization_header()` to the request
                Err(_) => failed += 1,
            }
            tokio::select! {
                () = reader.stopped() => return (ok, failed),
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });

    let stop_at = tokio::time::sleep(RUN_FOR);
    tokio::pin!(stop_at);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = &mut stop_at => break,
            event = events.recv() => match event {
                Ok(event) => println!("{:>5.1}s  {}", started.elapsed().as_secs_f64(), narrate(&event)),
                Err(_) => break,
            },
        }
    }

    shutdown.cancel();
    handle.stopped().await;
    let (ok, failed) = requests.await?;
    println!(
        "{:>5.1}s  stopped. requests with a valid token: {ok}, without: {failed} (only while the token had expired during the outage)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn narrate(event: &Event) -> String {
    match event {
        Event::Rotated { token, reason } => format!("rotated ({reason}): {}", describe(token)),
        Event::RefreshFailed {
            error,
            attempt,
            retry_in,
        } => match retry_in {
            Some(retry_in) => {
                format!("refresh failed (attempt {attempt}): {error}; retrying in {retry_in:.1?}")
            }
            None => format!("refresh failed permanently: {error}"),
        },
        Event::Expired { .. } => "token expired before a new one was obtained".into(),
        Event::Recovered { failed_attempts } => {
            format!("recovered after {failed_attempts} failed attempts")
        }
        Event::Stopped => "refresher stopped".into(),
        other => format!("{other:?}"),
    }
}

/// Metadata only: the secret is never printed.
fn describe(token: &Token) -> String {
    let expires_in = token
        .time_left(SystemTime::now())
        .map_or("never".into(), |left| format!("{:.1}s", left.as_secs_f64()));
    let claims = token.claims().unwrap_or_default();
    format!(
        "{} JWT #{} for {}, expires in {expires_in}",
        token.token_type(),
        claims.get("jti").unwrap_or(&Value::Null),
        claims.get("sub").unwrap_or(&Value::Null),
    )
}

// ----- the embedded token endpoint -----

#[derive(Clone)]
struct Endpoint {
    started: Instant,
    issued: Arc<AtomicU32>,
}

async fn spawn_token_endpoint(started: Instant) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/oauth/token", post(issue_token))
        .with_state(Endpoint {
            started,
            issued: Arc::new(AtomicU32::new(0)),
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}/oauth/token"))
}

async fn issue_token(
    State(endpoint): State<Endpoint>,
    Json(request): Json<Value>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    if OUTAGE.contains(&endpoint.started.elapsed()) {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "temporarily_unavailable" })),
        ));
    }
    if request["client_secret"] != "s3cr3t" {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client" })),
        ));
    }
    let n = endpoint.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let claims = json!({
        "sub": request["client_id"],
        "jti": n,
        "exp": now.as_secs() + TOKEN_LIFETIME_SECS,
    });
    // An unsigned JWT shape is enough for a demo; real servers sign theirs.
    let jwt = format!(
        "{}.{}.demo-signature-{n}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
    );
    Ok(Json(json!({
        "access_token": jwt,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
    })))
}
