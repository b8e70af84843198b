//! Persistence of rotated tokens: the [`TokenStore`] trait, [`FileStore`], and [`on_save`] for
//! hosts that keep tokens elsewhere (a keyring, their own database).
//!
//! Give a refresher a store with [`RefresherBuilder::store`](crate::RefresherBuilder::store):
//! at start it loads the stored token (a still-valid one costs no fetch; an expired one is
//! handed to the first fetch, so its refresh token can be used), and after every fetch it saves
//! the new token **before** publishing it, so a crash can never lose the only valid refresh
//! token.

mod file;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use file::FileStore;
#[cfg_attr(not(feature = "redis"), allow(unused_imports))]
pub(crate) use file::{decode_record, encode_record};

use crate::Token;

/// The future a [`TokenStore`] returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Somewhere tokens outlive the process.
///
/// ```
/// use tokenwarden::Token;
/// use tokenwarden::store::{StoreError, StoreFuture, TokenStore};
///
/// struct Keyring;
///
/// impl TokenStore for Keyring {
///     fn load(&self) -> StoreFuture<'_, Option<Token>> {
///         Box::pin(async { Ok(None) })
///     }
///     fn save(&self, token: &Token) -> StoreFuture<'_, ()> {
///         let _secret = token.expose_secret().to_owned(); // hand it to the keyring
///         Box::pin(async { Ok(()) })
///     }
/// }
/// ```
pub trait TokenStore: Send + Sync + 'static {
    /// The stored token, or `None` if nothing is stored yet.
    fn load(&self) -> StoreFuture<'_, Option<Token>>;

    /// Stores `token`, replacing what was stored. Called before the token is published.
    fn save(&self, token: &Token) -> StoreFuture<'_, ()>;
}

/// Why a store could not load or save: names the store and the problem, never a secret.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl StoreError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError(message.into())
    }
}

/// A store that only saves, by calling `save` with each new token: the hook for hosts that
/// keep tokens in a keyring or their own database. Loads nothing.
///
/// ```
/// use tokenwarden::store;
///
/// let hook = store::on_save(|token| {
///     let expiry = token.expiry();
///     async move {
///         // write to your database here
///         let _ = expiry;
///         Ok(())
///     }
/// });
/// # let _ = tokenwarden::Refresher::builder(tokenwarden::sources::StaticToken::new(tokenwarden::Token::new("t"))).store(hook);
/// ```
pub fn on_save<F, Fut>(save: F) -> OnSave<F>
where
    F: Fn(Token) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), StoreError>> + Send + 'static,
{
    OnSave { save }
}

/// A save-only store made by [`on_save`].
pub struct OnSave<F> {
    save: F,
}

impl<F, Fut> TokenStore for OnSave<F>
where
    F: Fn(Token) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), StoreError>> + Send + 'static,
{
    fn load(&self) -> StoreFuture<'_, Option<Token>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn save(&self, token: &Token) -> StoreFuture<'_, ()> {
        Box::pin((self.save)(token.clone()))
    }
}

impl<F> fmt::Debug for OnSave<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnSave")
    }
}
