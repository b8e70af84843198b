//! One local server on 127.0.0.1:0 that speaks the platforms' documented wire formats: the
//! GCE metadata server, Azure IMDS and the App Service identity endpoint, the GitHub Actions
//! runner's OIDC endpoint, and an RFC 8693 token endpoint that trades what it issued. The
//! official SDKs fetch from it too (see `sdk.rs`), which checks that it is faithful.

#![allow(dead_code)] // the environment test (`tests/cloud_env.rs`) uses a part

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const GCE_EMAIL: &str = "workload@project.iam.gserviceaccount.com";
pub const AZURE_CLIENT_ID: &str = "0d3c3b53-0000-4000-8000-00000000c11d";
pub const IDENTITY_HEADER: &str = "identity-header-secret-7f3a";
pub const GITHUB_REQUEST_TOKEN: &str = "runner-request-token-91bd";

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    issued: AtomicU64,
    /// Connections closed unanswered before the server "comes up".
    down_for: AtomicU32,
    /// Answers with this status before answering properly, as IMDS does while it updates.
    failing: Mutex<Option<(u16, u32)>>,
    /// Leave out `Metadata-Flavor: Google` (something that is not the metadata server).
    unflavored: std::sync::atomic::AtomicBool,
    /// Every JWT issued, so the token endpoint can recognise them.
    jwts: Mutex<Vec<String>>,
}

pub struct Platform {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Platform {
    pub async fn start() -> Platform {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Platform::serve(listener)
    }

    /// On a listener bound before the runtime started (so its port could go in the
    /// environment first).
    pub fn start_on(listener: std::net::TcpListener) -> Platform {
        listener.set_nonblocking(true).unwrap();
        Platform::serve(tokio::net::TcpListener::from_std(listener).unwrap())
    }

    fn serve(listener: tokio::net::TcpListener) -> Platform {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route(
                "/computeMetadata/v1/instance/service-accounts/{account}/{*what}",
                get(
                    |State(shared), Path(path): Path<(String, String)>, uri, headers| {
                        gce(shared, path.0, path.1, uri, headers)
                    },
                ),
            )
            .route(
                "/computeMetadata/v1/instance/service-accounts/{account}/",
                get(|State(shared), Path(account), uri, headers| {
                    gce(shared, account, String::new(), uri, headers)
                }),
            )
            .route("/metadata/identity/oauth2/token", get(imds_token))
            .route("/msi/token", get(app_service_token))
            .route("/_apis/token", get(github_token))
            .route("/sts/token", post(exchange))
            .with_state(shared.clone());
        let addr = listener.local_addr().unwrap();
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                // Not up yet: the connection closes before any answer.
                let down = accept.down_for.load(Ordering::SeqCst);
                if down > 0 {
                    accept.down_for.store(down - 1, Ordering::SeqCst);
                    drop(stream);
                    continue;
                }
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Platform { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Closes the next `connections` connections unanswered.
    pub fn down_for(&self, connections: u32) {
        self.shared.down_for.store(connections, Ordering::SeqCst);
    }

    /// Answers the next `times` token requests with `status`.
    pub fn fail(&self, status: u16, times: u32) {
        *self.shared.failing.lock().unwrap() = Some((status, times));
    }

    pub fn unflavored(&self) {
        self.shared.unflavored.store(true, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Requests whose path ends with `suffix`.
    pub fn seen_at(&self, suffix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|seen| seen.path.ends_with(suffix))
            .collect()
    }
}

impl Shared {
    fn record(&self, uri: &Uri, query: &HashMap<String, String>, headers: &HeaderMap) {
        self.seen.lock().unwrap().push(Seen {
            path: uri.path().to_owned(),
            query: query.clone(),
            headers: headers.clone(),
        });
    }

    fn next(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The scripted failure, if one is due.
    fn failure(&self) -> Option<Response> {
        let mut failing = self.failing.lock().unwrap();
        let (status, times) = failing.as_mut()?;
        if *times == 0 {
            return None;
        }
        *times -= 1;
        let status = StatusCode::from_u16(*status).unwrap();
        Some((status, "temporarily unavailable").into_response())
    }

    /// An unsigned JWT with these claims plus `exp` and `iat` (the platforms' are signed; the
    /// sources read claims, they do not verify).
    fn jwt(&self, mut claims: Value, lifetime: Duration) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + lifetime.as_secs());
        claims["jti"] = json!(self.next());
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"test"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let jwt = format!("{header}.{payload}.c2lnbmF0dXJl");
        self.jwts.lock().unwrap().push(jwt.clone());
        jwt
    }
}

fn query(uri: &Uri) -> HashMap<String, String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn epoch_in(secs: u64) -> String {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs)
        .to_string()
}

// ----- GCE metadata server -----

fn gce_answer(shared: &Shared, status: StatusCode, content_type: &str, body: String) -> Response {
    let mut response = (status, [("content-type", content_type.to_owned())], body).into_response();
    if !shared.unflavored.load(Ordering::SeqCst) {
        response
            .headers_mut()
            .insert("metadata-flavor", "Google".parse().unwrap());
    }
    response
}

/// The checks every metadata request passes: the flavor header and a known account.
fn gce_check(shared: &Shared, headers: &HeaderMap, account: &str) -> Option<Response> {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        let body = "Missing required header: Metadata-Flavor".to_owned();
        return Some(gce_answer(
            shared,
            StatusCode::FORBIDDEN,
            "text/plain",
            body,
        ));
    }
    if account != "default" && account != GCE_EMAIL {
        let body = "Not Found".to_owned();
        return Some(gce_answer(
            shared,
            StatusCode::NOT_FOUND,
            "text/plain",
            body,
        ));
    }
    shared.failure()
}

/// `GET .../service-accounts/{account}/{what}`: `what` is empty (the account's info, which
/// google-auth reads first), `token` or `identity`.
async fn gce(
    shared: Arc<Shared>,
    account: String,
    what: String,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = query(&uri);
    shared.record(&uri, &query, &headers);
    if let Some(refused) = gce_check(&shared, &headers, &account) {
        return refused;
    }
    let (content_type, body) = match what.as_str() {
        "token" => {
            let token = json!({
                "access_token": format!("ya29.gce-access-{}", shared.next()),
                "expires_in": 3599,
                "token_type": "Bearer",
            });
            ("application/json", token.to_string())
        }
        "identity" => {
            let Some(audience) = query.get("audience") else {
                let body = "non-empty audience parameter required".to_owned();
                return gce_answer(&shared, StatusCode::BAD_REQUEST, "text/plain", body);
            };
            let claims = json!({
                "aud": audience,
                "iss": "https://accounts.google.com",
                "sub": "1234567890",
                "email": GCE_EMAIL,
            });
            let jwt = shared.jwt(claims, Duration::from_secs(3600));
            ("text/html; charset=utf-8", jwt)
        }
        _ => {
            let info = json!({
                "aliases": ["default"],
                "email": GCE_EMAIL,
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            });
            ("application/json", info.to_string())
        }
    };
    gce_answer(&shared, StatusCode::OK, content_type, body)
}

// ----- Azure -----

fn azure_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (status, axum::Json(body)).into_response()
}

async fn imds_token(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let query = query(&uri);
    shared.record(&uri, &query, &headers);
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        let why = "Required metadata header not specified";
        return azure_error(StatusCode::BAD_REQUEST, "invalid_request", why);
    }
    if query.get("api-version").map(String::as_str) != Some("2018-02-01") {
        return azure_error(StatusCode::BAD_REQUEST, "invalid_request", "api-version");
    }
    let Some(resource) = query.get("resource") else {
        return azure_error(StatusCode::BAD_REQUEST, "invalid_request", "resource");
    };
    if query
        .get("client_id")
        .is_some_and(|id| id != AZURE_CLIENT_ID)
    {
        let why = "Identity not found";
        return azure_error(StatusCode::BAD_REQUEST, "invalid_request", why);
    }
    if let Some(failure) = shared.failure() {
        return failure;
    }
    let body = json!({
        "access_token": format!("azure-imds-{}", shared.next()),
        "client_id": AZURE_CLIENT_ID,
        "expires_in": "86399",
        "expires_on": epoch_in(86399),
        "ext_expires_in": "86399",
        "not_before": epoch_in(0),
        "resource": resource,
        "token_type": "Bearer",
    });
    axum::Json(body).into_response()
}

async fn app_service_token(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = query(&uri);
    shared.record(&uri, &query, &headers);
    if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some(IDENTITY_HEADER)
    {
        let body = json!({"statusCode": 401, "message": "Unauthorized request"});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        let body = json!({"statusCode": 400, "message": "api-version"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let Some(resource) = query.get("resource") else {
        let body = json!({"statusCode": 400, "message": "resource"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    let body = json!({
        "access_token": format!("azure-app-{}", shared.next()),
        "expires_on": epoch_in(86399),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": AZURE_CLIENT_ID,
    });
    axum::Json(body).into_response()
}

// ----- GitHub Actions runner -----

async fn github_token(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let query = query(&uri);
    shared.record(&uri, &query, &headers);
    let expected = format!("Bearer {GITHUB_REQUEST_TOKEN}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let audience = query
        .get("audience")
        .cloned()
        .unwrap_or_else(|| "https://github.com/octo-org".to_owned());
    let claims = json!({
        "aud": audience,
        "iss": "https://token.actions.githubusercontent.com",
        "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
        "repository": "octo-org/octo-repo",
    });
    let jwt = shared.jwt(claims, Duration::from_secs(300));
    axum::Json(json!({"count": 1, "value": jwt})).into_response()
}

// ----- RFC 8693 token exchange -----

async fn exchange(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let grant = form.get("grant_type").map(String::as_str);
    if grant != Some("urn:ietf:params:oauth:grant-type:token-exchange") {
        return azure_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant");
    }
    let subject = form.get("subject_token").cloned().unwrap_or_default();
    if !shared.jwts.lock().unwrap().contains(&subject) {
        return azure_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown subject");
    }
    let body = json!({
        "access_token": format!("federated-{}", shared.next()),
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": 3600,
    });
    axum::Json(body).into_response()
}
