//! A seeded soak on paused tokio time: 1,000 credentials (200 of them in a `Registry` with a
//! fetch cap) for four simulated hours, with outages, slow answers, permanent errors that
//! heal, and wall-clock jumps drawn at random, while readers check the invariants.
//!
//! `cargo test --test soak -- --nocapture` prints the report; `TW_SOAK_SEED=n` picks the seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenwarden::{
    Clock, Error, FetchError, Refresher, RefresherBuilder, Registry, Token, TokenHandle,
};

const CREDENTIALS: usize = 1_000;
const IN_REGISTRY: usize = 200;
const HOURS: u64 = 4;

/// What one credential's token endpoint does now.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Up,
    /// 503s until the outage ends.
    Down,
    /// `invalid_client` until an operator fixes it.
    Rejecting,
}

struct Endpoint {
    mode: Mutex<Mode>,
    latency: Mutex<Duration>,
    lifetime: Duration,
    fetches: AtomicU64,
}

fn credential(endpoint: Arc<Endpoint>, clock: &Clock, index: usize) -> RefresherBuilder {
    let source = tokenwarden::from_fn(move |_ctx| {
        let endpoint = endpoint.clone();
        async move {
            let n = endpoint.fetches.fetch_add(1, Ordering::Relaxed);
            let latency = *endpoint.latency.lock().unwrap();
            tokio::time::sleep(latency).await;
            match *endpoint.mode.lock().unwrap() {
                Mode::Up => Ok(Token::new(format!("c{index}-t{n}")).expires_in(endpoint.lifetime)),
                Mode::Down => Err(FetchError::transient("https://idp.test/token answered 503")),
                Mode::Rejecting => Err(FetchError::permanent(
                    "https://idp.test/token answered 401: invalid_client",
                )),
            }
        }
    });
    Refresher::builder(source).clock(clock.clone())
}

#[derive(Default, Debug)]
struct Report {
    reads: u64,
    served: u64,
    /// Reads that found no token although the endpoint had been up for over an hour (the
    /// longest wait of the slow schedule after permanent errors).
    unserved_while_healthy: u64,
    /// The same, at a credential's first read after a wall-clock jump, or within two minutes
    /// of one.
    unserved_after_jump: u64,
    violations: u64,
}

#[tokio::test(start_paused = true)]
async fn a_thousand_credentials_survive_four_hours_of_random_faults() {
    let seed = std::env::var("TW_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_122);
    let mut rng = fastrand::Rng::with_seed(seed);
    let clock = Clock::tokio();
    let registry: Registry<usize> = Registry::builder().max_concurrent_fetches(16).build();

    let mut endpoints = Vec::new();
    let mut handles: Vec<TokenHandle> = Vec::new();
    for index in 0..CREDENTIALS {
        let endpoint = Arc::new(Endpoint {
            mode: Mutex::new(Mode::Up),
            latency: Mutex::new(Duration::from_millis(rng.u64(5..200))),
            lifetime: Duration::from_secs(rng.u64(300..=3600)),
            fetches: AtomicU64::new(0),
        });
        let builder = credential(endpoint.clone(), &clock, index);
        let handle = if index < IN_REGISTRY {
            registry.insert(index, builder)
        } else {
            builder.spawn()
        };
        endpoints.push(endpoint);
        handles.push(handle);
    }
    // When each credential's endpoint last came back up (seconds of the run).
    let mut healthy_since = vec![0u64; CREDENTIALS];
    let mut report = Report::default();
    let mut faults = [0u32; 4];
    let mut last_jump = u64::MAX / 2;
    let mut unread_since_jump = vec![false; CREDENTIALS];

    for second in 0..HOURS * 3600 {
        // Faults: each minute, a few credentials' endpoints change.
        if second % 60 == 0 {
            for _ in 0..rng.usize(0..8) {
                let i = rng.usize(0..CREDENTIALS);
                let endpoint = &endpoints[i];
                let mut mode = endpoint.mode.lock().unwrap();
                *mode = match (*mode, rng.u8(0..10)) {
                    (Mode::Up, 0..=5) => {
                        faults[0] += 1;
                        Mode::Down
                    }
                    (Mode::Up, 6..=7) => {
                        faults[1] += 1;
                        // Slow, but within the 30 s fetch timeout.
                        *endpoint.latency.lock().unwrap() = Duration::from_secs(rng.u64(1..25));
                        Mode::Up
                    }
                    (Mode::Up, _) => {
                        faults[2] += 1;
                        Mode::Rejecting
                    }
                    (_, _) => {
                        healthy_since[i] = second;
                        *endpoint.latency.lock().unwrap() = Duration::from_millis(50);
                        Mode::Up
                    }
                };
            }
        }
        // Now and then the machine is suspended: the wall clock jumps, timers do not.
        if rng.u32(0..3600) == 0 {
            faults[3] += 1;
            last_jump = second;
            unread_since_jump.fill(true);
            clock.skip(Duration::from_secs(rng.u64(1..600)));
        }
        // Readers at random moments.
        for _ in 0..rng.usize(0..20) {
            let i = rng.usize(0..CREDENTIALS);
            report.reads += 1;
            match handles[i].current() {
                Ok(token) => {
                    report.served += 1;
                    let now = clock.now();
                    let alive = token.usable_until().is_none_or(|until| now < until)
                        && token.expiry().is_some_and(|at| now < at);
                    if !alive {
                        report.violations += 1;
                    }
                }
                Err(Error::Stopped) => report.violations += 1,
                Err(_) => {
                    let healthy = *endpoints[i].mode.lock().unwrap() == Mode::Up;
                    let settled = second.saturating_sub(healthy_since[i]) > 3600;
                    // After a jump, a token that expired "while suspended" is fetched anew
                    // when first read: that read, and those while the fetch runs, find none.
                    let after_jump = std::mem::take(&mut unread_since_jump[i])
                        || second.saturating_sub(last_jump) < 120;
                    if healthy && settled && second > 3600 && after_jump {
                        report.unserved_after_jump += 1;
                    } else if healthy && settled && second > 3600 {
                        report.unserved_while_healthy += 1;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let fetches: u64 = endpoints
        .iter()
        .map(|e| e.fetches.load(Ordering::Relaxed))
        .sum();
    let per_hour = fetches as f64 / CREDENTIALS as f64 / HOURS as f64;
    println!(
        "seed {seed}: {CREDENTIALS} credentials ({IN_REGISTRY} in a registry capped at 16), {HOURS} h"
    );
    println!(
        "faults: {} outages, {} slow endpoints, {} permanent rejections, {} wall-clock jumps",
        faults[0], faults[1], faults[2], faults[3]
    );
    println!("fetches per credential per hour: {per_hour:.2}");
    println!(
        "reads: {}, served: {} ({:.2} %; the rest during outages and rejections), \
         unserved after an hour of a healthy endpoint: {} (and {} at the first read after a wall-clock jump)",
        report.reads,
        report.served,
        100.0 * report.served as f64 / report.reads as f64,
        report.unserved_while_healthy,
        report.unserved_after_jump
    );
    println!("invariant violations: {}", report.violations);
    assert_eq!(
        report.violations, 0,
        "no expired token served, no refresher stopped"
    );
    assert!(
        per_hour < 10.0,
        "{per_hour} fetches per credential per hour"
    );
    // Every credential heals. At most one read in 136,000 (seen: a registry credential whose
    // 22 s fetch queued behind the 16-fetch cap right after a wall-clock jump made many
    // tokens due at once) finds no token after an hour of a healthy endpoint: bounded here,
    // explained in RELIABILITY.md.
    assert!(
        report.unserved_while_healthy * 10_000 <= report.reads,
        "credentials do not heal: {report:?}"
    );
    for handle in &handles {
        handle.shutdown();
    }
    registry.shutdown();
}
