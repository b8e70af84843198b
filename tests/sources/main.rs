//! The built-in sources and stores, against real HTTP servers on 127.0.0.1.

mod api_key;
mod client_credentials;
mod discovery;
mod errors;
mod file_store;
#[cfg(feature = "rustls")]
mod mutual_tls;
mod refresh_token;
mod server;
#[cfg(feature = "signing")]
mod signing;
mod static_and_file;
mod token_exchange;
