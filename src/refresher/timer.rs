//! The refreshers' timers: refreshers of one runtime that wake in the same millisecond share
//! one tokio timer.
//!
//! With a timer each, a million refreshers put a million entries in tokio's timer wheel. The
//! wheel files far deadlines in coarse slots and, as a slot's time nears, moves every entry in
//! it down a level at once: at 100,000 refreshes a second a 4 s slot holds 400,000 entries,
//! scattered over gigabytes of task memory, and moving them took tens of milliseconds in which
//! no timer fired (refresh lateness p99 16-24 ms at a million credentials). Shared, the wheel
//! holds at most one entry per millisecond, so a slot holds at most 4,096 however many
//! credentials there are (p99 3 ms in the same benchmark, `benches/scale.rs`).
//!
//! The price: a deadline is rounded up to our millisecond and then to tokio's (their phases
//! differ), about 1 ms later at the median than a timer of its own. Deadlines far away are
//! rounded more coarsely (to a power of two milliseconds, at most 1/32,768 of the wait: 64 ms
//! an hour out), so that sparse far deadlines still share. A timer is never early.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use futures_util::future::{FutureExt, Shared, WeakShared};
use tokio::runtime::{self, Handle};
use tokio::time::{Instant, Sleep};

/// A wait at most this many times its rounding.
const ROUNDING_DIVISOR: u128 = 32_768;

/// One tokio timer, awaited by every refresher due at its millisecond.
pub(crate) type Group = Shared<Sleep>;

struct Groups {
    /// By runtime (each has its own clock, paused ones included) and deadline in
    /// milliseconds from `origin`.
    live: HashMap<(runtime::Id, i64), WeakShared<Sleep>>,
    /// `live.len()` after the last sweep of expired groups.
    swept_at: usize,
}

/// Any fixed instant: deadlines are counted from it, in either direction (a paused runtime's
/// clock can be behind it).
static ORIGIN: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);

static GROUPS: LazyLock<Mutex<Groups>> = LazyLock::new(|| {
    Mutex::new(Groups {
        live: HashMap::new(),
        swept_at: 0,
    })
});

/// A future that resolves at `deadline` (or a little later: see the module docs), on the
/// current runtime's shared timer for that millisecond. Panics outside a tokio runtime, like
/// `tokio::time::sleep_until`.
pub(crate) fn shared_sleep_until(deadline: Instant) -> Group {
    let rounded = rounded_up(deadline.into_std(), Instant::now().into_std(), *ORIGIN);
    group(Handle::current().id(), rounded)
}

/// `deadline` as milliseconds from `origin`, rounded up to a power of two milliseconds no
/// more than 1/32,768 of the wait from `now`. Never earlier than `deadline`.
fn rounded_up(
    deadline: std::time::Instant,
    now: std::time::Instant,
    origin: std::time::Instant,
) -> i64 {
    let wait_ms = deadline.saturating_duration_since(now).as_millis();
    let step_ms = match wait_ms / ROUNDING_DIVISOR {
        0 => 1,
        ratio => 1u128 << ratio.ilog2(),
    };
    let step_ns = step_ms * 1_000_000;
    let steps = if deadline >= origin {
        let after = deadline.duration_since(origin).as_nanos();
        after.div_ceil(step_ns) as i128
    } else {
        // Towards the origin, that is up: drop the partial step.
        let before = origin.duration_since(deadline).as_nanos();
        -((before / step_ns) as i128)
    };
    (steps * step_ms as i128) as i64
}

/// The instant `ms` milliseconds from `origin` (either side).
fn instant_at(ms: i64, origin: std::time::Instant) -> std::time::Instant {
    let offset = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        origin + offset
    } else {
        // A rounded deadline is never before the instant it was rounded from, which exists:
        // no underflow.
        origin - offset
    }
}

/// The shared timer for `ms` on runtime `id`, made if nobody waits for it yet.
fn group(id: runtime::Id, ms: i64) -> Group {
    // The map holds only plain data and weak references: a panic elsewhere cannot leave it
    // inconsistent.
    let mut groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(group) = groups.live.get(&(id, ms)).and_then(WeakShared::upgrade) {
        return group;
    }
    // Forget groups nobody waits for any more, each time the map has doubled since the last
    // sweep: amortised constant time per group.
    if groups.live.len() >= 1024 && groups.live.len() >= 2 * groups.swept_at {
        groups.live.retain(|_, group| group.upgrade().is_some());
        groups.swept_at = groups.live.len();
    }
    let group = tokio::time::sleep_until(Instant::from_std(instant_at(ms, *ORIGIN))).shared();
    if let Some(weak) = group.downgrade() {
        groups.live.insert((id, ms), weak);
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn near_deadlines_round_up_to_the_millisecond_and_never_earlier() {
        let origin = StdInstant::now();
        let now = origin + ms(5);
        for nanos in [0, 1, 999_999, 1_000_000, 1_000_001, 7_250_000] {
            let deadline = now + Duration::from_nanos(nanos);
            let rounded = rounded_up(deadline, now, origin);
            let at = instant_at(rounded, origin);
            assert!(at >= deadline, "{nanos} ns: early");
            assert!(
                at - deadline < ms(1),
                "{nanos} ns: {:?} late",
                at - deadline
            );
        }
        assert_eq!(
            rounded_up(now + ms(2), now, origin),
            7,
            "on the millisecond: kept"
        );
    }

    #[test]
    fn far_deadlines_round_to_a_power_of_two_under_a_32768th_of_the_wait() {
        let origin = StdInstant::now();
        let now = origin;
        let hour = now + Duration::from_secs(3600) + Duration::from_nanos(1);
        let rounded = rounded_up(hour, now, origin);
        assert_eq!(rounded % 64, 0, "3,600,000 / 32,768 = 109: steps of 64 ms");
        let late = instant_at(rounded, origin) - hour;
        assert!(late < ms(64));
        assert_eq!(
            rounded_up(now + Duration::from_secs(32), now, origin),
            32_000
        );
        assert_eq!(
            rounded_up(now + Duration::from_millis(65_537), now, origin),
            65_538,
            "two-millisecond steps from 65.5 s"
        );
    }

    #[test]
    fn deadlines_before_the_origin_round_up_too() {
        let origin = StdInstant::now() + Duration::from_secs(10);
        let deadline = origin - Duration::from_micros(2_500);
        let rounded = rounded_up(deadline, deadline, origin);
        assert_eq!(rounded, -2);
        assert!(instant_at(rounded, origin) >= deadline);
        assert_eq!(rounded_up(origin - ms(3), origin - ms(4), origin), -3);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_in_the_same_millisecond_share_one_timer() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let id = Handle::current().id();
        let ms = rounded_up(deadline.into_std(), Instant::now().into_std(), *ORIGIN);
        let first = group(id, ms);
        let second = group(id, ms);
        assert!(first.ptr_eq(&second), "one timer for the millisecond");
        let other = group(id, ms + 1);
        assert!(!first.ptr_eq(&other));
        drop((first, second, other));
        let fresh = group(id, ms);
        assert_eq!(fresh.strong_count(), Some(1), "a new one once nobody waits");
    }

    #[tokio::test(start_paused = true)]
    async fn sleepers_wake_at_their_deadline_not_before() {
        let start = Instant::now();
        let waits = [
            ms(1500),
            ms(1500),
            Duration::from_micros(1_500_300),
            ms(40_000),
        ];
        let sleepers: Vec<_> = waits
            .iter()
            .map(|wait| {
                let deadline = start + *wait;
                tokio::spawn(async move {
                    shared_sleep_until(deadline).await;
                    Instant::now()
                })
            })
            .collect();
        for (sleeper, wait) in sleepers.into_iter().zip(waits) {
            let woke = sleeper.await.unwrap() - start;
            assert!(woke >= wait, "{wait:?}: woke early at {woke:?}");
            assert!(woke <= wait + ms(2), "{wait:?}: woke late at {woke:?}");
        }
    }

    #[test]
    fn runtimes_do_not_share_timers() {
        let paused = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap()
        };
        let (a, b) = (paused(), paused());
        // Made inside each runtime (a timer belongs to the runtime it is made in).
        let in_a = a.enter();
        let first = group(Handle::current().id(), 5_000);
        drop(in_a);
        let in_b = b.enter();
        let second = group(Handle::current().id(), 5_000);
        drop(in_b);
        assert!(!first.ptr_eq(&second), "each runtime has its own clock");
        // Each fires on its own runtime's (auto-advancing) clock.
        a.block_on(first);
        b.block_on(second);
    }
}
