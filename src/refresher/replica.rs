//! Per-thread replicas of published tokens: the read path that scales with cores.
//!
//! An owned read of one shared token writes two shared cache lines (the watch channel's lock
//! word and the token's reference count), so threads reading the same credential slow each
//! other down. Each thread instead keeps its own deep copy of a credential it reads often
//! (its own allocation, its own reference count, its own prebuilt `Authorization` value),
//! tagged with the version of the state it was copied from. A read then costs a thread-local
//! lookup, one load of the credential's version (a cache line that is only read between
//! rotations, so every core keeps a copy of it) and the expiry check; nothing shared is written.
//!
//! A replica is refreshed when the version moves (every publication bumps it) and dropped,
//! zeroizing its secret, when it is evicted or its thread exits. A thread keeps at most
//! [`CAPACITY`] replicas; a credential gets one on its second read within the last
//! [`CAPACITY`] misses, so a thread that cycles through thousands of credentials keeps using
//! the shared path instead of copying tokens it will not read again.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use http::HeaderValue;

use super::board::Board;
use crate::clock::Deadline;
use crate::{Clock, Token, TokenState};

/// Replicas kept per thread: a service's hot credentials, few enough to scan linearly.
pub(crate) const CAPACITY: usize = 16;

/// One thread's copy of one credential's servable token.
pub(crate) struct Replica {
    /// Served until this instant by the wall clock (then the shared path decides: it may wake
    /// the refresher or report expiry); `None` for a token without an expiry.
    until: Option<Deadline>,
    pub(crate) token: Token,
    /// `None` if the token cannot go in a header (the shared path then reports it).
    pub(crate) header: Option<HeaderValue>,
}

/// Until when a state's token may be served from a replica without consulting the state, or
/// `None` if the state serves no token (errors always take the shared path).
pub(crate) fn servable(state: &TokenState) -> Option<(&Token, Option<SystemTime>)> {
    match state {
        // The refresher never schedules a refresh later than the end of serving, so until the
        // refresh is due the token is valid; from then on, reads wake the refresher.
        TokenState::Fresh(token) => Some((token, token.refresh_due().or(token.usable_until()))),
        TokenState::Refreshing(token) | TokenState::Stale { token, .. } => {
            Some((token, token.usable_until()))
        }
        _ => None,
    }
}

/// A slot's key: which credential, copied at which version.
#[derive(Clone, Copy)]
struct Key {
    id: u64,
    version: u64,
}

struct Replicas {
    /// One per entry, scanned on every read: kept apart from the replicas (about 90 bytes
    /// each) so that the scan of a full thread reads four cache lines, not twenty-four.
    keys: [Key; CAPACITY],
    entries: Vec<Replica>,
    next_evicted: usize,
    /// Credentials that missed recently: a second miss earns a replica. Ids start at 1.
    missed: [u64; CAPACITY],
    next_missed: usize,
}

impl Replicas {
    const fn new() -> Replicas {
        Replicas {
            keys: [Key { id: 0, version: 0 }; CAPACITY],
            entries: Vec::new(),
            next_evicted: 0,
            missed: [0; CAPACITY],
            next_missed: 0,
        }
    }

    #[inline]
    fn find(&self, id: u64) -> Option<usize> {
        self.keys[..self.entries.len()]
            .iter()
            .position(|key| key.id == id)
    }

    /// Where a new replica of `id` goes, if it has earned one.
    fn slot_for(&mut self, id: u64) -> Option<usize> {
        if let Some(at) = self.find(id) {
            return Some(at);
        }
        if !self.missed.contains(&id) {
            self.missed[self.next_missed] = id;
            self.next_missed = (self.next_missed + 1) % CAPACITY;
            return None;
        }
        if self.entries.len() < CAPACITY {
            return Some(self.entries.len());
        }
        let at = self.next_evicted;
        self.next_evicted = (self.next_evicted + 1) % CAPACITY;
        Some(at)
    }

    /// Puts `replica` of credential `key.id` in slot `at` (from `slot_for`).
    fn put(&mut self, at: usize, key: Key, replica: Replica) {
        self.keys[at] = key;
        if at == self.entries.len() {
            self.entries.push(replica);
        } else {
            self.entries[at] = replica;
        }
    }

    /// Copies what `board` publishes now into this thread, if it is servable and the
    /// credential has earned a slot. Out of line: it runs once per rotation per thread.
    #[cold]
    #[inline(never)]
    fn copy(&mut self, board: &Board, clock: &Clock, version: u64) -> Option<usize> {
        // What is published now has a version of at least `version`, so a publication in
        // between only makes the next read copy again.
        let state = board.read();
        let (token, until) = servable(&state)?;
        let at = self.slot_for(board.id)?;
        let replica = Replica {
            until: until.map(|until| clock.deadline(until)),
            token: token.replica(),
            header: token.authorization_header().ok(),
        };
        drop(state);
        let key = Key {
            id: board.id,
            version,
        };
        self.put(at, key, replica);
        Some(at)
    }
}

// Const-initialised: no lazy-initialisation check on each read.
thread_local! {
    static REPLICAS: RefCell<Replicas> = const { RefCell::new(Replicas::new()) };
}

/// `read` applied to this thread's replica of the credential, if it has an up-to-date one (or
/// earns one now) and its token is servable by `clock`; `None` sends the caller to the shared
/// path, which handles every other case (errors, waking the refresher, a nested read from
/// inside `read`, a thread being torn down).
///
/// Inlined into the handle's reads (and through them into the caller), so that the value
/// read is built where the caller wants it rather than copied out through nested `Option`s.
#[inline]
pub(crate) fn read<R>(board: &Board, clock: &Clock, read: impl FnOnce(&Replica) -> R) -> Option<R> {
    REPLICAS
        .try_with(|replicas| {
            let mut replicas = replicas.try_borrow_mut().ok()?;
            let version = board.version.load(Ordering::Acquire);
            let at = match replicas.find(board.id) {
                Some(at) if replicas.keys[at].version == version => at,
                _ => replicas.copy(board, clock, version)?,
            };
            let replica = &replicas.entries[at];
            if let Some(until) = &replica.until
                && clock.is_past(until)
            {
                return None;
            }
            Some(read(replica))
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_credential_earns_a_replica_on_its_second_miss_and_eviction_is_round_robin() {
        let mut replicas = Replicas::new();
        let token = Token::new("t");
        let add = |replicas: &mut Replicas, id: u64| -> Option<usize> {
            let at = replicas.slot_for(id)?;
            let replica = Replica {
                until: None,
                token: token.clone(),
                header: None,
            };
            replicas.put(at, Key { id, version: 0 }, replica);
            Some(at)
        };
        assert_eq!(add(&mut replicas, 7), None, "first miss: remembered only");
        assert_eq!(add(&mut replicas, 7), Some(0), "second miss: a replica");
        assert_eq!(add(&mut replicas, 7), Some(0), "then found");
        for id in 100..100 + CAPACITY as u64 - 1 {
            assert_eq!(add(&mut replicas, id), None);
            assert!(add(&mut replicas, id).is_some());
        }
        assert_eq!(replicas.entries.len(), CAPACITY);
        // Full: the oldest slot goes first.
        add(&mut replicas, 500);
        assert_eq!(add(&mut replicas, 500), Some(0));
        assert_eq!(replicas.keys[0].id, 500);
        assert_eq!(replicas.find(7), None, "evicted");
    }

    #[test]
    fn only_states_with_a_valid_token_are_servable_and_fresh_ones_until_the_refresh() {
        let now = SystemTime::now();
        let token = Token::new("t")
            .expires_in(Duration::from_secs(100))
            .with_refresh_due(now + Duration::from_secs(80));
        let (_, until) = servable(&TokenState::Fresh(token.clone())).unwrap();
        assert_eq!(until, token.refresh_due());
        let (_, until) = servable(&TokenState::Refreshing(token.clone())).unwrap();
        assert_eq!(until, token.usable_until());
        assert!(
            servable(&TokenState::Pending {
                last_error: None,
                next_attempt: None
            })
            .is_none()
        );
        assert!(servable(&TokenState::Stopped).is_none());
    }
}
