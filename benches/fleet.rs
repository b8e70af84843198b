//! A fleet of 100 replicas sharing one credential through a real `redis-server`.
//!
//! ```text
//! cargo bench --bench fleet --features redis
//! ```
//!
//! Each replica has its own refresher and its own Redis connection; the token endpoint is
//! local and counts exchanges; tokens live `LIFETIME`. A baseline of one replica without a
//! fleet (its refresh schedule's exchanges), then three runs of 10 lifetimes each: healthy;
//! Redis killed for one lifetime in the middle; the token endpoint failing for one lifetime in
//! the middle; the lease holder killed mid-fetch in the middle (a replica that takes the lease
//! and hangs in its fetch, then is stopped). Reported: exchanges (goal: what one replica makes, plus at most one per Redis
//! outage per replica; without sharing, 100 times that), the spread between the first and the last
//! replica adopting each token, Redis commands per replica per lifetime, memory per replica,
//! what the failing endpoint saw, and reads (every replica every 10 ms) that found no token. Needs `redis-server` on the path (Debian's package);
//! without it the bench says so and exits (and fails under CI). The quick pass
//! (`cargo test --benches`) runs 10 replicas for 2 lifetimes. `RUNS=5` runs everything five
//! times and ends with a table of medians and min-max; `ROWS=EndpointDown,HolderKilled` runs
//! only the rows named.

#[path = "support/rss.rs"]
mod rss;
#[path = "support/runs.rs"]
mod runs;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use tokenwarden::fleet::RedisFleet;
use tokenwarden::sources::ClientCredentials;
use tokenwarden::{Event, RefreshPolicy, Refresher, TokenHandle};

const LIFETIME: Duration = Duration::from_secs(4);

fn main() {
    let quick = !std::env::args().any(|arg| arg == "--bench");
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("redis-server is not installed (Debian: apt-get install redis-server): skipped");
        if std::env::var_os("CI").is_some() {
            std::process::exit(1);
        }
        return;
    }
    let (replicas, lifetimes) = if quick { (10, 2) } else { (100, 10) };
    let runs = if quick { 1 } else { runs::count() };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut table = runs::Table::new(&[
        "exchanges",
        "adoption spread p50 (ms)",
        "p99 (ms)",
        "Redis commands per replica per lifetime",
        "RSS per replica (KiB)",
        "reads without a token",
        "requests the failing endpoint saw",
        "healed: first replica served (ms)",
        "last replica (ms)",
    ]);
    for run_number in 1..=runs {
        println!(
            "\n## run {run_number} of {runs}: {replicas} replicas, {lifetimes} token lifetimes of {LIFETIME:?}\n"
        );
        println!(
            "| run | exchanges | adoption spread p50 / p99 | Redis commands per replica per lifetime | RSS per replica | reads without a token | failing endpoint saw |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        // The baseline first (it also warms the process up): one replica, no sharing.
        for fault in [
            Fault::Alone,
            Fault::None,
            Fault::RedisDown,
            Fault::EndpointDown,
            Fault::HolderKilled,
        ] {
            // `ROWS=EndpointDown,HolderKilled` runs only those rows.
            if let Ok(rows) = std::env::var("ROWS")
                && !rows.split(',').any(|row| row == format!("{fault:?}"))
            {
                continue;
            }
            let replicas = if fault == Fault::Alone { 1 } else { replicas };
            let figures = runtime.block_on(run(replicas, lifetimes, fault));
            table.add(&format!("{fault:?} ({replicas})"), &figures);
        }
    }
    table.print(runs);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// One replica without a fleet: the exchanges its refresh schedule makes.
    Alone,
    None,
    RedisDown,
    EndpointDown,
    HolderKilled,
}

struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start(port: u16, dir: tempfile::TempDir) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--maxclients", "10000"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let client = redis::Client::open(redis.url()).expect("a URL");
        for _ in 0..200 {
            if client.get_connection().is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("redis-server did not start");
        std::process::exit(0);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Commands Redis has processed so far.
    fn commands(&self) -> u64 {
        let Ok(mut connection) = redis::Client::open(self.url()).and_then(|c| c.get_connection())
        else {
            return 0;
        };
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut connection)
            .unwrap_or_default();
        info.lines()
            .find_map(|line| line.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The token endpoint: counts exchanges (and those it refuses while "down").
#[derive(Default)]
struct Endpoint {
    issued: AtomicU32,
    refused: AtomicU32,
    down: AtomicBool,
}

async fn serve(endpoint: Arc<Endpoint>) -> String {
    let app = Router::new().route(
        "/token",
        post(move || {
            let endpoint = endpoint.clone();
            async move {
                if endpoint.down.load(Ordering::SeqCst) {
                    endpoint.refused.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                let n = endpoint.issued.fetch_add(1, Ordering::SeqCst) + 1;
                axum::Json(serde_json::json!({
                    "access_token": format!("fleet-{n}"),
                    "expires_in": LIFETIME.as_secs(),
                    "serial": n,
                }))
                .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!(
        "http://{}/token",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// One run; returns its figures in the order of the summary table's columns.
async fn run(replicas: usize, lifetimes: u32, fault: Fault) -> Vec<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut redis = Redis::start(port, tempfile::tempdir().expect("a directory"));
    let endpoint = Arc::new(Endpoint::default());
    let url = serve(endpoint.clone()).await;
    let mut policy = RefreshPolicy::default();
    policy.fetch_timeout = Duration::from_secs(2);

    let rss_before = rss::rss_bytes();
    let adopted: Arc<Mutex<HashMap<u64, Vec<Instant>>>> = Arc::default();
    let mut handles: Vec<TokenHandle> = Vec::new();
    for _ in 0..replicas {
        let source = ClientCredentials::builder(url.as_str(), "fleet-bench", "secret")
            .build()
            .expect("a source");
        let fleet = RedisFleet::new(redis::Client::open(redis.url()).expect("a URL"), "bench");
        let builder = Refresher::builder(source).policy(policy.clone());
        let handle = match fault {
            Fault::Alone => builder.spawn(),
            _ => builder.shared(fleet).spawn(),
        };
        let mut events = handle.subscribe();
        let adopted = adopted.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if let Event::Rotated { token, .. } = event
                    && let Some(serial) = token.extra().get("serial").and_then(|s| s.as_u64())
                {
                    adopted
                        .lock()
                        .unwrap()
                        .entry(serial)
                        .or_default()
                        .push(Instant::now());
                }
            }
        });
        handles.push(handle);
    }
    for handle in &handles {
        let _ = handle.ready().await;
    }
    let rss_per_replica = rss::rss_bytes().saturating_sub(rss_before) / replicas as u64;
    let commands_before = redis.commands();
    let (reads, misses) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let reader = tokio::spawn({
        let (handles, reads, misses) = (handles.clone(), reads.clone(), misses.clone());
        async move {
            loop {
                for handle in &handles {
                    reads.fetch_add(1, Ordering::Relaxed);
                    if handle.current().is_err() {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });

    let middle = lifetimes / 2;
    let mut healed_at = None;
    for lifetime in 0..lifetimes {
        if lifetime == middle {
            match fault {
                Fault::RedisDown => redis.kill(),
                Fault::EndpointDown => endpoint.down.store(true, Ordering::SeqCst),
                Fault::HolderKilled => kill_a_holder_mid_fetch(&redis, &policy).await,
                Fault::None | Fault::Alone => {}
            }
        }
        if lifetime == middle + 1 {
            match fault {
                Fault::RedisDown => {
                    redis = Redis::start(port, tempfile::tempdir().expect("a directory"));
                }
                Fault::EndpointDown => {
                    endpoint.down.store(false, Ordering::SeqCst);
                    healed_at = Some(Instant::now());
                }
                Fault::None | Fault::Alone | Fault::HolderKilled => {}
            }
        }
        tokio::time::sleep(LIFETIME).await;
    }
    reader.abort();
    let commands = redis.commands().saturating_sub(commands_before);
    for handle in &handles {
        handle.shutdown();
    }

    let mut spreads: Vec<Duration> = adopted
        .lock()
        .unwrap()
        .values()
        .filter(|times| times.len() > 1)
        .map(|times| {
            let first = times.iter().min().copied().unwrap_or_else(Instant::now);
            let last = times.iter().max().copied().unwrap_or(first);
            last - first
        })
        .collect();
    spreads.sort();
    let at = |q: f64| {
        spreads
            .get(((spreads.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let refused = endpoint.refused.load(Ordering::SeqCst);
    // After the endpoint healed: from the heal to the first and to the last replica serving
    // the first new token.
    let recovery = healed_at.and_then(|healed| {
        let adopted = adopted.lock().unwrap();
        adopted
            .values()
            .filter(|times| times.iter().min().is_some_and(|first| *first >= healed))
            .min_by_key(|times| times.iter().min().copied())
            .map(|times| {
                let first = times.iter().min().copied().unwrap_or(healed);
                let last = times.iter().max().copied().unwrap_or(healed);
                (first - healed, last - healed, times.len())
            })
    });
    let commands_per = commands as f64 / replicas as f64 / f64::from(lifetimes);
    let commands = match fault {
        // Redis restarted mid-run: its counter restarted too.
        Fault::RedisDown | Fault::Alone => "-".to_owned(),
        _ => format!("{commands_per:.1}"),
    };
    println!(
        "| {fault:?} ({replicas} replica{}) | {} | {:.0?} / {:.0?} | {commands} | {:.1} KiB | {} of {} | {} |",
        if replicas == 1 { "" } else { "s" },
        endpoint.issued.load(Ordering::SeqCst),
        at(0.5),
        at(0.99),
        rss_per_replica as f64 / 1024.0,
        misses.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        match recovery {
            Some((first, last, served)) => format!(
                "{refused} requests in {LIFETIME:?}; after it healed, the first replica served a new token in {first:.0?}, the last of {served} in {last:.0?}"
            ),
            None => "-".into(),
        },
    );
    let restarted = matches!(fault, Fault::RedisDown | Fault::Alone);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    vec![
        f64::from(endpoint.issued.load(Ordering::SeqCst)),
        ms(at(0.5)),
        ms(at(0.99)),
        if restarted { f64::NAN } else { commands_per },
        rss_per_replica as f64 / 1024.0,
        f64::from(misses.load(Ordering::Relaxed)),
        if fault == Fault::EndpointDown {
            f64::from(refused)
        } else {
            f64::NAN
        },
        recovery.map_or(f64::NAN, |(first, _, _)| ms(first)),
        recovery.map_or(f64::NAN, |(_, last, _)| ms(last)),
    ]
}

/// A replica joins the fleet, takes the lease on a forced refresh and hangs in its fetch; it is
/// stopped (as a killed process would be) while it holds the lease. The others must take over
/// before their tokens stop being served.
async fn kill_a_holder_mid_fetch(redis: &Redis, policy: &RefreshPolicy) {
    let fetching = Arc::new(tokio::sync::Notify::new());
    let hanging = tokenwarden::from_fn({
        let fetching = fetching.clone();
        move |_ctx| {
            fetching.notify_one();
            std::future::pending::<Result<tokenwarden::Token, tokenwarden::FetchError>>()
        }
    });
    let fleet = RedisFleet::new(redis::Client::open(redis.url()).expect("a URL"), "bench");
    let doomed = Refresher::builder(hanging)
        .policy(policy.clone())
        .shared(fleet)
        .spawn();
    if doomed.ready_within(LIFETIME).await.is_err() {
        println!("(the doomed replica found no token to adopt)");
    }
    // A forced refresh mints only if no other replica's newer token is there to adopt first.
    let mut holding = false;
    for _ in 0..20 {
        let refresh = doomed.refresh();
        tokio::select! {
            () = fetching.notified() => {
                holding = true;
                break;
            }
            _ = refresh => {}
        }
    }
    if !holding {
        println!("(the doomed replica did not take the lease)");
    }
    doomed.shutdown();
    doomed.stopped().await;
}
