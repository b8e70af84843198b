//! [`TokenHandle`]: the cheap, cloneable way to read and steer one credential.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{broadcast, oneshot, watch};

use super::actor::Command;
use http::HeaderValue;

use crate::{Clock, Error, Event, Token, TokenState};

/// A handle to one credential's refresher. Cheap to clone; `Send + Sync`.
///
/// Reading ([`current`](TokenHandle::current)) never awaits and never touches the network:
/// the token is published by the refresher's task on a watch channel. The refresher runs as
/// long as a handle exists and it has not been shut down.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::{FetchError, Refresher, Token};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tokenwarden::Error> {
/// let handle = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
///     Ok::<_, FetchError>(Token::new("abc").expires_in(Duration::from_secs(300)))
/// }))
/// .name("example-api")
/// .spawn();
///
/// handle.ready().await?; // wait for the first token once, at startup
/// let token = handle.current()?; // then read it anywhere, even from sync code
/// assert_eq!(token.expose_secret(), "abc");
///
/// handle.shutdown();
/// handle.stopped().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenHandle {
    // One allocation, so a clone is one reference-count increment (cloning each channel end
    // would touch seven shared counters, two of them behind a mutex). When the last handle
    // drops, the channel ends drop with it and the actor sees its command channel close.
    ends: Arc<Ends>,
}

/// The handle's ends of the actor's channels.
pub(crate) struct Ends {
    pub(crate) name: Arc<str>,
    pub(crate) clock: Clock,
    /// Where the refresher publishes its state.
    pub(crate) board: Arc<super::board::Board>,
    /// Set while a shared refresher's fleet store is out of reach.
    pub(crate) fleet_unavailable: Option<Arc<AtomicBool>>,
}

impl Drop for Ends {
    fn drop(&mut self) {
        // The last handle is gone: the refresher stops once it has answered what is queued.
        self.board.commands.close();
    }
}

impl TokenHandle {
    pub(crate) fn new(ends: Ends) -> TokenHandle {
        TokenHandle {
            ends: Arc::new(ends),
        }
    }

    /// The credential's name, as given to the builder.
    pub fn name(&self) -> &str {
        &self.ends.name
    }

    /// The current token if it is valid now by the wall clock, else why there is none.
    ///
    /// Synchronous and cheap, so it can be called on every request and from sync code: each
    /// thread keeps its own copy of a token it reads often (refreshed at every rotation), so a
    /// read is a thread-local lookup, a version check and a clock read, and threads reading one
    /// credential do not slow each other down (about 5 ns, 1.0-1.2x an `arc_swap` load, on an AMD
    /// EPYC; BENCHMARKS.md). The copy is dropped (its secret wiped) when the thread evicts it
    /// (it keeps 16) or exits. It never returns a token within the
    /// [serve margin](crate::RefreshPolicy::serve_margin) of its expiry, or past it: a process
    /// that slept through expiry gets [`Error::Expired`], and the refresher is woken to fetch at
    /// once. While there is no token after failures, calls tell the refresher that readers are
    /// waiting, which caps its backoff at
    /// [`max_retry_while_waiting`](crate::RefreshPolicy::max_retry_while_waiting) (5 s); no
    /// number of calls makes it try sooner than that.
    ///
    /// # Errors
    ///
    /// [`Error::Pending`] before the first token, [`Error::Expired`] after expiry,
    /// [`Error::Failed`] after a permanent failure, [`Error::Stopped`] after shutdown.
    #[inline]
    pub fn current(&self) -> Result<Token, Error> {
        // SAFETY: the replica is only cloned from.
        if let Some(replica) = unsafe { self.peek() } {
            return Ok(replica.token.clone());
        }
        self.current_shared()
    }

    /// Calls `read` with the current token, borrowed: the cheapest read, for code that needs
    /// the token only for a moment (to copy its secret into a request, say). The same checks
    /// as [`current`](TokenHandle::current): never a token past its serve margin.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tokenwarden::{FetchError, Refresher, Token};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokenwarden::Error> {
    /// # let handle = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
    /// #     Ok::<_, FetchError>(Token::new("abc").expires_in(Duration::from_secs(300)))
    /// # })).spawn();
    /// # handle.ready().await?;
    /// let length = handle.with_current(|token| token.expose_secret().len())?;
    /// assert_eq!(length, 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`current`](TokenHandle::current).
    #[inline]
    pub fn with_current<R>(&self, read: impl FnOnce(&Token) -> R) -> Result<R, Error> {
        if let Some(replica) = self.replica() {
            return Ok(read(&replica.token));
        }
        let token = self.current_shared()?;
        Ok(read(&token))
    }

    /// The current token's `Authorization` value (`Bearer <token>`, marked sensitive), built
    /// once per token and thread rather than per call: what the integrations send.
    ///
    /// # Errors
    ///
    /// As [`current`](TokenHandle::current), and [`Error::InvalidHeader`] if the token cannot
    /// go in a header.
    #[inline]
    pub fn authorization_header(&self) -> Result<HeaderValue, Error> {
        // SAFETY: the replica is only cloned from.
        if let Some(replica) = unsafe { self.peek() }
            && let Some(header) = &replica.header
        {
            return Ok(header.clone());
        }
        Ok(self.current_shared()?.authorization_header()?)
    }

    /// In one read: the prebuilt `Authorization` value, or, for a DPoP-bound token (whose
    /// requests each need a proof of their own), the token.
    #[cfg(feature = "dpop")]
    pub(crate) fn authorization_or_bound(&self) -> Result<Result<HeaderValue, Token>, Error> {
        let bound = |token: &Token| token.dpop_key().is_some();
        // SAFETY: the replica is only read and cloned from.
        if let Some(replica) = unsafe { self.peek() } {
            if bound(&replica.token) {
                return Ok(Err(replica.token.clone()));
            }
            if let Some(header) = &replica.header {
                return Ok(Ok(header.clone()));
            }
        }
        let token = self.current_shared()?;
        if bound(&token) {
            return Ok(Err(token));
        }
        Ok(Ok(token.authorization_header()?))
    }

    /// This thread's replica of the token, when it has a servable one, lent for as long as the
    /// `Found` lives (the caller may run code that reads again).
    #[inline]
    fn replica(&self) -> Option<super::replica::Found<'_>> {
        super::replica::find(&self.ends.board, &self.ends.clock)
    }

    /// This thread's replica of the token, when it has a servable one, for a clone.
    ///
    /// # Safety
    ///
    /// As [`replica::peek`](super::replica::peek): only clone from it.
    #[inline]
    unsafe fn peek(&self) -> Option<&super::replica::Replica> {
        // SAFETY: passed on to the caller.
        unsafe { super::replica::peek(&self.ends.board, &self.ends.clock) }
    }

    /// The read through the shared state: every case the replicas leave to it. Out of line,
    /// so the inlined replica path stays small.
    #[inline(never)]
    fn current_shared(&self) -> Result<Token, Error> {
        let clock = &self.ends.clock;
        let (result, wake) = self.ends.board.read().read(|at| clock.has_passed(at));
        if wake {
            self.ends.board.commands.wake();
        }
        result
    }

    /// Waits until there is a valid token and returns it, or returns the error that ends the
    /// wait: [`Error::Failed`] (permanent failure) or [`Error::Stopped`].
    ///
    /// Transient failures do not end the wait; bound it with `tokio::time::timeout` if needed.
    pub async fn ready(&self) -> Result<Token, Error> {
        loop {
            let changed = self.ends.board.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.current() {
                Err(Error::Pending { .. } | Error::Expired { .. }) => {}
                result => return result,
            }
            changed.await;
        }
    }

    /// The current token, or if there is none yet (still starting, or an outage outlived the
    /// last one), the first valid one within `wait`; then the handle's error.
    ///
    /// With `wait` zero this is [`current`](TokenHandle::current). Permanent failures and
    /// shutdown end the wait at once. Dropping the future stops waiting, nothing else.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenwarden::{FetchError, Refresher, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokenwarden::Error> {
    /// let handle = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
    ///     Ok::<_, FetchError>(Token::new("abc").expires_in(Duration::from_secs(300)))
    /// }))
    /// .spawn();
    /// // A request arriving while the service starts waits up to 2 s for the first token.
    /// let token = handle.ready_within(Duration::from_secs(2)).await?;
    /// # assert_eq!(token.expose_secret(), "abc");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`current`](TokenHandle::current), at the end of the wait.
    pub async fn ready_within(&self, wait: std::time::Duration) -> Result<Token, Error> {
        match self.current() {
            Err(Error::Pending { .. } | Error::Expired { .. }) if !wait.is_zero() => {
                match tokio::time::timeout(wait, self.ready()).await {
                    Ok(result) => result,
                    Err(_elapsed) => self.current(),
                }
            }
            result => result,
        }
    }

    /// [`ready_within`](TokenHandle::ready_within), with the token's prebuilt `Authorization`
    /// value: what the integrations send, without formatting a header per request.
    #[cfg_attr(
        not(any(feature = "http-sources", feature = "tower")),
        allow(dead_code)
    )]
    pub(crate) async fn authorized_within(
        &self,
        wait: std::time::Duration,
    ) -> Result<(Token, HeaderValue), Error> {
        // SAFETY: the replica is only cloned from.
        if let Some(replica) = unsafe { self.peek() }
            && let Some(header) = &replica.header
        {
            return Ok((replica.token.clone(), header.clone()));
        }
        let token = self.ready_within(wait).await?;
        let header = token.authorization_header()?;
        Ok((token, header))
    }

    /// For a refresher [`shared`](crate::RefresherBuilder::shared) with a fleet: whether the
    /// fleet store answered its last call (`false`: until it does, this replica fetches on its
    /// own if its source spends nothing single-use, else serves its token and waits; the
    /// state's last error says which). `None` for a refresher without a fleet. The `FleetUnavailable` and
    /// `FleetAvailable` events tell the same changes as they happen.
    pub fn fleet_available(&self) -> Option<bool> {
        self.ends
            .fleet_unavailable
            .as_ref()
            .map(|unavailable| !unavailable.load(Ordering::Relaxed))
    }

    /// A snapshot of the credential's state.
    pub fn state(&self) -> TokenState {
        self.ends.board.read().clone()
    }

    /// A receiver of every state change, for code that reacts to changes rather than polling.
    /// The credential's watch channel is made on the first call (most are never watched).
    pub fn watch(&self) -> watch::Receiver<TokenState> {
        self.ends.board.watch()
    }

    /// A receiver of [`Event`]s from now on. A subscriber that falls more than the builder's
    /// [`event_capacity`](crate::RefresherBuilder::event_capacity) behind is told how many it
    /// missed (`RecvError::Lagged`); it never slows the refresher.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.ends.board.events.subscribe()
    }

    /// Fetches a new token now and returns it.
    ///
    /// Concurrent calls, and calls made while a scheduled refresh is under way, share one fetch.
    /// Fetches are still at least [`min_interval`](crate::RefreshPolicy::min_interval) apart.
    /// Re-arms a refresher that failed permanently.
    ///
    /// # Errors
    ///
    /// [`Error::Fetch`] if that fetch failed (a still-valid token keeps being served by
    /// [`current`](TokenHandle::current)), [`Error::Stopped`] if the refresher stopped.
    pub async fn refresh(&self) -> Result<Token, Error> {
        self.ask(|reply| Command::Refresh { reply }).await
    }

    /// Tells the refresher that a server rejected `token` (e.g. answered 401) and returns a
    /// token to retry with.
    ///
    /// If `token` is still the current one, a new one is fetched (concurrent rejects of the
    /// same token share one fetch). If the token has rotated since, the newer one is returned
    /// without a fetch.
    ///
    /// # Errors
    ///
    /// As for [`refresh`](TokenHandle::refresh).
    pub async fn reject(&self, token: &Token) -> Result<Token, Error> {
        let token = token.clone();
        self.ask(|reply| Command::Reject { token, reply }).await
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<Token, Error>>) -> Command,
    ) -> Result<Token, Error> {
        let (reply, answer) = oneshot::channel();
        self.ends
            .board
            .commands
            .send(command(reply))
            .map_err(|_| Error::Stopped)?;
        answer.await.unwrap_or(Err(Error::Stopped))
    }

    /// Stops the refresher, also in the middle of a fetch. Other handles see
    /// [`TokenState::Stopped`] and [`Error::Stopped`]. Returns at once; see
    /// [`stopped`](TokenHandle::stopped).
    pub fn shutdown(&self) {
        self.ends.board.commands.shutdown();
    }

    /// Waits until the refresher has stopped (after [`shutdown`](TokenHandle::shutdown), the
    /// builder's cancellation token, or runtime shutdown).
    pub async fn stopped(&self) {
        loop {
            let changed = self.ends.board.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if matches!(*self.ends.board.read(), TokenState::Stopped) {
                return;
            }
            changed.await;
        }
    }
}

impl fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenHandle")
            .field("name", &self.ends.name)
            .field("state", &*self.ends.board.read())
            .finish()
    }
}
