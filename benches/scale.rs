//! 100,000 credentials in one process: memory per idle credential, how late refreshes fire,
//! CPU per refresh, and spawn time.
//!
//! ```text
//! cargo bench --bench scale
//! ```
//!
//! Each credential has a no-network source issuing tokens that live 20 to 22 s (spread by key,
//! jitter off), so each refresh is due at exactly half its token's lifetime after issue and
//! lateness can be measured against that: `started_at` of the fetch minus the due time. The run
//! covers three refresh cycles on a 2-worker runtime. Linux only (reads `/proc/self/statm` and
//! `getrusage`).

#[path = "support/rss.rs"]
mod rss;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokenwarden::{FetchError, FetchReason, RefreshPolicy, Refresher, Token, TokenHandle};

fn main() {
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let (count, cycles) = if quick { (1_000, 0) } else { (100_000, 3) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(count, cycles));
}

#[derive(Default)]
struct Record {
    issued: AtomicU64,
    refreshes: AtomicU64,
    expired_before_refresh: AtomicU64,
    /// Lateness of each scheduled refresh, in microseconds.
    lateness_us: Mutex<Vec<u64>>,
}

fn lifetime(key: usize) -> Duration {
    Duration::from_secs(20) + Duration::from_millis((key % 2000) as u64)
}

fn policy() -> RefreshPolicy {
    let mut policy = RefreshPolicy::default();
    // So each refresh's due time is known: issue + lifetime / 2.
    policy.jitter = 0.0;
    policy.serve_margin = Duration::ZERO;
    policy
}

fn spawn(key: usize, record: &Arc<Record>) -> TokenHandle {
    let record = record.clone();
    let lifetime = lifetime(key);
    Refresher::builder(tokenwarden::from_fn(move |ctx| {
        let record = record.clone();
        async move {
            if let (FetchReason::Scheduled, Some(previous)) = (ctx.reason(), ctx.previous()) {
                record.refreshes.fetch_add(1, Ordering::Relaxed);
                if previous.is_expired_at(ctx.started_at()) {
                    record
                        .expired_before_refresh
                        .fetch_add(1, Ordering::Relaxed);
                }
                // Refresh is due at half the lifetime (the 30 s margin is capped at half).
                let due = previous.issued_at() + lifetime / 2;
                let late = ctx.started_at().duration_since(due).unwrap_or_default();
                record
                    .lateness_us
                    .lock()
                    .unwrap()
                    .push(late.as_micros() as u64);
            }
            // A new secret each time, as a token endpoint issues (the same one fetched
            // again would keep its first expiry).
            let n = record.issued.fetch_add(1, Ordering::Relaxed);
            Ok::<_, FetchError>(Token::new(format!("token-{n}")).expires_in(lifetime))
        }
    }))
    .policy(policy())
    .spawn()
}

fn cpu_time() -> Duration {
    // SAFETY: `usage` is a valid, writable rusage that outlives the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

async fn run(count: usize, cycles: u32) {
    let record = Arc::new(Record::default());
    // Warm the allocator and runtime with a few credentials first.
    let warm: Vec<_> = (0..100).map(|key| spawn(key, &record)).collect();
    for handle in &warm {
        handle.ready().await.unwrap();
    }

    let rss_before = rss::rss_bytes();
    let started = Instant::now();
    let handles: Vec<TokenHandle> = (0..count).map(|key| spawn(key, &record)).collect();
    let spawn_time = started.elapsed();
    for handle in &handles {
        handle.ready().await.unwrap();
    }
    let all_ready = started.elapsed();
    // Let every first fetch's garbage be freed, then measure the idle footprint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss::rss_bytes();
    let per_credential = (rss_idle.saturating_sub(rss_before)) as f64 / count as f64;

    let cpu_before = cpu_time();
    let refreshes_before = record.refreshes.load(Ordering::Relaxed);
    // Each cycle is half the longest lifetime; run a bit past the last one.
    tokio::time::sleep(Duration::from_secs(11) * cycles + Duration::from_secs(2)).await;
    let refreshes = record.refreshes.load(Ordering::Relaxed) - refreshes_before;
    let cpu = cpu_time() - cpu_before;

    let mut lateness = record.lateness_us.lock().unwrap().clone();
    lateness.sort_unstable();
    let at = |q: f64| {
        lateness
            .get(((lateness.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    let valid_now = handles.iter().filter(|h| h.current().is_ok()).count();

    println!("\n## {count} credentials, {cycles} refresh cycles, 2 worker threads\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| spawn all | {:.0} ms ({:.2} us each) |",
        spawn_time.as_secs_f64() * 1e3,
        spawn_time.as_secs_f64() * 1e6 / count as f64
    );
    println!(
        "| spawn until every first token | {:.0} ms |",
        all_ready.as_secs_f64() * 1e3
    );
    println!(
        "| RSS per idle credential | {:.0} bytes ({:.2} KiB) |",
        per_credential,
        per_credential / 1024.0
    );
    println!("| refreshes measured | {refreshes} |");
    println!(
        "| refresh lateness p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
        at(0.5) as f64 / 1e3,
        at(0.99) as f64 / 1e3,
        at(1.0) as f64 / 1e3
    );
    println!(
        "| CPU per refresh (user + sys) | {:.1} us |",
        cpu.as_secs_f64() * 1e6 / refreshes.max(1) as f64
    );
    println!(
        "| refreshes that found their token expired | {} |",
        record.expired_before_refresh.load(Ordering::Relaxed)
    );
    println!("| valid tokens at the end | {valid_now} / {count} |");
    black_box((&handles, &warm));
}
