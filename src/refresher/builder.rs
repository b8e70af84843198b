//! [`Refresher`] and [`RefresherBuilder`]: configuring and spawning a credential's actor.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::actor::{Actor, EventHook, Setup};
use super::handle::Ends;
use crate::fleet::{FleetStore, Settings, Shared};
use crate::registry::FetchLimit;
use crate::store::TokenStore;

/// Bound on each call to a fleet store (see [`RefresherBuilder::shared`]).
const FLEET_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
use crate::{Clock, Event, RefreshPolicy, Token, TokenHandle, TokenSource, TokenState};

/// Spawns refreshers. See [`Refresher::builder`].
#[derive(Debug)]
pub struct Refresher {
    _private: (),
}

impl Refresher {
    /// Starts configuring a refresher that gets its tokens from `source`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenwarden::{FetchError, Refresher, RefreshPolicy, Token};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = CancellationToken::new();
    /// let handle = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
    ///     Ok::<_, FetchError>(Token::new("abc").expires_in(Duration::from_secs(900)))
    /// }))
    /// .name("billing-api")
    /// .policy(RefreshPolicy::default())
    /// .cancellation_token(shutdown.clone())
    /// .spawn();
    /// # drop(handle);
    /// # }
    /// ```
    pub fn builder(source: impl TokenSource) -> RefresherBuilder {
        RefresherBuilder {
            source: Arc::new(source),
            name: None,
            policy: default_policy(),
            cancel: None,
            initial: None,
            store: None,
            fleet: None,
            clock: Clock::system(),
            event_capacity: 64,
            joined: None,
        }
    }
}

/// Configures a refresher; [`spawn`](RefresherBuilder::spawn) starts it.
#[must_use = "a builder does nothing until spawned"]
pub struct RefresherBuilder {
    source: Arc<dyn TokenSource>,
    name: Option<Arc<str>>,
    policy: Arc<RefreshPolicy>,
    cancel: Option<CancellationToken>,
    initial: Option<Token>,
    store: Option<Arc<dyn TokenStore>>,
    fleet: Option<Arc<dyn FleetStore>>,
    clock: Clock,
    event_capacity: usize,
    /// Set by a registry: where to spawn, the shared fetch cap, the merged event stream.
    pub(crate) joined: Option<Joined>,
}

/// What a [`Registry`](crate::Registry) adds to the refreshers it spawns.
pub(crate) struct Joined {
    /// The registry's shutdown, watched besides the builder's own token (which it must not
    /// replace).
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) limit: FetchLimit,
    pub(crate) event_hook: EventHook,
}

impl fmt::Debug for RefresherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefresherBuilder")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("cancellation_token", &self.cancel.is_some())
            .field("initial_token", &self.initial)
            .field("store", &self.store.is_some())
            .field("shared", &self.fleet.is_some())
            .field("clock", &self.clock)
            .field("event_capacity", &self.event_capacity)
            .field("in_registry", &self.joined.is_some())
            .finish_non_exhaustive()
    }
}

impl RefresherBuilder {
    /// Names the credential in tracing spans, logs and error messages. Default: `credential`.
    pub fn name(mut self, name: impl Into<String>) -> RefresherBuilder {
        self.name = Some(Arc::from(name.into()));
        self
    }

    /// When to refresh and how to retry. Default: [`RefreshPolicy::default`], one copy shared
    /// by every refresher that keeps it. Pass an `Arc<RefreshPolicy>` to share one policy among
    /// many credentials too (a registry of a million saves a copy each).
    pub fn policy(mut self, policy: impl Into<Arc<RefreshPolicy>>) -> RefresherBuilder {
        self.policy = policy.into();
        self
    }

    /// Names it `name` unless it was named already (a registry names credentials by key).
    pub(crate) fn name_if_unnamed(mut self, name: impl FnOnce() -> String) -> RefresherBuilder {
        if self.name.is_none() {
            self.name = Some(Arc::from(name()));
        }
        self
    }

    /// Stops the refresher when `token` is cancelled (a service's shutdown signal).
    /// [`TokenHandle::shutdown`] stops only this refresher, never the token.
    pub fn cancellation_token(mut self, token: CancellationToken) -> RefresherBuilder {
        self.cancel = Some(token);
        self
    }

    /// Starts from this token (one persisted by an earlier run) if it is still valid, so a
    /// restart costs no fetch. An expired one is handed to the first fetch as the previous
    /// token (its refresh token may still work).
    pub fn initial_token(mut self, token: Token) -> RefresherBuilder {
        self.initial = Some(token);
        self
    }

    /// Persists tokens: loads the stored one at start (unless an
    /// [`initial_token`](RefresherBuilder::initial_token) is given) and saves each new one
    /// **before** publishing it, so a crash never loses a rotated refresh token. See
    /// [`store`](crate::store).
    pub fn store(mut self, store: impl TokenStore) -> RefresherBuilder {
        self.store = Some(Arc::new(store));
        self
    }

    /// Shares the token with the other replicas that use the same fleet store: one of them
    /// fetches when a refresh is due, the others adopt its token (see [`fleet`](crate::fleet)).
    /// Leases last at most the policy's `fleet_lease`; each call to the store is bounded by
    /// 2 s. When the store cannot be used, a source that spends nothing single-use fetches
    /// alone; one that does waits for the store (see [`fleet`](crate::fleet)).
    pub fn shared(mut self, store: impl FleetStore) -> RefresherBuilder {
        self.fleet = Some(Arc::new(store));
        self
    }

    /// The wall clock used for expiry. Default: [`Clock::system`]; tests on paused tokio time
    /// use [`Clock::tokio`].
    pub fn clock(mut self, clock: Clock) -> RefresherBuilder {
        self.clock = clock;
        self
    }

    /// How many events a subscriber may fall behind before it starts missing them. Default 64.
    pub fn event_capacity(mut self, capacity: usize) -> RefresherBuilder {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Spawns the refresher's task on the current tokio runtime and returns a handle to it.
    /// The first fetch starts at once (unless a valid initial token was given).
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn(self) -> TokenHandle {
        let name = self.name.unwrap_or_else(default_name);
        let board = Arc::new(super::board::Board::new(
            TokenState::Pending {
                last_error: None,
                next_attempt: None,
            },
            self.event_capacity,
        ));

        let span = tracing::info_span!("tokenwarden", credential = %name);
        let (tracker, limit, event_hook, also_cancel) = match self.joined {
            Some(joined) => (
                Some(joined.tracker),
                Some(joined.limit),
                Some(joined.event_hook),
                Some(joined.cancel),
            ),
            None => (None, None, None, None),
        };
        let fleet_unavailable = self.fleet.as_ref().map(|_| Arc::default());
        let source = match self.fleet {
            Some(fleet) => {
                let (board, hook) = (board.clone(), event_hook.clone());
                #[cfg(feature = "metrics")]
                let credential = name.clone();
                #[cfg(feature = "metrics")]
                crate::integrations::metrics::fleet_available(&credential, true);
                let report = Arc::new(move |event: Event| {
                    #[cfg(feature = "metrics")]
                    match &event {
                        Event::FleetUnavailable { .. } => {
                            crate::integrations::metrics::fleet_available(&credential, false);
                        }
                        Event::FleetAvailable => {
                            crate::integrations::metrics::fleet_available(&credential, true);
                        }
                        _ => {}
                    }
                    if let Some(hook) = &hook {
                        hook(&event);
                    }
                    board.events.send(event);
                });
                let settings = Settings {
                    longest_lease: self.policy.fleet_lease,
                    store_timeout: FLEET_STORE_TIMEOUT,
                    // A little less than the refresher's own bound, so the message is the
                    // fleet's.
                    wait_for: self
                        .policy
                        .fetch_timeout
                        .saturating_sub(Duration::from_secs(1))
                        .max(self.policy.fetch_timeout / 2),
                    prober_retry: self.policy.fleet_retry_while_waiting,
                };
                Arc::new(Shared::new(
                    self.source,
                    fleet,
                    settings,
                    self.clock.clone(),
                    report,
                    fleet_unavailable.clone().unwrap_or_default(),
                )) as Arc<dyn TokenSource>
            }
            None => self.source,
        };
        let actor = Actor::new(Setup {
            name: name.clone(),
            source,
            policy: self.policy,
            clock: self.clock.clone(),
            initial: self.initial,
            store: self.store,
            limit,
            event_hook,
            state: board.clone(),
            cancel: self.cancel,
            also_cancel,
        });
        let task = actor.run().instrument(span);
        match tracker {
            Some(tracker) => drop(tracker.spawn(task)),
            None => drop(tokio::spawn(task)),
        }

        TokenHandle::new(Ends {
            name,
            clock: self.clock,
            board,
            fleet_unavailable,
        })
    }
}

/// The default policy, one copy for every refresher that keeps it (a million credentials need
/// not hold a million copies).
fn default_policy() -> Arc<RefreshPolicy> {
    static DEFAULT: std::sync::OnceLock<Arc<RefreshPolicy>> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(Arc::default).clone()
}

/// The name of a credential that was not given one: one shared allocation.
fn default_name() -> Arc<str> {
    static NAME: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| Arc::from("credential")).clone()
}
