//! [`KeyedCredential`]: one identity, a token per key (scopes, audience, resource), each
//! refresher started on first use and stopped when idle.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{KeyedEvent, Registry, RegistryBuilder};
use crate::{ConfigError, Error, RefresherBuilder, Token, TokenHandle};

/// What a token is for: the scopes, audience and resource (RFC 8707) of one request for a
/// token. Scopes are a set (`"read write"` and `"write read"` are one key); `extra` holds
/// whatever else a server distinguishes tokens by. Its `Display` is what logs name the
/// credential by.
///
/// Any `Clone + Eq + Hash + Display` type can key a [`KeyedCredential`] instead; this one
/// covers what OAuth servers take.
///
/// ```
/// use tokenwarden::registry::TokenKey;
///
/// let a = TokenKey::new().scopes(["write", "read"]).audience("https://api.example.com");
/// let b = TokenKey::new().scopes(["read", "write", "read"]).audience("https://api.example.com");
/// assert_eq!(a, b);
/// assert_eq!(a.scope(), Some("read write".to_owned()));
/// assert_eq!(a.to_string(), "scope=read write audience=https://api.example.com");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct TokenKey {
    /// The scopes, as a set.
    pub scopes: BTreeSet<String>,
    /// The `audience` parameter, if any.
    pub audience: Option<String>,
    /// The `resource` parameter (RFC 8707), if any.
    pub resource: Option<String>,
    /// Other parameters that make tokens differ, by name.
    pub extra: BTreeMap<String, String>,
}

impl TokenKey {
    /// A key with nothing set.
    pub fn new() -> TokenKey {
        TokenKey::default()
    }

    /// These scopes (added to any already set).
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> TokenKey {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// This audience.
    pub fn audience(mut self, audience: impl Into<String>) -> TokenKey {
        self.audience = Some(audience.into());
        self
    }

    /// This resource indicator (RFC 8707).
    pub fn resource(mut self, resource: impl Into<String>) -> TokenKey {
        self.resource = Some(resource.into());
        self
    }

    /// Another parameter that makes tokens differ.
    pub fn extra(mut self, name: impl Into<String>, value: impl Into<String>) -> TokenKey {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// The scopes as one `scope` parameter (space-separated, sorted), or `None` if there are
    /// none.
    pub fn scope(&self) -> Option<String> {
        (!self.scopes.is_empty()).then(|| {
            self.scopes
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
}

impl fmt::Display for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(scope) = self.scope() {
            parts.push(format!("scope={scope}"));
        }
        if let Some(audience) = &self.audience {
            parts.push(format!("audience={audience}"));
        }
        if let Some(resource) = &self.resource {
            parts.push(format!("resource={resource}"));
        }
        for (name, value) in &self.extra {
            parts.push(format!("{name}={value}"));
        }
        if parts.is_empty() {
            f.write_str("(no scope)")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

type Factory<K> = dyn Fn(&K) -> Result<RefresherBuilder, ConfigError> + Send + Sync;

/// One credential that hands out a token per key: Azure's `get_token(scopes)`, Google's ID
/// tokens per audience, an OAuth server's tokens per `resource` or `audience`.
///
/// Built on a [`Registry`] keyed by `K`: the first [`get`](KeyedCredential::get) of a key
/// builds that key's refresher with the factory and spawns it; later ones (from any number of
/// tasks at once) get the same handle. The key that finds the refresher is the key the factory
/// built it from: there is one map, so a token is never served for another key than the one it
/// was minted for (the class of bug of CVE-2025-26620, where the single-flight key and the
/// cache key differed).
///
/// - A key not asked for during [`idle_after`](KeyedCredentialBuilder::idle_after) (default
///   15 min) has its refresher stopped and its token dropped; asking again starts a new one.
/// - At most [`max_keys`](KeyedCredentialBuilder::max_keys) (default 1,000) keys are live; a
///   new key beyond that stops the least recently used one first. A handle of a stopped key
///   answers [`Error::Stopped`]: call `get` per use rather than keeping handles.
/// - Fetches share the registry's cap ([`max_concurrent_fetches`](KeyedCredentialBuilder::max_concurrent_fetches),
///   default 32), its shutdown and its merged events ([`subscribe`](KeyedCredential::subscribe)).
///
/// Cloning is cheap; clones share the keys. When the last clone is dropped, every key's
/// refresher stops, even where a handle is still held.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::registry::{KeyedCredential, TokenKey};
/// use tokenwarden::{FetchError, Refresher, Token};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tokenwarden::Error> {
/// // In a service: `ClientCredentials::builder(url, id, secret).scope(..).audience(..)`.
/// let tokens = KeyedCredential::builder(|key: &TokenKey| {
///     let scope = key.scope().unwrap_or_default();
///     Ok(Refresher::builder(tokenwarden::from_fn(move |_ctx| {
///         let scope = scope.clone();
///         async move {
///             Ok::<_, FetchError>(Token::new(format!("for-{scope}")).expires_in(Duration::from_secs(600)))
///         }
///     })))
/// })
/// .idle_after(Duration::from_secs(600))
/// .build();
///
/// let read = tokens.token(&TokenKey::new().scopes(["read"])).await?;
/// assert_eq!(read.expose_secret(), "for-read");
/// # Ok(()) }
/// ```
pub struct KeyedCredential<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    registry: Registry<K>,
    factory: Box<Factory<K>>,
    max_keys: usize,
}

impl<K> Drop for Inner<K> {
    /// The last clone is gone: every key's refresher stops (handles still held answer
    /// [`Error::Stopped`]), and so does the idle sweeper.
    fn drop(&mut self) {
        // `Registry::shutdown` without its key bounds (a `Drop` impl cannot add them); the
        // map goes with the registry.
        self.registry.shared.cancel.cancel();
    }
}

impl<K> Clone for KeyedCredential<K> {
    fn clone(&self) -> Self {
        KeyedCredential {
            inner: self.inner.clone(),
        }
    }
}

impl<K> KeyedCredential<K>
where
    K: Clone + Eq + Hash + fmt::Display + Send + Sync + 'static,
{
    /// Starts configuring a keyed credential whose refreshers `factory` builds, one per key.
    /// `factory` is called at most once per key while it is live; a [`ConfigError`] it returns
    /// is the caller's (see [`get`](KeyedCredential::get)).
    pub fn builder(
        factory: impl Fn(&K) -> Result<RefresherBuilder, ConfigError> + Send + Sync + 'static,
    ) -> KeyedCredentialBuilder<K> {
        KeyedCredentialBuilder {
            factory: Box::new(factory),
            idle_after: Duration::from_secs(15 * 60),
            max_keys: 1_000,
            registry: Registry::builder(),
        }
    }

    /// The handle of `key`'s refresher, spawned now if the key is not live.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the factory refused the key.
    ///
    /// # Panics
    ///
    /// If a refresher must be spawned outside a tokio runtime, like `tokio::spawn`.
    pub fn get(&self, key: &K) -> Result<TokenHandle, Error> {
        let inner = &self.inner;
        inner
            .registry
            .get_or_insert_bounded(key, inner.max_keys, |key| (inner.factory)(key))
            .map_err(Error::Config)
    }

    /// `key`'s token, waiting for the first one if the key is new (as
    /// [`TokenHandle::ready`]; bound it with `tokio::time::timeout` if needed).
    ///
    /// # Errors
    ///
    /// As [`get`](KeyedCredential::get) and [`TokenHandle::ready`].
    pub async fn token(&self, key: &K) -> Result<Token, Error> {
        self.get(key)?.ready().await
    }

    /// How many keys are live.
    pub fn len(&self) -> usize {
        self.inner.registry.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.inner.registry.is_empty()
    }

    /// Every key's events, with its key.
    pub fn subscribe(&self) -> broadcast::Receiver<KeyedEvent<K>> {
        self.inner.registry.subscribe()
    }

    /// The registry underneath: every live key's handle, removal, shutdown.
    pub fn registry(&self) -> &Registry<K> {
        &self.inner.registry
    }
}

impl<K: fmt::Debug> fmt::Debug for KeyedCredential<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCredential")
            .field("registry", &self.inner.registry)
            .field("max_keys", &self.inner.max_keys)
            .finish_non_exhaustive()
    }
}

/// Configures a [`KeyedCredential`].
#[must_use = "a builder does nothing until built"]
pub struct KeyedCredentialBuilder<K> {
    factory: Box<Factory<K>>,
    idle_after: Duration,
    max_keys: usize,
    registry: RegistryBuilder<K>,
}

impl<K> KeyedCredentialBuilder<K>
where
    K: Clone + Eq + Hash + fmt::Display + Send + Sync + 'static,
{
    /// A key not asked for this long is stopped. Default 15 min: long past a request burst,
    /// short enough that a key used once an hour does not hold a refresher (and fetch a token
    /// every lifetime) for nothing.
    pub fn idle_after(mut self, idle: Duration) -> Self {
        self.idle_after = idle.max(Duration::from_millis(1));
        self
    }

    /// At most this many live keys. Default 1,000: a bound on refreshers (and token fetches)
    /// that a caller deriving keys from request data cannot exceed.
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max.max(1);
        self
    }

    /// How many fetches may run at once across the keys. Default 32.
    pub fn max_concurrent_fetches(mut self, limit: usize) -> Self {
        self.registry = self.registry.max_concurrent_fetches(limit);
        self
    }

    /// Stops every key's refresher when `token` is cancelled.
    pub fn cancellation_token(mut self, token: CancellationToken) -> Self {
        self.registry = self.registry.cancellation_token(token);
        self
    }

    /// Builds it and starts the task that stops idle keys (checking every quarter of
    /// `idle_after`).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn build(self) -> KeyedCredential<K> {
        let registry = self.registry.build();
        let sweeper = registry.clone();
        let idle_after = self.idle_after;
        let stopped = registry.shared.cancel.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(idle_after / 4);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    _ = every.tick() => {
                        let idle = sweeper.remove_idle(idle_after);
                        if !idle.is_empty() {
                            tracing::debug!(keys = idle.len(), "stopped idle keys");
                        }
                    }
                }
            }
        });
        KeyedCredential {
            inner: Arc::new(Inner {
                registry,
                factory: self.factory,
                max_keys: self.max_keys,
            }),
        }
    }
}

impl<K> fmt::Debug for KeyedCredentialBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCredentialBuilder")
            .field("idle_after", &self.idle_after)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}
