//! tokenwarden in 16 seconds, with nothing to configure.
//!
//! Starts an embedded OAuth2 token endpoint on 127.0.0.1 (client credentials, HTTP Basic,
//! tokens living 4 s), and keeps one credential fresh against it with the built-in
//! [`ClientCredentials`] flow while a "request loop" reads the token every 250 ms. From 6 s to
//! 12 s the endpoint answers 503: watch the refresher back off (each retry waits longer), keep
//! serving the still-valid token, report the expiry, and recover as soon as the endpoint is
//! back. The closing summary is computed from what happened. Prints token metadata, never the
//! secret. Stops after 16 s or on Ctrl-C.
//!
//! ```text
//! cargo run --example quickstart
//! RUST_LOG=tokenwarden=debug cargo run --example quickstart   # the refresher's own logs too
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokenwarden::sources::ClientCredentials;
use tokenwarden::{Event, Refresher, Token};
use tokio_util::sync::CancellationToken;

const TOKEN_LIFETIME_SECS: u64 = 4;
const OUTAGE: std::ops::Range<Duration> = Duration::from_secs(6)..Duration::from_secs(12);
const RUN_FOR: Duration = Duration::from_secs(16);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .init();

    let started = Instant::now();
    let endpoint = Endpoint {
        started,
        issued: Arc::default(),
        refused: Arc::default(),
    };
    let token_url = spawn_token_endpoint(endpoint.clone()).await?;
    println!(
        "token endpoint: {token_url} (tokens live {TOKEN_LIFETIME_SECS}s; down from {:?} to {:?})",
        OUTAGE.start, OUTAGE.end
    );

    // The part an SDK writes: which flow, which endpoint, which client. The rest is
    // tokenwarden's job.
    let source = ClientCredentials::builder(&token_url, "quickstart", "s3cr3t")
        .scope("demo")
        .build()?;
    let shutdown = CancellationToken::new();
    let handle = Refresher::builder(source)
        .name("quickstart")
        .cancellation_token(shutdown.clone())
        .spawn();
    let mut events = handle.subscribe();

    let first = handle.ready().await?;
    let at = || started.elapsed().as_secs_f64();
    println!("{:>5.1}s  ready: {}", at(), describe(&first));

    // A service's request path: a cheap synchronous read before every call.
    let reader = handle.clone();
    let requests = tokio::spawn(async move {
        let mut reads = Vec::new(); // (when, had a valid token)
        loop {
            // A real service would attach `token.authorization_header()` to its request.
            reads.push((started.elapsed(), reader.current().is_ok()));
            tokio::select! {
                () = reader.stopped() => return reads,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });

    let mut story = Story::default();
    let stop_at = tokio::time::sleep(RUN_FOR);
    tokio::pin!(stop_at);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = &mut stop_at => break,
            event = events.recv() => match event {
                Ok(event) => {
                    println!("{:>5.1}s  {}", at(), narrate(&event));
                    story.record(&event, started.elapsed());
                }
                Err(_) => break,
            },
        }
    }

    shutdown.cancel();
    handle.stopped().await;
    let reads = requests.await?;
    println!("{:>5.1}s  stopped.\n", at());
    story.summarise(&reads, &endpoint);
    Ok(())
}

/// What the event stream told, for the summary.
#[derive(Default)]
struct Story {
    rotations: u32,
    retry_delays: Vec<Duration>,
    /// When the token expired and when a new one came, if it did.
    expired: Vec<(Duration, Option<Duration>)>,
}

impl Story {
    fn record(&mut self, event: &Event, at: Duration) {
        match event {
            Event::Rotated { .. } => {
                self.rotations += 1;
                if let Some((_, end @ None)) = self.expired.last_mut() {
                    *end = Some(at);
                }
            }
            Event::RefreshFailed {
                retry_in: Some(delay),
                ..
            } => self.retry_delays.push(*delay),
            Event::Expired { .. } => self.expired.push((at, None)),
            _ => {}
        }
    }

    fn summarise(&self, reads: &[(Duration, bool)], endpoint: &Endpoint) {
        let valid = reads.iter().filter(|(_, ok)| *ok).count();
        let without: Vec<Duration> = reads
            .iter()
            .filter(|(_, ok)| !*ok)
            .map(|(at, _)| *at)
            .collect();
        // A read may land just before the `Expired` event reaches this loop: half a second of
        // slack on each side of the window.
        let slack = Duration::from_millis(500);
        let in_expiry = without
            .iter()
            .filter(|at| {
                self.expired.iter().any(|(from, to)| {
                    **at + slack >= *from && to.is_none_or(|to| **at <= to + slack)
                })
            })
            .count();
        let delays: Vec<String> = self
            .retry_delays
            .iter()
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .collect();
        let windows: Vec<String> = self
            .expired
            .iter()
            .map(|(from, to)| match to {
                Some(to) => format!("{:.1}s-{:.1}s", from.as_secs_f64(), to.as_secs_f64()),
                None => format!("from {:.1}s", from.as_secs_f64()),
            })
            .collect();
        println!("summary");
        println!(
            "  tokens issued: {}; rotations seen: {}",
            endpoint.issued.load(Ordering::SeqCst),
            self.rotations
        );
        println!(
            "  during the {:.0}s outage the endpoint saw {} requests; the refresher's waits grew: {}",
            (OUTAGE.end - OUTAGE.start).as_secs_f64(),
            endpoint.refused.load(Ordering::SeqCst),
            if delays.is_empty() {
                "(no failures)".to_string()
            } else {
                delays.join(" -> ")
            }
        );
        println!(
            "  reads with a valid token: {valid} of {}; without: {} ({} of them while no token was valid: {})",
            reads.len(),
            without.len(),
            in_expiry,
            if windows.is_empty() {
                "never".to_string()
            } else {
                windows.join(", ")
            }
        );
    }
}

fn narrate(event: &Event) -> String {
    match event {
        Event::Rotated { token, reason } => format!("rotated ({reason}): {}", describe(token)),
        Event::RefreshFailed {
            error,
            attempt,
            retry_in,
        } => match retry_in {
            Some(retry_in) => format!(
                "refresh failed (attempt {attempt}): {error}; next try in {:.1}s",
                retry_in.as_secs_f64()
            ),
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
        "{} JWT #{} for {}, scope {:?}, expires in {expires_in}",
        token.token_type(),
        claims.get("jti").unwrap_or(&Value::Null),
        claims.get("sub").unwrap_or(&Value::Null),
        token.scope().unwrap_or_default(),
    )
}

// ----- the embedded token endpoint (RFC 6749 section 4.4, as a server sees it) -----

#[derive(Clone)]
struct Endpoint {
    started: Instant,
    issued: Arc<AtomicU32>,
    refused: Arc<AtomicU32>,
}

async fn spawn_token_endpoint(endpoint: Endpoint) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/oauth/token", post(issue_token))
        .with_state(endpoint);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}/oauth/token"))
}

async fn issue_token(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    if OUTAGE.contains(&endpoint.started.elapsed()) {
        endpoint.refused.fetch_add(1, Ordering::SeqCst);
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "temporarily_unavailable" })),
        ));
    }
    // HTTP Basic with the form-encoded id and secret (RFC 6749 section 2.3.1).
    let client = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok());
    let grant = form
        .iter()
        .any(|(k, v)| k == "grant_type" && v == "client_credentials");
    if client.as_deref() != Some("quickstart:s3cr3t") || !grant {
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
        "sub": "quickstart",
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
        "scope": "demo",
    })))
}
