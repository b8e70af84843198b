//! Interoperability with an authorization server tokenwarden did not write: panva's
//! oidc-provider (OpenID Certified), pinned in `tests/interop/package.json`, started on
//! loopback by each test and stopped by its process id.
//!
//! The tests install it from `tests/interop/package-lock.json` when it is missing (`npm ci`;
//! `.ci/test` does it up front, and installs Node.js if absent). Without Node.js they fail
//! (see `tests/common/required.rs`).
//!
//! Quirks of this server, each met by a test below:
//! - `exp` is computed from the whole second the token is issued in (`iat` is truncated), so a
//!   token's `exp` is up to a second earlier than `expires_in` from the send time says.
//! - Basic client authentication decodes the form-encoded id and secret (RFC 6749 section
//!   2.3.1): a secret with `+ : / % & =` only works when the client encodes it first.
//! - A refresh answer carries `"scope": ""` and an `id_token`; error descriptions are generic
//!   (`grant request is invalid` for a reused refresh token).
//! - Reusing a rotated refresh token revokes the whole grant: the newest one stops working too.
//! - It warns on stderr that Node.js 20 is not a supported runtime; it works on it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokenwarden::sources::{ClientAuth, ClientCredentials, RefreshTokenGrant};
use tokenwarden::{Error, ExposeSecret, Refresher, Token, TokenHandle};

#[path = "common/oidc.rs"]
mod oidc;
#[path = "common/required.rs"]
mod required;

use oidc::{AuthServer, SECRET, start};

fn exp(token: &Token) -> SystemTime {
    let exp = token.claims().expect("a JWT")["exp"].as_u64().unwrap();
    UNIX_EPOCH + Duration::from_secs(exp)
}

fn client_credentials(server: &AuthServer, id: &str, auth: ClientAuth) -> TokenHandle {
    let source = ClientCredentials::builder(&server.token_endpoint, id, SECRET)
        .auth(auth)
        .build()
        .unwrap();
    Refresher::builder(source).name(id).spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_basic_and_body_auth_and_an_awkward_secret() {
    let Some(server) = start(300) else { return };
    for (id, auth) in [
        ("cc-basic", ClientAuth::Basic),
        ("cc-post", ClientAuth::Body),
    ] {
        let handle = client_credentials(&server, id, auth);
        let token = handle.ready().await.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(token.claims().unwrap()["client_id"], id);
        assert!(
            token.expiry().unwrap() <= exp(&token),
            "{id}: never believed to live past the server's exp"
        );
        handle.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_client_is_a_permanent_error_that_names_the_endpoint() {
    let Some(server) = start(300) else { return };
    let source = ClientCredentials::builder(&server.token_endpoint, "cc-basic", "wrong-secret")
        .build()
        .unwrap();
    let handle = Refresher::builder(source).spawn();
    let Err(Error::Failed(error)) = handle.ready().await else {
        panic!("expected a permanent failure");
    };
    let text = error.to_string();
    assert!(text.contains(&server.token_endpoint), "{text}");
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
}

#[cfg(feature = "signing")]
/// Discovery of a real OpenID provider, and `private_key_jwt` client authentication verified
/// by it against the client's registered public key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_private_key_jwt_against_a_certified_provider() {
    let Some(server) = start(300) else { return };
    let issuer = server.token_endpoint.trim_end_matches("/token");
    use tokenwarden::sources::{HttpOptions, Issuer, SigningKey};
    let found = Issuer::discover(issuer, &HttpOptions::new()).await.unwrap();
    assert_eq!(found.token_endpoint(), server.token_endpoint);

    let key = SigningKey::rs256_pem(include_str!("fixtures/rsa_private.pem"))
        .unwrap()
        .key_id("tokenwarden-test");
    let source = found.client_credentials("cc-pkjwt", key).build().unwrap();
    let handle = Refresher::builder(source).name("cc-pkjwt").spawn();
    let token = handle.ready().await.unwrap();
    assert_eq!(token.claims().unwrap()["client_id"], "cc-pkjwt");
    // A fresh assertion for every request: the provider refuses a replayed `jti`.
    handle.refresh().await.unwrap();
    handle.shutdown();

    // The provider does not offer the JWT-bearer grant: said at build, naming it.
    let key = SigningKey::rs256_pem(include_str!("fixtures/rsa_private.pem")).unwrap();
    let err = found.jwt_bearer("someone", key).build().unwrap_err();
    assert!(
        err.to_string()
            .contains("does not offer the grant `urn:ietf:params:oauth:grant-type:jwt-bearer`"),
        "{err}"
    );
}

/// The refresher follows the rotation chain for 20 refreshes; presenting a rotated refresh
/// token again (what a second replica with the old one would do) revokes the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_grant_follows_rotation_and_reuse_revokes_the_grant() {
    let Some(server) = start(300) else { return };
    let grant = |refresh_token: &str| {
        RefreshTokenGrant::builder(&server.token_endpoint, refresh_token.to_owned())
            .client_id("rt-client")
            .client_secret(SECRET)
            .build()
            .unwrap()
    };
    let mut policy = tokenwarden::RefreshPolicy::default();
    policy.min_interval = Duration::from_millis(1);
    let handle = Refresher::builder(grant(&server.refresh_token))
        .policy(policy)
        .name("rt-client")
        .spawn();
    let mut seen = std::collections::HashSet::new();
    let mut token = handle.ready().await.unwrap();
    for rotation in 0..20 {
        let refresh = token.refresh_token().unwrap().expose_secret().to_owned();
        assert!(
            seen.insert(refresh),
            "rotation {rotation}: a refresh token came back twice"
        );
        token = handle
            .refresh()
            .await
            .unwrap_or_else(|e| panic!("rotation {rotation}: {e}"));
    }
    assert_eq!(token.claims().unwrap()["sub"], "user-1");

    // A stale replica presents the first refresh token again.
    let stale = Refresher::builder(grant(&server.refresh_token))
        .name("stale-replica")
        .spawn();
    let Err(Error::Failed(error)) = stale.ready().await else {
        panic!("a reused refresh token must be refused");
    };
    assert!(error.to_string().contains("invalid_grant"), "{error}");
    // The server revoked the grant: the newest refresh token is dead too.
    let Err(Error::Fetch(error)) = handle.refresh().await else {
        panic!("the grant should be revoked");
    };
    assert!(error.is_permanent(), "{error}");
}

/// Five-second tokens for a minute; readers every 10 ms check every token against the
/// server's own `exp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_second_tokens_for_a_minute_are_never_read_past_their_exp() {
    let Some(server) = start(5) else { return };
    let handle = client_credentials(&server, "cc-basic", ClientAuth::Basic);
    handle.ready().await.unwrap();
    let mut events = handle.subscribe();
    let (mut reads, mut served, mut least_left) = (0u32, 0u32, Duration::MAX);
    let mut tokens = std::collections::HashSet::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < end {
        reads += 1;
        if let Ok(token) = handle.current() {
            served += 1;
            let left = exp(&token)
                .duration_since(SystemTime::now())
                .unwrap_or_else(|_| panic!("a token read after its exp"));
            least_left = least_left.min(left);
            tokens.insert(token.expose_secret().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut expired = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, tokenwarden::Event::Expired { .. }) {
            expired += 1;
        }
    }
    println!(
        "{reads} reads, {served} served, {} tokens, least time left before exp: {least_left:?}, \
         expiries without a successor: {expired}",
        tokens.len()
    );
    assert_eq!(served, reads, "a token was always available");
    assert_eq!(expired, 0);
    assert!(
        tokens.len() >= 20,
        "refreshed every few seconds: {}",
        tokens.len()
    );
    assert!(least_left >= Duration::from_millis(500), "{least_left:?}");
}
