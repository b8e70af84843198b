//! Signed assertions (RFC 7523), against an embedded token endpoint on 127.0.0.1 that verifies
//! them with the public key: the JWT-bearer grant from a service-account key file, and
//! `private_key_jwt` client authentication. The keys are this repository's test-only fixtures.
//!
//! ```text
//! cargo run --example jwt_bearer --features signing
//! ```

use axum::extract::Form;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokenwarden::Refresher;
use tokenwarden::sources::{ClientCredentials, JwtBearer, ServiceAccountKey, SigningKey};

const PRIVATE_KEY: &str = include_str!("../tests/fixtures/rsa_private.pem");
const PUBLIC_KEY: &str = include_str!("../tests/fixtures/rsa_public.pem");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let token_url = serve().await?;

    // A service-account key file, as a cloud console issues it.
    let key_file = json!({
        "type": "service_account",
        "client_email": "reports@demo.iam.example.com",
        "private_key_id": "key-1",
        "private_key": PRIVATE_KEY,
        "token_uri": token_url,
    });
    let account = ServiceAccountKey::from_json(&key_file.to_string())?;
    let source = JwtBearer::service_account(account)
        .scope("reports.read")
        .build()?;
    let handle = Refresher::builder(source).name("service-account").spawn();
    let token = handle.ready().await?;
    println!(
        "JWT-bearer grant: {}",
        token.extra()["verified"].as_str().unwrap_or_default()
    );
    handle.shutdown();

    // The same kind of key authenticating a client (private_key_jwt).
    let key = SigningKey::rs256_pem(PRIVATE_KEY)?.key_id("key-1");
    let source = ClientCredentials::builder(&token_url, "reports-client", key).build()?;
    let handle = Refresher::builder(source).name("private-key-jwt").spawn();
    let token = handle.ready().await?;
    println!(
        "client credentials with private_key_jwt: {}",
        token.extra()["verified"].as_str().unwrap_or_default()
    );
    handle.shutdown();
    handle.stopped().await;
    Ok(())
}

/// Verifies the assertion (signature, audience, lifetime) and says what it verified.
async fn token_endpoint(
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let assertion = field("assertion").or_else(|| field("client_assertion"));
    let key = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).expect("the fixture key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false; // the audience is this server's URL, checked by a real one
    let verified = assertion
        .as_deref()
        .and_then(|jwt| jsonwebtoken::decode::<Value>(jwt, &key, &validation).ok());
    let Some(verified) = verified else {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        ));
    };
    let claims = verified.claims;
    Ok(Json(json!({
        "access_token": format!("signed-{}", fastrand::u32(..)),
        "token_type": "Bearer",
        "expires_in": 300,
        "verified": format!(
            "assertion verified: iss {}, sub {}, kid {:?}, valid {} s, jti {}",
            claims["iss"].as_str().unwrap_or_default(),
            claims["sub"].as_str().unwrap_or_default(),
            verified.header.kid.unwrap_or_default(),
            claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0),
            claims["jti"].as_str().unwrap_or_default()
        ),
    })))
}

async fn serve() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/token", listener.local_addr()?);
    let app = Router::new().route("/token", post(token_endpoint));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
