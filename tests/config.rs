//! Credentials declared in configuration (TOML here), spawned in one call against a real
//! token endpoint on 127.0.0.1; mistakes name the credential and the field.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Form, Json, Router};
use serde_json::{Value, json};
use tokenwarden::config::CredentialsConfig;

/// A token endpoint that records each request's form and `Authorization` header.
async fn token_endpoint() -> (
    String,
    Arc<Mutex<Vec<(HashMap<String, String>, Option<String>)>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().route(
        "/token",
        post(
            move |headers: HeaderMap, Form(form): Form<HashMap<String, String>>| {
                let record = record.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let client = form
                        .get("client_id")
                        .cloned()
                        .unwrap_or_else(|| "basic".into());
                    record.lock().unwrap().push((form, auth));
                    Json::<Value>(json!({
                        "access_token": format!("token-for-{client}"),
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    }))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{issuer}/token");
    // OpenID discovery, for credentials that name the issuer instead of the token endpoint.
    let metadata = json!({
        "issuer": issuer,
        "token_endpoint": url,
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    });
    let app = app.route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            let metadata = metadata.clone();
            async move { Json(metadata) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn every_declared_credential_is_spawned_with_its_settings() {
    let (url, seen) = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "from-a-file\n").unwrap();
    std::fs::write(dir.path().join("token"), "a-file-token").unwrap();
    // `cargo test` sets CARGO_PKG_NAME for the test process: an environment secret.
    let text = format!(
        r#"
        max_concurrent_fetches = 4

        [credentials.orders]
        flow = "client_credentials"
        token_url = "{url}"
        client_id = "orders"
        client_secret = {{ env = "CARGO_PKG_NAME" }}
        auth = "body"
        scopes = ["orders.write", "orders.read"]
        audience = "https://orders.example.com"
        params = {{ tenant = "acme" }}
        policy = {{ refresh_at = 0.5, fetch_timeout = "5s" }}

        [credentials.billing]
        flow = "client_credentials"
        token_url = "{url}"
        client_id = "billing"
        client_secret = {{ file = "{secret}" }}

        [credentials.sidecar]
        flow = "file"
        path = "{token}"

        [credentials.discovered]
        flow = "client_credentials"
        issuer = "{issuer}"
        client_id = "discovered"
        client_secret = {{ file = "{secret}" }}
        auth = "body"
        "#,
        issuer = url.trim_end_matches("/token"),
        secret = dir.path().join("secret").display(),
        token = dir.path().join("token").display(),
    );
    let config: CredentialsConfig = toml::from_str(&text).unwrap();
    let registry = config.spawn().await.unwrap();
    assert_eq!(registry.len(), 4);

    let orders = registry.get("orders").unwrap();
    assert_eq!(orders.name(), "orders");
    assert_eq!(
        orders.ready().await.unwrap().expose_secret(),
        "token-for-orders"
    );
    let billing = registry.get("billing").unwrap().ready().await.unwrap();
    assert_eq!(billing.expose_secret(), "token-for-basic");
    let sidecar = registry.get("sidecar").unwrap().ready().await.unwrap();
    assert_eq!(sidecar.expose_secret(), "a-file-token");
    let discovered = registry.get("discovered").unwrap().ready().await.unwrap();
    assert_eq!(
        discovered.expose_secret(),
        "token-for-discovered",
        "via the issuer's metadata"
    );

    let seen = seen.lock().unwrap();
    let (form, _) = seen
        .iter()
        .find(|(form, _)| form.get("client_id").is_some())
        .unwrap();
    assert_eq!(
        form["client_secret"], "tokenwarden",
        "from the environment, in the body"
    );
    assert_eq!(form["scope"], "orders.write orders.read");
    assert_eq!(form["audience"], "https://orders.example.com");
    assert_eq!(form["tenant"], "acme");
    let (_, basic) = seen
        .iter()
        .find(|(form, _)| form.get("client_id").is_none())
        .unwrap();
    let basic = basic.as_deref().unwrap();
    assert!(
        basic.starts_with("Basic "),
        "the file's secret by HTTP Basic: {basic}"
    );
    registry.shutdown();
}

#[tokio::test]
async fn mistakes_name_the_credential_and_the_field_and_nothing_is_spawned() {
    let cases = [
        (
            r#"[credentials.orders]
               flow = "client_credentials"
               token_url = "https://auth.example.com/token"
               client_id = "orders"
               client_secret = { env = "TOKENWARDEN_TEST_SURELY_UNSET_7D1E" }"#,
            "credential `orders`: client_secret: environment variable TOKENWARDEN_TEST_SURELY_UNSET_7D1E is not set",
        ),
        (
            r#"[credentials.billing]
               flow = "client_credentials"
               token_url = "http://auth.example.com/token"
               client_id = "billing"
               client_secret = { file = "/run/secret" }"#,
            "credential `billing`: token endpoint http://auth.example.com/token must use https",
        ),
        (
            r#"[credentials.sidecar]
               flow = "file"
               path = "/run/token"
               policy = { serve_margin = "a while" }"#,
            "credential `sidecar`: policy.serve_margin: `a while` is not a duration",
        ),
        (
            r#"[credentials.both]
               flow = "client_credentials"
               token_url = "https://auth.example.com/token"
               issuer = "https://auth.example.com"
               client_id = "both"
               client_secret = { file = "/run/secret" }"#,
            "credential `both`: give exactly one of `token_url` or `issuer`",
        ),
        (
            r#"[credentials.nowhere]
               flow = "client_credentials"
               issuer = "http://127.0.0.1:9"
               client_id = "nowhere"
               client_secret = { file = "/run/secret" }"#,
            "credential `nowhere`: issuer: discovery failed: http://127.0.0.1:9/",
        ),
        (
            r#"[credentials.api]
               flow = "api_key"
               url = "https://api.example.com/tokens"
               api_key = { env = "A", file = "/b" }"#,
            "credential `api`: api_key: give exactly one of `env` or `file`",
        ),
    ];
    for (text, says) in cases {
        let config: CredentialsConfig = toml::from_str(text).unwrap();
        let error = config.spawn().await.unwrap_err().to_string();
        assert!(error.starts_with(says), "expected `{says}`, got `{error}`");
    }
}

#[test]
fn a_secret_written_in_the_file_is_refused_by_the_parser() {
    let text = r#"[credentials.orders]
        flow = "client_credentials"
        token_url = "https://auth.example.com/token"
        client_id = "orders"
        client_secret = "s3cr3t-in-config""#;
    let error = toml::from_str::<CredentialsConfig>(text)
        .unwrap_err()
        .to_string();
    assert!(!error.contains("s3cr3t-in-config"), "{error}");
    assert!(error.contains("not written in configuration"), "{error}");
}
