//! [`Event`]: what subscribers of a credential are told.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::broadcast;

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
        /// When the next try is due, as scheduled now (waiting readers may later bring it
        /// forward, as far as [`max_retry_while_waiting`](crate::RefreshPolicy::max_retry_while_waiting)
        /// allows; the state's `next_attempt` then says so). `None` only after a permanent
        /// failure with [`permanent_backoff`](crate::RefreshPolicy::permanent_backoff) turned off.
        retry_in: Option<Duration>,
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
    /// token was shared (the fetch took longer than `fetch_timeout`); the token is served here.
    FleetLeaseLost,
    /// The fleet store could not be reached; this replica fetches on its own until it can.
    FleetUnavailable {
        /// Why.
        error: FleetError,
    },
    /// The fleet store answers again after [`FleetUnavailable`](Event::FleetUnavailable).
    FleetAvailable,
    /// The refresher stopped; no further events follow.
    Stopped,
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
