//! [`Board`]: where a refresher publishes its state, and where handles read it.
//!
//! A `tokio::sync::watch` channel per credential would cost about 430 bytes (it keeps eight
//! notifiers for its receivers), which a million credentials would pay although few are ever
//! watched. The board is a read-write lock over the state, a version readers' replicas check,
//! and one `Notify` for the handles that wait (`ready`, `stopped`); a watch channel is created
//! only when someone calls [`TokenHandle::watch`](crate::TokenHandle::watch).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard};

use tokio::sync::{Notify, watch};

use super::commands::Commands;
use super::event::EventChannel;
use crate::TokenState;

pub(crate) struct Board {
    /// Unique for the life of the process (not an address, which a new credential may reuse):
    /// what a thread's replica is keyed by.
    pub(crate) id: u64,
    /// Bumped after every publication, so replicas know they are out of date.
    pub(crate) version: AtomicU64,
    state: RwLock<TokenState>,
    /// Wakes the handles waiting for a change.
    changed: Notify,
    /// Created on the first `watch()`, then sent every publication.
    watch: OnceLock<watch::Sender<TokenState>>,
    /// The credential's events (a channel made on the first `subscribe()`).
    pub(crate) events: EventChannel,
    /// From the handles to the refresher.
    pub(crate) commands: Commands,
}

impl Board {
    /// One allocation for everything a refresher and its handles share.
    pub(crate) fn new(state: TokenState, event_capacity: usize) -> Board {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Board {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            version: AtomicU64::new(0),
            state: RwLock::new(state),
            changed: Notify::new(),
            watch: OnceLock::new(),
            events: EventChannel::new(event_capacity),
            commands: Commands::default(),
        }
    }

    /// The published state, read-locked; keep the guard short.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, TokenState> {
        // Only the refresher writes, a whole value at a time: a poisoned lock still holds a
        // consistent state.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes `next` and returns the state it replaces (for the caller to drop outside the
    /// lock: dropping a token wipes its secret).
    pub(crate) fn publish(&self, next: TokenState) -> TokenState {
        let previous = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *state, next)
        };
        self.version.fetch_add(1, Ordering::Release);
        if let Some(watch) = self.watch.get() {
            watch.send_replace(self.read().clone());
        }
        self.changed.notify_waiters();
        previous
    }

    /// A receiver of every state change from now on, starting with the current state.
    pub(crate) fn watch(&self) -> watch::Receiver<TokenState> {
        // Created under the read lock: a publication either happened before (and is the
        // initial value) or checks for the channel after releasing its write lock (and sends).
        let state = self.read();
        self.watch
            .get_or_init(|| watch::channel(state.clone()).0)
            .subscribe()
    }

    /// Resolves at the next publication; `enable()` it before checking the state, so a
    /// publication in between is not missed.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_made_late_starts_at_the_current_state_and_sees_the_next() {
        let board = Board::new(TokenState::Stopped, 1);
        assert!(board.watch.get().is_none(), "no channel until asked");
        board.publish(TokenState::Pending {
            last_error: None,
            next_attempt: None,
        });
        let mut watch = board.watch();
        assert!(matches!(*watch.borrow(), TokenState::Pending { .. }));
        board.publish(TokenState::Stopped);
        watch.changed().await.unwrap();
        assert!(matches!(*watch.borrow(), TokenState::Stopped));
        assert_eq!(board.version.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn waiters_are_woken_by_a_publication() {
        let board = std::sync::Arc::new(Board::new(TokenState::Stopped, 1));
        let waiting = board.clone();
        let waiter = tokio::spawn(async move {
            let changed = waiting.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            changed.await;
        });
        tokio::task::yield_now().await;
        board.publish(TokenState::Stopped);
        waiter.await.unwrap();
    }
}
