//! [`Clock`]: where the refresher and its readers get the wall-clock time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How close to a deadline the read path stops trusting the coarse clock: over a thousand times
/// the lag seen in practice, and far inside the refresh margin of a healthy token.
const PRECISE_WITHIN: Duration = Duration::from_secs(5);

/// The wall clock a refresher and its handles read to decide whether a token has expired.
///
/// Expiry is a wall-clock fact (servers state it in wall-clock time, and a laptop that slept
/// through it must not hand out a dead token), while timers run on tokio's monotonic clock.
/// [`Clock::system`] is the default and the one to use in production. [`Clock::tokio`] follows
/// tokio's clock instead, so that tests on paused time (`#[tokio::test(start_paused = true)]`,
/// `tokio::time::advance`) move the wall clock too.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::Clock;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let clock = Clock::tokio();
/// let before = clock.now();
/// tokio::time::advance(Duration::from_secs(60)).await;
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(60));
/// // Simulate a machine that was suspended: wall time jumps, tokio's timers do not.
/// clock.skip(Duration::from_secs(3600));
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(3660));
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Clock {
    kind: Kind,
}

#[derive(Clone, Debug, Default)]
enum Kind {
    #[default]
    System,
    Tokio(Arc<TokioClock>),
}

#[derive(Debug)]
struct TokioClock {
    wall_origin: SystemTime,
    origin: tokio::time::Instant,
    skipped_nanos: AtomicU64,
}

impl Clock {
    /// The operating system's wall clock (`SystemTime::now`). The default.
    pub fn system() -> Clock {
        Clock { kind: Kind::System }
    }

    /// A wall clock that starts at the current system time and then advances with tokio's clock,
    /// including paused and advanced test time. For tests.
    pub fn tokio() -> Clock {
        Clock {
            kind: Kind::Tokio(Arc::new(TokioClock {
                wall_origin: SystemTime::now(),
                origin: tokio::time::Instant::now(),
                skipped_nanos: AtomicU64::new(0),
            })),
        }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> SystemTime {
        match &self.kind {
            Kind::System => SystemTime::now(),
            Kind::Tokio(clock) => {
                let skipped = Duration::from_nanos(clock.skipped_nanos.load(Ordering::Relaxed));
                clock.wall_origin + clock.origin.elapsed() + skipped
            }
        }
    }

    /// Whether `at` has passed, decided cheaply for the read path.
    ///
    /// `SystemTime::now` alone costs twice an `arc_swap` load, so the system clock first reads
    /// the coarse wall clock's seconds (2 ns; it trails the true time by a tick, up to 10 ms,
    /// plus scheduling delay: 4.5 ms seen on a busy VM). Only when that leaves `at` within
    /// [`PRECISE_WITHIN`] (and a second) does it read the precise clock. Healthy tokens are
    /// refreshed at least seconds before expiry, so reads of them stay on the cheap path.
    pub(crate) fn has_passed(&self, at: SystemTime) -> bool {
        self.is_past(&self.deadline(at))
    }

    /// `at` prepared for [`Clock::is_past`]: the coarse-clock threshold is computed once, when
    /// a thread copies a token, rather than on every read.
    pub(crate) fn deadline(&self, at: SystemTime) -> Deadline {
        // Whole seconds, rounded down: a coarse reading below it is at least a second before
        // `at - PRECISE_WITHIN`, so the true time (less than a second plus the coarse clock's lag
        // past the reading) is still before `at`.
        let coarse_safe_before = at
            .checked_sub(PRECISE_WITHIN)
            .and_then(|safe| safe.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |safe| safe.as_secs());
        Deadline {
            at,
            coarse_safe_before,
        }
    }

    /// Whether `deadline` has passed: [`has_passed`](Clock::has_passed) without its
    /// arithmetic, for the per-thread replicas (one read of the coarse clock's seconds and one
    /// integer compare).
    #[inline]
    pub(crate) fn is_past(&self, deadline: &Deadline) -> bool {
        if let Kind::System = self.kind
            && let Some(now) = coarse::seconds()
            && now < deadline.coarse_safe_before
        {
            return false;
        }
        self.is_past_precisely(deadline)
    }

    /// The rest of [`is_past`](Clock::is_past), out of line: rare for healthy tokens.
    #[cold]
    #[inline(never)]
    fn is_past_precisely(&self, deadline: &Deadline) -> bool {
        self.now() >= deadline.at
    }

    /// Moves a [`Clock::tokio`] clock ahead by `by` without moving tokio's timers, as happens
    /// when a machine is suspended. Has no effect on [`Clock::system`].
    pub fn skip(&self, by: Duration) {
        if let Kind::Tokio(clock) = &self.kind {
            let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            clock.skipped_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }
}

/// A wall-clock instant prepared for the read path by [`Clock::deadline`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    at: SystemTime,
    /// Whole seconds since the epoch before which the coarse clock alone decides (`at` less
    /// [`PRECISE_WITHIN`], rounded down); 0 when `at` is that close to the epoch, so the precise
    /// clock decides.
    coarse_safe_before: u64,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod coarse {
    /// The coarse clock's whole seconds since the epoch: what the read path compares.
    ///
    /// glibc's `time` is the vDSO's, one load of the seconds the kernel stored at its last tick:
    /// 2.2 ns on an AMD EPYC where `clock_gettime(CLOCK_REALTIME_COARSE)` takes 4.4-6.9 ns (it
    /// loops on a sequence count and goes through a wrapper; `benches/read_path.rs` times both).
    #[cfg(target_env = "gnu")]
    #[inline]
    pub(super) fn seconds() -> Option<u64> {
        // SAFETY: a null pointer asks `time` only to return the value.
        let secs = unsafe { libc::time(std::ptr::null_mut()) };
        // -1 (a failed call) or a clock before 1970: `None`, and the precise clock decides.
        u64::try_from(secs).ok()
    }

    /// The same where `time` may not be the vDSO's (musl reads the precise clock for it): the
    /// coarse clock's seconds, a vDSO read.
    #[cfg(not(target_env = "gnu"))]
    #[inline]
    pub(super) fn seconds() -> Option<u64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec that outlives the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
        u64::try_from(ts.tv_sec).ok().filter(|_| rc == 0)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod coarse {
    pub(super) fn seconds() -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_path_never_calls_a_passed_deadline_pending() {
        let clock = Clock::system();
        for step in 0..20_000u64 {
            // Deadlines around now, and around the switch to the precise clock.
            let offset = Duration::from_micros(step * 37 % 20_000);
            let now = SystemTime::now();
            for at in [now - offset, now, now + PRECISE_WITHIN - offset] {
                let passed = clock.has_passed(at);
                let past = clock.is_past(&clock.deadline(at));
                if SystemTime::now() < at {
                    continue; // not passed yet; either answer is about a future instant
                }
                assert!(passed, "{at:?} has passed but was reported pending");
                assert!(
                    past,
                    "{at:?} has passed but its deadline was reported pending"
                );
            }
            let later = now + Duration::from_secs(3600);
            assert!(!clock.has_passed(later));
            assert!(!clock.is_past(&clock.deadline(later)));
        }
    }

    #[test]
    fn deadlines_near_the_epoch_are_decided_by_the_precise_clock() {
        let clock = Clock::system();
        let early = clock.deadline(UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(early.coarse_safe_before, 0);
        assert!(clock.is_past(&early));
    }

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_decides_deadlines_by_its_own_time() {
        let clock = Clock::tokio();
        let deadline = clock.deadline(clock.now() + Duration::from_secs(60));
        assert!(!clock.is_past(&deadline));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!clock.is_past(&deadline));
        clock.skip(Duration::from_secs(1));
        assert!(clock.is_past(&deadline), "a skipped second reaches it");
    }

    #[test]
    fn the_coarse_clock_trails_the_true_time_by_its_second_at_most() {
        let Some(coarse) = coarse::seconds() else {
            return; // no coarse clock on this platform: the precise path is always taken
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(coarse <= now, "coarse clock {coarse} ahead of {now}");
        assert!(now - coarse <= 1, "coarse clock {coarse} behind {now}");
    }
}
