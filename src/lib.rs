//! Keeps short-lived credentials fresh in the background.
//!
//! tokenwarden trades a long-lived secret for short-lived tokens and renews them *before* they
//! expire, in one spawned task per credential. Readers never wait on the network: the current
//! token is published on a `tokio::sync::watch` channel and
//! [`TokenHandle::current`] is a cheap synchronous call.
//!
//! - [`TokenSource`] is the one trait a credential flow implements; [`from_fn`] turns a closure
//!   into one.
//! - [`Refresher::builder`] configures and spawns the refresher and returns a [`TokenHandle`].
//! - [`RefreshPolicy`] says when to refresh and how to retry, as plain data with stated defaults.
//! - [`TokenState`] (on [`TokenHandle::watch`]) and [`Event`] (on [`TokenHandle::subscribe`])
//!   tell what happens.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tokenwarden::{FetchError, Refresher, Token};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tokenwarden::Error> {
//! let shutdown = CancellationToken::new();
//! let handle = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
//!     // Call your token endpoint here.
//!     Ok::<_, FetchError>(Token::new("abc").expires_in(Duration::from_secs(3600)))
//! }))
//! .name("example-api")
//! .cancellation_token(shutdown.clone())
//! .spawn();
//!
//! handle.ready().await?;
//! let header = handle.current()?.authorization_header().expect("a valid header");
//! # let _ = header;
//! shutdown.cancel();
//! handle.stopped().await;
//! # Ok(())
//! # }
//! ```
//!
//! Secrets never appear in `Debug`, `Display`, errors or logs: [`Token`] redacts them, and the
//! refresher logs only metadata.

#![warn(missing_docs)]

mod clock;
mod duration_format;
mod error;
pub mod fleet;
pub mod integrations;
mod jwt;
mod policy;
mod refresher;
pub mod registry;
mod source;
pub mod sources;
pub mod store;
mod token;

pub use clock::Clock;
pub use error::{ConfigError, Error, FetchError, FetchErrorKind};
#[cfg(feature = "http-sources")]
pub use integrations::RequestBuilderExt;
pub use policy::{Backoff, RefreshPolicy};
pub use refresher::{Event, Refresher, RefresherBuilder, TokenHandle, TokenState};
pub use registry::{KeyedEvent, Registry, RegistryBuilder};
pub use secrecy::{ExposeSecret, SecretString};
pub use source::{FetchContext, FetchFuture, FetchReason, FnSource, TokenSource, from_fn};
#[cfg(feature = "http-sources")]
pub use sources::{ApiKeyExchange, ClientCredentials, RefreshTokenGrant};
pub use store::{FileStore, StoreError, TokenStore};
pub use token::Token;

/// Keeps the README's Rust examples compiling.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
