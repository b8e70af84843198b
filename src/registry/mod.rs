//! [`Registry`]: many credentials in one process, with one shutdown, one event stream and a
//! global cap on concurrent fetches.

mod fetch_limit;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use fetch_limit::FetchLimit;

use crate::refresher::Joined;
use crate::{Event, RefresherBuilder, TokenHandle};

/// One event of one credential, from [`Registry::subscribe`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct KeyedEvent<K> {
    /// Whose.
    pub key: K,
    /// What happened.
    pub event: Event,
}

/// Refreshers keyed by `K` (a tenant, an account): for gateways that hold one credential per
/// tenant, thousands of which may expire in the same minute.
///
/// - Every refresher watches the registry's [`CancellationToken`] and runs on one
///   [`TaskTracker`]: [`shutdown`](Registry::shutdown) stops them all and
///   [`stopped`](Registry::stopped) waits until every task has exited.
/// - At most [`max_concurrent_fetches`](RegistryBuilder::max_concurrent_fetches) fetches run at
///   once (default 32), so a mass expiry never opens thousands of connections. Waiting fetches
///   are served most urgent first (a credential without a valid token, then the one whose token
///   expires soonest) and in arrival order among equals.
/// - [`subscribe`](Registry::subscribe) is one stream of every credential's events, keyed.
///
/// Cloning is cheap; clones share the credentials.
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::{FetchError, Refresher, Registry, Token};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry: Registry<String> = Registry::builder().max_concurrent_fetches(16).build();
/// for tenant in ["acme", "globex"] {
///     let source = tokenwarden::from_fn(move |_ctx| async move {
///         Ok::<_, FetchError>(Token::new(format!("token-for-{tenant}")).expires_in(Duration::from_secs(600)))
///     });
///     registry.insert(tenant.to_string(), Refresher::builder(source));
/// }
/// let acme = registry.get("acme").unwrap();
/// assert_eq!(acme.ready().await.unwrap().expose_secret(), "token-for-acme");
///
/// registry.shutdown();
/// registry.stopped().await;
/// # }
/// ```
pub struct Registry<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    credentials: RwLock<HashMap<K, TokenHandle>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    limit: FetchLimit,
    events: broadcast::Sender<KeyedEvent<K>>,
}

impl<K> Clone for Registry<K> {
    fn clone(&self) -> Self {
        Registry {
            shared: self.shared.clone(),
        }
    }
}

impl<K> Registry<K>
where
    K: Clone + Eq + Hash + fmt::Display + Send + Sync + 'static,
{
    /// A registry with the defaults (32 concurrent fetches).
    pub fn new() -> Registry<K> {
        Registry::builder().build()
    }

    /// Starts configuring a registry.
    pub fn builder() -> RegistryBuilder<K> {
        RegistryBuilder {
            max_concurrent_fetches: 32,
            cancel: None,
            event_capacity: 1024,
            keys: PhantomData,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<K, TokenHandle>> {
        // The map is valid between statements; a panic elsewhere does not corrupt it.
        self.shared
            .credentials
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<K, TokenHandle>> {
        self.shared
            .credentials
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns `refresher` for `key` and returns its handle. A credential already under `key`
    /// is shut down and replaced.
    ///
    /// The builder's settings are kept: unless it was named, the credential is named after the
    /// key (its `Display`, so `tenant-a`, not `"tenant-a"`) in logs; a
    /// [`cancellation_token`](RefresherBuilder::cancellation_token) set on it still stops this
    /// credential, and so does the registry's shutdown.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime, like `tokio::spawn`.
    pub fn insert(&self, key: K, refresher: RefresherBuilder) -> TokenHandle {
        let events = self.shared.events.clone();
        let event_key = key.clone();
        let mut refresher = refresher.name_if_unnamed(|| key.to_string());
        refresher.joined = Some(Joined {
            cancel: self.shared.cancel.clone(),
            tracker: self.shared.tracker.clone(),
            limit: self.shared.limit.clone(),
            event_hook: Arc::new(move |event: &Event| {
                let _ = events.send(KeyedEvent {
                    key: event_key.clone(),
                    event: event.clone(),
                });
            }),
        });
        let handle = refresher.spawn();
        if let Some(replaced) = self.write().insert(key, handle.clone()) {
            replaced.shutdown();
        }
        handle
    }

    /// The handle of the credential under `key`. Takes any borrowed form of the key, as
    /// `HashMap::get` does: `registry.get("tenant-a")` for `String` keys.
    pub fn get<Q>(&self, key: &Q) -> Option<TokenHandle>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read().get(key).cloned()
    }

    /// Stops and forgets the credential under `key`, returning its handle (await
    /// [`TokenHandle::stopped`] to know it has exited).
    pub fn remove<Q>(&self, key: &Q) -> Option<TokenHandle>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let handle = self.write().remove(key)?;
        handle.shutdown();
        Some(handle)
    }

    /// Every credential's key and handle, as of now.
    pub fn handles(&self) -> Vec<(K, TokenHandle)> {
        self.read()
            .iter()
            .map(|(key, handle)| (key.clone(), handle.clone()))
            .collect()
    }

    /// How many credentials there are.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every credential's events, with its key. A subscriber that falls more than the
    /// builder's [`event_capacity`](RegistryBuilder::event_capacity) behind is told how many it
    /// missed; it never slows a refresher.
    pub fn subscribe(&self) -> broadcast::Receiver<KeyedEvent<K>> {
        self.shared.events.subscribe()
    }

    /// Stops every credential (also those inserted later) and forgets them.
    pub fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.write().clear();
    }

    /// Waits until every refresher task of this registry has exited (after
    /// [`shutdown`](Registry::shutdown), or once each was removed).
    pub async fn stopped(&self) {
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}

impl<K> Default for Registry<K>
where
    K: Clone + Eq + Hash + fmt::Display + Send + Sync + 'static,
{
    fn default() -> Self {
        Registry::new()
    }
}

impl<K: fmt::Debug> fmt::Debug for Registry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = self
            .shared
            .credentials
            .read()
            .map(|map| map.len())
            .unwrap_or_default();
        f.debug_struct("Registry")
            .field("credentials", &credentials)
            .field("tasks", &self.shared.tracker.len())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Registry`] of credentials keyed by `K`.
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct RegistryBuilder<K> {
    max_concurrent_fetches: usize,
    cancel: Option<CancellationToken>,
    event_capacity: usize,
    keys: PhantomData<fn() -> K>,
}

impl<K> RegistryBuilder<K>
where
    K: Clone + Eq + Hash + fmt::Display + Send + Sync + 'static,
{
    /// How many fetches may run at once across the registry. Default 32: enough to renew
    /// thousands of credentials within a minute at typical endpoint latencies, few enough not
    /// to look like an attack to the token endpoint.
    pub fn max_concurrent_fetches(mut self, limit: usize) -> Self {
        self.max_concurrent_fetches = limit.max(1);
        self
    }

    /// Shuts the registry down when `token` is cancelled (it watches a child of it).
    pub fn cancellation_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// How many events the merged stream buffers for a slow subscriber. Default 1024.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Builds the registry.
    pub fn build(self) -> Registry<K> {
        let (events, _) = broadcast::channel(self.event_capacity);
        Registry {
            shared: Arc::new(Shared {
                credentials: RwLock::new(HashMap::new()),
                cancel: self
                    .cancel
                    .map_or_else(CancellationToken::new, |parent| parent.child_token()),
                tracker: TaskTracker::new(),
                limit: FetchLimit::new(self.max_concurrent_fetches),
                events,
            }),
        }
    }
}
