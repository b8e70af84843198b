//! OAuth2 refresh-token grant (RFC 6749 section 6), rotation, and persistence.

use std::sync::{Arc, Mutex};

use serde_json::json;
use tokenwarden::sources::{HttpOptions, RefreshTokenGrant};
use tokenwarden::store::{FileStore, StoreError, StoreFuture, TokenStore};
use tokenwarden::{
    Error, ExposeSecret, FetchContext, FetchReason, Refresher, Token, TokenSource, TokenState,
};
use tokio::sync::watch;

use crate::server::{Reply, Server, assert_no_secret};

/// The grant against `server`, from the login's refresh token `ref-1`.
fn grant(server: &Server) -> RefreshTokenGrant {
    RefreshTokenGrant::builder(server.url("/token"), "ref-1")
        .build()
        .unwrap()
}

fn initial() -> FetchContext {
    FetchContext::new(FetchReason::Initial)
}

fn rotated(access: &str, refresh: &str) -> Reply {
    Reply::json(
        200,
        json!({"access_token": access, "expires_in": 3600, "refresh_token": refresh}),
    )
}

#[tokio::test]
async fn sends_the_grant_and_uses_the_newest_refresh_token() {
    let server = Server::start().await;
    server.reply([rotated("acc-1", "ref-2"), Reply::token("acc-2")]);
    let source = RefreshTokenGrant::builder(server.url("/token"), "ref-1")
        .client_id("desktop-app")
        .build()
        .unwrap();

    let first = source.fetch(initial()).await.unwrap();
    assert_eq!(first.refresh_token().unwrap().expose_secret(), "ref-2");
    let form = server.request(0).form();
    assert_eq!(
        form,
        [
            ("grant_type", "refresh_token"),
            ("refresh_token", "ref-1"),
            ("client_id", "desktop-app"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );

    // The rotated refresh token is used next; an answer without one keeps it.
    let second = source
        .fetch(FetchContext::new(FetchReason::Scheduled).with_previous(first))
        .await
        .unwrap();
    assert_eq!(server.request(1).form()[1].1, "ref-2");
    assert_eq!(second.refresh_token().unwrap().expose_secret(), "ref-2");
}

#[tokio::test]
async fn invalid_grant_is_permanent_and_asks_for_a_new_login() {
    let server = Server::start().await;
    server.reply([Reply::json(
        400,
        json!({"error": "invalid_grant", "error_description": "refresh token ref-1 was revoked"}),
    )]);
    let source = grant(&server);

    let error = source.fetch(initial()).await.unwrap_err();
    assert!(error.is_permanent());
    let text = error.to_string();
    assert!(
        text.contains("answered 400 Bad Request: invalid_grant"),
        "{text}"
    );
    assert!(text.contains("a new login is needed"), "{text}");
    assert!(
        text.contains("[redacted]"),
        "the echoed token is scrubbed: {text}"
    );
    assert_no_secret(&text, &["ref-1"]);
}

#[tokio::test]
async fn claims_of_the_access_token_are_readable() {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = format!(
        "{}.{}.sig",
        engine.encode(r#"{"alg":"RS256"}"#),
        engine.encode(r#"{"https://api.test/account_id":"acct_7","exp":4000000000}"#)
    );
    let server = Server::start().await;
    server.reply([rotated(&jwt, "ref-2")]);
    let source = grant(&server);
    let token = source.fetch(initial()).await.unwrap();
    assert_eq!(
        token.claims().unwrap()["https://api.test/account_id"],
        "acct_7"
    );
}

/// A store that records, at each save, which token readers could see at that moment.
#[derive(Clone, Default)]
struct Witness {
    published: Arc<Mutex<Option<watch::Receiver<TokenState>>>>,
    saves: Arc<Mutex<Vec<Save>>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Save {
    saved: String,
    visible_meanwhile: Option<String>,
}

impl TokenStore for Witness {
    fn load(&self) -> StoreFuture<'_, Option<Token>> {
        Box::pin(async { Ok(None) })
    }

    fn save(&self, token: &Token) -> StoreFuture<'_, ()> {
        let visible = self
            .published
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|w| w.borrow().token().map(|t| t.expose_secret().to_owned()));
        self.saves.lock().unwrap().push(Save {
            saved: token.expose_secret().to_owned(),
            visible_meanwhile: visible,
        });
        Box::pin(async { Ok::<_, StoreError>(()) })
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_is_saved_before_the_new_token_is_published() {
    let server = Server::start().await;
    server.reply([rotated("acc-1", "ref-2"), rotated("acc-2", "ref-3")]);
    let source = grant(&server);
    let witness = Witness::default();
    let handle = Refresher::builder(source).store(witness.clone()).spawn();
    *witness.published.lock().unwrap() = Some(handle.watch());

    handle.ready().await.unwrap();
    handle.refresh().await.unwrap();

    let saves = witness.saves.lock().unwrap().clone();
    assert_eq!(
        saves,
        [
            Save {
                saved: "acc-1".into(),
                visible_meanwhile: None
            },
            Save {
                saved: "acc-2".into(),
                visible_meanwhile: Some("acc-1".into())
            },
        ],
        "each token was saved while readers still saw the one before"
    );
}

#[tokio::test]
async fn a_restart_resumes_from_the_store_without_a_new_login() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    let server = Server::start().await;
    server.reply([rotated("acc-1", "ref-2")]);

    // First run: the login's refresh token is rotated and stored.
    let source = grant(&server);
    let handle = Refresher::builder(source)
        .store(FileStore::new(&path))
        .spawn();
    handle.ready().await.unwrap();
    handle.shutdown();
    handle.stopped().await;

    // Second run, still valid: no request at all.
    let source = grant(&server);
    let handle = Refresher::builder(source)
        .store(FileStore::new(&path))
        .spawn();
    let token = handle.ready().await.unwrap();
    assert_eq!(token.expose_secret(), "acc-1");
    assert_eq!(server.requests().len(), 1);

    // A forced refresh uses the stored, rotated refresh token, not the login's.
    server.reply([rotated("acc-2", "ref-3")]);
    handle.refresh().await.unwrap();
    assert_eq!(server.request(1).form()[1].1, "ref-2");
}

#[tokio::test]
async fn a_corrupt_store_is_reported_left_in_place_and_the_credential_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    std::fs::write(&path, b"{ not json").unwrap();
    let server = Server::start().await;
    server.reply([rotated("acc-1", "ref-2")]);

    let error = FileStore::new(&path).load().await.unwrap_err().to_string();
    assert!(error.contains("is corrupt"), "{error}");
    assert!(error.contains("left in place"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{ not json");

    let source = grant(&server);
    let handle = Refresher::builder(source)
        .store(FileStore::new(&path))
        .spawn();
    assert_eq!(handle.ready().await.unwrap().expose_secret(), "acc-1");
    let stored = FileStore::new(&path).load().await.unwrap().unwrap();
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "ref-2");
}

#[tokio::test]
async fn a_permanent_failure_reaches_the_handle() {
    let server = Server::start().await;
    server.reply([Reply::json(400, json!({"error": "invalid_grant"}))]);
    let source = RefreshTokenGrant::builder(server.url("/token"), "ref-1")
        .http(HttpOptions::new())
        .build()
        .unwrap();
    let handle = Refresher::builder(source).spawn();
    let error = handle.ready().await.unwrap_err();
    assert!(matches!(error, Error::Failed(_)), "{error:?}");
    assert!(
        error.to_string().contains("a new login is needed"),
        "{error}"
    );
}
