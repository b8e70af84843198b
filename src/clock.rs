//! [`Clock`]: where the refresher and its readers get the wall-clock time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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

    /// A reading that is never earlier than the true current time, and cheap: for deciding
    /// expiry on the read path, where `SystemTime::now` alone would cost twice as much as the
    /// rest of a read. At most one clock tick (1 to 10 ms) later than the true time, so a
    /// token is treated as expired at most that much early, and never handed out late.
    pub(crate) fn upper_bound_now(&self) -> SystemTime {
        match &self.kind {
            Kind::System => coarse::upper_bound_now(),
            Kind::Tokio(_) => self.now(),
        }
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

#[cfg(any(target_os = "linux", target_os = "android"))]
mod coarse {
    use std::sync::OnceLock;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn read(
        clock: libc::clockid_t,
        read: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
    ) -> Option<Duration> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec that outlives the call.
        let rc = unsafe { read(clock, &mut ts) };
        let secs = u64::try_from(ts.tv_sec).ok()?;
        let nanos = u32::try_from(ts.tv_nsec).ok()?;
        (rc == 0).then(|| Duration::new(secs, nanos))
    }

    /// The coarse clock's time of the last tick (a vDSO read, a few ns) plus one tick.
    pub(super) fn upper_bound_now() -> SystemTime {
        static TICK: OnceLock<Option<Duration>> = OnceLock::new();
        let tick = *TICK.get_or_init(|| read(libc::CLOCK_REALTIME_COARSE, libc::clock_getres));
        match (read(libc::CLOCK_REALTIME_COARSE, libc::clock_gettime), tick) {
            (Some(last_tick), Some(tick)) => UNIX_EPOCH + last_tick + tick,
            _ => SystemTime::now(),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod coarse {
    use std::time::SystemTime;

    pub(super) fn upper_bound_now() -> SystemTime {
        SystemTime::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_path_reading_is_never_earlier_than_the_true_time() {
        let clock = Clock::system();
        for _ in 0..10_000 {
            let before = SystemTime::now();
            let bound = clock.upper_bound_now();
            assert!(bound >= before, "{bound:?} < {before:?}");
            let late = bound.duration_since(before).unwrap();
            assert!(late <= Duration::from_millis(20), "{late:?} late");
        }
    }
}
