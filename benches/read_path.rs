//! The read path: what `TokenHandle::current()` costs, next to baselines measured in the same run.
//!
//! ```text
//! cargo bench --bench read_path
//! ```
//!
//! Part 1, one reader: `current()` against the floor (an `arc_swap` load) and the hand-written
//! SDK cache (`tokio::sync::Mutex<Option<Token>>`). Variants are interleaved round by round and
//! the median of the per-round ratios is reported, so drift on a shared machine cancels out.
//!
//! Part 2, 64 readers on 2 worker threads while a refresh whose endpoint takes 500 ms is in
//! flight: latency percentiles of every read, for tokenwarden and for the mutex cache (which
//! holds its lock across the fetch, as SDKs do). A control window without a refresh shows
//! which outliers come from the machine rather than from the refresh.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokenwarden::{FetchError, RefreshPolicy, Refresher, Token, TokenHandle};

const ENDPOINT_LATENCY: Duration = Duration::from_millis(500);
const READERS: usize = 64;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    single_reader(&runtime, quick);
    contended(&runtime, quick);
}

// ----- baselines -----

/// The token cache SDKs hand-write: one async mutex, held across the network call.
struct MutexCache {
    token: tokio::sync::Mutex<Option<Token>>,
    /// Set to make the next reader find the token due for renewal.
    due: AtomicBool,
}

impl MutexCache {
    fn new(token: Token) -> MutexCache {
        MutexCache {
            token: tokio::sync::Mutex::new(Some(token)),
            due: AtomicBool::new(false),
        }
    }

    async fn get(&self) -> Token {
        let mut token = self.token.lock().await;
        let expired = token
            .as_ref()
            .is_none_or(|t| t.is_expired_at(SystemTime::now()));
        if expired || self.due.swap(false, Ordering::Relaxed) {
            *token = Some(fetch_from_endpoint().await);
        }
        token.clone().expect("just set")
    }
}

async fn fetch_from_endpoint() -> Token {
    tokio::time::sleep(ENDPOINT_LATENCY).await;
    Token::new("fresh-token").expires_in(Duration::from_secs(3600))
}

fn spawn_refresher(runtime: &tokio::runtime::Runtime) -> TokenHandle {
    runtime.block_on(async {
        let handle = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
            Ok::<_, FetchError>(fetch_from_endpoint().await)
        }))
        .initial_token(Token::new("initial-token").expires_in(Duration::from_secs(3600)))
        .spawn();
        handle.ready().await.expect("a token");
        handle
    })
}

// ----- part 1 -----

fn single_reader(runtime: &tokio::runtime::Runtime, quick: bool) {
    let (rounds, iterations) = if quick { (1, 1_000) } else { (21, 200_000) };
    let handle = spawn_refresher(runtime);
    let near_expiry = spawn_near_expiry_refresher(runtime);
    let token = handle.current().expect("a token");
    let swap = ArcSwap::from_pointee(token.clone());
    let cache = MutexCache::new(token);

    let mut samples: [Vec<f64>; 6] = Default::default();
    runtime.block_on(async {
        for _ in 0..rounds {
            samples[0].push(time_per_op(iterations, || {
                black_box(swap.load());
            }));
            samples[1].push(time_per_op(iterations, || {
                black_box(swap.load_full());
            }));
            samples[2].push(time_per_op(iterations, || {
                black_box(handle.current().ok());
            }));
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(cache.get().await);
            }
            samples[3].push(start.elapsed().as_nanos() as f64 / iterations as f64);
            samples[4].push(time_per_op(iterations, || {
                black_box(near_expiry.current().ok());
            }));
            samples[5].push(time_per_op(iterations, || {
                black_box(handle.clone());
            }));
        }
    });

    let names = [
        "arc_swap load (floor)",
        "arc_swap load_full",
        "tokenwarden current()",
        "tokio Mutex<Option<Token>> cache",
        "tokenwarden current(), token within 5 s of expiry",
        "TokenHandle clone + drop (not a read)",
    ];
    println!("\n## One reader: ns per read ({rounds} interleaved rounds of {iterations})\n");
    println!("| read | median ns | min ns | x floor (median of per-round ratios) |");
    println!("|---|---:|---:|---:|");
    for (name, times) in names.iter().zip(&samples) {
        let ratios: Vec<f64> = times.iter().zip(&samples[0]).map(|(t, f)| t / f).collect();
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} |",
            median(times),
            times.iter().cloned().fold(f64::MAX, f64::min),
            median(&ratios)
        );
    }
    handle.shutdown();
    near_expiry.shutdown();
}

/// A refresher whose token is always within 5 s of expiry: 4 s tokens renewed only at expiry,
/// so `current()` takes its precise-clock path.
fn spawn_near_expiry_refresher(runtime: &tokio::runtime::Runtime) -> TokenHandle {
    let mut policy = RefreshPolicy::default();
    policy.refresh_at = 1.0;
    policy.jitter = 0.0;
    policy.min_margin = Duration::ZERO;
    policy.serve_margin = Duration::ZERO;
    runtime.block_on(async {
        let issued = Arc::new(AtomicU64::new(0));
        let handle = Refresher::builder(tokenwarden::from_fn(move |_ctx| {
            // A new secret each time (the same one fetched again would keep its first expiry).
            let n = issued.fetch_add(1, Ordering::Relaxed);
            async move {
                Ok::<_, FetchError>(
                    Token::new(format!("short-token-{n}")).expires_in(Duration::from_secs(4)),
                )
            }
        }))
        .policy(policy)
        .spawn();
        handle.ready().await.expect("a token");
        handle
    })
}

fn time_per_op(iterations: u32, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

// ----- part 2 -----

fn contended(runtime: &tokio::runtime::Runtime, quick: bool) {
    let window = if quick {
        Duration::from_millis(20)
    } else {
        ENDPOINT_LATENCY + Duration::from_millis(200)
    };
    println!(
        "\n## {READERS} readers on 2 worker threads for {window:?}; a refresh taking {ENDPOINT_LATENCY:?} starts 50 ms in\n"
    );
    println!(
        "| cache | refresh | reads | p50 | p99 | p99.9 | max | reads > 1 ms | reader time blocked |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");

    for refresh in [false, true] {
        let handle = spawn_refresher(runtime);
        let report = runtime.block_on(read_concurrently(window, refresh, handle.clone(), {
            let handle = handle.clone();
            move || {
                tokio::spawn(async move {
                    // The quick pass's window ends (and shuts the refresher down) before the
                    // 500 ms fetch answers: `Stopped` is expected then; anything else is a finding.
                    match handle.refresh().await {
                        Ok(_) | Err(tokenwarden::Error::Stopped) => {}
                        Err(error) => eprintln!("the measured refresh failed: {error}"),
                    }
                });
            }
        }));
        print_row("tokenwarden current()", refresh, &report);
        handle.shutdown();

        let cache = Arc::new(MutexCache::new(
            Token::new("initial-token").expires_in(Duration::from_secs(3600)),
        ));
        let report = runtime.block_on(read_concurrently(window, refresh, cache.clone(), {
            let cache = cache.clone();
            move || cache.due.store(true, Ordering::Relaxed)
        }));
        print_row("tokio Mutex cache", refresh, &report);
    }
}

struct Report {
    latencies_ns: Vec<u64>,
    reader_time: Duration,
    /// When each read over 1 ms started, from the window's start, and how long it took.
    slow_reads: Vec<(Duration, Duration)>,
}

/// A token cache as a request path reads it; each reader task holds its own clone.
trait Read: Clone + Send + Sync + 'static {
    fn read(&self) -> impl std::future::Future<Output = bool> + Send;
}

impl Read for TokenHandle {
    fn read(&self) -> impl std::future::Future<Output = bool> + Send {
        // Synchronous: the read happens here, the future is already complete.
        std::future::ready(self.current().is_ok())
    }
}

impl Read for Arc<MutexCache> {
    async fn read(&self) -> bool {
        !self.get().await.is_expired_at(SystemTime::UNIX_EPOCH)
    }
}

/// Runs `READERS` tasks that read in a loop for `window`, calling `trigger` 50 ms in when
/// `refresh` is set, and returns every read's latency.
async fn read_concurrently(
    window: Duration,
    refresh: bool,
    cache: impl Read,
    trigger: impl FnOnce(),
) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let cache = cache.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(100_000);
                let mut slow = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    black_box(cache.read().await);
                    let took = start.elapsed();
                    latencies.push(took.as_nanos() as u64);
                    if took > Duration::from_millis(1) {
                        slow.push((start - started, took));
                    }
                    // Other work a request does between token reads.
                    tokio::task::yield_now().await;
                }
                (latencies, slow)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50).min(window / 2)).await;
    if refresh {
        trigger();
    }
    tokio::time::sleep_until((started + window).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_ns = Vec::new();
    let mut slow_reads = Vec::new();
    for reader in readers {
        let (latencies, slow) = reader.await.expect("reader");
        latencies_ns.extend(latencies);
        slow_reads.extend(slow);
    }
    slow_reads.sort();
    Report {
        latencies_ns,
        reader_time: started.elapsed() * READERS as u32,
        slow_reads,
    }
}

fn print_row(name: &str, refresh: bool, report: &Report) {
    if !report.slow_reads.is_empty() {
        let reads: Vec<String> = report
            .slow_reads
            .iter()
            .take(8)
            .map(|(at, took)| format!("{} ms ({:.1} ms)", at.as_millis(), took.as_secs_f64() * 1e3))
            .collect();
        // Not part of the table: where slow reads fall relative to the refresh (50 ms to 550 ms).
        eprintln!(
            "  {name}, refresh {refresh}: reads over 1 ms started at {}",
            reads.join(", ")
        );
    }
    let mut sorted = report.latencies_ns.clone();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    let blocked: u64 = sorted.iter().sum();
    let over_1ms = sorted.iter().filter(|&&ns| ns > 1_000_000).count();
    println!(
        "| {name} | {} | {} | {} | {} | {} | {} | {over_1ms} | {:.1} % |",
        if refresh {
            "in flight"
        } else {
            "none (control)"
        },
        sorted.len(),
        show(at(0.5)),
        show(at(0.99)),
        show(at(0.999)),
        show(*sorted.last().unwrap_or(&0)),
        100.0 * blocked as f64 / report.reader_time.as_nanos() as f64,
    );
}

fn show(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} us", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}
