//! A million credentials in one process: memory per idle credential, how late refreshes fire,
//! CPU per refresh, and spawn rate; plain, with 1,000 of them subscribed to events, and all of
//! them in a `Registry`.
//!
//! ```text
//! cargo bench --bench scale                   # all three, each in a process of its own
//! cargo bench --bench scale -- registry       # one: plain, subscribed or registry
//! COUNT=100000 cargo bench --bench scale      # fewer credentials
//! LIFETIME_SECS=600 CYCLES=1 cargo bench --bench scale -- plain   # a gentler refresh rate
//! RUNS=5 cargo bench --bench scale            # five runs of each, then medians and min-max
//! ```
//!
//! Each credential has a no-network source issuing tokens that live 60 to 80 s (spread by key,
//! jitter off; `LIFETIME_SECS` changes the 60), so each refresh is due at exactly half its
//! token's lifetime after issue (a million refreshes spread over 10 s: 100,000 a second) and lateness can be measured against
//! that: `started_at` of the fetch minus the due time. The run covers two refresh cycles on a
//! 2-worker runtime. Linux only (reads `/proc/self/statm` and `getrusage`).

#[path = "support/rss.rs"]
mod rss;
#[path = "support/runs.rs"]
mod runs;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokenwarden::{FetchError, FetchReason, RefreshPolicy, Refresher, Token, TokenHandle};

/// The figures each run reports, in the order of its `figures:` line.
const FIGURES: [&str; 6] = [
    "RSS per idle credential (bytes)",
    "lateness p50 (ms)",
    "p99 (ms)",
    "CPU per refresh (us)",
    "tokens found expired",
    "spawn (credentials per second)",
];

/// What else holds the credentials.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    Plain,
    /// 1,000 of them have an event subscriber, which drains its events.
    Subscribed,
    /// All of them are in one `Registry`.
    Registry,
}

const SETUPS: [(&str, Setup); 3] = [
    ("plain", Setup::Plain),
    ("subscribed", Setup::Subscribed),
    ("registry", Setup::Registry),
];

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let chosen: Vec<Setup> = SETUPS
        .iter()
        .filter(|(name, _)| std::env::args().any(|arg| arg == *name))
        .map(|(_, setup)| *setup)
        .collect();
    if chosen.is_empty() {
        // Each setup in a process of its own, so that one's memory does not hide another's.
        let runs = if quick { 1 } else { runs::count() };
        let mut table = runs::Table::new(&FIGURES);
        for _ in 0..runs {
            for (name, _) in SETUPS {
                let mut child =
                    std::process::Command::new(std::env::current_exe().expect("this bench"));
                child.arg(name).stdout(std::process::Stdio::piped());
                if !quick {
                    child.arg("--bench");
                }
                let output = child.output().expect("the bench runs");
                let printed = String::from_utf8_lossy(&output.stdout);
                print!("{printed}");
                assert!(output.status.success(), "{name}: {}", output.status);
                if let Some(figures) = printed.lines().find_map(|l| l.strip_prefix("figures: ")) {
                    let values: Vec<f64> = figures
                        .split(' ')
                        .map(|v| v.parse().unwrap_or(f64::NAN))
                        .collect();
                    table.add(name, &values);
                }
            }
        }
        if runs > 1 {
            table.print(runs);
        }
        return;
    }
    let count = std::env::var("COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 1_000 } else { 1_000_000 });
    let cycles = std::env::var("CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 0 } else { 2 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    for setup in chosen {
        runtime.block_on(run(count, cycles, setup));
    }
}

#[derive(Default)]
struct Record {
    issued: AtomicU64,
    refreshes: AtomicU64,
    expired_before_refresh: AtomicU64,
    /// Lateness of each scheduled refresh, in microseconds.
    lateness_us: Mutex<Vec<u64>>,
}

/// Token lifetimes: `LIFETIME_SECS` (default 60) plus up to a third more, spread by key.
fn lifetime(key: usize) -> Duration {
    let base = lifetime_secs();
    Duration::from_secs(base) + Duration::from_millis((key as u64) % (base * 1000 / 3).max(1))
}

fn lifetime_secs() -> u64 {
    std::env::var("LIFETIME_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(60)
}

/// One policy for every credential, shared (as a registry's credentials would share theirs).
fn policy() -> Arc<RefreshPolicy> {
    static POLICY: std::sync::OnceLock<Arc<RefreshPolicy>> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(|| {
            let mut policy = RefreshPolicy::default();
            // So each refresh's due time is known: issue + lifetime / 2.
            policy.refresh_at = 0.5;
            policy.min_margin = Duration::ZERO;
            policy.jitter = 0.0;
            policy.serve_margin = Duration::ZERO;
            Arc::new(policy)
        })
        .clone()
}

fn spawn(key: usize, record: &Arc<Record>) -> TokenHandle {
    builder(key, record).spawn()
}

fn builder(key: usize, record: &Arc<Record>) -> tokenwarden::RefresherBuilder {
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
                // Refresh is due at half the lifetime (`refresh_at` 0.5, no margin).
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
}

fn cpu_time() -> Duration {
    // SAFETY: `usage` is a valid, writable rusage that outlives the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

async fn run(count: usize, cycles: u32, setup: Setup) {
    let record = Arc::new(Record::default());
    // Warm the allocator and runtime with a few credentials first.
    let warm: Vec<_> = (0..100).map(|key| spawn(key, &record)).collect();
    for handle in &warm {
        handle.ready().await.unwrap();
    }

    let rss_before = rss::rss_bytes();
    let started = Instant::now();
    let registry: tokenwarden::Registry<usize> = tokenwarden::Registry::new();
    let handles: Vec<TokenHandle> = (0..count)
        .map(|key| match setup {
            Setup::Registry => registry.insert(key, builder(key, &record)),
            _ => builder(key, &record).spawn(),
        })
        .collect();
    let spawn_time = started.elapsed();
    let mut drained = Vec::new();
    if setup == Setup::Subscribed {
        for handle in handles.iter().step_by((count / 1_000).max(1)) {
            let mut events = handle.subscribe();
            drained.push(tokio::spawn(async move {
                let mut seen = 0u64;
                while let Ok(_event) = events.recv().await {
                    seen += 1;
                }
                seen
            }));
        }
    }
    let mut registry_events = registry.subscribe();
    let registry_drain = tokio::spawn(async move {
        let mut seen = 0u64;
        loop {
            match registry_events.recv().await {
                Ok(_) => seen += 1,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => seen += missed,
                Err(_) => return seen,
            }
        }
    });
    for handle in &handles {
        handle.ready().await.unwrap();
    }
    let all_ready = started.elapsed();
    // Let every first fetch's garbage be freed, then measure the idle footprint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss::rss_bytes();
    let per_credential = (rss_idle.saturating_sub(rss_before)) as f64 / count as f64;

    // Room for every lateness sample up front: growing the vector under its lock while
    // refreshes push into it would stall the workers and show up as lateness.
    record
        .lateness_us
        .lock()
        .unwrap()
        .reserve(count * (cycles as usize + 1));
    let cpu_before = cpu_time();
    let refreshes_before = record.refreshes.load(Ordering::Relaxed);
    // Each cycle is half the longest lifetime; run a bit past the last one.
    let longest = Duration::from_secs(lifetime_secs()) * 4 / 3;
    tokio::time::sleep(longest / 2 * cycles + Duration::from_secs(2)).await;
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

    println!(
        "\n## {count} credentials ({setup:?}), {cycles} refresh cycles, 2 worker threads, on {}\n",
        runs::cpu_model()
    );
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
    println!(
        "figures: {per_credential:.0} {:.3} {:.3} {:.2} {} {:.0}",
        at(0.5) as f64 / 1e3,
        at(0.99) as f64 / 1e3,
        cpu.as_secs_f64() * 1e6 / refreshes.max(1) as f64,
        record.expired_before_refresh.load(Ordering::Relaxed),
        count as f64 / spawn_time.as_secs_f64()
    );
    black_box((&handles, &warm));
    registry.shutdown();
    for handle in &handles {
        handle.shutdown();
    }
    drop(handles);
    let mut events = 0;
    for drain in drained {
        events += drain.await.unwrap_or(0);
    }
    if setup == Setup::Subscribed {
        println!("| events received by the 1,000 subscribers | {events} |");
    }
    registry.stopped().await;
    drop(registry); // closes the merged stream
    let merged = registry_drain.await.unwrap_or(0);
    if setup == Setup::Registry {
        println!("| events on the registry's merged stream | {merged} |");
    }
}
