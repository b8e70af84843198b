//! Per-thread replicas of published tokens: the read path that scales with cores.
//!
//! An owned read of one shared token writes two shared cache lines (the watch channel's lock
//! word and the token's reference count), so threads reading the same credential slow each
//! other down. Each thread instead keeps its own deep copy of a credential it reads often
//! (its own allocation, its own reference count, its own prebuilt `Authorization` value),
//! tagged with the version of the state it was copied from. A read then costs a thread-local
//! lookup, one load of the credential's version (a cache line that is only read between
//! rotations, so every core keeps a copy of it) and the expiry check; nothing shared is written.
//! The read hands its caller a reference into the thread's table rather than a value, so the
//! token or header is cloned straight into the caller's return value; the one rule that keeps
//! those references sound is in [`Table`].
//!
//! A replica is refreshed when the version moves (every publication bumps it) and dropped,
//! zeroizing its secret, when it is evicted or its thread exits. A thread keeps at most
//! [`CAPACITY`] replicas; a credential gets one on its second read within the last
//! [`CAPACITY`] misses, so a thread that cycles through thousands of credentials keeps using
//! the shared path instead of copying tokens it will not read again.

use std::cell::{Cell, UnsafeCell};
use std::ops::Deref;
use std::ptr::NonNull;
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
    /// Which credential each slot holds (id 0: none), checked on every read: kept apart from
    /// the replicas (about 90 bytes each) so that a full scan reads four cache lines, not
    /// twenty-four.
    keys: [Key; CAPACITY],
    /// One per slot once the thread holds any (allocated on its first replica).
    entries: Vec<Option<Replica>>,
    next_evicted: usize,
    /// Credentials that missed recently: a second miss earns a replica. Ids start at 1.
    missed: [u64; CAPACITY],
    next_missed: usize,
}

/// The slot a credential is looked for first and put in when it is free: ids are handed out
/// in sequence, so a service's credentials mostly get slots of their own, and a read checks one
/// key instead of scanning (a scan cost 0.4 ns a slot: 9.4 ns for a credential in the 15th).
#[inline]
fn home(id: u64) -> usize {
    (id % CAPACITY as u64) as usize
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
        let home = home(id);
        if self.keys[home].id == id {
            return Some(home);
        }
        self.scan(id)
    }

    /// A credential away from its home slot (another took it first), or none.
    #[inline(never)]
    fn scan(&self, id: u64) -> Option<usize> {
        self.keys.iter().position(|key| key.id == id)
    }

    /// Where a new replica of `id` goes, if it has earned one: its slot if it has one, else
    /// its home if free, else any free slot, else the oldest filled.
    fn slot_for(&mut self, id: u64) -> Option<usize> {
        if let Some(at) = self.find(id) {
            return Some(at);
        }
        if !self.missed.contains(&id) {
            self.missed[self.next_missed] = id;
            self.next_missed = (self.next_missed + 1) % CAPACITY;
            return None;
        }
        let home = home(id);
        if self.keys[home].id == 0 {
            return Some(home);
        }
        if let Some(free) = self.keys.iter().position(|key| key.id == 0) {
            return Some(free);
        }
        let at = self.next_evicted;
        self.next_evicted = (self.next_evicted + 1) % CAPACITY;
        Some(at)
    }

    /// Puts `replica` of credential `key.id` in slot `at` (from `slot_for`).
    fn put(&mut self, at: usize, key: Key, replica: Replica) {
        if self.entries.is_empty() {
            self.entries.resize_with(CAPACITY, || None);
        }
        self.keys[at] = key;
        self.entries[at] = Some(replica);
    }

    /// The replica in slot `at` (one `find` returned).
    #[inline]
    fn get(&self, at: usize) -> Option<&Replica> {
        self.entries.get(at)?.as_ref()
    }

    /// Copies what `board` publishes now into this thread, if it is servable and the
    /// credential has earned a slot (called out of line, by [`Table::copy`]: it runs once per
    /// rotation per thread).
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

/// A thread's replicas, lent out to its reads.
///
/// Not a `RefCell`: a read hands its caller a reference to the replica itself, so that the
/// caller clones the token or header straight into its own return value, and a `with_current`
/// closure may read again while it holds one. What keeps that sound is one rule: the table
/// changes only in [`Table::copy`], and only while nothing is lent ([`Found`]) and no reference
/// from [`peek`] is alive.
struct Table {
    replicas: UnsafeCell<Replicas>,
    /// How many [`Found`]s of this thread are alive.
    lent: Cell<usize>,
}

impl Table {
    /// Where this thread's servable replica of the credential is, if it has one (copying it
    /// first when it is missing or out of date and the table may change).
    #[inline(always)]
    fn servable(&self, board: &Board, clock: &Clock) -> Option<NonNull<Replica>> {
        let version = board.version.load(Ordering::Acquire);
        // SAFETY: a shared reference, dead before the table can change (in `copy`).
        let replicas = unsafe { &*self.replicas.get() };
        let at = match replicas.find(board.id) {
            Some(at) if replicas.keys[at].version == version => at,
            _ => self.copy(board, clock, version)?,
        };
        // SAFETY: as above; `copy` has returned.
        let replica = unsafe { &*self.replicas.get() }.get(at)?;
        if let Some(until) = &replica.until
            && clock.is_past(until)
        {
            return None;
        }
        Some(NonNull::from(replica))
    }

    /// [`Replicas::copy`], unless a replica is lent out (it may point into the table: a nested
    /// read takes the shared path instead).
    #[cold]
    #[inline(never)]
    fn copy(&self, board: &Board, clock: &Clock, version: u64) -> Option<usize> {
        if self.lent.get() > 0 {
            return None;
        }
        // SAFETY: nothing is lent, `peek`'s callers hold no reference across a read, and the
        // caller's shared reference is dead: this one is unique. `Replicas::copy` reads no
        // replicas of this thread (it clones a published token and builds a header).
        unsafe { &mut *self.replicas.get() }.copy(board, clock, version)
    }
}

// Const-initialised: no lazy-initialisation check on each read.
thread_local! {
    static TABLE: Table = const {
        Table {
            replicas: UnsafeCell::new(Replicas::new()),
            lent: Cell::new(0),
        }
    };
}

/// A replica lent to one read: dereferences to it until dropped. Not `Send` (it borrows this
/// thread's table), and while one is alive this thread's table does not change.
pub(crate) struct Found<'a> {
    replica: &'a Replica,
    lent: &'a Cell<usize>,
}

impl Deref for Found<'_> {
    type Target = Replica;

    #[inline]
    fn deref(&self) -> &Replica {
        self.replica
    }
}

impl Drop for Found<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lent.set(self.lent.get() - 1);
    }
}

/// This thread's replica of the credential, lent until the `Found` drops, if it has an
/// up-to-date one (or earns one now) and its token is servable by `clock`; `None` sends the
/// caller to the shared path, which handles every other case (errors, waking the refresher, a
/// thread being torn down, a miss while a replica is lent out). For reads that run code of
/// their users' while they hold the replica.
#[inline]
pub(crate) fn find<'a>(board: &'a Board, clock: &Clock) -> Option<Found<'a>> {
    let (replica, lent) = TABLE
        .try_with(|table| {
            let replica = table.servable(board, clock)?;
            table.lent.set(table.lent.get() + 1);
            Some((replica, NonNull::from(&table.lent)))
        })
        .ok()
        .flatten()?;
    // SAFETY: both point into this thread's table, which lives until the thread exits, and
    // which does not change while the `Found` lends them.
    let (replica, lent) = unsafe { (replica.as_ref(), lent.as_ref()) };
    Some(Found { replica, lent })
}

/// [`find`] for a read that only clones from the replica: nothing is lent, so nothing is paid
/// back afterwards, and the clone is built where the caller wants it (a guard dropped after the
/// clone made the compiler build a 40-byte header in a temporary and copy it out: 10-15 ns of
/// store-forwarding stalls).
///
/// # Safety
///
/// The reference must be dead before this thread next reads a credential: use it only to clone
/// the token or the header, which runs no code of this crate's.
#[inline]
pub(crate) unsafe fn peek<'a>(board: &'a Board, clock: &Clock) -> Option<&'a Replica> {
    let replica = TABLE
        .try_with(|table| table.servable(board, clock))
        .ok()
        .flatten()?;
    // SAFETY: it points into this thread's table, which lives until the thread exits and does
    // not change before the caller's next read (the caller's promise).
    Some(unsafe { replica.as_ref() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_credential_earns_a_replica_on_its_second_miss_at_home_if_free_and_eviction_is_round_robin()
    {
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
        assert_eq!(
            add(&mut replicas, 7),
            Some(7),
            "second miss: a replica, at home"
        );
        assert_eq!(add(&mut replicas, 7), Some(7), "then found");
        // 23's home is 7's: it takes the first free slot, and is found there.
        assert_eq!(add(&mut replicas, 23), None);
        assert_eq!(add(&mut replicas, 23), Some(0));
        assert_eq!(replicas.find(23), Some(0));
        assert_eq!(replicas.get(0).map(|r| r.token.expose_secret()), Some("t"));
        // 32's home (0) is taken too; the other homes are free for their own.
        for id in (33..33 + CAPACITY as u64).filter(|id| home(*id) != 0 && home(*id) != 7) {
            assert_eq!(add(&mut replicas, id), None);
            assert_eq!(add(&mut replicas, id), Some(home(id)));
        }
        assert!(replicas.keys.iter().all(|key| key.id != 0), "full");
        assert_eq!(add(&mut replicas, 32), None);
        assert_eq!(
            add(&mut replicas, 32),
            Some(0),
            "full: the oldest slot goes first"
        );
        assert_eq!(replicas.keys[0].id, 32);
        assert_eq!(replicas.find(23), None, "evicted");
        assert_eq!(replicas.find(7), Some(7), "kept");
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
