//! What a DPoP proof costs per request, next to what a request presenting a bearer token
//! pays (`authorization_header()`), measured in the same run.
//!
//! ```text
//! RUNS=5 cargo bench --bench dpop --features dpop
//! ```
//!
//! Rows: one proof (`DpopKey::proof`: a random `jti`, the token's SHA-256 for `ath`, JSON, one
//! ES256 signature), and the same read a bearer request makes. Every table names the CPU and
//! the floor's absolute ns; `RUNS=n` repeats and prints medians with min-max.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "support/runs.rs"]
mod runs;

use tokenwarden::dpop::DpopKey;
use tokenwarden::{FetchError, Refresher, Token};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let handle = runtime.block_on(async {
        let handle = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
            // An access token of a typical size (a JWT of about 800 bytes).
            Ok::<_, FetchError>(Token::new("a".repeat(800)).expires_in(Duration::from_secs(3600)))
        }))
        .spawn();
        handle.ready().await.expect("a token");
        handle
    });
    let key = DpopKey::generate().expect("a key");
    let token = handle.current().expect("a token");
    let url = "https://api.example.com/v1/orders/12345";
    let iterations = if quick { 100 } else { 20_000 };
    let rounds = if quick { 1 } else { 11 };
    let runs = if quick { 1 } else { runs::count() };

    let mut table = runs::Table::new(&["ns per request", "x bearer header"]);
    for _ in 0..runs {
        let mut header = Vec::new();
        let mut proof = Vec::new();
        for _ in 0..rounds {
            header.push(time(iterations, || {
                black_box(handle.authorization_header().ok());
            }));
            proof.push(time(iterations, || {
                black_box(key.proof("GET", url, Some(token.expose_secret())).ok());
            }));
        }
        let (header, proof) = (median(&header), median(&proof));
        println!(
            "one run on {}: bearer header {header:.1} ns (the floor), DPoP proof {proof:.0} ns ({:.0}x)",
            runs::cpu_model(),
            proof / header
        );
        table.add("bearer `authorization_header()` (floor)", &[header, 1.0]);
        table.add("DPoP proof (`DpopKey::proof`)", &[proof, proof / header]);
    }
    if runs > 1 {
        table.print(runs);
    }
    handle.shutdown();
}

fn time(iterations: u32, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
