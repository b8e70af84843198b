//! The fleet on real Redis deployments (Debian's `redis-server` and `redis-sentinel`, started
//! on loopback by each test and stopped by their process ids) and, for the fault suite, a real
//! authorization server that rotates refresh tokens (oidc-provider on Node.js). Without those
//! programs the tests fail, saying what to install (see `tests/common/required.rs`).
#![cfg(feature = "redis")]

#[path = "../common/oidc.rs"]
mod oidc;
#[path = "../common/redis.rs"]
mod redis_servers;
#[path = "../common/required.rs"]
mod required;

mod basics;
#[cfg(feature = "dpop")]
mod dpop;
mod faults;
mod highly_available;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokenwarden::fleet::RedisFleet;
use tokenwarden::{FetchError, Refresher, Token, TokenHandle};

/// A token endpoint that counts its mints; each answer takes 200 ms.
fn counting_source(mints: &Arc<AtomicU32>) -> impl tokenwarden::TokenSource {
    let mints = mints.clone();
    tokenwarden::from_fn(move |_ctx| {
        let n = mints.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, FetchError>(
                Token::new(format!("fleet-token-{n}")).expires_in(Duration::from_secs(600)),
            )
        }
    })
}

fn replica(fleet: RedisFleet, source: impl tokenwarden::TokenSource) -> TokenHandle {
    Refresher::builder(source).shared(fleet).spawn()
}
