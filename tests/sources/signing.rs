//! Signed assertions (RFC 7523): `private_key_jwt` client authentication and the JWT-bearer
//! grant, checked by verifying what the endpoint received with the public keys.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokenwarden::sources::{
    ClientCredentials, JwtBearer, RefreshTokenGrant, ServiceAccountKey, SigningKey,
};
use tokenwarden::{FetchContext, FetchReason, TokenSource};

use crate::server::{Recorded, Reply, Server};

const RSA_PRIVATE: &str = include_str!("../fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../fixtures/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../fixtures/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../fixtures/ec_public.pem");

fn ctx() -> FetchContext {
    FetchContext::new(FetchReason::Initial)
}

fn field(request: &Recorded, name: &str) -> String {
    request
        .form()
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no `{name}` in the request"))
        .1
}

/// The assertion's header and claims, after checking its signature with `public` and its
/// audience.
fn verified(
    assertion: &str,
    algorithm: Algorithm,
    public: &str,
    audience: &str,
) -> (jsonwebtoken::Header, Value) {
    let key = match algorithm {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
        _ => DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
    };
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    let data = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .expect("a valid signature, audience and lifetime");
    (data.header, data.claims)
}

#[tokio::test]
async fn private_key_jwt_signs_a_fresh_assertion_for_every_request() {
    let server = Server::start().await;
    server.reply([Reply::token("t1"), Reply::token("t2")]);
    let token_url = server.url("/oauth/token");
    let key = SigningKey::rs256_pem(RSA_PRIVATE).unwrap().key_id("k1");
    let source = ClientCredentials::builder(&token_url, "svc-client", key)
        .scope("read")
        .build()
        .unwrap();
    assert_eq!(source.fetch(ctx()).await.unwrap().expose_secret(), "t1");
    assert_eq!(source.fetch(ctx()).await.unwrap().expose_secret(), "t2");

    let mut ids = HashSet::new();
    for request in server.requests() {
        assert!(
            request.header("authorization").is_none(),
            "no Basic auth with an assertion"
        );
        assert_eq!(field(&request, "grant_type"), "client_credentials");
        assert_eq!(field(&request, "client_id"), "svc-client");
        assert_eq!(
            field(&request, "client_assertion_type"),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        let (header, claims) = verified(
            &field(&request, "client_assertion"),
            Algorithm::RS256,
            RSA_PUBLIC,
            &token_url,
        );
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(claims["iss"], "svc-client");
        assert_eq!(claims["sub"], "svc-client");
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lifetime, 300);
        assert!(
            ids.insert(claims["jti"].as_str().unwrap().to_owned()),
            "a new jti each time"
        );
    }
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn the_refresh_token_grant_authenticates_with_an_es256_assertion() {
    let server = Server::start().await;
    server.reply([Reply::token("t1")]);
    let token_url = server.url("/token");
    let source = RefreshTokenGrant::builder(&token_url, "rt-1")
        .client_id("desktop")
        .client_credential(SigningKey::es256_pem(EC_PRIVATE).unwrap())
        .build()
        .unwrap();
    source.fetch(ctx()).await.unwrap();
    let request = server.request(0);
    assert_eq!(field(&request, "refresh_token"), "rt-1");
    let (_, claims) = verified(
        &field(&request, "client_assertion"),
        Algorithm::ES256,
        EC_PUBLIC,
        &token_url,
    );
    assert_eq!(claims["iss"], "desktop");
}

#[tokio::test]
async fn the_jwt_bearer_grant_sends_a_signed_assertion_with_its_claims() {
    let server = Server::start().await;
    server.reply([Reply::token("t1")]);
    let token_url = server.url("/token");
    let key = SigningKey::es256_pem(EC_PRIVATE).unwrap();
    let source = JwtBearer::builder(&token_url, "svc-reports", key)
        .subject("alice@example.com")
        .claim("tenant", "acme")
        .scope("reports.read")
        .build()
        .unwrap();
    assert_eq!(source.fetch(ctx()).await.unwrap().expose_secret(), "t1");
    let request = server.request(0);
    assert_eq!(
        field(&request, "grant_type"),
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(field(&request, "scope"), "reports.read");
    let (_, claims) = verified(
        &field(&request, "assertion"),
        Algorithm::ES256,
        EC_PUBLIC,
        &token_url,
    );
    assert_eq!(claims["iss"], "svc-reports");
    assert_eq!(claims["sub"], "alice@example.com");
    assert_eq!(claims["tenant"], "acme");
    assert!(claims["jti"].as_str().is_some_and(|id| id.len() == 32));
}

#[tokio::test]
async fn a_service_account_key_file_drives_the_grant_and_a_rejection_is_permanent() {
    let server = Server::start().await;
    let token_url = server.url("/token");
    let key_file = json!({
        "type": "service_account",
        "client_email": "robot@project.iam.example.com",
        "private_key_id": "abc123",
        "private_key": RSA_PRIVATE,
        "token_uri": token_url,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    std::fs::write(&path, key_file.to_string()).unwrap();
    let account = ServiceAccountKey::from_file(&path).unwrap();
    assert!(!format!("{account:?}").contains("PRIVATE KEY"));
    let source = JwtBearer::service_account(account)
        .scope("https://www.googleapis.com/auth/cloud-platform")
        .build()
        .unwrap();

    server.reply([
        Reply::token("t1"),
        Reply::json(
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        ),
    ]);
    source.fetch(ctx()).await.unwrap();
    let request = server.request(0);
    let assertion = field(&request, "assertion");
    let (header, claims) = verified(&assertion, Algorithm::RS256, RSA_PUBLIC, &token_url);
    assert_eq!(header.kid.as_deref(), Some("abc123"));
    assert_eq!(claims["iss"], "robot@project.iam.example.com");
    assert_eq!(claims["sub"], "robot@project.iam.example.com");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert!(
        request.form().iter().all(|(k, _)| k != "scope"),
        "scope is a claim here"
    );

    let err = source.fetch(ctx()).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("Invalid JWT Signature") && message.contains("the assertion was rejected"),
        "{message}"
    );
    let second = field(&server.request(1), "assertion");
    assert!(!message.contains(&second) && !format!("{err:?}").contains(&second));
}
