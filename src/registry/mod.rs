//! [`Registry`]: many credentials in one process, with one shutdown, one event stream and a
//! global cap on concurrent fetches.

mod fetch_limit;
mod keyed;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use fetch_limit::FetchLimit;
pub use keyed::{KeyedCredential, KeyedCredentialBuilder, TokenKey};

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
    credentials: RwLock<HashMap<K, Entry>>,
    /// What `Entry::last_used` counts from (tokio's clock, so paused-time tests move it).
    epoch: tokio::time::Instant,
    cancel: CancellationToken,
    tracker: TaskTracker,
    limit: FetchLimit,
    events: broadcast::Sender<KeyedEvent<K>>,
}

/// One credential and when it was last asked for.
struct Entry {
    handle: TokenHandle,
    /// Milliseconds since the registry's epoch at the last `get`.
    last_used: AtomicU64,
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<K, Entry>> {
        // The map is valid between statements; a panic elsewhere does not corrupt it.
        self.shared
            .credentials
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<K, Entry>> {
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
        let handle = self.spawn_joined(&key, refresher);
        let entry = self.entry(handle.clone());
        if let Some(replaced) = self.write().insert(key, entry) {
            replaced.handle.shutdown();
        }
        handle
    }

    /// The handle under `key`, or, if there is none, the refresher `make` builds for it,
    /// spawned and inserted: one refresher per key however many callers ask at once (`make`
    /// runs under the registry's write lock, at most once per missing key). `make` may fail
    /// (a configuration error for this key); nothing is inserted then.
    ///
    /// # Errors
    ///
    /// What `make` returned.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime, like `tokio::spawn`.
    pub fn get_or_insert_with<E>(
        &self,
        key: &K,
        make: impl FnOnce(&K) -> Result<RefresherBuilder, E>,
    ) -> Result<TokenHandle, E> {
        self.get_or_insert_bounded(key, usize::MAX, make)
    }

    /// [`get_or_insert_with`](Registry::get_or_insert_with), stopping the least recently used
    /// credential first if there are already `max` of them.
    pub(crate) fn get_or_insert_bounded<E>(
        &self,
        key: &K,
        max: usize,
        make: impl FnOnce(&K) -> Result<RefresherBuilder, E>,
    ) -> Result<TokenHandle, E> {
        if let Some(handle) = self.get(key) {
            return Ok(handle);
        }
        let mut credentials = self.write();
        // Another caller may have inserted it between the two locks.
        if let Some(entry) = credentials.get(key) {
            entry.last_used.store(self.now_ms(), Ordering::Relaxed);
            return Ok(entry.handle.clone());
        }
        let handle = self.spawn_joined(key, make(key)?);
        if credentials.len() >= max {
            let oldest = credentials
                .iter()
                .min_by_key(|(_, entry)| entry.last_used.load(Ordering::Relaxed))
                .map(|(key, _)| key.clone());
            if let Some(evicted) = oldest.and_then(|oldest| credentials.remove(&oldest)) {
                evicted.handle.shutdown();
            }
        }
        credentials.insert(key.clone(), self.entry(handle.clone()));
        Ok(handle)
    }

    /// Stops and forgets every credential not asked for (by [`get`](Registry::get) or
    /// [`get_or_insert_with`](Registry::get_or_insert_with)) for `idle` or longer; returns
    /// their keys.
    pub fn remove_idle(&self, idle: Duration) -> Vec<K> {
        let now = self.now_ms();
        let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let mut credentials = self.write();
        let stale: Vec<K> = credentials
            .iter()
            .filter(|(_, entry)| {
                now.saturating_sub(entry.last_used.load(Ordering::Relaxed)) >= idle
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &stale {
            if let Some(entry) = credentials.remove(key) {
                entry.handle.shutdown();
            }
        }
        stale
    }

    fn entry(&self, handle: TokenHandle) -> Entry {
        Entry {
            handle,
            last_used: AtomicU64::new(self.now_ms()),
        }
    }

    fn now_ms(&self) -> u64 {
        let elapsed = self.shared.epoch.elapsed();
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }

    /// `refresher`, joined to this registry (shutdown, tasks, fetch cap, merged events) and
    /// spawned.
    fn spawn_joined(&self, key: &K, refresher: RefresherBuilder) -> TokenHandle {
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
        refresher.spawn()
    }

    /// The handle of the credential under `key`. Takes any borrowed form of the key, as
    /// `HashMap::get` does: `registry.get("tenant-a")` for `String` keys. Counts as a use for
    /// [`remove_idle`](Registry::remove_idle).
    pub fn get<Q>(&self, key: &Q) -> Option<TokenHandle>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let credentials = self.read();
        let entry = credentials.get(key)?;
        entry.last_used.store(self.now_ms(), Ordering::Relaxed);
        Some(entry.handle.clone())
    }

    /// Stops and forgets the credential under `key`, returning its handle (await
    /// [`TokenHandle::stopped`] to know it has exited).
    pub fn remove<Q>(&self, key: &Q) -> Option<TokenHandle>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entry = self.write().remove(key)?;
        entry.handle.shutdown();
        Some(entry.handle)
    }

    /// Every credential's key and handle, as of now.
    pub fn handles(&self) -> Vec<(K, TokenHandle)> {
        self.read()
            .iter()
            .map(|(key, entry)| (key.clone(), entry.handle.clone()))
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
                epoch: tokio::time::Instant::now(),
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
