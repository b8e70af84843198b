//! API key to short-lived token exchange.

use serde_json::json;
use tokenwarden::sources::ApiKeyExchange;
use tokenwarden::{ExposeSecret, FetchContext, FetchReason, Refresher, TokenSource};

use crate::server::{Reply, Server, assert_no_secret};

const KEY: &str = "sk-live-0123456789";

fn ctx() -> FetchContext {
    FetchContext::new(FetchReason::Initial)
}

#[tokio::test]
async fn posts_the_key_as_bearer_with_the_configured_body() {
    let server = Server::start().await;
    server.reply([Reply::json(
        200,
        json!({"token": "jwt-1", "expires_in": 900}),
    )]);
    let source = ApiKeyExchange::builder(server.url("/api/v1/inference_tokens"), KEY)
        .body(json!({"client_id": "example-sdk/1.2.0"}))
        .build()
        .unwrap();

    let token = source.fetch(ctx()).await.unwrap();
    assert_eq!(token.expose_secret(), "jwt-1");
    assert_eq!(
        token.time_left(token.issued_at()),
        Some(std::time::Duration::from_secs(900))
    );
    let request = server.request(0);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/v1/inference_tokens");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.json(), json!({"client_id": "example-sdk/1.2.0"}));
}

#[tokio::test]
async fn the_token_field_names_are_configurable() {
    let server = Server::start().await;
    server.reply([
        Reply::json(200, json!({"jwt": "from-jwt-field"})),
        Reply::json(200, json!({"data": {"t": 1}, "bearer": "custom"})),
    ]);
    let default = ApiKeyExchange::builder(server.url("/v1/auth/jwt"), KEY)
        .build()
        .unwrap();
    assert_eq!(
        default.fetch(ctx()).await.unwrap().expose_secret(),
        "from-jwt-field"
    );
    assert!(
        server.request(0).body.is_empty(),
        "no body unless configured"
    );

    let custom = ApiKeyExchange::builder(server.url("/v1/auth/jwt"), KEY)
        .token_fields(["bearer"])
        .build()
        .unwrap();
    assert_eq!(custom.fetch(ctx()).await.unwrap().expose_secret(), "custom");
}

#[tokio::test]
async fn a_rejected_key_is_named_plainly_and_is_permanent() {
    let server = Server::start().await;
    server.reply([Reply::json(
        401,
        json!({"error": "invalid_api_key", "error_description": format!("key {KEY} is revoked")}),
    )]);
    let source = ApiKeyExchange::builder(server.url("/v1/auth/jwt"), KEY)
        .build()
        .unwrap();

    let error = source.fetch(ctx()).await.unwrap_err();
    assert!(error.is_permanent());
    let text = error.to_string();
    assert!(
        text.contains("answered 401 Unauthorized: invalid_api_key"),
        "{text}"
    );
    assert!(text.contains("the API key was rejected"), "{text}");
    assert_no_secret(&text, &[KEY]);
}

#[tokio::test]
async fn a_refresh_token_is_used_first_and_the_key_is_the_fallback() {
    let server = Server::start().await;
    server.reply([
        Reply::json(
            200,
            json!({"token": "t-1", "expires_in": 900, "refresh_token": "r-1"}),
        ),
        // Refresh works once...
        Reply::json(200, json!({"token": "t-2", "expires_in": 900})),
        // ...then the refresh token is refused and the key is exchanged again.
        Reply::json(401, json!({"error": "invalid_grant"})),
        Reply::json(200, json!({"token": "t-3", "expires_in": 900})),
    ]);
    let source = ApiKeyExchange::builder(server.url("/v1/auth/jwt"), KEY)
        .refresh_url(server.url("/v1/auth/refresh"))
        .build()
        .unwrap();

    let first = source.fetch(ctx()).await.unwrap();
    let second = source
        .fetch(FetchContext::new(FetchReason::Scheduled).with_previous(first))
        .await
        .unwrap();
    assert_eq!(second.expose_secret(), "t-2");
    assert_eq!(server.request(1).path, "/v1/auth/refresh");
    assert_eq!(server.request(1).json(), json!({"refresh_token": "r-1"}));
    assert_eq!(server.request(1).header("authorization"), None);
    assert_eq!(
        second.refresh_token().unwrap().expose_secret(),
        "r-1",
        "kept"
    );

    let third = source
        .fetch(FetchContext::new(FetchReason::Scheduled).with_previous(second))
        .await
        .unwrap();
    assert_eq!(third.expose_secret(), "t-3");
    assert_eq!(server.request(3).path, "/v1/auth/jwt");
    assert_eq!(
        server.request(3).header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn a_key_that_is_a_jwt_is_passed_through_and_never_exchanged() {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = format!(
        "{}.{}.sig",
        engine.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        engine.encode(r#"{"sub":"svc","exp":4000000000}"#)
    );
    let server = Server::start().await;
    let source = ApiKeyExchange::builder(server.url("/v1/auth/jwt"), jwt.clone())
        .build()
        .unwrap();
    assert!(source.passes_key_through());

    let handle = Refresher::builder(source).spawn();
    let token = handle.ready().await.unwrap();
    assert_eq!(token.expose_secret(), jwt);
    assert_eq!(
        token.expiry(),
        Some(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(4_000_000_000))
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn an_opaque_key_with_three_dots_is_still_exchanged() {
    // Three segments, but the "header" is not JSON: not a JWT.
    let server = Server::start().await;
    server.reply([Reply::json(200, json!({"token": "t-1"}))]);
    let source = ApiKeyExchange::builder(server.url("/jwt"), "abc.def.ghi")
        .build()
        .unwrap();
    assert!(!source.passes_key_through());
    source.fetch(ctx()).await.unwrap();
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_api_key_file_is_read_at_every_fetch() {
    use tokenwarden::sources::Secret;
    let server = Server::start().await;
    server.reply([
        Reply::json(
            200,
            serde_json::json!({"token": "jwt-1", "expires_in": 600}),
        ),
        Reply::json(
            200,
            serde_json::json!({"token": "jwt-2", "expires_in": 600}),
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-key");
    std::fs::write(&path, "key-one\n").unwrap();
    let source = ApiKeyExchange::builder(server.url("/auth"), Secret::file(&path))
        .build()
        .unwrap();
    let ctx = || tokenwarden::FetchContext::new(tokenwarden::FetchReason::Initial);
    source.fetch(ctx()).await.unwrap();
    std::fs::write(&path, "key-two").unwrap();
    source.fetch(ctx()).await.unwrap();
    assert_eq!(
        server.request(0).header("authorization"),
        Some("Bearer key-one")
    );
    assert_eq!(
        server.request(1).header("authorization"),
        Some("Bearer key-two")
    );
}
