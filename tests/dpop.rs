//! DPoP (RFC 9449) against panva's oidc-provider with DPoP on and nonces required (it verifies
//! every proof and binds the tokens), and against a resource endpoint here that verifies each
//! request's proof with jsonwebtoken (signature, `htm`, `htu`, `ath`, the token's `cnf.jkt`)
//! and asks for a nonce first.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokenwarden::dpop::DpopKey;
use tokenwarden::integrations::middleware::TokenAuth;
use tokenwarden::integrations::tower::TokenAuthLayer;
use tokenwarden::sources::{ClientCredentials, RefreshTokenGrant};
use tokenwarden::{Error, FileStore, Refresher, RequestBuilderExt, Token, TokenHandle};
use tower::{Layer, ServiceExt};

#[path = "common/oidc.rs"]
mod oidc;
#[path = "common/required.rs"]
mod required;

use oidc::{SECRET, start, start_dpop};

/// base64url of SHA-256, for `ath` and the key thumbprint.
fn sha256_b64(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn claims(token: &Token) -> serde_json::Value {
    serde_json::Value::Object(token.claims().expect("a JWT access token"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_are_bound_to_the_key_after_the_nonce_dance() {
    let Some(server) = start(300) else { return };
    let key = DpopKey::generate().unwrap();
    let source = ClientCredentials::builder(&server.token_endpoint, "cc-dpop", SECRET)
        .dpop(key.clone())
        .build()
        .unwrap();
    let handle = Refresher::builder(source).spawn();
    // oidc-provider requires a nonce: the first request is answered `use_dpop_nonce`, the
    // second carries it.
    let token = handle.ready().await.unwrap();
    assert_eq!(token.token_type(), "DPoP");
    assert_eq!(token.dpop_key(), Some(&key));
    assert_eq!(
        claims(&token)["cnf"]["jkt"],
        key.thumbprint(),
        "bound to this key"
    );
    assert!(
        token
            .authorization_header()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("DPoP ")
    );
    assert!(format!("{token:?}").contains(key.thumbprint()));
}

/// The server's answer is generic (`invalid_grant`, "grant request is invalid"); what matters is
/// that no unbound token is taken for a client that must use DPoP, and the failure is final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_must_use_dpop_fails_permanently_without_it() {
    let Some(server) = start(300) else { return };
    let source = ClientCredentials::builder(&server.token_endpoint, "cc-dpop", SECRET)
        .build()
        .unwrap();
    let handle = Refresher::builder(source).spawn();
    let error = handle.ready().await.unwrap_err();
    assert!(matches!(error, Error::Failed(_)), "{error}");
    assert!(error.to_string().contains("invalid_grant"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_refresh_token_is_refreshed_with_its_own_key_after_a_restart() {
    let key = DpopKey::generate().unwrap();
    let Some(server) = start_dpop(300, key.thumbprint()) else {
        return;
    };
    let refresh = server.dpop_refresh_token.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("token.json");

    let grant = RefreshTokenGrant::builder(&server.token_endpoint, refresh)
        .client_id("rt-dpop")
        .dpop(key.clone())
        .build()
        .unwrap();
    let handle = Refresher::builder(grant)
        .store(FileStore::new(&store))
        .spawn();
    let first = handle.ready().await.unwrap();
    assert_eq!(first.dpop_key(), Some(&key));
    handle.shutdown();
    handle.stopped().await;
    let saved = std::fs::read_to_string(&store).unwrap();
    assert!(
        saved.contains("\"dpop_key\""),
        "the key is kept with the refresh token"
    );

    // Restarted with another key configured (say, a new deployment generated one): the
    // stored refresh token is still presented with the key it is bound to.
    let other = DpopKey::generate().unwrap();
    let grant = RefreshTokenGrant::builder(&server.token_endpoint, "spent-at-first-refresh")
        .client_id("rt-dpop")
        .dpop(other.clone())
        .build()
        .unwrap();
    let handle = Refresher::builder(grant)
        .store(FileStore::new(&store))
        .spawn();
    handle.ready().await.unwrap();
    let refreshed = handle.refresh().await.unwrap();
    assert_ne!(refreshed.expose_secret(), first.expose_secret());
    assert_eq!(
        refreshed.dpop_key(),
        Some(&key),
        "oidc-provider checked the jkt"
    );
    assert_eq!(claims(&refreshed)["cnf"]["jkt"], key.thumbprint());
}

// ----- a resource server that verifies proofs -----

#[derive(Default)]
struct ResourceServer {
    /// Every request: whether it was accepted, and why not.
    log: Mutex<Vec<Result<(), String>>>,
    jtis: Mutex<HashSet<String>>,
}

const NONCE: &str = "rs-nonce-4f1";

/// `GET /orders`: `Authorization: DPoP <token>` and a proof that verifies, names this request,
/// hashes the token, is signed by the key the token is bound to, and carries the nonce.
fn verify(
    headers: &HeaderMap,
    method: &Method,
    uri: &str,
    seen: &Mutex<HashSet<String>>,
) -> Result<(), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let token = header("authorization")
        .and_then(|v| v.strip_prefix("DPoP "))
        .ok_or("no DPoP authorization")?;
    let proof = header("dpop").ok_or("no proof")?;
    let jose = jsonwebtoken::decode_header(proof).map_err(|e| e.to_string())?;
    if jose.typ.as_deref() != Some("dpop+jwt") || jose.alg != jsonwebtoken::Algorithm::ES256 {
        return Err("typ or alg".into());
    }
    let jwk = jose.jwk.ok_or("no jwk")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    let proof = jsonwebtoken::decode::<serde_json::Value>(proof, &key, &validation)
        .map_err(|e| format!("signature: {e}"))?
        .claims;
    if proof["htm"] != method.as_str() || proof["htu"] != uri {
        return Err(format!("htm/htu: {} {}", proof["htm"], proof["htu"]));
    }
    if proof["ath"] != sha256_b64(token.as_bytes()) {
        return Err("ath".into());
    }
    let token_claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).ok_or("token not a JWT")?)
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let jwk_json = serde_json::to_value(&jwk).unwrap();
    let canonical = format!(
        r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk_json["crv"].as_str().unwrap_or_default(),
        jwk_json["x"].as_str().unwrap_or_default(),
        jwk_json["y"].as_str().unwrap_or_default()
    );
    if token_claims["cnf"]["jkt"] != sha256_b64(canonical.as_bytes()) {
        return Err("the proof's key is not the token's".into());
    }
    if !seen
        .lock()
        .unwrap()
        .insert(proof["jti"].as_str().unwrap_or_default().to_owned())
    {
        return Err("jti replayed".into());
    }
    if proof["nonce"] != NONCE {
        return Err("use_dpop_nonce".into());
    }
    Ok(())
}

async fn resource_server() -> (String, Arc<ResourceServer>) {
    let state = Arc::new(ResourceServer::default());
    let shared = state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/orders");
    let htu = url.clone();
    let app = axum::Router::new().route(
        "/orders",
        get(move |method: Method, _uri: Uri, headers: HeaderMap| {
            let state = shared.clone();
            let htu = htu.clone();
            async move {
                let verdict = verify(&headers, &method, &htu, &state.jtis);
                state.log.lock().unwrap().push(verdict.clone());
                let response: Response = match verdict {
                    Ok(()) => (StatusCode::OK, "orders").into_response(),
                    Err(why) if why == "use_dpop_nonce" => (
                        StatusCode::UNAUTHORIZED,
                        [
                            ("www-authenticate", r#"DPoP error="use_dpop_nonce", error_description="nonce required""#.to_owned()),
                            ("dpop-nonce", NONCE.to_owned()),
                        ],
                    )
                        .into_response(),
                    Err(why) => (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", format!(r#"DPoP error="invalid_dpop_proof", error_description="{why}""#))],
                    )
                        .into_response(),
                };
                response
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

async fn bound_handle(server: &oidc::AuthServer) -> TokenHandle {
    let key = DpopKey::generate().unwrap();
    let source = ClientCredentials::builder(&server.token_endpoint, "cc-dpop", SECRET)
        .dpop(key)
        .build()
        .unwrap();
    let handle = Refresher::builder(source).spawn();
    handle.ready().await.unwrap();
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middleware_signs_each_request_and_answers_a_nonce_challenge_once() {
    let Some(server) = start(300) else { return };
    let (url, resource) = resource_server().await;
    let handle = bound_handle(&server).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TokenAuth::new(handle.clone()))
        .build();
    for _ in 0..3 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let log = resource.log.lock().unwrap().clone();
    assert_eq!(
        log,
        [Err("use_dpop_nonce".into()), Ok(()), Ok(()), Ok(())],
        "one nonce challenge, answered once; then the nonce is remembered"
    );

    // The request extension too (a proof of its own, with the remembered nonce).
    let response = reqwest::Client::new()
        .get(&url)
        .with_token(&handle)
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_signs_each_request_and_answers_a_nonce_challenge_once() {
    let Some(server) = start(300) else { return };
    let (url, resource) = resource_server().await;
    let handle = bound_handle(&server).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let service = TokenAuthLayer::new(handle)
        .retry_cloned_bodies()
        .layer(client);
    for _ in 0..2 {
        let request = http::Request::get(&url)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"orders");
    }
    let log = resource.log.lock().unwrap().clone();
    assert_eq!(log, [Err("use_dpop_nonce".into()), Ok(()), Ok(())]);
}
