//! `GceMetadata` against the emulated GCE metadata server, and google-auth against the same.

use std::time::{Duration, SystemTime};

use tokenwarden::sources::cloud::GceMetadata;
use tokenwarden::{Error, Event};

use super::platform::Platform;
use super::{claim, failure, first_token, sdk, spawn};

fn access_token(platform: &Platform) -> GceMetadata {
    GceMetadata::access_token()
        .host(platform.addr.to_string())
        .build()
        .unwrap()
}

#[tokio::test]
async fn access_tokens_come_from_the_metadata_server_as_google_auth_gets_them() {
    let platform = Platform::start().await;
    let source = GceMetadata::access_token()
        .scopes(["https://www.googleapis.com/auth/cloud-platform", "openid"])
        .host(platform.addr.to_string())
        .build()
        .unwrap();
    let handle = spawn(source);
    let token = first_token(&handle).await;
    assert!(token.expose_secret().starts_with("ya29.gce-access-"));
    let left = token.time_left(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(3500),
        "expires_in honoured: {left:?}"
    );
    let seen = platform.seen_at("/default/token");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("metadata-flavor"), Some("Google"));
    assert_eq!(
        seen[0].query["scopes"],
        "https://www.googleapis.com/auth/cloud-platform,openid"
    );

    // Google's own library, pointed at the same server by GCE_METADATA_HOST.
    let env = [("GCE_METADATA_HOST", platform.addr.to_string())];
    let Some(theirs) = sdk::python(&["gce-access"], &env).await else {
        return;
    };
    assert!(theirs.starts_with("ya29.gce-access-"), "{theirs}");
    assert_ne!(
        theirs,
        token.expose_secret(),
        "a second token, issued to google-auth"
    );
    let paths: Vec<String> = platform.seen().into_iter().map(|seen| seen.path).collect();
    let theirs_asked = &paths[1..];
    assert!(
        theirs_asked.iter().any(|path| path.ends_with("/default/")),
        "google-auth read the account's info first: {paths:?}"
    );
    assert!(
        theirs_asked.iter().any(|path| path.ends_with("/token")),
        "then its token: {paths:?}"
    );
}

#[tokio::test]
async fn id_tokens_are_minted_per_audience_and_expire_by_their_exp() {
    let platform = Platform::start().await;
    let audience = "https://my-service-abc123-uc.a.run.app";
    let source = GceMetadata::id_token(audience)
        .host(platform.addr.to_string())
        .build()
        .unwrap();
    let handle = spawn(source);
    let token = first_token(&handle).await;
    assert_eq!(claim(&token, "aud"), audience);
    assert_eq!(
        token.expiry(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(claim(&token, "exp").as_u64().unwrap()))
    );
    let seen = platform.seen_at("/default/identity");
    assert_eq!(seen[0].query["audience"], audience);
    assert_eq!(seen[0].query["format"], "full");

    let env = [("GCE_METADATA_HOST", platform.addr.to_string())];
    let Some(theirs) = sdk::python(&["gce-id", audience], &env).await else {
        return;
    };
    let theirs = tokenwarden::Token::new(theirs);
    assert_eq!(
        claim(&theirs, "aud"),
        audience,
        "google-auth read the same format"
    );
}

#[tokio::test]
async fn a_metadata_server_that_is_not_up_yet_is_waited_for() {
    let platform = Platform::start().await;
    platform.down_for(3);
    let source = access_token(&platform);
    let handle = spawn(source);
    let mut events = handle.subscribe();
    let token = first_token(&handle).await;
    assert!(token.expose_secret().starts_with("ya29.gce-access-"));
    let mut transient_failures = 0;
    while let Ok(event) = events.try_recv() {
        if let Event::RefreshFailed { error, .. } = event {
            assert!(!error.is_permanent(), "{error}");
            transient_failures += 1;
        }
    }
    assert_eq!(
        transient_failures, 3,
        "three refused connections, then a token"
    );
}

#[tokio::test]
async fn an_answer_without_the_metadata_flavor_header_is_refused() {
    let platform = Platform::start().await;
    platform.unflavored();
    let source = access_token(&platform);
    let handle = spawn(source);
    let mut events = handle.subscribe();
    let Ok(Event::RefreshFailed { error, .. }) = events.recv().await else {
        panic!("a failed refresh first");
    };
    let message = error.to_string();
    assert!(
        message.contains("Metadata-Flavor") || message.contains("metadata-flavor"),
        "{message}"
    );
    assert!(
        !error.is_permanent(),
        "it may be the network coming up: retried"
    );
    assert!(matches!(handle.current(), Err(Error::Pending { .. })));
}

#[tokio::test]
async fn an_unknown_service_account_fails_permanently_saying_so() {
    let platform = Platform::start().await;
    let source = GceMetadata::access_token()
        .service_account("nobody@project.iam.gserviceaccount.com")
        .host(platform.addr.to_string())
        .build()
        .unwrap();
    let handle = spawn(source);
    let error = failure(&handle).await;
    let message = error.to_string();
    assert!(matches!(error, Error::Failed(_)), "{message}");
    assert!(
        message.contains("404") && message.contains("service account"),
        "{message}"
    );
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let cases = [
        (
            GceMetadata::id_token(" ").build().unwrap_err().to_string(),
            "audience",
        ),
        (
            GceMetadata::id_token("aud")
                .scopes(["s"])
                .build()
                .unwrap_err()
                .to_string(),
            "scopes",
        ),
        (
            GceMetadata::access_token()
                .host("evil/path")
                .build()
                .unwrap_err()
                .to_string(),
            "host",
        ),
        (
            GceMetadata::access_token()
                .service_account("a/../b")
                .build()
                .unwrap_err()
                .to_string(),
            "service account",
        ),
    ];
    for (message, field) in cases {
        assert!(message.contains(field), "{message}");
    }
}
