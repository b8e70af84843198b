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
//! `RUNS=5` repeats part 1 five times and ends with each read's median ns and ratio to the
//! floor over the runs, with min-max; every table names the CPU and the floor's absolute ns,
//! since ratios move between CPUs (a faster floor exposes the fixed costs).
//!
//! Part 2, 64 readers on 2 worker threads while a refresh whose endpoint takes 500 ms is in
//! flight: latency percentiles of every read, for tokenwarden and for the mutex cache (which
//! holds its lock across the fetch, as SDKs do). A control window without a refresh shows
//! which outliers come from the machine rather than from the refresh.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

#[path = "support/runs.rs"]
mod runs;

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
    let runs = if quick { 1 } else { runs::count() };
    let mut table = runs::Table::new(&["ns per read", "x floor (median of per-round ratios)"]);
    for _ in 0..runs {
        for (name, ns, ratio) in single_reader(&runtime, quick) {
            table.add(name, &[ns, ratio]);
        }
    }
    if runs > 1 {
        table.print(runs);
    }
    scaling(&runtime, quick);
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

/// Part 1, once: per read style, its name, median ns and median ratio to the floor.
fn single_reader(runtime: &tokio::runtime::Runtime, quick: bool) -> Vec<(&'static str, f64, f64)> {
    let (rounds, iterations) = if quick { (1, 1_000) } else { (21, 200_000) };
    let handle = spawn_refresher(runtime);
    let near_expiry = spawn_near_expiry_refresher(runtime);
    let token = handle.current().expect("a token");
    let swap = ArcSwap::from_pointee(token.clone());
    let cache = MutexCache::new(token);

    let mut samples: [Vec<f64>; 14] = Default::default();
    let header = handle.authorization_header().expect("a header");
    let owned = handle.current().expect("a token");
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
            samples[6].push(time_per_op(iterations, || {
                black_box(
                    handle
                        .with_current(|token| token.expose_secret().len())
                        .ok(),
                );
            }));
            samples[7].push(time_per_op(iterations, || {
                drop(black_box(handle.authorization_header()));
            }));
            samples[8].push(time_per_op(iterations, || {
                black_box(handle.authorization_header().ok());
            }));
            samples[9].push(time_per_op(iterations, || {
                black_box(clone_out_of_line(&header).ok());
            }));
            // The parts of a read, alone, for the cost-per-part table.
            samples[10].push(time_per_op(iterations, || {
                black_box(black_box(&owned).clone());
            }));
            samples[11].push(time_per_op(iterations, || {
                black_box(black_box(&header).clone());
            }));
            samples[12].push(time_per_op(iterations, || {
                black_box(clock_seconds());
            }));
            samples[13].push(time_per_op(iterations, || {
                black_box(coarse_clock_gettime());
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
        "tokenwarden with_current() (borrowed)",
        "tokenwarden authorization_header() (prebuilt), as returned",
        "tokenwarden authorization_header().ok()",
        "baseline: HeaderValue clone() returned by a function, .ok()",
        "part: Token clone + drop",
        "part: HeaderValue clone + drop",
        "part: libc time() (what the expiry check reads on glibc)",
        "part: clock_gettime(CLOCK_REALTIME_COARSE) (what it read before)",
    ];
    println!(
        "\n## One reader: ns per read ({rounds} interleaved rounds of {iterations}) on {}; the floor took {:.1} ns\n",
        runs::cpu_model(),
        median(&samples[0])
    );
    println!(
        "| read | median ns | min ns | x floor (median of per-round ratios) | x floor, min-max |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut figures = Vec::new();
    for (name, times) in names.iter().zip(&samples) {
        let ratios: Vec<f64> = times.iter().zip(&samples[0]).map(|(t, f)| t / f).collect();
        figures.push((*name, median(times), median(&ratios)));
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} | {:.2}-{:.2} |",
            median(times),
            times.iter().cloned().fold(f64::MAX, f64::min),
            median(&ratios),
            min(&ratios),
            max(&ratios),
        );
    }
    handle.shutdown();
    near_expiry.shutdown();
    figures
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

/// What any function handing out a clone of a header costs its caller: `.ok()` copies the
/// 40-byte `HeaderValue` out of the `Result`, with loads wider than the stores that wrote it
/// (store-forwarding stalls), whoever built the value.
#[inline(never)]
fn clone_out_of_line(header: &http::HeaderValue) -> Result<http::HeaderValue, tokenwarden::Error> {
    Ok(black_box(header).clone())
}

/// The wall clock's seconds as the read path's expiry check reads them on glibc.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn clock_seconds() -> libc::time_t {
    // SAFETY: a null pointer asks `time` only to return the value.
    unsafe { libc::time(std::ptr::null_mut()) }
}

/// The coarse wall clock as the expiry check read it before.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn coarse_clock_gettime() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    ts
}

// Elsewhere the read path reads no coarse clock: nothing to measure.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn clock_seconds() {}
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn coarse_clock_gettime() {}

fn time_per_op(iterations: u32, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn min(values: &[f64]) -> f64 {
    values.iter().cloned().fold(f64::MAX, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().cloned().fold(f64::MIN, f64::max)
}

// ----- part 3: reads of one credential from several threads at once -----

/// The read styles of the scaling table, by name.
const STYLES: [&str; 7] = [
    "arc_swap load() guard (floor)",
    "arc_swap load_full() (owned floor)",
    "tokio watch borrow + clone",
    "tokenwarden current() (owned)",
    "tokenwarden with_current() (borrowed)",
    "tokenwarden authorization_header() (prebuilt)",
    "tokenwarden shared path (before per-thread replicas)",
];

const THREADS: [usize; 4] = [1, 2, 4, 8];

/// One read of `style`.
struct Readers {
    handle: TokenHandle,
    swap: ArcSwap<Token>,
    watch: tokio::sync::watch::Receiver<Token>,
    /// A handle whose credential cycles through more credentials than a thread keeps replicas
    /// of: every read takes the shared path (a watch read lock and a reference count).
    cold: Vec<TokenHandle>,
}

/// Reads per batch: the style is chosen once per batch, so each style's reads run in a loop
/// of their own (choosing per read cost every style about 5 ns, the guard included).
const BATCH: usize = 256;

impl Readers {
    /// Four batches, so the thread has its replica and warm caches before it is timed.
    fn warm_up(&self, style: usize) {
        for _ in 0..4 {
            self.batch(style);
        }
    }

    /// [`BATCH`] reads of `style`.
    fn batch(&self, style: usize) {
        fn reads(mut read: impl FnMut(usize)) {
            for n in 0..BATCH {
                read(n);
            }
        }
        match style {
            0 => reads(|_| drop(black_box(self.swap.load()))),
            1 => reads(|_| drop(black_box(self.swap.load_full()))),
            2 => reads(|_| drop(black_box(self.watch.borrow().clone()))),
            3 => reads(|_| drop(black_box(self.handle.current().ok()))),
            4 => reads(|_| {
                black_box(self.handle.with_current(|t| t.expose_secret().len()).ok());
            }),
            5 => reads(|_| drop(black_box(self.handle.authorization_header()))),
            _ => reads(|n| drop(black_box(self.cold[n % self.cold.len()].current().ok()))),
        }
    }
}

/// Reads per second by `threads` threads reading `style` for `window`, all at once.
fn reads_per_second(readers: &Arc<Readers>, style: usize, threads: usize, window: Duration) -> f64 {
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (readers, barrier, stop) = (readers.clone(), barrier.clone(), stop.clone());
            std::thread::spawn(move || {
                readers.warm_up(style);
                barrier.wait();
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    readers.batch(style);
                    reads += BATCH as u64;
                }
                reads
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("a reader"))
        .sum();
    reads as f64 / start.elapsed().as_secs_f64()
}

/// How many times faster two threads read `style` than one, from two threads that alternate
/// for `window` between one reading alone and both reading, 20 ms each (less when quick).
fn alternating_scaling(readers: &Arc<Readers>, style: usize, window: Duration) -> f64 {
    const ALONE: u8 = 0;
    const BOTH: u8 = 1;
    const DONE: u8 = 2;
    let slice = (window / 15).min(Duration::from_millis(20));
    let phase = Arc::new(AtomicU8::new(ALONE));
    let barrier = Arc::new(std::sync::Barrier::new(3));
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let (readers, phase, barrier) = (readers.clone(), phase.clone(), barrier.clone());
            std::thread::spawn(move || {
                readers.warm_up(style);
                barrier.wait();
                // Reads in each phase: a batch is counted in the phase it started in.
                let mut reads = [0u64; 2];
                loop {
                    let now = phase.load(Ordering::Relaxed);
                    if now == DONE {
                        return reads;
                    }
                    if worker == 1 && now == ALONE {
                        std::hint::spin_loop();
                        continue;
                    }
                    readers.batch(style);
                    reads[usize::from(now)] += BATCH as u64;
                }
            })
        })
        .collect();
    barrier.wait();
    let mut spent = [Duration::ZERO; 2];
    let mut elapsed = Duration::ZERO;
    while elapsed < window {
        for now in [ALONE, BOTH] {
            phase.store(now, Ordering::Relaxed);
            let start = Instant::now();
            std::thread::sleep(slice);
            spent[usize::from(now)] += start.elapsed();
        }
        elapsed = spent[0] + spent[1];
    }
    phase.store(DONE, Ordering::Relaxed);
    let mut reads = [0u64; 2];
    for worker in workers {
        let counted = worker.join().expect("a reader");
        reads[0] += counted[0];
        reads[1] += counted[1];
    }
    let rate = |p: usize| reads[p] as f64 / spent[p].as_secs_f64();
    rate(1) / rate(0)
}

fn scaling(runtime: &tokio::runtime::Runtime, quick: bool) {
    let (runs, window) = if quick {
        (1, Duration::from_millis(5))
    } else {
        (5, Duration::from_millis(300))
    };
    let handle = spawn_refresher(runtime);
    let token = handle.current().expect("a token");
    // More credentials than a thread keeps replicas of (16), read in turn.
    let cold = (0..64).map(|_| spawn_refresher(runtime)).collect();
    let (_tx, watch) = tokio::sync::watch::channel(token.clone());
    let readers = Arc::new(Readers {
        handle: handle.clone(),
        swap: ArcSwap::from_pointee(token),
        watch,
        cold,
    });
    // rates[style][threads][run]
    let mut rates = vec![vec![Vec::new(); THREADS.len()]; STYLES.len()];
    // speedups[style][run]: 2 threads over 1, from alternating phases.
    let mut speedups = vec![Vec::new(); STYLES.len()];
    for _ in 0..runs {
        // Interleaved: every style and thread count once per run.
        for (t, &threads) in THREADS.iter().enumerate() {
            for (style, rate) in rates.iter_mut().enumerate() {
                rate[t].push(reads_per_second(&readers, style, threads, window));
            }
        }
        // The scaling ratio from windows seconds apart measures the neighbours' load as much
        // as the read (the guard's own ratio fell to 1.01x in a run whose other core was
        // busy, and to 1.39x with back-to-back windows): two threads alternate between one
        // reading alone and both reading, every 20 ms, so a slow spell of the host lands on
        // both sides of the ratio.
        for (style, speedup) in speedups.iter_mut().enumerate() {
            speedup.push(alternating_scaling(&readers, style, window * 2));
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\n## One credential read by 1, 2, 4 and 8 threads at once, on {cores} cores of {}: million reads per second, median of {runs} runs (min-max); the guard floor took {:.1} ns per read on 1 thread. 2 threads / 1: per run, from two threads alternating every 20 ms between one reading and both\n",
        runs::cpu_model(),
        1e9 / median(&rates[0][0])
    );
    println!(
        "| read | 1 thread | 2 threads | 4 threads | 8 threads | 2 threads / 1 (min-max) | 1 thread, x guard floor (min-max) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (style, name) in STYLES.iter().enumerate() {
        let cells: Vec<String> = (0..THREADS.len())
            .map(|t| {
                let r = &rates[style][t];
                format!(
                    "{:.0} ({:.0}-{:.0})",
                    median(r) / 1e6,
                    min(r) / 1e6,
                    max(r) / 1e6
                )
            })
            .collect();
        let speedup = &speedups[style];
        // Time per read relative to the guard's, per run: the floor's rate over this one's.
        let cost: Vec<f64> = (0..runs)
            .map(|run| rates[0][0][run] / rates[style][0][run])
            .collect();
        println!(
            "| {name} | {} | {:.2}x ({:.2}-{:.2}) | {:.2}x ({:.2}-{:.2}) |",
            cells.join(" | "),
            median(speedup),
            min(speedup),
            max(speedup),
            median(&cost),
            min(&cost),
            max(&cost),
        );
    }
    handle.shutdown();
    for cold in &readers.cold {
        cold.shutdown();
    }
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
