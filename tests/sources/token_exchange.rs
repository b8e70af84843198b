//! OAuth 2.0 token exchange (RFC 8693).

use std::time::Duration;

use serde_json::json;
use tokenwarden::sources::{SubjectToken, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, TokenExchange};
use tokenwarden::{FetchContext, FetchError, FetchReason, Token, TokenSource};

use crate::server::{Reply, Server};

fn ctx() -> FetchContext {
    FetchContext::new(FetchReason::Initial)
}

fn field(request: &crate::server::Recorded, name: &str) -> Option<String> {
    request
        .form()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[tokio::test]
async fn a_subject_token_file_is_read_at_every_fetch() {
    let server = Server::start().await;
    let issued = json!({
        "access_token": "federated-1",
        "issued_token_type": TOKEN_TYPE_ACCESS_TOKEN,
        "token_type": "N_A",
        "expires_in": 3600,
    });
    server.reply([Reply::json(200, issued.clone()), Reply::json(200, issued)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "k8s-jwt-1\n").unwrap();
    let source = TokenExchange::builder(server.url("/token"), SubjectToken::file(&path))
        .audience("//iam.example.com/pools/prod")
        .scope("cloud-platform")
        .requested_token_type(TOKEN_TYPE_ACCESS_TOKEN)
        .build()
        .unwrap();

    let token = source.fetch(ctx()).await.unwrap();
    assert_eq!(token.expose_secret(), "federated-1");
    assert_eq!(
        token.token_type(),
        "Bearer",
        "N_A is sent as a bearer token"
    );
    assert_eq!(token.extra()["issued_token_type"], TOKEN_TYPE_ACCESS_TOKEN);
    // The kubelet rotates the projected token in place.
    std::fs::write(&path, "k8s-jwt-2").unwrap();
    source.fetch(ctx()).await.unwrap();

    let first = server.request(0);
    assert_eq!(
        field(&first, "grant_type").unwrap(),
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(field(&first, "subject_token").unwrap(), "k8s-jwt-1");
    assert_eq!(field(&first, "subject_token_type").unwrap(), TOKEN_TYPE_JWT);
    assert_eq!(
        field(&first, "audience").unwrap(),
        "//iam.example.com/pools/prod"
    );
    assert_eq!(field(&first, "scope").unwrap(), "cloud-platform");
    assert_eq!(
        field(&first, "requested_token_type").unwrap(),
        TOKEN_TYPE_ACCESS_TOKEN
    );
    assert_eq!(
        field(&server.request(1), "subject_token").unwrap(),
        "k8s-jwt-2"
    );
}

#[tokio::test]
async fn a_subject_token_from_another_source_and_its_failures_are_named() {
    let server = Server::start().await;
    server.reply([
        Reply::token("exchanged"),
        Reply::json(
            400,
            json!({"error": "invalid_grant", "error_description": "subject token expired"}),
        ),
    ]);
    let upstream = tokenwarden::from_fn(|_ctx| async {
        Ok::<_, FetchError>(Token::new("upstream-access").expires_in(Duration::from_secs(60)))
    });
    let source = TokenExchange::builder(server.url("/token"), SubjectToken::source(upstream))
        .client("exchanger", "exchanger-secret")
        .build()
        .unwrap();
    assert_eq!(
        source.fetch(ctx()).await.unwrap().expose_secret(),
        "exchanged"
    );
    let request = server.request(0);
    assert_eq!(field(&request, "subject_token").unwrap(), "upstream-access");
    assert_eq!(
        field(&request, "subject_token_type").unwrap(),
        TOKEN_TYPE_ACCESS_TOKEN
    );
    assert!(
        request
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );

    let err = source.fetch(ctx()).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(
        err.to_string().contains("the subject token was rejected"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("upstream-access"));

    let failing = tokenwarden::from_fn(|_ctx| async {
        Err::<Token, _>(FetchError::transient(
            "https://upstream.test/token answered 503",
        ))
    });
    let source = TokenExchange::builder(server.url("/token"), SubjectToken::source(failing))
        .build()
        .unwrap();
    let err = source.fetch(ctx()).await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "getting the subject token failed: https://upstream.test/token answered 503"
    );
    assert_eq!(
        server.requests().len(),
        2,
        "nothing sent without a subject token"
    );
}
