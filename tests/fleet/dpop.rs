//! A fleet on a DPoP-bound rotating grant (oidc-provider with DPoP on and nonces required):
//! the key travels with the refresh token in the fleet's sealed record, so a replica
//! configured with another key still refreshes with the one the token is bound to.

use tokenwarden::dpop::DpopKey;
use tokenwarden::sources::RefreshTokenGrant;
use tokenwarden::{Refresher, TokenHandle};

use super::oidc::start_dpop;
use super::redis_servers::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_travels_with_the_refresh_token_through_the_fleet() {
    let bound = DpopKey::generate().unwrap();
    let Some(server) = start_dpop(300, bound.thumbprint()) else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let refresh = server.dpop_refresh_token.clone().unwrap();
    let replica = |key: &DpopKey| -> TokenHandle {
        let grant = RefreshTokenGrant::builder(&server.token_endpoint, refresh.clone())
            .client_id("rt-dpop")
            .dpop(key.clone())
            .build()
            .unwrap();
        Refresher::builder(grant)
            .shared(redis.fleet("dpop"))
            .spawn()
    };
    let first = replica(&bound);
    let token = first.ready().await.unwrap();
    assert_eq!(token.dpop_key(), Some(&bound));

    // Another replica, configured with a key of its own (a new deployment generated one).
    let other = DpopKey::generate().unwrap();
    let second = replica(&other);
    let adopted = second.ready().await.unwrap();
    assert_eq!(
        adopted.expose_secret(),
        token.expose_secret(),
        "adopted from the fleet"
    );
    assert_eq!(
        adopted.dpop_key(),
        Some(&bound),
        "with the key from the sealed record"
    );

    first.shutdown();
    let refreshed = second.refresh().await.unwrap();
    assert_ne!(refreshed.expose_secret(), token.expose_secret());
    assert_eq!(
        refreshed.claims().unwrap()["cnf"]["jkt"],
        bound.thumbprint(),
        "oidc-provider accepted the refresh only with the bound key"
    );
}
