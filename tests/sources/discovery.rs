//! OpenID Connect Discovery and RFC 8414 metadata, against a real local server.

use serde_json::json;
use tokenwarden::sources::{ClientAuth, HttpOptions, Issuer, SubjectToken};
use tokenwarden::{FetchContext, FetchReason, TokenSource};

use crate::server::{Reply, Server};

fn document(server: &Server, issuer: &str) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "token_endpoint": server.url("/oauth2/token"),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
    })
}

#[tokio::test]
async fn an_issuer_is_discovered_and_its_token_endpoint_used() {
    let server = Server::start().await;
    let issuer = server.url("/realms/a");
    server.reply([
        Reply::json(200, document(&server, &issuer)),
        Reply::token("t1"),
    ]);

    let found = Issuer::discover(&issuer, &HttpOptions::new())
        .await
        .unwrap();
    assert_eq!(found.token_endpoint(), server.url("/oauth2/token"));
    let source = found.client_credentials("svc", "secret").build().unwrap();
    let token = source
        .fetch(FetchContext::new(FetchReason::Initial))
        .await
        .unwrap();
    assert_eq!(token.expose_secret(), "t1");
    assert_eq!(
        server.request(0).path,
        "/realms/a/.well-known/openid-configuration"
    );
    assert_eq!(server.request(1).path, "/oauth2/token");

    // Cached: a second discovery asks nothing.
    Issuer::discover(&issuer, &HttpOptions::new())
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn rfc_8414_is_the_fallback_and_unsupported_choices_are_named() {
    let server = Server::start().await;
    let issuer = server.url("/tenant-b");
    server.reply([
        Reply::json(404, json!({"error": "not_found"})),
        Reply::json(200, document(&server, &issuer)),
    ]);
    let found = Issuer::discover(&issuer, &HttpOptions::new())
        .await
        .unwrap();
    assert_eq!(
        server.request(1).path,
        "/.well-known/oauth-authorization-server/tenant-b"
    );

    let err = found
        .client_credentials("svc", "secret")
        .auth(ClientAuth::Body)
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not accept client authentication `client_secret_post`"),
        "{err}"
    );
    let err = found
        .token_exchange(SubjectToken::file("/dev/null"))
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "issuer {issuer} does not offer the grant `urn:ietf:params:oauth:grant-type:token-exchange`"
        )),
        "{err}"
    );
    assert!(
        found
            .refresh_token_grant("rt")
            .client_secret("s")
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn a_document_naming_another_issuer_or_none_at_all_is_refused() {
    let server = Server::start().await;
    let issuer = server.url("/c");
    server.reply([Reply::json(200, document(&server, "https://evil.test"))]);
    let err = Issuer::discover(&issuer, &HttpOptions::new())
        .await
        .unwrap_err();
    assert!(err.is_permanent());
    assert!(
        err.to_string()
            .contains("field `issuer` is \"https://evil.test\""),
        "{err}"
    );

    let issuer = server.url("/d");
    server.reply([Reply::json(404, json!({})), Reply::json(404, json!({}))]);
    let err = Issuer::discover(&issuer, &HttpOptions::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("issuer {issuer} has no discovery document")),
        "{err}"
    );

    let issuer = server.url("/e");
    server.reply([Reply::json(503, json!({}))]);
    let err = Issuer::discover(&issuer, &HttpOptions::new())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}
