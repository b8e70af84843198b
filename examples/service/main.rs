//! A service's operations endpoints: `/healthz`, `/readyz` and `/metrics` (Prometheus) over
//! its credentials, against an embedded token endpoint. Runs until Ctrl-C.
//!
//! ```text
//! cargo run --example service --features metrics,health
//! curl -s localhost:PORT/readyz; curl -s localhost:PORT/metrics | grep tokenwarden_
//! ```
//!
//! The Grafana dashboard (`contrib/grafana/tokenwarden.json`) and the Prometheus alerts
//! (`contrib/prometheus/tokenwarden.rules.yml`) read what `/metrics` serves.

mod app;

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::json;
use tokenwarden::{ClientCredentials, Refresher, Registry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = app::install_metrics();
    let token_url = serve(Router::new().route(
        "/token",
        post(|| async {
            axum::Json(json!({"access_token": "t", "token_type": "Bearer", "expires_in": 300}))
        }),
    ))
    .await?;

    let registry: Registry<String> = Registry::new();
    for name in ["orders-api", "billing-api"] {
        let source =
            ClientCredentials::builder(format!("{token_url}/token"), name, "s3cret").build()?;
        registry.insert(name.to_owned(), Refresher::builder(source));
    }

    let operations = serve(app::operations(&registry, metrics)).await?;
    println!("liveness:  {operations}/healthz");
    println!("readiness: {operations}/readyz");
    println!("metrics:   {operations}/metrics");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = reqwest::get(format!("{operations}/readyz")).await?;
    println!(
        "\nGET /readyz -> {}\n{}",
        ready.status(),
        ready.text().await?
    );
    println!("serving until Ctrl-C");
    tokio::signal::ctrl_c().await?;
    registry.shutdown();
    registry.stopped().await;
    Ok(())
}

/// Serves `app` on 127.0.0.1 and a free port; its base URL.
async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}
