//! Secrets never appear in logs, `Debug`, `Display` or error messages.
//!
//! A test binary of its own: tracing caches which call sites are enabled process-wide, so a
//! thread-local subscriber is only reliable when no other test logs concurrently.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, json};
use tokenwarden::{
    Clock, Error, Event, FetchContext, FetchError, FetchReason, RefreshPolicy, Refresher, Token,
    TokenState,
};
use tracing_subscriber::fmt::MakeWriter;

/// Every string that must never be printed contains this.
const MARK: &str = "SECRET";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Captures every crate's logs at TRACE on this thread while the guard lives.
fn capture_trace() -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// A source whose tokens carry secrets everywhere a token can: the access token, the refresh
/// token and an extra field. Every third fetch fails, every seventh permanently.
fn secretive_source() -> impl tokenwarden::TokenSource {
    let n = Arc::new(AtomicU32::new(0));
    tokenwarden::from_fn(move |_ctx| {
        let n = n.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n.is_multiple_of(7) {
                return Err(FetchError::permanent(
                    "https://auth.test/token: invalid_grant",
                ));
            }
            if n.is_multiple_of(3) {
                return Err(
                    FetchError::transient("https://auth.test/token answered 503")
                        .with_retry_after(Duration::from_secs(2)),
                );
            }
            let mut extra = Map::new();
            extra.insert("id_token".into(), json!(format!("{MARK}-id-{n}")));
            Ok(Token::new(format!("{MARK}-access-{n}"))
                .expires_in(Duration::from_secs(60))
                .with_refresh_token(format!("{MARK}-refresh-{n}"))
                .with_extra(extra))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_full_rotation_at_trace_level_leaks_no_secret() {
    let (logs, _guard) = capture_trace();

    let handle = Refresher::builder(secretive_source())
        .name("leak-check")
        .clock(Clock::tokio())
        .spawn();
    let mut events = handle.subscribe();
    let mut printed = Vec::new();

    printed.push(format!("{:?}", handle.current())); // pending
    let token = handle.ready().await.unwrap();
    printed.push(format!("{token:?} {token:#?}"));
    printed.push(format!("{:?}", token.authorization_header().unwrap()));
    printed.push(format!("{handle:?}"));

    // Rotations, transient and permanent failures, a rejection, expiry, re-arm.
    for _ in 0..12 {
        let reject = handle.reject(&token).await;
        printed.push(format!("{reject:?}"));
        if let Err(e) = &reject {
            printed.push(e.to_string());
        }
        tokio::time::advance(Duration::from_secs(50)).await;
        printed.push(format!("{:?} {:?}", handle.state(), handle.current()));
        if let Err(e) = handle.current() {
            printed.push(e.to_string());
        }
    }
    handle.shutdown();
    handle.stopped().await;
    printed.push(format!("{:?} {:?}", handle.state(), handle.current()));

    let mut kinds = std::collections::BTreeSet::new();
    while let Ok(event) = events.try_recv() {
        kinds.insert(
            format!("{event:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned(),
        );
        printed.push(format!("{event:?} {event:#?} {event}"));
        if let Event::RefreshFailed { error, .. } = &event {
            printed.push(error.to_string());
        }
    }
    // The run really went through every kind of event.
    for kind in [
        "Rotated",
        "RefreshFailed",
        "Recovered",
        "Expired",
        "Stopped",
    ] {
        assert!(kinds.contains(kind), "no {kind} event in {kinds:?}");
    }

    let logs = logs.text();
    assert!(logs.contains("token rotated"), "logs were captured: {logs}");
    assert!(logs.contains("fetching a token failed"), "{logs}");
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "{logs}");
    assert!(!logs.contains(MARK), "a secret in the logs:\n{logs}");
    for text in printed {
        assert!(!text.contains(MARK), "a secret in {text}");
    }
}

/// A configuration error, as a user's `?` would turn it into an [`Error`].
struct ConfigErrorProbe;

impl ConfigErrorProbe {
    fn config() -> tokenwarden::ConfigError {
        tokenwarden::sources::ClientCredentials::builder(
            "http://auth.test/token",
            "id",
            format!("{MARK}-x"),
        )
        .build()
        .unwrap_err()
    }
}

#[tokio::test]
async fn debug_and_display_of_every_public_type_hide_secrets() {
    let token = Token::new(format!("{MARK}-access"))
        .with_refresh_token(format!("{MARK}-refresh"))
        .expires_in(Duration::from_secs(60));
    let error = FetchError::transient("503").with_source(std::io::Error::other("reset"));
    let context = FetchContext::new(FetchReason::Scheduled).with_previous(token.clone());
    let builder = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
        Err::<Token, _>(FetchError::transient("down"))
    }));
    let printed = [
        format!("{token:?}"),
        format!("{context:?}"),
        format!("{:?}", TokenState::Fresh(token.clone())),
        format!("{:?}", TokenState::Refreshing(token.clone())),
        format!(
            "{:?}",
            TokenState::Stale {
                token: token.clone(),
                last_error: error.clone(),
                next_attempt: None,
            }
        ),
        format!(
            "{:?}",
            Event::Rotated {
                token: token.clone(),
                reason: FetchReason::Forced
            }
        ),
        format!("{error:?} {error}"),
        format!(
            "{:?} {}",
            Error::Fetch(error.clone()),
            Error::Fetch(error.clone())
        ),
        format!("{builder:?}"),
        format!("{:?}", RefreshPolicy::default()),
        format!("{:?}", Clock::system()),
        format!("{:?}", token.refresh_token().unwrap()),
    ];
    let mut printed = printed.to_vec();
    {
        use tokenwarden::sources::{
            ClientCredentials, Credential, Secret, SubjectToken, TokenExchange,
        };
        let secret = Secret::from(format!("{MARK}-client-secret"));
        let source = ClientCredentials::builder("https://auth.test/token", "id", secret.clone())
            .build()
            .unwrap();
        let exchange = TokenExchange::builder(
            "https://auth.test/token",
            SubjectToken::source(tokenwarden::sources::StaticToken::new(token.clone())),
        )
        .client("id", secret.clone())
        .build()
        .unwrap();
        printed.extend([
            format!("{secret:?}"),
            format!("{:?}", Credential::from(secret.clone())),
            format!("{source:?}"),
            format!("{exchange:?}"),
            format!("{:?}", Error::from(ConfigErrorProbe::config())),
        ]);
    }
    #[cfg(feature = "signing")]
    {
        use tokenwarden::sources::{JwtBearer, ServiceAccountKey, SigningKey};
        let pem = include_str!("fixtures/rsa_private.pem");
        let key = SigningKey::rs256_pem(pem).unwrap();
        let account = ServiceAccountKey::from_json(
            &json!({"client_email": "a@b", "token_uri": "https://t", "private_key": pem})
                .to_string(),
        )
        .unwrap();
        let jwt = JwtBearer::service_account(account.clone()).build().unwrap();
        for text in [
            format!("{key:?}"),
            format!("{account:?}"),
            format!("{jwt:?}"),
        ] {
            assert!(
                !text.contains("PRIVATE KEY") && !text.contains(&pem[40..80]),
                "{text}"
            );
        }
    }
    for text in printed {
        assert!(!text.contains(MARK), "a secret in {text}");
    }
    assert!(
        format!("{error:?}").contains("reset"),
        "the source chain is shown"
    );
}

/// The HTTP sources too, with every crate's TRACE output captured (reqwest, hyper, axum):
/// a server that echoes the key back in its errors, a refresh token, rotations.
#[tokio::test]
async fn the_http_sources_at_trace_level_leak_no_secret() {
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use tokenwarden::sources::ApiKeyExchange;

    let (logs, _guard) = capture_trace();

    let calls = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route(
            "/jwt",
            post({
                let calls = calls.clone();
                move |headers: HeaderMap| async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    let key = headers["authorization"].to_str().unwrap().to_owned();
                    if n == 0 {
                        // A server that echoes what it was sent.
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(json!({"error": "busy", "error_description": key})),
                        );
                    }
                    (
                        StatusCode::OK,
                        axum::Json(json!({
                            "token": format!("{MARK}-jwt-{n}"),
                            "expires_in": 60,
                            "refresh_token": format!("{MARK}-rt-{n}")
                        })),
                    )
                }
            }),
        )
        .route(
            "/refresh",
            post(|body: String| async move {
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"error": "invalid_grant", "error_description": body})),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let source = ApiKeyExchange::builder(format!("{base}/jwt"), format!("{MARK}-api-key"))
        .refresh_url(format!("{base}/refresh"))
        .build()
        .unwrap();
    let handle = Refresher::builder(source).name("leak-check-http").spawn();
    let mut printed = vec![format!("{handle:?}")];
    let token = handle.ready().await.unwrap(); // after one 503 and a retry
    printed.push(format!("{token:?}"));
    // The refresh token is refused (echoed back), then the key is exchanged again.
    let again = handle.reject(&token).await.unwrap();
    printed.push(format!("{again:?} {:?}", handle.state()));

    let logs = logs.text();
    assert!(logs.contains("fetching a token failed"), "{logs}");
    assert!(
        logs.contains("hyper") || logs.contains("reqwest"),
        "dependency logs captured"
    );
    assert!(!logs.contains(MARK), "a secret in the logs:\n{logs}");
    for text in printed {
        assert!(!text.contains(MARK), "a secret in {text}");
    }
}

// ----- every HTTP source against a server that echoes every secret back -----

const CLIENT_SECRET: &str = "SECRET+c:l/i%e&n=t";
const REFRESH_TOKEN: &str = "SECRET-rt/+=x";
const API_KEY: &str = "SECRETkeyAbC42";
const SUBJECT_TOKEN: &str = "SECRET-subject/+=token";

/// Every signed assertion the echoing server received: none may be printed either.
static ASSERTIONS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Every way the secrets of a request can come back from a server.
fn forms_of(secret: &str) -> Vec<String> {
    use base64::Engine;
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let form = encode(secret);
    vec![
        secret.to_owned(),
        secret.to_ascii_lowercase(),
        form.clone(),
        form.to_ascii_lowercase(),
        encode(&form),
        base64::engine::general_purpose::STANDARD.encode(format!("client-1:{form}")),
    ]
}

/// Answers each request in turn: a token (whose secrets must not be printed either), then
/// errors that echo the request's body and `Authorization` in the description (padded so a
/// secret straddles the 300-character cut), in `Location` (path and host) and in
/// `WWW-Authenticate`.
async fn echo(
    axum::extract::State(n): axum::extract::State<Arc<AtomicU32>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    for (name, value) in form_urlencoded::parse(body.as_bytes()) {
        if name == "assertion" || name == "client_assertion" {
            ASSERTIONS.lock().unwrap().push(value.into_owned());
        }
    }
    let echoed = format!("you sent {body} with {auth}");
    // Padded so that the first secret in the echo starts 5 characters before the message's
    // cut at 300 (after `invalid_request (`, 17 characters).
    let pad = echoed
        .find(MARK)
        .map_or(0, |at| 278usize.saturating_sub(at));
    let padded = format!("{}{echoed}", "x".repeat(pad));
    // A bearer credential (the API key) echoed as a host, lowercased as URL parsers do.
    let host_key = auth
        .strip_prefix("Bearer ")
        .unwrap_or("none")
        .to_ascii_lowercase();
    let path: String = form_urlencoded::byte_serialize(echoed.as_bytes()).collect();
    match n.fetch_add(1, Ordering::SeqCst) % 5 {
        0 => axum::Json(json!({
            "access_token": format!("{MARK}-issued-access"),
            "token": format!("{MARK}-issued-access"),
            "refresh_token": format!("{MARK}-issued-refresh"),
            "expires_in": 3600,
        }))
        .into_response(),
        1 => (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request", "error_description": padded})),
        )
            .into_response(),
        2 => (
            axum::http::StatusCode::FOUND,
            [(
                "location",
                format!("http://{host_key}.evil.test/{path}?{path}"),
            )],
        )
            .into_response(),
        3 => (
            axum::http::StatusCode::UNAUTHORIZED,
            [("www-authenticate", format!("Basic realm=\"{auth}\""))],
            axum::Json(json!({"error": "invalid_client", "message": echoed})),
        )
            .into_response(),
        _ => (axum::http::StatusCode::SERVICE_UNAVAILABLE, echoed).into_response(),
    }
}

#[tokio::test]
async fn every_http_source_against_an_echoing_server_leaks_nothing() {
    use tokenwarden::sources::{
        ApiKeyExchange, BodyFormat, ClientAuth, ClientCredentials, RefreshTokenGrant, Secret,
        SubjectToken, TokenExchange,
    };
    let (logs, _guard) = capture_trace();
    let dir = tempfile::tempdir().unwrap();
    let (secret_file, key_file, subject_file) = (
        dir.path().join("client-secret"),
        dir.path().join("api-key"),
        dir.path().join("subject-token"),
    );
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    std::fs::write(&key_file, API_KEY).unwrap();
    std::fs::write(&subject_file, SUBJECT_TOKEN).unwrap();
    let app = axum::Router::new()
        .route("/token", axum::routing::post(echo))
        .with_state(Arc::new(AtomicU32::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let sources: Vec<(&str, Arc<dyn tokenwarden::TokenSource>)> = vec![
        (
            "client credentials, Basic, form",
            Arc::new(
                ClientCredentials::builder(&url, "client-1", CLIENT_SECRET)
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "client credentials, body, JSON",
            Arc::new(
                ClientCredentials::builder(&url, "client-1", CLIENT_SECRET)
                    .auth(ClientAuth::Body)
                    .body_format(BodyFormat::Json)
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "refresh-token grant",
            Arc::new(
                RefreshTokenGrant::builder(&url, REFRESH_TOKEN)
                    .client_id("client-1")
                    .client_secret(CLIENT_SECRET)
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "API-key exchange",
            Arc::new(ApiKeyExchange::builder(&url, API_KEY).build().unwrap()),
        ),
        (
            "client credentials, secret from a file",
            Arc::new(
                ClientCredentials::builder(&url, "client-1", Secret::file(&secret_file))
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "API-key exchange, key from a file",
            Arc::new(
                ApiKeyExchange::builder(&url, Secret::file(&key_file))
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "token exchange, subject token from a file",
            Arc::new(
                TokenExchange::builder(&url, SubjectToken::file(&subject_file))
                    .client("client-1", CLIENT_SECRET)
                    .auth(ClientAuth::Body)
                    .build()
                    .unwrap(),
            ),
        ),
    ];
    #[cfg(feature = "signing")]
    let sources = {
        use tokenwarden::sources::{JwtBearer, SigningKey};
        let key = || SigningKey::es256_pem(include_str!("fixtures/ec_private.pem")).unwrap();
        let mut sources = sources;
        sources.push((
            "JWT-bearer grant",
            Arc::new(JwtBearer::builder(&url, "svc", key()).build().unwrap()),
        ));
        sources.push((
            "client credentials, private_key_jwt",
            Arc::new(
                ClientCredentials::builder(&url, "client-1", key())
                    .build()
                    .unwrap(),
            ),
        ));
        sources
    };
    let mut policy = RefreshPolicy::default();
    policy.min_interval = Duration::from_millis(1);
    let mut printed = Vec::new();
    for (name, source) in sources {
        let handle = Refresher::builder(source)
            .name(name)
            .policy(policy.clone())
            .spawn();
        let mut events = handle.subscribe();
        // Every answer of the cycle, at least once, whatever the first one was.
        for _ in 0..6 {
            let result = handle.refresh().await;
            printed.push(format!("{result:?}"));
            if let Err(error) = &result {
                printed.push(error.to_string());
            }
            printed.push(format!("{:?} {handle:?}", handle.state()));
        }
        handle.shutdown();
        handle.stopped().await;
        while let Ok(event) = events.try_recv() {
            printed.push(format!("{event:?}"));
        }
    }
    let logs = logs.text();
    assert!(
        logs.contains("you sent"),
        "the echoes reached the logs: {logs}"
    );
    assert!(
        printed.iter().any(|p| p.contains("[redacted]")),
        "{printed:?}"
    );
    let everything = format!("{logs}\n{}", printed.join("\n"));
    let assertions = ASSERTIONS.lock().unwrap().clone();
    #[cfg(feature = "signing")]
    assert!(
        assertions.len() >= 6,
        "the assertions were sent: {}",
        assertions.len()
    );
    for assertion in &assertions {
        // Its signature is enough to replay it: neither it nor the whole may be printed.
        let signature = assertion.rsplit('.').next().unwrap();
        assert!(!everything.contains(signature), "an assertion leaked");
    }
    for secret in [CLIENT_SECRET, REFRESH_TOKEN, API_KEY, SUBJECT_TOKEN] {
        for form in forms_of(secret) {
            assert!(
                !everything.contains(&form),
                "{secret} leaked as {form:?}:\n{}",
                everything
                    .lines()
                    .filter(|line| line.contains(&form))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    assert!(
        !everything.contains(MARK),
        "an issued token or a secret leaked"
    );
    // Every secret starts with the mark: its first five letters are a cut secret.
    assert!(
        !everything.contains(&MARK[..5]),
        "a secret's prefix survived a cut"
    );
}
