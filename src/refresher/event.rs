//! [`Event`]: what subscribers of a credential are told.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::duration_format::Readable;
use crate::fleet::FleetError;
use crate::store::StoreError;
use crate::{FetchError, FetchReason, Token};

/// Something that happened to a credential, sent to every
/// [`subscribe`](crate::TokenHandle::subscribe)r.
///
/// After a run of failures, a successful fetch sends [`Recovered`](Event::Recovered) and then
/// [`Rotated`](Event::Rotated).
///
/// ```
/// use tokenwarden::{Event, TokenHandle};
/// use tokio::sync::broadcast::error::RecvError;
///
/// async fn alert_on_failures(handle: TokenHandle) {
///     let mut events = handle.subscribe();
///     loop {
///         match events.recv().await {
///             Ok(Event::RefreshFailed { error, attempt, .. }) if attempt >= 3 => {
///                 eprintln!("{}: {attempt} failed refreshes: {error}", handle.name());
///             }
///             Ok(Event::Stopped) | Err(RecvError::Closed) => break,
///             Ok(_) => {}
///             Err(RecvError::Lagged(missed)) => eprintln!("missed {missed} events"),
///         }
///     }
/// }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new token was obtained and published.
    Rotated {
        /// The new token.
        token: Token,
        /// Why it was fetched.
        reason: FetchReason,
    },
    /// A fetch failed.
    RefreshFailed {
        /// Why.
        error: FetchError,
        /// How many fetches in a row have failed, this one included.
        attempt: u32,
        /// When the next try is due: the wait the refresher scheduled, which is the one it keeps
        /// unless readers who arrive later bring it forward (as far as
        /// [`max_retry_while_waiting`](crate::RefreshPolicy::max_retry_while_waiting) allows),
        /// and then [`RetryRescheduled`](Event::RetryRescheduled) says the new time. `None`
        /// only after a permanent failure with
        /// [`permanent_backoff`](crate::RefreshPolicy::permanent_backoff) turned off.
        retry_in: Option<Duration>,
    },
    /// Readers found no token, so the retry announced by the last
    /// [`RefreshFailed`](Event::RefreshFailed) was brought forward.
    RetryRescheduled {
        /// The new wait, from now.
        retry_in: Duration,
    },
    /// The token expired before a new one could be obtained.
    Expired {
        /// Why the last try failed, if one has.
        last_error: Option<FetchError>,
    },
    /// A fetch succeeded after failures (or after the token had expired).
    Recovered {
        /// How many fetches in a row had failed.
        failed_attempts: u32,
    },
    /// A new token could not be saved to the refresher's [store](crate::store); it is served
    /// anyway (dropping it would lose it too). Sent before that token's `Rotated`.
    PersistFailed {
        /// Why.
        error: StoreError,
    },
    /// The fleet's token was adopted instead of fetching one (see
    /// [`shared`](crate::RefresherBuilder::shared)). Sent before that token's `Rotated`.
    AdoptedFromFleet,
    /// This replica held the fleet's lease, fetched a token and shared it. Sent before that
    /// token's `Rotated`.
    MintedForFleet,
    /// This replica fetched a token under the fleet's lease, but the lease ran out before the
    /// token was shared (the store did not answer its renewals in time); the token is served
    /// here, and this replica's next mint continues from it.
    FleetLeaseLost,
    /// The fleet store could not be used: out of reach, a wrong password, a key that cannot
    /// open the fleet's record ([`FleetError::kind`](crate::fleet::FleetError::kind) says which). A replica whose source spends
    /// nothing single-use fetches on its own meanwhile; one whose source does serves its valid
    /// token and waits for the store (see [`fleet`](crate::fleet)).
    FleetUnavailable {
        /// Why.
        error: FleetError,
    },
    /// The fleet store answers again after [`FleetUnavailable`](Event::FleetUnavailable).
    FleetAvailable,
    /// The refresher stopped; no further events follow.
    Stopped,
}

/// One line for logs: what happened, with the error or wait where there is one (never a
/// secret: a token is shown by its expiry).
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::{Event, FetchError};
///
/// let event = Event::RetryRescheduled { retry_in: Duration::from_secs(5) };
/// assert_eq!(event.to_string(), "readers are waiting: retrying in 5s");
/// ```
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Rotated { token, reason } => match token.expiry() {
                Some(_) => write!(
                    f,
                    "token rotated ({reason}), expires in {}",
                    crate::duration_format::time_left(token, std::time::SystemTime::now())
                ),
                None => write!(f, "token rotated ({reason}), states no expiry"),
            },
            Event::RefreshFailed {
                error,
                attempt,
                retry_in,
            } => {
                write!(f, "refresh attempt {attempt} failed: {error}; ")?;
                match retry_in {
                    Some(wait) => write!(f, "retrying in {}", Readable(*wait)),
                    None => f.write_str("not retrying until refresh() or reject()"),
                }
            }
            Event::RetryRescheduled { retry_in } => {
                write!(
                    f,
                    "readers are waiting: retrying in {}",
                    Readable(*retry_in)
                )
            }
            Event::Expired {
                last_error: Some(error),
            } => write!(
                f,
                "the token expired before a new one was obtained: {error}"
            ),
            Event::Expired { last_error: None } => {
                f.write_str("the token expired before a new one was obtained")
            }
            Event::Recovered { failed_attempts } => {
                write!(f, "recovered after {failed_attempts} failed attempts")
            }
            Event::PersistFailed { error } => {
                write!(
                    f,
                    "the new token could not be saved (served anyway): {error}"
                )
            }
            Event::AdoptedFromFleet => f.write_str("adopted the fleet's token"),
            Event::MintedForFleet => f.write_str("minted a token for the fleet"),
            Event::FleetLeaseLost => {
                f.write_str("the fleet's lease ran out before the new token was shared")
            }
            Event::FleetUnavailable { error } => {
                write!(
                    f,
                    "the fleet store is unavailable ({}): {error}",
                    error.kind()
                )
            }
            Event::FleetAvailable => f.write_str("the fleet store answers again"),
            Event::Stopped => f.write_str("the refresher stopped"),
        }
    }
}

/// A credential's broadcast channel of events, created on the first `subscribe()`: most
/// credentials in a large process are never subscribed to individually, and a channel
/// preallocates every slot (64 by default, about 5 KiB).
#[derive(Debug)]
pub(crate) struct EventChannel {
    capacity: usize,
    sender: OnceLock<broadcast::Sender<Event>>,
}

impl EventChannel {
    pub(crate) fn new(capacity: usize) -> EventChannel {
        EventChannel {
            capacity: capacity.max(1),
            sender: OnceLock::new(),
        }
    }

    /// Sends to current subscribers, if any; never waits.
    pub(crate) fn send(&self, event: Event) {
        if let Some(sender) = self.sender.get() {
            // No receivers left is fine; a lagging one loses old events, never slows us.
            let _ = sender.send(event);
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }
}
