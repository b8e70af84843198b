//! Workload identity sources against an emulated platform on 127.0.0.1 that follows each
//! provider's documented wire format, with the providers' official SDKs fetching from the same
//! endpoints (so the emulation is checked by code this project did not write).

mod azure;
mod gce;
mod github;
mod kubernetes;
mod platform;
mod sdk;

use std::time::Duration;

use tokenwarden::{Backoff, RefreshPolicy, Refresher, Token, TokenHandle, TokenSource};

/// A refresher on `source` that retries every 50 ms, as a test can wait for.
pub fn spawn(source: impl TokenSource + 'static) -> TokenHandle {
    let mut policy = RefreshPolicy::default();
    policy.backoff = Backoff::default();
    policy.backoff.initial = Duration::from_millis(50);
    policy.backoff.max = Duration::from_millis(50);
    Refresher::builder(source).policy(policy).spawn()
}

/// The first token, within 20 s.
pub async fn first_token(handle: &TokenHandle) -> Token {
    tokio::time::timeout(Duration::from_secs(20), handle.ready())
        .await
        .expect("a token within 20 s")
        .expect("a token")
}

/// The error that ends the wait for a first token, within 20 s.
pub async fn failure(handle: &TokenHandle) -> tokenwarden::Error {
    tokio::time::timeout(Duration::from_secs(20), handle.ready())
        .await
        .expect("an answer within 20 s")
        .expect_err("a failure")
}

/// [`failure`], checked to say `says` and never to show `secret`.
pub async fn failure_saying(handle: &TokenHandle, says: &str, secret: &str) -> tokenwarden::Error {
    let error = failure(handle).await;
    let message = error.to_string();
    assert!(message.contains(says), "{message}");
    assert!(!message.contains(secret), "{message}");
    error
}

/// A claim of a JWT's payload, without verifying it.
pub fn claim(token: &Token, name: &str) -> serde_json::Value {
    token.claims().expect("a JWT")[name].clone()
}
