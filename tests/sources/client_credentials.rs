//! OAuth2 client credentials (RFC 6749 section 4.4).

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::json;
use tokenwarden::sources::{BodyFormat, ClientAuth, ClientCredentials, HttpOptions};
use tokenwarden::{FetchContext, FetchReason, Refresher, TokenSource};

use crate::server::{Reply, Server};

fn ctx() -> FetchContext {
    FetchContext::new(FetchReason::Initial)
}

#[tokio::test]
async fn sends_a_form_with_basic_auth_by_default() {
    let server = Server::start().await;
    server.reply([Reply::token("tok-1")]);
    let source = ClientCredentials::builder(server.url("/oauth/token"), "my client", "s3:cret")
        .scope("read write")
        .audience("https://api.test")
        .param("provider", "client_credentials")
        .build()
        .unwrap();

    let token = source.fetch(ctx()).await.unwrap();
    assert_eq!(token.expose_secret(), "tok-1");

    let request = server.request(0);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/oauth/token");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.header("accept"), Some("application/json"));
    let basic = request.header("authorization").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(
        decoded, b"my+client:s3%3Acret",
        "id and secret form-encoded, RFC 6749 2.3.1"
    );
    assert_eq!(
        request.form(),
        [
            ("grant_type", "client_credentials"),
            ("scope", "read write"),
            ("audience", "https://api.test"),
            ("provider", "client_credentials"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    let agent = request.header("user-agent").unwrap();
    assert_eq!(agent, concat!("tokenwarden/", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn can_send_json_with_credentials_in_the_body() {
    let server = Server::start().await;
    server.reply([Reply::token("tok-1")]);
    let source = ClientCredentials::builder(server.url("/token"), "id-1", "secret-1")
        .auth(ClientAuth::Body)
        .body_format(BodyFormat::Json)
        .resource("https://api.test/")
        .build()
        .unwrap();

    source.fetch(ctx()).await.unwrap();

    let request = server.request(0);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(
        request.json(),
        json!({
            "grant_type": "client_credentials",
            "resource": "https://api.test/",
            "client_id": "id-1",
            "client_secret": "secret-1"
        })
    );
}

#[tokio::test]
async fn keeps_extra_fields_and_reads_expires_at() {
    let server = Server::start().await;
    server.reply([Reply::json(
        200,
        json!({
            "access_token": "tok-1",
            "token_type": "bearer",
            "expires_at": "2033-05-18T03:33:20Z",
            "environment_id": "env-42",
            "endpoints": {"eu": "https://eu.api.test", "us": "https://us.api.test"}
        }),
    )]);
    let source = ClientCredentials::builder(server.url("/token"), "id", "secret")
        .build()
        .unwrap();

    let token = source.fetch(ctx()).await.unwrap();
    assert_eq!(
        token.expiry(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
    );
    assert_eq!(token.extra()["environment_id"], "env-42");
    assert_eq!(token.extra()["endpoints"]["us"], "https://us.api.test");
    assert_eq!(token.authorization_header().unwrap(), "Bearer tok-1");
}

#[tokio::test]
async fn a_missing_lifetime_takes_the_configured_default() {
    let server = Server::start().await;
    server.reply([Reply::json(200, json!({"access_token": "opaque"}))]);
    let source = ClientCredentials::builder(server.url("/token"), "id", "secret")
        .default_lifetime(Duration::from_secs(600))
        .build()
        .unwrap();

    let token = source.fetch(ctx()).await.unwrap();
    assert_eq!(
        token.time_left(token.issued_at()),
        Some(Duration::from_secs(600))
    );
}

#[tokio::test]
async fn a_callers_client_is_used() {
    let server = Server::start().await;
    server.reply([Reply::token("tok-1")]);
    let client = reqwest::Client::builder().user_agent("my-sdk/2.0");
    let source = ClientCredentials::builder(server.url("/token"), "id", "secret")
        .http(HttpOptions::new().client_builder(client))
        .build()
        .unwrap();
    source.fetch(ctx()).await.unwrap();
    assert_eq!(server.request(0).header("user-agent"), Some("my-sdk/2.0"));
}

#[tokio::test]
async fn works_with_the_refresher_like_any_source() {
    let server = Server::start().await;
    server.reply([Reply::token("tok-1"), Reply::token("tok-2")]);
    let source = ClientCredentials::builder(server.url("/token"), "id", "secret")
        .build()
        .unwrap();
    let handle = Refresher::builder(source).name("cc").spawn();

    assert_eq!(handle.ready().await.unwrap().expose_secret(), "tok-1");
    let rejected = handle.current().unwrap();
    assert_eq!(
        handle.reject(&rejected).await.unwrap().expose_secret(),
        "tok-2"
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_secret_file_is_read_again_at_every_fetch() {
    use tokenwarden::sources::{ClientAuth, Secret};
    let server = Server::start().await;
    server.reply([Reply::token("t1"), Reply::token("t2")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client-secret");
    std::fs::write(&path, "first-secret\n").unwrap();
    let source = ClientCredentials::builder(server.url("/token"), "svc", Secret::file(&path))
        .auth(ClientAuth::Body)
        .build()
        .unwrap();
    source.fetch(ctx()).await.unwrap();
    // Kubernetes swaps the mounted file; the next fetch sends the new secret, no restart.
    std::fs::write(&path, "second-secret").unwrap();
    source.fetch(ctx()).await.unwrap();
    let secret = |n| {
        server
            .request(n)
            .form()
            .into_iter()
            .find(|(k, _)| k == "client_secret")
            .unwrap()
            .1
    };
    assert_eq!(secret(0), "first-secret");
    assert_eq!(secret(1), "second-secret");

    std::fs::remove_file(&path).unwrap();
    let err = source.fetch(ctx()).await.unwrap_err();
    assert!(err.is_transient(), "a missing mount heals: {err}");
    assert!(err.to_string().contains("client-secret"), "{err}");
    assert_eq!(server.requests().len(), 2, "nothing sent without a secret");
}
