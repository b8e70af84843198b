//! A tonic gRPC client authorised by tokenwarden's tower Layer, against an embedded gRPC
//! server (the standard health service) that accepts only the newest token, and an embedded
//! token endpoint.
//!
//! ```text
//! cargo run --example grpc --features tower
//! ```

use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokenwarden::Refresher;
use tokenwarden::integrations::tower::TokenAuthLayer;
use tokenwarden::sources::ClientCredentials;
use tonic::transport::{Channel, Server};
use tonic::{Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_layer::Layer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let token_url = token_endpoint(issued.clone()).await?;
    let grpc_url = grpc_server(issued.clone()).await?;

    let source = ClientCredentials::builder(token_url, "grpc-client", "s3cr3t").build()?;
    let handle = Refresher::builder(source).name("grpc-api").spawn();
    handle.ready().await?;

    let channel = Channel::from_shared(grpc_url)?.connect().await?;
    let mut client = HealthClient::new(TokenAuthLayer::new(handle.clone()).layer(channel));
    let check = || HealthCheckRequest {
        service: String::new(),
    };

    let answer = client.check(check()).await?;
    println!("call 1: {:?}", answer.into_inner().status());

    // The server revokes every token issued so far (a key rotation on its side).
    issued.lock().unwrap().clear();
    match client.check(check()).await {
        Err(status) => println!("call 2: {:?}: the layer told the refresher", status.code()),
        Ok(_) => println!("call 2: unexpectedly accepted"),
    }
    let answer = client.check(check()).await?;
    println!(
        "call 3: {:?} with the renewed token",
        answer.into_inner().status()
    );

    handle.shutdown();
    handle.stopped().await;
    Ok(())
}

/// A token endpoint that records the tokens it issues.
async fn token_endpoint(issued: Arc<Mutex<Vec<String>>>) -> std::io::Result<String> {
    let app = Router::new().route(
        "/token",
        post(move || {
            let token = format!("grpc-{}", fastrand::u32(..));
            issued.lock().unwrap().push(token.clone());
            async move { Json::<Value>(json!({"access_token": token, "expires_in": 600})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/token", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// A gRPC server whose interceptor accepts only tokens the endpoint issued and not revoked.
async fn grpc_server(issued: Arc<Mutex<Vec<String>>>) -> std::io::Result<String> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let check = move |request: Request<()>| {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if issued.lock().unwrap().iter().any(|t| t == presented) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("unknown or revoked token"))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let service = tonic::service::interceptor::InterceptedService::new(health, check);
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Ok(url)
}
