//! Keeps short-lived credentials fresh in the background.
//!
//! tokenwarden trades a long-lived secret (a client secret, a refresh token, an API key, a
//! signing key) for short-lived tokens and renews them *before* they expire, in one spawned
//! task per credential. Readers never wait on the network: the current token is published on a
//! `tokio::sync::watch` channel and [`TokenHandle::current`] is a cheap synchronous call.
//!
//! - [`TokenSource`] is the one trait a credential flow implements; the [built-in
//!   flows](sources) cover OAuth2 and its extensions, and [`from_fn`] turns a closure into one.
//! - [`Refresher::builder`] configures and spawns the refresher and returns a [`TokenHandle`].
//! - [`RefreshPolicy`] says when to refresh and how to retry, as plain data with stated defaults.
//! - [`TokenState`] (on [`TokenHandle::watch`]) and [`Event`] (on [`TokenHandle::subscribe`])
//!   tell what happens.
//!
//! Secrets never appear in `Debug`, `Display`, errors or logs: [`Token`] redacts them, and the
//! refresher logs only metadata.
//!
//! # A credential, start to shutdown
//!
//! ```
//! use std::time::Duration;
//! use tokenwarden::{FetchError, Refresher, Token};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tokenwarden::Error> {
//! let shutdown = CancellationToken::new();
//! let handle = Refresher::builder(tokenwarden::from_fn(|_ctx| async {
//!     // Call your token endpoint here.
//!     Ok::<_, FetchError>(Token::new("abc").expires_in(Duration::from_secs(3600)))
//! }))
//! .name("example-api")
//! .cancellation_token(shutdown.clone())
//! .spawn();
//!
//! handle.ready().await?; // once, at startup
//! // On every request: synchronous, and `?` composes with tokenwarden::Error.
//! let header = handle.current()?.authorization_header()?;
//! assert_eq!(header, "Bearer abc");
//! shutdown.cancel();
//! handle.stopped().await;
//! # Ok(())
//! # }
//! ```
//!
//! # The flows
//!
//! Each is a [`TokenSource`] for [`Refresher::builder`]. Every one has a runnable program
//! against an embedded endpoint in `examples/` (`cargo run --example <name>`).
//!
//! | flow | source | example |
//! |---|---|---|
//! | OAuth2 client credentials | [`ClientCredentials`] | `client_credentials`, `quickstart` |
//! | OAuth2 refresh-token grant, with rotation and a [`store`] | [`RefreshTokenGrant`] | `refresh_token` |
//! | API key exchanged for short-lived tokens | [`ApiKeyExchange`] | `api_key` |
//! | token exchange (RFC 8693) | [`TokenExchange`](sources::TokenExchange) | `token_exchange` |
//! | JWT-bearer grant, service accounts (RFC 7523), feature `signing` | `sources::JwtBearer` | `jwt_bearer` |
//! | OpenID / RFC 8414 discovery, for any of the above | [`Issuer`](sources::Issuer) | `discovery` |
//! | a fixed token; a file something else rotates (a pod's service-account token) | [`StaticToken`](sources::StaticToken), [`FileToken`](sources::FileToken) | |
//! | workload identity: GCE metadata server, Azure managed identity, GitHub Actions OIDC | `sources::cloud` | `workload_identity` |
//! | DPoP-bound tokens (RFC 9449) on any OAuth flow, feature `dpop` | `.dpop(dpop::DpopKey)` | `dpop` |
//! | a token per scope set, audience or resource, one identity | [`registry::KeyedCredential`] | `keyed` |
//! | credentials declared in a configuration file | `config::CredentialsConfig` | `config` |
//!
//! A client proves who it is with a [`Credential`](sources::Credential): a secret (from memory,
//! or a [file read at every fetch](sources::Secret::file)), a signed assertion
//! (`private_key_jwt`, feature `signing`) or a client certificate (mutual TLS, RFC 8705):
//!
//! ```no_run
//! # #[cfg(feature = "http-sources")]
//! # mod example {
//! # async fn run() -> Result<(), tokenwarden::Error> {
//! use tokenwarden::sources::{ClientCredentials, Credential, HttpOptions, Issuer, Secret};
//! use tokenwarden::Refresher;
//!
//! // A secret Kubernetes rotates in place, at an endpoint found from the issuer URL.
//! let issuer = Issuer::discover("https://login.example.com/realms/prod", &HttpOptions::new()).await?;
//! let source = issuer
//!     .client_credentials("reports", Secret::file("/var/run/secrets/reports/client-secret"))
//!     .scope("reports:read")
//!     .build()?;
//! let reports = Refresher::builder(source).name("reports").spawn();
//!
//! // Mutual TLS: the certificate is the credential.
//! let pem = std::fs::read("/etc/tls/client.pem").expect("certificate and key");
//! let http = HttpOptions::new().identity(reqwest::Identity::from_pem(&pem).expect("a PEM identity"));
//! let source = ClientCredentials::builder("https://mtls.example.com/token", "billing", Credential::MutualTls)
//!     .http(http)
//!     .build()?;
//! let billing = Refresher::builder(source).name("billing").spawn();
//! # Ok(()) }
//! # }
//! ```
//!
//! Workload identity federation: a Kubernetes projected service-account token, re-read at every
//! fetch, exchanged for a cloud token:
//!
//! ```no_run
//! # #[cfg(feature = "http-sources")]
//! # mod example {
//! # fn run() -> Result<(), tokenwarden::Error> {
//! use tokenwarden::sources::{SubjectToken, TokenExchange};
//!
//! let subject = SubjectToken::file("/var/run/secrets/tokens/sts-token");
//! let source = TokenExchange::builder("https://sts.example.com/v1/token", subject)
//!     .audience("//iam.example.com/pools/prod/providers/k8s")
//!     .build()?;
//! let handle = tokenwarden::Refresher::builder(source).name("federated").spawn();
//! # Ok(()) }
//! # }
//! ```
//!
//! A service account's key file (feature `signing`):
//!
//! ```no_run
//! # #[cfg(feature = "signing")]
//! # fn run() -> Result<(), tokenwarden::Error> {
//! use tokenwarden::sources::{ClientCredentials, JwtBearer, ServiceAccountKey, SigningKey};
//!
//! let key = ServiceAccountKey::from_file("/var/secrets/google/key.json")?;
//! let source = JwtBearer::service_account(key)
//!     .scope("https://www.googleapis.com/auth/cloud-platform")
//!     .build()?;
//!
//! // The same kind of key, as private_key_jwt client authentication.
//! let pem = std::fs::read("/etc/myapp/client-key.pem").expect("the key file");
//! let source = ClientCredentials::builder("https://idp.example.com/token", "my-client", SigningKey::es256_pem(pem)?)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! # On outgoing requests
//!
//! - [`RequestBuilderExt::with_token`] on a `reqwest::RequestBuilder`.
//! - [`integrations::middleware::TokenAuth`] (feature `middleware`) for reqwest-middleware,
//!   and [`integrations::tower::TokenAuthLayer`] (feature `tower`) for hyper and tonic: both
//!   set `Authorization`, and on a rejected token refresh once and retry once.
//!
//! ```no_run
//! # #[cfg(feature = "http-sources")]
//! # mod example {
//! # async fn run(handle: tokenwarden::TokenHandle) -> Result<(), Box<dyn std::error::Error>> {
//! use tokenwarden::RequestBuilderExt;
//!
//! let things = reqwest::Client::new()
//!     .get("https://api.example.com/things")
//!     .with_token(&handle)? // synchronous; fails fast without a valid token
//!     .send()
//!     .await?;
//! # Ok(()) }
//! # }
//! ```
//!
//! # Operating it
//!
//! - [`Registry`]: many credentials (one per tenant) with one shutdown, one event stream and a
//!   global cap on concurrent fetches.
//! - [`fleet`]: replicas of a service share one token through Redis, Sentinel or Cluster
//!   (feature `redis`), never presenting a single-use refresh token without the fleet's lease.
//! - [`integrations::metrics`] (feature `metrics`): refresh outcomes, fetch durations, time to
//!   expiry and state, through the `metrics` facade.
//! - [`store`]: a rotated refresh token survives restarts.
//! - [`Health`]: readiness and liveness over a service's credentials; as tower services with
//!   feature `health` (example `service`: `/healthz`, `/readyz`, `/metrics`). `contrib/` has a
//!   Grafana dashboard and Prometheus alerts.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `rustls` | yes | the HTTP flows, TLS by rustls (aws-lc-rs provider) |
//! | `native-tls` | | the HTTP flows, TLS by the platform's library |
//! | `http-sources` | (by either TLS feature) | the HTTP flows over reqwest, without TLS |
//! | `signing` | | `JwtBearer`, `private_key_jwt`, `SigningKey`, `ServiceAccountKey` |
//! | `middleware` | | reqwest-middleware integration |
//! | `tower` | | tower `Layer` (hyper, tonic) |
//! | `metrics` | | metrics through the `metrics` facade |
//! | `redis` | | [`fleet::RedisFleet`] |
//! | `dpop` | | DPoP (RFC 9449): `dpop::DpopKey`, proofs on token and API requests |
//! | `health` | | `Health::readiness()` / `liveness()` as tower services |
//!
//! Without default features the crate compiles tokio, tokio-util, serde, tracing and a few
//! small pure-Rust crates: [`from_fn`], stores, [`Registry`] and the refresher itself.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub mod config;
#[cfg(feature = "dpop")]
#[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
pub mod dpop;
mod duration_format;
mod error;
pub mod fleet;
mod health;
pub mod integrations;
mod jwt;
mod policy;
mod refresher;
pub mod registry;
mod source;
pub mod sources;
pub mod store;
mod token;

pub use clock::Clock;
pub use error::{ConfigError, Error, FetchError, FetchErrorKind};
#[cfg(feature = "health")]
pub use health::HealthService;
pub use health::{CredentialHealth, Health, HealthReport};
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use integrations::RequestBuilderExt;
pub use policy::{Backoff, RefreshPolicy};
pub use refresher::{Event, Refresher, RefresherBuilder, TokenHandle, TokenState};
pub use registry::{KeyedEvent, Registry, RegistryBuilder};
pub use secrecy::{ExposeSecret, SecretString};
pub use source::{FetchContext, FetchFuture, FetchReason, FnSource, TokenSource, from_fn};
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use sources::{ApiKeyExchange, ClientCredentials, RefreshTokenGrant};
pub use store::{FileStore, StoreError, TokenStore};
pub use token::Token;

/// Keeps the README's Rust examples compiling (they use the `signing` flow too).
#[cfg(all(doctest, feature = "signing"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
