//! Five replicas share one token through Redis: one exchange per token lifetime, not five.
//!
//! ```text
//! cargo run --example fleet --features redis
//! ```
//!
//! Uses the Redis at `REDIS_URL`, or starts a `redis-server` from the path on a free loopback
//! port (Debian: `apt-get install redis-server`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::json;
use tokenwarden::fleet::RedisFleet;
use tokenwarden::sources::ClientCredentials;
use tokenwarden::{Event, Refresher};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (redis_url, _local) = redis()?;
    let exchanges = Arc::new(AtomicU32::new(0));
    let token_url = serve(exchanges.clone()).await?;
    // In production every replica is its own process; here, five refreshers in one.
    let fleet_key = [42u8; 32]; // from your secret store, the same in every replica
    let mut replicas = Vec::new();
    for _ in 0..5 {
        let source = ClientCredentials::builder(&token_url, "billing-service", "s3cr3t").build()?;
        let fleet = RedisFleet::new(redis::Client::open(redis_url.as_str())?, "billing-api")
            .with_key(fleet_key);
        replicas.push(Refresher::builder(source).shared(fleet).spawn());
    }
    let mut events = replicas[0].subscribe();
    for (n, replica) in replicas.iter().enumerate() {
        let token = replica.ready().await?;
        println!("replica {n}: token #{}", token.extra()["serial"]);
    }
    // Tokens live 4 s: watch the fleet through three lifetimes.
    let mut rotations = 0;
    while rotations < 3 {
        match events.recv().await? {
            Event::MintedForFleet => println!("replica 0 minted for the fleet"),
            Event::AdoptedFromFleet => println!("replica 0 adopted the fleet's token"),
            Event::Rotated { token, .. } => {
                rotations += 1;
                println!(
                    "replica 0 now serves token #{}",
                    &token.expose_secret()[6..]
                );
            }
            _ => {}
        }
    }
    let exchanges = exchanges.load(Ordering::SeqCst);
    println!(
        "{exchanges} token exchanges for 5 replicas over 4 token lifetimes (without sharing: about 20)"
    );
    for replica in &replicas {
        replica.shutdown();
    }
    Ok(())
}

/// The Redis to use: `REDIS_URL`, or a `redis-server` started here (stopped on drop).
fn redis() -> Result<(String, Option<LocalRedis>), Box<dyn std::error::Error>> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((url, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("no REDIS_URL and no redis-server on the path ({e}): install it (Debian: apt-get install redis-server) or set REDIS_URL")
        })?;
    let local = LocalRedis(child);
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str())?;
    for _ in 0..100 {
        if client.get_connection().is_ok() {
            return Ok((url, Some(local)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the local redis-server did not start".into())
}

struct LocalRedis(std::process::Child);

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A token endpoint that counts its exchanges and issues 4 s tokens, numbered in a `serial`
/// field (so the demo can tell them apart without printing a secret).
async fn serve(exchanges: Arc<AtomicU32>) -> std::io::Result<String> {
    let app = Router::new().route(
        "/oauth/token",
        post(move || {
            let n = exchanges.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                axum::Json(
                    json!({"access_token": format!("token-{n}"), "expires_in": 4, "serial": n}),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/oauth/token", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
