//! The actor: one task per credential that owns all of its mutable state.
//!
//! The loop is glue: it waits on cancellation, commands (reader wake-ups among them), the in-flight fetch
//! and one timer, and hands each to a method that updates the state and publishes it. When to
//! refresh and how long to back off are decided by the pure functions in `crate::policy`.

use std::future::{Future, pending};
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::duration_format::{Readable, time_left};
use crate::policy::{backoff, schedule};
use crate::registry::FetchLimit;
use crate::store::{StoreError, TokenStore};
use crate::{
    Clock, Error, Event, FetchContext, FetchError, FetchReason, RefreshPolicy, Token, TokenSource,
    TokenState,
};

/// Timers further out than this are shortened (tokio's timer wheel has a limit near two years);
/// the actor then simply re-checks, so nothing is lost.
const LONGEST_TIMER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The shortest time between two checks of the wall clock against the schedule (see
/// `Actor::next_timer`).
const WALL_CLOCK_RECHECK: Duration = Duration::from_secs(10);

pub(crate) type Reply = oneshot::Sender<Result<Token, Error>>;

/// A function told of every event, besides the broadcast channel.
pub(crate) type EventHook = Arc<dyn Fn(&Event) + Send + Sync>;

/// A request from a handle that needs an answer.
pub(crate) enum Command {
    /// Fetch now (or join the fetch under way) and answer with its result.
    Refresh { reply: Reply },
    /// A server rejected `token`: fetch if it is still the current one, else answer with the
    /// current one.
    Reject { token: Token, reply: Reply },
    /// A reader found no valid token (dropped when many wait already: a fetch is coming
    /// anyway).
    Wake,
}

/// What the actor is given at spawn time.
pub(crate) struct Setup {
    pub(crate) name: Arc<str>,
    pub(crate) source: Arc<dyn TokenSource>,
    /// Shared by every refresher built with the default policy.
    pub(crate) policy: Arc<RefreshPolicy>,
    pub(crate) clock: Clock,
    pub(crate) initial: Option<Token>,
    pub(crate) store: Option<Arc<dyn TokenStore>>,
    /// A cap on concurrent fetches shared with other credentials (a registry's).
    pub(crate) limit: Option<FetchLimit>,
    /// Also told of every event (a registry's merged stream).
    pub(crate) event_hook: Option<EventHook>,
    /// Where the state is published, events sent and commands received.
    pub(crate) state: Arc<super::board::Board>,
    /// The builder's cancellation token (a service's shutdown), if it was given one.
    pub(crate) cancel: Option<CancellationToken>,
    /// A second stop signal (a registry's shutdown), besides the handle's own.
    pub(crate) also_cancel: Option<CancellationToken>,
}

/// A failed fetch whose retry is waiting. Kept so that readers arriving later can shorten the
/// wait exactly as far as the backoff allows, and no further.
struct Retry {
    failed_at: Instant,
    failure: backoff::Failure,
    sample: f64,
}

struct InFlight {
    future: Pin<Box<dyn Future<Output = Fetched> + Send>>,
    reason: FetchReason,
}

/// The outcome of a fetch: a checked token (saved to the store, if any) or why not.
struct Fetched {
    result: Result<Token, FetchError>,
    /// The token was fetched but could not be saved.
    not_saved: Option<StoreError>,
}

pub(crate) struct Actor {
    setup: Setup,
    /// The newest token, kept after it expires (a refresh-token grant needs it).
    token: Option<Token>,
    /// The token's expiry has been noticed and announced.
    expired: bool,
    /// When to check for the token's expiry, while it is valid.
    expiry_check: Option<Instant>,
    /// No token has been fetched yet and there was no valid initial one.
    initial: bool,
    last_error: Option<FetchError>,
    /// Consecutive failed fetches.
    failures: u32,
    /// Consecutive failed fetches of the last one's kind (transient or permanent).
    streak: u32,
    /// The last failure, while its retry is waiting: what the backoff was decided from.
    /// Boxed: only failing credentials have one, and idle ones are what a large process holds.
    retry: Option<Box<Retry>>,
    /// When a reader last found no valid token.
    reader_waited_at: Option<Instant>,
    /// The read before that was within `max_retry_while_waiting` of it: readers keep asking.
    /// A failure is decided (and announced) with readers waiting when they keep asking and
    /// the last one asked within `max_retry_while_waiting`: then they are still waiting when
    /// the fetch fails, whether or not one read while it ran. A lone read is not taken for a
    /// waiting reader (it still brings a waiting retry forward, and says so), so sparse reads
    /// do not keep a failing endpoint probed every few seconds.
    readers_keep_asking: bool,
    /// Why the next fetch happens, when something other than the schedule asked for it.
    next_reason: Option<FetchReason>,
    next_fetch: Option<Instant>,
    /// `next_fetch` on the wall clock, as published in the state after a failure.
    next_attempt: Option<SystemTime>,
    last_fetch_started: Option<Instant>,
    /// A server asked us not to try before this (`retry_after`); binds every trigger.
    not_before: Option<Instant>,
    in_flight: Option<InFlight>,
    /// Callers of `refresh()`/`reject()` waiting for the fetch under way (or about to start).
    waiters: Vec<Reply>,
}

impl Actor {
    pub(crate) fn new(mut setup: Setup) -> Actor {
        let token = setup.initial.take();
        Actor {
            setup,
            token,
            expired: false,
            expiry_check: None,
            initial: true,
            last_error: None,
            failures: 0,
            streak: 0,
            retry: None,
            reader_waited_at: None,
            readers_keep_asking: false,
            next_reason: None,
            next_fetch: None,
            next_attempt: None,
            last_fetch_started: None,
            not_before: None,
            in_flight: None,
            waiters: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        // Boxed: the load's state would otherwise be part of every refresher's task for its
        // whole life, although only those with a store use it, once.
        if self.token.is_none()
            && let Some(store) = self.setup.store.clone()
            && Box::pin(self.load_stored(store)).await.is_break()
        {
            return;
        }
        self.start();
        loop {
            let timer = self.next_timer();
            tokio::select! {
                biased;
                () = cancelled(self.setup.cancel.as_ref(), self.setup.also_cancel.as_ref()) => break,
                command = self.setup.state.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break, // shut down, or every handle is gone
                },
                result = fetch_result(&mut self.in_flight) => self.on_fetched(result),
                () = sleep_until(timer) => self.on_timer(),
            }
        }
        // `Drop` publishes `Stopped`, also when the task is aborted or the runtime shuts down.
    }

    /// Loads the stored token into `self.token`; breaks if the refresher was stopped meanwhile.
    async fn load_stored(&mut self, store: Arc<dyn TokenStore>) -> ControlFlow<()> {
        // A store is user code: its panic is a failed load, never a dead refresher.
        let load = tokio::time::timeout(
            self.policy().fetch_timeout,
            AssertUnwindSafe(async { store.load().await }).catch_unwind(),
        );
        tokio::select! {
            biased;
            () = cancelled(self.setup.cancel.as_ref(), self.setup.also_cancel.as_ref()) => return ControlFlow::Break(()),
            () = self.setup.state.commands.shutdown_requested() => return ControlFlow::Break(()),
            loaded = load => match loaded.map(|r| r.unwrap_or_else(|_panic| Err(StoreError::new("the token store panicked while loading")))) {
                Ok(Ok(Some(token))) => match token.defect() {
                    None => {
                        debug!("loaded the stored token");
                        self.token = Some(token);
                    }
                    Some(defect) => warn!(defect, "the stored token is unusable; fetching a new one"),
                },
                Ok(Ok(None)) => debug!("no stored token yet"),
                Ok(Err(error)) => warn!(%error, "could not load the stored token; fetching a new one"),
                Err(_) => warn!("loading the stored token timed out; fetching a new one"),
            },
        }
        ControlFlow::Continue(())
    }

    fn start(&mut self) {
        let initial = self.token.take().map(|token| {
            let policy = self.policy();
            token.for_refresher(policy.default_lifetime, |lifetime| {
                schedule::serve_margin(policy, lifetime)
            })
        });
        self.token = initial;
        match self.token.clone() {
            Some(token) if usable_at(&token, self.now()) => {
                debug!("starting from the initial token");
                self.initial = false;
                self.adopt(&token);
                self.publish();
            }
            Some(_) => {
                // Kept as the previous token (its refresh token may still work).
                self.expired = true;
                self.request_fetch(FetchReason::Initial);
            }
            None => self.request_fetch(FetchReason::Initial),
        }
    }

    fn now(&self) -> SystemTime {
        self.setup.clock.now()
    }

    fn policy(&self) -> &RefreshPolicy {
        &self.setup.policy
    }

    fn valid_token(&self) -> Option<&Token> {
        self.token
            .as_ref()
            .filter(|token| !self.expired && usable_at(token, self.now()))
    }

    fn scheduled_reason(&self) -> FetchReason {
        if self.initial {
            FetchReason::Initial
        } else {
            FetchReason::Scheduled
        }
    }

    fn failed_permanently(&self) -> bool {
        self.last_error
            .as_ref()
            .is_some_and(FetchError::is_permanent)
    }

    // ----- events from the loop -----

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Refresh { reply } => {
                self.waiters.push(reply);
                self.request_fetch(FetchReason::Forced);
            }
            Command::Reject { token, reply } => {
                if let Some(current) = self.valid_token()
                    && !current.same_secret(&token)
                {
                    // Already rotated since that token was handed out.
                    let _ = reply.send(Ok(current.clone()));
                    return;
                }
                self.waiters.push(reply);
                self.request_fetch(FetchReason::Rejected);
            }
            Command::Wake => self.on_wake(),
        }
    }

    /// A reader found no valid token. A waiting retry after a transient failure is brought
    /// forward as far as the backoff allows for waiting readers, and no further: reads never
    /// shortcut the schedule.
    fn on_wake(&mut self) {
        self.notice_expiry();
        if self.valid_token().is_some() {
            // A reader saw the refresh overdue by the wall clock.
            self.refresh_if_overdue();
            return;
        }
        let window = self.policy().max_retry_while_waiting;
        self.readers_keep_asking = self
            .reader_waited_at
            .is_some_and(|at| at.elapsed() <= window);
        self.reader_waited_at = Some(Instant::now());
        let Some(retry) = &self.retry else {
            return; // a fetch is under way, or nothing is to be retried
        };
        if retry.failure.readers_waiting {
            return; // already decided with readers waiting
        }
        let failure = backoff::Failure {
            readers_waiting: true,
            ..retry.failure
        };
        let (failed_at, sample) = (retry.failed_at, retry.sample);
        let Some(delay) = backoff::retry_delay(self.policy(), &failure, sample) else {
            return;
        };
        if let Some(retry) = &mut self.retry {
            retry.failure = failure;
        }
        let at = failed_at + delay;
        if self.next_fetch.is_none_or(|next| at < next) {
            let retry_in = at.saturating_duration_since(Instant::now());
            info!(
                retry_in = %Readable(retry_in),
                "readers are waiting for a token: retrying sooner"
            );
            self.set_next_fetch(at);
            self.publish();
            self.emit(Event::RetryRescheduled { retry_in });
            if at <= Instant::now() {
                self.on_timer();
            }
        }
    }

    /// Refreshes now if the wall clock says the refresh is due: the monotonic timers are left
    /// behind when a machine is suspended or its clock jumps.
    fn refresh_if_overdue(&mut self) {
        let overdue = self
            .valid_token()
            .and_then(Token::refresh_due)
            .is_some_and(|due| due <= self.now());
        if overdue && self.in_flight.is_none() && self.last_error.is_none() {
            let reason = self.scheduled_reason();
            self.request_fetch(reason);
        }
    }

    fn on_timer(&mut self) {
        self.notice_expiry();
        self.refresh_if_overdue();
        let now = Instant::now();
        if self.expiry_check.is_some_and(|at| at <= now) {
            self.expiry_check = None;
            self.notice_expiry();
            if !self.expired {
                // The monotonic timer ran ahead of the wall clock: check again when due.
                self.schedule_expiry_check();
            }
        }
        if self.in_flight.is_none() && self.next_fetch.is_some_and(|at| at <= now) {
            self.start_fetch();
        }
    }

    fn on_fetched(&mut self, fetched: Fetched) {
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        if let Some(error) = fetched.not_saved {
            warn!(%error, "could not save the new token; serving it anyway");
            self.emit(Event::PersistFailed { error });
        }
        #[cfg(feature = "metrics")]
        crate::integrations::metrics::fetched(
            &self.setup.name,
            flight.reason,
            &fetched.result,
            self.last_fetch_started
                .map_or(Duration::ZERO, |at| at.elapsed()),
        );
        match fetched.result {
            Ok(token) => self.on_success(token, flight.reason),
            Err(error) => self.on_failure(error, flight.reason),
        }
    }

    // ----- state changes -----

    /// Fetch as soon as the minimum interval since the last fetch allows. A fetch under way
    /// already serves whoever asked (callers are in `waiters`).
    fn request_fetch(&mut self, reason: FetchReason) {
        if self.in_flight.is_some() {
            return;
        }
        self.next_reason = Some(reason);
        let now = Instant::now();
        let earliest = self
            .last_fetch_started
            .map(|last| last + self.policy().min_interval)
            .into_iter()
            .chain(self.not_before)
            .fold(now, Instant::max);
        if earliest <= now {
            self.start_fetch();
        } else {
            self.set_next_fetch(self.next_fetch.map_or(earliest, |at| at.min(earliest)));
            self.publish();
        }
    }

    /// Schedules the next fetch, also on the wall clock for the published state.
    fn set_next_fetch(&mut self, at: Instant) {
        self.next_fetch = Some(at);
        self.next_attempt = Some(self.now() + at.saturating_duration_since(Instant::now()));
    }

    fn start_fetch(&mut self) {
        let reason = self.next_reason.take().unwrap_or(self.scheduled_reason());
        let attempt = self.failures + 1;
        debug!(%reason, attempt, "fetching a token");
        self.last_fetch_started = Some(Instant::now());
        self.next_fetch = None;
        self.next_attempt = None;
        self.retry = None;

        let previous = self.token.clone();
        // With a shared cap, the most urgent credential fetches first: the one whose token
        // expires soonest, and before all, one without a valid token.
        let urgency = self
            .valid_token()
            .and_then(Token::expiry)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let limit = self.setup.limit.clone();
        let (source, store) = (self.setup.source.clone(), self.setup.store.clone());
        let (clock, name) = (self.setup.clock.clone(), self.setup.name.clone());
        let policy = self.policy().clone();
        let future = async move {
            let _permit = match &limit {
                Some(limit) => Some(limit.acquire(urgency).await),
                None => None,
            };
            // Measured from here, once the fetch really starts.
            let context = FetchContext::for_attempt(reason, previous, attempt, clock.now());
            fetch_and_keep(source, store, context, policy, clock, name).await
        };
        self.in_flight = Some(InFlight {
            future: Box::pin(future),
            reason,
        });
        self.publish();
    }

    /// Makes `token` the current one and schedules its refresh and expiry check.
    fn adopt(&mut self, token: &Token) {
        self.adopt_scheduled_by(token, token);
    }

    /// Makes `token` the current one; its refresh is scheduled by `fetched`'s times (the two
    /// differ when a fetched token expiring sooner was not adopted). Returns the token as
    /// published (it carries its refresh time).
    fn adopt_scheduled_by(&mut self, token: &Token, fetched: &Token) -> Token {
        let now = self.now();
        // Scheduled against the end of serving, not the expiry: a refresh always comes before
        // readers are turned away.
        let offset = schedule::refresh_offset(
            self.policy(),
            fetched.issued_at(),
            fetched.usable_until(),
            fetched.refresh_in(),
            fastrand::f64() * 2.0 - 1.0,
        );
        let delay = schedule::delay_until(fetched.issued_at(), offset, now);
        // Also on the wall clock, for readers (never past the end of serving: see `read`).
        let due = now + delay;
        let due = token.usable_until().map_or(due, |until| due.min(until));
        let token = token.clone().with_refresh_due(due);
        self.token = Some(token.clone());
        self.expired = false;
        self.next_fetch = Some(deadline_in(delay));
        self.next_attempt = None;
        self.schedule_expiry_check();
        debug!(
            next_refresh_in = %Readable(delay),
            expires_in = %time_left(&token, now),
            "refresh scheduled"
        );
        token
    }

    fn schedule_expiry_check(&mut self) {
        let now = self.now();
        self.expiry_check = self
            .token
            .as_ref()
            .and_then(|token| usable_for(token, now))
            .map(deadline_in);
    }

    fn on_success(&mut self, fetched: Token, reason: FetchReason) {
        // A fetched token that stops being served sooner than the current one does not
        // replace it, unless someone asked for a new one (its rotated refresh token is kept).
        let explicit = matches!(reason, FetchReason::Rejected | FetchReason::Forced);
        let token = match self.valid_token() {
            Some(current)
                if !explicit
                    && schedule::serves_longer(current.usable_until(), fetched.usable_until()) =>
            {
                debug!(
                    fetched_expires_in = %time_left(&fetched, self.now()),
                    "the new token expires sooner than the current one; serving the current one"
                );
                match fetched.refresh_token() {
                    Some(rotated) => current.clone().with_refresh_token(rotated.clone()),
                    None => current.clone(),
                }
            }
            _ => fetched.clone(),
        };
        let failed_attempts = self.failures;
        let recovered = failed_attempts > 0 || (self.expired && !self.initial);
        self.failures = 0;
        self.streak = 0;
        self.last_error = None;
        self.retry = None;
        self.reader_waited_at = None;
        self.readers_keep_asking = false;
        self.next_reason = None;
        self.not_before = None;
        self.initial = false;
        let token = self.adopt_scheduled_by(&token, &fetched);
        self.publish();

        if recovered {
            info!(failed_attempts, "recovered");
            self.emit(Event::Recovered { failed_attempts });
        }
        let now = self.now();
        info!(
            %reason,
            expires_in = %time_left(&token, now),
            "token rotated"
        );
        self.emit(Event::Rotated {
            token: token.clone(),
            reason,
        });
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Ok(token.clone()));
        }
    }

    fn on_failure(&mut self, error: FetchError, reason: FetchReason) {
        // The streak of the backoff counts failures of one kind: a permanent failure after a
        // run of transient ones starts its slow schedule from the beginning.
        let same_kind = self
            .last_error
            .as_ref()
            .is_some_and(|last| last.kind() == error.kind());
        self.streak = if same_kind {
            self.streak.saturating_add(1)
        } else {
            1
        };
        let streak = self.streak;
        self.failures = self.failures.saturating_add(1);
        let attempt = self.failures;
        self.next_reason = Some(reason);
        let now = self.now();
        let failure = backoff::Failure {
            streak,
            permanent: error.is_permanent(),
            retry_after: error.retry_after(),
            time_left: self.valid_token().and_then(|token| usable_for(token, now)),
            readers_waiting: self.readers_keep_asking
                && self
                    .reader_waited_at
                    .is_some_and(|at| at.elapsed() <= self.policy().max_retry_while_waiting),
            fleet_probe: error.is_fleet_probe(),
        };
        let sample = fastrand::f64();
        let retry_in = backoff::retry_delay(self.policy(), &failure, sample);
        self.retry = Some(Box::new(Retry {
            failed_at: Instant::now(),
            failure,
            sample,
        }));
        match retry_in {
            Some(delay) => self.set_next_fetch(deadline_in(delay)),
            None => {
                self.next_fetch = None;
                self.next_attempt = None;
            }
        }
        self.not_before = error.retry_after().map(|after| {
            let honoured = backoff::honoured_retry_after(self.policy(), after);
            if honoured < after {
                warn!(
                    asked = %Readable(after),
                    waiting = %Readable(honoured),
                    "the server's Retry-After is longer than max_retry_after; waiting the maximum"
                );
            }
            deadline_in(honoured)
        });
        self.last_error = Some(error.clone());
        self.publish();

        match (retry_in, error.is_permanent()) {
            (Some(delay), false) => {
                warn!(%error, attempt, retry_in = %Readable(delay), "fetching a token failed")
            }
            (Some(delay), true) => {
                warn!(%error, attempt, retry_in = %Readable(delay), "fetching a token failed permanently; retrying slowly, or at once on refresh() or reject()")
            }
            (None, _) => {
                warn!(%error, attempt, "fetching a token failed permanently; not retrying until refresh() or reject()")
            }
        }
        self.emit(Event::RefreshFailed {
            error: error.clone(),
            attempt,
            retry_in,
        });
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Err(Error::Fetch(error.clone())));
        }
    }

    /// Announces the token's expiry if the wall clock says it has passed.
    fn notice_expiry(&mut self) {
        let now = self.now();
        if self.expired || self.token.as_ref().is_none_or(|t| usable_at(t, now)) {
            return;
        }
        self.expired = true;
        self.expiry_check = None;
        self.publish();
        match &self.last_error {
            Some(error) => {
                warn!(last_error = %error, "the token expired before a new one was obtained")
            }
            None => warn!("the token expired before a new one was obtained"),
        }
        self.emit(Event::Expired {
            last_error: self.last_error.clone(),
        });
        if self.failures == 0 && !self.failed_permanently() {
            // No failure explains it (the machine slept, or the token outlived its schedule
            // by less than the minimum interval): fetch now.
            let reason = self.scheduled_reason();
            self.request_fetch(reason);
        }
    }

    // ----- publishing -----

    /// The state, derived from the actor's fields so the two can never disagree.
    fn state(&self) -> TokenState {
        let next_attempt = self.next_attempt.filter(|_| self.in_flight.is_none());
        match (&self.token, self.expired) {
            (Some(token), false) => match &self.last_error {
                Some(error) => TokenState::Stale {
                    token: token.clone(),
                    last_error: error.clone(),
                    next_attempt,
                },
                None if self.in_flight.is_some() => TokenState::Refreshing(token.clone()),
                None => TokenState::Fresh(token.clone()),
            },
            (token, _) => match &self.last_error {
                Some(error) if error.is_permanent() => TokenState::Failed {
                    error: error.clone(),
                    next_attempt,
                },
                last_error if token.is_some() => TokenState::Expired {
                    last_error: last_error.clone(),
                    next_attempt,
                },
                last_error => TokenState::Pending {
                    last_error: last_error.clone(),
                    next_attempt,
                },
            },
        }
    }

    fn publish(&self) {
        let next = self.state();
        // Only this task writes, so the check cannot go stale before the swap. The write lock
        // covers the swap alone: readers on other threads never wait on a comparison or on
        // the old state's drop (which may free and zeroize a token).
        if self.setup.state.read().same_as(&next) {
            return;
        }
        #[cfg(feature = "metrics")]
        crate::integrations::metrics::state(
            &self.setup.name,
            Some(&self.setup.state.read()),
            &next,
            self.now(),
        );
        let previous = self.setup.state.publish(next);
        drop(previous);
    }

    fn emit(&self, event: Event) {
        if let Some(hook) = &self.setup.event_hook {
            hook(&event);
        }
        self.setup.state.events.send(event);
    }

    /// The next wake-up: the next deadline, or sooner, halfway there (but no more often than
    /// every [`WALL_CLOCK_RECHECK`]), so that a wall-clock jump that moved a deadline earlier is
    /// noticed within half the time that was left even without readers: a few wake-ups per
    /// token lifetime.
    fn next_timer(&self) -> Option<Instant> {
        let fetch = self.next_fetch.filter(|_| self.in_flight.is_none());
        let deadline = match (fetch, self.expiry_check) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let now = Instant::now();
        let wait = deadline.saturating_duration_since(now);
        Some(if wait > 2 * WALL_CLOCK_RECHECK {
            now + wait / 2
        } else {
            deadline
        })
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        self.setup.state.commands.stop();
        let _previous = self.setup.state.publish(TokenState::Stopped);
        #[cfg(feature = "metrics")]
        crate::integrations::metrics::state(
            &self.setup.name,
            Some(&_previous),
            &TokenState::Stopped,
            self.now(),
        );
        self.emit(Event::Stopped);
        info!("refresher stopped");
        // `waiters` drop next: their callers get `Error::Stopped`.
    }
}

/// One fetch, start to finish, as the in-flight future: the source's fetch within the policy's
/// bound (a hang or a panic becomes a transient error; the panic's message is not kept, as it
/// might hold a secret), the token checked and anchored at the fetch's start, then saved to
/// the store, so it is persisted before it is published.
async fn fetch_and_keep(
    source: Arc<dyn TokenSource>,
    store: Option<Arc<dyn TokenStore>>,
    context: FetchContext,
    policy: RefreshPolicy,
    clock: Clock,
    name: Arc<str>,
) -> Fetched {
    let started_at = context.started_at();
    // Named in the refresher's own messages about a token it refuses.
    let from = match source.origin() {
        Some(origin) => format!("the token source of `{name}` ({origin})"),
        None => format!("the token source of `{name}`"),
    };
    let timeout = policy.fetch_timeout;
    let fetch = AssertUnwindSafe(async { source.fetch(context).await }).catch_unwind();
    let result = match tokio::time::timeout(timeout, fetch).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err(FetchError::transient(format!("{from} panicked"))),
        Err(_elapsed) => Err(FetchError::transient(format!(
            "{from} did not answer within {} (the policy's fetch_timeout)",
            Readable(timeout)
        ))),
    };
    let result = result.and_then(|token| {
        if let Some(defect) = token.defect() {
            return Err(FetchError::transient(format!(
                "{from} returned an unusable token: {defect}"
            )));
        }
        let token = token
            .anchored_unless_already(started_at)
            .for_refresher(policy.default_lifetime, |lifetime| {
                schedule::serve_margin(&policy, lifetime)
            });
        if !usable_at(&token, clock.now()) {
            return Err(FetchError::transient(format!(
                "{from} returned a token that had already expired by {} \
                 (or expires within the serve margin)",
                token.expiry_statement()
            )));
        }
        Ok(token)
    });
    let not_saved = match (&result, store) {
        (Ok(token), Some(store)) => match tokio::time::timeout(
            timeout,
            AssertUnwindSafe(async { store.save(token).await }).catch_unwind(),
        )
        .await
        {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(error))) => Some(error),
            Ok(Err(_panic)) => Some(StoreError::new(format!(
                "the token store of `{name}` panicked while saving"
            ))),
            Err(_elapsed) => Some(StoreError::new(format!(
                "saving the token of `{name}` timed out after {}",
                Readable(timeout)
            ))),
        },
        _ => None,
    };
    Fetched { result, not_saved }
}

async fn fetch_result(in_flight: &mut Option<InFlight>) -> Fetched {
    match in_flight {
        Some(flight) => (&mut flight.future).await,
        None => pending().await,
    }
}

/// Resolves at `at` (never, without one), on the runtime's shared timer for that millisecond.
fn sleep_until(at: Option<Instant>) -> impl Future<Output = ()> {
    let timer = at.map(super::timer::shared_sleep_until);
    async move {
        match timer {
            Some(timer) => timer.await,
            None => pending().await,
        }
    }
}

/// Whether `token` may still be handed out at `now` (before its serve margin).
fn usable_at(token: &Token, now: SystemTime) -> bool {
    token.usable_until().is_none_or(|until| now < until)
}

/// How long `token` may still be handed out after `now`; `None` without an expiry.
fn usable_for(token: &Token, now: SystemTime) -> Option<Duration> {
    token
        .usable_until()
        .map(|until| until.duration_since(now).unwrap_or_default())
}

fn deadline_in(delay: Duration) -> Instant {
    Instant::now() + delay.min(LONGEST_TIMER)
}

/// Resolves when `cancel` or `also` is cancelled (never, without either).
async fn cancelled(cancel: Option<&CancellationToken>, also: Option<&CancellationToken>) {
    match (cancel, also) {
        (Some(cancel), Some(also)) => {
            // Rare (a registry's credential given a token of its own): boxed, so that the
            // waits for both are not part of every refresher's task.
            Box::pin(async {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = also.cancelled() => {}
                }
            })
            .await;
        }
        (Some(token), None) | (None, Some(token)) => token.cancelled().await,
        (None, None) => pending().await,
    }
}
